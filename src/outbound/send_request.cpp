#include "outbound/send_request.h"

#include <boost/json.hpp>
#include <cmath>
#include <fmt/format.h>

#include "core/json.h"
#include "core/log.h"

namespace parley::outbound {

namespace json = boost::json;

namespace {

/// A bad param: ends the action with event `error`, code `bad_params`.
struct ParamError {
    std::string message;
};

constexpr std::string_view kParams[] = {"method",  "url",        "query",              "headers",
                                        "body",    "body_type",  "timeout_ms",         "retries",
                                        "save_as", "follow_redirects", "max_response_bytes"};
constexpr std::string_view kMethods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};

const json::value* find(const json::object& params, std::string_view key) {
    auto it = params.find(key);
    if (it == params.end() || it->value().is_null()) return nullptr;
    return &it->value();
}

std::string upper(std::string_view text) {
    std::string out(text);
    for (auto& c : out) {
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    return out;
}

std::string lower(std::string_view text) {
    std::string out(text);
    for (auto& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

std::optional<std::string> string_param(const json::object& params, std::string_view key) {
    const json::value* v = find(params, key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) throw ParamError{fmt::format("param '{}' must be a string", key)};
    return std::string(v->as_string());
}

/// An integer in [min, max]: a JSON number with an integral value, or a string of digits (rendered template).
std::optional<std::int64_t> integer_param(const json::object& params, std::string_view key, std::int64_t min,
                                          std::int64_t max) {
    const json::value* v = find(params, key);
    if (v == nullptr) return std::nullopt;
    std::optional<std::int64_t> number;
    if (v->is_int64()) {
        number = v->as_int64();
    } else if (v->is_uint64()) {
        number = v->as_uint64() > static_cast<std::uint64_t>(max) ? max + 1 : static_cast<std::int64_t>(v->as_uint64());
    } else if (v->is_double()) {
        const double d = v->as_double();
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) number = static_cast<std::int64_t>(d);
    } else if (v->is_string()) {
        std::string_view text = v->as_string();
        if (!text.empty() && text.size() <= 15 &&
            std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            number = std::stoll(std::string(text));
        }
    }
    if (!number) throw ParamError{fmt::format("param '{}' must be an integer", key)};
    if (*number < min || *number > max) {
        throw ParamError{fmt::format("param '{}' must be between {} and {}", key, min, max)};
    }
    return number;
}

/// A scalar as text for a query, header or form value; nullopt for null; ParamError for objects (and arrays
/// unless the caller handles them).
std::optional<std::string> scalar_text(const json::value& v, std::string_view where) {
    switch (v.kind()) {
        case json::kind::null: return std::nullopt;
        case json::kind::string: return std::string(v.get_string());
        case json::kind::bool_: return v.get_bool() ? "true" : "false";
        case json::kind::int64:
        case json::kind::uint64:
        case json::kind::double_: return json::serialize(v);
        default: throw ParamError{fmt::format("{} must be a string, number or boolean", where)};
    }
}

/// Builds the client request from the params; ParamError when they are not acceptable.
Request build_request(const json::object& params, std::string& save_as) {
    for (const auto& kv : params) {
        if (std::find(std::begin(kParams), std::end(kParams), kv.key()) == std::end(kParams)) {
            throw ParamError{fmt::format("unknown param '{}'", std::string_view(kv.key()))};
        }
    }
    Request r;
    r.method = upper(string_param(params, "method").value_or("GET"));
    if (std::find(std::begin(kMethods), std::end(kMethods), r.method) == std::end(kMethods)) {
        throw ParamError{fmt::format("param 'method' must be one of GET HEAD POST PUT PATCH DELETE OPTIONS, not '{}'",
                                     r.method.substr(0, 20))};
    }
    auto url = string_param(params, "url");
    if (!url || url->empty()) throw ParamError{"param 'url' is required"};
    const std::string scheme = lower(url->substr(0, url->find(':')));
    if (url->find("://") == std::string::npos || (scheme != "http" && scheme != "https")) {
        throw ParamError{fmt::format("param 'url' must be an absolute http:// or https:// URL, not '{}'",
                                     url->substr(0, 100))};
    }
    r.url = std::move(*url);

    if (const json::value* q = find(params, "query")) {
        if (!q->is_object()) throw ParamError{"param 'query' must be an object"};
        for (const auto& kv : q->get_object()) {
            const std::string name(kv.key());
            const std::string where = fmt::format("query value '{}'", name);
            if (kv.value().is_array()) {
                for (const auto& item : kv.value().get_array()) {
                    if (auto text = scalar_text(item, where)) r.query.emplace_back(name, std::move(*text));
                }
            } else if (auto text = scalar_text(kv.value(), where)) {
                r.query.emplace_back(name, std::move(*text));
            }
        }
    }
    if (const json::value* h = find(params, "headers")) {
        if (!h->is_object()) throw ParamError{"param 'headers' must be an object"};
        for (const auto& kv : h->get_object()) {
            if (auto text = scalar_text(kv.value(), fmt::format("header '{}'", std::string_view(kv.key())))) {
                r.headers.emplace_back(std::string(kv.key()), std::move(*text));
            }
        }
    }

    auto body_type = string_param(params, "body_type");
    if (body_type && *body_type != "json" && *body_type != "form" && *body_type != "raw") {
        throw ParamError{"param 'body_type' must be json, form or raw"};
    }
    if (const json::value* body = find(params, "body")) {
        const std::string type = body_type.value_or(body->is_string() ? "raw" : "json");
        if (type == "json") {
            r.body = body->is_string() ? std::string(body->get_string()) : json::serialize(*body);
            r.content_type = "application/json";
        } else if (type == "form") {
            if (!body->is_object()) throw ParamError{"param 'body' must be an object when body_type is form"};
            for (const auto& kv : body->get_object()) {
                std::string text;
                if (kv.value().is_object() || kv.value().is_array()) {
                    text = json::serialize(kv.value());
                } else {
                    text = scalar_text(kv.value(), "form value").value_or("");
                }
                if (!r.body.empty()) r.body.push_back('&');
                r.body += url_encode(kv.key()) + "=" + url_encode(text);
            }
            r.content_type = "application/x-www-form-urlencoded";
        } else {
            if (!body->is_string()) throw ParamError{"param 'body' must be a string when body_type is raw"};
            r.body = std::string(body->get_string());
            r.content_type = "text/plain; charset=utf-8";
        }
        if (r.body.size() > kSendRequestMaxBytes) {
            throw ParamError{fmt::format("param 'body' is larger than {} bytes", kSendRequestMaxBytes)};
        }
    }

    r.timeout_ms = integer_param(params, "timeout_ms", 1, kSendRequestMaxTimeoutMs).value_or(kSendRequestDefaultTimeoutMs);
    r.retries = static_cast<int>(integer_param(params, "retries", 0, kMaxRetries).value_or(0));
    r.max_response_bytes = static_cast<std::size_t>(
        integer_param(params, "max_response_bytes", 1, static_cast<std::int64_t>(kSendRequestMaxBytes))
            .value_or(static_cast<std::int64_t>(kSendRequestDefaultMaxBytes)));
    if (const json::value* follow = find(params, "follow_redirects")) {
        if (!follow->is_bool()) throw ParamError{"param 'follow_redirects' must be a boolean"};
        r.max_redirects = follow->get_bool() ? kMaxRedirects : 0;
    }
    save_as = string_param(params, "save_as").value_or(std::string(kSendRequestDefaultSaveAs));
    if (save_as.empty() || save_as.size() > 128) throw ParamError{"param 'save_as' must be 1..128 characters"};
    return r;
}

/// `text` with every invalid UTF-8 sequence replaced by U+FFFD, so the saved variable is valid JSON text.
std::string valid_utf8(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    std::size_t i = 0;
    while (i < n) {
        const unsigned char c = s[i];
        std::size_t len = 0;
        std::uint32_t min = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            out.push_back(static_cast<char>(c));
            ++i;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            len = 2, min = 0x80, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, min = 0x800, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, min = 0x10000, cp = c & 0x07;
        }
        bool ok = len != 0 && i + len <= n;
        for (std::size_t k = 1; ok && k < len; ++k) {
            if ((s[i + k] & 0xc0) != 0x80) ok = false;
            else cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        ok = ok && cp >= min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        if (ok) {
            out.append(text.substr(i, len));
            i += len;
        } else {
            out += "\xef\xbf\xbd";
            ++i;
        }
    }
    return out;
}

bool is_json_media_type(std::string_view content_type) {
    std::string media = lower(content_type.substr(0, content_type.find(';')));
    while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.pop_back();
    while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.erase(media.begin());
    return media == "application/json" || media == "text/json" || media.ends_with("+json");
}

/// Whether every number in `v` is finite: Boost.JSON parses `1e999` as infinity and would serialize it as
/// `Infinity`, which is not JSON, so such a body is kept as text.
bool all_finite(const json::value& v) {
    switch (v.kind()) {
        case json::kind::double_: return std::isfinite(v.get_double());
        case json::kind::array:
            return std::all_of(v.get_array().begin(), v.get_array().end(), [](const json::value& e) { return all_finite(e); });
        case json::kind::object:
            return std::all_of(v.get_object().begin(), v.get_object().end(),
                               [](const json::key_value_pair& kv) { return all_finite(kv.value()); });
        default: return true;
    }
}

json::object saved_response(const Response& response) {
    json::object headers;
    for (const auto& [name, value] : response.headers) headers[name] = valid_utf8(value);
    return json::object{{"status", response.status},
                        {"headers", std::move(headers)},
                        {"body", response_body_value(response.header("content-type"), response.body)}};
}

class SendRequestAction final : public actions::BasicAction {
public:
    explicit SendRequestAction(Client& client)
        : BasicAction("action_send_request", schema(), {"success", "error"}), client_(client) {}

    void run(actions::ActionCall call, actions::ActionDone done) override {
        std::string save_as;
        Request request;
        try {
            request = build_request(call.params, save_as);
        } catch (const ParamError& e) {
            done(actions::ActionResult::failure("bad_params", e.message));
            return;
        }
        const std::string url = request.url;
        client_.send(std::move(request), [done = std::move(done), save_as = std::move(save_as),
                                          url](Response response) {
            actions::ActionResult result;
            try {
                result = to_result(response, save_as, url);
            } catch (const std::exception& e) {
                result = actions::ActionResult::failure("action_failed", e.what());
            }
            done(std::move(result));
        });
    }

private:
    static actions::ActionResult to_result(const Response& response, const std::string& save_as,
                                           const std::string& url) {
        if (response.error) {
            auto result = actions::ActionResult::failure(std::string(error_code_name(response.error->code)),
                                                         response.error->message);
            result.state[save_as] = json::object{
                {"status", 0},
                {"headers", json::object{}},
                {"body", nullptr},
                {"error", json::object{{"code", result.error->code}, {"message", result.error->message}}}};
            return result;
        }
        actions::ActionResult result;
        if (response.status >= 400) {
            result = actions::ActionResult::failure(
                "http_error", fmt::format("{} answered HTTP {}", url.substr(0, 200), response.status));
        } else {
            result.event = "success";
        }
        result.state[save_as] = saved_response(response);
        return result;
    }

    static json::object schema() {
        auto type = [](const char* t) { return json::object{{"type", t}}; };
        json::object properties{
            {"method", json::object{{"type", "string"},
                                    {"enum", json::array{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}},
                                    {"default", "GET"}}},
            {"url", json::object{{"type", "string"}, {"format", "uri"}}},
            {"query", type("object")},
            {"headers", type("object")},
            {"body", json::object{{"type", json::array{"object", "array", "string"}}}},
            {"body_type", json::object{{"type", "string"}, {"enum", json::array{"json", "form", "raw"}}}},
            {"timeout_ms", json::object{{"type", "integer"},
                                        {"minimum", 1},
                                        {"maximum", kSendRequestMaxTimeoutMs},
                                        {"default", kSendRequestDefaultTimeoutMs}}},
            {"retries", json::object{{"type", "integer"}, {"minimum", 0}, {"maximum", kMaxRetries}, {"default", 0}}},
            {"max_response_bytes", json::object{{"type", "integer"},
                                                {"minimum", 1},
                                                {"maximum", kSendRequestMaxBytes},
                                                {"default", kSendRequestDefaultMaxBytes}}},
            {"follow_redirects", json::object{{"type", "boolean"}, {"default", true}}},
            {"save_as", json::object{{"type", "string"}, {"default", kSendRequestDefaultSaveAs}}},
        };
        return json::object{{"type", "object"}, {"properties", std::move(properties)}, {"required", json::array{"url"}}};
    }

    Client& client_;
};

}  // namespace

json::value response_body_value(std::string_view content_type, std::string_view body) {
    if (!body.empty() && is_json_media_type(content_type)) {
        json::parse_options options;
        options.max_depth = 64;
        boost::system::error_code ec;
        json::value parsed = json::parse(body, ec, {}, options);
        if (!ec && all_finite(parsed)) return parsed;
    }
    return json::string(valid_utf8(body));
}

std::shared_ptr<actions::Action> make_send_request_action(Client& client) {
    return std::make_shared<SendRequestAction>(client);
}

}  // namespace parley::outbound
