#include <boost/json.hpp>

#include "auth/auth.h"
#include "auth/internal/crypto.h"
#include "auth/test_util.h"
#include "core/error.h"

namespace parley::auth {
namespace {

using testing::AuthTest;
constexpr std::int64_t kMinute = 60'000;

template <typename E, typename F>
std::string error_code_of(F&& fn) {
    try {
        fn();
    } catch (const E& e) {
        return e.code();
    }
    return "<no exception>";
}

TEST_F(AuthTest, LoginSucceedsAndTheTokenAuthenticates) {
    make_user("olena@example.com", {"operator"});
    LoginResult result = login("  Olena@Example.com ");
    EXPECT_EQ(result.user.email, "olena@example.com");
    EXPECT_EQ(result.token.size(), 64u);
    EXPECT_EQ(result.expires_at, clock_.now_ms() + options_.session_ttl_minutes * kMinute);
    auto p = principal_of(result.token);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->email, "olena@example.com");
    EXPECT_TRUE(p->can("operator", core::Action::kEdit));
    EXPECT_FALSE(p->can("users", core::Action::kView));
    EXPECT_FALSE(p->via_api_token);
    // Only the hash is stored.
    EXPECT_EQ(count("SELECT COUNT(*) FROM auth_sessions WHERE token_hash = '" + internal::sha256_hex(result.token) +
                    "'"),
              1);
    EXPECT_EQ(count("SELECT COUNT(*) FROM auth_sessions WHERE token_hash = '" + result.token + "'"), 0);
    EXPECT_FALSE(principal_of(std::string(64, 'a')));
    EXPECT_FALSE(principal_of("garbage"));
}

TEST_F(AuthTest, WrongPasswordUnknownEmailAndInactiveAnswerAlike) {
    User u = make_user("olena@example.com", {"operator"});
    EXPECT_EQ(error_code_of<core::Unauthorized>([&] { login("olena@example.com", "wrong password"); }),
              "invalid_credentials");
    EXPECT_EQ(error_code_of<core::Unauthorized>([&] { login("nobody@example.com", "wrong password"); }),
              "invalid_credentials");
    run(auth_->deactivate_user(Caller{&root_, ""}, u.id));
    EXPECT_EQ(error_code_of<core::Unauthorized>([&] { login("olena@example.com"); }), "invalid_credentials");
    EXPECT_EQ(error_code_of<core::BadRequest>([&] { login("not an email", "x"); }), "invalid_email");
    EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'login.failure'"), 3);
}

TEST_F(AuthTest, LockoutAfterMaxFailuresAndUnlockAfterTheLockoutPeriod) {
    make_user("olena@example.com", {"operator"});
    for (unsigned i = 0; i < options_.login_max_failures; ++i) {
        EXPECT_THROW(login("olena@example.com", "wrong password"), core::Unauthorized);
    }
    // Locked: even the right password is refused, with a retry hint.
    try {
        login("olena@example.com");
        FAIL() << "expected a lockout";
    } catch (const LoginThrottled& e) {
        EXPECT_EQ(e.code(), "locked");
        EXPECT_EQ(e.status(), 429);
        EXPECT_EQ(e.retry_after_seconds(), options_.login_lockout_minutes * 60);
    }
    EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'login.lockout' AND target = 'olena@example.com'"),
              1);
    clock_.advance_ms(options_.login_lockout_minutes * kMinute - 1000);
    EXPECT_THROW(login("olena@example.com"), LoginThrottled);
    clock_.advance_ms(1001);
    EXPECT_NO_THROW(login("olena@example.com"));
}

TEST_F(AuthTest, UnknownEmailsLockOutToo) {
    for (unsigned i = 0; i < options_.login_max_failures; ++i) {
        EXPECT_THROW(login("ghost@example.com", "wrong password"), core::Unauthorized);
    }
    EXPECT_THROW(login("ghost@example.com", "wrong password"), LoginThrottled);
}

TEST_F(AuthTest, FailuresOutsideTheWindowDoNotAccumulate) {
    make_user("olena@example.com", {"operator"});
    for (unsigned i = 0; i + 1 < options_.login_max_failures; ++i) {
        EXPECT_THROW(login("olena@example.com", "wrong password"), core::Unauthorized);
    }
    clock_.advance_ms(options_.login_window_minutes * kMinute + 1);
    EXPECT_THROW(login("olena@example.com", "wrong password"), core::Unauthorized);
    EXPECT_NO_THROW(login("olena@example.com"));
}

TEST_F(AuthTest, PerIpTokenBucket) {
    options_.ip_burst = 3;
    options_.ip_refill_per_minute = 1;
    rebuild();
    make_user("olena@example.com", {"operator"});
    for (int i = 0; i < 3; ++i) EXPECT_NO_THROW(login("olena@example.com", "correct horse", "10.9.9.9"));
    EXPECT_EQ(error_code_of<LoginThrottled>([&] { login("olena@example.com", "correct horse", "10.9.9.9"); }),
              "rate_limited");
    EXPECT_NO_THROW(login("olena@example.com", "correct horse", "10.9.9.10"));
    clock_.advance_ms(kMinute);
    EXPECT_NO_THROW(login("olena@example.com", "correct horse", "10.9.9.9"));
}

TEST_F(AuthTest, SessionsExpire) {
    make_user("olena@example.com", {"operator"});
    LoginResult r = login("olena@example.com");
    ASSERT_TRUE(principal_of(r.token));  // cached now
    clock_.advance_ms(options_.session_ttl_minutes * kMinute - 1);
    auth_->clear_cache();
    EXPECT_TRUE(principal_of(r.token));
    clock_.advance_ms(1);
    EXPECT_FALSE(principal_of(r.token));  // the cache never outlives the session
}

TEST_F(AuthTest, LogoutInvalidatesTheCache) {
    make_user("olena@example.com", {"operator"});
    LoginResult a = login("olena@example.com");
    LoginResult b = login("olena@example.com");
    auto p = principal_of(a.token);
    ASSERT_TRUE(p);
    ASSERT_TRUE(principal_of(b.token));
    EXPECT_EQ(auth_->cache_size_for_test(), 2u);
    run(auth_->logout(*p));
    EXPECT_FALSE(principal_of(a.token));
    EXPECT_TRUE(principal_of(b.token));  // other sessions stay
}

TEST_F(AuthTest, ApiTokensActAsTheirUser) {
    make_user("bot@example.com", {"integrator"});
    LoginResult session = login("bot@example.com");
    auto p = principal_of(session.token);
    ApiToken token = run(auth_->create_api_token(Caller{p.get(), "1.2.3.4"}, "CRM sync", 30));
    EXPECT_EQ(token.token.rfind("pat_", 0), 0u);
    EXPECT_EQ(count("SELECT COUNT(*) FROM auth_api_tokens WHERE token_hash = '" + token.token + "'"), 0);

    auto via_token = principal_of(token.token);
    ASSERT_TRUE(via_token);
    EXPECT_TRUE(via_token->via_api_token);
    EXPECT_EQ(via_token->user_id, p->user_id);
    EXPECT_TRUE(via_token->can("bots", core::Action::kEdit));
    store_->write_sync([](store::Tx&) {});  // flush the last-used write
    auto listed = auth_->list_api_tokens(*p);
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_TRUE(listed[0].last_used_at);
    EXPECT_TRUE(listed[0].token.empty());

    // Tokens cannot mint tokens.
    EXPECT_EQ(error_code_of<core::Forbidden>([&] { run(auth_->create_api_token(Caller{via_token.get(), ""}, "x", {})); }),
              "session_required");
    EXPECT_EQ(error_code_of<core::BadRequest>([&] { run(auth_->create_api_token(Caller{p.get(), ""}, "x", 0)); }),
              "invalid_expiry");

    // Expiry.
    clock_.advance_ms(30LL * 24 * 60 * kMinute);
    auth_->clear_cache();
    EXPECT_FALSE(principal_of(token.token));

    // Revocation.
    ApiToken second = run(auth_->create_api_token(Caller{p.get(), ""}, "second", {}));
    p = principal_of(login("bot@example.com").token);
    ASSERT_TRUE(principal_of(second.token));
    run(auth_->revoke_api_token(Caller{p.get(), ""}, second.id));
    EXPECT_FALSE(principal_of(second.token));
    EXPECT_EQ(error_code_of<core::NotFound>([&] { run(auth_->revoke_api_token(Caller{p.get(), ""}, second.id)); }),
              "token_not_found");
}

TEST_F(AuthTest, CustomRolesAndThePermissionUnion) {
    PermissionSet qa{"qa.view", "qa.edit", "stats.view"};
    Role role = run(auth_->create_role(Caller{&root_, ""}, "qa-lead", "QA leads", qa));
    EXPECT_FALSE(role.builtin);
    EXPECT_EQ(role.permissions, qa);
    make_user("olena@example.com", {"operator", "qa-lead"});
    LoginResult r = login("olena@example.com");
    auto p = principal_of(r.token);
    EXPECT_TRUE(p->can("qa", core::Action::kEdit));
    EXPECT_TRUE(p->can("operator", core::Action::kEdit));
    EXPECT_TRUE(p->can("stats", core::Action::kView));
    EXPECT_FALSE(p->can("qa", core::Action::kDelete));

    // Changing the role reaches signed-in holders at once.
    run(auth_->update_role(Caller{&root_, ""}, "qa-lead", std::nullopt, PermissionSet{"qa.view"}));
    p = principal_of(r.token);
    EXPECT_FALSE(p->can("qa", core::Action::kEdit));
    EXPECT_TRUE(p->can("qa", core::Action::kView));

    EXPECT_EQ(error_code_of<core::Conflict>([&] { run(auth_->create_role(Caller{&root_, ""}, "qa-lead", "", {})); }),
              "role_exists");
    EXPECT_EQ(error_code_of<core::BadRequest>([&] { run(auth_->create_role(Caller{&root_, ""}, "QA Lead", "", {})); }),
              "invalid_name");
    EXPECT_EQ(error_code_of<core::Conflict>([&] { run(auth_->delete_role(Caller{&root_, ""}, "qa-lead")); }),
              "role_in_use");
    EXPECT_EQ(error_code_of<core::Conflict>([&] { run(auth_->delete_role(Caller{&root_, ""}, "operator")); }),
              "builtin_role");
    EXPECT_EQ(error_code_of<core::Conflict>(
                  [&] { run(auth_->update_role(Caller{&root_, ""}, "administrator", std::nullopt, {})); }),
              "builtin_role");
    EXPECT_EQ(error_code_of<core::NotFound>([&] { run(auth_->delete_role(Caller{&root_, ""}, "ghost")); }),
              "role_not_found");

    run(auth_->create_role(Caller{&root_, ""}, "temp", "", {}));
    run(auth_->delete_role(Caller{&root_, ""}, "temp"));
    EXPECT_THROW(auth_->get_role("temp"), core::NotFound);
    EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'role.%'"), 4);
}

TEST_F(AuthTest, BuiltinRolesAreSeeded) {
    auto roles = auth_->list_roles();
    ASSERT_GE(roles.size(), 5u);
    for (const auto& builtin : builtin_roles()) {
        Role role = auth_->get_role(builtin.name);
        EXPECT_TRUE(role.builtin);
        EXPECT_EQ(role.permissions, builtin.defaults) << builtin.name;
    }
    EXPECT_EQ(auth_->get_role("administrator").users, 1);
}

TEST_F(AuthTest, NobodyGrantsRightsTheyLack) {
    run(auth_->create_role(Caller{&root_, ""}, "user-admin", "", PermissionSet{"users.view", "users.edit", "operator.view"}));
    make_user("lead@example.com", {"user-admin"});
    auto lead = principal_of(login("lead@example.com").token);
    NewUser u{"x@example.com", "X", "password123", {"administrator"}};
    EXPECT_EQ(error_code_of<core::Forbidden>([&] { run(auth_->create_user(Caller{lead.get(), ""}, u)); }),
              "cannot_grant");
    u.roles = {"user-admin"};
    EXPECT_NO_THROW(run(auth_->create_user(Caller{lead.get(), ""}, u)));
}

TEST_F(AuthTest, UsersAreValidatedAndEmailsUnique) {
    Caller root{&root_, ""};
    NewUser u{" Olena@Example.com ", "Olena", "password123", {"operator"}, "uk"};
    User created = run(auth_->create_user(root, u));
    EXPECT_EQ(created.email, "olena@example.com");
    EXPECT_EQ(created.language, "uk");
    EXPECT_EQ(created.roles, std::vector<std::string>{"operator"});
    EXPECT_EQ(error_code_of<core::Conflict>([&] { run(auth_->create_user(root, u)); }), "email_taken");
    auto bad = [&](NewUser v) {
        try {
            run(auth_->create_user(root, v));
        } catch (const core::BadRequest& e) {
            return e.code();
        }
        return std::string("<ok>");
    };
    EXPECT_EQ(bad({"new@example.com", "N", "short", {}}), "invalid_password");
    EXPECT_EQ(bad({"new@example.com", "N", std::string(257, 'x'), {}}), "invalid_password");
    EXPECT_EQ(bad({"nope", "N", "password123", {}}), "invalid_email");
    EXPECT_EQ(bad({"new@example.com", "  ", "password123", {}}), "invalid_name");
    EXPECT_EQ(bad({"new@example.com", "N", "password123", {"pilot"}}), "unknown_role");
    EXPECT_EQ(bad({"new@example.com", "N", "password123", {}, "english!"}), "invalid_language");
    EXPECT_EQ(count("SELECT COUNT(*) FROM auth_users"), 2);  // root + olena: bad input changed nothing
}

TEST_F(AuthTest, ListUsersFiltersAndPages) {
    for (int i = 0; i < 5; ++i) make_user("op" + std::to_string(i) + "@example.com", {"operator"});
    make_user("sam@example.com", {"supervisor"});
    UserQuery q;
    q.role = "operator";
    q.limit = 2;
    UserPage page = auth_->list_users(q);
    ASSERT_EQ(page.items.size(), 2u);
    ASSERT_TRUE(page.next_cursor);
    std::size_t total = page.items.size();
    while (page.next_cursor) {
        q.cursor = page.next_cursor;
        page = auth_->list_users(q);
        total += page.items.size();
    }
    EXPECT_EQ(total, 5u);
    UserQuery search;
    search.q = "SAM";
    EXPECT_EQ(auth_->list_users(search).items.size(), 1u);
    search.q = "%";
    EXPECT_EQ(auth_->list_users(search).items.size(), 0u);
    UserQuery inactive;
    inactive.active = false;
    EXPECT_EQ(auth_->list_users(inactive).items.size(), 0u);
}

TEST_F(AuthTest, PasswordChangeNeedsTheOldPasswordAndEndsOtherSessions) {
    make_user("olena@example.com", {"operator"});
    LoginResult a = login("olena@example.com");
    LoginResult b = login("olena@example.com");
    auto pa = principal_of(a.token);
    ASSERT_TRUE(principal_of(b.token));
    Caller caller{pa.get(), ""};
    EXPECT_EQ(error_code_of<core::BadRequest>(
                  [&] { run(auth_->update_me(caller, {}, {}, std::string("new password 1"), {})); }),
              "missing_field");
    EXPECT_EQ(error_code_of<core::Forbidden>([&] {
                  run(auth_->update_me(caller, {}, {}, std::string("new password 1"), std::string("wrong one")));
              }),
              "wrong_password");
    EXPECT_EQ(error_code_of<core::BadRequest>([&] {
                  run(auth_->update_me(caller, {}, {}, std::string("short"), std::string("correct horse")));
              }),
              "invalid_password");
    run(auth_->update_me(caller, std::string("Olena K"), std::string("uk"), std::string("new password 1"),
                         std::string("correct horse")));
    EXPECT_TRUE(principal_of(a.token));
    EXPECT_FALSE(principal_of(b.token));
    EXPECT_EQ(principal_of(a.token)->name, "Olena K");
    EXPECT_THROW(login("olena@example.com"), core::Unauthorized);
    EXPECT_NO_THROW(login("olena@example.com", "new password 1"));
    EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'password.change'"), 1);
}

TEST_F(AuthTest, DeactivationEndsSessionsAndTheLastAdministratorStays) {
    User u = make_user("olena@example.com", {"operator"});
    LoginResult r = login("olena@example.com");
    ASSERT_TRUE(principal_of(r.token));
    run(auth_->deactivate_user(Caller{&root_, ""}, u.id));
    EXPECT_FALSE(principal_of(r.token));
    EXPECT_FALSE(auth_->get_user(u.id).active);
    EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'user.deactivate'"), 1);

    // Root cannot deactivate itself; another admin cannot remove the last administrator.
    EXPECT_EQ(error_code_of<core::Conflict>([&] { run(auth_->deactivate_user(Caller{&root_, ""}, root_.user_id)); }),
              "cannot_deactivate_self");
    User other = make_user("admin2@example.com", {"administrator"});
    auto admin2 = principal_of(login("admin2@example.com").token);
    run(auth_->deactivate_user(Caller{admin2.get(), ""}, root_.user_id));
    UserPatch demote;
    demote.roles = std::vector<std::string>{"operator"};
    EXPECT_EQ(error_code_of<core::Conflict>([&] { run(auth_->update_user(Caller{&root_, ""}, other.id, demote)); }),
              "last_administrator");
    EXPECT_EQ(auth_->get_user(other.id).roles, std::vector<std::string>{"administrator"});
}

TEST_F(AuthTest, RoleChangeOnAUserReachesTheirSessions) {
    User u = make_user("olena@example.com", {"operator"});
    LoginResult r = login("olena@example.com");
    EXPECT_FALSE(principal_of(r.token)->can("stats", core::Action::kView));
    UserPatch patch;
    patch.roles = std::vector<std::string>{"operator", "analyst"};
    User after = run(auth_->update_user(Caller{&root_, ""}, u.id, patch));
    EXPECT_EQ(after.roles, (std::vector<std::string>{"analyst", "operator"}));
    EXPECT_TRUE(principal_of(r.token)->can("stats", core::Action::kView));
}

std::string token_from_mail(const std::string& body) {
    auto at = body.find("token=");
    return at == std::string::npos ? std::string() : body.substr(at + 6, 64);
}

TEST_F(AuthTest, PasswordResetFlow) {
    make_user("olena@example.com", {"operator"});
    LoginResult before = login("olena@example.com");
    ASSERT_TRUE(principal_of(before.token));

    run(auth_->request_password_reset("Olena@example.com", "10.0.0.5"));
    run(auth_->request_password_reset("ghost@example.com", "10.0.0.5"));  // same answer: no exception
    EXPECT_EQ(count("SELECT COUNT(*) FROM outbound_mail"), 1);
    auto mail = read_value(*store_, [](store::Tx& tx) {
        return *tx.query_one("SELECT to_address, subject, body, status FROM outbound_mail");
    });
    EXPECT_EQ(mail.text(0), "olena@example.com");
    EXPECT_EQ(mail.text(3), "queued");
    EXPECT_NE(mail.text(2).find("https://parley.example/reset-password?token="), std::string::npos);
    std::string token = token_from_mail(mail.text(2));
    ASSERT_EQ(token.size(), 64u);
    EXPECT_EQ(count("SELECT COUNT(*) FROM auth_reset_tokens WHERE token_hash = '" + token + "'"), 0);  // hashed

    EXPECT_EQ(error_code_of<core::BadRequest>(
                  [&] { run(auth_->confirm_password_reset(token, "short", "10.0.0.5")); }),
              "invalid_password");
    run(auth_->confirm_password_reset(token, "brand new pass", "10.0.0.5"));
    EXPECT_FALSE(principal_of(before.token));  // sessions ended
    EXPECT_NO_THROW(login("olena@example.com", "brand new pass"));
    EXPECT_EQ(error_code_of<core::BadRequest>(
                  [&] { run(auth_->confirm_password_reset(token, "another pass 2", "10.0.0.5")); }),
              "invalid_token");  // single use
    EXPECT_EQ(error_code_of<core::BadRequest>(
                  [&] { run(auth_->confirm_password_reset(std::string(64, '0'), "another pass 2", "")); }),
              "invalid_token");
    EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'password_reset.request'"), 2);
    EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'password_reset.complete'"), 1);
}

TEST_F(AuthTest, ResetTokensExpire) {
    make_user("olena@example.com", {"operator"});
    run(auth_->request_password_reset("olena@example.com", ""));
    std::string token = token_from_mail(read_value(
        *store_, [](store::Tx& tx) { return tx.query_one("SELECT body FROM outbound_mail")->text(0); }));
    clock_.advance_ms(options_.reset_token_ttl_minutes * kMinute);
    EXPECT_EQ(error_code_of<core::BadRequest>([&] { run(auth_->confirm_password_reset(token, "brand new pass", "")); }),
              "invalid_token");
    EXPECT_NO_THROW(login("olena@example.com"));
}

TEST_F(AuthTest, RecoveryCanBeDisabledButAdminLinksStillWork) {
    User u = make_user("olena@example.com", {"operator"});
    run(settings_->set("password_recovery_enabled", false, false, &root_, ""));
    EXPECT_EQ(error_code_of<core::Forbidden>([&] { run(auth_->request_password_reset("olena@example.com", "")); }),
              "password_recovery_disabled");
    ResetLink link = run(auth_->generate_reset_link(Caller{&root_, ""}, u.id));
    EXPECT_EQ(link.link.rfind("https://parley.example/reset-password?token=", 0), 0u);
    EXPECT_EQ(link.expires_at, clock_.now_ms() + options_.reset_token_ttl_minutes * kMinute);
    std::string token = link.link.substr(link.link.find("token=") + 6);
    run(auth_->confirm_password_reset(token, "brand new pass", ""));
    EXPECT_NO_THROW(login("olena@example.com", "brand new pass"));
    EXPECT_THROW(run(auth_->generate_reset_link(Caller{&root_, ""}, "01ARZ3NDEKTSV4RRFFQ69G5FAV")), core::NotFound);
}

TEST_F(AuthTest, EnsureAdminOnlyOnAnEmptyInstance) {
    EXPECT_FALSE(auth_->ensure_admin("other@example.com", "whatever123"));  // root exists
    auto dir2 = dir_ / "second";
    std::filesystem::create_directories(dir2);
    store::StoreOptions o;
    o.path = (dir2 / "db").string();
    o.durable = false;
    auto store2 = store::Store::open_sqlite(o, migrations());
    SettingsService settings2(*store2, clock_, load_or_create_secret_key(dir2.string()));
    AuthService auth2(*store2, clock_, settings2, options_);
    auto generated = auth2.ensure_admin("", "");
    ASSERT_TRUE(generated);
    EXPECT_GE(generated->size(), kMinPasswordBytes);
    EXPECT_NO_THROW(boost::asio::co_spawn(io_, auth2.login("admin@localhost", *generated, "1.1.1.1"),
                                          boost::asio::use_future)
                        .get());
    EXPECT_FALSE(auth2.ensure_admin("", ""));
    store2->close();
}

TEST_F(AuthTest, AuditLogListsNewestFirstWithFilters) {
    User olena = make_user("olena@example.com", {"operator"});
    EXPECT_THROW(login("olena@example.com", "nope nope"), core::Unauthorized);
    AuditQuery q;
    auto all = list_audit(*store_, q);
    ASSERT_GE(all.items.size(), 3u);
    for (std::size_t i = 1; i < all.items.size(); ++i) EXPECT_GT(all.items[i - 1].id, all.items[i].id);
    q.action = "user.";
    auto users = list_audit(*store_, q);
    ASSERT_EQ(users.items.size(), 2u);  // bootstrap + olena
    for (const auto& e : users.items) {
        if (e.target != olena.id) continue;
        EXPECT_EQ(e.actor_id, root_.user_id);
        EXPECT_EQ(e.details.at("email"), "olena@example.com");
    }
    q = {};
    q.actor = "root@example.com";
    EXPECT_EQ(list_audit(*store_, q).items.size(), 1u);  // the bootstrap entry has no actor
    q = {};
    q.limit = 1;
    std::size_t seen = 0;
    for (auto page = list_audit(*store_, q);; page = list_audit(*store_, q)) {
        seen += page.items.size();
        if (!page.next_cursor) break;
        q.cursor = page.next_cursor;
    }
    EXPECT_EQ(seen, all.items.size());
}

}  // namespace
}  // namespace parley::auth
