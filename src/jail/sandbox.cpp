#include "jail/sandbox.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <shared_mutex>
#include <thread>

#include "jail/internal/engine.h"

namespace parley::jail {

void RefusingFetcher::fetch(FetchRequest request, std::function<void(FetchResponse)> done) {
    FetchResponse response;
    response.url = std::move(request.url);
    response.error = FetchError{kFetchRefusedByGuard, "fetch is not configured on this server"};
    done(std::move(response));
}

namespace {

RunOutput failed_run(std::string code, std::string message) {
    RunOutput out;
    out.event = "error";
    out.error = RunError{std::move(code), std::move(message)};
    return out;
}

}  // namespace

/// The pool: jail threads and the watchdog, started lazily by the first run()/check() (README "Threads").
///
/// `pool_mutex` orders submissions against starting and stopping the pool: run()/check() pick a thread and post
/// under a shared lock; starting (first submission) and stopping (idle stop, destruction) swap `threads` under the
/// exclusive lock. Stopped threads are joined outside the lock, so a `done` callback that submits again never
/// waits on a thread being joined.
///
/// The watchdog wakes every tick while the pool runs and interrupts each thread that is executing JavaScript, so the
/// interrupt callback can check that run's limits; with `idle_stop_ms` set it also stops the pool after that long
/// without work (joining the stopped threads itself, outside the lock). While the pool is stopped it sleeps on its
/// condition variable without ticking; the next submission starts the pool again and wakes it.
struct Sandbox::Impl {
    const JailOptions& options;
    std::shared_ptr<Fetcher> fetcher;
    internal::Counters counters;

    std::shared_mutex pool_mutex;
    std::vector<std::unique_ptr<internal::JailThread>> threads;  ///< empty while the pool is not running
    std::atomic<bool> started{false};
    bool destroying = false;  ///< under pool_mutex
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> inflight{0};       ///< runs and checks submitted and not yet answered
    std::atomic<std::int64_t> last_activity_ns{0};
    std::atomic<std::size_t> live_threads{0};

    std::mutex watchdog_mutex;
    std::condition_variable watchdog_cv;
    bool watchdog_stop = false;  ///< under watchdog_mutex
    std::thread watchdog;        ///< created by the first start (under the exclusive pool_mutex), joined at destruction

    Impl(const JailOptions& o, std::shared_ptr<Fetcher> f) : options(o), fetcher(std::move(f)) {}

    /// Caller holds pool_mutex shared or exclusive, and the pool runs.
    internal::JailThread& pick() {
        // Least loaded; ties go round-robin so an idle pool spreads work.
        const std::size_t start = next.fetch_add(1, std::memory_order_relaxed);
        internal::JailThread* best = nullptr;
        for (std::size_t i = 0; i < threads.size(); ++i) {
            auto& t = *threads[(start + i) % threads.size()];
            if (!best || t.load() < best->load()) best = &t;
        }
        return *best;
    }

    /// Caller holds pool_mutex exclusively and `threads` is empty. JS_Init (once per process, engine.cpp), one
    /// context per thread; the watchdog is created by the first start and lives until destruction. Throws when a
    /// context cannot be created (nothing is left running then).
    void start_locked() {
        std::vector<std::unique_ptr<internal::JailThread>> fresh;
        for (unsigned i = 0; i < options.threads; ++i) {
            fresh.push_back(std::make_unique<internal::JailThread>(options, fetcher, counters));
        }
        threads = std::move(fresh);
        live_threads.store(threads.size(), std::memory_order_relaxed);
        last_activity_ns.store(internal::steady_ns(), std::memory_order_relaxed);
        counters.pool_starts.fetch_add(1, std::memory_order_relaxed);
        started.store(true, std::memory_order_release);
        if (!watchdog.joinable()) {
            watchdog = std::thread([this] { watchdog_main(); });
        } else {
            std::lock_guard lock(watchdog_mutex);  // the watchdog sleeps until `started`: wake it
        }
        watchdog_cv.notify_all();
    }

    /// Calls `submit(thread)` with a running pool, starting it first when needed. Returns false when the pool
    /// cannot start (`error` then holds why) or the sandbox is being destroyed.
    template <typename F>
    bool with_pool(F&& submit, std::string& error) {
        {
            std::shared_lock lock(pool_mutex);
            if (!destroying && !threads.empty()) {
                inflight.fetch_add(1, std::memory_order_relaxed);
                last_activity_ns.store(internal::steady_ns(), std::memory_order_relaxed);
                submit(pick());
                return true;
            }
        }
        std::unique_lock lock(pool_mutex);  // the first submission (or the first after an idle stop)
        if (destroying) {
            error = "the jail is stopping";
            return false;
        }
        if (threads.empty()) {  // else another caller started it meanwhile
            try {
                start_locked();
            } catch (const std::exception& e) {
                error = std::string("the jail cannot start: ") + e.what();
                return false;
            }
        }
        inflight.fetch_add(1, std::memory_order_relaxed);
        last_activity_ns.store(internal::steady_ns(), std::memory_order_relaxed);
        submit(pick());
        return true;
    }

    /// A submission was answered.
    void finished() {
        last_activity_ns.store(internal::steady_ns(), std::memory_order_relaxed);
        inflight.fetch_sub(1, std::memory_order_relaxed);
    }

    /// Stops the pool when nothing is in flight and it has been idle for idle_stop_ms. Returns true when it did.
    bool stop_if_idle() {
        const auto idle_ns = static_cast<std::int64_t>(options.idle_stop_ms) * 1'000'000;
        auto idle = [&] {
            return inflight.load(std::memory_order_relaxed) == 0 &&
                   internal::steady_ns() - last_activity_ns.load(std::memory_order_relaxed) >= idle_ns;
        };
        if (!idle()) return false;
        std::vector<std::unique_ptr<internal::JailThread>> stopping;
        {
            std::unique_lock lock(pool_mutex, std::try_to_lock);  // busy lock: a submission (or start) is under way
            if (!lock.owns_lock() || destroying || threads.empty() || !idle()) return false;
            stopping.swap(threads);
            live_threads.store(0, std::memory_order_relaxed);
            counters.pool_stops.fetch_add(1, std::memory_order_relaxed);
            started.store(false, std::memory_order_release);
        }
        // Closes each mailbox (nothing queued: inflight was 0 under the lock) and joins its thread. A thread may still
        // be inside a `done` callback that submits again: that starts a new pool, never waits on this one.
        stopping.clear();
        return true;
    }

    /// Interrupts executing JavaScript every tick while the pool runs; sleeps without ticking while it does not.
    void watchdog_main() {
        const auto tick = std::chrono::milliseconds(options.watchdog_tick_ms);
        while (true) {
            {
                std::unique_lock lock(watchdog_mutex);
                if (started.load(std::memory_order_acquire)) {
                    watchdog_cv.wait_for(lock, tick, [this] { return watchdog_stop; });
                } else {
                    watchdog_cv.wait(lock, [this] { return watchdog_stop || started.load(std::memory_order_acquire); });
                }
                if (watchdog_stop) return;
            }
            {
                std::shared_lock lock(pool_mutex);
                for (auto& t : threads) t->request_interrupt();
            }
            if (options.idle_stop_ms > 0) stop_if_idle();
        }
    }
};

Sandbox::Sandbox(JailOptions options, std::shared_ptr<Fetcher> fetcher) : options_(std::move(options)) {
    if (!fetcher) fetcher = std::make_shared<RefusingFetcher>();
    options_.threads = std::max(1u, options_.threads);
    options_.watchdog_tick_ms = std::max(1u, options_.watchdog_tick_ms);
    impl_ = std::make_unique<Impl>(options_, std::move(fetcher));  // nothing starts here: see Impl
}

Sandbox::~Sandbox() {
    std::vector<std::unique_ptr<internal::JailThread>> stopping;
    std::thread watchdog;
    {
        std::unique_lock lock(impl_->pool_mutex);
        impl_->destroying = true;
        stopping.swap(impl_->threads);
        impl_->live_threads.store(0, std::memory_order_relaxed);
        impl_->started.store(false, std::memory_order_release);
        watchdog = std::move(impl_->watchdog);
    }
    {
        std::lock_guard lock(impl_->watchdog_mutex);
        impl_->watchdog_stop = true;
    }
    impl_->watchdog_cv.notify_all();
    if (watchdog.joinable()) watchdog.join();
    stopping.clear();  // each answers its queued and running runs, then joins
}

bool Sandbox::started() const { return impl_->started.load(std::memory_order_acquire); }

Limits Sandbox::clamp(const Limits& wanted) const {
    auto fit = [](std::int64_t v, std::int64_t max) { return std::clamp<std::int64_t>(v, 1, std::max<std::int64_t>(1, max)); };
    const Limits& m = options_.maxima;
    return Limits{fit(wanted.timeout_ms, m.timeout_ms), fit(wanted.cpu_ms, m.cpu_ms), fit(wanted.memory_mb, m.memory_mb),
                  fit(wanted.output_kb, m.output_kb), std::clamp<std::int64_t>(wanted.max_fetches, 0, m.max_fetches)};
}

void Sandbox::run(RunInput input, std::function<void(RunOutput)> done) {
    input.limits = clamp(input.limits);
    auto fail = [&](std::string message) {
        impl_->counters.runs.fetch_add(1, std::memory_order_relaxed);
        impl_->counters.failed.fetch_add(1, std::memory_order_relaxed);
        done(failed_run("time_limit", std::move(message)));
    };
    if (impl_->inflight.load(std::memory_order_relaxed) >= options_.max_queued_runs) {
        fail("the jail is overloaded: too many runs are waiting");
        return;
    }
    std::string error;
    const bool posted = impl_->with_pool(
        [&](internal::JailThread& thread) {  // only called once the run counts as in flight: `done` moves here
            auto wrapped = [impl = impl_.get(), done = std::move(done)](RunOutput out) mutable {
                impl->finished();
                done(std::move(out));
            };
            thread.post(internal::StartRun{std::move(input), std::move(wrapped), internal::steady_ns()});
        },
        error);
    if (!posted) fail(std::move(error));
}

void Sandbox::check(std::string code, std::function<void(std::optional<CompileError>)> done) {
    std::string error;
    const bool posted = impl_->with_pool(
        [&](internal::JailThread& thread) {
            auto wrapped = [impl = impl_.get(), done = std::move(done)](std::optional<CompileError> e) mutable {
                impl->finished();
                done(std::move(e));
            };
            thread.post(internal::CheckCode{std::move(code), std::move(wrapped)});
        },
        error);
    if (!posted) done(CompileError{0, 0, std::move(error)});
}

SandboxStats Sandbox::stats() const {
    const auto& c = impl_->counters;
    return SandboxStats{c.runs.load(),        c.failed.load(),     c.compiled.load(),
                        c.cache_hits.load(),  c.gcs.load(),        c.pool_starts.load(),
                        c.pool_stops.load(),  impl_->live_threads.load(), impl_->inflight.load()};
}

}  // namespace parley::jail
