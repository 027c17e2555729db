#!/usr/bin/env bash
# What the Raft guard's rules cost: write throughput and failover time of a
# 3-voter group, build A against build B, alternated in one run.
#
#   bash tests/bench/guard_cost.sh BUILD_A BUILD_B [ROUNDS]
#
# BUILD_A, BUILD_B: build directories (e.g. a build of the commit before a
# guard change and build/). ROUNDS (default 3): each round runs A then B.
# Per run: a fresh standalone group of three shaled (election timeout 500 ms,
# heartbeat 50 ms, like scripts/cluster.sh) on 127.0.0.31-33 inside a
# network namespace of its own (so it never meets another test's ports);
# shale-bench writes (50 connections, pipeline 1, 100-byte values, 2 s
# warm-up, 8 s measured); then the leader is killed with SIGKILL and the
# failover time is the time until a write through the two others is
# acknowledged (shalectl put, 300 ms per attempt). Prints one line per run
# and the medians per build. Needs root (ip netns). Exit 0, 2 usage, 3 setup.
set -uo pipefail
if [ $# -lt 2 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  [ $# -ge 1 ] && [ "${1:-}" != "-h" ] && [ "${1:-}" != "--help" ] && exit 2
  [ $# -ge 1 ] && exit 0
  exit 2
fi
A=$(cd "$1" && pwd) || exit 2
B=$(cd "$2" && pwd) || exit 2
ROUNDS=${3:-3}
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "guard_cost: ROUNDS must be a positive number" >&2; exit 2; }
for b in "$A" "$B"; do
  for f in server/shaled cluster/shalectl tests/bench/shale-bench; do
    [ -x "$b/$f" ] || { echo "guard_cost: $b/$f missing: build it first" >&2; exit 3; }
  done
done
NS="shale-gc-$$"
WORK=$(mktemp -d /tmp/shale-guard-cost.XXXXXX)
ip netns add "$NS" || { echo "guard_cost: cannot create a network namespace (root?)" >&2; exit 3; }
ip netns exec "$NS" ip link set lo up
PIDS=()
cleanup_procs() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  PIDS=()
  ip netns del "$NS" 2>/dev/null
}
cleanup() {
  cleanup_procs
  rm -rf "$WORK"
}
trap cleanup EXIT
in_ns() { ip netns exec "$NS" "$@"; }
IC="1=127.0.0.31:7101/127.0.0.31:7001,2=127.0.0.32:7101/127.0.0.32:7001,3=127.0.0.33:7101/127.0.0.33:7001"
ALL="127.0.0.31:7001,127.0.0.32:7001,127.0.0.33:7001"
now_ms() { date +%s%3N; }

leader_of() { # BUILD -> the group's leader id, empty when none
  in_ns "$1/cluster/shalectl" --addr "$ALL" --timeout 500 --json status 2>/dev/null |
    sed -n 's/.*"leader_id":\([1-9][0-9]*\).*/\1/p'
}

# run BUILD: sets RES to "ops p99_ms failover_ms"; 1 when the group never
# elected a leader. Runs in this shell (not a subshell), so PIDS stays
# known to cleanup whatever happens.
run() {
  local b=$1 i leader="" t0 t1 others json ops p99
  PIDS=()
  for i in 1 2 3; do
    rm -rf "$WORK/n$i"
    # Not through in_ns: a backgrounded shell function is a subshell, and
    # $! must be shaled itself (ip netns exec execs it in place).
    ip netns exec "$NS" "$b/server/shaled" --id "$i" --listen "127.0.0.3$i:7001" --raft "127.0.0.3$i:7101" \
      --data "$WORK/n$i" --initial-cluster "$IC" --election-timeout-ms 500 --heartbeat-ms 50 \
      >"$WORK/n$i.log" 2>&1 &
    PIDS+=($!)
  done
  for _ in $(seq 1 100); do
    leader=$(leader_of "$b")
    [ -n "$leader" ] && break
    sleep 0.1
  done
  [ -n "$leader" ] || { RES="no leader (logs: $WORK)"; return 1; }
  json=$(in_ns "$b/tests/bench/shale-bench" --addr "$ALL" --conns 50 --pipeline 1 --warmup 2 \
         --duration 8 --mix write --json --quiet 2>/dev/null)
  ops=$(echo "$json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["run"]["update"]["ops_per_sec"]))' 2>/dev/null)
  p99=$(echo "$json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["run"]["update"]["latency_ms"]["p99"], 2))' 2>/dev/null)
  leader=$(leader_of "$b")
  [ -n "$leader" ] || { RES="no leader after the writes (logs: $WORK)"; return 1; }
  others=""
  for i in 1 2 3; do [ "$i" = "$leader" ] || others="${others:+$others,}127.0.0.3$i:7001"; done
  t0=$(now_ms)
  kill -9 "${PIDS[$((leader - 1))]}"
  until in_ns "$b/cluster/shalectl" --addr "$others" --timeout 300 put failover x >/dev/null 2>&1; do
    [ $(( $(now_ms) - t0 )) -gt 20000 ] && break
  done
  t1=$(now_ms)
  for i in "${!PIDS[@]}"; do kill -9 "${PIDS[$i]}" 2>/dev/null; wait "${PIDS[$i]}" 2>/dev/null; done
  PIDS=()
  RES="${ops:-?} ${p99:-?} $((t1 - t0))"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR + 1) / 2)]; else print "?"}'; }
: >"$WORK/A"; : >"$WORK/B"
printf '%-6s %-5s %10s %9s %12s\n' round build writes/s p99_ms failover_ms
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    b=$A; [ "$side" = B ] && b=$B
    run "$b" || { echo "guard_cost: $side: $RES" >&2; trap - EXIT; cleanup_procs; exit 3; }
    echo "$RES" >>"$WORK/$side"
    read -r ops p99 fo <<<"$RES"
    printf '%-6s %-5s %10s %9s %12s\n' "$r" "$side" "$ops" "$p99" "$fo"
  done
done
for side in A B; do
  printf 'median %-5s %10s %9s %12s\n' "$side" "$(cut -d' ' -f1 "$WORK/$side" | median)" \
    "$(cut -d' ' -f2 "$WORK/$side" | median)" "$(cut -d' ' -f3 "$WORK/$side" | median)"
done
echo "A = $A"
echo "B = $B"
