/* The replica consistency check (issue 16; docs/operations.md "Consistency
 * check"), end to end with real processes under the secure harness (TLS,
 * --auth, logged in as admin): a 3-node meta group, one shard group of 3
 * voters plus a read replica, a router. What it proves:
 *  - after writes through the router (plain keys, keys with a TTL, writes
 *    with client sessions), `shalectl check` finds every member — voters
 *    and the replica — agreeing at one index (exit 0, "OK", 4 members), also
 *    for `check 1 --slots` and `--json check`;
 *  - a value changed by hand in one stopped follower's RocksDB (rocksdb C
 *    API, the version kept: what a silent corruption or a bug would leave)
 *    and a row deleted by hand in the stopped read replica's RocksDB are
 *    both found after the members restart: exit 5, "DIVERGENT", the two
 *    slots named each with the member that differs and no other member;
 *  - a check naming a group the map does not have exits 1.
 * Without the check entry going through the log (each member summing at
 * the same index) the healthy run would not agree under concurrent
 * writes; without the comparison the planted rows would pass. The only
 * waits are bounded polls for something that must happen.
 *
 * Hosts 127.0.0.240.. (meta), .250.. (group 1, replica .253), .245
 * (router). */
#include <check.h>
#include <rocksdb/c.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness_cluster.h"
#include "keyhash.h"
#include "shale.h"

#define FIRST_HOST 240
#define SLOTS 64
#define NKEYS 300

static th_cluster_t g_cl;
static char *g_base;
static th_node_t g_router;
static th_node_t g_replica;
static char g_out[65536];
static const char *g_join[] = {"--initial-cluster",
                               "none",
                               "--election-timeout-ms",
                               "400",
                               "--heartbeat-ms",
                               "50",
                               "--group",
                               "1",
                               "--meta",
                               NULL,
                               NULL};

static void stop_all(void)
{
    th_cluster_teardown(&g_cl, &g_base, (th_node_t *const[]){&g_router, &g_replica, NULL});
}

static uint64_t leader_applied(th_group_t *g)
{
    int l = th_group_wait_leader(g, 20000);
    ck_assert_int_ge(l, 0);
    return th_node_applied(&g->nodes[l]);
}

static void add_replica(void)
{
    char gdir[600];
    snprintf(gdir, sizeof(gdir), "%s/g1", g_base);
    th_node_init(&g_replica, 4, "127.0.0.253", gdir);
    g_join[9] = g_cl.meta.addrs;
    ck_assert_int_eq(th_node_start(&g_replica, g_join), 0);
    ck_assert_int_eq(th_node_wait_up(&g_replica, 20000), 0);
    int rc = th_shalectl(g_out, sizeof(g_out), "--meta %s replica add 1 4 %s:%d %s --read-only",
                         g_cl.meta.addrs, g_replica.host, g_replica.raft_port, g_replica.addr);
    ck_assert_msg(rc == 0, "replica add: exit %d: %s", rc, g_out);
    ck_assert_int_eq(th_node_wait_applied(&g_replica, leader_applied(&g_cl.groups[0]), 30000), 0);
}

/* Change (value != NULL: its last byte, version and TTL kept) or delete the
 * data row of key in the stopped node's RocksDB. */
static void plant(const th_node_t *n, const char *key, int del)
{
    char dir[700], *err = NULL;
    snprintf(dir, sizeof(dir), "%s/db", n->dir);
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_compression(o, rocksdb_zstd_compression);
    rocksdb_t *db = rocksdb_open(o, dir, &err);
    ck_assert_msg(db != NULL, "open %s: %s", dir, err ? err : "?");
    uint16_t slot = (uint16_t)shale_key_slot(key, strlen(key), SLOTS);
    uint8_t k[128];
    size_t kl = strlen(key);
    k[0] = (uint8_t)(slot >> 8);
    k[1] = (uint8_t)slot;
    k[2] = 'd';
    memcpy(k + 3, key, kl);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    size_t vl = 0;
    char *v = rocksdb_get(db, ro, (const char *)k, kl + 3, &vl, &err);
    ck_assert_msg(v != NULL && err == NULL && vl > 8, "%s: row of %s not found", dir, key);
    if (del) {
        rocksdb_delete(db, wo, (const char *)k, kl + 3, &err);
    } else {
        v[vl - 1] ^= 0x01;
        rocksdb_put(db, wo, (const char *)k, kl + 3, v, vl, &err);
    }
    ck_assert_msg(err == NULL, "plant in %s: %s", dir, err ? err : "");
    rocksdb_free(v);
    rocksdb_readoptions_destroy(ro);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
}

START_TEST(test_check_finds_divergence)
{
    g_base = th_tmpdir("check");
    ck_assert_ptr_nonnull(g_base);
    ck_assert_int_eq(th_cluster_start(&g_cl, 1, 3, FIRST_HOST, g_base, NULL), 0);
    ck_assert_int_eq(th_cluster_init(&g_cl, SLOTS, 20000), 0);
    ck_assert_int_eq(th_cluster_router(&g_router, &g_cl, "127.0.0.245", g_base), 0);
    add_replica();
    th_group_t *g = &g_cl.groups[0];

    char err[SHALE_ERRMSG_LEN];
    shale_client_t *c = th_connect(g_router.addr, 15000, 20000, err);
    ck_assert_msg(c != NULL, "connect to the router: %s", err);
    char key[64], val[64];
    for (int i = 0; i < NKEYS; i++) {
        snprintf(key, sizeof(key), "key%03d", i);
        snprintf(val, sizeof(val), "value-%d", i);
        int rv = i % 10 == 0 ? shale_put_ttl(c, key, strlen(key), val, strlen(val), 600000, NULL)
                             : shale_put(c, key, strlen(key), val, strlen(val), NULL);
        ck_assert_msg(rv == SHALE_OK, "put %s: %d", key, rv);
    }
    shale_close(c);

    /* Healthy: every member agrees. */
    int rc = th_shalectl(g_out, sizeof(g_out), "--meta %s check", g_cl.meta.addrs);
    ck_assert_msg(rc == 0 && strstr(g_out, "group 1: OK at index ") != NULL &&
                      strstr(g_out, ": 4 members agree") != NULL,
                  "check: exit %d: %s", rc, g_out);
    rc = th_shalectl(g_out, sizeof(g_out), "--meta %s check 1 --slots --rate 1048576",
                     g_cl.meta.addrs);
    ck_assert_msg(rc == 0 && strstr(g_out, "same on every member compared") != NULL &&
                      strstr(g_out, "DIVERGENT") == NULL,
                  "check --slots: exit %d: %s", rc, g_out);
    rc = th_shalectl(g_out, sizeof(g_out), "--meta %s --json check", g_cl.meta.addrs);
    ck_assert_msg(rc == 0 && strstr(g_out, "\"ok\":true") != NULL &&
                      strstr(g_out, "\"kind\":\"replica\"") != NULL,
                  "check --json: exit %d: %s", rc, g_out);
    rc = th_shalectl(g_out, sizeof(g_out), "--meta %s check 7", g_cl.meta.addrs);
    ck_assert_msg(rc == 1 && strstr(g_out, "no group 7") != NULL, "check 7: exit %d: %s", rc,
                  g_out);

    /* Plant: a follower's value changed, a row gone from the replica, in
     * two different slots. */
    const char *kf = "key017", *kr = NULL;
    uint16_t sf = (uint16_t)shale_key_slot(kf, strlen(kf), SLOTS), sr = 0;
    static char krbuf[16];
    for (int i = 0; i < NKEYS && kr == NULL; i++) {
        snprintf(krbuf, sizeof(krbuf), "key%03d", i);
        sr = (uint16_t)shale_key_slot(krbuf, strlen(krbuf), SLOTS);
        if (sr != sf)
            kr = krbuf;
    }
    ck_assert_ptr_nonnull(kr);
    int l = th_group_wait_leader(g, 20000);
    ck_assert_int_ge(l, 0);
    int f = (l + 1) % 3;
    ck_assert_int_eq(th_node_stop(&g->nodes[f], SIGTERM), 0);
    plant(&g->nodes[f], kf, 0);
    ck_assert_int_eq(th_node_stop(&g_replica, SIGTERM), 0);
    plant(&g_replica, kr, 1);
    const char *args[] = {"--group", "1", "--meta", g_cl.meta.addrs, NULL};
    ck_assert_int_eq(th_group_start_node(g, f, args), 0);
    ck_assert_int_eq(th_node_start(&g_replica, g_join), 0);
    ck_assert_int_eq(th_node_wait_up(&g->nodes[f], 20000), 0);
    ck_assert_int_eq(th_node_wait_up(&g_replica, 20000), 0);
    uint64_t top = leader_applied(g);
    ck_assert_int_eq(th_node_wait_applied(&g->nodes[f], top, 30000), 0);
    ck_assert_int_eq(th_node_wait_applied(&g_replica, top, 30000), 0);

    rc = th_shalectl(g_out, sizeof(g_out), "--meta %s check", g_cl.meta.addrs);
    fprintf(stderr, "test_check: planted in slot %u (node %llu) and slot %u (node 4):\n%s", sf,
            (unsigned long long)g->nodes[f].id, sr, g_out);
    ck_assert_msg(rc == 5 && strstr(g_out, "group 1: DIVERGENT at index ") != NULL,
                  "check after planting: exit %d: %s", rc, g_out);
    char want[160];
    snprintf(want, sizeof(want), "slot %u: node %llu (voter, %s) differs in data", sf,
             (unsigned long long)g->nodes[f].id, g->nodes[f].addr);
    ck_assert_msg(strstr(g_out, want) != NULL, "want '%s' in: %s", want, g_out);
    snprintf(want, sizeof(want), "slot %u: node 4 (replica, %s) differs in data", sr,
             g_replica.addr);
    ck_assert_msg(strstr(g_out, want) != NULL, "want '%s' in: %s", want, g_out);
    ck_assert_msg(strstr(g_out, "2 slot(s), 2 member value(s) differ") != NULL,
                  "only the planted rows differ: %s", g_out);
    th_node_stop(&g_router, SIGTERM);
    th_node_stop(&g_replica, SIGTERM);
    th_group_stop_all(g);
    ck_assert_int_eq(th_log_sanitizer_errors(&g_replica), 0);
    for (int i = 0; i < g->n; i++)
        ck_assert_int_eq(th_log_sanitizer_errors(&g->nodes[i]), 0);
    stop_all();
}
END_TEST

static void teardown(void)
{
    stop_all();
}

static Suite *suite(void)
{
    Suite *s = suite_create("check");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_check_finds_divergence);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
