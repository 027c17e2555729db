/* The allocator libraft uses (raft_heap_set): the C library's, except that
 * a realloc which must grow a block grows it geometrically.
 *
 * Why: libraft 0.15 grows arrays one element at a time with raft_realloc —
 * loading a closed segment after a truncation reallocs its entry array once
 * per batch — which is quadratic whenever realloc cannot extend a block in
 * place: under AddressSanitizer always (every realloc copies: 8,284 entries
 * took 15 s, 20,000 took 90 s, stalling a node's Raft writes past an
 * election; docs/jepsen.md, "The membership liveness stall"), and in any
 * build on a fragmented heap. Blocks stay ordinary malloc blocks (no header:
 * the spare room is what malloc_usable_size reports), so a buffer freed with
 * free() instead of raft_free(), or the other way round, stays harmless.
 *
 * Owns: nothing but the policy; never keeps state, never frees on its own. */
#ifndef SHALE_RAFT_HEAP_H
#define SHALE_RAFT_HEAP_H

#include <stddef.h>

/* Install it for the whole process (before raft_init). */
void raft_heap_install(void);

/* The realloc policy alone, for tests: like realloc(ptr, size), but when the
 * block must move it gets room for max(size, 2 * its current size). */
void *raft_heap_grow(void *ptr, size_t size);

#endif
