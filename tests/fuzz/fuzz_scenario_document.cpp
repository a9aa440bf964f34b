// Fuzz target: the scenario document parser, validator and lint, then a short run of whatever compiled.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "scenario/document.h"
#include "scenario/runtime.h"
#include "scenario/translations.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parley::scenario;
    std::string_view text(reinterpret_cast<const char*>(data), size);
    static const std::vector<parley::actions::ActionInfo> known = {{"test_echo", {}, {"success", "error"}}};
    CompileOptions options;
    options.actions = &known;
    CompileResult r = compile_scenario(text, options);
    (void)to_json(r.errors);
    (void)to_json(r.warnings);
    if (!r.ok()) return 0;
    // No valid document may crash or hang the runtime.
    Runtime runtime(r.scenario);
    DialogState state;
    RunContext context;
    context.step_limit = 200;
    RunResult run = runtime.start(state, context);
    for (const char* say : {"1", "yes", "+380501112233", "a@b.co"}) {
        for (int i = 0; i < 3 && run.action; ++i) {
            parley::actions::ActionResult result;
            result.event = i == 0 ? "success" : "error";
            run = runtime.resume_after_action(state, result, context);
        }
        run = runtime.on_message(state, ClientMessage::from_text(say), context);
    }
    for (const auto& alias : r.scenario->aliases()) runtime.on_alias_call(state, alias, "x", {}, context);
    auto restored = DialogState::parse(state.serialize());
    if (!restored) __builtin_trap();
    std::string csv = export_translations_csv(*r.scenario);
    if (!import_translations_csv(r.scenario->document(), csv).ok()) __builtin_trap();
    return 0;
}
