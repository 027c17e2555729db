/* The watch cache (watch_cache.h): a bounded ring of a group's recent
 * changes. Pure data structure: no I/O, no clocks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale_errors.h"
#include "watch_cache.h"

static size_t change_bytes(const wc_change_t *ch)
{
    return sizeof(*ch) + ch->klen + ch->vlen;
}

int wc_init(watch_cache_t *c, size_t max_changes, size_t max_bytes, uint64_t floor)
{
    memset(c, 0, sizeof(*c));
    c->max_changes = max_changes;
    c->max_bytes = max_bytes;
    c->floor = c->last = floor;
    if (max_changes > 0 && (c->ring = calloc(max_changes, sizeof(*c->ring))) == NULL)
        return SHALE_ENOMEM;
    return 0;
}

static wc_change_t *at(const watch_cache_t *c, size_t i)
{
    return &c->ring[(c->head + i) % c->max_changes];
}

/* Drop the oldest change: the floor rises to its revision. */
static void evict_one(watch_cache_t *c)
{
    wc_change_t *ch = at(c, 0);
    c->floor = ch->revision > c->floor ? ch->revision : c->floor;
    c->bytes -= change_bytes(ch);
    free(ch->data);
    memset(ch, 0, sizeof(*ch));
    c->head = (c->head + 1) % c->max_changes;
    c->n--;
}

void wc_reset(watch_cache_t *c, uint64_t floor)
{
    while (c->n > 0)
        evict_one(c);
    c->head = 0;
    c->bytes = 0;
    c->floor = c->last = floor;
}

void wc_free(watch_cache_t *c)
{
    if (c->ring != NULL)
        wc_reset(c, c->last);
    free(c->ring);
    free(c->slot_since);
    memset(c, 0, sizeof(*c));
}

void wc_advance(watch_cache_t *c, uint64_t revision)
{
    if (revision > c->last)
        c->last = revision;
}

int wc_append(watch_cache_t *c, uint64_t revision, uint32_t slot, wc_kind_t kind,
              const uint8_t *key, size_t klen, const uint8_t *value, size_t vlen, uint64_t version)
{
    wc_advance(c, revision);
    wc_change_t ch = {.revision = revision,
                      .version = version,
                      .slot = slot,
                      .kind = (uint8_t)kind,
                      .klen = (uint32_t)klen,
                      .vlen = (uint32_t)vlen};
    size_t need = change_bytes(&ch);
    if (c->max_changes == 0 || need > c->max_bytes) {
        /* Cannot be kept: a resume across it must be refused. */
        wc_reset(c, revision);
        return 0;
    }
    ch.data = malloc(klen + vlen ? klen + vlen : 1);
    if (ch.data == NULL) {
        wc_reset(c, revision);
        return SHALE_ENOMEM;
    }
    if (klen > 0)
        memcpy(ch.data, key, klen);
    if (vlen > 0)
        memcpy(ch.data + klen, value, vlen);
    while (c->n > 0 && (c->n == c->max_changes || c->bytes + need > c->max_bytes))
        evict_one(c);
    *at(c, c->n) = ch;
    c->n++;
    c->bytes += need;
    return 0;
}

int wc_slot_start(watch_cache_t *c, uint32_t nslots, uint32_t slot, uint64_t revision)
{
    if (c->slot_since == NULL || c->nslots != nslots) {
        uint64_t *a = calloc(nslots ? nslots : 1, sizeof(*a));
        if (a == NULL)
            return SHALE_ENOMEM;
        free(c->slot_since);
        c->slot_since = a;
        c->nslots = nslots;
    }
    if (slot < nslots)
        c->slot_since[slot] = revision;
    return 0;
}

static int matches(const wc_change_t *ch, const wc_query_t *q)
{
    if (ch->slot != q->slot)
        return 0;
    if (q->prefix)
        return ch->klen >= q->klen && (q->klen == 0 || memcmp(ch->data, q->key, q->klen) == 0);
    return ch->klen == q->klen && (q->klen == 0 || memcmp(ch->data, q->key, q->klen) == 0);
}

/* Position of the first change with revision >= rev (c->n when none). */
static size_t lower_bound(const watch_cache_t *c, uint64_t rev)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (at(c, mid)->revision < rev)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int wc_collect(const watch_cache_t *c, const wc_query_t *q, const wc_change_t ***out, size_t *n,
               uint64_t *revision, char *msg, size_t mlen)
{
    *out = NULL;
    *n = 0;
    uint64_t since = c->slot_since != NULL && q->slot < c->nslots ? c->slot_since[q->slot] : 0;
    if (q->from <= c->floor) {
        snprintf(msg, mlen,
                 "revision %llu is no longer in this member's watch cache (it keeps "
                 "revisions after %llu): re-read and watch from now",
                 (unsigned long long)q->from, (unsigned long long)c->floor);
        return SHALE_ECOMPACTED;
    }
    if (q->from <= since) {
        snprintf(msg, mlen,
                 "slot %u joined this group at revision %llu: its changes before "
                 "revision %llu are not here; re-read and watch from now",
                 q->slot, (unsigned long long)since, (unsigned long long)since + 1);
        return SHALE_ECOMPACTED;
    }
    if (q->from > c->last) {
        *revision = q->from - 1 > c->last ? q->from - 1 : c->last;
        return 0;
    }
    size_t cap = 0, nb = 0;
    const wc_change_t **arr = NULL;
    uint64_t cut = 0; /* the revision that reached a limit: stop after it */
    *revision = c->last;
    for (size_t i = lower_bound(c, q->from); i < c->n; i++) {
        const wc_change_t *ch = at(c, i);
        if (cut != 0 && ch->revision > cut) {
            *revision = ch->revision - 1;
            break;
        }
        if (!matches(ch, q))
            continue;
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            const wc_change_t **a = realloc(arr, ncap * sizeof(*a));
            if (a == NULL) {
                free(arr);
                return SHALE_ENOMEM;
            }
            arr = a;
            cap = ncap;
        }
        arr[(*n)++] = ch;
        nb += ch->klen + ch->vlen;
        if (cut == 0 && (*n >= q->max_events || nb >= q->max_bytes))
            cut = ch->revision;
    }
    *out = arr;
    return 0;
}
