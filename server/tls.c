/* TLS contexts and sessions over OpenSSL memory BIOs. See tls.h.
 *
 * A session owns one SSL object with two memory BIOs: rbio holds the
 * ciphertext fed from the peer until OpenSSL consumes it, wbio collects
 * the ciphertext OpenSSL produced until the caller takes it. Neither ever
 * touches a socket, which is what lets one module serve libuv streams,
 * blocking sockets and in-memory tests alike. */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* TLS record content types (RFC 8446 §5.1) and the major version byte
 * every TLS record header carries. */
#define REC_ALERT 21
#define REC_HANDSHAKE 22
#define REC_MAJOR 3

struct tls_ctx {
    SSL_CTX *ctx; /* current: new sessions take a reference on it */
    tls_role_t role;
    char *ca, *cert, *key; /* copies of the paths (NULL: not given) */
    int require_peer_cert;
    uint64_t generation;
};

struct tls_sess {
    SSL *ssl; /* owns rbio and wbio */
    BIO *rbio, *wbio;
    tls_role_t role;
    int established;
    int got_data;   /* application data was decrypted: errors are no longer the handshake's */
    int err;        /* sticky: the first failure */
    size_t sniffed; /* how many of the first two bytes were checked */
    char name[128]; /* client: the name the server's certificate must carry ("" none) */
    char errmsg[TLS_ERRLEN];
};

/* ---- Messages ------------------------------------------------------------------*/

static void fmt(char *err, size_t errlen, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *err, size_t errlen, const char *f, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(err, errlen, f, ap);
    va_end(ap);
}

/* The reason of the newest OpenSSL error (or fallback), then clear the
 * queue. */
static const char *ossl_reason(unsigned long *code, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    if (code != NULL)
        *code = e;
    ERR_clear_error();
    return r != NULL ? r : fallback;
}

static int sess_fail(tls_sess_t *s, int code, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static int sess_fail(tls_sess_t *s, int code, const char *f, ...)
{
    if (s->err == 0) {
        va_list ap;
        va_start(ap, f);
        vsnprintf(s->errmsg, sizeof(s->errmsg), f, ap);
        va_end(ap);
        s->err = code;
    }
    ERR_clear_error();
    return s->err;
}

/* ---- Contexts ------------------------------------------------------------------*/

static int readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fmt(err, errlen, "cannot read %s '%s': %s", what, path, strerror(errno));
        return TLS_ECONFIG;
    }
    fclose(f);
    return 0;
}

static int build(const tls_ctx_t *t, SSL_CTX **out, char *err, size_t errlen)
{
    *out = NULL;
    if (t->ca != NULL && readable("CA file", t->ca, err, errlen) != 0)
        return TLS_ECONFIG;
    if (t->cert != NULL && readable("certificate file", t->cert, err, errlen) != 0)
        return TLS_ECONFIG;
    if (t->key != NULL && readable("key file", t->key, err, errlen) != 0)
        return TLS_ECONFIG;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(t->role == TLS_SERVER ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL) {
        fmt(err, errlen, "TLS: cannot create a context: %s", ossl_reason(NULL, "out of memory"));
        return TLS_ENOMEM;
    }
    int rv = TLS_ECONFIG;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
    /* Idle connections give their 16 KiB record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (t->role == TLS_SERVER)
        SSL_CTX_set_num_tickets(ctx, 0);
    if (t->ca != NULL && SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1) {
        fmt(err, errlen, "CA file '%s' holds no usable PEM certificate: %s", t->ca,
            ossl_reason(NULL, "unknown error"));
        goto fail;
    }
    if (t->cert != NULL && SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
        fmt(err, errlen, "certificate file '%s' holds no usable PEM certificate: %s", t->cert,
            ossl_reason(NULL, "unknown error"));
        goto fail;
    }
    if (t->key != NULL && SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = 0;
        const char *why = ossl_reason(&e, "unknown error");
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            fmt(err, errlen, "key file '%s' does not match certificate '%s'", t->key, t->cert);
        else
            fmt(err, errlen, "key file '%s' holds no usable PEM private key: %s", t->key, why);
        goto fail;
    }
    if (t->cert != NULL && SSL_CTX_check_private_key(ctx) != 1) {
        fmt(err, errlen, "key file '%s' does not match certificate '%s'", t->key, t->cert);
        ERR_clear_error();
        goto fail;
    }
    if (t->role == TLS_SERVER) {
        if (t->require_peer_cert) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->ca);
            if (names != NULL)
                SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
            ERR_clear_error();
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return rv;
}

static char *dup_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? strdup(s) : NULL;
}

int tls_ctx_new(tls_role_t role, const tls_opts_t *o, tls_ctx_t **out, char *err, size_t errlen)
{
    *out = NULL;
    int have_ca = o->ca_file != NULL && o->ca_file[0] != '\0';
    int have_cert = o->cert_file != NULL && o->cert_file[0] != '\0';
    int have_key = o->key_file != NULL && o->key_file[0] != '\0';
    if (have_cert != have_key) {
        fmt(err, errlen, "TLS: a certificate needs its key and a key its certificate (give both)");
        return TLS_ECONFIG;
    }
    if (role == TLS_SERVER && !have_cert) {
        fmt(err, errlen, "TLS: a server needs a certificate and its key");
        return TLS_ECONFIG;
    }
    if (role == TLS_CLIENT && !have_ca) {
        fmt(err, errlen, "TLS: a client needs the CA file that signed the servers' certificates");
        return TLS_ECONFIG;
    }
    if (role == TLS_SERVER && o->require_peer_cert && !have_ca) {
        fmt(err, errlen, "TLS: requiring client certificates needs the CA file that signs them");
        return TLS_ECONFIG;
    }
    tls_ctx_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        fmt(err, errlen, "out of memory");
        return TLS_ENOMEM;
    }
    t->role = role;
    t->require_peer_cert = role == TLS_SERVER && o->require_peer_cert;
    t->ca = dup_or_null(o->ca_file);
    t->cert = dup_or_null(o->cert_file);
    t->key = dup_or_null(o->key_file);
    if ((have_ca && t->ca == NULL) || (have_cert && (t->cert == NULL || t->key == NULL))) {
        tls_ctx_free(t);
        fmt(err, errlen, "out of memory");
        return TLS_ENOMEM;
    }
    int rv = build(t, &t->ctx, err, errlen);
    if (rv != 0) {
        tls_ctx_free(t);
        return rv;
    }
    t->generation = 1;
    *out = t;
    return 0;
}

int tls_ctx_reload(tls_ctx_t *t, char *err, size_t errlen)
{
    SSL_CTX *fresh = NULL;
    int rv = build(t, &fresh, err, errlen);
    if (rv != 0)
        return rv;
    /* Open sessions hold their own references on the old context. */
    SSL_CTX_free(t->ctx);
    t->ctx = fresh;
    t->generation++;
    return 0;
}

uint64_t tls_ctx_generation(const tls_ctx_t *t)
{
    return t->generation;
}

tls_role_t tls_ctx_role(const tls_ctx_t *t)
{
    return t->role;
}

void tls_ctx_free(tls_ctx_t *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    free(t->ca);
    free(t->cert);
    free(t->key);
    free(t);
}

/* ---- Sessions ------------------------------------------------------------------*/

static int is_ip_literal(const char *name)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

tls_sess_t *tls_sess_new(tls_ctx_t *t, const char *server_name, char *err, size_t errlen)
{
    tls_sess_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        fmt(err, errlen, "out of memory");
        return NULL;
    }
    s->role = t->role;
    ERR_clear_error();
    s->ssl = SSL_new(t->ctx);
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (s->ssl == NULL || s->rbio == NULL || s->wbio == NULL) {
        fmt(err, errlen, "TLS: cannot create a session: %s", ossl_reason(NULL, "out of memory"));
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        SSL_free(s->ssl);
        free(s);
        return NULL;
    }
    /* An empty rbio means "wait for more", never end of stream. */
    BIO_set_mem_eof_return(s->rbio, -1);
    BIO_set_mem_eof_return(s->wbio, -1);
    SSL_set_bio(s->ssl, s->rbio, s->wbio); /* the SSL owns both now */
    if (t->role == TLS_SERVER) {
        SSL_set_accept_state(s->ssl);
        return s;
    }
    SSL_set_connect_state(s->ssl);
    if (server_name != NULL && server_name[0] != '\0') {
        X509_VERIFY_PARAM *p = SSL_get0_param(s->ssl);
        int ok;
        if (is_ip_literal(server_name)) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(p, server_name) == 1;
        } else {
            X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(s->ssl, server_name) == 1 &&
                 SSL_set_tlsext_host_name(s->ssl, server_name) == 1;
        }
        snprintf(s->name, sizeof(s->name), "%s", server_name);
        if (!ok) {
            fmt(err, errlen, "TLS: cannot use server name '%.100s': %s", server_name,
                ossl_reason(NULL, "invalid name"));
            tls_sess_free(s);
            return NULL;
        }
    }
    /* The ClientHello goes into wbio now; the answer is awaited. */
    int rv = SSL_do_handshake(s->ssl);
    int e = SSL_get_error(s->ssl, rv);
    if (rv != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        fmt(err, errlen, "TLS: cannot start the handshake: %s", ossl_reason(NULL, "unknown error"));
        tls_sess_free(s);
        return NULL;
    }
    ERR_clear_error();
    return s;
}

void tls_sess_free(tls_sess_t *s)
{
    if (s == NULL)
        return;
    SSL_free(s->ssl); /* frees both BIOs and drops the SSL_CTX reference */
    free(s);
}

/* The first two bytes the peer sends must look like a TLS record header. */
static int sniff(tls_sess_t *s, const uint8_t *p, size_t n)
{
    for (; s->sniffed < 2 && n > 0; s->sniffed++, p++, n--) {
        int ok = s->sniffed == 1         ? *p == REC_MAJOR
                 : s->role == TLS_SERVER ? *p == REC_HANDSHAKE
                                         : *p == REC_HANDSHAKE || *p == REC_ALERT;
        if (ok)
            continue;
        if (s->role == TLS_SERVER)
            return sess_fail(s, TLS_EPLAINTEXT,
                             "plain-text client on a TLS port (the first bytes are not a TLS "
                             "handshake)");
        return sess_fail(s, TLS_EPLAINTEXT,
                         "the server answered in plain text, not TLS (is TLS on at the server?)");
    }
    return 0;
}

int tls_sess_feed(tls_sess_t *s, const void *data, size_t n)
{
    if (s->err)
        return s->err;
    if (n == 0)
        return 0;
    int rv = sniff(s, data, n);
    if (rv != 0)
        return rv;
    const uint8_t *p = data;
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        int w = BIO_write(s->rbio, p, chunk);
        if (w <= 0)
            return sess_fail(s, TLS_ENOMEM, "TLS: out of memory buffering input");
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* What a verification result means, for the message. */
static void verify_text(const tls_sess_t *s, long v, char *buf, size_t len)
{
    const char *why = X509_verify_cert_error_string(v);
    const char *whose =
        s->role == TLS_SERVER ? "the client's certificate" : "the server's certificate";
    switch (v) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        snprintf(buf, len, "unknown CA: %s is not signed by the configured CA (%s)", whose, why);
        break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        snprintf(buf, len, "%s: %s does not name %.100s", why, whose, s->name);
        break;
    default:
        snprintf(buf, len, "%s; %s", why, whose);
        break;
    }
}

/* An alert's name (OpenSSL 3.0 names none of TLS 1.3's new ones). */
static const char *alert_name(int alert)
{
    switch (alert) {
    case SSL_AD_CERTIFICATE_REQUIRED:
        return "certificate required";
    case SSL_AD_MISSING_EXTENSION:
        return "missing extension";
    case SSL_AD_NO_APPLICATION_PROTOCOL:
        return "no application protocol";
    default:
        return SSL_alert_desc_string_long(alert);
    }
}

/* An OpenSSL failure while reading or in the handshake, as a sentence. */
static int read_fail(tls_sess_t *s, int ssl_err)
{
    const char *phase = s->got_data || (s->established && s->role == TLS_SERVER)
                            ? "TLS error"
                            : "TLS handshake failed";
    int code =
        s->got_data || (s->established && s->role == TLS_SERVER) ? TLS_EPROTO : TLS_EHANDSHAKE;
    const char *peer = s->role == TLS_SERVER ? "client" : "server";
    long v = SSL_get_verify_result(s->ssl);
    if (!s->established && v != X509_V_OK) {
        char why[200];
        verify_text(s, v, why, sizeof(why));
        return sess_fail(s, TLS_EHANDSHAKE, "%s: certificate verify failed (%s)", phase, why);
    }
    unsigned long e = 0;
    const char *reason = ossl_reason(&e, NULL);
    int r = e != 0 ? ERR_GET_REASON(e) : 0;
    if (r >= SSL_AD_REASON_OFFSET && r < SSL_AD_REASON_OFFSET + 256) {
        /* The peer sent an alert: it refused something of ours. */
        int alert = r - SSL_AD_REASON_OFFSET;
        const char *hint =
            alert == SSL_AD_CERTIFICATE_REQUIRED  ? ": this server requires a client certificate"
            : alert == SSL_AD_UNKNOWN_CA          ? ": our certificate is not signed by the CA "
                                                    "the peer trusts"
            : alert == SSL_AD_CERTIFICATE_EXPIRED ? ": our certificate has expired"
                                                  : "";
        return sess_fail(s, code, "%s: the %s refused the connection (alert: %s%s)", phase, peer,
                         alert_name(alert), hint);
    }
    if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL && r == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        return sess_fail(s, TLS_EHANDSHAKE,
                         "%s: the client presented no certificate (this port requires one: "
                         "mutual TLS)",
                         phase);
    if (reason != NULL)
        return sess_fail(s, code, "%s: %s", phase, reason);
    if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_SSL)
        return sess_fail(s, code, "%s: protocol error", phase);
    return sess_fail(s, code, "%s: unexpected state %d", phase, ssl_err);
}

long tls_sess_read(tls_sess_t *s, void *buf, size_t cap)
{
    if (s->err)
        return s->err;
    ERR_clear_error();
    if (!s->established) {
        int rv = SSL_do_handshake(s->ssl);
        if (rv != 1) {
            int e = SSL_get_error(s->ssl, rv);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            return read_fail(s, e);
        }
        s->established = 1;
    }
    if (cap == 0)
        return 0;
    int n = SSL_read(s->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (n > 0) {
        s->got_data = 1;
        return n;
    }
    int e = SSL_get_error(s->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return 0;
    }
    return read_fail(s, e);
}

int tls_sess_write(tls_sess_t *s, const void *data, size_t n)
{
    if (s->err)
        return s->err;
    if (!s->established)
        return TLS_ESTATE;
    ERR_clear_error();
    const uint8_t *p = data;
    while (n > 0) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        int w = SSL_write(s->ssl, p, chunk);
        if (w <= 0)
            return sess_fail(s, TLS_EPROTO, "TLS error while writing: %s",
                             ossl_reason(NULL, "unknown error"));
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

size_t tls_sess_pending(const tls_sess_t *s)
{
    return BIO_ctrl_pending(s->wbio);
}

size_t tls_sess_take(tls_sess_t *s, void *buf, size_t cap)
{
    size_t got = 0;
    uint8_t *p = buf;
    while (got < cap && BIO_ctrl_pending(s->wbio) > 0) {
        size_t want = cap - got;
        int r = BIO_read(s->wbio, p + got, want > INT_MAX ? INT_MAX : (int)want);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

int tls_sess_established(const tls_sess_t *s)
{
    return s->established;
}

const char *tls_sess_errmsg(const tls_sess_t *s)
{
    return s->errmsg;
}

int tls_sess_error(const tls_sess_t *s)
{
    return s->err;
}

const char *tls_sess_describe(const tls_sess_t *s, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    buf[0] = '\0';
    if (s->established)
        snprintf(buf, len, "%s %s", SSL_get_version(s->ssl), SSL_get_cipher_name(s->ssl));
    return buf;
}

/* ---- The peer's certificate ----------------------------------------------------*/

int tls_sess_peer_cn(const tls_sess_t *s, char *buf, size_t len)
{
    X509 *cert = SSL_get0_peer_certificate(s->ssl);
    if (cert == NULL || len == 0)
        return -1;
    X509_NAME *subj = X509_get_subject_name(cert);
    int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (i < 0)
        return -1;
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
    int rv = -1;
    if (n >= 0 && (size_t)n < len && memchr(utf8, '\0', (size_t)n) == NULL) {
        memcpy(buf, utf8, (size_t)n);
        buf[n] = '\0';
        rv = 0;
    }
    OPENSSL_free(utf8);
    ERR_clear_error();
    return rv;
}

int tls_sess_peer_names(const tls_sess_t *s, tls_name_cb cb, void *arg)
{
    X509 *cert = SSL_get0_peer_certificate(s->ssl);
    if (cert == NULL)
        return 0;
    int count = 0, stop = 0;
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans != NULL && !stop && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        char text[256];
        const char *kind = NULL;
        if (g->type == GEN_DNS) {
            const ASN1_STRING *a = g->d.dNSName;
            int n = ASN1_STRING_length(a);
            if (n <= 0 || (size_t)n >= sizeof(text) ||
                memchr(ASN1_STRING_get0_data(a), '\0', (size_t)n) != NULL)
                continue;
            memcpy(text, ASN1_STRING_get0_data(a), (size_t)n);
            text[n] = '\0';
            kind = "DNS";
        } else if (g->type == GEN_IPADD) {
            const ASN1_OCTET_STRING *a = g->d.iPAddress;
            int n = ASN1_STRING_length(a);
            if ((n != 4 && n != 16) ||
                inet_ntop(n == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(a), text,
                          sizeof(text)) == NULL)
                continue;
            kind = "IP";
        } else {
            continue;
        }
        count++;
        stop = cb(arg, kind, text) != 0;
    }
    GENERAL_NAMES_free(sans);
    char cn[256];
    if (!stop && tls_sess_peer_cn(s, cn, sizeof(cn)) == 0) {
        count++;
        cb(arg, "CN", cn);
    }
    ERR_clear_error();
    return count;
}

int tls_sess_peer_has_name(const tls_sess_t *s, const char *name)
{
    X509 *cert = SSL_get0_peer_certificate(s->ssl);
    if (cert == NULL || name == NULL || name[0] == '\0')
        return 0;
    int ok = is_ip_literal(name) ? X509_check_ip_asc(cert, name, 0) == 1
                                 : X509_check_host(cert, name, strlen(name),
                                                   X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
    ERR_clear_error();
    return ok;
}
