/* Cluster map helpers (cmap.h): validation, lookups, even slot assignment.
 * Pure functions; never does I/O. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int cmap_validate(const Shale__ClusterMap *prev, const Shale__ClusterMap *next, char *err,
                  size_t errlen)
{
    if (next == NULL)
        return fail(err, errlen, "no map");
    if (!next->has_slots || next->slots == 0 || next->slots > 65535)
        return fail(err, errlen, "slot count must be in 1..65535");
    if (prev != NULL && prev->epoch > 0 && prev->slots != next->slots)
        return fail(err, errlen, "the slot count is fixed at init (%u); asked for %u",
                    prev->slots, next->slots);
    if (next->n_slot_group != next->slots)
        return fail(err, errlen, "slot table has %zu entries for %u slots", next->n_slot_group,
                    next->slots);
    for (size_t i = 0; i < next->n_groups; i++) {
        const Shale__ShardGroup *g = next->groups[i];
        if (g->id == 0)
            return fail(err, errlen, "group id 0 is reserved");
        size_t voters = 0;
        for (size_t j = 0; j < i; j++)
            if (next->groups[j]->id == g->id)
                return fail(err, errlen, "group %llu appears twice", (unsigned long long)g->id);
        for (size_t k = 0; k < g->n_members; k++) {
            const Shale__Member *m = g->members[k];
            if (m->client_addr == NULL || m->client_addr[0] == '\0' || m->raft_addr == NULL ||
                m->raft_addr[0] == '\0')
                return fail(err, errlen, "group %llu member %llu lacks an address",
                            (unsigned long long)g->id, (unsigned long long)m->id);
            if (!m->has_role || m->role == SHALE__MEMBER_ROLE__ROLE_VOTER)
                voters++;
            for (size_t l = 0; l < k; l++)
                if (g->members[l]->id == m->id)
                    return fail(err, errlen, "group %llu names member %llu twice",
                                (unsigned long long)g->id, (unsigned long long)m->id);
            /* client addresses are unique across the cluster */
            for (size_t j = 0; j <= i; j++) {
                const Shale__ShardGroup *h = next->groups[j];
                size_t lim = j == i ? k : h->n_members;
                for (size_t l = 0; l < lim; l++)
                    if (strcmp(h->members[l]->client_addr, m->client_addr) == 0)
                        return fail(err, errlen, "address %s is used twice (groups %llu and %llu)",
                                    m->client_addr, (unsigned long long)h->id,
                                    (unsigned long long)g->id);
            }
        }
        if (voters == 0)
            return fail(err, errlen, "group %llu has no voter", (unsigned long long)g->id);
    }
    for (uint32_t s = 0; s < next->slots; s++) {
        uint64_t gid = next->slot_group[s];
        if (gid != 0 && cmap_group(next, gid) == NULL)
            return fail(err, errlen, "slot %u maps to unknown group %llu", s,
                        (unsigned long long)gid);
    }
    return 0;
}

const Shale__ShardGroup *cmap_group(const Shale__ClusterMap *m, uint64_t id)
{
    for (size_t i = 0; m != NULL && i < m->n_groups; i++)
        if (m->groups[i]->id == id)
            return m->groups[i];
    return NULL;
}

uint64_t cmap_slot_group(const Shale__ClusterMap *m, uint32_t slot)
{
    if (m == NULL || slot >= m->n_slot_group)
        return 0;
    return m->slot_group[slot];
}

uint32_t cmap_slot_count(const Shale__ClusterMap *m, uint64_t id)
{
    uint32_t n = 0;
    for (size_t s = 0; m != NULL && s < m->n_slot_group; s++)
        n += m->slot_group[s] == id;
    return n;
}

uint32_t cmap_owned_bitmap(const Shale__ClusterMap *m, uint64_t id, uint8_t *bits)
{
    uint32_t n = 0;
    memset(bits, 0, (m->slots + 7) / 8);
    for (uint32_t s = 0; s < m->slots && s < m->n_slot_group; s++)
        if (m->slot_group[s] == id) {
            bits[s / 8] |= (uint8_t)(1u << (s % 8));
            n++;
        }
    return n;
}

void cmap_assign_even(uint64_t *slot_group, uint32_t slots, const uint64_t *gids, size_t n)
{
    uint32_t at = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t len = slots / (uint32_t)n + (i < slots % n ? 1u : 0u);
        for (uint32_t k = 0; k < len; k++)
            slot_group[at++] = gids[i];
    }
}

Shale__ClusterMap *cmap_unpack(const uint8_t *data, size_t len)
{
    return shale__cluster_map__unpack(NULL, len, data);
}

void cmap_free(Shale__ClusterMap *m)
{
    if (m != NULL)
        shale__cluster_map__free_unpacked(m, NULL);
}

Shale__ClusterMap *cmap_copy(const Shale__ClusterMap *m)
{
    size_t len = shale__cluster_map__get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return NULL;
    shale__cluster_map__pack(m, buf);
    Shale__ClusterMap *c = cmap_unpack(buf, len);
    free(buf);
    return c;
}
