/* libshale and shalectl against a real shaled process.
 *
 * The unit tests (test_client) drive the client against scripted peers;
 * this suite checks the same API end to end: versions, CAS of each kind,
 * MGET/MPUT, limits, a server restart under an open client, and shalectl's
 * exit codes and output. Each test starts its own node on its own
 * 127.0.0.x address and stops it by PID. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"
#include "shale.h"

static char *g_base;
static th_node_t g_node;

static void start_node(const char *host)
{
    g_base = th_tmpdir("libshale");
    ck_assert_ptr_nonnull(g_base);
    th_node_init(&g_node, 1, host, g_base);
    ck_assert_int_eq(th_node_start(&g_node, NULL), 0);
    if (th_node_wait_ready(&g_node, 20000) != 0) {
        th_node_dump_log(&g_node);
        ck_abort_msg("shaled did not become ready");
    }
}

static void stop_node(void)
{
    if (g_node.pid > 0) {
        int st = th_node_stop(&g_node, SIGTERM);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "shaled did not exit cleanly (status %d)", st);
    }
    th_rmrf(g_base);
    free(g_base);
}

static shale_client_t *connect_node(void)
{
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];
    shale_options_t o;
    th_client_options(&o);
    int rv = shale_connect(g_node.addr, &o, &c, err);
    ck_assert_msg(rv == SHALE_OK, "connect: %s", err);
    return c;
}

START_TEST(test_versions_and_cas)
{
    start_node("127.0.0.21");
    shale_client_t *c = connect_node();
    /* A node without --auth says so in HELLO_REPLY: no user, no role. */
    shale_whoami_t who;
    ck_assert_int_eq(shale_whoami(c, &who), SHALE_OK);
    ck_assert_int_eq(who.auth, 0);
    ck_assert_str_eq(who.user, "");
    ck_assert_str_eq(who.role, "");
    uint64_t v1 = 0, v2 = 0, v3 = 0;
    ck_assert_int_eq(shale_put(c, "k", 1, "one", 3, &v1), SHALE_OK);
    ck_assert_int_eq(shale_put(c, "k", 1, "two", 3, &v2), SHALE_OK);
    ck_assert_uint_gt(v2, v1);

    shale_value_t val = {0};
    ck_assert_int_eq(shale_get(c, "k", 1, NULL, &val), SHALE_OK);
    ck_assert(val.found);
    ck_assert_uint_eq(val.version, v2);
    ck_assert_uint_eq(val.len, 3);
    ck_assert(memcmp(val.data, "two", 3) == 0);
    shale_value_free(&val);

    /* CAS on a stale version fails and reports the current state. */
    shale_cas_expect_t ex = {.kind = SHALE_CAS_VERSION, .version = v1};
    shale_value_t cur = {0};
    ck_assert_int_eq(shale_cas(c, "k", 1, &ex, "three", 5, 0, &v3, &cur),
                     SHALE_ECASFAILED);
    ck_assert(cur.found);
    ck_assert_uint_eq(cur.version, v2);
    shale_value_free(&cur);
    ex.version = v2;
    ck_assert_int_eq(shale_cas(c, "k", 1, &ex, "three", 5, 0, &v3, NULL), SHALE_OK);
    ck_assert_uint_gt(v3, v2);

    /* CAS on value, and CAS on absence. */
    shale_cas_expect_t exv = {.kind = SHALE_CAS_VALUE, .value = "nope", .len = 4};
    ck_assert_int_eq(shale_cas(c, "k", 1, &exv, "x", 1, 0, NULL, NULL), SHALE_ECASFAILED);
    exv.value = "three";
    exv.len = 5;
    ck_assert_int_eq(shale_cas(c, "k", 1, &exv, "four", 4, 0, NULL, NULL), SHALE_OK);
    shale_cas_expect_t exa = {.kind = SHALE_CAS_ABSENT};
    ck_assert_int_eq(shale_cas(c, "k", 1, &exa, "x", 1, 0, NULL, NULL), SHALE_ECASFAILED);
    ck_assert_int_eq(shale_cas(c, "new", 3, &exa, "x", 1, 0, NULL, NULL), SHALE_OK);

    /* The struct form (shale_compare_and_set): a value swap, a failed
     * compare with the current state, a delete on version. */
    uint64_t v4 = 0, v5 = 0;
    shale_cas_t op = {.key = "new", .klen = 3,
                      .expect = {.kind = SHALE_CAS_VALUE, .value = "x", .len = 1},
                      .value = "y", .vlen = 1};
    ck_assert_int_eq(shale_compare_and_set(c, &op, &v4, NULL), SHALE_OK);
    ck_assert_uint_gt(v4, 0);
    ck_assert_int_eq(shale_compare_and_set(c, &op, NULL, &cur), SHALE_ECASFAILED);
    ck_assert(cur.found && cur.version == v4 && cur.len == 1 && cur.data[0] == 'y');
    shale_value_free(&cur);
    shale_cas_t del = {.key = "new", .klen = 3,
                       .expect = {.kind = SHALE_CAS_VERSION, .version = v4}, .del = 1};
    ck_assert_int_eq(shale_compare_and_set(c, &del, &v5, NULL), SHALE_OK);
    ck_assert_int_eq(shale_get(c, "new", 3, NULL, &val), SHALE_OK);
    ck_assert(!val.found);
    ck_assert_int_eq(shale_compare_and_set(c, NULL, NULL, NULL), SHALE_EINVAL);
    ck_assert_int_eq(shale_put(c, "new", 3, "x", 1, NULL), SHALE_OK);

    /* Delete reports whether the key existed. */
    int existed = -1;
    ck_assert_int_eq(shale_del(c, "k", 1, &existed, NULL), SHALE_OK);
    ck_assert_int_eq(existed, 1);
    ck_assert_int_eq(shale_del(c, "k", 1, &existed, NULL), SHALE_OK);
    ck_assert_int_eq(existed, 0);
    ck_assert_int_eq(shale_get(c, "k", 1, NULL, &val), SHALE_OK);
    ck_assert(!val.found);

    /* A stale read is answered too (single node: current state). */
    shale_read_opts_t ro = {.consistency = SHALE_STALE, .max_staleness_ms = 1000};
    ck_assert_int_eq(shale_get(c, "new", 3, &ro, &val), SHALE_OK);
    ck_assert(val.found);
    shale_value_free(&val);
    shale_close(c);
    stop_node();
}
END_TEST

START_TEST(test_multi_key_and_limits)
{
    start_node("127.0.0.22");
    shale_client_t *c = connect_node();
    enum { N = 100 };
    char keys[N][16], vals[N][16];
    shale_item_t items[N];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "m-%d", i);
        snprintf(vals[i], sizeof(vals[i]), "val-%d", i * 3);
        items[i] = (shale_item_t){keys[i], strlen(keys[i]), vals[i], strlen(vals[i])};
    }
    shale_item_result_t res[N + 1];
    ck_assert_int_eq(shale_mput(c, items, N, res), SHALE_OK);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(res[i].status, SHALE_OK);
    shale_item_results_free(res, N);

    shale_item_t q[N + 1];
    memcpy(q, items, sizeof(items));
    q[N] = (shale_item_t){"absent", 6, NULL, 0};
    ck_assert_int_eq(shale_mget(c, q, N + 1, NULL, res), SHALE_OK);
    for (int i = 0; i < N; i++) {
        ck_assert(res[i].found);
        ck_assert_uint_eq(res[i].len, strlen(vals[i]));
        ck_assert(memcmp(res[i].data, vals[i], res[i].len) == 0);
    }
    ck_assert(!res[N].found);
    shale_item_results_free(res, N + 1);

    /* Over the server's key limit (4 KiB by default): a typed error, a
     * message, and the client keeps working. */
    size_t big = 5000;
    char *bk = malloc(big);
    memset(bk, 'k', big);
    int rv = shale_put(c, bk, big, "v", 1, NULL);
    ck_assert_int_eq(rv, SHALE_ETOOLARGE);
    ck_assert(strlen(shale_errmsg(c)) > 0);
    free(bk);
    ck_assert_int_eq(shale_put(c, "after", 5, "ok", 2, NULL), SHALE_OK);
    shale_close(c);
    stop_node();
}
END_TEST

/* The server is restarted under an open client: calls during the outage
 * fail with a connection error, later ones reconnect and succeed. */
START_TEST(test_client_survives_server_restart)
{
    start_node("127.0.0.23");
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 2000;
    o.connect_timeout_ms = 500;
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];
    ck_assert_int_eq(shale_connect(g_node.addr, &o, &c, err), SHALE_OK);
    ck_assert_int_eq(shale_put(c, "a", 1, "1", 1, NULL), SHALE_OK);
    int st = th_node_stop(&g_node, SIGKILL);
    ck_assert(WIFSIGNALED(st));
    int rv = shale_put(c, "b", 1, "2", 1, NULL);
    ck_assert_msg(rv == SHALE_EIO || rv == SHALE_ETIMEOUT || rv == SHALE_EUNAVAILABLE,
                  "put while down: %d (%s)", rv, shale_errmsg(c));
    ck_assert_int_eq(th_node_start(&g_node, NULL), 0);
    ck_assert_int_eq(th_node_wait_ready(&g_node, 20000), 0);
    rv = SHALE_EIO;
    for (int i = 0; i < 20 && rv != SHALE_OK; i++)
        rv = shale_put(c, "c", 1, "3", 1, NULL);
    ck_assert_msg(rv == SHALE_OK, "no reconnect: %d (%s)", rv, shale_errmsg(c));
    shale_value_t v = {0};
    ck_assert_int_eq(shale_get(c, "a", 1, NULL, &v), SHALE_OK);
    ck_assert(v.found);
    shale_value_free(&v);
    shale_close(c);
    stop_node();
}
END_TEST

/* Run shalectl with args; capture stdout+stderr; return its exit status. */
static int run_ctl(const char *args, char *out, size_t outlen)
{
    return th_shalectl(out, outlen, "%s", args);
}

START_TEST(test_shalectl_exit_codes)
{
    start_node("127.0.0.24");
    char out[4096], args[1024];
    snprintf(args, sizeof(args), "--addr %s put greeting hello", g_node.addr);
    ck_assert_int_eq(run_ctl(args, out, sizeof(out)), 0);
    snprintf(args, sizeof(args), "--addr %s get greeting", g_node.addr);
    ck_assert_int_eq(run_ctl(args, out, sizeof(out)), 0);
    ck_assert_ptr_nonnull(strstr(out, "hello"));
    snprintf(args, sizeof(args), "--addr %s --json get greeting", g_node.addr);
    ck_assert_int_eq(run_ctl(args, out, sizeof(out)), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"version\""));
    snprintf(args, sizeof(args), "--addr %s get missing", g_node.addr);
    ck_assert_int_eq(run_ctl(args, out, sizeof(out)), 1);
    snprintf(args, sizeof(args), "--addr %s cas greeting --expect-value nope x",
             g_node.addr);
    ck_assert_int_eq(run_ctl(args, out, sizeof(out)), 1);
    /* mget: one line per key in the order given; exit 1 when one is absent. */
    snprintf(args, sizeof(args), "--addr %s put second two", g_node.addr);
    ck_assert_int_eq(run_ctl(args, out, sizeof(out)), 0);
    snprintf(args, sizeof(args), "--addr %s mget second greeting", g_node.addr);
    ck_assert_int_eq(run_ctl(args, out, sizeof(out)), 0);
    ck_assert_msg(strncmp(out, "second=two (version ", 20) == 0 &&
                      strstr(out, "\ngreeting=hello (version ") != NULL,
                  "%s", out);
    snprintf(args, sizeof(args), "--addr %s mget greeting missing --stale 5000", g_node.addr);
    ck_assert_int_eq(run_ctl(args, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "missing (not found)") != NULL, "%s", out);
    snprintf(args, sizeof(args), "--addr %s --json mget missing second", g_node.addr);
    ck_assert_int_eq(run_ctl(args, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "[{\"key\":\"missing\",\"found\":false},{\"key\":\"second\","
                              "\"found\":true,\"value\":\"two\"") != NULL,
                  "%s", out);
    /* put from standard input and from a file: any bytes, NUL and
     * newlines included, read back byte for byte. */
    char cmd[2048], path[600];
    snprintf(path, sizeof(path), "%s/value.bin", g_base);
    FILE *vf = fopen(path, "wb");
    ck_assert_ptr_nonnull(vf);
    static const char bin[] = "a\0b\nc\xff";
    fwrite(bin, 1, sizeof(bin) - 1, vf);
    fclose(vf);
    snprintf(args, sizeof(args), "--addr %s put fromfile --file %s", g_node.addr, path);
    ck_assert_int_eq(run_ctl(args, out, sizeof(out)), 0);
    snprintf(cmd, sizeof(cmd), "%s/cluster/shalectl --addr %s put fromstdin - <%s 2>&1",
             th_bin_dir(), g_node.addr, path);
    ck_assert_msg(th_run_capture(cmd, out, sizeof(out)) == 0, "put - : %s", out);
    shale_client_t *vc = NULL;
    char verr[SHALE_ERRMSG_LEN];
    shale_options_t vo;
    th_client_options(&vo);
    ck_assert_int_eq(shale_connect(g_node.addr, &vo, &vc, verr), SHALE_OK);
    const char *names[] = {"fromfile", "fromstdin"};
    for (int i = 0; i < 2; i++) {
        shale_value_t bv = {0};
        ck_assert_int_eq(shale_get(vc, names[i], strlen(names[i]), NULL, &bv), SHALE_OK);
        ck_assert_msg(bv.found && bv.len == sizeof(bin) - 1 && memcmp(bv.data, bin, bv.len) == 0,
                      "%s: %zu bytes", names[i], bv.len);
        shale_value_free(&bv);
    }
    shale_close(vc);
    /* Usage errors are found before connecting. */
    ck_assert_int_eq(run_ctl("--addr 127.0.0.1:1 put onlykey", out, sizeof(out)), 2);
    ck_assert_int_eq(run_ctl("--addr 127.0.0.1:1 mget", out, sizeof(out)), 2);
    ck_assert_int_eq(run_ctl("frobnicate", out, sizeof(out)), 2);
    ck_assert_ptr_nonnull(strstr(out, "frobnicate"));
    /* Nobody listening: a connection error, exit 3. */
    int port = th_free_port("127.0.0.24");
    snprintf(args, sizeof(args), "--addr 127.0.0.24:%d --timeout 500 get k", port);
    ck_assert_int_eq(run_ctl(args, out, sizeof(out)), 3);
    stop_node();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("libshale");
    TCase *tc = tcase_create("process");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_versions_and_cas);
    tcase_add_test(tc, test_multi_key_and_limits);
    tcase_add_test(tc, test_client_survives_server_restart);
    tcase_add_test(tc, test_shalectl_exit_codes);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
