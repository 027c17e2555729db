/* Replica consistency check on a data node (docs/operations.md, "Consistency
 * check").
 *
 * What this file owns: the CHECK request (frame 40), the check entry's
 * apply, the background sum of this member's rows at that entry's index,
 * and the member's last result (kept in memory until the next check or a
 * restart; shale_check_* metrics).
 *
 * Rules:
 *  - CHECK with start goes to the leader, which proposes an entry carrying
 *    Command.check and answers with its index once it applied it (rp_*,
 *    req_prop.c). Every member applies the same entry at the same index.
 *  - At apply (the loop thread, right after the entry's no-op batch) the
 *    member pins a store view (a RocksDB snapshot at exactly that index)
 *    and sums it on a libuv worker thread (uv_queue_work) at the entry's
 *    rate, so the loop goes on applying and serving. A replayed entry
 *    (index <= the store's applied index: a restart) starts nothing: the
 *    store is past that index.
 *  - A newer check cancels the one running; the result kept is the newest
 *    entry's. A node stopping cancels its check; a store about to be
 *    replaced or closed first waits for every worker to let go of its view
 *    (check_quiesce): a view must never outlive its store.
 *  - Never writes the store, never blocks the loop except in
 *    check_quiesce (a worker sees a cancel within one row or 10 ms). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frame.h"
#include "log.h"
#include "server.h"
#include "store_check.h"

struct check_job {
    uv_work_t w;
    qnode_t link; /* check_state.jobs */
    shaled_t *s;
    store_view_t *view; /* closed by the worker (or check_quiesce) */
    uint64_t index, rate;
    atomic_int cancel;
    int uv_cancelled; /* loop thread: uv_cancel took it before it started */
    check_result_t res;
    int rv;
    char err[STORE_ERRLEN];
    uint64_t t0_us, t1_us;
};

struct check_state {
    uv_mutex_t mu;
    uv_cond_t cv;
    int views; /* views not yet closed (under mu) */
    qnode_t jobs;
    struct check_job *cur; /* the newest check's job while it runs */
    /* The last check applied here. */
    uint64_t index;
    int state; /* SHALE__CHECK_STATE__* */
    check_result_t res;
    uint64_t duration_ms, done_unix_ms, rows, bytes;
    char err[STORE_ERRLEN];
    uint64_t completed, failed;
};

static void unanswered(shaled_t *s, sreq_t *r, int status)
{
    (void)s;
    sreq_fail(r, status != 0 ? SHALE_ENOTLEADER : SHALE_EUNAVAILABLE,
              status != 0 ? "leadership lost before the check entry applied; start it again"
                          : "the check entry applied as a replay; start it again");
}

int check_init(shaled_t *s)
{
    rp_init(&s->check_props, s, unanswered);
    struct check_state *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return SHALE_ENOMEM;
    if (uv_mutex_init(&c->mu) != 0) {
        free(c);
        return SHALE_ENOMEM;
    }
    if (uv_cond_init(&c->cv) != 0) {
        uv_mutex_destroy(&c->mu);
        free(c);
        return SHALE_ENOMEM;
    }
    q_init(&c->jobs);
    s->check = c;
    return 0;
}

static void view_release(struct check_state *c, struct check_job *j)
{
    store_view_close(j->view);
    j->view = NULL;
    uv_mutex_lock(&c->mu);
    c->views--;
    uv_cond_broadcast(&c->cv);
    uv_mutex_unlock(&c->mu);
}

static uint64_t mono_us(void)
{
    return uv_hrtime() / 1000u;
}

/* Worker thread: only the job and its view. */
static void work_cb(uv_work_t *w)
{
    struct check_job *j = w->data;
    j->t0_us = mono_us();
    j->rv = check_compute(j->view, j->rate, &j->cancel, &j->res, j->err);
    j->t1_us = mono_us();
    view_release(j->s->check, j);
}

static void after_cb(uv_work_t *w, int status)
{
    struct check_job *j = w->data;
    shaled_t *s = j->s;
    struct check_state *c = s->check;
    q_remove(&j->link);
    if (status == UV_ECANCELED) {
        j->rv = SHALE_EUNAVAILABLE;
        snprintf(j->err, sizeof(j->err), "check cancelled before it started");
    }
    if (c->cur == j) {
        c->cur = NULL;
        check_result_free(&c->res);
        c->duration_ms = j->t1_us > j->t0_us ? (j->t1_us - j->t0_us) / 1000u : 0;
        c->done_unix_ms = shaled_now_ms();
        if (j->rv == 0) {
            c->res = j->res;
            memset(&j->res, 0, sizeof(j->res));
            c->state = SHALE__CHECK_STATE__CHECK_DONE;
            c->rows = c->res.rows;
            c->bytes = c->res.bytes;
            c->err[0] = '\0';
            c->completed++;
            log_info("consistency check done", " index=%llu slots=%zu rows=%llu ms=%llu",
                     (unsigned long long)c->index, c->res.n, (unsigned long long)c->rows,
                     (unsigned long long)c->duration_ms);
        } else {
            c->state = SHALE__CHECK_STATE__CHECK_FAILED;
            snprintf(c->err, sizeof(c->err), "%s", j->err);
            c->failed++;
            log_warn("consistency check failed", " index=%llu err=\"%s\"",
                     (unsigned long long)c->index, j->err);
        }
    }
    check_result_free(&j->res);
    free(j);
}

void check_applied(shaled_t *s, uint64_t index, const Shale__Command *cmd, int replay)
{
    struct check_state *c = s->check;
    sreq_t *r = rp_take(&s->check_props, cmd);
    if (replay || c == NULL) {
        if (r != NULL)
            unanswered(s, r, 0);
        return;
    }
    if (c->cur != NULL) /* superseded: its result would be older than this one */
        atomic_store(&c->cur->cancel, 1);
    c->cur = NULL;
    check_result_free(&c->res);
    c->index = index;
    c->state = SHALE__CHECK_STATE__CHECK_RUNNING;
    c->err[0] = '\0';
    c->rows = c->bytes = c->duration_ms = 0;
    struct check_job *j = calloc(1, sizeof(*j));
    char err[STORE_ERRLEN] = "";
    int rv = j != NULL ? store_view_open(s->store, &j->view, err) : SHALE_ENOMEM;
    if (rv != 0) {
        free(j);
        c->state = SHALE__CHECK_STATE__CHECK_FAILED;
        snprintf(c->err, sizeof(c->err), "cannot open a store view: %s",
                 err[0] ? err : "out of memory");
        c->failed++;
    } else {
        j->s = s;
        j->index = index;
        j->rate = cmd->check->has_rate_bytes_per_s && cmd->check->rate_bytes_per_s > 0
                      ? cmd->check->rate_bytes_per_s
                  : s->cfg.check_rate_mb < (1u << 20) ? s->cfg.check_rate_mb << 20
                                                      : 0; /* 0: no limit */
        atomic_init(&j->cancel, s->stopping ? 1 : 0);
        j->w.data = j;
        uv_mutex_lock(&c->mu);
        c->views++;
        uv_mutex_unlock(&c->mu);
        if (uv_queue_work(s->loop, &j->w, work_cb, after_cb) != 0) {
            view_release(c, j);
            free(j);
            c->state = SHALE__CHECK_STATE__CHECK_FAILED;
            snprintf(c->err, sizeof(c->err), "cannot queue the check");
            c->failed++;
        } else {
            q_push(&c->jobs, &j->link);
            c->cur = j;
            log_info("consistency check started", " index=%llu rate=%llu",
                     (unsigned long long)index, (unsigned long long)j->rate);
        }
    }
    if (r != NULL) {
        Shale__CheckResponse resp = SHALE__CHECK_RESPONSE__INIT;
        resp.node_id = s->cfg.id;
        resp.has_index = 1;
        resp.index = index;
        resp.has_state = 1;
        resp.state = (Shale__CheckState)c->state;
        sreq_reply(r, SHALE_MSG_CHECK_RESP, &resp.base);
    }
}

/* Cancel every job; with wait, also block until no worker holds a view. */
static void cancel_all(shaled_t *s, int wait)
{
    struct check_state *c = s->check;
    if (c == NULL)
        return;
    for (qnode_t *q = c->jobs.next; q != &c->jobs; q = q->next) {
        struct check_job *j = q_data(q, struct check_job, link);
        atomic_store(&j->cancel, 1);
        /* Not started yet: it never will, and its view is closed here
         * (after_cb then sees UV_ECANCELED). */
        if (wait && !j->uv_cancelled && uv_cancel((uv_req_t *)&j->w) == 0) {
            j->uv_cancelled = 1;
            view_release(c, j);
        }
    }
    if (!wait)
        return;
    uv_mutex_lock(&c->mu);
    while (c->views > 0)
        uv_cond_wait(&c->cv, &c->mu);
    uv_mutex_unlock(&c->mu);
}

void check_stop(shaled_t *s)
{
    cancel_all(s, 0);
}

void check_quiesce(shaled_t *s)
{
    cancel_all(s, 1);
}

void check_free(shaled_t *s)
{
    struct check_state *c = s->check;
    if (c == NULL)
        return;
    check_result_free(&c->res);
    uv_cond_destroy(&c->cv);
    uv_mutex_destroy(&c->mu);
    free(c);
    s->check = NULL;
}

void check_metrics(shaled_t *s, check_metrics_t *m)
{
    const struct check_state *c = s->check;
    memset(m, 0, sizeof(*m));
    if (c == NULL)
        return;
    m->index = c->index;
    m->state = c->state;
    m->duration_ms = c->duration_ms;
    m->done_unix_ms = c->done_unix_ms;
    m->rows = c->rows;
    m->completed = c->completed;
    m->failed = c->failed;
}

static void reply_result(shaled_t *s, sreq_t *r)
{
    const struct check_state *c = s->check;
    Shale__CheckResponse resp = SHALE__CHECK_RESPONSE__INIT;
    resp.node_id = s->cfg.id;
    resp.has_state = 1;
    resp.state = SHALE__CHECK_STATE__CHECK_NONE;
    Shale__CheckSlot *sl = NULL;
    Shale__CheckSlot **ptrs = NULL;
    if (c != NULL && c->state != SHALE__CHECK_STATE__CHECK_NONE) {
        resp.has_index = 1;
        resp.index = c->index;
        resp.state = (Shale__CheckState)c->state;
        if (c->state == SHALE__CHECK_STATE__CHECK_DONE) {
            size_t n = c->res.n;
            sl = calloc(n ? n : 1, sizeof(*sl));
            ptrs = calloc(n ? n : 1, sizeof(*ptrs));
            if (sl == NULL || ptrs == NULL) {
                free(sl);
                free(ptrs);
                sreq_fail(r, SHALE_ENOMEM, "out of memory building the check result");
                return;
            }
            for (size_t i = 0; i < n; i++) {
                const check_slot_t *e = &c->res.slots[i];
                shale__check_slot__init(&sl[i]);
                sl[i].slot = e->slot;
                sl[i].data_sum = e->data_sum;
                sl[i].has_data_keys = 1;
                sl[i].data_keys = e->data_keys;
                sl[i].has_session_sum = 1;
                sl[i].session_sum = e->sess_sum;
                sl[i].has_session_rows = 1;
                sl[i].session_rows = e->sess_rows;
                ptrs[i] = &sl[i];
            }
            resp.n_slots = n;
            resp.slots = ptrs;
            resp.has_duration_ms = 1;
            resp.duration_ms = c->duration_ms;
            resp.has_rows = 1;
            resp.rows = c->rows;
            resp.has_bytes = 1;
            resp.bytes = c->bytes;
        } else if (c->state == SHALE__CHECK_STATE__CHECK_FAILED) {
            resp.error = (char *)c->err;
        }
    }
    sreq_reply(r, SHALE_MSG_CHECK_RESP, &resp.base);
    free(sl);
    free(ptrs);
}

void check_request(shaled_t *s, sreq_t *r)
{
    const Shale__CheckRequest *q = (const Shale__CheckRequest *)r->msg;
    if (strcmp(s->cfg.mode, "meta") == 0) {
        sreq_fail(r, SHALE_EINVAL,
                  "this is a meta node: a consistency check runs in a shard "
                  "group");
        return;
    }
    if (!q->has_start || !q->start) {
        reply_result(s, r); /* any member: its own last result */
        return;
    }
    if (!raft_node_is_leader(s)) {
        sreq_fail(r, SHALE_ENOTLEADER, "a check is started by the group's leader");
        return;
    }
    Shale__CheckStart cs = SHALE__CHECK_START__INIT;
    if (q->has_rate_bytes_per_s) {
        cs.has_rate_bytes_per_s = 1;
        cs.rate_bytes_per_s = q->rate_bytes_per_s;
    }
    Shale__Command cmd = SHALE__COMMAND__INIT;
    cmd.check = &cs;
    rp_submit(&s->check_props, r, &cmd); /* answers r on failure */
}
