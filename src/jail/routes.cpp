#include <fmt/format.h>

#include <boost/json.hpp>
#include <charconv>

#include "auth/permissions.h"
#include "core/error.h"
#include "core/json.h"
#include "jail/internal/validate.h"
#include "jail/jail.h"

namespace parley::jail {

using core::Action;
using http::Access;
using http::Method;
using http::Request;
using http::Response;

namespace {

constexpr std::size_t kDefaultLimit = 50;
constexpr std::size_t kMaxLimit = 200;

Access need(Action action) { return Access::need(std::string(auth::kModuleJail), action); }

json::array field(std::string_view name) { return json::array{json::object{{"field", name}}}; }

std::size_t parse_limit(const Request& req) {
    auto text = req.query_param("limit");
    if (!text) return kDefaultLimit;
    std::size_t value = 0;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc() || end != text->data() + text->size() || value < 1 || value > kMaxLimit) {
        throw core::BadRequest(fmt::format("'limit' must be a whole number from 1 to {}", kMaxLimit), "invalid_limit",
                               field("limit"));
    }
    return value;
}

std::int64_t parse_version(const Request& req) {
    const std::string& text = req.param("version");
    std::int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < 1) {
        throw core::NotFound(fmt::format("no version '{}'", text), "not_found", field("version"));
    }
    return value;
}

Actor actor_of(const Request& req) { return Actor{&req.user(), req.remote_ip}; }

json::array strings(const std::vector<std::string>& items) { return json::array(items.begin(), items.end()); }

json::object optional_object(const json::object& body, std::string_view key) {
    const json::value* v = body.if_contains(key);
    if (!v || v->is_null()) return {};
    if (!v->is_object()) throw core::BadRequest(fmt::format("'{}' must be an object", key), "wrong_type", field(key));
    return v->as_object();
}

}  // namespace

json::object action_to_json(const JailAction& a, bool with_code) {
    json::object out{{"name", a.name},
                     {"description", a.description},
                     {"tags", strings(a.tags)},
                     {"enabled", a.enabled},
                     {"version", a.version},
                     {"params", a.params},
                     {"params_schema", internal::normalize_params(a.params)},
                     {"events", strings(a.events)},
                     {"limits", internal::effective_limits_json(a.effective_limits)},
                     {"limits_set", a.limits},
                     {"created_at", core::format_time(a.created_at)},
                     {"updated_at", core::format_time(a.updated_at)},
                     {"updated_by", a.updated_by ? json::value(*a.updated_by) : json::value(nullptr)}};
    if (with_code) out["code"] = a.code;
    return out;
}

json::object version_to_json(const ActionVersion& v, bool with_code) {
    json::object out{{"version", v.version},
                     {"params", v.params},
                     {"events", strings(v.events)},
                     {"note", v.note},
                     {"author", v.author ? json::value(*v.author) : json::value(nullptr)},
                     {"author_email", v.author_email ? json::value(*v.author_email) : json::value(nullptr)},
                     {"created_at", core::format_time(v.created_at)},
                     {"code_bytes", v.code.size()}};
    if (with_code) out["code"] = v.code;
    return out;
}

json::object run_to_json(const RunOutput& o) {
    json::object out{{"event", o.event}, {"state", o.state}, {"logs", strings(o.logs)}, {"ms", o.ms}};
    if (o.error) out["error"] = json::object{{"code", o.error->code}, {"message", o.error->message}};
    return out;
}

void register_routes(http::Router& router, JailService& service) {
    JailService* s = &service;
    const std::string base = "/api/v1/jail/actions";

    router.add(Method::kPost, base, need(Action::kEdit), [s](Request& req) -> boost::asio::awaitable<Response> {
        JailAction action = co_await s->create(actor_of(req), req.json());
        co_return Response::json(action_to_json(action), 201);
    });

    router.add(Method::kGet, base, need(Action::kView), [s](Request& req) -> boost::asio::awaitable<Response> {
        ActionQuery query;
        if (auto q = req.query_param("q"); q && !q->empty()) {
            if (q->size() > 200) throw core::BadRequest("'q' is longer than 200 bytes", "invalid_query", field("q"));
            query.q = std::string(*q);
        }
        if (auto tag = req.query_param("tag"); tag && !tag->empty()) {
            if (!internal::is_valid_tag(*tag)) {
                throw core::BadRequest("'tag' must match [a-z0-9_-]{1,32}", "invalid_query", field("tag"));
            }
            query.tag = std::string(*tag);
        }
        if (auto enabled = req.query_param("enabled"); enabled && !enabled->empty()) {
            if (*enabled != "true" && *enabled != "false") {
                throw core::BadRequest("'enabled' must be true or false", "invalid_query", field("enabled"));
            }
            query.enabled = *enabled == "true";
        }
        if (auto cursor = req.query_param("cursor"); cursor && !cursor->empty()) {
            if (!internal::is_valid_action_name(*cursor)) {
                throw core::BadRequest("'cursor' is not a cursor this API handed out", "invalid_cursor", field("cursor"));
            }
            query.cursor = std::string(*cursor);
        }
        query.limit = parse_limit(req);
        ActionPage page = s->list(query);
        json::array items;
        for (const auto& a : page.items) items.push_back(action_to_json(a, false));
        co_return Response::json(json::object{
            {"items", std::move(items)},
            {"next_cursor", page.next_cursor ? json::value(*page.next_cursor) : json::value(nullptr)}});
    });

    router.add(Method::kGet, base + "/{name}", need(Action::kView), [s](Request& req) -> boost::asio::awaitable<Response> {
        co_return Response::json(action_to_json(s->get(req.param("name"))));
    });

    router.add(Method::kPut, base + "/{name}", need(Action::kEdit), [s](Request& req) -> boost::asio::awaitable<Response> {
        JailAction action = co_await s->update(actor_of(req), req.param("name"), req.json());
        co_return Response::json(action_to_json(action));
    });

    router.add(Method::kDelete, base + "/{name}", need(Action::kDelete),
               [s](Request& req) -> boost::asio::awaitable<Response> {
                   co_await s->remove(actor_of(req), req.param("name"));
                   co_return Response::no_content();
               });

    router.add(Method::kPost, base + "/{name}/test", need(Action::kEdit),
               [s](Request& req) -> boost::asio::awaitable<Response> {
                   json::object body = req.body.empty() ? json::object{} : req.json();
                   core::reject_unknown_fields(body, {"params", "state", "client"});
                   json::object params = optional_object(body, "params");
                   json::object state = optional_object(body, "state");
                   json::object client = optional_object(body, "client");
                   RunOutput out = co_await s->test(req.param("name"), std::move(params), std::move(state),
                                                    std::move(client));
                   co_return Response::json(run_to_json(out));
               });

    router.add(Method::kPost, base + "/{name}/clone", need(Action::kEdit),
               [s](Request& req) -> boost::asio::awaitable<Response> {
                   json::object body = req.json();
                   core::reject_unknown_fields(body, {"name"});
                   std::string new_name(core::required_string(body, "name"));
                   JailAction action = co_await s->clone(actor_of(req), req.param("name"), std::move(new_name));
                   co_return Response::json(action_to_json(action), 201);
               });

    for (bool enabled : {true, false}) {
        router.add(Method::kPost, base + "/{name}/" + (enabled ? "enable" : "disable"), need(Action::kEdit),
                   [s, enabled](Request& req) -> boost::asio::awaitable<Response> {
                       JailAction action = co_await s->set_enabled(actor_of(req), req.param("name"), enabled);
                       co_return Response::json(action_to_json(action));
                   });
    }

    router.add(Method::kGet, base + "/{name}/versions", need(Action::kView),
               [s](Request& req) -> boost::asio::awaitable<Response> {
                   json::array items;
                   for (const auto& v : s->versions(req.param("name"))) items.push_back(version_to_json(v, false));
                   co_return Response::json(json::object{{"items", std::move(items)}, {"next_cursor", nullptr}});
               });

    router.add(Method::kGet, base + "/{name}/versions/{version}", need(Action::kView),
               [s](Request& req) -> boost::asio::awaitable<Response> {
                   co_return Response::json(version_to_json(s->version(req.param("name"), parse_version(req))));
               });

    router.add(Method::kPost, base + "/{name}/versions/{version}/restore", need(Action::kEdit),
               [s](Request& req) -> boost::asio::awaitable<Response> {
                   JailAction action = co_await s->restore(actor_of(req), req.param("name"), parse_version(req));
                   co_return Response::json(action_to_json(action));
               });
}

}  // namespace parley::jail
