#!/usr/bin/env bash
# What scraping /metrics costs the data path, in one command:
#
#   bash tests/bench/metrics_cost.sh
#
# Starts the local cluster (scripts/cluster.sh --detach, in its own run
# directory and addresses), loads the key space, then alternates shale-bench
# runs through the router without and with a scraper that fetches /metrics
# from every process (12 nodes + router) once a second, ROUNDS times, and
# prints ops/s and p99 of each run and the mean of each kind. Stops the
# cluster and deletes its data at the end.
#
# Environment (defaults): MIX (50/50), CONNS (50), SECS (10), ROUNDS (2),
# KEYS (100000), OUT (directory for the JSON files). Needs python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/../.."

MIX="${MIX:-50/50}"
CONNS="${CONNS:-50}"
SECS="${SECS:-10}"
ROUNDS="${ROUNDS:-2}"
KEYS="${KEYS:-100000}"
OUT="${OUT:-$(mktemp -d /tmp/shale-metrics-cost.XXXXXX)}"
mkdir -p "$OUT"
export SHALE_RUN_DIR="${SHALE_RUN_DIR:-$OUT/run}"
export SHALE_IP_BASE="${SHALE_IP_BASE:-150}"
export SHALE_ROUTER_HOST="${SHALE_ROUTER_HOST:-250}"
BENCH=build/tests/bench/shale-bench
ROUTER="127.0.0.$SHALE_ROUTER_HOST:7000"
HTTP_PORT=9100
for t in python3 curl; do
  command -v $t >/dev/null || { echo "metrics_cost.sh: needs $t" >&2; exit 3; }
done

targets=()
for h in 1 2 3 11 12 13 14 21 22 23 24; do targets+=("127.0.0.$((SHALE_IP_BASE + h)):$HTTP_PORT"); done
targets+=("127.0.0.$SHALE_ROUTER_HOST:$HTTP_PORT")

cleanup() {
  [ -n "${scraper:-}" ] && kill "$scraper" 2>/dev/null || true
  bash scripts/cluster.sh --stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

bash scripts/cluster.sh ${SHALE_CLUSTER_FLAGS:-} --detach >"$OUT/cluster.log" 2>&1
# TLS CA, admin user (secure default): shalectl and shale-bench read them.
# shellcheck disable=SC1091
if [ -f "$SHALE_RUN_DIR/env.sh" ]; then . "$SHALE_RUN_DIR/env.sh"; fi
"$BENCH" --addr "$ROUTER" --keys "$KEYS" --load --duration 0 --conns 50 --pipeline 16 \
  --json --quiet >"$OUT/load.json" || [ $? -eq 1 ]

scrape() { # every target once a second; counts scrapes in $OUT/scrapes
  while :; do
    for t in "${targets[@]}"; do
      curl -s -o /dev/null "http://$t/metrics" && echo >>"$OUT/scrapes"
    done
    sleep 1
  done
}

run() { # NAME
  "$BENCH" --addr "$ROUTER" --keys "$KEYS" --mix "$MIX" --conns "$CONNS" --pipeline 1 \
    --duration "$SECS" --warmup 1 --json --quiet >"$OUT/$1.json" || [ $? -eq 1 ]
}

for r in $(seq 1 "$ROUNDS"); do
  run "plain-$r"
  : >"$OUT/scrapes"
  scrape &
  scraper=$!
  run "scraped-$r"
  kill "$scraper"
  wait "$scraper" 2>/dev/null || true
  scraper=
  echo "round $r: $(wc -l <"$OUT/scrapes") scrapes during the scraped run"
done

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
res = {"plain": [], "scraped": []}
for kind in res:
    for r in range(1, rounds + 1):
        t = json.load(open("%s/%s-%d.json" % (out, kind, r)))["run"]["total"]
        res[kind].append((t["ops_per_sec"], t["latency_ms"]["p99"]))
        print("%-8s round %d: %8.0f ops/s  p99 %6.2f ms" % (kind, r, t["ops_per_sec"],
                                                            t["latency_ms"]["p99"]))
mean = {k: sum(o for o, _ in v) / len(v) for k, v in res.items()}
print("mean: plain %.0f ops/s, scraped %.0f ops/s (%+.1f %%)" % (
    mean["plain"], mean["scraped"], 100.0 * (mean["scraped"] - mean["plain"]) / mean["plain"]))
EOF
