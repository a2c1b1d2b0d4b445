#!/usr/bin/env bash
# bench/generation: N tasks through the demo provider answering at once with a small image,
# end to end (submit, queue, dispatch, draw, encode, thumbnail, store, ledger), on loopback.
# Usage: bench/generation.sh [path/to/easel] [tasks] [connections]   (needs wrk and python3)
# Default binary: the release build if there is one, else the debug one.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
BIN=${1:-}
if [ -z "$BIN" ]; then
  if [ -x .build/release/easel ]; then BIN=.build/release/easel; else BIN=.build/debug/easel; fi
fi
TASKS=${2:-3000}
CONNECTIONS=${3:-32}
PORT=${BENCH_PORT:-18081}
WORK=$(mktemp -d)
BIN=$(realpath "$BIN")
PID=""
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo "binary: $BIN"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
export EASEL_LOG_LEVEL=warning EASEL_PORT=$PORT EASEL_DEMO_LATENCY_MS=0 EASEL_SIZES=256x256 \
  EASEL_MAX_ACTIVE_TASKS=10000 EASEL_SUBMIT_RATE=0 EASEL_SUBMIT_RATE_IP=0 EASEL_API_KEY_RATE=0 \
  EASEL_WORKERS=${EASEL_WORKERS:-64} EASEL_BACKUP_INTERVAL=off
cd "$WORK"
printf 'bench password 1234\n' > password
"$BIN" admin create --email bench@example.org --password-file password >/dev/null
KEY=$("$BIN" keys create --email bench@example.org --scopes generate,read | tail -1)
"$BIN" credits grant --email bench@example.org --amount 100000000 --reason bench >/dev/null
"$BIN" serve & PID=$!
until curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.05; done
echo "workers: $EASEL_WORKERS, image: 256x256 PNG + 256 px WebP thumbnail, disk storage"
# Submits with wrk (one thread, so the client takes little of the two cores), each answer
# timed; then the tasks' own timestamps give the end-to-end rate.
BENCH_KEY=$KEY BENCH_TASKS_PER_THREAD=$TASKS wrk -t1 -c"$CONNECTIONS" -d"${BENCH_SECONDS:-20}"s --latency \
  -s "$OLDPWD/bench/generation-submit.lua" "http://127.0.0.1:$PORT" | grep -E "Latency|50%|99%|Requests/sec|requests in|Non-2xx"
python3 "$OLDPWD/bench/generation-report.py" "$WORK/data/easel.db"
echo "resident memory after the run: $(awk '/VmRSS/ {print $2 " kB"}' /proc/$PID/status); server CPU time: $(awk '{printf "%.1f s", ($14 + $15) / 100}' /proc/$PID/stat)"
kill -TERM $PID; wait $PID || true
"$BIN" credits verify
