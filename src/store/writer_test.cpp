// The write path: group commit, per-callback savepoints, close, backup, and the coroutine API.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "store/async.h"
#include "store/store.h"
#include "store/test_util.h"

namespace parley::store {
namespace {

using testing::count_rows;
using ::testing::HasSubstr;
using testing::integrity;
using testing::TempDir;
using testing::test_migrations;
using testing::test_options;

/// Counts done callbacks; wait() returns once `expected` have arrived.
class DoneLatch {
  public:
    explicit DoneLatch(std::size_t expected) : expected_(expected) {}
    std::function<void(std::exception_ptr)> callback() {
        return [this](std::exception_ptr error) {
            std::lock_guard lock(mutex_);
            if (error) ++errors_;
            if (++arrived_ == expected_) cv_.notify_all();
        };
    }
    std::size_t wait() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return arrived_ == expected_; });
        return errors_;
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::size_t expected_;
    std::size_t arrived_ = 0;
    std::size_t errors_ = 0;
};

/// Occupies the writer thread until release(), so that writes queued meanwhile land in one group.
class WriterBlocker {
  public:
    explicit WriterBlocker(Store& store) {
        auto entered = std::make_shared<std::promise<void>>();
        auto entered_future = entered->get_future();
        store.write(
            [entered, gate = gate_](Tx&) {
                entered->set_value();
                gate->wait();
            },
            {});
        entered_future.wait();
    }
    void release() { gate_promise_.set_value(); }

  private:
    std::promise<void> gate_promise_;
    std::shared_ptr<std::shared_future<void>> gate_ =
        std::make_shared<std::shared_future<void>>(gate_promise_.get_future().share());
};

TEST(StoreWriter, ConcurrentWritersAreBatchedAndAllLand) {
    TempDir dir;
    auto store = Store::open_sqlite(test_options(dir.file("db.sqlite"), /*durable=*/true), test_migrations());
    constexpr int kThreads = 8;
    constexpr int kPerThread = 500;
    DoneLatch latch(kThreads * kPerThread);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                std::string name = fmt::format("t{}-{}", t, i);
                store->write([name](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES (?)", {name}); },
                             latch.callback());
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(latch.wait(), 0u);
    EXPECT_EQ(count_rows(*store, "items"), kThreads * kPerThread);
    auto stats = store->stats();
    EXPECT_EQ(stats.transactions, static_cast<std::uint64_t>(kThreads * kPerThread));
    EXPECT_LT(stats.commits, stats.transactions);
    EXPECT_EQ(stats.failed, 0u);
}

TEST(StoreWriter, ThrowingCallbackRollsBackOnlyItself) {
    TempDir dir;
    auto store = Store::open_sqlite(test_options(dir.file("db.sqlite")), test_migrations());
    WriterBlocker blocker(*store);
    std::exception_ptr errors[4];
    auto insert = [](std::string name) {
        return [name](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES (?)", {name}); };
    };
    auto record = [&errors](int i) { return [&errors, i](std::exception_ptr e) { errors[i] = e; }; };
    store->write(insert("a"), record(0));
    store->write(
        [](Tx& tx) {
            tx.exec("INSERT INTO items(name) VALUES ('thrower')");
            throw std::runtime_error("callback failed");
        },
        record(1));
    store->write(
        [](Tx& tx) {
            tx.exec("INSERT INTO items(name) VALUES ('dup-partial')");
            tx.exec("INSERT INTO items(name) VALUES ('a')");  // UNIQUE violation after a successful insert
        },
        record(2));
    std::promise<void> last;
    store->write(insert("c"), [&](std::exception_ptr e) {
        errors[3] = e;
        last.set_value();
    });
    auto commits_before = store->stats().commits;
    blocker.release();
    last.get_future().wait();

    EXPECT_EQ(errors[0], nullptr);
    EXPECT_EQ(errors[3], nullptr);
    ASSERT_NE(errors[1], nullptr);
    ASSERT_NE(errors[2], nullptr);
    try {
        std::rethrow_exception(errors[1]);
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "callback failed");
    }
    try {
        std::rethrow_exception(errors[2]);
    } catch (const StoreError& e) {
        EXPECT_EQ(e.kind(), StoreError::Kind::kConstraint);
    }
    auto names = read_value(*store, [](Tx& tx) {
        std::vector<std::string> out;
        for (const auto& row : tx.query("SELECT name FROM items ORDER BY name")) out.push_back(row.text(0));
        return out;
    });
    EXPECT_THAT(names, ::testing::ElementsAre("a", "c"));
    auto stats = store->stats();
    EXPECT_EQ(stats.commits, commits_before + 2);  // the blocker's group, then the four in one group
    EXPECT_EQ(stats.failed, 2u);
    EXPECT_EQ(stats.transactions, 3u);  // blocker, a, c
}

TEST(StoreWriter, WriteSyncRethrowsAndWriterSurvives) {
    TempDir dir;
    auto store = Store::open_sqlite(test_options(dir.file("db.sqlite")), test_migrations());
    EXPECT_THROW(store->write_sync([](Tx&) { throw std::invalid_argument("nope"); }), std::invalid_argument);
    EXPECT_THROW(store->write_sync([](Tx&) { throw 42; }), int);
    store->write_sync([](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES ('after')"); });
    EXPECT_EQ(count_rows(*store, "items"), 1);
    // Waiting for the writer from the writer thread would never return.
    std::promise<std::exception_ptr> seen;
    store->write([&](Tx&) { store->write_sync([](Tx&) {}); }, [&](std::exception_ptr e) { seen.set_value(e); });
    EXPECT_THROW(std::rethrow_exception(seen.get_future().get()), std::logic_error);
}

TEST(StoreWriter, CloseFinishesQueuedWrites) {
    TempDir dir;
    std::string path = dir.file("db.sqlite");
    constexpr int kWrites = 1000;
    DoneLatch latch(kWrites);
    {
        auto store = Store::open_sqlite(test_options(path), test_migrations());
        WriterBlocker blocker(*store);
        for (int i = 0; i < kWrites; ++i) {
            store->write([i](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES (?)", {std::to_string(i)}); },
                         latch.callback());
        }
        EXPECT_GE(store->stats().queue_depth, static_cast<std::size_t>(kWrites));
        std::thread closer([&] { store->close(); });
        blocker.release();
        closer.join();
        EXPECT_EQ(latch.wait(), 0u);
    }
    auto store = Store::open_sqlite(test_options(path), test_migrations());
    EXPECT_EQ(count_rows(*store, "items"), kWrites);
}

TEST(StoreWriter, MaxBatchBoundsTheGroup) {
    TempDir dir;
    auto options = test_options(dir.file("db.sqlite"));
    options.max_batch = 10;
    auto store = Store::open_sqlite(options, test_migrations());
    DoneLatch latch(100);
    {
        WriterBlocker blocker(*store);
        for (int i = 0; i < 100; ++i) {
            store->write([i](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES (?)", {std::to_string(i)}); },
                         latch.callback());
        }
        blocker.release();
    }
    EXPECT_EQ(latch.wait(), 0u);
    EXPECT_EQ(store->stats().commits, 11u);  // the blocker, then ten groups of ten
}

TEST(StoreWriter, WalIsCheckpointedInTheBackground) {
    TempDir dir;
    std::string path = dir.file("db.sqlite");
    auto store = Store::open_sqlite(test_options(path), test_migrations());
    // About two pages per row: enough WAL frames to ask for a checkpoint.
    for (int group = 0; group < 30; ++group) {
        store->write_sync([group](Tx& tx) {
            for (int i = 0; i < 100; ++i) {
                tx.exec("INSERT INTO items(name, data) VALUES (?, ?)",
                        {fmt::format("{}-{}", group, i), Blob{std::string(6000, 'w')}});
            }
        });
    }
    for (int i = 0; i < 500 && store->stats().checkpoints == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_GE(store->stats().checkpoints, 1u);
    EXPECT_EQ(count_rows(*store, "items"), 3000);
    EXPECT_EQ(integrity(*store), "ok");
}

TEST(StoreBackup, ConsistentCopyUnderConcurrentWrites) {
    TempDir dir;
    auto store = Store::open_sqlite(test_options(dir.file("db.sqlite"), true), test_migrations());
    std::atomic<bool> stop{false};
    std::atomic<std::int64_t> written{0};
    std::thread writer([&] {
        for (std::int64_t i = 0; !stop; ++i) {
            store->write_sync([i](Tx& tx) {
                tx.exec("INSERT INTO items(id, name, data) VALUES (?, ?, ?)",
                        {i, "item-" + std::to_string(i), Blob{std::string(200, 'x')}});
                tx.exec("INSERT INTO notes(item_id, body) VALUES (?, 'note')", {i});
            });
            written = i + 1;
        }
    });
    while (written < 200) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    for (int round = 0; round < 3; ++round) {
        std::string dest = dir.file("backup-" + std::to_string(round) + ".sqlite");
        std::int64_t before = written;
        store->backup(dest);
        std::int64_t after = written;
        auto copy = Store::open_sqlite(test_options(dest), test_migrations());
        EXPECT_EQ(integrity(*copy), "ok");
        auto items = count_rows(*copy, "items");
        EXPECT_GE(items, before);
        EXPECT_LE(items, after + 1);
        EXPECT_EQ(count_rows(*copy, "notes"), items);  // both rows of every transaction, or neither
        EXPECT_EQ(copy->schema_version("test"), 2);
    }
    stop = true;
    writer.join();
    EXPECT_EQ(integrity(*store), "ok");
}

TEST(StoreAsync, CoWriteReturnsValuesAndRethrows) {
    TempDir dir;
    auto store = Store::open_sqlite(test_options(dir.file("db.sqlite")), test_migrations());
    boost::asio::io_context io;
    std::int64_t id = 0;
    std::string caught;
    bool void_done = false;
    std::thread::id resumed_on;
    boost::asio::co_spawn(
        io,
        [&]() -> boost::asio::awaitable<void> {
            id = co_await co_write(*store, [](Tx& tx) {
                tx.exec("INSERT INTO items(name) VALUES ('from-coroutine')");
                return tx.query_one("SELECT last_insert_rowid()")->integer(0);
            });
            resumed_on = std::this_thread::get_id();
            try {
                co_await co_write(*store, [](Tx& tx) -> int {
                    tx.exec("INSERT INTO items(name) VALUES ('rolled-back')");
                    throw std::runtime_error("refused by callback");
                });
            } catch (const std::runtime_error& e) {
                caught = e.what();
            }
            co_await co_write(*store, [](Tx& tx) { tx.exec("INSERT INTO items(name) VALUES ('void')"); });
            void_done = true;
        },
        boost::asio::detached);
    io.run();
    EXPECT_EQ(id, 1);
    EXPECT_EQ(resumed_on, std::this_thread::get_id());  // resumed on the io_context, not the writer thread
    EXPECT_EQ(caught, "refused by callback");
    EXPECT_TRUE(void_done);
    EXPECT_EQ(count_rows(*store, "items"), 2);
}

}  // namespace
}  // namespace parley::store
