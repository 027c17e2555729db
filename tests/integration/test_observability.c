/* Observability with real processes on loopback: a 3-node meta group, one
 * 3-voter shard group and a router, each serving --http.
 *
 * What it proves: every process's /metrics parses as the Prometheus text
 * format (HELP/TYPE, cumulative histogram buckets ending with +Inf equal to
 * _count); the request counters move by exactly N after N PUTs (on the
 * group and on the router); malformed HTTP gets 400 and the process keeps
 * serving; /health is ready on every process and flips to 503, with the
 * reason, on a follower whose group lost its other voters (SIGSTOP), then
 * back to ready when they resume.
 *
 * Hosts 127.0.0.230.. (meta .230-.232, group .240-.242, router .249). */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness_cluster.h"
#include "obs_util.h"
#include "shale.h"

#define FIRST_HOST 230
#define NPUTS 25

static th_cluster_t g_cl;
static char *g_base;
static th_node_t g_rt;
static int g_http; /* the HTTP port, the same on every host */
static char g_http_flag[16];
static int g_ready;
static int g_stopped[3]; /* group nodes SIGSTOPped by a test */

static int router_start(th_node_t *n, const char *meta)
{
    const char *argv[] = {"--listen", n->addr, "--meta", meta, "--http", g_http_flag, NULL};
    return th_router_start(n, argv, 1);
}

/* Every process under test: meta 0..2, group 3..5, router 6. */
static th_node_t *proc(int i)
{
    if (i < 3)
        return &g_cl.meta.nodes[i];
    if (i < 6)
        return &g_cl.groups[0].nodes[i - 3];
    return &g_rt;
}
#define NPROCS 7

static char *scrape(const th_node_t *n)
{
    int st = 0;
    char *body = NULL;
    ck_assert_msg(obs_get(n->host, g_http, "/metrics", &st, &body) == 0, "scrape %s failed",
                  n->host);
    ck_assert_int_eq(st, 200);
    char err[256] = "";
    ck_assert_msg(expo_check(body, err, sizeof(err)) == 0, "%s: %s", n->host, err);
    return body;
}

static int health(const th_node_t *n, char **body)
{
    int st = -1;
    if (obs_get(n->host, g_http, "/health", &st, body) != 0)
        return -1;
    return st;
}

/* Poll n's /health until it answers want: 0, or -1 after timeout_ms. */
static int wait_health(const th_node_t *n, int want, int timeout_ms)
{
    return obs_wait_health(n->host, g_http, want, timeout_ms);
}

static void resume_all(void)
{
    for (int i = 0; i < 3; i++)
        if (g_stopped[i] && g_cl.groups[0].nodes[i].pid > 0) {
            kill(g_cl.groups[0].nodes[i].pid, SIGCONT);
            g_stopped[i] = 0;
        }
}

static void cluster_up(void)
{
    g_base = th_tmpdir("obs");
    ck_assert_ptr_nonnull(g_base);
    char host[32];
    snprintf(host, sizeof(host), "127.0.0.%d", FIRST_HOST);
    g_http = th_free_port(host);
    ck_assert_int_gt(g_http, 0);
    snprintf(g_http_flag, sizeof(g_http_flag), ":%d", g_http);
    const char *extra[] = {"--http", g_http_flag, NULL};
    if (th_cluster_start_ex(&g_cl, 1, 3, FIRST_HOST, g_base, extra, extra) != 0 ||
        th_cluster_init(&g_cl, 4096, 20000) != 0) {
        fprintf(stderr, "test_observability: cluster did not start\n");
        return;
    }
    th_node_init(&g_rt, 990, "127.0.0.249", g_base);
    snprintf(g_rt.log, sizeof(g_rt.log), "%s/router.log", g_base);
    ck_assert_int_eq(router_start(&g_rt, g_cl.meta.addrs), 0);
    for (int i = 0; i < NPROCS; i++)
        if (wait_health(proc(i), 200, 15000) != 0) {
            fprintf(stderr, "test_observability: %s not ready\n", proc(i)->host);
            th_node_dump_log(proc(i));
            return;
        }
    g_ready = 1;
}

static void cluster_down(void)
{
    resume_all();
    th_cluster_teardown(&g_cl, &g_base, (th_node_t *const[]){&g_rt, NULL});
}

static void need_cluster(void)
{
    ck_assert_msg(g_ready, "the cluster did not start (see logs above)");
}

/* Every process: the exposition parses, the families of its kind exist. */
START_TEST(test_scrape_every_process)
{
    need_cluster();
    for (int i = 0; i < NPROCS; i++) {
        char *m = scrape(proc(i));
        ck_assert_ptr_nonnull(strstr(m, "# TYPE process_resident_memory_bytes gauge\n"));
        ck_assert(expo_value(m, "process_open_fds", "") > 0);
        ck_assert(expo_value(m, "shale_ready", "") == 1);
        if (i < 6) {
            ck_assert_ptr_nonnull(strstr(m, "# TYPE shale_requests_total counter\n"));
            ck_assert_ptr_nonnull(strstr(m, "# TYPE shale_request_duration_seconds histogram\n"));
            ck_assert(expo_value(m, "shale_raft_term", "") >= 1);
            ck_assert(expo_value(m, "shale_raft_commit_index", "") >= 1);
            ck_assert(expo_value(m, "shale_raft_leader_known", "") == 1);
            ck_assert(expo_value(m, "shale_raft_leader_changes_total", "") >= 1);
            ck_assert(expo_value(m, "shale_raft_entries_appended_total", "") >= 1);
            ck_assert(expo_value(m, "shale_rocksdb_block_cache_capacity_bytes", "") > 0);
        }
        if (i < 3)
            ck_assert(expo_value(m, "shale_map_epoch", "") >= 1);
        else if (i < 6) {
            ck_assert(expo_value(m, "shale_ownership_epoch", "") >= 1);
            ck_assert(expo_value(m, "shale_slots_owned", "") == 4096);
        } else {
            ck_assert(expo_value(m, "shale_router_map_epoch", "") >= 1);
            ck_assert(expo_value(m, "shale_router_map_installs_total", "") >= 1);
            ck_assert(expo_value(m, "shale_router_group_pending_requests", "group=\"1\"") == 0);
            ck_assert_ptr_nonnull(strstr(m, "# TYPE shale_router_retries_total counter\n"));
        }
        free(m);
        char *body = NULL;
        ck_assert_int_eq(health(proc(i), &body), 200);
        ck_assert_str_eq(body, "ready\n");
        free(body);
    }
}
END_TEST

static double group_sum(const char *name, const char *labels)
{
    double sum = 0;
    for (int i = 3; i < 6; i++) {
        char *m = scrape(proc(i));
        double v = expo_value(m, name, labels);
        ck_assert_msg(!isnan(v), "%s{%s} missing on %s", name, labels, proc(i)->host);
        sum += v;
        free(m);
    }
    return sum;
}

/* N PUTs through the router: put/ok moves by exactly N on the group (summed
 * over its members, whichever leads) and on the router. */
START_TEST(test_counters_move)
{
    need_cluster();
    const char *ok = "op=\"put\",outcome=\"ok\"";
    double g0 = group_sum("shale_requests_total", ok);
    double h0 = group_sum("shale_request_duration_seconds_count", "op=\"put\"");
    char *m = scrape(&g_rt);
    double r0 = expo_value(m, "shale_router_requests_total", ok);
    double rh0 = expo_value(m, "shale_router_request_duration_seconds_count", "op=\"put\"");
    free(m);

    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 10000;
    shale_client_t *c = NULL;
    ck_assert_int_eq(shale_connect(g_rt.addr, &o, &c, NULL), SHALE_OK);
    for (int i = 0; i < NPUTS; i++) {
        char k[32];
        snprintf(k, sizeof(k), "obs-key-%d", i);
        ck_assert_int_eq(shale_put(c, k, strlen(k), "v", 1, NULL), SHALE_OK);
    }
    shale_close(c);

    ck_assert(group_sum("shale_requests_total", ok) == g0 + NPUTS);
    /* The histogram counts every answer (a NOT_LEADER from a follower the
     * router tried first too): at least N. */
    ck_assert(group_sum("shale_request_duration_seconds_count", "op=\"put\"") >= h0 + NPUTS);
    m = scrape(&g_rt);
    ck_assert(expo_value(m, "shale_router_requests_total", ok) == r0 + NPUTS);
    ck_assert(expo_value(m, "shale_router_request_duration_seconds_count", "op=\"put\"") ==
              rh0 + NPUTS);
    free(m);
}
END_TEST

/* Garbage on the HTTP port: 400, and the process keeps serving. */
START_TEST(test_garbage_gets_400)
{
    need_cluster();
    static const char big_prefix[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ";
    size_t n = 2 * 8192;
    char *big = malloc(n);
    memset(big, 'a', n);
    memcpy(big, big_prefix, sizeof(big_prefix) - 1);
    const int which[] = {0, 3, 6}; /* a meta node, a data node, the router */
    for (size_t w = 0; w < 3; w++) {
        const th_node_t *p = proc(which[w]);
        ck_assert_int_eq(obs_raw_status(p->host, g_http, "garbage\r\n\r\n", 11), 400);
        ck_assert_int_eq(obs_raw_status(p->host, g_http, "GET /metrics\n\n", 14), 400);
        ck_assert_int_eq(obs_raw_status(p->host, g_http, big, n), 400);
        ck_assert_int_eq(obs_raw_status(p->host, g_http, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n", 29),
                         404);
        ck_assert_int_eq(
            obs_raw_status(p->host, g_http, "PUT /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 35), 405);
        /* A connection that sends half a request and goes away. */
        int fd = obs_connect(p->host, g_http, 2000);
        ck_assert_int_ge(fd, 0);
        obs_send(fd, "GET /met", 8);
        close(fd);
        free(scrape(p));
        ck_assert_int_eq(health(p, NULL), 200);
    }
    free(big);
    /* The data path is unharmed too. */
    Shale__StatusResponse *st = NULL;
    ck_assert_int_eq(th_node_status(proc(3), &st), 0);
    shale__status_response__free_unpacked(st, NULL);
}
END_TEST

/* /health flips to 503 on a follower whose group has no leader, with the
 * reason, and back when the voters resume. */
START_TEST(test_health_follows_leader)
{
    need_cluster();
    th_group_t *g = &g_cl.groups[0];
    int leader = th_group_wait_leader(g, 10000);
    ck_assert_int_ge(leader, 0);
    int f = (leader + 1) % 3;
    for (int i = 0; i < 3; i++)
        if (i != f) {
            ck_assert_int_eq(kill(g->nodes[i].pid, SIGSTOP), 0);
            g_stopped[i] = 1;
        }
    ck_assert_msg(wait_health(&g->nodes[f], 503, 15000) == 0, "follower stayed ready");
    char *body = NULL;
    ck_assert_int_eq(health(&g->nodes[f], &body), 503);
    ck_assert_msg(strstr(body, "no known leader") != NULL, "reason: %s", body);
    free(body);
    char *m = scrape(&g->nodes[f]);
    ck_assert(expo_value(m, "shale_ready", "") == 0);
    ck_assert(expo_value(m, "shale_raft_leader_known", "") == 0);
    free(m);
    /* Meta nodes and the router are unaffected. */
    ck_assert_int_eq(health(proc(0), NULL), 200);
    ck_assert_int_eq(health(&g_rt, NULL), 200);
    resume_all();
    ck_assert_msg(wait_health(&g->nodes[f], 200, 20000) == 0, "follower did not recover");
    m = scrape(&g->nodes[f]);
    ck_assert(expo_value(m, "shale_raft_leader_changes_total", "") >= 1);
    free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("observability");
    TCase *t = tcase_create("cluster");
    tcase_add_unchecked_fixture(t, cluster_up, cluster_down);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_scrape_every_process);
    tcase_add_test(t, test_counters_move);
    tcase_add_test(t, test_garbage_gets_400);
    tcase_add_test(t, test_health_follows_leader);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
