/* The register linearizability checker (jepsen/linear.c) on hand-made
 * histories: linearizable ones pass (overlaps, unknown-outcome writes that
 * took effect late or never), and each planted anomaly is caught with a
 * small witness: a stale read, a read-your-write violation, a
 * non-linearizable CAS, an unknown write seen and then unseen, a failed
 * write observed. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "jepsen_fixture.h"
#include "shale_errors.h"

START_TEST(empty_and_sequential_valid)
{
    ck_assert_int_eq(jcheck(jep_history_new(), JEP_MODEL_REGISTER), JEP_VALID);
    jep_history *h = jep_history_new();
    R(h, 1, "k", "null", 0, 5);
    W(h, 1, "k", "1", 10, 20);
    R(h, 2, "k", "1", 30, 40);
    CAS(h, 2, "k", "1", "2", 50, 60);
    R(h, 1, "k", "2", 70, 80);
    W(h, 3, "j", "\"a\"", 0, 100); /* another key, independent */
    R(h, 3, "j", "\"a\"", 110, 120);
    ck_assert_int_eq(jcheck(h, JEP_MODEL_REGISTER), JEP_VALID);
}
END_TEST

/* A write overlapping two reads: the first may see the old value and the
 * second the new one. Two concurrent writes: either order. */
START_TEST(concurrent_overlaps_valid)
{
    jep_history *h = jep_history_new();
    W(h, 1, "k", "1", 0, 100);
    R(h, 2, "k", "null", 10, 20);
    R(h, 3, "k", "1", 30, 40);
    R(h, 2, "k", "1", 50, 60);
    ck_assert_int_eq(jcheck(h, JEP_MODEL_REGISTER), JEP_VALID);

    for (int last = 1; last <= 2; last++) {
        h = jep_history_new();
        W(h, 1, "k", "1", 0, 50);
        W(h, 2, "k", "2", 0, 50);
        R(h, 3, "k", last == 1 ? "1" : "2", 60, 70);
        ck_assert_int_eq(jcheck(h, JEP_MODEL_REGISTER), JEP_VALID);
    }

    /* Equal times overlap: a read returning at 10 and a write invoked at 10. */
    h = jep_history_new();
    R(h, 1, "k", "1", 0, 10);
    W(h, 2, "k", "1", 10, 20);
    ck_assert_int_eq(jcheck(h, JEP_MODEL_REGISTER), JEP_VALID);

    /* Concurrent CASes, one wins, the loser's failure is not evidence. */
    h = jep_history_new();
    W(h, 1, "k", "0", 0, 5);
    CAS(h, 2, "k", "0", "1", 10, 30);
    jop(h, 3, JEP_CAS, "k", "2", "0", NULL, 12, 28, JEP_FAIL);
    R(h, 1, "k", "1", 40, 50);
    ck_assert_int_eq(jcheck(h, JEP_MODEL_REGISTER), JEP_VALID);
}
END_TEST

START_TEST(unknown_writes_late_or_never)
{
    /* took effect late: long after its client gave up */
    jep_history *h = jep_history_new();
    jop(h, 1, JEP_WRITE, "k", "1", NULL, NULL, 0, -1, JEP_INFO);
    R(h, 2, "k", "null", 10, 20);
    R(h, 2, "k", "null", 500, 510);
    R(h, 3, "k", "1", 1000, 1010);
    R(h, 2, "k", "1", 2000, 2010);
    ck_assert_int_eq(jcheck(h, JEP_MODEL_REGISTER), JEP_VALID);

    /* never took effect (an explicit info completion) */
    h = jep_history_new();
    W(h, 2, "k", "0", 0, 5);
    jop(h, 1, JEP_WRITE, "k", "1", NULL, NULL, 10, 20, JEP_INFO);
    R(h, 2, "k", "0", 30, 40);
    W(h, 2, "k", "2", 50, 60);
    R(h, 3, "k", "2", 70, 80);
    ck_assert_int_eq(jcheck(h, JEP_MODEL_REGISTER), JEP_VALID);

    /* an unknown cas that took effect, and one that could not */
    h = jep_history_new();
    W(h, 1, "k", "0", 0, 5);
    jop(h, 2, JEP_CAS, "k", "1", "0", NULL, 10, -1, JEP_INFO);
    jop(h, 3, JEP_CAS, "k", "9", "7", NULL, 10, -1, JEP_INFO);
    R(h, 4, "k", "1", 100, 110);
    ck_assert_int_eq(jcheck(h, JEP_MODEL_REGISTER), JEP_VALID);

    /* an unknown read constrains nothing */
    h = jep_history_new();
    jop(h, 1, JEP_READ, "k", NULL, NULL, NULL, 0, -1, JEP_INFO);
    W(h, 2, "k", "1", 0, 5);
    ck_assert_int_eq(jcheck(h, JEP_MODEL_REGISTER), JEP_VALID);
}
END_TEST

/* Run the register checker; expect INVALID, the report to mention want
 * and the witness to have at most max_witness ops. */
static void expect_invalid(jep_history *h, const char *want, size_t max_witness)
{
    jep_result r;
    jep_opts o = {.timeout_s = 30};
    ck_assert_int_eq(jcheck_opts(h, JEP_MODEL_REGISTER, &o, &r, NULL, NULL), JEP_INVALID);
    ck_assert_msg(r.report.s && strstr(r.report.s, want), "want '%s' in:\n%s", want,
                  r.report.s ? r.report.s : "");
    ck_assert_msg(r.n_witness >= 1 && r.n_witness <= max_witness, "witness %zu ops:\n%s",
                  r.n_witness, r.report.s);
    jep_result_free(&r);
    jep_history_free(h);
}

START_TEST(stale_read_caught)
{
    jep_history *h = jep_history_new();
    W(h, 1, "k", "1", 0, 10);
    W(h, 2, "k", "2", 20, 30);
    R(h, 3, "k", "1", 40, 50); /* 2 was acknowledged before this read began */
    expect_invalid(h, "key k: not linearizable", 3);
}
END_TEST

START_TEST(read_your_write_violation_caught)
{
    jep_history *h = jep_history_new();
    W(h, 2, "k", "0", 0, 5);
    W(h, 1, "k", "1", 10, 20);
    R(h, 1, "k", "0", 30, 40); /* the same client no longer sees its own write */
    expect_invalid(h, "p1    read       k        0", 3);
}
END_TEST

START_TEST(non_linearizable_cas_caught)
{
    /* both CASes from 0 succeed, one strictly after the other */
    jep_history *h = jep_history_new();
    W(h, 1, "k", "0", 0, 10);
    CAS(h, 2, "k", "0", "1", 20, 30);
    CAS(h, 3, "k", "0", "2", 40, 50);
    expect_invalid(h, "cas        k        0->2", 3);

    /* overlapping: still only one can win */
    h = jep_history_new();
    W(h, 1, "k", "0", 0, 10);
    CAS(h, 2, "k", "0", "1", 20, 50);
    CAS(h, 3, "k", "0", "2", 25, 45);
    expect_invalid(h, "not linearizable", 3);
}
END_TEST

START_TEST(unknown_write_seen_then_unseen_caught)
{
    jep_history *h = jep_history_new();
    jop(h, 1, JEP_WRITE, "k", "1", NULL, NULL, 0, -1, JEP_INFO);
    R(h, 2, "k", "1", 10, 20);
    R(h, 2, "k", "null", 30, 40);
    expect_invalid(h, "not linearizable", 3);
}
END_TEST

START_TEST(failed_write_observed_caught)
{
    jep_history *h = jep_history_new();
    jop(h, 1, JEP_WRITE, "k", "1", NULL, NULL, 0, 10, JEP_FAIL);
    R(h, 2, "k", "1", 20, 30);
    expect_invalid(h, "a value that no write or cas of this key ever wrote", 1);
}
END_TEST

/* An anomaly buried in a longer history with many keys: the verdict names
 * the key and the witness is shrunk to a handful of ops. */
START_TEST(witness_is_small)
{
    jep_history *h = jep_history_new();
    int64_t t = 0;
    char v[16];
    for (int i = 0; i < 60; i++, t += 100) {
        snprintf(v, sizeof(v), "%d", i);
        W(h, 1, "good", v, t, t + 50);
        R(h, 2, "good", v, t + 60, t + 70);
        W(h, 3, "bad", v, t, t + 50);
        R(h, 4, "bad", v, t + 60, t + 70);
    }
    /* at the end, "bad" returns a value overwritten long ago */
    R(h, 4, "bad", "3", t + 10, t + 20);
    R(h, 4, "bad", "59", t + 30, t + 40);
    jep_result r;
    jep_opts o = {.timeout_s = 30};
    ck_assert_int_eq(jcheck_opts(h, JEP_MODEL_REGISTER, &o, &r, NULL, NULL), JEP_INVALID);
    ck_assert_ptr_nonnull(strstr(r.report.s, "key bad: not linearizable"));
    ck_assert_ptr_null(strstr(r.report.s, "key good"));
    ck_assert_msg(r.n_witness <= 4, "witness of %zu ops:\n%s", r.n_witness, r.report.s);
    jep_result_free(&r);
    jep_history_free(h);
}
END_TEST

/* Exponential case: 40 mutually concurrent writes, then two reads that no
 * order explains. The search cannot finish; it must return UNKNOWN within
 * its bounds instead of hanging. */
static jep_history *pathological(void)
{
    jep_history *h = jep_history_new();
    char v[16];
    for (int i = 1; i <= 40; i++) {
        snprintf(v, sizeof(v), "%d", i);
        W(h, i, "k", v, 0, 1000);
    }
    R(h, 100, "k", "1", 2000, 2010);
    R(h, 100, "k", "2", 3000, 3010);
    return h;
}

START_TEST(pathological_hits_time_bound)
{
    jep_history *h = pathological();
    jep_result r;
    jep_opts o = {.timeout_s = 0.5, .max_cache = 4u << 20};
    double t0 = jep_now_s();
    ck_assert_int_eq(jcheck_opts(h, JEP_MODEL_REGISTER, &o, &r, NULL, NULL), JEP_UNKNOWN);
    double dt = jep_now_s() - t0;
    ck_assert_msg(dt < 5, "took %.2f s", dt);
    ck_assert_ptr_nonnull(strstr(r.report.s, "bound reached"));
    fprintf(stderr, "pathological (time bound 0.5 s): UNKNOWN after %.3f s, %llu steps\n", dt,
            (unsigned long long)r.steps);
    jep_result_free(&r);
    jep_history_free(h);
}
END_TEST

START_TEST(pathological_hits_step_bound)
{
    jep_history *h = pathological();
    jep_result r;
    jep_opts o = {.max_steps = 100000};
    ck_assert_int_eq(jcheck_opts(h, JEP_MODEL_REGISTER, &o, &r, NULL, NULL), JEP_UNKNOWN);
    ck_assert_ptr_nonnull(strstr(r.report.s, "step bound reached"));
    ck_assert_uint_eq(r.steps, 100000);
    jep_result_free(&r);
    jep_history_free(h);
}
END_TEST

/* --- cross-check against brute force on small random histories ------- */

/* A register value for the brute force: NULL = null; ANY = not fixed yet. */
static const char ANY_V[] = "<any>";

static const char *vtext(const jep_value *v)
{
    return v->kind == JEP_V_SCALAR ? v->text : NULL;
}

static int veq(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

typedef struct {
    const jep_op *op[16];
    int used[16];
    size_t n;
} bf;

/* Is there an order of the ops not yet used, respecting real time,
 * legal from state? */
static int bf_search(bf *b, const char *state, size_t placed)
{
    if (placed == b->n)
        return 1;
    for (size_t i = 0; i < b->n; i++) {
        if (b->used[i])
            continue;
        const jep_op *x = b->op[i];
        int blocked = 0;
        for (size_t j = 0; j < b->n && !blocked; j++)
            blocked = j != i && !b->used[j] && b->op[j]->ret_us < x->call_us;
        if (blocked)
            continue;
        const char *next = state;
        if (x->f == JEP_READ) {
            if (state != ANY_V && !veq(state, vtext(x->value)))
                continue;
            next = vtext(x->value);
        } else if (x->f == JEP_WRITE) {
            next = vtext(x->value);
        } else if (state == ANY_V) {
            next = x->outcome == JEP_INFO ? ANY_V : vtext(x->value);
        } else if (veq(state, vtext(x->expect))) {
            next = vtext(x->value);
        } else if (x->outcome != JEP_INFO) {
            continue;
        }
        b->used[i] = 1;
        int ok = bf_search(b, next, placed + 1);
        b->used[i] = 0;
        if (ok)
            return 1;
    }
    return 0;
}

/* Linearizable by brute force? Unknown writes/CASes are tried in and out. */
static int brute_force(const jep_op *ops, const size_t *idx, size_t n, int any_init)
{
    const jep_op *req[16], *opt[16];
    size_t nr = 0, no = 0;
    for (size_t i = 0; i < n; i++) {
        const jep_op *o = &ops[idx ? idx[i] : i];
        if (o->outcome == JEP_FAIL || (o->f == JEP_READ && o->outcome != JEP_OK))
            continue;
        if (o->outcome == JEP_INFO)
            opt[no++] = o;
        else
            req[nr++] = o;
    }
    for (unsigned mask = 0; mask < (1u << no); mask++) {
        bf b = {.n = 0};
        for (size_t i = 0; i < nr; i++)
            b.op[b.n++] = req[i];
        for (size_t i = 0; i < no; i++)
            if (mask & (1u << i))
                b.op[b.n++] = opt[i];
        if (bf_search(&b, any_init ? ANY_V : NULL, 0))
            return 1;
    }
    return 0;
}

START_TEST(matches_brute_force)
{
    static const char *vals[] = {"null", "1", "2", "3"};
    uint64_t x = 0x2545F4914F6CDD1Dull;
#define RND(n) (x ^= x << 13, x ^= x >> 7, x ^= x << 17, (int)(x % (uint64_t)(n)))
    int n_valid = 0, n_invalid = 0;
    for (int round = 0; round < 4000; round++) {
        jep_history *h = jep_history_new();
        int nops = 2 + RND(6), nproc = 1 + RND(3);
        int64_t t[3] = {0, 0, 0};
        int pid[3] = {0, 1, 2};
        for (int i = 0; i < nops; i++) {
            int p = RND(nproc);
            int64_t t0 = t[p] + RND(4), t1 = t0 + RND(6);
            t[p] = t1;
            int kind = RND(3), oc = RND(10);
            jep_type outcome = oc == 0 ? JEP_FAIL : oc == 1 ? JEP_INFO : JEP_OK;
            const char *v = vals[1 + RND(3)], *e = vals[RND(4)], *rv = vals[RND(4)];
            if (kind == 0)
                jop(h, pid[p], JEP_READ, "k", NULL, NULL, rv, t0, t1, outcome);
            else
                jop(h, pid[p], kind == 1 ? JEP_WRITE : JEP_CAS, "k", v, kind == 2 ? e : NULL, NULL,
                    t0, outcome == JEP_INFO && RND(2) ? -1 : t1, outcome);
            if (outcome == JEP_INFO)
                pid[p] += 3; /* a timed-out client continues as a new process */
        }
        jep_result r;
        jep_opts o = {.timeout_s = 10};
        jep_op *ops;
        size_t n;
        jep_verdict v = jcheck_opts(h, JEP_MODEL_REGISTER, &o, &r, &ops, &n);
        int lin = brute_force(ops, NULL, n, 0);
        ck_assert_msg(v == (lin ? JEP_VALID : JEP_INVALID),
                      "round %d: checker %s, brute force %s\n%s", round, jep_verdict_name(v),
                      lin ? "linearizable" : "not linearizable", r.report.s);
        if (v == JEP_INVALID) {
            /* the witness must itself be non-linearizable (from any value
             * when the report says the window was cut) */
            int any = strstr(r.report.s, "whatever value") != NULL;
            ck_assert_msg(!brute_force(ops, r.witness, r.n_witness, any),
                          "round %d: witness is linearizable\n%s", round, r.report.s);
            n_invalid++;
        } else {
            n_valid++;
        }
        jep_result_free(&r);
        free(ops);
        jep_history_free(h);
    }
    fprintf(stderr, "brute-force cross-check: %d valid, %d invalid, all agree\n", n_valid,
            n_invalid);
    ck_assert_int_gt(n_valid, 100);
    ck_assert_int_gt(n_invalid, 100);
#undef RND
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jepsen_linear");
    TCase *tc = tcase_create("register");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, empty_and_sequential_valid);
    tcase_add_test(tc, concurrent_overlaps_valid);
    tcase_add_test(tc, unknown_writes_late_or_never);
    tcase_add_test(tc, stale_read_caught);
    tcase_add_test(tc, read_your_write_violation_caught);
    tcase_add_test(tc, non_linearizable_cas_caught);
    tcase_add_test(tc, unknown_write_seen_then_unseen_caught);
    tcase_add_test(tc, failed_write_observed_caught);
    tcase_add_test(tc, witness_is_small);
    tcase_add_test(tc, pathological_hits_time_bound);
    tcase_add_test(tc, pathological_hits_step_bound);
    tcase_add_test(tc, matches_brute_force);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
