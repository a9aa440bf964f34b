#include "bots/dialogs.h"

#include <fmt/format.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <chrono>

#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "events/events.h"
#include "store/async.h"

namespace parley::bots {

namespace asio = boost::asio;
using scenario::Waiting;

namespace {

constexpr std::size_t kMaxChangedBytes = 8 * 1024;  ///< per run record: the variables it changed

std::string waiting_name(Waiting w) { return std::string(scenario::to_string(w)); }

/// The API shows only what a client can be waiting for; an interrupted action is still "running".
std::string public_waiting(Waiting w) {
    switch (w) {
        case Waiting::kInput: return "input";
        case Waiting::kButtons: return "buttons";
        case Waiting::kOperator: return "operator";
        case Waiting::kAction: return "action";
        case Waiting::kNone:
        case Waiting::kEnd: return "end";
    }
    return "end";
}

DialogInfo dialog_from_row(const store::Row& r) {
    return DialogInfo{r.text(0), r.text(1), r.text(2), r.text(3), r.text(4), r.text(5), r.integer(6), r.integer(7)};
}

constexpr const char* kDialogColumns = "id, bot_id, client_id, channel, status, waiting, created_at, updated_at";

Message message_from_row(const store::Row& r) {
    Message m;
    m.n = r.integer(0);
    m.from = r.text(1);
    m.text = r.text(2);
    if (!r.is_null(3)) {
        auto v = json::parse(r.text(3));
        if (v.is_array()) m.buttons = std::move(v.get_array());
    }
    if (!r.is_null(4)) {
        auto v = json::parse(r.text(4));
        if (v.is_object()) m.payload = std::move(v.get_object());
    }
    m.created_at = r.integer(5);
    return m;
}

Message bot_message(const scenario::Reply& reply, std::int64_t now) {
    Message m;
    m.from = "bot";
    m.text = reply.text;
    for (const auto& b : reply.buttons) m.buttons.push_back(json::object{{"id", b.id}, {"text", b.text}});
    m.created_at = now;
    return m;
}

Message client_message(const scenario::ClientMessage& in, std::int64_t now) {
    Message m;
    m.from = "client";
    m.created_at = now;
    switch (in.kind) {
        case scenario::ClientMessage::Kind::kText: m.text = in.text; break;
        case scenario::ClientMessage::Kind::kButton:
            m.text = in.button;
            m.payload = json::object{{"button", in.button}};
            break;
        case scenario::ClientMessage::Kind::kContact: {
            if (const auto* p = in.contact.if_contains("phone"); p && p->is_string()) m.text = p->get_string();
            m.payload = json::object{{"contact", in.contact}};
            break;
        }
    }
    return m;
}

}  // namespace

json::object TurnOutput::to_json() const {
    json::array items;
    for (const auto& r : replies) items.push_back(r.to_json());
    json::object out{{"replies", std::move(items)},
                     {"waiting", public_waiting(waiting)},
                     {"state", variables},
                     {"position", position}};
    if (error) out["error"] = error->to_json();
    if (duplicate) out["duplicate"] = true;
    return out;
}

json::object Message::to_json() const {
    json::object out{{"n", n}, {"from", from}, {"text", text}};
    if (!buttons.empty()) out["buttons"] = buttons;
    if (!payload.empty()) out["payload"] = payload;
    out["created_at"] = core::format_time(created_at);
    return out;
}

json::object DialogInfo::to_json() const {
    return json::object{{"id", id},
                        {"bot_id", bot_id},
                        {"client_id", client_id},
                        {"channel", channel},
                        {"status", status},
                        {"waiting", waiting},
                        {"created_at", core::format_time(created_at)},
                        {"updated_at", core::format_time(updated_at)}};
}

/// Everything one turn carries between its steps.
struct DialogService::Turn {
    DialogInfo dialog;
    std::int64_t last_n = 0;
    json::object client;
    scenario::DialogState state;
    json::object before;  ///< variables when the turn began
    std::vector<Message> pending;  ///< not yet persisted
    std::vector<scenario::Reply> replies;
    std::optional<scenario::RunError> error;
    Waiting waiting = Waiting::kNone;
    std::string delivery;  ///< of bot messages: `none` (preview, api) or `pending` (the channel's outbox)
    std::string phone;     ///< from a shared contact
    bool touch_client = false;  ///< last_seen_at is older than a minute (or a phone came): update the client row
    std::string trigger;
    std::int64_t version = 0;
    std::vector<std::string> trace;
    json::array actions;
    std::int64_t started_at = 0;
    std::chrono::steady_clock::time_point t0;
};

DialogService::DialogService(BotService& bots, const actions::ActionRegistry& actions,
                             const scenario::InstanceSettings* settings, events::EventHub* hub, core::Metrics* metrics,
                             DialogOptions options)
    : bots_(bots), actions_(actions), settings_(settings), hub_(hub), metrics_(metrics), options_(options) {
    if (metrics_) {
        metrics_->gauge_fn("parley_dialog_turns_in_flight", "Bot turns running or waiting for their dialog's lock",
                           [this] { return static_cast<double>(in_flight_.load()); });
    }
}

asio::awaitable<actions::ActionResult> DialogService::run_action(actions::ActionCall call) {
    auto executor = co_await asio::this_coro::executor;
    std::int64_t timeout_ms = options_.action_timeout_ms;
    const actions::ActionRegistry* registry = &actions_;
    auto initiate = [executor, timeout_ms, registry](auto handler, actions::ActionCall call) {
            auto resume_on = asio::get_associated_executor(handler);
            auto shared = std::make_shared<decltype(handler)>(std::move(handler));
            auto answered = std::make_shared<std::atomic<bool>>(false);
            auto strand = asio::make_strand(executor);
            auto timer = std::make_shared<asio::steady_timer>(strand, std::chrono::milliseconds(timeout_ms));
            std::string name = call.action;
            timer->async_wait([shared, answered, resume_on, name, timeout_ms](boost::system::error_code ec) {
                if (ec || answered->exchange(true)) return;
                asio::post(resume_on, [shared, name, timeout_ms]() mutable {
                    (*shared)(actions::ActionResult::failure(
                        "timeout", fmt::format("action '{}' did not answer within {} ms", name, timeout_ms)));
                });
            });
            registry->run(std::move(call), [shared, answered, resume_on, timer, strand](actions::ActionResult r) {
                asio::post(strand, [timer] { timer->cancel(); });
                if (answered->exchange(true)) return;  // answered after its timeout: dropped
                asio::post(resume_on, [shared, r = std::move(r)]() mutable { (*shared)(std::move(r)); });
            });
    };
    actions::ActionResult result = co_await asio::async_initiate<const asio::use_awaitable_t<>, void(actions::ActionResult)>(
        std::move(initiate), asio::use_awaitable, std::move(call));
    co_return result;
}

asio::awaitable<void> DialogService::persist(Turn& turn, bool final_step) {
    std::int64_t now = bots_.clock().now_ms();
    std::vector<Message> batch = std::move(turn.pending);
    turn.pending.clear();
    for (auto& m : batch) m.n = ++turn.last_n;
    std::string status = turn.state.waiting == Waiting::kOperator ? "operator" : "bot";
    std::string state_text = turn.state.serialize();
    std::string waiting = waiting_name(turn.state.waiting);
    std::optional<std::vector<store::Value>> run_row;
    if (final_step && options_.record_runs) {
        json::object changed;
        std::size_t bytes = 0;
        for (const auto& kv : turn.state.variables) {
            const auto* old = turn.before.if_contains(kv.key());
            if (old && *old == kv.value()) continue;
            std::string text = json::serialize(kv.value());
            bytes += text.size() + kv.key().size();
            changed[kv.key()] = bytes > kMaxChangedBytes ? json::value("(too large to record)") : kv.value();
        }
        for (const auto& kv : turn.before) {
            if (!turn.state.variables.contains(kv.key())) changed[kv.key()] = nullptr;
        }
        json::array nodes;
        for (const auto& id : turn.trace) nodes.push_back(json::value(id));
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - turn.t0).count();
        run_row = std::vector<store::Value>{core::new_id(),
                                            turn.dialog.bot_id,
                                            turn.dialog.id,
                                            turn.version,
                                            turn.trigger,
                                            turn.started_at,
                                            ms,
                                            json::serialize(nodes),
                                            json::serialize(turn.actions),
                                            json::serialize(changed),
                                            public_waiting(turn.state.waiting),
                                            turn.error ? store::Value(json::serialize(turn.error->to_json()))
                                                       : store::Value(nullptr)};
    }
    auto write = [batch, dialog_id = turn.dialog.id, client_id = turn.dialog.client_id, delivery = turn.delivery,
                  last_n = turn.last_n, status, state_text, waiting, now, phone = turn.phone,
                  touch = turn.touch_client, run_row](store::Tx& tx) {
        for (const auto& m : batch) {
            store::Value external = nullptr;
            if (const auto* e = m.payload.if_contains("external_id"); e && e->is_string()) {
                external = std::string(e->get_string());
            }
            tx.exec("INSERT INTO messages(dialog_id, n, sender, text, buttons, payload, external_id, delivery, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    {dialog_id, m.n, m.from, m.text,
                     m.buttons.empty() ? store::Value(nullptr) : store::Value(json::serialize(m.buttons)),
                     m.payload.empty() ? store::Value(nullptr) : store::Value(json::serialize(m.payload)), external,
                     m.from == "bot" ? delivery : std::string("none"), m.created_at});
        }
        tx.exec("UPDATE dialogs SET state = ?, waiting = ?, status = ?, last_n = ?, updated_at = ? WHERE id = ?",
                {state_text, waiting, status, last_n, now, dialog_id});
        if (touch && !batch.empty() && batch.front().from == "client") clients::touch_client(tx, client_id, now, phone);
        if (run_row) {
            tx.exec("INSERT INTO bot_runs(id, bot_id, dialog_id, version, trigger, started_at, ms, nodes, actions, "
                    "changed, waiting, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    *run_row);
        }
    };
    co_await store::co_write(bots_.store(), std::move(write));
    if (hub_ && hub_->observed() && !batch.empty()) {
        json::object body{{"dialog_id", turn.dialog.id}, {"bot_id", turn.dialog.bot_id}, {"last_n", turn.last_n},
                          {"status", status}};
        // The turn that hands the dialog to an operator: its messages are the bot's side, not a client writing
        // to an operator (webhooks must not report them as such).
        if (status == "operator" && turn.dialog.status != "operator") body["handover"] = true;
        // Operators see the client's messages of dialogs handed to them; the builder sees every bot dialog.
        hub_->publish("dialog.messages", body,
                      events::Audience::permission(status == "operator" ? "operator" : "bots", core::Action::kView));
    }
}

asio::awaitable<TurnOutput> DialogService::run(std::string dialog_id, Trigger trigger) {
    ++in_flight_;
    struct Leave {
        std::atomic<std::size_t>& n;
        ~Leave() { --n; }
    } leave{in_flight_};
    auto guard = co_await locks_.lock(dialog_id);

    Turn turn;
    turn.t0 = std::chrono::steady_clock::now();
    turn.started_at = bots_.clock().now_ms();
    std::string state_text;
    bool found = false;
    std::optional<std::int64_t> seen_n;
    std::vector<Message> seen_replies;
    bots_.store().read([&](store::Tx& tx) {
        auto row = tx.query_one(fmt::format("SELECT {}, state, last_n FROM dialogs WHERE id = ?", kDialogColumns),
                                {dialog_id});
        if (!row) return;
        found = true;
        turn.dialog = dialog_from_row(*row);
        state_text = row->text(8);
        turn.last_n = row->integer(9);
        if (trigger.kind == Trigger::Kind::kMessage && !trigger.external_id.empty()) {
            if (auto m = tx.query_one("SELECT n FROM messages WHERE dialog_id = ? AND external_id = ?",
                                      {dialog_id, trigger.external_id})) {
                seen_n = m->integer(0);
                for (const auto& r : tx.query("SELECT n, sender, text, buttons, payload, created_at FROM messages "
                                              "WHERE dialog_id = ? AND n > ? ORDER BY n LIMIT 200",
                                              {dialog_id, *seen_n})) {
                    Message msg = message_from_row(r);
                    if (msg.from == "client") break;
                    if (msg.from == "bot") seen_replies.push_back(std::move(msg));
                }
                return;
            }
        }
        if (auto client = clients::find_client(tx, turn.dialog.client_id)) {
            turn.client = client->to_json();
            // last_seen_at is kept to the minute: writing the client row on every message would cost a page per
            // commit for nothing.
            turn.touch_client = turn.started_at - client->last_seen_at > 60'000;
        }
    });
    if (!found) throw core::NotFound(fmt::format("no dialog '{}'", dialog_id), "dialog_not_found");
    if (!state_text.empty()) {
        auto state = scenario::DialogState::parse(state_text);
        if (state) turn.state = std::move(*state);
    }

    if (seen_n) {
        TurnOutput out;
        out.duplicate = true;
        for (auto& m : seen_replies) {
            scenario::Reply reply;
            reply.text = m.text;
            for (const auto& b : m.buttons) {
                const auto& o = b.as_object();
                reply.buttons.push_back(scenario::ReplyButton{std::string(o.at("id").as_string()),
                                                              std::string(o.at("text").as_string())});
            }
            out.replies.push_back(std::move(reply));
        }
        out.waiting = turn.state.waiting;
        out.variables = turn.state.variables;
        out.position = turn.state.position;
        co_return out;
    }

    auto bot = bots_.load(turn.dialog.bot_id);
    if (!bot || !bot->runtime) {
        throw core::Conflict(fmt::format("bot '{}' has no scenario; PUT one first", turn.dialog.bot_id), "no_scenario");
    }
    const scenario::Runtime& runtime = *bot->runtime;
    turn.version = bot->version;
    turn.before = turn.state.variables;
    turn.delivery = (turn.dialog.channel == "preview" || turn.dialog.channel == "api") ? "none" : "pending";

    scenario::RunContext context;
    context.client = &turn.client;
    context.settings = settings_;
    context.step_limit = options_.step_limit;
    if (options_.record_runs) context.trace = &turn.trace;

    // Runs `first` and every action it asks for, collecting replies; persists before each action so that the
    // replies so far reach the client (outbox) while a slow action runs.
    auto drive = [&](scenario::RunResult first) -> asio::awaitable<void> {
        scenario::RunResult r = std::move(first);
        while (true) {
            std::int64_t now = bots_.clock().now_ms();
            for (auto& reply : r.replies) {
                turn.pending.push_back(bot_message(reply, now));
                turn.replies.push_back(std::move(reply));
            }
            turn.waiting = r.waiting;
            if (r.error) turn.error = r.error;
            if (!r.action) co_return;
            co_await persist(turn, false);
            actions::ActionCall call;
            call.action = r.action->action;
            call.params = std::move(r.action->params);
            call.dialog_id = turn.dialog.id;
            call.client_id = turn.dialog.client_id;
            call.state = turn.state.variables;
            call.client = turn.client;
            auto started = std::chrono::steady_clock::now();
            actions::ActionResult result = co_await run_action(std::move(call));
            double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
            json::object record{{"node", r.action->node}, {"action", r.action->action}, {"event", result.event},
                                {"ms", ms}};
            if (result.error) {
                record["error"] = json::object{{"code", result.error->code}, {"message", result.error->message}};
            }
            turn.actions.push_back(std::move(record));
            if (metrics_) {
                metrics_->histogram("parley_action_seconds", "Action latency by action", fmt::format("action=\"{}\"", r.action->action))
                    .observe(ms / 1000.0);
            }
            r = runtime.resume_after_action(turn.state, result, context);
        }
    };

    if (turn.state.waiting == Waiting::kAction) {
        // The process stopped while this dialog's action ran: run it again before anything else.
        turn.trigger = "recover";
        scenario::RunResult first = runtime.pending_action(turn.state, context);
        co_await drive(std::move(first));
    }
    std::int64_t now = bots_.clock().now_ms();
    switch (trigger.kind) {
        case Trigger::Kind::kStart:
            turn.trigger = "start";
            {
                scenario::RunResult first = runtime.start(turn.state, context);
                co_await drive(std::move(first));
            }
            break;
        case Trigger::Kind::kMessage: {
            turn.trigger = "message";
            Message m = client_message(trigger.message, now);
            if (!trigger.external_id.empty()) m.payload["external_id"] = trigger.external_id;
            if (trigger.message.kind == scenario::ClientMessage::Kind::kContact) {
                turn.phone = m.text;
                turn.touch_client = true;
            }
            turn.pending.push_back(std::move(m));
            scenario::RunResult first = runtime.on_message(turn.state, trigger.message, context);
            co_await drive(std::move(first));
            break;
        }
        case Trigger::Kind::kAlias: {
            turn.trigger = "alias:" + trigger.alias;
            scenario::RunResult first =
                runtime.on_alias_call(turn.state, trigger.alias, trigger.input, trigger.params, context);
            co_await drive(std::move(first));
            break;
        }
        case Trigger::Kind::kResume:
            if (turn.trigger.empty()) turn.trigger = "resume";
            break;
    }
    co_await persist(turn, true);

    TurnOutput out;
    out.replies = std::move(turn.replies);
    out.waiting = turn.state.waiting;
    out.variables = turn.state.variables;
    out.position = turn.state.position;
    out.error = turn.error;
    co_return out;
}

asio::awaitable<DialogInfo> DialogService::create(std::string bot_id, std::string channel, clients::NewClient client) {
    clients::validate_new_client(client);
    std::int64_t now = bots_.clock().now_ms();
    DialogInfo dialog{core::new_id(), bot_id, {}, channel, "bot", "none", now, now};
    auto insert = [dialog, client, now](store::Tx& tx) -> std::string {
        if (!tx.query_one("SELECT 1 FROM bots WHERE id = ?", {dialog.bot_id})) {
            throw core::NotFound(fmt::format("no bot '{}'", dialog.bot_id), "bot_not_found");
        }
        auto c = clients::create_client(tx, client, now);
        tx.exec("INSERT INTO dialogs(id, bot_id, client_id, channel, status, waiting, state, last_n, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, 'bot', 'none', '', 0, ?, ?)",
                {dialog.id, dialog.bot_id, c.id, dialog.channel, now, now});
        return c.id;
    };
    dialog.client_id = co_await store::co_write(bots_.store(), std::move(insert));
    co_return dialog;
}

asio::awaitable<std::pair<DialogInfo, TurnOutput>> DialogService::open(std::string bot_id, std::string channel,
                                                                        clients::NewClient client) {
    auto bot = bots_.load(bot_id);
    if (!bot) throw core::NotFound(fmt::format("no bot '{}'", bot_id), "bot_not_found");
    if (!bot->runtime) throw core::Conflict(fmt::format("bot '{}' has no scenario; PUT one first", bot_id), "no_scenario");
    DialogInfo dialog = co_await create(std::move(bot_id), std::move(channel), std::move(client));
    Trigger start = Trigger::start();
    TurnOutput out = co_await run(dialog.id, std::move(start));
    co_return std::make_pair(std::move(dialog), std::move(out));
}

std::vector<DialogService::Delivery> DialogService::pending_deliveries(const std::vector<std::string>& channels,
                                                                        std::size_t limit) const {
    std::vector<Delivery> out;
    bots_.store().read([&](store::Tx& tx) {
        std::string sql =
            "SELECT m.dialog_id, d.channel, d.client_id, m.n, m.sender, m.text, m.buttons, m.payload, m.created_at "
            "FROM messages m JOIN dialogs d ON d.id = m.dialog_id WHERE m.delivery = 'pending'";
        store::Params params;
        if (!channels.empty()) {
            sql += " AND d.channel IN (";
            for (std::size_t i = 0; i < channels.size(); ++i) {
                sql += i ? ", ?" : "?";
                params.emplace_back(channels[i]);
            }
            sql += ")";
        }
        sql += " ORDER BY m.created_at, m.dialog_id, m.n LIMIT ?";
        params.emplace_back(static_cast<std::int64_t>(limit));
        for (const auto& r : tx.query(sql, params)) {
            Message m;
            m.n = r.integer(3);
            m.from = r.text(4);
            m.text = r.text(5);
            if (!r.is_null(6)) {
                auto v = json::parse(r.text(6));
                if (v.is_array()) m.buttons = std::move(v.get_array());
            }
            if (!r.is_null(7)) {
                auto v = json::parse(r.text(7));
                if (v.is_object()) m.payload = std::move(v.get_object());
            }
            m.created_at = r.integer(8);
            out.push_back(Delivery{r.text(0), r.text(1), r.text(2), std::move(m)});
        }
    });
    return out;
}

asio::awaitable<void> DialogService::mark_delivery(std::string dialog_id, std::int64_t n, std::string status) {
    static const char* const kStatuses[] = {"sent", "delivered", "read", "failed", "dead", "pending"};
    bool known = false;
    for (const char* k : kStatuses) known = known || status == k;
    if (!known) throw core::BadRequest(fmt::format("unknown delivery status '{}'", status), "invalid_status");
    auto write = [dialog_id, n, status](store::Tx& tx) {
        tx.exec("UPDATE messages SET delivery = ? WHERE dialog_id = ? AND n = ?", {status, dialog_id, n});
    };
    co_await store::co_write(bots_.store(), std::move(write));
}

asio::awaitable<std::string> DialogService::dialog_for(std::string bot_id, std::string client_id) {
    std::optional<std::string> id;
    bool client_exists = false;
    bots_.store().read([&](store::Tx& tx) {
        client_exists = tx.query_one("SELECT 1 FROM clients WHERE id = ?", {client_id}).has_value();
        if (auto row = tx.query_one("SELECT id FROM dialogs WHERE client_id = ? AND bot_id = ? "
                                    "ORDER BY updated_at DESC LIMIT 1",
                                    {client_id, bot_id})) {
            id = row->text(0);
        }
    });
    if (!client_exists) throw core::NotFound(fmt::format("no client '{}'", client_id), "client_not_found");
    if (id) co_return *id;
    std::int64_t now = bots_.clock().now_ms();
    std::string dialog_id = core::new_id();
    auto create = [dialog_id, bot_id, client_id, now](store::Tx& tx) {
        tx.exec("INSERT INTO dialogs(id, bot_id, client_id, channel, status, waiting, state, last_n, created_at, "
                "updated_at) VALUES (?, ?, ?, 'api', 'bot', 'none', '', 0, ?, ?)",
                {dialog_id, bot_id, client_id, now, now});
    };
    co_await store::co_write(bots_.store(), std::move(create));
    co_return dialog_id;
}

asio::awaitable<std::optional<Message>> DialogService::post(std::string dialog_id, std::string from, std::string text,
                                                            bool release) {
    auto guard = co_await locks_.lock(dialog_id);
    std::int64_t now = bots_.clock().now_ms();
    auto write = [dialog_id, from, text, release, now](store::Tx& tx) -> std::optional<Message> {
        auto row = tx.query_one("SELECT channel, state, last_n FROM dialogs WHERE id = ?", {dialog_id});
        if (!row) throw core::NotFound(fmt::format("no dialog '{}'", dialog_id), "dialog_not_found");
        std::string channel = row->text(0);
        std::int64_t n = row->integer(2);
        std::optional<Message> message;
        if (!text.empty()) {
            message = Message{++n, from, text, {}, {}, now};
            std::string delivery = (channel == "preview" || channel == "api") ? "none" : "pending";
            tx.exec("INSERT INTO messages(dialog_id, n, sender, text, delivery, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    {dialog_id, n, from, text, delivery, now});
        }
        if (release) {
            scenario::DialogState state;
            if (!row->text(1).empty()) {
                if (auto parsed = scenario::DialogState::parse(row->text(1))) state = std::move(*parsed);
            }
            state.with_operator = false;
            if (state.waiting == Waiting::kOperator) state.waiting = Waiting::kEnd;
            tx.exec("UPDATE dialogs SET state = ?, waiting = ?, status = 'bot', last_n = ?, updated_at = ? WHERE id = ?",
                    {state.serialize(), waiting_name(state.waiting), n, now, dialog_id});
        } else {
            tx.exec("UPDATE dialogs SET last_n = ?, updated_at = ? WHERE id = ?", {n, now, dialog_id});
        }
        return message;
    };
    auto message = co_await store::co_write(bots_.store(), std::move(write));
    co_return message;
}

asio::awaitable<void> DialogService::hold(std::string dialog_id) {
    auto guard = co_await locks_.lock(dialog_id);
    std::int64_t now = bots_.clock().now_ms();
    auto write = [dialog_id, now](store::Tx& tx) {
        auto row = tx.query_one("SELECT state FROM dialogs WHERE id = ?", {dialog_id});
        if (!row) throw core::NotFound(fmt::format("no dialog '{}'", dialog_id), "dialog_not_found");
        scenario::DialogState state;
        if (!row->text(0).empty()) {
            if (auto parsed = scenario::DialogState::parse(row->text(0))) state = std::move(*parsed);
        }
        state.with_operator = true;
        if (state.waiting == Waiting::kAction) {
            tx.exec("UPDATE dialogs SET state = ?, updated_at = ? WHERE id = ?", {state.serialize(), now, dialog_id});
            return;
        }
        state.waiting = Waiting::kOperator;
        tx.exec("UPDATE dialogs SET state = ?, waiting = ?, status = 'operator', updated_at = ? WHERE id = ?",
                {state.serialize(), waiting_name(state.waiting), now, dialog_id});
    };
    co_await store::co_write(bots_.store(), std::move(write));
}

std::optional<DialogInfo> DialogService::find(std::string_view dialog_id) const {
    std::optional<DialogInfo> out;
    bots_.store().read([&](store::Tx& tx) {
        if (auto row = tx.query_one(fmt::format("SELECT {} FROM dialogs WHERE id = ?", kDialogColumns),
                                    {std::string(dialog_id)})) {
            out = dialog_from_row(*row);
        }
    });
    return out;
}

std::vector<Message> DialogService::messages(std::string_view dialog_id, std::int64_t after, std::size_t limit) const {
    std::vector<Message> out;
    bots_.store().read([&](store::Tx& tx) {
        for (const auto& r : tx.query("SELECT n, sender, text, buttons, payload, created_at FROM messages "
                                      "WHERE dialog_id = ? AND n > ? ORDER BY n LIMIT ?",
                                      {std::string(dialog_id), after, static_cast<std::int64_t>(limit)})) {
            out.push_back(message_from_row(r));
        }
    });
    return out;
}

json::array DialogService::runs(std::string_view bot_id, std::string_view dialog_id, std::optional<std::string> cursor,
                                std::size_t limit, std::optional<std::string>* next) const {
    json::array out;
    bots_.store().read([&](store::Tx& tx) {
        std::string sql =
            "SELECT id, dialog_id, version, trigger, started_at, ms, nodes, actions, changed, waiting, error "
            "FROM bot_runs WHERE bot_id = ? AND id < ?";
        store::Params params{std::string(bot_id), cursor.value_or("~")};
        if (!dialog_id.empty()) {
            sql += " AND dialog_id = ?";
            params.emplace_back(std::string(dialog_id));
        }
        sql += " ORDER BY id DESC LIMIT ?";
        params.emplace_back(static_cast<std::int64_t>(limit + 1));
        auto rows = tx.query(sql, params);
        for (std::size_t i = 0; i < rows.size() && i < limit; ++i) {
            const auto& r = rows[i];
            json::object run{{"id", r.text(0)},
                             {"dialog_id", r.text(1)},
                             {"version", r.integer(2)},
                             {"trigger", r.text(3)},
                             {"started_at", core::format_time(r.integer(4))},
                             {"ms", r.real(5)},
                             {"nodes", json::parse(r.text(6))},
                             {"actions", json::parse(r.text(7))},
                             {"changed", json::parse(r.text(8))},
                             {"waiting", r.text(9)}};
            run["error"] = r.is_null(10) ? json::value(nullptr) : json::parse(r.text(10));
            out.push_back(std::move(run));
        }
        if (rows.size() > limit) *next = rows[limit - 1].text(0);
    });
    return out;
}

asio::awaitable<std::int64_t> DialogService::prune_runs(std::int64_t before_ms) {
    auto prune = [before_ms](store::Tx& tx) -> std::int64_t {
        // Run ids sort by time: the primary key finds old runs without an index on started_at.
        return tx.exec("DELETE FROM bot_runs WHERE id < ?", {core::id_floor(before_ms)});
    };
    std::int64_t removed = co_await store::co_write(bots_.store(), std::move(prune));
    co_return removed;
}

asio::awaitable<std::size_t> DialogService::recover() {
    std::vector<std::string> ids;
    bots_.store().read([&](store::Tx& tx) {
        for (const auto& r : tx.query("SELECT id FROM dialogs WHERE waiting = 'action'")) ids.push_back(r.text(0));
    });
    std::size_t resumed = 0;
    for (auto& id : ids) {
        try {
            Trigger resume = Trigger::resume();
            co_await run(id, std::move(resume));
            ++resumed;
        } catch (const std::exception& e) {
            core::log_event(spdlog::level::warn, "dialog_recover_failed",
                            fmt::format(R"("dialog":{},"message":{})", core::json_quote(id), core::json_quote(e.what())));
        }
    }
    co_return resumed;
}

}  // namespace parley::bots
