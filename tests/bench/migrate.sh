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
# coordinator (fence to flip); the fenced windows' p50/p99/max over all the
# move's migrations and the same for each part of the window (fence
# MAP_CAS, source applies the fence, drain tail, flip MAP_CAS:
# docs/resharding.md, "The write pause"). Copies the nodes' logs to
# $OUT/logs (each step of a migration is logged there with ms timestamps),
# then stops the cluster and deletes its data (KEEP=1 keeps it).
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
  # The nodes' logs (ownership applied, map received: the fence's steps).
  mkdir -p "$OUT/logs" && cp "$SHALE_RUN_DIR"/*.log "$OUT/logs/" 2>/dev/null || true
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

mkdir -p "$OUT/logs" && cp "$SHALE_RUN_DIR"/*.log "$OUT/logs/" 2>/dev/null || true
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

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))] if v else 0
done = [j for j in m.get("migrations", []) if j.get("outcome") == "done"]
fw = [j["fenced_ms"] for j in done]
print("fenced windows (%d migrations): p50 %d ms, p99 %d ms, max %d ms" % (
    len(fw), pct(fw, 50), pct(fw, 99), max(fw) if fw else 0))
for k, what in (("fence_cas_ms", "fence MAP_CAS"), ("fence_seen_ms", "source applies the fence"),
                ("drain_ms", "drain tail + sessions"), ("flip_cas_ms", "flip MAP_CAS")):
    v = [j.get(k, 0) for j in done]
    print("  %-26s p50 %4d ms  p99 %4d ms  max %4d ms" % (what, pct(v, 50), pct(v, 99),
                                                       max(v) if v else 0))
# From the nodes' logs: the meta group commits a migration's fence (the first
# meta member's "cluster map changed ... fence") -> the first member of the source group
# applies the record with that epoch (its leader committed it).
import datetime, glob, re
def ts(line):
    return datetime.datetime.strptime(line[3:26], "%Y-%m-%dT%H:%M:%S.%f").timestamp() * 1000
meta_lines = [l for f in sorted(glob.glob(out + "/logs/meta*.log"))
              for l in open(f, errors="replace") if 'msg="cluster map changed"' in l]
fence = {} # epoch -> (first meta member's apply, migration id)
for line in meta_lines:
    g = re.search(r'epoch=(\d+) .*note="migration (\d+): fence"', line)
    if g:
        e = int(g.group(1))
        fence[e] = (min(ts(line), fence.get(e, (1e18, 0))[0]), int(g.group(2)))
src = {j["id"]: j["from"] for j in done}
first = {}
for f in glob.glob(out + "/logs/g*n*.log"):
    gid = int(re.search(r"/g(\d+)n", f).group(1))
    for line in open(f, errors="replace"):
        g = re.search(r'msg="slot ownership applied" epoch=(\d+)', line)
        if g and int(g.group(1)) in fence:
            e = int(g.group(1))
            t, mid = fence[e]
            if src.get(mid) == gid:
                first[e] = min(first.get(e, 1e18), ts(line) - t)
v = list(first.values())
if v:
    print("  %-26s p50 %4d ms  p99 %4d ms  max %4d ms  (node logs)" % (
        "fence committed in source", pct(v, 50), pct(v, 99), max(v)))
# The same for the flip ("migration N: slots ... to group G") in the target.
flip = {}
for line in meta_lines:
    g = re.search(r'epoch=(\d+) .*note="migration (\d+): slots .* to group (\d+)"', line)
    if g:
        e = int(g.group(1))
        flip[e] = (min(ts(line), flip.get(e, (1e18, 0))[0]), int(g.group(3)))
first = {}
for f in glob.glob(out + "/logs/g*n*.log"):
    gid = int(re.search(r"/g(\d+)n", f).group(1))
    for line in open(f, errors="replace"):
        g = re.search(r'msg="slot ownership applied" epoch=(\d+)', line)
        if g and int(g.group(1)) in flip and flip[int(g.group(1))][1] == gid:
            e = int(g.group(1))
            first[e] = min(first.get(e, 1e18), ts(line) - flip[e][0])
v = list(first.values())
if v:
    print("  %-26s p50 %4d ms  p99 %4d ms  max %4d ms  (node logs)" % (
        "flip committed in target", pct(v, 50), pct(v, 99), max(v)))
if "max" in d.get("latency_ms", {}):
    print("50/50 during: longest request %.1f ms" % d["latency_ms"]["max"])
EOF
