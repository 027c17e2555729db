/* The partitioning function: key -> hashed part -> 64-bit hash -> slot.
 *
 * Part of the protocol: every node, router and tool must compute the same
 * slot for a key on every platform. The hash is XXH64 (seed 0), written out
 * here so no library upgrade can change it; tests pin it with fixed vectors
 * (tests/unit/test_frame.c).
 *
 * The function is versioned (SHALE_KEYHASH_VERSION). A version, once
 * released, never changes; a new one needs an upgrade path for the data
 * already placed by the old one (docs/operations.md, "Upgrading to hash
 * tags"), because a store keeps each row under the slot it was written with:
 *   v1  the whole key is hashed;
 *   v2  (current) hash tags, as in Redis Cluster: when the key holds a '{'
 *       and, after the first '{', a '}' with at least one byte between
 *       them, only those bytes are hashed; otherwise the whole key.
 *       "{user1}.a" hashes "user1"; "a{b}{c}" hashes "b"; "{{a}}" hashes
 *       "{a"; "{}a", "a{}{b}" and "a{b" hash the whole key. Keys are
 *       binary: NUL is an ordinary byte. The store records the version its
 *       rows were placed with (storage/store.h).
 * This module owns only the arithmetic: it never allocates, never fails and
 * never depends on anything but the C library. */
#ifndef SHALE_KEYHASH_H
#define SHALE_KEYHASH_H

#include <stddef.h>
#include <stdint.h>

#define SHALE_DEFAULT_SLOTS 4096u
/* The key-hash version shale_key_slot computes. */
#define SHALE_KEYHASH_VERSION 2u

uint64_t shale_hash64(const void *data, size_t len, uint64_t seed);

/* The hash tag of a key (v2 rule above): 1 with *off and *taglen naming the
 * tag's bytes inside key (taglen >= 1), or 0 when the key has none (the
 * whole key is hashed; *off and *taglen are then 0 and len). */
int shale_key_tag(const void *key, size_t len, size_t *off, size_t *taglen);

/* slot = XXH64(hashed part) % nslots (nslots > 0): the key-hash function of
 * SHALE_KEYHASH_VERSION. */
uint32_t shale_key_slot(const void *key, size_t len, uint32_t nslots);

#endif
