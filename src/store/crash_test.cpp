// Crash consistency: a child process writes durably and acknowledges ids through a pipe; the parent kills it with
// SIGKILL at an arbitrary moment and checks that every acknowledged write survived and the file is intact.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <semaphore>
#include <thread>
#include <unordered_set>

#include "store/store.h"
#include "store/test_util.h"

namespace parley::store {
namespace {

using testing::integrity;
using testing::TempDir;
using testing::test_migrations;
using testing::test_options;

constexpr int kWriterThreads = 4;
constexpr std::int64_t kIdsPerThread = 100'000'000;

/// The child: writes forever from several threads, each keeping many writes in flight; an id is written to
/// `ack_fd` only after its `done` reported the group commit durable. Never returns.
[[noreturn]] void run_child(const std::string& path, int ack_fd, std::int64_t base) {
    try {
        auto store = Store::open_sqlite(test_options(path, /*durable=*/true), test_migrations());
        std::vector<std::thread> threads;
        for (int t = 0; t < kWriterThreads; ++t) {
            threads.emplace_back([&store, ack_fd, t, base] {
                std::counting_semaphore<64> in_flight(64);
                for (std::int64_t n = 0;; ++n) {
                    std::int64_t id = base + t * kIdsPerThread + n;
                    in_flight.acquire();
                    store->write(
                        [id](Tx& tx) {
                            tx.exec("INSERT INTO items(id, name, data) VALUES (?, ?, ?)",
                                    {id, "crash-" + std::to_string(id), Blob{std::string(100, 'c')}});
                        },
                        [id, ack_fd, &in_flight](std::exception_ptr error) {
                            if (!error && ::write(ack_fd, &id, sizeof id) != sizeof id) ::_exit(3);
                            in_flight.release();
                        });
                }
            });
        }
        for (auto& t : threads) t.join();
    } catch (...) {
        ::_exit(2);
    }
    ::_exit(0);
}

/// Reads whole ids from `fd` into `out` until `deadline` (or EOF when deadline is null).
void read_acks(int fd, std::vector<std::int64_t>& out, std::string& partial,
               std::optional<std::chrono::steady_clock::time_point> deadline) {
    char buffer[8192];
    for (;;) {
        int timeout_ms = -1;
        if (deadline) {
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return;
            timeout_ms = static_cast<int>(left.count());
        }
        pollfd p{fd, POLLIN, 0};
        int ready = ::poll(&p, 1, timeout_ms);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return;
        ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // EOF: the child is gone
        partial.append(buffer, static_cast<std::size_t>(n));
        std::size_t whole = partial.size() / sizeof(std::int64_t);
        for (std::size_t i = 0; i < whole; ++i) {
            std::int64_t id;
            std::memcpy(&id, partial.data() + i * sizeof id, sizeof id);
            out.push_back(id);
        }
        partial.erase(0, whole * sizeof(std::int64_t));
    }
}

TEST(StoreCrash, AcknowledgedWritesSurviveSigkill) {
    TempDir dir;
    std::string path = dir.file("crash.sqlite");
    Store::open_sqlite(test_options(path), test_migrations())->close();
    for (int round = 0; round < 3; ++round) {
        int fds[2];
        ASSERT_EQ(::pipe(fds), 0);
        std::int64_t base = std::int64_t{round + 1} * 1'000'000'000'000;
        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::close(fds[0]);
            run_child(path, fds[1], base);
        }
        ::close(fds[1]);
        std::vector<std::int64_t> acked;
        std::string partial;
        // A different moment each round: the kill lands at an arbitrary point of a group commit.
        auto run_for = std::chrono::milliseconds(300 + 97 * round);
        read_acks(fds[0], acked, partial, std::chrono::steady_clock::now() + run_for);
        ASSERT_EQ(::kill(pid, SIGKILL), 0);
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with status " << WEXITSTATUS(status);
        read_acks(fds[0], acked, partial, std::nullopt);
        ::close(fds[0]);
        EXPECT_TRUE(partial.empty());
        ASSERT_GT(acked.size(), 100u) << "round " << round;

        auto store = Store::open_sqlite(test_options(path), test_migrations());
        EXPECT_EQ(integrity(*store), "ok");
        std::unordered_set<std::int64_t> present;
        store->read([&](Tx& tx) {
            tx.for_each("SELECT id FROM items WHERE id >= ? AND id < ?", {base, base + 1'000'000'000'000},
                        [&](const Row& row) {
                            present.insert(row.integer(0));
                            return true;
                        });
        });
        std::size_t missing = 0;
        for (auto id : acked) missing += present.count(id) == 0;
        EXPECT_EQ(missing, 0u) << "round " << round << ": " << acked.size() << " acknowledged, " << present.size()
                               << " present";
        store->close();
    }
}

}  // namespace
}  // namespace parley::store
