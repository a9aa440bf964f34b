// webhooks_bench: signed webhook deliveries per second, end to end.
//
//   webhooks_bench [--seconds S] [--inflight N] [--durable 0|1] [--subscriptions K]
//
// Feeds operator-panel events (`operator.dialog` closed, one dialog each) to WebhookService::on_event as the
// EventHub would, keeping at most 4000 deliveries outstanding; each event becomes one delivery per subscription:
// persisted (SQLite, group commit, fsync when --durable 1), claimed, signed (HMAC-SHA256), POSTed through
// outbound::Client to an in-process Beast receiver on 127.0.0.1 (allow-listed) answering 200, and marked
// delivered. Prints deliveries/s over S seconds after a 1 s warm-up, and the receiver's count as a check.
#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>
#include <sodium.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>

#include "auth/auth.h"
#include "core/clock.h"
#include "outbound/outbound.h"
#include "outbound/test_server.h"
#include "store/store.h"
#include "webhooks/webhooks.h"

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
using namespace parley;
using Steady = std::chrono::steady_clock;

struct Args {
    double seconds = 5;
    std::size_t inflight = 64;
    bool durable = true;
    int subscriptions = 1;
};

Args parse(int argc, char** argv) {
    Args args;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string key = argv[i];
        std::string value = argv[i + 1];
        if (key == "--seconds") {
            args.seconds = std::stod(value);
        } else if (key == "--inflight") {
            args.inflight = std::stoul(value);
        } else if (key == "--durable") {
            args.durable = value != "0";
        } else if (key == "--subscriptions") {
            args.subscriptions = std::stoi(value);
        } else {
            std::cerr << "unknown option " << key << "\n";
            std::exit(2);
        }
    }
    return args;
}

}  // namespace

int main(int argc, char** argv) {
    Args args = parse(argc, argv);
    if (sodium_init() < 0) return 1;
    fs::path dir = fs::temp_directory_path() / ("parley-webhooks-bench-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    {
        std::vector<store::Migration> migrations = auth::migrations();
        for (auto& m : webhooks::migrations()) migrations.push_back(m);
        store::StoreOptions store_options;
        store_options.path = (dir / "bench.db").string();
        store_options.durable = args.durable;
        auto db = store::Store::open_sqlite(store_options, migrations);

        std::atomic<std::size_t> received{0};
        outbound::testing::TestServer receiver(
            [&](const outbound::testing::TestRequest&) {
                ++received;
                return outbound::testing::TestResponse{200, {}, "ok"};
            },
            1);
        outbound::ClientOptions client_options;
        client_options.allowlist = [] { return std::optional<json::value>(json::array{"127.0.0.1"}); };
        outbound::Client client(client_options);
        core::SystemClock clock;
        auth::SecretKey key{};
        randombytes_buf(key.data(), key.size());
        webhooks::WebhookOptions options;
        options.max_in_flight = args.inflight;
        webhooks::WebhookService service(*db, clock, client, key, options);

        asio::io_context io;
        auto guard = asio::make_work_guard(io);
        std::thread worker([&] { io.run(); });
        service.start(io.get_executor());
        core::Principal admin;
        admin.user_id = "bench";
        for (int i = 0; i < args.subscriptions; ++i) {
            webhooks::SubscriptionInput in;
            in.url = receiver.url("/hook");
            in.events = std::vector<std::string>{"*"};
            in.enabled = true;
            in.description = "bench";
            asio::co_spawn(io, service.create(admin, in), asio::use_future).get();
        }

        std::uint64_t hub_id = 0;
        auto feed_until = [&](Steady::time_point until) {
            while (Steady::now() < until) {
                std::uint64_t outstanding = hub_id * static_cast<std::uint64_t>(args.subscriptions) - service.stats().delivered;
                if (outstanding > 4000) {
                    std::this_thread::sleep_for(std::chrono::microseconds(200));
                    continue;
                }
                for (int k = 0; k < 100; ++k) {
                    ++hub_id;
                    std::string text = fmt::format(R"({{"id":{},"type":"operator.dialog","dialog_id":"d{}","status":"closed"}})",
                                                   hub_id, hub_id);
                    service.on_event(hub_id, "operator.dialog", text);
                }
            }
        };
        feed_until(Steady::now() + std::chrono::seconds(1));  // warm-up
        auto before = service.stats();
        auto t0 = Steady::now();
        feed_until(t0 + std::chrono::milliseconds(static_cast<std::int64_t>(args.seconds * 1000)));
        auto after = service.stats();
        double elapsed = std::chrono::duration<double>(Steady::now() - t0).count();
        double rate = static_cast<double>(after.delivered - before.delivered) / elapsed;

        service.stop();
        client.shutdown();
        service.wait_stopped();
        guard.reset();
        io.stop();
        worker.join();
        auto pending = store::read_value(*db, [](store::Tx& tx) {
            return tx.query_one("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'")->integer(0);
        });
        std::cout << fmt::format(
            "webhooks_bench: {:.0f} deliveries/s over {:.1f} s ({} in flight, {} subscription(s), durable={}); "
            "delivered {} in total, receiver saw {}, failed attempts {}, dropped {}, still pending {}\n",
            rate, elapsed, args.inflight, args.subscriptions, args.durable ? 1 : 0, after.delivered, received.load(),
            after.attempts_failed, after.events_dropped, pending);
        db->close();
    }
    fs::remove_all(dir);
    return 0;
}
