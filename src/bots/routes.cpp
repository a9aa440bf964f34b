#include "bots/routes.h"

#include <fmt/format.h>

#include "auth/permissions.h"
#include "core/error.h"
#include "core/json.h"
#include "http/http.h"
#include "http/paging.h"
#include "scenario/translations.h"

namespace parley::bots {

namespace {

using http::Access;
using http::Method;
using http::Request;
using http::Response;
using Awaitable = boost::asio::awaitable<Response>;

constexpr std::size_t kMaxMessageTextBytes = 4096;
constexpr std::size_t kMaxParamsBytes = 16 * 1024;
constexpr std::size_t kMaxMessagesPage = 500;

json::array field(std::string_view name) { return json::array{json::object{{"field", name}}}; }

std::int64_t version_param(const Request& req) {
    const std::string& text = req.param("version");
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || v < 1) {
        throw core::BadRequest("a version is a whole number from 1", "invalid_version", field("version"));
    }
    return v;
}

/// The preview session `session` of bot `bot` (404 when it is another bot's or not a preview).
DialogInfo preview_session(DialogService& dialogs, const Request& req) {
    auto dialog = dialogs.find(req.param("session"));
    if (!dialog || dialog->bot_id != req.param("bot") || dialog->channel != "preview") {
        throw core::NotFound(fmt::format("no preview session '{}' of bot '{}'", req.param("session"), req.param("bot")),
                             "session_not_found");
    }
    return *dialog;
}

/// One of {"text"}, {"button"}, {"contact": {"phone", ...}}, with an optional "id" (the client's message id:
/// sending the same id again returns the first answer instead of running the bot twice).
Trigger message_trigger(const json::object& body) {
    core::reject_unknown_fields(body, {"text", "button", "contact", "id"});
    int kinds = body.contains("text") + body.contains("button") + body.contains("contact");
    if (kinds != 1) {
        throw core::BadRequest("send exactly one of 'text', 'button' or 'contact'", "invalid_message");
    }
    Trigger t;
    t.kind = Trigger::Kind::kMessage;
    if (auto id = core::optional_string(body, "id")) {
        if (id->empty() || id->size() > 128) throw core::BadRequest("'id' must be 1 to 128 bytes", "invalid_id", field("id"));
        t.external_id = *id;
    }
    if (body.contains("text")) {
        std::string text(core::required_string(body, "text"));
        if (text.size() > kMaxMessageTextBytes) {
            throw core::TooLarge(fmt::format("'text' is longer than {} bytes", kMaxMessageTextBytes), "too_large",
                                 field("text"));
        }
        t.message = scenario::ClientMessage::from_text(std::move(text));
    } else if (body.contains("button")) {
        std::string id(core::required_string(body, "button"));
        if (id.empty() || id.size() > 64) throw core::BadRequest("'button' must be a button id", "invalid_button", field("button"));
        t.message = scenario::ClientMessage::from_button(std::move(id));
    } else {
        const json::object& contact = core::required_object(body, "contact");
        std::string phone(core::required_string(contact, "phone"));
        if (phone.empty() || phone.size() > 32) {
            throw core::BadRequest("'contact.phone' must be a phone number", "invalid_phone", field("contact.phone"));
        }
        if (json::serialize(contact).size() > 2048) throw core::TooLarge("'contact' is too large", "too_large", field("contact"));
        t.message = scenario::ClientMessage::from_contact(contact);
    }
    return t;
}

json::object small_object(const json::object& body, std::string_view key) {
    const json::value* v = body.if_contains(key);
    if (!v || v->is_null()) return {};
    if (!v->is_object()) {
        throw core::BadRequest(fmt::format("'{}' must be an object", key), "wrong_type", field(key));
    }
    if (json::serialize(*v).size() > kMaxParamsBytes) {
        throw core::TooLarge(fmt::format("'{}' is larger than {} bytes", key, kMaxParamsBytes), "too_large", field(key));
    }
    return v->get_object();
}

std::string safe_filename(std::string name) {
    for (auto& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
    }
    if (name.empty()) name = "scenario";
    return name.substr(0, 80);
}

}  // namespace

void register_routes(http::Router& router, BotService& bots, DialogService& dialogs, TriggerService& triggers,
                     const actions::ActionRegistry& actions) {
    BotService* b = &bots;
    TriggerService* tr = &triggers;
    DialogService* d = &dialogs;
    const actions::ActionRegistry* registry = &actions;
    const std::string module(auth::kModuleBots);
    const Access view = Access::need(module, core::Action::kView);
    const Access edit = Access::need(module, core::Action::kEdit);
    const Access remove = Access::need(module, core::Action::kDelete);

    // --- bots ------------------------------------------------------------------------------------------------
    router.add(Method::kPost, "/api/v1/bots", edit, [b](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"name", "active"});
        std::string name(core::required_string(body, "name"));
        bool active = core::optional_bool(body, "active").value_or(true);
        Bot bot = co_await b->create(std::move(name), active);
        co_return Response::json(bot.to_json(), 201);
    });
    router.add(Method::kGet, "/api/v1/bots", view, [b](Request& req) -> Awaitable {
        std::size_t limit = http::page_limit(req);
        auto q = http::query_text(req, "q");
        auto cursor = http::query_text(req, "cursor", 64);
        std::optional<bool> active;
        if (auto a = http::query_text(req, "active", 5)) {
            if (*a != "true" && *a != "false") throw core::BadRequest("'active' is true or false", "invalid_query", field("active"));
            active = *a == "true";
        }
        std::optional<std::string> next;
        json::array items;
        for (const auto& bot : b->list(q, active, cursor, limit, &next)) items.push_back(bot.to_json());
        co_return Response::json(http::page(std::move(items), next));
    });
    router.add(Method::kGet, "/api/v1/bots/{bot}", view, [b](Request& req) -> Awaitable {
        co_return Response::json(b->get(req.param("bot")).to_json());
    });
    router.add(Method::kPatch, "/api/v1/bots/{bot}", edit, [b](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"name", "active"});
        std::optional<std::string> name = core::optional_string(body, "name");
        std::optional<bool> active = core::optional_bool(body, "active");
        Bot bot = co_await b->update(req.param("bot"), std::move(name), active);
        co_return Response::json(bot.to_json());
    });
    router.add(Method::kDelete, "/api/v1/bots/{bot}", remove, [b](Request& req) -> Awaitable {
        co_await b->remove(req.param("bot"));
        co_return Response::no_content();
    });

    // --- scenario documents and versions ---------------------------------------------------------------------
    router.add(Method::kPut, "/api/v1/bots/{bot}/scenario", edit, [b](Request& req) -> Awaitable {
        b->get(req.param("bot"));  // 404 before validating a document for a bot that does not exist
        std::string note = http::query_text(req, "note", kMaxVersionNoteBytes).value_or("");
        Author author = Author::of(req.principal);
        PutResult r = co_await b->put_scenario(req.param("bot"), req.body, std::move(author), std::move(note));
        co_return Response::json(json::object{{"version", r.version}, {"warnings", r.warnings}});
    });
    router.add(Method::kGet, "/api/v1/bots/{bot}/scenario", view, [b](Request& req) -> Awaitable {
        Response r = Response::raw_json(b->document(req.param("bot")));
        r.headers.emplace_back("X-Scenario-Version", std::to_string(b->get(req.param("bot")).version));
        co_return r;
    });
    router.add(Method::kGet, "/api/v1/bots/{bot}/scenario/export", view, [b](Request& req) -> Awaitable {
        Bot bot = b->get(req.param("bot"));
        Response r = Response::raw_json(b->document(bot.id));
        r.headers.emplace_back("Content-Disposition",
                               fmt::format("attachment; filename=\"{}.parley.json\"", safe_filename(bot.name)));
        co_return r;
    });
    router.add(Method::kPost, "/api/v1/bots/import", edit, [b](Request& req) -> Awaitable {
        // Validate first: an invalid file creates no bot.
        auto compiled = scenario::compile_or_throw(req.body, b->compile_options());
        std::string name = http::query_text(req, "name", kMaxBotNameBytes).value_or(compiled->name());
        if (name.empty()) name = "Imported bot";
        Bot bot = co_await b->create(std::move(name), true);
        Author author = Author::of(req.principal);
        std::string note = "imported";
        PutResult r = co_await b->put_scenario(bot.id, req.body, std::move(author), std::move(note));
        json::object out = bot.to_json();
        out["version"] = r.version;
        out["warnings"] = r.warnings;
        co_return Response::json(out, 201);
    });
    router.add(Method::kGet, "/api/v1/bots/{bot}/scenario/versions", view, [b](Request& req) -> Awaitable {
        std::size_t limit = http::page_limit(req);
        auto before = http::query_int(req, "cursor", 1, INT64_MAX);
        std::optional<std::int64_t> next;
        json::array items;
        for (const auto& v : b->versions(req.param("bot"), before, limit, &next)) items.push_back(v.to_json());
        co_return Response::json(http::page(std::move(items), next ? std::optional(std::to_string(*next)) : std::nullopt));
    });
    router.add(Method::kGet, "/api/v1/bots/{bot}/scenario/versions/{version}", view, [b](Request& req) -> Awaitable {
        co_return Response::raw_json(b->document(req.param("bot"), version_param(req)));
    });
    router.add(Method::kPost, "/api/v1/bots/{bot}/scenario/versions/{version}/restore", edit,
               [b](Request& req) -> Awaitable {
                   Author author = Author::of(req.principal);
                   std::int64_t version = version_param(req);
                   PutResult r = co_await b->restore(req.param("bot"), version, std::move(author));
                   co_return Response::json(json::object{{"version", r.version}, {"warnings", r.warnings}});
               });
    router.add(Method::kGet, "/api/v1/bots/{bot}/scenario/diff", view, [b](Request& req) -> Awaitable {
        auto from = http::query_int(req, "from", 1, INT64_MAX);
        auto to = http::query_int(req, "to", 1, INT64_MAX);
        if (!from) throw core::BadRequest("'from' (a version) is required", "missing_query", field("from"));
        std::int64_t target = to ? *to : b->get(req.param("bot")).version;
        co_return Response::json(b->diff(req.param("bot"), *from, target));
    });
    router.add(Method::kGet, "/api/v1/bots/{bot}/scenario/translations", view, [b](Request& req) -> Awaitable {
        auto compiled = scenario::compile_scenario(b->document(req.param("bot")));
        if (!compiled.ok()) throw core::Conflict("the stored scenario does not compile", "invalid_scenario");
        co_return Response::text(scenario::export_translations_csv(*compiled.scenario), "text/csv; charset=utf-8");
    });
    router.add(Method::kPut, "/api/v1/bots/{bot}/scenario/translations", edit, [b](Request& req) -> Awaitable {
        json::value doc = json::parse(b->document(req.param("bot")));
        auto imported = scenario::import_translations_csv(doc, req.body);
        if (!imported.ok()) {
            throw core::Unprocessable("the translations do not fit the scenario", "invalid_translations",
                                      scenario::to_json(imported.errors));
        }
        Author author = Author::of(req.principal);
        std::string text = json::serialize(imported.document);
        std::string note = "translations imported";
        PutResult r = co_await b->put_scenario(req.param("bot"), std::move(text), std::move(author), std::move(note));
        co_return Response::json(json::object{{"version", r.version}, {"warnings", r.warnings}});
    });
    router.add(Method::kPost, "/api/v1/scenario/lint", view, [b](Request& req) -> Awaitable {
        if (req.body.size() > scenario::Limits::kMaxDocumentBytes) {
            throw core::TooLarge(fmt::format("the document is larger than {} bytes", scenario::Limits::kMaxDocumentBytes));
        }
        co_return Response::json(b->lint(req.body));
    });
    router.add(Method::kGet, "/api/v1/actions", view, [registry](Request&) -> Awaitable {
        json::array items;
        for (const auto& a : registry->list()) {
            json::array events;
            for (const auto& e : a.events) events.push_back(json::value(e));
            items.push_back(json::object{{"name", a.name}, {"params", a.params_schema}, {"events", std::move(events)}});
        }
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });

    // --- preview chat ----------------------------------------------------------------------------------------
    router.add(Method::kPost, "/api/v1/bots/{bot}/preview", edit, [d, tr](Request& req) -> Awaitable {
        json::object body = req.body.empty() ? json::object() : req.json();
        core::reject_unknown_fields(body, {"user"});
        clients::NewClient client;
        if (const json::value* user = body.if_contains("user"); user && !user->is_null()) {
            if (!user->is_object()) throw core::BadRequest("'user' must be an object", "wrong_type", field("user"));
            const json::object& u = user->get_object();
            core::reject_unknown_fields(u, {"name", "language", "phone", "email", "fields"});
            client.name = core::optional_string(u, "name").value_or("");
            client.language = core::optional_string(u, "language").value_or("");
            client.phone = core::optional_string(u, "phone").value_or("");
            client.email = core::optional_string(u, "email").value_or("");
            client.fields = small_object(u, "fields");
        }
        std::string channel = "preview";
        auto [dialog, turn] = co_await d->open(req.param("bot"), std::move(channel), std::move(client));
        std::string event = "client_registered";
        if (co_await tr->emit(dialog.id, std::move(event)) > 0) {
            // Triggers added messages after the start run: the answer shows them too.
            for (const auto& m : d->messages(dialog.id, 0, kMaxMessagesPage)) {
                if (m.from != "bot" || m.n <= static_cast<std::int64_t>(turn.replies.size())) continue;
                scenario::Reply reply;
                reply.text = m.text;
                for (const auto& btn : m.buttons) {
                    reply.buttons.push_back(scenario::ReplyButton{std::string(btn.at("id").as_string()),
                                                                  std::string(btn.at("text").as_string())});
                }
                turn.replies.push_back(std::move(reply));
            }
        }
        json::object out = turn.to_json();
        out["session"] = dialog.id;
        out["client"] = json::object{{"id", dialog.client_id}};
        co_return Response::json(out, 201);
    });
    router.add(Method::kPost, "/api/v1/bots/{bot}/preview/{session}/messages", edit, [d](Request& req) -> Awaitable {
        DialogInfo dialog = preview_session(*d, req);
        Trigger trigger = message_trigger(req.json());
        TurnOutput turn = co_await d->run(dialog.id, std::move(trigger));
        co_return Response::json(turn.to_json());
    });
    router.add(Method::kGet, "/api/v1/bots/{bot}/preview/{session}/messages", view, [d](Request& req) -> Awaitable {
        DialogInfo dialog = preview_session(*d, req);
        std::int64_t after = http::query_int(req, "after", 0, INT64_MAX).value_or(0);
        if (auto cursor = http::query_int(req, "cursor", 0, INT64_MAX)) after = *cursor;
        std::size_t limit = static_cast<std::size_t>(http::query_int(req, "limit", 1, kMaxMessagesPage).value_or(kMaxMessagesPage));
        auto messages = d->messages(dialog.id, after, limit + 1);
        std::optional<std::string> next;
        if (messages.size() > limit) {
            messages.resize(limit);
            next = std::to_string(messages.back().n);
        }
        json::array items;
        for (const auto& m : messages) items.push_back(m.to_json());
        co_return Response::json(http::page(std::move(items), next));
    });

    // --- alias call and macros -------------------------------------------------------------------------------
    router.add(Method::kPost, "/api/v1/bots/{bot}/call/{alias}", edit, [b, d](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"client", "input", "params"});
        const json::object& client = core::required_object(body, "client");
        std::string client_id(core::required_string(client, "id"));
        std::string input = core::optional_string(body, "input").value_or("");
        if (input.size() > kMaxMessageTextBytes) throw core::TooLarge("'input' is too long", "too_large", field("input"));
        json::object params = small_object(body, "params");
        auto bot = b->load(req.param("bot"));
        if (!bot) throw core::NotFound(fmt::format("no bot '{}'", req.param("bot")), "bot_not_found");
        if (!bot->runtime || bot->runtime->scenario().find_alias(req.param("alias")) == scenario::kNoNode) {
            throw core::NotFound(fmt::format("bot '{}' has no entry with alias '{}'", req.param("bot"), req.param("alias")),
                                 "alias_not_found");
        }
        std::string dialog_id = co_await d->dialog_for(req.param("bot"), client_id);
        Trigger trigger;
        trigger.kind = Trigger::Kind::kAlias;
        trigger.alias = req.param("alias");
        trigger.input = std::move(input);
        trigger.params = std::move(params);
        TurnOutput turn = co_await d->run(dialog_id, std::move(trigger));
        json::object out = turn.to_json();
        out["dialog_id"] = dialog_id;
        co_return Response::json(out);
    });
    router.add(Method::kGet, "/api/v1/bots/{bot}/macros", view, [b](Request& req) -> Awaitable {
        auto bot = b->load(req.param("bot"));
        if (!bot) throw core::NotFound(fmt::format("no bot '{}'", req.param("bot")), "bot_not_found");
        json::array items;
        if (bot->runtime) {
            const auto& sc = bot->runtime->scenario();
            for (std::size_t i = 0; i < sc.sections().size(); ++i) {
                const auto& section = sc.sections()[i];
                if (!section.macro) continue;
                std::string alias;
                for (const auto& node : sc.nodes()) {
                    if (node.section == i && node.type == scenario::NodeType::kEntry) {
                        alias = node.alias;
                        break;
                    }
                }
                json::array variables;
                for (const auto& v : section.macro_variables) variables.push_back(json::value(v));
                items.push_back(json::object{{"section", section.name}, {"alias", alias}, {"variables", std::move(variables)}});
            }
        }
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/dialogs/{dialog}/macros/{section}",
               Access::need(std::string(auth::kModuleOperator), core::Action::kEdit), [b, d](Request& req) -> Awaitable {
                   auto body = req.body.empty() ? json::object() : req.json();
                   core::reject_unknown_fields(body, {"values"});
                   json::object values = small_object(body, "values");
                   auto dialog = d->find(req.param("dialog"));
                   if (!dialog) throw core::NotFound(fmt::format("no dialog '{}'", req.param("dialog")), "dialog_not_found");
                   auto bot = b->load(dialog->bot_id);
                   std::string alias;
                   if (bot && bot->runtime) {
                       const auto& sc = bot->runtime->scenario();
                       for (std::size_t i = 0; i < sc.sections().size(); ++i) {
                           const auto& section = sc.sections()[i];
                           if (!section.macro || section.name != req.param("section")) continue;
                           for (const auto& v : section.macro_variables) {
                               if (!values.contains(v)) {
                                   throw core::BadRequest(fmt::format("the macro needs the value '{}'", v),
                                                          "missing_value", field("values." + v));
                               }
                           }
                           for (const auto& node : sc.nodes()) {
                               if (node.section == i && node.type == scenario::NodeType::kEntry) alias = node.alias;
                           }
                       }
                   }
                   if (alias.empty()) {
                       throw core::NotFound(fmt::format("the dialog's bot has no macro '{}'", req.param("section")),
                                            "macro_not_found");
                   }
                   Trigger trigger;
                   trigger.kind = Trigger::Kind::kAlias;
                   trigger.alias = alias;
                   trigger.params = std::move(values);
                   TurnOutput turn = co_await d->run(dialog->id, std::move(trigger));
                   co_return Response::json(turn.to_json());
               });

    // --- triggers: internal events and schedules ---------------------------------------------------------------
    router.add(Method::kGet, "/api/v1/bots/{bot}/triggers", view, [b, tr](Request& req) -> Awaitable {
        b->get(req.param("bot"));
        json::array items;
        for (const auto& t : tr->list(req.param("bot"))) items.push_back(t.to_json());
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/bots/{bot}/triggers", edit, [tr](Request& req) -> Awaitable {
        json::object body = req.json();
        TriggerInfo t = co_await tr->create(req.param("bot"), std::move(body));
        co_return Response::json(t.to_json(), 201);
    });
    router.add(Method::kPatch, "/api/v1/bots/{bot}/triggers/{id}", edit, [tr](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"enabled"});
        auto enabled = core::optional_bool(body, "enabled");
        if (!enabled) throw core::BadRequest("missing field 'enabled'", "missing_field", field("enabled"));
        TriggerInfo t = co_await tr->set_enabled(req.param("bot"), req.param("id"), *enabled);
        co_return Response::json(t.to_json());
    });
    router.add(Method::kDelete, "/api/v1/bots/{bot}/triggers/{id}", remove, [tr](Request& req) -> Awaitable {
        co_await tr->remove(req.param("bot"), req.param("id"));
        co_return Response::no_content();
    });
    router.add(Method::kPost, "/api/v1/dialogs/{dialog}/events", edit, [tr](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"event"});
        std::string event(core::required_string(body, "event"));
        if (!is_valid_event_name(event)) {
            throw core::BadRequest("event names match [a-z0-9_.]{1,64}", "invalid_event", field("event"));
        }
        std::size_t n = co_await tr->emit(req.param("dialog"), std::move(event));
        co_return Response::json(json::object{{"triggered", n}});
    });

    // --- runs ------------------------------------------------------------------------------------------------
    router.add(Method::kGet, "/api/v1/bots/{bot}/runs", view, [b, d](Request& req) -> Awaitable {
        b->get(req.param("bot"));
        std::size_t limit = http::page_limit(req);
        auto cursor = http::query_text(req, "cursor", 64);
        std::string dialog = http::query_text(req, "dialog", 64).value_or("");
        std::optional<std::string> next;
        json::array items = d->runs(req.param("bot"), dialog, cursor, limit, &next);
        co_return Response::json(http::page(std::move(items), next));
    });
}

}  // namespace parley::bots
