/* shale-bench: a YCSB-style closed-loop load generator built on libshale's
 * async API.
 *
 * One libuv loop drives N clients (one connection each, spread round-robin
 * over the --addr list); every client keeps P requests in flight
 * (pipelining) and issues the next one as soon as one completes.
 *
 * Phases:
 *   connect  one GET per client, so connection set-up is not measured;
 *   load     (--load) PUT every key 0..K-1 once, so reads find data;
 *            measured and reported on its own;
 *   warmup   (--warmup S) the workload itself, not recorded;
 *   run      the workload, recorded, for --duration S (or --requests M).
 * Warm-up turns into the run without draining the pipelines; an operation
 * belongs to the phase in which it was issued.
 *
 * Workloads (YCSB core workloads): --mix write (100 % update), 50/50
 * (workload A), 95/5 (B), read (C), or any R/U summing to 100. Keys are
 * chosen uniformly or by YCSB's ScrambledZipfian (constant 0.99 over 10^10
 * items, FNV-1a 64-hashed onto the key space, so the hot keys are spread
 * over the key space and hence over slots).
 *
 * Latency is measured from submit to callback into a log-linear histogram
 * in nanoseconds: exact below 256 ns, then 128 buckets per power of two,
 * reported at the bucket's midpoint (error < 0.4 %).
 *
 * TLS: $SHALE_TLS_CA, $SHALE_TLS_CERT, $SHALE_TLS_KEY, as for shalectl.
 *
 * Errors never stop the run: they are counted per operation and per error
 * code. libshale reconnects a lost connection by itself (with backoff)
 * while requests wait; a request the library refuses at submit, or one
 * failed by a fatal connection verdict, parks its slot for 50 ms so a
 * broken peer is not hammered in a tight loop.
 *
 * Owns nothing but its own state; never bypasses the library. */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "auth.h"
#include "shale.h"

/* OP_TXN (--op txn2): one transaction putting two keys of one slot,
 * "{KEY}a" and "{KEY}b" (a hash tag), instead of an update. */
enum { OP_READ, OP_UPDATE, OP_TXN, NOPS };
static const char *const op_names[NOPS] = {"read", "update", "txn2"};

enum { PH_CONNECT, PH_LOAD, PH_WARMUP, PH_RUN, PH_DONE };
static const char *const phase_names[] = {"connect", "load", "warmup", "run", "done"};

enum { S_IDLE, S_BUSY, S_PARKED };

#define LOAD_TRIES 3 /* attempts per key in the load phase */
#define PARK_MS 50   /* pause of a slot after a submit refused at once */
#define MAX_ADDRS 64 /* --addr entries; each client gets at most 16 */
#define CLIENT_ADDRS 16

/* ---- Histogram (nanoseconds) ---------------------------------------------*/

#define H_SUB_BITS 7
#define H_SUB (1u << H_SUB_BITS) /* buckets per power of two */
#define H_LINEAR (2u * H_SUB)    /* values below are exact */
#define H_BUCKETS (H_LINEAR + (63u - H_SUB_BITS) * H_SUB)

typedef struct hist {
    uint64_t count[H_BUCKETS];
    uint64_t n, sum, min, max;
} hist_t;

static unsigned h_index(uint64_t v)
{
    if (v < H_LINEAR)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - H_SUB_BITS;
    return H_LINEAR + (shift - 1) * H_SUB + (unsigned)((v >> shift) - H_SUB);
}

/* Midpoint of a bucket. */
static uint64_t h_mid(unsigned idx)
{
    if (idx < H_LINEAR)
        return idx;
    unsigned shift = (idx - H_LINEAR) / H_SUB + 1;
    uint64_t lo = ((uint64_t)((idx - H_LINEAR) % H_SUB + H_SUB)) << shift;
    return lo + ((((uint64_t)1) << shift) - 1) / 2;
}

static void h_add(hist_t *h, uint64_t v)
{
    h->count[h_index(v)]++;
    if (h->n == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->n++;
    h->sum += v;
}

static void h_merge(hist_t *to, const hist_t *from)
{
    if (from->n == 0)
        return;
    for (unsigned i = 0; i < H_BUCKETS; i++)
        to->count[i] += from->count[i];
    if (to->n == 0 || from->min < to->min)
        to->min = from->min;
    if (from->max > to->max)
        to->max = from->max;
    to->n += from->n;
    to->sum += from->sum;
}

/* The value at or below which a fraction p of the samples lie. */
static uint64_t h_pct(const hist_t *h, double p)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(p * (double)h->n);
    if (rank < 1)
        rank = 1;
    if (rank >= h->n)
        return h->max;
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            uint64_t v = h_mid(i);
            return v < h->min ? h->min : v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ---- Error codes ----------------------------------------------------------*/

#define NERR 22 /* wire codes 1..15, local -100..-104, "unknown" */

static int err_index(int code)
{
    if (code < 0 && code >= -15)
        return -code;
    if (code <= -100 && code >= -104)
        return 16 + (-code - 100);
    return NERR - 1;
}

static int err_code(int idx)
{
    if (idx <= 15)
        return -idx;
    if (idx < NERR - 1)
        return -(idx - 16 + 100);
    return -999;
}

/* Short names: the wire ErrorCode names (proto/shale.proto), then the
 * local ones. */
static const char *err_name(int code)
{
    switch (code) {
    case SHALE_ENOTLEADER:
        return "NOT_LEADER";
    case SHALE_EWRONGGROUP:
        return "WRONG_GROUP";
    case SHALE_ETIMEOUT:
        return "TIMEOUT";
    case SHALE_EUNAVAILABLE:
        return "UNAVAILABLE";
    case SHALE_ETOOLARGE:
        return "TOO_LARGE";
    case SHALE_EINVAL:
        return "INVALID";
    case SHALE_ESTALE:
        return "STALE_TOO_OLD";
    case SHALE_ECASFAILED:
        return "CAS_FAILED";
    case SHALE_ENOTFOUND:
        return "NOT_FOUND";
    case SHALE_EPROTO:
        return "PROTOCOL";
    case SHALE_ECLUSTER:
        return "CLUSTER_MISMATCH";
    case SHALE_ESESSION:
        return "SESSION_EXPIRED";
    case SHALE_ESTORAGE:
        return "STORAGE";
    case SHALE_EOVERLOAD:
        return "OVERLOADED";
    case SHALE_ESLOTMOVING:
        return "SLOT_MOVING";
    case SHALE_ENOMEM:
        return "NOMEM";
    case SHALE_EIO:
        return "IO";
    case SHALE_ECLOSED:
        return "CLOSED";
    case SHALE_ECANCELED:
        return "CANCELED";
    case SHALE_ECORRUPT:
        return "CORRUPT";
    default:
        return "UNKNOWN";
    }
}

/* Failures where the peer is not usable at all: the library has already
 * failed every pending request, so re-issuing at once would only spin. */
static int err_is_fatal(int code)
{
    return code == SHALE_ECLUSTER || code == SHALE_EPROTO || code == SHALE_ENOMEM ||
           code == SHALE_EINVAL || code == SHALE_ETOOLARGE;
}

/* A connection probe that failed without any answer from a server. */
static int err_is_unreachable(int code)
{
    return code == SHALE_EIO || code == SHALE_ETIMEOUT || code == SHALE_ECLUSTER ||
           code == SHALE_EPROTO || code == SHALE_ENOMEM || code == SHALE_ECLOSED ||
           code == SHALE_ECANCELED;
}

/* ---- State ---------------------------------------------------------------*/

typedef struct bench bench_t;
typedef struct bclient bclient_t;

typedef struct opstats {
    hist_t h; /* latency of the operations that succeeded */
    uint64_t errors[NERR];
    uint64_t nerr;
    uint64_t notfound; /* reads answered "no such key" */
} opstats_t;

typedef struct bslot {
    shale_req_t req;
    bclient_t *cl;
    uint64_t t0, key;
    int op, phase, state;
    int tries; /* load: failed attempts on key so far */
} bslot_t;

struct bclient {
    bench_t *b;
    shale_client_t *c;
    bslot_t *slots;
    char *addr; /* this client's address list, its own first */
};

struct bench {
    /* options */
    char *addr_arg;
    char *addrs[MAX_ADDRS];
    int naddrs;
    const char *cluster_id;
    /* TLS (docs/security.md): flags, else $SHALE_TLS_CA etc. like shalectl */
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
    /* Login (--user/--password-file, else $SHALE_USER/$SHALE_PASSWORD_FILE) */
    const char *user, *password_file;
    char *password; /* malloc'd, wiped and freed by free_all */
    size_t password_len;
    int read_pct;
    int txn2; /* --op txn2: updates are 2-key transactions */
    int zipfian;
    uint64_t keys;
    size_t value_size;
    int conns, pipeline;
    double duration_s, warmup_s;
    uint64_t requests; /* 0: run for duration_s */
    int load;
    uint32_t stale_ms; /* 0: linearizable */
    uint32_t timeout_ms;
    int json, quiet;
    uint64_t seed;
    /* run */
    uv_loop_t loop;
    uv_timer_t tick, phase_timer, park_timer;
    uv_signal_t sigint;
    bclient_t *cl;
    uint8_t *value;
    uint64_t rng;
    shale_read_opts_t ro;
    int phase, stopping, interrupted, aborted, tty, progress_shown;
    uint64_t inflight, nparked;
    uint64_t t_phase, t_end; /* ns */
    uint64_t run_issued;
    uint64_t load_next, load_ok, load_lost;
    double load_secs, run_secs;
    uint64_t connected, unreachable;
    char connect_err[SHALE_ERRMSG_LEN + 64];
    /* progress */
    uint64_t done_all, last_done, last_tick;
    uint64_t phase_err, last_phase_err;
    /* results */
    opstats_t load_st, run_st[NOPS];
    char load_msg[NERR][SHALE_ERRMSG_LEN];
    char run_msg[NERR][SHALE_ERRMSG_LEN];
    /* zipfian (YCSB ZipfianGenerator over [0, 10^10]) */
    double z_items, z_zetan, z_theta, z_alpha, z_eta, z_half;
};

static uint64_t rnd(bench_t *b)
{
    /* xorshift64* */
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return b->rng * 2685821657736338717ull;
}

static double rnd_unit(bench_t *b)
{
    return (double)(rnd(b) >> 11) * 0x1.0p-53;
}

/* ---- Key choice ----------------------------------------------------------*/

/* YCSB's ScrambledZipfianGenerator: a zipfian (0.99) draw over 10^10 items
 * with the precomputed zeta, FNV-1a-64 hashed onto [0, keys). */
#define YCSB_ZIPF_ITEMS 10000000000.0
#define YCSB_ZIPF_THETA 0.99
#define YCSB_ZIPF_ZETAN 26.46902820178302

static void zipf_init(bench_t *b)
{
    b->z_items = YCSB_ZIPF_ITEMS + 1; /* YCSB: max - min + 1 with min 0 */
    b->z_theta = YCSB_ZIPF_THETA;
    b->z_zetan = YCSB_ZIPF_ZETAN;
    double zeta2 = 1.0 + pow(0.5, b->z_theta);
    b->z_alpha = 1.0 / (1.0 - b->z_theta);
    b->z_eta = (1.0 - pow(2.0 / b->z_items, 1.0 - b->z_theta)) / (1.0 - zeta2 / b->z_zetan);
    b->z_half = 1.0 + pow(0.5, b->z_theta);
}

static uint64_t zipf_next(bench_t *b)
{
    double u = rnd_unit(b);
    double uz = u * b->z_zetan;
    if (uz < 1.0)
        return 0;
    if (uz < b->z_half)
        return 1;
    return (uint64_t)(b->z_items * pow(b->z_eta * u - b->z_eta + 1.0, b->z_alpha));
}

/* YCSB Utils.fnvhash64: FNV-1a over the 8 bytes, low first, then abs(). */
static uint64_t fnvhash64(uint64_t v)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (int i = 0; i < 8; i++) {
        h ^= v & 0xff;
        v >>= 8;
        h *= 1099511628211ull;
    }
    if (h & (1ull << 63))
        h = ~h + 1; /* Java Math.abs on a long */
    return h & ~(1ull << 63);
}

static uint64_t next_key(bench_t *b)
{
    if (b->zipfian)
        return fnvhash64(zipf_next(b)) % b->keys;
    return rnd(b) % b->keys;
}

static int key_name(char *buf, size_t len, uint64_t k)
{
    return snprintf(buf, len, "user%012" PRIu64, k);
}

/* ---- Phases --------------------------------------------------------------*/

static void on_done(shale_req_t *req, int status);
static void next_phase(bench_t *b);
static void finish(bench_t *b);
static void show_progress(bench_t *b, uint64_t now);

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

/* Can the current phase issue another request (from slot s, if given)? */
static int want_more(bench_t *b, const bslot_t *s)
{
    switch (b->phase) {
    case PH_LOAD:
        return (s != NULL && s->tries > 0) || b->load_next < b->keys;
    case PH_WARMUP:
        return !b->stopping;
    case PH_RUN:
        if (b->stopping)
            return 0;
        return b->requests > 0 ? b->run_issued < b->requests : now_ns() < b->t_end;
    default:
        return 0;
    }
}

static void count_error(bench_t *b, const bslot_t *s, int status, const char *msg)
{
    opstats_t *st;
    char(*msgs)[SHALE_ERRMSG_LEN];
    if (s->phase == PH_LOAD) {
        st = &b->load_st;
        msgs = b->load_msg;
    } else if (s->phase == PH_RUN) {
        st = &b->run_st[s->op];
        msgs = b->run_msg;
    } else {
        return;
    }
    int i = err_index(status);
    st->errors[i]++;
    st->nerr++;
    snprintf(msgs[i], SHALE_ERRMSG_LEN, "%s", msg[0] ? msg : shale_strerror(status));
}

static void on_park_timer(uv_timer_t *t);

/* Rest the slot for PARK_MS: its request was refused before it reached a
 * server, or the peer is unusable; re-issuing at once would only spin. */
static void park(bench_t *b, bslot_t *s)
{
    s->state = S_PARKED;
    if (b->nparked++ == 0)
        uv_timer_start(&b->park_timer, on_park_timer, PARK_MS, PARK_MS);
}

static void load_failed(bench_t *b, bslot_t *s)
{
    if (++s->tries >= LOAD_TRIES) {
        s->tries = 0;
        b->load_lost++;
    }
}

/* Issue the slot's next request, or leave it idle when the phase is over. */
static void issue(bslot_t *s)
{
    bench_t *b = s->cl->b;
    char key[32];
    if (!want_more(b, s)) {
        s->state = S_IDLE;
        return;
    }
    s->phase = b->phase;
    switch (b->phase) {
    case PH_LOAD:
        if (s->tries == 0)
            s->key = b->load_next++;
        s->op = OP_UPDATE;
        break;
    default:
        s->key = next_key(b);
        s->op = b->read_pct >= 100                  ? OP_READ
                : b->read_pct <= 0                  ? OP_UPDATE
                : (int)(rnd(b) % 100) < b->read_pct ? OP_READ
                                                    : OP_UPDATE;
        if (b->phase == PH_RUN)
            b->run_issued++;
        break;
    }
    if (s->op == OP_UPDATE && b->txn2 && s->phase != PH_LOAD)
        s->op = OP_TXN;
    int n = key_name(key, sizeof(key), s->key);
    s->req.data = s;
    s->t0 = now_ns();
    int rv;
    if (s->op == OP_TXN) {
        /* Both keys share the tag, hence the slot: one Raft entry. */
        char ka[40], kb[40];
        int na = snprintf(ka, sizeof(ka), "{%s}a", key), nb = snprintf(kb, sizeof(kb), "{%s}b", key);
        shale_txn_op_t ops[2] = {
            {.type = SHALE_TXN_PUT, .key = ka, .klen = (size_t)na, .value = b->value,
             .vlen = b->value_size},
            {.type = SHALE_TXN_PUT, .key = kb, .klen = (size_t)nb, .value = b->value,
             .vlen = b->value_size},
        };
        shale_txn_t t = {.success = ops, .nsuccess = 2};
        rv = shale_txn_async(s->cl->c, &s->req, &t, on_done);
    } else {
        rv = s->op == OP_READ ? shale_get_async(s->cl->c, &s->req, key, (size_t)n, &b->ro, on_done)
                              : shale_put_async(s->cl->c, &s->req, key, (size_t)n, b->value,
                                                b->value_size, on_done);
    }
    if (rv != SHALE_OK) {
        /* Refused before anything was sent (no callback will come). */
        b->done_all++;
        if (s->phase == b->phase)
            b->phase_err++;
        count_error(b, s, rv, s->req.errmsg);
        if (s->phase == PH_LOAD)
            load_failed(b, s);
        park(b, s);
        return;
    }
    s->state = S_BUSY;
    b->inflight++;
}

static void check_done(bench_t *b)
{
    if (b->inflight != 0 || b->nparked != 0)
        return;
    switch (b->phase) {
    case PH_CONNECT:
        next_phase(b);
        return;
    case PH_LOAD:
    case PH_RUN:
        if (b->phase == PH_LOAD ? b->load_next >= b->keys : !want_more(b, NULL))
            next_phase(b);
        return;
    default:
        return;
    }
}

static void on_done(shale_req_t *req, int status)
{
    bslot_t *s = req->data;
    bench_t *b = s->cl->b;
    uint64_t ns = now_ns() - s->t0;
    s->state = S_IDLE;
    b->inflight--;
    if (b->phase == PH_DONE) {
        shale_req_cleanup(req);
        return;
    }
    b->done_all++;
    if (b->phase == PH_CONNECT) {
        if (err_is_unreachable(status)) {
            b->unreachable++;
            snprintf(b->connect_err, sizeof(b->connect_err), "%s: %s", err_name(status),
                     req->errmsg[0] ? req->errmsg : shale_strerror(status));
        } else {
            b->connected++;
        }
        shale_req_cleanup(req);
        check_done(b);
        return;
    }
    if (status != SHALE_OK && s->phase == b->phase)
        b->phase_err++;
    if (status == SHALE_OK) {
        if (s->phase == PH_LOAD) {
            h_add(&b->load_st.h, ns);
            b->load_ok++;
            s->tries = 0;
        } else if (s->phase == PH_RUN) {
            h_add(&b->run_st[s->op].h, ns);
            if (s->op == OP_READ && !req->value.found)
                b->run_st[OP_READ].notfound++;
        }
    } else {
        count_error(b, s, status, req->errmsg);
        if (s->phase == PH_LOAD)
            load_failed(b, s);
    }
    shale_req_cleanup(req);
    if (status != SHALE_OK && err_is_fatal(status)) {
        park(b, s);
    } else {
        issue(s);
    }
    check_done(b);
}

static void on_park_timer(uv_timer_t *t)
{
    bench_t *b = t->data;
    for (int i = 0; i < b->conns && b->nparked > 0; i++) {
        for (int j = 0; j < b->pipeline; j++) {
            bslot_t *s = &b->cl[i].slots[j];
            if (s->state != S_PARKED)
                continue;
            b->nparked--;
            s->state = S_IDLE;
            if (b->phase != PH_DONE)
                issue(s);
        }
    }
    if (b->nparked == 0)
        uv_timer_stop(t);
    check_done(b);
}

static void on_phase_timer(uv_timer_t *t);

static void start_phase(bench_t *b, int phase)
{
    uint64_t now = now_ns();
    b->phase = phase;
    b->t_phase = now;
    b->phase_err = b->last_phase_err = 0;
    b->stopping = 0;
    uv_timer_stop(&b->phase_timer);
    if (phase == PH_WARMUP || (phase == PH_RUN && b->requests == 0)) {
        double secs = phase == PH_WARMUP ? b->warmup_s : b->duration_s;
        uint64_t ms = (uint64_t)(secs * 1000.0 + 0.5);
        b->t_end = now + (uint64_t)(secs * 1e9);
        /* A wake-up at the end, even if every slot is parked. */
        uv_update_time(&b->loop);
        uv_timer_start(&b->phase_timer, on_phase_timer, ms, 0);
    }
    if (!b->quiet && b->tty)
        show_progress(b, now);
    for (int i = 0; i < b->conns; i++)
        for (int j = 0; j < b->pipeline; j++)
            if (b->cl[i].slots[j].state == S_IDLE)
                issue(&b->cl[i].slots[j]);
    check_done(b);
}

static void on_phase_timer(uv_timer_t *t)
{
    bench_t *b = t->data;
    if (b->phase == PH_WARMUP) {
        start_phase(b, PH_RUN);
    } else if (b->phase == PH_RUN) {
        b->stopping = 1;
        check_done(b);
    }
}

static void clear_progress(bench_t *b)
{
    if (b->tty && b->progress_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        b->progress_shown = 0;
    }
}

static void print_load(bench_t *b);

static void next_phase(bench_t *b)
{
    double secs = (double)(now_ns() - b->t_phase) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    switch (b->phase) {
    case PH_CONNECT:
        if (b->connected == 0) {
            clear_progress(b);
            fprintf(stderr, "shale-bench: cannot reach %s: %s\n", b->addr_arg, b->connect_err);
            finish(b);
            return;
        }
        if (b->unreachable > 0) {
            clear_progress(b);
            fprintf(stderr,
                    "shale-bench: warning: %" PRIu64 " of %d connections could not connect "
                    "(they keep retrying): %s\n",
                    b->unreachable, b->conns, b->connect_err);
        }
        if (b->load) {
            start_phase(b, PH_LOAD);
            return;
        }
        start_phase(b, b->warmup_s > 0 ? PH_WARMUP : PH_RUN);
        return;
    case PH_LOAD:
        b->load_secs = secs;
        if (!b->json) {
            clear_progress(b);
            print_load(b);
            fflush(stdout);
        }
        if (b->duration_s <= 0 && b->requests == 0) {
            finish(b);
            return;
        }
        start_phase(b, b->warmup_s > 0 ? PH_WARMUP : PH_RUN);
        return;
    case PH_RUN:
        b->run_secs = secs;
        finish(b);
        return;
    default:
        return;
    }
}

static void on_close_handle(uv_handle_t *h)
{
    (void)h;
}

static void finish(bench_t *b)
{
    if (b->phase == PH_DONE)
        return;
    b->phase = PH_DONE;
    clear_progress(b);
    for (int i = 0; i < b->conns; i++)
        if (b->cl[i].c != NULL)
            shale_client_close(b->cl[i].c, NULL);
    uv_close((uv_handle_t *)&b->tick, on_close_handle);
    uv_close((uv_handle_t *)&b->phase_timer, on_close_handle);
    uv_close((uv_handle_t *)&b->park_timer, on_close_handle);
    uv_close((uv_handle_t *)&b->sigint, on_close_handle);
}

static void on_sigint(uv_signal_t *h, int sig)
{
    (void)sig;
    bench_t *b = h->data;
    b->interrupted++;
    if (b->phase == PH_RUN && b->interrupted == 1) {
        /* Stop issuing, let what is in flight complete, report. */
        b->stopping = 1;
        uv_timer_stop(&b->phase_timer);
        check_done(b);
        return;
    }
    if (b->phase == PH_RUN)
        b->run_secs = (double)(now_ns() - b->t_phase) / 1e9;
    else
        b->aborted = 1;
    finish(b);
}

/* ---- Progress ------------------------------------------------------------*/

static void show_progress(bench_t *b, uint64_t now)
{
    char line[256];
    double el = (double)(now - b->t_phase) / 1e9;
    double dt = b->last_tick ? (double)(now - b->last_tick) / 1e9 : 0;
    double rate = dt > 0.05 ? (double)(b->done_all - b->last_done) / dt : 0;
    int n;
    switch (b->phase) {
    case PH_CONNECT:
        n = snprintf(line, sizeof(line), "connect %5.1fs  %" PRIu64 "/%d connections", el,
                     b->connected + b->unreachable, b->conns);
        break;
    case PH_LOAD:
        n = snprintf(line, sizeof(line),
                     "load    %5.1fs  %" PRIu64 "/%" PRIu64 " keys  %9.0f ops/s  errors %" PRIu64,
                     el, b->load_ok, b->keys, rate, b->phase_err);
        break;
    case PH_WARMUP:
    case PH_RUN:
        if (b->phase == PH_RUN && b->requests > 0)
            n = snprintf(line, sizeof(line), "%-7s %5.1fs  %" PRIu64 "/%" PRIu64 " requests",
                         phase_names[b->phase], el, b->run_issued, b->requests);
        else
            n = snprintf(line, sizeof(line), "%-7s %5.1fs/%gs", phase_names[b->phase], el,
                         b->phase == PH_RUN ? b->duration_s : b->warmup_s);
        snprintf(line + n, sizeof(line) - (size_t)n,
                 "  %9.0f ops/s  errors %" PRIu64 " (+%" PRIu64 ")%s", rate, b->phase_err,
                 b->phase_err - b->last_phase_err, b->stopping ? "  draining" : "");
        break;
    default:
        return;
    }
    if (b->tty) {
        fprintf(stderr, "\r%s\033[K", line);
        b->progress_shown = 1;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

static void on_tick(uv_timer_t *t)
{
    bench_t *b = t->data;
    uint64_t now = now_ns();
    if (!b->quiet)
        show_progress(b, now);
    b->last_tick = now;
    b->last_done = b->done_all;
    b->last_phase_err = b->phase_err;
}

/* ---- Report --------------------------------------------------------------*/

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void fmt_count(char *buf, size_t len, double v)
{
    /* Thousands separators without locale support. */
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%.0f", v < 0 ? 0 : v);
    size_t n = strlen(tmp), o = 0;
    for (size_t i = 0; i < n && o + 2 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
}

static void table_row(const char *name, const opstats_t *st, double secs)
{
    const hist_t *h = &st->h;
    char cnt[32], rate[32];
    fmt_count(cnt, sizeof(cnt), (double)h->n);
    fmt_count(rate, sizeof(rate), (double)h->n / secs);
    printf("%-8s %12s %10s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %8" PRIu64 "\n", name, cnt, rate,
           h->n ? ms(h->sum) / (double)h->n : 0.0, ms(h_pct(h, 0.50)), ms(h_pct(h, 0.95)),
           ms(h_pct(h, 0.99)), ms(h_pct(h, 0.999)), ms(h->max), st->nerr);
}

static void table_header(void)
{
    printf("%-8s %12s %10s %9s %9s %9s %9s %9s %9s %8s\n", "op", "count", "ops/s", "mean ms",
           "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "max ms", "errors");
}

static void print_error_list(const char *label, const opstats_t *st)
{
    if (st->nerr == 0)
        return;
    printf("  %s:", label);
    for (int i = 0; i < NERR; i++)
        if (st->errors[i])
            printf(" %s %" PRIu64, err_name(err_code(i)), st->errors[i]);
    printf("\n");
}

static void print_error_msgs(char msgs[NERR][SHALE_ERRMSG_LEN])
{
    for (int i = 0; i < NERR; i++)
        if (msgs[i][0])
            printf("    last %s: %s\n", err_name(err_code(i)), msgs[i]);
}

static void print_load(bench_t *b)
{
    double secs = b->load_secs > 0 ? b->load_secs : 1e-9;
    char rate[32];
    fmt_count(rate, sizeof(rate), (double)b->load_ok / secs);
    printf("load: %" PRIu64 " keys written in %.2f s: %s ops/s", b->load_ok, secs, rate);
    if (b->load_st.h.n)
        printf(", p50 %.3f ms, p99 %.3f ms, max %.3f ms", ms(h_pct(&b->load_st.h, 0.50)),
               ms(h_pct(&b->load_st.h, 0.99)), ms(b->load_st.h.max));
    printf(", errors %" PRIu64 "\n", b->load_st.nerr);
    if (b->load_lost)
        printf("  %" PRIu64 " keys not written after %d attempts each\n", b->load_lost, LOAD_TRIES);
    print_error_list("load errors", &b->load_st);
    print_error_msgs(b->load_msg);
}

static void mix_label(const bench_t *b, char *buf, size_t len)
{
    if (b->read_pct >= 100)
        snprintf(buf, len, "read");
    else if (b->read_pct <= 0)
        snprintf(buf, len, "write");
    else
        snprintf(buf, len, "%d/%d", b->read_pct, 100 - b->read_pct);
}

static void print_config(const bench_t *b)
{
    char mix[16];
    mix_label(b, mix, sizeof(mix));
    printf("shale-bench: mix %s (%d%% read, %d%% update), %s keys over %" PRIu64
           ", %zu B values, %d conns x pipeline %d, %d address%s, reads %s",
           mix, b->read_pct, 100 - b->read_pct, b->zipfian ? "zipfian" : "uniform", b->keys,
           b->value_size, b->conns, b->pipeline, b->naddrs, b->naddrs == 1 ? "" : "es",
           b->stale_ms ? "stale" : "linearizable");
    if (b->stale_ms)
        printf("(%u ms)", b->stale_ms);
    if (b->load)
        printf(", load first");
    if (b->warmup_s > 0)
        printf(", warmup %g s", b->warmup_s);
    if (b->requests > 0)
        printf(", %" PRIu64 " requests\n", b->requests);
    else if (b->duration_s > 0)
        printf(", run %g s\n", b->duration_s);
    else
        printf(", no run\n");
}

static void print_table(bench_t *b)
{
    double secs = b->run_secs > 0 ? b->run_secs : 1e-9;
    opstats_t tot;
    memset(&tot, 0, sizeof(tot));
    for (int o = 0; o < NOPS; o++) {
        h_merge(&tot.h, &b->run_st[o].h);
        tot.nerr += b->run_st[o].nerr;
        for (int i = 0; i < NERR; i++)
            tot.errors[i] += b->run_st[o].errors[i];
    }
    printf("run: %.2f s%s\n", secs, b->interrupted ? " (interrupted)" : "");
    table_header();
    for (int o = 0; o < NOPS; o++)
        if (b->run_st[o].h.n || b->run_st[o].nerr)
            table_row(op_names[o], &b->run_st[o], secs);
    table_row("total", &tot, secs);
    if (tot.nerr) {
        printf("errors:\n");
        for (int o = 0; o < NOPS; o++)
            print_error_list(op_names[o], &b->run_st[o]);
        print_error_msgs(b->run_msg);
    }
    if (b->run_st[OP_READ].notfound)
        printf("reads that found no key: %" PRIu64 "%s\n", b->run_st[OP_READ].notfound,
               b->load ? "" : " (--load writes every key first)");
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void json_ops(const opstats_t *st, double secs)
{
    const hist_t *h = &st->h;
    printf("{\"count\":%" PRIu64 ",\"ops_per_sec\":%.1f,\"latency_ms\":{\"mean\":%.4f,"
           "\"p50\":%.4f,\"p95\":%.4f,\"p99\":%.4f,\"p99_9\":%.4f,\"max\":%.4f},"
           "\"error_count\":%" PRIu64 ",\"errors\":{",
           h->n, (double)h->n / secs, h->n ? ms(h->sum) / (double)h->n : 0.0, ms(h_pct(h, 0.50)),
           ms(h_pct(h, 0.95)), ms(h_pct(h, 0.99)), ms(h_pct(h, 0.999)), ms(h->max), st->nerr);
    int first = 1;
    for (int i = 0; i < NERR; i++) {
        if (!st->errors[i])
            continue;
        printf("%s\"%s\":%" PRIu64, first ? "" : ",", err_name(err_code(i)), st->errors[i]);
        first = 0;
    }
    printf("}");
}

static void json_msgs(char msgs[NERR][SHALE_ERRMSG_LEN])
{
    printf("{");
    int first = 1;
    for (int i = 0; i < NERR; i++) {
        if (!msgs[i][0])
            continue;
        printf("%s\"%s\":", first ? "" : ",", err_name(err_code(i)));
        json_str(msgs[i]);
        first = 0;
    }
    printf("}");
}

static void print_json(bench_t *b)
{
    char mix[16];
    mix_label(b, mix, sizeof(mix));
    printf("{\"config\":{\"addr\":[");
    for (int i = 0; i < b->naddrs; i++) {
        if (i)
            putchar(',');
        json_str(b->addrs[i]);
    }
    printf("],\"mix\":\"%s\",\"read_pct\":%d,\"dist\":\"%s\",\"keys\":%" PRIu64
           ",\"value_size\":%zu,\"conns\":%d,\"pipeline\":%d,\"duration_s\":%g,\"warmup_s\":%g,"
           "\"requests\":%" PRIu64 ",\"load\":%s,\"consistency\":\"%s\",\"stale_ms\":%u,"
           "\"timeout_ms\":%u}",
           mix, b->read_pct, b->zipfian ? "zipfian" : "uniform", b->keys, b->value_size, b->conns,
           b->pipeline, b->duration_s, b->warmup_s, b->requests, b->load ? "true" : "false",
           b->stale_ms ? "stale" : "linearizable", b->stale_ms, b->timeout_ms);
    if (b->load) {
        double secs = b->load_secs > 0 ? b->load_secs : 1e-9;
        printf(",\"load\":{\"seconds\":%.3f,\"keys_not_written\":%" PRIu64 ",\"update\":", secs,
               b->load_lost);
        json_ops(&b->load_st, secs);
        printf("},\"error_messages\":");
        json_msgs(b->load_msg);
        printf("}");
    }
    if (b->duration_s > 0 || b->requests > 0) {
        double secs = b->run_secs > 0 ? b->run_secs : 1e-9;
        opstats_t tot;
        memset(&tot, 0, sizeof(tot));
        printf(",\"run\":{\"seconds\":%.3f,\"interrupted\":%s", secs,
               b->interrupted ? "true" : "false");
        for (int o = 0; o < NOPS; o++) {
            printf(",\"%s\":", op_names[o]);
            json_ops(&b->run_st[o], secs);
            if (o == OP_READ)
                printf(",\"not_found\":%" PRIu64, b->run_st[o].notfound);
            printf("}");
            h_merge(&tot.h, &b->run_st[o].h);
            tot.nerr += b->run_st[o].nerr;
            for (int i = 0; i < NERR; i++)
                tot.errors[i] += b->run_st[o].errors[i];
        }
        printf(",\"total\":");
        json_ops(&tot, secs);
        printf("},\"error_messages\":");
        json_msgs(b->run_msg);
        printf("}");
    }
    printf("}\n");
}

/* ---- Command line --------------------------------------------------------*/

static void usage(FILE *f)
{
    fprintf(f, "usage: shale-bench --addr HOST:PORT[,HOST:PORT...] [options]\n"
               "\n"
               "A YCSB-style closed-loop benchmark: each connection keeps --pipeline\n"
               "requests in flight and issues the next as one completes.\n"
               "\n"
               "workload:\n"
               "  --mix MIX          write (100%% update), 50/50 (YCSB A), 95/5 (YCSB B),\n"
               "                     read (YCSB C), or any READ/UPDATE percentages summing\n"
               "                     to 100 (default write)\n"
               "  --workload A|B|C   YCSB core workload: same as --mix 50/50, 95/5, read\n"
               "  --op put|get|mixed old names: write, read, 50/50 (or --reads PCT)\n"
               "  --op txn2          each write is a transaction putting two keys of one\n"
               "                     slot, {KEY}a and {KEY}b (compare with --op put: the\n"
               "                     txn2 rate x 2 is the keys written per second)\n"
               "  --reads PCT        percentage of reads (same as --mix PCT/100-PCT)\n"
               "  --dist D           key choice: zipfian (YCSB scrambled, 0.99; default)\n"
               "                     or uniform\n"
               "  --keys K           key space user000000000000.. (default 100000)\n"
               "  --value-size B     bytes per written value (default 100)\n"
               "  --stale MS         reads at STALE(MS) consistency (default linearizable)\n"
               "\n"
               "load:\n"
               "  --addr LIST        comma-separated routers or nodes; connections are\n"
               "                     spread round-robin, the rest of the list is failover\n"
               "  --conns N          connections, one libshale client each (default 4)\n"
               "  --pipeline P       requests in flight per connection (default 16)\n"
               "  --load             first write every key once (reported separately)\n"
               "  --warmup S         run the workload S seconds unrecorded first (default 0)\n"
               "  --duration S       measured run in seconds (default 10; 0 with --load:\n"
               "                     load only)\n"
               "  --requests M       stop the measured run after M requests instead\n"
               "  --timeout MS       per-request deadline (default 5000)\n"
               "  --cluster-id ID    expected cluster id\n"
               "  --seed N           random seed for key and operation choice (default 1)\n"
               "  --tls-ca F, --tls-cert F, --tls-key F, --tls-server-name N\n"
               "                     TLS as in shalectl (else $SHALE_TLS_CA, _CERT, _KEY,\n"
               "                     _SERVER_NAME; docs/security.md)\n"
               "  --user NAME --password-file F\n"
               "                     log in (servers started with --auth; else $SHALE_USER,\n"
               "                     $SHALE_PASSWORD_FILE)\n"
               "\n"
               "output:\n"
               "  --json             one JSON object on stdout instead of the table\n"
               "  --quiet            no progress line on stderr\n"
               "  -h, --help         this text\n"
               "\n"
               "Progress goes to stderr once a second (one self-overwriting line on a\n"
               "terminal). Errors never stop the run; they are counted per operation and\n"
               "error code. Ctrl-C during the run stops it early and reports.\n"
               "exit status: 0 ok, 1 some requests failed, 2 usage, 3 cannot connect,\n"
               "130 interrupted before the run\n");
}

static int num(const char *s, double lo, double hi, double *out)
{
    char *end;
    if (s == NULL || *s == '\0')
        return -1;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static int integer(const char *s, double lo, double hi, double *out)
{
    if (num(s, lo, hi, out) != 0 || *out != floor(*out))
        return -1;
    return 0;
}

static int parse_mix(const char *v, int *read_pct)
{
    if (strcmp(v, "write") == 0 || strcmp(v, "update") == 0 || strcmp(v, "put") == 0) {
        *read_pct = 0;
        return 0;
    }
    if (strcmp(v, "read") == 0 || strcmp(v, "get") == 0) {
        *read_pct = 100;
        return 0;
    }
    unsigned r, u;
    char extra;
    if (sscanf(v, "%3u/%3u%c", &r, &u, &extra) == 2 && r + u == 100) {
        *read_pct = (int)r;
        return 0;
    }
    return -1;
}

static int host_port_ok(const char *a)
{
    size_t n = strlen(a);
    if (n == 0 || n >= 128)
        return 0;
    const char *colon = strrchr(a, ':');
    if (colon == NULL || colon == a || colon[1] == '\0')
        return 0;
    if (a[0] == '[' ? colon[-1] != ']' || colon - a < 3
                    : memchr(a, ':', (size_t)(colon - a)) != NULL)
        return 0;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    long port = strtol(colon + 1, NULL, 10);
    return port >= 1 && port <= 65535 && strlen(colon + 1) <= 5;
}

static int parse_addrs(bench_t *b, const char *v)
{
    b->addr_arg = strdup(v);
    if (b->addr_arg == NULL)
        return -1;
    char *p = b->addr_arg;
    for (;;) {
        char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (b->naddrs == MAX_ADDRS) {
            fprintf(stderr, "shale-bench: --addr: at most %d addresses\n", MAX_ADDRS);
            return -1;
        }
        char *one = strndup(p, n);
        if (one == NULL)
            return -1;
        b->addrs[b->naddrs++] = one;
        if (!host_port_ok(one)) {
            fprintf(stderr,
                    "shale-bench: --addr: bad address '%s' (want host:port or [v6]:port, "
                    "comma-separated)\n",
                    one);
            return -1;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
}

/* Client i's address list: the list rotated to start at entry i mod n. */
static char *client_addrs(const bench_t *b, int i)
{
    int n = b->naddrs < CLIENT_ADDRS ? b->naddrs : CLIENT_ADDRS;
    size_t len = 1;
    for (int k = 0; k < n; k++)
        len += strlen(b->addrs[(i + k) % b->naddrs]) + 1;
    char *s = malloc(len), *o = s;
    if (s == NULL)
        return NULL;
    for (int k = 0; k < n; k++)
        o += sprintf(o, "%s%s", k ? "," : "", b->addrs[(i + k) % b->naddrs]);
    return s;
}

static void free_all(bench_t *b)
{
    if (b->password != NULL)
        explicit_bzero(b->password, b->password_len);
    free(b->password);
    b->password = NULL;
    if (b->cl != NULL)
        for (int i = 0; i < b->conns; i++) {
            free(b->cl[i].slots);
            free(b->cl[i].addr);
        }
    free(b->cl);
    free(b->value);
    for (int i = 0; i < b->naddrs; i++)
        free(b->addrs[i]);
    free(b->addr_arg);
}

static int usage_error(bench_t *b, const char *fmt, const char *a, const char *v)
{
    fprintf(stderr, "shale-bench: ");
    fprintf(stderr, fmt, a, v ? v : "");
    fprintf(stderr, " (try --help)\n");
    free_all(b);
    return 2;
}

int main(int argc, char **argv)
{
    static bench_t b;
    signal(SIGPIPE, SIG_IGN); /* an async libuv program's own choice */
    b.read_pct = 0;
    b.zipfian = 1;
    b.conns = 4;
    b.pipeline = 16;
    b.keys = 100000;
    b.value_size = 100;
    b.duration_s = 10;
    b.timeout_ms = 5000;
    b.seed = 1;
    int duration_set = 0, reads_set = 0, mixed_op = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            free_all(&b);
            return 0;
        } else if (strcmp(a, "--load") == 0) {
            b.load = 1;
            continue;
        } else if (strcmp(a, "--json") == 0) {
            b.json = 1;
            continue;
        } else if (strcmp(a, "--quiet") == 0) {
            b.quiet = 1;
            continue;
        } else if (strncmp(a, "--", 2) != 0) {
            return usage_error(&b, "unexpected argument '%s'%s", a, NULL);
        }
        static const char *const with_value[] = {
            "--addr",   "--cluster-id", "--mix",        "--workload", "--op",    "--reads",
            "--dist",   "--keys",       "--value-size", "--stale",    "--conns", "--pipeline",
            "--warmup", "--duration",   "--requests",   "--timeout",  "--seed",
            "--tls-ca", "--tls-cert",   "--tls-key",    "--tls-server-name", "--user",
            "--password-file", NULL};
        int known = 0;
        for (int k = 0; with_value[k]; k++)
            known |= strcmp(a, with_value[k]) == 0;
        if (!known)
            return usage_error(&b, "unknown option '%s'%s", a, NULL);
        if (v == NULL)
            return usage_error(&b, "%s needs a value%s", a, NULL);
        i++;
        if (strcmp(a, "--addr") == 0) {
            if (b.addr_arg != NULL)
                return usage_error(&b, "%s given twice%s", a, NULL);
            if (parse_addrs(&b, v) != 0) {
                free_all(&b);
                return 2;
            }
        } else if (strcmp(a, "--cluster-id") == 0) {
            b.cluster_id = v;
        } else if (strcmp(a, "--user") == 0) {
            b.user = v;
        } else if (strcmp(a, "--password-file") == 0) {
            b.password_file = v;
        } else if (strcmp(a, "--tls-ca") == 0) {
            b.tls_ca = v;
        } else if (strcmp(a, "--tls-cert") == 0) {
            b.tls_cert = v;
        } else if (strcmp(a, "--tls-key") == 0) {
            b.tls_key = v;
        } else if (strcmp(a, "--tls-server-name") == 0) {
            b.tls_server_name = v;
        } else if (strcmp(a, "--mix") == 0) {
            if (parse_mix(v, &b.read_pct) != 0)
                return usage_error(&b,
                                   "%s: want write, read, 50/50, 95/5 or READ/UPDATE "
                                   "percentages summing to 100, not '%s'",
                                   a, v);
            reads_set = 1;
        } else if (strcmp(a, "--workload") == 0) {
            if (strcasecmp(v, "a") == 0)
                b.read_pct = 50;
            else if (strcasecmp(v, "b") == 0)
                b.read_pct = 95;
            else if (strcasecmp(v, "c") == 0)
                b.read_pct = 100;
            else
                return usage_error(&b, "%s: want A, B or C, not '%s'", a, v);
            reads_set = 1;
        } else if (strcmp(a, "--op") == 0) {
            if (strcmp(v, "put") == 0)
                b.read_pct = 0;
            else if (strcmp(v, "get") == 0)
                b.read_pct = 100;
            else if (strcmp(v, "mixed") == 0)
                mixed_op = 1;
            else if (strcmp(v, "txn2") == 0)
                b.txn2 = 1, b.read_pct = 0;
            else
                return usage_error(&b, "%s: want put, get, mixed or txn2, not '%s'", a, v);
        } else if (strcmp(a, "--reads") == 0) {
            if (integer(v, 0, 100, &d) != 0)
                return usage_error(&b, "%s: want a percentage 0..100, not '%s'", a, v);
            b.read_pct = (int)d;
            reads_set = 1;
        } else if (strcmp(a, "--dist") == 0) {
            if (strcmp(v, "zipfian") == 0 || strcmp(v, "zipf") == 0)
                b.zipfian = 1;
            else if (strcmp(v, "uniform") == 0)
                b.zipfian = 0;
            else
                return usage_error(&b, "%s: want uniform or zipfian, not '%s'", a, v);
        } else if (strcmp(a, "--keys") == 0) {
            if (integer(v, 1, 1e15, &d) != 0)
                return usage_error(&b, "%s: want a key count >= 1, not '%s'", a, v);
            b.keys = (uint64_t)d;
        } else if (strcmp(a, "--value-size") == 0) {
            if (integer(v, 0, 64 << 20, &d) != 0)
                return usage_error(&b, "%s: want bytes 0..67108864, not '%s'", a, v);
            b.value_size = (size_t)d;
        } else if (strcmp(a, "--stale") == 0) {
            if (integer(v, 1, 4294967295.0, &d) != 0)
                return usage_error(&b, "%s: want a positive number of milliseconds, not '%s'", a,
                                   v);
            b.stale_ms = (uint32_t)d;
        } else if (strcmp(a, "--conns") == 0) {
            if (integer(v, 1, 10000, &d) != 0)
                return usage_error(&b, "%s: want 1..10000, not '%s'", a, v);
            b.conns = (int)d;
        } else if (strcmp(a, "--pipeline") == 0) {
            if (integer(v, 1, 100000, &d) != 0)
                return usage_error(&b, "%s: want 1..100000, not '%s'", a, v);
            b.pipeline = (int)d;
        } else if (strcmp(a, "--warmup") == 0) {
            if (num(v, 0, 1e6, &d) != 0)
                return usage_error(&b, "%s: want seconds >= 0, not '%s'", a, v);
            b.warmup_s = d;
        } else if (strcmp(a, "--duration") == 0) {
            if (num(v, 0, 1e7, &d) != 0)
                return usage_error(&b, "%s: want seconds >= 0, not '%s'", a, v);
            b.duration_s = d;
            duration_set = 1;
        } else if (strcmp(a, "--requests") == 0) {
            if (integer(v, 1, 1e15, &d) != 0)
                return usage_error(&b, "%s: want a request count >= 1, not '%s'", a, v);
            b.requests = (uint64_t)d;
        } else if (strcmp(a, "--timeout") == 0) {
            if (integer(v, 1, 4294967295.0, &d) != 0)
                return usage_error(&b, "%s: want milliseconds >= 1, not '%s'", a, v);
            b.timeout_ms = (uint32_t)d;
        } else if (strcmp(a, "--seed") == 0) {
            if (integer(v, 1, 1e18, &d) != 0)
                return usage_error(&b, "%s: want an integer >= 1, not '%s'", a, v);
            b.seed = (uint64_t)d;
        }
    }
    if (mixed_op && !reads_set)
        b.read_pct = 50;
    if (b.addr_arg == NULL)
        return usage_error(&b, "--addr is required%s%s", "", NULL);
    if (b.requests > 0 && duration_set)
        return usage_error(&b, "give --duration or --requests, not both%s%s", "", NULL);
    if (b.requests > 0)
        b.duration_s = 0;
    if (b.requests == 0 && b.duration_s <= 0 && !b.load)
        return usage_error(&b, "--duration 0 only makes sense with --load (load only)%s%s", "",
                           NULL);

    b.rng = b.seed * 0x9E3779B97F4A7C15ull;
    if (b.rng == 0)
        b.rng = 1;
    zipf_init(&b);
    b.ro.consistency = b.stale_ms ? SHALE_STALE : SHALE_LINEARIZABLE;
    b.ro.max_staleness_ms = b.stale_ms;
    b.tty = isatty(STDERR_FILENO);
    b.value = malloc(b.value_size ? b.value_size : 1);
    b.cl = calloc((size_t)b.conns, sizeof(*b.cl));
    if (b.value == NULL || b.cl == NULL) {
        fprintf(stderr, "shale-bench: out of memory\n");
        free_all(&b);
        return 3;
    }
    for (size_t i = 0; i < b.value_size; i++)
        b.value[i] = (uint8_t)('a' + rnd(&b) % 26);

    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = b.timeout_ms;
    o.cluster_id = b.cluster_id;
    o.tls_ca = b.tls_ca ? b.tls_ca : getenv("SHALE_TLS_CA");
    o.tls_cert = b.tls_cert ? b.tls_cert : getenv("SHALE_TLS_CERT");
    o.tls_key = b.tls_key ? b.tls_key : getenv("SHALE_TLS_KEY");
    o.tls_server_name = b.tls_server_name ? b.tls_server_name : getenv("SHALE_TLS_SERVER_NAME");
    if (b.user == NULL && getenv("SHALE_USER") != NULL && getenv("SHALE_USER")[0] != '\0')
        b.user = getenv("SHALE_USER");
    if (b.password_file == NULL && getenv("SHALE_PASSWORD_FILE") != NULL &&
        getenv("SHALE_PASSWORD_FILE")[0] != '\0')
        b.password_file = getenv("SHALE_PASSWORD_FILE");
    if ((b.user != NULL) != (b.password_file != NULL)) {
        fprintf(stderr, "shale-bench: --user and --password-file go together\n");
        free_all(&b);
        return 2;
    }
    if (b.user != NULL) {
        /* The password is the file's first line (as shalectl reads it). */
        char perr[256];
        if (auth_password_file_read(b.password_file, &b.password, &b.password_len, perr,
                                    sizeof(perr)) != 0) {
            fprintf(stderr, "shale-bench: --password-file: %s\n", perr);
            free_all(&b);
            return 2;
        }
        o.user = b.user;
        o.password = b.password;
        o.password_len = b.password_len;
    }
    if ((uint32_t)b.pipeline > o.max_inflight)
        o.max_inflight = (uint32_t)b.pipeline;
    uv_loop_init(&b.loop);
    int rc = 0;
    for (int i = 0; i < b.conns && rc == 0; i++) {
        bclient_t *cl = &b.cl[i];
        cl->b = &b;
        cl->slots = calloc((size_t)b.pipeline, sizeof(bslot_t));
        cl->addr = client_addrs(&b, i);
        int rv =
            cl->slots && cl->addr ? shale_client_open(&b.loop, cl->addr, &o, &cl->c) : SHALE_ENOMEM;
        if (rv != SHALE_OK) {
            fprintf(stderr, "shale-bench: --addr %s: %s\n", b.addr_arg, shale_strerror(rv));
            rc = rv == SHALE_EINVAL ? 2 : 3;
            break;
        }
        for (int j = 0; j < b.pipeline; j++)
            cl->slots[j].cl = cl;
    }
    if (rc != 0) {
        for (int i = 0; i < b.conns; i++)
            if (b.cl[i].c != NULL)
                shale_client_close(b.cl[i].c, NULL);
        uv_run(&b.loop, UV_RUN_DEFAULT);
        uv_loop_close(&b.loop);
        free_all(&b);
        return rc;
    }
    uv_timer_init(&b.loop, &b.tick);
    uv_timer_init(&b.loop, &b.phase_timer);
    uv_timer_init(&b.loop, &b.park_timer);
    uv_signal_init(&b.loop, &b.sigint);
    b.tick.data = b.phase_timer.data = b.park_timer.data = b.sigint.data = &b;
    uv_timer_start(&b.tick, on_tick, 1000, 1000);
    uv_signal_start(&b.sigint, on_sigint, SIGINT);

    if (!b.json) {
        print_config(&b);
        fflush(stdout);
    }
    /* Connect: one GET per client establishes every connection. */
    b.phase = PH_CONNECT;
    b.t_phase = b.last_tick = now_ns();
    for (int i = 0; i < b.conns; i++) {
        bslot_t *s = &b.cl[i].slots[0];
        s->req.data = s;
        s->phase = PH_CONNECT;
        s->t0 = now_ns();
        if (shale_get_async(b.cl[i].c, &s->req, "shale-bench-probe", 17, &b.ro, on_done) ==
            SHALE_OK) {
            s->state = S_BUSY;
            b.inflight++;
        } else {
            b.unreachable++;
            snprintf(b.connect_err, sizeof(b.connect_err), "%s", s->req.errmsg);
        }
    }
    check_done(&b);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);

    if (b.aborted) {
        fprintf(stderr, "shale-bench: interrupted\n");
        rc = 130;
    } else if (b.connected == 0) {
        rc = 3;
    } else {
        uint64_t nerr = b.load_st.nerr;
        for (int o2 = 0; o2 < NOPS; o2++)
            nerr += b.run_st[o2].nerr;
        if (b.json)
            print_json(&b);
        else if (b.duration_s > 0 || b.requests > 0)
            print_table(&b);
        fflush(stdout);
        rc = nerr > 0 ? 1 : 0;
    }
    free_all(&b);
    return rc;
}
