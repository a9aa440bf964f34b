// Client cards at scale: --records N clients (default 1 000 000; a quarter with a dialog, half with an e-mail,
// two client fields: `tier` select (indexed) and `age` number), then the figures issue 4 names:
//   filter_phone     list with filter[phone][eq]=… (normalised key index, one card)
//   filter_email     list with filter[email][eq]=…
//   filter_tier      list with filter[tier][eq]=… (indexed client field, first page of 50)
//   filter_language  list with filter[language][eq]=… (first page of 50)
//   filter_combined  tier AND age >= … AND language (first page of 50)
//   export           rows/s of export_csv over every client (streamed, channels column included)
// Each latency figure runs for --seconds/5 and prints p50/p99/max. Usage:
//   clients_bench [--records N] [--seconds S (default 10)] [--dir DIR]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "auth/auth.h"
#include "clients/clients.h"
#include "core/clock.h"
#include "core/ids.h"
#include "store/store.h"

using namespace parley;
using SteadyClock = std::chrono::steady_clock;

namespace {

struct Options {
    std::size_t records = 1'000'000;
    double seconds = 10;
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
        if (a == "--records") o.records = std::stoul(next());
        else if (a == "--seconds") o.seconds = std::stod(next());
        else if (a == "--dir") o.dir = next();
        else throw std::invalid_argument("unknown option " + a);
    }
    return o;
}

/// The bots module's dialogs table, as the clients module reads it (the bench does not link bots).
store::Migration dialogs_table() {
    return {"benchrefs", 1, "dialogs", R"sql(
CREATE TABLE dialogs (id TEXT PRIMARY KEY, bot_id TEXT NOT NULL, client_id TEXT NOT NULL, channel TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'bot', waiting TEXT NOT NULL DEFAULT 'none', state TEXT NOT NULL DEFAULT '',
  last_n INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX dialogs_client ON dialogs(client_id, bot_id);
)sql"};
}

const char* kTiers[] = {"bronze", "silver", "gold", "platinum"};
const char* kLanguages[] = {"uk", "en", "pl"};

std::string phone_of(std::size_t i) { return fmt::format("+38050{:07}", i); }

void latency(const std::string& name, double seconds, const std::function<void(std::mt19937&)>& fn) {
    std::mt19937 rng(42);
    std::vector<double> ms;
    auto end = SteadyClock::now() + std::chrono::duration<double>(seconds);
    while (SteadyClock::now() < end || ms.size() < 20) {
        auto t0 = SteadyClock::now();
        fn(rng);
        ms.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    auto at = [&](double p) { return ms[std::min(ms.size() - 1, static_cast<std::size_t>(p * ms.size()))]; };
    std::printf("%-16s n=%-7zu p50=%.3f ms  p99=%.3f ms  max=%.3f ms\n", name.c_str(), ms.size(), at(0.5), at(0.99),
                ms.back());
}

}  // namespace

int main(int argc, char** argv) {
    Options o = parse(argc, argv);
    namespace fs = std::filesystem;
    fs::path dir = o.dir.empty() ? fs::temp_directory_path() / ("parley-clients-bench-" + core::random_hex(6)) : fs::path(o.dir);
    fs::create_directories(dir);
    store::StoreOptions options;
    options.path = (dir / "parley.db").string();
    options.durable = false;
    options.readers = 2;
    std::vector<store::Migration> all = auth::migrations();
    for (auto& m : clients::migrations()) all.push_back(m);
    all.push_back(dialogs_table());
    auto db = store::Store::open_sqlite(options, all);
    core::SystemClock clock;
    clients::ClientDirectory directory(*db, clock);

    bool fresh = store::read_value(*db, [](store::Tx& tx) { return tx.query_one("SELECT count(*) FROM clients")->integer(0); }) == 0;
    if (fresh) {
        auto t0 = SteadyClock::now();
        db->write_sync([](store::Tx& tx) {
            tx.exec("INSERT INTO client_fields(name, type, options, indexed, position, created_at, updated_at) VALUES "
                    "('tier', 'select', '[\"bronze\",\"silver\",\"gold\",\"platinum\"]', 1, 0, 0, 0), "
                    "('age', 'number', '[]', 0, 1, 0, 0)");
            tx.exec("CREATE INDEX client_field_tier ON clients(json_extract(fields, '$.\"tier\"'), id)");
        });
        const std::size_t batch = 50'000;
        std::int64_t base = clock.now_ms() - static_cast<std::int64_t>(o.records) * 1000;
        for (std::size_t start = 0; start < o.records; start += batch) {
            db->write_sync([&](store::Tx& tx) {
                for (std::size_t i = start; i < std::min(o.records, start + batch); ++i) {
                    std::string id = core::new_id();
                    std::string phone = phone_of(i);
                    std::string email = i % 2 ? fmt::format("client{}@example.com", i) : std::string();
                    std::string fields = fmt::format(R"({{"tier":"{}","age":{}}})", kTiers[i % 4], 18 + i % 60);
                    std::int64_t seen = base + static_cast<std::int64_t>(i) * 1000;
                    tx.exec("INSERT INTO clients(id, name, phone, email, language, fields, created_at, last_seen_at, "
                            "phone_key, email_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            {id, fmt::format("Client {}", i), phone, email, std::string(kLanguages[i % 3]), fields, seen,
                             seen, clients::phone_key(phone), clients::email_key(email)});
                    if (i % 4 == 0) {
                        tx.exec("INSERT INTO dialogs(id, bot_id, client_id, channel, created_at, updated_at) VALUES "
                                "(?, 'bot', ?, ?, ?, ?)",
                                {core::new_id(), id, std::string(i % 8 ? "telegram-1" : "widget-1"), seen, seen});
                    }
                }
            });
        }
        db->write_sync([](store::Tx& tx) { tx.exec("ANALYZE"); });
        double s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
        std::printf("populate         %zu clients in %.1f s (%.0f rows/s)\n", o.records, s, o.records / s);
    }
    std::size_t n = o.records;
    double each = o.seconds / 5;
    auto list = [&](std::vector<clients::Condition> conds) {
        clients::ClientQuery q;
        q.filter.conditions = std::move(conds);
        auto page = directory.list(q);
        if (page.items.empty()) throw std::runtime_error("a bench filter matched nothing");
    };
    latency("filter_phone", each, [&](std::mt19937& rng) {
        list({{"phone", clients::FilterOp::kEq, boost::json::value(phone_of(rng() % n))}});
    });
    latency("filter_email", each, [&](std::mt19937& rng) {
        list({{"email", clients::FilterOp::kEq, boost::json::value(fmt::format("client{}@example.com", (rng() % (n / 2)) * 2 + 1))}});
    });
    latency("filter_tier", each, [&](std::mt19937& rng) {
        list({{"tier", clients::FilterOp::kEq, kTiers[rng() % 4]}});
    });
    latency("filter_language", each, [&](std::mt19937& rng) {
        list({{"language", clients::FilterOp::kEq, kLanguages[rng() % 3]}});
    });
    latency("filter_combined", each, [&](std::mt19937& rng) {
        list({{"tier", clients::FilterOp::kEq, kTiers[rng() % 4]},
              {"age", clients::FilterOp::kGte, static_cast<std::int64_t>(20 + rng() % 30)},
              {"language", clients::FilterOp::kEq, kLanguages[rng() % 3]}});
    });

    auto t0 = SteadyClock::now();
    std::size_t bytes = 0, rows = 0;
    directory.export_csv({}, {}, [&](std::string_view chunk) {
        bytes += chunk.size();
        rows += static_cast<std::size_t>(std::count(chunk.begin(), chunk.end(), '\n'));
    });
    double s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    std::printf("export           %zu rows, %.1f MB in %.2f s: %.0f rows/s\n", rows - 1, bytes / 1e6, s, (rows - 1) / s);
    db->close();
    if (o.dir.empty()) fs::remove_all(dir);
    return 0;
}
