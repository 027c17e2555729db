/* Client connections of shale-router: accept, read and reassemble frames,
 * the HELLO gate, per-connection flow control and coalesced output —
 * exactly what a client sees from a node (server/conn.c), so libshale and
 * shale-bench work against a router unchanged.
 *
 * A connection is reference counted: one reference for the open handle and
 * one per request still being forwarded, so an answer that arrives after
 * the client went away finds a live (closed) connection and is dropped.
 *
 * Rules:
 *  - the first frame must be HELLO; a wrong protocol version or another
 *    cluster id is answered with an ERROR and the connection closes after it
 *    is written; an empty cluster id accepts the router's;
 *  - a bad frame header (magic, version, length over --max-frame) loses
 *    framing: one ERROR with request id 0, then close;
 *  - flow control: a connection stops being read while it has
 *    --conn-max-inflight requests in flight or OUT_HIGH_WATER bytes of
 *    answers unsent; the limit holds inside one read too (the decoder pauses
 *    after the frame that reaches it and keeps the rest, decoded from the
 *    end-of-turn prepare once answers drain);
 *  - a peer that half-closes gets every answer before the connection closes;
 *  - with TLS (--tls-cert) every connection gets a session (tls_uv.h) before
 *    anything is read and the decoder only sees plaintext; a failed
 *    handshake is logged and closed (the alert says why to the peer); a
 *    peer whose first bytes are not TLS gets one plain-text ERROR frame
 *    saying the port requires TLS, then the connection closes.
 *
 * A connection accepted on --resp speaks the Redis protocol instead
 * (resp_conn.c): no frames and no HELLO; its bytes go to its rt_resp_t,
 * which hands native requests to rt_fwd_accept through this connection and
 * gets their answers back from rt_cconn_send, so flow control, TLS, output
 * coalescing and the request accounting are the same for both protocols.
 *
 * Never interprets requests: each frame after HELLO goes to rt_fwd_accept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "router.h"
#include "uvwrite.h"
#include "tls_uv.h"

#define READ_BUF 65536
#define OUT_HIGH_WATER (32u << 20) /* stop reading above this much output */

struct rt_cconn {
    rt_q_t link;
    rt_q_t dirty_link;
    rt_q_t resume_link;
    rt_router_t *r;
    uv_tcp_t tcp;
    frame_decoder_t dec;
    int refs;
    int closing;
    int close_after_flush;
    int hello_done;
    int reading;
    int eof;
    uint64_t inflight;
    uv_buf_t *out;
    size_t nout, capout;
    size_t out_bytes; /* queued + being written */
    int tls_on;      /* tls holds a session */
    int plain_reply; /* a plain-text peer: the answer goes out unencrypted */
    tls_uv_t tls;
    int login_pending; /* HELLO credential being checked: read nothing more */
    uint64_t hello_id;
    rt_authn_conn_t an;
    rt_resp_t *resp; /* a --resp connection (resp_conn.c), else NULL */
    int resp_state;  /* RT_RESP_*: what the last rt_resp_drive said */
    uint8_t rbuf[READ_BUF];
    char peer[64];
};

typedef struct wreq {
    uv_write_t w;
    rt_cconn_t *c;
    uv_buf_t *bufs;
    size_t n;
    size_t bytes;
} wreq_t;

static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

const char *rt_cconn_peer(const rt_cconn_t *c)
{
    return c->peer;
}

rt_authn_conn_t *rt_cconn_authn(rt_cconn_t *c)
{
    return &c->an;
}

static void conn_unref(rt_cconn_t *c)
{
    if (--c->refs > 0)
        return;
    if (c->tls_on)
        tls_uv_free(&c->tls);
    frame_decoder_free(&c->dec);
    rt_resp_free(c->resp);
    for (size_t i = 0; i < c->nout; i++)
        free(c->out[i].base);
    free(c->out);
    free(c);
}

static void on_close(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_close(rt_cconn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->an.login != NULL) {
        /* The check runs on: its answer will not come here. */
        login_cancel(c->an.login);
        c->an.login = NULL;
        c->login_pending = 0;
        c->refs--; /* the login's reference; the handle still holds one */
    }
    if (c->resp != NULL)
        rt_resp_cancel_login(c->resp);
    rt_q_remove(&c->link);
    if (rt_q_linked(&c->dirty_link))
        rt_q_remove(&c->dirty_link);
    if (rt_q_linked(&c->resume_link))
        rt_q_remove(&c->resume_link);
    c->r->nconns--;
    rt_debug("client connection closed", " peer=%s", c->peer);
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    rt_cconn_t *c = h->data;
    buf->base = (char *)c->rbuf;
    /* With TLS the plaintext is decrypted into rbuf: leave room for it. */
    buf->len = c->tls_on ? TLS_UV_READ_ROOM(READ_BUF) : READ_BUF;
}

/* May this connection take another request now? */
static int can_take(const rt_cconn_t *c)
{
    return !c->closing && !c->login_pending && c->inflight < c->r->cfg.conn_max_inflight &&
           c->out_bytes < OUT_HIGH_WATER && !c->close_after_flush && !c->r->stopping;
}

/* Input kept back, to run once the connection can take requests again. */
static int backlog(const rt_cconn_t *c)
{
    if (c->resp != NULL)
        return c->resp_state == RT_RESP_PAUSED;
    return frame_decoder_backlog(&c->dec) > 0;
}

/* After EOF (or at shutdown): close once every request is answered and
 * written. */
static void maybe_finish(rt_cconn_t *c)
{
    if ((c->eof || c->r->stopping) && !c->closing && c->inflight == 0 && c->out_bytes == 0 &&
        (c->eof ? !backlog(c) && (c->resp == NULL || c->resp_state == RT_RESP_IDLE) : 1))
        conn_close(c);
}

static void update_reading(rt_cconn_t *c)
{
    if (c->closing)
        return;
    int want = can_take(c) && !c->eof && !(c->resp != NULL && c->resp_state == RT_RESP_WAITING);
    if (backlog(c)) {
        /* Decode what was kept back first, outside any callback chain: the
         * end-of-turn prepare does it. */
        if (can_take(c) && !rt_q_linked(&c->resume_link))
            rt_q_push(&c->r->resumable, &c->resume_link);
        want = 0;
    }
    if (want && !c->reading) {
        c->reading = 1;
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, conn_read_cb);
    } else if (!want && c->reading) {
        c->reading = 0;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

void rt_cconn_request_done(rt_cconn_t *c)
{
    if (c->inflight > 0)
        c->inflight--;
    update_reading(c);
    maybe_finish(c);
    conn_unref(c);
}

static void queue_out(rt_cconn_t *c, uint8_t *frame, size_t len);

void rt_cconn_send(rt_cconn_t *c, uint8_t *frame, size_t len)
{
    if (c->resp != NULL && !c->closing && frame != NULL) {
        rt_resp_answer(c->resp, frame, len); /* a native answer, as Redis replies */
        return;
    }
    queue_out(c, frame, len);
}

void rt_cconn_send_raw(rt_cconn_t *c, char *bytes, size_t len)
{
    queue_out(c, (uint8_t *)bytes, len);
}

int rt_cconn_can_take(const rt_cconn_t *c)
{
    return can_take(c);
}

void rt_cconn_close_after_flush(rt_cconn_t *c)
{
    c->close_after_flush = 1;
    if (c->out_bytes == 0 && c->nout == 0 && !c->closing)
        conn_close(c);
    else
        update_reading(c);
}

void rt_cconn_begin(rt_cconn_t *c)
{
    c->inflight++;
    c->refs++;
}

void rt_cconn_kick(rt_cconn_t *c)
{
    if (c->closing || c->resp == NULL)
        return;
    c->resp_state = RT_RESP_PAUSED;
    if (can_take(c) && !rt_q_linked(&c->resume_link))
        rt_q_push(&c->r->resumable, &c->resume_link);
}

static void queue_out(rt_cconn_t *c, uint8_t *frame, size_t len)
{
    if (c->closing || frame == NULL) {
        free(frame);
        return;
    }
    if (c->nout == c->capout) {
        size_t cap = c->capout ? c->capout * 2 : 16;
        uv_buf_t *nb = realloc(c->out, cap * sizeof(*nb));
        if (nb == NULL) {
            free(frame);
            rt_error("out of memory queueing an answer; closing", " peer=%s", c->peer);
            conn_close(c);
            return;
        }
        c->out = nb;
        c->capout = cap;
    }
    c->out[c->nout++] = uv_buf_init((char *)frame, (unsigned)len);
    c->out_bytes += len;
    if (!rt_q_linked(&c->dirty_link))
        rt_q_push(&c->r->dirty, &c->dirty_link);
}

void rt_cconn_send_error(rt_cconn_t *c, uint64_t id, int code, const char *msg)
{
    size_t len = 0;
    uint8_t *f = wire_error_frame(id, code, msg, NULL, &len);
    rt_cconn_send(c, f, len);
}

static void on_write(uv_write_t *w, int status)
{
    wreq_t *wr = (wreq_t *)w;
    rt_cconn_t *c = wr->c;
    for (size_t i = 0; i < wr->n; i++)
        free(wr->bufs[i].base);
    free(wr->bufs);
    c->out_bytes -= wr->bytes;
    free(wr);
    if (status != 0 && !c->closing) {
        rt_debug("client write failed", " peer=%s err=%s", c->peer, uv_strerror(status));
        conn_close(c);
    } else if (c->close_after_flush && c->nout == 0 && c->out_bytes == 0 && !c->closing) {
        conn_close(c);
    } else {
        update_reading(c);
        maybe_finish(c);
    }
    conn_unref(c);
}

static void conn_flush(rt_cconn_t *c)
{
    if (c->nout == 0 || c->closing)
        return;
    wreq_t *wr = calloc(1, sizeof(*wr));
    if (wr == NULL) {
        conn_close(c);
        return;
    }
    /* The write takes a copy of the buffer list; c->out keeps its
     * capacity for the next turn (no regrowth per turn). */
    wr->bufs = malloc(c->nout * sizeof(*wr->bufs));
    if (wr->bufs == NULL) {
        free(wr);
        conn_close(c);
        return;
    }
    memcpy(wr->bufs, c->out, c->nout * sizeof(*wr->bufs));
    wr->c = c;
    wr->n = c->nout;
    for (size_t i = 0; i < wr->n; i++)
        wr->bytes += wr->bufs[i].len;
    c->nout = 0;
    c->refs++;
    int rv;
    if (c->tls_on && !c->plain_reply)
        rv = tls_uv_write(&c->tls, &wr->w, wr->bufs, (unsigned)wr->n, on_write);
    else
        rv = uvw_write(&wr->w, (uv_stream_t *)&c->tcp, wr->bufs, (unsigned)wr->n, on_write);
    if (rv == 1) {
        on_write(&wr->w, 0); /* written whole now: complete as libuv would */
    } else if (rv != 0) {
        for (size_t i = 0; i < wr->n; i++)
            free(wr->bufs[i].base);
        free(wr->bufs);
        c->out_bytes -= wr->bytes;
        free(wr);
        conn_close(c);
        conn_unref(c); /* the write's reference; the handle still holds one */
    }
}

void rt_cconn_flush_all(rt_router_t *r)
{
    while (!rt_q_empty(&r->dirty)) {
        rt_q_t *n = r->dirty.next;
        rt_q_remove(n);
        conn_flush(rt_q_data(n, rt_cconn_t, dirty_link));
    }
}

/* Protocol violation that loses framing: answer once, then close. */
static void conn_fail(rt_cconn_t *c, int code, const char *msg)
{
    if (c->resp != NULL) {
        char line[300];
        int n = snprintf(line, sizeof(line), "-ERR %s\r\n", msg);
        char *b = malloc((size_t)n);
        if (b != NULL) {
            memcpy(b, line, (size_t)n);
            queue_out(c, (uint8_t *)b, (size_t)n);
        }
        c->close_after_flush = 1;
        update_reading(c);
        return;
    }
    rt_cconn_send_error(c, 0, code, msg);
    c->close_after_flush = 1;
    update_reading(c);
}

static void send_hello_reply(rt_cconn_t *c, uint64_t id)
{
    rt_router_t *r = c->r;
    Shale__HelloReply hr = SHALE__HELLO_REPLY__INIT;
    hr.protocol_version = SHALE_PROTOCOL_VERSION;
    hr.cluster_id = r->cfg.cluster_id;
    hr.has_max_frame = 1;
    hr.max_frame = (uint32_t)r->cfg.max_frame;
    hr.has_max_key = 1;
    hr.max_key = (uint32_t)r->cfg.max_key;
    hr.has_max_value = 1;
    hr.max_value = (uint32_t)r->cfg.max_value;
    rt_authn_hello_fill(r, &c->an, &hr);
    size_t flen;
    uint8_t *f = wire_pack(SHALE_MSG_HELLO_REPLY, id, &hr.base, UINT32_MAX, &flen);
    rt_cconn_send(c, f, flen);
    c->hello_done = 1;
}

/* The HELLO credential was checked (login.h). */
static void on_login(void *arg, int status, const char *user, const char *msg)
{
    rt_cconn_t *c = arg;
    c->an.login = NULL;
    c->login_pending = 0;
    if (status == 0) {
        snprintf(c->an.user, sizeof(c->an.user), "%s", user);
        rt_debug("login", " peer=%s user=%s", c->peer, user);
        send_hello_reply(c, c->hello_id);
    } else {
        rt_warn("login failed", " peer=%s user=%s err=\"%s\"", c->peer, user, msg);
        rt_cconn_send_error(c, c->hello_id, status, msg);
        c->close_after_flush = 1;
    }
    update_reading(c); /* frames pipelined behind HELLO are decoded now */
    conn_unref(c);
}

/* --auth: check HELLO's credential (none: an anonymous connection, whose
 * requests rt_authn_check refuses). 0 when answered now, 1 when pending. */
static int hello_login(rt_cconn_t *c, uint64_t id, const Shale__Hello *h)
{
    rt_router_t *r = c->r;
    if (!h->has_credential) {
        send_hello_reply(c, id);
        return 0;
    }
    char msg[LOGIN_MSGLEN];
    int rv = login_start(&r->authn.login, c->peer, h->credential.data, h->credential.len,
                         r->authn.uwatch.table, on_login, c, &c->an.login, msg);
    if (rv != SHALE_OK) {
        rt_warn("login refused", " peer=%s err=\"%s\"", c->peer, msg);
        rt_cconn_send_error(c, id, rv, msg);
        c->close_after_flush = 1;
        return 0;
    }
    c->hello_id = id;
    c->login_pending = 1;
    c->refs++; /* released by on_login, or by conn_close */
    return 1;
}

static int handle_hello(rt_cconn_t *c, uint64_t id, const uint8_t *p, size_t len)
{
    rt_router_t *r = c->r;
    Shale__Hello *h = (Shale__Hello *)wire_unpack(SHALE_MSG_HELLO, p, len);
    if (h == NULL) {
        rt_cconn_send_error(c, id, SHALE_EPROTO, "malformed HELLO");
        c->close_after_flush = 1;
        return 1;
    }
    int rv = 0;
    if (h->protocol_version != SHALE_PROTOCOL_VERSION) {
        char msg[128];
        snprintf(msg, sizeof(msg), "protocol version %u not supported (the router speaks %u)",
                 h->protocol_version, SHALE_PROTOCOL_VERSION);
        rt_cconn_send_error(c, id, SHALE_EPROTO, msg);
        c->close_after_flush = 1;
        rv = 1;
    } else if (h->cluster_id != NULL && h->cluster_id[0] != '\0' &&
               strcmp(h->cluster_id, r->cfg.cluster_id) != 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "this router serves cluster '%s', not '%.64s'",
                 r->cfg.cluster_id, h->cluster_id);
        rt_cconn_send_error(c, id, SHALE_ECLUSTER, msg);
        c->close_after_flush = 1;
        rv = 1;
    } else if (r->cfg.auth) {
        rv = hello_login(c, id, h) ? FRAME_PAUSE : 0;
    } else {
        send_hello_reply(c, id);
    }
    protobuf_c_message_free_unpacked(&h->base, NULL);
    return rv;
}

static int on_frame(void *ud, const frame_hdr_t *h, const uint8_t *payload)
{
    rt_cconn_t *c = ud;
    if (c->close_after_flush || c->closing)
        return 1;
    if (!c->hello_done) {
        if (h->type != SHALE_MSG_HELLO) {
            rt_cconn_send_error(c, h->id, SHALE_EPROTO, "the first frame must be HELLO");
            c->close_after_flush = 1;
            return 1;
        }
        return handle_hello(c, h->id, payload, h->len);
    }
    c->inflight++;
    c->refs++;
    rt_fwd_accept(c->r, c, h->type, h->id, payload, h->len);
    if (c->close_after_flush)
        return 1;
    return can_take(c) ? 0 : FRAME_PAUSE;
}

static void after_decode(rt_cconn_t *c, int rv)
{
    if (rv < 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "bad frame (%s): closing connection", shale_strerror(rv));
        rt_warn("bad frame from client", " peer=%s err=\"%s\"", c->peer, shale_strerror(rv));
        conn_fail(c, rv == SHALE_ETOOLARGE ? SHALE_ETOOLARGE : SHALE_EPROTO, msg);
        return;
    }
    update_reading(c);
    maybe_finish(c);
}

/* Run the RESP commands parsed so far. */
static void resp_run(rt_cconn_t *c)
{
    c->resp_state = rt_resp_drive(c->resp);
    if (c->closing)
        return;
    update_reading(c);
    maybe_finish(c);
}

/* The *n ciphertext bytes in rbuf become *n plaintext bytes. 0, or -1 when
 * the connection is over (closed, or closing after a plain-text answer). */
static int tls_read(rt_cconn_t *c, size_t *n)
{
    size_t plen = 0;
    int established = 0;
    int rv = tls_uv_feed(&c->tls, c->rbuf, *n, READ_BUF, &plen, &established);
    if (rv == TLS_EPLAINTEXT) {
        rt_warn("plain-text client on a TLS port", " peer=%s", c->peer);
        c->plain_reply = 1;
        conn_fail(c, SHALE_EPROTO,
                  "plain-text client on a TLS port: this port requires TLS (docs/security.md)");
        return -1;
    }
    if (rv != 0) {
        rt_warn("TLS connection failed", " peer=%s err=\"%s\"", c->peer,
                rv < 0 && tls_uv_errmsg(&c->tls)[0] != '\0' ? tls_uv_errmsg(&c->tls)
                                                            : uv_strerror(rv));
        conn_close(c);
        return -1;
    }
    if (established && rt_log_get_level() <= LOG_DEBUG) {
        char how[96], cn[128] = "-";
        tls_sess_peer_cn(c->tls.sess, cn, sizeof(cn));
        rt_debug("TLS established", " peer=%s tls=\"%s\" peer_cn=\"%s\"", c->peer,
                 tls_sess_describe(c->tls.sess, how, sizeof(how)), cn);
    }
    *n = plen;
    return 0;
}

static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf; /* always c->rbuf */
    rt_cconn_t *c = st->data;
    if (nread == UV_EOF) {
        /* Half-close: the peer sends nothing more but may still read. */
        c->eof = 1;
        c->reading = 0;
        uv_read_stop(st);
        maybe_finish(c);
        return;
    }
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    size_t n = (size_t)nread;
    if (c->tls_on && tls_read(c, &n) != 0)
        return;
    if (n > 0 && c->resp != NULL) {
        if (rt_resp_feed(c->resp, c->rbuf, n) != 0) {
            rt_error("out of memory reading a RESP connection; closing", " peer=%s", c->peer);
            conn_close(c);
            return;
        }
        resp_run(c);
    } else if (n > 0) {
        after_decode(c, frame_decoder_feed(&c->dec, c->rbuf, n, on_frame, c));
    }
}

void rt_cconn_resume_all(rt_router_t *r)
{
    while (!rt_q_empty(&r->resumable)) {
        rt_q_t *n = r->resumable.next;
        rt_q_remove(n);
        rt_cconn_t *c = rt_q_data(n, rt_cconn_t, resume_link);
        if (c->closing || !can_take(c))
            continue;
        if (c->resp != NULL)
            resp_run(c);
        else
            after_decode(c, frame_decoder_resume(&c->dec, on_frame, c));
    }
}

static void accept_one(uv_stream_t *server, int status, int resp)
{
    rt_router_t *r = server->data;
    if (status < 0) {
        rt_warn("accept failed", " err=%s", uv_strerror(status));
        return;
    }
    rt_cconn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        rt_error("out of memory accepting a connection", "%s", "");
        return;
    }
    c->r = r;
    c->refs = 1;
    if (resp && (c->resp = rt_resp_new(r, c)) == NULL) {
        rt_error("out of memory accepting a connection", "%s", "");
        free(c);
        return;
    }
    c->hello_done = resp;
    rt_q_init(&c->dirty_link);
    rt_q_init(&c->resume_link);
    frame_decoder_init(&c->dec, (uint32_t)r->cfg.max_frame);
    uv_tcp_init(r->loop, &c->tcp);
    c->tcp.data = c;
    rt_q_push(&r->conns, &c->link);
    r->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || r->stopping) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        char ip[64] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
    }
    if (r->tls_server != NULL) {
        char err[TLS_ERRLEN];
        if (tls_uv_start(&c->tls, r->tls_server, (uv_stream_t *)&c->tcp, NULL, err,
                         sizeof(err)) != 0) {
            rt_warn("cannot start TLS on a connection", " peer=%s err=\"%s\"", c->peer, err);
            conn_close(c);
            return;
        }
        c->tls_on = 1;
    }
    update_reading(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    accept_one(server, status, 0);
}

static void on_resp_connection(uv_stream_t *server, int status)
{
    accept_one(server, status, 1);
}

static int listen_on(rt_router_t *r, uv_tcp_t *t, int *inited, const char *addr, uv_connection_cb cb,
                     char *err, size_t errlen)
{
    /* At start, before serving: a blocking lookup of a host name is
     * acceptable here (addr.h); the address is bound once. */
    struct sockaddr_storage ss;
    if (addr_resolve_blocking(addr, AF_UNSPEC, &ss, err, errlen) != 0)
        return -1;
    uv_tcp_init(r->loop, t);
    t->data = r;
    *inited = 1;
    int rv = uv_tcp_bind(t, (const struct sockaddr *)&ss, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)t, 511, cb);
    if (rv != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, uv_strerror(rv));
        return -1;
    }
    return 0;
}

int rt_cconn_listen(rt_router_t *r, char *err, size_t errlen)
{
    if (listen_on(r, &r->listener, &r->listener_inited, r->cfg.listen, on_connection, err,
                  errlen) != 0)
        return -1;
    if (r->cfg.resp[0] != '\0' && listen_on(r, &r->resp_listener, &r->resp_listener_inited,
                                            r->cfg.resp, on_resp_connection, err, errlen) != 0)
        return -1;
    return 0;
}

void rt_cconn_stop_accepting(rt_router_t *r)
{
    if (r->listener_inited && !uv_is_closing((uv_handle_t *)&r->listener))
        uv_close((uv_handle_t *)&r->listener, NULL);
    if (r->resp_listener_inited && !uv_is_closing((uv_handle_t *)&r->resp_listener))
        uv_close((uv_handle_t *)&r->resp_listener, NULL);
    /* can_take() is false from now on: stop reading everywhere; idle
     * connections close at once. */
    rt_q_t *n = r->conns.next;
    while (n != &r->conns) {
        rt_cconn_t *c = rt_q_data(n, rt_cconn_t, link);
        n = n->next;
        update_reading(c);
        maybe_finish(c);
    }
}

void rt_cconn_close_all(rt_router_t *r)
{
    rt_cconn_flush_all(r);
    rt_q_t *n = r->conns.next;
    while (n != &r->conns) {
        rt_cconn_t *c = rt_q_data(n, rt_cconn_t, link);
        n = n->next;
        if (c->out_bytes == 0)
            conn_close(c);
        else
            c->close_after_flush = 1; /* closes when its last write completes */
    }
}

void rt_cconn_force_close_all(rt_router_t *r)
{
    while (!rt_q_empty(&r->conns))
        conn_close(rt_q_data(r->conns.next, rt_cconn_t, link));
}
