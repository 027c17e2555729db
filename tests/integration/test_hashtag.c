/* Hash tags end to end (issue 14; proto/keyhash.h, docs/protocol.md "Hash
 * tags"), with real processes: a 3-node meta group, two shard groups, a
 * router and shalectl. What it proves:
 *  - {user1}.a, {user1}.b and {user1}.c, written through the router in one
 *    MPUT, land in the slot of "user1" in one group (the other group
 *    answers WRONG_GROUP for each), sent as one part (the router's request
 *    log), although their whole-key slots lie in both groups;
 *  - shalectl slot shows the slot and the hash tag (text and --json);
 *  - a request stamped as a router of the old key hash would stamp it
 *    (Route.slot = the whole-key slot) is refused INVALID by the node and
 *    writes nothing;
 *  - shalectl slot move of that slot moves the three keys together: the
 *    other group owns them all and they read back through the router.
 *
 * Hosts 127.0.0.120.. (meta), .130/.140 (groups), .125 (router). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmap.h"
#include "frame.h"
#include "harness_cluster.h"
#include "keyhash.h"
#include "shale.h"
#include "wire.h"

#define FIRST_HOST 120
#define SLOTS 256

static th_cluster_t g_cl;
static char *g_base;
static th_node_t g_router;
static char g_out[16384];

static const char *const g_keys[] = {"{user1}.a", "{user1}.b", "{user1}.c"};
static const char *const g_vals[] = {"value-a", "value-b", "value-c"};
#define NKEYS 3

/* shalectl ARGS against the meta group: its exit code, output in g_out. */
#define CTL(...) th_shalectl(g_out, sizeof(g_out), "--meta %s " __VA_ARGS__)

/* The newest map any meta member has. */
static Shale__ClusterMap *get_map(void)
{
    Shale__ClusterMap *best = th_map_newest(&g_cl);
    ck_assert_ptr_nonnull(best);
    return best;
}

static void wait_router_epoch(uint64_t epoch)
{
    ck_assert_int_eq(th_router_wait_epoch(&g_router, epoch, 10000), 0);
}

/* Two groups of one voter, the map over SLOTS slots, a router logging every
 * request (debug). */
static void start_cluster(void)
{
    g_base = th_tmpdir("hashtag");
    ck_assert_ptr_nonnull(g_base);
    ck_assert_int_eq(th_cluster_start(&g_cl, 2, 1, FIRST_HOST, g_base, NULL), 0);
    /* The map over SLOTS slots, split evenly (as shalectl init does). */
    ck_assert_int_eq(th_cluster_init(&g_cl, SLOTS, 20000), 0);
    const uint64_t epoch = 1;

    th_node_init(&g_router, 1, "127.0.0.125", g_base);
    snprintf(g_router.log, sizeof(g_router.log), "%s/router.log", g_base);
    const char *argv[] = {"--listen",    g_router.addr, "--meta", g_cl.meta.addrs, "--timeout-ms",
                          "10000",       "--log-level", "debug",  NULL};
    ck_assert_int_eq(th_router_start(&g_router, argv, 1), 0);
    wait_router_epoch(epoch);
}

/* Also the checked teardown: runs after a failed test too (no fork), so
 * nothing started is left running. */
static void stop_cluster(void)
{
    th_cluster_teardown(&g_cl, &g_base, (th_node_t *const[]){&g_router, NULL});
}

static shale_client_t *connect_to(const char *addrs)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 15000;
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN] = "";
    int rv = shale_connect(addrs, &o, &c, err);
    ck_assert_msg(rv == SHALE_OK, "connect to %s: %s", addrs, err);
    return c;
}

/* Every tagged key is served by group `owner` alone: it reads the key
 * there, the other group answers WRONG_GROUP. */
static void assert_owner(uint64_t owner)
{
    for (int g = 1; g <= g_cl.ngroups; g++) {
        shale_client_t *c = connect_to(g_cl.groups[g - 1].addrs);
        for (int i = 0; i < NKEYS; i++) {
            shale_value_t v;
            int rv = shale_get(c, g_keys[i], strlen(g_keys[i]), NULL, &v);
            if ((uint64_t)g == owner) {
                ck_assert_msg(rv == SHALE_OK && v.found, "%s: group %d: %s", g_keys[i], g,
                              shale_strerror(rv));
                ck_assert_uint_eq(v.len, strlen(g_vals[i]));
                ck_assert_int_eq(memcmp(v.data, g_vals[i], v.len), 0);
                shale_value_free(&v);
            } else {
                ck_assert_msg(rv == SHALE_EWRONGGROUP, "%s: group %d answers %s, not WRONG_GROUP",
                              g_keys[i], g, shale_strerror(rv));
            }
        }
        shale_close(c);
    }
}

/* The three keys read back through the router in one MGET. */
static void assert_router_reads(void)
{
    shale_client_t *c = connect_to(g_router.addr);
    shale_item_t items[NKEYS];
    shale_item_result_t res[NKEYS];
    for (int i = 0; i < NKEYS; i++)
        items[i] = (shale_item_t){g_keys[i], strlen(g_keys[i]), NULL, 0};
    ck_assert_int_eq(shale_mget(c, items, NKEYS, NULL, res), SHALE_OK);
    for (int i = 0; i < NKEYS; i++) {
        ck_assert_msg(res[i].status == SHALE_OK && res[i].found, "%s: %s", g_keys[i],
                      shale_strerror(res[i].status));
        ck_assert_uint_eq(res[i].len, strlen(g_vals[i]));
        ck_assert_int_eq(memcmp(res[i].data, g_vals[i], res[i].len), 0);
    }
    shale_item_results_free(res, NKEYS);
    shale_close(c);
}

/* A line of the router's log holding every needle (up to 5 s). */
static int router_logged(const char *a, const char *b, const char *c)
{
    long long end = th_now_ms() + 5000;
    do {
        FILE *f = fopen(g_router.log, "r");
        if (f != NULL) {
            char line[4096];
            int found = 0;
            while (!found && fgets(line, sizeof(line), f) != NULL)
                found =
                    strstr(line, a) != NULL && strstr(line, b) != NULL && strstr(line, c) != NULL;
            fclose(f);
            if (found)
                return 1;
        }
        usleep(50 * 1000);
    } while (th_now_ms() < end);
    return 0;
}

START_TEST(test_hash_tag_through_router)
{
    start_cluster();
    Shale__ClusterMap *m = get_map();
    uint32_t slot = shale_key_slot("user1", 5, SLOTS);
    uint64_t owner = cmap_slot_group(m, slot), other = owner == 1 ? 2 : 1;
    ck_assert(owner == 1 || owner == 2);
    /* The point of the test: by whole-key hashing (key-hash v1) the keys
     * would lie in different slots of both groups. */
    int in_group[3] = {0, 0, 0};
    for (int i = 0; i < NKEYS; i++) {
        ck_assert_uint_eq(shale_key_slot(g_keys[i], strlen(g_keys[i]), SLOTS), slot);
        uint32_t v1 = (uint32_t)(shale_hash64(g_keys[i], strlen(g_keys[i]), 0) % SLOTS);
        ck_assert_uint_ne(v1, slot);
        in_group[cmap_slot_group(m, v1)] = 1;
    }
    ck_assert_msg(in_group[1] && in_group[2], "whole-key slots all in one group");
    cmap_free(m);

    /* One MPUT through the router: one part, to the owner of the tag's
     * slot. */
    shale_client_t *c = connect_to(g_router.addr);
    shale_item_t items[NKEYS];
    shale_item_result_t res[NKEYS];
    for (int i = 0; i < NKEYS; i++)
        items[i] = (shale_item_t){g_keys[i], strlen(g_keys[i]), g_vals[i], strlen(g_vals[i])};
    ck_assert_int_eq(shale_mput(c, items, NKEYS, res), SHALE_OK);
    for (int i = 0; i < NKEYS; i++)
        ck_assert_msg(res[i].status == SHALE_OK, "mput %s: %s", g_keys[i],
                      shale_strerror(res[i].status));
    shale_item_results_free(res, NKEYS);
    shale_close(c);
    char want[96];
    snprintf(want, sizeof(want), "op=mput slot=%u group=%llu ", slot, (unsigned long long)owner);
    ck_assert_msg(router_logged(want, " parts=1 ", "outcome=ok"),
                  "no '%s ... parts=1 ... outcome=ok' in the router log %s", want, g_router.log);
    assert_owner(owner);
    assert_router_reads();

    /* shalectl slot names the slot, the tag and the group. */
    int rc = CTL("slot '{user1}.a' '{user1}.b' '{user1}.c' plain", g_cl.meta.addrs);
    ck_assert_msg(rc == 0, "slot: %s", g_out);
    fprintf(stderr, "test_hash_tag_through_router: shalectl slot:\n%s", g_out);
    for (int i = 0; i < NKEYS; i++) {
        snprintf(want, sizeof(want), "%s -> slot %u (hash tag \"user1\") -> group %llu\n",
                 g_keys[i], slot, (unsigned long long)owner);
        ck_assert_msg(strstr(g_out, want) != NULL, "no '%s' in:\n%s", want, g_out);
    }
    snprintf(want, sizeof(want), "plain -> slot %u -> group", shale_key_slot("plain", 5, SLOTS));
    ck_assert_msg(strstr(g_out, want) != NULL, "no '%s' in:\n%s", want, g_out);
    rc = CTL("slot --json '{user1}.b' plain", g_cl.meta.addrs);
    ck_assert_msg(rc == 0, "slot --json: %s", g_out);
    snprintf(want, sizeof(want),
             "{\"key\":\"{user1}.b\",\"slot\":%u,\"hash_tag\":\"user1\","
             "\"group\":%llu}",
             slot, (unsigned long long)owner);
    ck_assert_msg(strstr(g_out, want) != NULL, "no '%s' in:\n%s", want, g_out);
    ck_assert_msg(strstr(strstr(g_out, "\"plain\""), "hash_tag") == NULL, "%s", g_out);

    /* A router still on whole-key hashing stamps the whole key's slot: the
     * node computes the slot itself and refuses, writing nothing. */
    const th_node_t *n = &g_cl.groups[owner - 1].nodes[0];
    Shale__Route rt = SHALE__ROUTE__INIT;
    rt.has_slot = 1;
    rt.slot = (uint32_t)(shale_hash64(g_keys[0], strlen(g_keys[0]), 0) % SLOTS);
    Shale__PutRequest put = SHALE__PUT_REQUEST__INIT;
    put.key.data = (uint8_t *)g_keys[0];
    put.key.len = strlen(g_keys[0]);
    put.value.data = (uint8_t *)"stale-router";
    put.value.len = 12;
    put.route = &rt;
    int fd = th_raw_connect_hello(n->host, n->port, NULL);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_PUT_REQ, 7, &put), 0);
    th_frame_t f;
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_uint_eq(f.id, 7);
    ck_assert_msg(f.type == SHALE_MSG_ERROR && th_frame_error_code(&f) == -SHALE_EINVAL,
                  "a whole-key Route.slot: answer %s, error %d", frame_type_name(f.type),
                  th_frame_error_code(&f));
    th_frame_free(&f);
    close(fd);
    assert_router_reads(); /* unchanged */

    /* Move the tag's slot: the three keys move together. */
    rc = CTL("slot move %u %llu", g_cl.meta.addrs, slot, (unsigned long long)other);
    ck_assert_msg(rc == 0, "slot move: %s", g_out);
    m = get_map();
    ck_assert_uint_eq(cmap_slot_group(m, slot), other);
    ck_assert_uint_eq(m->n_migrations, 0);
    uint64_t epoch = m->epoch;
    cmap_free(m);
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, epoch, 20000), 0);
    wait_router_epoch(epoch);
    assert_owner(other);
    assert_router_reads();
    rc = CTL("slot '{user1}.c'", g_cl.meta.addrs);
    snprintf(want, sizeof(want), "{user1}.c -> slot %u (hash tag \"user1\") -> group %llu\n", slot,
             (unsigned long long)other);
    ck_assert_msg(rc == 0 && strstr(g_out, want) != NULL, "no '%s' in:\n%s", want, g_out);
    th_node_stop(&g_router, SIGTERM);
    ck_assert_int_eq(th_log_sanitizer_errors(&g_router), 0);
    stop_cluster();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hashtag");
    TCase *tc = tcase_create("router");
    tcase_set_timeout(tc, 240);
    tcase_add_checked_fixture(tc, NULL, stop_cluster);
    tcase_add_test(tc, test_hash_tag_through_router);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
