#include "bots/triggers.h"

#include <fmt/format.h>

#include "bots/cron.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "store/async.h"

namespace parley::bots {

namespace {

constexpr const char* kColumns = "id, bot_id, kind, event, cron, timezone, alias, channel, enabled, next_run_at, last_run_at";

TriggerInfo from_row(const store::Row& r) {
    return TriggerInfo{r.text(0), r.text(1), r.text(2), r.text(3), r.text(4), r.text(5),
                       r.text(6), r.text(7), r.integer(8) != 0, r.integer(9), r.integer(10)};
}

json::array field(std::string_view name) { return json::array{json::object{{"field", name}}}; }

}  // namespace

bool is_valid_event_name(std::string_view name) {
    if (name.empty() || name.size() > 64) return false;
    for (char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.')) return false;
    }
    return true;
}

json::object TriggerInfo::to_json() const {
    json::object out{{"id", id}, {"bot_id", bot_id}, {"kind", kind}, {"alias", alias}, {"enabled", enabled}};
    if (kind == "event") {
        out["event"] = event;
    } else {
        out["cron"] = cron;
        out["timezone"] = timezone;
        out["channel"] = channel.empty() ? json::value(nullptr) : json::value(channel);
        out["next_run_at"] = next_run_at ? json::value(core::format_time(next_run_at)) : json::value(nullptr);
        out["last_run_at"] = last_run_at ? json::value(core::format_time(last_run_at)) : json::value(nullptr);
    }
    return out;
}

std::vector<store::Migration> trigger_migrations() {
    return {{"bots", 2, "triggers",
             R"sql(
CREATE TABLE bot_triggers (
  id TEXT PRIMARY KEY,
  bot_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  event TEXT NOT NULL DEFAULT '',
  cron TEXT NOT NULL DEFAULT '',
  timezone TEXT NOT NULL DEFAULT '',
  alias TEXT NOT NULL,
  channel TEXT NOT NULL DEFAULT '',
  enabled INTEGER NOT NULL DEFAULT 1,
  next_run_at INTEGER NOT NULL DEFAULT 0,
  last_run_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX bot_triggers_bot ON bot_triggers(bot_id);
CREATE INDEX bot_triggers_due ON bot_triggers(next_run_at) WHERE kind = 'schedule' AND enabled = 1;
)sql"}};
}

TriggerService::TriggerService(BotService& bots, DialogService& dialogs) : bots_(bots), dialogs_(dialogs) {}

boost::asio::awaitable<TriggerInfo> TriggerService::create(std::string bot_id, json::object body) {
    core::reject_unknown_fields(body, {"kind", "event", "cron", "timezone", "alias", "channel", "enabled"});
    TriggerInfo t;
    t.id = core::new_id();
    t.bot_id = bot_id;
    t.kind = std::string(core::required_string(body, "kind"));
    t.alias = std::string(core::required_string(body, "alias"));
    t.enabled = core::optional_bool(body, "enabled").value_or(true);
    auto bot = bots_.load(bot_id);
    if (!bot) throw core::NotFound(fmt::format("no bot '{}'", bot_id), "bot_not_found");
    if (!bot->runtime || bot->runtime->scenario().find_alias(t.alias) == scenario::kNoNode) {
        throw core::Unprocessable(fmt::format("the bot's scenario has no entry with alias '{}'", t.alias),
                                  "alias_not_found", field("alias"));
    }
    if (t.kind == "event") {
        t.event = std::string(core::required_string(body, "event"));
        if (!is_valid_event_name(t.event)) {
            throw core::BadRequest("event names match [a-z0-9_.]{1,64}", "invalid_event", field("event"));
        }
        if (body.contains("cron")) throw core::BadRequest("an event trigger has no 'cron'", "unexpected_field", field("cron"));
    } else if (t.kind == "schedule") {
        t.cron = std::string(core::required_string(body, "cron"));
        t.timezone = core::optional_string(body, "timezone").value_or("UTC");
        t.channel = core::optional_string(body, "channel").value_or("");
        if (t.channel.size() > 32) throw core::BadRequest("'channel' is too long", "invalid_channel", field("channel"));
        CronSchedule schedule = CronSchedule::parse(t.cron, t.timezone);
        auto next = schedule.next_after(bots_.clock().now_ms());
        if (!next) throw core::BadRequest("the cron expression never fires", "invalid_cron", field("cron"));
        t.next_run_at = *next;
    } else {
        throw core::BadRequest("'kind' is event or schedule", "invalid_kind", field("kind"));
    }
    auto insert = [t](store::Tx& tx) -> bool {
        auto count = tx.query_one("SELECT count(*) FROM bot_triggers WHERE bot_id = ?", {t.bot_id});
        if (count && count->integer(0) >= static_cast<std::int64_t>(kMaxTriggersPerBot)) return false;
        tx.exec(fmt::format("INSERT INTO bot_triggers({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", kColumns),
                {t.id, t.bot_id, t.kind, t.event, t.cron, t.timezone, t.alias, t.channel,
                 static_cast<std::int64_t>(t.enabled), t.next_run_at, t.last_run_at});
        return true;
    };
    bool ok = co_await store::co_write(bots_.store(), std::move(insert));
    if (!ok) throw core::Conflict(fmt::format("a bot has at most {} triggers", kMaxTriggersPerBot), "too_many_triggers");
    co_return t;
}

std::vector<TriggerInfo> TriggerService::list(std::string_view bot_id) const {
    std::vector<TriggerInfo> out;
    bots_.store().read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM bot_triggers WHERE bot_id = ? ORDER BY id", kColumns),
                                      {std::string(bot_id)})) {
            out.push_back(from_row(r));
        }
    });
    return out;
}

boost::asio::awaitable<TriggerInfo> TriggerService::set_enabled(std::string bot_id, std::string id, bool enabled) {
    std::int64_t now = bots_.clock().now_ms();
    auto change = [bot_id, id, enabled, now](store::Tx& tx) -> std::optional<TriggerInfo> {
        auto row = tx.query_one(fmt::format("SELECT {} FROM bot_triggers WHERE id = ? AND bot_id = ?", kColumns), {id, bot_id});
        if (!row) return std::nullopt;
        TriggerInfo t = from_row(*row);
        t.enabled = enabled;
        if (enabled && t.kind == "schedule") {
            // Re-enabled: the next run is computed from now, not from when it was switched off.
            if (auto next = CronSchedule::parse(t.cron, t.timezone).next_after(now)) t.next_run_at = *next;
        }
        tx.exec("UPDATE bot_triggers SET enabled = ?, next_run_at = ? WHERE id = ?",
                {static_cast<std::int64_t>(enabled), t.next_run_at, id});
        return t;
    };
    auto t = co_await store::co_write(bots_.store(), std::move(change));
    if (!t) throw core::NotFound(fmt::format("no trigger '{}'", id), "trigger_not_found");
    co_return *t;
}

boost::asio::awaitable<void> TriggerService::remove(std::string bot_id, std::string id) {
    auto erase = [bot_id, id](store::Tx& tx) -> bool {
        return tx.exec("DELETE FROM bot_triggers WHERE id = ? AND bot_id = ?", {id, bot_id}) > 0;
    };
    bool removed = co_await store::co_write(bots_.store(), std::move(erase));
    if (!removed) throw core::NotFound(fmt::format("no trigger '{}'", id), "trigger_not_found");
}

boost::asio::awaitable<std::size_t> TriggerService::emit(std::string dialog_id, std::string event) {
    auto dialog = dialogs_.find(dialog_id);
    if (!dialog) throw core::NotFound(fmt::format("no dialog '{}'", dialog_id), "dialog_not_found");
    std::vector<std::string> aliases;
    bots_.store().read([&](store::Tx& tx) {
        for (const auto& r : tx.query("SELECT alias FROM bot_triggers WHERE bot_id = ? AND kind = 'event' AND "
                                      "event = ? AND enabled = 1 ORDER BY id",
                                      {dialog->bot_id, event})) {
            aliases.push_back(r.text(0));
        }
    });
    std::size_t ran = 0;
    for (auto& alias : aliases) {
        Trigger trigger;
        trigger.kind = Trigger::Kind::kAlias;
        trigger.alias = alias;
        trigger.params = json::object{{"event", event}};
        co_await dialogs_.run(dialog_id, std::move(trigger));
        ++ran;
    }
    co_return ran;
}

boost::asio::awaitable<std::size_t> TriggerService::run_due(std::int64_t now_ms) {
    std::vector<TriggerInfo> due;
    bots_.store().read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM bot_triggers WHERE kind = 'schedule' AND enabled = 1 "
                                                  "AND next_run_at <= ? ORDER BY next_run_at LIMIT 100",
                                                  kColumns),
                                      {now_ms})) {
            due.push_back(from_row(r));
        }
    });
    std::size_t ran = 0;
    for (auto& t : due) {
        std::int64_t next = 0;
        try {
            next = CronSchedule::parse(t.cron, t.timezone).next_after(now_ms).value_or(0);
        } catch (const std::exception&) {
        }
        // Claim the run first: moved on and committed before any dialog runs (at most once per fire time).
        auto claim = [id = t.id, previous = t.next_run_at, next, now_ms](store::Tx& tx) -> bool {
            return tx.exec("UPDATE bot_triggers SET next_run_at = ?, last_run_at = ?, enabled = ? WHERE id = ? AND "
                           "next_run_at = ?",
                           {next, now_ms, static_cast<std::int64_t>(next != 0), id, previous}) > 0;
        };
        if (!co_await store::co_write(bots_.store(), std::move(claim))) continue;  // another node took it
        std::vector<std::string> dialog_ids;
        bots_.store().read([&](store::Tx& tx) {
            std::string sql = "SELECT id FROM dialogs WHERE bot_id = ?";
            store::Params params{t.bot_id};
            if (!t.channel.empty()) {
                sql += " AND channel = ?";
                params.emplace_back(t.channel);
            }
            sql += " ORDER BY id LIMIT ?";
            params.emplace_back(static_cast<std::int64_t>(kMaxDialogsPerScheduledRun));
            for (const auto& r : tx.query(sql, params)) dialog_ids.push_back(r.text(0));
        });
        for (auto& id : dialog_ids) {
            Trigger trigger;
            trigger.kind = Trigger::Kind::kAlias;
            trigger.alias = t.alias;
            trigger.params = json::object{{"schedule", t.id}};
            try {
                co_await dialogs_.run(id, std::move(trigger));
                ++ran;
            } catch (const std::exception& e) {
                core::log_event(spdlog::level::warn, "schedule_run_failed",
                                fmt::format(R"("trigger":{},"dialog":{},"message":{})", core::json_quote(t.id),
                                            core::json_quote(id), core::json_quote(e.what())));
            }
        }
    }
    co_return ran;
}

}  // namespace parley::bots
