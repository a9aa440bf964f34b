// `parley scenario lint` and `parley scenario test`: the same checks the server runs on PUT and the same
// conversation-test engine as tests/conversations, for integrators' CI.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "actions/actions.h"
#include "app/commands.h"
#include "scenario/document.h"
#include "scenario/testing.h"

namespace parley::app {

namespace {

bool read_file(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::stringstream buffer;
    buffer << in.rdbuf();
    out = buffer.str();
    return true;
}

template <typename Problem>
void print_problem(const char* kind, const Problem& p) {
    std::printf("%s %s: %s", kind, p.code.c_str(), p.message.c_str());
    if (!p.section.empty()) std::printf(" [section %s]", p.section.c_str());
    if (!p.node.empty()) std::printf(" [node %s]", p.node.c_str());
    if (!p.path.empty()) std::printf(" [at %s]", p.path.c_str());
    std::printf("\n");
}

}  // namespace

int scenario_lint(const std::string& file, bool strict) {
    std::string text;
    if (!read_file(file, text)) {
        std::fprintf(stderr, "parley: cannot read '%s'\n", file.c_str());
        return 2;
    }
    actions::ActionRegistry registry;
    actions::register_builtin_actions(registry);
    auto infos = registry.list();
    scenario::CompileOptions options;
    // Only the built-in actions shipped in every binary are known here; a server also knows its Action Jail
    // actions, so `unknown_action` warnings may be expected for those.
    options.actions = &infos;
    auto result = scenario::compile_scenario(text, options);
    for (const auto& e : result.errors) print_problem("error", e);
    for (const auto& w : result.warnings) print_problem("warning", w);
    std::printf("%s: %zu error(s), %zu warning(s)\n", file.c_str(), result.errors.size(), result.warnings.size());
    if (!result.ok()) return 1;
    return strict && !result.warnings.empty() ? 1 : 0;
}

int scenario_test(const std::string& file, const std::string& cases) {
    std::string document;
    std::string yaml;
    if (!read_file(file, document)) {
        std::fprintf(stderr, "parley: cannot read '%s'\n", file.c_str());
        return 2;
    }
    if (!read_file(cases, yaml)) {
        std::fprintf(stderr, "parley: cannot read '%s'\n", cases.c_str());
        return 2;
    }
    scenario::TestOptions options;
    options.base_dir = std::filesystem::path(cases).parent_path().string();
    auto report = scenario::run_cases(document, yaml, options);
    std::fputs(report.to_text().c_str(), stdout);
    return report.passed ? 0 : 1;
}

}  // namespace parley::app
