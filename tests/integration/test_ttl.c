/* TTL (issue 14; docs/consistency.md "TTL", docs/storage.md "Expiry"), end
 * to end with real processes under the secure harness (TLS, --auth, logged
 * in as admin): a 3-node meta group, shard groups, a router. What it proves:
 *  - (test_ttl_replicas: one group of 3 voters + a read replica added with
 *    shalectl replica add --read-only) a key put with a short TTL through
 *    the router becomes absent, and once the leader's linearizable read
 *    says so, every member that applied as far (the followers and the
 *    replica, read STALE one by one) says so too, while a long-TTL key and
 *    a plain key are there on each with the same remaining-TTL semantics
 *    (expires_in set / not set);
 *  - the background deletion: every member's keys_expired counter
 *    (StatusResponse) reaches the number of expired keys, i.e. EXPIRE
 *    entries went through the log; again after a leader transfer (the new
 *    leader proposes them); and a stopped follower's RocksDB holds no row
 *    of the expired keys while the long-TTL key's row still has its TTL;
 *  - a watcher of the second key gets its put and then its expiry event;
 *  - shalectl put --ttl / ttl through the router (remaining ms, -1 for no
 *    TTL, exit 1 for an absent key);
 *  - (test_ttl_slot_move: two groups) a slot moved with shalectl slot move
 *    keeps its keys' TTLs: the remaining TTL after the move is no larger
 *    than before and still set; a key that expires after the move is
 *    deleted by the target group's own EXPIRE entries.
 * The only waits are bounded polls for something that must happen; no
 * assertion depends on how fast it happens.
 *
 * Hosts 127.0.0.200.. (meta), .210.. (group 1, replica .213), .220.. (group
 * 2), .205 (router). */
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
#include "store.h"

#define FIRST_HOST 200
#define SLOTS 64
#define SHORT_TTL 1500
#define LONG_TTL 600000

static th_cluster_t g_cl;
static char *g_base;
static th_node_t g_router;
static th_node_t g_replica;
static char g_out[16384];

static void start_cluster_n(int ngroups, int voters)
{
    g_base = th_tmpdir("ttl");
    ck_assert_ptr_nonnull(g_base);
    ck_assert_int_eq(th_cluster_start(&g_cl, ngroups, voters, FIRST_HOST, g_base, NULL), 0);
    ck_assert_int_eq(th_cluster_init(&g_cl, SLOTS, 20000), 0);
    ck_assert_int_eq(th_cluster_router(&g_router, &g_cl, "127.0.0.205", g_base), 0);
}

static void stop_cluster(void)
{
    th_cluster_teardown(&g_cl, &g_base, (th_node_t *const[]){&g_router, &g_replica, NULL});
}

static shale_client_t *connect_to(const char *addrs)
{
    char err[SHALE_ERRMSG_LEN];
    shale_client_t *c = th_connect(addrs, 15000, 20000, err);
    ck_assert_msg(c != NULL, "connect to %s: %s", addrs, err);
    return c;
}

/* Poll (bounded) until a linearizable GET through c finds key absent. */
static void wait_absent(shale_client_t *c, const char *key, int timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;
    for (;;) {
        shale_value_t v = {0};
        int rv = shale_get(c, key, strlen(key), NULL, &v);
        int found = v.found;
        shale_value_free(&v);
        if (rv == SHALE_OK && !found)
            return;
        ck_assert_msg(th_now_ms() < end, "%s still %s after %d ms (rv %d)", key,
                      found ? "present" : "unreadable", timeout_ms, rv);
        usleep(100 * 1000);
    }
}

static uint64_t node_expired(const th_node_t *n, uint64_t *applied)
{
    struct Shale__StatusResponse *st = NULL;
    if (th_node_status(n, &st) != 0 || st == NULL)
        return 0;
    uint64_t e = st->has_keys_expired ? st->keys_expired : 0;
    if (applied != NULL)
        *applied = st->applied_index;
    shale__status_response__free_unpacked(st, NULL);
    return e;
}

/* Every node of nodes[] (running) reports keys_expired >= want. */
static void wait_expired(th_node_t *const *nodes, int n, uint64_t want, int timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;
    for (int i = 0; i < n; i++) {
        uint64_t got;
        while ((got = node_expired(nodes[i], NULL)) < want) {
            ck_assert_msg(th_now_ms() < end, "%s: keys_expired %llu, want %llu", nodes[i]->addr,
                          (unsigned long long)got, (unsigned long long)want);
            usleep(100 * 1000);
        }
    }
}

/* A STALE read of key from the node at addr alone: found, value, expires_in. */
static int stale_get(const char *addr, const char *key, shale_value_t *v)
{
    shale_client_t *c = connect_to(addr);
    shale_read_opts_t ro = {.consistency = SHALE_STALE, .max_staleness_ms = 60000};
    int rv = SHALE_EUNAVAILABLE;
    for (int i = 0; i < 100 && rv != SHALE_OK; i++) {
        rv = shale_get(c, key, strlen(key), &ro, v);
        if (rv != SHALE_OK)
            usleep(100 * 1000);
    }
    shale_close(c);
    return rv;
}

/* The state every member must show once it applied past the leader's
 * index `top`: gone absent, "{t}long" with a TTL of at most LONG_TTL,
 * "{t}plain" without TTL. */
static void check_members(th_node_t *const *nodes, int n, uint64_t top, const char *gone)
{
    for (int i = 0; i < n; i++) {
        ck_assert_msg(th_node_wait_applied(nodes[i], top, 30000) == 0, "%s did not apply %llu",
                      nodes[i]->addr, (unsigned long long)top);
        shale_value_t v = {0};
        ck_assert_int_eq(stale_get(nodes[i]->addr, gone, &v), SHALE_OK);
        ck_assert_msg(!v.found, "%s: %s still present on a member past index %llu", nodes[i]->addr,
                      gone, (unsigned long long)top);
        shale_value_free(&v);
        ck_assert_int_eq(stale_get(nodes[i]->addr, "{t}long", &v), SHALE_OK);
        ck_assert_msg(v.found && v.expires_in_ms >= 1 && v.expires_in_ms <= LONG_TTL,
                      "%s: {t}long found %d expires_in %llu", nodes[i]->addr, v.found,
                      (unsigned long long)v.expires_in_ms);
        shale_value_free(&v);
        ck_assert_int_eq(stale_get(nodes[i]->addr, "{t}plain", &v), SHALE_OK);
        ck_assert(v.found && v.expires_in_ms == 0);
        shale_value_free(&v);
    }
}

static uint64_t leader_applied(th_group_t *g)
{
    int l = th_group_wait_leader(g, 20000);
    ck_assert_int_ge(l, 0);
    return th_node_applied(&g->nodes[l]);
}

/* Add g_replica to group 1 as a read replica (shalectl replica add). */
static void add_replica(void)
{
    char gdir[600];
    snprintf(gdir, sizeof(gdir), "%s/g1", g_base);
    th_node_init(&g_replica, 4, "127.0.0.213", gdir);
    const char *join[] = {"--initial-cluster",
                          "none",
                          "--election-timeout-ms",
                          "400",
                          "--heartbeat-ms",
                          "50",
                          "--group",
                          "1",
                          "--meta",
                          g_cl.meta.addrs,
                          NULL};
    ck_assert_int_eq(th_node_start(&g_replica, join), 0);
    ck_assert_int_eq(th_node_wait_up(&g_replica, 20000), 0);
    int rc = th_shalectl(g_out, sizeof(g_out), "--meta %s replica add 1 4 %s:%d %s --read-only",
                         g_cl.meta.addrs, g_replica.host, g_replica.raft_port, g_replica.addr);
    ck_assert_msg(rc == 0, "replica add: exit %d: %s", rc, g_out);
    struct Shale__StatusResponse *st = NULL;
    ck_assert_int_eq(th_node_wait_applied(&g_replica, leader_applied(&g_cl.groups[0]), 30000), 0);
    ck_assert_int_eq(th_node_status(&g_replica, &st), 0);
    ck_assert_str_eq(st->role, "replica");
    shale__status_response__free_unpacked(st, NULL);
}

static void check_shalectl(void)
{
    int rc = th_shalectl(g_out, sizeof(g_out), "--router %s put --ttl %d {t}ctl hello",
                         g_router.addr, LONG_TTL);
    ck_assert_msg(rc == 0 && strstr(g_out, "OK version ") != NULL, "put --ttl: %d %s", rc, g_out);
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s ttl {t}ctl", g_router.addr);
    long long left = atoll(g_out);
    ck_assert_msg(rc == 0 && left >= 1 && left <= LONG_TTL, "ttl: exit %d: %s", rc, g_out);
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s ttl {t}plain", g_router.addr);
    ck_assert_msg(rc == 0 && strcmp(g_out, "-1\n") == 0, "ttl of a plain key: %d %s", rc, g_out);
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s --json ttl {t}ctl", g_router.addr);
    ck_assert_msg(rc == 0 && strstr(g_out, "\"ttl_ms\":") != NULL, "ttl --json: %d %s", rc, g_out);
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s ttl {t}nothing", g_router.addr);
    ck_assert_msg(rc == 1 && strstr(g_out, "not found") != NULL, "ttl absent: %d %s", rc, g_out);
    /* a put without --ttl clears it */
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s put {t}ctl again", g_router.addr);
    ck_assert_int_eq(rc, 0);
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s ttl {t}ctl", g_router.addr);
    ck_assert_msg(rc == 0 && strcmp(g_out, "-1\n") == 0, "ttl after a plain put: %d %s", rc, g_out);
}

/* Watch callback: counts the put and the expiry event of one key; stops at
 * the expiry (or when the watch ends with an error). */
typedef struct watch_seen {
    int puts, expires, status;
    uint64_t expire_version;
} watch_seen_t;

static int on_watch(const shale_watch_batch_t *b, void *ud)
{
    watch_seen_t *w = ud;
    if (b->status != SHALE_OK) {
        w->status = b->status;
        return 1;
    }
    for (size_t i = 0; i < b->n; i++) {
        if (b->events[i].kind == SHALE_WATCH_PUT)
            w->puts++;
        if (b->events[i].kind == SHALE_WATCH_EXPIRE) {
            w->expires++;
            w->expire_version = b->events[i].version;
        }
    }
    return w->expires > 0;
}

START_TEST(test_ttl_replicas)
{
    start_cluster_n(1, 3);
    add_replica();
    th_group_t *g = &g_cl.groups[0];
    th_node_t *members[] = {&g->nodes[0], &g->nodes[1], &g->nodes[2], &g_replica};
    shale_client_t *c = connect_to(g_router.addr);
    ck_assert_int_eq(shale_put(c, "{t}plain", 8, "p", 1, NULL), SHALE_OK);
    ck_assert_int_eq(shale_put_ttl(c, "{t}long", 7, "l", 1, LONG_TTL, NULL), SHALE_OK);
    ck_assert_int_eq(shale_put_ttl(c, "{t}short1", 9, "s", 1, SHORT_TTL, NULL), SHALE_OK);
    int64_t left = 0;
    ck_assert_int_eq(shale_ttl(c, "{t}long", 7, NULL, &left), SHALE_OK);
    ck_assert(left >= 1 && left <= LONG_TTL);
    ck_assert_int_eq(shale_ttl(c, "{t}plain", 8, NULL, &left), SHALE_OK);
    ck_assert_int_eq(left, -1);
    ck_assert_int_eq(shale_ttl(c, "{t}none", 7, NULL, &left), SHALE_ENOTFOUND);
    ck_assert_int_eq(shale_put_ttl(c, "{t}x", 4, "v", 1, SHALE_TTL_MAX_MS + 1, NULL), SHALE_EINVAL);
    check_shalectl();

    /* Expiry on the leader's log clock, seen the same by every member. */
    wait_absent(c, "{t}short1", 60000);
    check_members(members, 4, leader_applied(g), "{t}short1");
    /* Deleted in the background, through the log: on every member. */
    wait_expired(members, 4, 1, 60000);

    /* A new leader goes on proposing EXPIRE entries. */
    int old = th_group_wait_leader(g, 20000);
    ck_assert_int_ge(old, 0);
    shale_client_t *gc = connect_to(g->nodes[old].addr);
    char msg[SHALE_ERRMSG_LEN];
    int rv = SHALE_EUNAVAILABLE;
    for (int i = 0; i < 20 && rv != SHALE_OK; i++) {
        rv = shale_leader_transfer(gc, 0, msg);
        if (rv != SHALE_OK)
            usleep(200 * 1000);
    }
    ck_assert_msg(rv == SHALE_OK, "leader transfer: %s", shale_errmsg(gc));
    shale_close(gc);
    int now = -1;
    long long end = th_now_ms() + 20000;
    while ((now = th_group_wait_leader(g, 20000)) == old && th_now_ms() < end)
        usleep(100 * 1000);
    ck_assert_msg(now >= 0 && now != old, "leadership did not move");
    fprintf(stderr, "test_ttl: leader moved from %s to %s\n", g->nodes[old].addr,
            g->nodes[now].addr);
    uint64_t from = leader_applied(g);
    uint64_t v2 = 0;
    rv = SHALE_EUNAVAILABLE;
    for (int i = 0; i < 50 && rv != SHALE_OK; i++) {
        rv = shale_put_ttl(c, "{t}short2", 9, "s", 1, SHORT_TTL, &v2);
        if (rv != SHALE_OK)
            usleep(100 * 1000);
    }
    ck_assert_int_eq(rv, SHALE_OK);
    wait_absent(c, "{t}short2", 60000);
    check_members(members, 4, leader_applied(g), "{t}short2");
    wait_expired(members, 4, 2, 60000);
    /* A watcher of the key sees its put and then its expiry (the EXPIRE
     * entry's deletion, with the version deleted). */
    watch_seen_t seen = {0};
    shale_watch_opts_t wo = {.from_revision = from};
    ck_assert_int_eq(shale_watch(c, "{t}short2", 9, &wo, on_watch, &seen), SHALE_OK);
    ck_assert_int_eq(seen.status, 0);
    ck_assert_int_eq(seen.puts, 1);
    ck_assert_int_eq(seen.expires, 1);
    ck_assert_uint_eq(seen.expire_version, v2);
    shale_close(c);

    /* A follower's store: no row of the expired keys, the long key's row
     * with its TTL. */
    int f = (now + 1) % 3;
    ck_assert_int_eq(th_node_stop(&g->nodes[f], SIGTERM), 0);
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/db", g->nodes[f].dir);
    store_options_t so;
    store_options_default(&so);
    so.create_if_missing = 0;
    so.block_cache_bytes = 8u << 20;
    store_t *st = NULL;
    char err[STORE_ERRLEN];
    ck_assert_msg(store_open(dir, &so, &st, err) == 0, "open %s: %s", dir, err);
    uint16_t slot = (uint16_t)shale_key_slot("{t}x", 4, SLOTS);
    store_iter_t *it;
    ck_assert_int_eq(store_iter_slot(st, slot, &it, err), 0);
    const uint8_t *k, *v;
    size_t kl, vl;
    int rows = 0, shorts = 0;
    while (store_iter_next(it, &k, &kl, &v, &vl, NULL) == 1) {
        rows++;
        shorts += kl >= 8 && memcmp(k, "{t}short", 8) == 0;
    }
    store_iter_close(it);
    ck_assert_int_eq(shorts, 0);
    ck_assert_int_ge(rows, 3); /* plain, long, ctl */
    store_value_t lv = {0};
    ck_assert_int_eq(store_get(st, slot, (const uint8_t *)"{t}long", 7, &lv, err), 0);
    ck_assert(lv.found && lv.expires_at > store_clock(st));
    free(lv.value);
    store_close(st);

    th_node_stop(&g_router, SIGTERM);
    ck_assert_int_eq(th_log_sanitizer_errors(&g_router), 0);
    th_node_stop(&g_replica, SIGTERM);
    ck_assert_int_eq(th_log_sanitizer_errors(&g_replica), 0);
    ck_assert_int_eq(th_log_sanitizer_errors(&g->nodes[f]), 0);
    stop_cluster();
}
END_TEST

/* The group owning slot in the newest map. */
static uint64_t slot_owner(uint32_t slot, uint64_t *epoch)
{
    Shale__ClusterMap *m = th_map_newest(&g_cl);
    ck_assert_ptr_nonnull(m);
    uint64_t gid = cmap_slot_group(m, slot);
    if (epoch != NULL)
        *epoch = m->epoch;
    cmap_free(m);
    return gid;
}

START_TEST(test_ttl_slot_move)
{
    start_cluster_n(2, 1);
    shale_client_t *c = connect_to(g_router.addr);
    uint32_t slot = shale_key_slot("{m}", 3, SLOTS);
    uint64_t from = slot_owner(slot, NULL), to = from == 1 ? 2 : 1;
    ck_assert_int_eq(shale_put_ttl(c, "{m}long", 7, "l", 1, LONG_TTL, NULL), SHALE_OK);
    /* Long enough to outlive the move; checked below, not assumed. */
    ck_assert_int_eq(shale_put_ttl(c, "{m}soon", 7, "s", 1, 20000, NULL), SHALE_OK);
    ck_assert_int_eq(shale_put(c, "{m}plain", 8, "p", 1, NULL), SHALE_OK);
    int64_t before = 0, after = 0, soon = 0;
    ck_assert_int_eq(shale_ttl(c, "{m}long", 7, NULL, &before), SHALE_OK);
    int rc = th_shalectl(g_out, sizeof(g_out), "--meta %s slot move %u %llu", g_cl.meta.addrs, slot,
                         (unsigned long long)to);
    ck_assert_msg(rc == 0, "slot move: %s", g_out);
    uint64_t epoch = 0;
    ck_assert_uint_eq(slot_owner(slot, &epoch), to);
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, epoch, 20000), 0);
    ck_assert_int_eq(th_router_wait_epoch(&g_router, epoch, 20000), 0);
    int rv = SHALE_EUNAVAILABLE;
    for (int i = 0; i < 50 && rv != SHALE_OK; i++) {
        rv = shale_ttl(c, "{m}long", 7, NULL, &after);
        if (rv != SHALE_OK)
            usleep(100 * 1000);
    }
    ck_assert_int_eq(rv, SHALE_OK);
    ck_assert_msg(after >= 1 && after <= before, "TTL before the move %lld, after %lld",
                  (long long)before, (long long)after);
    int64_t plain = 0;
    ck_assert_int_eq(shale_ttl(c, "{m}plain", 8, NULL, &plain), SHALE_OK);
    ck_assert_int_eq(plain, -1);
    rv = shale_ttl(c, "{m}soon", 7, NULL, &soon);
    fprintf(stderr, "test_ttl: slot %u moved %llu -> %llu; {m}long %lld -> %lld ms, {m}soon %s\n",
            slot, (unsigned long long)from, (unsigned long long)to, (long long)before,
            (long long)after, rv == SHALE_OK ? "still there" : "already expired");
    if (rv == SHALE_OK) {
        /* It expires on the target, whose own EXPIRE entries delete it. */
        ck_assert(soon >= 1 && soon <= 20000);
        wait_absent(c, "{m}soon", 60000);
        th_node_t *tn[] = {&g_cl.groups[to - 1].nodes[0]};
        wait_expired(tn, 1, 1, 60000);
    } else {
        ck_assert_int_eq(rv, SHALE_ENOTFOUND);
    }
    shale_close(c);
    th_node_stop(&g_router, SIGTERM);
    ck_assert_int_eq(th_log_sanitizer_errors(&g_router), 0);
    stop_cluster();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ttl");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 290);
    tcase_add_checked_fixture(tc, NULL, stop_cluster);
    tcase_add_test(tc, test_ttl_replicas);
    tcase_add_test(tc, test_ttl_slot_move);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
