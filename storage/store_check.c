/* Replica consistency check: per-slot checksums (store_check.h).
 *
 * The checksum is FNV-1a 64 chained over each row in key order, every row
 * framed as [klen:4 BE][key without the slot][vlen:4 BE][value]: the
 * framing keeps ("ab","c") and ("a","bc") apart, the chaining makes the
 * sum depend on every row and its place. Not cryptographic: it finds
 * accidental divergence (a lost or extra write, a bit flip), not forgery. */
#include "store_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

static uint64_t fnv_len(uint64_t h, size_t n)
{
    uint8_t b[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    return fnv(h, b, 4);
}

static uint64_t row_sum(uint64_t h, const uint8_t *key, size_t klen, const uint8_t *val,
                        size_t vlen)
{
    if (h == 0)
        h = FNV_OFFSET;
    h = fnv_len(h, klen);
    h = fnv(h, key, klen);
    h = fnv_len(h, vlen);
    return fnv(h, val, vlen);
}

int check_add_row(check_result_t *r, const uint8_t *key, size_t klen, const uint8_t *val,
                  size_t vlen)
{
    if (klen < 3)
        return SHALE_EINVAL;
    uint8_t kind = key[2];
    if (kind != 'd' && kind != 'c' && kind != 's')
        return 0;
    uint16_t slot = (uint16_t)(key[0] << 8 | key[1]);
    check_slot_t *e = r->n > 0 ? &r->slots[r->n - 1] : NULL;
    if (e != NULL && slot < e->slot)
        return SHALE_EINVAL;
    if (e == NULL || e->slot != slot) {
        if (r->n == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 64;
            check_slot_t *n = realloc(r->slots, cap * sizeof(*n));
            if (n == NULL)
                return SHALE_ENOMEM;
            r->slots = n;
            r->cap = cap;
        }
        e = &r->slots[r->n++];
        memset(e, 0, sizeof(*e));
        e->slot = slot;
    }
    /* The key framed without its slot: the slot is the entry's. */
    if (kind == 'd') {
        e->data_sum = row_sum(e->data_sum, key + 2, klen - 2, val, vlen);
        e->data_keys++;
    } else {
        e->sess_sum = row_sum(e->sess_sum, key + 2, klen - 2, val, vlen);
        e->sess_rows++;
    }
    r->rows++;
    r->bytes += klen + vlen;
    return 0;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_us(uint64_t us)
{
    struct timespec ts = {.tv_sec = (time_t)(us / 1000000u),
                          .tv_nsec = (long)(us % 1000000u) * 1000};
    nanosleep(&ts, NULL);
}

/* Rules:
 *  - The rate is kept over the whole run: after each row, while the bytes
 *    read are ahead of rate x elapsed, sleep (at most 10 ms at a time, so a
 *    cancel is seen soon).
 *  - A cancel (node stopping, store being swapped) ends the run at the
 *    next row or sleep. */
int check_compute(store_view_t *v, uint64_t rate_bytes_per_s, atomic_int *cancel,
                  check_result_t *out, char *err)
{
    memset(out, 0, sizeof(*out));
    uint64_t t0 = mono_us();
    for (;;) {
        if (cancel != NULL && atomic_load(cancel)) {
            check_result_free(out);
            snprintf(err, STORE_ERRLEN, "check cancelled (node stopping or store replaced)");
            return SHALE_EUNAVAILABLE;
        }
        const uint8_t *k, *val;
        size_t kl, vl;
        int rv = store_view_next(v, &k, &kl, &val, &vl);
        if (rv == 0)
            return 0;
        if (rv < 0) {
            check_result_free(out);
            snprintf(err, STORE_ERRLEN, "reading the store for a check failed");
            return rv;
        }
        rv = check_add_row(out, k, kl, val, vl);
        if (rv != 0) {
            check_result_free(out);
            snprintf(err, STORE_ERRLEN, "%s",
                     rv == SHALE_ENOMEM ? "out of memory summing rows" : "rows out of order");
            return rv;
        }
        while (rate_bytes_per_s > 0 && (cancel == NULL || !atomic_load(cancel))) {
            uint64_t due_us = out->bytes * 1000000u / rate_bytes_per_s;
            uint64_t el = mono_us() - t0;
            if (el >= due_us)
                break;
            sleep_us(due_us - el > 10000 ? 10000 : due_us - el);
        }
    }
}

const check_slot_t *check_find(const check_result_t *r, uint16_t slot)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->slots[mid].slot == slot)
            return &r->slots[mid];
        if (r->slots[mid].slot < slot)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void check_result_free(check_result_t *r)
{
    if (r == NULL)
        return;
    free(r->slots);
    memset(r, 0, sizeof(*r));
}
