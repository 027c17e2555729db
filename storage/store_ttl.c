/* Expiry of keys with a TTL (store.h, "Expiry"): the expiry index
 * [0xFFFF]['e'][expires_at:8][slot:2][key], the due keys a leader asks for
 * and the EXPIRE entries that delete them.
 *
 * Expiry is decided by the log clock only, never a member's own clock; an
 * EXPIRE entry deletes a row only if its expires_at still matches.
 */
#include "store_int.h"
/* Build the expiry index key of (expires_at, slot, key) into a malloc'd
 * buffer (*out, free()); its length in *len. */
int st_exp_key(uint64_t expires_at, uint16_t slot, const uint8_t *key, size_t klen,
               uint8_t **out, size_t *len)
{
    uint8_t *k = malloc(EXP_KEY_HEAD + klen);

    if (k == NULL) {
        return SHALE_ENOMEM;
    }
    k[0] = 0xFF;
    k[1] = 0xFF;
    k[2] = TAG_EXPIRY;
    put_be64(k + 3, expires_at);
    put_be16(k + 11, slot);
    if (klen > 0) {
        memcpy(k + EXP_KEY_HEAD, key, klen);
    }
    *out = k;
    *len = EXP_KEY_HEAD + klen;
    return SHALE_OK;
}

/* Put or delete the expiry index entry of (expires_at, slot, key) in the
 * batch. */
int st_exp_index(apply_ctx_t *c, int put, uint64_t expires_at, uint16_t slot,
                 const uint8_t *key, size_t klen)
{
    uint8_t *k;
    size_t kl;

    if (st_exp_key(expires_at, slot, key, klen, &k, &kl) != SHALE_OK) {
        set_err(c->err, "apply: out of memory for an expiry index key");
        return SHALE_ENOMEM;
    }
    if (put) {
        rocksdb_writebatch_wi_put(c->wb, (const char *)k, kl, "", 0);
    } else {
        rocksdb_writebatch_wi_delete(c->wb, (const char *)k, kl);
    }
    free(k);
    return SHALE_OK;
}

/* ---- Expiry of keys with a TTL ----------------------------------------------*/

void store_expire_keys_free(store_expire_key_t *keys, size_t n)
{
    for (size_t i = 0; keys != NULL && i < n; i++) {
        free(keys[i].key);
    }
    free(keys);
}

void store_expired_free(store_expired_t *d, size_t n)
{
    for (size_t i = 0; d != NULL && i < n; i++) {
        free(d[i].key);
    }
    free(d);
}

/* Rules: one range scan of the expiry index, [0xFFFF]['e'] up to
 * [0xFFFF]['e'][now_ms + 1), at most max entries: the work is bounded by
 * max whatever the number of keys with a TTL. */
int store_expire_due(store_t *s, uint64_t now_ms, size_t max, store_expire_key_t **out, size_t *n,
                     char *err)
{
    uint8_t lo[3] = {0xFF, 0xFF, TAG_EXPIRY}, hi[11];
    size_t hlen = sizeof(hi);
    store_expire_key_t *keys = NULL;
    size_t cnt = 0;
    char *rerr = NULL;
    int rc = SHALE_OK;

    if (out != NULL) {
        *out = NULL;
    }
    if (n != NULL) {
        *n = 0;
    }
    if (s == NULL || out == NULL || n == NULL) {
        set_err(err, "store_expire_due: NULL argument");
        return SHALE_EINVAL;
    }
    if (max == 0) {
        return SHALE_OK;
    }
    hi[0] = 0xFF;
    hi[1] = 0xFF;
    if (now_ms == UINT64_MAX) {
        hi[2] = TAG_EXPIRY + 1;
        hlen = 3;
    } else {
        hi[2] = TAG_EXPIRY;
        put_be64(hi + 3, now_ms + 1);
    }
    keys = calloc(max, sizeof(*keys));
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (keys == NULL || ro == NULL) {
        free(keys);
        if (ro != NULL) {
            rocksdb_readoptions_destroy(ro);
        }
        set_err(err, "store_expire_due: out of memory");
        return SHALE_ENOMEM;
    }
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, hlen);
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, ro);
    for (rocksdb_iter_seek(it, (const char *)lo, sizeof(lo)); rocksdb_iter_valid(it) && cnt < max;
         rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < EXP_KEY_HEAD) {
            continue; /* not an index entry (never written) */
        }
        store_expire_key_t *e = &keys[cnt];
        e->expires_at = get_be64(k + 3);
        e->slot = get_be16(k + 11);
        e->klen = kl - EXP_KEY_HEAD;
        e->key = malloc(e->klen > 0 ? e->klen : 1);
        if (e->key == NULL) {
            set_err(err, "store_expire_due: out of memory");
            rc = SHALE_ENOMEM;
            break;
        }
        memcpy(e->key, k + EXP_KEY_HEAD, e->klen);
        cnt++;
    }
    if (rc == SHALE_OK) {
        rocksdb_iter_get_error(it, &rerr);
        if (rerr != NULL) {
            rc = st_rdb_fail(err, rerr, "expire due: scan");
        }
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rc != SHALE_OK || cnt == 0) {
        store_expire_keys_free(keys, cnt);
        return rc;
    }
    *out = keys;
    *n = cnt;
    return SHALE_OK;
}

/* Rules:
 *  - the log clock first moves to now_ms (the entry's timestamp), so every
 *    member decides with the same clock;
 *  - each listed index entry is deleted; the row is deleted only when it is
 *    still the one the entry names (its expires_at equals the listed one)
 *    and is expired at the log clock: a key re-put since (another TTL, or
 *    none) is left alone;
 *  - a deletion in a migrating slot is logged like any delete, so the
 *    target learns of it. */
int store_apply_expire(store_t *s, uint64_t index, uint64_t now_ms, const store_expire_key_t *keys,
                       size_t n, store_expired_t **deleted, size_t *ndeleted, char *err)
{
    apply_ctx_t c;
    uint8_t av[8], vb[8], cb[8];
    store_expired_t *dl = NULL;
    size_t nd = 0;
    char *rerr = NULL;
    int rc = SHALE_OK;

    if (deleted != NULL) {
        *deleted = NULL;
    }
    if (ndeleted != NULL) {
        *ndeleted = 0;
    }
    if (s == NULL || (keys == NULL && n > 0)) {
        set_err(err, "store_apply_expire: NULL argument");
        return SHALE_EINVAL;
    }
    if (index <= s->applied) {
        return SHALE_OK;
    }
    store_clock_advance(s, now_ms);
    memset(&c, 0, sizeof(c));
    c.s = s;
    c.index = index;
    c.now_ms = now_ms;
    c.err = err;
    c.wb = rocksdb_writebatch_wi_create(0, 1);
    if (c.wb == NULL || (n > 0 && (dl = calloc(n, sizeof(*dl))) == NULL)) {
        if (c.wb != NULL) {
            rocksdb_writebatch_wi_destroy(c.wb);
        }
        set_err(err, "store_apply_expire: out of memory");
        return SHALE_ENOMEM;
    }
    for (size_t i = 0; i < n && rc == SHALE_OK; i++) {
        const store_expire_key_t *e = &keys[i];
        size_t dlen = 0, vlen = 0;
        char *cur = NULL;
        row_t row;

        if (e->slot >= STORE_MAX_SLOTS || (e->key == NULL && e->klen > 0) ||
            e->expires_at > s->clock) {
            /* Malformed, or not due at the entry's clock (a leader lists
             * only due keys): skipped, index entry kept, the same on every
             * member. */
            continue;
        }
        if ((rc = st_exp_index(&c, 0, e->expires_at, e->slot, e->key, e->klen)) != SHALE_OK ||
            (rc = st_data_key(s, e->slot, e->key, e->klen, &dlen, err)) != SHALE_OK ||
            (rc = st_batch_get(&c, s->kbuf, dlen, &cur, &vlen)) != SHALE_OK) {
            break;
        }
        if (cur == NULL) {
            continue;
        }
        if (st_row_decode(cur, vlen, &row) != 0) {
            rocksdb_free(cur);
            set_err(err, "expire: stored value has %zu bytes, shorter than its header", vlen);
            rc = SHALE_ECORRUPT;
            break;
        }
        rocksdb_free(cur);
        if (row.expires_at != e->expires_at || !st_row_expired(&row, s->clock)) {
            continue;
        }
        c.nop++;
        rocksdb_writebatch_wi_delete(c.wb, (const char *)s->kbuf, dlen);
        if (store_changelog_on(s, e->slot)) {
            rc = st_changelog_put(&c, e->slot, STORE_REC_DEL, s->kbuf + 2, dlen - 2, NULL, 0, NULL, 0);
        }
        dl[nd].slot = e->slot;
        dl[nd].version = row.version;
        dl[nd].klen = e->klen;
        dl[nd].key = malloc(e->klen > 0 ? e->klen : 1);
        if (dl[nd].key == NULL) {
            set_err(err, "store_apply_expire: out of memory");
            rc = SHALE_ENOMEM;
            break;
        }
        if (e->klen > 0) {
            memcpy(dl[nd].key, e->key, e->klen);
        }
        nd++;
    }
    if (rc == SHALE_OK) {
        st_applied_value(av, index);
        rocksdb_writebatch_wi_put(c.wb, APPLIED_KEY, sizeof(APPLIED_KEY), (const char *)av,
                                  sizeof(av));
        if (s->vbound_dirty) {
            st_vbound_row(s, vb);
            rocksdb_writebatch_wi_put(c.wb, VBOUND_KEY, sizeof(VBOUND_KEY), (const char *)vb,
                                      sizeof(vb));
        }
        put_be64(cb, s->clock);
        rocksdb_writebatch_wi_put(c.wb, CLOCK_KEY, sizeof(CLOCK_KEY), (const char *)cb, sizeof(cb));
        rocksdb_write_writebatch_wi(s->db, s->wopts, c.wb, &rerr);
        if (rerr != NULL) {
            rc = st_rdb_fail(err, rerr, "expire: write batch");
        }
    }
    rocksdb_writebatch_wi_destroy(c.wb);
    if (rc != SHALE_OK) {
        store_expired_free(dl, nd);
        return rc;
    }
    s->applied = index;
    s->vbound_dirty = 0;
    s->clock_dirty = 0;
    if (deleted != NULL && ndeleted != NULL && nd > 0) {
        *deleted = dl;
        *ndeleted = nd;
    } else {
        store_expired_free(dl, nd);
    }
    return SHALE_OK;
}
