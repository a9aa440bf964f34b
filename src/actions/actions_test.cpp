#include "actions/actions.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

namespace parley::actions {
namespace {

ActionResult run_sync(const ActionRegistry& registry, ActionCall call) {
    std::optional<ActionResult> out;
    registry.run(std::move(call), [&](ActionResult r) { out = std::move(r); });
    EXPECT_TRUE(out.has_value());
    return out ? *out : ActionResult{};
}

TEST(ActionRegistry, BuiltinsAreListed) {
    ActionRegistry registry;
    register_builtin_actions(registry);
    EXPECT_EQ(registry.names(), (std::vector<std::string>{"set", "test_echo"}));
    auto list = registry.list();
    ASSERT_EQ(list.size(), 2u);
    EXPECT_EQ(list[1].events, (std::vector<std::string>{"success", "error"}));
}

TEST(ActionRegistry, UnknownActionAnswersError) {
    ActionRegistry registry;
    auto r = run_sync(registry, ActionCall{.action = "nope"});
    EXPECT_EQ(r.event, "error");
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->code, "unknown_action");
}

TEST(ActionRegistry, SetReturnsParamsAsState) {
    ActionRegistry registry;
    register_builtin_actions(registry);
    auto r = run_sync(registry, ActionCall{.action = "set", .params = {{"a", 1}}});
    EXPECT_EQ(r.event, "success");
    EXPECT_EQ(r.state, (json::object{{"a", 1}}));
    EXPECT_GE(r.latency_ms, 0);
}

TEST(ActionRegistry, TestEchoEchoesEventStateAndErrors) {
    ActionRegistry registry;
    register_builtin_actions(registry);
    auto r = run_sync(registry, ActionCall{.action = "test_echo",
                                           .params = {{"event", "found"}, {"state", {{"x", "y"}}}}});
    EXPECT_EQ(r.event, "found");
    EXPECT_EQ(r.state.at("x"), "y");
    auto f = run_sync(registry, ActionCall{.action = "test_echo", .params = {{"error", {{"code", "boom"}}}}});
    EXPECT_EQ(f.event, "error");
    EXPECT_EQ(f.error->code, "boom");
}

class Throwing final : public BasicAction {
public:
    Throwing() : BasicAction("throwing", {}, {"success"}) {}
    void run(ActionCall, ActionDone) override { throw std::runtime_error("kaput"); }
};

class Later final : public BasicAction {
public:
    Later() : BasicAction("later", {}, {"success"}) {}
    void run(ActionCall, ActionDone done) override {
        std::thread([done] {
            ActionResult r;
            r.event = "success";
            done(r);
        }).detach();
    }
};

TEST(ActionRegistry, ExceptionsBecomeErrors) {
    ActionRegistry registry;
    registry.add(std::make_shared<Throwing>());
    auto r = run_sync(registry, ActionCall{.action = "throwing"});
    EXPECT_EQ(r.error->code, "action_failed");
}

TEST(ActionRegistry, AsynchronousCompletionAndRemoval) {
    ActionRegistry registry;
    registry.add(std::make_shared<Later>());
    std::promise<ActionResult> promise;
    registry.run(ActionCall{.action = "later"}, [&](ActionResult r) { promise.set_value(std::move(r)); });
    EXPECT_TRUE(registry.remove("later"));
    EXPECT_FALSE(registry.remove("later"));
    EXPECT_EQ(promise.get_future().get().event, "success");
    EXPECT_EQ(registry.find("later"), nullptr);
}

TEST(ActionRegistry, ConcurrentReadersAndWriters) {
    ActionRegistry registry;
    register_builtin_actions(registry);
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 500; ++i) {
                if (t == 0) {
                    registry.add(make_test_echo_action());
                } else {
                    registry.run(ActionCall{.action = "set"}, [&](ActionResult r) { ok += r.event == "success"; });
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(ok.load(), 1500);
}

}  // namespace
}  // namespace parley::actions
