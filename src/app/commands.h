/// Command-line subcommands other than `serve`.
#pragma once

#include <string>

#include "core/config.h"

namespace parley::app {

/// `parley routes`: builds the application on a throw-away data dir and prints every route as a JSON array of
/// {method, pattern, access: {kind, module, action}, websocket}. Used by the OpenAPI and permission-matrix tests.
int print_routes(const core::Config& config);

/// `parley scenario lint FILE [--strict]`: prints schema errors and lint warnings (one per line, with section,
/// node and path); exit 0 when valid (and, with --strict, without warnings), 1 otherwise, 2 when unreadable.
int scenario_lint(const std::string& file, bool strict);

/// `parley scenario test FILE CASES.yaml`: runs the conversations, prints the report, exit 0 when all pass.
int scenario_test(const std::string& file, const std::string& cases);

}  // namespace parley::app
