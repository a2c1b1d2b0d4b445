#!/usr/bin/env bash
# Measures what docs/performance.md reports, on loopback only, bounded in time:
#   1. time from process start to the first 200 on /healthz (median of 10 starts)
#   2. resident memory right after start and after the wrk runs
#   3. requests per second for /healthz and for a static file (wrk, 2 threads, 10 s each)
# Usage: bench/run.sh [path/to/easel]   (default: the release binary, else the debug one)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
if [ -z "$BIN" ]; then
  if [ -x .build/release/easel ]; then BIN=.build/release/easel; else BIN=.build/debug/easel; fi
fi
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
PORT=${BENCH_PORT:-18080}
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
BIN=$(realpath "$BIN")
echo "binary: $BIN ($(du -h "$BIN" | cut -f1))"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

start_ms() { date +%s%N | cut -b1-13; }
samples=()
for i in $(seq 1 10); do
  rm -rf "$WORK/data"
  t0=$(start_ms)
  (cd "$WORK" && EASEL_PORT=$PORT EASEL_LOG_LEVEL=warning exec "$BIN" serve) & PID=$!
  until curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.005; done
  t1=$(start_ms)
  samples+=($((t1 - t0)))
  kill -TERM $PID; wait $PID || true
done
sorted=$(printf '%s\n' "${samples[@]}" | sort -n)
echo "start to first /healthz 200 (ms, 10 runs, fresh data folder each): median $(echo "$sorted" | sed -n 5p), min $(echo "$sorted" | head -1), max $(echo "$sorted" | tail -1)"

rm -rf "$WORK/data"
(cd "$WORK" && EASEL_PORT=$PORT EASEL_LOG_LEVEL=warning exec "$BIN" serve) & PID=$!
until curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.01; done
sleep 1
echo "resident memory after start: $(awk '/VmRSS/ {print $2 " kB"}' /proc/$PID/status)"
for path in /healthz /static/app.css; do
  echo "--- wrk -t2 -c32 -d10s http://127.0.0.1:$PORT$path"
  wrk -t2 -c32 -d10s --latency "http://127.0.0.1:$PORT$path" | grep -E "Requests/sec|Latency|50%|99%"
done
echo "--- wrk -t2 -c32 -d10s (gzip) http://127.0.0.1:$PORT/static/app.css"
wrk -t2 -c32 -d10s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$PORT/static/app.css" | grep -E "Requests/sec"
echo "resident memory after load: $(awk '/VmRSS/ {print $2 " kB"}' /proc/$PID/status)"
kill -TERM $PID; wait $PID || true

# The same file from nginx, as the limit for serving files on this machine.
if command -v nginx >/dev/null; then
  NPORT=$((PORT + 1))
  mkdir -p "$WORK/nginx"
  cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  include /etc/nginx/mime.types;
  server { listen 127.0.0.1:$NPORT; location /static/ { alias $(pwd)/static/; etag on; } }
}
CONF
  nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx"
  sleep 0.5
  echo "--- nginx: wrk -t2 -c32 -d10s http://127.0.0.1:$NPORT/static/app.css"
  wrk -t2 -c32 -d10s --latency "http://127.0.0.1:$NPORT/static/app.css" | grep -E "Requests/sec|50%|99%"
  kill "$(cat "$WORK/nginx/nginx.pid")"
else
  echo "(nginx not installed: apt-get install nginx-light for the comparison)"
fi
