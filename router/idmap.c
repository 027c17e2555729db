/* u64 -> pointer open-addressing map. See idmap.h. */
#include "idmap.h"

#include <stdlib.h>

#define MIN_CAP 64

static size_t home_of(uint64_t key, size_t cap)
{
    /* Fibonacci hashing: sequential ids spread over the table. */
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

void rt_idmap_init(rt_idmap_t *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->cap = 0;
    m->n = 0;
}

void rt_idmap_free(rt_idmap_t *m)
{
    free(m->keys);
    free(m->vals);
    rt_idmap_init(m);
}

static void insert(uint64_t *keys, void **vals, size_t cap, uint64_t key, void *val)
{
    size_t i = home_of(key, cap);
    while (keys[i] != 0)
        i = (i + 1) & (cap - 1);
    keys[i] = key;
    vals[i] = val;
}

static int grow(rt_idmap_t *m)
{
    size_t cap = m->cap ? m->cap * 2 : MIN_CAP;
    uint64_t *keys = calloc(cap, sizeof(*keys));
    void **vals = calloc(cap, sizeof(*vals));
    if (keys == NULL || vals == NULL) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] != 0)
            insert(keys, vals, cap, m->keys[i], m->vals[i]);
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int rt_idmap_put(rt_idmap_t *m, uint64_t key, void *val)
{
    if (key == 0)
        return -1;
    if ((m->n + 1) * 2 > m->cap && grow(m) != 0)
        return -1;
    insert(m->keys, m->vals, m->cap, key, val);
    m->n++;
    return 0;
}

static size_t find(const rt_idmap_t *m, uint64_t key)
{
    if (m->cap == 0 || key == 0)
        return SIZE_MAX;
    size_t i = home_of(key, m->cap);
    while (m->keys[i] != 0) {
        if (m->keys[i] == key)
            return i;
        i = (i + 1) & (m->cap - 1);
    }
    return SIZE_MAX;
}

void *rt_idmap_get(const rt_idmap_t *m, uint64_t key)
{
    size_t i = find(m, key);
    return i == SIZE_MAX ? NULL : m->vals[i];
}

void *rt_idmap_del(rt_idmap_t *m, uint64_t key)
{
    size_t i = find(m, key);
    if (i == SIZE_MAX)
        return NULL;
    void *val = m->vals[i];
    size_t mask = m->cap - 1;
    /* Backward shift: pull later members of the probe run into the hole
     * unless their home slot lies cyclically in (hole, j]. */
    size_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (m->keys[j] == 0)
            break;
        size_t home = home_of(m->keys[j], m->cap);
        int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays)
            continue;
        m->keys[hole] = m->keys[j];
        m->vals[hole] = m->vals[j];
        hole = j;
    }
    m->keys[hole] = 0;
    m->vals[hole] = NULL;
    m->n--;
    return val;
}
