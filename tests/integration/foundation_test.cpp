// Black-box tests of the foundation: process life cycle, health, metrics, errors, auth, users, settings, backup.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "harness.h"

namespace parley::testing {
namespace {

namespace json = boost::json;

class Foundation : public ::testing::Test {
protected:
    void SetUp() override {
        server_ = std::make_unique<ParleyProcess>(dir_.path());
        client_ = std::make_unique<HttpClient>(server_->port());
    }
    HttpClient& admin() {
        if (client_->token().empty()) {
            auto res = client_->login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword);
            EXPECT_EQ(res.status, 200) << res.body;
        }
        return *client_;
    }
    void expect_error(const HttpResult& res, int status, const std::string& code = {}) {
        EXPECT_EQ(res.status, status) << res.body;
        auto body = res.json();
        ASSERT_TRUE(body.is_object()) << res.body;
        ASSERT_TRUE(body.as_object().contains("error")) << res.body;
        const auto& error = body.at("error").as_object();
        EXPECT_TRUE(error.at("code").is_string());
        EXPECT_TRUE(error.at("message").is_string());
        if (!code.empty()) {
            EXPECT_EQ(error.at("code").as_string(), code) << res.body;
        }
    }

    TempDir dir_;
    std::unique_ptr<ParleyProcess> server_;
    std::unique_ptr<HttpClient> client_;
};

TEST_F(Foundation, HealthzAndMetricsNeedNoToken) {
    auto health = client_->get("/healthz");
    EXPECT_EQ(health.status, 200);
    EXPECT_EQ(health.json(), json::parse(R"({"status":"ok"})"));
    auto metrics = client_->get("/metrics");
    EXPECT_EQ(metrics.status, 200);
    EXPECT_NE(metrics.headers["content-type"].find("text/plain"), std::string::npos);
    EXPECT_NE(metrics.body.find("# TYPE parley_http_requests_total counter"), std::string::npos) << metrics.body;
    EXPECT_NE(metrics.body.find("parley_http_request_duration_seconds_bucket"), std::string::npos);
    EXPECT_NE(metrics.body.find("parley_db_commit_seconds"), std::string::npos);
    EXPECT_NE(metrics.body.find("parley_websockets_open"), std::string::npos);
}

TEST_F(Foundation, LoginAndMe) {
    auto bad = client_->post("/api/v1/auth/login", {{"email", ParleyProcess::kAdminEmail}, {"password", "wrong-one"}});
    expect_error(bad, 401);
    auto ok = client_->login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword);
    ASSERT_EQ(ok.status, 200) << ok.body;
    EXPECT_EQ(ok.json().at("user").at("email").as_string(), ParleyProcess::kAdminEmail);
    auto me = client_->get("/api/v1/auth/me");
    EXPECT_EQ(me.status, 200) << me.body;
    auto logout = client_->post("/api/v1/auth/logout", json::object{});
    EXPECT_LT(logout.status, 300) << logout.body;
    expect_error(client_->get("/api/v1/auth/me"), 401, "unauthenticated");
}

TEST_F(Foundation, ErrorsHaveTheContractShape) {
    expect_error(client_->get("/api/v1/users"), 401, "unauthenticated");
    expect_error(client_->get("/api/v1/no/such/route"), 404);
    expect_error(client_->request("POST", "/api/v1/auth/login", "{not json"), 400);
    expect_error(client_->request("POST", "/api/v1/auth/login", "[1,2]"), 400);
    admin();
    expect_error(client_->request("POST", "/api/v1/users", R"({"email": 5})"), 400);
    std::string deep = std::string(500, '[') + std::string(500, ']');
    expect_error(client_->request("POST", "/api/v1/users", deep), 400);
    std::string huge(20 * 1024 * 1024, 'x');
    auto too_large = client_->request("POST", "/api/v1/users", huge);
    EXPECT_EQ(too_large.status, 413);
}

TEST_F(Foundation, UsersAndRoles) {
    admin();
    auto created = client_->post(
        "/api/v1/users",
        {{"email", "Olena@Example.com"}, {"name", "Olena"}, {"password", "operator-pw-1"}, {"roles", {"operator"}}});
    ASSERT_EQ(created.status, 201) << created.body;
    EXPECT_TRUE(created.json().at("id").is_string());
    auto duplicate = client_->post(
        "/api/v1/users",
        {{"email", "olena@example.com"}, {"name", "Olena"}, {"password", "operator-pw-1"}, {"roles", {"operator"}}});
    expect_error(duplicate, 409);
    auto unknown_role = client_->post(
        "/api/v1/users", {{"email", "x@example.com"}, {"name", "X"}, {"password", "pw-123456"}, {"roles", {"wizard"}}});
    EXPECT_GE(unknown_role.status, 400);
    EXPECT_LT(unknown_role.status, 500);
    auto list = client_->get("/api/v1/users?limit=1");
    ASSERT_EQ(list.status, 200);
    EXPECT_EQ(list.json().at("items").as_array().size(), 1u);
    EXPECT_FALSE(list.json().at("next_cursor").is_null());

    HttpClient op(server_->port());
    ASSERT_EQ(op.login("olena@example.com", "operator-pw-1").status, 200);
    expect_error(op.post("/api/v1/users", {{"email", "y@example.com"}, {"name", "Y"}, {"password", "pw-123456"},
                                           {"roles", {"administrator"}}}),
                 403, "forbidden");
}

TEST_F(Foundation, SecretSettingsAreNeverReturned) {
    admin();
    auto put = client_->put("/api/v1/settings/crm_token", {{"value", "s3cr3t-value"}, {"secret", true}});
    ASSERT_EQ(put.status, 200) << put.body;
    EXPECT_EQ(put.body.find("s3cr3t-value"), std::string::npos);
    auto get = client_->get("/api/v1/settings/crm_token");
    EXPECT_EQ(get.status, 200);
    EXPECT_EQ(get.body.find("s3cr3t-value"), std::string::npos);
    auto list = client_->get("/api/v1/settings");
    EXPECT_EQ(list.body.find("s3cr3t-value"), std::string::npos);
    auto plain = client_->put("/api/v1/settings/greeting", {{"value", {{"uk", "Привіт"}}}, {"secret", false}});
    ASSERT_EQ(plain.status, 200) << plain.body;
    EXPECT_EQ(client_->get("/api/v1/settings/greeting").json().at("value"), json::parse(R"({"uk":"Привіт"})"));
    // The secret is not in the database file in clear text.
    server_->stop(SIGTERM);
    for (auto& entry : std::filesystem::recursive_directory_iterator(dir_.path())) {
        if (!entry.is_regular_file()) continue;
        std::ifstream in(entry.path(), std::ios::binary);
        std::stringstream buffer;
        buffer << in.rdbuf();
        EXPECT_EQ(buffer.str().find("s3cr3t-value"), std::string::npos) << entry.path();
    }
}

TEST_F(Foundation, SigtermDrainsAndExitsZeroAndDataSurvivesRestart) {
    admin();
    ASSERT_EQ(client_->put("/api/v1/settings/kept", {{"value", 42}}).status, 200);
    EXPECT_EQ(server_->stop(SIGTERM), 0) << server_->output();
    ParleyProcess again(dir_.path());
    HttpClient client(again.port());
    ASSERT_EQ(client.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    EXPECT_EQ(client.get("/api/v1/settings/kept").json().at("value"), json::value(42));
}

TEST(FoundationStart, GeneratedAdminPasswordIsPrintedOnce) {
    TempDir dir;
    std::string output;
    {
        // Without PARLEY_ADMIN_* the server generates a password and prints it.
        ParleyProcess server(dir.path(), {}, {{"PARLEY_ADMIN_EMAIL", ""}, {"PARLEY_ADMIN_PASSWORD", ""}});
        output = server.output();
        std::smatch m;
        std::regex re("admin@localhost.*password[\":= ]+([A-Za-z0-9_-]{12,})");
        ASSERT_TRUE(std::regex_search(output, m, re)) << output;
        HttpClient client(server.port());
        EXPECT_EQ(client.login("admin@localhost", m[1].str()).status, 200);
        server.stop(SIGTERM);
    }
    ParleyProcess again(dir.path(), {}, {{"PARLEY_ADMIN_EMAIL", ""}, {"PARLEY_ADMIN_PASSWORD", ""}});
    EXPECT_EQ(again.output().find("password"), std::string::npos) << again.output();
}

TEST_F(Foundation, OnlineBackupIsConsistent) {
    admin();
    ASSERT_EQ(client_->put("/api/v1/settings/before_backup", {{"value", "yes"}}).status, 200);
    TempDir backup_dir;
    std::string cmd = parley_binary() + " backup " + backup_dir.path() + " --data " + dir_.path() + " 2>&1";
    FILE* pipe = popen(cmd.c_str(), "r");
    ASSERT_TRUE(pipe);
    char buffer[512];
    std::string out;
    while (fgets(buffer, sizeof buffer, pipe)) out += buffer;
    ASSERT_EQ(pclose(pipe), 0) << out;
    // The copy starts as a server of its own.
    std::string copy;
    for (auto& entry : std::filesystem::directory_iterator(backup_dir.path())) {
        if (entry.is_directory()) copy = entry.path().string();
    }
    ASSERT_FALSE(copy.empty()) << out;
    ParleyProcess restored(copy);
    HttpClient client(restored.port());
    ASSERT_EQ(client.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    EXPECT_EQ(client.get("/api/v1/settings/before_backup").json().at("value"), json::value("yes"));
}

TEST_F(Foundation, EventsWebSocketNeedsAToken) {
    admin();
    WsClient ws(server_->port(), "/api/v1/events", client_->token());
    auto hello = ws.receive(5000);
    ASSERT_TRUE(hello.has_value());
    EXPECT_EQ(json::parse(*hello).at("type").as_string(), "hello");
    EXPECT_THROW(WsClient(server_->port(), "/api/v1/events", ""), std::exception);
}

}  // namespace
}  // namespace parley::testing
