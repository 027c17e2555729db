#!/usr/bin/env bash
# Shale against Redis (AOF fsync always) in one run, with CPU per write:
#
#   bash tests/bench/peers.sh
#
# Starts redis-server (--appendonly yes --appendfsync always, on a loopback
# port, data in a temp directory) and runs redis-benchmark -c 50 -d 100
# -r 100000 (SET and GET, pipeline 1 and 16); stops it; then starts Shale's
# local cluster (scripts/cluster.sh --detach with its own SHALE_RUN_DIR: 3
# meta nodes, 2 groups of 3 voters + 1 read replica, one router), loads
# KEYS keys and runs shale-bench through the router (100-byte values,
# zipfian): writes and linearizable reads at 50 x 1 and 50 x 16, and one
# connection writing at pipeline 1. Prints the table, the Shale/Redis
# ratios and, for every write run, the CPU (utime + stime from
# /proc/PID/stat over the measured run) per acknowledged write by role:
# leader, follower, read replica (per process of the role, i.e. what one
# member of the write's group spends), router, meta, and the sum over all
# processes; and the context switches per write over every thread of every
# process (/proc/PID/task/*/status: each is a sleep or a preemption, the
# wake-ups a write costs). The cluster is stopped at the end.
#
# redis-server/redis-tools are installed with apt-get only when missing, and
# only by this script (never for the tests).
#
# Environment (defaults): SHALE_ROOT (this tree: whose build/ and
# scripts/cluster.sh are used -- point it at another checkout to A/B
# builds), REDIS (1; 0 skips Redis), REDIS_PORT (6399), DURATION (8),
# WARMUP (2), SHALE_CLUSTER_FLAGS ("--insecure": no TLS, no users), KEYS (100000),
# RUNS ("w1 r1 w16 r16 w1x1"; w = write, r =
# read, the number the pipeline, w1x1 one connection), OUT (results; a new
# directory under /tmp). Needs jq.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/../.." && pwd)"
ROOT="$(cd "${SHALE_ROOT:-$HERE}" && pwd)"
REDIS="${REDIS:-1}"
REDIS_PORT="${REDIS_PORT:-6399}"
DURATION="${DURATION:-8}"
WARMUP="${WARMUP:-2}"
KEYS="${KEYS:-100000}"
RUNS="${RUNS:-w1 r1 w16 r16 w1x1}"
OUT="${OUT:-$(mktemp -d /tmp/shale-peers.XXXXXX)}"
mkdir -p "$OUT"
BENCH="$ROOT/build/tests/bench/shale-bench"
CTL="$ROOT/build/cluster/shalectl"
ROUTER=127.0.0.100:7000
RUN_DIR="$OUT/run"
HZ=$(getconf CLK_TCK)

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi
command -v jq >/dev/null || { echo "peers.sh: needs jq" >&2; exit 3; }

redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  if [ -d "$RUN_DIR/pids" ]; then
    (cd "$ROOT" && SHALE_RUN_DIR="$RUN_DIR" bash scripts/cluster.sh --stop >/dev/null 2>&1) || true
  fi
}
trap cleanup EXIT

# CPU ticks (utime + stime) of a PID, 0 when it is gone.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Context switches (voluntary + involuntary) over every thread of a PID so
# far: each is a sleep or a preemption, the wake-ups a write pays for.
ctxsw() {
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^(non)?voluntary_ctxt_switches:/ {n += $2} END {print n + 0}'
}

echo "peers.sh: $(date -u +%FT%TZ), tree $ROOT ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "peers.sh: load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores; results in $OUT"

# ---- Redis ------------------------------------------------------------------
declare -A R
if [ "$REDIS" != 0 ]; then
  if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "peers.sh: installing redis-server redis-tools (apt-get)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get install -y -q redis-server redis-tools >/dev/null
  fi
  mkdir -p "$OUT/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$OUT/redis" --save "" \
    --appendonly yes --appendfsync always --daemonize no >"$OUT/redis/log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 1 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  rb() { # name requests extra-args...: ops/s
    local name=$1 n=$2
    shift 2
    local t0 t1
    t0=$(ticks "$redis_pid")
    redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c 50 -d 100 -r 100000 -n "$n" --csv "$@" \
      >"$OUT/redis/$name.csv" 2>/dev/null
    t1=$(ticks "$redis_pid")
    R[$name]=$(awk -F'"' 'NR>1 {print $4; exit}' "$OUT/redis/$name.csv")
    R[${name}_p99]=$(awk -F'"' 'NR>1 {print $14; exit}' "$OUT/redis/$name.csv")
    R[${name}_cpu]=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$n" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
  }
  rb set1 200000 -t set
  rb get1 400000 -t get
  rb set16 1000000 -t set -P 16
  rb get16 2000000 -t get -P 16
  kill "$redis_pid"
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=""
fi

# ---- Shale --------------------------------------------------------------------
# shellcheck disable=SC2086
(cd "$ROOT" && SHALE_RUN_DIR="$RUN_DIR" bash scripts/cluster.sh ${SHALE_CLUSTER_FLAGS:-} --detach \
  >"$OUT/cluster.log" 2>&1) || {
  echo "peers.sh: the cluster did not start (see $OUT/cluster.log)" >&2
  exit 3
}
# The TLS CA and admin user of the secure default (none with --insecure):
# shalectl and shale-bench read them from the environment.
# shellcheck disable=SC1091
if [ -f "$RUN_DIR/env.sh" ]; then . "$RUN_DIR/env.sh"; fi

# Role of every process, from the members' own status.
declare -A ROLE
ROLE[$(cat "$RUN_DIR/pids/router.pid")]=router
for f in "$RUN_DIR"/pids/meta*.pid; do ROLE[$(cat "$f")]=meta; done
roles() {
  local f name id st role kind
  for f in "$RUN_DIR"/pids/g*.pid; do
    name=$(basename "$f" .pid)
    id=${name#*n}
    st=$("$CTL" --addr "127.0.0.$id:7001" --timeout 1000 --json status 2>/dev/null || true)
    read -r role kind < <(jq -r --arg a "127.0.0.$id:7001" \
      '[.. | objects | select(.client? == $a)][0] | "\(.role // "?") \(.kind // "?")"' \
      <<<"$st" 2>/dev/null || echo "? ?")
    if [ "$role" = leader ]; then
      ROLE[$(cat "$f")]=leader
    elif [ "$kind" = replica ]; then
      ROLE[$(cat "$f")]=replica
    else
      ROLE[$(cat "$f")]=follower
    fi
  done
}
roles
declare -A NROLE=()
for pid in "${!ROLE[@]}"; do NROLE[${ROLE[$pid]}]=$((${NROLE[${ROLE[$pid]}]:-0} + 1)); done
echo "peers.sh: processes: ${NROLE[leader]:-0} leaders, ${NROLE[follower]:-0} followers," \
  "${NROLE[replica]:-0} replicas, ${NROLE[router]:-0} router, ${NROLE[meta]:-0} meta"

bench() { # name args...
  local name=$1
  shift
  "$BENCH" --addr "$ROUTER" --keys "$KEYS" --value-size 100 --dist zipfian --json --quiet "$@" \
    >"$OUT/$name.json" 2>"$OUT/$name.log" || true
}
get() { jq -r "$2 // 0" "$1"; }

echo "peers.sh: loading $KEYS keys"
bench load --load --duration 0 --conns 50 --pipeline 16

declare -A S CPU CSW
for run in $RUNS; do
  mix=write conns=50 p=${run#?}
  [ "${run:0:1}" = r ] && mix=read
  if [ "$run" = w1x1 ]; then conns=1 p=1; fi
  bench "warm-$run" --mix "$mix" --conns "$conns" --pipeline "$p" --duration "$WARMUP"
  declare -A T0=() C0=()
  for pid in "${!ROLE[@]}"; do T0[$pid]=$(ticks "$pid"); C0[$pid]=$(ctxsw "$pid"); done
  bench "$run" --mix "$mix" --conns "$conns" --pipeline "$p" --duration "$DURATION"
  declare -A SUM=([leader]=0 [follower]=0 [replica]=0 [router]=0 [meta]=0)
  csw=0
  for pid in "${!ROLE[@]}"; do
    SUM[${ROLE[$pid]}]=$((SUM[${ROLE[$pid]}] + $(ticks "$pid") - T0[$pid]))
    csw=$((csw + $(ctxsw "$pid") - C0[$pid]))
  done
  f="$OUT/$run.json"
  S[$run]=$(get "$f" .run.total.ops_per_sec)
  S[${run}_p50]=$(get "$f" .run.total.latency_ms.p50)
  S[${run}_p99]=$(get "$f" .run.total.latency_ms.p99)
  S[${run}_err]=$(get "$f" .run.total.error_count)
  n=$(get "$f" .run.total.count)
  # Per process of the role: a write reaches one leader, two followers and
  # one replica of its group, and the router.
  CPU[$run]=$(awk -v n="$n" -v hz="$HZ" -v l="${SUM[leader]}" -v f="${SUM[follower]}" \
    -v r="${SUM[replica]}" -v ro="${SUM[router]}" -v m="${SUM[meta]}" 'BEGIN {
      if (n == 0) { print "- - - - - -"; exit }
      u = 1e6 / hz / n
      printf "%.1f %.1f %.1f %.1f %.1f %.1f", l * u, f * u / 2, r * u, ro * u, m * u,
        (l + f + r + ro + m) * u }')
  CSW[$run]=$(awk -v n="$n" -v c="$csw" 'BEGIN { if (n > 0) printf "%.1f", c / n; else print "-" }')
  roles # a leader may have changed (not expected; shown by the errors column)
done

# ---- Report -------------------------------------------------------------------
echo "peers.sh: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
printf '\n%-22s %12s %9s %9s %7s %14s %12s %8s\n' run "Shale ops/s" "p50 ms" "p99 ms" errors \
  "Redis AOF/s" "Redis p99" ratio
line() { # label run redis-key
  local rr="${R[$3]:-}" rp="${R[${3}_p99]:-}"
  printf '%-22s %12.0f %9.2f %9.2f %7s %14s %12s %8s\n' "$1" "${S[$2]:-0}" "${S[${2}_p50]:-0}" \
    "${S[${2}_p99]:-0}" "${S[${2}_err]:-0}" "${rr:--}" "${rp:--}" "$(ratio "${S[$2]:-0}" "${rr:-0}")"
}
for run in $RUNS; do
  case $run in
  w1) line "writes 50 x 1" w1 set1 ;;
  r1) line "reads 50 x 1 (linear.)" r1 get1 ;;
  w16) line "writes 50 x 16" w16 set16 ;;
  r16) line "reads 50 x 16" r16 get16 ;;
  w1x1) line "writes 1 x 1" w1x1 none ;;
  esac
done
printf '\nCPU us per acknowledged write (per process of the role; sum = all processes):\n'
printf '%-16s %8s %9s %8s %7s %6s %7s %10s\n' run leader follower replica router meta sum \
  "ctxsw/op"
for run in $RUNS; do
  [ "${run:0:1}" = w ] || continue
  # shellcheck disable=SC2086
  printf '%-16s %8s %9s %8s %7s %6s %7s %10s\n' "$run" ${CPU[$run]} "${CSW[$run]}"
done
if [ -n "${R[set1_cpu]:-}" ]; then
  printf 'redis-server CPU us per SET: %s at pipeline 1, %s at pipeline 16\n' \
    "${R[set1_cpu]}" "${R[set16_cpu]}"
fi
