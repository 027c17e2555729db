/* A TLS session driven over a libuv stream: what a connection of shaled,
 * shale-router or libshale embeds when its port speaks TLS (tls.h).
 *
 * The connection keeps its own read buffer, frame decoder and write
 * requests; this file only sits between them and the socket:
 *  - tls_uv_feed decrypts in place: the caller's read buffer holds the
 *    ciphertext libuv read and, on return, the plaintext it carried. Read
 *    at most TLS_UV_READ_ROOM(cap) bytes into a buffer of cap bytes (the
 *    alloc callback does that): the rest is room for the tail of a record
 *    an earlier read began, so the plaintext always fits;
 *  - handshake bytes, alerts and encrypted answers are written with
 *    uv_write on the stream, in the order they were produced;
 *  - tls_uv_write is uv_write with encryption: same arguments, the callback
 *    runs once the ciphertext carrying those bytes is written (or fails),
 *    never inside the call; the buffers are copied before it returns.
 *
 * Never reads from the stream itself, never closes it, never logs. The
 * owner frees the tls_uv_t after the stream's handle is closed (writes in
 * flight hold nothing of it). */
#ifndef SHALE_TLS_UV_H
#define SHALE_TLS_UV_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "tls.h"

/* The most a TLS record carries on the wire: 2^14 plaintext + 2048 expansion
 * (TLS 1.2; 1.3 allows 256) + a 5-byte header. */
#define TLS_UV_RECORD_MAX (16384 + 2048 + 5)
/* How many ciphertext bytes to read into a cap-byte buffer. */
#define TLS_UV_READ_ROOM(cap) ((cap)-TLS_UV_RECORD_MAX)

typedef struct tls_uv {
    tls_sess_t *sess;
    uv_stream_t *stream;
    int announced; /* tls_uv_feed reported the handshake's end */
} tls_uv_t;

/* Start TLS on an open stream: a session from ctx (server_name as in
 * tls_sess_new); a client sends its ClientHello now. 0, or a TLS_E* /
 * libuv error with a message in err. On failure nothing needs freeing. */
int tls_uv_start(tls_uv_t *t, tls_ctx_t *ctx, uv_stream_t *stream, const char *server_name,
                 char *err, size_t errlen);

/* n ciphertext bytes read into buf (cap bytes): decrypt them in place.
 * *plen gets the plaintext length (0 is common during the handshake);
 * *established is set to 1 by the call during which the handshake ended
 * (0 otherwise). Whatever the session has to send is written first.
 * Returns 0, or a negative TLS_E* / libuv code: the connection is over
 * (tls_uv_errmsg says why; an alert to the peer was already written). */
int tls_uv_feed(tls_uv_t *t, uint8_t *buf, size_t n, size_t cap, size_t *plen, int *established);

/* uv_write through TLS (after the handshake). Returns 0, or an error and
 * the callback will not run (as uv_write). */
int tls_uv_write(tls_uv_t *t, uv_write_t *req, const uv_buf_t bufs[], unsigned nbufs,
                 uv_write_cb cb);

/* Why the connection failed ("" when it did not). */
const char *tls_uv_errmsg(const tls_uv_t *t);

/* Free the session (after the stream's handle is closed). Idempotent. */
void tls_uv_free(tls_uv_t *t);

#endif
