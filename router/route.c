/* Cluster map cache and node choice. See route.h for the rules. */
#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"

void rt_route_init(rt_route_t *r)
{
    memset(r, 0, sizeof(*r));
}

static void free_groups(rt_group_t *gs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(gs[i].members);
    free(gs);
}

void rt_route_free(rt_route_t *r)
{
    free_groups(r->groups, r->ngroups);
    cmap_free(r->map);
    rt_route_init(r);
}

static const rt_group_t *old_group(const rt_route_t *r, uint64_t id)
{
    for (size_t i = 0; i < r->ngroups; i++)
        if (r->groups[i].id == id)
            return &r->groups[i];
    return NULL;
}

int rt_route_install(rt_route_t *r, Shale__ClusterMap *m, const char *cluster_id, char *err,
                     size_t errlen)
{
    if (m == NULL || m->epoch == 0 || m->epoch <= r->epoch)
        return 1;
    if (cmap_validate(r->map, m, err, errlen) != 0)
        return -1;
    if (cluster_id != NULL && m->cluster_id != NULL && m->cluster_id[0] != '\0' &&
        strcmp(m->cluster_id, cluster_id) != 0) {
        snprintf(err, errlen, "the map belongs to cluster '%.64s', this router serves '%.64s'",
                 m->cluster_id, cluster_id);
        return -1;
    }
    rt_group_t *gs = calloc(m->n_groups ? m->n_groups : 1, sizeof(*gs));
    if (gs == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < m->n_groups; i++) {
        const Shale__ShardGroup *sg = m->groups[i];
        rt_group_t *g = &gs[i];
        g->id = sg->id;
        g->members = calloc(sg->n_members ? sg->n_members : 1, sizeof(*g->members));
        if (g->members == NULL) {
            free_groups(gs, i + 1);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        for (size_t k = 0; k < sg->n_members && g->nmembers < RT_MAX_MEMBERS; k++) {
            const Shale__Member *mb = sg->members[k];
            if (mb->has_role && mb->role == SHALE__MEMBER_ROLE__ROLE_SPARE)
                continue; /* receives nothing: can serve nothing */
            rt_member_t *dst = &g->members[g->nmembers++];
            dst->id = mb->id;
            snprintf(dst->addr, sizeof(dst->addr), "%s", mb->client_addr);
            dst->replica = mb->has_role && mb->role == SHALE__MEMBER_ROLE__ROLE_STANDBY;
        }
        g->slots = cmap_slot_count(m, g->id);
        const rt_group_t *old = old_group(r, g->id);
        if (old != NULL) {
            g->pending = old->pending;
            g->rr = old->rr;
            /* A leader that left the group is not its leader any more. */
            if (old->leader[0] != '\0' && rt_group_member(g, old->leader) >= 0)
                memcpy(g->leader, old->leader, sizeof(g->leader));
        }
    }
    free_groups(r->groups, r->ngroups);
    cmap_free(r->map);
    r->groups = gs;
    r->ngroups = m->n_groups;
    r->map = m;
    r->epoch = m->epoch;
    r->slots = m->slots;
    return 0;
}

uint64_t rt_route_slot_group(const rt_route_t *r, uint32_t slot)
{
    return cmap_slot_group(r->map, slot);
}

rt_group_t *rt_route_group(rt_route_t *r, uint64_t id)
{
    for (size_t i = 0; i < r->ngroups; i++)
        if (r->groups[i].id == id)
            return &r->groups[i];
    return NULL;
}

int rt_group_member(const rt_group_t *g, const char *addr)
{
    for (size_t i = 0; i < g->nmembers; i++)
        if (strcmp(g->members[i].addr, addr) == 0)
            return (int)i;
    return -1;
}

static uint64_t bit(size_t i)
{
    return 1ull << i;
}

/* One of the members that pass the filter and are not in tried, chosen by
 * the group's rotation so successive requests spread evenly over them;
 * members that are suspects at now only when no other one passes; -1 if
 * none. */
static int rotate_untried(const rt_group_t *g, uint64_t tried, int want_replica, int skip_leader,
                          uint64_t now)
{
    int ok[RT_MAX_MEMBERS], sus[RT_MAX_MEMBERS];
    size_t n = 0, ns = 0;
    for (size_t i = 0; i < g->nmembers; i++) {
        const rt_member_t *m = &g->members[i];
        if ((tried & bit(i)) || m->replica != want_replica)
            continue;
        if (skip_leader && g->leader[0] != '\0' && strcmp(m->addr, g->leader) == 0)
            continue;
        if (m->suspect_until > now)
            sus[ns++] = (int)i;
        else
            ok[n++] = (int)i;
    }
    if (n > 0)
        return ok[g->rr % n];
    return ns == 0 ? -1 : sus[g->rr % ns];
}

const char *rt_group_pick(rt_group_t *g, int stale, uint64_t *tried, uint64_t now)
{
    int i;
    if (!stale) {
        if (g->leader[0] != '\0') {
            int li = rt_group_member(g, g->leader);
            *tried |= li >= 0 ? bit((size_t)li) : RT_TRIED_LEADER;
            return g->leader;
        }
        i = rotate_untried(g, *tried, 0, 0, now);
        if (i < 0) {
            /* Every voter was asked once: start a new round. */
            *tried = 0;
            i = rotate_untried(g, 0, 0, 0, now);
        }
        if (i < 0)
            return NULL; /* no voter at all (cmap_validate forbids it) */
        g->rr++;
        *tried |= bit((size_t)i);
        return g->members[i].addr;
    }
    /* STALE: replicas, then followers, then the leader (suspects last
     * within each kind). */
    i = rotate_untried(g, *tried, 1, 0, now);
    if (i >= 0 && g->members[i].suspect_until > now) {
        int j = rotate_untried(g, *tried, 0, 1, now);
        if (j >= 0 && g->members[j].suspect_until <= now)
            i = j;
    }
    if (i < 0)
        i = rotate_untried(g, *tried, 0, 1, now);
    if (i >= 0) {
        g->rr++;
        *tried |= bit((size_t)i);
        return g->members[i].addr;
    }
    if (g->leader[0] != '\0') {
        int li = rt_group_member(g, g->leader);
        uint64_t b = li >= 0 ? bit((size_t)li) : RT_TRIED_LEADER;
        if (!(*tried & b)) {
            *tried |= b;
            return g->leader;
        }
    }
    return NULL;
}

void rt_group_note_leader(rt_group_t *g, const char *addr)
{
    if (addr != NULL && strcmp(g->leader, addr) != 0)
        snprintf(g->leader, sizeof(g->leader), "%s", addr);
}

void rt_group_note_failure(rt_group_t *g, const char *addr, uint64_t now)
{
    if (addr == NULL)
        return;
    if (strcmp(g->leader, addr) == 0)
        g->leader[0] = '\0';
    int i = rt_group_member(g, addr);
    if (i >= 0)
        g->members[i].suspect_until = now + RT_SUSPECT_MS;
}
