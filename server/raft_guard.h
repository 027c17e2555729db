/* Raft safety guard: neutralises libraft 0.15 safety bugs from outside the
 * library, through struct raft_io (docs/raft-safety.md).
 *
 * What this file owns:
 *  - the method pointers of one already-initialised struct raft_io, which it
 *    wraps in place (io->impl and io->data are never touched) and restores in
 *    rg_close;
 *  - a mirror of the log as the io layer saw it: the term of every index that
 *    exists, and the highest index persisted without a hole;
 *  - the struct raft_barrier requests issued through rg_barrier and the
 *    leader's no-op, in a pool that outlives their callbacks until rg_close.
 *
 * What it does, per upstream fix (canonical/raft):
 *  - #429      RequestVote / pre-vote carry the persisted last index/term,
 *              never the in-memory one;
 *  - #467      no candidacy while log appends are in flight: the follower's
 *              election timer restarts instead of expiring (what upstream
 *              does), a TimeoutNow received then is ignored, and no
 *              RequestVote leaves then;
 *  - #477      a TimeoutNow is held until the target has acknowledged the
 *              leader's whole log, then sent from rg_poll;
 *  - #336      a leader that has not persisted an entry of its own term yet
 *              takes no replication acknowledgement into account (the ack is
 *              rewritten to "no news"), and rg_poll appends a no-op at once;
 *              followers acknowledge at most what the AppendEntries they
 *              answer covered (0.15 reports its whole persisted log, stale
 *              tail included);
 *  - #344/#435 raft_uv's internal barriers (io->truncate, io->snapshot_put)
 *              never overlap: a truncate waits for an in-flight snapshot put
 *              (the appends after it wait with it, in order), a snapshot put
 *              waits for the previous one and for a truncate to take effect;
 *              a completion delivered twice is dropped;
 *  - (2015)    no configuration change reaches libraft before the leader
 *              has committed an entry of its current term (rg_add,
 *              rg_assign, rg_remove: RAFT_BUSY until then);
 *  - (sole voter) no change leaves one voter other than the leader: 0.15
 *              makes a sole voter leader without a new term;
 *  - (transfer) a RequestVote (not a pre-vote) of the current term from a
 *              candidate other than the one this server voted for is
 *              dropped: 0.15 grants a transfer target a second vote;
 *  - rg_barrier delivers each callback exactly once, from rg_poll, and fails
 *              with RAFT_LEADERSHIPLOST a barrier still pending once this node
 *              is no longer leader of the term it was issued in.
 *
 * What it must never do: change an entry, a term or a vote that is persisted;
 * make a message claim more than is true (it only lowers what RequestVote and
 * AppendEntries results claim, holds messages back, or sends later the
 * TimeoutNow libraft asked for); write into struct raft beyond
 * election_timer_start (#467, from the tick, as upstream does); call into
 * libraft from inside a Raft or io callback (its calls are made from rg_poll);
 * keep state in globals beyond the small io -> guard table (several guards
 * live in one process).
 *
 * Threading: everything runs on the thread that runs Raft (the loop thread). */
#ifndef SHALE_RAFT_GUARD_H
#define SHALE_RAFT_GUARD_H

#include <raft.h>
#include <stdint.h>

/* Defences, all on by default. Tests turn single ones off to prove each is
 * needed on its own; production never changes them. */
enum {
    RG_VOTE_PERSISTED = 1u << 0, /* #429: RequestVote from the persisted log */
    RG_DEFER_CANDIDACY = 1u << 1, /* #467: election timer restarted while
                                     appends are in flight */
    RG_TIMEOUT_NOW = 1u << 2,    /* #477: TimeoutNow only to a caught-up target */
    RG_ACK_HOLDBACK = 1u << 3,   /* #336: leader acks held until it stored an
                                    entry of its term */
    RG_TRUTHFUL_ACKS = 1u << 4,  /* #336 companion: ack only what was sent */
    RG_UV_BARRIERS = 1u << 5,    /* #344 / #435 */
    RG_CHANGE_RULE = 1u << 6,    /* no configuration change before the leader
                                    committed an entry of its term */
    RG_ONE_VOTE = 1u << 7,       /* never a second vote in a term (transfer) */
    RG_TN_DROP = 1u << 8,        /* #467: TimeoutNow ignored, appends in flight */
    RG_VOTE_HOLD = 1u << 9,      /* #467: no RequestVote sent, appends in flight */
    RG_NOOP = 1u << 10,          /* #336: a new leader appends a no-op at once */
    RG_SOLE_VOTER = 1u << 11,    /* a change never leaves one voter other than
                                    the leader making it */
    RG_ALL = (1u << 12) - 1,
    /* The groups the first tests were written against. */
    RG_NO_CANDIDACY = RG_DEFER_CANDIDACY | RG_TN_DROP | RG_VOTE_HOLD,
    RG_COMMIT_RULE = RG_ACK_HOLDBACK | RG_NOOP,
};

/* What the guard did, for tests and the status page. */
typedef struct rg_stats {
    uint64_t votes_rewritten;     /* #429: RequestVote lowered to the persisted log */
    uint64_t votes_unpersisted;   /* RequestVotes that left claiming unpersisted
                                     entries or with appends in flight (counted
                                     with every defence off too: evidence) */
    uint64_t candidacy_deferred;  /* #467: election timer restarted, appends in flight */
    uint64_t votes_held;          /* #467: RequestVote not sent, appends in flight */
    uint64_t timeout_now_dropped; /* #467: TimeoutNow received, appends in flight */
    uint64_t timeout_now_held;    /* #477: TimeoutNow held, target not caught up */
    uint64_t timeout_now_sent;    /* #477: held TimeoutNow sent from rg_poll */
    uint64_t acks_held;           /* #336: leader acks reduced to "no news" */
    uint64_t acks_clamped;        /* follower acks lowered to the request's range */
    uint64_t noops;               /* #336: no-op barriers appended by rg_poll */
    uint64_t uv_ops_deferred;     /* #435: truncates/snapshot puts made to wait */
    uint64_t double_callbacks;    /* #344: completions delivered twice, dropped */
    uint64_t barriers_failed;     /* rg_barrier failed early by rg_poll */
    uint64_t late_callbacks;      /* library callbacks after an early failure */
    uint64_t changes_deferred;    /* configuration changes refused with
                                     RAFT_BUSY: no entry of the term committed */
    uint64_t changes_refused;     /* changes that would leave one voter other
                                     than the leader: RAFT_BADROLE */
    uint64_t votes_refused;       /* second vote in a term: RequestVote dropped */
    uint64_t double_votes;        /* votes granted to a second candidate in one
                                     term (counted with every defence off too:
                                     evidence) */
    uint64_t appends_in_flight;   /* current, not cumulative */
} rg_stats_t;

/* Barrier callback: status 0 once the barrier is applied (this node was
 * leader and has applied everything before it), else a RAFT_* code. Always
 * called exactly once per successful rg_barrier, from rg_poll or rg_close. */
typedef void (*rg_barrier_cb)(void *data, int status);

struct rg_run;
struct rg_append;
struct rg_put;
struct rg_op;
struct rg_slot;

/* The guard. The caller provides the storage (embed it next to the struct
 * raft); fields are private to raft_guard.c except stats and defences. */
typedef struct raft_guard {
    struct raft *r;
    struct raft_io *io;
    unsigned defences; /* RG_* bits; set before raft_start */
    rg_stats_t stats;

    /* Original io methods, called by the wrappers. */
    struct {
        void (*close)(struct raft_io *, raft_io_close_cb);
        int (*load)(struct raft_io *, raft_term *, raft_id *, struct raft_snapshot **, raft_index *,
                    struct raft_entry **, size_t *);
        int (*start)(struct raft_io *, unsigned, raft_io_tick_cb, raft_io_recv_cb);
        int (*send)(struct raft_io *, struct raft_io_send *, const struct raft_message *,
                    raft_io_send_cb);
        int (*append)(struct raft_io *, struct raft_io_append *, const struct raft_entry[],
                      unsigned, raft_io_append_cb);
        int (*truncate)(struct raft_io *, raft_index);
        int (*snapshot_put)(struct raft_io *, unsigned, struct raft_io_snapshot_put *,
                            const struct raft_snapshot *, raft_io_snapshot_put_cb);
    } orig;
    raft_io_recv_cb recv_cb; /* the library's receive callback */
    raft_io_tick_cb tick_cb; /* the library's tick callback */

    /* Log mirror: runs of equal term, [runs[0].first, last]; plus the last
     * snapshot; persisted = highest index stored with no hole before it. */
    struct rg_run *runs;
    unsigned n_runs, cap_runs;
    raft_index last;
    raft_index snap_index;
    raft_term snap_term;
    raft_index persisted;

    /* Appends in issue order, until completed in order. */
    struct rg_append *appends_head, *appends_tail;
    unsigned inflight;

    /* raft_uv barrier serialisation (#344/#435). */
    struct rg_op *trunc_q_head, *trunc_q_tail; /* truncate + appends waiting */
    struct rg_put *put_wait_head, *put_wait_tail;
    struct rg_put *put_retired; /* completed puts kept against a 2nd callback */
    unsigned n_put_retired;
    int put_inflight;
    int install_inflight;    /* of which with trailing 0 (installed snapshot) */
    int trunc_unconfirmed;   /* truncate issued; no append after it completed */
    int trunc_has_confirmer; /* an append issued after it will confirm it */
    int draining;

    /* Context of the AppendEntries being handled (for truthful acks). */
    int ae_valid;
    raft_index ae_last;

    /* Last vote this server granted (evidence for double_votes). */
    raft_term granted_term;
    raft_id granted_to;

    /* #477: TimeoutNow held until the target caught up. */
    raft_id tn_target;
    raft_term tn_term;

    /* Barrier pool (#344 at the API level, and the #336 no-op). */
    struct rg_slot *slots; /* every slot ever allocated, freed at rg_close */
    struct rg_slot *free_head, *free_tail;
    struct rg_slot *done_head, *done_tail; /* completed, awaiting delivery */
    int closed;
} raft_guard_t;

/* Wrap @io (already initialised, e.g. raft_uv_init + raft_init, or a
 * raft_fixture server after raft_fixture_grow) for the instance @r. Call
 * before raft_start. Returns 0, RAFT_INVALID (NULL argument or io already
 * guarded) or RAFT_TOOMANY (more than 16 guards in one process). */
int rg_init(raft_guard_t *g, struct raft *r, struct raft_io *io);

/* Outside every Raft callback (production: the end-of-turn uv_check, first
 * thing; tests: after each fixture step): deliver completed barrier callbacks,
 * fail barriers whose leadership is gone, append the leader's no-op if this
 * leader has no entry of its term yet, send a held TimeoutNow once its target
 * caught up. Returns 0 or the raft_barrier error of the no-op. */
int rg_poll(raft_guard_t *g);

/* Propose a barrier; @cb(data, status) runs exactly once, from rg_poll (or
 * rg_close at shutdown). Returns 0, or the raft_barrier error (e.g.
 * RAFT_NOTLEADER) without calling @cb, or RAFT_NOMEM. The slot is allocated
 * from the guard's pool (owned by the guard, freed by rg_close). */
int rg_barrier(raft_guard_t *g, void *data, rg_barrier_cb cb);

/* Configuration changes (Raft dissertation §4.1, Ongaro's 2015 correction
 * to single-server changes): a leader may hand libraft a configuration change
 * only once the entry at its commit index is of its current term. Before
 * that, a change can commit under a configuration that a server elected
 * later, on an older uncommitted configuration, never saw (the scenario in
 * docs/raft-safety.md): committed entries are then overwritten.
 *
 * rg_change_allowed returns 0 when a change may go to libraft now,
 * RAFT_NOTLEADER when this server is not leader (or is transferring
 * leadership), RAFT_BUSY while no entry of the leader's term is committed
 * yet (retry shortly: the leader's no-op commits within a round trip when a
 * majority is reachable). rg_add / rg_assign / rg_remove check it, then call
 * raft_add / raft_assign / raft_remove with the same arguments; they return
 * RAFT_BUSY (counted in stats.changes_deferred) without calling libraft, or
 * what libraft returned. Every membership change in Shale goes through them
 * (server/admin.c).
 *
 * rg_assign and rg_remove also refuse, with RAFT_BADROLE (counted in
 * stats.changes_refused), a change that would leave no voter, or exactly one
 * voter other than this leader: 0.15 lets a sole voter make itself leader without
 * starting a new term (convertToCandidate's fast path), so it would lead the
 * term this leader led, and two leaders' entries of one term at one index
 * break log matching. Shrinking to one voter is done by keeping the leader
 * (transfer leadership to the server that should remain first). */
int rg_change_allowed(const raft_guard_t *g);
int rg_add(raft_guard_t *g, struct raft_change *req, raft_id id, const char *address,
           raft_change_cb cb);
int rg_assign(raft_guard_t *g, struct raft_change *req, raft_id id, int role, raft_change_cb cb);
int rg_remove(raft_guard_t *g, struct raft_change *req, raft_id id, raft_change_cb cb);

/* Last index (and its term) that is persisted with no hole before it. */
raft_index rg_persisted_index(const raft_guard_t *g);
raft_term rg_persisted_term(const raft_guard_t *g);

/* After raft_close's callback has fired: deliver every undelivered barrier
 * callback (RAFT_SHUTDOWN if the library never answered), restore the io's
 * original methods and free everything the guard allocated. */
void rg_close(raft_guard_t *g);

#endif
