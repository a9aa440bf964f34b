// The SpiderMonkey side of the jail. One Engine per jail thread owns a JSContext and everything rooted in it.
//
// A run: fresh global (own compartment and zone) → prelude → the action's script from the per-thread stencil
// cache → main(ctx) → microtasks (our own JobQueue, per run) → settle. A run whose promise waits for fetch or a
// timer stays in `runs_` (its objects rooted by the extra-roots tracer) and the thread serves other runs; the
// fetch callback posts FetchDone to the mailbox. Limits are checked in the interrupt callback, which the
// watchdog requests every tick while JavaScript executes, and on the loop for runs that wait.
#include "jail/internal/engine.h"

#include <pthread.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cinttypes>
#include <future>
#include <cstdio>
#include <cstring>
#include <list>
#include <map>
#include <regex>
#include <unordered_map>

#include <jsapi.h>
#include <jsfriendapi.h>
#include <js/Array.h>
#include <js/ArrayBuffer.h>
#include <js/CallAndConstruct.h>
#include <js/CharacterEncoding.h>
#include <js/CompilationAndEvaluation.h>
#include <js/CompileOptions.h>
#include <js/ContextOptions.h>
#include <js/Conversions.h>
#include <js/ErrorReport.h>
#include <js/Exception.h>
#include <js/GlobalObject.h>
#include <js/Initialization.h>
#include <js/Interrupt.h>
#include <js/JSON.h>
#include <js/GCAPI.h>
#include <js/Promise.h>
#include <js/PropertyAndElement.h>
#include <js/Realm.h>
#include <js/SourceText.h>
#include <js/Stack.h>
#include <js/String.h>
#include <js/Warnings.h>
#include <js/experimental/JSStencil.h>

#include "jail/internal/prelude.h"

namespace parley::jail::internal {

std::int64_t thread_cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// --- Mailbox ---------------------------------------------------------------------------------------------------

std::optional<Task> Mailbox::post(Task task) {
    {
        std::lock_guard lock(mutex_);
        if (closed_) return task;
        tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
    return std::nullopt;
}

std::deque<Task> Mailbox::wait(std::int64_t deadline_ns) {
    std::unique_lock lock(mutex_);
    if (tasks_.empty() && !closed_) {
        auto now = steady_ns();
        if (deadline_ns > now) {
            cv_.wait_for(lock, std::chrono::nanoseconds(deadline_ns - now),
                         [&] { return !tasks_.empty() || closed_; });
        }
    }
    std::deque<Task> out;
    out.swap(tasks_);
    return out;
}

void Mailbox::close() {
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
    }
    cv_.notify_all();
}

bool Mailbox::closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
}

namespace {

constexpr std::int64_t kMs = 1'000'000;
constexpr std::size_t kMb = 1024 * 1024;
constexpr std::size_t kThreadStackBytes = 16 * kMb;
constexpr std::size_t kNativeStackQuota = 8 * kMb;   // "too much recursion" well before the thread's stack ends
constexpr std::size_t kRunsPerGc = 256;              // dead realms collected in one full GC every this many runs
constexpr std::size_t kMaxUrlBytes = 8192;
constexpr std::size_t kMaxHeaders = 100;
constexpr std::size_t kMaxHeaderBytes = 8192;
constexpr std::size_t kMaxEventBytes = 200;
constexpr std::size_t kMaxErrorBytes = 2000;

const JSClass kGlobalClass = {"global", JSCLASS_GLOBAL_FLAGS, &JS::DefaultGlobalClassOps};

/// SpiderMonkey's process-wide initialisation (JS_Init) must happen once before any context exists; it is the
/// one process-global in this module. JS_ShutDown runs at exit (after every Sandbox, which the app destroys
/// before returning from main), before SpiderMonkey's own static destructors.
void init_spidermonkey() {
    static std::once_flag once;
    std::call_once(once, [] {
        // Interpreter only: every run has its own zone, and with the JITs on each new zone generated IC stubs
        // and trampolines (an mprotect each, ~2.5 ms per run); jail actions are glue code, and no JIT also means
        // no JIT-spraying surface.
        JS::DisableJitBackend();
        if (!JS_Init()) {
            std::fputs("parley: SpiderMonkey failed to initialise\n", stderr);
            std::abort();
        }
        JS::SetLargeArrayBuffersEnabled(false);  // ArrayBuffers stay below 2 GB
        std::atexit([] { JS_ShutDown(); });
    });
}

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

/// UTF-16 → UTF-8, lone surrogates become U+FFFD. `pending_high` carries a high surrogate across chunks.
void utf16_to_utf8(const char16_t* buf, std::size_t len, std::string& out, char16_t& pending_high) {
    for (std::size_t i = 0; i < len; ++i) {
        char16_t c = buf[i];
        if (pending_high) {
            if (c >= 0xDC00 && c <= 0xDFFF) {
                append_utf8(out, 0x10000 + ((char32_t(pending_high) - 0xD800) << 10) + (c - 0xDC00));
                pending_high = 0;
                continue;
            }
            append_utf8(out, 0xFFFD);
            pending_high = 0;
        }
        if (c >= 0xD800 && c <= 0xDBFF) {
            pending_high = c;
        } else if (c >= 0xDC00 && c <= 0xDFFF) {
            append_utf8(out, 0xFFFD);
        } else {
            append_utf8(out, c);
        }
    }
}

/// Replaces invalid UTF-8 with U+FFFD so SpiderMonkey's strict UTF-8 decoding never fails on response bodies.
std::string sanitize_utf8(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    std::size_t i = 0;
    while (i < in.size()) {
        auto c = static_cast<unsigned char>(in[i]);
        if (c < 0x80) {
            out.push_back(static_cast<char>(c));
            ++i;
            continue;
        }
        int n = 0;
        char32_t cp = 0, min = 0;
        if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; min = 0x10000; }
        else { append_utf8(out, 0xFFFD); ++i; continue; }
        int j = 1;
        for (; j <= n && i + j < in.size() && (static_cast<unsigned char>(in[i + j]) & 0xC0) == 0x80; ++j) {
            cp = (cp << 6) | (static_cast<unsigned char>(in[i + j]) & 0x3F);
        }
        if (j <= n || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            append_utf8(out, 0xFFFD);
            i += std::max(1, j);
            continue;
        }
        out.append(in.substr(i, n + 1));
        i += n + 1;
    }
    return out;
}

std::string truncate(std::string text, std::size_t max) {
    if (text.size() <= max) return text;
    std::size_t cut = max;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text.resize(cut);
    text += "…";
    return text;
}

RunOutput failed(std::string code, std::string message) {
    RunOutput out;
    out.event = "error";
    out.error = RunError{std::move(code), std::move(message)};
    return out;
}

struct StencilEntry {
    std::string key;
    RefPtr<JS::Stencil> stencil;
};

}  // namespace

// --- Engine ----------------------------------------------------------------------------------------------------

/// Thread-affine: every method runs on the owning jail thread, except executing()/cx() read by the watchdog.
class Engine final : public JS::JobQueue {
public:
    Engine(const JailOptions& options, std::shared_ptr<Fetcher> fetcher, Counters& counters,
           std::weak_ptr<Mailbox> mailbox, std::atomic<std::size_t>& load);
    ~Engine() override;

    JSContext* cx() const { return cx_; }
    bool executing() const { return executing_.load(std::memory_order_acquire); }

    void handle(Task task);
    /// Fires due timers and ends waiting runs past their deadline.
    void on_clock();
    /// When the loop must wake up next (steady ns).
    std::int64_t next_wake() const;
    /// Answers every run (and the given queued tasks) with "jail stopping".
    void stop(std::deque<Task> queued);

    // JS::JobQueue: promise reactions go to the run that is executing.
    JSObject* getIncumbentGlobal(JSContext* cx) override { return JS::CurrentGlobalOrNull(cx); }
    bool enqueuePromiseJob(JSContext*, JS::HandleObject, JS::HandleObject job, JS::HandleObject,
                           JS::HandleObject) override {
        if (current_) current_->jobs.emplace_back(job.get());
        return true;
    }
    void runJobs(JSContext*) override {
        if (current_) drain(*current_);
    }
    bool empty() const override { return !current_ || current_->jobs.empty(); }

private:
    struct Saved final : SavedJobQueue {};
    js::UniquePtr<SavedJobQueue> saveJobQueue(JSContext*) override { return js::MakeUnique<Saved>(); }

    struct Timer {
        std::uint64_t run_id;
        std::uint64_t pending_id;
    };

    struct Run {
        std::uint64_t id = 0;
        RunInput input;
        std::function<void(RunOutput)> done;
        std::int64_t started_ns = 0;
        std::int64_t deadline_ns = 0;
        std::int64_t cpu_ns = 0;
        JS::Heap<JSObject*> global;
        JS::Heap<JSObject*> promise;       ///< main()'s promise when it is async
        JS::Heap<JS::Value> result;        ///< main()'s value when it is not
        bool has_result = false;
        std::deque<JS::Heap<JSObject*>> jobs;
        std::map<std::uint64_t, JS::Heap<JSObject*>> pending;  ///< fetch and timer promises
        std::uint64_t next_pending = 1;
        std::int64_t fetches = 0;
        unsigned timers = 0;
        std::vector<std::string> logs;
        std::size_t log_bytes = 0;
        bool logs_truncated = false;
        std::optional<RunError> breach;     ///< a limit was hit: the run ends with this error
        JS::Heap<JSObject*> memory;         ///< the memory-info "zone" object, made on the first limit check
    };

    /// Enters a run's realm for one step of JavaScript and accounts its CPU time.
    class Enter {
    public:
        Enter(Engine& engine, Run& run)
            : engine_(engine), run_(run), realm_(engine.cx_, run.global.get()), previous_(engine.current_) {
            engine_.current_ = &run_;
            engine_.slice_cpu_start_ = thread_cpu_ns();
            engine_.executing_.store(true, std::memory_order_release);
        }
        ~Enter() {
            engine_.executing_.store(false, std::memory_order_release);
            run_.cpu_ns += thread_cpu_ns() - engine_.slice_cpu_start_;
            engine_.current_ = previous_;
        }
        Enter(const Enter&) = delete;
        Enter& operator=(const Enter&) = delete;

    private:
        Engine& engine_;
        Run& run_;
        JSAutoRealm realm_;
        Run* previous_;
    };

    static void trace(JSTracer* trc, void* data);
    static bool on_interrupt(JSContext* cx);
    bool check_limits(Run& run);
    std::uint64_t zone_bytes(Run& run);

    void start(StartRun task);
    void check(CheckCode task);
    void fetch_done(FetchDone task);
    void timer_fired(const Timer& timer);

    /// Runs `fn` in the run's realm, drains microtasks, then finishes the run if it settled or failed.
    template <typename F>
    void step(Run& run, F&& fn);
    bool drain(Run& run);
    std::optional<RunOutput> settle(Run& run);
    RunOutput failure(Run& run);
    RunOutput convert_result(Run& run, JS::HandleValue value);
    void finish(Run& run, RunOutput out);
    void breach(Run& run, std::string code, std::string message);
    void log(Run& run, std::string line);

    /// The stencil of a script version, compiled on first use; nullptr with `error` set on a syntax error.
    JS::Stencil* stencil_for(const Script& script, std::optional<CompileError>& error);
    RefPtr<JS::Stencil> compile(std::string_view code, const char* filename, std::optional<CompileError>& error,
                                bool want_value = false);
    std::optional<CompileError> take_compile_error();

    std::string describe(JS::HandleValue exception, JS::HandleObject stack);
    std::string to_utf8(JSString* str);
    JSString* new_string(std::string_view utf8);

    // Natives on `__jail` (see prelude.cpp).
    static bool native_log(JSContext* cx, unsigned argc, JS::Value* vp);
    static bool native_sleep(JSContext* cx, unsigned argc, JS::Value* vp);
    static bool native_fetch(JSContext* cx, unsigned argc, JS::Value* vp);
    static bool native_random_uuid(JSContext* cx, unsigned argc, JS::Value* vp);
    static bool native_random_hex(JSContext* cx, unsigned argc, JS::Value* vp);
    static Engine& self(JSContext* cx) { return *static_cast<Engine*>(JS_GetContextPrivate(cx)); }

    const JailOptions& options_;
    std::shared_ptr<Fetcher> fetcher_;
    Counters& counters_;
    std::weak_ptr<Mailbox> mailbox_;
    std::atomic<std::size_t>& load_;
    JSContext* cx_ = nullptr;
    std::optional<JS::PersistentRootedObject> compile_global_;
    RefPtr<JS::Stencil> prelude_;
    RefPtr<JS::Stencil> lookup_;  ///< evaluates to the run's `main`, however it was declared
    std::list<StencilEntry> cache_;  ///< most recently used first
    std::unordered_map<std::string, std::list<StencilEntry>::iterator> cache_index_;
    std::map<std::uint64_t, std::unique_ptr<Run>> runs_;
    std::multimap<std::int64_t, Timer> timers_;
    std::uint64_t next_run_id_ = 1;
    Run* current_ = nullptr;
    std::int64_t slice_cpu_start_ = 0;
    std::atomic<bool> executing_{false};
    std::size_t runs_since_gc_ = 0;
};

Engine::Engine(const JailOptions& options, std::shared_ptr<Fetcher> fetcher, Counters& counters,
               std::weak_ptr<Mailbox> mailbox, std::atomic<std::size_t>& load)
    : options_(options), fetcher_(std::move(fetcher)), counters_(counters), mailbox_(std::move(mailbox)), load_(load) {
    init_spidermonkey();
    cx_ = JS_NewContext(static_cast<std::uint32_t>(std::min<std::size_t>(options_.context_heap_mb, 4000) * kMb));
    if (!cx_) throw std::runtime_error("SpiderMonkey: JS_NewContext failed");
    JS_SetContextPrivate(cx_, this);
    JS::ContextOptionsRef(cx_).setWasm(false).setAsyncStack(false);
    JS_SetNativeStackQuota(cx_, kNativeStackQuota);
    if (!JS::InitSelfHostedCode(cx_)) {
        JS_DestroyContext(cx_);
        throw std::runtime_error("SpiderMonkey: InitSelfHostedCode failed");
    }
    JS::SetWarningReporter(cx_, [](JSContext*, JSErrorReport*) {});  // warnings never reach stdout/stderr
    JS_AddInterruptCallback(cx_, &Engine::on_interrupt);
    JS::SetJobQueue(cx_, this);
    JS_AddExtraGCRootsTracer(cx_, &Engine::trace, this);

    JS::RealmOptions realm_options;
    compile_global_.emplace(cx_, JS_NewGlobalObject(cx_, &kGlobalClass, nullptr, JS::DontFireOnNewGlobalHook,
                                                     realm_options));
    if (!compile_global_->get()) throw std::runtime_error("SpiderMonkey: cannot create the compile global");
    std::optional<CompileError> error;
    prelude_ = compile(kPrelude, "jail-prelude.js", error);
    if (!prelude_) throw std::runtime_error("jail prelude does not compile: " + (error ? error->message : ""));
    lookup_ = compile("typeof main === 'function' ? main : undefined", "jail-lookup.js", error, true);
    if (!lookup_) throw std::runtime_error("jail lookup does not compile");
}

Engine::~Engine() {
    runs_.clear();
    timers_.clear();
    cache_index_.clear();
    cache_.clear();
    prelude_ = nullptr;
    lookup_ = nullptr;
    compile_global_.reset();
    JS_RemoveExtraGCRootsTracer(cx_, &Engine::trace, this);
    JS::SetJobQueue(cx_, nullptr);
    JS_DestroyContext(cx_);
}

void Engine::trace(JSTracer* trc, void* data) {
    auto* self = static_cast<Engine*>(data);
    for (auto& [id, run] : self->runs_) {
        JS::TraceEdge(trc, &run->global, "jail run global");
        JS::TraceEdge(trc, &run->promise, "jail run promise");
        JS::TraceEdge(trc, &run->result, "jail run result");
        JS::TraceEdge(trc, &run->memory, "jail run memory info");
        for (auto& job : run->jobs) JS::TraceEdge(trc, &job, "jail run job");
        for (auto& [pid, promise] : run->pending) JS::TraceEdge(trc, &promise, "jail pending promise");
    }
}

// --- limits ----------------------------------------------------------------------------------------------------

bool Engine::on_interrupt(JSContext* cx) {
    Engine& e = self(cx);
    if (!e.current_) return true;
    return e.check_limits(*e.current_);
}

bool Engine::check_limits(Run& run) {
    if (run.breach) return false;
    const Limits& limits = run.input.limits;
    const std::int64_t now = steady_ns();
    if (now >= run.deadline_ns) {
        breach(run, "time_limit", fmt::format("the run exceeded its time limit of {} ms", limits.timeout_ms));
        return false;
    }
    const std::int64_t cpu = run.cpu_ns + (thread_cpu_ns() - slice_cpu_start_);
    if (cpu >= limits.cpu_ms * kMs) {
        breach(run, "time_limit", fmt::format("the run exceeded its CPU time limit of {} ms", limits.cpu_ms));
        return false;
    }
    const auto max_bytes = static_cast<std::uint64_t>(limits.memory_mb) * kMb;
    const std::uint64_t used = zone_bytes(run);
    if (used > max_bytes) {
        breach(run, "memory_limit",
               fmt::format("the run exceeded its memory limit of {} MB (used {} MB)", limits.memory_mb, used / kMb));
        return false;
    }
    return true;
}

std::uint64_t Engine::zone_bytes(Run& run) {
    // SpiderMonkey's own accounting of the run's zone (each run has its own): GC heap plus the malloc memory
    // owned by its cells (array elements, string characters, typed array and ArrayBuffer data). Read through the
    // engine's memory-info object, created in the run's realm so its getters see the run's zone.
    JSContext* cx = cx_;
    if (!run.memory.get()) {
        JS::RootedObject info(cx, js::gc::NewMemoryInfoObject(cx));
        JS::RootedValue zone(cx);
        if (!info || !JS_GetProperty(cx, info, "zone", &zone) || !zone.isObject()) {
            JS_ClearPendingException(cx);
            return js::GetGCHeapUsageForObjectZone(run.global.get());
        }
        run.memory = &zone.toObject();
    }
    JS::RootedObject zone(cx, run.memory.get());
    JS::RootedValue gc(cx), malloced(cx);
    if (!JS_GetProperty(cx, zone, "gcBytes", &gc) || !JS_GetProperty(cx, zone, "mallocBytes", &malloced) ||
        !gc.isNumber() || !malloced.isNumber()) {
        JS_ClearPendingException(cx);
        return js::GetGCHeapUsageForObjectZone(run.global.get());
    }
    return static_cast<std::uint64_t>(gc.toNumber()) + static_cast<std::uint64_t>(malloced.toNumber());
}

void Engine::breach(Run& run, std::string code, std::string message) {
    if (run.breach) return;
    log(run, "[jail] " + message);
    run.breach = RunError{std::move(code), std::move(message)};
}

void Engine::log(Run& run, std::string line) {
    if (run.logs_truncated) return;
    if (run.logs.size() + 1 >= options_.max_log_lines || run.log_bytes + line.size() > options_.max_log_bytes) {
        run.logs.push_back(fmt::format("[jail] log truncated: at most {} lines and {} bytes are kept",
                                       options_.max_log_lines, options_.max_log_bytes));
        run.logs_truncated = true;
        return;
    }
    run.log_bytes += line.size();
    run.logs.push_back(std::move(line));
}

// --- tasks -----------------------------------------------------------------------------------------------------

void Engine::handle(Task task) {
    std::visit(
        [this](auto&& t) {
            using T = std::decay_t<decltype(t)>;
            if constexpr (std::is_same_v<T, StartRun>) {
                start(std::move(t));
            } else if constexpr (std::is_same_v<T, CheckCode>) {
                check(std::move(t));
            } else {
                fetch_done(std::move(t));
            }
        },
        std::move(task));
}

void Engine::stop(std::deque<Task> queued) {
    for (auto& task : queued) {
        if (auto* run = std::get_if<StartRun>(&task)) {
            auto out = failed("time_limit", "the jail is stopping");
            load_.fetch_sub(1, std::memory_order_relaxed);
            run->done(std::move(out));
        } else if (auto* check = std::get_if<CheckCode>(&task)) {
            check->done(CompileError{0, 0, "the jail is stopping"});
        }
    }
    while (!runs_.empty()) {
        Run& run = *runs_.begin()->second;
        breach(run, "time_limit", "the jail is stopping");
        finish(run, failed(run.breach->code, run.breach->message));
    }
}

void Engine::start(StartRun task) {
    auto owned = std::make_unique<Run>();
    Run& run = *owned;
    run.id = next_run_id_++;
    run.input = std::move(task.input);
    run.done = std::move(task.done);
    run.started_ns = steady_ns();
    run.deadline_ns = task.submitted_ns + run.input.limits.timeout_ms * kMs;
    runs_.emplace(run.id, std::move(owned));

    if (run.started_ns >= run.deadline_ns) {
        breach(run, "time_limit",
               fmt::format("the run waited for a jail thread longer than its time limit of {} ms",
                           run.input.limits.timeout_ms));
        finish(run, failed(run.breach->code, run.breach->message));
        return;
    }
    std::optional<CompileError> compile_error;
    JS::Stencil* stencil = run.input.script ? stencil_for(*run.input.script, compile_error) : nullptr;
    if (!stencil) {
        std::string message = compile_error ? fmt::format("line {}: {}", compile_error->line, compile_error->message)
                                            : "no code";
        finish(run, failed("js_error", message));
        return;
    }
    JS::RealmOptions realm_options;
    realm_options.creationOptions().setNewCompartmentAndZone();
    JSObject* global = JS_NewGlobalObject(cx_, &kGlobalClass, nullptr, JS::DontFireOnNewGlobalHook, realm_options);
    if (!global) {
        JS_ClearPendingException(cx_);
        finish(run, failed("memory_limit", "could not create the sandbox (out of memory)"));
        return;
    }
    run.global = global;
    RefPtr<JS::Stencil> user_stencil(stencil);
    step(run, [this, &run, user_stencil]() -> bool {
        JSContext* cx = cx_;
        JS::RootedObject global(cx, run.global.get());
        static const JSFunctionSpec natives[] = {
            JS_FN("log", &Engine::native_log, 1, 0),
            JS_FN("sleep", &Engine::native_sleep, 1, 0),
            JS_FN("fetch", &Engine::native_fetch, 4, 0),
            JS_FN("randomUUID", &Engine::native_random_uuid, 0, 0),
            JS_FN("randomHex", &Engine::native_random_hex, 1, 0),
            JS_FS_END,
        };
        JS::RootedObject jail(cx, JS_NewPlainObject(cx));
        if (!jail || !JS_DefineFunctions(cx, jail, natives) ||
            !JS_DefineProperty(cx, global, "__jail", jail, JSPROP_ENUMERATE)) {
            return false;
        }
        JS::InstantiateOptions instantiate;
        JS::RootedScript prelude(cx, JS::InstantiateGlobalStencil(cx, instantiate, prelude_.get()));
        JS::RootedValue ignored(cx);
        if (!prelude || !JS_ExecuteScript(cx, prelude, &ignored)) return false;
        JS::RootedScript script(cx, JS::InstantiateGlobalStencil(cx, instantiate, user_stencil.get()));
        if (!script || !JS_ExecuteScript(cx, script, &ignored)) return false;

        JS::RootedValue main(cx);
        if (!JS_GetProperty(cx, global, "main", &main)) return false;
        if (!main.isObject()) {
            // `const main = async (ctx) => ...` is a lexical binding, not a global property: look it up by name.
            JS::RootedScript lookup(cx, JS::InstantiateGlobalStencil(cx, instantiate, lookup_.get()));
            if (!lookup || !JS_ExecuteScript(cx, lookup, &main)) return false;
        }
        if (!main.isObject() || !JS::IsCallable(&main.toObject())) {
            JS_ReportErrorASCII(cx, "the action must define function main(ctx)");
            return false;
        }
        std::string ctx_json = "{\"params\":" + json::serialize(run.input.params) +
                               ",\"state\":" + json::serialize(run.input.state) +
                               ",\"client\":" + json::serialize(run.input.client) +
                               ",\"instanceSettings\":" + json::serialize(run.input.instance_settings) + "}";
        JS::RootedString ctx_text(cx, new_string(ctx_json));
        JS::RootedValueArray<1> args(cx);
        if (!ctx_text || !JS_ParseJSON(cx, ctx_text, args[0])) return false;
        JS::RootedValue result(cx);
        if (!JS::Call(cx, JS::UndefinedHandleValue, main, args, &result)) return false;
        if (result.isObject() && JS::IsPromiseObject(JS::RootedObject(cx, &result.toObject()))) {
            run.promise = &result.toObject();
        } else {
            run.result = result;
            run.has_result = true;
        }
        return true;
    });
}

void Engine::check(CheckCode task) {
    std::optional<CompileError> error;
    RefPtr<JS::Stencil> stencil = compile(task.code, "action.js", error);
    if (stencil) {
        static const std::regex main_token(R"(\bmain\b)");
        if (!std::regex_search(task.code, main_token)) {
            error = CompileError{1, 1, "the action must define function main(ctx)"};
        }
    }
    task.done(std::move(error));
}

void Engine::fetch_done(FetchDone task) {
    auto it = runs_.find(task.run_id);
    if (it == runs_.end()) return;  // the run already ended (time limit, failure): nothing waits for this
    Run& run = *it->second;
    auto pending = run.pending.find(task.request_id);
    if (pending == run.pending.end()) return;
    FetchResponse& response = task.response;
    if (response.error && response.error->code == kFetchRefusedByGuard) {
        run.pending.erase(pending);
        breach(run, "fetch_refused", "fetch refused: " + response.error->message);
        finish(run, failed(run.breach->code, run.breach->message));
        return;
    }
    step(run, [this, &run, &task]() -> bool {
        JSContext* cx = cx_;
        auto entry = run.pending.find(task.request_id);
        JS::RootedObject promise(cx, entry->second.get());
        run.pending.erase(entry);
        FetchResponse& r = task.response;
        if (r.error) {
            JS_ReportErrorUTF8(cx, "fetch failed (%s): %s", r.error->code.c_str(), r.error->message.c_str());
            JS::RootedValue error(cx);
            if (!JS_GetPendingException(cx, &error)) return false;
            JS_ClearPendingException(cx);
            return JS::RejectPromise(cx, promise, error);
        }
        JS::RootedObject raw(cx, JS_NewPlainObject(cx));
        if (!raw) return false;
        JS::RootedValue value(cx, JS::Int32Value(r.status));
        if (!JS_SetProperty(cx, raw, "status", value)) return false;
        JS::RootedString url(cx, new_string(r.url));
        JS::RootedString body(cx, new_string(sanitize_utf8(r.body)));
        if (!url || !body) return false;
        value.setString(url);
        if (!JS_SetProperty(cx, raw, "url", value)) return false;
        value.setString(body);
        if (!JS_SetProperty(cx, raw, "body", value)) return false;
        JS::RootedObject headers(cx, JS::NewArrayObject(cx, r.headers.size()));
        if (!headers) return false;
        for (std::size_t i = 0; i < r.headers.size(); ++i) {
            JS::RootedObject pair(cx, JS::NewArrayObject(cx, 2));
            JS::RootedString name(cx, new_string(sanitize_utf8(r.headers[i].first)));
            JS::RootedString text(cx, new_string(sanitize_utf8(r.headers[i].second)));
            if (!pair || !name || !text || !JS_SetElement(cx, pair, 0, name) || !JS_SetElement(cx, pair, 1, text) ||
                !JS_SetElement(cx, headers, static_cast<std::uint32_t>(i), pair)) {
                return false;
            }
        }
        value.setObject(*headers);
        if (!JS_SetProperty(cx, raw, "headers", value)) return false;
        value.setObject(*raw);
        return JS::ResolvePromise(cx, promise, value);
    });
}

void Engine::timer_fired(const Timer& timer) {
    auto it = runs_.find(timer.run_id);
    if (it == runs_.end()) return;
    Run& run = *it->second;
    if (!run.pending.count(timer.pending_id)) return;
    step(run, [this, &run, &timer]() -> bool {
        auto entry = run.pending.find(timer.pending_id);
        JS::RootedObject promise(cx_, entry->second.get());
        run.pending.erase(entry);
        return JS::ResolvePromise(cx_, promise, JS::UndefinedHandleValue);
    });
}

void Engine::on_clock() {
    const std::int64_t now = steady_ns();
    // Deadlines first: when the thread was late (a loaded machine), a timer capped at the deadline and the
    // deadline itself fall due together, and the breach must win over the timer.
    for (auto it = runs_.begin(); it != runs_.end();) {
        Run& run = *it->second;
        ++it;  // finish() erases the run
        if (run.deadline_ns <= now) {
            breach(run, "time_limit",
                   fmt::format("the run exceeded its time limit of {} ms while waiting for fetch or a timer",
                               run.input.limits.timeout_ms));
            finish(run, failed(run.breach->code, run.breach->message));
        }
    }
    while (!timers_.empty() && timers_.begin()->first <= now) {
        Timer timer = timers_.begin()->second;
        timers_.erase(timers_.begin());
        timer_fired(timer);  // ignores timers of runs that have finished
    }
}

std::int64_t Engine::next_wake() const {
    std::int64_t next = steady_ns() + 1000 * kMs;
    if (!timers_.empty()) next = std::min(next, timers_.begin()->first);
    for (const auto& [id, run] : runs_) next = std::min(next, run->deadline_ns);
    return next;
}

// --- running JavaScript ----------------------------------------------------------------------------------------

template <typename F>
void Engine::step(Run& run, F&& fn) {
    std::optional<RunOutput> out;
    {
        Enter enter(*this, run);
        bool ok = fn() && drain(run);
        if (!ok || run.breach) {
            out = failure(run);
        } else {
            out = settle(run);
        }
    }
    if (out) finish(run, std::move(*out));
}

bool Engine::drain(Run& run) {
    JS::RootedObject job(cx_);
    JS::RootedValue ignored(cx_);
    while (!run.jobs.empty() && !run.breach) {
        job = run.jobs.front().get();
        run.jobs.pop_front();
        if (!JS::Call(cx_, JS::UndefinedHandleValue, job, JS::HandleValueArray::empty(), &ignored)) return false;
    }
    return !run.breach;
}

std::optional<RunOutput> Engine::settle(Run& run) {
    if (run.has_result) {
        JS::RootedValue value(cx_, run.result.get());
        return convert_result(run, value);
    }
    JS::RootedObject promise(cx_, run.promise.get());
    if (!promise) return failed("js_error", "main() did not run");
    switch (JS::GetPromiseState(promise)) {
        case JS::PromiseState::Fulfilled: {
            JS::RootedValue value(cx_, JS::GetPromiseResult(promise));
            return convert_result(run, value);
        }
        case JS::PromiseState::Rejected: {
            JS::RootedValue reason(cx_, JS::GetPromiseResult(promise));
            JS::RootedObject stack(cx_);
            if (reason.isObject()) stack = JS::ExceptionStackOrNull(JS::RootedObject(cx_, &reason.toObject()));
            std::string message = describe(reason, stack);
            if (run.breach) return failed(run.breach->code, run.breach->message);
            log(run, "[jail] " + message);
            return failed("js_error", message);
        }
        case JS::PromiseState::Pending:
            if (run.pending.empty()) {
                std::string message =
                    "main() returned a promise that can never settle (nothing awaited: no fetch or timer in flight)";
                log(run, "[jail] " + message);
                return failed("js_error", message);
            }
            return std::nullopt;  // waits for fetch or a timer
    }
    return std::nullopt;
}

RunOutput Engine::failure(Run& run) {
    if (run.breach) {
        JS_ClearPendingException(cx_);
        return failed(run.breach->code, run.breach->message);
    }
    if (!JS_IsExceptionPending(cx_)) {
        // Uncatchable without a breach of ours: SpiderMonkey ran out of memory.
        breach(run, "memory_limit", "the run ran out of memory");
        return failed(run.breach->code, run.breach->message);
    }
    JS::ExceptionStack exception(cx_);
    if (!JS::StealPendingExceptionStack(cx_, &exception)) {
        JS_ClearPendingException(cx_);
        breach(run, "memory_limit", "the run ran out of memory");
        return failed(run.breach->code, run.breach->message);
    }
    JS::RootedValue value(cx_, exception.exception());
    if (value.isString()) {
        std::string text = to_utf8(value.toString());
        if (text == "out of memory") {
            breach(run, "memory_limit", fmt::format("the run ran out of memory (limit {} MB)", run.input.limits.memory_mb));
            return failed(run.breach->code, run.breach->message);
        }
    }
    std::string message = describe(value, exception.stack());
    if (run.breach) return failed(run.breach->code, run.breach->message);
    if (message.find("allocation size overflow") != std::string::npos) {
        breach(run, "memory_limit", "the run tried to allocate more than the engine allows: " + message);
        return failed(run.breach->code, run.breach->message);
    }
    log(run, "[jail] " + message);
    return failed("js_error", message);
}

std::string Engine::describe(JS::HandleValue exception, JS::HandleObject stack) {
    std::string text;
    JS::ExceptionStack exn(cx_, exception, stack);
    bool is_error = exception.isObject() && JS_ErrorFromException(cx_, JS::RootedObject(cx_, &exception.toObject()));
    if (!is_error && exception.isObject()) {
        // A thrown plain object: show it as JSON when it has a JSON form (getters run under the run's limits).
        std::string json_text;
        char16_t high = 0;
        struct Sink {
            std::string* out;
            char16_t* high;
        } sink{&json_text, &high};
        JS::RootedValue copy(cx_, exception);
        auto write = [](const char16_t* buf, std::uint32_t len, void* data) -> bool {
            auto* s = static_cast<Sink*>(data);
            utf16_to_utf8(buf, len, *s->out, *s->high);
            return s->out->size() <= kMaxErrorBytes;
        };
        if (JS_Stringify(cx_, &copy, nullptr, JS::NullHandleValue, write, &sink) && !json_text.empty()) {
            text = "uncaught exception: " + json_text;
        }
        JS_ClearPendingException(cx_);
    }
    if (text.empty()) {
        JS::ErrorReportBuilder report(cx_);
        if (report.init(cx_, exn, JS::ErrorReportBuilder::NoSideEffects)) {
            text = report.toStringResult().c_str() ? report.toStringResult().c_str() : "";
            if (is_error && report.report() && report.report()->lineno > 0) {
                text += fmt::format(" (line {})", report.report()->lineno);
            }
        } else {
            JS_ClearPendingException(cx_);
            text = "uncaught exception";
        }
    }
    return truncate(std::move(text), kMaxErrorBytes);
}

RunOutput Engine::convert_result(Run& run, JS::HandleValue value) {
    const std::size_t max_bytes = static_cast<std::size_t>(run.input.limits.output_kb) * 1024;
    struct Sink {
        std::string out;
        char16_t high = 0;
        std::size_t max;
        bool too_large = false;
    } sink{{}, 0, max_bytes, false};
    auto write = [](const char16_t* buf, std::uint32_t len, void* data) -> bool {
        auto* s = static_cast<Sink*>(data);
        utf16_to_utf8(buf, len, s->out, s->high);
        if (s->out.size() > s->max) {
            s->too_large = true;
            return false;
        }
        return true;
    };
    JS::RootedValue copy(cx_, value);
    const char* shape = "main() must return an object like {event: \"name\", state: {...}}";
    if (!value.isObject()) return failed("bad_result", std::string(shape));
    if (!JS_Stringify(cx_, &copy, nullptr, JS::NullHandleValue, write, &sink)) {
        if (run.breach) return failure(run);
        if (sink.too_large) {
            JS_ClearPendingException(cx_);
            std::string message = fmt::format("the result is larger than {} KB", run.input.limits.output_kb);
            log(run, "[jail] " + message);
            return failed("bad_result", message);
        }
        if (!JS_IsExceptionPending(cx_)) return failure(run);
        JS::ExceptionStack exception(cx_);
        if (!JS::StealPendingExceptionStack(cx_, &exception)) return failure(run);
        std::string message = "the result is not JSON-serialisable: " + describe(exception.exception(), exception.stack());
        log(run, "[jail] " + message);
        return failed("bad_result", message);
    }
    boost::system::error_code ec;
    json::value parsed = json::parse(sink.out, ec);
    if (ec || !parsed.is_object()) return failed("bad_result", std::string(shape));
    json::object& object = parsed.as_object();
    const json::value* event = object.if_contains("event");
    if (!event || !event->is_string() || event->as_string().empty() || event->as_string().size() > kMaxEventBytes) {
        std::string message = fmt::format("{}; 'event' must be a non-empty string of at most {} bytes", shape,
                                          kMaxEventBytes);
        log(run, "[jail] " + message);
        return failed("bad_result", message);
    }
    RunOutput out;
    out.event = std::string(event->as_string());
    if (const json::value* state = object.if_contains("state"); state && !state->is_null()) {
        if (!state->is_object()) {
            std::string message = "'state' in the result of main() must be an object";
            log(run, "[jail] " + message);
            return failed("bad_result", message);
        }
        out.state = state->as_object();
    }
    return out;
}

void Engine::finish(Run& run, RunOutput out) {
    const bool memory = out.error && out.error->code == "memory_limit";
    out.ms = double(steady_ns() - run.started_ns) / 1e6;
    out.logs = std::move(run.logs);
    auto done = std::move(run.done);
    const std::uint64_t id = run.id;
    counters_.runs.fetch_add(1, std::memory_order_relaxed);
    if (out.error) counters_.failed.fetch_add(1, std::memory_order_relaxed);
    runs_.erase(id);  // drops the run's roots: its realm becomes garbage
    load_.fetch_sub(1, std::memory_order_relaxed);
    ++runs_since_gc_;
    if (memory || runs_since_gc_ >= kRunsPerGc) {
        runs_since_gc_ = 0;
        counters_.gcs.fetch_add(1, std::memory_order_relaxed);
        JS_GC(cx_);
    } else {
        JS_MaybeGC(cx_);
    }
    done(std::move(out));
}

// --- compilation -------------------------------------------------------------------------------------------------

JS::Stencil* Engine::stencil_for(const Script& script, std::optional<CompileError>& error) {
    if (auto it = cache_index_.find(script.key); it != cache_index_.end()) {
        cache_.splice(cache_.begin(), cache_, it->second);
        counters_.cache_hits.fetch_add(1, std::memory_order_relaxed);
        return it->second->stencil.get();
    }
    std::string filename = script.name.empty() ? "action.js" : script.name + ".js";
    RefPtr<JS::Stencil> stencil = compile(script.code, filename.c_str(), error);
    if (!stencil) return nullptr;
    counters_.compiled.fetch_add(1, std::memory_order_relaxed);
    cache_.push_front(StencilEntry{script.key, stencil});
    cache_index_[script.key] = cache_.begin();
    while (cache_.size() > std::max<std::size_t>(1, options_.compiled_cache_per_thread)) {
        cache_index_.erase(cache_.back().key);
        cache_.pop_back();
    }
    return stencil.get();
}

RefPtr<JS::Stencil> Engine::compile(std::string_view code, const char* filename, std::optional<CompileError>& error,
                                    bool want_value) {
    JSAutoRealm realm(cx_, compile_global_->get());
    JS::CompileOptions options(cx_);
    options.setFileAndLine(filename, 1).setNoScriptRval(!want_value);
    JS::SourceText<mozilla::Utf8Unit> source;
    if (!source.init(cx_, code.data(), code.size(), JS::SourceOwnership::Borrowed)) {
        error = take_compile_error();
        return nullptr;
    }
    RefPtr<JS::Stencil> stencil = JS::CompileGlobalScriptToStencil(cx_, options, source);
    if (!stencil) error = take_compile_error();
    return stencil;
}

std::optional<CompileError> Engine::take_compile_error() {
    CompileError error{1, 1, "the code does not compile"};
    JS::ExceptionStack exception(cx_);
    if (JS_IsExceptionPending(cx_) && JS::StealPendingExceptionStack(cx_, &exception)) {
        JS::ErrorReportBuilder report(cx_);
        if (report.init(cx_, exception, JS::ErrorReportBuilder::NoSideEffects) && report.report()) {
            error.line = static_cast<int>(report.report()->lineno);
            error.column = static_cast<int>(report.report()->column) + 1;
            if (report.toStringResult().c_str()) error.message = truncate(report.toStringResult().c_str(), kMaxErrorBytes);
        }
    }
    JS_ClearPendingException(cx_);
    return error;
}

// --- strings -----------------------------------------------------------------------------------------------------

std::string Engine::to_utf8(JSString* str) {
    JS::RootedString rooted(cx_, str);
    JSLinearString* linear = JS_EnsureLinearString(cx_, rooted);
    if (!linear) {
        JS_ClearPendingException(cx_);
        return {};
    }
    std::string out(JS::GetDeflatedUTF8StringLength(linear), '\0');
    std::size_t written = JS::DeflateStringToUTF8Buffer(linear, mozilla::Span<char>(out.data(), out.size()));
    out.resize(written);
    return out;
}

JSString* Engine::new_string(std::string_view utf8) {
    return JS_NewStringCopyUTF8N(cx_, JS::UTF8Chars(utf8.data(), utf8.size()));
}

// --- natives -----------------------------------------------------------------------------------------------------

bool Engine::native_log(JSContext* cx, unsigned argc, JS::Value* vp) {
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    Engine& e = self(cx);
    args.rval().setUndefined();
    if (!e.current_) return true;
    JS::RootedString text(cx, JS::ToString(cx, args.get(0)));
    if (!text) return false;
    if (e.current_->logs_truncated) return true;
    e.log(*e.current_, e.to_utf8(text));
    return true;
}

bool Engine::native_sleep(JSContext* cx, unsigned argc, JS::Value* vp) {
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    Engine& e = self(cx);
    Run* run = e.current_;
    if (!run) return false;
    double ms = 0;
    if (!JS::ToNumber(cx, args.get(0), &ms)) return false;
    if (!(ms >= 0)) ms = 0;
    if (run->timers >= e.options_.max_timers) {
        JS_ReportErrorASCII(cx, "setTimeout: at most %u timers per run", e.options_.max_timers);
        return false;
    }
    JS::RootedObject promise(cx, JS::NewPromiseObject(cx, nullptr));
    if (!promise) return false;
    ++run->timers;
    const std::uint64_t id = run->next_pending++;
    run->pending.emplace(id, promise.get());
    const double capped = std::min(ms, double(run->input.limits.timeout_ms) + 1);
    e.timers_.emplace(steady_ns() + static_cast<std::int64_t>(capped * double(kMs)), Timer{run->id, id});
    args.rval().setObject(*promise);
    return true;
}

bool Engine::native_fetch(JSContext* cx, unsigned argc, JS::Value* vp) {
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    Engine& e = self(cx);
    Run* run = e.current_;
    if (!run) return false;
    if (run->fetches >= run->input.limits.max_fetches) {
        e.breach(*run, "fetch_refused",
                 fmt::format("more than {} fetch() calls in one run", run->input.limits.max_fetches));
        return false;  // uncatchable: the run ends
    }
    FetchRequest request;
    JS::RootedString text(cx, JS::ToString(cx, args.get(0)));
    if (!text) return false;
    request.url = e.to_utf8(text);
    if (request.url.size() > kMaxUrlBytes) {
        JS_ReportErrorASCII(cx, "fetch: the URL is longer than %zu bytes", kMaxUrlBytes);
        return false;
    }
    text = JS::ToString(cx, args.get(1));
    if (!text) return false;
    request.method = e.to_utf8(text);
    if (request.method.empty() || request.method.size() > 16 ||
        request.method.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos) {
        JS_ReportErrorASCII(cx, "fetch: invalid method");
        return false;
    }
    if (args.get(2).isObject()) {
        JS::RootedObject list(cx, &args.get(2).toObject());
        std::uint32_t length = 0;
        if (!JS::GetArrayLength(cx, list, &length)) return false;
        if (length > kMaxHeaders) {
            JS_ReportErrorASCII(cx, "fetch: at most %zu headers", kMaxHeaders);
            return false;
        }
        JS::RootedValue item(cx), part(cx);
        for (std::uint32_t i = 0; i < length; ++i) {
            if (!JS_GetElement(cx, list, i, &item)) return false;
            if (!item.isObject()) continue;
            JS::RootedObject pair(cx, &item.toObject());
            std::string kv[2];
            for (std::uint32_t k = 0; k < 2; ++k) {
                if (!JS_GetElement(cx, pair, k, &part)) return false;
                JS::RootedString s(cx, JS::ToString(cx, part));
                if (!s) return false;
                kv[k] = e.to_utf8(s);
            }
            if (kv[0].size() + kv[1].size() > kMaxHeaderBytes ||
                kv[0].find_first_of("\r\n:") != std::string::npos || kv[1].find_first_of("\r\n") != std::string::npos) {
                JS_ReportErrorASCII(cx, "fetch: invalid header");
                return false;
            }
            request.headers.emplace_back(std::move(kv[0]), std::move(kv[1]));
        }
    }
    if (args.get(3).isString()) {
        JS::RootedString body(cx, args.get(3).toString());
        if (JS_GetStringLength(body) > e.options_.max_fetch_request_bytes) {
            JS_ReportErrorASCII(cx, "fetch: the body is larger than %zu bytes", e.options_.max_fetch_request_bytes);
            return false;
        }
        request.body = e.to_utf8(body);
        if (request.body.size() > e.options_.max_fetch_request_bytes) {
            JS_ReportErrorASCII(cx, "fetch: the body is larger than %zu bytes", e.options_.max_fetch_request_bytes);
            return false;
        }
    }
    JS::RootedObject promise(cx, JS::NewPromiseObject(cx, nullptr));
    if (!promise) return false;
    ++run->fetches;
    const std::uint64_t id = run->next_pending++;
    run->pending.emplace(id, promise.get());
    request.timeout_ms = std::max<std::int64_t>(1, (run->deadline_ns - steady_ns()) / kMs);
    request.max_response_bytes = e.options_.max_fetch_response_bytes;
    std::weak_ptr<Mailbox> mailbox = e.mailbox_;
    const std::uint64_t run_id = run->id;
    try {
        e.fetcher_->fetch(std::move(request), [mailbox, run_id, id](FetchResponse response) {
            if (auto box = mailbox.lock()) box->post(FetchDone{run_id, id, std::move(response)});
        });
    } catch (const std::exception& ex) {
        run->pending.erase(id);
        JS_ReportErrorUTF8(cx, "fetch failed: %s", ex.what());
        return false;
    }
    args.rval().setObject(*promise);
    return true;
}

bool Engine::native_random_uuid(JSContext* cx, unsigned argc, JS::Value* vp) {
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != static_cast<ssize_t>(sizeof b)) {
        JS_ReportErrorASCII(cx, "randomUUID: no randomness available");
        return false;
    }
    b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
    b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
    char text[37];
    std::snprintf(text, sizeof text, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                  b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    JSString* str = JS_NewStringCopyZ(cx, text);
    if (!str) return false;
    args.rval().setString(str);
    return true;
}

bool Engine::native_random_hex(JSContext* cx, unsigned argc, JS::Value* vp) {
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    double n = 0;
    if (!JS::ToNumber(cx, args.get(0), &n)) return false;
    if (!(n >= 0 && n <= 65536)) {
        JS_ReportErrorASCII(cx, "at most 65536 random bytes");
        return false;
    }
    std::string bytes(static_cast<std::size_t>(n), '\0');
    std::size_t got = 0;
    while (got < bytes.size()) {
        ssize_t r = getrandom(bytes.data() + got, bytes.size() - got, 0);
        if (r <= 0) {
            JS_ReportErrorASCII(cx, "no randomness available");
            return false;
        }
        got += static_cast<std::size_t>(r);
    }
    static const char* digits = "0123456789abcdef";
    std::string hex;
    hex.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) {
        hex.push_back(digits[c >> 4]);
        hex.push_back(digits[c & 15]);
    }
    JSString* str = JS_NewStringCopyN(cx, hex.data(), hex.size());
    if (!str) return false;
    args.rval().setString(str);
    return true;
}

// --- JailThread --------------------------------------------------------------------------------------------------

JailThread::JailThread(const JailOptions& options, std::shared_ptr<Fetcher> fetcher, Counters& counters)
    : options_(options), fetcher_(std::move(fetcher)), counters_(counters), mailbox_(std::make_shared<Mailbox>()) {
    // A pthread rather than std::thread: SpiderMonkey needs a known, generous stack (see kNativeStackQuota).
    struct Start {
        JailThread* self;
        std::promise<std::exception_ptr> started;
    };
    Start start{this, {}};
    auto ready = start.started.get_future();
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, kThreadStackBytes);
    auto entry = [](void* arg) -> void* {
        auto* s = static_cast<Start*>(arg);
        s->self->main(s->started);
        return nullptr;
    };
    int rc = pthread_create(&thread_, &attr, entry, &start);
    pthread_attr_destroy(&attr);
    if (rc != 0) throw std::runtime_error("cannot start a jail thread");
    if (auto error = ready.get()) {
        pthread_join(thread_, nullptr);
        std::rethrow_exception(error);
    }
}

void JailThread::main(std::promise<std::exception_ptr>& started) {
    pthread_setname_np(pthread_self(), "parley-jail");
    std::unique_ptr<Engine> engine;
    try {
        engine = std::make_unique<Engine>(options_, fetcher_, counters_, mailbox_, load_);
    } catch (...) {
        started.set_value(std::current_exception());
        return;
    }
    {
        std::lock_guard lock(engine_mutex_);
        engine_ = engine.get();
    }
    started.set_value(nullptr);  // `started` is gone after this line
    while (true) {
        auto tasks = mailbox_->wait(engine->next_wake());
        if (mailbox_->closed()) {
            for (auto& task : mailbox_->wait(0)) tasks.push_back(std::move(task));
            engine->stop(std::move(tasks));
            break;
        }
        for (auto& task : tasks) engine->handle(std::move(task));
        engine->on_clock();
    }
    {
        std::lock_guard lock(engine_mutex_);
        engine_ = nullptr;
    }
    engine.reset();
}

JailThread::~JailThread() {
    mailbox_->close();
    pthread_join(thread_, nullptr);
}

void JailThread::post(Task task) {
    const bool is_run = std::holds_alternative<StartRun>(task);
    if (is_run) load_.fetch_add(1, std::memory_order_relaxed);
    auto refused = mailbox_->post(std::move(task));
    if (!refused) return;
    // Only while the sandbox is being destroyed.
    if (auto* run = std::get_if<StartRun>(&*refused)) {
        load_.fetch_sub(1, std::memory_order_relaxed);
        run->done(failed("time_limit", "the jail is stopping"));
    } else if (auto* check = std::get_if<CheckCode>(&*refused)) {
        check->done(CompileError{0, 0, "the jail is stopping"});
    }
}

void JailThread::request_interrupt() {
    std::lock_guard lock(engine_mutex_);
    if (engine_ && engine_->executing()) JS_RequestInterruptCallback(engine_->cx());
}

}  // namespace parley::jail::internal
