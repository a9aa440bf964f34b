// The sandbox end to end on real SpiderMonkey contexts: the JavaScript surface, limits, and the security cases
// of issue 5 (each contained, with a clear error, and the engine healthy afterwards).
#include "jail/sandbox.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "jail/internal/test_fetcher.h"
#include "jail/internal/test_server.h"

namespace parley::jail {
namespace {

using namespace std::chrono_literals;

std::shared_ptr<const Script> script(std::string code, std::string name = "test_action") {
    static std::atomic<int> seq{0};
    return std::make_shared<Script>(Script{"v" + std::to_string(++seq), std::move(name), std::move(code)});
}

class SandboxTest : public ::testing::Test {
protected:
    static JailOptions small_options(unsigned threads = 2) {
        JailOptions o;
        o.threads = threads;
        o.defaults = Limits{3'000, 1'000, 32, 64, 5};
        return o;
    }

    void make(JailOptions options = small_options(), std::shared_ptr<Fetcher> fetcher = nullptr) {
        sandbox_.reset();
        sandbox_ = std::make_unique<Sandbox>(std::move(options), std::move(fetcher));
    }

    RunInput input(std::string code, json::object params = {}) {
        RunInput in;
        in.script = script(std::move(code));
        in.params = std::move(params);
        in.limits = sandbox_->options().defaults;
        return in;
    }

    std::future<RunOutput> start(RunInput in) {
        auto promise = std::make_shared<std::promise<RunOutput>>();
        auto future = promise->get_future();
        sandbox_->run(std::move(in), [promise](RunOutput out) { promise->set_value(std::move(out)); });
        return future;
    }

    RunOutput run(RunInput in) {
        auto future = start(std::move(in));
        EXPECT_EQ(future.wait_for(20s), std::future_status::ready);
        return future.get();
    }
    RunOutput run(std::string code, json::object params = {}) { return run(input(std::move(code), std::move(params))); }

    /// The engine still answers a trivial run correctly.
    void expect_healthy() {
        auto out = run("function main(ctx) { return {event: 'alive', state: {x: ({}).leak ?? null}}; }");
        ASSERT_FALSE(out.error) << out.error->message;
        EXPECT_EQ(out.event, "alive");
        EXPECT_EQ(out.state.at("x"), nullptr);
    }

    static std::string code_of(const RunOutput& out) { return out.error ? out.error->code : "none"; }
    static std::string all_logs(const RunOutput& out) {
        std::string s;
        for (const auto& l : out.logs) s += l + "\n";
        return s;
    }

    void SetUp() override { make(); }

    std::unique_ptr<Sandbox> sandbox_;
};

// --- the JavaScript surface ------------------------------------------------------------------------------------

TEST_F(SandboxTest, PlainAndAsyncMainReceiveCtx) {
    RunInput in = input(R"js(
        function main(ctx) {
          return {event: 'found', state: {n: ctx.params.n + 1, seen: ctx.state.seen, client: ctx.client.name,
                                          setting: ctx.instanceSettings.crm_url}};
        })js",
                        json::object{{"n", 41}});
    in.state = json::object{{"seen", true}};
    in.client = json::object{{"name", "Olena"}};
    in.instance_settings = json::object{{"crm_url", "https://crm.example"}};
    auto out = run(std::move(in));
    ASSERT_FALSE(out.error) << out.error->message;
    EXPECT_EQ(out.event, "found");
    EXPECT_EQ(json::serialize(out.state), R"({"n":42,"seen":true,"client":"Olena","setting":"https://crm.example"})");
    EXPECT_GE(out.ms, 0.0);

    out = run(R"js(
        async function main(ctx) {
          const wait = (ms) => new Promise((r) => setTimeout(r, ms));
          await wait(5);
          const x = await Promise.all([1, Promise.resolve(2)]);
          return {event: 'done', state: {sum: x[0] + x[1]}};
        })js");
    ASSERT_FALSE(out.error) << out.error->message;
    EXPECT_EQ(out.event, "done");
    EXPECT_EQ(out.state.at("sum"), 3);
}

TEST_F(SandboxTest, ModernJavaScriptAndBuiltins) {
    auto out = run(R"js(
        class Order {
          #id; static count = 0;
          static { Order.count = 1; }
          constructor(id) { this.#id = id; }
          get id() { return this.#id; }
        }
        const main = async (ctx) => {
          const o = new Order('A-1');
          const arr = [1, 2, 3];
          const u = new URL('https://api.example.com:443/v1/orders/../items?q=a b#top');
          u.searchParams.append('page', '2');
          const rel = new URL('../x?y=1', 'http://h.example/a/b/c');
          const bytes = new TextEncoder().encode('Привіт');
          const text = new TextDecoder().decode(bytes);
          const uuid = crypto.randomUUID();
          const d = new Date(Date.UTC(2024, 0, 2));
          return {event: 'ok', state: {
            id: o.id, count: Order.count, last: arr.at(-1), own: Object.hasOwn({a: 1}, 'a'),
            opt: ctx.params?.missing?.deep ?? 'default', href: u.href, host: u.host, rel: rel.href,
            bytes: bytes.length, text, uuid_ok: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(uuid),
            iso: d.toISOString(), json: JSON.parse('{"a":[1]}').a[0],
            qs: new URLSearchParams({a: '1', b: 'x y'}).toString(),
          }};
        };)js");
    ASSERT_FALSE(out.error) << out.error->message;
    const auto& s = out.state;
    EXPECT_EQ(s.at("id"), "A-1");
    EXPECT_EQ(s.at("count"), 1);
    EXPECT_EQ(s.at("last"), 3);
    EXPECT_EQ(s.at("own"), true);
    EXPECT_EQ(s.at("opt"), "default");
    EXPECT_EQ(s.at("href"), "https://api.example.com/v1/items?q=a+b&page=2#top");
    EXPECT_EQ(s.at("host"), "api.example.com");
    EXPECT_EQ(s.at("rel"), "http://h.example/a/x?y=1");
    EXPECT_EQ(s.at("bytes"), 12);
    EXPECT_EQ(s.at("text"), "Привіт");
    EXPECT_EQ(s.at("uuid_ok"), true);
    EXPECT_EQ(s.at("iso"), "2024-01-02T00:00:00.000Z");
    EXPECT_EQ(s.at("json"), 1);
    EXPECT_EQ(s.at("qs"), "a=1&b=x+y");
}

TEST_F(SandboxTest, ConsoleGoesToTheRunLogNotStdout) {
    ::testing::internal::CaptureStdout();
    auto out = run(R"js(
        function main() {
          console.log('hello', 1, {a: [1, 2]}, null, undefined);
          console.warn('careful');
          console.error(new TypeError('bad'));
          return {event: 'ok'};
        })js");
    std::string stdout_text = ::testing::internal::GetCapturedStdout();
    ASSERT_FALSE(out.error) << out.error->message;
    EXPECT_EQ(stdout_text, "");
    ASSERT_EQ(out.logs.size(), 3u);
    EXPECT_EQ(out.logs[0], R"(hello 1 {"a":[1,2]} null undefined)");
    EXPECT_EQ(out.logs[1], "[warn] careful");
    EXPECT_EQ(out.logs[2].rfind("[error] TypeError: bad", 0), 0u) << out.logs[2];
    EXPECT_TRUE(out.state.empty());
}

TEST_F(SandboxTest, LogsAreBounded) {
    auto out = run("function main() { for (let i = 0; i < 100000; i++) console.log('line ' + i); return {event: 'ok'}; }");
    ASSERT_FALSE(out.error) << out.error->message;
    EXPECT_EQ(out.logs.size(), sandbox_->options().max_log_lines);
    EXPECT_NE(out.logs.back().find("log truncated"), std::string::npos);
}

TEST_F(SandboxTest, NoFileSystemProcessModulesOrWasm) {
    auto out = run(R"js(
        async function main() {
          let dyn = 'none';
          try { await import('fs'); dyn = 'loaded'; } catch (e) { dyn = 'refused'; }
          return {event: 'ok', state: {
            require: typeof require, process: typeof process, wasm: typeof WebAssembly,
            sab: typeof SharedArrayBuffer, os: typeof os, read: typeof read, load: typeof load,
            quit: typeof quit, dyn, jail: typeof __jail,
          }};
        })js");
    ASSERT_FALSE(out.error) << out.error->message;
    for (const char* key : {"require", "process", "wasm", "sab", "os", "read", "load", "quit", "jail"}) {
        EXPECT_EQ(out.state.at(key), "undefined") << key;
    }
    EXPECT_EQ(out.state.at("dyn"), "refused");

    out = run("import fs from 'fs';\nfunction main() { return {event: 'ok'}; }");
    EXPECT_EQ(code_of(out), "js_error");
    EXPECT_NE(out.error->message.find("line 1"), std::string::npos) << out.error->message;
    expect_healthy();
}

TEST_F(SandboxTest, CheckReportsTheLineOfASyntaxError) {
    std::promise<std::optional<CompileError>> p;
    sandbox_->check("function main(ctx) {\n  const x = ;\n}", [&](auto e) { p.set_value(std::move(e)); });
    auto error = p.get_future().get();
    ASSERT_TRUE(error);
    EXPECT_EQ(error->line, 2);
    EXPECT_GT(error->column, 0);
    EXPECT_NE(error->message.find("SyntaxError"), std::string::npos) << error->message;

    std::promise<std::optional<CompileError>> ok;
    sandbox_->check("async function main(ctx) { return {event: 'x'}; }", [&](auto e) { ok.set_value(std::move(e)); });
    EXPECT_FALSE(ok.get_future().get());

    std::promise<std::optional<CompileError>> no_main;
    sandbox_->check("function handler() {}", [&](auto e) { no_main.set_value(std::move(e)); });
    auto missing = no_main.get_future().get();
    ASSERT_TRUE(missing);
    EXPECT_NE(missing->message.find("main"), std::string::npos);
}

TEST_F(SandboxTest, CompiledScriptsAreCachedByVersion) {
    auto s = script("function main(ctx) { return {event: 'e' + ctx.params.i}; }");
    for (int i = 0; i < 20; ++i) {
        RunInput in;
        in.script = s;
        in.params = json::object{{"i", i}};
        in.limits = sandbox_->options().defaults;
        auto out = run(std::move(in));
        ASSERT_FALSE(out.error) << out.error->message;
        EXPECT_EQ(out.event, "e" + std::to_string(i));
    }
    auto stats = sandbox_->stats();
    EXPECT_LE(stats.compiled, 2u);  // once per jail thread at most
    EXPECT_GE(stats.cache_hits, 18u);
}

TEST_F(SandboxTest, ManyConcurrentRunsFromManyThreads) {
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    auto s = script("async function main(ctx) { await null; return {event: 'ok', state: {i: ctx.params.i * 2}}; }");
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            std::vector<std::future<RunOutput>> futures;
            for (int i = 0; i < 200; ++i) {
                RunInput in;
                in.script = s;
                in.params = json::object{{"i", t * 1000 + i}};
                in.limits = sandbox_->options().defaults;
                // 800 runs queue up at once: on a loaded machine (ctest -j) the queue wait, which counts toward
                // the wall-time limit, can pass the default; this test is about concurrency, not limits.
                in.limits.timeout_ms = sandbox_->options().maxima.timeout_ms;
                futures.push_back(start(std::move(in)));
            }
            for (int i = 0; i < 200; ++i) {
                auto out = futures[i].get();
                if (!out.error && out.state.at("i") == (t * 1000 + i) * 2) {
                    ++ok;
                } else if (out.error) {
                    ADD_FAILURE() << out.error->code << ": " << out.error->message;
                }
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(ok.load(), 800);
}

// --- security: each contained, clear error, engine healthy afterwards ------------------------------------------

TEST_F(SandboxTest, InfiniteLoopsHitTheCpuLimit) {
    RunInput in = input("function main() { while (true) {} }");
    in.limits.cpu_ms = 150;
    auto t0 = std::chrono::steady_clock::now();
    auto out = run(std::move(in));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
    EXPECT_EQ(out.event, "error");
    EXPECT_EQ(code_of(out), "time_limit");
    EXPECT_NE(out.error->message.find("CPU time limit of 150 ms"), std::string::npos) << out.error->message;
    EXPECT_NE(all_logs(out).find("[jail] the run exceeded its CPU time limit"), std::string::npos);
    expect_healthy();

    in = input("async function main() { await null; for (;;) { try { while (true) {} } catch (e) {} } }");
    in.limits.cpu_ms = 100;
    out = run(std::move(in));
    EXPECT_EQ(code_of(out), "time_limit");
    expect_healthy();
}

TEST_F(SandboxTest, WallTimeLimitCoversWaiting) {
    RunInput in = input("async function main() { await new Promise((r) => setTimeout(r, 10000)); return {event: 'late'}; }");
    in.limits.timeout_ms = 200;
    auto t0 = std::chrono::steady_clock::now();
    auto out = run(std::move(in));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
    ASSERT_EQ(code_of(out), "time_limit");
    EXPECT_NE(out.error->message.find("200 ms"), std::string::npos);
    expect_healthy();
}

TEST_F(SandboxTest, DeepRecursionIsAClearJsError) {
    auto out = run("function f(n) { return f(n + 1) + 1; }\nfunction main() { f(0); return {event: 'no'}; }");
    EXPECT_EQ(code_of(out), "js_error");
    EXPECT_NE(out.error->message.find("too much recursion"), std::string::npos) << out.error->message;
    out = run("async function g() { return await g(); }\nasync function main() { await g(); }");
    EXPECT_EQ(out.event, "error");
    expect_healthy();
}

TEST_F(SandboxTest, MemoryBombsHitTheMemoryLimit) {
    const char* bombs[] = {
        "function main() { const a = []; while (true) a.push(new Array(100000).fill(1.5)); }",
        "function main() { const a = []; for (;;) a.push({x: a.length, y: [1, 2, 3], z: 'v' + a.length}); }",
        "function main() { const a = []; for (;;) a.push(new Uint8Array(1 << 20).fill(7)); }",
        "function main() { const m = new Map(); for (let i = 0; ; i++) m.set(i, 'k' + i); }",
        "function main() { let s = 'x'; const keep = []; for (;;) { s = s + s; keep.push(s.slice(1)); } }",
    };
    for (const char* code : bombs) {
        RunInput in = input(code);
        in.limits.memory_mb = 16;
        in.limits.cpu_ms = 5'000;
        in.limits.timeout_ms = 10'000;
        auto out = run(std::move(in));
        EXPECT_EQ(out.event, "error") << code;
        EXPECT_EQ(code_of(out), "memory_limit") << code << " → " << (out.error ? out.error->message : "");
        expect_healthy();
    }
}

TEST_F(SandboxTest, HugeStringsAndArraysAreContained) {
    const char* cases[] = {
        "function main() { return {event: 'x', state: {s: 'x'.repeat(2 ** 30)}}; }",
        "function main() { const a = new Array(2 ** 32); return {event: 'x'}; }",
        "function main() { const b = new ArrayBuffer(2 ** 33); return {event: 'x'}; }",
        "function main() { const a = new Array(1e8).fill(0); return {event: 'x'}; }",
        "function main() { const s = 'ab'.repeat(2 ** 27); return {event: 'x', state: {n: s.split('').length}}; }",
    };
    for (const char* code : cases) {
        RunInput in = input(code);
        in.limits.memory_mb = 32;
        auto out = run(std::move(in));
        EXPECT_EQ(out.event, "error") << code;
        EXPECT_TRUE(code_of(out) == "memory_limit" || code_of(out) == "js_error" || code_of(out) == "time_limit")
            << code << " → " << code_of(out);
        EXPECT_FALSE(out.error->message.empty());
        expect_healthy();
    }
}

TEST_F(SandboxTest, PrototypeTamperingNeverLeaksIntoTheNextRun) {
    make(small_options(1));  // one context: both runs share it
    auto out = run(R"js(
        function main() {
          Object.prototype.leak = 'pwned';
          Array.prototype.push = () => { throw new Error('tampered'); };
          JSON.stringify = () => '{"event":"hijacked"}';
          globalThis.shared = 42;
          Promise.prototype.then = () => {};
          String.prototype.toString = () => 'x';
          Object.freeze(Object.prototype);
          return {event: 'tampered'};
        })js");
    ASSERT_FALSE(out.error) << out.error->message;
    out = run(R"js(
        function main() {
          const a = []; a.push(1);
          return {event: 'clean', state: {leak: ({}).leak ?? null, shared: typeof shared,
                                          json: JSON.stringify({a: 1}), len: a.length,
                                          frozen: Object.isFrozen(Object.prototype)}};
        })js");
    ASSERT_FALSE(out.error) << out.error->message;
    EXPECT_EQ(out.event, "clean");
    EXPECT_EQ(json::serialize(out.state), R"({"leak":null,"shared":"undefined","json":"{\"a\":1}","len":1,"frozen":false})");
    expect_healthy();
}

TEST_F(SandboxTest, PromisesThatNeverSettleEndAtOnce) {
    auto t0 = std::chrono::steady_clock::now();
    auto out = run("async function main() { await new Promise(() => {}); return {event: 'never'}; }");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2500ms) << "reported at once, not at the 3 s time limit";
    EXPECT_EQ(code_of(out), "js_error");
    EXPECT_NE(out.error->message.find("never settle"), std::string::npos) << out.error->message;
    out = run("function main() { return new Promise(() => {}); }");
    EXPECT_EQ(code_of(out), "js_error");
    expect_healthy();
}

TEST_F(SandboxTest, SyntaxErrorsNameTheLine) {
    auto out = run("function main(ctx) {\n  return {event: 'x'\n}\n}}");
    EXPECT_EQ(code_of(out), "js_error");
    EXPECT_NE(out.error->message.find("line 4"), std::string::npos) << out.error->message;
    out = run("const x = 1;");
    EXPECT_EQ(code_of(out), "js_error");
    EXPECT_NE(out.error->message.find("must define function main"), std::string::npos) << out.error->message;
    expect_healthy();
}

TEST_F(SandboxTest, ThrowingNonErrorValues) {
    struct Case {
        const char* code;
        const char* expect;
    } cases[] = {
        {"function main() { throw 42; }", "42"},
        {"function main() { throw 'plain string'; }", "plain string"},
        {"function main() { throw {reason: 'nope', n: 1}; }", R"({"reason":"nope","n":1})"},
        {"function main() { throw null; }", "null"},
        {"function main() { throw undefined; }", "undefined"},
        {"function main() { throw Symbol('s'); }", "Symbol"},
        {"async function main() { await Promise.reject(7); }", "7"},
        {"function main() { throw new RangeError('out of range'); }", "RangeError: out of range"},
        {"function main() {\n  null.x;\n}", "line 2"},
        {"function main() { const o = {}; o.self = o; throw o; }", "uncaught exception"},
        {"function main() { throw new Proxy({}, {get() { throw 1; }, ownKeys() { throw 2; }}); }", "uncaught exception"},
    };
    for (const auto& c : cases) {
        auto out = run(c.code);
        EXPECT_EQ(out.event, "error") << c.code;
        EXPECT_EQ(code_of(out), "js_error") << c.code;
        if (out.error) {
            EXPECT_NE(out.error->message.find(c.expect), std::string::npos) << c.code << " → " << out.error->message;
        }
    }
    expect_healthy();
}

TEST_F(SandboxTest, NonJsonResultsAreBadResults) {
    const char* cases[] = {
        "function main() { return 42; }",
        "function main() { return undefined; }",
        "function main() { return 'found'; }",
        "function main() { return [1, 2]; }",
        "function main() { return () => 1; }",
        "function main() { return Symbol('x'); }",
        "function main() { return {state: {}}; }",
        "function main() { return {event: 7}; }",
        "function main() { return {event: ''}; }",
        "function main() { return {event: 'x', state: [1]}; }",
        "function main() { return {event: 'x', state: 'text'}; }",
        "function main() { return {event: 'x', state: {n: 10n}}; }",
        "function main() { const o = {event: 'x'}; o.state = o; return o; }",
        "function main() { return {event: 'x', toJSON() { return 5; }}; }",
        "function main() { return {event: 'x', state: {big: 'y'.repeat(200000)}}; }",
        "function main() { return {event: 'x', get state() { throw new Error('getter'); }}; }",
    };
    for (const char* code : cases) {
        auto out = run(code);
        EXPECT_EQ(out.event, "error") << code;
        EXPECT_EQ(code_of(out), "bad_result") << code << " → " << (out.error ? out.error->message : "");
    }
    // A getter that never returns is a time limit, not a hang.
    RunInput in = input("function main() { return {event: 'x', get state() { for (;;) {} }}; }");
    in.limits.cpu_ms = 100;
    EXPECT_EQ(code_of(run(std::move(in))), "time_limit");
    // Functions and undefined inside state are dropped the JSON way.
    auto out = run("function main() { return {event: 'ok', state: {f() {}, u: undefined, n: null}}; }");
    ASSERT_FALSE(out.error) << out.error->message;
    EXPECT_EQ(json::serialize(out.state), R"({"n":null})");
    expect_healthy();
}

TEST_F(SandboxTest, OutputLimitIsPerAction) {
    RunInput in = input("function main() { return {event: 'x', state: {s: 'y'.repeat(3000)}}; }");
    in.limits.output_kb = 2;
    auto out = run(std::move(in));
    EXPECT_EQ(code_of(out), "bad_result");
    EXPECT_NE(out.error->message.find("larger than 2 KB"), std::string::npos);
}

// --- fetch -------------------------------------------------------------------------------------------------------

class FetchTest : public SandboxTest {
protected:
    void SetUp() override {
        fetcher_ = std::make_shared<testing::GuardedFetcher>(
            std::set<std::string>{"127.0.0.1:" + std::to_string(server_.port())});
        make(small_options(1), fetcher_);
    }
    std::string url(const std::string& path) { return server_.url(path); }

    testing::TestHttpServer server_;
    std::shared_ptr<testing::GuardedFetcher> fetcher_;
};

TEST_F(FetchTest, FetchesJsonTextAndHeaders) {
    auto out = run(R"js(
        async function main(ctx) {
          const r = await fetch(ctx.params.base + '/json');
          const data = await r.json();
          const e = await fetch(ctx.params.base + '/echo', {method: 'POST', body: 'ping', headers: {'X-Test': 'yes'}});
          const text = await e.text();
          const nf = await fetch(ctx.params.base + '/status/404');
          const red = await fetch(ctx.params.base + '/redirect/json');
          return {event: 'ok', state: {status: r.status, ok: r.ok, data, text, method: e.headers.get('x-method'),
                                       seen: e.headers.get('X-Seen-Header'), nf: nf.status, nfok: nf.ok,
                                       red: (await red.json()).ok}};
        })js",
                   json::object{{"base", url("")}});
    ASSERT_FALSE(out.error) << out.error->message << all_logs(out);
    EXPECT_EQ(json::serialize(out.state),
              R"({"status":200,"ok":true,"data":{"ok":true,"items":[1,2,3]},"text":"ping","method":"POST","seen":"yes","nf":404,"nfok":false,"red":true})");
}

TEST_F(FetchTest, PrivateAndMetadataAddressesAreRefused) {
    const std::string targets[] = {
        "http://127.0.0.1:9/x",         "http://10.1.2.3/internal", "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8080/admin",  "http://[::1]/x",           "http://192.168.0.1/",
        url("/redirect/metadata"),
    };
    for (const auto& target : targets) {
        // Even a script that catches the rejection ends with fetch_refused.
        auto out = run(R"js(
            async function main(ctx) {
              try { await fetch(ctx.params.url); } catch (e) { return {event: 'caught'}; }
              return {event: 'fetched'};
            })js",
                       json::object{{"url", target}});
        EXPECT_EQ(out.event, "error") << target;
        EXPECT_EQ(code_of(out), "fetch_refused") << target;
        EXPECT_NE(all_logs(out).find("[jail] fetch refused"), std::string::npos) << target;
    }
    expect_healthy();
}

TEST_F(FetchTest, NetworkErrorsAreCatchable) {
    auto out = run(R"js(
        async function main() {
          try { await fetch('http://no-such-host.invalid/'); } catch (e) { return {event: 'offline', state: {m: String(e)}}; }
          return {event: 'online'};
        })js");
    ASSERT_FALSE(out.error) << out.error->message;
    EXPECT_EQ(out.event, "offline");
    EXPECT_NE(std::string(out.state.at("m").as_string()).find("fetch failed (network)"), std::string::npos);
}

TEST_F(FetchTest, FetchCountIsLimited) {
    RunInput in = input(R"js(
        async function main(ctx) {
          for (let i = 0; i < 10; i++) { try { await fetch(ctx.params.base + '/json'); } catch (e) {} }
          return {event: 'all'};
        })js",
                        json::object{{"base", url("")}});
    in.limits.max_fetches = 2;
    auto out = run(std::move(in));
    EXPECT_EQ(code_of(out), "fetch_refused");
    EXPECT_NE(out.error->message.find("more than 2 fetch() calls"), std::string::npos);
    EXPECT_EQ(fetcher_->requests(), 2u);
}

TEST_F(FetchTest, AwaitingFetchNeverBlocksTheJailThread) {
    // One jail thread: the slow run waits for its fetch while quick runs complete meanwhile.
    auto slow = start(input(R"js(
        async function main(ctx) { const r = await fetch(ctx.params.base + '/slow'); return {event: await r.text()}; })js",
                            json::object{{"base", url("")}}));
    std::this_thread::sleep_for(50ms);
    for (int i = 0; i < 20; ++i) {
        auto out = run("function main() { return {event: 'quick'}; }");
        EXPECT_EQ(out.event, "quick");
    }
    EXPECT_EQ(slow.wait_for(0ms), std::future_status::timeout);  // still waiting for /slow (1.5 s)
    auto out = slow.get();
    ASSERT_FALSE(out.error) << out.error->message;
    EXPECT_EQ(out.event, "slow done");
}

TEST(SandboxFetch, RefusalFromTheFetcherSurfacesAsFetchRefused) {
    Sandbox sandbox(JailOptions{}, nullptr);  // no fetcher configured: RefusingFetcher
    std::promise<RunOutput> p;
    RunInput in;
    in.script = script("async function main() { await fetch('https://example.com/'); return {event: 'x'}; }");
    sandbox.run(std::move(in), [&](RunOutput out) { p.set_value(std::move(out)); });
    auto out = p.get_future().get();
    EXPECT_EQ(out.event, "error");
    ASSERT_TRUE(out.error);
    EXPECT_EQ(out.error->code, "fetch_refused");
    EXPECT_NE(out.error->message.find("not configured"), std::string::npos);
}

TEST(SandboxFetch, LateFetchAnswersAfterATimeoutAreIgnored) {
    auto held = std::make_shared<testing::HeldFetcher>();
    JailOptions options;
    options.threads = 1;
    Sandbox sandbox(options, held);
    auto run = [&](std::string code, std::int64_t timeout_ms) {
        std::promise<RunOutput> p;
        RunInput in;
        in.script = script(std::move(code));
        in.limits.timeout_ms = timeout_ms;
        sandbox.run(std::move(in), [&](RunOutput out) { p.set_value(std::move(out)); });
        return p.get_future().get();
    };
    auto out = run("async function main() { const r = await fetch('http://api.example/x'); return {event: 'got'}; }", 100);
    EXPECT_EQ(out.error->code, "time_limit");
    EXPECT_EQ(held->held(), 1u);
    FetchResponse late;
    late.status = 200;
    late.body = "late";
    held->answer_all(late);  // nothing waits any more: dropped safely
    out = run("function main() { return {event: 'fine'}; }", 1000);
    EXPECT_EQ(out.event, "fine");
}

TEST(SandboxLifecycle, DestroyingTheSandboxAnswersWaitingRuns) {
    auto held = std::make_shared<testing::HeldFetcher>();
    auto sandbox = std::make_unique<Sandbox>(JailOptions{}, held);
    std::promise<RunOutput> p;
    RunInput in;
    in.script = script("async function main() { await fetch('http://api.example/x'); return {event: 'got'}; }");
    sandbox->run(std::move(in), [&](RunOutput out) { p.set_value(std::move(out)); });
    while (held->held() == 0) std::this_thread::sleep_for(1ms);
    sandbox.reset();
    auto out = p.get_future().get();
    EXPECT_EQ(out.error->code, "time_limit");
    EXPECT_NE(out.error->message.find("stopping"), std::string::npos);
    held->answer_all(FetchResponse{});  // the mailbox is gone: dropped
}

// --- lazy start (issue #2: idle RSS) ------------------------------------------------------------------------------

RunOutput run_on(Sandbox& sandbox, std::string code) {
    auto p = std::make_shared<std::promise<RunOutput>>();
    auto f = p->get_future();
    RunInput in;
    in.script = script(std::move(code));
    sandbox.run(std::move(in), [p](RunOutput out) { p->set_value(std::move(out)); });
    EXPECT_EQ(f.wait_for(20s), std::future_status::ready);
    return f.get();
}

TEST(SandboxLazyStart, AFreshSandboxStartsNothing) {
    JailOptions options;
    options.threads = 3;
    Sandbox sandbox(options, nullptr);
    EXPECT_FALSE(sandbox.started());
    auto s = sandbox.stats();
    EXPECT_EQ(s.pool_starts, 0u);
    EXPECT_EQ(s.threads, 0u);
    // Reading options and clamping limits never start it.
    EXPECT_EQ(sandbox.options().threads, 3u);
    EXPECT_EQ(sandbox.clamp(Limits{}).timeout_ms, Limits{}.timeout_ms);
    EXPECT_FALSE(sandbox.started());
}  // destroying a never-started sandbox is fine

TEST(SandboxLazyStart, TheFirstRunStartsThePoolAndWorks) {
    JailOptions options;
    options.threads = 2;
    Sandbox sandbox(options, nullptr);
    auto out = run_on(sandbox, "function main() { return {event: 'first', state: {n: [1, 2].at(-1)}}; }");
    ASSERT_FALSE(out.error) << out.error->message;
    EXPECT_EQ(out.event, "first");
    EXPECT_EQ(out.state.at("n"), 2);
    EXPECT_TRUE(sandbox.started());
    auto s = sandbox.stats();
    EXPECT_EQ(s.pool_starts, 1u);
    EXPECT_EQ(s.threads, 2u);
    out = run_on(sandbox, "function main() { return {event: 'second'}; }");
    EXPECT_EQ(out.event, "second");
    EXPECT_EQ(sandbox.stats().pool_starts, 1u);
}

TEST(SandboxLazyStart, TheFirstCheckStartsThePoolToo) {
    Sandbox sandbox(JailOptions{}, nullptr);
    std::promise<std::optional<CompileError>> p;
    sandbox.check("function main( {", [&](std::optional<CompileError> e) { p.set_value(std::move(e)); });
    auto error = p.get_future().get();
    ASSERT_TRUE(error);
    EXPECT_EQ(error->line, 1);
    EXPECT_TRUE(sandbox.started());
    EXPECT_EQ(sandbox.stats().pool_starts, 1u);
}

TEST(SandboxLazyStart, ConcurrentFirstRunsStartThePoolExactlyOnce) {
    for (int round = 0; round < 3; ++round) {
        JailOptions options;
        options.threads = 2;
        Sandbox sandbox(options, nullptr);
        constexpr int kCallers = 8;
        std::atomic<int> ready{0};
        std::atomic<bool> go{false};
        std::vector<RunOutput> outs(kCallers);
        std::vector<std::thread> callers;
        for (int i = 0; i < kCallers; ++i) {
            callers.emplace_back([&, i] {
                ready.fetch_add(1);
                while (!go.load()) std::this_thread::yield();
                outs[i] = run_on(sandbox, "function main(ctx) { return {event: 'ok'}; }");
            });
        }
        while (ready.load() < kCallers) std::this_thread::yield();
        go.store(true);
        for (auto& t : callers) t.join();
        for (const auto& out : outs) {
            EXPECT_FALSE(out.error) << out.error->message;
            EXPECT_EQ(out.event, "ok");
        }
        auto s = sandbox.stats();
        EXPECT_EQ(s.pool_starts, 1u);
        EXPECT_EQ(s.threads, 2u);
        EXPECT_EQ(s.runs, static_cast<std::uint64_t>(kCallers));
        EXPECT_EQ(s.inflight, 0u);
    }
}

TEST(SandboxLazyStart, APoolThatCannotStartAnswersEveryCallerWithAnError) {
    JailOptions options;
    options.threads = 1;
    options.context_heap_mb = 0;  // no GC heap at all: the context's self-hosted code cannot be set up
    Sandbox sandbox(options, nullptr);
    auto out = run_on(sandbox, "function main() { return {event: 'never'}; }");
    ASSERT_TRUE(out.error);
    EXPECT_EQ(out.error->code, "time_limit");
    EXPECT_NE(out.error->message.find("cannot start"), std::string::npos) << out.error->message;
    EXPECT_FALSE(sandbox.started());
    std::promise<std::optional<CompileError>> p;
    sandbox.check("function main() {}", [&](std::optional<CompileError> e) { p.set_value(std::move(e)); });
    auto error = p.get_future().get();
    ASSERT_TRUE(error);
    EXPECT_NE(error->message.find("cannot start"), std::string::npos);
    EXPECT_EQ(sandbox.stats().pool_starts, 0u);
}

TEST(SandboxLazyStart, AnIdlePoolStopsAndTheNextRunRestartsIt) {
    JailOptions options;
    options.threads = 2;
    options.idle_stop_ms = 100;
    Sandbox sandbox(options, nullptr);
    EXPECT_EQ(run_on(sandbox, "function main() { return {event: 'a'}; }").event, "a");
    EXPECT_TRUE(sandbox.started());
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (sandbox.started() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    EXPECT_FALSE(sandbox.started());
    auto s = sandbox.stats();
    EXPECT_EQ(s.pool_stops, 1u);
    EXPECT_EQ(s.threads, 0u);
    // The next run starts a new pool (JS_Init is not repeated) and works.
    auto out = run_on(sandbox, "function main() { return {event: 'b', state: {u: typeof crypto.randomUUID()}}; }");
    ASSERT_FALSE(out.error) << out.error->message;
    EXPECT_EQ(out.event, "b");
    EXPECT_EQ(sandbox.stats().pool_starts, 2u);
}

TEST(SandboxLazyStart, APoolWithRunsInFlightNeverStops) {
    auto held = std::make_shared<testing::HeldFetcher>();
    JailOptions options;
    options.threads = 1;
    options.idle_stop_ms = 20;
    Sandbox sandbox(options, held);
    std::promise<RunOutput> p;
    RunInput in;
    in.script = script("async function main() { const r = await fetch('http://api.example/x'); return {event: await r.text()}; }");
    sandbox.run(std::move(in), [&](RunOutput out) { p.set_value(std::move(out)); });
    while (held->held() == 0) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(200ms);  // ten idle periods, but a run waits on fetch
    EXPECT_TRUE(sandbox.started());
    EXPECT_EQ(sandbox.stats().pool_stops, 0u);
    FetchResponse answer;
    answer.status = 200;
    answer.body = "answered";
    held->answer_all(answer);
    auto out = p.get_future().get();
    ASSERT_FALSE(out.error) << out.error->message;
    EXPECT_EQ(out.event, "answered");
}

TEST(SandboxLazyStart, ADoneCallbackMayRunAgainWhileThePoolStops) {
    // A `done` that submits again from the jail thread, with the pool stopping at every idle moment: the chained
    // runs keep working (a new pool starts when needed) and nothing deadlocks.
    JailOptions options;
    options.threads = 1;
    options.idle_stop_ms = 1;
    options.watchdog_tick_ms = 1;
    auto sandbox = std::make_unique<Sandbox>(options, nullptr);
    auto finished = std::make_shared<std::promise<void>>();
    auto result = finished->get_future();
    std::atomic<int> left{30};
    std::function<void(RunOutput)> next;
    next = [&, finished](RunOutput out) {
        EXPECT_EQ(out.event, "hop");
        if (left.fetch_sub(1) == 1) {
            finished->set_value();
            return;
        }
        if (left.load() % 3 == 0) std::this_thread::sleep_for(20ms);  // let the pool go idle now and then
        RunInput in;
        in.script = script("function main() { return {event: 'hop'}; }");
        sandbox->run(std::move(in), next);
    };
    RunInput in;
    in.script = script("function main() { return {event: 'hop'}; }");
    sandbox->run(std::move(in), next);
    EXPECT_EQ(result.wait_for(60s), std::future_status::ready);
    EXPECT_GT(sandbox->stats().pool_stops, 0u);  // the path was taken: runs chained across stopped pools
    sandbox.reset();  // joins the jail threads before `next` and `left` go
}

}  // namespace
}  // namespace parley::jail
