// Custom Data at scale: one model with --records N records (default 1 000 000) imported from a generated CSV
// file, then the figures the issue names:
//   import      rows/s of import_csv_sync from a file (streamed, one transaction; full-text indexing is left to
//               the background indexer thread, which runs concurrently and starts when the import commits)
//   indexed     time until the background indexer has indexed every imported row (from the import's commit
//               and from its start), and its rows/s                             target: import >= 100 000 rows/s
//   eq_unique   latency of filter[code][eq]=… (unique index, 1 row)             target p99 < 5 ms
//   eq_indexed  latency of filter[amount][eq]=… (plain index, first page of 50)  target p99 < 5 ms
//   search      latency of q=<one or two words> (FTS5, relevance, page of 50)   target p99 < 20 ms
//   export      rows/s of export_csv over every record (streamed)               target ≥ 100 000 rows/s
//   during      eq_indexed latency while the indexer is still working (readers never wait for the writer)
// Usage: customdata_bench [--records N] [--seconds S (per latency figure, default 5)] [--dir DIR] [--durable]
//                         [--no-search] [--batch ROWS (indexer batch, default customdata::kIndexBatchRows)]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/ids.h"
#include "customdata/customdata.h"
#include "store/async.h"
#include "store/store.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

using namespace parley;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
    std::size_t records = 1'000'000;
    double seconds = 5;
    std::string dir;
    bool durable = false;
    bool no_search = false;  ///< --no-search: title/body not searchable (measures the table part alone)
    std::size_t batch = parley::customdata::kIndexBatchRows;
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
        else if (a == "--durable") o.durable = true;
        else if (a == "--no-search") o.no_search = true;
        else if (a == "--batch") o.batch = std::stoul(next());
        else throw std::invalid_argument("unknown option " + a);
    }
    return o;
}

/// Pseudo-words from Ukrainian and English syllables (uniform over a 4000-word vocabulary).
std::vector<std::string> vocabulary() {
    const char* uk[] = {"ко", "ра", "ні", "ли", "ст", "ва", "ду", "же", "по", "сил", "ка", "ці", "ґа", "їж", "єв", "ти"};
    const char* en[] = {"pa", "rc", "el", "de", "li", "ve", "ry", "or", "der", "sto", "re", "qu", "al", "it", "ny", "te"};
    std::vector<std::string> words;
    std::mt19937 rng(7);
    while (words.size() < 4000) {
        bool ukr = words.size() % 2 == 0;
        std::string w;
        int syllables = 2 + static_cast<int>(rng() % 3);
        for (int s = 0; s < syllables; ++s) w += (ukr ? uk : en)[rng() % 16];
        words.push_back(w);
    }
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    return words;
}

struct Latency {
    std::vector<double> ms;
    void print(const char* name, const char* target) {
        std::sort(ms.begin(), ms.end());
        auto pct = [&](double p) { return ms.empty() ? 0.0 : ms[std::min(ms.size() - 1, static_cast<std::size_t>(p * ms.size()))]; };
        std::printf("%-11s n=%zu  p50=%.3f ms  p90=%.3f ms  p99=%.3f ms  max=%.3f ms   (%s)\n", name, ms.size(), pct(0.5),
                    pct(0.9), pct(0.99), ms.empty() ? 0.0 : ms.back(), target);
    }
};

/// CPU seconds of the whole process (every thread): a figure that a loaded machine distorts far less than wall
/// time, since the import and the indexer use about one core between them.
double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

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

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    try {
        opt = parse(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\nusage: customdata_bench [--records N] [--seconds S] [--dir DIR] [--durable] [--no-search] "
                     "[--batch ROWS]\n", e.what());
        return 2;
    }
    namespace fs = std::filesystem;
    fs::path dir = opt.dir.empty() ? fs::temp_directory_path() / ("parley-cdbench-" + core::random_hex(6)) : fs::path(opt.dir);
    fs::create_directories(dir);
    const auto words = vocabulary();
    std::mt19937_64 rng(42);
    auto word = [&] { return words[rng() % words.size()]; };

    // The CSV file.
    fs::path csv = dir / "records.csv";
    {
        auto t0 = Clock::now();
        std::ofstream out(csv, std::ios::binary);
        std::string buf = "title,body,code,amount,kind,day\r\n";
        const char* kinds[] = {"delivery", "quality", "payment", "other"};
        for (std::size_t i = 0; i < opt.records; ++i) {
            buf += word() + " " + word() + " " + word();
            buf += ',';
            buf += '"';
            for (int w = 0; w < 10; ++w) buf += (w ? " " : "") + word();
            buf += "\",";
            buf += fmt::format("C{:08},{},{},2024-{:02}-{:02}\r\n", i, rng() % 1000, kinds[rng() % 4], 1 + rng() % 12,
                               1 + rng() % 28);
            if (buf.size() > (1 << 20)) {
                out << buf;
                buf.clear();
            }
        }
        out << buf;
        std::printf("generated   %zu rows, %.1f MB in %.1f s\n", opt.records,
                    static_cast<double>(fs::file_size(csv)) / 1e6,
                    std::chrono::duration<double>(Clock::now() - t0).count());
    }

    store::StoreOptions so;
    so.path = (dir / "parley.db").string();
    so.durable = opt.durable;
    so.readers = 2;
    auto db = store::Store::open_sqlite(so, customdata::migrations());
    core::SystemClock clock;
    customdata::CustomDataOptions service_options;
    service_options.index_batch_rows = opt.batch;
    customdata::CustomDataService service(*db, clock, service_options);
    boost::asio::io_context io;
    std::string spec = R"({"name": "bench", "fields": [
        {"name": "title", "type": "text", "searchable": SEARCH},
        {"name": "body", "type": "text", "searchable": SEARCH},
        {"name": "code", "type": "text", "unique": true, "searchable": false},
        {"name": "amount", "type": "number", "indexed": true},
        {"name": "kind", "type": "select", "options": ["delivery", "quality", "payment", "other"]},
        {"name": "day", "type": "date"}]})";
    for (auto at = spec.find("SEARCH"); at != std::string::npos; at = spec.find("SEARCH")) {
        spec.replace(at, 6, opt.no_search ? "false" : "true");
    }
    auto created = boost::asio::co_spawn(io, service.create_model(boost::json::parse(spec).as_object()),
                                         boost::asio::use_future);
    io.run();
    created.get();

    // Import (the indexer thread runs; it gets the writer once the import's single transaction commits).
    auto q_of = [](std::vector<std::pair<std::string, std::string>> p) { return customdata::parse_record_query(p, true); };
    {
        customdata::FileCsvSource source(csv.string());
        auto t0 = Clock::now();
        double c0 = cpu_seconds();
        auto result = service.import_csv_sync("bench", source, {});
        auto t1 = Clock::now();
        double c1 = cpu_seconds();
        double s = std::chrono::duration<double>(t1 - t0).count();
        std::printf("import      %zu rows in %.2f s = %.0f rows/s; %.2f CPU s = %.0f rows per CPU second   (target >= "
                    "100000 rows/s; %zu errors; %zu pending for the indexer)\n",
                    result.imported, s, static_cast<double>(result.imported) / s, c1 - c0,
                    static_cast<double>(result.imported) / std::max(c1 - c0, 1e-9), result.error_count,
                    result.index_pending);
        if (result.imported != opt.records) {
            std::fprintf(stderr, "import failed: %s\n", result.errors.empty() ? "?" : result.errors[0].message.c_str());
            return 1;
        }
        // Filter latency while the indexer holds the writer in batches: one query every 20 ms, so the probe does
        // not compete with the indexer for the CPU.
        Latency during;
        std::size_t during_hits = 0;
        while (service.index_pending("bench") > 0 && during.ms.size() < 100000) {
            auto a = Clock::now();
            during_hits += service.list_records("bench", q_of({{"filter[amount][eq]", std::to_string(rng() % 1000)}}))
                               .items.size();
            during.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        if (!service.wait_search_indexed(std::chrono::hours(1))) {
            std::fprintf(stderr, "the indexer did not finish\n");
            return 1;
        }
        auto t2 = Clock::now();
        double c2 = cpu_seconds();
        double idx = std::chrono::duration<double>(t2 - t1).count();
        std::printf("indexed     all %zu rows %.2f s after the import committed (%.0f rows/s, batches of %zu; %.2f CPU s "
                    "= %.1f us per row); %.2f s after it started\n",
                    result.imported, idx, static_cast<double>(result.imported) / std::max(idx, 1e-9), opt.batch,
                    c2 - c1, (c2 - c1) * 1e6 / static_cast<double>(std::max<std::size_t>(result.imported, 1)),
                    std::chrono::duration<double>(t2 - t0).count());
        if (!during.ms.empty()) during.print("during", "eq_indexed while indexing");
        (void)during_hits;
    }

    // Latencies (everything indexed).
    measure(0.5, [&] { service.list_records("bench", q_of({{"filter[code][eq]", "C00000001"}})); });  // warm up
    std::size_t hits = 0;
    measure(opt.seconds, [&] {
        hits += service.list_records("bench", q_of({{"filter[code][eq]", fmt::format("C{:08}", rng() % opt.records)}}))
                    .items.size();
    }).print("eq_unique", "target p99 < 5 ms");
    measure(opt.seconds, [&] {
        hits += service.list_records("bench", q_of({{"filter[amount][eq]", std::to_string(rng() % 1000)}})).items.size();
    }).print("eq_indexed", "target p99 < 5 ms");
    measure(opt.seconds, [&] {
        // One word, or a word and the first three characters of another (autocomplete).
        std::string second = word();
        std::size_t cut = 0;
        for (int chars = 0; cut < second.size() && chars < 3; ++chars) {
            do ++cut;
            while (cut < second.size() && (static_cast<unsigned char>(second[cut]) & 0xC0) == 0x80);
        }
        std::string q = rng() % 2 ? word() : word() + " " + second.substr(0, cut);
        hits += service.list_records("bench", q_of({{"q", q}})).items.size();
    }).print("search", "target p99 < 20 ms");

    // Export.
    {
        std::size_t bytes = 0;
        auto t0 = Clock::now();
        std::size_t rows = service.export_csv("bench", {}, [&](std::string_view chunk) { bytes += chunk.size(); });
        double s = std::chrono::duration<double>(Clock::now() - t0).count();
        std::printf("export      %zu rows (%.1f MB) in %.2f s = %.0f rows/s   (target >= 100000 rows/s)\n", rows,
                    static_cast<double>(bytes) / 1e6, s, static_cast<double>(rows) / s);
    }
    std::printf("(%zu rows returned by queries)\n", hits);
    service.stop_indexer();
    db->close();
    if (opt.dir.empty()) fs::remove_all(dir);
    return 0;
}
