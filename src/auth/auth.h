/// The auth module's public face: users, roles and permissions, bearer sessions, API tokens, login throttling,
/// the password-reset flow, and the HTTP routes over them. `app` builds one SettingsService and one AuthService,
/// passes `migrations()` to the store, `register_routes` to the router and `authenticator()` to the server.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "auth/audit.h"
#include "auth/permissions.h"
#include "auth/settings.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/error.h"
#include "core/principal.h"
#include "http/http.h"
#include "store/store.h"

namespace boost::asio {
class thread_pool;
}

namespace parley::auth {

namespace internal {
class PasswordHasher;
class TokenBucketLimiter;
}  // namespace internal

/// The module's schema (module "auth"): users, roles, role permissions, user roles, sessions, API tokens,
/// login throttle, reset tokens, audit log, instance settings, outbound mail; then the built-in roles.
std::vector<store::Migration> migrations();

/// A 429 that tells the client when to retry (the login route adds `Retry-After`).
class LoginThrottled : public core::RateLimited {
public:
    LoginThrottled(const std::string& message, std::string code, std::int64_t retry_after_seconds)
        : core::RateLimited(message, std::move(code)), retry_after_seconds_(retry_after_seconds) {}
    std::int64_t retry_after_seconds() const { return retry_after_seconds_; }

private:
    std::int64_t retry_after_seconds_;
};

struct AuthOptions {
    std::int64_t session_ttl_minutes = 12 * 60;
    unsigned login_max_failures = 5;
    std::int64_t login_window_minutes = 15;
    std::int64_t login_lockout_minutes = 15;
    std::int64_t reset_token_ttl_minutes = 60;
    std::string base_url = "http://127.0.0.1:8080";  ///< reset links point to {base_url}/reset-password
    /// argon2id cost; 0 selects libsodium's OPSLIMIT/MEMLIMIT_INTERACTIVE. Tests pass the minimums.
    unsigned long long password_opslimit = 0;
    std::size_t password_memlimit = 0;
    /// How long an authenticated token's principal is served from memory before the store is asked again
    /// (bounds how stale another node's logout or role change can be; local changes invalidate at once).
    std::int64_t principal_cache_ttl_ms = 10'000;
    /// Per-IP token bucket for login and password-reset requests: burst size and refill per minute.
    double ip_burst = 20;
    double ip_refill_per_minute = 20;

    static AuthOptions from_config(const core::Config& config);
};

/// Password policy: 8 to 256 bytes.
inline constexpr std::size_t kMinPasswordBytes = 8;
inline constexpr std::size_t kMaxPasswordBytes = 256;

/// A staff account as the API shows it (never with its password hash).
struct User {
    std::string id;
    std::string email;
    std::string name;
    std::string language;
    std::vector<std::string> roles;
    bool active = true;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
};
boost::json::object user_to_json(const User& user);

struct Role {
    std::string name;
    bool builtin = false;
    std::string description;
    PermissionSet permissions;
    std::int64_t users = 0;  ///< how many users hold it
};
boost::json::object role_to_json(const Role& role);

/// Who performs a change, for permission checks and the audit log.
struct Caller {
    const core::Principal* principal = nullptr;  ///< null for anonymous flows (login, password reset)
    std::string ip;
};

struct LoginResult {
    std::string token;
    User user;
    std::int64_t expires_at = 0;
};

struct NewUser {
    std::string email;
    std::string name;
    std::string password;
    std::vector<std::string> roles;
    std::string language = "en";
};

struct UserPatch {
    std::optional<std::string> name;
    std::optional<std::string> language;
    std::optional<std::vector<std::string>> roles;
    std::optional<bool> active;
};

struct UserQuery {
    std::optional<std::string> q;  ///< substring of e-mail or name
    std::optional<std::string> role;
    std::optional<bool> active;
    std::optional<std::string> cursor;
    std::size_t limit = 50;
};

struct UserPage {
    std::vector<User> items;
    std::optional<std::string> next_cursor;
};

struct ApiToken {
    std::string id;
    std::string name;
    std::int64_t created_at = 0;
    std::optional<std::int64_t> expires_at;
    std::optional<std::int64_t> last_used_at;
    std::string token;  ///< the secret, only right after creation
};
boost::json::object api_token_to_json(const ApiToken& token);

struct ResetLink {
    std::string link;
    std::int64_t expires_at = 0;
};

/// Users, roles, sessions, API tokens, login throttling and password reset.
///
/// Thread-safety: every method may be called concurrently from the HTTP worker threads. State in memory is the
/// principal cache (token hash → principal, guarded by a shared_mutex, with a generation counter so a lookup
/// racing an invalidation never re-inserts a stale principal) and the per-IP limiter (its own mutex); everything
/// else lives in the store. Methods that change data are coroutines that await store::co_write, so a worker
/// never blocks on an fsync. Argon2id hashing/verification (login, password changes, user creation, resets; ~50 ms
/// of CPU at the INTERACTIVE cost) runs on a small pool of its own and is awaited, so it never stalls the other
/// connections of the calling thread.
class AuthService {
public:
    AuthService(store::Store& store, const core::Clock& clock, SettingsService& settings, AuthOptions options);
    ~AuthService();
    AuthService(const AuthService&) = delete;
    AuthService& operator=(const AuthService&) = delete;

    // --- authentication --------------------------------------------------------------------------------------

    /// Verifies credentials and opens a session. Throws Unauthorized `invalid_credentials` (same answer for an
    /// unknown e-mail, a wrong password and a deactivated account), LoginThrottled `locked` while the e-mail is
    /// locked out, LoginThrottled `rate_limited` when the IP exceeds its budget.
    boost::asio::awaitable<LoginResult> login(std::string email, std::string password, std::string ip);

    /// Ends the session (or revokes nothing for an API token: revoke tokens with revoke_api_token).
    boost::asio::awaitable<void> logout(const core::Principal& principal);

    /// The http::Authenticator: resolves `Authorization: Bearer <session token | pat_...>`. Served from the
    /// principal cache on the hot path (one SHA-256 and a hash lookup).
    std::optional<std::shared_ptr<const core::Principal>> authenticate(const http::Request& request);
    std::optional<std::shared_ptr<const core::Principal>> authenticate_token(std::string_view token);
    http::Authenticator authenticator();

    // --- the signed-in user ------------------------------------------------------------------------------------

    User me(const core::Principal& principal);
    /// Changes name/language and, with the right current password, the password (which ends every other
    /// session of the user). Throws BadRequest `invalid_password` / Forbidden `wrong_password`.
    boost::asio::awaitable<User> update_me(Caller caller, std::optional<std::string> name,
                                           std::optional<std::string> language,
                                           std::optional<std::string> new_password,
                                           std::optional<std::string> current_password);

    // --- users -------------------------------------------------------------------------------------------------

    /// Throws BadRequest (invalid e-mail, password policy, unknown role), Conflict `email_taken`, Forbidden
    /// `cannot_grant` when a role carries rights the caller lacks.
    boost::asio::awaitable<User> create_user(Caller caller, NewUser user);
    UserPage list_users(const UserQuery& query);
    User get_user(std::string_view id);  ///< NotFound
    boost::asio::awaitable<User> update_user(Caller caller, std::string id, UserPatch patch);
    /// Deactivates (never deletes: audit entries keep pointing at the user) and ends the user's sessions.
    boost::asio::awaitable<void> deactivate_user(Caller caller, std::string id);

    // --- roles -------------------------------------------------------------------------------------------------

    std::vector<Role> list_roles();
    Role get_role(std::string_view name);  ///< NotFound
    boost::asio::awaitable<Role> create_role(Caller caller, std::string name, std::string description,
                                             PermissionSet permissions);
    /// Replaces a role's grants (the administrator role is fixed: Conflict `builtin_role`).
    boost::asio::awaitable<Role> update_role(Caller caller, std::string name, std::optional<std::string> description,
                                             PermissionSet permissions);
    /// Deletes a custom role; Conflict `builtin_role` for built-ins, `role_in_use` while users hold it.
    boost::asio::awaitable<void> delete_role(Caller caller, std::string name);

    // --- API tokens --------------------------------------------------------------------------------------------

    boost::asio::awaitable<ApiToken> create_api_token(Caller caller, std::string name,
                                                      std::optional<std::int64_t> expires_in_days);
    std::vector<ApiToken> list_api_tokens(const core::Principal& principal);
    boost::asio::awaitable<void> revoke_api_token(Caller caller, std::string id);

    // --- password reset ----------------------------------------------------------------------------------------

    /// Queues a reset e-mail when the address belongs to an active user; does the same amount of work and
    /// answers the same either way. Throws Forbidden `password_recovery_disabled` when the instance setting
    /// `password_recovery_enabled` is false, LoginThrottled `rate_limited` over the IP budget.
    boost::asio::awaitable<void> request_password_reset(std::string email, std::string ip);
    /// Sets the new password, burns the token, ends every session of the user. BadRequest `invalid_token`.
    boost::asio::awaitable<void> confirm_password_reset(std::string token, std::string password, std::string ip);
    /// "Generate a reset link manually" (administrators). Works even when recovery by e-mail is disabled.
    boost::asio::awaitable<ResetLink> generate_reset_link(Caller caller, std::string user_id);

    // --- bootstrap ---------------------------------------------------------------------------------------------

    /// When no user exists: creates an administrator with `email` (default "admin@localhost") and `password`,
    /// or a generated password that is returned so the caller prints it once. Blocking (write_sync): call it from
    /// main before the server starts, never from a worker.
    std::optional<std::string> ensure_admin(std::string email, std::string password);

    store::Store& store() { return store_; }
    SettingsService& settings() { return settings_; }
    const core::Clock& clock() const { return clock_; }

    /// Drops every cached principal (tests, and after changes made outside this service).
    void clear_cache();
    std::size_t cache_size_for_test() const;

private:
    struct CacheEntry {
        std::shared_ptr<const core::Principal> principal;
        std::int64_t valid_until;  // min(cache TTL, session/token expiry)
    };

    std::optional<std::shared_ptr<const core::Principal>> load_principal(const std::string& token_hash,
                                                                         bool api_token, std::int64_t now,
                                                                         std::int64_t* valid_until);
    void invalidate_user(const std::string& user_id);
    void invalidate_token(const std::string& token_hash);
    void invalidate_all();
    void check_ip_budget(const std::string& ip);
    void ensure_can_grant(const Caller& caller, const std::vector<std::string>& roles);
    void validate_password(std::string_view password) const;
    std::string hash_password(std::string_view password) const;

    store::Store& store_;
    const core::Clock& clock_;
    SettingsService& settings_;
    AuthOptions options_;
    std::unique_ptr<internal::PasswordHasher> hasher_;
    std::unique_ptr<boost::asio::thread_pool> hash_pool_;  ///< argon2 work off the connection threads
    std::unique_ptr<internal::TokenBucketLimiter> ip_limiter_;

    mutable std::shared_mutex cache_mutex_;
    std::unordered_map<std::string, CacheEntry> cache_;  // token hash → entry; guarded by cache_mutex_
    std::uint64_t generation_ = 0;                        // bumped by every invalidation; guarded by cache_mutex_
    std::mutex last_used_mutex_;
    std::unordered_map<std::string, std::int64_t> last_used_written_;  // api token id → ms; guarded
};

/// Registers every auth route (login, logout, me, users, roles, permissions, API tokens, password reset,
/// audit, settings) with its access rule.
void register_routes(http::Router& router, AuthService& auth);

}  // namespace parley::auth
