// Sync sources (seed "KB Plugin"): a URL or a folder under the sync root, synced on a schedule by the service's
// scheduler thread. A run fetches the URL (through the outbound client and its SSRF guard) or walks the folder,
// and adds, updates (by SHA-256 of the content) and — for folders, only after a complete walk — removes the
// source's documents; ingestion then runs as for uploads. The outcome is recorded on the source.
#include <fmt/format.h>

#include <boost/asio/use_awaitable.hpp>
#include <future>
#include <set>

#include "core/clock.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "knowledge/internal/analyzer.h"
#include "knowledge/internal/extract.h"
#include "knowledge/internal/retrieval.h"
#include "knowledge/internal/sources.h"
#include "knowledge/internal/vectors.h"
#include "knowledge/knowledge.h"
#include "outbound/outbound.h"
#include "store/async.h"

namespace parley::knowledge {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using store::Row;
using store::Tx;

namespace {

/// A running sync holds its source this long; a node that died mid-run frees it when the lease ends.
constexpr std::int64_t kSyncLeaseMs = 15 * 60 * 1000;
/// How long a URL source's fetch may take.
constexpr std::int64_t kFetchTimeoutMs = 60'000;
/// Skipped files listed in a source's status.
constexpr std::size_t kMaxSkippedListed = 20;

json::array field_detail(std::string_view field) { return json::array{json::object{{"field", field}}}; }

std::string_view kind_name(SourceKind kind) { return kind == SourceKind::kUrl ? "url" : "folder"; }

constexpr const char* kSourceColumns =
    "id, kb_id, kind, location, interval_s, active, next_run_at, run_requested, running_until, last_run_at, "
    "last_finished_at, last_result, last_error, last_counts, duration_ms, created_at, updated_at";

Source source_from(const Row& r, std::int64_t now) {
    Source s;
    s.id = r.text(0);
    s.kb_id = r.text(1);
    s.kind = r.text(2) == "folder" ? SourceKind::kFolder : SourceKind::kUrl;
    s.location = r.text(3);
    s.interval_s = r.integer(4);
    s.active = r.integer(5) != 0;
    s.next_run_at = r.integer(6);
    auto running_until = r.opt_integer(8);
    s.status.state = running_until && *running_until >= now ? "running" : r.integer(7) != 0 ? "queued" : "idle";
    s.status.last_run_at = r.opt_integer(9);
    s.status.last_finished_at = r.opt_integer(10);
    s.status.last_result = r.opt_text(11);
    s.status.last_error = r.opt_text(12);
    boost::system::error_code ec;
    auto counts = json::parse(r.text(13), ec);
    if (!ec && counts.is_object()) {
        const auto& c = counts.get_object();
        auto get = [&](std::string_view key) {
            auto* v = c.if_contains(key);
            return v && v->is_int64() ? v->get_int64() : 0;
        };
        s.status.added = get("added");
        s.status.updated = get("updated");
        s.status.removed = get("removed");
        s.status.unchanged = get("unchanged");
        s.status.skipped = get("skipped");
        if (auto* f = c.if_contains("skipped_files"); f && f->is_array()) s.status.skipped_files = f->get_array();
    }
    s.status.duration_ms = r.opt_integer(14);
    s.created_at = r.integer(15);
    s.updated_at = r.integer(16);
    return s;
}

std::string base_id(Tx& tx, std::string_view ref) {
    auto row = tx.query_one("SELECT id FROM knowledge_bases WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
                            {std::string(ref), std::string(ref), std::string(ref)});
    if (!row) throw core::NotFound(fmt::format("no knowledge base '{}'", ref.substr(0, 100)), "knowledge_base_not_found");
    return row->text(0);
}

Source require_source(Tx& tx, const std::string& kb_id, std::string_view id, std::int64_t now) {
    auto row = tx.query_one(fmt::format("SELECT {} FROM knowledge_sources WHERE id = ? AND kb_id = ?", kSourceColumns),
                            {std::string(id), kb_id});
    if (!row) throw core::NotFound(fmt::format("no sync source '{}' in this knowledge base", id.substr(0, 100)),
                                   "source_not_found");
    return source_from(*row, now);
}

std::int64_t interval_of(const json::object& spec, std::int64_t fallback) {
    auto v = core::optional_int(spec, "interval");
    if (!v) return fallback;
    if (*v < kMinSyncIntervalS || *v > kMaxSyncIntervalS) {
        throw core::BadRequest(fmt::format("'interval' is in seconds, from {} to {}", kMinSyncIntervalS, kMaxSyncIntervalS),
                               "invalid_field", field_detail("interval"));
    }
    return *v;
}

/// The stored location of a source: the URL as given, or the folder relative to the sync root.
std::string check_location(SourceKind kind, std::string_view location, const std::string& sync_root) {
    if (location.empty()) throw core::BadRequest("'location' is empty", "missing_field", field_detail("location"));
    if (kind == SourceKind::kUrl) {
        if (auto why = internal::check_source_url(location); !why.empty()) {
            throw core::BadRequest(why, "invalid_location", field_detail("location"));
        }
        return std::string(location);
    }
    if (sync_root.empty()) {
        throw core::Unprocessable("folder sources are disabled on this server (no knowledge sync root is configured)",
                                  "folder_sync_disabled", field_detail("kind"));
    }
    if (!internal::valid_utf8(location)) {
        throw core::BadRequest("'location' must be UTF-8 text", "invalid_location", field_detail("location"));
    }
    try {
        auto relative = internal::resolve_folder(sync_root, location).generic_string();
        return relative.empty() ? "." : relative;
    } catch (const internal::FolderError& e) {
        if (e.code() == "path_outside_root") throw core::BadRequest(e.what(), "path_outside_root", field_detail("location"));
        throw core::Unprocessable(e.what(), e.code(), field_detail("location"));
    }
}

/// A document name for a file of a source: the path (folders) or the URL's last path segment.
std::string item_name(SourceKind kind, const std::string& key) {
    if (kind == SourceKind::kFolder) return key;
    std::string_view url(key);
    url = url.substr(0, url.find_first_of("?#"));
    auto scheme = url.find("://");
    std::string_view rest = scheme == std::string_view::npos ? url : url.substr(scheme + 3);
    auto slash = rest.find('/');
    std::string_view host = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    auto last = path.rfind('/');
    std::string_view segment = last == std::string_view::npos ? path : path.substr(last + 1);
    return std::string(segment.empty() ? host : segment).substr(0, kMaxNameBytes);
}

bool valid_document_name(std::string_view name) {
    if (name.empty() || name.size() > kMaxNameBytes || !internal::valid_utf8(name)) return false;
    for (unsigned char c : name) {
        if (c < 0x20 || c == 0x7F) return false;
    }
    return true;
}

struct SyncCounts {
    std::int64_t added = 0, updated = 0, removed = 0, unchanged = 0, skipped = 0;
    json::array skipped_files;

    void skip(const std::string& key, const std::string& reason) {
        ++skipped;
        if (skipped_files.size() < kMaxSkippedListed) {
            skipped_files.push_back(json::object{{"path", key.substr(0, 300)}, {"reason", reason}});
        }
    }
    json::object to_json() const {
        return json::object{{"added", added},         {"updated", updated}, {"removed", removed},
                            {"unchanged", unchanged}, {"skipped", skipped}, {"skipped_files", skipped_files}};
    }
};

/// The source was deleted while it synced: the run stops.
struct SourceGone : std::runtime_error {
    SourceGone() : std::runtime_error("the source was deleted during the sync") {}
};

}  // namespace

// --- routes' operations ---------------------------------------------------------------------------------------

asio::awaitable<Source> KnowledgeService::create_source(std::string kb_ref, json::object spec) {
    core::reject_unknown_fields(spec, {"kind", "location", "interval", "active"});
    std::string kind_text(core::required_string(spec, "kind"));
    if (kind_text != "url" && kind_text != "folder") {
        throw core::BadRequest("'kind' is url or folder", "invalid_field", field_detail("kind"));
    }
    Source src;
    src.id = core::new_id();
    src.kind = kind_text == "url" ? SourceKind::kUrl : SourceKind::kFolder;
    src.location = check_location(src.kind, core::required_string(spec, "location"), options_.sync_root);
    src.interval_s = interval_of(spec, 3600);
    src.active = core::optional_bool(spec, "active").value_or(true);
    src.created_at = src.updated_at = src.next_run_at = clock_.now_ms();
    auto fn = [src, kb_ref](Tx& tx) mutable {
        src.kb_id = base_id(tx, kb_ref);
        if (tx.query_one("SELECT count(*) FROM knowledge_sources WHERE kb_id = ?", {src.kb_id})->integer(0) >=
            static_cast<std::int64_t>(kMaxSourcesPerBase)) {
            throw core::Conflict(fmt::format("a knowledge base has at most {} sync sources", kMaxSourcesPerBase),
                                 "limit_reached");
        }
        if (tx.query_one("SELECT 1 FROM knowledge_sources WHERE kb_id = ? AND kind = ? AND location = ?",
                         {src.kb_id, std::string(kind_name(src.kind)), src.location})) {
            throw core::Conflict("this knowledge base already syncs from there", "source_exists", field_detail("location"));
        }
        tx.exec("INSERT INTO knowledge_sources (id, kb_id, kind, location, interval_s, active, next_run_at, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                {src.id, src.kb_id, std::string(kind_name(src.kind)), src.location, src.interval_s,
                 std::int64_t{src.active}, src.next_run_at, src.created_at, src.updated_at});
        return src;
    };
    src = co_await store::co_write(store_, std::move(fn));
    if (src.active) wake_sync();
    co_return src;
}

std::vector<Source> KnowledgeService::list_sources(std::string_view kb_ref) {
    std::vector<Source> out;
    const std::int64_t now = clock_.now_ms();
    store_.read([&](Tx& tx) {
        std::string kb_id = base_id(tx, kb_ref);
        for (const auto& row : tx.query(fmt::format("SELECT {} FROM knowledge_sources WHERE kb_id = ? ORDER BY id",
                                                    kSourceColumns),
                                        {kb_id})) {
            out.push_back(source_from(row, now));
        }
    });
    return out;
}

Source KnowledgeService::get_source(std::string_view kb_ref, std::string_view source) {
    const std::int64_t now = clock_.now_ms();
    return store::read_value(store_, [&](Tx& tx) { return require_source(tx, base_id(tx, kb_ref), source, now); });
}

asio::awaitable<Source> KnowledgeService::update_source(std::string kb_ref, std::string source, json::object patch) {
    core::reject_unknown_fields(patch, {"location", "interval"});
    // The kind decides how a location is checked: read it first (the write re-checks the source exists).
    Source current = get_source(kb_ref, source);
    std::optional<std::string> location;
    if (patch.contains("location")) {
        location = check_location(current.kind, core::required_string(patch, "location"), options_.sync_root);
    }
    std::optional<std::int64_t> interval;
    if (patch.contains("interval")) interval = interval_of(patch, 3600);
    const std::int64_t now = clock_.now_ms();
    auto fn = [=](Tx& tx) {
        std::string kb_id = base_id(tx, kb_ref);
        Source src = require_source(tx, kb_id, source, now);
        bool moved = location && *location != src.location;
        if (moved && tx.query_one("SELECT 1 FROM knowledge_sources WHERE kb_id = ? AND kind = ? AND location = ? AND id != ?",
                                  {kb_id, std::string(kind_name(src.kind)), *location, src.id})) {
            throw core::Conflict("this knowledge base already syncs from there", "source_exists", field_detail("location"));
        }
        if (location) src.location = *location;
        if (interval) {
            // The next run moves with the interval, counted from the last run.
            src.next_run_at = src.status.last_run_at.value_or(src.created_at) + *interval * 1000;
            src.interval_s = *interval;
        }
        if (moved) src.next_run_at = now;
        tx.exec("UPDATE knowledge_sources SET location = ?, interval_s = ?, next_run_at = ?, updated_at = ? WHERE id = ?",
                {src.location, src.interval_s, src.next_run_at, now, src.id});
        return require_source(tx, kb_id, source, now);
    };
    Source out = co_await store::co_write(store_, std::move(fn));
    wake_sync();
    co_return out;
}

asio::awaitable<void> KnowledgeService::delete_source(std::string kb_ref, std::string source) {
    const std::int64_t now = clock_.now_ms();
    auto fn = [=](Tx& tx) {
        std::string kb_id = base_id(tx, kb_ref);
        Source src = require_source(tx, kb_id, source, now);
        std::vector<std::int64_t> removed;
        for (const auto& row : tx.query("SELECT id FROM knowledge_documents WHERE source_id = ?", {src.id})) {
            auto ids = internal::embedding_ids(tx, row.text(0));
            removed.insert(removed.end(), ids.begin(), ids.end());
            internal::delete_chunks(tx, row.text(0));
        }
        tx.exec("DELETE FROM knowledge_documents WHERE source_id = ?", {src.id});
        tx.exec("DELETE FROM knowledge_sources WHERE id = ?", {src.id});
        return std::make_pair(kb_id, std::move(removed));
    };
    auto [kb_id, removed] = co_await store::co_write(store_, std::move(fn));
    vectors_->remove(kb_id, removed);
    df_cache_->clear();
}

asio::awaitable<Source> KnowledgeService::set_source_active(std::string kb_ref, std::string source, bool active) {
    const std::int64_t now = clock_.now_ms();
    auto fn = [=](Tx& tx) {
        std::string kb_id = base_id(tx, kb_ref);
        Source src = require_source(tx, kb_id, source, now);
        if (active && !src.active) {
            tx.exec("UPDATE knowledge_sources SET active = 1, next_run_at = ?, updated_at = ? WHERE id = ?",
                    {now, now, src.id});
        } else if (!active && src.active) {
            tx.exec("UPDATE knowledge_sources SET active = 0, run_requested = 0, updated_at = ? WHERE id = ?",
                    {now, src.id});
        }
        return require_source(tx, kb_id, source, now);
    };
    Source out = co_await store::co_write(store_, std::move(fn));
    if (active) wake_sync();
    co_return out;
}

asio::awaitable<Source> KnowledgeService::sync_now(std::string kb_ref, std::string source) {
    const std::int64_t now = clock_.now_ms();
    auto fn = [=](Tx& tx) {
        std::string kb_id = base_id(tx, kb_ref);
        Source src = require_source(tx, kb_id, source, now);
        tx.exec("UPDATE knowledge_sources SET run_requested = 1, updated_at = ? WHERE id = ?", {now, src.id});
        return require_source(tx, kb_id, source, now);
    };
    Source out = co_await store::co_write(store_, std::move(fn));
    wake_sync();
    co_return out;
}

json::object KnowledgeService::source_json(const Source& s) {
    auto time_or_null = [](const std::optional<std::int64_t>& t) {
        return t ? json::value(core::format_time(*t)) : json::value(nullptr);
    };
    auto text_or_null = [](const std::optional<std::string>& t) { return t ? json::value(*t) : json::value(nullptr); };
    std::int64_t documents = 0;
    store_.read([&](Tx& tx) {
        documents = tx.query_one("SELECT count(*) FROM knowledge_documents WHERE source_id = ?", {s.id})->integer(0);
    });
    return json::object{
        {"id", s.id},
        {"knowledge_base", s.kb_id},
        {"kind", kind_name(s.kind)},
        {"location", s.location},
        {"interval", s.interval_s},
        {"active", s.active},
        {"next_run_at", s.active ? json::value(core::format_time(s.next_run_at)) : json::value(nullptr)},
        {"documents", documents},
        {"status", json::object{{"state", s.status.state},
                                {"last_run_at", time_or_null(s.status.last_run_at)},
                                {"last_finished_at", time_or_null(s.status.last_finished_at)},
                                {"last_result", text_or_null(s.status.last_result)},
                                {"last_error", text_or_null(s.status.last_error)},
                                {"added", s.status.added},
                                {"updated", s.status.updated},
                                {"removed", s.status.removed},
                                {"unchanged", s.status.unchanged},
                                {"skipped", s.status.skipped},
                                {"skipped_files", s.status.skipped_files},
                                {"duration_ms", s.status.duration_ms ? json::value(*s.status.duration_ms)
                                                                     : json::value(nullptr)}}},
        {"created_at", core::format_time(s.created_at)},
        {"updated_at", core::format_time(s.updated_at)}};
}

// --- the scheduler ----------------------------------------------------------------------------------------------

void KnowledgeService::wake_sync() {
    {
        std::lock_guard lock(sync_mutex_);
        sync_wake_ = true;
    }
    sync_cv_.notify_all();
}

void KnowledgeService::sync_loop() {
    while (!stopping_) {
        std::vector<std::string> due;
        const std::int64_t now = clock_.now_ms();
        try {
            store_.read([&](Tx& tx) {
                for (const auto& row : tx.query(
                         "SELECT id FROM knowledge_sources WHERE ((active = 1 AND next_run_at <= ?) OR run_requested = 1) "
                         "AND (running_until IS NULL OR running_until < ?) ORDER BY run_requested DESC, next_run_at "
                         "LIMIT 16",
                         {now, now})) {
                    due.push_back(row.text(0));
                }
            });
        } catch (const std::exception& e) {
            core::log_event(spdlog::level::err, "knowledge_sync_failed", fmt::format(R"("error":{})", core::json_quote(e.what())));
        }
        for (const auto& id : due) {
            if (stopping_) break;
            try {
                run_source(id);
            } catch (const std::exception& e) {
                core::log_event(spdlog::level::err, "knowledge_sync_failed",
                                fmt::format(R"("source":{},"error":{})", core::json_quote(id), core::json_quote(e.what())));
            }
        }
        std::unique_lock lock(sync_mutex_);
        sync_cv_.wait_for(lock, options_.sync_poll, [&] { return sync_wake_ || stopping_.load(); });
        sync_wake_ = false;
    }
}

void KnowledgeService::run_source(const std::string& source_id) {
    const std::int64_t started = clock_.now_ms();
    std::optional<Source> claimed;
    store_.write_sync([&](Tx& tx) {
        auto row = tx.query_one(fmt::format("SELECT {} FROM knowledge_sources WHERE id = ?", kSourceColumns), {source_id});
        if (!row) return;
        Source src = source_from(*row, started);
        bool requested = row->integer(7) != 0;
        if (src.status.state == "running") return;  // another node holds it
        if (!requested && !(src.active && src.next_run_at <= started)) return;
        // The next scheduled run counts from this one.
        std::int64_t next = src.active ? started + src.interval_s * 1000 : src.next_run_at;
        tx.exec("UPDATE knowledge_sources SET running_until = ?, run_requested = 0, last_run_at = ?, next_run_at = ? "
                "WHERE id = ?",
                {started + kSyncLeaseMs, started, next, source_id});
        claimed = src;
    });
    if (!claimed) return;
    const Source& src = *claimed;
    const auto steady_start = std::chrono::steady_clock::now();
    SyncCounts counts;
    std::string error;

    // Stores one fetched item; returns "" or why it was skipped. Each document is its own transaction.
    auto apply = [&](const std::string& key, std::string content, const std::string& content_type) -> std::string {
        if (content.empty()) return "empty file";
        if (content.size() > kMaxDocumentBytes) return fmt::format("larger than {} MB", kMaxDocumentBytes >> 20);
        std::string name = item_name(src.kind, key);
        if (!valid_document_name(name)) return fmt::format("the name is not 1 to {} bytes of text", kMaxNameBytes);
        auto detected = internal::detect_format(content, name, content_type);
        if (!detected.error.empty()) return detected.error;
        std::string format(internal::format_name(detected.format));
        std::string hash = internal::sha256_hex(content);
        const std::int64_t now = clock_.now_ms();
        auto blob = std::make_shared<std::string>(std::move(content));
        enum class Outcome { kUnchanged, kAdded, kUpdated } outcome = Outcome::kUnchanged;
        std::optional<Job> job;
        store_.write_sync([&](Tx& tx) {
            outcome = Outcome::kUnchanged;
            job.reset();
            if (!tx.query_one("SELECT 1 FROM knowledge_sources WHERE id = ?", {src.id})) throw SourceGone();
            auto existing = tx.query_one("SELECT id, content_hash, revision FROM knowledge_documents WHERE source_id = ? "
                                         "AND source_key = ?",
                                         {src.id, key});
            if (existing && existing->text(1) == hash) return;
            std::string embedding_status = "none";
            if (auto kb = tx.query_one("SELECT embeddings FROM knowledge_bases WHERE id = ?", {src.kb_id});
                kb && kb->text(0) != "{}") {
                embedding_status = "pending";
            }
            if (existing) {
                tx.exec("UPDATE knowledge_documents SET format = ?, content_type = ?, size = ?, content = ?, "
                        "content_hash = ?, status = 'queued', error = NULL, revision = revision + 1, updated_at = ? "
                        "WHERE id = ?",
                        {format, content_type.substr(0, 200), static_cast<std::int64_t>(blob->size()),
                         store::Blob{*blob}, hash, now, existing->text(0)});
                job = Job{existing->text(0), existing->integer(2) + 1};
                outcome = Outcome::kUpdated;
                return;
            }
            if (tx.query_one("SELECT count(*) FROM knowledge_documents WHERE kb_id = ?", {src.kb_id})->integer(0) >=
                static_cast<std::int64_t>(kMaxDocumentsPerBase)) {
                throw core::Conflict(fmt::format("the knowledge base holds {} documents, the most it may", kMaxDocumentsPerBase),
                                     "limit_reached");
            }
            std::string id = core::new_id();
            tx.exec("INSERT INTO knowledge_documents (id, kb_id, name, format, content_type, size, status, chunks, "
                    "revision, content, created_at, updated_at, source_id, source_key, content_hash, embedding_status) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'queued', 0, 1, ?, ?, ?, ?, ?, ?, ?)",
                    {id, src.kb_id, name, format, content_type.substr(0, 200), static_cast<std::int64_t>(blob->size()),
                     store::Blob{*blob}, now, now, src.id, key, hash, embedding_status});
            job = Job{id, 1};
            outcome = Outcome::kAdded;
        });
        if (job) enqueue(*job);
        if (outcome == Outcome::kAdded) ++counts.added;
        if (outcome == Outcome::kUpdated) ++counts.updated;
        if (outcome == Outcome::kUnchanged) ++counts.unchanged;
        return {};
    };

    try {
        if (src.kind == SourceKind::kUrl) {
            if (!options_.http) throw std::runtime_error("no outbound HTTP client is configured on this server");
            outbound::Request request;
            request.url = src.location;
            request.timeout_ms = kFetchTimeoutMs;
            request.max_response_bytes = kMaxDocumentBytes;
            request.retries = 1;
            auto promise = std::make_shared<std::promise<outbound::Response>>();
            auto future = promise->get_future();
            options_.http->send(std::move(request), [promise](outbound::Response r) { promise->set_value(std::move(r)); });
            while (future.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
                if (stopping_) throw std::runtime_error("the server stopped during the sync");
            }
            outbound::Response response = future.get();
            if (response.error) {
                throw std::runtime_error(fmt::format("fetching the URL failed: {}: {}",
                                                     outbound::error_code_name(response.error->code),
                                                     response.error->message));
            }
            if (response.status < 200 || response.status > 299) {
                throw std::runtime_error(fmt::format("fetching the URL failed: HTTP {}", response.status));
            }
            std::string content_type(response.header("content-type"));
            if (auto why = apply(src.location, std::move(response.body), content_type); !why.empty()) {
                throw std::runtime_error("the URL's content cannot be indexed: " + why);
            }
        } else {
            if (options_.sync_root.empty()) throw std::runtime_error("folder sources are disabled on this server");
            auto listing = internal::list_folder(options_.sync_root, src.location == "." ? fs::path() : fs::path(src.location),
                                                 kMaxSyncFiles, kMaxSyncDepth);
            if (!listing.error.empty()) throw std::runtime_error(listing.error);
            for (const auto& [key, reason] : listing.skipped) counts.skip(key, reason);
            std::set<std::string> seen;
            for (const auto& file : listing.files) {
                if (stopping_) throw std::runtime_error("the server stopped during the sync");
                std::string why;
                auto content = internal::read_beneath(options_.sync_root, file.relative_path, kMaxDocumentBytes, why);
                if (!content) {
                    counts.skip(file.key, why);
                    // A file that exists but cannot be read now keeps its document.
                    seen.insert(file.key);
                    continue;
                }
                seen.insert(file.key);
                if (why = apply(file.key, std::move(*content), ""); !why.empty()) counts.skip(file.key, why);
            }
            // Only a complete walk removes documents: files gone from the folder.
            std::vector<std::pair<std::string, std::string>> stale;
            store_.read([&](Tx& tx) {
                for (const auto& row : tx.query("SELECT id, source_key FROM knowledge_documents WHERE source_id = ?",
                                                {src.id})) {
                    if (!seen.count(row.text(1))) stale.emplace_back(row.text(0), row.text(1));
                }
            });
            for (const auto& [document_id, key] : stale) {
                std::vector<std::int64_t> removed;
                bool deleted = false;
                store_.write_sync([&](Tx& tx) {
                    removed = internal::embedding_ids(tx, document_id);
                    internal::delete_chunks(tx, document_id);
                    deleted = tx.exec("DELETE FROM knowledge_documents WHERE id = ? AND source_id = ?",
                                      {document_id, src.id}) == 1;
                });
                vectors_->remove(src.kb_id, removed);
                if (deleted) ++counts.removed;
            }
            if (!stale.empty()) df_cache_->clear();
        }
    } catch (const SourceGone&) {
        return;  // deleted meanwhile: nothing to record
    } catch (const std::exception& e) {
        error = e.what();
    }

    const std::int64_t duration = std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::steady_clock::now() - steady_start)
                                      .count();
    const std::int64_t finished = clock_.now_ms();
    store_.write_sync([&](Tx& tx) {
        tx.exec("UPDATE knowledge_sources SET running_until = NULL, last_finished_at = ?, last_result = ?, last_error = ?, "
                "last_counts = ?, duration_ms = ? WHERE id = ?",
                {finished, std::string(error.empty() ? "ok" : "error"),
                 error.empty() ? store::Value(nullptr) : store::Value(error.substr(0, 1000)), core::to_json(counts.to_json()),
                 duration, src.id});
    });
    core::log_event(error.empty() ? spdlog::level::info : spdlog::level::warn, "knowledge_source_synced",
                    fmt::format(R"("source":{},"added":{},"updated":{},"removed":{},"unchanged":{},"skipped":{},"error":{})",
                                core::json_quote(src.id), counts.added, counts.updated, counts.removed, counts.unchanged,
                                counts.skipped, core::json_quote(error)));
}

}  // namespace parley::knowledge
