/* Users, roles and logins with real processes (--auth): a 3-node meta group,
 * one 3-voter shard group and a router, every one started with --auth; the
 * nodes and the router log in to the meta group (and the router to the
 * nodes) as the admin user "svc".
 *
 * What it proves:
 *  - the first-admin rule: with no admin, an unauthenticated shalectl
 *    creates one; after that, an unauthenticated user change (or list) is
 *    refused, and so is a change by a non-admin user;
 *  - a wrong password fails the connection (UNAUTHENTICATED) at the meta
 *    group, the router and a node, and a connection without a credential
 *    has every request refused — while the cluster keeps serving others;
 *  - roles at the process that serves the request: through the router a
 *    read user reads and cannot write, a readwrite user writes; a prefix
 *    user writes only under its prefix (every key of an MGET counts); a
 *    readwrite user cannot MAP_CAS at the meta group nor add a member at a
 *    node;
 *  - the router is not a way around the nodes: a node refuses the same
 *    users the same things directly (no credential, read user writing);
 *  - removing a user takes effect on its open connection at the router;
 *  - who a connection is: HELLO_REPLY names the user, role and key prefix
 *    at the meta group, the router and a node (shale_whoami), and
 *    `shalectl status` prints them (admin for root, readwrite for rw, the
 *    prefix for app; anonymous is refused with a hint);
 *  - failed logins are rate-limited per source address: after the free
 *    failures, the right password from that address is refused without
 *    being checked, another address still logs in; /metrics counts failed
 *    and throttled logins; no log line holds a password.
 *
 * Hosts 127.0.0.80..82 (meta), .90..92 (group 1), .89 (router); .99 is the
 * source address of the throttled connections. Run inside its own network
 * namespace (testing.md). */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frame.h"
#include "harness_cluster.h"
#include "obs_util.h"
#include "shale.h"
#include "shale_internal.h"
#include "wire.h"

#define META_HOST 80
#define GROUP_HOST 90

static th_cluster_t g_cl;
static th_node_t g_rt;
static char *g_base;
static int g_ready, g_rt_http;
static char g_pw[5][600]; /* password files */
enum { PW_ROOT, PW_SVC, PW_RW, PW_RO, PW_WRONG };
static const char *const g_pwtext[] = {"root-pw", "svc-pw", "rw-pw", "ro-pw", "not-it"};

/* Run shalectl ARGS (a shell word list) with --meta; stdout+stderr into out.
 * Returns the exit status. */
static int ctl(char *out, size_t outlen, const char *args)
{
    return th_shalectl(out, outlen, "--meta %s %s", g_cl.meta.addrs, args);
}

/* ctl as root ("--user root --password-file F" before the verb). */
static int ctl_root(char *out, size_t outlen, const char *args)
{
    char a[3000];
    snprintf(a, sizeof(a), "--user root --password-file %s %s", g_pw[PW_ROOT], args);
    return ctl(out, outlen, a);
}

static void add_user(const char *name, const char *role, const char *prefix, int pw)
{
    char out[2048], args[1200];
    snprintf(args, sizeof(args), "user add %s --role %s %s%s --password-file %s", name, role,
             prefix ? "--prefix " : "", prefix ? prefix : "", g_pw[pw]);
    ck_assert_msg(ctl_root(out, sizeof(out), args) == 0, "%s", out);
}

/* A libshale client to addrs as user (NULL: anonymous) with password pw. */
static int connect_as(const char *addrs, const char *user, int pw, shale_client_t **c)
{
    shale_options_t o;
    th_client_options(&o); /* TLS as the harness has it (harness.h) */
    /* A login is a TLS handshake and an scrypt at each process (two at a
     * time per process): seconds on a loaded ASan box. */
    o.timeout_ms = 15000;
    o.user = NULL;
    if (user != NULL) {
        o.user = user;
        o.password = g_pwtext[pw];
        o.password_len = strlen(g_pwtext[pw]);
    }
    char err[SHALE_ERRMSG_LEN];
    return shale_connect(addrs, &o, c, err);
}

static void cluster_up(void)
{
    g_base = th_tmpdir("auth");
    ck_assert_ptr_nonnull(g_base);
    for (int i = 0; i < 5; i++) {
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
        fprintf(stderr, "test_auth: the meta group did not start\n");
        return;
    }
    /* The first admin: no user can log in yet, so the anonymous bootstrap
     * is also how this test learns the meta group has a leader. */
    char out[2048], args[700];
    snprintf(args, sizeof(args), "--timeout 2000 user add root --role admin --password-file %s",
             g_pw[PW_ROOT]);
    int rv = -1;
    for (int i = 0; i < 100 && rv != 0; i++)
        if ((rv = ctl(out, sizeof(out), args)) != 0)
            usleep(200 * 1000);
    if (rv != 0) {
        fprintf(stderr, "test_auth: no first admin: %s\n", out);
        return;
    }
    th_set_credential("root", g_pwtext[PW_ROOT]);
    if (th_group_wait_leader(&g_cl.meta, 30000) < 0) {
        fprintf(stderr, "test_auth: the meta group has no leader\n");
        return;
    }
    add_user("svc", "admin", NULL, PW_SVC);
    add_user("rw", "readwrite", NULL, PW_RW);
    add_user("ro", "read", NULL, PW_RO);
    add_user("app", "readwrite", "app/", PW_RW);

    snprintf(dir, sizeof(dir), "%s/g1", g_base);
    mkdir(dir, 0755);
    th_group_t *g = &g_cl.groups[0];
    th_group_init(g, 3, GROUP_HOST, dir);
    g_cl.ngroups = 1;
    const char *gargs[] = {"--group",    "1",           "--meta", g_cl.meta.addrs,
                           "--auth",     "--auth-user", "svc",    "--auth-password-file",
                           g_pw[PW_SVC], NULL};
    if (th_group_start(g, gargs) != 0 || th_group_wait_leader(g, 30000) < 0) {
        fprintf(stderr, "test_auth: the shard group did not elect a leader\n");
        return;
    }
    snprintf(args, sizeof(args), "init --group 1=%s", g->nodes[0].addr);
    if (ctl_root(out, sizeof(out), args) != 0) {
        fprintf(stderr, "test_auth: init: %s\n", out);
        return;
    }
    if (th_cluster_wait_epoch(&g_cl, 1, 30000) != 0) {
        fprintf(stderr, "test_auth: the group did not apply map epoch 1\n");
        return;
    }

    th_node_init(&g_rt, 999, "127.0.0.89", g_base);
    snprintf(g_rt.log, sizeof(g_rt.log), "%s/router.log", g_base);
    g_rt_http = th_free_port(g_rt.host);
    char http[16];
    snprintf(http, sizeof(http), ":%d", g_rt_http);
    const char *rargv[] = {"--listen",    g_rt.addr, "--meta",
                           g_cl.meta.addrs, "--auth",  "--auth-user",
                           "svc",         "--auth-password-file", g_pw[PW_SVC],
                           "--http",      http,      NULL};
    if (th_router_start(&g_rt, rargv, 1) != 0 ||
        obs_wait_health(g_rt.host, g_rt_http, 200, 30000) != 0) {
        fprintf(stderr, "test_auth: the router did not report healthy\n");
        return;
    }
    /* Ready once rw can write through it (map and user table arrived).
     * Every try is a scrypt login at the router and, the first time, the
     * router's own at the node: seconds each on a loaded box (ASan). */
    for (int i = 0; i < 600; i++) {
        shale_client_t *c = NULL;
        if (connect_as(g_rt.addr, "rw", PW_RW, &c) == SHALE_OK) {
            int prv = shale_put(c, "ready", 5, "1", 1, NULL);
            shale_close(c);
            if (prv == SHALE_OK) {
                g_ready = 1;
                return;
            }
        }
        usleep(100 * 1000);
    }
    fprintf(stderr, "test_auth: user rw could not write through the router within 60 s\n");
}

static void cluster_down(void)
{
    th_cluster_teardown(&g_cl, &g_base, (th_node_t *const[]){&g_rt, NULL});
    th_set_credential(NULL, NULL);
}

static void need_cluster(void)
{
    ck_assert_msg(g_ready, "the cluster did not start (see logs above)");
}

START_TEST(test_first_admin_only_once)
{
    need_cluster();
    char out[2048], args[1600];
    snprintf(args, sizeof(args), "user add evil --role admin --password-file %s", g_pw[PW_WRONG]);
    ck_assert_msg(ctl(out, sizeof(out), args) == 1, "%s", out);
    ck_assert_msg(strstr(out, "not authenticated") != NULL, "%s", out);
    ck_assert_msg(ctl(out, sizeof(out), "user list") == 1, "%s", out);
    ck_assert_msg(strstr(out, "not authenticated") != NULL, "%s", out);
    /* A readwrite user may not change users either. */
    snprintf(args, sizeof(args),
             "--user rw --password-file %s user add evil --role admin "
             "--password-file %s",
             g_pw[PW_RW], g_pw[PW_WRONG]);
    ck_assert_msg(ctl(out, sizeof(out), args) == 1, "%s", out);
    ck_assert_msg(strstr(out, "permission denied") != NULL, "%s", out);
    ck_assert_msg(ctl_root(out, sizeof(out), "user list") == 0, "%s", out);
    ck_assert_msg(strstr(out, "evil") == NULL && strstr(out, "5 users") != NULL, "%s", out);
}
END_TEST

START_TEST(test_wrong_password_and_no_credential)
{
    need_cluster();
    const char *addrs[] = {g_cl.meta.nodes[0].addr, g_rt.addr, g_cl.groups[0].nodes[0].addr};
    for (int i = 0; i < 3; i++) {
        shale_client_t *c = NULL;
        ck_assert_int_eq(connect_as(addrs[i], "rw", PW_WRONG, &c), SHALE_EAUTH);
        ck_assert_int_eq(connect_as(addrs[i], "nobody", PW_RW, &c), SHALE_EAUTH);
        /* No credential: connected, every request refused. */
        ck_assert_int_eq(connect_as(addrs[i], NULL, 0, &c), SHALE_OK);
        shale_node_status_t st;
        ck_assert_int_eq(shale_status(c, &st), SHALE_EAUTH);
        shale_value_t v;
        ck_assert_int_eq(shale_get(c, "k", 1, NULL, &v), SHALE_EAUTH);
        shale_close(c);
    }
    /* The cluster keeps serving a good user. */
    shale_client_t *c = NULL;
    ck_assert_int_eq(connect_as(g_rt.addr, "rw", PW_RW, &c), SHALE_OK);
    ck_assert_int_eq(shale_put(c, "k", 1, "v", 1, NULL), SHALE_OK);
    shale_close(c);
}
END_TEST

START_TEST(test_roles_through_the_router)
{
    need_cluster();
    shale_client_t *rw = NULL, *ro = NULL, *app = NULL;
    ck_assert_int_eq(connect_as(g_rt.addr, "rw", PW_RW, &rw), SHALE_OK);
    ck_assert_int_eq(connect_as(g_rt.addr, "ro", PW_RO, &ro), SHALE_OK);
    ck_assert_int_eq(connect_as(g_rt.addr, "app", PW_RW, &app), SHALE_OK);
    shale_value_t v;
    ck_assert_int_eq(shale_put(rw, "role:k", 6, "v1", 2, NULL), SHALE_OK);
    ck_assert_int_eq(shale_get(ro, "role:k", 6, NULL, &v), SHALE_OK);
    ck_assert_int_eq(v.found, 1);
    shale_value_free(&v);
    ck_assert_int_eq(shale_put(ro, "role:k", 6, "v2", 2, NULL), SHALE_EPERM);
    ck_assert_ptr_nonnull(strstr(shale_errmsg(ro), "role read"));
    ck_assert_int_eq(shale_del(ro, "role:k", 6, NULL, NULL), SHALE_EPERM);
    /* The refused write did not happen. */
    ck_assert_int_eq(shale_get(rw, "role:k", 6, NULL, &v), SHALE_OK);
    ck_assert_mem_eq(v.data, "v1", 2);
    shale_value_free(&v);
    /* The prefix user: its keys only, every key of a multi-key request. */
    ck_assert_int_eq(shale_put(app, "app/x", 5, "1", 1, NULL), SHALE_OK);
    ck_assert_int_eq(shale_put(app, "other", 5, "1", 1, NULL), SHALE_EPERM);
    ck_assert_int_eq(shale_get(app, "role:k", 6, NULL, &v), SHALE_EPERM);
    shale_item_t keys[2] = {{"app/x", 5, NULL, 0}, {"role:k", 6, NULL, 0}};
    shale_item_result_t res[2];
    ck_assert_int_eq(shale_mget(app, keys, 2, NULL, res), SHALE_EPERM);
    ck_assert_int_eq(shale_mget(app, keys, 1, NULL, res), SHALE_OK);
    shale_item_results_free(res, 1);
    shale_close(rw);
    shale_close(ro);
    shale_close(app);
}
END_TEST

START_TEST(test_admin_verbs_need_admin)
{
    need_cluster();
    /* MAP_CAS at the meta group as readwrite. */
    shale_client_t *c = NULL;
    ck_assert_int_eq(connect_as(g_cl.meta.addrs, "rw", PW_RW, &c), SHALE_OK);
    Shale__ClusterMap m = SHALE__CLUSTER_MAP__INIT;
    Shale__MapCasRequest q = SHALE__MAP_CAS_REQUEST__INIT;
    q.expect_epoch = 1;
    q.map = &m;
    q.has_force = 1;
    q.force = 1;
    uint8_t buf[256], *resp = NULL;
    size_t len = shale__map_cas_request__pack(&q, buf), rlen = 0;
    char msg[SHALE_ERRMSG_LEN];
    ck_assert_int_eq(
        shale_call(c, SHALE_MSG_MAP_CAS_REQ, SHALE_MSG_MAP_RESP, buf, len, &resp, &rlen, msg, NULL),
        SHALE_EPERM);
    /* ... but may read the map. */
    Shale__MapGetRequest g = SHALE__MAP_GET_REQUEST__INIT;
    len = shale__map_get_request__pack(&g, buf);
    ck_assert_int_eq(
        shale_call(c, SHALE_MSG_MAP_GET_REQ, SHALE_MSG_MAP_RESP, buf, len, &resp, &rlen, msg, NULL),
        SHALE_OK);
    free(resp);
    shale_close(c);
    /* Membership at a node as readwrite; the same as root gets past the
     * check (and is refused for its content: node 9 does not exist). */
    ck_assert_int_eq(connect_as(g_cl.groups[0].addrs, "rw", PW_RW, &c), SHALE_OK);
    ck_assert_int_eq(shale_member_remove(c, 9, msg), SHALE_EPERM);
    ck_assert_int_eq(shale_leader_transfer(c, 0, msg), SHALE_EPERM);
    shale_close(c);
    ck_assert_int_eq(connect_as(g_cl.groups[0].addrs, "root", PW_ROOT, &c), SHALE_OK);
    int rv = shale_member_remove(c, 9, msg);
    ck_assert_int_ne(rv, SHALE_EPERM);
    ck_assert_int_ne(rv, SHALE_EAUTH);
    shale_close(c);
}
END_TEST

START_TEST(test_nodes_check_for_themselves)
{
    need_cluster();
    const char *node = g_cl.groups[0].addrs;
    shale_client_t *c = NULL;
    shale_value_t v;
    ck_assert_int_eq(connect_as(node, NULL, 0, &c), SHALE_OK);
    ck_assert_int_eq(shale_get(c, "k", 1, NULL, &v), SHALE_EAUTH);
    ck_assert_int_eq(shale_put(c, "k", 1, "x", 1, NULL), SHALE_EAUTH);
    shale_close(c);
    ck_assert_int_eq(connect_as(node, "ro", PW_RO, &c), SHALE_OK);
    ck_assert_int_eq(shale_put(c, "k", 1, "x", 1, NULL), SHALE_EPERM);
    ck_assert_int_eq(shale_get(c, "k", 1, NULL, &v), SHALE_OK);
    shale_value_free(&v);
    shale_close(c);
    ck_assert_int_eq(connect_as(node, "app", PW_RW, &c), SHALE_OK);
    ck_assert_int_eq(shale_put(c, "k", 1, "x", 1, NULL), SHALE_EPERM);
    shale_close(c);
}
END_TEST

START_TEST(test_removed_user_is_refused_on_its_connection)
{
    need_cluster();
    char out[2048], args[700];
    snprintf(args, sizeof(args), "user add gone --role read --password-file %s", g_pw[PW_RO]);
    ck_assert_msg(ctl_root(out, sizeof(out), args) == 0, "%s", out);
    shale_client_t *c = NULL;
    int rv = -1;
    for (int i = 0; i < 100 && rv != SHALE_OK; i++) /* until the router has the user */
        if ((rv = connect_as(g_rt.addr, "gone", PW_RO, &c)) != SHALE_OK)
            usleep(100 * 1000);
    ck_assert_int_eq(rv, SHALE_OK);
    shale_value_t v;
    ck_assert_int_eq(shale_get(c, "k", 1, NULL, &v), SHALE_OK);
    shale_value_free(&v);
    ck_assert_msg(ctl_root(out, sizeof(out), "user remove gone") == 0, "%s", out);
    /* The same connection, once the router has the new table. */
    for (int i = 0; i < 100 && rv != SHALE_EAUTH; i++) {
        rv = shale_get(c, "k", 1, NULL, &v);
        if (rv == SHALE_OK) {
            shale_value_free(&v);
            usleep(100 * 1000);
        }
    }
    ck_assert_int_eq(rv, SHALE_EAUTH);
    ck_assert_ptr_nonnull(strstr(shale_errmsg(c), "no longer exists"));
    shale_close(c);
}
END_TEST

/* shale_whoami of a fresh connection to addrs as user. */
static void check_whoami(const char *addrs, const char *user, int pw, const char *role,
                         const char *prefix)
{
    shale_client_t *c = NULL;
    ck_assert_int_eq(connect_as(addrs, user, pw, &c), SHALE_OK);
    shale_whoami_t w;
    ck_assert_int_eq(shale_whoami(c, &w), SHALE_OK);
    ck_assert_msg(w.auth == 1, "%s: auth %d", addrs, w.auth);
    ck_assert_str_eq(w.user, user != NULL ? user : "");
    ck_assert_str_eq(w.role, role);
    size_t plen = prefix != NULL ? strlen(prefix) : 0;
    ck_assert_uint_eq(w.key_prefix_len, plen);
    if (plen > 0)
        ck_assert_mem_eq(w.key_prefix, prefix, plen);
    shale_close(c);
}

START_TEST(test_status_shows_the_user_and_role)
{
    need_cluster();
    /* The HELLO_REPLY of each kind of process. */
    const char *addrs[] = {g_cl.meta.addrs, g_rt.addr, g_cl.groups[0].nodes[0].addr};
    for (int i = 0; i < 3; i++) {
        check_whoami(addrs[i], "root", PW_ROOT, "admin", NULL);
        check_whoami(addrs[i], "rw", PW_RW, "readwrite", NULL);
        check_whoami(addrs[i], "ro", PW_RO, "read", NULL);
        check_whoami(addrs[i], "app", PW_RW, "readwrite", "app/");
        check_whoami(addrs[i], NULL, 0, "", NULL);
    }

    static char out[65536];
    char args[1200];
    ck_assert_msg(ctl_root(out, sizeof(out), "status") == 0, "%s", out);
    ck_assert_msg(strstr(out, "\nuser: root (role admin)\n") != NULL, "%s", out);
    snprintf(args, sizeof(args), "--user rw --password-file %s status", g_pw[PW_RW]);
    ck_assert_msg(ctl(out, sizeof(out), args) == 0, "%s", out);
    ck_assert_msg(strstr(out, "\nuser: rw (role readwrite)\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "role admin") == NULL, "%s", out);
    snprintf(args, sizeof(args), "--user rw --password-file %s --json status", g_pw[PW_RW]);
    ck_assert_msg(ctl(out, sizeof(out), args) == 0, "%s", out);
    ck_assert_msg(strstr(out, "\"auth\":{\"user\":\"rw\",\"role\":\"readwrite\","
                              "\"key_prefix\":null}") != NULL,
                  "%s", out);
    /* One group directly, as the read user. */
    ck_assert_msg(th_shalectl(out, sizeof(out), "--addr %s --user ro --password-file %s status",
                              g_cl.groups[0].addrs, g_pw[PW_RO]) == 0,
                  "%s", out);
    ck_assert_msg(strstr(out, "\nuser: ro (role read)\n") != NULL, "%s", out);
    /* The prefix user may read no map: status is refused, but a group's
     * status (STATUS only) shows its prefix. */
    ck_assert_msg(th_shalectl(out, sizeof(out), "--addr %s --user app --password-file %s status",
                              g_cl.groups[0].addrs, g_pw[PW_RW]) == 0,
                  "%s", out);
    ck_assert_msg(strstr(out, "\nuser: app (role readwrite, key prefix \"app/\")\n") != NULL, "%s",
                  out);
    /* Anonymous: refused, and told why. */
    ck_assert_msg(ctl(out, sizeof(out), "status") == 1, "%s", out);
    ck_assert_msg(strstr(out, "connected as anonymous") != NULL, "%s", out);
}
END_TEST

/* HELLO as user/password to host:port from source address src. Returns 0
 * for HELLO_REPLY, else the wire error code; msg gets the message. */
static int hello_from(const char *src, const char *host, int port, const char *user, const char *pw,
                      char *msg, size_t msglen)
{
    int fd = th_raw_connect_from(src, host, port, 10000);
    ck_assert_int_ge(fd, 0);
    Shale__Credential cred = SHALE__CREDENTIAL__INIT;
    cred.user = (char *)user;
    cred.password.data = (uint8_t *)pw;
    cred.password.len = strlen(pw);
    uint8_t cbuf[256];
    Shale__Hello h = SHALE__HELLO__INIT;
    h.protocol_version = SHALE_PROTOCOL_VERSION;
    h.peer_kind = SHALE__PEER_KIND__PEER_CLIENT;
    h.has_credential = 1;
    h.credential.data = cbuf;
    h.credential.len = shale__credential__pack(&cred, cbuf);
    th_frame_t f;
    ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_HELLO, 1, &h), 0);
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    th_raw_close(fd);
    int code = f.type == SHALE_MSG_HELLO_REPLY ? 0 : th_frame_error_code(&f);
    msg[0] = '\0';
    if (f.type == SHALE_MSG_ERROR) {
        Shale__Error *e = (Shale__Error *)wire_unpack(SHALE_MSG_ERROR, f.payload, f.len);
        if (e != NULL && e->message != NULL)
            snprintf(msg, msglen, "%s", e->message);
        if (e != NULL)
            protobuf_c_message_free_unpacked(&e->base, NULL);
    }
    th_frame_free(&f);
    return code;
}

START_TEST(test_failed_logins_are_throttled_per_source)
{
    need_cluster();
    char msg[256];
    /* Past the free failures from .99 (each one is a full password check). */
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(
            hello_from("127.0.0.99", g_rt.host, g_rt.port, "rw", "guess", msg, sizeof(msg)),
            SHALE__ERROR_CODE__UNAUTHENTICATED);
        ck_assert_msg(strstr(msg, "authentication failed") != NULL, "%s", msg);
    }
    /* Now even the right password from .99 is refused, unchecked... */
    ck_assert_int_eq(
        hello_from("127.0.0.99", g_rt.host, g_rt.port, "rw", g_pwtext[PW_RW], msg, sizeof(msg)),
        SHALE__ERROR_CODE__UNAUTHENTICATED);
    ck_assert_msg(strstr(msg, "too many failed logins from 127.0.0.99") != NULL, "%s", msg);
    /* ... while another address logs in. */
    ck_assert_int_eq(
        hello_from("127.0.0.98", g_rt.host, g_rt.port, "rw", g_pwtext[PW_RW], msg, sizeof(msg)), 0);
    /* Counted in /metrics. */
    int status = 0;
    char *body = NULL;
    ck_assert_int_eq(obs_get(g_rt.host, g_rt_http, "/metrics", &status, &body), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_double_ge(expo_value(body, "shale_auth_logins_total", "outcome=\"failed\""), 6);
    ck_assert_double_ge(expo_value(body, "shale_auth_logins_total", "outcome=\"throttled\""), 1);
    ck_assert_double_ge(expo_value(body, "shale_auth_denied_total", NULL), 1);
    free(body);
    /* No log line of any process holds a password. */
    char cmd[2048], line[64] = "";
    snprintf(cmd, sizeof(cmd),
             "cat %s/router.log %s/meta/*.log %s/g1/*.log | grep -c -e root-pw -e svc-pw "
             "-e rw-pw -e ro-pw -e guess",
             g_base, g_base, g_base);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), p));
    pclose(p);
    ck_assert_int_eq(atoi(line), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *t = tcase_create("cluster");
    tcase_add_unchecked_fixture(t, cluster_up, cluster_down);
    tcase_set_timeout(t, 180);
    tcase_add_test(t, test_first_admin_only_once);
    tcase_add_test(t, test_wrong_password_and_no_credential);
    tcase_add_test(t, test_roles_through_the_router);
    tcase_add_test(t, test_admin_verbs_need_admin);
    tcase_add_test(t, test_nodes_check_for_themselves);
    tcase_add_test(t, test_removed_user_is_refused_on_its_connection);
    tcase_add_test(t, test_status_shows_the_user_and_role);
    tcase_add_test(t, test_failed_logins_are_throttled_per_source);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
