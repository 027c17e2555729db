/* Raft safety guard: libraft 0.15 safety fixes applied from outside, through
 * the wrapped struct raft_io (see raft_guard.h for what it owns and must never
 * do, docs/raft-safety.md for each bug, its scenario and its test).
 *
 * Layout of this file:
 *  1. the io -> guard table and small helpers;
 *  2. the log mirror (terms, persisted index);
 *  3. io wrappers: load, start/recv, send, append, truncate, snapshot_put,
 *     close, and the raft_uv barrier serialisation;
 *  4. configuration changes (rg_add, rg_assign, rg_remove);
 *  5. the barrier pool and rg_poll. */
#include "raft_guard.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ---- 1. io -> guard table ------------------------------------------------ */

/* The io's impl and data belong to the io and to libraft, so wrappers find
 * their guard by io address. A process runs a few Raft instances (tests: up
 * to 8 fixture servers). Loop thread only. */
#define RG_MAX_GUARDS 16
static struct {
    struct raft_io *io;
    raft_guard_t *g;
} rg_table[RG_MAX_GUARDS];

static raft_guard_t *guard_of(struct raft_io *io)
{
    for (unsigned i = 0; i < RG_MAX_GUARDS; i++)
        if (rg_table[i].io == io)
            return rg_table[i].g;
    assert(0 && "raft_guard: io method called on an unguarded io");
    return NULL;
}

/* Completed snapshot puts kept to recognise a second completion (#344). */
#define RG_PUT_RETIRED_MAX 16

enum { SLOT_FREE, SLOT_PENDING, SLOT_DONE, SLOT_ORPHAN };
enum { OP_TRUNCATE, OP_APPEND };

struct rg_run {
    raft_index first; /* first index with this term; runs end at the next run */
    raft_term term;
};

/* One io->append from the library, from the call until its completion has
 * been accounted in order. Allocated in w_append, freed by advance_persisted
 * once it and every append before it completed (or by rg_close). */
struct rg_append {
    raft_guard_t *g;
    struct raft_io_append inner;
    struct raft_io_append *user;
    raft_io_append_cb user_cb;
    const struct raft_entry *entries;
    unsigned n;
    raft_index first, last; /* last < first: every entry was truncated */
    int done, status;
    int confirms_truncate; /* first append issued after a truncate */
    int ae_valid;          /* AppendEntries this append came from */
    raft_index ae_last;
    struct rg_append *next;
};

/* A truncate or an append waiting behind a deferred truncate. Allocated when
 * deferred, freed when issued or cancelled. */
struct rg_op {
    int kind;
    raft_index index;      /* OP_TRUNCATE */
    struct rg_append *rec; /* OP_APPEND */
    struct rg_op *next;
};

/* One io->snapshot_put. Allocated in w_snapshot_put; after completion kept on
 * the retired list (at most RG_PUT_RETIRED_MAX), freed from there or by
 * rg_close. */
struct rg_put {
    raft_guard_t *g;
    struct raft_io_snapshot_put inner;
    struct raft_io_snapshot_put *user;
    raft_io_snapshot_put_cb user_cb;
    const struct raft_snapshot *snapshot;
    unsigned trailing;
    raft_index index;
    raft_term term;
    int fired;
    struct rg_put *next;
};

/* A barrier request. Allocated by slot_get, owned by the guard until rg_close
 * (never freed earlier, so a late or repeated library callback never touches
 * freed memory); reused FIFO once the library has answered. */
struct rg_slot {
    struct raft_barrier req;
    raft_guard_t *g;
    void *data;
    rg_barrier_cb cb; /* NULL: the guard's own no-op */
    raft_term term;
    int state;
    int status;
    struct rg_slot *next_all;
    struct rg_slot *next; /* free or done list */
};

static unsigned conf_index(const struct raft *r, raft_id id)
{
    for (unsigned i = 0; i < r->configuration.n; i++)
        if (r->configuration.servers[i].id == id)
            return i;
    return r->configuration.n;
}

/* ---- 2. Log mirror ------------------------------------------------------- */

static raft_term term_of(const raft_guard_t *g, raft_index index)
{
    if (index == 0)
        return 0;
    if (g->n_runs > 0 && index >= g->runs[0].first && index <= g->last) {
        for (unsigned k = g->n_runs; k-- > 0;)
            if (g->runs[k].first <= index)
                return g->runs[k].term;
    }
    if (index == g->snap_index)
        return g->snap_term;
    return 0;
}

static int runs_reserve(raft_guard_t *g, unsigned extra)
{
    if (g->n_runs + extra <= g->cap_runs)
        return 0;
    unsigned cap = g->cap_runs ? g->cap_runs : 8;
    while (cap < g->n_runs + extra)
        cap *= 2;
    /* Owned by the guard; freed in rg_close. */
    struct rg_run *runs = realloc(g->runs, cap * sizeof(*runs));
    if (runs == NULL)
        return RAFT_NOMEM;
    g->runs = runs;
    g->cap_runs = cap;
    return 0;
}

/* Drop every index >= @index from the mirror; appends in flight that cover
 * them will not count as persisted. */
static void mirror_truncate(raft_guard_t *g, raft_index index)
{
    if (index == 0)
        index = 1;
    if (index <= g->last)
        g->last = index - 1;
    while (g->n_runs > 0 && g->runs[g->n_runs - 1].first > g->last)
        g->n_runs--;
    if (g->persisted > g->last)
        g->persisted = g->last;
    for (struct rg_append *a = g->appends_head; a != NULL; a = a->next)
        if (a->last >= index)
            a->last = index - 1;
}

/* Runs that appending @entries after the mirror's last entry would add. */
static unsigned new_runs(const raft_guard_t *g, const struct raft_entry *entries, unsigned n)
{
    unsigned k = 0;
    raft_term prev = g->n_runs > 0 ? g->runs[g->n_runs - 1].term : 0;
    for (unsigned i = 0; i < n; i++) {
        if (i == 0 ? (g->n_runs == 0 || entries[0].term != prev)
                   : entries[i].term != entries[i - 1].term)
            k++;
    }
    return k;
}

/* Record @n entries at @first. The caller reserved new_runs() capacity. */
static void mirror_append(raft_guard_t *g, raft_index first, const struct raft_entry *entries,
                          unsigned n)
{
    if (first <= g->last)
        mirror_truncate(g, first);
    else if (first > g->last + 1)
        g->n_runs = 0; /* a gap: nothing before @first is known any more */
    for (unsigned k = 0; k < n; k++) {
        if (g->n_runs == 0 || g->runs[g->n_runs - 1].term != entries[k].term) {
            g->runs[g->n_runs].first = first + k;
            g->runs[g->n_runs].term = entries[k].term;
            g->n_runs++;
        }
    }
    if (n > 0)
        g->last = first + n - 1;
}

/* A snapshot was stored: with @trailing == 0 (installed from the leader) it
 * replaces the whole log; otherwise entries before it may go. */
static void mirror_snapshot(raft_guard_t *g, unsigned trailing, raft_index index, raft_term term)
{
    g->snap_index = index;
    g->snap_term = term;
    if (trailing == 0) {
        g->n_runs = 0;
        g->last = index;
        g->persisted = index;
        for (struct rg_append *a = g->appends_head; a != NULL; a = a->next)
            a->last = a->first - 1;
        return;
    }
    raft_index keep = index > trailing ? index - trailing + 1 : 1;
    unsigned drop = 0;
    while (drop + 1 < g->n_runs && g->runs[drop + 1].first <= keep)
        drop++;
    if (drop > 0) {
        memmove(g->runs, g->runs + drop, (g->n_runs - drop) * sizeof(*g->runs));
        g->n_runs -= drop;
    }
}

/* Pop completed appends from the head, in issue order, extending the
 * persisted index over contiguous successful ones. A failed or truncated
 * append leaves a hole the index never crosses until it is filled again. */
static void advance_persisted(raft_guard_t *g)
{
    while (g->appends_head != NULL && g->appends_head->done) {
        struct rg_append *a = g->appends_head;
        g->appends_head = a->next;
        if (g->appends_head == NULL)
            g->appends_tail = NULL;
        if (a->status == 0 && a->last >= a->first && a->first <= g->persisted + 1 &&
            a->last > g->persisted)
            g->persisted = a->last;
        free(a);
    }
}

/* ---- 3. io wrappers --------------------------------------------------------*/

/* Give back what a successful io->load returned, when the guard must fail it
 * after all (libraft frees nothing from a failed load). */
static void free_loaded(struct raft_snapshot *snapshot, struct raft_entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (entries[i].batch != NULL && (i == 0 || entries[i].batch != entries[i - 1].batch))
            raft_free(entries[i].batch);
    raft_free(entries);
    if (snapshot != NULL) {
        raft_configuration_close(&snapshot->configuration);
        for (unsigned i = 0; i < snapshot->n_bufs; i++)
            raft_free(snapshot->bufs[i].base);
        raft_free(snapshot->bufs);
        raft_free(snapshot);
    }
}

static int w_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
                  struct raft_snapshot **snapshot, raft_index *start_index,
                  struct raft_entry **entries, size_t *n_entries)
{
    raft_guard_t *g = guard_of(io);
    int rv = g->orig.load(io, term, voted_for, snapshot, start_index, entries, n_entries);
    if (rv != 0)
        return rv;
    g->n_runs = 0;
    g->last = 0;
    g->snap_index = 0;
    g->snap_term = 0;
    if (*snapshot != NULL) {
        g->snap_index = (*snapshot)->index;
        g->snap_term = (*snapshot)->term;
        g->last = g->snap_index;
    }
    if (*n_entries > 0) {
        g->n_runs = 0;
        if (runs_reserve(g, new_runs(g, *entries, (unsigned)*n_entries)) != 0) {
            free_loaded(*snapshot, *entries, *n_entries);
            *snapshot = NULL;
            *entries = NULL;
            *n_entries = 0;
            return RAFT_NOMEM; /* raft_start fails cleanly */
        }
        g->last = *start_index - 1;
        mirror_append(g, *start_index, *entries, (unsigned)*n_entries);
    }
    g->persisted = g->last; /* everything loaded is on disk */
    return 0;
}

/* #336 on the leader: until this leader has persisted an entry of its own
 * term, libraft 0.15 would commit its last stored entry (of an earlier term)
 * by counting replicas. The acknowledgement is reduced to what the leader
 * already knew (the follower's match index): no commit, no harm, and the
 * follower still counts as alive for the leader's step-down check. */
static void hold_back_ack(raft_guard_t *g, struct raft_message *msg)
{
    struct raft *r = g->r;
    struct raft_append_entries_result *res = &msg->append_entries_result;
    if (raft_state(r) != RAFT_LEADER || res->rejected != 0 || res->term != r->current_term)
        return;
    if (term_of(g, r->last_stored) == r->current_term)
        return;
    unsigned i = conf_index(r, msg->server_id);
    if (i >= r->configuration.n)
        return;
    raft_index match = r->leader_state.progress[i].match_index;
    if (res->last_log_index > match) {
        res->last_log_index = match;
        g->stats.acks_held++;
    }
}

static void w_recv(struct raft_io *io, struct raft_message *msg)
{
    raft_guard_t *g = guard_of(io);
    int saved_valid = g->ae_valid;
    raft_index saved_last = g->ae_last;

    /* #467: 0.15 converts to candidate on a TimeoutNow even while entries
     * are being stored; upstream ignores it then (the leader retries). */
    if (msg->type == RAFT_IO_TIMEOUT_NOW && (g->defences & RG_TN_DROP) && g->inflight > 0) {
        g->stats.timeout_now_dropped++;
        return;
    }

    /* One vote per term: 0.15's electionVote grants a RequestVote that
     * carries disrupt_leader (a transfer target's) even when this server
     * already voted for another candidate in that term, and r->transfer
     * survives a step-down, so a deposed leader can elect two servers in one
     * term. A request of the current term from anyone but the server voted
     * for is dropped like a lost message; a higher term resets the vote in
     * the library as usual, and pre-votes change nothing persistent. */
    if (msg->type == RAFT_IO_REQUEST_VOTE && (g->defences & RG_ONE_VOTE) &&
        !msg->request_vote.pre_vote && msg->request_vote.term == g->r->current_term &&
        g->r->voted_for != 0 && g->r->voted_for != msg->request_vote.candidate_id) {
        g->stats.votes_refused++;
        return;
    }

    g->ae_valid = msg->type == RAFT_IO_APPEND_ENTRIES;
    if (g->ae_valid)
        g->ae_last = msg->append_entries.prev_log_index + msg->append_entries.n_entries;
    if (msg->type == RAFT_IO_APPEND_ENTRIES_RESULT && (g->defences & RG_ACK_HOLDBACK))
        hold_back_ack(g, msg);
    g->recv_cb(io, msg);
    g->ae_valid = saved_valid;
    g->ae_last = saved_last;
}

/* #467: a follower whose election timer expires while appends are in flight
 * would become candidate with a log it has not stored and a configuration
 * that does not match that log (0.15 applies a received configuration only
 * once stored, and only if still follower then). Upstream restarts the timer
 * instead; so does this, through the public election_timer_start, just
 * before the library's tick looks at it. */
static void w_tick(struct raft_io *io)
{
    raft_guard_t *g = guard_of(io);
    struct raft *r = g->r;
    if ((g->defences & RG_DEFER_CANDIDACY) && g->inflight > 0 && r->state == RAFT_FOLLOWER) {
        raft_time now = io->time(io);
        if (now - r->election_timer_start >= r->follower_state.randomized_election_timeout) {
            r->election_timer_start = now;
            g->stats.candidacy_deferred++;
        }
    }
    g->tick_cb(io);
}

static int w_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    raft_guard_t *g = guard_of(io);
    g->recv_cb = recv;
    g->tick_cb = tick;
    return g->orig.start(io, msecs, w_tick, w_recv);
}

/* Outgoing messages:
 *  - RequestVote result: a granted vote is remembered, and a second one in
 *    the same term to another candidate counted (evidence, any defences);
 *  - RequestVote (#467): not sent while appends are in flight (a candidacy
 *    that started anyway, e.g. a leader stepping down with writes queued),
 *    so no node is elected on entries it has not stored; the library sees a
 *    connection failure and tries again next round;
 *  - RequestVote (#429): the last index/term are the persisted ones;
 *  - TimeoutNow (#477): held until the target acknowledged the whole log;
 *  - AppendEntries result (truthful acks): a success acknowledges at most the
 *    range the answered AppendEntries covered, not a stale tail. */
static int w_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *msg,
                  raft_io_send_cb cb)
{
    raft_guard_t *g = guard_of(io);
    struct raft *r = g->r;
    struct raft_message copy;

    if (msg->type == RAFT_IO_REQUEST_VOTE) {
        if ((g->defences & RG_VOTE_HOLD) && g->inflight > 0) {
            g->stats.votes_held++;
            return RAFT_NOCONNECTION;
        }
        copy = *msg;
        if (g->defences & RG_VOTE_PERSISTED) {
            raft_index pi = g->persisted;
            raft_term pt = term_of(g, pi);
            if (pi > 0 && pt == 0) {
                g->stats.votes_held++; /* persisted term unknown: claim nothing */
                return RAFT_NOCONNECTION;
            }
            if (copy.request_vote.last_log_index != pi || copy.request_vote.last_log_term != pt) {
                copy.request_vote.last_log_index = pi;
                copy.request_vote.last_log_term = pt;
                g->stats.votes_rewritten++;
            }
        }
        if (g->inflight > 0 || copy.request_vote.last_log_index > g->persisted)
            g->stats.votes_unpersisted++;
        return g->orig.send(io, req, &copy, cb);
    } else if (msg->type == RAFT_IO_REQUEST_VOTE_RESULT) {
        const struct raft_request_vote_result *res = &msg->request_vote_result;
        if (res->vote_granted && res->pre_vote != raft_tribool_true) {
            if (res->term == g->granted_term && msg->server_id != g->granted_to)
                g->stats.double_votes++;
            g->granted_term = res->term;
            g->granted_to = msg->server_id;
        }
    } else if (msg->type == RAFT_IO_TIMEOUT_NOW && cb == NULL && (g->defences & RG_TIMEOUT_NOW) &&
               raft_state(r) == RAFT_LEADER) {
        unsigned i = conf_index(r, msg->server_id);
        if (i < r->configuration.n &&
            r->leader_state.progress[i].match_index < raft_last_index(r)) {
            g->tn_target = msg->server_id;
            g->tn_term = r->current_term;
            g->stats.timeout_now_held++;
            return 0; /* 0.15 sends TimeoutNow without a callback */
        }
    } else if (msg->type == RAFT_IO_APPEND_ENTRIES_RESULT && (g->defences & RG_TRUTHFUL_ACKS) &&
               g->ae_valid && msg->append_entries_result.rejected == 0 &&
               msg->append_entries_result.last_log_index > g->ae_last) {
        copy = *msg;
        copy.append_entries_result.last_log_index = g->ae_last;
        g->stats.acks_clamped++;
        return g->orig.send(io, req, &copy, cb);
    }
    return g->orig.send(io, req, msg, cb);
}

static void on_append(struct raft_io_append *inner, int status)
{
    struct rg_append *a = inner->data;
    raft_guard_t *g = a->g;
    struct raft_io_append *user = a->user;
    raft_io_append_cb cb = a->user_cb;
    int saved_valid = g->ae_valid;
    raft_index saved_last = g->ae_last;
    int ae_valid = a->ae_valid;
    raft_index ae_last = a->ae_last;

    a->done = 1;
    a->status = status;
    g->inflight--;
    g->stats.appends_in_flight = g->inflight;
    if (a->confirms_truncate) {
        g->trunc_unconfirmed = 0;
        g->trunc_has_confirmer = 0;
    }
    advance_persisted(g); /* may free a */

    /* The library answers the AppendEntries this append came from here. */
    g->ae_valid = ae_valid;
    g->ae_last = ae_last;
    user->cb = cb;
    cb(user, status);
    g->ae_valid = saved_valid;
    g->ae_last = saved_last;
}

/* Hand an append to the io. On a synchronous failure of a deferred append the
 * library already got 0 back, so the failure is delivered as its completion. */
static int issue_append(raft_guard_t *g, struct rg_append *a, int deferred)
{
    if (g->trunc_unconfirmed && !g->trunc_has_confirmer) {
        a->confirms_truncate = 1;
        g->trunc_has_confirmer = 1;
    }
    a->inner.data = a;
    int rv = g->orig.append(g->io, &a->inner, a->entries, a->n, on_append);
    if (rv != 0 && deferred)
        on_append(&a->inner, rv);
    return rv;
}

static void unlink_append(raft_guard_t *g, struct rg_append *a)
{
    struct rg_append **p = &g->appends_head;
    struct rg_append *prev = NULL;
    while (*p != a) {
        prev = *p;
        p = &(*p)->next;
    }
    *p = a->next;
    if (g->appends_tail == a)
        g->appends_tail = prev;
}

static int w_append(struct raft_io *io, struct raft_io_append *req,
                    const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    raft_guard_t *g = guard_of(io);
    /* Owned by the guard until advance_persisted frees it. */
    struct rg_append *a = calloc(1, sizeof(*a));
    if (a == NULL || runs_reserve(g, new_runs(g, entries, n)) != 0) {
        free(a);
        return RAFT_NOMEM;
    }
    a->g = g;
    a->user = req;
    a->user_cb = cb;
    a->entries = entries;
    a->n = n;
    a->first = g->last + 1;
    a->last = g->last + n;
    a->ae_valid = g->ae_valid;
    a->ae_last = g->ae_last;
    mirror_append(g, a->first, entries, n);
    if (g->appends_tail != NULL)
        g->appends_tail->next = a;
    else
        g->appends_head = a;
    g->appends_tail = a;
    g->inflight++;
    g->stats.appends_in_flight = g->inflight;

    if (g->trunc_q_head != NULL) {
        /* Behind a deferred truncate: keep the order. Owned by the queue. */
        struct rg_op *op = calloc(1, sizeof(*op));
        if (op == NULL) {
            unlink_append(g, a);
            g->inflight--;
            mirror_truncate(g, a->first);
            free(a);
            return RAFT_NOMEM;
        }
        op->kind = OP_APPEND;
        op->rec = a;
        g->trunc_q_tail->next = op;
        g->trunc_q_tail = op;
        return 0;
    }
    int rv = issue_append(g, a, 0);
    if (rv != 0) {
        /* The library undoes its in-memory append on a refused write. */
        if (a->confirms_truncate)
            g->trunc_has_confirmer = 0;
        unlink_append(g, a);
        g->inflight--;
        g->stats.appends_in_flight = g->inflight;
        mirror_truncate(g, a->first);
        free(a);
    }
    return rv;
}

/* #435: a truncate while a snapshot put is in flight in raft_uv (or before
 * the previous truncate took effect) would attach no raft_uv barrier and
 * never run. It waits, and every append after it waits behind it, in order.
 * A truncate while an installed snapshot (trailing 0) is being stored comes
 * from the io implementation itself (the fixture truncates its log there;
 * libraft ignores AppendEntries during an install) and passes through. */
static int w_truncate(struct raft_io *io, raft_index index)
{
    raft_guard_t *g = guard_of(io);
    int rv;
    if (!(g->defences & RG_UV_BARRIERS) || g->install_inflight) {
        rv = g->orig.truncate(io, index);
    } else if (g->put_inflight || g->trunc_unconfirmed || g->trunc_q_head != NULL) {
        /* Owned by the queue until issued by drain or cancelled at close. */
        struct rg_op *op = calloc(1, sizeof(*op));
        if (op == NULL)
            return RAFT_NOMEM;
        op->kind = OP_TRUNCATE;
        op->index = index;
        if (g->trunc_q_tail != NULL)
            g->trunc_q_tail->next = op;
        else
            g->trunc_q_head = op;
        g->trunc_q_tail = op;
        g->stats.uv_ops_deferred++;
        rv = 0;
    } else {
        rv = g->orig.truncate(io, index);
        if (rv == 0) {
            g->trunc_unconfirmed = 1;
            g->trunc_has_confirmer = 0;
        }
    }
    if (rv == 0)
        mirror_truncate(g, index); /* the library drops them from its log now */
    return rv;
}

static void retire_put(raft_guard_t *g, struct rg_put *p)
{
    p->next = g->put_retired;
    g->put_retired = p;
    if (++g->n_put_retired <= RG_PUT_RETIRED_MAX)
        return;
    /* Free the oldest (the list's tail). */
    struct rg_put **q = &g->put_retired;
    while ((*q)->next != NULL)
        q = &(*q)->next;
    free(*q);
    *q = NULL;
    g->n_put_retired--;
}

/* Complete a put that never reached the io (its slot is retired first). */
static void fail_put(raft_guard_t *g, struct rg_put *p, int status)
{
    struct raft_io_snapshot_put *user = p->user;
    raft_io_snapshot_put_cb cb = p->user_cb;
    p->fired = 1;
    retire_put(g, p);
    user->cb = cb;
    cb(user, status);
}

static void on_put(struct raft_io_snapshot_put *inner, int status)
{
    struct rg_put *p = inner->data;
    raft_guard_t *g = p->g;
    if (p->fired) {
        g->stats.double_callbacks++; /* #344: never deliver a completion twice */
        return;
    }
    p->fired = 1;
    g->put_inflight--;
    if (p->trailing == 0)
        g->install_inflight--;
    if (status == 0)
        mirror_snapshot(g, p->trailing, p->index, p->term);
    struct raft_io_snapshot_put *user = p->user;
    raft_io_snapshot_put_cb cb = p->user_cb;
    retire_put(g, p);
    user->cb = cb;
    cb(user, status);
}

static int issue_put(raft_guard_t *g, struct rg_put *p)
{
    p->inner.data = p;
    g->put_inflight++;
    if (p->trailing == 0)
        g->install_inflight++;
    int rv = g->orig.snapshot_put(g->io, p->trailing, &p->inner, p->snapshot, on_put);
    if (rv != 0) {
        g->put_inflight--;
        if (p->trailing == 0)
            g->install_inflight--;
    }
    return rv;
}

static int w_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                          const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    raft_guard_t *g = guard_of(io);
    /* Owned by the guard: retired after completion, freed by retire_put or
     * rg_close; freed here if refused. */
    struct rg_put *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return RAFT_NOMEM;
    p->g = g;
    p->user = req;
    p->user_cb = cb;
    p->snapshot = snapshot;
    p->trailing = trailing;
    p->index = snapshot->index;
    p->term = snapshot->term;
    if ((g->defences & RG_UV_BARRIERS) &&
        (g->put_inflight || g->trunc_unconfirmed || g->trunc_q_head != NULL)) {
        if (g->put_wait_tail != NULL)
            g->put_wait_tail->next = p;
        else
            g->put_wait_head = p;
        g->put_wait_tail = p;
        g->stats.uv_ops_deferred++;
        return 0;
    }
    int rv = issue_put(g, p);
    if (rv != 0)
        free(p);
    return rv;
}

/* Issue deferred raft_uv operations whose turn has come: a truncate once no
 * snapshot put is in flight and the previous truncate took effect (then the
 * appends queued behind it), a snapshot put once neither is pending.
 *
 * Only from rg_poll, never from an io completion: raft_uv 0.15 calls the
 * snapshot put callback before it clears its own barrier (UvUnblock), so a
 * truncate issued from inside that callback would be lost exactly like the
 * one this defers. */
static void drain(raft_guard_t *g)
{
    if (g->draining || g->closed)
        return;
    g->draining = 1; /* issuing may complete synchronously and re-enter */
    for (;;) {
        struct rg_op *op = g->trunc_q_head;
        if (op != NULL && (op->kind == OP_APPEND || (!g->put_inflight && !g->trunc_unconfirmed))) {
            g->trunc_q_head = op->next;
            if (g->trunc_q_head == NULL)
                g->trunc_q_tail = NULL;
            if (op->kind == OP_TRUNCATE) {
                if (g->orig.truncate(g->io, op->index) == 0) {
                    g->trunc_unconfirmed = 1;
                    g->trunc_has_confirmer = 0;
                }
            } else {
                issue_append(g, op->rec, 1);
            }
            free(op);
            continue;
        }
        struct rg_put *p = g->put_wait_head;
        if (p != NULL && op == NULL && !g->put_inflight && !g->trunc_unconfirmed) {
            g->put_wait_head = p->next;
            if (g->put_wait_head == NULL)
                g->put_wait_tail = NULL;
            p->next = NULL;
            int rv = issue_put(g, p);
            if (rv != 0)
                fail_put(g, p, rv);
            continue;
        }
        break;
    }
    g->draining = 0;
}

/* Deferred operations never reached the io: fail them as raft_uv fails its
 * own queued requests on close. */
static void cancel_deferred(raft_guard_t *g)
{
    while (g->trunc_q_head != NULL) {
        struct rg_op *op = g->trunc_q_head;
        g->trunc_q_head = op->next;
        if (op->kind == OP_APPEND) {
            op->rec->inner.data = op->rec;
            on_append(&op->rec->inner, RAFT_CANCELED);
        }
        free(op);
    }
    g->trunc_q_tail = NULL;
    while (g->put_wait_head != NULL) {
        struct rg_put *p = g->put_wait_head;
        g->put_wait_head = p->next;
        fail_put(g, p, RAFT_CANCELED);
    }
    g->put_wait_tail = NULL;
}

static void w_close(struct raft_io *io, raft_io_close_cb cb)
{
    raft_guard_t *g = guard_of(io);
    g->closed = 1; /* drain stops issuing */
    cancel_deferred(g);
    g->tn_target = 0;
    g->orig.close(io, cb);
}

int rg_init(raft_guard_t *g, struct raft *r, struct raft_io *io)
{
    if (g == NULL || r == NULL || io == NULL || io->start == NULL)
        return RAFT_INVALID;
    unsigned free_i = RG_MAX_GUARDS;
    for (unsigned i = 0; i < RG_MAX_GUARDS; i++) {
        if (rg_table[i].io == io)
            return RAFT_INVALID;
        if (rg_table[i].io == NULL && free_i == RG_MAX_GUARDS)
            free_i = i;
    }
    if (free_i == RG_MAX_GUARDS)
        return RAFT_TOOMANY;
    memset(g, 0, sizeof(*g));
    g->r = r;
    g->io = io;
    g->defences = RG_ALL;
    g->orig.close = io->close;
    g->orig.load = io->load;
    g->orig.start = io->start;
    g->orig.send = io->send;
    g->orig.append = io->append;
    g->orig.truncate = io->truncate;
    g->orig.snapshot_put = io->snapshot_put;
    io->close = w_close;
    io->load = w_load;
    io->start = w_start;
    io->send = w_send;
    io->append = w_append;
    io->truncate = w_truncate;
    io->snapshot_put = w_snapshot_put;
    rg_table[free_i].io = io;
    rg_table[free_i].g = g;
    return 0;
}

raft_index rg_persisted_index(const raft_guard_t *g)
{
    return g->persisted;
}

raft_term rg_persisted_term(const raft_guard_t *g)
{
    return term_of(g, g->persisted);
}

/* ---- 4. Configuration changes --------------------------------------------*/

/* The rule (see raft_guard.h): the entry at the leader's commit index is of
 * its current term. The mirror knows the term of every index from the
 * snapshot on, and a leader's commit index is never below its snapshot. */
int rg_change_allowed(const raft_guard_t *g)
{
    const struct raft *r = g->r;
    if (g->closed || raft_state((struct raft *)r) != RAFT_LEADER || r->transfer != NULL)
        return RAFT_NOTLEADER;
    if (!(g->defences & RG_CHANGE_RULE))
        return 0;
    if (r->commit_index == 0 || term_of(g, r->commit_index) != r->current_term)
        return RAFT_BUSY;
    return 0;
}

static int change_gate(raft_guard_t *g)
{
    int rv = rg_change_allowed(g);
    if (rv == RAFT_BUSY)
        g->stats.changes_deferred++;
    /* RAFT_NOTLEADER: let libraft say it, with its own error message. */
    return rv == RAFT_BUSY ? rv : 0;
}

/* Voters of the current configuration once @id is removed (@role < 0) or
 * given @role; *only gets the one voter left when that count is 1. */
static unsigned voters_after(const struct raft *r, raft_id id, int role, raft_id *only)
{
    unsigned n = 0;
    for (unsigned i = 0; i < r->configuration.n; i++) {
        const struct raft_server *srv = &r->configuration.servers[i];
        int v = srv->id == id ? role == RAFT_VOTER : srv->role == RAFT_VOTER;
        if (v) {
            n++;
            *only = srv->id;
        }
    }
    return n;
}

/* The sole-voter rule (raft_guard.h): RAFT_BADROLE for a change that leaves
 * one voter that is not this leader, or none. */
static int sole_voter_gate(raft_guard_t *g, raft_id id, int role)
{
    raft_id only = 0;
    if (!(g->defences & RG_SOLE_VOTER))
        return 0;
    unsigned n = voters_after(g->r, id, role, &only);
    if (n > 1 || (n == 1 && only == g->r->id))
        return 0;
    g->stats.changes_refused++;
    return RAFT_BADROLE;
}

int rg_add(raft_guard_t *g, struct raft_change *req, raft_id id, const char *address,
           raft_change_cb cb)
{
    int rv = change_gate(g);
    return rv != 0 ? rv : raft_add(g->r, req, id, address, cb);
}

int rg_assign(raft_guard_t *g, struct raft_change *req, raft_id id, int role, raft_change_cb cb)
{
    int rv = change_gate(g);
    if (rv == 0)
        rv = sole_voter_gate(g, id, role);
    return rv != 0 ? rv : raft_assign(g->r, req, id, role, cb);
}

int rg_remove(raft_guard_t *g, struct raft_change *req, raft_id id, raft_change_cb cb)
{
    int rv = change_gate(g);
    if (rv == 0)
        rv = sole_voter_gate(g, id, -1);
    return rv != 0 ? rv : raft_remove(g->r, req, id, cb);
}

/* ---- 5. Barrier pool and rg_poll ----------------------------------------- */

static void on_barrier(struct raft_barrier *req, int status)
{
    struct rg_slot *s = req->data;
    raft_guard_t *g = s->g;
    switch (s->state) {
    case SLOT_PENDING:
        s->state = SLOT_DONE;
        s->status = status;
        s->next = NULL;
        if (g->done_tail != NULL)
            g->done_tail->next = s;
        else
            g->done_head = s;
        g->done_tail = s;
        break;
    case SLOT_ORPHAN: /* already failed by rg_poll; now the library let go */
        g->stats.late_callbacks++;
        s->state = SLOT_FREE;
        s->next = NULL;
        if (g->free_tail != NULL)
            g->free_tail->next = s;
        else
            g->free_head = s;
        g->free_tail = s;
        break;
    default:
        g->stats.double_callbacks++;
        break;
    }
}

static void slot_put(raft_guard_t *g, struct rg_slot *s)
{
    s->state = SLOT_FREE;
    s->next = NULL;
    if (g->free_tail != NULL)
        g->free_tail->next = s;
    else
        g->free_head = s;
    g->free_tail = s;
}

static struct rg_slot *slot_get(raft_guard_t *g)
{
    struct rg_slot *s = g->free_head;
    if (s != NULL) {
        g->free_head = s->next;
        if (g->free_head == NULL)
            g->free_tail = NULL;
    } else {
        /* Owned by the guard; freed by rg_close only. */
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return NULL;
        s->g = g;
        s->next_all = g->slots;
        g->slots = s;
    }
    s->next = NULL;
    return s;
}

static int slot_barrier(raft_guard_t *g, void *data, rg_barrier_cb cb)
{
    struct rg_slot *s = slot_get(g);
    if (s == NULL)
        return RAFT_NOMEM;
    s->data = data;
    s->cb = cb;
    s->term = g->r->current_term;
    s->state = SLOT_PENDING;
    memset(&s->req, 0, sizeof(s->req));
    s->req.data = s;
    int rv = raft_barrier(g->r, &s->req, on_barrier);
    if (rv != 0)
        slot_put(g, s);
    return rv;
}

int rg_barrier(raft_guard_t *g, void *data, rg_barrier_cb cb)
{
    if (g->closed)
        return RAFT_SHUTDOWN;
    if (cb == NULL)
        return RAFT_INVALID;
    return slot_barrier(g, data, cb);
}

static void deliver_done(raft_guard_t *g)
{
    while (g->done_head != NULL) {
        struct rg_slot *s = g->done_head;
        g->done_head = s->next;
        if (g->done_head == NULL)
            g->done_tail = NULL;
        rg_barrier_cb cb = s->cb;
        void *data = s->data;
        int status = s->status;
        slot_put(g, s);
        if (cb != NULL)
            cb(data, status);
    }
}

/* #477: send the held TimeoutNow once its target has acknowledged the whole
 * log; forget it if the transfer or the leadership is over. */
static void on_timeout_now_sent(struct raft_io_send *req, int status)
{
    (void)status;
    free(req);
}

static void poll_timeout_now(raft_guard_t *g)
{
    struct raft *r = g->r;
    if (g->tn_target == 0)
        return;
    if (raft_state(r) != RAFT_LEADER || r->current_term != g->tn_term || r->transfer == NULL ||
        r->transfer->id != g->tn_target) {
        g->tn_target = 0;
        return;
    }
    unsigned i = conf_index(r, g->tn_target);
    if (i >= r->configuration.n) {
        g->tn_target = 0;
        return;
    }
    raft_index last = raft_last_index(r);
    if (r->leader_state.progress[i].match_index < last)
        return;
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_IO_TIMEOUT_NOW;
    m.server_id = g->tn_target;
    m.server_address = r->configuration.servers[i].address;
    m.timeout_now.term = r->current_term;
    m.timeout_now.last_log_index = last;
    m.timeout_now.last_log_term = term_of(g, last);
    /* Owned by the io until on_timeout_now_sent frees it. */
    struct raft_io_send *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return; /* retry next poll */
    g->tn_target = 0;
    if (g->orig.send(g->io, req, &m, on_timeout_now_sent) != 0)
        free(req);
    else
        g->stats.timeout_now_sent++;
}

int rg_poll(raft_guard_t *g)
{
    struct raft *r = g->r;
    if (g->closed)
        return 0;
    drain(g);
    deliver_done(g);

    /* Fail what the library will not answer any more: a barrier of a term in
     * which this node is no longer leader. New slots are linked at the head,
     * so callbacks issuing barriers do not disturb the walk. */
    int leader = raft_state(r) == RAFT_LEADER;
    for (struct rg_slot *s = g->slots; s != NULL; s = s->next_all) {
        if (s->state != SLOT_PENDING || (leader && s->term == r->current_term))
            continue;
        s->state = SLOT_ORPHAN;
        if (s->cb != NULL) {
            g->stats.barriers_failed++;
            s->cb(s->data, RAFT_LEADERSHIPLOST);
        }
    }

    poll_timeout_now(g);

    /* #336: a new leader appends an entry of its term at once, so the
     * acknowledgements held back by hold_back_ack become countable (not
     * during a leadership transfer: raft_barrier refuses then, and the
     * target appends its own). */
    if ((g->defences & RG_NOOP) && leader && r->transfer == NULL &&
        term_of(g, raft_last_index(r)) != r->current_term) {
        int rv = slot_barrier(g, NULL, NULL);
        if (rv != 0)
            return rv;
        g->stats.noops++;
    }
    return 0;
}

void rg_close(raft_guard_t *g)
{
    if (g->io == NULL)
        return;
    g->closed = 1;
    deliver_done(g);
    for (struct rg_slot *s = g->slots; s != NULL; s = s->next_all)
        if (s->state == SLOT_PENDING && s->cb != NULL) {
            s->state = SLOT_ORPHAN;
            s->cb(s->data, RAFT_SHUTDOWN);
        }
    while (g->slots != NULL) {
        struct rg_slot *s = g->slots;
        g->slots = s->next_all;
        free(s);
    }
    cancel_deferred(g);
    while (g->appends_head != NULL) {
        struct rg_append *a = g->appends_head;
        g->appends_head = a->next;
        free(a);
    }
    while (g->put_retired != NULL) {
        struct rg_put *p = g->put_retired;
        g->put_retired = p->next;
        free(p);
    }
    free(g->runs);
    g->runs = NULL;

    struct raft_io *io = g->io;
    io->close = g->orig.close;
    io->load = g->orig.load;
    io->start = g->orig.start;
    io->send = g->orig.send;
    io->append = g->orig.append;
    io->truncate = g->orig.truncate;
    io->snapshot_put = g->orig.snapshot_put;
    for (unsigned i = 0; i < RG_MAX_GUARDS; i++)
        if (rg_table[i].g == g) {
            rg_table[i].io = NULL;
            rg_table[i].g = NULL;
        }
    g->io = NULL;
}
