/* Linearizable reads: every read that arrives while one leadership check is
 * in flight waits for the next one; one raft_barrier confirms leadership for
 * the whole batch (DESIGN §2).
 *
 * Rules:
 *  - A read is answered from local storage only after a barrier proposed
 *    after the read arrived has been applied: then this node was leader when
 *    the read arrived and has applied every write acknowledged before it.
 *  - At most one barrier is in flight; it is proposed from the loop's check
 *    phase, never from a Raft callback.
 *  - Barriers go through the Raft guard (rg_barrier): its callback runs
 *    exactly once, from the check phase, and a barrier whose leadership is
 *    gone fails instead of hanging (libraft #344/#435, docs/raft-safety.md). */
#include <stdlib.h>
#include <string.h>

#include "errors_wire.h"
#include "keyhash.h"
#include "log.h"
#include "server.h"
#include "wire.h"

struct rd_barrier {
    qnode_t reads;
    shaled_t *s;
};

/* The deliberately broken read path of --test-broken-reads (a test-only
 * flag: the fault harness must report it INVALID, docs/jepsen.md "The
 * broken build"). It is the classic stale-read bug, a leader lease that
 * never expires:
 *  - a node that has been the leader answers LINEARIZABLE reads from its
 *    local state at once, with no barrier, and keeps doing so after it
 *    stepped down, until it learns of another leader;
 *  - so a leader cut off from its peers (but not from the routers) keeps
 *    serving its frozen state while the majority elects a new leader and
 *    acknowledges writes it never sees.
 * libraft's own check (a leader steps down after an election timeout
 * without hearing from a quorum) would otherwise end the bug within a
 * second; "until it learns of another leader" is what a leader without
 * that check, or with a lease but no clock bound, does. */
int reads_broken_local(shaled_t *s)
{
    if (!s->cfg.test_broken_reads || !s->raft_inited || s->raft_closed)
        return 0;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&s->raft, &lid, &laddr);
    if (raft_node_is_leader(s))
        s->broken_lease = 1;
    else if (lid != 0 && lid != s->cfg.id)
        s->broken_lease = 0;
    return s->broken_lease;
}

void reads_enqueue(shaled_t *s, sreq_t *r)
{
    q_push(&s->reads_waiting, &r->link);
}

static void fail_queue(qnode_t *q, int code, const char *msg)
{
    while (!q_empty(q)) {
        sreq_t *r = q_data(q->next, sreq_t, link);
        q_remove(&r->link);
        sreq_fail(r, code, msg);
    }
}

void reads_fail_all(shaled_t *s, int code, const char *msg)
{
    fail_queue(&s->reads_waiting, code, msg);
}

static void fill_kv(Shale__KeyValue *kv, const ProtobufCBinaryData *key,
                    const store_value_t *v)
{
    shale__key_value__init(kv);
    kv->key = *key;
    kv->has_found = 1;
    kv->found = v->found;
    kv->has_version = v->found;
    kv->version = v->version;
    kv->has_value = v->found;
    kv->value.data = v->value;
    kv->value.len = v->len;
}

/* One page of one slot (docs/protocol.md, "Scans"), read at this node's
 * applied state: after the read-index barrier for a linearizable scan,
 * directly for STALE. The page also stops before the frame limit. */
static void scan_serve(shaled_t *s, sreq_t *r)
{
    char err[STORE_ERRLEN];
    Shale__ScanRequest *q = (Shale__ScanRequest *)r->msg;
    uint32_t limit = wire_scan_limit(q->has_limit ? q->limit : 0);
    size_t max_bytes = SHALE_SCAN_MAX_BYTES;
    /* Room for the framing of each item under the frame limit. */
    size_t room = s->cfg.max_frame > 64u * 1024 + 32u * limit
                      ? (size_t)s->cfg.max_frame - 64u * 1024 - 32u * limit : 1;
    if (room < max_bytes)
        max_bytes = room;
    int keys_only = q->has_keys_only && q->keys_only;
    store_scan_page_t page;
    int rv = store_scan(s->store, r->slot, q->has_start_after ? q->start_after.data : NULL,
                        q->has_start_after ? q->start_after.len : 0,
                        q->has_prefix ? q->prefix.data : NULL, q->has_prefix ? q->prefix.len : 0,
                        limit, max_bytes, keys_only, &page, err);
    if (rv != 0) {
        sreq_fail(r, rv, err);
        return;
    }
    Shale__KeyValue *kvs = calloc(page.n ? page.n : 1, sizeof(*kvs));
    Shale__KeyValue **ptrs = calloc(page.n ? page.n : 1, sizeof(*ptrs));
    if (kvs == NULL || ptrs == NULL) {
        free(kvs);
        free(ptrs);
        store_scan_free(&page);
        sreq_fail(r, SHALE_ENOMEM, "out of memory answering a SCAN");
        return;
    }
    for (size_t i = 0; i < page.n; i++) {
        shale__key_value__init(&kvs[i]);
        kvs[i].key.data = page.items[i].key;
        kvs[i].key.len = page.items[i].klen;
        kvs[i].has_found = 1;
        kvs[i].found = 1;
        kvs[i].has_version = 1;
        kvs[i].version = page.items[i].version;
        kvs[i].has_value = !keys_only;
        kvs[i].value.data = page.items[i].value;
        kvs[i].value.len = page.items[i].vlen;
        ptrs[i] = &kvs[i];
    }
    Shale__ScanResponse resp = SHALE__SCAN_RESPONSE__INIT;
    resp.n_items = page.n;
    resp.items = ptrs;
    resp.more = page.more;
    resp.has_slots = 1;
    resp.slots = (uint32_t)s->cfg.slots;
    sreq_reply(r, SHALE_MSG_SCAN_RESP, &resp.base);
    free(kvs);
    free(ptrs);
    store_scan_free(&page);
}

void reads_serve(shaled_t *s, sreq_t *r)
{
    char err[STORE_ERRLEN];
    if (r->type == SHALE_MSG_GET_REQ) {
        Shale__GetRequest *g = (Shale__GetRequest *)r->msg;
        store_value_t v = {0};
        int rv = store_get(s->store, r->slot, g->key.data, g->key.len, &v, err);
        if (rv != 0) {
            sreq_fail(r, rv, err);
            return;
        }
        Shale__GetResponse resp = SHALE__GET_RESPONSE__INIT;
        resp.found = v.found;
        resp.has_value = v.found;
        resp.value.data = v.value;
        resp.value.len = v.len;
        resp.has_version = v.found;
        resp.version = v.version;
        if (v.found && v.expires_at != 0) {
            /* Left on this member's log clock (not expired: > 0). */
            uint64_t clock = store_clock(s->store);
            resp.has_expires_in_ms = 1;
            resp.expires_in_ms = v.expires_at > clock ? v.expires_at - clock : 1;
        }
        sreq_reply(r, SHALE_MSG_GET_RESP, &resp.base);
        free(v.value);
        return;
    }
    if (r->type == SHALE_MSG_SCAN_REQ) {
        scan_serve(s, r);
        return;
    }
    Shale__MGetRequest *m = (Shale__MGetRequest *)r->msg;
    Shale__KeyValue *kvs = calloc(m->n_keys, sizeof(*kvs));
    Shale__KeyValue **ptrs = calloc(m->n_keys, sizeof(*ptrs));
    store_value_t *vals = calloc(m->n_keys, sizeof(*vals));
    Shale__Error *errs = calloc(m->n_keys, sizeof(*errs));
    if (kvs == NULL || ptrs == NULL || vals == NULL || errs == NULL) {
        free(kvs);
        free(ptrs);
        free(vals);
        free(errs);
        sreq_fail(r, SHALE_ENOMEM, "out of memory reading keys");
        return;
    }
    size_t total = 0, n_read = 0;
    for (size_t i = 0; i < m->n_keys; i++) {
        uint16_t slot = (uint16_t)shale_key_slot(m->keys[i].data, m->keys[i].len,
                                                 (uint32_t)s->cfg.slots);
        int rv = store_get(s->store, slot, m->keys[i].data, m->keys[i].len,
                           &vals[i], err);
        n_read = i + 1;
        fill_kv(&kvs[i], &m->keys[i], &vals[i]);
        if (rv != 0) {
            shale__error__init(&errs[i]);
            errs[i].code = (Shale__ErrorCode)shale_error_to_wire(rv);
            kvs[i].error = &errs[i];
        }
        ptrs[i] = &kvs[i];
        /* Stop reading as soon as the answer cannot fit in one frame. */
        total += m->keys[i].len + vals[i].len + 24;
        if (total > s->cfg.max_frame)
            break;
    }
    if (total > s->cfg.max_frame) {
        for (size_t i = 0; i < n_read; i++)
            free(vals[i].value);
        free(kvs);
        free(ptrs);
        free(vals);
        free(errs);
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "MGET answer exceeds the %llu-byte frame limit; ask for fewer keys",
                 (unsigned long long)s->cfg.max_frame);
        sreq_fail(r, SHALE_ETOOLARGE, msg);
        return;
    }
    Shale__MGetResponse resp = SHALE__MGET_RESPONSE__INIT;
    resp.n_items = m->n_keys;
    resp.items = ptrs;
    size_t n = m->n_keys;
    sreq_reply(r, SHALE_MSG_MGET_RESP, &resp.base);
    for (size_t i = 0; i < n; i++)
        free(vals[i].value);
    free(kvs);
    free(ptrs);
    free(vals);
    free(errs);
}

static void barrier_cb(void *data, int status)
{
    struct rd_barrier *b = data;
    shaled_t *s = b->s;
    if (s->barrier == b)
        s->barrier = NULL;
    if (status != 0) {
        fail_queue(&b->reads, SHALE_ENOTLEADER,
                   "leadership could not be confirmed for this read");
    } else {
        while (!q_empty(&b->reads)) {
            sreq_t *r = q_data(b->reads.next, sreq_t, link);
            q_remove(&r->link);
            /* Again after the barrier: a fence or a flip applied while the
             * read waited means another group may have accepted writes. */
            if (dispatch_check_ownership(s, r) != 0)
                continue;
            reads_serve(s, r);
        }
    }
    free(b);
}

void reads_flush(shaled_t *s)
{
    if (s->barrier != NULL || q_empty(&s->reads_waiting))
        return;
    if (s->stopping || !raft_node_is_leader(s)) {
        reads_fail_all(s, s->stopping ? SHALE_EUNAVAILABLE : SHALE_ENOTLEADER,
                       s->stopping ? "node is shutting down" : "not the leader");
        return;
    }
    struct rd_barrier *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        reads_fail_all(s, SHALE_ENOMEM, "out of memory");
        return;
    }
    b->s = s;
    q_init(&b->reads);
    /* Move every waiting read into this batch. */
    b->reads.next = s->reads_waiting.next;
    b->reads.prev = s->reads_waiting.prev;
    b->reads.next->prev = &b->reads;
    b->reads.prev->next = &b->reads;
    q_init(&s->reads_waiting);
    int rv = rg_barrier(&s->guard, b, barrier_cb);
    if (rv != 0) {
        fail_queue(&b->reads, rv == RAFT_NOTLEADER ? SHALE_ENOTLEADER : SHALE_EUNAVAILABLE,
                   raft_strerror(rv));
        free(b);
        return;
    }
    s->barrier = b;
}
