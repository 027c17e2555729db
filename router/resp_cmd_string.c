/* RESP string and key commands (docs/resp.md, "Strings and keys"): GET
 * STRLEN TYPE TTL PTTL SET SETNX GETSET GETDEL MGET MSET DEL UNLINK EXISTS
 * INCR* DECR* APPEND EXPIRE PEXPIRE PERSIST DBSIZE, each turned into native
 * requests (PUT, CAS, TXN, ...) and their answers into Redis replies.
 *
 * Never decides a write at the router from a read: conditional writes are
 * CAS / TXN, evaluated at apply; EXPIRE's options read a version and send a
 * TXN that compares it. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "resp_int.h"

/* ---- Strings and keys -----------------------------------------------------------------*/

static void fin_get(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (rr_sub_answer(cm, 0, SHALE_MSG_GET_RESP, &m) != 0)
        return;
    const Shale__GetResponse *g = (const Shale__GetResponse *)m;
    int found = g->found;
    if (rr_cmd_is(cm, "get")) {
        if (found)
            resp_add_bulk(&cm->out, g->has_value ? g->value.data : (const uint8_t *)"",
                          g->has_value ? g->value.len : 0);
        else
            resp_add_null(&cm->out);
    } else if (rr_cmd_is(cm, "strlen")) {
        resp_add_int(&cm->out, found && g->has_value ? (long long)g->value.len : 0);
    } else if (rr_cmd_is(cm, "type")) {
        resp_add_simple(&cm->out, found ? "string" : "none");
    } else { /* ttl, pttl */
        int ms = rr_cmd_is(cm, "pttl");
        if (!found)
            resp_add_int(&cm->out, -2);
        else if (!g->has_expires_in_ms)
            resp_add_int(&cm->out, -1);
        else
            resp_add_int(&cm->out, ms ? (long long)g->expires_in_ms
                                      : (long long)((g->expires_in_ms + 500) / 1000));
    }
}

int rr_c_get(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc;
    Shale__GetRequest q = SHALE__GET_REQUEST__INIT;
    Shale__ReadOptions ro;
    rr_read_opts(s, &ro);
    q.key = rr_bin(argv[1], len[1]);
    q.read = &ro;
    cm->fin = fin_get;
    return rr_send_single(s, cm, SHALE_MSG_GET_REQ, &q.base, NULL, NULL);
}

/* The reply of a TXN get op: its value as a bulk string, or nil when the
 * key was absent (x NULL: no result). GET-like replies of SET ... GET,
 * GETSET, GETDEL and EXEC's queued GETs share it. */
void rr_txn_get_reply(resp_out_t *o, const Shale__TxnOpResult *x)
{
    if (x != NULL && x->found)
        resp_add_bulk(o, x->has_value ? x->value.data : (const uint8_t *)"",
                      x->has_value ? x->value.len : 0);
    else
        resp_add_null(o);
}

static void fin_set(rcmd_t *cm)
{
    ProtobufCMessage *m;
    int rv;
    if ((cm->opt & SET_PAST) && !(cm->opt & (SET_NX | SET_XX | SET_GET))) {
        /* a delete: the expiry time had passed */
        if (rr_sub_answer(cm, 0, SHALE_MSG_DEL_RESP, &m) == 0)
            resp_add_simple(&cm->out, "OK");
        return;
    }
    if (!(cm->opt & (SET_NX | SET_XX | SET_GET | SET_KEEPTTL))) {
        if (rr_sub_answer(cm, 0, SHALE_MSG_PUT_RESP, &m) == 0)
            resp_add_simple(&cm->out, "OK");
        return;
    }
    if (cm->opt == SET_NX) { /* CAS expect_absent */
        rv = rr_sub_answer(cm, 0, SHALE_MSG_CAS_RESP, &m);
        if (rv == 0)
            resp_add_simple(&cm->out, "OK");
        else if (rv == SHALE_ECASFAILED)
            resp_add_null(&cm->out);
        return;
    }
    if (rr_sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
        return;
    const Shale__TxnResponse *t = (const Shale__TxnResponse *)m;
    if (cm->opt & SET_GET) {
        rr_txn_get_reply(&cm->out, t->n_results > 0 ? t->results[0] : NULL);
    } else if (t->succeeded) {
        resp_add_simple(&cm->out, "OK");
    } else {
        resp_add_null(&cm->out);
    }
}

static uint64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* SET's options (argv[3..]): *opt (SET_*) and *ttl (ms). 0, or 1 with the
 * error written to o. */
int rr_set_parse(size_t argc, char **argv, size_t *len, int *optp, long long *ttlp, resp_out_t *o)
{
    int opt = 0;
    long long ttl = 0;
    for (size_t i = 3; i < argc; i++) {
        const char *a = argv[i];
        size_t n = len[i];
        int has_next = i + 1 < argc;
        if (rr_arg_is(a, n, "nx") && !(opt & SET_XX))
            opt |= SET_NX;
        else if (rr_arg_is(a, n, "xx") && !(opt & SET_NX))
            opt |= SET_XX;
        else if (rr_arg_is(a, n, "get"))
            opt |= SET_GET;
        else if (rr_arg_is(a, n, "keepttl") && !(opt & SET_TTL))
            opt |= SET_KEEPTTL;
        else if ((rr_arg_is(a, n, "ex") || rr_arg_is(a, n, "px") || rr_arg_is(a, n, "exat") ||
                  rr_arg_is(a, n, "pxat")) &&
                 !(opt & (SET_TTL | SET_KEEPTTL)) && has_next) {
            long long v;
            if (!resp_string2ll(argv[i + 1], len[i + 1], &v)) {
                resp_add_error(o, "ERR value is not an integer or out of range");
                return 1;
            }
            int secs = rr_arg_is(a, n, "ex") || rr_arg_is(a, n, "exat");
            int at = rr_arg_is(a, n, "exat") || rr_arg_is(a, n, "pxat");
            if (v <= 0 || (secs && v > (long long)(INT64_MAX / 1000))) {
                resp_add_error(o, "ERR invalid expire time in 'set' command");
                return 1;
            }
            long long ms = secs ? v * 1000 : v;
            if (at) {
                long long now = (long long)realtime_ms();
                ms = ms - now;
                if (ms <= 0)
                    opt |= SET_PAST;
            }
            ttl = ms;
            opt |= SET_TTL;
            i++;
        } else {
            resp_add_error(o, "ERR syntax error");
            return 1;
        }
    }
    if (ttl > 3153600000000LL)
        ttl = 3153600000000LL;
    *optp = opt;
    *ttlp = ttl;
    return 0;
}

int rr_c_set(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    int opt;
    long long ttl;
    if (rr_set_parse(argc, argv, len, &opt, &ttl, &cm->out) != 0)
        return 0;
    cm->opt = opt;
    cm->fin = fin_set;
    if (rr_subs_init(cm, 1) != 0)
        return -1;
    Shale__Session ss;
    if ((opt & SET_PAST) && !(opt & (SET_NX | SET_XX | SET_GET))) {
        Shale__DeleteRequest d = SHALE__DELETE_REQUEST__INIT;
        d.key = rr_bin(argv[1], len[1]);
        d.session = rr_session_fill(s, cm, &ss);
        rr_sub_send(cm, 0, SHALE_MSG_DEL_REQ, &d.base);
    } else if (!(opt & (SET_NX | SET_XX | SET_GET | SET_KEEPTTL))) {
        Shale__PutRequest p = SHALE__PUT_REQUEST__INIT;
        p.key = rr_bin(argv[1], len[1]);
        p.value = rr_bin(argv[2], len[2]);
        if (opt & SET_TTL) {
            p.has_ttl_ms = 1;
            p.ttl_ms = (uint64_t)ttl;
        }
        p.session = rr_session_fill(s, cm, &ss);
        rr_sub_send(cm, 0, SHALE_MSG_PUT_REQ, &p.base);
    } else if (opt == SET_NX) {
        Shale__CasRequest c = SHALE__CAS_REQUEST__INIT;
        c.key = rr_bin(argv[1], len[1]);
        c.has_expect_absent = 1;
        c.expect_absent = 1;
        c.has_new_value = 1;
        c.new_value = rr_bin(argv[2], len[2]);
        c.session = rr_session_fill(s, cm, &ss);
        rr_sub_send(cm, 0, SHALE_MSG_CAS_REQ, &c.base);
    } else {
        Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
        Shale__TxnCompare cmp = SHALE__TXN_COMPARE__INIT;
        Shale__TxnCompare *cmps[1] = {&cmp};
        Shale__TxnOp get = SHALE__TXN_OP__INIT, put = SHALE__TXN_OP__INIT;
        Shale__TxnOp *succ[2], *fail[1];
        size_t ns = 0;
        if (opt & (SET_NX | SET_XX)) {
            cmp.key = rr_bin(argv[1], len[1]);
            cmp.target = SHALE__TXN_TARGET__TXN_EXISTS;
            cmp.op = SHALE__TXN_COMPARE_OP__TXN_EQUAL;
            cmp.has_exists = 1;
            cmp.exists = (opt & SET_XX) ? 1 : 0;
            t.n_compares = 1;
            t.compares = cmps;
        }
        get.type = SHALE__TXN_OP_TYPE__TXN_GET;
        get.key = rr_bin(argv[1], len[1]);
        put.key = rr_bin(argv[1], len[1]);
        if (opt & SET_PAST) {
            /* Set and expired at once (Redis 7): where the compare holds,
             * the key ends deleted; GET still answers the old value. */
            put.type = SHALE__TXN_OP_TYPE__TXN_DELETE;
        } else {
            put.type = SHALE__TXN_OP_TYPE__TXN_PUT;
            put.has_value = 1;
            put.value = rr_bin(argv[2], len[2]);
        }
        if ((opt & SET_TTL) && !(opt & SET_PAST)) {
            put.has_ttl_ms = 1;
            put.ttl_ms = (uint64_t)ttl;
        }
        if (opt & SET_KEEPTTL) {
            put.has_keep_ttl = 1;
            put.keep_ttl = 1;
        }
        if (opt & SET_GET)
            succ[ns++] = &get;
        succ[ns++] = &put;
        t.n_success = ns;
        t.success = succ;
        if (opt & SET_GET) {
            fail[0] = &get;
            t.n_failure = 1;
            t.failure = fail;
        }
        t.session = rr_session_fill(s, cm, &ss);
        rr_sub_send(cm, 0, SHALE_MSG_TXN_REQ, &t.base);
    }
    return 0;
}

static void fin_setnx(rcmd_t *cm)
{
    ProtobufCMessage *m;
    int rv = rr_sub_answer(cm, 0, SHALE_MSG_CAS_RESP, &m);
    if (rv == 0)
        resp_add_int(&cm->out, 1);
    else if (rv == SHALE_ECASFAILED)
        resp_add_int(&cm->out, 0);
}

int rr_c_setnx(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc;
    Shale__CasRequest c = SHALE__CAS_REQUEST__INIT;
    Shale__Session ss;
    c.key = rr_bin(argv[1], len[1]);
    c.has_expect_absent = 1;
    c.expect_absent = 1;
    c.has_new_value = 1;
    c.new_value = rr_bin(argv[2], len[2]);
    cm->fin = fin_setnx;
    return rr_send_single(s, cm, SHALE_MSG_CAS_REQ, &c.base, &c.session, &ss);
}

/* GETSET / GETDEL: the old value from the txn's first op. */
static void fin_getx(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (rr_sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
        return;
    const Shale__TxnResponse *t = (const Shale__TxnResponse *)m;
    rr_txn_get_reply(&cm->out, t->n_results > 0 ? t->results[0] : NULL);
}

static int txn_get_then(rt_resp_t *s, rcmd_t *cm, const char *k, size_t klen, int del,
                        const char *v, size_t vlen)
{
    Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
    Shale__TxnOp get = SHALE__TXN_OP__INIT, op = SHALE__TXN_OP__INIT;
    Shale__TxnOp *succ[2] = {&get, &op};
    Shale__Session ss;
    get.type = SHALE__TXN_OP_TYPE__TXN_GET;
    get.key = rr_bin(k, klen);
    op.type = del ? SHALE__TXN_OP_TYPE__TXN_DELETE : SHALE__TXN_OP_TYPE__TXN_PUT;
    op.key = rr_bin(k, klen);
    if (!del) {
        op.has_value = 1;
        op.value = rr_bin(v, vlen);
    }
    t.n_success = 2;
    t.success = succ;
    cm->fin = fin_getx;
    return rr_send_single(s, cm, SHALE_MSG_TXN_REQ, &t.base, &t.session, &ss);
}

int rr_c_getset(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc;
    return txn_get_then(s, cm, argv[1], len[1], 0, argv[2], len[2]);
}

int rr_c_getdel(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc;
    return txn_get_then(s, cm, argv[1], len[1], 1, NULL, 0);
}

/* MGET / EXISTS: one MGET (the router splits it by group). */
static void fin_mget(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (rr_sub_answer(cm, 0, SHALE_MSG_MGET_RESP, &m) != 0)
        return;
    const Shale__MGetResponse *g = (const Shale__MGetResponse *)m;
    for (size_t i = 0; i < g->n_items; i++)
        if (g->items[i]->error != NULL) {
            rr_add_shale_error(&cm->out, -(int)g->items[i]->error->code,
                               g->items[i]->error->message);
            return;
        }
    if (rr_cmd_is(cm, "exists")) {
        long long n = 0;
        for (size_t i = 0; i < g->n_items; i++)
            n += g->items[i]->found;
        resp_add_int(&cm->out, n);
        return;
    }
    resp_add_array(&cm->out, g->n_items);
    for (size_t i = 0; i < g->n_items; i++) {
        const Shale__KeyValue *kv = g->items[i];
        if (kv->found)
            resp_add_bulk(&cm->out, kv->has_value ? kv->value.data : (const uint8_t *)"",
                          kv->has_value ? kv->value.len : 0);
        else
            resp_add_null(&cm->out);
    }
}

/* One MGET of argv[1..] (ro NULL: linearizable). -1 when out of memory. */
int rr_mget_send(rcmd_t *cm, size_t argc, char **argv, size_t *len, Shale__ReadOptions *ro)
{
    Shale__MGetRequest q = SHALE__MGET_REQUEST__INIT;
    q.n_keys = argc - 1;
    q.keys = malloc(q.n_keys * sizeof(*q.keys));
    if (q.keys == NULL || rr_subs_init(cm, 1) != 0) {
        free(q.keys);
        return -1;
    }
    for (size_t i = 1; i < argc; i++)
        q.keys[i - 1] = rr_bin(argv[i], len[i]);
    q.read = ro;
    rr_sub_send(cm, 0, SHALE_MSG_MGET_REQ, &q.base);
    free(q.keys);
    return 0;
}

int rr_c_mget(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    Shale__ReadOptions ro;
    rr_read_opts(s, &ro);
    cm->fin = fin_mget;
    return rr_mget_send(cm, argc, argv, len, &ro);
}

int rr_c_exists(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    int ro = s->readonly;
    int rv = rr_c_mget(s, cm, argc, argv, len);
    s->readonly = ro;
    return rv;
}

/* The keys argv[first], argv[first+step], ... all in one slot? 1 yes, 0 no,
 * -1 no map yet. */
static int one_slot(rt_resp_t *s, size_t argc, char **argv, size_t *len, size_t first, size_t step)
{
    uint32_t n = s->r->route.slots;
    if (s->r->route.map == NULL || n == 0)
        return -1;
    uint32_t slot = shale_key_slot(argv[first], len[first], n);
    for (size_t i = first + step; i < argc; i += step)
        if (shale_key_slot(argv[i], len[i], n) != slot)
            return 0;
    return 1;
}

void rr_no_map(rt_resp_t *s, rcmd_t *cm)
{
    resp_add_errorf(&cm->out, "CLUSTERDOWN no cluster map yet (meta group %.180s)", s->r->cfg.meta);
}

static void fin_ok_txn(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (rr_sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) == 0)
        resp_add_simple(&cm->out, "OK");
}

int rr_c_mset(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    if (argc % 2 != 1) {
        resp_add_error(&cm->out, "ERR wrong number of arguments for 'mset' command");
        return 0;
    }
    int os = one_slot(s, argc, argv, len, 1, 2);
    if (os < 0) {
        rr_no_map(s, cm);
        return 0;
    }
    if (os == 0) {
        resp_add_error(&cm->out, "CROSSSLOT Keys in request don't hash to the same slot");
        return 0;
    }
    size_t n = (argc - 1) / 2;
    Shale__TxnOp *ops = calloc(n, sizeof(*ops));
    Shale__TxnOp **pp = calloc(n, sizeof(*pp));
    if (ops == NULL || pp == NULL) {
        free(ops);
        free(pp);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        shale__txn_op__init(&ops[i]);
        ops[i].type = SHALE__TXN_OP_TYPE__TXN_PUT;
        ops[i].key = rr_bin(argv[1 + 2 * i], len[1 + 2 * i]);
        ops[i].has_value = 1;
        ops[i].value = rr_bin(argv[2 + 2 * i], len[2 + 2 * i]);
        pp[i] = &ops[i];
    }
    Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
    Shale__Session ss;
    t.n_success = n;
    t.success = pp;
    cm->fin = fin_ok_txn;
    int rv = rr_send_single(s, cm, SHALE_MSG_TXN_REQ, &t.base, &t.session, &ss);
    free(ops);
    free(pp);
    return rv;
}

/* DEL / UNLINK: keys of one slot in one TXN of deletes (atomic); else one
 * DELETE per key. The reply counts the keys that existed. */
static void fin_del(rcmd_t *cm)
{
    long long n = 0;
    ProtobufCMessage *m;
    if (cm->opt) { /* txn */
        if (rr_sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
            return;
        const Shale__TxnResponse *t = (const Shale__TxnResponse *)m;
        for (size_t i = 0; i < t->n_results; i++)
            n += t->results[i]->has_found && t->results[i]->found;
    } else {
        for (unsigned i = 0; i < cm->nsub; i++) {
            if (rr_sub_answer(cm, i, SHALE_MSG_DEL_RESP, &m) != 0)
                return;
            n += ((const Shale__DeleteResponse *)m)->existed;
        }
    }
    resp_add_int(&cm->out, n);
}

int rr_c_del(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    size_t n = argc - 1;
    int os = n > 1 ? one_slot(s, argc, argv, len, 1, 1) : 0;
    if (os < 0) {
        rr_no_map(s, cm);
        return 0;
    }
    cm->fin = fin_del;
    Shale__Session ss;
    if (os == 1 && n <= 128) {
        cm->opt = 1;
        Shale__TxnOp *ops = calloc(n, sizeof(*ops));
        Shale__TxnOp **pp = calloc(n, sizeof(*pp));
        if (ops == NULL || pp == NULL || rr_subs_init(cm, 1) != 0) {
            free(ops);
            free(pp);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            shale__txn_op__init(&ops[i]);
            ops[i].type = SHALE__TXN_OP_TYPE__TXN_DELETE;
            ops[i].key = rr_bin(argv[1 + i], len[1 + i]);
            pp[i] = &ops[i];
        }
        Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
        t.n_success = n;
        t.success = pp;
        t.session = rr_session_fill(s, cm, &ss);
        rr_sub_send(cm, 0, SHALE_MSG_TXN_REQ, &t.base);
        free(ops);
        free(pp);
        return 0;
    }
    if (rr_subs_init(cm, (unsigned)n) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        Shale__DeleteRequest d = SHALE__DELETE_REQUEST__INIT;
        d.key = rr_bin(argv[1 + i], len[1 + i]);
        d.session = rr_session_fill(s, cm, &ss);
        rr_sub_send(cm, (unsigned)i, SHALE_MSG_DEL_REQ, &d.base);
    }
    return 0;
}

/* INCR / INCRBY / DECR / DECRBY / APPEND: one TXN op evaluated at apply
 * (TXN_ADD / TXN_APPEND), never a read-then-write here. */
static void fin_incr(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (rr_sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
        return;
    const Shale__TxnResponse *t = (const Shale__TxnResponse *)m;
    const Shale__TxnOpResult *x = t->n_results > 0 ? t->results[0] : NULL;
    if (x == NULL || !x->has_value) {
        resp_add_error(&cm->out, "ERR unexpected answer from the cluster");
        return;
    }
    if (rr_cmd_is(cm, "append")) {
        resp_add_int(&cm->out, (long long)x->value.len);
        return;
    }
    long long v;
    if (!resp_string2ll((const char *)x->value.data, x->value.len, &v)) {
        resp_add_error(&cm->out, "ERR unexpected answer from the cluster");
        return;
    }
    resp_add_int(&cm->out, v);
}

/* The TXN op of INCR / INCRBY / DECR / DECRBY / APPEND (command ci). 0, or
 * 1 with the error written to o. op points into argv. */
int rr_incr_op(int ci, size_t argc, char **argv, size_t *len, Shale__TxnOp *op, resp_out_t *o)
{
    op->key = rr_bin(argv[1], len[1]);
    if (rr_ci_is(ci, "append")) {
        op->type = SHALE__TXN_OP_TYPE__TXN_APPEND;
        op->has_value = 1;
        op->value = rr_bin(argv[2], len[2]);
        return 0;
    }
    long long d = 1;
    if (argc == 3 && !resp_string2ll(argv[2], len[2], &d)) {
        resp_add_error(o, "ERR value is not an integer or out of range");
        return 1;
    }
    if (rr_ci_is(ci, "decr") || rr_ci_is(ci, "decrby")) {
        if (d == INT64_MIN) {
            resp_add_error(o, "ERR decrement would overflow");
            return 1;
        }
        d = -d;
    }
    op->type = SHALE__TXN_OP_TYPE__TXN_ADD;
    op->has_delta = 1;
    op->delta = d;
    return 0;
}

int rr_c_incr(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
    Shale__TxnOp op = SHALE__TXN_OP__INIT;
    Shale__TxnOp *succ[1] = {&op};
    Shale__Session ss;
    if (rr_incr_op(cm->ci, argc, argv, len, &op, &cm->out) != 0)
        return 0;
    t.n_success = 1;
    t.success = succ;
    cm->fin = fin_incr;
    return rr_send_single(s, cm, SHALE_MSG_TXN_REQ, &t.base, &t.session, &ss);
}

/* EXPIRE / PEXPIRE / PERSIST: one TXN_EXPIRE (or, for a TTL <= 0, a delete,
 * as Redis) evaluated at apply. */
static void fin_expire(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (rr_sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
        return;
    const Shale__TxnResponse *t = (const Shale__TxnResponse *)m;
    const Shale__TxnOpResult *x = t->n_results > 0 ? t->results[0] : NULL;
    int found = x != NULL && x->has_found && x->found;
    if (rr_cmd_is(cm, "persist"))
        found = found && x->has_had_ttl && x->had_ttl;
    resp_add_int(&cm->out, found);
}

/* The time argument of EXPIRE / PEXPIRE (command ci) in ms: 0, or 1 with
 * the error written to o. */
int rr_expire_ms(int ci, const char *a, size_t n, long long *ms, resp_out_t *o)
{
    long long v;
    if (!resp_string2ll(a, n, &v)) {
        resp_add_error(o, "ERR value is not an integer or out of range");
        return 1;
    }
    int secs = rr_ci_is(ci, "expire");
    if (secs && (v > (long long)(INT64_MAX / 1000) || v < (long long)(INT64_MIN / 1000))) {
        resp_add_errorf(o, "ERR invalid expire time in '%s' command", rr_cmds[ci].name);
        return 1;
    }
    *ms = secs ? v * 1000 : v;
    return 0;
}

/* The TXN op that gives key the TTL ms: EXPIRE, or for ms <= 0 a delete
 * (as Redis); PERSIST (persist): EXPIRE without a TTL. */
void rr_expire_op(const char *k, size_t klen, int persist, long long ms, Shale__TxnOp *op)
{
    op->key = rr_bin(k, klen);
    op->type = SHALE__TXN_OP_TYPE__TXN_EXPIRE;
    if (persist)
        return;
    if (ms <= 0) {
        op->type = SHALE__TXN_OP_TYPE__TXN_DELETE;
    } else {
        op->has_ttl_ms = 1;
        op->ttl_ms = (uint64_t)ms > SHALE_TTL_MAX_MS ? SHALE_TTL_MAX_MS : (uint64_t)ms;
    }
}

/* EXPIRE's options, as Redis 7 checks them. 0 with *flags, or 1 with the
 * error written to o. */
enum { EXP_NX = 1, EXP_XX = 2, EXP_GT = 4, EXP_LT = 8 };
static int expire_flags(size_t argc, char **argv, size_t *len, int *flags, resp_out_t *o)
{
    int f = 0;
    for (size_t i = 3; i < argc; i++) {
        if (rr_arg_is(argv[i], len[i], "nx"))
            f |= EXP_NX;
        else if (rr_arg_is(argv[i], len[i], "xx"))
            f |= EXP_XX;
        else if (rr_arg_is(argv[i], len[i], "gt"))
            f |= EXP_GT;
        else if (rr_arg_is(argv[i], len[i], "lt"))
            f |= EXP_LT;
        else {
            resp_add_errorf(o, "ERR Unsupported option %.64s", argv[i]);
            return 1;
        }
    }
    if ((f & EXP_NX) && (f & (EXP_XX | EXP_GT | EXP_LT))) {
        resp_add_error(o, "ERR NX and XX, GT or LT options at the same time are not compatible");
        return 1;
    }
    if ((f & EXP_GT) && (f & EXP_LT)) {
        resp_add_error(o, "ERR GT and LT options at the same time are not compatible");
        return 1;
    }
    *flags = f;
    return 0;
}

/* EXPIRE / PEXPIRE with NX / XX / GT / LT: atomic without a TTL compare in
 * TXN. Round 1 reads the key (linearizable: its version and TTL); if the
 * option holds, round 2 is one TXN "version unchanged → EXPIRE" (or a
 * delete for a TTL <= 0); a failed compare (the key changed between) reads
 * again, at most EXPIRE_TRIES times. An option that does not hold answers 0
 * at the read's point: never a read-then-blind-write. */
#define EXPIRE_TRIES 16

static void expire_read(rcmd_t *cm)
{
    Shale__GetRequest q = SHALE__GET_REQUEST__INIT;
    q.key = rr_bin(cm->key, cm->klen);
    rr_send_round(cm, SHALE_MSG_GET_REQ, &q.base);
}

static void fin_expire_opt(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (cm->round % 2 == 1) { /* the TXN's answer (rounds: read, txn, read, ...) */
        if (rr_sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
            return;
        if (((const Shale__TxnResponse *)m)->succeeded) {
            resp_add_int(&cm->out, 1);
        } else if (cm->round + 1 >= 2 * EXPIRE_TRIES) {
            resp_add_errorf(&cm->out, "TRYAGAIN the key kept changing during %s (%d attempts)",
                            rr_cmds[cm->ci].name, EXPIRE_TRIES);
        } else {
            expire_read(cm);
        }
        return;
    }
    if (rr_sub_answer(cm, 0, SHALE_MSG_GET_RESP, &m) != 0)
        return;
    const Shale__GetResponse *g = (const Shale__GetResponse *)m;
    if (!g->found) {
        resp_add_int(&cm->out, 0);
        return;
    }
    int f = cm->opt, has = g->has_expires_in_ms;
    long long cur = has ? (long long)g->expires_in_ms : 0, ms = cm->arg_ms;
    int ok = (!(f & EXP_NX) || !has) && (!(f & EXP_XX) || has) &&
             (!(f & EXP_GT) || (has && ms > cur)) && (!(f & EXP_LT) || !has || ms < cur);
    if (!ok) {
        resp_add_int(&cm->out, 0);
        return;
    }
    Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
    Shale__TxnCompare cmp = SHALE__TXN_COMPARE__INIT;
    Shale__TxnCompare *cmps[1] = {&cmp};
    Shale__TxnOp op = SHALE__TXN_OP__INIT;
    Shale__TxnOp *succ[1] = {&op};
    Shale__Session ss;
    cmp.key = rr_bin(cm->key, cm->klen);
    cmp.target = SHALE__TXN_TARGET__TXN_VERSION;
    cmp.op = SHALE__TXN_COMPARE_OP__TXN_EQUAL;
    cmp.has_version = 1;
    cmp.version = g->version;
    t.n_compares = 1;
    t.compares = cmps;
    rr_expire_op(cm->key, cm->klen, 0, ms, &op);
    t.n_success = 1;
    t.success = succ;
    t.session = rr_session_fill(cm->s, cm, &ss);
    rr_sub_again(cm, SHALE_MSG_TXN_REQ, &t.base);
}

int rr_c_expire(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
    Shale__TxnOp op = SHALE__TXN_OP__INIT;
    Shale__TxnOp *succ[1] = {&op};
    Shale__Session ss;
    long long ms = 0;
    int persist = rr_cmd_is(cm, "persist");
    if (!persist && rr_expire_ms(cm->ci, argv[2], len[2], &ms, &cm->out) != 0)
        return 0;
    if (argc > 3) {
        if (expire_flags(argc, argv, len, &cm->opt, &cm->out) != 0)
            return 0;
        cm->key = malloc(len[1] + 1);
        if (cm->key == NULL)
            return -1;
        memcpy(cm->key, argv[1], len[1]);
        cm->klen = len[1];
        cm->arg_ms = ms;
        cm->fin = fin_expire_opt;
        cm->round = 0;
        Shale__GetRequest q = SHALE__GET_REQUEST__INIT;
        q.key = rr_bin(cm->key, cm->klen);
        return rr_send_round(cm, SHALE_MSG_GET_REQ, &q.base);
    }
    rr_expire_op(argv[1], len[1], persist, ms, &op);
    t.n_success = 1;
    t.success = succ;
    cm->fin = fin_expire;
    return rr_send_single(s, cm, SHALE_MSG_TXN_REQ, &t.base, &t.session, &ss);
}

/* DBSIZE: the sum of the groups' key estimates (RocksDB's estimate:
 * approximate), one STATUS to a member of each group. */
typedef struct dbsz_call {
    rcmd_t *cm;
    size_t i;
} dbsz_call_t;

static void on_dbsize(void *ud, int status, int written, uint16_t type, const uint8_t *payload,
                      size_t len, const char *errmsg)
{
    (void)written, (void)errmsg;
    dbsz_call_t *dc = ud;
    rcmd_t *cm = dc->cm;
    cm->calls[dc->i] = NULL;
    free(dc);
    Shale__StatusResponse *st = NULL;
    if (status == 0 && type == SHALE_MSG_STATUS_RESP)
        st = (Shale__StatusResponse *)wire_unpack(type, payload, len);
    if (st != NULL) {
        cm->keys += st->keys_estimate;
        protobuf_c_message_free_unpacked(&st->base, NULL);
    } else {
        cm->calls_failed = 1;
    }
    if (--cm->calls_left > 0)
        return;
    if (cm->calls_failed)
        resp_add_error(&cm->out, "CLUSTERDOWN a shard group did not answer STATUS");
    else
        resp_add_int(&cm->out, (long long)cm->keys);
    rt_resp_t *s = cm->s;
    rr_cmd_done(cm);
    rr_flush_done(s);
    if (s->blocked)
        rt_cconn_kick(s->c);
}

int rr_c_dbsize(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc, (void)argv, (void)len;
    rt_router_t *r = s->r;
    if (r->route.map == NULL || r->route.ngroups == 0) {
        rr_no_map(s, cm);
        return 0;
    }
    cm->calls = calloc(r->route.ngroups, sizeof(*cm->calls));
    if (cm->calls == NULL)
        return -1;
    cm->ncalls = r->route.ngroups;
    cm->calls_left = r->route.ngroups + 1; /* +1: until every call is sent */
    for (size_t g = 0; g < r->route.ngroups; g++) {
        rt_group_t *gr = &r->route.groups[g];
        const char *addr = gr->leader[0] != '\0' ? gr->leader
                           : gr->nmembers > 0    ? gr->members[0].addr
                                                 : NULL;
        dbsz_call_t *dc = malloc(sizeof(*dc));
        uint8_t *f = addr != NULL ? frame_build(SHALE_MSG_STATUS_REQ, 0, NULL, 0) : NULL;
        char err[160];
        if (dc != NULL && f != NULL) {
            dc->cm = cm;
            dc->i = g;
            cm->calls[g] =
                rt_up_send(r, addr, f, FRAME_HEADER_SIZE, on_dbsize, dc, err, sizeof(err));
            if (cm->calls[g] != NULL)
                continue;
        } else {
            free(f);
        }
        free(dc);
        cm->calls_failed = 1;
        cm->calls_left--;
    }
    if (--cm->calls_left > 0)
        return 1; /* answered by on_dbsize */
    if (cm->calls_failed)
        resp_add_error(&cm->out, "CLUSTERDOWN a shard group did not answer STATUS");
    else
        resp_add_int(&cm->out, (long long)cm->keys);
    return 0;
}
