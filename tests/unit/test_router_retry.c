/* shale-router's retry decisions and backoff (router/retry.c), its flags
 * (router/config.c) and its id map (router/idmap.c), driven directly. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "idmap.h"
#include "retry.h"
#include "shale_errors.h"

START_TEST(test_backoff_doubles_to_cap)
{
    uint32_t want[] = {5, 10, 20, 40, 80, 100, 100, 100};
    for (unsigned i = 0; i < 8; i++)
        ck_assert_uint_eq(rt_backoff_ms(i), want[i]);
    ck_assert_uint_eq(rt_backoff_ms(1000), 100);
}
END_TEST

START_TEST(test_not_leader)
{
    unsigned b = 0, red = 0;
    rt_retry_t d;
    /* A hint to another node: go there at once, twice; then with backoff. */
    rt_retry_decide(SHALE_ENOTLEADER, 0, "n2:1", "n1:1", &b, &red, &d);
    ck_assert_int_eq(d.action, RT_REDIRECT);
    ck_assert_uint_eq(d.delay_ms, 0);
    rt_retry_decide(SHALE_ENOTLEADER, 0, "n3:1", "n2:1", &b, &red, &d);
    ck_assert_int_eq(d.action, RT_REDIRECT);
    ck_assert_uint_eq(d.delay_ms, 0);
    rt_retry_decide(SHALE_ENOTLEADER, 0, "n1:1", "n3:1", &b, &red, &d);
    ck_assert_int_eq(d.action, RT_REDIRECT);
    ck_assert_uint_eq(d.delay_ms, 5);
    rt_retry_decide(SHALE_ENOTLEADER, 0, "n2:1", "n1:1", &b, &red, &d);
    ck_assert_uint_eq(d.delay_ms, 10);
    /* No hint (election running), or a hint naming the node itself: forget
     * it as leader and try another member after a backoff. */
    b = red = 0;
    rt_retry_decide(SHALE_ENOTLEADER, 0, "", "n1:1", &b, &red, &d);
    ck_assert_int_eq(d.action, RT_NEXT);
    ck_assert(d.forget_node);
    ck_assert_uint_eq(d.delay_ms, 5);
    rt_retry_decide(SHALE_ENOTLEADER, 0, "n1:1", "n1:1", &b, &red, &d);
    ck_assert_int_eq(d.action, RT_NEXT);
    ck_assert_uint_eq(d.delay_ms, 10);
}
END_TEST

START_TEST(test_transient_errors_move_on)
{
    int codes[] = {SHALE_EUNAVAILABLE, SHALE_ETIMEOUT, SHALE_EIO, SHALE_ECLOSED};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        unsigned b = 0, red = 0;
        rt_retry_t d;
        rt_retry_decide(codes[i], 0, NULL, "n1:1", &b, &red, &d);
        ck_assert_int_eq(d.action, RT_NEXT);
        ck_assert(d.forget_node);
        ck_assert(!d.refresh_map);
        ck_assert_uint_eq(d.delay_ms, 5);
        ck_assert_uint_eq(b, 1);
    }
}
END_TEST

START_TEST(test_map_errors_refresh)
{
    unsigned b = 0, red = 0;
    rt_retry_t d;
    rt_retry_decide(SHALE_EWRONGGROUP, 0, NULL, "n1:1", &b, &red, &d);
    ck_assert_int_eq(d.action, RT_REMAP);
    ck_assert(d.refresh_map);
    ck_assert(!d.forget_node);
    rt_retry_decide(SHALE_ESLOTMOVING, 0, NULL, "n1:1", &b, &red, &d);
    ck_assert_int_eq(d.action, RT_SAME);
    ck_assert(d.refresh_map);
    ck_assert_uint_eq(d.delay_ms, 10);
}
END_TEST

START_TEST(test_stale_and_final)
{
    unsigned b = 0, red = 0;
    rt_retry_t d;
    /* STALE_TOO_OLD: another member at once for a STALE read ... */
    rt_retry_decide(SHALE_ESTALE, 1, NULL, "n1:1", &b, &red, &d);
    ck_assert_int_eq(d.action, RT_NEXT);
    ck_assert_uint_eq(d.delay_ms, 0);
    ck_assert(!d.forget_node);
    /* ... final otherwise; and so is every answer the client must see. */
    int finals[] = {SHALE_ESTALE,    SHALE_OK,        SHALE_ECASFAILED, SHALE_EINVAL,
                    SHALE_ETOOLARGE, SHALE_EOVERLOAD, SHALE_ESESSION,   SHALE_ESTORAGE,
                    SHALE_EPROTO,    SHALE_ENOTFOUND, SHALE_ECLUSTER};
    for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++) {
        rt_retry_decide(finals[i], 0, NULL, "n1:1", &b, &red, &d);
        ck_assert_int_eq(d.action, RT_FINAL);
    }
}
END_TEST

START_TEST(test_flags)
{
    rt_config_t c;
    char err[256];
    rt_config_defaults(&c);
    char *ok[] = {"shale-router",
                  "--listen",
                  "127.0.0.150:7000",
                  "--meta=127.0.0.1:1,[::1]:2",
                  "--timeout-ms",
                  "250",
                  "--max-pending=7",
                  "--node-conns",
                  "2",
                  NULL};
    ck_assert_int_eq(rt_config_parse(&c, 9, ok, err, sizeof(err)), 0);
    ck_assert_int_eq(rt_config_validate(&c, err, sizeof(err)), 0);
    ck_assert_str_eq(c.listen, "127.0.0.150:7000");
    ck_assert_uint_eq(c.timeout_ms, 250);
    ck_assert_uint_eq(c.max_pending, 7);
    ck_assert_uint_eq(c.node_conns, 2);
    ck_assert_uint_eq(c.max_frame, 8388608);
    ck_assert_str_eq(c.cluster_id, "shale");

    struct {
        char *argv[4];
        int argc;
        const char *says;
    } bad[] = {
        {{"r", "--timeout-ms", NULL}, 2, "needs a value"},
        {{"r", "--timeout-ms", "abc"}, 3, "integer"},
        {{"r", "--timeout-ms", "-5"}, 3, "integer"},
        {{"r", "--node-conns", "99"}, 3, "1..16"},
        {{"r", "--nope", "1"}, 3, "unknown option"},
        {{"r", "stray"}, 2, "unexpected argument"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rt_config_defaults(&c);
        ck_assert_int_eq(rt_config_parse(&c, bad[i].argc, bad[i].argv, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, bad[i].says) != NULL, "'%s' lacks '%s'", err, bad[i].says);
    }
    rt_config_defaults(&c);
    ck_assert_int_eq(rt_config_validate(&c, err, sizeof(err)), -1); /* no --meta */
    snprintf(c.meta, sizeof(c.meta), "127.0.0.1:1,,127.0.0.2:2");
    ck_assert_int_eq(rt_config_validate(&c, err, sizeof(err)), -1);
    snprintf(c.meta, sizeof(c.meta), "127.0.0.1:99999");
    ck_assert_int_eq(rt_config_validate(&c, err, sizeof(err)), -1);
    snprintf(c.meta, sizeof(c.meta), "127.0.0.1:1");
    snprintf(c.listen, sizeof(c.listen), "nohostport");
    ck_assert_int_eq(rt_config_validate(&c, err, sizeof(err)), -1);
    snprintf(c.listen, sizeof(c.listen), "127.0.0.1:7000");
    snprintf(c.log_level, sizeof(c.log_level), "loud");
    ck_assert_int_eq(rt_config_validate(&c, err, sizeof(err)), -1);
}
END_TEST

START_TEST(test_idmap)
{
    rt_idmap_t m;
    rt_idmap_init(&m);
    enum { N = 20000 };
    static int vals[N];
    for (uint64_t i = 1; i <= N; i++)
        ck_assert_int_eq(rt_idmap_put(&m, i * 3, &vals[i - 1]), 0);
    ck_assert_int_eq(rt_idmap_put(&m, 0, vals), -1);
    for (uint64_t i = 1; i <= N; i += 2)
        ck_assert_ptr_eq(rt_idmap_del(&m, i * 3), &vals[i - 1]);
    ck_assert_uint_eq(m.n, N / 2);
    for (uint64_t i = 1; i <= N; i++) {
        void *v = rt_idmap_get(&m, i * 3);
        if (i % 2)
            ck_assert_ptr_null(v);
        else
            ck_assert_ptr_eq(v, &vals[i - 1]);
    }
    ck_assert_ptr_null(rt_idmap_del(&m, 1));
    rt_idmap_free(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("router_retry");
    TCase *tc = tcase_create("retry");
    tcase_add_test(tc, test_backoff_doubles_to_cap);
    tcase_add_test(tc, test_not_leader);
    tcase_add_test(tc, test_transient_errors_move_on);
    tcase_add_test(tc, test_map_errors_refresh);
    tcase_add_test(tc, test_stale_and_final);
    tcase_add_test(tc, test_flags);
    tcase_add_test(tc, test_idmap);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
