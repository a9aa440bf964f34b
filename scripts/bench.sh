#!/usr/bin/env bash
# Foundation benchmarks against the real binary on loopback (figures go to docs/benchmarks.md):
#   start-up time, idle RSS, GET /healthz and an authenticated JSON read from the database under wrk,
#   then the in-process benchmarks built under build/bench/.
# Usage: scripts/bench.sh [seconds-per-wrk-run]   (needs a built tree: make build)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
BIN=build/parley
DATA=$(mktemp -d /tmp/parley-bench-XXXXXX)
LOG=$DATA/server.log
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT

export PARLEY_ADMIN_EMAIL=bench@example.com PARLEY_ADMIN_PASSWORD=bench-password-1 PARLEY_LOG_LEVEL=warn

start_server() {
  "$BIN" serve --listen 127.0.0.1:0 --data "$DATA/data" >"$LOG" 2>&1 &
  PID=$!
  for _ in $(seq 1 500); do
    PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$LOG" | grep -o '[0-9]*$' || true)
    [ -n "$PORT" ] && return 0
    sleep 0.01
  done
  echo "server did not start"; cat "$LOG"; exit 1
}

# First start initialises the data dir (and hashes the admin password); measure the second, ordinary start.
start_server; kill -TERM $PID; wait $PID || true
t0=$(date +%s%N)
start_server
until curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null; do sleep 0.005; done
t1=$(date +%s%N)
echo "startup_ms $(( (t1 - t0) / 1000000 )) (process start to first /healthz answer, existing data dir)"
sleep 1
echo "idle_rss_kb $(awk '/VmRSS/ {print $2}' /proc/$PID/status)"

TOKEN=$(curl -sf "http://127.0.0.1:$PORT/api/v1/auth/login" \
  -d "{\"email\":\"$PARLEY_ADMIN_EMAIL\",\"password\":\"$PARLEY_ADMIN_PASSWORD\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
USER_ID=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/auth/me" |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("id") or d["user"]["id"])')

echo "--- wrk GET /healthz"
wrk -t2 -c64 -d"${SECS}s" --latency "http://127.0.0.1:$PORT/healthz" | grep -E "Requests/sec|50%|99%"
echo "--- wrk GET /api/v1/users/{id} (authenticated, read from the database)"
wrk -t2 -c64 -d"${SECS}s" --latency -H "Authorization: Bearer $TOKEN" \
  "http://127.0.0.1:$PORT/api/v1/users/$USER_ID" | grep -E "Requests/sec|50%|99%"
echo "rss_after_load_kb $(awk '/VmRSS/ {print $2}' /proc/$PID/status)"
kill -TERM $PID; wait $PID || true

for b in build/bench/*/*_bench; do
  [ -x "$b" ] || continue
  echo "--- $b"
  "$b"
done
