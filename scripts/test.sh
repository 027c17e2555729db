#!/usr/bin/env bash
# README command 2: install what is missing, build, run every test — the
# normal build, then the whole suite again under ASan+UBSan.
#   bash scripts/test.sh            # everything
#   SHALE_SKIP_ASAN=1 bash scripts/test.sh   # normal build only (quicker)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

start=$(date +%s)
echo "== build (RelWithDebInfo) =="
bash scripts/build.sh build
echo "== ctest (RelWithDebInfo) =="
(cd build && ctest --output-on-failure -j 2)

if [ "${SHALE_SKIP_ASAN:-0}" != "1" ]; then
  echo "== build (ASan+UBSan) =="
  bash scripts/build.sh build-asan -DSHALE_SANITIZE=ON -DSHALE_FUZZ_SECONDS=15
  echo "== ctest (ASan+UBSan) =="
  # The snapshot transfer test streams 64 MB here (200 MB in the normal
  # build): same code paths, a third of the sanitizer time.
  (cd build-asan && \
   SHALE_SNAP_TEST_MB=64 \
   ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -j 2)
fi
echo "== all tests passed in $(( $(date +%s) - start )) s =="
