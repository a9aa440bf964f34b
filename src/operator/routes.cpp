#include <fmt/format.h>

#include "auth/permissions.h"
#include "core/error.h"
#include "core/json.h"
#include "http/http.h"
#include "http/paging.h"
#include "operator/operator.h"

namespace parley::operators {

void register_routes(http::Router& router, OperatorService& service) {
    using http::Access;
    using http::Method;
    using http::Request;
    using http::Response;
    using Awaitable = boost::asio::awaitable<Response>;
    OperatorService* s = &service;
    const std::string module(auth::kModuleOperator);
    const Access view = Access::need(module, core::Action::kView);
    const Access edit = Access::need(module, core::Action::kEdit);

    router.add(Method::kPut, "/api/v1/operator/status", edit, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"status", "capacity"});
        std::string status(core::required_string(body, "status"));
        std::optional<unsigned> capacity;
        if (auto c = core::optional_int(body, "capacity")) {
            if (*c < 1 || *c > 100) {
                throw core::BadRequest("'capacity' is from 1 to 100", "invalid_capacity",
                                       boost::json::array{boost::json::object{{"field", "capacity"}}});
            }
            capacity = static_cast<unsigned>(*c);
        }
        auto out = co_await s->set_status(req.user(), std::move(status), capacity);
        co_return Response::json(out);
    });
    router.add(Method::kGet, "/api/v1/operator/status", view, [s](Request& req) -> Awaitable {
        co_return Response::json(s->status_of(req.user()));
    });
    router.add(Method::kGet, "/api/v1/operator/operators", Access::need(module, core::Action::kDelete),
               [s](Request&) -> Awaitable { co_return Response::json(http::page(s->operators(), std::nullopt)); });
    router.add(Method::kGet, "/api/v1/operator/dialogs", view, [s](Request& req) -> Awaitable {
        std::string folder = http::query_text(req, "folder", 20).value_or("mine");
        std::size_t limit = http::page_limit(req);
        auto cursor = http::query_text(req, "cursor", 64);
        std::optional<std::string> next;
        auto items = s->dialogs(req.user(), folder, cursor, limit, &next);
        co_return Response::json(http::page(std::move(items), next));
    });
    router.add(Method::kPost, "/api/v1/operator/dialogs/{id}/take", edit, [s](Request& req) -> Awaitable {
        auto out = co_await s->take(req.user(), req.param("id"));
        co_return Response::json(out);
    });
    router.add(Method::kPost, "/api/v1/operator/dialogs/{id}/messages", edit, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"text"});
        std::string text(core::required_string(body, "text"));
        auto out = co_await s->reply(req.user(), req.param("id"), std::move(text));
        co_return Response::json(out, 201);
    });
    router.add(Method::kGet, "/api/v1/operator/dialogs/{id}/messages", view, [s](Request& req) -> Awaitable {
        std::int64_t after = http::query_int(req, "after", 0, INT64_MAX).value_or(0);
        std::size_t limit = static_cast<std::size_t>(http::query_int(req, "limit", 1, 500).value_or(500));
        auto items = s->messages(req.user(), req.param("id"), after, limit);
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });
    router.add(Method::kGet, "/api/v1/operator/dialogs/{id}/copilot", view, [s](Request& req) -> Awaitable {
        co_return Response::json(s->copilot(req.user(), req.param("id")));
    });
    router.add(Method::kGet, "/api/v1/operator/quick-replies", view, [s](Request& req) -> Awaitable {
        auto q = http::query_text(req, "q");
        co_return Response::json(http::page(s->quick_replies(req.user(), q), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/operator/quick-replies", edit, [s](Request& req) -> Awaitable {
        auto body = req.json();
        auto out = co_await s->create_quick_reply(req.user(), std::move(body));
        co_return Response::json(out, 201);
    });
    router.add(Method::kPatch, "/api/v1/operator/quick-replies/{id}", edit, [s](Request& req) -> Awaitable {
        auto body = req.json();
        auto out = co_await s->update_quick_reply(req.user(), req.param("id"), std::move(body));
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/operator/quick-replies/{id}", edit, [s](Request& req) -> Awaitable {
        co_await s->delete_quick_reply(req.user(), req.param("id"));
        co_return Response::no_content();
    });
    router.add(Method::kPost, "/api/v1/operator/dialogs/{id}/close", edit, [s](Request& req) -> Awaitable {
        co_await s->close(req.user(), req.param("id"));
        co_return Response::json(boost::json::object{{"id", req.param("id")}, {"status", "closed"}});
    });
}

}  // namespace parley::operators
