#!/usr/bin/env bash
# Install the Debian 12 packages Shale needs, only those that are missing.
# Used by both README commands (scripts/cluster.sh, scripts/test.sh).
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config          # toolchain
  libuv1-dev librocksdb-dev libzstd-dev     # event loop, storage, compression
  libprotobuf-c-dev protobuf-c-compiler     # wire schema
  libraft-dev                               # canonical raft (0.15 on Debian 12)
  libssl-dev                                # OpenSSL 3: TLS, password hashing (scrypt)
  openssl                                   # its CLI: the CA and certificates of scripts/secure.sh
  check                                     # unit test framework
  clang libclang-rt-14-dev                  # libFuzzer for tests/fuzz
  iproute2 nftables                         # network namespaces for fault tests
  redis-tools                               # redis-cli, redis-benchmark: test_resp (the RESP port)
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}"
