/* Slot rebalancing plans: which slots move from which group to which.
 *
 * Pure functions over a slot -> group array (ClusterMap.slot_group): no
 * I/O, no clock, no map types, so tests/unit/test_rebalance.c drives them
 * directly and shalectl (cluster/ctl_migrate.c) only executes what they say.
 *
 * Rules a plan keeps (rb_plan_even):
 *  - targets: the slots owned by the groups named (unassigned slots, 0, are
 *    never counted or moved) are shared by the receiving groups (every group
 *    but `drain`) so that their counts differ by at most one; the groups that
 *    already own the most get the one-slot remainders, which is what makes
 *    the plan the fewest moves: exactly sum over groups of max(0, count -
 *    target) slots move, and a drained group's target is 0;
 *  - a group gives away only its surplus and a group receives only up to its
 *    deficit, so no slot moves twice and no group both gives and receives;
 *  - contiguous runs are preferred: a donor gives its largest runs whole and
 *    at most one part of a run, taken from the end that faces another donor
 *    (whose part then tends to join it at the receiver), and a receiver is
 *    filled with consecutive pieces in slot order;
 *  - moves are ordered by their first slot and list their slots ascending. */
#ifndef SHALE_REBALANCE_H
#define SHALE_REBALANCE_H

#include <stddef.h>
#include <stdint.h>

#define RB_EINVAL (-1) /* bad input: why says */
#define RB_ENOMEM (-2)

/* Slots that move from one group to another. */
typedef struct rb_move {
    uint64_t from, to;
    uint32_t *slots; /* ascending; malloc'd, freed by rb_plan_free */
    size_t nslots;
} rb_move_t;

typedef struct rb_plan {
    rb_move_t *moves; /* malloc'd, freed by rb_plan_free */
    size_t nmoves;
    size_t nslots; /* slots in all moves */
} rb_plan_t;

/* The even target of each group gids[i] (target[i]) and what it owns now
 * (count[i], may be NULL), as rb_plan_even computes them. drain: a group of
 * gids that must end with no slot (0: none). 0, or RB_EINVAL (why) when a
 * gid is 0 or repeated, drain is not among gids, or no group would be left
 * to receive slots while some must move. */
int rb_targets(const uint64_t *slot_group, uint32_t nslots, const uint64_t *gids, size_t ngids,
               uint64_t drain, uint32_t *count, uint32_t *target, char *why, size_t whylen);

/* The fewest moves that even out the slot counts of gids (see the rules
 * above). *out: rb_plan_free (also on error: then empty). 0, RB_EINVAL (why)
 * or RB_ENOMEM. */
int rb_plan_even(const uint64_t *slot_group, uint32_t nslots, const uint64_t *gids, size_t ngids,
                 uint64_t drain, rb_plan_t *out, char *why, size_t whylen);

/* Slots first..last to group `to`: one move per source group (slots `to`
 * already owns are left out). 0, RB_EINVAL (why) when the range is empty
 * or out of [0, nslots), `to` is 0 or a slot in it is unassigned, or
 * RB_ENOMEM. *out: rb_plan_free. */
int rb_plan_range(const uint64_t *slot_group, uint32_t nslots, uint32_t first, uint32_t last,
                  uint64_t to, rb_plan_t *out, char *why, size_t whylen);

void rb_plan_free(rb_plan_t *p);

/* "0-63,100,200-201" for n ascending slots into buf (truncated with ",..."
 * when it does not fit; "-" when n is 0). Returns the number of runs. */
size_t rb_format_ranges(const uint32_t *slots, size_t n, char *buf, size_t len);

#endif
