/* The TLS module alone (server/tls.h): two sessions talking through memory,
 * and the blocking driver over a socketpair. A throwaway PKI is made in a
 * temp dir at the start (tests/tls_certs.h).
 *
 * What it proves: a handshake completes and data crosses both ways intact,
 * 1 MiB included, whatever the split of the ciphertext; a server certificate
 * from another CA, an expired one, a missing or foreign client certificate
 * where one is required, and a certificate not naming the server asked for
 * are each refused with a sentence that says so; garbage before and after
 * the handshake, and plain Shale frames on a TLS session, are errors (the
 * latter "plain-text client on a TLS port") and never crash; a reload
 * swaps the context for new sessions while open ones keep working; bad
 * files are refused at load with the path in the message. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "tls.h"
#include "tls_certs.h"

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
    g_dir = th_tmpdir("tls");
    ck_assert_ptr_nonnull(g_dir);
    ck_assert_int_eq(tc_make_ca(g_dir, "ca", "Shale test CA"), 0);
    ck_assert_int_eq(tc_make_ca(g_dir, "ca2", "Another CA"), 0);
    ck_assert_int_eq(
        tc_make_cert(g_dir, "ca", "server", "node-1", "IP:127.0.0.1,DNS:node1.shale", -1, 30), 0);
    ck_assert_int_eq(tc_make_cert(g_dir, "ca", "server-b", "node-1b", "IP:127.0.0.1", -1, 30), 0);
    ck_assert_int_eq(tc_make_cert(g_dir, "ca", "client", "app-7", "DNS:app7.clients", -1, 30), 0);
    ck_assert_int_eq(tc_make_cert(g_dir, "ca2", "foreign", "intruder", "IP:127.0.0.1", -1, 30), 0);
    ck_assert_int_eq(tc_make_cert(g_dir, "ca", "expired", "old-node", "IP:127.0.0.1", -30, -1), 0);
}

static void teardown_pki(void)
{
    th_rmrf(g_dir);
    free(g_dir);
}

static tls_ctx_t *server_ctx(const char *cert, int require_client)
{
    tls_opts_t o = {.ca_file = P("ca", "crt"),
                    .cert_file = P(cert, "crt"),
                    .key_file = P(cert, "key"),
                    .require_peer_cert = require_client};
    tls_ctx_t *t = NULL;
    char err[TLS_ERRLEN];
    int rv = tls_ctx_new(TLS_SERVER, &o, &t, err, sizeof(err));
    ck_assert_msg(rv == 0, "server ctx: %s", err);
    return t;
}

static tls_ctx_t *client_ctx(const char *ca, const char *cert)
{
    tls_opts_t o = {.ca_file = P(ca, "crt"),
                    .cert_file = cert ? P(cert, "crt") : NULL,
                    .key_file = cert ? P(cert, "key") : NULL};
    tls_ctx_t *t = NULL;
    char err[TLS_ERRLEN];
    int rv = tls_ctx_new(TLS_CLIENT, &o, &t, err, sizeof(err));
    ck_assert_msg(rv == 0, "client ctx: %s", err);
    return t;
}

/* Move ciphertext from a to b in pieces of `piece` bytes. Returns b's feed
 * result. */
static int move(tls_sess_t *a, tls_sess_t *b, size_t piece)
{
    uint8_t buf[4096];
    if (piece > sizeof(buf))
        piece = sizeof(buf);
    while (tls_sess_pending(a) > 0) {
        size_t n = tls_sess_take(a, buf, piece);
        int rv = tls_sess_feed(b, buf, n);
        if (rv != 0)
            return rv;
    }
    return 0;
}

/* Drain plaintext from s into out (may be NULL: discard). Returns the
 * count, or a negative error. */
static long drain(tls_sess_t *s, uint8_t *out, size_t cap)
{
    long total = 0;
    uint8_t scratch[997]; /* an odd size on purpose */
    for (;;) {
        uint8_t *dst = out != NULL ? out + total : scratch;
        size_t room = out != NULL ? cap - (size_t)total : sizeof(scratch);
        if (room > sizeof(scratch))
            room = sizeof(scratch);
        long r = tls_sess_read(s, dst, room);
        if (r < 0)
            return r;
        if (r == 0)
            return total;
        total += r;
    }
}

/* Run the handshake between c and s. Returns 0 when both are established,
 * else the first error (either side's message in tls_sess_errmsg). */
static int handshake(tls_sess_t *c, tls_sess_t *s)
{
    for (int round = 0; round < 20; round++) {
        int rv = move(c, s, 37);
        if (rv != 0)
            return rv;
        long r = drain(s, NULL, 0);
        if (r < 0) {
            move(s, c, 4096); /* the alert */
            drain(c, NULL, 0);
            return (int)r;
        }
        if ((rv = move(s, c, 1000)) != 0)
            return rv;
        r = drain(c, NULL, 0);
        if (r < 0) {
            move(c, s, 4096);
            drain(s, NULL, 0);
            return (int)r;
        }
        if (tls_sess_established(c) && tls_sess_established(s) && tls_sess_pending(c) == 0 &&
            tls_sess_pending(s) == 0)
            return 0;
    }
    return -999;
}

static tls_sess_t *sess(tls_ctx_t *t, const char *name)
{
    char err[TLS_ERRLEN];
    tls_sess_t *s = tls_sess_new(t, name, err, sizeof(err));
    ck_assert_msg(s != NULL, "session: %s", err);
    return s;
}

/* After a handshake with a TLS 1.3 client certificate check, the client
 * learns of the refusal on its first read: send a byte and read. */
static int client_round_trip(tls_sess_t *c, tls_sess_t *s)
{
    if (tls_sess_write(c, "x", 1) != 0)
        return tls_sess_error(c);
    int rv = move(c, s, 4096);
    if (rv != 0)
        return rv;
    long r = drain(s, NULL, 0);
    move(s, c, 4096);
    long rc = drain(c, NULL, 0);
    if (r < 0)
        return (int)r;
    return rc < 0 ? (int)rc : 0;
}

START_TEST(test_handshake_and_names)
{
    tls_ctx_t *st = server_ctx("server", 1), *ct = client_ctx("ca", "client");
    tls_sess_t *c = sess(ct, "127.0.0.1"), *s = sess(st, NULL);
    ck_assert_msg(handshake(c, s) == 0, "client: %s / server: %s", tls_sess_errmsg(c),
                  tls_sess_errmsg(s));
    char d[128];
    ck_assert_str_eq(tls_sess_describe(c, d, sizeof(d)), tls_sess_describe(s, d + 64, 64));
    ck_assert_msg(strncmp(d, "TLSv1.3", 7) == 0, "version: %s", d);
    char cn[64];
    ck_assert_int_eq(tls_sess_peer_cn(s, cn, sizeof(cn)), 0);
    ck_assert_str_eq(cn, "app-7");
    ck_assert_int_eq(tls_sess_peer_cn(c, cn, sizeof(cn)), 0);
    ck_assert_str_eq(cn, "node-1");
    ck_assert(tls_sess_peer_has_name(c, "127.0.0.1"));
    ck_assert(tls_sess_peer_has_name(c, "node1.shale"));
    ck_assert(!tls_sess_peer_has_name(c, "127.0.0.2"));
    ck_assert(tls_sess_peer_has_name(s, "app7.clients"));
    ck_assert_int_eq(tls_sess_peer_cn(c, cn, 3), -1); /* does not fit */
    tls_sess_free(c);
    tls_sess_free(s);
    tls_ctx_free(st);
    tls_ctx_free(ct);
}
END_TEST

static int collect(void *arg, const char *kind, const char *name)
{
    char *out = arg;
    size_t n = strlen(out);
    snprintf(out + n, 256 - n, "%s%s=%s", n ? "," : "", kind, name);
    return 0;
}

START_TEST(test_peer_names_hook)
{
    tls_ctx_t *st = server_ctx("server", 0), *ct = client_ctx("ca", NULL);
    tls_sess_t *c = sess(ct, NULL), *s = sess(st, NULL);
    ck_assert_int_eq(handshake(c, s), 0);
    char names[256] = "";
    ck_assert_int_eq(tls_sess_peer_names(c, collect, names), 3);
    ck_assert_str_eq(names, "IP=127.0.0.1,DNS=node1.shale,CN=node-1");
    /* The server asked for no client certificate. */
    names[0] = '\0';
    ck_assert_int_eq(tls_sess_peer_names(s, collect, names), 0);
    ck_assert_int_eq(tls_sess_peer_cn(s, names, sizeof(names)), -1);
    tls_sess_free(c);
    tls_sess_free(s);
    tls_ctx_free(st);
    tls_ctx_free(ct);
}
END_TEST

/* 1 MiB each way, plaintext written in odd sizes, ciphertext moved in odd
 * pieces, read back in odd sizes. */
START_TEST(test_large_transfer_odd_chunks)
{
    tls_ctx_t *st = server_ctx("server", 0), *ct = client_ctx("ca", NULL);
    tls_sess_t *c = sess(ct, "node1.shale"), *s = sess(st, NULL);
    ck_assert_int_eq(handshake(c, s), 0);
    size_t total = 1u << 20;
    uint8_t *src = malloc(total), *dst = malloc(total);
    for (size_t i = 0; i < total; i++)
        src[i] = (uint8_t)(i * 131 + (i >> 11));
    static const size_t wsizes[] = {1, 7, 4097, 16384, 16385, 65536, 3, 100000};
    static const size_t pieces[] = {13, 1500, 4096, 1, 999};
    for (int dir = 0; dir < 2; dir++) {
        tls_sess_t *from = dir == 0 ? c : s, *to = dir == 0 ? s : c;
        memset(dst, 0, total);
        size_t sent = 0, got = 0;
        int k = 0;
        while (got < total) {
            if (sent < total) {
                size_t n = wsizes[k % 8];
                if (n > total - sent)
                    n = total - sent;
                ck_assert_int_eq(tls_sess_write(from, src + sent, n), 0);
                sent += n;
            }
            ck_assert_int_eq(move(from, to, pieces[k % 5]), 0);
            long r = drain(to, dst + got, total - got);
            ck_assert_msg(r >= 0, "read: %s", tls_sess_errmsg(to));
            got += (size_t)r;
            k++;
        }
        ck_assert_uint_eq(got, total);
        ck_assert(memcmp(src, dst, total) == 0);
    }
    free(src);
    free(dst);
    tls_sess_free(c);
    tls_sess_free(s);
    tls_ctx_free(st);
    tls_ctx_free(ct);
}
END_TEST

/* What goes on the wire is not the plaintext: a recognisable frame written
 * on either side never appears in the ciphertext taken from it. */
START_TEST(test_wire_holds_no_plaintext)
{
    tls_ctx_t *st = server_ctx("server", 0), *ct = client_ctx("ca", NULL);
    tls_sess_t *c = sess(ct, "node1.shale"), *s = sess(st, NULL);
    ck_assert_int_eq(handshake(c, s), 0);
    static const char secret[] = "PUT user:42 password=hunter2-hunter2-hunter2";
    for (int dir = 0; dir < 2; dir++) {
        tls_sess_t *from = dir == 0 ? c : s, *to = dir == 0 ? s : c;
        for (int i = 0; i < 8; i++)
            ck_assert_int_eq(tls_sess_write(from, secret, sizeof(secret) - 1), 0);
        uint8_t wire[4096];
        size_t n = tls_sess_take(from, wire, sizeof(wire));
        ck_assert_uint_gt(n, 8 * (sizeof(secret) - 1));
        ck_assert_ptr_null(memmem(wire, n, "hunter2", 7));
        ck_assert_ptr_null(memmem(wire, n, "user:42", 7));
        /* ... and it is the plaintext once decrypted. */
        ck_assert_int_eq(tls_sess_feed(to, wire, n), 0);
        uint8_t back[4096];
        long r = drain(to, back, sizeof(back));
        ck_assert_int_eq(r, 8 * (long)(sizeof(secret) - 1));
        ck_assert_ptr_nonnull(memmem(back, (size_t)r, "hunter2", 7));
    }
    tls_sess_free(c);
    tls_sess_free(s);
    tls_ctx_free(st);
    tls_ctx_free(ct);
}
END_TEST

START_TEST(test_wrong_ca_refused)
{
    /* The client trusts ca2; the server's certificate is from ca. */
    tls_ctx_t *st = server_ctx("server", 0), *ct = client_ctx("ca2", NULL);
    tls_sess_t *c = sess(ct, NULL), *s = sess(st, NULL);
    ck_assert_int_eq(handshake(c, s), TLS_EHANDSHAKE);
    ck_assert_int_eq(tls_sess_error(c), TLS_EHANDSHAKE);
    const char *m = tls_sess_errmsg(c);
    ck_assert_msg(strstr(m, "TLS handshake failed: certificate verify failed (unknown CA") != NULL,
                  "%s", m);
    ck_assert_msg(strstr(m, "the server's certificate is not signed by the configured CA") != NULL,
                  "%s", m);
    /* The server heard why (the client's alert). */
    ck_assert_msg(strstr(tls_sess_errmsg(s), "unknown CA") != NULL, "%s", tls_sess_errmsg(s));
    /* Sticky: the session stays failed. */
    uint8_t b[8];
    ck_assert_int_eq(tls_sess_read(c, b, sizeof(b)), TLS_EHANDSHAKE);
    ck_assert_int_eq(tls_sess_write(c, "x", 1), TLS_EHANDSHAKE);
    tls_sess_free(c);
    tls_sess_free(s);
    tls_ctx_free(st);
    tls_ctx_free(ct);
}
END_TEST

START_TEST(test_client_cert_required)
{
    tls_ctx_t *st = server_ctx("server", 1);
    /* No certificate at all. */
    tls_ctx_t *ct = client_ctx("ca", NULL);
    tls_sess_t *c = sess(ct, NULL), *s = sess(st, NULL);
    int rv = handshake(c, s);
    if (rv == 0)
        rv = client_round_trip(c, s);
    ck_assert_int_ne(rv, 0);
    ck_assert_msg(strstr(tls_sess_errmsg(s), "the client presented no certificate") != NULL, "%s",
                  tls_sess_errmsg(s));
    ck_assert_msg(strstr(tls_sess_errmsg(c), "certificate required") != NULL, "%s",
                  tls_sess_errmsg(c));
    tls_sess_free(c);
    tls_sess_free(s);
    tls_ctx_free(ct);
    /* A certificate from another CA. */
    ct = client_ctx("ca", "foreign");
    c = sess(ct, NULL);
    s = sess(st, NULL);
    rv = handshake(c, s);
    if (rv == 0)
        rv = client_round_trip(c, s);
    ck_assert_int_ne(rv, 0);
    ck_assert_msg(strstr(tls_sess_errmsg(s), "certificate verify failed (unknown CA") != NULL, "%s",
                  tls_sess_errmsg(s));
    ck_assert_msg(strstr(tls_sess_errmsg(s), "the client's certificate is not signed") != NULL,
                  "%s", tls_sess_errmsg(s));
    ck_assert_msg(strstr(tls_sess_errmsg(c), "the server refused the connection") != NULL, "%s",
                  tls_sess_errmsg(c));
    tls_sess_free(c);
    tls_sess_free(s);
    tls_ctx_free(ct);
    tls_ctx_free(st);
}
END_TEST

START_TEST(test_expired_refused)
{
    tls_ctx_t *st = server_ctx("expired", 0), *ct = client_ctx("ca", NULL);
    tls_sess_t *c = sess(ct, NULL), *s = sess(st, NULL);
    ck_assert_int_eq(handshake(c, s), TLS_EHANDSHAKE);
    ck_assert_msg(
        strstr(tls_sess_errmsg(c), "certificate verify failed (certificate has expired") != NULL,
        "%s", tls_sess_errmsg(c));
    tls_sess_free(c);
    tls_sess_free(s);
    tls_ctx_free(st);
    /* An expired client certificate, where one is required. */
    st = server_ctx("server", 1);
    tls_ctx_free(ct);
    ct = client_ctx("ca", "expired");
    c = sess(ct, NULL);
    s = sess(st, NULL);
    int rv = handshake(c, s);
    if (rv == 0)
        rv = client_round_trip(c, s);
    ck_assert_int_ne(rv, 0);
    ck_assert_msg(strstr(tls_sess_errmsg(s), "certificate has expired") != NULL, "%s",
                  tls_sess_errmsg(s));
    tls_sess_free(c);
    tls_sess_free(s);
    tls_ctx_free(st);
    tls_ctx_free(ct);
}
END_TEST

START_TEST(test_server_name_checked)
{
    tls_ctx_t *st = server_ctx("server", 0), *ct = client_ctx("ca", NULL);
    static const char *const good[] = {"127.0.0.1", "node1.shale"};
    static const char *const bad[] = {"127.0.0.2", "node2.shale", "shale"};
    for (int i = 0; i < 2; i++) {
        tls_sess_t *c = sess(ct, good[i]), *s = sess(st, NULL);
        ck_assert_msg(handshake(c, s) == 0, "%s: %s", good[i], tls_sess_errmsg(c));
        tls_sess_free(c);
        tls_sess_free(s);
    }
    for (int i = 0; i < 3; i++) {
        tls_sess_t *c = sess(ct, bad[i]), *s = sess(st, NULL);
        ck_assert_int_eq(handshake(c, s), TLS_EHANDSHAKE);
        char want[64];
        snprintf(want, sizeof(want), "the server's certificate does not name %s)", bad[i]);
        ck_assert_msg(strstr(tls_sess_errmsg(c), want) != NULL, "%s: %s", bad[i],
                      tls_sess_errmsg(c));
        tls_sess_free(c);
        tls_sess_free(s);
    }
    tls_ctx_free(st);
    tls_ctx_free(ct);
}
END_TEST

/* Plain Shale bytes (a HELLO frame header) where TLS is expected. */
START_TEST(test_plaintext_client_on_tls_port)
{
    tls_ctx_t *st = server_ctx("server", 0), *ct = client_ctx("ca", NULL);
    static const uint8_t hello[16] = {0, 0, 0, 12, 'S', 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1};
    /* Byte by byte: the check works whatever the split. */
    tls_sess_t *s = sess(st, NULL);
    ck_assert_int_eq(tls_sess_feed(s, hello, 1), TLS_EPLAINTEXT);
    ck_assert_str_eq(tls_sess_errmsg(s),
                     "plain-text client on a TLS port (the first bytes are not a TLS handshake)");
    uint8_t b[64];
    ck_assert_int_eq(tls_sess_read(s, b, sizeof(b)), TLS_EPLAINTEXT);
    tls_sess_free(s);
    /* A TLS client reaching a plain server gets a Shale ERROR frame back. */
    tls_sess_t *c = sess(ct, NULL);
    ck_assert_int_eq(tls_sess_feed(c, hello, sizeof(hello)), TLS_EPLAINTEXT);
    ck_assert_msg(strstr(tls_sess_errmsg(c), "the server answered in plain text") != NULL, "%s",
                  tls_sess_errmsg(c));
    tls_sess_free(c);
    tls_ctx_free(st);
    tls_ctx_free(ct);
}
END_TEST

static void fill_random(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

START_TEST(test_garbage_before_handshake)
{
    tls_ctx_t *st = server_ctx("server", 1), *ct = client_ctx("ca", "client");
    uint8_t junk[5000], b[256];
    for (unsigned seed = 1; seed <= 200; seed++) {
        fill_random(junk, sizeof(junk), seed);
        /* Half the runs look like a TLS record header, to reach OpenSSL. */
        if (seed % 2 == 0) {
            junk[0] = 22;
            junk[1] = 3;
            junk[2] = (uint8_t)(seed % 5);
        }
        size_t n = 1 + seed * 37 % sizeof(junk);
        tls_sess_t *s = sess(st, NULL);
        int rv = tls_sess_feed(s, junk, n);
        long r = rv != 0 ? rv : drain(s, NULL, 0);
        /* Never data; an error, or (a record header promising more) a wait. */
        ck_assert_int_le(r, 0);
        if (r < 0) {
            ck_assert(r == TLS_EPLAINTEXT || r == TLS_EHANDSHAKE);
            ck_assert_str_ne(tls_sess_errmsg(s), "");
        }
        ck_assert(!tls_sess_established(s));
        tls_sess_free(s);
        /* The client side too. */
        tls_sess_t *c = sess(ct, NULL);
        rv = tls_sess_feed(c, junk, n);
        r = rv != 0 ? rv : tls_sess_read(c, b, sizeof(b));
        ck_assert_int_le(r, 0);
        ck_assert(!tls_sess_established(c));
        tls_sess_free(c);
    }
    tls_ctx_free(st);
    tls_ctx_free(ct);
}
END_TEST

START_TEST(test_garbage_after_handshake)
{
    tls_ctx_t *st = server_ctx("server", 0), *ct = client_ctx("ca", NULL);
    uint8_t junk[3000];
    for (unsigned seed = 1; seed <= 50; seed++) {
        tls_sess_t *c = sess(ct, NULL), *s = sess(st, NULL);
        ck_assert_int_eq(handshake(c, s), 0);
        fill_random(junk, sizeof(junk), seed);
        if (seed % 2 == 0) { /* an application-data record header, bogus body */
            junk[0] = 23;
            junk[1] = 3;
            junk[2] = 3;
            junk[3] = 0;
            junk[4] = 200;
        }
        ck_assert_int_eq(tls_sess_feed(s, junk, sizeof(junk)), 0);
        long r = drain(s, NULL, 0);
        ck_assert_msg(r == TLS_EPROTO, "seed %u: %ld %s", seed, r, tls_sess_errmsg(s));
        ck_assert_msg(strncmp(tls_sess_errmsg(s), "TLS error: ", 11) == 0, "%s",
                      tls_sess_errmsg(s));
        ck_assert_int_eq(tls_sess_write(s, "x", 1), TLS_EPROTO);
        tls_sess_free(c);
        tls_sess_free(s);
    }
    /* A flipped bit in a genuine record: refused, never delivered. */
    tls_sess_t *c = sess(ct, NULL), *s = sess(st, NULL);
    ck_assert_int_eq(handshake(c, s), 0);
    ck_assert_int_eq(tls_sess_write(c, "secret payload", 14), 0);
    size_t n = tls_sess_take(c, junk, sizeof(junk));
    junk[n - 3] ^= 1;
    ck_assert_int_eq(tls_sess_feed(s, junk, n), 0);
    ck_assert_int_eq(drain(s, NULL, 0), TLS_EPROTO);
    tls_sess_free(c);
    tls_sess_free(s);
    tls_ctx_free(st);
    tls_ctx_free(ct);
}
END_TEST

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

START_TEST(test_reload_swaps_context)
{
    /* The server's files are "live.*"; they start as server.* */
    copy_file(P("server", "crt"), P("live", "crt"));
    copy_file(P("server", "key"), P("live", "key"));
    tls_ctx_t *st = server_ctx("live", 0), *ct = client_ctx("ca", NULL);
    ck_assert_uint_eq(tls_ctx_generation(st), 1);
    tls_sess_t *c1 = sess(ct, NULL), *s1 = sess(st, NULL);
    ck_assert_int_eq(handshake(c1, s1), 0);
    char cn[64];
    ck_assert_int_eq(tls_sess_peer_cn(c1, cn, sizeof(cn)), 0);
    ck_assert_str_eq(cn, "node-1");

    /* New files, reload. */
    copy_file(P("server-b", "crt"), P("live", "crt"));
    copy_file(P("server-b", "key"), P("live", "key"));
    char err[TLS_ERRLEN];
    ck_assert_msg(tls_ctx_reload(st, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(tls_ctx_generation(st), 2);
    tls_sess_t *c2 = sess(ct, NULL), *s2 = sess(st, NULL);
    ck_assert_int_eq(handshake(c2, s2), 0);
    ck_assert_int_eq(tls_sess_peer_cn(c2, cn, sizeof(cn)), 0);
    ck_assert_str_eq(cn, "node-1b");

    /* The old session keeps working on the old context, even with the
     * context object gone. */
    tls_ctx_free(st);
    uint8_t b[64];
    ck_assert_int_eq(tls_sess_write(s1, "still here", 10), 0);
    ck_assert_int_eq(move(s1, c1, 4096), 0);
    ck_assert_int_eq(drain(c1, b, sizeof(b)), 10);
    ck_assert(memcmp(b, "still here", 10) == 0);
    ck_assert_int_eq(tls_sess_peer_cn(c1, cn, sizeof(cn)), 0);
    ck_assert_str_eq(cn, "node-1");

    /* A reload from a broken file fails and keeps the context in use. */
    st = server_ctx("live", 0);
    FILE *f = fopen(P("live", "crt"), "w");
    fputs("not a certificate\n", f);
    fclose(f);
    ck_assert_int_eq(tls_ctx_reload(st, err, sizeof(err)), TLS_ECONFIG);
    ck_assert_msg(strstr(err, "live.crt") != NULL, "%s", err);
    ck_assert_uint_eq(tls_ctx_generation(st), 1);
    tls_sess_t *c3 = sess(ct, NULL), *s3 = sess(st, NULL);
    ck_assert_int_eq(handshake(c3, s3), 0);
    ck_assert_int_eq(tls_sess_peer_cn(c3, cn, sizeof(cn)), 0);
    ck_assert_str_eq(cn, "node-1b");

    tls_sess_free(c1);
    tls_sess_free(s1);
    tls_sess_free(c2);
    tls_sess_free(s2);
    tls_sess_free(c3);
    tls_sess_free(s3);
    tls_ctx_free(st);
    tls_ctx_free(ct);
}
END_TEST

START_TEST(test_bad_files_refused)
{
    tls_ctx_t *t = NULL;
    char err[TLS_ERRLEN];
    tls_opts_t o = {
        .ca_file = P("ca", "crt"), .cert_file = P("nosuch", "crt"), .key_file = P("server", "key")};
    ck_assert_int_eq(tls_ctx_new(TLS_SERVER, &o, &t, err, sizeof(err)), TLS_ECONFIG);
    ck_assert_msg(strstr(err, "nosuch.crt") && strstr(err, "No such file"), "%s", err);
    o.cert_file = P("server", "crt");
    o.key_file = P("client", "key");
    ck_assert_int_eq(tls_ctx_new(TLS_SERVER, &o, &t, err, sizeof(err)), TLS_ECONFIG);
    ck_assert_msg(strstr(err, "does not match"), "%s", err);
    o.key_file = NULL;
    ck_assert_int_eq(tls_ctx_new(TLS_SERVER, &o, &t, err, sizeof(err)), TLS_ECONFIG);
    ck_assert_msg(strstr(err, "give both"), "%s", err);
    tls_opts_t oc = {.ca_file = NULL};
    ck_assert_int_eq(tls_ctx_new(TLS_CLIENT, &oc, &t, err, sizeof(err)), TLS_ECONFIG);
    ck_assert_msg(strstr(err, "needs the CA file"), "%s", err);
    oc.ca_file = P("server", "key"); /* not a certificate */
    ck_assert_int_eq(tls_ctx_new(TLS_CLIENT, &oc, &t, err, sizeof(err)), TLS_ECONFIG);
    ck_assert_msg(strstr(err, "server.key"), "%s", err);
    ck_assert_ptr_null(t);
}
END_TEST

/* ---- The blocking driver over a socketpair ----------------------------------*/

typedef struct echo_arg {
    tls_ctx_t *ctx;
    int fd;
    int rv;
    char err[TLS_ERRLEN];
} echo_arg_t;

/* Server thread: handshake, then echo everything until the peer closes. */
static void *echo_server(void *p)
{
    echo_arg_t *a = p;
    tls_sess_t *s = tls_sess_new(a->ctx, NULL, a->err, sizeof(a->err));
    a->rv = tls_fd_handshake(s, a->fd);
    uint8_t buf[7000];
    while (a->rv == 0) {
        long r = tls_fd_recv(s, a->fd, buf, sizeof(buf));
        if (r <= 0) {
            a->rv = (int)r;
            break;
        }
        a->rv = tls_fd_send(s, a->fd, buf, (size_t)r);
    }
    if (a->rv != 0)
        tls_fd_strerror(s, a->rv, a->err, sizeof(a->err));
    tls_sess_free(s);
    shutdown(a->fd, SHUT_WR);
    return NULL;
}

START_TEST(test_blocking_socketpair)
{
    tls_ctx_t *st = server_ctx("server", 1), *ct = client_ctx("ca", "client");
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    echo_arg_t a = {.ctx = st, .fd = sv[1]};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, echo_server, &a), 0);
    char err[TLS_ERRLEN];
    tls_sess_t *c = tls_sess_new(ct, "node1.shale", err, sizeof(err));
    int rv = tls_fd_handshake(c, sv[0]);
    ck_assert_msg(rv == 0, "%s", tls_fd_strerror(c, rv, err, sizeof(err)));
    size_t total = 300000;
    uint8_t *src = malloc(total), *dst = malloc(total);
    fill_random(src, total, 7);
    size_t got = 0;
    for (size_t sent = 0; sent < total;) {
        size_t n = total - sent < 12345 ? total - sent : 12345;
        ck_assert_int_eq(tls_fd_send(c, sv[0], src + sent, n), 0);
        sent += n;
        while (got < sent) {
            long r = tls_fd_recv(c, sv[0], dst + got, total - got);
            ck_assert_int_gt(r, 0);
            got += (size_t)r;
        }
    }
    ck_assert(memcmp(src, dst, total) == 0);
    shutdown(sv[0], SHUT_WR);
    pthread_join(th, NULL);
    ck_assert_msg(a.rv == 0, "server: %s", a.err); /* ended by our close: 0 */
    tls_sess_free(c);
    close(sv[0]);
    close(sv[1]);

    /* A client without a certificate: the blocking driver reports it. */
    tls_ctx_t *anon = client_ctx("ca", NULL);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    a.fd = sv[1];
    a.rv = 0;
    ck_assert_int_eq(pthread_create(&th, NULL, echo_server, &a), 0);
    c = tls_sess_new(anon, NULL, err, sizeof(err));
    rv = tls_fd_handshake(c, sv[0]);
    if (rv == 0)
        rv = tls_fd_send(c, sv[0], "x", 1);
    uint8_t b[8];
    long r = rv == 0 ? tls_fd_recv(c, sv[0], b, sizeof(b)) : rv;
    ck_assert_int_lt(r, 0);
    ck_assert_msg(strstr(tls_fd_strerror(c, (int)r, err, sizeof(err)), "certificate required"),
                  "%s", err);
    pthread_join(th, NULL);
    ck_assert_msg(strstr(a.err, "presented no certificate"), "%s", a.err);
    tls_sess_free(c);
    close(sv[0]);
    close(sv[1]);
    free(src);
    free(dst);
    tls_ctx_free(anon);
    tls_ctx_free(st);
    tls_ctx_free(ct);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("tls");
    TCase *tc = tcase_create("tls");
    tcase_add_unchecked_fixture(tc, setup_pki, teardown_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_handshake_and_names);
    tcase_add_test(tc, test_peer_names_hook);
    tcase_add_test(tc, test_large_transfer_odd_chunks);
    tcase_add_test(tc, test_wrong_ca_refused);
    tcase_add_test(tc, test_client_cert_required);
    tcase_add_test(tc, test_expired_refused);
    tcase_add_test(tc, test_server_name_checked);
    tcase_add_test(tc, test_plaintext_client_on_tls_port);
    tcase_add_test(tc, test_wire_holds_no_plaintext);
    tcase_add_test(tc, test_garbage_before_handshake);
    tcase_add_test(tc, test_garbage_after_handshake);
    tcase_add_test(tc, test_reload_swaps_context);
    tcase_add_test(tc, test_bad_files_refused);
    tcase_add_test(tc, test_blocking_socketpair);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
