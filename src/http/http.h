/// The HTTP/1.1 + WebSocket surface: request/response types, the router with path parameters and per-route
/// access rules, and the Beast server that runs handlers as coroutines on an Asio thread pool.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/principal.h"

namespace parley::core {
class Metrics;
}

namespace parley::http {

enum class Method { kGet, kPost, kPut, kPatch, kDelete, kHead, kOptions, kOther };
std::string_view method_name(Method method);

/// One request as handlers see it. Owned by the connection for the duration of the handler call.
struct Request {
    Method method = Method::kGet;
    std::string target;  ///< raw request-target
    std::string path;    ///< percent-decoded path without query
    std::vector<std::pair<std::string, std::string>> query;    ///< decoded, in order
    std::vector<std::pair<std::string, std::string>> headers;  ///< names lower-cased
    std::vector<std::pair<std::string, std::string>> params;   ///< path parameters from the route pattern
    std::string body;
    std::string request_id;
    std::string remote_ip;
    const core::Principal* principal = nullptr;  ///< set for routes that need a signed-in user
    std::size_t max_json_bytes = 2 * 1024 * 1024;

    /// Header value by lower-case name, or "" when absent.
    std::string_view header(std::string_view lower_name) const;
    /// Path parameter (throws std::out_of_range for a name the route lacks: a programming error).
    const std::string& param(std::string_view name) const;
    /// First query parameter with that name.
    std::optional<std::string_view> query_param(std::string_view name) const;
    /// The body parsed as a JSON object with the server's limits (BadRequest / TooLarge otherwise).
    boost::json::object json() const;
    /// The signed-in user; throws Unauthorized when none (never for routes with Access::signed_in()).
    const core::Principal& user() const;
};

/// A response. Handlers build one with the helpers below.
struct Response {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;

    static Response json(const boost::json::value& value, int status = 200);
    static Response raw_json(std::string body, int status = 200);
    static Response text(std::string body, std::string content_type = "text/plain; charset=utf-8", int status = 200);
    static Response no_content();  ///< 204
    /// The CONTRACT error body {"error": {"code","message","details"}}.
    static Response error(int status, std::string_view code, std::string_view message,
                          const boost::json::array& details = {});
};

/// Who may call a route. Every route states one; the permission-matrix test enumerates them.
struct Access {
    enum class Kind { kPublic, kSignedIn, kPermission };
    Kind kind = Kind::kSignedIn;
    std::string module;                        ///< for kPermission
    core::Action action = core::Action::kView;  ///< for kPermission

    static Access open() { return {Kind::kPublic, {}, core::Action::kView}; }
    static Access signed_in() { return {Kind::kSignedIn, {}, core::Action::kView}; }
    static Access need(std::string module, core::Action action) { return {Kind::kPermission, std::move(module), action}; }
};

using Handler = std::function<boost::asio::awaitable<Response>(Request&)>;

/// One open WebSocket. send() and close() are thread-safe (they post to the socket's strand); callbacks run on
/// the socket's strand. Set the callbacks inside the on-open handler.
class WebSocketSession {
public:
    virtual ~WebSocketSession() = default;
    virtual void send(std::string text) = 0;
    /// send() of a text shared with other sockets (broadcast); by default a copy goes to send().
    virtual void send_shared(std::shared_ptr<const std::string> text) { send(*text); }
    virtual void close() = 0;
    /// Frames queued but not yet written (a slow consumer is closed past a limit).
    virtual std::size_t pending() const = 0;

    std::function<void(std::string_view text)> on_message;
    std::function<void()> on_close;
};

/// Sends one text to many sockets (live-event fan-out): the text is shared, never copied per socket, and sockets
/// that run on the same io_context get one posted handler between them instead of one each. Thread-safe.
void broadcast(const std::vector<std::shared_ptr<WebSocketSession>>& sessions,
               std::shared_ptr<const std::string> text);

/// Called once a WebSocket upgrade on a route has succeeded and access was checked.
using WebSocketHandler = std::function<void(std::shared_ptr<WebSocketSession>, const Request&)>;

struct Route {
    Method method;
    std::string pattern;  ///< "/api/v1/bots/{bot}/scenario": literal segments and {name} segments
    Access access;
    Handler handler;                 ///< empty for WebSocket routes
    WebSocketHandler websocket;      ///< set for WebSocket routes (method GET)
};

/// Routes by method and path. Built single-threaded at start-up, then read-only (thread-safe lookups).
class Router {
public:
    void add(Method method, std::string pattern, Access access, Handler handler);
    void websocket(std::string pattern, Access access, WebSocketHandler handler);

    struct Match {
        const Route* route = nullptr;
        std::vector<std::pair<std::string, std::string>> params;
        bool path_known = false;  ///< some route matches the path with another method (405 instead of 404)
        std::vector<Method> allowed;   ///< when path_known: the methods that path accepts (the `Allow` header)
        std::size_t route_index = 0;   ///< position of `route` in routes() (per-route metrics)
    };
    /// `path` is the path as sent (percent-encoded, without the query): segments are split first and decoded
    /// after, so an encoded '/' stays inside a parameter. A segment with invalid encoding or NUL matches no
    /// route. HEAD falls back to the GET route of the same path.
    Match match(Method method, std::string_view path) const;

    const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }

private:
    struct Node;
    std::vector<std::unique_ptr<Route>> routes_;
    std::shared_ptr<Node> root_;
};

/// Turns a request's credentials into a principal, or nullopt when missing/invalid/expired. Runs on a worker
/// thread; may read the store (reads are non-blocking in the sense of STYLE.md: no fsync, no network).
using Authenticator = std::function<std::optional<std::shared_ptr<const core::Principal>>(const Request&)>;

/// The Beast server. Thread-safety: start()/stop() from the owning thread; everything else runs on the pool.
class Server {
public:
    Server(boost::asio::io_context& io, const core::Config& config, const Router& router, core::Metrics& metrics,
           Authenticator authenticator);

    /// Spreads connections round robin over these io_contexts, each meant to be run by exactly one thread: a
    /// connection then lives on one thread with no strand and no cross-thread wake-up per request (measured
    /// +~20 % requests/s on 2 cores). Without it (the default), connections run on strands of `io`. Call before
    /// start(); the contexts must outlive the server's connections.
    void set_connection_contexts(std::vector<boost::asio::io_context*> contexts);
    ~Server();

    /// Binds and starts accepting; returns the bound port (useful with port 0).
    std::uint16_t start(const std::string& host, std::uint16_t port);

    /// Graceful stop: stop accepting, let in-flight requests finish (up to config.shutdown_grace_ms), close
    /// idle keep-alive connections and WebSockets. Calls `done` when every connection has ended.
    void stop(std::function<void()> done);

    std::size_t open_connections() const;
    std::size_t open_websockets() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace parley::http
