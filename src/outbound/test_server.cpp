#include "outbound/test_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>

namespace parley::outbound::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

struct TestServer::Impl : std::enable_shared_from_this<Impl> {
    explicit Impl(TestHandler h) : handler(std::move(h)) {}

    asio::awaitable<void> accept_loop() {
        while (true) {
            auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
            if (ec) co_return;
            connection_count.fetch_add(1);
            asio::co_spawn(io, session(std::move(socket)), asio::detached);
        }
    }

    asio::awaitable<void> session(tcp::socket socket) {
        socket.set_option(tcp::no_delay(true));
        beast::flat_buffer buffer;
        while (true) {
            bhttp::request_parser<bhttp::string_body> parser;
            parser.body_limit(64 * 1024 * 1024);
            auto [read_ec, read_n] = co_await bhttp::async_read(socket, buffer, parser, asio::as_tuple(asio::use_awaitable));
            if (read_ec) co_return;
            auto request = parser.release();
            request_count.fetch_add(1);

            TestRequest in;
            in.method = std::string(request.method_string());
            in.target = std::string(request.target());
            auto q = in.target.find('?');
            in.path = in.target.substr(0, q);
            if (q != std::string::npos) in.query = in.target.substr(q + 1);
            for (const auto& field : request) {
                std::string name(field.name_string());
                for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                in.headers[name] = std::string(field.value());
            }
            in.body = std::move(request.body());

            TestResponse out;
            try {
                out = handler(in);
            } catch (const std::exception& e) {
                out = TestResponse{500, {}, e.what()};
            }
            if (out.delay_ms > 0) {
                asio::steady_timer timer(io, std::chrono::milliseconds(out.delay_ms));
                auto [timer_ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
                if (timer_ec) co_return;
            }
            bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(out.status), 11};
            for (const auto& [name, value] : out.headers) response.insert(name, value);
            const bool head = request.method() == bhttp::verb::head;
            if (!head) response.body() = std::move(out.body);
            if (out.chunked) {
                response.chunked(true);
            } else {
                response.prepare_payload();
            }
            const bool keep_alive = request.keep_alive() && !out.close;
            response.keep_alive(keep_alive);
            auto [write_ec, write_n] = co_await bhttp::async_write(socket, response, asio::as_tuple(asio::use_awaitable));
            if (write_ec || !keep_alive) {
                beast::error_code ignored;
                socket.shutdown(tcp::socket::shutdown_send, ignored);
                co_return;
            }
        }
    }

    TestHandler handler;
    asio::io_context io;
    tcp::acceptor acceptor{io};
    std::vector<std::thread> threads;
    std::atomic<std::size_t> request_count{0};
    std::atomic<std::size_t> connection_count{0};
    std::uint16_t port = 0;
};

TestServer::TestServer(TestHandler handler, unsigned threads) : impl_(std::make_shared<Impl>(std::move(handler))) {
    tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
    impl_->acceptor.open(endpoint.protocol());
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    impl_->acceptor.bind(endpoint);
    impl_->acceptor.listen(asio::socket_base::max_listen_connections);
    impl_->port = impl_->acceptor.local_endpoint().port();
    asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
    for (unsigned i = 0; i < std::max(1u, threads); ++i) {
        impl_->threads.emplace_back([impl = impl_.get()] { impl->io.run(); });
    }
}

TestServer::~TestServer() {
    impl_->io.stop();
    for (auto& t : impl_->threads) t.join();
}

std::uint16_t TestServer::port() const { return impl_->port; }

std::string TestServer::url(std::string_view path) const {
    return "http://127.0.0.1:" + std::to_string(impl_->port) + std::string(path);
}

std::size_t TestServer::requests() const { return impl_->request_count.load(); }

std::size_t TestServer::connections() const { return impl_->connection_count.load(); }

}  // namespace parley::outbound::testing
