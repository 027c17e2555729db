/* TLS for every Shale listener and dialer: OpenSSL 3 driven through memory
 * BIOs, so the same code runs over a libuv stream (tls_uv_*), a blocking
 * socket (tls_fd_*) or two sessions in memory (the unit tests). Why OpenSSL
 * and memory BIOs: docs/security.md.
 *
 * What this module owns:
 *  - tls_ctx_t: one side's configuration (CA, certificate, key, whether
 *    peers must present a certificate) as an OpenSSL SSL_CTX, rebuilt from
 *    the same files by tls_ctx_reload without a restart;
 *  - tls_sess_t: one connection's TLS state: ciphertext in (from the
 *    socket), plaintext out, plaintext in, ciphertext out (to the socket),
 *    the handshake, and a message saying what went wrong;
 *  - the peer certificate's names (CN, SAN DNS names and IP addresses), for
 *    callers that check who the peer is.
 *
 * What it never does: socket I/O in tls.c (tls_uv.c and tls_fd.c do it),
 * logging, exit(), or interpreting the bytes it carries (Shale frames).
 *
 * Rules it follows:
 *  - TLS 1.2 is the minimum and TLS 1.3 is preferred (OpenSSL's default
 *    order); renegotiation, compression and session tickets are off;
 *  - a client always verifies the server's chain against the CA; with a
 *    server name it also checks that the certificate names it (DNS name or
 *    IP address, SAN first, CN as OpenSSL's fallback);
 *  - a server asks for a client certificate only with require_peer_cert,
 *    and then refuses a client without one (mutual TLS);
 *  - the first bytes a session receives must be a TLS record: anything else
 *    is TLS_EPLAINTEXT ("plain-text client on a TLS port", or a server that
 *    answers in plain text), reported before OpenSSL sees them;
 *  - every failure leaves a sentence in tls_sess_errmsg() and clears
 *    OpenSSL's per-thread error queue, so one connection's error never
 *    shows up in another's message; a session that failed stays failed.
 *
 * Lifetimes: a session holds its own reference on the SSL_CTX it was made
 * from (OpenSSL counts references: SSL_new takes one, SSL_free drops it).
 * tls_ctx_reload swaps a new SSL_CTX in for sessions made afterwards; the
 * old one lives until its last session is freed. tls_ctx_free may run
 * while sessions made from the context are still open.
 *
 * Threads: a context and its sessions belong to one thread at a time (the
 * loop thread); different contexts may be used on different threads. */
#ifndef SHALE_TLS_H
#define SHALE_TLS_H

#include <stddef.h>
#include <stdint.h>

#define TLS_ERRLEN 256

/* Codes returned by this module (0 ok). */
enum tls_error {
    TLS_OK = 0,
    TLS_ECONFIG = -1,    /* a file cannot be read, the key does not match, ... */
    TLS_EHANDSHAKE = -2, /* the handshake failed: verification, alert, version */
    TLS_EPLAINTEXT = -3, /* the peer does not speak TLS at all */
    TLS_EPROTO = -4,     /* a bad record after the handshake (garbage, tampering) */
    TLS_ESTATE = -5,     /* a call the session's state does not allow */
    TLS_ENOMEM = -6,
    TLS_EIO = -7, /* tls_fd_*: the socket failed (errno), timed out (EAGAIN) or closed (0) */
};

typedef enum tls_role { TLS_SERVER = 0, TLS_CLIENT = 1 } tls_role_t;

/* Where one side's TLS material lives. Paths are copied by tls_ctx_new. */
typedef struct tls_opts {
    const char *ca_file;   /* PEM: the CA(s) a peer's certificate must chain to */
    const char *cert_file; /* PEM: this side's certificate (chain); a server needs one */
    const char *key_file;  /* PEM: its private key (unencrypted) */
    int require_peer_cert; /* server: clients must present a certificate the CA signed */
} tls_opts_t;

typedef struct tls_ctx tls_ctx_t;
typedef struct tls_sess tls_sess_t;

/* A context for role built from the files in o. A server needs cert_file
 * and key_file (and ca_file when require_peer_cert); a client needs
 * ca_file, and cert_file/key_file to present a certificate. Returns 0 with
 * *out (free with tls_ctx_free), or TLS_ECONFIG/TLS_ENOMEM with a message
 * in err (errlen bytes, may be 0). */
int tls_ctx_new(tls_role_t role, const tls_opts_t *o, tls_ctx_t **out, char *err, size_t errlen);

/* Build a new SSL_CTX from the same files and use it for every session
 * made from now on; open sessions keep theirs. On failure the current one
 * stays in use and err says why. Returns 0 or TLS_ECONFIG/TLS_ENOMEM. */
int tls_ctx_reload(tls_ctx_t *t, char *err, size_t errlen);

/* How many times the context was (re)built: 1 after tls_ctx_new, +1 per
 * successful reload. */
uint64_t tls_ctx_generation(const tls_ctx_t *t);

tls_role_t tls_ctx_role(const tls_ctx_t *t);

/* Free the context. Sessions made from it stay usable. NULL is a no-op. */
void tls_ctx_free(tls_ctx_t *t);

/* A session on t's current SSL_CTX. server_name (client only, may be NULL):
 * the name the server's certificate must carry — an IP address literal is
 * matched against IP SANs, anything else against DNS names and sent as
 * SNI; NULL checks the chain alone. A client session has its ClientHello
 * ready in the output at once. Returns NULL with a message in err when out
 * of memory. Free with tls_sess_free. */
tls_sess_t *tls_sess_new(tls_ctx_t *t, const char *server_name, char *err, size_t errlen);
void tls_sess_free(tls_sess_t *s);

/* Ciphertext received from the peer (copied). 0, or the session's error
 * (TLS_EPLAINTEXT when the first bytes are not a TLS record). */
int tls_sess_feed(tls_sess_t *s, const void *data, size_t n);

/* Advance the handshake and decrypt: up to cap plaintext bytes into buf.
 * Returns the number of bytes (> 0), 0 when what was fed holds no more
 * complete records (feed more; a close_notify from the peer also reads as
 * 0), or a negative TLS_E* (then see tls_sess_errmsg). Call until it
 * returns <= 0 after each feed, and send the output afterwards: the
 * handshake produces output while reading. */
long tls_sess_read(tls_sess_t *s, void *buf, size_t cap);

/* Encrypt n plaintext bytes into the output. Only after the handshake
 * (TLS_ESTATE before). 0 or a negative TLS_E*. */
int tls_sess_write(tls_sess_t *s, const void *data, size_t n);

/* Ciphertext waiting to be sent to the peer. */
size_t tls_sess_pending(const tls_sess_t *s);

/* Move up to cap bytes of waiting ciphertext into buf; returns how many. */
size_t tls_sess_take(tls_sess_t *s, void *buf, size_t cap);

/* 1 once the handshake completed (this side verified the peer as configured
 * and sent its Finished). A server that refuses this client's certificate
 * in TLS 1.3 says so after the client's handshake completed: the refusal
 * arrives as an error from a later tls_sess_read. */
int tls_sess_established(const tls_sess_t *s);

/* The last error's sentence ("" when none). Valid until the session is
 * freed. */
const char *tls_sess_errmsg(const tls_sess_t *s);
/* The last error's code (0 when none). */
int tls_sess_error(const tls_sess_t *s);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" once established, "" before. */
const char *tls_sess_describe(const tls_sess_t *s, char *buf, size_t len);

/* ---- The peer's certificate -------------------------------------------------
 * The hook membership checks build on: what the verified peer certificate
 * names. All return -1 / 0 names when the peer sent no certificate. */

/* The subject's common name into buf. 0, or -1 (no certificate, no CN, or
 * it does not fit). */
int tls_sess_peer_cn(const tls_sess_t *s, char *buf, size_t len);

/* Call cb for each DNS name and IP address (text form) in the subject
 * alternative names, then the CN. Stops early when cb returns non-zero.
 * Returns how many names were passed. */
typedef int (*tls_name_cb)(void *arg, const char *kind, const char *name);
int tls_sess_peer_names(const tls_sess_t *s, tls_name_cb cb, void *arg);

/* 1 when the peer's certificate names `name` (DNS name with OpenSSL's
 * wildcard rules, or IP address literal), else 0. */
int tls_sess_peer_has_name(const tls_sess_t *s, const char *name);

/* ---- Blocking sockets (tls_fd.c) ---------------------------------------------
 * For the few blocking clients (the snapshot fetch, test tools): the same
 * session driven with send/recv on a connected socket whose SO_RCVTIMEO /
 * SO_SNDTIMEO bound each wait. Never closes fd. */

/* Run the handshake to its end. 0, or a negative TLS_E* (tls_fd_strerror). */
int tls_fd_handshake(tls_sess_t *s, int fd);
/* Encrypt and send all n bytes. 0 or a negative TLS_E*. */
int tls_fd_send(tls_sess_t *s, int fd, const void *data, size_t n);
/* Receive up to cap plaintext bytes: > 0, 0 when the peer closed, or a
 * negative TLS_E*. */
long tls_fd_recv(tls_sess_t *s, int fd, void *buf, size_t cap);
/* A sentence for a code a tls_fd_* call returned (errno is read for
 * TLS_EIO, so call it first). Returns buf. */
const char *tls_fd_strerror(const tls_sess_t *s, int code, char *buf, size_t len);

#endif
