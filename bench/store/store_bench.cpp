// store_bench: durable small write transactions per second with many concurrent submitters (the coroutine API
// and the plain callback API), and reader query latency with and without concurrent writes.
//
//   store_bench [--dir DIR] [--seconds S] [--inflight N] [--readers R] [--durable 0|1]
//
// DIR must be on the disk being measured (default: the current directory; /tmp may be tmpfs elsewhere).
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "store/async.h"
#include "store/store.h"

namespace {

namespace asio = boost::asio;
using parley::store::Store;
using parley::store::Tx;
using Clock = std::chrono::steady_clock;

struct Args {
    std::string dir = ".";
    double seconds = 3;
    int inflight = 64;
    unsigned readers = 2;
    bool durable = true;
};

Args parse(int argc, char** argv) {
    Args args;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string key = argv[i];
        std::string value = argv[i + 1];
        if (key == "--dir") {
            args.dir = value;
        } else if (key == "--seconds") {
            args.seconds = std::stod(value);
        } else if (key == "--inflight") {
            args.inflight = std::stoi(value);
        } else if (key == "--readers") {
            args.readers = static_cast<unsigned>(std::stoul(value));
        } else if (key == "--durable") {
            args.durable = value != "0";
        } else {
            std::cerr << "unknown option " << key << "\n";
            std::exit(2);
        }
    }
    return args;
}

std::vector<parley::store::Migration> migrations() {
    return {{"bench", 1, "messages",
             "CREATE TABLE messages (id INTEGER PRIMARY KEY, dialog_id INTEGER NOT NULL, body TEXT NOT NULL, "
             "created_at INTEGER NOT NULL);\n"
             "CREATE INDEX messages_dialog ON messages(dialog_id, id);"}};
}

/// Latencies in microseconds.
struct Percentiles {
    double p50 = 0, p99 = 0, max = 0;
};

Percentiles percentiles(std::vector<double>& us) {
    if (us.empty()) return {};
    std::sort(us.begin(), us.end());
    auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<std::size_t>(q * us.size()))]; };
    return {at(0.50), at(0.99), us.back()};
}

double micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

const std::string kBody(120, 'm');  // a typical short chat message

void insert_message(Tx& tx, std::int64_t dialog) {
    tx.exec("INSERT INTO messages(dialog_id, body, created_at) VALUES (?, ?, ?)", {dialog, kBody, std::int64_t{0}});
}

/// `inflight` coroutines on one io_context thread, each looping co_write; resumption happens on that thread.
void bench_coroutines(Store& store, const Args& args) {
    asio::io_context io;
    std::atomic<bool> stop{false};
    std::vector<std::vector<double>> latencies(static_cast<std::size_t>(args.inflight));
    auto before = store.stats();
    for (int c = 0; c < args.inflight; ++c) {
        asio::co_spawn(
            io,
            [&, c]() -> asio::awaitable<void> {
                auto& mine = latencies[static_cast<std::size_t>(c)];
                while (!stop.load(std::memory_order_relaxed)) {
                    auto start = Clock::now();
                    co_await parley::store::co_write(store, [c](Tx& tx) { insert_message(tx, c); });
                    mine.push_back(micros(Clock::now() - start));
                }
            },
            asio::detached);
    }
    auto start = Clock::now();
    std::thread timer([&] {
        std::this_thread::sleep_for(std::chrono::duration<double>(args.seconds));
        stop = true;
    });
    io.run();
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    timer.join();
    auto after = store.stats();
    std::vector<double> all;
    for (auto& v : latencies) all.insert(all.end(), v.begin(), v.end());
    auto p = percentiles(all);
    auto tx = after.transactions - before.transactions;
    auto commits = after.commits - before.commits;
    fmt::print(
        "write co_write  inflight={:<4} {:>9.0f} tx/s  {:>7} commits ({:.1f} tx/commit)  latency p50 {:.0f} us  "
        "p99 {:.0f} us  max {:.0f} us\n",
        args.inflight, static_cast<double>(tx) / elapsed, commits,
        commits ? static_cast<double>(tx) / static_cast<double>(commits) : 0.0, p.p50, p.p99, p.max);
}

/// The plain callback API: `inflight` writes outstanding, each `done` submits the next (on the writer thread).
void bench_callbacks(Store& store, const Args& args) {
    std::atomic<bool> stop{false};
    std::atomic<int> outstanding{0};
    auto before = store.stats();
    std::function<void(std::int64_t)> submit = [&](std::int64_t dialog) {
        outstanding.fetch_add(1);
        store.write([dialog](Tx& tx) { insert_message(tx, dialog); },
                    [&, dialog](std::exception_ptr) {
                        if (!stop.load(std::memory_order_relaxed)) submit(dialog);
                        outstanding.fetch_sub(1);
                    });
    };
    auto start = Clock::now();
    for (int c = 0; c < args.inflight; ++c) submit(c);
    std::this_thread::sleep_for(std::chrono::duration<double>(args.seconds));
    stop = true;
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    auto after = store.stats();
    while (outstanding.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto tx = after.transactions - before.transactions;
    auto commits = after.commits - before.commits;
    fmt::print("write callback  inflight={:<4} {:>9.0f} tx/s  {:>7} commits ({:.1f} tx/commit)\n", args.inflight,
               static_cast<double>(tx) / elapsed, commits,
               commits ? static_cast<double>(tx) / static_cast<double>(commits) : 0.0);
}

/// `threads` threads doing point lookups (one read transaction each) for the configured time.
void bench_reads(Store& store, const Args& args, unsigned threads, std::int64_t max_id, const char* label) {
    std::vector<std::vector<double>> latencies(threads);
    std::vector<std::thread> workers;
    auto deadline =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(args.seconds));
    auto start = Clock::now();
    for (unsigned t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            std::mt19937_64 rng(t + 1);
            std::uniform_int_distribution<std::int64_t> pick(1, max_id);
            auto& mine = latencies[t];
            while (Clock::now() < deadline) {
                std::int64_t id = pick(rng);
                auto begin = Clock::now();
                store.read([&](Tx& tx) {
                    auto row = tx.query_one("SELECT dialog_id, body, created_at FROM messages WHERE id = ?", {id});
                    if (!row) std::abort();
                });
                mine.push_back(micros(Clock::now() - begin));
            }
        });
    }
    for (auto& w : workers) w.join();
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    std::vector<double> all;
    for (auto& v : latencies) all.insert(all.end(), v.begin(), v.end());
    auto p = percentiles(all);
    fmt::print(
        "read point      threads={:<5} {:>9.0f} reads/s  latency p50 {:.1f} us  p99 {:.1f} us  max {:.0f} us  "
        "({})\n",
        threads, static_cast<double>(all.size()) / elapsed, p.p50, p.p99, p.max, label);
}

}  // namespace

int main(int argc, char** argv) {
    Args args = parse(argc, argv);
    namespace fs = std::filesystem;
    fs::path dir = fs::path(args.dir) / fmt::format("store-bench-{}", ::getpid());
    fs::create_directories(dir);
    parley::store::StoreOptions options;
    options.path = (dir / "bench.sqlite").string();
    options.readers = std::max(2u, args.readers);
    options.durable = args.durable;
    {
        auto store = Store::open_sqlite(options, migrations());
        fmt::print("store_bench: {} durable={} seconds={} (SQLite WAL, synchronous={})\n", options.path, args.durable,
                   args.seconds, args.durable ? "FULL" : "NORMAL");
        bench_coroutines(*store, args);
        bench_callbacks(*store, args);
        auto max_id = parley::store::read_value(
            *store, [](Tx& tx) { return tx.query_one("SELECT max(id) FROM messages")->integer(0); });
        fmt::print("rows: {}\n", max_id);
        bench_reads(*store, args, 1, max_id, "idle writer");
        bench_reads(*store, args, args.readers, max_id, "idle writer");
        // Reads while the coroutine writers run on another thread.
        std::thread writer([&] {
            Args quiet = args;
            bench_coroutines(*store, quiet);
        });
        bench_reads(*store, args, 1, max_id, "during co_write load");
        writer.join();
        store->close();
    }
    fs::remove_all(dir);
    return 0;
}
