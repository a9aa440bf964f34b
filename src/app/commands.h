/// Command-line subcommands other than `serve`.
#pragma once

#include <string>

#include "core/config.h"

namespace parley::app {

/// `parley routes`: builds the application on a throw-away data dir and prints every route as a JSON array of
/// {method, pattern, access: {kind, module, action}, websocket}. Used by the OpenAPI and permission-matrix tests.
int print_routes(const core::Config& config);

}  // namespace parley::app
