/* STALE reads when clocks disagree (docs/consistency.md, "Clocks"): a
 * 3-voter group and three read replicas whose realtime clocks run 2 s
 * behind the voters' (tests/clockshim, LD_PRELOAD, one control file each).
 *
 * What it proves:
 *  - each replica measures its offset to the leader (+2 s, leader minus
 *    local) within the uncertainty it reports, in STATUS, /metrics and
 *    `shalectl status`;
 *  - with the default --max-clock-offset-ms (250) the replica refuses
 *    bounded STALE reads (STALE_TOO_OLD, naming the clock) and /health is
 *    not ready with the clock reason, while linearizable reads and writes
 *    through it and the group are unaffected;
 *  - with a wide max (5000) the replica corrects its staleness by the
 *    offset: it serves STALE(1000) while the group runs, and refuses it
 *    once the voters are stopped for 1.5 s (its data is then >= 1.5 s old);
 *  - the same replica with --test-ignore-clock-offset 1 serves that read
 *    from data >= 1.5 s old: the violation the rule exists to prevent
 *    (this test fails if the rule stops working, and the switch shows the
 *    setup can produce the violation);
 *  - a backwards step of a replica's clock (while no new sample can come)
 *    makes /health not ready with "stepped backwards", counts in
 *    shale_clock_steps_total, refuses STALE reads; after the voters resume
 *    and its clock is set right it is ready again. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "obs_util.h"
#include "shale.h"
#include "wire.h"

static char *g_base;
static th_group_t g_grp;

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static shale_client_t *connect_to(const char *addrs, uint32_t timeout_ms)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = timeout_ms;
    o.connect_timeout_ms = 500;
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];
    int rv = SHALE_EIO;
    for (int i = 0; i < 40 && rv != SHALE_OK; i++) {
        rv = shale_connect(addrs, &o, &c, err);
        if (rv != SHALE_OK)
            usleep(100 * 1000);
    }
    ck_assert_msg(rv == SHALE_OK, "connect %s: %s", addrs, err);
    return c;
}

static void write_ctl(const char *path, const char *text)
{
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    ck_assert_int_eq(rename(tmp, path), 0);
}

/* The clock shim goes under the next process started only: LD_PRELOAD and
 * its control file in the environment (inherited at fork), taken back by
 * shim_off. Under ASan the preloaded shim precedes the sanitizer runtime,
 * which then must not insist on coming first. */
static char *g_saved_asan;
static int g_had_asan;

static void shim_on(const char *ctl)
{
    const char *asan = getenv("ASAN_OPTIONS");
    g_had_asan = asan != NULL;
    g_saved_asan = asan != NULL ? strdup(asan) : NULL;
    char opts[512];
    snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", asan ? asan : "",
             asan && asan[0] ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    setenv("LD_PRELOAD", SHALE_CLOCKSHIM_PATH, 1);
    setenv("SHALE_CLOCKSHIM_FILE", ctl, 1);
}

static void shim_off(void)
{
    unsetenv("LD_PRELOAD");
    unsetenv("SHALE_CLOCKSHIM_FILE");
    if (g_had_asan)
        setenv("ASAN_OPTIONS", g_saved_asan, 1);
    else
        unsetenv("ASAN_OPTIONS");
    free(g_saved_asan);
    g_saved_asan = NULL;
}

typedef struct replica {
    th_node_t *n;
    char ctl[600];
    char http[64];
    int http_port;
} replica_t;

/* Start node index i (id i+1) on host as a read replica whose clock is
 * offset_ms off (control file), with extra flags, and add it to the group. */
static void add_replica(shale_client_t *c, replica_t *r, int i, const char *host, int offset_ms,
                        const char *const *more)
{
    r->n = &g_grp.nodes[i];
    th_node_init(r->n, (uint64_t)i + 1, host, g_base);
    snprintf(r->ctl, sizeof(r->ctl), "%s/clock-%d", g_base, i + 1);
    char text[64];
    snprintf(text, sizeof(text), "%d 0\n", offset_ms);
    write_ctl(r->ctl, text);
    r->http_port = th_free_port(host);
    snprintf(r->http, sizeof(r->http), "%s:%d", host, r->http_port);
    const char *argv[24] = {"--initial-cluster", "none", "--election-timeout-ms", "400",
                            "--heartbeat-ms", "50", "--http", r->http};
    int a = 8;
    for (int k = 0; more != NULL && more[k] != NULL; k++)
        argv[a++] = more[k];
    argv[a] = NULL;
    shim_on(r->ctl);
    ck_assert_int_eq(th_node_start(r->n, argv), 0);
    shim_off();
    if (g_grp.n < i + 1)
        g_grp.n = i + 1;
    char raft[64], msg[SHALE_ERRMSG_LEN];
    snprintf(raft, sizeof(raft), "%s:%d", r->n->host, r->n->raft_port);
    int rv = shale_member_add(c, r->n->id, raft, r->n->addr, 1, msg);
    ck_assert_msg(rv == SHALE_OK, "member add %llu: %s", (unsigned long long)r->n->id,
                  shale_errmsg(c));
}

/* Poll the replica's STATUS until it reports an offset sample. */
static void wait_offset(replica_t *r, int64_t *off, uint64_t *unc)
{
    for (int i = 0; i < 300; i++) {
        struct Shale__StatusResponse *st = NULL;
        if (th_node_status(r->n, &st) == 0) {
            int have = st->has_clock_offset_us;
            if (have) {
                *off = st->clock_offset_us;
                *unc = st->clock_uncertainty_us;
            }
            shale__status_response__free_unpacked(st, NULL);
            if (have)
                return;
        }
        usleep(100 * 1000);
    }
    th_node_dump_log(r->n);
    ck_abort_msg("replica %llu reported no clock offset", (unsigned long long)r->n->id);
}

/* GET /health: status code, body (malloc'd) in *body. */
static int health(replica_t *r, char **body)
{
    int st = -1;
    *body = NULL;
    if (obs_get(r->n->host, r->http_port, "/health", &st, body) != 0)
        return -1;
    return st;
}

/* Poll /health until it answers want with a body containing needle. */
static void wait_health(replica_t *r, int want, const char *needle)
{
    char *body = NULL;
    for (int i = 0; i < 300; i++) {
        free(body);
        int st = health(r, &body);
        if (st == want && (needle == NULL || (body != NULL && strstr(body, needle) != NULL))) {
            free(body);
            return;
        }
        usleep(50 * 1000);
    }
    ck_abort_msg("replica %llu /health never answered %d with \"%s\"; last: %s",
                 (unsigned long long)r->n->id, want, needle ? needle : "",
                 body ? body : "(none)");
}

static double metric(replica_t *r, const char *name, const char *labels)
{
    int st = -1;
    char *body = NULL;
    ck_assert_int_eq(obs_get(r->n->host, r->http_port, "/metrics", &st, &body), 0);
    ck_assert_int_eq(st, 200);
    char err[256];
    ck_assert_msg(expo_check(body, err, sizeof(err)) == 0, "/metrics: %s", err);
    double v = expo_value(body, name, labels);
    free(body);
    return v;
}

static int stale_get(const char *addr, const char *key, uint32_t bound, char *why, size_t wlen)
{
    shale_client_t *rc = connect_to(addr, 3000);
    shale_read_opts_t ro = {.consistency = SHALE_STALE, .max_staleness_ms = bound};
    shale_value_t v = {0};
    int rv = shale_get(rc, key, strlen(key), &ro, &v);
    snprintf(why, wlen, "%s", shale_errmsg(rc));
    shale_value_free(&v);
    shale_close(rc);
    return rv;
}

START_TEST(test_clock_offset_rule)
{
    g_base = th_tmpdir("clock");
    ck_assert_ptr_nonnull(g_base);
    th_group_init(&g_grp, 3, 161, g_base);
    ck_assert_int_eq(th_group_start(&g_grp, NULL), 0);
    int leader = th_group_wait_leader(&g_grp, 20000);
    ck_assert_int_ge(leader, 0);
    shale_client_t *c = connect_to(g_grp.addrs, 10000);
    ck_assert_int_eq(shale_put(c, "ck", 2, "v1", 2, NULL), SHALE_OK);

    replica_t strict, wide, broken;
    add_replica(c, &strict, 3, "127.0.0.164", -2000, NULL);
    const char *wide_args[] = {"--max-clock-offset-ms", "5000", NULL};
    add_replica(c, &wide, 4, "127.0.0.165", -2000, wide_args);
    const char *broken_args[] = {"--max-clock-offset-ms", "5000", "--test-ignore-clock-offset",
                                 "1", NULL};
    add_replica(c, &broken, 5, "127.0.0.166", -2000, broken_args);
    replica_t *all[] = {&strict, &wide, &broken};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(th_node_wait_applied(all[i]->n, th_node_applied(&g_grp.nodes[leader]),
                                              20000), 0);

    /* 1. The offset is measured: +2 s within the reported uncertainty. */
    for (int i = 0; i < 3; i++) {
        int64_t off = 0;
        uint64_t unc = 0;
        wait_offset(all[i], &off, &unc);
        int64_t err_us = off - 2000000;
        if (err_us < 0)
            err_us = -err_us;
        ck_assert_msg((uint64_t)err_us <= unc + 1000,
                      "replica %d: offset %lld us +- %llu, the shim says +2000000", i,
                      (long long)off, (unsigned long long)unc);
    }
    double moff = metric(&strict, "shale_clock_offset_seconds", NULL);
    ck_assert_msg(moff > 1.9 && moff < 2.1, "shale_clock_offset_seconds %f", moff);
    ck_assert(metric(&strict, "shale_clock_uncertainty_seconds", NULL) >= 0);
    ck_assert(metric(&strict, "shale_clock_sample_age_seconds", NULL) >= 0);
    ck_assert(metric(&strict, "shale_clock_samples_total", "result=\"kept\"") >= 1);
    char out[16384];
    int ex = th_shalectl(out, sizeof(out), "status --addr %s", strict.n->addr);
    ck_assert_msg(ex == 0, "shalectl status: %s", out);
    /* The replica's row: its CLOCK cell is "+OFFSET~UNCERTAINTYms", about +2000. */
    const char *row = strstr(out, "\n4 ");
    ck_assert_msg(strstr(out, "CLOCK") != NULL && row != NULL, "%s", out);
    const char *cell = strstr(row, " +");
    ck_assert_msg(cell != NULL && cell < strchr(row + 1, '\n') && strchr(cell, '~') != NULL,
                  "%s", out);
    long cell_ms = strtol(cell + 2, NULL, 10);
    ck_assert_msg(cell_ms > 1900 && cell_ms < 2100, "CLOCK %ld ms in %s", cell_ms, out);
    ck_assert_msg(strstr(out, "exceeds --max-clock-offset-ms 250") != NULL, "%s", out);
    ex = th_shalectl(out, sizeof(out), "status --addr %s --json", strict.n->addr);
    ck_assert_msg(ex == 0 && strstr(out, "\"clock_offset_us\":") != NULL, "%s", out);

    /* 2. Default max (250 ms): the strict replica refuses bounded STALE
     * reads and is not ready, naming the clock. */
    char why[SHALE_ERRMSG_LEN];
    int rv = stale_get(strict.n->addr, "ck", 1000, why, sizeof(why));
    ck_assert_msg(rv == SHALE_ESTALE && strstr(why, "clock") != NULL,
                  "strict replica answered %d (%s)", rv, why);
    wait_health(&strict, 503, "exceeds --max-clock-offset-ms");
    /* Linearizable reads and writes do not care: through the replica
     * (redirected to the leader) and through the group. */
    shale_client_t *rc = connect_to(strict.n->addr, 5000);
    ck_assert_int_eq(shale_put(rc, "ck", 2, "v2", 2, NULL), SHALE_OK);
    shale_value_t v = {0};
    ck_assert_int_eq(shale_get(rc, "ck", 2, NULL, &v), SHALE_OK);
    ck_assert(v.found && v.len == 2 && memcmp(v.data, "v2", 2) == 0);
    shale_value_free(&v);
    shale_close(rc);
    ck_assert_int_eq(shale_get(c, "ck", 2, NULL, &v), SHALE_OK);
    ck_assert(v.found && memcmp(v.data, "v2", 2) == 0);
    shale_value_free(&v);

    /* 3. Wide max: the offset-corrected staleness is small while the group
     * runs, so STALE(1000) is served (by both wide replicas). */
    wait_health(&wide, 200, NULL);
    rv = SHALE_ESTALE;
    for (int i = 0; i < 100 && rv != SHALE_OK; i++) {
        rv = stale_get(wide.n->addr, "ck", 1000, why, sizeof(why));
        if (rv != SHALE_OK)
            usleep(50 * 1000);
    }
    ck_assert_msg(rv == SHALE_OK, "wide replica refused a fresh STALE read: %d (%s)", rv, why);
    ck_assert_int_eq(stale_get(broken.n->addr, "ck", 1000, why, sizeof(why)), SHALE_OK);

    /* 4. Stop every voter: no entry is stamped after stopped_at, so each
     * replica's data is at least (now - stopped_at) old. */
    long long stopped_at = mono_ms();
    for (int i = 0; i < 3; i++)
        kill(g_grp.nodes[i].pid, SIGSTOP);
    usleep(1500 * 1000);
    rv = stale_get(wide.n->addr, "ck", 1000, why, sizeof(why));
    long long old = mono_ms() - stopped_at;
    ck_assert_msg(rv == SHALE_ESTALE, "wide replica served data %lld ms old at STALE(1000): %d",
                  old, rv);
    /* The rule switched off: the same read is served from data >= 1.5 s
     * old, past the 1000 ms the client asked for. */
    rv = stale_get(broken.n->addr, "ck", 1000, why, sizeof(why));
    old = mono_ms() - stopped_at;
    ck_assert_msg(rv == SHALE_OK && old > 1000,
                  "--test-ignore-clock-offset did not produce the violation: %d (%s) at %lld ms",
                  rv, why, old);

    /* 5. A backwards step of the wide replica's clock while no sample can
     * come: not ready, "stepped backwards", STALE refused even with a
     * bound (60 s) its staleness alone would meet. */
    write_ctl(wide.ctl, "-5000 0\n");
    wait_health(&wide, 503, "stepped backwards");
    ck_assert(metric(&wide, "shale_clock_steps_total", NULL) >= 1);
    rv = stale_get(wide.n->addr, "ck", 60000, why, sizeof(why));
    ck_assert_msg(rv == SHALE_ESTALE && strstr(why, "stepped backwards") != NULL, "%d (%s)", rv,
                  why);
    /* Voters back, clock set right again: a new sample, ready again. */
    for (int i = 0; i < 3; i++)
        kill(g_grp.nodes[i].pid, SIGCONT);
    write_ctl(wide.ctl, "-2000 0\n");
    wait_health(&wide, 200, NULL);
    rv = SHALE_ESTALE;
    for (int i = 0; i < 100 && rv != SHALE_OK; i++) {
        rv = stale_get(wide.n->addr, "ck", 1000, why, sizeof(why));
        if (rv != SHALE_OK)
            usleep(50 * 1000);
    }
    ck_assert_msg(rv == SHALE_OK, "%d (%s)", rv, why);

    shale_close(c);
    for (int i = 0; i < g_grp.n; i++) {
        th_node_t *nd = &g_grp.nodes[i];
        if (nd->pid <= 0)
            continue;
        kill(nd->pid, SIGCONT);
        int st = th_node_stop(nd, SIGTERM);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            th_node_dump_log(nd);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "node %llu exit status %d",
                      (unsigned long long)nd->id, st);
        ck_assert_int_eq(th_log_sanitizer_errors(nd), 0);
    }
    th_rmrf(g_base);
    free(g_base);
}
END_TEST

static int node_role_is(th_node_t *n, const char *role)
{
    struct Shale__StatusResponse *st = NULL;
    if (th_node_status(n, &st) != 0)
        return 0;
    int yes = st->role != NULL && strcmp(st->role, role) == 0;
    shale__status_response__free_unpacked(st, NULL);
    return yes;
}

static int wait_role(th_node_t *n, const char *role, int timeout_ms)
{
    for (long long end = mono_ms() + timeout_ms; mono_ms() < end; usleep(50 * 1000))
        if (node_role_is(n, role))
            return 0;
    return -1;
}

/* Start voter 2 (id 3) of g_grp under the clock shim, offset_ms ahead. */
static void start_skewed_voter(replica_t *r, int offset_ms, int keep_leadership)
{
    r->n = &g_grp.nodes[2];
    snprintf(r->ctl, sizeof(r->ctl), "%s/clock-3", g_base);
    char text[64];
    snprintf(text, sizeof(text), "%d 0\n", offset_ms);
    write_ctl(r->ctl, text);
    if (r->http_port == 0) {
        r->http_port = th_free_port(r->n->host);
        snprintf(r->http, sizeof(r->http), "%s:%d", r->n->host, r->http_port);
    }
    const char *keep[] = {"--http", r->http, "--test-clock-keep-leadership", "1", NULL};
    const char *plain[] = {"--http", r->http, NULL};
    shim_on(r->ctl);
    ck_assert_int_eq(th_group_start_node(&g_grp, 2, keep_leadership ? keep : plain), 0);
    shim_off();
}

/* A leader whose clock runs ahead (docs/consistency.md, "The leader's
 * timestamps"). Voter 3's realtime clock is 60 s ahead of the other two.
 *  - Made leader (a transfer), it stamps its entries on the group's clock,
 *    not its own: a key put with a 30 s TTL just before is still there
 *    after the skewed leader's first writes (stamped on its own clock they
 *    would have moved the log clock 60 s on and expired it at once), on
 *    the leader and the followers alike; shale_clock_group_offset_seconds
 *    says -60 s (both bounds, once both followers reported), shale_clock_stamps_corrected_total counts, /health names
 *    the leader's clock.
 *  - Without --test-clock-keep-leadership it hands leadership to another
 *    voter by itself within seconds (shale_clock_handoffs_total). */
START_TEST(test_leader_clock_ahead)
{
    g_base = th_tmpdir("clock-lead");
    ck_assert_ptr_nonnull(g_base);
    th_group_init(&g_grp, 3, 171, g_base);
    /* The two right clocks first: they elect and stamp the first entries. */
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(th_group_start_node(&g_grp, i, NULL), 0);
    ck_assert_int_ge(th_group_wait_leader(&g_grp, 20000), 0);
    shale_client_t *c = connect_to(g_grp.addrs, 10000);
    ck_assert_int_eq(shale_put(c, "warm", 4, "w", 1, NULL), SHALE_OK);
    replica_t sk;
    memset(&sk, 0, sizeof(sk));
    start_skewed_voter(&sk, 60000, 1);
    int64_t off = 0;
    uint64_t unc = 0;
    wait_offset(&sk, &off, &unc); /* as a follower it measured the leader: about -60 s */
    ck_assert_msg(off < -59500000 && off > -60500000, "offset %lld us", (long long)off);

    /* A key with 30 s to live, stamped by a right clock. */
    ck_assert_int_eq(shale_put_ttl(c, "ttl-k", 5, "alive", 5, 30000, NULL), SHALE_OK);
    char msg[SHALE_ERRMSG_LEN];
    ck_assert_msg(shale_leader_transfer(c, 3, msg) == SHALE_OK, "transfer: %s", shale_errmsg(c));
    ck_assert_int_eq(wait_role(sk.n, "leader", 10000), 0);
    shale_client_t *lc = connect_to(sk.n->addr, 5000);
    for (int i = 0; i < 5; i++) {
        char k[16];
        snprintf(k, sizeof(k), "after-%d", i);
        ck_assert_int_eq(shale_put(lc, k, strlen(k), "x", 1, NULL), SHALE_OK);
    }
    ck_assert_msg(node_role_is(sk.n, "leader"), "the skewed voter lost leadership meanwhile");
    shale_value_t v = {0};
    ck_assert_int_eq(shale_get(lc, "ttl-k", 5, NULL, &v), SHALE_OK);
    ck_assert_msg(v.found, "a key with 30 s to live expired when the skewed leader wrote");
    ck_assert_msg(v.expires_in_ms > 0 && v.expires_in_ms <= 30000, "expires in %llu ms",
                  (unsigned long long)v.expires_in_ms);
    shale_value_free(&v);
    /* The followers applied as far and agree (their log clock is the same). */
    uint64_t applied = th_node_applied(sk.n);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(th_node_wait_applied(&g_grp.nodes[i], applied, 10000), 0);
        shale_client_t *fc = connect_to(g_grp.nodes[i].addr, 5000);
        shale_read_opts_t ro = {.consistency = SHALE_STALE, .max_staleness_ms = 0};
        ck_assert_int_eq(shale_get(fc, "ttl-k", 5, &ro, &v), SHALE_OK);
        ck_assert_msg(v.found, "follower %d: ttl-k expired", i);
        shale_value_free(&v);
        shale_close(fc);
    }
    /* Once both followers reported, the group's clock is known: -60 s. */
    double glo = 0, ghi = 0;
    for (int i = 0; i < 200; i++) {
        glo = metric(&sk, "shale_clock_group_offset_seconds", "bound=\"low\"");
        ghi = metric(&sk, "shale_clock_group_offset_seconds", "bound=\"high\"");
        if (ghi < -59.5)
            break;
        usleep(50 * 1000);
    }
    ck_assert_msg(glo < -59.5 && glo > -60.5 && ghi < -59.5 && ghi > -60.5,
                  "shale_clock_group_offset_seconds low %f high %f", glo, ghi);
    ck_assert(metric(&sk, "shale_clock_stamps_corrected_total", NULL) >= 5);
    wait_health(&sk, 503, "this leader's clock");
    shale_close(lc);

    /* Without the test flag it hands leadership over by itself. */
    ck_assert_int_eq(th_node_stop(sk.n, SIGTERM), 0);
    ck_assert_int_ge(th_group_wait_leader(&g_grp, 20000), 0);
    start_skewed_voter(&sk, 60000, 0);
    wait_offset(&sk, &off, &unc);
    ck_assert_msg(shale_leader_transfer(c, 3, msg) == SHALE_OK, "transfer: %s", shale_errmsg(c));
    ck_assert_int_eq(wait_role(sk.n, "follower", 20000), 0);
    ck_assert(metric(&sk, "shale_clock_handoffs_total", NULL) >= 1);
    int leader = th_group_wait_leader(&g_grp, 20000);
    ck_assert_msg(leader == 0 || leader == 1, "leader index %d", leader);
    ck_assert_int_eq(shale_put(c, "end", 3, "e", 1, NULL), SHALE_OK);
    ck_assert_int_eq(shale_get(c, "ttl-k", 5, NULL, &v), SHALE_OK);
    shale_value_free(&v);

    shale_close(c);
    th_group_stop_all(&g_grp);
    th_rmrf(g_base);
    free(g_base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("clock");
    TCase *tc = tcase_create("process");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_clock_offset_rule);
    tcase_add_test(tc, test_leader_clock_ahead);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
