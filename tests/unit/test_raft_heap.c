/* server/raft_heap.c: libraft's reallocs grow geometrically.
 *
 * What it proves: a block grown one byte at a time keeps its contents, and
 * every time it has to get bigger it gets at least twice the room it had
 * (so n one-element appends cost O(log n) copies, not O(n) — the quadratic
 * segment load of libraft 0.15 under ASan; raft_heap.h); a request within
 * the room returns the same block; shrinking and NULL work like realloc;
 * once installed, libraft's raft_realloc goes through it. */
#include <check.h>
#include <malloc.h>
#include <raft.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "raft_heap.h"

START_TEST(test_grows_geometrically_and_keeps_contents)
{
    unsigned char *p = raft_heap_grow(NULL, 1);
    ck_assert_ptr_nonnull(p);
    p[0] = 0;
    size_t room = malloc_usable_size(p);
    int grew = 0;
    for (size_t n = 2; n <= 200000; n++) {
        unsigned char *q = raft_heap_grow(p, n);
        ck_assert_ptr_nonnull(q);
        size_t now = malloc_usable_size(q);
        if (n <= room) {
            ck_assert_ptr_eq(q, p); /* within the room: nothing happens */
        } else {
            ck_assert_msg(now >= 2 * room, "grew from %zu to %zu for %zu bytes", room, now, n);
            grew++;
        }
        q[n - 1] = (unsigned char)(n - 1);
        p = q;
        room = now;
    }
    for (size_t i = 0; i < 200000; i++)
        ck_assert_uint_eq(p[i], (unsigned char)i);
    ck_assert_int_le(grew, 20); /* log2(200000) */
    /* Shrinking keeps the prefix. */
    p = raft_heap_grow(p, 100);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < 100; i++)
        ck_assert_uint_eq(p[i], (unsigned char)i);
    free(p); /* an ordinary malloc block: free() is fine */
}
END_TEST

START_TEST(test_installed_for_libraft)
{
    raft_heap_install();
    char *p = raft_malloc(8);
    ck_assert_ptr_nonnull(p);
    memcpy(p, "shale-1", 8);
    size_t room = malloc_usable_size(p);
    char *q = raft_realloc(p, room + 1);
    ck_assert_ptr_nonnull(q);
    ck_assert_str_eq(q, "shale-1");
    ck_assert_uint_ge(malloc_usable_size(q), 2 * room);
    raft_free(q);
    void *a = raft_aligned_alloc(4096, 8192);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq((uintptr_t)a % 4096, 0);
    raft_aligned_free(4096, a);
    raft_heap_set_default();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("raft_heap");
    TCase *tc = tcase_create("heap");
    tcase_add_test(tc, test_grows_geometrically_and_keeps_contents);
    tcase_add_test(tc, test_installed_for_libraft);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
