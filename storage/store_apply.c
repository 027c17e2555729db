/* The mutation apply path of the store (store.h, "Apply"): one Raft
 * entry's requests into one RocksDB write batch with the applied index —
 * validation, versions (the version bound and the blind-PUT rule), per-op
 * apply, the session record of each request (store_session.c) and
 * transactions (store_txn.c), the changelog of slots in migration
 * (store_changelog.c) and the expiry index (store_ttl.c).
 *
 * It never writes a mutation outside the batch that records its Raft
 * index, never moves the cached applied index unless that batch was
 * written, and never reads a member's own clock (now_ms comes from the
 * entry).
 */
#include "store_int.h"
/* Read key as the batch would leave it on top of the DB. *val is NULL when
 * absent, else freed by the caller with rocksdb_free. */
int st_batch_get(apply_ctx_t *c, const void *key, size_t klen, char **val,
                 size_t *vlen)
{
    char *rerr = NULL;

    *val = rocksdb_writebatch_wi_get_from_batch_and_db(
        c->wb, c->s->db, c->s->ropts, key, klen, vlen, &rerr);
    if (rerr != NULL) {
        *val = NULL;
        return st_rdb_fail(c->err, rerr, "apply: read");
    }
    return SHALE_OK;
}

/* The version rule: max(old + 1, index << 16 | n). n is capped at 0xFFFF so it
 * never spills into the index bits; past that the old + 1 term still keeps
 * each key's versions growing. */
static uint64_t next_version(const apply_ctx_t *c, uint64_t old)
{
    uint64_t n = c->nop < 0xFFFFu ? c->nop : 0xFFFFu;
    uint64_t floor = (c->index << 16) | n;

    return old + 1 > floor ? old + 1 : floor;
}

/* Raise the version bound to v (in memory now, persisted with the batch being
 * built: vbound_dirty). A bound only ever rises, so a batch that fails leaves
 * a larger bound in memory than on disk: still a bound. */
void st_vbound_raise(store_t *s, uint64_t v)
{
    if (v > s->vbound) {
        s->vbound = v;
        s->vbound_dirty = 1;
    }
}

/* Whether a PUT executed as op c->nop (already counted) may take the floor
 * as its version without reading the old one. Rules:
 *  - every stored version not covered by vbound was given by the floor of an
 *    earlier op: an earlier entry (index << 16 is above all of those) or an
 *    earlier op of this entry (a smaller n, while n is not capped);
 *  - so with n below the cap and the floor above vbound, the old version is
 *    below the floor and max(old + 1, floor) is the floor. */
static int put_is_blind(const apply_ctx_t *c)
{
    uint64_t floor = (c->index << 16) | c->nop;

    return c->nop < 0xFFFFu && floor > c->s->vbound;
}

void st_vbound_row(store_t *s, uint8_t *v)
{
    put_be64(v, s->vbound);
}

static int op_valid(const store_op_t *op)
{
    if (op->slot >= STORE_MAX_SLOTS || (op->key == NULL && op->klen > 0)) {
        return 0;
    }
    switch (op->type) {
    case STORE_OP_PUT:
        return op->value != NULL || op->vlen == 0;
    case STORE_OP_DEL:
        return 1;
    case STORE_OP_CAS:
        if (!op->cas_delete && op->value == NULL && op->vlen > 0) {
            return 0;
        }
        switch (op->cas_kind) {
        case STORE_CAS_ABSENT:
        case STORE_CAS_VERSION:
            return 1;
        case STORE_CAS_VALUE:
            return op->expect != NULL || op->expect_len == 0;
        }
        return 0;
    }
    return 0;
}

static int request_valid(const store_request_t *r)
{
    if (r->txn != NULL) {
        return st_txn_valid(r);
    }
    if (r->nops == 0 || r->nops > UINT32_MAX || r->ops == NULL ||
        r->results == NULL) {
        return 0;
    }
    for (size_t i = 0; i < r->nops; i++) {
        if (!op_valid(&r->ops[i])) {
            return 0;
        }
    }
    return 1;
}

/* Execute one op against the batch (reads see earlier ops of the entry).
 * TTL rules (docs/storage.md, "Expiry"):
 *  - a row expired at the log clock (expires_at <= s->clock) is absent for
 *    the op (DEL existed = 0, CAS ABSENT matches) but its version still
 *    counts for the version rule, so versions only grow;
 *  - a PUT with ttl_ms stores expires_at = log clock + ttl_ms and an expiry
 *    index entry; a PUT without one (and a CAS write) stores no TTL: it
 *    clears a previous TTL (Redis semantics);
 *  - the old row's index entry is deleted whenever the old row was read; a
 *    blind PUT (not read) leaves it, and the EXPIRE entry that lists it
 *    later drops it without touching the newer row (expires_at differs). */
int st_apply_op(apply_ctx_t *c, const store_op_t *op, store_result_t *res)
{
    store_t *s = c->s;
    char *cur = NULL;
    size_t dlen = 0, curlen = 0;
    uint64_t oldver = 0, newver, new_exp = 0;
    uint8_t head[TTL_HEAD_LEN];
    size_t hlen;
    row_t old = {0};
    int present = 0, found = 0, do_put = 0, do_del = 0;
    int rc;

    c->nop++;
    rc = st_data_key(s, op->slot, op->key, op->klen, &dlen, c->err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (op->type == STORE_OP_PUT && op->ttl_ms > 0) {
        new_exp = st_add_sat(s->clock, op->ttl_ms);
    }
    if (op->type == STORE_OP_PUT && put_is_blind(c)) {
        /* A PUT does not report `existed` (store.h), and its version is the
         * floor: nothing to read. */
        newver = next_version(c, 0);
        res->code = SHALE_OK;
        res->existed = 0;
        res->version = 0;
        do_put = 1;
        goto write;
    }
    rc = st_batch_get(c, s->kbuf, dlen, &cur, &curlen);
    if (rc != SHALE_OK) {
        return rc;
    }
    present = cur != NULL;
    if (present) {
        if (st_row_decode(cur, curlen, &old) != 0) {
            rocksdb_free(cur);
            set_err(c->err,
                    "apply: stored value has %zu bytes, shorter than "
                    "its header",
                    curlen);
            return SHALE_ECORRUPT;
        }
        oldver = old.version;
        found = !st_row_expired(&old, s->clock);
    }
    newver = next_version(c, oldver);
    if (newver != next_version(c, 0)) {
        st_vbound_raise(s, newver); /* the old + 1 term: above the floor */
    }
    res->code = SHALE_OK;
    res->existed = op->type == STORE_OP_PUT ? 0 : found;
    res->version = 0;

    switch (op->type) {
    case STORE_OP_PUT:
        do_put = 1;
        break;
    case STORE_OP_DEL:
        do_del = 1;
        break;
    case STORE_OP_CAS: {
        int match = 0;
        switch (op->cas_kind) {
        case STORE_CAS_ABSENT:
            match = !found;
            break;
        case STORE_CAS_VERSION:
            match = found && oldver == op->expect_version;
            break;
        case STORE_CAS_VALUE:
            match = found && old.vlen == op->expect_len &&
                    (op->expect_len == 0 || memcmp(old.val, op->expect, op->expect_len) == 0);
            break;
        }
        if (!match) {
            res->code = SHALE_ECASFAILED;
            res->version = found ? oldver : 0;
        } else if (op->cas_delete) {
            do_del = 1;
        } else {
            do_put = 1;
        }
        break;
    }
    }
    rocksdb_free(cur);
    /* The old row's index entry goes unless the new row keeps it. */
    if (present && old.expires_at != 0 && (do_del || (do_put && old.expires_at != new_exp))) {
        rc = st_exp_index(c, 0, old.expires_at, op->slot, op->key, op->klen);
        if (rc != SHALE_OK) {
            return rc;
        }
    }

write:
    if (do_put) {
        const char *parts[2];
        size_t sizes[2];
        const char *kp = (const char *)s->kbuf;

        hlen = st_row_head(head, newver, new_exp);
        parts[0] = (const char *)head;
        sizes[0] = hlen;
        parts[1] = op->vlen > 0 ? (const char *)op->value : "";
        sizes[1] = op->vlen;
        /* putv: the value goes into the batch once, without a joined copy. */
        rocksdb_writebatch_wi_putv(c->wb, 1, &kp, &dlen, 2, parts, sizes);
        res->version = newver;
        if (store_changelog_on(s, op->slot)) {
            rc = st_changelog_put(c, op->slot, STORE_REC_PUT, s->kbuf + 2, dlen - 2, head, hlen,
                               op->value, op->vlen);
            if (rc != SHALE_OK) {
                return rc;
            }
        }
        if (new_exp != 0) {
            return st_exp_index(c, 1, new_exp, op->slot, op->key, op->klen);
        }
    } else if (do_del) {
        if (present) {
            rocksdb_writebatch_wi_delete(c->wb, (const char *)s->kbuf, dlen);
            if (store_changelog_on(s, op->slot)) {
                return st_changelog_put(c, op->slot, STORE_REC_DEL, s->kbuf + 2, dlen - 2, NULL, 0,
                                     NULL, 0);
            }
        }
        res->version = found ? oldver : 0;
    }
    return SHALE_OK;
}

/* Apply one client request. Rules:
 *  - a malformed request gets code SHALE_EINVAL and changes nothing, so one
 *    bad request cannot wedge the log for the others (every replica decides
 *    the same);
 *  - client_id 0: ops run, no session state;
 *  - a stored result for (client, seq), in the DB or earlier in this batch,
 *    makes it a duplicate: results come from the record, nothing is written;
 *  - seq at least WINDOW behind the client's max_seq with no record: the
 *    outcome is unknowable, SHALE_ESESSION, nothing is written;
 *  - otherwise ops run, the result record is written, the header gets
 *    max_seq = max(max_seq, seq) and last_ms = max(last_ms, now_ms) (a new
 *    leader's clock may be behind; activity time must not go back);
 *  - when max_seq crosses a multiple of PRUNE_EVERY, records with
 *    seq < min(ack_floor, max_seq - WINDOW) are deleted: a retry of such a seq
 *    is then too old and gets SHALE_ESESSION, never a second apply. */
static int apply_request(apply_ctx_t *c, store_request_t *r)
{
    uint8_t hkey[HEADER_KEY_LEN], rkey[RESULT_KEY_LEN], hval[HEADER_VAL_LEN];
    uint64_t max_seq = 0, last_ms = 0, new_max, new_last;
    uint16_t slot;
    char *val = NULL;
    size_t vlen = 0;
    int rc, have_header = 0;

    r->duplicate = 0;
    r->code = SHALE_OK;
    if (!request_valid(r)) {
        r->code = SHALE_EINVAL;
        return SHALE_OK;
    }
    if (r->txn != NULL) {
        r->txn->results = NULL;
        r->txn->nresults = 0;
        r->txn->succeeded = 0;
    }
    if (r->client_id == 0 && r->txn != NULL) {
        return st_apply_txn(c, r->txn, &r->code);
    }
    if (r->client_id == 0) {
        for (size_t i = 0; i < r->nops; i++) {
            rc = st_apply_op(c, &r->ops[i], &r->results[i]);
            if (rc != SHALE_OK) {
                return rc;
            }
        }
        return SHALE_OK;
    }

    slot = r->txn != NULL ? r->txn->slot : r->ops[0].slot;
    st_header_key(hkey, slot, r->client_id);
    rc = st_batch_get(c, hkey, HEADER_KEY_LEN, &val, &vlen);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (val != NULL) {
        if (vlen != HEADER_VAL_LEN) {
            rocksdb_free(val);
            set_err(c->err, "apply: session header of client %llu has %zu "
                            "bytes",
                    (unsigned long long)r->client_id, vlen);
            return SHALE_ECORRUPT;
        }
        max_seq = get_be64(val);
        last_ms = get_be64(val + 8);
        rocksdb_free(val);
        have_header = 1;
    }
    /* A result is written with a header whose max_seq is at least its seq,
     * in one batch; headers and results leave together (expiry, slot delete)
     * and a migration copies them from the fenced, frozen source. So with a
     * header present, a seq above its max_seq has no result to find. */
    st_result_key(rkey, slot, r->client_id, r->seq);
    if (!have_header || r->seq <= max_seq) {
        rc = st_batch_get(c, rkey, RESULT_KEY_LEN, &val, &vlen);
        if (rc != SHALE_OK) {
            return rc;
        }
        if (val != NULL) {
            if (st_is_txn_record(val, vlen) != (r->txn != NULL)) {
                /* Same (client, seq) but another kind of request: not a
                 * retry (as st_decode_results does for another op count). */
                r->duplicate = 1;
                r->code = SHALE_EINVAL;
                rc = SHALE_OK;
            } else if (r->txn != NULL) {
                rc = st_decode_txn_results(c, r, val, vlen);
            } else {
                rc = st_decode_results(c, r, val, vlen);
            }
            rocksdb_free(val);
            return rc;
        }
    }
    if (max_seq >= STORE_SESSION_WINDOW &&
        r->seq <= max_seq - STORE_SESSION_WINDOW) {
        r->code = SHALE_ESESSION;
        return SHALE_OK;
    }

    if (r->txn != NULL) {
        rc = st_apply_txn(c, r->txn, &r->code);
        if (rc != SHALE_OK || r->code != SHALE_OK) {
            return rc; /* TOO_LARGE: nothing applied, nothing recorded */
        }
        rc = st_encode_txn_results(c, r->txn, rkey);
    } else {
        for (size_t i = 0; i < r->nops; i++) {
            rc = st_apply_op(c, &r->ops[i], &r->results[i]);
            if (rc != SHALE_OK) {
                return rc;
            }
        }
        rc = st_encode_results(c, r, rkey);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    new_max = r->seq > max_seq ? r->seq : max_seq;
    new_last = c->now_ms > last_ms ? c->now_ms : last_ms;
    put_be64(hval, new_max);
    put_be64(hval + 8, new_last);
    rocksdb_writebatch_wi_put(c->wb, (const char *)hkey, HEADER_KEY_LEN,
                              (const char *)hval, HEADER_VAL_LEN);

    if (have_header && new_max > STORE_SESSION_WINDOW) {
        rc = st_prune_session(c, slot, r->client_id, max_seq, new_max, r->ack_floor);
    }
    return rc;
}

void st_applied_value(uint8_t *v, uint64_t index)
{
    put_be64(v, index);
}

int store_apply(store_t *s, uint64_t index, uint64_t now_ms,
                store_request_t *reqs, size_t nreqs, int *skipped, char *err)
{
    apply_ctx_t c;
    uint8_t av[8], vb[8], cb[8];
    char *rerr = NULL;
    int rc = SHALE_OK;

    if (skipped != NULL) {
        *skipped = 0;
    }
    if (s == NULL || (reqs == NULL && nreqs > 0)) {
        set_err(err, "store_apply: NULL argument");
        return SHALE_EINVAL;
    }
    if (index <= s->applied) {
        if (skipped != NULL) {
            *skipped = 1;
        }
        return SHALE_OK;
    }
    store_clock_advance(s, now_ms);
    c.s = s;
    c.index = index;
    c.now_ms = now_ms;
    c.nop = 0;
    c.err = err;
    /* overwrite_keys = 1: reads of a key written twice in the batch see the
     * last write. */
    c.wb = rocksdb_writebatch_wi_create(0, 1);
    if (c.wb == NULL) {
        set_err(err, "store_apply: out of memory");
        return SHALE_ENOMEM;
    }
    for (size_t i = 0; i < nreqs && rc == SHALE_OK; i++) {
        rc = apply_request(&c, &reqs[i]);
    }
    if (rc == SHALE_OK) {
        st_applied_value(av, index);
        rocksdb_writebatch_wi_put(c.wb, APPLIED_KEY, sizeof(APPLIED_KEY),
                                  (const char *)av, sizeof(av));
        if (s->vbound_dirty) {
            st_vbound_row(s, vb);
            rocksdb_writebatch_wi_put(c.wb, VBOUND_KEY, sizeof(VBOUND_KEY),
                                      (const char *)vb, sizeof(vb));
        }
        if (s->clock_dirty) {
            put_be64(cb, s->clock);
            rocksdb_writebatch_wi_put(c.wb, CLOCK_KEY, sizeof(CLOCK_KEY), (const char *)cb,
                                      sizeof(cb));
        }
        rocksdb_write_writebatch_wi(s->db, s->wopts, c.wb, &rerr);
        if (rerr != NULL) {
            rc = st_rdb_fail(err, rerr, "apply: write batch");
        }
    }
    rocksdb_writebatch_wi_destroy(c.wb);
    if (rc == SHALE_OK) {
        s->applied = index;
        s->vbound_dirty = 0;
        s->clock_dirty = 0;
    }
    return rc;
}

/* Write a plain batch (plus the applied index when index != 0) and move the
 * cached index only on success. Takes ownership of wb. */
int st_write_plain(store_t *s, rocksdb_writebatch_t *wb, uint64_t index,
                   const char *what, char *err)
{
    uint8_t av[8], vb[8], cb[8];
    char *rerr = NULL;

    if (index != 0) {
        st_applied_value(av, index);
        rocksdb_writebatch_put(wb, APPLIED_KEY, sizeof(APPLIED_KEY),
                               (const char *)av, sizeof(av));
    }
    if (s->vbound_dirty) {
        st_vbound_row(s, vb);
        rocksdb_writebatch_put(wb, VBOUND_KEY, sizeof(VBOUND_KEY), (const char *)vb,
                               sizeof(vb));
    }
    if (s->clock_dirty) {
        put_be64(cb, s->clock);
        rocksdb_writebatch_put(wb, CLOCK_KEY, sizeof(CLOCK_KEY), (const char *)cb, sizeof(cb));
    }
    rocksdb_write(s->db, s->wopts, wb, &rerr);
    rocksdb_writebatch_destroy(wb);
    if (rerr != NULL) {
        return st_rdb_fail(err, rerr, what);
    }
    if (index != 0) {
        s->applied = index;
    }
    s->vbound_dirty = 0;
    s->clock_dirty = 0;
    return SHALE_OK;
}

int store_apply_noop(store_t *s, uint64_t index, char *err)
{
    rocksdb_writebatch_t *wb;

    if (s == NULL) {
        set_err(err, "store_apply_noop: NULL store");
        return SHALE_EINVAL;
    }
    if (index <= s->applied) {
        return SHALE_OK;
    }
    wb = rocksdb_writebatch_create();
    if (wb == NULL) {
        set_err(err, "store_apply_noop: out of memory");
        return SHALE_ENOMEM;
    }
    return st_write_plain(s, wb, index, "apply noop", err);
}
