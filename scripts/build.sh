#!/usr/bin/env bash
# Configure and build one build tree: scripts/build.sh [DIR] [cmake args...]
# DIR defaults to build/. Sets no flags of its own beyond the ones given.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build}"
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
