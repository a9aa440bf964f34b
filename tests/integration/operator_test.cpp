// The operator panel through the real binary: the full loop bot → operator → bot over the preview channel,
// automatic assignment and capacity, the queue served in order, and who may see and answer which dialog.
#include <chrono>
#include <thread>
#include <gtest/gtest.h>

#include "harness.h"

namespace parley::testing {
namespace {

namespace json = boost::json;

const char* kBot = R"({"format":"parley.scenario/1","languages":["en"],"sections":[{"name":"main","nodes":[
  {"id":"start","type":"start","next":"menu"},
  {"id":"menu","type":"message","text":"Hi","buttons":[{"id":"op","text":"Operator","next":"connect"}]},
  {"id":"connect","type":"action","action":"operator_panel__connect_to_operator_with_msg",
   "params":{"subject_alias":"billing","auto_connect_operator":true,"status":"queue","message":"wants a human"},
   "on":{"connected":"op_ok","queued":"op_queue","limit":"busy"}},
  {"id":"op_ok","type":"message","text":"Operator connected"},
  {"id":"op_queue","type":"message","text":"You are in the queue"},
  {"id":"busy","type":"message","text":"All operators are busy","next":"fin"},
  {"id":"fin","type":"end"}]},
  {"name":"after","nodes":[{"id":"e","type":"entry","alias":"thanks","next":"t"},
   {"id":"t","type":"message","text":"Thanks for talking to us","next":"fin2"},{"id":"fin2","type":"end"}]}]})";

std::vector<std::string> texts(const json::value& body) {
    std::vector<std::string> out;
    for (const auto& r : body.at("replies").as_array()) out.emplace_back(r.at("text").as_string());
    return out;
}

class OperatorPanel : public ::testing::Test {
protected:
    void SetUp() override {
        server_ = std::make_unique<ParleyProcess>(dir_.path());
        admin_ = std::make_unique<HttpClient>(server_->port());
        ASSERT_EQ(admin_->login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
        bot_ = std::string(admin_->post("/api/v1/bots", {{"name", "Ops"}}).json().at("id").as_string());
        ASSERT_EQ(admin_->request("PUT", "/api/v1/bots/" + bot_ + "/scenario", kBot).status, 200);
    }
    std::unique_ptr<HttpClient> operator_user(const std::string& email, const std::string& role = "operator") {
        auto created = admin_->post("/api/v1/users", {{"email", email}, {"name", email}, {"password", "operator-pass-1"},
                                                      {"roles", json::array{json::value(role)}}});
        EXPECT_EQ(created.status, 201) << created.body;
        auto client = std::make_unique<HttpClient>(server_->port());
        EXPECT_EQ(client->login(email, "operator-pass-1").status, 200);
        return client;
    }
    /// A preview client who presses "Operator"; returns {session, reply body}.
    std::pair<std::string, json::value> client_asks_for_operator() {
        auto session = admin_->post("/api/v1/bots/" + bot_ + "/preview", {{"user", {{"name", "Olena"}}}});
        std::string sid(session.json().at("session").as_string());
        auto pressed = admin_->post("/api/v1/bots/" + bot_ + "/preview/" + sid + "/messages", {{"button", "op"}});
        EXPECT_EQ(pressed.status, 200) << pressed.body;
        return {sid, pressed.json()};
    }
    std::string preview(const std::string& sid) { return "/api/v1/bots/" + bot_ + "/preview/" + sid + "/messages"; }

    TempDir dir_;
    std::unique_ptr<ParleyProcess> server_;
    std::unique_ptr<HttpClient> admin_;
    std::string bot_;
};

TEST_F(OperatorPanel, FullLoopBotOperatorBot) {
    auto op = operator_user("op1@example.com");
    ASSERT_EQ(op->put("/api/v1/operator/status", {{"status", "online"}}).status, 200);
    ASSERT_EQ(admin_->post("/api/v1/bots/" + bot_ + "/triggers",
                           {{"kind", "event"}, {"event", "dialog_closed"}, {"alias", "thanks"}}).status, 201);

    auto [sid, pressed] = client_asks_for_operator();
    EXPECT_EQ(texts(pressed), std::vector<std::string>{"Operator connected"});
    EXPECT_EQ(pressed.at("waiting"), "operator");

    auto mine = op->get("/api/v1/operator/dialogs?folder=mine");
    ASSERT_EQ(mine.status, 200);
    ASSERT_EQ(mine.json().at("items").as_array().size(), 1u);
    EXPECT_EQ(mine.json().at("items").as_array()[0].at("id"), json::value(sid));
    EXPECT_EQ(mine.json().at("items").as_array()[0].at("subject"), "billing");

    // While the operator holds the dialog the bot stays silent; the operator sees the client's message.
    auto said = admin_->post(preview(sid), {{"text", "my invoice is wrong"}});
    EXPECT_TRUE(said.json().at("replies").as_array().empty());
    EXPECT_EQ(said.json().at("waiting"), "operator");
    auto seen = op->get("/api/v1/operator/dialogs/" + sid + "/messages");
    ASSERT_EQ(seen.status, 200);
    EXPECT_EQ(seen.json().at("items").as_array().back().at("text"), "my invoice is wrong");

    // The operator answers; the client sees it in the session.
    auto reply = op->post("/api/v1/operator/dialogs/" + sid + "/messages", {{"text", "Let me check"}});
    ASSERT_EQ(reply.status, 201) << reply.body;
    auto log = admin_->get(preview(sid)).json().at("items").as_array();
    EXPECT_EQ(log.back().at("from"), "operator");
    EXPECT_EQ(log.back().at("text"), "Let me check");

    // Closing hands the client back to the bot: dialog_closed runs, the next message starts the scenario.
    ASSERT_EQ(op->post("/api/v1/operator/dialogs/" + sid + "/close", json::object{}).status, 200);
    log = admin_->get(preview(sid)).json().at("items").as_array();
    EXPECT_EQ(log.back().at("text"), "Thanks for talking to us");
    auto back = admin_->post(preview(sid), {{"text", "hello again"}});
    EXPECT_EQ(texts(back.json()), std::vector<std::string>{"Hi"});
    EXPECT_EQ(op->get("/api/v1/operator/dialogs?folder=closed").json().at("items").as_array().size(), 1u);
    EXPECT_EQ(op->get("/api/v1/operator/status").json().at("active_dialogs"), 0);
}

TEST_F(OperatorPanel, CapacityQueueOrderAndBoundaries) {
    auto op1 = operator_user("op1@example.com");
    auto op2 = operator_user("op2@example.com");
    ASSERT_EQ(op1->put("/api/v1/operator/status", {{"status", "online"}, {"capacity", 1}}).status, 200);

    auto [first, r1] = client_asks_for_operator();
    EXPECT_EQ(texts(r1), std::vector<std::string>{"Operator connected"});
    auto [second, r2] = client_asks_for_operator();
    EXPECT_EQ(texts(r2), std::vector<std::string>{"You are in the queue"});
    auto [third, r3] = client_asks_for_operator();
    EXPECT_EQ(op1->get("/api/v1/operator/dialogs?folder=queue").json().at("items").as_array().size(), 2u);

    // op2 cannot read or answer op1's dialog, nor see the all folder.
    EXPECT_EQ(op2->get("/api/v1/operator/dialogs/" + first + "/messages").status, 403);
    EXPECT_EQ(op2->post("/api/v1/operator/dialogs/" + first + "/messages", {{"text", "hi"}}).status, 403);
    EXPECT_EQ(op2->post("/api/v1/operator/dialogs/" + first + "/take", json::object{}).status, 403);
    EXPECT_EQ(op2->get("/api/v1/operator/dialogs?folder=all").status, 403);
    EXPECT_EQ(admin_->get("/api/v1/operator/dialogs?folder=all").json().at("items").as_array().size(), 3u);

    // op2 comes online: the oldest queued dialog goes to op2 first.
    ASSERT_EQ(op2->put("/api/v1/operator/status", {{"status", "online"}, {"capacity", 1}}).status, 200);
    auto mine2 = op2->get("/api/v1/operator/dialogs?folder=mine").json().at("items").as_array();
    ASSERT_EQ(mine2.size(), 1u);
    EXPECT_EQ(mine2[0].at("id"), json::value(second));
    // op1 closes: the next queued dialog (third) is assigned to op1.
    ASSERT_EQ(op1->post("/api/v1/operator/dialogs/" + first + "/close", json::object{}).status, 200);
    auto mine1 = op1->get("/api/v1/operator/dialogs?folder=mine").json().at("items").as_array();
    ASSERT_EQ(mine1.size(), 1u);
    EXPECT_EQ(mine1[0].at("id"), json::value(third));
    // op1 goes offline: their dialog returns to the queue.
    ASSERT_EQ(op1->put("/api/v1/operator/status", {{"status", "offline"}}).status, 200);
    EXPECT_EQ(op2->get("/api/v1/operator/dialogs?folder=queue").json().at("items").as_array().size(), 1u);

    EXPECT_EQ(op1->put("/api/v1/operator/status", {{"status", "sleeping"}}).status, 400);
    EXPECT_EQ(op1->get("/api/v1/operator/dialogs?folder=nope").status, 400);
    EXPECT_EQ(op2->post("/api/v1/operator/dialogs/" + second + "/messages", {{"text", ""}}).status, 400);
}

TEST_F(OperatorPanel, QuickRepliesAndCopilot) {
    auto op = operator_user("op1@example.com");
    ASSERT_EQ(op->put("/api/v1/operator/status", {{"status", "online"}}).status, 200);
    // Shared replies need operator_settings.edit (the administrator here); operators keep personal ones.
    EXPECT_EQ(op->post("/api/v1/operator/quick-replies", {{"title", "x"}, {"text", "y"}, {"shared", true}}).status, 403);
    auto shared = admin_->post("/api/v1/operator/quick-replies",
                               {{"title", "Invoice"}, {"text", "Dear {{client.name}}, your invoice is being corrected."}, {"shared", true}});
    ASSERT_EQ(shared.status, 201) << shared.body;
    ASSERT_EQ(op->post("/api/v1/operator/quick-replies", {{"title", "Delivery"}, {"text", "Your parcel is on its way."}}).status, 201);
    EXPECT_EQ(op->post("/api/v1/operator/quick-replies", {{"title", "Bad"}, {"text", "{{client.name"}}).status, 422);
    EXPECT_EQ(op->get("/api/v1/operator/quick-replies").json().at("items").as_array().size(), 2u);
    EXPECT_EQ(admin_->get("/api/v1/operator/quick-replies").json().at("items").as_array().size(), 1u);

    auto [sid, pressed] = client_asks_for_operator();
    ASSERT_EQ(admin_->post(preview(sid), {{"text", "my invoice is wrong"}}).status, 200);
    auto copilot = op->get("/api/v1/operator/dialogs/" + sid + "/copilot");
    ASSERT_EQ(copilot.status, 200) << copilot.body;
    auto suggestions = copilot.json().at("suggestions").as_array();
    ASSERT_EQ(suggestions.size(), 1u) << copilot.body;
    EXPECT_EQ(suggestions[0].at("rendered"), "Dear Olena, your invoice is being corrected.");
    EXPECT_TRUE(copilot.json().at("snippets").as_array().empty()) << copilot.body;  // no knowledge base yet

    // With a knowledge base, the copilot adds the passages that answer the client's words (Fastline Pro).
    ASSERT_EQ(admin_->post("/api/v1/knowledge-bases", {{"name", "billing"}}).status, 201);
    auto upload = admin_->request("POST", "/api/v1/knowledge-bases/billing/documents?name=invoices.md",
                                  "# Invoices\n\nA wrong invoice is corrected within two working days after you "
                                  "write to support.\n",
                                  {{"Content-Type", "text/markdown"}});
    ASSERT_EQ(upload.status / 100, 2) << upload.body;
    bool ready = false;
    for (int i = 0; i < 200 && !ready; ++i) {
        auto docs = admin_->get("/api/v1/knowledge-bases/billing/documents").json().at("items").as_array();
        ready = !docs.empty() && docs[0].at("status") == "ready";
        if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ASSERT_TRUE(ready);
    copilot = op->get("/api/v1/operator/dialogs/" + sid + "/copilot");
    ASSERT_EQ(copilot.status, 200) << copilot.body;
    auto snippets = copilot.json().at("snippets").as_array();
    ASSERT_FALSE(snippets.empty()) << copilot.body;
    EXPECT_EQ(snippets[0].at("document"), "invoices.md");
    EXPECT_NE(std::string(snippets[0].at("text").as_string()).find("two working days"), std::string::npos);
    std::string id(shared.json().at("id").as_string());
    EXPECT_EQ(op->del("/api/v1/operator/quick-replies/" + id).status, 403);
    EXPECT_EQ(admin_->del("/api/v1/operator/quick-replies/" + id).status, 204);
}

TEST_F(OperatorPanel, NobodyOnlineWithoutQueueIsTheLimitBranch) {
    std::string doc = kBot;
    doc.replace(doc.find(R"("status":"queue",)"), 17, "");
    ASSERT_EQ(admin_->request("PUT", "/api/v1/bots/" + bot_ + "/scenario", doc).status, 200);
    auto [sid, pressed] = client_asks_for_operator();
    EXPECT_EQ(texts(pressed), std::vector<std::string>{"All operators are busy"});
    EXPECT_EQ(pressed.at("waiting"), "end");
}

}  // namespace
}  // namespace parley::testing
