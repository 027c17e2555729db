/* The Raft transport: raft_uv's TCP transport with TCP_NODELAY on every
 * peer connection.
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
 * than this node. A node with no configuration yet (joining, started with
 * --initial-cluster none) accepts any peer: the leader adding it has to get
 * through. Members are trusted: a peer that forges a member's handshake
 * (its id and exact address) can still reach libraft, and the source IP
 * cannot be checked because raft_uv_tcp does not bind outgoing connections
 * (on loopback they all come from 127.0.0.1). Authentication arrives with
 * TLS; the HELLO credential field is reserved for it. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"

typedef struct tcp_wrap {
    struct raft_uv_transport *t;
    shaled_t *s;
    int (*listen)(struct raft_uv_transport *t, raft_uv_accept_cb cb);
    int (*connect)(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                   const char *address, raft_uv_connect_cb cb);
    raft_uv_accept_cb accept_cb;
} tcp_wrap_t;

/* One outstanding connect: raft_uv's request and callback, until it fires.
 * Allocated in wrap_connect, freed in on_connect (which the transport calls
 * exactly once, also when close cancels the attempt). */
typedef struct conn_req {
    struct raft_uv_connect inner;
    struct raft_uv_connect *user;
    raft_uv_connect_cb user_cb;
} conn_req_t;

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

/* Is (id, address) from this stream a member this node should hear? */
static int peer_allowed(shaled_t *s, raft_id id, const char *address, char *why, size_t whylen)
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
    return 1;
}

static void on_accept(struct raft_uv_transport *t, raft_id id, const char *address,
                      struct uv_stream_s *stream)
{
    tcp_wrap_t *w = wrap_of(t);
    char why[200];
    if (!peer_allowed(w->s, id, address, why, sizeof(why))) {
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
    w->accept_cb = cb;
    return w->listen(t, on_accept);
}

static void on_connect(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
    conn_req_t *cr = req->data;
    if (status == 0)
        nodelay(stream);
    struct raft_uv_connect *user = cr->user;
    raft_uv_connect_cb cb = cr->user_cb;
    free(cr);
    user->cb = cb;
    cb(user, stream, status);
}

static int wrap_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                        const char *address, raft_uv_connect_cb cb)
{
    conn_req_t *cr = calloc(1, sizeof(*cr));
    if (cr == NULL)
        return RAFT_NOMEM;
    cr->inner.data = cr;
    cr->user = req;
    cr->user_cb = cb;
    int rv = wrap_of(t)->connect(t, &cr->inner, id, address, on_connect);
    if (rv != 0)
        free(cr); /* refused up front: the callback will not fire */
    return rv;
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
    w->listen = s->transport.listen;
    w->connect = s->transport.connect;
    wraps[slot] = w;
    s->transport_wrap = w;
    s->transport.listen = wrap_listen;
    s->transport.connect = wrap_connect;
    return 0;
}

void raft_tcp_unwrap(shaled_t *s)
{
    for (int i = 0; i < MAX_WRAPS; i++)
        if (wraps[i] == s->transport_wrap)
            wraps[i] = NULL;
    free(s->transport_wrap);
    s->transport_wrap = NULL;
}
