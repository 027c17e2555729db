/* Client connections of shaled: accept, read + reassemble frames, HELLO
 * gate, per-connection flow control and coalesced output.
 *
 * A connection is reference counted: one reference for the open handle and
 * one per request still being worked on, so an answer computed after the
 * peer went away finds a live (closed) connection and is dropped. Output
 * produced during a loop turn is written with one uv_write per connection
 * at the end of the turn (the uv_check in shaled.c), which is what makes
 * pipelined answers cheap.
 *
 * Flow control: a connection stops being read while it has
 * conn_max_inflight requests in flight or OUT_HIGH_WATER bytes of answers
 * unsent. The limit holds inside one read too: the decoder pauses after the
 * frame that reaches it and keeps the rest, which is decoded (from the
 * loop's check phase) once answers drain. A peer that half-closes (EOF) gets
 * every answer before the connection closes. This file never interprets
 * requests: it hands each frame to dispatch_frame().
 *
 * TLS (--tls-cert, docs/security.md): every accepted connection gets a
 * session (tls_uv.h) before anything is read; the frame decoder only ever
 * sees plaintext, and answers are encrypted when written. A peer that fails
 * the handshake is logged and closed (the alert tells it why); a peer
 * whose first bytes are not TLS at all gets one plain-text ERROR frame
 * saying the port requires TLS, then the connection closes. */
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "addr.h"
#include "log.h"
#include "server.h"
#include "uvwrite.h"
#include "tls_uv.h"
#include "wire.h"

#define READ_BUF 65536
#define OUT_HIGH_WATER (32u << 20) /* stop reading above this much output */

struct conn {
    qnode_t link;
    qnode_t dirty_link;
    shaled_t *s;
    uv_tcp_t tcp;
    frame_decoder_t dec;
    int refs;
    int closing;
    int close_after_flush;
    int hello_done;
    int reading;
    int eof;              /* peer shut down its side: answer, then close */
    qnode_t resume_link;  /* in s->resumable: backlog to decode */
    uint64_t inflight;
    conn_drain_cb drain_cb; /* called when unsent output falls low */
    void *drain_arg;
    uv_buf_t *out;
    size_t nout, capout;
    size_t out_bytes;     /* queued + being written */
    int tls_on;           /* tls holds a session: the port speaks TLS */
    int plain_reply;      /* a plain-text peer: answers go out unencrypted */
    tls_uv_t tls;
    int login_pending;    /* HELLO credential being checked: read nothing more */
    uint64_t hello_id;
    authn_conn_t an;      /* the connection's user (authn.c) */
    uint8_t rbuf[READ_BUF];
    char peer[64];
};

static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

typedef struct wreq {
    uv_write_t w;
    conn_t *c;
    uv_buf_t *bufs;
    size_t n;
    size_t bytes;
} wreq_t;

shaled_t *conn_server(const conn_t *c) { return c->s; }
authn_conn_t *conn_authn(conn_t *c) { return &c->an; }
size_t conn_out_bytes(const conn_t *c) { return c->out_bytes; }
const char *conn_peer(const conn_t *c) { return c->peer; }

const struct tls_sess *conn_tls_sess(const conn_t *c) { return c->tls_on ? c->tls.sess : NULL; }

void conn_set_drain_cb(conn_t *c, conn_drain_cb cb, void *arg)
{
    c->drain_cb = cb;
    c->drain_arg = arg;
}
int conn_is_open(const conn_t *c) { return !c->closing; }
void conn_ref(conn_t *c) { c->refs++; }

static void conn_free(conn_t *c)
{
    if (c->tls_on)
        tls_uv_free(&c->tls);
    frame_decoder_free(&c->dec);
    for (size_t i = 0; i < c->nout; i++)
        free(c->out[i].base);
    free(c->out);
    free(c);
}

void conn_unref(conn_t *c)
{
    if (--c->refs == 0)
        conn_free(c);
}

static void on_close(uv_handle_t *h)
{
    conn_t *c = h->data;
    conn_unref(c);
}

static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->an.login != NULL) {
        /* The check runs on: its answer will not come here. */
        login_cancel(c->an.login);
        c->an.login = NULL;
        c->login_pending = 0;
        conn_unref(c);
    }
    /* A streamer attached to this connection learns it is gone. */
    if (c->drain_cb != NULL) {
        conn_drain_cb cb = c->drain_cb;
        c->drain_cb = NULL;
        cb(c, c->drain_arg);
    }
    q_remove(&c->link);
    if (c->dirty_link.next != &c->dirty_link)
        q_remove(&c->dirty_link);
    if (c->resume_link.next != &c->resume_link)
        q_remove(&c->resume_link);
    c->s->nconns--;
    log_debug("connection closed", " peer=%s", c->peer);
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn_t *c = h->data;
    buf->base = (char *)c->rbuf;
    /* With TLS the plaintext is decrypted into rbuf: leave room for it. */
    buf->len = c->tls_on ? TLS_UV_READ_ROOM(READ_BUF) : READ_BUF;
}

/* May this connection take another request now? */
static int can_take(const conn_t *c)
{
    return !c->closing && !c->login_pending && c->inflight < c->s->cfg.conn_max_inflight &&
           c->out_bytes < OUT_HIGH_WATER && !c->close_after_flush &&
           !c->s->stopping;
}

/* After EOF: close once every request is answered and written. */
static void maybe_finish(conn_t *c)
{
    if (c->eof && !c->closing && c->inflight == 0 && c->out_bytes == 0 &&
        frame_decoder_backlog(&c->dec) == 0)
        conn_close(c);
}

static void on_resume_idle(uv_idle_t *h)
{
    (void)h; /* the work happens in conn_resume_all (check phase) */
}

static void update_reading(conn_t *c)
{
    if (c->closing)
        return;
    int want = can_take(c) && !c->eof;
    if (frame_decoder_backlog(&c->dec) > 0) {
        /* Decode what was kept back first, outside any callback chain. */
        if (can_take(c) && c->resume_link.next == &c->resume_link) {
            q_push(&c->s->resumable, &c->resume_link);
            /* An active idle handle keeps the loop from blocking in poll,
             * so the next check phase runs even with no other event. */
            uv_idle_start(&c->s->resume_idle, on_resume_idle);
        }
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

void conn_request_done(conn_t *c)
{
    if (c->inflight > 0)
        c->inflight--;
    update_reading(c);
    maybe_finish(c);
    conn_unref(c);
}

void conn_send(conn_t *c, uint8_t *frame, size_t len)
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
            log_error("out of memory queueing a response; closing", " peer=%s", c->peer);
            conn_close(c);
            return;
        }
        c->out = nb;
        c->capout = cap;
    }
    c->out[c->nout++] = uv_buf_init((char *)frame, (unsigned)len);
    c->out_bytes += len;
    if (c->dirty_link.next == &c->dirty_link)
        q_push(&c->s->dirty, &c->dirty_link);
}

static void on_write(uv_write_t *w, int status)
{
    wreq_t *wr = (wreq_t *)w;
    conn_t *c = wr->c;
    for (size_t i = 0; i < wr->n; i++)
        free(wr->bufs[i].base);
    free(wr->bufs);
    c->out_bytes -= wr->bytes;
    free(wr);
    if (status != 0 && !c->closing) {
        log_debug("write failed", " peer=%s err=%s", c->peer, uv_strerror(status));
        conn_close(c);
    } else if (c->close_after_flush && c->nout == 0 && !c->closing) {
        conn_close(c);
    } else {
        if (c->drain_cb != NULL && c->out_bytes < CONN_DRAIN_LOW_WATER)
            c->drain_cb(c, c->drain_arg);
        update_reading(c);
        maybe_finish(c);
    }
    conn_unref(c);
}

static void conn_flush(conn_t *c)
{
    if (c->nout == 0 || c->closing)
        return;
    wreq_t *wr = calloc(1, sizeof(*wr));
    if (wr == NULL) {
        conn_close(c);
        return;
    }
    wr->c = c;
    wr->bufs = c->out;
    wr->n = c->nout;
    for (size_t i = 0; i < wr->n; i++)
        wr->bytes += wr->bufs[i].len;
    c->out = NULL;
    c->nout = c->capout = 0;
    conn_ref(c);
    int rv;
    if (c->tls_on && !c->plain_reply) {
        rv = tls_uv_write(&c->tls, &wr->w, wr->bufs, (unsigned)wr->n, on_write);
    } else {
        rv = uvw_write(&wr->w, (uv_stream_t *)&c->tcp, wr->bufs, (unsigned)wr->n, on_write);
    }
    if (rv == 1) {
        on_write(&wr->w, 0); /* written whole now: complete as libuv would */
    } else if (rv != 0) {
        /* The callback will not run: release here. */
        for (size_t i = 0; i < wr->n; i++)
            free(wr->bufs[i].base);
        free(wr->bufs);
        c->out_bytes -= wr->bytes;
        free(wr);
        conn_unref(c);
        conn_close(c);
    }
}

void conn_flush_all(shaled_t *s)
{
    while (!q_empty(&s->dirty)) {
        qnode_t *n = s->dirty.next;
        q_remove(n);
        conn_flush(q_data(n, conn_t, dirty_link));
    }
}

void conn_send_error(conn_t *c, uint64_t id, int code, const char *msg)
{
    size_t len = 0;
    uint8_t *f = wire_error_frame(id, code, msg, NULL, &len);
    conn_send(c, f, len);
}

/* Protocol violation that loses framing: answer once, then close. */
static void conn_fail(conn_t *c, int code, const char *msg)
{
    conn_send_error(c, 0, code, msg);
    c->close_after_flush = 1;
    update_reading(c);
}

static void send_hello_reply(conn_t *c, uint64_t id)
{
    shaled_t *s = c->s;
    size_t flen;
    Shale__HelloReply r = SHALE__HELLO_REPLY__INIT;
    r.protocol_version = SHALE_PROTOCOL_VERSION;
    r.cluster_id = s->cfg.cluster_id;
    r.has_node_id = 1;
    r.node_id = s->cfg.id;
    r.has_max_frame = 1;
    r.max_frame = (uint32_t)s->cfg.max_frame;
    r.has_max_key = 1;
    r.max_key = (uint32_t)s->cfg.max_key;
    r.has_max_value = 1;
    r.max_value = (uint32_t)s->cfg.max_value;
    authn_hello_fill(s, &c->an, &r);
    uint8_t *f = wire_pack(SHALE_MSG_HELLO_REPLY, id, &r.base, UINT32_MAX, &flen);
    conn_send(c, f, flen);
    c->hello_done = 1;
}

/* The HELLO credential was checked (login.h). */
static void on_login(void *arg, int status, const char *user, const char *msg)
{
    conn_t *c = arg;
    c->an.login = NULL;
    c->login_pending = 0;
    if (status == 0) {
        snprintf(c->an.user, sizeof(c->an.user), "%s", user);
        log_debug("login", " peer=%s user=%s", c->peer, user);
        send_hello_reply(c, c->hello_id);
    } else {
        log_warn("login failed", " peer=%s user=%s err=\"%s\"", c->peer, user, msg);
        conn_send_error(c, c->hello_id, status, msg);
        c->close_after_flush = 1;
    }
    update_reading(c); /* frames pipelined behind HELLO are decoded now */
    conn_unref(c);
}

/* --auth: check HELLO's credential (none: an anonymous connection, whose
 * requests authn_check refuses). 0 when answered now, 1 when pending. */
static int hello_login(conn_t *c, uint64_t id, const Shale__Hello *h)
{
    shaled_t *s = c->s;
    if (!h->has_credential) {
        send_hello_reply(c, id);
        return 0;
    }
    char msg[LOGIN_MSGLEN];
    uint64_t gen;
    const Shale__UserTable *t = authn_table(s, &gen);
    int rv = login_start(&s->login, c->peer, h->credential.data, h->credential.len, t, on_login,
                         c, &c->an.login, msg);
    if (rv != SHALE_OK) {
        log_warn("login refused", " peer=%s err=\"%s\"", c->peer, msg);
        conn_send_error(c, id, rv, msg);
        c->close_after_flush = 1;
        return 0;
    }
    c->hello_id = id;
    c->login_pending = 1;
    conn_ref(c); /* released by on_login, or by conn_close */
    return 1;
}

static int handle_hello(conn_t *c, uint64_t id, const uint8_t *p, size_t len)
{
    shaled_t *s = c->s;
    ProtobufCMessage *m = wire_unpack(SHALE_MSG_HELLO, p, len);
    if (m == NULL) {
        conn_send_error(c, id, SHALE_EPROTO, "malformed HELLO");
        c->close_after_flush = 1;
        return 1;
    }
    Shale__Hello *h = (Shale__Hello *)m;
    int rv = 0;
    if (h->protocol_version != SHALE_PROTOCOL_VERSION) {
        char msg[128];
        snprintf(msg, sizeof(msg), "protocol version %u not supported (server speaks %u)",
                 h->protocol_version, SHALE_PROTOCOL_VERSION);
        conn_send_error(c, id, SHALE_EPROTO, msg);
        c->close_after_flush = 1;
        rv = 1;
    } else if (h->cluster_id != NULL && h->cluster_id[0] != '\0' &&
               strcmp(h->cluster_id, s->cfg.cluster_id) != 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "this node belongs to cluster '%s', not '%.64s'",
                 s->cfg.cluster_id, h->cluster_id);
        conn_send_error(c, id, SHALE_ECLUSTER, msg);
        c->close_after_flush = 1;
        rv = 1;
    } else if (s->cfg.auth) {
        rv = hello_login(c, id, h) ? FRAME_PAUSE : 0;
    } else {
        send_hello_reply(c, id);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return rv;
}

static int on_frame(void *ud, const frame_hdr_t *h, const uint8_t *payload)
{
    conn_t *c = ud;
    if (c->close_after_flush || c->closing)
        return 1;
    if (!c->hello_done) {
        if (h->type != SHALE_MSG_HELLO) {
            conn_send_error(c, h->id, SHALE_EPROTO,
                                          "the first frame must be HELLO");
            c->close_after_flush = 1;
            return 1;
        }
        return handle_hello(c, h->id, payload, h->len);
    }
    c->inflight++;
    conn_ref(c);
    dispatch_frame(c->s, c, h->type, h->id, payload, h->len);
    if (c->close_after_flush)
        return 1;
    return can_take(c) ? 0 : FRAME_PAUSE;
}

/* What the decoder returned after a feed or resume. */
static void after_decode(conn_t *c, int rv)
{
    if (rv < 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "bad frame (%s): closing connection",
                 shale_strerror(rv));
        log_warn("bad frame from client", " peer=%s err=\"%s\"", c->peer,
                 shale_strerror(rv));
        conn_fail(c, rv == SHALE_ETOOLARGE ? SHALE_ETOOLARGE : SHALE_EPROTO, msg);
        return;
    }
    update_reading(c);
    maybe_finish(c);
}

/* The *n ciphertext bytes in rbuf become *n plaintext bytes. 0, or -1 when
 * the connection is over (then it is closed, or closes after a plain-text
 * answer). */
static int tls_read(conn_t *c, size_t *n)
{
    size_t plen = 0;
    int established = 0;
    int rv = tls_uv_feed(&c->tls, c->rbuf, *n, READ_BUF, &plen, &established);
    if (rv == TLS_EPLAINTEXT) {
        log_warn("plain-text client on a TLS port", " peer=%s", c->peer);
        c->plain_reply = 1;
        conn_fail(c, SHALE_EPROTO,
                  "plain-text client on a TLS port: this port requires TLS (docs/security.md)");
        return -1;
    }
    if (rv != 0) {
        log_warn("TLS connection failed", " peer=%s err=\"%s\"", c->peer,
                 rv < 0 && tls_uv_errmsg(&c->tls)[0] != '\0' ? tls_uv_errmsg(&c->tls)
                                                             : uv_strerror(rv));
        conn_close(c);
        return -1;
    }
    if (established && log_get_level() <= LOG_DEBUG) {
        char how[96], cn[128] = "-";
        tls_sess_peer_cn(c->tls.sess, cn, sizeof(cn));
        log_debug("TLS established", " peer=%s tls=\"%s\" peer_cn=\"%s\"", c->peer,
                  tls_sess_describe(c->tls.sess, how, sizeof(how)), cn);
    }
    *n = plen;
    return 0;
}

static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf; /* always c->rbuf */
    conn_t *c = st->data;
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
    if (n > 0)
        after_decode(c, frame_decoder_feed(&c->dec, c->rbuf, n, on_frame, c));
}

void conn_resume_all(shaled_t *s)
{
    uv_idle_stop(&s->resume_idle);
    while (!q_empty(&s->resumable)) {
        qnode_t *n = s->resumable.next;
        q_remove(n);
        conn_t *c = q_data(n, conn_t, resume_link);
        if (c->closing || !can_take(c))
            continue;
        after_decode(c, frame_decoder_resume(&c->dec, on_frame, c));
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    shaled_t *s = server->data;
    if (status < 0) {
        log_warn("accept failed", " err=%s", uv_strerror(status));
        return;
    }
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        log_error("out of memory accepting a connection", "%s", "");
        return;
    }
    c->s = s;
    c->refs = 1;
    q_init(&c->dirty_link);
    q_init(&c->resume_link);
    frame_decoder_init(&c->dec, (uint32_t)s->cfg.max_frame);
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    q_push(&s->conns, &c->link);
    s->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || s->stopping) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0 &&
        ss.ss_family == AF_INET) {
        char ip[32];
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        uv_ip4_name(sin, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, ntohs(sin->sin_port));
    }
    if (s->tls_server != NULL) {
        char err[TLS_ERRLEN];
        if (tls_uv_start(&c->tls, s->tls_server, (uv_stream_t *)&c->tcp, NULL, err,
                         sizeof(err)) != 0) {
            log_warn("cannot start TLS on a connection", " peer=%s err=\"%s\"", c->peer, err);
            conn_close(c);
            return;
        }
        c->tls_on = 1;
    }
    update_reading(c);
}

int conn_tls_init(shaled_t *s, char *err, size_t errlen)
{
    if (s->cfg.tls_cert[0] == '\0')
        return 0;
    tls_opts_t o = {.ca_file = s->cfg.tls_ca,
                    .cert_file = s->cfg.tls_cert,
                    .key_file = s->cfg.tls_key,
                    .require_peer_cert = s->cfg.tls_client_auth != 0};
    if (tls_ctx_new(TLS_SERVER, &o, &s->tls_server, err, errlen) != 0 ||
        tls_ctx_new(TLS_CLIENT, &o, &s->tls_client, err, errlen) != 0) {
        conn_tls_free(s);
        return -1;
    }
    /* The Raft port always wants the peer's certificate (raft_tls.c). */
    o.require_peer_cert = 1;
    if (tls_ctx_new(TLS_SERVER, &o, &s->tls_raft, err, errlen) != 0) {
        conn_tls_free(s);
        return -1;
    }
    return 0;
}

void conn_tls_reload(shaled_t *s)
{
    if (s->tls_server == NULL)
        return;
    char err[TLS_ERRLEN];
    if (tls_ctx_reload(s->tls_server, err, sizeof(err)) != 0 ||
        tls_ctx_reload(s->tls_client, err, sizeof(err)) != 0 ||
        tls_ctx_reload(s->tls_raft, err, sizeof(err)) != 0) {
        log_error("TLS reload failed: the files in use before stay in use", " err=\"%s\"", err);
        return;
    }
    log_info("TLS certificates reloaded", " cert=%s generation=%llu", s->cfg.tls_cert,
             (unsigned long long)tls_ctx_generation(s->tls_server));
}

void conn_tls_free(shaled_t *s)
{
    tls_ctx_free(s->tls_server);
    tls_ctx_free(s->tls_client);
    tls_ctx_free(s->tls_raft);
    s->tls_server = s->tls_client = s->tls_raft = NULL;
}

int conn_listen(shaled_t *s, char *err, size_t errlen)
{
    /* At start, before serving: a blocking lookup of a host name is
     * acceptable here (addr.h); the address is bound once. */
    struct sockaddr_storage sa;
    if (addr_resolve_blocking(s->cfg.listen, AF_UNSPEC, &sa, err, errlen) != 0)
        return -1;
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    s->listener_inited = 1;
    int rv = uv_tcp_bind(&s->listener, (const struct sockaddr *)&sa, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (rv != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", s->cfg.listen,
                 uv_strerror(rv));
        return -1;
    }
    return 0;
}

void conn_close_all(shaled_t *s)
{
    if (s->listener_inited && !uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, NULL);
    if (!uv_is_closing((uv_handle_t *)&s->resume_idle))
        uv_close((uv_handle_t *)&s->resume_idle, NULL);
    while (!q_empty(&s->conns))
        conn_close(q_data(s->conns.next, conn_t, link));
}
