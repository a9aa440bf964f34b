/// One jail thread: a SpiderMonkey context, its event loop (runs, fetch completions, timers, deadlines), the
/// per-thread compiled-script cache and the interrupt callback that enforces limits. No SpiderMonkey type leaves
/// engine.cpp.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <pthread.h>
#include <variant>

#include "jail/sandbox.h"

namespace parley::jail::internal {

/// Shared counters of a Sandbox, updated by every jail thread.
struct Counters {
    std::atomic<std::uint64_t> runs{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> compiled{0};
    std::atomic<std::uint64_t> cache_hits{0};
    std::atomic<std::uint64_t> gcs{0};
    std::atomic<std::uint64_t> pool_starts{0};
    std::atomic<std::uint64_t> pool_stops{0};
};

/// What other threads hand to a jail thread.
struct StartRun {
    RunInput input;
    std::function<void(RunOutput)> done;
    std::int64_t submitted_ns = 0;  ///< steady clock, for the wall deadline
};
struct CheckCode {
    std::string code;
    std::function<void(std::optional<CompileError>)> done;
};
struct FetchDone {
    std::uint64_t run_id = 0;
    std::uint64_t request_id = 0;
    FetchResponse response;
};
using Task = std::variant<StartRun, CheckCode, FetchDone>;

/// The queue of a jail thread; shared with fetch callbacks, which may outlive the thread (they then post into a
/// closed mailbox and are dropped). Thread-safe.
class Mailbox {
public:
    /// Queues `task`; when the mailbox is closed the task is handed back instead.
    std::optional<Task> post(Task task);
    /// Waits until a task arrives, the mailbox closes or `deadline_ns` (steady clock) passes.
    /// Returns every task queued so far (possibly none).
    std::deque<Task> wait(std::int64_t deadline_ns);
    /// Refuses further tasks and wakes the thread; what is queued stays for the thread to answer.
    void close();
    bool closed() const;

private:
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Task> tasks_;
    bool closed_ = false;
};

class Engine;

/// One jail thread and its SpiderMonkey context. Everything JavaScript happens on that thread; other threads only
/// post to the mailbox, read the atomics below and call request_interrupt().
class JailThread {
public:
    JailThread(const JailOptions& options, std::shared_ptr<Fetcher> fetcher, Counters& counters);
    ~JailThread();  ///< stops the thread (answers every pending run), destroys the context
    JailThread(const JailThread&) = delete;
    JailThread& operator=(const JailThread&) = delete;

    void post(Task task);
    /// Runs queued or in progress (for choosing the least busy thread).
    std::size_t load() const { return load_.load(std::memory_order_relaxed); }
    /// Called by the watchdog: interrupts JavaScript that is executing now so the limits get checked.
    void request_interrupt();

private:
    void main(std::promise<std::exception_ptr>& started);

    const JailOptions& options_;
    std::shared_ptr<Fetcher> fetcher_;
    Counters& counters_;
    std::shared_ptr<Mailbox> mailbox_;
    std::atomic<std::size_t> load_{0};
    std::mutex engine_mutex_;           ///< guards engine_ pointer against request_interrupt during start/stop
    Engine* engine_ = nullptr;
    pthread_t thread_{};
};

/// The CPU clock of the calling thread, in nanoseconds.
std::int64_t thread_cpu_ns();
/// The steady clock, in nanoseconds.
std::int64_t steady_ns();

}  // namespace parley::jail::internal
