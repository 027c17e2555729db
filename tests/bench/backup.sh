#!/usr/bin/env bash
# Backup and restore cost, in one command (docs/operations.md, "Back up and
# restore"):
#
#   bash tests/bench/backup.sh
#
# Starts the local cluster (scripts/cluster.sh --detach, own run directory
# and addresses), loads the data set of migrate.sh (DATA_MB * 2 of
# VALUE_SIZE values), measures a shale-bench 50/50 run before, then the same
# run while `shalectl backup` runs; then starts a second local cluster and
# `shalectl restore`s the backup into it. Prints backup MB/s (raw checkpoint
# bytes), the backup's size, restore MB/s (key + value bytes written), and
# the benchmark's ops/s and p99 before vs during the backup. Stops both
# clusters and deletes their data at the end (KEEP=1 keeps them).
#
# Environment (defaults): DATA_MB (1024), VALUE_SIZE (16000), CONNS (50),
# LIVE_VALUE_SIZE (100), SECS (20), OUT (directory for results and the
# backup). Needs python3 to read JSON.
set -euo pipefail
cd "$(dirname "$0")/../.."

DATA_MB="${DATA_MB:-1024}"
VALUE_SIZE="${VALUE_SIZE:-16000}"
CONNS="${CONNS:-50}"
LIVE_VALUE_SIZE="${LIVE_VALUE_SIZE:-100}"
SECS="${SECS:-20}"
OUT="${OUT:-$(mktemp -d /tmp/shale-backup-bench.XXXXXX)}"
mkdir -p "$OUT"
BENCH=build/tests/bench/shale-bench
CTL=build/cluster/shalectl
KEYS=$((DATA_MB * 2 * 1024 * 1024 / VALUE_SIZE))
A_BASE=150 A_ROUTER=250 B_BASE=30 B_ROUTER=240
meta_of() { echo "127.0.0.$(($1 + 1)):7001,127.0.0.$(($1 + 2)):7001,127.0.0.$(($1 + 3)):7001"; }

command -v python3 >/dev/null || { echo "backup.sh: needs python3" >&2; exit 3; }
get() { python3 -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].strip(".").split("."): v=v[k]
print(v)' "$1" "$2"; }

start() { # NAME BASE ROUTER_HOST
  SHALE_RUN_DIR="$OUT/$1" SHALE_IP_BASE=$2 SHALE_ROUTER_HOST=$3 \
    bash scripts/cluster.sh ${SHALE_CLUSTER_FLAGS:-} --detach >"$OUT/$1.log" 2>&1
}
stop() {
  SHALE_RUN_DIR="$OUT/$1" SHALE_IP_BASE=$2 SHALE_ROUTER_HOST=$3 \
    bash scripts/cluster.sh --stop >/dev/null 2>&1 || true
}
cleanup() {
  [ -n "${bench_pid:-}" ] && kill "$bench_pid" 2>/dev/null || true
  if [ "${KEEP:-0}" != 1 ]; then
    stop a $A_BASE $A_ROUTER
    stop b $B_BASE $B_ROUTER
    rm -rf "$OUT/bk"
  fi
}
trap cleanup EXIT

echo "backup.sh: results in $OUT"
start a $A_BASE $A_ROUTER
(
  # shellcheck disable=SC1091
  if [ -f "$OUT/a/env.sh" ]; then . "$OUT/a/env.sh"; fi
  ROUTER="127.0.0.$A_ROUTER:7000"
  echo "backup.sh: loading $KEYS keys x $VALUE_SIZE B (~$((DATA_MB * 2)) MB)"
  "$BENCH" --addr "$ROUTER" --keys "$KEYS" --value-size "$VALUE_SIZE" --load --duration 0 \
    --conns 50 --pipeline 2 --timeout 30000 --dist uniform --json --quiet >"$OUT/load.json" ||
    [ $? -eq 1 ]
  bench() {
    "$BENCH" --addr "$ROUTER" --keys "$KEYS" --value-size "$LIVE_VALUE_SIZE" --mix 50/50 \
      --conns "$CONNS" --pipeline 1 --duration "$SECS" --json --quiet >"$OUT/$1.json" ||
      [ $? -eq 1 ]
  }
  bench before
  bench during &
  bench_pid=$!
  sleep 3
  t0=$(date +%s%3N)
  "$CTL" --meta "$(meta_of $A_BASE)" backup "$OUT/bk" >"$OUT/backup.out" 2>"$OUT/backup.err"
  t1=$(date +%s%3N)
  wait "$bench_pid"
  echo "$t0 $t1" >"$OUT/backup.times"
)
start b $B_BASE $B_ROUTER
(
  # shellcheck disable=SC1091
  if [ -f "$OUT/b/env.sh" ]; then . "$OUT/b/env.sh"; fi
  "$CTL" --meta "$(meta_of $B_BASE)" --router "127.0.0.$B_ROUTER:7000" --timeout 30000 \
    restore "$OUT/bk" --into-same-cluster >"$OUT/restore.out" 2>"$OUT/restore.err"
)
cat "$OUT/backup.out" "$OUT/restore.out"
python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
t0, t1 = [int(x) for x in open(out + "/backup.times").read().split()]
b = json.load(open(out + "/before.json"))["run"]["total"]
d = json.load(open(out + "/during.json"))["run"]["total"]
size = sum(os.path.getsize(os.path.join(out, "bk", f)) for f in os.listdir(out + "/bk"))
print("backup: %.1f s wall, %.1f MB on disk" % ((t1 - t0) / 1000.0, size / 1e6))
print("50/50 x %s conns: before %.0f ops/s p99 %.1f ms; during the backup %.0f ops/s p99 %.1f ms"
      % ("50", b["ops_per_sec"], b["latency_ms"]["p99"], d["ops_per_sec"],
         d["latency_ms"]["p99"]))
print("errors during: %s" % d.get("error_count", 0))
EOF
