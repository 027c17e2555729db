/* libshale transport: one TCP connection at a time to the client's address.
 *
 * Owns: name resolution, connect with a per-attempt timeout, the TLS
 * handshake (when the options ask for TLS), the HELLO exchange, coalesced
 * writes, reading and reassembling answer frames, and reconnecting with
 * capped, jittered exponential backoff while requests wait.
 *
 * Rules:
 *  - HELLO is the first frame; pending requests are pipelined right behind
 *    it (at most max_inflight unanswered on the wire);
 *  - every request queued during one loop turn goes out in one uv_write
 *    (a uv_prepare flushes before the loop blocks);
 *  - a lost connection requeues everything written on it; the same frames
 *    (same ids, same session seqs) are re-sent on the next connection, so
 *    the server answers a mutation it already applied with its first
 *    outcome;
 *  - a peer that is not a Shale server of the expected cluster (HELLO
 *    refused, garbage instead of HELLO_REPLY) fails every pending request at
 *    once: retrying cannot help. After the handshake, garbage fails the
 *    requests written on that connection with SHALE_EPROTO and the rest are
 *    retried on a new connection;
 *  - the first cluster id the client sees is pinned: a reconnect never
 *    silently lands in another cluster;
 *  - with TLS, nothing but the handshake is written before it completes;
 *    a handshake that fails (the server's certificate, ours, or a server
 *    that does not speak TLS) is like a refused HELLO: every pending request
 *    fails at once, since retrying cannot help; the connect timeout covers
 *    the handshake;
 *  - no reconnect happens while no request waits.
 *
 * Never completes a request on its own except through client.c's helpers;
 * never decodes a request's answer (codec.c does). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "uvwrite.h"
#include "tls_uv.h"

#define READ_BUF 65536
#define WRITE_BATCH 1024 /* frames per uv_write */
#define BACKOFF_BASE_MS 10
#define BACKOFF_CAP_MS 250
#define KEEPALIVE_S 30

struct conn {
    shale_client_t *c;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    frame_decoder_t dec;
    uint64_t hello_id;
    creq_t *hello; /* HELLO frame until it is handed to a write */
    int closed;
    int tls_on; /* tls holds a session */
    tls_uv_t tls;
    uint8_t rbuf[READ_BUF];
};

typedef struct wreq {
    uv_write_t w;
    conn_t *conn;
    size_t n;
    creq_t *crs[];
} wreq_t;

static void conn_flush(conn_t *conn);

void cconn_ref(conn_t *conn, int ref)
{
    if (conn->closed)
        return;
    if (ref)
        uv_ref((uv_handle_t *)&conn->tcp);
    else
        uv_unref((uv_handle_t *)&conn->tcp);
}

static void on_conn_closed(uv_handle_t *h)
{
    conn_t *conn = h->data;
    shale_client_t *c = conn->c;
    frame_decoder_free(&conn->dec);
    if (conn->tls_on)
        tls_uv_free(&conn->tls);
    if (conn->hello != NULL)
        creq_unref(conn->hello);
    free(conn);
    client_handle_closed(c);
}

static void conn_close(conn_t *conn)
{
    if (conn->closed)
        return;
    conn->closed = 1;
    uv_close((uv_handle_t *)&conn->tcp, on_conn_closed);
}

/* Jittered in [d/2, d], d = min(base * 2^attempt, cap): clients that lost
 * the same server do not come back in lockstep. */
static uint64_t backoff_ms(shale_client_t *c)
{
    unsigned a = c->attempt < 16 ? c->attempt : 16;
    uint64_t d = (uint64_t)BACKOFF_BASE_MS << a;
    if (d > BACKOFF_CAP_MS)
        d = BACKOFF_CAP_MS;
    uint64_t r = 0;
    if (uv_random(NULL, NULL, &r, sizeof(r), 0, NULL) != 0)
        r = uv_hrtime();
    return d / 2 + r % (d / 2 + 1);
}

static void on_backoff(uv_timer_t *t)
{
    shale_client_t *c = t->data;
    if (c->closing || c->state != CS_BACKOFF)
        return;
    if (c->npending == 0) {
        c->state = CS_IDLE;
        return;
    }
    cconn_start(c);
}

void cconn_failed(shale_client_t *c, int code, const char *msg)
{
    c->last_err_code = code;
    snprintf(c->last_err, sizeof(c->last_err), "%s", msg);
    c->conn_failures++;
    if (c->gai != NULL) {
        /* Abandoned: its callback sees c->gai != gai and only frees it. */
        uv_cancel((uv_req_t *)c->gai);
        c->gai = NULL;
    }
    if (c->conn != NULL) {
        conn_close(c->conn);
        c->conn = NULL;
    }
    uv_timer_stop(&c->conn_timer);
    client_requeue_all(c);
    if (c->closing) {
        c->state = CS_IDLE;
        return;
    }
    /* Next target: the leader we were told about, else the next node. */
    int redirect = c->redirect;
    c->redirect = 0;
    if (!redirect && c->naddrs > 1)
        client_use_addr(c, (c->cur + 1) % c->naddrs);
    if (c->npending > 0) {
        c->state = CS_BACKOFF;
        /* A hint is followed at once the first time; a hint that leads
         * nowhere (a dead leader not yet replaced) backs off like any
         * failure. attempt is reset only by a useful answer. */
        uint64_t d = redirect && c->attempt == 0 ? 0 : backoff_ms(c);
        c->attempt++;
        uv_timer_start(&c->conn_timer, on_backoff, d, 0);
    } else {
        c->state = CS_IDLE;
    }
}

void cconn_check_stall(uv_timer_t *t)
{
    shale_client_t *c = t->data;
    if (c->closing || c->conn == NULL || c->inflight == 0 ||
        (c->state != CS_READY && c->state != CS_HELLO))
        return;
    uint64_t now = client_now_ms();
    if (now - c->last_rx_ms < c->opts.stall_ms)
        return;
    char msg[SHALE_ERRMSG_LEN];
    snprintf(msg, sizeof(msg), "%s answered nothing for %llu ms with %zu requests out",
             c->addr, (unsigned long long)(now - c->last_rx_ms), c->inflight);
    cconn_failed(c, SHALE_ETIMEOUT, msg);
}

/* The peer is not a server this client may talk to: fail everything. */
static void conn_fatal(shale_client_t *c, int code, const char *msg)
{
    cconn_failed(c, code, msg);
    uv_timer_stop(&c->conn_timer);
    c->state = CS_IDLE;
    client_fail_all(c, code, msg);
}

void cconn_shutdown(shale_client_t *c)
{
    if (c->gai != NULL) {
        uv_cancel((uv_req_t *)c->gai);
        c->gai = NULL;
    }
    if (c->conn != NULL) {
        conn_close(c->conn);
        c->conn = NULL;
    }
    uv_timer_stop(&c->conn_timer);
    c->state = CS_IDLE;
}

/* ---- Writing -------------------------------------------------------------*/

static void on_write(uv_write_t *w, int status)
{
    wreq_t *wr = (wreq_t *)w;
    conn_t *conn = wr->conn;
    shale_client_t *c = conn->c;
    for (size_t i = 0; i < wr->n; i++)
        creq_unref(wr->crs[i]);
    free(wr);
    if (status < 0 && status != UV_ECANCELED && conn == c->conn && !c->closing) {
        char msg[SHALE_ERRMSG_LEN];
        snprintf(msg, sizeof(msg), "write to %s: %s", c->addr, uv_strerror(status));
        cconn_failed(c, SHALE_EIO, msg);
    }
}

static void conn_flush(conn_t *conn)
{
    shale_client_t *c = conn->c;
    if (conn != c->conn || (c->state != CS_HELLO && c->state != CS_READY))
        return;
    for (;;) {
        size_t room = c->opts.max_inflight > c->inflight ? c->opts.max_inflight - c->inflight : 0;
        size_t nreq = 0;
        for (cq_t *q = c->sendq.next; q != &c->sendq && nreq < room && nreq < WRITE_BATCH;
             q = q->next)
            nreq++;
        size_t n = nreq + (conn->hello != NULL ? 1 : 0);
        if (n == 0)
            return;
        wreq_t *wr = malloc(sizeof(*wr) + n * sizeof(creq_t *));
        uv_buf_t *bufs = malloc(n * sizeof(*bufs));
        if (wr == NULL || bufs == NULL) {
            free(wr);
            free(bufs);
            cconn_failed(c, SHALE_ENOMEM, "out of memory writing requests");
            return;
        }
        wr->conn = conn;
        wr->n = 0;
        if (conn->hello != NULL) {
            wr->crs[wr->n++] = conn->hello; /* the connection's ref moves */
            conn->hello = NULL;
        }
        if (c->inflight == 0)
            c->last_rx_ms = client_now_ms(); /* the silence clock starts now */
        while (wr->n < n) {
            creq_t *cr = cq_data(c->sendq.next, creq_t, send_link);
            cq_remove(&cr->send_link);
            cr->on_wire = 1;
            cr->ever_sent = 1;
            if (cr->sends < UINT8_MAX)
                cr->sends++;
            cr->refs++;
            c->inflight++;
            wr->crs[wr->n++] = cr;
        }
        for (size_t i = 0; i < n; i++)
            bufs[i] = uv_buf_init((char *)wr->crs[i]->frame, (unsigned)wr->crs[i]->flen);
        int rv = conn->tls_on ? tls_uv_write(&conn->tls, &wr->w, bufs, (unsigned)n, on_write)
                              : uvw_write(&wr->w, (uv_stream_t *)&conn->tcp, bufs, (unsigned)n,
                                          on_write);
        free(bufs); /* uv_write keeps its own copy of the array */
        if (rv == 1) {
            on_write(&wr->w, 0); /* written whole now: complete as libuv would */
        } else if (rv != 0) {
            for (size_t i = 0; i < wr->n; i++)
                creq_unref(wr->crs[i]);
            free(wr);
            char msg[SHALE_ERRMSG_LEN];
            snprintf(msg, sizeof(msg), "write to %s: %s", c->addr, uv_strerror(rv));
            cconn_failed(c, SHALE_EIO, msg);
            return;
        }
        if (nreq < WRITE_BATCH)
            return;
    }
}

static void on_flush(uv_prepare_t *p)
{
    shale_client_t *c = p->data;
    uv_prepare_stop(p);
    c->flush_scheduled = 0;
    if (c->conn != NULL && !c->closing)
        conn_flush(c->conn);
}

void cconn_kick(shale_client_t *c)
{
    if (c->closing)
        return;
    switch (c->state) {
    case CS_IDLE:
        cconn_start(c);
        break;
    case CS_HELLO:
    case CS_READY:
        if (!c->flush_scheduled) {
            c->flush_scheduled = 1;
            uv_prepare_start(&c->flush_prep, on_flush);
        }
        break;
    default:
        break; /* sent once connected */
    }
}

/* ---- Reading -------------------------------------------------------------*/

/* Who the server says this client is (shale_whoami): replaces what the
 * previous connection's HELLO_REPLY said. */
static void hello_whoami(shale_client_t *c, const Shale__HelloReply *r)
{
    free(c->who.prefix);
    c->who.prefix = NULL;
    c->who.prefix_len = 0;
    c->who.have = 1;
    c->who.auth = r->has_auth ? (r->auth ? 1 : 0) : -1;
    snprintf(c->who.user, sizeof(c->who.user), "%s", r->user != NULL ? r->user : "");
    c->who.role = r->has_role ? (int)r->role : 0;
    if (r->has_key_prefix && r->key_prefix.len > 0 && r->key_prefix.len <= SHALE_PREFIX_MAX &&
        (c->who.prefix = malloc(r->key_prefix.len)) != NULL) {
        memcpy(c->who.prefix, r->key_prefix.data, r->key_prefix.len);
        c->who.prefix_len = r->key_prefix.len;
    }
}

static void hello_answer(shale_client_t *c, conn_t *conn, const frame_hdr_t *h,
                         const uint8_t *payload)
{
    char msg[SHALE_ERRMSG_LEN];
    if (h->type == SHALE_MSG_ERROR && (h->id == conn->hello_id || h->id == 0)) {
        Shale__Error *e = (Shale__Error *)wire_unpack(h->type, payload, h->len);
        int code = e != NULL ? codec_error_code(e) : SHALE_EPROTO;
        snprintf(msg, sizeof(msg), "%s refused the connection: %s", c->addr,
                 e != NULL && e->message != NULL ? e->message : shale_strerror(code));
        if (e != NULL)
            protobuf_c_message_free_unpacked(&e->base, NULL);
        conn_fatal(c, code, msg);
        return;
    }
    if (h->type != SHALE_MSG_HELLO_REPLY || h->id != conn->hello_id) {
        snprintf(msg, sizeof(msg), "%s answered HELLO with %s (id %llu): not a Shale server?",
                 c->addr, frame_type_name(h->type), (unsigned long long)h->id);
        conn_fatal(c, SHALE_EPROTO, msg);
        return;
    }
    Shale__HelloReply *r = (Shale__HelloReply *)wire_unpack(h->type, payload, h->len);
    if (r == NULL) {
        snprintf(msg, sizeof(msg), "malformed HELLO_REPLY from %s", c->addr);
        conn_fatal(c, SHALE_EPROTO, msg);
        return;
    }
    int code = SHALE_OK;
    if (r->protocol_version != SHALE_PROTOCOL_VERSION) {
        snprintf(msg, sizeof(msg), "%s speaks protocol version %u, this library %u", c->addr,
                 r->protocol_version, SHALE_PROTOCOL_VERSION);
        code = SHALE_EPROTO;
    } else if (c->cluster_id != NULL && strcmp(c->cluster_id, r->cluster_id) != 0) {
        snprintf(msg, sizeof(msg), "%.100s belongs to cluster '%.56s', not '%.56s'", c->addr,
                 r->cluster_id, c->cluster_id);
        code = SHALE_ECLUSTER;
    } else if (c->cluster_id == NULL && r->cluster_id[0] != '\0' &&
               (c->cluster_id = strdup(r->cluster_id)) == NULL) {
        snprintf(msg, sizeof(msg), "out of memory");
        code = SHALE_ENOMEM;
    }
    if (code == SHALE_OK) {
        if (r->has_max_frame && r->max_frame > 0)
            c->lim.max_frame = r->max_frame;
        if (r->has_max_key && r->max_key > 0)
            c->lim.max_key = r->max_key;
        if (r->has_max_value && r->max_value > 0)
            c->lim.max_value = r->max_value;
        hello_whoami(c, r);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (code != SHALE_OK) {
        conn_fatal(c, code, msg);
        return;
    }
    c->state = CS_READY;
    /* attempt is reset by the first useful answer, not here: a node that
     * accepts connections but only redirects must not make us spin. */
    c->last_err_code = 0;
    c->last_err[0] = '\0';
    uv_timer_stop(&c->conn_timer);
    cconn_kick(c);
}

/* An ERROR with id 0 concerns the connection, not a request. */
static void connection_error(shale_client_t *c, const frame_hdr_t *h, const uint8_t *payload)
{
    char msg[SHALE_ERRMSG_LEN];
    Shale__Error *e = (Shale__Error *)wire_unpack(h->type, payload, h->len);
    int code = e != NULL ? codec_error_code(e) : SHALE_EPROTO;
    snprintf(msg, sizeof(msg), "%s closed the connection: %s", c->addr,
             e != NULL && e->message != NULL ? e->message : shale_strerror(code));
    if (e != NULL)
        protobuf_c_message_free_unpacked(&e->base, NULL);
    if (code == SHALE_EPROTO || code == SHALE_ETOOLARGE || code == SHALE_EINVAL) {
        /* The server rejected our bytes: re-sending them cannot help. */
        cq_t list;
        cq_init(&list);
        client_take(c, 1, &list);
        cconn_failed(c, code, msg);
        client_finish_list(c, &list, code, msg);
    } else {
        cconn_failed(c, code, msg);
    }
}

static int on_frame(void *ud, const frame_hdr_t *h, const uint8_t *payload)
{
    conn_t *conn = ud;
    shale_client_t *c = conn->c;
    if (conn != c->conn || c->closing)
        return 1;
    if (c->state == CS_HELLO)
        hello_answer(c, conn, h, payload);
    else if (h->id == 0 && h->type == SHALE_MSG_ERROR)
        connection_error(c, h, payload);
    else
        client_on_answer(c, h, payload);
    /* A callback may have closed the client or the connection. */
    return conn != c->conn || c->closing ? 1 : 0;
}

/* The byte stream cannot be reframed: nothing more is read from it. */
static void stream_error(shale_client_t *c, conn_t *conn, int rv)
{
    char msg[SHALE_ERRMSG_LEN];
    if (rv == SHALE_ETOOLARGE) {
        snprintf(msg, sizeof(msg), "answer of %u bytes from %s exceeds max_frame (%u)",
                 conn->dec.cur.len, c->addr, c->opts.max_frame);
        if (c->state == CS_HELLO) {
            conn_fatal(c, SHALE_EPROTO, msg);
            return;
        }
        uint64_t id = conn->dec.cur.id;
        cconn_failed(c, SHALE_EPROTO, msg);
        client_fail_id(c, id, SHALE_ETOOLARGE, msg);
        return;
    }
    snprintf(msg, sizeof(msg), "bad frame from %s (%s): not a Shale server?", c->addr,
             shale_strerror(rv));
    if (c->state == CS_HELLO) {
        conn_fatal(c, rv == SHALE_ENOMEM ? rv : SHALE_EPROTO, msg);
        return;
    }
    cq_t list;
    cq_init(&list);
    client_take(c, 1, &list);
    cconn_failed(c, SHALE_EPROTO, msg);
    client_finish_list(c, &list, rv == SHALE_ENOMEM ? rv : SHALE_EPROTO, msg);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn_t *conn = h->data;
    buf->base = (char *)conn->rbuf;
    /* With TLS the plaintext is decrypted into rbuf: leave room for it. */
    buf->len = conn->tls_on ? TLS_UV_READ_ROOM(READ_BUF) : READ_BUF;
}

static void start_hello(shale_client_t *c, conn_t *conn);

/* The ciphertext in rbuf (*n bytes) becomes plaintext (*n bytes). 0, or -1
 * when the connection failed (then handled here). */
static int tls_read(shale_client_t *c, conn_t *conn, size_t *n)
{
    size_t plen = 0;
    int established = 0;
    int rv = tls_uv_feed(&conn->tls, conn->rbuf, *n, READ_BUF, &plen, &established);
    if (rv != 0) {
        char msg[SHALE_ERRMSG_LEN + TLS_ERRLEN]; /* cut to SHALE_ERRMSG_LEN where kept */
        const char *why = rv < 0 && tls_uv_errmsg(&conn->tls)[0] != '\0'
                              ? tls_uv_errmsg(&conn->tls)
                              : uv_strerror(rv);
        snprintf(msg, sizeof(msg), "TLS with %s: %s", c->addr, why);
        if (rv == TLS_EHANDSHAKE || rv == TLS_EPLAINTEXT) {
            conn_fatal(c, SHALE_EPROTO, msg);
        } else if (rv == TLS_EPROTO) {
            /* Like garbage after HELLO: what was written may be lost. */
            cq_t list;
            cq_init(&list);
            client_take(c, 1, &list);
            cconn_failed(c, SHALE_EPROTO, msg);
            client_finish_list(c, &list, SHALE_EPROTO, msg);
        } else {
            cconn_failed(c, rv == TLS_ENOMEM || rv == UV_ENOMEM ? SHALE_ENOMEM : SHALE_EIO, msg);
        }
        return -1;
    }
    if (established && c->state == CS_TLS)
        start_hello(c, conn);
    *n = plen;
    return conn == c->conn && !c->closing ? 0 : -1;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *conn = s->data;
    shale_client_t *c = conn->c;
    if (conn != c->conn || c->closing)
        return;
    if (nread < 0) {
        char msg[SHALE_ERRMSG_LEN];
        if (nread == UV_EOF)
            snprintf(msg, sizeof(msg), "connection closed by %s", c->addr);
        else
            snprintf(msg, sizeof(msg), "read from %s: %s", c->addr, uv_strerror((int)nread));
        cconn_failed(c, SHALE_EIO, msg);
        return;
    }
    if (nread == 0)
        return;
    c->last_rx_ms = client_now_ms();
    size_t n = (size_t)nread;
    if (conn->tls_on && (tls_read(c, conn, &n) != 0 || n == 0))
        return;
    int rv = frame_decoder_feed(&conn->dec, (const uint8_t *)buf->base, n, on_frame, conn);
    if (rv < 0 && conn == c->conn && !c->closing)
        stream_error(c, conn, rv);
}

/* ---- Connecting ----------------------------------------------------------*/

static creq_t *hello_frame(shale_client_t *c, uint64_t id)
{
    Shale__Hello h = SHALE__HELLO__INIT;
    h.protocol_version = SHALE_PROTOCOL_VERSION;
    h.cluster_id = c->cluster_id;
    h.peer_kind = SHALE__PEER_KIND__PEER_CLIENT;
    h.client_name = "libshale/" SHALE_VERSION;
    if (c->credential != NULL) {
        h.has_credential = 1;
        h.credential.data = c->credential;
        h.credential.len = c->credential_len;
    }
    size_t plen = protobuf_c_message_get_packed_size(&h.base);
    creq_t *cr = calloc(1, sizeof(*cr) + FRAME_HEADER_SIZE + plen);
    if (cr == NULL)
        return NULL;
    cq_init(&cr->all_link);
    cq_init(&cr->send_link);
    cq_init(&cr->mut_link);
    cr->id = id;
    cr->refs = 1;
    cr->flen = FRAME_HEADER_SIZE + plen;
    cr->secret = c->credential != NULL;
    frame_hdr_t hdr = {.len = (uint32_t)plen, .type = SHALE_MSG_HELLO, .id = id};
    frame_hdr_write(cr->frame, &hdr);
    protobuf_c_message_pack(&h.base, cr->frame + FRAME_HEADER_SIZE);
    return cr;
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *conn = req->data;
    shale_client_t *c = conn->c;
    char msg[SHALE_ERRMSG_LEN];
    if (status == UV_ECANCELED || conn != c->conn || c->closing)
        return;
    if (status < 0) {
        snprintf(msg, sizeof(msg), "connect to %s: %s", c->addr, uv_strerror(status));
        cconn_failed(c, SHALE_EIO, msg);
        return;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    uv_tcp_keepalive(&conn->tcp, 1, KEEPALIVE_S);
    if (c->tls != NULL) {
        char err[TLS_ERRLEN];
        const char *name = c->tls_name_host ? c->host : c->tls_name[0] ? c->tls_name : NULL;
        int rv = tls_uv_start(&conn->tls, c->tls, (uv_stream_t *)&conn->tcp, name, err,
                              sizeof(err));
        if (rv == 0) {
            conn->tls_on = 1;
            rv = uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, on_read);
            snprintf(err, sizeof(err), "%s", rv != 0 ? uv_strerror(rv) : "");
        }
        if (rv != 0) {
            char m2[SHALE_ERRMSG_LEN + TLS_ERRLEN];
            snprintf(m2, sizeof(m2), "TLS with %s: %s", c->addr, err);
            snprintf(msg, sizeof(msg), "%.*s", (int)sizeof(msg) - 1, m2);
            cconn_failed(c, rv == UV_ENOMEM || rv == TLS_ENOMEM ? SHALE_ENOMEM : SHALE_EIO, msg);
            return;
        }
        c->state = CS_TLS; /* HELLO once the handshake is done */
        return;
    }
    int rv = uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, on_read);
    if (rv != 0) {
        snprintf(msg, sizeof(msg), "connection to %s: %s", c->addr, uv_strerror(rv));
        cconn_failed(c, SHALE_EIO, msg);
        return;
    }
    start_hello(c, conn);
}

/* The connection can carry frames: HELLO first, the waiting requests right
 * behind it. */
static void start_hello(shale_client_t *c, conn_t *conn)
{
    conn->hello_id = c->next_id++;
    conn->hello = hello_frame(c, conn->hello_id);
    if (conn->hello == NULL) {
        cconn_failed(c, SHALE_ENOMEM, "out of memory");
        return;
    }
    c->state = CS_HELLO;
    conn_flush(conn); /* HELLO and the waiting requests, before any read */
}

static void conn_open(shale_client_t *c, const struct sockaddr *sa)
{
    char msg[SHALE_ERRMSG_LEN];
    conn_t *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        cconn_failed(c, SHALE_ENOMEM, "out of memory connecting");
        return;
    }
    conn->c = c;
    frame_decoder_init(&conn->dec, c->opts.max_frame);
    uv_tcp_init(c->loop, &conn->tcp);
    conn->tcp.data = conn;
    conn->connect_req.data = conn;
    c->nhandles++;
    c->conn = conn;
    c->state = CS_CONNECTING;
    c->referenced = c->npending > 0;
    cconn_ref(conn, c->referenced);
    int rv = uv_tcp_connect(&conn->connect_req, &conn->tcp, sa, on_connect);
    if (rv != 0) {
        snprintf(msg, sizeof(msg), "connect to %s: %s", c->addr, uv_strerror(rv));
        cconn_failed(c, SHALE_EIO, msg);
    }
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    shale_client_t *c = gai->data;
    int current = gai == c->gai;
    free(gai);
    if (current)
        c->gai = NULL;
    if (!current || c->closing) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        client_handle_closed(c);
        return;
    }
    client_handle_closed(c); /* only counts: the client is not closing */
    if (status < 0 || res == NULL) {
        char msg[SHALE_ERRMSG_LEN];
        snprintf(msg, sizeof(msg), "cannot resolve '%s': %s", c->host,
                 uv_strerror(status < 0 ? status : UV_EAI_NONAME));
        if (res != NULL)
            uv_freeaddrinfo(res);
        cconn_failed(c, SHALE_EIO, msg);
        return;
    }
    struct sockaddr_storage ss;
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    uv_freeaddrinfo(res);
    conn_open(c, (const struct sockaddr *)&ss);
}

static void on_conn_timeout(uv_timer_t *t)
{
    shale_client_t *c = t->data;
    if (c->closing)
        return;
    if (c->state != CS_RESOLVING && c->state != CS_CONNECTING && c->state != CS_TLS &&
        c->state != CS_HELLO)
        return;
    char msg[SHALE_ERRMSG_LEN];
    snprintf(msg, sizeof(msg), "%s: no %s within %u ms", c->addr,
             c->state == CS_HELLO ? "HELLO_REPLY"
             : c->state == CS_TLS ? "TLS handshake"
                                  : "connection",
             c->opts.connect_timeout_ms);
    cconn_failed(c, SHALE_ETIMEOUT, msg);
}

void cconn_start(shale_client_t *c)
{
    if (c->closing || (c->state != CS_IDLE && c->state != CS_BACKOFF))
        return;
    uv_timer_stop(&c->conn_timer);
    uv_timer_start(&c->conn_timer, on_conn_timeout, c->opts.connect_timeout_ms, 0);
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } a;
    int port = atoi(c->port);
    if (uv_ip4_addr(c->host, port, &a.in4) == 0 || uv_ip6_addr(c->host, port, &a.in6) == 0) {
        conn_open(c, &a.sa);
        return;
    }
    uv_getaddrinfo_t *gai = malloc(sizeof(*gai));
    if (gai == NULL) {
        cconn_failed(c, SHALE_ENOMEM, "out of memory resolving");
        return;
    }
    gai->data = c;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->state = CS_RESOLVING;
    c->gai = gai;
    c->nhandles++;
    int rv = uv_getaddrinfo(c->loop, gai, on_resolved, c->host, c->port, &hints);
    if (rv != 0) {
        c->gai = NULL;
        c->nhandles--;
        free(gai);
        char msg[SHALE_ERRMSG_LEN];
        snprintf(msg, sizeof(msg), "cannot resolve '%s': %s", c->host, uv_strerror(rv));
        cconn_failed(c, SHALE_EIO, msg);
    }
}
