/* shale-bench: closed-loop load generator built on libshale's async API.
 *
 * One libuv loop drives N clients (one connection each); every client keeps
 * P requests in flight (pipelining) and issues the next request as soon as
 * one completes. Phases: warm-up (one GET per client, so connection set-up
 * is not measured), optional load (PUT every key once), then the measured
 * run, bounded by a request count or a duration. Latency is measured from
 * submit to callback, into a log-linear histogram (~3% resolution).
 *
 * Owns nothing but its own state; never bypasses the library. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale.h"

enum { OP_GET, OP_PUT };
enum { PH_WARMUP, PH_LOAD, PH_RUN, PH_DONE };

/* ---- Histogram (microseconds): exact below 64, then 32 steps per octave --*/

#define H_BUCKETS (64 + 40 * 32)

typedef struct hist {
    uint64_t count[H_BUCKETS];
    uint64_t n, sum, max;
} hist_t;

static unsigned h_index(uint64_t v)
{
    if (v < 64)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 5;
    unsigned idx = 64 + (shift - 1) * 32 + (unsigned)((v >> shift) - 32);
    return idx < H_BUCKETS ? idx : H_BUCKETS - 1;
}

/* Upper bound of a bucket. */
static uint64_t h_value(unsigned idx)
{
    if (idx < 64)
        return idx;
    unsigned shift = (idx - 64) / 32 + 1;
    uint64_t mant = (idx - 64) % 32 + 32;
    return ((mant + 1) << shift) - 1;
}

static void h_add(hist_t *h, uint64_t v)
{
    h->count[h_index(v)]++;
    h->n++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

static uint64_t h_pct(const hist_t *h, double p)
{
    if (h->n == 0)
        return 0;
    uint64_t want = (uint64_t)(p * (double)h->n);
    if (want == 0)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= want) {
            uint64_t v = h_value(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

/* ---- State ---------------------------------------------------------------*/

typedef struct bench bench_t;
typedef struct bclient bclient_t;

typedef struct bslot {
    shale_req_t req;
    bclient_t *cl;
    uint64_t t0;
    int op;
    char key[32];
} bslot_t;

struct bclient {
    bench_t *b;
    shale_client_t *c;
    bslot_t *slots;
};

#define NERR 128

struct bench {
    /* options */
    const char *addr;
    const char *cluster_id;
    int op; /* OP_GET, OP_PUT, or -1 for mixed */
    int conns, pipeline;
    uint64_t requests;
    double duration_s;
    uint64_t keys;
    size_t value_size;
    int load;
    int read_pct;
    uint32_t timeout_ms;
    /* run */
    uv_loop_t loop;
    bclient_t *cl;
    uint8_t *value;
    uint64_t rng;
    int phase;
    uint64_t issued, inflight;
    uint64_t t_start, t_end; /* ns */
    hist_t hist[2];
    uint64_t errors[NERR];
    uint64_t nerrors, notfound;
    char last_err[SHALE_ERRMSG_LEN + 64];
    int setup_failed;
};

static uint64_t rnd(bench_t *b)
{
    /* xorshift64* */
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return b->rng * 2685821657736338717ull;
}

static int err_index(int code)
{
    int i = -code;
    if (i >= 100)
        i = i - 100 + 64; /* local codes */
    return i >= 0 && i < NERR ? i : NERR - 1;
}

static void on_done(shale_req_t *req, int status);
static void next_phase(bench_t *b);

/* Issue the slot's next request; 0 when the phase has no more to issue. */
static int issue(bslot_t *s)
{
    bench_t *b = s->cl->b;
    uint64_t k;
    switch (b->phase) {
    case PH_WARMUP:
        return 0;
    case PH_LOAD:
        if (b->issued >= b->keys)
            return 0;
        k = b->issued;
        s->op = OP_PUT;
        break;
    case PH_RUN:
        if (b->duration_s > 0 ? uv_hrtime() >= b->t_end : b->issued >= b->requests)
            return 0;
        k = rnd(b) % b->keys;
        s->op = b->op >= 0 ? b->op : ((int)(rnd(b) % 100) < b->read_pct ? OP_GET : OP_PUT);
        break;
    default:
        return 0;
    }
    int n = snprintf(s->key, sizeof(s->key), "key-%010" PRIu64, k);
    s->req.data = s;
    s->t0 = uv_hrtime();
    int rv = s->op == OP_GET ? shale_get_async(s->cl->c, &s->req, s->key, (size_t)n, NULL, on_done)
                             : shale_put_async(s->cl->c, &s->req, s->key, (size_t)n, b->value,
                                               b->value_size, on_done);
    b->issued++;
    if (rv != SHALE_OK) {
        b->errors[err_index(rv)]++;
        b->nerrors++;
        snprintf(b->last_err, sizeof(b->last_err), "%s", s->req.errmsg);
        return 0;
    }
    b->inflight++;
    return 1;
}

static void on_done(shale_req_t *req, int status)
{
    bslot_t *s = req->data;
    bench_t *b = s->cl->b;
    uint64_t us = (uv_hrtime() - s->t0) / 1000;
    b->inflight--;
    if (b->phase == PH_WARMUP) {
        if (status != SHALE_OK) {
            b->setup_failed = 1;
            snprintf(b->last_err, sizeof(b->last_err), "%s: %s", shale_strerror(status),
                     req->errmsg);
        }
    } else {
        if (status == SHALE_OK) {
            if (b->phase == PH_RUN)
                h_add(&b->hist[s->op], us);
            if (s->op == OP_GET && !req->value.found)
                b->notfound++;
        } else {
            b->errors[err_index(status)]++;
            b->nerrors++;
            snprintf(b->last_err, sizeof(b->last_err), "%s: %s", shale_strerror(status),
                     req->errmsg);
        }
    }
    shale_req_cleanup(req);
    if (!issue(s) && b->inflight == 0)
        next_phase(b);
}

static void print_errors(bench_t *b)
{
    if (b->nerrors == 0)
        return;
    printf("  errors: %" PRIu64 " (", b->nerrors);
    int first = 1;
    for (int i = 0; i < NERR; i++) {
        if (b->errors[i] == 0)
            continue;
        int code = i < 64 ? -i : -(i - 64 + 100);
        printf("%s%s: %" PRIu64, first ? "" : ", ", shale_strerror(code), b->errors[i]);
        first = 0;
    }
    printf(")\n  last error: %s\n", b->last_err);
}

static void report_hist(const char *name, const hist_t *h, double secs)
{
    if (h->n == 0)
        return;
    printf("  %-4s %10" PRIu64 " ops  %10.0f ops/s   latency ms: p50 %.3f  p99 %.3f  "
           "p999 %.3f  max %.3f  mean %.3f\n",
           name, h->n, (double)h->n / secs, h_pct(h, 0.50) / 1000.0, h_pct(h, 0.99) / 1000.0,
           h_pct(h, 0.999) / 1000.0, h->max / 1000.0, (double)h->sum / (double)h->n / 1000.0);
}

static void close_all(bench_t *b)
{
    for (int i = 0; i < b->conns; i++)
        shale_client_close(b->cl[i].c, NULL);
}

static void start_phase(bench_t *b, int phase)
{
    b->phase = phase;
    b->issued = 0;
    b->nerrors = 0;
    b->notfound = 0;
    memset(b->errors, 0, sizeof(b->errors));
    memset(b->hist, 0, sizeof(b->hist));
    b->t_start = uv_hrtime();
    if (b->duration_s > 0)
        b->t_end = b->t_start + (uint64_t)(b->duration_s * 1e9);
    for (int i = 0; i < b->conns; i++)
        for (int j = 0; j < b->pipeline; j++)
            issue(&b->cl[i].slots[j]);
    if (b->inflight == 0)
        next_phase(b);
}

static void next_phase(bench_t *b)
{
    double secs = (double)(uv_hrtime() - b->t_start) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    switch (b->phase) {
    case PH_WARMUP:
        if (b->setup_failed) {
            fprintf(stderr, "shale-bench: cannot reach %s: %s\n", b->addr, b->last_err);
            b->phase = PH_DONE;
            close_all(b);
            return;
        }
        start_phase(b, b->load ? PH_LOAD : PH_RUN);
        return;
    case PH_LOAD:
        printf("load: %" PRIu64 " puts in %.2f s = %.0f ops/s\n", b->issued, secs,
               (double)b->issued / secs);
        print_errors(b);
        start_phase(b, PH_RUN);
        return;
    case PH_RUN: {
        hist_t all;
        memset(&all, 0, sizeof(all));
        for (int o = 0; o < 2; o++) {
            for (unsigned i = 0; i < H_BUCKETS; i++)
                all.count[i] += b->hist[o].count[i];
            all.n += b->hist[o].n;
            all.sum += b->hist[o].sum;
            if (b->hist[o].max > all.max)
                all.max = b->hist[o].max;
        }
        printf("run: %" PRIu64 " requests in %.2f s = %.0f ops/s\n", all.n + b->nerrors, secs,
               (double)all.n / secs);
        report_hist("all", &all, secs);
        if (b->op < 0) {
            report_hist("get", &b->hist[OP_GET], secs);
            report_hist("put", &b->hist[OP_PUT], secs);
        }
        if (b->notfound > 0)
            printf("  gets that found no key: %" PRIu64 " (use --load to populate)\n", b->notfound);
        print_errors(b);
        b->phase = PH_DONE;
        close_all(b);
        return;
    }
    default:
        return;
    }
}

/* ---- Command line --------------------------------------------------------*/

static void usage(FILE *f)
{
    fprintf(f, "usage: shale-bench --addr HOST:PORT [options]\n"
               "  --op put|get|mixed   operation (default put)\n"
               "  --reads PCT          mixed: percentage of gets (default 50)\n"
               "  --conns N            connections, one client each (default 4)\n"
               "  --pipeline P         requests in flight per connection (default 16)\n"
               "  --requests M         requests in the measured run (default 100000)\n"
               "  --duration S         run for S seconds instead of M requests\n"
               "  --keys K             key space (default 100000)\n"
               "  --value-size B       bytes per value (default 100)\n"
               "  --load               put every key once before the run (for gets)\n"
               "  --timeout MS         per-request deadline (default 5000)\n"
               "  --cluster-id ID      expected cluster\n"
               "  --seed N             key choice seed (default 1)\n"
               "exit status: 0 ok, 1 some requests failed, 2 usage, 3 cannot connect\n");
}

static int num(const char *s, double lo, double hi, double *out)
{
    char *end;
    if (s == NULL)
        return -1;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    static bench_t b;
    signal(SIGPIPE, SIG_IGN); /* an async libuv program's own choice */
    b.addr = NULL;
    b.op = OP_PUT;
    b.conns = 4;
    b.pipeline = 16;
    b.requests = 100000;
    b.keys = 100000;
    b.value_size = 100;
    b.read_pct = 50;
    b.timeout_ms = 5000;
    b.rng = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--load") == 0) {
            b.load = 1;
            continue;
        } else if (v == NULL) {
            fprintf(stderr, "shale-bench: '%s' needs a value or is unknown (try --help)\n", a);
            return 2;
        } else if (strcmp(a, "--addr") == 0) {
            b.addr = v;
        } else if (strcmp(a, "--cluster-id") == 0) {
            b.cluster_id = v;
        } else if (strcmp(a, "--op") == 0) {
            if (strcmp(v, "put") == 0)
                b.op = OP_PUT;
            else if (strcmp(v, "get") == 0)
                b.op = OP_GET;
            else if (strcmp(v, "mixed") == 0)
                b.op = -1;
            else {
                fprintf(stderr, "shale-bench: --op is put, get or mixed, not '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--reads") == 0 && num(v, 0, 100, &d) == 0) {
            b.read_pct = (int)d;
        } else if (strcmp(a, "--conns") == 0 && num(v, 1, 10000, &d) == 0) {
            b.conns = (int)d;
        } else if (strcmp(a, "--pipeline") == 0 && num(v, 1, 100000, &d) == 0) {
            b.pipeline = (int)d;
        } else if (strcmp(a, "--requests") == 0 && num(v, 1, 1e15, &d) == 0) {
            b.requests = (uint64_t)d;
        } else if (strcmp(a, "--duration") == 0 && num(v, 0.001, 1e7, &d) == 0) {
            b.duration_s = d;
        } else if (strcmp(a, "--keys") == 0 && num(v, 1, 1e12, &d) == 0) {
            b.keys = (uint64_t)d;
        } else if (strcmp(a, "--value-size") == 0 && num(v, 0, 64 << 20, &d) == 0) {
            b.value_size = (size_t)d;
        } else if (strcmp(a, "--timeout") == 0 && num(v, 1, 4e9, &d) == 0) {
            b.timeout_ms = (uint32_t)d;
        } else if (strcmp(a, "--seed") == 0 && num(v, 1, 1e18, &d) == 0) {
            b.rng = (uint64_t)d;
        } else {
            fprintf(stderr, "shale-bench: bad option or value: %s %s (try --help)\n", a, v);
            return 2;
        }
        i++;
    }
    if (b.addr == NULL) {
        fprintf(stderr, "shale-bench: --addr is required (try --help)\n");
        return 2;
    }
    b.value = malloc(b.value_size ? b.value_size : 1);
    b.cl = calloc((size_t)b.conns, sizeof(*b.cl));
    if (b.value == NULL || b.cl == NULL) {
        fprintf(stderr, "shale-bench: out of memory\n");
        return 3;
    }
    for (size_t i = 0; i < b.value_size; i++)
        b.value[i] = (uint8_t)('a' + rnd(&b) % 26);

    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = b.timeout_ms;
    o.cluster_id = b.cluster_id;
    if ((uint32_t)b.pipeline > o.max_inflight)
        o.max_inflight = (uint32_t)b.pipeline;
    uv_loop_init(&b.loop);
    for (int i = 0; i < b.conns; i++) {
        b.cl[i].b = &b;
        b.cl[i].slots = calloc((size_t)b.pipeline, sizeof(bslot_t));
        int rv = b.cl[i].slots ? shale_client_open(&b.loop, b.addr, &o, &b.cl[i].c) : SHALE_ENOMEM;
        if (rv != SHALE_OK) {
            fprintf(stderr, "shale-bench: %s: %s\n", b.addr, shale_strerror(rv));
            return rv == SHALE_EINVAL ? 2 : 3;
        }
        for (int j = 0; j < b.pipeline; j++)
            b.cl[i].slots[j].cl = &b.cl[i];
    }
    printf("shale-bench: addr=%s op=%s conns=%d pipeline=%d keys=%" PRIu64 " value=%zuB ", b.addr,
           b.op == OP_PUT   ? "put"
           : b.op == OP_GET ? "get"
                            : "mixed",
           b.conns, b.pipeline, b.keys, b.value_size);
    if (b.duration_s > 0)
        printf("duration=%.1fs\n", b.duration_s);
    else
        printf("requests=%" PRIu64 "\n", b.requests);
    fflush(stdout);
    /* Warm-up: one GET per client establishes every connection. */
    b.phase = PH_WARMUP;
    b.t_start = uv_hrtime();
    for (int i = 0; i < b.conns; i++) {
        bslot_t *s = &b.cl[i].slots[0];
        s->req.data = s;
        s->t0 = uv_hrtime();
        if (shale_get_async(b.cl[i].c, &s->req, "warmup", 6, NULL, on_done) == SHALE_OK)
            b.inflight++;
    }
    if (b.inflight == 0)
        next_phase(&b);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    for (int i = 0; i < b.conns; i++)
        free(b.cl[i].slots);
    free(b.cl);
    free(b.value);
    if (b.setup_failed)
        return 3;
    return b.nerrors > 0 ? 1 : 0;
}
