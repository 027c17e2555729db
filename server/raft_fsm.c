/* The Raft state machine of a shard replica: committed entries -> RocksDB.
 *
 * Entry payload layout (what raft stores; FACTS: libraft 0.15 silently
 * loses a restarted log whose entries are not multiples of 8 bytes):
 *     [magic "SHC1":4][protobuf length:4 BE][shale.Command][zero pad to 8]
 * The magic is "SHC2" for a command an older build would misapply by
 * ignoring fields it does not know (a put with ttl_ms, an expire list, a
 * txn with ADD / APPEND ops, which keep a key's TTL):
 * such a build refuses the entry as malformed and stops, instead of
 * storing the key without its TTL (docs/storage.md, "Expiry"). This build
 * reads both.
 *
 * Rules:
 *  - apply() learns its index as raft.last_applied + 1 (libraft passes
 *    none) and applies the whole entry in one store_apply batch that also
 *    records that index, so a replay after restart is a no-op.
 *  - A storage error stops this node (shaled_storage_failed) and refuses
 *    every later entry: skipping one would silently diverge the replica.
 *    The failed entry stays in the Raft log and is re-applied on restart.
 *  - The Raft snapshot is a small descriptor, not the data: the applied
 *    index, this node's id, client address and cluster id (snapx_desc_t;
 *    layout in snapshot_xfer.h; v1 descriptors of earlier builds, index
 *    only, still restore). The data stays in RocksDB, made durable (WAL
 *    fsync) before the descriptor lets libraft truncate the log. A member
 *    that restores a descriptor ahead of its own state fetches a RocksDB
 *    checkpoint from the node it names (or another member) and swaps its
 *    store before returning (fsm_restore, snapshot_install.c).
 *  - Never calls back into Raft (no raft_apply/barrier from here). */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "keyhash.h"
#include "log.h"
#include "server.h"
#include "snapshot_xfer.h"

#define CMD_MAGIC 0x53484331u  /* "SHC1" */
#define CMD_MAGIC2 0x53484332u /* "SHC2": uses TTL (see above) */

/* Whether cmd needs the SHC2 framing. */
static int cmd_uses_ttl(const Shale__Command *cmd)
{
    if (cmd->expire != NULL)
        return 1;
    if (cmd->import != NULL && cmd->import->has_carries_ttl && cmd->import->carries_ttl)
        return 1;
    for (size_t i = 0; i < cmd->n_mutations; i++) {
        const Shale__Mutation *m = cmd->mutations[i];
        if (m->op_case == SHALE__MUTATION__OP_PUT && m->put->has_ttl_ms)
            return 1;
        if (m->op_case == SHALE__MUTATION__OP_TXN) {
            /* ADD / APPEND keep a key's TTL; an older build knows neither. */
            const Shale__TxnRequest *t = m->txn;
            for (size_t j = 0; j < t->n_success + t->n_failure; j++) {
                const Shale__TxnOp *o = j < t->n_success ? t->success[j]
                                                         : t->failure[j - t->n_success];
                if (o->type == SHALE__TXN_OP_TYPE__TXN_ADD ||
                    o->type == SHALE__TXN_OP_TYPE__TXN_APPEND ||
                    o->type == SHALE__TXN_OP_TYPE__TXN_EXPIRE || o->has_ttl_ms ||
                    (o->has_keep_ttl && o->keep_ttl))
                    return 1;
            }
        }
    }
    return 0;
}

int raft_cmd_encode(const Shale__Command *cmd, struct raft_buffer *out)
{
    size_t plen = protobuf_c_message_get_packed_size(&cmd->base);
    size_t total = (8 + plen + 7) & ~(size_t)7;
    uint8_t *p = raft_malloc(total);
    if (p == NULL)
        return SHALE_ENOMEM;
    uint32_t magic = htonl(cmd_uses_ttl(cmd) ? CMD_MAGIC2 : CMD_MAGIC), len = htonl((uint32_t)plen);
    memcpy(p, &magic, 4);
    memcpy(p + 4, &len, 4);
    protobuf_c_message_pack(&cmd->base, p + 8);
    memset(p + 8 + plen, 0, total - 8 - plen);
    out->base = p;
    out->len = total;
    return 0;
}

Shale__Command *raft_cmd_decode(const struct raft_buffer *buf)
{
    if (buf->len < 8 || buf->len % 8 != 0)
        return NULL;
    uint32_t magic, len;
    memcpy(&magic, buf->base, 4);
    memcpy(&len, (const uint8_t *)buf->base + 4, 4);
    magic = ntohl(magic);
    len = ntohl(len);
    if ((magic != CMD_MAGIC && magic != CMD_MAGIC2) || (size_t)len > buf->len - 8)
        return NULL;
    return shale__command__unpack(NULL, len, (const uint8_t *)buf->base + 8);
}

/* Translate one Mutation into store ops. ops has room for the mutation's
 * op count. Returns the number of ops written. */
static size_t mutation_ops(shaled_t *s, const Shale__Mutation *m,
                           store_op_t *ops, store_request_t *req)
{
    uint32_t S = (uint32_t)s->cfg.slots;
    const Shale__Session *ses = NULL;
    size_t n = 0;
    memset(req, 0, sizeof(*req));
    switch (m->op_case) {
    case SHALE__MUTATION__OP_PUT: {
        const Shale__PutRequest *p = m->put;
        ops[0] = (store_op_t){.type = STORE_OP_PUT,
                              .slot = (uint16_t)shale_key_slot(p->key.data, p->key.len, S),
                              .key = p->key.data,
                              .klen = p->key.len,
                              .value = p->value.data,
                              .vlen = p->value.len,
                              .ttl_ms = p->has_ttl_ms ? p->ttl_ms : 0};
        ses = p->session;
        n = 1;
        break;
    }
    case SHALE__MUTATION__OP_DEL: {
        const Shale__DeleteRequest *d = m->del;
        ops[0] = (store_op_t){.type = STORE_OP_DEL,
                              .slot = (uint16_t)shale_key_slot(d->key.data, d->key.len, S),
                              .key = d->key.data, .klen = d->key.len};
        ses = d->session;
        n = 1;
        break;
    }
    case SHALE__MUTATION__OP_CAS: {
        const Shale__CasRequest *c = m->cas;
        store_op_t *o = &ops[0];
        *o = (store_op_t){.type = STORE_OP_CAS,
                          .slot = (uint16_t)shale_key_slot(c->key.data, c->key.len, S),
                          .key = c->key.data, .klen = c->key.len,
                          .value = c->new_value.data, .vlen = c->new_value.len,
                          .cas_delete = c->has_delete_on_match && c->delete_on_match};
        if (c->has_expect_version) {
            o->cas_kind = STORE_CAS_VERSION;
            o->expect_version = c->expect_version;
        } else if (c->has_expect_value) {
            o->cas_kind = STORE_CAS_VALUE;
            o->expect = c->expect_value.data;
            o->expect_len = c->expect_value.len;
        } else {
            o->cas_kind = STORE_CAS_ABSENT;
        }
        ses = c->session;
        n = 1;
        break;
    }
    case SHALE__MUTATION__OP_TXN:
        /* Built by txn_build (req->txn); no store ops. */
        ses = m->txn->session;
        break;
    case SHALE__MUTATION__OP_MPUT: {
        const Shale__MPutRequest *mp = m->mput;
        for (size_t i = 0; i < mp->n_items; i++) {
            const Shale__KeyValue *kv = mp->items[i];
            ops[i] = (store_op_t){.type = STORE_OP_PUT,
                                  .slot = (uint16_t)shale_key_slot(kv->key.data, kv->key.len, S),
                                  .key = kv->key.data, .klen = kv->key.len,
                                  .value = kv->value.data, .vlen = kv->value.len};
        }
        ses = mp->session;
        n = mp->n_items;
        break;
    }
    default:
        break;
    }
    if (ses != NULL) {
        req->client_id = ses->client_id;
        req->seq = ses->seq;
        req->ack_floor = ses->has_ack_floor ? ses->ack_floor : 0;
    }
    req->nops = n;
    req->ops = ops;
    return n;
}

/* The store form of a TXN mutation: t and its arrays (malloc'd, released
 * by txn_free) point into the unpacked request. The slot is the first
 * key's: the leader refused the txn unless all keys share it, and apply
 * refuses it again (EINVAL) if they do not, so a malformed entry cannot
 * write outside its slot. */
static int txn_build(shaled_t *s, const Shale__TxnRequest *x, store_txn_t *t, int *bad)
{
    uint32_t S = (uint32_t)s->cfg.slots;
    size_t nc = x->n_compares, ns = x->n_success, nf = x->n_failure;
    store_txn_compare_t *cmps = calloc(nc ? nc : 1, sizeof(*cmps));
    store_txn_op_t *ops = calloc(ns + nf ? ns + nf : 1, sizeof(*ops));
    memset(t, 0, sizeof(*t));
    *bad = 0;
    if (cmps == NULL || ops == NULL) {
        free(cmps);
        free(ops);
        return SHALE_ENOMEM;
    }
    int have = 0;
    uint32_t slot = 0;
#define TXN_SLOT(k)                                                                                \
    do {                                                                                           \
        uint32_t sl_ = shale_key_slot((k).data, (k).len, S);                                       \
        if (!have) {                                                                               \
            slot = sl_;                                                                            \
            have = 1;                                                                              \
        } else if (sl_ != slot) {                                                                  \
            *bad = 1;                                                                              \
        }                                                                                          \
    } while (0)
    for (size_t i = 0; i < nc; i++) {
        const Shale__TxnCompare *c = x->compares[i];
        TXN_SLOT(c->key);
        cmps[i] = (store_txn_compare_t){.key = c->key.data, .klen = c->key.len,
                                        .target = (store_txn_target_t)c->target,
                                        .cmp = (store_txn_cmp_t)c->op,
                                        .value = c->value.data, .vlen = c->value.len,
                                        .version = c->version, .exists = c->exists};
    }
    for (size_t i = 0; i < ns + nf; i++) {
        const Shale__TxnOp *o = i < ns ? x->success[i] : x->failure[i - ns];
        TXN_SLOT(o->key);
        ops[i] = (store_txn_op_t){.type = (store_txn_op_type_t)o->type, .key = o->key.data,
                                  .klen = o->key.len, .value = o->value.data,
                                  .vlen = o->value.len, .delta = o->delta,
                                  .ttl_ms = o->has_ttl_ms ? o->ttl_ms : 0,
                                  .keep_ttl = o->has_keep_ttl && o->keep_ttl};
    }
#undef TXN_SLOT
    t->slot = (uint16_t)slot;
    t->ncompares = nc;
    t->compares = cmps;
    t->nsuccess = ns;
    t->success = ops;
    t->nfailure = nf;
    t->failure = ops + ns;
    return 0;
}

static void txn_free(store_txn_t *t)
{
    store_txn_clear(t);
    free((void *)t->compares);
    free((void *)t->success);
    memset(t, 0, sizeof(*t));
}

static size_t mutation_nops(const Shale__Mutation *m)
{
    if (m->op_case == SHALE__MUTATION__OP_MPUT)
        return m->mput->n_items;
    return m->op_case == SHALE__MUTATION__OP__NOT_SET ? 0 : 1;
}

/* The keys an expiry entry deleted (store_apply_expire), in order: they
 * become expiry events for watchers (watch.c, before watch_applied of the
 * same index) and are counted. Owns nothing: d is freed by the caller. */
static void expired_publish(shaled_t *s, uint64_t index, const store_expired_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        watch_note_expired(s, index, d[i].key, d[i].klen, d[i].version);
    s->expired_keys += n;
}

/* An EXPIRE entry (Command.expire): delete the listed keys that are still
 * due (store_apply_expire decides, from replicated state only). */
static int expire_apply(shaled_t *s, uint64_t index, const Shale__Command *cmd, char *err)
{
    const Shale__ExpireList *x = cmd->expire;
    store_expire_key_t *keys = calloc(x->n_keys ? x->n_keys : 1, sizeof(*keys));
    store_expired_t *del = NULL;
    size_t ndel = 0;
    if (keys == NULL) {
        snprintf(err, STORE_ERRLEN, "out of memory applying an expiry entry");
        return SHALE_ENOMEM;
    }
    for (size_t i = 0; i < x->n_keys; i++) {
        const Shale__ExpireKey *k = x->keys[i];
        /* A slot out of range is skipped by the store (the same everywhere). */
        keys[i].slot = k->slot < STORE_MAX_SLOTS ? (uint16_t)k->slot : (uint16_t)STORE_MAX_SLOTS;
        keys[i].key = k->key.data;
        keys[i].klen = k->key.len;
        keys[i].expires_at = k->expires_at_ms;
    }
    int rv =
        store_apply_expire(s->store, index, cmd->timestamp_ms, keys, x->n_keys, &del, &ndel, err);
    free(keys);
    if (rv == 0 && ndel > 0)
        expired_publish(s, index, del, ndel);
    store_expired_free(del, ndel);
    return rv;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
    shaled_t *s = fsm->data;
    *result = NULL;
    if (s->storage_failed)
        return RAFT_IOERR;
    uint64_t index = s->raft.last_applied + 1;
    Shale__Command *cmd = raft_cmd_decode(buf);
    if (cmd == NULL) {
        char msg[128];
        snprintf(msg, sizeof(msg), "raft entry %llu is not a valid command",
                 (unsigned long long)index);
        shaled_storage_failed(s, msg);
        return RAFT_MALFORMED;
    }
    /* The log clock (TTL) moves with every entry, before anything of it is
     * applied or read (store.h, "Expiry"). */
    store_clock_advance(s->store, cmd->timestamp_ms);
    size_t nreq = cmd->n_mutations, nops = 0;
    for (size_t i = 0; i < nreq; i++)
        nops += mutation_nops(cmd->mutations[i]);
    store_request_t *reqs = calloc(nreq ? nreq : 1, sizeof(*reqs));
    store_op_t *ops = calloc(nops ? nops : 1, sizeof(*ops));
    store_result_t *res = calloc(nops ? nops : 1, sizeof(*res));
    store_txn_t *txns = NULL; /* per request, for TXN mutations */
    int rv = 0, skipped = 0;
    int *refused = NULL; /* per request: refused by ownership at apply time */
    char err[STORE_ERRLEN] = "";
    if (reqs == NULL || ops == NULL || res == NULL) {
        shaled_storage_failed(s, "out of memory applying an entry");
        rv = RAFT_NOMEM;
        goto out;
    }
    size_t at = 0;
    for (size_t i = 0; i < nreq; i++) {
        size_t k = mutation_ops(s, cmd->mutations[i], ops + at, &reqs[i]);
        reqs[i].results = res + at;
        uint16_t txn_slot = 0;
        int is_txn = cmd->mutations[i]->op_case == SHALE__MUTATION__OP_TXN;
        if (is_txn) {
            int bad = 0;
            if (txns == NULL)
                txns = calloc(nreq, sizeof(*txns));
            if (txns == NULL || txn_build(s, cmd->mutations[i]->txn, &txns[i], &bad) != 0) {
                shaled_storage_failed(s, "out of memory applying an entry");
                rv = RAFT_NOMEM;
                goto out;
            }
            reqs[i].txn = bad ? NULL : &txns[i]; /* spans slots: EINVAL (nops 0) */
            txn_slot = txns[i].slot;
        }
        /* Ownership at apply time, decided by the records applied before
         * this entry (the same on every member): a write proposed before a
         * fence or a flip and committed after it is refused, so nothing is
         * applied to a slot this group no longer serves. */
        if (s->cfg.group != 0 && (k > 0 || reqs[i].txn != NULL)) {
            int code = 0;
            if (reqs[i].txn != NULL)
                code = own_apply_check(s, &txn_slot, 1);
            for (size_t j = 0; j < k && code == 0; j++)
                code = own_apply_check(s, &ops[at + j].slot, 1);
            if (code != 0) {
                if (refused == NULL)
                    refused = calloc(nreq, sizeof(*refused));
                if (refused == NULL) {
                    shaled_storage_failed(s, "out of memory applying an entry");
                    rv = RAFT_NOMEM;
                    goto out;
                }
                refused[i] = code;
                reqs[i].nops = 0; /* store_apply skips it (EINVAL) */
                reqs[i].txn = NULL;
            }
        }
        at += k;
    }
    if (nreq == 0 && cmd->expire != NULL) {
        rv = expire_apply(s, index, cmd, err);
    } else if (cmd->has_expire_sessions_before_ms && nreq == 0) {
        uint64_t expired = 0;
        rv = store_expire_sessions(s->store, index, cmd->expire_sessions_before_ms,
                                   &expired, err);
        if (rv == 0 && expired > 0)
            log_info("expired idle client sessions", " count=%llu",
                     (unsigned long long)expired);
    } else if (nreq == 0 && cmd->map_cas != NULL) {
        rv = meta_apply(s, index, cmd, err);
    } else if (nreq == 0 && cmd->user_change != NULL) {
        rv = users_apply(s, index, cmd, err);
    } else if (nreq == 0 && cmd->ownership != NULL) {
        uint8_t *before = watch_own_before(s);
        rv = own_apply(s, index, cmd->ownership, err);
        if (rv == 0)
            watch_own_after(s, index, before); /* frees before */
        else
            free(before);
    } else if (nreq == 0 && cmd->members != NULL) {
        rv = members_set(s, index, cmd->members, err);
        if (rv == 0)
            log_info("member table changed", " index=%llu members=%zu",
                     (unsigned long long)index, cmd->members->n_members);
    } else if (nreq == 0 && cmd->import != NULL) {
        rv = mig_apply_import(s, index, cmd, err);
    } else if (nreq == 0 && cmd->check != NULL) {
        /* No state change; the member sums its rows at exactly this index
         * (check.c), unless the store is already past it (a replay). */
        int replay = index <= store_applied_index(s->store);
        rv = store_apply_noop(s->store, index, err);
        if (rv == 0)
            check_applied(s, index, cmd, replay);
    } else if (nreq == 0) {
        rv = store_apply_noop(s->store, index, err);
    } else {
        rv = store_apply(s->store, index, cmd->timestamp_ms, reqs, nreq,
                         &skipped, err);
        for (size_t i = 0; refused != NULL && i < nreq; i++)
            if (refused[i] != 0)
                reqs[i].code = refused[i];
        if (rv == 0 && !skipped)
            watch_note_entry(s, index, reqs, nreq); /* the watch cache (watch.c) */
    }
    if (rv != 0) {
        shaled_storage_failed(s, err);
        rv = RAFT_IOERR;
        goto out;
    }
    s->applied_entries++;
    s->applied_mutations += nreq;
    watch_applied(s, index);
    /* Freshness for STALE reads: this node now holds everything the
     * proposing leader had committed when it stamped this entry. */
    if (cmd->timestamp_ms > s->applied_leader_ms)
        s->applied_leader_ms = cmd->timestamp_ms;
    if (!skipped && cmd->has_proposer_id && cmd->proposer_id == s->cfg.id &&
        cmd->has_proposer_boot && cmd->proposer_boot == s->boot_nonce)
        propose_deliver(s, cmd->proposal_seq, reqs, nreq, cmd);
out:
    for (size_t i = 0; txns != NULL && i < nreq; i++)
        txn_free(&txns[i]);
    free(txns);
    free(refused);
    free(reqs);
    free(ops);
    free(res);
    shale__command__free_unpacked(cmd, NULL);
    return rv;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    shaled_t *s = fsm->data;
    char err[STORE_ERRLEN];
    if (s->storage_failed)
        return RAFT_IOERR;
    uint64_t t0 = shaled_now_us();
    /* The descriptor lets libraft drop log entries: they must be durable in
     * RocksDB first. */
    if (store_sync(s->store, err) != 0) {
        log_error("cannot sync storage for a snapshot", " err=\"%s\"", err);
        return RAFT_IOERR;
    }
    snapx_desc_t d = {.version = 2, .index = store_applied_index(s->store),
                          .node_id = s->cfg.id};
    snprintf(d.addr, sizeof(d.addr), "%s", s->cfg.listen);
    snprintf(d.cluster_id, sizeof(d.cluster_id), "%s", s->cfg.cluster_id);
    struct raft_buffer *b = raft_malloc(sizeof(*b));
    if (b == NULL || snapx_desc_encode(&d, b) != 0) {
        raft_free(b);
        return RAFT_NOMEM;
    }
    *bufs = b;
    *n_bufs = 1;
    uint64_t t1 = shaled_now_us();
    obs_snapshot(s, 0, t1 > t0 ? t1 - t0 : 0);
    log_info("raft snapshot taken", " applied=%llu", (unsigned long long)d.index);
    return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                                 unsigned *n_bufs)
{
    (void)fsm;
    for (unsigned i = 0; i < *n_bufs; i++)
        raft_free((*bufs)[i].base);
    raft_free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

/* Rules:
 *  - libraft calls this at start (the stored snapshot) and when a follower
 *    installs one from the leader; either way it then sets last_applied to
 *    the descriptor's index and applies the entries after it.
 *  - Storage at or past the index (a restart, or a follower that already
 *    has the data): nothing to do.
 *  - Storage behind it: fetch a checkpoint that has applied at least the
 *    index and swap it in (snapx_install). This is synchronous — libraft's
 *    restore contract is that the state is restored when it returns — so
 *    the loop is blocked for the transfer; the node has nothing correct to
 *    serve meanwhile, and the leader re-sends the snapshot if its install
 *    timeout passes (the retry then finds storage caught up).
 *  - The checkpoint may be at a LATER index than the descriptor (the source
 *    kept applying). That is safe: the source only applied committed
 *    entries, and committed entries are the same on every member (Log
 *    Matching, Leader Completeness), so the store now holds exactly what
 *    applying the log up to the checkpoint index would have produced. The
 *    entries between the two indexes still arrive from the leader and are
 *    skipped as replays (store_apply and the meta/no-op/expiry variants do
 *    nothing for an index <= the applied index). The restart check in
 *    raft_node.c allows storage ahead of the log in exactly that state
 *    (snapx_store_ahead_ok).
 *  - Any failure returns an error to libraft with the old store intact:
 *    never a crash, never a half-swapped store. The buffer is ours only on
 *    success. */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    shaled_t *s = fsm->data;
    snapx_desc_t d;
    char err[1200];
    if (s->storage_failed)
        return RAFT_IOERR;
    if (snapx_desc_decode(buf->base, buf->len, &d) != 0) {
        log_error("raft snapshot descriptor is malformed", " len=%zu", buf->len);
        return RAFT_MALFORMED;
    }
    if (d.cluster_id[0] != '\0' && strcmp(d.cluster_id, s->cfg.cluster_id) != 0) {
        log_error("raft snapshot comes from another cluster", " cluster=%s ours=%s",
                  d.cluster_id, s->cfg.cluster_id);
        return RAFT_MALFORMED;
    }
    uint64_t have = store_applied_index(s->store);
    if (have < d.index) {
        log_info("raft snapshot is ahead of local storage: fetching a checkpoint",
                 " snapshot=%llu storage=%llu from_node=%llu from=%s",
                 (unsigned long long)d.index, (unsigned long long)have,
                 (unsigned long long)d.node_id, d.addr[0] ? d.addr : "(members)");
        uint64_t t0 = shaled_now_us();
        if (snapx_install(s, d.index, d.addr, d.cluster_id, err, sizeof(err)) != 0) {
            log_error("cannot restore a raft snapshot", " snapshot=%llu err=\"%s\"",
                      (unsigned long long)d.index, err);
            return RAFT_IOERR;
        }
        /* The loop was blocked for the transfer, so libuv's cached time and
         * this follower's election timer are stale: the next tick would
         * start an election right away (disrupting a healthy leader) though
         * the leader was heard just before the restore. Restart the timer,
         * as receiving the snapshot did (public field, as raft_guard.c). */
        uint64_t t1 = shaled_now_us();
        obs_snapshot(s, 1, t1 > t0 ? t1 - t0 : 0);
        uv_update_time(s->loop);
        s->raft.election_timer_start = s->io.time(&s->io);
        watch_restored(s); /* the state jumped: the watch cache restarts here */
    }
    raft_free(buf->base);
    return 0;
}

void raft_fsm_init(shaled_t *s)
{
    memset(&s->fsm, 0, sizeof(s->fsm));
    s->fsm.version = 2;
    s->fsm.data = s;
    s->fsm.apply = fsm_apply;
    s->fsm.snapshot = fsm_snapshot;
    s->fsm.snapshot_finalize = fsm_snapshot_finalize;
    s->fsm.restore = fsm_restore;
}
