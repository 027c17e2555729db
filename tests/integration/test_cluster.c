/* The meta group and slot ownership, with real processes: a 3-node meta
 * group (shaled --mode meta) holding the epoch-versioned cluster map, shard
 * groups following it (shaled --group G --meta ...), and the checks that
 * keep two admins or a stale router from doing harm (DESIGN §5).
 *
 * Hosts 127.0.0.110.. (meta), .120.. (group 1), .130.. (group 2). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmap.h"
#include "frame.h"
#include "harness_cluster.h"
#include "keyhash.h"
#include "shale.h"
#include "wire.h"

static th_cluster_t g_cl;
static char *g_base;

static void start_cluster(int ngroups, int voters)
{
    g_base = th_tmpdir("cluster");
    ck_assert_int_eq(th_cluster_start(&g_cl, ngroups, voters, 110, g_base, NULL), 0);
}

static void stop_cluster(void)
{
    th_cluster_teardown(&g_cl, &g_base, NULL);
}

static Shale__ClusterMap *get_map(uint64_t known, uint32_t wait_ms)
{
    Shale__ClusterMap *m = NULL;
    ck_assert_int_eq(th_map_get(g_cl.meta.addrs, known, wait_ms, &m), SHALE_OK);
    return m;
}

/* A key whose slot group `gid` owns in m. */
static void key_in_group(const Shale__ClusterMap *m, uint64_t gid, int nth, char *key,
                         size_t len)
{
    for (int i = 0, found = 0;; i++) {
        int n = snprintf(key, len, "key-%d", i);
        if (cmap_slot_group(m, shale_key_slot(key, (size_t)n, m->slots)) == gid &&
            found++ == nth)
            return;
    }
}

static shale_client_t *client_for(const th_group_t *g)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 5000;
    shale_client_t *c = NULL;
    ck_assert_int_eq(shale_connect(g->addrs, &o, &c, NULL), SHALE_OK);
    return c;
}

/* Two admins read the same epoch; the second CAS fails with the current
 * epoch instead of overwriting the first; a retry of the first (same
 * session) is answered with its first result and does not bump the epoch. */
START_TEST(test_map_cas_between_two_admins)
{
    start_cluster(2, 1);
    ck_assert_int_eq(th_cluster_init(&g_cl, 256, 20000), 0);
    Shale__ClusterMap *m = get_map(0, 0);
    ck_assert_uint_eq(m->epoch, 1);
    ck_assert_uint_eq(m->slots, 256);
    ck_assert_uint_eq(cmap_slot_count(m, 1), 128);

    /* Admin A gives every slot to group 1; admin B, from the same epoch,
     * wants them all on group 2. */
    Shale__ClusterMap *a = cmap_copy(m), *b = cmap_copy(m), *out = NULL;
    for (uint32_t s = 0; s < 256; s++) {
        a->slot_group[s] = 1;
        b->slot_group[s] = 2;
    }
    uint64_t epoch = 0;
    char msg[256];
    ck_assert_int_eq(th_map_cas(g_cl.meta.addrs, 1, a, 77, 1, &out, &epoch, msg), SHALE_OK);
    ck_assert_uint_eq(out->epoch, 2);
    cmap_free(out);
    ck_assert_int_eq(th_map_cas(g_cl.meta.addrs, 1, b, 88, 1, NULL, &epoch, msg),
                     SHALE_ECASFAILED);
    ck_assert_uint_eq(epoch, 2);
    ck_assert_ptr_nonnull(strstr(msg, "epoch is 2"));
    /* A's retry (outcome unknown to A): its first result, epoch stays 2. */
    ck_assert_int_eq(th_map_cas(g_cl.meta.addrs, 1, a, 77, 1, &out, &epoch, msg), SHALE_OK);
    ck_assert_uint_eq(out->epoch, 2);
    cmap_free(out);
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, 2, 20000), 0);
    Shale__ClusterMap *now = get_map(0, 0);
    ck_assert_uint_eq(now->epoch, 2);
    ck_assert_uint_eq(cmap_slot_count(now, 1), 256);
    /* Every member of the meta group has it (ask each alone). */
    for (int i = 0; i < 3; i++) {
        Shale__ClusterMap *mi = NULL;
        for (int t = 0; t < 100; t++) {
            ck_assert_int_eq(th_map_get(g_cl.meta.nodes[i].addr, 0, 0, &mi), SHALE_OK);
            if (mi->epoch == 2)
                break;
            cmap_free(mi);
            mi = NULL;
            usleep(20000);
        }
        ck_assert_ptr_nonnull(mi);
        cmap_free(mi);
    }
    cmap_free(now);
    cmap_free(a);
    cmap_free(b);
    cmap_free(m);
    stop_cluster();
}
END_TEST

/* Bad maps and misdirected requests get clear errors and change nothing. */
START_TEST(test_map_rules)
{
    start_cluster(1, 1);
    uint64_t epoch = 0;
    char msg[256];
    /* No map yet: epoch 0. */
    Shale__ClusterMap *m = get_map(0, 0);
    ck_assert_uint_eq(m->epoch, 0);
    cmap_free(m);
    ck_assert_int_eq(th_cluster_init(&g_cl, 64, 20000), 0);
    m = get_map(0, 0);
    /* init twice: the map exists */
    ck_assert_int_eq(th_map_cas(g_cl.meta.addrs, 0, m, 0, 0, NULL, &epoch, msg),
                     SHALE_ECASFAILED);
    ck_assert_uint_eq(epoch, 1);
    /* a slot on an unknown group */
    Shale__ClusterMap *bad = cmap_copy(m);
    bad->slot_group[3] = 42;
    ck_assert_int_eq(th_map_cas(g_cl.meta.addrs, 1, bad, 0, 0, NULL, &epoch, msg), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "unknown group 42"));
    bad->slot_group[3] = 1;
    /* the slot count is fixed */
    bad->slots = 32;
    bad->n_slot_group = 32;
    ck_assert_int_eq(th_map_cas(g_cl.meta.addrs, 1, bad, 0, 0, NULL, &epoch, msg), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "fixed at init"));
    bad->slots = 64;
    bad->n_slot_group = 64;
    cmap_free(bad);
    Shale__ClusterMap *still = get_map(0, 0);
    ck_assert_uint_eq(still->epoch, 1);
    cmap_free(still);
    /* A data node is not a meta node, and a meta node holds no data. */
    Shale__ClusterMap *x = NULL;
    ck_assert_int_eq(th_map_get(g_cl.groups[0].addrs, 0, 0, &x), SHALE_EINVAL);
    shale_client_t *c = client_for(&g_cl.meta);
    ck_assert_int_eq(shale_put(c, "k", 1, "v", 1, NULL), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(shale_errmsg(c), "meta node"));
    shale_close(c);
    cmap_free(m);
    stop_cluster();
}
END_TEST

/* MAP_GET with the current epoch waits for the next change (the watch
 * routers and groups use), and returns the same map when its wait ends. */
START_TEST(test_map_long_poll)
{
    start_cluster(1, 1);
    ck_assert_int_eq(th_cluster_init(&g_cl, 64, 20000), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    Shale__ClusterMap *m = get_map(1, 600);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long waited = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    ck_assert_uint_eq(m->epoch, 1);
    ck_assert_msg(waited >= 550, "a long-poll with nothing new returned after %ld ms", waited);
    /* A watcher started before a change gets it. */
    pid_t pid = fork();
    if (pid == 0) {
        usleep(300 * 1000);
        Shale__ClusterMap *n = cmap_copy(m);
        n->last_change_note = NULL;
        int rv = th_map_cas(g_cl.meta.addrs, 1, n, 5, 1, NULL, NULL, NULL);
        _exit(rv == SHALE_OK ? 0 : 1);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    Shale__ClusterMap *next = get_map(1, 20000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    waited = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ck_assert_uint_eq(next->epoch, 2);
    ck_assert_msg(waited < 10000, "the watch took %ld ms to see the change", waited);
    cmap_free(next);
    cmap_free(m);
    stop_cluster();
}
END_TEST

/* Groups learn which slots they own through their own Raft logs and refuse
 * the others with WRONG_GROUP{epoch}; when the map moves slots, the groups
 * follow (followers included). */
START_TEST(test_groups_serve_only_their_slots)
{
    start_cluster(2, 3);
    ck_assert_int_eq(th_cluster_init(&g_cl, 4096, 20000), 0);
    Shale__ClusterMap *m = get_map(0, 0);
    shale_client_t *c1 = client_for(&g_cl.groups[0]);
    shale_client_t *c2 = client_for(&g_cl.groups[1]);
    char k1[32], k2[32];
    key_in_group(m, 1, 0, k1, sizeof(k1));
    key_in_group(m, 2, 0, k2, sizeof(k2));
    ck_assert_int_eq(shale_put(c1, k1, strlen(k1), "one", 3, NULL), SHALE_OK);
    ck_assert_int_eq(shale_put(c2, k2, strlen(k2), "two", 3, NULL), SHALE_OK);
    ck_assert_int_eq(shale_put(c1, k2, strlen(k2), "x", 1, NULL), SHALE_EWRONGGROUP);
    ck_assert_ptr_nonnull(strstr(shale_errmsg(c1), "not owned by group 1 at epoch 1"));
    shale_value_t v;
    ck_assert_int_eq(shale_get(c2, k1, strlen(k1), NULL, &v), SHALE_EWRONGGROUP);
    /* Every member reports its ownership. */
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < 3; i++) {
            Shale__StatusResponse *st;
            ck_assert_int_eq(th_node_status(&g_cl.groups[g].nodes[i], &st), 0);
            ck_assert_str_eq(st->mode, "data");
            ck_assert_uint_eq(st->group_id, (uint64_t)g + 1);
            ck_assert_uint_eq(st->map_epoch, 1);
            ck_assert_uint_eq(st->slots_owned, 2048);
            shale__status_response__free_unpacked(st, NULL);
        }
    /* All slots to group 1 (no data moves here: ownership only). */
    Shale__ClusterMap *n = cmap_copy(m);
    for (uint32_t s = 0; s < n->slots; s++)
        n->slot_group[s] = 1;
    ck_assert_int_eq(th_map_cas(g_cl.meta.addrs, 1, n, 9, 1, NULL, NULL, NULL), SHALE_OK);
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, 2, 20000), 0);
    ck_assert_int_eq(shale_put(c1, k2, strlen(k2), "now-mine", 8, NULL), SHALE_OK);
    ck_assert_int_eq(shale_put(c2, k2, strlen(k2), "y", 1, NULL), SHALE_EWRONGGROUP);
    ck_assert_ptr_nonnull(strstr(shale_errmsg(c2), "at epoch 2"));
    /* A STALE read on a follower of group 2 is refused too. */
    shale_read_opts_t ro = {.consistency = SHALE_STALE, .max_staleness_ms = 0};
    ck_assert_int_eq(shale_get(c2, k2, strlen(k2), &ro, &v), SHALE_EWRONGGROUP);
    /* Ownership survives a restart of the whole group (it is in its log). */
    th_group_stop_all(&g_cl.groups[1]);
    char gid[4] = "2";
    const char *args[] = {"--group", gid, "--meta", g_cl.meta.addrs, NULL};
    ck_assert_int_eq(th_group_start(&g_cl.groups[1], args), 0);
    ck_assert_int_ge(th_group_wait_leader(&g_cl.groups[1], 20000), 0);
    Shale__StatusResponse *st;
    ck_assert_int_eq(th_node_status(&g_cl.groups[1].nodes[0], &st), 0);
    ck_assert_uint_eq(st->map_epoch, 2);
    ck_assert_uint_eq(st->slots_owned, 0);
    shale__status_response__free_unpacked(st, NULL);
    shale_close(c1);
    shale_close(c2);
    cmap_free(n);
    cmap_free(m);
    stop_cluster();
}
END_TEST

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i)); /* raft_uv_tcp: little endian */
}

/* Send garbage to a node's Raft port: random bytes, and well-formed
 * raft_uv_tcp handshakes naming a stranger (an unknown id; a real member's
 * exact id and address, but from 127.0.0.1 instead of the member's IP)
 * followed by a malformed message — libraft 0.15 segfaults on the latter
 * unless server/raft_tcp.c refuses the peer. */
static void garbage_to_raft(const th_group_t *g, int target)
{
    const th_node_t *n = &g->nodes[target];
    const th_node_t *other = &g->nodes[(target + 1) % g->n];
    char addr[32] = {0};
    snprintf(addr, sizeof(addr), "%s:%d", other->host, other->raft_port);
    for (int round = 0; round < 3; round++) {
        uint8_t buf[256];
        size_t len = 0;
        if (round == 0) {
            for (len = 0; len < 200; len++)
                buf[len] = (uint8_t)(len * 37 + 11);
        } else {
            put_u64(buf, 1);                    /* handshake protocol */
            /* round 1: unknown id; round 2: a member's id and address */
            put_u64(buf + 8, round == 1 ? 99 : other->id);
            put_u64(buf + 16, sizeof(addr));    /* address length */
            memcpy(buf + 24, addr, sizeof(addr));
            len = 24 + sizeof(addr);
            put_u64(buf + len, 1);              /* message preamble: format */
            put_u64(buf + len + 8, 64); /* a header length raft_uv accepts */
            len += 16;
            for (int i = 0; i < 64; i++)
                buf[len++] = (uint8_t)(i * 91 + round);
        }
        int fd = th_raw_connect(n->host, n->raft_port, 2000);
        ck_assert_int_ge(fd, 0);
        th_raw_send(fd, buf, len);
        usleep(100 * 1000);
        close(fd);
    }
}

/* The map survives the meta leader's kill -9: a change still commits on the
 * survivors, and the restarted node catches up. Garbage on the meta port
 * leaves it serving. */
START_TEST(test_meta_leader_kill_and_garbage)
{
    start_cluster(1, 3);
    ck_assert_int_eq(th_cluster_init(&g_cl, 64, 20000), 0);
    int leader = th_group_wait_leader(&g_cl.meta, 5000);
    ck_assert_int_ge(leader, 0);
    th_node_stop(&g_cl.meta.nodes[leader], SIGKILL);
    Shale__ClusterMap *m = get_map(0, 0);
    Shale__ClusterMap *out = NULL;
    ck_assert_int_eq(th_map_cas(g_cl.meta.addrs, 1, m, 3, 1, &out, NULL, NULL), SHALE_OK);
    ck_assert_uint_eq(out->epoch, 2);
    cmap_free(out);
    const char *margs[] = {"--mode", "meta", NULL};
    ck_assert_int_eq(th_group_start_node(&g_cl.meta, leader, margs), 0);
    ck_assert_int_eq(th_node_wait_up(&g_cl.meta.nodes[leader], 20000), 0);
    Shale__ClusterMap *mi = NULL;
    for (int t = 0; t < 200; t++) {
        ck_assert_int_eq(th_map_get(g_cl.meta.nodes[leader].addr, 0, 0, &mi), SHALE_OK);
        if (mi->epoch == 2)
            break;
        cmap_free(mi);
        mi = NULL;
        usleep(50000);
    }
    ck_assert_ptr_nonnull(mi);
    cmap_free(mi);
    /* Garbage: a header announcing a huge frame, then random bytes. */
    th_node_t *n0 = &g_cl.meta.nodes[0];
    int fd = th_raw_connect(n0->host, n0->port, 2000);
    ck_assert_int_ge(fd, 0);
    uint8_t junk[64];
    memset(junk, 0xA5, sizeof(junk));
    th_raw_send(fd, junk, sizeof(junk));
    th_frame_t f;
    if (th_raw_recv(fd, &f) == 0) /* an error, or the connection closes */
        th_frame_free(&f);
    close(fd);
    /* ... and on the Raft ports of a meta node and a data node, then on a
     * data node's client port: everything keeps serving. */
    garbage_to_raft(&g_cl.meta, 0);
    garbage_to_raft(&g_cl.meta, 1);
    garbage_to_raft(&g_cl.groups[0], 0);
    th_node_t *d0 = &g_cl.groups[0].nodes[0];
    fd = th_raw_connect(d0->host, d0->port, 2000);
    ck_assert_int_ge(fd, 0);
    th_raw_send(fd, junk, sizeof(junk));
    if (th_raw_recv(fd, &f) == 0)
        th_frame_free(&f);
    close(fd);
    for (int i = 0; i < 3; i++) {
        int st;
        ck_assert_msg(waitpid(g_cl.meta.nodes[i].pid, &st, WNOHANG) == 0,
                      "meta node %d died after garbage on its ports", i + 1);
        ck_assert_msg(waitpid(g_cl.groups[0].nodes[i].pid, &st, WNOHANG) == 0,
                      "data node %d died after garbage on its ports", i + 1);
    }
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, 2, 20000), 0);
    Shale__ClusterMap *after = get_map(0, 0);
    ck_assert_uint_eq(after->epoch, 2);
    cmap_free(after);
    shale_client_t *c = client_for(&g_cl.groups[0]);
    char k[32];
    key_in_group(m, 1, 0, k, sizeof(k));
    ck_assert_int_eq(shale_put(c, k, strlen(k), "v", 1, NULL), SHALE_OK);
    shale_close(c);
    cmap_free(m);
    stop_cluster();
}
END_TEST

/* Run shalectl with args (NULL-terminated) against the test's meta group;
 * returns its exit code, output (stdout+stderr) in out. */
static int ctl(char *out, size_t outlen, const char *const *args)
{
    char cmd[4096];
    int n = snprintf(cmd, sizeof(cmd), "%s/cluster/shalectl --meta %s --timeout 5000",
                     th_bin_dir(), g_cl.meta.addrs);
    for (int i = 0; args[i] != NULL; i++)
        n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, " '%s'", args[i]);
    snprintf(cmd + n, sizeof(cmd) - (size_t)n, " 2>&1");
    return th_run_capture(cmd, out, outlen);
}

/* The admin CLI against a real cluster: init from running groups, status,
 * group add/remove, refusals with their exit codes, leader transfer. */
START_TEST(test_shalectl_cluster_verbs)
{
    start_cluster(2, 3);
    static char out[65536];
    char g1[96], g2[96];
    snprintf(g1, sizeof(g1), "1=%s", g_cl.groups[0].nodes[0].addr);
    snprintf(g2, sizeof(g2), "2=%s", g_cl.groups[1].nodes[0].addr);
    const char *init[] = {"init", "--slots", "512", "--group", g1, "--group", g2, NULL};
    ck_assert_msg(ctl(out, sizeof(out), init) == 0, "init: %s", out);
    ck_assert_msg(ctl(out, sizeof(out), init) == 4, "second init: %s", out);
    ck_assert_ptr_nonnull(strstr(out, "already exists"));
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, 1, 20000), 0);
    /* A group id that is not the node's --group is refused. */
    char wrong[96];
    snprintf(wrong, sizeof(wrong), "%s", g_cl.groups[1].nodes[0].addr);
    const char *add_wrong[] = {"group", "add", "3", wrong, NULL};
    ck_assert_msg(ctl(out, sizeof(out), add_wrong) == 4, "group add wrong: %s", out);
    /* A group that is not in the map cannot be removed (removing one that
     * owns slots drains it first: test_migrate). */
    const char *rm9[] = {"group", "remove", "9", NULL};
    ck_assert_msg(ctl(out, sizeof(out), rm9) == 4, "group remove 9: %s", out);
    ck_assert_ptr_nonnull(strstr(out, "no group 9"));
    /* status --json names both groups and the epoch. */
    const char *st[] = {"--json", "status", NULL};
    ck_assert_msg(ctl(out, sizeof(out), st) == 0, "status: %s", out);
    ck_assert_ptr_nonnull(strstr(out, "\"epoch\""));
    Shale__ClusterMap *m = get_map(0, 0);
    ck_assert_uint_eq(m->epoch, 1);
    ck_assert_uint_eq(cmap_slot_count(m, 1), 256);
    ck_assert_uint_eq(cmap_slot_count(m, 2), 256);
    /* Leadership of group 2 moves to a named voter. */
    int before = th_group_wait_leader(&g_cl.groups[1], 5000);
    int target = (before + 1) % 3;
    char tid[8];
    snprintf(tid, sizeof(tid), "%llu", (unsigned long long)g_cl.groups[1].nodes[target].id);
    const char *xfer[] = {"leader", "transfer", "2", tid, NULL};
    ck_assert_msg(ctl(out, sizeof(out), xfer) == 0, "transfer: %s", out);
    ck_assert_int_eq(th_group_wait_leader(&g_cl.groups[1], 10000), target);
    /* Unreachable meta group: exit 3. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s/cluster/shalectl --meta 127.0.0.1:1 --timeout 500 status "
             ">/dev/null 2>&1", th_bin_dir());
    int rs = system(cmd);
    ck_assert_int_eq(WEXITSTATUS(rs), 3);
    cmap_free(m);
    stop_cluster();
}
END_TEST

/* shalectl replica rejoin (docs/operations.md, "A damaged Raft log"): a
 * follower whose open Raft segment is damaged refuses to start; the one
 * shalectl step takes it out of the group, waits while the operator wipes it
 * and starts it as a joiner, and adds it back with its addresses and role
 * from the map. It catches up with every write, and the map lists it as a
 * voter again. A member the map does not have is refused. */
START_TEST(test_replica_rejoin_damaged_member)
{
    start_cluster(1, 3);
    static char out[65536];
    char g1[96];
    snprintf(g1, sizeof(g1), "1=%s", g_cl.groups[0].nodes[0].addr);
    const char *init[] = {"init", "--slots", "64", "--group", g1, NULL};
    ck_assert_msg(ctl(out, sizeof(out), init) == 0, "init: %s", out);
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, 1, 20000), 0);
    th_group_t *g = &g_cl.groups[0];
    int leader = th_group_wait_leader(g, 10000);
    ck_assert_int_ge(leader, 0);
    int f = (leader + 1) % 3;
    th_node_t *fn = &g->nodes[f];
    shale_client_t *c = client_for(g);
    char k[32];
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof(k), "rejoin-%d", i);
        ck_assert_int_eq(shale_put(c, k, strlen(k), "v", 1, NULL), SHALE_OK);
    }
    uint64_t top = th_node_applied(&g->nodes[leader]);
    ck_assert_int_eq(th_node_wait_applied(fn, top, 20000), 0);
    ck_assert_int_ne(th_node_stop(fn, SIGKILL), -1);
    char seg[700];
    ck_assert_msg(th_damage_open_segment(fn->dir, seg, sizeof(seg)) == 0, "nothing to damage: %s",
                  seg);

    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "%s/cluster/shalectl --meta %s --timeout 5000 replica rejoin 1 %llu --wait 60 2>&1",
             th_bin_dir(), g_cl.meta.addrs, (unsigned long long)fn->id);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t used = 0;
    int waiting = 0;
    char line[1024];
    while (!waiting && fgets(line, sizeof(line), p) != NULL) {
        used += (size_t)snprintf(out + used, sizeof(out) - used, "%s", line);
        waiting = strstr(line, "waiting up to") != NULL;
    }
    ck_assert_msg(waiting, "rejoin did not wait for the node:\n%s", out);
    char gid[8] = "1";
    const char *join[] = {"--initial-cluster", "none", "--election-timeout-ms", "400",
                          "--heartbeat-ms", "50", "--group", gid, "--meta", g_cl.meta.addrs, NULL};
    th_rmrf(fn->dir);
    ck_assert_int_eq(th_node_start(fn, join), 0);
    while (fgets(line, sizeof(line), p) != NULL && used < sizeof(out) - 1)
        used += (size_t)snprintf(out + used, sizeof(out) - used, "%s", line);
    int st = pclose(p);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "rejoin exit %d:\n%s", st, out);
    ck_assert_ptr_nonnull(strstr(out, "added as voter"));

    ck_assert_int_eq(shale_put(c, "after", 5, "v", 1, NULL), SHALE_OK);
    shale_close(c);
    leader = th_group_wait_leader(g, 10000);
    ck_assert_int_ge(leader, 0);
    top = th_node_applied(&g->nodes[leader]);
    if (th_node_wait_applied(fn, top, 30000) != 0) {
        th_node_dump_log(fn);
        ck_abort_msg("the re-joined node did not catch up");
    }
    Shale__ClusterMap *m = get_map(0, 0);
    const Shale__ShardGroup *mg = cmap_group(m, 1);
    ck_assert_ptr_nonnull(mg);
    int found = 0;
    for (size_t i = 0; i < mg->n_members; i++)
        if (mg->members[i]->id == fn->id)
            found = !mg->members[i]->has_role ||
                    mg->members[i]->role == SHALE__MEMBER_ROLE__ROLE_VOTER;
    ck_assert_msg(found, "member %llu not a voter in the map", (unsigned long long)fn->id);
    cmap_free(m);

    /* A member that is not in the map is refused before anything changes. */
    const char *bad[] = {"replica", "rejoin", "1", "99", "--wait", "1", NULL};
    ck_assert_msg(ctl(out, sizeof(out), bad) == 4, "rejoin 99: %s", out);
    stop_cluster();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("process");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_map_cas_between_two_admins);
    tcase_add_test(tc, test_map_rules);
    tcase_add_test(tc, test_map_long_poll);
    tcase_add_test(tc, test_groups_serve_only_their_slots);
    tcase_add_test(tc, test_meta_leader_kill_and_garbage);
    tcase_add_test(tc, test_shalectl_cluster_verbs);
    tcase_add_test(tc, test_replica_rejoin_damaged_member);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
