// http_bench_server: starts parley::http::Server with a public GET /healthz on 127.0.0.1 and prints the port.
// Usage: http_bench_server [--port N] [--threads N] [--log-level warn|info]  (stops on SIGINT/SIGTERM)
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/http.h"

int main(int argc, char** argv) {
    using namespace parley;
    unsigned port = 0;
    unsigned threads = 2;
    std::string log_level = "warn";
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string flag = argv[i];
        if (flag == "--port") port = static_cast<unsigned>(std::atoi(argv[i + 1]));
        if (flag == "--threads") threads = static_cast<unsigned>(std::atoi(argv[i + 1]));
        if (flag == "--log-level") log_level = argv[i + 1];
    }
    core::init_logging(log_level, "json");

    boost::asio::io_context io(static_cast<int>(threads));
    core::Config config;
    core::Metrics metrics;
    http::Router router;
    router.add(http::Method::kGet, "/healthz", http::Access::open(),
               [](http::Request&) -> boost::asio::awaitable<http::Response> {
                   co_return http::Response::raw_json(R"({"status":"ok"})");
               });
    http::Server server(io, config, router, metrics, nullptr);
    auto bound = server.start("127.0.0.1", static_cast<std::uint16_t>(port));
    std::printf("%u\n", static_cast<unsigned>(bound));
    std::fflush(stdout);

    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) {
        server.stop([&io] { io.stop(); });
    });
    std::vector<std::thread> pool;
    for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&io] { io.run(); });
    io.run();
    for (auto& thread : pool) thread.join();
    return 0;
}
