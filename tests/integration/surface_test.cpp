// The outside surface as a whole: every route is documented in docs/openapi.yaml, and every route enforces its
// access rule for every built-in role (the role × endpoint permission matrix).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <regex>
#include <set>

#include "harness.h"

namespace parley::testing {
namespace {

namespace json = boost::json;

json::array list_routes() {
    std::string cmd = parley_binary() + " routes 2>/dev/null";
    FILE* pipe = popen(cmd.c_str(), "r");
    std::string out;
    char buffer[4096];
    while (pipe && fgets(buffer, sizeof buffer, pipe)) out += buffer;
    if (pipe) pclose(pipe);
    return json::parse(out).as_array();
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

TEST(Surface, EveryRouteIsInOpenApi) {
    YAML::Node doc = YAML::LoadFile(std::string(PARLEY_SOURCE_DIR) + "/docs/openapi.yaml");
    auto routes = list_routes();
    ASSERT_GT(routes.size(), 10u);
    for (const auto& r : routes) {
        std::string pattern(r.at("pattern").as_string());
        std::string method = lower(std::string(r.at("method").as_string()));
        if (r.as_object().contains("websocket") && r.at("websocket").as_bool()) method = "get";
        ASSERT_TRUE(doc["paths"][pattern]) << pattern << " is missing from docs/openapi.yaml";
        EXPECT_TRUE(doc["paths"][pattern][method]) << method << " " << pattern << " is missing from docs/openapi.yaml";
    }
}

TEST(Surface, PermissionMatrix) {
    TempDir dir;
    ParleyProcess server(dir.path());
    HttpClient admin(server.port());
    ASSERT_EQ(admin.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    auto roles = admin.get("/api/v1/roles");
    ASSERT_EQ(roles.status, 200) << roles.body;

    // One user per built-in role, plus a custom role with a single grant.
    std::map<std::string, std::set<std::string>> grants;  // role -> {"module.action"}
    const json::value roles_body = roles.json();
    for (const auto& role : roles_body.at("items").as_array()) {
        std::string name(role.at("name").as_string());
        for (const auto& [module, actions] : role.at("permissions").as_object()) {
            for (const auto& a : actions.as_array()) grants[name].insert(std::string(module) + "." + std::string(a.as_string()));
        }
    }
    for (auto builtin : {"operator", "supervisor", "administrator", "integrator", "analyst"}) {
        ASSERT_TRUE(grants.count(builtin)) << builtin;
    }
    auto custom = admin.post("/api/v1/roles", {{"name", "settings_viewer"}, {"permissions", {{"settings", {"view"}}}}});
    ASSERT_EQ(custom.status, 201) << custom.body;
    grants["settings_viewer"] = {"settings.view"};

    std::map<std::string, std::unique_ptr<HttpClient>> clients;
    for (const auto& [role, _] : grants) {
        std::string email = role + "@matrix.test";
        auto res = admin.post("/api/v1/users",
                              {{"email", email}, {"name", role}, {"password", "matrix-pass-1"}, {"roles", {role}}});
        ASSERT_EQ(res.status, 201) << res.body;
        clients[role] = std::make_unique<HttpClient>(server.port());
        ASSERT_EQ(clients[role]->login(email, "matrix-pass-1").status, 200);
    }
    HttpClient anonymous(server.port());

    std::regex param("\\{[a-z_]+\\}");
    int checked = 0;
    const json::array routes = list_routes();
    for (const auto& r : routes) {
        std::string kind(r.at("access").at("kind").as_string());
        std::string pattern(r.at("pattern").as_string());
        std::string method(r.at("method").as_string());
        if (r.as_object().contains("websocket") && r.at("websocket").as_bool()) continue;  // covered elsewhere
        if (pattern == "/api/v1/auth/logout") continue;  // would end the session the matrix relies on
        std::string target = std::regex_replace(pattern, param, "matrix_missing");
        if (kind == "public") {
            auto res = anonymous.request(method, target, "{}");
            EXPECT_NE(res.status, 401) << method << " " << pattern;
            EXPECT_NE(res.status, 403) << method << " " << pattern;
            continue;
        }
        auto res = anonymous.request(method, target, "{}");
        EXPECT_EQ(res.status, 401) << "anonymous " << method << " " << pattern;
        if (kind != "permission") continue;
        std::string needed = std::string(r.at("access").at("module").as_string()) + "." +
                             std::string(r.at("access").at("action").as_string());
        for (const auto& [role, set] : grants) {
            auto res = clients[role]->request(method, target, "{}");
            if (set.count(needed)) {
                EXPECT_NE(res.status, 403) << role << " should reach " << method << " " << pattern << ": " << res.body;
                EXPECT_NE(res.status, 401) << role << " " << method << " " << pattern;
            } else {
                EXPECT_EQ(res.status, 403) << role << " must not reach " << method << " " << pattern << ": "
                                           << res.body;
            }
            ++checked;
        }
    }
    EXPECT_GT(checked, 50);
}

}  // namespace
}  // namespace parley::testing
