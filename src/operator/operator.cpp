#include "operator/operator.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <unordered_map>

#include "auth/permissions.h"
#include "clients/clients.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/template.h"
#include "core/json.h"
#include "core/log.h"
#include "events/events.h"
#include "operator/internal/filter.h"
#include "operator/internal/routing.h"
#include "operator/internal/rows.h"
#include "store/async.h"

namespace parley::operators {

namespace internal {

const char* const kDialogColumns =
    "o.dialog_id, o.bot_id, o.client_id, o.channel, o.subject, o.state, o.operator_id, o.message, o.created_at, "
    "o.queued_at, o.assigned_at, o.closed_at, c.name, coalesce(o.group_id, ''), o.label, "
    "(SELECT group_concat(t.tag, ',') FROM op_dialog_tags t WHERE t.dialog_id = o.dialog_id), coalesce(d.last_n, 0), "
    "(SELECT r.last_n FROM op_read_markers r WHERE r.dialog_id = o.dialog_id AND r.user_id = ?), o.updated_at, o.outgoing";
const char* const kDialogFrom =
    "op_dialogs o LEFT JOIN clients c ON c.id = o.client_id LEFT JOIN dialogs d ON d.id = o.dialog_id";

namespace {
json::value time_or_null(std::int64_t ms) { return ms ? json::value(core::format_time(ms)) : json::value(nullptr); }
}  // namespace

json::object dialog_json(const store::Row& r) {
    json::array tags;
    if (!r.text(15).empty()) {
        std::vector<std::string> sorted;
        std::string_view all = r.text(15);
        std::size_t start = 0;
        while (start <= all.size()) {
            auto comma = all.find(',', start);
            if (comma == std::string_view::npos) comma = all.size();
            sorted.emplace_back(all.substr(start, comma - start));
            start = comma + 1;
        }
        std::sort(sorted.begin(), sorted.end());
        for (auto& t : sorted) tags.emplace_back(t);
    }
    std::int64_t last_n = r.integer(16);
    std::int64_t read_n = r.integer(17);
    return json::object{{"id", r.text(0)},
                        {"bot_id", r.text(1)},
                        {"client", json::object{{"id", r.text(2)}, {"name", r.text(12)}}},
                        {"channel", r.text(3)},
                        {"subject", r.text(4)},
                        {"status", r.text(5)},
                        {"operator_id", r.is_null(6) ? json::value(nullptr) : json::value(r.text(6))},
                        {"group_id", r.text(13).empty() ? json::value(nullptr) : json::value(r.text(13))},
                        {"label", r.text(14)},
                        {"tags", std::move(tags)},
                        {"message", r.text(7)},
                        {"outgoing", r.integer(19) != 0},
                        {"last_n", last_n},
                        {"read_n", read_n},
                        {"unread", std::max<std::int64_t>(0, last_n - read_n)},
                        {"created_at", time_or_null(r.integer(8))},
                        {"queued_at", time_or_null(r.integer(9))},
                        {"assigned_at", time_or_null(r.integer(10))},
                        {"closed_at", time_or_null(r.integer(11))},
                        {"updated_at", time_or_null(r.integer(18))}};
}

bool supervisor(const core::Principal& who) { return who.can(auth::kModuleOperator, core::Action::kDelete); }

void bad_field(const std::string& field, const std::string& message) {
    throw core::BadRequest(message, "invalid_" + field, json::array{json::object{{"field", field}}});
}

}  // namespace internal

namespace {

using internal::dialog_json;
using internal::supervisor;

json::value time_or_null(std::int64_t ms) { return ms ? json::value(core::format_time(ms)) : json::value(nullptr); }
json::value body_group(const std::string& group) { return group.empty() ? json::value(nullptr) : json::value(group); }

}  // namespace

std::vector<store::Migration> migrations() {
    return {{"operator", 1, "operators and handed-over dialogs",
             R"sql(
CREATE TABLE op_operators (
  user_id TEXT PRIMARY KEY,
  status TEXT NOT NULL DEFAULT 'offline',
  capacity INTEGER NOT NULL DEFAULT 5,
  active_dialogs INTEGER NOT NULL DEFAULT 0,
  last_assigned_at INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL
);
CREATE TABLE op_dialogs (
  dialog_id TEXT PRIMARY KEY,
  bot_id TEXT NOT NULL,
  client_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  subject TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  operator_id TEXT,
  message TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  queued_at INTEGER NOT NULL DEFAULT 0,
  assigned_at INTEGER NOT NULL DEFAULT 0,
  closed_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX op_dialogs_state ON op_dialogs(state, queued_at);
CREATE INDEX op_dialogs_operator ON op_dialogs(operator_id, state);
)sql"},
            {"operator", 2, "quick replies",
             R"sql(
CREATE TABLE op_quick_replies (
  id TEXT PRIMARY KEY,
  owner_id TEXT,
  title TEXT NOT NULL,
  text TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX op_quick_replies_owner ON op_quick_replies(owner_id);
)sql"},
            {"operator", 3, "statuses, skill groups, subjects, segment rules, tags, notes, folders, read markers",
             R"sql(
CREATE TABLE op_statuses (
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  title TEXT NOT NULL,
  accepts_dialogs INTEGER NOT NULL DEFAULT 0,
  builtin INTEGER NOT NULL DEFAULT 0,
  position INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (kind, name)
);
INSERT INTO op_statuses(kind, name, title, accepts_dialogs, builtin, position) VALUES
  ('operator', 'online', 'Online', 1, 1, 1), ('operator', 'away', 'Away', 0, 1, 2),
  ('operator', 'break', 'Break', 0, 1, 3), ('operator', 'offline', 'Offline', 0, 1, 4);
ALTER TABLE op_operators ADD COLUMN status_since INTEGER NOT NULL DEFAULT 0;
ALTER TABLE op_operators ADD COLUMN signature TEXT NOT NULL DEFAULT '';
ALTER TABLE op_operators ADD COLUMN signature_enabled INTEGER NOT NULL DEFAULT 0;
UPDATE op_operators SET status_since = updated_at;
CREATE TABLE op_skill_groups (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  policy TEXT NOT NULL,
  rr_last TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE op_group_members (
  group_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  skill_level INTEGER NOT NULL,
  PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX op_group_members_user ON op_group_members(user_id);
CREATE TABLE op_subjects (
  id TEXT PRIMARY KEY,
  alias TEXT NOT NULL UNIQUE,
  title TEXT NOT NULL,
  group_id TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE op_segment_rules (
  id TEXT PRIMARY KEY,
  position INTEGER NOT NULL,
  name TEXT NOT NULL,
  condition TEXT NOT NULL,
  group_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
ALTER TABLE op_dialogs ADD COLUMN group_id TEXT;
ALTER TABLE op_dialogs ADD COLUMN label TEXT NOT NULL DEFAULT '';
ALTER TABLE op_dialogs ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE op_dialogs ADD COLUMN avoid_operator TEXT NOT NULL DEFAULT '';
ALTER TABLE op_dialogs ADD COLUMN outgoing INTEGER NOT NULL DEFAULT 0;
UPDATE op_dialogs SET updated_at = max(created_at, assigned_at, closed_at);
CREATE INDEX op_dialogs_client ON op_dialogs(client_id);
CREATE INDEX op_dialogs_queue ON op_dialogs(state, group_id, queued_at) WHERE state = 'queue';
CREATE TABLE op_dialog_tags (
  dialog_id TEXT NOT NULL,
  tag TEXT NOT NULL,
  PRIMARY KEY (dialog_id, tag)
) WITHOUT ROWID;
CREATE INDEX op_dialog_tags_tag ON op_dialog_tags(tag);
CREATE TABLE op_notes (
  id TEXT PRIMARY KEY,
  dialog_id TEXT NOT NULL,
  author_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  text TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX op_notes_dialog ON op_notes(dialog_id, created_at);
CREATE TABLE op_folders (
  id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  name TEXT NOT NULL,
  position INTEGER NOT NULL,
  filter TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX op_folders_owner ON op_folders(owner_id, position);
CREATE TABLE op_folder_layout (
  user_id TEXT PRIMARY KEY,
  ids TEXT NOT NULL
);
CREATE TABLE op_read_markers (
  user_id TEXT NOT NULL,
  dialog_id TEXT NOT NULL,
  last_n INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, dialog_id)
) WITHOUT ROWID;
CREATE TABLE op_attachments (
  dialog_id TEXT NOT NULL,
  n INTEGER NOT NULL,
  url TEXT NOT NULL,
  name TEXT NOT NULL,
  mime TEXT NOT NULL,
  PRIMARY KEY (dialog_id, n)
) WITHOUT ROWID;
)sql"}};
}

OperatorService::OperatorService(store::Store& store, const core::Clock& clock, bots::DialogService& dialogs,
                                 bots::TriggerService& triggers, events::EventHub* hub,
                                 const auth::InstanceSettings* settings)
    : store_(store), clock_(clock), dialogs_(dialogs), triggers_(triggers), hub_(hub), settings_(settings) {}

void OperatorService::publish(const std::string& type, json::object body, const std::string& user_id) {
    if (!hub_) return;
    if (user_id.empty()) {
        hub_->publish(type, std::move(body), events::Audience::permission(std::string(auth::kModuleOperator), core::Action::kView));
    } else {
        hub_->publish(type, std::move(body), events::Audience::user(user_id));
    }
}

void OperatorService::publish_dialog_event(const std::string& type, json::object body, const std::string& operator_id) {
    if (!hub_) return;
    if (operator_id.empty()) {
        publish(type, std::move(body));
        return;
    }
    hub_->publish(type, std::move(body),
                  events::Audience::users_or({operator_id}, std::string(auth::kModuleOperator), core::Action::kDelete));
}

bool OperatorService::auto_connect_enabled() const {
    if (!settings_) return true;
    auto value = settings_->get(kSettingAutoConnect);
    return !value || !value->is_bool() || value->as_bool();
}

namespace {

/// Changes an operator's status inside a write; going offline puts their open dialogs back in the queue.
/// Returns the requeued dialogs. Throws BadRequest for an unknown status.
std::vector<std::string> change_status(store::Tx& tx, const std::string& user, const std::optional<std::string>& status,
                                       std::optional<unsigned> capacity, std::int64_t now) {
    internal::ensure_operator(tx, user, now);
    std::vector<std::string> requeued;
    if (status) {
        if (!internal::status_accepts(tx, *status)) {
            std::string names;
            for (const auto& r : tx.query("SELECT name FROM op_statuses WHERE kind = 'operator' ORDER BY position, name")) {
                names += (names.empty() ? "" : ", ") + r.text(0);
            }
            internal::bad_field("status", fmt::format("'status' is one of: {}", names));
        }
        tx.exec("UPDATE op_operators SET status_since = ? WHERE user_id = ? AND status <> ?", {now, user, *status});
        tx.exec("UPDATE op_operators SET status = ?, updated_at = ? WHERE user_id = ?", {*status, now, user});
        if (*status == "offline") {
            // Reassign chats: the operator's open dialogs go back to the queue (keeping their place and group).
            for (const auto& r : tx.query("SELECT dialog_id FROM op_dialogs WHERE operator_id = ? AND state = 'assigned'", {user})) {
                requeued.push_back(r.text(0));
            }
            tx.exec("UPDATE op_dialogs SET state = 'queue', operator_id = NULL, updated_at = ? "
                    "WHERE operator_id = ? AND state = 'assigned'",
                    {now, user});
            tx.exec("UPDATE op_operators SET active_dialogs = 0 WHERE user_id = ?", {user});
        }
    }
    if (capacity) {
        tx.exec("UPDATE op_operators SET capacity = ?, updated_at = ? WHERE user_id = ?",
                {static_cast<std::int64_t>(*capacity), now, user});
    }
    return requeued;
}

void check_capacity(std::optional<unsigned> capacity) {
    if (capacity && (*capacity < 1 || *capacity > kMaxCapacity)) {
        internal::bad_field("capacity", fmt::format("'capacity' is from 1 to {}", kMaxCapacity));
    }
}

}  // namespace

boost::asio::awaitable<json::object> OperatorService::set_status(const core::Principal& who, std::string status,
                                                                 std::optional<unsigned> capacity) {
    check_capacity(capacity);
    std::int64_t now = clock_.now_ms();
    auto write = [user = who.user_id, status, capacity, now](store::Tx& tx) {
        return change_status(tx, user, status, capacity, now);
    };
    auto requeued = co_await store::co_write(store_, std::move(write));
    publish("operator.status", json::object{{"user_id", who.user_id}, {"status", status}});
    for (auto& id : requeued) publish("operator.dialog", json::object{{"dialog_id", id}, {"status", "queue"}});
    co_await dispatch_queue();
    co_return status_of(who.user_id);
}

boost::asio::awaitable<json::object> OperatorService::update_operator(const core::Principal& who, std::string user_id,
                                                                      std::optional<std::string> status,
                                                                      std::optional<unsigned> capacity) {
    if (!supervisor(who)) throw core::Forbidden("changing another operator needs operator.delete", "forbidden");
    check_capacity(capacity);
    std::int64_t now = clock_.now_ms();
    auto write = [user_id, status, capacity, now](store::Tx& tx) -> std::optional<std::vector<std::string>> {
        if (!tx.query_one("SELECT 1 FROM auth_users WHERE id = ?", {user_id})) return std::nullopt;
        return change_status(tx, user_id, status, capacity, now);
    };
    auto requeued = co_await store::co_write(store_, std::move(write));
    if (!requeued) throw core::NotFound(fmt::format("no user '{}'", user_id), "user_not_found");
    json::object out = status_of(user_id);
    publish("operator.status", json::object{{"user_id", user_id}, {"status", out.at("status")}});
    for (auto& id : *requeued) publish("operator.dialog", json::object{{"dialog_id", id}, {"status", "queue"}});
    co_await dispatch_queue();
    co_return status_of(user_id);
}

json::object OperatorService::status_of(const core::Principal& who) const { return status_of(who.user_id); }

json::object OperatorService::status_of(std::string_view user_id) const {
    json::object out{{"user_id", user_id},    {"status", "offline"},   {"capacity", kDefaultCapacity},
                     {"active_dialogs", 0},   {"accepts_dialogs", false}, {"status_since", nullptr}};
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one("SELECT o.status, o.capacity, o.active_dialogs, o.status_since, "
                                  "coalesce(s.accepts_dialogs, 0) FROM op_operators o LEFT JOIN op_statuses s "
                                  "ON s.kind = 'operator' AND s.name = o.status WHERE o.user_id = ?",
                                  {std::string(user_id)})) {
            out["status"] = r->text(0);
            out["capacity"] = r->integer(1);
            out["active_dialogs"] = r->integer(2);
            out["status_since"] = time_or_null(r->integer(3));
            out["accepts_dialogs"] = r->integer(4) != 0;
        }
    });
    return out;
}

json::object OperatorService::visible_dialog(const core::Principal& who, std::string_view dialog_id) const {
    std::optional<json::object> out;
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one(fmt::format("SELECT {} FROM {} WHERE o.dialog_id = ?", internal::kDialogColumns,
                                              internal::kDialogFrom),
                                  {who.user_id, std::string(dialog_id)})) {
            out = dialog_json(*r);
        }
    });
    if (!out) throw core::NotFound(fmt::format("no operator dialog '{}'", dialog_id), "dialog_not_found");
    const auto& status = out->at("status").as_string();
    bool mine = out->at("operator_id").is_string() && out->at("operator_id").as_string() == who.user_id;
    bool waiting = status == "queue" || status == "unassigned";
    if (!mine && !waiting && !supervisor(who)) {
        throw core::Forbidden("this dialog is another operator's", "not_your_dialog");
    }
    return *out;
}

json::object OperatorService::held_dialog(const core::Principal& who, std::string_view dialog_id) const {
    json::object dialog = visible_dialog(who, dialog_id);
    bool mine = dialog.at("operator_id").is_string() && dialog.at("operator_id").as_string() == who.user_id;
    if (!mine && !supervisor(who)) {
        throw core::Forbidden("only the assigned operator or a supervisor may do this", "not_your_dialog");
    }
    return dialog;
}

boost::asio::awaitable<json::object> OperatorService::take(const core::Principal& who, std::string dialog_id) {
    visible_dialog(who, dialog_id);
    std::int64_t now = clock_.now_ms();
    auto write = [dialog_id, user = who.user_id, now](store::Tx& tx) -> std::string {
        auto r = tx.query_one("SELECT state, operator_id FROM op_dialogs WHERE dialog_id = ?", {dialog_id});
        if (!r) return "missing";
        if (r->text(0) == "assigned") return r->text(1) == user ? "mine" : "taken";
        if (r->text(0) == "closed") return "closed";
        internal::ensure_operator(tx, user, now);
        if (!internal::has_room(tx, user)) return "full";
        internal::assign(tx, dialog_id, user, now);
        return "ok";
    };
    std::string outcome = co_await store::co_write(store_, std::move(write));
    if (outcome == "missing") throw core::NotFound(fmt::format("no operator dialog '{}'", dialog_id), "dialog_not_found");
    if (outcome == "taken") throw core::Conflict("another operator has taken this dialog", "already_taken");
    if (outcome == "closed") throw core::Conflict("the dialog is closed", "dialog_closed");
    if (outcome == "full") throw core::Conflict("you are at your capacity; close a dialog first", "at_capacity");
    json::object dialog = visible_dialog(who, dialog_id);
    publish("operator.dialog", json::object{{"dialog_id", dialog_id}, {"status", "assigned"}, {"operator_id", who.user_id}});
    co_return dialog;
}

boost::asio::awaitable<json::object> OperatorService::reply(const core::Principal& who, std::string dialog_id,
                                                            std::string text) {
    return reply(who, std::move(dialog_id), std::move(text), std::nullopt, true);
}

boost::asio::awaitable<json::object> OperatorService::reply(const core::Principal& who, std::string dialog_id,
                                                            std::string text, std::optional<Attachment> attachment,
                                                            bool signature) {
    if (text.empty() && !attachment) {
        throw core::BadRequest("'text' is empty", "empty_text", json::array{json::object{{"field", "text"}}});
    }
    if (text.size() > kMaxReplyBytes) {
        throw core::TooLarge(fmt::format("'text' is longer than {} bytes", kMaxReplyBytes), "too_large",
                             json::array{json::object{{"field", "text"}}});
    }
    if (attachment) {
        const auto& a = *attachment;
        bool http = a.url.rfind("https://", 0) == 0 || a.url.rfind("http://", 0) == 0;
        if (!http || a.url.size() > kMaxAttachmentUrlBytes || a.url.find_first_of(" \r\n\t") != std::string::npos) {
            internal::bad_field("attachment", fmt::format("'attachment.url' is an http(s) URL of at most {} bytes",
                                                          kMaxAttachmentUrlBytes));
        }
        if (a.name.empty() || a.name.size() > kMaxAttachmentNameBytes || a.name.find_first_of("\r\n") != std::string::npos) {
            internal::bad_field("attachment", fmt::format("'attachment.name' is 1 to {} bytes on one line",
                                                          kMaxAttachmentNameBytes));
        }
        auto slash = a.mime.find('/');
        bool mime_ok = a.mime.size() <= 100 && slash != std::string::npos && slash > 0 && slash + 1 < a.mime.size();
        for (char c : a.mime) {
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '+' || c == '-' || c == '_')) {
                mime_ok = false;
            }
        }
        if (!mime_ok) internal::bad_field("attachment", "'attachment.mime' is a MIME type such as image/png");
    }
    json::object dialog = visible_dialog(who, dialog_id);
    bool mine = dialog.at("operator_id").is_string() && dialog.at("operator_id").as_string() == who.user_id;
    if (dialog.at("status") != "assigned" || (!mine && !supervisor(who))) {
        if (dialog.at("status") == "assigned") throw core::Forbidden("this dialog is another operator's", "not_your_dialog");
        throw core::Conflict("take the dialog before answering", "not_assigned");
    }
    std::string body = text;
    if (signature) {
        store_.read([&](store::Tx& tx) {
            auto r = tx.query_one("SELECT signature FROM op_operators WHERE user_id = ? AND signature_enabled = 1 "
                                  "AND signature <> ''",
                                  {who.user_id});
            if (r && !body.empty()) body += "\n\n" + r->text(0);
        });
    }
    if (attachment) {
        // Channels without media get the link; the attachment itself is kept beside the message (payload).
        body += (body.empty() ? "" : "\n") + attachment->name + ": " + attachment->url;
    }
    std::string from = "operator";
    auto message = co_await dialogs_.post(dialog_id, std::move(from), std::move(body), false);
    json::object out = message ? message->to_json() : json::object{};
    std::int64_t now = clock_.now_ms();
    if (message) {
        std::int64_t n = message->n;
        auto record = [dialog_id, user = who.user_id, n, now, attachment](store::Tx& tx) {
            if (attachment) {
                tx.exec("INSERT OR REPLACE INTO op_attachments(dialog_id, n, url, name, mime) VALUES (?, ?, ?, ?, ?)",
                        {dialog_id, n, attachment->url, attachment->name, attachment->mime});
            }
            // One's own reply is read.
            tx.exec("INSERT INTO op_read_markers(user_id, dialog_id, last_n, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(user_id, dialog_id) DO UPDATE SET last_n = max(last_n, excluded.last_n), "
                    "updated_at = excluded.updated_at",
                    {user, dialog_id, n, now});
            tx.exec("UPDATE op_dialogs SET updated_at = ? WHERE dialog_id = ?", {now, dialog_id});
        };
        co_await store::co_write(store_, std::move(record));
        if (attachment) {
            json::object payload = out["payload"].is_object() ? out["payload"].as_object() : json::object{};
            payload["attachment"] = json::object{{"url", attachment->url}, {"name", attachment->name}, {"mime", attachment->mime}};
            out["payload"] = std::move(payload);
        }
    }
    std::string holder = dialog.at("operator_id").is_string() ? std::string(dialog.at("operator_id").as_string()) : "";
    publish_dialog_event("operator.message", json::object{{"dialog_id", dialog_id}, {"message", out}}, holder);
    co_return out;
}

boost::asio::awaitable<void> OperatorService::close(const core::Principal& who, std::string dialog_id) {
    json::object dialog = visible_dialog(who, dialog_id);
    bool mine = dialog.at("operator_id").is_string() && dialog.at("operator_id").as_string() == who.user_id;
    if (dialog.at("status") == "closed") throw core::Conflict("the dialog is already closed", "dialog_closed");
    if (!mine && !supervisor(who)) throw core::Forbidden("only the assigned operator or a supervisor closes a dialog", "not_your_dialog");
    std::int64_t now = clock_.now_ms();
    auto write = [dialog_id, now](store::Tx& tx) {
        auto r = tx.query_one("SELECT state, operator_id FROM op_dialogs WHERE dialog_id = ?", {dialog_id});
        if (!r || r->text(0) == "closed") return;
        if (r->text(0) == "assigned" && !r->is_null(1)) internal::unload(tx, r->text(1));
        tx.exec("UPDATE op_dialogs SET state = 'closed', closed_at = ?, updated_at = ? WHERE dialog_id = ?",
                {now, now, dialog_id});
    };
    co_await store::co_write(store_, std::move(write));
    co_await hand_back(std::move(dialog_id));
}

boost::asio::awaitable<void> OperatorService::hand_back(std::string dialog_id) {
    // The client goes back to the bot, then the bot's `dialog_closed` triggers run (e.g. a CSAT question).
    std::string from = "system";
    std::string none;
    co_await dialogs_.post(dialog_id, std::move(from), std::move(none), true);
    publish("operator.dialog", json::object{{"dialog_id", dialog_id}, {"status", "closed"}});
    std::string event = "dialog_closed";
    co_await triggers_.emit(dialog_id, std::move(event));
    co_await dispatch_queue();
}

json::array OperatorService::messages(const core::Principal& who, std::string_view dialog_id, std::int64_t after,
                                      std::size_t limit) const {
    visible_dialog(who, dialog_id);
    auto list = dialogs_.messages(dialog_id, after, limit);
    std::unordered_map<std::int64_t, json::object> attachments;
    if (!list.empty()) {
        store_.read([&](store::Tx& tx) {
            for (const auto& r : tx.query("SELECT n, url, name, mime FROM op_attachments WHERE dialog_id = ? AND n > ? AND n <= ?",
                                          {std::string(dialog_id), after, list.back().n})) {
                attachments[r.integer(0)] = json::object{{"url", r.text(1)}, {"name", r.text(2)}, {"mime", r.text(3)}};
            }
        });
    }
    json::array out;
    for (const auto& m : list) {
        json::object item = m.to_json();
        if (auto it = attachments.find(m.n); it != attachments.end()) {
            json::object payload = item["payload"].is_object() ? item["payload"].as_object() : json::object{};
            payload["attachment"] = it->second;
            item["payload"] = std::move(payload);
        }
        out.push_back(std::move(item));
    }
    return out;
}

namespace {

/// Whether the dialog is still assigned to `operator_id` with its last message number `last_n` (nothing happened
/// since a timer decided to act on it).
bool unchanged(store::Tx& tx, const std::string& dialog_id, const std::string& operator_id, std::int64_t last_n) {
    auto r = tx.query_one("SELECT o.state, coalesce(o.operator_id, ''), coalesce(d.last_n, 0) FROM op_dialogs o "
                          "LEFT JOIN dialogs d ON d.id = o.dialog_id WHERE o.dialog_id = ?",
                          {dialog_id});
    return r && r->text(0) == "assigned" && r->text(1) == operator_id && r->integer(2) == last_n;
}

}  // namespace

boost::asio::awaitable<bool> OperatorService::close_idle(std::string dialog_id, std::string operator_id,
                                                         std::int64_t last_n) {
    std::int64_t now = clock_.now_ms();
    auto write = [dialog_id, operator_id, last_n, now](store::Tx& tx) {
        if (!unchanged(tx, dialog_id, operator_id, last_n)) return false;
        internal::unload(tx, operator_id);
        tx.exec("UPDATE op_dialogs SET state = 'closed', closed_at = ?, updated_at = ? WHERE dialog_id = ?",
                {now, now, dialog_id});
        return true;
    };
    if (!co_await store::co_write(store_, std::move(write))) co_return false;
    co_await hand_back(std::move(dialog_id));
    co_return true;
}

boost::asio::awaitable<bool> OperatorService::requeue_idle(std::string dialog_id, std::string operator_id,
                                                           std::int64_t last_n) {
    std::int64_t now = clock_.now_ms();
    auto write = [dialog_id, operator_id, last_n, now](store::Tx& tx) {
        if (!unchanged(tx, dialog_id, operator_id, last_n)) return false;
        internal::unload(tx, operator_id);
        // Back to its group's queue at its old place (an outgoing dialog never queued: now); another operator
        // takes it (the dispatch avoids the one who let it wait).
        tx.exec("UPDATE op_dialogs SET state = 'queue', operator_id = NULL, avoid_operator = ?, "
                "queued_at = CASE WHEN queued_at = 0 THEN ? ELSE queued_at END, updated_at = ? WHERE dialog_id = ?",
                {operator_id, now, now, dialog_id});
        return true;
    };
    if (!co_await store::co_write(store_, std::move(write))) co_return false;
    publish("operator.dialog", json::object{{"dialog_id", dialog_id}, {"status", "queue"}});
    co_await dispatch_queue();
    co_return true;
}

boost::asio::awaitable<std::size_t> OperatorService::dispatch_queue() {
    std::int64_t now = clock_.now_ms();
    auto write = [now](store::Tx& tx) { return internal::dispatch(tx, now); };
    auto assigned = co_await store::co_write(store_, std::move(write));
    for (auto& [dialog, user] : assigned) {
        publish("operator.dialog", json::object{{"dialog_id", dialog}, {"status", "assigned"}, {"operator_id", user}});
    }
    if (!assigned.empty()) publish("operator.queue", json::object{{"assigned", assigned.size()}});
    co_return assigned.size();
}

// ---- Dialog lists, the dialog card, history, metadata, notes, read markers, outgoing dialogs --------------------

namespace {

constexpr std::size_t kMaxChannelBytes = 64;

std::string folder_title(std::string_view id) {
    if (id == "unassigned") return "Unassigned";
    if (id == "queue") return "Queue";
    if (id == "mine") return "Mine";
    if (id == "all") return "All";
    return "Closed";
}

json::object folder_json(const store::Row& r) {
    json::value filter = json::object{};
    try {
        filter = json::parse(r.text(3));
    } catch (const std::exception&) {
        // Stored filters were validated on write; an unreadable one shows as empty.
    }
    return json::object{{"id", r.text(0)},
                        {"name", r.text(1)},
                        {"builtin", false},
                        {"position", r.integer(2)},
                        {"filter", std::move(filter)},
                        {"created_at", time_or_null(r.integer(4))},
                        {"updated_at", time_or_null(r.integer(5))}};
}

constexpr const char* kFolderColumns = "id, name, position, filter, created_at, updated_at";

json::object note_json(const store::Row& r) {
    json::object out{{"id", r.text(0)},
                     {"dialog_id", r.text(1)},
                     {"author_id", r.text(2)},
                     {"author_name", r.text(6)},
                     {"kind", r.text(3)},
                     {"created_at", time_or_null(r.integer(5))}};
    if (r.text(3) == "transfer") {
        json::value transfer = json::object{};
        try {
            transfer = json::parse(r.text(4));
        } catch (const std::exception&) {
        }
        out["text"] = transfer.is_object() && transfer.as_object().contains("comment") ? transfer.at("comment") : json::value("");
        out["transfer"] = std::move(transfer);
    } else {
        out["text"] = r.text(4);
    }
    return out;
}

constexpr const char* kNoteSelect =
    "SELECT n.id, n.dialog_id, n.author_id, n.kind, n.text, n.created_at, coalesce(u.name, '') FROM op_notes n "
    "LEFT JOIN auth_users u ON u.id = n.author_id";

std::string holder_of(const json::object& dialog) {
    const auto& op = dialog.at("operator_id");
    return op.is_string() && dialog.at("status") == "assigned" ? std::string(op.as_string()) : std::string();
}

json::array tags_of(store::Tx& tx, const std::string& dialog_id) {
    json::array out;
    for (const auto& r : tx.query("SELECT tag FROM op_dialog_tags WHERE dialog_id = ? ORDER BY tag", {dialog_id})) {
        out.emplace_back(r.text(0));
    }
    return out;
}

std::string checked_tag(const std::string& tag) {
    if (tag.empty() || tag.size() > kMaxDialogTagBytes) {
        internal::bad_field("tags", fmt::format("each tag is 1 to {} bytes", kMaxDialogTagBytes));
    }
    for (unsigned char c : tag) {
        if (c < 0x20 || c == 0x7f || c == ',') internal::bad_field("tags", "a tag has no commas and no control characters");
    }
    if (tag.front() == ' ' || tag.back() == ' ') internal::bad_field("tags", "a tag does not start or end with a space");
    return tag;
}

}  // namespace

json::array OperatorService::dialogs(const core::Principal& who, std::string_view folder, std::optional<std::string> cursor,
                                     std::size_t limit, std::optional<std::string>* next) const {
    return dialogs(who, folder, DialogFilter{}, std::move(cursor), limit, next);
}

json::array OperatorService::dialogs(const core::Principal& who, std::string_view folder, const DialogFilter& filter,
                                     std::optional<std::string> cursor, std::size_t limit,
                                     std::optional<std::string>* next) const {
    internal::Where where;
    std::optional<std::string> saved;
    if (internal::is_builtin_folder(folder)) {
        internal::add_builtin_folder(where, who, folder);
    } else {
        // Not a built-in name nor an id's shape: the built-in folder check answers 400.
        if (!core::looks_like_id(folder)) internal::add_builtin_folder(where, who, folder);
        store_.read([&](store::Tx& tx) {
            if (auto r = tx.query_one("SELECT filter FROM op_folders WHERE id = ? AND owner_id = ?",
                                      {std::string(folder), who.user_id})) {
                saved = r->text(0);
            }
        });
        if (!saved) throw core::NotFound(fmt::format("you have no folder '{}'", folder), "folder_not_found");
        // A saved folder looks only at what its owner may see.
        internal::add_visibility(where, who);
        internal::add_filter(where, DialogFilter::from_json(core::parse_json_object(*saved)), who.user_id);
    }
    internal::add_filter(where, filter, who.user_id);
    where.add("o.dialog_id < ?", {cursor.value_or("~")});
    store::Params params{who.user_id};
    for (auto& p : where.params) params.push_back(std::move(p));
    params.emplace_back(static_cast<std::int64_t>(limit + 1));
    json::array out;
    store_.read([&](store::Tx& tx) {
        auto rows = tx.query(fmt::format("SELECT {} FROM {} WHERE {} ORDER BY o.dialog_id DESC LIMIT ?",
                                         internal::kDialogColumns, internal::kDialogFrom, where.sql),
                             params);
        for (std::size_t i = 0; i < rows.size() && i < limit; ++i) out.push_back(dialog_json(rows[i]));
        if (next && rows.size() > limit) *next = rows[limit - 1].text(0);
    });
    return out;
}

json::object OperatorService::dialog(const core::Principal& who, std::string_view dialog_id) const {
    json::object out = visible_dialog(who, dialog_id);
    std::string client_id(out.at("client").at("id").as_string());
    store_.read([&](store::Tx& tx) {
        if (auto client = clients::find_client(tx, client_id)) out["client"] = client->to_json();
        out["notes"] = tx.query_one("SELECT count(*) FROM op_notes WHERE dialog_id = ?", {std::string(dialog_id)})->integer(0);
        out["history"] = tx.query_one("SELECT count(*) FROM dialogs WHERE client_id = ?", {client_id})->integer(0);
        json::value subject = nullptr;
        if (!out.at("subject").as_string().empty()) {
            if (auto s = tx.query_one("SELECT title FROM op_subjects WHERE alias = ?", {std::string(out.at("subject").as_string())})) {
                subject = s->text(0);
            }
        }
        out["subject_title"] = std::move(subject);
        json::value group = nullptr;
        if (out.at("group_id").is_string()) {
            if (auto g = tx.query_one("SELECT name FROM op_skill_groups WHERE id = ?", {std::string(out.at("group_id").as_string())})) {
                group = g->text(0);
            }
        }
        out["group_name"] = std::move(group);
    });
    return out;
}

json::array OperatorService::history(const core::Principal& who, std::string_view dialog_id,
                                     std::optional<std::string> cursor, std::size_t limit,
                                     std::optional<std::string>* next) const {
    json::object current = visible_dialog(who, dialog_id);
    std::string client_id(current.at("client").at("id").as_string());
    struct Item {
        json::object body;
        std::int64_t last_n;
        bool readable;
    };
    std::vector<Item> items;
    bool boss = supervisor(who);
    store_.read([&](store::Tx& tx) {
        auto rows = tx.query("SELECT d.id, d.bot_id, d.channel, d.status, d.created_at, d.updated_at, d.last_n, "
                             "o.state, o.operator_id, coalesce(o.subject, ''), coalesce(o.label, '') FROM dialogs d "
                             "LEFT JOIN op_dialogs o ON o.dialog_id = d.id WHERE d.client_id = ? AND d.id < ? "
                             "ORDER BY d.id DESC LIMIT ?",
                             {client_id, cursor.value_or("~"), static_cast<std::int64_t>(limit + 1)});
        for (std::size_t i = 0; i < rows.size() && i < limit; ++i) {
            const auto& r = rows[i];
            std::string state = r.is_null(7) ? std::string() : r.text(7);
            std::string op = r.is_null(8) ? std::string() : r.text(8);
            // Another operator's dialog stays theirs: its messages show only to them and to supervisors.
            bool readable = boss || state.empty() || state == "queue" || state == "unassigned" || op == who.user_id ||
                            r.text(0) == dialog_id;
            items.push_back({json::object{{"id", r.text(0)},
                                          {"bot_id", r.text(1)},
                                          {"channel", r.text(2)},
                                          {"with", r.text(3)},
                                          {"status", state.empty() ? json::value(nullptr) : json::value(state)},
                                          {"operator_id", op.empty() ? json::value(nullptr) : json::value(op)},
                                          {"subject", r.text(9)},
                                          {"label", r.text(10)},
                                          {"current", r.text(0) == dialog_id},
                                          {"created_at", time_or_null(r.integer(4))},
                                          {"updated_at", time_or_null(r.integer(5))}},
                             r.integer(6), readable});
        }
        if (next && rows.size() > limit) *next = rows[limit - 1].text(0);
    });
    json::array out;
    for (auto& item : items) {
        if (item.readable) {
            json::array last;
            std::int64_t after = std::max<std::int64_t>(0, item.last_n - static_cast<std::int64_t>(kHistoryMessages));
            for (const auto& m : dialogs_.messages(item.body.at("id").as_string(), after, kHistoryMessages)) {
                last.push_back(m.to_json());
            }
            item.body["messages"] = std::move(last);
        } else {
            item.body["messages"] = nullptr;
        }
        out.push_back(std::move(item.body));
    }
    return out;
}

boost::asio::awaitable<json::object> OperatorService::update_dialog(const core::Principal& who, std::string dialog_id,
                                                                    json::object body) {
    core::reject_unknown_fields(body, {"subject", "label"});
    auto subject = core::optional_string(body, "subject");
    auto label = core::optional_string(body, "label");
    if (!subject && !label) internal::bad_field("body", "give 'subject' and/or 'label'");
    if (subject && !subject->empty() && !internal::valid_alias(*subject, kMaxAliasBytes)) {
        internal::bad_field("subject", fmt::format("'subject' is a subject alias (1 to {} of a-z 0-9 _ . -) or \"\"", kMaxAliasBytes));
    }
    if (label && !label->empty() && !internal::valid_alias(*label, kMaxAliasBytes)) {
        internal::bad_field("label", fmt::format("'label' is a dialog status (1 to {} of a-z 0-9 _ . -) or \"\"", kMaxAliasBytes));
    }
    visible_dialog(who, dialog_id);
    std::int64_t now = clock_.now_ms();
    auto write = [dialog_id, subject, label, now](store::Tx& tx) -> bool {
        auto r = tx.query_one("SELECT state FROM op_dialogs WHERE dialog_id = ?", {dialog_id});
        if (!r) throw core::NotFound(fmt::format("no operator dialog '{}'", dialog_id), "dialog_not_found");
        bool regrouped = false;
        if (subject) {
            std::string group;
            if (!subject->empty()) {
                auto s = tx.query_one("SELECT coalesce(group_id, '') FROM op_subjects WHERE alias = ?", {*subject});
                if (!s) {
                    throw core::Unprocessable(fmt::format("no subject '{}'", *subject), "subject_not_found",
                                              json::array{json::object{{"field", "subject"}}});
                }
                group = s->text(0);
            }
            tx.exec("UPDATE op_dialogs SET subject = ? WHERE dialog_id = ?", {*subject, dialog_id});
            // A waiting dialog follows its new subject's group.
            if (!group.empty() && r->text(0) == "queue") {
                tx.exec("UPDATE op_dialogs SET group_id = ? WHERE dialog_id = ?", {group, dialog_id});
                regrouped = true;
            }
        }
        if (label) {
            if (!label->empty() && !tx.query_one("SELECT 1 FROM op_statuses WHERE kind = 'dialog' AND name = ?", {*label})) {
                throw core::Unprocessable(fmt::format("no dialog status '{}'", *label), "status_not_found",
                                          json::array{json::object{{"field", "label"}}});
            }
            tx.exec("UPDATE op_dialogs SET label = ? WHERE dialog_id = ?", {*label, dialog_id});
        }
        tx.exec("UPDATE op_dialogs SET updated_at = ? WHERE dialog_id = ?", {now, dialog_id});
        return regrouped;
    };
    bool regrouped = co_await store::co_write(store_, std::move(write));
    json::object out = visible_dialog(who, dialog_id);
    publish_dialog_event("operator.dialog_updated",
                         json::object{{"dialog_id", dialog_id}, {"subject", out.at("subject")}, {"label", out.at("label")},
                                      {"group_id", out.at("group_id")}, {"by", who.user_id}},
                         holder_of(out));
    if (regrouped) co_await dispatch_queue();
    co_return out;
}

boost::asio::awaitable<json::array> OperatorService::add_tags(const core::Principal& who, std::string dialog_id,
                                                              std::vector<std::string> tags) {
    if (tags.empty()) internal::bad_field("tags", "'tags' names at least one tag");
    if (tags.size() > kMaxDialogTags) internal::bad_field("tags", fmt::format("at most {} tags", kMaxDialogTags));
    for (const auto& t : tags) checked_tag(t);
    json::object dialog = visible_dialog(who, dialog_id);
    std::int64_t now = clock_.now_ms();
    auto write = [dialog_id, tags, now](store::Tx& tx) {
        for (const auto& t : tags) tx.exec("INSERT OR IGNORE INTO op_dialog_tags(dialog_id, tag) VALUES (?, ?)", {dialog_id, t});
        auto count = tx.query_one("SELECT count(*) FROM op_dialog_tags WHERE dialog_id = ?", {dialog_id})->integer(0);
        if (static_cast<std::size_t>(count) > kMaxDialogTags) {
            throw core::Conflict(fmt::format("a dialog has at most {} tags", kMaxDialogTags), "too_many_tags");
        }
        tx.exec("UPDATE op_dialogs SET updated_at = ? WHERE dialog_id = ?", {now, dialog_id});
        return tags_of(tx, dialog_id);
    };
    json::array out = co_await store::co_write(store_, std::move(write));
    publish_dialog_event("operator.dialog_updated", json::object{{"dialog_id", dialog_id}, {"tags", out}, {"by", who.user_id}},
                         holder_of(dialog));
    co_return out;
}

boost::asio::awaitable<json::array> OperatorService::remove_tag(const core::Principal& who, std::string dialog_id,
                                                                std::string tag) {
    json::object dialog = visible_dialog(who, dialog_id);
    std::int64_t now = clock_.now_ms();
    auto write = [dialog_id, tag, now](store::Tx& tx) -> std::optional<json::array> {
        if (tx.exec("DELETE FROM op_dialog_tags WHERE dialog_id = ? AND tag = ?", {dialog_id, tag}) == 0) return std::nullopt;
        tx.exec("UPDATE op_dialogs SET updated_at = ? WHERE dialog_id = ?", {now, dialog_id});
        return tags_of(tx, dialog_id);
    };
    auto out = co_await store::co_write(store_, std::move(write));
    if (!out) throw core::NotFound(fmt::format("the dialog has no tag '{}'", tag), "tag_not_found");
    publish_dialog_event("operator.dialog_updated", json::object{{"dialog_id", dialog_id}, {"tags", *out}, {"by", who.user_id}},
                         holder_of(dialog));
    co_return *out;
}

json::array OperatorService::notes(const core::Principal& who, std::string_view dialog_id) const {
    visible_dialog(who, dialog_id);
    json::array out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("{} WHERE n.dialog_id = ? ORDER BY n.created_at, n.id", kNoteSelect),
                                      {std::string(dialog_id)})) {
            out.push_back(note_json(r));
        }
    });
    return out;
}

boost::asio::awaitable<json::object> OperatorService::add_note(const core::Principal& who, std::string dialog_id,
                                                               std::string text) {
    if (text.empty()) internal::bad_field("text", "'text' is empty");
    if (text.size() > kMaxNoteBytes) {
        throw core::TooLarge(fmt::format("'text' is longer than {} bytes", kMaxNoteBytes), "too_large",
                             json::array{json::object{{"field", "text"}}});
    }
    json::object dialog = visible_dialog(who, dialog_id);
    std::string id = core::new_id();
    std::int64_t now = clock_.now_ms();
    auto write = [id, dialog_id, text, now, author = who.user_id](store::Tx& tx) {
        auto count = tx.query_one("SELECT count(*) FROM op_notes WHERE dialog_id = ?", {dialog_id})->integer(0);
        if (static_cast<std::size_t>(count) >= kMaxNotesPerDialog) {
            throw core::Conflict(fmt::format("a dialog has at most {} notes", kMaxNotesPerDialog), "too_many_notes");
        }
        tx.exec("INSERT INTO op_notes(id, dialog_id, author_id, kind, text, created_at) VALUES (?, ?, ?, 'note', ?, ?)",
                {id, dialog_id, author, text, now});
        return note_json(*tx.query_one(fmt::format("{} WHERE n.id = ?", kNoteSelect), {id}));
    };
    json::object out = co_await store::co_write(store_, std::move(write));
    publish_dialog_event("operator.note", json::object{{"dialog_id", dialog_id}, {"note", out}}, holder_of(dialog));
    co_return out;
}

boost::asio::awaitable<json::object> OperatorService::mark_read(const core::Principal& who, std::string dialog_id,
                                                                std::optional<std::int64_t> n) {
    json::object dialog = visible_dialog(who, dialog_id);
    std::int64_t last = dialog.at("last_n").as_int64();
    if (n && (*n < 0 || *n > last)) internal::bad_field("n", fmt::format("'n' is from 0 to {} (the last message)", last));
    std::int64_t upto = n.value_or(last);
    std::int64_t now = clock_.now_ms();
    auto write = [dialog_id, user = who.user_id, upto, now](store::Tx& tx) {
        tx.exec("INSERT INTO op_read_markers(user_id, dialog_id, last_n, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(user_id, dialog_id) DO UPDATE SET last_n = max(last_n, excluded.last_n), "
                "updated_at = excluded.updated_at",
                {user, dialog_id, upto, now});
        return tx.query_one("SELECT last_n FROM op_read_markers WHERE user_id = ? AND dialog_id = ?", {user, dialog_id})
            ->integer(0);
    };
    std::int64_t read = co_await store::co_write(store_, std::move(write));
    co_return json::object{{"dialog_id", dialog_id}, {"read_n", read}, {"last_n", last},
                           {"unread", std::max<std::int64_t>(0, last - read)}};
}

boost::asio::awaitable<json::object> OperatorService::start_dialog(const core::Principal& who, std::string client_id,
                                                                   std::string channel, std::string text) {
    if (client_id.empty() || client_id.size() > 64) internal::bad_field("client_id", "'client_id' is 1 to 64 bytes");
    if (channel.empty() || channel.size() > kMaxChannelBytes) {
        internal::bad_field("channel", fmt::format("'channel' is 1 to {} bytes", kMaxChannelBytes));
    }
    if (text.empty()) throw core::BadRequest("'text' is empty", "empty_text", json::array{json::object{{"field", "text"}}});
    if (text.size() > kMaxReplyBytes) {
        throw core::TooLarge(fmt::format("'text' is longer than {} bytes", kMaxReplyBytes), "too_large",
                             json::array{json::object{{"field", "text"}}});
    }
    std::int64_t now = clock_.now_ms();
    auto write = [client_id, channel, now, user = who.user_id](store::Tx& tx) -> std::pair<std::string, bool> {
        if (!clients::find_client(tx, client_id)) {
            throw core::NotFound(fmt::format("no client '{}'", client_id), "client_not_found");
        }
        auto d = tx.query_one("SELECT id, bot_id FROM dialogs WHERE client_id = ? AND channel = ? "
                              "ORDER BY updated_at DESC, id DESC LIMIT 1",
                              {client_id, channel});
        if (!d) {
            throw core::Unprocessable(fmt::format("the client has never written over '{}'", channel), "no_dialog_on_channel",
                                      json::array{json::object{{"field", "channel"}}});
        }
        std::string dialog_id = d->text(0);
        internal::ensure_operator(tx, user, now);
        auto existing = tx.query_one("SELECT state, coalesce(operator_id, '') FROM op_dialogs WHERE dialog_id = ?", {dialog_id});
        if (existing && existing->text(0) == "assigned") {
            if (existing->text(1) == user) return {dialog_id, false};
            throw core::Conflict("the client's dialog on that channel is with another operator", "dialog_with_operator");
        }
        if (!internal::has_room(tx, user)) throw core::Conflict("you are at your capacity; close a dialog first", "at_capacity");
        if (!existing || existing->text(0) == "closed") {
            tx.exec("INSERT OR REPLACE INTO op_dialogs(dialog_id, bot_id, client_id, channel, subject, state, operator_id, "
                    "message, created_at, queued_at, assigned_at, closed_at, group_id, label, updated_at, outgoing) "
                    "VALUES (?, ?, ?, ?, '', 'queue', NULL, '', ?, 0, 0, 0, NULL, '', ?, 1)",
                    {dialog_id, d->text(1), client_id, channel, now, now});
        }
        internal::assign(tx, dialog_id, user, now);
        return {dialog_id, true};
    };
    auto [dialog_id, assigned] = co_await store::co_write(store_, std::move(write));
    // The operator holds the dialog now: the bot stays silent on the client's answers, as after a handover.
    co_await dialogs_.hold(dialog_id);
    if (assigned) {
        publish_dialog_event("operator.dialog",
                             json::object{{"dialog_id", dialog_id}, {"status", "assigned"}, {"operator_id", who.user_id},
                                          {"outgoing", true}},
                             who.user_id);
    }
    json::object message = co_await reply(who, dialog_id, std::move(text), std::nullopt, true);
    co_return json::object{{"dialog", visible_dialog(who, dialog_id)}, {"message", std::move(message)}};
}

// ---- Signatures and custom folders ---------------------------------------------------------------------------

json::object OperatorService::signature(const core::Principal& who) const {
    json::object out{{"text", ""}, {"enabled", false}};
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one("SELECT signature, signature_enabled FROM op_operators WHERE user_id = ?", {who.user_id})) {
            out["text"] = r->text(0);
            out["enabled"] = r->integer(1) != 0;
        }
    });
    return out;
}

boost::asio::awaitable<json::object> OperatorService::set_signature(const core::Principal& who, std::string text,
                                                                    bool enabled) {
    if (text.size() > kMaxSignatureBytes) {
        throw core::TooLarge(fmt::format("'text' is longer than {} bytes", kMaxSignatureBytes), "too_large",
                             json::array{json::object{{"field", "text"}}});
    }
    if (enabled && text.empty()) internal::bad_field("text", "an enabled signature needs a text");
    std::int64_t now = clock_.now_ms();
    auto write = [user = who.user_id, text, enabled, now](store::Tx& tx) {
        internal::ensure_operator(tx, user, now);
        tx.exec("UPDATE op_operators SET signature = ?, signature_enabled = ?, updated_at = ? WHERE user_id = ?",
                {text, static_cast<std::int64_t>(enabled), now, user});
    };
    co_await store::co_write(store_, std::move(write));
    co_return signature(who);
}

json::array OperatorService::folders(const core::Principal& who) const {
    std::vector<json::object> custom;
    std::vector<std::string> layout;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM op_folders WHERE owner_id = ? ORDER BY position, id",
                                                  kFolderColumns),
                                      {who.user_id})) {
            custom.push_back(folder_json(r));
        }
        if (auto r = tx.query_one("SELECT ids FROM op_folder_layout WHERE user_id = ?", {who.user_id})) {
            try {
                json::value ids = json::parse(r->text(0));
                for (const auto& v : ids.as_array()) layout.emplace_back(v.as_string());
            } catch (const std::exception&) {
                layout.clear();  // written by order_folders only; unreadable → the default order
            }
        }
    });
    std::vector<json::object> all;
    for (const auto& id : internal::builtin_folders(supervisor(who))) {
        all.push_back(json::object{{"id", id}, {"name", folder_title(id)}, {"builtin", true}});
    }
    for (auto& f : custom) all.push_back(std::move(f));
    // The saved layout first (ids that still exist), then everything it does not name, in the default order.
    std::vector<bool> placed(all.size(), false);
    json::array out;
    auto take = [&](std::size_t i) {
        placed[i] = true;
        json::object f = std::move(all[i]);
        f["position"] = static_cast<std::int64_t>(out.size() + 1);
        out.push_back(std::move(f));
    };
    for (const auto& id : layout) {
        for (std::size_t i = 0; i < all.size(); ++i) {
            if (!placed[i] && all[i].at("id").as_string() == id) take(i);
        }
    }
    for (std::size_t i = 0; i < all.size(); ++i) {
        if (!placed[i]) take(i);
    }
    return out;
}

boost::asio::awaitable<json::object> OperatorService::create_folder(const core::Principal& who, json::object body) {
    core::reject_unknown_fields(body, {"name", "filter"});
    std::string name(core::required_string(body, "name"));
    if (name.empty() || name.size() > kMaxNameBytes) internal::bad_field("name", fmt::format("'name' is 1 to {} bytes", kMaxNameBytes));
    DialogFilter filter;
    if (body.contains("filter")) filter = DialogFilter::from_json(core::required_object(body, "filter"));
    std::string id = core::new_id();
    std::int64_t now = clock_.now_ms();
    auto write = [id, name, text = json::serialize(filter.to_json()), user = who.user_id, now](store::Tx& tx) {
        auto count = tx.query_one("SELECT count(*), coalesce(max(position), 0) FROM op_folders WHERE owner_id = ?", {user});
        if (static_cast<std::size_t>(count->integer(0)) >= kMaxFoldersPerUser) {
            throw core::Conflict(fmt::format("at most {} folders", kMaxFoldersPerUser), "too_many_folders");
        }
        if (tx.query_one("SELECT 1 FROM op_folders WHERE owner_id = ? AND name = ?", {user, name})) {
            throw core::Conflict(fmt::format("you have a folder named '{}'", name), "folder_exists");
        }
        tx.exec("INSERT INTO op_folders(id, owner_id, name, position, filter, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                {id, user, name, count->integer(1) + 1, text, now, now});
        return folder_json(*tx.query_one(fmt::format("SELECT {} FROM op_folders WHERE id = ?", kFolderColumns), {id}));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

boost::asio::awaitable<json::object> OperatorService::update_folder(const core::Principal& who, std::string id,
                                                                    json::object body) {
    core::reject_unknown_fields(body, {"name", "filter"});
    auto name = core::optional_string(body, "name");
    if (name && (name->empty() || name->size() > kMaxNameBytes)) {
        internal::bad_field("name", fmt::format("'name' is 1 to {} bytes", kMaxNameBytes));
    }
    std::optional<std::string> filter;
    if (body.contains("filter")) filter = json::serialize(DialogFilter::from_json(core::required_object(body, "filter")).to_json());
    std::int64_t now = clock_.now_ms();
    auto write = [id, name, filter, user = who.user_id, now](store::Tx& tx) -> std::optional<json::object> {
        if (!tx.query_one("SELECT 1 FROM op_folders WHERE id = ? AND owner_id = ?", {id, user})) return std::nullopt;
        if (name && tx.query_one("SELECT 1 FROM op_folders WHERE owner_id = ? AND name = ? AND id <> ?", {user, *name, id})) {
            throw core::Conflict(fmt::format("you have a folder named '{}'", *name), "folder_exists");
        }
        if (name) tx.exec("UPDATE op_folders SET name = ? WHERE id = ?", {*name, id});
        if (filter) tx.exec("UPDATE op_folders SET filter = ? WHERE id = ?", {*filter, id});
        tx.exec("UPDATE op_folders SET updated_at = ? WHERE id = ?", {now, id});
        return folder_json(*tx.query_one(fmt::format("SELECT {} FROM op_folders WHERE id = ?", kFolderColumns), {id}));
    };
    auto out = co_await store::co_write(store_, std::move(write));
    if (!out) throw core::NotFound(fmt::format("you have no folder '{}'", id), "folder_not_found");
    co_return *out;
}

boost::asio::awaitable<void> OperatorService::delete_folder(const core::Principal& who, std::string id) {
    auto write = [id, user = who.user_id](store::Tx& tx) {
        return tx.exec("DELETE FROM op_folders WHERE id = ? AND owner_id = ?", {id, user}) > 0;
    };
    if (!co_await store::co_write(store_, std::move(write))) {
        throw core::NotFound(fmt::format("you have no folder '{}'", id), "folder_not_found");
    }
}

boost::asio::awaitable<json::array> OperatorService::order_folders(const core::Principal& who, std::vector<std::string> ids) {
    auto builtins = internal::builtin_folders(supervisor(who));
    auto write = [ids, builtins, user = who.user_id](store::Tx& tx) {
        std::set<std::string> existing(builtins.begin(), builtins.end());
        for (const auto& r : tx.query("SELECT id FROM op_folders WHERE owner_id = ?", {user})) existing.insert(r.text(0));
        std::set<std::string> given(ids.begin(), ids.end());
        if (given.size() != ids.size() || given != existing) {
            internal::bad_field("ids", "'ids' must name every one of your folders (built-in ones too) exactly once");
        }
        json::array layout;
        std::int64_t p = 1;
        for (const auto& id : ids) {
            layout.emplace_back(id);
            tx.exec("UPDATE op_folders SET position = ? WHERE id = ? AND owner_id = ?", {p++, id, user});
        }
        tx.exec("INSERT INTO op_folder_layout(user_id, ids) VALUES (?, ?) ON CONFLICT(user_id) DO UPDATE SET ids = excluded.ids",
                {user, json::serialize(layout)});
    };
    co_await store::co_write(store_, std::move(write));
    co_return folders(who);
}

namespace {

constexpr std::size_t kMaxQuickReplyTitle = 200;
constexpr std::size_t kMaxQuickReplyText = 4096;

json::object quick_reply_json(const store::Row& r) {
    return json::object{{"id", r.text(0)},
                        {"shared", r.is_null(1)},
                        {"owner_id", r.is_null(1) ? json::value(nullptr) : json::value(r.text(1))},
                        {"title", r.text(2)},
                        {"text", r.text(3)},
                        {"updated_at", core::format_time(r.integer(5))}};
}

void check_quick_reply(const std::string& title, const std::string& text) {
    if (title.empty() || title.size() > kMaxQuickReplyTitle) {
        throw core::BadRequest(fmt::format("'title' must be 1 to {} bytes", kMaxQuickReplyTitle), "invalid_title",
                               json::array{json::object{{"field", "title"}}});
    }
    if (text.empty() || text.size() > kMaxQuickReplyText) {
        throw core::BadRequest(fmt::format("'text' must be 1 to {} bytes", kMaxQuickReplyText), "invalid_text",
                               json::array{json::object{{"field", "text"}}});
    }
    auto compiled = core::Template::compile(text);
    if (auto* error = std::get_if<core::TemplateError>(&compiled)) {
        throw core::Unprocessable(fmt::format("the text has a template error at byte {}: {}", error->offset, error->message),
                                  "template_error", json::array{json::object{{"field", "text"}, {"offset", error->offset}}});
    }
}

bool manages_shared(const core::Principal& who) {
    return who.can(auth::kModuleOperatorSettings, core::Action::kEdit);
}

/// Lower-case words of at least 3 bytes (ASCII letters folded; other bytes kept), for ranking.
std::vector<std::string> words_of(std::string_view text) {
    std::vector<std::string> out;
    std::string word;
    auto flush = [&] {
        if (word.size() >= 3) out.push_back(word);
        word.clear();
    };
    for (unsigned char c : text) {
        if (std::isalnum(c) || c >= 0x80) {
            word.push_back(static_cast<char>(std::tolower(c)));
        } else {
            flush();
        }
    }
    flush();
    return out;
}

}  // namespace

json::array OperatorService::quick_replies(const core::Principal& who, std::optional<std::string> q) const {
    json::array out;
    store_.read([&](store::Tx& tx) {
        std::string sql = "SELECT id, owner_id, title, text, created_at, updated_at FROM op_quick_replies "
                          "WHERE (owner_id IS NULL OR owner_id = ?)";
        store::Params params{who.user_id};
        if (q) {
            sql += " AND (instr(lower(title), lower(?)) > 0 OR instr(lower(text), lower(?)) > 0)";
            params.insert(params.end(), {*q, *q});
        }
        sql += " ORDER BY title LIMIT 500";
        for (const auto& r : tx.query(sql, params)) out.push_back(quick_reply_json(r));
    });
    return out;
}

boost::asio::awaitable<json::object> OperatorService::create_quick_reply(const core::Principal& who, json::object body) {
    core::reject_unknown_fields(body, {"title", "text", "shared"});
    std::string title(core::required_string(body, "title"));
    std::string text(core::required_string(body, "text"));
    bool shared = core::optional_bool(body, "shared").value_or(false);
    check_quick_reply(title, text);
    if (shared && !manages_shared(who)) {
        throw core::Forbidden("shared quick replies need operator_settings.edit", "forbidden");
    }
    std::string id = core::new_id();
    std::int64_t now = clock_.now_ms();
    auto insert = [id, owner = shared ? std::string() : who.user_id, title, text, now](store::Tx& tx) {
        tx.exec("INSERT INTO op_quick_replies(id, owner_id, title, text, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                {id, owner.empty() ? store::Value(nullptr) : store::Value(owner), title, text, now, now});
    };
    co_await store::co_write(store_, std::move(insert));
    co_return json::object{{"id", id}, {"shared", shared}, {"owner_id", shared ? json::value(nullptr) : json::value(who.user_id)},
                           {"title", title}, {"text", text}, {"updated_at", core::format_time(now)}};
}

boost::asio::awaitable<json::object> OperatorService::update_quick_reply(const core::Principal& who, std::string id,
                                                                         json::object body) {
    core::reject_unknown_fields(body, {"title", "text"});
    auto title = core::optional_string(body, "title");
    auto text = core::optional_string(body, "text");
    std::int64_t now = clock_.now_ms();
    bool manager = manages_shared(who);
    auto change = [id, user = who.user_id, manager, title, text, now](store::Tx& tx) -> std::optional<json::object> {
        auto r = tx.query_one("SELECT id, owner_id, title, text, created_at, updated_at FROM op_quick_replies WHERE id = ?", {id});
        if (!r) return std::nullopt;
        bool own = !r->is_null(1) && r->text(1) == user;
        if (!own && !(r->is_null(1) && manager)) throw core::Forbidden("this quick reply is not yours to change", "forbidden");
        std::string t = title.value_or(r->text(2));
        std::string x = text.value_or(r->text(3));
        check_quick_reply(t, x);
        tx.exec("UPDATE op_quick_replies SET title = ?, text = ?, updated_at = ? WHERE id = ?", {t, x, now, id});
        return quick_reply_json(*tx.query_one("SELECT id, owner_id, title, text, created_at, updated_at FROM op_quick_replies WHERE id = ?", {id}));
    };
    auto out = co_await store::co_write(store_, std::move(change));
    if (!out) throw core::NotFound(fmt::format("no quick reply '{}'", id), "quick_reply_not_found");
    co_return *out;
}

boost::asio::awaitable<void> OperatorService::delete_quick_reply(const core::Principal& who, std::string id) {
    bool manager = manages_shared(who);
    auto erase = [id, user = who.user_id, manager](store::Tx& tx) -> bool {
        auto r = tx.query_one("SELECT owner_id FROM op_quick_replies WHERE id = ?", {id});
        if (!r) return false;
        bool own = !r->is_null(0) && r->text(0) == user;
        if (!own && !(r->is_null(0) && manager)) throw core::Forbidden("this quick reply is not yours to delete", "forbidden");
        tx.exec("DELETE FROM op_quick_replies WHERE id = ?", {id});
        return true;
    };
    bool removed = co_await store::co_write(store_, std::move(erase));
    if (!removed) throw core::NotFound(fmt::format("no quick reply '{}'", id), "quick_reply_not_found");
}

json::object OperatorService::copilot(const core::Principal& who, std::string_view dialog_id) const {
    json::object dialog = visible_dialog(who, dialog_id);
    std::string recent;
    auto messages = dialogs_.messages(dialog_id, 0, 10'000);
    int taken = 0;
    for (auto it = messages.rbegin(); it != messages.rend() && taken < 3; ++it) {
        if (it->from == "client") {
            recent += it->text + " ";
            ++taken;
        }
    }
    json::object client;
    store_.read([&](store::Tx& tx) {
        if (auto c = clients::find_client(tx, std::string(dialog.at("client").at("id").as_string()))) client = c->to_json();
    });
    json::object scope_root{{"client", client},
                            {"operator", json::object{{"name", who.name}, {"email", who.email}}}};
    core::JsonScope scope(scope_root);
    auto wanted = words_of(recent);
    std::vector<std::pair<int, json::object>> ranked;
    for (auto& value : quick_replies(who, std::nullopt)) {
        json::object reply = value.as_object();
        int score = 0;
        auto have = words_of(std::string(reply.at("title").as_string()) + " " + std::string(reply.at("text").as_string()));
        for (const auto& w : wanted) {
            for (const auto& h : have) {
                // A shared stem of 5+ bytes counts too ("delivery"/"delivered", "доставка"/"доставку").
                std::size_t common = 0;
                while (common < w.size() && common < h.size() && w[common] == h[common]) ++common;
                if (w == h || common >= std::min<std::size_t>(8, std::min(w.size(), h.size())) || common >= 8) {
                    ++score;
                    break;
                }
            }
        }
        if (score == 0) continue;
        auto compiled = core::Template::compile(reply.at("text").as_string());
        if (auto* t = std::get_if<core::Template>(&compiled)) reply["rendered"] = t->render(scope);
        reply["score"] = score;
        ranked.emplace_back(score, std::move(reply));
    }
    std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    json::array suggestions;
    for (std::size_t i = 0; i < ranked.size() && i < 5; ++i) suggestions.push_back(std::move(ranked[i].second));
    json::array snippets;
    if (snippet_source_ && !recent.empty()) snippets = snippet_source_(recent);
    return json::object{{"dialog_id", dialog_id}, {"suggestions", std::move(suggestions)}, {"snippets", std::move(snippets)}};
}

void OperatorService::connect(actions::ActionCall call, actions::ActionDone done) {
    if (call.dialog_id.empty()) {
        done(actions::ActionResult::failure("bad_params", "the action runs only inside a dialog"));
        return;
    }
    std::string subject;
    if (const auto* s = call.params.if_contains("subject_alias"); s && s->is_string()) subject = s->get_string();
    bool auto_connect = false;
    if (const auto* a = call.params.if_contains("auto_connect_operator")) {
        auto_connect = (a->is_bool() && a->get_bool()) || (a->is_string() && a->get_string() == "true");
    }
    bool may_queue = false;
    if (const auto* q = call.params.if_contains("status"); q && q->is_string()) may_queue = q->get_string() == "queue";
    std::string message;
    if (const auto* m = call.params.if_contains("message"); m && m->is_string()) message = std::string(std::string_view(m->get_string()).substr(0, 4096));
    // The instance setting gates auto-connect: off, every handover lands in Unassigned.
    if (auto_connect && !auto_connect_enabled()) auto_connect = false;
    std::int64_t now = clock_.now_ms();
    struct Outcome {
        std::string event;
        std::string user;
        std::string group;
    };
    auto outcome = std::make_shared<Outcome>();
    std::string dialog_id = call.dialog_id;
    store_.write(
        [dialog_id, subject, auto_connect, may_queue, message, now, outcome](store::Tx& tx) {
            auto existing = tx.query_one("SELECT state, operator_id, coalesce(group_id, '') FROM op_dialogs WHERE dialog_id = ?",
                                         {dialog_id});
            if (existing && existing->text(0) != "closed") {
                *outcome = {existing->text(0) == "assigned" ? "connected" : "queued", existing->text(1), existing->text(2)};
                return;
            }
            auto d = tx.query_one("SELECT bot_id, client_id, channel FROM dialogs WHERE id = ?", {dialog_id});
            if (!d) {
                *outcome = {"missing", "", ""};
                return;
            }
            json::object card;
            if (auto client = clients::find_client(tx, d->text(1))) {
                card = client->to_json();
                card["fields"] = client->fields;  // conditions may say `fields.city` as well as `city`
            }
            std::string group = internal::group_for(tx, subject, card);
            std::string user = auto_connect ? internal::pick_operator(tx, group) : std::string();
            // The queue is for operators who are busy: with nobody available at all the bot takes the limit branch.
            std::string state = !user.empty()   ? "assigned"
                                : !auto_connect ? "unassigned"
                                : may_queue && internal::anyone_available(tx, group) ? "queue"
                                                                                     : "";
            if (state.empty()) {
                *outcome = {"limit", "", group};
                return;
            }
            tx.exec("INSERT OR REPLACE INTO op_dialogs(dialog_id, bot_id, client_id, channel, subject, state, operator_id, "
                    "message, created_at, queued_at, assigned_at, closed_at, group_id, label, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, 0, 0, ?, '', ?)",
                    {dialog_id, d->text(0), d->text(1), d->text(2), subject, state, message, now, now,
                     group.empty() ? store::Value(nullptr) : store::Value(group), now});
            if (!user.empty()) internal::assign(tx, dialog_id, user, now);
            *outcome = {user.empty() ? "queued" : "connected", user, group};
        },
        [this, outcome, dialog_id, done = std::move(done)](std::exception_ptr error) {
            if (error) {
                std::string what = "store error";
                try {
                    std::rethrow_exception(error);
                } catch (const std::exception& e) {
                    what = e.what();
                }
                done(actions::ActionResult::failure("store_error", what));
                return;
            }
            actions::ActionResult result;
            if (outcome->event == "missing") {
                done(actions::ActionResult::failure("dialog_not_found", "the dialog does not exist"));
                return;
            }
            result.event = outcome->event;
            if (result.event != "limit") {
                result.handover = true;
                json::object body{{"dialog_id", dialog_id},
                                  {"status", result.event == "connected" ? "assigned" : "queue"},
                                  {"group_id", outcome->group.empty() ? json::value(nullptr) : json::value(outcome->group)}};
                if (!outcome->user.empty()) body["operator_id"] = outcome->user;
                publish("operator.dialog", std::move(body));
                if (outcome->user.empty()) publish("operator.queue", json::object{{"dialog_id", dialog_id}, {"group_id", body_group(outcome->group)}});
            }
            done(std::move(result));
        });
}

namespace {

class ConnectAction final : public actions::BasicAction {
public:
    explicit ConnectAction(OperatorService& service)
        : BasicAction("operator_panel__connect_to_operator_with_msg",
                      json::object{{"type", "object"},
                                   {"properties", json::object{{"subject_alias", json::object{{"type", "string"}}},
                                                               {"auto_connect_operator", json::object{{"type", "boolean"}}},
                                                               {"status", json::object{{"type", "string"}, {"enum", json::array{"queue"}}}},
                                                               {"message", json::object{{"type", "string"}}}}}},
                      {"connected", "queued", "limit", "error"}),
          service_(service) {}
    void run(actions::ActionCall call, actions::ActionDone done) override { service_.connect(std::move(call), std::move(done)); }

private:
    OperatorService& service_;
};

}  // namespace

std::shared_ptr<actions::Action> make_connect_action(OperatorService& service) {
    return std::make_shared<ConnectAction>(service);
}

}  // namespace parley::operators
