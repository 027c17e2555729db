#!/usr/bin/env bash
# README command 1: install what is missing, build, start a local Shale node
# and show it serving (a PUT and a GET through libshale via shalectl).
#
#   bash scripts/cluster.sh            # start, show the round trip, serve until Ctrl-C
#   bash scripts/cluster.sh --detach   # start, show, leave it running (stop: kill PID)
#
# Today a cluster is one single-voter shard group on 127.0.0.1; the meta group,
# more shard groups and the router join this script as they land.
# Data lives under run/ (SHALE_RUN_DIR to change); it survives restarts.
set -euo pipefail
cd "$(dirname "$0")/.."
detach=0
[ "${1:-}" = "--detach" ] && detach=1

bash scripts/deps.sh
bash scripts/build.sh build

RUN="${SHALE_RUN_DIR:-$PWD/run}"
PORT="${SHALE_PORT:-7001}"
RAFT_PORT="${SHALE_RAFT_PORT:-7101}"
ADDR="127.0.0.1:$PORT"
mkdir -p "$RUN"

if [ -f "$RUN/node1.pid" ] && kill -0 "$(cat "$RUN/node1.pid")" 2>/dev/null; then
  echo "a node started by this script is already running (pid $(cat "$RUN/node1.pid"))"
else
  # Own session: the node outlives this script (--detach) and a Ctrl-C
  # reaches it only through stop(), which waits for a clean shutdown.
  setsid ./build/server/shaled --id 1 --listen "$ADDR" --raft "127.0.0.1:$RAFT_PORT" \
      --data "$RUN/node1" >>"$RUN/node1.log" 2>&1 &
  echo $! >"$RUN/node1.pid"
  echo "started shaled pid $(cat "$RUN/node1.pid") on $ADDR (log: $RUN/node1.log)"
fi
PID=$(cat "$RUN/node1.pid")

stop() {
  echo "stopping shaled pid $PID"
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -f "$RUN/node1.pid"
}

CTL=(./build/cluster/shalectl --addr "$ADDR")
ok=0
for _ in $(seq 1 100); do
  if "${CTL[@]}" put greeting "hello from shale at $(date -u +%H:%M:%S)" >/dev/null 2>&1; then
    ok=1
    break
  fi
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
if [ $ok -ne 1 ]; then
  echo "shaled did not come up; last log lines:"
  tail -20 "$RUN/node1.log"
  stop
  exit 1
fi

echo "\$ shalectl --addr $ADDR put greeting ..."
"${CTL[@]}" put greeting "hello from shale at $(date -u +%H:%M:%S)"
echo "\$ shalectl --addr $ADDR get greeting"
"${CTL[@]}" get greeting

if [ $detach -eq 1 ]; then
  echo "shaled keeps serving on $ADDR (pid $PID); stop it with: kill $PID"
  exit 0
fi
trap 'stop; exit 0' INT TERM
echo "serving on $ADDR; press Ctrl-C to stop"
wait "$PID"
