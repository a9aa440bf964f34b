// HTTP routes of operator-panel webhooks (/api/v1/operator/webhooks...). Permissions: the `settings` module
// (view: read subscriptions and the delivery log; edit: create, change, rotate the secret, ping, redeliver;
// delete: delete a subscription).
#include <boost/json.hpp>

#include "auth/permissions.h"
#include "core/json.h"
#include "http/http.h"
#include "http/paging.h"
#include "webhooks/webhooks.h"

namespace parley::webhooks {

namespace json = boost::json;
using http::Access;
using http::Method;
using http::Request;
using http::Response;
using Reply = boost::asio::awaitable<Response>;

namespace {

Access need(core::Action action) { return Access::need(std::string(auth::kModuleSettings), action); }

json::object with_secret(const Subscription& s, const std::string& secret) {
    json::object out = s.to_json();
    out["secret"] = secret;
    return out;
}

}  // namespace

void register_routes(http::Router& router, WebhookService& service) {
    WebhookService* w = &service;
    const std::string base = "/api/v1/operator/webhooks";

    router.add(Method::kGet, base + "/event-types", need(core::Action::kView), [](Request&) -> Reply {
        json::array items;
        for (auto t : event_types()) items.emplace_back(t);
        co_return Response::json(json::object{{"items", std::move(items)}, {"next_cursor", nullptr}});
    });

    router.add(Method::kGet, base, need(core::Action::kView), [w](Request& req) -> Reply {
        std::size_t limit = http::page_limit(req);
        auto cursor = http::query_text(req, "cursor", 64);
        json::array items;
        std::optional<std::string> next;
        auto list = w->list(cursor, limit);
        for (const auto& s : list) items.push_back(s.to_json());
        if (list.size() == limit) next = list.back().id;
        co_return Response::json(http::page(std::move(items), next));
    });

    router.add(Method::kPost, base, need(core::Action::kEdit), [w](Request& req) -> Reply {
        auto input = SubscriptionInput::from_json(req.json(), true);
        auto [s, secret] = co_await w->create(req.user(), std::move(input));
        co_return Response::json(with_secret(s, secret), 201);
    });

    router.add(Method::kGet, base + "/{id}", need(core::Action::kView), [w](Request& req) -> Reply {
        co_return Response::json(w->get(req.param("id")).to_json());
    });

    router.add(Method::kPatch, base + "/{id}", need(core::Action::kEdit), [w](Request& req) -> Reply {
        auto input = SubscriptionInput::from_json(req.json(), false);
        co_return Response::json((co_await w->update(req.user(), req.param("id"), std::move(input))).to_json());
    });

    router.add(Method::kDelete, base + "/{id}", need(core::Action::kDelete), [w](Request& req) -> Reply {
        co_await w->remove(req.user(), req.param("id"));
        co_return Response::no_content();
    });

    router.add(Method::kPost, base + "/{id}/rotate-secret", need(core::Action::kEdit), [w](Request& req) -> Reply {
        auto [s, secret] = co_await w->rotate_secret(req.user(), req.param("id"));
        co_return Response::json(with_secret(s, secret));
    });

    router.add(Method::kPost, base + "/{id}/ping", need(core::Action::kEdit), [w](Request& req) -> Reply {
        co_return Response::json((co_await w->ping(req.user(), req.param("id"))).to_json(true), 201);
    });

    router.add(Method::kGet, base + "/{id}/deliveries", need(core::Action::kView), [w](Request& req) -> Reply {
        std::size_t limit = http::page_limit(req);
        auto cursor = http::query_text(req, "cursor", 64);
        auto state = http::query_text(req, "state", 16);
        auto list = w->deliveries(req.param("id"), state, cursor, limit);
        json::array items;
        for (const auto& d : list) items.push_back(d.to_json(false));
        std::optional<std::string> next;
        if (list.size() == limit) next = list.back().id;
        co_return Response::json(http::page(std::move(items), next));
    });

    router.add(Method::kGet, base + "/{id}/deliveries/{delivery}", need(core::Action::kView), [w](Request& req) -> Reply {
        co_return Response::json(w->delivery(req.param("id"), req.param("delivery")).to_json(true));
    });

    router.add(Method::kPost, base + "/{id}/deliveries/{delivery}/redeliver", need(core::Action::kEdit),
               [w](Request& req) -> Reply {
                   auto d = co_await w->redeliver(req.user(), req.param("id"), req.param("delivery"));
                   co_return Response::json(d.to_json(false));
               });
}

}  // namespace parley::webhooks
