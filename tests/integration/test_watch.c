/* WATCH end to end (issue 14; docs/protocol.md "Watch", docs/consistency.md
 * "Watch") through the router, with real processes under the secure harness
 * (TLS, --auth, logged in as admin): a 3-node meta group, shard groups, a
 * router. What it proves:
 *  - (test_watch_router, one group of 3 voters) an async watcher
 *    (shale_watch_async) on a hash-tag prefix, from now, sees exactly the
 *    writer's acknowledged changes — puts, deletes of present keys, both
 *    puts of each transaction, both items of each MPUT — in the writer's
 *    order with the acknowledged versions: no gap, no duplicate, while a
 *    follower (likely serving the watch) and later the group leader are
 *    killed (SIGKILL) mid-stream and restarted (a retried write applied
 *    once is seen once);
 *  - a restarted member's cache starts at its restart: asked directly from
 *    an older revision it answers COMPACTED; through the router the resume
 *    succeeds whichever member the router asks first (it tries the others);
 *  - `shalectl watch --from REV --group G --count N` resumes exactly at
 *    REV (the same events, same order);
 *  - a resume from a revision every member's cache dropped (small
 *    --watch-cache-changes, many writes since) is COMPACTED (shalectl exit
 *    1 with the message telling to re-read and watch from now);
 *  - (test_watch_slot_move, two groups) a watch whose slot moves to the
 *    other group (shalectl slot move) ends with WRONG_GROUP saying to watch
 *    from now, after a prefix of the writes in order; a new watch from now
 *    follows the new group; a resume pinned to the old group is refused.
 *
 * Hosts 127.0.0.40.. (meta), .50.. (group 1), .60 (group 2), .45 (router). */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cmap.h"
#include "harness_cluster.h"
#include "keyhash.h"
#include "shale.h"

#define FIRST_HOST 40
#define SLOTS 64
#define MAX_EV 4096
#define CACHE_CHANGES "2000"

static th_cluster_t g_cl;
static char *g_base;
static th_node_t g_router;
static char g_out[65536];

static void start_cluster_n(int ngroups, int voters)
{
    g_base = th_tmpdir("watch");
    ck_assert_ptr_nonnull(g_base);
    const char *extra[] = {"--watch-cache-changes", CACHE_CHANGES, NULL};
    ck_assert_int_eq(th_cluster_start(&g_cl, ngroups, voters, FIRST_HOST, g_base, extra), 0);
    ck_assert_int_eq(th_cluster_init(&g_cl, SLOTS, 20000), 0);
    ck_assert_int_eq(th_cluster_router(&g_router, &g_cl, "127.0.0.45", g_base), 0);
}

static void stop_cluster(void)
{
    th_cluster_teardown(&g_cl, &g_base, (th_node_t *const[]){&g_router, NULL});
}

static shale_client_t *connect_to(const char *addrs)
{
    char err[SHALE_ERRMSG_LEN];
    shale_client_t *c = th_connect(addrs, 20000, 20000, err);
    ck_assert_msg(c != NULL, "connect to %s: %s", addrs, err);
    return c;
}

/* ---- One change: what the writer was acknowledged, what the watcher saw ---*/

typedef struct change {
    uint64_t revision; /* watcher only */
    int kind;          /* SHALE_WATCH_PUT / DELETE */
    char key[32];
    uint64_t version;
} change_t;

static change_t g_want[MAX_EV];
static size_t g_nwant;

static void want(int kind, const char *key, uint64_t version)
{
    ck_assert_uint_lt(g_nwant, MAX_EV);
    change_t *c = &g_want[g_nwant++];
    c->kind = kind;
    snprintf(c->key, sizeof(c->key), "%s", key);
    c->version = version;
}

/* ---- The async watcher (its own thread and loop) ---------------------------*/

typedef struct watcher {
    pthread_t th;
    const char *prefix;
    pthread_mutex_t mu;
    change_t ev[MAX_EV];
    size_t n;
    int ready; /* the first batch came (the watch's start is fixed) */
    int ended; /* the end was reported */
    int end_status;
    char end_msg[SHALE_ERRMSG_LEN];
    uint64_t group;    /* of the last batch */
    uint64_t revision; /* of the last batch */
    int overflow;
    volatile int stop;
    int close_only; /* stop by closing the client, without canceling the watch */
    uv_loop_t loop;
    uv_timer_t timer;
    shale_client_t *c;
    shale_watch_t *w;
} watcher_t;

static void on_batch(shale_watch_t *w, const shale_watch_batch_t *b, void *ud)
{
    (void)w;
    watcher_t *wt = ud;
    pthread_mutex_lock(&wt->mu);
    if (b->status != SHALE_OK) {
        wt->ended = 1;
        wt->end_status = b->status;
        snprintf(wt->end_msg, sizeof(wt->end_msg), "%s", b->errmsg != NULL ? b->errmsg : "");
        wt->w = NULL;
    } else {
        for (size_t i = 0; i < b->n; i++) {
            if (wt->n == MAX_EV) {
                wt->overflow = 1;
                break;
            }
            change_t *c = &wt->ev[wt->n++];
            c->revision = b->events[i].revision;
            c->kind = b->events[i].kind;
            snprintf(c->key, sizeof(c->key), "%.*s", (int)b->events[i].klen,
                     (const char *)b->events[i].key);
            c->version = b->events[i].version;
        }
        wt->group = b->group;
        wt->revision = b->revision;
        wt->ready = 1;
    }
    pthread_mutex_unlock(&wt->mu);
}

static void on_tick(uv_timer_t *t)
{
    watcher_t *wt = t->data;
    if (!wt->stop)
        return;
    pthread_mutex_lock(&wt->mu);
    if (wt->w != NULL && !wt->close_only) {
        shale_watch_cancel(wt->w);
        wt->w = NULL;
    }
    pthread_mutex_unlock(&wt->mu);
    shale_client_close(wt->c, NULL);
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
}

static void *watch_main(void *arg)
{
    watcher_t *wt = arg;
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 10000;
    uv_loop_init(&wt->loop);
    ck_assert_int_eq(shale_client_open(&wt->loop, g_router.addr, &o, &wt->c), SHALE_OK);
    shale_watch_opts_t wo = {.prefix = 1};
    pthread_mutex_lock(&wt->mu);
    ck_assert_int_eq(
        shale_watch_async(wt->c, wt->prefix, strlen(wt->prefix), &wo, on_batch, wt, &wt->w),
        SHALE_OK);
    pthread_mutex_unlock(&wt->mu);
    uv_timer_init(&wt->loop, &wt->timer);
    wt->timer.data = wt;
    uv_timer_start(&wt->timer, on_tick, 20, 20);
    uv_run(&wt->loop, UV_RUN_DEFAULT);
    uv_loop_close(&wt->loop);
    return NULL;
}

static void watcher_start(watcher_t *wt, const char *prefix)
{
    memset(wt, 0, sizeof(*wt));
    wt->prefix = prefix;
    pthread_mutex_init(&wt->mu, NULL);
    ck_assert_int_eq(pthread_create(&wt->th, NULL, watch_main, wt), 0);
    long long end = th_now_ms() + 30000;
    for (;;) {
        pthread_mutex_lock(&wt->mu);
        int ready = wt->ready, ended = wt->ended;
        pthread_mutex_unlock(&wt->mu);
        ck_assert_msg(!ended, "watch ended before its first batch: %s", wt->end_msg);
        if (ready)
            break;
        ck_assert_msg(th_now_ms() < end, "no first watch batch within 30 s");
        usleep(20 * 1000);
    }
}

static void watcher_stop(watcher_t *wt)
{
    wt->stop = 1;
    pthread_join(wt->th, NULL);
    pthread_mutex_destroy(&wt->mu);
}

/* Wait until the watcher has n events (or ended); returns what it has. */
static size_t watcher_wait(watcher_t *wt, size_t n, int timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&wt->mu);
        size_t have = wt->n;
        int ended = wt->ended;
        pthread_mutex_unlock(&wt->mu);
        if (have >= n || ended || th_now_ms() >= end)
            return have;
        usleep(20 * 1000);
    }
}

/* The watcher saw exactly g_want[0..n), in order, revisions not going back. */
static void check_exact(watcher_t *wt, size_t n)
{
    pthread_mutex_lock(&wt->mu);
    ck_assert_int_eq(wt->overflow, 0);
    ck_assert_msg(wt->n == n, "watcher saw %zu changes, the writer was acknowledged %zu", wt->n, n);
    for (size_t i = 0; i < n; i++) {
        const change_t *a = &wt->ev[i], *b = &g_want[i];
        ck_assert_msg(a->kind == b->kind && strcmp(a->key, b->key) == 0 && a->version == b->version,
                      "change %zu: saw kind %d %s version %llu, acknowledged kind %d %s "
                      "version %llu",
                      i, a->kind, a->key, (unsigned long long)a->version, b->kind, b->key,
                      (unsigned long long)b->version);
        if (i > 0)
            ck_assert_uint_ge(a->revision, wt->ev[i - 1].revision);
        if (a->kind == SHALE_WATCH_PUT) /* a new version names its entry */
            ck_assert_uint_eq(a->version >> 16, a->revision);
    }
    pthread_mutex_unlock(&wt->mu);
}

/* ---- The writer ------------------------------------------------------------*/

/* Operation i on the "{w}" keys: puts, deletes, 2-put transactions, 2-item
 * MPUTs; every acknowledged change appended to g_want in order. */
static void write_one(shale_client_t *c, int i)
{
    char key[32], key2[32], val[32];
    snprintf(key, sizeof(key), "{w}k%d", i % 16);
    snprintf(val, sizeof(val), "v%d", i);
    uint64_t v = 0;
    int rv;
    switch (i % 8) {
    case 6: {
        int existed = 0;
        rv = shale_del(c, key, strlen(key), &existed, &v);
        ck_assert_msg(rv == SHALE_OK, "del %s: %s", key, shale_errmsg(c));
        if (existed)
            want(SHALE_WATCH_DELETE, key, v);
        break;
    }
    case 7: {
        snprintf(key2, sizeof(key2), "{w}t%d", i % 5);
        shale_txn_op_t ops[] = {{.type = SHALE_TXN_PUT,
                                 .key = key,
                                 .klen = strlen(key),
                                 .value = val,
                                 .vlen = strlen(val)},
                                {.type = SHALE_TXN_GET, .key = key, .klen = strlen(key)},
                                {.type = SHALE_TXN_PUT,
                                 .key = key2,
                                 .klen = strlen(key2),
                                 .value = val,
                                 .vlen = strlen(val)}};
        shale_txn_t t = {NULL, 0, ops, 3, NULL, 0};
        int ok = 0;
        shale_item_result_t *res = NULL;
        size_t n = 0;
        rv = shale_txn(c, &t, &ok, &res, &n);
        ck_assert_msg(rv == SHALE_OK && ok && n == 3, "txn: %s", shale_errmsg(c));
        want(SHALE_WATCH_PUT, key, res[0].version);
        want(SHALE_WATCH_PUT, key2, res[2].version);
        shale_item_results_free(res, n);
        free(res);
        break;
    }
    case 5: {
        snprintf(key2, sizeof(key2), "{w}m%d", i % 3);
        shale_item_t items[] = {{key, strlen(key), val, strlen(val)},
                                {key2, strlen(key2), val, strlen(val)}};
        shale_item_result_t res[2];
        memset(res, 0, sizeof(res));
        rv = shale_mput(c, items, 2, res);
        ck_assert_msg(rv == SHALE_OK && res[0].status == SHALE_OK && res[1].status == SHALE_OK,
                      "mput: %s", shale_errmsg(c));
        want(SHALE_WATCH_PUT, key, res[0].version);
        want(SHALE_WATCH_PUT, key2, res[1].version);
        shale_item_results_free(res, 2);
        break;
    }
    default:
        rv = shale_put(c, key, strlen(key), val, strlen(val), &v);
        ck_assert_msg(rv == SHALE_OK, "put %s: %s", key, shale_errmsg(c));
        want(SHALE_WATCH_PUT, key, v);
        break;
    }
}

/* Wait until every running member of g has applied what its leader has. */
static void wait_all_applied(th_group_t *g)
{
    int leader = th_group_wait_leader(g, 20000);
    ck_assert_int_ge(leader, 0);
    uint64_t idx = th_node_applied(&g->nodes[leader]);
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].pid > 0)
            ck_assert_int_eq(th_node_wait_applied(&g->nodes[i], idx, 30000), 0);
}

static watcher_t g_w;

static int stop_at_first(const shale_watch_batch_t *b, void *ud)
{
    (void)b;
    (void)ud;
    return 1;
}

START_TEST(test_watch_router)
{
    start_cluster_n(1, 3);
    th_group_t *g1 = &g_cl.groups[0];
    watcher_start(&g_w, "{w}");
    shale_client_t *c = connect_to(g_router.addr);
    g_nwant = 0;
    /* Keys outside the prefix: never seen. */
    uint64_t v;
    ck_assert_int_eq(shale_put(c, "{x}k", 4, "no", 2, &v), SHALE_OK);
    ck_assert_int_eq(shale_put(c, "{w", 2, "no", 2, &v), SHALE_OK);
    const int N = 240;
    int killed = -1;
    char gid[] = "1";
    const char *args[] = {"--group",     gid, "--meta", g_cl.meta.addrs, "--watch-cache-changes",
                          CACHE_CHANGES, NULL};
    for (int i = 0; i < N; i++) {
        /* A follower (the router sends watches to followers first: likely
         * the member serving the watch) killed at N/4, back at N/2; then
         * the leader killed at 5N/8, back at 7N/8. Two of three members
         * stay up throughout, so writes go on. */
        if (i == N / 4 || i == 5 * N / 8) {
            int leader = th_group_wait_leader(g1, 20000);
            ck_assert_int_ge(leader, 0);
            killed = i == N / 4 ? (leader + 1) % g1->n : leader;
            fprintf(stderr, "test_watch: killing %s %s after %zu changes\n",
                    i == N / 4 ? "follower" : "leader", g1->nodes[killed].addr, g_nwant);
            th_node_stop(&g1->nodes[killed], SIGKILL);
        }
        if (i == N / 2 || i == 7 * N / 8) {
            fprintf(stderr, "test_watch: restarting %s\n", g1->nodes[killed].addr);
            ck_assert_int_eq(th_group_start_node(g1, killed, args), 0);
            if (i == N / 2) /* caught up before the next kill: quorum stays */
                wait_all_applied(g1);
        }
        write_one(c, i);
    }
    size_t have = watcher_wait(&g_w, g_nwant, 60000);
    fprintf(stderr, "test_watch: %zu changes acknowledged, %zu watched\n", g_nwant, have);
    check_exact(&g_w, g_nwant);
    /* Nothing more trickles in (no duplicate after the fact): a marker put
     * is the very next change seen. */
    ck_assert_int_eq(shale_put(c, "{w}marker", 9, "m", 1, &v), SHALE_OK);
    want(SHALE_WATCH_PUT, "{w}marker", v);
    watcher_wait(&g_w, g_nwant, 60000);
    check_exact(&g_w, g_nwant);
    watcher_stop(&g_w);

    /* The restarted member's cache starts at its restart: asked directly
     * for a revision from before the kill, it refuses (COMPACTED). */
    size_t j = 10;
    while (j < g_nwant && g_w.ev[j].revision == g_w.ev[j - 1].revision)
        j++;
    ck_assert_uint_lt(j + 5, g_nwant);
    wait_all_applied(g1);
    {
        shale_client_t *d = connect_to(g1->nodes[killed].addr);
        shale_watch_opts_t wo = {.prefix = 1, .from_revision = g_w.ev[j].revision, .group = 1};
        ck_assert_int_eq(shale_watch(d, "{w}", 3, &wo, stop_at_first, NULL), SHALE_ECOMPACTED);
        ck_assert_ptr_nonnull(strstr(shale_errmsg(d), "watch from now"));
        shale_close(d);
    }
    /* shalectl resumes at a revision (the first change of an entry) through
     * the router, whichever member it asks (several times: the router
     * rotates over the members; the restarted one refuses, another serves). */
    sleep(4); /* past the router's suspicion of the restarted member (3 s): it is in the rotation */
    int rc = 0;
    for (int round = 0; round < 4; round++) {
        rc = th_shalectl(g_out, sizeof(g_out),
                         "--router %s watch '{w}' --prefix --from %llu --group 1 --count 5",
                         g_router.addr, (unsigned long long)g_w.ev[j].revision);
        ck_assert_msg(rc == 0, "shalectl watch (round %d): exit %d: %s", round, rc, g_out);
    }
    const char *at = g_out;
    for (size_t i = j; i < j + 5; i++) {
        char line[128];
        snprintf(line, sizeof(line), "%llu %s %s", (unsigned long long)g_w.ev[i].revision,
                 g_w.ev[i].kind == SHALE_WATCH_PUT ? "put" : "del", g_w.ev[i].key);
        const char *p = strstr(at, line);
        ck_assert_msg(p == at, "shalectl watch line %zu: want '%s...' next in:\n%s", i - j, line,
                      g_out);
        snprintf(line, sizeof(line), " version %llu group 1\n",
                 (unsigned long long)g_w.ev[i].version);
        p = strstr(p, line);
        ck_assert_msg(p != NULL, "want '%s' in:\n%s", line, g_out);
        at = p + strlen(line);
    }
    ck_assert_msg(*at == '\0', "more than --count 5 lines:\n%s", g_out);
    rc = th_shalectl(g_out, sizeof(g_out),
                     "--router %s --json watch '{w}marker' --from %llu "
                     "--group 1 --count 1",
                     g_router.addr, (unsigned long long)g_w.ev[g_nwant - 1].revision);
    ck_assert_msg(rc == 0 && strstr(g_out, "\"kind\":\"put\",\"key\":\"{w}marker\",\"value\":"
                                           "\"m\"") != NULL,
                  "shalectl watch --json: exit %d: %s", rc, g_out);

    /* Many changes later, every member's cache dropped the first revision:
     * COMPACTED, through the router (which tried every member). */
    for (int b = 0; b < 8; b++) {
        shale_item_t items[300];
        char keys[300][16];
        for (int i = 0; i < 300; i++) {
            snprintf(keys[i], sizeof(keys[i]), "{z}%d", i);
            items[i] = (shale_item_t){keys[i], strlen(keys[i]), "z", 1};
        }
        shale_item_result_t res[300];
        memset(res, 0, sizeof(res));
        ck_assert_int_eq(shale_mput(c, items, 300, res), SHALE_OK);
        shale_item_results_free(res, 300);
    }
    wait_all_applied(g1);
    rc = th_shalectl(g_out, sizeof(g_out), "--router %s watch '{w}' --prefix --from %llu --group 1",
                     g_router.addr, (unsigned long long)g_w.ev[0].revision);
    ck_assert_msg(rc == 1 && strstr(g_out, "compacted") != NULL &&
                      strstr(g_out, "watch from now") != NULL,
                  "watch from a dropped revision: exit %d: %s", rc, g_out);
    shale_close(c);
    th_node_stop(&g_router, SIGTERM);
    ck_assert_int_eq(th_log_sanitizer_errors(&g_router), 0);
    for (int i = 0; i < g1->n; i++)
        ck_assert_int_eq(th_log_sanitizer_errors(&g1->nodes[i]), 0);
    stop_cluster();
}
END_TEST

/* The group owning slot in the newest map a meta member has. */
static uint64_t slot_owner(uint32_t slot, uint64_t *epoch)
{
    Shale__ClusterMap *m = th_map_newest(&g_cl);
    ck_assert_ptr_nonnull(m);
    uint64_t g = cmap_slot_group(m, slot);
    if (epoch != NULL)
        *epoch = m->epoch;
    cmap_free(m);
    return g;
}

START_TEST(test_watch_slot_move)
{
    start_cluster_n(2, 1);
    uint32_t slot = shale_key_slot("m", 1, SLOTS);
    uint64_t from = slot_owner(slot, NULL), to = from == 1 ? 2 : 1;
    watcher_start(&g_w, "{m}");
    ck_assert_uint_eq(g_w.group, from);
    shale_client_t *c = connect_to(g_router.addr);
    g_nwant = 0;
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof(key), "{m}%d", i);
        uint64_t v = 0;
        ck_assert_int_eq(shale_put(c, key, strlen(key), "x", 1, &v), SHALE_OK);
        want(SHALE_WATCH_PUT, key, v);
    }
    watcher_wait(&g_w, g_nwant, 60000);
    check_exact(&g_w, g_nwant);
    uint64_t first_rev = g_w.ev[0].revision;
    int rc = th_shalectl(g_out, sizeof(g_out), "--meta %s slot move %u %llu", g_cl.meta.addrs, slot,
                         (unsigned long long)to);
    ck_assert_msg(rc == 0, "slot move: %s", g_out);
    uint64_t epoch = 0;
    ck_assert_uint_eq(slot_owner(slot, &epoch), to);
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, epoch, 20000), 0);
    /* The watch ends: WRONG_GROUP, telling to watch from now. */
    long long end = th_now_ms() + 60000;
    for (;;) {
        pthread_mutex_lock(&g_w.mu);
        int ended = g_w.ended;
        pthread_mutex_unlock(&g_w.mu);
        if (ended)
            break;
        ck_assert_msg(th_now_ms() < end, "the watch did not end after its slot moved");
        usleep(50 * 1000);
    }
    ck_assert_msg(g_w.end_status == SHALE_EWRONGGROUP, "watch ended with %s: %s",
                  shale_strerror(g_w.end_status), g_w.end_msg);
    ck_assert_msg(strstr(g_w.end_msg, "watch from now") != NULL, "%s", g_w.end_msg);
    check_exact(&g_w, g_nwant); /* what it saw before: every write, in order */
    watcher_stop(&g_w);

    /* A resume pinned to the old group is refused the same way. */
    rc = th_shalectl(g_out, sizeof(g_out),
                     "--router %s watch '{m}' --prefix --from %llu "
                     "--group %llu",
                     g_router.addr, (unsigned long long)first_rev, (unsigned long long)from);
    ck_assert_msg(rc == 1 && strstr(g_out, "watch from now") != NULL,
                  "pinned resume after the move: exit %d: %s", rc, g_out);

    /* A new watch from now follows the new group. */
    watcher_start(&g_w, "{m}");
    ck_assert_uint_eq(g_w.group, to);
    g_nwant = 0;
    uint64_t v = 0;
    ck_assert_int_eq(shale_put(c, "{m}after", 8, "y", 1, &v), SHALE_OK);
    want(SHALE_WATCH_PUT, "{m}after", v);
    watcher_wait(&g_w, 1, 60000);
    check_exact(&g_w, 1);
    /* Closing the client ends its watch: SHALE_ECANCELED, reported once. */
    g_w.close_only = 1;
    watcher_stop(&g_w);
    ck_assert_int_eq(g_w.ended, 1);
    ck_assert_int_eq(g_w.end_status, SHALE_ECANCELED);
    shale_close(c);
    th_node_stop(&g_router, SIGTERM);
    ck_assert_int_eq(th_log_sanitizer_errors(&g_router), 0);
    stop_cluster();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("watch");
    TCase *tc = tcase_create("router");
    tcase_set_timeout(tc, 290);
    tcase_add_checked_fixture(tc, NULL, stop_cluster);
    tcase_add_test(tc, test_watch_router);
    tcase_add_test(tc, test_watch_slot_move);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
