/* The cluster map: slot -> shard group -> members, versioned by an epoch.
 *
 * What this file owns: pure functions over Shale__ClusterMap (proto/
 * shale.proto) shared by the meta group (validating a change), shale-router
 * (routing), shaled (which slots its group owns) and shalectl (building a
 * change). No I/O, no allocation except where a function says it returns
 * something to free.
 *
 * Rules a valid map keeps (cmap_validate):
 *  - 1 <= slots <= 65535 and slot_group has exactly `slots` entries;
 *  - once a map exists its slot count never changes;
 *  - group ids are unique and non-zero; every group has at least one voter;
 *    member ids are unique inside a group, client addresses unique in the
 *    whole cluster;
 *  - every slot maps to 0 (unassigned) or to a group of the map. */
#ifndef SHALE_CMAP_H
#define SHALE_CMAP_H

#include <stddef.h>
#include <stdint.h>

#include "shale.pb-c.h"

/* 0 when next may follow prev (prev NULL or epoch 0: no map yet), else -1
 * with a message in err. Does not look at epochs. */
int cmap_validate(const Shale__ClusterMap *prev, const Shale__ClusterMap *next, char *err,
                  size_t errlen);

/* cmap_validate plus the rules of a change from prev (may be NULL) to next
 * that involve migrations (docs/resharding.md):
 *  - every migration names two different groups of next, a non-empty set
 *    of slots < slots that from_group owns in next, a valid state, an id
 *    below next_migration_id; no slot is in two migrations; ids are unique;
 *  - next_migration_id never decreases; a new migration (id not in prev)
 *    has id >= prev's next_migration_id and starts COPYING;
 *  - a migration in both keeps its groups and slots, and its run never
 *    decreases;
 *  - a slot owned by a group in prev changes owner only by a flip: prev has
 *    a FENCED migration of the slot to the new owner and next does not have
 *    it any more; unless force (data is not moved then: tests, disaster
 *    recovery). A slot may not become unassigned (0) while owned;
 *  - while prev holds migrations (migration_hold), slot_group and the
 *    migrations stay as they are (cmap_hold_blocks), unless force. */
int cmap_validate_change(const Shale__ClusterMap *prev, const Shale__ClusterMap *next, int force,
                         char *err, size_t errlen);

/* 1 when prev holds migrations (migration_hold set) and next changes
 * slot_group or any migration (added, removed, state, run); else 0. */
int cmap_hold_blocks(const Shale__ClusterMap *prev, const Shale__ClusterMap *next);

/* The migration with this id, or NULL. */
const Shale__Migration *cmap_migration(const Shale__ClusterMap *m, uint64_t id);

/* The group with this id, or NULL. */
const Shale__ShardGroup *cmap_group(const Shale__ClusterMap *m, uint64_t id);

/* The group id owning slot (0: unassigned or out of range). */
uint64_t cmap_slot_group(const Shale__ClusterMap *m, uint32_t slot);

/* Slots owned by group id. */
uint32_t cmap_slot_count(const Shale__ClusterMap *m, uint64_t id);

/* Fill bits (at least (slots + 7) / 8 bytes, zeroed here) with the slots
 * group id owns, bit s = slot s, LSB first; returns how many. */
uint32_t cmap_owned_bitmap(const Shale__ClusterMap *m, uint64_t id, uint8_t *bits);

/* Split slots [0, slots) into n contiguous, near-equal ranges, range i to
 * gids[i] (the first slots % n ranges one slot longer). */
void cmap_assign_even(uint64_t *slot_group, uint32_t slots, const uint64_t *gids, size_t n);

/* Decode a packed map (NULL when malformed); free with cmap_free. */
Shale__ClusterMap *cmap_unpack(const uint8_t *data, size_t len);
void cmap_free(Shale__ClusterMap *m);

/* A deep copy (NULL on out of memory); free with cmap_free. */
Shale__ClusterMap *cmap_copy(const Shale__ClusterMap *m);

#endif
