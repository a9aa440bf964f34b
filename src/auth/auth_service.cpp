#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/thread_pool.hpp>
#include <boost/json.hpp>

#include "auth/auth.h"
#include "auth/internal/crypto.h"
#include "auth/internal/rate_limit.h"
#include "auth/internal/validate.h"
#include "core/ids.h"
#include "asio/offload.h"
#include "store/async.h"

namespace parley::auth {

namespace json = boost::json;
using internal::sha256_hex;

namespace {

constexpr std::int64_t kMinuteMs = 60'000;
constexpr std::size_t kMaxCacheEntries = 200'000;
constexpr std::string_view kApiTokenPrefix = "pat_";
constexpr int kMaxResetMailsPerHour = 5;

json::array field_detail(std::string_view field) { return json::array{json::object{{"field", field}}}; }

std::string require_email(std::string_view raw) {
    auto email = internal::normalize_email(raw);
    if (!email) throw core::BadRequest("'email' is not a valid e-mail address", "invalid_email", field_detail("email"));
    return *email;
}

std::string require_name(std::string_view raw) {
    auto name = internal::normalize_name(raw);
    if (!name) {
        throw core::BadRequest("'name' must be 1 to 200 characters without control characters", "invalid_name",
                               field_detail("name"));
    }
    return *name;
}

void require_language(std::string_view tag) {
    if (!internal::is_valid_language(tag)) {
        throw core::BadRequest("'language' must be a language tag such as \"en\" or \"uk\"", "invalid_language",
                               field_detail("language"));
    }
}

std::vector<std::string> user_roles(store::Tx& tx, const std::string& user_id) {
    std::vector<std::string> roles;
    for (const auto& row : tx.query("SELECT role FROM auth_user_roles WHERE user_id = ? ORDER BY role", {user_id})) {
        roles.push_back(row.text(0));
    }
    return roles;
}

constexpr const char* kUserColumns = "id, email, name, language, active, created_at, updated_at";

User user_from_row(store::Tx& tx, const store::Row& row) {
    User u;
    u.id = row.text(0);
    u.email = row.text(1);
    u.name = row.text(2);
    u.language = row.text(3);
    u.active = row.integer(4) != 0;
    u.created_at = row.integer(5);
    u.updated_at = row.integer(6);
    u.roles = user_roles(tx, u.id);
    return u;
}

std::optional<User> find_user(store::Tx& tx, const std::string& id) {
    auto row = tx.query_one(fmt::format("SELECT {} FROM auth_users WHERE id = ?", kUserColumns), {id});
    if (!row) return std::nullopt;
    return user_from_row(tx, *row);
}

PermissionSet role_permissions(store::Tx& tx, const std::string& role) {
    if (role == kRoleAdministrator) return all_permissions();
    PermissionSet out;
    for (const auto& row : tx.query("SELECT module, action FROM auth_role_permissions WHERE role = ?", {role})) {
        out.insert(row.text(0) + "." + row.text(1));
    }
    return out;
}

// The principal of an active user: the union of their roles' grants. nullopt for a missing or inactive user.
std::optional<core::Principal> build_principal(store::Tx& tx, const std::string& user_id) {
    auto row = tx.query_one("SELECT id, email, name, language, active FROM auth_users WHERE id = ?", {user_id});
    if (!row || row->integer(4) == 0) return std::nullopt;
    core::Principal p;
    p.user_id = row->text(0);
    p.email = row->text(1);
    p.name = row->text(2);
    p.language = row->text(3);
    p.roles = user_roles(tx, p.user_id);
    for (const auto& role : p.roles) {
        for (auto& permission : role_permissions(tx, role)) p.permissions.insert(permission);
    }
    return p;
}

bool role_exists(store::Tx& tx, const std::string& name) {
    return tx.query_one("SELECT 1 FROM auth_roles WHERE name = ?", {name}).has_value();
}

void write_permissions(store::Tx& tx, const std::string& role, const PermissionSet& permissions) {
    tx.exec("DELETE FROM auth_role_permissions WHERE role = ?", {role});
    for (const auto& permission : permissions) {
        auto dot = permission.find('.');
        tx.exec("INSERT INTO auth_role_permissions(role, module, action) VALUES (?, ?, ?)",
                {role, permission.substr(0, dot), permission.substr(dot + 1)});
    }
}

json::array to_json_array(const std::vector<std::string>& items) {
    json::array out;
    for (const auto& s : items) out.emplace_back(s);
    return out;
}

json::array to_json_array(const PermissionSet& items) {
    json::array out;
    for (const auto& s : items) out.emplace_back(s);
    return out;
}

std::int64_t active_administrators_except(store::Tx& tx, const std::string& user_id) {
    auto row = tx.query_one(
        "SELECT COUNT(*) FROM auth_users u JOIN auth_user_roles r ON r.user_id = u.id "
        "WHERE r.role = ? AND u.active = 1 AND u.id <> ?",
        {std::string(kRoleAdministrator), user_id});
    return row ? row->integer(0) : 0;
}

std::string like_pattern(std::string_view text) {
    std::string out = "%";
    for (char c : text) {
        if (c == '%' || c == '_' || c == '\\') out.push_back('\\');
        out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
    }
    out.push_back('%');
    return out;
}

struct ResetMail {
    std::string subject;
    std::string body;
};

ResetMail reset_mail(const std::string& language, const std::string& name, const std::string& link,
                     std::int64_t ttl_minutes) {
    if (language.rfind("uk", 0) == 0) {
        return {"Відновлення пароля",
                fmt::format("Вітаємо, {}!\n\nЩоб встановити новий пароль, перейдіть за посиланням:\n{}\n\n"
                            "Посилання дійсне {} хв і спрацює один раз. Якщо ви не просили скинути пароль, "
                            "просто проігноруйте цей лист.\n",
                            name, link, ttl_minutes)};
    }
    return {"Password reset",
            fmt::format("Hello {},\n\nTo set a new password, open this link:\n{}\n\n"
                        "The link is valid for {} minutes and works once. If you did not ask to reset your "
                        "password, ignore this e-mail.\n",
                        name, link, ttl_minutes)};
}

}  // namespace

// --- JSON forms -----------------------------------------------------------------------------------------------

boost::json::object user_to_json(const User& user) {
    return json::object{{"id", user.id},
                        {"email", user.email},
                        {"name", user.name},
                        {"language", user.language},
                        {"roles", to_json_array(user.roles)},
                        {"active", user.active},
                        {"created_at", core::format_time(user.created_at)},
                        {"updated_at", core::format_time(user.updated_at)}};
}

boost::json::object role_to_json(const Role& role) {
    return json::object{{"name", role.name},
                        {"builtin", role.builtin},
                        {"description", role.description},
                        {"permissions", permissions_to_json(role.permissions)},
                        {"users", role.users}};
}

boost::json::object api_token_to_json(const ApiToken& token) {
    json::object out{{"id", token.id}, {"name", token.name}, {"created_at", core::format_time(token.created_at)}};
    out["expires_at"] = token.expires_at ? json::value(core::format_time(*token.expires_at)) : json::value(nullptr);
    out["last_used_at"] =
        token.last_used_at ? json::value(core::format_time(*token.last_used_at)) : json::value(nullptr);
    if (!token.token.empty()) out["token"] = token.token;
    return out;
}

AuthOptions AuthOptions::from_config(const core::Config& config) {
    AuthOptions o;
    o.session_ttl_minutes = config.session_ttl_minutes;
    o.login_max_failures = config.login_max_failures;
    o.login_window_minutes = config.login_window_minutes;
    o.login_lockout_minutes = config.login_lockout_minutes;
    o.reset_token_ttl_minutes = config.reset_token_ttl_minutes;
    o.base_url = config.base_url();
    return o;
}

// --- construction ---------------------------------------------------------------------------------------------

AuthService::AuthService(store::Store& store, const core::Clock& clock, SettingsService& settings,
                         AuthOptions options)
    : store_(store), clock_(clock), settings_(settings), options_(std::move(options)) {
    internal::PasswordCost cost = internal::PasswordCost::interactive();
    if (options_.password_opslimit) cost.opslimit = options_.password_opslimit;
    if (options_.password_memlimit) cost.memlimit = options_.password_memlimit;
    hasher_ = std::make_unique<internal::PasswordHasher>(cost);
    // Two threads: argon2id at the INTERACTIVE cost takes 64 MiB each, so concurrency is capped on purpose.
    hash_pool_ = std::make_unique<boost::asio::thread_pool>(2);
    ip_limiter_ = std::make_unique<internal::TokenBucketLimiter>(options_.ip_burst, options_.ip_refill_per_minute);
    while (!options_.base_url.empty() && options_.base_url.back() == '/') options_.base_url.pop_back();
}

AuthService::~AuthService() {
    if (hash_pool_) hash_pool_->join();
}

void AuthService::validate_password(std::string_view password) const {
    if (password.size() < kMinPasswordBytes || password.size() > kMaxPasswordBytes) {
        throw core::BadRequest(
            fmt::format("the password must be {} to {} bytes long", kMinPasswordBytes, kMaxPasswordBytes),
            "invalid_password", field_detail("password"));
    }
}

std::string AuthService::hash_password(std::string_view password) const { return hasher_->hash(password); }

void AuthService::check_ip_budget(const std::string& ip) {
    if (auto wait = ip_limiter_->acquire(ip, clock_.now_ms()); wait > 0) {
        throw LoginThrottled("too many attempts from this address; try again later", "rate_limited", wait);
    }
}

void AuthService::ensure_can_grant(const Caller& caller, const std::vector<std::string>& roles) {
    if (!caller.principal || caller.principal->has_role(kRoleAdministrator)) return;
    PermissionSet wanted;
    store_.read([&](store::Tx& tx) {
        for (const auto& role : roles) {
            for (auto& p : role_permissions(tx, role)) wanted.insert(p);
        }
    });
    for (const auto& p : wanted) {
        if (!caller.principal->permissions.count(p)) {
            throw core::Forbidden(fmt::format("you cannot grant '{}', which you do not hold yourself", p),
                                  "cannot_grant");
        }
    }
}

// --- principal cache ------------------------------------------------------------------------------------------

void AuthService::invalidate_user(const std::string& user_id) {
    std::unique_lock lock(cache_mutex_);
    ++generation_;
    std::erase_if(cache_, [&](const auto& kv) { return kv.second.principal->user_id == user_id; });
}

void AuthService::invalidate_token(const std::string& token_hash) {
    std::unique_lock lock(cache_mutex_);
    ++generation_;
    cache_.erase(token_hash);
}

void AuthService::invalidate_all() {
    std::unique_lock lock(cache_mutex_);
    ++generation_;
    cache_.clear();
}

void AuthService::clear_cache() { invalidate_all(); }

std::size_t AuthService::cache_size_for_test() const {
    std::shared_lock lock(cache_mutex_);
    return cache_.size();
}

std::optional<std::shared_ptr<const core::Principal>> AuthService::load_principal(const std::string& token_hash,
                                                                                   bool api_token, std::int64_t now,
                                                                                   std::int64_t* valid_until) {
    std::optional<core::Principal> principal;
    std::optional<std::string> used_token_id;
    store_.read([&](store::Tx& tx) {
        std::optional<store::Row> row;
        if (api_token) {
            row = tx.query_one("SELECT id, user_id, expires_at FROM auth_api_tokens WHERE token_hash = ?",
                               {token_hash});
        } else {
            row = tx.query_one("SELECT id, user_id, expires_at FROM auth_sessions WHERE token_hash = ?",
                               {token_hash});
        }
        if (!row) return;
        auto expires = row->opt_integer(2);
        if (expires && *expires <= now) return;
        principal = build_principal(tx, row->text(1));
        if (!principal) return;
        principal->session_id = row->text(0);
        principal->via_api_token = api_token;
        *valid_until = now + options_.principal_cache_ttl_ms;
        if (expires) *valid_until = std::min(*valid_until, *expires);
        if (api_token) used_token_id = row->text(0);
    });
    if (!principal) return std::nullopt;
    if (used_token_id) {
        // Recorded on cache misses only, so at most once per cache TTL per token; fire-and-forget.
        store_.write(
            [id = *used_token_id, now](store::Tx& tx) {
                tx.exec("UPDATE auth_api_tokens SET last_used_at = ? WHERE id = ?", {now, id});
            },
            [](std::exception_ptr) {});
    }
    return std::make_shared<const core::Principal>(std::move(*principal));
}

std::optional<std::shared_ptr<const core::Principal>> AuthService::authenticate_token(std::string_view token) {
    bool api_token = token.substr(0, kApiTokenPrefix.size()) == kApiTokenPrefix;
    std::string_view secret = api_token ? token.substr(kApiTokenPrefix.size()) : token;
    if (!internal::is_hex_token(secret)) return std::nullopt;
    std::string token_hash = sha256_hex(token);
    std::int64_t now = clock_.now_ms();
    std::uint64_t generation;
    {
        std::shared_lock lock(cache_mutex_);
        auto it = cache_.find(token_hash);
        if (it != cache_.end() && it->second.valid_until > now) return it->second.principal;
        generation = generation_;
    }
    std::int64_t valid_until = now;
    auto principal = load_principal(token_hash, api_token, now, &valid_until);
    if (!principal) return std::nullopt;
    {
        std::unique_lock lock(cache_mutex_);
        if (generation_ == generation) {  // no invalidation raced with the read: safe to cache
            if (cache_.size() >= kMaxCacheEntries) {
                std::erase_if(cache_, [&](const auto& kv) { return kv.second.valid_until <= now; });
                if (cache_.size() >= kMaxCacheEntries) cache_.clear();
            }
            cache_[token_hash] = CacheEntry{*principal, valid_until};
        }
    }
    return principal;
}

std::optional<std::shared_ptr<const core::Principal>> AuthService::authenticate(const http::Request& request) {
    std::string_view header = request.header("authorization");
    constexpr std::string_view kBearer = "bearer ";
    if (header.size() <= kBearer.size()) return std::nullopt;
    for (std::size_t i = 0; i < kBearer.size(); ++i) {
        char c = header[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != kBearer[i]) return std::nullopt;
    }
    std::string_view token = header.substr(kBearer.size());
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
    return authenticate_token(token);
}

http::Authenticator AuthService::authenticator() {
    return [this](const http::Request& request) { return authenticate(request); };
}

// --- login / logout -------------------------------------------------------------------------------------------

boost::asio::awaitable<LoginResult> AuthService::login(std::string email_raw, std::string password, std::string ip) {
    check_ip_budget(ip);
    if (password.size() > kMaxPasswordBytes) {
        throw core::BadRequest("the password is too long", "invalid_password", field_detail("password"));
    }
    std::string email = require_email(email_raw);
    const std::int64_t now = clock_.now_ms();

    struct Account {
        std::string id;
        std::string hash;
        bool active;
    };
    std::optional<Account> account;
    std::int64_t locked_until = 0;
    store_.read([&](store::Tx& tx) {
        if (auto row = tx.query_one("SELECT locked_until FROM auth_login_throttle WHERE email = ?", {email})) {
            locked_until = row->integer(0);
        }
        if (auto row = tx.query_one("SELECT id, password_hash, active FROM auth_users WHERE email = ?", {email})) {
            account = Account{row->text(0), row->text(1), row->integer(2) != 0};
        }
    });

    if (locked_until > now) {
        auto change = [=](store::Tx& tx) {
            record_audit(tx, now, {nullptr, "login.blocked", email, json::object{{"locked_until", core::format_time(locked_until)}}, ip});
        };
        co_await store::co_write(store_, std::move(change));
        throw LoginThrottled("too many failed logins for this account; try again later", "locked",
                             (locked_until - now + 999) / 1000);
    }

    // Always run one argon2 verification so an unknown e-mail costs the same time as a wrong password.
    auto verify = [this, stored = account ? account->hash : std::string(), password] {
        return hasher_->verify(stored.empty() ? hasher_->dummy_hash() : stored, password);
    };
    const bool password_ok = co_await asio_util::co_offload(*hash_pool_, std::move(verify));
    if (!account || !password_ok || !account->active) {
        std::string reason = !account ? "unknown_email" : !password_ok ? "wrong_password" : "inactive";
        const std::int64_t window = options_.login_window_minutes * kMinuteMs;
        const std::int64_t lockout = options_.login_lockout_minutes * kMinuteMs;
        const unsigned max_failures = std::max(1u, options_.login_max_failures);
        auto change = [=](store::Tx& tx) {
            std::int64_t failures = 1;
            std::int64_t window_start = now;
            if (auto row = tx.query_one("SELECT failures, window_start FROM auth_login_throttle WHERE email = ?",
                                        {email})) {
                if (row->integer(1) + window > now) {
                    failures = row->integer(0) + 1;
                    window_start = row->integer(1);
                }
            }
            std::int64_t until = 0;
            record_audit(tx, now, {nullptr, "login.failure", email, json::object{{"reason", reason}, {"failures", failures}}, ip});
            if (failures >= static_cast<std::int64_t>(max_failures)) {
                until = now + lockout;
                failures = 0;
                record_audit(tx, now, {nullptr, "login.lockout", email,
                                       json::object{{"locked_until", core::format_time(until)}}, ip});
            }
            tx.exec("DELETE FROM auth_login_throttle WHERE email = ?", {email});
            tx.exec("INSERT INTO auth_login_throttle(email, failures, window_start, locked_until) VALUES (?, ?, ?, ?)",
                    {email, failures, window_start, until});
        };
        co_await store::co_write(store_, std::move(change));
        throw core::Unauthorized("invalid e-mail or password", "invalid_credentials");
    }

    std::optional<std::string> rehashed;
    if (hasher_->needs_rehash(account->hash)) {
        auto rehash = [this, password] { return hasher_->hash(password); };
        rehashed = co_await asio_util::co_offload(*hash_pool_, std::move(rehash));
    }
    const std::string token = core::random_hex(32);
    const std::string token_hash = sha256_hex(token);
    const std::int64_t expires_at = now + options_.session_ttl_minutes * kMinuteMs;
    const std::string user_id = account->id;
    auto change = [=](store::Tx& tx) {
        tx.exec("DELETE FROM auth_sessions WHERE expires_at <= ?", {now});
        tx.exec("DELETE FROM auth_login_throttle WHERE email = ?", {email});
        tx.exec("INSERT INTO auth_sessions(id, token_hash, user_id, created_at, expires_at, ip) VALUES (?, ?, ?, ?, ?, ?)",
                {core::new_id(), token_hash, user_id, now, expires_at, ip});
        if (rehashed) tx.exec("UPDATE auth_users SET password_hash = ? WHERE id = ?", {*rehashed, user_id});
        record_audit(tx, now, {nullptr, "login.success", user_id, json::object{{"email", email}}, ip});
        return *find_user(tx, user_id);
    };
    User user = co_await store::co_write(store_, std::move(change));
    co_return LoginResult{token, std::move(user), expires_at};
}

boost::asio::awaitable<void> AuthService::logout(const core::Principal& principal) {
    if (principal.via_api_token) co_return;  // API tokens are revoked explicitly, not by "logging out"
    std::string session_id = principal.session_id;
    auto change = [=](store::Tx& tx) {
        tx.exec("DELETE FROM auth_sessions WHERE id = ?", {session_id});
    };
    co_await store::co_write(store_, std::move(change));
    std::unique_lock lock(cache_mutex_);
    ++generation_;
    std::erase_if(cache_, [&](const auto& kv) {
        return !kv.second.principal->via_api_token && kv.second.principal->session_id == session_id;
    });
}

// --- me -------------------------------------------------------------------------------------------------------

User AuthService::me(const core::Principal& principal) { return get_user(principal.user_id); }

boost::asio::awaitable<User> AuthService::update_me(Caller caller, std::optional<std::string> name,
                                                    std::optional<std::string> language,
                                                    std::optional<std::string> new_password,
                                                    std::optional<std::string> current_password) {
    const core::Principal& principal = *caller.principal;
    if (name) name = require_name(*name);
    if (language) require_language(*language);
    std::optional<std::string> new_hash;
    if (new_password) {
        validate_password(*new_password);
        if (!current_password) {
            throw core::BadRequest("changing the password needs 'current_password'", "missing_field",
                                   field_detail("current_password"));
        }
        std::string stored = read_value(store_, [&](store::Tx& tx) {
            auto row = tx.query_one("SELECT password_hash FROM auth_users WHERE id = ?", {principal.user_id});
            return row ? row->text(0) : std::string();
        });
        auto verify = [this, stored, current = *current_password] {
            return !stored.empty() && hasher_->verify(stored, current);
        };
        const bool current_ok = co_await asio_util::co_offload(*hash_pool_, std::move(verify));
        if (!current_ok) {
            const std::int64_t now = clock_.now_ms();
            auto change = [=, actor = principal](store::Tx& tx) {
                record_audit(tx, now, {&actor, "password.change_failed", actor.user_id, {}, caller.ip});
            };
            co_await store::co_write(store_, std::move(change));
            throw core::Forbidden("the current password is wrong", "wrong_password");
        }
        auto hash = [this, password = *new_password] { return hasher_->hash(password); };
        new_hash = co_await asio_util::co_offload(*hash_pool_, std::move(hash));
    }
    const std::int64_t now = clock_.now_ms();
    const core::Principal actor = principal;
    const std::string keep_session = principal.via_api_token ? std::string() : principal.session_id;
    auto change = [=](store::Tx& tx) {
        json::object changed;
        if (name) {
            tx.exec("UPDATE auth_users SET name = ?, updated_at = ? WHERE id = ?", {*name, now, actor.user_id});
            changed["name"] = *name;
        }
        if (language) {
            tx.exec("UPDATE auth_users SET language = ?, updated_at = ? WHERE id = ?", {*language, now, actor.user_id});
            changed["language"] = *language;
        }
        if (new_hash) {
            tx.exec("UPDATE auth_users SET password_hash = ?, password_changed_at = ?, updated_at = ? WHERE id = ?",
                    {*new_hash, now, now, actor.user_id});
            auto ended = tx.exec("DELETE FROM auth_sessions WHERE user_id = ? AND id <> ?", {actor.user_id, keep_session});
            record_audit(tx, now, {&actor, "password.change", actor.user_id, json::object{{"sessions_ended", ended}}, caller.ip});
        }
        if (!changed.empty()) {
            record_audit(tx, now, {&actor, "user.update", actor.user_id, json::object{{"changed", changed}}, caller.ip});
        }
        return *find_user(tx, actor.user_id);
    };
    User user = co_await store::co_write(store_, std::move(change));
    if (name || language || new_hash) invalidate_user(principal.user_id);
    co_return user;
}

// --- users ----------------------------------------------------------------------------------------------------

boost::asio::awaitable<User> AuthService::create_user(Caller caller, NewUser input) {
    const std::string email = require_email(input.email);
    const std::string name = require_name(input.name);
    require_language(input.language);
    validate_password(input.password);
    std::sort(input.roles.begin(), input.roles.end());
    input.roles.erase(std::unique(input.roles.begin(), input.roles.end()), input.roles.end());
    store_.read([&](store::Tx& tx) {
        for (const auto& role : input.roles) {
            if (!role_exists(tx, role)) {
                throw core::BadRequest(fmt::format("unknown role '{}'", role), "unknown_role", field_detail("roles"));
            }
        }
    });
    ensure_can_grant(caller, input.roles);
    auto hash_fn = [this, password = input.password] { return hasher_->hash(password); };
    const std::string hash = co_await asio_util::co_offload(*hash_pool_, std::move(hash_fn));
    const std::int64_t now = clock_.now_ms();
    const std::string id = core::new_id();
    const std::optional<core::Principal> actor =
        caller.principal ? std::optional<core::Principal>(*caller.principal) : std::nullopt;
    const std::vector<std::string> roles = input.roles;
    const std::string language = input.language;
    auto change = [=](store::Tx& tx) {
        if (tx.query_one("SELECT 1 FROM auth_users WHERE email = ?", {email})) {
            throw core::Conflict(fmt::format("a user with e-mail '{}' already exists", email), "email_taken",
                                 field_detail("email"));
        }
        tx.exec("INSERT INTO auth_users(id, email, name, language, password_hash, active, created_at, updated_at, "
                "password_changed_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)",
                {id, email, name, language, hash, now, now, now});
        for (const auto& role : roles) {
            tx.exec("INSERT INTO auth_user_roles(user_id, role) VALUES (?, ?)", {id, role});
        }
        record_audit(tx, now, {actor ? &*actor : nullptr, "user.create", id,
                               json::object{{"email", email}, {"roles", to_json_array(roles)}}, caller.ip});
        return *find_user(tx, id);
    };
    co_return co_await store::co_write(store_, std::move(change));
}

UserPage AuthService::list_users(const UserQuery& query) {
    std::string sql = fmt::format("SELECT {} FROM auth_users u WHERE 1 = 1", kUserColumns);
    store::Params params;
    if (query.q && !query.q->empty()) {
        sql += " AND (u.email LIKE ? ESCAPE '\\' OR lower(u.name) LIKE ? ESCAPE '\\')";
        params.emplace_back(like_pattern(*query.q));
        params.emplace_back(like_pattern(*query.q));
    }
    if (query.role) {
        sql += " AND EXISTS (SELECT 1 FROM auth_user_roles r WHERE r.user_id = u.id AND r.role = ?)";
        params.emplace_back(*query.role);
    }
    if (query.active) {
        sql += " AND u.active = ?";
        params.emplace_back(static_cast<std::int64_t>(*query.active ? 1 : 0));
    }
    if (query.cursor) {
        sql += " AND u.id > ?";
        params.emplace_back(*query.cursor);
    }
    sql += " ORDER BY u.id LIMIT ?";
    params.emplace_back(static_cast<std::int64_t>(query.limit + 1));
    UserPage page;
    store_.read([&](store::Tx& tx) {
        for (const auto& row : tx.query(sql, params)) page.items.push_back(user_from_row(tx, row));
    });
    if (page.items.size() > query.limit) {
        page.items.resize(query.limit);
        page.next_cursor = page.items.back().id;
    }
    return page;
}

User AuthService::get_user(std::string_view id) {
    auto user = read_value(store_, [&](store::Tx& tx) { return find_user(tx, std::string(id)); });
    if (!user) throw core::NotFound(fmt::format("no user '{}'", id), "user_not_found");
    return *user;
}

boost::asio::awaitable<User> AuthService::update_user(Caller caller, std::string id, UserPatch patch) {
    User before = get_user(id);
    if (patch.name) patch.name = require_name(*patch.name);
    if (patch.language) require_language(*patch.language);
    if (patch.active && !*patch.active && caller.principal && caller.principal->user_id == id) {
        throw core::Conflict("you cannot deactivate your own account", "cannot_deactivate_self");
    }
    if (patch.roles) {
        auto& roles = *patch.roles;
        std::sort(roles.begin(), roles.end());
        roles.erase(std::unique(roles.begin(), roles.end()), roles.end());
        store_.read([&](store::Tx& tx) {
            for (const auto& role : roles) {
                if (!role_exists(tx, role)) {
                    throw core::BadRequest(fmt::format("unknown role '{}'", role), "unknown_role", field_detail("roles"));
                }
            }
        });
        std::vector<std::string> touched;  // granted or taken away: both need the caller to hold the rights
        std::set_symmetric_difference(roles.begin(), roles.end(), before.roles.begin(), before.roles.end(),
                                      std::back_inserter(touched));
        ensure_can_grant(caller, touched);
    }
    const std::int64_t now = clock_.now_ms();
    const std::optional<core::Principal> actor =
        caller.principal ? std::optional<core::Principal>(*caller.principal) : std::nullopt;
    auto change = [=](store::Tx& tx) {
        if (!find_user(tx, id)) throw core::NotFound(fmt::format("no user '{}'", id), "user_not_found");
        json::object changed;
        if (patch.name) {
            tx.exec("UPDATE auth_users SET name = ? WHERE id = ?", {*patch.name, id});
            changed["name"] = *patch.name;
        }
        if (patch.language) {
            tx.exec("UPDATE auth_users SET language = ? WHERE id = ?", {*patch.language, id});
            changed["language"] = *patch.language;
        }
        if (patch.roles) {
            tx.exec("DELETE FROM auth_user_roles WHERE user_id = ?", {id});
            for (const auto& role : *patch.roles) {
                tx.exec("INSERT INTO auth_user_roles(user_id, role) VALUES (?, ?)", {id, role});
            }
            changed["roles"] = to_json_array(*patch.roles);
        }
        if (patch.active) {
            tx.exec("UPDATE auth_users SET active = ? WHERE id = ?", {static_cast<std::int64_t>(*patch.active), id});
            changed["active"] = *patch.active;
            if (!*patch.active) tx.exec("DELETE FROM auth_sessions WHERE user_id = ?", {id});
        }
        // The instance must keep one active administrator, whatever the order of concurrent changes.
        bool was_admin = std::find(before.roles.begin(), before.roles.end(), kRoleAdministrator) != before.roles.end();
        auto after = *find_user(tx, id);
        bool is_admin = after.active &&
                        std::find(after.roles.begin(), after.roles.end(), kRoleAdministrator) != after.roles.end();
        if (was_admin && !is_admin && active_administrators_except(tx, id) == 0) {
            throw core::Conflict("this is the last active administrator", "last_administrator");
        }
        tx.exec("UPDATE auth_users SET updated_at = ? WHERE id = ?", {now, id});
        std::string action = patch.active && !*patch.active ? "user.deactivate" : "user.update";
        record_audit(tx, now, {actor ? &*actor : nullptr, action, id, json::object{{"changed", changed}}, caller.ip});
        after.updated_at = now;
        return after;
    };
    User user = co_await store::co_write(store_, std::move(change));
    invalidate_user(id);
    co_return user;
}

boost::asio::awaitable<void> AuthService::deactivate_user(Caller caller, std::string id) {
    UserPatch patch;
    patch.active = false;
    co_await update_user(std::move(caller), std::move(id), std::move(patch));
}

// --- roles ----------------------------------------------------------------------------------------------------

std::vector<Role> AuthService::list_roles() {
    std::vector<Role> out;
    store_.read([&](store::Tx& tx) {
        for (const auto& row : tx.query(
                 "SELECT r.name, r.builtin, r.description, "
                 "(SELECT COUNT(*) FROM auth_user_roles ur WHERE ur.role = r.name) FROM auth_roles r "
                 "ORDER BY r.builtin DESC, r.name")) {
            Role role{row.text(0), row.integer(1) != 0, row.text(2), {}, row.integer(3)};
            role.permissions = role_permissions(tx, role.name);
            out.push_back(std::move(role));
        }
    });
    return out;
}

Role AuthService::get_role(std::string_view name) {
    auto role = read_value(store_, [&](store::Tx& tx) -> std::optional<Role> {
        auto row = tx.query_one(
            "SELECT r.name, r.builtin, r.description, "
            "(SELECT COUNT(*) FROM auth_user_roles ur WHERE ur.role = r.name) FROM auth_roles r WHERE r.name = ?",
            {std::string(name)});
        if (!row) return std::nullopt;
        Role role{row->text(0), row->integer(1) != 0, row->text(2), {}, row->integer(3)};
        role.permissions = role_permissions(tx, role.name);
        return role;
    });
    if (!role) throw core::NotFound(fmt::format("no role '{}'", name), "role_not_found");
    return *role;
}

namespace {

void require_description(const std::string& description) {
    if (description.size() > 500) {
        throw core::BadRequest("'description' is longer than 500 bytes", "invalid_description",
                               json::array{json::object{{"field", "description"}}});
    }
}

void require_grantable(const Caller& caller, const PermissionSet& permissions) {
    if (!caller.principal || caller.principal->has_role(kRoleAdministrator)) return;
    for (const auto& p : permissions) {
        if (!caller.principal->permissions.count(p)) {
            throw core::Forbidden(fmt::format("you cannot grant '{}', which you do not hold yourself", p),
                                  "cannot_grant");
        }
    }
}

}  // namespace

boost::asio::awaitable<Role> AuthService::create_role(Caller caller, std::string name, std::string description,
                                                      PermissionSet permissions) {
    if (!is_valid_role_name(name)) {
        throw core::BadRequest("'name' must match [a-z0-9_-]{1,64}", "invalid_name", field_detail("name"));
    }
    require_description(description);
    require_grantable(caller, permissions);
    const std::int64_t now = clock_.now_ms();
    const std::optional<core::Principal> actor =
        caller.principal ? std::optional<core::Principal>(*caller.principal) : std::nullopt;
    auto change = [=](store::Tx& tx) {
        if (role_exists(tx, name)) {
            throw core::Conflict(fmt::format("the role '{}' already exists", name), "role_exists", field_detail("name"));
        }
        tx.exec("INSERT INTO auth_roles(name, builtin, description, created_at, updated_at) VALUES (?, 0, ?, ?, ?)",
                {name, description, now, now});
        write_permissions(tx, name, permissions);
        record_audit(tx, now, {actor ? &*actor : nullptr, "role.create", name,
                               json::object{{"permissions", to_json_array(permissions)}}, caller.ip});
    };
    co_await store::co_write(store_, std::move(change));
    co_return get_role(name);
}

boost::asio::awaitable<Role> AuthService::update_role(Caller caller, std::string name,
                                                      std::optional<std::string> description,
                                                      PermissionSet permissions) {
    Role before = get_role(name);
    if (name == kRoleAdministrator) {
        throw core::Conflict("the administrator role always has every right and cannot be changed", "builtin_role");
    }
    if (description) require_description(*description);
    PermissionSet touched;  // rights granted or taken away
    std::set_symmetric_difference(permissions.begin(), permissions.end(), before.permissions.begin(),
                                  before.permissions.end(), std::inserter(touched, touched.end()));
    require_grantable(caller, touched);
    const std::int64_t now = clock_.now_ms();
    const std::optional<core::Principal> actor =
        caller.principal ? std::optional<core::Principal>(*caller.principal) : std::nullopt;
    auto change = [=](store::Tx& tx) {
        if (!role_exists(tx, name)) throw core::NotFound(fmt::format("no role '{}'", name), "role_not_found");
        write_permissions(tx, name, permissions);
        if (description) tx.exec("UPDATE auth_roles SET description = ? WHERE name = ?", {*description, name});
        tx.exec("UPDATE auth_roles SET updated_at = ? WHERE name = ?", {now, name});
        record_audit(tx, now, {actor ? &*actor : nullptr, "role.update", name,
                               json::object{{"before", to_json_array(before.permissions)},
                                            {"after", to_json_array(permissions)}},
                               caller.ip});
    };
    co_await store::co_write(store_, std::move(change));
    invalidate_all();  // every holder's principal changes
    co_return get_role(name);
}

boost::asio::awaitable<void> AuthService::delete_role(Caller caller, std::string name) {
    get_role(name);  // NotFound first
    if (is_builtin_role(name)) throw core::Conflict(fmt::format("'{}' is a built-in role", name), "builtin_role");
    const std::int64_t now = clock_.now_ms();
    const std::optional<core::Principal> actor =
        caller.principal ? std::optional<core::Principal>(*caller.principal) : std::nullopt;
    auto change = [=](store::Tx& tx) {
        auto row = tx.query_one("SELECT COUNT(*) FROM auth_user_roles WHERE role = ?", {name});
        if (row && row->integer(0) > 0) {
            throw core::Conflict(fmt::format("{} user(s) still hold the role '{}'", row->integer(0), name),
                                 "role_in_use");
        }
        tx.exec("DELETE FROM auth_role_permissions WHERE role = ?", {name});
        if (tx.exec("DELETE FROM auth_roles WHERE name = ? AND builtin = 0", {name}) == 0) {
            throw core::NotFound(fmt::format("no role '{}'", name), "role_not_found");
        }
        record_audit(tx, now, {actor ? &*actor : nullptr, "role.delete", name, {}, caller.ip});
    };
    co_await store::co_write(store_, std::move(change));
}

// --- API tokens -----------------------------------------------------------------------------------------------

boost::asio::awaitable<ApiToken> AuthService::create_api_token(Caller caller, std::string name,
                                                               std::optional<std::int64_t> expires_in_days) {
    const core::Principal actor = *caller.principal;
    if (actor.via_api_token) {
        throw core::Forbidden("API tokens can only be created from a signed-in session", "session_required");
    }
    auto clean = internal::normalize_name(name);
    if (!clean || clean->size() > 100) {
        throw core::BadRequest("'name' must be 1 to 100 characters", "invalid_name", field_detail("name"));
    }
    if (expires_in_days && (*expires_in_days < 1 || *expires_in_days > 3650)) {
        throw core::BadRequest("'expires_in_days' must be between 1 and 3650", "invalid_expiry",
                               field_detail("expires_in_days"));
    }
    const std::int64_t now = clock_.now_ms();
    ApiToken token;
    token.id = core::new_id();
    token.name = *clean;
    token.created_at = now;
    if (expires_in_days) token.expires_at = now + *expires_in_days * 24 * 60 * kMinuteMs;
    token.token = std::string(kApiTokenPrefix) + core::random_hex(32);
    const std::string token_hash = sha256_hex(token.token);
    auto change = [=](store::Tx& tx) {
        store::Value expires = nullptr;
        if (token.expires_at) expires = *token.expires_at;
        tx.exec("INSERT INTO auth_api_tokens(id, token_hash, user_id, name, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                {token.id, token_hash, actor.user_id, token.name, now, expires});
        json::object details{{"name", token.name}};
        details["expires_at"] = token.expires_at ? json::value(core::format_time(*token.expires_at)) : nullptr;
        record_audit(tx, now, {&actor, "token.create", token.id, details, caller.ip});
    };
    co_await store::co_write(store_, std::move(change));
    co_return token;
}

std::vector<ApiToken> AuthService::list_api_tokens(const core::Principal& principal) {
    std::vector<ApiToken> out;
    store_.read([&](store::Tx& tx) {
        for (const auto& row :
             tx.query("SELECT id, name, created_at, expires_at, last_used_at FROM auth_api_tokens WHERE user_id = ? "
                      "ORDER BY id",
                      {principal.user_id})) {
            out.push_back(ApiToken{row.text(0), row.text(1), row.integer(2), row.opt_integer(3), row.opt_integer(4), {}});
        }
    });
    return out;
}

boost::asio::awaitable<void> AuthService::revoke_api_token(Caller caller, std::string id) {
    const core::Principal actor = *caller.principal;
    const bool may_revoke_any = actor.can(kModuleUsers, core::Action::kEdit);
    const std::int64_t now = clock_.now_ms();
    auto change = [=](store::Tx& tx) {
        auto row = tx.query_one("SELECT user_id, token_hash, name FROM auth_api_tokens WHERE id = ?", {id});
        if (!row || (row->text(0) != actor.user_id && !may_revoke_any)) {
            throw core::NotFound(fmt::format("no API token '{}'", id), "token_not_found");
        }
        tx.exec("DELETE FROM auth_api_tokens WHERE id = ?", {id});
        record_audit(tx, now, {&actor, "token.revoke", id, json::object{{"name", row->text(2)}, {"user_id", row->text(0)}},
                               caller.ip});
        return row->text(1);
    };
    std::string token_hash = co_await store::co_write(store_, std::move(change));
    invalidate_token(token_hash);
}

// --- password reset -------------------------------------------------------------------------------------------

boost::asio::awaitable<void> AuthService::request_password_reset(std::string email_raw, std::string ip) {
    auto enabled = settings_.get(kSettingPasswordRecoveryEnabled);
    if (enabled && enabled->is_bool() && !enabled->as_bool()) {
        throw core::Forbidden("password recovery by e-mail is disabled on this instance; ask an administrator",
                              "password_recovery_disabled");
    }
    check_ip_budget(ip);
    const std::string email = require_email(email_raw);
    const std::int64_t now = clock_.now_ms();
    struct Target {
        std::string id;
        std::string name;
        std::string language;
    };
    std::optional<Target> target;
    store_.read([&](store::Tx& tx) {
        if (auto row = tx.query_one("SELECT id, name, language FROM auth_users WHERE email = ? AND active = 1", {email})) {
            target = Target{row->text(0), row->text(1), row->text(2)};
        }
    });
    // The same work whichever branch: one token, one write with one audit entry.
    const std::string token = core::random_hex(32);
    const std::string token_hash = sha256_hex(token);
    const std::int64_t ttl = options_.reset_token_ttl_minutes;
    const std::string link = options_.base_url + "/reset-password?token=" + token;
    auto change = [=](store::Tx& tx) {
        if (!target) {
            record_audit(tx, now, {nullptr, "password_reset.request", email, json::object{{"known", false}}, ip});
            return;
        }
        auto recent = tx.query_one("SELECT COUNT(*) FROM auth_reset_tokens WHERE user_id = ? AND created_at > ?",
                                   {target->id, now - 60 * kMinuteMs});
        if (recent && recent->integer(0) >= kMaxResetMailsPerHour) {
            record_audit(tx, now, {nullptr, "password_reset.request", target->id,
                                   json::object{{"known", true}, {"throttled", true}}, ip});
            return;
        }
        tx.exec("INSERT INTO auth_reset_tokens(id, token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                {core::new_id(), token_hash, target->id, now, now + ttl * kMinuteMs});
        ResetMail mail = reset_mail(target->language, target->name, link, ttl);
        tx.exec("INSERT INTO outbound_mail(id, to_address, subject, body, status, created_at) "
                "VALUES (?, ?, ?, ?, 'queued', ?)",
                {core::new_id(), email, mail.subject, mail.body, now});
        record_audit(tx, now, {nullptr, "password_reset.request", target->id, json::object{{"known", true}}, ip});
    };
    co_await store::co_write(store_, std::move(change));
}

boost::asio::awaitable<void> AuthService::confirm_password_reset(std::string token, std::string password,
                                                                 std::string ip) {
    if (!internal::is_hex_token(token)) {
        throw core::BadRequest("the reset link is invalid or has expired", "invalid_token", field_detail("token"));
    }
    validate_password(password);
    auto hash_fn = [this, password] { return hasher_->hash(password); };
    const std::string hash = co_await asio_util::co_offload(*hash_pool_, std::move(hash_fn));
    const std::string token_hash = sha256_hex(token);
    const std::int64_t now = clock_.now_ms();
    auto change = [=](store::Tx& tx) {
        auto row = tx.query_one(
            "SELECT t.id, t.user_id, t.expires_at, t.used_at, u.active FROM auth_reset_tokens t "
            "JOIN auth_users u ON u.id = t.user_id WHERE t.token_hash = ?",
            {token_hash});
        if (!row || !row->is_null(3) || row->integer(2) <= now || row->integer(4) == 0) {
            throw core::BadRequest("the reset link is invalid or has expired", "invalid_token", field_detail("token"));
        }
        std::string uid = row->text(1);
        tx.exec("UPDATE auth_users SET password_hash = ?, password_changed_at = ?, updated_at = ? WHERE id = ?",
                {hash, now, now, uid});
        // Burn this token and every other outstanding link of the user.
        tx.exec("UPDATE auth_reset_tokens SET used_at = ? WHERE user_id = ? AND used_at IS NULL", {now, uid});
        auto ended = tx.exec("DELETE FROM auth_sessions WHERE user_id = ?", {uid});
        tx.exec("DELETE FROM auth_login_throttle WHERE email = (SELECT email FROM auth_users WHERE id = ?)", {uid});
        record_audit(tx, now, {nullptr, "password_reset.complete", uid, json::object{{"sessions_ended", ended}}, ip});
        return uid;
    };
    std::string user_id = co_await store::co_write(store_, std::move(change));
    invalidate_user(user_id);
}

boost::asio::awaitable<ResetLink> AuthService::generate_reset_link(Caller caller, std::string user_id) {
    User user = get_user(user_id);
    if (!user.active) throw core::Conflict("the user is deactivated; activate it first", "user_inactive");
    const std::int64_t now = clock_.now_ms();
    const std::string token = core::random_hex(32);
    const std::string token_hash = sha256_hex(token);
    const std::int64_t expires_at = now + options_.reset_token_ttl_minutes * kMinuteMs;
    const std::optional<core::Principal> actor =
        caller.principal ? std::optional<core::Principal>(*caller.principal) : std::nullopt;
    auto change = [=](store::Tx& tx) {
        store::Value by = nullptr;
        if (actor) by = actor->user_id;
        tx.exec("INSERT INTO auth_reset_tokens(id, token_hash, user_id, created_at, expires_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                {core::new_id(), token_hash, user_id, now, expires_at, by});
        record_audit(tx, now, {actor ? &*actor : nullptr, "password_reset.link", user_id,
                               json::object{{"expires_at", core::format_time(expires_at)}}, caller.ip});
    };
    co_await store::co_write(store_, std::move(change));
    co_return ResetLink{options_.base_url + "/reset-password?token=" + token, expires_at};
}

// --- bootstrap ------------------------------------------------------------------------------------------------

std::optional<std::string> AuthService::ensure_admin(std::string email_raw, std::string password) {
    bool any = read_value(store_, [](store::Tx& tx) { return tx.query_one("SELECT 1 FROM auth_users LIMIT 1").has_value(); });
    if (any) return std::nullopt;
    const std::string email = require_email(email_raw.empty() ? "admin@localhost" : email_raw);
    std::optional<std::string> generated;
    if (password.empty()) {
        generated = core::random_hex(12);
        password = *generated;
    }
    validate_password(password);
    const std::string hash = hasher_->hash(password);
    const std::int64_t now = clock_.now_ms();
    const std::string id = core::new_id();
    store_.write_sync([&](store::Tx& tx) {
        if (tx.query_one("SELECT 1 FROM auth_users LIMIT 1")) return;  // another node won the race
        tx.exec("INSERT INTO auth_users(id, email, name, language, password_hash, active, created_at, updated_at, "
                "password_changed_at) VALUES (?, ?, 'Administrator', 'en', ?, 1, ?, ?, ?)",
                {id, email, hash, now, now, now});
        tx.exec("INSERT INTO auth_user_roles(user_id, role) VALUES (?, ?)", {id, std::string(kRoleAdministrator)});
        record_audit(tx, now, {nullptr, "user.create", id,
                               json::object{{"email", email}, {"roles", json::array{kRoleAdministrator}}, {"bootstrap", true}},
                               ""});
    });
    return generated;
}

}  // namespace parley::auth
