/* Clock offset estimation: this member's CLOCK_REALTIME against its group
 * leader's, from request/answer round trips (Cristian / NTP style).
 *
 * A sample is one CLOCK_REQ round trip: the local realtime and monotonic
 * clocks read when it was sent and when its answer arrived, and the
 * leader's realtime stamped in the answer. Its offset is
 *     leader_real - (send_real + recv_real) / 2      (leader minus local)
 * and the leader's clock read fell somewhere inside the round trip, so the
 * true offset lies within +-RTT/2 of that. The estimate is the sample with
 * the smallest RTT among those taken in the last CLK_WINDOW_US of
 * monotonic time; its uncertainty is RTT/2 plus CLK_DRIFT_PPM of its age
 * (the two oscillators may drift apart since it was taken).
 *
 * A step of the local realtime clock (its delta between two ticks differs
 * from the monotonic delta by more than CLK_STEP_TOLERANCE_US) makes every
 * sample meaningless: they are dropped and the step is remembered until a
 * new sample arrives.
 *
 * This file owns the arithmetic only: no I/O, no libuv, no clock reads
 * (callers pass the times in), so tests drive it with made-up clocks. */
#ifndef SHALE_CLOCK_EST_H
#define SHALE_CLOCK_EST_H

#include <stddef.h>
#include <stdint.h>

#define CLK_SAMPLES 16
#define CLK_WINDOW_US (5u * 1000 * 1000)   /* samples older than this expire */
#define CLK_DRIFT_PPM 500                  /* assumed worst relative drift */
#define CLK_STEP_TOLERANCE_US (100u * 1000) /* realtime vs monotonic disagreement = a step */

typedef struct clk_sample {
    uint64_t at_mono_us; /* when the answer arrived (local monotonic) */
    int64_t offset_us;   /* leader minus local */
    uint64_t rtt_us;
} clk_sample_t;

typedef struct clk_est {
    clk_sample_t s[CLK_SAMPLES]; /* ring, n valid, newest at (head - 1) */
    size_t n, head;
    uint64_t leader_id;          /* whose clock the samples measure (0: none) */
    uint64_t last_mono_us, last_real_us; /* previous clk_tick (0: none) */
    int stepped;                 /* 1: -1 backwards, +1 forwards step seen, 0: none */
    /* The last estimate of the previous leader's clock, kept when the
     * leader changes (a new leader's reference until its followers report;
     * clk_prev). Dropped by a step. */
    int has_prev;
    int64_t prev_offset_us;      /* previous leader minus local */
    uint64_t prev_at_mono_us;    /* when that sample was taken */
    uint64_t samples_taken, samples_rejected, steps;
} clk_est_t;

/* The estimate now: 0 with offset, uncertainty and the sample's age, or -1
 * when no sample is in the window. */
typedef struct clk_view {
    int64_t offset_us;
    uint64_t uncertainty_us;
    uint64_t age_us;
    uint64_t rtt_us;
} clk_view_t;

void clk_init(clk_est_t *e);

/* The leader changed (or is first known): samples of another clock go. */
void clk_set_leader(clk_est_t *e, uint64_t leader_id);

/* Record one round trip to leader_id. Returns 0 when kept; -1 when refused:
 * another leader than the one set, an answer before its request, or local
 * realtime and monotonic disagreeing across the round trip (a step
 * happened inside it). Clears a remembered step when kept. */
int clk_add(clk_est_t *e, uint64_t leader_id, uint64_t send_mono_us, uint64_t recv_mono_us,
            uint64_t send_real_us, uint64_t recv_real_us, uint64_t leader_real_us);

/* Compare both local clocks with the previous call: a step drops every
 * sample and is remembered (e->stepped) until clk_add keeps one. Returns
 * the step size in us (realtime delta minus monotonic delta), 0 if none. */
int64_t clk_tick(clk_est_t *e, uint64_t now_mono_us, uint64_t now_real_us);

/* The best sample in the window at now_mono_us: 0 and *v, or -1. */
int clk_view(const clk_est_t *e, uint64_t now_mono_us, clk_view_t *v);

/* Whether this member's clock is known to within max_offset_ms of the
 * leader's: 0, or -1 with a reason line in why. */
int clk_check(const clk_est_t *e, uint64_t now_mono_us, uint64_t max_offset_ms, char *why,
              size_t whylen);

/* ---- The leader's side (docs/consistency.md, "The leader's timestamps") ----
 *
 * A leader writes its realtime into every entry it proposes; TTL and STALE
 * reads lean on those stamps. Its followers measure their offsets to it
 * (above) and report them with each CLOCK request, so the leader learns how
 * far its clock is from its group's. */

#define CLK_PEERS 16
#define CLK_PREV_TTL_US (60u * 1000 * 1000) /* how long clk_prev stays usable */

typedef struct clk_peer {
    uint64_t id;
    int64_t offset_us;   /* the leader minus the peer, as the peer measured it */
    uint64_t at_mono_us; /* when the report arrived (the leader's monotonic) */
} clk_peer_t;

typedef struct clk_peers {
    clk_peer_t p[CLK_PEERS];
    size_t n;
} clk_peers_t;

/* Record (or replace) id's report; a full table replaces its oldest. */
void clk_peers_report(clk_peers_t *t, uint64_t id, int64_t offset_us, uint64_t now_mono_us);
void clk_peers_clear(clk_peers_t *t);

/* Where the group's clock minus this leader's lies: the median, over the
 * voters ids[0..nv) (self among them, counting 0), of each voter's clock
 * minus the leader's (= -offset), from reports younger than CLK_WINDOW_US.
 * Voters without a report could say anything, so the median is only known
 * to lie within [*lo_us, *hi_us]: with q = nv/2 + 1 (a majority) and the k
 * known values sorted, lo = the q-th largest and hi = the q-th smallest
 * (a majority of the voters is at or above lo, and at or below hi). With
 * every voter known and nv odd, lo = hi = the median; nv even, the two
 * middle values. 0 when at least a majority is known (k >= q); -1
 * otherwise. */
int clk_group_range(const clk_peers_t *t, const uint64_t *ids, size_t nv, uint64_t self,
                    uint64_t now_mono_us, int64_t *lo_us, int64_t *hi_us);

/* The previous leader's clock minus this node's, from its last sample as a
 * follower (clk_set_leader kept it): 0 and *offset_us while younger than
 * CLK_PREV_TTL_US and no step since; -1 otherwise. */
int clk_prev(const clk_est_t *e, uint64_t now_mono_us, int64_t *offset_us);

/* What a leader adds to its realtime to stamp an entry, given the low end
 * of its group's clock minus its own (clk_group_range's lo): never forward (a stamp behind is safe for STALE
 * reads: staleness is over-estimated), back by as much as the leader's
 * clock is ahead of the group beyond max_offset_us (so no stamp is more
 * than max_offset ahead of the group: TTL expires early by at most that). */
int64_t clk_stamp_correction(int64_t group_minus_leader_us, uint64_t max_offset_us);

/* The STALE-read rule. age_ms is the local staleness (local realtime now
 * minus the newest applied leader timestamp, may be negative when the
 * local clock is behind). Returns an upper bound on the true staleness in
 * ms measured on the leader's clock: age + offset + uncertainty (0 at
 * least). */
uint64_t clk_stale_bound_ms(int64_t age_ms, const clk_view_t *v);

#endif
