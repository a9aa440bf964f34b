#include "operator/operator.h"

#include <fmt/format.h>

#include "auth/permissions.h"
#include "clients/clients.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/template.h"
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
    return json::object{{"dialog_id", dialog_id}, {"suggestions", std::move(suggestions)}, {"snippets", json::array{}}};
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
            // The queue is for operators who are busy: with nobody online at all the bot takes the limit branch.
            bool anyone_online = tx.query_one("SELECT 1 FROM op_operators WHERE status = 'online' LIMIT 1").has_value();
            std::string state = !user.empty()                  ? "assigned"
                                : !auto_connect                ? "unassigned"
                                : may_queue && anyone_online   ? "queue"
                                                               : "";
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
