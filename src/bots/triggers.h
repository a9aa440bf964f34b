/// Triggers that start a section of a bot without a client message: internal events (`client_registered`,
/// `dialog_closed`, `operator_connected`, or any custom event name a module or the API emits for a dialog) and
/// schedules (cron expressions in a time zone) that run a section for every dialog of the bot, optionally only
/// on one channel. Each trigger names the alias of an entry node; the run is an alias call on the dialog.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "bots/bots.h"
#include "bots/dialogs.h"

namespace parley::bots {

inline constexpr std::size_t kMaxTriggersPerBot = 100;
inline constexpr std::size_t kMaxDialogsPerScheduledRun = 10'000;

struct TriggerInfo {
    std::string id;
    std::string bot_id;
    std::string kind;  ///< event | schedule
    std::string event;
    std::string cron;
    std::string timezone;
    std::string alias;
    std::string channel;  ///< schedules: only dialogs on this channel; empty = all
    bool enabled = true;
    std::int64_t next_run_at = 0;
    std::int64_t last_run_at = 0;
    json::object to_json() const;
};

/// Thread-safety: every method may be called from any thread.
class TriggerService {
public:
    TriggerService(BotService& bots, DialogService& dialogs);

    /// Validates `{"kind", "event" | "cron"+"timezone", "alias", "channel"?, "enabled"?}`; the alias must exist in
    /// the bot's current scenario.
    boost::asio::awaitable<TriggerInfo> create(std::string bot_id, json::object body);
    std::vector<TriggerInfo> list(std::string_view bot_id) const;
    boost::asio::awaitable<TriggerInfo> set_enabled(std::string bot_id, std::string id, bool enabled);
    boost::asio::awaitable<void> remove(std::string bot_id, std::string id);

    /// Runs the event triggers of the dialog's bot that listen to `event`; returns how many ran.
    boost::asio::awaitable<std::size_t> emit(std::string dialog_id, std::string event);

    /// Runs every enabled schedule that is due at `now_ms` (its next run is moved on before it runs, so a crash
    /// skips a run rather than sending it twice); returns the number of dialogs it ran for.
    boost::asio::awaitable<std::size_t> run_due(std::int64_t now_ms);

private:
    BotService& bots_;
    DialogService& dialogs_;
};

/// Event names: `[a-z0-9_.]{1,64}`.
bool is_valid_event_name(std::string_view name);

std::vector<store::Migration> trigger_migrations();

}  // namespace parley::bots
