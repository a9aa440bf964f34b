#include <fmt/format.h>

#include "auth/auth.h"
#include "auth/permissions.h"

namespace parley::auth {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE auth_users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    password_changed_at INTEGER NOT NULL
);
CREATE TABLE auth_roles (
    name TEXT PRIMARY KEY,
    builtin INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE auth_role_permissions (
    role TEXT NOT NULL REFERENCES auth_roles(name) ON DELETE CASCADE,
    module TEXT NOT NULL,
    action TEXT NOT NULL,
    PRIMARY KEY (role, module, action)
);
CREATE TABLE auth_user_roles (
    user_id TEXT NOT NULL REFERENCES auth_users(id),
    role TEXT NOT NULL REFERENCES auth_roles(name),
    PRIMARY KEY (user_id, role)
);
CREATE INDEX auth_user_roles_role ON auth_user_roles(role);
CREATE TABLE auth_sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES auth_users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ip TEXT NOT NULL DEFAULT ''
);
CREATE INDEX auth_sessions_user ON auth_sessions(user_id);
CREATE INDEX auth_sessions_expires ON auth_sessions(expires_at);
CREATE TABLE auth_api_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES auth_users(id),
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER
);
CREATE INDEX auth_api_tokens_user ON auth_api_tokens(user_id);
CREATE TABLE auth_login_throttle (
    email TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    locked_until INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE auth_reset_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES auth_users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    created_by TEXT
);
CREATE INDEX auth_reset_tokens_user ON auth_reset_tokens(user_id);
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    actor_id TEXT,
    actor_email TEXT,
    action TEXT NOT NULL,
    target TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    ip TEXT
);
CREATE INDEX audit_log_actor ON audit_log(actor_id, id);
CREATE INDEX audit_log_action ON audit_log(action, id);
CREATE TABLE instance_settings (
    key TEXT PRIMARY KEY,
    value TEXT,
    secret_value BLOB,
    secret INTEGER NOT NULL DEFAULT 0,
    updated_by TEXT,
    updated_at INTEGER NOT NULL
);
CREATE TABLE outbound_mail (
    id TEXT PRIMARY KEY,
    to_address TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    sent_at INTEGER
);
CREATE INDEX outbound_mail_status ON outbound_mail(status, created_at);
)sql";

std::string sql_quote(std::string_view text) {
    std::string out = "'";
    for (char c : text) {
        if (c == '\'') out.push_back('\'');
        out.push_back(c);
    }
    out.push_back('\'');
    return out;
}

// The built-in roles and their default grants, generated from builtin_roles() so the README table, the code and
// a fresh database agree. Applied once: later edits by administrators are never overwritten.
std::string seed_roles_sql() {
    std::string sql;
    for (const auto& role : builtin_roles()) {
        sql += fmt::format("INSERT INTO auth_roles(name, builtin, description, created_at, updated_at) "
                           "VALUES ({}, 1, {}, 0, 0);\n",
                           sql_quote(role.name), sql_quote(role.description));
        for (const auto& permission : role.defaults) {
            auto dot = permission.find('.');
            sql += fmt::format("INSERT INTO auth_role_permissions(role, module, action) VALUES ({}, {}, {});\n",
                               sql_quote(role.name), sql_quote(permission.substr(0, dot)),
                               sql_quote(permission.substr(dot + 1)));
        }
    }
    return sql;
}

}  // namespace

std::vector<store::Migration> migrations() {
    return {
        {"auth", 1, "users, roles, sessions, tokens, reset, audit, settings, outbound mail", kSchema},
        {"auth", 2, "built-in roles", seed_roles_sql()},
    };
}

}  // namespace parley::auth
