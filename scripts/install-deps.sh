#!/usr/bin/env bash
# Installs every Debian package Parley needs to build, run and test, skipping what is already there.
# Idempotent; safe to run on every `make run` / `make test`. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git python3
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libsqlite3-dev sqlite3 libsodium-dev libssl-dev libcurl4-openssl-dev
  libspdlog-dev libfmt-dev libcli11-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev wrk curl
  libmozjs-102-dev libpq-dev libicu-dev
  libpoppler-cpp-dev libzip-dev libpugixml-dev libgumbo-dev libgmime-3.0-dev
  libhnswlib-dev
  chromium nodejs
)
# npm for the browser tests' playwright-core: Debian's package, unless an npm is already there (a NodeSource
# nodejs ships its own and conflicts with Debian's npm package).
if ! command -v npm >/dev/null 2>&1; then packages+=(npm); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} Debian packages present"
else
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Browser tests: playwright-core (drives the chromium above) in the repo-local tests/browser/node_modules.
browser="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
if [ -f "$browser/package.json" ] && [ ! -d "$browser/node_modules/playwright-core" ]; then
  if command -v npm >/dev/null; then (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error);
  else echo "install-deps: npm not found; the browser tests will be skipped"; fi
fi
