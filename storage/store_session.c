/* Session records of the store: the exactly-once bookkeeping kept with
 * the data (docs/consistency.md, "Exactly-once retries").
 *
 * Session result record ([slot]['s'][client_id][seq] -> value), big-endian:
 *   [nops:4] then per op [-code:1][existed:1][version:8]
 * -code is the negated SHALE_* code of the op (0 = ok, 8 = CAS failed), so a
 * record is 4 + 10 * nops bytes (a transaction's record: store_txn.c).
 * Session header ([slot]['c'][client_id]): [max_seq:8][last_ms:8].
 *
 * Owns those two layouts, the pruning of acknowledged results and the
 * expiry of idle sessions. It never touches data rows and never writes
 * outside the batch of the entry that carries the request.
 */
#include "store_int.h"
void st_header_key(uint8_t *k, uint16_t slot, uint64_t client)
{
    put_be16(k, slot);
    k[2] = TAG_HEADER;
    put_be64(k + 3, client);
}

void st_result_key(uint8_t *k, uint16_t slot, uint64_t client, uint64_t seq)
{
    put_be16(k, slot);
    k[2] = TAG_RESULT;
    put_be64(k + 3, client);
    put_be64(k + 11, seq);
}

/* Fill r->results from a stored session record. */
int st_decode_results(apply_ctx_t *c, store_request_t *r, const char *val,
                      size_t vlen)
{
    const uint8_t *p = (const uint8_t *)val;
    uint32_t n;

    if (vlen < 4) {
        goto corrupt;
    }
    n = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
        ((uint32_t)p[2] << 8) | p[3];
    if (vlen != 4 + (size_t)n * RESULT_OP_LEN) {
        goto corrupt;
    }
    r->duplicate = 1;
    if (n != r->nops) {
        /* Same (client, seq) but a different request: not a retry. */
        r->code = SHALE_EINVAL;
        return SHALE_OK;
    }
    p += 4;
    for (uint32_t i = 0; i < n; i++, p += RESULT_OP_LEN) {
        r->results[i].code = -(int)p[0];
        r->results[i].existed = p[1];
        r->results[i].version = get_be64(p + 2);
    }
    return SHALE_OK;
corrupt:
    set_err(c->err, "apply: session record of client %llu seq %llu has a bad "
                    "length (%zu bytes)",
            (unsigned long long)r->client_id, (unsigned long long)r->seq, vlen);
    return SHALE_ECORRUPT;
}

int st_encode_results(apply_ctx_t *c, const store_request_t *r,
                      const uint8_t *rkey)
{
    size_t len = 4 + r->nops * RESULT_OP_LEN;
    uint8_t *buf = malloc(len), *p;

    if (buf == NULL) {
        set_err(c->err, "apply: out of memory for a session record");
        return SHALE_ENOMEM;
    }
    buf[0] = (uint8_t)(r->nops >> 24);
    buf[1] = (uint8_t)(r->nops >> 16);
    buf[2] = (uint8_t)(r->nops >> 8);
    buf[3] = (uint8_t)r->nops;
    p = buf + 4;
    for (size_t i = 0; i < r->nops; i++, p += RESULT_OP_LEN) {
        p[0] = (uint8_t)(-r->results[i].code);
        p[1] = r->results[i].existed ? 1 : 0;
        put_be64(p + 2, r->results[i].version);
    }
    rocksdb_writebatch_wi_put(c->wb, (const char *)rkey, RESULT_KEY_LEN,
                              (const char *)buf, len);
    free(buf);
    return SHALE_OK;
}

/* Delete the client's result records with seq < bound, in the batch.
 * Rules:
 *  - the scan sees the batch on top of the DB, so a record written earlier in
 *    this same entry is pruned too;
 *  - keys are collected first and deleted after the iterator is gone (the
 *    batch index must not change under a live iterator). */
static int prune_results(apply_ctx_t *c, uint16_t slot, uint64_t client,
                         uint64_t bound)
{
    uint8_t lo[RESULT_KEY_LEN], hi[RESULT_KEY_LEN], k[RESULT_KEY_LEN];
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    char *rerr = NULL;
    int rc = SHALE_OK;

    st_result_key(lo, slot, client, 0);
    st_result_key(hi, slot, client, bound);
    ro = rocksdb_readoptions_create();
    if (ro == NULL) {
        set_err(c->err, "apply: out of memory");
        return SHALE_ENOMEM;
    }
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi,
                                                RESULT_KEY_LEN);
    /* The base-delta iterator owns the base iterator. */
    it = rocksdb_writebatch_wi_create_iterator_with_base(
        c->wb, rocksdb_create_iterator(c->s->db, ro));
    for (rocksdb_iter_seek(it, (const char *)lo, RESULT_KEY_LEN);
         rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(it, &klen);

        /* The upper bound only limits the base; the batch part is checked
         * here. */
        if (klen != RESULT_KEY_LEN || memcmp(key, hi, RESULT_KEY_LEN) >= 0) {
            break;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            uint64_t *p = realloc(seqs, ncap * sizeof(*p));
            if (p == NULL) {
                set_err(c->err, "apply: out of memory while pruning");
                rc = SHALE_ENOMEM;
                break;
            }
            seqs = p;
            cap = ncap;
        }
        seqs[n++] = get_be64(key + 11);
    }
    if (rc == SHALE_OK) {
        rocksdb_iter_get_error(it, &rerr);
        if (rerr != NULL) {
            rc = st_rdb_fail(c->err, rerr, "apply: prune sessions");
        }
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    for (size_t i = 0; rc == SHALE_OK && i < n; i++) {
        st_result_key(k, slot, client, seqs[i]);
        rocksdb_writebatch_wi_delete(c->wb, (const char *)k, RESULT_KEY_LEN);
    }
    free(seqs);
    return rc;
}

/* Forget the (slot, client)'s results below min(new_max - WINDOW,
 * ack_floor), given the header's max_seq before this request (store_int.h,
 * PRUNE_EVERY: a point delete of the previous result when it fell below the
 * bound, else an occasional scan). Never deletes a result at or above the
 * bound: a retry of such a seq must find it. */
int st_prune_session(apply_ctx_t *c, uint16_t slot, uint64_t client, uint64_t old_max,
                     uint64_t new_max, uint64_t ack_floor)
{
    uint64_t bound = new_max - STORE_SESSION_WINDOW;
    uint8_t k[RESULT_KEY_LEN];

    if (ack_floor < bound) {
        bound = ack_floor;
    }
    if (bound == 0) {
        return SHALE_OK;
    }
    if (old_max < bound) {
        if (new_max / PRUNE_SCAN_EVERY != old_max / PRUNE_SCAN_EVERY) {
            return prune_results(c, slot, client, bound);
        }
        st_result_key(k, slot, client, old_max);
        rocksdb_writebatch_wi_delete(c->wb, (const char *)k, RESULT_KEY_LEN);
        return SHALE_OK;
    }
    if (new_max / PRUNE_EVERY != old_max / PRUNE_EVERY) {
        return prune_results(c, slot, client, bound);
    }
    return SHALE_OK;
}

/* Seek position [slot]['c'], the first header of a slot. */
static void seek_headers(rocksdb_iterator_t *it, uint16_t slot)
{
    uint8_t k[3];

    put_be16(k, slot);
    k[2] = TAG_HEADER;
    rocksdb_iter_seek(it, (const char *)k, sizeof(k));
}

/* Rules:
 *  - headers are visited slot by slot with seeks: within a slot the tags sort
 *    'c' < 'd' < 's', so after the headers the scan jumps to the next slot's
 *    headers and never walks user data;
 *  - an expired client's results go with one range delete per client: the
 *    batch stays small however many records a client had. */
int store_expire_sessions(store_t *s, uint64_t index, uint64_t cutoff_ms,
                          uint64_t *expired, char *err)
{
    rocksdb_writebatch_t *wb;
    rocksdb_iterator_t *it;
    uint64_t count = 0;
    char *rerr = NULL;
    int rc = SHALE_OK;

    if (expired != NULL) {
        *expired = 0;
    }
    if (s == NULL) {
        set_err(err, "store_expire_sessions: NULL store");
        return SHALE_EINVAL;
    }
    if (index <= s->applied) {
        return SHALE_OK;
    }
    wb = rocksdb_writebatch_create();
    it = rocksdb_create_iterator(s->db, s->ropts);
    if (wb == NULL || it == NULL) {
        if (wb != NULL) {
            rocksdb_writebatch_destroy(wb);
        }
        if (it != NULL) {
            rocksdb_iter_destroy(it);
        }
        set_err(err, "store_expire_sessions: out of memory");
        return SHALE_ENOMEM;
    }
    seek_headers(it, 0);
    while (rocksdb_iter_valid(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        uint16_t slot;

        if (klen < 3) {
            rocksdb_iter_next(it);
            continue;
        }
        slot = get_be16(key);
        if (slot >= STORE_MAX_SLOTS) {
            break; /* metadata */
        }
        if ((uint8_t)key[2] < TAG_HEADER) {
            seek_headers(it, slot);
            continue;
        }
        if ((uint8_t)key[2] > TAG_HEADER) {
            if (slot + 1u >= STORE_MAX_SLOTS) {
                break;
            }
            seek_headers(it, (uint16_t)(slot + 1));
            continue;
        }
        if (klen == HEADER_KEY_LEN) {
            const char *val = rocksdb_iter_value(it, &vlen);
            uint64_t client = get_be64(key + 3);
            uint8_t lo[RESULT_KEY_LEN], hi[RESULT_KEY_LEN];

            if (vlen != HEADER_VAL_LEN) {
                set_err(err, "expire sessions: header of client %llu has %zu "
                             "bytes",
                        (unsigned long long)client, vlen);
                rc = SHALE_ECORRUPT;
                break;
            }
            if (get_be64(val + 8) < cutoff_ms) {
                rocksdb_writebatch_delete(wb, key, klen);
                st_result_key(lo, slot, client, 0);
                if (client == UINT64_MAX) {
                    /* [slot]['s'+1] ends every record of the last client. */
                    memcpy(hi, lo, 3);
                    hi[2] = TAG_RESULT + 1;
                    rocksdb_writebatch_delete_range(
                        wb, (const char *)lo, RESULT_KEY_LEN,
                        (const char *)hi, 3);
                } else {
                    st_result_key(hi, slot, client + 1, 0);
                    rocksdb_writebatch_delete_range(
                        wb, (const char *)lo, RESULT_KEY_LEN,
                        (const char *)hi, RESULT_KEY_LEN);
                }
                count++;
            }
        }
        rocksdb_iter_next(it);
    }
    if (rc == SHALE_OK) {
        rocksdb_iter_get_error(it, &rerr);
        if (rerr != NULL) {
            rc = st_rdb_fail(err, rerr, "expire sessions: scan");
        }
    }
    rocksdb_iter_destroy(it);
    if (rc != SHALE_OK) {
        rocksdb_writebatch_destroy(wb);
        return rc;
    }
    rc = st_write_plain(s, wb, index, "expire sessions: write batch", err);
    if (rc == SHALE_OK && expired != NULL) {
        *expired = count;
    }
    return rc;
}
