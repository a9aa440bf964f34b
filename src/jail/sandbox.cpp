#include "jail/sandbox.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "jail/internal/engine.h"

namespace parley::jail {

void RefusingFetcher::fetch(FetchRequest request, std::function<void(FetchResponse)> done) {
    FetchResponse response;
    response.url = std::move(request.url);
    response.error = FetchError{kFetchRefusedByGuard, "fetch is not configured on this server"};
    done(std::move(response));
}

/// The jail threads and the watchdog. The watchdog thread wakes every tick and interrupts each thread that is
/// executing JavaScript, so the interrupt callback can check that run's limits.
struct Sandbox::Impl {
    internal::Counters counters;
    std::vector<std::unique_ptr<internal::JailThread>> threads;
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> queued{0};
    std::mutex watchdog_mutex;
    std::condition_variable watchdog_cv;
    bool stopping = false;
    std::thread watchdog;

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
};

Sandbox::Sandbox(JailOptions options, std::shared_ptr<Fetcher> fetcher)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
    if (!fetcher) fetcher = std::make_shared<RefusingFetcher>();
    options_.threads = std::max(1u, options_.threads);
    options_.watchdog_tick_ms = std::max(1u, options_.watchdog_tick_ms);
    for (unsigned i = 0; i < options_.threads; ++i) {
        impl_->threads.push_back(std::make_unique<internal::JailThread>(options_, fetcher, impl_->counters));
    }
    impl_->watchdog = std::thread([impl = impl_.get(), tick = options_.watchdog_tick_ms] {
        std::unique_lock lock(impl->watchdog_mutex);
        while (!impl->stopping) {
            impl->watchdog_cv.wait_for(lock, std::chrono::milliseconds(tick));
            if (impl->stopping) break;
            for (auto& t : impl->threads) t->request_interrupt();
        }
    });
}

Sandbox::~Sandbox() {
    {
        std::lock_guard lock(impl_->watchdog_mutex);
        impl_->stopping = true;
    }
    impl_->watchdog_cv.notify_all();
    impl_->watchdog.join();
    impl_->threads.clear();  // each answers its queued and running runs, then joins
}

Limits Sandbox::clamp(const Limits& wanted) const {
    auto fit = [](std::int64_t v, std::int64_t max) { return std::clamp<std::int64_t>(v, 1, std::max<std::int64_t>(1, max)); };
    const Limits& m = options_.maxima;
    return Limits{fit(wanted.timeout_ms, m.timeout_ms), fit(wanted.cpu_ms, m.cpu_ms), fit(wanted.memory_mb, m.memory_mb),
                  fit(wanted.output_kb, m.output_kb), std::clamp<std::int64_t>(wanted.max_fetches, 0, m.max_fetches)};
}

void Sandbox::run(RunInput input, std::function<void(RunOutput)> done) {
    input.limits = clamp(input.limits);
    std::size_t load = 0;
    for (auto& t : impl_->threads) load += t->load();
    if (load >= options_.max_queued_runs) {
        RunOutput out;
        out.event = "error";
        out.error = RunError{"time_limit", "the jail is overloaded: too many runs are waiting"};
        impl_->counters.runs.fetch_add(1, std::memory_order_relaxed);
        impl_->counters.failed.fetch_add(1, std::memory_order_relaxed);
        done(std::move(out));
        return;
    }
    internal::StartRun task{std::move(input), std::move(done), internal::steady_ns()};
    impl_->pick().post(std::move(task));
}

void Sandbox::check(std::string code, std::function<void(std::optional<CompileError>)> done) {
    impl_->pick().post(internal::CheckCode{std::move(code), std::move(done)});
}

SandboxStats Sandbox::stats() const {
    const auto& c = impl_->counters;
    return SandboxStats{c.runs.load(), c.failed.load(), c.compiled.load(), c.cache_hits.load(), c.gcs.load()};
}

}  // namespace parley::jail
