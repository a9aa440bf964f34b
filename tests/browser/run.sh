#!/usr/bin/env bash
# Runs the widget's browser test (widget.test.mjs) with Debian's chromium, or skips (exit 77) saying what is missing.
#   run.sh --server build/tests/browser/widget_server --bot examples/demo-bot.json
#   run.sh --parley build/parley
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
skip() { echo "SKIPPED: $1 (scripts/install-deps.sh installs it)"; exit 77; }
command -v node >/dev/null || skip "node is not installed"
chromium="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
[ -n "$chromium" ] || skip "chromium is not installed"
[ -d "$here/node_modules/playwright-core" ] || skip "playwright-core is not in tests/browser/node_modules"
exec node "$here/widget.test.mjs" --chromium "$chromium" "$@"
