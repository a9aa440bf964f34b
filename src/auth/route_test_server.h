/// The in-process route fixture module route tests share: principals of the built-in roles looked up by bearer
/// token (by default the token is the role's name), a real http::Server on 127.0.0.1:0 over the test's router and
/// io_context, and a blocking HTTP client. Header-only; tests include it, the product never does.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "auth/permissions.h"
#include "core/config.h"
#include "core/metrics.h"
#include "core/principal.h"
#include "http/http.h"

namespace parley::auth::testing {

using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

/// The five built-in roles, in the order route matrices list them.
inline constexpr const char* kBuiltinRoles[] = {"administrator", "integrator", "supervisor", "operator", "analyst"};

/// A principal holding a built-in role's default permissions (user id and name = the role's name, e-mail
/// role@example.com); the administrator holds every permission, as in the product.
inline std::shared_ptr<const core::Principal> role_principal(const std::string& role) {
    auto p = std::make_shared<core::Principal>();
    p->user_id = role;
    p->name = role;
    p->email = role + "@example.com";
    p->roles = {role};
    for (const auto& r : builtin_roles()) {
        if (r.name == role) p->permissions.insert(r.defaults.begin(), r.defaults.end());
    }
    if (role == "administrator") {
        auto all = all_permissions();
        p->permissions.insert(all.begin(), all.end());
    }
    return p;
}

/// A route of a role matrix: method and pattern, as registered.
using RouteKey = std::pair<http::Method, std::string>;

/// The role × route matrix: `router` has exactly the routes `expected` lists, and each built-in role may call
/// exactly the routes whose row names it (judged from the routes' access rules and the roles' permissions).
inline void expect_role_matrix(const http::Router& router, const std::map<RouteKey, std::set<std::string>>& expected) {
    ASSERT_EQ(router.routes().size(), expected.size()) << "a route was added without a matrix row";
    for (const auto& route : router.routes()) {
        auto it = expected.find({route->method, route->pattern});
        ASSERT_NE(it, expected.end()) << route->pattern;
        for (const char* role : kBuiltinRoles) {
            auto principal = role_principal(role);
            bool allowed = route->access.kind != http::Access::Kind::kPermission ||
                           principal->can(route->access.module, route->access.action);
            EXPECT_EQ(allowed, it->second.count(role) > 0)
                << http::method_name(route->method) << " " << route->pattern << " as " << role;
        }
    }
}

/// Thread-safety: call() and set_principal() from the test's thread; the server runs on `io`, which the test
/// keeps running (its own thread) until this object is destroyed.
class RouteServer {
public:
    /// Starts serving `router` on 127.0.0.1:0; every built-in role is signed in under the token of its name.
    RouteServer(boost::asio::io_context& io, const http::Router& router, core::Config config = default_config())
        : io_(io), config_(std::move(config)) {
        for (const char* role : kBuiltinRoles) principals_[role] = role_principal(role);
        server_ = std::make_unique<http::Server>(
            io_, config_, router, metrics_,
            [this](const http::Request& req) -> std::optional<std::shared_ptr<const core::Principal>> {
                auto header = req.header("authorization");
                if (header.rfind("Bearer ", 0) != 0) return std::nullopt;
                std::lock_guard lock(mutex_);
                auto it = principals_.find(std::string(header.substr(7)));
                if (it == principals_.end()) return std::nullopt;
                return it->second;
            });
        port_ = server_->start("127.0.0.1", 0);
    }
    /// Stops the server gracefully (needs `io` still running).
    ~RouteServer() {
        std::promise<void> stopped;
        boost::asio::post(io_, [&] { server_->stop([&] { stopped.set_value(); }); });
        stopped.get_future().wait();
        server_.reset();
    }
    RouteServer(const RouteServer&) = delete;
    RouteServer& operator=(const RouteServer&) = delete;

    static core::Config default_config() {
        core::Config config;
        config.max_body_bytes = 1 << 20;
        return config;
    }

    /// Signs `principal` in under `token` (replacing a role's principal is allowed).
    void set_principal(const std::string& token, std::shared_ptr<const core::Principal> principal) {
        std::lock_guard lock(mutex_);
        principals_[token] = std::move(principal);
    }
    std::uint16_t port() const { return port_; }

    /// One request on a fresh connection; `token` empty sends no Authorization header. Responses up to 64 MiB.
    HttpResponse call(boost::beast::http::verb verb, const std::string& target, const std::string& body,
                      const std::string& token, const std::string& content_type = "application/json") const {
        namespace bhttp = boost::beast::http;
        boost::asio::io_context io;
        boost::asio::ip::tcp::socket socket(io);
        socket.connect({boost::asio::ip::make_address("127.0.0.1"), port_});
        bhttp::request<bhttp::string_body> request{verb, target, 11};
        request.set(bhttp::field::host, "127.0.0.1");
        if (!token.empty()) request.set(bhttp::field::authorization, "Bearer " + token);
        if (!body.empty()) request.set(bhttp::field::content_type, content_type);
        request.body() = body;
        request.prepare_payload();
        bhttp::write(socket, request);
        boost::beast::flat_buffer buffer;
        bhttp::response_parser<bhttp::string_body> parser;
        parser.body_limit(64 << 20);
        bhttp::read(socket, buffer, parser);
        return parser.release();
    }

    static boost::json::value body_of(const HttpResponse& response) { return boost::json::parse(response.body()); }
    /// The `error.code` of an error answer.
    static std::string error_code(const HttpResponse& response) {
        return std::string(body_of(response).at("error").at("code").as_string());
    }

private:
    boost::asio::io_context& io_;
    core::Config config_;
    core::Metrics metrics_;
    mutable std::mutex mutex_;
    std::map<std::string, std::shared_ptr<const core::Principal>> principals_;
    std::unique_ptr<http::Server> server_;
    std::uint16_t port_ = 0;
};

}  // namespace parley::auth::testing
