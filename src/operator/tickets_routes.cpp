// HTTP routes of the ticket system (see TICKETS.md and docs/api/tickets.yaml).
#include "auth/permissions.h"
#include "core/error.h"
#include "core/json.h"
#include "http/http.h"
#include "http/paging.h"
#include "operator/tickets.h"

namespace parley::operators {

void register_ticket_routes(http::Router& router, TicketService& service) {
    using http::Access;
    using http::Method;
    using http::Request;
    using http::Response;
    using Awaitable = boost::asio::awaitable<Response>;
    TicketService* s = &service;
    const std::string tickets(auth::kModuleTickets);
    const std::string settings(auth::kModuleOperatorSettings);
    const Access view = Access::need(tickets, core::Action::kView);
    const Access edit = Access::need(tickets, core::Action::kEdit);
    const Access remove = Access::need(tickets, core::Action::kDelete);
    const Access define = Access::need(settings, core::Action::kEdit);

    // Tickets.
    router.add(Method::kGet, "/api/v1/tickets", view, [s](Request& req) -> Awaitable {
        TicketFilter filter = parse_ticket_filter(req.query);
        std::optional<std::string> next;
        auto items = s->list(req.user(), filter, &next);
        co_return Response::json(http::page(std::move(items), next));
    });
    router.add(Method::kPost, "/api/v1/tickets", edit, [s](Request& req) -> Awaitable {
        auto out = co_await s->create(req.user(), req.json());
        co_return Response::json(out, 201);
    });
    router.add(Method::kPost, "/api/v1/operator/dialogs/{id}/ticket", edit, [s](Request& req) -> Awaitable {
        json::object body = req.body.empty() ? json::object{} : req.json();
        auto out = co_await s->create_from_dialog(req.user(), req.param("id"), std::move(body));
        co_return Response::json(out, 201);
    });
    router.add(Method::kGet, "/api/v1/tickets/{id}", view, [s](Request& req) -> Awaitable {
        co_return Response::json(s->get(req.user(), req.param("id")));
    });
    router.add(Method::kPatch, "/api/v1/tickets/{id}", edit, [s](Request& req) -> Awaitable {
        auto out = co_await s->update(req.user(), req.param("id"), req.json());
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/tickets/{id}", remove, [s](Request& req) -> Awaitable {
        co_await s->remove(req.user(), req.param("id"));
        co_return Response::no_content();
    });

    // Comments, history, SLA.
    router.add(Method::kGet, "/api/v1/tickets/{id}/comments", view, [s](Request& req) -> Awaitable {
        std::size_t limit = http::page_limit(req);
        auto kind = http::query_text(req, "kind", 20);
        auto cursor = http::query_text(req, "cursor", 64);
        std::optional<std::string> next;
        auto items = s->comments(req.user(), req.param("id"), kind, cursor, limit, &next);
        co_return Response::json(http::page(std::move(items), next));
    });
    router.add(Method::kPost, "/api/v1/tickets/{id}/comments", edit, [s](Request& req) -> Awaitable {
        auto out = co_await s->comment(req.user(), req.param("id"), req.json());
        co_return Response::json(out, 201);
    });
    router.add(Method::kGet, "/api/v1/tickets/{id}/history", view, [s](Request& req) -> Awaitable {
        std::size_t limit = http::page_limit(req);
        auto cursor = http::query_text(req, "cursor", 24);
        std::optional<std::string> next;
        auto items = s->history(req.user(), req.param("id"), cursor, limit, &next);
        co_return Response::json(http::page(std::move(items), next));
    });
    router.add(Method::kGet, "/api/v1/tickets/{id}/sla", view, [s](Request& req) -> Awaitable {
        co_return Response::json(s->sla(req.user(), req.param("id")));
    });

    // Links and watchers.
    router.add(Method::kGet, "/api/v1/tickets/{id}/links", view, [s](Request& req) -> Awaitable {
        co_return Response::json(http::page(s->links(req.user(), req.param("id")), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/tickets/{id}/links", edit, [s](Request& req) -> Awaitable {
        auto out = co_await s->link(req.user(), req.param("id"), req.json());
        co_return Response::json(out, 201);
    });
    router.add(Method::kDelete, "/api/v1/tickets/{id}/links/{link}", edit, [s](Request& req) -> Awaitable {
        co_await s->unlink(req.user(), req.param("id"), req.param("link"));
        co_return Response::no_content();
    });
    router.add(Method::kGet, "/api/v1/tickets/{id}/watchers", view, [s](Request& req) -> Awaitable {
        co_return Response::json(http::page(s->watchers(req.user(), req.param("id")), std::nullopt));
    });
    router.add(Method::kPut, "/api/v1/tickets/{id}/watchers/{user}", edit, [s](Request& req) -> Awaitable {
        auto items = co_await s->watch(req.user(), req.param("id"), req.param("user"));
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });
    router.add(Method::kDelete, "/api/v1/tickets/{id}/watchers/{user}", edit, [s](Request& req) -> Awaitable {
        auto items = co_await s->unwatch(req.user(), req.param("id"), req.param("user"));
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });

    // Definitions: everyone who works tickets reads them (forms need them); changing needs operator_settings.edit.
    router.add(Method::kGet, "/api/v1/ticket-fields", view, [s](Request&) -> Awaitable {
        co_return Response::json(http::page(s->fields(), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/ticket-fields", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->create_field(req.json());
        co_return Response::json(out, 201);
    });
    router.add(Method::kPatch, "/api/v1/ticket-fields/{name}", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->update_field(req.param("name"), req.json());
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/ticket-fields/{name}", define, [s](Request& req) -> Awaitable {
        co_await s->delete_field(req.param("name"));
        co_return Response::no_content();
    });
    router.add(Method::kGet, "/api/v1/ticket-statuses", view, [s](Request&) -> Awaitable {
        co_return Response::json(http::page(s->statuses(), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/ticket-statuses", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->create_status(req.json());
        co_return Response::json(out, 201);
    });
    router.add(Method::kPatch, "/api/v1/ticket-statuses/{name}", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->update_status(req.param("name"), req.json());
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/ticket-statuses/{name}", define, [s](Request& req) -> Awaitable {
        co_await s->delete_status(req.param("name"));
        co_return Response::no_content();
    });
    router.add(Method::kGet, "/api/v1/sla-policies", view, [s](Request&) -> Awaitable {
        co_return Response::json(http::page(s->sla_policies(), std::nullopt));
    });
    router.add(Method::kPut, "/api/v1/sla-policies/{priority}", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->put_sla_policy(req.param("priority"), req.json());
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/sla-policies/{priority}", define, [s](Request& req) -> Awaitable {
        co_await s->delete_sla_policy(req.param("priority"));
        co_return Response::no_content();
    });
}

}  // namespace parley::operators
