/* Request id -> pointer map (the router's upstream calls in flight).
 *
 * Open addressing with linear probing and backward-shift deletion, so
 * lookups stay short under constant insert/delete churn. Keys are never 0.
 * Owns only its slot array; never frees the values. Pure: no I/O. */
#ifndef SHALE_RT_IDMAP_H
#define SHALE_RT_IDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct rt_idmap {
    uint64_t *keys;
    void **vals;
    size_t cap; /* power of two, 0 before the first insert */
    size_t n;
} rt_idmap_t;

void rt_idmap_init(rt_idmap_t *m);
void rt_idmap_free(rt_idmap_t *m);
/* 0, or -1 on out of memory. The key must not be present. */
int rt_idmap_put(rt_idmap_t *m, uint64_t key, void *val);
void *rt_idmap_get(const rt_idmap_t *m, uint64_t key);
/* Removes and returns the value, NULL when absent. */
void *rt_idmap_del(rt_idmap_t *m, uint64_t key);

#endif
