#!/usr/bin/env bash
# The YCSB-style matrix in one command:
#
#   bash tests/bench/ycsb.sh ADDR [extra shale-bench options...]
#
# Loads the key space once (every key written, so reads find data), then
# runs the four mixes -- write (100 % update), 50/50 (YCSB A), 95/5 (B),
# read (C) -- at 50 connections with pipeline 1 and 16, each after a short
# unrecorded warm-up, and prints a summary table: ops/s and p50/p99 latency
# per mix, p99 per operation, errors.
#
# ADDR is what shale-bench --addr takes: host:port, or a comma-separated
# list of routers or nodes. Extra options go to every run (e.g. --stale 100,
# --value-size 1000, --dist uniform).
#
# Environment (defaults): CONNS (50), PIPELINES ("1 16"), DURATION (5),
# WARMUP (1), KEYS (100000), MIXES ("write 50/50 95/5 read"),
# SHALE_BENCH (build/tests/bench/shale-bench), OUT (directory for each
# run's JSON and progress log; default: a new directory under /tmp).
# Needs jq or python3 to read the JSON. Exit status: 0 when every run
# completed (runs with request errors are reported, not fatal), 2 usage,
# 3 a run could not start.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ $# -lt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  [ $# -ge 1 ] && exit 0
  exit 2
fi
ADDR="$1"
shift

BENCH="${SHALE_BENCH:-build/tests/bench/shale-bench}"
CONNS="${CONNS:-50}"
PIPELINES="${PIPELINES:-1 16}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
KEYS="${KEYS:-100000}"
MIXES="${MIXES:-write 50/50 95/5 read}"
OUT="${OUT:-$(mktemp -d /tmp/shale-ycsb.XXXXXX)}"
mkdir -p "$OUT"

if [ ! -x "$BENCH" ]; then
  echo "ycsb.sh: $BENCH not found: build first (bash scripts/build.sh build)" >&2
  exit 3
fi
if command -v jq >/dev/null 2>&1; then
  get() { jq -r "$2 // 0" "$1"; }
elif command -v python3 >/dev/null 2>&1; then
  get() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].lstrip(".").split("."):
    v = v.get(k, 0) if isinstance(v, dict) else 0
print(v)
EOF
  }
else
  echo "ycsb.sh: needs jq or python3 to read shale-bench --json" >&2
  exit 3
fi

# One shale-bench run; its JSON goes to $OUT/NAME.json, progress to .log.
run() {
  local name="$1"
  shift
  local rc=0
  "$BENCH" --addr "$ADDR" --keys "$KEYS" --json "$@" >"$OUT/$name.json" 2>"$OUT/$name.log" ||
    rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
    echo "ycsb.sh: shale-bench $* failed (exit $rc):" >&2
    tail -n 5 "$OUT/$name.log" >&2
    exit "$rc"
  fi
}

ms() { printf '%.2f' "$1"; }
rate() { printf "%'.0f" "$1" 2>/dev/null || printf '%.0f' "$1"; }

echo "ycsb.sh: $ADDR, $KEYS keys, $CONNS connections, pipeline $PIPELINES," \
  "${DURATION}s per run after ${WARMUP}s warm-up${*:+, options: $*}"
echo "ycsb.sh: results in $OUT"

run load --load --duration 0 --conns "$CONNS" --pipeline 16 "$@"
f="$OUT/load.json"
printf 'load: %s keys in %.2f s: %s ops/s, p99 %s ms, errors %s\n\n' \
  "$(get "$f" .load.update.count)" "$(get "$f" .load.seconds)" \
  "$(rate "$(get "$f" .load.update.ops_per_sec)")" \
  "$(ms "$(get "$f" .load.update.latency_ms.p99)")" "$(get "$f" .load.update.error_count)"

printf '%-7s %-10s %10s %8s %8s %12s %13s %8s\n' mix "conns x P" ops/s "p50 ms" "p99 ms" \
  "read p99 ms" "update p99 ms" errors
for p in $PIPELINES; do
  for mix in $MIXES; do
    name="${mix//\//-}-c$CONNS-p$p"
    run "$name" --mix "$mix" --conns "$CONNS" --pipeline "$p" --duration "$DURATION" \
      --warmup "$WARMUP" "$@"
    f="$OUT/$name.json"
    rp="-"
    up="-"
    [ "$(get "$f" .run.read.count)" != 0 ] && rp=$(ms "$(get "$f" .run.read.latency_ms.p99)")
    [ "$(get "$f" .run.update.count)" != 0 ] && up=$(ms "$(get "$f" .run.update.latency_ms.p99)")
    printf '%-7s %-10s %10s %8s %8s %12s %13s %8s\n' "$mix" "${CONNS}x$p" \
      "$(rate "$(get "$f" .run.total.ops_per_sec)")" \
      "$(ms "$(get "$f" .run.total.latency_ms.p50)")" \
      "$(ms "$(get "$f" .run.total.latency_ms.p99)")" "$rp" "$up" \
      "$(get "$f" .run.total.error_count)"
  done
done
