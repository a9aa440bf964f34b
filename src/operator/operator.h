/// The operator panel's backend (OperatorLine): operators with built-in and custom statuses and capacity, skill
/// groups, subjects and client-segment rules that route dialogs handed over by bots (unassigned, queue,
/// assigned, closed) to a group, distribution policies per group (least busy, round robin, by skill), queues per
/// group served in order, transfers and supervisor reassignment, operator replies with signatures and
/// attachments, internal notes, tags, custom folders and filters, read markers, outgoing dialogs, closing (the
/// client goes back to the bot and the `dialog_closed` event fires), and live events. The scenario side connects
/// through the action `operator_panel__connect_to_operator_with_msg`.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <functional>
#include <vector>

#include "actions/actions.h"
#include "auth/settings.h"
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

// Limits of the routing and dialog features (README "Limits"; each has a test).
inline constexpr unsigned kMaxCapacity = 100;
inline constexpr std::size_t kMaxStatusesPerKind = 50;       ///< operator statuses, dialog statuses
inline constexpr std::size_t kMaxSkillGroups = 200;
inline constexpr std::size_t kMaxGroupMembers = 1000;
inline constexpr int kMinSkillLevel = 1;
inline constexpr int kMaxSkillLevel = 10;
inline constexpr std::size_t kMaxSubjects = 1000;
inline constexpr std::size_t kMaxSegmentRules = 200;
inline constexpr std::size_t kMaxNameBytes = 100;            ///< names and titles of groups, subjects, statuses, folders
inline constexpr std::size_t kMaxAliasBytes = 64;            ///< status names and subject aliases: [a-z0-9_.-]
inline constexpr std::size_t kMaxFoldersPerUser = 50;
inline constexpr std::size_t kMaxDialogTags = 20;            ///< tags on one dialog
inline constexpr std::size_t kMaxDialogTagBytes = 50;
inline constexpr std::size_t kMaxNoteBytes = 4096;
inline constexpr std::size_t kMaxNotesPerDialog = 1000;
inline constexpr std::size_t kMaxSignatureBytes = 1000;
inline constexpr std::size_t kMaxTransferCommentBytes = 1000;
inline constexpr std::size_t kMaxAttachmentUrlBytes = 2048;
inline constexpr std::size_t kMaxAttachmentNameBytes = 255;
inline constexpr std::size_t kMaxReassignDialogs = 500;      ///< dialog ids in one reassign request
inline constexpr std::size_t kMaxSearchBytes = 200;          ///< `q` of the dialog list
inline constexpr std::size_t kQueueScanLimit = 1000;         ///< queued dialogs looked at per dispatch
inline constexpr std::size_t kHistoryMessages = 5;           ///< last messages per dialog in the client's history

/// The instance setting (auth settings) "auto-connect a free operator to a new dialog": when false, handovers
/// asking for auto-connect land in Unassigned instead. Default true.
inline constexpr std::string_view kSettingAutoConnect = "operator_auto_connect";

/// Migrations of module `operator`.
std::vector<store::Migration> migrations();

/// Filters of the dialog list (ad-hoc query parameters, or the saved filter of a custom folder). Pure data.
struct DialogFilter {
    std::vector<std::string> states;             ///< unassigned | queue | assigned | closed
    std::optional<std::string> operator_id;
    std::optional<std::string> group_id;         ///< a group id, or "none"
    std::optional<std::string> subject;
    std::optional<std::string> tag;
    std::optional<std::string> channel;
    std::optional<std::string> client_id;
    std::optional<std::string> label;            ///< the dialog status (admin-defined)
    std::optional<std::string> text;             ///< searched in the client's name, the handover message, messages
    std::optional<std::int64_t> created_from, created_to;  ///< ms, inclusive / exclusive
    std::optional<std::int64_t> closed_from, closed_to;
    bool unread = false;                         ///< only dialogs with messages the caller has not read

    /// From a folder's saved filter: `{"states": [...], "operator_id", "group_id", "subject", "tag", "channel",
    /// "client_id", "label", "q", "created_from", "created_to", "closed_from", "closed_to", "unread"}` (times as
    /// ISO-8601 text). Throws core::BadRequest naming the field.
    static DialogFilter from_json(const json::object& body);
    json::object to_json() const;
    /// Query parameter `name` of the dialog list and its value (for validation messages): see from_json.
    void set(std::string_view name, std::string_view value);
};

/// Thread-safety: every method may be called from any thread. Assignment decisions (handover, take, transfer,
/// reassign, queue dispatch, status changes) are made inside single write transactions, so with one writer no
/// dialog is assigned twice and no operator goes over capacity.
class OperatorService {
public:
    /// `settings` (may be null: auto-connect on) gives the instance setting kSettingAutoConnect.
    OperatorService(store::Store& store, const core::Clock& clock, bots::DialogService& dialogs,
                    bots::TriggerService& triggers, events::EventHub* hub,
                    const auth::InstanceSettings* settings = nullptr);

    // ---- Operators ----------------------------------------------------------------------------------------
    /// A built-in (online, away, break, offline) or custom operator status. Going offline puts the operator's
    /// dialogs back in the queue; a status that accepts dialogs takes queued dialogs up to capacity.
    boost::asio::awaitable<json::object> set_status(const core::Principal& who, std::string status,
                                                    std::optional<unsigned> capacity);
    /// A supervisor changes another operator's status and/or capacity.
    boost::asio::awaitable<json::object> update_operator(const core::Principal& who, std::string user_id,
                                                         std::optional<std::string> status,
                                                         std::optional<unsigned> capacity);
    json::object status_of(const core::Principal& who) const;
    json::object status_of(std::string_view user_id) const;
    /// The supervisor view: every operator with status, time in status, capacity, load and groups.
    json::array operators() const;
    /// Queues per group: waiting dialogs and the oldest wait.
    json::array queues() const;
    /// Moves all (dialog_ids empty) or the given assigned dialogs of `user_id` to the queue or to another
    /// operator (as many as fit their capacity; the rest are queued). Returns {"moved": [...], "queued": [...]}.
    boost::asio::awaitable<json::object> reassign(const core::Principal& who, std::string user_id,
                                                  std::vector<std::string> dialog_ids,
                                                  std::optional<std::string> to_operator);

    // ---- Statuses (kind "operator": accepts_dialogs; kind "dialog": labels for dialogs) ---------------------
    json::array statuses(std::string_view kind) const;
    boost::asio::awaitable<json::object> create_status(const core::Principal& who, std::string kind, json::object body);
    boost::asio::awaitable<json::object> update_status(const core::Principal& who, std::string kind, std::string name,
                                                       json::object body);
    boost::asio::awaitable<void> delete_status(const core::Principal& who, std::string kind, std::string name);

    // ---- Skill groups, subjects, segment rules ------------------------------------------------------------
    json::array skill_groups() const;
    json::object skill_group(std::string_view id) const;
    boost::asio::awaitable<json::object> create_skill_group(const core::Principal& who, json::object body);
    boost::asio::awaitable<json::object> update_skill_group(const core::Principal& who, std::string id, json::object body);
    boost::asio::awaitable<void> delete_skill_group(const core::Principal& who, std::string id);
    boost::asio::awaitable<json::object> put_member(const core::Principal& who, std::string group_id,
                                                    std::string user_id, int skill_level);
    boost::asio::awaitable<void> delete_member(const core::Principal& who, std::string group_id, std::string user_id);
    /// For other modules (tickets): the groups of a user, the members of a group.
    std::vector<std::string> groups_of(std::string_view user_id) const;
    std::vector<std::string> members_of(std::string_view group_id) const;

    json::array subjects() const;
    boost::asio::awaitable<json::object> create_subject(const core::Principal& who, json::object body);
    boost::asio::awaitable<json::object> update_subject(const core::Principal& who, std::string id, json::object body);
    boost::asio::awaitable<void> delete_subject(const core::Principal& who, std::string id);

    /// Ordered rules client segment → skill group; the first rule whose condition matches the client card wins.
    json::array segment_rules() const;
    boost::asio::awaitable<json::object> create_segment_rule(const core::Principal& who, json::object body);
    boost::asio::awaitable<json::object> update_segment_rule(const core::Principal& who, std::string id, json::object body);
    boost::asio::awaitable<void> delete_segment_rule(const core::Principal& who, std::string id);
    /// Sets the order: `ids` must name every rule exactly once.
    boost::asio::awaitable<json::array> order_segment_rules(const core::Principal& who, std::vector<std::string> ids);

    // ---- Dialogs ------------------------------------------------------------------------------------------
    /// folder: mine | queue | unassigned | closed | all (all and others' closed dialogs need operator.delete), or
    /// the id of one of the caller's custom folders (its saved filter over every dialog the caller may see);
    /// `filter` narrows further. Newest first; `cursor` is the last id of the previous page.
    json::array dialogs(const core::Principal& who, std::string_view folder, std::optional<std::string> cursor,
                        std::size_t limit, std::optional<std::string>* next) const;
    json::array dialogs(const core::Principal& who, std::string_view folder, const DialogFilter& filter,
                        std::optional<std::string> cursor, std::size_t limit, std::optional<std::string>* next) const;
    /// One dialog with its client card, tags, notes count and the caller's read marker.
    json::object dialog(const core::Principal& who, std::string_view dialog_id) const;
    /// Every dialog of the dialog's client (all channels), newest first, each with its last messages.
    json::array history(const core::Principal& who, std::string_view dialog_id, std::optional<std::string> cursor,
                        std::size_t limit, std::optional<std::string>* next) const;
    boost::asio::awaitable<json::object> take(const core::Principal& who, std::string dialog_id);
    /// Attachment of a reply: an http(s) URL, a file name and a MIME type.
    struct Attachment {
        std::string url;
        std::string name;
        std::string mime;
    };
    boost::asio::awaitable<json::object> reply(const core::Principal& who, std::string dialog_id, std::string text);
    /// `signature`: append the operator's signature when they have one enabled (default true).
    boost::asio::awaitable<json::object> reply(const core::Principal& who, std::string dialog_id, std::string text,
                                               std::optional<Attachment> attachment, bool signature);
    boost::asio::awaitable<void> close(const core::Principal& who, std::string dialog_id);
    /// Messages of a dialog the caller may see (attachments under `payload.attachment`).
    json::array messages(const core::Principal& who, std::string_view dialog_id, std::int64_t after, std::size_t limit) const;
    /// Transfer to an operator (their status must accept dialogs and they must have room: Conflict otherwise) or
    /// to a group (a free member by the group's policy, or the group's queue). Event `operator.transferred`.
    boost::asio::awaitable<json::object> transfer(const core::Principal& who, std::string dialog_id,
                                                  std::optional<std::string> to_operator,
                                                  std::optional<std::string> to_group, std::string comment);
    /// Subject (a known alias, or "" to clear) and label (a dialog status, or "").
    boost::asio::awaitable<json::object> update_dialog(const core::Principal& who, std::string dialog_id, json::object body);
    boost::asio::awaitable<json::array> add_tags(const core::Principal& who, std::string dialog_id, std::vector<std::string> tags);
    boost::asio::awaitable<json::array> remove_tag(const core::Principal& who, std::string dialog_id, std::string tag);
    /// Internal notes: visible to operators who may see the dialog, never sent to the client.
    json::array notes(const core::Principal& who, std::string_view dialog_id) const;
    boost::asio::awaitable<json::object> add_note(const core::Principal& who, std::string dialog_id, std::string text);
    /// Read marker: the caller has read messages up to `n` (default: the latest). Markers never move back.
    boost::asio::awaitable<json::object> mark_read(const core::Principal& who, std::string dialog_id,
                                                   std::optional<std::int64_t> n);
    /// An outgoing dialog: the operator writes first to a client over a channel the client has used (the
    /// client's latest dialog on it), which becomes the operator's assigned dialog.
    boost::asio::awaitable<json::object> start_dialog(const core::Principal& who, std::string client_id,
                                                      std::string channel, std::string text);

    // ---- Signatures and custom folders (per user) ----------------------------------------------------------
    json::object signature(const core::Principal& who) const;
    boost::asio::awaitable<json::object> set_signature(const core::Principal& who, std::string text, bool enabled);
    json::array folders(const core::Principal& who) const;
    boost::asio::awaitable<json::object> create_folder(const core::Principal& who, json::object body);
    boost::asio::awaitable<json::object> update_folder(const core::Principal& who, std::string id, json::object body);
    boost::asio::awaitable<void> delete_folder(const core::Principal& who, std::string id);
    /// Rearranges the caller's folders: `ids` names every one of them exactly once.
    boost::asio::awaitable<json::array> order_folders(const core::Principal& who, std::vector<std::string> ids);

    /// Quick replies: personal ones (`shared` false) belong to their author; shared ones need operator_settings.edit
    /// to change. Texts are templates over the dialog's client (`{{client.name}}`, `{{operator.name}}`); a text that
    /// does not compile is refused (422 naming the offset).
    json::array quick_replies(const core::Principal& who, std::optional<std::string> q) const;
    boost::asio::awaitable<json::object> create_quick_reply(const core::Principal& who, json::object body);
    boost::asio::awaitable<json::object> update_quick_reply(const core::Principal& who, std::string id, json::object body);
    boost::asio::awaitable<void> delete_quick_reply(const core::Principal& who, std::string id);

    /// Copilot for a dialog: quick replies ranked by the words they share with the client's last messages,
    /// rendered for this client, and knowledge snippets for those messages from the snippet source (Fastline Pro).
    json::object copilot(const core::Principal& who, std::string_view dialog_id) const;

    /// Knowledge snippets for a dialog's recent client text: a JSON array of
    /// {"document", "heading", "text", "score"}. Set once at start-up (before the server answers); without it the
    /// copilot's `snippets` are empty. Called on the HTTP worker: it must be bounded and must not block on I/O.
    using SnippetSource = std::function<json::array(std::string_view text)>;
    void set_snippet_source(SnippetSource source) { snippet_source_ = std::move(source); }

    /// The scenario action: see make_connect_action.
    void connect(actions::ActionCall call, actions::ActionDone done);

    /// Assigns queued dialogs (per group, oldest first) to free operators; returns how many.
    boost::asio::awaitable<std::size_t> dispatch_queue();

    // ---- For the SLA timers (sla.h) ------------------------------------------------------------------------
    /// Closes the dialog as close() does (the client goes back to the bot, `dialog_closed` triggers run) if it is
    /// still assigned to `operator_id` and its last message is still number `last_n` (nothing happened since the
    /// timer decided). Returns whether it closed.
    boost::asio::awaitable<bool> close_idle(std::string dialog_id, std::string operator_id, std::int64_t last_n);
    /// Under the same conditions puts the dialog back in its group's queue (its old place; the dispatch avoids
    /// `operator_id`), then serves the queues. Returns whether it moved.
    boost::asio::awaitable<bool> requeue_idle(std::string dialog_id, std::string operator_id, std::int64_t last_n);

private:
    /// Publishes to one audience: `operator_id` empty → everyone with operator.view (a waiting dialog);
    /// otherwise that operator and the supervisors (operator.delete).
    void publish_dialog_event(const std::string& type, json::object body, const std::string& operator_id);
    void publish(const std::string& type, json::object body, const std::string& user_id = {});
    /// The op_dialogs row as JSON, or NotFound; checks that `who` may see it.
    json::object visible_dialog(const core::Principal& who, std::string_view dialog_id) const;
    /// visible_dialog, and `who` holds it (or is a supervisor): Forbidden otherwise.
    json::object held_dialog(const core::Principal& who, std::string_view dialog_id) const;
    bool auto_connect_enabled() const;
    /// After a close: the client goes back to the bot, `dialog_closed` triggers run, the queues are served.
    boost::asio::awaitable<void> hand_back(std::string dialog_id);

    store::Store& store_;
    const core::Clock& clock_;
    bots::DialogService& dialogs_;
    bots::TriggerService& triggers_;
    events::EventHub* hub_;
    const auth::InstanceSettings* settings_;
    SnippetSource snippet_source_;
};

/// `operator_panel__connect_to_operator_with_msg` (events connected, queued, limit, error): params
/// `subject_alias`, `auto_connect_operator` (bool), `status` ("queue" lets the dialog wait when everyone is busy),
/// `message` (shown to operators). See docs/openapi.yaml and src/operator/README.md.
std::shared_ptr<actions::Action> make_connect_action(OperatorService& service);

void register_routes(http::Router& router, OperatorService& service);

}  // namespace parley::operators
