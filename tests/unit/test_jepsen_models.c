/* The set, counter, stale-read and bank checkers (jepsen/set.c, counter.c,
 * stale.c, bank.c): valid histories pass, including unknown outcomes; a lost
 * write, a phantom element, a double apply, a lost increment and reads
 * staler than their bound are each caught. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "jepsen_fixture.h"

#define ADD(h, p, k, v, t0, t1, oc) jop(h, p, JEP_ADD, k, v, NULL, NULL, t0, t1, oc)
#define INCR(h, p, k, t0, t1, oc) jop(h, p, JEP_INCR, k, NULL, NULL, NULL, t0, t1, oc)

static void expect(jep_history *h, jep_model m, jep_verdict want, const char *text)
{
    jep_result r;
    jep_opts o = {.timeout_s = 30};
    jep_verdict v = jcheck_opts(h, m, &o, &r, NULL, NULL);
    ck_assert_msg(v == want, "%s: got %s want %s:\n%s", jep_model_name(m), jep_verdict_name(v),
                  jep_verdict_name(want), r.report.s ? r.report.s : "");
    if (text)
        ck_assert_msg(r.report.s && strstr(r.report.s, text), "want '%s' in:\n%s", text,
                      r.report.s ? r.report.s : "");
    if (want == JEP_INVALID)
        ck_assert_uint_gt(r.n_witness, 0);
    jep_result_free(&r);
    jep_history_free(h);
}

/* --- set --------------------------------------------------------------- */

START_TEST(set_valid)
{
    jep_history *h = jep_history_new();
    ADD(h, 1, "s", "1", 0, 10, JEP_OK);
    ADD(h, 2, "s", "2", 5, 15, JEP_OK);
    ADD(h, 3, "s", "3", 5, -1, JEP_INFO); /* unknown: present */
    ADD(h, 4, "s", "4", 6, -1, JEP_INFO); /* unknown: absent */
    ADD(h, 5, "s", "5", 7, 9, JEP_FAIL);  /* failed: absent */
    ADD(h, 6, "s", "6", 20, 100, JEP_OK); /* concurrent with the first read */
    R(h, 1, "s", "[2,1]", 30, 40);
    R(h, 1, "s", "[1,2,3,6]", 200, 210);
    ck_assert_int_eq(jcheck(h, JEP_MODEL_SET), JEP_VALID);
}
END_TEST

START_TEST(set_lost_write_caught)
{
    jep_history *h = jep_history_new();
    ADD(h, 1, "s", "1", 0, 10, JEP_OK);
    ADD(h, 2, "s", "2", 0, 10, JEP_OK);
    ADD(h, 3, "s", "3", 0, 10, JEP_OK);
    R(h, 1, "s", "[1,3]", 100, 110);
    expect(h, JEP_MODEL_SET, JEP_INVALID, "lost element 2: acknowledged before the read");
}
END_TEST

START_TEST(set_vanished_element_caught)
{
    /* an unknown add that one read saw and a later read no longer has */
    jep_history *h = jep_history_new();
    ADD(h, 1, "s", "1", 0, -1, JEP_INFO);
    R(h, 2, "s", "[1]", 10, 20);
    R(h, 2, "s", "[]", 30, 40);
    expect(h, JEP_MODEL_SET, JEP_INVALID, "lost element 1: returned by a read before the read");
}
END_TEST

START_TEST(set_phantom_caught)
{
    jep_history *h = jep_history_new();
    ADD(h, 1, "s", "1", 0, 10, JEP_OK);
    R(h, 1, "s", "[1,42]", 20, 30);
    expect(h, JEP_MODEL_SET, JEP_INVALID, "phantom element 42 (never attempted)");

    h = jep_history_new();
    ADD(h, 1, "s", "1", 0, 10, JEP_FAIL);
    R(h, 1, "s", "[1]", 20, 30);
    expect(h, JEP_MODEL_SET, JEP_INVALID, "every add of it failed");
}
END_TEST

START_TEST(set_without_read_unknown)
{
    jep_history *h = jep_history_new();
    ADD(h, 1, "s", "1", 0, 10, JEP_OK);
    expect(h, JEP_MODEL_SET, JEP_UNKNOWN, "no ok read");
}
END_TEST

/* --- counter ----------------------------------------------------------- */

START_TEST(counter_valid)
{
    jep_history *h = jep_history_new();
    for (int i = 0; i < 5; i++)
        INCR(h, 1, "c", i * 10, i * 10 + 5, JEP_OK);
    INCR(h, 2, "c", 0, -1, JEP_INFO);
    INCR(h, 3, "c", 0, -1, JEP_INFO);
    INCR(h, 4, "c", 0, 3, JEP_FAIL);
    R(h, 5, "c", "2", 12, 14);   /* mid-run: between 1 and 2+2+1 */
    R(h, 5, "c", "6", 100, 110); /* 5 acked + one of the two unknown */
    ck_assert_int_eq(jcheck(h, JEP_MODEL_COUNTER), JEP_VALID);

    /* deltas: 5 + 3 acknowledged, unknown {4, 10}: 8+4 = 12 is reachable */
    h = jep_history_new();
    jop(h, 1, JEP_INCR, "c", "5", NULL, NULL, 0, 5, JEP_OK);
    jop(h, 1, JEP_INCR, "c", "3", NULL, NULL, 10, 15, JEP_OK);
    jop(h, 2, JEP_INCR, "c", "4", NULL, NULL, 0, -1, JEP_INFO);
    jop(h, 3, JEP_INCR, "c", "10", NULL, NULL, 0, -1, JEP_INFO);
    R(h, 4, "c", "12", 100, 110);
    ck_assert_int_eq(jcheck(h, JEP_MODEL_COUNTER), JEP_VALID);
}
END_TEST

START_TEST(counter_double_apply_caught)
{
    /* five acknowledged increments, final value 6: one applied twice (a
     * retried CAS-increment that was not deduplicated) */
    jep_history *h = jep_history_new();
    for (int i = 0; i < 5; i++)
        INCR(h, 1, "c", i * 10, i * 10 + 5, JEP_OK);
    R(h, 2, "c", "6", 100, 110);
    expect(h, JEP_MODEL_COUNTER, JEP_INVALID, "double apply");

    /* with unknown ones: 5 acked + 1 unknown, 7 is still too many */
    h = jep_history_new();
    for (int i = 0; i < 5; i++)
        INCR(h, 1, "c", i * 10, i * 10 + 5, JEP_OK);
    INCR(h, 3, "c", 0, -1, JEP_INFO);
    R(h, 2, "c", "7", 100, 110);
    expect(h, JEP_MODEL_COUNTER, JEP_INVALID, "double apply");

    /* deltas 5 and 3 acked, unknown {4, 10}: 8+5 = 13 is not a subset sum */
    h = jep_history_new();
    jop(h, 1, JEP_INCR, "c", "5", NULL, NULL, 0, 5, JEP_OK);
    jop(h, 1, JEP_INCR, "c", "3", NULL, NULL, 10, 15, JEP_OK);
    jop(h, 2, JEP_INCR, "c", "4", NULL, NULL, 0, -1, JEP_INFO);
    jop(h, 3, JEP_INCR, "c", "10", NULL, NULL, 0, -1, JEP_INFO);
    R(h, 4, "c", "13", 100, 110);
    expect(h, JEP_MODEL_COUNTER, JEP_INVALID, "is not 8 acknowledged increments");
}
END_TEST

START_TEST(counter_lost_increment_caught)
{
    jep_history *h = jep_history_new();
    for (int i = 0; i < 3; i++)
        INCR(h, 1, "c", i * 10, i * 10 + 5, JEP_OK);
    R(h, 2, "c", "2", 100, 110);
    expect(h, JEP_MODEL_COUNTER, JEP_INVALID, "lost increment");

    /* a mid-run read already higher than every increment invoked so far */
    h = jep_history_new();
    INCR(h, 1, "c", 0, 5, JEP_OK);
    R(h, 2, "c", "2", 10, 20);
    INCR(h, 1, "c", 30, 35, JEP_OK);
    R(h, 2, "c", "2", 100, 110);
    expect(h, JEP_MODEL_COUNTER, JEP_INVALID, "read 2 outside [1, 1]");
}
END_TEST

/* --- stale reads ------------------------------------------------------- */

START_TEST(stale_valid)
{
    jep_history *h = jep_history_new();
    W(h, 1, "k", "1", 0, 10);
    W(h, 1, "k", "2", 1000, 1010);         /* 1 is certainly overwritten at 1010 us */
    jstale(h, 2, "k", 5, "1", 5000, 5100); /* window [0, 5100]: 1 ok */
    jstale(h, 2, "k", 1, "2", 5200, 5300);
    jstale(h, 3, "k", 0, "null", 5, 20); /* before 1 was certainly in */
    jop(h, 4, JEP_WRITE, "k", "3", NULL, NULL, 6000, -1, JEP_INFO);
    jstale(h, 3, "k", 0, "3", 9000, 9010); /* an unknown write that landed */
    jstale(h, 3, "k", 0, "2", 9020, 9030); /* ... or is seen not to, by another replica */
    R(h, 5, "k", "2", 1005, 1008);         /* plain reads: bound 0 */
    ck_assert_int_eq(jcheck(h, JEP_MODEL_STALE), JEP_VALID);
}
END_TEST

START_TEST(stale_read_beyond_bound_caught)
{
    jep_history *h = jep_history_new();
    W(h, 1, "k", "1", 0, 10);
    W(h, 1, "k", "2", 1000, 1010);
    jstale(h, 2, "k", 3, "1", 5000, 5100); /* window [2000, 5100]: 1 died at 1010 */
    expect(h, JEP_MODEL_STALE, JEP_INVALID,
           "stale read of 1: it was certainly overwritten by 1010 us");

    h = jep_history_new();
    W(h, 1, "k", "1", 0, 10);
    jstale(h, 2, "k", 1, "null", 5000, 5100); /* absent 4 ms after 1 was acknowledged */
    expect(h, JEP_MODEL_STALE, JEP_INVALID, "stale read of null");

    h = jep_history_new();
    W(h, 1, "k", "1", 0, 10);
    jstale(h, 2, "k", 1000, "7", 5000, 5100);
    expect(h, JEP_MODEL_STALE, JEP_INVALID, "a value never written");

    h = jep_history_new();
    jstale(h, 2, "k", 1000, "7", 0, 100);
    W(h, 1, "k", "7", 200, 210);
    expect(h, JEP_MODEL_STALE, JEP_INVALID, "before any write of it was invoked");
}
END_TEST

/* --- bank ------------------------------------------------------------- */

#define XFER(h, p, v, t0, t1, oc) jop(h, p, JEP_TRANSFER, "bank", v, NULL, NULL, t0, t1, oc)

START_TEST(bank_valid)
{
    jep_history *h = jep_history_new();
    R(h, 1, "bank", "[100,100,100]", 0, 10);
    XFER(h, 2, "[0,1,30]", 5, 20, JEP_OK);
    XFER(h, 3, "[1,2,5]", 6, 21, JEP_FAIL);
    XFER(h, 4, "[2,0,7]", 7, -1, JEP_INFO);
    R(h, 1, "bank", "[70,130,100]", 30, 40);
    R(h, 5, "bank", "[77,130,93]", 50, 60);
    expect(h, JEP_MODEL_BANK, JEP_VALID, "transfers: 1 ok, 1 failed, 1 unknown");
}
END_TEST

START_TEST(bank_bad_total_caught)
{
    jep_history *h = jep_history_new();
    R(h, 1, "bank", "[100,100,100]", 0, 10);
    XFER(h, 2, "[0,1,30]", 5, 20, JEP_OK);
    R(h, 1, "bank", "[70,100,100]", 30, 40); /* half a transfer */
    expect(h, JEP_MODEL_BANK, JEP_INVALID, "a total that is not the accounts' total (270, want 300)");
}
END_TEST

START_TEST(bank_negative_and_shape_caught)
{
    jep_history *h = jep_history_new();
    R(h, 1, "bank", "[100,100]", 0, 10);
    R(h, 1, "bank", "[-5,205]", 20, 30);
    expect(h, JEP_MODEL_BANK, JEP_INVALID, "a negative balance");
    h = jep_history_new();
    R(h, 1, "bank", "[100,100]", 0, 10);
    R(h, 1, "bank", "[100,100,0]", 20, 30);
    expect(h, JEP_MODEL_BANK, JEP_INVALID, "a different number of accounts");
    h = jep_history_new();
    XFER(h, 2, "[0,1,30]", 5, 20, JEP_OK);
    expect(h, JEP_MODEL_BANK, JEP_UNKNOWN, "no successful read");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jepsen_models");
    TCase *tc = tcase_create("models");
    tcase_add_test(tc, set_valid);
    tcase_add_test(tc, set_lost_write_caught);
    tcase_add_test(tc, set_vanished_element_caught);
    tcase_add_test(tc, set_phantom_caught);
    tcase_add_test(tc, set_without_read_unknown);
    tcase_add_test(tc, counter_valid);
    tcase_add_test(tc, counter_double_apply_caught);
    tcase_add_test(tc, counter_lost_increment_caught);
    tcase_add_test(tc, stale_valid);
    tcase_add_test(tc, stale_read_beyond_bound_caught);
    tcase_add_test(tc, bank_valid);
    tcase_add_test(tc, bank_bad_total_caught);
    tcase_add_test(tc, bank_negative_and_shape_caught);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
