/* shalectl slot assign --force, the repair that gives slots to a group
 * without moving their data (MAP_CAS.force; docs/operations.md, "A lost
 * group"), with real processes: a 3-node meta group, two single-voter shard
 * groups and a router, secure as the harness makes them (TLS, --auth, the
 * user admin; harness.h) plus a readwrite user rw.
 *
 * What it proves:
 *  - without --force the verb is refused before anything is sent: exit 2,
 *    a message saying the data stays behind, the map unchanged, the key
 *    still served by its group;
 *  - MAP_CAS with force needs admin: a readwrite user is refused
 *    (PERMISSION_DENIED) and the map is unchanged (when the harness runs
 *    secure: without users there is nobody to refuse);
 *  - a group not in the map, a slot beyond the map and a slot in a
 *    migration are refused (exit 4) with the reason;
 *  - with --force the slot moves: the map gives it to the new group, the
 *    router serves the key from the new group (empty at first, then what is
 *    written), the old group answers WRONG_GROUP for it and deletes its
 *    copy, the slot counts follow, and the other slots are untouched.
 *
 * Hosts 127.0.0.140..142 (meta), .150 (group 1), .160 (group 2), .149
 * (router). Run inside its own network namespace (testing.md). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmap.h"
#include "frame.h"
#include "harness_cluster.h"
#include "keyhash.h"
#include "shale.h"

#define META_HOST 140
#define SLOTS 64 /* group 1: 0-31, group 2: 32-63 */

static th_cluster_t g_cl;
static th_node_t g_rt;
static char *g_base;
static int g_ready;
static char g_rw_pw[600]; /* rw's password file */
static const char g_rw_text[] = "rw-pw";
static char g_out[65536];

/* The keys of the test: K in slot g_slot (group 2, the one reassigned),
 * K2 in another slot of group 2 (left alone), K1 in a slot of group 1. */
static char g_k[32], g_k2[32], g_k1[32];
static uint32_t g_slot, g_slot2;

/* shalectl --meta ... ARGS as the harness's admin; exit status, output in
 * g_out. */
static int ctl(const char *fmt, const char *a, const char *b)
{
    char args[1500];
    snprintf(args, sizeof(args), fmt, a, b);
    return th_shalectl(g_out, sizeof(g_out), "--meta %s --timeout 5000 %s", g_cl.meta.addrs, args);
}

/* A client as rw (anonymous when the harness runs plain). */
static int connect_rw(const char *addrs, shale_client_t **c)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 5000;
    o.stall_ms = 8000;
    if (th_secure()) {
        o.user = "rw";
        o.password = g_rw_text;
        o.password_len = strlen(g_rw_text);
    }
    char err[SHALE_ERRMSG_LEN];
    return shale_connect(addrs, &o, c, err);
}

/* The newest map any meta member has. */
static Shale__ClusterMap *get_map(void)
{
    Shale__ClusterMap *best = th_map_newest(&g_cl);
    ck_assert_ptr_nonnull(best);
    return best;
}

static uint64_t map_epoch(void)
{
    Shale__ClusterMap *m = get_map();
    uint64_t e = m->epoch;
    cmap_free(m);
    return e;
}

static uint64_t slot_owner(uint32_t slot)
{
    Shale__ClusterMap *m = get_map();
    uint64_t g = cmap_slot_group(m, slot);
    cmap_free(m);
    return g;
}

static uint64_t router_epoch(void)
{
    return th_router_epoch(&g_rt);
}

/* Wait until every node and the router have applied map epoch e. */
static void wait_epoch(uint64_t e)
{
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, e, 30000), 0);
    for (int i = 0; i < 300 && router_epoch() < e; i++)
        usleep(100 * 1000);
    ck_assert_uint_ge(router_epoch(), e);
}

/* GET key at addrs as rw: the status; *found and val (64 bytes) the answer. */
static int get_as_rw(const char *addrs, const char *key, int *found, char *val)
{
    shale_client_t *c = NULL;
    int rv = connect_rw(addrs, &c);
    if (rv != SHALE_OK)
        return rv;
    shale_value_t v = {0};
    rv = shale_get(c, key, strlen(key), NULL, &v);
    *found = rv == SHALE_OK && v.found;
    val[0] = '\0';
    if (*found)
        snprintf(val, 64, "%.*s", (int)v.len, (const char *)v.data);
    shale_value_free(&v);
    shale_close(c);
    return rv;
}

static int put_as_rw(const char *addrs, const char *key, const char *val)
{
    shale_client_t *c = NULL;
    int rv = connect_rw(addrs, &c);
    if (rv != SHALE_OK)
        return rv;
    rv = shale_put(c, key, strlen(key), val, strlen(val), NULL);
    shale_close(c);
    return rv;
}

/* The first key "k<i>" whose slot is in [lo, hi] and is not avoid. */
static void key_in(uint32_t lo, uint32_t hi, int64_t avoid, char *key, uint32_t *slot)
{
    for (int i = 0;; i++) {
        snprintf(key, 32, "k%d", i);
        uint32_t s = shale_key_slot(key, strlen(key), SLOTS);
        if (s >= lo && s <= hi && (int64_t)s != avoid) {
            *slot = s;
            return;
        }
    }
}

static void cluster_up(void)
{
    g_base = th_tmpdir("slot-assign");
    ck_assert_ptr_nonnull(g_base);
    /* Meta on .140-.142, group 1 on .150, group 2 on .160; slots split
     * evenly: group 1 0-31, group 2 32-63. */
    if (th_cluster_start(&g_cl, 2, 1, META_HOST, g_base, NULL) != 0 ||
        th_cluster_init(&g_cl, SLOTS, 30000) != 0) {
        fprintf(stderr, "test_slot_assign: the cluster did not start\n");
        return;
    }
    if (th_secure()) {
        snprintf(g_rw_pw, sizeof(g_rw_pw), "%s/rw.pw", g_base);
        FILE *f = fopen(g_rw_pw, "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "%s\n", g_rw_text);
        fclose(f);
        if (ctl("user add rw --role readwrite --password-file %s%s", g_rw_pw, "") != 0) {
            fprintf(stderr, "test_slot_assign: user rw: %s\n", g_out);
            return;
        }
    }
    th_node_init(&g_rt, 999, "127.0.0.149", g_base);
    snprintf(g_rt.log, sizeof(g_rt.log), "%s/router.log", g_base);
    const char *rargv[] = {"--listen", g_rt.addr, "--meta", g_cl.meta.addrs, NULL};
    if (th_router_start(&g_rt, rargv, 1) != 0) {
        fprintf(stderr, "test_slot_assign: the router did not start\n");
        return;
    }
    key_in(32, 63, -1, g_k, &g_slot);
    key_in(32, 63, g_slot, g_k2, &g_slot2);
    uint32_t s1;
    key_in(0, 31, -1, g_k1, &s1);
    /* Ready once rw can write through the router (map and users arrived). */
    for (int i = 0; i < 600; i++) {
        if (put_as_rw(g_rt.addr, g_k, "v1") == SHALE_OK &&
            put_as_rw(g_rt.addr, g_k2, "v1") == SHALE_OK &&
            put_as_rw(g_rt.addr, g_k1, "v1") == SHALE_OK) {
            g_ready = 1;
            return;
        }
        usleep(100 * 1000);
    }
    fprintf(stderr, "test_slot_assign: rw could not write through the router within 60 s\n");
}

static void cluster_down(void)
{
    th_cluster_teardown(&g_cl, &g_base, (th_node_t *const[]){&g_rt, NULL});
}

static void need_cluster(void)
{
    ck_assert_msg(g_ready, "the cluster did not start (see logs above)");
}

static void slot_str(uint32_t slot, char *buf)
{
    snprintf(buf, 16, "%u", slot);
}

START_TEST(test_refused_without_force)
{
    need_cluster();
    char s[16];
    slot_str(g_slot, s);
    uint64_t e = map_epoch();
    ck_assert_msg(ctl("slot assign %s %s", s, "1") == 2, "%s", g_out);
    ck_assert_msg(strstr(g_out, "refused without --force") != NULL, "%s", g_out);
    ck_assert_msg(strstr(g_out, "WITHOUT moving their data") != NULL, "%s", g_out);
    ck_assert_uint_eq(map_epoch(), e);
    ck_assert_uint_eq(slot_owner(g_slot), 2);
    int found;
    char v[64];
    ck_assert_int_eq(get_as_rw(g_rt.addr, g_k, &found, v), SHALE_OK);
    ck_assert(found);
    ck_assert_str_eq(v, "v1");
}
END_TEST

START_TEST(test_force_needs_admin)
{
    need_cluster();
    if (!th_secure())
        return; /* no users, nobody to refuse (SHALE_TEST_INSECURE=1) */
    char s[16], args[1200];
    slot_str(g_slot, s);
    uint64_t e = map_epoch();
    snprintf(args, sizeof(args), "--user rw --password-file %s slot assign %s 1 --force",
             g_rw_pw, s);
    ck_assert_msg(ctl("%s%s", args, "") == 1, "%s", g_out);
    ck_assert_msg(strstr(g_out, "permission denied") != NULL, "%s", g_out);
    ck_assert_msg(strstr(g_out, "MAP_CAS") != NULL, "%s", g_out);
    ck_assert_uint_eq(map_epoch(), e);
    ck_assert_uint_eq(slot_owner(g_slot), 2);
}
END_TEST

START_TEST(test_refused_targets)
{
    need_cluster();
    char s[16];
    slot_str(g_slot, s);
    uint64_t e = map_epoch();
    ck_assert_msg(ctl("slot assign %s %s --force", s, "9") == 4, "%s", g_out);
    ck_assert_msg(strstr(g_out, "group 9 is not in the map") != NULL, "%s", g_out);
    ck_assert_msg(ctl("slot assign 60-%s %s --force", "64", "1") == 4, "%s", g_out);
    ck_assert_msg(strstr(g_out, "slot 64 does not exist: the map has 64 slots") != NULL, "%s",
                  g_out);
    ck_assert_uint_eq(map_epoch(), e);
    /* A slot in a migration: finish or abort it first. */
    char s2[16];
    slot_str(g_slot2, s2);
    ck_assert_msg(ctl("slot move %s %s --stop-after start", s2, "1") == 0, "%s", g_out);
    ck_assert_msg(ctl("slot assign %s,%s 1 --force", s, s2) == 4, "%s", g_out);
    ck_assert_msg(strstr(g_out, "is in migration") != NULL &&
                      strstr(g_out, "finish or abort it first") != NULL,
                  "%s", g_out);
    ck_assert_uint_eq(slot_owner(g_slot), 2);
    ck_assert_msg(ctl("migration abort --all%s%s", "", "") == 0, "%s", g_out);
    wait_epoch(map_epoch());
    int found;
    char v[64];
    ck_assert_int_eq(get_as_rw(g_rt.addr, g_k2, &found, v), SHALE_OK);
    ck_assert(found);
}
END_TEST

START_TEST(test_force_moves_the_slot_without_its_data)
{
    need_cluster();
    char s[16];
    slot_str(g_slot, s);
    uint64_t e = map_epoch();
    ck_assert_msg(ctl("slot assign %s %s --force", s, "1") == 0, "%s", g_out);
    char want[64];
    snprintf(want, sizeof(want), "OK epoch %llu", (unsigned long long)e + 1);
    ck_assert_msg(strstr(g_out, want) != NULL, "%s", g_out);
    ck_assert_msg(strstr(g_out, "without their data, from group 2 (1)") != NULL, "%s", g_out);
    ck_assert_msg(strstr(g_out, "serves them from empty") != NULL, "%s", g_out);
    ck_assert_uint_eq(slot_owner(g_slot), 1);
    ck_assert_uint_eq(slot_owner(g_slot2), 2);
    wait_epoch(e + 1);
    /* The same again changes nothing. */
    ck_assert_msg(ctl("slot assign %s %s --force", s, "1") == 0, "%s", g_out);
    ck_assert_msg(strstr(g_out, "OK nothing to change") != NULL, "%s", g_out);
    ck_assert_uint_eq(map_epoch(), e + 1);

    /* The router sends the key to group 1, which has never held it. */
    int found;
    char v[64];
    ck_assert_int_eq(get_as_rw(g_rt.addr, g_k, &found, v), SHALE_OK);
    ck_assert_msg(!found, "the key is still there: %s", v);
    ck_assert_int_eq(put_as_rw(g_rt.addr, g_k, "v2"), SHALE_OK);
    ck_assert_int_eq(get_as_rw(g_rt.addr, g_k, &found, v), SHALE_OK);
    ck_assert(found);
    ck_assert_str_eq(v, "v2");
    /* ... and group 1 has it; group 2 no longer serves the slot. */
    ck_assert_int_eq(get_as_rw(g_cl.groups[0].nodes[0].addr, g_k, &found, v), SHALE_OK);
    ck_assert(found);
    ck_assert_str_eq(v, "v2");
    ck_assert_int_eq(get_as_rw(g_cl.groups[1].nodes[0].addr, g_k, &found, v), SHALE_EWRONGGROUP);
    /* The other slots are untouched. */
    ck_assert_int_eq(get_as_rw(g_rt.addr, g_k2, &found, v), SHALE_OK);
    ck_assert(found);
    ck_assert_str_eq(v, "v1");
    ck_assert_int_eq(get_as_rw(g_rt.addr, g_k1, &found, v), SHALE_OK);
    ck_assert(found);
    ck_assert_str_eq(v, "v1");
    /* Slot counts, from the groups themselves. */
    Shale__StatusResponse *st = NULL;
    ck_assert_int_eq(th_node_status(&g_cl.groups[0].nodes[0], &st), 0);
    ck_assert_uint_eq(st->slots_owned, 33);
    shale__status_response__free_unpacked(st, NULL);
    ck_assert_int_eq(th_node_status(&g_cl.groups[1].nodes[0], &st), 0);
    ck_assert_uint_eq(st->slots_owned, 31);
    shale__status_response__free_unpacked(st, NULL);
    /* Group 2 deleted its copy; the meta group logged the forced change. */
    char cmd[2048], line[64] = "";
    snprintf(cmd, sizeof(cmd),
             "grep -c 'slot data deleted by an ownership change.*dropped=1 ' %s; "
             "cat %s/meta/*.log | grep -c 'changed with force'",
             g_cl.groups[1].nodes[0].log, g_base);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), p));
    ck_assert_int_ge(atoi(line), 1);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), p));
    ck_assert_int_ge(atoi(line), 3); /* every meta member applied it */
    pclose(p);
    /* The map's note says what happened. */
    ck_assert_msg(ctl("map%s%s", "", "") == 0, "%s", g_out);
    ck_assert_msg(strstr(g_out, "last change: slot assign --force: 1 slot") != NULL, "%s", g_out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("slot_assign");
    TCase *t = tcase_create("cluster");
    tcase_add_unchecked_fixture(t, cluster_up, cluster_down);
    tcase_set_timeout(t, 180);
    /* In this order: the refusals first, while the slot still belongs to
     * group 2 (an assign that changes nothing sends nothing). */
    tcase_add_test(t, test_refused_without_force);
    tcase_add_test(t, test_force_needs_admin);
    tcase_add_test(t, test_refused_targets);
    tcase_add_test(t, test_force_moves_the_slot_without_its_data);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
