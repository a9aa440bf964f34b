#include <gtest/gtest.h>

#include <future>

#include "actions/actions.h"
#include "knowledge/test_util.h"

namespace parley::knowledge {
namespace {

namespace json = boost::json;

class ActionsTest : public testing::KnowledgeTest {
protected:
    ActionsTest() { register_actions(registry_, *service_); }

    actions::ActionResult call(json::object params) {
        actions::ActionCall c;
        c.action = "action_fastline_pro";
        c.params = std::move(params);
        c.state = json::object{{"user_name", "Olena"}};
        std::promise<actions::ActionResult> p;
        registry_.run(std::move(c), [&](actions::ActionResult r) { p.set_value(std::move(r)); });
        return p.get_future().get();
    }

    actions::ActionRegistry registry_;
};

TEST_F(ActionsTest, AnswersEscalatesAndFails) {
    make_base(R"({"name": "kb"})");
    upload("kb", "w.md", "# Гарантія\n\nГарантійний ремонт триває не довше 14 днів.\n");
    run(service_->create_agent(json::parse(R"({"name": "faq", "knowledge_bases": ["kb"]})").as_object()));
    auto info = registry_.find("action_fastline_pro");
    ASSERT_TRUE(info);
    EXPECT_EQ(info->events(), (std::vector<std::string>{"success", "escalate", "error"}));

    auto ok = call({{"agent_name", "faq"}, {"user_input", "Скільки триває ремонт по гарантії?"}, {"save_response", "ai_answer"}});
    EXPECT_EQ(ok.event, "success");
    EXPECT_EQ(ok.state.at("ai_answer"), "Гарантійний ремонт триває не довше 14 днів.");
    EXPECT_EQ(ok.state.at("ai_answer_sources").as_array().size(), 1u);

    auto esc = call({{"agent_name", "faq"}, {"user_input", "покличте оператора"}, {"save_response", "reply"}});
    EXPECT_EQ(esc.event, "escalate");
    EXPECT_TRUE(esc.state.at("reply").is_string());
    EXPECT_EQ(esc.state.at("reply_escalation_reason"), "human_request");

    auto unknown = call({{"agent_name", "nobody"}, {"user_input", "hi"}});
    EXPECT_EQ(unknown.event, "error");
    EXPECT_EQ(unknown.error->code, "agent_not_found");
    EXPECT_EQ(call({{"user_input", "hi"}}).error->code, "bad_params");
    EXPECT_EQ(call({{"agent_name", "faq"}, {"user_input", ""}}).error->code, "bad_params");
    EXPECT_EQ(call({{"agent_name", "faq"}, {"user_input", "x"}, {"extra", 1}}).error->code, "bad_params");
}

}  // namespace
}  // namespace parley::knowledge
