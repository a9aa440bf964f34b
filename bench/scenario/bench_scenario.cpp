// Scenario runtime benchmarks. Targets: >= 1M node executions per second per core on a 10-node scenario, and
// < 2 KB per idle dialog (serialized state).
//
//   ninja -C build bench_scenario && build/bench/scenario/bench_scenario
#include <benchmark/benchmark.h>

#include "scenario/runtime.h"

namespace {

using namespace parley::scenario;
namespace json = boost::json;

// One client turn executes 10 nodes: menu (press) → r1 → s1 → r2 → s2 → info → s3 → r3 → bye → menu (waits).
const char* kTenNodes = R"({"format":"parley.scenario/1","languages":["uk","en"],
 "constants":{"hotline":"0 800 000 000"},
 "sections":[{"name":"main","nodes":[
  {"id":"start","type":"start","next":"menu"},
  {"id":"menu","type":"message","text":{"uk":"Вітаємо, {{user_name}}!","en":"Hello, {{user_name}}!"},
   "buttons":[{"id":"go","text":{"uk":"Далі","en":"Go"},"next":"r1"}]},
  {"id":"r1","type":"router","routes":[{"if":{"var":"count","op":"gt","value":1000000000},"next":"bye"}],"else":"s1"},
  {"id":"s1","type":"set","values":{"step":"one"},"next":"r2"},
  {"id":"r2","type":"router","routes":[{"if":{"all":[{"var":"step","op":"eq","value":"one"},
     {"var":"user_name","op":"is_set"}]},"next":"s2"}],"else":"bye"},
  {"id":"s2","type":"set","values":{"tier":"gold"},"next":"info"},
  {"id":"info","type":"message","text":"Call {{constants.hotline}}","next":"s3"},
  {"id":"s3","type":"set","values":{"seen":true},"next":"r3"},
  {"id":"r3","type":"router","routes":[{"if":{"var":"tier","op":"in","value":["gold","silver"]},"next":"bye"}],"else":"menu"},
  {"id":"bye","type":"message","text":"Bye","next":"menu"}
 ]}]})";

std::shared_ptr<const Scenario> compiled() {
    static std::shared_ptr<const Scenario> s = compile_scenario(std::string_view(kTenNodes)).scenario;
    return s;
}

void BM_NodeExecutions(benchmark::State& bench) {
    Runtime runtime(compiled());
    DialogState state;
    json::object client{{"id", "c1"}, {"name", "Olena"}, {"language", "uk"}};
    RunContext context;
    context.client = &client;
    runtime.start(state, context);
    ClientMessage press = ClientMessage::from_button("go");
    std::uint64_t nodes = 0;
    for (auto _ : bench) {
        RunResult r = runtime.on_message(state, press, context);
        nodes += r.steps;
        benchmark::DoNotOptimize(r);
    }
    bench.counters["nodes_per_turn"] = static_cast<double>(nodes) / static_cast<double>(bench.iterations());
    bench.counters["nodes/s"] = benchmark::Counter(static_cast<double>(nodes), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_NodeExecutions);

// A turn including persistence: parse the stored state, run, serialize again (what a server does per message).
void BM_TurnWithPersistence(benchmark::State& bench) {
    Runtime runtime(compiled());
    DialogState state;
    json::object client{{"id", "c1"}, {"name", "Olena"}, {"language", "uk"}};
    RunContext context;
    context.client = &client;
    runtime.start(state, context);
    std::string stored = state.serialize();
    ClientMessage press = ClientMessage::from_button("go");
    std::uint64_t nodes = 0;
    for (auto _ : bench) {
        DialogState s = *DialogState::parse(stored);
        RunResult r = runtime.on_message(s, press, context);
        nodes += r.steps;
        stored = s.serialize();
        benchmark::DoNotOptimize(stored);
    }
    bench.counters["nodes/s"] = benchmark::Counter(static_cast<double>(nodes), benchmark::Counter::kIsRate);
    bench.counters["idle_state_bytes"] = static_cast<double>(stored.size());
}
BENCHMARK(BM_TurnWithPersistence);

void BM_Compile(benchmark::State& bench) {
    for (auto _ : bench) benchmark::DoNotOptimize(compile_scenario(std::string_view(kTenNodes)));
}
BENCHMARK(BM_Compile);

}  // namespace

BENCHMARK_MAIN();
