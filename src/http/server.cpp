// Server (http.h): the accept loop, one coroutine per connection on its own strand, deadlines enforced by a
// sweeper, the request path (parse → route → access → handler → error mapping → write) and graceful stop.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <fmt/format.h>

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <mutex>
#include <unordered_map>

#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/http.h"
#include "http/internal/error_mapping.h"
#include "http/internal/url.h"
#include "http/internal/websocket_session.h"

namespace parley::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using HttpMessage = bhttp::request<bhttp::string_body>;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kReadChunk = 8192;
constexpr std::size_t kMethodCount = 8;
constexpr std::size_t kMaxLingerBytes = 1 << 20;
constexpr char kRequestsName[] = "parley_http_requests_total";
constexpr char kRequestsHelp[] = "HTTP requests served, by route pattern, method and status";
constexpr char kDurationName[] = "parley_http_request_duration_seconds";
constexpr char kDurationHelp[] = "Time from a complete request header to the response ready to write, by route pattern";

// Statuses whose counters are cached per route; any other status takes the registry's (locked) slow path.
constexpr std::array<int, 26> kCachedStatuses = {101, 200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404, 405,
                                                 409, 410, 413, 415, 422, 426, 429, 431, 500, 501, 502, 503, 504};

int status_slot(int status) {
    for (std::size_t i = 0; i < kCachedStatuses.size(); ++i) {
        if (kCachedStatuses[i] == status) return static_cast<int>(i);
    }
    return -1;
}

std::int64_t now_ns() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

std::int64_t ms_to_ns(unsigned ms) { return static_cast<std::int64_t>(ms) * 1'000'000; }

Method to_method(bhttp::verb verb) {
    switch (verb) {
        case bhttp::verb::get: return Method::kGet;
        case bhttp::verb::post: return Method::kPost;
        case bhttp::verb::put: return Method::kPut;
        case bhttp::verb::patch: return Method::kPatch;
        case bhttp::verb::delete_: return Method::kDelete;
        case bhttp::verb::head: return Method::kHead;
        case bhttp::verb::options: return Method::kOptions;
        default: return Method::kOther;
    }
}

/// An incoming X-Request-Id is reused only if it is short and harmless in logs and headers.
bool sane_request_id(std::string_view id) {
    if (id.empty() || id.size() > 64) return false;
    for (char c : id) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

/// Handler-supplied header text must not be able to inject lines.
bool header_safe(std::string_view text) {
    for (char c : text) {
        if (c == '\r' || c == '\n' || c == '\0') return false;
    }
    return true;
}

void append_number(std::string& out, std::uint64_t value) {
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
    (void)ec;
    out.append(digits, end);
}

}  // namespace

/// Metric handles for one route (or for unmatched requests of one method), created at start so the request path
/// only touches atomics. Counter pointers are filled on first use of a status; racing fills store the same value.
struct RouteStats {
    std::string route_label;  ///< escaped pattern
    std::string method_label;
    core::Histogram* duration = nullptr;
    std::array<std::atomic<std::atomic<std::uint64_t>*>, kCachedStatuses.size()> counters{};
};

class Connection;

/// Shared state of one Server (Server::Impl is this; connections hold it by shared_ptr). Fields above `mutex` are immutable after start() or atomic; the acceptor and the
/// timers live on `strand`; `live`, `accepting`, `done` and `finished` are guarded by `mutex` (taken per connection
/// and per sweep, never per request).
struct ServerCore : std::enable_shared_from_this<ServerCore> {
    ServerCore(asio::io_context& io_context, const core::Config& cfg, const Router& routes, core::Metrics& registry,
         Authenticator auth);

    RouteStats& stats_for_route(std::size_t index) { return *route_stats[index]; }
    RouteStats& stats_unmatched(Method method) { return *unmatched_stats[static_cast<std::size_t>(method)]; }
    void record(RouteStats& stats, int status, double seconds);

    asio::awaitable<void> accept_loop();
    void refuse(tcp::socket& socket);
    void schedule_sweep();
    void sweep();
    void force_all();
    void release(Connection* connection);
    void check_done();
    std::vector<std::shared_ptr<Connection>> snapshot();

    asio::io_context& io;
    const core::Config config;
    const Router& router;
    core::Metrics& metrics;
    const Authenticator authenticator;
    asio::strand<asio::io_context::executor_type> strand;
    tcp::acceptor acceptor;
    asio::steady_timer sweeper;
    asio::steady_timer grace_timer;
    std::chrono::milliseconds tick;
    std::vector<std::unique_ptr<RouteStats>> route_stats;
    std::array<std::unique_ptr<RouteStats>, kMethodCount> unmatched_stats;
    std::string refusal;  ///< canned 503 written to connections beyond max_connections
    std::atomic<std::int64_t>& connections_gauge;
    std::atomic<std::int64_t>& websockets_gauge;
    std::atomic<std::size_t> connections{0};
    std::atomic<std::size_t> websockets{0};
    std::atomic<bool> stopping{false};

    std::vector<asio::io_context*> contexts;  ///< set before start(); empty: connections on strands of `io`
    std::size_t next_context = 0;             ///< round robin (accept loop only)

    std::mutex mutex;
    std::unordered_map<Connection*, std::weak_ptr<Connection>> live;
    bool accepting = false;
    bool finished = false;
    std::function<void()> done;
};

/// One TCP connection: a coroutine on its own strand that reads requests in order, runs their handlers one at a
/// time and writes the answers; after an upgrade it hosts a WebSocket. Deadlines are an atomic that the server's
/// sweeper reads; everything else is touched only on the strand. Owned by its coroutine (shared_ptr).
class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(std::shared_ptr<ServerCore> server, tcp::socket socket)
        : server_(std::move(server)), executor_(socket.get_executor()), socket_(std::move(socket)) {
        boost::system::error_code ec;
        auto endpoint = socket_.remote_endpoint(ec);
        if (!ec) remote_ip_ = endpoint.address().to_string();
        set_deadline(server_->config.header_timeout_ms);
    }

    const asio::any_io_executor& executor() const { return executor_; }
    std::int64_t deadline() const { return deadline_ns_.load(std::memory_order_relaxed); }

    asio::awaitable<void> run();

    /// Server::stop (on the strand): idle connections close now, busy ones after their response, WebSockets
    /// get a close frame.
    void request_stop() {
        stop_requested_ = true;
        if (phase_ == Phase::kIdle) {
            close_socket();
        } else if (phase_ == Phase::kWebSocket && websocket_) {
            websocket_->close_going_away();
        }
    }

    /// Closes the connection now (deadline passed or shutdown grace over). On the strand.
    void force_close() {
        if (websocket_) {
            websocket_->abort();
        } else {
            close_socket();
        }
    }

    /// Shutdown grace over (on the strand): also cancels what a running handler awaits (terminal cancellation
    /// of the connection coroutine), so a stuck handler cannot hold the shutdown.
    void terminate() {
        force_close();
        cancel_.emit(asio::cancellation_type::terminal);
    }

    asio::cancellation_slot cancel_slot() { return cancel_.slot(); }

    /// Sweeper callback on the strand: re-checks the deadline, which may have moved since the sweep.
    void expire_if_due() {
        std::int64_t due = deadline();
        if (due != 0 && due <= now_ns()) {
            timed_out_ = true;
            force_close();
        }
    }

private:
    enum class Phase { kIdle, kReading, kHandling, kWebSocket };

    void set_deadline(unsigned timeout_ms) {
        deadline_ns_.store(timeout_ms == 0 ? 0 : now_ns() + ms_to_ns(timeout_ms), std::memory_order_relaxed);
    }
    void clear_deadline() { deadline_ns_.store(0, std::memory_order_relaxed); }
    void close_socket() {
        boost::system::error_code ignored;
        socket_.close(ignored);
    }

    asio::awaitable<bool> serve(HttpMessage& message);
    asio::awaitable<void> upgrade(HttpMessage& message, Request& request, const Route& route, RouteStats& stats,
                                  Clock::time_point started);
    asio::awaitable<void> fail_read(boost::system::error_code ec);
    asio::awaitable<bool> write_response(const Response& response, std::string_view request_id, bool keep_alive,
                                         unsigned version, bool head_only);
    asio::awaitable<void> linger();
    std::optional<Response> check_access(const Route& route, Request& request);
    void finish(RouteStats& stats, const Request& request, std::string_view pattern, int status,
                Clock::time_point started);

    std::shared_ptr<ServerCore> server_;
    asio::any_io_executor executor_;
    tcp::socket socket_;
    beast::flat_buffer buffer_;  ///< reused for every request of the connection
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    std::string head_;  ///< reused response head
    std::string remote_ip_;
    std::shared_ptr<const core::Principal> principal_;  ///< keeps Request::principal alive
    std::shared_ptr<internal::WebSocketSessionImpl> websocket_;
    asio::cancellation_signal cancel_;
    std::atomic<std::int64_t> deadline_ns_{0};
    Phase phase_ = Phase::kIdle;
    bool stop_requested_ = false;
    bool timed_out_ = false;
};

// ---------------------------------------------------------------------------------------------------------------
// Connection

asio::awaitable<void> Connection::run() {
    const core::Config& config = server_->config;
    bool first = true;
    try {
        for (;;) {
            if (buffer_.size() == 0) {
                // Idle: between requests (or before the first one, whose header deadline started at accept).
                phase_ = Phase::kIdle;
                if (stop_requested_ || server_->stopping.load(std::memory_order_relaxed)) break;
                if (!first) set_deadline(config.idle_timeout_ms);
                auto [ec, bytes] = co_await socket_.async_read_some(buffer_.prepare(kReadChunk), kTuple);
                if (ec) break;
                buffer_.commit(bytes);
                if (!first) set_deadline(config.header_timeout_ms);
            } else if (!first) {
                set_deadline(config.header_timeout_ms);
            }
            first = false;
            phase_ = Phase::kReading;
            parser_.emplace();
            parser_->header_limit(static_cast<std::uint32_t>(config.max_header_bytes));
            parser_->body_limit(config.max_body_bytes);
            {
                auto [ec, bytes] = co_await bhttp::async_read_header(socket_, buffer_, *parser_, kTuple);
                if (ec) {
                    co_await fail_read(ec);
                    break;
                }
            }
            if (!parser_->is_done()) {
                auto& header = parser_->get();
                if (beast::iequals(header[bhttp::field::expect], "100-continue")) {
                    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
                    set_deadline(config.body_timeout_ms);
                    auto [ec, bytes] = co_await asio::async_write(socket_, asio::buffer(kContinue), kTuple);
                    if (ec) break;
                }
                set_deadline(config.body_timeout_ms);
                auto [ec, bytes] = co_await bhttp::async_read(socket_, buffer_, *parser_, kTuple);
                if (ec) {
                    co_await fail_read(ec);
                    break;
                }
            }
            clear_deadline();
            phase_ = Phase::kHandling;
            if (!co_await serve(parser_->get())) break;
        }
    } catch (const boost::system::system_error& e) {
        // Terminal cancellation at the end of the shutdown grace surfaces here.
        core::log_event(e.code() == asio::error::operation_aborted ? spdlog::level::debug : spdlog::level::err,
                        "http_connection_failed", fmt::format(R"("error":{})", core::json_quote(e.what())));
    } catch (const std::exception& e) {
        core::log_event(spdlog::level::err, "http_connection_failed",
                        fmt::format(R"("error":{})", core::json_quote(e.what())));
    }
    clear_deadline();
    if (!websocket_) {
        boost::system::error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_both, ignored);
        socket_.close(ignored);
    }
    websocket_.reset();
    server_->release(this);
}

asio::awaitable<void> Connection::fail_read(boost::system::error_code ec) {
    int status = 0;
    std::string_view code;
    std::string message;
    if (ec == bhttp::error::header_limit) {
        status = 431;
        code = "header_too_large";
        message = fmt::format("the request header exceeds {} bytes", server_->config.max_header_bytes);
    } else if (ec == bhttp::error::body_limit) {
        status = 413;
        code = "too_large";
        message = fmt::format("the request body exceeds {} bytes", server_->config.max_body_bytes);
    } else if (ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category() && ec != bhttp::error::end_of_stream &&
               ec != bhttp::error::partial_message) {
        status = 400;
        code = "bad_request";
        message = "malformed HTTP request";
    }
    if (status == 0) {
        if (timed_out_) {
            core::log_event(spdlog::level::debug, "http_client_timeout",
                            fmt::format(R"("remote_ip":"{}")", remote_ip_));
        }
        co_return;  // the peer went away or was too slow: nothing to answer
    }
    const auto started = Clock::now();
    Request request;
    request.request_id = core::new_id();
    request.remote_ip = remote_ip_;
    Method method = Method::kOther;
    if (parser_ && parser_->is_header_done()) {
        method = to_method(parser_->get().method());
        request.target = std::string(parser_->get().target());
        request.path = request.target.substr(0, request.target.find('?'));
    }
    request.method = method;
    Response response = Response::error(status, code, message);
    finish(server_->stats_unmatched(method), request, {}, status, started);
    co_await write_response(response, request.request_id, false, 11, method == Method::kHead);
    co_await linger();
}

asio::awaitable<void> Connection::linger() {
    // Read and drop what the client still sends, so closing does not reset the connection before it has read
    // our error answer. Bounded in bytes and by the sweeper's deadline.
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    set_deadline(std::min(1000u, server_->config.body_timeout_ms));
    std::array<char, 4096> sink;
    std::size_t drained = 0;
    while (drained < kMaxLingerBytes) {
        auto [ec, bytes] = co_await socket_.async_read_some(asio::buffer(sink), kTuple);
        if (ec) break;
        drained += bytes;
    }
}

std::optional<Response> Connection::check_access(const Route& route, Request& request) {
    if (route.access.kind == Access::Kind::kPublic) return std::nullopt;
    auto principal = server_->authenticator ? server_->authenticator(request) : std::nullopt;
    if (!principal || !*principal) {
        return Response::error(401, "unauthenticated", "sign in first: send Authorization: Bearer <token>");
    }
    principal_ = std::move(*principal);
    request.principal = principal_.get();
    if (route.access.kind == Access::Kind::kPermission &&
        !principal_->can(route.access.module, route.access.action)) {
        std::string needed = route.access.module + "." + std::string(core::action_name(route.access.action));
        return Response::error(403, "forbidden", "this needs the permission " + needed,
                               boost::json::array{boost::json::object{{"permission", needed}}});
    }
    return std::nullopt;
}

asio::awaitable<bool> Connection::serve(HttpMessage& message) {
    ServerCore& server = *server_;
    const auto started = Clock::now();

    Request request;
    request.method = to_method(message.method());
    request.target.assign(message.target().data(), message.target().size());
    request.remote_ip = remote_ip_;
    request.max_json_bytes = server.config.max_json_bytes;
    request.headers.reserve(8);
    for (const auto& field : message) {
        std::string name(field.name_string());
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        request.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    std::string_view incoming_id = request.header("x-request-id");
    request.request_id = sane_request_id(incoming_id) ? std::string(incoming_id) : core::new_id();
    request.body = std::move(message.body());
    principal_.reset();

    const Route* route = nullptr;
    RouteStats* stats = &server.stats_unmatched(request.method);
    std::optional<Response> answer;
    std::exception_ptr failure;
    bool upgrade_requested = false;
    try {
        auto parts = internal::split_target(request.target);
        if (!parts || !internal::percent_decode(parts->path, request.path) ||
            !internal::parse_query(parts->query, request.query)) {
            answer = Response::error(400, "bad_request", "malformed request target (bad percent-encoding or NUL)");
        } else {
            auto match = server.router.match(request.method, parts->path);
            if (!match.route && match.path_known) {
                answer = Response::error(405, "method_not_allowed",
                                         fmt::format("{} is not allowed here", method_name(request.method)));
                std::string allow;
                for (Method m : match.allowed) {
                    if (!allow.empty()) allow += ", ";
                    allow += method_name(m);
                }
                answer->headers.emplace_back("Allow", std::move(allow));
            } else if (!match.route) {
                answer = Response::error(404, "not_found", "no such endpoint");
            } else {
                route = match.route;
                if (match.route_index < server.route_stats.size()) stats = &server.stats_for_route(match.route_index);
                request.params = std::move(match.params);
                if (route->websocket) {
                    if (!beast::websocket::is_upgrade(message)) {
                        answer = Response::error(426, "upgrade_required", "this endpoint is a WebSocket");
                        answer->headers.emplace_back("Upgrade", "websocket");
                    } else {
                        upgrade_requested = true;
                        // Browsers cannot set headers on a WebSocket: accept the token as ?token= too.
                        auto token = request.query_param("token");
                        if (token && request.header("authorization").empty()) {
                            request.headers.emplace_back("authorization", "Bearer " + std::string(*token));
                        }
                    }
                }
                if (!answer) answer = check_access(*route, request);
                if (!answer && !upgrade_requested) answer = co_await route->handler(request);
            }
        }
    } catch (...) {
        failure = std::current_exception();
    }
    if (failure) {
        answer = internal::response_for_exception(failure, request.request_id, route ? route->pattern : "");
        upgrade_requested = false;
    }

    if (upgrade_requested && !answer) {
        co_await upgrade(message, request, *route, *stats, started);
        co_return false;
    }

    const bool keep_alive =
        message.keep_alive() && !stop_requested_ && !server.stopping.load(std::memory_order_relaxed);
    // Recorded before the write, so a client that has read its answer also sees it counted.
    finish(*stats, request, route ? std::string_view(route->pattern) : std::string_view{}, answer->status, started);
    const bool written = co_await write_response(*answer, request.request_id, keep_alive, message.version(),
                                                 request.method == Method::kHead);
    co_return written && keep_alive;
}

asio::awaitable<void> Connection::upgrade(HttpMessage& message, Request& request, const Route& route,
                                          RouteStats& stats, Clock::time_point started) {
    ServerCore& server = *server_;
    phase_ = Phase::kWebSocket;
    clear_deadline();  // the WebSocket stream keeps its own handshake/idle timeouts
    internal::WebSocketLimits limits;
    limits.max_message_bytes = server.config.max_json_bytes;
    websocket_ = std::make_shared<internal::WebSocketSessionImpl>(std::move(socket_), limits);
    const bool accepted = co_await websocket_->accept(message, request.request_id);
    finish(stats, request, route.pattern, accepted ? 101 : 400, started);
    if (!accepted) co_return;
    server.websockets.fetch_add(1, std::memory_order_relaxed);
    server.websockets_gauge.fetch_add(1, std::memory_order_relaxed);
    if (stop_requested_) websocket_->close_going_away();
    try {
        route.websocket(websocket_, request);
    } catch (const std::exception& e) {
        core::log_event(spdlog::level::err, "websocket_open_failed",
                        fmt::format(R"("route":{},"error":{},"request_id":{})", core::json_quote(route.pattern),
                                    core::json_quote(e.what()), core::json_quote(request.request_id)));
        websocket_->close();
    }
    co_await websocket_->run();
    server.websockets.fetch_sub(1, std::memory_order_relaxed);
    server.websockets_gauge.fetch_sub(1, std::memory_order_relaxed);
}

asio::awaitable<bool> Connection::write_response(const Response& response, std::string_view request_id,
                                                 bool keep_alive, unsigned version, bool head_only) {
    const int status = response.status;
    const bool bodyless = status == 204 || status == 304 || status < 200;
    head_.clear();
    head_ += "HTTP/1.1 ";
    append_number(head_, static_cast<std::uint64_t>(status));
    head_ += ' ';
    auto reason = bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(status)));
    head_.append(reason.empty() ? std::string_view("Unknown") : std::string_view(reason.data(), reason.size()));
    head_ += "\r\n";
    if (!bodyless) {
        if (!response.content_type.empty() && header_safe(response.content_type)) {
            head_ += "Content-Type: ";
            head_ += response.content_type;
            head_ += "\r\n";
        }
        head_ += "Content-Length: ";
        append_number(head_, response.body.size());
        head_ += "\r\n";
    }
    head_ += "X-Request-Id: ";
    head_ += request_id;
    head_ += "\r\n";
    for (const auto& [name, value] : response.headers) {
        if (name.empty() || !header_safe(name) || !header_safe(value)) continue;
        head_ += name;
        head_ += ": ";
        head_ += value;
        head_ += "\r\n";
    }
    if (!keep_alive) {
        head_ += "Connection: close\r\n";
    } else if (version < 11) {
        head_ += "Connection: keep-alive\r\n";
    }
    head_ += "\r\n";

    std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), asio::const_buffer{}};
    if (!bodyless && !head_only) buffers[1] = asio::buffer(response.body);
    set_deadline(server_->config.body_timeout_ms);  // a client that does not read its answer is dropped
    auto [ec, bytes] = co_await asio::async_write(socket_, buffers, kTuple);
    clear_deadline();
    co_return !ec;
}

void Connection::finish(RouteStats& stats, const Request& request, std::string_view pattern, int status,
                        Clock::time_point started) {
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    server_->record(stats, status, seconds);
    auto* logger = spdlog::default_logger_raw();
    if (logger != nullptr && logger->should_log(spdlog::level::info)) {
        core::log_event(spdlog::level::info, "http_request",
                        fmt::format(R"("method":"{}","path":{},"route":{},"status":{},"ms":{:.3f},)"
                                    R"("request_id":{},"remote_ip":"{}")",
                                    method_name(request.method), core::json_quote(request.path),
                                    core::json_quote(pattern), status, seconds * 1000.0,
                                    core::json_quote(request.request_id), request.remote_ip));
    }
}

asio::awaitable<void> run_connection(std::shared_ptr<Connection> connection) { co_await connection->run(); }

// ---------------------------------------------------------------------------------------------------------------
// ServerCore

ServerCore::ServerCore(asio::io_context& io_context, const core::Config& cfg, const Router& routes,
                   core::Metrics& registry, Authenticator auth)
    : io(io_context),
      config(cfg),
      router(routes),
      metrics(registry),
      authenticator(std::move(auth)),
      strand(asio::make_strand(io_context)),
      acceptor(strand),
      sweeper(strand),
      grace_timer(strand),
      connections_gauge(registry.gauge("parley_http_connections_open", "Open HTTP connections (WebSockets included)")),
      websockets_gauge(registry.gauge("parley_websockets_open", "Open WebSocket sessions")) {
    unsigned shortest = std::min({cfg.header_timeout_ms, cfg.body_timeout_ms, cfg.idle_timeout_ms});
    tick = std::chrono::milliseconds(std::clamp(shortest / 4, 5u, 250u));

    auto make_stats = [&](std::string_view pattern, Method method) {
        auto stats = std::make_unique<RouteStats>();
        stats->route_label = core::label_value(pattern);
        stats->method_label = std::string(method_name(method));
        stats->duration = &registry.histogram(kDurationName, kDurationHelp, "route=\"" + stats->route_label + "\"");
        return stats;
    };
    for (const auto& route : routes.routes()) route_stats.push_back(make_stats(route->pattern, route->method));
    for (std::size_t i = 0; i < kMethodCount; ++i) unmatched_stats[i] = make_stats("unmatched", static_cast<Method>(i));

    std::string body = Response::error(503, "unavailable", "too many connections").body;
    refusal = fmt::format(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
        "Connection: close\r\nRetry-After: 1\r\n\r\n{}",
        body.size(), body);
}

void ServerCore::record(RouteStats& stats, int status, double seconds) {
    stats.duration->observe(seconds);
    int slot = status_slot(status);
    auto labels = [&] {
        return fmt::format(R"(route="{}",method="{}",status="{}")", stats.route_label, stats.method_label, status);
    };
    if (slot < 0) {
        metrics.counter(kRequestsName, kRequestsHelp, labels()).fetch_add(1, std::memory_order_relaxed);
        return;
    }
    auto& cached = stats.counters[static_cast<std::size_t>(slot)];
    std::atomic<std::uint64_t>* counter = cached.load(std::memory_order_acquire);
    if (counter == nullptr) {
        counter = &metrics.counter(kRequestsName, kRequestsHelp, labels());
        cached.store(counter, std::memory_order_release);
    }
    counter->fetch_add(1, std::memory_order_relaxed);
}

asio::awaitable<void> ServerCore::accept_loop() {
    auto self = shared_from_this();
    for (;;) {
        tcp::socket socket = contexts.empty()
                                 ? tcp::socket(asio::make_strand(io))
                                 : tcp::socket(contexts[next_context++ % contexts.size()]->get_executor());
        auto [ec] = co_await acceptor.async_accept(socket, kTuple);
        if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor.is_open()) break;
            core::log_event(spdlog::level::warn, "http_accept_failed",
                            fmt::format(R"("error":{})", core::json_quote(ec.message())));
            // Out of descriptors and the like: back off instead of spinning.
            asio::steady_timer pause(strand, std::chrono::milliseconds(50));
            co_await pause.async_wait(kTuple);
            continue;
        }
        if (stopping.load() || connections.load(std::memory_order_relaxed) >= config.max_connections) {
            refuse(socket);
            continue;
        }
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        auto connection = std::make_shared<Connection>(self, std::move(socket));
        {
            std::lock_guard lock(mutex);
            live.emplace(connection.get(), connection);
        }
        connections.fetch_add(1, std::memory_order_relaxed);
        connections_gauge.fetch_add(1, std::memory_order_relaxed);
        asio::co_spawn(connection->executor(), run_connection(connection),
                       asio::bind_cancellation_slot(connection->cancel_slot(), asio::detached));
    }
    {
        std::lock_guard lock(mutex);
        accepting = false;
    }
    check_done();
}

void ServerCore::refuse(tcp::socket& socket) {
    boost::system::error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(asio::buffer(refusal), ignored);
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
}

void ServerCore::schedule_sweep() {
    sweeper.expires_after(tick);
    sweeper.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (ec) return;
        self->sweep();
        {
            std::lock_guard lock(self->mutex);
            if (self->finished) return;
        }
        self->schedule_sweep();
    });
}

void ServerCore::sweep() {
    const std::int64_t now = now_ns();
    std::vector<std::shared_ptr<Connection>> due;
    {
        std::lock_guard lock(mutex);
        for (auto& [raw, weak] : live) {
            std::int64_t deadline = raw->deadline();
            if (deadline != 0 && deadline <= now) {
                if (auto connection = weak.lock()) due.push_back(std::move(connection));
            }
        }
    }
    for (auto& connection : due) {
        asio::post(connection->executor(), [connection] { connection->expire_if_due(); });
    }
}

std::vector<std::shared_ptr<Connection>> ServerCore::snapshot() {
    std::vector<std::shared_ptr<Connection>> all;
    std::lock_guard lock(mutex);
    all.reserve(live.size());
    for (auto& [raw, weak] : live) {
        if (auto connection = weak.lock()) all.push_back(std::move(connection));
    }
    return all;
}

void ServerCore::force_all() {
    auto all = snapshot();
    if (!all.empty()) {
        core::log_event(spdlog::level::warn, "http_shutdown_forced", fmt::format(R"("connections":{})", all.size()));
    }
    for (auto& connection : all) {
        asio::post(connection->executor(), [connection] { connection->terminate(); });
    }
}

void ServerCore::release(Connection* connection) {
    {
        std::lock_guard lock(mutex);
        live.erase(connection);
    }
    connections.fetch_sub(1, std::memory_order_relaxed);
    connections_gauge.fetch_sub(1, std::memory_order_relaxed);
    check_done();
}

void ServerCore::check_done() {
    std::function<void()> callback;
    {
        std::lock_guard lock(mutex);
        if (!stopping.load() || accepting || !live.empty() || finished) return;
        finished = true;
        callback = std::move(done);
    }
    asio::post(strand, [self = shared_from_this()] {
        self->grace_timer.cancel();
        self->sweeper.cancel();
    });
    if (callback) asio::post(io, std::move(callback));
}

// ---------------------------------------------------------------------------------------------------------------
// Server

struct Server::Impl : ServerCore {
    using ServerCore::ServerCore;
};

Server::Server(asio::io_context& io, const core::Config& config, const Router& router, core::Metrics& metrics,
               Authenticator authenticator)
    : impl_(std::make_shared<Impl>(io, config, router, metrics, std::move(authenticator))) {}

void Server::set_connection_contexts(std::vector<asio::io_context*> contexts) {
    impl_->contexts = std::move(contexts);
}

Server::~Server() {
    // Normally stop() ran and finished; otherwise stop accepting so queued handlers do not outlive their owner.
    if (!impl_->stopping.load()) stop(nullptr);
}

std::uint16_t Server::start(const std::string& host, std::uint16_t port) {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(host, ec);
    tcp::endpoint endpoint;
    if (!ec) {
        endpoint = tcp::endpoint(address, port);
    } else {
        tcp::resolver resolver(impl_->io);
        auto results = resolver.resolve(host, std::to_string(port));  // start-up only: blocking is fine here
        endpoint = results.begin()->endpoint();
    }
    auto& acceptor = impl_->acceptor;
    acceptor.open(endpoint.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(asio::socket_base::max_listen_connections);
    const auto bound = acceptor.local_endpoint().port();
    {
        std::lock_guard lock(impl_->mutex);
        impl_->accepting = true;
    }
    asio::co_spawn(impl_->strand, impl_->accept_loop(), asio::detached);
    asio::post(impl_->strand, [impl = impl_] { impl->schedule_sweep(); });
    return bound;
}

void Server::stop(std::function<void()> done) {
    auto impl = impl_;
    {
        std::lock_guard lock(impl->mutex);
        impl->done = std::move(done);
    }
    impl->stopping.store(true);
    asio::post(impl->strand, [impl] {
        boost::system::error_code ignored;
        impl->acceptor.close(ignored);
        impl->grace_timer.expires_after(std::chrono::milliseconds(impl->config.shutdown_grace_ms));
        impl->grace_timer.async_wait([impl](boost::system::error_code ec) {
            if (!ec) impl->force_all();
        });
    });
    for (auto& connection : impl->snapshot()) {
        asio::post(connection->executor(), [connection] { connection->request_stop(); });
    }
    impl->check_done();
}

std::size_t Server::open_connections() const { return impl_->connections.load(std::memory_order_relaxed); }

std::size_t Server::open_websockets() const { return impl_->websockets.load(std::memory_order_relaxed); }

}  // namespace parley::http
