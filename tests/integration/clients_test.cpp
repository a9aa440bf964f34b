// Client cards through the real binary: two clients from preview chats, a manual merge (one unknown id changes
// nothing; repeating it is a no-op; the absorbed id keeps resolving to the survivor), and the CSV export with
// formula cells escaped.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "harness.h"

namespace parley::testing {
namespace {

namespace json = boost::json;

std::string read_source(const std::string& relative) {
    std::ifstream in(std::string(PARLEY_SOURCE_DIR) + "/" + relative);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

TEST(Clients, MergeResolvesEverywhereAndExportEscapesFormulas) {
    TempDir dir;
    ParleyProcess server(dir.path());
    HttpClient c(server.port());
    ASSERT_EQ(c.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    auto bot = c.post("/api/v1/bots", {{"name", "cards"}});
    ASSERT_EQ(bot.status, 201) << bot.body;
    std::string bot_id(bot.json().at("id").as_string());
    ASSERT_EQ(c.request("PUT", "/api/v1/bots/" + bot_id + "/scenario", read_source("bench/bots/echo-bot.json")).status,
              200);
    auto start = [&](const std::string& name) {
        auto r = c.post("/api/v1/bots/" + bot_id + "/preview", {{"user", {{"name", name}, {"language", "uk"}}}});
        EXPECT_EQ(r.status, 201) << r.body;
        return std::string(r.json().at("client").at("id").as_string());
    };
    const std::string a = start("Olena");
    const std::string b = start("=HYPERLINK(\"http://evil\")");
    ASSERT_NE(a, b);
    EXPECT_EQ(c.get("/api/v1/clients").json().at("items").as_array().size(), 2u);

    // One unknown id: 404 and nothing merged.
    EXPECT_EQ(c.post("/api/v1/clients/" + a + "/merge", {{"client_ids", json::array{b, "nope"}}}).status, 404);
    EXPECT_EQ(c.get("/api/v1/clients").json().at("items").as_array().size(), 2u);
    EXPECT_EQ(c.post("/api/v1/clients/" + a + "/merge", {{"client_ids", "b"}}).status, 400);

    // Export before the merge: the formula-like name is escaped with a leading quote.
    auto csv = c.get("/api/v1/clients/export");
    ASSERT_EQ(csv.status, 200) << csv.body;
    EXPECT_NE(csv.body.find("Olena"), std::string::npos);
    EXPECT_EQ(csv.body.find(",=HYPERLINK"), std::string::npos) << csv.body;
    EXPECT_NE(csv.body.find("'=HYPERLINK"), std::string::npos) << csv.body;

    auto merged = c.post("/api/v1/clients/" + a + "/merge", {{"client_ids", json::array{b}}});
    ASSERT_EQ(merged.status, 200) << merged.body;
    EXPECT_EQ(c.get("/api/v1/clients").json().at("items").as_array().size(), 1u);
    auto absorbed = c.get("/api/v1/clients/" + b);
    ASSERT_EQ(absorbed.status, 200) << absorbed.body;
    EXPECT_EQ(absorbed.json().at("id"), json::value(a));
    // Repeating the merge changes nothing.
    auto again = c.post("/api/v1/clients/" + a + "/merge", {{"client_ids", json::array{b}}});
    ASSERT_EQ(again.status, 200) << again.body;
    EXPECT_EQ(c.get("/api/v1/clients").json().at("items").as_array().size(), 1u);
    auto history = c.get("/api/v1/clients/merges?client_id=" + a);
    ASSERT_EQ(history.status, 200) << history.body;
    EXPECT_FALSE(history.json().at("items").as_array().empty()) << history.body;
}

}  // namespace
}  // namespace parley::testing
