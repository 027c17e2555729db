/* Request dispatch: decode a client frame, validate it against the limits,
 * and send it down the right path — mutations to the proposer, linearizable
 * reads to the read-index batcher, stale reads and STATUS answered here.
 *
 * Every request that enters leaves exactly once, through sreq_reply or
 * sreq_fail, which also release its connection reference. This file never
 * touches Raft or RocksDB directly except through those modules. */
#include <stdlib.h>
#include <string.h>

#include "errors_wire.h"
#include "frame.h"
#include "keyhash.h"
#include "log.h"
#include "server.h"
#include "snapshot_xfer.h"
#include "wire.h"

void sreq_free(sreq_t *r)
{
    obs_request_done(conn_server(r->conn), r);
    if (r->msg != NULL)
        protobuf_c_message_free_unpacked(r->msg, NULL);
    conn_request_done(r->conn);
    free(r);
}

void sreq_fail(sreq_t *r, int code, const char *msg)
{
    size_t len;
    const char *hint = code == SHALE_ENOTLEADER ? shaled_leader_hint(conn_server(r->conn)) : NULL;
    if (hint != NULL && hint[0] == '\0')
        hint = NULL;
    uint8_t *f = wire_error_frame(r->id, code, msg, hint, &len);
    r->code = code;
    conn_send(r->conn, f, len);
    sreq_free(r);
}

void sreq_reply_error(sreq_t *r, const Shale__Error *e)
{
    size_t len;
    shaled_t *s = conn_server(r->conn);
    uint8_t *f = wire_pack(SHALE_MSG_ERROR, r->id, &e->base, (uint32_t)s->cfg.max_frame, &len);
    if (f == NULL) {
        sreq_fail(r, (int)-e->code, e->message);
        return;
    }
    r->code = -(int)e->code;
    conn_send(r->conn, f, len);
    sreq_free(r);
}

void sreq_fail_epoch(sreq_t *r, int code, const char *msg, uint64_t epoch)
{
    Shale__Error e = SHALE__ERROR__INIT;
    e.code = (Shale__ErrorCode)shale_error_to_wire(code);
    e.message = (char *)msg;
    e.has_epoch = 1;
    e.epoch = epoch;
    sreq_reply_error(r, &e);
}

void sreq_reply(sreq_t *r, uint16_t type, const ProtobufCMessage *resp)
{
    size_t len;
    shaled_t *s = conn_server(r->conn);
    size_t need = protobuf_c_message_get_packed_size(resp);
    if (need > s->cfg.max_frame) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "answer of %zu bytes exceeds the %llu-byte frame limit; ask for less",
                 need, (unsigned long long)s->cfg.max_frame);
        sreq_fail(r, SHALE_ETOOLARGE, msg);
        return;
    }
    uint8_t *f = wire_pack(type, r->id, resp, (uint32_t)s->cfg.max_frame, &len);
    if (f == NULL) {
        sreq_fail(r, SHALE_ENOMEM, "out of memory building the response");
        return;
    }
    conn_send(r->conn, f, len);
    sreq_free(r);
}

const char *shaled_leader_hint(shaled_t *s)
{
    /* Raft knows the leader by id and raft address; the replicated member
     * table turns the id into the client address clients can use. A node
     * stepping down still names itself here only while Raft says so. */
    if (!s->raft_inited || s->raft_closed)
        return "";
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&s->raft, &lid, &laddr);
    if (lid == 0)
        return "";
    if (lid == s->cfg.id)
        return raft_node_is_leader(s) ? s->cfg.listen : "";
    const Shale__Member *m = members_find(s, lid);
    return m != NULL ? m->client_addr : "";
}

/* How old this node's state may be (ms), or UINT64_MAX when unknown. */
static uint64_t staleness_ms(shaled_t *s)
{
    if (s->applied_leader_ms == 0)
        return UINT64_MAX;
    uint64_t now = shaled_now_ms();
    return now > s->applied_leader_ms ? now - s->applied_leader_ms : 0;
}

static int check_key(shaled_t *s, const ProtobufCBinaryData *k, char *msg,
                     size_t mlen)
{
    if (k->len == 0) {
        snprintf(msg, mlen, "empty key");
        return SHALE_EINVAL;
    }
    if (k->len > s->cfg.max_key) {
        snprintf(msg, mlen, "key of %zu bytes exceeds the limit of %llu", k->len,
                 (unsigned long long)s->cfg.max_key);
        return SHALE_ETOOLARGE;
    }
    return 0;
}

static int check_value(shaled_t *s, const ProtobufCBinaryData *v, char *msg,
                       size_t mlen)
{
    if (v->len > s->cfg.max_value) {
        snprintf(msg, mlen, "value of %zu bytes exceeds the limit of %llu",
                 v->len, (unsigned long long)s->cfg.max_value);
        return SHALE_ETOOLARGE;
    }
    return 0;
}

/* A router-stamped slot must match the key's slot. */
static int check_route(shaled_t *s, const Shale__Route *rt,
                       const ProtobufCBinaryData *k, char *msg, size_t mlen)
{
    if (rt == NULL || !rt->has_slot)
        return 0;
    uint32_t slot = shale_key_slot(k->data, k->len, (uint32_t)s->cfg.slots);
    if (rt->slot != slot) {
        snprintf(msg, mlen, "route names slot %u but the key hashes to slot %u",
                 rt->slot, slot);
        return SHALE_EINVAL;
    }
    return 0;
}

static int validate(shaled_t *s, sreq_t *r, char *msg, size_t mlen)
{
    int rv = 0;
    switch (r->type) {
    case SHALE_MSG_GET_REQ: {
        Shale__GetRequest *g = (Shale__GetRequest *)r->msg;
        if ((rv = check_key(s, &g->key, msg, mlen)) == 0)
            rv = check_route(s, g->route, &g->key, msg, mlen);
        break;
    }
    case SHALE_MSG_PUT_REQ: {
        Shale__PutRequest *p = (Shale__PutRequest *)r->msg;
        if ((rv = check_key(s, &p->key, msg, mlen)) == 0 &&
            (rv = check_value(s, &p->value, msg, mlen)) == 0)
            rv = check_route(s, p->route, &p->key, msg, mlen);
        if (rv == 0 && p->has_ttl_ms && (p->ttl_ms == 0 || p->ttl_ms > SHALE_TTL_MAX_MS)) {
            snprintf(msg, mlen, "ttl_ms must be 1..%llu (absent: no TTL)",
                     (unsigned long long)SHALE_TTL_MAX_MS);
            return SHALE_EINVAL;
        }
        break;
    }
    case SHALE_MSG_DEL_REQ: {
        Shale__DeleteRequest *d = (Shale__DeleteRequest *)r->msg;
        if ((rv = check_key(s, &d->key, msg, mlen)) == 0)
            rv = check_route(s, d->route, &d->key, msg, mlen);
        break;
    }
    case SHALE_MSG_CAS_REQ: {
        Shale__CasRequest *c = (Shale__CasRequest *)r->msg;
        if ((rv = check_key(s, &c->key, msg, mlen)) != 0 ||
            (rv = check_route(s, c->route, &c->key, msg, mlen)) != 0)
            break;
        int kinds = (c->has_expect_absent && c->expect_absent) +
                    c->has_expect_version + c->has_expect_value;
        if (kinds != 1) {
            snprintf(msg, mlen, "CAS needs exactly one of expect_absent, "
                                "expect_version, expect_value");
            return SHALE_EINVAL;
        }
        int del = c->has_delete_on_match && c->delete_on_match;
        if (del == c->has_new_value) {
            snprintf(msg, mlen, "CAS needs either new_value or delete_on_match");
            return SHALE_EINVAL;
        }
        if (c->has_new_value)
            rv = check_value(s, &c->new_value, msg, mlen);
        if (rv == 0 && c->has_expect_value)
            rv = check_value(s, &c->expect_value, msg, mlen);
        break;
    }
    case SHALE_MSG_MGET_REQ: {
        Shale__MGetRequest *m = (Shale__MGetRequest *)r->msg;
        if (m->n_keys == 0) {
            snprintf(msg, mlen, "MGET with no keys");
            return SHALE_EINVAL;
        }
        if (m->n_keys > SHALE_MAX_BATCH_KEYS) {
            snprintf(msg, mlen, "MGET of %zu keys (at most %d per request)",
                     m->n_keys, SHALE_MAX_BATCH_KEYS);
            return SHALE_ETOOLARGE;
        }
        for (size_t i = 0; i < m->n_keys && rv == 0; i++)
            rv = check_key(s, &m->keys[i], msg, mlen);
        break;
    }
    case SHALE_MSG_TXN_REQ: {
        Shale__TxnRequest *x = (Shale__TxnRequest *)r->msg;
        uint32_t slot;
        int writes;
        rv = wire_txn_check(x, (uint32_t)s->cfg.max_key, (uint32_t)s->cfg.max_value,
                            (uint32_t)s->cfg.slots, &slot, &writes, msg, mlen);
        if (rv == 0 && x->route != NULL && x->route->has_slot && x->route->slot != slot) {
            snprintf(msg, mlen, "route names slot %u but the transaction's keys hash to slot %u",
                     x->route->slot, slot);
            rv = SHALE_EINVAL;
        }
        break;
    }
    case SHALE_MSG_SCAN_REQ: {
        Shale__ScanRequest *q = (Shale__ScanRequest *)r->msg;
        if (q->slot >= (uint32_t)s->cfg.slots) {
            snprintf(msg, mlen, "SCAN of slot %u (this cluster has %llu slots)", q->slot,
                     (unsigned long long)s->cfg.slots);
            return SHALE_EINVAL;
        }
        if (q->route != NULL && q->route->has_slot && q->route->slot != q->slot) {
            snprintf(msg, mlen, "route names slot %u but the SCAN is of slot %u",
                     q->route->slot, q->slot);
            return SHALE_EINVAL;
        }
        if ((q->has_start_after && q->start_after.len > s->cfg.max_key) ||
            (q->has_prefix && q->prefix.len > s->cfg.max_key)) {
            snprintf(msg, mlen, "SCAN start_after or prefix exceeds the %llu-byte key limit",
                     (unsigned long long)s->cfg.max_key);
            return SHALE_ETOOLARGE;
        }
        break;
    }
    case SHALE_MSG_MPUT_REQ: {
        Shale__MPutRequest *m = (Shale__MPutRequest *)r->msg;
        if (m->n_items == 0) {
            snprintf(msg, mlen, "MPUT with no items");
            return SHALE_EINVAL;
        }
        if (m->n_items > SHALE_MAX_BATCH_KEYS) {
            snprintf(msg, mlen, "MPUT of %zu items (at most %d per request)",
                     m->n_items, SHALE_MAX_BATCH_KEYS);
            return SHALE_ETOOLARGE;
        }
        for (size_t i = 0; i < m->n_items && rv == 0; i++) {
            if (!m->items[i]->has_value) {
                snprintf(msg, mlen, "MPUT item %zu has no value", i);
                return SHALE_EINVAL;
            }
            if ((rv = check_key(s, &m->items[i]->key, msg, mlen)) == 0)
                rv = check_value(s, &m->items[i]->value, msg, mlen);
        }
        break;
    }
    default:
        break;
    }
    return rv;
}

static const ProtobufCBinaryData *first_key(const sreq_t *r)
{
    switch (r->type) {
    case SHALE_MSG_GET_REQ: return &((Shale__GetRequest *)r->msg)->key;
    case SHALE_MSG_PUT_REQ: return &((Shale__PutRequest *)r->msg)->key;
    case SHALE_MSG_DEL_REQ: return &((Shale__DeleteRequest *)r->msg)->key;
    case SHALE_MSG_CAS_REQ: return &((Shale__CasRequest *)r->msg)->key;
    case SHALE_MSG_MGET_REQ: return &((Shale__MGetRequest *)r->msg)->keys[0];
    case SHALE_MSG_MPUT_REQ: return &((Shale__MPutRequest *)r->msg)->items[0]->key;
    case SHALE_MSG_TXN_REQ: {
        /* wire_txn_check made sure there is a key and that all share a slot. */
        const Shale__TxnRequest *x = (Shale__TxnRequest *)r->msg;
        if (x->n_compares > 0)
            return &x->compares[0]->key;
        return x->n_success > 0 ? &x->success[0]->key : &x->failure[0]->key;
    }
    default: return NULL;
    }
}

static const Shale__Route *route_of(const sreq_t *r)
{
    switch (r->type) {
    case SHALE_MSG_GET_REQ: return ((Shale__GetRequest *)r->msg)->route;
    case SHALE_MSG_PUT_REQ: return ((Shale__PutRequest *)r->msg)->route;
    case SHALE_MSG_DEL_REQ: return ((Shale__DeleteRequest *)r->msg)->route;
    case SHALE_MSG_CAS_REQ: return ((Shale__CasRequest *)r->msg)->route;
    case SHALE_MSG_MGET_REQ: return ((Shale__MGetRequest *)r->msg)->route;
    case SHALE_MSG_MPUT_REQ: return ((Shale__MPutRequest *)r->msg)->route;
    case SHALE_MSG_TXN_REQ: return ((Shale__TxnRequest *)r->msg)->route;
    case SHALE_MSG_SCAN_REQ: return ((Shale__ScanRequest *)r->msg)->route;
    case SHALE_MSG_WATCH_REQ: return ((Shale__WatchRequest *)r->msg)->route;
    default: return NULL;
    }
}

/* A data node in a cluster serves only the slots its group owns (at its
 * applied ownership epoch): every key of the request is checked. Returns 0
 * or answers the request (WRONG_GROUP carries the node's epoch). */
int dispatch_check_ownership(shaled_t *s, sreq_t *r)
{
    char msg[200];
    uint64_t epoch = 0;
    int rv;
    if (s->cfg.group == 0)
        return 0;
    if (r->type == SHALE_MSG_MGET_REQ) {
        const Shale__MGetRequest *m = (Shale__MGetRequest *)r->msg;
        rv = own_check(s, m->keys, m->n_keys, m->route, msg, sizeof(msg), &epoch);
    } else if (r->type == SHALE_MSG_MPUT_REQ) {
        const Shale__MPutRequest *m = (Shale__MPutRequest *)r->msg;
        rv = 0;
        for (size_t i = 0; i < m->n_items && rv == 0; i++)
            rv = own_check(s, &m->items[i]->key, 1, NULL, msg, sizeof(msg), &epoch);
    } else if (r->type == SHALE_MSG_SCAN_REQ) {
        const Shale__ScanRequest *q = (Shale__ScanRequest *)r->msg;
        rv = own_check_slot(s, q->slot, q->route, msg, sizeof(msg), &epoch);
    } else {
        rv = own_check(s, first_key(r), 1, route_of(r), msg, sizeof(msg), &epoch);
    }
    if (rv == 0)
        return 0;
    if (rv == SHALE_EWRONGGROUP)
        sreq_fail_epoch(r, rv, msg, epoch);
    else
        sreq_fail(r, rv, msg);
    return -1;
}

static void reply_status(shaled_t *s, sreq_t *r)
{
    Shale__StatusResponse st = SHALE__STATUS_RESPONSE__INIT;
    static const char *const roles[] = {"unavailable", "follower", "candidate", "leader"};
    int state = raft_state(&s->raft);
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&s->raft, &lid, &laddr);
    st.node_id = s->cfg.id;
    st.address = s->cfg.listen;
    st.role = (char *)(state >= 0 && state <= 3 ? roles[state] : "?");
    st.has_term = 1;
    st.term = s->raft.current_term;
    st.has_commit_index = 1;
    st.commit_index = s->raft.commit_index;
    st.has_applied_index = 1;
    st.applied_index = store_applied_index(s->store);
    st.leader = (char *)(laddr ? laddr : "");
    st.has_keys_estimate = 1;
    st.keys_estimate = store_estimate_keys(s->store);
    st.has_keys_expired = 1;
    st.keys_expired = s->expired_keys;
    st.cluster_id = s->cfg.cluster_id;
    st.has_leader_id = 1;
    st.leader_id = lid;
    st.has_last_index = 1;
    st.last_index = raft_last_index(&s->raft);
    uint64_t age = staleness_ms(s);
    st.has_staleness_ms = age != UINT64_MAX;
    st.staleness_ms = age;
    if (lid != 0 && lid != s->cfg.id) {
        const Shale__Member *m = members_find(s, lid);
        if (m != NULL)
            st.leader = m->client_addr;
    } else if (lid == s->cfg.id) {
        st.leader = s->cfg.listen;
    }
    /* Standbys report "replica" (role in the configuration, not state). */
    for (unsigned i = 0; i < s->raft.configuration.n; i++)
        if (s->raft.configuration.servers[i].id == s->cfg.id &&
            s->raft.configuration.servers[i].role != RAFT_VOTER)
            st.role = (char *)(s->raft.configuration.servers[i].role == RAFT_STANDBY
                                   ? "replica" : "spare");
    if (s->members != NULL) {
        st.n_members = s->members->n_members;
        st.members = s->members->members;
    }
    clk_view_t cv;
    if (clock_view_now(s, &cv) == 0) {
        st.has_clock_offset_us = 1;
        st.clock_offset_us = cv.offset_us;
        st.has_clock_uncertainty_us = 1;
        st.clock_uncertainty_us = cv.uncertainty_us;
        st.has_clock_sample_age_ms = 1;
        st.clock_sample_age_ms = cv.age_us / 1000;
    }
    char cwhy[256] = "";
    if (strcmp(s->cfg.mode, "data") == 0 && !raft_node_is_leader(s)) {
        clock_problem(s, cwhy, sizeof(cwhy));
        st.clock_problem = cwhy;
    }
    st.mode = s->cfg.mode;
    st.http_addr = (char *)obs_http_addr(s);
    if (strcmp(s->cfg.mode, "meta") == 0) {
        st.has_map_epoch = 1;
        st.map_epoch = s->map != NULL ? s->map->epoch : 0;
    } else if (s->cfg.group != 0) {
        st.has_group_id = 1;
        st.group_id = s->cfg.group;
        st.has_map_epoch = 1;
        st.map_epoch = s->own != NULL ? s->own->epoch : 0;
        st.has_slots_owned = 1;
        st.slots_owned = own_count(s);
    }
    sreq_reply(r, SHALE_MSG_STATUS_RESP, &st.base);
}

static int is_admin(uint16_t t)
{
    return t == SHALE_MSG_MEMBER_ADD_REQ || t == SHALE_MSG_MEMBER_REMOVE_REQ ||
           t == SHALE_MSG_LEADER_TRANSFER_REQ;
}
static int is_read(uint16_t t)
{
    return t == SHALE_MSG_GET_REQ || t == SHALE_MSG_MGET_REQ || t == SHALE_MSG_SCAN_REQ;
}
static int is_write(uint16_t t)
{
    return t == SHALE_MSG_PUT_REQ || t == SHALE_MSG_DEL_REQ ||
           t == SHALE_MSG_CAS_REQ || t == SHALE_MSG_MPUT_REQ || t == SHALE_MSG_TXN_REQ;
}

static const Shale__ReadOptions *read_opts(const sreq_t *r)
{
    if (r->type == SHALE_MSG_GET_REQ)
        return ((Shale__GetRequest *)r->msg)->read;
    if (r->type == SHALE_MSG_SCAN_REQ)
        return ((Shale__ScanRequest *)r->msg)->read;
    return ((Shale__MGetRequest *)r->msg)->read;
}

void dispatch_frame(shaled_t *s, conn_t *c, uint16_t type, uint64_t id,
                    const uint8_t *payload, size_t len)
{
    sreq_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        conn_send_error(c, id, SHALE_ENOMEM, NULL);
        conn_request_done(c);
        return;
    }
    q_init(&r->link);
    r->conn = c;
    r->id = id;
    r->type = type;
    r->received_us = shaled_now_us();
    char msg[STORE_ERRLEN + 64];

    if (!is_read(type) && !is_write(type) && !is_admin(type) &&
        type != SHALE_MSG_STATUS_REQ && type != SHALE_MSG_CLOCK_REQ &&
        type != SHALE_MSG_SNAP_FETCH_REQ &&
        type != SHALE_MSG_MAP_GET_REQ && type != SHALE_MSG_MAP_CAS_REQ &&
        type != SHALE_MSG_USER_CHANGE_REQ && type != SHALE_MSG_USER_LIST_REQ &&
        type != SHALE_MSG_MIG_EXPORT_REQ && type != SHALE_MSG_MIG_IMPORT_REQ &&
        type != SHALE_MSG_MIG_PUSH_REQ && type != SHALE_MSG_WATCH_REQ &&
        type != SHALE_MSG_CHECK_REQ) {
        snprintf(msg, sizeof(msg), "unexpected message type %u (%s)", type,
                 frame_type_name(type));
        sreq_fail(r, SHALE_EPROTO, msg);
        return;
    }
    r->msg = wire_unpack(type, payload, len);
    if (r->msg == NULL) {
        snprintf(msg, sizeof(msg), "malformed %s message", frame_type_name(type));
        sreq_fail(r, SHALE_EINVAL, msg);
        return;
    }
    const Shale__Route *rt = route_of(r);
    if (rt != NULL && rt->has_trace_id)
        r->trace = rt->trace_id;
    if (authn_check(s, r) != 0)
        return; /* --auth: not this user's to send (answered) */
    if (s->stopping) {
        sreq_fail(r, SHALE_EUNAVAILABLE, "node is shutting down");
        return;
    }
    if (type == SHALE_MSG_STATUS_REQ) {
        reply_status(s, r);
        return;
    }
    if (type == SHALE_MSG_CLOCK_REQ) {
        clock_handle_req(s, r);
        return;
    }
    if (s->storage_failed) {
        snprintf(msg, sizeof(msg), "storage failed: %s", s->storage_err);
        sreq_fail(r, SHALE_ESTORAGE, msg);
        return;
    }
    if (type == SHALE_MSG_SNAP_FETCH_REQ) {
        snapx_serve(s, r); /* any member can serve its state */
        return;
    }
    if (is_admin(type)) {
        if (!raft_node_is_leader(s))
            sreq_fail(r, SHALE_ENOTLEADER, "membership changes go to the leader");
        else
            admin_start(s, r);
        return;
    }
    int meta = strcmp(s->cfg.mode, "meta") == 0;
    if (type == SHALE_MSG_MAP_GET_REQ || type == SHALE_MSG_MAP_CAS_REQ) {
        if (!meta)
            sreq_fail(r, SHALE_EINVAL, "not a meta node: cluster map requests go to the "
                      "meta group (shaled --mode meta)");
        else if (type == SHALE_MSG_MAP_GET_REQ)
            meta_get(s, r);
        else if (!raft_node_is_leader(s))
            sreq_fail(r, SHALE_ENOTLEADER, "map changes go to the meta leader");
        else
            meta_cas(s, r);
        return;
    }
    if (type == SHALE_MSG_USER_LIST_REQ || type == SHALE_MSG_USER_CHANGE_REQ) {
        if (!meta)
            sreq_fail(r, SHALE_EINVAL, "not a meta node: user requests go to the meta group "
                      "(shaled --mode meta)");
        else if (type == SHALE_MSG_USER_LIST_REQ)
            users_list(s, r);
        else if (!raft_node_is_leader(s))
            sreq_fail(r, SHALE_ENOTLEADER, "user changes go to the meta leader");
        else
            users_change(s, r);
        return;
    }
    if (meta) {
        sreq_fail(r, SHALE_EINVAL, "this is a meta node: send data requests to a router "
                  "(shale-router) or a shard group");
        return;
    }
    if (type == SHALE_MSG_MIG_EXPORT_REQ || type == SHALE_MSG_MIG_IMPORT_REQ ||
        type == SHALE_MSG_MIG_PUSH_REQ) {
        if (s->cfg.group == 0)
            sreq_fail(r, SHALE_EINVAL, "not a cluster data node: slot migrations need "
                      "shaled --group/--meta");
        else if (type == SHALE_MSG_MIG_EXPORT_REQ)
            mig_export(s, r); /* any member of the source group */
        else if (type == SHALE_MSG_MIG_PUSH_REQ)
            own_push(s, r); /* any member: the leader proposes the record */
        else if (!raft_node_is_leader(s))
            sreq_fail(r, SHALE_ENOTLEADER, "imports go to the leader");
        else
            mig_import(s, r);
        return;
    }
    if (type == SHALE_MSG_CHECK_REQ) {
        check_request(s, r); /* start: the leader; result: any member */
        return;
    }
    if (type == SHALE_MSG_WATCH_REQ) {
        watch_request(s, r); /* any member: it serves what it applied */
        return;
    }
    int rv = validate(s, r, msg, sizeof(msg));
    if (rv != 0) {
        sreq_fail(r, rv, msg);
        return;
    }
    if (type == SHALE_MSG_SCAN_REQ) {
        r->slot = (uint16_t)((Shale__ScanRequest *)r->msg)->slot;
    } else {
        const ProtobufCBinaryData *k = first_key(r);
        r->slot = (uint16_t)shale_key_slot(k->data, k->len, (uint32_t)s->cfg.slots);
    }
    r->has_slot = 1;
    if (dispatch_check_ownership(s, r) != 0)
        return;

    if (is_read(type)) {
        const Shale__ReadOptions *ro = read_opts(r);
        int stale = ro != NULL && ro->has_consistency &&
                    ro->consistency == SHALE__CONSISTENCY__STALE;
        if (stale) {
            /* Any member answers if it can prove its state is no older
             * than the bound: it has applied an entry the leader stamped
             * at most max_staleness_ms ago (docs/consistency.md). Leader
             * ticks keep that stamp fresh while the group is healthy. */
            uint64_t age = staleness_ms(s);
            uint64_t bound = ro->has_max_staleness_ms && ro->max_staleness_ms > 0
                                 ? ro->max_staleness_ms : UINT64_MAX;
            if (age != UINT64_MAX && bound != UINT64_MAX) {
                /* The age on the leader's clock: the local age corrected
                 * by the measured offset and its uncertainty; refused when
                 * the offset is unknown or over --max-clock-offset-ms
                 * (clock_ping.c, docs/consistency.md "Clocks"). */
                char cwhy[256];
                uint64_t cage = clock_stale_check(s, s->applied_leader_ms, cwhy, sizeof(cwhy));
                if (cage == UINT64_MAX) {
                    snprintf(msg, sizeof(msg), "this node cannot bound its staleness: %.150s; "
                             "retry at another member or the leader", cwhy);
                    sreq_fail(r, SHALE_ESTALE, msg);
                    return;
                }
                age = cage;
            }
            if (age == UINT64_MAX ||
                (bound != UINT64_MAX && age > bound)) {
                if (age == UINT64_MAX)
                    snprintf(msg, sizeof(msg), "this node has not applied a leader "
                             "entry since it started; its staleness is unknown");
                else
                    snprintf(msg, sizeof(msg), "this node's state may be %llu ms old, "
                             "over the %llu ms bound", (unsigned long long)age,
                             (unsigned long long)bound);
                sreq_fail(r, SHALE_ESTALE, msg);
                return;
            }
            reads_serve(s, r);
            return;
        }
        if (reads_broken_local(s)) { /* TEST ONLY: the broken build */
            reads_serve(s, r);
            return;
        }
        if (!raft_node_is_leader(s)) {
            sreq_fail(r, SHALE_ENOTLEADER, "not the leader");
            return;
        }
        reads_enqueue(s, r);
        return;
    }
    if (!raft_node_is_leader(s)) {
        sreq_fail(r, SHALE_ENOTLEADER, "not the leader");
        return;
    }
    if (s->npending >= s->cfg.max_pending) {
        sreq_fail(r, SHALE_EOVERLOAD, "too many writes queued; back off and retry");
        return;
    }
    propose_enqueue(s, r);
}
