// Server end to end on 127.0.0.1, port 0, with real Beast clients: keep-alive, limits, timeouts, access, the
// error mapping, request ids, metrics, WebSockets and graceful stop.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/metrics.h"
#include "http/http.h"
#include "store/store.h"

namespace parley::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using HttpResponse = bhttp::response<bhttp::string_body>;

void set_receive_timeout(tcp::socket& socket, std::chrono::milliseconds timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/// A blocking Beast client on its own io_context (the test thread).
class Client {
public:
    explicit Client(std::uint16_t port) {
        socket_.connect({asio::ip::make_address("127.0.0.1"), port});
        set_receive_timeout(socket_, 5s);
    }

    HttpResponse send(bhttp::verb verb, std::string target, std::string body = {},
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
        write(verb, std::move(target), std::move(body), std::move(headers));
        return read();
    }
    void write(bhttp::verb verb, std::string target, std::string body = {},
               std::vector<std::pair<std::string, std::string>> headers = {}) {
        bhttp::request<bhttp::string_body> request{verb, target, 11};
        request.set(bhttp::field::host, "127.0.0.1");
        for (auto& [name, value] : headers) request.set(name, value);
        request.body() = std::move(body);
        request.prepare_payload();
        bhttp::write(socket_, request);
    }
    HttpResponse read() {
        HttpResponse response;
        bhttp::read(socket_, buffer_, response);
        return response;
    }
    tcp::socket& socket() { return socket_; }

private:
    asio::io_context io_;
    tcp::socket socket_{io_};
    beast::flat_buffer buffer_;
};

boost::json::object error_of(const HttpResponse& response) {
    auto value = boost::json::parse(response.body());
    return value.at("error").as_object();
}

std::shared_ptr<const core::Principal> make_principal(std::string id, std::vector<std::string> permissions) {
    auto principal = std::make_shared<core::Principal>();
    principal->user_id = std::move(id);
    for (auto& p : permissions) principal->permissions.insert(std::move(p));
    return principal;
}

class ServerTest : public ::testing::Test {
protected:
    void SetUp() override {
        config_.header_timeout_ms = 300;
        config_.body_timeout_ms = 1000;
        config_.idle_timeout_ms = 2000;
        config_.max_body_bytes = 1024;
        config_.max_header_bytes = 1024;
        config_.shutdown_grace_ms = 2000;
        add_routes();
        auto admin = make_principal("u-admin", {"bots.view", "bots.edit"});
        auto viewer = make_principal("u-viewer", {"bots.view"});
        server_ = std::make_unique<Server>(
            io_, config_, router_, metrics_,
            [admin, viewer](const Request& request) -> std::optional<std::shared_ptr<const core::Principal>> {
                auto header = request.header("authorization");
                if (header == "Bearer admin") return admin;
                if (header == "Bearer viewer") return viewer;
                return std::nullopt;
            });
        if (pinned()) server_->set_connection_contexts({&io_, &second_});
        port_ = server_->start("127.0.0.1", 0);
        if (pinned()) {
            threads_.emplace_back([this] { io_.run(); });
            threads_.emplace_back([this] {
                auto guard = asio::make_work_guard(second_);
                second_.run();
            });
        } else {
            for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
        }
    }

    void TearDown() override {
        if (!stopped_) stop_and_wait();
        io_.stop();
        second_.stop();
        for (auto& thread : threads_) thread.join();
    }

    /// Connections on one io_context per thread (what the app does) instead of strands of a shared one.
    virtual bool pinned() const { return false; }

    void stop_and_wait() {
        std::promise<void> done;
        auto future = done.get_future();
        server_->stop([&done] { done.set_value(); });
        ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
        stopped_ = true;
    }

    void add_routes() {
        router_.add(Method::kGet, "/healthz", Access::open(),
                    [](Request&) -> asio::awaitable<Response> { co_return Response::raw_json(R"({"status":"ok"})"); });
        router_.add(Method::kPost, "/echo", Access::open(),
                    [](Request& request) -> asio::awaitable<Response> { co_return Response::text(request.body); });
        router_.add(Method::kGet, "/params/{name}", Access::open(), [](Request& request) -> asio::awaitable<Response> {
            co_return Response::text(request.param("name") + "|" + std::string(request.query_param("x").value_or("-")));
        });
        router_.add(Method::kGet, "/throw/not-found", Access::open(), [](Request&) -> asio::awaitable<Response> {
            throw core::NotFound("bot b1 not found");
            co_return Response::no_content();
        });
        router_.add(Method::kGet, "/throw/conflict", Access::open(), [](Request&) -> asio::awaitable<Response> {
            throw store::StoreError(store::StoreError::Kind::kConstraint, "UNIQUE constraint failed: bots.name");
            co_return Response::no_content();
        });
        router_.add(Method::kGet, "/throw/runtime", Access::open(), [](Request&) -> asio::awaitable<Response> {
            throw std::runtime_error("secret detail of the database");
            co_return Response::no_content();
        });
        router_.add(Method::kGet, "/private", Access::signed_in(), [](Request& request) -> asio::awaitable<Response> {
            co_return Response::text(request.user().user_id);
        });
        router_.add(Method::kPost, "/bots", Access::need("bots", core::Action::kEdit),
                    [](Request&) -> asio::awaitable<Response> { co_return Response::json({{"id", "b1"}}, 201); });
        router_.add(Method::kGet, "/slow", Access::open(), [](Request&) -> asio::awaitable<Response> {
            asio::steady_timer timer(co_await asio::this_coro::executor, 600ms);
            co_await timer.async_wait(asio::use_awaitable);
            co_return Response::json({{"slow", true}});
        });
        router_.add(Method::kGet, "/stuck", Access::open(), [](Request&) -> asio::awaitable<Response> {
            asio::steady_timer timer(co_await asio::this_coro::executor, 60s);
            co_await timer.async_wait(asio::use_awaitable);  // cancelled when the shutdown grace runs out
            co_return Response::no_content();
        });
        router_.websocket("/ws", Access::signed_in(), [this](std::shared_ptr<WebSocketSession> session, const Request&) {
            std::weak_ptr<WebSocketSession> weak = session;
            session->on_message = [this, weak](std::string_view text) {
                auto self = weak.lock();
                if (!self) return;
                if (text == "join") {  // joins the broadcast list (BroadcastReachesEverySocketOnce)
                    {
                        std::lock_guard lock(joined_mutex_);
                        joined_.push_back(self);
                    }
                    self->send("joined");
                } else if (text == "close") {
                    self->close();
                } else if (text == "from-thread") {
                    std::thread([self] { self->send("hello from another thread"); }).detach();
                } else {
                    self->send("echo:" + std::string(text));
                }
            };
        });
    }

    /// Sends two broadcasts to `count` joined sockets; each socket receives both, once each, in order.
    void expect_broadcast_reaches_every_socket_once(int count) {
        asio::io_context io;
        std::vector<std::unique_ptr<websocket::stream<tcp::socket>>> sockets;
        beast::flat_buffer buffer;
        for (int i = 0; i < count; ++i) {
            auto ws = std::make_unique<websocket::stream<tcp::socket>>(io);
            ws->next_layer().connect({asio::ip::make_address("127.0.0.1"), port_});
            set_receive_timeout(ws->next_layer(), 5s);
            ws->handshake("127.0.0.1", "/ws?token=admin");
            ws->write(asio::buffer(std::string_view("join")));
            ws->read(buffer);
            ASSERT_EQ(beast::buffers_to_string(buffer.data()), "joined");
            buffer.clear();
            sockets.push_back(std::move(ws));
        }
        std::vector<std::shared_ptr<WebSocketSession>> targets;
        {
            std::lock_guard lock(joined_mutex_);
            targets = joined_;
        }
        ASSERT_EQ(targets.size(), static_cast<std::size_t>(count));
        broadcast(targets, std::make_shared<const std::string>("first"));
        broadcast(targets, std::make_shared<const std::string>("second"));
        for (auto& ws : sockets) {
            ws->read(buffer);
            EXPECT_EQ(beast::buffers_to_string(buffer.data()), "first");
            buffer.clear();
            ws->read(buffer);
            EXPECT_EQ(beast::buffers_to_string(buffer.data()), "second");
            buffer.clear();
            ws->write(asio::buffer(std::string_view("ping")));  // nothing else was queued before the echo
            ws->read(buffer);
            EXPECT_EQ(beast::buffers_to_string(buffer.data()), "echo:ping");
            buffer.clear();
        }
        for (auto& ws : sockets) ws->close(websocket::close_code::normal);
        for (const auto& target : targets) EXPECT_EQ(target->pending(), 0u);
        std::lock_guard lock(joined_mutex_);
        joined_.clear();  // sockets must not outlive the io_contexts declared below
    }

    std::mutex joined_mutex_;
    std::vector<std::shared_ptr<WebSocketSession>> joined_;
    asio::io_context io_;
    asio::io_context second_{1};
    core::Config config_;
    Router router_;
    core::Metrics metrics_;
    std::unique_ptr<Server> server_;
    std::uint16_t port_ = 0;
    std::vector<std::thread> threads_;
    bool stopped_ = false;
};

TEST_F(ServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
    Client client(port_);
    for (int i = 0; i < 3; ++i) {
        auto response = client.send(bhttp::verb::get, "/healthz");
        EXPECT_EQ(response.result_int(), 200);
        EXPECT_EQ(response.body(), R"({"status":"ok"})");
        EXPECT_EQ(response[bhttp::field::content_type], "application/json");
        EXPECT_TRUE(response.keep_alive());
    }
    auto echo = client.send(bhttp::verb::post, "/echo", "payload");
    EXPECT_EQ(echo.body(), "payload");
    EXPECT_EQ(server_->open_connections(), 1u);
}

TEST_F(ServerTest, PathParametersAndQueryAreDecoded) {
    Client client(port_);
    auto response = client.send(bhttp::verb::get, "/params/a%20b?x=1+2%21");
    EXPECT_EQ(response.result_int(), 200);
    EXPECT_EQ(response.body(), "a b|1 2!");
}

TEST_F(ServerTest, InvalidPercentEncodingIs400) {
    Client client(port_);
    for (const char* target : {"/params/%zz", "/params/%00", "/params/x?x=%00"}) {
        auto response = client.send(bhttp::verb::get, target);
        EXPECT_EQ(response.result_int(), 400) << target;
        EXPECT_EQ(error_of(response).at("code"), "bad_request");
    }
}

TEST_F(ServerTest, TooLargeBodyIs413) {
    Client client(port_);
    auto response = client.send(bhttp::verb::post, "/echo", std::string(4096, 'x'));
    EXPECT_EQ(response.result_int(), 413);
    EXPECT_EQ(error_of(response).at("code"), "too_large");
    EXPECT_FALSE(response.keep_alive());
}

TEST_F(ServerTest, HugeHeaderIs431) {
    Client client(port_);
    auto response = client.send(bhttp::verb::get, "/healthz", {}, {{"X-Big", std::string(4096, 'h')}});
    EXPECT_EQ(response.result_int(), 431);
    EXPECT_EQ(error_of(response).at("code"), "header_too_large");
}

TEST_F(ServerTest, SlowHeaderIsDisconnected) {
    Client client(port_);
    asio::write(client.socket(), asio::buffer(std::string_view("GET /healthz HTTP/1.1\r\nHost: x\r\n")));
    const auto started = std::chrono::steady_clock::now();
    char byte = 0;
    boost::system::error_code ec;
    client.socket().read_some(asio::buffer(&byte, 1), ec);
    const auto waited = std::chrono::steady_clock::now() - started;
    EXPECT_EQ(ec, asio::error::eof);  // closed by the server, not by our 5 s receive timeout
    EXPECT_GE(waited, 200ms);
    EXPECT_LT(waited, 2s);
}

TEST_F(ServerTest, SilentClientIsDisconnected) {
    Client client(port_);
    char byte = 0;
    boost::system::error_code ec;
    client.socket().read_some(asio::buffer(&byte, 1), ec);
    EXPECT_EQ(ec, asio::error::eof);
}

TEST_F(ServerTest, AccessChecks) {
    Client client(port_);
    auto anonymous = client.send(bhttp::verb::get, "/private");
    EXPECT_EQ(anonymous.result_int(), 401);
    EXPECT_EQ(error_of(anonymous).at("code"), "unauthenticated");

    auto bad_token = client.send(bhttp::verb::get, "/private", {}, {{"Authorization", "Bearer nope"}});
    EXPECT_EQ(bad_token.result_int(), 401);

    auto viewer = client.send(bhttp::verb::get, "/private", {}, {{"Authorization", "Bearer viewer"}});
    EXPECT_EQ(viewer.result_int(), 200);
    EXPECT_EQ(viewer.body(), "u-viewer");

    auto forbidden = client.send(bhttp::verb::post, "/bots", "{}", {{"Authorization", "Bearer viewer"}});
    EXPECT_EQ(forbidden.result_int(), 403);
    auto error = error_of(forbidden);
    EXPECT_EQ(error.at("code"), "forbidden");
    EXPECT_NE(std::string(error.at("message").as_string()).find("bots.edit"), std::string::npos);

    auto created = client.send(bhttp::verb::post, "/bots", "{}", {{"Authorization", "Bearer admin"}});
    EXPECT_EQ(created.result_int(), 201);
    EXPECT_EQ(created.body(), R"({"id":"b1"})");
}

TEST_F(ServerTest, TypedErrorsAreMappedToTheContractBody) {
    Client client(port_);
    auto not_found = client.send(bhttp::verb::get, "/throw/not-found");
    EXPECT_EQ(not_found.result_int(), 404);
    auto error = error_of(not_found);
    EXPECT_EQ(error.at("code"), "not_found");
    EXPECT_EQ(error.at("message"), "bot b1 not found");
    EXPECT_TRUE(error.at("details").is_array());

    auto conflict = client.send(bhttp::verb::get, "/throw/conflict");
    EXPECT_EQ(conflict.result_int(), 409);
    EXPECT_EQ(error_of(conflict).at("code"), "conflict");
    EXPECT_EQ(conflict.body().find("UNIQUE"), std::string::npos);

    auto internal = client.send(bhttp::verb::get, "/throw/runtime");
    EXPECT_EQ(internal.result_int(), 500);
    EXPECT_EQ(error_of(internal).at("code"), "internal");
    EXPECT_EQ(internal.body().find("secret"), std::string::npos);

    // The connection survives every one of them.
    EXPECT_EQ(client.send(bhttp::verb::get, "/healthz").result_int(), 200);
}

TEST_F(ServerTest, UnknownPathIs404AndWrongMethodIs405) {
    Client client(port_);
    auto missing = client.send(bhttp::verb::get, "/nope");
    EXPECT_EQ(missing.result_int(), 404);
    EXPECT_EQ(error_of(missing).at("code"), "not_found");
    EXPECT_TRUE(error_of(missing).at("details").as_array().empty());

    auto wrong = client.send(bhttp::verb::delete_, "/healthz");
    EXPECT_EQ(wrong.result_int(), 405);
    EXPECT_EQ(error_of(wrong).at("code"), "method_not_allowed");
    EXPECT_EQ(wrong[bhttp::field::allow], "GET, HEAD");

    client.write(bhttp::verb::head, "/healthz");
    bhttp::response_parser<bhttp::empty_body> head;
    head.skip(true);  // a HEAD answer has Content-Length but no body
    beast::flat_buffer buffer;
    bhttp::read(client.socket(), buffer, head);
    EXPECT_EQ(head.get().result_int(), 200);
    EXPECT_EQ(head.get()[bhttp::field::content_length], "15");
}

TEST_F(ServerTest, RequestIdIsEchoedOrGenerated) {
    Client client(port_);
    auto echoed = client.send(bhttp::verb::get, "/healthz", {}, {{"X-Request-Id", "abc-123_x.y"}});
    EXPECT_EQ(echoed["X-Request-Id"], "abc-123_x.y");

    auto replaced = client.send(bhttp::verb::get, "/healthz", {}, {{"X-Request-Id", "bad id <script>"}});
    EXPECT_EQ(replaced["X-Request-Id"].size(), 26u);

    auto generated = client.send(bhttp::verb::get, "/throw/runtime");
    EXPECT_EQ(generated["X-Request-Id"].size(), 26u);
}

TEST_F(ServerTest, MetricsCountByRoutePattern) {
    Client client(port_);
    client.send(bhttp::verb::get, "/healthz");
    client.send(bhttp::verb::get, "/healthz");
    client.send(bhttp::verb::get, "/params/one");
    client.send(bhttp::verb::get, "/params/two");
    client.send(bhttp::verb::get, "/nope");
    const std::string text = metrics_.render();
    EXPECT_NE(text.find(R"(parley_http_requests_total{route="/healthz",method="GET",status="200"} 2)"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find(R"(parley_http_requests_total{route="/params/{name}",method="GET",status="200"} 2)"),
              std::string::npos);
    EXPECT_NE(text.find(R"(parley_http_requests_total{route="unmatched",method="GET",status="404"} 1)"),
              std::string::npos);
    EXPECT_EQ(text.find("/params/one"), std::string::npos);
    EXPECT_NE(text.find(R"(parley_http_request_duration_seconds_count{route="/healthz"} 2)"), std::string::npos);
    EXPECT_NE(text.find("parley_http_connections_open 1"), std::string::npos);
    EXPECT_NE(text.find("parley_websockets_open 0"), std::string::npos);
}

TEST_F(ServerTest, WebSocketEchoSendFromAnotherThreadAndServerClose) {
    asio::io_context io;
    websocket::stream<tcp::socket> ws(io);
    ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), port_});
    set_receive_timeout(ws.next_layer(), 5s);
    ws.handshake("127.0.0.1", "/ws?token=admin");
    beast::flat_buffer buffer;

    ws.write(asio::buffer(std::string_view("hello")));
    ws.read(buffer);
    EXPECT_EQ(beast::buffers_to_string(buffer.data()), "echo:hello");
    buffer.clear();
    EXPECT_EQ(server_->open_websockets(), 1u);

    ws.write(asio::buffer(std::string_view("from-thread")));
    ws.read(buffer);
    EXPECT_EQ(beast::buffers_to_string(buffer.data()), "hello from another thread");
    buffer.clear();

    ws.write(asio::buffer(std::string_view("close")));
    boost::system::error_code ec;
    ws.read(buffer, ec);
    EXPECT_EQ(ec, websocket::error::closed);
    EXPECT_EQ(ws.reason().code, websocket::close_code::normal);
    for (int i = 0; i < 100 && server_->open_websockets() != 0; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(server_->open_websockets(), 0u);
}

TEST_F(ServerTest, BroadcastReachesEverySocketOnce) { expect_broadcast_reaches_every_socket_once(5); }

TEST_F(ServerTest, WebSocketNeedsAToken) {
    asio::io_context io;
    websocket::stream<tcp::socket> ws(io);
    ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), port_});
    set_receive_timeout(ws.next_layer(), 5s);
    websocket::response_type response;
    boost::system::error_code ec;
    ws.handshake(response, "127.0.0.1", "/ws", ec);
    EXPECT_TRUE(ec);
    EXPECT_EQ(response.result_int(), 401);
}

TEST_F(ServerTest, WebSocketRouteWithoutUpgradeIs426) {
    Client client(port_);
    auto response = client.send(bhttp::verb::get, "/ws", {}, {{"Authorization", "Bearer admin"}});
    EXPECT_EQ(response.result_int(), 426);
}

TEST_F(ServerTest, GracefulStopFinishesInFlightRequestsAndRefusesNewOnes) {
    Client idle(port_);
    EXPECT_EQ(idle.send(bhttp::verb::get, "/healthz").result_int(), 200);

    asio::io_context io;
    websocket::stream<tcp::socket> ws(io);
    ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), port_});
    set_receive_timeout(ws.next_layer(), 5s);
    ws.set_option(websocket::stream_base::decorator(
        [](websocket::request_type& request) { request.set(bhttp::field::authorization, "Bearer admin"); }));
    ws.handshake("127.0.0.1", "/ws");

    Client busy(port_);
    busy.write(bhttp::verb::get, "/slow");
    std::this_thread::sleep_for(150ms);  // the handler is now waiting on its timer

    std::promise<void> done;
    auto future = done.get_future();
    const auto stop_started = std::chrono::steady_clock::now();
    server_->stop([&done] { done.set_value(); });
    stopped_ = true;
    std::this_thread::sleep_for(50ms);

    // New connections are refused.
    asio::io_context client_io;
    tcp::socket refused(client_io);
    boost::system::error_code ec;
    refused.connect({asio::ip::make_address("127.0.0.1"), port_}, ec);
    EXPECT_EQ(ec, asio::error::connection_refused);

    // The idle keep-alive connection was closed.
    char byte = 0;
    idle.socket().read_some(asio::buffer(&byte, 1), ec);
    EXPECT_EQ(ec, asio::error::eof);

    // The WebSocket got a close frame (going away).
    beast::flat_buffer buffer;
    ws.read(buffer, ec);
    EXPECT_EQ(ec, websocket::error::closed);
    EXPECT_EQ(ws.reason().code, websocket::close_code::going_away);

    // The in-flight request finishes normally, told that the connection closes.
    auto slow = busy.read();
    EXPECT_EQ(slow.result_int(), 200);
    EXPECT_EQ(slow.body(), R"({"slow":true})");
    EXPECT_FALSE(slow.keep_alive());

    ASSERT_EQ(future.wait_for(3s), std::future_status::ready);
    EXPECT_LT(std::chrono::steady_clock::now() - stop_started, 1500ms);  // well before the 2 s grace
    EXPECT_EQ(server_->open_connections(), 0u);
}

TEST_F(ServerTest, ShutdownGraceForceClosesStuckRequests) {
    Client busy(port_);
    busy.write(bhttp::verb::get, "/stuck");
    std::this_thread::sleep_for(50ms);
    std::promise<void> done;
    auto future = done.get_future();
    server_->stop([&done] { done.set_value(); });
    stopped_ = true;
    EXPECT_EQ(future.wait_for(4s), std::future_status::ready);
    EXPECT_EQ(server_->open_connections(), 0u);
}

// The app's mode: connections spread round robin over one io_context per thread.
class PinnedServerTest : public ServerTest {
protected:
    bool pinned() const override { return true; }
};

TEST_F(PinnedServerTest, ConnectionsOnBothThreadsServeKeepAliveRequests) {
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 4; ++i) clients.push_back(std::make_unique<Client>(port_));
    for (int round = 0; round < 3; ++round) {
        for (auto& client : clients) {
            auto response = client->send(bhttp::verb::post, "/echo", "payload");
            EXPECT_EQ(response.result_int(), 200);
            EXPECT_EQ(response.body(), "payload");
        }
    }
    EXPECT_EQ(server_->open_connections(), 4u);
}

TEST_F(PinnedServerTest, WebSocketSendFromAnotherThread) {
    for (int i = 0; i < 2; ++i) {  // consecutive sockets land on different io_contexts
        asio::io_context io;
        websocket::stream<tcp::socket> ws(io);
        ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), port_});
        set_receive_timeout(ws.next_layer(), 5s);
        ws.handshake("127.0.0.1", "/ws?token=admin");
        beast::flat_buffer buffer;
        ws.write(asio::buffer(std::string_view("from-thread")));
        ws.read(buffer);
        EXPECT_EQ(beast::buffers_to_string(buffer.data()), "hello from another thread");
        buffer.clear();
        ws.write(asio::buffer(std::string_view("ping")));
        ws.read(buffer);
        EXPECT_EQ(beast::buffers_to_string(buffer.data()), "echo:ping");
        ws.close(websocket::close_code::normal);
    }
}

// One posted handler per io_context carries the broadcast to the sockets of that thread.
TEST_F(PinnedServerTest, BroadcastReachesEverySocketOnce) { expect_broadcast_reaches_every_socket_once(7); }

TEST_F(PinnedServerTest, GracefulStopFinishesInFlightRequests) {
    std::future<unsigned> slow = std::async(std::launch::async, [this] {
        Client client(port_);
        return static_cast<unsigned>(client.send(bhttp::verb::get, "/slow").result_int());
    });
    std::this_thread::sleep_for(150ms);
    stop_and_wait();
    EXPECT_EQ(slow.get(), 200u);
}

}  // namespace
}  // namespace parley::http
