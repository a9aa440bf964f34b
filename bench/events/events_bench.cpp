// events_bench: N concurrent event WebSockets (`GET /api/v1/events`) on a running Parley server, and the fan-out
// latency of live events: one client message goes into a preview dialog, the dialog's `dialog.messages` event is
// pushed to every socket; the latency of a socket is the time from sending the message to that socket receiving
// the event. Prints connections, p50/p90/p99/max over every (event, socket) pair and missed deliveries.
// Usage (see bench/events/run.sh, which starts the server and prepares the token, bot and preview session):
//   events_bench --port P --token T --bot B --session S [--connections 10000] [--events 50] [--interval-ms 100]
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

struct Options {
    unsigned short port = 0;
    std::string token, bot, session;
    std::size_t connections = 10'000;
    std::size_t events = 50;
    int interval_ms = 100;
};

struct Shared {
    Options options;
    std::size_t connected = 0;
    std::size_t failed = 0;
    std::vector<Clock::time_point> sent;  // when the i-th client message was sent (each causes one event)
    std::vector<double> latencies_ms;                            // one per (event, socket)
    std::size_t unmatched = 0;
};

asio::awaitable<void> subscriber(Shared& shared) {
    auto executor = co_await asio::this_coro::executor;
    websocket::stream<tcp::socket> ws(executor);
    auto [ec] = co_await ws.next_layer().async_connect({asio::ip::make_address("127.0.0.1"), shared.options.port},
                                                       kTuple);
    if (!ec) std::tie(ec) = co_await ws.async_handshake("127.0.0.1", "/api/v1/events?token=" + shared.options.token,
                                                         kTuple);
    if (ec) {
        ++shared.failed;
        co_return;
    }
    ++shared.connected;
    beast::flat_buffer buffer;
    std::size_t seen = 0;  // events of the dialog so far: the k-th answers the k-th message
    for (;;) {
        auto [read_error, n] = co_await ws.async_read(buffer, kTuple);
        if (read_error) co_return;
        const auto now = Clock::now();
        std::string_view text(static_cast<const char*>(buffer.data().data()), buffer.size());
        if (text.find("\"dialog.messages\"") != std::string_view::npos) {
            if (seen >= shared.sent.size()) {
                ++shared.unmatched;
            } else {
                shared.latencies_ms.push_back(
                    std::chrono::duration<double, std::milli>(now - shared.sent[seen]).count());
            }
            ++seen;
        }
        buffer.consume(buffer.size());
    }
}

asio::awaitable<void> sender(Shared& shared, asio::io_context& io) {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor);
    // Wait until every socket is connected (or failed).
    while (shared.connected + shared.failed < shared.options.connections) {
        timer.expires_after(std::chrono::milliseconds(50));
        co_await timer.async_wait(kTuple);
    }
    std::fprintf(stderr, "connected %zu, failed %zu\n", shared.connected, shared.failed);
    timer.expires_after(std::chrono::milliseconds(500));
    co_await timer.async_wait(kTuple);

    beast::tcp_stream stream(executor);
    co_await stream.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), shared.options.port),
                                  asio::use_awaitable);
    const std::string target =
        "/api/v1/bots/" + shared.options.bot + "/preview/" + shared.options.session + "/messages";
    for (std::size_t i = 0; i < shared.options.events; ++i) {
        bhttp::request<bhttp::string_body> request{bhttp::verb::post, target, 11};
        request.set(bhttp::field::host, "127.0.0.1");
        request.set(bhttp::field::authorization, "Bearer " + shared.options.token);
        request.set(bhttp::field::content_type, "application/json");
        request.body() = R"({"text":"hello"})";
        request.prepare_payload();
        shared.sent.push_back(Clock::now());  // sockets and sender share one thread: no lock needed
        co_await bhttp::async_write(stream, request, asio::use_awaitable);
        beast::flat_buffer buffer;
        bhttp::response<bhttp::string_body> response;
        co_await bhttp::async_read(stream, buffer, response, asio::use_awaitable);
        if (response.result_int() != 200) {
            std::fprintf(stderr, "preview message: HTTP %u %s\n", response.result_int(), response.body().c_str());
            std::exit(1);
        }
        timer.expires_after(std::chrono::milliseconds(shared.options.interval_ms));
        co_await timer.async_wait(kTuple);
    }
    timer.expires_after(std::chrono::seconds(2));  // let the last events arrive
    co_await timer.async_wait(kTuple);
    io.stop();
}

int main(int argc, char** argv) {
    Shared shared;
    auto& o = shared.options;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string_view key = argv[i];
        const char* value = argv[i + 1];
        if (key == "--port") o.port = static_cast<unsigned short>(std::atoi(value));
        else if (key == "--token") o.token = value;
        else if (key == "--bot") o.bot = value;
        else if (key == "--session") o.session = value;
        else if (key == "--connections") o.connections = std::strtoull(value, nullptr, 10);
        else if (key == "--events") o.events = std::strtoull(value, nullptr, 10);
        else if (key == "--interval-ms") o.interval_ms = std::atoi(value);
        else {
            std::fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!o.port || o.token.empty() || o.bot.empty() || o.session.empty()) {
        std::fprintf(stderr, "usage: events_bench --port P --token T --bot B --session S [--connections N] "
                             "[--events N] [--interval-ms MS]\n");
        return 2;
    }
    asio::io_context io(1);
    // Connect in waves so the listen backlog is never overrun.
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        asio::steady_timer pause(co_await asio::this_coro::executor);
        for (std::size_t i = 0; i < o.connections; ++i) {
            asio::co_spawn(io, subscriber(shared), asio::detached);
            if (i % 200 == 199) {
                pause.expires_after(std::chrono::milliseconds(20));
                co_await pause.async_wait(kTuple);
            }
        }
    }, asio::detached);
    asio::co_spawn(io, sender(shared, io), [](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            std::fprintf(stderr, "sender failed: %s\n", ex.what());
            std::exit(1);
        }
    });
    io.run();

    auto& l = shared.latencies_ms;
    std::sort(l.begin(), l.end());
    auto pct = [&](double p) { return l.empty() ? 0.0 : l[std::min(l.size() - 1, static_cast<std::size_t>(p * l.size()))]; };
    const std::size_t expected = o.events * shared.connected;
    std::printf("event_sockets %zu (failed %zu)\nevents %zu, deliveries %zu of %zu expected, unexpected %zu\n",
                shared.connected, shared.failed, o.events, l.size(), expected, shared.unmatched);
    std::printf("fanout_ms p50 %.2f p90 %.2f p99 %.2f max %.2f\n", pct(0.50), pct(0.90), pct(0.99),
                l.empty() ? 0.0 : l.back());
    return l.size() == expected ? 0 : 1;
}
