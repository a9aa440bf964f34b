#include <boost/json.hpp>
#include <map>
#include <set>

#include "auth/auth.h"
#include "auth/test_util.h"
#include "core/error.h"

namespace parley::auth {
namespace {

using http::Method;
using testing::AuthTest;
namespace json = boost::json;

class RoutesTest : public AuthTest {
protected:
    RoutesTest() { register_routes(router_, *auth_); }

    /// Calls a route the way the server does after its access check.
    http::Response call(Method method, const std::string& path, const core::Principal* principal,
                        std::string body = {}, std::vector<std::pair<std::string, std::string>> query = {}) {
        auto match = router_.match(method, path);
        if (!match.route) throw std::runtime_error("no route for " + path);
        http::Request req;
        req.method = method;
        req.path = path;
        req.params = match.params;
        req.query = std::move(query);
        req.body = std::move(body);
        req.remote_ip = "192.0.2.1";
        req.principal = principal;
        try {
            return run(match.route->handler(req));
        } catch (const core::Error& e) {
            return http::Response::error(e.status(), e.code(), e.what(), e.details());
        }
    }

    std::shared_ptr<const core::Principal> principal_with_role(const std::string& role) {
        make_user(role + "@example.com", {role});
        return principal_of(login(role + "@example.com").token);
    }

    http::Router router_;
};

bool allowed(const http::Access& access, const core::Principal& p) {
    return access.kind != http::Access::Kind::kPermission || p.can(access.module, access.action);
}

// The role × endpoint matrix: which built-in roles may call each auth endpoint (by default grants).
TEST_F(RoutesTest, RoleByEndpointPermissionMatrix) {
    const std::set<std::string> everyone{"administrator", "integrator", "supervisor", "operator", "analyst"};
    const std::map<std::pair<Method, std::string>, std::set<std::string>> expected = {
        {{Method::kPost, "/api/v1/auth/login"}, everyone},
        {{Method::kPost, "/api/v1/auth/logout"}, everyone},
        {{Method::kGet, "/api/v1/auth/me"}, everyone},
        {{Method::kPatch, "/api/v1/auth/me"}, everyone},
        {{Method::kPost, "/api/v1/auth/password-reset"}, everyone},
        {{Method::kPost, "/api/v1/auth/password-reset/confirm"}, everyone},
        {{Method::kPost, "/api/v1/auth/tokens"}, everyone},
        {{Method::kGet, "/api/v1/auth/tokens"}, everyone},
        {{Method::kDelete, "/api/v1/auth/tokens/{id}"}, everyone},
        {{Method::kPost, "/api/v1/users"}, {"administrator"}},
        {{Method::kGet, "/api/v1/users"}, {"administrator", "supervisor"}},
        {{Method::kGet, "/api/v1/users/{id}"}, {"administrator", "supervisor"}},
        {{Method::kPatch, "/api/v1/users/{id}"}, {"administrator"}},
        {{Method::kDelete, "/api/v1/users/{id}"}, {"administrator"}},
        {{Method::kPost, "/api/v1/users/{id}/reset-link"}, {"administrator"}},
        {{Method::kGet, "/api/v1/permissions"}, everyone},
        {{Method::kGet, "/api/v1/roles"}, {"administrator"}},
        {{Method::kGet, "/api/v1/roles/{name}"}, {"administrator"}},
        {{Method::kPost, "/api/v1/roles"}, {"administrator"}},
        {{Method::kPut, "/api/v1/roles/{name}"}, {"administrator"}},
        {{Method::kDelete, "/api/v1/roles/{name}"}, {"administrator"}},
        {{Method::kGet, "/api/v1/audit"}, {"administrator"}},
        {{Method::kGet, "/api/v1/settings"}, {"administrator", "integrator"}},
        {{Method::kGet, "/api/v1/settings/{key}"}, {"administrator", "integrator"}},
        {{Method::kPut, "/api/v1/settings/{key}"}, {"administrator", "integrator"}},
        {{Method::kDelete, "/api/v1/settings/{key}"}, {"administrator"}},
    };
    std::map<std::string, std::shared_ptr<const core::Principal>> principals;
    for (const auto& role : everyone) principals[role] = principal_with_role(role);

    ASSERT_EQ(router_.routes().size(), expected.size()) << "a route was added without a matrix row";
    for (const auto& route : router_.routes()) {
        auto it = expected.find({route->method, route->pattern});
        ASSERT_NE(it, expected.end()) << route->pattern;
        for (const auto& [role, principal] : principals) {
            EXPECT_EQ(allowed(route->access, *principal), it->second.count(role) > 0)
                << http::method_name(route->method) << " " << route->pattern << " as " << role;
        }
    }
}

TEST_F(RoutesTest, LoginAndMeThroughHandlers) {
    make_user("olena@example.com", {"operator"});
    auto r = call(Method::kPost, "/api/v1/auth/login", nullptr,
                  R"({"email": "olena@example.com", "password": "correct horse"})");
    ASSERT_EQ(r.status, 200) << r.body;
    auto body = json::parse(r.body).as_object();
    EXPECT_EQ(body.at("user").at("email"), "olena@example.com");
    auto p = principal_of(std::string(body.at("token").as_string()));
    ASSERT_TRUE(p);
    auto me = call(Method::kGet, "/api/v1/auth/me", p.get());
    EXPECT_EQ(me.status, 200);
    EXPECT_EQ(json::parse(me.body).at("permissions").at("operator"), json::parse(R"(["view","edit"])"));

    EXPECT_EQ(call(Method::kPost, "/api/v1/auth/login", nullptr, R"({"email": "olena@example.com"})").status, 400);
    EXPECT_EQ(call(Method::kPost, "/api/v1/auth/login", nullptr, R"({"email": 1, "password": "x"})").status, 400);
    EXPECT_EQ(call(Method::kPost, "/api/v1/auth/login", nullptr,
                   R"({"email": "olena@example.com", "password": "correct horse", "x": 1})")
                  .status,
              400);
    EXPECT_EQ(call(Method::kPost, "/api/v1/auth/login", nullptr, "{not json").status, 400);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(call(Method::kPost, "/api/v1/auth/login", nullptr,
                       R"({"email": "olena@example.com", "password": "wrong wrong"})")
                      .status,
                  401);
    }
    auto locked = call(Method::kPost, "/api/v1/auth/login", nullptr,
                       R"({"email": "olena@example.com", "password": "correct horse"})");
    EXPECT_EQ(locked.status, 429);
    ASSERT_EQ(locked.headers.size(), 1u);
    EXPECT_EQ(locked.headers[0].first, "Retry-After");
    EXPECT_EQ(json::parse(locked.body).at("error").at("code"), "locked");
}

TEST_F(RoutesTest, UsersRolesSettingsThroughHandlers) {
    auto created = call(Method::kPost, "/api/v1/users", &root_,
                        R"({"email": "Op@Example.com", "name": "Op", "password": "password123", "roles": ["operator"]})");
    ASSERT_EQ(created.status, 201) << created.body;
    std::string id(json::parse(created.body).at("id").as_string());
    EXPECT_EQ(call(Method::kPost, "/api/v1/users", &root_,
                   R"({"email": "op@example.com", "name": "Op", "password": "password123", "roles": []})")
                  .status,
              409);
    EXPECT_EQ(call(Method::kGet, "/api/v1/users/" + id, &root_).status, 200);
    EXPECT_EQ(call(Method::kGet, "/api/v1/users/nope", &root_).status, 404);
    auto list = call(Method::kGet, "/api/v1/users", &root_, {}, {{"role", "operator"}, {"limit", "10"}});
    EXPECT_EQ(json::parse(list.body).at("items").as_array().size(), 1u);
    EXPECT_EQ(call(Method::kGet, "/api/v1/users", &root_, {}, {{"limit", "0"}}).status, 400);
    EXPECT_EQ(call(Method::kGet, "/api/v1/users", &root_, {}, {{"cursor", "zzz"}}).status, 400);
    auto link = call(Method::kPost, "/api/v1/users/" + id + "/reset-link", &root_);
    EXPECT_EQ(link.status, 200);
    EXPECT_NE(json::parse(link.body).at("link").as_string().find("/reset-password?token="), json::string::npos);
    EXPECT_EQ(call(Method::kDelete, "/api/v1/users/" + id, &root_).status, 204);

    EXPECT_EQ(call(Method::kPost, "/api/v1/roles", &root_, R"({"name": "night", "permissions": {"operator": ["view"]}})")
                  .status,
              201);
    EXPECT_EQ(call(Method::kPost, "/api/v1/roles", &root_, R"({"name": "x", "permissions": {"rockets": ["view"]}})")
                  .status,
              400);
    EXPECT_EQ(call(Method::kPut, "/api/v1/roles/night", &root_, R"({"permissions": {"tickets": ["view"]}})").status,
              200);
    EXPECT_EQ(call(Method::kDelete, "/api/v1/roles/night", &root_).status, 204);
    EXPECT_EQ(call(Method::kDelete, "/api/v1/roles/operator", &root_).status, 409);

    EXPECT_EQ(call(Method::kPut, "/api/v1/settings/crm.key", &root_, R"({"value": "sk-123", "secret": true})").status,
              200);
    auto secret = call(Method::kGet, "/api/v1/settings/crm.key", &root_);
    EXPECT_EQ(json::parse(secret.body), json::parse(R"({"key":"crm.key","secret":true,"set":true,"default":false,
        "updated_by":")" + root_.user_id + R"(","updated_at":")" + core::format_time(clock_.now_ms()) + R"("})"));
    EXPECT_EQ(call(Method::kGet, "/api/v1/settings", &root_).body.find("sk-123"), std::string::npos);
    EXPECT_EQ(call(Method::kPut, "/api/v1/settings/crm.key", &root_, R"({"secret": true})").status, 400);
    EXPECT_EQ(call(Method::kPut, "/api/v1/settings/BAD", &root_, R"({"value": 1})").status, 400);
    EXPECT_EQ(call(Method::kDelete, "/api/v1/settings/crm.key", &root_).status, 204);
    EXPECT_EQ(call(Method::kGet, "/api/v1/settings/crm.key", &root_).status, 404);

    auto audit = call(Method::kGet, "/api/v1/audit", &root_, {}, {{"action", "setting."}});
    EXPECT_EQ(json::parse(audit.body).at("items").as_array().size(), 2u);
}

TEST_F(RoutesTest, PasswordResetAnswersTheSameForUnknownEmails) {
    make_user("olena@example.com", {"operator"});
    auto known = call(Method::kPost, "/api/v1/auth/password-reset", nullptr, R"({"email": "olena@example.com"})");
    auto unknown = call(Method::kPost, "/api/v1/auth/password-reset", nullptr, R"({"email": "ghost@example.com"})");
    EXPECT_EQ(known.status, 202);
    EXPECT_EQ(known.status, unknown.status);
    EXPECT_EQ(known.body, unknown.body);
    EXPECT_EQ(call(Method::kPost, "/api/v1/auth/password-reset/confirm", nullptr,
                   R"({"token": "abc", "password": "password123"})")
                  .status,
              400);
}

}  // namespace
}  // namespace parley::auth
