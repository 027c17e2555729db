/* Unit tests of the consistency check's checksums (storage/store_check.h):
 * deterministic, independent of the order rows were written in, sensitive
 * to a changed value, version, TTL (flag and expires_at), a missing and an
 * extra key, sessions summed apart from data, other slots untouched; the
 * view is pinned at its opening; a cancel stops the sum; rows out of order
 * are refused. Each store gets its own temp dir under /tmp. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "store_check.h"

static char g_err[STORE_ERRLEN];

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A data row to import: slot, key, version, expires_at (0: no TTL), value. */
typedef struct trow {
    uint16_t slot;
    const char *key;
    uint64_t version;
    uint64_t expires_at;
    const char *value;
} trow_t;

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* One record batch of rows (all in one slot), as store_apply_records takes. */
static size_t records(const trow_t *rows, size_t n, uint8_t *out)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(rows[i].key) + 1, vl = strlen(rows[i].value);
        out[at++] = STORE_REC_PUT;
        be32(out + at, (uint32_t)kl);
        at += 4;
        out[at++] = 'd';
        memcpy(out + at, rows[i].key, kl - 1);
        at += kl - 1;
        size_t sv = 8 + (rows[i].expires_at ? 8 : 0) + vl;
        be32(out + at, (uint32_t)sv);
        at += 4;
        be64(out + at, rows[i].version | (rows[i].expires_at ? 1ull << 63 : 0));
        at += 8;
        if (rows[i].expires_at) {
            be64(out + at, rows[i].expires_at);
            at += 8;
        }
        memcpy(out + at, rows[i].value, vl);
        at += vl;
    }
    return at;
}

typedef struct tstore {
    char dir[64];
    store_t *s;
    uint64_t index;
} tstore_t;

static void ts_open(tstore_t *t)
{
    store_options_t o;
    char db[128];
    strcpy(t->dir, "/tmp/shale_check_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    snprintf(db, sizeof(db), "%s/db", t->dir);
    store_options_default(&o);
    o.block_cache_bytes = 1u << 20;
    o.write_buffer_bytes = 1u << 20;
    ck_assert_msg(store_open(db, &o, &t->s, g_err) == SHALE_OK, "open: %s", g_err);
    t->index = 0;
}

static void ts_close(tstore_t *t)
{
    store_close(t->s);
    nftw(t->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Import rows one slot-run at a time (each call one batch, one index). */
static void ts_import(tstore_t *t, const trow_t *rows, size_t n)
{
    uint8_t buf[4096];
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && rows[j].slot == rows[i].slot)
            j++;
        size_t len = records(rows + i, j - i, buf);
        ck_assert_msg(store_apply_records(t->s, ++t->index, rows[i].slot, buf, len, NULL, g_err) ==
                          SHALE_OK,
                      "import: %s", g_err);
        i = j;
    }
}

static void ts_sum(tstore_t *t, check_result_t *r)
{
    store_view_t *v = NULL;
    ck_assert_int_eq(store_view_open(t->s, &v, g_err), SHALE_OK);
    ck_assert_int_eq(check_compute(v, 0, NULL, r, g_err), SHALE_OK);
    store_view_close(v);
}

/* The sums of a fresh store holding rows (imported in the order given). */
static void sums_of(const trow_t *rows, size_t n, check_result_t *r)
{
    tstore_t t;
    ts_open(&t);
    ts_import(&t, rows, n);
    ts_sum(&t, r);
    ts_close(&t);
}

static const trow_t base[] = {
    {5, "alpha", 100, 0, "one"},
    {5, "beta", 101, 0, "two"},
    {5, "gamma", 102, 900000, "three"},
    {7, "delta", 103, 0, "four"},
};
#define NBASE (sizeof(base) / sizeof(base[0]))

static void assert_same(const check_result_t *a, const check_result_t *b)
{
    ck_assert_uint_eq(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        ck_assert_uint_eq(a->slots[i].slot, b->slots[i].slot);
        ck_assert_uint_eq(a->slots[i].data_sum, b->slots[i].data_sum);
        ck_assert_uint_eq(a->slots[i].data_keys, b->slots[i].data_keys);
        ck_assert_uint_eq(a->slots[i].sess_sum, b->slots[i].sess_sum);
        ck_assert_uint_eq(a->slots[i].sess_rows, b->slots[i].sess_rows);
    }
}

START_TEST(test_deterministic_and_order)
{
    check_result_t a, a2, b;
    sums_of(base, NBASE, &a);
    ck_assert_uint_eq(a.n, 2);
    ck_assert_uint_eq(a.slots[0].slot, 5);
    ck_assert_uint_eq(a.slots[0].data_keys, 3);
    ck_assert_uint_eq(a.slots[1].slot, 7);
    ck_assert_uint_eq(a.slots[1].data_keys, 1);
    ck_assert(a.slots[0].data_sum != 0 && a.slots[0].data_sum != a.slots[1].data_sum);
    ck_assert_uint_eq(a.slots[0].sess_rows, 0);
    sums_of(base, NBASE, &a2);
    assert_same(&a, &a2);
    /* The same rows written in another order, over more batches (other
     * applied indexes): the same sums. */
    const trow_t rev[] = {base[3], base[2], base[1], base[0]};
    tstore_t t;
    ts_open(&t);
    for (size_t i = 0; i < NBASE; i++)
        ts_import(&t, &rev[i], 1);
    ts_sum(&t, &b);
    ts_close(&t);
    assert_same(&a, &b);
    check_result_free(&a);
    check_result_free(&a2);
    check_result_free(&b);
}
END_TEST

/* rows differs from base: slot 5 must differ (with want_keys keys), slot 7
 * must not. */
static void assert_slot5_differs(const trow_t *rows, size_t n, uint64_t want_keys)
{
    check_result_t a, b;
    sums_of(base, NBASE, &a);
    sums_of(rows, n, &b);
    const check_slot_t *a5 = check_find(&a, 5), *b5 = check_find(&b, 5);
    const check_slot_t *a7 = check_find(&a, 7), *b7 = check_find(&b, 7);
    ck_assert_ptr_nonnull(a5);
    ck_assert_ptr_nonnull(b5);
    ck_assert_ptr_nonnull(a7);
    ck_assert_ptr_nonnull(b7);
    ck_assert(a5->data_sum != b5->data_sum);
    ck_assert_uint_eq(b5->data_keys, want_keys);
    ck_assert_uint_eq(a7->data_sum, b7->data_sum);
    ck_assert_uint_eq(a7->data_keys, b7->data_keys);
    check_result_free(&a);
    check_result_free(&b);
}

START_TEST(test_sensitive)
{
    trow_t r[NBASE + 1];
    /* a changed value (same length) */
    memcpy(r, base, sizeof(base));
    r[1].value = "twp";
    assert_slot5_differs(r, NBASE, 3);
    /* a changed version */
    memcpy(r, base, sizeof(base));
    r[1].version = 99;
    assert_slot5_differs(r, NBASE, 3);
    /* a TTL added, one removed, one moved */
    memcpy(r, base, sizeof(base));
    r[0].expires_at = 900000;
    assert_slot5_differs(r, NBASE, 3);
    memcpy(r, base, sizeof(base));
    r[2].expires_at = 0;
    assert_slot5_differs(r, NBASE, 3);
    memcpy(r, base, sizeof(base));
    r[2].expires_at = 900001;
    assert_slot5_differs(r, NBASE, 3);
    /* a missing key */
    const trow_t miss[] = {base[0], base[2], base[3]};
    assert_slot5_differs(miss, 3, 2);
    /* an extra key */
    const trow_t extra[] = {base[0], base[1], {5, "beta2", 104, 0, ""}, base[2], base[3]};
    assert_slot5_differs(extra, 5, 4);
    /* the key/value boundary: "ab"="c" is not "a"="bc" */
    const trow_t s1[] = {{9, "ab", 1, 0, "c"}}, s2[] = {{9, "a", 1, 0, "bc"}};
    check_result_t x, y;
    sums_of(s1, 1, &x);
    sums_of(s2, 1, &y);
    ck_assert(x.slots[0].data_sum != y.slots[0].data_sum);
    check_result_free(&x);
    check_result_free(&y);
}
END_TEST

START_TEST(test_sessions_apart)
{
    tstore_t t;
    ts_open(&t);
    store_op_t op = {.type = STORE_OP_PUT,
                     .slot = 3,
                     .key = (const uint8_t *)"k",
                     .klen = 1,
                     .value = (const uint8_t *)"v",
                     .vlen = 1};
    store_result_t res;
    store_request_t rq = {.client_id = 42, .seq = 1, .nops = 1, .ops = &op, .results = &res};
    int skipped = 0;
    ck_assert_int_eq(store_apply(t.s, 1, 1000, &rq, 1, &skipped, g_err), SHALE_OK);
    check_result_t a, b;
    ts_sum(&t, &a);
    ck_assert_uint_eq(a.n, 1);
    ck_assert_uint_eq(a.slots[0].data_keys, 1);
    ck_assert_uint_gt(a.slots[0].sess_rows, 0);
    ck_assert(a.slots[0].sess_sum != 0);
    /* The same put without a session: the same data sum, no session rows. */
    tstore_t u;
    ts_open(&u);
    rq.client_id = 0;
    ck_assert_int_eq(store_apply(u.s, 1, 1000, &rq, 1, &skipped, g_err), SHALE_OK);
    ts_sum(&u, &b);
    ck_assert_uint_eq(b.slots[0].data_sum, a.slots[0].data_sum);
    ck_assert_uint_eq(b.slots[0].sess_rows, 0);
    check_result_free(&a);
    check_result_free(&b);
    ts_close(&t);
    ts_close(&u);
}
END_TEST

START_TEST(test_view_pinned_and_cancel)
{
    tstore_t t;
    check_result_t before, after, r;
    ts_open(&t);
    ts_import(&t, base, NBASE);
    ts_sum(&t, &before);
    store_view_t *v = NULL;
    ck_assert_int_eq(store_view_open(t.s, &v, g_err), SHALE_OK);
    ck_assert_uint_eq(store_view_applied(v), t.index);
    const trow_t more[] = {{5, "zeta", 200, 0, "later"}};
    ts_import(&t, more, 1);
    /* Summed after the write, from the view opened before it; rate-limited
     * (a generous rate: only that it completes is asserted). */
    ck_assert_int_eq(check_compute(v, 1u << 30, NULL, &r, g_err), SHALE_OK);
    store_view_close(v);
    assert_same(&before, &r);
    check_result_free(&r);
    ts_sum(&t, &after);
    ck_assert_uint_eq(check_find(&after, 5)->data_keys, 4);
    /* A cancel set before the run stops it. */
    atomic_int cancel;
    atomic_init(&cancel, 1);
    ck_assert_int_eq(store_view_open(t.s, &v, g_err), SHALE_OK);
    ck_assert_int_eq(check_compute(v, 0, &cancel, &r, g_err), SHALE_EUNAVAILABLE);
    ck_assert_uint_eq(r.n, 0);
    store_view_close(v);
    check_result_free(&before);
    check_result_free(&after);
    ts_close(&t);
}
END_TEST

START_TEST(test_add_row_rules)
{
    check_result_t r = {0};
    const uint8_t k5[] = {0, 5, 'd', 'a'}, k4[] = {0, 4, 'd', 'a'}, x5[] = {0, 5, 'x', 1};
    const uint8_t v[] = {0, 0, 0, 0, 0, 0, 0, 1, 'v'};
    ck_assert_int_eq(check_add_row(&r, k5, sizeof(k5), v, sizeof(v)), 0);
    ck_assert_int_eq(check_add_row(&r, x5, sizeof(x5), v, sizeof(v)), 0); /* changelog: skipped */
    ck_assert_uint_eq(r.rows, 1);
    ck_assert_int_eq(check_add_row(&r, k4, sizeof(k4), v, sizeof(v)), SHALE_EINVAL);
    ck_assert_int_eq(check_add_row(&r, k5, 2, v, sizeof(v)), SHALE_EINVAL);
    ck_assert_ptr_null(check_find(&r, 4));
    ck_assert_ptr_nonnull(check_find(&r, 5));
    check_result_free(&r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("store_check");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_deterministic_and_order);
    tcase_add_test(tc, test_sensitive);
    tcase_add_test(tc, test_sessions_apart);
    tcase_add_test(tc, test_view_pinned_and_cancel);
    tcase_add_test(tc, test_add_row_rules);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
