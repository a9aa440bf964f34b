#include <fmt/format.h>

#include <boost/json.hpp>
#include <charconv>

#include "auth/auth.h"
#include "core/ids.h"
#include "core/json.h"

namespace parley::auth {

namespace json = boost::json;
using core::Action;
using http::Access;
using http::Method;
using http::Request;
using http::Response;

namespace {

constexpr std::size_t kDefaultLimit = 50;
constexpr std::size_t kMaxLimit = 200;

std::size_t parse_limit(const Request& req) {
    auto text = req.query_param("limit");
    if (!text) return kDefaultLimit;
    std::size_t value = 0;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc() || end != text->data() + text->size() || value < 1 || value > kMaxLimit) {
        throw core::BadRequest(fmt::format("'limit' must be a whole number from 1 to {}", kMaxLimit), "invalid_limit",
                               json::array{json::object{{"field", "limit"}}});
    }
    return value;
}

std::optional<std::string> parse_cursor(const Request& req) {
    auto text = req.query_param("cursor");
    if (!text || text->empty()) return std::nullopt;
    if (!core::looks_like_id(*text)) {
        throw core::BadRequest("'cursor' is not a cursor this API handed out", "invalid_cursor",
                               json::array{json::object{{"field", "cursor"}}});
    }
    return std::string(*text);
}

std::optional<std::string> query_text(const Request& req, std::string_view name, std::size_t max_bytes = 200) {
    auto text = req.query_param(name);
    if (!text || text->empty()) return std::nullopt;
    if (text->size() > max_bytes) {
        throw core::BadRequest(fmt::format("'{}' is longer than {} bytes", name, max_bytes), "invalid_query",
                               json::array{json::object{{"field", name}}});
    }
    return std::string(*text);
}

json::value cursor_json(const std::optional<std::string>& cursor) {
    return cursor ? json::value(*cursor) : json::value(nullptr);
}

std::vector<std::string> string_list(const json::object& body, std::string_view key) {
    std::vector<std::string> out;
    const json::array* items = core::optional_array(body, key);
    if (!items) return out;
    if (items->size() > 100) {
        throw core::BadRequest(fmt::format("'{}' has too many items", key), "too_many_items",
                               json::array{json::object{{"field", key}}});
    }
    for (const auto& item : *items) {
        if (!item.is_string()) {
            throw core::BadRequest(fmt::format("'{}' must be a list of strings", key), "wrong_type",
                                   json::array{json::object{{"field", key}}});
        }
        out.emplace_back(item.as_string());
    }
    return out;
}

Caller caller_of(const Request& req) { return Caller{&req.user(), req.remote_ip}; }

json::object setting_to_json(const SettingInfo& info) {
    json::object out{{"key", info.key}, {"secret", info.secret}};
    if (info.secret) {
        out["set"] = true;
    } else {
        out["value"] = info.value.value_or(nullptr);
    }
    out["default"] = info.is_default;
    out["updated_by"] = info.updated_by ? json::value(*info.updated_by) : json::value(nullptr);
    out["updated_at"] = info.updated_at ? json::value(core::format_time(info.updated_at)) : json::value(nullptr);
    return out;
}

Response throttled(const LoginThrottled& e) {
    Response r = Response::error(e.status(), e.code(), e.what(), e.details());
    r.headers.emplace_back("Retry-After", std::to_string(e.retry_after_seconds()));
    return r;
}

std::string require_setting_key(const Request& req) {
    const std::string& key = req.param("key");
    if (!is_valid_setting_key(key)) {
        throw core::BadRequest("setting keys must match [a-z0-9_.-]{1,64}", "invalid_key",
                               json::array{json::object{{"field", "key"}}});
    }
    return key;
}

}  // namespace

void register_routes(http::Router& router, AuthService& auth) {
    AuthService* a = &auth;
    SettingsService* settings = &auth.settings();

    // --- sessions --------------------------------------------------------------------------------------------
    router.add(Method::kPost, "/api/v1/auth/login", Access::open(), [a](Request& req) -> boost::asio::awaitable<Response> {
        auto body = req.json();
        core::reject_unknown_fields(body, {"email", "password"});
        std::string email(core::required_string(body, "email"));
        std::string password(core::required_string(body, "password"));
        std::optional<LoginResult> result;
        try {
            result = co_await a->login(std::move(email), std::move(password), req.remote_ip);
        } catch (const LoginThrottled& e) {
            co_return throttled(e);
        }
        co_return Response::json(json::object{{"token", result->token},
                                              {"user", user_to_json(result->user)},
                                              {"expires_at", core::format_time(result->expires_at)}});
    });

    router.add(Method::kPost, "/api/v1/auth/logout", Access::signed_in(),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   co_await a->logout(req.user());
                   co_return Response::no_content();
               });

    router.add(Method::kGet, "/api/v1/auth/me", Access::signed_in(), [a](Request& req) -> boost::asio::awaitable<Response> {
        const auto& principal = req.user();
        json::object out = user_to_json(a->me(principal));
        out["permissions"] = permissions_to_json(PermissionSet(principal.permissions.begin(), principal.permissions.end()));
        out["via_api_token"] = principal.via_api_token;
        co_return Response::json(out);
    });

    router.add(Method::kPatch, "/api/v1/auth/me", Access::signed_in(),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   auto body = req.json();
                   core::reject_unknown_fields(body, {"name", "language", "password", "current_password"});
                   User user = co_await a->update_me(caller_of(req), core::optional_string(body, "name"),
                                                     core::optional_string(body, "language"),
                                                     core::optional_string(body, "password"),
                                                     core::optional_string(body, "current_password"));
                   co_return Response::json(user_to_json(user));
               });

    // --- password reset --------------------------------------------------------------------------------------
    router.add(Method::kPost, "/api/v1/auth/password-reset", Access::open(),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   auto body = req.json();
                   core::reject_unknown_fields(body, {"email"});
                   std::string email(core::required_string(body, "email"));
                   try {
                       co_await a->request_password_reset(std::move(email), req.remote_ip);
                   } catch (const LoginThrottled& e) {
                       co_return throttled(e);
                   }
                   co_return Response::json(
                       json::object{{"status", "accepted"},
                                    {"message", "If the address belongs to an account, a reset link is on its way."}},
                       202);
               });

    router.add(Method::kPost, "/api/v1/auth/password-reset/confirm", Access::open(),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   auto body = req.json();
                   core::reject_unknown_fields(body, {"token", "password"});
                   std::string token(core::required_string(body, "token"));
                   std::string password(core::required_string(body, "password"));
                   co_await a->confirm_password_reset(std::move(token), std::move(password), req.remote_ip);
                   co_return Response::json(json::object{{"status", "password_changed"}});
               });

    // --- API tokens ------------------------------------------------------------------------------------------
    router.add(Method::kPost, "/api/v1/auth/tokens", Access::signed_in(),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   auto body = req.json();
                   core::reject_unknown_fields(body, {"name", "expires_in_days"});
                   std::string name(core::required_string(body, "name"));
                   auto days = core::optional_int(body, "expires_in_days");
                   ApiToken token = co_await a->create_api_token(caller_of(req), std::move(name), days);
                   co_return Response::json(api_token_to_json(token), 201);
               });

    router.add(Method::kGet, "/api/v1/auth/tokens", Access::signed_in(),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   json::array items;
                   for (const auto& t : a->list_api_tokens(req.user())) items.push_back(api_token_to_json(t));
                   co_return Response::json(json::object{{"items", std::move(items)}, {"next_cursor", nullptr}});
               });

    router.add(Method::kDelete, "/api/v1/auth/tokens/{id}", Access::signed_in(),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   co_await a->revoke_api_token(caller_of(req), req.param("id"));
                   co_return Response::no_content();
               });

    // --- users -----------------------------------------------------------------------------------------------
    router.add(Method::kPost, "/api/v1/users", Access::need(std::string(kModuleUsers), Action::kEdit),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   auto body = req.json();
                   core::reject_unknown_fields(body, {"email", "name", "password", "roles", "language"});
                   NewUser user;
                   user.email = core::required_string(body, "email");
                   user.name = core::required_string(body, "name");
                   user.password = core::required_string(body, "password");
                   user.roles = string_list(body, "roles");
                   if (auto language = core::optional_string(body, "language")) user.language = *language;
                   User created = co_await a->create_user(caller_of(req), std::move(user));
                   co_return Response::json(user_to_json(created), 201);
               });

    router.add(Method::kGet, "/api/v1/users", Access::need(std::string(kModuleUsers), Action::kView),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   UserQuery query;
                   query.q = query_text(req, "q");
                   query.role = query_text(req, "role", 64);
                   if (auto active = query_text(req, "active", 5)) {
                       if (*active != "true" && *active != "false") {
                           throw core::BadRequest("'active' must be true or false", "invalid_query",
                                                  json::array{json::object{{"field", "active"}}});
                       }
                       query.active = *active == "true";
                   }
                   query.cursor = parse_cursor(req);
                   query.limit = parse_limit(req);
                   UserPage page = a->list_users(query);
                   json::array items;
                   for (const auto& u : page.items) items.push_back(user_to_json(u));
                   co_return Response::json(
                       json::object{{"items", std::move(items)}, {"next_cursor", cursor_json(page.next_cursor)}});
               });

    router.add(Method::kGet, "/api/v1/users/{id}", Access::need(std::string(kModuleUsers), Action::kView),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   co_return Response::json(user_to_json(a->get_user(req.param("id"))));
               });

    router.add(Method::kPatch, "/api/v1/users/{id}", Access::need(std::string(kModuleUsers), Action::kEdit),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   auto body = req.json();
                   core::reject_unknown_fields(body, {"name", "language", "roles", "active"});
                   UserPatch patch;
                   patch.name = core::optional_string(body, "name");
                   patch.language = core::optional_string(body, "language");
                   if (core::optional_array(body, "roles")) patch.roles = string_list(body, "roles");
                   patch.active = core::optional_bool(body, "active");
                   User user = co_await a->update_user(caller_of(req), req.param("id"), std::move(patch));
                   co_return Response::json(user_to_json(user));
               });

    router.add(Method::kDelete, "/api/v1/users/{id}", Access::need(std::string(kModuleUsers), Action::kDelete),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   co_await a->deactivate_user(caller_of(req), req.param("id"));
                   co_return Response::no_content();
               });

    router.add(Method::kPost, "/api/v1/users/{id}/reset-link", Access::need(std::string(kModuleUsers), Action::kEdit),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   if (!req.body.empty()) core::reject_unknown_fields(req.json(), {});
                   ResetLink link = co_await a->generate_reset_link(caller_of(req), req.param("id"));
                   co_return Response::json(
                       json::object{{"link", link.link}, {"expires_at", core::format_time(link.expires_at)}});
               });

    // --- roles and permissions -------------------------------------------------------------------------------
    router.add(Method::kGet, "/api/v1/permissions", Access::signed_in(),
               [](Request&) -> boost::asio::awaitable<Response> {
                   json::array items;
                   for (const auto& m : modules()) {
                       items.push_back(json::object{{"module", m.name},
                                                    {"title", m.title},
                                                    {"description", m.description},
                                                    {"actions", json::array{"view", "edit", "delete"}}});
                   }
                   co_return Response::json(json::object{{"items", std::move(items)}, {"next_cursor", nullptr}});
               });

    router.add(Method::kGet, "/api/v1/roles", Access::need(std::string(kModuleRoles), Action::kView),
               [a](Request&) -> boost::asio::awaitable<Response> {
                   json::array items;
                   for (const auto& r : a->list_roles()) items.push_back(role_to_json(r));
                   co_return Response::json(json::object{{"items", std::move(items)}, {"next_cursor", nullptr}});
               });

    router.add(Method::kGet, "/api/v1/roles/{name}", Access::need(std::string(kModuleRoles), Action::kView),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   co_return Response::json(role_to_json(a->get_role(req.param("name"))));
               });

    router.add(Method::kPost, "/api/v1/roles", Access::need(std::string(kModuleRoles), Action::kEdit),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   auto body = req.json();
                   core::reject_unknown_fields(body, {"name", "description", "permissions"});
                   std::string name(core::required_string(body, "name"));
                   std::string description = core::optional_string(body, "description").value_or("");
                   const json::value* permissions = body.if_contains("permissions");
                   PermissionSet set = permissions ? parse_permissions(*permissions) : PermissionSet{};
                   Role role = co_await a->create_role(caller_of(req), std::move(name), std::move(description),
                                                       std::move(set));
                   co_return Response::json(role_to_json(role), 201);
               });

    router.add(Method::kPut, "/api/v1/roles/{name}", Access::need(std::string(kModuleRoles), Action::kEdit),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   auto body = req.json();
                   core::reject_unknown_fields(body, {"name", "description", "permissions"});
                   if (auto name = core::optional_string(body, "name"); name && *name != req.param("name")) {
                       throw core::BadRequest("roles cannot be renamed; 'name' must match the path", "name_mismatch",
                                              json::array{json::object{{"field", "name"}}});
                   }
                   const json::value* permissions = body.if_contains("permissions");
                   if (!permissions) {
                       throw core::BadRequest("missing field 'permissions'", "missing_field",
                                              json::array{json::object{{"field", "permissions"}}});
                   }
                   PermissionSet set = parse_permissions(*permissions);
                   Role role = co_await a->update_role(caller_of(req), req.param("name"),
                                                       core::optional_string(body, "description"), std::move(set));
                   co_return Response::json(role_to_json(role));
               });

    router.add(Method::kDelete, "/api/v1/roles/{name}", Access::need(std::string(kModuleRoles), Action::kDelete),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   co_await a->delete_role(caller_of(req), req.param("name"));
                   co_return Response::no_content();
               });

    // --- audit -----------------------------------------------------------------------------------------------
    router.add(Method::kGet, "/api/v1/audit", Access::need(std::string(kModuleAudit), Action::kView),
               [a](Request& req) -> boost::asio::awaitable<Response> {
                   AuditQuery query;
                   query.actor = query_text(req, "actor", 254);
                   query.action = query_text(req, "action", 64);
                   query.cursor = parse_cursor(req);
                   query.limit = parse_limit(req);
                   AuditPage page = list_audit(a->store(), query);
                   json::array items;
                   for (const auto& e : page.items) items.push_back(audit_entry_to_json(e));
                   co_return Response::json(
                       json::object{{"items", std::move(items)}, {"next_cursor", cursor_json(page.next_cursor)}});
               });

    // --- instance settings -----------------------------------------------------------------------------------
    router.add(Method::kGet, "/api/v1/settings", Access::need(std::string(kModuleSettings), Action::kView),
               [settings](Request&) -> boost::asio::awaitable<Response> {
                   json::array items;
                   for (const auto& s : settings->list()) items.push_back(setting_to_json(s));
                   co_return Response::json(json::object{{"items", std::move(items)}, {"next_cursor", nullptr}});
               });

    router.add(Method::kGet, "/api/v1/settings/{key}", Access::need(std::string(kModuleSettings), Action::kView),
               [settings](Request& req) -> boost::asio::awaitable<Response> {
                   std::string key = require_setting_key(req);
                   auto info = settings->describe(key);
                   if (!info) throw core::NotFound(fmt::format("no setting '{}'", key), "setting_not_found");
                   co_return Response::json(setting_to_json(*info));
               });

    router.add(Method::kPut, "/api/v1/settings/{key}", Access::need(std::string(kModuleSettings), Action::kEdit),
               [settings](Request& req) -> boost::asio::awaitable<Response> {
                   std::string key = require_setting_key(req);
                   auto body = req.json();
                   core::reject_unknown_fields(body, {"value", "secret"});
                   const json::value* value = body.if_contains("value");
                   if (!value) {
                       throw core::BadRequest("missing field 'value'", "missing_field",
                                              json::array{json::object{{"field", "value"}}});
                   }
                   bool secret = core::optional_bool(body, "secret").value_or(false);
                   SettingInfo info = co_await settings->set(key, *value, secret, &req.user(), req.remote_ip);
                   co_return Response::json(setting_to_json(info));
               });

    router.add(Method::kDelete, "/api/v1/settings/{key}", Access::need(std::string(kModuleSettings), Action::kDelete),
               [settings](Request& req) -> boost::asio::awaitable<Response> {
                   std::string key = require_setting_key(req);
                   co_await settings->remove(key, &req.user(), req.remote_ip);
                   co_return Response::no_content();
               });
}

}  // namespace parley::auth
