#!/usr/bin/env bash
# The data model's costs through the router, in one run on the local
# cluster of scripts/cluster.sh (secure default, 2 groups of 3 voters + a
# read replica, one router):
#
#   bash tests/bench/datamodel.sh
#
# 1. 2-key transactions against single puts: shale-bench --op txn2 (each
#    op one TXN putting {KEY}a and {KEY}b, one slot, one Raft entry) and
#    --op put, alternated ROUNDS times, at CONNS x PIPELINE; prints txn/s,
#    keys written/s (2 per txn) and the ratio txn/s / (puts/s / 2): what a
#    2-key transaction costs against the two puts it replaces.
# 2. Scans: SCAN_KEYS keys loaded, then `shalectl scan --all --json` (one
#    connection, pages of 1000, slot by slot through the router) timed
#    SCAN_ROUNDS times, and the same with SCAN_PAR shalectl processes each
#    scanning a disjoint prefix at once: keys/s.
#
# Environment (defaults): ROUNDS (3), DURATION (8), WARMUP (2), CONNS (50),
# PIPELINE (1), KEYS (100000), SCAN_KEYS (100000), SCAN_ROUNDS (3),
# SCAN_PAR (4), SHALE_CLUSTER_FLAGS (""; --insecure for plain), OUT (a new
# directory under /tmp). Needs jq.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-8}" WARMUP="${WARMUP:-2}"
CONNS="${CONNS:-50}" PIPELINE="${PIPELINE:-1}" KEYS="${KEYS:-100000}"
SCAN_KEYS="${SCAN_KEYS:-100000}" SCAN_ROUNDS="${SCAN_ROUNDS:-3}" SCAN_PAR="${SCAN_PAR:-4}"
OUT="${OUT:-$(mktemp -d /tmp/shale-datamodel.XXXXXX)}"
mkdir -p "$OUT"
BENCH="$ROOT/build/tests/bench/shale-bench"
CTL="$ROOT/build/cluster/shalectl"
ROUTER=127.0.0.100:7000
RUN_DIR="$OUT/run"
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi
command -v jq >/dev/null || { echo "datamodel.sh: needs jq" >&2; exit 3; }
cleanup() {
  if [ -d "$RUN_DIR/pids" ]; then
    (cd "$ROOT" && SHALE_RUN_DIR="$RUN_DIR" bash scripts/cluster.sh --stop >/dev/null 2>&1) || true
  fi
}
trap cleanup EXIT

echo "datamodel.sh: $(date -u +%FT%TZ), tree $ROOT ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')), load $(cut -d' ' -f1-3 /proc/loadavg); results in $OUT"
# shellcheck disable=SC2086
(cd "$ROOT" && SHALE_RUN_DIR="$RUN_DIR" bash scripts/cluster.sh ${SHALE_CLUSTER_FLAGS:-} --detach \
  >"$OUT/cluster.log" 2>&1) || { echo "datamodel.sh: the cluster did not start ($OUT/cluster.log)" >&2; exit 3; }
# shellcheck disable=SC1091
if [ -f "$RUN_DIR/env.sh" ]; then . "$RUN_DIR/env.sh"; fi

bench() { # name args...
  local name=$1
  shift
  "$BENCH" --addr "$ROUTER" --keys "$KEYS" --value-size 100 --dist zipfian --json --quiet "$@" \
    >"$OUT/$name.json" 2>"$OUT/$name.log" || true
}
get() { jq -r "$2 // 0" "$1"; }

# ---- 1. txn2 against put -------------------------------------------------------
printf '\n%-6s %-5s %10s %12s %9s %9s %7s\n' round op "ops/s" "keys/s" "p50 ms" "p99 ms" errors
declare -a RATIOS=()
for r in $(seq 1 "$ROUNDS"); do
  for op in put txn2; do
    bench "warm-$op-$r" --op "$op" --conns "$CONNS" --pipeline "$PIPELINE" --duration "$WARMUP"
    bench "$op-$r" --op "$op" --conns "$CONNS" --pipeline "$PIPELINE" --duration "$DURATION"
    f="$OUT/$op-$r.json"
    ops=$(get "$f" .run.total.ops_per_sec)
    per=1; [ "$op" = txn2 ] && per=2
    printf '%-6s %-5s %10.0f %12.0f %9.2f %9.2f %7s\n' "$r" "$op" "$ops" \
      "$(awk -v o="$ops" -v p="$per" 'BEGIN { print o * p }')" \
      "$(get "$f" .run.total.latency_ms.p50)" "$(get "$f" .run.total.latency_ms.p99)" \
      "$(get "$f" .run.total.error_count)"
    eval "OPS_$op=$ops"
  done
  # shellcheck disable=SC2154
  RATIOS+=("$(awk -v t="$OPS_txn2" -v p="$OPS_put" 'BEGIN { if (p > 0) printf "%.2f", t / (p / 2); else print "-" }')")
done
echo "txn2 / (put / 2) per round: ${RATIOS[*]}   (1.00: a 2-key txn costs what 2 puts do)"

# ---- 2. scans --------------------------------------------------------------------
echo
echo "datamodel.sh: loading $SCAN_KEYS keys for the scans"
"$BENCH" --addr "$ROUTER" --keys "$SCAN_KEYS" --value-size 100 --load --duration 0 --conns 50 \
  --pipeline 16 --quiet >"$OUT/scan-load.log" 2>&1 || true
now() { date +%s.%N; }
# Keys in shalectl's --json scan output (values may hold any byte: count the
# items' version fields, which a JSON string cannot contain unescaped).
count() { grep -o '"version":' | wc -l; }
for r in $(seq 1 "$SCAN_ROUNDS"); do
  t0=$(now)
  n=$("$CTL" --router "$ROUTER" --timeout 60000 --json scan --all --limit 1000 | count)
  t1=$(now)
  echo "scan round $r, 1 connection: $n keys -> $(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f keys/s in %.2f s", n / (b - a), b - a }')"
done
# Parallel: the key space split by prefix (user0000000N...), one shalectl each.
for r in $(seq 1 "$SCAN_ROUNDS"); do
  t0=$(now)
  for i in $(seq 0 $((SCAN_PAR - 1))); do
    "$CTL" --router "$ROUTER" --timeout 60000 --json scan --all --limit 1000 --prefix "user0000000$i" \
      | count >"$OUT/scanpar-$r-$i" &
  done
  wait
  t1=$(now)
  n=$(cat "$OUT"/scanpar-"$r"-* | awk '{ s += $1 } END { print s + 0 }')
  echo "scan round $r, $SCAN_PAR connections (prefixes user0000000[0-$((SCAN_PAR - 1))]): $n keys -> $(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f keys/s in %.2f s", n / (b - a), b - a }')"
done
echo "datamodel.sh: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
