#!/usr/bin/env bash
# Online resharding under load, in one command (docs/resharding.md):
#
#   bash tests/bench/migrate.sh
#
# Starts the local cluster (scripts/cluster.sh --detach, in its own run
# directory and addresses so it does not disturb one already running),
# loads DATA_MB of data, measures a shale-bench 50/50 run (50 connections)
# before, then the same run again while `shalectl slot move RANGE TO` moves
# the slots holding about half the data from group 1 to group 2, with a
# probe writing one key of a moving slot every PROBE_MS to see the longest
# write pause. Prints: MB moved and MB/s, the benchmark's ops/s and p99
# before vs during, and the longest pause seen by the probe and by the
# coordinator (fence to flip). Stops the cluster and deletes its data at the
# end (KEEP=1 keeps it).
#
# Environment (defaults): DATA_MB (1024; what the moving range holds, so
# about twice that is loaded), VALUE_SIZE (16000), RANGE (0-2047: all of
# group 1), TO (2), RATE (MB/s limit for the move; shalectl's default is
# 64), MAX_PARALLEL (1: migrations of the move running at once), CONNS
# (50), LIVE_VALUE_SIZE (100: the benchmark's writes), SECS (20: each
# benchmark run), OUT (directory for the JSON files).
# Needs python3 to read JSON.
set -euo pipefail
cd "$(dirname "$0")/../.."

DATA_MB="${DATA_MB:-1024}"
VALUE_SIZE="${VALUE_SIZE:-16000}"
RANGE="${RANGE:-0-2047}"
TO="${TO:-2}"
CONNS="${CONNS:-50}"
LIVE_VALUE_SIZE="${LIVE_VALUE_SIZE:-100}"
MAX_PARALLEL="${MAX_PARALLEL:-1}"
SECS="${SECS:-20}"
PROBE_MS="${PROBE_MS:-20}"
OUT="${OUT:-$(mktemp -d /tmp/shale-migrate-bench.XXXXXX)}"
mkdir -p "$OUT"
export SHALE_RUN_DIR="${SHALE_RUN_DIR:-$OUT/run}"
export SHALE_IP_BASE="${SHALE_IP_BASE:-150}"
export SHALE_ROUTER_HOST="${SHALE_ROUTER_HOST:-250}"
BENCH=build/tests/bench/shale-bench
CTL=build/cluster/shalectl
ip() { echo "127.0.0.$((SHALE_IP_BASE + $1))"; }
ROUTER="127.0.0.$SHALE_ROUTER_HOST:7000"
META="$(ip 1):7001,$(ip 2):7001,$(ip 3):7001"
KEYS=$((DATA_MB * 2 * 1024 * 1024 / VALUE_SIZE))

command -v python3 >/dev/null || { echo "migrate.sh: needs python3" >&2; exit 3; }
get() { python3 -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].strip(".").split("."): v=v[k]
print(v)' "$1" "$2"; }

cleanup() {
  [ -n "${probe_pid:-}" ] && kill "$probe_pid" 2>/dev/null || true
  [ -n "${bench_pid:-}" ] && kill "$bench_pid" 2>/dev/null || true
  if [ "${KEEP:-0}" != 1 ]; then bash scripts/cluster.sh --stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

echo "migrate.sh: results in $OUT; cluster on 127.0.0.$((SHALE_IP_BASE + 1)).., router $ROUTER"
bash scripts/cluster.sh ${SHALE_CLUSTER_FLAGS:-} --detach >"$OUT/cluster.log" 2>&1
# TLS CA, admin user (secure default): shalectl and shale-bench read them.
# shellcheck disable=SC1091
if [ -f "$SHALE_RUN_DIR/env.sh" ]; then . "$SHALE_RUN_DIR/env.sh"; fi

echo "migrate.sh: loading $KEYS keys x $VALUE_SIZE B (~$((DATA_MB * 2)) MB)"
# shale-bench exits 1 when some requests failed (reported, not fatal here).
"$BENCH" --addr "$ROUTER" --keys "$KEYS" --value-size "$VALUE_SIZE" --load --duration 0 \
  --conns 50 --pipeline 2 --timeout 30000 --dist uniform --json --quiet >"$OUT/load.json" ||
  [ $? -eq 1 ]
printf 'load: %.1f s, %s errors\n' "$(get "$OUT/load.json" .load.seconds)" \
  "$(get "$OUT/load.json" .load.update.error_count)"

bench() { # NAME: a 50/50 run of SECS seconds (LIVE_VALUE_SIZE-byte writes)
  "$BENCH" --addr "$ROUTER" --keys "$KEYS" --value-size "$LIVE_VALUE_SIZE" --mix 50/50 \
    --conns "$CONNS" --pipeline 1 --duration "$SECS" --json --quiet >"$OUT/$1.json" ||
    [ $? -eq 1 ]
}
bench before

# A key in a slot of RANGE: the probe writes it every PROBE_MS.
lo=${RANGE%%-*}
hi=${RANGE##*-}
pkey=
for batch in 0 1 2 3 4 5 6 7; do
  keys=$(seq -f "probe$batch-%g" 0 63)
  # shellcheck disable=SC2086
  pkey=$("$CTL" --meta "$META" slot $keys |
    awk -v lo="$lo" -v hi="$hi" '$4 >= lo && $4 <= hi { print $1; exit }')
  [ -n "$pkey" ] && break
done
[ -n "$pkey" ] || { echo "migrate.sh: no probe key found in slots $RANGE" >&2; exit 3; }
probe() {
  while :; do
    if "$CTL" --router "$ROUTER" --timeout 10000 put "$pkey" x >/dev/null 2>&1; then
      date +%s%3N
    fi
    sleep "$(awk "BEGIN{print $PROBE_MS/1000}")"
  done
}
probe >"$OUT/probe.txt" &
probe_pid=$!

bench during &
bench_pid=$!
sleep 3
rate_flag=()
[ -n "${RATE:-}" ] && rate_flag=(--rate "$RATE")
t0=$(date +%s%3N)
"$CTL" --meta "$META" slot move "$RANGE" "$TO" --max-parallel "$MAX_PARALLEL" \
  "${rate_flag[@]}" --json >"$OUT/move.json" 2>"$OUT/move.log"
t1=$(date +%s%3N)
wait "$bench_pid"
bench_pid=
kill "$probe_pid" 2>/dev/null || true
probe_pid=

python3 - "$OUT" "$t0" "$t1" <<'EOF'
import json, sys
out, t0, t1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
b = json.load(open(out + "/before.json"))["run"]["total"]
d = json.load(open(out + "/during.json"))["run"]["total"]
m = json.load(open(out + "/move.json"))
ts = [int(x) for x in open(out + "/probe.txt").read().split()]
gaps = [(b2 - a, a) for a, b2 in zip(ts, ts[1:]) if t0 <= b2 and a <= t1]
gap = max(gaps)[0] if gaps else 0
print("move: %d slots, %.1f MB in %.1f s = %.1f MB/s, %s keys, %s changes replayed, "
      "longest fenced window %s ms" % (
    m.get("slots_moved", 0), m.get("bytes", 0) / 1e6, m.get("seconds", 0),
    m.get("mb_per_s", 0), m.get("keys", "?"), m.get("changes", "?"),
    m.get("max_fenced_ms", "?")))
print("50/50 x %s conns: before %.0f ops/s p99 %.1f ms; during %.0f ops/s p99 %.1f ms (%+.1f %%)" % (
    "50", b["ops_per_sec"], b["latency_ms"]["p99"], d["ops_per_sec"], d["latency_ms"]["p99"],
    100.0 * (d["ops_per_sec"] - b["ops_per_sec"]) / b["ops_per_sec"]))
print("probe: longest gap between acknowledged writes to a moving slot during the move: %d ms" % gap)
print("errors during: %s" % d.get("error_count", 0))
EOF
