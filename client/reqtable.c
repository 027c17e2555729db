/* Request id -> pending request map of one client.
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones, so lookups stay short under constant insert/delete churn).
 * Ids of one client are unique and never 0. Owns only its slot array; the
 * requests belong to client.c. Never does I/O. */
#include <stdlib.h>

#include "internal.h"

#define MIN_CAP 64

static size_t slot_of(uint64_t id, size_t cap)
{
    /* Fibonacci hashing: sequential ids spread over the table. */
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

void reqtable_init(reqtable_t *t)
{
    t->slots = NULL;
    t->cap = 0;
    t->n = 0;
}

void reqtable_free(reqtable_t *t)
{
    free(t->slots);
    reqtable_init(t);
}

static void insert_slot(creq_t **slots, size_t cap, creq_t *cr)
{
    size_t i = slot_of(cr->id, cap);
    while (slots[i] != NULL)
        i = (i + 1) & (cap - 1);
    slots[i] = cr;
}

static int grow(reqtable_t *t)
{
    size_t cap = t->cap ? t->cap * 2 : MIN_CAP;
    creq_t **slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return SHALE_ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i] != NULL)
            insert_slot(slots, cap, t->slots[i]);
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return SHALE_OK;
}

int reqtable_put(reqtable_t *t, creq_t *cr)
{
    /* Keep the load factor at or below 1/2. */
    if ((t->n + 1) * 2 > t->cap && grow(t) != SHALE_OK)
        return SHALE_ENOMEM;
    insert_slot(t->slots, t->cap, cr);
    t->n++;
    return SHALE_OK;
}

static size_t find(const reqtable_t *t, uint64_t id)
{
    if (t->cap == 0)
        return SIZE_MAX;
    size_t i = slot_of(id, t->cap);
    while (t->slots[i] != NULL) {
        if (t->slots[i]->id == id)
            return i;
        i = (i + 1) & (t->cap - 1);
    }
    return SIZE_MAX;
}

creq_t *reqtable_get(const reqtable_t *t, uint64_t id)
{
    size_t i = find(t, id);
    return i == SIZE_MAX ? NULL : t->slots[i];
}

creq_t *reqtable_del(reqtable_t *t, uint64_t id)
{
    size_t i = find(t, id);
    if (i == SIZE_MAX)
        return NULL;
    creq_t *cr = t->slots[i];
    size_t mask = t->cap - 1;
    /* Backward shift: pull later members of the probe run into the hole
     * unless their home slot lies cyclically in (hole, j]. */
    size_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (t->slots[j] == NULL)
            break;
        size_t home = slot_of(t->slots[j]->id, t->cap);
        int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays)
            continue;
        t->slots[hole] = t->slots[j];
        hole = j;
    }
    t->slots[hole] = NULL;
    t->n--;
    return cr;
}
