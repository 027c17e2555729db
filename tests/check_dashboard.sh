#!/usr/bin/env bash
# docs/grafana-shale.json against the code: the file is valid JSON (when
# python3 is there to say so), and every shale_* metric a panel queries is
# one that server/obs.c or router/obs.c registers.
#   check_dashboard.sh SOURCE_DIR
set -uo pipefail
src=${1:?usage: check_dashboard.sh SOURCE_DIR}
dash=$src/docs/grafana-shale.json
fails=0
if command -v python3 >/dev/null 2>&1; then
  if ! python3 -m json.tool "$dash" >/dev/null; then
    echo "FAIL: $dash is not valid JSON"
    fails=$((fails + 1))
  fi
else
  echo "note: no python3, JSON syntax not checked"
fi
# Names in queries ("expr" fields); histogram series end in _bucket.
names=$(grep -o '"expr": "[^"]*\(\\"[^"]*\)*"' "$dash" | grep -o 'shale_[a-z_]*' |
        sed 's/_bucket$//; s/_count$//; s/_sum$//' | sort -u)
if [ -z "$names" ]; then
  echo "FAIL: no shale_* metric found in the dashboard's queries"
  fails=$((fails + 1))
fi
for n in $names; do
  if ! grep -q "\"$n\"" "$src/server/obs.c" "$src/router/obs.c"; then
    echo "FAIL: the dashboard queries $n, which no process exports"
    fails=$((fails + 1))
  fi
done
if [ $fails -ne 0 ]; then
  echo "$fails failed"
  exit 1
fi
echo "dashboard: $(echo "$names" | wc -l) metric names checked, all exported"
