#include "channels/internal/meta.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "channels/internal/adapters.h"
#include "core/error.h"

namespace parley::channels::internal {

std::string meta_handshake(const ChannelRef& c, const WebhookRequest& r) {
    auto mode = r.query_param("hub.mode");
    auto token = r.query_param("hub.verify_token");
    auto challenge = r.query_param("hub.challenge");
    if (!mode || !token || !challenge || challenge->empty()) {
        throw core::BadRequest("hub.mode, hub.verify_token and hub.challenge are required", "invalid_handshake");
    }
    if (challenge->size() > 512) throw core::BadRequest("hub.challenge is too long", "invalid_handshake");
    if (*mode != "subscribe" || !equal_secret(*token, c.credential("verify_token"))) {
        throw core::Forbidden("hub.verify_token does not match the channel's verify_token", "invalid_verify_token");
    }
    return std::string(*challenge);
}

void meta_verify(const ChannelRef& c, const WebhookRequest& r) {
    std::string given(r.header("x-hub-signature-256"));
    std::transform(given.begin(), given.end(), given.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    std::string expected = "sha256=" + hmac_sha256_hex(c.credential("app_secret"), r.body);
    if (!equal_secret(given, expected)) {
        throw core::Unauthorized("the X-Hub-Signature-256 header is missing or wrong", "invalid_signature");
    }
}

void meta_credentials(const json::object& in, json::object& out) {
    out["token"] = required_credential(in, "token", 1024);
    out["app_secret"] = required_credential(in, "app_secret", 256);
    out["verify_token"] = required_credential(in, "verify_token", 256);
    std::string version = optional_credential(in, "api_version", 16);
    if (version.empty()) version = std::string(kGraphVersion);
    bool ok = version.size() >= 2 && version[0] == 'v' &&
              std::all_of(version.begin() + 1, version.end(), [](char ch) { return std::isdigit(ch) || ch == '.'; });
    if (!ok) bad_credential("api_version", "must look like v21.0");
    out["api_version"] = version;
}

outbound::Request graph_post(const ChannelRef& c, std::string_view path, const json::value& body) {
    std::string version = c.credential("api_version");
    if (version.empty()) version = std::string(kGraphVersion);
    outbound::Request req = json_post(fmt::format("{}/{}/{}", c.api_base_url, version, path), body);
    req.headers.emplace_back("Authorization", "Bearer " + c.credential("token"));
    return req;
}

SendResult graph_classify(const outbound::Response& r) {
    SendResult out;
    if (r.error) {
        out.outcome = SendResult::Outcome::kTransient;
        out.error = fmt::format("{}: {}", outbound::error_code_name(r.error->code), r.error->message);
        return out;
    }
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    const json::object* o = !ec && v.is_object() ? &v.get_object() : nullptr;
    if (r.status == 200 && o) {
        if (auto it = o->find("message_id"); it != o->end() && it->value().is_string()) {
            out.message_id = std::string(it->value().get_string());
        }
        if (auto it = o->find("messages"); it != o->end() && it->value().is_array() &&
                                           !it->value().get_array().empty() &&
                                           it->value().get_array()[0].is_object()) {
            const auto& m = it->value().get_array()[0].get_object();
            if (auto id = m.find("id"); id != m.end() && id->value().is_string()) {
                out.message_id = std::string(id->value().get_string());
            }
        }
        if (!o->contains("error")) {
            out.outcome = SendResult::Outcome::kOk;
            return out;
        }
    }
    std::int64_t code = 0;
    std::string message = fmt::format("HTTP {}", r.status);
    if (o) {
        if (auto it = o->find("error"); it != o->end() && it->value().is_object()) {
            const auto& e = it->value().get_object();
            if (auto c = e.find("code"); c != e.end() && c->value().is_int64()) code = c->value().get_int64();
            if (auto m = e.find("message"); m != e.end() && m->value().is_string()) {
                message = std::string(m->value().get_string());
            }
        }
    }
    out.error = code ? fmt::format("Graph error {}: {}", code, message) : message;
    std::int64_t retry_s = 0;
    std::string_view h = r.header("retry-after");
    std::from_chars(h.data(), h.data() + h.size(), retry_s);
    switch (code) {
        case 4: case 17: case 32: case 613: case 80007: case 130429:
            out.outcome = SendResult::Outcome::kRetryAfter;
            out.retry_after_ms = (retry_s > 0 ? retry_s : 10) * 1000;
            return out;
        case 131056:  // pair rate limit: this recipient only
            out.outcome = SendResult::Outcome::kRetryAfter;
            out.retry_after_ms = (retry_s > 0 ? retry_s : 6) * 1000;
            out.whole_channel = false;
            return out;
        case 1: case 2: case 131000: case 131016: case 133004:
            out.outcome = SendResult::Outcome::kTransient;
            return out;
        default: break;
    }
    if (r.status == 429) {
        out.outcome = SendResult::Outcome::kRetryAfter;
        out.retry_after_ms = (retry_s > 0 ? retry_s : 10) * 1000;
    } else if (r.status >= 500 || r.status == 408 || (r.status == 200 && !o)) {
        out.outcome = SendResult::Outcome::kTransient;
    } else {
        out.outcome = SendResult::Outcome::kPermanent;  // 131047 outside the window, 131026 undeliverable, 190 token
    }
    return out;
}

}  // namespace parley::channels::internal
