/// The Action Jail sandbox: runs integrator JavaScript (SpiderMonkey 102) on a small dedicated thread pool with
/// per-run limits (wall time, CPU, memory, output, fetches), a fresh global per run and `fetch()` through an
/// injected Fetcher. Knows nothing about storage or HTTP; JailService (service.h) builds on it.
#pragma once

#include <boost/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace parley::jail {

namespace json = boost::json;

/// Limits of one run. Actions may set their own within JailOptions::maxima.
struct Limits {
    std::int64_t timeout_ms = 5'000;    ///< wall time from submission to result, awaiting fetch included
    std::int64_t cpu_ms = 2'000;        ///< CPU time spent executing the run's JavaScript
    std::int64_t memory_mb = 32;        ///< the run's heap (GC heap + malloc'd buffers of its zone)
    std::int64_t output_kb = 256;       ///< the serialised result of main()
    std::int64_t max_fetches = 10;      ///< fetch() calls per run
    bool operator==(const Limits&) const = default;
};

/// Instance-wide settings of the sandbox. Defaults are the documented limits (src/jail/README.md).
struct JailOptions {
    unsigned threads = 2;                       ///< jail threads, each with its own SpiderMonkey context
    Limits defaults;                            ///< applied where an action sets nothing
    Limits maxima{30'000, 10'000, 128, 1024, 50};  ///< what an action may ask for at most
    std::size_t max_queued_runs = 10'000;       ///< submissions waiting for a thread; beyond → time_limit error
    std::size_t max_log_lines = 200;            ///< console lines kept per run (then one "truncated" line)
    std::size_t max_log_bytes = 64 * 1024;      ///< bytes of console output kept per run
    std::size_t max_code_bytes = 256 * 1024;    ///< source size of one action
    std::size_t compiled_cache_per_thread = 256;  ///< compiled versions kept per thread (LRU)
    std::size_t max_fetch_request_bytes = 1 << 20;   ///< body of one fetch() request
    std::size_t max_fetch_response_bytes = 2 << 20;  ///< body of one fetch() response handed to the script
    unsigned max_timers = 100;                  ///< setTimeout calls per run
    unsigned watchdog_tick_ms = 5;              ///< how often running JavaScript is interrupted to check limits
    std::size_t context_heap_mb = 512;          ///< hard GC-heap cap of one jail thread's context (JSGC_MAX_BYTES)
    /// Stop the jail threads (and their contexts) after this long without a run or check in flight; the next
    /// submission starts them again. 0 = keep them once started.
    unsigned idle_stop_ms = 0;
};

/// One HTTP request made by a script's fetch().
struct FetchRequest {
    std::string method = "GET";
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::int64_t timeout_ms = 10'000;      ///< what is left of the run's wall time
    std::size_t max_response_bytes = 0;    ///< larger bodies fail with code `too_large`
};

/// Why a fetch failed. `refused_by_guard` (SSRF guard: loopback, private, link-local, also after redirects) ends
/// the run with error code `fetch_refused`; every other code (`timeout`, `network`, `too_large`, `bad_url`, ...)
/// rejects the script's promise with a TypeError it may catch.
struct FetchError {
    std::string code;
    std::string message;
};

inline constexpr const char* kFetchRefusedByGuard = "refused_by_guard";

struct FetchResponse {
    int status = 0;
    std::string url;  ///< the final URL after redirects
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::optional<FetchError> error;
};

/// Outbound HTTP for fetch(). The production implementation is the outbound module's client with its SSRF guard
/// (adapted in app); tests use a real one over a local server. `done` is called exactly once, inline or later on
/// any thread; it only posts to the jail thread, so it is cheap. fetch() must never block the caller.
class Fetcher {
public:
    virtual ~Fetcher() = default;
    virtual void fetch(FetchRequest request, std::function<void(FetchResponse)> done) = 0;
};

/// A Fetcher that refuses everything (fetch not configured). Thread-safe.
class RefusingFetcher final : public Fetcher {
public:
    void fetch(FetchRequest request, std::function<void(FetchResponse)> done) override;
};

/// Source of one action version. `key` identifies the version for the compiled-script cache (a version id:
/// never reused for other code).
struct Script {
    std::string key;
    std::string name;  ///< the action's name (file name in stack traces: `<name>.js`)
    std::string code;
};

/// One run: the script and what main(ctx) receives.
struct RunInput {
    std::shared_ptr<const Script> script;
    json::object params;
    json::object state;
    json::object client;
    json::object instance_settings;
    Limits limits;
};

/// Error codes of failed runs (CONTRACT.md): time_limit, memory_limit, js_error, fetch_refused, bad_result.
struct RunError {
    std::string code;
    std::string message;
};

/// What a run answers. A failed run has event "error", an empty state and `error` set.
struct RunOutput {
    std::string event;
    json::object state;
    std::vector<std::string> logs;
    double ms = 0;  ///< from start of execution to the result (queueing excluded)
    std::optional<RunError> error;
};

/// A syntax error found by check(): 1-based line and column.
struct CompileError {
    int line = 0;
    int column = 0;
    std::string message;
};

/// Counters for metrics and benchmarks.
struct SandboxStats {
    std::uint64_t runs = 0;
    std::uint64_t failed = 0;
    std::uint64_t compiled = 0;     ///< compilations into the per-thread caches
    std::uint64_t cache_hits = 0;
    std::uint64_t gcs = 0;          ///< full GCs the sandbox asked for
    std::uint64_t pool_starts = 0;  ///< times the jail threads were started (first submission, after idle stops)
    std::uint64_t pool_stops = 0;   ///< idle stops (JailOptions::idle_stop_ms)
    std::size_t threads = 0;        ///< jail threads running now (0 until the first run or check)
    std::size_t inflight = 0;       ///< runs and checks submitted and not yet answered
};

/// The pool of jail threads. Thread-safety: run() and check() may be called from any thread; `done` callbacks
/// run on a jail thread and must be short (post elsewhere). Destruction stops the threads: queued and running
/// runs are answered with error `time_limit` ("jail stopping") before the destructor returns.
///
/// Started lazily: constructing a Sandbox creates no thread and no SpiderMonkey state. The first run() or check()
/// (from whichever thread, exactly once however many race) initialises SpiderMonkey (JS_Init, once per process),
/// creates the jail threads with their contexts and the watchdog, and pays that start-up (tens of ms) itself.
/// With JailOptions::idle_stop_ms the threads stop again after that long idle.
class Sandbox {
public:
    Sandbox(JailOptions options, std::shared_ptr<Fetcher> fetcher);
    ~Sandbox();
    Sandbox(const Sandbox&) = delete;
    Sandbox& operator=(const Sandbox&) = delete;

    /// Runs `input` on the least busy jail thread (starting the pool first when it is not running). `done` is
    /// called exactly once; if the pool cannot start, at once with error `time_limit` ("the jail cannot start").
    void run(RunInput input, std::function<void(RunOutput)> done);

    /// Compiles `code` without running it; `done(nullopt)` when it compiles, else the first syntax error.
    void check(std::string code, std::function<void(std::optional<CompileError>)> done);

    const JailOptions& options() const { return options_; }
    SandboxStats stats() const;
    /// Whether the jail threads run now (false until the first run/check, and again after an idle stop).
    bool started() const;

    /// Clamps each limit of `wanted` to [1, maxima].
    Limits clamp(const Limits& wanted) const;

private:
    struct Impl;
    JailOptions options_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace parley::jail
