#include <fmt/format.h>

#include <algorithm>

#include "auth/permissions.h"
#include "core/error.h"
#include "core/json.h"
#include "http/http.h"
#include "http/paging.h"
#include "operator/internal/routing.h"
#include "operator/sla.h"

namespace parley::operators {

namespace {

/// Query parameter `name` as ISO-8601 UTC time (required or not).
std::optional<std::int64_t> time_param(const http::Request& req, std::string_view name, bool required) {
    auto v = req.query_param(name);
    if (!v) {
        if (required) {
            throw core::BadRequest(fmt::format("'{}' is required (ISO-8601 UTC time)", name), "missing_field",
                                   json::array{json::object{{"field", name}}});
        }
        return std::nullopt;
    }
    auto t = internal::parse_time(*v);
    if (!t) {
        throw core::BadRequest(fmt::format("'{}' is an ISO-8601 UTC time like 2026-11-24T10:00:00Z", name),
                               "invalid_" + std::string(name), json::array{json::object{{"field", name}}});
    }
    return t;
}

void only_params(const http::Request& req, std::initializer_list<std::string_view> allowed) {
    for (const auto& [name, value] : req.query) {
        if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
            throw core::BadRequest(fmt::format("unknown query parameter '{}'", name), "invalid_query",
                                   json::array{json::object{{"field", name}}});
        }
    }
}

}  // namespace

void register_sla_routes(http::Router& router, SlaService& service) {
    using http::Access;
    using http::Method;
    using http::Request;
    using http::Response;
    using Awaitable = boost::asio::awaitable<Response>;
    SlaService* s = &service;
    const Access view = Access::need(std::string(auth::kModuleOperator), core::Action::kView);
    const Access define = Access::need(std::string(auth::kModuleOperatorSettings), core::Action::kEdit);
    const Access see_settings = Access::need(std::string(auth::kModuleOperatorSettings), core::Action::kView);
    const Access stats = Access::need(std::string(auth::kModuleStats), core::Action::kView);

    // ---- Business-hours calendars ---------------------------------------------------------------------------------
    router.add(Method::kGet, "/api/v1/operator/sla/calendars", see_settings, [s](Request&) -> Awaitable {
        co_return Response::json(http::page(s->calendars(), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/operator/sla/calendars", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->create_calendar(req.json());
        co_return Response::json(out, 201);
    });
    router.add(Method::kGet, "/api/v1/operator/sla/calendars/{id}", see_settings, [s](Request& req) -> Awaitable {
        co_return Response::json(s->calendar(req.param("id")));
    });
    router.add(Method::kPatch, "/api/v1/operator/sla/calendars/{id}", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->update_calendar(req.param("id"), req.json());
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/operator/sla/calendars/{id}", define, [s](Request& req) -> Awaitable {
        co_await s->delete_calendar(req.param("id"));
        co_return Response::no_content();
    });
    router.add(Method::kGet, "/api/v1/operator/sla/calendars/{id}/probe", see_settings, [s](Request& req) -> Awaitable {
        only_params(req, {"at", "until"});
        auto at = time_param(req, "at", true);
        auto until = time_param(req, "until", false);
        co_return Response::json(s->probe_calendar(req.param("id"), *at, until));
    });

    // ---- SLA policies -------------------------------------------------------------------------------------------
    router.add(Method::kGet, "/api/v1/operator/sla/policies", see_settings, [s](Request&) -> Awaitable {
        co_return Response::json(http::page(s->policies(), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/operator/sla/policies", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->create_policy(req.json());
        co_return Response::json(out, 201);
    });
    router.add(Method::kGet, "/api/v1/operator/sla/policies/{id}", see_settings, [s](Request& req) -> Awaitable {
        co_return Response::json(s->policy(req.param("id")));
    });
    router.add(Method::kPatch, "/api/v1/operator/sla/policies/{id}", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->update_policy(req.param("id"), req.json());
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/operator/sla/policies/{id}", define, [s](Request& req) -> Awaitable {
        co_await s->delete_policy(req.param("id"));
        co_return Response::no_content();
    });

    // ---- Figures ------------------------------------------------------------------------------------------------
    router.add(Method::kGet, "/api/v1/operator/dialogs/{id}/sla", view, [s](Request& req) -> Awaitable {
        co_return Response::json(s->dialog_sla(req.user(), req.param("id")));
    });
    router.add(Method::kGet, "/api/v1/operator/sla/report", stats, [s](Request& req) -> Awaitable {
        only_params(req, {"from", "to", "group_id"});
        auto from = time_param(req, "from", true);
        auto to = time_param(req, "to", true);
        std::optional<std::string> group;
        if (auto g = req.query_param("group_id")) {
            if (g->empty() || g->size() > 64) {
                throw core::BadRequest("'group_id' is a skill group id or none", "invalid_group_id",
                                       json::array{json::object{{"field", "group_id"}}});
            }
            group = std::string(*g);
        }
        co_return Response::json(s->report(*from, *to, std::move(group)));
    });
}

}  // namespace parley::operators
