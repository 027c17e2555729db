/* shalectl reading the observability endpoints, with real processes on
 * loopback: a 3-node meta group without --http, one 3-voter shard group and
 * a router with --http.
 *
 * What it proves: STATUS names the process's http_addr (nodes with --http,
 * the router too; not the meta nodes); `shalectl status` shows each
 * member's /health verdict — ready for the group, "-" for the meta nodes —
 * in the table and in --json, and a member that lost its group's other
 * voters shows not-ready with the reason; `shalectl top --count 2 --json`
 * prints two objects, one per refresh, with non-zero ops/s and latency
 * quantiles for the group and the router while requests run; the text view
 * names every group and the router.
 *
 * Hosts 127.0.0.210.. (meta .210-.212, group .220-.222, router .229). */
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

#define FIRST_HOST 210

static th_cluster_t g_cl;
static char *g_base;
static th_node_t g_rt;
static int g_http;
static char g_http_flag[16];
static int g_ready;
static int g_stopped[3];

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
    g_base = th_tmpdir("ctlobs");
    ck_assert_ptr_nonnull(g_base);
    char host[32];
    snprintf(host, sizeof(host), "127.0.0.%d", FIRST_HOST + 10);
    g_http = th_free_port(host);
    ck_assert_int_gt(g_http, 0);
    snprintf(g_http_flag, sizeof(g_http_flag), ":%d", g_http);
    const char *extra[] = {"--http", g_http_flag, NULL};
    if (th_cluster_start(&g_cl, 1, 3, FIRST_HOST, g_base, extra) != 0 ||
        th_cluster_init(&g_cl, 4096, 20000) != 0) {
        fprintf(stderr, "test_shalectl_obs: cluster did not start\n");
        return;
    }
    th_node_init(&g_rt, 993, "127.0.0.229", g_base);
    snprintf(g_rt.log, sizeof(g_rt.log), "%s/router.log", g_base);
    const char *argv[] = {"--listen", g_rt.addr, "--meta", g_cl.meta.addrs,
                          "--http",   g_http_flag, NULL};
    ck_assert_int_eq(th_router_start(&g_rt, argv, 1), 0);
    for (int i = 0; i < 3; i++)
        if (wait_health(&g_cl.groups[0].nodes[i], 200, 15000) != 0) {
            fprintf(stderr, "test_shalectl_obs: group node %d not ready\n", i);
            return;
        }
    if (wait_health(&g_rt, 200, 15000) != 0) {
        fprintf(stderr, "test_shalectl_obs: router not ready\n");
        th_node_dump_log(&g_rt);
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

/* Run shalectl --meta <meta> ARGS (a shell word list); stdout+stderr into
 * out. Returns the exit status. */
static int ctl(char *out, size_t outlen, const char *args)
{
    return th_shalectl(out, outlen, "--meta %s %s", g_cl.meta.addrs, args);
}

/* The line of out that starts (after spaces) with the member id. */
static const char *row_of(const char *out, uint64_t id, char *line, size_t len)
{
    const char *p = out;
    while (p != NULL && *p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol != NULL ? (size_t)(eol - p) : strlen(p);
        const char *s = p;
        while (*s == ' ')
            s++;
        char want[24];
        snprintf(want, sizeof(want), "%llu ", (unsigned long long)id);
        if (strncmp(s, want, strlen(want)) == 0) {
            snprintf(line, len, "%.*s", (int)n, p);
            return line;
        }
        p = eol != NULL ? eol + 1 : NULL;
    }
    return NULL;
}

START_TEST(test_status_shows_http_addr_and_health)
{
    need_cluster();
    /* STATUS carries http_addr on data nodes and the router, not on meta. */
    Shale__StatusResponse *st = NULL;
    char want[64];
    ck_assert_int_eq(th_node_status(&g_cl.groups[0].nodes[0], &st), 0);
    snprintf(want, sizeof(want), "%s:%d", g_cl.groups[0].nodes[0].host, g_http);
    ck_assert_ptr_nonnull(st->http_addr);
    ck_assert_str_eq(st->http_addr, want);
    shale__status_response__free_unpacked(st, NULL);
    ck_assert_int_eq(th_node_status(&g_rt, &st), 0);
    snprintf(want, sizeof(want), "%s:%d", g_rt.host, g_http);
    ck_assert_str_eq(st->http_addr, want);
    shale__status_response__free_unpacked(st, NULL);
    ck_assert_int_eq(th_node_status(&g_cl.meta.nodes[0], &st), 0);
    ck_assert_ptr_null(st->http_addr);
    shale__status_response__free_unpacked(st, NULL);

    static char out[65536];
    char line[1024];
    ck_assert_msg(ctl(out, sizeof(out), "--timeout 3000 status") == 0, "%s", out);
    ck_assert_msg(strstr(out, "READY") != NULL, "%s", out);
    /* The user line: the harness's admin when it runs secure (--auth
     * everywhere, harness.h), none without --auth. */
    if (th_secure())
        ck_assert_msg(strstr(out, "user: admin (role admin)") != NULL, "%s", out);
    else
        ck_assert_msg(strstr(out, "user:") == NULL, "%s", out);
    /* Rows in order: meta 1..3 then group 1..3; check both kinds by text. */
    const char *grp = strstr(out, "\ngroup 1");
    ck_assert_msg(grp != NULL, "%s", out);
    for (int i = 0; i < 3; i++) {
        ck_assert(row_of(grp, g_cl.groups[0].nodes[i].id, line, sizeof(line)) != NULL);
        ck_assert_msg(strstr(line, " ready ") != NULL, "group row: %s", line);
    }
    char meta_part[32768];
    snprintf(meta_part, sizeof(meta_part), "%.*s", (int)(grp - out), out);
    for (int i = 0; i < 3; i++) {
        ck_assert(row_of(meta_part, g_cl.meta.nodes[i].id, line, sizeof(line)) != NULL);
        ck_assert_msg(strstr(line, " ready ") == NULL && strstr(line, "  -  ") != NULL,
                      "meta row: %s", line);
    }

    ck_assert_msg(ctl(out, sizeof(out), "--timeout 3000 --json status") == 0, "%s", out);
    snprintf(want, sizeof(want), "\"http\":\"%s:%d\",\"ready\":true", g_cl.groups[0].nodes[1].host,
             g_http);
    ck_assert_msg(strstr(out, want) != NULL, "%s", out);
    ck_assert_msg(strstr(out, "\"http\":null,\"ready\":null") != NULL, "%s", out);
    ck_assert_msg(strstr(out, th_secure() ? "\"auth\":{\"user\":\"admin\",\"role\":\"admin\""
                                          : "\"auth\":null") != NULL,
                  "%s", out);
}
END_TEST

/* A member whose group lost its other voters: not-ready, with the reason. */
START_TEST(test_status_shows_not_ready)
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
    static char out[65536];
    char line[1024];
    ck_assert_msg(ctl(out, sizeof(out), "--timeout 1000 status") == 0, "%s", out);
    const char *grp = strstr(out, "\ngroup 1");
    ck_assert_msg(grp != NULL, "%s", out);
    ck_assert(row_of(grp, g->nodes[f].id, line, sizeof(line)) != NULL);
    ck_assert_msg(strstr(line, "not-ready") != NULL, "%s", line);
    ck_assert_msg(strstr(line, "(not ready: no known leader") != NULL, "%s", line);
    ck_assert_msg(ctl(out, sizeof(out), "--timeout 1000 --json status") == 0, "%s", out);
    ck_assert_msg(strstr(out, "\"ready\":false,\"ready_reason\":\"no known leader") != NULL, "%s",
                  out);
    resume_all();
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(wait_health(&g->nodes[i], 200, 20000), 0);
}
END_TEST

/* The number after "key": at p (NaN for null or absent). */
static double json_after(const char *p, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *q = p != NULL ? strstr(p, pat) : NULL;
    if (q == NULL || strncmp(q + strlen(pat), "null", 4) == 0)
        return NAN;
    return strtod(q + strlen(pat), NULL);
}

START_TEST(test_top_json_under_load)
{
    need_cluster();
    char path[700];
    snprintf(path, sizeof(path), "%s/top.out", g_base);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        char bin[600];
        snprintf(bin, sizeof(bin), "%s/cluster/shalectl", th_bin_dir());
        execl(bin, bin, "--meta", g_cl.meta.addrs, "--router", g_rt.addr, "--timeout", "3000",
              "--json", "top", "--count", "2", "--interval", "1", (char *)NULL);
        _exit(127);
    }
    /* Requests through the router while top watches (bounded: 30 s). */
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 5000;
    shale_client_t *c = NULL;
    ck_assert_int_eq(shale_connect(g_rt.addr, &o, &c, NULL), SHALE_OK);
    int st = 0, done = 0, puts_ok = 0;
    long long end = obs_mono_ms() + 30000;
    for (int i = 0; !done && obs_mono_ms() < end; i++) {
        char k[32];
        snprintf(k, sizeof(k), "top-key-%d", i % 500);
        if (shale_put(c, k, strlen(k), "v", 1, NULL) == SHALE_OK)
            puts_ok++;
        done = waitpid(pid, &st, WNOHANG) == pid;
    }
    shale_close(c);
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    static char out[65536];
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
    ck_assert_msg(done && WIFEXITED(st) && WEXITSTATUS(st) == 0, "top: %s", out);
    ck_assert_int_gt(puts_ok, 0);
    /* Two refreshes: two lines, each one JSON object. */
    char *second = strchr(out, '\n');
    ck_assert_msg(second != NULL && out[0] == '{', "%s", out);
    second++;
    ck_assert_msg(second[0] == '{' && strchr(second, '\n') != NULL &&
                      strchr(second, '\n')[1] == '\0',
                  "not two lines: %s", out);
    ck_assert_msg(strstr(second, "\"map_epoch\":1") != NULL, "%s", second);
    const char *grp = strstr(second, "\"groups\":[{\"id\":1,");
    ck_assert_msg(grp != NULL, "%s", second);
    ck_assert_msg(json_after(grp, "ops_per_s") > 0, "group ops/s: %s", second);
    ck_assert_msg(json_after(grp, "p50_ms") > 0, "group p50: %s", second);
    ck_assert_msg(json_after(grp, "p99_ms") >= json_after(grp, "p50_ms"), "%s", second);
    ck_assert_msg(!isnan(json_after(grp, "leader_id")), "%s", second);
    ck_assert_msg(json_after(grp, "up") == 3 && json_after(grp, "scraped") == 3, "%s", second);
    const char *rt = strstr(second, "\"routers\":[{\"addr\":");
    ck_assert_msg(rt != NULL, "%s", second);
    ck_assert_msg(json_after(rt, "ops_per_s") > 0, "router ops/s: %s", second);
    ck_assert_msg(json_after(rt, "p99_ms") > 0, "router p99: %s", second);

    /* The text view: a header, the group's row, the router's row. */
    ck_assert_msg(ctl(out, sizeof(out), "--timeout 3000 top --count 1 --interval 0.2") == 0, "%s",
                  out);
    ck_assert_msg(strstr(out, "GROUP") != NULL && strstr(out, "OPS/S") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "\n1 ") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "\033[") == NULL, "escape codes on a pipe: %s", out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shalectl_obs");
    TCase *t = tcase_create("cluster");
    tcase_add_unchecked_fixture(t, cluster_up, cluster_down);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_status_shows_http_addr_and_health);
    tcase_add_test(t, test_top_json_under_load);
    tcase_add_test(t, test_status_shows_not_ready);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
