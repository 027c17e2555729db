/* Unit tests of the storage engine (storage/store.h): versions, CAS, the
 * applied-index no-op rule, the session table, slot scans and deletes,
 * checkpoints, and storage faults (bad path, full disk). Each test gets its
 * own temp dir under /tmp, removed afterwards. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* open_memstream, umount2 */
#endif
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keyhash.h"
#include "store.h"

static char g_dir[64];
static char g_db[128];
static store_t *g_s;
static char g_err[STORE_ERRLEN];

/* ---- Fixture and helpers ---------------------------------------------------*/

static int rm_cb(const char *path, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void open_store(void)
{
    store_options_t o;

    store_options_default(&o);
    o.block_cache_bytes = 4u << 20;
    o.write_buffer_bytes = 4u << 20;
    g_err[0] = '\0';
    ck_assert_msg(store_open(g_db, &o, &g_s, g_err) == SHALE_OK, "open: %s",
                  g_err);
}

static void close_store(void)
{
    store_close(g_s);
    g_s = NULL;
}

static void setup(void)
{
    strcpy(g_dir, "/tmp/shale_store_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_db, sizeof(g_db), "%s/db", g_dir);
    open_store();
}

static void teardown(void)
{
    close_store();
    rm_rf(g_dir);
}

static store_op_t op_put(uint16_t slot, const char *k, const char *v)
{
    store_op_t op = {.type = STORE_OP_PUT,
                     .slot = slot,
                     .key = (const uint8_t *)k,
                     .klen = strlen(k),
                     .value = (const uint8_t *)v,
                     .vlen = strlen(v)};
    return op;
}

static store_op_t op_del(uint16_t slot, const char *k)
{
    store_op_t op = {.type = STORE_OP_DEL,
                     .slot = slot,
                     .key = (const uint8_t *)k,
                     .klen = strlen(k)};
    return op;
}

static store_op_t op_cas(uint16_t slot, const char *k, const char *v,
                         store_cas_kind_t kind)
{
    store_op_t op = {.type = STORE_OP_CAS,
                     .slot = slot,
                     .key = (const uint8_t *)k,
                     .klen = strlen(k),
                     .value = (const uint8_t *)v,
                     .vlen = strlen(v),
                     .cas_kind = kind};
    return op;
}

/* Apply one single-op request in its own entry; returns the result. */
static store_result_t apply1(uint64_t index, uint64_t client, uint64_t seq,
                             store_op_t op, int *dup, int *code)
{
    store_result_t res;
    store_request_t r = {.client_id = client,
                         .seq = seq,
                         .nops = 1,
                         .ops = &op,
                         .results = &res};
    int skipped = -1;

    memset(&res, 0xAB, sizeof(res));
    g_err[0] = '\0';
    ck_assert_msg(store_apply(g_s, index, 1000 + index, &r, 1, &skipped,
                              g_err) == SHALE_OK,
                  "apply %llu: %s", (unsigned long long)index, g_err);
    ck_assert_int_eq(skipped, 0);
    if (dup != NULL) {
        *dup = r.duplicate;
    }
    if (code != NULL) {
        *code = r.code;
    } else {
        ck_assert_int_eq(r.code, SHALE_OK);
    }
    return res;
}

static store_result_t put(uint64_t index, uint16_t slot, const char *k,
                          const char *v)
{
    store_result_t res = apply1(index, 0, 0, op_put(slot, k, v), NULL, NULL);
    ck_assert_int_eq(res.code, SHALE_OK);
    return res;
}

/* Assert k's value (NULL: absent); returns its version. */
static uint64_t expect_val(uint16_t slot, const char *k, const char *v)
{
    store_value_t got;
    uint64_t ver;

    ck_assert_int_eq(store_get(g_s, slot, (const uint8_t *)k, strlen(k), &got,
                               g_err),
                     SHALE_OK);
    if (v == NULL) {
        ck_assert_int_eq(got.found, 0);
        ck_assert_ptr_null(got.value);
        return 0;
    }
    ck_assert_msg(got.found, "slot %u key %s missing", slot, k);
    ck_assert_uint_eq(got.len, strlen(v));
    ck_assert(memcmp(got.value, v, got.len) == 0);
    ver = got.version;
    free(got.value);
    return ver;
}

/* Count the raw RocksDB keys starting with prefix (the store must be
 * closed: the DB lock allows one opener). */
static size_t raw_count(const uint8_t *prefix, size_t plen)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_t *db;
    rocksdb_iterator_t *it;
    char *err = NULL;
    size_t n = 0;

    db = rocksdb_open_for_read_only(o, g_db, 0, &err);
    ck_assert_msg(err == NULL, "raw open: %s", err);
    it = rocksdb_create_iterator(db, ro);
    for (rocksdb_iter_seek(it, (const char *)prefix, plen);
         rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < plen || memcmp(k, prefix, plen) != 0) {
            break;
        }
        n++;
    }
    rocksdb_iter_destroy(it);
    rocksdb_close(db);
    rocksdb_readoptions_destroy(ro);
    rocksdb_options_destroy(o);
    return n;
}

static size_t count_results(uint16_t slot, uint64_t client)
{
    uint8_t p[11] = {(uint8_t)(slot >> 8), (uint8_t)slot, 's'};

    for (int i = 0; i < 8; i++) {
        p[3 + i] = (uint8_t)(client >> (56 - 8 * i));
    }
    return raw_count(p, sizeof(p));
}

static size_t count_headers(uint16_t slot)
{
    uint8_t p[3] = {(uint8_t)(slot >> 8), (uint8_t)slot, 'c'};
    return raw_count(p, sizeof(p));
}

/* ---- Basic ops, versions ---------------------------------------------------*/

START_TEST(test_put_get_versions)
{
    store_result_t r1, r2, r3, r4;
    store_op_t ops[2] = {op_put(1, "k", "x"), op_put(1, "k", "y")};
    store_result_t res[2];
    store_request_t req = {.nops = 2, .ops = ops, .results = res};
    int skipped;

    ck_assert_uint_eq(store_applied_index(g_s), 0);
    expect_val(1, "k", NULL);
    r1 = put(1, 1, "k", "v1");
    ck_assert_uint_eq(r1.version, (1ull << 16) | 1);
    ck_assert_int_eq(r1.existed, 0);
    ck_assert_uint_eq(expect_val(1, "k", "v1"), r1.version);
    r2 = put(2, 1, "k", "v2");
    ck_assert_uint_eq(r2.version, (2ull << 16) | 1);
    ck_assert_int_eq(r2.existed, 0); /* a PUT reports no existence */
    ck_assert_uint_eq(expect_val(1, "k", "v2"), r2.version);

    /* Two writes of one key in one entry: n counts ops, later sees earlier. */
    ck_assert_int_eq(store_apply(g_s, 3, 0, &req, 1, &skipped, g_err),
                     SHALE_OK);
    ck_assert_uint_eq(res[0].version, (3ull << 16) | 1);
    ck_assert_uint_eq(res[1].version, (3ull << 16) | 2);
    ck_assert_int_eq(res[1].existed, 0);
    ck_assert_uint_eq(expect_val(1, "k", "y"), res[1].version);
    ck_assert_uint_eq(store_applied_index(g_s), 3);

    /* Same key in another slot is another key. */
    r3 = put(4, 2, "k", "other");
    ck_assert_int_eq(r3.existed, 0);
    expect_val(1, "k", "y");
    r4 = put(5, 1, "k", "z");
    ck_assert(r4.version > res[1].version);
    ck_assert(store_estimate_keys(g_s) >= 1);
    ck_assert_int_eq(store_sync(g_s, g_err), SHALE_OK);
}
END_TEST

/* max(old + 1, index << 16 | n): the old + 1 term wins once an entry has more
 * than 0xFFFF ops on a key, and keeps winning in the next entry. */
START_TEST(test_version_max_rule)
{
    const size_t n = 0x10001; /* 65537 ops */
    store_op_t *ops = calloc(n, sizeof(*ops));
    store_result_t *res = calloc(n, sizeof(*res));
    store_request_t req = {.nops = n};
    store_result_t r;
    uint64_t last;
    int skipped;

    ck_assert_ptr_nonnull(ops);
    ck_assert_ptr_nonnull(res);
    for (size_t i = 0; i < n; i++) {
        ops[i] = op_put(3, "hot", "v");
    }
    req.ops = ops;
    req.results = res;
    ck_assert_int_eq(store_apply(g_s, 10, 0, &req, 1, &skipped, g_err),
                     SHALE_OK);
    for (size_t i = 1; i < n; i++) {
        ck_assert_uint_eq(res[i].version, res[i - 1].version + 1);
    }
    ck_assert_uint_eq(res[0].version, (10ull << 16) | 1);
    last = res[n - 1].version;
    ck_assert_uint_eq(last, (10ull << 16) + n); /* past 10 << 16 | 0xFFFF */
    r = put(11, 3, "hot", "w");
    ck_assert_uint_eq(r.version, last + 1); /* > (11 << 16) | 1 */
    ck_assert_uint_eq(expect_val(3, "hot", "w"), last + 1);

    /* Different keys in one entry get the op counter; a key deleted and put
     * again gets the floor of its new entry. */
    r = apply1(12, 0, 0, op_del(3, "hot"), NULL, NULL);
    ck_assert_uint_eq(r.version, last + 1);
    r = put(13, 3, "hot", "again");
    ck_assert_uint_eq(r.version, (13ull << 16) | 1);
    free(ops);
    free(res);
}
END_TEST

/* One data record (store.h record format) of key k with version ver. */
static size_t data_record(uint8_t *out, const char *k, uint64_t ver, const char *v)
{
    size_t kl = 1 + strlen(k), vl = 8 + strlen(v), at = 0;

    out[at++] = STORE_REC_PUT;
    for (int i = 3; i >= 0; i--) {
        out[at++] = (uint8_t)(kl >> (8 * i));
    }
    out[at++] = 'd';
    memcpy(out + at, k, kl - 1);
    at += kl - 1;
    for (int i = 3; i >= 0; i--) {
        out[at++] = (uint8_t)(vl >> (8 * i));
    }
    for (int i = 7; i >= 0; i--) {
        out[at++] = (uint8_t)(ver >> (8 * i));
    }
    memcpy(out + at, v, vl - 8);
    return at + vl - 8;
}

/* A PUT that does not read the old version (store_apply's blind PUT) must
 * still give a version above one imported from another group with a higher
 * Raft index, after a reopen, and for a store written before the bound was
 * kept (no bound row: found by the scan at open). Each part fails if the
 * bound is not raised by an import, not persisted, or not rebuilt. */
START_TEST(test_version_bound)
{
    const uint64_t far = 5000ull << 16; /* another group's index 5000 */
    const uint8_t vb_prefix[4] = {0xFF, 0xFF, 'm', 'v'};
    uint8_t rec[64];
    size_t n = data_record(rec, "moved", far, "m");
    store_result_t r;

    put(1, 5, "local", "x");
    ck_assert_int_eq(store_apply_records(g_s, 2, 5, rec, n, NULL, g_err), SHALE_OK);
    ck_assert_uint_eq(expect_val(5, "moved", "m"), far);
    r = put(3, 5, "moved", "after");
    ck_assert_uint_eq(r.version, far + 1);
    r = put(4, 5, "local", "y"); /* no import on this key: the floor, read or not */
    ck_assert_uint_eq(r.version, (4ull << 16) | 1);

    /* Persisted: the row is there and a reopened store still reads. */
    close_store();
    ck_assert_uint_eq(raw_count(vb_prefix, sizeof(vb_prefix)), 1);
    open_store();
    r = put(5, 5, "moved", "again");
    ck_assert_uint_eq(r.version, far + 2);

    /* A store from before the bound row: the open scans the data rows. */
    close_store();
    {
        rocksdb_options_t *o = rocksdb_options_create();
        rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
        char *err = NULL;
        rocksdb_t *db = rocksdb_open(o, g_db, &err);
        const char vbk[] = {(char)0xFF, (char)0xFF, 'm', 'v', 'b', 'o', 'u', 'n', 'd'};

        ck_assert_msg(err == NULL, "raw open: %s", err);
        rocksdb_delete(db, wo, vbk, sizeof(vbk), &err);
        ck_assert_msg(err == NULL, "raw delete: %s", err);
        rocksdb_close(db);
        rocksdb_writeoptions_destroy(wo);
        rocksdb_options_destroy(o);
    }
    ck_assert_uint_eq(raw_count(vb_prefix, sizeof(vb_prefix)), 0);
    open_store();
    r = put(6, 5, "moved", "third");
    ck_assert_uint_eq(r.version, far + 3);
    close_store();
    ck_assert_uint_eq(raw_count(vb_prefix, sizeof(vb_prefix)), 1); /* written back */
    open_store();
}
END_TEST

/* ---- Key-hash marker (docs/storage.md, "Key-hash version") ----------------*/

static const char KH_KEY[] = {(char)0xFF, (char)0xFF, 'm', 'k', 'e', 'y', 'h', 'a', 's', 'h'};

/* Write (v non-NULL) or delete a raw RocksDB key of the closed store: how a
 * test makes a store look like one from an older build. */
static void raw_write(const char *k, size_t kl, const char *v, size_t vl)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(o, g_db, &err);

    ck_assert_msg(err == NULL, "raw open: %s", err);
    if (v != NULL) {
        rocksdb_put(db, wo, k, kl, v, vl, &err);
    } else {
        rocksdb_delete(db, wo, k, kl, &err);
    }
    ck_assert_msg(err == NULL, "raw write: %s", err);
    rocksdb_close(db);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_options_destroy(o);
}

/* The marker's value in the closed store: its version, 0 when absent. */
static uint32_t raw_marker(void)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *err = NULL;
    size_t vl = 0;
    rocksdb_t *db = rocksdb_open_for_read_only(o, g_db, 0, &err);
    ck_assert_msg(err == NULL, "raw open: %s", err);
    char *v = rocksdb_get(db, ro, KH_KEY, sizeof(KH_KEY), &vl, &err);
    ck_assert_msg(err == NULL, "raw get: %s", err);
    uint32_t ver = 0;
    if (v != NULL) {
        ck_assert_uint_eq(vl, 4);
        ver = (uint32_t)(uint8_t)v[0] << 24 | (uint32_t)(uint8_t)v[1] << 16 |
              (uint32_t)(uint8_t)v[2] << 8 | (uint8_t)v[3];
        rocksdb_free(v);
    }
    rocksdb_close(db);
    rocksdb_readoptions_destroy(ro);
    rocksdb_options_destroy(o);
    return ver;
}

/* Put k where a build that hashed whole keys (key-hash v1) put it. */
static uint16_t v1_slot(const char *k)
{
    return (uint16_t)(shale_hash64(k, strlen(k), 0) % SHALE_DEFAULT_SLOTS);
}

/* A new store records the key-hash version it places rows with; a reopen
 * keeps it. */
START_TEST(test_keyhash_marker_new)
{
    close_store();
    ck_assert_uint_eq(raw_marker(), SHALE_KEYHASH_VERSION);
    open_store();
    put(1, 5, "{user1}.a", "x"); /* a v2 store may hold tagged keys */
    close_store();
    ck_assert_uint_eq(raw_marker(), SHALE_KEYHASH_VERSION);
    open_store();
    expect_val(5, "{user1}.a", "x");
}
END_TEST

/* A store from before hash tags (no marker) whose keys have no tag — none,
 * or only braces that make no tag — is where this build looks: it opens,
 * and the marker is written; every row still reads. A store missing both
 * the marker and the version bound gets both from the one scan. */
START_TEST(test_keyhash_upgrade_clean)
{
    const char *keys[] = {"plain", "{}a", "a{b", "a}b{", "a{}{b}", "x{"};
    const uint8_t vb_prefix[4] = {0xFF, 0xFF, 'm', 'v'};
    const char vbk[] = {(char)0xFF, (char)0xFF, 'm', 'v', 'b', 'o', 'u', 'n', 'd'};
    const uint64_t far = 7000ull << 16;
    uint8_t rec[64];
    size_t n = data_record(rec, "imported", far, "i");

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        put(1 + i, v1_slot(keys[i]), keys[i], keys[i]);
    }
    ck_assert_int_eq(store_apply_records(g_s, 100, 9, rec, n, NULL, g_err), SHALE_OK);
    close_store();
    raw_write(KH_KEY, sizeof(KH_KEY), NULL, 0);
    raw_write(vbk, sizeof(vbk), NULL, 0);
    ck_assert_uint_eq(raw_marker(), 0);
    ck_assert_uint_eq(raw_count(vb_prefix, sizeof(vb_prefix)), 0);

    open_store();
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        /* untagged: the v1 slot is the v2 slot */
        ck_assert_uint_eq(shale_key_slot(keys[i], strlen(keys[i]), SHALE_DEFAULT_SLOTS),
                          v1_slot(keys[i]));
        expect_val(v1_slot(keys[i]), keys[i], keys[i]);
    }
    store_result_t r = put(101, 9, "imported", "again"); /* bound rebuilt by the scan */
    ck_assert_uint_eq(r.version, far + 1);
    close_store();
    ck_assert_uint_eq(raw_marker(), SHALE_KEYHASH_VERSION);
    ck_assert_uint_eq(raw_count(vb_prefix, sizeof(vb_prefix)), 1);
    open_store();
}
END_TEST

/* A store from before hash tags holding keys with a tag (at their v1 slot,
 * where this build would not look): the open is refused with the count,
 * the first key and what to do, and nothing is written (a second try is
 * refused the same). Once they are gone (re-imported), it opens. */
START_TEST(test_keyhash_refuse_tagged)
{
    const char *tagged[] = {"{user1}.a", "{user1}.b", "x{\"q\"}"};
    store_t *s = (store_t *)g_err;

    put(1, v1_slot("plain"), "plain", "p");
    for (int i = 0; i < 3; i++) {
        put(2 + (uint64_t)i, v1_slot(tagged[i]), tagged[i], "t");
        ck_assert_uint_ne(v1_slot(tagged[i]),
                          shale_key_slot(tagged[i], strlen(tagged[i]), SHALE_DEFAULT_SLOTS));
    }
    close_store();
    raw_write(KH_KEY, sizeof(KH_KEY), NULL, 0);

    for (int attempt = 0; attempt < 2; attempt++) {
        g_err[0] = '\0';
        ck_assert_int_eq(store_open(g_db, NULL, &s, g_err), SHALE_ECORRUPT);
        ck_assert_ptr_null(s);
        ck_assert_msg(strstr(g_err, "3 keys with a hash tag") != NULL, "%s", g_err);
        ck_assert_msg(strstr(g_err, "Upgrading to hash tags") != NULL, "%s", g_err);
        ck_assert_msg(strstr(g_err, "first: \"") != NULL, "%s", g_err);
        ck_assert_uint_eq(raw_marker(), 0); /* refused: nothing written */
    }
    fprintf(stderr, "test_keyhash_refuse_tagged: %s\n", g_err);

    /* The operator's way out: the tagged keys are exported with the old
     * build and deleted; then this build opens the store. */
    for (int i = 0; i < 3; i++) {
        char k[32];
        size_t kl = strlen(tagged[i]);
        k[0] = (char)(v1_slot(tagged[i]) >> 8);
        k[1] = (char)v1_slot(tagged[i]);
        k[2] = 'd';
        memcpy(k + 3, tagged[i], kl);
        raw_write(k, 3 + kl, NULL, 0);
    }
    open_store();
    expect_val(v1_slot("plain"), "plain", "p");
    close_store();
    ck_assert_uint_eq(raw_marker(), SHALE_KEYHASH_VERSION);
    open_store();
}
END_TEST

/* A marker from a later build is refused; a damaged one too. */
START_TEST(test_keyhash_marker_bad)
{
    store_t *s = (store_t *)g_err;

    close_store();
    raw_write(KH_KEY, sizeof(KH_KEY), "\0\0\0\3", 4);
    ck_assert_int_eq(store_open(g_db, NULL, &s, g_err), SHALE_ECORRUPT);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(g_err, "key-hash v3") != NULL, "%s", g_err);
    raw_write(KH_KEY, sizeof(KH_KEY), "\0\2", 2);
    ck_assert_int_eq(store_open(g_db, NULL, &s, g_err), SHALE_ECORRUPT);
    ck_assert_msg(strstr(g_err, "key-hash marker has 2 bytes") != NULL, "%s", g_err);
    raw_write(KH_KEY, sizeof(KH_KEY), "\0\0\0\2", 4);
    open_store();
}
END_TEST

/* An imported batch must hold only keys of its slot by this build's key
 * hash: a batch placed by whole-key hashing (an older source) is refused. */
START_TEST(test_records_check_slot)
{
    uint8_t rec[256];
    const uint32_t S = SHALE_DEFAULT_SLOTS;
    uint16_t tag_slot = (uint16_t)shale_key_slot("{user1}.a", 9, S);
    size_t n = data_record(rec, "{user1}.a", 1, "a");
    n += data_record(rec + n, "{user1}.b", 2, "b");
    n += data_record(rec + n, "user1", 3, "c");

    ck_assert_int_eq(store_records_check_slot(rec, n, tag_slot, S, g_err), SHALE_OK);
    ck_assert_int_eq(store_records_check_slot(NULL, 0, tag_slot, S, g_err), SHALE_OK);
    /* The v1 slot of one of the keys: refused, naming the key. */
    g_err[0] = '\0';
    ck_assert_int_eq(store_records_check_slot(rec, n, v1_slot("{user1}.a"), S, g_err),
                     SHALE_EINVAL);
    ck_assert_msg(strstr(g_err, "{user1}.a") != NULL, "%s", g_err);
    /* A key of another slot after good ones. */
    size_t m = n + data_record(rec + n, "other", 4, "d");
    if (shale_key_slot("other", 5, S) != tag_slot) {
        ck_assert_int_eq(store_records_check_slot(rec, m, tag_slot, S, g_err), SHALE_EINVAL);
        ck_assert_msg(strstr(g_err, "\"other\"") != NULL, "%s", g_err);
    }
    /* Session records carry no user key: not checked. A cut batch is
     * malformed. */
    uint8_t ses[16] = {STORE_REC_PUT, 0, 0, 0, 2, 'c', 'z', 0, 0, 0, 1, 'v'};
    ck_assert_int_eq(store_records_check_slot(ses, 12, tag_slot, S, g_err), SHALE_OK);
    ck_assert_int_eq(store_records_check_slot(rec, n - 1, tag_slot, S, g_err), SHALE_EINVAL);
    ck_assert_msg(strstr(g_err, "malformed") != NULL, "%s", g_err);
    ck_assert_int_eq(store_records_check_slot(rec, n, tag_slot, 0, g_err), SHALE_EINVAL);
}
END_TEST

START_TEST(test_cas)
{
    store_result_t r, first;
    store_op_t op;
    uint64_t v;

    /* ABSENT: succeeds on a missing key, fails (existed, version) after. */
    first = apply1(1, 0, 0, op_cas(0, "c", "a", STORE_CAS_ABSENT), NULL, NULL);
    ck_assert_int_eq(first.code, SHALE_OK);
    ck_assert_uint_eq(first.version, (1ull << 16) | 1);
    r = apply1(2, 0, 0, op_cas(0, "c", "b", STORE_CAS_ABSENT), NULL, NULL);
    ck_assert_int_eq(r.code, SHALE_ECASFAILED);
    ck_assert_int_eq(r.existed, 1);
    ck_assert_uint_eq(r.version, first.version);
    ck_assert_uint_eq(expect_val(0, "c", "a"), first.version);
    ck_assert_uint_eq(store_applied_index(g_s), 2);

    /* VERSION */
    op = op_cas(0, "c", "b", STORE_CAS_VERSION);
    op.expect_version = first.version + 5;
    r = apply1(3, 0, 0, op, NULL, NULL);
    ck_assert_int_eq(r.code, SHALE_ECASFAILED);
    ck_assert_uint_eq(r.version, first.version);
    ck_assert_uint_eq(expect_val(0, "c", "a"), first.version);
    op.expect_version = first.version;
    r = apply1(4, 0, 0, op, NULL, NULL);
    ck_assert_int_eq(r.code, SHALE_OK);
    ck_assert_uint_eq(r.version, (4ull << 16) | 1);
    v = expect_val(0, "c", "b");
    ck_assert_uint_eq(v, r.version);

    /* VALUE */
    op = op_cas(0, "c", "c", STORE_CAS_VALUE);
    op.expect = (const uint8_t *)"a";
    op.expect_len = 1;
    r = apply1(5, 0, 0, op, NULL, NULL);
    ck_assert_int_eq(r.code, SHALE_ECASFAILED);
    ck_assert_int_eq(r.existed, 1);
    ck_assert_uint_eq(r.version, v);
    ck_assert_uint_eq(expect_val(0, "c", "b"), v);
    op.expect = (const uint8_t *)"bb"; /* prefix match is no match */
    op.expect_len = 2;
    r = apply1(6, 0, 0, op, NULL, NULL);
    ck_assert_int_eq(r.code, SHALE_ECASFAILED);
    op.expect = (const uint8_t *)"b";
    op.expect_len = 1;
    r = apply1(7, 0, 0, op, NULL, NULL);
    ck_assert_int_eq(r.code, SHALE_OK);
    v = expect_val(0, "c", "c");

    /* VALUE and VERSION on an absent key fail with existed = 0. */
    op.key = (const uint8_t *)"none";
    op.klen = 4;
    r = apply1(8, 0, 0, op, NULL, NULL);
    ck_assert_int_eq(r.code, SHALE_ECASFAILED);
    ck_assert_int_eq(r.existed, 0);
    ck_assert_uint_eq(r.version, 0);
    op.cas_kind = STORE_CAS_VERSION;
    op.expect_version = 0;
    r = apply1(9, 0, 0, op, NULL, NULL);
    ck_assert_int_eq(r.code, SHALE_ECASFAILED);
    expect_val(0, "none", NULL);

    /* cas_delete: fails on mismatch (value kept), deletes on match. */
    op = op_cas(0, "c", "", STORE_CAS_VERSION);
    op.cas_delete = 1;
    op.expect_version = v - 1;
    r = apply1(10, 0, 0, op, NULL, NULL);
    ck_assert_int_eq(r.code, SHALE_ECASFAILED);
    expect_val(0, "c", "c");
    op.expect_version = v;
    r = apply1(11, 0, 0, op, NULL, NULL);
    ck_assert_int_eq(r.code, SHALE_OK);
    ck_assert_int_eq(r.existed, 1);
    ck_assert_uint_eq(r.version, v);
    expect_val(0, "c", NULL);
}
END_TEST

/* PUT then CAS on the same key in one entry: the CAS sees the PUT. */
START_TEST(test_batch_sees_earlier_ops)
{
    store_op_t ops[3] = {op_put(4, "k", "one"), op_cas(4, "k", "two",
                                                       STORE_CAS_VALUE),
                         op_del(4, "gone")};
    store_result_t res[3];
    store_request_t req = {.nops = 3, .ops = ops, .results = res};
    int skipped;

    put(1, 4, "gone", "x");
    ops[1].expect = (const uint8_t *)"one";
    ops[1].expect_len = 3;
    ck_assert_int_eq(store_apply(g_s, 2, 0, &req, 1, &skipped, g_err),
                     SHALE_OK);
    ck_assert_int_eq(res[1].code, SHALE_OK);
    ck_assert_uint_eq(res[1].version, (2ull << 16) | 2);
    ck_assert_int_eq(res[2].existed, 1);
    expect_val(4, "k", "two");
    expect_val(4, "gone", NULL);
}
END_TEST

START_TEST(test_delete)
{
    store_result_t p, r;

    p = put(1, 7, "d", "v");
    r = apply1(2, 0, 0, op_del(7, "d"), NULL, NULL);
    ck_assert_int_eq(r.code, SHALE_OK);
    ck_assert_int_eq(r.existed, 1);
    ck_assert_uint_eq(r.version, p.version);
    expect_val(7, "d", NULL);
    r = apply1(3, 0, 0, op_del(7, "d"), NULL, NULL);
    ck_assert_int_eq(r.code, SHALE_OK);
    ck_assert_int_eq(r.existed, 0);
    ck_assert_uint_eq(r.version, 0);
    ck_assert_uint_eq(store_applied_index(g_s), 3);
}
END_TEST

/* ---- Applied index ---------------------------------------------------------*/

START_TEST(test_reapply_is_noop)
{
    store_op_t op = op_put(1, "k", "late");
    store_result_t res;
    store_request_t req = {.nops = 1, .ops = &op, .results = &res};
    int skipped = 0;
    uint64_t v;

    put(5, 1, "k", "first");
    v = expect_val(1, "k", "first");
    for (uint64_t idx = 0; idx <= 5; idx++) {
        skipped = 0;
        ck_assert_int_eq(store_apply(g_s, idx, 0, &req, 1, &skipped, g_err),
                         SHALE_OK);
        ck_assert_int_eq(skipped, 1);
    }
    ck_assert_int_eq(store_apply_noop(g_s, 4, g_err), SHALE_OK);
    ck_assert_uint_eq(store_applied_index(g_s), 5);
    ck_assert_uint_eq(expect_val(1, "k", "first"), v);

    /* Persisted: survives close/reopen, and the no-op rule still holds. */
    close_store();
    open_store();
    ck_assert_uint_eq(store_applied_index(g_s), 5);
    skipped = 0;
    ck_assert_int_eq(store_apply(g_s, 5, 0, &req, 1, &skipped, g_err),
                     SHALE_OK);
    ck_assert_int_eq(skipped, 1);
    ck_assert_uint_eq(expect_val(1, "k", "first"), v);

    /* store_apply_noop moves the index with no data change. */
    ck_assert_int_eq(store_apply_noop(g_s, 9, g_err), SHALE_OK);
    ck_assert_uint_eq(store_applied_index(g_s), 9);
    ck_assert_int_eq(store_apply(g_s, 9, 0, &req, 1, &skipped, g_err),
                     SHALE_OK);
    ck_assert_int_eq(skipped, 1);
    close_store();
    open_store();
    ck_assert_uint_eq(store_applied_index(g_s), 9);
    ck_assert_int_eq(store_apply(g_s, 10, 0, NULL, 0, &skipped, g_err),
                     SHALE_OK);
    ck_assert_int_eq(skipped, 0);
    ck_assert_uint_eq(store_applied_index(g_s), 10);
}
END_TEST

/* ---- Sessions --------------------------------------------------------------*/

START_TEST(test_session_duplicate_later_entry)
{
    store_result_t first, again;
    store_op_t cas;
    int dup = -1, code;

    first = apply1(1, 7, 1, op_put(2, "k", "a"), &dup, &code);
    ck_assert_int_eq(code, SHALE_OK);
    ck_assert_int_eq(dup, 0);
    again = apply1(2, 7, 1, op_put(2, "k", "b"), &dup, &code);
    ck_assert_int_eq(code, SHALE_OK);
    ck_assert_int_eq(dup, 1);
    ck_assert_int_eq(again.code, first.code);
    ck_assert_uint_eq(again.version, first.version);
    ck_assert_int_eq(again.existed, first.existed);
    ck_assert_uint_eq(expect_val(2, "k", "a"), first.version);
    ck_assert_uint_eq(store_applied_index(g_s), 2);

    /* A failed CAS is remembered as failed, even once it would match. */
    cas = op_cas(2, "k", "c", STORE_CAS_ABSENT);
    first = apply1(3, 7, 2, cas, &dup, &code);
    ck_assert_int_eq(first.code, SHALE_ECASFAILED);
    apply1(4, 0, 0, op_del(2, "k"), NULL, NULL);
    again = apply1(5, 7, 2, cas, &dup, &code);
    ck_assert_int_eq(dup, 1);
    ck_assert_int_eq(again.code, SHALE_ECASFAILED);
    ck_assert_int_eq(again.existed, 1);
    ck_assert_uint_eq(again.version, first.version);
    expect_val(2, "k", NULL);

    /* Survives restart; another client's seq 1 is its own. */
    close_store();
    open_store();
    again = apply1(6, 7, 1, op_put(2, "k", "b"), &dup, &code);
    ck_assert_int_eq(dup, 1);
    expect_val(2, "k", NULL);
    apply1(7, 8, 1, op_put(2, "k", "b"), &dup, &code);
    ck_assert_int_eq(dup, 0);
    expect_val(2, "k", "b");
}
END_TEST

START_TEST(test_session_duplicate_same_entry)
{
    store_op_t op1[2] = {op_put(9, "a", "1"), op_put(9, "b", "1")};
    store_op_t op2[2] = {op_put(9, "a", "2"), op_put(9, "b", "2")};
    store_op_t op3 = op_put(9, "c", "3");
    store_result_t r1[2], r2[2], r3;
    store_request_t reqs[3] = {
        {.client_id = 42, .seq = 10, .nops = 2, .ops = op1, .results = r1},
        {.client_id = 42, .seq = 10, .nops = 2, .ops = op2, .results = r2},
        {.client_id = 42, .seq = 11, .nops = 1, .ops = &op3, .results = &r3},
    };
    int skipped;

    ck_assert_int_eq(store_apply(g_s, 3, 100, reqs, 3, &skipped, g_err),
                     SHALE_OK);
    ck_assert_int_eq(reqs[0].duplicate, 0);
    ck_assert_int_eq(reqs[1].duplicate, 1);
    ck_assert_int_eq(reqs[1].code, SHALE_OK);
    ck_assert_int_eq(reqs[2].duplicate, 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_uint_eq(r2[i].version, r1[i].version);
        ck_assert_int_eq(r2[i].code, r1[i].code);
    }
    ck_assert_uint_eq(expect_val(9, "a", "1"), r1[0].version);
    ck_assert_uint_eq(expect_val(9, "b", "1"), r1[1].version);
    expect_val(9, "c", "3");

    /* A "retry" with another op count is not a retry. */
    reqs[0].nops = 1;
    ck_assert_int_eq(store_apply(g_s, 4, 100, reqs, 1, &skipped, g_err),
                     SHALE_OK);
    ck_assert_int_eq(reqs[0].code, SHALE_EINVAL);
    expect_val(9, "a", "1");
}
END_TEST

/* Pipelined seqs may arrive out of order within the window; a seq a whole
 * window behind the highest one is unknowable: ESESSION, nothing applied. */
START_TEST(test_session_window)
{
    int dup, code;
    store_result_t r;

    apply1(1, 5, 5000, op_put(1, "w", "5000"), &dup, &code);
    ck_assert_int_eq(code, SHALE_OK);
    apply1(2, 5, 4999, op_put(1, "x", "4999"), &dup, &code);
    ck_assert_int_eq(code, SHALE_OK);
    ck_assert_int_eq(dup, 0);
    expect_val(1, "x", "4999");

    r = apply1(3, 5, 5000 - STORE_SESSION_WINDOW, op_put(1, "w", "old"), &dup,
               &code);
    ck_assert_int_eq(code, SHALE_ESESSION);
    ck_assert_int_eq(dup, 0);
    expect_val(1, "w", "5000");
    ck_assert_uint_eq(store_applied_index(g_s), 3);

    r = apply1(4, 5, 5000 - STORE_SESSION_WINDOW + 1, op_put(1, "y", "ok"),
               &dup, &code);
    ck_assert_int_eq(code, SHALE_OK);
    ck_assert_int_eq(r.code, SHALE_OK);
    expect_val(1, "y", "ok");

    /* The sessions of slot 1 hold one header for client 5. */
    close_store();
    ck_assert_uint_eq(count_headers(1), 1);
    ck_assert_uint_eq(count_results(1, 5), 3);
    open_store();
}
END_TEST

/* Apply seqs [from, to] of client in entries of 64 requests. */
static void apply_seqs(uint64_t *index, uint64_t client, uint64_t from,
                       uint64_t to, int acks)
{
    enum { PER = 64 };
    store_op_t ops[PER];
    store_result_t res[PER];
    store_request_t reqs[PER];
    int skipped;

    for (uint64_t s = from; s <= to;) {
        size_t n = 0;
        for (; n < PER && s <= to; n++, s++) {
            ops[n] = op_put(6, "p", "v");
            reqs[n] = (store_request_t){.client_id = client,
                                        .seq = s,
                                        .ack_floor = acks ? s : 0,
                                        .nops = 1,
                                        .ops = &ops[n],
                                        .results = &res[n]};
        }
        (*index)++;
        ck_assert_int_eq(store_apply(g_s, *index, 1000, reqs, n, &skipped,
                                     g_err),
                         SHALE_OK);
        for (size_t i = 0; i < n; i++) {
            ck_assert_int_eq(reqs[i].code, SHALE_OK);
            ck_assert_int_eq(reqs[i].duplicate, 0);
        }
    }
}

static int retry_code(uint64_t *index, uint64_t client, uint64_t seq, int *dup)
{
    int code;

    (*index)++;
    apply1(*index, client, seq, op_put(6, "p", "retry"), dup, &code);
    return code;
}

/* Records with seq < min(ack_floor, max_seq - WINDOW) of a busy (slot,
 * client) are pruned by a scan when max_seq crosses a multiple of
 * PRUNE_EVERY (4096); a pruned seq's retry is then too old (ESESSION),
 * never applied a second time. */
START_TEST(test_session_prune)
{
    const uint64_t cross = 2 * 4096; /* the first crossing with a bound > 0 */
    uint64_t idx = 0;
    int dup;

    /* Client 1 acks everything; client 2 never acks (ack_floor 0). */
    apply_seqs(&idx, 1, 1, cross - 1, 1);
    apply_seqs(&idx, 2, 1, cross - 1, 0);
    /* Too old, but the record is still there: a duplicate. */
    ck_assert_int_eq(retry_code(&idx, 1, 1, &dup), SHALE_OK);
    ck_assert_int_eq(dup, 1);
    close_store();
    ck_assert_uint_eq(count_results(6, 1), cross - 1);
    open_store();

    apply_seqs(&idx, 1, cross, cross, 1);
    apply_seqs(&idx, 2, cross, cross, 0);
    ck_assert_int_eq(retry_code(&idx, 1, 1, &dup), SHALE_ESESSION);
    ck_assert_int_eq(retry_code(&idx, 1, cross - 4096 - 1, &dup), SHALE_ESESSION);
    ck_assert_int_eq(retry_code(&idx, 1, cross - 4096, &dup), SHALE_OK);
    ck_assert_int_eq(dup, 1);
    ck_assert_int_eq(retry_code(&idx, 2, 1, &dup), SHALE_OK);
    ck_assert_int_eq(dup, 1);
    expect_val(6, "p", "v");

    close_store();
    ck_assert_uint_eq(count_results(6, 1), 4096 + 1);
    ck_assert_uint_eq(count_results(6, 2), cross);
    open_store();
}
END_TEST

/* A quiet (slot, client) — its seqs thousands apart, as a router's are in
 * each slot — drops its previous result by key, without a scan: one record
 * stays. A record a point delete cannot name (kept because its successor
 * came within the window) stays until the next scan, still answering its
 * retry with the first outcome; the scan at a multiple of PRUNE_SCAN_EVERY
 * (2^20) removes it, and the retry is then too old. */
START_TEST(test_session_prune_point)
{
    uint64_t idx = 0;
    int dup;

    for (uint64_t seq = 1; seq <= 20001; seq += 5000) {
        apply_seqs(&idx, 4, seq, seq, 1);
        close_store();
        ck_assert_uint_eq(count_results(6, 4), 1);
        open_store();
    }
    /* 20002 within the window of 20001: both kept. */
    apply_seqs(&idx, 4, 20002, 20002, 1);
    /* 30000: 20002 (the header's max) dropped by key, 20001 left. */
    apply_seqs(&idx, 4, 30000, 30000, 1);
    close_store();
    ck_assert_uint_eq(count_results(6, 4), 2);
    open_store();
    ck_assert_int_eq(retry_code(&idx, 4, 20001, &dup), SHALE_OK);
    ck_assert_int_eq(dup, 1);
    ck_assert_int_eq(retry_code(&idx, 4, 20002, &dup), SHALE_ESESSION);
    /* Past 2^20: the scan takes what is left below the bound. */
    apply_seqs(&idx, 4, (1u << 20) + 7, (1u << 20) + 7, 1);
    close_store();
    ck_assert_uint_eq(count_results(6, 4), 1);
    open_store();
    ck_assert_int_eq(retry_code(&idx, 4, 20001, &dup), SHALE_ESESSION);
    expect_val(6, "p", "v");
}
END_TEST

/* The scan also sees records written earlier in the same entry: seq 1 and
 * 2 are applied, then a seq past 2^20 (acking all) prunes both within the
 * batch, and a retry of seq 2 later in that same entry is already too
 * old. */
START_TEST(test_session_prune_in_batch)
{
    store_op_t ops[4] = {op_put(6, "a", "1"), op_put(6, "b", "2"),
                         op_put(6, "c", "big"), op_put(6, "b", "again")};
    store_result_t res[4];
    store_request_t reqs[4];
    const uint64_t seqs[4] = {1, 2, (1u << 20) + 1, 2};
    int skipped;

    for (int i = 0; i < 4; i++) {
        reqs[i] = (store_request_t){.client_id = 3, .seq = seqs[i],
                                    .ack_floor = seqs[i], .nops = 1,
                                    .ops = &ops[i], .results = &res[i]};
    }
    ck_assert_int_eq(store_apply(g_s, 1, 0, reqs, 4, &skipped, g_err),
                     SHALE_OK);
    ck_assert_int_eq(reqs[0].code, SHALE_OK);
    ck_assert_int_eq(reqs[1].code, SHALE_OK);
    ck_assert_int_eq(reqs[2].code, SHALE_OK);
    ck_assert_int_eq(reqs[3].code, SHALE_ESESSION);
    expect_val(6, "b", "2");
    close_store();
    ck_assert_uint_eq(count_results(6, 3), 1);
    open_store();
}
END_TEST

START_TEST(test_session_expiry)
{
    const uint16_t last = STORE_MAX_SLOTS - 1;
    uint64_t expired = 99;
    int dup, code;

    /* apply1 stamps now_ms = 1000 + index. */
    apply1(1, 100, 1, op_put(0, "a", "1"), &dup, &code); /* last_ms 1001 */
    apply1(2, 100, 2, op_put(0, "a", "2"), &dup, &code); /* 1002 */
    apply1(3, 200, 1, op_put(3, "b", "1"), &dup, &code); /* 1003 */
    apply1(4, 300, 1, op_put(last, "c", "1"), &dup, &code); /* 1004 */
    apply1(50, 200, 2, op_put(3, "b", "2"), &dup, &code); /* 1050 */
    put(51, 0, "zz", "data");
    put(52, 3, "0", "data");

    /* An old index is a no-op. */
    ck_assert_int_eq(store_expire_sessions(g_s, 52, 5000, &expired, g_err),
                     SHALE_OK);
    ck_assert_uint_eq(expired, 0);

    ck_assert_int_eq(store_expire_sessions(g_s, 60, 1040, &expired, g_err),
                     SHALE_OK);
    ck_assert_uint_eq(expired, 2);
    ck_assert_uint_eq(store_applied_index(g_s), 60);
    expect_val(0, "a", "2");
    expect_val(0, "zz", "data");
    expect_val(3, "0", "data");
    expect_val(last, "c", "1");

    close_store();
    ck_assert_uint_eq(count_headers(0), 0);
    ck_assert_uint_eq(count_results(0, 100), 0);
    ck_assert_uint_eq(count_headers(last), 0);
    ck_assert_uint_eq(count_results(last, 300), 0);
    ck_assert_uint_eq(count_headers(3), 1);
    ck_assert_uint_eq(count_results(3, 200), 2);
    open_store();

    /* Client 200 is still known; client 100 was forgotten. */
    apply1(61, 200, 1, op_put(3, "b", "x"), &dup, &code);
    ck_assert_int_eq(dup, 1);
    expect_val(3, "b", "2");
    apply1(62, 100, 1, op_put(0, "a", "x"), &dup, &code);
    ck_assert_int_eq(dup, 0);
    expect_val(0, "a", "x");
}
END_TEST

/* ---- Slots -----------------------------------------------------------------*/

START_TEST(test_iter_snapshot)
{
    store_iter_t *it, *empty;
    const uint8_t *k, *v;
    size_t kl, vl;
    uint64_t ver, va;
    int dup, code;

    put(1, 4, "x", "other");
    put(2, 6, "x", "other");
    put(3, 5, "b", "vb");
    put(4, 5, "a", "va");
    put(5, 5, "c", "");
    apply1(6, 9, 1, op_put(5, "s", "session"), &dup, &code);
    va = expect_val(5, "a", "va");

    ck_assert_int_eq(store_iter_slot(g_s, 5, &it, g_err), SHALE_OK);
    put(7, 5, "a", "new");
    put(8, 5, "aa", "new");
    apply1(9, 0, 0, op_del(5, "b"), NULL, NULL);

    ck_assert_int_eq(store_iter_next(it, &k, &kl, &v, &vl, &ver), 1);
    ck_assert(kl == 1 && k[0] == 'a' && vl == 2 && memcmp(v, "va", 2) == 0);
    ck_assert_uint_eq(ver, va);
    ck_assert_int_eq(store_iter_next(it, &k, &kl, &v, &vl, &ver), 1);
    ck_assert(kl == 1 && k[0] == 'b' && vl == 2 && memcmp(v, "vb", 2) == 0);
    ck_assert_uint_eq(ver, (3ull << 16) | 1);
    ck_assert_int_eq(store_iter_next(it, &k, &kl, &v, &vl, &ver), 1);
    ck_assert(kl == 1 && k[0] == 'c' && vl == 0);
    ck_assert_int_eq(store_iter_next(it, &k, &kl, &v, &vl, &ver), 1);
    ck_assert(kl == 1 && k[0] == 's' && vl == 7);
    ck_assert_int_eq(store_iter_next(it, &k, &kl, &v, &vl, &ver), 0);
    ck_assert_int_eq(store_iter_next(it, &k, &kl, &v, &vl, &ver), 0);

    ck_assert_int_eq(store_iter_slot(g_s, 7, &empty, g_err), SHALE_OK);
    ck_assert_int_eq(store_iter_next(empty, &k, &kl, &v, &vl, NULL), 0);
    store_iter_close(empty);
    store_iter_close(it);

    /* A fresh iterator sees the new state. */
    ck_assert_int_eq(store_iter_slot(g_s, 5, &it, g_err), SHALE_OK);
    ck_assert_int_eq(store_iter_next(it, &k, &kl, &v, &vl, &ver), 1);
    ck_assert(kl == 1 && k[0] == 'a' && vl == 3);
    ck_assert_int_eq(store_iter_next(it, &k, &kl, &v, &vl, &ver), 1);
    ck_assert(kl == 2 && memcmp(k, "aa", 2) == 0);
    ck_assert_int_eq(store_iter_next(it, &k, &kl, &v, &vl, &ver), 1);
    ck_assert(kl == 1 && k[0] == 'c');
    store_iter_close(it);

    ck_assert_int_eq(store_iter_slot(g_s, STORE_MAX_SLOTS, &it, g_err),
                     SHALE_EINVAL);
    ck_assert_ptr_null(it);
}
END_TEST

/* Ordered scans: start_after (exclusive), prefix, limit, byte cap, more,
 * keys_only, neighbouring slots never leak in. */
static void scan_expect(const store_scan_page_t *p, const char *const *keys, size_t n,
                        int more)
{
    ck_assert_uint_eq(p->n, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(p->items[i].klen, strlen(keys[i]));
        ck_assert(memcmp(p->items[i].key, keys[i], p->items[i].klen) == 0);
    }
    ck_assert_int_eq(p->more, more);
}

START_TEST(test_scan_slot)
{
    store_scan_page_t p;
    put(1, 4, "zz", "other");
    put(2, 6, "a", "other");
    put(3, 5, "b", "vb");
    put(4, 5, "a", "va");
    put(5, 5, "ab", "vab");
    put(6, 5, "abc", "vabc");
    put(7, 5, "ac", "");
    put(8, 5, "c", "vc");
    put(9, 5, "a\xff", "ff");
    put(10, 5, "a\xff\xff", "ffff");

    ck_assert_int_eq(store_scan(g_s, 5, NULL, 0, NULL, 0, 100, 1u << 20, 0, &p, g_err), 0);
    {
        const char *const k[] = {"a", "ab", "abc", "ac", "a\xff", "a\xff\xff", "b", "c"};
        scan_expect(&p, k, 8, 0);
        ck_assert(p.items[0].vlen == 2 && memcmp(p.items[0].value, "va", 2) == 0);
        ck_assert_uint_eq(p.items[0].version, (4ull << 16) | 1);
        ck_assert(p.items[3].vlen == 0 && p.items[3].value != NULL);
    }
    store_scan_free(&p);

    /* Pages of 3 with start_after = the last key: every key once, in order. */
    ck_assert_int_eq(store_scan(g_s, 5, NULL, 0, NULL, 0, 3, 1u << 20, 0, &p, g_err), 0);
    { const char *const k[] = {"a", "ab", "abc"}; scan_expect(&p, k, 3, 1); }
    store_scan_free(&p);
    ck_assert_int_eq(store_scan(g_s, 5, (const uint8_t *)"abc", 3, NULL, 0, 3, 1u << 20, 0,
                                &p, g_err), 0);
    { const char *const k[] = {"ac", "a\xff", "a\xff\xff"}; scan_expect(&p, k, 3, 1); }
    store_scan_free(&p);
    ck_assert_int_eq(store_scan(g_s, 5, (const uint8_t *)"a\xff\xff", 3, NULL, 0, 3,
                                1u << 20, 0, &p, g_err), 0);
    { const char *const k[] = {"b", "c"}; scan_expect(&p, k, 2, 0); }
    store_scan_free(&p);
    /* start_after need not exist. */
    ck_assert_int_eq(store_scan(g_s, 5, (const uint8_t *)"aba", 3, NULL, 0, 2, 1u << 20, 0,
                                &p, g_err), 0);
    { const char *const k[] = {"abc", "ac"}; scan_expect(&p, k, 2, 1); }
    store_scan_free(&p);
    /* Exactly the last key: nothing left, more = 0. */
    ck_assert_int_eq(store_scan(g_s, 5, (const uint8_t *)"c", 1, NULL, 0, 2, 1u << 20, 0,
                                &p, g_err), 0);
    scan_expect(&p, NULL, 0, 0);
    store_scan_free(&p);

    /* Prefix: "a" (with 0xff tails), "ab", "a\xff" (successor carries). */
    ck_assert_int_eq(store_scan(g_s, 5, NULL, 0, (const uint8_t *)"ab", 2, 100, 1u << 20, 0,
                                &p, g_err), 0);
    { const char *const k[] = {"ab", "abc"}; scan_expect(&p, k, 2, 0); }
    store_scan_free(&p);
    ck_assert_int_eq(store_scan(g_s, 5, NULL, 0, (const uint8_t *)"a\xff", 2, 100, 1u << 20,
                                0, &p, g_err), 0);
    { const char *const k[] = {"a\xff", "a\xff\xff"}; scan_expect(&p, k, 2, 0); }
    store_scan_free(&p);
    /* Prefix with start_after before, inside and after its range. */
    ck_assert_int_eq(store_scan(g_s, 5, (const uint8_t *)"0", 1, (const uint8_t *)"a", 1, 2,
                                1u << 20, 0, &p, g_err), 0);
    { const char *const k[] = {"a", "ab"}; scan_expect(&p, k, 2, 1); }
    store_scan_free(&p);
    ck_assert_int_eq(store_scan(g_s, 5, (const uint8_t *)"ac", 2, (const uint8_t *)"a", 1,
                                100, 1u << 20, 0, &p, g_err), 0);
    { const char *const k[] = {"a\xff", "a\xff\xff"}; scan_expect(&p, k, 2, 0); }
    store_scan_free(&p);
    ck_assert_int_eq(store_scan(g_s, 5, (const uint8_t *)"b", 1, (const uint8_t *)"a", 1,
                                100, 1u << 20, 0, &p, g_err), 0);
    scan_expect(&p, NULL, 0, 0);
    store_scan_free(&p);
    /* No match; an all-0xff prefix reaches the slot's end. */
    ck_assert_int_eq(store_scan(g_s, 5, NULL, 0, (const uint8_t *)"x", 1, 100, 1u << 20, 0,
                                &p, g_err), 0);
    scan_expect(&p, NULL, 0, 0);
    store_scan_free(&p);
    ck_assert_int_eq(store_scan(g_s, 5, NULL, 0, (const uint8_t *)"\xff", 1, 100, 1u << 20,
                                0, &p, g_err), 0);
    scan_expect(&p, NULL, 0, 0);
    store_scan_free(&p);

    /* Byte cap: stops before passing it, always at least one item. */
    ck_assert_int_eq(store_scan(g_s, 5, NULL, 0, NULL, 0, 100, 8, 0, &p, g_err), 0);
    { const char *const k[] = {"a", "ab"}; scan_expect(&p, k, 2, 1); }
    store_scan_free(&p);
    ck_assert_int_eq(store_scan(g_s, 5, NULL, 0, NULL, 0, 100, 1, 0, &p, g_err), 0);
    { const char *const k[] = {"a"}; scan_expect(&p, k, 1, 1); }
    store_scan_free(&p);
    /* keys_only: no values, versions kept. */
    ck_assert_int_eq(store_scan(g_s, 5, NULL, 0, NULL, 0, 1, 1u << 20, 1, &p, g_err), 0);
    ck_assert(p.n == 1 && p.items[0].value == NULL && p.items[0].vlen == 0);
    ck_assert_uint_eq(p.items[0].version, (4ull << 16) | 1);
    store_scan_free(&p);

    /* Other slots stay out; an empty slot; a bad slot. */
    ck_assert_int_eq(store_scan(g_s, 6, NULL, 0, NULL, 0, 100, 1u << 20, 0, &p, g_err), 0);
    { const char *const k[] = {"a"}; scan_expect(&p, k, 1, 0); }
    store_scan_free(&p);
    ck_assert_int_eq(store_scan(g_s, 7, NULL, 0, NULL, 0, 100, 1u << 20, 0, &p, g_err), 0);
    scan_expect(&p, NULL, 0, 0);
    store_scan_free(&p);
    ck_assert_int_eq(store_scan(g_s, STORE_MAX_SLOTS, NULL, 0, NULL, 0, 10, 100, 0, &p,
                                g_err), SHALE_EINVAL);
}
END_TEST

static void fill_slot(uint64_t *idx, uint16_t slot)
{
    int dup, code;

    put(++*idx, slot, "k1", "v");
    put(++*idx, slot, "k2", "v");
    ++*idx;
    apply1(*idx, 1000 + slot, 1, op_put(slot, "k3", "v"), &dup, &code);
}

static void expect_slot_full(uint16_t slot)
{
    int dup, code;
    uint64_t idx = store_applied_index(g_s) + 1;

    expect_val(slot, "k1", "v");
    expect_val(slot, "k2", "v");
    expect_val(slot, "k3", "v");
    apply1(idx, 1000 + slot, 1, op_put(slot, "k3", "again"), &dup, &code);
    ck_assert_int_eq(dup, 1);
}

static void expect_slot_empty(uint16_t slot)
{
    store_iter_t *it;
    const uint8_t *k, *v;
    size_t kl, vl;

    ck_assert_int_eq(store_iter_slot(g_s, slot, &it, g_err), SHALE_OK);
    ck_assert_int_eq(store_iter_next(it, &k, &kl, &v, &vl, NULL), 0);
    store_iter_close(it);
}

START_TEST(test_delete_slot_edges)
{
    const uint16_t top = STORE_MAX_SLOTS - 1;
    const uint16_t slots[] = {0, 1, 2, 3, 4, top - 2, top - 1, top};
    uint64_t idx = 0;

    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        fill_slot(&idx, slots[i]);
    }
    ck_assert_int_eq(store_delete_slot(g_s, 2, idx + 1, g_err), SHALE_OK);
    idx++;
    ck_assert_uint_eq(store_applied_index(g_s), idx);
    expect_slot_empty(2);
    expect_slot_full(1);
    expect_slot_full(3);

    idx = store_applied_index(g_s);
    ck_assert_int_eq(store_delete_slot(g_s, 0, 0, g_err), SHALE_OK);
    ck_assert_uint_eq(store_applied_index(g_s), idx);
    expect_slot_empty(0);
    expect_slot_full(1);

    idx = store_applied_index(g_s);
    ck_assert_int_eq(store_delete_slot(g_s, top, idx + 1, g_err), SHALE_OK);
    expect_slot_empty(top);
    expect_slot_full(top - 1);

    /* An old index is a no-op. */
    idx = store_applied_index(g_s);
    ck_assert_int_eq(store_delete_slot(g_s, 4, idx, g_err), SHALE_OK);
    expect_slot_full(4);
    ck_assert_int_eq(store_delete_slot(g_s, STORE_MAX_SLOTS, 0, g_err),
                     SHALE_EINVAL);

    /* Deleted sessions are gone too; the applied index record survives. */
    idx = store_applied_index(g_s);
    close_store();
    ck_assert_uint_eq(count_results(2, 1002), 0);
    ck_assert_uint_eq(count_headers(top), 0);
    ck_assert_uint_eq(count_headers(top - 1), 1);
    open_store();
    ck_assert_uint_eq(store_applied_index(g_s), idx);
    expect_slot_full(top - 2);
    expect_slot_empty(0);
    expect_slot_empty(2);
}
END_TEST

/* ---- Checkpoint / restore --------------------------------------------------*/

/* Every raw key/value of the DB at dir, concatenated (length-prefixed). */
static char *raw_dump(const char *dir, size_t *len)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it;
    rocksdb_t *db;
    char *err = NULL, *buf;
    FILE *f;

    db = rocksdb_open_for_read_only(o, dir, 0, &err);
    ck_assert_msg(err == NULL, "raw open %s: %s", dir, err);
    f = open_memstream(&buf, len);
    it = rocksdb_create_iterator(db, ro);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        fprintf(f, "%zu:", kl);
        fwrite(k, 1, kl, f);
        fprintf(f, "%zu:", vl);
        fwrite(v, 1, vl, f);
    }
    fclose(f);
    rocksdb_iter_destroy(it);
    rocksdb_close(db);
    rocksdb_readoptions_destroy(ro);
    rocksdb_options_destroy(o);
    return buf;
}

START_TEST(test_checkpoint_restore)
{
    char ckpt[160], other[160], bad[200];
    char *a, *b;
    size_t alen, blen;
    uint64_t idx = 0;

    snprintf(ckpt, sizeof(ckpt), "%s/ckpt", g_dir);
    snprintf(other, sizeof(other), "%s/other", g_dir);
    snprintf(bad, sizeof(bad), "%s/bad", g_dir);
    fill_slot(&idx, 0);
    fill_slot(&idx, 77);
    /* Still in the memtable: the checkpoint must flush it. */
    put(++idx, 77, "mem", "table");
    ck_assert_int_eq(store_checkpoint(g_s, ckpt, g_err), SHALE_OK);
    ck_assert_int_eq(store_checkpoint(g_s, ckpt, g_err), SHALE_ESTORAGE);
    ck_assert(strlen(g_err) > 0);
    put(++idx, 77, "after", "ckpt");
    expect_slot_full(0);
    close_store();

    /* Restore over an existing, different DB. */
    a = raw_dump(ckpt, &alen);
    ck_assert_int_eq(store_restore(ckpt, g_db, g_err), SHALE_OK);
    b = raw_dump(g_db, &blen);
    ck_assert_uint_eq(alen, blen);
    ck_assert(memcmp(a, b, alen) == 0);
    free(b);
    open_store();
    ck_assert_uint_eq(store_applied_index(g_s), 7);
    expect_val(77, "mem", "table");
    expect_val(77, "after", NULL);
    expect_slot_full(0);
    expect_slot_full(77);
    close_store();

    /* Restore into a directory that does not exist yet. */
    ck_assert_int_eq(store_restore(ckpt, other, g_err), SHALE_OK);
    b = raw_dump(other, &blen);
    ck_assert_uint_eq(alen, blen);
    ck_assert(memcmp(a, b, alen) == 0);
    free(a);
    free(b);

    /* Not a checkpoint / overlapping paths: refused, target untouched. */
    ck_assert_int_eq(mkdir(bad, 0755), 0);
    ck_assert_int_eq(store_restore(bad, g_db, g_err), SHALE_EINVAL);
    ck_assert_int_eq(store_restore(g_db, g_db, g_err), SHALE_EINVAL);
    ck_assert_int_eq(store_restore(NULL, g_db, g_err), SHALE_EINVAL);
    open_store();
    snprintf(bad, sizeof(bad), "%s/inner", g_db);
    ck_assert_int_eq(store_checkpoint(g_s, bad, g_err), SHALE_OK);
    close_store();
    ck_assert_int_eq(store_restore(bad, g_db, g_err), SHALE_EINVAL);
    ck_assert_int_eq(access(bad, F_OK), 0);
    snprintf(bad, sizeof(bad), "%s/db", other);
    ck_assert_int_eq(store_restore(other, bad, g_err), SHALE_EINVAL);
    open_store();
    ck_assert_uint_eq(store_applied_index(g_s), 9);
    expect_val(77, "mem", "table");
}
END_TEST

/* ---- Values, keys, inputs --------------------------------------------------*/

START_TEST(test_large_empty_binary)
{
    const size_t big = 1u << 20;
    uint8_t *v = malloc(big);
    const uint8_t keys[][4] = {{0x00, 0x00, 0x00, 0x00},
                               {0x00, 0xFF, 0x00, 0xFF},
                               {0xFF, 0xFF, 'm', 'a'},
                               {0xFF, 0xFF, 0xFF, 0xFF}};
    store_op_t ops[6];
    store_result_t res[6];
    store_request_t req = {.nops = 6, .ops = ops, .results = res};
    store_value_t got;
    store_iter_t *it;
    const uint8_t *k, *iv;
    size_t kl, vl;
    int skipped;

    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < big; i++) {
        v[i] = (uint8_t)(i * 31 + 7);
    }
    ops[0] = (store_op_t){.type = STORE_OP_PUT, .slot = 8,
                          .key = (const uint8_t *)"big", .klen = 3,
                          .value = v, .vlen = big};
    ops[1] = (store_op_t){.type = STORE_OP_PUT, .slot = 8,
                          .key = (const uint8_t *)"empty", .klen = 5};
    for (int i = 0; i < 4; i++) {
        ops[2 + i] = (store_op_t){.type = STORE_OP_PUT,
                                  .slot = STORE_MAX_SLOTS - 1,
                                  .key = keys[i], .klen = 4,
                                  .value = keys[i], .vlen = 4};
    }
    ck_assert_int_eq(store_apply(g_s, 1, 0, &req, 1, &skipped, g_err),
                     SHALE_OK);

    ck_assert_int_eq(store_get(g_s, 8, (const uint8_t *)"big", 3, &got,
                               g_err),
                     SHALE_OK);
    ck_assert(got.found && got.len == big && memcmp(got.value, v, big) == 0);
    free(got.value);
    ck_assert_int_eq(store_get(g_s, 8, (const uint8_t *)"empty", 5, &got,
                               g_err),
                     SHALE_OK);
    ck_assert(got.found && got.len == 0 && got.value != NULL);
    free(got.value);

    /* Empty value CAS by value. */
    ops[0] = (store_op_t){.type = STORE_OP_CAS, .slot = 8,
                          .key = (const uint8_t *)"empty", .klen = 5,
                          .value = (const uint8_t *)"full", .vlen = 4,
                          .cas_kind = STORE_CAS_VALUE};
    req.nops = 1;
    ck_assert_int_eq(store_apply(g_s, 2, 0, &req, 1, &skipped, g_err),
                     SHALE_OK);
    ck_assert_int_eq(res[0].code, SHALE_OK);

    /* Binary keys: in order, and 0xFF 0xFF... in the top slot is data, not
     * metadata (the applied index is intact). */
    ck_assert_int_eq(store_iter_slot(g_s, STORE_MAX_SLOTS - 1, &it, g_err),
                     SHALE_OK);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(store_iter_next(it, &k, &kl, &iv, &vl, NULL), 1);
        ck_assert(kl == 4 && memcmp(k, keys[i], 4) == 0);
        ck_assert(vl == 4 && memcmp(iv, keys[i], 4) == 0);
    }
    ck_assert_int_eq(store_iter_next(it, &k, &kl, &iv, &vl, NULL), 0);
    store_iter_close(it);
    ck_assert_int_eq(store_get(g_s, 7, keys[0], 4, &got, g_err), SHALE_OK);
    ck_assert_int_eq(got.found, 0);
    close_store();
    open_store();
    ck_assert_uint_eq(store_applied_index(g_s), 2);
    ck_assert_int_eq(store_get(g_s, STORE_MAX_SLOTS - 1, keys[2], 4, &got,
                               g_err),
                     SHALE_OK);
    ck_assert(got.found && got.len == 4);
    free(got.value);

    /* The empty key is a key. */
    put(3, 8, "", "nokey");
    expect_val(8, "", "nokey");
    free(v);
}
END_TEST

START_TEST(test_invalid_input)
{
    store_op_t ops[2] = {op_put(1, "ok", "v"), op_put(STORE_MAX_SLOTS, "k",
                                                      "v")};
    store_op_t good = op_put(1, "fine", "v");
    store_result_t res[2];
    store_request_t reqs[2] = {
        {.client_id = 3, .seq = 1, .nops = 2, .ops = ops, .results = res},
        {.nops = 1, .ops = &good, .results = res},
    };
    store_value_t got;
    int skipped;

    ck_assert_int_eq(store_get(g_s, STORE_MAX_SLOTS, (const uint8_t *)"k", 1,
                               &got, g_err),
                     SHALE_EINVAL);
    ck_assert(strlen(g_err) > 0);
    ck_assert_int_eq(store_get(g_s, 1, NULL, 1, &got, g_err), SHALE_EINVAL);
    ck_assert_int_eq(store_get(g_s, 1, (const uint8_t *)"k", 1, NULL, g_err),
                     SHALE_EINVAL);
    ck_assert_int_eq(store_get(NULL, 1, (const uint8_t *)"k", 1, &got, g_err),
                     SHALE_EINVAL);
    ck_assert_int_eq(store_apply(NULL, 1, 0, reqs, 1, &skipped, g_err),
                     SHALE_EINVAL);
    ck_assert_int_eq(store_apply(g_s, 1, 0, NULL, 1, &skipped, g_err),
                     SHALE_EINVAL);

    /* A malformed request changes nothing; the rest of the entry applies. */
    ck_assert_int_eq(store_apply(g_s, 1, 0, reqs, 2, &skipped, g_err),
                     SHALE_OK);
    ck_assert_int_eq(reqs[0].code, SHALE_EINVAL);
    ck_assert_int_eq(reqs[1].code, SHALE_OK);
    expect_val(1, "ok", NULL);
    expect_val(1, "fine", "v");
    ck_assert_uint_eq(store_applied_index(g_s), 1);

    ops[1] = op_put(1, "k", "v");
    ops[1].type = (store_op_type_t)99;
    ck_assert_int_eq(store_apply(g_s, 2, 0, reqs, 1, &skipped, g_err),
                     SHALE_OK);
    ck_assert_int_eq(reqs[0].code, SHALE_EINVAL);
    ops[1] = op_cas(1, "k", "v", (store_cas_kind_t)0);
    ck_assert_int_eq(store_apply(g_s, 3, 0, reqs, 1, &skipped, g_err),
                     SHALE_OK);
    ck_assert_int_eq(reqs[0].code, SHALE_EINVAL);
    reqs[0].nops = 0;
    ck_assert_int_eq(store_apply(g_s, 4, 0, reqs, 1, &skipped, g_err),
                     SHALE_OK);
    ck_assert_int_eq(reqs[0].code, SHALE_EINVAL);
    expect_val(1, "ok", NULL);
}
END_TEST

/* ---- Storage faults --------------------------------------------------------*/

START_TEST(test_open_errors)
{
    char file[160], path[200];
    store_options_t o;
    store_t *s = (store_t *)g_err; /* any non-NULL: must come back NULL */
    FILE *f;

    close_store();
    snprintf(file, sizeof(file), "%s/file", g_dir);
    f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/db", file);
    g_err[0] = '\0';
    ck_assert_int_eq(store_open(path, NULL, &s, g_err), SHALE_ESTORAGE);
    ck_assert_ptr_null(s);
    ck_assert_msg(strlen(g_err) > 0, "no message");

    store_options_default(&o);
    o.create_if_missing = 0;
    snprintf(path, sizeof(path), "%s/absent", g_dir);
    g_err[0] = '\0';
    ck_assert_int_eq(store_open(path, &o, &s, g_err), SHALE_ESTORAGE);
    ck_assert(strlen(g_err) > 0);
    ck_assert_int_eq(store_open(NULL, &o, &s, g_err), SHALE_EINVAL);
    ck_assert_int_eq(store_open(path, &o, NULL, g_err), SHALE_EINVAL);

    /* A DB already open elsewhere (its LOCK is held). */
    open_store();
    ck_assert_int_eq(store_open(g_db, NULL, &s, g_err), SHALE_ESTORAGE);
    ck_assert(strlen(g_err) > 0);

    /* Restore into a path under a regular file. */
    snprintf(path, sizeof(path), "%s/ckpt", g_dir);
    ck_assert_int_eq(store_checkpoint(g_s, path, g_err), SHALE_OK);
    snprintf(file, sizeof(file), "%s/file/db", g_dir);
    ck_assert_int_eq(store_restore(path, file, g_err), SHALE_ESTORAGE);
    ck_assert(strlen(g_err) > 0);
}
END_TEST

/* Disk full on a 4 MiB tmpfs: the failing apply returns ESTORAGE with a
 * message, nothing of it is written, the applied index stays, earlier data
 * is readable, and after freeing space a reopen finds exactly the data of
 * the successful applies. */
static char g_mnt[96];
static int g_mounted;

/* Unchecked fixture (runs in the parent): the mount is undone even when the
 * test process dies on a failed assertion. */
static void full_setup(void)
{
    g_mounted = 0;
    strcpy(g_dir, "/tmp/shale_store_XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        fprintf(stderr, "test_disk_full: skipped, mkdtemp: %s\n",
                strerror(errno));
        g_dir[0] = '\0';
        return;
    }
    snprintf(g_mnt, sizeof(g_mnt), "%s/mnt", g_dir);
    snprintf(g_db, sizeof(g_db), "%s/db", g_mnt);
    if (mkdir(g_mnt, 0755) != 0 ||
        mount("tmpfs", g_mnt, "tmpfs", 0, "size=4m") != 0) {
        fprintf(stderr, "test_disk_full: skipped, cannot mount tmpfs: %s\n",
                strerror(errno));
        return;
    }
    g_mounted = 1;
}

static void full_teardown(void)
{
    if (g_mounted) {
        umount2(g_mnt, MNT_DETACH);
    }
    if (g_dir[0] != '\0') {
        rm_rf(g_dir);
    }
}

START_TEST(test_disk_full)
{
    enum { VLEN = 64 * 1024 };
    char filler[160], key[32];
    uint8_t *val = malloc(VLEN);
    uint64_t last_ok = 0, last_data;
    int rc = SHALE_OK, fd;
    store_options_t o;

    if (!g_mounted) {
        free(val);
        return;
    }
    memset(val, 'z', VLEN);
    /* Room to free later, so the DB can be reopened. */
    snprintf(filler, sizeof(filler), "%s/filler", g_mnt);
    fd = open(filler, O_WRONLY | O_CREAT, 0644);
    ck_assert_int_ge(fd, 0);
    for (int i = 0; i < 16; i++) {
        ck_assert_int_eq(write(fd, val, VLEN), VLEN);
    }
    close(fd);

    store_options_default(&o);
    o.write_buffer_bytes = 512 * 1024;
    o.disable_compression = 1; /* 'z' * 64 KiB would compress to nothing */
    o.block_cache_bytes = 1 << 20;
    ck_assert_msg(store_open(g_db, &o, &g_s, g_err) == SHALE_OK, "open: %s",
                  g_err);
    for (uint64_t idx = 1; idx <= 200; idx++) {
        store_op_t ops[2];
        store_result_t res[2];
        store_request_t req = {.client_id = 5, .seq = idx, .nops = 2,
                               .ops = ops, .results = res};
        int skipped;

        snprintf(key, sizeof(key), "k%llu", (unsigned long long)idx);
        ops[0] = (store_op_t){.type = STORE_OP_PUT, .slot = 1,
                              .key = (const uint8_t *)key,
                              .klen = strlen(key), .value = val, .vlen = VLEN};
        ops[1] = (store_op_t){.type = STORE_OP_PUT, .slot = 2,
                              .key = (const uint8_t *)key,
                              .klen = strlen(key), .value = val, .vlen = VLEN};
        g_err[0] = '\0';
        rc = store_apply(g_s, idx, 0, &req, 1, &skipped, g_err);
        if (rc != SHALE_OK) {
            break;
        }
        last_ok = idx;
    }
    ck_assert_int_eq(rc, SHALE_ESTORAGE);
    ck_assert_msg(strlen(g_err) > 0, "no message");
    fprintf(stderr, "test_disk_full: apply %llu failed as expected: %s\n",
            (unsigned long long)last_ok + 1, g_err);
    ck_assert_uint_gt(last_ok, 0);
    ck_assert_uint_eq(store_applied_index(g_s), last_ok);
    /* Earlier data is still readable; the failed entry left nothing. */
    snprintf(key, sizeof(key), "k%llu", 1ull);
    {
        store_value_t got;
        ck_assert_int_eq(store_get(g_s, 1, (const uint8_t *)key, strlen(key),
                                   &got, g_err),
                         SHALE_OK);
        ck_assert(got.found && got.len == VLEN);
        free(got.value);
    }
    snprintf(key, sizeof(key), "k%llu", (unsigned long long)last_ok + 1);
    expect_val(1, key, NULL);
    expect_val(2, key, NULL);
    /* Later writes fail cleanly too, or succeed: never half. */
    last_data = last_ok;
    rc = store_apply_noop(g_s, last_ok + 5, g_err);
    if (rc != SHALE_OK) {
        ck_assert_int_eq(rc, SHALE_ESTORAGE);
        ck_assert_uint_eq(store_applied_index(g_s), last_ok);
    } else {
        last_ok += 5;
    }
    close_store();

    /* With space again, a reopen finds exactly the successful applies. */
    ck_assert_int_eq(unlink(filler), 0);
    open_store();
    ck_assert_uint_eq(store_applied_index(g_s), last_ok);
    for (uint64_t idx = 1; idx <= last_data + 1; idx++) {
        store_value_t got;
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)idx);
        for (uint16_t slot = 1; slot <= 2; slot++) {
            ck_assert_int_eq(store_get(g_s, slot, (const uint8_t *)key,
                                       strlen(key), &got, g_err),
                             SHALE_OK);
            ck_assert_int_eq(got.found, idx <= last_data);
            if (got.found) {
                ck_assert_uint_eq(got.len, VLEN);
                free(got.value);
            }
        }
    }
    close_store();
    free(val);
}
END_TEST

/* ---- Slot migration ----------------------------------------------------------*/

/* Every page of kind from slot, concatenated, in pages of max bytes. */
static store_buf_t scan_all(uint16_t slot, store_scan_kind_t kind, size_t max,
                            uint32_t *records, int *pages)
{
    store_buf_t out = {0};
    uint8_t *cur = NULL;
    size_t curlen = 0;
    *records = 0;
    *pages = 0;
    for (;;) {
        uint32_t n = 0;
        uint8_t *next = NULL;
        size_t nlen = 0;
        int done = 0;
        ck_assert_int_eq(store_scan_records(g_s, slot, kind, cur, curlen, max, &out,
                                            &n, &next, &nlen, &done, g_err),
                         SHALE_OK);
        *records += n;
        (*pages)++;
        if (next != NULL) {
            free(cur);
            cur = next;
            curlen = nlen;
        }
        if (done) {
            break;
        }
        ck_assert_uint_gt(n, 0);
    }
    free(cur);
    return out;
}

/* The changelog records every change of a logged slot (puts with their
 * version, deletes of existing keys), nothing of other slots, in apply
 * order; replaying DATA then LOG on another slot's copy gives the same
 * contents; turning it off stops logging and store_delete_changelog
 * drops it. */
START_TEST(test_changelog_scan_apply)
{
    char k[16], v[16];
    uint64_t idx = 1;
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "k%02d", i);
        put(idx++, 4, k, "old");
        put(idx++, 5, k, "other");
    }
    ck_assert_int_eq(store_changelog_set(g_s, 4, 1), SHALE_OK);
    ck_assert(store_changelog_on(g_s, 4));
    ck_assert(!store_changelog_on(g_s, 5));
    uint32_t n;
    int pages;
    store_buf_t data = scan_all(4, STORE_SCAN_DATA, 100, &n, &pages);
    ck_assert_uint_eq(n, 50);
    ck_assert_int_gt(pages, 5);
    /* changes after the scan: 10 puts, 5 deletes, a delete of an absent
     * key (not logged), and changes to slot 5 (not logged) */
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof(k), "k%02d", i);
        snprintf(v, sizeof(v), "new%d", i);
        put(idx++, 4, k, v);
        put(idx++, 5, k, v);
    }
    for (int i = 40; i < 45; i++) {
        snprintf(k, sizeof(k), "k%02d", i);
        apply1(idx++, 0, 0, op_del(4, k), NULL, NULL);
    }
    apply1(idx++, 0, 0, op_del(4, "absent"), NULL, NULL);
    put(idx++, 4, "k99", "born");
    store_buf_t log = scan_all(4, STORE_SCAN_LOG, 64, &n, &pages);
    ck_assert_uint_eq(n, 16);
    /* Replay into slot 9: DATA, then LOG. */
    uint32_t cnt = 0;
    ck_assert_int_eq(store_apply_records(g_s, idx++, 9, data.data, data.len, &cnt, g_err),
                     SHALE_OK);
    ck_assert_uint_eq(cnt, 50);
    ck_assert_int_eq(store_apply_records(g_s, idx++, 9, log.data, log.len, &cnt, g_err),
                     SHALE_OK);
    ck_assert_uint_eq(cnt, 16);
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "k%02d", i);
        snprintf(v, sizeof(v), "new%d", i);
        const char *want = i < 10 ? v : (i >= 40 && i < 45) ? NULL : "old";
        uint64_t v9 = expect_val(9, k, want);
        uint64_t v4 = expect_val(4, k, want);
        ck_assert_uint_eq(v9, v4); /* versions travel with the data */
    }
    expect_val(9, "k99", "born");
    free(data.data);
    free(log.data);
    /* off: no more records; delete_changelog empties it */
    ck_assert_int_eq(store_changelog_set(g_s, 4, 0), SHALE_OK);
    put(idx++, 4, "k00", "unlogged");
    log = scan_all(4, STORE_SCAN_LOG, 1 << 20, &n, &pages);
    ck_assert_uint_eq(n, 16);
    free(log.data);
    ck_assert_int_eq(store_delete_changelog(g_s, 4, g_err), SHALE_OK);
    log = scan_all(4, STORE_SCAN_LOG, 1 << 20, &n, &pages);
    ck_assert_uint_eq(n, 0);
    free(log.data);
    expect_val(4, "k00", "unlogged");
}
END_TEST

/* Sessions travel too: a retry of a request after its slot's sessions were
 * copied elsewhere is a duplicate there. Data is not part of the session
 * scan; malformed batches are refused whole. */
START_TEST(test_sessions_scan_and_bad_batches)
{
    uint64_t idx = 1;
    int dup = 0;
    store_result_t r1 = apply1(idx++, 42, 1, op_put(6, "a", "x"), &dup, NULL);
    ck_assert(!dup);
    apply1(idx++, 42, 2, op_put(6, "b", "y"), &dup, NULL);
    uint32_t n;
    int pages;
    store_buf_t ses = scan_all(6, STORE_SCAN_SESSIONS, 1 << 20, &n, &pages);
    ck_assert_uint_eq(n, 3); /* one header, two results */
    ck_assert_int_eq(store_apply_records(g_s, idx++, 8, ses.data, ses.len, NULL, g_err),
                     SHALE_OK);
    store_result_t r2 = apply1(idx++, 42, 1, op_put(8, "a", "retry"), &dup, NULL);
    ck_assert(dup);
    ck_assert_uint_eq(r2.version, r1.version);
    expect_val(8, "a", NULL); /* the retry applied nothing */
    /* malformed: truncated, unknown kind, changelog kind, bad op */
    uint64_t before = store_applied_index(g_s);
    uint8_t bad1[] = {1, 0, 0, 0, 5, 'd', 'x'};
    uint8_t bad2[] = {1, 0, 0, 0, 1, 'm', 0, 0, 0, 0};
    uint8_t bad3[] = {1, 0, 0, 0, 1, 'x', 0, 0, 0, 0};
    uint8_t bad4[] = {7, 0, 0, 0, 1, 'c', 0, 0, 0, 0};
    uint8_t bad5[] = {1, 0, 0, 0, 2, 'd', 'k', 0, 0, 0, 1, 'v'}; /* shorter than a version */
    ck_assert_int_eq(store_apply_records(g_s, idx, 8, bad1, sizeof(bad1), NULL, g_err),
                     SHALE_EINVAL);
    ck_assert_int_eq(store_apply_records(g_s, idx, 8, bad2, sizeof(bad2), NULL, g_err),
                     SHALE_EINVAL);
    ck_assert_int_eq(store_apply_records(g_s, idx, 8, bad3, sizeof(bad3), NULL, g_err),
                     SHALE_EINVAL);
    ck_assert_int_eq(store_apply_records(g_s, idx, 8, bad4, sizeof(bad4), NULL, g_err),
                     SHALE_EINVAL);
    ck_assert_int_eq(store_apply_records(g_s, idx, 8, bad5, sizeof(bad5), NULL, g_err),
                     SHALE_EINVAL);
    ck_assert_uint_eq(store_applied_index(g_s), before);
    /* a good batch at an old index is a no-op */
    ck_assert_int_eq(store_apply_records(g_s, 1, 8, ses.data, ses.len, NULL, g_err), SHALE_OK);
    ck_assert_uint_eq(store_applied_index(g_s), before);
    free(ses.data);
}
END_TEST

/* ---- Transactions -----------------------------------------------------------*/

#define TK(s) (const uint8_t *)(s), strlen(s)

static store_txn_compare_t tcmp(const char *k, store_txn_target_t t, store_txn_cmp_t c,
                                const char *v, uint64_t ver, int exists)
{
    store_txn_compare_t x = {.key = (const uint8_t *)k, .klen = strlen(k), .target = t,
                             .cmp = c, .value = (const uint8_t *)v, .vlen = v ? strlen(v) : 0,
                             .version = ver, .exists = exists};
    return x;
}

static store_txn_op_t top(store_txn_op_type_t t, const char *k, const char *v)
{
    store_txn_op_t x = {.type = t, .key = (const uint8_t *)k, .klen = strlen(k),
                        .value = (const uint8_t *)v, .vlen = v ? strlen(v) : 0};
    return x;
}

/* Apply one txn at index; returns the request's code. */
static int apply_txn1(uint64_t index, uint64_t client, uint64_t seq, store_txn_t *t, int *dup)
{
    store_request_t r = {.client_id = client, .seq = seq, .txn = t};
    int skipped = -1;
    g_err[0] = '\0';
    ck_assert_msg(store_apply(g_s, index, 1000 + index, &r, 1, &skipped, g_err) == SHALE_OK,
                  "apply %llu: %s", (unsigned long long)index, g_err);
    ck_assert_int_eq(skipped, 0);
    if (dup != NULL)
        *dup = r.duplicate;
    return r.code;
}

static uint64_t ver_of(uint16_t slot, const char *k, char *val, size_t cap)
{
    store_value_t v = {0};
    ck_assert_int_eq(store_get(g_s, slot, TK(k), &v, g_err), SHALE_OK);
    if (val != NULL) {
        snprintf(val, cap, "%.*s", (int)v.len, v.found ? (const char *)v.value : "");
    }
    free(v.value);
    return v.found ? v.version : 0;
}

/* Compare semantics per target and operator; the branch taken; gets see
 * earlier ops of the txn; several puts get distinct growing versions. */
START_TEST(test_txn_compare_and_branches)
{
    apply1(10, 0, 0, op_put(7, "{a}x", "5"), NULL, NULL);
    uint64_t vx = ver_of(7, "{a}x", NULL, 0);
    ck_assert_uint_gt(vx, 0);

    struct {
        store_txn_compare_t c;
        int holds;
    } cases[] = {
        {tcmp("{a}x", STORE_TXN_VALUE, STORE_TXN_EQUAL, "5", 0, 0), 1},
        {tcmp("{a}x", STORE_TXN_VALUE, STORE_TXN_EQUAL, "6", 0, 0), 0},
        {tcmp("{a}x", STORE_TXN_VALUE, STORE_TXN_NOT_EQUAL, "6", 0, 0), 1},
        {tcmp("{a}x", STORE_TXN_VALUE, STORE_TXN_LESS, "6", 0, 0), 1},
        {tcmp("{a}x", STORE_TXN_VALUE, STORE_TXN_LESS, "5", 0, 0), 0},
        {tcmp("{a}x", STORE_TXN_VALUE, STORE_TXN_GREATER, "4", 0, 0), 1},
        {tcmp("{a}x", STORE_TXN_VALUE, STORE_TXN_GREATER, "50", 0, 0), 0}, /* prefix is less */
        {tcmp("{a}none", STORE_TXN_VALUE, STORE_TXN_NOT_EQUAL, "x", 0, 0), 0}, /* absent */
        {tcmp("{a}x", STORE_TXN_VERSION, STORE_TXN_EQUAL, NULL, vx, 0), 1},
        {tcmp("{a}x", STORE_TXN_VERSION, STORE_TXN_EQUAL, NULL, vx + 1, 0), 0},
        {tcmp("{a}x", STORE_TXN_VERSION, STORE_TXN_LESS, NULL, vx + 1, 0), 1},
        {tcmp("{a}x", STORE_TXN_VERSION, STORE_TXN_GREATER, NULL, vx - 1, 0), 1},
        {tcmp("{a}none", STORE_TXN_VERSION, STORE_TXN_EQUAL, NULL, 0, 0), 1},
        {tcmp("{a}x", STORE_TXN_EXISTS, STORE_TXN_EQUAL, NULL, 0, 1), 1},
        {tcmp("{a}x", STORE_TXN_EXISTS, STORE_TXN_NOT_EQUAL, NULL, 0, 1), 0},
        {tcmp("{a}none", STORE_TXN_EXISTS, STORE_TXN_EQUAL, NULL, 0, 0), 1},
    };
    uint64_t idx = 11;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        store_txn_op_t g = top(STORE_TXN_GET, "{a}x", NULL);
        store_txn_t t = {.slot = 7, .ncompares = 1, .compares = &cases[i].c,
                         .nsuccess = 1, .success = &g, .nfailure = 0};
        ck_assert_int_eq(apply_txn1(idx++, 0, 0, &t, NULL), SHALE_OK);
        ck_assert_msg(t.succeeded == cases[i].holds, "case %zu: succeeded %d", i, t.succeeded);
        ck_assert_uint_eq(t.nresults, cases[i].holds ? 1 : 0);
        store_txn_clear(&t);
    }

    /* Success branch: put, put, get (sees the put), delete, get (absent). */
    store_txn_compare_t c = tcmp("{a}x", STORE_TXN_VALUE, STORE_TXN_EQUAL, "5", 0, 0);
    store_txn_op_t ok[] = {top(STORE_TXN_PUT, "{a}x", "6"), top(STORE_TXN_PUT, "{a}y", "1"),
                           top(STORE_TXN_GET, "{a}x", NULL), top(STORE_TXN_DEL, "{a}y", NULL),
                           top(STORE_TXN_GET, "{a}y", NULL)};
    store_txn_op_t bad[] = {top(STORE_TXN_PUT, "{a}fail", "1")};
    store_txn_t t = {.slot = 7, .ncompares = 1, .compares = &c, .nsuccess = 5, .success = ok,
                     .nfailure = 1, .failure = bad};
    ck_assert_int_eq(apply_txn1(100, 0, 0, &t, NULL), SHALE_OK);
    ck_assert_int_eq(t.succeeded, 1);
    ck_assert_uint_eq(t.nresults, 5);
    ck_assert_uint_gt(t.results[0].version, vx);
    ck_assert_uint_gt(t.results[1].version, t.results[0].version); /* distinct, growing */
    ck_assert_int_eq(t.results[2].found, 1);
    ck_assert_uint_eq(t.results[2].version, t.results[0].version);
    ck_assert_uint_eq(t.results[2].vlen, 1);
    ck_assert_int_eq(memcmp(t.results[2].value, "6", 1), 0);
    ck_assert_int_eq(t.results[3].found, 1); /* existed */
    ck_assert_uint_eq(t.results[3].version, t.results[1].version);
    ck_assert_int_eq(t.results[4].found, 0);
    store_txn_clear(&t);
    char val[16];
    ck_assert_uint_gt(ver_of(7, "{a}x", val, sizeof(val)), vx);
    ck_assert_str_eq(val, "6");
    ck_assert_uint_eq(ver_of(7, "{a}y", NULL, 0), 0);
    ck_assert_uint_eq(ver_of(7, "{a}fail", NULL, 0), 0);

    /* The compare now fails: the failure branch runs, nothing of success. */
    ck_assert_int_eq(apply_txn1(101, 0, 0, &t, NULL), SHALE_OK);
    ck_assert_int_eq(t.succeeded, 0);
    ck_assert_uint_eq(t.nresults, 1);
    store_txn_clear(&t);
    ck_assert_uint_gt(ver_of(7, "{a}fail", NULL, 0), 0);
    ck_assert_uint_eq(ver_of(7, "{a}y", NULL, 0), 0);
}
END_TEST

/* A retry with the same (client, seq) gets the first outcome (branch,
 * versions, get values) and changes nothing; the same seq with another kind
 * of request is EINVAL; an oversized get result applies nothing. */
START_TEST(test_txn_session_replay)
{
    apply1(10, 0, 0, op_put(3, "{b}n", "0"), NULL, NULL);
    uint64_t v0 = ver_of(3, "{b}n", NULL, 0);
    store_txn_compare_t c = tcmp("{b}n", STORE_TXN_VERSION, STORE_TXN_EQUAL, NULL, v0, 0);
    store_txn_op_t ok[] = {top(STORE_TXN_PUT, "{b}n", "1"), top(STORE_TXN_GET, "{b}n", NULL)};
    store_txn_op_t no[] = {top(STORE_TXN_GET, "{b}n", NULL)};
    store_txn_t t = {.slot = 3, .ncompares = 1, .compares = &c, .nsuccess = 2, .success = ok,
                     .nfailure = 1, .failure = no};
    int dup = -1;
    ck_assert_int_eq(apply_txn1(11, 42, 1, &t, &dup), SHALE_OK);
    ck_assert_int_eq(dup, 0);
    ck_assert_int_eq(t.succeeded, 1);
    uint64_t v1 = t.results[0].version;
    store_txn_clear(&t);

    /* Retry: the compare would now fail, but the first answer comes back. */
    ck_assert_int_eq(apply_txn1(12, 42, 1, &t, &dup), SHALE_OK);
    ck_assert_int_eq(dup, 1);
    ck_assert_int_eq(t.succeeded, 1);
    ck_assert_uint_eq(t.nresults, 2);
    ck_assert_uint_eq(t.results[0].version, v1);
    ck_assert_int_eq(t.results[1].found, 1);
    ck_assert_uint_eq(t.results[1].vlen, 1);
    ck_assert_int_eq(memcmp(t.results[1].value, "1", 1), 0);
    store_txn_clear(&t);
    ck_assert_uint_eq(ver_of(3, "{b}n", NULL, 0), v1);

    /* A restart keeps the record. */
    close_store();
    open_store();
    ck_assert_int_eq(apply_txn1(13, 42, 1, &t, &dup), SHALE_OK);
    ck_assert_int_eq(dup, 1);
    ck_assert_uint_eq(t.results[0].version, v1);
    store_txn_clear(&t);

    /* The same seq as a plain PUT: not a retry. */
    int code = 0;
    apply1(14, 42, 1, op_put(3, "{b}n", "zz"), &dup, &code);
    ck_assert_int_eq(code, SHALE_EINVAL);
    ck_assert_uint_eq(ver_of(3, "{b}n", NULL, 0), v1);

    /* Gets over the result limit: TOO_LARGE, nothing written or recorded. */
    size_t big = 1u << 20;
    char *bv = malloc(big + 1);
    ck_assert_ptr_nonnull(bv);
    memset(bv, 'v', big);
    bv[big] = '\0';
    apply1(15, 0, 0, op_put(3, "{b}big", bv), NULL, NULL);
    free(bv);
    store_txn_op_t many[8];
    many[0] = top(STORE_TXN_PUT, "{b}n", "2");
    for (int i = 1; i < 8; i++)
        many[i] = top(STORE_TXN_GET, "{b}big", NULL);
    store_txn_t tl = {.slot = 3, .nsuccess = 8, .success = many};
    ck_assert_int_eq(apply_txn1(16, 42, 2, &tl, &dup), SHALE_ETOOLARGE);
    ck_assert_uint_eq(tl.nresults, 0);
    ck_assert_uint_eq(ver_of(3, "{b}n", NULL, 0), v1);
    /* Not recorded: the same seq with a smaller txn runs. */
    store_txn_t ts = {.slot = 3, .nsuccess = 2, .success = many};
    ck_assert_int_eq(apply_txn1(17, 42, 2, &ts, &dup), SHALE_OK);
    ck_assert_int_eq(dup, 0);
    ck_assert_int_eq(ts.succeeded, 1);
    ck_assert_uint_eq(ts.results[1].vlen, big);
    store_txn_clear(&ts);

    /* Malformed: no compare and no op; exists with LESS. */
    store_txn_t te = {.slot = 3};
    ck_assert_int_eq(apply_txn1(18, 0, 0, &te, NULL), SHALE_EINVAL);
    store_txn_compare_t ce = tcmp("{b}n", STORE_TXN_EXISTS, STORE_TXN_LESS, NULL, 0, 1);
    store_txn_t te2 = {.slot = 3, .ncompares = 1, .compares = &ce};
    ck_assert_int_eq(apply_txn1(19, 0, 0, &te2, NULL), SHALE_EINVAL);
}
END_TEST

/* A txn's writes reach the changelog of a migrating slot. */
START_TEST(test_txn_changelog)
{
    ck_assert_int_eq(store_changelog_set(g_s, 9, 1), SHALE_OK);
    store_txn_op_t ops[] = {top(STORE_TXN_PUT, "{c}a", "1"), top(STORE_TXN_PUT, "{c}b", "2"),
                            top(STORE_TXN_DEL, "{c}a", NULL)};
    store_txn_t t = {.slot = 9, .nsuccess = 3, .success = ops};
    ck_assert_int_eq(apply_txn1(10, 0, 0, &t, NULL), SHALE_OK);
    store_txn_clear(&t);
    store_buf_t out = {0};
    uint32_t count = 0;
    uint8_t *next = NULL;
    size_t nlen = 0;
    int done = 0;
    ck_assert_int_eq(store_scan_records(g_s, 9, STORE_SCAN_LOG, NULL, 0, 1u << 20, &out, &count,
                                        &next, &nlen, &done, g_err),
                     SHALE_OK);
    ck_assert_uint_eq(count, 3);
    free(out.data);
    free(next);
}
END_TEST

/* ---- TTL (docs/storage.md, "Expiry") ----------------------------------------*/

/* Apply one op at index with the entry timestamp now (the log clock). */
static store_result_t apply_at(uint64_t index, uint64_t now, store_op_t op, int *code)
{
    store_result_t res;
    store_request_t r = {.nops = 1, .ops = &op, .results = &res};
    int skipped = -1;
    memset(&res, 0, sizeof(res));
    ck_assert_msg(store_apply(g_s, index, now, &r, 1, &skipped, g_err) == SHALE_OK, "apply: %s",
                  g_err);
    ck_assert_int_eq(skipped, 0);
    if (code != NULL)
        *code = r.code;
    else
        ck_assert_int_eq(r.code, SHALE_OK);
    return res;
}

static store_op_t op_put_ttl(uint16_t slot, const char *k, const char *v, uint64_t ttl)
{
    store_op_t op = op_put(slot, k, v);
    op.ttl_ms = ttl;
    return op;
}

/* TXN puts with a TTL or keeping one (Redis SET ... EX with NX/XX/GET,
 * KEEPTTL), and EXPIRE (Redis EXPIRE / PERSIST): the value kept, the TTL
 * set or removed, had_ttl told; an absent key not created; a session retry
 * answers had_ttl again. */
START_TEST(test_txn_ttl_ops)
{
    uint16_t sl = 11;
    store_value_t v = {0};
    store_txn_op_t put = top(STORE_TXN_PUT, "{e}k", "v1");
    put.ttl_ms = 500000;
    store_txn_t t = {.slot = sl, .nsuccess = 1, .success = &put};
    ck_assert_int_eq(apply_txn1(10, 0, 0, &t, NULL), SHALE_OK);
    store_txn_clear(&t);
    ck_assert_int_eq(store_get(g_s, sl, TK("{e}k"), &v, g_err), SHALE_OK);
    uint64_t exp0 = v.expires_at;
    ck_assert_uint_gt(exp0, 0);
    free(v.value);

    put = top(STORE_TXN_PUT, "{e}k", "v2");
    put.keep_ttl = 1;
    ck_assert_int_eq(apply_txn1(11, 0, 0, &t, NULL), SHALE_OK);
    store_txn_clear(&t);
    memset(&v, 0, sizeof(v));
    ck_assert_int_eq(store_get(g_s, sl, TK("{e}k"), &v, g_err), SHALE_OK);
    ck_assert_uint_eq(v.expires_at, exp0);
    ck_assert_int_eq(memcmp(v.value, "v2", 2), 0);
    free(v.value);

    /* PERSIST: had a TTL; then none; again: had none, nothing written. */
    store_txn_op_t ex = top(STORE_TXN_EXPIRE, "{e}k", NULL);
    store_txn_t e = {.slot = sl, .nsuccess = 1, .success = &ex};
    ck_assert_int_eq(apply_txn1(12, 5, 1, &e, NULL), SHALE_OK);
    ck_assert_int_eq(e.results[0].found, 1);
    ck_assert_int_eq(e.results[0].had_ttl, 1);
    store_txn_clear(&e);
    int dup = 0;
    ck_assert_int_eq(apply_txn1(13, 5, 1, &e, &dup), SHALE_OK); /* retry */
    ck_assert_int_eq(dup, 1);
    ck_assert_int_eq(e.results[0].had_ttl, 1);
    store_txn_clear(&e);
    memset(&v, 0, sizeof(v));
    ck_assert_int_eq(store_get(g_s, sl, TK("{e}k"), &v, g_err), SHALE_OK);
    ck_assert_uint_eq(v.expires_at, 0);
    uint64_t ver = v.version;
    free(v.value);
    ck_assert_int_eq(apply_txn1(14, 0, 0, &e, NULL), SHALE_OK);
    ck_assert_int_eq(e.results[0].had_ttl, 0);
    store_txn_clear(&e);
    ck_assert_uint_eq(ver_of(sl, "{e}k", NULL, 0), ver);

    /* EXPIRE sets a TTL, the value kept; an absent key stays absent. */
    ex.ttl_ms = 1000;
    ck_assert_int_eq(apply_txn1(15, 0, 0, &e, NULL), SHALE_OK);
    ck_assert_int_eq(e.results[0].found, 1);
    store_txn_clear(&e);
    memset(&v, 0, sizeof(v));
    ck_assert_int_eq(store_get(g_s, sl, TK("{e}k"), &v, g_err), SHALE_OK);
    ck_assert_uint_gt(v.expires_at, 0);
    ck_assert_int_eq(memcmp(v.value, "v2", 2), 0);
    free(v.value);
    ex = top(STORE_TXN_EXPIRE, "{e}none", NULL);
    ex.ttl_ms = 1000;
    ck_assert_int_eq(apply_txn1(16, 0, 0, &e, NULL), SHALE_OK);
    ck_assert_int_eq(e.results[0].found, 0);
    store_txn_clear(&e);
    ck_assert_uint_eq(ver_of(sl, "{e}none", NULL, 0), 0);
}
END_TEST

/* ADD and APPEND (Redis INCRBY / APPEND) evaluated at apply: the new value
 * in the result; Redis's integer rules (absent = 0; not an integer, or an
 * overflow, fails the whole txn with op_error and applies nothing, its
 * earlier ops included); the key's TTL kept; a retry with the same session
 * gets the first outcome and adds once. */
START_TEST(test_txn_add_append)
{
    uint16_t sl = 9;
    store_txn_op_t add = top(STORE_TXN_ADD, "{n}c", NULL);
    add.delta = 5;
    store_txn_t t = {.slot = sl, .nsuccess = 1, .success = &add};
    ck_assert_int_eq(apply_txn1(10, 0, 0, &t, NULL), SHALE_OK);
    ck_assert_int_eq(t.succeeded, 1);
    ck_assert_uint_eq(t.nresults, 1);
    ck_assert_int_eq(t.results[0].found, 1);
    ck_assert_uint_eq(t.results[0].vlen, 1);
    ck_assert_int_eq(memcmp(t.results[0].value, "5", 1), 0);
    store_txn_clear(&t);
    add.delta = -12;
    ck_assert_int_eq(apply_txn1(11, 0, 0, &t, NULL), SHALE_OK);
    ck_assert_int_eq(memcmp(t.results[0].value, "-7", 2), 0);
    store_txn_clear(&t);
    char val[64];
    ver_of(sl, "{n}c", val, sizeof(val));
    ck_assert_str_eq(val, "-7");

    /* Exactly once: the same session twice adds once. */
    add.delta = 100;
    int dup = -1;
    ck_assert_int_eq(apply_txn1(12, 77, 1, &t, &dup), SHALE_OK);
    ck_assert_int_eq(dup, 0);
    store_txn_clear(&t);
    ck_assert_int_eq(apply_txn1(13, 77, 1, &t, &dup), SHALE_OK);
    ck_assert_int_eq(dup, 1);
    ck_assert_uint_eq(t.nresults, 1);
    ck_assert_uint_eq(t.results[0].vlen, 2);
    ck_assert_int_eq(memcmp(t.results[0].value, "93", 2), 0);
    store_txn_clear(&t);
    ver_of(sl, "{n}c", val, sizeof(val));
    ck_assert_str_eq(val, "93");

    /* Not integers (Redis's string2ll) and overflows: nothing applied, the
     * put before the add in the same txn included. */
    const char *notint[] = {"abc", "", " 1", "1 ", "+1", "01", "-0", "1.5",
                            "99999999999999999999", "-9223372036854775809"};
    uint64_t idx = 20;
    for (size_t i = 0; i < sizeof(notint) / sizeof(notint[0]); i++) {
        apply1(idx++, 0, 0, op_put(sl, "{n}s", notint[i]), NULL, NULL);
        store_txn_op_t ops[2] = {top(STORE_TXN_PUT, "{n}other", "x"), top(STORE_TXN_ADD, "{n}s", NULL)};
        ops[1].delta = 1;
        store_txn_t u = {.slot = sl, .nsuccess = 2, .success = ops};
        ck_assert_int_eq(apply_txn1(idx++, 0, 0, &u, NULL), SHALE_EINVAL);
        ck_assert_int_eq(u.op_error, STORE_TXN_ENOTINT);
        ck_assert_uint_eq(u.nresults, 0);
        ck_assert_uint_eq(ver_of(sl, "{n}other", NULL, 0), 0);
        ver_of(sl, "{n}s", val, sizeof(val));
        ck_assert_str_eq(val, notint[i]);
    }
    struct {
        const char *v;
        int64_t d;
        const char *want; /* NULL: overflow */
    } ov[] = {{"9223372036854775807", 1, NULL}, {"9223372036854775806", 1, "9223372036854775807"},
              {"-9223372036854775808", -1, NULL}, {"-9223372036854775807", -1, "-9223372036854775808"},
              {"0", INT64_MIN, "-9223372036854775808"}, {"-1", INT64_MAX, "9223372036854775806"}};
    for (size_t i = 0; i < sizeof(ov) / sizeof(ov[0]); i++) {
        apply1(idx++, 0, 0, op_put(sl, "{n}o", ov[i].v), NULL, NULL);
        store_txn_op_t o = top(STORE_TXN_ADD, "{n}o", NULL);
        o.delta = ov[i].d;
        store_txn_t u = {.slot = sl, .nsuccess = 1, .success = &o};
        int code = apply_txn1(idx++, 0, 0, &u, NULL);
        ver_of(sl, "{n}o", val, sizeof(val));
        if (ov[i].want == NULL) {
            ck_assert_int_eq(code, SHALE_EINVAL);
            ck_assert_int_eq(u.op_error, STORE_TXN_EOVERFLOW);
            ck_assert_str_eq(val, ov[i].v);
        } else {
            ck_assert_int_eq(code, SHALE_OK);
            ck_assert_str_eq(val, ov[i].want);
        }
        store_txn_clear(&u);
    }

    /* APPEND: absent = empty; the new value returned. */
    store_txn_op_t ap = top(STORE_TXN_APPEND, "{n}a", "Hello");
    store_txn_t a = {.slot = sl, .nsuccess = 1, .success = &ap};
    ck_assert_int_eq(apply_txn1(idx++, 0, 0, &a, NULL), SHALE_OK);
    ck_assert_uint_eq(a.results[0].vlen, 5);
    store_txn_clear(&a);
    ap = top(STORE_TXN_APPEND, "{n}a", " World");
    ck_assert_int_eq(apply_txn1(idx++, 0, 0, &a, NULL), SHALE_OK);
    ck_assert_uint_eq(a.results[0].vlen, 11);
    ck_assert_int_eq(memcmp(a.results[0].value, "Hello World", 11), 0);
    store_txn_clear(&a);

    /* The TTL is kept: same expiry after an ADD and an APPEND. */
    apply1(idx++, 0, 0, op_put_ttl(sl, "{n}t", "10", 600000), NULL, NULL);
    store_value_t v0 = {0};
    ck_assert_int_eq(store_get(g_s, sl, TK("{n}t"), &v0, g_err), SHALE_OK);
    ck_assert_uint_gt(v0.expires_at, 0);
    free(v0.value);
    store_txn_op_t ops2[2] = {top(STORE_TXN_ADD, "{n}t", NULL), top(STORE_TXN_APPEND, "{n}t", "0")};
    ops2[0].delta = 1;
    store_txn_t k = {.slot = sl, .nsuccess = 2, .success = ops2};
    ck_assert_int_eq(apply_txn1(idx++, 0, 0, &k, NULL), SHALE_OK);
    store_txn_clear(&k);
    store_value_t v1 = {0};
    ck_assert_int_eq(store_get(g_s, sl, TK("{n}t"), &v1, g_err), SHALE_OK);
    ck_assert_int_eq(v1.found, 1);
    ck_assert_uint_eq(v1.len, 3);
    ck_assert_int_eq(memcmp(v1.value, "110", 3), 0);
    ck_assert_uint_eq(v1.expires_at, v0.expires_at);
    free(v1.value);
}
END_TEST

/* Move the log clock with a no-op entry (as the fsm does for a tick). */
static void tick(uint64_t index, uint64_t now)
{
    store_clock_advance(g_s, now);
    ck_assert_int_eq(store_apply_noop(g_s, index, g_err), SHALE_OK);
}

/* The expires_at of k (0: none), asserting it is present. */
static uint64_t exp_of(uint16_t slot, const char *k)
{
    store_value_t v = {0};
    ck_assert_int_eq(store_get(g_s, slot, TK(k), &v, g_err), SHALE_OK);
    ck_assert_msg(v.found, "key %s missing", k);
    free(v.value);
    return v.expires_at;
}

/* Everything the index lists as due at now; returns how many. */
static size_t due(uint64_t now, store_expire_key_t **keys)
{
    size_t n = 0;
    ck_assert_int_eq(store_expire_due(g_s, now, 256, keys, &n, g_err), SHALE_OK);
    return n;
}

/* A key with a TTL is there until the log clock reaches expires_at and
 * absent from then on for every read path (get, scan, CAS, txn compare and
 * get, delete's existed), whether or not its row was deleted; other keys
 * are not affected; the clock and the TTL survive a reopen. Each assertion
 * fails if reads used anything but the log clock, or if expiry were off by
 * one (expired means expires_at <= clock). */
START_TEST(test_ttl_absent_at_log_clock)
{
    apply_at(1, 1000, op_put_ttl(3, "k", "v", 100), NULL);
    apply_at(2, 1000, op_put(3, "plain", "p"), NULL);
    ck_assert_uint_eq(store_clock(g_s), 1000);
    ck_assert_uint_eq(exp_of(3, "k"), 1100);
    ck_assert_uint_eq(exp_of(3, "plain"), 0);
    tick(3, 1099);
    expect_val(3, "k", "v");
    /* A clock going back (a new leader behind) does not move it. */
    tick(4, 500);
    ck_assert_uint_eq(store_clock(g_s), 1099);
    tick(5, 1100);
    expect_val(3, "k", NULL);
    expect_val(3, "plain", "p");
    store_scan_page_t page;
    ck_assert_int_eq(store_scan(g_s, 3, NULL, 0, NULL, 0, 10, 1 << 20, 0, &page, g_err), SHALE_OK);
    ck_assert_uint_eq(page.n, 1);
    ck_assert(page.items[0].klen == 5 && memcmp(page.items[0].key, "plain", 5) == 0);
    store_scan_free(&page);
    /* txn: EXISTS(k) = false holds, the get does not find it */
    store_txn_compare_t cmp = tcmp("k", STORE_TXN_EXISTS, STORE_TXN_EQUAL, NULL, 0, 0);
    store_txn_op_t get = top(STORE_TXN_GET, "k", NULL);
    store_txn_t t = {.slot = 3, .ncompares = 1, .compares = &cmp, .nsuccess = 1, .success = &get};
    ck_assert_int_eq(apply_txn1(6, 0, 0, &t, NULL), SHALE_OK);
    ck_assert(t.succeeded);
    ck_assert_uint_eq(t.nresults, 1);
    ck_assert_int_eq(t.results[0].found, 0);
    store_txn_clear(&t);
    /* close and reopen: the clock was persisted, k stays absent */
    close_store();
    open_store();
    ck_assert_uint_eq(store_clock(g_s), 1100);
    expect_val(3, "k", NULL);
    /* delete of an expired key: not existed; CAS ABSENT matches */
    store_result_t r = apply_at(7, 1200, op_del(3, "k"), NULL);
    ck_assert_int_eq(r.existed, 0);
    apply_at(8, 1200, op_put_ttl(3, "c", "1", 10), NULL);
    tick(9, 1300);
    r = apply_at(10, 1300, op_cas(3, "c", "2", STORE_CAS_ABSENT), NULL);
    ck_assert_int_eq(r.code, SHALE_OK);
    expect_val(3, "c", "2");
    ck_assert_uint_eq(exp_of(3, "c"), 0); /* a CAS write has no TTL */
}
END_TEST

/* A put without TTL clears one; a put with another TTL replaces it; the
 * expiry index lists due keys oldest first; an EXPIRE apply deletes only
 * rows that still carry the listed expires_at and are due, drops the index
 * entry either way, reports what it deleted, and is a no-op on replay. */
START_TEST(test_ttl_reput_and_expire_entry)
{
    store_expire_key_t *keys = NULL;
    store_expired_t *del = NULL;
    size_t nd = 0;
    apply_at(1, 1000, op_put_ttl(2, "k", "a", 100), NULL); /* exp 1100 */
    apply_at(2, 1050, op_put(2, "k", "b"), NULL);          /* no TTL now */
    ck_assert_uint_eq(exp_of(2, "k"), 0);
    apply_at(3, 1060, op_put_ttl(2, "z", "z", 40), NULL); /* exp 1100 too */
    tick(4, 2000);
    expect_val(2, "k", "b");
    expect_val(2, "z", NULL);
    size_t n = due(2000, &keys);
    ck_assert_uint_ge(n, 1); /* z, and k's stale entry when its put was blind */
    ck_assert_int_eq(store_apply_expire(g_s, 5, 2000, keys, n, &del, &nd, g_err), SHALE_OK);
    ck_assert_uint_eq(nd, 1);
    ck_assert(del[0].slot == 2 && del[0].klen == 1 && del[0].key[0] == 'z');
    ck_assert_uint_gt(del[0].version, 0);
    store_expired_free(del, nd);
    /* replay of the same index: nothing */
    ck_assert_int_eq(store_apply_expire(g_s, 5, 2000, keys, n, &del, &nd, g_err), SHALE_OK);
    ck_assert_uint_eq(nd, 0);
    ck_assert_ptr_null(del);
    store_expire_keys_free(keys, n);
    ck_assert_uint_eq(due(UINT64_MAX - 1, &keys), 0); /* index is clean */
    expect_val(2, "k", "b");
    /* replace a TTL by a longer one: the old expires_at does not delete it */
    apply_at(6, 2000, op_put_ttl(2, "k", "c", 500), NULL);  /* exp 2500 */
    apply_at(7, 2100, op_put_ttl(2, "k", "d", 1000), NULL); /* exp 3100 */
    ck_assert_uint_eq(exp_of(2, "k"), 3100);
    tick(8, 2600);
    expect_val(2, "k", "d");
    n = due(2600, &keys);
    if (n > 0) { /* the 2500 entry, if the put was blind */
        ck_assert_uint_eq(keys[0].expires_at, 2500);
        ck_assert_int_eq(store_apply_expire(g_s, 9, 2600, keys, n, &del, &nd, g_err), SHALE_OK);
        ck_assert_uint_eq(nd, 0);
        store_expire_keys_free(keys, n);
    } else {
        tick(9, 2600);
    }
    expect_val(2, "k", "d");
    /* Listed but not yet due at the entry's clock: row and index entry
     * kept (never proposed so by a leader, but apply must not trust the
     * list). */
    store_expire_key_t early = {.slot = 2, .key = (uint8_t *)"k", .klen = 1, .expires_at = 3100};
    ck_assert_int_eq(store_apply_expire(g_s, 10, 2700, &early, 1, &del, &nd, g_err), SHALE_OK);
    ck_assert_uint_eq(nd, 0);
    expect_val(2, "k", "d");
    /* due now: the index still lists it, deleted */
    tick(11, 2800);
    n = due(3100, &keys);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(keys[0].expires_at, 3100);
    ck_assert_int_eq(store_apply_expire(g_s, 12, 3100, keys, n, &del, &nd, g_err), SHALE_OK);
    ck_assert_uint_eq(nd, 1);
    store_expired_free(del, nd);
    store_expire_keys_free(keys, n);
    close_store();
    open_store();
    store_value_t v = {0};
    ck_assert_int_eq(store_get(g_s, 2, TK("k"), &v, g_err), SHALE_OK);
    ck_assert_int_eq(v.found, 0);
    /* a delete drops the index entry: nothing is due afterwards */
    apply_at(13, 3200, op_put_ttl(2, "g", "g", 50), NULL);
    apply_at(14, 3210, op_del(2, "g"), NULL);
    ck_assert_uint_eq(due(UINT64_MAX - 1, &keys), 0);
}
END_TEST

/* Migration records carry the TTL: a DATA scan of a slot imported into
 * another keeps expires_at (and indexes it there), a TTL put and an expiry
 * deletion of a logged slot travel in its changelog, and an old-format
 * record (no TTL flag) imports as a key without TTL. A TTL record cut
 * short is refused. */
START_TEST(test_ttl_records)
{
    uint64_t idx = 1;
    apply_at(idx++, 1000, op_put_ttl(4, "t", "tv", 5000), NULL); /* exp 6000 */
    apply_at(idx++, 1000, op_put(4, "p", "pv"), NULL);
    ck_assert_int_eq(store_changelog_set(g_s, 4, 1), SHALE_OK);
    uint32_t n;
    int pages;
    store_buf_t data = scan_all(4, STORE_SCAN_DATA, 1 << 20, &n, &pages);
    ck_assert_uint_eq(n, 2);
    apply_at(idx++, 1100, op_put_ttl(4, "l", "lv", 100), NULL);  /* exp 1200, logged */
    apply_at(idx++, 1100, op_put_ttl(4, "gone", "x", 50), NULL); /* exp 1150 */
    tick(idx++, 1150);
    store_expire_key_t *keys = NULL;
    size_t nk = due(1150, &keys);
    ck_assert_uint_eq(nk, 1);
    store_expired_t *del = NULL;
    size_t nd = 0;
    ck_assert_int_eq(store_apply_expire(g_s, idx++, 1150, keys, nk, &del, &nd, g_err), SHALE_OK);
    ck_assert_uint_eq(nd, 1);
    store_expired_free(del, nd);
    store_expire_keys_free(keys, nk);
    store_buf_t log = scan_all(4, STORE_SCAN_LOG, 1 << 20, &n, &pages);
    ck_assert_uint_eq(n, 3); /* put l, put gone, expiry delete of gone */
    uint32_t cnt = 0;
    /* what makes an import entry "SHC2" (raft_fsm.c) */
    ck_assert_int_eq(store_records_have_ttl(data.data, data.len), 1);
    ck_assert_int_eq(store_records_have_ttl(log.data, log.len), 1);
    ck_assert_int_eq(store_apply_records(g_s, idx++, 9, data.data, data.len, &cnt, g_err),
                     SHALE_OK);
    ck_assert_int_eq(store_apply_records(g_s, idx++, 9, log.data, log.len, &cnt, g_err), SHALE_OK);
    ck_assert_uint_eq(exp_of(9, "t"), 6000);
    ck_assert_uint_eq(exp_of(9, "l"), 1200);
    ck_assert_uint_eq(exp_of(9, "p"), 0);
    expect_val(9, "gone", NULL);
    /* the imported rows are indexed in slot 9 */
    nk = due(6000, &keys);
    size_t in9 = 0;
    for (size_t i = 0; i < nk; i++)
        in9 += keys[i].slot == 9 && keys[i].klen == 1 &&
               (keys[i].key[0] == 't' || keys[i].key[0] == 'l');
    ck_assert_uint_eq(in9, 2);
    store_expire_keys_free(keys, nk);
    free(data.data);
    free(log.data);
    /* old format: [version:8][value], no flag */
    uint8_t rec[64];
    size_t rl = data_record(rec, "old", 77, "ov");
    ck_assert_int_eq(store_records_have_ttl(rec, rl), 0);
    ck_assert_int_eq(store_apply_records(g_s, idx++, 10, rec, rl, &cnt, g_err), SHALE_OK);
    ck_assert_uint_eq(expect_val(10, "old", "ov"), 77);
    ck_assert_uint_eq(exp_of(10, "old"), 0);
    /* flag set but no room for expires_at: malformed, nothing written */
    rl = data_record(rec, "bad", 78, "");
    rec[rl - 8] |= 0x80; /* top bit of the version: a TTL row of 8 bytes */
    ck_assert_int_eq(store_apply_records(g_s, idx++, 10, rec, rl, &cnt, g_err), SHALE_EINVAL);
    expect_val(10, "bad", NULL);
}
END_TEST

/* A checkpoint carries the TTL rows, the expiry index and the log clock: a
 * store restored from it treats keys exactly as the source did at the
 * checkpoint (a key expired there is absent, a live one keeps its
 * expires_at) and its expiry index lists the same due keys. */
START_TEST(test_ttl_checkpoint)
{
    char ckpt[160];
    snprintf(ckpt, sizeof(ckpt), "%s/ckpt", g_dir);
    apply_at(1, 1000, op_put_ttl(5, "gone", "g", 100), NULL);  /* exp 1100 */
    apply_at(2, 1000, op_put_ttl(5, "live", "l", 9000), NULL); /* exp 10000 */
    tick(3, 2000);
    ck_assert_int_eq(store_checkpoint(g_s, ckpt, g_err), SHALE_OK);
    close_store();
    ck_assert_int_eq(store_restore(ckpt, g_db, g_err), SHALE_OK);
    open_store();
    ck_assert_uint_eq(store_clock(g_s), 2000);
    expect_val(5, "gone", NULL);
    ck_assert_uint_eq(exp_of(5, "live"), 10000);
    store_expire_key_t *keys = NULL;
    size_t n = due(2000, &keys);
    ck_assert_uint_eq(n, 1);
    ck_assert(keys[0].slot == 5 && keys[0].klen == 4 && memcmp(keys[0].key, "gone", 4) == 0);
    store_expire_keys_free(keys, n);
    n = due(10000, &keys);
    ck_assert_uint_eq(n, 2);
    store_expire_keys_free(keys, n);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("core");
    TCase *full = tcase_create("disk_full");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_put_get_versions);
    tcase_add_test(tc, test_changelog_scan_apply);
    tcase_add_test(tc, test_sessions_scan_and_bad_batches);
    tcase_add_test(tc, test_version_max_rule);
    tcase_add_test(tc, test_version_bound);
    tcase_add_test(tc, test_keyhash_marker_new);
    tcase_add_test(tc, test_keyhash_upgrade_clean);
    tcase_add_test(tc, test_keyhash_refuse_tagged);
    tcase_add_test(tc, test_keyhash_marker_bad);
    tcase_add_test(tc, test_records_check_slot);
    tcase_add_test(tc, test_cas);
    tcase_add_test(tc, test_batch_sees_earlier_ops);
    tcase_add_test(tc, test_delete);
    tcase_add_test(tc, test_reapply_is_noop);
    tcase_add_test(tc, test_session_duplicate_later_entry);
    tcase_add_test(tc, test_session_duplicate_same_entry);
    tcase_add_test(tc, test_session_window);
    tcase_add_test(tc, test_session_prune);
    tcase_add_test(tc, test_session_prune_point);
    tcase_add_test(tc, test_session_prune_in_batch);
    tcase_add_test(tc, test_session_expiry);
    tcase_add_test(tc, test_iter_snapshot);
    tcase_add_test(tc, test_scan_slot);
    tcase_add_test(tc, test_delete_slot_edges);
    tcase_add_test(tc, test_checkpoint_restore);
    tcase_add_test(tc, test_large_empty_binary);
    tcase_add_test(tc, test_invalid_input);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_txn_compare_and_branches);
    tcase_add_test(tc, test_txn_session_replay);
    tcase_add_test(tc, test_txn_changelog);
    tcase_add_test(tc, test_txn_add_append);
    tcase_add_test(tc, test_txn_ttl_ops);
    tcase_add_test(tc, test_ttl_absent_at_log_clock);
    tcase_add_test(tc, test_ttl_reput_and_expire_entry);
    tcase_add_test(tc, test_ttl_records);
    tcase_add_test(tc, test_ttl_checkpoint);
    suite_add_tcase(s, tc);

    tcase_add_unchecked_fixture(full, full_setup, full_teardown);
    tcase_set_timeout(full, 60);
    tcase_add_test(full, test_disk_full);
    suite_add_tcase(s, full);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
