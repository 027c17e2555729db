/* The counter checker: a counter incremented by CAS with retries.
 *
 * Rules, per key ("incr" ops add their value, 1 when absent; deltas must
 * be positive integers; reads return an integer, null = 0):
 *  - every ok read R lies in [sum of ok incrs that returned before R was
 *    invoked, sum of ok and info incrs invoked before R returned]: above
 *    is a double apply (or a phantom increment), below a lost one;
 *  - the final read (invoked after every ok/fail incr returned and every
 *    info incr was invoked) must equal the acknowledged sum plus the sum
 *    of some subset of the info incrs, exactly;
 *  - fail incrs never count. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checker.h"
#include "shale_errors.h"

static int int_of(const jep_value *v, int64_t dflt, int64_t *out)
{
    if (v->kind == JEP_V_NONE || v->kind == JEP_V_NULL) {
        *out = dflt;
        return 0;
    }
    if (v->kind != JEP_V_SCALAR)
        return -1;
    char *end;
    long long x = strtoll(v->text, &end, 10);
    if (*end)
        return -1;
    *out = x;
    return 0;
}

/* Can `target` be written as a sum of a subset of d[0..n)? A bitset DP
 * when the total is small; otherwise only the range is checked (sound for
 * INVALID: a value outside [0, total] is never reachable). Returns 1/0, or
 * -1 when only the range could be checked and the target lies in it. */
static int subset_sum(const int64_t *d, size_t n, int64_t target)
{
    int64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += d[i];
    if (target < 0 || target > total)
        return 0;
    if (total > ((int64_t)1 << 24))
        return -1;
    size_t words = (size_t)total / 64 + 1;
    uint64_t *b = calloc(words, sizeof(*b));
    if (!b)
        return -1;
    b[0] = 1;
    for (size_t i = 0; i < n; i++) {
        size_t sh = (size_t)d[i], ws = sh / 64, bs = sh % 64;
        for (size_t w = words; w-- > ws;) {
            uint64_t v = b[w - ws] << bs;
            if (bs && w - ws > 0)
                v |= b[w - ws - 1] >> (64 - bs);
            b[w] |= v;
        }
    }
    int r = (int)(b[(size_t)target / 64] >> ((size_t)target % 64) & 1);
    free(b);
    return r;
}

int jep_check_counter(const jep_op *ops, size_t n, const jep_opts *o, jep_result *r)
{
    (void)o;
    memset(r, 0, sizeof(*r));
    size_t *order, *starts, nk;
    int rc = jep_group_by_key(ops, n, &order, &starts, &nk);
    if (rc)
        return rc;
    size_t n_invalid = 0, n_unknown = 0;
    int64_t *unk = malloc((n ? n : 1) * sizeof(*unk));
    size_t *wit = malloc((n ? n : 1) * sizeof(*wit)), n_wit = 0;
    if (!unk || !wit) {
        free(unk);
        free(wit);
        free(order);
        free(starts);
        return SHALE_ENOMEM;
    }
    for (size_t g = 0; g < nk; g++) {
        const char *key = ops[order[starts[g]]].key;
        int64_t acked = 0, settled = INT64_MIN; /* time after which all incrs are settled */
        size_t n_unk = 0, n_ok = 0, n_reads = 0, bad = 0;
        int malformed = 0;
        for (size_t x = starts[g]; x < starts[g + 1]; x++) {
            const jep_op *op = &ops[order[x]];
            if (op->f != JEP_INCR || op->outcome == JEP_FAIL) {
                if (op->f == JEP_INCR && op->ret_us > settled)
                    settled = op->ret_us;
                continue;
            }
            int64_t d;
            if (int_of(op->value, 1, &d) || d <= 0) {
                jep_buf_printf(&r->report, "key %s: incr value must be a positive integer:\n", key);
                jep_op_format(&r->report, op);
                malformed = 1;
                continue;
            }
            if (op->outcome == JEP_OK) {
                acked += d;
                n_ok++;
                if (op->ret_us > settled)
                    settled = op->ret_us;
            } else {
                unk[n_unk++] = d;
                if (op->call_us > settled)
                    settled = op->call_us;
            }
        }
        if (malformed) {
            n_unknown++;
            continue;
        }
        const jep_op *final = NULL;
        for (size_t x = starts[g]; x < starts[g + 1]; x++) {
            const jep_op *rd = &ops[order[x]];
            if (rd->f != JEP_READ || rd->outcome != JEP_OK)
                continue;
            n_reads++;
            int64_t v;
            if (int_of(rd->value, 0, &v)) {
                jep_buf_printf(&r->report, "key %s: a counter read returned a non-integer:\n", key);
                jep_op_format(&r->report, rd);
                wit[n_wit++] = order[x];
                bad++;
                continue;
            }
            int64_t lo = 0, hi = 0;
            for (size_t y = starts[g]; y < starts[g + 1]; y++) {
                const jep_op *in = &ops[order[y]];
                int64_t d;
                if (in->f != JEP_INCR || in->outcome == JEP_FAIL || int_of(in->value, 1, &d))
                    continue;
                if (in->outcome == JEP_OK && in->ret_us < rd->call_us)
                    lo += d;
                if (in->call_us <= rd->ret_us)
                    hi += d;
            }
            if (v < lo || v > hi) {
                jep_buf_printf(&r->report,
                               "key %s: read %" PRId64 " outside [%" PRId64 ", %" PRId64
                               "] (acknowledged before it .. attempted before its return): %s\n",
                               key, v, lo, hi, v > hi ? "double apply" : "lost increment");
                jep_op_format(&r->report, rd);
                wit[n_wit++] = order[x];
                bad++;
            }
            if (rd->call_us > settled && (!final || rd->call_us > final->call_us))
                final = rd;
        }
        if (final && !bad) {
            int64_t v = 0;
            (void)int_of(final->value, 0, &v);
            int ss = subset_sum(unk, n_unk, v - acked);
            if (ss == 0) {
                jep_buf_printf(&r->report,
                               "key %s: final value %" PRId64 " is not %" PRId64
                               " acknowledged increments (%zu ops) plus any subset of the %zu "
                               "unknown ones: %s\n",
                               key, v, acked, n_ok, n_unk,
                               v > acked ? "double apply" : "lost increment");
                jep_op_format(&r->report, final);
                wit[n_wit++] = (size_t)(final - ops);
                bad++;
            } else if (ss < 0) {
                jep_buf_printf(&r->report,
                               "key %s: final value within range; the exact subset-sum check was "
                               "skipped (too large)\n",
                               key);
            }
        }
        if (bad)
            n_invalid++;
        else if (!final && (n_ok || n_unk)) {
            n_unknown++;
            jep_buf_printf(&r->report, "key %s: no final read after every increment settled\n",
                           key);
        }
    }
    free(unk);
    free(order);
    free(starts);
    r->keys = nk;
    r->witness = wit;
    r->n_witness = n_wit;
    r->verdict = n_invalid ? JEP_INVALID : n_unknown ? JEP_UNKNOWN : JEP_VALID;
    jep_buf_printf(&r->report, "counter: %zu of %zu keys invalid, %zu unknown\n", n_invalid, nk,
                   n_unknown);
    return 0;
}
