#!/usr/bin/env bash
# One config-file format for shaled and shale-router (server/conftab.c):
# the examples in docs/config/ pass --check-config; what --check-config
# prints is itself a config file that reads back to the same settings;
# flags win over the file; every setting of --help is accepted in a file;
# mistakes name the file and line and exit 2.
#   test_config_files.sh BUILD_DIR SOURCE_DIR      (ctest test_config_files)
set -uo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
shaled="$build/server/shaled"
router="$build/router/shale-router"
work=$(mktemp -d "${TMPDIR:-/tmp}/shale-config-XXXXXX")
trap 'rm -rf "$work"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# check BIN FILE: --check-config passes and its output reads back the same.
roundtrip() {
  local bin=$1 file=$2 name
  name=$(basename "$file")
  if ! "$bin" --config "$file" --check-config >"$work/$name.1" 2>"$work/err"; then
    fail "$name: --check-config: $(cat "$work/err")"; return
  fi
  if ! "$bin" --config "$work/$name.1" --check-config >"$work/$name.2" 2>"$work/err"; then
    fail "$name: the dump does not read back: $(cat "$work/err")"; return
  fi
  cmp -s "$work/$name.1" "$work/$name.2" || fail "$name: the dump changed on a second pass"
}
roundtrip "$shaled" "$src/docs/config/shaled-data.conf"
roundtrip "$shaled" "$src/docs/config/shaled-meta.conf"
roundtrip "$router" "$src/docs/config/shale-router.conf"

# The examples' values are what --check-config reports.
grep -qx "group = 1" "$work/shaled-data.conf.1" || fail "shaled-data: group"
grep -qx "mode = meta" "$work/shaled-meta.conf.1" || fail "shaled-meta: mode"
grep -qx "auth = 1" "$work/shale-router.conf.1" || fail "router: auth"
grep -qx "timeout-ms = 5000" "$work/shale-router.conf.1" || fail "router: timeout-ms"

# A flag wins over the file.
out=$("$router" --config "$src/docs/config/shale-router.conf" --timeout-ms 777 --check-config)
grep -qx "timeout-ms = 777" <<<"$out" || fail "router: a flag did not win over the file"
out=$("$shaled" --heartbeat-ms=55 --config "$src/docs/config/shaled-data.conf" --check-config)
grep -qx "heartbeat-ms = 55" <<<"$out" || fail "shaled: a flag did not win over the file"

# Every setting --help lists is a file line (and --check-config prints it).
"$shaled" --id 1 --data /x --check-config >"$work/all.shaled" || fail "shaled --check-config"
"$router" --meta 127.0.0.1:1 --check-config >"$work/all.shale-router" || fail "router --check-config"
for bin in "$shaled" "$router"; do
  cp "$work/all.$(basename "$bin")" "$work/all"
  for s in $("$bin" --help | sed -n 's/^  --\([a-z0-9-]*\) .*/\1/p'); do
    case $s in config|check-config|help|version) continue ;; esac
    grep -q "^$s = " "$work/all" || fail "$(basename "$bin"): --$s is not in --check-config's output"
  done
done

# Mistakes: file and line, exit 2.
# expect BIN CODE PATTERN FILE-CONTENT
expect() {
  local bin=$1 want=$2 pat=$3 out rc
  printf '%b' "$4" >"$work/bad.conf"
  out=$("$bin" --id 1 --data /x --config "$work/bad.conf" --check-config 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ] || ! grep -qF -- "$pat" <<<"$out"; then
    fail "$(basename "$bin") with '$4' -> exit $rc (want $want): $out"
  fi
}
for bin in "$shaled"; do
  expect "$bin" 2 "bad.conf:2: unknown setting 'bogus'" "# c\nbogus = 1\n"
  expect "$bin" 2 "bad.conf:1: expected \`name = value\`" "listen 127.0.0.1:1\n"
  expect "$bin" 2 "bad.conf:1: --heartbeat-ms needs a non-negative integer" "heartbeat-ms = -3\n"
  expect "$bin" 2 "bad.conf:1: --auth is on or off" "auth = maybe\n"
done
out=$("$router" --config "$work/none.conf" 2>&1); rc=$?
{ [ $rc -eq 2 ] && grep -q "cannot open config file $work/none.conf" <<<"$out"; } || fail "router: missing file -> $rc: $out"
printf 'meta = 127.0.0.1:1\nnode-conns = 99\n' >"$work/r.conf"
out=$("$router" --config "$work/r.conf" 2>&1); rc=$?
{ [ $rc -eq 2 ] && grep -q "r.conf:2: --node-conns must be in 1..16" <<<"$out"; } || fail "router: range -> $rc: $out"
out=$("$router" --meta 127.0.0.1:1 --config 2>&1); rc=$?
{ [ $rc -eq 2 ] && grep -q "config needs a file name" <<<"$out"; } || fail "router: --config alone -> $rc: $out"

if [ $fails -ne 0 ]; then echo "$fails failed"; exit 1; fi
echo "config files: all checks passed"
