#!/usr/bin/env bash
# "Export everything" with flat memory: builds the ZIP of a person with N originals of realistic
# size (PNG-like, 1.2–2.4 MB, incompressible) on disk storage, through the real binary, and
# reports wall time and peak RSS (/usr/bin/time -v) for 0, 100 and 1,000 images, so growth with
# the number and size of images shows (or not). The originals are seeded unencrypted, then
# `easel jobs run seal-existing` encrypts them (timed too: the cost of AES-GCM on this
# machine), then `easel jobs run exports` reads them back decrypting and writes the archive
# encrypted. The archive is opened with Tests/peers/open_sealed.py (an independent reader of
# the format) and then Python's zipfile, which checks every CRC.
# Usage: bench/export.sh [path/to/easel] [counts...]   (default: the release binary; 0 100 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
shift || true
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(0 100 1000)
if [ -z "$BIN" ]; then
  if [ -x .build/release/easel ]; then BIN=.build/release/easel; else BIN=.build/debug/easel; fi
fi
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install time"; exit 1; }
BIN=$(realpath "$BIN")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "binary: $BIN ($(du -h "$BIN" | cut -f1))"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GB RAM"

# Seeds one account with $1 finished images (10 per task) and a queued export, straight into
# the database and the blob folder of data folder $2.
seed() {
  python3 - "$1" "$2" <<'PY'
import hashlib, os, random, sqlite3, sys
count, data = int(sys.argv[1]), sys.argv[2]
random.seed(42)
db = sqlite3.connect(os.path.join(data, "easel.db"))
now = "2026-11-28 12:00:00.000"
db.execute("""INSERT INTO user (email, display_name, age_confirmed_at, terms_version, terms_accepted_at, created_at, updated_at, email_verified_at)
              VALUES ('bench@example.org', 'Bench', ?, '1', ?, ?, ?, ?)""", (now,) * 5)
user = db.execute("SELECT id FROM user WHERE email = 'bench@example.org'").fetchone()[0]
# One random megabyte, reused with a per-image header and length, so hashing stays honest and
# seeding stays fast; the bytes do not compress, like a PNG's.
block = os.urandom(1 << 20)
total = 0
for first in range(0, count, 10):
    cur = db.execute("""INSERT INTO generation_task (user_id, status, provider, model, prompt, size, quality, count, credits_reserved,
                        next_attempt_at, created_at, started_at, finished_at, updated_at)
                        VALUES (?, 'succeeded', 'demo', 'gpt-image-2', ?, '1024x1024', 'high', 10, 0, ?, ?, ?, ?, ?)""",
                     (user, f"benchmark prompt {first}", now, now, now, now, now))
    task = cur.lastrowid
    for index in range(min(10, count - first)):
        size = random.randint(1_200_000, 2_400_000)
        body = (f"image {first + index}".encode() + block * 3)[:size]
        key = f"images/u{user}/t{task}/{index}.png"
        path = os.path.join(data, "blobs", key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(body)
        total += size
        db.execute("""INSERT INTO image (user_id, task_id, result_index, blob_key, thumb_key, format, width, height, bytes, sha256,
                      provider, model, quality, size, prompt, created_at)
                      VALUES (?, ?, ?, ?, ?, 'png', 1024, 1024, ?, ?, 'demo', 'gpt-image-2', 'high', '1024x1024', ?, ?)""",
                   (user, task, index, key, key + ".thumb.webp", size, hashlib.sha256(body).hexdigest(), f"benchmark prompt {first}", now))
db.execute("INSERT INTO data_export (user_id, status, created_at, updated_at) VALUES (?, 'queued', ?, ?)", (user, now, now))
db.commit()
print(f"{total}")
PY
}

PY=.venv/bin/python
[ -x "$PY" ] || { echo "run make test once first: the check needs .venv (python cryptography)"; exit 1; }
printf "\n%-8s %12s %10s %10s %12s %14s %s\n" images originals sealing export "peak RSS" "archive" "zip check"
for count in "${COUNTS[@]}"; do
  data="$WORK/data-$count"
  EASEL_DATA_DIR="$data" EASEL_LOG_LEVEL=warning "$BIN" migrate >/dev/null
  bytes=$(seed "$count" "$data")
  sync
  EASEL_DATA_DIR="$data" EASEL_LOG_LEVEL=info /usr/bin/time -v "$BIN" jobs run seal-existing >"$WORK/seal-out-$count" 2>"$WORK/seal-$count" || {
    cat "$WORK/seal-$count"; exit 1; }
  sealing=$(grep "Elapsed (wall clock)" "$WORK/seal-$count" | awk '{print $NF}')
  sync
  EASEL_DATA_DIR="$data" EASEL_LOG_LEVEL=info /usr/bin/time -v "$BIN" jobs run exports >"$WORK/out-$count" 2>"$WORK/err-$count" || {
    cat "$WORK/err-$count"; exit 1; }
  wall=$(grep "Elapsed (wall clock)" "$WORK/err-$count" | awk '{print $NF}')
  rss=$(grep "Maximum resident set size" "$WORK/err-$count" | awk '{print $NF}')
  sealed=$(ls "$data"/blobs/exports/u*/*.zip)
  zip="$WORK/archive-$count.zip"
  "$PY" Tests/peers/open_sealed.py "$data/master.key" "$data/easel.db" "$sealed" "${sealed#"$data"/blobs/}" "$zip"
  check=$(python3 - "$zip" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    bad = z.testzip()
    print(f"{len(z.infolist())} entries, CRC {'ok' if bad is None else 'BAD ' + bad}")
PY
)
  printf "%-8s %9.0f MB %10s %10s %9.1f MB %11.0f MB %s\n" "$count" "$(echo "$bytes / 1000000" | bc -l)" "$sealing" "$wall" \
    "$(echo "$rss / 1024" | bc -l)" "$(echo "$(stat -c %s "$zip") / 1000000" | bc -l)" "$check"
  grep -o 'largest_buffer=[0-9]*' "$WORK/err-$count" | tail -1 | sed 's/^/         /' || true
  rm -rf "$data" "$zip"
done
