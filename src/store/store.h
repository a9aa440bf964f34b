/// Storage behind one interface: SQLite (WAL, one writer with group commit, a pool of readers) now, PostgreSQL
/// later. No SQLite type appears in this header. SQL text uses `?` placeholders and the common subset of
/// SQLite and PostgreSQL where practical; a PostgreSQL backend rewrites placeholders.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace parley::core {
class Metrics;
}

namespace parley::store {

/// Raw bytes (encrypted secrets, hashes); distinct from text so the backend binds them as BLOB / bytea.
struct Blob {
    std::string bytes;
    bool operator==(const Blob&) const = default;
};

/// One SQL value.
using Value = std::variant<std::nullptr_t, std::int64_t, double, std::string, Blob>;
using Params = std::vector<Value>;

/// One result row. Accessors tolerate NULL (0, 0.0, "" respectively); is_null tells them apart.
class Row {
public:
    Row() = default;
    explicit Row(std::vector<Value> values) : values_(std::move(values)) {}

    std::size_t size() const { return values_.size(); }
    const Value& operator[](std::size_t i) const { return values_.at(i); }
    bool is_null(std::size_t i) const { return std::holds_alternative<std::nullptr_t>(values_.at(i)); }
    std::int64_t integer(std::size_t i) const;
    double real(std::size_t i) const;
    /// Text (or blob bytes) at column i; "" for NULL.
    const std::string& text(std::size_t i) const;
    std::optional<std::string> opt_text(std::size_t i) const;
    std::optional<std::int64_t> opt_integer(std::size_t i) const;

private:
    std::vector<Value> values_;
};

/// A transaction handle, valid only inside the read()/write() callback that received it. Not thread-safe: use
/// it only on the thread that called the callback. Errors (constraint violations, syntax) throw StoreError.
class Tx {
public:
    virtual ~Tx() = default;
    /// Runs one statement; returns the number of rows it changed.
    virtual std::int64_t exec(std::string_view sql, const Params& params = {}) = 0;
    /// Runs a query and returns every row.
    virtual std::vector<Row> query(std::string_view sql, const Params& params = {}) = 0;
    /// Runs a query and visits rows one at a time (exports, streaming); return false from `visit` to stop.
    virtual void for_each(std::string_view sql, const Params& params, const std::function<bool(const Row&)>& visit) = 0;
    /// The first row, if any.
    std::optional<Row> query_one(std::string_view sql, const Params& params = {});
    /// True inside write(), false inside read().
    virtual bool writable() const = 0;
};

/// A database error. `constraint` is set for UNIQUE/FOREIGN KEY/CHECK violations so callers can answer 409.
class StoreError : public std::runtime_error {
public:
    enum class Kind { kOther, kConstraint, kBusy, kSchema };
    StoreError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    Kind kind() const { return kind_; }

private:
    Kind kind_;
};

/// One step of a module's schema. Each module numbers its own migrations from 1; applied in order on open,
/// each in its own transaction, recorded in `schema_migrations(module, version, name, applied_at)`.
struct Migration {
    std::string module;
    int version;
    std::string name;
    std::string sql;  ///< may contain several statements
};

struct StoreOptions {
    std::string path;          ///< database file; created if missing
    unsigned readers = 4;      ///< reader connections in the pool
    bool durable = true;       ///< fsync every group commit (synchronous=FULL); false only for tests/benches
    std::size_t max_batch = 4096;  ///< most transactions committed in one group
};

/// Counters for /metrics and benchmarks.
struct StoreStats {
    std::uint64_t commits = 0;        ///< group commits (fsyncs)
    std::uint64_t transactions = 0;   ///< write() callbacks committed
    std::uint64_t failed = 0;         ///< write() callbacks that threw (rolled back alone)
    std::size_t queue_depth = 0;      ///< write() callbacks waiting for the writer
    std::uint64_t checkpoints = 0;    ///< background WAL checkpoints run (SQLite)
};

/// The database. Thread-safety: every method may be called from any thread.
///
/// Writes: one writer thread takes every queued write() callback, runs each inside its own savepoint of one
/// transaction, commits the group with one fsync, then calls each `done` (on the writer thread). A callback
/// that throws has its savepoint rolled back and gets its exception in `done`; the others still commit.
/// Reads: read() runs on the caller's thread on a pooled reader connection inside a read transaction (one
/// consistent snapshot); WAL mode means readers never wait for the writer. Do not nest read() calls or call
/// write_sync() inside a callback.
class Store {
public:
    virtual ~Store() = default;

    /// Opens (creating if needed) the SQLite database at options.path, applies pending migrations, and refuses
    /// (StoreError kSchema) a database whose recorded migrations are newer than or unknown to `migrations`.
    static std::unique_ptr<Store> open_sqlite(const StoreOptions& options, const std::vector<Migration>& migrations,
                                              core::Metrics* metrics = nullptr);

    virtual void read(const std::function<void(Tx&)>& fn) = 0;
    virtual void write(std::function<void(Tx&)> fn, std::function<void(std::exception_ptr)> done) = 0;

    /// write() and wait until durable; rethrows the callback's exception. Never call from an Asio worker thread
    /// (use store/async.h there).
    void write_sync(std::function<void(Tx&)> fn);

    /// Writes a consistent copy of the live database to `dest_file` while the server keeps running.
    virtual void backup(const std::string& dest_file) = 0;

    /// Highest applied migration version of `module` (0 if none).
    virtual int schema_version(std::string_view module) = 0;

    virtual StoreStats stats() const = 0;

    /// Finishes queued writes, stops the writer, closes connections. Further calls throw, except close() itself,
    /// which is a no-op once closed (so an explicit close() before destruction is always safe).
    virtual void close() = 0;
};

/// Convenience: read() returning a value.
template <typename F>
auto read_value(Store& store, F&& fn) -> decltype(fn(std::declval<Tx&>())) {
    std::optional<decltype(fn(std::declval<Tx&>()))> out;
    store.read([&](Tx& tx) { out.emplace(fn(tx)); });
    return std::move(*out);
}

}  // namespace parley::store
