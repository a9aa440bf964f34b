// widget_bench: many concurrent widget WebSockets against one server, and the server's memory for them.
//   widget_bench [--connections 10000] [--seconds 10] [--rate 200]
// The server (real store on disk, bots, dialogs, WidgetService, http::Server, 2 threads) runs in this process; the
// visitors run in a forked child (their own file descriptors and memory), each a new visitor: connect, `session`,
// `ready`. Then, for --seconds, the child sends --rate messages per second from random visitors and measures the
// time to their `ack` (a full bot turn, durably stored). Printed: connections open on the server, the server's RSS
// before and with them, bytes per connection, connect time, messages acked and ack latency percentiles.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <random>
#include <thread>
#include <unordered_map>

#include "bots/bots.h"
#include "bots/dialogs.h"
#include "clients/clients.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/http.h"
#include "widget/testing.h"
#include "widget/widget.h"

using namespace parley;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

const char* kScenario = R"({"format":"parley.scenario/1","name":"bench","languages":["en"],"sections":[
 {"name":"main","nodes":[
  {"id":"start","type":"start","next":"ask"},
  {"id":"ask","type":"input","prompt":"Your question?","save_as":"q","next":"say"},
  {"id":"say","type":"message","text":"You asked: {{q}}","next":"ask"}]}]})";

double rss_mb() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
    }
    return 0;
}

void raise_fd_limit() {
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
}

// --- the visitors (child process, one thread) -------------------------------------------------------------------

struct Visitors {
    asio::io_context io;
    tcp::endpoint server;
    std::size_t target = 0;
    std::size_t started = 0;
    std::size_t in_flight = 0;
    std::size_t ready = 0;
    std::size_t failed = 0;
    std::unordered_map<std::string, Clock::time_point> sent;
    std::vector<double> latencies_ms;

    struct Conn : std::enable_shared_from_this<Conn> {
        explicit Conn(Visitors& v) : owner(v), ws(v.io) {}
        Visitors& owner;
        websocket::stream<beast::tcp_stream> ws;
        beast::flat_buffer buffer;
        std::deque<std::string> out;
        bool is_ready = false;

        void start() {
            auto self = shared_from_this();
            ws.next_layer().expires_after(std::chrono::seconds(60));
            ws.next_layer().async_connect(owner.server, [self](beast::error_code ec) {
                if (ec) return self->fail();
                self->ws.async_handshake("127.0.0.1", "/widget/bench/ws", [self](beast::error_code ec2) {
                    if (ec2) return self->fail();
                    self->ws.next_layer().expires_never();
                    self->read();
                });
            });
        }
        void fail() {
            ++owner.failed;
            if (!is_ready) owner.connected_one();
        }
        void read() {
            auto self = shared_from_this();
            ws.async_read(buffer, [self](beast::error_code ec, std::size_t) {
                if (ec) {
                    if (self->is_ready) --self->owner.ready;
                    return self->fail();
                }
                std::string text = beast::buffers_to_string(self->buffer.data());
                self->buffer.consume(self->buffer.size());
                if (!self->is_ready && text.find(R"("type":"ready")") != std::string::npos) {
                    self->is_ready = true;
                    ++self->owner.ready;
                    self->owner.connected_one();
                } else if (text.find(R"("type":"ack")") != std::string::npos) {
                    auto v = boost::json::parse(text);
                    std::string id(v.at("id").as_string());
                    if (auto it = self->owner.sent.find(id); it != self->owner.sent.end()) {
                        self->owner.latencies_ms.push_back(
                            std::chrono::duration<double, std::milli>(Clock::now() - it->second).count());
                        self->owner.sent.erase(it);
                    }
                }
                self->read();
            });
        }
        void send(std::string text) {
            out.push_back(std::move(text));
            if (out.size() == 1) write();
        }
        void write() {
            auto self = shared_from_this();
            ws.async_write(asio::buffer(out.front()), [self](beast::error_code ec, std::size_t) {
                self->out.pop_front();
                if (!ec && !self->out.empty()) self->write();
            });
        }
    };
    std::vector<std::shared_ptr<Conn>> conns;

    void connected_one() {
        --in_flight;
        launch();
    }
    /// At most 256 handshakes at once (the listen backlog stays short).
    void launch() {
        while (started < target && in_flight < 256) {
            ++started;
            ++in_flight;
            auto c = std::make_shared<Conn>(*this);
            conns.push_back(c);
            c->start();
        }
    }
};

int run_visitors(std::uint16_t port, std::size_t connections, double seconds, double rate, int report_fd, int go_fd) {
    Visitors v;
    v.server = tcp::endpoint(asio::ip::make_address("127.0.0.1"), port);
    v.target = connections;
    auto t0 = Clock::now();
    v.launch();
    while ((v.ready + v.failed < connections) && Clock::now() - t0 < std::chrono::seconds(300)) {
        v.io.run_for(std::chrono::milliseconds(50));
    }
    double connect_s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::string line = fmt::format("connected {} {} {:.3f}\n", v.ready, v.failed, connect_s);
    if (write(report_fd, line.data(), line.size()) < 0) return 1;

    // Hold: messages from random ready visitors at `rate` per second.
    std::mt19937 random(7);
    std::size_t sent = 0;
    auto hold_start = Clock::now();
    auto next = hold_start;
    const auto step = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
    while (Clock::now() - hold_start < std::chrono::duration<double>(seconds)) {
        while (Clock::now() >= next && !v.conns.empty()) {
            auto& c = v.conns[random() % v.conns.size()];
            if (c->is_ready) {
                std::string id = fmt::format("b{}", sent++);
                v.sent[id] = Clock::now();
                c->send(fmt::format(R"({{"type":"message","id":"{}","text":"question {}"}})", id, sent));
            }
            next += step;
        }
        v.io.run_for(std::chrono::milliseconds(2));
    }
    // Let the last acks arrive.
    auto drain_until = Clock::now() + std::chrono::seconds(5);
    while (!v.sent.empty() && Clock::now() < drain_until) v.io.run_for(std::chrono::milliseconds(10));
    std::sort(v.latencies_ms.begin(), v.latencies_ms.end());
    auto pct = [&](double p) {
        if (v.latencies_ms.empty()) return 0.0;
        return v.latencies_ms[std::min(v.latencies_ms.size() - 1, static_cast<std::size_t>(p * v.latencies_ms.size()))];
    };
    line = fmt::format("done {} {} {} {:.2f} {:.2f} {:.2f}\n", sent, v.latencies_ms.size(), v.ready, pct(0.5),
                       pct(0.99), v.latencies_ms.empty() ? 0.0 : v.latencies_ms.back());
    if (write(report_fd, line.data(), line.size()) < 0) return 1;
    char go = 0;  // wait until the parent has measured, then close everything
    if (read(go_fd, &go, 1) < 0) return 1;
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t connections = 10'000;
    double seconds = 10;
    double rate = 200;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string_view flag = argv[i];
        if (flag == "--connections") connections = std::stoul(argv[i + 1]);
        else if (flag == "--seconds") seconds = std::stod(argv[i + 1]);
        else if (flag == "--rate") rate = std::stod(argv[i + 1]);
        else {
            std::cerr << "usage: widget_bench [--connections N] [--seconds S] [--rate MSG_PER_S]\n";
            return 2;
        }
    }
    raise_fd_limit();
    int to_child[2];
    int from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) return 1;
    // Fork before any thread exists; the child gets the port through the pipe.
    pid_t child = fork();
    if (child == 0) {
        close(to_child[1]);
        close(from_child[0]);
        std::uint16_t port = 0;
        if (read(to_child[0], &port, sizeof port) != sizeof port) return 1;
        _exit(run_visitors(port, connections, seconds, rate, from_child[1], to_child[0]));
    }
    close(to_child[0]);
    close(from_child[1]);

    spdlog::set_level(spdlog::level::warn);
    auto dir = std::filesystem::temp_directory_path() / ("parley-widget-bench-" + core::random_hex(6));
    std::filesystem::create_directories(dir);
    store::StoreOptions options;
    options.path = (dir / "parley.db").string();
    auto all = clients::migrations();
    for (auto& m : bots::migrations()) all.push_back(m);
    for (auto& m : widget::migrations()) all.push_back(m);
    auto store = store::Store::open_sqlite(options, all);
    core::SystemClock clock;
    actions::ActionRegistry registry;
    actions::register_builtin_actions(registry);
    clients::register_actions(registry, *store, clock);
    bots::BotService bots(*store, clock, registry);
    bots::DialogOptions dialog_options;
    dialog_options.record_runs = false;
    bots::DialogService dialogs(bots, registry, nullptr, nullptr, nullptr, dialog_options);
    widget::testing::MapDirectory channels;
    auth::SecretKey key{};
    key.fill(3);
    widget::WidgetOptions widget_options;
    widget_options.max_new_visitors_per_minute_per_ip = 1'000'000;  // every visitor comes from 127.0.0.1 here
    widget::WidgetService service(*store, clock, channels, dialogs, registry, nullptr, key, widget_options);
    http::Router router;
    widget::register_routes(router, service);
    asio::io_context io;
    auto work = asio::make_work_guard(io);
    core::Config config;
    config.max_connections = static_cast<unsigned>(connections + 100);
    core::Metrics metrics;
    http::Server server(io, config, router, metrics,
                        [](const http::Request&) -> std::optional<std::shared_ptr<const core::Principal>> {
                            return std::nullopt;
                        });
    std::uint16_t port = server.start("127.0.0.1", 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) threads.emplace_back([&io] { io.run(); });
    service.start(io.get_executor());
    std::string bot_id = asio::co_spawn(io, bots.create("Bench", true), asio::use_future).get().id;
    asio::co_spawn(io, bots.put_scenario(bot_id, kScenario, {}, ""), asio::use_future).get();
    channels.put(widget::WidgetChannel{"bench", bot_id, false});

    double rss_before = rss_mb();
    if (write(to_child[1], &port, sizeof port) != sizeof port) return 1;
    FILE* reports = fdopen(from_child[0], "r");
    std::size_t ready = 0, failed = 0;
    double connect_s = 0;
    char line[256];
    // fgets + sscanf: a trailing "\n" in an fscanf format would wait for the next line.
    if (!std::fgets(line, sizeof line, reports) ||
        std::sscanf(line, "connected %zu %zu %lf", &ready, &failed, &connect_s) != 3) {
        return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    double rss_connected = rss_mb();
    std::size_t sockets = service.stats().sockets;
    std::size_t sent = 0, acked = 0, ready_after = 0;
    double p50 = 0, p99 = 0, max = 0;
    if (!std::fgets(line, sizeof line, reports) ||
        std::sscanf(line, "done %zu %zu %zu %lf %lf %lf", &sent, &acked, &ready_after, &p50, &p99, &max) != 6) {
        return 1;
    }
    double rss_after = rss_mb();
    std::size_t sockets_after = service.stats().sockets;
    char go = 1;
    if (write(to_child[1], &go, 1) != 1) return 1;
    int status = 0;
    waitpid(child, &status, 0);

    std::printf("widget_bench: %zu connections requested, %zu ready, %zu failed, connected in %.2f s (%.0f/s)\n",
                connections, ready, failed, connect_s, connect_s > 0 ? ready / connect_s : 0.0);
    std::printf("  server sockets open: %zu after connecting, %zu after %.0f s of traffic\n", sockets, sockets_after,
                seconds);
    std::printf("  server RSS: %.1f MB before, %.1f MB with the connections, %.1f MB after traffic "
                "(%.1f KB per connection); target < 500 MB\n",
                rss_before, rss_connected, rss_after,
                ready ? (rss_connected - rss_before) * 1024.0 / static_cast<double>(ready) : 0.0);
    std::printf("  traffic: %zu messages sent at %.0f/s, %zu acked; ack latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                sent, rate, acked, p50, p99, max);

    service.stop();
    service.wait_stopped();
    std::promise<void> stopped;
    server.stop([&] { stopped.set_value(); });
    stopped.get_future().wait();
    work.reset();
    io.stop();
    for (auto& t : threads) t.join();
    store->close();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    return ready == connections && rss_connected < 500 ? 0 : 1;
}
