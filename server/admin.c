/* Membership changes and leadership transfer, driven on the leader.
 *
 * One change at a time (Raft's single-server changes): a second request
 * while one is in progress gets OVERLOADED. Each change is a small state
 * machine stepped from the end-of-turn check phase (admin_poll), never from
 * inside a Raft callback (FACTS: calling into raft from a failing callback
 * crashed 0.15):
 *
 *   ADD      propose table+member -> applied -> raft_add (SPARE) -> done
 *            -> raft_assign(VOTER | STANDBY) -> done -> answer
 *   REMOVE   raft_remove -> done -> propose table-member (if still leader)
 *            -> applied -> answer; a node Raft no longer has but the table
 *            still lists (a removal cut short) goes straight to the table
 *   TRANSFER raft_transfer -> done -> answer with the new leader
 *
 * Every configuration change goes to libraft through the Raft guard
 * (rg_add / rg_assign / rg_remove), which refuses it with RAFT_BUSY until
 * this leader has committed an entry of its own term (docs/raft-safety.md,
 * "Membership change before the leader's first commit"). The step then
 * waits, re-trying every loop turn, for at most CHANGE_WAIT_MS, and answers
 * UNAVAILABLE (retryable) after that. This is the only place in Shale that
 * changes a Raft configuration after bootstrap.
 *
 * The member table is written before Raft learns of a new node, so any node
 * that sees it in the configuration can also name its client address.
 * Losing leadership mid-change fails the request with NOT_LEADER; the
 * operator retries against the new leader, and every step is idempotent
 * (adding a member already present as a voter answers at once).
 *
 * Owns s->admin. Never touches client data or the proposer's batches. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"
#include "wire.h"

enum admin_step {
    ST_TABLE_ADD,      /* waiting for the table with the member to apply */
    ST_RAFT_ADD,       /* raft_add to issue */
    ST_RAFT_ADD_WAIT,  /* raft_add's callback pending */
    ST_ASSIGN,         /* raft_assign to issue */
    ST_ASSIGN_WAIT,
    ST_REMOVE,         /* raft_remove to issue */
    ST_REMOVE_WAIT,
    ST_TABLE_REMOVE,   /* waiting for the table without the member */
    ST_TRANSFER,
    ST_TRANSFER_WAIT
};

struct admin_op {
    sreq_t *r;
    enum admin_step step;
    uint64_t id;
    int role; /* RAFT_VOTER / RAFT_STANDBY */
    char raft_addr[128];
    int cb_done, cb_status;
    uint64_t started_ms;
    uint64_t busy_since_ms; /* first RAFT_BUSY of the current step, 0 = none */
    union {
        struct raft_change change;
        struct raft_transfer transfer;
    } req;
};

#define ADMIN_TIMEOUT_MS 60000
/* How long a change waits for the leader's first commit in its term. A
 * leader with a reachable majority commits its no-op within a round trip;
 * one that cannot for this long cannot commit the change either. */
#define CHANGE_WAIT_MS 5000

static int callback_pending(const struct admin_op *op)
{
    return (op->step == ST_RAFT_ADD_WAIT || op->step == ST_ASSIGN_WAIT ||
            op->step == ST_REMOVE_WAIT || op->step == ST_TRANSFER_WAIT) &&
           !op->cb_done;
}

/* Answer the request and end the change. The op is freed at once unless a
 * Raft callback still points at it (only on shutdown: raft_close fires it,
 * and admin_fail_all after that frees it). */
/* Answer r with success, msg and the current leader. */
static void reply_ok(shaled_t *s, sreq_t *r, const char *msg)
{
    Shale__AdminResponse resp = SHALE__ADMIN_RESPONSE__INIT;
    resp.message = (char *)(msg ? msg : "ok");
    raft_id lid = 0;
    const char *la = NULL;
    raft_leader(&s->raft, &lid, &la);
    resp.has_leader_id = lid != 0;
    resp.leader_id = lid;
    sreq_reply(r, SHALE_MSG_ADMIN_RESP, &resp.base);
}

static void finish(shaled_t *s, int code, const char *msg)
{
    struct admin_op *op = s->admin;
    if (op == NULL)
        return;
    if (op->r != NULL) {
        if (code == 0) {
            reply_ok(s, op->r, msg);
        } else {
            sreq_fail(op->r, code, msg);
        }
        op->r = NULL;
    }
    if (!callback_pending(op)) {
        free(op);
        s->admin = NULL;
    }
}

static void change_cb(struct raft_change *req, int status)
{
    struct admin_op *op = req->data;
    op->cb_done = 1;
    op->cb_status = status;
}

static void transfer_cb(struct raft_transfer *req)
{
    struct admin_op *op = req->data;
    op->cb_done = 1;
    op->cb_status = 0;
}

static const struct raft_server *conf_find(shaled_t *s, uint64_t id)
{
    for (unsigned i = 0; i < s->raft.configuration.n; i++)
        if (s->raft.configuration.servers[i].id == id)
            return &s->raft.configuration.servers[i];
    return NULL;
}

static int raft_code(int rv)
{
    return rv == RAFT_NOTLEADER || rv == RAFT_LEADERSHIPLOST ? SHALE_ENOTLEADER
           : rv == RAFT_BADID || rv == RAFT_DUPLICATEID || rv == RAFT_BADROLE ||
                   rv == RAFT_DUPLICATEADDRESS
               ? SHALE_EINVAL
               : SHALE_EUNAVAILABLE;
}

/* The guard refused a configuration change (RAFT_BUSY: no entry of this
 * leader's term committed yet). Returns 1 while the step should be tried
 * again next turn; after CHANGE_WAIT_MS answers UNAVAILABLE and returns 1.
 * Returns 0 for any other result, which the caller handles. */
static int change_busy(shaled_t *s, struct admin_op *op, int rv)
{
    if (rv != RAFT_BUSY) {
        op->busy_since_ms = 0;
        return 0;
    }
    op->cb_done = 1; /* libraft was not called: no callback will come */
    uint64_t now = shaled_now_ms();
    if (op->busy_since_ms == 0) {
        op->busy_since_ms = now;
        log_info("membership change waits for the leader's first commit in its term",
                 " id=%llu", (unsigned long long)op->id);
    } else if (now - op->busy_since_ms > CHANGE_WAIT_MS) {
        finish(s, SHALE_EUNAVAILABLE,
               "the leader has not committed an entry of its term yet (Raft's rule before a "
               "membership change): no majority reachable? retry");
    }
    return 1;
}

/* A leadership transfer that needs no change: the target already leads
 * (answered ok), is not a member, or is a read replica (refused). Says so
 * in the operator's terms before libraft would answer with its raw text,
 * and before the one-change-at-a-time rule (nothing changes). id 0 lets
 * libraft pick the most up-to-date voter. 1 when r was answered. */
static int transfer_answered(shaled_t *s, sreq_t *r)
{
    const Shale__LeaderTransferRequest *t = (Shale__LeaderTransferRequest *)r->msg;
    uint64_t id = t->has_id ? t->id : 0;
    const struct raft_server *target = id != 0 ? conf_find(s, id) : NULL;
    char msg[256];
    if (id != 0 && id == s->cfg.id) {
        snprintf(msg, sizeof(msg), "node %llu already leads this group", (unsigned long long)id);
        reply_ok(s, r, msg);
        return 1;
    }
    if (id != 0 && target == NULL) {
        snprintf(msg, sizeof(msg), "node %llu is not a member of this group",
                 (unsigned long long)id);
        sreq_fail(r, SHALE_EINVAL, msg);
        return 1;
    }
    if (target != NULL && target->role != RAFT_VOTER) {
        snprintf(msg, sizeof(msg),
                 "node %llu is a read replica (not a voter) and cannot lead: promote it first "
                 "(shalectl replica add GROUP ID RAFT_ADDR CLIENT_ADDR without --read-only) or "
                 "name a voter",
                 (unsigned long long)id);
        sreq_fail(r, SHALE_EINVAL, msg);
        return 1;
    }
    return 0;
}

void admin_start(shaled_t *s, sreq_t *r)
{
    char msg[256];
    if (r->type == SHALE_MSG_LEADER_TRANSFER_REQ && transfer_answered(s, r))
        return;
    if (s->admin != NULL) {
        sreq_fail(r, SHALE_EOVERLOAD,
                  "another membership change is in progress; retry when it ends");
        return;
    }
    struct admin_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        sreq_fail(r, SHALE_ENOMEM, NULL);
        return;
    }
    op->r = r;
    op->started_ms = shaled_now_ms();
    op->req.change.data = op;
    if (r->type == SHALE_MSG_MEMBER_ADD_REQ) {
        const Shale__Member *m = ((Shale__MemberAddRequest *)r->msg)->member;
        char host[128];
        int port;
        if (m->id == 0 || shale_split_addr(m->raft_addr, host, sizeof(host), &port) != 0 ||
            shale_split_addr(m->client_addr, host, sizeof(host), &port) != 0 ||
            strlen(m->raft_addr) >= sizeof(op->raft_addr)) {
            free(op);
            sreq_fail(r, SHALE_EINVAL, "member needs an id > 0 and host:port addresses");
            return;
        }
        if (m->has_role && m->role == SHALE__MEMBER_ROLE__ROLE_SPARE) {
            free(op);
            sreq_fail(r, SHALE_EINVAL, "a member is added as a voter or a read replica");
            return;
        }
        op->id = m->id;
        op->role = m->has_role && m->role == SHALE__MEMBER_ROLE__ROLE_STANDBY ? RAFT_STANDBY
                                                                            : RAFT_VOTER;
        snprintf(op->raft_addr, sizeof(op->raft_addr), "%s", m->raft_addr);
        const struct raft_server *cur = conf_find(s, m->id);
        if (cur != NULL && strcmp(cur->address, m->raft_addr) != 0) {
            free(op);
            snprintf(msg, sizeof(msg), "node %llu is already a member at %s",
                     (unsigned long long)m->id, cur->address);
            sreq_fail(r, SHALE_EINVAL, msg);
            return;
        }
        Shale__Member copy = *m;
        copy.has_role = 1;
        copy.role = op->role == RAFT_STANDBY ? SHALE__MEMBER_ROLE__ROLE_STANDBY
                                             : SHALE__MEMBER_ROLE__ROLE_VOTER;
        Shale__MemberTable *t = members_with(s, &copy, 0);
        int rv = t ? propose_members(s, t) : SHALE_ENOMEM;
        if (t)
            shale__member_table__free_unpacked(t, NULL);
        if (rv != 0) {
            free(op);
            sreq_fail(r, rv, "cannot propose the member table");
            return;
        }
        op->step = ST_TABLE_ADD;
        log_info("membership change: add", " id=%llu raft=%s role=%s",
                 (unsigned long long)op->id, op->raft_addr,
                 op->role == RAFT_STANDBY ? "replica" : "voter");
    } else if (r->type == SHALE_MSG_MEMBER_REMOVE_REQ) {
        op->id = ((Shale__MemberRemoveRequest *)r->msg)->id;
        if (conf_find(s, op->id) == NULL) {
            if (members_find(s, op->id) == NULL) {
                snprintf(msg, sizeof(msg), "node %llu is not a member of this group",
                         (unsigned long long)op->id);
                free(op);
                sreq_fail(r, SHALE_EINVAL, msg);
                return;
            }
            /* A removal cut short: Raft dropped the node, but the leader
             * that started it lost leadership before the member table
             * step. Finish that step (found by the jepsen membership
             * nemesis: the table kept listing a removed voter). */
            op->step = ST_REMOVE_WAIT;
            op->cb_done = 1;
            log_info("membership change: remove (table only)", " id=%llu",
                     (unsigned long long)op->id);
        } else {
            op->step = ST_REMOVE;
            log_info("membership change: remove", " id=%llu", (unsigned long long)op->id);
        }
    } else {
        const Shale__LeaderTransferRequest *t = (Shale__LeaderTransferRequest *)r->msg;
        op->id = t->has_id ? t->id : 0;
        op->req.transfer.data = op;
        op->step = ST_TRANSFER;
        log_info("leadership transfer requested", " to=%llu", (unsigned long long)op->id);
    }
    s->admin = op;
}

/* Step the change in progress. Called at the end of every loop turn. */
void admin_poll(shaled_t *s)
{
    struct admin_op *op = s->admin;
    char msg[256];
    if (op == NULL)
        return;
    int waiting = op->step == ST_RAFT_ADD_WAIT || op->step == ST_ASSIGN_WAIT ||
                  op->step == ST_REMOVE_WAIT || op->step == ST_TRANSFER_WAIT;
    if (waiting && !op->cb_done)
        return;
    int rv = 0;
    uint64_t refused_before = s->guard.stats.changes_refused;
    if (waiting && op->cb_status != 0) {
        snprintf(msg, sizeof(msg), "raft refused the change: %s",
                 raft_strerror(op->cb_status));
        finish(s, raft_code(op->cb_status), msg);
        return;
    }
    if (!raft_node_is_leader(s) && op->step != ST_TRANSFER_WAIT) {
        finish(s, SHALE_ENOTLEADER, "leadership lost during the membership change; "
                                    "retry against the new leader");
        return;
    }
    if (shaled_now_ms() - op->started_ms > ADMIN_TIMEOUT_MS && !waiting) {
        finish(s, SHALE_ETIMEOUT, "membership change timed out");
        return;
    }
    switch (op->step) {
    case ST_TABLE_ADD:
        if (members_find(s, op->id) != NULL)
            op->step = ST_RAFT_ADD;
        return;
    case ST_RAFT_ADD: {
        const struct raft_server *cur = conf_find(s, op->id);
        if (cur != NULL) { /* already known: go straight to the role */
            if (cur->role == op->role)
                finish(s, 0, "already a member with that role");
            else
                op->step = ST_ASSIGN;
            return;
        }
        op->cb_done = 0;
        rv = rg_add(&s->guard, &op->req.change, op->id, op->raft_addr, change_cb);
        if (change_busy(s, op, rv))
            return;
        op->step = ST_RAFT_ADD_WAIT;
        break;
    }
    case ST_RAFT_ADD_WAIT:
        op->step = ST_ASSIGN;
        return;
    case ST_ASSIGN:
        op->cb_done = 0;
        rv = rg_assign(&s->guard, &op->req.change, op->id, op->role, change_cb);
        if (change_busy(s, op, rv))
            return;
        op->step = ST_ASSIGN_WAIT;
        break;
    case ST_ASSIGN_WAIT:
        snprintf(msg, sizeof(msg), "node %llu added as %s", (unsigned long long)op->id,
                 op->role == RAFT_STANDBY ? "read replica" : "voter");
        finish(s, 0, msg);
        return;
    case ST_REMOVE:
        op->cb_done = 0;
        rv = rg_remove(&s->guard, &op->req.change, op->id, change_cb);
        if (change_busy(s, op, rv))
            return;
        op->step = ST_REMOVE_WAIT;
        break;
    case ST_REMOVE_WAIT: {
        Shale__MemberTable *t = members_with(s, NULL, op->id);
        rv = t ? propose_members(s, t) : SHALE_ENOMEM;
        if (t)
            shale__member_table__free_unpacked(t, NULL);
        if (rv != 0) {
            finish(s, rv, "removed from raft; the member table update failed");
            return;
        }
        op->step = ST_TABLE_REMOVE;
        return;
    }
    case ST_TABLE_REMOVE:
        if (members_find(s, op->id) == NULL) {
            snprintf(msg, sizeof(msg), "node %llu removed", (unsigned long long)op->id);
            finish(s, 0, msg);
        }
        return;
    case ST_TRANSFER:
        op->cb_done = 0;
        rv = raft_transfer(&s->raft, &op->req.transfer, op->id, transfer_cb);
        op->step = ST_TRANSFER_WAIT;
        break;
    case ST_TRANSFER_WAIT: {
        raft_id lid = 0;
        const char *la = NULL;
        raft_leader(&s->raft, &lid, &la);
        if (lid == s->cfg.id || lid == 0) {
            finish(s, SHALE_EUNAVAILABLE, "leadership transfer did not complete");
        } else {
            snprintf(msg, sizeof(msg), "leadership moved to node %llu",
                     (unsigned long long)lid);
            finish(s, 0, msg);
        }
        return;
    }
    }
    if (rv != 0) {
        /* Refused up front: the callback will not fire. */
        op->cb_done = 1;
        if (s->guard.stats.changes_refused != refused_before)
            snprintf(msg, sizeof(msg),
                     "the change would leave no voter, or one voter that is not the leader "
                     "(libraft 0.15 would let that voter lead this leader's term): transfer "
                     "leadership to the voter that should remain first");
        else
            snprintf(msg, sizeof(msg), "raft refused the change: %s (%s)", raft_strerror(rv),
                     raft_errmsg(&s->raft));
        finish(s, raft_code(rv), msg);
    }
}

void admin_fail_all(shaled_t *s, int code, const char *msg)
{
    /* With a callback pending the op stays (answered) until raft_close has
     * fired it; the call after raft closed frees it. */
    finish(s, code, msg);
}
