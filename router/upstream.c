/* Upstream: the router's pooled, multiplexed connections to nodes.
 *
 * What this file owns: one rt_upnode_t per node address the router has
 * talked to, each with up to --node-conns connections; on each connection
 * the HELLO exchange (peer kind ROUTER, the router's cluster id), the
 * router-assigned request ids and the map from id to the call waiting for
 * its answer, coalesced output, reconnect backoff, and the detection of
 * nodes that stopped answering.
 *
 * Rules:
 *  - a call's callback runs exactly once, never inside rt_up_send, unless
 *    the caller cancels it first; a canceled call stays in the id map until
 *    its answer (or the connection's end) so ids are never reused;
 *  - HELLO is the first frame of a connection and requests are pipelined
 *    right behind it (the node accepts that); a HELLO refused (other
 *    cluster, other protocol version) fails the connection;
 *  - a connection that fails fails all its calls with SHALE_EIO, saying
 *    whether each one was handed to the socket (a mutation that was may
 *    have been applied: the caller re-sends it with the same Session);
 *  - a node whose connection attempt failed is not dialed again before its
 *    backoff (50 ms doubling to 1 s) ends; meanwhile rt_up_send refuses at
 *    once so requests move to other members instead of queueing;
 *  - a connection with calls outstanding that received nothing for
 *    max(2 x --timeout-ms, 2 s), or that is still connecting after 2 s, is
 *    closed (a stopped or partitioned node);
 *  - with TLS (--tls-cert) the handshake comes first and HELLO waits behind
 *    it; the node's certificate must chain to --tls-ca (any member's name:
 *    checking it against the map is part 2 of docs/security.md), and the
 *    router presents its own; a failed handshake fails the connection like a
 *    refused connect (with backoff), and the 2 s connect limit covers it;
 *  - a node known by host name (its address in the map) is looked up with
 *    uv_getaddrinfo on every new connection (never cached): a name that
 *    does not resolve fails the connection like a refused connect (logged,
 *    backoff, its calls fail as unavailable), and a name that moved is
 *    followed on the next connection;
 *
 * Never interprets answers (forward.c does) and never chooses the node. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "idmap.h"
#include "router.h"
#include "uvwrite.h"
#include "tls_uv.h"

#define UP_READ_BUF 65536
#define UP_BACKOFF_FIRST_MS 50
#define UP_BACKOFF_CAP_MS 1000
#define UP_CONNECT_TIMEOUT_MS 2000
#define UP_STALL_MIN_MS 2000
#define UP_SWEEP_MS 200
#define UP_KEEPALIVE_S 30
#define UP_MAX_CANCELED 65536 /* canceled calls awaiting answers on one connection */

enum { UC_CONNECTING, UC_TLS, UC_OPEN, UC_READY, UC_CLOSING };

typedef struct rt_upconn rt_upconn_t;

struct rt_upcall {
    rt_q_t link; /* conn->calls, send order */
    rt_upconn_t *conn;
    uint64_t id;
    rt_up_cb cb; /* NULL once canceled */
    void *ud;
    int written;
};

struct rt_upconn {
    rt_upnode_t *node;
    rt_router_t *r;
    unsigned slot; /* index in node->conns */
    int state;
    int ever_ready;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_getaddrinfo_t gai; /* the node's host name, being looked up */
    int resolving;        /* gai in flight: it frees c if the handle closed meanwhile */
    int handle_closed;    /* tcp closed while resolving */
    frame_decoder_t dec;
    uint64_t next_id, hello_id;
    rt_idmap_t ids; /* id -> call */
    rt_q_t calls;   /* every call outstanding, send order */
    size_t nunsent; /* the newest calls not yet handed to a write */
    size_t ncanceled;
    uv_buf_t *out;
    size_t nout, capout;
    rt_q_t dirty_link;
    uint64_t started_ms, last_rx_ms;
    uint64_t busy_since; /* when the first of the calls outstanding was sent */
    int tls_on;          /* tls holds a session */
    tls_uv_t tls;
    uint8_t rbuf[UP_READ_BUF];
};

struct rt_upnode {
    rt_upnode_t *hnext;
    char addr[128];
    char host[128];
    int port;
    rt_upconn_t **conns; /* cfg.node_conns entries, NULL: none */
    unsigned fails;      /* consecutive failed connection attempts */
    uint64_t retry_at;   /* no new connection before (loop ms) */
    char last_err[200];
};

typedef struct upwrite {
    uv_write_t w;
    rt_upconn_t *conn;
    uv_buf_t *bufs;
    size_t n;
} upwrite_t;

static void conn_fail(rt_upconn_t *c, const char *msg);
static void on_sweep(uv_timer_t *t);

void rt_up_init(rt_router_t *r)
{
    memset(&r->up, 0, sizeof(r->up));
    rt_q_init(&r->up.dirty);
    uv_timer_init(r->loop, &r->up.sweep);
    r->up.sweep.data = r;
    uv_timer_start(&r->up.sweep, on_sweep, UP_SWEEP_MS, UP_SWEEP_MS);
}

static unsigned hash_addr(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h % RT_UP_BUCKETS;
}

static rt_upnode_t *node_get(rt_router_t *r, const char *addr, char *err, size_t errlen)
{
    unsigned b = hash_addr(addr);
    for (rt_upnode_t *n = r->up.buckets[b]; n != NULL; n = n->hnext)
        if (strcmp(n->addr, addr) == 0)
            return n;
    rt_upnode_t *n = calloc(1, sizeof(*n));
    if (n == NULL || strlen(addr) >= sizeof(n->addr)) {
        free(n);
        snprintf(err, errlen, "out of memory or address too long: %.100s", addr);
        return NULL;
    }
    n->conns = calloc(r->cfg.node_conns, sizeof(*n->conns));
    if (n->conns == NULL) {
        free(n);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(n->addr, sizeof(n->addr), "%s", addr);
    if (rt_split_addr(addr, n->host, sizeof(n->host), &n->port) != 0) {
        free(n->conns);
        free(n);
        snprintf(err, errlen, "bad node address '%.100s' in the cluster map", addr);
        return NULL;
    }
    n->hnext = r->up.buckets[b];
    r->up.buckets[b] = n;
    r->up.nnodes++;
    return n;
}

static void mark_dirty(rt_upconn_t *c)
{
    if (!rt_q_linked(&c->dirty_link))
        rt_q_push(&c->r->up.dirty, &c->dirty_link);
}

static int queue_frame(rt_upconn_t *c, uint8_t *frame, size_t len)
{
    if (c->nout == c->capout) {
        size_t cap = c->capout ? c->capout * 2 : 16;
        uv_buf_t *nb = realloc(c->out, cap * sizeof(*nb));
        if (nb == NULL)
            return -1;
        c->out = nb;
        c->capout = cap;
    }
    c->out[c->nout++] = uv_buf_init((char *)frame, (unsigned)len);
    mark_dirty(c);
    return 0;
}

static void conn_free(rt_upconn_t *c);

static void on_conn_closed(uv_handle_t *h)
{
    rt_upconn_t *c = h->data;
    if (c->resolving) {
        c->handle_closed = 1; /* on_resolved frees it */
        return;
    }
    conn_free(c);
}

static void conn_free(rt_upconn_t *c)
{
    if (c->tls_on)
        tls_uv_free(&c->tls);
    frame_decoder_free(&c->dec);
    for (size_t i = 0; i < c->nout; i++)
        free(c->out[i].base);
    free(c->out);
    rt_idmap_free(&c->ids);
    free(c);
}

static void on_write(uv_write_t *w, int status)
{
    upwrite_t *uw = (upwrite_t *)w;
    rt_upconn_t *c = uw->conn;
    for (size_t i = 0; i < uw->n; i++)
        free(uw->bufs[i].base);
    free(uw->bufs);
    free(uw);
    if (status != 0 && c->state != UC_CLOSING) {
        char msg[320];
        snprintf(msg, sizeof(msg), "write to %s failed: %s", c->node->addr, uv_strerror(status));
        conn_fail(c, msg);
    }
}

static void conn_flush(rt_upconn_t *c)
{
    if (c->nout == 0 || (c->state != UC_OPEN && c->state != UC_READY))
        return;
    upwrite_t *uw = calloc(1, sizeof(*uw));
    if (uw == NULL) {
        conn_fail(c, "out of memory writing to a node");
        return;
    }
    /* The write takes a copy of the buffer list; c->out keeps its
     * capacity for the next turn. */
    uw->bufs = malloc(c->nout * sizeof(*uw->bufs));
    if (uw->bufs == NULL) {
        free(uw);
        conn_fail(c, "out of memory writing to a node");
        return;
    }
    memcpy(uw->bufs, c->out, c->nout * sizeof(*uw->bufs));
    uw->conn = c;
    uw->n = c->nout;
    c->nout = 0;
    /* Everything queued so far is now on its way to the node. */
    rt_q_t *n = c->calls.prev;
    for (; c->nunsent > 0 && n != &c->calls; n = n->prev, c->nunsent--)
        rt_q_data(n, rt_upcall_t, link)->written = 1;
    c->nunsent = 0;
    int rv = c->tls_on ? tls_uv_write(&c->tls, &uw->w, uw->bufs, (unsigned)uw->n, on_write)
                       : uvw_write(&uw->w, (uv_stream_t *)&c->tcp, uw->bufs, (unsigned)uw->n,
                                   on_write);
    if (rv == 1) {
        on_write(&uw->w, 0); /* written whole now: complete as libuv would */
    } else if (rv != 0) {
        for (size_t i = 0; i < uw->n; i++)
            free(uw->bufs[i].base);
        free(uw->bufs);
        free(uw);
        char msg[320];
        snprintf(msg, sizeof(msg), "write to %s failed: %s", c->node->addr, uv_strerror(rv));
        conn_fail(c, msg);
    }
}

void rt_up_flush_all(rt_router_t *r)
{
    while (!rt_q_empty(&r->up.dirty)) {
        rt_q_t *n = r->up.dirty.next;
        rt_q_remove(n);
        conn_flush(rt_q_data(n, rt_upconn_t, dirty_link));
    }
}

/* The connection is over: detach it from its node, close the handle and
 * fail every call it carried. Callbacks may send again (to a new
 * connection): the calls are detached before any callback runs. */
static void conn_fail(rt_upconn_t *c, const char *msg)
{
    if (c->state == UC_CLOSING)
        return;
    rt_upnode_t *node = c->node;
    rt_router_t *r = c->r;
    uint64_t now = uv_now(r->loop);
    if (!c->ever_ready) {
        /* Never got through: back off before dialing this node again. */
        unsigned f = node->fails < 16 ? node->fails : 16;
        uint64_t d = (uint64_t)UP_BACKOFF_FIRST_MS << f;
        node->retry_at = now + (d < UP_BACKOFF_CAP_MS ? d : UP_BACKOFF_CAP_MS);
        node->fails++;
    }
    snprintf(node->last_err, sizeof(node->last_err), "%s", msg);
    if (r->stopping)
        rt_debug("node connection closed", " node=%s", node->addr);
    else if (node->fails <= 1 || (node->fails % 50) == 0)
        rt_warn("node connection failed", " node=%s err=\"%s\" outstanding=%llu", node->addr, msg,
                (unsigned long long)c->ids.n);
    c->state = UC_CLOSING;
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai); /* on_resolved runs either way */
    if (node->conns[c->slot] == c)
        node->conns[c->slot] = NULL;
    if (rt_q_linked(&c->dirty_link))
        rt_q_remove(&c->dirty_link);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);

    rt_q_t list;
    rt_q_init(&list);
    while (!rt_q_empty(&c->calls)) {
        rt_q_t *n = c->calls.next;
        rt_q_remove(n);
        rt_q_push(&list, n);
    }
    rt_idmap_free(&c->ids);
    while (!rt_q_empty(&list)) {
        rt_upcall_t *call = rt_q_data(list.next, rt_upcall_t, link);
        rt_q_remove(&call->link);
        if (call->cb != NULL)
            call->cb(call->ud, SHALE_EIO, call->written, 0, NULL, 0, msg);
        free(call);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    rt_upconn_t *c = h->data;
    buf->base = (char *)c->rbuf;
    /* With TLS the plaintext is decrypted into rbuf: leave room for it. */
    buf->len = c->tls_on ? TLS_UV_READ_ROOM(UP_READ_BUF) : UP_READ_BUF;
}

static int handle_hello_reply(rt_upconn_t *c, const frame_hdr_t *h, const uint8_t *p)
{
    char msg[400];
    if (h->type == SHALE_MSG_ERROR) {
        Shale__Error *e = (Shale__Error *)wire_unpack(SHALE_MSG_ERROR, p, h->len);
        snprintf(msg, sizeof(msg), "%s refused HELLO: %s", c->node->addr,
                 e != NULL && e->message != NULL ? e->message : "(no message)");
        if (e != NULL)
            protobuf_c_message_free_unpacked(&e->base, NULL);
        rt_error("node refused the router's HELLO", " node=%s err=\"%s\"", c->node->addr, msg);
        conn_fail(c, msg);
        return 1;
    }
    if (h->type != SHALE_MSG_HELLO_REPLY) {
        snprintf(msg, sizeof(msg), "%s answered HELLO with %s: not a Shale node?", c->node->addr,
                 frame_type_name(h->type));
        conn_fail(c, msg);
        return 1;
    }
    Shale__HelloReply *hr = (Shale__HelloReply *)wire_unpack(h->type, p, h->len);
    if (hr == NULL) {
        snprintf(msg, sizeof(msg), "malformed HELLO_REPLY from %s", c->node->addr);
        conn_fail(c, msg);
        return 1;
    }
    int bad = 0;
    if (hr->protocol_version != SHALE_PROTOCOL_VERSION) {
        snprintf(msg, sizeof(msg), "%s speaks protocol version %u, the router %u", c->node->addr,
                 hr->protocol_version, SHALE_PROTOCOL_VERSION);
        bad = 1;
    } else if (hr->cluster_id[0] != '\0' && strcmp(hr->cluster_id, c->r->cfg.cluster_id) != 0) {
        snprintf(msg, sizeof(msg), "%s belongs to cluster '%.64s', not '%.64s'", c->node->addr,
                 hr->cluster_id, c->r->cfg.cluster_id);
        bad = 1;
    }
    protobuf_c_message_free_unpacked(&hr->base, NULL);
    if (bad) {
        rt_error("node refused: wrong peer", " node=%s err=\"%s\"", c->node->addr, msg);
        conn_fail(c, msg);
        return 1;
    }
    c->state = UC_READY;
    c->ever_ready = 1;
    c->node->fails = 0;
    c->node->retry_at = 0;
    return 0;
}

static int on_frame(void *ud, const frame_hdr_t *h, const uint8_t *payload)
{
    rt_upconn_t *c = ud;
    if (c->state == UC_CLOSING)
        return 1;
    if (c->state == UC_OPEN) {
        if (h->id != c->hello_id && !(h->id == 0 && h->type == SHALE_MSG_ERROR)) {
            conn_fail(c, "node answered before HELLO_REPLY");
            return 1;
        }
        return handle_hello_reply(c, h, payload);
    }
    if (h->id == 0 && h->type == SHALE_MSG_ERROR) {
        /* The node lost framing on our stream (it says so and closes). */
        Shale__Error *e = (Shale__Error *)wire_unpack(SHALE_MSG_ERROR, payload, h->len);
        char msg[400];
        snprintf(msg, sizeof(msg), "%s closed the connection: %s", c->node->addr,
                 e != NULL && e->message != NULL ? e->message : "protocol error");
        if (e != NULL)
            protobuf_c_message_free_unpacked(&e->base, NULL);
        conn_fail(c, msg);
        return 1;
    }
    rt_upcall_t *call = rt_idmap_del(&c->ids, h->id);
    if (call == NULL)
        return 0; /* not ours: ignore */
    rt_q_remove(&call->link);
    if (call->cb != NULL)
        call->cb(call->ud, 0, 1, h->type, payload, h->len, NULL);
    else
        c->ncanceled--;
    free(call);
    return c->state == UC_CLOSING ? 1 : 0;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf; /* always c->rbuf */
    rt_upconn_t *c = st->data;
    if (nread == 0 || c->state == UC_CLOSING)
        return;
    if (nread < 0) {
        char msg[320];
        snprintf(msg, sizeof(msg), "connection to %s lost: %s", c->node->addr,
                 nread == UV_EOF ? "closed by the node" : uv_strerror((int)nread));
        conn_fail(c, msg);
        return;
    }
    c->last_rx_ms = uv_now(c->r->loop);
    size_t n = (size_t)nread;
    if (c->tls_on) {
        size_t plen = 0;
        int established = 0;
        int trv = tls_uv_feed(&c->tls, c->rbuf, n, UP_READ_BUF, &plen, &established);
        if (trv != 0) {
            char msg[400];
            snprintf(msg, sizeof(msg), "TLS with %s: %s", c->node->addr,
                     trv < 0 && tls_uv_errmsg(&c->tls)[0] != '\0' ? tls_uv_errmsg(&c->tls)
                                                                  : uv_strerror(trv));
            conn_fail(c, msg);
            return;
        }
        if (established && c->state == UC_TLS) {
            /* HELLO and the calls queued behind it go out now. */
            c->state = UC_OPEN;
            conn_flush(c);
            if (c->state == UC_CLOSING)
                return;
        }
        if (plen == 0)
            return;
        n = plen;
    }
    int rv = frame_decoder_feed(&c->dec, c->rbuf, n, on_frame, c);
    if (rv < 0 && c->state != UC_CLOSING) {
        char msg[320];
        snprintf(msg, sizeof(msg), "bad frame from %s: %s", c->node->addr, shale_strerror(rv));
        conn_fail(c, msg);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    rt_upconn_t *c = req->data;
    if (c->state == UC_CLOSING)
        return;
    if (status != 0) {
        char msg[320];
        snprintf(msg, sizeof(msg), "cannot connect to %s: %s", c->node->addr, uv_strerror(status));
        conn_fail(c, msg);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, UP_KEEPALIVE_S);
    c->last_rx_ms = uv_now(c->r->loop);
    if (c->r->tls_client != NULL) {
        char err[TLS_ERRLEN];
        if (tls_uv_start(&c->tls, c->r->tls_client, (uv_stream_t *)&c->tcp, NULL, err,
                         sizeof(err)) != 0) {
            char msg[400];
            snprintf(msg, sizeof(msg), "TLS with %s: %s", c->node->addr, err);
            conn_fail(c, msg);
            return;
        }
        c->tls_on = 1;
        c->state = UC_TLS; /* HELLO once the handshake is done */
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
        return;
    }
    c->state = UC_OPEN;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
    conn_flush(c);
}

static uint8_t *hello_frame(rt_router_t *r, uint64_t id, size_t *len)
{
    Shale__Hello h = SHALE__HELLO__INIT;
    h.protocol_version = SHALE_PROTOCOL_VERSION;
    h.cluster_id = r->cfg.cluster_id;
    h.peer_kind = SHALE__PEER_KIND__PEER_ROUTER;
    h.client_name = (char *)"shale-router";
    if (r->authn.cred != NULL) { /* the router's own user (authn.c) */
        h.has_credential = 1;
        h.credential.data = r->authn.cred;
        h.credential.len = r->authn.cred_len;
    }
    return wire_pack(SHALE_MSG_HELLO, id, &h.base, UINT32_MAX, len);
}

/* The node's host name looked up (conn_open): connect, or fail the
 * connection like a refused connect (backoff; its calls fail as
 * unavailable). */
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    rt_upconn_t *c = req->data;
    c->resolving = 0;
    if (c->handle_closed) {
        uv_freeaddrinfo(res);
        conn_free(c);
        return;
    }
    if (c->state == UC_CLOSING) {
        /* failed meanwhile: the handle is closing, on_conn_closed frees */
    } else if (status == 0 && res != NULL) {
        int rv = uv_tcp_connect(&c->creq, &c->tcp, res->ai_addr, on_connect);
        if (rv != 0) {
            char msg[320];
            snprintf(msg, sizeof(msg), "cannot connect to %s: %s", c->node->addr, uv_strerror(rv));
            conn_fail(c, msg);
        }
    } else {
        char msg[320];
        addr_resolve_error(c->node->addr, status, msg, sizeof(msg));
        conn_fail(c, msg);
    }
    uv_freeaddrinfo(res);
}

static rt_upconn_t *conn_open(rt_router_t *r, rt_upnode_t *node, unsigned slot, char *err,
                              size_t errlen)
{
    /* A numeric address is dialed at once; a host name is looked up with
     * uv_getaddrinfo first, again on every new connection, so a node whose
     * name moves to another address is followed (addr.h). */
    struct sockaddr_storage ss;
    int numeric = addr_numeric(node->addr, 0, &ss) == 0;
    rt_upconn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->node = node;
    c->r = r;
    c->slot = slot;
    c->state = UC_CONNECTING;
    c->next_id = 1;
    c->started_ms = uv_now(r->loop);
    rt_q_init(&c->calls);
    rt_q_init(&c->dirty_link);
    rt_idmap_init(&c->ids);
    /* Answers may be as large as the node allows (its default at least). */
    uint64_t upmax = r->cfg.max_frame > FRAME_DEFAULT_MAX ? r->cfg.max_frame : FRAME_DEFAULT_MAX;
    frame_decoder_init(&c->dec, (uint32_t)upmax);
    size_t hlen;
    c->hello_id = c->next_id++;
    uint8_t *hf = hello_frame(r, c->hello_id, &hlen);
    if (hf == NULL || queue_frame(c, hf, hlen) != 0) {
        free(hf);
        frame_decoder_free(&c->dec);
        free(c->out);
        free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    uv_tcp_init(r->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    node->conns[slot] = c;
    int rv;
    if (numeric) {
        rv = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&ss, on_connect);
    } else {
        c->gai.data = c;
        rv = addr_resolve_start(r->loop, &c->gai, on_resolved, node->addr);
        c->resolving = rv == 0;
    }
    if (rv != 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", node->addr, uv_strerror(rv));
        conn_fail(c, err); /* no calls yet: nothing to call back */
        return NULL;
    }
    return c;
}

/* The connection for the next call: the least loaded open one; a new one
 * while the pool has room (and the node is not in its backoff). */
static rt_upconn_t *pick_conn(rt_router_t *r, rt_upnode_t *node, char *err, size_t errlen)
{
    rt_upconn_t *best = NULL;
    int free_slot = -1;
    for (unsigned i = 0; i < r->cfg.node_conns; i++) {
        rt_upconn_t *c = node->conns[i];
        if (c == NULL) {
            if (free_slot < 0)
                free_slot = (int)i;
            continue;
        }
        if (best == NULL || c->ids.n < best->ids.n)
            best = c;
    }
    /* Grow the pool only under load: a second connection when the first
     * carries requests. */
    if (free_slot >= 0 && (best == NULL || best->ids.n > 0)) {
        if (uv_now(r->loop) < node->retry_at) {
            if (best != NULL)
                return best;
            snprintf(err, errlen, "node %s is unreachable (%s)", node->addr,
                     node->last_err[0] ? node->last_err : "connection failed");
            return NULL;
        }
        rt_upconn_t *c = conn_open(r, node, (unsigned)free_slot, err, errlen);
        if (c != NULL || best == NULL)
            return c;
    }
    return best;
}

rt_upcall_t *rt_up_send(rt_router_t *r, const char *addr, uint8_t *frame, size_t flen, rt_up_cb cb,
                        void *ud, char *err, size_t errlen)
{
    rt_upnode_t *node = node_get(r, addr, err, errlen);
    rt_upconn_t *c = node != NULL ? pick_conn(r, node, err, errlen) : NULL;
    rt_upcall_t *call = c != NULL ? calloc(1, sizeof(*call)) : NULL;
    if (c != NULL && call == NULL)
        snprintf(err, errlen, "out of memory");
    if (call == NULL) {
        free(frame);
        return NULL;
    }
    call->conn = c;
    call->id = c->next_id++;
    call->cb = cb;
    call->ud = ud;
    rt_q_init(&call->link);
    /* The caller set type and length; the id is this connection's. */
    frame_hdr_t h;
    h.len = (uint32_t)(flen - FRAME_HEADER_SIZE);
    h.type = (uint16_t)((frame[6] << 8) | frame[7]);
    h.id = call->id;
    frame_hdr_write(frame, &h);
    if (rt_idmap_put(&c->ids, call->id, call) != 0 || queue_frame(c, frame, flen) != 0) {
        rt_idmap_del(&c->ids, call->id);
        free(call);
        free(frame);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (c->ids.n == 1)
        c->busy_since = uv_now(r->loop);
    rt_q_push(&c->calls, &call->link);
    c->nunsent++;
    return call;
}

void rt_up_cancel(rt_upcall_t *call)
{
    if (call == NULL || call->cb == NULL)
        return;
    call->cb = NULL;
    call->conn->ncanceled++;
}

int rt_up_written(const rt_upcall_t *call)
{
    return call != NULL && call->written;
}

static void sweep_conn(rt_router_t *r, rt_upconn_t *c, uint64_t now)
{
    char msg[320];
    uint64_t stall = 2 * r->cfg.timeout_ms;
    if (stall < UP_STALL_MIN_MS)
        stall = UP_STALL_MIN_MS;
    if ((c->state == UC_CONNECTING || c->state == UC_TLS) &&
        now - c->started_ms > UP_CONNECT_TIMEOUT_MS) {
        snprintf(msg, sizeof(msg), "cannot connect to %s: no %s within %d ms", c->node->addr,
                 c->state == UC_TLS ? "TLS handshake" : "answer", UP_CONNECT_TIMEOUT_MS);
        conn_fail(c, msg);
    } else if ((c->state == UC_OPEN || c->state == UC_READY) && c->ids.n > 0 &&
               now - (c->last_rx_ms > c->busy_since ? c->last_rx_ms : c->busy_since) > stall) {
        snprintf(msg, sizeof(msg), "%s answered nothing for %llu ms with %zu requests outstanding",
                 c->node->addr, (unsigned long long)stall, c->ids.n);
        conn_fail(c, msg);
    } else if (c->ncanceled > UP_MAX_CANCELED) {
        snprintf(msg, sizeof(msg), "%s leaves %zu abandoned requests unanswered", c->node->addr,
                 c->ncanceled);
        conn_fail(c, msg);
    }
}

static void on_sweep(uv_timer_t *t)
{
    rt_router_t *r = t->data;
    uint64_t now = uv_now(r->loop);
    for (unsigned b = 0; b < RT_UP_BUCKETS; b++)
        for (rt_upnode_t *n = r->up.buckets[b]; n != NULL; n = n->hnext)
            for (unsigned i = 0; i < r->cfg.node_conns; i++)
                if (n->conns[i] != NULL)
                    sweep_conn(r, n->conns[i], now);
}

size_t rt_up_open_conns(rt_router_t *r)
{
    size_t n = 0;
    for (unsigned b = 0; b < RT_UP_BUCKETS; b++)
        for (rt_upnode_t *node = r->up.buckets[b]; node != NULL; node = node->hnext)
            for (unsigned i = 0; i < r->cfg.node_conns; i++)
                if (node->conns[i] != NULL &&
                    (node->conns[i]->state == UC_OPEN || node->conns[i]->state == UC_READY))
                    n++;
    return n;
}

void rt_up_close_all(rt_router_t *r)
{
    uv_timer_stop(&r->up.sweep);
    if (!uv_is_closing((uv_handle_t *)&r->up.sweep))
        uv_close((uv_handle_t *)&r->up.sweep, NULL);
    for (unsigned b = 0; b < RT_UP_BUCKETS; b++) {
        rt_upnode_t *n = r->up.buckets[b];
        while (n != NULL) {
            for (unsigned i = 0; i < r->cfg.node_conns; i++)
                if (n->conns[i] != NULL)
                    conn_fail(n->conns[i], "router shutting down");
            rt_upnode_t *next = n->hnext;
            free(n->conns);
            free(n);
            n = next;
        }
        r->up.buckets[b] = NULL;
    }
    r->up.nnodes = 0;
}
