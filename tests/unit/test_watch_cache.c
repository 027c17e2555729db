/* The watch cache (server/watch_cache.h): order, whole revisions, the
 * bounds and the floor they raise, COMPACTED (never a gap), key and prefix
 * matching, a slot's start, resets. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale_errors.h"
#include "watch_cache.h"

static void put(watch_cache_t *c, uint64_t rev, uint32_t slot, const char *k, const char *v)
{
    ck_assert_int_eq(wc_append(c, rev, slot, WC_PUT, (const uint8_t *)k, strlen(k),
                               (const uint8_t *)v, strlen(v), rev << 16 | 1),
                     0);
}

static wc_query_t query(const char *key, int prefix, uint32_t slot, uint64_t from)
{
    wc_query_t q = {.key = (const uint8_t *)key,
                    .klen = strlen(key),
                    .prefix = prefix,
                    .slot = slot,
                    .from = from,
                    .max_events = 1000,
                    .max_bytes = 1 << 20};
    return q;
}

/* Collect q; returns the count, fills rev. */
static size_t collect(const watch_cache_t *c, wc_query_t q, uint64_t *rev, const wc_change_t ***out)
{
    char msg[256];
    size_t n = 99;
    ck_assert_int_eq(wc_collect(c, &q, out, &n, rev, msg, sizeof(msg)), 0);
    return n;
}

START_TEST(test_order_and_key_match)
{
    watch_cache_t c;
    ck_assert_int_eq(wc_init(&c, 100, 1 << 20, 10), 0);
    put(&c, 11, 5, "a", "1");
    put(&c, 12, 5, "b", "x");
    put(&c, 12, 5, "a", "2"); /* two changes in one entry */
    ck_assert_int_eq(wc_append(&c, 14, 5, WC_DELETE, (const uint8_t *)"a", 1, NULL, 0, 77), 0);
    wc_advance(&c, 15);
    put(&c, 16, 6, "a", "other slot"); /* same key bytes, another slot: not "a" of slot 5 */
    const wc_change_t **ch;
    uint64_t rev;
    size_t n = collect(&c, query("a", 0, 5, 11), &rev, &ch);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(ch[0]->revision, 11);
    ck_assert_uint_eq(ch[1]->revision, 12);
    ck_assert_int_eq(memcmp(ch[1]->data + ch[1]->klen, "2", 1), 0);
    ck_assert_uint_eq(ch[2]->revision, 14);
    ck_assert_int_eq(ch[2]->kind, WC_DELETE);
    ck_assert_uint_eq(ch[2]->version, 77);
    ck_assert_uint_eq(rev, 16); /* everything applied was examined */
    free(ch);
    /* From the middle: only what follows. */
    n = collect(&c, query("a", 0, 5, 13), &rev, &ch);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(ch[0]->revision, 14);
    free(ch);
    /* Caught up: nothing, the revision says how far it looked. */
    n = collect(&c, query("a", 0, 5, 17), &rev, &ch);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(rev, 16);
    free(ch);
    /* Ahead of this member (it lags): nothing, no progress claimed. */
    n = collect(&c, query("a", 0, 5, 30), &rev, &ch);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(rev, 29);
    free(ch);
    wc_free(&c);
}
END_TEST

START_TEST(test_prefix_match)
{
    watch_cache_t c;
    ck_assert_int_eq(wc_init(&c, 100, 1 << 20, 0), 0);
    put(&c, 1, 9, "{t}a", "1");
    put(&c, 2, 9, "{t}", "2");
    put(&c, 3, 9, "{u}a", "3");
    put(&c, 4, 9, "{t", "4");
    put(&c, 5, 9, "{t}b", "5");
    const wc_change_t **ch;
    uint64_t rev;
    size_t n = collect(&c, query("{t}", 1, 9, 1), &rev, &ch);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(ch[0]->revision, 1);
    ck_assert_uint_eq(ch[1]->revision, 2);
    ck_assert_uint_eq(ch[2]->revision, 5);
    free(ch);
    n = collect(&c, query("{t}a", 0, 9, 1), &rev, &ch); /* exact key: not a prefix */
    ck_assert_uint_eq(n, 1);
    free(ch);
    wc_free(&c);
}
END_TEST

/* The count bound drops the oldest changes; the floor rises to their
 * revision and a resume at or below it is COMPACTED, above it complete. */
START_TEST(test_bounds_and_compacted)
{
    watch_cache_t c;
    ck_assert_int_eq(wc_init(&c, 4, 1 << 20, 0), 0);
    for (uint64_t r = 1; r <= 10; r++)
        put(&c, r, 1, "k", "v");
    ck_assert_uint_eq(c.n, 4);
    ck_assert_uint_eq(c.floor, 6);
    const wc_change_t **ch = NULL;
    size_t n;
    uint64_t rev;
    char msg[256];
    wc_query_t q = query("k", 0, 1, 6);
    ck_assert_int_eq(wc_collect(&c, &q, &ch, &n, &rev, msg, sizeof(msg)), SHALE_ECOMPACTED);
    ck_assert_ptr_nonnull(strstr(msg, "watch from now"));
    ck_assert_ptr_null(ch);
    n = collect(&c, query("k", 0, 1, 7), &rev, &ch);
    ck_assert_uint_eq(n, 4);
    ck_assert_uint_eq(ch[0]->revision, 7);
    free(ch);
    /* The byte bound: 3 changes of ~1 KiB each in 2.5 KiB keep 2. */
    watch_cache_t b;
    size_t one = sizeof(wc_change_t) + 1 + 1000;
    ck_assert_int_eq(wc_init(&b, 100, one * 2 + one / 2, 0), 0);
    char big[1001];
    memset(big, 'x', 1000);
    big[1000] = '\0';
    for (uint64_t r = 1; r <= 3; r++)
        put(&b, r, 1, "k", big);
    ck_assert_uint_eq(b.n, 2);
    ck_assert_uint_eq(b.floor, 1);
    ck_assert_uint_le(b.bytes, b.max_bytes);
    /* A change bigger than the whole bound cannot be kept: everything up
     * to it is refused, never skipped. */
    char *huge = malloc(4000);
    memset(huge, 'y', 3999);
    huge[3999] = '\0';
    put(&b, 4, 1, "k", huge);
    free(huge);
    ck_assert_uint_eq(b.n, 0);
    ck_assert_uint_eq(b.floor, 4);
    q = query("k", 0, 1, 4);
    ck_assert_int_eq(wc_collect(&b, &q, &ch, &n, &rev, msg, sizeof(msg)), SHALE_ECOMPACTED);
    wc_free(&b);
    /* Evicting part of a revision raises the floor to it: no resume from
     * that revision can be answered with half of it. */
    watch_cache_t p;
    ck_assert_int_eq(wc_init(&p, 3, 1 << 20, 0), 0);
    put(&p, 1, 1, "a", "1");
    put(&p, 2, 1, "a", "2");
    put(&p, 2, 1, "b", "2");
    put(&p, 3, 1, "a", "3"); /* evicts revision 1 */
    put(&p, 4, 1, "a", "4"); /* evicts half of revision 2 */
    ck_assert_uint_eq(p.floor, 2);
    q = query("b", 0, 1, 2);
    ck_assert_int_eq(wc_collect(&p, &q, &ch, &n, &rev, msg, sizeof(msg)), SHALE_ECOMPACTED);
    wc_free(&p);
    /* No cache at all: only "from now" (after the last revision) works. */
    watch_cache_t z;
    ck_assert_int_eq(wc_init(&z, 0, 1 << 20, 5), 0);
    put(&z, 6, 1, "a", "1");
    q = query("a", 0, 1, 6);
    ck_assert_int_eq(wc_collect(&z, &q, &ch, &n, &rev, msg, sizeof(msg)), SHALE_ECOMPACTED);
    n = collect(&z, query("a", 0, 1, 7), &rev, &ch);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(rev, 6);
    free(ch);
    wc_free(&z);
    wc_free(&c);
}
END_TEST

/* max_events cuts after the revision that reaches it, never inside one:
 * the answer's revision is the one before the first change left out. */
START_TEST(test_whole_revisions)
{
    watch_cache_t c;
    ck_assert_int_eq(wc_init(&c, 100, 1 << 20, 0), 0);
    put(&c, 1, 1, "{t}a", "1");
    put(&c, 2, 1, "{t}a", "2");
    put(&c, 2, 1, "{t}b", "2");
    put(&c, 2, 1, "{t}c", "2");
    put(&c, 5, 1, "{t}a", "5");
    wc_query_t q = query("{t}", 1, 1, 1);
    q.max_events = 2;
    const wc_change_t **ch;
    uint64_t rev;
    size_t n = collect(&c, q, &rev, &ch);
    ck_assert_uint_eq(n, 4); /* revision 2 whole */
    ck_assert_uint_eq(rev, 4);
    free(ch);
    q.from = rev + 1;
    n = collect(&c, q, &rev, &ch);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(ch[0]->revision, 5);
    ck_assert_uint_eq(rev, 5);
    free(ch);
    wc_free(&c);
}
END_TEST

/* A slot that joined the group has no history here before it; a reset
 * (checkpoint swapped in) forgets everything. */
START_TEST(test_slot_start_and_reset)
{
    watch_cache_t c;
    ck_assert_int_eq(wc_init(&c, 100, 1 << 20, 0), 0);
    put(&c, 1, 3, "a", "1");
    ck_assert_int_eq(wc_slot_start(&c, 16, 3, 5), 0);
    put(&c, 6, 3, "a", "6");
    const wc_change_t **ch = NULL;
    size_t n;
    uint64_t rev;
    char msg[256];
    wc_query_t q = query("a", 0, 3, 2);
    ck_assert_int_eq(wc_collect(&c, &q, &ch, &n, &rev, msg, sizeof(msg)), SHALE_ECOMPACTED);
    ck_assert_ptr_nonnull(strstr(msg, "joined this group"));
    n = collect(&c, query("a", 0, 3, 6), &rev, &ch);
    ck_assert_uint_eq(n, 1);
    free(ch);
    n = collect(&c, query("b", 0, 4, 1), &rev, &ch); /* other slots unaffected */
    ck_assert_uint_eq(n, 0);
    free(ch);
    wc_reset(&c, 20);
    ck_assert_uint_eq(c.n, 0);
    q = query("a", 0, 3, 20);
    ck_assert_int_eq(wc_collect(&c, &q, &ch, &n, &rev, msg, sizeof(msg)), SHALE_ECOMPACTED);
    n = collect(&c, query("a", 0, 3, 21), &rev, &ch);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(rev, 20);
    free(ch);
    wc_free(&c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("watch_cache");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_order_and_key_match);
    tcase_add_test(tc, test_prefix_match);
    tcase_add_test(tc, test_bounds_and_compacted);
    tcase_add_test(tc, test_whole_revisions);
    tcase_add_test(tc, test_slot_start_and_reset);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
