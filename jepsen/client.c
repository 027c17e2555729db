/* jepsen-client: the workload side of the fault harness (docs/jepsen.md,
 * "The runner"). jepsen/run starts it inside the test's network namespace.
 *
 *   jepsen-client now
 *       print CLOCK_MONOTONIC in microseconds (the runner stamps its nemesis
 *       log with it, so faults and ops share one clock)
 *   jepsen-client run   --routers A,B --workload W --history FILE
 *                       [--time S] [--procs N] [--keys K] [--seed N] [--timeout-ms MS]
 *                       [--readers R] [--unsafe-stale-reads MS] [SECURITY]
 *       N concurrent processes (threads, one libshale client each, listing
 *       every router) for S seconds; every op is appended to FILE as an
 *       invoke and a completion (JSON lines, flushed per line).
 *       W: register (read/write/CAS), set (unique adds), counter
 *       (increments by CAS with retries, and reads), stale (writes,
 *       linearizable reads and STALE(b) reads), bank (--keys accounts
 *       under one hash tag; transfers and reads of every balance, each one
 *       transaction; the total must never change).
 *       --readers R (register): processes 0..R-1 only read, through router
 *       1 first; the others list router 1 last (so it forwards reads only).
 *       --unsafe-stale-reads MS (register): a deliberately broken client
 *       for testing the harness: reads are STALE(MS), served by any member,
 *       but recorded as linearizable reads — the check must say INVALID.
 *   jepsen-client final --routers A,B --workload W --history FILE
 *                       [--keys K] [--timeout-ms MS] [SECURITY]
 *       the final reads after healing, appended to FILE
 *   SECURITY: [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]
 *             [--user NAME --password-file FILE]
 *       TLS to the routers (the cluster CA; a client certificate for
 *       routers that require one) and the user every connection logs in as
 *       (docs/security.md; the password is the file's first line). jepsen/run
 *       passes them unless --insecure. A worker that cannot connect at the
 *       start (a refused credential or certificate included), or a request
 *       refused as UNAUTHENTICATED or PERMISSION_DENIED, fails run and
 *       final with exit 3 (a setup error) instead of leaving a history
 *       without its ops or of refusals.
 *   jepsen-client check --history FILE --workload W
 *                       [--nemesis-log FILE] [--timeout S]
 *       verdict, offending sub-history, summary, per-phase availability and
 *       latency. Exit 0 valid, 1 invalid, 2 unknown, 3 usage/I/O error.
 *
 * Outcomes: ok = the answer; fail = a clear refusal that certainly did not
 * apply (a CAS that found another value; an increment whose CASes all found
 * other values; a read that got an error); info = anything else on a write,
 * CAS or increment (timeout, connection loss, unavailable: it may have been
 * applied) and a timed-out read. After an info op the thread continues as a
 * new process (process id + N), as in Jepsen. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "checker.h"
#include "history.h"
#include "shale.h"
#include "shale_errors.h"

#define FINAL_PROC_BASE 1000000

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* ---- options ---------------------------------------------------------------- */

typedef struct {
    const char *routers;
    const char *workload;
    const char *history;
    const char *nemesis_log;
    double time_s;
    int procs;
    int keys;
    uint64_t seed;
    uint32_t timeout_ms;
    double check_timeout_s;
    uint32_t unsafe_stale_ms; /* > 0: reads are STALE(ms) but recorded as linearizable */
    int readers;              /* register: processes that only read, through router 1 */
    const char *tls_ca, *tls_cert, *tls_key; /* NULL: plain TCP */
    const char *user, *password_file;        /* NULL: no login */
    char *password;                          /* the file's first line (malloc'd, wiped) */
    size_t password_len;
} opts_t;

static int usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "jepsen-client: %s\n", msg);
    fprintf(stderr,
            "usage: jepsen-client now\n"
            "       jepsen-client run --routers A,B --workload W --history FILE\n"
            "                     [--time S] [--procs N] [--keys K] [--seed N] [--timeout-ms MS]\n"
            "                     [--readers R] [--unsafe-stale-reads MS] [SECURITY]\n"
            "       jepsen-client final --routers A,B --workload W --history FILE\n"
            "                     [--keys K] [--timeout-ms MS] [SECURITY]\n"
            "       jepsen-client check --history FILE --workload W\n"
            "                     [--nemesis-log FILE] [--timeout S]\n"
            "W: register | set | counter | stale | bank\n"
            "SECURITY: [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]\n"
            "          [--user NAME --password-file FILE]\n");
    return 3;
}

/* ---- the history file ------------------------------------------------------- */

static FILE *g_hist;
static pthread_mutex_t g_hist_mu = PTHREAD_MUTEX_INITIALIZER;

/* One event line. value/expect: JSON text or NULL (absent); bound_ms: a
 * stale_read's bound, or -1 (absent). */
static void emit_b(int64_t proc, const char *type, const char *f, const char *key,
                   const char *value, const char *expect, int64_t bound_ms, int64_t t)
{
    pthread_mutex_lock(&g_hist_mu);
    fprintf(g_hist, "{\"process\":%" PRId64 ",\"type\":\"%s\",\"f\":\"%s\",\"key\":\"%s\"", proc,
            type, f, key);
    if (expect)
        fprintf(g_hist, ",\"expect\":%s", expect);
    if (value)
        fprintf(g_hist, ",\"value\":%s", value);
    if (bound_ms >= 0)
        fprintf(g_hist, ",\"bound_ms\":%" PRId64, bound_ms);
    fprintf(g_hist, ",\"time_us\":%" PRId64 "}\n", t);
    fflush(g_hist);
    pthread_mutex_unlock(&g_hist_mu);
}

static void emit(int64_t proc, const char *type, const char *f, const char *key, const char *value,
                 const char *expect, int64_t t)
{
    emit_b(proc, type, f, key, value, expect, -1, t);
}

/* A read's data as JSON: digits stay an integer, anything else a string
 * (with no escaping needed for what the workloads write; other bytes are
 * replaced, which can only make a read differ from every write). */
static void data_json(const uint8_t *d, size_t len, char *out, size_t cap)
{
    int digits = len > 0 && len < 19;
    for (size_t i = 0; i < len && digits; i++)
        digits = d[i] >= '0' && d[i] <= '9';
    if (digits && !(len > 1 && d[0] == '0')) {
        memcpy(out, d, len);
        out[len] = 0;
        return;
    }
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len && o + 3 < cap; i++)
        out[o++] = (d[i] >= 0x20 && d[i] < 0x7f && d[i] != '"' && d[i] != '\\') ? (char)d[i] : '?';
    out[o++] = '"';
    out[o] = 0;
}

/* Worker i lists the routers rotated by i, so the load (and the damage of a
 * router fault) is spread over them. */
static void rotate_list(const char *list, int by, char *out, size_t cap)
{
    char tmp[1024];
    const char *parts[16];
    int n = 0;
    snprintf(tmp, sizeof(tmp), "%s", list);
    for (char *save = NULL, *p = strtok_r(tmp, ",", &save); p && n < 16;
         p = strtok_r(NULL, ",", &save))
        parts[n++] = p;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s", i ? "," : "", parts[(i + by) % n]);
    }
}

/* A client of routers with op's timeout, TLS and user, retried (200 ms
 * apart) until until_us while the routers do not answer. A refused
 * credential, a failed TLS handshake or an unreadable TLS file is not
 * retried: it will not get better. */
static shale_client_t *connect_retry(const opts_t *op, const char *routers, int64_t until_us)
{
    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = op->timeout_ms;
    o.connect_timeout_ms = 1000;
    o.stall_ms = op->timeout_ms < 2000 ? 2000 : op->timeout_ms;
    o.tls_ca = op->tls_ca;
    o.tls_cert = op->tls_cert;
    o.tls_key = op->tls_key;
    o.user = op->user;
    o.password = op->password;
    o.password_len = op->password_len;
    for (;;) {
        shale_client_t *c = NULL;
        char err[SHALE_ERRMSG_LEN] = "";
        int rc = shale_connect(routers, &o, &c, err);
        if (rc == SHALE_OK)
            return c;
        if (rc == SHALE_EAUTH || rc == SHALE_EPROTO || rc == SHALE_EINVAL || mono_us() > until_us) {
            fprintf(stderr, "jepsen-client: cannot connect to %s: %s %s\n", routers,
                    shale_strerror(rc), err);
            return NULL;
        }
        sleep_ms(200);
    }
}

/* A refused credential (SHALE_EAUTH) or a role that forbids a workload
 * verb (SHALE_EPERM) is a setup error — jepsen/run gives the workload a
 * readwrite user, and no fault removes it — not a result: the first is
 * kept for the message, every worker stops, and run and final exit 3
 * rather than leaving a history of refusals. Returns rc. */
static atomic_int g_refused;
static char g_refused_msg[SHALE_ERRMSG_LEN + 64];
static int note_refused(shale_client_t *c, int rc)
{
    int expected = 0;
    if ((rc == SHALE_EAUTH || rc == SHALE_EPERM) &&
        atomic_compare_exchange_strong(&g_refused, &expected, 1))
        snprintf(g_refused_msg, sizeof(g_refused_msg), "%s: %s", shale_strerror(rc),
                 shale_errmsg(c));
    return rc;
}

static int refused(void)
{
    if (!atomic_load(&g_refused))
        return 0;
    fprintf(stderr, "jepsen-client: the cluster refused the workload's requests (%s)\n",
            g_refused_msg);
    return 1;
}

/* ---- run ---------------------------------------------------------------------- */

typedef struct {
    const opts_t *o;
    int tid;
    int64_t end_us;
    uint64_t rng;
    long ops;
    int no_client; /* it never connected: no op of it is in the history */
} worker_t;

/* Worker w's client: the routers rotated by its id, retried until its end. */
static shale_client_t *worker_connect(worker_t *w)
{
    char routers[1024];
    rotate_list(w->o->routers, w->tid, routers, sizeof(routers));
    shale_client_t *c = connect_retry(w->o, routers, w->end_us);
    w->no_client = c == NULL;
    return c;
}

static uint64_t rnd(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* One recorded read of key: LINEARIZABLE, recorded as "read"; or, with
 * stale_ms > 0, STALE(stale_ms), recorded as a "stale_read" with that
 * bound; or, with unsafe_ms > 0 (--unsafe-stale-reads), STALE(unsafe_ms)
 * recorded as a linearizable "read" (the broken client). Returns the
 * outcome: "ok" (*got = the value's JSON text, "null" when absent),
 * "info" (timed out) or "fail" (any other error: a read changes nothing,
 * so the difference only matters to the availability figures). */
static const char *read_op(shale_client_t *c, int64_t proc, const char *key, uint32_t stale_ms,
                           uint32_t unsafe_ms, char *got, size_t cap)
{
    const char *f = stale_ms ? "stale_read" : "read";
    int64_t bound = stale_ms ? (int64_t)stale_ms : -1;
    shale_read_opts_t ro = {SHALE_LINEARIZABLE, 0};
    if (stale_ms)
        ro = (shale_read_opts_t){SHALE_STALE, stale_ms};
    else if (unsafe_ms)
        ro = (shale_read_opts_t){SHALE_STALE, unsafe_ms};
    emit_b(proc, "invoke", f, key, NULL, NULL, bound, mono_us());
    shale_value_t out = {0};
    int rc = note_refused(c, shale_get(c, key, strlen(key), &ro, &out));
    int64_t t = mono_us();
    const char *type;
    if (rc == SHALE_OK || rc == SHALE_ENOTFOUND) {
        if (rc == SHALE_OK && out.found)
            data_json(out.data, out.len, got, cap);
        else
            snprintf(got, cap, "null");
        emit_b(proc, "ok", f, key, got, NULL, bound, t);
        type = "ok";
    } else {
        type = rc == SHALE_ETIMEOUT ? "info" : "fail";
        emit_b(proc, type, f, key, NULL, NULL, bound, t);
    }
    shale_value_free(&out);
    return type;
}

/* One recorded PUT of a unique value: ok, or info on any error (the write
 * may have applied: libshale and the router re-send a mutation with its
 * session, so even a "refusal" can follow an attempt that landed). */
static const char *write_op(shale_client_t *c, int64_t proc, const char *key, const char *val)
{
    emit(proc, "invoke", "write", key, val, NULL, mono_us());
    int rc = note_refused(c, shale_put(c, key, strlen(key), val, strlen(val), NULL));
    const char *type = rc == SHALE_OK ? "ok" : "info";
    emit(proc, type, "write", key, val, NULL, mono_us());
    return type;
}

/* After an op: a new process id after an info op (the old one may still
 * be in flight, as in Jepsen); a short rest after a fail, so a refusing
 * cluster is not spun on. */
static void after_op(worker_t *w, int64_t *proc, const char *type)
{
    w->ops++;
    if (!strcmp(type, "info"))
        *proc += w->o->procs;
    else if (strcmp(type, "ok"))
        sleep_ms(10);
}

static void *register_worker(void *arg)
{
    worker_t *w = arg;
    const opts_t *o = w->o;
    int64_t proc = w->tid;
    uint64_t counter = 0;
    int64_t *last = calloc((size_t)o->keys, sizeof(*last)); /* last value seen per key; 0 = null */
    char routers[1024];
    /* --readers R: processes 0..R-1 only read and list router 1 first; the
     * others list it last, so router 1 forwards reads only. A router learns
     * of a new leader only from a failure, and reads answered by a deposed
     * leader that (wrongly) keeps answering never fail: this is the setup
     * in which such reads reach it (docs/jepsen.md, "The broken build"). */
    int reader = w->tid < o->readers;
    const char *rest = strchr(o->routers, ',');
    if (o->readers == 0 || !rest) {
        rotate_list(o->routers, w->tid, routers, sizeof(routers));
    } else if (reader) {
        snprintf(routers, sizeof(routers), "%s", o->routers);
    } else { /* the other routers rotated, then router 1 */
        char first[256];
        size_t n = (size_t)(rest - o->routers);
        n = n < sizeof(first) - 1 ? n : sizeof(first) - 1;
        memcpy(first, o->routers, n);
        first[n] = 0;
        rotate_list(rest + 1, w->tid, routers, sizeof(routers));
        size_t l = strlen(routers);
        snprintf(routers + l, sizeof(routers) - l, ",%s", first);
    }
    shale_client_t *c = connect_retry(o, routers, w->end_us);
    w->no_client = c == NULL;
    if (!c || !last) {
        free(last);
        if (c)
            shale_close(c);
        return NULL;
    }
    while (mono_us() < w->end_us && !atomic_load(&g_refused)) {
        int k = (int)(rnd(&w->rng) % (uint64_t)o->keys);
        char key[32];
        snprintf(key, sizeof(key), "r%d", k);
        unsigned r = (unsigned)(rnd(&w->rng) % 100);
        char val[64], exp[64], got[128];
        int64_t v = (int64_t)(++counter * (uint64_t)o->procs + (uint64_t)w->tid + 1);
        snprintf(val, sizeof(val), "%" PRId64, v);
        const char *type;
        if (r < 50 || reader) { /* read */
            type = read_op(c, proc, key, 0, o->unsafe_stale_ms, got, sizeof(got));
            if (!strcmp(type, "ok"))
                last[k] = strcmp(got, "null") ? strtoll(got, NULL, 10) : 0;
        } else if (r < 75) { /* write */
            type = write_op(c, proc, key, val);
            if (!strcmp(type, "ok"))
                last[k] = v;
        } else { /* cas from the last value this process saw */
            shale_cas_expect_t ex = {0};
            if (last[k]) {
                snprintf(exp, sizeof(exp), "%" PRId64, last[k]);
                ex.kind = SHALE_CAS_VALUE;
                ex.value = exp;
                ex.len = strlen(exp);
            } else {
                strcpy(exp, "null");
                ex.kind = SHALE_CAS_ABSENT;
            }
            emit(proc, "invoke", "cas", key, val, exp, mono_us());
            shale_value_t cur = {0};
            int rc = note_refused(
                c, shale_cas(c, key, strlen(key), &ex, val, strlen(val), 0, NULL, &cur));
            int64_t t = mono_us();
            if (rc == SHALE_OK) {
                type = "ok";
                last[k] = v;
            } else if (rc == SHALE_ECASFAILED) {
                type = "fail";
                if (cur.found) {
                    data_json(cur.data, cur.len, got, sizeof(got));
                    last[k] = strtoll(got, NULL, 10);
                } else {
                    last[k] = 0;
                }
            } else {
                type = "info";
            }
            emit(proc, type, "cas", key, val, exp, t);
            shale_value_free(&cur);
        }
        after_op(w, &proc, type);
    }
    shale_close(c);
    free(last);
    return NULL;
}

/* counter: one increment is read, then CAS old -> old+1, re-tried from the
 * current value each CAS_FAILED returns (up to 30 CASes). Outcome:
 *  - ok: a CAS applied;
 *  - fail: certainly not applied — the read failed before any CAS was
 *    sent, or every CAS sent was refused with CAS_FAILED (a CAS that found
 *    another value applied nothing);
 *  - info: a CAS ended with any other error (timeout, lost connection,
 *    unavailable): it may have applied, so it is not re-tried — retrying
 *    an unknown CAS from a fresh read could count the increment twice. */
static const char *counter_incr(shale_client_t *c, const char *key, uint64_t *rng)
{
    shale_read_opts_t ro = {SHALE_LINEARIZABLE, 0};
    shale_value_t cur = {0};
    int rc = note_refused(c, shale_get(c, key, strlen(key), &ro, &cur));
    if (rc != SHALE_OK && rc != SHALE_ENOTFOUND) {
        shale_value_free(&cur);
        return "fail";
    }
    for (int attempt = 0; attempt < 30; attempt++) {
        char exp[32] = "", nv[32];
        shale_cas_expect_t ex = {.kind = SHALE_CAS_ABSENT};
        int64_t v = 0;
        if (cur.found) {
            size_t n = cur.len < sizeof(exp) - 1 ? cur.len : sizeof(exp) - 1;
            memcpy(exp, cur.data, n);
            exp[n] = 0;
            v = strtoll(exp, NULL, 10);
            ex = (shale_cas_expect_t){.kind = SHALE_CAS_VALUE, .value = cur.data, .len = cur.len};
        }
        snprintf(nv, sizeof(nv), "%" PRId64, v + 1);
        shale_value_t now = {0};
        rc = note_refused(c, shale_cas(c, key, strlen(key), &ex, nv, strlen(nv), 0, NULL, &now));
        shale_value_free(&cur);
        cur = now;
        if (rc == SHALE_OK) {
            shale_value_free(&cur);
            return "ok";
        }
        if (rc != SHALE_ECASFAILED) {
            shale_value_free(&cur);
            return "info";
        }
        if (attempt >= 3) /* heavy contention: spread the retries */
            sleep_ms((int)(rnd(rng) % 4));
    }
    shale_value_free(&cur);
    return "fail";
}

static void *counter_worker(void *arg)
{
    worker_t *w = arg;
    const opts_t *o = w->o;
    int64_t proc = w->tid;
    shale_client_t *c = worker_connect(w);
    if (!c)
        return NULL;
    while (mono_us() < w->end_us && !atomic_load(&g_refused)) {
        char key[32], got[128];
        snprintf(key, sizeof(key), "c%d", (int)(rnd(&w->rng) % (uint64_t)o->keys));
        const char *type;
        if (rnd(&w->rng) % 100 < 25) {
            type = read_op(c, proc, key, 0, 0, got, sizeof(got));
        } else {
            emit(proc, "invoke", "incr", key, "1", NULL, mono_us());
            type = counter_incr(c, key, &w->rng);
            emit(proc, type, "incr", key, "1", NULL, mono_us());
        }
        after_op(w, &proc, type);
    }
    shale_close(c);
    return NULL;
}

/* stale: unique-value writes and linearizable reads of registers r0..,
 * and STALE(b) reads with b drawn from STALE_BOUNDS (through the routers:
 * served by followers first). */
static const uint32_t STALE_BOUNDS[] = {100, 500, 2000};

static void *stale_worker(void *arg)
{
    worker_t *w = arg;
    const opts_t *o = w->o;
    int64_t proc = w->tid;
    uint64_t counter = 0;
    shale_client_t *c = worker_connect(w);
    if (!c)
        return NULL;
    while (mono_us() < w->end_us && !atomic_load(&g_refused)) {
        char key[32], val[32], got[128];
        snprintf(key, sizeof(key), "r%d", (int)(rnd(&w->rng) % (uint64_t)o->keys));
        unsigned r = (unsigned)(rnd(&w->rng) % 100);
        const char *type;
        if (r < 30) {
            snprintf(val, sizeof(val), "%" PRIu64,
                     ++counter * (uint64_t)o->procs + (uint64_t)w->tid + 1);
            type = write_op(c, proc, key, val);
        } else if (r < 45) {
            type = read_op(c, proc, key, 0, 0, got, sizeof(got));
        } else {
            uint32_t b =
                STALE_BOUNDS[rnd(&w->rng) % (sizeof(STALE_BOUNDS) / sizeof(STALE_BOUNDS[0]))];
            type = read_op(c, proc, key, b, 0, got, sizeof(got));
        }
        after_op(w, &proc, type);
    }
    shale_close(c);
    return NULL;
}

/* set: "add E to set sJ" is PUT sJ:E = E (one key per element, so adds never
 * contend); the final read of sJ reads every element ever attempted. */
static void *set_worker(void *arg)
{
    worker_t *w = arg;
    const opts_t *o = w->o;
    int64_t proc = w->tid;
    uint64_t counter = 0;
    shale_client_t *c = worker_connect(w);
    if (!c)
        return NULL;
    while (mono_us() < w->end_us && !atomic_load(&g_refused)) {
        int k = (int)(rnd(&w->rng) % (uint64_t)o->keys);
        char key[32], pkey[64], val[32];
        snprintf(key, sizeof(key), "s%d", k);
        uint64_t e = ++counter * (uint64_t)o->procs + (uint64_t)w->tid + 1;
        snprintf(val, sizeof(val), "%" PRIu64, e);
        snprintf(pkey, sizeof(pkey), "s%d:%" PRIu64, k, e);
        emit(proc, "invoke", "add", key, val, NULL, mono_us());
        int rc = note_refused(c, shale_put(c, pkey, strlen(pkey), val, strlen(val), NULL));
        int64_t t = mono_us();
        emit(proc, rc == SHALE_OK ? "ok" : "info", "add", key, val, NULL, t);
        w->ops++;
        if (rc != SHALE_OK)
            proc += o->procs;
    }
    shale_close(c);
    return NULL;
}

/* bank: o->keys accounts {bank}a0.. under one hash tag (one slot), each
 * opened at JEP_BANK_START by cmd_run. A process reads every balance and
 * version with one get-only transaction, then (75 %) moves a random amount
 * between two accounts with a transaction comparing both versions, or (25
 * %) records that read as a read of "bank" (the array of balances). A
 * transfer is ok when its compares held, fail when they did not or its
 * read failed (nothing applied), info otherwise (it may have applied). */
static const char *bank_key(int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "{bank}a%d", i);
    return buf;
}

/* The balances and versions (n accounts), in one get-only txn. */
static int bank_read(shale_client_t *c, int n, int64_t *bal, uint64_t *ver)
{
    shale_txn_op_t gets[SHALE_TXN_MAX_OPS];
    char keys[SHALE_TXN_MAX_OPS][32];
    for (int i = 0; i < n; i++) {
        bank_key(i, keys[i], sizeof(keys[i]));
        gets[i] = (shale_txn_op_t){.type = SHALE_TXN_GET, .key = keys[i], .klen = strlen(keys[i])};
    }
    shale_txn_t t = {NULL, 0, gets, (size_t)n, NULL, 0};
    shale_item_result_t *res = NULL;
    size_t nres = 0;
    int ok = 0;
    int rc = shale_txn(c, &t, &ok, &res, &nres);
    if (rc == SHALE_OK && nres != (size_t)n)
        rc = SHALE_EPROTO;
    for (int i = 0; rc == SHALE_OK && i < n; i++) {
        char v[32];
        size_t l = res[i].len < sizeof(v) - 1 ? res[i].len : sizeof(v) - 1;
        memcpy(v, res[i].data ? (const char *)res[i].data : "", l);
        v[l] = 0;
        bal[i] = res[i].found ? strtoll(v, NULL, 10) : -1;
        ver[i] = res[i].version;
    }
    shale_item_results_free(res, nres);
    free(res);
    return rc;
}

static void bank_json(const int64_t *bal, int n, char *out, size_t cap)
{
    size_t o = 0;
    o += (size_t)snprintf(out + o, cap - o, "[");
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%" PRId64, i ? "," : "", bal[i]);
    if (o < cap)
        snprintf(out + o, cap - o, "]");
}

/* One recorded read of every account; type into *type. */
static const char *bank_read_op(shale_client_t *c, int64_t proc, int n)
{
    int64_t bal[SHALE_TXN_MAX_OPS];
    uint64_t ver[SHALE_TXN_MAX_OPS];
    char got[SHALE_TXN_MAX_OPS * 24 + 8];
    emit(proc, "invoke", "read", "bank", NULL, NULL, mono_us());
    int rc = bank_read(c, n, bal, ver);
    int64_t t = mono_us();
    if (rc != SHALE_OK) {
        emit(proc, rc == SHALE_ETIMEOUT ? "info" : "fail", "read", "bank", NULL, NULL, t);
        return rc == SHALE_ETIMEOUT ? "info" : "fail";
    }
    bank_json(bal, n, got, sizeof(got));
    emit(proc, "ok", "read", "bank", got, NULL, t);
    return "ok";
}

static void *bank_worker(void *arg)
{
    worker_t *w = arg;
    const opts_t *o = w->o;
    int64_t proc = w->tid;
    int n = o->keys;
    shale_client_t *c = worker_connect(w);
    if (!c)
        return NULL;
    while (mono_us() < w->end_us) {
        const char *type;
        if (rnd(&w->rng) % 100 < 25) {
            type = bank_read_op(c, proc, n);
            after_op(w, &proc, type);
            continue;
        }
        int a = (int)(rnd(&w->rng) % (uint64_t)n), b = (int)(rnd(&w->rng) % (uint64_t)(n - 1));
        b = b >= a ? b + 1 : b;
        int64_t amt = 1 + (int64_t)(rnd(&w->rng) % 20);
        char val[96];
        snprintf(val, sizeof(val), "[%d,%d,%" PRId64 "]", a, b, amt);
        emit(proc, "invoke", "transfer", "bank", val, NULL, mono_us());
        int64_t bal[SHALE_TXN_MAX_OPS];
        uint64_t ver[SHALE_TXN_MAX_OPS];
        int rc = bank_read(c, n, bal, ver);
        if (rc != SHALE_OK || bal[a] < amt) {
            /* Nothing sent that writes: certainly not applied. */
            emit(proc, "fail", "transfer", "bank", val, NULL, mono_us());
            after_op(w, &proc, "fail");
            continue;
        }
        char ka[32], kb[32], va[32], vb[32];
        bank_key(a, ka, sizeof(ka));
        bank_key(b, kb, sizeof(kb));
        snprintf(va, sizeof(va), "%" PRId64, bal[a] - amt);
        snprintf(vb, sizeof(vb), "%" PRId64, bal[b] + amt);
        shale_txn_compare_t cmp[2] = {
            {.key = ka, .klen = strlen(ka), .target = SHALE_TXN_VERSION, .cmp = SHALE_TXN_EQUAL,
             .version = ver[a]},
            {.key = kb, .klen = strlen(kb), .target = SHALE_TXN_VERSION, .cmp = SHALE_TXN_EQUAL,
             .version = ver[b]},
        };
        shale_txn_op_t puts[2] = {
            {.type = SHALE_TXN_PUT, .key = ka, .klen = strlen(ka), .value = va, .vlen = strlen(va)},
            {.type = SHALE_TXN_PUT,
             .key = kb,
             .klen = strlen(kb),
             .value = vb,
             .vlen = strlen(vb)}};
        shale_txn_t t = {cmp, 2, puts, 2, NULL, 0};
        int ok = 0;
        rc = shale_txn(c, &t, &ok, NULL, NULL);
        type = rc != SHALE_OK ? "info" : ok ? "ok" : "fail";
        emit(proc, type, "transfer", "bank", val, NULL, mono_us());
        after_op(w, &proc, type);
    }
    shale_close(c);
    return NULL;
}

/* Open the accounts (only if {bank}a0 is absent): 0, or -1. */
static int bank_open(const opts_t *o)
{
    shale_client_t *c = connect_retry(o, o->routers, mono_us() + 30000000);
    if (!c)
        return -1;
    char keys[SHALE_TXN_MAX_OPS][32], start[16];
    shale_txn_op_t puts[SHALE_TXN_MAX_OPS];
    snprintf(start, sizeof(start), "%d", JEP_BANK_START);
    for (int i = 0; i < o->keys; i++) {
        bank_key(i, keys[i], sizeof(keys[i]));
        puts[i] = (shale_txn_op_t){.type = SHALE_TXN_PUT,
                                   .key = keys[i],
                                   .klen = strlen(keys[i]),
                                   .value = start,
                                   .vlen = strlen(start)};
    }
    shale_txn_compare_t absent = {.key = keys[0], .klen = strlen(keys[0]),
                                  .target = SHALE_TXN_EXISTS, .cmp = SHALE_TXN_EQUAL,
                                  .exists = 0};
    shale_txn_t t = {&absent, 1, puts, (size_t)o->keys, NULL, 0};
    int rc = SHALE_EUNAVAILABLE;
    for (int attempt = 0; attempt < 60 && rc != SHALE_OK; attempt++) {
        rc = shale_txn(c, &t, NULL, NULL, NULL);
        if (rc != SHALE_OK)
            sleep_ms(500);
    }
    if (rc != SHALE_OK)
        fprintf(stderr, "jepsen-client: cannot open the bank's accounts: %s\n", shale_errmsg(c));
    shale_close(c);
    return rc == SHALE_OK ? 0 : -1;
}

static int open_history(const char *path)
{
    g_hist = fopen(path, "a");
    if (!g_hist) {
        fprintf(stderr, "jepsen-client: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int cmd_run(const opts_t *o)
{
    if (!o->routers || !o->history || !o->workload)
        return usage("run needs --routers, --history and --workload");
    void *(*fn)(void *) = !strcmp(o->workload, "register")  ? register_worker
                          : !strcmp(o->workload, "set")     ? set_worker
                          : !strcmp(o->workload, "counter") ? counter_worker
                          : !strcmp(o->workload, "stale")   ? stale_worker
                          : !strcmp(o->workload, "bank")    ? bank_worker
                                                            : NULL;
    if (!fn)
        return usage("unknown workload");
    if (fn == bank_worker && (o->keys < 2 || o->keys > SHALE_TXN_MAX_OPS))
        return usage("bank needs 2..128 accounts (--keys)");
    if (fn == bank_worker && bank_open(o) != 0)
        return 3;
    if (open_history(o->history))
        return 3;
    worker_t *w = calloc((size_t)o->procs, sizeof(*w));
    pthread_t *th = calloc((size_t)o->procs, sizeof(*th));
    if (!w || !th)
        return 3;
    int64_t end = mono_us() + (int64_t)(o->time_s * 1e6);
    for (int i = 0; i < o->procs; i++) {
        w[i] = (worker_t){.o = o, .tid = i, .end_us = end, .rng = o->seed * 1000003ULL + (uint64_t)i};
        pthread_create(&th[i], NULL, fn, &w[i]);
    }
    long total = 0;
    int unconnected = 0;
    for (int i = 0; i < o->procs; i++) {
        pthread_join(th[i], NULL);
        total += w[i].ops;
        unconnected += w[i].no_client;
    }
    fclose(g_hist);
    printf("jepsen-client: %d processes, %ld ops in %.0f s\n", o->procs, total, o->time_s);
    free(w);
    free(th);
    if (refused())
        return 3;
    if (unconnected) {
        /* The cluster served both routers before the run: a process that
         * never got a client is a setup error (a refused credential, a TLS
         * mismatch), not a result. */
        fprintf(stderr, "jepsen-client: %d of %d processes could not connect\n", unconnected,
                o->procs);
        return 3;
    }
    return 0;
}

/* ---- final reads ------------------------------------------------------------------ */

/* The final linearizable read of every key PREFIX0.. (registers: r,
 * counters: c). */
static int final_register(const opts_t *o, shale_client_t *c, const char *prefix)
{
    int bad = 0;
    for (int k = 0; k < o->keys; k++) {
        char key[32], got[128];
        snprintf(key, sizeof(key), "%s%d", prefix, k);
        int64_t proc = FINAL_PROC_BASE + k;
        int done = 0;
        for (int attempt = 0; attempt < 5 && !done && !atomic_load(&g_refused); attempt++) {
            emit(proc, "invoke", "read", key, NULL, NULL, mono_us());
            shale_read_opts_t ro = {SHALE_LINEARIZABLE, 0};
            shale_value_t out = {0};
            int rc = note_refused(c, shale_get(c, key, strlen(key), &ro, &out));
            int64_t t = mono_us();
            if (rc == SHALE_OK || rc == SHALE_ENOTFOUND) {
                if (rc == SHALE_OK && out.found)
                    data_json(out.data, out.len, got, sizeof(got));
                else
                    strcpy(got, "null");
                emit(proc, "ok", "read", key, got, NULL, t);
                printf("final read %s = %s\n", key, got);
                done = 1;
            } else {
                emit(proc, rc == SHALE_ETIMEOUT ? "info" : "fail", "read", key, NULL, NULL, t);
                proc += 1000;
                sleep_ms(500);
            }
            shale_value_free(&out);
        }
        bad += !done;
    }
    return bad;
}

typedef struct {
    char **v;
    size_t n, cap;
} strvec;

static int final_set(const opts_t *o, shale_client_t *c)
{
    char err[512];
    jep_history *h;
    if (jep_history_read_file(o->history, &h, err, sizeof(err))) {
        fprintf(stderr, "jepsen-client: %s\n", err);
        return -1;
    }
    int bad = 0;
    for (int k = 0; k < o->keys; k++) {
        char key[32];
        snprintf(key, sizeof(key), "s%d", k);
        strvec el = {0};
        for (size_t i = 0; i < h->n; i++) {
            const jep_event *e = &h->ev[i];
            if (e->type != JEP_INVOKE || e->f != JEP_ADD || strcmp(e->key, key) ||
                e->value.kind != JEP_V_SCALAR)
                continue;
            if (el.n == el.cap) {
                el.cap = el.cap ? el.cap * 2 : 256;
                el.v = realloc(el.v, el.cap * sizeof(*el.v));
            }
            el.v[el.n++] = e->value.text;
        }
        int64_t proc = FINAL_PROC_BASE + k;
        int done = 0;
        for (int attempt = 0; attempt < 5 && !done && !atomic_load(&g_refused); attempt++) {
            jep_buf arr = {0};
            jep_buf_printf(&arr, "[");
            int first = 1, failed = 0, rc = 0;
            size_t found = 0;
            emit(proc, "invoke", "read", key, NULL, NULL, mono_us());
            for (size_t i = 0; i < el.n && !failed; i += 256) {
                size_t m = el.n - i < 256 ? el.n - i : 256;
                shale_item_t items[256];
                shale_item_result_t res[256];
                char pk[256][64];
                for (size_t j = 0; j < m; j++) {
                    snprintf(pk[j], sizeof(pk[j]), "%s:%s", key, el.v[i + j]);
                    items[j] = (shale_item_t){.key = pk[j], .klen = strlen(pk[j])};
                }
                shale_read_opts_t ro = {SHALE_LINEARIZABLE, 0};
                rc = note_refused(c, shale_mget(c, items, m, &ro, res));
                if (rc != SHALE_OK) {
                    failed = 1;
                    break;
                }
                for (size_t j = 0; j < m; j++) {
                    if (res[j].status == SHALE_OK && res[j].found) {
                        char got[128];
                        data_json(res[j].data, res[j].len, got, sizeof(got));
                        jep_buf_printf(&arr, "%s%s", first ? "" : ",", got);
                        first = 0;
                        found++;
                    } else if (res[j].status != SHALE_OK && res[j].status != SHALE_ENOTFOUND) {
                        failed = 1;
                        rc = res[j].status;
                    }
                }
                shale_item_results_free(res, m);
            }
            jep_buf_printf(&arr, "]");
            int64_t t = mono_us();
            if (!failed) {
                emit(proc, "ok", "read", key, arr.s, NULL, t);
                printf("final read %s: %zu of %zu attempted elements present\n", key, found, el.n);
                done = 1;
            } else {
                emit(proc, rc == SHALE_ETIMEOUT ? "info" : "fail", "read", key, NULL, NULL, t);
                fprintf(stderr, "final read %s failed: %s\n", key, shale_strerror(rc));
                proc += 1000;
                sleep_ms(500);
            }
            jep_buf_free(&arr);
        }
        bad += !done;
        free(el.v);
    }
    jep_history_free(h);
    return bad;
}

static int cmd_final(const opts_t *o)
{
    if (!o->routers || !o->history || !o->workload)
        return usage("final needs --routers, --history and --workload");
    int set = !strcmp(o->workload, "set"), counter = !strcmp(o->workload, "counter");
    int bank = !strcmp(o->workload, "bank");
    if (!set && !counter && !bank && strcmp(o->workload, "register") &&
        strcmp(o->workload, "stale"))
        return usage("unknown workload");
    shale_client_t *c = connect_retry(o, o->routers, mono_us() + 20000000);
    if (!c)
        return 3;
    if (open_history(o->history)) {
        shale_close(c);
        return 3;
    }
    int bad = 0;
    if (bank) {
        int done = 0;
        for (int attempt = 0; attempt < 5 && !done; attempt++) {
            done = !strcmp(bank_read_op(c, FINAL_PROC_BASE + attempt * 1000, o->keys), "ok");
            if (!done)
                sleep_ms(500);
        }
        bad = !done;
        if (done)
            printf("final read of the bank's %d accounts done\n", o->keys);
    } else {
        bad = set ? final_set(o, c) : final_register(o, c, counter ? "c" : "r");
    }
    fclose(g_hist);
    shale_close(c);
    if (refused())
        return 3;
    if (bad)
        fprintf(stderr, "jepsen-client: %d final read(s) did not succeed\n", bad);
    return bad < 0 ? 3 : bad ? 2 : 0;
}

/* ---- check -------------------------------------------------------------------------- */

/* The nemesis log: lines "MONO_US start NAME [detail...]" / "MONO_US stop NAME
 * [...]" / "MONO_US final", in time order (other lines are notes). An op
 * belongs to the phase active at its invoke: the names of the faults in
 * force (joined with +), "healthy" or "final". Everything after "final"
 * (the end of a migration still running then, the runner finishing what
 * is left in the map) is part of the final phase. */
typedef struct {
    int64_t t;
    char phase[96];
} phase_mark;

static int load_phases(const char *path, phase_mark **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!path)
        return 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "jepsen-client: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char active[8][32];
    int nact = 0;
    size_t cap = 0;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        long long t;
        char what[32] = "", name[32] = "";
        if (sscanf(line, "%lld %31s %31s", &t, what, name) < 2)
            continue;
        if (!strcmp(what, "start") && nact < 8) {
            snprintf(active[nact++], sizeof(active[0]), "%s", name);
        } else if (!strcmp(what, "stop")) {
            for (int i = 0; i < nact; i++)
                if (!strcmp(active[i], name)) {
                    memmove(active[i], active[i + 1], (size_t)(nact - i - 1) * sizeof(active[0]));
                    nact--;
                    break;
                }
        } else if (strcmp(what, "final")) {
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            *out = realloc(*out, cap * sizeof(**out));
        }
        phase_mark *m = &(*out)[(*n)++];
        m->t = t;
        m->phase[0] = 0;
        if (!strcmp(what, "final")) {
            strcpy(m->phase, "final");
            break;
        } else if (!nact) {
            strcpy(m->phase, "healthy");
        } else {
            /* In name order, so that two faults make one phase whichever
             * started first (the migration nemesis overlaps the others). */
            const char *sorted[8];
            for (int i = 0; i < nact; i++) {
                int j = i;
                while (j > 0 && strcmp(sorted[j - 1], active[i]) > 0) {
                    sorted[j] = sorted[j - 1];
                    j--;
                }
                sorted[j] = active[i];
            }
            for (int i = 0; i < nact; i++) {
                size_t l = strlen(m->phase);
                snprintf(m->phase + l, sizeof(m->phase) - l, "%s%s", i ? "+" : "", sorted[i]);
            }
        }
    }
    fclose(f);
    return 0;
}

static const char *phase_at(const phase_mark *m, size_t n, int64_t t)
{
    const char *p = "healthy";
    for (size_t i = 0; i < n && m[i].t <= t; i++)
        p = m[i].phase;
    return p;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void phase_stats(const jep_op *ops, size_t n, const phase_mark *m, size_t nm)
{
    const char *names[128];
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = phase_at(m, nm, ops[i].call_us);
        size_t j = 0;
        while (j < np && strcmp(names[j], p))
            j++;
        if (j == np && np < 128)
            names[np++] = p;
    }
    int64_t *lat = malloc((n ? n : 1) * sizeof(*lat));
    printf("per phase (avail = ops answered ok or fail / ops invoked in the phase; latency of ok and fail):\n");
    printf("  %-36s %7s %7s %7s %7s %8s %9s %9s %9s\n", "phase", "ops", "ok", "fail", "info",
           "avail", "p50 ms", "p99 ms", "max ms");
    for (size_t j = 0; j < np; j++) {
        size_t ok = 0, fail = 0, info = 0, nl = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(phase_at(m, nm, ops[i].call_us), names[j]))
                continue;
            if (ops[i].outcome == JEP_OK)
                ok++;
            else if (ops[i].outcome == JEP_FAIL)
                fail++;
            else
                info++;
            if (ops[i].outcome != JEP_INFO)
                lat[nl++] = ops[i].ret_us - ops[i].call_us;
        }
        qsort(lat, nl, sizeof(*lat), cmp_i64);
        size_t tot = ok + fail + info;
        double p50 = nl ? (double)lat[(nl - 1) / 2] / 1000.0 : 0;
        double p99 = nl ? (double)lat[(size_t)((double)(nl - 1) * 0.99)] / 1000.0 : 0;
        double mx = nl ? (double)lat[nl - 1] / 1000.0 : 0;
        printf("  %-36s %7zu %7zu %7zu %7zu %7.1f%% %9.2f %9.2f %9.2f\n", names[j], tot, ok, fail,
               info, tot ? 100.0 * (double)(ok + fail) / (double)tot : 0.0, p50, p99, mx);
    }
    free(lat);
}

/* The checkers a workload's history goes through: register ->
 * linearizability; set -> lost/phantom; counter -> the counter rules;
 * stale -> the stale-read bounds, then linearizability of its writes and
 * LINEARIZABLE reads (the register model skips stale_read ops). The
 * verdict is the worst of them: INVALID, else UNKNOWN, else VALID. */
static int workload_models(const char *w, jep_model *m)
{
    if (!strcmp(w, "register"))
        m[0] = JEP_MODEL_REGISTER;
    else if (!strcmp(w, "set"))
        m[0] = JEP_MODEL_SET;
    else if (!strcmp(w, "counter"))
        m[0] = JEP_MODEL_COUNTER;
    else if (!strcmp(w, "bank"))
        m[0] = JEP_MODEL_BANK;
    else if (!strcmp(w, "stale")) {
        m[0] = JEP_MODEL_STALE;
        m[1] = JEP_MODEL_REGISTER;
        return 2;
    } else
        return 0;
    return 1;
}

static int cmd_check(const opts_t *o)
{
    if (!o->history || !o->workload)
        return usage("check needs --history and --workload");
    jep_model models[2];
    int nmodels = workload_models(o->workload, models);
    if (!nmodels)
        return usage("unknown workload");
    char err[512];
    jep_history *h;
    if (jep_history_read_file(o->history, &h, err, sizeof(err))) {
        fprintf(stderr, "jepsen-client: %s\n", err);
        return 3;
    }
    jep_op *ops;
    size_t n;
    if (jep_history_ops(h, &ops, &n, err, sizeof(err))) {
        fprintf(stderr, "jepsen-client: %s: %s\n", o->history, err);
        jep_history_free(h);
        return 3;
    }
    phase_mark *marks;
    size_t nm;
    if (load_phases(o->nemesis_log, &marks, &nm)) {
        free(ops);
        jep_history_free(h);
        return 3;
    }
    jep_verdict verdict = JEP_VALID;
    double t_start = jep_now_s();
    for (int i = 0; i < nmodels; i++) {
        /* The time bound covers all the checks of the run. */
        double left = o->check_timeout_s - (jep_now_s() - t_start);
        jep_opts jo = {.timeout_s = left > 1 ? left : 1};
        jep_result r;
        double t0 = jep_now_s();
        int rc = jep_check(models[i], ops, n, &jo, &r);
        if (rc) {
            fprintf(stderr, "jepsen-client: check: %s\n", shale_strerror(rc));
            free(ops);
            free(marks);
            jep_history_free(h);
            return 3;
        }
        printf("model: %s   ops: %zu   keys: %zu   check: %.3f s   verdict: %s\n",
               jep_model_name(models[i]), n, r.keys, jep_now_s() - t0, jep_verdict_name(r.verdict));
        if (r.report.n)
            fputs(r.report.s, stdout);
        if (r.verdict == JEP_INVALID || (r.verdict == JEP_UNKNOWN && verdict == JEP_VALID))
            verdict = r.verdict;
        jep_result_free(&r);
    }
    jep_buf sum = {0};
    jep_summary(&sum, ops, n);
    printf("summary:\n%s", sum.s ? sum.s : "");
    phase_stats(ops, n, marks, nm);
    printf("verdict: %s\n", jep_verdict_name(verdict));
    int code = verdict == JEP_VALID ? 0 : verdict == JEP_INVALID ? 1 : 2;
    jep_buf_free(&sum);
    free(ops);
    free(marks);
    jep_history_free(h);
    return code;
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(NULL);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "now")) {
        printf("%" PRId64 "\n", mono_us());
        return 0;
    }
    opts_t o = {.time_s = 30, .procs = 6, .keys = 6, .seed = 1, .timeout_ms = 2000,
                .check_timeout_s = 120};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            return usage("an option needs a value");
        const char *v = argv[++i];
        if (!strcmp(a, "--routers"))
            o.routers = v;
        else if (!strcmp(a, "--workload"))
            o.workload = v;
        else if (!strcmp(a, "--history"))
            o.history = v;
        else if (!strcmp(a, "--nemesis-log"))
            o.nemesis_log = v;
        else if (!strcmp(a, "--time"))
            o.time_s = atof(v);
        else if (!strcmp(a, "--procs"))
            o.procs = atoi(v);
        else if (!strcmp(a, "--keys"))
            o.keys = atoi(v);
        else if (!strcmp(a, "--seed"))
            o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--timeout-ms"))
            o.timeout_ms = (uint32_t)atoi(v);
        else if (!strcmp(a, "--timeout"))
            o.check_timeout_s = atof(v);
        else if (!strcmp(a, "--unsafe-stale-reads"))
            o.unsafe_stale_ms = (uint32_t)atoi(v);
        else if (!strcmp(a, "--readers"))
            o.readers = atoi(v);
        else if (!strcmp(a, "--tls-ca"))
            o.tls_ca = v;
        else if (!strcmp(a, "--tls-cert"))
            o.tls_cert = v;
        else if (!strcmp(a, "--tls-key"))
            o.tls_key = v;
        else if (!strcmp(a, "--user"))
            o.user = v;
        else if (!strcmp(a, "--password-file"))
            o.password_file = v;
        else
            return usage("unknown option");
    }
    if (o.procs < 1 || o.procs > 256 || o.keys < 1 || o.keys > 1000 || o.time_s < 0 ||
        o.timeout_ms < 100 || o.check_timeout_s <= 0 || o.readers < 0 || o.readers >= o.procs)
        return usage("bad --procs, --keys, --time, --timeout-ms, --timeout or --readers");
    if ((o.tls_cert != NULL) != (o.tls_key != NULL) || (o.tls_cert != NULL && o.tls_ca == NULL))
        return usage("--tls-cert and --tls-key go together, and with --tls-ca");
    if ((o.user != NULL) != (o.password_file != NULL))
        return usage("--user and --password-file go together");
    if (o.password_file != NULL) {
        char err[256];
        if (auth_password_file_read(o.password_file, &o.password, &o.password_len, err,
                                    sizeof(err)) != 0) {
            fprintf(stderr, "jepsen-client: --password-file: %s\n", err);
            return 3;
        }
    }
    int rc;
    if (!strcmp(cmd, "run"))
        rc = cmd_run(&o);
    else if (!strcmp(cmd, "final"))
        rc = cmd_final(&o);
    else if (!strcmp(cmd, "check"))
        rc = cmd_check(&o);
    else
        rc = usage("unknown command");
    if (o.password != NULL) {
        OPENSSL_cleanse(o.password, o.password_len);
        free(o.password);
    }
    return rc;
}
