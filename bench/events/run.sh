#!/usr/bin/env bash
# Fan-out of live events to many event WebSockets of the real server (issue 7's "10k concurrent event WebSockets
# with event fan-out p99 < 50 ms"). Starts build/parley on a temporary data dir, prepares a bot with a preview
# session, runs build/bench/events/events_bench, prints the server's RSS with every socket open.
# Usage: bench/events/run.sh [connections] [events] [interval-ms]      (needs a built tree: make build)
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNECTIONS=${1:-10000}
EVENTS=${2:-50}
INTERVAL=${3:-100}
DATA=$(mktemp -d /tmp/parley-events-XXXXXX)
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
ulimit -n "$(ulimit -Hn)"
export PARLEY_ADMIN_EMAIL=bench@example.com PARLEY_ADMIN_PASSWORD=bench-password-1 PARLEY_LOG_LEVEL=warn
build/parley serve --listen 127.0.0.1:0 --data "$DATA/data" >"$DATA/log" 2>&1 &
PID=$!
PORT=
for _ in $(seq 1 500); do
  PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$DATA/log" | grep -o '[0-9]*$' || true)
  [ -n "$PORT" ] && break
  sleep 0.01
done
[ -n "$PORT" ] || { echo "server did not start"; cat "$DATA/log"; exit 1; }
BASE=http://127.0.0.1:$PORT
TOKEN=$(curl -sf "$BASE/api/v1/auth/login" -d "{\"email\":\"$PARLEY_ADMIN_EMAIL\",\"password\":\"$PARLEY_ADMIN_PASSWORD\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
BOT=$(curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/bots" -d '{"name":"events-bench"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf -X PUT -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/bots/$BOT/scenario" \
  --data-binary @bench/bots/echo-bot.json >/dev/null
SESSION=$(curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/bots/$BOT/preview" -d '{}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])')
build/bench/events/events_bench --port "$PORT" --token "$TOKEN" --bot "$BOT" --session "$SESSION" \
  --connections "$CONNECTIONS" --events "$EVENTS" --interval-ms "$INTERVAL" &
BENCH=$!
# Sample the server's RSS while the sockets are open (the bench connects, waits 0.5 s, then sends).
for _ in $(seq 1 40); do
  sleep 0.5
  OPEN=$(curl -s "$BASE/metrics" | awk '/^parley_websockets_open/ {print $2}')
  if [ "${OPEN:-0}" -ge "$CONNECTIONS" ]; then
    echo "server_rss_kb $(awk '/VmRSS/ {print $2}' /proc/$PID/status) with $OPEN event sockets open"
    break
  fi
done
wait $BENCH
