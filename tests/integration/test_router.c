/* shale-router with real processes on loopback: a 3-node meta group, two
 * 3-voter shard groups and two routers, driven through libshale and raw
 * frames.
 *
 * What it proves: keys written through a router land on the group owning
 * their slot (and the spread follows the slot counts); MGET/MPUT split
 * across groups and merge in request order, with per-key errors when one
 * group is down; node answers (CAS_FAILED with the current value, ...) pass
 * through; a router whose map is stale refreshes it on WRONG_GROUP; a group
 * leader killed under load costs only retries; a client listing two
 * routers survives one of them being killed; garbage on the router's port
 * leaves it serving; 10,000 pipelined requests on one connection are all
 * answered (flow control pauses and resumes reading); a full group queue
 * answers OVERLOADED at once; without a map requests are UNAVAILABLE; bad
 * flags exit 2; SIGTERM exits 0.
 *
 * One cluster for the whole suite (it takes seconds to start), tests run in
 * order in one process (CK_NOFORK): the destructive ones come last. Hosts
 * 127.0.0.150.. (meta), .160.. (group 1), .170.. (group 2), .180-.183
 * (routers). */
#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cmap.h"
#include "frame.h"
#include "harness_cluster.h"
#include "keyhash.h"
#include "shale.h"
#include "wire.h"

#define SLOTS 4096
#define FIRST_HOST 150

static th_cluster_t g_cl;
static char *g_base;
static th_node_t g_rtmp;    /* the short-lived routers of test_flags_status_garbage */
static th_node_t g_ra, g_rb; /* router A (5 s deadline), router B (1 s) */
static th_node_t g_rc;       /* router C: 1 s deadline, 4 requests per group */
static Shale__ClusterMap *g_map;
static int g_ready;

/* ---- Routers as processes ------------------------------------------------*/

static int router_exec_auth(th_node_t *n, const char *const *args, int wait_exit, int auth)
{
    if (th_router_start(n, args, auth) != 0)
        return -1;
    if (wait_exit) {
        int st;
        waitpid(n->pid, &st, 0);
        n->pid = 0;
        return st;
    }
    return 0;
}

static int router_exec(th_node_t *n, const char *const *args, int wait_exit)
{
    return router_exec_auth(n, args, wait_exit, 1);
}

static void router_start(th_node_t *n, const char *meta, const char *timeout_ms,
                         const char *max_pending)
{
    const char *args[] = {"--listen", n->addr,         "--meta",    meta, "--timeout-ms",
                          timeout_ms, "--max-pending", max_pending, NULL};
    ck_assert_int_eq(router_exec(n, args, 0), 0);
}

/* Router B: with the stuck meta member listed first. Without --auth (it
 * still logs in to the nodes as admin): with --auth its user-table watch
 * would hang at the stuck member as well, and it would refuse every login
 * until that watch gave up — and so would its map watch have moved on by
 * the time the tests start. The map watch is what the tests are about. */
static void router_b_start(th_node_t *n, const char *meta)
{
    const char *args[13] = {"--listen",   n->addr,         "--meta", meta,
                            "--timeout-ms", "1000", "--max-pending", "10000"};
    if (th_secure()) {
        args[8] = "--auth-user";
        args[9] = "admin";
        args[10] = "--auth-password-file";
        args[11] = th_admin_password_file();
    }
    ck_assert_int_eq(router_exec_auth(n, args, 0, 0), 0);
}


static int log_contains(const th_node_t *n, const char *needle)
{
    FILE *f = fopen(n->log, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* One request over a raw connection: the wire error code of the answer,
 * 0 for a non-error answer, -1 for no answer. */
static int raw_error(const th_node_t *rt, uint16_t type, const void *msg)
{
    int fd = th_raw_connect_hello(rt->host, rt->port, NULL);
    ck_assert_int_ge(fd, 0);
    th_frame_t f;
    int code = -1;
    if (th_raw_send_msg(fd, type, 42, msg) == 0 && th_raw_recv(fd, &f) == 0) {
        ck_assert_uint_eq(f.id, 42);
        code = f.type == SHALE_MSG_ERROR ? th_frame_error_code(&f) : 0;
        th_frame_free(&f);
    }
    close(fd);
    return code;
}

/* One PUT / MPUT over a raw connection (the test chooses the Session). */
static void *raw_answer(const th_node_t *rt, uint16_t type, const void *msg, uint16_t want)
{
    int fd = th_raw_connect_hello(rt->host, rt->port, NULL);
    ck_assert_int_ge(fd, 0);
    th_frame_t f;
    ck_assert_int_eq(th_raw_send_msg(fd, type, 1, msg), 0);
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    close(fd);
    ck_assert_msg(f.type == want, "answer %s (error %d)", frame_type_name(f.type),
                  th_frame_error_code(&f));
    void *m = wire_unpack(want, f.payload, f.len);
    th_frame_free(&f);
    ck_assert_ptr_nonnull(m);
    return m;
}

static Shale__PutResponse *raw_put(const th_node_t *rt, const Shale__PutRequest *p)
{
    return raw_answer(rt, SHALE_MSG_PUT_REQ, p, SHALE_MSG_PUT_RESP);
}

static Shale__MPutResponse *raw_mput(const th_node_t *rt, const Shale__MPutRequest *p)
{
    return raw_answer(rt, SHALE_MSG_MPUT_REQ, p, SHALE_MSG_MPUT_RESP);
}

/* Nothing stays stopped after a test, whatever it did or where it failed. */
static void resume_all(void)
{
    for (int i = 0; i < g_cl.meta.n; i++)
        if (g_cl.meta.nodes[i].pid > 0)
            kill(g_cl.meta.nodes[i].pid, SIGCONT);
    for (int g = 0; g < g_cl.ngroups; g++)
        for (int i = 0; i < g_cl.groups[g].n; i++)
            if (g_cl.groups[g].nodes[i].pid > 0)
                kill(g_cl.groups[g].nodes[i].pid, SIGCONT);
}

/* ---- A stuck meta member --------------------------------------------------
 * Accepts connections and answers HELLO like a meta node, then never
 * answers anything: a member that is up but wedged. Router B lists it
 * first, so its long-poll hangs there and only WRONG_GROUP refreshes (from
 * the real members) can tell it about a new map. */

static int g_fake_fd = -1;
static int g_fake_port;
static pthread_t g_fake_thread;
static volatile int g_fake_stop;
#define FAKE_MAX 32
static int g_fake_conn[FAKE_MAX];
static pthread_t g_fake_conn_thread[FAKE_MAX];
static int g_fake_nconn;

/* One connection, blocking: HELLO gets its reply, anything else nothing.
 * Over TLS when the harness speaks it (harness.h): a stuck member, not a
 * broken one — a plain fake would fail the router's handshake at once. */
static void *fake_conn(void *arg)
{
    int fd = *(int *)arg;
    if (th_raw_accept(fd, "127.0.0.184", 120000) != 0)
        return NULL;
    th_frame_t f;
    while (!g_fake_stop && th_raw_recv(fd, &f) == 0) {
        if (f.type == SHALE_MSG_HELLO) {
            Shale__HelloReply hr = SHALE__HELLO_REPLY__INIT;
            hr.protocol_version = SHALE_PROTOCOL_VERSION;
            hr.cluster_id = (char *)"shale";
            th_raw_send_msg(fd, SHALE_MSG_HELLO_REPLY, f.id, &hr);
        }
        th_frame_free(&f);
    }
    return NULL;
}

static void *fake_meta(void *arg)
{
    (void)arg;
    struct pollfd pf = {.fd = g_fake_fd, .events = POLLIN};
    while (!g_fake_stop) {
        if (poll(&pf, 1, 100) <= 0 || g_fake_nconn == FAKE_MAX)
            continue;
        int c = accept(g_fake_fd, NULL, NULL);
        if (c < 0)
            continue;
        g_fake_conn[g_fake_nconn] = c;
        if (pthread_create(&g_fake_conn_thread[g_fake_nconn], NULL, fake_conn,
                           &g_fake_conn[g_fake_nconn]) != 0) {
            close(c);
            continue;
        }
        g_fake_nconn++;
    }
    /* Wake the connection threads out of their blocking reads. */
    for (int i = 0; i < g_fake_nconn; i++)
        shutdown(g_fake_conn[i], SHUT_RDWR);
    for (int i = 0; i < g_fake_nconn; i++) {
        pthread_join(g_fake_conn_thread[i], NULL);
        th_raw_close(g_fake_conn[i]);
    }
    close(g_fake_fd);
    return NULL;
}

static void fake_meta_start(const char *host)
{
    g_fake_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, host, &sa.sin_addr);
    socklen_t sl = sizeof(sa);
    ck_assert_int_eq(bind(g_fake_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(g_fake_fd, 16), 0);
    getsockname(g_fake_fd, (struct sockaddr *)&sa, &sl);
    g_fake_port = ntohs(sa.sin_port);
    ck_assert_int_eq(pthread_create(&g_fake_thread, NULL, fake_meta, NULL), 0);
}

static void fake_meta_stop(void)
{
    if (g_fake_fd < 0)
        return;
    g_fake_stop = 1;
    pthread_join(g_fake_thread, NULL);
    g_fake_fd = -1;
}

/* ---- Suite fixture -----------------------------------------------------------*/

static void cluster_up(void)
{
    g_base = th_tmpdir("router");
    ck_assert_ptr_nonnull(g_base);
    if (th_cluster_start(&g_cl, 2, 3, FIRST_HOST, g_base, NULL) != 0 ||
        th_cluster_init(&g_cl, SLOTS, 20000) != 0) {
        fprintf(stderr, "test_router: cluster did not start\n");
        return;
    }
    ck_assert_int_eq(th_map_get(g_cl.meta.addrs, 0, 0, &g_map), SHALE_OK);
    th_node_init(&g_ra, 901, "127.0.0.180", g_base);
    th_node_init(&g_rb, 902, "127.0.0.181", g_base);
    snprintf(g_ra.log, sizeof(g_ra.log), "%s/router-a.log", g_base);
    snprintf(g_rb.log, sizeof(g_rb.log), "%s/router-b.log", g_base);
    router_start(&g_ra, g_cl.meta.addrs, "5000", "10000");
    /* Router B lists a stuck meta member first: its long-poll hangs there
     * (for RT_MAP_WAIT_MS + its timeout), its refreshes go to the real ones. */
    fake_meta_start("127.0.0.184");
    char rot[1100];
    snprintf(rot, sizeof(rot), "127.0.0.184:%d,%s", g_fake_port, g_cl.meta.addrs);
    router_b_start(&g_rb, rot);
    th_node_init(&g_rc, 903, "127.0.0.182", g_base);
    snprintf(g_rc.log, sizeof(g_rc.log), "%s/router-c.log", g_base);
    router_start(&g_rc, g_cl.meta.addrs, "1000", "4");
    if (th_router_wait_epoch(&g_ra, 1, 10000) != 0 || th_router_wait_epoch(&g_rb, 1, 10000) != 0 ||
        th_router_wait_epoch(&g_rc, 1, 10000) != 0) {
        th_node_dump_log(&g_ra);
        th_node_dump_log(&g_rb);
        th_node_dump_log(&g_rc);
        return;
    }
    g_ready = 1;
}

static void cluster_down(void)
{
    resume_all(); /* whatever a failed test left stopped must run to stop */
    if (g_ra.pid > 0)
        th_node_stop(&g_ra, SIGTERM);
    if (g_rb.pid > 0)
        th_node_stop(&g_rb, SIGTERM);
    if (g_rc.pid > 0)
        th_node_stop(&g_rc, SIGTERM);
    if (g_rtmp.pid > 0)
        th_node_stop(&g_rtmp, SIGTERM);
    th_cluster_stop(&g_cl);
    fake_meta_stop();
    cmap_free(g_map);
    g_map = NULL;
    if (g_base != NULL && getenv("SHALE_KEEP_TMP") == NULL)
        th_rmrf(g_base);
    free(g_base);
    g_base = NULL;
}

static void need_cluster(void)
{
    ck_assert_msg(g_ready, "the cluster or the routers did not start (see logs above)");
}

static shale_client_t *connect_to(const char *addrs, uint32_t timeout_ms)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = timeout_ms;
    o.connect_timeout_ms = 1000;
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN] = "";
    int rv = shale_connect(addrs, &o, &c, err);
    ck_assert_msg(rv == SHALE_OK, "connect %s: %s", addrs, err);
    return c;
}

static uint64_t group_of(const char *key)
{
    return cmap_slot_group(g_map, shale_key_slot(key, strlen(key), g_map->slots));
}

/* The nth key named prefix-<i> whose slot group gid owns in g_map. */
static void key_in_group(const char *prefix, uint64_t gid, int nth, char *key, size_t len)
{
    for (int i = 0, found = 0;; i++) {
        snprintf(key, len, "%s-%d", prefix, i);
        if (group_of(key) == gid && found++ == nth)
            return;
    }
}

/* ---- Async load through libshale ------------------------------------------
 * conc writers, each PUTting its own keys L<tag>-<w>-<n> = v<n> one after
 * the other, for duration_ms; at at_ms the action runs once (a kill). */

typedef struct load load_t;
typedef struct writer {
    shale_req_t req;
    load_t *l;
    int w;
    uint64_t n;    /* puts acknowledged */
    uint64_t sent; /* puts issued */
    char key[64], val[32];
} writer_t;

struct load {
    uv_loop_t loop;
    shale_client_t *c;
    uv_timer_t stop, act;
    void (*action)(void);
    long long end;
    int conc;
    uint64_t limit; /* puts per writer, 0: until the duration ends */
    const char *tag;
    uint64_t ok, errs;
    char last_err[SHALE_ERRMSG_LEN + 32];
    writer_t wr[64];
    int stopping;
    int active; /* writers still issuing */
};

static void load_next(writer_t *w);

static void load_cb(shale_req_t *req, int status)
{
    writer_t *w = req->data;
    load_t *l = w->l;
    if (status == SHALE_OK) {
        l->ok++;
        w->n++;
    } else {
        l->errs++;
        snprintf(l->last_err, sizeof(l->last_err), "%s: %s", shale_strerror(status), req->errmsg);
    }
    shale_req_cleanup(req);
    if (!l->stopping && th_now_ms() < l->end && (l->limit == 0 || w->sent < l->limit)) {
        load_next(w);
    } else if (--l->active == 0) {
        /* Every writer is done: nothing keeps the loop running. */
        uv_timer_stop(&l->stop);
        uv_timer_stop(&l->act);
    }
}

static void load_next(writer_t *w)
{
    snprintf(w->key, sizeof(w->key), "L%s-%d-%llu", w->l->tag, w->w, (unsigned long long)w->n);
    snprintf(w->val, sizeof(w->val), "v%llu", (unsigned long long)w->n);
    w->req.data = w;
    w->sent++;
    int rv =
        shale_put_async(w->l->c, &w->req, w->key, strlen(w->key), w->val, strlen(w->val), load_cb);
    ck_assert_int_eq(rv, SHALE_OK);
}

static void on_act(uv_timer_t *t)
{
    load_t *l = t->data;
    if (l->action != NULL)
        l->action();
}

static void on_load_stop(uv_timer_t *t)
{
    load_t *l = t->data;
    l->stopping = 1;
}

static void run_load(load_t *l, const char *addrs, const char *tag, int conc, int duration_ms,
                     uint64_t limit, int at_ms, void (*action)(void))
{
    memset(l, 0, sizeof(*l));
    uv_loop_init(&l->loop);
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 10000; /* longer than the router's deadline: its answer counts */
    o.connect_timeout_ms = 1000;
    ck_assert_int_eq(shale_client_open(&l->loop, addrs, &o, &l->c), SHALE_OK);
    l->conc = conc;
    l->limit = limit;
    l->tag = tag;
    l->action = action;
    l->end = th_now_ms() + duration_ms;
    uv_timer_init(&l->loop, &l->stop);
    uv_timer_init(&l->loop, &l->act);
    l->stop.data = l->act.data = l;
    uv_timer_start(&l->stop, on_load_stop, (uint64_t)duration_ms, 0);
    if (action != NULL)
        uv_timer_start(&l->act, on_act, (uint64_t)at_ms, 0);
    l->active = conc;
    for (int i = 0; i < conc; i++) {
        l->wr[i].l = l;
        l->wr[i].w = i;
        load_next(&l->wr[i]);
    }
    /* Runs until every writer's last request completed. */
    uv_run(&l->loop, UV_RUN_DEFAULT);
    shale_client_close(l->c, NULL);
    uv_close((uv_handle_t *)&l->stop, NULL);
    uv_close((uv_handle_t *)&l->act, NULL);
    uv_run(&l->loop, UV_RUN_DEFAULT);
    uv_loop_close(&l->loop);
}

/* Every acknowledged put of the load reads back (through addrs). */
static void check_load(const load_t *l, const char *addrs)
{
    shale_client_t *c = connect_to(addrs, 10000);
    shale_item_t keys[256];
    char names[256][64];
    shale_item_result_t res[256];
    for (int w = 0; w < l->conc; w++) {
        for (uint64_t n0 = 0; n0 < l->wr[w].n; n0 += 256) {
            size_t k = 0;
            for (uint64_t n = n0; n < l->wr[w].n && k < 256; n++, k++) {
                snprintf(names[k], sizeof(names[k]), "L%s-%d-%llu", l->tag, w,
                         (unsigned long long)n);
                keys[k].key = names[k];
                keys[k].klen = strlen(names[k]);
            }
            ck_assert_int_eq(shale_mget(c, keys, k, NULL, res), SHALE_OK);
            for (size_t i = 0; i < k; i++) {
                char want[32];
                snprintf(want, sizeof(want), "v%llu", (unsigned long long)(n0 + i));
                ck_assert_msg(res[i].status == SHALE_OK && res[i].found,
                              "acknowledged write %s lost (status %d)", names[i], res[i].status);
                ck_assert_int_eq((int)res[i].len, (int)strlen(want));
                ck_assert(memcmp(res[i].data, want, res[i].len) == 0);
            }
            shale_item_results_free(res, k);
        }
    }
    shale_close(c);
}

/* ---- Tests -----------------------------------------------------------------*/

/* Bad flags exit 2; STATUS answers as a router; garbage of every kind gets
 * an error or a closed connection and the router keeps serving. */
START_TEST(test_flags_status_garbage)
{
    need_cluster();
    /* File scope: cluster_down stops it when an assertion ends the test
     * (no fork: a failed check longjmps past the th_node_stop below). */
    th_node_t *tmp = &g_rtmp;
    th_node_init(tmp, 904, "127.0.0.183", g_base);
    snprintf(tmp->log, sizeof(tmp->log), "%s/router-tmp.log", g_base);
    const char *bad1[] = {"--meta", "nonsense", NULL};
    const char *bad2[] = {"--meta", g_cl.meta.addrs, "--timeout-ms", "x", NULL};
    const char *bad3[] = {"--meta", g_cl.meta.addrs, "--frobnicate", NULL};
    const char *none[] = {NULL};
    int st = router_exec(tmp, bad1, 1);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    st = router_exec(tmp, bad2, 1);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    st = router_exec(tmp, bad3, 1);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    st = router_exec(tmp, none, 1);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2);

    Shale__StatusResponse *s = NULL;
    ck_assert_int_eq(th_node_status(&g_ra, &s), 0);
    ck_assert_str_eq(s->role, "router");
    ck_assert_str_eq(s->cluster_id, "shale");
    ck_assert_uint_eq(s->map_epoch, g_map->epoch);
    shale__status_response__free_unpacked(s, NULL);

    th_frame_t f;
    /* A request before HELLO: PROTOCOL, then closed. */
    int fd = th_raw_connect(g_ra.host, g_ra.port, 3000);
    Shale__StatusRequest sr = SHALE__STATUS_REQUEST__INIT;
    ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_STATUS_REQ, 5, &sr), 0);
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_int_eq(th_frame_error_code(&f), SHALE__ERROR_CODE__PROTOCOL);
    th_frame_free(&f);
    ck_assert_int_ne(th_raw_recv(fd, &f), 0);
    close(fd);
    /* Another cluster's HELLO. */
    fd = th_raw_connect(g_ra.host, g_ra.port, 3000);
    Shale__Hello h = SHALE__HELLO__INIT;
    h.protocol_version = SHALE_PROTOCOL_VERSION;
    h.cluster_id = (char *)"elsewhere";
    ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_HELLO, 1, &h), 0);
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_int_eq(th_frame_error_code(&f), SHALE__ERROR_CODE__CLUSTER_MISMATCH);
    th_frame_free(&f);
    close(fd);
    /* After HELLO: an unknown type and a malformed message are answered and
     * the connection stays usable; an oversize length closes it. */
    fd = th_raw_connect_hello(g_ra.host, g_ra.port, "shale");
    ck_assert_int_ge(fd, 0);
    uint8_t hdr[FRAME_HEADER_SIZE];
    frame_hdr_t fh = {.len = 0, .type = 99, .id = 7};
    frame_hdr_write(hdr, &fh);
    ck_assert_int_eq(th_raw_send(fd, hdr, sizeof(hdr)), 0);
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_uint_eq(f.id, 7);
    ck_assert_int_eq(th_frame_error_code(&f), SHALE__ERROR_CODE__PROTOCOL);
    th_frame_free(&f);
    uint8_t junk[FRAME_HEADER_SIZE + 5] = {0};
    fh = (frame_hdr_t){.len = 5, .type = SHALE_MSG_PUT_REQ, .id = 8};
    frame_hdr_write(junk, &fh);
    memcpy(junk + FRAME_HEADER_SIZE, "\xff\xff\xff\xff\xff", 5);
    ck_assert_int_eq(th_raw_send(fd, junk, sizeof(junk)), 0);
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_uint_eq(f.id, 8);
    ck_assert_int_eq(th_frame_error_code(&f), SHALE__ERROR_CODE__INVALID);
    th_frame_free(&f);
    Shale__GetRequest g = SHALE__GET_REQUEST__INIT; /* empty key */
    ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_GET_REQ, 9, &g), 0);
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_int_eq(th_frame_error_code(&f), SHALE__ERROR_CODE__INVALID);
    th_frame_free(&f);
    ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_STATUS_REQ, 10, &sr), 0);
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_int_eq(f.type, SHALE_MSG_STATUS_RESP);
    th_frame_free(&f);
    fh = (frame_hdr_t){.len = 0x7fffffff, .type = SHALE_MSG_GET_REQ, .id = 11};
    frame_hdr_write(hdr, &fh);
    ck_assert_int_eq(th_raw_send(fd, hdr, sizeof(hdr)), 0);
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_uint_eq(f.id, 0);
    ck_assert_int_eq(th_frame_error_code(&f), SHALE__ERROR_CODE__TOO_LARGE);
    th_frame_free(&f);
    ck_assert_int_ne(th_raw_recv(fd, &f), 0);
    close(fd);
    /* Random bytes, a half frame, then a vanished peer. */
    srand(42);
    for (int round = 0; round < 20; round++) {
        fd = th_raw_connect(g_ra.host, g_ra.port, 1000);
        ck_assert_int_ge(fd, 0);
        uint8_t buf[512];
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = (uint8_t)rand();
        if (round % 2 == 0) /* a valid header start, garbage after */
            memcpy(buf, "\x00\x00\x00\x10S\x01\x00\x01", 8);
        th_raw_send(fd, buf, (size_t)(rand() % (int)sizeof(buf)) + 1);
        if (round % 3 == 0)
            (void)th_raw_recv(fd, &f), th_frame_free(&f);
        close(fd);
    }
    /* Still serving. */
    int sts;
    ck_assert_msg(waitpid(g_ra.pid, &sts, WNOHANG) == 0, "router died after garbage");

    /* A router whose meta group does not answer has no map: data requests
     * are UNAVAILABLE at once, STATUS says epoch 0, SIGTERM exits 0. */
    char nometa[64];
    snprintf(nometa, sizeof(nometa), "127.0.0.183:%d", th_free_port("127.0.0.183"));
    /* Without --auth: with it, a router that never reached its meta group
     * has no user table either and refuses every login (security.md). */
    const char *nm_args[] = {"--listen", tmp->addr, "--meta", nometa, "--timeout-ms", "5000",
                             "--max-pending", "100", NULL};
    ck_assert_int_eq(router_exec_auth(tmp, nm_args, 0, 0), 0);
    for (int i = 0; i < 100 && th_node_status(tmp, &s) != 0; i++)
        usleep(20 * 1000);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(s->map_epoch, 0);
    shale__status_response__free_unpacked(s, NULL);
    Shale__GetRequest gk = SHALE__GET_REQUEST__INIT;
    gk.key.data = (uint8_t *)"k";
    gk.key.len = 1;
    long long t0 = th_now_ms();
    ck_assert_int_eq(raw_error(tmp, SHALE_MSG_GET_REQ, &gk), SHALE__ERROR_CODE__UNAVAILABLE);
    ck_assert_int_lt(th_now_ms() - t0, 1000);
    st = th_node_stop(tmp, SIGTERM);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* 10,000 requests pipelined on one connection: reading pauses at the
     * in-flight limit and resumes; every one is answered, by id. */
    fd = th_raw_connect_hello(g_ra.host, g_ra.port, NULL);
    ck_assert_int_ge(fd, 0);
    enum { PIPE = 10000 };
    size_t one;
    uint8_t *fr = wire_pack(SHALE_MSG_GET_REQ, 0, &gk.base, UINT32_MAX, &one);
    uint8_t *all = malloc(one * PIPE);
    for (int i = 0; i < PIPE; i++) {
        fh = (frame_hdr_t){.len = (uint32_t)(one - FRAME_HEADER_SIZE),
                           .type = SHALE_MSG_GET_REQ,
                           .id = (uint64_t)i + 1};
        memcpy(all + (size_t)i * one, fr, one);
        frame_hdr_write(all + (size_t)i * one, &fh);
    }
    ck_assert_int_eq(th_raw_send(fd, all, one * PIPE), 0);
    static uint8_t got[PIPE + 1];
    memset(got, 0, sizeof(got));
    for (int i = 0; i < PIPE; i++) {
        ck_assert_int_eq(th_raw_recv(fd, &f), 0);
        ck_assert_int_eq(f.type, SHALE_MSG_GET_RESP);
        ck_assert(f.id >= 1 && f.id <= PIPE && !got[f.id]);
        got[f.id] = 1;
        th_frame_free(&f);
    }
    free(all);
    free(fr);
    close(fd);
    /* Admin calls sent to a router by mistake are told where they go. */
    char out[2048];
    int rc = th_shalectl(out, sizeof(out), "--addr %s member add 9 127.0.0.9:1 127.0.0.9:2",
                         g_ra.addr);
    ck_assert_msg(rc == 4 && strstr(out, "a router serves data requests only: MEMBER_ADD") &&
                      strstr(out, "shalectl --addr GROUP_ADDRS"),
                  "exit %d: %s", rc, out);
    rc = th_shalectl(out, sizeof(out), "--addr %s leader transfer", g_ra.addr);
    ck_assert_msg(rc == 4 && strstr(out, "a router serves data requests only"), "exit %d: %s", rc,
                  out);
    shale_client_t *c = connect_to(g_ra.addr, 5000);
    ck_assert_int_eq(shale_put(c, "after-garbage", 13, "ok", 2, NULL), SHALE_OK);
    shale_value_t v;
    ck_assert_int_eq(shale_get(c, "after-garbage", 13, NULL, &v), SHALE_OK);
    ck_assert(v.found && v.len == 2 && memcmp(v.data, "ok", 2) == 0);
    shale_value_free(&v);
    shale_close(c);
}
END_TEST

/* Keys written through the router land on the group owning their slot,
 * and the spread over the groups follows their slot counts. */
START_TEST(test_spread_follows_slots)
{
    need_cluster();
    enum { N = 4000 };
    load_t *l = calloc(1, sizeof(*l));
    /* 40 writers x 100 keys each, through router A. */
    run_load(l, g_ra.addr, "spread", 40, 60000, N / 40, 0, NULL);
    ck_assert_uint_eq(l->errs, 0);
    uint64_t per_group[3] = {0, 0, 0};
    shale_client_t *direct[2] = {connect_to(g_cl.groups[0].addrs, 5000),
                                 connect_to(g_cl.groups[1].addrs, 5000)};
    uint64_t total = 0;
    for (int w = 0; w < l->conc; w++) {
        for (uint64_t n = 0; n < l->wr[w].n; n++) {
            char key[64];
            snprintf(key, sizeof(key), "Lspread-%d-%llu", w, (unsigned long long)n);
            uint64_t gid = group_of(key);
            ck_assert(gid == 1 || gid == 2);
            per_group[gid]++;
            total++;
            if (n % 10 != 0)
                continue; /* every tenth key is read from its group directly */
            shale_value_t v;
            ck_assert_int_eq(shale_get(direct[gid - 1], key, strlen(key), NULL, &v), SHALE_OK);
            ck_assert_msg(v.found, "%s not on group %llu", key, (unsigned long long)gid);
            shale_value_free(&v);
            /* ... and the other group refuses it (not its slot). */
            ck_assert_int_eq(shale_get(direct[2 - gid], key, strlen(key), NULL, &v),
                             SHALE_EWRONGGROUP);
        }
    }
    shale_close(direct[0]);
    shale_close(direct[1]);
    ck_assert_uint_eq(total, N);
    for (uint64_t gid = 1; gid <= 2; gid++) {
        double want = (double)cmap_slot_count(g_map, gid) / SLOTS;
        double got = (double)per_group[gid] / (double)total;
        ck_assert_msg(got > want - 0.03 && got < want + 0.03,
                      "group %llu got %.3f of the keys, owns %.3f of the slots",
                      (unsigned long long)gid, got, want);
    }
    free(l);
}
END_TEST

/* MPUT and MGET across both groups: answers in request order. */
START_TEST(test_multi_key_across_groups)
{
    need_cluster();
    enum { N = 300 };
    shale_client_t *c = connect_to(g_ra.addr, 5000);
    shale_item_t items[N + 10];
    char keys[N + 10][32], vals[N][32];
    int in_group[3] = {0, 0, 0};
    for (int i = 0; i < N + 10; i++) {
        snprintf(keys[i], sizeof(keys[i]), "multi-%d", i);
        items[i].key = keys[i];
        items[i].klen = strlen(keys[i]);
        if (i < N) {
            snprintf(vals[i], sizeof(vals[i]), "value-%d", i * 7);
            items[i].value = vals[i];
            items[i].vlen = strlen(vals[i]);
            in_group[group_of(keys[i])]++;
        }
    }
    ck_assert_int_gt(in_group[1], 50);
    ck_assert_int_gt(in_group[2], 50);
    shale_item_result_t res[N + 10];
    ck_assert_int_eq(shale_mput(c, items, N, res), SHALE_OK);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(res[i].status, SHALE_OK);
        ck_assert_uint_gt(res[i].version, 0);
    }
    shale_item_results_free(res, N);
    /* N written keys and 10 never written, in one MGET. */
    ck_assert_int_eq(shale_mget(c, items, N + 10, NULL, res), SHALE_OK);
    for (int i = 0; i < N + 10; i++) {
        ck_assert_int_eq(res[i].status, SHALE_OK);
        if (i < N) {
            ck_assert_msg(res[i].found, "%s missing", keys[i]);
            ck_assert_int_eq((int)res[i].len, (int)strlen(vals[i]));
            ck_assert(memcmp(res[i].data, vals[i], res[i].len) == 0);
        } else {
            ck_assert(!res[i].found);
        }
    }
    shale_item_results_free(res, N + 10);
    /* STALE MGET works too (served by any member). A member may not have
     * applied the MPUT yet — a STALE read allows that — so poll until every
     * key shows up (members apply within milliseconds). */
    shale_read_opts_t ro = {.consistency = SHALE_STALE, .max_staleness_ms = 60000};
    int all = 0;
    for (int tries = 0; tries < 100 && !all; tries++) {
        ck_assert_int_eq(shale_mget(c, items, N, &ro, res), SHALE_OK);
        all = 1;
        for (int i = 0; i < N; i++) {
            ck_assert_int_eq(res[i].status, SHALE_OK);
            all &= res[i].found;
        }
        shale_item_results_free(res, N);
        if (!all)
            usleep(20 * 1000);
    }
    ck_assert_msg(all, "STALE MGET never saw every key");
    shale_close(c);
}
END_TEST

/* The node's answers reach the client as the node sent them. */
START_TEST(test_answers_pass_through)
{
    need_cluster();
    shale_client_t *c = connect_to(g_ra.addr, 5000);
    uint64_t v1 = 0, v2 = 0;
    ck_assert_int_eq(shale_put(c, "pt-key", 6, "first", 5, &v1), SHALE_OK);
    shale_cas_expect_t ex = {.kind = SHALE_CAS_VERSION, .version = v1 + 100};
    shale_value_t cur;
    memset(&cur, 0, sizeof(cur));
    ck_assert_int_eq(shale_cas(c, "pt-key", 6, &ex, "second", 6, 0, &v2, &cur), SHALE_ECASFAILED);
    ck_assert(cur.found);
    ck_assert_uint_eq(cur.version, v1);
    ck_assert(cur.len == 5 && memcmp(cur.data, "first", 5) == 0);
    shale_value_free(&cur);
    ex.version = v1;
    ck_assert_int_eq(shale_cas(c, "pt-key", 6, &ex, "second", 6, 0, &v2, NULL), SHALE_OK);
    ck_assert_uint_gt(v2, v1);
    shale_read_opts_t ro = {.consistency = SHALE_STALE, .max_staleness_ms = 60000};
    shale_value_t v;
    /* A STALE read may see the old value (a lagging member); never an error. */
    ck_assert_int_eq(shale_get(c, "pt-key", 6, &ro, &v), SHALE_OK);
    ck_assert(v.found);
    shale_value_free(&v);
    int existed = 0;
    ck_assert_int_eq(shale_del(c, "pt-key", 6, &existed, NULL), SHALE_OK);
    ck_assert(existed);
    ck_assert_int_eq(shale_get(c, "pt-key", 6, NULL, &v), SHALE_OK);
    ck_assert(!v.found);
    shale_close(c);
    /* The client's Session passes through untouched: the same (client_id,
     * seq) sent again is answered with the first outcome, not applied. */
    Shale__Session ses = SHALE__SESSION__INIT;
    ses.client_id = 0x5eed;
    ses.seq = 1;
    ses.has_ack_floor = 1;
    ses.ack_floor = 1;
    Shale__PutRequest once = SHALE__PUT_REQUEST__INIT;
    once.key.data = (uint8_t *)"once-key";
    once.key.len = 8;
    once.value.data = (uint8_t *)"first";
    once.value.len = 5;
    once.session = &ses;
    Shale__PutResponse *pr1 = raw_put(&g_ra, &once);
    once.value.data = (uint8_t *)"again";
    Shale__PutResponse *pr2 = raw_put(&g_ra, &once);
    ck_assert(!pr1->has_duplicate || !pr1->duplicate);
    ck_assert(pr2->has_duplicate && pr2->duplicate);
    ck_assert_uint_eq(pr2->version, pr1->version);
    shale__put_response__free_unpacked(pr1, NULL);
    shale__put_response__free_unpacked(pr2, NULL);
    c = connect_to(g_ra.addr, 5000);
    ck_assert_int_eq(shale_get(c, "once-key", 8, NULL, &v), SHALE_OK);
    ck_assert(v.found && v.len == 5 && memcmp(v.data, "first", 5) == 0);
    shale_value_free(&v);
    shale_close(c);
    /* An MPUT over both groups, sent twice with one session: each group's
     * session table answers the second from the first. */
    char mk[2][32];
    key_in_group("oncem", 1, 0, mk[0], sizeof(mk[0]));
    key_in_group("oncem", 2, 0, mk[1], sizeof(mk[1]));
    Shale__KeyValue kv[2], *kvp[2] = {&kv[0], &kv[1]};
    for (int i = 0; i < 2; i++) {
        shale__key_value__init(&kv[i]);
        kv[i].key.data = (uint8_t *)mk[i];
        kv[i].key.len = strlen(mk[i]);
        kv[i].has_value = 1;
        kv[i].value.data = (uint8_t *)"m1";
        kv[i].value.len = 2;
    }
    Shale__MPutRequest mp = SHALE__MPUT_REQUEST__INIT;
    mp.n_items = 2;
    mp.items = kvp;
    ses.seq = 2;
    mp.session = &ses;
    Shale__MPutResponse *m1 = raw_mput(&g_ra, &mp);
    kv[0].value.data = kv[1].value.data = (uint8_t *)"m2";
    Shale__MPutResponse *m2 = raw_mput(&g_ra, &mp);
    ck_assert(!m1->duplicate);
    ck_assert(m2->has_duplicate && m2->duplicate);
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_null(m1->items[i]->error);
        ck_assert_uint_eq(m2->items[i]->version, m1->items[i]->version);
    }
    shale__mput_response__free_unpacked(m1, NULL);
    shale__mput_response__free_unpacked(m2, NULL);
    /* A value over the limit: refused by the router before any node. */
    int fd = th_raw_connect_hello(g_ra.host, g_ra.port, NULL);
    ck_assert_int_ge(fd, 0);
    size_t big = 1048577;
    char *val = calloc(1, big);
    Shale__PutRequest p = SHALE__PUT_REQUEST__INIT;
    p.key.data = (uint8_t *)"big";
    p.key.len = 3;
    p.value.data = (uint8_t *)val;
    p.value.len = big;
    ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_PUT_REQ, 3, &p), 0);
    th_frame_t f;
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_int_eq(th_frame_error_code(&f), SHALE__ERROR_CODE__TOO_LARGE);
    th_frame_free(&f);
    free(val);
    close(fd);
}
END_TEST

/* One group down (every member stopped): router B (1 s deadline) answers
 * a cross-group MGET with the other group's values and per-key errors for
 * the dead group's keys; a request touching only the dead group fails as a
 * whole; the group comes back and everything works again. */
START_TEST(test_one_group_down)
{
    need_cluster();
    char k1[32], k2[32], k3[32];
    key_in_group("down", 1, 0, k1, sizeof(k1));
    key_in_group("down", 2, 0, k2, sizeof(k2));
    key_in_group("down", 2, 1, k3, sizeof(k3));
    shale_client_t *c = connect_to(g_rb.addr, 8000);
    ck_assert_int_eq(shale_put(c, k1, strlen(k1), "one", 3, NULL), SHALE_OK);
    ck_assert_int_eq(shale_put(c, k2, strlen(k2), "two", 3, NULL), SHALE_OK);
    th_group_t *g2 = &g_cl.groups[1];
    for (int i = 0; i < g2->n; i++)
        kill(g2->nodes[i].pid, SIGSTOP);
    shale_item_t items[3] = {{.key = k1, .klen = strlen(k1), .value = "x", .vlen = 1},
                             {.key = k2, .klen = strlen(k2), .value = "y", .vlen = 1},
                             {.key = k3, .klen = strlen(k3), .value = "z", .vlen = 1}};
    shale_item_result_t res[3];
    long long t0 = th_now_ms();
    ck_assert_int_eq(shale_mget(c, items, 3, NULL, res), SHALE_OK);
    long long took = th_now_ms() - t0;
    ck_assert_int_eq(res[0].status, SHALE_OK);
    ck_assert(res[0].found && res[0].len == 3 && memcmp(res[0].data, "one", 3) == 0);
    ck_assert_int_eq(res[1].status, SHALE_EUNAVAILABLE);
    ck_assert_int_eq(res[2].status, SHALE_EUNAVAILABLE);
    ck_assert_msg(took >= 900 && took < 3000, "MGET took %lld ms (deadline 1000)", took);
    shale_item_results_free(res, 3);
    /* MPUT: the dead group's writes were sent, so their outcome is unknown. */
    ck_assert_int_eq(shale_mput(c, items, 3, res), SHALE_OK);
    ck_assert_int_eq(res[0].status, SHALE_OK);
    ck_assert_int_eq(res[1].status, SHALE_ETIMEOUT);
    ck_assert_int_eq(res[2].status, SHALE_ETIMEOUT);
    shale_item_results_free(res, 3);
    /* Only the dead group: one error for the request (raw frames: libshale
     * would retry an UNAVAILABLE answer until its own deadline). */
    Shale__MGetRequest mg = SHALE__MGET_REQUEST__INIT;
    ProtobufCBinaryData mk[2] = {{strlen(k2), (uint8_t *)k2}, {strlen(k3), (uint8_t *)k3}};
    mg.n_keys = 2;
    mg.keys = mk;
    ck_assert_int_eq(raw_error(&g_rb, SHALE_MSG_MGET_REQ, &mg), SHALE__ERROR_CODE__UNAVAILABLE);
    Shale__GetRequest gr = SHALE__GET_REQUEST__INIT;
    gr.key = mk[0];
    ck_assert_int_eq(raw_error(&g_rb, SHALE_MSG_GET_REQ, &gr), SHALE__ERROR_CODE__UNAVAILABLE);
    Shale__PutRequest pr = SHALE__PUT_REQUEST__INIT;
    Shale__Session ses = SHALE__SESSION__INIT;
    ses.client_id = 777;
    ses.seq = 1;
    pr.key = mk[0];
    pr.value = mk[1];
    pr.session = &ses;
    /* A write the router handed to a node has an unknown outcome: TIMEOUT.
     * In plain TCP a redial to a stopped node connects (the kernel accepts)
     * and the write is handed over; over TLS (harness.h) a redial never
     * finishes its handshake, so if the router had dropped its connection
     * to the stalled node the write was never sent: UNAVAILABLE. */
    int put_code = raw_error(&g_rb, SHALE_MSG_PUT_REQ, &pr);
    if (th_secure() && put_code == SHALE__ERROR_CODE__UNAVAILABLE)
        put_code = SHALE__ERROR_CODE__TIMEOUT;
    ck_assert_int_eq(put_code, SHALE__ERROR_CODE__TIMEOUT);
    /* Router C admits 4 requests per group: 20 pipelined GETs for the dead
     * group get 16 OVERLOADED at once and 4 UNAVAILABLE at the deadline. */
    int fd = th_raw_connect_hello(g_rc.host, g_rc.port, NULL);
    ck_assert_int_ge(fd, 0);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_GET_REQ, (uint64_t)i + 1, &gr), 0);
    int over = 0, unav = 0;
    t0 = th_now_ms();
    for (int i = 0; i < 20; i++) {
        th_frame_t f;
        ck_assert_int_eq(th_raw_recv(fd, &f), 0);
        int code = th_frame_error_code(&f);
        if (code == SHALE__ERROR_CODE__OVERLOADED) {
            over++;
            ck_assert_msg(th_now_ms() - t0 < 500, "OVERLOADED only after %lld ms", th_now_ms() - t0);
        } else {
            ck_assert_int_eq(code, SHALE__ERROR_CODE__UNAVAILABLE);
            unav++;
        }
        th_frame_free(&f);
    }
    ck_assert_int_eq(over, 16);
    ck_assert_int_eq(unav, 4);
    close(fd);
    shale_value_t v;
    /* The healthy group is not held up. */
    t0 = th_now_ms();
    ck_assert_int_eq(shale_get(c, k1, strlen(k1), NULL, &v), SHALE_OK);
    ck_assert_int_lt(th_now_ms() - t0, 500);
    shale_value_free(&v);
    for (int i = 0; i < g2->n; i++)
        kill(g2->nodes[i].pid, SIGCONT);
    /* Back: within a few deadlines the group serves again. */
    int rv = SHALE_EUNAVAILABLE;
    for (int i = 0; i < 40 && rv != SHALE_OK; i++) {
        rv = shale_get(c, k2, strlen(k2), NULL, &v);
        if (rv != SHALE_OK)
            usleep(100 * 1000);
    }
    ck_assert_int_eq(rv, SHALE_OK);
    ck_assert(v.found);
    shale_value_free(&v);
    shale_close(c);
}
END_TEST

/* A router that missed a map change (its long-poll hangs on a stuck meta
 * member) learns it when a node answers WRONG_GROUP: it refreshes at once
 * (from another member) and routes the request to the new owner. Runs
 * early: router B's long-poll gives up on the stuck member after 31 s. */
START_TEST(test_wrong_group_refreshes_map)
{
    need_cluster();
    char key[32];
    key_in_group("moved", 1, 0, key, sizeof(key));
    uint32_t slot = shale_key_slot(key, strlen(key), SLOTS);
    /* Move the key's slot to group 2 (no data there yet: nothing to copy). */
    Shale__ClusterMap *m2 = cmap_copy(g_map), *out = NULL;
    m2->slot_group[slot] = 2;
    char msg[256];
    uint64_t ep = 0;
    ck_assert_int_eq(th_map_cas(g_cl.meta.addrs, g_map->epoch, m2, 4242, 1, &out, &ep, msg),
                     SHALE_OK);
    ck_assert_uint_eq(out->epoch, g_map->epoch + 1);
    uint64_t e2 = out->epoch;
    cmap_free(out);
    cmap_free(m2);
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, e2, 15000), 0);
    /* Router A follows through its long-poll; B is still at the old map. */
    ck_assert_int_eq(th_router_wait_epoch(&g_ra, e2, 5000), 0);
    ck_assert_uint_eq(th_router_epoch(&g_rb), e2 - 1);
    shale_client_t *c = connect_to(g_rb.addr, 5000);
    ck_assert_int_eq(shale_put(c, key, strlen(key), "moved", 5, NULL), SHALE_OK);
    ck_assert_uint_eq(th_router_epoch(&g_rb), e2);
    ck_assert_msg(log_contains(&g_rb, "via=refresh"), "router B did not refresh on WRONG_GROUP");
    shale_close(c);
    /* It went to the new owner. */
    shale_client_t *d = connect_to(g_cl.groups[1].addrs, 5000);
    shale_value_t v;
    ck_assert_int_eq(shale_get(d, key, strlen(key), NULL, &v), SHALE_OK);
    ck_assert(v.found && v.len == 5 && memcmp(v.data, "moved", 5) == 0);
    shale_value_free(&v);
    shale_close(d);
    cmap_free(g_map);
    ck_assert_int_eq(th_map_get(g_cl.meta.addrs, 0, 0, &g_map), SHALE_OK);

    /* Once more, for a multi-key request: B's MGET part for group 1 holds a
     * key whose slot moved; group 1 refuses the part, B refreshes and
     * splits the part again by the new map. */
    char ka[32], kb[32], kc[32];
    key_in_group("resplit-a", 1, 0, ka, sizeof(ka));
    key_in_group("resplit-b", 1, 0, kb, sizeof(kb));
    key_in_group("resplit-c", 2, 0, kc, sizeof(kc));
    m2 = cmap_copy(g_map);
    m2->slot_group[shale_key_slot(kb, strlen(kb), SLOTS)] = 2;
    ck_assert_int_eq(th_map_cas(g_cl.meta.addrs, e2, m2, 4242, 2, &out, &ep, msg), SHALE_OK);
    uint64_t e3 = out->epoch;
    cmap_free(out);
    cmap_free(m2);
    ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, e3, 15000), 0);
    ck_assert_int_eq(th_router_wait_epoch(&g_ra, e3, 5000), 0);
    c = connect_to(g_ra.addr, 5000);
    ck_assert_int_eq(shale_put(c, ka, strlen(ka), "A", 1, NULL), SHALE_OK);
    ck_assert_int_eq(shale_put(c, kb, strlen(kb), "B", 1, NULL), SHALE_OK);
    ck_assert_int_eq(shale_put(c, kc, strlen(kc), "C", 1, NULL), SHALE_OK);
    shale_close(c);
    ck_assert_uint_eq(th_router_epoch(&g_rb), e2);
    c = connect_to(g_rb.addr, 5000);
    shale_item_t items[3] = {{.key = ka, .klen = strlen(ka)},
                             {.key = kb, .klen = strlen(kb)},
                             {.key = kc, .klen = strlen(kc)}};
    shale_item_result_t res[3];
    ck_assert_int_eq(shale_mget(c, items, 3, NULL, res), SHALE_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(res[i].status, SHALE_OK);
        ck_assert(res[i].found && res[i].len == 1 && res[i].data[0] == "ABC"[i]);
    }
    shale_item_results_free(res, 3);
    ck_assert_uint_eq(th_router_epoch(&g_rb), e3);
    shale_close(c);
    /* The rest of the suite routes with the new map. */
    cmap_free(g_map);
    ck_assert_int_eq(th_map_get(g_cl.meta.addrs, 0, 0, &g_map), SHALE_OK);
    ck_assert_int_eq(th_router_wait_epoch(&g_rc, e3, 5000), 0);
}
END_TEST

/* Writes pipelined on one raw connection to a router (no client library in
 * between, so every retry seen is the router's): `window` PUTs in flight,
 * key RAW<tag>-<seq> = v<seq>, each with its own Session seq; `action` runs
 * once at at_ms. Counts answers that are not PUT_RESP. */
typedef struct raw_load {
    uint64_t sent, acked, errors;
    char last_err[256];
    uint8_t *ok; /* ok[seq]: acknowledged */
} raw_load_t;

static void raw_put_frame(int fd, const char *tag, uint64_t seq)
{
    char key[64], val[32];
    snprintf(key, sizeof(key), "RAW%s-%llu", tag, (unsigned long long)seq);
    snprintf(val, sizeof(val), "v%llu", (unsigned long long)seq);
    Shale__Session ses = SHALE__SESSION__INIT;
    ses.client_id = 0xfeed0000 + (uint64_t)(unsigned char)tag[0];
    ses.seq = seq;
    Shale__PutRequest p = SHALE__PUT_REQUEST__INIT;
    p.key.data = (uint8_t *)key;
    p.key.len = strlen(key);
    p.value.data = (uint8_t *)val;
    p.value.len = strlen(val);
    p.session = &ses;
    ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_PUT_REQ, seq, &p), 0);
}

static void run_raw_load(raw_load_t *l, const th_node_t *rt, const char *tag, int window,
                         int duration_ms, int at_ms, void (*action)(void))
{
    memset(l, 0, sizeof(*l));
    l->ok = calloc(1u << 20, 1);
    int fd = th_raw_connect_hello(rt->host, rt->port, NULL);
    ck_assert_int_ge(fd, 0);
    long long t0 = th_now_ms();
    int acted = 0;
    for (int i = 0; i < window; i++)
        raw_put_frame(fd, tag, ++l->sent);
    while (l->acked + l->errors < l->sent) {
        th_frame_t f;
        ck_assert_msg(th_raw_recv(fd, &f) == 0, "no answer from the router");
        ck_assert(f.id >= 1 && f.id <= l->sent && f.id < (1u << 20));
        if (f.type == SHALE_MSG_PUT_RESP) {
            l->acked++;
            l->ok[f.id] = 1;
        } else {
            l->errors++;
            Shale__Error *e = shale__error__unpack(NULL, f.len, f.payload);
            snprintf(l->last_err, sizeof(l->last_err), "%s (code %d)",
                     e && e->message ? e->message : "?", e ? (int)e->code : -1);
            if (e != NULL)
                shale__error__free_unpacked(e, NULL);
        }
        th_frame_free(&f);
        long long now = th_now_ms() - t0;
        if (!acted && action != NULL && now >= at_ms) {
            acted = 1;
            action();
        }
        if (now < duration_ms && l->sent < (1u << 20) - 1)
            raw_put_frame(fd, tag, ++l->sent);
    }
    close(fd);
}

/* Every acknowledged raw put reads back through addrs. */
static void check_raw_load(const raw_load_t *l, const char *tag, const char *addrs)
{
    shale_client_t *c = connect_to(addrs, 10000);
    for (uint64_t s0 = 1; s0 <= l->sent; s0 += 256) {
        shale_item_t keys[256];
        char names[256][64];
        uint64_t seqs[256];
        size_t k = 0;
        for (uint64_t seq = s0; seq <= l->sent && seq < s0 + 256; seq++) {
            if (!l->ok[seq])
                continue;
            snprintf(names[k], sizeof(names[k]), "RAW%s-%llu", tag, (unsigned long long)seq);
            keys[k].key = names[k];
            keys[k].klen = strlen(names[k]);
            seqs[k++] = seq;
        }
        if (k == 0)
            continue;
        shale_item_result_t res[256];
        ck_assert_int_eq(shale_mget(c, keys, k, NULL, res), SHALE_OK);
        for (size_t i = 0; i < k; i++) {
            char want[32];
            snprintf(want, sizeof(want), "v%llu", (unsigned long long)seqs[i]);
            ck_assert_msg(res[i].status == SHALE_OK && res[i].found,
                          "acknowledged write %s lost (status %d)", names[i], res[i].status);
            ck_assert(res[i].len == strlen(want) && memcmp(res[i].data, want, res[i].len) == 0);
        }
        shale_item_results_free(res, k);
    }
    shale_close(c);
}

static th_node_t *g_victim;

static void kill_victim(void)
{
    th_node_stop(g_victim, SIGKILL);
}

/* SIGKILL a group leader under write load through router A (raw frames:
 * no library retries): every write is acknowledged — the router retried
 * within its deadline — and every one reads back. */
START_TEST(test_leader_killed_under_load)
{
    need_cluster();
    int li = th_group_wait_leader(&g_cl.groups[0], 5000);
    ck_assert_int_ge(li, 0);
    g_victim = &g_cl.groups[0].nodes[li];
    raw_load_t l;
    long long t0 = th_now_ms();
    run_raw_load(&l, &g_ra, "k", 32, 4000, 1000, kill_victim);
    ck_assert_int_eq(g_victim->pid, 0);
    ck_assert_msg(l.errors == 0, "%llu errors, last: %s", (unsigned long long)l.errors, l.last_err);
    ck_assert_uint_gt(l.acked, 500);
    ck_assert_int_lt(th_now_ms() - t0, 15000);
    check_raw_load(&l, "k", g_ra.addr);
    free(l.ok);
}
END_TEST

static void kill_router_a(void)
{
    th_node_stop(&g_ra, SIGKILL);
}

/* A client listing both routers keeps going when the one it uses dies. */
START_TEST(test_two_routers_one_killed)
{
    need_cluster();
    char both[256];
    snprintf(both, sizeof(both), "%s,%s", g_ra.addr, g_rb.addr);
    load_t *l = calloc(1, sizeof(*l));
    run_load(l, both, "routers", 8, 3000, 0, 1000, kill_router_a);
    ck_assert_int_eq(g_ra.pid, 0);
    ck_assert_msg(l->errs == 0, "%llu errors, last: %s", (unsigned long long)l->errs, l->last_err);
    ck_assert_uint_gt(l->ok, 100);
    check_load(l, g_rb.addr);
    free(l);
}
END_TEST

static void term_router_b(void)
{
    kill(g_rb.pid, SIGTERM);
}

/* SIGTERM under load: the router stops cleanly (exit 0; under ASan also
 * leak-free), clients get answers or a closed connection, never a hang. */
START_TEST(test_sigterm_clean)
{
    need_cluster();
    load_t *l = calloc(1, sizeof(*l));
    run_load(l, g_rb.addr, "term", 8, 2000, 0, 500, term_router_b);
    int st = th_node_stop(&g_rb, SIGTERM);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        th_node_dump_log(&g_rb);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "router exit status %d", st);
    ck_assert(log_contains(&g_rb, "stopped"));
    free(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, NULL, resume_all);
    tcase_add_test(tc, test_wrong_group_refreshes_map);
    tcase_add_test(tc, test_flags_status_garbage);
    tcase_add_test(tc, test_spread_follows_slots);
    tcase_add_test(tc, test_multi_key_across_groups);
    tcase_add_test(tc, test_answers_pass_through);
    tcase_add_test(tc, test_one_group_down);
    tcase_add_test(tc, test_leader_killed_under_load);
    tcase_add_test(tc, test_two_routers_one_killed);
    tcase_add_test(tc, test_sigterm_clean);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    /* One cluster, tests in order in this process: they share it. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
