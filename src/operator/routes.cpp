#include <fmt/format.h>

#include "auth/permissions.h"
#include "core/error.h"
#include "core/json.h"
#include "http/http.h"
#include "http/paging.h"
#include "operator/internal/rows.h"
#include "operator/operator.h"

namespace parley::operators {

namespace {

namespace json = boost::json;

std::optional<unsigned> capacity_of(const json::object& body) {
    auto c = core::optional_int(body, "capacity");
    if (!c) return std::nullopt;
    if (*c < 1 || *c > static_cast<std::int64_t>(kMaxCapacity)) {
        internal::bad_field("capacity", fmt::format("'capacity' is from 1 to {}", kMaxCapacity));
    }
    return static_cast<unsigned>(*c);
}

/// `field` as a list of strings (at most `max`).
std::vector<std::string> strings_of(const json::object& body, std::string_view field, std::size_t max, bool required) {
    const auto* list = core::optional_array(body, field);
    if (!list) {
        if (required) internal::bad_field(std::string(field), fmt::format("'{}' is required", field));
        return {};
    }
    if (list->size() > max) internal::bad_field(std::string(field), fmt::format("'{}' has at most {} items", field, max));
    std::vector<std::string> out;
    for (const auto& v : *list) {
        if (!v.is_string()) internal::bad_field(std::string(field), fmt::format("'{}' is a list of strings", field));
        out.emplace_back(v.get_string());
    }
    return out;
}

/// The dialog list's query: every parameter but folder, cursor and limit is a filter (DialogFilter::set).
DialogFilter filter_of(const http::Request& req) {
    DialogFilter filter;
    for (const auto& [name, value] : req.query) {
        if (name == "folder" || name == "cursor" || name == "limit") continue;
        filter.set(name, value);
    }
    return filter;
}

}  // namespace

void register_routes(http::Router& router, OperatorService& service) {
    using http::Access;
    using http::Method;
    using http::Request;
    using http::Response;
    using Awaitable = boost::asio::awaitable<Response>;
    OperatorService* s = &service;
    const std::string module(auth::kModuleOperator);
    const std::string settings(auth::kModuleOperatorSettings);
    const Access view = Access::need(module, core::Action::kView);
    const Access edit = Access::need(module, core::Action::kEdit);
    const Access supervise = Access::need(module, core::Action::kDelete);
    const Access define = Access::need(settings, core::Action::kEdit);
    const Access see_settings = Access::need(settings, core::Action::kView);

    // ---- The operator's own status, signature and folders -----------------------------------------------------
    router.add(Method::kPut, "/api/v1/operator/status", edit, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"status", "capacity"});
        std::string status(core::required_string(body, "status"));
        auto capacity = capacity_of(body);
        auto out = co_await s->set_status(req.user(), std::move(status), capacity);
        co_return Response::json(out);
    });
    router.add(Method::kGet, "/api/v1/operator/status", view, [s](Request& req) -> Awaitable {
        co_return Response::json(s->status_of(req.user()));
    });
    router.add(Method::kGet, "/api/v1/operator/signature", view, [s](Request& req) -> Awaitable {
        co_return Response::json(s->signature(req.user()));
    });
    router.add(Method::kPut, "/api/v1/operator/signature", edit, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"text", "enabled"});
        std::string text = core::optional_string(body, "text").value_or("");
        bool enabled = core::optional_bool(body, "enabled").value_or(!text.empty());
        auto out = co_await s->set_signature(req.user(), std::move(text), enabled);
        co_return Response::json(out);
    });
    router.add(Method::kGet, "/api/v1/operator/folders", view, [s](Request& req) -> Awaitable {
        co_return Response::json(http::page(s->folders(req.user()), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/operator/folders", edit, [s](Request& req) -> Awaitable {
        auto out = co_await s->create_folder(req.user(), req.json());
        co_return Response::json(out, 201);
    });
    router.add(Method::kPut, "/api/v1/operator/folders/order", edit, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"ids"});
        auto ids = strings_of(body, "ids", kMaxFoldersPerUser + 5, true);
        auto out = co_await s->order_folders(req.user(), std::move(ids));
        co_return Response::json(http::page(std::move(out), std::nullopt));
    });
    router.add(Method::kPatch, "/api/v1/operator/folders/{id}", edit, [s](Request& req) -> Awaitable {
        auto out = co_await s->update_folder(req.user(), req.param("id"), req.json());
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/operator/folders/{id}", edit, [s](Request& req) -> Awaitable {
        co_await s->delete_folder(req.user(), req.param("id"));
        co_return Response::no_content();
    });

    // ---- The supervisor's view: operators, their load, queues, reassignment ----------------------------------
    router.add(Method::kGet, "/api/v1/operator/operators", supervise,
               [s](Request&) -> Awaitable { co_return Response::json(http::page(s->operators(), std::nullopt)); });
    router.add(Method::kPatch, "/api/v1/operator/operators/{user}", supervise, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"status", "capacity"});
        auto status = core::optional_string(body, "status");
        auto capacity = capacity_of(body);
        if (!status && !capacity) internal::bad_field("body", "give 'status' and/or 'capacity'");
        auto out = co_await s->update_operator(req.user(), req.param("user"), std::move(status), capacity);
        co_return Response::json(out);
    });
    router.add(Method::kPost, "/api/v1/operator/operators/{user}/reassign", supervise, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"dialog_ids", "to_operator_id"});
        auto ids = strings_of(body, "dialog_ids", kMaxReassignDialogs, false);
        auto to = core::optional_string(body, "to_operator_id");
        auto out = co_await s->reassign(req.user(), req.param("user"), std::move(ids), std::move(to));
        co_return Response::json(out);
    });
    router.add(Method::kGet, "/api/v1/operator/queues", view, [s](Request&) -> Awaitable {
        co_return Response::json(http::page(s->queues(), std::nullopt));
    });

    // ---- Statuses, skill groups, subjects, segment rules ----------------------------------------------------
    router.add(Method::kGet, "/api/v1/operator/statuses/{kind}", view, [s](Request& req) -> Awaitable {
        co_return Response::json(http::page(s->statuses(req.param("kind")), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/operator/statuses/{kind}", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->create_status(req.user(), req.param("kind"), req.json());
        co_return Response::json(out, 201);
    });
    router.add(Method::kPatch, "/api/v1/operator/statuses/{kind}/{name}", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->update_status(req.user(), req.param("kind"), req.param("name"), req.json());
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/operator/statuses/{kind}/{name}", define, [s](Request& req) -> Awaitable {
        co_await s->delete_status(req.user(), req.param("kind"), req.param("name"));
        co_return Response::no_content();
    });
    router.add(Method::kGet, "/api/v1/operator/skill-groups", view, [s](Request&) -> Awaitable {
        co_return Response::json(http::page(s->skill_groups(), std::nullopt));
    });
    router.add(Method::kGet, "/api/v1/operator/skill-groups/{id}", view, [s](Request& req) -> Awaitable {
        co_return Response::json(s->skill_group(req.param("id")));
    });
    router.add(Method::kPost, "/api/v1/operator/skill-groups", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->create_skill_group(req.user(), req.json());
        co_return Response::json(out, 201);
    });
    router.add(Method::kPatch, "/api/v1/operator/skill-groups/{id}", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->update_skill_group(req.user(), req.param("id"), req.json());
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/operator/skill-groups/{id}", define, [s](Request& req) -> Awaitable {
        co_await s->delete_skill_group(req.user(), req.param("id"));
        co_return Response::no_content();
    });
    router.add(Method::kPut, "/api/v1/operator/skill-groups/{id}/members/{user}", define, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"skill_level"});
        std::int64_t level = core::optional_int(body, "skill_level").value_or(kMinSkillLevel);
        if (level < kMinSkillLevel || level > kMaxSkillLevel) {
            internal::bad_field("skill_level", fmt::format("'skill_level' is from {} to {}", kMinSkillLevel, kMaxSkillLevel));
        }
        auto out = co_await s->put_member(req.user(), req.param("id"), req.param("user"), static_cast<int>(level));
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/operator/skill-groups/{id}/members/{user}", define, [s](Request& req) -> Awaitable {
        co_await s->delete_member(req.user(), req.param("id"), req.param("user"));
        co_return Response::no_content();
    });
    router.add(Method::kGet, "/api/v1/operator/subjects", view, [s](Request&) -> Awaitable {
        co_return Response::json(http::page(s->subjects(), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/operator/subjects", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->create_subject(req.user(), req.json());
        co_return Response::json(out, 201);
    });
    router.add(Method::kPatch, "/api/v1/operator/subjects/{id}", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->update_subject(req.user(), req.param("id"), req.json());
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/operator/subjects/{id}", define, [s](Request& req) -> Awaitable {
        co_await s->delete_subject(req.user(), req.param("id"));
        co_return Response::no_content();
    });
    router.add(Method::kGet, "/api/v1/operator/segment-rules", see_settings, [s](Request&) -> Awaitable {
        co_return Response::json(http::page(s->segment_rules(), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/operator/segment-rules", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->create_segment_rule(req.user(), req.json());
        co_return Response::json(out, 201);
    });
    router.add(Method::kPut, "/api/v1/operator/segment-rules/order", define, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"ids"});
        auto ids = strings_of(body, "ids", kMaxSegmentRules, true);
        auto out = co_await s->order_segment_rules(req.user(), std::move(ids));
        co_return Response::json(http::page(std::move(out), std::nullopt));
    });
    router.add(Method::kPatch, "/api/v1/operator/segment-rules/{id}", define, [s](Request& req) -> Awaitable {
        auto out = co_await s->update_segment_rule(req.user(), req.param("id"), req.json());
        co_return Response::json(out);
    });
    router.add(Method::kDelete, "/api/v1/operator/segment-rules/{id}", define, [s](Request& req) -> Awaitable {
        co_await s->delete_segment_rule(req.user(), req.param("id"));
        co_return Response::no_content();
    });

    // ---- Dialogs ----------------------------------------------------------------------------------------------
    router.add(Method::kGet, "/api/v1/operator/dialogs", view, [s](Request& req) -> Awaitable {
        std::string folder = http::query_text(req, "folder", 64).value_or("mine");
        std::size_t limit = http::page_limit(req);
        auto cursor = http::query_text(req, "cursor", 64);
        DialogFilter filter = filter_of(req);
        std::optional<std::string> next;
        auto items = s->dialogs(req.user(), folder, filter, cursor, limit, &next);
        co_return Response::json(http::page(std::move(items), next));
    });
    router.add(Method::kPost, "/api/v1/operator/dialogs", edit, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"client_id", "channel", "text"});
        std::string client(core::required_string(body, "client_id"));
        std::string channel(core::required_string(body, "channel"));
        std::string text(core::required_string(body, "text"));
        auto out = co_await s->start_dialog(req.user(), std::move(client), std::move(channel), std::move(text));
        co_return Response::json(out, 201);
    });
    router.add(Method::kGet, "/api/v1/operator/dialogs/{id}", view, [s](Request& req) -> Awaitable {
        co_return Response::json(s->dialog(req.user(), req.param("id")));
    });
    router.add(Method::kPatch, "/api/v1/operator/dialogs/{id}", edit, [s](Request& req) -> Awaitable {
        auto out = co_await s->update_dialog(req.user(), req.param("id"), req.json());
        co_return Response::json(out);
    });
    router.add(Method::kGet, "/api/v1/operator/dialogs/{id}/history", view, [s](Request& req) -> Awaitable {
        std::size_t limit = http::page_limit(req);
        auto cursor = http::query_text(req, "cursor", 64);
        std::optional<std::string> next;
        auto items = s->history(req.user(), req.param("id"), cursor, limit, &next);
        co_return Response::json(http::page(std::move(items), next));
    });
    router.add(Method::kPost, "/api/v1/operator/dialogs/{id}/take", edit, [s](Request& req) -> Awaitable {
        auto out = co_await s->take(req.user(), req.param("id"));
        co_return Response::json(out);
    });
    router.add(Method::kPost, "/api/v1/operator/dialogs/{id}/messages", edit, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"text", "attachment", "signature"});
        std::string text = body.contains("attachment") ? core::optional_string(body, "text").value_or("")
                                                       : std::string(core::required_string(body, "text"));
        std::optional<OperatorService::Attachment> attachment;
        if (body.contains("attachment")) {
            const auto& a = core::required_object(body, "attachment");
            core::reject_unknown_fields(a, {"url", "name", "mime"});
            attachment = OperatorService::Attachment{std::string(core::required_string(a, "url")),
                                                     std::string(core::required_string(a, "name")),
                                                     core::optional_string(a, "mime").value_or("application/octet-stream")};
        }
        bool signature = core::optional_bool(body, "signature").value_or(true);
        auto out = co_await s->reply(req.user(), req.param("id"), std::move(text), std::move(attachment), signature);
        co_return Response::json(out, 201);
    });
    router.add(Method::kGet, "/api/v1/operator/dialogs/{id}/messages", view, [s](Request& req) -> Awaitable {
        std::int64_t after = http::query_int(req, "after", 0, INT64_MAX).value_or(0);
        std::size_t limit = static_cast<std::size_t>(http::query_int(req, "limit", 1, 500).value_or(500));
        auto items = s->messages(req.user(), req.param("id"), after, limit);
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/operator/dialogs/{id}/transfer", edit, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"operator_id", "group_id", "comment"});
        auto to_operator = core::optional_string(body, "operator_id");
        auto to_group = core::optional_string(body, "group_id");
        std::string comment = core::optional_string(body, "comment").value_or("");
        auto out = co_await s->transfer(req.user(), req.param("id"), std::move(to_operator), std::move(to_group),
                                        std::move(comment));
        co_return Response::json(out);
    });
    router.add(Method::kPost, "/api/v1/operator/dialogs/{id}/tags", edit, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"tags"});
        auto tags = strings_of(body, "tags", kMaxDialogTags, true);
        auto out = co_await s->add_tags(req.user(), req.param("id"), std::move(tags));
        co_return Response::json(json::object{{"tags", std::move(out)}});
    });
    router.add(Method::kDelete, "/api/v1/operator/dialogs/{id}/tags/{tag}", edit, [s](Request& req) -> Awaitable {
        co_await s->remove_tag(req.user(), req.param("id"), req.param("tag"));
        co_return Response::no_content();
    });
    router.add(Method::kGet, "/api/v1/operator/dialogs/{id}/notes", view, [s](Request& req) -> Awaitable {
        co_return Response::json(http::page(s->notes(req.user(), req.param("id")), std::nullopt));
    });
    router.add(Method::kPost, "/api/v1/operator/dialogs/{id}/notes", edit, [s](Request& req) -> Awaitable {
        auto body = req.json();
        core::reject_unknown_fields(body, {"text"});
        std::string text(core::required_string(body, "text"));
        auto out = co_await s->add_note(req.user(), req.param("id"), std::move(text));
        co_return Response::json(out, 201);
    });
    router.add(Method::kPost, "/api/v1/operator/dialogs/{id}/read", edit, [s](Request& req) -> Awaitable {
        json::object body = req.body.empty() ? json::object{} : req.json();
        core::reject_unknown_fields(body, {"n"});
        auto n = core::optional_int(body, "n");
        auto out = co_await s->mark_read(req.user(), req.param("id"), n);
        co_return Response::json(out);
    });
    router.add(Method::kGet, "/api/v1/operator/dialogs/{id}/copilot", view, [s](Request& req) -> Awaitable {
        co_return Response::json(s->copilot(req.user(), req.param("id")));
    });
    router.add(Method::kPost, "/api/v1/operator/dialogs/{id}/close", edit, [s](Request& req) -> Awaitable {
        co_await s->close(req.user(), req.param("id"));
        co_return Response::json(boost::json::object{{"id", req.param("id")}, {"status", "closed"}});
    });

    // ---- Quick replies ----------------------------------------------------------------------------------------
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
}

}  // namespace parley::operators
