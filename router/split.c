/* Split by group, merge by position. See split.h for the rules. */
#include "split.h"

#include <stdlib.h>
#include <string.h>

#include "shale_errors.h"

void rt_split_free(rt_split_t *s)
{
    free(s->parts);
    free(s->idx);
    memset(s, 0, sizeof(*s));
}

int rt_split_by_group(const uint64_t *gids, size_t n, rt_split_t *out)
{
    memset(out, 0, sizeof(*out));
    out->parts = calloc(n ? n : 1, sizeof(*out->parts));
    out->idx = calloc(n ? n : 1, sizeof(*out->idx));
    if (out->parts == NULL || out->idx == NULL) {
        rt_split_free(out);
        return -1;
    }
    /* part of key i; parts found in order of first appearance. A request
     * has at most 4096 keys and few groups: the linear search is cheap. */
    size_t *part_of = calloc(n ? n : 1, sizeof(*part_of));
    if (part_of == NULL) {
        rt_split_free(out);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        size_t p = 0;
        while (p < out->nparts && out->parts[p].group != gids[i])
            p++;
        if (p == out->nparts) {
            out->parts[p].group = gids[i];
            out->nparts++;
        }
        out->parts[p].n++;
        part_of[i] = p;
    }
    size_t at = 0;
    for (size_t p = 0; p < out->nparts; p++) {
        out->parts[p].idx = out->idx + at;
        at += out->parts[p].n;
        out->parts[p].n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        rt_split_part_t *pp = &out->parts[part_of[i]];
        pp->idx[pp->n++] = i;
    }
    free(part_of);
    return 0;
}

int rt_merge_verdict(const int *codes, size_t n)
{
    if (n == 0 || codes[0] == SHALE_OK)
        return SHALE_OK;
    for (size_t i = 1; i < n; i++)
        if (codes[i] != codes[0])
            return SHALE_OK;
    return codes[0];
}

int rt_merge_place(Shale__KeyValue **merged, const size_t *idx, size_t n,
                   Shale__KeyValue *const *items, size_t nitems)
{
    if (nitems != n)
        return -1;
    for (size_t j = 0; j < n; j++)
        merged[idx[j]] = items[j];
    return 0;
}

void rt_merge_fail(Shale__KeyValue **merged, const size_t *idx, size_t n, Shale__KeyValue *kvs,
                   const ProtobufCBinaryData *keys, Shale__Error *err)
{
    for (size_t j = 0; j < n; j++) {
        Shale__KeyValue *kv = &kvs[j];
        shale__key_value__init(kv);
        kv->key = keys[idx[j]];
        kv->error = err;
        merged[idx[j]] = kv;
    }
}
