/* Ordered scans end to end (issue 14; docs/protocol.md "Scans"), with real
 * processes: a 3-node meta group, two shard groups of one voter over 256
 * slots, a router, libshale's shale_scan. What it proves:
 *  - a whole-cluster scan in small pages returns every key exactly once,
 *    in (slot, key) order, with values and versions;
 *  - a prefix scan returns exactly the keys with the prefix;
 *  - a tagged prefix ("{t1}.") is answered from its one slot in one call;
 *  - a scan continued after its cursor's slot moved to the other group
 *    (shalectl slot move between pages) still returns each key once;
 *  - a STALE scan returns the same keys;
 *  - a garbage cursor, or a cursor reused with another prefix, is INVALID;
 *  - case test_scan_stale_follower (one group of 3 voters): a STALE scan
 *    asked of a follower is served there, with every key once; a
 *    linearizable page goes to the leader (NOT_LEADER's hint).
 *
 * Hosts 127.0.0.150.. (meta), .160/.170 (groups), .155 (router). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmap.h"
#include "harness_cluster.h"
#include "keyhash.h"
#include "shale.h"
#include "wire.h"

#define FIRST_HOST 150
#define SLOTS 256
#define NPLAIN 300
#define NTAG 5
#define NALL (NPLAIN + NTAG)

static th_cluster_t g_cl;
static char *g_base;
static th_node_t g_router;
static char g_out[16384];
static char g_keys[NALL][32];

#define CTL(...) th_shalectl(g_out, sizeof(g_out), "--meta %s " __VA_ARGS__)

static void wait_router_epoch(uint64_t epoch)
{
    ck_assert_int_eq(th_router_wait_epoch(&g_router, epoch, 10000), 0);
}

static void start_cluster(void)
{
    g_base = th_tmpdir("scan");
    ck_assert_ptr_nonnull(g_base);
    ck_assert_int_eq(th_cluster_start(&g_cl, 2, 1, FIRST_HOST, g_base, NULL), 0);
    /* The map over SLOTS slots, split evenly (as shalectl init does). */
    ck_assert_int_eq(th_cluster_init(&g_cl, SLOTS, 20000), 0);
    const uint64_t epoch = 1;
    th_node_init(&g_router, 1, "127.0.0.155", g_base);
    snprintf(g_router.log, sizeof(g_router.log), "%s/router.log", g_base);
    const char *argv[] = {"--listen",    g_router.addr, "--meta", g_cl.meta.addrs, "--timeout-ms",
                          "10000",       "--log-level", "debug",  NULL};
    ck_assert_int_eq(th_router_start(&g_router, argv, 1), 0);
    wait_router_epoch(epoch);
}

static void stop_cluster(void)
{
    th_cluster_teardown(&g_cl, &g_base, (th_node_t *const[]){&g_router, NULL});
}

static shale_client_t *connect_router(void)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 15000;
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN] = "";
    int rv = shale_connect(g_router.addr, &o, &c, err);
    ck_assert_msg(rv == SHALE_OK, "connect: %s", err);
    return c;
}

/* Lines of the router's log holding a and b (its request log at debug). */
static int router_log_count(const char *a, const char *b)
{
    int n = 0;
    FILE *f = fopen(g_router.log, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL);
    fclose(f);
    return n;
}

static int key_index(const uint8_t *k, size_t kl)
{
    for (int i = 0; i < NALL; i++)
        if (strlen(g_keys[i]) == kl && memcmp(g_keys[i], k, kl) == 0)
            return i;
    return -1;
}

/* (slot, key) order of consecutive keys. */
static int before(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    uint32_t sa = shale_key_slot(a, al, SLOTS), sb = shale_key_slot(b, bl, SLOTS);
    if (sa != sb)
        return sa < sb;
    int c = memcmp(a, b, al < bl ? al : bl);
    return c < 0 || (c == 0 && al < bl);
}

/* Scan everything with prefix in pages of `limit`; counts[i] gets how many
 * times key i came back. move_after_pages > 0: after that many pages, the
 * cursor's slot moves to the other group. Returns the number of calls. */
static int scan_all(shale_client_t *c, const char *prefix, uint32_t limit,
                    const shale_read_opts_t *ro, int *counts, int move_after_pages)
{
    char *cursor = NULL;
    int calls = 0;
    uint8_t last[64];
    size_t lastlen = 0;
    for (;;) {
        shale_scan_opts_t o = {prefix, prefix ? strlen(prefix) : 0, limit, 0, ro};
        shale_scan_result_t r;
        int rv = shale_scan(c, cursor, &o, &r);
        ck_assert_msg(rv == SHALE_OK, "scan: %s", shale_errmsg(c));
        calls++;
        ck_assert_uint_le(r.n, limit);
        for (size_t i = 0; i < r.n; i++) {
            int k = key_index(r.items[i].key, r.items[i].klen);
            ck_assert_msg(k >= 0, "unknown key %.*s", (int)r.items[i].klen, r.items[i].key);
            counts[k]++;
            ck_assert(r.items[i].vlen == strlen(g_keys[k]) + 2 &&
                      memcmp(r.items[i].value, "v-", 2) == 0 &&
                      memcmp(r.items[i].value + 2, g_keys[k], strlen(g_keys[k])) == 0);
            ck_assert_uint_gt(r.items[i].version, 0);
            if (lastlen > 0)
                ck_assert_msg(before(last, lastlen, r.items[i].key, r.items[i].klen),
                              "out of (slot, key) order: %.*s then %s", (int)lastlen, last,
                              g_keys[k]);
            memcpy(last, r.items[i].key, r.items[i].klen);
            lastlen = r.items[i].klen;
        }
        free(cursor);
        cursor = r.cursor ? strdup(r.cursor) : NULL;
        shale_scan_result_free(&r);
        if (cursor == NULL)
            break;
        if (move_after_pages > 0 && calls == move_after_pages) {
            uint32_t slot;
            uint8_t *after;
            size_t alen;
            char msg[200];
            ck_assert_int_eq(wire_cursor_decode((const uint8_t *)cursor, strlen(cursor), SLOTS,
                                                (const uint8_t *)prefix,
                                                prefix ? strlen(prefix) : 0, &slot, &after,
                                                &alen, msg, sizeof(msg)), 0);
            ck_assert_msg(alen > 0, "the move should land mid-slot");
            free(after);
            Shale__ClusterMap *m = th_map_newest(&g_cl);
            uint64_t owner = cmap_slot_group(m, slot);
            cmap_free(m);
            int rc = CTL("slot move %u %llu", g_cl.meta.addrs, slot,
                         (unsigned long long)(owner == 1 ? 2 : 1));
            ck_assert_msg(rc == 0, "slot move: %s", g_out);
            m = th_map_newest(&g_cl);
            ck_assert_uint_eq(cmap_slot_group(m, slot), owner == 1 ? 2 : 1);
            uint64_t epoch = m->epoch;
            cmap_free(m);
            ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, epoch, 20000), 0);
            wait_router_epoch(epoch);
            fprintf(stderr, "test_scan: slot %u moved from group %llu mid-scan\n", slot,
                    (unsigned long long)owner);
        }
        ck_assert_int_lt(calls, 10000);
    }
    return calls;
}

START_TEST(test_scan_through_router)
{
    start_cluster();
    shale_client_t *c = connect_router();
    for (int i = 0; i < NPLAIN; i++)
        snprintf(g_keys[i], sizeof(g_keys[i]), "k%03d", i);
    for (int i = 0; i < NTAG; i++)
        snprintf(g_keys[NPLAIN + i], sizeof(g_keys[0]), "{t1}.%d", i);
    for (int i = 0; i < NALL; i++) {
        char v[48];
        snprintf(v, sizeof(v), "v-%.31s", g_keys[i]);
        ck_assert_int_eq(shale_put(c, g_keys[i], strlen(g_keys[i]), v, strlen(v), NULL),
                         SHALE_OK);
    }
    /* Both groups hold keys. */
    Shale__ClusterMap *m = th_map_newest(&g_cl);
    int in_group[3] = {0, 0, 0};
    for (int i = 0; i < NALL; i++)
        in_group[cmap_slot_group(m, shale_key_slot(g_keys[i], strlen(g_keys[i]), SLOTS))] = 1;
    cmap_free(m);
    ck_assert(in_group[1] && in_group[2]);

    int counts[NALL];
    memset(counts, 0, sizeof(counts));
    int calls = scan_all(c, NULL, 7, NULL, counts, 0);
    for (int i = 0; i < NALL; i++)
        ck_assert_msg(counts[i] == 1, "%s returned %d times", g_keys[i], counts[i]);
    fprintf(stderr, "test_scan: whole cluster in %d calls\n", calls);

    /* Prefix. */
    memset(counts, 0, sizeof(counts));
    scan_all(c, "k1", 10, NULL, counts, 0);
    for (int i = 0; i < NALL; i++)
        ck_assert_int_eq(counts[i], strncmp(g_keys[i], "k1", 2) == 0);

    /* Tagged prefix: one call, the cursor is done, and one SCAN to the
     * router, of the tag's slot (the client knows S from the scans above). */
    usleep(300 * 1000);
    int before_n = router_log_count(" op=scan ", NULL);
    memset(counts, 0, sizeof(counts));
    ck_assert_int_eq(scan_all(c, "{t1}.", 100, NULL, counts, 0), 1);
    for (int i = 0; i < NALL; i++)
        ck_assert_int_eq(counts[i], i >= NPLAIN);
    char tagslot[32];
    snprintf(tagslot, sizeof(tagslot), " slot=%u ", shale_key_slot("t1", 2, SLOTS));
    long long end = th_now_ms() + 5000;
    while (router_log_count(" op=scan ", NULL) == before_n && th_now_ms() < end)
        usleep(50 * 1000);
    usleep(300 * 1000);
    ck_assert_int_eq(router_log_count(" op=scan ", NULL) - before_n, 1);
    ck_assert_int_ge(router_log_count(" op=scan ", tagslot), 1);

    /* STALE. */
    shale_read_opts_t ro = {SHALE_STALE, 10000};
    memset(counts, 0, sizeof(counts));
    scan_all(c, NULL, 50, &ro, counts, 0);
    for (int i = 0; i < NALL; i++)
        ck_assert_int_eq(counts[i], 1);

    /* A slot moves mid-scan (after the 3rd page of 2 keys: mid-slot). */
    memset(counts, 0, sizeof(counts));
    scan_all(c, NULL, 2, NULL, counts, 3);
    for (int i = 0; i < NALL; i++)
        ck_assert_msg(counts[i] == 1, "after a move: %s returned %d times", g_keys[i], counts[i]);

    /* Bad cursors. */
    shale_scan_result_t r;
    ck_assert_int_eq(shale_scan(c, "not-a-cursor", NULL, &r), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(shale_errmsg(c), "cursor"));
    ck_assert_int_eq(shale_scan(c, "0801", NULL, &r), SHALE_EINVAL);
    char *cur = wire_cursor_encode(3, (const uint8_t *)"k", 1, (const uint8_t *)"k1", 2, NULL);
    shale_scan_opts_t o = {"k2", 2, 10, 0, NULL};
    ck_assert_int_eq(shale_scan(c, cur, &o, &r), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(shale_errmsg(c), "prefix"));
    free(cur);
    cur = wire_cursor_encode(SLOTS + 5, NULL, 0, NULL, 0, NULL);
    ck_assert_int_eq(shale_scan(c, cur, NULL, &r), SHALE_EINVAL);
    free(cur);

    /* shalectl scan: a tagged prefix in one page (cursor -), then --limit
     * with --cursor, --all, --json, a bad cursor (exit code non-zero). */
    int rc = th_shalectl(g_out, sizeof(g_out), "--router %s scan --prefix '{t1}.'", g_router.addr);
    ck_assert_msg(rc == 0, "shalectl scan: %s", g_out);
    ck_assert_msg(strstr(g_out, "{t1}.0=v-{t1}.0\n{t1}.1=v-{t1}.1\n") != NULL &&
                      strstr(g_out, "{t1}.4=v-{t1}.4\ncursor -\n") != NULL, "%s", g_out);
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s scan --prefix '{t1}.' --limit 2",
                     g_router.addr);
    ck_assert_msg(rc == 0 && strstr(g_out, "{t1}.1=v-{t1}.1\ncursor ") != NULL, "%s", g_out);
    char *cl = strstr(g_out, "cursor ");
    char cbuf[512];
    snprintf(cbuf, sizeof(cbuf), "%s", cl + 7);
    cbuf[strcspn(cbuf, "\n")] = '\0';
    ck_assert_str_ne(cbuf, "-");
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s scan --prefix '{t1}.' --limit 2 --cursor %s",
                     g_router.addr, cbuf);
    ck_assert_msg(rc == 0 && strncmp(g_out, "{t1}.2=v-{t1}.2\n{t1}.3=v-{t1}.3\ncursor ", 38) == 0,
                  "%s", g_out);
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s --json scan --prefix k29 --all --limit 3",
                     g_router.addr);
    ck_assert_msg(rc == 0, "%s", g_out);
    for (int i = 290; i < 300; i++) {
        char want[64];
        snprintf(want, sizeof(want), "{\"key\":\"k%d\",\"value\":\"v-k%d\"", i, i);
        ck_assert_msg(strstr(g_out, want) != NULL, "no %s in %s", want, g_out);
    }
    ck_assert_msg(strstr(g_out, "\"cursor\":null}") != NULL, "%s", g_out);
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s scan --cursor zz", g_router.addr);
    ck_assert_msg(rc != 0 && strstr(g_out, "cursor") != NULL, "bad cursor: rc %d %s", rc, g_out);

    shale_close(c);
    th_node_stop(&g_router, SIGTERM);
    ck_assert_int_eq(th_log_sanitizer_errors(&g_router), 0);
    stop_cluster();
}
END_TEST

START_TEST(test_scan_stale_follower)
{
    g_base = th_tmpdir("scanf");
    ck_assert_ptr_nonnull(g_base);
    ck_assert_int_eq(th_cluster_start(&g_cl, 1, 3, FIRST_HOST, g_base, NULL), 0);
    ck_assert_int_eq(th_cluster_init(&g_cl, SLOTS, 20000), 0);
    shale_client_t *c = NULL;
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 15000;
    char err[SHALE_ERRMSG_LEN] = "";
    ck_assert_msg(shale_connect(g_cl.groups[0].addrs, &o, &c, err) == SHALE_OK, "%s", err);
    for (int i = 0; i < 40; i++) {
        snprintf(g_keys[i], sizeof(g_keys[i]), "f%02d", i);
        char v[48];
        snprintf(v, sizeof(v), "v-%.31s", g_keys[i]);
        ck_assert_int_eq(shale_put(c, g_keys[i], strlen(g_keys[i]), v, strlen(v), NULL), SHALE_OK);
    }
    shale_close(c);
    /* A follower. */
    const th_node_t *f = NULL;
    for (int i = 0; i < g_cl.groups[0].n && f == NULL; i++) {
        Shale__StatusResponse *st = NULL;
        if (th_node_status(&g_cl.groups[0].nodes[i], &st) == 0) {
            if (strcmp(st->role, "follower") == 0)
                f = &g_cl.groups[0].nodes[i];
            shale__status_response__free_unpacked(st, NULL);
        }
    }
    ck_assert_ptr_nonnull(f);
    ck_assert_msg(shale_connect(f->addr, &o, &c, err) == SHALE_OK, "%s", err);
    shale_read_opts_t ro = {SHALE_STALE, 10000};
    int counts[NALL];
    long long end = th_now_ms() + 10000;
    for (;;) { /* the follower applies the last puts shortly */
        memset(counts, 0, sizeof(counts));
        scan_all(c, "f", 9, &ro, counts, 0);
        int total = 0;
        for (int i = 0; i < 40; i++) {
            ck_assert_int_le(counts[i], 1);
            total += counts[i];
        }
        if (total == 40 || th_now_ms() > end) {
            ck_assert_int_eq(total, 40);
            break;
        }
        usleep(100 * 1000);
    }
    shale_scan_result_t r;
    shale_scan_opts_t so = {"f", 1, 10, 0, NULL};
    /* A linearizable page is the leader's: libshale follows NOT_LEADER's
     * hint there (the follower does not serve it). */
    ck_assert_int_eq(shale_scan(c, NULL, &so, &r), SHALE_OK);
    ck_assert_uint_eq(r.n, 10);
    shale_scan_result_free(&r);
    shale_close(c);
    stop_cluster();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("scan");
    TCase *tc = tcase_create("router");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, NULL, stop_cluster);
    tcase_add_test(tc, test_scan_through_router);
    tcase_add_test(tc, test_scan_stale_follower);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
