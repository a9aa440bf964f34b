/// Conversation tests: scripted conversations (client says → bot must reply) run against a scenario with
/// actions answered from recorded fixtures. Used by `parley scenario test FILE CASES.yaml`, by the project's
/// own tests/conversations/*.yaml, and by integrators in CI. The format is in docs/scenario-testing.md.
#pragma once

#include <boost/json.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "actions/actions.h"

namespace parley::scenario {

struct TestOptions {
    /// Answers actions that no fixture matches; when null, the built-ins (`set`, `test_echo`) are used.
    const actions::ActionRegistry* registry = nullptr;
    /// Directory that a `scenario: FILE` key in the YAML is relative to (run_case_file sets it).
    std::string base_dir;
};

struct CaseReport {
    std::string name;
    bool passed = true;
    std::vector<std::string> failures;  ///< human-readable, one per failed expectation
};

/// The outcome of a test file. `passed` is false when any case failed or the file itself is invalid
/// (`errors`: bad YAML, invalid scenario, unknown keys).
struct TestReport {
    bool passed = true;
    std::vector<std::string> errors;
    std::vector<CaseReport> cases;

    std::size_t failed_cases() const;
    /// A readable summary: one line per case (`PASS name` / `FAIL name` + indented failures) and a total.
    std::string to_text() const;
};

/// Runs every case of `cases_yaml` against the scenario document `scenario_json` (when empty, the YAML's own
/// `scenario` key is used: an inline document or a file relative to options.base_dir).
TestReport run_cases(std::string_view scenario_json, std::string_view cases_yaml, const TestOptions& options = {});

/// Reads `yaml_path` and runs it; its `scenario` key names the document (relative to the YAML file).
TestReport run_case_file(const std::string& yaml_path, const TestOptions& options = {});

}  // namespace parley::scenario
