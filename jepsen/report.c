/* Shared pieces of the checkers: text buffers, results, op formatting, the
 * summary table, grouping ops by key and the model dispatch. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checker.h"
#include "shale_errors.h"

void jep_buf_printf(jep_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0)
        return;
    if (b->n + (size_t)need + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + (size_t)need + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns)
            return; /* the report is best effort; the verdict is not */
        b->s = ns;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

void jep_buf_free(jep_buf *b)
{
    free(b->s);
    memset(b, 0, sizeof(*b));
}

void jep_result_free(jep_result *r)
{
    jep_buf_free(&r->report);
    free(r->witness);
    memset(r, 0, sizeof(*r));
}

const char *jep_verdict_name(jep_verdict v)
{
    switch (v) {
    case JEP_VALID:
        return "VALID";
    case JEP_INVALID:
        return "INVALID";
    default:
        return "UNKNOWN";
    }
}

static const char *model_names[] = {"register", "set", "counter", "stale", "bank"};

const char *jep_model_name(jep_model m)
{
    return model_names[m];
}

int jep_model_parse(const char *s, jep_model *m)
{
    for (size_t i = 0; i < sizeof(model_names) / sizeof(model_names[0]); i++)
        if (!strcmp(s, model_names[i])) {
            *m = (jep_model)i;
            return 0;
        }
    return SHALE_EINVAL;
}

double jep_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void jep_op_format(jep_buf *b, const jep_op *op)
{
    char v[96], e[96];
    jep_value_str(op->value, v, sizeof(v));
    jep_buf_printf(b, "  p%-4" PRId64 " %-10s %-8s", op->process, jep_fn_name(op->f), op->key);
    if (op->f == JEP_CAS)
        jep_buf_printf(b, " %s->%s", jep_value_str(op->expect, e, sizeof(e)), v);
    else if ((op->f == JEP_READ || op->f == JEP_STALE_READ) && op->outcome != JEP_OK)
        jep_buf_printf(b, " ?");
    else
        jep_buf_printf(b, " %s", v);
    if (op->f == JEP_STALE_READ)
        jep_buf_printf(b, " (bound %" PRId64 " ms)", op->bound_ms);
    jep_buf_printf(b, "  %-4s [%" PRId64 ", ", jep_type_name(op->outcome), op->call_us);
    if (op->ret_us == INT64_MAX)
        jep_buf_printf(b, "inf");
    else
        jep_buf_printf(b, "%" PRId64, op->ret_us);
    jep_buf_printf(b, "] us");
    if (op->call_line)
        jep_buf_printf(b, "  (line%s %d", op->ret_line ? "s" : "", op->call_line);
    if (op->call_line && op->ret_line)
        jep_buf_printf(b, "-%d", op->ret_line);
    if (op->call_line)
        jep_buf_printf(b, ")");
    jep_buf_printf(b, "\n");
}

void jep_summary(jep_buf *b, const jep_op *ops, size_t n)
{
    size_t cnt[JEP_NFNS][JEP_NTYPES] = {{0}};
    for (size_t i = 0; i < n; i++)
        cnt[ops[i].f][ops[i].outcome]++;
    jep_buf_printf(b, "%-11s %8s %8s %8s %8s\n", "op", "ok", "fail", "info", "total");
    size_t tot[JEP_NTYPES] = {0};
    for (int f = 0; f < JEP_NFNS; f++) {
        size_t t = cnt[f][JEP_OK] + cnt[f][JEP_FAIL] + cnt[f][JEP_INFO];
        if (!t)
            continue;
        jep_buf_printf(b, "%-11s %8zu %8zu %8zu %8zu\n", jep_fn_name((jep_fn)f), cnt[f][JEP_OK],
                       cnt[f][JEP_FAIL], cnt[f][JEP_INFO], t);
        for (int k = 0; k < JEP_NTYPES; k++)
            tot[k] += cnt[f][k];
    }
    jep_buf_printf(b, "%-11s %8zu %8zu %8zu %8zu\n", "all", tot[JEP_OK], tot[JEP_FAIL],
                   tot[JEP_INFO], n);
}

static int cmp_key_call(const void *a, const void *b, void *ctx)
{
    const jep_op *ops = ctx;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(ops[i].key, ops[j].key);
    if (c)
        return c;
    if (ops[i].call_us != ops[j].call_us)
        return ops[i].call_us < ops[j].call_us ? -1 : 1;
    return (i > j) - (i < j);
}

int jep_group_by_key(const jep_op *ops, size_t n, size_t **order_out, size_t **starts_out,
                     size_t *n_keys)
{
    size_t *order = malloc((n ? n : 1) * sizeof(*order));
    size_t *starts = malloc((n + 1) * sizeof(*starts));
    if (!order || !starts) {
        free(order);
        free(starts);
        return SHALE_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, n, sizeof(*order), cmp_key_call, (void *)ops); /* GNU: context last */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(ops[order[i]].key, ops[order[i - 1]].key))
            starts[k++] = i;
    starts[k] = n;
    *order_out = order;
    *starts_out = starts;
    *n_keys = k;
    return 0;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void jep_interner_free(jep_interner *in)
{
    free(in->text);
    free(in->slot);
    memset(in, 0, sizeof(*in));
}

int32_t jep_intern_find(const jep_interner *in, const char *text)
{
    if (!in->slot)
        return 0;
    for (size_t i = hash_str(text) & in->mask; in->slot[i]; i = (i + 1) & in->mask)
        if (!strcmp(in->text[in->slot[i] - 1], text))
            return in->slot[i];
    return 0;
}

int32_t jep_intern(jep_interner *in, const char *text)
{
    int32_t id = jep_intern_find(in, text);
    if (id)
        return id;
    if (in->n * 2 >= in->mask) {
        size_t nmask = in->mask ? in->mask * 2 + 1 : 63;
        int32_t *ns = calloc(nmask + 1, sizeof(*ns));
        const char **nt = ns ? realloc(in->text, (nmask + 1) / 2 * sizeof(*nt)) : NULL;
        if (!nt) {
            free(ns);
            return -1;
        }
        in->text = nt;
        for (size_t k = 1; k <= in->n; k++) {
            size_t i = hash_str(in->text[k - 1]) & nmask;
            while (ns[i])
                i = (i + 1) & nmask;
            ns[i] = (int32_t)k;
        }
        free(in->slot);
        in->slot = ns;
        in->mask = nmask;
    }
    size_t i = hash_str(text) & in->mask;
    while (in->slot[i])
        i = (i + 1) & in->mask;
    in->text[in->n++] = text;
    in->slot[i] = (int32_t)in->n;
    return (int32_t)in->n;
}

int jep_check(jep_model m, const jep_op *ops, size_t n, const jep_opts *o, jep_result *r)
{
    switch (m) {
    case JEP_MODEL_REGISTER:
        return jep_check_register(ops, n, o, r);
    case JEP_MODEL_SET:
        return jep_check_set(ops, n, o, r);
    case JEP_MODEL_COUNTER:
        return jep_check_counter(ops, n, o, r);
    case JEP_MODEL_STALE:
        return jep_check_stale(ops, n, o, r);
    case JEP_MODEL_BANK:
        return jep_check_bank(ops, n, o, r);
    }
    return SHALE_EINVAL;
}
