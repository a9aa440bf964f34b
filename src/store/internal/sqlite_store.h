/// The SQLite Store: one writer thread with group commit, a pool of read-only connections, online backup.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/internal/connection.h"
#include "store/store.h"

namespace parley::core {
class Histogram;
}

namespace parley::store::internal {

/// True on the writer thread of any SqliteStore (where write_sync or close would wait for themselves).
bool on_writer_thread();

/// Store over one SQLite file in WAL mode.
///
/// Thread-safety: every public method may be called from any thread. The writer connection is used only by the
/// writer thread (after open); each reader connection by one thread at a time, leased from the pool under
/// `pool_mutex_`. The write queue is guarded by `queue_mutex_`. Owns its connections and the writer thread.
class SqliteStore final : public Store {
  public:
    /// Opens, migrates and starts the writer; throws StoreError.
    SqliteStore(const StoreOptions& options, const std::vector<Migration>& migrations, core::Metrics* metrics);
    ~SqliteStore() override;

    void read(const std::function<void(Tx&)>& fn) override;
    void write(std::function<void(Tx&)> fn, std::function<void(std::exception_ptr)> done) override;
    void backup(const std::string& dest_file) override;
    int schema_version(std::string_view module) override;
    StoreStats stats() const override;
    void close() override;

  private:
    struct Job {
        std::function<void(Tx&)> fn;
        std::function<void(std::exception_ptr)> done;
        std::exception_ptr error;
    };
    /// A reader connection leased from the pool for one call; returned on destruction.
    class ReaderLease {
      public:
        explicit ReaderLease(SqliteStore& store);
        ~ReaderLease();
        ReaderLease(const ReaderLease&) = delete;
        ReaderLease& operator=(const ReaderLease&) = delete;
        Connection& connection() { return *connection_; }

      private:
        SqliteStore& store_;
        Connection* connection_;
        const SqliteStore* outer_store_;  // the store this thread was reading before (another store), if any
    };

    void writer_loop();
    void checkpointer_loop();
    /// sqlite3_wal_hook on the writer connection, after each commit: asks the checkpointer to run when the WAL
    /// has grown enough. Runs on the writer thread.
    static int on_wal_commit(void* self, sqlite3* db, const char* schema, int frames);
    /// Runs one group in one transaction; sets each job's error. Returns the number committed.
    std::size_t run_group(std::vector<Job>& group);
    void finish(std::vector<Job>& group);

    StoreOptions options_;
    std::unique_ptr<Connection> writer_connection_;

    mutable std::mutex queue_mutex_;
    std::condition_variable queue_cv_;
    std::vector<Job> queue_;       // guarded by queue_mutex_
    bool writer_waiting_ = false;  // guarded by queue_mutex_
    bool closing_ = false;         // guarded by queue_mutex_; write() refuses once set
    std::thread writer_;

    // Background checkpoints: the WAL is copied into the database file by its own connection and thread, so
    // that a commit never waits for a checkpoint's reads, writes and fsync.
    std::unique_ptr<Connection> checkpoint_connection_;
    std::mutex checkpoint_mutex_;
    std::condition_variable checkpoint_cv_;
    int checkpoint_frames_ = 0;           // guarded by checkpoint_mutex_; WAL size that asked; 0: nothing asked
    bool checkpointer_stopping_ = false;  // guarded by checkpoint_mutex_
    std::thread checkpointer_;
    int next_checkpoint_at_ = 0;  // writer thread only
    int last_wal_frames_ = 0;     // writer thread only

    std::mutex pool_mutex_;
    std::condition_variable pool_cv_;
    std::vector<std::unique_ptr<Connection>> readers_;  // all reader connections; freed only in close()
    std::vector<Connection*> idle_readers_;             // guarded by pool_mutex_
    std::size_t leased_readers_ = 0;                    // guarded by pool_mutex_
    bool pool_closed_ = false;                          // guarded by pool_mutex_

    std::mutex close_mutex_;  // serializes close()
    bool closed_ = false;     // guarded by close_mutex_

    std::atomic<std::uint64_t> commits_{0};
    std::atomic<std::uint64_t> transactions_{0};
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<std::uint64_t> checkpoints_{0};
    // Shared with the metrics registry's gauge function, which may outlive this store.
    std::shared_ptr<std::atomic<std::size_t>> queue_depth_ = std::make_shared<std::atomic<std::size_t>>(0);

    core::Histogram* commit_seconds_ = nullptr;
    core::Histogram* read_seconds_ = nullptr;
    std::atomic<std::uint64_t>* transactions_total_ = nullptr;
    std::atomic<std::uint64_t>* commits_total_ = nullptr;
};

}  // namespace parley::store::internal
