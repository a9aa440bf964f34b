#include "scenario/runtime.h"

#include <gtest/gtest.h>

namespace parley::scenario {
namespace {

namespace json = boost::json;

std::shared_ptr<const Scenario> compile(std::string_view text) {
    auto r = compile_scenario(text);
    EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors[0].path + ": " + r.errors[0].message);
    return r.scenario;
}

const char* kBot = R"({"format":"parley.scenario/1","languages":["en"],"sections":[{"name":"main","nodes":[
  {"id":"start","type":"start","next":"menu"},
  {"id":"menu","type":"message","text":"Hi {{user_name}}","buttons":[{"id":"ask","text":"Ask","next":"lookup"}]},
  {"id":"lookup","type":"action","action":"test_echo","params":{"event":"found","state":{"answer":"{{user_name}}!"}},
   "on":{"found":"say"}},
  {"id":"say","type":"message","text":"{{answer}}","next":"menu"}]}]})";

TEST(Runtime, YieldsActionsAndResumes) {
    Runtime runtime(compile(kBot));
    DialogState state;
    json::object client{{"id", "c1"}, {"name", "Olena"}, {"language", "en"}};
    RunContext context;
    context.client = &client;
    RunResult r = runtime.start(state, context);
    ASSERT_EQ(r.replies.size(), 1u);
    EXPECT_EQ(r.replies[0].to_json(), json::parse(R"({"text":"Hi Olena","buttons":[{"id":"ask","text":"Ask"}]})"));
    EXPECT_EQ(r.waiting, Waiting::kButtons);

    r = runtime.on_message(state, ClientMessage::from_button("ask"), context);
    ASSERT_TRUE(r.action);
    EXPECT_EQ(r.waiting, Waiting::kAction);
    EXPECT_EQ(r.action->action, "test_echo");
    EXPECT_EQ(r.action->params, json::parse(R"({"event":"found","state":{"answer":"Olena!"}})"));
    // A message while the action runs is refused, the state is unchanged.
    EXPECT_EQ(runtime.on_message(state, ClientMessage::from_text("x"), context).error->code, "action_pending");

    // The action's state survives persistence while it runs.
    auto restored = DialogState::parse(state.serialize());
    ASSERT_TRUE(restored);
    actions::ActionResult result;
    result.event = "found";
    result.state = {{"answer", "Olena!"}};
    r = runtime.resume_after_action(*restored, result, context);
    ASSERT_EQ(r.replies.size(), 2u);
    EXPECT_EQ(r.replies[0].text, "Olena!");
    EXPECT_EQ(r.waiting, Waiting::kButtons);
    EXPECT_EQ(runtime.resume_after_action(*restored, result, context).error->code, "invalid_state");
}

TEST(Runtime, PendingActionIsReissuedAfterARestartAndTraceRecordsNodes) {
    Runtime runtime(compile(kBot));
    DialogState state;
    json::object client{{"id", "c1"}, {"name", "Olena"}, {"language", "en"}};
    std::vector<std::string> trace;
    RunContext context;
    context.client = &client;
    context.trace = &trace;
    runtime.start(state, context);
    EXPECT_EQ(trace, (std::vector<std::string>{"start", "menu"}));
    RunResult r = runtime.on_message(state, ClientMessage::from_button("ask"), context);
    ASSERT_TRUE(r.action);
    // The process dies here: only the serialized state survives.
    auto restored = DialogState::parse(state.serialize());
    ASSERT_TRUE(restored);
    RunResult again = runtime.pending_action(*restored, context);
    ASSERT_TRUE(again.action);
    EXPECT_EQ(again.action->action, "test_echo");
    EXPECT_EQ(again.action->params, r.action->params);
    actions::ActionResult result;
    result.event = "found";
    result.state = json::object{{"answer", "Olena!"}};
    r = runtime.resume_after_action(*restored, result, context);
    ASSERT_EQ(r.replies.size(), 2u);
    EXPECT_EQ(r.replies[0].text, "Olena!");
    // Not waiting at an action: nothing to reissue.
    EXPECT_EQ(runtime.pending_action(*restored, context).error->code, "invalid_state");
}

TEST(Runtime, BlockingTurnUsesTheRegistry) {
    Runtime runtime(compile(kBot));
    actions::ActionRegistry registry;
    actions::register_builtin_actions(registry);
    DialogState state;
    RunContext context;
    runtime.start(state, context);
    RunResult r = run_turn_blocking(runtime, state, runtime.on_message(state, ClientMessage::from_text("ask"), context),
                                    registry, context);
    ASSERT_EQ(r.replies.size(), 2u);
    EXPECT_EQ(r.replies[0].text, "!");
}

TEST(Runtime, IdleStateIsSmall) {
    Runtime runtime(compile(kBot));
    DialogState state;
    json::object client{{"name", "Olena"}, {"language", "uk"}};
    RunContext context;
    context.client = &client;
    runtime.start(state, context);
    std::string s = state.serialize();
    EXPECT_LT(s.size(), 2048u);
    EXPECT_EQ(s, R"({"w":"b","p":"menu","l":"uk","v":{"user_name":"Olena"}})");
    auto back = DialogState::parse(s);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->serialize(), s);
}

TEST(Runtime, ParseRejectsGarbage) {
    for (const char* bad : {"", "[]", "{\"w\":\"z\"}", "{\"w\":\"b\",\"p\":3}", "{\"w\":\"b\",\"s\":[[1]]}", "{\"w\":\"b\",\"v\":[]}"}) {
        EXPECT_FALSE(DialogState::parse(bad)) << bad;
    }
    DialogState s;
    s.waiting = Waiting::kInput;
    s.position = "ask";
    s.section_stack.push_back({"menu", Waiting::kButtons});
    s.retries = 2;
    s.with_operator = true;
    auto back = DialogState::parse(s.serialize());
    ASSERT_TRUE(back);
    EXPECT_EQ(back->section_stack[0].node, "menu");
    EXPECT_EQ(back->section_stack[0].waiting, Waiting::kButtons);
    EXPECT_EQ(back->retries, 2u);
    EXPECT_TRUE(back->with_operator);
}

TEST(Runtime, StateFromAnOlderVersionRestarts) {
    Runtime runtime(compile(kBot));
    DialogState state;
    state.waiting = Waiting::kInput;
    state.position = "removed_node";
    RunContext context;
    RunResult r = runtime.on_message(state, ClientMessage::from_text("hi"), context);
    EXPECT_EQ(r.waiting, Waiting::kButtons);
    EXPECT_EQ(state.position, "menu");
}

}  // namespace
}  // namespace parley::scenario
