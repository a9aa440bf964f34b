/// The message pipeline from the scenario's side: dialogs (one client talking to one bot over one channel),
/// their messages (the inbox and the outbox), and running a bot turn for a dialog — strictly in order per dialog,
/// in parallel across dialogs, with actions run asynchronously and every step's new state and replies committed
/// together. Used by the preview channel, the alias-call API and macros now, by the channel adapters later.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actions/actions.h"
#include "bots/bots.h"
#include "bots/keyed_lock.h"
#include "clients/clients.h"
#include "core/metrics.h"
#include "scenario/runtime.h"

namespace parley::events {
class EventHub;
}

namespace parley::bots {

/// What starts a turn.
struct Trigger {
    enum class Kind { kStart, kMessage, kAlias, kResume };
    Kind kind = Kind::kMessage;
    scenario::ClientMessage message;  ///< kMessage
    std::string external_id;          ///< kMessage: the channel's message id; a repeat is answered, not rerun
    std::string alias;                ///< kAlias
    std::string input;                ///< kAlias: becomes {{user_input}}
    json::object params;              ///< kAlias: merged into the variables

    static Trigger start() { return Trigger{Kind::kStart}; }
    static Trigger resume() { return Trigger{Kind::kResume}; }
};

/// What a turn answers (the preview API's body).
struct TurnOutput {
    std::vector<scenario::Reply> replies;
    scenario::Waiting waiting = scenario::Waiting::kNone;
    json::object variables;
    std::string position;
    std::optional<scenario::RunError> error;
    bool duplicate = false;  ///< the message was seen before: `replies` are what it got then

    /// `{"replies", "waiting", "state", "position", "error"?, "duplicate"?}`; waiting is input|buttons|operator|end.
    json::object to_json() const;
};

/// One stored message of a dialog.
struct Message {
    std::int64_t n = 0;
    std::string from;  ///< client | bot | operator | system
    std::string text;
    json::array buttons;
    json::object payload;  ///< contact, button pressed, ...
    std::int64_t created_at = 0;
    json::object to_json() const;
};

struct DialogInfo {
    std::string id;
    std::string bot_id;
    std::string client_id;
    std::string channel;
    std::string status;
    std::string waiting;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
    json::object to_json() const;
};

struct DialogOptions {
    std::uint32_t step_limit = scenario::RunContext::kDefaultStepLimit;
    std::int64_t action_timeout_ms = 120'000;  ///< an action that never answers ends with event `error`/timeout
    bool record_runs = true;                   ///< the builder's Runs view (bot_runs)
};

/// Runs bot turns for dialogs. Thread-safety: every method may be called from any thread; turns of one dialog are
/// serialised by a KeyedLock.
class DialogService {
public:
    DialogService(BotService& bots, const actions::ActionRegistry& actions, const scenario::InstanceSettings* settings,
                  events::EventHub* hub, core::Metrics* metrics, DialogOptions options = {});

    /// Creates a client and a dialog with `bot_id` on channel `channel` (in one transaction) and runs the start
    /// node. Returns the dialog id and the turn.
    boost::asio::awaitable<std::pair<DialogInfo, TurnOutput>> open(std::string bot_id, std::string channel,
                                                                   clients::NewClient client);

    /// Creates a client and a dialog with `bot_id` on `channel` (in one transaction) without running anything:
    /// channel adapters create the dialog on a client's first message, then run() that message (a dialog that
    /// never started starts on its first message, with the text as {{user_input}}).
    boost::asio::awaitable<DialogInfo> create(std::string bot_id, std::string channel, clients::NewClient client);

    /// Bot and operator messages waiting to be sent by a channel (delivery `pending`), oldest first, of dialogs
    /// whose channel is one of `channels` (empty: any channel except preview and api).
    struct Delivery {
        std::string dialog_id;
        std::string channel;
        std::string client_id;
        Message message;
    };
    std::vector<Delivery> pending_deliveries(const std::vector<std::string>& channels, std::size_t limit) const;
    /// Records a delivery outcome: `sent`, `delivered`, `read`, `failed` (will not be retried) or `dead`.
    boost::asio::awaitable<void> mark_delivery(std::string dialog_id, std::int64_t n, std::string status);

    /// Runs one turn of dialog `dialog_id`. NotFound when the dialog does not exist; Conflict `no_scenario` when
    /// its bot has none.
    boost::asio::awaitable<TurnOutput> run(std::string dialog_id, Trigger trigger);

    /// The dialog of `client_id` with `bot_id` most recently active, or a new one on channel `api`.
    /// NotFound `client_not_found`.
    boost::asio::awaitable<std::string> dialog_for(std::string bot_id, std::string client_id);

    /// Appends a message that is not the client's (an operator's reply, a system note; empty text: none) in order
    /// with the dialog's bot turns. `release` hands a dialog that waits for an operator back to the bot: it then
    /// waits at its end, so the client's next message starts the scenario again. NotFound `dialog_not_found`.
    boost::asio::awaitable<std::optional<Message>> post(std::string dialog_id, std::string from, std::string text,
                                                        bool release);

    /// The counterpart of `post(..., release = true)`: puts the dialog with an operator (an operator started it),
    /// so the bot stays silent on the client's messages until a release. A dialog waiting for an action's answer
    /// is only marked (the scenario goes on when the action answers). NotFound `dialog_not_found`.
    boost::asio::awaitable<void> hold(std::string dialog_id);

    std::optional<DialogInfo> find(std::string_view dialog_id) const;
    /// Messages with n > after, oldest first, at most `limit`.
    std::vector<Message> messages(std::string_view dialog_id, std::int64_t after, std::size_t limit) const;
    /// The recorded runs of a dialog (or of a bot when dialog is empty), newest first.
    json::array runs(std::string_view bot_id, std::string_view dialog_id, std::optional<std::string> cursor,
                     std::size_t limit, std::optional<std::string>* next) const;
    /// Deletes recorded runs older than `before_ms`; returns how many.
    boost::asio::awaitable<std::int64_t> prune_runs(std::int64_t before_ms);

    /// Finishes the actions of dialogs left waiting for one by a crash (run once at start-up, in the
    /// background). Returns how many dialogs it resumed.
    boost::asio::awaitable<std::size_t> recover();

    std::size_t turns_in_flight() const { return in_flight_.load(); }

private:
    struct Turn;
    boost::asio::awaitable<actions::ActionResult> run_action(actions::ActionCall call);
    boost::asio::awaitable<void> persist(Turn& turn, bool final_step);

    BotService& bots_;
    const actions::ActionRegistry& actions_;
    const scenario::InstanceSettings* settings_;
    events::EventHub* hub_;
    core::Metrics* metrics_;
    DialogOptions options_;
    KeyedLock locks_;
    std::atomic<std::size_t> in_flight_{0};
};

}  // namespace parley::bots
