/* Mutual TLS on the Raft port: what the transport wrapper (raft_tcp.c) runs
 * instead of raft_uv_tcp's own listen and connect when shaled has TLS.
 *
 * raft_uv reads and writes whatever uv_stream_t the transport hands it, so
 * TLS cannot go inside libraft. Each peer connection here is:
 *
 *   peer <-TCP+TLS-> [tcp, tls_uv session]  pump  [local] <-socketpair-> [raft end] raft_uv
 *
 * raft_uv gets one end of an AF_UNIX socketpair (a uv_pipe_t it owns and
 * frees, as the transport contract says); this file pumps bytes between the
 * other end and the TLS session over the real TCP stream, both ways.
 *
 * Rules it follows:
 *  - nothing reaches raft_uv before the peer is authenticated: the TLS
 *    handshake (the peer's certificate must chain to --tls-ca: inbound
 *    always requires one), then the naming rule (tls_member.h: the
 *    certificate names the member's Raft address), then — inbound — the
 *    raft_uv_tcp handshake read here inside TLS and checked against the
 *    configuration and the source IP (raft_tcp_peer_allowed). libraft 0.15
 *    crashes on malformed messages, so a stranger's bytes end here;
 *  - outbound connections leave from this node's own Raft IP, as in the
 *    plain transport, and write the raft_uv_tcp handshake inside TLS;
 *  - backpressure: a side stops being read while the other side's write
 *    queue is above RT_HIGH_WATER and resumes below RT_LOW_WATER, so a slow
 *    peer (or a slow raft_uv) holds at most about that much per connection;
 *  - teardown: EOF or an error on either side closes both; raft_uv then
 *    reads EOF on its end and closes it (its own close path). Each refusal
 *    or failure before the hand-over logs one warn line;
 *  - a connection that has not been handed over within RT_HANDSHAKE_MS is
 *    closed (a silent stranger holds no descriptor for long).
 *
 * It never interprets Raft messages (only the fixed handshake), never
 * exits, and never touches the client port's connections. Loop thread
 * only. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "log.h"
#include "server.h"
#include "tls_member.h"
#include "tls_uv.h"

#define RT_RBUF (4 * 16384 + TLS_UV_RECORD_MAX) /* TLS read buffer (in-place decrypt) */
#define RT_LBUF (64 * 1024)                     /* raft_uv -> peer read buffer */
#define RT_HIGH_WATER (4u << 20)
#define RT_LOW_WATER (1u << 20)
#define RT_HANDSHAKE_MS 10000
#define RT_HS_ADDR_MAX 136 /* raft_uv_tcp's handshake: address <= 128 + pad */
#define RT_HS_MAX (24 + RT_HS_ADDR_MAX)

enum rt_state { RT_CONNECTING, RT_HANDSHAKE, RT_PEERHS, RT_PUMP };

typedef struct rt_conn rt_conn_t;

struct raft_tls {
    shaled_t *s;
    struct raft_uv_transport *t;
    raft_uv_accept_cb accept_cb;
    uv_tcp_t *listener; /* malloc'd: freed by its close callback, whatever outlives whom */
    int closed;
    rt_conn_t *conns; /* every connection not yet freed */
};

struct rt_conn {
    raft_tls_t *rt;
    rt_conn_t *next;
    int outbound;
    enum rt_state state;
    int closing;
    int open_handles; /* ours: tcp, timer, local; freed at 0 */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_pipe_t local;
    int local_inited;
    int tls_on;
    tls_uv_t tls;
    int tcp_paused, local_paused;
    /* outbound: raft_uv's request until its callback fires */
    struct raft_uv_connect *user;
    raft_uv_connect_cb user_cb;
    uv_connect_t creq;
    uv_getaddrinfo_t gai; /* a host-name member's address, being looked up */
    int resolving;
    raft_id id;
    char address[RT_HS_ADDR_MAX];
    char peer[64]; /* "ip:port" of the TCP peer, for logs */
    /* inbound: the raft_uv_tcp handshake read inside TLS */
    uint8_t hs[RT_HS_MAX];
    size_t hslen;
    uint8_t rbuf[RT_RBUF];
    uint8_t lbuf[RT_LBUF];
};

typedef struct rt_wr {
    uv_write_t w;
    rt_conn_t *c;
    uint8_t data[];
} rt_wr_t;

/* One reference per open handle of ours and per lookup in flight; the
 * last one frees c. */
static void rt_unref(rt_conn_t *c)
{
    if (--c->open_handles > 0)
        return;
    if (c->tls_on)
        tls_uv_free(&c->tls);
    for (rt_conn_t **p = &c->rt->conns; *p != NULL; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    rt_unref(h->data);
}

/* Close everything of c. An outbound connect not yet handed over is
 * answered with status (raft_uv's callback fires exactly once). */
static void rt_close(rt_conn_t *c, int status)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->user != NULL) {
        struct raft_uv_connect *user = c->user;
        raft_uv_connect_cb cb = c->user_cb;
        c->user = NULL;
        user->cb = cb;
        cb(user, NULL, status);
    }
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (c->local_inited)
        uv_close((uv_handle_t *)&c->local, on_handle_closed);
}

static void rt_fail(rt_conn_t *c, const char *msg, const char *why)
{
    log_warn(msg, " peer=%s peer_id=%llu peer_addr=%s outbound=%d why=\"%s\"", c->peer,
             (unsigned long long)c->id, c->address, c->outbound, why);
    rt_close(c, RAFT_NOCONNECTION);
}

static void on_deadline(uv_timer_t *t)
{
    rt_conn_t *c = t->data;
    if (c->state == RT_CONNECTING) { /* an unreachable peer: raft_uv retries, no log */
        rt_close(c, RAFT_NOCONNECTION);
        return;
    }
    rt_fail(c, "raft TLS connection failed", "no TLS and Raft handshake within 10 s");
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- The pump ------------------------------------------------------------------*/

static void on_local_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    rt_conn_t *c = h->data;
    *buf = uv_buf_init((char *)c->lbuf, sizeof(c->lbuf));
}

static void on_tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    rt_conn_t *c = h->data;
    *buf = uv_buf_init((char *)c->rbuf, (unsigned)TLS_UV_READ_ROOM(sizeof(c->rbuf)));
}

static void on_tcp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
static void on_local_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

/* Ciphertext written to the peer: resume reading raft_uv's end below the
 * low-water mark. */
static void on_tcp_written(uv_write_t *w, int status)
{
    rt_wr_t *wr = (rt_wr_t *)w;
    rt_conn_t *c = wr->c;
    free(wr);
    if (c->closing)
        return;
    if (status != 0) {
        rt_close(c, RAFT_NOCONNECTION);
        return;
    }
    if (c->local_paused && c->tcp.write_queue_size < RT_LOW_WATER) {
        c->local_paused = 0;
        uv_read_start((uv_stream_t *)&c->local, on_local_alloc, on_local_read);
    }
}

static void on_local_written(uv_write_t *w, int status)
{
    rt_wr_t *wr = (rt_wr_t *)w;
    rt_conn_t *c = wr->c;
    free(wr);
    if (c->closing)
        return;
    if (status != 0) {
        rt_close(c, RAFT_NOCONNECTION);
        return;
    }
    if (c->tcp_paused && c->local.write_queue_size < RT_LOW_WATER) {
        c->tcp_paused = 0;
        uv_read_start((uv_stream_t *)&c->tcp, on_tcp_alloc, on_tcp_read);
    }
}

/* Plaintext from the peer, to raft_uv (copied). */
static int to_local(rt_conn_t *c, const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    rt_wr_t *wr = malloc(sizeof(*wr) + n);
    if (wr == NULL)
        return UV_ENOMEM;
    wr->c = c;
    memcpy(wr->data, p, n);
    uv_buf_t b = uv_buf_init((char *)wr->data, (unsigned)n);
    int rv = uv_write(&wr->w, (uv_stream_t *)&c->local, &b, 1, on_local_written);
    if (rv != 0) {
        free(wr);
        return rv;
    }
    if (c->local.write_queue_size > RT_HIGH_WATER && !c->tcp_paused) {
        c->tcp_paused = 1;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    return 0;
}

/* Bytes raft_uv wrote on its end: encrypt them to the peer. */
static void on_local_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    rt_conn_t *c = st->data;
    (void)buf;
    if (c->closing || n == 0)
        return;
    if (n < 0) { /* raft_uv closed its end */
        rt_close(c, RAFT_NOCONNECTION);
        return;
    }
    rt_wr_t *wr = malloc(sizeof(*wr));
    if (wr == NULL) {
        rt_close(c, RAFT_NOCONNECTION);
        return;
    }
    wr->c = c;
    uv_buf_t b = uv_buf_init((char *)c->lbuf, (unsigned)n);
    if (tls_uv_write(&c->tls, &wr->w, &b, 1, on_tcp_written) != 0) {
        free(wr);
        rt_close(c, RAFT_NOCONNECTION);
        return;
    }
    if (c->tcp.write_queue_size > RT_HIGH_WATER && !c->local_paused) {
        c->local_paused = 1;
        uv_read_stop((uv_stream_t *)&c->local);
    }
}

/* The peer is authenticated: make the socketpair, hand one end to raft_uv
 * and start pumping. rest: plaintext that followed the handshake. */
static void start_pump(rt_conn_t *c, const uint8_t *rest, size_t nrest)
{
    raft_tls_t *rt = c->rt;
    uv_os_sock_t fds[2];
    uv_pipe_t *raft_end = raft_malloc(sizeof(*raft_end));
    int rv = raft_end == NULL
                 ? UV_ENOMEM
                 : uv_socketpair(SOCK_STREAM, 0, fds, UV_NONBLOCK_PIPE, UV_NONBLOCK_PIPE);
    if (rv != 0) {
        raft_free(raft_end);
        rt_fail(c, "raft TLS connection failed", uv_strerror(rv));
        return;
    }
    uv_pipe_init(rt->s->loop, &c->local, 0);
    c->local.data = c;
    c->local_inited = 1;
    c->open_handles++;
    uv_pipe_init(rt->s->loop, raft_end, 0);
    int lrv = uv_pipe_open(&c->local, fds[0]);
    if (lrv != 0 || uv_pipe_open(raft_end, fds[1]) != 0) {
        if (lrv != 0)
            close(fds[0]); /* else c->local owns it */
        close(fds[1]);
        uv_close((uv_handle_t *)raft_end, (uv_close_cb)raft_free);
        rt_fail(c, "raft TLS connection failed", "cannot open the socketpair");
        return;
    }
    uv_timer_stop(&c->timer);
    c->state = RT_PUMP;
    uv_read_start((uv_stream_t *)&c->local, on_local_alloc, on_local_read);
    if (to_local(c, rest, nrest) != 0) {
        uv_close((uv_handle_t *)raft_end, (uv_close_cb)raft_free);
        rt_close(c, RAFT_NOCONNECTION);
        return;
    }
    raft_end->data = NULL; /* raft_uv's from here on */
    if (c->outbound) {
        struct raft_uv_connect *user = c->user;
        raft_uv_connect_cb cb = c->user_cb;
        c->user = NULL;
        user->cb = cb;
        cb(user, (struct uv_stream_s *)raft_end, 0);
    } else {
        rt->accept_cb(rt->t, c->id, c->address, (struct uv_stream_s *)raft_end);
    }
}

/* Inbound: collect the raft_uv_tcp handshake (protocol, id, address
 * length, address) from plaintext; once whole, check the peer and start
 * the pump with whatever followed it. */
static void inbound_handshake(rt_conn_t *c, const uint8_t *p, size_t n)
{
    for (;;) {
        size_t want = 24;
        if (c->hslen >= 24) {
            uint64_t alen = get_le64(c->hs + 16);
            if (get_le64(c->hs) != 1 || alen == 0 || alen > RT_HS_ADDR_MAX) {
                rt_fail(c, "raft connection refused", "bad Raft handshake");
                return;
            }
            want = 24 + (size_t)alen;
        }
        if (c->hslen == want && want > 24)
            break;
        if (n == 0)
            return; /* wait for more */
        size_t take = want - c->hslen < n ? want - c->hslen : n;
        memcpy(c->hs + c->hslen, p, take);
        c->hslen += take;
        p += take;
        n -= take;
    }
    size_t alen = c->hslen - 24;
    if (memchr(c->hs + 24, '\0', alen) == NULL) {
        rt_fail(c, "raft connection refused", "bad Raft handshake (address)");
        return;
    }
    c->id = get_le64(c->hs + 8);
    snprintf(c->address, sizeof(c->address), "%s", (const char *)c->hs + 24);
    char why[300];
    if (!raft_tcp_peer_allowed(c->rt->s, c->id, c->address, (uv_stream_t *)&c->tcp, why,
                               sizeof(why))) {
        rt_fail(c, "raft connection refused: not a member", why);
        return;
    }
    if (!tls_member_named(c->tls.sess, c->address, why, sizeof(why))) {
        rt_fail(c, "raft connection refused: certificate names no member", why);
        return;
    }
    start_pump(c, p, n);
}

/* The TLS handshake ended: check the peer's certificate names the member
 * (outbound: the one dialed; inbound: after its Raft handshake). */
static void tls_established(rt_conn_t *c)
{
    char why[300];
    if (!c->outbound) {
        c->state = RT_PEERHS;
        return;
    }
    if (!tls_member_named(c->tls.sess, c->address, why, sizeof(why))) {
        rt_fail(c, "raft connection refused: certificate names no member", why);
        return;
    }
    /* raft_uv_tcp's handshake: protocol 1, our id, our address padded to 8. */
    const char *self = c->rt->s->cfg.raft;
    size_t alen = strlen(self) + 1, padded = (alen + 7) & ~(size_t)7;
    uint8_t hs[RT_HS_MAX] = {0};
    if (24 + padded > sizeof(hs)) {
        rt_fail(c, "raft TLS connection failed", "own Raft address too long");
        return;
    }
    put_le64(hs, 1);
    put_le64(hs + 8, c->rt->s->cfg.id);
    put_le64(hs + 16, padded);
    memcpy(hs + 24, self, alen - 1);
    rt_wr_t *wr = malloc(sizeof(*wr));
    uv_buf_t b = uv_buf_init((char *)hs, (unsigned)(24 + padded));
    if (wr == NULL) {
        rt_fail(c, "raft TLS connection failed", "out of memory");
        return;
    }
    wr->c = c;
    if (tls_uv_write(&c->tls, &wr->w, &b, 1, on_tcp_written) != 0) {
        free(wr);
        rt_fail(c, "raft TLS connection failed", "cannot write the Raft handshake");
        return;
    }
    start_pump(c, NULL, 0);
}

static void on_tcp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    rt_conn_t *c = st->data;
    (void)buf;
    if (c->closing || n == 0)
        return;
    if (n < 0) {
        if (c->state != RT_PUMP)
            rt_fail(c, "raft TLS connection failed",
                    n == UV_EOF ? "the peer closed the connection during the handshake"
                                : uv_strerror((int)n));
        else
            rt_close(c, RAFT_NOCONNECTION);
        return;
    }
    size_t plen = 0;
    int established = 0;
    int rv = tls_uv_feed(&c->tls, c->rbuf, (size_t)n, sizeof(c->rbuf), &plen, &established);
    if (rv != 0) {
        rt_fail(c, "raft TLS connection failed",
                tls_uv_errmsg(&c->tls)[0] != '\0' ? tls_uv_errmsg(&c->tls) : uv_strerror(rv));
        return;
    }
    if (established) {
        tls_established(c);
        if (c->closing)
            return;
    }
    if (plen == 0)
        return;
    if (c->state == RT_PEERHS) {
        inbound_handshake(c, c->rbuf, plen);
    } else if (c->state == RT_PUMP) {
        if (to_local(c, c->rbuf, plen) != 0)
            rt_close(c, RAFT_NOCONNECTION);
    } else {
        rt_fail(c, "raft TLS connection failed", "data before the handshake ended");
    }
}

/* ---- Connections -------------------------------------------------------------------*/

static rt_conn_t *conn_new(raft_tls_t *rt, int outbound)
{
    rt_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->rt = rt;
    c->outbound = outbound;
    uv_tcp_init(rt->s->loop, &c->tcp);
    uv_timer_init(rt->s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    c->next = rt->conns;
    rt->conns = c;
    uv_timer_start(&c->timer, on_deadline, RT_HANDSHAKE_MS, 0);
    return c;
}

/* TCP is up: start TLS (a client sends its ClientHello now). */
static void start_tls(rt_conn_t *c)
{
    char err[TLS_ERRLEN];
    shaled_t *s = c->rt->s;
    tls_ctx_t *ctx = c->outbound ? s->tls_client : s->tls_raft;
    uv_tcp_nodelay(&c->tcp, 1);
    if (tls_uv_start(&c->tls, ctx, (uv_stream_t *)&c->tcp, NULL, err, sizeof(err)) != 0) {
        rt_fail(c, "raft TLS connection failed", err);
        return;
    }
    c->tls_on = 1;
    c->state = RT_HANDSHAKE;
    uv_read_start((uv_stream_t *)&c->tcp, on_tcp_alloc, on_tcp_read);
}

static void on_accept(uv_stream_t *server, int status)
{
    raft_tls_t *rt = server->data;
    if (status != 0 || rt->closed)
        return;
    rt_conn_t *c = conn_new(rt, 0);
    if (c == NULL)
        return;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        rt_close(c, 0);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char ip[48];
        int port = 0;
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
    }
    start_tls(c);
}

static void on_connected(uv_connect_t *req, int status)
{
    rt_conn_t *c = req->data;
    if (c->closing)
        return;
    if (status != 0) {
        rt_close(c, RAFT_NOCONNECTION); /* a peer that is down: raft_uv retries, no log */
        return;
    }
    start_tls(c);
}

/* ---- Public ---------------------------------------------------------------------------*/

raft_tls_t *raft_tls_new(shaled_t *s, struct raft_uv_transport *t)
{
    raft_tls_t *rt = calloc(1, sizeof(*rt));
    if (rt != NULL) {
        rt->s = s;
        rt->t = t;
    }
    return rt;
}

int raft_tls_listen(raft_tls_t *rt, raft_uv_accept_cb cb)
{
    /* At start, on the loop thread: a blocking lookup is acceptable here
     * (shaled.c checked the name already; addr.h). */
    struct sockaddr_storage ss;
    char err[600];
    if (addr_resolve_blocking(rt->s->cfg.raft, AF_UNSPEC, &ss, err, sizeof(err)) != 0) {
        log_error("cannot listen on the Raft port", " err=\"%s\"", err);
        return RAFT_IOERR;
    }
    rt->listener = malloc(sizeof(*rt->listener));
    if (rt->listener == NULL) {
        return RAFT_NOMEM;
    }
    uv_tcp_init(rt->s->loop, rt->listener);
    rt->listener->data = rt;
    int rv = uv_tcp_bind(rt->listener, (const struct sockaddr *)&ss, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)rt->listener, 128, on_accept);
    if (rv != 0) {
        uv_close((uv_handle_t *)rt->listener, (uv_close_cb)free);
        rt->listener = NULL;
        log_error("cannot listen on the Raft port", " addr=%s err=%s", rt->s->cfg.raft,
                  uv_strerror(rv));
        return RAFT_IOERR;
    }
    rt->accept_cb = cb;
    return 0;
}

/* Connect c's socket to dst, from this node's own Raft address (as
 * resolved at start, s->raft_src), as the plain transport does. 0 or a
 * libuv error. */
static int connect_to(rt_conn_t *c, const struct sockaddr *dst)
{
    const struct sockaddr_storage *src = &c->rt->s->raft_src;
    int rv = 0;
    if (src->ss_family == dst->sa_family)
        rv = uv_tcp_bind(&c->tcp, (const struct sockaddr *)src, 0);
    c->creq.data = c;
    if (rv == 0)
        rv = uv_tcp_connect(&c->creq, &c->tcp, dst, on_connected);
    return rv;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    rt_conn_t *c = req->data;
    c->resolving = 0;
    if (!c->closing) {
        if (status != 0 || res == NULL)
            log_debug("cannot resolve a raft peer", " addr=%s err=\"%s\"", c->address,
                      uv_strerror(status));
        if (status != 0 || res == NULL || connect_to(c, res->ai_addr) != 0)
            rt_close(c, RAFT_NOCONNECTION); /* raft_uv retries: looked up again */
    }
    uv_freeaddrinfo(res);
    rt_unref(c);
}

int raft_tls_connect(raft_tls_t *rt, struct raft_uv_connect *req, raft_id id, const char *address,
                     raft_uv_connect_cb cb)
{
    struct sockaddr_storage dst;
    char host[ADDR_HOST_MAX], port[8];
    if (rt->closed)
        return RAFT_CANCELED;
    if (addr_split(address, host, sizeof(host), port, sizeof(port)) != 0)
        return RAFT_NOCONNECTION;
    rt_conn_t *c = conn_new(rt, 1);
    if (c == NULL)
        return RAFT_NOMEM;
    c->user = req;
    c->user_cb = cb;
    c->id = id;
    snprintf(c->address, sizeof(c->address), "%s", address);
    snprintf(c->peer, sizeof(c->peer), "%s", address);
    int rv;
    if (addr_numeric(address, 0, &dst) == 0) {
        rv = connect_to(c, (const struct sockaddr *)&dst);
    } else { /* a host name: looked up off the loop thread on every connect */
        c->gai.data = c;
        rv = addr_resolve_start(rt->s->loop, &c->gai, on_resolved, address);
        if (rv == 0) {
            c->resolving = 1;
            c->open_handles++;
        }
    }
    if (rv != 0) {
        c->user = NULL; /* refused up front: the callback must not fire */
        rt_close(c, 0);
        return RAFT_NOCONNECTION;
    }
    return 0;
}

void raft_tls_close(raft_tls_t *rt)
{
    rt->closed = 1;
    if (rt->listener != NULL) {
        uv_close((uv_handle_t *)rt->listener, (uv_close_cb)free);
        rt->listener = NULL;
    }
    for (rt_conn_t *c = rt->conns; c != NULL; c = c->next)
        rt_close(c, RAFT_CANCELED);
}

void raft_tls_free(raft_tls_t *rt)
{
    free(rt); /* after the loop ran the closes raft_tls_close started */
}
