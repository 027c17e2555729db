/* Host names in every address flag, with real shaled and shale-router
 * processes.
 *
 * The test runs in its own mount and network namespaces (it re-executes
 * itself under `unshare --mount --net`) with its own /etc/hosts, a temp
 * file bind-mounted over it, mapping the names below to 127.0.0.x, and an
 * empty /etc/resolv.conf (no DNS: a name not in the file does not resolve).
 * It has to run as root (or where unshare may make both namespaces); it
 * fails, not skips, where it cannot.
 *
 * What it proves:
 *  - an unresolvable --listen or --raft stops shaled with exit 2 and a
 *    message naming the flag, the address and the resolver's reason; the
 *    same for shale-router's --listen;
 *  - a meta group (meta1..3.shale.test), a 3-voter group (n1..3.shale.test)
 *    and a router (router.shale.test), every address flag a host name
 *    (--listen, --raft, --initial-cluster, --meta, the map's member
 *    addresses), under the secure harness (TLS certificates naming the
 *    hosts by DNS SAN only, so the member naming rule is checked by name);
 *    shalectl writes and reads through the router by name, libshale straight
 *    to the group by name;
 *  - the group's leader killed: a new leader serves (the peers reconnect by
 *    name);
 *  - the killed node's name moved to another address in /etc/hosts while
 *    it is down, then restarted: with another voter stopped, writes commit
 *    only if the leader reaches it at its new address — it does, by
 *    looking the name up again on reconnect (no restart of the others);
 *    then it is made leader (shalectl leader transfer) and the router,
 *    whose connection to the old address died with the node, reaches it
 *    at the new one;
 *  - the leader's name removed from /etc/hosts and a router started: its
 *    request fails (no hang) and it logs "cannot resolve '<name:port>'";
 *    the name put back, the same router reaches the leader (retried after
 *    its backoff, looked up again).
 *
 * One process, tests in order (CK_NOFORK). */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness_cluster.h"
#include "shale.h"

#define FIRST_HOST 60 /* meta on .60-.62, group 1 on .70-.72 */
#define ROUTER_IP "127.0.0.65"
#define MOVED_IP "127.0.0.73"

static char *g_base;
static char g_hosts[700];
static char *g_etc; /* the temp dir holding hosts and resolv.conf */
static char g_out[16384];
static th_cluster_t g_cl;
static th_node_t g_router;
static const char *g_moved_ip; /* where the moved node's name points, NULL: not moved */
static int g_moved = -1;       /* index of the node whose name moved */
static int g_hidden = -1;      /* index of the node whose name is left out, -1: none */

/* Write the namespace's /etc/hosts (the bind-mounted file, rewritten in
 * place so the mount keeps pointing at it): every name at its 127.0.0.x,
 * the moved node's at g_moved_ip. */
static int write_hosts_all(void)
{
    FILE *f = fopen(g_hosts, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "127.0.0.1 localhost\n");
    for (int i = 0; i < 3; i++)
        fprintf(f, "127.0.0.%d meta%d.shale.test\n", FIRST_HOST + i, i + 1);
    for (int i = 0; i < 3; i++) {
        char ip[32];
        if (i == g_hidden)
            continue;
        snprintf(ip, sizeof(ip), "127.0.0.%d", FIRST_HOST + 10 + i);
        fprintf(f, "%s n%d.shale.test\n", i == g_moved && g_moved_ip ? g_moved_ip : ip, i + 1);
    }
    fprintf(f, "%s router.shale.test\n", ROUTER_IP);
    return fclose(f) == 0 ? 0 : -1;
}

/* Run cmd (a shell line) and collect its output: its exit status, -1 when
 * it did not exit. */
static int run(const char *cmd)
{
    return th_run_capture(cmd, g_out, sizeof(g_out));
}

START_TEST(test_unresolvable_names_exit_2)
{
    char *dir = th_tmpdir("hosts-bad");
    ck_assert_ptr_nonnull(dir);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "%s/server/shaled --id 1 --listen nope.shale.test:7001 --raft n1.shale.test:7101 "
             "--data %s/d1 2>&1",
             th_bin_dir(), dir);
    int rc = run(cmd);
    ck_assert_msg(rc == 2, "shaled with an unresolvable --listen exited %d:\n%s", rc, g_out);
    ck_assert_msg(strstr(g_out, "--listen") != NULL &&
                      strstr(g_out, "cannot resolve 'nope.shale.test:7001'") != NULL,
                  "no clear message:\n%s", g_out);
    snprintf(cmd, sizeof(cmd),
             "%s/server/shaled --id 1 --listen n1.shale.test:7001 --raft nope.shale.test:7101 "
             "--data %s/d2 2>&1",
             th_bin_dir(), dir);
    rc = run(cmd);
    ck_assert_msg(rc == 2, "shaled with an unresolvable --raft exited %d:\n%s", rc, g_out);
    ck_assert_msg(strstr(g_out, "--raft") != NULL &&
                      strstr(g_out, "cannot resolve 'nope.shale.test:7101'") != NULL,
                  "no clear message:\n%s", g_out);
    snprintf(
        cmd, sizeof(cmd),
        "%s/router/shale-router --listen nope.shale.test:7201 --meta meta1.shale.test:7001 2>&1",
        th_bin_dir());
    rc = run(cmd);
    ck_assert_msg(rc == 2, "shale-router with an unresolvable --listen exited %d:\n%s", rc, g_out);
    ck_assert_msg(strstr(g_out, "cannot resolve 'nope.shale.test:7201'") != NULL,
                  "no clear message:\n%s", g_out);
    /* A name that resolves is accepted where an IP literal was the only
     * form before (the listener binds its address). */
    th_rmrf(dir);
    free(dir);
}
END_TEST

static void stop_all(void)
{
    th_cluster_teardown(&g_cl, &g_base, (th_node_t *const[]){&g_router, NULL});
}

static shale_client_t *connect_group(void)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 5000;
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN] = "";
    int rv = shale_connect(g_cl.groups[0].addrs, &o, &c, err);
    ck_assert_msg(rv == SHALE_OK, "connect to %s: %s", g_cl.groups[0].addrs, err);
    return c;
}

/* Put key=val straight to the group, retrying while it has no leader or
 * quorum (up to 60 s: a wait, not a timing assertion). */
static void put_direct(shale_client_t *c, const char *key, const char *val)
{
    long long end = th_now_ms() + 60000;
    int rv;
    do {
        rv = shale_put(c, key, strlen(key), val, strlen(val), NULL);
        if (rv == SHALE_OK)
            return;
        usleep(200 * 1000);
    } while (th_now_ms() < end);
    ck_abort_msg("put %s straight to the group: %s (%s)", key, shale_strerror(rv), shale_errmsg(c));
}

static void get_direct(shale_client_t *c, const char *key, const char *want)
{
    shale_value_t v;
    long long end = th_now_ms() + 60000;
    int rv;
    do {
        rv = shale_get(c, key, strlen(key), NULL, &v);
        if (rv == SHALE_OK)
            break;
        usleep(200 * 1000);
    } while (th_now_ms() < end);
    ck_assert_msg(rv == SHALE_OK, "get %s: %s", key, shale_strerror(rv));
    ck_assert_msg(v.found && v.len == strlen(want) && memcmp(v.data, want, v.len) == 0,
                  "get %s: not %s", key, want);
    shale_value_free(&v);
}

/* shalectl put/get through the router by name, retrying a failed put
 * while the group elects (the router answers UNAVAILABLE meanwhile). */
static void ctl_put_get(const char *key, const char *val)
{
    long long end = th_now_ms() + 60000;
    int rc;
    do {
        rc = th_shalectl(g_out, sizeof(g_out), "--router %s put %s %s", g_router.addr, key, val);
        if (rc == 0)
            break;
        usleep(200 * 1000);
    } while (th_now_ms() < end);
    ck_assert_msg(rc == 0, "shalectl put through %s: %s", g_router.addr, g_out);
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s get %s", g_router.addr, key);
    ck_assert_msg(rc == 0 && strstr(g_out, val) != NULL, "shalectl get through %s: %s",
                  g_router.addr, g_out);
}

START_TEST(test_cluster_by_name)
{
    g_base = th_tmpdir("hosts");
    ck_assert_ptr_nonnull(g_base);
    th_host_alias_clear();
    char ip[32], name[32];
    for (int i = 0; i < 3; i++) {
        snprintf(ip, sizeof(ip), "127.0.0.%d", FIRST_HOST + i);
        snprintf(name, sizeof(name), "meta%d.shale.test", i + 1);
        ck_assert_int_eq(th_host_alias(ip, name), 0);
        snprintf(ip, sizeof(ip), "127.0.0.%d", FIRST_HOST + 10 + i);
        snprintf(name, sizeof(name), "n%d.shale.test", i + 1);
        ck_assert_int_eq(th_host_alias(ip, name), 0);
    }
    ck_assert_int_eq(th_cluster_start(&g_cl, 1, 3, FIRST_HOST, g_base, NULL), 0);
    th_group_t *g = &g_cl.groups[0];
    /* Nothing numeric in any address flag. */
    ck_assert_msg(strstr(g->initial, "127.") == NULL, "%s", g->initial);
    ck_assert_msg(strstr(g_cl.meta.initial, "127.") == NULL, "%s", g_cl.meta.initial);
    ck_assert_msg(strstr(g_cl.meta.addrs, "127.") == NULL, "%s", g_cl.meta.addrs);
    ck_assert_int_eq(th_cluster_init(&g_cl, 64, 30000), 0);

    th_node_init(&g_router, 1, "router.shale.test", g_base);
    snprintf(g_router.log, sizeof(g_router.log), "%s/router.log", g_base);
    const char *rargs[] = {"--listen",     g_router.addr, "--meta", g_cl.meta.addrs,
                           "--timeout-ms", "10000",       NULL};
    ck_assert_int_eq(th_router_start(&g_router, rargs, 1), 0);
    ck_assert_int_eq(th_router_wait_epoch(&g_router, 1, 20000), 0);

    ctl_put_get("k-before", "v-before");
    shale_client_t *c = connect_group();
    put_direct(c, "d-before", "dv-before");
    get_direct(c, "d-before", "dv-before");

    /* Kill the leader: the others elect one and serve, reconnecting to
     * each other by name. */
    int leader = th_group_wait_leader(g, 20000);
    ck_assert_int_ge(leader, 0);
    th_node_stop(&g->nodes[leader], SIGKILL);
    ck_assert_int_ge(th_group_wait_leader(g, 30000), 0);
    ctl_put_get("k-after-kill", "v-after-kill");
    put_direct(c, "d-after-kill", "dv-after-kill");
    get_direct(c, "k-before", "v-before");

    /* Move the killed node's name to another address while it is down,
     * restart it there. */
    g_moved = leader;
    g_moved_ip = MOVED_IP;
    ck_assert_int_eq(write_hosts_all(), 0);
    const char *gargs[] = {"--group", "1", "--meta", g_cl.meta.addrs, NULL};
    ck_assert_int_eq(th_group_start_node(g, leader, gargs), 0);
    /* Stop a voter other than the leader and the moved node: a write now
     * needs the moved node's vote, reached at its new address. */
    int now_leader = th_group_wait_leader(g, 30000);
    ck_assert_int_ge(now_leader, 0);
    int other = -1;
    for (int i = 0; i < 3; i++)
        if (i != now_leader && i != leader)
            other = i;
    ck_assert_int_ge(other, 0);
    th_node_stop(&g->nodes[other], SIGTERM);
    put_direct(c, "d-after-move", "dv-after-move");
    get_direct(c, "d-after-move", "dv-after-move");
    /* The moved node applied it: it is reached at its new address. */
    Shale__StatusResponse *st = NULL;
    ck_assert_int_eq(th_node_status(&g->nodes[now_leader], &st), 0);
    uint64_t applied = st->applied_index;
    shale__status_response__free_unpacked(st, NULL);
    ck_assert_int_eq(th_node_wait_applied(&g->nodes[leader], applied, 30000), 0);
    /* Make the moved node lead: the router must dial it by name at its
     * new address (its connection to the old one died with the node). */
    long long end = th_now_ms() + 60000;
    int rc;
    do {
        rc = th_shalectl(g_out, sizeof(g_out), "--meta %s leader transfer 1 %llu", g_cl.meta.addrs,
                         (unsigned long long)g->nodes[leader].id);
        if (rc == 0)
            break;
        usleep(300 * 1000);
    } while (th_now_ms() < end);
    ck_assert_msg(rc == 0, "leader transfer to the moved node: %s", g_out);
    ck_assert_int_eq(th_node_wait_ready(&g->nodes[leader], 30000), 0);
    ctl_put_get("k-after-move", "v-after-move");

    /* The leader's name stops resolving and a router starts: its request
     * fails within the client's deadline as with a leader that refuses
     * connections (the router retries the members until its deadline) and
     * the router says why; once the name is back, the same router follows
     * it after its backoff. */
    th_node_stop(&g_router, SIGTERM);
    g_hidden = leader;
    ck_assert_int_eq(write_hosts_all(), 0);
    ck_assert_int_eq(th_router_start(&g_router, rargs, 1), 0);
    ck_assert_int_eq(th_router_wait_epoch(&g_router, 1, 20000), 0);
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s --timeout 3000 put k-hidden v",
                     g_router.addr);
    ck_assert_msg(rc != 0, "a put reached a leader whose name does not resolve: %s", g_out);
    char want[128];
    snprintf(want, sizeof(want), "cannot resolve '%s'", g->nodes[leader].addr);
    FILE *lf = fopen(g_router.log, "r");
    ck_assert_ptr_nonnull(lf);
    static char logbuf[1 << 20];
    size_t ln = fread(logbuf, 1, sizeof(logbuf) - 1, lf);
    logbuf[ln] = '\0';
    fclose(lf);
    ck_assert_msg(strstr(logbuf, want) != NULL, "the router did not log \"%s\"", want);
    g_hidden = -1;
    ck_assert_int_eq(write_hosts_all(), 0);
    ctl_put_get("k-after-unhide", "v-after-unhide");
    shale_close(c);

    th_node_stop(&g_router, SIGTERM);
    ck_assert_int_eq(th_log_sanitizer_errors(&g_router), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(th_log_sanitizer_errors(&g->nodes[i]), 0);
    stop_all();
}
END_TEST

/* Make the namespace's /etc/hosts and /etc/resolv.conf, bring lo up. */
static int setup_namespace(void)
{
    char *dir = th_tmpdir("hosts-etc");
    if (dir == NULL)
        return -1;
    char resolv[700];
    snprintf(g_hosts, sizeof(g_hosts), "%s/hosts", dir);
    snprintf(resolv, sizeof(resolv), "%s/resolv.conf", dir);
    FILE *f = fopen(resolv, "w");
    if (f == NULL || fclose(f) != 0)
        return -1;
    f = fopen(g_hosts, "w");
    if (f == NULL || fclose(f) != 0)
        return -1;
    if (mount(g_hosts, "/etc/hosts", NULL, MS_BIND, NULL) != 0 ||
        mount(resolv, "/etc/resolv.conf", NULL, MS_BIND, NULL) != 0) {
        fprintf(stderr, "test_hostnames: bind mount over /etc: %s\n", strerror(errno));
        return -1;
    }
    if (system("ip link set lo up") != 0) {
        fprintf(stderr, "test_hostnames: cannot bring lo up\n");
        return -1;
    }
    g_etc = dir;
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    if (getenv("SHALE_HOSTNAMES_NS") == NULL) {
        /* Re-execute inside new mount and network namespaces. */
        setenv("SHALE_HOSTNAMES_NS", "1", 1);
        execlp("unshare", "unshare", "--mount", "--net", "--propagation", "private", argv[0],
               (char *)NULL);
        fprintf(stderr, "test_hostnames: cannot run unshare: %s\n", strerror(errno));
        return EXIT_FAILURE;
    }
    if (setup_namespace() != 0 || write_hosts_all() != 0)
        return EXIT_FAILURE;
    Suite *s = suite_create("hostnames");
    TCase *tc = tcase_create("names");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, NULL, stop_all);
    tcase_add_test(tc, test_unresolvable_names_exit_2);
    tcase_add_test(tc, test_cluster_by_name);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    umount2("/etc/hosts", MNT_DETACH);
    umount2("/etc/resolv.conf", MNT_DETACH);
    th_rmrf(g_etc);
    free(g_etc);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
