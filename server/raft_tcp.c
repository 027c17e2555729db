/* The Raft transport: raft_uv's TCP transport with TCP_NODELAY on every
 * peer connection, refusing strangers, and with TLS when configured.
 *
 * libraft 0.15's raft_uv_tcp never disables Nagle's algorithm, so a small
 * AppendEntries result waits for the peer's delayed ACK (~40 ms on Linux)
 * whenever another small message is unacknowledged: commit latency then
 * jumps from under a millisecond to tens. The transport interface
 * (struct raft_uv_transport, raft/uv.h) is public, so this file wraps its
 * listen/connect methods in place and sets TCP_NODELAY on each stream before
 * handing it to raft_uv. It never reads or writes Raft traffic itself.
 *
 * It also refuses inbound Raft connections from strangers. libraft 0.15
 * crashes (SIGSEGV) on a malformed message after a well-formed handshake,
 * so garbage on the Raft port must never reach it: once this node has a
 * configuration, an accepted stream is handed to raft_uv only when its
 * handshake names a member of the configuration (id and Raft address) other
 * than this node, coming from that member's IP when its address is numeric
 * (outgoing connections are bound to the node's own Raft IP: see "Bound
 * outgoing connections" below). A node with no configuration yet (joining,
 * started with --initial-cluster none) accepts any peer: the leader adding
 * it has to get through. Beyond that members are trusted: a process on a
 * member's IP that forges its handshake can still reach libraft.
 * With TLS (shaled started with --tls-cert) the listen and connect
 * methods are raft_tls.c's instead: mutual TLS, the certificate naming
 * rule, then the same membership check; raft_uv_tcp's own listener is
 * never started.
 *
 * Host names. libraft 0.15's raft_uv_tcp parses addresses with uv_ip4_addr
 * only (no lookup: listening on or dialing "n1.shale.test:7101" fails with
 * RAFT_NOCONNECTION). So shaled hands it no name: the listener binds to
 * --raft as resolved at start (raft_uv_tcp_set_bind_address with the
 * numeric form, s->raft_src), and every outgoing connection is made here
 * (bound_connect), a member's name looked up with uv_getaddrinfo on each
 * connect (raft_uv retries a failed connect, so a name whose address
 * changes is followed without a restart). The handshake still carries
 * this node's configured address text, which is what the configuration
 * holds and what peers compare. The source-address check above compares
 * numeric member addresses only: a member known by name is not checked
 * against its connection's source (with TLS its certificate must name it). */
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "log.h"
#include "server.h"

typedef struct bconn bconn_t;
typedef struct rconn rconn_t;

typedef struct tcp_wrap {
    struct raft_uv_transport *t;
    shaled_t *s;
    void (*close)(struct raft_uv_transport *t, raft_uv_transport_close_cb cb);
    bconn_t *pending;   /* bound connects in progress (bconn below) */
    rconn_t *resolving; /* member names being looked up (rconn below) */
    int (*listen)(struct raft_uv_transport *t, raft_uv_accept_cb cb);
    int (*connect)(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                   const char *address, raft_uv_connect_cb cb);
    raft_uv_accept_cb accept_cb;
    raft_tls_t *tls; /* with TLS: raft_tls.c runs listen and connect instead */
} tcp_wrap_t;

/* raft_uv owns the transport's data field, so wraps are found by address
 * (a process runs one or a few Raft instances). Loop thread only. */
#define MAX_WRAPS 8
static tcp_wrap_t *wraps[MAX_WRAPS];

static tcp_wrap_t *wrap_of(struct raft_uv_transport *t)
{
    for (int i = 0; i < MAX_WRAPS; i++)
        if (wraps[i] != NULL && wraps[i]->t == t)
            return wraps[i];
    return NULL; /* unreachable: methods are only installed with a wrap */
}

static void nodelay(struct uv_stream_s *stream)
{
    if (stream != NULL && stream->type == UV_TCP) {
        int rv = uv_tcp_nodelay((uv_tcp_t *)stream, 1);
        if (rv != 0)
            log_warn("cannot disable Nagle on a raft connection", " err=%s", uv_strerror(rv));
    }
}

static void on_closed(uv_handle_t *h)
{
    raft_free(h); /* allocated by raft_uv_tcp with raft_malloc */
}

static int numeric_addr(const char *addr, int port_zero, struct sockaddr_in *sa);

/* Is (id, address) from this stream a member this node should hear? */
int raft_tcp_peer_allowed(shaled_t *s, raft_id id, const char *address, struct uv_stream_s *stream,
                          char *why, size_t whylen)
{
    const struct raft_configuration *c = &s->raft.configuration;
    if (c->n == 0)
        return 1; /* joining: the leader that adds this node is not known yet */
    if (id == s->cfg.id) {
        snprintf(why, whylen, "peer claims this node's own id");
        return 0;
    }
    const char *want = NULL;
    for (unsigned i = 0; i < c->n; i++)
        if (c->servers[i].id == id)
            want = c->servers[i].address;
    if (want == NULL) {
        snprintf(why, whylen, "id %llu is not in the configuration", (unsigned long long)id);
        return 0;
    }
    if (address == NULL || strcmp(address, want) != 0) {
        snprintf(why, whylen, "id %llu is at %s, not %s", (unsigned long long)id, want,
                 address ? address : "(none)");
        return 0;
    }
    /* Members connect from their own Raft IP (bound_connect below): a
     * numeric member address must match the connection's source. */
    struct sockaddr_in want_ip;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (stream == NULL || stream->type != UV_TCP || numeric_addr(want, 1, &want_ip) != 0)
        return 1; /* a host name: not checked */
    if (uv_tcp_getpeername((uv_tcp_t *)stream, (struct sockaddr *)&ss, &len) != 0 ||
        ss.ss_family != AF_INET ||
        ((struct sockaddr_in *)&ss)->sin_addr.s_addr != want_ip.sin_addr.s_addr) {
        snprintf(why, whylen, "id %llu must connect from its own address %s",
                 (unsigned long long)id, want);
        return 0;
    }
    return 1;
}

static void on_accept(struct raft_uv_transport *t, raft_id id, const char *address,
                      struct uv_stream_s *stream)
{
    tcp_wrap_t *w = wrap_of(t);
    char why[200];
    if (!raft_tcp_peer_allowed(w->s, id, address, stream, why, sizeof(why))) {
        log_warn("raft connection refused: not a member", " peer_id=%llu peer_addr=%s why=\"%s\"",
                 (unsigned long long)id, address ? address : "", why);
        uv_close((uv_handle_t *)stream, on_closed); /* raft_uv_tcp hands over a malloc'd handle */
        return;
    }
    nodelay(stream);
    w->accept_cb(t, id, address, stream);
}

static int wrap_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    tcp_wrap_t *w = wrap_of(t);
    if (w->tls != NULL)
        return raft_tls_listen(w->tls, cb);
    w->accept_cb = cb;
    if (!addr_is_numeric(w->s->cfg.raft)) {
        /* raft_uv_tcp cannot look up a name: bind to its address as
         * resolved at start (shaled.c, IPv4 for this transport). */
        char ip[INET6_ADDRSTRLEN], baddr[INET6_ADDRSTRLEN + 8], host[ADDR_HOST_MAX], port[8];
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&w->s->raft_src;
        if (w->s->raft_src.ss_family != AF_INET ||
            addr_split(w->s->cfg.raft, host, sizeof(host), port, sizeof(port)) != 0 ||
            uv_ip4_name(sin, ip, sizeof(ip)) != 0)
            return RAFT_INVALID;
        snprintf(baddr, sizeof(baddr), "%s:%s", ip, port);
        int rv = raft_uv_tcp_set_bind_address(t, baddr);
        if (rv != 0)
            return rv;
    }
    return w->listen(t, on_accept);
}

/* ---- Bound outgoing connections ---------------------------------------------
 *
 * raft_uv_tcp connects without binding, so on one host every Raft connection
 * leaves from the default source address (127.0.0.1 on loopback) whatever
 * address the node serves on. For numeric addresses this file makes the
 * connection itself instead: bind to this node's Raft IP (port 0), connect,
 * write raft_uv_tcp's handshake (protocol 1, our id, our address padded to
 * 8 bytes, little endian) and hand the stream to raft_uv exactly as the
 * library's own connect would. Then a peer's source IP is its member IP —
 * which the accept check above verifies — and a fault harness can cut one
 * node off by address. Host names are looked up first (rconn below); the
 * handshake is the same. raft_uv_tcp's own connect is not used.
 *
 * The uv_tcp_t is raft_malloc'd: on success raft_uv owns it and releases it
 * with raft_free after closing it (the transport contract); until then it is
 * ours. Closing the transport cancels connects still in progress
 * (RAFT_CANCELED) before raft_uv_tcp's own close runs. */
struct bconn {
    tcp_wrap_t *w;
    struct raft_uv_connect *user;
    raft_uv_connect_cb cb;
    uv_tcp_t *tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t hs[24 + 136]; /* handshake: 3 x u64 + address (<= 128 + pad) */
    size_t hslen;
    int canceled;
    bconn_t *next;
};

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* "a.b.c.d:port" -> sockaddr; -1 when not a numeric IPv4 address. */
static int numeric_addr(const char *addr, int port_zero, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
        return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    int port = port_zero ? 0 : atoi(colon + 1);
    if (port < 0 || port > 65535 || uv_ip4_addr(host, port, sa) != 0)
        return -1;
    return 0;
}

static void unlink_bconn(bconn_t *bc)
{
    for (bconn_t **p = &bc->w->pending; *p != NULL; p = &(*p)->next)
        if (*p == bc) {
            *p = bc->next;
            return;
        }
}

static void on_bconn_closed(uv_handle_t *h)
{
    bconn_t *bc = h->data;
    raft_free(h);
    free(bc);
}

/* Fail a connect that has not been handed over: close ours, tell raft_uv. */
static void bconn_fail(bconn_t *bc, int status)
{
    unlink_bconn(bc);
    struct raft_uv_connect *user = bc->user;
    raft_uv_connect_cb cb = bc->cb;
    bc->canceled = 1;
    uv_close((uv_handle_t *)bc->tcp, on_bconn_closed);
    user->cb = cb;
    cb(user, NULL, status);
}

static void on_bconn_written(uv_write_t *wr, int status)
{
    bconn_t *bc = wr->data;
    if (bc->canceled)
        return; /* the transport closed meanwhile: already answered */
    if (status != 0) {
        bconn_fail(bc, RAFT_NOCONNECTION);
        return;
    }
    unlink_bconn(bc);
    uv_tcp_t *tcp = bc->tcp;
    struct raft_uv_connect *user = bc->user;
    raft_uv_connect_cb cb = bc->cb;
    free(bc);
    tcp->data = NULL; /* raft_uv's from here on */
    user->cb = cb;
    cb(user, (struct uv_stream_s *)tcp, 0);
}

static void on_bconn_connected(uv_connect_t *cr, int status)
{
    bconn_t *bc = cr->data;
    if (bc->canceled)
        return;
    if (status != 0) {
        bconn_fail(bc, RAFT_NOCONNECTION);
        return;
    }
    uv_tcp_nodelay(bc->tcp, 1);
    uv_buf_t buf = uv_buf_init((char *)bc->hs, (unsigned)bc->hslen);
    bc->wreq.data = bc;
    if (uv_write(&bc->wreq, (uv_stream_t *)bc->tcp, &buf, 1, on_bconn_written) != 0)
        bconn_fail(bc, RAFT_NOCONNECTION);
}

/* Connect to dst (resolved), bound to this node's Raft address, and hand
 * the stream over after the handshake. 0: started (the callback will
 * fire); RAFT_*: refused up front (the callback will not fire). */
static int bound_connect(tcp_wrap_t *w, struct raft_uv_connect *req, const struct sockaddr *dst,
                         raft_uv_connect_cb cb)
{
    shaled_t *s = w->s;
    size_t alen = strlen(s->cfg.raft) + 1;
    size_t padded = (alen + 7) & ~(size_t)7;
    if (24 + padded > sizeof(((bconn_t *)0)->hs))
        return RAFT_NOCONNECTION;
    bconn_t *bc = calloc(1, sizeof(*bc));
    uv_tcp_t *tcp = raft_malloc(sizeof(*tcp));
    if (bc == NULL || tcp == NULL) {
        free(bc);
        raft_free(tcp);
        return RAFT_NOMEM;
    }
    bc->w = w;
    bc->user = req;
    bc->cb = cb;
    bc->tcp = tcp;
    put_le64(bc->hs, 1); /* raft_uv_tcp handshake protocol */
    put_le64(bc->hs + 8, s->cfg.id);
    put_le64(bc->hs + 16, padded);
    memcpy(bc->hs + 24, s->cfg.raft, alen - 1); /* rest is zero (calloc) */
    bc->hslen = 24 + padded;
    uv_tcp_init(s->loop, tcp);
    tcp->data = bc;
    int rv = 0;
    if (s->raft_src.ss_family == dst->sa_family)
        rv = uv_tcp_bind(tcp, (const struct sockaddr *)&s->raft_src, 0);
    if (rv == 0) {
        bc->creq.data = bc;
        rv = uv_tcp_connect(&bc->creq, tcp, dst, on_bconn_connected);
    }
    if (rv != 0) {
        bc->canceled = 1;
        uv_close((uv_handle_t *)tcp, on_bconn_closed);
        return RAFT_NOCONNECTION;
    }
    bc->next = w->pending;
    w->pending = bc;
    return 0;
}

/* A member's host name being looked up before bound_connect. Allocated in
 * wrap_connect, freed in on_resolved (uv_getaddrinfo always calls back,
 * also when canceled). Closing the transport answers raft_uv at once
 * (RAFT_CANCELED) and leaves the lookup to finish on its own. */
struct rconn {
    uv_getaddrinfo_t gai;
    tcp_wrap_t *w;
    struct raft_uv_connect *user;
    raft_uv_connect_cb cb;
    int canceled;
    rconn_t *next;
    char address[128];
};

static void unlink_rconn(rconn_t *rc)
{
    for (rconn_t **p = &rc->w->resolving; *p != NULL; p = &(*p)->next)
        if (*p == rc) {
            *p = rc->next;
            return;
        }
}

static void rconn_answer(rconn_t *rc, int status)
{
    struct raft_uv_connect *user = rc->user;
    raft_uv_connect_cb cb = rc->cb;
    user->cb = cb;
    cb(user, NULL, status);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    rconn_t *rc = req->data;
    if (!rc->canceled) {
        unlink_rconn(rc);
        int rv = RAFT_NOCONNECTION;
        if (status == 0 && res != NULL)
            rv = bound_connect(rc->w, rc->user, res->ai_addr, rc->cb);
        else
            log_debug("cannot resolve a raft peer", " addr=%s err=\"%s\"", rc->address,
                      uv_strerror(status));
        if (rv != 0)
            rconn_answer(rc, RAFT_NOCONNECTION); /* raft_uv retries: resolved again */
    }
    uv_freeaddrinfo(res);
    free(rc);
}

static int resolve_connect(tcp_wrap_t *w, struct raft_uv_connect *req, const char *address,
                           raft_uv_connect_cb cb)
{
    rconn_t *rc = calloc(1, sizeof(*rc));
    if (rc == NULL)
        return RAFT_NOMEM;
    rc->w = w;
    rc->user = req;
    rc->cb = cb;
    snprintf(rc->address, sizeof(rc->address), "%s", address);
    rc->gai.data = rc;
    if (addr_resolve_start(w->s->loop, &rc->gai, on_resolved, address) != 0) {
        free(rc);
        return RAFT_NOCONNECTION;
    }
    rc->next = w->resolving;
    w->resolving = rc;
    return 0;
}

static void wrap_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    tcp_wrap_t *w = wrap_of(t);
    if (w->tls != NULL)
        raft_tls_close(w->tls);
    while (w->pending != NULL)
        bconn_fail(w->pending, RAFT_CANCELED);
    while (w->resolving != NULL) {
        rconn_t *rc = w->resolving;
        w->resolving = rc->next;
        rc->canceled = 1;
        uv_cancel((uv_req_t *)&rc->gai); /* on_resolved frees it either way */
        rconn_answer(rc, RAFT_CANCELED);
    }
    w->close(t, cb);
}

static int wrap_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                        const char *address, raft_uv_connect_cb cb)
{
    if (wrap_of(t)->tls != NULL)
        return raft_tls_connect(wrap_of(t)->tls, req, id, address, cb);
    struct sockaddr_storage dst;
    if (addr_numeric(address, 0, &dst) == 0)
        return bound_connect(wrap_of(t), req, (const struct sockaddr *)&dst, cb);
    return resolve_connect(wrap_of(t), req, address, cb);
}

int raft_tcp_wrap(shaled_t *s)
{
    int slot = -1;
    for (int i = 0; i < MAX_WRAPS && slot < 0; i++)
        if (wraps[i] == NULL)
            slot = i;
    tcp_wrap_t *w = slot >= 0 ? calloc(1, sizeof(*w)) : NULL;
    if (w == NULL)
        return -1;
    w->t = &s->transport;
    w->s = s;
    if (s->tls_raft != NULL && (w->tls = raft_tls_new(s, &s->transport)) == NULL) {
        free(w);
        return -1;
    }
    w->listen = s->transport.listen;
    w->connect = s->transport.connect;
    w->close = s->transport.close;
    wraps[slot] = w;
    s->transport_wrap = w;
    s->transport.listen = wrap_listen;
    s->transport.connect = wrap_connect;
    s->transport.close = wrap_close;
    return 0;
}

void raft_tcp_unwrap(shaled_t *s)
{
    for (int i = 0; i < MAX_WRAPS; i++)
        if (wraps[i] == s->transport_wrap)
            wraps[i] = NULL;
    if (s->transport_wrap != NULL)
        raft_tls_free(s->transport_wrap->tls);
    free(s->transport_wrap);
    s->transport_wrap = NULL;
}
