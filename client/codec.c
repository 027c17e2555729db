/* Request encoding and answer decoding for libshale.
 *
 * Owns the rules that can be checked without a server: empty keys are
 * SHALE_EINVAL, keys/values over the limits and frames over the server's
 * maximum are SHALE_ETOOLARGE, a CAS names exactly one expectation. It turns
 * an answer frame into the public fields of a shale_req_t (every byte the
 * caller gets is a malloc'd copy).
 *
 * Pure functions: never does I/O, never touches client state, never keeps a
 * pointer to the caller's buffers beyond the codec_msg_t it fills. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ERR(err, ...) snprintf((err), SHALE_ERRMSG_LEN, __VA_ARGS__)

static ProtobufCBinaryData bin(const void *p, size_t n)
{
    ProtobufCBinaryData b;
    b.data = (uint8_t *)(uintptr_t)p;
    b.len = n;
    return b;
}

static int check_key(const codec_limits_t *lim, const void *key, size_t klen, const char *what,
                     char *err)
{
    if (klen == 0) {
        ERR(err, "%s: empty key", what);
        return SHALE_EINVAL;
    }
    if (key == NULL) {
        ERR(err, "%s: key is NULL", what);
        return SHALE_EINVAL;
    }
    if (klen > lim->max_key) {
        ERR(err, "%s: key of %zu bytes exceeds the limit of %u", what, klen, lim->max_key);
        return SHALE_ETOOLARGE;
    }
    return SHALE_OK;
}

static int check_value(const codec_limits_t *lim, const void *value, size_t vlen, const char *what,
                       char *err)
{
    if (value == NULL && vlen > 0) {
        ERR(err, "%s: value is NULL but its length is %zu", what, vlen);
        return SHALE_EINVAL;
    }
    if (vlen > lim->max_value) {
        ERR(err, "%s: value of %zu bytes exceeds the limit of %u", what, vlen, lim->max_value);
        return SHALE_ETOOLARGE;
    }
    return SHALE_OK;
}

static int set_read(codec_msg_t *m, const shale_read_opts_t *ro, Shale__ReadOptions **slot,
                    char *err)
{
    *slot = NULL;
    if (ro == NULL)
        return SHALE_OK;
    Shale__ReadOptions r = SHALE__READ_OPTIONS__INIT;
    switch (ro->consistency) {
    case SHALE_LINEARIZABLE:
        break;
    case SHALE_STALE:
        r.has_consistency = 1;
        r.consistency = SHALE__CONSISTENCY__STALE;
        r.has_max_staleness_ms = 1;
        r.max_staleness_ms = ro->max_staleness_ms;
        break;
    default:
        ERR(err, "unknown consistency level %d", (int)ro->consistency);
        return SHALE_EINVAL;
    }
    m->read = r;
    *slot = &m->read;
    return SHALE_OK;
}

static void msg_init(codec_msg_t *m, uint16_t type, uint16_t resp, int mutation)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->resp_type = resp;
    m->mutation = mutation;
    m->nkeys = 1;
}

int codec_get(codec_msg_t *m, const codec_limits_t *lim, const void *key, size_t klen,
              const shale_read_opts_t *ro, char *err)
{
    msg_init(m, SHALE_MSG_GET_REQ, SHALE_MSG_GET_RESP, 0);
    Shale__GetRequest g = SHALE__GET_REQUEST__INIT;
    int rv = check_key(lim, key, klen, "get", err);
    if (rv == SHALE_OK)
        rv = set_read(m, ro, &g.read, err);
    g.key = bin(key, klen);
    m->u.get = g;
    return rv;
}

int codec_put(codec_msg_t *m, const codec_limits_t *lim, const void *key, size_t klen,
              const void *value, size_t vlen, uint64_t ttl_ms, char *err)
{
    msg_init(m, SHALE_MSG_PUT_REQ, SHALE_MSG_PUT_RESP, 1);
    Shale__PutRequest p = SHALE__PUT_REQUEST__INIT;
    int rv = check_key(lim, key, klen, "put", err);
    if (rv == SHALE_OK)
        rv = check_value(lim, value, vlen, "put", err);
    if (rv == SHALE_OK && ttl_ms > SHALE_TTL_MAX_MS) {
        ERR(err, "put: ttl of %llu ms is over the maximum (%llu)", (unsigned long long)ttl_ms,
            (unsigned long long)SHALE_TTL_MAX_MS);
        rv = SHALE_EINVAL;
    }
    p.key = bin(key, klen);
    p.value = bin(value, vlen);
    p.has_ttl_ms = ttl_ms > 0;
    p.ttl_ms = ttl_ms;
    m->u.put = p;
    return rv;
}

int codec_del(codec_msg_t *m, const codec_limits_t *lim, const void *key, size_t klen, char *err)
{
    msg_init(m, SHALE_MSG_DEL_REQ, SHALE_MSG_DEL_RESP, 1);
    Shale__DeleteRequest d = SHALE__DELETE_REQUEST__INIT;
    int rv = check_key(lim, key, klen, "del", err);
    d.key = bin(key, klen);
    m->u.del = d;
    return rv;
}

int codec_cas(codec_msg_t *m, const codec_limits_t *lim, const void *key, size_t klen,
              const shale_cas_expect_t *expect, const void *value, size_t vlen, int del, char *err)
{
    msg_init(m, SHALE_MSG_CAS_REQ, SHALE_MSG_CAS_RESP, 1);
    Shale__CasRequest c = SHALE__CAS_REQUEST__INIT;
    int rv = check_key(lim, key, klen, "cas", err);
    if (rv != SHALE_OK)
        return rv;
    if (expect == NULL) {
        ERR(err, "cas: no expectation given");
        return SHALE_EINVAL;
    }
    switch (expect->kind) {
    case SHALE_CAS_ABSENT:
        c.has_expect_absent = 1;
        c.expect_absent = 1;
        break;
    case SHALE_CAS_VERSION:
        c.has_expect_version = 1;
        c.expect_version = expect->version;
        break;
    case SHALE_CAS_VALUE:
        rv = check_value(lim, expect->value, expect->len, "cas expected value", err);
        if (rv != SHALE_OK)
            return rv;
        c.has_expect_value = 1;
        c.expect_value = bin(expect->value, expect->len);
        break;
    default:
        ERR(err, "cas: unknown expectation kind %d", (int)expect->kind);
        return SHALE_EINVAL;
    }
    if (del) {
        if (value != NULL || vlen > 0) {
            ERR(err, "cas: a new value and delete-on-match are exclusive");
            return SHALE_EINVAL;
        }
        c.has_delete_on_match = 1;
        c.delete_on_match = 1;
    } else {
        rv = check_value(lim, value, vlen, "cas", err);
        if (rv != SHALE_OK)
            return rv;
        c.has_new_value = 1;
        c.new_value = bin(value, vlen);
    }
    c.key = bin(key, klen);
    m->u.cas = c;
    return SHALE_OK;
}

int codec_mget(codec_msg_t *m, const codec_limits_t *lim, const shale_item_t *keys, size_t n,
               const shale_read_opts_t *ro, char *err)
{
    msg_init(m, SHALE_MSG_MGET_REQ, SHALE_MSG_MGET_RESP, 0);
    Shale__MGetRequest g = SHALE__MGET_REQUEST__INIT;
    if (n == 0 || keys == NULL) {
        ERR(err, "mget: no keys");
        return SHALE_EINVAL;
    }
    int rv = set_read(m, ro, &g.read, err);
    for (size_t i = 0; i < n && rv == SHALE_OK; i++)
        rv = check_key(lim, keys[i].key, keys[i].klen, "mget", err);
    if (rv != SHALE_OK)
        return rv;
    m->keys = malloc(n * sizeof(*m->keys));
    if (m->keys == NULL) {
        ERR(err, "mget: out of memory");
        return SHALE_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        m->keys[i] = bin(keys[i].key, keys[i].klen);
    g.n_keys = n;
    g.keys = m->keys;
    m->u.mget = g;
    m->nkeys = n;
    return SHALE_OK;
}

int codec_mput(codec_msg_t *m, const codec_limits_t *lim, const shale_item_t *items, size_t n,
               char *err)
{
    msg_init(m, SHALE_MSG_MPUT_REQ, SHALE_MSG_MPUT_RESP, 1);
    Shale__MPutRequest p = SHALE__MPUT_REQUEST__INIT;
    if (n == 0 || items == NULL) {
        ERR(err, "mput: no items");
        return SHALE_EINVAL;
    }
    int rv = SHALE_OK;
    for (size_t i = 0; i < n && rv == SHALE_OK; i++) {
        rv = check_key(lim, items[i].key, items[i].klen, "mput", err);
        if (rv == SHALE_OK)
            rv = check_value(lim, items[i].value, items[i].vlen, "mput", err);
    }
    if (rv != SHALE_OK)
        return rv;
    m->kv = malloc(n * sizeof(*m->kv));
    m->kvp = malloc(n * sizeof(*m->kvp));
    if (m->kv == NULL || m->kvp == NULL) {
        codec_msg_free(m);
        ERR(err, "mput: out of memory");
        return SHALE_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        Shale__KeyValue kv = SHALE__KEY_VALUE__INIT;
        kv.key = bin(items[i].key, items[i].klen);
        kv.has_value = 1;
        kv.value = bin(items[i].value, items[i].vlen);
        m->kv[i] = kv;
        m->kvp[i] = &m->kv[i];
    }
    p.n_items = n;
    p.items = m->kvp;
    m->u.mput = p;
    m->nkeys = n;
    return SHALE_OK;
}

int codec_admin(codec_msg_t *m, uint16_t type, uint64_t id, const char *raft_addr,
                const char *client_addr, int replica, char *err)
{
    msg_init(m, type, type == SHALE_MSG_STATUS_REQ ? SHALE_MSG_STATUS_RESP : SHALE_MSG_ADMIN_RESP,
             0);
    m->nkeys = 0;
    switch (type) {
    case SHALE_MSG_STATUS_REQ: {
        Shale__StatusRequest r = SHALE__STATUS_REQUEST__INIT;
        m->u.status = r;
        return SHALE_OK;
    }
    case SHALE_MSG_MEMBER_ADD_REQ: {
        if (id == 0 || raft_addr == NULL || client_addr == NULL || raft_addr[0] == '\0' ||
            client_addr[0] == '\0') {
            ERR(err, "member add needs an id > 0, a raft address and a client address");
            return SHALE_EINVAL;
        }
        Shale__Member mem = SHALE__MEMBER__INIT;
        mem.id = id;
        mem.raft_addr = (char *)raft_addr;
        mem.client_addr = (char *)client_addr;
        mem.has_role = 1;
        mem.role = replica ? SHALE__MEMBER_ROLE__ROLE_STANDBY : SHALE__MEMBER_ROLE__ROLE_VOTER;
        m->member = mem;
        Shale__MemberAddRequest r = SHALE__MEMBER_ADD_REQUEST__INIT;
        m->u.madd = r;
        /* member points into m: set at pack time by codec_fixup below. */
        return SHALE_OK;
    }
    case SHALE_MSG_MEMBER_REMOVE_REQ: {
        if (id == 0) {
            ERR(err, "member remove needs an id > 0");
            return SHALE_EINVAL;
        }
        Shale__MemberRemoveRequest r = SHALE__MEMBER_REMOVE_REQUEST__INIT;
        r.id = id;
        m->u.mrem = r;
        return SHALE_OK;
    }
    case SHALE_MSG_LEADER_TRANSFER_REQ: {
        Shale__LeaderTransferRequest r = SHALE__LEADER_TRANSFER_REQUEST__INIT;
        r.has_id = id != 0;
        r.id = id;
        m->u.xfer = r;
        return SHALE_OK;
    }
    default:
        ERR(err, "not an admin request type %u", type);
        return SHALE_EINVAL;
    }
}

void codec_msg_free(codec_msg_t *m)
{
    free(m->kv);
    free(m->kvp);
    free(m->keys);
    free(m->tc);
    free(m->tcp);
    free(m->to);
    free(m->top);
    m->kv = NULL;
    m->kvp = NULL;
    m->keys = NULL;
    m->tc = NULL;
    m->tcp = NULL;
    m->to = NULL;
    m->top = NULL;
}

int codec_txn(codec_msg_t *m, const codec_limits_t *lim, const shale_txn_t *txn, char *err)
{
    msg_init(m, SHALE_MSG_TXN_REQ, SHALE_MSG_TXN_RESP, 0);
    if (txn == NULL || (txn->ncompares > 0 && txn->compares == NULL) ||
        (txn->nsuccess > 0 && txn->success == NULL) ||
        (txn->nfailure > 0 && txn->failure == NULL)) {
        ERR(err, "txn: NULL transaction or array");
        return SHALE_EINVAL;
    }
    if (txn->ncompares > SHALE_TXN_MAX_COMPARES || txn->nsuccess + txn->nfailure > SHALE_TXN_MAX_OPS) {
        ERR(err, "txn: %zu compares and %zu ops (at most %d and %d)", txn->ncompares,
            txn->nsuccess + txn->nfailure, SHALE_TXN_MAX_COMPARES, SHALE_TXN_MAX_OPS);
        return SHALE_ETOOLARGE;
    }
    size_t nc = txn->ncompares, no = txn->nsuccess + txn->nfailure;
    m->tc = calloc(nc ? nc : 1, sizeof(*m->tc));
    m->tcp = calloc(nc ? nc : 1, sizeof(*m->tcp));
    m->to = calloc(no ? no : 1, sizeof(*m->to));
    m->top = calloc(no ? no : 1, sizeof(*m->top));
    if (m->tc == NULL || m->tcp == NULL || m->to == NULL || m->top == NULL) {
        codec_msg_free(m);
        ERR(err, "txn: out of memory");
        return SHALE_ENOMEM;
    }
    for (size_t i = 0; i < nc; i++) {
        const shale_txn_compare_t *c = &txn->compares[i];
        Shale__TxnCompare *t = &m->tc[i];
        shale__txn_compare__init(t);
        if (c->key == NULL && c->klen > 0) {
            codec_msg_free(m);
            ERR(err, "txn compare %zu: key is NULL", i);
            return SHALE_EINVAL;
        }
        t->key = bin(c->key, c->klen);
        t->target = (Shale__TxnTarget)c->target;
        t->op = (Shale__TxnCompareOp)c->cmp;
        switch (c->target) {
        case SHALE_TXN_VALUE:
            if (c->value == NULL && c->vlen > 0) {
                codec_msg_free(m);
                ERR(err, "txn compare %zu: value is NULL but its length is %zu", i, c->vlen);
                return SHALE_EINVAL;
            }
            t->has_value = 1;
            t->value = bin(c->value, c->vlen);
            break;
        case SHALE_TXN_VERSION:
            t->has_version = 1;
            t->version = c->version;
            break;
        case SHALE_TXN_EXISTS:
            t->has_exists = 1;
            t->exists = c->exists != 0;
            break;
        }
        m->tcp[i] = t;
    }
    for (size_t i = 0; i < no; i++) {
        const shale_txn_op_t *o = i < txn->nsuccess ? &txn->success[i]
                                                    : &txn->failure[i - txn->nsuccess];
        Shale__TxnOp *t = &m->to[i];
        shale__txn_op__init(t);
        if ((o->key == NULL && o->klen > 0) || (o->value == NULL && o->vlen > 0)) {
            codec_msg_free(m);
            ERR(err, "txn op %zu: NULL key or value with a length", i);
            return SHALE_EINVAL;
        }
        t->type = (Shale__TxnOpType)o->type;
        t->key = bin(o->key, o->klen);
        if (o->type == SHALE_TXN_PUT || o->type == SHALE_TXN_APPEND) {
            t->has_value = 1;
            t->value = bin(o->value, o->vlen);
        }
        if (o->type == SHALE_TXN_ADD) {
            t->has_delta = 1;
            t->delta = o->delta;
        }
        if ((o->type == SHALE_TXN_PUT || o->type == SHALE_TXN_EXPIRE) && o->ttl_ms > 0) {
            t->has_ttl_ms = 1;
            t->ttl_ms = o->ttl_ms;
        }
        if (o->type == SHALE_TXN_PUT && o->keep_ttl) {
            t->has_keep_ttl = 1;
            t->keep_ttl = 1;
        }
        m->top[i] = t;
    }
    Shale__TxnRequest x = SHALE__TXN_REQUEST__INIT;
    x.n_compares = nc;
    x.compares = m->tcp;
    x.n_success = txn->nsuccess;
    x.success = m->top;
    x.n_failure = txn->nfailure;
    x.failure = m->top + txn->nsuccess;
    uint32_t slot;
    int writes;
    /* One slot for all: the one-slot rule is the router's and node's. */
    int rv = wire_txn_check(&x, lim->max_key, lim->max_value, 1, &slot, &writes, err,
                            SHALE_ERRMSG_LEN);
    if (rv != 0) {
        codec_msg_free(m);
        return rv;
    }
    m->u.txn = x;
    m->mutation = writes;
    m->nkeys = no;
    return SHALE_OK;
}

void codec_set_session(codec_msg_t *m, uint64_t client_id, uint64_t seq, uint64_t ack_floor)
{
    if (!m->mutation)
        return;
    Shale__Session s = SHALE__SESSION__INIT;
    s.client_id = client_id;
    s.seq = seq;
    s.has_ack_floor = 1;
    s.ack_floor = ack_floor;
    m->session = s;
    switch (m->type) {
    case SHALE_MSG_PUT_REQ:
        m->u.put.session = &m->session;
        break;
    case SHALE_MSG_DEL_REQ:
        m->u.del.session = &m->session;
        break;
    case SHALE_MSG_CAS_REQ:
        m->u.cas.session = &m->session;
        break;
    case SHALE_MSG_MPUT_REQ:
        m->u.mput.session = &m->session;
        break;
    case SHALE_MSG_TXN_REQ:
        m->u.txn.session = &m->session;
        break;
    default:
        break;
    }
}

static const ProtobufCMessage *msg_base(const codec_msg_t *m)
{
    /* Every member of the union starts with its ProtobufCMessage base. A
     * MEMBER_ADD points at m->member, which moves with m (set here). */
    if (m->type == SHALE_MSG_MEMBER_ADD_REQ)
        ((codec_msg_t *)m)->u.madd.member = (Shale__Member *)&m->member;
    return (const ProtobufCMessage *)&m->u;
}

size_t codec_payload_size(const codec_msg_t *m)
{
    if (m->raw != NULL)
        return m->raw_len;
    return protobuf_c_message_get_packed_size(msg_base(m));
}

int codec_call(codec_msg_t *m, uint16_t type, uint16_t resp_type, const void *payload,
               size_t len, char *err)
{
    memset(m, 0, sizeof(*m));
    if (wire_descriptor(type) == NULL || wire_descriptor(resp_type) == NULL) {
        ERR(err, "unknown message type %u or answer type %u", type, resp_type);
        return SHALE_EINVAL;
    }
    if (payload == NULL && len > 0) {
        ERR(err, "payload is NULL");
        return SHALE_EINVAL;
    }
    m->type = type;
    m->resp_type = resp_type;
    m->raw = payload != NULL ? payload : (const uint8_t *)"";
    m->raw_len = len;
    return SHALE_OK;
}

void codec_pack(const codec_msg_t *m, uint64_t id, uint8_t *out)
{
    size_t plen = codec_payload_size(m);
    frame_hdr_t h = {.len = (uint32_t)plen, .type = m->type, .id = id};
    frame_hdr_write(out, &h);
    if (m->raw != NULL)
        memcpy(out + FRAME_HEADER_SIZE, m->raw, m->raw_len);
    else
        protobuf_c_message_pack(msg_base(m), out + FRAME_HEADER_SIZE);
}

/* ---- Answers -------------------------------------------------------------*/

int codec_error_code(const Shale__Error *e)
{
    int code = (int)e->code;
    if (code <= 0 || code >= 100)
        return SHALE_EPROTO;
    return -code;
}

/* Copy n bytes into a fresh buffer; NULL data for n == 0. */
static int dup_bytes(const ProtobufCBinaryData *b, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (b->len == 0)
        return SHALE_OK;
    *out = malloc(b->len);
    if (*out == NULL)
        return SHALE_ENOMEM;
    memcpy(*out, b->data, b->len);
    *len = b->len;
    return SHALE_OK;
}

static int decode_error(shale_req_t *req, uint16_t resp_type, const uint8_t *payload, size_t len)
{
    Shale__Error *e = (Shale__Error *)wire_unpack(SHALE_MSG_ERROR, payload, len);
    if (e == NULL) {
        ERR(req->errmsg, "malformed ERROR answer");
        return SHALE_EPROTO;
    }
    int code = codec_error_code(e);
    const char *msg =
        e->message != NULL && e->message[0] != '\0' ? e->message : shale_strerror(code);
    ERR(req->errmsg, "%s", msg);
    if (e->leader_hint != NULL)
        snprintf(req->leader_hint, sizeof(req->leader_hint), "%s", e->leader_hint);
    if (e->has_epoch)
        req->epoch = e->epoch;
    if (code == SHALE_ECASFAILED && resp_type == SHALE_MSG_CAS_RESP) {
        req->value.found = e->has_current_exists && e->current_exists;
        req->value.version = e->has_current_version ? e->current_version : 0;
        if (req->value.found && e->has_current_value &&
            dup_bytes(&e->current_value, &req->value.data, &req->value.len) != 0) {
            ERR(req->errmsg, "out of memory copying the current value");
            code = SHALE_ENOMEM;
        }
    }
    protobuf_c_message_free_unpacked(&e->base, NULL);
    return code;
}

static int decode_items(shale_req_t *req, Shale__KeyValue **kvs, size_t n, size_t nkeys, int reads)
{
    if (n != nkeys) {
        ERR(req->errmsg, "answer carries %zu items for %zu keys", n, nkeys);
        return SHALE_EPROTO;
    }
    req->items = calloc(n, sizeof(*req->items));
    if (req->items == NULL) {
        ERR(req->errmsg, "out of memory");
        return SHALE_ENOMEM;
    }
    req->nitems = n;
    for (size_t i = 0; i < n; i++) {
        const Shale__KeyValue *kv = kvs[i];
        shale_item_result_t *r = &req->items[i];
        if (kv->error != NULL) {
            r->status = codec_error_code(kv->error);
            continue;
        }
        r->status = SHALE_OK;
        r->version = kv->has_version ? kv->version : 0;
        if (reads) {
            r->found = kv->has_found && kv->found;
            if (r->found && kv->has_value && dup_bytes(&kv->value, &r->data, &r->len) != 0) {
                ERR(req->errmsg, "out of memory");
                return SHALE_ENOMEM;
            }
        }
    }
    return SHALE_OK;
}

int codec_decode(shale_req_t *req, uint16_t resp_type, size_t nkeys, uint16_t type,
                 const uint8_t *payload, size_t len)
{
    if (type == SHALE_MSG_ERROR)
        return decode_error(req, resp_type, payload, len);
    if (type != resp_type) {
        ERR(req->errmsg, "answer of type %s to a request expecting %s", frame_type_name(type),
            frame_type_name(resp_type));
        return SHALE_EPROTO;
    }
    if (req->type == SHALE_REQ_CALL) {
        /* The caller decodes; only copy. */
        req->raw = malloc(len ? len : 1);
        if (req->raw == NULL) {
            ERR(req->errmsg, "out of memory copying a %zu-byte answer", len);
            return SHALE_ENOMEM;
        }
        if (len > 0)
            memcpy(req->raw, payload, len);
        req->raw_len = len;
        return SHALE_OK;
    }
    ProtobufCMessage *msg = wire_unpack(type, payload, len);
    if (msg == NULL) {
        ERR(req->errmsg, "malformed %s answer", frame_type_name(type));
        return SHALE_EPROTO;
    }
    int rv = SHALE_OK;
    switch (type) {
    case SHALE_MSG_GET_RESP: {
        Shale__GetResponse *g = (Shale__GetResponse *)msg;
        req->value.found = g->found;
        req->value.version = g->has_version ? g->version : 0;
        req->value.expires_in_ms = g->found && g->has_expires_in_ms ? g->expires_in_ms : 0;
        if (g->found && g->has_value &&
            dup_bytes(&g->value, &req->value.data, &req->value.len) != 0) {
            ERR(req->errmsg, "out of memory copying a value of %zu bytes", g->value.len);
            rv = SHALE_ENOMEM;
        }
        break;
    }
    case SHALE_MSG_PUT_RESP: {
        Shale__PutResponse *p = (Shale__PutResponse *)msg;
        req->version = p->version;
        req->duplicate = p->has_duplicate && p->duplicate;
        break;
    }
    case SHALE_MSG_DEL_RESP: {
        Shale__DeleteResponse *d = (Shale__DeleteResponse *)msg;
        req->existed = d->existed;
        req->version = d->has_version ? d->version : 0;
        req->duplicate = d->has_duplicate && d->duplicate;
        break;
    }
    case SHALE_MSG_CAS_RESP: {
        Shale__CasResponse *c = (Shale__CasResponse *)msg;
        req->version = c->version;
        req->duplicate = c->has_duplicate && c->duplicate;
        break;
    }
    case SHALE_MSG_MGET_RESP: {
        Shale__MGetResponse *g = (Shale__MGetResponse *)msg;
        rv = decode_items(req, g->items, g->n_items, nkeys, 1);
        break;
    }
    case SHALE_MSG_MPUT_RESP: {
        Shale__MPutResponse *p = (Shale__MPutResponse *)msg;
        req->duplicate = p->has_duplicate && p->duplicate;
        rv = decode_items(req, p->items, p->n_items, nkeys, 0);
        break;
    }
    case SHALE_MSG_TXN_RESP: {
        Shale__TxnResponse *t = (Shale__TxnResponse *)msg;
        req->existed = t->succeeded;
        req->duplicate = t->has_duplicate && t->duplicate;
        if (t->n_results > nkeys) {
            ERR(req->errmsg, "answer carries %zu results for a txn of %zu ops", t->n_results,
                nkeys);
            rv = SHALE_EPROTO;
            break;
        }
        if (t->n_results == 0)
            break;
        req->items = calloc(t->n_results, sizeof(*req->items));
        if (req->items == NULL) {
            ERR(req->errmsg, "out of memory");
            rv = SHALE_ENOMEM;
            break;
        }
        req->nitems = t->n_results;
        for (size_t i = 0; i < t->n_results && rv == SHALE_OK; i++) {
            const Shale__TxnOpResult *x = t->results[i];
            shale_item_result_t *r = &req->items[i];
            r->status = SHALE_OK;
            r->found = x->has_found && x->found;
            r->version = x->has_version ? x->version : 0;
            if (x->has_value && dup_bytes(&x->value, &r->data, &r->len) != 0) {
                ERR(req->errmsg, "out of memory");
                rv = SHALE_ENOMEM;
            }
        }
        break;
    }
    case SHALE_MSG_ADMIN_RESP: {
        Shale__AdminResponse *a = (Shale__AdminResponse *)msg;
        snprintf(req->errmsg, SHALE_ERRMSG_LEN, "%s", a->message ? a->message : "ok");
        req->version = a->has_leader_id ? a->leader_id : 0;
        break;
    }
    case SHALE_MSG_STATUS_RESP: {
        Shale__StatusResponse *st = (Shale__StatusResponse *)msg;
        shale_node_status_t *o = req->node_status;
        if (o == NULL)
            break;
        memset(o, 0, sizeof(*o));
        o->node_id = st->node_id;
        snprintf(o->role, sizeof(o->role), "%s", st->role ? st->role : "?");
        snprintf(o->address, sizeof(o->address), "%s", st->address ? st->address : "");
        snprintf(o->cluster_id, sizeof(o->cluster_id), "%s", st->cluster_id ? st->cluster_id : "");
        snprintf(o->leader, sizeof(o->leader), "%s", st->leader ? st->leader : "");
        o->term = st->term;
        o->commit_index = st->commit_index;
        o->applied_index = st->applied_index;
        o->last_index = st->last_index;
        o->leader_id = st->leader_id;
        o->staleness_known = st->has_staleness_ms;
        o->staleness_ms = st->staleness_ms;
        o->keys_estimate = st->keys_estimate;
        snprintf(o->mode, sizeof(o->mode), "%s", st->mode ? st->mode : "data");
        o->group_id = st->group_id;
        o->map_epoch = st->map_epoch;
        o->slots_owned_known = st->has_slots_owned;
        o->slots_owned = st->slots_owned;
        for (size_t i = 0; i < st->n_members && i < SHALE_MAX_MEMBERS; i++) {
            const Shale__Member *mb = st->members[i];
            shale_member_info_t *mi = &o->members[o->nmembers++];
            mi->id = mb->id;
            snprintf(mi->raft_addr, sizeof(mi->raft_addr), "%s", mb->raft_addr);
            snprintf(mi->client_addr, sizeof(mi->client_addr), "%s", mb->client_addr);
            mi->replica = mb->has_role && mb->role == SHALE__MEMBER_ROLE__ROLE_STANDBY;
        }
        break;
    }
    default:
        ERR(req->errmsg, "unexpected answer type %s", frame_type_name(type));
        rv = SHALE_EPROTO;
        break;
    }
    protobuf_c_message_free_unpacked(msg, NULL);
    return rv;
}
