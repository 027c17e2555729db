/* The partitioning function: key -> 64-bit hash -> slot.
 *
 * Part of the protocol: every node, router and client must compute the same
 * slot for a key on every platform and in every version, forever. The hash is
 * XXH64 (seed 0), written out here so no library upgrade can change it;
 * tests pin it with fixed vectors. */
#ifndef SHALE_KEYHASH_H
#define SHALE_KEYHASH_H

#include <stddef.h>
#include <stdint.h>

#define SHALE_DEFAULT_SLOTS 4096u

uint64_t shale_hash64(const void *data, size_t len, uint64_t seed);

/* slot = hash % nslots (nslots > 0). */
uint32_t shale_key_slot(const void *key, size_t len, uint32_t nslots);

#endif
