#include "store/internal/sqlite_store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "store/internal/migrations.h"

namespace parley::store::internal {
namespace {

using SteadyClock = std::chrono::steady_clock;

// A checkpoint is asked for when the WAL reaches this many frames (pages; 16 MiB at 4 KiB), then again every
// half of that while it keeps growing (readers holding old snapshots stop a checkpoint from finishing).
constexpr int kCheckpointFrames = 4000;
// Beyond this the checkpointer waits briefly for the writer and readers so the WAL cannot grow without bound.
constexpr int kForceCheckpointFrames = 50'000;
constexpr int kForceCheckpointWaitMs = 100;

// Deadlock guards: the writer thread must not wait for its own queue, and a thread must not lease a second reader
// while holding one (with the pool exhausted it would wait for itself).
thread_local bool t_writer_thread = false;
thread_local const SqliteStore* t_reading_store = nullptr;

double seconds_since(SteadyClock::time_point start) {
    return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

std::int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

StoreError closed_error() { return StoreError(StoreError::Kind::kOther, "store is closed"); }

void fsync_path(const std::string& path, bool directory) {
    int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

}  // namespace

bool on_writer_thread() { return t_writer_thread; }

SqliteStore::SqliteStore(const StoreOptions& options, const std::vector<Migration>& migrations, core::Metrics* metrics)
    : options_(options) {
    if (options_.path.empty()) throw StoreError(StoreError::Kind::kOther, "store path is empty");
    if (options_.max_batch == 0) options_.max_batch = 1;
    writer_connection_ = std::make_unique<Connection>(options_.path, Connection::Role::kWriter, options_.durable);
    migrate(*writer_connection_, migrations, unix_ms());
    unsigned readers = std::max(1u, options_.readers);
    for (unsigned i = 0; i < readers; ++i) {
        readers_.push_back(std::make_unique<Connection>(options_.path, Connection::Role::kReader, options_.durable));
        idle_readers_.push_back(readers_.back().get());
    }
    if (metrics) {
        commit_seconds_ =
            &metrics->histogram("parley_db_commit_seconds", "Latency of one group commit (BEGIN to durable COMMIT).");
        read_seconds_ = &metrics->histogram("parley_db_read_seconds", "Latency of one read transaction.");
        transactions_total_ = &metrics->counter("parley_db_transactions_total", "Write transactions committed.");
        commits_total_ = &metrics->counter("parley_db_commits_total", "Group commits (one fsync each when durable).");
        metrics->gauge_fn("parley_db_write_queue_depth", "Write transactions waiting for the writer.",
                          [depth = queue_depth_] { return static_cast<double>(depth->load()); });
    }
    checkpoint_connection_ =
        std::make_unique<Connection>(options_.path, Connection::Role::kCheckpointer, options_.durable);
    next_checkpoint_at_ = kCheckpointFrames;
    // Replaces SQLite's automatic checkpoint, which would run inside the writer's COMMIT.
    sqlite3_wal_hook(writer_connection_->handle(), &SqliteStore::on_wal_commit, this);
    checkpointer_ = std::thread([this] { checkpointer_loop(); });
    queue_.reserve(options_.max_batch);
    writer_ = std::thread([this] { writer_loop(); });
}

SqliteStore::~SqliteStore() {
    try {
        close();
    } catch (const std::exception& e) {
        core::log_event(spdlog::level::err, "store_close_failed",
                        fmt::format(R"("error":{})", core::json_quote(e.what())));
    }
}

void SqliteStore::write(std::function<void(Tx&)> fn, std::function<void(std::exception_ptr)> done) {
    bool wake;
    {
        std::lock_guard lock(queue_mutex_);
        if (closing_) throw closed_error();
        queue_.push_back(Job{std::move(fn), std::move(done), nullptr});
        queue_depth_->store(queue_.size(), std::memory_order_relaxed);
        wake = writer_waiting_;
    }
    if (wake) queue_cv_.notify_one();
}

void SqliteStore::writer_loop() {
    t_writer_thread = true;
    std::vector<Job> group;
    group.reserve(options_.max_batch);
    for (;;) {
        {
            std::unique_lock lock(queue_mutex_);
            writer_waiting_ = true;
            queue_cv_.wait(lock, [this] { return !queue_.empty() || closing_; });
            writer_waiting_ = false;
            if (queue_.empty()) return;  // closing, and every queued write is done
            if (queue_.size() <= options_.max_batch) {
                group.swap(queue_);
            } else {
                auto end = queue_.begin() + static_cast<std::ptrdiff_t>(options_.max_batch);
                group.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(end));
                queue_.erase(queue_.begin(), end);
            }
            queue_depth_->store(queue_.size(), std::memory_order_relaxed);
        }
        auto start = SteadyClock::now();
        std::size_t committed = run_group(group);
        if (committed > 0) {
            commits_.fetch_add(1, std::memory_order_relaxed);
            transactions_.fetch_add(committed, std::memory_order_relaxed);
            if (commit_seconds_) commit_seconds_->observe(seconds_since(start));
            if (commits_total_) commits_total_->fetch_add(1, std::memory_order_relaxed);
            if (transactions_total_) transactions_total_->fetch_add(committed, std::memory_order_relaxed);
        }
        finish(group);
        group.clear();
    }
}

std::size_t SqliteStore::run_group(std::vector<Job>& group) {
    Connection& c = *writer_connection_;
    ConnectionTx tx(c, true);
    std::vector<std::size_t> pending(group.size());
    for (std::size_t i = 0; i < group.size(); ++i) pending[i] = i;

    // Normally one pass. If SQLite itself ends the transaction while a callback fails (some I/O or full-disk
    // errors do), the work of the callbacks before it is gone too: they run again in a new transaction. Each
    // retry drops the failed callback, so this ends.
    while (!pending.empty()) {
        try {
            c.begin_immediate();
        } catch (...) {
            auto error = std::current_exception();
            for (auto i : pending) group[i].error = error;
            return 0;
        }
        std::vector<std::size_t> succeeded;
        succeeded.reserve(pending.size());
        std::optional<std::vector<std::size_t>> rerun;
        for (std::size_t k = 0; k < pending.size(); ++k) {
            Job& job = group[pending[k]];
            try {
                c.savepoint();
                job.fn(tx);
                c.release();
                succeeded.push_back(pending[k]);
                continue;
            } catch (...) {
                job.error = std::current_exception();
            }
            bool lost = false;
            try {
                if (c.in_transaction()) {
                    c.rollback_to();
                    c.release();
                } else {
                    lost = true;
                }
            } catch (...) {
                lost = true;
            }
            if (lost) {
                c.rollback_quietly();
                rerun = std::move(succeeded);
                rerun->insert(rerun->end(), pending.begin() + static_cast<std::ptrdiff_t>(k) + 1, pending.end());
                break;
            }
        }
        if (rerun) {
            pending = std::move(*rerun);
            continue;
        }
        try {
            c.commit();
        } catch (...) {
            auto error = std::current_exception();
            c.rollback_quietly();
            for (auto i : succeeded) group[i].error = error;
            return 0;
        }
        return succeeded.size();
    }
    return 0;
}

int SqliteStore::on_wal_commit(void* self, sqlite3*, const char*, int frames) {
    auto* store = static_cast<SqliteStore*>(self);
    if (frames < store->last_wal_frames_) store->next_checkpoint_at_ = kCheckpointFrames;  // the WAL restarted
    store->last_wal_frames_ = frames;
    if (frames >= store->next_checkpoint_at_) {
        store->next_checkpoint_at_ = frames + kCheckpointFrames / 2;
        {
            std::lock_guard lock(store->checkpoint_mutex_);
            store->checkpoint_frames_ = frames;
        }
        store->checkpoint_cv_.notify_one();
    }
    return SQLITE_OK;
}

void SqliteStore::checkpointer_loop() {
    sqlite3* db = checkpoint_connection_->handle();
    for (;;) {
        int frames;
        {
            std::unique_lock lock(checkpoint_mutex_);
            checkpoint_cv_.wait(lock, [this] { return checkpoint_frames_ > 0 || checkpointer_stopping_; });
            if (checkpointer_stopping_) return;
            frames = checkpoint_frames_;
            checkpoint_frames_ = 0;
        }
        int mode = SQLITE_CHECKPOINT_PASSIVE;
        if (frames >= kForceCheckpointFrames) {
            mode = SQLITE_CHECKPOINT_RESTART;
            sqlite3_busy_timeout(db, kForceCheckpointWaitMs);
        }
        int log = 0;
        int copied = 0;
        int rc = sqlite3_wal_checkpoint_v2(db, nullptr, mode, &log, &copied);
        if (mode != SQLITE_CHECKPOINT_PASSIVE) sqlite3_busy_timeout(db, 0);
        checkpoints_.fetch_add(1, std::memory_order_relaxed);
        if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY) {
            core::log_event(spdlog::level::warn, "store_checkpoint_failed",
                            fmt::format(R"("code":{},"frames":{})", rc, frames));
        }
    }
}

void SqliteStore::finish(std::vector<Job>& group) {
    for (auto& job : group) {
        if (job.error) failed_.fetch_add(1, std::memory_order_relaxed);
        if (!job.done) continue;
        try {
            job.done(job.error);
        } catch (const std::exception& e) {
            core::log_event(spdlog::level::err, "store_done_callback_threw",
                            fmt::format(R"("error":{})", core::json_quote(e.what())));
        } catch (...) {
            core::log_event(spdlog::level::err, "store_done_callback_threw");
        }
    }
}

SqliteStore::ReaderLease::ReaderLease(SqliteStore& store) : store_(store) {
    if (t_reading_store == &store) {
        throw std::logic_error("store: read() called inside a read() callback of the same store");
    }
    std::unique_lock lock(store.pool_mutex_);
    store.pool_cv_.wait(lock, [&] { return !store.idle_readers_.empty() || store.pool_closed_; });
    if (store.pool_closed_) throw closed_error();
    connection_ = store.idle_readers_.back();
    store.idle_readers_.pop_back();
    ++store.leased_readers_;
    outer_store_ = t_reading_store;
    t_reading_store = &store;
}

SqliteStore::ReaderLease::~ReaderLease() {
    t_reading_store = outer_store_;
    {
        std::lock_guard lock(store_.pool_mutex_);
        store_.idle_readers_.push_back(connection_);
        --store_.leased_readers_;
    }
    store_.pool_cv_.notify_all();
}

void SqliteStore::read(const std::function<void(Tx&)>& fn) {
    auto start = SteadyClock::now();
    ReaderLease lease(*this);
    Connection& c = lease.connection();
    c.begin_deferred();
    try {
        ConnectionTx tx(c, false);
        fn(tx);
        c.commit();
    } catch (...) {
        c.rollback_quietly();
        throw;
    }
    if (read_seconds_) read_seconds_->observe(seconds_since(start));
}

void SqliteStore::backup(const std::string& dest_file) {
    namespace fs = std::filesystem;
    if (dest_file.empty()) throw StoreError(StoreError::Kind::kOther, "backup: empty destination");
    // Copy into a temporary file next to the destination, then rename: a crash never leaves a half copy under
    // the final name.
    std::string temp = dest_file + ".partial";
    std::error_code ignored;
    fs::remove(temp, ignored);
    fs::remove(temp + "-journal", ignored);

    ReaderLease lease(*this);
    sqlite3* source = lease.connection().handle();
    sqlite3* dest = nullptr;
    int rc =
        sqlite3_open_v2(temp.c_str(), &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    auto fail = [&](int code, sqlite3* db, const std::string& what) {
        std::string message = fmt::format("backup to '{}' failed ({}): {}", dest_file, what,
                                          db ? sqlite3_errmsg(db) : sqlite3_errstr(code));
        sqlite3_close_v2(dest);
        fs::remove(temp, ignored);
        throw StoreError(error_kind(code), message);
    };
    if (rc != SQLITE_OK) fail(rc, dest, "open");
    sqlite3_busy_timeout(dest, 5000);
    sqlite3_backup* job = sqlite3_backup_init(dest, "main", source, "main");
    if (!job) fail(sqlite3_errcode(dest), dest, "init");
    // One step copies every page under one read transaction on the source: a consistent snapshot. In WAL mode
    // that read transaction does not block the writer.
    for (;;) {
        rc = sqlite3_backup_step(job, -1);
        if (rc == SQLITE_DONE) break;
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
            sqlite3_sleep(5);
            continue;
        }
        sqlite3_backup_finish(job);
        fail(rc, dest, "copy");
    }
    rc = sqlite3_backup_finish(job);
    if (rc != SQLITE_OK) fail(rc, dest, "finish");
    rc = sqlite3_close(dest);
    dest = nullptr;
    if (rc != SQLITE_OK) fail(rc, nullptr, "close");
    fsync_path(temp, false);
    // A stale WAL beside the destination would be replayed over the copy on its first open.
    fs::remove(dest_file + "-wal", ignored);
    fs::remove(dest_file + "-shm", ignored);
    fs::rename(temp, dest_file);
    auto parent = fs::absolute(dest_file).parent_path();
    fsync_path(parent.string(), true);
}

int SqliteStore::schema_version(std::string_view module) {
    int version = 0;
    read([&](Tx& tx) {
        auto row = tx.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations WHERE module = ?",
                                {std::string(module)});
        if (row) version = static_cast<int>(row->integer(0));
    });
    return version;
}

StoreStats SqliteStore::stats() const {
    StoreStats out;
    out.commits = commits_.load(std::memory_order_relaxed);
    out.transactions = transactions_.load(std::memory_order_relaxed);
    out.failed = failed_.load(std::memory_order_relaxed);
    out.queue_depth = queue_depth_->load(std::memory_order_relaxed);
    out.checkpoints = checkpoints_.load(std::memory_order_relaxed);
    return out;
}

void SqliteStore::close() {
    if (on_writer_thread()) throw std::logic_error("store: close() called on the writer thread");
    std::lock_guard guard(close_mutex_);
    if (closed_) return;
    {
        std::lock_guard lock(queue_mutex_);
        closing_ = true;
    }
    queue_cv_.notify_all();
    if (writer_.joinable()) writer_.join();
    {
        std::lock_guard lock(checkpoint_mutex_);
        checkpointer_stopping_ = true;
    }
    checkpoint_cv_.notify_all();
    if (checkpointer_.joinable()) checkpointer_.join();
    {
        std::unique_lock lock(pool_mutex_);
        pool_closed_ = true;
        pool_cv_.notify_all();
        pool_cv_.wait(lock, [this] { return leased_readers_ == 0; });
        idle_readers_.clear();
    }
    readers_.clear();
    checkpoint_connection_.reset();
    // Closed last: the last connection checkpoints the WAL into the database file.
    writer_connection_.reset();
    closed_ = true;
}

}  // namespace parley::store::internal
