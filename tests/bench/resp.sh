#!/usr/bin/env bash
# redis-benchmark against Shale's router (RESP port) and against
# redis-server with AOF fsync always, in one run (issue 15's comparison):
#
#   unshare --net bash -c 'ip link set lo up && bash tests/bench/resp.sh'
#
# redis-server: --appendonly yes --appendfsync always, data in a temp
# directory, on 127.0.0.1:$REDIS_PORT. Shale: the local cluster of
# scripts/cluster.sh --insecure --detach (3 meta nodes, 2 groups of 3
# voters + 1 read replica, one router with --resp on :6379; every write
# replicated to a majority and fsynced before its reply), its own
# SHALE_RUN_DIR. Each side gets
#   redis-benchmark -t set,get,incr,mset -c 50 -d 100 -n N -q -P 1
#   redis-benchmark ... -P 16
# once with one key per command (redis-benchmark's default: every command
# on key:__rand_int__ unexpanded) and once with -r 100000 (spread keys).
# MSET of ten random keys spans slots: Shale answers CROSSSLOT, as Redis
# Cluster does, and the table says so. Prints requests/s per command.
#
# Environment (defaults): REDIS_PORT (6398), N (20000 requests per test;
# x4 with -P 16), OUT (a new directory under /tmp). Needs redis-server and
# redis-tools (apt-get install them here when missing, benchmarks only).
set -euo pipefail
HERE="$(cd "$(dirname "$0")/../.." && pwd)"
REDIS_PORT="${REDIS_PORT:-6398}"
N="${N:-20000}"
OUT="${OUT:-$(mktemp -d /tmp/shale-resp-bench.XXXXXX)}"
RUN_DIR="$OUT/run"
RESP_ADDR=127.0.0.100
RESP_PORT=6379
mkdir -p "$OUT"

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "resp.sh: installing redis-server redis-tools (apt-get)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get install -y -q redis-server redis-tools >/dev/null
fi

redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  if [ -d "$RUN_DIR/pids" ]; then
    (cd "$HERE" && SHALE_RUN_DIR="$RUN_DIR" bash scripts/cluster.sh --stop >/dev/null 2>&1) || true
  fi
}
trap cleanup EXIT

declare -A RPS
# bench SIDE HOST PORT: the four tests at pipeline 1 and 16, one key and
# spread keys; RPS[side,test,pipeline,keys] = requests/s (or the error).
bench() {
  local side=$1 host=$2 port=$3 p keys n args csv
  for keys in one spread; do
    for p in 1 16; do
      n=$N; [ "$p" = 16 ] && n=$((N * 4))
      args=(-h "$host" -p "$port" -t set,get,incr,mset -c 50 -d 100 -n "$n" -P "$p" --csv)
      [ "$keys" = spread ] && args+=(-r 100000)
      csv="$OUT/$side-$keys-P$p.csv"
      redis-benchmark "${args[@]}" >"$csv" 2>"$OUT/$side-$keys-P$p.err" || true
      for t in SET GET INCR MSET; do
        local v
        v=$(awk -F'"' -v t="$t" '$2 ~ "^" t {print $4; exit}' "$csv")
        if [ -z "$v" ]; then
          if grep -q CROSSSLOT "$OUT/$side-$keys-P$p.err" "$csv" 2>/dev/null; then v=CROSSSLOT; else v=-; fi
        fi
        RPS[$side,$t,$p,$keys]=$v
      done
    done
  done
}

echo "resp.sh: $(date -u +%FT%TZ), tree $HERE ($(cd "$HERE" && git rev-parse --short HEAD 2>/dev/null || echo '?')), load $(cut -d' ' -f1-3 /proc/loadavg); results in $OUT"
mkdir -p "$OUT/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$OUT/redis" --save "" \
  --appendonly yes --appendfsync always --daemonize no >"$OUT/redis/log" 2>&1 &
redis_pid=$!
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
bench redis 127.0.0.1 "$REDIS_PORT"
kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; redis_pid=""

(cd "$HERE" && SHALE_RUN_DIR="$RUN_DIR" bash scripts/cluster.sh --insecure --detach >"$OUT/cluster.log" 2>&1) || {
  echo "resp.sh: the cluster did not start (see $OUT/cluster.log)" >&2
  exit 3
}
for _ in $(seq 1 100); do redis-cli -h "$RESP_ADDR" -p "$RESP_PORT" set resp-bench-ready 1 >/dev/null 2>&1 && break; sleep 0.2; done
bench shale "$RESP_ADDR" "$RESP_PORT"

echo "resp.sh: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
for keys in one spread; do
  if [ "$keys" = one ]; then echo; echo "one key per command (redis-benchmark's default), requests/s:";
  else echo; echo "spread keys (-r 100000), requests/s:"; fi
  printf '%-8s %14s %14s %14s %14s\n' command "Shale -P 1" "Redis -P 1" "Shale -P 16" "Redis -P 16"
  for t in SET GET INCR MSET; do
    printf '%-8s %14s %14s %14s %14s\n' "$t" "${RPS[shale,$t,1,$keys]}" "${RPS[redis,$t,1,$keys]}" \
      "${RPS[shale,$t,16,$keys]}" "${RPS[redis,$t,16,$keys]}"
  done
done
