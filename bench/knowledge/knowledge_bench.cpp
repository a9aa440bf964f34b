// Fastline Pro at scale: the figures issue 8 names.
//   ingest   MB/s and total seconds to ingest --mb MB of text (default 100) as Markdown documents of 1 MB
//            through the real pipeline (store the file, extract, chunk, analyze, one transaction per document)
//            with the service's ingest pool of --threads threads (default 2)         target: 100 MB < 60 s
//   search   latency of KnowledgeService::search (k = 5) over every chunk ingested (~125 000 with the default
//            chunk size), questions drawn from tests/data/knowledge/eval.json and random vocabulary
//                                                                                     target: p99 < 20 ms
//   hybrid   with --embeddings DIMS: every chunk is also embedded (an in-process embedder: a deterministic
//            random projection of the chunk's words, DIMS floats) at ingestion; prints the time to build the
//            base's hnswlib index (first search) and the latency of search_hybrid (BM25 + vectors fused)
// The text is generated: Ukrainian and English sentences over a Zipf-distributed vocabulary (real words of the
// sample documents plus generated ones), with headings every few paragraphs.
// Usage: knowledge_bench [--mb N] [--seconds S (search, default 10)] [--threads T] [--dir DIR] [--embeddings DIMS]
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/ids.h"
#include "core/log.h"
#include "knowledge/internal/analyzer.h"
#include "knowledge/knowledge.h"
#include "store/store.h"

using namespace parley;
using Steady = std::chrono::steady_clock;

namespace {

struct Options {
    std::size_t mb = 100;
    double seconds = 10;
    unsigned threads = 2;
    std::string dir;
    std::size_t embeddings = 0;  ///< dimensions; 0 → BM25 only
};

/// Embeds text in-process: each word adds a pseudo-random unit direction seeded by its hash, so texts that
/// share words are near. Answers inline (the provider's network time is not what is measured here).
class ProjectionEmbedder final : public knowledge::Embedder {
public:
    explicit ProjectionEmbedder(std::size_t dims) : dims_(dims) {}
    void embed(knowledge::EmbeddingRequest request, std::function<void(knowledge::EmbeddingResult)> done) override {
        knowledge::EmbeddingResult r;
        for (const auto& text : request.inputs) {
            std::vector<float> v(dims_, 0.0f);
            std::string word;
            auto add = [&] {
                if (word.empty()) return;
                const auto& direction = direction_of(word);
                for (std::size_t i = 0; i < dims_; ++i) v[i] += direction[i];
                word.clear();
            };
            for (char c : text) {
                if (c == ' ' || c == '\n' || c == '.' || c == ',') {
                    add();
                } else {
                    word.push_back(c);
                }
            }
            add();
            v[0] += 1e-3f;  // never all zero
            r.vectors.push_back(std::move(v));
        }
        done(std::move(r));
    }

private:
    const std::vector<float>& direction_of(const std::string& word) {
        std::lock_guard lock(mutex_);
        auto [it, fresh] = directions_.try_emplace(word);
        if (fresh) {
            std::mt19937 rng(static_cast<std::uint32_t>(std::hash<std::string>{}(word)));
            std::normal_distribution<float> n(0, 1);
            it->second.resize(dims_);
            for (auto& x : it->second) x = n(rng);
        }
        return it->second;  // never erased: the reference stays valid
    }

    std::size_t dims_;
    std::mutex mutex_;
    std::unordered_map<std::string, std::vector<float>> directions_;
};

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

/// Words of the sample documents plus generated Ukrainian- and English-looking words, Zipf-distributed.
class Vocabulary {
public:
    explicit Vocabulary(std::mt19937_64& rng) {
        for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(PARLEY_KNOWLEDGE_DATA) / "docs")) {
            std::string text = read_file(e.path());
            std::string word;
            for (char c : text + " ") {
                if (c == ' ' || c == '\n' || c == ',' || c == '.' || c == '<' || c == '>' || c == '"') {
                    if (word.size() > 2 && word.size() < 30) words_.push_back(word);
                    word.clear();
                } else {
                    word.push_back(c);
                }
            }
        }
        std::sort(words_.begin(), words_.end());
        words_.erase(std::unique(words_.begin(), words_.end()), words_.end());
        std::shuffle(words_.begin(), words_.end(), rng);
        const char* uk[] = {"ко", "на", "ві", "ст", "ра", "ти", "ло", "ми", "до", "за", "пе", "ре", "ни", "ка", "ль",
                            "ся", "го", "ву", "ді", "ба", "че", "жа", "лі", "ще", "по", "ху", "фо", "ґа", "їж", "єм"};
        const char* en[] = {"ta", "re", "on", "in", "er", "st", "al", "co", "de", "ma", "ti", "ve", "lo", "pr", "un",
                            "ex", "mi", "ba", "or", "ch", "sh", "wa", "le", "fi", "gu", "po", "sa", "ne", "ri", "mo"};
        std::uniform_int_distribution<int> syl(0, 29), len(2, 5);
        while (words_.size() < 30'000) {
            bool ukrainian = words_.size() % 2 == 0;
            std::string w;
            for (int i = len(rng); i > 0; --i) w += ukrainian ? uk[syl(rng)] : en[syl(rng)];
            words_.push_back(w);
        }
        double sum = 0;
        for (std::size_t i = 0; i < words_.size(); ++i) {
            sum += 1.0 / std::pow(static_cast<double>(i + 1), 1.05);
            cumulative_.push_back(sum);
        }
    }
    const std::string& pick(std::mt19937_64& rng) const {
        std::uniform_real_distribution<double> u(0, cumulative_.back());
        auto it = std::lower_bound(cumulative_.begin(), cumulative_.end(), u(rng));
        return words_[static_cast<std::size_t>(it - cumulative_.begin())];
    }

private:
    std::vector<std::string> words_;
    std::vector<double> cumulative_;
};

std::string make_document(const Vocabulary& vocab, std::mt19937_64& rng, std::size_t bytes) {
    std::string doc;
    std::uniform_int_distribution<int> words(6, 18), sentences(2, 6), paragraphs(2, 5);
    while (doc.size() < bytes) {
        doc += "## ";
        for (int i = 0; i < 3; ++i) doc += vocab.pick(rng) + (i < 2 ? " " : "\n\n");
        for (int p = paragraphs(rng); p > 0; --p) {
            for (int s = sentences(rng); s > 0; --s) {
                for (int w = words(rng); w > 0; --w) doc += vocab.pick(rng) + (w > 1 ? " " : ". ");
            }
            doc += "\n\n";
        }
    }
    return doc;
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
        if (a == "--mb") o.mb = std::stoul(next());
        else if (a == "--seconds") o.seconds = std::stod(next());
        else if (a == "--threads") o.threads = static_cast<unsigned>(std::stoul(next()));
        else if (a == "--dir") o.dir = next();
        else if (a == "--embeddings") o.embeddings = std::stoul(next());
        else {
            std::fprintf(stderr, "usage: knowledge_bench [--mb N] [--seconds S] [--threads T] [--dir DIR] [--embeddings DIMS]\n");
            return 2;
        }
    }
    spdlog::set_level(spdlog::level::warn);
    std::filesystem::path dir = o.dir.empty() ? std::filesystem::temp_directory_path() / ("parley-kbench-" + core::random_hex(6))
                                              : std::filesystem::path(o.dir);
    std::filesystem::create_directories(dir);
    core::SystemClock clock;
    store::StoreOptions so;
    so.path = (dir / "bench.db").string();
    so.durable = true;
    so.readers = 4;
    auto store = store::Store::open_sqlite(so, knowledge::migrations());
    knowledge::KnowledgeOptions ko;
    ko.ingest_threads = o.threads;
    ProjectionEmbedder embedder(std::max<std::size_t>(1, o.embeddings));
    if (o.embeddings) ko.embedder = &embedder;
    auto service = std::make_unique<knowledge::KnowledgeService>(*store, clock, ko);
    boost::asio::io_context io;
    auto guard = boost::asio::make_work_guard(io);
    std::thread io_thread([&] { io.run(); });
    auto run = [&](auto task) { return boost::asio::co_spawn(io, std::move(task), boost::asio::use_future).get(); };

    std::mt19937_64 rng(42);
    Vocabulary vocab(rng);
    boost::json::object base_spec{{"name", "bench"}};
    if (o.embeddings) base_spec["embeddings"] = boost::json::object{{"base_url", "http://embedder.invalid/v1"}, {"model", "projection"}};
    auto kb = run(service->create_base(std::move(base_spec)));
    std::printf("generating %zu MB of text...\n", o.mb);
    std::vector<std::string> docs;
    for (std::size_t i = 0; i < o.mb; ++i) docs.push_back(make_document(vocab, rng, 1 << 20));
    std::size_t total_bytes = 0;
    for (const auto& d : docs) total_bytes += d.size();

    auto start = Steady::now();
    for (std::size_t i = 0; i < docs.size(); ++i) {
        run(service->add_document(kb.id, knowledge::Upload{fmt::format("doc{:03}.md", i), "text/markdown", std::move(docs[i])}));
    }
    if (!service->wait_idle(std::chrono::hours(1))) return 1;
    double ingest_s = std::chrono::duration<double>(Steady::now() - start).count();
    auto base = service->base_json(kb);
    std::printf("ingest   %.1f MB in %.1f s = %.2f MB/s; %lld documents, %lld chunks, %lld failed  (target < 60 s)\n",
                static_cast<double>(total_bytes) / (1 << 20), ingest_s, static_cast<double>(total_bytes) / (1 << 20) / ingest_s,
                static_cast<long long>(base["documents"].as_int64()), static_cast<long long>(base["chunks"].as_int64()),
                static_cast<long long>(base["failed"].as_int64()));

    std::vector<std::string> queries;
    auto eval = boost::json::parse(read_file(std::filesystem::path(PARLEY_KNOWLEDGE_DATA) / "eval.json")).as_object();
    for (const auto& q : eval.at("questions").as_array()) queries.emplace_back(q.at("q").as_string());
    for (int i = 0; i < 200; ++i) {
        std::string q;
        for (int w = 0; w < 4; ++w) q += vocab.pick(rng) + " ";
        queries.push_back(q);
    }
    std::vector<double> lat;
    std::vector<std::pair<double, std::string>> slowest;
    std::size_t results = 0;
    auto search_start = Steady::now();
    for (std::size_t i = 0; std::chrono::duration<double>(Steady::now() - search_start).count() < o.seconds; ++i) {
        auto t0 = Steady::now();
        results += service->search({kb.id}, queries[i % queries.size()], 5).size();
        lat.push_back(std::chrono::duration<double, std::milli>(Steady::now() - t0).count());
        slowest.emplace_back(lat.back(), queries[i % queries.size()]);
    }
    std::sort(slowest.rbegin(), slowest.rend());
    if (std::getenv("KNOWLEDGE_BENCH_SLOWEST")) {
        for (std::size_t i = 0; i < std::min<std::size_t>(5, slowest.size()); ++i) {
            std::printf("  slow: %.2f ms  %s\n", slowest[i].first, slowest[i].second.c_str());
        }
    }
    std::printf("search   %zu queries over %lld chunks: p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms  (%.1f results/query)  (target p99 < 20 ms)\n",
                lat.size(), static_cast<long long>(base["chunks"].as_int64()), percentile(lat, 0.5), percentile(lat, 0.95),
                percentile(lat, 0.99), percentile(lat, 1.0), static_cast<double>(results) / static_cast<double>(lat.size()));

    if (o.embeddings) {
        auto t0 = Steady::now();
        run(service->search_hybrid({kb.id}, queries[0], 5));  // starts building the base's hnswlib index
        while (service->base_json(kb)["vector_index"] != "ready") std::this_thread::sleep_for(std::chrono::milliseconds(5));
        double build_s = std::chrono::duration<double>(Steady::now() - t0).count();
        std::printf("index    hnswlib over %lld vectors of %zu floats built in %.2f s (first hybrid search)\n",
                    static_cast<long long>(service->base_json(kb)["embedded_chunks"].as_int64()), o.embeddings, build_s);
        std::vector<double> hybrid;
        results = 0;
        auto hybrid_start = Steady::now();
        for (std::size_t i = 0; std::chrono::duration<double>(Steady::now() - hybrid_start).count() < o.seconds; ++i) {
            auto h0 = Steady::now();
            results += run(service->search_hybrid({kb.id}, queries[i % queries.size()], 5)).size();
            hybrid.push_back(std::chrono::duration<double, std::milli>(Steady::now() - h0).count());
        }
        std::printf("hybrid   %zu queries (embed query + hnsw + BM25 + fusion): p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms  (%.1f results/query)\n",
                    hybrid.size(), percentile(hybrid, 0.5), percentile(hybrid, 0.95), percentile(hybrid, 0.99),
                    percentile(hybrid, 1.0), static_cast<double>(results) / static_cast<double>(hybrid.size()));
    }

    service->stop();
    guard.reset();
    io.stop();
    io_thread.join();
    service.reset();
    store->close();
    if (o.dir.empty()) std::filesystem::remove_all(dir);
    return 0;
}
