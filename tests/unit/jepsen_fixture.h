/* Helpers for the jepsen checker tests: build histories op by op and run
 * a checker over them. Header-only (static functions) so each test binary
 * stays one file plus this. */
#ifndef SHALE_TEST_JEPSEN_FIXTURE_H
#define SHALE_TEST_JEPSEN_FIXTURE_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "checker.h"
#include "history.h"

/* One op: an invoke at t0 and, unless outcome is JEP_INFO with t1 < 0, a
 * completion at t1. in: the written/added value (JSON text) or NULL;
 * expect: a cas's expected value; out: what a read returned. */
static inline void jop(jep_history *h, int p, jep_fn f, const char *key, const char *in,
                       const char *expect, const char *out, int64_t t0, int64_t t1,
                       jep_type outcome)
{
    int64_t bound = -1;
    ck_assert_int_eq(jep_history_append(h, p, JEP_INVOKE, f, key, in, expect, t0, bound), 0);
    if (outcome == JEP_INFO && t1 < 0)
        return;
    const char *v = (f == JEP_READ || f == JEP_STALE_READ) ? out : in;
    ck_assert_int_eq(jep_history_append(h, p, outcome, f, key, v, expect, t1, bound), 0);
}

/* A stale read with bound_ms returning out over [t0, t1]. */
static inline void jstale(jep_history *h, int p, const char *key, int64_t bound_ms, const char *out,
                          int64_t t0, int64_t t1)
{
    ck_assert_int_eq(
        jep_history_append(h, p, JEP_INVOKE, JEP_STALE_READ, key, NULL, NULL, t0, bound_ms), 0);
    ck_assert_int_eq(jep_history_append(h, p, JEP_OK, JEP_STALE_READ, key, out, NULL, t1, bound_ms),
                     0);
}

#define W(h, p, k, v, t0, t1) jop(h, p, JEP_WRITE, k, v, NULL, NULL, t0, t1, JEP_OK)
#define R(h, p, k, v, t0, t1) jop(h, p, JEP_READ, k, NULL, NULL, v, t0, t1, JEP_OK)
#define CAS(h, p, k, e, v, t0, t1) jop(h, p, JEP_CAS, k, v, e, NULL, t0, t1, JEP_OK)

/* Check h with model m; prints the report when print is set. The result
 * is left in *r for the caller to inspect and free. */
static inline jep_verdict jcheck_opts(jep_history *h, jep_model m, const jep_opts *o, jep_result *r,
                                      jep_op **ops_out, size_t *n_out)
{
    char err[256];
    jep_op *ops;
    size_t n;
    int rc = jep_history_ops(h, &ops, &n, err, sizeof(err));
    ck_assert_msg(rc == 0, "pairing: %s", err);
    ck_assert_int_eq(jep_check(m, ops, n, o, r), 0);
    if (getenv("JEPSEN_TEST_VERBOSE") && r->report.s)
        fprintf(stderr, "--- %s: %s\n%s", jep_model_name(m), jep_verdict_name(r->verdict),
                r->report.s);
    if (ops_out) {
        *ops_out = ops;
        *n_out = n;
    } else {
        free(ops);
    }
    return r->verdict;
}

/* Check and free everything; returns the verdict. */
static inline jep_verdict jcheck(jep_history *h, jep_model m)
{
    jep_result r;
    jep_opts o = {.timeout_s = 30};
    jep_verdict v = jcheck_opts(h, m, &o, &r, NULL, NULL);
    jep_result_free(&r);
    jep_history_free(h);
    return v;
}

#endif
