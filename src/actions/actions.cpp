#include "actions/actions.h"

#include <chrono>
#include <exception>
#include <mutex>

namespace parley::actions {

void ActionRegistry::add(std::shared_ptr<Action> action) {
    std::unique_lock lock(mutex_);
    std::string name = action->name();
    actions_[std::move(name)] = std::move(action);
}

bool ActionRegistry::remove(std::string_view name) {
    std::unique_lock lock(mutex_);
    auto it = actions_.find(name);
    if (it == actions_.end()) return false;
    actions_.erase(it);
    return true;
}

std::shared_ptr<Action> ActionRegistry::find(std::string_view name) const {
    std::shared_lock lock(mutex_);
    auto it = actions_.find(name);
    return it == actions_.end() ? nullptr : it->second;
}

std::vector<ActionInfo> ActionRegistry::list() const {
    std::shared_lock lock(mutex_);
    std::vector<ActionInfo> out;
    out.reserve(actions_.size());
    for (const auto& [name, action] : actions_) out.push_back({name, action->params_schema(), action->events()});
    return out;
}

std::vector<std::string> ActionRegistry::names() const {
    std::shared_lock lock(mutex_);
    std::vector<std::string> out;
    out.reserve(actions_.size());
    for (const auto& entry : actions_) out.push_back(entry.first);
    return out;
}

void ActionRegistry::run(ActionCall call, ActionDone done) const {
    std::shared_ptr<Action> action = find(call.action);
    if (!action) {
        done(ActionResult::failure("unknown_action", "no action named '" + call.action + "' is registered"));
        return;
    }
    auto started = std::chrono::steady_clock::now();
    // The wrapper guarantees `done` runs once even if the action throws after (or instead of) answering.
    auto answered = std::make_shared<std::once_flag>();
    auto finish = [done, started, answered](ActionResult result) {
        std::call_once(*answered, [&] {
            result.latency_ms =
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
            done(std::move(result));
        });
    };
    try {
        action->run(std::move(call), finish);
    } catch (const std::exception& e) {
        finish(ActionResult::failure("action_failed", e.what()));
    } catch (...) {
        finish(ActionResult::failure("action_failed", "the action threw a non-standard exception"));
    }
}

namespace {

json::object schema(std::initializer_list<std::pair<std::string_view, std::string_view>> props) {
    json::object properties;
    for (const auto& [name, type] : props) properties[name] = json::object{{"type", type}};
    return json::object{{"type", "object"}, {"properties", std::move(properties)}};
}

class SetAction final : public BasicAction {
public:
    SetAction() : BasicAction("set", json::object{{"type", "object"}}, {"success"}) {}
    void run(ActionCall call, ActionDone done) override {
        ActionResult r;
        r.event = "success";
        r.state = std::move(call.params);
        done(std::move(r));
    }
};

class TestEchoAction final : public BasicAction {
public:
    explicit TestEchoAction(std::vector<std::string> events)
        : BasicAction("test_echo",
                      schema({{"event", "string"}, {"state", "object"}, {"error", "object"}, {"handover", "boolean"}}),
                      std::move(events)) {}
    void run(ActionCall call, ActionDone done) override {
        ActionResult r;
        r.event = "success";
        if (auto* e = call.params.if_contains("event"); e && e->is_string()) r.event = std::string(e->get_string());
        if (auto* s = call.params.if_contains("state"); s && s->is_object()) r.state = s->get_object();
        if (auto* h = call.params.if_contains("handover"); h && h->is_bool()) r.handover = h->get_bool();
        if (auto* err = call.params.if_contains("error"); err && err->is_object()) {
            ActionError error{"test_error", "test_echo was asked to fail"};
            if (auto* c = err->get_object().if_contains("code"); c && c->is_string()) error.code = c->get_string();
            if (auto* m = err->get_object().if_contains("message"); m && m->is_string())
                error.message = m->get_string();
            r.error = std::move(error);
            if (!call.params.contains("event")) r.event = "error";
        }
        done(std::move(r));
    }
};

}  // namespace

std::shared_ptr<Action> make_set_action() { return std::make_shared<SetAction>(); }

std::shared_ptr<Action> make_test_echo_action(std::vector<std::string> extra_events) {
    std::vector<std::string> events{"success", "error"};
    for (auto& e : extra_events) events.push_back(std::move(e));
    return std::make_shared<TestEchoAction>(std::move(events));
}

void register_builtin_actions(ActionRegistry& registry) {
    registry.add(make_set_action());
    registry.add(make_test_echo_action());
}

}  // namespace parley::actions
