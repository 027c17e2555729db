/* RESP transactions (docs/resp.md, "Transactions"): WATCH, MULTI, queued
 * commands, EXEC, DISCARD, UNWATCH — one native TXN within one slot whose
 * compares are the WATCHed versions.
 *
 * Never applies part of a transaction: EXEC is one TXN, all or nothing. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "resp_int.h"

/* ---- WATCH / MULTI / EXEC ---------------------------------------------------------------*/

/* A transaction is ONE Shale TXN within one slot (docs/resp.md,
 * "Transactions"): WATCH reads each key's version (linearizable; absent:
 * 0); MULTI starts queueing at the router; each queued command is checked
 * and turned into TXN ops at once (QUEUED, or its error, which aborts the
 * EXEC as Redis does); EXEC sends one TXN whose compares are "each watched
 * key still has its version" and whose success ops are the queued
 * commands' ops, in order, with the connection's session (exactly once).
 * A failed compare is EXEC's null array. All keys must share one slot. */

void rr_unwatch_all(rt_resp_t *s)
{
    for (size_t i = 0; i < s->nw; i++)
        free(s->w[i].k);
    free(s->w);
    s->w = NULL;
    s->nw = s->capw = 0;
    s->watch_failed = 0;
}

void rr_multi_reset(rt_resp_t *s)
{
    rr_qcmds_free(s->q, s->nq);
    s->q = NULL;
    s->nq = s->capq = 0;
    s->in_multi = 0;
    s->multi_dirty = 0;
}

/* Is a WATCH of the connection still unanswered? */
int rr_watch_pending(const rt_resp_t *s)
{
    for (const rt_q_t *n = s->pending.next; n != &s->pending; n = n->next) {
        const rcmd_t *o = rt_q_data(n, rcmd_t, link);
        if (!o->done && rr_cmd_is(o, "watch"))
            return 1;
    }
    return 0;
}

/* The TXN ops of the queued command q (argv[0] is its name): their number
 * in *nops and, when ops is not NULL, the ops (pointing into q->argv). 0, or
 * 1 with the error (why it cannot be queued) written to o. */
static int q_ops(qcmd_t *q, Shale__TxnOp *ops, size_t *nops, resp_out_t *o)
{
    char **argv = q->a.argv;
    size_t *len = q->a.len, argc = q->a.argc, n = 0;
    int ci = q->ci;
    Shale__TxnOp scratch = SHALE__TXN_OP__INIT;
#define OP() (ops != NULL ? &ops[n++] : (n++, &scratch))
    if (rr_ci_is(ci, "get") || rr_ci_is(ci, "strlen") || rr_ci_is(ci, "type") ||
        rr_ci_is(ci, "mget") || rr_ci_is(ci, "exists") || rr_ci_is(ci, "getset") ||
        rr_ci_is(ci, "getdel")) {
        size_t last = rr_ci_is(ci, "mget") || rr_ci_is(ci, "exists") ? argc - 1 : 1;
        for (size_t i = 1; i <= last; i++) {
            Shale__TxnOp *op = OP();
            op->type = SHALE__TXN_OP_TYPE__TXN_GET;
            op->key = rr_bin(argv[i], len[i]);
        }
        if (rr_ci_is(ci, "getset") || rr_ci_is(ci, "getdel")) {
            Shale__TxnOp *op = OP();
            op->key = rr_bin(argv[1], len[1]);
            op->type = rr_ci_is(ci, "getdel") ? SHALE__TXN_OP_TYPE__TXN_DELETE
                                              : SHALE__TXN_OP_TYPE__TXN_PUT;
            if (rr_ci_is(ci, "getset")) {
                op->has_value = 1;
                op->value = rr_bin(argv[2], len[2]);
            }
        }
    } else if (rr_ci_is(ci, "set")) {
        long long ttl;
        if (rr_set_parse(argc, argv, len, &q->opt, &ttl, o) != 0)
            return 1;
        if (q->opt & (SET_NX | SET_XX)) {
            resp_add_error(o, "ERR SET NX/XX cannot be queued in a Shale transaction: WATCH the "
                              "key instead (docs/resp.md)");
            return 1;
        }
        if (q->opt & SET_GET) {
            Shale__TxnOp *op = OP();
            op->type = SHALE__TXN_OP_TYPE__TXN_GET;
            op->key = rr_bin(argv[1], len[1]);
        }
        Shale__TxnOp *op = OP();
        op->key = rr_bin(argv[1], len[1]);
        if (q->opt & SET_PAST) {
            op->type = SHALE__TXN_OP_TYPE__TXN_DELETE;
        } else {
            op->type = SHALE__TXN_OP_TYPE__TXN_PUT;
            op->has_value = 1;
            op->value = rr_bin(argv[2], len[2]);
            if (q->opt & SET_TTL) {
                op->has_ttl_ms = 1;
                op->ttl_ms = (uint64_t)ttl;
            }
            if (q->opt & SET_KEEPTTL) {
                op->has_keep_ttl = 1;
                op->keep_ttl = 1;
            }
        }
    } else if (rr_ci_is(ci, "mset") || rr_ci_is(ci, "del") || rr_ci_is(ci, "unlink")) {
        int mset = rr_ci_is(ci, "mset");
        if (mset && argc % 2 != 1) {
            resp_add_error(o, "ERR wrong number of arguments for 'mset' command");
            return 1;
        }
        for (size_t i = 1; i < argc; i += mset ? 2 : 1) {
            Shale__TxnOp *op = OP();
            op->key = rr_bin(argv[i], len[i]);
            op->type = mset ? SHALE__TXN_OP_TYPE__TXN_PUT : SHALE__TXN_OP_TYPE__TXN_DELETE;
            if (mset) {
                op->has_value = 1;
                op->value = rr_bin(argv[i + 1], len[i + 1]);
            }
        }
    } else if (rr_ci_is(ci, "incr") || rr_ci_is(ci, "incrby") || rr_ci_is(ci, "decr") ||
               rr_ci_is(ci, "decrby") || rr_ci_is(ci, "append")) {
        if (rr_incr_op(ci, argc, argv, len, OP(), o) != 0)
            return 1;
    } else if (rr_ci_is(ci, "expire") || rr_ci_is(ci, "pexpire") || rr_ci_is(ci, "persist")) {
        long long ms = 0;
        int persist = rr_ci_is(ci, "persist");
        if (!persist && argc > 3) {
            resp_add_error(o, "ERR EXPIRE options cannot be queued in a Shale transaction: WATCH "
                              "the key instead (docs/resp.md)");
            return 1;
        }
        if (!persist && rr_expire_ms(ci, argv[2], len[2], &ms, o) != 0)
            return 1;
        rr_expire_op(argv[1], len[1], persist, ms, OP());
    } else if (!rr_ci_is(ci, "unwatch")) {
        resp_add_errorf(o, "ERR '%s' cannot be queued in a Shale transaction (docs/resp.md)",
                        rr_cmds[ci].name);
        return 1;
    }
#undef OP
    *nops = n;
    return 0;
}

/* Queue a command after MULTI (a copy): QUEUED, or its error (the
 * transaction then aborts at EXEC). -1 when out of memory. */
int rr_multi_queue(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    if (s->nq == s->capq) {
        size_t cap = s->capq ? s->capq * 2 : 8;
        qcmd_t *nq = realloc(s->q, cap * sizeof(*nq));
        if (nq == NULL)
            return -1;
        s->q = nq;
        s->capq = cap;
    }
    qcmd_t *q = &s->q[s->nq];
    memset(q, 0, sizeof(*q));
    q->ci = cm->ci;
    int rv = rr_argv_copy(&q->a, argc, (const char *const *)argv, len);
    s->nq++; /* freed with the queue even when half made */
    if (rv != 0)
        return -1;
    size_t n;
    if (q_ops(q, NULL, &n, &cm->out) != 0) {
        s->multi_dirty = 1;
        return 0;
    }
    resp_add_simple(&cm->out, "QUEUED");
    return 0;
}

/* MULTI, DISCARD, UNWATCH. */
int rr_c_multi(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc, (void)argv, (void)len;
    if (rr_cmd_is(cm, "multi")) {
        if (s->in_multi) {
            resp_add_error(&cm->out, "ERR MULTI calls can not be nested");
            return 0;
        }
        s->in_multi = 1;
    } else if (rr_cmd_is(cm, "discard")) {
        if (!s->in_multi) {
            resp_add_error(&cm->out, "ERR DISCARD without MULTI");
            return 0;
        }
        rr_multi_reset(s);
        rr_unwatch_all(s);
    } else {
        rr_unwatch_all(s);
    }
    resp_add_simple(&cm->out, "OK");
    return 0;
}

static void fin_watch(rcmd_t *cm)
{
    rt_resp_t *s = cm->s;
    ProtobufCMessage *m;
    if (rr_sub_answer(cm, 0, SHALE_MSG_MGET_RESP, &m) != 0) {
        s->watch_failed = 1; /* EXEC then answers as if a key changed */
        return;
    }
    const Shale__MGetResponse *g = (const Shale__MGetResponse *)m;
    for (size_t i = 0; i < g->n_items; i++) {
        const Shale__KeyValue *kv = g->items[i];
        if (kv->error != NULL) {
            s->watch_failed = 1;
            rr_add_shale_error(&cm->out, -(int)kv->error->code, kv->error->message);
            return;
        }
    }
    if (s->nw + g->n_items > s->capw) {
        size_t cap = (s->nw + g->n_items) * 2;
        wkey_t *nw = realloc(s->w, cap * sizeof(*nw));
        if (nw == NULL) {
            s->watch_failed = 1;
            resp_add_error(&cm->out, "ERR out of memory");
            return;
        }
        s->w = nw;
        s->capw = cap;
    }
    for (size_t i = 0; i < g->n_items; i++) {
        const Shale__KeyValue *kv = g->items[i];
        wkey_t *w = &s->w[s->nw];
        w->k = malloc(kv->key.len ? kv->key.len : 1);
        if (w->k == NULL) {
            s->watch_failed = 1;
            resp_add_error(&cm->out, "ERR out of memory");
            return;
        }
        memcpy(w->k, kv->key.data, kv->key.len);
        w->n = kv->key.len;
        w->ver = kv->found && kv->has_version ? kv->version : 0;
        s->nw++;
    }
    resp_add_simple(&cm->out, "OK");
}

/* WATCH k...: the keys' versions, read linearizably (one MGET). Inside
 * MULTI it is refused (exec_cmd does not queue it). */
int rr_c_watch(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    if (s->in_multi) {
        resp_add_error(&cm->out, "ERR WATCH inside MULTI is not allowed");
        return 0;
    }
    cm->fin = fin_watch;
    return rr_mget_send(cm, argc, argv, len, NULL); /* linearizable */
}

/* EXEC's keys for the ordering of pipelined commands: the watched ones and
 * every queued command's. */
int rr_exec_keys(rt_resp_t *s, rcmd_t *cm)
{
    size_t n = s->nw;
    for (size_t i = 0; i < s->nq; i++)
        n += s->q[i].a.argc;
    cm->write = 1;
    if (n == 0)
        return 0;
    cm->keyh = malloc(n * sizeof(*cm->keyh));
    if (cm->keyh == NULL)
        return -1;
    for (size_t i = 0; i < s->nw; i++)
        cm->keyh[cm->nkeys++] = shale_hash64(s->w[i].k, s->w[i].n, 0x5e5e);
    for (size_t i = 0; i < s->nq; i++) {
        const held_t *a = &s->q[i].a;
        size_t first, last, step;
        if (!rr_key_range(&rr_cmds[s->q[i].ci], a->argc, &first, &last, &step))
            continue;
        for (size_t j = first; j <= last; j += step)
            cm->keyh[cm->nkeys++] = shale_hash64(a->argv[j], a->len[j], 0x5e5e);
    }
    return 0;
}

/* The Redis reply of queued command q from its TXN results r[0..q->nops). */
static void q_reply(resp_out_t *o, const qcmd_t *q, Shale__TxnOpResult **r)
{
    int ci = q->ci;
    long long n = 0;
    if (rr_ci_is(ci, "get") || rr_ci_is(ci, "getset") || rr_ci_is(ci, "getdel") ||
        (rr_ci_is(ci, "set") && (q->opt & SET_GET))) {
        rr_txn_get_reply(o, r[0]);
    } else if (rr_ci_is(ci, "strlen")) {
        resp_add_int(o, r[0]->found && r[0]->has_value ? (long long)r[0]->value.len : 0);
    } else if (rr_ci_is(ci, "type")) {
        resp_add_simple(o, r[0]->found ? "string" : "none");
    } else if (rr_ci_is(ci, "mget")) {
        resp_add_array(o, q->nops);
        for (size_t i = 0; i < q->nops; i++)
            rr_txn_get_reply(o, r[i]);
    } else if (rr_ci_is(ci, "exists") || rr_ci_is(ci, "del") || rr_ci_is(ci, "unlink")) {
        for (size_t i = 0; i < q->nops; i++)
            n += r[i]->has_found && r[i]->found;
        resp_add_int(o, n);
    } else if (rr_ci_is(ci, "append")) {
        resp_add_int(o, r[0]->has_value ? (long long)r[0]->value.len : 0);
    } else if (rr_ci_is(ci, "incr") || rr_ci_is(ci, "incrby") || rr_ci_is(ci, "decr") ||
               rr_ci_is(ci, "decrby")) {
        if (r[0]->has_value && resp_string2ll((const char *)r[0]->value.data, r[0]->value.len, &n))
            resp_add_int(o, n);
        else
            resp_add_error(o, "ERR unexpected answer from the cluster");
    } else if (rr_ci_is(ci, "expire") || rr_ci_is(ci, "pexpire") || rr_ci_is(ci, "persist")) {
        int found = r[0]->has_found && r[0]->found;
        if (rr_ci_is(ci, "persist"))
            found = found && r[0]->has_had_ttl && r[0]->had_ttl;
        resp_add_int(o, found);
    } else { /* set, mset, unwatch */
        resp_add_simple(o, "OK");
    }
}

static void fin_exec(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (rr_sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
        return;
    const Shale__TxnResponse *t = (const Shale__TxnResponse *)m;
    if (!t->succeeded) {
        resp_add_null_array(&cm->out); /* a watched key changed */
        return;
    }
    size_t need = cm->nq > 0 ? cm->q[cm->nq - 1].op0 + cm->q[cm->nq - 1].nops : 0;
    if (t->n_results < need) {
        resp_add_error(&cm->out, "ERR unexpected answer from the cluster");
        return;
    }
    resp_add_array(&cm->out, cm->nq);
    for (size_t i = 0; i < cm->nq; i++)
        q_reply(&cm->out, &cm->q[i], t->results + cm->q[i].op0);
}

/* The slot of every watched and queued key: 1 one slot, 0 several, -1 no
 * map. */
static int exec_one_slot(rt_resp_t *s, const qcmd_t *q, size_t nq)
{
    uint32_t n = s->r->route.slots;
    if (s->r->route.map == NULL || n == 0)
        return -1;
    int have = 0;
    uint32_t slot = 0;
    for (size_t i = 0; i < s->nw; i++) {
        uint32_t k = shale_key_slot(s->w[i].k, s->w[i].n, n);
        if (have && k != slot)
            return 0;
        slot = k;
        have = 1;
    }
    for (size_t i = 0; i < nq; i++) {
        const held_t *a = &q[i].a;
        size_t first, last, step;
        if (!rr_key_range(&rr_cmds[q[i].ci], a->argc, &first, &last, &step))
            continue;
        for (size_t j = first; j <= last; j += step) {
            uint32_t k = shale_key_slot(a->argv[j], a->len[j], n);
            if (have && k != slot)
                return 0;
            slot = k;
            have = 1;
        }
    }
    return 1;
}

/* EXEC's one TXN: compares on the watched versions, the queued commands'
 * ops (cm->q; each one's op0 / nops set here). -1 when out of memory. */
static int exec_send(rt_resp_t *s, rcmd_t *cm)
{
    size_t total = 0;
    resp_out_t scratch;
    resp_out_init(&scratch, 2);
    for (size_t i = 0; i < cm->nq; i++) {
        cm->q[i].op0 = total;
        if (q_ops(&cm->q[i], NULL, &cm->q[i].nops, &scratch) != 0) {
            resp_out_free(&scratch);
            resp_add_error(&cm->out, "EXECABORT Transaction discarded because of previous errors.");
            return 0;
        }
        total += cm->q[i].nops;
    }
    if (total == 0 && s->nw == 0) { /* only UNWATCHes queued: nothing to send */
        resp_out_free(&scratch);
        resp_add_array(&cm->out, cm->nq);
        for (size_t i = 0; i < cm->nq; i++)
            q_reply(&cm->out, &cm->q[i], NULL);
        return 0;
    }
    /* Only watches: one get of a watched key, so the TXN has an op. */
    size_t nops = total > 0 ? total : 1;
    Shale__TxnOp *ops = calloc(nops, sizeof(*ops));
    Shale__TxnOp **pp = calloc(nops, sizeof(*pp));
    Shale__TxnCompare *cmp = calloc(s->nw ? s->nw : 1, sizeof(*cmp));
    Shale__TxnCompare **cp = calloc(s->nw ? s->nw : 1, sizeof(*cp));
    int rv = -1;
    if (ops == NULL || pp == NULL || cmp == NULL || cp == NULL)
        goto out;
    for (size_t i = 0; i < nops; i++) {
        shale__txn_op__init(&ops[i]);
        pp[i] = &ops[i];
    }
    int writes = 0;
    for (size_t i = 0; i < cm->nq; i++) {
        size_t n;
        q_ops(&cm->q[i], ops + cm->q[i].op0, &n, &scratch); /* checked above */
    }
    if (total == 0) {
        ops[0].type = SHALE__TXN_OP_TYPE__TXN_GET;
        ops[0].key = rr_bin(s->w[0].k, s->w[0].n);
    }
    for (size_t i = 0; i < nops; i++)
        writes |= ops[i].type != SHALE__TXN_OP_TYPE__TXN_GET;
    for (size_t i = 0; i < s->nw; i++) {
        shale__txn_compare__init(&cmp[i]);
        cmp[i].key = rr_bin(s->w[i].k, s->w[i].n);
        cmp[i].target = SHALE__TXN_TARGET__TXN_VERSION;
        cmp[i].op = SHALE__TXN_COMPARE_OP__TXN_EQUAL;
        cmp[i].has_version = 1;
        cmp[i].version = s->w[i].ver;
        cp[i] = &cmp[i];
    }
    Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
    Shale__Session ss;
    t.n_compares = s->nw;
    t.compares = cp;
    t.n_success = nops;
    t.success = pp;
    cm->fin = fin_exec;
    rv = rr_send_single(s, cm, SHALE_MSG_TXN_REQ, &t.base, writes ? &t.session : NULL, &ss);
out:
    resp_out_free(&scratch);
    free(ops);
    free(pp);
    free(cmp);
    free(cp);
    return rv;
}

int rr_c_exec(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc, (void)argv, (void)len;
    if (!s->in_multi) {
        resp_add_error(&cm->out, "ERR EXEC without MULTI");
        return 0;
    }
    /* The queue is EXEC's now; the connection leaves MULTI and unwatches
     * whatever happens (as Redis). */
    cm->q = s->q;
    cm->nq = s->nq;
    int dirty = s->multi_dirty, failed = s->watch_failed;
    s->q = NULL;
    s->nq = s->capq = 0;
    rr_multi_reset(s);
    int rv = 0;
    if (dirty) {
        resp_add_error(&cm->out, "EXECABORT Transaction discarded because of previous errors.");
    } else if (failed) {
        resp_add_null_array(&cm->out);
    } else if (cm->nq == 0 && s->nw == 0) {
        resp_add_array(&cm->out, 0);
    } else {
        int os = exec_one_slot(s, cm->q, cm->nq);
        if (os < 0)
            rr_no_map(s, cm);
        else if (os == 0)
            resp_add_error(&cm->out, "CROSSSLOT Keys in request don't hash to the same slot");
        else
            rv = exec_send(s, cm);
    }
    rr_unwatch_all(s);
    return rv;
}
