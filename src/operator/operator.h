/// The operator panel's backend (OperatorLine): operators and their statuses and capacity, dialogs handed over
/// by bots (unassigned, queue, assigned, closed), automatic assignment to the least busy free operator, the
/// queue served in order as operators free up, operator replies, closing (the client goes back to the bot and
/// the `dialog_closed` event fires), and live events. The scenario side connects through the action
/// `operator_panel__connect_to_operator_with_msg`.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actions/actions.h"
#include "bots/dialogs.h"
#include "bots/triggers.h"
#include "core/clock.h"
#include "core/principal.h"
#include "store/store.h"

namespace parley::events {
class EventHub;
}
namespace parley::http {
class Router;
}

namespace parley::operators {

namespace json = boost::json;

inline constexpr unsigned kDefaultCapacity = 5;
inline constexpr std::size_t kMaxReplyBytes = 4096;

/// Migrations of module `operator`.
std::vector<store::Migration> migrations();

/// Thread-safety: every method may be called from any thread. Assignment decisions are made inside single write
/// transactions, so with one writer no dialog is assigned twice and no operator goes over capacity.
class OperatorService {
public:
    OperatorService(store::Store& store, const core::Clock& clock, bots::DialogService& dialogs,
                    bots::TriggerService& triggers, events::EventHub* hub);

    /// online | away | break | offline. Going offline puts the operator's dialogs back in the queue; coming online
    /// takes queued dialogs up to capacity.
    boost::asio::awaitable<json::object> set_status(const core::Principal& who, std::string status,
                                                    std::optional<unsigned> capacity);
    json::object status_of(const core::Principal& who) const;
    /// Every operator with status and load (supervisors).
    json::array operators() const;

    /// folder: mine | queue | unassigned | closed | all (all and others' closed dialogs need operator.delete).
    json::array dialogs(const core::Principal& who, std::string_view folder, std::optional<std::string> cursor,
                        std::size_t limit, std::optional<std::string>* next) const;
    boost::asio::awaitable<json::object> take(const core::Principal& who, std::string dialog_id);
    boost::asio::awaitable<json::object> reply(const core::Principal& who, std::string dialog_id, std::string text);
    boost::asio::awaitable<void> close(const core::Principal& who, std::string dialog_id);
    /// Messages of a dialog the caller may see.
    json::array messages(const core::Principal& who, std::string_view dialog_id, std::int64_t after, std::size_t limit) const;

    /// Quick replies: personal ones (`shared` false) belong to their author; shared ones need operator_settings.edit
    /// to change. Texts are templates over the dialog's client (`{{client.name}}`, `{{operator.name}}`); a text that
    /// does not compile is refused (422 naming the offset).
    json::array quick_replies(const core::Principal& who, std::optional<std::string> q) const;
    boost::asio::awaitable<json::object> create_quick_reply(const core::Principal& who, json::object body);
    boost::asio::awaitable<json::object> update_quick_reply(const core::Principal& who, std::string id, json::object body);
    boost::asio::awaitable<void> delete_quick_reply(const core::Principal& who, std::string id);

    /// Copilot for a dialog: quick replies ranked by the words they share with the client's last messages,
    /// rendered for this client. (Fastline Pro adds knowledge snippets when an agent is configured.)
    json::object copilot(const core::Principal& who, std::string_view dialog_id) const;

    /// The scenario action: see make_connect_action.
    void connect(actions::ActionCall call, actions::ActionDone done);

private:
    /// Assigns queued dialogs (oldest first) to free online operators; returns how many.
    boost::asio::awaitable<std::size_t> dispatch_queue();
    void publish(const std::string& type, json::object body, const std::string& user_id = {});
    /// The op_dialogs row as JSON, or NotFound; checks that `who` may see it.
    json::object visible_dialog(const core::Principal& who, std::string_view dialog_id) const;

    store::Store& store_;
    const core::Clock& clock_;
    bots::DialogService& dialogs_;
    bots::TriggerService& triggers_;
    events::EventHub* hub_;
};

/// `operator_panel__connect_to_operator_with_msg` (events connected, queued, limit, error): params
/// `subject_alias`, `auto_connect_operator` (bool), `status` ("queue" lets the dialog wait when everyone is busy),
/// `message` (shown to operators). See docs/openapi.yaml and src/operator/README.md.
std::shared_ptr<actions::Action> make_connect_action(OperatorService& service);

void register_routes(http::Router& router, OperatorService& service);

}  // namespace parley::operators
