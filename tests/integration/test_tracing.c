/* Request tracing with real processes on loopback: a 3-node meta group, one
 * 3-voter shard group and two routers. The group and router A run with
 * --slow-ms 0 --log-level debug (every request logged at debug); router B
 * with --slow-ms 100 at info (only slow requests logged).
 *
 * What it proves: a request sent through a router is logged by the router
 * and by the group leader with the same trace id (16 hex digits), the same
 * op and slot and outcome ok; a client's own Route.trace_id is kept and
 * reaches the node; a request slower than --slow-ms (its leader SIGSTOPped
 * for a moment) is logged at info as a slow request with its retries,
 * while quick ones are not logged at info; SIGUSR1 changes the log level
 * of a router and of a node at run time, each logging the new level, and
 * debug request lines stop and come back with it.
 *
 * Hosts 127.0.0.190.. (meta .190-.192, group .200-.202, routers .208-.209). */
#include <check.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "harness_cluster.h"
#include "keyhash.h"
#include "obs_util.h"
#include "shale.h"

#define FIRST_HOST 190

static th_cluster_t g_cl;
static char *g_base;
static th_node_t g_ra, g_rb; /* A: debug, --slow-ms 0; B: info, --slow-ms 100 */
static int g_ready;
static pid_t g_stopped; /* a node SIGSTOPped by a test */

static int router_start(th_node_t *n, const char *meta, const char *level, const char *slow)
{
    const char *argv[] = {"--listen",    n->addr, "--meta",    meta, "--log-level",
                          level,         "--slow-ms", slow, NULL};
    return th_router_start(n, argv, 1);
}

static int router_wait_map(const th_node_t *n, int timeout_ms)
{
    long long end = obs_mono_ms() + timeout_ms;
    while (obs_mono_ms() < end) {
        Shale__StatusResponse *st = NULL;
        if (th_node_status(n, &st) == 0) {
            int ok = st->has_map_epoch && st->map_epoch >= 1;
            shale__status_response__free_unpacked(st, NULL);
            if (ok)
                return 0;
        }
        usleep(50 * 1000);
    }
    return -1;
}

static void cluster_up(void)
{
    g_base = th_tmpdir("trace");
    ck_assert_ptr_nonnull(g_base);
    const char *extra[] = {"--slow-ms", "0", "--log-level", "debug", NULL};
    if (th_cluster_start(&g_cl, 1, 3, FIRST_HOST, g_base, extra) != 0 ||
        th_cluster_init(&g_cl, 4096, 20000) != 0) {
        fprintf(stderr, "test_tracing: cluster did not start\n");
        return;
    }
    th_node_init(&g_ra, 991, "127.0.0.208", g_base);
    snprintf(g_ra.log, sizeof(g_ra.log), "%s/router-a.log", g_base);
    th_node_init(&g_rb, 992, "127.0.0.209", g_base);
    snprintf(g_rb.log, sizeof(g_rb.log), "%s/router-b.log", g_base);
    ck_assert_int_eq(router_start(&g_ra, g_cl.meta.addrs, "debug", "0"), 0);
    ck_assert_int_eq(router_start(&g_rb, g_cl.meta.addrs, "info", "100"), 0);
    if (router_wait_map(&g_ra, 15000) != 0 || router_wait_map(&g_rb, 15000) != 0) {
        fprintf(stderr, "test_tracing: routers have no map\n");
        th_node_dump_log(&g_ra);
        th_node_dump_log(&g_rb);
        return;
    }
    g_ready = 1;
}

static void cluster_down(void)
{
    if (g_stopped > 0)
        kill(g_stopped, SIGCONT);
    th_cluster_teardown(&g_cl, &g_base, (th_node_t *const[]){&g_ra, &g_rb, NULL});
}

static void need_cluster(void)
{
    ck_assert_msg(g_ready, "the cluster did not start (see logs above)");
}

/* The last line of the log at path containing every needle (NULL-ended),
 * copied to out; 0, or -1 when there is none. */
static int log_find(const char *path, char *out, size_t outlen, const char *const *needles)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[4096];
    int found = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        int all = 1;
        for (int i = 0; needles[i] != NULL && all; i++)
            all = strstr(line, needles[i]) != NULL;
        if (all) {
            snprintf(out, outlen, "%s", line);
            found = 0;
        }
    }
    fclose(f);
    return found;
}

/* log_find, polled for up to timeout_ms (lines land as the process writes). */
static int log_wait(const char *path, char *out, size_t outlen, const char *const *needles,
                    int timeout_ms)
{
    long long end = obs_mono_ms() + timeout_ms;
    do {
        if (log_find(path, out, outlen, needles) == 0)
            return 0;
        usleep(20 * 1000);
    } while (obs_mono_ms() < end);
    return -1;
}

/* Lines of the log containing needle. */
static int log_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* The value of key=... in a logfmt line (unquoted values), or "". */
static void field(const char *line, const char *key, char *out, size_t outlen)
{
    char pat[64];
    snprintf(pat, sizeof(pat), " %s=", key);
    const char *p = strstr(line, pat);
    out[0] = '\0';
    if (p == NULL)
        return;
    p += strlen(pat);
    size_t n = strcspn(p, " \n");
    snprintf(out, outlen, "%.*s", (int)(n < outlen ? n : outlen - 1), p);
}

static int is_trace(const char *s)
{
    return strlen(s) == 16 && strspn(s, "0123456789abcdef") == 16 && strcmp(s, "0000000000000000");
}

static shale_client_t *connect_router(const th_node_t *rt)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 10000;
    shale_client_t *c = NULL;
    ck_assert_int_eq(shale_connect(rt->addr, &o, &c, NULL), SHALE_OK);
    return c;
}

static th_node_t *leader_node(void)
{
    int l = th_group_wait_leader(&g_cl.groups[0], 10000);
    ck_assert_int_ge(l, 0);
    return &g_cl.groups[0].nodes[l];
}

/* One PUT through router A: the router's line and the leader's line carry
 * the same trace id, op, slot and outcome. */
START_TEST(test_trace_follows_a_request)
{
    need_cluster();
    const char *key = "traced-key-1";
    shale_client_t *c = connect_router(&g_ra);
    ck_assert_int_eq(shale_put(c, key, strlen(key), "v", 1, NULL), SHALE_OK);
    shale_close(c);
    char slot[16];
    snprintf(slot, sizeof(slot), "slot=%u", shale_key_slot(key, strlen(key), 4096));

    char rline[4096], nline[4096], trace[64], pat[80];
    const char *rneed[] = {"msg=\"request\"", " op=put ", slot, "outcome=ok", NULL};
    ck_assert_msg(log_wait(g_ra.log, rline, sizeof(rline), rneed, 5000) == 0,
                  "router A logged no request line for the PUT");
    ck_assert_ptr_nonnull(strstr(rline, "level=debug"));
    ck_assert_ptr_nonnull(strstr(rline, "proc=shale-router"));
    field(rline, "trace", trace, sizeof(trace));
    ck_assert_msg(is_trace(trace), "router trace '%s' in: %s", trace, rline);
    char ms[32], attempts[16];
    field(rline, "ms", ms, sizeof(ms));
    field(rline, "attempts", attempts, sizeof(attempts));
    ck_assert_msg(strtod(ms, NULL) > 0, "%s", rline);
    ck_assert_msg(atoi(attempts) >= 1, "%s", rline);

    th_node_t *leader = leader_node();
    snprintf(pat, sizeof(pat), "trace=%s ", trace);
    const char *nneed[] = {pat, "msg=\"request\"", " op=put ", slot, "outcome=ok", NULL};
    ck_assert_msg(log_wait(leader->log, nline, sizeof(nline), nneed, 5000) == 0,
                  "leader %s did not log trace %s (router: %s)", leader->addr, trace, rline);
    ck_assert_ptr_nonnull(strstr(nline, "proc=shaled"));
    ck_assert_ptr_nonnull(strstr(nline, "level=debug"));
    ck_assert_ptr_nonnull(strstr(nline, " peer=127.0.0.1:")); /* the router's connection */
    /* Every process that saw the id saw this request only: a follower the
     * router tried first answered not_leader with the same id, nothing else. */
    for (int i = 0; i < 3; i++) {
        th_node_t *n = &g_cl.groups[0].nodes[i];
        if (n == leader)
            continue;
        const char *other[] = {pat, "outcome=ok", NULL};
        ck_assert_msg(log_find(n->log, nline, sizeof(nline), other) != 0,
                      "a follower answered trace %s ok: %s", trace, nline);
    }

    /* Two requests, two ids. */
    c = connect_router(&g_ra);
    ck_assert_int_eq(shale_put(c, "traced-key-2", 12, "v", 1, NULL), SHALE_OK);
    shale_close(c);
    char slot2[16], rline2[4096], trace2[64];
    snprintf(slot2, sizeof(slot2), "slot=%u", shale_key_slot("traced-key-2", 12, 4096));
    const char *rneed2[] = {"msg=\"request\"", " op=put ", slot2, NULL};
    ck_assert_int_eq(log_wait(g_ra.log, rline2, sizeof(rline2), rneed2, 5000), 0);
    field(rline2, "trace", trace2, sizeof(trace2));
    ck_assert(is_trace(trace2));
    ck_assert_str_ne(trace, trace2);
}
END_TEST

/* A raw client that stamps its own Route.trace_id keeps it end to end. */
START_TEST(test_client_trace_id_is_kept)
{
    need_cluster();
    int fd = th_raw_connect_hello(g_ra.host, g_ra.port, NULL);
    ck_assert_int_ge(fd, 0);
    Shale__Route rt = SHALE__ROUTE__INIT;
    rt.has_trace_id = 1;
    rt.trace_id = 0x5ca1ab1e00c0ffeeULL;
    Shale__PutRequest put = SHALE__PUT_REQUEST__INIT;
    put.key.data = (uint8_t *)"client-traced";
    put.key.len = 13;
    put.value.data = (uint8_t *)"v";
    put.value.len = 1;
    put.route = &rt;
    ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_PUT_REQ, 7, &put), 0);
    th_frame_t f;
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_uint_eq(f.type, SHALE_MSG_PUT_RESP);
    th_frame_free(&f);
    close(fd);
    char line[4096];
    const char *need[] = {"trace=5ca1ab1e00c0ffee ", "outcome=ok", NULL};
    ck_assert_int_eq(log_wait(g_ra.log, line, sizeof(line), need, 5000), 0);
    ck_assert_int_eq(log_wait(leader_node()->log, line, sizeof(line), need, 5000), 0);
}
END_TEST

/* Router B logs only slow requests, at info, with retries and causes. */
START_TEST(test_slow_request_logged_at_info)
{
    need_cluster();
    shale_client_t *c = connect_router(&g_rb);
    /* Quick requests: nothing at info. */
    for (int i = 0; i < 5; i++) {
        char k[32];
        snprintf(k, sizeof(k), "quick-%d", i);
        ck_assert_int_eq(shale_put(c, k, strlen(k), "v", 1, NULL), SHALE_OK);
    }
    ck_assert_int_eq(log_count(g_rb.log, "msg=\"request\""), 0);
    int slow_before = log_count(g_rb.log, "msg=\"slow request\"");

    /* The leader stops for 600 ms: the PUT waits (or moves to a new leader)
     * and takes longer than 100 ms. */
    th_node_t *leader = leader_node();
    g_stopped = leader->pid;
    ck_assert_int_eq(kill(leader->pid, SIGSTOP), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        usleep(600 * 1000);
        kill(leader->pid, SIGCONT);
        _exit(0);
    }
    long long t0 = obs_mono_ms();
    int rv = shale_put(c, "slow-key", 8, "v", 1, NULL);
    long long took = obs_mono_ms() - t0;
    waitpid(child, NULL, 0);
    kill(leader->pid, SIGCONT);
    g_stopped = 0;
    shale_close(c);
    ck_assert_int_eq(rv, SHALE_OK);
    ck_assert_msg(took >= 100, "the PUT took only %lld ms", took);

    char line[4096], slot[16];
    snprintf(slot, sizeof(slot), "slot=%u", shale_key_slot("slow-key", 8, 4096));
    const char *need[] = {"msg=\"slow request\"", " op=put ", slot, NULL};
    ck_assert_msg(log_wait(g_rb.log, line, sizeof(line), need, 5000) == 0,
                  "router B did not log the slow PUT (took %lld ms)", took);
    ck_assert_int_eq(log_count(g_rb.log, "msg=\"slow request\""), slow_before + 1);
    ck_assert_msg(strstr(line, "level=info") != NULL, "%s", line);
    ck_assert_msg(strstr(line, "outcome=ok") != NULL, "%s", line);
    char trace[64], ms[32], retries[16], causes[160];
    field(line, "trace", trace, sizeof(trace));
    field(line, "ms", ms, sizeof(ms));
    field(line, "retries", retries, sizeof(retries));
    field(line, "causes", causes, sizeof(causes));
    ck_assert_msg(is_trace(trace), "%s", line);
    ck_assert_msg(strtod(ms, NULL) >= 100, "%s", line);
    /* Retried or not (the leader may come back before anything times
     * out), causes name what was retried. */
    ck_assert_msg(atoi(retries) == 0 ? strcmp(causes, "-") == 0 : strcmp(causes, "-") != 0, "%s",
                  line);
    ck_assert_int_eq(log_count(g_rb.log, "msg=\"request\""), 0);
}
END_TEST

/* One request handled by p: a PUT through router A, or STATUS to a node
 * (sent to it directly: it need not be the leader any more). */
static void poke(const th_node_t *p)
{
    if (p == &g_ra) {
        shale_client_t *c = connect_router(&g_ra);
        ck_assert_int_eq(shale_put(c, "level-key", 9, "v", 1, NULL), SHALE_OK);
        shale_close(c);
        return;
    }
    Shale__StatusResponse *st = NULL;
    ck_assert_int_eq(th_node_status(p, &st), 0);
    shale__status_response__free_unpacked(st, NULL);
}

/* SIGUSR1 cycles the level (debug -> info -> warn -> error -> debug) on a
 * router and on a node; the change is logged, and debug request lines stop
 * and come back with it. */
START_TEST(test_sigusr1_changes_level)
{
    need_cluster();
    th_node_t *procs[] = {&g_ra, leader_node()};
    for (int i = 0; i < 2; i++) {
        th_node_t *p = procs[i];
        const char *proc = i == 0 ? "proc=shale-router" : "proc=shaled";
        char line[4096];
        ck_assert_int_eq(kill(p->pid, SIGUSR1), 0);
        const char *to_info[] = {proc, "msg=\"log level changed\" level=info", NULL};
        ck_assert_msg(log_wait(p->log, line, sizeof(line), to_info, 5000) == 0,
                      "%s: no level change to info logged", p->addr);
        ck_assert_ptr_nonnull(strstr(line, "level=warn"));
        /* At info, a request leaves no debug line. */
        int before = log_count(p->log, "msg=\"request\"");
        poke(p);
        usleep(100 * 1000);
        ck_assert_int_eq(log_count(p->log, "msg=\"request\""), before);
        /* info -> warn -> error -> debug. */
        static const char *const next[] = {"warn", "error", "debug"};
        for (int k = 0; k < 3; k++) {
            char want[64];
            snprintf(want, sizeof(want), "msg=\"log level changed\" level=%s", next[k]);
            int had = log_count(p->log, want);
            ck_assert_int_eq(kill(p->pid, SIGUSR1), 0);
            long long end = obs_mono_ms() + 5000;
            while (log_count(p->log, want) == had && obs_mono_ms() < end)
                usleep(20 * 1000);
            ck_assert_msg(log_count(p->log, want) == had + 1, "%s: no change to %s", p->addr,
                          next[k]);
        }
        poke(p);
        long long end = obs_mono_ms() + 5000;
        while (log_count(p->log, "msg=\"request\"") == before && obs_mono_ms() < end)
            usleep(20 * 1000);
        ck_assert_msg(log_count(p->log, "msg=\"request\"") > before,
                      "%s: back at debug, requests are not logged", p->addr);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tracing");
    TCase *t = tcase_create("cluster");
    tcase_add_unchecked_fixture(t, cluster_up, cluster_down);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_trace_follows_a_request);
    tcase_add_test(t, test_client_trace_id_is_kept);
    tcase_add_test(t, test_slow_request_logged_at_info);
    tcase_add_test(t, test_sigusr1_changes_level);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
