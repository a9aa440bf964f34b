// Action Jail through the real binary: the CONTRACT endpoints, containment of hostile code, and a jail action
// called from a scenario's action node over the preview channel.
#include <gtest/gtest.h>

#include "harness.h"

namespace parley::testing {
namespace {

namespace json = boost::json;

class Jail : public ::testing::Test {
protected:
    void SetUp() override {
        server_ = std::make_unique<ParleyProcess>(dir_.path());
        client_ = std::make_unique<HttpClient>(server_->port());
        ASSERT_EQ(client_->login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    }
    TempDir dir_;
    std::unique_ptr<ParleyProcess> server_;
    std::unique_ptr<HttpClient> client_;
};

TEST_F(Jail, ContractEndpointsAndScenarioCall) {
    auto created = client_->post("/api/v1/jail/actions",
                                 {{"name", "check_order"},
                                  {"code", "async function main(ctx) {\n  console.log('checking', ctx.params.order);\n"
                                           "  if (ctx.params.order === '7') return {event: 'found', state: {status: 'shipped'}};\n"
                                           "  return {event: 'not_found', state: {}};\n}\n"},
                                  {"params", {{"order", {{"type", "string"}}}}},
                                  {"events", json::array{"found", "not_found"}}});
    ASSERT_EQ(created.status, 201) << created.body;
    auto listed = client_->get("/api/v1/jail/actions");
    ASSERT_EQ(listed.status, 200);
    EXPECT_EQ(listed.json().at("items").as_array().size(), 1u);

    auto run = client_->post("/api/v1/jail/actions/check_order/test", {{"params", {{"order", "7"}}}, {"state", json::object{}}});
    ASSERT_EQ(run.status, 200) << run.body;
    EXPECT_EQ(run.json().at("event"), "found");
    EXPECT_EQ(run.json().at("state").at("status"), "shipped");
    EXPECT_EQ(run.json().at("logs").as_array().size(), 1u);
    EXPECT_TRUE(run.json().at("ms").is_number());

    auto bad = client_->request("PUT", "/api/v1/jail/actions/check_order",
                                json::serialize(json::object{{"code", "function main(ctx) {\n  return {event: 'x'\n"}}));
    ASSERT_EQ(bad.status, 422) << bad.body;
    EXPECT_NE(bad.body.find("line"), std::string::npos);

    auto loop = client_->post("/api/v1/jail/actions", {{"name", "spin"}, {"code", "function main(ctx) { while (true) {} }"},
                                                       {"events", json::array{"done"}}});
    ASSERT_EQ(loop.status, 201) << loop.body;
    auto spun = client_->post("/api/v1/jail/actions/spin/test", {{"params", json::object{}}, {"state", json::object{}}});
    ASSERT_EQ(spun.status, 200);
    EXPECT_EQ(spun.json().at("event"), "error");
    EXPECT_EQ(spun.json().at("error").at("code"), "time_limit");
    auto fetch = client_->post("/api/v1/jail/actions", {{"name", "peek"},
        {"code", "async function main(ctx) { await fetch('http://169.254.169.254/latest'); return {event: 'done'}; }"},
        {"events", json::array{"done"}}});
    ASSERT_EQ(fetch.status, 201) << fetch.body;
    auto peeked = client_->post("/api/v1/jail/actions/peek/test", json::object{});
    EXPECT_EQ(peeked.json().at("error").at("code"), "fetch_refused");
    EXPECT_EQ(client_->get("/healthz").status, 200);

    // The action is called by name from a scenario.
    std::string bot(client_->post("/api/v1/bots", {{"name", "Orders"}}).json().at("id").as_string());
    auto put = client_->request("PUT", "/api/v1/bots/" + bot + "/scenario", R"({"format":"parley.scenario/1","languages":["en"],
      "sections":[{"name":"main","nodes":[{"id":"start","type":"start","next":"ask"},
        {"id":"ask","type":"input","prompt":"Order number?","save_as":"order","next":"check"},
        {"id":"check","type":"action","action":"check_order","params":{"order":"{{order}}"},
         "on":{"found":"yes","not_found":"no"}},
        {"id":"yes","type":"message","text":"Order {{order}}: {{status}}","next":"ask"},
        {"id":"no","type":"message","text":"No such order","next":"ask"}]}]})");
    ASSERT_EQ(put.status, 200) << put.body;
    EXPECT_EQ(put.body.find("unknown_action"), std::string::npos) << put.body;
    std::string sid(client_->post("/api/v1/bots/" + bot + "/preview", json::object{}).json().at("session").as_string());
    auto answered = client_->post("/api/v1/bots/" + bot + "/preview/" + sid + "/messages", {{"text", "7"}});
    ASSERT_EQ(answered.status, 200) << answered.body;
    EXPECT_EQ(answered.json().at("replies").as_array()[0].at("text"), "Order 7: shipped");
}

}  // namespace
}  // namespace parley::testing
