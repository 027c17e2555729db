/* Online resharding through shalectl, with real processes: a 3-node meta
 * group, shard groups, a router, and shalectl as a child process
 * (docs/resharding.md). What it proves:
 *  - rebalance from 2 to 3 groups while a writer runs: every acknowledged
 *    write is readable afterwards with its last value (or a later one that
 *    was in flight), and the slot counts are even;
 *  - an abort after the copy leaves the source's data intact and serving,
 *    and a later move of the same slots starts clean;
 *  - group remove drains the group, then removes it;
 *  - a coordinator stopped after each step (--stop-after start | copy |
 *    fence | drain, as if killed there) leaves the migration in the map, and
 *    migration resume completes it with one owner for each slot;
 *  - a coordinator killed (SIGKILL) mid-rebalance under writes: resume and
 *    a second rebalance finish the job without losing a write;
 *  - the fence push: with every data node's map watch paused after its
 *    first map (--test-map-watch-pause-ms), a slot move still completes,
 *    because the coordinator pushes each map it changes (start, fence,
 *    flip) to both groups' leaders (MIG_PUSH); a push of a map the group
 *    already applied (stale epoch) or about a migration it has no part in
 *    is refused.
 *
 * Hosts 127.0.0.180.. (meta), .190/.200/.210.. (groups), .185 (router). */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmap.h"
#include "harness_cluster.h"
#include "keyhash.h"
#include "shale.h"
#include "frame.h"
#include "shale_internal.h"

#define FIRST_HOST 180
#define SLOTS 256
#define VLEN 200

static th_cluster_t g_cl;
static char *g_base;
static th_node_t g_router;
static char g_out[65536];

/* Run shalectl with args (NULL-terminated) against the meta group; its exit
 * code, and stdout+stderr in g_out. */
static int ctl(const char *const *args)
{
    char cmd[4096];
    int n = snprintf(cmd, sizeof(cmd), "%s/cluster/shalectl --meta %s --timeout 5000", th_bin_dir(),
                     g_cl.meta.addrs);
    for (int i = 0; args[i] != NULL; i++)
        n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, " '%s'", args[i]);
    snprintf(cmd + n, sizeof(cmd) - (size_t)n, " 2>&1");
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t r = fread(g_out, 1, sizeof(g_out) - 1, p);
    g_out[r] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define CTL_OK(...)                                                                                \
    do {                                                                                           \
        const char *a_[] = {__VA_ARGS__, NULL};                                                    \
        int rc_ = ctl(a_);                                                                         \
        ck_assert_msg(rc_ == 0, "shalectl %s -> %d:\n%s", a_[0], rc_, g_out);                      \
    } while (0)

/* The newest map any meta member has (a follower may lag a change that
 * shalectl just made through the leader). */
static Shale__ClusterMap *get_map(void)
{
    Shale__ClusterMap *best = th_map_newest(&g_cl);
    ck_assert_ptr_nonnull(best);
    return best;
}

static uint64_t router_epoch(void)
{
    return th_router_epoch(&g_router);
}

/* Start ngroups groups of `voters`; the map gets the first `in_map` of them
 * (init), the rest are added with group add (no slots). Then a router. */
static void start_cluster_ex(int ngroups, int in_map, int voters, const char *const *extra)
{
    g_base = th_tmpdir("migrate-ctl");
    ck_assert_int_eq(th_cluster_start(&g_cl, ngroups, voters, FIRST_HOST, g_base, extra), 0);
    char spec[TH_MAX_GROUPS][96], slots[16];
    snprintf(slots, sizeof(slots), "%d", SLOTS);
    const char *init[16] = {"init", "--slots", slots};
    int n = 3;
    for (int g = 0; g < in_map; g++) {
        snprintf(spec[g], sizeof(spec[g]), "%d=%s", g + 1, g_cl.groups[g].nodes[0].addr);
        init[n++] = "--group";
        init[n++] = spec[g];
    }
    init[n] = NULL;
    ck_assert_msg(ctl(init) == 0, "init: %s", g_out);
    for (int g = in_map; g < ngroups; g++) {
        char id[8];
        snprintf(id, sizeof(id), "%d", g + 1);
        CTL_OK("group", "add", id, g_cl.groups[g].nodes[0].addr);
    }
    Shale__ClusterMap *m = get_map();
    uint64_t epoch = m->epoch;
    cmap_free(m);
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, epoch, 20000), 0);

    th_node_init(&g_router, 1, "127.0.0.185", g_base);
    snprintf(g_router.log, sizeof(g_router.log), "%s/router.log", g_base);
    const char *argv[] = {"--listen", g_router.addr, "--meta", g_cl.meta.addrs,
                          "--timeout-ms", "10000", NULL};
    ck_assert_int_eq(th_router_start(&g_router, argv, 1), 0);
    long long end = th_now_ms() + 10000;
    while (router_epoch() < epoch && th_now_ms() < end)
        usleep(20 * 1000);
    ck_assert_uint_ge(router_epoch(), epoch);
}

static void start_cluster(int ngroups, int in_map, int voters)
{
    start_cluster_ex(ngroups, in_map, voters, NULL);
}

static void stop_cluster(void)
{
    th_cluster_teardown(&g_cl, &g_base, (th_node_t *const[]){&g_router, NULL});
}

static shale_client_t *connect_to(const char *addrs, uint32_t timeout_ms)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = timeout_ms;
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN] = "";
    int rv = shale_connect(addrs, &o, &c, err);
    ck_assert_msg(rv == SHALE_OK, "connect to %s: %s", addrs, err);
    return c;
}

/* ---- Bulk data: keys b<i> with a value derived from i -------------------------*/

static void bulk_value(int i, char *v)
{
    int n = snprintf(v, VLEN, "b%d:", i);
    for (int k = n; k < VLEN; k++)
        v[k] = (char)('a' + (i * 7 + k) % 26);
}

static void bulk_load(int nkeys)
{
    shale_client_t *c = connect_to(g_router.addr, 15000);
    enum { BATCH = 100 };
    char keys[BATCH][16], vals[BATCH][VLEN];
    shale_item_t items[BATCH];
    shale_item_result_t res[BATCH];
    for (int at = 0; at < nkeys; at += BATCH) {
        int n = nkeys - at < BATCH ? nkeys - at : BATCH;
        for (int i = 0; i < n; i++) {
            int kl = snprintf(keys[i], sizeof(keys[i]), "b%d", at + i);
            bulk_value(at + i, vals[i]);
            items[i] = (shale_item_t){keys[i], (size_t)kl, vals[i], VLEN};
        }
        ck_assert_int_eq(shale_mput(c, items, (size_t)n, res), SHALE_OK);
        for (int i = 0; i < n; i++)
            ck_assert_msg(res[i].status == SHALE_OK, "mput b%d: %s", at + i,
                          shale_strerror(res[i].status));
        shale_item_results_free(res, (size_t)n);
    }
    shale_close(c);
}

/* Every bulk key reads back (linearizable, through the router). */
static void bulk_check(int nkeys)
{
    shale_client_t *c = connect_to(g_router.addr, 15000);
    enum { BATCH = 100 };
    char keys[BATCH][16], want[VLEN];
    shale_item_t items[BATCH];
    shale_item_result_t res[BATCH];
    for (int at = 0; at < nkeys; at += BATCH) {
        int n = nkeys - at < BATCH ? nkeys - at : BATCH;
        for (int i = 0; i < n; i++) {
            int kl = snprintf(keys[i], sizeof(keys[i]), "b%d", at + i);
            items[i] = (shale_item_t){keys[i], (size_t)kl, NULL, 0};
        }
        ck_assert_int_eq(shale_mget(c, items, (size_t)n, NULL, res), SHALE_OK);
        for (int i = 0; i < n; i++) {
            bulk_value(at + i, want);
            if (res[i].status != SHALE_OK || !res[i].found || res[i].len != VLEN ||
                memcmp(res[i].data, want, VLEN) != 0)
                ck_abort_msg("b%d: status %s found %d len %zu", at + i,
                             shale_strerror(res[i].status), res[i].found, res[i].len);
        }
        shale_item_results_free(res, (size_t)n);
    }
    shale_close(c);
}

/* ---- A writer that records every acknowledged write -------------------------------*/

#define NW 200     /* keys per writer */
#define NWRITERS 4 /* each on its own keys w<writer>.<i> */

typedef struct writer {
    pthread_t th;
    int id;
    volatile int stop;
    long acked[NW];     /* last acknowledged value of w<i> (0: none) */
    long attempted[NW]; /* last value sent (acked or outcome unknown) */
    long oks, errors;
    char last_err[256];
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 15000; /* above the router's deadline: its answer counts */
    shale_client_t *c = NULL;
    if (shale_connect(g_router.addr, &o, &c, w->last_err) != SHALE_OK)
        return NULL;
    for (long round = 1; !w->stop; round++)
        for (int i = 0; i < NW && !w->stop; i++) {
            char k[16], v[32];
            int kl = snprintf(k, sizeof(k), "w%d.%d", w->id, i);
            int vl = snprintf(v, sizeof(v), "%ld", round);
            w->attempted[i] = round;
            int rv = shale_put(c, k, (size_t)kl, v, (size_t)vl, NULL);
            if (rv == SHALE_OK) {
                w->acked[i] = round;
                w->oks++;
            } else {
                w->errors++;
                snprintf(w->last_err, sizeof(w->last_err), "%s: %s", shale_strerror(rv),
                         shale_errmsg(c));
            }
        }
    shale_close(c);
    return NULL;
}

/* Start the NWRITERS writers w[0..] (cleared first), writer i on keys w<i>.*. */
static void writers_start(writer_t *w)
{
    memset(w, 0, NWRITERS * sizeof(*w));
    for (int i = 0; i < NWRITERS; i++) {
        w[i].id = i;
        ck_assert_int_eq(pthread_create(&w[i].th, NULL, writer_main, &w[i]), 0);
    }
}

/* Stop the writers and join them; each must have had a write acknowledged.
 * Their summed oks and errors into *oks and *errors (when not NULL). */
static void writers_stop(writer_t *w, long *oks, long *errors)
{
    for (int i = 0; i < NWRITERS; i++) {
        w[i].stop = 1;
        pthread_join(w[i].th, NULL);
        if (oks != NULL)
            *oks += w[i].oks;
        if (errors != NULL)
            *errors += w[i].errors;
        ck_assert_msg(w[i].oks > 0, "writer %d: no write acknowledged (%s)", i, w[i].last_err);
    }
}

/* Each w<i> holds its last acknowledged value or a later attempted one. */
static void writer_check(const writer_t *w)
{
    shale_client_t *c = connect_to(g_router.addr, 15000);
    for (int i = 0; i < NW; i++) {
        char k[16];
        int kl = snprintf(k, sizeof(k), "w%d.%d", w->id, i);
        shale_value_t v;
        int rv = shale_get(c, k, (size_t)kl, NULL, &v);
        ck_assert_msg(rv == SHALE_OK, "get %s: %s", k, shale_strerror(rv));
        long got = 0;
        if (v.found) {
            char buf[32];
            size_t n = v.len < sizeof(buf) - 1 ? v.len : sizeof(buf) - 1;
            memcpy(buf, v.data, n);
            buf[n] = '\0';
            got = strtol(buf, NULL, 10);
        }
        shale_value_free(&v);
        if (got < w->acked[i] || got > w->attempted[i])
            ck_abort_msg("%s = %ld: lost an acknowledged write (acked %ld, attempted %ld)", k, got,
                         w->acked[i], w->attempted[i]);
    }
    shale_close(c);
}

/* ---- Checks on the map and the groups ----------------------------------------------*/

static void assert_no_migrations(void)
{
    Shale__ClusterMap *m = get_map();
    ck_assert_msg(m->n_migrations == 0, "%zu migrations left in the map", m->n_migrations);
    cmap_free(m);
}

/* The nth key of the form o<i> whose slot is `slot`. */
static void key_in_slot(uint32_t slot, int nth, char *key, size_t len)
{
    for (int i = 0, found = 0;; i++) {
        int n = snprintf(key, len, "o%d", i);
        if (shale_key_slot(key, (size_t)n, SLOTS) == slot && found++ == nth)
            return;
    }
}

/* Slot s is served by group `owner` alone: it reads key there, every other
 * group answers WRONG_GROUP. */
static void assert_one_owner(uint32_t s, uint64_t owner, const char *key, const char *value)
{
    for (int g = 1; g <= g_cl.ngroups; g++) {
        shale_client_t *c = connect_to(g_cl.groups[g - 1].addrs, 5000);
        shale_value_t v;
        int rv = shale_get(c, key, strlen(key), NULL, &v);
        if ((uint64_t)g == owner) {
            ck_assert_msg(rv == SHALE_OK && v.found, "slot %u: group %d: %s", s, g,
                          shale_strerror(rv));
            ck_assert_int_eq(v.len, strlen(value));
            ck_assert_int_eq(memcmp(v.data, value, v.len), 0);
            shale_value_free(&v);
        } else {
            ck_assert_msg(rv == SHALE_EWRONGGROUP, "slot %u: group %d answers %s, not WRONG_GROUP",
                          s, g, shale_strerror(rv));
        }
        shale_close(c);
    }
}

static void wait_map_applied(void)
{
    Shale__ClusterMap *m = get_map();
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, m->epoch, 20000), 0);
    cmap_free(m);
}

/* ---- Tests ----------------------------------------------------------------------*/

/* 2 groups -> 3 under a writer: nothing acknowledged is lost, the counts end
 * even (86/85/85), and no migration is left. */
START_TEST(test_rebalance_under_writes)
{
    start_cluster(3, 2, 3);
    bulk_load(20000);
    static writer_t w[NWRITERS];
    writers_start(w);
    usleep(500 * 1000);
    long long t0 = th_now_ms();
    /* Slow enough (0.5 MB/s of ~1.6 MB) that many writes land mid-copy. */
    CTL_OK("rebalance", "--max-parallel", "2", "--batch", "16", "--rate", "0.5");
    long long took = th_now_ms() - t0;
    ck_assert_ptr_nonnull(strstr(g_out, "OK moved 85 slots"));
    usleep(300 * 1000);
    long oks = 0, errors = 0;
    writers_stop(w, &oks, &errors);
    fprintf(stderr,
            "test_rebalance_under_writes: rebalance %lld ms, writers %ld ok, %ld errors\n%s", took,
            oks, errors, g_out);
    assert_no_migrations();
    Shale__ClusterMap *m = get_map();
    ck_assert_uint_eq(cmap_slot_count(m, 1), 86);
    ck_assert_uint_eq(cmap_slot_count(m, 2), 85);
    ck_assert_uint_eq(cmap_slot_count(m, 3), 85);
    cmap_free(m);
    for (int i = 0; i < NWRITERS; i++)
        writer_check(&w[i]);
    bulk_check(20000);
    /* Balanced now: a second rebalance has nothing to do. */
    CTL_OK("rebalance");
    ck_assert_ptr_nonnull(strstr(g_out, "nothing to move"));
    stop_cluster();
}
END_TEST

/* Stopped after the copy, then aborted: the source keeps every key and
 * serves it; the target has nothing; the same move later works. */
START_TEST(test_abort_midway)
{
    start_cluster(2, 2, 1);
    bulk_load(3000);
    CTL_OK("slot", "move", "0-15", "2", "--stop-after", "copy");
    Shale__ClusterMap *m = get_map();
    ck_assert_uint_eq(m->n_migrations, 1);
    ck_assert_int_eq(m->migrations[0]->state, SHALE__MIGRATION_STATE__MIG_COPYING);
    char id[16];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)m->migrations[0]->id);
    cmap_free(m);
    CTL_OK("migration", "status");
    ck_assert_ptr_nonnull(strstr(g_out, "copying"));
    CTL_OK("migration", "abort", id);
    assert_no_migrations();
    wait_map_applied();
    bulk_check(3000);
    char key[16];
    key_in_slot(3, 0, key, sizeof(key));
    shale_client_t *c = connect_to(g_router.addr, 15000);
    ck_assert_int_eq(shale_put(c, key, strlen(key), "after-abort", 11, NULL), SHALE_OK);
    shale_close(c);
    assert_one_owner(3, 1, key, "after-abort");
    /* Aborting again is a no-op; the move itself now goes through. */
    CTL_OK("migration", "abort", id);
    CTL_OK("slot", "move", "0-15", "2");
    wait_map_applied();
    assert_one_owner(3, 2, key, "after-abort");
    bulk_check(3000);
    stop_cluster();
}
END_TEST

/* group remove drains the group to the others, then drops it. */
START_TEST(test_group_remove_drains)
{
    start_cluster(3, 3, 1);
    bulk_load(3000);
    /* Small batches, four at once: sibling migrations from the same group
     * to the same group start (and collide on the map) together. */
    CTL_OK("group", "remove", "2", "--batch", "8", "--max-parallel", "4");
    ck_assert_ptr_nonnull(strstr(g_out, "group remove 2"));
    Shale__ClusterMap *m = get_map();
    ck_assert_ptr_null(cmap_group(m, 2));
    ck_assert_uint_eq(m->n_groups, 2);
    ck_assert_uint_eq(cmap_slot_count(m, 1), 128);
    ck_assert_uint_eq(cmap_slot_count(m, 3), 128);
    ck_assert_uint_eq(m->n_migrations, 0);
    cmap_free(m);
    bulk_check(3000);
    /* The last group cannot be drained. */
    CTL_OK("group", "remove", "3");
    const char *rm1[] = {"group", "remove", "1", NULL};
    ck_assert_msg(ctl(rm1) == 4, "group remove 1: %s", g_out);
    ck_assert_ptr_nonnull(strstr(g_out, "no other group"));
    bulk_check(3000);
    stop_cluster();
}
END_TEST

/* A coordinator stopped after each step leaves a migration that
 * migration resume finishes, with one owner and every write. */
START_TEST(test_resume_after_each_step)
{
    static const char *const steps[] = {"start", "copy", "fence", "drain"};
    start_cluster(2, 2, 1);
    bulk_load(3000);
    shale_client_t *c = connect_to(g_router.addr, 15000);
    for (int i = 0; i < 4; i++) {
        uint32_t first = (uint32_t)(8 * i);
        char range[32], key[16], val[32];
        snprintf(range, sizeof(range), "%u-%u", first, first + 7);
        CTL_OK("slot", "move", range, "2", "--stop-after", steps[i]);
        Shale__ClusterMap *m = get_map();
        ck_assert_msg(m->n_migrations == 1, "after %s: %zu migrations", steps[i], m->n_migrations);
        ck_assert_int_eq(m->migrations[0]->state, i < 2 ? SHALE__MIGRATION_STATE__MIG_COPYING
                                                        : SHALE__MIGRATION_STATE__MIG_FENCED);
        ck_assert_uint_eq(cmap_slot_group(m, first), 1);
        cmap_free(m);
        key_in_slot(first, 0, key, sizeof(key));
        snprintf(val, sizeof(val), "step-%s", steps[i]);
        if (i < 2) /* still COPYING: the source takes the write, the copy follows */
            ck_assert_int_eq(shale_put(c, key, strlen(key), val, strlen(val), NULL), SHALE_OK);
        CTL_OK("migration", "status");
        ck_assert_ptr_nonnull(strstr(g_out, i < 2 ? "copying" : "fenced"));
        CTL_OK("status");
        ck_assert_ptr_nonnull(strstr(g_out, "migrations: 1 in progress"));
        CTL_OK("migration", "resume");
        ck_assert_ptr_nonnull(strstr(g_out, "OK moved 8 slots"));
        assert_no_migrations();
        wait_map_applied();
        if (i >= 2) /* fenced until the resume: written now, at the new owner */
            ck_assert_int_eq(shale_put(c, key, strlen(key), val, strlen(val), NULL), SHALE_OK);
        m = get_map();
        for (uint32_t s = first; s < first + 8; s++)
            ck_assert_uint_eq(cmap_slot_group(m, s), 2);
        cmap_free(m);
        assert_one_owner(first, 2, key, val);
    }
    shale_close(c);
    bulk_check(3000);
    stop_cluster();
}
END_TEST

/* shalectl killed (SIGKILL) in the middle of a rebalance under writes: its
 * migrations stay in the map; migration resume finishes them and a second
 * rebalance the rest, with every acknowledged write kept. */
START_TEST(test_coordinator_killed)
{
    start_cluster(3, 2, 3);
    bulk_load(20000);
    static writer_t w[NWRITERS];
    writers_start(w);
    /* Slow (0.3 MB/s of ~1.6 MB), so the kill lands mid-copy. */
    th_node_t co;
    memset(&co, 0, sizeof(co));
    snprintf(co.log, sizeof(co.log), "%s/shalectl.log", g_base);
    char bin[600];
    snprintf(bin, sizeof(bin), "%s/cluster/shalectl", th_bin_dir());
    const char *argv[] = {
        bin,  "--meta", g_cl.meta.addrs, "rebalance", "--max-parallel", "2", "--batch",
        "16", "--rate", "0.3",           NULL};
    ck_assert_int_eq(th_spawn(&co, argv), 0);
    /* Kill it once its first migrations are in the map (start-up — TLS
     * handshakes and logins at every group — takes a while under ASan). */
    for (int i = 0; i < 300; i++) {
        Shale__ClusterMap *mm = get_map();
        int started = mm->n_migrations > 0;
        cmap_free(mm);
        if (started || waitpid(co.pid, NULL, WNOHANG) == co.pid)
            break;
        usleep(100 * 1000);
    }
    usleep(500 * 1000);
    kill(co.pid, SIGKILL);
    waitpid(co.pid, NULL, 0);
    co.pid = 0;
    Shale__ClusterMap *m = get_map();
    ck_assert_msg(m->n_migrations > 0, "the coordinator finished before it was killed");
    cmap_free(m);
    CTL_OK("migration", "resume");
    assert_no_migrations();
    CTL_OK("rebalance", "--rate", "0");
    usleep(300 * 1000);
    writers_stop(w, NULL, NULL);
    assert_no_migrations();
    m = get_map();
    uint32_t lo = SLOTS, hi = 0;
    for (uint64_t g = 1; g <= 3; g++) {
        uint32_t n = cmap_slot_count(m, g);
        lo = n < lo ? n : lo;
        hi = n > hi ? n : hi;
    }
    ck_assert_msg(hi - lo <= 1 && lo == SLOTS / 3, "slot counts %u..%u", lo, hi);
    cmap_free(m);
    for (int i = 0; i < NWRITERS; i++)
        writer_check(&w[i]);
    bulk_check(20000);
    stop_cluster();
}
END_TEST

/* MIG_PUSH of map m about migration id to group g (any member; the answer
 * does not depend on leadership). The status; msg filled. */
static int push(int g, uint64_t id, const Shale__ClusterMap *m, char *msg)
{
    shale_client_t *c = connect_to(g_cl.groups[g - 1].addrs, 5000);
    Shale__MigPushRequest q = SHALE__MIG_PUSH_REQUEST__INIT;
    q.id = id;
    q.map = (Shale__ClusterMap *)m;
    size_t len = shale__mig_push_request__get_packed_size(&q);
    uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    shale__mig_push_request__pack(&q, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rv = shale_call(c, SHALE_MSG_MIG_PUSH_REQ, SHALE_MSG_MIG_PUSH_RESP, buf, len, &resp, &rlen,
                        msg, NULL);
    free(buf);
    free(resp);
    shale_close(c);
    return rv;
}

/* The data nodes learn one map through their watch and then no more for
 * ten minutes: the move completes only because the coordinator pushes the
 * start, the fence and the flip (remove the pushes and the source refuses
 * to export "not applied here yet" until the coordinator gives up). */
START_TEST(test_push_without_watch)
{
    const char *pause[] = {"--test-map-watch-pause-ms", "600000", NULL};
    start_cluster_ex(2, 2, 3, pause);
    bulk_load(2000);
    char key[16];
    key_in_slot(3, 0, key, sizeof(key));
    shale_client_t *c = connect_to(g_router.addr, 15000);
    ck_assert_int_eq(shale_put(c, key, strlen(key), "before", 6, NULL), SHALE_OK);
    shale_close(c);
    CTL_OK("slot", "move", "0-31", "2");
    fprintf(stderr, "test_push_without_watch: %s", g_out);
    assert_no_migrations();
    wait_map_applied(); /* every member applied the flip through its group's log */
    assert_one_owner(3, 2, key, "before");
    bulk_check(2000);
    c = connect_to(g_router.addr, 15000);
    ck_assert_int_eq(shale_put(c, key, strlen(key), "after", 5, NULL), SHALE_OK);
    shale_close(c);
    assert_one_owner(3, 2, key, "after");

    /* A stale push (the epoch both groups applied) is refused, and so is a
     * newer map about a migration neither group has. */
    Shale__ClusterMap *m = get_map();
    char msg[SHALE_ERRMSG_LEN] = "";
    for (int g = 1; g <= 2; g++) {
        int rv = push(g, m->next_migration_id - 1, m, msg);
        ck_assert_msg(rv == SHALE_ECASFAILED && strstr(msg, "stale") != NULL,
                      "group %d: stale push answered %s: %s", g, shale_strerror(rv), msg);
    }
    m->epoch++;
    int rv = push(1, m->next_migration_id + 7, m, msg);
    ck_assert_msg(rv == SHALE_EINVAL, "push about an unknown migration: %s: %s",
                  shale_strerror(rv), msg);
    cmap_free(m);
    stop_cluster();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("migrate");
    TCase *tc = tcase_create("shalectl");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_rebalance_under_writes);
    tcase_add_test(tc, test_abort_midway);
    tcase_add_test(tc, test_group_remove_drains);
    tcase_add_test(tc, test_resume_after_each_step);
    tcase_add_test(tc, test_coordinator_killed);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("push"); /* CK_RUN_CASE=push runs it alone */
    tcase_set_timeout(tp, 240);
    tcase_add_test(tp, test_push_without_watch);
    suite_add_tcase(s, tp);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
