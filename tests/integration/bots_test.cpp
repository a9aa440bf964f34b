// Bots through the real binary: the CONTRACT flow (bots, scenario versions, preview chat, alias call), the demo
// bot, bad documents, and crash consistency of conversations (kill -9 mid-conversation, nothing lost or repeated).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness.h"

namespace parley::testing {
namespace {

namespace json = boost::json;

std::string read_source(const std::string& relative) {
    std::ifstream in(std::string(PARLEY_SOURCE_DIR) + "/" + relative);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

std::vector<std::string> reply_texts(const json::value& body) {
    std::vector<std::string> out;
    for (const auto& r : body.at("replies").as_array()) out.emplace_back(r.at("text").as_string());
    return out;
}

class BotsApi : public ::testing::Test {
protected:
    void SetUp() override {
        server_ = std::make_unique<ParleyProcess>(dir_.path());
        client_ = std::make_unique<HttpClient>(server_->port());
        ASSERT_EQ(client_->login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    }
    std::string create_bot(const std::string& document) {
        auto bot = client_->post("/api/v1/bots", {{"name", "Support"}});
        EXPECT_EQ(bot.status, 201) << bot.body;
        std::string id(bot.json().at("id").as_string());
        auto put = client_->request("PUT", "/api/v1/bots/" + id + "/scenario", document);
        EXPECT_EQ(put.status, 200) << put.body;
        return id;
    }
    TempDir dir_;
    std::unique_ptr<ParleyProcess> server_;
    std::unique_ptr<HttpClient> client_;
};

TEST_F(BotsApi, ContractFlowFromBotToPreviewAndAliasCall) {
    const std::string document = read_source("tests/conversations/support_bot.json");
    auto bot = client_->post("/api/v1/bots", {{"name", "Support"}});
    ASSERT_EQ(bot.status, 201) << bot.body;
    EXPECT_EQ(bot.json().at("name"), "Support");
    std::string id(bot.json().at("id").as_string());
    auto list = client_->get("/api/v1/bots");
    ASSERT_EQ(list.status, 200);
    EXPECT_EQ(list.json().at("items").as_array().size(), 1u);
    EXPECT_TRUE(list.json().at("next_cursor").is_null());

    auto put = client_->request("PUT", "/api/v1/bots/" + id + "/scenario", document);
    ASSERT_EQ(put.status, 200) << put.body;
    EXPECT_EQ(put.json().at("version"), 1);
    EXPECT_TRUE(put.json().at("warnings").is_array());
    auto put2 = client_->request("PUT", "/api/v1/bots/" + id + "/scenario", document);
    EXPECT_EQ(put2.json().at("version"), 2);
    auto got = client_->get("/api/v1/bots/" + id + "/scenario");
    ASSERT_EQ(got.status, 200);
    EXPECT_EQ(got.json(), json::parse(document));
    auto versions = client_->get("/api/v1/bots/" + id + "/scenario/versions");
    ASSERT_EQ(versions.status, 200);
    ASSERT_EQ(versions.json().at("items").as_array().size(), 2u);
    EXPECT_EQ(versions.json().at("items").as_array()[0].at("author").at("email"), ParleyProcess::kAdminEmail);

    // Preview chat.
    auto session = client_->post("/api/v1/bots/" + id + "/preview", {{"user", {{"name", "Olena"}, {"language", "uk"}}}});
    ASSERT_EQ(session.status, 201) << session.body;
    std::string sid(session.json().at("session").as_string());
    std::string client_id(session.json().at("client").at("id").as_string());
    EXPECT_EQ(reply_texts(session.json()), std::vector<std::string>{"Вітаємо, Olena!"});
    EXPECT_EQ(session.json().at("waiting"), "buttons");
    const json::value session_body = session.json();
    const auto& buttons = session_body.at("replies").as_array()[0].at("buttons").as_array();
    ASSERT_EQ(buttons.size(), 2u);
    EXPECT_EQ(buttons[0].at("id"), "faq");
    EXPECT_EQ(buttons[0].at("text"), "Питання");

    auto pressed = client_->post("/api/v1/bots/" + id + "/preview/" + sid + "/messages", {{"button", "faq"}});
    ASSERT_EQ(pressed.status, 200) << pressed.body;
    EXPECT_EQ(reply_texts(pressed.json()), std::vector<std::string>{"Your question?"});
    EXPECT_EQ(pressed.json().at("waiting"), "input");
    auto asked = client_->post("/api/v1/bots/" + id + "/preview/" + sid + "/messages", {{"text", "what is the price?"}});
    ASSERT_EQ(asked.status, 200);
    EXPECT_EQ(reply_texts(asked.json()), std::vector<std::string>{"See 0 800 000 000"});
    EXPECT_EQ(asked.json().at("waiting"), "end");
    EXPECT_EQ(asked.json().at("state").at("question"), "what is the price?");

    auto messages = client_->get("/api/v1/bots/" + id + "/preview/" + sid + "/messages?after=0");
    ASSERT_EQ(messages.status, 200);
    const json::value messages_body = messages.json();
    const auto& items = messages_body.at("items").as_array();
    ASSERT_EQ(items.size(), 5u);
    EXPECT_EQ(items[0].at("n"), 1);
    EXPECT_EQ(items[0].at("from"), "bot");
    EXPECT_EQ(items[1].at("from"), "client");
    EXPECT_EQ(items[4].at("text"), "See 0 800 000 000");
    EXPECT_TRUE(messages.json().at("next_cursor").is_null());
    EXPECT_EQ(client_->get("/api/v1/bots/" + id + "/preview/" + sid + "/messages?after=4").json().at("items").as_array().size(), 1u);

    // Alias call: runs the FAQ section for that client; its replies land in the session's messages.
    auto call = client_->post("/api/v1/bots/" + id + "/call/faq_start",
                              {{"client", {{"id", client_id}}}, {"input", "hi"}, {"params", {{"order", 7}}}});
    ASSERT_EQ(call.status, 200) << call.body;
    EXPECT_EQ(reply_texts(call.json()), std::vector<std::string>{"Your question?"});
    EXPECT_EQ(call.json().at("state").at("order"), 7);
    EXPECT_EQ(client_->get("/api/v1/bots/" + id + "/preview/" + sid + "/messages?after=5").json().at("items").as_array().size(), 1u);
    EXPECT_EQ(client_->post("/api/v1/bots/" + id + "/call/nope", {{"client", {{"id", client_id}}}}).status, 404);
    EXPECT_EQ(client_->post("/api/v1/bots/" + id + "/call/faq_start", {{"client", {{"id", "nobody"}}}}).status, 404);
    EXPECT_EQ(client_->post("/api/v1/bots/nobot/call/faq_start", {{"client", {{"id", client_id}}}}).status, 404);

    // Runs view.
    auto runs = client_->get("/api/v1/bots/" + id + "/runs?dialog=" + sid);
    ASSERT_EQ(runs.status, 200);
    EXPECT_EQ(runs.json().at("items").as_array().size(), 4u);
}

TEST_F(BotsApi, BadDocumentsAndMessagesChangeNothing) {
    std::string id = create_bot(read_source("tests/conversations/support_bot.json"));
    auto bad = client_->request("PUT", "/api/v1/bots/" + id + "/scenario",
                                R"({"format":"parley.scenario/1","languages":["en"],"sections":[{"name":"main","nodes":[
                                   {"id":"start","type":"start","next":"x"},{"id":"x","type":"teleport"}]}]})");
    ASSERT_EQ(bad.status, 422) << bad.body;
    const json::value bad_body = bad.json();
    const auto& details = bad_body.at("error").at("details").as_array();
    ASSERT_FALSE(details.empty());
    EXPECT_EQ(details[0].at("node"), "x");
    EXPECT_EQ(details[0].at("section"), "main");
    EXPECT_EQ(client_->request("PUT", "/api/v1/bots/" + id + "/scenario", "{not json").status, 400);
    std::string deep(100, '[');
    EXPECT_EQ(client_->request("PUT", "/api/v1/bots/" + id + "/scenario", deep).status, 400);
    std::string huge = R"({"format":"parley.scenario/1","name":")" + std::string(3 * 1024 * 1024, 'a') + "\"}";
    EXPECT_EQ(client_->request("PUT", "/api/v1/bots/" + id + "/scenario", huge).status, 413);
    auto versions = client_->get("/api/v1/bots/" + id + "/scenario/versions");
    EXPECT_EQ(versions.json().at("items").as_array().size(), 1u);

    auto session = client_->post("/api/v1/bots/" + id + "/preview", json::object{});
    ASSERT_EQ(session.status, 201);
    std::string sid(session.json().at("session").as_string());
    std::string path = "/api/v1/bots/" + id + "/preview/" + sid + "/messages";
    EXPECT_EQ(client_->post(path, {{"text", "a"}, {"button", "b"}}).status, 400);
    EXPECT_EQ(client_->post(path, {{"text", 5}}).status, 400);
    EXPECT_EQ(client_->post(path, {{"colour", "red"}}).status, 400);
    EXPECT_EQ(client_->post(path, json::object{}).status, 400);
    EXPECT_EQ(client_->post("/api/v1/bots/" + id + "/preview/unknown/messages", {{"text", "a"}}).status, 404);
    EXPECT_EQ(client_->get(path).json().at("items").as_array().size(), 1u);
    EXPECT_EQ(client_->post("/api/v1/bots", {{"name", ""}}).status, 400);
    EXPECT_EQ(client_->get("/api/v1/bots/nobot").status, 404);
}

TEST_F(BotsApi, RegisteredUsersActionsReadAndWriteTheClientCard) {
    std::string id = create_bot(R"({"format":"parley.scenario/1","languages":["en"],"sections":[{"name":"main","nodes":[
      {"id":"start","type":"start","next":"ask"},
      {"id":"ask","type":"input","prompt":"Your city?","save_as":"answer","next":"save"},
      {"id":"save","type":"action","action":"registered_users__set","params":{"values":{"city":"{{answer}}","name":"Olena P."}},
       "on":{"success":"load","error":"oops"}},
      {"id":"load","type":"action","action":"registered_users__get","params":{},"on":{"found":"say","not_found":"oops"}},
      {"id":"say","type":"message","text":"{{name}} from {{city}}, {{phone}}","next":"fin"},
      {"id":"oops","type":"message","text":"oops","next":"fin"},
      {"id":"fin","type":"end"}]}]})");
    auto session = client_->post("/api/v1/bots/" + id + "/preview", {{"user", {{"name", "Olena"}, {"phone", "+380501112233"}}}});
    ASSERT_EQ(session.status, 201) << session.body;
    std::string sid(session.json().at("session").as_string());
    std::string client_id(session.json().at("client").at("id").as_string());
    auto said = client_->post("/api/v1/bots/" + id + "/preview/" + sid + "/messages", {{"text", "Lviv"}});
    ASSERT_EQ(said.status, 200) << said.body;
    EXPECT_EQ(reply_texts(said.json()), std::vector<std::string>{"Olena P. from Lviv, +380501112233"});
    auto card = client_->get("/api/v1/clients/" + client_id);
    ASSERT_EQ(card.status, 200);
    EXPECT_EQ(card.json().at("name"), "Olena P.");
    EXPECT_EQ(card.json().at("city"), "Lviv");
}

TEST(BotsDemo, DemoBotIsLoadedAndGreets) {
    TempDir dir;
    ParleyProcess server(dir.path(), {"--demo"});
    HttpClient client(server.port());
    ASSERT_EQ(client.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    auto bots = client.get("/api/v1/bots");
    ASSERT_EQ(bots.json().at("items").as_array().size(), 1u);
    std::string id(bots.json().at("items").as_array()[0].at("id").as_string());
    auto session = client.post("/api/v1/bots/" + id + "/preview", {{"user", {{"name", "Olena"}, {"language", "en"}}}});
    ASSERT_EQ(session.status, 201) << session.body;
    EXPECT_EQ(reply_texts(session.json())[0], "Welcome to Parley Demo, Olena! Please send your phone number.");
}

// kill -9 in the middle of many concurrent conversations; after a restart every conversation goes on where it
// was. Each client message carries an id: a message whose answer was lost with the connection is sent again with
// the same id, and must be answered without running (or storing) it twice.
TEST(BotsCrash, ConversationsSurviveKillNine) {
    TempDir dir;
    const std::string document = R"({"format":"parley.scenario/1","languages":["en"],"sections":[{"name":"main","nodes":[
      {"id":"start","type":"start","next":"ask"},
      {"id":"ask","type":"input","prompt":"say something","save_as":"last","next":"echo"},
      {"id":"echo","type":"message","text":"you said {{last}}","next":"ask"}]}]})";
    constexpr int kClients = 12;
    std::string bot_id;
    std::vector<std::string> sessions(kClients);
    std::vector<int> sent(kClients, 0);  // messages acknowledged per client
    {
        ParleyProcess server(dir.path());
        HttpClient admin(server.port());
        ASSERT_EQ(admin.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
        bot_id = std::string(admin.post("/api/v1/bots", {{"name", "Echo"}}).json().at("id").as_string());
        ASSERT_EQ(admin.request("PUT", "/api/v1/bots/" + bot_id + "/scenario", document).status, 200);
        for (auto& s : sessions) s = std::string(admin.post("/api/v1/bots/" + bot_id + "/preview", json::object{}).json().at("session").as_string());
        std::string token = admin.token();
        std::atomic<bool> stop{false};
        std::vector<std::thread> threads;
        for (int c = 0; c < kClients; ++c) {
            threads.emplace_back([&, c] {
                HttpClient client(server.port());
                client.set_token(token);
                while (!stop) {
                    int i = sent[c] + 1;
                    try {
                        auto r = client.post("/api/v1/bots/" + bot_id + "/preview/" + sessions[c] + "/messages",
                                             {{"text", "m" + std::to_string(i)}, {"id", "c" + std::to_string(c) + "-" + std::to_string(i)}});
                        if (r.status != 200) return;
                        sent[c] = i;
                    } catch (const std::exception&) {
                        return;
                    }
                }
            });
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(700));
        server.stop(SIGKILL);
        stop = true;
        for (auto& t : threads) t.join();
    }
    ParleyProcess server(dir.path());
    HttpClient client(server.port());
    ASSERT_EQ(client.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    int total = 0;
    for (int c = 0; c < kClients; ++c) {
        std::string path = "/api/v1/bots/" + bot_id + "/preview/" + sessions[c] + "/messages";
        // The message that may have been in flight: send it again with its id.
        int next = sent[c] + 1;
        auto again = client.post(path, {{"text", "m" + std::to_string(next)}, {"id", "c" + std::to_string(c) + "-" + std::to_string(next)}});
        ASSERT_EQ(again.status, 200) << again.body;
        EXPECT_EQ(reply_texts(again.json()), (std::vector<std::string>{"you said m" + std::to_string(next), "say something"}));
        auto after = client.post(path, {{"text", "after"}, {"id", "c" + std::to_string(c) + "-after"}});
        EXPECT_EQ(reply_texts(after.json())[0], "you said after");
        // The log: the prompt, then per client message exactly its echo and the prompt, nothing twice.
        json::array log;
        while (true) {
            auto page = client.get(path + "?limit=500&after=" + std::to_string(log.size())).json().at("items").as_array();
            if (page.empty()) break;
            for (auto& m : page) log.push_back(m);
        }
        ASSERT_EQ(log.size(), static_cast<std::size_t>(1 + 3 * (next + 1))) << "client " << c;
        for (int i = 1; i <= next; ++i) {
            std::size_t at = static_cast<std::size_t>(1 + 3 * (i - 1));
            EXPECT_EQ(log[at].at("from"), "client");
            EXPECT_EQ(log[at].at("text"), json::value("m" + std::to_string(i)));
            EXPECT_EQ(log[at + 1].at("text"), json::value("you said m" + std::to_string(i)));
            EXPECT_EQ(log[at + 2].at("text"), "say something");
        }
        total += sent[c];
    }
    EXPECT_GT(total, kClients);  // the kill really happened mid-conversation
}

}  // namespace
}  // namespace parley::testing
