/* Checker performance: random linearizable histories generated from a
 * simulated atomic register (each op takes effect at a random instant of
 * its interval; a few time out and take effect late or never) must check
 * VALID quickly; corrupting one read of such a history must be caught. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "jepsen_fixture.h"

typedef struct {
    int proc, key;
    jep_fn f;
    int64_t call, ret, lin; /* lin < 0: an unknown op that never took effect */
    int value, expect, read;
    jep_type outcome;
} sim_op;

static uint64_t rng;
static uint64_t rnd(uint64_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng % n;
}

static int cmp_lin(const void *a, const void *b)
{
    const sim_op *x = *(sim_op *const *)a, *y = *(sim_op *const *)b;
    return (x->lin > y->lin) - (x->lin < y->lin);
}

/* nops ops by nproc processes over nkeys keys; values from a domain of
 * `domain` so CASes succeed sometimes and values repeat. Returns the
 * history (caller frees); *sim gets the ops (caller frees). */
static jep_history *simulate(uint64_t seed, int nproc, int nkeys, int nops, int domain,
                             sim_op **sim_out)
{
    rng = seed * 2654435761u + 1;
    sim_op *ops = calloc((size_t)nops, sizeof(*ops));
    int per = nops / nproc;
    for (int p = 0, k = 0; p < nproc; p++) {
        int64_t t = (int64_t)rnd(100);
        int id = p;
        for (int j = 0; j < per; j++, k++) {
            sim_op *o = &ops[k];
            o->proc = id;
            o->key = (int)rnd((uint64_t)nkeys);
            uint64_t r = rnd(10);
            o->f = r < 5 ? JEP_READ : r < 8 ? JEP_WRITE : JEP_CAS;
            o->value = (int)rnd((uint64_t)domain);
            o->expect = (int)rnd((uint64_t)domain);
            o->call = t + (int64_t)rnd(20);
            int64_t dur = 1 + (int64_t)rnd(300);
            o->ret = o->call + dur;
            o->lin = o->call + (int64_t)rnd((uint64_t)dur + 1);
            o->outcome = JEP_OK;
            if (o->f != JEP_READ && rnd(100) < 2) {
                /* timed out: took effect late (even after the timeout) or never */
                o->outcome = JEP_INFO;
                o->lin = rnd(2) ? o->call + (int64_t)rnd(3 * (uint64_t)dur) : -1;
                id += nproc; /* a timed-out client continues as a new process */
            }
            t = o->ret;
        }
    }
    nops = per * nproc;
    /* apply in linearization order */
    sim_op **by = malloc((size_t)nops * sizeof(*by));
    for (int i = 0; i < nops; i++)
        by[i] = &ops[i];
    qsort(by, (size_t)nops, sizeof(*by), cmp_lin);
    int *reg = malloc((size_t)nkeys * sizeof(*reg));
    for (int i = 0; i < nkeys; i++)
        reg[i] = -1; /* null */
    for (int i = 0; i < nops; i++) {
        sim_op *o = by[i];
        if (o->lin < 0)
            continue;
        if (o->f == JEP_READ)
            o->read = reg[o->key];
        else if (o->f == JEP_WRITE)
            reg[o->key] = o->value;
        else if (reg[o->key] == o->expect)
            reg[o->key] = o->value;
        else if (o->outcome == JEP_OK)
            o->outcome = JEP_FAIL; /* cas mismatch: did not happen */
    }
    free(reg);
    free(by);
    jep_history *h = jep_history_new();
    for (int i = 0; i < nops; i++) {
        sim_op *o = &ops[i];
        char key[16], v[16], e[16], rd[16];
        snprintf(key, sizeof(key), "k%d", o->key);
        snprintf(v, sizeof(v), "%d", o->value);
        snprintf(e, sizeof(e), "%d", o->expect);
        if (o->read < 0)
            snprintf(rd, sizeof(rd), "null");
        else
            snprintf(rd, sizeof(rd), "%d", o->read);
        jop(h, o->proc, o->f, key, o->f == JEP_READ ? NULL : v, o->f == JEP_CAS ? e : NULL, rd,
            o->call, o->outcome == JEP_INFO ? -1 : o->ret, o->outcome);
    }
    *sim_out = ops;
    return h;
}

static double run(jep_history *h, jep_verdict want, const char *label)
{
    jep_result r;
    jep_opts o = {.timeout_s = 60};
    jep_op *ops;
    size_t n;
    double t0 = jep_now_s();
    jep_verdict v = jcheck_opts(h, JEP_MODEL_REGISTER, &o, &r, &ops, &n);
    double dt = jep_now_s() - t0;
    ck_assert_msg(v == want, "%s: %s\n%s", label, jep_verdict_name(v), r.report.s);
    fprintf(stderr, "%s: %zu ops, %zu keys: %s in %.3f s (%llu steps)\n", label, n, r.keys,
            jep_verdict_name(v), dt, (unsigned long long)r.steps);
    jep_result_free(&r);
    free(ops);
    return dt;
}

/* The brief's case: ~10,000 ops, 20 keys, 10 processes. */
START_TEST(random_10k_ops_20_keys)
{
    for (uint64_t seed = 1; seed <= 3; seed++) {
        sim_op *sim;
        jep_history *h = simulate(seed, 10, 20, 10000, 5, &sim);
        double dt = run(h, JEP_VALID, "random 10 procs x 20 keys");
        ck_assert_msg(dt < 3.0, "took %.2f s", dt);
        jep_history_free(h);
        free(sim);
    }
}
END_TEST

/* Harder: the same load on 2 keys (5 concurrent ops per key). */
START_TEST(random_10k_ops_2_keys)
{
    sim_op *sim;
    jep_history *h = simulate(7, 10, 2, 10000, 5, &sim);
    double dt = run(h, JEP_VALID, "random 10 procs x 2 keys");
    ck_assert_msg(dt < 10.0, "took %.2f s", dt);
    jep_history_free(h);
    free(sim);
}
END_TEST

/* Hardest of the three: everything on one key (10 concurrent ops, and
 * every timed-out write stays pending to the end). */
START_TEST(random_10k_ops_1_key)
{
    sim_op *sim;
    jep_history *h = simulate(5, 10, 1, 10000, 5, &sim);
    double dt = run(h, JEP_VALID, "random 10 procs x 1 key");
    ck_assert_msg(dt < 5.0, "took %.2f s", dt);
    jep_history_free(h);
    free(sim);
}
END_TEST

/* One read changed to a value its key never held at that time. */
START_TEST(random_history_with_planted_stale_read)
{
    sim_op *sim;
    jep_history *h = simulate(11, 10, 20, 10000, 1000, &sim);
    /* find an ok read of k0 late in the run that saw a value, and make it
     * return the key's first written value instead (long overwritten) */
    int first = -1;
    for (int i = 0; i < 10000 && first < 0; i++)
        if (sim[i].key == 0 && sim[i].f == JEP_WRITE && sim[i].outcome == JEP_OK)
            first = sim[i].value;
    jep_event *victim = NULL;
    for (size_t i = h->n; i-- > 0 && !victim;) {
        jep_event *ev = &h->ev[i];
        if (ev->type == JEP_OK && ev->f == JEP_READ && !strcmp(ev->key, "k0") &&
            ev->value.kind == JEP_V_SCALAR && atoi(ev->value.text) != first)
            victim = ev;
    }
    ck_assert_ptr_nonnull(victim);
    free(victim->value.text);
    char v[16];
    snprintf(v, sizeof(v), "%d", first);
    victim->value.text = strdup(v);
    jep_result r;
    jep_opts o = {.timeout_s = 60};
    double t0 = jep_now_s();
    ck_assert_int_eq(jcheck_opts(h, JEP_MODEL_REGISTER, &o, &r, NULL, NULL), JEP_INVALID);
    fprintf(stderr, "planted stale read: INVALID in %.3f s, witness %zu ops\n", jep_now_s() - t0,
            r.n_witness);
    ck_assert_ptr_nonnull(strstr(r.report.s, "key k0: not linearizable"));
    jep_result_free(&r);
    jep_history_free(h);
    free(sim);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jepsen_perf");
    TCase *tc = tcase_create("perf");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, random_10k_ops_20_keys);
    tcase_add_test(tc, random_10k_ops_2_keys);
    tcase_add_test(tc, random_10k_ops_1_key);
    tcase_add_test(tc, random_history_with_planted_stale_read);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
