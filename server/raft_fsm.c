/* The Raft state machine of a shard replica: committed entries -> RocksDB.
 *
 * Entry payload layout (what raft stores; FACTS: libraft 0.15 silently
 * loses a restarted log whose entries are not multiples of 8 bytes):
 *     [magic "SHC1":4][protobuf length:4 BE][shale.Command][zero pad to 8]
 *
 * Rules:
 *  - apply() learns its index as raft.last_applied + 1 (libraft passes
 *    none) and applies the whole entry in one store_apply batch that also
 *    records that index, so a replay after restart is a no-op.
 *  - A storage error stops this node (shaled_storage_failed) and refuses
 *    every later entry: skipping one would silently diverge the replica.
 *    The failed entry stays in the Raft log and is re-applied on restart.
 *  - The Raft snapshot is a 16-byte descriptor (magic, applied index); the
 *    data stays in RocksDB, made durable (WAL fsync) before the descriptor
 *    lets libraft truncate the log. Moving RocksDB state to a lagging
 *    follower out of band is the replicated group's job.
 *  - Never calls back into Raft (no raft_apply/barrier from here). */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "keyhash.h"
#include "log.h"
#include "server.h"

#define CMD_MAGIC 0x53484331u  /* "SHC1" */
#define SNAP_MAGIC 0x53485331u /* "SHS1" */

int raft_cmd_encode(const Shale__Command *cmd, struct raft_buffer *out)
{
    size_t plen = protobuf_c_message_get_packed_size(&cmd->base);
    size_t total = (8 + plen + 7) & ~(size_t)7;
    uint8_t *p = raft_malloc(total);
    if (p == NULL)
        return SHALE_ENOMEM;
    uint32_t magic = htonl(CMD_MAGIC), len = htonl((uint32_t)plen);
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
    if (magic != CMD_MAGIC || (size_t)len > buf->len - 8)
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
                              .key = p->key.data, .klen = p->key.len,
                              .value = p->value.data, .vlen = p->value.len};
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

static size_t mutation_nops(const Shale__Mutation *m)
{
    if (m->op_case == SHALE__MUTATION__OP_MPUT)
        return m->mput->n_items;
    return m->op_case == SHALE__MUTATION__OP__NOT_SET ? 0 : 1;
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
    size_t nreq = cmd->n_mutations, nops = 0;
    for (size_t i = 0; i < nreq; i++)
        nops += mutation_nops(cmd->mutations[i]);
    store_request_t *reqs = calloc(nreq ? nreq : 1, sizeof(*reqs));
    store_op_t *ops = calloc(nops ? nops : 1, sizeof(*ops));
    store_result_t *res = calloc(nops ? nops : 1, sizeof(*res));
    int rv = 0, skipped = 0;
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
        at += k;
    }
    if (cmd->has_expire_sessions_before_ms && nreq == 0) {
        uint64_t expired = 0;
        rv = store_expire_sessions(s->store, index, cmd->expire_sessions_before_ms,
                                   &expired, err);
        if (rv == 0 && expired > 0)
            log_info("expired idle client sessions", " count=%llu",
                     (unsigned long long)expired);
    } else if (nreq == 0 && cmd->members != NULL) {
        rv = members_set(s, index, cmd->members, err);
        if (rv == 0)
            log_info("member table changed", " index=%llu members=%zu",
                     (unsigned long long)index, cmd->members->n_members);
    } else if (nreq == 0) {
        rv = store_apply_noop(s->store, index, err);
    } else {
        rv = store_apply(s->store, index, cmd->timestamp_ms, reqs, nreq,
                         &skipped, err);
    }
    if (rv != 0) {
        shaled_storage_failed(s, err);
        rv = RAFT_IOERR;
        goto out;
    }
    s->applied_entries++;
    s->applied_mutations += nreq;
    /* Freshness for STALE reads: this node now holds everything the
     * proposing leader had committed when it stamped this entry. */
    if (cmd->timestamp_ms > s->applied_leader_ms)
        s->applied_leader_ms = cmd->timestamp_ms;
    if (!skipped && cmd->has_proposer_id && cmd->proposer_id == s->cfg.id &&
        cmd->has_proposer_boot && cmd->proposer_boot == s->boot_nonce)
        propose_deliver(s, cmd->proposal_seq, reqs, nreq, cmd);
out:
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
    /* The descriptor lets libraft drop log entries: they must be durable in
     * RocksDB first. */
    if (store_sync(s->store, err) != 0) {
        log_error("cannot sync storage for a snapshot", " err=\"%s\"", err);
        return RAFT_IOERR;
    }
    struct raft_buffer *b = raft_malloc(sizeof(*b));
    uint8_t *p = raft_malloc(16);
    if (b == NULL || p == NULL) {
        raft_free(b);
        raft_free(p);
        return RAFT_NOMEM;
    }
    uint32_t magic = htonl(SNAP_MAGIC), ver = htonl(1);
    uint64_t idx = store_applied_index(s->store);
    memcpy(p, &magic, 4);
    memcpy(p + 4, &ver, 4);
    for (int i = 0; i < 8; i++)
        p[8 + i] = (uint8_t)(idx >> (56 - 8 * i));
    b->base = p;
    b->len = 16;
    *bufs = b;
    *n_bufs = 1;
    log_info("raft snapshot taken", " applied=%llu", (unsigned long long)idx);
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

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    shaled_t *s = fsm->data;
    const uint8_t *p = buf->base;
    uint32_t magic;
    if (buf->len != 16)
        return RAFT_MALFORMED;
    memcpy(&magic, p, 4);
    if (ntohl(magic) != SNAP_MAGIC)
        return RAFT_MALFORMED;
    uint64_t idx = 0;
    for (int i = 0; i < 8; i++)
        idx = (idx << 8) | p[8 + i];
    uint64_t have = store_applied_index(s->store);
    if (have < idx) {
        log_error("raft snapshot is ahead of local storage: the data for it "
                  "must be restored from a checkpoint",
                  " snapshot=%llu storage=%llu", (unsigned long long)idx,
                  (unsigned long long)have);
        return RAFT_CORRUPT;
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
