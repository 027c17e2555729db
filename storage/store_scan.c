/* Reading the store in key order (store.h, "Scans"): iterators over one
 * slot and the whole-store views of the consistency check, each on a
 * pinned RocksDB snapshot, and pages of one slot in key order with
 * expired rows skipped.
 *
 * Read-only: it never writes and never holds a snapshot past
 * store_iter_close / store_view_close / the end of store_scan.
 */
#include "store_int.h"
/* ---- Slots ----------------------------------------------------------------*/

int store_iter_slot(store_t *s, uint16_t slot, store_iter_t **out, char *err)
{
    store_iter_t *it;
    uint8_t lo[3];

    if (out != NULL) {
        *out = NULL;
    }
    if (s == NULL || out == NULL) {
        set_err(err, "store_iter_slot: NULL argument");
        return SHALE_EINVAL;
    }
    if (slot >= STORE_MAX_SLOTS) {
        set_err(err, "store_iter_slot: slot %u out of range", (unsigned)slot);
        return SHALE_EINVAL;
    }
    it = calloc(1, sizeof(*it));
    if (it == NULL) {
        set_err(err, "store_iter_slot: out of memory");
        return SHALE_ENOMEM;
    }
    it->db = s->db;
    it->ropts = rocksdb_readoptions_create();
    if (it->ropts == NULL) {
        free(it);
        set_err(err, "store_iter_slot: out of memory");
        return SHALE_ENOMEM;
    }
    put_be16(it->upper, slot);
    it->upper[2] = TAG_DATA + 1;
    put_be16(lo, slot);
    lo[2] = TAG_DATA;
    it->snap = rocksdb_create_snapshot(s->db);
    rocksdb_readoptions_set_snapshot(it->ropts, it->snap);
    rocksdb_readoptions_set_iterate_upper_bound(
        it->ropts, (const char *)it->upper, sizeof(it->upper));
    /* A migration scan reads each block once: keep it out of the cache. */
    rocksdb_readoptions_set_fill_cache(it->ropts, 0);
    it->it = rocksdb_create_iterator(s->db, it->ropts);
    rocksdb_iter_seek(it->it, (const char *)lo, sizeof(lo));
    *out = it;
    return SHALE_OK;
}

int store_iter_next(store_iter_t *it, const uint8_t **key, size_t *klen,
                    const uint8_t **value, size_t *vlen, uint64_t *version)
{
    const char *k, *v;
    size_t kl, vl;
    char *rerr = NULL;

    if (it == NULL || key == NULL || klen == NULL || value == NULL ||
        vlen == NULL) {
        return SHALE_EINVAL;
    }
    if (it->done) {
        return 0;
    }
    if (it->started) {
        rocksdb_iter_next(it->it);
    }
    it->started = 1;
    if (!rocksdb_iter_valid(it->it)) {
        it->done = 1;
        rocksdb_iter_get_error(it->it, &rerr);
        if (rerr != NULL) {
            rocksdb_free(rerr);
            return SHALE_ESTORAGE;
        }
        return 0;
    }
    k = rocksdb_iter_key(it->it, &kl);
    v = rocksdb_iter_value(it->it, &vl);
    row_t row;
    if (kl < 3 || st_row_decode(v, vl, &row) != 0) {
        return SHALE_ECORRUPT;
    }
    *key = (const uint8_t *)k + 3;
    *klen = kl - 3;
    *value = (const uint8_t *)row.val;
    *vlen = row.vlen;
    it->expires_at = row.expires_at;
    if (version != NULL) {
        *version = row.version;
    }
    return 1;
}

uint64_t store_iter_expires_at(const store_iter_t *it)
{
    return it != NULL ? it->expires_at : 0;
}

void store_iter_close(store_iter_t *it)
{
    if (it == NULL) {
        return;
    }
    if (it->it != NULL) {
        rocksdb_iter_destroy(it->it);
    }
    if (it->snap != NULL) {
        rocksdb_release_snapshot(it->db, it->snap);
    }
    rocksdb_readoptions_destroy(it->ropts);
    free(it);
}

/* ---- Ordered scans ---------------------------------------------------------*/

static int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c != 0)
        return c;
    return al < bl ? -1 : al > bl;
}

void store_scan_free(store_scan_page_t *page)
{
    if (page == NULL)
        return;
    for (size_t i = 0; i < page->n; i++) {
        free(page->items[i].key);
        free(page->items[i].value);
    }
    free(page->items);
    memset(page, 0, sizeof(*page));
}

int store_scan(store_t *s, uint16_t slot, const uint8_t *after, size_t alen,
               const uint8_t *prefix, size_t plen, size_t limit, size_t max_bytes,
               int keys_only, store_scan_page_t *page, char *err)
{
    if (page != NULL)
        memset(page, 0, sizeof(*page));
    if (s == NULL || page == NULL || (after == NULL && alen > 0) ||
        (prefix == NULL && plen > 0)) {
        set_err(err, "store_scan: NULL argument");
        return SHALE_EINVAL;
    }
    if (slot >= STORE_MAX_SLOTS) {
        set_err(err, "store_scan: slot %u out of range", (unsigned)slot);
        return SHALE_EINVAL;
    }
    if (limit == 0)
        return SHALE_OK;
    /* Bounds: [slot]['d'][prefix] .. its successor (or the slot's end). */
    size_t hlen = 3 + plen;
    uint8_t *upper = malloc(hlen);
    size_t slen = 3 + (alen > plen ? alen : plen);
    uint8_t *seek = malloc(slen);
    page->items = calloc(limit < 64 ? limit : 64, sizeof(*page->items));
    size_t cap = limit < 64 ? limit : 64;
    if (upper == NULL || seek == NULL || page->items == NULL) {
        free(upper);
        free(seek);
        free(page->items);
        page->items = NULL;
        set_err(err, "store_scan: out of memory");
        return SHALE_ENOMEM;
    }
    put_be16(upper, slot);
    upper[2] = TAG_DATA;
    if (plen > 0)
        memcpy(upper + 3, prefix, plen);
    size_t ulen = hlen;
    while (ulen > 3 && upper[ulen - 1] == 0xff)
        ulen--;
    if (ulen > 3)
        upper[ulen - 1]++;
    else
        upper[2] = TAG_DATA + 1, ulen = 3;
    put_be16(seek, slot);
    seek[2] = TAG_DATA;
    size_t seeklen = 3;
    int skip_equal = 0;
    if (alen > 0 && (plen == 0 || bytes_cmp(after, alen, prefix, plen) >= 0)) {
        memcpy(seek + 3, after, alen);
        seeklen = 3 + alen;
        skip_equal = 1;
    } else if (plen > 0) {
        memcpy(seek + 3, prefix, plen);
        seeklen = 3 + plen;
    }
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)upper, ulen);
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, ro);
    rocksdb_iter_seek(it, (const char *)seek, seeklen);
    int rc = SHALE_OK;
    size_t bytes = 0;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        row_t row;
        if (kl < 3 || st_row_decode(v, vl, &row) != 0) {
            set_err(err, "scan: malformed data row in slot %u", (unsigned)slot);
            rc = SHALE_ECORRUPT;
            break;
        }
        const uint8_t *key = (const uint8_t *)k + 3;
        size_t klen = kl - 3;
        if (skip_equal && klen == alen && memcmp(key, after, alen) == 0)
            continue;
        skip_equal = 0;
        if (st_row_expired(&row, s->clock))
            continue; /* absent at the log clock */
        size_t vlen = keys_only ? 0 : row.vlen;
        if (page->n >= limit || (page->n > 0 && bytes + klen + vlen > max_bytes)) {
            page->more = 1;
            break;
        }
        if (page->n == cap) {
            size_t ncap = cap * 2 < limit ? cap * 2 : limit;
            store_scan_item_t *p = realloc(page->items, ncap * sizeof(*p));
            if (p == NULL) {
                rc = SHALE_ENOMEM;
                set_err(err, "scan: out of memory");
                break;
            }
            page->items = p;
            cap = ncap;
        }
        store_scan_item_t *item = &page->items[page->n];
        memset(item, 0, sizeof(*item));
        item->key = malloc(klen > 0 ? klen : 1);
        item->value = keys_only ? NULL : malloc(vlen > 0 ? vlen : 1);
        if (item->key == NULL || (!keys_only && item->value == NULL)) {
            free(item->key);
            free(item->value);
            rc = SHALE_ENOMEM;
            set_err(err, "scan: out of memory");
            break;
        }
        memcpy(item->key, key, klen);
        item->klen = klen;
        if (!keys_only && vlen > 0)
            memcpy(item->value, row.val, vlen);
        item->vlen = vlen;
        item->version = row.version;
        page->n++;
        bytes += klen + vlen;
    }
    if (rc == SHALE_OK) {
        char *rerr = NULL;
        rocksdb_iter_get_error(it, &rerr);
        if (rerr != NULL)
            rc = st_rdb_fail(err, rerr, "scan");
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    free(upper);
    free(seek);
    if (rc != SHALE_OK)
        store_scan_free(page);
    return rc;
}

/* ---- Views (storage/store_check.c) -------------------------------------------------*/

struct store_view {
    rocksdb_t *db;
    const rocksdb_snapshot_t *snap;
    rocksdb_readoptions_t *ropts;
    rocksdb_iterator_t *it;
    uint64_t applied;
    uint8_t upper[2]; /* iterate_upper_bound points here: the metadata prefix */
    int started;
    int done;
};

int store_view_open(store_t *s, store_view_t **out, char *err)
{
    static const uint8_t lo[2] = {0, 0};
    store_view_t *v;

    if (out != NULL) {
        *out = NULL;
    }
    if (s == NULL || out == NULL) {
        set_err(err, "store_view_open: NULL argument");
        return SHALE_EINVAL;
    }
    v = calloc(1, sizeof(*v));
    if (v == NULL || (v->ropts = rocksdb_readoptions_create()) == NULL) {
        free(v);
        set_err(err, "store_view_open: out of memory");
        return SHALE_ENOMEM;
    }
    v->db = s->db;
    v->applied = s->applied;
    v->upper[0] = 0xFF;
    v->upper[1] = 0xFF;
    v->snap = rocksdb_create_snapshot(s->db);
    rocksdb_readoptions_set_snapshot(v->ropts, v->snap);
    rocksdb_readoptions_set_iterate_upper_bound(v->ropts, (const char *)v->upper,
                                                sizeof(v->upper));
    /* A full scan reads each block once: keep it out of the cache. */
    rocksdb_readoptions_set_fill_cache(v->ropts, 0);
    v->it = rocksdb_create_iterator(s->db, v->ropts);
    rocksdb_iter_seek(v->it, (const char *)lo, sizeof(lo));
    *out = v;
    return SHALE_OK;
}

uint64_t store_view_applied(const store_view_t *v)
{
    return v != NULL ? v->applied : 0;
}

int store_view_next(store_view_t *v, const uint8_t **key, size_t *klen, const uint8_t **value,
                    size_t *vlen)
{
    char *rerr = NULL;

    if (v == NULL || key == NULL || klen == NULL || value == NULL || vlen == NULL) {
        return SHALE_EINVAL;
    }
    if (v->done) {
        return 0;
    }
    if (v->started) {
        rocksdb_iter_next(v->it);
    }
    v->started = 1;
    if (!rocksdb_iter_valid(v->it)) {
        v->done = 1;
        rocksdb_iter_get_error(v->it, &rerr);
        if (rerr != NULL) {
            rocksdb_free(rerr);
            return SHALE_ESTORAGE;
        }
        return 0;
    }
    *key = (const uint8_t *)rocksdb_iter_key(v->it, klen);
    *value = (const uint8_t *)rocksdb_iter_value(v->it, vlen);
    return 1;
}

void store_view_close(store_view_t *v)
{
    if (v == NULL) {
        return;
    }
    if (v->it != NULL) {
        rocksdb_iter_destroy(v->it);
    }
    if (v->snap != NULL) {
        rocksdb_release_snapshot(v->db, v->snap);
    }
    rocksdb_readoptions_destroy(v->ropts);
    free(v);
}
