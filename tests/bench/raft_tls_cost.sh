#!/usr/bin/env bash
# What mutual TLS on the Raft port costs: a 3-voter group run three ways in
# one go, one run each (ROUNDS to repeat):
#   plain      no TLS anywhere (BUILD's shaled);
#   tls-client TLS on the client port only (BASE's shaled: a build from
#              before Raft TLS, same flags);
#   tls-all    TLS on the client and Raft ports (BUILD's shaled).
# tls-client vs tls-all isolates the Raft port's share.
#
#   bash tests/bench/raft_tls_cost.sh BUILD BASE [ROUNDS]
#
# Per run: a fresh group on 127.0.0.41-43 in a network namespace of its own;
# shale-bench (BUILD's, TLS from $SHALE_TLS_*) writes with 50 connections
# (2 s warm-up, 8 s measured) and then with 1 connection, pipeline 1 (the
# commit latency: p50/p99 of one write at a time, 5 s). CPU: utime+stime of
# the three shaled summed over the 50-connection phase (warm-up included),
# divided by the writes made in it (ops/s x 10 s): µs of CPU per write.
# Certificates are made with the openssl commands of docs/security.md. Needs root (ip netns) and openssl. Exit 0, 2 usage, 3 setup.
set -uo pipefail
[ $# -ge 2 ] || { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
B=$(cd "$1" && pwd) || exit 2
BASE=$(cd "$2" && pwd) || exit 2
ROUNDS=${3:-1}
for f in "$B/server/shaled" "$BASE/server/shaled" "$B/tests/bench/shale-bench" "$B/cluster/shalectl"; do
  [ -x "$f" ] || { echo "raft_tls_cost: $f missing: build it first" >&2; exit 3; }
done
NS="shale-rtc-$$"
WORK=$(mktemp -d /tmp/shale-raft-tls-cost.XXXXXX)
ip netns add "$NS" || { echo "raft_tls_cost: cannot create a network namespace (root?)" >&2; exit 3; }
ip netns exec "$NS" ip link set lo up
PIDS=()
cleanup_procs() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  PIDS=()
}
cleanup() { cleanup_procs; ip netns del "$NS" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
in_ns() { ip netns exec "$NS" "$@"; }

# The PKI, with the commands docs/security.md gives operators.
(
  cd "$WORK" || exit 3
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout ca.key -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  for n in 41 42 43 bench; do
    san="IP:127.0.0.$n"; [ "$n" = bench ] && san="DNS:bench"
    printf '%s\n' 'basicConstraints = CA:FALSE' 'keyUsage = critical, digitalSignature' \
      'extendedKeyUsage = serverAuth, clientAuth' "subjectAltName = $san" > "n$n.ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=node-$n" -keyout "n$n.key" -out "n$n.csr"
    openssl x509 -req -in "n$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile "n$n.ext" -out "n$n.crt"
  done
) >"$WORK/pki.log" 2>&1 || { echo "raft_tls_cost: openssl failed (see $WORK/pki.log)" >&2; exit 3; }

IC="1=127.0.0.41:7101/127.0.0.41:7001,2=127.0.0.42:7101/127.0.0.42:7001,3=127.0.0.43:7101/127.0.0.43:7001"
ALL="127.0.0.41:7001,127.0.0.42:7001,127.0.0.43:7001"
cpu_ticks() { local t=0 p; for p in "${PIDS[@]}"; do
  t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }

run() { # MODE -> RES "ops p99 cpu_us_per_write lat_p50 lat_p99"
  local mode=$1 bin=$B i tls=() env=() leader t0 t1 json ops p99 cpu l50 l99
  [ "$mode" = tls-client ] && bin=$BASE
  PIDS=()
  for i in 1 2 3; do
    rm -rf "$WORK/d$i"
    tls=()
    [ "$mode" != plain ] && tls=(--tls-ca "$WORK/ca.crt" --tls-cert "$WORK/n4$i.crt" --tls-key "$WORK/n4$i.key")
    ip netns exec "$NS" "$bin/server/shaled" --id "$i" --listen "127.0.0.4$i:7001" \
      --raft "127.0.0.4$i:7101" --data "$WORK/d$i" --initial-cluster "$IC" \
      --election-timeout-ms 500 --heartbeat-ms 50 "${tls[@]}" >"$WORK/$mode-$i.log" 2>&1 &
    PIDS+=($!)
  done
  env=()
  [ "$mode" != plain ] && env=(SHALE_TLS_CA="$WORK/ca.crt" SHALE_TLS_CERT="$WORK/nbench.crt" SHALE_TLS_KEY="$WORK/nbench.key")
  leader=""
  for _ in $(seq 1 100); do
    leader=$(in_ns env "${env[@]}" "$B/cluster/shalectl" --addr "$ALL" --timeout 500 --json status 2>/dev/null |
      sed -n 's/.*"leader_id":\([1-9][0-9]*\).*/\1/p')
    [ -n "$leader" ] && break
    sleep 0.1
  done
  [ -n "$leader" ] || { RES="no leader (logs: $WORK)"; return 1; }
  t0=$(cpu_ticks)
  json=$(in_ns env "${env[@]}" "$B/tests/bench/shale-bench" --addr "$ALL" --conns 50 --pipeline 1 \
    --warmup 2 --duration 8 --mix write --json --quiet 2>/dev/null)
  t1=$(cpu_ticks)
  ops=$(echo "$json" | jget 'round(d["run"]["update"]["ops_per_sec"])')
  p99=$(echo "$json" | jget 'round(d["run"]["update"]["latency_ms"]["p99"], 2)')
  cpu=$(python3 -c "print(round(($t1 - $t0) * 1e6 / $(getconf CLK_TCK) / max(1, ${ops:-0} * 10)))")
  json=$(in_ns env "${env[@]}" "$B/tests/bench/shale-bench" --addr "$ALL" --conns 1 --pipeline 1 \
    --warmup 1 --duration 5 --mix write --json --quiet 2>/dev/null)
  l50=$(echo "$json" | jget 'round(d["run"]["update"]["latency_ms"]["p50"], 3)')
  l99=$(echo "$json" | jget 'round(d["run"]["update"]["latency_ms"]["p99"], 3)')
  cleanup_procs
  RES="${ops:-?} ${p99:-?} ${cpu:-?} ${l50:-?} ${l99:-?}"
}

printf '%-6s %-11s %10s %9s %13s %13s %13s\n' round mode "writes/s" p99_ms cpu_us/write 1conn_p50_ms 1conn_p99_ms
for r in $(seq 1 "$ROUNDS"); do
  for mode in plain tls-client tls-all; do
    run "$mode" || { echo "raft_tls_cost: $mode: $RES" >&2; trap - EXIT; cleanup_procs; exit 3; }
    read -r ops p99 cpu l50 l99 <<<"$RES"
    printf '%-6s %-11s %10s %9s %13s %13s %13s\n' "$r" "$mode" "$ops" "$p99" "$cpu" "$l50" "$l99"
  done
done
echo "BUILD = $B"
echo "BASE  = $BASE (tls-client)"
