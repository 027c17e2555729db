#!/usr/bin/env bash
# Install Shale to a non-default prefix and build a libshale user's program
# against that install only: with pkg-config (shared, and --static), and
# with find_package(Shale) (Shale::shale, Shale::shale_static). Each program
# then talks to a real shaled (one-node group on 127.0.0.x, plain TCP).
# Usage: test_install.sh BUILD_DIR SOURCE_DIR     (ctest test_install)
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/shale-install-XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test_install: FAIL: $*" >&2; exit 1; }

prefix="$work/opt/shale"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || fail "cmake --install"
pc="$prefix/lib/pkgconfig/shale.pc"
[ -f "$pc" ] || fail "no $pc"
# The .pc names the prefix installed to, not the configured one.
grep -qx "prefix=$prefix" "$pc" || fail "shale.pc prefix: $(grep '^prefix=' "$pc")"
for f in include/shale.h include/shale_errors.h lib/libshale.a lib/cmake/Shale/ShaleConfig.cmake \
         bin/shaled bin/shale-router bin/shalectl; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
ver=$("$prefix/bin/shalectl" --version)
grep -q "shalectl 0\." <<<"$ver" || fail "shalectl --version: $ver"
[ -f "$prefix/share/doc/shale/deploy.md" ] || fail "docs not installed"
# systemd units name this install's binaries and pass systemd's own check
# (an ExecStart that is not executable, an unknown key: any output fails).
units="$prefix/lib/systemd/system"
grep -qx "ExecStart=$prefix/bin/shaled --config /etc/shale/shaled-%i.conf" "$units/shaled@.service" \
  || fail "shaled@.service ExecStart"
grep -qx "Type=notify" "$units/shale-router.service" || fail "shale-router.service Type"
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$work/units"
  cp "$units/shaled@.service" "$units/shale-router.service" "$work/units/"
  cp "$work/units/shaled@.service" "$work/units/shaled@n1.service"
  out=$(cd "$work/units" && timeout 60 systemd-analyze verify ./shaled@n1.service ./shale-router.service 2>&1) \
    || fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
else
  echo "test_install: systemd-analyze not installed: units checked by content only"
fi

# A one-node group to talk to.
host=127.0.0.233
port=$((20000 + RANDOM % 20000))
"$prefix/bin/shaled" --id 1 --listen "$host:$port" --raft "$host:$((port + 1))" \
  --data "$work/node" >"$work/shaled.log" 2>&1 &
pid=$!
ready=0
for _ in $(seq 1 200); do
  if "$prefix/bin/shalectl" --addr "$host:$port" --timeout 500 status >/dev/null 2>&1; then
    ready=1; break
  fi
  sleep 0.1
done
[ "$ready" = 1 ] || { cat "$work/shaled.log" >&2; fail "shaled did not become ready"; }

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cflags="-std=c11 -pedantic -Wall -Wextra -Werror"
# A sync-only program pulls in no libuv header.
hdrs=$(cc -std=c11 -H -fsyntax-only -I"$prefix/include" "$src/tests/install/consumer.c" 2>&1 || true)
if grep -q "uv\.h" <<<"$hdrs"; then
  fail "shale.h includes <uv.h>: a sync-only program should not need libuv's headers"
fi
# pkg-config, shared: runs with the installed .so (rpath from the .pc's libdir).
# shellcheck disable=SC2046
cc $cflags -o "$work/pc_shared" "$src/tests/install/consumer.c" $(pkg-config --cflags --libs shale) \
  -Wl,-rpath,"$prefix/lib" || fail "pkg-config shared build"
# ldd's output is captured before it is searched: under pipefail, grep -q
# leaving early would SIGPIPE ldd and fail (or, in an if, pass) at random.
libs=$(ldd "$work/pc_shared")
grep -q "$prefix/lib/libshale.so" <<<"$libs" || fail "pc_shared does not use the installed .so: $libs"
"$work/pc_shared" "$host:$port" || fail "pc_shared run"
# pkg-config, static: no libshale.so needed at run time.
# shellcheck disable=SC2046
cc $cflags -o "$work/pc_static" "$src/tests/install/consumer.c" \
  -I"$prefix/include" "$prefix/lib/libshale.a" $(pkg-config --static --libs-only-other --libs-only-L shale) \
  $(pkg-config --static --libs libuv libprotobuf-c openssl) || fail "pkg-config static build"
libs=$(ldd "$work/pc_static")
if grep -q libshale <<<"$libs"; then fail "pc_static links libshale.so: $libs"; fi
"$work/pc_static" "$host:$port" || fail "pc_static run"
# find_package(Shale).
cmake -S "$src/tests/install" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_RPATH="$prefix/lib" >"$work/consumer.log" 2>&1 || { cat "$work/consumer.log" >&2; fail "find_package configure"; }
cmake --build "$work/consumer" >>"$work/consumer.log" 2>&1 || { cat "$work/consumer.log" >&2; fail "find_package build"; }
"$work/consumer/consumer_shared" "$host:$port" || fail "find_package shared run"
"$work/consumer/consumer_static" "$host:$port" || fail "find_package static run"
libs=$(ldd "$work/consumer/consumer_static")
if grep -q libshale <<<"$libs"; then fail "consumer_static links libshale.so: $libs"; fi
echo "test_install: ok (prefix $prefix; pkg-config shared/static, find_package shared/static)"
