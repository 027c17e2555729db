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
 * One process, tests in order (CK_NOFORK), sharing one PKI, one standalone
 * node (127.0.0.196) and one cluster: meta 127.0.0.190-192, group 1 on
 * .200, router .197. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
    long long end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
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

/* The CN of the certificate the node presents to a new connection. */
static void node_cn(char *cn, size_t len)
{
    tls_opts_t o = {
        .ca_file = P("ca", "crt"), .cert_file = P("client", "crt"), .key_file = P("client", "key")};
    tls_ctx_t *t = NULL;
    char err[TLS_ERRLEN];
    ck_assert_int_eq(tls_ctx_new(TLS_CLIENT, &o, &t, err, sizeof(err)), 0);
    int fd = plain_socket(&g_node);
    tls_sess_t *s = tls_sess_new(t, NULL, err, sizeof(err));
    ck_assert_int_eq(tls_fd_handshake(s, fd), 0);
    ck_assert_int_eq(tls_sess_peer_cn(s, cn, len), 0);
    tls_sess_free(s);
    close(fd);
    tls_ctx_free(t);
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
    long long end = mono_ms() + 20000;
    for (;;) {
        Shale__StatusResponse *st = NULL;
        if (th_node_status(&g_router, &st) == 0) {
            int ok = st->has_map_epoch && st->map_epoch >= 1;
            shale__status_response__free_unpacked(st, NULL);
            if (ok)
                break;
        }
        if (mono_ms() > end) {
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
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
