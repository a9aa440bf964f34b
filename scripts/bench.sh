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

if command -v nginx >/dev/null 2>&1; then
  # Calibration: the same wrk run against nginx (2 workers, `return 200`) on this machine, so the figures below
  # can be read against what the machine itself allows (the issue's targets assume nginx does ~170k req/s).
  NGX=$DATA/nginx; mkdir -p "$NGX"
  NGX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$NGX/nginx.conf" <<NGINX
worker_processes 2;
pid $NGX/nginx.pid;
error_log $NGX/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $NGX; proxy_temp_path $NGX; fastcgi_temp_path $NGX; uwsgi_temp_path $NGX; scgi_temp_path $NGX;
  server {
    listen 127.0.0.1:$NGX_PORT reuseport;
    location /healthz { default_type application/json; return 200 '{"status":"ok"}'; }
  }
}
NGINX
  if nginx -c "$NGX/nginx.conf" -p "$NGX" 2>/dev/null; then
    sleep 0.3
    echo "--- calibration: nginx, wrk GET /healthz"
    wrk -t2 -c64 -d"${SECS}s" --latency "http://127.0.0.1:$NGX_PORT/healthz" | grep -E "Requests/sec|50%|99%"
    kill "$(cat "$NGX/nginx.pid")" 2>/dev/null || true
    sleep 0.3
  fi
fi
echo "--- wrk GET /healthz"
wrk -t2 -c64 -d"${SECS}s" --latency "http://127.0.0.1:$PORT/healthz" | grep -E "Requests/sec|50%|99%"
echo "--- wrk GET /api/v1/users/{id} (authenticated, read from the database)"
wrk -t2 -c64 -d"${SECS}s" --latency -H "Authorization: Bearer $TOKEN" \
  "http://127.0.0.1:$PORT/api/v1/users/$USER_ID" | grep -E "Requests/sec|50%|99%"
echo "rss_after_load_kb $(awk '/VmRSS/ {print $2}' /proc/$PID/status)"

echo "--- preview API: client messages to a 5-node bot over 2000 dialogs, 256 connections, state and replies persisted (durable group commit)"
BOT_ID=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/bots" -d '{"name":"bench"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf -X PUT -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/bots/$BOT_ID/scenario" \
  --data-binary @bench/bots/echo-bot.json >/dev/null
SESSIONS=$DATA/sessions.txt
python3 - "$PORT" "$TOKEN" "$BOT_ID" "$SESSIONS" <<'PY'
import http.client, json, sys
port, token, bot, out = sys.argv[1:5]
conn = http.client.HTTPConnection("127.0.0.1", int(port))
with open(out, "w") as f:
    for _ in range(2000):
        conn.request("POST", f"/api/v1/bots/{bot}/preview", body="{}",
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        f.write(f"{bot} {json.loads(conn.getresponse().read())['session']}\n")
PY
export PREVIEW_SESSIONS=$SESSIONS PREVIEW_TOKEN=$TOKEN
wrk -t2 -c256 -d"${SECS}s" --latency -s bench/bots/preview.lua "http://127.0.0.1:$PORT" | grep -E "Requests/sec|50%|90%|99%|unexpected" | head
echo "--- preview API at lower load (16 connections): latency"
wrk -t2 -c16 -d"${SECS}s" --latency -s bench/bots/preview.lua "http://127.0.0.1:$PORT" | grep -E "Requests/sec|50%|90%|99%" | head
echo "rss_after_preview_kb $(awk '/VmRSS/ {print $2}' /proc/$PID/status)"
echo "db_bytes_per_dialog $(python3 -c "import os,sys; print(os.path.getsize('$DATA/data/parley.db') // 2000)") (whole database / 2000 dialogs, upper bound; idle dialogs hold no memory)"
kill -TERM $PID; wait $PID || true

for b in build/bench/*/*_bench; do
  [ -x "$b" ] || continue
  case "$b" in */events_bench) continue ;; esac  # needs a running server: bench/events/run.sh below
  echo "--- $b"
  "$b"
done

if [ -x build/bench/events/events_bench ]; then
  echo "--- live events: fan-out to 10k event WebSockets (bench/events/run.sh)"
  bench/events/run.sh 10000 50 100
fi
