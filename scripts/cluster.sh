#!/usr/bin/env bash
# README command 1: install what is missing, build, start a local sharded
# Shale cluster and show it serving.
#
#   bash scripts/cluster.sh            # start, show it serving, run until Ctrl-C
#   bash scripts/cluster.sh --detach   # start, show, leave it running
#   bash scripts/cluster.sh --stop     # stop it (by the PIDs it recorded) and delete its data
#   bash scripts/cluster.sh --insecure [--detach]   # the same without TLS and users
#
# Secure by default (docs/security.md): a cluster CA, a certificate per
# process and for the admin client, and two users are made under
# run/secrets/ (keys and passwords mode 600). Every client port speaks TLS,
# and every process is started with --auth: the meta group first, then the
# first admin ("admin") and the service user the nodes and the router log in
# with ("svc"), then the groups and the router. run/env.sh holds the
# exports that let shalectl (and shale-bench) connect as admin.
#
# The local cluster (client port 7001 and Raft port 7101 on every node):
#   meta group     ids 1-3    on 127.0.0.1-3   (shaled --mode meta: the cluster map)
#   shard group 1  ids 11-13  on 127.0.0.11-13 (voters), id 14 on 127.0.0.14 (read replica)
#   shard group 2  ids 21-23  on 127.0.0.21-23 (voters), id 24 on 127.0.0.24 (read replica)
#   router         127.0.0.100:7000            (shale-router: the front door for clients)
# The map is created with `shalectl init` (4096 slots split evenly), then a
# dozen keys are written and read through the router. Data, logs and PID
# files live under run/ (SHALE_RUN_DIR to change). A second copy can run
# beside the first: SHALE_IP_BASE=N adds N to every host number above and
# SHALE_ROUTER_HOST moves the router (e.g. 200 and 250, with its own
# SHALE_RUN_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=run
SECURE=1
for arg in "$@"; do
  case "$arg" in
    --detach) mode=detach ;;
    --stop) mode=stop ;;
    --insecure) SECURE=0 ;;
    *) echo "usage: bash scripts/cluster.sh [--insecure] [--detach | --stop]" >&2; exit 2 ;;
  esac
done

RUN="${SHALE_RUN_DIR:-$PWD/run}"
PIDS="$RUN/pids"
GROUPS_N=2
VOTERS=3 # per group; node VOTERS+1 joins as a read replica
BASE=${SHALE_IP_BASE:-0}
ip() { echo "127.0.0.$((BASE + $1))"; } # node id -> its address
META_ADDRS="$(ip 1):7001,$(ip 2):7001,$(ip 3):7001"
ROUTER="127.0.0.${SHALE_ROUTER_HOST:-$((BASE + 100))}:7000"
RESP="${ROUTER%:*}:6379" # the router's Redis protocol port (docs/resp.md)
SHALED=./build/server/shaled
ROUTERD=./build/router/shale-router
CTL=./build/cluster/shalectl

# ---- processes, by recorded PID ------------------------------------------------

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }
# Alive and still ours: a recycled PID of an unrelated process is not.
alive() {
  local p
  p=$(pid_of "$1")
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && grep -qa shale "/proc/$p/cmdline" 2>/dev/null
}

stop_one() {
  local name=$1 p
  if alive "$name"; then
    p=$(pid_of "$name")
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      echo "$name (pid $p) did not stop within 10 s; killing it"
      kill -KILL "$p" 2>/dev/null || true
    fi
  fi
  rm -f "$PIDS/$name.pid"
}

# Router first (clients), then the shard groups, then meta (they follow it).
stop_all() {
  [ -d "$PIDS" ] || return 0
  local f name
  stop_one router
  for f in "$PIDS"/g*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    stop_one "$name"
  done
  for f in "$PIDS"/*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    stop_one "$name"
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
mkdir -p "$RUN" "$PIDS"

# start NAME CMD...: in its own session, so --detach survives this shell and
# Ctrl-C reaches the processes only through stop_all (a clean shutdown).
start() {
  local name=$1
  shift
  if alive "$name"; then
    echo "$name already running (pid $(pid_of "$name"))"
    return
  fi
  setsid "$@" >>"$RUN/$name.log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
}

fail() {
  echo "error: $1" >&2
  [ -n "${2:-}" ] && tail -5 "$RUN/$2.log" >&2
  stop_all
  exit 1
}

# ---- TLS material and passwords (secure by default) ------------------------------
SEC="$RUN/secrets"
# The CA, certificates, passwords and users: scripts/secure.sh (shared with jepsen/run).
# shellcheck source=scripts/secure.sh
. scripts/secure.sh
router_sec=()
if [ $SECURE = 1 ]; then
  secure_init "$SEC" "Shale local cluster CA" || fail "could not make the cluster CA in $SEC"
  for id in 1 2 3 $(for g in $(seq 1 $GROUPS_N); do seq $((10 * g + 1)) $((10 * g + VOTERS + 1)); done); do
    secure_cert "$SEC" "node-$id" "node-$id" "IP:$(ip "$id"), DNS:node-$id" "serverAuth, clientAuth" ||
      fail "could not make the certificate of node $id"
  done
  secure_cert "$SEC" router router "IP:${ROUTER%:*}, DNS:router" "serverAuth, clientAuth" ||
    fail "could not make the router's certificate"
  secure_cert "$SEC" admin admin "" clientAuth || fail "could not make the admin certificate"
  for u in admin svc; do secure_password "$SEC" "$u" || fail "could not make the password of $u"; done
  cat >"$RUN/env.sh" <<EOF
# Source this to talk to the local cluster as its admin: . $RUN/env.sh
export SHALE_META=$META_ADDRS SHALE_ROUTER=$ROUTER
export SHALE_TLS_CA=$SEC/ca.crt SHALE_TLS_CERT=$SEC/admin.crt SHALE_TLS_KEY=$SEC/admin.key
export SHALE_USER=admin SHALE_PASSWORD_FILE=$SEC/admin.pw
EOF
  # shalectl in this script connects as admin.
  secure_admin_env "$SEC"
  secure_flags "$SEC" router
  router_sec=("${SECURE_FLAGS[@]}")
else
  # A shell that sourced a secure cluster's env.sh must not make this
  # script's shalectl speak TLS or log in.
  secure_clear_env
  cat >"$RUN/env.sh" <<EOF
# Source this to talk to the local cluster (started with --insecure): . $RUN/env.sh
export SHALE_META=$META_ADDRS SHALE_ROUTER=$ROUTER
EOF
fi
# node_sec ID: the TLS and auth flags of node ID (none with --insecure).
node_sec() {
  if [ $SECURE = 1 ]; then
    secure_flags "$SEC" "node-$1"
    echo "${SECURE_FLAGS[*]}"
  fi
}

# Every process serves Prometheus /metrics and /health on its own host, port
# 9100 (docs/observability.md).
HTTP_PORT=9100
node_flags=(--election-timeout-ms 500 --heartbeat-ms 50 --http ":$HTTP_PORT")
# SHALE_NODE_FLAGS: extra shaled flags for every node (benchmarks, e.g.
# "--write-buffer-mb 8").
# shellcheck disable=SC2206
node_flags+=(${SHALE_NODE_FLAGS:-})

# ---- meta group ---------------------------------------------------------------------
meta_ic=""
for i in 1 2 3; do meta_ic="${meta_ic:+$meta_ic,}$i=$(ip $i):7101/$(ip $i):7001"; done
for i in 1 2 3; do
  # shellcheck disable=SC2046
  start "meta$i" "$SHALED" --mode meta --id "$i" --listen "$(ip $i):7001" \
    --raft "$(ip $i):7101" --data "$RUN/meta$i" --initial-cluster "$meta_ic" "${node_flags[@]}" \
    $(node_sec "$i")
done

# A group is up when one of its members reports itself leader.
wait_leader() { # name addrs log
  for _ in $(seq 1 150); do
    if "$CTL" --addr "$2" --timeout 500 --json status 2>/dev/null | grep -q '"role":"leader"'; then
      return 0
    fi
    sleep 0.1
  done
  fail "$1 did not elect a leader within 15 s" "$3"
}
# The first admin (the meta group's bootstrap rule: docs/security.md) and the
# service user of the nodes and the router. Idempotent: a restart finds them.
# With --auth and no user yet, the meta group answers nothing but the first
# admin's creation: that (retried until a leader takes it) is the wait.
if [ $SECURE = 1 ]; then
  users_err=$(secure_users "$SEC" "$META_ADDRS" svc:admin -- "$CTL" 2>&1 >/dev/null) ||
    fail "$users_err" meta1
else
  wait_leader "the meta group" "$META_ADDRS" meta1
fi

# ---- shard groups: voters from --initial-cluster, the replica joins empty ----
group_addrs() { # group -> client addresses of its voters
  local g=$1 a="" i
  for i in $(seq 1 $VOTERS); do a="${a:+$a,}$(ip $((10 * g + i))):7001"; done
  echo "$a"
}
for g in $(seq 1 $GROUPS_N); do
  ic=""
  for i in $(seq 1 $VOTERS); do
    id=$((10 * g + i))
    ic="${ic:+$ic,}$id=$(ip $id):7101/$(ip $id):7001"
  done
  for i in $(seq 1 $((VOTERS + 1))); do
    id=$((10 * g + i))
    join="$ic"
    [ "$i" -gt $VOTERS ] && join=none
    # shellcheck disable=SC2046
    start "g${g}n$id" "$SHALED" --id "$id" --group "$g" --meta "$META_ADDRS" \
      --listen "$(ip $id):7001" --raft "$(ip $id):7101" --data "$RUN/g${g}n$id" \
      --initial-cluster "$join" "${node_flags[@]}" $(node_sec "$id")
  done
done

for g in $(seq 1 $GROUPS_N); do
  wait_leader "group $g" "$(group_addrs "$g")" "g${g}n$((10 * g + 1))"
done

# Each group's read replica (idempotent: a restart finds it a member already).
for g in $(seq 1 $GROUPS_N); do
  id=$((10 * g + VOTERS + 1))
  "$CTL" --addr "$(group_addrs "$g")" member add "$id" "$(ip $id):7101" "$(ip $id):7001" \
    --replica >/dev/null || fail "could not add read replica $id to group $g" "g${g}n$id"
done

# ---- the cluster map ------------------------------------------------------------
export SHALE_META="$META_ADDRS"
map_json=$("$CTL" map --json) || fail "cannot read the cluster map from the meta group" meta1
if grep -q '"epoch":0,' <<<"$map_json"; then
  init=("$CTL" init --slots 4096)
  for g in $(seq 1 $GROUPS_N); do init+=(--group "$g=$(ip $((10 * g + 1))):7001"); done
  echo "\$ shalectl ${init[*]:1}"
  "${init[@]}" || fail "shalectl init failed"
else
  echo "the cluster map exists already: not running init again"
fi

# ---- the router ---------------------------------------------------------------------
if [ ! -x "$ROUTERD" ]; then
  fail "$ROUTERD is not built (the router is not in this tree yet)"
fi
start router "$ROUTERD" --listen "$ROUTER" --resp "$RESP" --meta "$META_ADDRS" --http ":$HTTP_PORT" "${router_sec[@]}"

# Healthy: every member answers, every group leads and owns the map's
# slots, and the router serves a write to each group. With --auth every
# shalectl connection is a login (one scrypt hash at the server, ~0.1 s of
# CPU, more on a loaded box), so the per-call timeout leaves room for it.
healthy() {
  local st
  st=$("$CTL" --timeout 5000 status 2>/dev/null) || return 1
  if grep -qE 'down|no leader|has not applied|no-leader' <<<"$st"; then return 1; fi
  for k in health-1 health-2 health-3 health-4; do
    "$CTL" --router "$ROUTER" --timeout 5000 put "$k" ok >/dev/null 2>&1 || return 1
  done
}
ok=0
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
  if healthy; then ok=1; break; fi
  sleep 0.2
done
[ $ok -eq 1 ] || fail "the cluster did not become healthy within 60 s (see $RUN/*.log)" router
for k in health-1 health-2 health-3 health-4; do "$CTL" --router "$ROUTER" del "$k" >/dev/null || true; done

echo
if [ $SECURE = 1 ]; then
  echo "secure by default: TLS on every client port, users on (--insecure turns both off)"
  echo "  CA $SEC/ca.crt; users admin and svc, passwords in $SEC/*.pw"
  echo "  . $RUN/env.sh   sets SHALE_TLS_CA/CERT/KEY, SHALE_USER, SHALE_PASSWORD_FILE for shalectl"
  echo
fi
echo "\$ shalectl status"
"$CTL" status

# ---- data through the router --------------------------------------------------------
echo
echo "writing and reading 12 keys through the router at $ROUTER:"
keys=()
for i in $(seq 1 12); do keys+=("user:$i"); done
declare -A group_of
while read -r key _ _ slot _ _ gid; do
  group_of[$key]="$slot $gid"
done < <("$CTL" slot "${keys[@]}")
printf '  %-10s %-6s %-6s %s\n' KEY SLOT GROUP "VALUE (read back)"
declare -A per_group
for key in "${keys[@]}"; do
  "$CTL" --router "$ROUTER" put "$key" "value of $key" >/dev/null || fail "put $key failed" router
  val=$("$CTL" --router "$ROUTER" get "$key" | head -1) || fail "get $key failed" router
  read -r slot gid <<<"${group_of[$key]}"
  per_group[$gid]=$(( ${per_group[$gid]:-0} + 1 ))
  printf '  %-10s %-6s %-6s %s\n' "$key" "$slot" "$gid" "$val"
done
for g in $(seq 1 $GROUPS_N); do echo "  group $g holds ${per_group[$g]:-0} of the 12 keys"; done
echo "\$ shalectl --router $ROUTER get user:1 --stale 1000   # any member may answer, a read replica too"
"$CTL" --router "$ROUTER" get user:1 --stale 1000 || true
first1="" first2=""
for key in "${keys[@]}"; do
  read -r _ gid <<<"${group_of[$key]}"
  [ "$gid" = 1 ] && [ -z "$first1" ] && first1=$key
  [ "$gid" = 2 ] && [ -z "$first2" ] && first2=$key
done
if [ -n "$first1" ] && [ -n "$first2" ]; then
  echo
  echo "the keys really live in their groups; asking group 1 directly:"
  echo "\$ shalectl --addr $(group_addrs 1) get $first1"
  "$CTL" --addr "$(group_addrs 1)" get "$first1" || true
  echo "\$ shalectl --addr $(group_addrs 1) get $first2      # a group-2 key: refused"
  "$CTL" --addr "$(group_addrs 1)" get "$first2" || true
fi

echo
echo "metrics: every process serves http://HOST:$HTTP_PORT/metrics (Prometheus) and /health"
echo "  meta $(ip 1) $(ip 2) $(ip 3); group 1 $(ip 11)-$((BASE + 14)); group 2 $(ip 21)-$((BASE + 24)); router ${ROUTER%:*}"
if command -v curl >/dev/null; then
  echo "\$ curl -s http://${ROUTER%:*}:$HTTP_PORT/health; curl -s http://$(ip 11):$HTTP_PORT/metrics | grep '^shale_raft_'"
  curl -s "http://${ROUTER%:*}:$HTTP_PORT/health" || true
  curl -s "http://$(ip 11):$HTTP_PORT/metrics" | grep '^shale_raft_' || true
fi
echo "live view from those metrics: ./build/cluster/shalectl top --router $ROUTER   (Ctrl-C ends it)"
echo
echo "Redis clients (redis-cli, redis-benchmark, client libraries) speak RESP to the router at $RESP (docs/resp.md):"
if [ $SECURE = 1 ]; then
  echo "  redis-cli -h ${RESP%:*} -p ${RESP##*:} --tls --cacert $SEC/ca.crt --cert $SEC/admin.crt --key $SEC/admin.key --user admin --pass \"\$(head -1 $SEC/admin.pw)\" --no-auth-warning"
else
  echo "  redis-cli -h ${RESP%:*} -p ${RESP##*:}"
fi

stop_cmd="bash scripts/cluster.sh --stop"
if [ -n "${SHALE_RUN_DIR:-}" ]; then stop_cmd="SHALE_RUN_DIR=$SHALE_RUN_DIR $stop_cmd"; fi
echo
if [ $mode = detach ]; then
  echo "the cluster keeps serving: clients use the router at $ROUTER"
  echo "  . $RUN/env.sh     # SHALE_META, SHALE_ROUTER$([ $SECURE = 1 ] && echo ", the CA, and the admin user's TLS certificate and password")"
  echo "  ./build/cluster/shalectl put k v; ./build/cluster/shalectl status"
  echo "stop it and delete its data with: $stop_cmd"
  exit 0
fi
trap 'echo; echo "stopping..."; stop_all; exit 0' INT TERM
echo "serving: clients use the router at $ROUTER (shalectl --router $ROUTER ...)"
echo "  in another shell: . $RUN/env.sh   (TLS CA, admin user; see docs/security.md)"
echo "press Ctrl-C to stop (data stays in $RUN; $stop_cmd deletes it)"
while alive router || alive meta1 || alive meta2 || alive meta3; do sleep 1; done
