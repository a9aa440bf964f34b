// Tickets at scale: --tickets N tickets (default 100 000) written straight into the tables, then the figures the
// web UI's ticket list depends on (each measured for --seconds S):
//   create        tickets/s of TicketService::create, one after another (each its own write transaction)
//   list_default  first page (50) of GET /tickets as a supervisor, newest update first
//   list_operator first page as an operator (visibility rule: unassigned, own, watched, own groups)
//   list_filtered status=open,pending & priority=high,urgent & assignee=<user>, sorted by -priority
//   list_field    field.reason=quality (custom field, JSON extract over the table)
//   list_text     q=<word> (substring of title or description, full scan)
//   page_walk     the 20th page reached by following next_cursor (20 requests, timed as one)
//   get           one ticket with links, watchers and comment count
// Usage: tickets_bench [--tickets N] [--seconds S] [--dir DIR] [--durable]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <random>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "actions/actions.h"
#include "auth/permissions.h"
#include "bots/bots.h"
#include "bots/dialogs.h"
#include "clients/clients.h"
#include "core/clock.h"
#include "core/ids.h"
#include "operator/operator.h"
#include "operator/tickets.h"
#include "store/store.h"

using namespace parley;
using Clock = std::chrono::steady_clock;
namespace json = boost::json;

namespace {

struct Options {
    std::size_t tickets = 100'000;
    double seconds = 3;
    std::string dir;
    bool durable = false;
};

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "--tickets") o.tickets = std::stoul(next());
        else if (a == "--seconds") o.seconds = std::stod(next());
        else if (a == "--dir") o.dir = next();
        else if (a == "--durable") o.durable = true;
        else throw std::invalid_argument("unknown option " + a);
    }
    return o;
}

struct Latency {
    std::vector<double> ms;
    void print(const char* name) {
        std::sort(ms.begin(), ms.end());
        auto pct = [&](double p) {
            return ms.empty() ? 0.0 : ms[std::min(ms.size() - 1, static_cast<std::size_t>(p * static_cast<double>(ms.size())))];
        };
        std::printf("%-14s n=%-6zu p50=%.3f ms  p90=%.3f ms  p99=%.3f ms  max=%.3f ms\n", name, ms.size(), pct(0.5), pct(0.9),
                    pct(0.99), ms.empty() ? 0.0 : ms.back());
    }
};

template <typename F>
Latency measure(double seconds, F&& fn) {
    Latency l;
    auto end = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < end) {
        auto t0 = Clock::now();
        fn();
        l.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    return l;
}

core::Principal person(const std::string& id, const std::string& role) {
    core::Principal p;
    p.user_id = id;
    p.roles = {role};
    for (const auto& r : auth::builtin_roles()) {
        if (r.name == role) p.permissions.insert(r.defaults.begin(), r.defaults.end());
    }
    return p;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    try {
        opt = parse(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\nusage: tickets_bench [--tickets N] [--seconds S] [--dir DIR] [--durable]\n", e.what());
        return 2;
    }
    namespace fs = std::filesystem;
    fs::path dir = opt.dir.empty() ? fs::temp_directory_path() / ("parley-tkbench-" + core::random_hex(6)) : fs::path(opt.dir);
    fs::create_directories(dir);

    std::vector<store::Migration> migrations = clients::migrations();
    for (auto& m : bots::migrations()) migrations.push_back(m);
    for (auto& m : operators::migrations()) migrations.push_back(m);
    for (auto& m : operators::ticket_migrations()) migrations.push_back(m);
    store::StoreOptions so;
    so.path = (dir / "tickets.db").string();
    so.durable = opt.durable;
    so.readers = 2;
    auto db = store::Store::open_sqlite(so, migrations);
    core::SystemClock clock;
    actions::ActionRegistry registry;
    bots::BotService bots(*db, clock, registry);
    bots::DialogService dialogs(bots, registry, nullptr, nullptr, nullptr);
    const std::vector<std::string> users = {"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10"};
    operators::StaffDirectory staff;
    staff.groups_of = [](std::string_view user) {
        return std::vector<std::string>{user.size() % 2 ? "billing" : "delivery"};
    };
    operators::TicketService service(*db, clock, dialogs, nullptr, std::move(staff));
    boost::asio::io_context io;
    auto run = [&](auto awaitable) { return boost::asio::co_spawn(io, std::move(awaitable), boost::asio::use_future); };
    auto await = [&](auto awaitable) {
        auto f = run(std::move(awaitable));
        io.restart();
        io.run();
        return f.get();
    };
    await(service.create_field(json::object{{"name", "reason"}, {"type", "select"},
                                            {"options", json::array{"delivery", "quality", "price", "other"}}}));

    // Seed: one transaction, the same rows create() would write (SLA times left empty).
    {
        auto t0 = Clock::now();
        std::mt19937_64 rng(42);
        const char* statuses[] = {"new", "open", "pending", "resolved", "closed"};
        const char* reasons[] = {"delivery", "quality", "price", "other"};
        const char* words[] = {"refund", "parcel", "invoice", "screen", "delivery", "broken", "late", "account",
                               "password", "order", "payment", "courier"};
        std::int64_t base = clock.now_ms() - static_cast<std::int64_t>(opt.tickets) * 1000;
        const std::size_t n = opt.tickets;
        db->write_sync([&](store::Tx& tx) {
            for (std::size_t i = 0; i < n; ++i) {
                std::int64_t number = static_cast<std::int64_t>(i) + 1;
                std::int64_t at = base + number * 1000;
                std::string id = core::new_id();
                std::string title = fmt::format("{} {} {}", words[rng() % 12], words[rng() % 12], number);
                std::string description = fmt::format("The customer writes about the {} and the {}.", words[rng() % 12],
                                                      words[rng() % 12]);
                bool assigned = rng() % 4 != 0;
                tx.exec("INSERT INTO tk_tickets(id, number, title, description, status, priority, assignee_id, group_id, "
                        "fields, created_by, created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'u1', ?, ?, 1)",
                        {id, number, title, description, std::string(statuses[rng() % 5]), static_cast<std::int64_t>(rng() % 4),
                         assigned ? store::Value(users[rng() % users.size()]) : store::Value(nullptr),
                         rng() % 2 ? store::Value(std::string(rng() % 2 ? "billing" : "delivery")) : store::Value(nullptr),
                         json::serialize(json::object{{"reason", reasons[rng() % 4]}}), at, at});
                tx.exec("INSERT INTO tk_ticket_tags(ticket_id, tag) VALUES (?, ?)", {id, std::string(words[rng() % 12])});
                tx.exec("INSERT INTO tk_watchers(ticket_id, user_id, created_at) VALUES (?, ?, ?)",
                        {id, users[rng() % users.size()], at});
            }
            tx.exec("UPDATE tk_counter SET next_number = ?", {static_cast<std::int64_t>(n) + 1});
        });
        std::printf("seeded        %zu tickets in %.1f s\n", n,
                    std::chrono::duration<double>(Clock::now() - t0).count());
    }

    core::Principal supervisor = person("sup", "supervisor");
    core::Principal operator_ = person("u3", "operator");
    auto list = [&](const core::Principal& who, std::vector<std::pair<std::string, std::string>> q,
                    std::optional<std::string>* next = nullptr) {
        return service.list(who, operators::parse_ticket_filter(q), next);
    };

    // create
    {
        std::size_t created = 0;
        auto t0 = Clock::now();
        auto end = t0 + std::chrono::duration<double>(opt.seconds);
        while (Clock::now() < end) {
            await(service.create(operator_, json::object{{"title", "Bench ticket"}, {"priority", "high"},
                                                        {"tags", json::array{"bench"}},
                                                        {"fields", json::object{{"reason", "price"}}}}));
            ++created;
        }
        double s = std::chrono::duration<double>(Clock::now() - t0).count();
        std::printf("create        %zu tickets in %.2f s = %.0f tickets/s (%s)\n", created, s,
                    static_cast<double>(created) / s, opt.durable ? "durable" : "not durable");
    }

    std::size_t rows = 0;
    measure(opt.seconds, [&] { rows += list(supervisor, {}).size(); }).print("list_default");
    measure(opt.seconds, [&] { rows += list(operator_, {}).size(); }).print("list_operator");
    measure(opt.seconds, [&] {
        rows += list(supervisor, {{"status", "open,pending"}, {"priority", "high,urgent"}, {"assignee", "u4"},
                                  {"sort", "-priority"}})
                    .size();
    }).print("list_filtered");
    measure(opt.seconds, [&] { rows += list(supervisor, {{"field.reason", "quality"}}).size(); }).print("list_field");
    measure(opt.seconds, [&] { rows += list(supervisor, {{"q", "courier"}}).size(); }).print("list_text");
    measure(opt.seconds, [&] {
        std::optional<std::string> cursor;
        for (int page = 0; page < 20; ++page) {
            std::vector<std::pair<std::string, std::string>> q{{"sort", "-updated_at"}};
            if (cursor) q.emplace_back("cursor", *cursor);
            std::optional<std::string> next;
            rows += list(supervisor, q, &next).size();
            cursor = next;
        }
    }).print("page_walk(20)");
    std::mt19937_64 rng(7);
    measure(opt.seconds, [&] {
        rows += service.get(supervisor, fmt::format("T-{}", 1 + rng() % opt.tickets)).size();
    }).print("get");
    std::printf("(%zu rows read)\n", rows);

    db->close();
    if (opt.dir.empty()) fs::remove_all(dir);
    return 0;
}
