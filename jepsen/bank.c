/* The bank checker: accounts moved between by transfers, each a
 * transaction within one slot (docs/jepsen.md, "The bank workload").
 *
 * Every account starts at JEP_BANK_START; a transfer moves an amount from
 * one account to another atomically, so the total never changes and no
 * balance goes negative. Rules, for every ok read (f read, an array of the
 * balances of all accounts read by one get-only transaction, the final
 * read included):
 *  - every element is an integer >= 0;
 *  - the array has as many accounts as the first ok read;
 *  - the elements sum to accounts x JEP_BANK_START.
 * A read breaking one is the anomaly (a lost, doubled or torn transfer, or
 * a read of a state no serial order of transfers produces). Transfers are
 * counted, not judged: their effect is what the reads see. No ok read at
 * all: UNKNOWN. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checker.h"
#include "shale_errors.h"

#define MAX_LISTED 20

int jep_check_bank(const jep_op *ops, size_t n, const jep_opts *o, jep_result *r)
{
    (void)o;
    memset(r, 0, sizeof(*r));
    size_t reads = 0, bad = 0, transfers_ok = 0, transfers_fail = 0, transfers_info = 0;
    size_t accounts = 0;
    for (size_t i = 0; i < n; i++) {
        const jep_op *op = &ops[i];
        if (op->f == JEP_TRANSFER) {
            transfers_ok += op->outcome == JEP_OK;
            transfers_fail += op->outcome == JEP_FAIL;
            transfers_info += op->outcome == JEP_INFO;
            continue;
        }
        if (op->f != JEP_READ || op->outcome != JEP_OK)
            continue;
        reads++;
        const char *why = NULL;
        char detail[128] = "";
        int64_t sum = 0;
        if (op->value->kind != JEP_V_ARRAY || op->value->n == 0) {
            why = "not an array of balances";
        } else {
            if (accounts == 0)
                accounts = op->value->n;
            if (op->value->n != accounts) {
                why = "a different number of accounts";
                snprintf(detail, sizeof(detail), " (%zu, first read %zu)", op->value->n, accounts);
            }
            for (size_t k = 0; k < op->value->n && why == NULL; k++) {
                char *end;
                long long b = strtoll(op->value->elems[k], &end, 10);
                if (*end != '\0' || end == op->value->elems[k]) {
                    why = "a balance that is not an integer";
                } else if (b < 0) {
                    why = "a negative balance";
                    snprintf(detail, sizeof(detail), " (account %zu: %lld)", k, b);
                }
                sum += b;
            }
            int64_t want = (int64_t)accounts * JEP_BANK_START;
            if (why == NULL && sum != want) {
                why = "a total that is not the accounts' total";
                snprintf(detail, sizeof(detail), " (%" PRId64 ", want %" PRId64 ")", sum, want);
            }
        }
        if (why == NULL)
            continue;
        if (bad++ < MAX_LISTED) {
            jep_buf_printf(&r->report, "read of %s: %s%s\n", op->key, why, detail);
            jep_op_format(&r->report, op);
            size_t *nw = realloc(r->witness, (r->n_witness + 1) * sizeof(*nw));
            if (nw == NULL)
                return SHALE_ENOMEM;
            r->witness = nw;
            r->witness[r->n_witness++] = i;
        }
    }
    r->keys = accounts;
    if (bad > MAX_LISTED)
        jep_buf_printf(&r->report, "... %zu bad reads in all\n", bad);
    if (bad > 0) {
        r->verdict = JEP_INVALID;
    } else if (reads == 0) {
        r->verdict = JEP_UNKNOWN;
        jep_buf_printf(&r->report, "no successful read of the accounts: nothing to judge\n");
    } else {
        r->verdict = JEP_VALID;
    }
    jep_buf_printf(&r->report,
                   "bank: %zu accounts, %zu reads (%zu bad); transfers: %zu ok, %zu failed, %zu "
                   "unknown\n",
                   accounts, reads, bad, transfers_ok, transfers_fail, transfers_info);
    return 0;
}
