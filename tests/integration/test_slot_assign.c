/* shalectl slot assign --force, the repair that gives slots to a group
 * without moving their data (MAP_CAS.force; docs/operations.md, "A lost
 * group"), with real processes: a 3-node meta group, two single-voter shard
 * groups and a router, every one started with --auth (users root and svc
 * admin, rw readwrite).
 *
 * What it proves:
 *  - without --force the verb is refused before anything is sent: exit 2,
 *    a message saying the data stays behind, the map unchanged, the key
 *    still served by its group;
 *  - MAP_CAS with force needs admin: a readwrite user is refused
 *    (PERMISSION_DENIED) and the map is unchanged;
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
#include <sys/stat.h>
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
static char g_pw[3][600];
enum { PW_ROOT, PW_SVC, PW_RW };
static const char *const g_pwtext[] = {"root-pw", "svc-pw", "rw-pw"};
static char g_out[65536];

/* The keys of the test: K in slot g_slot (group 2, the one reassigned),
 * K2 in another slot of group 2 (left alone), K1 in a slot of group 1. */
static char g_k[32], g_k2[32], g_k1[32];
static uint32_t g_slot, g_slot2;

/* shalectl --meta ... ARGS; exit status, output in g_out. */
static int ctl(const char *fmt, const char *a, const char *b)
{
    char args[1500];
    snprintf(args, sizeof(args), fmt, a, b);
    return th_shalectl(g_out, sizeof(g_out), "--meta %s --timeout 5000 %s", g_cl.meta.addrs, args);
}

/* The same as root. */
static int ctl_root(const char *fmt, const char *a, const char *b)
{
    char args[1500];
    snprintf(args, sizeof(args), fmt, a, b);
    return th_shalectl(g_out, sizeof(g_out), "--meta %s --timeout 5000 --user root "
                       "--password-file %s %s", g_cl.meta.addrs, g_pw[PW_ROOT], args);
}

static int connect_as(const char *addrs, const char *user, int pw, shale_client_t **c)
{
    shale_options_t o;
    th_client_options(&o); /* TLS as the harness has it (harness.h) */
    o.timeout_ms = 5000;
    o.stall_ms = 8000;
    o.user = user;
    o.password = g_pwtext[pw];
    o.password_len = strlen(g_pwtext[pw]);
    char err[SHALE_ERRMSG_LEN];
    return shale_connect(addrs, &o, c, err);
}

/* The map as root, from the meta member at addr (cmap_free). */
static Shale__ClusterMap *map_at(const char *addr)
{
    shale_client_t *c = NULL;
    if (connect_as(addr, "root", PW_ROOT, &c) != SHALE_OK)
        return NULL;
    Shale__MapGetRequest g = SHALE__MAP_GET_REQUEST__INIT;
    uint8_t buf[32], *resp = NULL;
    size_t len = shale__map_get_request__pack(&g, buf), rlen = 0;
    int rv = shale_call(c, SHALE_MSG_MAP_GET_REQ, SHALE_MSG_MAP_RESP, buf, len, &resp, &rlen,
                        NULL, NULL);
    shale_close(c);
    if (rv != SHALE_OK)
        return NULL;
    Shale__MapResponse *r = shale__map_response__unpack(NULL, rlen, resp);
    free(resp);
    Shale__ClusterMap *m = r != NULL && r->map != NULL ? cmap_copy(r->map) : NULL;
    if (r != NULL)
        shale__map_response__free_unpacked(r, NULL);
    return m;
}

/* The newest map any meta member has. */
static Shale__ClusterMap *get_map(void)
{
    Shale__ClusterMap *best = NULL;
    for (int i = 0; i < g_cl.meta.n; i++) {
        Shale__ClusterMap *m = map_at(g_cl.meta.nodes[i].addr);
        if (m == NULL)
            continue;
        if (best == NULL || m->epoch > best->epoch) {
            cmap_free(best);
            best = m;
        } else {
            cmap_free(m);
        }
    }
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
    Shale__StatusResponse *st = NULL;
    if (th_node_status(&g_rt, &st) != 0)
        return 0;
    uint64_t e = st->has_map_epoch ? st->map_epoch : 0;
    shale__status_response__free_unpacked(st, NULL);
    return e;
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
    int rv = connect_as(addrs, "rw", PW_RW, &c);
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
    int rv = connect_as(addrs, "rw", PW_RW, &c);
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

static int start_group(int g, int host)
{
    char dir[700], gid[8];
    snprintf(dir, sizeof(dir), "%s/g%d", g_base, g);
    mkdir(dir, 0755);
    th_group_t *gr = &g_cl.groups[g - 1];
    th_group_init(gr, 1, host, dir);
    snprintf(gid, sizeof(gid), "%d", g);
    const char *args[] = {"--group",    gid,         "--meta", g_cl.meta.addrs,
                          "--auth",     "--auth-user", "svc",  "--auth-password-file",
                          g_pw[PW_SVC], NULL};
    return th_group_start(gr, args) != 0 || th_group_wait_leader(gr, 30000) < 0 ? -1 : 0;
}

static void cluster_up(void)
{
    g_base = th_tmpdir("slot-assign");
    ck_assert_ptr_nonnull(g_base);
    for (int i = 0; i < 3; i++) {
        snprintf(g_pw[i], sizeof(g_pw[i]), "%s/pw%d", g_base, i);
        FILE *f = fopen(g_pw[i], "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "%s\n", g_pwtext[i]);
        fclose(f);
    }
    snprintf(g_cl.base, sizeof(g_cl.base), "%s", g_base);
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/meta", g_base);
    mkdir(dir, 0755);
    th_group_init(&g_cl.meta, 3, META_HOST, dir);
    const char *margs[] = {"--mode", "meta", "--auth", NULL};
    if (th_group_start(&g_cl.meta, margs) != 0) {
        fprintf(stderr, "test_slot_assign: the meta group did not start\n");
        return;
    }
    /* The first admin (also how this learns the meta group has a leader). */
    int rv = -1;
    for (int i = 0; i < 100 && rv != 0; i++)
        if ((rv = ctl("--timeout 2000 user add root --role admin --password-file %s%s",
                      g_pw[PW_ROOT], "")) != 0)
            usleep(200 * 1000);
    if (rv != 0) {
        fprintf(stderr, "test_slot_assign: no first admin: %s\n", g_out);
        return;
    }
    th_set_credential("root", g_pwtext[PW_ROOT]);
    if (th_group_wait_leader(&g_cl.meta, 30000) < 0 ||
        ctl_root("user add svc --role admin --password-file %s%s", g_pw[PW_SVC], "") != 0 ||
        ctl_root("user add rw --role readwrite --password-file %s%s", g_pw[PW_RW], "") != 0) {
        fprintf(stderr, "test_slot_assign: users: %s\n", g_out);
        return;
    }
    g_cl.ngroups = 2;
    if (start_group(1, 150) != 0 || start_group(2, 160) != 0) {
        fprintf(stderr, "test_slot_assign: a shard group did not elect a leader\n");
        return;
    }
    char spec[300];
    snprintf(spec, sizeof(spec), "--group 1=%s --group 2=%s", g_cl.groups[0].nodes[0].addr,
             g_cl.groups[1].nodes[0].addr);
    if (ctl_root("init --slots 64 %s%s", spec, "") != 0 ||
        th_cluster_wait_epoch(&g_cl, 1, 30000) != 0) {
        fprintf(stderr, "test_slot_assign: init: %s\n", g_out);
        return;
    }

    th_node_init(&g_rt, 999, "127.0.0.149", g_base);
    snprintf(g_rt.log, sizeof(g_rt.log), "%s/router.log", g_base);
    const char *rargv[] = {"--listen",      g_rt.addr, "--meta",
                           g_cl.meta.addrs, "--auth", "--auth-user", "svc",
                           "--auth-password-file", g_pw[PW_SVC], NULL};
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
    if (g_rt.pid > 0)
        th_node_stop(&g_rt, SIGTERM);
    th_cluster_stop(&g_cl);
    th_set_credential(NULL, NULL);
    if (g_base != NULL && getenv("SHALE_KEEP_TMP") == NULL)
        th_rmrf(g_base);
    free(g_base);
    g_base = NULL;
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
    ck_assert_msg(ctl_root("slot assign %s %s", s, "1") == 2, "%s", g_out);
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
    char s[16], args[1200];
    slot_str(g_slot, s);
    uint64_t e = map_epoch();
    snprintf(args, sizeof(args), "--user rw --password-file %s slot assign %s 1 --force",
             g_pw[PW_RW], s);
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
    ck_assert_msg(ctl_root("slot assign %s %s --force", s, "9") == 4, "%s", g_out);
    ck_assert_msg(strstr(g_out, "group 9 is not in the map") != NULL, "%s", g_out);
    ck_assert_msg(ctl_root("slot assign 60-%s %s --force", "64", "1") == 4, "%s", g_out);
    ck_assert_msg(strstr(g_out, "slot 64 does not exist: the map has 64 slots") != NULL, "%s",
                  g_out);
    ck_assert_uint_eq(map_epoch(), e);
    /* A slot in a migration: finish or abort it first. */
    char s2[16];
    slot_str(g_slot2, s2);
    ck_assert_msg(ctl_root("slot move %s %s --stop-after start", s2, "1") == 0, "%s", g_out);
    ck_assert_msg(ctl_root("slot assign %s,%s 1 --force", s, s2) == 4, "%s", g_out);
    ck_assert_msg(strstr(g_out, "is in migration") != NULL &&
                      strstr(g_out, "finish or abort it first") != NULL,
                  "%s", g_out);
    ck_assert_uint_eq(slot_owner(g_slot), 2);
    ck_assert_msg(ctl_root("migration abort --all%s%s", "", "") == 0, "%s", g_out);
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
    ck_assert_msg(ctl_root("slot assign %s %s --force", s, "1") == 0, "%s", g_out);
    char want[64];
    snprintf(want, sizeof(want), "OK epoch %llu", (unsigned long long)e + 1);
    ck_assert_msg(strstr(g_out, want) != NULL, "%s", g_out);
    ck_assert_msg(strstr(g_out, "without their data, from group 2 (1)") != NULL, "%s", g_out);
    ck_assert_msg(strstr(g_out, "serves them from empty") != NULL, "%s", g_out);
    ck_assert_uint_eq(slot_owner(g_slot), 1);
    ck_assert_uint_eq(slot_owner(g_slot2), 2);
    wait_epoch(e + 1);
    /* The same again changes nothing. */
    ck_assert_msg(ctl_root("slot assign %s %s --force", s, "1") == 0, "%s", g_out);
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
    ck_assert_msg(ctl_root("map%s%s", "", "") == 0, "%s", g_out);
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
