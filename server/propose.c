/* Group commit: client mutations queue here and ride many-per-entry on Raft.
 *
 * Rules:
 *  - At the end of each loop turn (propose_flush) pending mutations are cut
 *    into entries of at most batch_max, while fewer than inflight_entries
 *    entries are in flight. Mutations arriving while entries are in flight
 *    wait and so form bigger batches: the fsync cost is shared.
 *  - An entry names its proposer (node id + a random nonce drawn at each
 *    process start) and a proposal_seq unique within that boot. The FSM hands results to the batch with that
 *    seq (propose_deliver); an entry replayed after a restart or proposed by
 *    another leader matches no batch, so no request is answered twice.
 *  - A batch whose raft_apply callback fires before its entry was applied
 *    here has an unknown outcome (libraft: a failed apply does not mean the
 *    entry was not committed). Its requests get NOT_LEADER / UNAVAILABLE and
 *    the client retries with the same (client_id, seq): exactly once.
 *  - raft_apply is never called from a Raft callback (FACTS: that crashed
 *    libraft 0.15); only from the flush in the loop's check phase. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "server.h"
#include "wire.h"

#define BATCH_BYTES_MAX (16u << 20)
#define SESSION_SWEEP_MS 60000

struct batch {
    struct raft_apply req;
    qnode_t link;
    shaled_t *s;
    uint64_t seq;
    sreq_t **reqs;
    size_t n;
    int delivered;
};

void propose_enqueue(shaled_t *s, sreq_t *r)
{
    q_push(&s->pending, &r->link);
    s->npending++;
}

static void batch_free(batch_t *b)
{
    free(b->reqs);
    free(b);
}

static void fail_batch(batch_t *b, int status)
{
    int code = SHALE_EUNAVAILABLE;
    const char *msg = "write not confirmed: node shutting down; outcome unknown, "
                      "retry with the same seq";
    if (status == RAFT_LEADERSHIPLOST || status == RAFT_NOTLEADER) {
        code = SHALE_ENOTLEADER;
        msg = "leadership lost before the write was confirmed; outcome unknown, "
              "retry with the same seq";
    }
    for (size_t i = 0; i < b->n; i++)
        sreq_fail(b->reqs[i], code, msg);
    b->n = 0;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    (void)result;
    batch_t *b = req->data;
    shaled_t *s = b->s;
    q_remove(&b->link);
    s->ninflight--;
    if (!b->delivered) {
        if (status == 0)
            log_warn("entry applied without results reaching its batch",
                     " seq=%llu", (unsigned long long)b->seq);
        fail_batch(b, status != 0 ? status : RAFT_SHUTDOWN);
    }
    batch_free(b);
}

static Shale__Mutation *mutation_of(sreq_t *r, Shale__Mutation *m)
{
    shale__mutation__init(m);
    switch (r->type) {
    case SHALE_MSG_PUT_REQ:
        m->op_case = SHALE__MUTATION__OP_PUT;
        m->put = (Shale__PutRequest *)r->msg;
        break;
    case SHALE_MSG_DEL_REQ:
        m->op_case = SHALE__MUTATION__OP_DEL;
        m->del = (Shale__DeleteRequest *)r->msg;
        break;
    case SHALE_MSG_CAS_REQ:
        m->op_case = SHALE__MUTATION__OP_CAS;
        m->cas = (Shale__CasRequest *)r->msg;
        break;
    case SHALE_MSG_TXN_REQ:
        m->op_case = SHALE__MUTATION__OP_TXN;
        m->txn = (Shale__TxnRequest *)r->msg;
        break;
    default:
        m->op_case = SHALE__MUTATION__OP_MPUT;
        m->mput = (Shale__MPutRequest *)r->msg;
        break;
    }
    return m;
}

/* Propose one entry carrying cmd (whose mutations belong to reqs). Takes
 * ownership of reqs (array and requests) in every case. */
static int propose_cmd(shaled_t *s, Shale__Command *cmd, sreq_t **reqs,
                       size_t n)
{
    batch_t *b = calloc(1, sizeof(*b));
    struct raft_buffer buf;
    int rv = SHALE_ENOMEM;
    if (b == NULL)
        goto fail;
    b->s = s;
    b->reqs = reqs;
    b->n = n;
    b->seq = ++s->proposal_seq;
    b->req.data = b;
    cmd->has_proposer_id = 1;
    cmd->proposer_id = s->cfg.id;
    cmd->has_proposal_seq = 1;
    cmd->proposal_seq = b->seq;
    cmd->has_proposer_boot = 1;
    cmd->proposer_boot = s->boot_nonce;
    if (raft_cmd_encode(cmd, &buf) != 0)
        goto fail;
    rv = raft_apply(&s->raft, &b->req, &buf, 1, apply_cb);
    if (rv != 0) {
        /* libraft 0.15 keeps the buffer only when it refuses up front
         * (NOTLEADER); on a later failure it has already released it with
         * the discarded log entry, so freeing here would be a double free. */
        if (rv == RAFT_NOTLEADER)
            raft_free(buf.base);
        log_debug("raft_apply refused", " err=%s", raft_strerror(rv));
        rv = (rv == RAFT_NOTLEADER) ? SHALE_ENOTLEADER : SHALE_EUNAVAILABLE;
        goto fail;
    }
    q_push(&s->inflight, &b->link);
    s->ninflight++;
    s->last_proposal_ms = shaled_now_ms();
    return 0;
fail:
    for (size_t i = 0; i < n; i++)
        sreq_fail(reqs[i], rv, rv == SHALE_ENOTLEADER ? "not the leader" : NULL);
    free(reqs);
    free(b);
    return rv;
}

void propose_flush(shaled_t *s)
{
    while (s->npending > 0 && s->ninflight < s->cfg.inflight_entries &&
           !s->stopping && !s->storage_failed) {
        if (!raft_node_is_leader(s)) {
            propose_fail_all(s, SHALE_ENOTLEADER, "not the leader");
            return;
        }
        size_t max = s->npending < s->cfg.batch_max ? s->npending : s->cfg.batch_max;
        sreq_t **reqs = malloc(max * sizeof(*reqs));
        Shale__Mutation *muts = malloc(max * sizeof(*muts));
        Shale__Mutation **mptrs = malloc(max * sizeof(*mptrs));
        if (reqs == NULL || muts == NULL || mptrs == NULL) {
            free(reqs);
            free(muts);
            free(mptrs);
            propose_fail_all(s, SHALE_ENOMEM, "out of memory batching writes");
            return;
        }
        size_t n = 0, bytes = 0;
        while (n < max && !q_empty(&s->pending)) {
            sreq_t *r = q_data(s->pending.next, sreq_t, link);
            size_t sz = protobuf_c_message_get_packed_size(r->msg);
            if (n > 0 && bytes + sz > BATCH_BYTES_MAX)
                break;
            q_remove(&r->link);
            s->npending--;
            reqs[n] = r;
            mptrs[n] = mutation_of(r, &muts[n]);
            bytes += sz;
            n++;
        }
        Shale__Command cmd = SHALE__COMMAND__INIT;
        cmd.timestamp_ms = clock_stamp_ms(s);
        cmd.n_mutations = n;
        cmd.mutations = mptrs;
        int rv = propose_cmd(s, &cmd, reqs, n);
        free(muts);
        free(mptrs);
        if (rv != 0)
            break;
    }
}

void propose_fail_all(shaled_t *s, int code, const char *msg)
{
    while (!q_empty(&s->pending)) {
        sreq_t *r = q_data(s->pending.next, sreq_t, link);
        q_remove(&r->link);
        s->npending--;
        sreq_fail(r, code, msg);
    }
}

static void reply_mutation(shaled_t *s, sreq_t *r, store_request_t *sr)
{
    if (sr->code == SHALE_EWRONGGROUP) {
        sreq_fail_epoch(r, sr->code, "the slot left this group before the write was applied; "
                        "it was not applied", s->own != NULL ? s->own->epoch : 0);
        return;
    }
    if (sr->code == SHALE_ESLOTMOVING) {
        sreq_fail(r, sr->code, "the slot was fenced for a migration before the write was "
                  "applied; it was not applied: retry shortly");
        return;
    }
    if (sr->code == SHALE_ETOOLARGE && r->type == SHALE_MSG_TXN_REQ) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the transaction's gets would return more than %u bytes of "
                 "values; it was not applied", (unsigned)STORE_TXN_MAX_RESULT_BYTES);
        sreq_fail(r, sr->code, msg);
        return;
    }
    if (sr->code == SHALE_EINVAL && r->type == SHALE_MSG_TXN_REQ && sr->txn != NULL &&
        sr->txn->op_error != 0) {
        /* Redis's texts: the RESP port passes them on after "ERR ". */
        sreq_fail(r, sr->code,
                  sr->txn->op_error == STORE_TXN_ENOTINT   ? "value is not an integer or out of range"
                  : sr->txn->op_error == STORE_TXN_EOVERFLOW ? "increment or decrement would overflow"
                                                             : "string exceeds maximum allowed size");
        return;
    }
    if (sr->code == SHALE_EINVAL && r->type == SHALE_MSG_TXN_REQ && sr->duplicate) {
        sreq_fail(r, sr->code, "this (client_id, seq) was already used by another request");
        return;
    }
    if (sr->code != SHALE_OK) {
        sreq_fail(r, sr->code, sr->code == SHALE_ESESSION
                                   ? "retry older than the session window: "
                                     "outcome unknown"
                                   : NULL);
        return;
    }
    store_result_t *res = sr->results;
    switch (r->type) {
    case SHALE_MSG_PUT_REQ: {
        Shale__PutResponse p = SHALE__PUT_RESPONSE__INIT;
        p.version = res[0].version;
        p.has_duplicate = sr->duplicate;
        p.duplicate = sr->duplicate;
        sreq_reply(r, SHALE_MSG_PUT_RESP, &p.base);
        return;
    }
    case SHALE_MSG_DEL_REQ: {
        Shale__DeleteResponse d = SHALE__DELETE_RESPONSE__INIT;
        d.existed = res[0].existed;
        d.has_version = res[0].existed;
        d.version = res[0].version;
        d.has_duplicate = sr->duplicate;
        d.duplicate = sr->duplicate;
        sreq_reply(r, SHALE_MSG_DEL_RESP, &d.base);
        return;
    }
    case SHALE_MSG_CAS_REQ: {
        if (res[0].code == SHALE_ECASFAILED) {
            /* Report the key as it stands after this entry. */
            Shale__CasRequest *c = (Shale__CasRequest *)r->msg;
            Shale__Error e = SHALE__ERROR__INIT;
            e.code = SHALE__ERROR_CODE__CAS_FAILED;
            e.message = "compare-and-set failed";
            store_value_t v = {0};
            char err[STORE_ERRLEN];
            if (store_get(s->store, r->slot, c->key.data, c->key.len, &v, err) == 0) {
                e.has_current_exists = 1;
                e.current_exists = v.found;
                e.has_current_version = v.found;
                e.current_version = v.version;
                e.has_current_value = v.found;
                e.current_value.data = v.value;
                e.current_value.len = v.len;
            }
            size_t len;
            uint8_t *f = wire_pack(SHALE_MSG_ERROR, r->id, &e.base, UINT32_MAX, &len);
            free(v.value);
            if (f == NULL) {
                sreq_fail(r, SHALE_ECASFAILED, NULL);
                return;
            }
            conn_send(r->conn, f, len);
            r->code = SHALE_ECASFAILED;
            sreq_free(r);
            return;
        }
        Shale__CasResponse cr = SHALE__CAS_RESPONSE__INIT;
        cr.version = res[0].version;
        cr.has_duplicate = sr->duplicate;
        cr.duplicate = sr->duplicate;
        sreq_reply(r, SHALE_MSG_CAS_RESP, &cr.base);
        return;
    }
    case SHALE_MSG_MPUT_REQ: {
        Shale__MPutResponse m = SHALE__MPUT_RESPONSE__INIT;
        Shale__KeyValue *kvs = calloc(sr->nops, sizeof(*kvs));
        Shale__KeyValue **ptrs = calloc(sr->nops, sizeof(*ptrs));
        if (kvs == NULL || ptrs == NULL) {
            free(kvs);
            free(ptrs);
            sreq_fail(r, SHALE_ENOMEM, "out of memory building the response");
            return;
        }
        Shale__MPutRequest *mp = (Shale__MPutRequest *)r->msg;
        for (size_t i = 0; i < sr->nops; i++) {
            shale__key_value__init(&kvs[i]);
            kvs[i].key = mp->items[i]->key;
            kvs[i].has_version = 1;
            kvs[i].version = res[i].version;
            ptrs[i] = &kvs[i];
        }
        m.n_items = sr->nops;
        m.items = ptrs;
        m.has_duplicate = sr->duplicate;
        m.duplicate = sr->duplicate;
        sreq_reply(r, SHALE_MSG_MPUT_RESP, &m.base);
        free(kvs);
        free(ptrs);
        return;
    }
    case SHALE_MSG_TXN_REQ: {
        store_txn_t *t = sr->txn;
        if (t == NULL) {
            sreq_fail(r, SHALE_EINVAL, "malformed transaction");
            return;
        }
        Shale__TxnResponse tr = SHALE__TXN_RESPONSE__INIT;
        Shale__TxnOpResult *rs = calloc(t->nresults ? t->nresults : 1, sizeof(*rs));
        Shale__TxnOpResult **ptrs = calloc(t->nresults ? t->nresults : 1, sizeof(*ptrs));
        if (rs == NULL || ptrs == NULL) {
            free(rs);
            free(ptrs);
            sreq_fail(r, SHALE_ENOMEM, "out of memory building the response");
            return;
        }
        for (size_t i = 0; i < t->nresults; i++) {
            const store_txn_result_t *x = &t->results[i];
            shale__txn_op_result__init(&rs[i]);
            rs[i].type = (Shale__TxnOpType)x->type;
            if (x->type != STORE_TXN_PUT) {
                rs[i].has_found = 1;
                rs[i].found = x->found;
            }
            rs[i].has_version = x->type == STORE_TXN_PUT || x->found;
            if (x->type == STORE_TXN_ADD || x->type == STORE_TXN_APPEND)
                rs[i].has_found = 1;
            if (x->type == STORE_TXN_EXPIRE) {
                rs[i].has_had_ttl = 1;
                rs[i].had_ttl = x->had_ttl;
            }
            rs[i].version = x->version;
            if ((x->type == STORE_TXN_GET || x->type == STORE_TXN_ADD ||
                 x->type == STORE_TXN_APPEND) &&
                x->found) {
                rs[i].has_value = 1;
                rs[i].value.data = x->value;
                rs[i].value.len = x->vlen;
            }
            ptrs[i] = &rs[i];
        }
        tr.succeeded = t->succeeded;
        tr.n_results = t->nresults;
        tr.results = ptrs;
        tr.has_duplicate = sr->duplicate;
        tr.duplicate = sr->duplicate;
        sreq_reply(r, SHALE_MSG_TXN_RESP, &tr.base);
        free(rs);
        free(ptrs);
        return;
    }
    default:
        sreq_fail(r, SHALE_EPROTO, "not a mutation");
    }
}

void propose_deliver(shaled_t *s, uint64_t proposal_seq,
                     store_request_t *reqs, size_t n,
                     const Shale__Command *cmd)
{
    (void)cmd;
    for (qnode_t *q = s->inflight.next; q != &s->inflight; q = q->next) {
        batch_t *b = q_data(q, batch_t, link);
        if (b->seq != proposal_seq || b->delivered)
            continue;
        b->delivered = 1;
        if (b->n != n) {
            log_error("applied entry does not match its batch", " seq=%llu n=%zu want=%zu",
                      (unsigned long long)proposal_seq, n, b->n);
            fail_batch(b, RAFT_SHUTDOWN);
            return;
        }
        for (size_t i = 0; i < n; i++)
            reply_mutation(s, b->reqs[i], &reqs[i]);
        b->n = 0;
        return;
    }
}

static void session_sweep(uv_timer_t *t)
{
    shaled_t *s = t->data;
    if (s->stopping || s->storage_failed || !raft_node_is_leader(s) ||
        s->ninflight >= s->cfg.inflight_entries)
        return;
    Shale__Command cmd = SHALE__COMMAND__INIT;
    cmd.timestamp_ms = clock_stamp_ms(s);
    cmd.has_expire_sessions_before_ms = 1;
    uint64_t ttl = s->cfg.session_ttl_s * 1000;
    cmd.expire_sessions_before_ms = cmd.timestamp_ms > ttl ? cmd.timestamp_ms - ttl : 0;
    propose_cmd(s, &cmd, NULL, 0);
}

int propose_tick(shaled_t *s)
{
    if (s->stopping || s->storage_failed || !raft_node_is_leader(s) ||
        s->ninflight >= s->cfg.inflight_entries)
        return 0;
    Shale__Command cmd = SHALE__COMMAND__INIT;
    cmd.timestamp_ms = clock_stamp_ms(s);
    return propose_cmd(s, &cmd, NULL, 0);
}

int propose_members(shaled_t *s, const Shale__MemberTable *t)
{
    if (!raft_node_is_leader(s))
        return SHALE_ENOTLEADER;
    Shale__Command cmd = SHALE__COMMAND__INIT;
    cmd.timestamp_ms = clock_stamp_ms(s);
    cmd.members = (Shale__MemberTable *)t;
    return propose_cmd(s, &cmd, NULL, 0);
}

int propose_start(shaled_t *s)
{
    q_init(&s->pending);
    q_init(&s->inflight);
    /* Entries of an earlier boot carry another nonce (and the same
     * proposer id), so seqs may restart from zero. */
    s->proposal_seq = 0;
    if (uv_random(NULL, NULL, &s->boot_nonce, sizeof(s->boot_nonce), 0, NULL) != 0)
        s->boot_nonce = shaled_now_us() ^ ((uint64_t)getpid() << 40);
    uv_timer_init(s->loop, &s->session_timer);
    s->session_timer.data = s;
    int rv = uv_timer_start(&s->session_timer, session_sweep, SESSION_SWEEP_MS, SESSION_SWEEP_MS);
    return rv != 0 ? rv : expire_start(s);
}

void propose_stop(shaled_t *s)
{
    uv_timer_stop(&s->session_timer);
    if (!uv_is_closing((uv_handle_t *)&s->session_timer))
        uv_close((uv_handle_t *)&s->session_timer, NULL);
    expire_stop(s);
    propose_fail_all(s, SHALE_EUNAVAILABLE, "node is shutting down");
}
