/* Users and roles in the meta group (server/users.c, shalectl user ...), with
 * real processes on loopback: a 3-node meta group (snapshots every 64
 * entries, 16 kept).
 *
 * What it proves:
 *  - shalectl user add / list / passwd / remove change the replicated user
 *    table; list (text and --json) shows name, role and prefix and no hash;
 *    a USER_LIST without with_hashes carries no password field at all, with
 *    it carries the hash shalectl made from the password file (it verifies);
 *    an existing name is refused (exit 4), an unknown one is not found (1);
 *  - the table survives a restart of the whole meta group, and a change
 *    after it applies on top (version keeps growing);
 *  - a member that was down while the leader snapshotted and truncated its
 *    log catches up through the snapshot (a checkpoint of the store: its log
 *    says so) and then answers USER_LIST with every user, itself alone.
 *
 * Hosts 127.0.0.70..72. Run inside its own network namespace (testing.md). */
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth.h"
#include "frame.h"
#include "harness_cluster.h"
#include "shale.h"
#include "shale_internal.h"

#define FIRST_HOST 70

static th_cluster_t g_cl;
static char *g_base;
static char g_pwfile[600];
static int g_ready;
static const char *const g_meta_args[] = {
    "--mode", "meta", "--snapshot-threshold", "64", "--snapshot-trailing", "16", NULL};

static void cluster_up(void)
{
    g_base = th_tmpdir("users");
    ck_assert_ptr_nonnull(g_base);
    snprintf(g_pwfile, sizeof(g_pwfile), "%s/pw", g_base);
    FILE *f = fopen(g_pwfile, "w");
    ck_assert_ptr_nonnull(f);
    fputs("hunter2\n", f);
    fclose(f);
    const char *extra[] = {"--snapshot-threshold", "64", "--snapshot-trailing", "16", NULL};
    if (th_cluster_start_ex(&g_cl, 0, 3, FIRST_HOST, g_base, NULL, extra) != 0) {
        fprintf(stderr, "test_users: meta group did not start\n");
        return;
    }
    g_ready = 1;
}

static void cluster_down(void)
{
    th_cluster_teardown(&g_cl, &g_base, NULL);
}

static void need_cluster(void)
{
    ck_assert_msg(g_ready, "the meta group did not start (see logs above)");
}

/* Run shalectl --meta <meta> ARGS (a shell word list); stdout+stderr into
 * out. Returns the exit status. */
static int ctl(char *out, size_t outlen, const char *args)
{
    return th_shalectl(out, outlen, "--meta %s %s", g_cl.meta.addrs, args);
}

/* USER_LIST to addrs (a comma list); *out: shale__user_list_response__free_unpacked. */
static int user_list(const char *addrs, int with_hashes, Shale__UserListResponse **out)
{
    shale_options_t o;
    th_client_options(&o);
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];
    int rv = shale_connect(addrs, &o, &c, err);
    if (rv != SHALE_OK)
        return rv;
    Shale__UserListRequest rq = SHALE__USER_LIST_REQUEST__INIT;
    rq.has_with_hashes = 1;
    rq.with_hashes = with_hashes != 0;
    uint8_t buf[32], *resp = NULL;
    size_t len = shale__user_list_request__pack(&rq, buf), rlen = 0;
    rv = shale_call(c, SHALE_MSG_USER_LIST_REQ, SHALE_MSG_USER_LIST_RESP, buf, len, &resp, &rlen,
                    err, NULL);
    shale_close(c);
    if (rv != SHALE_OK)
        return rv;
    *out = shale__user_list_response__unpack(NULL, rlen, resp);
    free(resp);
    return *out != NULL ? SHALE_OK : SHALE_EPROTO;
}

/* user_list until the answer's version is at least min: a member answers
 * from what it has applied, which may be behind the leader for a moment. */
static int user_list_min(const char *addrs, int with_hashes, uint64_t min,
                         Shale__UserListResponse **out)
{
    for (int i = 0;; i++) {
        int rv = user_list(addrs, with_hashes, out);
        if (rv != SHALE_OK || (*out)->version >= min || i == 200)
            return rv;
        shale__user_list_response__free_unpacked(*out, NULL);
        usleep(50 * 1000);
    }
}

static const Shale__User *find_user(const Shale__UserListResponse *r, const char *name)
{
    for (size_t i = 0; i < r->n_users; i++)
        if (strcmp(r->users[i]->name, name) == 0)
            return r->users[i];
    return NULL;
}

START_TEST(test_user_verbs_survive_restart)
{
    need_cluster();
    /* A secure harness made the user "admin" first (harness.h). */
    const int B = th_secure() ? 1 : 0;
    char out[8192], args[1024];
    snprintf(args, sizeof(args), "user add alice --role readwrite --prefix app/ --password-file %s",
             g_pwfile);
    ck_assert_msg(ctl(out, sizeof(out), args) == 0, "%s", out);
    ck_assert_msg(strstr(out, "user 'alice' added") != NULL, "%s", out);
    snprintf(args, sizeof(args), "user add root --role admin --password-file %s", g_pwfile);
    ck_assert_msg(ctl(out, sizeof(out), args) == 0, "%s", out);
    /* An existing name is refused; an unknown one is not found. */
    ck_assert_msg(ctl(out, sizeof(out), args) == 4, "%s", out);
    ck_assert_msg(strstr(out, "'root' exists") != NULL, "%s", out);
    ck_assert_msg(ctl(out, sizeof(out), "user remove nobody") == 1, "%s", out);

    ck_assert_msg(ctl(out, sizeof(out), "user list") == 0, "%s", out);
    char want[64];
    snprintf(want, sizeof(want), "version %d, %d users", 2 + B, 2 + B);
    ck_assert_msg(strstr(out, want) != NULL, "%s", out);
    ck_assert_msg(strstr(out, "alice") != NULL && strstr(out, "readwrite") != NULL &&
                      strstr(out, "app/") != NULL && strstr(out, "root") != NULL,
                  "%s", out);
    ck_assert_msg(ctl(out, sizeof(out), "--json user list") == 0, "%s", out);
    ck_assert_msg(strstr(out, "{\"name\":\"alice\",\"role\":\"readwrite\",\"prefix\":\"app/\"}") !=
                      NULL,
                  "%s", out);
    ck_assert_msg(strstr(out, "scrypt") == NULL && strstr(out, "hash") == NULL, "%s", out);

    /* On the wire: no password field unless asked; asked, it is the hash
     * of the password file's line. */
    Shale__UserListResponse *r = NULL;
    ck_assert_int_eq(user_list_min(g_cl.meta.addrs, 0, 2, &r), SHALE_OK);
    ck_assert_uint_eq(r->version, 2 + B);
    ck_assert_uint_eq(r->n_users, 2 + B);
    for (size_t i = 0; i < r->n_users; i++)
        ck_assert_ptr_null(r->users[i]->password);
    shale__user_list_response__free_unpacked(r, NULL);
    ck_assert_int_eq(user_list(g_cl.meta.addrs, 1, &r), SHALE_OK);
    const Shale__User *a = find_user(r, "alice");
    ck_assert_ptr_nonnull(a);
    char err[AUTH_ERRLEN];
    ck_assert_int_eq(auth_verify_password(a->password, "hunter2", 7, err, sizeof(err)), 0);
    ck_assert_int_eq(auth_verify_password(a->password, "hunter2\n", 8, err, sizeof(err)),
                     SHALE_EAUTH);
    shale__user_list_response__free_unpacked(r, NULL);

    /* The whole meta group restarts: the table is still there. */
    for (int i = 0; i < 3; i++)
        th_node_stop(&g_cl.meta.nodes[i], SIGTERM);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(th_group_start_node(&g_cl.meta, i, g_meta_args), 0);
    ck_assert_int_ge(th_group_wait_leader(&g_cl.meta, 20000), 0);
    ck_assert_msg(ctl(out, sizeof(out), "--json user list") == 0, "%s", out);
    snprintf(want, sizeof(want), "\"version\":%d,", 2 + B);
    ck_assert_msg(strstr(out, want) != NULL, "%s", out);
    ck_assert_msg(strstr(out, "{\"name\":\"alice\",\"role\":\"readwrite\",\"prefix\":\"app/\"}") !=
                      NULL,
                  "%s", out);
    ck_assert_msg(strstr(out, "{\"name\":\"root\",\"role\":\"admin\",\"prefix\":null}") != NULL,
                  "%s", out);

    /* Changes after the restart apply on top of it. */
    FILE *f = fopen(g_pwfile, "w");
    fputs("correct horse\n", f);
    fclose(f);
    snprintf(args, sizeof(args), "user passwd alice --password-file %s", g_pwfile);
    ck_assert_msg(ctl(out, sizeof(out), args) == 0, "%s", out);
    snprintf(want, sizeof(want), "version %d", 3 + B);
    ck_assert_msg(strstr(out, want) != NULL, "%s", out);
    ck_assert_msg(ctl(out, sizeof(out), "user remove root") == 0, "%s", out);
    ck_assert_int_eq(user_list_min(g_cl.meta.addrs, 1, 4 + B, &r), SHALE_OK);
    ck_assert_uint_eq(r->version, 4 + B);
    ck_assert_uint_eq(r->n_users, 1 + B);
    a = find_user(r, "alice");
    ck_assert_int_eq(a->role, SHALE__USER_ROLE__USER_READWRITE); /* passwd kept the role */
    ck_assert_int_eq(auth_verify_password(a->password, "correct horse", 13, err, sizeof(err)), 0);
    ck_assert_int_eq(auth_verify_password(a->password, "hunter2", 7, err, sizeof(err)),
                     SHALE_EAUTH);
    shale__user_list_response__free_unpacked(r, NULL);
}
END_TEST

/* USER_CHANGE ADD of name with a cheap hash, through any meta member;
 * *version: the table's version the leader answered. */
static int add_user(shale_client_t *c, const char *name, uint64_t client_id, uint64_t seq,
                    uint64_t *version)
{
    char err[AUTH_ERRLEN];
    const auth_kdf_params_t cheap = {.log2_n = 10, .r = 8, .p = 1};
    Shale__User u = SHALE__USER__INIT;
    u.name = (char *)name;
    u.role = SHALE__USER_ROLE__USER_READ;
    ck_assert_int_eq(auth_hash_password("pw", 2, &cheap, &u.password, err, sizeof(err)), 0);
    Shale__Session ses = SHALE__SESSION__INIT;
    ses.client_id = client_id;
    ses.seq = seq;
    Shale__UserChangeRequest rq = SHALE__USER_CHANGE_REQUEST__INIT;
    rq.op = SHALE__USER_OP__USER_OP_ADD;
    rq.user = &u;
    rq.session = &ses;
    uint8_t buf[512], *resp = NULL;
    size_t len = shale__user_change_request__pack(&rq, buf), rlen = 0;
    int rv = shale_call(c, SHALE_MSG_USER_CHANGE_REQ, SHALE_MSG_USER_CHANGE_RESP, buf, len, &resp,
                        &rlen, err, NULL);
    if (rv == SHALE_OK) {
        Shale__UserChangeResponse *cr = shale__user_change_response__unpack(NULL, rlen, resp);
        ck_assert_ptr_nonnull(cr);
        *version = cr->version;
        shale__user_change_response__free_unpacked(cr, NULL);
    }
    free(resp);
    auth_hash_free(u.password);
    return rv;
}

/* Whether every meta member but skip has no Raft segment file holding an
 * index <= upto ("FIRST-LAST" closed segments; open ones hold later ones). */
static int logs_compacted(int skip, uint64_t upto)
{
    for (int i = 0; i < g_cl.meta.n; i++) {
        if (i == skip)
            continue;
        char dir[700];
        snprintf(dir, sizeof(dir), "%s/raft", g_cl.meta.nodes[i].dir);
        DIR *d = opendir(dir);
        if (d == NULL)
            return 0;
        struct dirent *e;
        int old = 0;
        while ((e = readdir(d)) != NULL) {
            unsigned long long first, last;
            if (sscanf(e->d_name, "%llu-%llu", &first, &last) == 2 && first <= upto)
                old = 1;
        }
        closedir(d);
        if (old)
            return 0;
    }
    return 1;
}

START_TEST(test_member_catches_up_through_snapshot)
{
    need_cluster();
    int leader = th_group_wait_leader(&g_cl.meta, 20000);
    ck_assert_int_ge(leader, 0);
    int down = (leader + 1) % 3;
    th_node_t *dn = &g_cl.meta.nodes[down];
    ck_assert_int_eq(th_node_stop(dn, SIGTERM) >= 0, 1);

    char addrs[1024];
    th_group_addrs(&g_cl.meta, addrs, sizeof(addrs), down);
    shale_options_t o;
    th_client_options(&o);
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];
    ck_assert_int_eq(shale_connect(addrs, &o, &c, err), SHALE_OK);
    /* 200 entries: three snapshots (every 64) past the stopped member, the
     * log behind them truncated (16 kept), so it can only catch up from a
     * snapshot. */
    char name[32];
    uint64_t version = 0, first = 0, again = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "u%03d", i);
        ck_assert_int_eq(add_user(c, name, 4242, (uint64_t)i + 1, &version), SHALE_OK);
        if (i == 0)
            first = version;
    }
    ck_assert_uint_eq(version, first + 199); /* one version per change */
    /* A retry of the last change (same session) is answered with its first
     * outcome, not applied again (it would be refused: u199 exists). */
    ck_assert_int_eq(add_user(c, "u199", 4242, 200, &again), SHALE_OK);
    ck_assert_uint_eq(again, version);
    shale_close(c);
    Shale__UserListResponse *r = NULL;
    ck_assert_int_eq(user_list_min(addrs, 0, version, &r), SHALE_OK);
    ck_assert_uint_eq(r->version, version);
    size_t nusers = r->n_users;
    ck_assert_uint_ge(nusers, 200);
    shale__user_list_response__free_unpacked(r, NULL);

    /* Restart it only once the live members' logs no longer hold what it
     * lacks (their Raft directories have no segment starting at or below
     * 64): otherwise it may be sent entries instead of the snapshot, and a
     * member that then reaches its own snapshot threshold during catch-up
     * was seen to stall (docs/security.md, "Noticed while testing"). */
    for (int i = 0; i < 300 && !logs_compacted(down, 64); i++)
        usleep(100 * 1000);
    ck_assert_msg(logs_compacted(down, 64), "the live members did not compact their logs");
    leader = th_group_wait_leader(&g_cl.meta, 20000);
    uint64_t applied = th_node_applied(&g_cl.meta.nodes[leader]);
    ck_assert_int_eq(th_group_start_node(&g_cl.meta, down, g_meta_args), 0);
    ck_assert_msg(th_node_wait_applied(dn, applied, 30000) == 0, "member %d did not catch up",
                  down);
    /* The member alone answers with every user. */
    ck_assert_int_eq(user_list(dn->addr, 0, &r), SHALE_OK);
    ck_assert_uint_eq(r->version, version);
    ck_assert_uint_eq(r->n_users, nusers);
    ck_assert_ptr_nonnull(find_user(r, "u000"));
    ck_assert_ptr_nonnull(find_user(r, "u199"));
    shale__user_list_response__free_unpacked(r, NULL);
    /* ... and it got there through a snapshot, not the log. */
    char cmd[1200], line[256] = "";
    snprintf(cmd, sizeof(cmd), "grep -c 'raft snapshot is ahead of local storage' %s", dn->log);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), p));
    pclose(p);
    ck_assert_msg(atoi(line) >= 1, "member %d caught up without a snapshot install", down);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("users");
    TCase *t = tcase_create("meta");
    tcase_add_unchecked_fixture(t, cluster_up, cluster_down);
    tcase_set_timeout(t, 180);
    tcase_add_test(t, test_user_verbs_survive_restart);
    tcase_add_test(t, test_member_catches_up_through_snapshot);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
