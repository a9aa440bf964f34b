#include "operator/operator.h"

#include <fmt/format.h>

#include "auth/permissions.h"
#include "core/error.h"
#include "core/json.h"
#include "core/log.h"
#include "events/events.h"
#include "store/async.h"

namespace parley::operators {

namespace {

constexpr const char* kDialogColumns =
    "o.dialog_id, o.bot_id, o.client_id, o.channel, o.subject, o.state, o.operator_id, o.message, o.created_at, "
    "o.queued_at, o.assigned_at, o.closed_at, c.name";

json::value time_or_null(std::int64_t ms) { return ms ? json::value(core::format_time(ms)) : json::value(nullptr); }

json::object dialog_json(const store::Row& r) {
    return json::object{{"id", r.text(0)},
                        {"bot_id", r.text(1)},
                        {"client", json::object{{"id", r.text(2)}, {"name", r.text(12)}}},
                        {"channel", r.text(3)},
                        {"subject", r.text(4)},
                        {"status", r.text(5)},
                        {"operator_id", r.is_null(6) ? json::value(nullptr) : json::value(r.text(6))},
                        {"message", r.text(7)},
                        {"created_at", time_or_null(r.integer(8))},
                        {"queued_at", time_or_null(r.integer(9))},
                        {"assigned_at", time_or_null(r.integer(10))},
                        {"closed_at", time_or_null(r.integer(11))}};
}

bool supervisor(const core::Principal& who) { return who.can(auth::kModuleOperator, core::Action::kDelete); }

bool valid_status(std::string_view s) { return s == "online" || s == "away" || s == "break" || s == "offline"; }

void ensure_operator(store::Tx& tx, const std::string& user_id, std::int64_t now) {
    tx.exec("INSERT OR IGNORE INTO op_operators(user_id, status, capacity, active_dialogs, last_assigned_at, updated_at) "
            "VALUES (?, 'offline', ?, 0, 0, ?)",
            {user_id, static_cast<std::int64_t>(kDefaultCapacity), now});
}

/// The least busy online operator with room (ties: the one assigned longest ago), or "".
std::string free_operator(store::Tx& tx) {
    auto row = tx.query_one("SELECT user_id FROM op_operators WHERE status = 'online' AND active_dialogs < capacity "
                            "ORDER BY active_dialogs, last_assigned_at LIMIT 1");
    return row ? row->text(0) : std::string();
}

void assign(store::Tx& tx, const std::string& dialog_id, const std::string& user_id, std::int64_t now) {
    tx.exec("UPDATE op_dialogs SET state = 'assigned', operator_id = ?, assigned_at = ? WHERE dialog_id = ?",
            {user_id, now, dialog_id});
    tx.exec("UPDATE op_operators SET active_dialogs = active_dialogs + 1, last_assigned_at = ? WHERE user_id = ?",
            {now, user_id});
}

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
)sql"}};
}

OperatorService::OperatorService(store::Store& store, const core::Clock& clock, bots::DialogService& dialogs,
                                 bots::TriggerService& triggers, events::EventHub* hub)
    : store_(store), clock_(clock), dialogs_(dialogs), triggers_(triggers), hub_(hub) {}

void OperatorService::publish(const std::string& type, json::object body, const std::string& user_id) {
    if (!hub_) return;
    if (user_id.empty()) {
        hub_->publish(type, std::move(body), events::Audience::permission(std::string(auth::kModuleOperator), core::Action::kView));
    } else {
        hub_->publish(type, std::move(body), events::Audience::user(user_id));
    }
}

boost::asio::awaitable<json::object> OperatorService::set_status(const core::Principal& who, std::string status,
                                                                 std::optional<unsigned> capacity) {
    if (!valid_status(status)) {
        throw core::BadRequest("'status' is online, away, break or offline", "invalid_status",
                               json::array{json::object{{"field", "status"}}});
    }
    if (capacity && (*capacity < 1 || *capacity > 100)) {
        throw core::BadRequest("'capacity' is from 1 to 100", "invalid_capacity", json::array{json::object{{"field", "capacity"}}});
    }
    std::int64_t now = clock_.now_ms();
    auto write = [user = who.user_id, status, capacity, now](store::Tx& tx) -> std::vector<std::string> {
        ensure_operator(tx, user, now);
        tx.exec("UPDATE op_operators SET status = ?, updated_at = ? WHERE user_id = ?", {status, now, user});
        if (capacity) tx.exec("UPDATE op_operators SET capacity = ? WHERE user_id = ?", {static_cast<std::int64_t>(*capacity), user});
        std::vector<std::string> requeued;
        if (status == "offline") {
            // Reassign chats: the operator's open dialogs go back to the front of the queue.
            for (const auto& r : tx.query("SELECT dialog_id FROM op_dialogs WHERE operator_id = ? AND state = 'assigned'", {user})) {
                requeued.push_back(r.text(0));
            }
            tx.exec("UPDATE op_dialogs SET state = 'queue', operator_id = NULL WHERE operator_id = ? AND state = 'assigned'",
                    {user});
            tx.exec("UPDATE op_operators SET active_dialogs = 0 WHERE user_id = ?", {user});
        }
        return requeued;
    };
    auto requeued = co_await store::co_write(store_, std::move(write));
    publish("operator.status", json::object{{"user_id", who.user_id}, {"status", status}});
    for (auto& id : requeued) publish("operator.dialog", json::object{{"dialog_id", id}, {"status", "queue"}});
    co_await dispatch_queue();
    co_return status_of(who);
}

json::object OperatorService::status_of(const core::Principal& who) const {
    json::object out{{"user_id", who.user_id}, {"status", "offline"}, {"capacity", kDefaultCapacity}, {"active_dialogs", 0}};
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one("SELECT status, capacity, active_dialogs FROM op_operators WHERE user_id = ?", {who.user_id})) {
            out["status"] = r->text(0);
            out["capacity"] = r->integer(1);
            out["active_dialogs"] = r->integer(2);
        }
    });
    return out;
}

json::array OperatorService::operators() const {
    json::array out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query("SELECT o.user_id, o.status, o.capacity, o.active_dialogs, o.updated_at, u.email, "
                                      "u.name FROM op_operators o LEFT JOIN auth_users u ON u.id = o.user_id ORDER BY u.email")) {
            out.push_back(json::object{{"user_id", r.text(0)}, {"email", r.text(5)}, {"name", r.text(6)},
                                       {"status", r.text(1)}, {"capacity", r.integer(2)},
                                       {"active_dialogs", r.integer(3)}, {"updated_at", time_or_null(r.integer(4))}});
        }
    });
    return out;
}

json::array OperatorService::dialogs(const core::Principal& who, std::string_view folder,
                                     std::optional<std::string> cursor, std::size_t limit,
                                     std::optional<std::string>* next) const {
    std::string where;
    store::Params params;
    if (folder == "mine") {
        where = "o.state = 'assigned' AND o.operator_id = ?";
        params.emplace_back(who.user_id);
    } else if (folder == "queue" || folder == "unassigned") {
        where = "o.state = ?";
        params.emplace_back(std::string(folder));
    } else if (folder == "closed") {
        where = "o.state = 'closed'";
        if (!supervisor(who)) {
            where += " AND o.operator_id = ?";
            params.emplace_back(who.user_id);
        }
    } else if (folder == "all") {
        if (!supervisor(who)) throw core::Forbidden("the folder 'all' is for supervisors", "forbidden");
        where = "1 = 1";
    } else {
        throw core::BadRequest("'folder' is mine, queue, unassigned, closed or all", "invalid_folder",
                               json::array{json::object{{"field", "folder"}}});
    }
    where += " AND o.dialog_id < ?";
    params.emplace_back(cursor.value_or("~"));
    params.emplace_back(static_cast<std::int64_t>(limit + 1));
    json::array out;
    store_.read([&](store::Tx& tx) {
        auto rows = tx.query(fmt::format("SELECT {} FROM op_dialogs o LEFT JOIN clients c ON c.id = o.client_id WHERE {} "
                                         "ORDER BY o.dialog_id DESC LIMIT ?",
                                         kDialogColumns, where),
                             params);
        for (std::size_t i = 0; i < rows.size() && i < limit; ++i) out.push_back(dialog_json(rows[i]));
        if (rows.size() > limit) *next = rows[limit - 1].text(0);
    });
    return out;
}

json::object OperatorService::visible_dialog(const core::Principal& who, std::string_view dialog_id) const {
    std::optional<json::object> out;
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one(fmt::format("SELECT {} FROM op_dialogs o LEFT JOIN clients c ON c.id = o.client_id "
                                              "WHERE o.dialog_id = ?",
                                              kDialogColumns),
                                  {std::string(dialog_id)})) {
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

boost::asio::awaitable<json::object> OperatorService::take(const core::Principal& who, std::string dialog_id) {
    visible_dialog(who, dialog_id);
    std::int64_t now = clock_.now_ms();
    auto write = [dialog_id, user = who.user_id, now](store::Tx& tx) -> std::string {
        auto r = tx.query_one("SELECT state, operator_id FROM op_dialogs WHERE dialog_id = ?", {dialog_id});
        if (!r) return "missing";
        if (r->text(0) == "assigned") return r->text(1) == user ? "mine" : "taken";
        if (r->text(0) == "closed") return "closed";
        ensure_operator(tx, user, now);
        assign(tx, dialog_id, user, now);
        return "ok";
    };
    std::string outcome = co_await store::co_write(store_, std::move(write));
    if (outcome == "missing") throw core::NotFound(fmt::format("no operator dialog '{}'", dialog_id), "dialog_not_found");
    if (outcome == "taken") throw core::Conflict("another operator has taken this dialog", "already_taken");
    if (outcome == "closed") throw core::Conflict("the dialog is closed", "dialog_closed");
    json::object dialog = visible_dialog(who, dialog_id);
    publish("operator.dialog", json::object{{"dialog_id", dialog_id}, {"status", "assigned"}, {"operator_id", who.user_id}});
    co_return dialog;
}

boost::asio::awaitable<json::object> OperatorService::reply(const core::Principal& who, std::string dialog_id,
                                                            std::string text) {
    if (text.empty()) throw core::BadRequest("'text' is empty", "empty_text", json::array{json::object{{"field", "text"}}});
    if (text.size() > kMaxReplyBytes) {
        throw core::TooLarge(fmt::format("'text' is longer than {} bytes", kMaxReplyBytes), "too_large",
                             json::array{json::object{{"field", "text"}}});
    }
    json::object dialog = visible_dialog(who, dialog_id);
    bool mine = dialog.at("operator_id").is_string() && dialog.at("operator_id").as_string() == who.user_id;
    if (dialog.at("status") != "assigned" || (!mine && !supervisor(who))) {
        throw core::Conflict("take the dialog before answering", "not_assigned");
    }
    std::string from = "operator";
    auto message = co_await dialogs_.post(dialog_id, std::move(from), std::move(text), false);
    json::object out = message ? message->to_json() : json::object{};
    publish("operator.message", json::object{{"dialog_id", dialog_id}, {"message", out}});
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
        if (r->text(0) == "assigned" && !r->is_null(1)) {
            tx.exec("UPDATE op_operators SET active_dialogs = max(active_dialogs - 1, 0) WHERE user_id = ?", {r->text(1)});
        }
        tx.exec("UPDATE op_dialogs SET state = 'closed', closed_at = ? WHERE dialog_id = ?", {now, dialog_id});
    };
    co_await store::co_write(store_, std::move(write));
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
    json::array out;
    for (const auto& m : dialogs_.messages(dialog_id, after, limit)) out.push_back(m.to_json());
    return out;
}

boost::asio::awaitable<std::size_t> OperatorService::dispatch_queue() {
    std::int64_t now = clock_.now_ms();
    auto write = [now](store::Tx& tx) -> std::vector<std::pair<std::string, std::string>> {
        std::vector<std::pair<std::string, std::string>> assigned;
        for (const auto& r : tx.query("SELECT dialog_id FROM op_dialogs WHERE state = 'queue' ORDER BY queued_at LIMIT 100")) {
            std::string user = free_operator(tx);
            if (user.empty()) break;
            assign(tx, r.text(0), user, now);
            assigned.emplace_back(r.text(0), user);
        }
        return assigned;
    };
    auto assigned = co_await store::co_write(store_, std::move(write));
    for (auto& [dialog, user] : assigned) {
        publish("operator.dialog", json::object{{"dialog_id", dialog}, {"status", "assigned"}, {"operator_id", user}});
    }
    co_return assigned.size();
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
    std::int64_t now = clock_.now_ms();
    auto outcome = std::make_shared<std::pair<std::string, std::string>>();  // event, operator
    std::string dialog_id = call.dialog_id;
    store_.write(
        [dialog_id, subject, auto_connect, may_queue, message, now, outcome](store::Tx& tx) {
            auto existing = tx.query_one("SELECT state, operator_id FROM op_dialogs WHERE dialog_id = ?", {dialog_id});
            if (existing && existing->text(0) != "closed") {
                *outcome = {existing->text(0) == "assigned" ? "connected" : "queued", existing->text(1)};
                return;
            }
            auto d = tx.query_one("SELECT bot_id, client_id, channel FROM dialogs WHERE id = ?", {dialog_id});
            if (!d) {
                *outcome = {"missing", ""};
                return;
            }
            std::string user = auto_connect ? free_operator(tx) : std::string();
            std::string state = !user.empty() ? "assigned" : !auto_connect ? "unassigned" : may_queue ? "queue" : "";
            if (state.empty()) {
                *outcome = {"limit", ""};
                return;
            }
            tx.exec("INSERT OR REPLACE INTO op_dialogs(dialog_id, bot_id, client_id, channel, subject, state, operator_id, "
                    "message, created_at, queued_at, assigned_at, closed_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, 0, 0)",
                    {dialog_id, d->text(0), d->text(1), d->text(2), subject, state, message, now, now});
            if (!user.empty()) assign(tx, dialog_id, user, now);
            *outcome = {user.empty() ? "queued" : "connected", user};
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
            if (outcome->first == "missing") {
                done(actions::ActionResult::failure("dialog_not_found", "the dialog does not exist"));
                return;
            }
            result.event = outcome->first;
            if (result.event != "limit") {
                result.handover = true;
                json::object body{{"dialog_id", dialog_id}, {"status", result.event == "connected" ? "assigned" : "queue"}};
                if (!outcome->second.empty()) body["operator_id"] = outcome->second;
                publish("operator.dialog", std::move(body));
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
