#!/usr/bin/env bash
# README command 1: install what is missing, build, start a local Shale shard
# group and show it serving.
#
#   bash scripts/cluster.sh            # start, show it serving, run until Ctrl-C
#   bash scripts/cluster.sh --detach   # start, show, leave it running
#   bash scripts/cluster.sh --stop     # stop a detached cluster and delete its data
#
# Today the local cluster is one shard group: three voters on 127.0.0.1-3
# and one read replica on 127.0.0.4 (client ports 7001-7004, Raft ports
# 7101-7104). The meta group, more shard groups and the router join this
# script as they land. Data lives under run/ (SHALE_RUN_DIR to change).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=run
case "${1:-}" in
  --detach) mode=detach ;;
  --stop) mode=stop ;;
  "") ;;
  *) echo "usage: bash scripts/cluster.sh [--detach | --stop]" >&2; exit 2 ;;
esac

RUN="${SHALE_RUN_DIR:-$PWD/run}"
VOTERS=3
NODES=4 # the 4th joins as a read replica

pid_of() { cat "$RUN/node$1.pid" 2>/dev/null || true; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

stop_all() {
  for i in $(seq 1 $NODES); do
    if alive "$i"; then
      local p
      p=$(pid_of "$i")
      kill -TERM "$p" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$RUN/node$i.pid"
  done
}

if [ $mode = stop ]; then
  stop_all
  rm -rf "$RUN"
  echo "stopped the local cluster and removed $RUN"
  exit 0
fi

bash scripts/deps.sh
bash scripts/build.sh build
mkdir -p "$RUN"

client_addr() { echo "127.0.0.$1:$((7000 + $1))"; }
raft_addr() { echo "127.0.0.$1:$((7100 + $1))"; }
INITIAL=""
for i in $(seq 1 $VOTERS); do
  INITIAL="${INITIAL:+$INITIAL,}$i=$(raft_addr "$i")/$(client_addr "$i")"
done
ALL=""
for i in $(seq 1 $NODES); do ALL="${ALL:+$ALL,}$(client_addr "$i")"; done

start_node() { # id initial-cluster
  local i=$1
  if alive "$i"; then
    echo "node $i already running (pid $(pid_of "$i"))"
    return
  fi
  # Own session: nodes outlive this script (--detach); Ctrl-C reaches them
  # only through stop_all, which waits for a clean shutdown.
  setsid ./build/server/shaled --id "$i" --listen "$(client_addr "$i")" \
    --raft "$(raft_addr "$i")" --data "$RUN/node$i" --initial-cluster "$2" \
    --election-timeout-ms 500 --heartbeat-ms 50 >>"$RUN/node$i.log" 2>&1 &
  echo $! >"$RUN/node$i.pid"
}

for i in $(seq 1 $VOTERS); do start_node "$i" "$INITIAL"; done
start_node $NODES none

CTL=(./build/cluster/shalectl --addr "$ALL")
ok=0
for _ in $(seq 1 150); do
  if "${CTL[@]}" put greeting "hello from shale at $(date -u +%H:%M:%S)" >/dev/null 2>&1; then
    ok=1
    break
  fi
  sleep 0.1
done
if [ $ok -ne 1 ]; then
  echo "the group did not elect a leader; last log lines:"
  for i in $(seq 1 $VOTERS); do tail -5 "$RUN/node$i.log"; done
  stop_all
  exit 1
fi
# The read replica (idempotent: a restart finds it already a member).
"${CTL[@]}" member add $NODES "$(raft_addr $NODES)" "$(client_addr $NODES)" --replica >/dev/null

echo "\$ shalectl --addr $ALL put greeting ..."
"${CTL[@]}" put greeting "hello from shale at $(date -u +%H:%M:%S)"
echo "\$ shalectl --addr $ALL get greeting"
"${CTL[@]}" get greeting
sleep 1
echo "\$ shalectl --addr $(client_addr $NODES) get greeting --stale 1000   # served by the read replica"
./build/cluster/shalectl --addr "$(client_addr $NODES)" get greeting --stale 1000
echo "\$ shalectl --addr $(client_addr 1) status"
./build/cluster/shalectl --addr "$(client_addr 1)" status || true

if [ $mode = detach ]; then
  echo "the cluster keeps serving on $ALL"
  echo "stop it and delete its data with: bash scripts/cluster.sh --stop"
  exit 0
fi
trap 'stop_all; exit 0' INT TERM
echo "serving on $ALL; press Ctrl-C to stop (data stays in $RUN)"
while alive 1 || alive 2 || alive 3; do sleep 1; done
