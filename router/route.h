/* The router's cluster map cache and node choice: slot -> group -> node.
 *
 * What this file owns: the installed ClusterMap (newest epoch wins), one
 * rt_group_t per shard group with what the router has learned about it (the
 * leader's client address, a spreading counter, the requests charged to it),
 * and the rules for picking the node of an attempt. Learned state survives a
 * new map for groups that keep their id.
 *
 * Pure: no sockets, no clocks, no logging; forward.c and watch.c drive it
 * and the unit tests drive it directly.
 *
 * Node choice rules (rt_group_pick):
 *  - writes and LINEARIZABLE reads go to the leader when one is known;
 *    otherwise to the voters, each at most once per round (the caller's
 *    `tried` mask), chosen by the group's rotation so concurrent requests
 *    probe different voters;
 *  - STALE reads spread evenly over the members: read replicas first, then
 *    followers (voters other than the known leader), finally the leader;
 *    each member at most once per request; NULL when every one was tried;
 *  - a member that just failed (timed out, lost its connection) is a
 *    suspect for RT_SUSPECT_MS: rotations pick suspects only when no other
 *    untried member is left, so a paused node does not cost every request
 *    an attempt timeout. */
#ifndef SHALE_RT_ROUTE_H
#define SHALE_RT_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "shale.pb-c.h"

#define RT_MAX_MEMBERS 63            /* members of a group the router uses (mask bits) */
#define RT_TRIED_LEADER (1ull << 63) /* mask bit: a leader hint outside the map */
#define RT_SUSPECT_MS 3000           /* how long a failed member is asked last */

typedef struct rt_member {
    uint64_t id;
    char addr[128]; /* client address */
    int replica;    /* read replica (Raft standby): never leads */
    uint64_t suspect_until; /* caller's ms clock: asked last until then */
} rt_member_t;

typedef struct rt_group {
    uint64_t id;
    size_t nmembers;
    rt_member_t *members;
    char leader[128]; /* the leader's client address as last learned; "" unknown */
    uint32_t rr;      /* rotating start for first choices */
    uint32_t slots;   /* slots the group owns in this map */
    uint64_t pending; /* requests charged to the group (queued or in flight) */
} rt_group_t;

typedef struct rt_route {
    Shale__ClusterMap *map; /* owned; NULL before the first map */
    uint64_t epoch;         /* 0 before the first map */
    uint32_t slots;
    rt_group_t *groups;
    size_t ngroups;
} rt_route_t;

void rt_route_init(rt_route_t *r);
void rt_route_free(rt_route_t *r);

/* Install m if it is newer than the current map. Returns 0 when installed
 * (the route owns m from then on), 1 when m is not newer or has epoch 0 (no
 * map yet), -1 when m is invalid or names another cluster (message in err).
 * On 1 and -1 the caller still owns m. cluster_id NULL: not checked. */
int rt_route_install(rt_route_t *r, Shale__ClusterMap *m, const char *cluster_id, char *err,
                     size_t errlen);

/* The group owning slot (0: unassigned, out of range, or no map). */
uint64_t rt_route_slot_group(const rt_route_t *r, uint32_t slot);

/* The group with this id, NULL when the map has none. */
rt_group_t *rt_route_group(rt_route_t *r, uint64_t id);

/* Index of the member with client address addr, -1 if none. */
int rt_group_member(const rt_group_t *g, const char *addr);

/* The address of the node for the next attempt (see the rules above), or
 * NULL (STALE reads only) when every member was tried. Marks the choice in
 * *tried and advances the group's rotation. */
const char *rt_group_pick(rt_group_t *g, int stale, uint64_t *tried, uint64_t now_ms);

/* A node said it leads (answered a leader-only request) or was named in a
 * NOT_LEADER hint. */
void rt_group_note_leader(rt_group_t *g, const char *addr);
/* A node failed (connection lost, no leader, not answering): forget it as
 * the leader and make it a suspect until now_ms + RT_SUSPECT_MS. */
void rt_group_note_failure(rt_group_t *g, const char *addr, uint64_t now_ms);

#endif
