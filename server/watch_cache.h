/* The watch cache: the recent changes of one shard group, as this member
 * applied them, for WATCH (watch.c; docs/protocol.md, "Watch").
 *
 * What this file owns: a bounded ring of changes (revision = the Raft index
 * of the entry that made it, slot, kind, key, value, version) in revision
 * order, its floor (every change with a revision above the floor is here),
 * the last revision applied, and per slot the revision from which this
 * group holds the slot's history (a slot that moved in has no history here
 * before its flip). The ring is bounded by a count and by bytes; the oldest
 * changes are dropped first and the floor rises to their revision.
 *
 * Rules:
 *  - appends come in revision order (a revision may have several changes:
 *    one Raft entry); a query never splits a revision: an answer covers
 *    whole revisions only;
 *  - a query from a revision at or below the floor (or the slot's start)
 *    is SHALE_ECOMPACTED: the cache cannot prove it has every change after
 *    it, so it never answers with a gap;
 *  - a cache starts empty with the floor at the applied index (after a
 *    restart, or a checkpoint swapped in: wc_reset).
 *
 * Pure: no I/O, no clocks, no shaled state; tests drive it directly. */
#ifndef SHALE_WATCH_CACHE_H
#define SHALE_WATCH_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef enum wc_kind {
    WC_PUT = 1, /* shale.WatchKind values */
    WC_DELETE = 2,
    WC_EXPIRE = 3,
} wc_kind_t;

typedef struct wc_change {
    uint64_t revision;
    uint64_t version;
    uint32_t slot;
    uint8_t kind; /* wc_kind_t */
    uint32_t klen;
    uint32_t vlen;
    uint8_t *data; /* key then value (malloc, owned by the cache) */
} wc_change_t;

typedef struct watch_cache {
    wc_change_t *ring; /* max_changes entries (malloc) */
    size_t max_changes, head, n;
    size_t bytes, max_bytes;
    uint64_t floor;       /* every change with revision > floor is in the ring */
    uint64_t last;        /* highest revision applied (wc_advance / wc_append) */
    uint64_t *slot_since; /* per slot (nslots, malloc; NULL: none yet) */
    uint32_t nslots;
} watch_cache_t;

/* max_changes 0: nothing is kept (every resume is COMPACTED, only "from
 * now" works). floor: the applied index now. 0 or SHALE_ENOMEM. */
int wc_init(watch_cache_t *c, size_t max_changes, size_t max_bytes, uint64_t floor);
void wc_free(watch_cache_t *c);

/* Record one change made by the entry at `revision` (>= c->last). key and
 * value are copied. Evicts the oldest changes to stay within the bounds.
 * 0 or SHALE_ENOMEM (then the floor rises past revision: a resume across it
 * is COMPACTED, never a gap). */
int wc_append(watch_cache_t *c, uint64_t revision, uint32_t slot, wc_kind_t kind,
              const uint8_t *key, size_t klen, const uint8_t *value, size_t vlen, uint64_t version);

/* The entry at revision was applied (with or without changes). */
void wc_advance(watch_cache_t *c, uint64_t revision);

/* Forget every change: the floor and last become `floor` (the state jumped,
 * e.g. a checkpoint was swapped in). */
void wc_reset(watch_cache_t *c, uint64_t floor);

/* This group holds slot's history from after `revision` on (the slot moved
 * in at that entry). nslots: the cluster's slot count. 0 or SHALE_ENOMEM. */
int wc_slot_start(watch_cache_t *c, uint32_t nslots, uint32_t slot, uint64_t revision);

typedef struct wc_query {
    const uint8_t *key; /* the key, or the prefix */
    size_t klen;
    int prefix;
    uint32_t slot;     /* the key's / prefix's slot */
    uint64_t from;     /* first revision wanted (>= 1) */
    size_t max_events; /* stop after the revision that reaches it */
    size_t max_bytes;  /* ... or that reaches this many key + value bytes */
} wc_query_t;

/* The changes matching q from q->from on, in order: *out (malloc'd array of
 * pointers into the cache, valid until the next append/reset; the caller
 * frees the array) and *n. *revision: every revision in [from, *revision]
 * was examined (from - 1 when this member has not applied from yet).
 * 0, SHALE_ECOMPACTED (from at or below the floor or the slot's start; msg
 * says which) or SHALE_ENOMEM. */
int wc_collect(const watch_cache_t *c, const wc_query_t *q, const wc_change_t ***out, size_t *n,
               uint64_t *revision, char *msg, size_t mlen);

#endif
