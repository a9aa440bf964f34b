// Operator routing throughput: dialogs handed over by bots (the `operator_panel__connect_to_operator_with_msg`
// action) and assigned to operators, through OperatorService on a real SQLite store. Figures:
//   handover    dialogs/s handed over and assigned at once to a free operator (least busy)   target >= 1 000/s
//   queue       dialogs/s assigned from the queue when the operators come back online
//   close       dialogs/s closed (the client back to the bot, `dialog_closed` triggers, queue dispatch)
// Rounds of --batch dialogs repeat until --seconds of handover time have passed; dialogs are created before each
// round (not timed). After the run the invariants are checked: no dialog assigned twice, capacity never exceeded.
// Usage: operator_bench [--seconds S (default 5)] [--operators N (50)] [--capacity C (100)] [--batch B (2000)]
//                       [--in-flight K (256)] [--durable] [--dir DIR]
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "auth/auth.h"
#include "bots/bots.h"
#include "bots/dialogs.h"
#include "bots/triggers.h"
#include "clients/clients.h"
#include "core/clock.h"
#include "core/ids.h"
#include "operator/operator.h"
#include "store/store.h"

using namespace parley;
namespace asio = boost::asio;
namespace json = boost::json;
using Steady = std::chrono::steady_clock;

namespace {

struct Options {
    double seconds = 5;
    unsigned operators = 50;
    unsigned capacity = 100;
    std::size_t batch = 2000;
    std::size_t in_flight = 256;
    bool durable = false;
    std::string dir;
};

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "--seconds") o.seconds = std::stod(next());
        else if (a == "--operators") o.operators = static_cast<unsigned>(std::stoul(next()));
        else if (a == "--capacity") o.capacity = static_cast<unsigned>(std::stoul(next()));
        else if (a == "--batch") o.batch = std::stoul(next());
        else if (a == "--in-flight") o.in_flight = std::stoul(next());
        else if (a == "--durable") o.durable = true;
        else if (a == "--dir") o.dir = next();
        else throw std::invalid_argument("unknown option " + a);
    }
    if (o.capacity < 1 || o.capacity > operators::kMaxCapacity) throw std::invalid_argument("--capacity is 1..100");
    if (static_cast<std::size_t>(o.operators) * o.capacity < o.batch) {
        throw std::invalid_argument("--operators × --capacity must hold one --batch");
    }
    return o;
}

/// At most `limit` operations in flight; wait() until all have finished.
class Gate {
public:
    explicit Gate(std::size_t limit) : limit_(limit) {}
    void enter() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return active_ < limit_; });
        ++active_;
    }
    void leave() {
        {
            std::lock_guard lock(mutex_);
            --active_;
        }
        cv_.notify_all();
    }
    void wait() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return active_ == 0; });
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::size_t limit_;
    std::size_t active_ = 0;
};

double seconds_since(Steady::time_point t) { return std::chrono::duration<double>(Steady::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) try {
    Options o = parse(argc, argv);
    std::filesystem::path dir = o.dir.empty() ? std::filesystem::temp_directory_path() /
                                                    ("parley-operator-bench-" + std::to_string(::getpid()))
                                              : std::filesystem::path(o.dir);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::vector<store::Migration> migrations = auth::migrations();
    for (auto& m : clients::migrations()) migrations.push_back(m);
    for (auto& m : bots::migrations()) migrations.push_back(m);
    for (auto& m : operators::migrations()) migrations.push_back(m);
    store::StoreOptions options;
    options.path = (dir / "bench.db").string();
    options.durable = o.durable;
    auto db = store::Store::open_sqlite(options, migrations);
    core::SystemClock clock;
    actions::ActionRegistry registry;
    bots::BotService bots(*db, clock, registry);
    bots::DialogService dialogs(bots, registry, nullptr, nullptr, nullptr);
    bots::TriggerService triggers(bots, dialogs);
    operators::OperatorService service(*db, clock, dialogs, triggers, nullptr);

    asio::io_context io;
    auto work = asio::make_work_guard(io);
    std::thread runner([&] { io.run(); });
    std::string bot = asio::co_spawn(io, bots.create("Bench", true), asio::use_future).get().id;

    std::vector<std::shared_ptr<core::Principal>> staff;
    for (unsigned i = 0; i < o.operators; ++i) {
        auto p = std::make_shared<core::Principal>();
        p->user_id = fmt::format("op{:04}", i);
        p->permissions = {"operator.view", "operator.edit"};
        staff.push_back(p);
        db->write_sync([id = p->user_id, now = clock.now_ms()](store::Tx& tx) {
            tx.exec("INSERT INTO auth_users(id, email, name, language, password_hash, active, created_at, updated_at, "
                    "password_changed_at) VALUES (?, ?, ?, 'en', 'x', 1, ?, ?, ?)",
                    {id, id + "@bench.local", id, now, now, now});
        });
    }
    auto set_all = [&](const char* status) {
        for (auto& p : staff) {
            asio::co_spawn(io, service.set_status(*p, status, o.capacity), asio::use_future).get();
        }
    };
    set_all("online");

    // Dialogs of new clients, made in one transaction (not timed).
    auto make_dialogs = [&](std::size_t n) {
        std::vector<std::string> ids;
        ids.reserve(n);
        for (std::size_t i = 0; i < n; ++i) ids.push_back(core::new_id());
        db->write_sync([&](store::Tx& tx) {
            std::int64_t now = clock.now_ms();
            for (const auto& id : ids) {
                auto c = clients::create_client(tx, clients::NewClient{"Client", "", "", "en", {}}, now);
                tx.exec("INSERT INTO dialogs(id, bot_id, client_id, channel, status, waiting, state, last_n, created_at, "
                        "updated_at) VALUES (?, ?, ?, 'telegram', 'bot', 'none', '', 0, ?, ?)",
                        {id, bot, c.id, now, now});
            }
        });
        return ids;
    };
    Gate gate(o.in_flight);
    std::atomic<std::size_t> connected{0}, queued{0}, other{0};
    auto hand_over = [&](const std::vector<std::string>& ids) {
        for (const auto& id : ids) {
            gate.enter();
            actions::ActionCall call{"operator_panel__connect_to_operator_with_msg",
                                     json::object{{"auto_connect_operator", true}, {"status", "queue"}}, id, "", {}, {}};
            service.connect(std::move(call), [&](actions::ActionResult r) {
                if (r.event == "connected") ++connected;
                else if (r.event == "queued") ++queued;
                else ++other;
                gate.leave();
            });
        }
        gate.wait();
    };
    auto close_all = [&](const std::vector<std::string>& ids) {
        // Each dialog closed by whoever holds it (the supervisor's right is not needed).
        std::vector<std::pair<std::string, std::string>> held;
        db->read([&](store::Tx& tx) {
            for (const auto& id : ids) {
                auto r = tx.query_one("SELECT operator_id FROM op_dialogs WHERE dialog_id = ?", {id});
                held.emplace_back(id, r ? r->text(0) : std::string());
            }
        });
        std::unordered_map<std::string, std::shared_ptr<core::Principal>> by_id;
        for (auto& p : staff) by_id[p->user_id] = p;
        for (auto& [id, op] : held) {
            gate.enter();
            auto who = by_id.at(op);
            asio::co_spawn(io, service.close(*who, id), [&gate](std::exception_ptr e) {
                if (e) std::rethrow_exception(e);
                gate.leave();
            });
        }
        gate.wait();
    };

    double handover_s = 0, close_s = 0;
    std::size_t handed = 0, closed = 0;
    while (handover_s < o.seconds) {
        auto ids = make_dialogs(o.batch);
        auto t = Steady::now();
        hand_over(ids);
        handover_s += seconds_since(t);
        handed += ids.size();
        t = Steady::now();
        close_all(ids);
        close_s += seconds_since(t);
        closed += ids.size();
    }
    if (queued.load() || other.load()) {
        std::fprintf(stderr, "unexpected: %zu queued, %zu other while operators had room\n", queued.load(), other.load());
        return 1;
    }

    // The queue: everybody on a break, a batch waits, then everybody comes back.
    auto ids = make_dialogs(o.batch);
    set_all("online");
    for (std::size_t i = 1; i < staff.size(); ++i) {
        asio::co_spawn(io, service.set_status(*staff[i], "break", std::nullopt), asio::use_future).get();
    }
    // One operator stays online with no room so that handovers queue (someone could serve).
    asio::co_spawn(io, service.set_status(*staff[0], "online", 1), asio::use_future).get();
    auto filler = make_dialogs(1);
    hand_over(filler);
    connected = 0;
    queued = 0;
    hand_over(ids);
    if (queued.load() != ids.size()) {
        std::fprintf(stderr, "unexpected: %zu of %zu queued\n", queued.load(), ids.size());
        return 1;
    }
    auto t = Steady::now();
    for (std::size_t i = 1; i < staff.size(); ++i) {
        asio::co_spawn(io, service.set_status(*staff[i], "online", o.capacity), asio::use_future).get();
    }
    double queue_s = seconds_since(t);
    std::size_t waiting = 0;
    db->read([&](store::Tx& tx) { waiting = static_cast<std::size_t>(tx.query_one("SELECT count(*) FROM op_dialogs WHERE state = 'queue'")->integer(0)); });

    // Invariants.
    bool ok = true;
    db->read([&](store::Tx& tx) {
        for (const auto& r : tx.query("SELECT o.user_id, o.active_dialogs, o.capacity, (SELECT count(*) FROM op_dialogs d "
                                      "WHERE d.operator_id = o.user_id AND d.state = 'assigned') FROM op_operators o")) {
            if (r.integer(1) != r.integer(3) || r.integer(3) > r.integer(2)) ok = false;
        }
    });
    std::printf("operator_bench: %u operators x capacity %u, batch %zu, %zu in flight, %s store\n", o.operators, o.capacity,
                o.batch, o.in_flight, o.durable ? "durable" : "non-durable");
    std::printf("handover  %8.0f dialogs/s handed over and assigned (%zu in %.2f s)\n", handed / handover_s, handed, handover_s);
    std::printf("queue     %8.0f dialogs/s assigned from the queue (%zu in %.2f s, %zu left waiting)\n",
                (ids.size() - waiting) / queue_s, ids.size() - waiting, queue_s, waiting);
    std::printf("close     %8.0f dialogs/s closed (%zu in %.2f s)\n", closed / close_s, closed, close_s);
    std::printf("invariants %s (no dialog assigned twice, capacity never exceeded)\n", ok ? "hold" : "BROKEN");
    work.reset();
    runner.join();
    db->close();
    if (o.dir.empty()) std::filesystem::remove_all(dir);
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "operator_bench: %s\n", e.what());
    return 2;
}
