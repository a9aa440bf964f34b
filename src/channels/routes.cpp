#include <fmt/format.h>

#include <charconv>
#include <fstream>
#include <iterator>

#include "channels/channels.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "http/http.h"
#include "http/paging.h"

namespace parley::channels {

namespace {

using core::Action;
using http::Access;
using http::Method;
using http::Request;
using http::Response;
using Awaitable = boost::asio::awaitable<Response>;

std::optional<std::string> cursor_of(const Request& req) {
    auto text = req.query_param("cursor");
    if (!text || text->empty()) return std::nullopt;
    if (!core::looks_like_id(*text)) {
        throw core::BadRequest("'cursor' is not a cursor this API handed out", "invalid_cursor",
                               json::array{json::object{{"field", "cursor"}}});
    }
    return std::string(*text);
}

json::object credentials_of(const json::object& body) {
    auto it = body.find("credentials");
    if (it == body.end() || it->value().is_null()) return {};
    if (!it->value().is_object()) {
        throw core::BadRequest("'credentials' must be an object", "wrong_type",
                               json::array{json::object{{"field", "credentials"}}});
    }
    return it->value().get_object();
}

}  // namespace

void register_routes(http::Router& router, ChannelService& channels) {
    ChannelService* c = &channels;

    // Inbound e-mail attachments (the email channel lists them in the message text). Sent as a download.
    router.add(Method::kGet, "/api/v1/bots/{bot}/channels/{id}/attachments/{name}",
               Access::need("channels", Action::kView), [c](Request& req) -> Awaitable {
                   auto file = c->attachment(req.param("bot"), req.param("id"), req.param("name"));
                   std::ifstream in(file.path, std::ios::binary);
                   std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
                   Response res = Response::text(std::move(bytes), file.content_type);
                   res.headers.emplace_back("content-disposition",
                                            fmt::format("attachment; filename=\"{}\"", file.filename));
                   res.headers.emplace_back("x-content-type-options", "nosniff");
                   co_return res;
               });

    router.add(Method::kPost, "/api/v1/bots/{bot}/channels", Access::need("channels", Action::kEdit),
               [c](Request& req) -> Awaitable {
                   auto body = req.json();
                   core::reject_unknown_fields(body, {"kind", "credentials", "api_base_url"});
                   NewChannel in;
                   in.kind = std::string(core::required_string(body, "kind"));
                   in.credentials = credentials_of(body);
                   in.api_base_url = core::optional_string(body, "api_base_url");
                   Channel created = co_await c->create(req.param("bot"), std::move(in));
                   co_return Response::json(created.to_json(), 201);
               });

    router.add(Method::kGet, "/api/v1/bots/{bot}/channels", Access::need("channels", Action::kView),
               [c](Request& req) -> Awaitable {
                   std::optional<std::string> next;
                   auto items = c->list(req.param("bot"), cursor_of(req), http::page_limit(req), &next);
                   json::array out;
                   for (const auto& ch : items) out.push_back(ch.to_json());
                   co_return Response::json(json::object{
                       {"items", std::move(out)}, {"next_cursor", next ? json::value(*next) : json::value(nullptr)}});
               });

    router.add(Method::kGet, "/api/v1/bots/{bot}/channels/{id}", Access::need("channels", Action::kView),
               [c](Request& req) -> Awaitable {
                   co_return Response::json(c->get(req.param("bot"), req.param("id")).to_json());
               });

    router.add(Method::kPatch, "/api/v1/bots/{bot}/channels/{id}", Access::need("channels", Action::kEdit),
               [c](Request& req) -> Awaitable {
                   auto body = req.json();
                   core::reject_unknown_fields(body, {"credentials", "api_base_url", "status"});
                   ChannelPatch patch;
                   if (body.contains("credentials")) patch.credentials = credentials_of(body);
                   patch.api_base_url = core::optional_string(body, "api_base_url");
                   patch.status = core::optional_string(body, "status");
                   Channel updated = co_await c->update(req.param("bot"), req.param("id"), std::move(patch));
                   co_return Response::json(updated.to_json());
               });

    router.add(Method::kDelete, "/api/v1/bots/{bot}/channels/{id}", Access::need("channels", Action::kDelete),
               [c](Request& req) -> Awaitable {
                   co_await c->remove(req.param("bot"), req.param("id"));
                   co_return Response::no_content();
               });

    router.add(Method::kGet, "/api/v1/bots/{bot}/channels/{id}/dead-letters", Access::need("channels", Action::kView),
               [c](Request& req) -> Awaitable {
                   std::optional<std::string> next;
                   auto items = c->dead_letters(req.param("bot"), req.param("id"), cursor_of(req),
                                                http::page_limit(req), &next);
                   json::array out;
                   for (const auto& l : items) out.push_back(l.to_json());
                   co_return Response::json(json::object{
                       {"items", std::move(out)}, {"next_cursor", next ? json::value(*next) : json::value(nullptr)}});
               });

    router.add(Method::kPost, "/api/v1/bots/{bot}/channels/{id}/dead-letters/{letter}/retry",
               Access::need("channels", Action::kEdit), [c](Request& req) -> Awaitable {
                   ChannelService::DeadLetter letter =
                       co_await c->retry_dead_letter(req.param("bot"), req.param("id"), req.param("letter"));
                   json::object out = letter.to_json();
                   out["status"] = "pending";
                   co_return Response::json(out);
               });

    router.add(Method::kDelete, "/api/v1/bots/{bot}/channels/{id}/dead-letters/{letter}",
               Access::need("channels", Action::kEdit), [c](Request& req) -> Awaitable {
                   co_await c->discard_dead_letter(req.param("bot"), req.param("id"), req.param("letter"));
                   co_return Response::no_content();
               });

    router.add(Method::kGet, "/api/v1/bots/{bot}/channels/{id}/receipts", Access::need("channels", Action::kView),
               [c](Request& req) -> Awaitable {
                   std::int64_t after = 0;
                   if (auto text = req.query_param("cursor"); text && !text->empty()) {
                       auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), after);
                       if (ec != std::errc() || end != text->data() + text->size() || after < 0) {
                           throw core::BadRequest("'cursor' is not a cursor this API handed out", "invalid_cursor",
                                                  json::array{json::object{{"field", "cursor"}}});
                       }
                   }
                   std::optional<std::string> dialog;
                   if (auto d = req.query_param("dialog"); d && !d->empty()) dialog = std::string(*d);
                   std::optional<std::int64_t> next;
                   auto items =
                       c->receipts(req.param("bot"), req.param("id"), dialog, after, http::page_limit(req), &next);
                   json::array out;
                   for (const auto& r : items) out.push_back(r.to_json());
                   co_return Response::json(
                       json::object{{"items", std::move(out)},
                                    {"next_cursor", next ? json::value(std::to_string(*next)) : json::value(nullptr)}});
               });

    // Inbound webhooks: public, verified the platform's way (Telegram's secret token, Viber's and Meta's HMAC
    // signatures, the custom channel's X-Parley-Signature).
    router.add(Method::kPost, "/hooks/{channel_id}", Access::open(), [c](Request& req) -> Awaitable {
        WebhookRequest hook;
        hook.method = "POST";
        hook.headers = req.headers;
        hook.query = req.query;
        hook.body = std::move(req.body);
        int status = co_await c->receive_webhook(req.param("channel_id"), std::move(hook));
        co_return Response::json(json::object{{"ok", true}}, status);
    });

    // Meta's verification handshake (WhatsApp, Messenger, Instagram): answers hub.challenge as text.
    router.add(Method::kGet, "/hooks/{channel_id}", Access::open(), [c](Request& req) -> Awaitable {
        WebhookRequest hook;
        hook.method = "GET";
        hook.headers = req.headers;
        hook.query = req.query;
        co_return Response::text(c->verify_webhook(req.param("channel_id"), hook));
    });
}

}  // namespace parley::channels
