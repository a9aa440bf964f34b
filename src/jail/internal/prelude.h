/// The JavaScript prelude every run's fresh global executes before the action's code (console, fetch, timers,
/// TextEncoder/TextDecoder, URL, crypto).
#pragma once

namespace parley::jail::internal {

/// Strict-mode script; expects natives on `globalThis.__jail` (log, sleep, fetch, randomUUID, randomHex) and
/// removes that property.
extern const char* const kPrelude;

}  // namespace parley::jail::internal
