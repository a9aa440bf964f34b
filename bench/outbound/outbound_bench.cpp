// outbound_bench: what the outbound client costs.
//
//   outbound_bench [--seconds S] [--inflight N] [--server-threads T]
//
// 1. Throughput: N requests kept in flight through outbound::Client for S seconds → requests/s.
// 2. Added latency: one request at a time, alternating a direct blocking Beast client on a kept-alive socket
//    and outbound::Client (send() → callback, as a caller sees it), for S seconds → p50/p99 of both and the
//    difference. The server is an in-process Beast server on 127.0.0.1, allow-listed for the SSRF guard.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "outbound/outbound.h"
#include "outbound/test_server.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using parley::outbound::Client;
using parley::outbound::ClientOptions;
using parley::outbound::Request;
using parley::outbound::Response;
using parley::outbound::testing::TestRequest;
using parley::outbound::testing::TestResponse;
using parley::outbound::testing::TestServer;

struct Args {
    double seconds = 3;
    int inflight = 64;
    unsigned server_threads = 1;
};

Args parse(int argc, char** argv) {
    Args args;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string key = argv[i];
        std::string value = argv[i + 1];
        if (key == "--seconds") {
            args.seconds = std::stod(value);
        } else if (key == "--inflight") {
            args.inflight = std::stoi(value);
        } else if (key == "--server-threads") {
            args.server_threads = static_cast<unsigned>(std::stoul(value));
        } else {
            std::cerr << "unknown option " << key << "\n";
            std::exit(2);
        }
    }
    return args;
}

double micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

double percentile(std::vector<double>& sorted, double q) {
    if (sorted.empty()) return 0;
    return sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(q * static_cast<double>(sorted.size())))];
}

/// N requests in flight: each completion sends the next until the deadline.
void throughput(Client& client, const std::string& url, const Args& args) {
    std::atomic<std::uint64_t> ok{0};
    std::atomic<std::uint64_t> failed{0};
    std::mutex mutex;
    std::condition_variable cv;
    int outstanding = 0;
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(args.seconds));
    std::function<void()> send_one = [&] {
        Request r;
        r.url = url;
        client.send(r, [&](Response response) {
            (response.status == 200 ? ok : failed).fetch_add(1, std::memory_order_relaxed);
            if (Clock::now() < deadline) {
                send_one();
                return;
            }
            std::lock_guard lock(mutex);
            if (--outstanding == 0) cv.notify_one();
        });
    };
    const auto start = Clock::now();
    {
        std::lock_guard lock(mutex);
        outstanding = args.inflight;
    }
    for (int i = 0; i < args.inflight; ++i) send_one();
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return outstanding == 0; });
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    fmt::print("throughput: {} in flight, {:.1f} s: {} ok, {} failed, {:.0f} requests/s (target >= 5000)\n",
               args.inflight, elapsed, ok.load(), failed.load(), static_cast<double>(ok.load()) / elapsed);
}

/// A blocking HTTP/1.1 client on one kept-alive connection: the baseline.
class DirectClient {
public:
    explicit DirectClient(std::uint16_t port) {
        socket_.connect({asio::ip::make_address("127.0.0.1"), port});
        socket_.set_option(tcp::no_delay(true));
    }
    int get(const std::string& target) {
        bhttp::request<bhttp::empty_body> request{bhttp::verb::get, target, 11};
        request.set(bhttp::field::host, "127.0.0.1");
        bhttp::write(socket_, request);
        bhttp::response<bhttp::string_body> response;
        bhttp::read(socket_, buffer_, response);
        return response.result_int();
    }

private:
    asio::io_context io_;
    tcp::socket socket_{io_};
    beast::flat_buffer buffer_;
};

void latency(Client& client, const TestServer& server, const Args& args) {
    DirectClient direct(server.port());
    const std::string url = server.url("/hello");
    std::vector<double> direct_us;
    std::vector<double> client_us;
    // Warm up both paths (connection set-up, caches).
    for (int i = 0; i < 200; ++i) {
        direct.get("/hello");
        std::promise<void> p;
        Request r;
        r.url = url;
        client.send(r, [&p](Response) { p.set_value(); });
        p.get_future().wait();
    }
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(args.seconds));
    int failures = 0;
    while (Clock::now() < deadline) {
        auto t0 = Clock::now();
        if (direct.get("/hello") != 200) ++failures;
        direct_us.push_back(micros(Clock::now() - t0));

        std::promise<int> p;
        Request r;
        r.url = url;
        t0 = Clock::now();
        client.send(r, [&p](Response response) { p.set_value(response.status); });
        if (p.get_future().get() != 200) ++failures;
        client_us.push_back(micros(Clock::now() - t0));
    }
    std::sort(direct_us.begin(), direct_us.end());
    std::sort(client_us.begin(), client_us.end());
    const double d50 = percentile(direct_us, 0.50), d99 = percentile(direct_us, 0.99);
    const double c50 = percentile(client_us, 0.50), c99 = percentile(client_us, 0.99);
    fmt::print("latency, one at a time, {} samples each, {} failures:\n", direct_us.size(), failures);
    fmt::print("  direct Beast client   p50 {:8.1f} us   p99 {:8.1f} us\n", d50, d99);
    fmt::print("  outbound::Client      p50 {:8.1f} us   p99 {:8.1f} us\n", c50, c99);
    fmt::print("  added by the client   p50 {:8.1f} us   p99 {:8.1f} us (target < 1000 us)\n", c50 - d50, c99 - d99);
}

}  // namespace

int main(int argc, char** argv) {
    const Args args = parse(argc, argv);
    TestServer server([](const TestRequest&) { return TestResponse{200, {{"Content-Type", "text/plain"}}, "hello"}; },
                      args.server_threads);
    ClientOptions options;
    options.allowlist = [] { return std::optional<boost::json::value>(boost::json::array{"127.0.0.1"}); };
    Client client(options);
    fmt::print("outbound_bench: server on 127.0.0.1:{} ({} thread(s)), client max_concurrent {}\n", server.port(),
               args.server_threads, options.max_concurrent);
    throughput(client, server.url("/hello"), args);
    latency(client, server, args);
    return 0;
}
