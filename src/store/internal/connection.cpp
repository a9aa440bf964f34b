#include "store/internal/connection.h"

#include <fmt/format.h>

#include <cctype>
#include <type_traits>

namespace parley::store::internal {
namespace {

constexpr int kBusyTimeoutMs = 5000;
constexpr std::size_t kMaxSqlInMessage = 200;

std::string_view shorten(std::string_view sql) {
    return sql.size() <= kMaxSqlInMessage ? sql : sql.substr(0, kMaxSqlInMessage);
}

void bind_all(sqlite3* db, sqlite3_stmt* stmt, const Params& params, std::string_view sql) {
    int expected = sqlite3_bind_parameter_count(stmt);
    if (static_cast<std::size_t>(expected) != params.size()) {
        throw StoreError(StoreError::Kind::kOther, fmt::format("statement takes {} parameters, {} given: {}", expected,
                                                               params.size(), shorten(sql)));
    }
    for (std::size_t i = 0; i < params.size(); ++i) {
        int index = static_cast<int>(i) + 1;
        // SQLITE_STATIC: the caller's Params outlive the statement's use; bindings are cleared when the lease ends.
        int rc = std::visit(
            [&](const auto& v) -> int {
                using T = std::decay_t<decltype(v)>;
                if constexpr (std::is_same_v<T, std::nullptr_t>) {
                    return sqlite3_bind_null(stmt, index);
                } else if constexpr (std::is_same_v<T, std::int64_t>) {
                    return sqlite3_bind_int64(stmt, index, v);
                } else if constexpr (std::is_same_v<T, double>) {
                    return sqlite3_bind_double(stmt, index, v);
                } else if constexpr (std::is_same_v<T, std::string>) {
                    return sqlite3_bind_text64(stmt, index, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
                } else {
                    return sqlite3_bind_blob64(stmt, index, v.bytes.data(), v.bytes.size(), SQLITE_STATIC);
                }
            },
            params[i]);
        if (rc != SQLITE_OK) throw_sqlite(db, rc, sql);
    }
}

Row read_row(sqlite3_stmt* stmt) {
    int n = sqlite3_column_count(stmt);
    std::vector<Value> values;
    values.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        switch (sqlite3_column_type(stmt, i)) {
            case SQLITE_INTEGER:
                values.emplace_back(static_cast<std::int64_t>(sqlite3_column_int64(stmt, i)));
                break;
            case SQLITE_FLOAT:
                values.emplace_back(sqlite3_column_double(stmt, i));
                break;
            case SQLITE_TEXT: {
                auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
                values.emplace_back(std::string(text, static_cast<std::size_t>(sqlite3_column_bytes(stmt, i))));
                break;
            }
            case SQLITE_BLOB: {
                auto* bytes = static_cast<const char*>(sqlite3_column_blob(stmt, i));
                auto size = static_cast<std::size_t>(sqlite3_column_bytes(stmt, i));
                values.emplace_back(Blob{bytes ? std::string(bytes, size) : std::string()});
                break;
            }
            default:
                values.emplace_back(nullptr);
        }
    }
    return Row(std::move(values));
}

bool only_whitespace(const char* text) {
    for (; *text; ++text) {
        if (!std::isspace(static_cast<unsigned char>(*text)) && *text != ';') return false;
    }
    return true;
}

}  // namespace

StoreError::Kind error_kind(int rc) {
    switch (rc & 0xff) {
        case SQLITE_CONSTRAINT:
            return StoreError::Kind::kConstraint;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            return StoreError::Kind::kBusy;
        default:
            return StoreError::Kind::kOther;
    }
}

void throw_sqlite(sqlite3* db, int rc, std::string_view context) {
    const char* message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    throw StoreError(error_kind(rc), fmt::format("sqlite: {} (code {}) in: {}", message, rc, shorten(context)));
}

Connection::Connection(const std::string& path, Role role, bool durable) : role_(role) {
    int flags = SQLITE_OPEN_NOMUTEX;
    switch (role) {
        case Role::kWriter:
            flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
            break;
        case Role::kReader:
            flags |= SQLITE_OPEN_READONLY;
            break;
        case Role::kCheckpointer:
            flags |= SQLITE_OPEN_READWRITE;
            break;
    }
    int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
        std::string message =
            fmt::format("sqlite: cannot open '{}': {}", path, db_ ? sqlite3_errmsg(db_) : "no memory");
        sqlite3_close_v2(db_);
        db_ = nullptr;
        throw StoreError(error_kind(rc), message);
    }
    try {
        sqlite3_extended_result_codes(db_, 1);
        sqlite3_busy_timeout(db_, kBusyTimeoutMs);
        if (role == Role::kWriter) {
            // journal_mode answers with the mode in force: a file system without shared memory stays in DELETE.
            auto rows = query("PRAGMA journal_mode=WAL", {});
            if (rows.empty() || rows[0].text(0) != "wal") {
                throw StoreError(StoreError::Kind::kOther, fmt::format("sqlite: cannot enable WAL on '{}'", path));
            }
            exec_script(durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
            exec_script("PRAGMA foreign_keys=ON");
            // Pages the writer touches stay cached across transactions (it is the only writer, so the cache
            // stays valid); 64 MiB bounds memory.
            exec_script("PRAGMA cache_size=-65536");
            // After a WAL reset the file is truncated back to this size instead of keeping its peak size.
            exec_script("PRAGMA journal_size_limit=67108864");
        } else if (role == Role::kCheckpointer) {
            exec_script(durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
        } else {
            // Opened read-only already; query_only also refuses writes through this connection's own pragmas.
            exec_script("PRAGMA query_only=ON");
        }
        // Pragma statements are one-shot; keep the cache for the statements callers repeat.
        for (auto& [sql, cached] : cache_) sqlite3_finalize(cached.stmt);
        cache_.clear();
        sqlite3_set_authorizer(db_, &Connection::authorize, this);
        begin_immediate_ = prepare_control("BEGIN IMMEDIATE");
        begin_deferred_ = prepare_control("BEGIN");
        commit_ = prepare_control("COMMIT");
        rollback_ = prepare_control("ROLLBACK");
        savepoint_ = prepare_control("SAVEPOINT parley_tx");
        release_ = prepare_control("RELEASE parley_tx");
        rollback_to_ = prepare_control("ROLLBACK TO parley_tx");
    } catch (...) {
        for (auto& [sql, cached] : cache_) sqlite3_finalize(cached.stmt);
        for (auto* s : {begin_immediate_, begin_deferred_, commit_, rollback_, savepoint_, release_, rollback_to_}) {
            sqlite3_finalize(s);
        }
        sqlite3_close_v2(db_);
        throw;
    }
}

Connection::~Connection() {
    for (auto& [sql, cached] : cache_) sqlite3_finalize(cached.stmt);
    for (auto* s : {begin_immediate_, begin_deferred_, commit_, rollback_, savepoint_, release_, rollback_to_}) {
        sqlite3_finalize(s);
    }
    sqlite3_close_v2(db_);
}

int Connection::authorize(void* self, int action, const char*, const char*, const char*, const char*) {
    auto* connection = static_cast<Connection*>(self);
    if ((action == SQLITE_TRANSACTION || action == SQLITE_SAVEPOINT) && !connection->allow_control_) {
        return SQLITE_DENY;
    }
    return SQLITE_OK;
}

sqlite3_stmt* Connection::prepare_control(const char* sql) {
    allow_control_ = true;
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    allow_control_ = false;
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, sql);
    return stmt;
}

void Connection::run_control(sqlite3_stmt* stmt, const char* what) {
    allow_control_ = true;
    int rc = sqlite3_step(stmt);
    allow_control_ = false;
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE) throw_sqlite(db_, rc, what);
}

void Connection::rollback_quietly() noexcept {
    if (!in_transaction()) return;
    allow_control_ = true;
    sqlite3_step(rollback_);
    allow_control_ = false;
    sqlite3_reset(rollback_);
}

void Connection::exec_script(const std::string& sql) {
    char* error = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
    if (rc != SQLITE_OK) {
        std::string message = error ? error : sqlite3_errstr(rc);
        sqlite3_free(error);
        throw StoreError(error_kind(rc), fmt::format("sqlite: {} (code {}) in: {}", message, rc, shorten(sql)));
    }
}

sqlite3_stmt* Connection::compile(std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) throw_sqlite(db_, rc, sql);
    if (!stmt) throw StoreError(StoreError::Kind::kOther, fmt::format("empty SQL statement: '{}'", shorten(sql)));
    // One statement per call; a second one would be silently ignored, so refuse it (scripts go in migrations).
    std::string rest(tail, static_cast<std::size_t>(sql.data() + sql.size() - tail));
    if (!only_whitespace(rest.c_str())) {
        sqlite3_stmt* next = nullptr;
        rc = sqlite3_prepare_v3(db_, rest.c_str(), -1, 0, &next, nullptr);
        sqlite3_finalize(next);
        if (rc != SQLITE_OK || next) {
            sqlite3_finalize(stmt);
            throw StoreError(StoreError::Kind::kOther,
                             fmt::format("one statement per call, got several in: {}", shorten(sql)));
        }
    }
    return stmt;
}

Connection::Lease Connection::prepare(std::string_view sql, const Params& params) {
    auto it = cache_.find(sql);
    if (it != cache_.end() && !it->second.in_use) {
        it->second.in_use = true;
        Lease lease(it->second.stmt, &it->second);
        bind_all(db_, lease.get(), params, sql);
        return lease;
    }
    sqlite3_stmt* stmt = compile(sql);
    if (it != cache_.end()) {
        // The cached copy is busy (a nested call with the same SQL): this one is private.
        Lease lease(stmt, nullptr);
        bind_all(db_, stmt, params, sql);
        return lease;
    }
    if (cache_.size() >= kMaxCached) {
        // SQL built at run time could grow the cache without bound; start over, keeping what is in use.
        for (auto i = cache_.begin(); i != cache_.end();) {
            if (i->second.in_use) {
                ++i;
            } else {
                sqlite3_finalize(i->second.stmt);
                i = cache_.erase(i);
            }
        }
    }
    auto [slot, inserted] = cache_.emplace(std::string(sql), Cached{stmt, true});
    Lease lease(stmt, &slot->second);
    bind_all(db_, stmt, params, sql);
    return lease;
}

Connection::Lease::~Lease() {
    if (!stmt_) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    if (cached_) {
        cached_->in_use = false;
    } else {
        sqlite3_finalize(stmt_);
    }
}

bool Connection::step(sqlite3_stmt* stmt, std::string_view sql) {
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw_sqlite(db_, rc, sql);
}

std::int64_t Connection::exec(std::string_view sql, const Params& params) {
    Lease lease = prepare(sql, params);
    while (step(lease.get(), sql)) {
    }
    return sqlite3_changes64(db_);
}

std::vector<Row> Connection::query(std::string_view sql, const Params& params) {
    Lease lease = prepare(sql, params);
    std::vector<Row> rows;
    while (step(lease.get(), sql)) rows.push_back(read_row(lease.get()));
    return rows;
}

void Connection::for_each(std::string_view sql, const Params& params, const std::function<bool(const Row&)>& visit) {
    Lease lease = prepare(sql, params);
    while (step(lease.get(), sql)) {
        if (!visit(read_row(lease.get()))) break;
    }
}

}  // namespace parley::store::internal
