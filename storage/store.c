/* Storage engine: store.h on top of the RocksDB C API — opening, closing,
 * options, the markers kept beside the data, point reads and metadata.
 *
 * Owns the rocksdb_t handle of one node with its options and block cache,
 * the in-memory copy of the applied index (always equal to the one on
 * disk after a successful write), the version bound, the key-hash marker
 * (the key-hash version the rows were placed with, checked at open), the
 * log clock, and the data row format (every data row is read through
 * st_row_decode, which knows both formats). The other concerns live beside
 * it: store_apply.c (the mutation apply path), store_session.c (session
 * records), store_txn.c (transactions), store_ttl.c (expiry),
 * store_scan.c (iterators and scans), store_changelog.c (migration
 * records), store_checkpoint.c (checkpoints and restore); store_int.h is
 * what they share. It never exits or aborts on a RocksDB or file-system
 * error, and never moves the cached applied index unless the batch that
 * records it was written.
 */
#include "store_int.h"

#include <errno.h>

#include "keyhash.h"
/* Turn a RocksDB errptr into SHALE_ESTORAGE + message; frees the errptr. */
int st_rdb_fail(char *err, char *rerr, const char *what)
{
    set_err(err, "%s: %s", what, rerr);
    rocksdb_free(rerr);
    return SHALE_ESTORAGE;
}

/* Build [slot]['d'][key] in s->kbuf. */
int st_data_key(store_t *s, uint16_t slot, const uint8_t *key, size_t klen,
                size_t *len, char *err)
{
    if (klen > SIZE_MAX - 3) {
        set_err(err, "key too long");
        return SHALE_EINVAL;
    }
    if (s->kcap < klen + 3) {
        size_t cap = klen + 3 < 256 ? 256 : klen + 3;
        uint8_t *p = realloc(s->kbuf, cap);
        if (p == NULL) {
            set_err(err, "out of memory for a %zu-byte key", klen);
            return SHALE_ENOMEM;
        }
        s->kbuf = p;
        s->kcap = cap;
    }
    put_be16(s->kbuf, slot);
    s->kbuf[2] = TAG_DATA;
    if (klen > 0) {
        memcpy(s->kbuf + 3, key, klen);
    }
    *len = klen + 3;
    return SHALE_OK;
}

/* 0, or -1 when the stored bytes are too short for their header. */
int st_row_decode(const char *v, size_t vl, row_t *r)
{
    uint64_t w;

    memset(r, 0, sizeof(*r));
    if (vl < VERSION_LEN) {
        return -1;
    }
    w = get_be64(v);
    if (w & TTL_FLAG) {
        if (vl < TTL_HEAD_LEN) {
            return -1;
        }
        r->version = w & ~TTL_FLAG;
        r->expires_at = get_be64(v + VERSION_LEN);
        r->val = v + TTL_HEAD_LEN;
        r->vlen = vl - TTL_HEAD_LEN;
    } else {
        r->version = w;
        r->val = v + VERSION_LEN;
        r->vlen = vl - VERSION_LEN;
    }
    return 0;
}

/* Whether a row is expired at the log clock `clock`: expires_at <= clock. */
int st_row_expired(const row_t *r, uint64_t clock)
{
    return r->expires_at != 0 && r->expires_at <= clock;
}

/* The row header for version/expires_at into h (16 bytes); its length. */
size_t st_row_head(uint8_t *h, uint64_t version, uint64_t expires_at)
{
    if (expires_at == 0) {
        put_be64(h, version);
        return VERSION_LEN;
    }
    put_be64(h, version | TTL_FLAG);
    put_be64(h + VERSION_LEN, expires_at);
    return TTL_HEAD_LEN;
}

uint64_t st_add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

void store_clock_advance(store_t *s, uint64_t ms)
{
    if (s != NULL && ms > s->clock) {
        s->clock = ms;
        s->clock_dirty = 1;
    }
}

uint64_t store_clock(const store_t *s)
{
    return s != NULL ? s->clock : 0;
}

/* ---- Open / close ---------------------------------------------------------*/

void store_options_default(store_options_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->create_if_missing = 1;
}

static void store_free(store_t *s)
{
    if (s->db != NULL) {
        rocksdb_close(s->db);
    }
    if (s->ropts != NULL) {
        rocksdb_readoptions_destroy(s->ropts);
    }
    if (s->wopts != NULL) {
        rocksdb_writeoptions_destroy(s->wopts);
    }
    if (s->opts != NULL) {
        rocksdb_options_destroy(s->opts);
    }
    if (s->cache != NULL) {
        rocksdb_cache_destroy(s->cache);
    }
    free(s->kbuf);
    free(s->clog);
    free(s);
}

/* A whole-key bloom filter in every memtable (10 % of its size, taken from
 * the memtable's own memory): a point read of a key the memtable does not
 * hold -- every first PUT of a key, every session lookup of a fresh seq --
 * answers from the filter instead of walking the skiplist (cache misses in
 * a 64 MiB memtable). Whole-key filtering needs no prefix extractor. */
static void memtable_bloom(store_t *s)
{
    rocksdb_options_set_memtable_whole_key_filtering(s->opts, 1);
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(s->opts, 0.1);
}

/* Build the RocksDB options: zstd (unless disabled), a bloom filter so point
 * reads of absent keys (every first PUT, every session check) skip files, and
 * an LRU block cache of the configured size. */
static int make_options(store_t *s, const store_options_t *o)
{
    size_t cache = o->block_cache_bytes ? o->block_cache_bytes : 64u << 20;
    size_t wbuf = o->write_buffer_bytes ? o->write_buffer_bytes : 64u << 20;
    rocksdb_block_based_table_options_t *t;

    s->opts = rocksdb_options_create();
    s->cache = rocksdb_cache_create_lru(cache);
    t = rocksdb_block_based_options_create();
    if (s->opts == NULL || s->cache == NULL || t == NULL) {
        if (t != NULL) {
            rocksdb_block_based_options_destroy(t);
        }
        return SHALE_ENOMEM;
    }
    /* The table options take ownership of the filter policy. */
    rocksdb_block_based_options_set_filter_policy(
        t, rocksdb_filterpolicy_create_bloom(10));
    rocksdb_block_based_options_set_block_cache(t, s->cache);
    rocksdb_options_set_block_based_table_factory(s->opts, t);
    rocksdb_block_based_options_destroy(t);

    rocksdb_options_set_create_if_missing(s->opts,
                                          o->create_if_missing ? 1 : 0);
    rocksdb_options_set_compression(s->opts,
                                    o->disable_compression
                                        ? rocksdb_no_compression
                                        : rocksdb_zstd_compression);
    rocksdb_options_set_write_buffer_size(s->opts, wbuf);
    /* RocksDB's own LOG file lives on the same disk as the data. Debian's
     * librocksdb 7.8 is built with assertions on, and once a write to that
     * file has failed (disk full) the next one aborts the process
     * (WritableFileWriter::AssertFalseAndGetStatusForPrevError). Errors reach
     * Shale as statuses anyway, so the LOG keeps only fatal lines. */
    rocksdb_options_set_info_log_level(s->opts, 4 /* FATAL_LEVEL */);
    rocksdb_options_set_keep_log_file_num(s->opts, 2);
    memtable_bloom(s);
    return SHALE_OK;
}

/* What one pass over every slot's data rows found (data_scan). */
typedef struct data_scan {
    uint64_t max_version;            /* the highest data version stored */
    uint64_t tagged;                 /* user keys holding a hash tag */
    char sample[KEY_SAMPLE * 4 + 4]; /* the first of them, escaped */
} data_scan_t;

/* Quote up to KEY_SAMPLE bytes of key into out (printable ASCII as is, '"'
 * and '\\' escaped, other bytes as \xHH, "..." when cut). */
void st_key_sample(char *out, size_t cap, const uint8_t *key, size_t klen)
{
    size_t n = 0;
    for (size_t i = 0; i < klen && i < KEY_SAMPLE && n + 5 < cap; i++) {
        uint8_t c = key[i];
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c >= 0x20 && c < 0x7f) {
            out[n++] = (char)c;
        } else {
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", c);
        }
    }
    if (klen > KEY_SAMPLE && n + 4 <= cap) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* One scan of every slot's data rows (seeking from slot to slot past the
 * session and changelog rows): the highest version stored and the keys
 * holding a hash tag. Only for a store written by a build that did not keep
 * VBOUND_KEY or KEYHASH_KEY: one pass at the first open, never again once
 * both rows are written. */
static int data_scan(store_t *s, data_scan_t *out, char *err)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts);
    uint8_t k[3];
    char *rerr = NULL;

    memset(out, 0, sizeof(*out));
    if (it == NULL) {
        set_err(err, "store_open: out of memory");
        return SHALE_ENOMEM;
    }
    for (uint32_t slot = 0; slot < STORE_MAX_SLOTS; slot++) {
        put_be16(k, (uint16_t)slot);
        k[2] = TAG_DATA;
        for (rocksdb_iter_seek(it, (const char *)k, sizeof(k)); rocksdb_iter_valid(it);
             rocksdb_iter_next(it)) {
            size_t klen, vlen, off, tlen;
            const char *key = rocksdb_iter_key(it, &klen);
            const char *val;

            if (klen < 3 || memcmp(key, k, 3) != 0) {
                break;
            }
            val = rocksdb_iter_value(it, &vlen);
            if (vlen >= VERSION_LEN && (get_be64(val) & ~TTL_FLAG) > out->max_version) {
                out->max_version = get_be64(val) & ~TTL_FLAG;
            }
            if (shale_key_tag(key + 3, klen - 3, &off, &tlen)) {
                if (out->tagged++ == 0) {
                    st_key_sample(out->sample, sizeof(out->sample), (const uint8_t *)key + 3,
                               klen - 3);
                }
            }
        }
    }
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    if (rerr != NULL) {
        return st_rdb_fail(err, rerr, "store_open: scan data rows");
    }
    return SHALE_OK;
}

/* Read the version bound row into s->vbound; *missing when there is none
 * (a store from a build without it: the caller scans). */
static int vbound_load(store_t *s, int *missing, char *err)
{
    char *rerr = NULL;
    size_t vlen = 0;
    char *val = rocksdb_get(s->db, s->ropts, VBOUND_KEY, sizeof(VBOUND_KEY), &vlen, &rerr);

    *missing = 0;
    if (rerr != NULL) {
        return st_rdb_fail(err, rerr, "read version bound");
    }
    if (val != NULL) {
        if (vlen != 8) {
            rocksdb_free(val);
            set_err(err, "version bound record has %zu bytes, expected 8", vlen);
            return SHALE_ECORRUPT;
        }
        s->vbound = get_be64(val);
        rocksdb_free(val);
        return SHALE_OK;
    }
    *missing = 1;
    return SHALE_OK;
}

/* The key-hash marker: *missing when the store does not say which key-hash
 * version placed its rows (a new store, or one written by a build from
 * before hash tags, which hashed whole keys: v1). A marker of this build's
 * version is the answer; an older one is treated as missing; a newer one
 * (a store written by a later build) is refused. */
static int keyhash_load(store_t *s, int *missing, char *err)
{
    char *rerr = NULL;
    size_t vlen = 0;
    char *val = rocksdb_get(s->db, s->ropts, KEYHASH_KEY, sizeof(KEYHASH_KEY), &vlen, &rerr);

    *missing = 0;
    if (rerr != NULL) {
        return st_rdb_fail(err, rerr, "read key-hash marker");
    }
    if (val == NULL) {
        *missing = 1;
        return SHALE_OK;
    }
    if (vlen != KEYHASH_VAL_LEN) {
        rocksdb_free(val);
        set_err(err, "key-hash marker has %zu bytes, expected %d", vlen, KEYHASH_VAL_LEN);
        return SHALE_ECORRUPT;
    }
    uint32_t v = get_be32((const uint8_t *)val);
    rocksdb_free(val);
    if (v > SHALE_KEYHASH_VERSION) {
        set_err(err,
                "the store's rows were placed with key-hash v%u, which this build (v%u) "
                "does not know: run a newer build",
                v, SHALE_KEYHASH_VERSION);
        return SHALE_ECORRUPT;
    }
    *missing = v != SHALE_KEYHASH_VERSION;
    return SHALE_OK;
}

/* A store without the marker (new, or from a build that hashed whole
 * keys): rows of keys without a hash tag are where this build looks for
 * them, whichever version placed them; a key with a tag was placed by
 * hashing the whole key and this build would look under its tag's slot. So
 * the store is accepted, and the marker written, only when the scan found
 * no key with a tag; else the open is refused (nothing is changed) with the
 * count and what to do. */
static int keyhash_verify(store_t *s, const data_scan_t *scan, char *err)
{
    uint8_t v[KEYHASH_VAL_LEN];
    char *rerr = NULL;

    if (scan->tagged > 0) {
        set_err(err,
                "%llu keys with a hash tag ({...}) were stored by a build that hashed "
                "whole keys; this build hashes the tag and would not find them. Re-import "
                "them (docs/operations.md, \"Upgrading to hash tags\"); first: \"%s\"",
                (unsigned long long)scan->tagged, scan->sample);
        return SHALE_ECORRUPT;
    }
    put_be32(v, SHALE_KEYHASH_VERSION);
    rocksdb_put(s->db, s->wopts, KEYHASH_KEY, sizeof(KEYHASH_KEY), (const char *)v, sizeof(v),
                &rerr);
    if (rerr != NULL) {
        return st_rdb_fail(err, rerr, "write key-hash marker");
    }
    return SHALE_OK;
}

/* The version bound and the key-hash marker; one scan of the data rows
 * when either row is missing. */
static int load_markers(store_t *s, char *err)
{
    int no_vbound, no_keyhash, rc;
    data_scan_t scan;

    if ((rc = vbound_load(s, &no_vbound, err)) != SHALE_OK ||
        (rc = keyhash_load(s, &no_keyhash, err)) != SHALE_OK) {
        return rc;
    }
    if (!no_vbound && !no_keyhash) {
        return SHALE_OK;
    }
    if ((rc = data_scan(s, &scan, err)) != SHALE_OK) {
        return rc;
    }
    if (no_keyhash && (rc = keyhash_verify(s, &scan, err)) != SHALE_OK) {
        return rc;
    }
    if (no_vbound) {
        s->vbound = scan.max_version;
        s->vbound_dirty = 1; /* written with the next batch */
    }
    return SHALE_OK;
}

int store_open(const char *dir, const store_options_t *opts, store_t **out,
               char *err)
{
    store_options_t defaults;
    store_t *s;
    char *rerr = NULL;
    char *val;
    size_t vlen = 0;
    int rc;

    if (out != NULL) {
        *out = NULL;
    }
    if (dir == NULL || out == NULL) {
        set_err(err, "store_open: NULL argument");
        return SHALE_EINVAL;
    }
    if (opts == NULL) {
        store_options_default(&defaults);
        opts = &defaults;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        set_err(err, "store_open: out of memory");
        return SHALE_ENOMEM;
    }
    rc = make_options(s, opts);
    s->ropts = rocksdb_readoptions_create();
    s->wopts = rocksdb_writeoptions_create();
    if (rc != SHALE_OK || s->ropts == NULL || s->wopts == NULL) {
        store_free(s);
        set_err(err, "store_open: out of memory");
        return SHALE_ENOMEM;
    }
    rocksdb_writeoptions_set_sync(s->wopts, opts->sync_writes ? 1 : 0);

    s->db = rocksdb_open(s->opts, dir, &rerr);
    if (rerr != NULL) {
        s->db = NULL;
        store_free(s);
        return st_rdb_fail(err, rerr, "open");
    }

    val = rocksdb_get(s->db, s->ropts, APPLIED_KEY, sizeof(APPLIED_KEY), &vlen,
                      &rerr);
    if (rerr != NULL) {
        store_free(s);
        return st_rdb_fail(err, rerr, "read applied index");
    }
    if (val != NULL) {
        if (vlen != 8) {
            rocksdb_free(val);
            store_free(s);
            set_err(err, "applied index record has %zu bytes, expected 8",
                    vlen);
            return SHALE_ECORRUPT;
        }
        s->applied = get_be64(val);
        rocksdb_free(val);
    }
    val = rocksdb_get(s->db, s->ropts, CLOCK_KEY, sizeof(CLOCK_KEY), &vlen, &rerr);
    if (rerr != NULL) {
        store_free(s);
        return st_rdb_fail(err, rerr, "read log clock");
    }
    if (val != NULL) {
        if (vlen != 8) {
            rocksdb_free(val);
            store_free(s);
            set_err(err, "log clock record has %zu bytes, expected 8", vlen);
            return SHALE_ECORRUPT;
        }
        s->clock = get_be64(val);
        rocksdb_free(val);
    }
    rc = load_markers(s, err);
    if (rc != SHALE_OK) {
        store_free(s);
        return rc;
    }
    *out = s;
    return SHALE_OK;
}

void store_close(store_t *s)
{
    if (s != NULL) {
        store_free(s);
    }
}

uint64_t store_applied_index(const store_t *s)
{
    return s != NULL ? s->applied : 0;
}

/* ---- Reads ----------------------------------------------------------------*/

int store_get(store_t *s, uint16_t slot, const uint8_t *key, size_t klen,
              store_value_t *out, char *err)
{
    char *rerr = NULL;
    char *val;
    size_t vlen = 0, dlen = 0;
    int rc;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (s == NULL || out == NULL || (key == NULL && klen > 0)) {
        set_err(err, "store_get: NULL argument");
        return SHALE_EINVAL;
    }
    if (slot >= STORE_MAX_SLOTS) {
        set_err(err, "store_get: slot %u out of range", (unsigned)slot);
        return SHALE_EINVAL;
    }
    rc = st_data_key(s, slot, key, klen, &dlen, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    val = rocksdb_get(s->db, s->ropts, (const char *)s->kbuf, dlen, &vlen,
                      &rerr);
    if (rerr != NULL) {
        return st_rdb_fail(err, rerr, "get");
    }
    if (val == NULL) {
        return SHALE_OK;
    }
    row_t row;
    if (st_row_decode(val, vlen, &row) != 0) {
        rocksdb_free(val);
        set_err(err, "get: stored value has %zu bytes, shorter than its header", vlen);
        return SHALE_ECORRUPT;
    }
    if (st_row_expired(&row, s->clock)) {
        rocksdb_free(val); /* expired at the log clock: absent */
        return SHALE_OK;
    }
    /* Copy into plain malloc memory: the caller frees with free(), and an
     * empty value still gets a non-NULL pointer so found <=> value != NULL. */
    out->value = malloc(row.vlen > 0 ? row.vlen : 1);
    if (out->value == NULL) {
        rocksdb_free(val);
        set_err(err, "get: out of memory for a %zu-byte value", vlen);
        return SHALE_ENOMEM;
    }
    memcpy(out->value, row.val, row.vlen);
    out->len = row.vlen;
    out->version = row.version;
    out->expires_at = row.expires_at;
    out->found = 1;
    rocksdb_free(val);
    return SHALE_OK;
}

/* Named metadata: [0xFFFF]['m']['u'][name]. The 'u' keeps user metadata
 * apart from the applied-index key ("applied" follows 'm' directly). */
#define META_NAME_MAX 64

static size_t meta_key(uint8_t *k, const char *name)
{
    size_t n = strlen(name);
    k[0] = 0xFF;
    k[1] = 0xFF;
    k[2] = TAG_META;
    k[3] = 'u';
    memcpy(k + 4, name, n);
    return 4 + n;
}

int store_apply_meta(store_t *s, uint64_t index, const char *name,
                     const uint8_t *val, size_t len, char *err)
{
    uint8_t k[4 + META_NAME_MAX];
    if (s == NULL || name == NULL || strlen(name) == 0 ||
        strlen(name) > META_NAME_MAX) {
        set_err(err, "store_apply_meta: bad arguments");
        return SHALE_EINVAL;
    }
    if (index != 0 && index <= s->applied)
        return SHALE_OK; /* replay of an applied entry */
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    if (wb == NULL) {
        set_err(err, "store_apply_meta: out of memory");
        return SHALE_ENOMEM;
    }
    size_t kl = meta_key(k, name);
    if (val == NULL)
        rocksdb_writebatch_delete(wb, (const char *)k, kl);
    else
        rocksdb_writebatch_put(wb, (const char *)k, kl, (const char *)val, len);
    return st_write_plain(s, wb, index, "apply meta", err);
}

int store_get_meta(store_t *s, const char *name, uint8_t **val, size_t *len,
                   char *err)
{
    uint8_t k[4 + META_NAME_MAX];
    char *rerr = NULL;
    size_t vlen = 0;
    *val = NULL;
    *len = 0;
    if (s == NULL || name == NULL || strlen(name) == 0 ||
        strlen(name) > META_NAME_MAX) {
        set_err(err, "store_get_meta: bad arguments");
        return SHALE_EINVAL;
    }
    size_t kl = meta_key(k, name);
    char *v = rocksdb_get(s->db, s->ropts, (const char *)k, kl, &vlen, &rerr);
    if (rerr != NULL)
        return st_rdb_fail(err, rerr, "get meta");
    if (v == NULL)
        return SHALE_ENOTFOUND;
    *val = (uint8_t *)v; /* rocksdb_get's buffer is malloc'd: free() it */
    *len = vlen;
    return SHALE_OK;
}

uint64_t store_estimate_keys(store_t *s)
{
    uint64_t n = 0;

    if (s == NULL ||
        rocksdb_property_int(s->db, "rocksdb.estimate-num-keys", &n) != 0) {
        return 0;
    }
    return n;
}

int store_property(store_t *s, const char *name, uint64_t *out)
{
    *out = 0;
    if (s == NULL || name == NULL)
        return -1;
    return rocksdb_property_int(s->db, name, out) == 0 ? 0 : -1;
}

void store_block_cache(store_t *s, uint64_t *usage, uint64_t *capacity)
{
    *usage = 0;
    *capacity = 0;
    if (s == NULL || s->cache == NULL)
        return;
    *usage = (uint64_t)rocksdb_cache_get_usage(s->cache);
    *capacity = (uint64_t)rocksdb_cache_get_capacity(s->cache);
}

/* ---- Durability, checkpoints ----------------------------------------------*/

int store_sync(store_t *s, char *err)
{
    char *rerr = NULL;

    if (s == NULL) {
        set_err(err, "store_sync: NULL store");
        return SHALE_EINVAL;
    }
    rocksdb_flush_wal(s->db, 1, &rerr);
    if (rerr != NULL) {
        return st_rdb_fail(err, rerr, "sync WAL");
    }
    return SHALE_OK;
}
