/* TLS on the client ports of real shaled and shale-router processes.
 *
 * What it proves: a libshale client with TLS works against a TLS node
 * (small and 1 MiB values, pipelined async requests, the @host name check)
 * and through a TLS router to a TLS cluster (meta group and data group with
 * mutual TLS everywhere: the data node's meta watch and the router's map
 * watch and node dials all present certificates); a plain-text client on a
 * TLS port gets "plain-text client on a TLS port" at once; a client
 * certificate from another CA, no client certificate where one is
 * required, and a server certificate the client's CA did not sign are each
 * refused with a message that says so; garbage before and after the
 * handshake closes only that connection; and after all of it the same
 * processes keep serving the good client. SIGHUP swaps the node's
 * certificate for new connections while an open connection keeps working,
 * and makes a data node reopen its meta watch with the reloaded files.
 * The snapshot stream (snapx_fetch over the TLS client port) works too.
 *
 * Certificate reload under load loses nothing: while client threads write
 * and read through the router and straight to a 3-voter group, an async
 * client keeps 32 writes in flight through the router, and raw
 * connections opened before the first reload keep asking every process
 * for its STATUS, the router and every node are sent SIGHUP four times,
 * the files swapped each time between two certificates of the same CA:
 * every request succeeds, no connection opened before a reload is closed
 * (raw connections, the router's node connections, Raft), new connections
 * see the new certificate, and every write is readable afterwards.
 *
 * One process, tests in order (CK_NOFORK). Case "tls" shares one PKI, one
 * standalone node (127.0.0.196) and one cluster: meta 127.0.0.190-192,
 * group 1 on .200, router .197. Case "reload" has its own PKI and cluster:
 * meta .210-212, group 1 on .220-222, router .215. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "frame.h"
#include "harness_cluster.h"
#include "shale.h"
#include "snapshot_xfer.h"
#include "tls.h"
#include "tls_certs.h"

#define FIRST_HOST 190
#define NODE_HOST "127.0.0.196"
#define ROUTER_HOST "127.0.0.197"

static char *g_base;
static char g_pki[600];
static th_node_t g_node;   /* standalone TLS node, client certificates required */
static th_cluster_t g_cl;  /* TLS meta group + one TLS data group */
static th_node_t g_router; /* TLS router */
static int g_cluster_up;

static const char *P(const char *name, const char *ext)
{
    static char bufs[16][700];
    static int next;
    char *b = bufs[next++ % 16];
    return tc_path(b, 700, g_pki, name, ext);
}

static int log_contains(const th_node_t *n, const char *needle)
{
    FILE *f = fopen(n->log, "r");
    if (f == NULL)
        return 0;
    char line[8192];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static int wait_log(const th_node_t *n, const char *needle, int timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;
    while (th_now_ms() < end) {
        if (log_contains(n, needle))
            return 0;
        usleep(20 * 1000);
    }
    return -1;
}

/* Flags that turn TLS on for a daemon (NULL-terminated, static). */
static const char *const *tls_flags(const char *cert)
{
    static const char *f[10];
    static char ca[700], crt[700], key[700];
    snprintf(ca, sizeof(ca), "%s", P("ca", "crt"));
    snprintf(crt, sizeof(crt), "%s", P(cert, "crt"));
    snprintf(key, sizeof(key), "%s", P(cert, "key"));
    const char *v[] = {"--tls-ca",          ca,  "--tls-cert", crt, "--tls-key", key,
                       "--tls-client-auth", "1", NULL};
    memcpy(f, v, sizeof(v));
    return f;
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    ck_assert(in != NULL && out != NULL);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

static void suite_up(void)
{
    g_base = th_tmpdir("tlsc");
    ck_assert_ptr_nonnull(g_base);
    snprintf(g_pki, sizeof(g_pki), "%s/pki", g_base);
    ck_assert_int_eq(mkdir(g_pki, 0700), 0);
    ck_assert_int_eq(tc_make_ca(g_pki, "ca", "Shale cluster CA"), 0);
    ck_assert_int_eq(tc_make_ca(g_pki, "ca2", "Another CA"), 0);
    ck_assert_int_eq(tc_make_cert(g_pki, "ca", "node", "shale-node",
                                  "IP:127.0.0.196,IP:127.0.0.197,IP:127.0.0.190,IP:127.0.0.191,"
                                  "IP:127.0.0.192,IP:127.0.0.200,DNS:shale-node",
                                  -1, 30),
                     0);
    ck_assert_int_eq(tc_make_cert(g_pki, "ca", "node-b", "shale-node-b", "IP:127.0.0.196", -1, 30),
                     0);
    ck_assert_int_eq(tc_make_cert(g_pki, "ca", "client", "app", NULL, -1, 30), 0);
    ck_assert_int_eq(tc_make_cert(g_pki, "ca2", "foreign", "intruder", "IP:127.0.0.196", -1, 30),
                     0);
    /* Signed by the right CA, but valid only until yesterday. */
    ck_assert_int_eq(tc_make_cert(g_pki, "ca", "expired", "old-app", NULL, -30, -1), 0);
    /* The standalone node's files are "live.*", swapped by the reload test. */
    copy_file(P("node", "crt"), P("live", "crt"));
    copy_file(P("node", "key"), P("live", "key"));
    ck_assert_int_eq(th_tls_client(P("ca", "crt"), P("client", "crt"), P("client", "key")), 0);

    char dir[700];
    snprintf(dir, sizeof(dir), "%s/node", g_base);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    th_node_init(&g_node, 1, NODE_HOST, dir);
    ck_assert_int_eq(th_node_start(&g_node, tls_flags("live")), 0);
    if (th_node_wait_ready(&g_node, 20000) != 0) {
        th_node_dump_log(&g_node);
        ck_abort_msg("the TLS node did not become ready (through the harness's TLS client)");
    }
}

static void suite_down(void)
{
    if (g_router.pid > 0) {
        int st = th_node_stop(&g_router, SIGTERM);
        if (th_log_sanitizer_errors(&g_router) > 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            th_node_dump_log(&g_router);
            fprintf(stderr, "test_tls_cluster: router exit status %d\n", st);
            abort();
        }
    }
    if (g_cluster_up)
        th_cluster_stop(&g_cl);
    if (g_node.pid > 0) {
        int st = th_node_stop(&g_node, SIGTERM);
        if (th_log_sanitizer_errors(&g_node) > 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            th_node_dump_log(&g_node);
            fprintf(stderr, "test_tls_cluster: node exit status %d\n", st);
            abort();
        }
    }
    th_tls_client(NULL, NULL, NULL);
    th_rmrf(g_base);
    free(g_base);
}

/* A client of addr with TLS from these files (any may be NULL: the option
 * is left out). Returns the connect result; *out set on success. */
static int tls_connect(const char *addr, const char *ca, const char *cert, const char *name,
                       shale_client_t **out, char *err)
{
    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = 5000;
    o.tls_ca = ca ? P(ca, "crt") : NULL;
    o.tls_cert = cert ? P(cert, "crt") : NULL;
    o.tls_key = cert ? P(cert, "key") : NULL;
    o.tls_server_name = name;
    *out = NULL;
    err[0] = '\0';
    return shale_connect(addr, &o, out, err);
}

static shale_client_t *good_client(const char *addr)
{
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];
    int rv = tls_connect(addr, "ca", "client", NULL, &c, err);
    ck_assert_msg(rv == SHALE_OK, "TLS connect to %s: %s (%s)", addr, shale_strerror(rv), err);
    return c;
}

/* The good client still works: a write and its read-back. */
static void still_serves(shale_client_t *c, const char *key)
{
    uint64_t v = 0;
    ck_assert_int_eq(shale_put(c, key, strlen(key), "alive", 5, &v), SHALE_OK);
    shale_value_t val = {0};
    ck_assert_int_eq(shale_get(c, key, strlen(key), NULL, &val), SHALE_OK);
    ck_assert(val.found && val.len == 5 && memcmp(val.data, "alive", 5) == 0);
    shale_value_free(&val);
}

/* ---- A standalone node ----------------------------------------------------------*/

typedef struct async_state {
    int done, failed;
} async_state_t;

static void on_put(shale_req_t *req, int status)
{
    async_state_t *st = req->data;
    st->done++;
    if (status != SHALE_OK)
        st->failed++;
    shale_req_cleanup(req);
}

START_TEST(test_tls_node_serves)
{
    shale_client_t *c = good_client(g_node.addr);
    still_serves(c, "k1");
    /* A 1 MiB value: many records each way. */
    size_t big = 1u << 20;
    uint8_t *v = malloc(big);
    for (size_t i = 0; i < big; i++)
        v[i] = (uint8_t)(i * 7 + 3);
    ck_assert_int_eq(shale_put(c, "big", 3, v, big - 100, NULL), SHALE_OK);
    shale_value_t val = {0};
    ck_assert_int_eq(shale_get(c, "big", 3, NULL, &val), SHALE_OK);
    ck_assert_uint_eq(val.len, big - 100);
    ck_assert(memcmp(val.data, v, big - 100) == 0);
    shale_value_free(&val);
    free(v);
    shale_close(c);

    /* 2,000 pipelined requests on one TLS connection (async API). */
    uv_loop_t loop;
    uv_loop_init(&loop);
    shale_options_t o;
    shale_options_init(&o);
    o.tls_ca = P("ca", "crt");
    o.tls_cert = P("client", "crt");
    o.tls_key = P("client", "key");
    o.tls_server_name = SHALE_TLS_NAME_HOST; /* the node's IP SAN */
    shale_client_t *ac = NULL;
    ck_assert_int_eq(shale_client_open(&loop, g_node.addr, &o, &ac), SHALE_OK);
    enum { N = 2000 };
    static shale_req_t reqs[N];
    async_state_t st = {0};
    for (int i = 0; i < N; i++) {
        char k[32];
        snprintf(k, sizeof(k), "p%d", i);
        reqs[i].data = &st;
        ck_assert_int_eq(shale_put_async(ac, &reqs[i], k, strlen(k), k, strlen(k), on_put),
                         SHALE_OK);
    }
    while (st.done < N)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(st.failed, 0);
    shale_client_close(ac, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(test_refusals_are_clear)
{
    shale_client_t *good = good_client(g_node.addr);
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];

    /* A plain-text client on the TLS port. */
    shale_options_t o;
    shale_options_init(&o);
    ck_assert_int_eq(shale_connect(g_node.addr, &o, &c, err), SHALE_EPROTO);
    ck_assert_msg(strstr(err, "plain-text client on a TLS port") != NULL, "%s", err);
    ck_assert_int_eq(wait_log(&g_node, "msg=\"plain-text client on a TLS port\"", 5000), 0);

    /* No client certificate where one is required. */
    ck_assert_int_eq(tls_connect(g_node.addr, "ca", NULL, NULL, &c, err), SHALE_EPROTO);
    ck_assert_msg(strstr(err, "certificate required") != NULL, "%s", err);
    ck_assert_int_eq(wait_log(&g_node, "the client presented no certificate", 5000), 0);

    /* A client certificate from another CA. */
    ck_assert_int_eq(tls_connect(g_node.addr, "ca", "foreign", NULL, &c, err), SHALE_EPROTO);
    ck_assert_msg(strstr(err, "the server refused the connection") != NULL, "%s", err);
    ck_assert_int_eq(wait_log(&g_node, "certificate verify failed (unknown CA", 5000), 0);

    /* An expired client certificate, from the right CA. */
    ck_assert_int_eq(tls_connect(g_node.addr, "ca", "expired", NULL, &c, err), SHALE_EPROTO);
    ck_assert_msg(strstr(err, "the server refused the connection") != NULL, "%s", err);
    ck_assert_int_eq(wait_log(&g_node, "certificate verify failed (certificate has expired", 5000),
                     0);

    /* The node's certificate is not from the CA this client trusts. */
    ck_assert_int_eq(tls_connect(g_node.addr, "ca2", "client", NULL, &c, err), SHALE_EPROTO);
    ck_assert_msg(strstr(err, "certificate verify failed (unknown CA") != NULL, "%s", err);

    /* A name the node's certificate does not carry. */
    ck_assert_int_eq(tls_connect(g_node.addr, "ca", "client", "other-node", &c, err), SHALE_EPROTO);
    ck_assert_msg(strstr(err, "does not name") != NULL, "%s", err);

    /* A bad CA file is the caller's mistake. */
    ck_assert_int_eq(tls_connect(g_node.addr, "nosuch", NULL, NULL, &c, err), SHALE_EINVAL);
    ck_assert_msg(strstr(err, "nosuch.crt") != NULL, "%s", err);

    /* The good client, connected all along, still works; so does a new one. */
    still_serves(good, "k2");
    shale_close(good);
    good = good_client(g_node.addr);
    still_serves(good, "k3");
    shale_close(good);
    ck_assert_int_eq(kill(g_node.pid, 0), 0);
}
END_TEST

/* Raw bytes straight onto the socket, bypassing the harness's TLS. */
static int plain_socket(const th_node_t *n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)n->port)};
    inet_pton(AF_INET, n->host, &sa.sin_addr);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Read until the peer closes (or resets: it may close with our garbage
 * unread); returns the bytes read (capped). */
static size_t read_to_close(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        uint8_t tmp[4096];
        ssize_t r = recv(fd, tmp, sizeof(tmp), 0);
        if (r < 0 && errno == ECONNRESET)
            return got;
        ck_assert_msg(r >= 0, "the server did not close the connection: %s", strerror(errno));
        if (r == 0)
            return got;
        size_t take = got + (size_t)r <= cap ? (size_t)r : cap - got;
        memcpy(buf + got, tmp, take);
        got += take;
    }
}

START_TEST(test_garbage_kills_nothing)
{
    shale_client_t *good = good_client(g_node.addr);
    uint8_t junk[2048], back[4096];
    for (int round = 0; round < 6; round++) {
        for (size_t i = 0; i < sizeof(junk); i++)
            junk[i] = (uint8_t)(i * 31 + (size_t)round * 17);
        if (round % 2 == 1) { /* looks like a TLS handshake record, then nonsense */
            junk[0] = 22;
            junk[1] = 3;
            junk[2] = 1;
        }
        int fd = plain_socket(&g_node);
        ck_assert_int_eq(send(fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
        size_t n = read_to_close(fd, back, sizeof(back));
        if (round % 2 == 0) /* not TLS: one plain ERROR frame, then close */
            ck_assert_msg(n > 16 && back[4] == 'S', "answer of %zu bytes", n);
        close(fd);
    }
    /* After a completed handshake: garbage instead of records. */
    for (int round = 0; round < 4; round++) {
        int fd = th_raw_connect(g_node.host, g_node.port, 5000);
        ck_assert_int_ge(fd, 0);
        for (size_t i = 0; i < sizeof(junk); i++)
            junk[i] = (uint8_t)(i * 13 + (size_t)round);
        if (round % 2 == 1) { /* an application-data record header, bogus body */
            junk[0] = 23;
            junk[1] = 3;
            junk[2] = 3;
            junk[3] = 1;
            junk[4] = 0;
        }
        ck_assert_int_eq(send(fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
        read_to_close(fd, back, sizeof(back));
        th_raw_close(fd);
    }
    ck_assert_int_eq(wait_log(&g_node, "msg=\"TLS connection failed\"", 5000), 0);
    still_serves(good, "k4");
    shale_close(good);
    ck_assert_int_eq(kill(g_node.pid, 0), 0);
}
END_TEST

/* The CN of the certificate process n presents to a new connection. */
static void peer_cn(const th_node_t *n, char *cn, size_t len)
{
    tls_opts_t o = {
        .ca_file = P("ca", "crt"), .cert_file = P("client", "crt"), .key_file = P("client", "key")};
    tls_ctx_t *t = NULL;
    char err[TLS_ERRLEN];
    ck_assert_int_eq(tls_ctx_new(TLS_CLIENT, &o, &t, err, sizeof(err)), 0);
    int fd = plain_socket(n);
    tls_sess_t *s = tls_sess_new(t, NULL, err, sizeof(err));
    ck_assert_int_eq(tls_fd_handshake(s, fd), 0);
    ck_assert_int_eq(tls_sess_peer_cn(s, cn, len), 0);
    tls_sess_free(s);
    close(fd);
    tls_ctx_free(t);
}

static void node_cn(char *cn, size_t len)
{
    peer_cn(&g_node, cn, len);
}

START_TEST(test_sighup_reloads_certificate)
{
    char cn[128];
    node_cn(cn, sizeof(cn));
    ck_assert_str_eq(cn, "shale-node");
    shale_client_t *open = good_client(g_node.addr);
    still_serves(open, "r1");
    copy_file(P("node-b", "crt"), P("live", "crt"));
    copy_file(P("node-b", "key"), P("live", "key"));
    ck_assert_int_eq(kill(g_node.pid, SIGHUP), 0);
    ck_assert_int_eq(wait_log(&g_node, "msg=\"TLS certificates reloaded\"", 5000), 0);
    node_cn(cn, sizeof(cn));
    ck_assert_str_eq(cn, "shale-node-b");
    /* The connection opened before the reload carries on. */
    still_serves(open, "r2");
    shale_close(open);
    /* A broken file: the reload is refused and the node keeps its files. */
    FILE *f = fopen(P("live", "key"), "w");
    fputs("garbage\n", f);
    fclose(f);
    ck_assert_int_eq(kill(g_node.pid, SIGHUP), 0);
    ck_assert_int_eq(wait_log(&g_node, "msg=\"TLS reload failed", 5000), 0);
    node_cn(cn, sizeof(cn));
    ck_assert_str_eq(cn, "shale-node-b");
    copy_file(P("node-b", "key"), P("live", "key"));
}
END_TEST

START_TEST(test_snapshot_stream_over_tls)
{
    char dest[700], err[1024];
    snprintf(dest, sizeof(dest), "%s/snap", g_base);
    tls_opts_t to = {
        .ca_file = P("ca", "crt"), .cert_file = P("node", "crt"), .key_file = P("node", "key")};
    tls_ctx_t *t = NULL;
    ck_assert_int_eq(tls_ctx_new(TLS_CLIENT, &to, &t, err, sizeof(err)), 0);
    snapx_fetch_opts_t o = {.tls = t};
    uint64_t applied = 0;
    int rv = snapx_fetch_ex(g_node.addr, NULL, 1, dest, &o, &applied, NULL, err, sizeof(err));
    ck_assert_msg(rv == 0, "fetch over TLS: %s", err);
    ck_assert_uint_ge(applied, 1);
    th_rmrf(dest);
    /* Without TLS the node refuses the stream. */
    rv = snapx_fetch_ex(g_node.addr, NULL, 1, dest, NULL, &applied, NULL, err, sizeof(err));
    ck_assert_int_ne(rv, 0);
    ck_assert_msg(strstr(err, "plain-text client on a TLS port") != NULL, "%s", err);
    tls_ctx_free(t);
}
END_TEST

/* ---- A cluster behind a router ------------------------------------------------*/

static void cluster_up(void)
{
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/cluster", g_base);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    const char *const *tf = tls_flags("node");
    ck_assert_int_eq(th_cluster_start_ex(&g_cl, 1, 1, FIRST_HOST, dir, tf, tf), 0);
    g_cluster_up = 1;
    /* The map goes in through the harness's TLS client; the data node learns
     * it through its own TLS watch of the meta group. */
    ck_assert_int_eq(th_cluster_init(&g_cl, 64, 20000), 0);
    th_node_init(&g_router, 0, ROUTER_HOST, dir);
    char bin[700];
    snprintf(bin, sizeof(bin), "%s/router/shale-router", th_bin_dir());
    const char *argv[20] = {bin, "--listen", g_router.addr, "--meta", g_cl.meta.addrs};
    int n = 5;
    for (int i = 0; tf[i] != NULL; i++)
        argv[n++] = tf[i];
    argv[n] = NULL;
    ck_assert_int_eq(th_spawn(&g_router, argv), 0);
    long long end = th_now_ms() + 20000;
    for (;;) {
        Shale__StatusResponse *st = NULL;
        if (th_node_status(&g_router, &st) == 0) {
            int ok = st->has_map_epoch && st->map_epoch >= 1;
            shale__status_response__free_unpacked(st, NULL);
            if (ok)
                break;
        }
        if (th_now_ms() > end) {
            th_node_dump_log(&g_router);
            ck_abort_msg("the TLS router never got the map");
        }
        usleep(50 * 1000);
    }
}

START_TEST(test_through_tls_router)
{
    cluster_up();
    shale_client_t *c = good_client(g_router.addr);
    for (int i = 0; i < 200; i++) {
        char k[32], v[32];
        snprintf(k, sizeof(k), "user:%d", i);
        snprintf(v, sizeof(v), "value-%d", i);
        ck_assert_int_eq(shale_put(c, k, strlen(k), v, strlen(v), NULL), SHALE_OK);
    }
    shale_item_t keys[3] = {{"user:1", 6, NULL, 0}, {"user:2", 6, NULL, 0}, {"nope", 4, NULL, 0}};
    shale_item_result_t res[3];
    ck_assert_int_eq(shale_mget(c, keys, 3, NULL, res), SHALE_OK);
    ck_assert(res[0].found && res[0].len == 7 && memcmp(res[0].data, "value-1", 7) == 0);
    ck_assert(res[1].found && !res[2].found);
    shale_item_results_free(res, 3);

    /* The data node holds what went through the router (read it directly,
     * over TLS too). */
    shale_client_t *direct = good_client(g_cl.groups[0].nodes[0].addr);
    shale_value_t val = {0};
    ck_assert_int_eq(shale_get(direct, "user:7", 6, NULL, &val), SHALE_OK);
    ck_assert(val.found && val.len == 7 && memcmp(val.data, "value-7", 7) == 0);
    shale_value_free(&val);
    shale_close(direct);

    /* Refusals at the router: plain text, another CA. */
    shale_client_t *bad = NULL;
    char err[SHALE_ERRMSG_LEN];
    shale_options_t o;
    shale_options_init(&o);
    ck_assert_int_eq(shale_connect(g_router.addr, &o, &bad, err), SHALE_EPROTO);
    ck_assert_msg(strstr(err, "plain-text client on a TLS port") != NULL, "%s", err);
    ck_assert_int_eq(tls_connect(g_router.addr, "ca", "foreign", NULL, &bad, err), SHALE_EPROTO);
    ck_assert_msg(strstr(err, "refused the connection") != NULL, "%s", err);
    ck_assert_int_eq(wait_log(&g_router, "certificate verify failed (unknown CA", 5000), 0);
    ck_assert_int_eq(tls_connect(g_router.addr, "ca2", "client", NULL, &bad, err), SHALE_EPROTO);
    ck_assert_msg(strstr(err, "unknown CA") != NULL, "%s", err);

    still_serves(c, "user:x");

    /* SIGHUP on a data node: its meta watch is reopened with the reloaded
     * files (between two long polls) and the node keeps serving. */
    th_node_t *dn = &g_cl.groups[0].nodes[0];
    ck_assert_int_eq(kill(dn->pid, SIGHUP), 0);
    ck_assert_int_eq(wait_log(dn, "TLS certificates reloaded", 5000), 0);
    ck_assert_int_eq(wait_log(dn, "meta client reopened with the reloaded TLS files", 10000), 0);
    ck_assert(!log_contains(dn, "cannot reopen the meta client"));
    still_serves(c, "user:y");
    shale_close(c);
    ck_assert(!log_contains(&g_router, "node connection failed"));
}
END_TEST

START_TEST(test_daemon_flag_errors)
{
    /* Half a TLS configuration is refused before anything starts (exit 2). */
    char bin[700];
    snprintf(bin, sizeof(bin), "%s/server/shaled", th_bin_dir());
    th_node_t n;
    th_node_init(&n, 9, "127.0.0.198", g_base);
    const char *argv[] = {bin,          "--id",           "9",        "--data",       n.dir,
                          "--tls-cert", P("node", "crt"), "--tls-ca", P("ca", "crt"), NULL};
    ck_assert_int_eq(th_spawn(&n, argv), 0);
    int st;
    waitpid(n.pid, &st, 0);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    ck_assert(log_contains(&n, "--tls-cert and --tls-key go together"));
    const char *argv2[] = {bin,
                           "--id",
                           "9",
                           "--data",
                           n.dir,
                           "--tls-cert",
                           P("node", "crt"),
                           "--tls-key",
                           P("nosuch", "key"),
                           "--tls-ca",
                           P("ca", "crt"),
                           NULL};
    ck_assert_int_eq(th_spawn(&n, argv2), 0);
    waitpid(n.pid, &st, 0);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    ck_assert(log_contains(&n, "nosuch.key"));
    snprintf(bin, sizeof(bin), "%s/router/shale-router", th_bin_dir());
    const char *argv3[] = {bin, "--meta", "127.0.0.1:1", "--tls-client-auth", "1", NULL};
    ck_assert_int_eq(th_spawn(&n, argv3), 0);
    waitpid(n.pid, &st, 0);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    ck_assert(log_contains(&n, "--tls-client-auth 1 needs"));
    n.pid = 0;
}
END_TEST

/* ---- Certificate reload under load ----------------------------------------------*/

#define RL_FIRST_HOST 210
#define RL_ROUTER_HOST "127.0.0.215"
#define RL_ROUNDS 4
#define RL_WORKERS 3 /* two through the router, one straight to the group */
#define RL_RAW 7     /* the router, three meta members, three data nodes */
#define RL_LIVE "live" /* the files every process of this cluster is started with */

static th_cluster_t r_cl;
static th_node_t r_router;
static int r_up, r_ready;
static atomic_int r_stop;

/* Every process of the reload cluster: the router, meta, data. */
static th_node_t *rl_proc(int i)
{
    if (i == 0)
        return &r_router;
    if (i <= 3)
        return &r_cl.meta.nodes[i - 1];
    return &r_cl.groups[0].nodes[i - 4];
}

static int log_count(const th_node_t *n, const char *needle)
{
    FILE *f = fopen(n->log, "r");
    if (f == NULL)
        return 0;
    char line[8192];
    int count = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        count += strstr(line, needle) != NULL;
    fclose(f);
    return count;
}

/* Put name's certificate and key in place of the live files, each by a
 * rename (a process never reads half a file). */
static void swap_live(const char *name)
{
    const char *ext[] = {"crt", "key"};
    for (int i = 0; i < 2; i++) {
        char tmp[800];
        snprintf(tmp, sizeof(tmp), "%s.tmp", P(RL_LIVE, ext[i]));
        copy_file(P(name, ext[i]), tmp);
        ck_assert_int_eq(rename(tmp, P(RL_LIVE, ext[i])), 0);
    }
}

static void reload_up(void)
{
    g_base = th_tmpdir("tlsr");
    ck_assert_ptr_nonnull(g_base);
    snprintf(g_pki, sizeof(g_pki), "%s/pki", g_base);
    ck_assert_int_eq(mkdir(g_pki, 0700), 0);
    ck_assert_int_eq(tc_make_ca(g_pki, "ca", "Shale cluster CA"), 0);
    /* Two certificates for every process, same CA and names, told apart by
     * their CN. */
    const char *sans = "IP:127.0.0.210,IP:127.0.0.211,IP:127.0.0.212,IP:127.0.0.220,"
                       "IP:127.0.0.221,IP:127.0.0.222,IP:127.0.0.215";
    ck_assert_int_eq(tc_make_cert(g_pki, "ca", "cert-a", "shale-a", sans, -1, 30), 0);
    ck_assert_int_eq(tc_make_cert(g_pki, "ca", "cert-b", "shale-b", sans, -1, 30), 0);
    ck_assert_int_eq(tc_make_cert(g_pki, "ca", "client", "app", NULL, -1, 30), 0);
    swap_live("cert-a");
    ck_assert_int_eq(th_tls_client(P("ca", "crt"), P("client", "crt"), P("client", "key")), 0);

    char dir[700];
    snprintf(dir, sizeof(dir), "%s/cluster", g_base);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    const char *const *tf = tls_flags(RL_LIVE);
    r_up = 1;
    if (th_cluster_start_ex(&r_cl, 1, 3, RL_FIRST_HOST, dir, tf, tf) != 0 ||
        th_cluster_init(&r_cl, 64, 30000) != 0) {
        fprintf(stderr, "test_tls_cluster: the reload cluster did not start\n");
        return;
    }
    th_node_init(&r_router, 0, RL_ROUTER_HOST, dir);
    char bin[700];
    snprintf(bin, sizeof(bin), "%s/router/shale-router", th_bin_dir());
    const char *argv[20] = {bin, "--listen", r_router.addr, "--meta", r_cl.meta.addrs};
    int n = 5;
    for (int i = 0; tf[i] != NULL; i++)
        argv[n++] = tf[i];
    argv[n] = NULL;
    ck_assert_int_eq(th_spawn(&r_router, argv), 0);
    long long end = th_now_ms() + 30000;
    while (th_now_ms() < end) {
        Shale__StatusResponse *st = NULL;
        if (th_node_status(&r_router, &st) == 0) {
            int ok = st->has_map_epoch && st->map_epoch >= 1;
            shale__status_response__free_unpacked(st, NULL);
            if (ok) {
                r_ready = 1;
                return;
            }
        }
        usleep(50 * 1000);
    }
    fprintf(stderr, "test_tls_cluster: the reload cluster's router never got the map\n");
}

static void reload_down(void)
{
    if (r_router.pid > 0) {
        int st = th_node_stop(&r_router, SIGTERM);
        if (th_log_sanitizer_errors(&r_router) > 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            th_node_dump_log(&r_router);
            fprintf(stderr, "test_tls_cluster: router exit status %d\n", st);
            abort();
        }
    }
    if (r_up)
        th_cluster_stop(&r_cl);
    th_tls_client(NULL, NULL, NULL);
    if (getenv("SHALE_KEEP_TMP") == NULL)
        th_rmrf(g_base);
    free(g_base);
}

/* A client thread: PUT prefix:i then GET it back, until told to stop. */
typedef struct rl_worker {
    pthread_t th;
    const char *addrs;
    char prefix[8];
    atomic_long ops;    /* requests answered */
    atomic_long errors; /* requests that failed or read the wrong value */
    long written;       /* keys prefix:0 .. written-1 are acknowledged */
    char first_err[SHALE_ERRMSG_LEN + 64];
} rl_worker_t;

static void rl_fail(rl_worker_t *w, const char *what, int rv, const char *msg)
{
    if (atomic_fetch_add(&w->errors, 1) == 0)
        snprintf(w->first_err, sizeof(w->first_err), "%s: %s: %s", what, shale_strerror(rv), msg);
}

static void *rl_work(void *arg)
{
    rl_worker_t *w = arg;
    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = 15000; /* a pause is slow, not lost: a lost request never answers */
    o.tls_ca = P("ca", "crt");
    o.tls_cert = P("client", "crt");
    o.tls_key = P("client", "key");
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];
    int rv = shale_connect(w->addrs, &o, &c, err);
    if (rv != SHALE_OK) {
        rl_fail(w, "connect", rv, err);
        return NULL;
    }
    for (long i = 0; !atomic_load(&r_stop); i++) {
        char k[32], v[48];
        snprintf(k, sizeof(k), "%s:%ld", w->prefix, i);
        snprintf(v, sizeof(v), "value-%s-%ld", w->prefix, i);
        rv = shale_put(c, k, strlen(k), v, strlen(v), NULL);
        atomic_fetch_add(&w->ops, 1);
        if (rv != SHALE_OK) {
            rl_fail(w, k, rv, shale_errmsg(c));
            continue;
        }
        w->written = i + 1;
        shale_value_t val = {0};
        rv = shale_get(c, k, strlen(k), NULL, &val);
        atomic_fetch_add(&w->ops, 1);
        if (rv != SHALE_OK)
            rl_fail(w, k, rv, shale_errmsg(c));
        else if (!val.found || val.len != strlen(v) || memcmp(val.data, v, val.len) != 0)
            rl_fail(w, k, SHALE_OK, "read back another value");
        shale_value_free(&val);
    }
    shale_close(c);
    return NULL;
}

/* An async client on its own loop keeping RL_PIPELINE writes in flight
 * through the router at every moment, reloads included. */
#define RL_PIPELINE 32
#define RL_ASYNC_CAP 1000000

typedef struct rl_async rl_async_t;
typedef struct rl_areq {
    shale_req_t req;
    long idx;
    rl_async_t *a;
} rl_areq_t;

struct rl_async {
    pthread_t th;
    atomic_long ops, errors;
    long next;       /* index of the next key "as:<i>" */
    uint8_t *acked;  /* acked[i]: the write of as:<i> was acknowledged */
    int inflight;
    shale_client_t *c;
    rl_areq_t reqs[RL_PIPELINE];
    char first_err[SHALE_ERRMSG_LEN + 64];
};

static void rl_async_done(shale_req_t *req, int status);

static void rl_async_submit(rl_async_t *a, rl_areq_t *r)
{
    char k[32], v[48];
    r->idx = a->next++;
    r->a = a;
    snprintf(k, sizeof(k), "as:%ld", r->idx);
    snprintf(v, sizeof(v), "value-as-%ld", r->idx);
    memset(&r->req, 0, sizeof(r->req));
    r->req.data = r;
    int rv = shale_put_async(a->c, &r->req, k, strlen(k), v, strlen(v), rl_async_done);
    if (rv != SHALE_OK) {
        if (atomic_fetch_add(&a->errors, 1) == 0)
            snprintf(a->first_err, sizeof(a->first_err), "submit %s: %s", k,
                     shale_strerror(rv));
        return;
    }
    a->inflight++;
}

static void rl_async_done(shale_req_t *req, int status)
{
    rl_areq_t *r = req->data;
    rl_async_t *a = r->a;
    a->inflight--;
    atomic_fetch_add(&a->ops, 1);
    if (status != SHALE_OK) {
        if (atomic_fetch_add(&a->errors, 1) == 0)
            snprintf(a->first_err, sizeof(a->first_err), "as:%ld: %s: %s", r->idx,
                     shale_strerror(status), req->errmsg);
    } else {
        a->acked[r->idx] = 1;
    }
    shale_req_cleanup(req);
    if (!atomic_load(&r_stop) && a->next < RL_ASYNC_CAP)
        rl_async_submit(a, r);
}

static void *rl_async_loop(void *arg)
{
    rl_async_t *a = arg;
    uv_loop_t loop;
    uv_loop_init(&loop);
    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = 15000;
    o.tls_ca = P("ca", "crt");
    o.tls_cert = P("client", "crt");
    o.tls_key = P("client", "key");
    int rv = shale_client_open(&loop, r_router.addr, &o, &a->c);
    if (rv != SHALE_OK) {
        atomic_fetch_add(&a->errors, 1);
        snprintf(a->first_err, sizeof(a->first_err), "open: %s", shale_strerror(rv));
        uv_loop_close(&loop);
        return NULL;
    }
    for (int i = 0; i < RL_PIPELINE; i++)
        rl_async_submit(a, &a->reqs[i]);
    while (a->inflight > 0)
        uv_run(&loop, UV_RUN_ONCE);
    shale_client_close(a->c, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return NULL;
}

/* Connections opened before the first reload, asked for STATUS over and
 * over: a reload that closed one shows up as a failed round trip. */
typedef struct rl_raw {
    pthread_t th;
    int fd[RL_RAW];
    atomic_long rounds;
    atomic_long dropped;
    char first_err[256];
} rl_raw_t;

static int raw_status(int fd, uint64_t id)
{
    Shale__StatusRequest sr = SHALE__STATUS_REQUEST__INIT;
    th_frame_t f;
    if (th_raw_send_msg(fd, SHALE_MSG_STATUS_REQ, id, &sr) != 0 || th_raw_recv(fd, &f) != 0)
        return -1;
    int ok = f.type == SHALE_MSG_STATUS_RESP && f.id == id;
    th_frame_free(&f);
    return ok ? 0 : -1;
}

static void *rl_raw_loop(void *arg)
{
    rl_raw_t *r = arg;
    for (uint64_t id = 1; !atomic_load(&r_stop); id++) {
        for (int i = 0; i < RL_RAW; i++) {
            if (r->fd[i] < 0 || raw_status(r->fd[i], id) == 0)
                continue;
            if (atomic_fetch_add(&r->dropped, 1) == 0)
                snprintf(r->first_err, sizeof(r->first_err),
                         "the connection to %s opened before the reloads stopped answering",
                         rl_proc(i)->addr);
            th_raw_close(r->fd[i]);
            r->fd[i] = -1;
        }
        atomic_fetch_add(&r->rounds, 1);
        usleep(20 * 1000);
    }
    return NULL;
}

static rl_async_t r_async;

/* Raft connections, from the kernel's table of this network namespace
 * (/proc/net/tcp): the ESTABLISHED ones with an end at a node's Raft
 * address, as "LOCAL REMOTE" (hex, as the table writes them). */
#define RL_MAX_CONNS 256
typedef struct rl_conns {
    int n;
    char c[RL_MAX_CONNS][72];
} rl_conns_t;

static void rl_raft_conns(rl_conns_t *out)
{
    char eps[RL_RAW][16];
    for (int i = 1; i < RL_RAW; i++) {
        unsigned a, b, c, d;
        ck_assert_int_eq(sscanf(rl_proc(i)->host, "%u.%u.%u.%u", &a, &b, &c, &d), 4);
        snprintf(eps[i], sizeof(eps[i]), "%02X%02X%02X%02X:%04X", d, c, b, a,
                 (unsigned)rl_proc(i)->raft_port);
    }
    out->n = 0;
    FILE *f = fopen("/proc/net/tcp", "r");
    ck_assert_ptr_nonnull(f);
    char line[512], loc[32], rem[32], st[8];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, " %*d: %31s %31s %7s", loc, rem, st) != 3 || strcmp(st, "01") != 0)
            continue;
        int ours = 0;
        for (int i = 1; i < RL_RAW && !ours; i++)
            ours = strcmp(loc, eps[i]) == 0 || strcmp(rem, eps[i]) == 0;
        if (ours && out->n < RL_MAX_CONNS)
            snprintf(out->c[out->n++], sizeof(out->c[0]), "%s %s", loc, rem);
    }
    fclose(f);
}

static long rl_total_ops(rl_worker_t *w)
{
    long n = atomic_load(&r_async.ops);
    for (int i = 0; i < RL_WORKERS; i++)
        n += atomic_load(&w[i].ops);
    return n;
}

/* MGET keys[0..n) through c: each must hold value-<key with ':' as '-'>. */
static void rl_check_keys(shale_client_t *c, char (*keys)[32], size_t n)
{
    shale_item_t items[256] = {{0}};
    shale_item_result_t res[256];
    ck_assert_uint_le(n, 256);
    for (size_t j = 0; j < n; j++)
        items[j] = (shale_item_t){keys[j], strlen(keys[j]), NULL, 0};
    ck_assert_int_eq(shale_mget(c, items, n, NULL, res), SHALE_OK);
    for (size_t j = 0; j < n; j++) {
        char v[48];
        snprintf(v, sizeof(v), "value-%.30s", keys[j]);
        *strchr(v, ':') = '-';
        ck_assert_msg(res[j].status == SHALE_OK && res[j].found && res[j].len == strlen(v) &&
                          memcmp(res[j].data, v, res[j].len) == 0,
                      "%s is missing or wrong after the reloads", keys[j]);
    }
    shale_item_results_free(res, n);
}

START_TEST(test_reload_under_load_loses_nothing)
{
    ck_assert_msg(r_ready, "the reload cluster did not start (see above)");
    static rl_worker_t w[RL_WORKERS];
    static rl_raw_t raw;
    memset(w, 0, sizeof(w));
    memset(&raw, 0, sizeof(raw));
    for (int i = 0; i < RL_RAW; i++) {
        raw.fd[i] = th_raw_connect_hello(rl_proc(i)->host, rl_proc(i)->port, NULL);
        ck_assert_msg(raw.fd[i] >= 0, "raw TLS connection to %s", rl_proc(i)->addr);
    }
    for (int i = 0; i < RL_WORKERS; i++) {
        w[i].addrs = i < 2 ? r_router.addr : r_cl.groups[0].addrs;
        snprintf(w[i].prefix, sizeof(w[i].prefix), "%s%d", i < 2 ? "rt" : "dn", i);
    }
    atomic_store(&r_stop, 0);
    memset(&r_async, 0, sizeof(r_async));
    r_async.acked = calloc(RL_ASYNC_CAP, 1);
    ck_assert_ptr_nonnull(r_async.acked);
    ck_assert_int_eq(pthread_create(&raw.th, NULL, rl_raw_loop, &raw), 0);
    ck_assert_int_eq(pthread_create(&r_async.th, NULL, rl_async_loop, &r_async), 0);
    for (int i = 0; i < RL_WORKERS; i++)
        ck_assert_int_eq(pthread_create(&w[i].th, NULL, rl_work, &w[i]), 0);
    long long start = th_now_ms();
    while (rl_total_ops(w) < 30 && th_now_ms() < start + 20000)
        usleep(20 * 1000);
    ck_assert_msg(rl_total_ops(w) >= 30, "the load did not get going");
    static rl_conns_t raft_before, raft_after;
    rl_raft_conns(&raft_before);
    /* Both ends of leader -> follower and follower -> leader, both groups. */
    ck_assert_int_ge(raft_before.n, 8);

    for (int round = 1; round <= RL_ROUNDS; round++) {
        const char *cert = round % 2 == 1 ? "cert-b" : "cert-a";
        long ops_before = rl_total_ops(w);
        swap_live(cert);
        for (int i = 0; i < RL_RAW; i++)
            ck_assert_int_eq(kill(rl_proc(i)->pid, SIGHUP), 0);
        for (int i = 0; i < RL_RAW; i++) {
            long long end = th_now_ms() + 10000;
            while (log_count(rl_proc(i), "msg=\"TLS certificates reloaded\"") < round &&
                   th_now_ms() < end)
                usleep(20 * 1000);
            ck_assert_msg(log_count(rl_proc(i), "msg=\"TLS certificates reloaded\"") >= round,
                          "%s did not log reload %d", rl_proc(i)->addr, round);
        }
        /* New connections get the new certificate... */
        char cn[128], want[32];
        snprintf(want, sizeof(want), "shale-%c", cert[5]);
        peer_cn(&r_router, cn, sizeof(cn));
        ck_assert_str_eq(cn, want);
        peer_cn(&r_cl.groups[0].nodes[round % 3], cn, sizeof(cn));
        ck_assert_str_eq(cn, want);
        /* ... while the load carries on through the reload. */
        long long until = th_now_ms() + 10000;
        while (rl_total_ops(w) < ops_before + 20 && th_now_ms() < until)
            usleep(20 * 1000);
        ck_assert_msg(rl_total_ops(w) >= ops_before + 20, "no progress during reload %d", round);
        usleep(500 * 1000);
    }
    usleep(300 * 1000);
    atomic_store(&r_stop, 1);
    for (int i = 0; i < RL_WORKERS; i++)
        pthread_join(w[i].th, NULL);
    pthread_join(r_async.th, NULL);
    pthread_join(raw.th, NULL);

    for (int i = 0; i < RL_WORKERS; i++)
        ck_assert_msg(atomic_load(&w[i].errors) == 0, "worker %s: %ld failed requests, first: %s",
                      w[i].prefix, atomic_load(&w[i].errors), w[i].first_err);
    ck_assert_msg(atomic_load(&r_async.errors) == 0,
                  "async client: %ld failed requests, first: %s", atomic_load(&r_async.errors),
                  r_async.first_err);
    ck_assert_msg(atomic_load(&raw.dropped) == 0, "%ld raw connections dropped, first: %s",
                  atomic_load(&raw.dropped), raw.first_err);
    ck_assert_int_ge(atomic_load(&raw.rounds), 10);
    for (int i = 0; i < RL_RAW; i++)
        th_raw_close(raw.fd[i]);
    /* Connections between the processes stayed up too: every Raft
     * connection of before the reloads is still there (none was re-made),
     * and the router lost no connection to a node. */
    rl_raft_conns(&raft_after);
    for (int i = 0; i < raft_before.n; i++) {
        int found = 0;
        for (int j = 0; j < raft_after.n && !found; j++)
            found = strcmp(raft_before.c[i], raft_after.c[j]) == 0;
        ck_assert_msg(found, "the Raft connection %s (of %d) was closed during the reloads",
                      raft_before.c[i], raft_before.n);
    }
    ck_assert(!log_contains(&r_router, "node connection failed"));
    for (int i = 1; i < RL_RAW; i++)
        ck_assert_msg(!log_contains(rl_proc(i), "raft TLS connection failed"), "%s",
                      rl_proc(i)->addr);

    /* Every acknowledged write is there, read through the router. */
    shale_client_t *c = good_client(r_router.addr);
    static char keys[256][32];
    size_t n = 0;
    long checked = 0;
    for (int i = 0; i < RL_WORKERS; i++)
        for (long k = 0; k < w[i].written; k++) {
            snprintf(keys[n++], 32, "%s:%ld", w[i].prefix, k);
            if (n == 256) {
                rl_check_keys(c, keys, n);
                checked += (long)n;
                n = 0;
            }
        }
    for (long k = 0; k < r_async.next; k++) {
        if (!r_async.acked[k])
            continue;
        snprintf(keys[n++], 32, "as:%ld", k);
        if (n == 256) {
            rl_check_keys(c, keys, n);
            checked += (long)n;
            n = 0;
        }
    }
    if (n > 0)
        rl_check_keys(c, keys, n);
    checked += (long)n;
    free(r_async.acked);
    shale_close(c);
    fprintf(stderr,
            "test_reload_under_load: %d reloads of 7 processes, %ld requests, %ld raw "
            "rounds, %d Raft connection ends kept, %ld writes read back\n",
            RL_ROUNDS, rl_total_ops(w), atomic_load(&raw.rounds), raft_before.n, checked);
}
END_TEST

int main(void)
{
    /* This suite makes its own PKI and flags (several CAs, bad
     * certificates): the harness adds none of its own (harness.h). */
    th_secure_off();
    Suite *s = suite_create("tls_cluster");
    TCase *tc = tcase_create("tls");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, suite_up, suite_down);
    tcase_add_test(tc, test_tls_node_serves);
    tcase_add_test(tc, test_refusals_are_clear);
    tcase_add_test(tc, test_garbage_kills_nothing);
    tcase_add_test(tc, test_sighup_reloads_certificate);
    tcase_add_test(tc, test_snapshot_stream_over_tls);
    tcase_add_test(tc, test_through_tls_router);
    tcase_add_test(tc, test_daemon_flag_errors);
    suite_add_tcase(s, tc);
    TCase *rc = tcase_create("reload");
    tcase_set_timeout(rc, 120);
    tcase_add_unchecked_fixture(rc, reload_up, reload_down);
    tcase_add_test(rc, test_reload_under_load_loses_nothing);
    suite_add_tcase(s, rc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
