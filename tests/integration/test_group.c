/* A replicated shard group as real processes: failover under writes,
 * exactly-once retries across leader changes, catch-up of a node that was
 * down, read replicas and STALE reads, membership changes, redirects.
 *
 * Each test runs its own group on its own 127.0.0.x addresses and ports,
 * under its own temp dir, and stops every process by PID. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "shale.h"
#include "wire.h"

static char *g_base;
static th_group_t g_grp;

static int start_group(int n, int first_host, const char *const *extra)
{
    g_base = th_tmpdir("group");
    ck_assert_ptr_nonnull(g_base);
    th_group_init(&g_grp, n, first_host, g_base);
    ck_assert_int_eq(th_group_start(&g_grp, extra), 0);
    int leader = th_group_wait_leader(&g_grp, 20000);
    if (leader < 0)
        for (int i = 0; i < n; i++)
            th_node_dump_log(&g_grp.nodes[i]);
    ck_assert_msg(leader >= 0, "no leader elected");
    return leader;
}

static void stop_group(void)
{
    for (int i = 0; i < g_grp.n; i++) {
        th_node_t *nd = &g_grp.nodes[i];
        if (nd->pid <= 0)
            continue;
        kill(nd->pid, SIGCONT);
        int st = th_node_stop(nd, SIGTERM);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            th_node_dump_log(nd);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "node %llu did not exit cleanly (status %d)",
                      (unsigned long long)nd->id, st);
    }
    th_rmrf(g_base);
    free(g_base);
    g_base = NULL;
}

static shale_client_t *connect_to(const char *addrs, uint32_t timeout_ms)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = timeout_ms;
    o.connect_timeout_ms = 500;
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];
    int rv = SHALE_EIO;
    for (int i = 0; i < 40 && rv != SHALE_OK; i++) {
        rv = shale_connect(addrs, &o, &c, err);
        if (rv != SHALE_OK)
            usleep(100 * 1000);
    }
    ck_assert_msg(rv == SHALE_OK, "connect %s: %s", addrs, err);
    return c;
}

static void key_of(int i, char *k) { snprintf(k, 32, "gk-%06d", i); }
static size_t val_of(int i, char *v)
{
    /* Odd sizes on purpose (the libraft padding case). */
    int n = snprintf(v, 64, "value-%d-", i * 7);
    for (int j = 0; j < i % 13; j++)
        v[n++] = (char)('a' + j);
    v[n] = '\0';
    return (size_t)n;
}

/* Every key in acked[0..n) reads back from the node at addr alone, at
 * STALE with a wide bound (the node answers from its own state). */
static void check_node_has(const char *addr, const char *acked, int n)
{
    shale_client_t *c = connect_to(addr, 5000);
    shale_read_opts_t ro = {.consistency = SHALE_STALE, .max_staleness_ms = 600000};
    for (int i = 0; i < n; i++) {
        if (!acked[i])
            continue;
        char k[32], v[64];
        size_t vl = val_of(i, v);
        key_of(i, k);
        shale_value_t got = {0};
        int rv = shale_get(c, k, strlen(k), &ro, &got);
        /* A member that has no clock offset sample yet (just started or
         * joined) refuses STALE reads until its first one (clock_ping.c). */
        for (int t = 0; t < 100 && rv == SHALE_ESTALE; t++) {
            usleep(100 * 1000);
            rv = shale_get(c, k, strlen(k), &ro, &got);
        }
        ck_assert_msg(rv == SHALE_OK, "get %s from %s: %s", k, addr, shale_errmsg(c));
        ck_assert_msg(got.found, "acknowledged %s missing on %s", k, addr);
        ck_assert_uint_eq(got.len, vl);
        ck_assert(memcmp(got.data, v, vl) == 0);
        shale_value_free(&got);
    }
    shale_close(c);
}

static uint64_t leader_applied(void)
{
    int l = th_group_wait_leader(&g_grp, 20000);
    ck_assert_int_ge(l, 0);
    return th_node_applied(&g_grp.nodes[l]);
}

/* kill -9 of the leader in the middle of a stream of writes: a new leader
 * serves within a few election timeouts, the client only sees successes
 * (it follows the new leader and retries with the same seq), and every
 * acknowledged write is on every survivor and on the old leader after it
 * restarts. */
START_TEST(test_leader_kill9_during_writes)
{
    int leader = start_group(3, 41, NULL);
    enum { N = 1200, KILL_AT = 400 };
    char *acked = calloc(N, 1);
    shale_client_t *c = connect_to(g_grp.addrs, 15000);
    long long killed_at = 0, first_after = 0;
    int unknown = 0;
    for (int i = 0; i < N; i++) {
        if (i == KILL_AT) {
            th_node_stop(&g_grp.nodes[leader], SIGKILL);
            killed_at = th_now_ms();
        }
        char k[32], v[64];
        key_of(i, k);
        size_t vl = val_of(i, v);
        int rv = shale_put(c, k, strlen(k), v, vl, NULL);
        if (rv == SHALE_OK) {
            acked[i] = 1;
            if (killed_at && !first_after)
                first_after = th_now_ms();
        } else {
            ck_assert_msg(rv == SHALE_ETIMEOUT, "put %d: %s (%s)", i, shale_strerror(rv),
                          shale_errmsg(c));
            unknown++;
        }
    }
    shale_close(c);
    fprintf(stderr, "failover: first write acknowledged %lld ms after kill -9; %d unknown\n",
            first_after - killed_at, unknown);
    ck_assert_int_eq(unknown, 0);
    uint64_t top = leader_applied();
    for (int i = 0; i < 3; i++) {
        if (i == leader)
            continue;
        ck_assert_int_eq(th_node_wait_applied(&g_grp.nodes[i], top, 20000), 0);
        check_node_has(g_grp.nodes[i].addr, acked, N);
    }
    ck_assert_int_eq(th_group_start_node(&g_grp, leader, NULL), 0);
    ck_assert_int_eq(th_node_wait_applied(&g_grp.nodes[leader], top, 30000), 0);
    check_node_has(g_grp.nodes[leader].addr, acked, N);
    free(acked);
    stop_group();
}
END_TEST

/* A counter incremented by CAS while the leader is killed and restarted:
 * the final value equals the number of acknowledged increments. A CAS
 * retried after a leader change that had already applied returns its first
 * outcome (success) instead of failing on the changed version, so nothing
 * is counted twice or lost. */
START_TEST(test_cas_counter_exactly_once)
{
    int leader = start_group(3, 44, NULL);
    shale_client_t *c = connect_to(g_grp.addrs, 15000);
    const char *key = "counter";
    ck_assert_int_eq(shale_put(c, key, strlen(key), "0", 1, NULL), SHALE_OK);
    int acked = 0, unknown = 0;
    for (int it = 0; it < 600; it++) {
        if (it == 150)
            th_node_stop(&g_grp.nodes[leader], SIGKILL);
        if (it == 300) {
            ck_assert_int_eq(th_group_start_node(&g_grp, leader, NULL), 0);
            ck_assert_int_eq(th_node_wait_up(&g_grp.nodes[leader], 20000), 0);
        }
        if (it == 450) {
            /* And the current leader, whoever it is now. */
            int l = th_group_wait_leader(&g_grp, 20000);
            ck_assert_int_ge(l, 0);
            th_node_stop(&g_grp.nodes[l], SIGKILL);
            leader = l;
        }
        shale_value_t cur = {0};
        int rv = shale_get(c, key, strlen(key), NULL, &cur);
        if (rv != SHALE_OK) {
            ck_assert_int_eq(rv, SHALE_ETIMEOUT);
            continue;
        }
        char num[32] = "";
        memcpy(num, cur.data, cur.len < 31 ? cur.len : 31);
        long v = atol(num);
        shale_cas_expect_t ex = {.kind = SHALE_CAS_VERSION, .version = cur.version};
        shale_value_free(&cur);
        char next[32];
        int nl = snprintf(next, sizeof(next), "%ld", v + 1);
        rv = shale_cas(c, key, strlen(key), &ex, next, (size_t)nl, 0, NULL, NULL);
        if (rv == SHALE_OK)
            acked++;
        else if (rv == SHALE_ETIMEOUT)
            unknown++;
        else
            ck_assert_msg(rv == SHALE_ECASFAILED, "cas: %s (%s)", shale_strerror(rv),
                          shale_errmsg(c));
    }
    shale_value_t fin = {0};
    ck_assert_int_eq(shale_get(c, key, strlen(key), NULL, &fin), SHALE_OK);
    char num[32] = "";
    memcpy(num, fin.data, fin.len < 31 ? fin.len : 31);
    long final = atol(num);
    shale_value_free(&fin);
    shale_close(c);
    fprintf(stderr, "cas counter: final %ld, acknowledged %d, unknown %d\n", final, acked,
            unknown);
    ck_assert_msg(final >= acked && final <= acked + unknown,
                  "counter %ld with %d acknowledged and %d unknown increments", final, acked,
                  unknown);
    ck_assert_int_eq(th_group_start_node(&g_grp, leader, NULL), 0);
    ck_assert_int_eq(th_node_wait_up(&g_grp.nodes[leader], 20000), 0);
    stop_group();
}
END_TEST

/* Stop a follower, write n keys (MPUT batches of `batch`) through the
 * others, restart it with `extra` and wait until it has applied everything
 * and serves every acknowledged key. */
static void follower_catch_up_case(int host_base, const char *const *extra, int n,
                                   int batch)
{
    int leader = start_group(3, host_base, extra);
    int down = (leader + 1) % 3;
    ck_assert_int_eq(th_node_stop(&g_grp.nodes[down], SIGTERM) >= 0, 1);
    char addrs[512];
    th_group_addrs(&g_grp, addrs, sizeof(addrs), down);
    shale_client_t *c = connect_to(addrs, 15000);
    char *acked = calloc((size_t)n, 1);
    static char keys[100][32], vals[100][64];
    ck_assert_int_le(batch, 100);
    for (int b = 0; b < n / batch; b++) {
        shale_item_t items[100];
        shale_item_result_t res[100];
        for (int j = 0; j < batch; j++) {
            key_of(b * batch + j, keys[j]);
            size_t vl = val_of(b * batch + j, vals[j]);
            items[j] = (shale_item_t){keys[j], strlen(keys[j]), vals[j], vl};
        }
        ck_assert_int_eq(shale_mput(c, items, (size_t)batch, res), SHALE_OK);
        for (int j = 0; j < batch; j++) {
            ck_assert_int_eq(res[j].status, SHALE_OK);
            acked[b * batch + j] = 1;
        }
        shale_item_results_free(res, (size_t)batch);
    }
    shale_close(c);
    uint64_t top = leader_applied();
    ck_assert_int_eq(th_group_start_node(&g_grp, down, extra), 0);
    if (th_node_wait_applied(&g_grp.nodes[down], top, 60000) != 0) {
        th_node_dump_log(&g_grp.nodes[down]);
        ck_abort_msg("the follower did not catch up");
    }
    check_node_has(g_grp.nodes[down].addr, acked, n);
    free(acked);
}

/* A follower stopped while 10,000 writes land catches up after restart and
 * serves them. */
START_TEST(test_follower_catches_up)
{
    follower_catch_up_case(47, NULL, 10000, 100);
    stop_group();
}
END_TEST

/* The same after the leader compacted its log past the follower: the
 * follower gets a Raft snapshot descriptor and fetches the RocksDB state
 * out of band (server/snapshot_*.c), then applies the rest of the log. */
START_TEST(test_follower_catches_up_through_snapshot)
{
    const char *extra[] = {"--snapshot-threshold", "64", "--snapshot-trailing", "16", NULL};
    follower_catch_up_case(60, extra, 12000, 50);
    /* It really went through a snapshot. */
    int down = -1;
    for (int i = 0; i < 3 && down < 0; i++) {
        FILE *lf = fopen(g_grp.nodes[i].log, "r");
        static char logbuf[1 << 20];
        size_t lr = fread(logbuf, 1, sizeof(logbuf) - 1, lf);
        logbuf[lr] = '\0';
        fclose(lf);
        if (strstr(logbuf, "state restored from a checkpoint") != NULL)
            down = i;
    }
    ck_assert_msg(down >= 0, "the follower caught up without a snapshot: compaction did not happen?");
    stop_group();
}
END_TEST

/* A read replica added to a group with data catches up and serves STALE
 * reads; it refuses once it cannot prove freshness (the voters are stopped,
 * so no leader stamps new entries) and serves again when they resume. */
START_TEST(test_read_replica_stale_reads)
{
    int leader = start_group(3, 50, NULL);
    shale_client_t *c = connect_to(g_grp.addrs, 10000);
    enum { N = 300 };
    char *acked = calloc(N, 1);
    for (int i = 0; i < N; i++) {
        char k[32], v[64];
        key_of(i, k);
        size_t vl = val_of(i, v);
        ck_assert_int_eq(shale_put(c, k, strlen(k), v, vl, NULL), SHALE_OK);
        acked[i] = 1;
    }
    /* Node 4 joins as a read replica. */
    th_node_t *rep = &g_grp.nodes[3];
    th_node_init(rep, 4, "127.0.0.53", g_base);
    const char *join[] = {"--initial-cluster", "none", "--election-timeout-ms", "400",
                          "--heartbeat-ms", "50", NULL};
    ck_assert_int_eq(th_node_start(rep, join), 0);
    g_grp.n = 4;
    char raft[64], msg[SHALE_ERRMSG_LEN];
    snprintf(raft, sizeof(raft), "%s:%d", rep->host, rep->raft_port);
    int rv = shale_member_add(c, 4, raft, rep->addr, 1, msg);
    ck_assert_msg(rv == SHALE_OK, "member add: %s", shale_errmsg(c));
    ck_assert_int_eq(th_node_wait_applied(rep, leader_applied(), 20000), 0);
    check_node_has(rep->addr, acked, N);

    /* Its status says replica; the leader's table lists it. */
    struct Shale__StatusResponse *st;
    ck_assert_int_eq(th_node_status(rep, &st), 0);
    ck_assert_str_eq(st->role, "replica");
    shale__status_response__free_unpacked(st, NULL);
    /* A replica cannot lead: the transfer says so in Shale's terms. */
    ck_assert_int_eq(shale_leader_transfer(c, 4, msg), SHALE_EINVAL);
    ck_assert_msg(strstr(shale_errmsg(c), "read replica") != NULL, "%s", shale_errmsg(c));

    /* A linearizable read sent to the replica alone is redirected. */
    shale_client_t *rc = connect_to(rep->addr, 5000);
    shale_value_t v = {0};
    ck_assert_int_eq(shale_get(rc, "gk-000001", 9, NULL, &v), SHALE_OK);
    ck_assert(v.found);
    shale_value_free(&v);
    shale_close(rc);

    /* Stop two voters (the leader among them): no quorum, no new entries. */
    int other = (leader + 1) % 3;
    kill(g_grp.nodes[leader].pid, SIGSTOP);
    kill(g_grp.nodes[other].pid, SIGSTOP);
    usleep(1500 * 1000);
    rc = connect_to(rep->addr, 2000);
    shale_read_opts_t ro = {.consistency = SHALE_STALE, .max_staleness_ms = 500};
    rv = shale_get(rc, "gk-000001", 9, &ro, &v);
    ck_assert_msg(rv == SHALE_ESTALE, "stale read past the bound answered %d (%s)", rv,
                  shale_errmsg(rc));
    /* A wider bound is still honoured. */
    ro.max_staleness_ms = 60000;
    ck_assert_int_eq(shale_get(rc, "gk-000001", 9, &ro, &v), SHALE_OK);
    shale_value_free(&v);
    kill(g_grp.nodes[leader].pid, SIGCONT);
    kill(g_grp.nodes[other].pid, SIGCONT);
    ro.max_staleness_ms = 500;
    rv = SHALE_ESTALE;
    for (int i = 0; i < 100 && rv == SHALE_ESTALE; i++) {
        rv = shale_get(rc, "gk-000001", 9, &ro, &v);
        if (rv == SHALE_ESTALE)
            usleep(100 * 1000);
    }
    ck_assert_int_eq(rv, SHALE_OK);
    shale_value_free(&v);
    shale_close(rc);
    shale_close(c);
    free(acked);
    stop_group();
}
END_TEST

/* Add a voter, hand it the leadership, remove the old leader: the group
 * keeps serving and keeps its data through each change. */
START_TEST(test_membership_changes)
{
    int leader = start_group(3, 54, NULL);
    shale_client_t *c = connect_to(g_grp.addrs, 10000);
    ck_assert_int_eq(shale_put(c, "before", 6, "1", 1, NULL), SHALE_OK);
    th_node_t *nn = &g_grp.nodes[3];
    th_node_init(nn, 4, "127.0.0.57", g_base);
    const char *join[] = {"--initial-cluster", "none", "--election-timeout-ms", "400",
                          "--heartbeat-ms", "50", NULL};
    ck_assert_int_eq(th_node_start(nn, join), 0);
    g_grp.n = 4;
    char raft[64], msg[SHALE_ERRMSG_LEN];
    snprintf(raft, sizeof(raft), "%s:%d", nn->host, nn->raft_port);
    ck_assert_msg(shale_member_add(c, 4, raft, nn->addr, 0, msg) == SHALE_OK, "add: %s",
                  shale_errmsg(c));
    /* Adding the same member again is answered at once. */
    ck_assert_int_eq(shale_member_add(c, 4, raft, nn->addr, 0, msg), SHALE_OK);
    /* A member id already used at another address is refused. */
    ck_assert_int_eq(shale_member_add(c, 4, "127.0.0.57:1", nn->addr, 0, msg), SHALE_EINVAL);
    ck_assert_msg(shale_leader_transfer(c, 4, msg) == SHALE_OK, "transfer: %s",
                  shale_errmsg(c));
    int l = th_group_wait_leader(&g_grp, 10000);
    ck_assert_int_eq(l, 3);
    /* Asking for the leader it already has is answered, not an error;
     * an unknown node is refused by name. */
    ck_assert_msg(shale_leader_transfer(c, 4, msg) == SHALE_OK, "%s", shale_errmsg(c));
    ck_assert_msg(strstr(msg, "already leads") != NULL, "%s", msg);
    ck_assert_int_eq(shale_leader_transfer(c, 99, msg), SHALE_EINVAL);
    ck_assert_msg(strstr(shale_errmsg(c), "not a member") != NULL, "%s", shale_errmsg(c));
    /* The voter to remove is paused first, so it never learns it was
     * removed: when it resumes it still thinks it is a voter, and its
     * election timer has long expired. */
    th_node_t *gone = &g_grp.nodes[leader];
    ck_assert_int_eq(kill(gone->pid, SIGSTOP), 0);
    shale_close(c); /* it may be connected to the paused node */
    c = connect_to(nn->addr, 10000);
    ck_assert_msg(shale_member_remove(c, (uint64_t)leader + 1, msg) == SHALE_OK, "remove: %s",
                  shale_errmsg(c));
    struct Shale__StatusResponse *st0;
    ck_assert_int_eq(th_node_status(nn, &st0), 0);
    uint64_t term0 = st0->term;
    shale__status_response__free_unpacked(st0, NULL);
    ck_assert_int_eq(kill(gone->pid, SIGCONT), 0);
    usleep(2500 * 1000); /* ~6 election timeouts */
    /* The removed node's elections cannot depose the healthy leader (its
     * RequestVotes meet members that have a leader; pre-vote keeps its
     * term from rising in the first place). */
    ck_assert_int_eq(th_node_status(nn, &st0), 0);
    ck_assert_str_eq(st0->role, "leader");
    ck_assert_msg(st0->term == term0, "a removed voter disrupted the group: term %llu -> %llu",
                  (unsigned long long)term0, (unsigned long long)st0->term);
    shale__status_response__free_unpacked(st0, NULL);
    ck_assert_int_eq(shale_member_remove(c, 99, msg), SHALE_EINVAL);
    ck_assert_int_eq(shale_put(c, "after", 5, "2", 1, NULL), SHALE_OK);
    shale_value_t v = {0};
    ck_assert_int_eq(shale_get(c, "before", 6, NULL, &v), SHALE_OK);
    ck_assert(v.found);
    shale_value_free(&v);
    /* The removed node's table no longer matters; the group's does. */
    struct Shale__StatusResponse *st;
    ck_assert_int_eq(th_node_status(nn, &st), 0);
    ck_assert_uint_eq(st->n_members, 3);
    shale__status_response__free_unpacked(st, NULL);
    shale_close(c);
    stop_group();
}
END_TEST

/* A follower answers a write with NOT_LEADER naming the leader's client
 * address, and refuses a membership change the same way. */
START_TEST(test_follower_names_the_leader)
{
    int leader = start_group(3, 58, NULL);
    int f = (leader + 1) % 3;
    /* The follower names the leader once it has heard from it (a loaded
     * machine can elect before the follower's first heartbeat arrives). */
    int knows = 0;
    for (int i = 0; i < 200 && !knows; i++) {
        struct Shale__StatusResponse *st;
        if (th_node_status(&g_grp.nodes[f], &st) == 0) {
            knows = st->has_leader_id && st->leader_id >= 1 && st->leader_id <= 3 &&
                    (int)st->leader_id - 1 != f;
            if (knows)
                leader = (int)st->leader_id - 1;
            shale__status_response__free_unpacked(st, NULL);
        }
        if (!knows)
            usleep(50 * 1000);
    }
    ck_assert_msg(knows, "follower %d never learned a leader", f + 1);
    int fd = th_raw_connect_hello(g_grp.nodes[f].host, g_grp.nodes[f].port, NULL);
    ck_assert_int_ge(fd, 0);
    Shale__PutRequest p = SHALE__PUT_REQUEST__INIT;
    p.key.data = (uint8_t *)"k";
    p.key.len = 1;
    p.value.data = (uint8_t *)"v";
    p.value.len = 1;
    ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_PUT_REQ, 7, &p), 0);
    th_frame_t fr;
    ck_assert_int_eq(th_raw_recv(fd, &fr), 0);
    ck_assert_int_eq(th_frame_error_code(&fr), SHALE__ERROR_CODE__NOT_LEADER);
    Shale__Error *e = shale__error__unpack(NULL, fr.len, fr.payload);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->leader_hint, g_grp.nodes[leader].addr);
    shale__error__free_unpacked(e, NULL);
    th_frame_free(&fr);
    close(fd);
    stop_group();
}
END_TEST

/* The recovery from a damaged Raft log (docs/operations.md, "A damaged Raft
 * log"): a follower killed with acknowledged entries in its open segment
 * gets one byte flipped in the segment's first batch, while intact batches
 * follow. It refuses to start (exit 1, the file named: raft_segcheck.c).
 * Removing it from the group, wiping its data and adding it back as a
 * joining node brings every acknowledged write back on it. */
START_TEST(test_damaged_follower_rejoins)
{
    int leader = start_group(3, 64, NULL);
    int f = (leader + 1) % 3;
    th_node_t *fn = &g_grp.nodes[f];
    shale_client_t *c = connect_to(g_grp.addrs, 10000);
    enum { N = 200, B = 40 };
    static char keys[B][32], vals[B][64];
    char acked[N] = {0};
    for (int b = 0; b < N / B; b++) {
        shale_item_t items[B];
        shale_item_result_t res[B];
        for (int j = 0; j < B; j++) {
            key_of(b * B + j, keys[j]);
            size_t vl = val_of(b * B + j, vals[j]);
            items[j] = (shale_item_t){keys[j], strlen(keys[j]), vals[j], vl};
        }
        ck_assert_int_eq(shale_mput(c, items, B, res), SHALE_OK);
        for (int j = 0; j < B; j++) {
            ck_assert_int_eq(res[j].status, SHALE_OK);
            acked[b * B + j] = 1;
        }
        shale_item_results_free(res, B);
    }
    shale_close(c);
    ck_assert_int_eq(th_node_wait_applied(fn, leader_applied(), 20000), 0);
    ck_assert_int_ne(th_node_stop(fn, SIGKILL), -1);

    char seg[700];
    ck_assert_msg(th_damage_open_segment(fn->dir, seg, sizeof(seg)) == 0, "no batch to damage in %s",
                  seg);

    ck_assert_int_eq(th_group_start_node(&g_grp, f, NULL), 0);
    int st;
    ck_assert_int_eq(waitpid(fn->pid, &st, 0), fn->pid);
    fn->pid = 0;
    static char logbuf[1 << 16];
    FILE *fp = fopen(fn->log, "r");
    ck_assert_ptr_nonnull(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, size > (long)sizeof(logbuf) - 1 ? size - (long)sizeof(logbuf) + 1 : 0, SEEK_SET);
    logbuf[fread(logbuf, 1, sizeof(logbuf) - 1, fp)] = '\0';
    fclose(fp);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d", st);
    ck_assert_msg(strstr(logbuf, seg) != NULL && strstr(logbuf, "is damaged") != NULL,
                  "damage not reported:\n%s", logbuf);

    /* The documented recovery: remove, wipe, start as a joiner, add. */
    char others[512], raft[64], msg[SHALE_ERRMSG_LEN];
    th_group_addrs(&g_grp, others, sizeof(others), f);
    c = connect_to(others, 10000);
    ck_assert_msg(shale_member_remove(c, fn->id, msg) == SHALE_OK, "remove: %s", shale_errmsg(c));
    th_rmrf(fn->dir);
    const char *join[] = {"--initial-cluster", "none", "--election-timeout-ms", "400",
                          "--heartbeat-ms", "50", NULL};
    ck_assert_int_eq(th_node_start(fn, join), 0);
    snprintf(raft, sizeof(raft), "%s:%d", fn->host, fn->raft_port);
    /* "another membership change is in progress" (OVERLOADED) asks for a
     * retry: a loaded machine (ASan) can still be finishing the removal. */
    int arv = SHALE_EOVERLOAD;
    for (int i = 0; i < 60 && arv == SHALE_EOVERLOAD; i++)
        if ((arv = shale_member_add(c, fn->id, raft, fn->addr, 0, msg)) == SHALE_EOVERLOAD)
            usleep(500 * 1000);
    ck_assert_msg(arv == SHALE_OK, "add: %s", shale_errmsg(c));
    shale_close(c);
    if (th_node_wait_applied(fn, leader_applied(), 30000) != 0) {
        th_node_dump_log(fn);
        ck_abort_msg("the re-joined node did not catch up");
    }
    check_node_has(fn->addr, acked, N);
    stop_group();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("group");
    TCase *tc = tcase_create("process");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_follower_names_the_leader);
    tcase_add_test(tc, test_leader_kill9_during_writes);
    tcase_add_test(tc, test_cas_counter_exactly_once);
    tcase_add_test(tc, test_follower_catches_up);
    tcase_add_test(tc, test_follower_catches_up_through_snapshot);
    tcase_add_test(tc, test_read_replica_stale_reads);
    tcase_add_test(tc, test_membership_changes);
    tcase_add_test(tc, test_damaged_follower_rejoins);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
