/* The naming rule for node-to-node TLS (server/tls_member.h), on real
 * certificates and two sessions talking through memory.
 *
 * What it proves: a member is named only by a SAN equal to the host of its
 * address — IP SAN for an IP (IPv4 and IPv6, compared as addresses), DNS
 * SAN for a name (case-insensitive); the CN never counts (even "node-1"
 * written as a member's host), wildcards never count, a certificate naming
 * another host is refused with a sentence listing what it names, a peer
 * with no certificate names nothing, and malformed addresses name nothing.
 * tls_member_host splits host:port and [v6]:port. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tls.h"
#include "tls_certs.h"
#include "tls_member.h"

static char *g_dir;

static const char *P(const char *name, const char *ext)
{
    static char bufs[16][600];
    static int next;
    char *b = bufs[next++ % 16];
    return tc_path(b, 600, g_dir, name, ext);
}

static void setup_pki(void)
{
    g_dir = th_tmpdir("tlsm");
    ck_assert_ptr_nonnull(g_dir);
    ck_assert_int_eq(tc_make_ca(g_dir, "ca", "Shale test CA"), 0);
    ck_assert_int_eq(tc_make_cert(g_dir, "ca", "node", "node-1",
                                  "IP:10.0.0.11,IP:fd00::11,DNS:Node-11.shale.internal", -1, 30),
                     0);
    ck_assert_int_eq(tc_make_cert(g_dir, "ca", "cn-only", "10.0.0.12", NULL, -1, 30), 0);
    ck_assert_int_eq(tc_make_cert(g_dir, "ca", "wild", "w", "DNS:*.shale.internal", -1, 30), 0);
}

static void teardown_pki(void)
{
    th_rmrf(g_dir);
    free(g_dir);
}

static void move(tls_sess_t *a, tls_sess_t *b)
{
    uint8_t buf[4096];
    while (tls_sess_pending(a) > 0) {
        size_t n = tls_sess_take(a, buf, sizeof(buf));
        ck_assert_int_eq(tls_sess_feed(b, buf, n), 0);
    }
}

static void drain(tls_sess_t *s)
{
    uint8_t buf[1024];
    long r;
    while ((r = tls_sess_read(s, buf, sizeof(buf))) > 0)
        ;
    ck_assert_int_ge(r, 0);
}

/* A server session that verified a client presenting `cert` (NULL: none). */
static tls_sess_t *server_seeing(const char *cert, tls_ctx_t **sctx, tls_ctx_t **cctx,
                                 tls_sess_t **csess)
{
    char err[TLS_ERRLEN];
    tls_opts_t so = {.ca_file = P("ca", "crt"),
                     .cert_file = P("node", "crt"),
                     .key_file = P("node", "key"),
                     .require_peer_cert = cert != NULL};
    tls_opts_t co = {.ca_file = P("ca", "crt"),
                     .cert_file = cert ? P(cert, "crt") : NULL,
                     .key_file = cert ? P(cert, "key") : NULL};
    ck_assert_int_eq(tls_ctx_new(TLS_SERVER, &so, sctx, err, sizeof(err)), 0);
    ck_assert_int_eq(tls_ctx_new(TLS_CLIENT, &co, cctx, err, sizeof(err)), 0);
    tls_sess_t *s = tls_sess_new(*sctx, NULL, err, sizeof(err));
    *csess = tls_sess_new(*cctx, NULL, err, sizeof(err));
    ck_assert(s != NULL && *csess != NULL);
    for (int i = 0; i < 10 && !(tls_sess_established(s) && tls_sess_established(*csess)); i++) {
        move(*csess, s);
        drain(s);
        move(s, *csess);
        drain(*csess);
    }
    ck_assert(tls_sess_established(s) && tls_sess_established(*csess));
    return s;
}

static void done(tls_sess_t *s, tls_sess_t *c, tls_ctx_t *a, tls_ctx_t *b)
{
    tls_sess_free(s);
    tls_sess_free(c);
    tls_ctx_free(a);
    tls_ctx_free(b);
}

START_TEST(test_host_split)
{
    char h[64];
    ck_assert_int_eq(tls_member_host("10.0.0.1:7101", h, sizeof(h)), 0);
    ck_assert_str_eq(h, "10.0.0.1");
    ck_assert_int_eq(tls_member_host("[fd00::1]:7101", h, sizeof(h)), 0);
    ck_assert_str_eq(h, "fd00::1");
    ck_assert_int_eq(tls_member_host("node-1.example:7101", h, sizeof(h)), 0);
    ck_assert_str_eq(h, "node-1.example");
    ck_assert_int_eq(tls_member_host("nohost", h, sizeof(h)), -1);
    ck_assert_int_eq(tls_member_host(":7101", h, sizeof(h)), -1);
    ck_assert_int_eq(tls_member_host("[fd00::1]7101", h, sizeof(h)), -1);
    ck_assert_int_eq(tls_member_host("10.0.0.1:7101", h, 4), -1);
}
END_TEST

START_TEST(test_san_names_member)
{
    tls_ctx_t *a, *b;
    tls_sess_t *c;
    tls_sess_t *s = server_seeing("node", &a, &b, &c);
    char why[300];
    ck_assert_int_eq(tls_member_named(s, "10.0.0.11:7101", why, sizeof(why)), 1);
    ck_assert_int_eq(tls_member_named(s, "[fd00::11]:7101", why, sizeof(why)), 1);
    ck_assert_int_eq(tls_member_named(s, "[fd00:0::0011]:7101", why, sizeof(why)), 1);
    ck_assert_int_eq(tls_member_named(s, "node-11.SHALE.internal:7101", why, sizeof(why)), 1);
    /* The client sees the server's certificate the same way. */
    ck_assert_int_eq(tls_member_named(c, "10.0.0.11:1", why, sizeof(why)), 1);
    /* Another member. */
    ck_assert_int_eq(tls_member_named(s, "10.0.0.12:7101", why, sizeof(why)), 0);
    ck_assert_msg(strstr(why, "does not name 10.0.0.12") != NULL && strstr(why, "IP:10.0.0.11"),
                  "%s", why);
    /* An IP address is never matched against DNS names and back. */
    ck_assert_int_eq(tls_member_named(s, "node-1:7101", why, sizeof(why)), 0); /* the CN */
    ck_assert_int_eq(tls_member_named(s, "garbage", why, sizeof(why)), 0);
    ck_assert_int_eq(tls_member_named(s, NULL, why, 0), 0);
    done(s, c, a, b);
}
END_TEST

START_TEST(test_cn_and_wildcards_never_count)
{
    tls_ctx_t *a, *b;
    tls_sess_t *c;
    char why[300];
    tls_sess_t *s = server_seeing("cn-only", &a, &b, &c);
    ck_assert_int_eq(tls_member_named(s, "10.0.0.12:7101", why, sizeof(why)), 0);
    done(s, c, a, b);
    s = server_seeing("wild", &a, &b, &c);
    ck_assert_int_eq(tls_member_named(s, "node-11.shale.internal:7101", why, sizeof(why)), 0);
    ck_assert_int_eq(tls_member_named(s, "*.shale.internal:7101", why, sizeof(why)), 1);
    done(s, c, a, b);
}
END_TEST

START_TEST(test_no_certificate_names_nothing)
{
    tls_ctx_t *a, *b;
    tls_sess_t *c;
    char why[300];
    tls_sess_t *s = server_seeing(NULL, &a, &b, &c);
    ck_assert_int_eq(tls_member_named(s, "10.0.0.11:7101", why, sizeof(why)), 0);
    ck_assert_msg(strstr(why, "names nothing") != NULL, "%s", why);
    done(s, c, a, b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tls_member");
    TCase *tc = tcase_create("rule");
    tcase_add_unchecked_fixture(tc, setup_pki, teardown_pki);
    tcase_add_test(tc, test_host_split);
    tcase_add_test(tc, test_san_names_member);
    tcase_add_test(tc, test_cn_and_wildcards_never_count);
    tcase_add_test(tc, test_no_certificate_names_nothing);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_set_fork_status(r, CK_NOFORK);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
