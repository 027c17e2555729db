/* The Redis port's glob, literal prefix and SCAN cursor table
 * (router/resp_keyscan.c; docs/resp.md, "SCAN and KEYS"): the glob gives
 * redis-server's answers (stringmatchlen, case-sensitive) on its own test
 * patterns and on classes, ranges, escapes and malformed patterns; a
 * pathological pattern stays fast; cursors round-trip, expire, are
 * evicted oldest first and are never 0. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "resp_keyscan.h"

static int m(const char *p, const char *s)
{
    return rk_glob_match(p, strlen(p), s, strlen(s));
}

START_TEST(test_glob_redis)
{
    /* Redis's own KEYS examples (keys.md) and util.c cases. */
    ck_assert(m("h?llo", "hello"));
    ck_assert(m("h?llo", "hallo"));
    ck_assert(!m("h?llo", "hllo"));
    ck_assert(m("h*llo", "hllo"));
    ck_assert(m("h*llo", "heeeello"));
    ck_assert(m("h[ae]llo", "hello"));
    ck_assert(m("h[ae]llo", "hallo"));
    ck_assert(!m("h[ae]llo", "hillo"));
    ck_assert(m("h[^e]llo", "hallo"));
    ck_assert(!m("h[^e]llo", "hello"));
    ck_assert(m("h[a-b]llo", "hbllo"));
    ck_assert(!m("h[a-b]llo", "hcllo"));
    ck_assert(m("h[b-a]llo", "hallo")); /* reversed range */
    ck_assert(m("*", ""));
    ck_assert(m("*", "anything"));
    ck_assert(m("", ""));
    ck_assert(!m("", "a"));
    ck_assert(!m("?", ""));
    ck_assert(m("a*", "a"));
    ck_assert(m("**a**", "bab"));
    ck_assert(!m("a*b", "acbc"));
    ck_assert(m("a*b*", "acbc"));
    ck_assert(m("*.txt", "dir/file.txt"));
    ck_assert(!m("*.txt", "file.txt.gz"));
    /* Escapes. */
    ck_assert(m("a\\*b", "a*b"));
    ck_assert(!m("a\\*b", "axb"));
    ck_assert(m("a\\?", "a?"));
    ck_assert(m("\\[x]", "[x]"));
    ck_assert(m("[\\]]", "]"));
    ck_assert(m("[\\-]", "-"));
    ck_assert(m("a\\", "a\\")); /* a trailing backslash is itself */
    /* Classes: "[]" is empty, an unterminated class runs to the end. */
    ck_assert(!m("a[]b", "ab"));
    ck_assert(m("a[bc", "ab"));
    ck_assert(m("a[bc", "ac"));
    ck_assert(!m("a[bc", "ad"));
    ck_assert(m("[^]", "x"));
    ck_assert(m("user:{1}:*", "user:{1}:name"));
    /* Binary keys. */
    ck_assert(rk_glob_match("a?c", 3, "a\0c", 3));
    ck_assert(rk_glob_match("a\0*", 3, "a\0zz", 4));
    ck_assert(!rk_glob_match("a\0*", 3, "a\1zz", 4));
    ck_assert(m("[\x80-\xff]", "\xc3"));
}
END_TEST

START_TEST(test_glob_pathological)
{
    /* Exponential for naive recursion; linear-ish here. */
    char s[4001];
    memset(s, 'a', 4000);
    s[4000] = '\0';
    ck_assert(!m("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", s));
    ck_assert(m("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*", s));
}
END_TEST

START_TEST(test_prefix)
{
    ck_assert_uint_eq(rk_glob_prefix("user:*", 6), 5);
    ck_assert_uint_eq(rk_glob_prefix("abc", 3), 3);
    ck_assert_uint_eq(rk_glob_prefix("*", 1), 0);
    ck_assert_uint_eq(rk_glob_prefix("a?b", 3), 1);
    ck_assert_uint_eq(rk_glob_prefix("ab[c]", 5), 2);
    ck_assert_uint_eq(rk_glob_prefix("ab\\*", 4), 2);
    ck_assert(rk_prefix_tagged("{t}", 3));
    ck_assert(rk_prefix_tagged("x{t}y", 5));
    ck_assert(!rk_prefix_tagged("{}", 2)); /* empty: the whole key hashes */
    ck_assert(!rk_prefix_tagged("{t", 2)); /* the tag may go on */
    ck_assert(!rk_prefix_tagged("user:", 5));
    ck_assert(!rk_prefix_tagged("{}{t}", 5)); /* first '{' has an empty tag */
}
END_TEST

START_TEST(test_cursors)
{
    rk_cursors_t t;
    ck_assert_int_eq(rk_cursors_init(&t, 4, 1000, 0xFFFFFFFFFFFFFFFFULL), 0);
    uint64_t a = rk_cursor_put(&t, 3, "key", 3, 100);
    ck_assert(a != 0 && a < (1ULL << 53));
    uint64_t b = rk_cursor_put(&t, 5, NULL, 0, 100);
    ck_assert(b != a && b != 0);
    uint32_t slot;
    const char *after;
    size_t alen;
    ck_assert_int_eq(rk_cursor_get(&t, a, 200, &slot, &after, &alen), 0);
    ck_assert_uint_eq(slot, 3);
    ck_assert_uint_eq(alen, 3);
    ck_assert(memcmp(after, "key", 3) == 0);
    /* Reusable (a client's retry). */
    ck_assert_int_eq(rk_cursor_get(&t, a, 300, &slot, &after, &alen), 0);
    ck_assert_int_eq(rk_cursor_get(&t, b, 300, &slot, &after, &alen), 0);
    ck_assert_uint_eq(slot, 5);
    ck_assert_uint_eq(alen, 0);
    /* Unknown, zero, expired. */
    ck_assert_int_eq(rk_cursor_get(&t, 0, 300, &slot, &after, &alen), -1);
    ck_assert_int_eq(rk_cursor_get(&t, b + 1, 300, &slot, &after, &alen), -1);
    ck_assert_int_eq(rk_cursor_get(&t, 12345, 300, &slot, &after, &alen), -1);
    ck_assert_int_eq(rk_cursor_get(&t, a, 1100, &slot, &after, &alen), -1);
    /* The oldest is evicted once cap more are made. */
    for (int i = 0; i < 3; i++)
        ck_assert(rk_cursor_put(&t, 1, "k", 1, 100) != 0);
    ck_assert_int_eq(rk_cursor_get(&t, a, 200, &slot, &after, &alen), -1);
    ck_assert_int_eq(rk_cursor_get(&t, b, 200, &slot, &after, &alen), 0);
    rk_cursors_free(&t);
    /* Another base: the first table's cursors are unknown. */
    rk_cursors_t u;
    ck_assert_int_eq(rk_cursors_init(&u, 4, 1000, 777), 0);
    ck_assert_int_eq(rk_cursor_get(&u, a, 200, &slot, &after, &alen), -1);
    rk_cursors_free(&u);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("resp_keyscan");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_glob_redis);
    tcase_add_test(tc, test_glob_pathological);
    tcase_add_test(tc, test_prefix);
    tcase_add_test(tc, test_cursors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
