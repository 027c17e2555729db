/* shale-router's MGET/MPUT split by group and merge in request order
 * (router/split.c), driven directly. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "shale_errors.h"
#include "split.h"

START_TEST(test_split_keeps_order)
{
    uint64_t gids[] = {2, 1, 2, 3, 1, 2};
    rt_split_t sp;
    ck_assert_int_eq(rt_split_by_group(gids, 6, &sp), 0);
    ck_assert_uint_eq(sp.nparts, 3);
    /* parts in order of first appearance, keys in request order */
    ck_assert_uint_eq(sp.parts[0].group, 2);
    ck_assert_uint_eq(sp.parts[0].n, 3);
    ck_assert_uint_eq(sp.parts[0].idx[0], 0);
    ck_assert_uint_eq(sp.parts[0].idx[1], 2);
    ck_assert_uint_eq(sp.parts[0].idx[2], 5);
    ck_assert_uint_eq(sp.parts[1].group, 1);
    ck_assert_uint_eq(sp.parts[1].n, 2);
    ck_assert_uint_eq(sp.parts[1].idx[0], 1);
    ck_assert_uint_eq(sp.parts[1].idx[1], 4);
    ck_assert_uint_eq(sp.parts[2].group, 3);
    ck_assert_uint_eq(sp.parts[2].n, 1);
    ck_assert_uint_eq(sp.parts[2].idx[0], 3);
    rt_split_free(&sp);
    /* one group: one part with every key */
    uint64_t same[] = {7, 7, 7, 7};
    ck_assert_int_eq(rt_split_by_group(same, 4, &sp), 0);
    ck_assert_uint_eq(sp.nparts, 1);
    ck_assert_uint_eq(sp.parts[0].n, 4);
    rt_split_free(&sp);
    /* 4096 keys over 5 groups: every key in exactly one part */
    uint64_t *many = malloc(4096 * sizeof(*many));
    for (int i = 0; i < 4096; i++)
        many[i] = (uint64_t)(i * 7919 % 5) + 1;
    ck_assert_int_eq(rt_split_by_group(many, 4096, &sp), 0);
    ck_assert_uint_eq(sp.nparts, 5);
    int seen[4096] = {0};
    for (size_t p = 0; p < sp.nparts; p++)
        for (size_t j = 0; j < sp.parts[p].n; j++) {
            size_t i = sp.parts[p].idx[j];
            ck_assert_uint_eq(many[i], sp.parts[p].group);
            ck_assert_int_eq(seen[i]++, 0);
            if (j > 0)
                ck_assert_uint_gt(i, sp.parts[p].idx[j - 1]);
        }
    rt_split_free(&sp);
    free(many);
}
END_TEST

START_TEST(test_verdict)
{
    int all_same[] = {SHALE_EUNAVAILABLE, SHALE_EUNAVAILABLE, SHALE_EUNAVAILABLE};
    int mixed[] = {SHALE_EUNAVAILABLE, SHALE_ETIMEOUT};
    int some_ok[] = {SHALE_EUNAVAILABLE, SHALE_OK};
    int all_ok[] = {SHALE_OK, SHALE_OK};
    int one[] = {SHALE_ECASFAILED};
    ck_assert_int_eq(rt_merge_verdict(all_same, 3), SHALE_EUNAVAILABLE);
    ck_assert_int_eq(rt_merge_verdict(mixed, 2), SHALE_OK);
    ck_assert_int_eq(rt_merge_verdict(some_ok, 2), SHALE_OK);
    ck_assert_int_eq(rt_merge_verdict(all_ok, 2), SHALE_OK);
    ck_assert_int_eq(rt_merge_verdict(one, 1), SHALE_ECASFAILED);
}
END_TEST

static ProtobufCBinaryData bin(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

/* Two parts answer, one fails: the packed MGET answer has every key in
 * request order, the failed part's keys carrying the error. */
START_TEST(test_merge_in_request_order)
{
    const char *names[] = {"a", "b", "c", "d", "e"};
    ProtobufCBinaryData keys[5];
    for (int i = 0; i < 5; i++)
        keys[i] = bin(names[i]);
    uint64_t gids[] = {1, 2, 1, 3, 2};
    rt_split_t sp;
    ck_assert_int_eq(rt_split_by_group(gids, 5, &sp), 0);
    /* group 1 answers a, c; group 2 answers b, e; group 3 fails. */
    Shale__KeyValue kv[5];
    Shale__KeyValue *ans1[2], *ans2[2];
    for (int i = 0; i < 5; i++) {
        shale__key_value__init(&kv[i]);
        kv[i].key = keys[i];
        kv[i].has_found = 1;
        kv[i].found = 1;
        kv[i].has_value = 1;
        kv[i].value = bin(names[i]);
        kv[i].has_version = 1;
        kv[i].version = (uint64_t)i + 10;
    }
    ans1[0] = &kv[0];
    ans1[1] = &kv[2];
    ans2[0] = &kv[1];
    ans2[1] = &kv[4];
    Shale__KeyValue *merged[5] = {NULL};
    ck_assert_int_eq(rt_merge_place(merged, sp.parts[0].idx, sp.parts[0].n, ans1, 2), 0);
    ck_assert_int_eq(rt_merge_place(merged, sp.parts[1].idx, sp.parts[1].n, ans2, 1), -1);
    ck_assert_int_eq(rt_merge_place(merged, sp.parts[1].idx, sp.parts[1].n, ans2, 2), 0);
    Shale__Error err = SHALE__ERROR__INIT;
    err.code = SHALE__ERROR_CODE__UNAVAILABLE;
    err.message = (char *)"group 3 is down";
    Shale__KeyValue failed[1];
    rt_merge_fail(merged, sp.parts[2].idx, sp.parts[2].n, failed, keys, &err);
    Shale__MGetResponse resp = SHALE__MGET_RESPONSE__INIT;
    resp.n_items = 5;
    resp.items = merged;
    size_t len = shale__mget_response__get_packed_size(&resp);
    uint8_t *buf = malloc(len);
    shale__mget_response__pack(&resp, buf);
    Shale__MGetResponse *back = shale__mget_response__unpack(NULL, len, buf);
    ck_assert_ptr_nonnull(back);
    ck_assert_uint_eq(back->n_items, 5);
    for (int i = 0; i < 5; i++) {
        Shale__KeyValue *it = back->items[i];
        ck_assert_int_eq((int)it->key.len, 1);
        ck_assert_int_eq(it->key.data[0], names[i][0]);
        if (i == 3) {
            ck_assert_ptr_nonnull(it->error);
            ck_assert_int_eq(it->error->code, SHALE__ERROR_CODE__UNAVAILABLE);
            ck_assert_str_eq(it->error->message, "group 3 is down");
            ck_assert(!it->has_found || !it->found);
        } else {
            ck_assert_ptr_null(it->error);
            ck_assert(it->found);
            ck_assert_uint_eq(it->version, (uint64_t)i + 10);
        }
    }
    shale__mget_response__free_unpacked(back, NULL);
    free(buf);
    rt_split_free(&sp);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("router_split");
    TCase *tc = tcase_create("split");
    tcase_add_test(tc, test_split_keeps_order);
    tcase_add_test(tc, test_verdict);
    tcase_add_test(tc, test_merge_in_request_order);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
