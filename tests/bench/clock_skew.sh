#!/usr/bin/env bash
# How many STALE reads a read replica refuses as its clock drifts from the
# leader's (issue 18's max-offset rule, docs/consistency.md "Clocks"):
#
#   bash tests/bench/clock_skew.sh
#
# Starts a 3-voter group and a read replica (plain, on 127.0.0.240-243,
# data under a temp dir; the normal build/), the replica under
# tests/clockshim (LD_PRELOAD) so its CLOCK_REALTIME can be shifted. For
# each skew in SKEWS (ms, negative: the replica's clock is behind) it sets
# the shim, waits WAIT s for the replica's offset estimate, then runs
# shale-bench reads at STALE(BOUND) against the replica alone for DURATION
# s and prints the reads answered, the reads refused (STALE_TOO_OLD) and
# the refused fraction, with the replica's own offset estimate from
# `shalectl status`. The leader is the reference clock and never skewed.
#
# Environment (defaults): SKEWS ("0 -100 -200 -240 -260 -400 -2000 150
# 300"), BOUND (1000), MAX_OFFSET (250: shaled --max-clock-offset-ms),
# DURATION (4), WAIT (3), CONNS (4), KEYS (1000), OUT (a new directory
# under /tmp).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SKEWS="${SKEWS:-0 -100 -200 -240 -260 -400 -2000 150 300}"
BOUND="${BOUND:-1000}" MAX_OFFSET="${MAX_OFFSET:-250}" DURATION="${DURATION:-4}"
WAIT="${WAIT:-3}" CONNS="${CONNS:-4}" KEYS="${KEYS:-1000}"
OUT="${OUT:-$(mktemp -d /tmp/shale-clockskew.XXXXXX)}"
SHALED="$ROOT/build/server/shaled"
CTL="$ROOT/build/cluster/shalectl"
BENCH="$ROOT/build/tests/bench/shale-bench"
SHIM="$ROOT/build/tests/libshale_clockshim.so"
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi
for f in "$SHALED" "$CTL" "$BENCH" "$SHIM"; do
  [ -e "$f" ] || { echo "clock_skew.sh: $f is not built (bash scripts/build.sh build)" >&2; exit 3; }
done
command -v jq >/dev/null || { echo "clock_skew.sh: needs jq" >&2; exit 3; }
unset SHALE_TLS_CA SHALE_TLS_CERT SHALE_TLS_KEY SHALE_USER SHALE_PASSWORD_FILE
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
ip() { echo "127.0.0.$((239 + $1))"; }
ic=""
for i in 1 2 3; do ic="${ic:+$ic,}$i=$(ip $i):7101/$(ip $i):7001"; done
common=(--election-timeout-ms 500 --heartbeat-ms 50 --max-clock-offset-ms "$MAX_OFFSET")
for i in 1 2 3; do
  "$SHALED" --id "$i" --listen "$(ip $i):7001" --raft "$(ip $i):7101" --data "$OUT/n$i" \
    --initial-cluster "$ic" "${common[@]}" >"$OUT/n$i.log" 2>&1 &
  pids+=($!)
done
echo "0 0" >"$OUT/shim"
LD_PRELOAD="$SHIM" SHALE_CLOCKSHIM_FILE="$OUT/shim" "$SHALED" --id 4 --listen "$(ip 4):7001" \
  --raft "$(ip 4):7101" --data "$OUT/n4" --initial-cluster none "${common[@]}" >"$OUT/n4.log" 2>&1 &
pids+=($!)
G="$(ip 1):7001,$(ip 2):7001,$(ip 3):7001"
for _ in $(seq 1 100); do
  "$CTL" --addr "$G" --timeout 500 --json status 2>/dev/null | grep -q '"role":"leader"' && break
  sleep 0.1
done
"$CTL" --addr "$G" member add 4 "$(ip 4):7101" "$(ip 4):7001" --replica >/dev/null
"$BENCH" --addr "$G" --keys "$KEYS" --load --duration 0 --conns 4 --pipeline 8 --quiet >/dev/null 2>&1
echo "clock_skew.sh: $(date -u +%FT%TZ), tree $ROOT ($(cd "$ROOT" && git rev-parse --short HEAD)), STALE($BOUND), --max-clock-offset-ms $MAX_OFFSET, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%9s %14s %10s %10s %9s\n' "skew ms" "replica est." answered refused refused%
for skew in $SKEWS; do
  echo "$skew 0" >"$OUT/shim"
  sleep "$WAIT"
  est=$("$CTL" --addr "$(ip 4):7001" --timeout 1000 --json status 2>/dev/null |
    jq -r '[.. | objects | select(.role? == "replica" and .clock_offset_us? != null)][0] | "\((.clock_offset_us // 0) / 1000 | floor)~\((.clock_uncertainty_us // 0) / 1000 | floor)"' 2>/dev/null || echo "?")
  "$BENCH" --addr "$(ip 4):7001" --keys "$KEYS" --mix read --stale "$BOUND" --conns "$CONNS" \
    --pipeline 1 --duration "$DURATION" --json --quiet >"$OUT/skew$skew.json" 2>/dev/null || true
  ok=$(jq -r '.run.total.count // 0' "$OUT/skew$skew.json")
  bad=$(jq -r '.run.total.error_count // 0' "$OUT/skew$skew.json")
  printf '%9s %14s %10s %10s %8.1f%%\n' "$skew" "$est" "$ok" "$bad" \
    "$(awk -v a="$ok" -v b="$bad" 'BEGIN { if (a + b > 0) print 100 * b / (a + b); else print 0 }')"
done
