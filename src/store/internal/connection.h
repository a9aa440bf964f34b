/// One SQLite connection with its prepared-statement cache, and the Tx that runs statements on it. Internal to
/// the store module: nothing outside src/store/ sees a SQLite type.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store/store.h"

namespace parley::store::internal {

/// Maps a SQLite result code to a StoreError kind: constraint violations, busy/locked, everything else.
StoreError::Kind error_kind(int rc);

/// Throws StoreError for `rc` with SQLite's message for `db` (or the generic text for `rc` when db is null) and
/// `context` (the SQL text or the operation). Bound values never appear in the message.
[[noreturn]] void throw_sqlite(sqlite3* db, int rc, std::string_view context);

/// A SQLite connection. Thread-safety: none; one thread at a time (the writer thread, or whichever thread has
/// leased it from the reader pool). Owns the sqlite3 handle and every statement it prepared.
///
/// Statements run by callers are prepared once and cached by SQL text (SQLITE_PREPARE_PERSISTENT). A statement
/// that is still stepping (a for_each whose visitor runs the same SQL again) is not shared: the nested call gets
/// a private statement that is finalized after use. Transaction-control SQL (BEGIN, COMMIT, SAVEPOINT...) is
/// refused in caller SQL by an authorizer, because the writer owns the transaction boundaries of a group commit.
class Connection {
  public:
    /// kWriter runs every write transaction; kReader only reads; kCheckpointer copies the WAL into the database
    /// file in the background so that the writer's commits never pay for it.
    enum class Role { kWriter, kReader, kCheckpointer };

    /// Opens `path` (the writer creates it) and applies the pragmas for `role`. Throws StoreError.
    Connection(const std::string& path, Role role, bool durable);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    Role role() const { return role_; }
    sqlite3* handle() const { return db_; }
    /// False once SQLite has ended the transaction on its own (some I/O or full-disk errors roll back).
    bool in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }

    /// Transaction control, prepared once outside the caller cache.
    void begin_immediate() { run_control(begin_immediate_, "BEGIN IMMEDIATE"); }
    void begin_deferred() { run_control(begin_deferred_, "BEGIN"); }
    void commit() { run_control(commit_, "COMMIT"); }
    void savepoint() { run_control(savepoint_, "SAVEPOINT"); }
    void release() { run_control(release_, "RELEASE"); }
    void rollback_to() { run_control(rollback_to_, "ROLLBACK TO"); }
    /// Rolls back the open transaction, if any; never throws (used on error paths).
    void rollback_quietly() noexcept;

    /// Runs `sql` (several statements allowed, no parameters) as caller SQL: transaction control is refused.
    void exec_script(const std::string& sql);

    std::int64_t exec(std::string_view sql, const Params& params);
    std::vector<Row> query(std::string_view sql, const Params& params);
    void for_each(std::string_view sql, const Params& params, const std::function<bool(const Row&)>& visit);

    /// Number of cached statements (tests and stats).
    std::size_t cached_statements() const { return cache_.size(); }

  private:
    struct Cached {
        sqlite3_stmt* stmt = nullptr;
        bool in_use = false;
    };
    /// A statement leased for one call: reset and unbound on destruction, finalized if it was not cached.
    class Lease {
      public:
        Lease(sqlite3_stmt* stmt, Cached* cached) : stmt_(stmt), cached_(cached) {}
        Lease(Lease&& other) noexcept : stmt_(other.stmt_), cached_(other.cached_) { other.stmt_ = nullptr; }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        Lease& operator=(Lease&&) = delete;
        ~Lease();
        sqlite3_stmt* get() const { return stmt_; }

      private:
        sqlite3_stmt* stmt_;
        Cached* cached_;  // null: private statement, finalized here
    };
    struct TextHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };

    Lease prepare(std::string_view sql, const Params& params);
    sqlite3_stmt* compile(std::string_view sql);
    /// Steps once: true on a row, false when done; throws StoreError otherwise.
    bool step(sqlite3_stmt* stmt, std::string_view sql);
    sqlite3_stmt* prepare_control(const char* sql);
    void run_control(sqlite3_stmt* stmt, const char* what);
    static int authorize(void* self, int action, const char*, const char*, const char*, const char*);

    static constexpr std::size_t kMaxCached = 512;

    sqlite3* db_ = nullptr;
    Role role_;
    bool allow_control_ = false;  // true only while preparing/stepping the statements below
    sqlite3_stmt* begin_immediate_ = nullptr;
    sqlite3_stmt* begin_deferred_ = nullptr;
    sqlite3_stmt* commit_ = nullptr;
    sqlite3_stmt* rollback_ = nullptr;
    sqlite3_stmt* savepoint_ = nullptr;
    sqlite3_stmt* release_ = nullptr;
    sqlite3_stmt* rollback_to_ = nullptr;
    std::unordered_map<std::string, Cached, TextHash, std::equal_to<>> cache_;
};

/// The Tx handed to callbacks: forwards to a Connection. Not thread-safe (see Tx).
class ConnectionTx final : public Tx {
  public:
    ConnectionTx(Connection& connection, bool writable) : connection_(connection), writable_(writable) {}
    std::int64_t exec(std::string_view sql, const Params& params) override { return connection_.exec(sql, params); }
    std::vector<Row> query(std::string_view sql, const Params& params) override {
        return connection_.query(sql, params);
    }
    void for_each(std::string_view sql, const Params& params, const std::function<bool(const Row&)>& visit) override {
        connection_.for_each(sql, params, visit);
    }
    bool writable() const override { return writable_; }

  private:
    Connection& connection_;
    bool writable_;
};

}  // namespace parley::store::internal
