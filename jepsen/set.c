/* The set checker: unique adds, reads of the whole set.
 *
 * Rules, per key, for every ok read R (an array of elements):
 *  - lost: an element whose add was acknowledged (ok) before R was
 *    invoked, or that an earlier read returned before R was invoked, is
 *    missing from R;
 *  - phantom: R holds an element no add ever attempted, or one whose
 *    every add failed (fail = certainly not applied);
 *  - an info add may or may not appear, in any read after its invoke.
 * A key with acknowledged adds but no ok read cannot be judged: UNKNOWN. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checker.h"
#include "shale_errors.h"

typedef struct {
    int64_t first_call; /* earliest invoke of an add */
    int64_t acked;      /* earliest ok return, INT64_MAX if none */
    int64_t seen;       /* earliest return of a read holding it */
    size_t add_op;      /* an add op (the acked one if any) */
    size_t seen_op;
    int attempts, failed; /* add attempts; how many failed */
} elem;

#define MAX_LISTED 20

int jep_check_set(const jep_op *ops, size_t n, const jep_opts *o, jep_result *r)
{
    (void)o;
    memset(r, 0, sizeof(*r));
    size_t *order, *starts, nk;
    int rc = jep_group_by_key(ops, n, &order, &starts, &nk);
    if (rc)
        return rc;
    size_t n_invalid = 0, n_unknown = 0;
    size_t *wit = NULL, n_wit = 0;
    unsigned char *present = NULL;
    jep_buf notes = {0};
    for (size_t g = 0; g < nk && !rc; g++) {
        const char *key = ops[order[starts[g]]].key;
        jep_interner in = {0};
        elem *el = NULL;
        size_t cap = 0, n_reads = 0, n_acked = 0, bad_here = 0;
        /* pass 1: the adds */
        for (size_t x = starts[g]; x < starts[g + 1] && !rc; x++) {
            const jep_op *op = &ops[order[x]];
            if (op->f != JEP_ADD)
                continue;
            if (op->value->kind != JEP_V_SCALAR) {
                jep_buf_printf(&notes, "key %s: add with a non-scalar value ignored (line %d)\n",
                               key, op->call_line);
                continue;
            }
            size_t before = in.n;
            int32_t id = jep_intern(&in, op->value->text);
            if (id < 0) {
                rc = SHALE_ENOMEM;
                break;
            }
            if ((size_t)id > cap) {
                size_t nc = cap ? cap * 2 : 64;
                elem *ne = realloc(el, nc * sizeof(*ne));
                if (!ne) {
                    rc = SHALE_ENOMEM;
                    break;
                }
                el = ne;
                cap = nc;
            }
            elem *e = &el[id - 1];
            if (in.n > before)
                *e = (elem){.first_call = op->call_us,
                            .acked = INT64_MAX,
                            .seen = INT64_MAX,
                            .add_op = order[x],
                            .seen_op = SIZE_MAX};
            e->attempts++;
            if (op->outcome == JEP_FAIL)
                e->failed++;
            if (op->outcome == JEP_OK && op->ret_us < e->acked) {
                e->acked = op->ret_us;
                e->add_op = order[x];
            }
            if (op->call_us < e->first_call)
                e->first_call = op->call_us;
        }
        if (rc) {
            free(el);
            jep_interner_free(&in);
            break;
        }
        for (size_t id = 0; id < in.n; id++)
            n_acked += el[id].acked != INT64_MAX;
        free(present);
        present = calloc(in.n + 1, 1);
        if (!present) {
            rc = SHALE_ENOMEM;
            free(el);
            jep_interner_free(&in);
            break;
        }
        /* pass 2: the reads, in invoke order */
        for (size_t x = starts[g]; x < starts[g + 1] && !rc; x++) {
            const jep_op *op = &ops[order[x]];
            if (op->f != JEP_READ || op->outcome != JEP_OK)
                continue;
            n_reads++;
            size_t bad = 0;
            if (op->value->kind != JEP_V_ARRAY) {
                jep_buf_printf(&r->report, "key %s: a set read returned a non-array\n", key);
                jep_op_format(&r->report, op);
                bad++;
            }
            memset(present, 0, in.n + 1);
            for (size_t i = 0; op->value->kind == JEP_V_ARRAY && i < op->value->n; i++) {
                int32_t id = jep_intern_find(&in, op->value->elems[i]);
                const elem *e = id ? &el[id - 1] : NULL;
                const char *why = !e                           ? "never attempted"
                                  : e->failed == e->attempts   ? "every add of it failed"
                                  : e->first_call > op->ret_us ? "added only after the read"
                                                               : NULL;
                if (id)
                    present[id] = 1;
                if (why) {
                    if (bad++ < MAX_LISTED)
                        jep_buf_printf(&r->report, "key %s: phantom element %s (%s) in read\n", key,
                                       op->value->elems[i], why);
                    if (e) {
                        size_t *nw = realloc(wit, (n_wit + 1) * sizeof(*nw));
                        if (nw) {
                            wit = nw;
                            wit[n_wit++] = e->add_op;
                        }
                    }
                }
            }
            size_t lost = 0;
            for (size_t id = 1; id <= in.n; id++) {
                elem *e = &el[id - 1];
                if (present[id]) {
                    if (op->ret_us < e->seen) {
                        e->seen = op->ret_us;
                        e->seen_op = order[x];
                    }
                    continue;
                }
                int acked_before = e->acked < op->call_us;
                int seen_before = e->seen < op->call_us;
                if (!acked_before && !seen_before)
                    continue;
                if (lost++ < MAX_LISTED) {
                    jep_buf_printf(&r->report, "key %s: lost element %s: %s before the read\n", key,
                                   in.text[id - 1],
                                   acked_before ? "acknowledged" : "returned by a read");
                    size_t *nw = realloc(wit, (n_wit + 2) * sizeof(*nw));
                    if (nw) {
                        wit = nw;
                        wit[n_wit++] = acked_before ? e->add_op : e->seen_op;
                    }
                }
            }
            if (lost > MAX_LISTED)
                jep_buf_printf(&r->report, "key %s: ... %zu lost elements in all\n", key, lost);
            if (bad > MAX_LISTED)
                jep_buf_printf(&r->report, "key %s: ... %zu phantom elements in all\n", key, bad);
            if (lost || bad) {
                bad_here++;
                jep_buf_printf(&r->report, "  in the read:\n");
                jep_op_format(&r->report, op);
                size_t *nw = realloc(wit, (n_wit + 1) * sizeof(*nw));
                if (nw) {
                    wit = nw;
                    wit[n_wit++] = order[x];
                }
            }
        }
        if (bad_here)
            n_invalid++;
        else if (n_acked && !n_reads) {
            n_unknown++;
            jep_buf_printf(&notes, "key %s: %zu acknowledged adds but no ok read\n", key, n_acked);
        }
        free(el);
        jep_interner_free(&in);
    }
    free(present);
    free(order);
    free(starts);
    if (rc) {
        free(wit);
        jep_buf_free(&notes);
        jep_result_free(r);
        return rc;
    }
    r->keys = nk;
    r->witness = wit;
    r->n_witness = n_wit;
    r->verdict = n_invalid ? JEP_INVALID : n_unknown ? JEP_UNKNOWN : JEP_VALID;
    jep_buf_printf(&r->report, "set: %zu of %zu keys with lost or phantom elements, %zu unknown\n",
                   n_invalid, nk, n_unknown);
    if (notes.n)
        jep_buf_printf(&r->report, "%s", notes.s);
    jep_buf_free(&notes);
    return 0;
}
