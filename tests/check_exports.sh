#!/usr/bin/env bash
# libshale.so exports the shale_* API and nothing else: the frame codec, the
# protobuf-c descriptors and the TLS module (tls_*) linked into it stay
# local (client/libshale.map). Usage: check_exports.sh path/to/libshale.so
set -euo pipefail
lib="$1"
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' | sort -u)
bad=$(echo "$syms" | grep -v '^shale_' || true)
if [ -n "$bad" ]; then
  echo "exports: symbols outside the shale_* API:"; echo "$bad"; exit 1
fi
for need in shale_connect shale_client_open shale_options_init shale_strerror shale_watch_async \
    shale_watch_cancel shale_watch shale_watch_revision shale_connect_async shale_close_async \
    shale_compare_and_set shale_compare_and_set_async shale_set_timeout shale_version; do
  grep -qx "$need" <<<"$syms" || { echo "exports: $need missing"; exit 1; }
done
# Shale's own calls (client/shale_internal.h, proto/errors_wire.h) stay local.
for internal in shale_call shale_call_async shale_error_to_wire; do
  if grep -qx "$internal" <<<"$syms"; then echo "exports: internal $internal exported"; exit 1; fi
done
undef=$(nm -D --undefined-only "$lib")
if ! grep -q ' U SSL_new' <<<"$undef"; then
  echo "exports: libshale.so does not take OpenSSL from libssl (TLS not linked in?)"; exit 1
fi
echo "exports: $(echo "$syms" | wc -l) symbols, all shale_*; TLS linked in, not exported"
