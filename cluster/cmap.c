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

const Shale__Migration *cmap_migration(const Shale__ClusterMap *m, uint64_t id)
{
    for (size_t i = 0; m != NULL && i < m->n_migrations; i++)
        if (m->migrations[i]->id == id)
            return m->migrations[i];
    return NULL;
}

static int same_slots(const Shale__Migration *a, const Shale__Migration *b)
{
    if (a->n_slots != b->n_slots)
        return 0;
    for (size_t i = 0; i < a->n_slots; i++)
        if (a->slots[i] != b->slots[i])
            return 0;
    return 1;
}

static int same_migration(const Shale__Migration *a, const Shale__Migration *b)
{
    return a->id == b->id && a->from_group == b->from_group && a->to_group == b->to_group &&
           a->state == b->state && (a->has_run ? a->run : 0) == (b->has_run ? b->run : 0) &&
           same_slots(a, b);
}

int cmap_hold_blocks(const Shale__ClusterMap *prev, const Shale__ClusterMap *next)
{
    if (prev == NULL || prev->migration_hold == NULL || prev->migration_hold[0] == '\0')
        return 0;
    if (prev->n_slot_group != next->n_slot_group || prev->n_migrations != next->n_migrations)
        return 1;
    for (size_t i = 0; i < prev->n_slot_group; i++)
        if (prev->slot_group[i] != next->slot_group[i])
            return 1;
    for (size_t i = 0; i < prev->n_migrations; i++) {
        const Shale__Migration *m = cmap_migration(next, prev->migrations[i]->id);
        if (m == NULL || !same_migration(prev->migrations[i], m))
            return 1;
    }
    return 0;
}

int cmap_validate_change(const Shale__ClusterMap *prev, const Shale__ClusterMap *next, int force,
                         char *err, size_t errlen)
{
    if (cmap_validate(prev, next, err, errlen) != 0)
        return -1;
    if (prev != NULL && prev->epoch == 0)
        prev = NULL;
    uint64_t next_id = next->has_next_migration_id ? next->next_migration_id : 0;
    uint64_t prev_next_id = prev != NULL && prev->has_next_migration_id
                                ? prev->next_migration_id : 0;
    if (next_id < prev_next_id)
        return fail(err, errlen, "next_migration_id may not go back (%llu < %llu)",
                    (unsigned long long)next_id, (unsigned long long)prev_next_id);
    /* slot -> index+1 of the migration that lists it */
    uint32_t *in = next->n_migrations > 0 ? calloc(next->slots, sizeof(*in)) : NULL;
    if (next->n_migrations > 0 && in == NULL)
        return fail(err, errlen, "out of memory checking migrations");
    int rv = 0;
    for (size_t i = 0; i < next->n_migrations && rv == 0; i++) {
        const Shale__Migration *m = next->migrations[i];
        if (m->id == 0 || m->id >= next_id)
            rv = fail(err, errlen, "migration id %llu is not below next_migration_id %llu",
                      (unsigned long long)m->id, (unsigned long long)next_id);
        else if (m->from_group == m->to_group || cmap_group(next, m->from_group) == NULL ||
                 cmap_group(next, m->to_group) == NULL)
            rv = fail(err, errlen, "migration %llu must name two different groups of the map",
                      (unsigned long long)m->id);
        else if (m->n_slots == 0)
            rv = fail(err, errlen, "migration %llu has no slot", (unsigned long long)m->id);
        else if (m->state != SHALE__MIGRATION_STATE__MIG_COPYING &&
                 m->state != SHALE__MIGRATION_STATE__MIG_FENCED)
            rv = fail(err, errlen, "migration %llu has an unknown state",
                      (unsigned long long)m->id);
        for (size_t j = 0; j < i && rv == 0; j++)
            if (next->migrations[j]->id == m->id)
                rv = fail(err, errlen, "migration id %llu appears twice",
                          (unsigned long long)m->id);
        for (size_t k = 0; k < m->n_slots && rv == 0; k++) {
            uint32_t sl = m->slots[k];
            if (sl >= next->slots)
                rv = fail(err, errlen, "migration %llu names slot %u of %u",
                          (unsigned long long)m->id, sl, next->slots);
            else if (next->slot_group[sl] != m->from_group)
                rv = fail(err, errlen, "migration %llu moves slot %u from group %llu, which "
                          "does not own it", (unsigned long long)m->id, sl,
                          (unsigned long long)m->from_group);
            else if (in[sl] != 0)
                rv = fail(err, errlen, "slot %u is in two migrations", sl);
            else
                in[sl] = (uint32_t)i + 1;
        }
        if (rv != 0)
            break;
        const Shale__Migration *p = cmap_migration(prev, m->id);
        if (p == NULL) {
            if (m->id < prev_next_id)
                rv = fail(err, errlen, "migration id %llu was used before",
                          (unsigned long long)m->id);
            else if (m->state != SHALE__MIGRATION_STATE__MIG_COPYING)
                rv = fail(err, errlen, "a new migration starts COPYING");
        } else if (p->from_group != m->from_group || p->to_group != m->to_group ||
                   !same_slots(p, m)) {
            rv = fail(err, errlen, "migration %llu may not change its groups or slots",
                      (unsigned long long)m->id);
        } else if ((m->has_run ? m->run : 0) < (p->has_run ? p->run : 0)) {
            rv = fail(err, errlen, "migration %llu's run may not go back",
                      (unsigned long long)m->id);
        }
    }
    free(in);
    if (rv != 0 || prev == NULL)
        return rv;
    if (!force && cmap_hold_blocks(prev, next))
        return fail(err, errlen, "migrations are held (%s): slot owners and migrations may not "
                    "change until the hold is cleared (shalectl backup holds them for its cut)",
                    prev->migration_hold);
    for (uint32_t sl = 0; sl < next->slots; sl++) {
        uint64_t was = prev->slot_group[sl], now = next->slot_group[sl];
        if (was == now || was == 0)
            continue;
        if (now == 0)
            return fail(err, errlen, "slot %u is owned by group %llu: it cannot become "
                        "unassigned", sl, (unsigned long long)was);
        if (force)
            continue;
        const Shale__Migration *flip = NULL;
        for (size_t i = 0; i < prev->n_migrations && flip == NULL; i++) {
            const Shale__Migration *m = prev->migrations[i];
            for (size_t k = 0; k < m->n_slots; k++)
                if (m->slots[k] == sl) {
                    flip = m;
                    break;
                }
        }
        if (flip == NULL || flip->to_group != now ||
            flip->state != SHALE__MIGRATION_STATE__MIG_FENCED ||
            cmap_migration(next, flip->id) != NULL)
            return fail(err, errlen, "slot %u moves from group %llu to %llu without a fenced "
                        "migration completing (use shalectl slot move)", sl,
                        (unsigned long long)was, (unsigned long long)now);
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
