/* Multi-key requests across shard groups: split MGET/MPUT keys by group,
 * merge the parts' answers back in request order.
 *
 * Pure: no I/O, no map access (the caller gives each key's group); the
 * unit tests drive it directly.
 *
 * Rules:
 *  - one part per distinct group, parts in order of first appearance, keys
 *    inside a part in request order (so a part's answer items map back by
 *    position);
 *  - a part that failed answers each of its keys with a per-key error
 *    (KeyValue.error), never the whole request — unless every part failed
 *    with the same code, which is then the whole request's error;
 *  - a part answer must carry exactly one item per key it was asked. */
#ifndef SHALE_RT_SPLIT_H
#define SHALE_RT_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "shale.pb-c.h"

typedef struct rt_split_part {
    uint64_t group;
    size_t n;
    size_t *idx; /* positions in the request, ascending (into rt_split_t.idx) */
} rt_split_part_t;

typedef struct rt_split {
    size_t nparts;
    rt_split_part_t *parts; /* malloc */
    size_t *idx;            /* malloc, one entry per key */
} rt_split_t;

/* gids[i]: the group of key i. 0, or -1 on out of memory (out then holds
 * nothing). Free with rt_split_free. */
int rt_split_by_group(const uint64_t *gids, size_t n, rt_split_t *out);
void rt_split_free(rt_split_t *s);

/* The common error code when all n part codes are the same error, else
 * SHALE_OK (answer key by key). */
int rt_merge_verdict(const int *codes, size_t n);

/* Put a part's answer items at their request positions in merged. Returns
 * 0, or -1 when the part answered nitems items for n keys. */
int rt_merge_place(Shale__KeyValue **merged, const size_t *idx, size_t n,
                   Shale__KeyValue *const *items, size_t nitems);

/* Answer each key of a failed part with err: kvs (n entries, the caller's
 * storage, alive until merged is packed) are filled and placed. keys are
 * the request's keys by request position. */
void rt_merge_fail(Shale__KeyValue **merged, const size_t *idx, size_t n, Shale__KeyValue *kvs,
                   const ProtobufCBinaryData *keys, Shale__Error *err);

#endif
