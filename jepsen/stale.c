/* The stale-read checker: bounded-staleness reads against the writes.
 *
 * Definitions, per key (times in us; the initial value null is "written"
 * at -inf and returned at -inf):
 *  - the writes are ok or info writes and cases (info: return = +inf);
 *  - a write w of value v can be current at time t iff w.call <= t and no
 *    ok write w2 that started after w returned (w2.call > w.ret) had also
 *    returned by t (w2.ret <= t): before that, nothing proves v was
 *    overwritten. So v can be current exactly on [w.call, D(w)), D(w) the
 *    earliest return of such a w2 (+inf if none);
 *  - a stale_read R with bound b (ms) returning v is valid iff some write
 *    w of v can be current at some t in [R.call - b, R.ret], i.e.
 *    w.call <= R.ret and D(w) > R.call - b;
 *  - an ok linearizable read is checked the same way with b = 0 (a
 *    necessary condition only; the register model checks it fully).
 * This is per-read; it does not check that successive stale reads of one
 * client are monotonic. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checker.h"
#include "shale_errors.h"

typedef struct {
    int64_t call, ret, dead; /* dead = D(w) */
    int32_t value;           /* 0 = null */
    size_t op;               /* SIZE_MAX for the initial value */
} wr;

static int cmp_call(const void *a, const void *b)
{
    const wr *x = a, *y = b;
    return (x->call > y->call) - (x->call < y->call);
}

int jep_check_stale(const jep_op *ops, size_t n, const jep_opts *o, jep_result *r)
{
    (void)o;
    memset(r, 0, sizeof(*r));
    size_t *order, *starts, nk;
    int rc = jep_group_by_key(ops, n, &order, &starts, &nk);
    if (rc)
        return rc;
    wr *w = malloc((n + 1) * sizeof(*w));
    wr *okw = malloc((n + 1) * sizeof(*okw));
    int64_t *sufmin = malloc((n + 2) * sizeof(*sufmin));
    size_t *wit = malloc((n ? n : 1) * 3 * sizeof(*wit)), n_wit = 0;
    size_t n_invalid = 0, n_reads = 0;
    if (!w || !okw || !sufmin || !wit) {
        rc = SHALE_ENOMEM;
        goto out;
    }
    for (size_t g = 0; g < nk; g++) {
        const char *key = ops[order[starts[g]]].key;
        jep_interner in = {0};
        size_t nw = 0, nok = 0, bad = 0;
        w[nw++] = (wr){INT64_MIN, INT64_MIN, INT64_MAX, 0, SIZE_MAX};
        for (size_t x = starts[g]; x < starts[g + 1]; x++) {
            const jep_op *op = &ops[order[x]];
            if ((op->f != JEP_WRITE && op->f != JEP_CAS) || op->outcome == JEP_FAIL)
                continue;
            int32_t v = op->value->kind == JEP_V_SCALAR ? jep_intern(&in, op->value->text) : 0;
            if (v < 0) {
                jep_interner_free(&in);
                rc = SHALE_ENOMEM;
                goto out;
            }
            w[nw++] = (wr){op->call_us, op->ret_us, INT64_MAX, v, order[x]};
            if (op->outcome == JEP_OK)
                okw[nok++] = w[nw - 1];
        }
        /* D(w) = min ret over ok writes with call > w.ret: ok writes by
         * call, a suffix minimum of their returns, one binary search each. */
        qsort(okw, nok, sizeof(*okw), cmp_call);
        sufmin[nok] = INT64_MAX;
        for (size_t i = nok; i-- > 0;)
            sufmin[i] = okw[i].ret < sufmin[i + 1] ? okw[i].ret : sufmin[i + 1];
        for (size_t i = 0; i < nw; i++) {
            if (w[i].ret == INT64_MAX)
                continue;
            size_t lo = 0, hi = nok; /* first ok write with call > w.ret */
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (okw[mid].call > w[i].ret)
                    hi = mid;
                else
                    lo = mid + 1;
            }
            w[i].dead = sufmin[lo];
        }
        for (size_t x = starts[g]; x < starts[g + 1]; x++) {
            const jep_op *rd = &ops[order[x]];
            if ((rd->f != JEP_STALE_READ && rd->f != JEP_READ) || rd->outcome != JEP_OK)
                continue;
            n_reads++;
            int64_t b_us = rd->f == JEP_STALE_READ ? rd->bound_ms * 1000 : 0;
            int64_t from = rd->call_us - b_us;
            int32_t v = 0;
            if (rd->value->kind == JEP_V_SCALAR && !(v = jep_intern_find(&in, rd->value->text))) {
                v = -1; /* never written */
            }
            int ok = 0, any = 0;
            const wr *best = NULL;
            for (size_t i = 0; i < nw && !ok; i++) {
                if (w[i].value != v)
                    continue;
                any = 1;
                if (w[i].call <= rd->ret_us && w[i].dead > from)
                    ok = 1;
                else if (w[i].call <= rd->ret_us && (!best || w[i].dead > best->dead))
                    best = &w[i];
            }
            if (ok)
                continue;
            bad++;
            char vb[96];
            jep_value_str(rd->value, vb, sizeof(vb));
            if (!any) {
                jep_buf_printf(&r->report, "key %s: read of %s, a value never written:\n", key, vb);
            } else if (!best) {
                jep_buf_printf(&r->report,
                               "key %s: read of %s before any write of it was invoked:\n", key, vb);
            } else {
                jep_buf_printf(&r->report,
                               "key %s: stale read of %s: it was certainly overwritten by %" PRId64
                               " us, %" PRId64 " us before the window [%" PRId64 ", %" PRId64
                               "] allowed by its bound:\n",
                               key, vb, best->dead, from - best->dead, from, rd->ret_us);
            }
            jep_op_format(&r->report, rd);
            wit[n_wit++] = order[x];
            if (best && best->op != SIZE_MAX) {
                jep_buf_printf(&r->report, "  last write of that value:\n");
                jep_op_format(&r->report, &ops[best->op]);
                wit[n_wit++] = best->op;
            } else if (best) {
                jep_buf_printf(&r->report, "  (the initial null value)\n");
            }
            if (best) {
                /* the overwrite that returned at best->dead */
                for (size_t i = 0; i < nok; i++)
                    if (okw[i].ret == best->dead && okw[i].call > best->ret) {
                        jep_buf_printf(&r->report, "  overwritten by:\n");
                        jep_op_format(&r->report, &ops[okw[i].op]);
                        wit[n_wit++] = okw[i].op;
                        break;
                    }
            }
        }
        if (bad)
            n_invalid++;
        jep_interner_free(&in);
    }
    r->keys = nk;
    r->verdict = n_invalid ? JEP_INVALID : JEP_VALID;
    jep_buf_printf(&r->report, "stale: %zu reads checked; %zu of %zu keys with stale reads\n",
                   n_reads, n_invalid, nk);
    r->witness = wit;
    r->n_witness = n_wit;
    wit = NULL;
out:
    free(w);
    free(okw);
    free(sufmin);
    free(wit);
    free(order);
    free(starts);
    if (rc)
        jep_result_free(r);
    return rc;
}
