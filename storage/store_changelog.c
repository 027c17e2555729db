/* Migration records of the store (docs/resharding.md): the changelog of a
 * slot in migration, the export of a slot's data, changelog and sessions as
 * records, their import on the target, and the deletion of a slot's copy.
 *
 * It never imports a record for another slot than the one named and never
 * writes outside the batch that records the entry's index.
 */
#include "store_int.h"

#include "keyhash.h"
/* Log one change of a migrating slot: under [slot]['x'][index][n], the
 * record [op][klen][key][vlen][row header][value] (header/value only for a
 * put; the header is the stored one, so a TTL travels with the row). key is
 * the store key after the slot prefix. */
int st_changelog_put(apply_ctx_t *c, uint16_t slot, int op, const uint8_t *key, size_t klen,
                     const uint8_t *hdr, size_t hlen, const uint8_t *val, size_t vlen)
{
    uint8_t lk[CLOG_KEY_LEN], head[5], vhead[4];
    size_t stored = hdr != NULL ? hlen + vlen : 0;

    if (klen > UINT32_MAX || stored > UINT32_MAX) {
        set_err(c->err, "changelog: record too large");
        return SHALE_EINVAL;
    }
    put_be16(lk, slot);
    lk[2] = TAG_CLOG;
    put_be64(lk + 3, c->index);
    put_be32(lk + 11, (uint32_t)(c->nop > UINT32_MAX ? UINT32_MAX : c->nop));
    head[0] = (uint8_t)op;
    put_be32(head + 1, (uint32_t)klen);
    put_be32(vhead, (uint32_t)stored);
    const char *kp = (const char *)lk;
    size_t ks = sizeof(lk);
    const char *parts[5] = {(const char *)head, (const char *)key, (const char *)vhead,
                            (const char *)hdr, val != NULL ? (const char *)val : ""};
    size_t sizes[5] = {sizeof(head), klen, sizeof(vhead), hdr != NULL ? hlen : 0,
                       hdr != NULL ? vlen : 0};
    rocksdb_writebatch_wi_putv(c->wb, 1, &kp, &ks, hdr != NULL ? 5 : 3, parts, sizes);
    return SHALE_OK;
}

int store_delete_slot(store_t *s, uint16_t slot, uint64_t index, char *err)
{
    rocksdb_writebatch_t *wb;
    uint8_t lo[2], hi[2];

    if (s == NULL) {
        set_err(err, "store_delete_slot: NULL store");
        return SHALE_EINVAL;
    }
    if (slot >= STORE_MAX_SLOTS) {
        set_err(err, "store_delete_slot: slot %u out of range",
                (unsigned)slot);
        return SHALE_EINVAL;
    }
    if (index != 0 && index <= s->applied) {
        return SHALE_OK;
    }
    wb = rocksdb_writebatch_create();
    if (wb == NULL) {
        set_err(err, "store_delete_slot: out of memory");
        return SHALE_ENOMEM;
    }
    /* [slot] .. [slot+1): slot + 1 is at most 0xFFFF, whose range starts with
     * the metadata keys, which the exclusive end leaves alone. */
    put_be16(lo, slot);
    put_be16(hi, (uint16_t)(slot + 1));
    rocksdb_writebatch_delete_range(wb, (const char *)lo, 2, (const char *)hi,
                                    2);
    return st_write_plain(s, wb, index, "delete slot: write batch", err);
}

/* ---- Slot migration ---------------------------------------------------------*/

int store_changelog_set(store_t *s, uint16_t slot, int on)
{
    if (s == NULL || slot >= STORE_MAX_SLOTS) {
        return SHALE_EINVAL;
    }
    if (s->clog == NULL) {
        if (!on) {
            return SHALE_OK;
        }
        s->clog = calloc(1, (STORE_MAX_SLOTS + 7) / 8);
        if (s->clog == NULL) {
            return SHALE_ENOMEM;
        }
    }
    if (on) {
        s->clog[slot / 8] |= (uint8_t)(1u << (slot % 8));
    } else {
        s->clog[slot / 8] &= (uint8_t)~(1u << (slot % 8));
    }
    return SHALE_OK;
}

int store_changelog_on(const store_t *s, uint16_t slot)
{
    return s->clog != NULL && slot < STORE_MAX_SLOTS && (s->clog[slot / 8] >> (slot % 8)) & 1;
}

static int buf_reserve(store_buf_t *b, size_t more)
{
    if (b->len + more <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) {
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL) {
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_add_record(store_buf_t *b, int op, const char *k, size_t kl, const char *v,
                          size_t vl)
{
    if (kl > UINT32_MAX || vl > UINT32_MAX || buf_reserve(b, 9 + kl + vl) != 0) {
        return -1;
    }
    uint8_t *p = b->data + b->len;
    p[0] = (uint8_t)op;
    put_be32(p + 1, (uint32_t)kl);
    memcpy(p + 5, k, kl);
    put_be32(p + 5 + kl, (uint32_t)vl);
    if (vl > 0) {
        memcpy(p + 9 + kl, v, vl);
    }
    b->len += 9 + kl + vl;
    return 0;
}

int store_scan_records(store_t *s, uint16_t slot, store_scan_kind_t kind, const uint8_t *after,
                       size_t alen, size_t max_bytes, store_buf_t *out, uint32_t *count,
                       uint8_t **next, size_t *nlen, int *done, char *err)
{
    uint8_t lo[2 + 1], hi[3], skip_to[3];
    uint8_t tag_lo, tag_hi;
    size_t start = out->len;
    uint8_t *seek = NULL;
    char *rerr = NULL;
    int rc = SHALE_OK;

    *count = 0;
    *next = NULL;
    *nlen = 0;
    *done = 0;
    if (s == NULL || slot >= STORE_MAX_SLOTS || (after == NULL && alen > 0)) {
        set_err(err, "store_scan_records: bad argument");
        return SHALE_EINVAL;
    }
    switch (kind) {
    case STORE_SCAN_DATA:
        tag_lo = TAG_DATA;
        tag_hi = TAG_DATA + 1;
        break;
    case STORE_SCAN_LOG:
        tag_lo = TAG_CLOG;
        tag_hi = TAG_CLOG + 1;
        break;
    case STORE_SCAN_SESSIONS:
        tag_lo = TAG_HEADER; /* 'c' .. 's' inclusive, data ('d') skipped */
        tag_hi = TAG_RESULT + 1;
        break;
    default:
        set_err(err, "store_scan_records: unknown kind %d", (int)kind);
        return SHALE_EINVAL;
    }
    put_be16(lo, slot);
    lo[2] = tag_lo;
    put_be16(hi, slot);
    hi[2] = tag_hi;
    put_be16(skip_to, slot);
    skip_to[2] = TAG_RESULT;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (ro == NULL) {
        set_err(err, "store_scan_records: out of memory");
        return SHALE_ENOMEM;
    }
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, sizeof(hi));
    rocksdb_readoptions_set_fill_cache(ro, 0); /* read once: keep the cache */
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, ro);
    if (alen > 0) {
        seek = malloc(2 + alen);
        if (seek == NULL) {
            rc = SHALE_ENOMEM;
            set_err(err, "store_scan_records: out of memory");
            goto out;
        }
        put_be16(seek, slot);
        memcpy(seek + 2, after, alen);
        rocksdb_iter_seek(it, (const char *)seek, 2 + alen);
        if (rocksdb_iter_valid(it)) {
            size_t kl;
            const char *k = rocksdb_iter_key(it, &kl);
            if (kl == 2 + alen && memcmp(k, seek, kl) == 0) {
                rocksdb_iter_next(it);
            }
        }
    } else {
        rocksdb_iter_seek(it, (const char *)lo, sizeof(lo));
    }
    const char *last = NULL;
    size_t lastlen = 0;
    while (rocksdb_iter_valid(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < 3 || memcmp(k, lo, 3) < 0) { /* a cursor before the range */
            rocksdb_iter_seek(it, (const char *)lo, sizeof(lo));
            continue;
        }
        if (kind == STORE_SCAN_SESSIONS && (uint8_t)k[2] == TAG_DATA) {
            rocksdb_iter_seek(it, (const char *)skip_to, sizeof(skip_to));
            continue;
        }
        if (out->len - start >= max_bytes && *count > 0) {
            break;
        }
        const char *v = rocksdb_iter_value(it, &vl);
        int bad;
        if (kind == STORE_SCAN_LOG) {
            bad = buf_reserve(out, vl) != 0;
            if (!bad) {
                memcpy(out->data + out->len, v, vl);
                out->len += vl;
            }
        } else {
            bad = buf_add_record(out, STORE_REC_PUT, k + 2, kl - 2, v, vl) != 0;
        }
        if (bad) {
            rc = SHALE_ENOMEM;
            set_err(err, "store_scan_records: out of memory");
            goto out;
        }
        (*count)++;
        free(seek);
        seek = malloc(kl - 2);
        if (seek == NULL) {
            rc = SHALE_ENOMEM;
            set_err(err, "store_scan_records: out of memory");
            goto out;
        }
        memcpy(seek, k + 2, kl - 2);
        last = (const char *)seek;
        lastlen = kl - 2;
        rocksdb_iter_next(it);
    }
    rocksdb_iter_get_error(it, &rerr);
    if (rerr != NULL) {
        rc = st_rdb_fail(err, rerr, "scan records");
        goto out;
    }
    *done = !rocksdb_iter_valid(it);
    if (last != NULL) {
        *next = seek;
        *nlen = lastlen;
        seek = NULL;
    }
out:
    free(seek);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* One record of a batch at *at: 1 with its parts (and *at moved past it),
 * 0 at the end, -1 when malformed (cut short, an unknown op or kind, a data
 * put without its version). */
typedef struct rec {
    int op;
    const uint8_t *k, *v;
    uint32_t kl, vl;
} rec_t;

static int rec_next(const uint8_t *recs, size_t len, size_t *at, rec_t *r)
{
    size_t a = *at;
    if (a >= len) {
        return 0;
    }
    if (len - a < 9) {
        return -1;
    }
    r->op = recs[a];
    r->kl = get_be32(recs + a + 1);
    if (r->kl < 1 || len - a - 5 < (size_t)r->kl + 4) {
        return -1;
    }
    r->k = recs + a + 5;
    r->vl = get_be32(recs + a + 5 + r->kl);
    if (len - a - 9 - r->kl < r->vl) {
        return -1;
    }
    r->v = recs + a + 9 + r->kl;
    if ((r->k[0] != TAG_DATA && r->k[0] != TAG_HEADER && r->k[0] != TAG_RESULT) ||
        (r->op != STORE_REC_PUT && r->op != STORE_REC_DEL) ||
        (r->k[0] == TAG_DATA && r->op == STORE_REC_PUT && r->vl < VERSION_LEN)) {
        return -1;
    }
    if (r->k[0] == TAG_DATA && r->op == STORE_REC_PUT) {
        row_t row;
        if (st_row_decode((const char *)r->v, r->vl, &row) != 0) {
            return -1; /* a TTL row cut short */
        }
    }
    *at = a + 9 + (size_t)r->kl + r->vl;
    return 1;
}

int store_records_check_slot(const uint8_t *recs, size_t len, uint16_t slot, uint32_t nslots,
                             char *err)
{
    size_t at = 0, prev = 0;
    rec_t r;
    int rv;

    if ((recs == NULL && len > 0) || nslots == 0 || nslots > STORE_MAX_SLOTS) {
        set_err(err, "store_records_check_slot: bad argument");
        return SHALE_EINVAL;
    }
    while ((rv = rec_next(recs, len, &at, &r)) == 1) {
        if (r.k[0] == TAG_DATA) {
            uint32_t want = shale_key_slot(r.k + 1, r.kl - 1, nslots);
            if (want != slot) {
                char q[KEY_SAMPLE * 4 + 4];
                st_key_sample(q, sizeof(q), r.k + 1, r.kl - 1);
                set_err(err,
                        "record batch for slot %u holds key \"%s\" of slot %u "
                        "(key-hash v%u): exported by a build that hashes keys differently?",
                        slot, q, want, SHALE_KEYHASH_VERSION);
                return SHALE_EINVAL;
            }
        }
        prev = at;
    }
    if (rv < 0) {
        set_err(err, "record batch is malformed at byte %zu", prev);
        return SHALE_EINVAL;
    }
    return SHALE_OK;
}

int store_records_have_ttl(const uint8_t *recs, size_t len)
{
    size_t at = 0;
    rec_t r;

    if (recs == NULL) {
        return 0;
    }
    while (rec_next(recs, len, &at, &r) == 1) {
        if (r.k[0] == TAG_DATA && r.op == STORE_REC_PUT && (get_be64(r.v) & TTL_FLAG)) {
            return 1;
        }
    }
    return 0;
}

int store_apply_records(store_t *s, uint64_t index, uint16_t slot, const uint8_t *recs,
                        size_t len, uint32_t *count, char *err)
{
    uint32_t n = 0;
    if (count != NULL) {
        *count = 0;
    }
    if (s == NULL || slot >= STORE_MAX_SLOTS || (recs == NULL && len > 0)) {
        set_err(err, "store_apply_records: bad argument");
        return SHALE_EINVAL;
    }
    if (index != 0 && index <= s->applied) {
        return SHALE_OK;
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    uint8_t *kb = NULL;
    size_t kcap = 0;
    if (wb == NULL) {
        set_err(err, "store_apply_records: out of memory");
        return SHALE_ENOMEM;
    }
    size_t at = 0, prev = 0;
    rec_t r;
    int rv;
    while ((rv = rec_next(recs, len, &at, &r)) == 1) {
        if (kcap < 2 + (size_t)r.kl) {
            uint8_t *p = realloc(kb, 2 + (size_t)r.kl);
            if (p == NULL) {
                rocksdb_writebatch_destroy(wb);
                free(kb);
                set_err(err, "store_apply_records: out of memory");
                return SHALE_ENOMEM;
            }
            kb = p;
            kcap = 2 + (size_t)r.kl;
        }
        put_be16(kb, slot);
        memcpy(kb + 2, r.k, r.kl);
        if (r.op == STORE_REC_PUT) {
            if (r.k[0] == TAG_DATA) {
                row_t row;
                (void)st_row_decode((const char *)r.v, r.vl, &row); /* checked by rec_next */
                st_vbound_raise(s, row.version);                    /* another group's version */
                if (row.expires_at != 0) {
                    /* The TTL travels with the row: index it here too. */
                    uint8_t *ek;
                    size_t ekl;
                    if (st_exp_key(row.expires_at, slot, r.k + 1, r.kl - 1, &ek, &ekl) != SHALE_OK) {
                        rocksdb_writebatch_destroy(wb);
                        free(kb);
                        set_err(err, "store_apply_records: out of memory");
                        return SHALE_ENOMEM;
                    }
                    rocksdb_writebatch_put(wb, (const char *)ek, ekl, "", 0);
                    free(ek);
                }
            }
            rocksdb_writebatch_put(wb, (const char *)kb, 2 + (size_t)r.kl, (const char *)r.v, r.vl);
        } else {
            rocksdb_writebatch_delete(wb, (const char *)kb, 2 + (size_t)r.kl);
        }
        n++;
        prev = at;
    }
    free(kb);
    if (rv < 0) {
        rocksdb_writebatch_destroy(wb);
        set_err(err, "record batch is malformed at byte %zu", prev);
        return SHALE_EINVAL;
    }
    if (count != NULL) {
        *count = n;
    }
    return st_write_plain(s, wb, index, "apply records: write batch", err);
}

int store_delete_changelog(store_t *s, uint16_t slot, char *err)
{
    uint8_t lo[3], hi[3];
    if (s == NULL || slot >= STORE_MAX_SLOTS) {
        set_err(err, "store_delete_changelog: bad argument");
        return SHALE_EINVAL;
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    if (wb == NULL) {
        set_err(err, "store_delete_changelog: out of memory");
        return SHALE_ENOMEM;
    }
    put_be16(lo, slot);
    lo[2] = TAG_CLOG;
    put_be16(hi, slot);
    hi[2] = TAG_CLOG + 1;
    rocksdb_writebatch_delete_range(wb, (const char *)lo, 3, (const char *)hi, 3);
    return st_write_plain(s, wb, 0, "delete changelog: write batch", err);
}
