// Store basics: migrations, values, errors, read transactions, statement handling.
#include "store/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "core/metrics.h"
#include "store/test_util.h"

namespace parley::store {
namespace {

using testing::count_rows;
using ::testing::HasSubstr;
using testing::integrity;
using testing::TempDir;
using testing::test_migrations;
using testing::test_options;

StoreError::Kind open_error_kind(const std::string& path, const std::vector<Migration>& migrations,
                                 std::string* message) {
    try {
        Store::open_sqlite(test_options(path), migrations);
    } catch (const StoreError& e) {
        *message = e.what();
        return e.kind();
    }
    ADD_FAILURE() << "open succeeded";
    return StoreError::Kind::kOther;
}

TEST(StoreMigrations, ApplyOnceAndAreRecorded) {
    TempDir dir;
    std::string path = dir.file("db.sqlite");
    std::int64_t first_applied_at = 0;
    {
        auto store = Store::open_sqlite(test_options(path), test_migrations());
        EXPECT_EQ(store->schema_version("test"), 2);
        EXPECT_EQ(store->schema_version("nothing"), 0);
        auto rows = read_value(*store, [](Tx& tx) {
            return tx.query("SELECT module, version, name, applied_at FROM schema_migrations ORDER BY version");
        });
        ASSERT_EQ(rows.size(), 2u);
        EXPECT_EQ(rows[0].text(0), "test");
        EXPECT_EQ(rows[0].integer(1), 1);
        EXPECT_EQ(rows[0].text(2), "items");
        EXPECT_EQ(rows[1].text(2), "notes");
        EXPECT_GT(rows[0].integer(3), 1'600'000'000'000);  // unix milliseconds
        first_applied_at = rows[0].integer(3);
        store->write_sync([](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES (?)", {std::string("kept")}); });
    }
    // Reopening applies nothing again (a second CREATE TABLE items would fail) and keeps the data.
    auto migrations = test_migrations();
    migrations.push_back({"test", 3, "tags", "CREATE TABLE tags (name TEXT PRIMARY KEY);"});
    migrations.push_back({"other", 1, "other", "CREATE TABLE other_things (id INTEGER PRIMARY KEY);"});
    auto store = Store::open_sqlite(test_options(path), migrations);
    EXPECT_EQ(store->schema_version("test"), 3);
    EXPECT_EQ(store->schema_version("other"), 1);
    EXPECT_EQ(count_rows(*store, "items"), 1);
    EXPECT_EQ(count_rows(*store, "schema_migrations"), 4);
    auto applied_at = read_value(*store, [](Tx& tx) {
        return tx.query_one("SELECT applied_at FROM schema_migrations WHERE module = 'test' AND version = 1")
            ->integer(0);
    });
    EXPECT_EQ(applied_at, first_applied_at);
}

TEST(StoreMigrations, RefusesNewerSchema) {
    TempDir dir;
    std::string path = dir.file("db.sqlite");
    Store::open_sqlite(test_options(path), test_migrations())->close();
    auto older = test_migrations();
    older.pop_back();
    std::string message;
    EXPECT_EQ(open_error_kind(path, older, &message), StoreError::Kind::kSchema);
    EXPECT_THAT(message, HasSubstr("'test'"));
    EXPECT_THAT(message, HasSubstr("version 2"));
    EXPECT_THAT(message, HasSubstr("up to 1"));
}

TEST(StoreMigrations, RefusesUnknownModule) {
    TempDir dir;
    std::string path = dir.file("db.sqlite");
    auto migrations = test_migrations();
    migrations.push_back({"extra", 1, "extra", "CREATE TABLE extra_things (id INTEGER PRIMARY KEY);"});
    Store::open_sqlite(test_options(path), migrations)->close();
    std::string message;
    EXPECT_EQ(open_error_kind(path, test_migrations(), &message), StoreError::Kind::kSchema);
    EXPECT_THAT(message, HasSubstr("'extra'"));
}

TEST(StoreMigrations, RefusesBadNumbering) {
    TempDir dir;
    auto migrations = test_migrations();
    migrations[1].version = 3;
    std::string message;
    EXPECT_EQ(open_error_kind(dir.file("db.sqlite"), migrations, &message), StoreError::Kind::kSchema);
    EXPECT_THAT(message, HasSubstr("expected version 2, got 3"));
}

TEST(StoreMigrations, FailedMigrationChangesNothing) {
    TempDir dir;
    std::string path = dir.file("db.sqlite");
    Store::open_sqlite(test_options(path), test_migrations())->close();
    auto migrations = test_migrations();
    migrations.push_back({"test", 3, "broken", "CREATE TABLE half_done (x INTEGER); CREATE TABLE oops ("});
    std::string message;
    EXPECT_EQ(open_error_kind(path, migrations, &message), StoreError::Kind::kSchema);
    EXPECT_THAT(message, HasSubstr("test version 3"));
    auto store = Store::open_sqlite(test_options(path), test_migrations());
    EXPECT_EQ(store->schema_version("test"), 2);
    auto tables = read_value(
        *store, [](Tx& tx) { return tx.query("SELECT name FROM sqlite_master WHERE name = 'half_done'").size(); });
    EXPECT_EQ(tables, 0u);
}

class StoreTest : public ::testing::Test {
  protected:
    void SetUp() override { store_ = Store::open_sqlite(test_options(dir_.file("db.sqlite")), test_migrations()); }

    TempDir dir_;
    std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, ValuesRoundTrip) {
    std::string binary("\0\x01\xff\x80zero", 8);
    store_->write_sync([&](Tx& tx) {
        EXPECT_TRUE(tx.writable());
        tx.exec("INSERT INTO items(id, name, data, score) VALUES (?, ?, ?, ?)",
                {std::int64_t{1}, std::string("ünïcode"), Blob{binary}, 2.5});
        tx.exec("INSERT INTO items(id, name, data, score) VALUES (?, ?, ?, ?)",
                {std::int64_t{2}, std::string("empty"), Blob{}, nullptr});
    });
    auto rows = read_value(*store_, [](Tx& tx) {
        EXPECT_FALSE(tx.writable());
        return tx.query("SELECT id, name, data, score FROM items ORDER BY id");
    });
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].integer(0), 1);
    EXPECT_EQ(rows[0].text(1), "ünïcode");
    EXPECT_EQ(std::get<Blob>(rows[0][2]), Blob{binary});
    EXPECT_EQ(rows[0].text(2), binary);
    EXPECT_DOUBLE_EQ(rows[0].real(3), 2.5);
    EXPECT_EQ(std::get<Blob>(rows[1][2]), Blob{});  // an empty blob stays a blob, not NULL
    EXPECT_TRUE(rows[1].is_null(3));
    EXPECT_EQ(rows[1].real(3), 0.0);
    EXPECT_EQ(rows[1].integer(3), 0);
    EXPECT_EQ(rows[1].text(3), "");
    EXPECT_EQ(rows[1].opt_text(3), std::nullopt);
    EXPECT_EQ(rows[1].opt_integer(3), std::nullopt);
    EXPECT_EQ(rows[1].opt_integer(0), 2);
    EXPECT_EQ(rows[1].opt_text(1), "empty");
    EXPECT_THROW(rows[0].integer(1), StoreError);  // text is not an integer
}

TEST_F(StoreTest, ConstraintViolationsAreKConstraint) {
    store_->write_sync([](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES (?)", {std::string("secret-value")}); });
    try {
        store_->write_sync(
            [](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES (?)", {std::string("secret-value")}); });
        FAIL() << "duplicate accepted";
    } catch (const StoreError& e) {
        EXPECT_EQ(e.kind(), StoreError::Kind::kConstraint);
        EXPECT_THAT(e.what(), HasSubstr("UNIQUE constraint failed: items.name"));
        EXPECT_THAT(e.what(), ::testing::Not(HasSubstr("secret-value")));
    }
    try {
        store_->write_sync([](Tx& tx) {
            tx.exec("INSERT INTO notes(item_id, body) VALUES (?, ?)", {std::int64_t{999}, std::string("x")});
        });
        FAIL() << "foreign key not enforced";
    } catch (const StoreError& e) {
        EXPECT_EQ(e.kind(), StoreError::Kind::kConstraint);
    }
    EXPECT_EQ(count_rows(*store_, "items"), 1);
}

TEST_F(StoreTest, SyntaxAndUsageErrors) {
    auto kind_of = [&](const std::function<void(Tx&)>& fn) {
        try {
            store_->write_sync(fn);
        } catch (const StoreError& e) {
            return e.kind();
        }
        return StoreError::Kind::kSchema;  // not thrown: fails the expectations below
    };
    EXPECT_EQ(kind_of([](Tx& tx) { tx.exec("INSERT INTO nowhere VALUES (1)"); }), StoreError::Kind::kOther);
    EXPECT_EQ(kind_of([](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES (?)"); }), StoreError::Kind::kOther);
    EXPECT_EQ(kind_of([](Tx& tx) { tx.exec("DELETE FROM items; DELETE FROM notes"); }), StoreError::Kind::kOther);
    // The writer owns transaction boundaries: a callback may not commit the group behind its back.
    EXPECT_EQ(kind_of([](Tx& tx) { tx.exec("COMMIT"); }), StoreError::Kind::kOther);
    EXPECT_EQ(kind_of([](Tx& tx) { tx.exec("SAVEPOINT mine"); }), StoreError::Kind::kOther);
    // Trailing semicolons and comments are one statement.
    store_->write_sync([](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES ('a'); -- done\n"); });
    EXPECT_EQ(count_rows(*store_, "items"), 1);
}

TEST_F(StoreTest, ReadersRefuseWrites) {
    EXPECT_THROW(store_->read([](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES ('x')"); }), StoreError);
    EXPECT_THROW(store_->read([](Tx& tx) {
        tx.exec("PRAGMA query_only=OFF");
        tx.exec("DELETE FROM items");
    }),
                 StoreError);
    EXPECT_EQ(count_rows(*store_, "items"), 0);
}

TEST_F(StoreTest, ReadIsOneSnapshot) {
    store_->write_sync([](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES ('before')"); });
    std::int64_t first = 0;
    std::int64_t second = 0;
    store_->read([&](Tx& tx) {
        first = tx.query_one("SELECT count(*) FROM items")->integer(0);
        std::thread writer(
            [&] { store_->write_sync([](Tx& w) { w.exec("INSERT INTO items(name) VALUES ('during')"); }); });
        writer.join();  // committed, yet invisible to this read transaction
        second = tx.query_one("SELECT count(*) FROM items")->integer(0);
    });
    EXPECT_EQ(first, 1);
    EXPECT_EQ(second, 1);
    EXPECT_EQ(count_rows(*store_, "items"), 2);
}

TEST_F(StoreTest, ForEachStreamsAndStops) {
    store_->write_sync([](Tx& tx) {
        for (std::int64_t i = 1; i <= 100; ++i) {
            tx.exec("INSERT INTO items(id, name) VALUES (?, ?)", {i, "item-" + std::to_string(i)});
        }
    });
    std::vector<std::int64_t> seen;
    std::size_t nested_rows = 0;
    store_->read([&](Tx& tx) {
        const std::string sql = "SELECT id FROM items WHERE id >= ? ORDER BY id";
        tx.for_each(sql, {std::int64_t{5}}, [&](const Row& row) {
            seen.push_back(row.integer(0));
            // The same SQL while the outer statement is still stepping gets its own statement.
            nested_rows += tx.query(sql, {std::int64_t{99}}).size();
            return seen.size() < 10;
        });
    });
    ASSERT_EQ(seen.size(), 10u);
    EXPECT_EQ(seen.front(), 5);
    EXPECT_EQ(seen.back(), 14);
    EXPECT_EQ(nested_rows, 20u);
    auto none = read_value(*store_, [](Tx& tx) { return tx.query_one("SELECT id FROM items WHERE id > 1000"); });
    EXPECT_FALSE(none.has_value());
}

TEST_F(StoreTest, ReadExceptionPropagatesAndConnectionIsReusable) {
    for (int i = 0; i < 5; ++i) {  // more attempts than reader connections
        EXPECT_THROW(store_->read([](Tx& tx) {
            tx.query("SELECT * FROM items");
            throw std::runtime_error("boom");
        }),
                     std::runtime_error);
    }
    EXPECT_EQ(count_rows(*store_, "items"), 0);
    EXPECT_THROW(store_->read([&](Tx&) { store_->read([](Tx&) {}); }), std::logic_error);
}

TEST_F(StoreTest, CloseIsIdempotentAndRefusesLaterCalls) {
    store_->close();
    store_->close();
    EXPECT_THROW(store_->read([](Tx&) {}), StoreError);
    EXPECT_THROW(store_->write([](Tx&) {}, {}), StoreError);
}

TEST(StoreMetrics, ReportsCommitsAndReads) {
    TempDir dir;
    core::Metrics metrics;
    auto store = Store::open_sqlite(test_options(dir.file("db.sqlite")), test_migrations(), &metrics);
    store->write_sync([](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES ('a')"); });
    EXPECT_EQ(count_rows(*store, "items"), 1);
    std::string text = metrics.render();
    EXPECT_THAT(text, HasSubstr("parley_db_commit_seconds_count 1"));
    EXPECT_THAT(text, HasSubstr("parley_db_read_seconds_count 1"));
    EXPECT_THAT(text, HasSubstr("parley_db_transactions_total 1"));
    EXPECT_THAT(text, HasSubstr("parley_db_commits_total 1"));
    EXPECT_THAT(text, HasSubstr("parley_db_write_queue_depth 0"));
    auto stats = store->stats();
    EXPECT_EQ(stats.commits, 1u);
    EXPECT_EQ(stats.transactions, 1u);
    store.reset();
    EXPECT_THAT(metrics.render(), HasSubstr("parley_db_write_queue_depth 0"));  // the gauge outlives the store
}

}  // namespace
}  // namespace parley::store
