/* Storage engine: store.h on top of the RocksDB C API.
 *
 * Owns the rocksdb_t handle of one node with its options and block cache,
 * the in-memory copy of the applied index (always equal to the one on
 * disk after a successful write), the version bound and the key-hash marker
 * (the key-hash version the rows were placed with, checked at open). It
 * never exits or aborts on a RocksDB or file-system error, never writes a
 * mutation outside the batch that records its Raft index, and never moves
 * the cached applied index unless that batch was written.
 *
 * Session result record ([slot]['s'][client_id][seq] -> value), big-endian:
 *   [nops:4] then per op [-code:1][existed:1][version:8]
 * -code is the negated SHALE_* code of the op (0 = ok, 8 = CAS failed), so a
 * record is 4 + 10 * nops bytes. Session header ([slot]['c'][client_id]):
 *   [max_seq:8][last_ms:8]
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "keyhash.h"

#define TAG_DATA 'd'
#define TAG_RESULT 's'
#define TAG_HEADER 'c'
#define TAG_META 'm'
#define TAG_CLOG 'x'
#define CLOG_KEY_LEN 15 /* [slot:2]['x'][index:8][n:4] */
#define META_SLOT 0xFFFFu

#define HEADER_KEY_LEN 11 /* [slot:2]['c'][client:8] */
#define RESULT_KEY_LEN 19 /* [slot:2]['s'][client:8][seq:8] */
#define HEADER_VAL_LEN 16 /* [max_seq:8][last_ms:8] */
#define RESULT_OP_LEN 10  /* [-code:1][existed:1][version:8] */
#define VERSION_LEN 8

/* Pruning of old session results runs when a client's max_seq crosses a
 * multiple of this: it bounds both the work per apply (one short scan every
 * PRUNE_EVERY seqs) and the records kept (WINDOW + PRUNE_EVERY per client
 * whose acks keep up). */
#define PRUNE_EVERY 256u

static const char APPLIED_KEY[] = {(char)0xFF, (char)0xFF, TAG_META, 'a', 'p',
                                   'p',        'l',        'i',      'e', 'd'};
/* The version bound (see vbound_raise): [0xFFFF]['m']['v']... sorts apart
 * from the applied index ('a') and named metadata ('u'). */
static const char VBOUND_KEY[] = {(char)0xFF, (char)0xFF, TAG_META, 'v', 'b',
                                  'o',        'u',        'n',      'd'};
/* The key-hash marker (see keyhash_load, keyhash_verify): [0xFFFF]['m']['k']... ->
 * [version:4], the key-hash version (proto/keyhash.h) every data row's slot
 * was computed with. */
static const char KEYHASH_KEY[] = {(char)0xFF, (char)0xFF, TAG_META, 'k', 'e',
                                   'y',        'h',        'a',      's', 'h'};
#define KEYHASH_VAL_LEN 4
/* Bytes of a refused key quoted in the open error (escaped). */
#define KEY_SAMPLE 24

struct store {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_cache_t *cache;
    rocksdb_readoptions_t *ropts;
    rocksdb_writeoptions_t *wopts;
    uint64_t applied;
    /* An upper bound of every data version this store holds that was not
     * given by the version floor of an entry before the current one:
     * versions imported from another group and versions of the old + 1 term
     * (see next_version). A blind PUT whose floor is above it needs no read
     * of the old version. Persisted under VBOUND_KEY in the batch that raises
     * it; vbound_dirty says the row must be (re)written with the next batch
     * (a store from a build without the row: bound found by a scan at open). */
    uint64_t vbound;
    int vbound_dirty;
    /* Scratch buffer for data keys ([slot]['d'][key]); grows, never shrinks. */
    uint8_t *kbuf;
    size_t kcap;
    /* Slots whose changes are logged for a migration: bit per slot,
     * allocated when the first is turned on. */
    uint8_t *clog;
};

struct store_iter {
    rocksdb_t *db;
    const rocksdb_snapshot_t *snap;
    rocksdb_readoptions_t *ropts;
    rocksdb_iterator_t *it;
    uint8_t upper[3]; /* iterate_upper_bound points here: must outlive it */
    int started;
    int done; /* RocksDB asserts on Next() past the end: remember the end */
};

/* ---- Small helpers --------------------------------------------------------*/

__attribute__((format(printf, 2, 3))) static void set_err(char *err,
                                                          const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, STORE_ERRLEN, fmt, ap);
    va_end(ap);
}

/* Turn a RocksDB errptr into SHALE_ESTORAGE + message; frees the errptr. */
static int rdb_fail(char *err, char *rerr, const char *what)
{
    set_err(err, "%s: %s", what, rerr);
    rocksdb_free(rerr);
    return SHALE_ESTORAGE;
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const void *q)
{
    const uint8_t *p = q;
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint16_t get_be16(const void *q)
{
    const uint8_t *p = q;
    return (uint16_t)((p[0] << 8) | p[1]);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void header_key(uint8_t *k, uint16_t slot, uint64_t client)
{
    put_be16(k, slot);
    k[2] = TAG_HEADER;
    put_be64(k + 3, client);
}

static void result_key(uint8_t *k, uint16_t slot, uint64_t client, uint64_t seq)
{
    put_be16(k, slot);
    k[2] = TAG_RESULT;
    put_be64(k + 3, client);
    put_be64(k + 11, seq);
}

/* Build [slot]['d'][key] in s->kbuf. */
static int data_key(store_t *s, uint16_t slot, const uint8_t *key, size_t klen,
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
static void key_sample(char *out, size_t cap, const uint8_t *key, size_t klen)
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
            if (vlen >= VERSION_LEN && get_be64(val) > out->max_version) {
                out->max_version = get_be64(val);
            }
            if (shale_key_tag(key + 3, klen - 3, &off, &tlen)) {
                if (out->tagged++ == 0) {
                    key_sample(out->sample, sizeof(out->sample), (const uint8_t *)key + 3,
                               klen - 3);
                }
            }
        }
    }
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    if (rerr != NULL) {
        return rdb_fail(err, rerr, "store_open: scan data rows");
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
        return rdb_fail(err, rerr, "read version bound");
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
        return rdb_fail(err, rerr, "read key-hash marker");
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
        return rdb_fail(err, rerr, "write key-hash marker");
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
        return rdb_fail(err, rerr, "open");
    }

    val = rocksdb_get(s->db, s->ropts, APPLIED_KEY, sizeof(APPLIED_KEY), &vlen,
                      &rerr);
    if (rerr != NULL) {
        store_free(s);
        return rdb_fail(err, rerr, "read applied index");
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
    rc = data_key(s, slot, key, klen, &dlen, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    val = rocksdb_get(s->db, s->ropts, (const char *)s->kbuf, dlen, &vlen,
                      &rerr);
    if (rerr != NULL) {
        return rdb_fail(err, rerr, "get");
    }
    if (val == NULL) {
        return SHALE_OK;
    }
    if (vlen < VERSION_LEN) {
        rocksdb_free(val);
        set_err(err, "get: stored value has %zu bytes, shorter than its version",
                vlen);
        return SHALE_ECORRUPT;
    }
    /* Copy into plain malloc memory: the caller frees with free(), and an
     * empty value still gets a non-NULL pointer so found <=> value != NULL. */
    out->value = malloc(vlen - VERSION_LEN > 0 ? vlen - VERSION_LEN : 1);
    if (out->value == NULL) {
        rocksdb_free(val);
        set_err(err, "get: out of memory for a %zu-byte value", vlen);
        return SHALE_ENOMEM;
    }
    memcpy(out->value, val + VERSION_LEN, vlen - VERSION_LEN);
    out->len = vlen - VERSION_LEN;
    out->version = get_be64(val);
    out->found = 1;
    rocksdb_free(val);
    return SHALE_OK;
}

/* ---- Apply ----------------------------------------------------------------*/

typedef struct apply_ctx {
    store_t *s;
    rocksdb_writebatch_wi_t *wb;
    uint64_t index;
    uint64_t now_ms;
    uint64_t nop; /* ops executed so far in this entry (the n of versions) */
    char *err;
} apply_ctx_t;

/* Read key as the batch would leave it on top of the DB. *val is NULL when
 * absent, else freed by the caller with rocksdb_free. */
static int batch_get(apply_ctx_t *c, const void *key, size_t klen, char **val,
                     size_t *vlen)
{
    char *rerr = NULL;

    *val = rocksdb_writebatch_wi_get_from_batch_and_db(
        c->wb, c->s->db, c->s->ropts, key, klen, vlen, &rerr);
    if (rerr != NULL) {
        *val = NULL;
        return rdb_fail(c->err, rerr, "apply: read");
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
static void vbound_raise(store_t *s, uint64_t v)
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

static void vbound_row(store_t *s, uint8_t *v)
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

static int txn_ops_valid(const store_txn_op_t *ops, size_t n)
{
    if (n > 0 && ops == NULL) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (ops[i].key == NULL && ops[i].klen > 0) {
            return 0;
        }
        switch (ops[i].type) {
        case STORE_TXN_PUT:
            if (ops[i].value == NULL && ops[i].vlen > 0) {
                return 0;
            }
            break;
        case STORE_TXN_DEL:
        case STORE_TXN_GET:
            break;
        default:
            return 0;
        }
    }
    return 1;
}

static int txn_valid(const store_request_t *r)
{
    const store_txn_t *t = r->txn;

    if (r->nops != 0 || t->slot >= STORE_MAX_SLOTS ||
        t->ncompares + t->nsuccess + t->nfailure == 0 ||
        (t->ncompares > 0 && t->compares == NULL) ||
        !txn_ops_valid(t->success, t->nsuccess) ||
        !txn_ops_valid(t->failure, t->nfailure)) {
        return 0;
    }
    for (size_t i = 0; i < t->ncompares; i++) {
        const store_txn_compare_t *cp = &t->compares[i];
        if ((cp->key == NULL && cp->klen > 0) || cp->cmp < STORE_TXN_EQUAL ||
            cp->cmp > STORE_TXN_GREATER) {
            return 0;
        }
        switch (cp->target) {
        case STORE_TXN_VALUE:
            if (cp->value == NULL && cp->vlen > 0) {
                return 0;
            }
            break;
        case STORE_TXN_VERSION:
            break;
        case STORE_TXN_EXISTS:
            if (cp->cmp != STORE_TXN_EQUAL && cp->cmp != STORE_TXN_NOT_EQUAL) {
                return 0;
            }
            break;
        default:
            return 0;
        }
    }
    return 1;
}

static int request_valid(const store_request_t *r)
{
    if (r->txn != NULL) {
        return txn_valid(r);
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

/* Log one change of a migrating slot: under [slot]['x'][index][n], the
 * record [op][klen][key][vlen][version value] (version/value only for a
 * put). key is the store key after the slot prefix. */
static int changelog_put(apply_ctx_t *c, uint16_t slot, int op, const uint8_t *key,
                         size_t klen, const uint8_t *ver, const uint8_t *val, size_t vlen)
{
    uint8_t lk[CLOG_KEY_LEN], head[5], vhead[4];
    size_t stored = ver != NULL ? VERSION_LEN + vlen : 0;

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
                            (const char *)ver, val != NULL ? (const char *)val : ""};
    size_t sizes[5] = {sizeof(head), klen, sizeof(vhead), ver != NULL ? VERSION_LEN : 0,
                       ver != NULL ? vlen : 0};
    rocksdb_writebatch_wi_putv(c->wb, 1, &kp, &ks, ver != NULL ? 5 : 3, parts, sizes);
    return SHALE_OK;
}

/* Execute one op against the batch (reads see earlier ops of the entry). */
static int apply_op(apply_ctx_t *c, const store_op_t *op, store_result_t *res)
{
    store_t *s = c->s;
    char *cur = NULL;
    size_t curlen = 0, dlen = 0;
    uint64_t oldver = 0, newver;
    uint8_t verbuf[VERSION_LEN];
    int found, do_put = 0, do_del = 0;
    int rc;

    c->nop++;
    rc = data_key(s, op->slot, op->key, op->klen, &dlen, c->err);
    if (rc != SHALE_OK) {
        return rc;
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
    rc = batch_get(c, s->kbuf, dlen, &cur, &curlen);
    if (rc != SHALE_OK) {
        return rc;
    }
    found = cur != NULL;
    if (found) {
        if (curlen < VERSION_LEN) {
            rocksdb_free(cur);
            set_err(c->err, "apply: stored value has %zu bytes, shorter than "
                            "its version",
                    curlen);
            return SHALE_ECORRUPT;
        }
        oldver = get_be64(cur);
    }
    newver = next_version(c, oldver);
    if (newver != next_version(c, 0)) {
        vbound_raise(s, newver); /* the old + 1 term: above the floor */
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
            match = found && curlen - VERSION_LEN == op->expect_len &&
                    (op->expect_len == 0 ||
                     memcmp(cur + VERSION_LEN, op->expect, op->expect_len) ==
                         0);
            break;
        }
        if (!match) {
            res->code = SHALE_ECASFAILED;
            res->version = oldver;
        } else if (op->cas_delete) {
            do_del = 1;
        } else {
            do_put = 1;
        }
        break;
    }
    }
    rocksdb_free(cur);

write:
    if (do_put) {
        const char *parts[2];
        size_t sizes[2];
        const char *kp = (const char *)s->kbuf;

        put_be64(verbuf, newver);
        parts[0] = (const char *)verbuf;
        sizes[0] = VERSION_LEN;
        parts[1] = op->vlen > 0 ? (const char *)op->value : "";
        sizes[1] = op->vlen;
        /* putv: the value goes into the batch once, without a joined copy. */
        rocksdb_writebatch_wi_putv(c->wb, 1, &kp, &dlen, 2, parts, sizes);
        res->version = newver;
        if (store_changelog_on(s, op->slot)) {
            return changelog_put(c, op->slot, STORE_REC_PUT, s->kbuf + 2, dlen - 2, verbuf,
                                 op->value, op->vlen);
        }
    } else if (do_del) {
        if (found) {
            rocksdb_writebatch_wi_delete(c->wb, (const char *)s->kbuf, dlen);
            if (store_changelog_on(s, op->slot)) {
                return changelog_put(c, op->slot, STORE_REC_DEL, s->kbuf + 2, dlen - 2,
                                     NULL, NULL, 0);
            }
        }
        res->version = oldver;
    }
    return SHALE_OK;
}

/* Fill r->results from a stored session record. */
static int decode_results(apply_ctx_t *c, store_request_t *r, const char *val,
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

static int encode_results(apply_ctx_t *c, const store_request_t *r,
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

    result_key(lo, slot, client, 0);
    result_key(hi, slot, client, bound);
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
            rc = rdb_fail(c->err, rerr, "apply: prune sessions");
        }
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    for (size_t i = 0; rc == SHALE_OK && i < n; i++) {
        result_key(k, slot, client, seqs[i]);
        rocksdb_writebatch_wi_delete(c->wb, (const char *)k, RESULT_KEY_LEN);
    }
    free(seqs);
    return rc;
}

/* ---- Transactions ----------------------------------------------------------*/

/* Session record of a txn: [TXN_MARK:4][succeeded:1][n:4] then per result
 * [type:1][found:1][version:8][vlen:4][value]. The mark can never be an op
 * count of an ordinary record (their n is checked against nops). */
#define TXN_MARK 0xFFFFFFFFu
#define TXN_REC_HEAD 9
#define TXN_RES_HEAD 14

void store_txn_clear(store_txn_t *txn)
{
    if (txn == NULL) {
        return;
    }
    for (size_t i = 0; i < txn->nresults; i++) {
        free(txn->results[i].value);
    }
    free(txn->results);
    txn->results = NULL;
    txn->nresults = 0;
    txn->succeeded = 0;
}

static int is_txn_record(const char *val, size_t vlen)
{
    return vlen >= 4 && get_be32((const uint8_t *)val) == TXN_MARK;
}

/* Read key of slot as the batch leaves it: *found, *ver, and (when want_val)
 * *val (rocksdb_free) / *vlen of the user value. */
static int txn_read(apply_ctx_t *c, uint16_t slot, const uint8_t *key, size_t klen, int *found,
                    uint64_t *ver, char **raw, size_t *rawlen)
{
    size_t dlen = 0;
    int rc = data_key(c->s, slot, key, klen, &dlen, c->err);

    *found = 0;
    *ver = 0;
    *raw = NULL;
    *rawlen = 0;
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = batch_get(c, c->s->kbuf, dlen, raw, rawlen);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (*raw != NULL) {
        if (*rawlen < VERSION_LEN) {
            rocksdb_free(*raw);
            *raw = NULL;
            set_err(c->err, "txn: stored value has %zu bytes, shorter than its version", *rawlen);
            return SHALE_ECORRUPT;
        }
        *found = 1;
        *ver = get_be64(*raw);
    }
    return SHALE_OK;
}

static int cmp_holds(store_txn_cmp_t op, int order)
{
    switch (op) {
    case STORE_TXN_EQUAL:
        return order == 0;
    case STORE_TXN_NOT_EQUAL:
        return order != 0;
    case STORE_TXN_LESS:
        return order < 0;
    case STORE_TXN_GREATER:
        return order > 0;
    }
    return 0;
}

static int txn_compare(apply_ctx_t *c, uint16_t slot, const store_txn_compare_t *cp, int *holds)
{
    int found;
    uint64_t ver;
    char *raw;
    size_t rawlen;
    int rc = txn_read(c, slot, cp->key, cp->klen, &found, &ver, &raw, &rawlen);

    if (rc != SHALE_OK) {
        return rc;
    }
    *holds = 0;
    switch (cp->target) {
    case STORE_TXN_VALUE:
        if (found) {
            size_t have = rawlen - VERSION_LEN, n = have < cp->vlen ? have : cp->vlen;
            int order = n > 0 ? memcmp(raw + VERSION_LEN, cp->value, n) : 0;
            if (order == 0) {
                order = have < cp->vlen ? -1 : have > cp->vlen ? 1 : 0;
            }
            *holds = cmp_holds(cp->cmp, order < 0 ? -1 : order > 0 ? 1 : 0);
        }
        break;
    case STORE_TXN_VERSION:
        *holds = cmp_holds(cp->cmp, ver < cp->version ? -1 : ver > cp->version ? 1 : 0);
        break;
    case STORE_TXN_EXISTS:
        *holds = cmp_holds(cp->cmp, (found != 0) == (cp->exists != 0) ? 0 : 1);
        break;
    }
    rocksdb_free(raw);
    return SHALE_OK;
}

/* Run a txn against the batch. *code: SHALE_OK, or SHALE_ETOOLARGE when its
 * gets would return too much (then the batch is rolled back to where the
 * txn began and txn holds no results). */
static int apply_txn(apply_ctx_t *c, store_txn_t *t, int *code)
{
    const store_txn_op_t *ops;
    size_t nops, total = 0;
    int holds = 1, rc = SHALE_OK;
    char *rerr = NULL;

    *code = SHALE_OK;
    t->succeeded = 0;
    t->nresults = 0;
    t->results = NULL;
    for (size_t i = 0; i < t->ncompares && holds; i++) {
        rc = txn_compare(c, t->slot, &t->compares[i], &holds);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    t->succeeded = holds;
    ops = holds ? t->success : t->failure;
    nops = holds ? t->nsuccess : t->nfailure;
    if (nops == 0) {
        return SHALE_OK;
    }
    t->results = calloc(nops, sizeof(*t->results));
    if (t->results == NULL) {
        set_err(c->err, "txn: out of memory for %zu results", nops);
        return SHALE_ENOMEM;
    }
    t->nresults = nops;
    rocksdb_writebatch_wi_set_save_point(c->wb);
    for (size_t i = 0; i < nops && rc == SHALE_OK; i++) {
        store_txn_result_t *res = &t->results[i];
        res->type = ops[i].type;
        if (ops[i].type == STORE_TXN_GET) {
            char *raw;
            size_t rawlen;
            rc = txn_read(c, t->slot, ops[i].key, ops[i].klen, &res->found, &res->version, &raw,
                          &rawlen);
            if (rc != SHALE_OK || !res->found) {
                continue;
            }
            res->vlen = rawlen - VERSION_LEN;
            total += res->vlen;
            if (total > STORE_TXN_MAX_RESULT_BYTES) {
                rocksdb_free(raw);
                *code = SHALE_ETOOLARGE;
                break;
            }
            res->value = malloc(res->vlen > 0 ? res->vlen : 1);
            if (res->value == NULL) {
                rocksdb_free(raw);
                set_err(c->err, "txn: out of memory for a %zu-byte value", res->vlen);
                rc = SHALE_ENOMEM;
                break;
            }
            memcpy(res->value, raw + VERSION_LEN, res->vlen);
            rocksdb_free(raw);
            continue;
        }
        store_op_t op = {.type = ops[i].type == STORE_TXN_PUT ? STORE_OP_PUT : STORE_OP_DEL,
                         .slot = t->slot,
                         .key = ops[i].key,
                         .klen = ops[i].klen,
                         .value = ops[i].value,
                         .vlen = ops[i].vlen};
        store_result_t r = {0};
        rc = apply_op(c, &op, &r);
        res->version = r.version;
        res->found = op.type == STORE_OP_DEL ? r.existed : 0;
    }
    if (rc == SHALE_OK && *code != SHALE_OK) {
        rocksdb_writebatch_wi_rollback_to_save_point(c->wb, &rerr);
        if (rerr != NULL) {
            rc = rdb_fail(c->err, rerr, "txn: roll back");
        }
        store_txn_clear(t);
    }
    return rc;
}

static int encode_txn_results(apply_ctx_t *c, const store_txn_t *t, const uint8_t *rkey)
{
    size_t len = TXN_REC_HEAD;
    uint8_t *buf, *p;

    for (size_t i = 0; i < t->nresults; i++) {
        len += TXN_RES_HEAD + t->results[i].vlen;
    }
    buf = malloc(len);
    if (buf == NULL) {
        set_err(c->err, "apply: out of memory for a txn session record");
        return SHALE_ENOMEM;
    }
    put_be32(buf, TXN_MARK);
    buf[4] = t->succeeded ? 1 : 0;
    put_be32(buf + 5, (uint32_t)t->nresults);
    p = buf + TXN_REC_HEAD;
    for (size_t i = 0; i < t->nresults; i++) {
        const store_txn_result_t *r = &t->results[i];
        p[0] = (uint8_t)r->type;
        p[1] = r->found ? 1 : 0;
        put_be64(p + 2, r->version);
        put_be32(p + 10, (uint32_t)r->vlen);
        if (r->vlen > 0) {
            memcpy(p + TXN_RES_HEAD, r->value, r->vlen);
        }
        p += TXN_RES_HEAD + r->vlen;
    }
    rocksdb_writebatch_wi_put(c->wb, (const char *)rkey, RESULT_KEY_LEN, (const char *)buf, len);
    free(buf);
    return SHALE_OK;
}

static int decode_txn_results(apply_ctx_t *c, store_request_t *r, const char *val, size_t vlen)
{
    const uint8_t *p = (const uint8_t *)val, *end = p + vlen;
    store_txn_t *t = r->txn;
    uint32_t n;

    if (vlen < TXN_REC_HEAD) {
        goto corrupt;
    }
    n = get_be32(p + 5);
    if (n > (vlen - TXN_REC_HEAD) / TXN_RES_HEAD) {
        goto corrupt;
    }
    t->succeeded = p[4];
    t->results = n > 0 ? calloc(n, sizeof(*t->results)) : NULL;
    if (n > 0 && t->results == NULL) {
        set_err(c->err, "apply: out of memory decoding a txn session record");
        return SHALE_ENOMEM;
    }
    t->nresults = n;
    p += TXN_REC_HEAD;
    for (uint32_t i = 0; i < n; i++) {
        store_txn_result_t *res = &t->results[i];
        if ((size_t)(end - p) < TXN_RES_HEAD) {
            goto corrupt_free;
        }
        res->type = (store_txn_op_type_t)p[0];
        res->found = p[1];
        res->version = get_be64(p + 2);
        res->vlen = get_be32(p + 10);
        p += TXN_RES_HEAD;
        if ((size_t)(end - p) < res->vlen) {
            goto corrupt_free;
        }
        if (res->type == STORE_TXN_GET && res->found) {
            res->value = malloc(res->vlen > 0 ? res->vlen : 1);
            if (res->value == NULL) {
                store_txn_clear(t);
                set_err(c->err, "apply: out of memory decoding a txn session record");
                return SHALE_ENOMEM;
            }
            memcpy(res->value, p, res->vlen);
        }
        p += res->vlen;
    }
    if (p != end) {
        goto corrupt_free;
    }
    r->duplicate = 1;
    return SHALE_OK;
corrupt_free:
    store_txn_clear(t);
corrupt:
    set_err(c->err, "apply: txn session record of client %llu seq %llu is malformed (%zu bytes)",
            (unsigned long long)r->client_id, (unsigned long long)r->seq, vlen);
    return SHALE_ECORRUPT;
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
        return apply_txn(c, r->txn, &r->code);
    }
    if (r->client_id == 0) {
        for (size_t i = 0; i < r->nops; i++) {
            rc = apply_op(c, &r->ops[i], &r->results[i]);
            if (rc != SHALE_OK) {
                return rc;
            }
        }
        return SHALE_OK;
    }

    slot = r->txn != NULL ? r->txn->slot : r->ops[0].slot;
    header_key(hkey, slot, r->client_id);
    rc = batch_get(c, hkey, HEADER_KEY_LEN, &val, &vlen);
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
    result_key(rkey, slot, r->client_id, r->seq);
    if (!have_header || r->seq <= max_seq) {
        rc = batch_get(c, rkey, RESULT_KEY_LEN, &val, &vlen);
        if (rc != SHALE_OK) {
            return rc;
        }
        if (val != NULL) {
            if (is_txn_record(val, vlen) != (r->txn != NULL)) {
                /* Same (client, seq) but another kind of request: not a
                 * retry (as decode_results does for another op count). */
                r->duplicate = 1;
                r->code = SHALE_EINVAL;
                rc = SHALE_OK;
            } else if (r->txn != NULL) {
                rc = decode_txn_results(c, r, val, vlen);
            } else {
                rc = decode_results(c, r, val, vlen);
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
        rc = apply_txn(c, r->txn, &r->code);
        if (rc != SHALE_OK || r->code != SHALE_OK) {
            return rc; /* TOO_LARGE: nothing applied, nothing recorded */
        }
        rc = encode_txn_results(c, r->txn, rkey);
    } else {
        for (size_t i = 0; i < r->nops; i++) {
            rc = apply_op(c, &r->ops[i], &r->results[i]);
            if (rc != SHALE_OK) {
                return rc;
            }
        }
        rc = encode_results(c, r, rkey);
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

    if (new_max / PRUNE_EVERY != max_seq / PRUNE_EVERY &&
        new_max > STORE_SESSION_WINDOW) {
        uint64_t bound = new_max - STORE_SESSION_WINDOW;
        if (r->ack_floor < bound) {
            bound = r->ack_floor;
        }
        if (bound > 0) {
            rc = prune_results(c, slot, r->client_id, bound);
        }
    }
    return rc;
}

static void applied_value(uint8_t *v, uint64_t index)
{
    put_be64(v, index);
}

int store_apply(store_t *s, uint64_t index, uint64_t now_ms,
                store_request_t *reqs, size_t nreqs, int *skipped, char *err)
{
    apply_ctx_t c;
    uint8_t av[8], vb[8];
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
        applied_value(av, index);
        rocksdb_writebatch_wi_put(c.wb, APPLIED_KEY, sizeof(APPLIED_KEY),
                                  (const char *)av, sizeof(av));
        if (s->vbound_dirty) {
            vbound_row(s, vb);
            rocksdb_writebatch_wi_put(c.wb, VBOUND_KEY, sizeof(VBOUND_KEY),
                                      (const char *)vb, sizeof(vb));
        }
        rocksdb_write_writebatch_wi(s->db, s->wopts, c.wb, &rerr);
        if (rerr != NULL) {
            rc = rdb_fail(err, rerr, "apply: write batch");
        }
    }
    rocksdb_writebatch_wi_destroy(c.wb);
    if (rc == SHALE_OK) {
        s->applied = index;
        s->vbound_dirty = 0;
    }
    return rc;
}

/* Write a plain batch (plus the applied index when index != 0) and move the
 * cached index only on success. Takes ownership of wb. */
static int write_plain(store_t *s, rocksdb_writebatch_t *wb, uint64_t index,
                       const char *what, char *err)
{
    uint8_t av[8], vb[8];
    char *rerr = NULL;

    if (index != 0) {
        applied_value(av, index);
        rocksdb_writebatch_put(wb, APPLIED_KEY, sizeof(APPLIED_KEY),
                               (const char *)av, sizeof(av));
    }
    if (s->vbound_dirty) {
        vbound_row(s, vb);
        rocksdb_writebatch_put(wb, VBOUND_KEY, sizeof(VBOUND_KEY), (const char *)vb,
                               sizeof(vb));
    }
    rocksdb_write(s->db, s->wopts, wb, &rerr);
    rocksdb_writebatch_destroy(wb);
    if (rerr != NULL) {
        return rdb_fail(err, rerr, what);
    }
    if (index != 0) {
        s->applied = index;
    }
    s->vbound_dirty = 0;
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
    return write_plain(s, wb, index, "apply noop", err);
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
    return write_plain(s, wb, index, "apply meta", err);
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
        return rdb_fail(err, rerr, "get meta");
    if (v == NULL)
        return SHALE_ENOTFOUND;
    *val = (uint8_t *)v; /* rocksdb_get's buffer is malloc'd: free() it */
    *len = vlen;
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
                result_key(lo, slot, client, 0);
                if (client == UINT64_MAX) {
                    /* [slot]['s'+1] ends every record of the last client. */
                    memcpy(hi, lo, 3);
                    hi[2] = TAG_RESULT + 1;
                    rocksdb_writebatch_delete_range(
                        wb, (const char *)lo, RESULT_KEY_LEN,
                        (const char *)hi, 3);
                } else {
                    result_key(hi, slot, client + 1, 0);
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
            rc = rdb_fail(err, rerr, "expire sessions: scan");
        }
    }
    rocksdb_iter_destroy(it);
    if (rc != SHALE_OK) {
        rocksdb_writebatch_destroy(wb);
        return rc;
    }
    rc = write_plain(s, wb, index, "expire sessions: write batch", err);
    if (rc == SHALE_OK && expired != NULL) {
        *expired = count;
    }
    return rc;
}

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
    if (kl < 3 || vl < VERSION_LEN) {
        return SHALE_ECORRUPT;
    }
    *key = (const uint8_t *)k + 3;
    *klen = kl - 3;
    *value = (const uint8_t *)v + VERSION_LEN;
    *vlen = vl - VERSION_LEN;
    if (version != NULL) {
        *version = get_be64(v);
    }
    return 1;
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
        if (kl < 3 || vl < VERSION_LEN) {
            set_err(err, "scan: malformed data row in slot %u", (unsigned)slot);
            rc = SHALE_ECORRUPT;
            break;
        }
        const uint8_t *key = (const uint8_t *)k + 3;
        size_t klen = kl - 3;
        if (skip_equal && klen == alen && memcmp(key, after, alen) == 0)
            continue;
        skip_equal = 0;
        size_t vlen = keys_only ? 0 : vl - VERSION_LEN;
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
            memcpy(item->value, v + VERSION_LEN, vlen);
        item->vlen = vlen;
        item->version = get_be64((const uint8_t *)v);
        page->n++;
        bytes += klen + vlen;
    }
    if (rc == SHALE_OK) {
        char *rerr = NULL;
        rocksdb_iter_get_error(it, &rerr);
        if (rerr != NULL)
            rc = rdb_fail(err, rerr, "scan");
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    free(upper);
    free(seek);
    if (rc != SHALE_OK)
        store_scan_free(page);
    return rc;
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
    return write_plain(s, wb, index, "delete slot: write batch", err);
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
        rc = rdb_fail(err, rerr, "scan records");
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
                key_sample(q, sizeof(q), r.k + 1, r.kl - 1);
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
                vbound_raise(s, get_be64(r.v)); /* another group's version */
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
    return write_plain(s, wb, index, "apply records: write batch", err);
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
    return write_plain(s, wb, 0, "delete changelog: write batch", err);
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
        return rdb_fail(err, rerr, "sync WAL");
    }
    return SHALE_OK;
}

int store_checkpoint(store_t *s, const char *dir, char *err)
{
    rocksdb_checkpoint_t *cp;
    char *rerr = NULL;

    if (s == NULL || dir == NULL) {
        set_err(err, "store_checkpoint: NULL argument");
        return SHALE_EINVAL;
    }
    cp = rocksdb_checkpoint_object_create(s->db, &rerr);
    if (rerr != NULL) {
        return rdb_fail(err, rerr, "checkpoint");
    }
    /* log_size_for_flush 0: always flush the memtable first, so the
     * checkpoint is SST files only and needs no WAL replay. */
    rocksdb_checkpoint_create(cp, dir, 0, &rerr);
    rocksdb_checkpoint_object_destroy(cp);
    if (rerr != NULL) {
        return rdb_fail(err, rerr, "checkpoint");
    }
    return SHALE_OK;
}

static int sys_fail(char *err, const char *what, const char *path)
{
    set_err(err, "%s %s: %s", what, path, strerror(errno));
    return SHALE_ESTORAGE;
}

static int fsync_path(const char *path, char *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
        return sys_fail(err, "open", path);
    }
    if (fsync(fd) != 0) {
        int rc = sys_fail(err, "fsync", path);
        close(fd);
        return rc;
    }
    close(fd);
    return SHALE_OK;
}

/* Remove everything inside dir (not dir itself). */
static int remove_contents(const char *dir, char *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];
    int rc = SHALE_OK;

    if (d == NULL) {
        return sys_fail(err, "opendir", dir);
    }
    while (rc == SHALE_OK && (errno = 0, e = readdir(d)) != NULL) {
        struct stat st;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >=
            sizeof(path)) {
            set_err(err, "restore: path too long under %s", dir);
            rc = SHALE_EINVAL;
            break;
        }
        if (lstat(path, &st) != 0) {
            rc = sys_fail(err, "lstat", path);
        } else if (S_ISDIR(st.st_mode)) {
            rc = remove_contents(path, err);
            if (rc == SHALE_OK && rmdir(path) != 0) {
                rc = sys_fail(err, "rmdir", path);
            }
        } else if (unlink(path) != 0) {
            rc = sys_fail(err, "unlink", path);
        }
    }
    if (rc == SHALE_OK && errno != 0) {
        rc = sys_fail(err, "readdir", dir);
    }
    closedir(d);
    return rc;
}

static int copy_file(const char *src, const char *dst, char *err)
{
    char buf[64 * 1024];
    int in, out, rc = SHALE_OK;

    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return sys_fail(err, "open", src);
    }
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        rc = sys_fail(err, "create", dst);
        close(in);
        return rc;
    }
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = sys_fail(err, "read", src);
            break;
        }
        if (n == 0) {
            break;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR) {
                    continue;
                }
                rc = sys_fail(err, "write", dst);
                break;
            }
            off += w;
        }
        if (rc != SHALE_OK) {
            break;
        }
    }
    if (rc == SHALE_OK && fsync(out) != 0) {
        rc = sys_fail(err, "fsync", dst);
    }
    if (close(out) != 0 && rc == SHALE_OK) {
        rc = sys_fail(err, "close", dst);
    }
    close(in);
    return rc;
}

/* Is `inner` equal to or inside `outer` (both existing paths)? */
static int path_within(const char *inner, const char *outer)
{
    char a[PATH_MAX], b[PATH_MAX];
    size_t n;

    if (realpath(inner, a) == NULL || realpath(outer, b) == NULL) {
        return 0;
    }
    n = strlen(b);
    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/' || n == 1);
}

/* Rules:
 *  - ckpt_dir is checked (a directory holding CURRENT, not inside db_dir)
 *    before anything in db_dir is touched;
 *  - db_dir's CURRENT goes first and the checkpoint's CURRENT is copied last,
 *    after every other file is fsynced: a restore cut short by a crash leaves
 *    a directory without CURRENT, which never opens as a half-restored DB
 *    (it fails to open, or opens empty with applied index 0 when created);
 *  - only regular files are copied (a RocksDB checkpoint is flat). */
int store_restore(const char *ckpt_dir, const char *db_dir, char *err)
{
    char src[PATH_MAX], dst[PATH_MAX];
    struct stat st;
    DIR *d;
    struct dirent *e;
    int rc = SHALE_OK, created = 0;

    if (ckpt_dir == NULL || db_dir == NULL) {
        set_err(err, "store_restore: NULL argument");
        return SHALE_EINVAL;
    }
    if (snprintf(src, sizeof(src), "%s/CURRENT", ckpt_dir) >= (int)sizeof(src)) {
        set_err(err, "restore: path too long");
        return SHALE_EINVAL;
    }
    if (stat(src, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, "restore: %s is not a checkpoint (no CURRENT file)",
                ckpt_dir);
        return SHALE_EINVAL;
    }
    if (mkdir(db_dir, 0755) == 0) {
        created = 1;
    } else if (errno != EEXIST) {
        return sys_fail(err, "mkdir", db_dir);
    }
    if (path_within(ckpt_dir, db_dir) || path_within(db_dir, ckpt_dir)) {
        if (created) {
            rmdir(db_dir);
        }
        set_err(err, "restore: %s and %s overlap", ckpt_dir, db_dir);
        return SHALE_EINVAL;
    }

    if (snprintf(dst, sizeof(dst), "%s/CURRENT", db_dir) >= (int)sizeof(dst)) {
        set_err(err, "restore: path too long");
        return SHALE_EINVAL;
    }
    if (unlink(dst) != 0 && errno != ENOENT) {
        return sys_fail(err, "unlink", dst);
    }
    rc = fsync_path(db_dir, err);
    if (rc == SHALE_OK) {
        rc = remove_contents(db_dir, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }

    d = opendir(ckpt_dir);
    if (d == NULL) {
        return sys_fail(err, "opendir", ckpt_dir);
    }
    while (rc == SHALE_OK && (errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, "CURRENT") == 0) {
            continue;
        }
        if ((size_t)snprintf(src, sizeof(src), "%s/%s", ckpt_dir, e->d_name) >=
                sizeof(src) ||
            (size_t)snprintf(dst, sizeof(dst), "%s/%s", db_dir, e->d_name) >=
                sizeof(dst)) {
            set_err(err, "restore: path too long");
            rc = SHALE_EINVAL;
            break;
        }
        if (lstat(src, &st) != 0) {
            rc = sys_fail(err, "lstat", src);
        } else if (!S_ISREG(st.st_mode)) {
            set_err(err, "restore: %s is not a regular file", src);
            rc = SHALE_EINVAL;
        } else {
            rc = copy_file(src, dst, err);
        }
    }
    if (rc == SHALE_OK && errno != 0) {
        rc = sys_fail(err, "readdir", ckpt_dir);
    }
    closedir(d);
    if (rc == SHALE_OK) {
        rc = fsync_path(db_dir, err);
    }
    if (rc == SHALE_OK) {
        snprintf(src, sizeof(src), "%s/CURRENT", ckpt_dir);
        snprintf(dst, sizeof(dst), "%s/CURRENT", db_dir);
        rc = copy_file(src, dst, err);
    }
    if (rc == SHALE_OK) {
        rc = fsync_path(db_dir, err);
    }
    return rc;
}
