/* Mutual TLS on the Raft port (server/raft_tls.c) with real shaled
 * processes, and the certificate naming rule (server/tls_member.h) on the
 * Raft port and the snapshot stream.
 *
 * What it proves:
 *  - a 3-node TLS group replicates, fails over (leader SIGKILLed) and takes
 *    the old leader back, all over TLS Raft connections;
 *  - a member restarted with a cluster-CA certificate that names another
 *    host, or with a certificate from another CA, gets nothing: the group
 *    refuses it (log says why) and keeps committing without it; restarted
 *    with its own certificate it catches up (so the refusal was the
 *    certificate's doing);
 *  - on a TLS Raft port, a plain raft_uv handshake followed by a malformed
 *    message (the bytes that crash libraft 0.15), random bytes, a TLS
 *    client without a certificate, a cluster-CA certificate naming a
 *    non-member (then garbage), and a member's certificate from the wrong
 *    source IP are all refused before libraft sees a byte: every process
 *    stays up and the group keeps serving;
 *  - the snapshot stream (client port, --tls-client-auth 1) serves a
 *    fetcher whose certificate names a member and refuses one that names
 *    none.
 *
 * One process, tests in order (CK_NOFORK), one PKI and one group on
 * 127.0.0.170-172. */
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
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "shale.h"
#include "shale_errors.h"
#include "snapshot_xfer.h"
#include "tls.h"
#include "tls_certs.h"

#define FIRST_HOST 170

static char *g_base;
static char g_pki[600];
static th_group_t g_grp;
static const char *g_cert_of[3] = {"node-1", "node-2", "node-3"};

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

/* Start node i with TLS from certificate `cert` (and CA `ca`). */
static void start_node(int i, const char *ca, const char *cert)
{
    static char f[3][3][700];
    snprintf(f[i][0], 700, "%s", P(ca, "crt"));
    snprintf(f[i][1], 700, "%s", P(cert, "crt"));
    snprintf(f[i][2], 700, "%s", P(cert, "key"));
    const char *extra[] = {"--tls-ca",  f[i][0], "--tls-cert",        f[i][1],
                           "--tls-key", f[i][2], "--tls-client-auth", "1",
                           NULL};
    ck_assert_int_eq(th_group_start_node(&g_grp, i, extra), 0);
}

static int leader_index(void)
{
    int l = th_group_wait_leader(&g_grp, 20000);
    ck_assert_msg(l >= 0, "no leader over TLS Raft");
    return l;
}

/* n writes through the leader; returns the leader's applied index after. */
static uint64_t write_some(const char *prefix, int n)
{
    int l = leader_index();
    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = 10000;
    o.tls_ca = P("ca", "crt");
    o.tls_cert = P("client", "crt");
    o.tls_key = P("client", "key");
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];
    int rv = shale_connect(g_grp.nodes[l].addr, &o, &c, err);
    ck_assert_msg(rv == SHALE_OK, "connect: %s", err);
    for (int i = 0; i < n; i++) {
        char k[64];
        snprintf(k, sizeof(k), "%s-%d", prefix, i);
        rv = shale_put(c, k, strlen(k), "v", 1, NULL);
        ck_assert_msg(rv == SHALE_OK, "put %s: %s (%s)", k, shale_strerror(rv), shale_errmsg(c));
    }
    shale_close(c);
    return th_node_applied(&g_grp.nodes[l]);
}

static void all_alive(void)
{
    for (int i = 0; i < g_grp.n; i++) {
        int st;
        ck_assert_msg(g_grp.nodes[i].pid > 0 && waitpid(g_grp.nodes[i].pid, &st, WNOHANG) == 0,
                      "node %d died", i + 1);
    }
}

static void suite_up(void)
{
    g_base = th_tmpdir("rtls");
    ck_assert_ptr_nonnull(g_base);
    snprintf(g_pki, sizeof(g_pki), "%s/pki", g_base);
    ck_assert_int_eq(mkdir(g_pki, 0700), 0);
    ck_assert_int_eq(tc_make_ca(g_pki, "ca", "Shale cluster CA"), 0);
    ck_assert_int_eq(tc_make_ca(g_pki, "ca2", "Another CA"), 0);
    for (int i = 0; i < 3; i++) {
        char sans[128], cn[32];
        snprintf(sans, sizeof(sans), "IP:127.0.0.%d,DNS:node-%d", FIRST_HOST + i, i + 1);
        snprintf(cn, sizeof(cn), "node-%d", i + 1);
        ck_assert_int_eq(tc_make_cert(g_pki, "ca", g_cert_of[i], cn, sans, -1, 30), 0);
    }
    /* Signed by the cluster CA, CN claims a member, SAN names another host. */
    ck_assert_int_eq(
        tc_make_cert(g_pki, "ca", "outsider", "node-3", "IP:127.0.0.99,DNS:outsider", -1, 30), 0);
    /* Names member 3 but from another CA. */
    ck_assert_int_eq(tc_make_cert(g_pki, "ca2", "foreign", "node-3", "IP:127.0.0.172", -1, 30), 0);
    ck_assert_int_eq(tc_make_cert(g_pki, "ca", "client", "app", NULL, -1, 30), 0);
    ck_assert_int_eq(th_tls_client(P("ca", "crt"), P("client", "crt"), P("client", "key")), 0);

    th_group_init(&g_grp, 3, FIRST_HOST, g_base);
    for (int i = 0; i < 3; i++)
        start_node(i, "ca", g_cert_of[i]);
    if (th_group_wait_leader(&g_grp, 20000) < 0) {
        for (int i = 0; i < 3; i++)
            th_node_dump_log(&g_grp.nodes[i]);
        ck_abort_msg("the TLS group elected no leader");
    }
}

static void suite_down(void)
{
    int bad = 0;
    for (int i = 0; i < g_grp.n; i++) {
        th_node_t *n = &g_grp.nodes[i];
        if (n->pid <= 0)
            continue;
        int st = th_node_stop(n, SIGTERM);
        if (th_log_sanitizer_errors(n) > 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            th_node_dump_log(n);
            fprintf(stderr, "test_raft_tls: node %d exit status %d\n", i + 1, st);
            bad = 1;
        }
    }
    th_tls_client(NULL, NULL, NULL);
    if (bad)
        abort();
    th_rmrf(g_base);
    free(g_base);
}

START_TEST(test_replicates_and_fails_over)
{
    uint64_t applied = write_some("a", 50);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(th_node_wait_applied(&g_grp.nodes[i], applied, 20000) == 0,
                      "node %d did not replicate over TLS", i + 1);
    /* The Raft port speaks TLS: the followers' connections were TLS ones. */
    int l = leader_index();
    th_node_t *old = &g_grp.nodes[l];
    ck_assert_int_ne(th_node_stop(old, SIGKILL), -1);
    long long t0 = th_now_ms();
    int nl = leader_index();
    ck_assert_int_ne(nl, l);
    fprintf(stderr, "test_raft_tls: failover over TLS Raft took %lld ms\n", th_now_ms() - t0);
    applied = write_some("b", 50);
    start_node(l, "ca", g_cert_of[l]);
    ck_assert_msg(th_node_wait_applied(old, applied, 20000) == 0,
                  "the old leader did not catch up over TLS");
    for (int i = 0; i < 3; i++)
        ck_assert(!log_contains(&g_grp.nodes[i], "raft connection refused"));
}
END_TEST

/* Restart follower f with the given certificate; the group keeps
 * committing without it, and the leader logs `needle`. */
static void impostor(const char *ca, const char *cert, const char *needle, int check_applied)
{
    int l = leader_index();
    int f = (l + 1) % 3;
    th_node_t *fn = &g_grp.nodes[f];
    ck_assert_int_ne(th_node_stop(fn, SIGTERM), -1);
    uint64_t before = write_some("c", 5);
    start_node(f, ca, cert);
    uint64_t applied = write_some("d", 30);
    int lnow = leader_index();
    if (wait_log(&g_grp.nodes[lnow], needle, 15000) != 0) {
        th_node_dump_log(&g_grp.nodes[lnow]);
        th_node_dump_log(fn);
        ck_abort_msg("the leader did not log \"%s\"", needle);
    }
    ck_assert_msg(fn->pid > 0 && kill(fn->pid, 0) == 0, "the impostor process exited");
    if (check_applied) /* its client port still answers the harness */
        ck_assert_msg(th_node_applied(fn) < applied, "node %d got entries with cert %s (%llu/%llu)",
                      f + 1, cert, (unsigned long long)th_node_applied(fn),
                      (unsigned long long)applied);
    (void)before;
    /* Back with its own certificate: it catches up. */
    ck_assert_int_ne(th_node_stop(fn, SIGTERM), -1);
    start_node(f, "ca", g_cert_of[f]);
    ck_assert_msg(th_node_wait_applied(fn, applied, 20000) == 0,
                  "node %d did not catch up with its own certificate", f + 1);
}

START_TEST(test_non_member_certificate_refused)
{
    impostor("ca", "outsider", "certificate names no member", 1);
}
END_TEST

START_TEST(test_foreign_ca_refused)
{
    impostor("ca", "foreign", "raft TLS connection failed", 0);
}
END_TEST

/* ---- Strangers on the Raft port ---------------------------------------------------*/

/* A TCP connection from src_ip to the node's Raft port. */
static int raw_raft(const th_node_t *n, const char *src_ip)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (src_ip != NULL) {
        inet_pton(AF_INET, src_ip, &sa.sin_addr);
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    sa.sin_port = htons((uint16_t)n->raft_port);
    inet_pton(AF_INET, n->host, &sa.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* raft_uv_tcp's handshake claiming member m, then a message whose header
 * length is absurd (what libraft 0.15 trusts). Returns the length. */
static size_t forged_raft_bytes(const th_node_t *m, uint8_t *buf)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "%s:%d", m->host, m->raft_port);
    size_t alen = strlen(addr) + 1, padded = (alen + 7) & ~(size_t)7;
    memset(buf, 0, 24 + padded + 64);
    put_le64(buf, 1);
    put_le64(buf + 8, m->id);
    put_le64(buf + 16, padded);
    memcpy(buf + 24, addr, alen - 1);
    uint8_t *msg = buf + 24 + padded;
    put_le64(msg, 1);                     /* RAFT_IO_APPEND_ENTRIES */
    put_le64(msg + 8, 0xffffffffffffull); /* header length */
    memset(msg + 16, 0xa5, 48);
    return 24 + padded + 64;
}

/* Read until the server closes (or 5 s). */
static void drain_until_closed(int fd)
{
    char b[4096];
    while (recv(fd, b, sizeof(b), 0) > 0)
        ;
}

/* A TLS session to n's Raft port from src_ip with certificate cert (NULL:
 * none); returns the handshake result. */
static int tls_raft(const th_node_t *n, const char *src_ip, const char *cert, int *fd_out,
                    tls_ctx_t **ctx_out, tls_sess_t **sess_out)
{
    char err[TLS_ERRLEN];
    tls_opts_t o = {.ca_file = P("ca", "crt"),
                    .cert_file = cert ? P(cert, "crt") : NULL,
                    .key_file = cert ? P(cert, "key") : NULL};
    ck_assert_int_eq(tls_ctx_new(TLS_CLIENT, &o, ctx_out, err, sizeof(err)), 0);
    *sess_out = tls_sess_new(*ctx_out, NULL, err, sizeof(err));
    ck_assert_ptr_nonnull(*sess_out);
    *fd_out = raw_raft(n, src_ip);
    return tls_fd_handshake(*sess_out, *fd_out);
}

START_TEST(test_strangers_on_raft_port)
{
    int l = leader_index();
    int f = (l + 1) % 3, other = (l + 2) % 3;
    const th_node_t *targets[2] = {&g_grp.nodes[l], &g_grp.nodes[f]};
    const th_node_t *claim = &g_grp.nodes[other]; /* the member the strangers pretend to be */
    uint8_t forged[300];
    size_t flen = forged_raft_bytes(claim, forged);
    for (int t = 0; t < 2; t++) {
        const th_node_t *n = targets[t];
        /* 1. Plain raft_uv handshake + malformed message, from the member's IP. */
        int fd = raw_raft(n, claim->host);
        ck_assert_int_eq(th_raw_send(fd, forged, flen), 0);
        drain_until_closed(fd);
        close(fd);
        /* 2. Random bytes. */
        uint8_t junk[4096];
        for (size_t i = 0; i < sizeof(junk); i++)
            junk[i] = (uint8_t)(i * 131 + 7);
        fd = raw_raft(n, claim->host);
        (void)th_raw_send(fd, junk, sizeof(junk));
        drain_until_closed(fd);
        close(fd);
        /* 3. TLS without a client certificate. */
        tls_ctx_t *ctx;
        tls_sess_t *s;
        (void)tls_raft(n, claim->host, NULL, &fd, &ctx, &s);
        if (tls_sess_established(s))
            (void)tls_fd_send(s, fd, forged, flen);
        drain_until_closed(fd);
        close(fd);
        tls_sess_free(s);
        tls_ctx_free(ctx);
        /* 4. Cluster-CA certificate naming a non-member, then the forged
         *    handshake and garbage inside TLS. */
        ck_assert_int_eq(tls_raft(n, claim->host, "outsider", &fd, &ctx, &s), 0);
        (void)tls_fd_send(s, fd, forged, flen);
        drain_until_closed(fd);
        close(fd);
        tls_sess_free(s);
        tls_ctx_free(ctx);
        /* 5. The claimed member's own certificate, from the wrong IP. */
        char cert[16];
        snprintf(cert, sizeof(cert), "node-%llu", (unsigned long long)claim->id);
        ck_assert_int_eq(tls_raft(n, "127.0.0.1", cert, &fd, &ctx, &s), 0);
        (void)tls_fd_send(s, fd, forged, flen);
        drain_until_closed(fd);
        close(fd);
        tls_sess_free(s);
        tls_ctx_free(ctx);

        ck_assert_int_eq(wait_log(n, "plain-text", 5000), 0);
        ck_assert_int_eq(wait_log(n, "presented no certificate", 5000), 0);
        ck_assert_int_eq(wait_log(n, "certificate names no member", 5000), 0);
        ck_assert_int_eq(wait_log(n, "must connect from its own address", 5000), 0);
    }
    all_alive();
    uint64_t applied = write_some("e", 20);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(th_node_wait_applied(&g_grp.nodes[i], applied, 20000), 0);
    all_alive();
}
END_TEST

/* ---- The snapshot stream ----------------------------------------------------------*/

static int fetch_with(const char *cert, char *err, size_t errlen)
{
    char dest[700];
    snprintf(dest, sizeof(dest), "%s/snap-%s", g_base, cert);
    tls_opts_t to = {
        .ca_file = P("ca", "crt"), .cert_file = P(cert, "crt"), .key_file = P(cert, "key")};
    tls_ctx_t *t = NULL;
    ck_assert_int_eq(tls_ctx_new(TLS_CLIENT, &to, &t, err, errlen), 0);
    snapx_fetch_opts_t o = {.tls = t};
    uint64_t applied = 0;
    int l = leader_index();
    int rv = snapx_fetch_ex(g_grp.nodes[l].addr, NULL, 1, dest, &o, &applied, NULL, err, errlen);
    tls_ctx_free(t);
    th_rmrf(dest);
    return rv;
}

START_TEST(test_snapshot_stream_names_member)
{
    char err[1024];
    int rv = fetch_with("node-2", err, sizeof(err));
    ck_assert_msg(rv == 0, "a member's fetch: %s", err);
    rv = fetch_with("outsider", err, sizeof(err));
    ck_assert_int_eq(rv, SHALE_ECLUSTER);
    ck_assert_msg(strstr(err, "names no member") != NULL, "%s", err);
    all_alive();
}
END_TEST

int main(void)
{
    /* This suite makes its own PKI and flags (several CAs, bad
     * certificates): the harness adds none of its own (harness.h). */
    th_secure_off();
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("raft_tls");
    TCase *tc = tcase_create("group");
    tcase_add_unchecked_fixture(tc, suite_up, suite_down);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_replicates_and_fails_over);
    tcase_add_test(tc, test_non_member_certificate_refused);
    tcase_add_test(tc, test_foreign_ca_refused);
    tcase_add_test(tc, test_strangers_on_raft_port);
    tcase_add_test(tc, test_snapshot_stream_names_member);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_set_fork_status(r, CK_NOFORK);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
