#include "jail/internal/test_server.h"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <future>

namespace parley::jail::testing {

using http::Access;
using http::Method;
using http::Request;
using http::Response;

TestHttpServer::TestHttpServer() {
    router_.add(Method::kGet, "/json", Access::open(), [](Request&) -> boost::asio::awaitable<Response> {
        co_return Response::json(boost::json::object{{"ok", true}, {"items", boost::json::array{1, 2, 3}}});
    });
    router_.add(Method::kPost, "/echo", Access::open(), [](Request& req) -> boost::asio::awaitable<Response> {
        Response r = Response::text(req.body, "text/plain; charset=utf-8");
        r.headers.emplace_back("X-Method", "POST");
        r.headers.emplace_back("X-Seen-Header", std::string(req.header("x-test")));
        co_return r;
    });
    router_.add(Method::kGet, "/slow", Access::open(), [](Request&) -> boost::asio::awaitable<Response> {
        boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, std::chrono::milliseconds(1500));
        co_await timer.async_wait(boost::asio::use_awaitable);
        co_return Response::text("slow done");
    });
    router_.add(Method::kGet, "/redirect/metadata", Access::open(), [](Request&) -> boost::asio::awaitable<Response> {
        Response r = Response::text("", "text/plain", 302);
        r.headers.emplace_back("Location", "http://169.254.169.254/latest/meta-data/");
        co_return r;
    });
    router_.add(Method::kGet, "/redirect/json", Access::open(), [](Request&) -> boost::asio::awaitable<Response> {
        Response r = Response::text("", "text/plain", 302);
        r.headers.emplace_back("Location", "/json");
        co_return r;
    });
    router_.add(Method::kGet, "/status/{code}", Access::open(), [](Request& req) -> boost::asio::awaitable<Response> {
        co_return Response::text("status", "text/plain", std::stoi(req.param("code")));
    });
    server_ = std::make_unique<http::Server>(io_, config_, router_, metrics_,
                                             [](const Request&) -> std::optional<std::shared_ptr<const core::Principal>> {
                                                 return std::nullopt;
                                             });
    port_ = server_->start("127.0.0.1", 0);
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
}

TestHttpServer::~TestHttpServer() {
    std::promise<void> stopped;
    server_->stop([&] { stopped.set_value(); });
    stopped.get_future().wait();
    io_.stop();
    for (auto& t : threads_) t.join();
    server_.reset();
}

}  // namespace parley::jail::testing
