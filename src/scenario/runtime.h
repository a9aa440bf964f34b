/// The scenario runtime: a synchronous, pure, resumable step loop over a compiled Scenario. A run goes from
/// node to node until the bot waits for the client (input, buttons, operator, end) or needs an action; then it
/// returns. Actions are not run here: the result carries an ActionRequest, the caller runs the action
/// asynchronously (actions::ActionRegistry::run) and calls resume_after_action() with its result.
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actions/actions.h"
#include "scenario/document.h"

namespace parley::scenario {

/// What the dialog waits for. kNone: never started. kAction: an action is running for the dialog.
enum class Waiting : std::uint8_t { kNone, kInput, kButtons, kOperator, kEnd, kAction };

/// "none", "input", "buttons", "operator", "end", "action".
std::string_view to_string(Waiting waiting);

/// Where an alias call interrupted the dialog; restored when the called section ends.
struct SectionFrame {
    std::string node;
    Waiting waiting = Waiting::kNone;
};

/// The per-dialog state the runtime reads and writes: variables, position, language, section stack.
/// Not thread-safe: owned by one caller at a time (the dialog's strand). Positions are node ids, so a state
/// stays meaningful across scenario versions that keep the node.
struct DialogState {
    static constexpr std::size_t kMaxSectionStack = 8;

    boost::json::object variables;
    std::string position;  ///< the node the dialog waits at (or whose action runs); empty before start
    Waiting waiting = Waiting::kNone;
    std::string language;  ///< the client's language code; empty = the scenario's first language
    std::vector<SectionFrame> section_stack;
    std::uint32_t retries = 0;  ///< invalid answers in a row at the current input node
    std::uint32_t steps = 0;    ///< nodes executed in the current turn (kept while an action runs)
    bool with_operator = false;  ///< an action handed the dialog to an operator

    /// Compact JSON text for persistence (short keys, defaults omitted; ~60 bytes plus variables).
    std::string serialize() const;
    /// The inverse of serialize(); nullopt when `text` is not a serialized state.
    static std::optional<DialogState> parse(std::string_view text);
};

/// One message from the client.
struct ClientMessage {
    enum class Kind : std::uint8_t { kText, kButton, kContact };
    Kind kind = Kind::kText;
    std::string text;      ///< kText
    std::string button;    ///< kButton: the button id
    boost::json::object contact;  ///< kContact: {"phone": "+380...", "first_name": ..., ...}

    static ClientMessage from_text(std::string text);
    static ClientMessage from_button(std::string id);
    static ClientMessage from_contact(boost::json::object contact);
};

/// Instance settings as templates see them (`{{instance_settings.KEY}}`). Implementations are thread-safe.
class InstanceSettings {
public:
    virtual ~InstanceSettings() = default;
    virtual std::optional<boost::json::value> get(std::string_view key) const = 0;
};

/// What a run may read besides the scenario and the state. All pointers may be null.
struct RunContext {
    static constexpr std::uint32_t kDefaultStepLimit = 1000;

    const boost::json::object* client = nullptr;  ///< `client.*`: id, name, phone, language, custom fields
    const InstanceSettings* settings = nullptr;
    std::uint32_t step_limit = kDefaultStepLimit;  ///< node executions per client turn, actions included
    /// When set, the id of every node executed is appended (the builder's "Runs" view). Owned by the caller.
    std::vector<std::string>* trace = nullptr;
};

struct ReplyButton {
    std::string id;
    std::string text;
};

/// One bot message: text in the client's language (fallback: the first language) and optional buttons.
struct Reply {
    std::string text;
    std::vector<ReplyButton> buttons;

    /// `{"text": "...", "buttons": [{"id", "text"}]}` (buttons omitted when none).
    boost::json::object to_json() const;
};

/// The action the caller must run before calling resume_after_action().
struct ActionRequest {
    std::string action;
    boost::json::object params;  ///< rendered
    std::string node;            ///< the action node's id
};

/// Why a run broke. Codes: step_limit, action_event_without_edge, unknown_action (and other action error
/// codes), unknown_alias, invalid_input, action_pending, invalid_state.
struct RunError {
    std::string code;
    std::string message;
    std::string node;

    boost::json::object to_json() const;
};

/// The outcome of one call into the runtime.
struct RunResult {
    std::vector<Reply> replies;
    Waiting waiting = Waiting::kNone;
    std::optional<ActionRequest> action;  ///< set iff waiting == kAction
    std::optional<RunError> error;        ///< a broken run ends with waiting == kEnd
    std::uint32_t steps = 0;              ///< nodes executed by this call
};

/// Executes a Scenario. Holds only the shared immutable scenario, so one Runtime serves every dialog of a bot
/// from any number of threads; each call mutates only the DialogState passed in.
class Runtime {
public:
    explicit Runtime(std::shared_ptr<const Scenario> scenario);

    const Scenario& scenario() const { return *scenario_; }

    /// Starts (or restarts) the dialog at the start node. Takes the client's language and name from
    /// `context.client` (`language`, `name`).
    RunResult start(DialogState& state, const RunContext& context) const;

    /// A client message. Waiting at input: validate and save; at buttons: a button id or a text equal to a
    /// button's label presses it, other text goes to `no_match`; at end (or never started): starts again; with
    /// an operator: nothing runs.
    RunResult on_message(DialogState& state, const ClientMessage& message, const RunContext& context) const;

    /// Runs the section entered by `alias`: `input` becomes `user_input`, `params` are merged into the
    /// variables. If the dialog was waiting (input, buttons, operator), that wait is restored when the called
    /// section ends. Unknown alias → error `unknown_alias` and nothing changes.
    RunResult on_alias_call(DialogState& state, std::string_view alias, std::string_view input,
                            const boost::json::object& params, const RunContext& context) const;

    /// Continues after the action requested by the previous call answered. The event picks the edge (`on`,
    /// then `next`); no edge ends the run with an error. State changes are merged into the variables, or
    /// stored whole under the node's `save_as`.
    RunResult resume_after_action(DialogState& state, const actions::ActionResult& result,
                                  const RunContext& context) const;

    /// For a dialog persisted while its action ran (waiting == action; e.g. the process died before the action
    /// answered): the same ActionRequest again, params rendered from the current variables. Anything else →
    /// error `invalid_state`, nothing changes.
    RunResult pending_action(DialogState& state, const RunContext& context) const;

private:
    std::shared_ptr<const Scenario> scenario_;
};

/// Runs a whole client turn synchronously, answering action requests through `registry` and blocking until
/// each answers. For tools, tests and benchmarks only; servers resume asynchronously instead.
RunResult run_turn_blocking(const Runtime& runtime, DialogState& state, RunResult first,
                            const actions::ActionRegistry& registry, const RunContext& context);

}  // namespace parley::scenario
