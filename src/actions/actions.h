/// The action interface and the registry where built-in actions and Action Jail actions plug in. The scenario
/// runtime never calls an action itself: it yields an ActionRequest, and the caller runs the action here.
#pragma once

#include <boost/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace parley::actions {

namespace json = boost::json;

/// One invocation of an action: rendered params and a snapshot of the dialog it runs for.
struct ActionCall {
    std::string action;      ///< the action's name
    json::object params;     ///< params after template rendering
    std::string dialog_id;   ///< may be empty (tests, preview before persistence)
    std::string client_id;   ///< may be empty
    json::object state;      ///< the dialog's variables at the time of the call (a copy)
    json::object client;     ///< the client's fields (`id`, `name`, `phone`, `language`, ...)
};

/// Why an action failed. `code` is snake_case (`unknown_action`, `bad_params`, `timeout`, `js_error`, ...).
struct ActionError {
    std::string code;
    std::string message;
};

/// What an action answers: the event that picks the next node and the state changes to merge into the
/// dialog's variables. A failed action answers event `error` with `error` set.
struct ActionResult {
    std::string event;
    json::object state;
    std::optional<ActionError> error;
    double latency_ms = 0;
    /// The action handed the dialog to an operator (operator_panel__connect_to_operator_with_msg): when the run
    /// then stops without a waiting node, the dialog waits for the operator instead of ending.
    bool handover = false;

    static ActionResult failure(std::string code, std::string message) {
        ActionResult r;
        r.event = "error";
        r.error = ActionError{std::move(code), std::move(message)};
        return r;
    }
};

/// Called exactly once with the result; may be called inline (before run() returns) or later on any thread.
using ActionDone = std::function<void(ActionResult)>;

/// An action a scenario can call by name. Implementations never block the calling thread on I/O: slow work
/// is started asynchronously and `done` is called when it finishes.
/// Thread-safety: run() may be called concurrently from many threads; implementations must allow that.
class Action {
public:
    virtual ~Action() = default;
    virtual const std::string& name() const = 0;
    /// JSON Schema-like description of the params (`{"type":"object","properties":{...},"required":[...]}`).
    virtual const json::object& params_schema() const = 0;
    /// The events run() can answer (an answer outside this list is still followed if the node has an edge).
    virtual const std::vector<std::string>& events() const = 0;
    virtual void run(ActionCall call, ActionDone done) = 0;
};

/// A description of a registered action, for lint and for the builder's action list.
struct ActionInfo {
    std::string name;
    json::object params_schema;
    std::vector<std::string> events;
};

/// Name → action. Read-mostly: lookups take a shared lock and copy a shared_ptr, so an action removed while
/// it runs stays alive until its run finishes. Thread-safe.
class ActionRegistry {
public:
    /// Adds or replaces the action with the same name.
    void add(std::shared_ptr<Action> action);
    /// Removes by name; returns whether it was there.
    bool remove(std::string_view name);
    std::shared_ptr<Action> find(std::string_view name) const;
    std::vector<ActionInfo> list() const;
    std::vector<std::string> names() const;

    /// Runs `call` on the named action, measuring latency and turning every failure into an ActionResult:
    /// unknown action → event `error` with code `unknown_action`; an exception from the action → code
    /// `action_failed`. `done` is called exactly once.
    void run(ActionCall call, ActionDone done) const;

private:
    mutable std::shared_mutex mutex_;
    std::map<std::string, std::shared_ptr<Action>, std::less<>> actions_;
};

/// A small base for actions with a fixed name, schema and event list.
class BasicAction : public Action {
public:
    BasicAction(std::string name, json::object params_schema, std::vector<std::string> events)
        : name_(std::move(name)), schema_(std::move(params_schema)), events_(std::move(events)) {}
    const std::string& name() const override { return name_; }
    const json::object& params_schema() const override { return schema_; }
    const std::vector<std::string>& events() const override { return events_; }

private:
    std::string name_;
    json::object schema_;
    std::vector<std::string> events_;
};

/// `set`: answers `success` with its params as state changes (`{"action": "set", "params": {"a": "{{b}}"}}`
/// sets `a`). The `set` node type does the same without an action round trip. Completes inline.
std::shared_ptr<Action> make_set_action();

/// `test_echo`: answers the event named by param `event` (default `success`) with param `state` (an object)
/// as state changes; param `error` (`{"code","message"}`) makes it fail; param `handover: true` marks a
/// handover. Declares events `success`, `error` plus any listed in the constructor. Completes inline.
std::shared_ptr<Action> make_test_echo_action(std::vector<std::string> extra_events = {});

/// Registers the built-in actions shipped so far (`set`, `test_echo`).
void register_builtin_actions(ActionRegistry& registry);

}  // namespace parley::actions
