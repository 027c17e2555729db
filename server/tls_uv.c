/* A TLS session over a libuv stream. See tls_uv.h. */
#include "tls_uv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Plaintext is gathered into records of this size before encryption, so
 * many small frames cost one record, not one each. */
#define STAGE_BYTES 16384

/* One uv_write of ciphertext; carries the caller's request when the bytes
 * are the caller's. */
typedef struct tls_uv_wr {
    uv_write_t w;
    uv_write_t *user;
    uv_write_cb cb;
    uint8_t data[];
} tls_uv_wr_t;

static void on_written(uv_write_t *w, int status)
{
    tls_uv_wr_t *wr = (tls_uv_wr_t *)w;
    uv_write_t *user = wr->user;
    uv_write_cb cb = wr->cb;
    if (user != NULL)
        user->handle = w->handle;
    free(wr);
    if (cb != NULL)
        cb(user, status);
}

/* Write every ciphertext byte the session has ready. user/cb (may be NULL)
 * complete with this write. */
static int send_pending(tls_uv_t *t, uv_write_t *user, uv_write_cb cb)
{
    size_t n = tls_sess_pending(t->sess);
    if (n == 0 && user == NULL)
        return 0;
    tls_uv_wr_t *wr = malloc(sizeof(*wr) + (n > 0 ? n : 1));
    if (wr == NULL)
        return UV_ENOMEM;
    wr->user = user;
    wr->cb = cb;
    size_t got = tls_sess_take(t->sess, wr->data, n);
    uv_buf_t b = uv_buf_init((char *)wr->data, (unsigned)got);
    int rv = uv_write(&wr->w, t->stream, &b, 1, on_written);
    if (rv != 0)
        free(wr);
    return rv;
}

int tls_uv_start(tls_uv_t *t, tls_ctx_t *ctx, uv_stream_t *stream, const char *server_name,
                 char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    t->stream = stream;
    t->sess = tls_sess_new(ctx, server_name, err, errlen);
    if (t->sess == NULL)
        return TLS_ENOMEM;
    int rv = send_pending(t, NULL, NULL);
    if (rv != 0) {
        snprintf(err, errlen, "TLS: cannot send the handshake: %s", uv_strerror(rv));
        tls_uv_free(t);
        return rv;
    }
    return 0;
}

int tls_uv_feed(tls_uv_t *t, uint8_t *buf, size_t n, size_t cap, size_t *plen, int *established)
{
    *plen = 0;
    *established = 0;
    /* The ciphertext is copied into the session first: buf is free to take
     * the plaintext. */
    int rv = tls_sess_feed(t->sess, buf, n);
    size_t got = 0;
    while (rv == 0 && got < cap) {
        long r = tls_sess_read(t->sess, buf + got, cap - got);
        if (r < 0)
            rv = (int)r;
        else if (r == 0)
            break;
        else
            got += (size_t)r;
    }
    if (!t->announced && tls_sess_established(t->sess)) {
        t->announced = 1;
        *established = 1;
    }
    /* Handshake messages, or the alert that tells the peer why. */
    int wrv = send_pending(t, NULL, NULL);
    if (rv == 0 && got == cap) {
        /* Cannot happen when the caller reads at most TLS_UV_READ_ROOM. */
        rv = TLS_EPROTO;
    }
    *plen = got;
    return rv != 0 ? rv : wrv;
}

int tls_uv_write(tls_uv_t *t, uv_write_t *req, const uv_buf_t bufs[], unsigned nbufs,
                 uv_write_cb cb)
{
    if (t->sess == NULL || !tls_sess_established(t->sess))
        return UV_ENOTCONN;
    uint8_t stage[STAGE_BYTES];
    size_t sn = 0;
    int rv = 0;
    for (unsigned i = 0; i < nbufs && rv == 0; i++) {
        const uint8_t *p = (const uint8_t *)bufs[i].base;
        size_t len = bufs[i].len;
        while (len > 0 && rv == 0) {
            if (sn == 0 && len >= STAGE_BYTES) {
                /* Big enough for whole records of its own. */
                rv = tls_sess_write(t->sess, p, len);
                break;
            }
            size_t take = STAGE_BYTES - sn < len ? STAGE_BYTES - sn : len;
            memcpy(stage + sn, p, take);
            sn += take;
            p += take;
            len -= take;
            if (sn == STAGE_BYTES) {
                rv = tls_sess_write(t->sess, stage, sn);
                sn = 0;
            }
        }
    }
    if (rv == 0 && sn > 0)
        rv = tls_sess_write(t->sess, stage, sn);
    if (rv != 0)
        return rv == TLS_ENOMEM ? UV_ENOMEM : UV_EPROTO;
    return send_pending(t, req, cb);
}

const char *tls_uv_errmsg(const tls_uv_t *t)
{
    return t->sess != NULL ? tls_sess_errmsg(t->sess) : "";
}

void tls_uv_free(tls_uv_t *t)
{
    tls_sess_free(t->sess);
    t->sess = NULL;
}
