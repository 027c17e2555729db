/* libshale internals shared by client.c, conn.c, codec.c, reqtable.c, sync.c.
 *
 * Nothing here is installed or visible to applications. The split:
 *   client.c    the handle, options, request lifecycle (submit, complete,
 *               deadlines, cancel on close) and the async entry points;
 *   conn.c      the transport: resolve, connect, TLS, HELLO, coalesced
 *               writes, reads, reconnect with capped exponential backoff;
 *   codec.c     arguments -> protobuf request, response frame -> shale_req_t
 *               (pure: no I/O, no client state);
 *   reqtable.c  request id -> pending request map;
 *   sync.c      the blocking API on a private loop. */
#ifndef SHALE_CLIENT_INTERNAL_H
#define SHALE_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "frame.h"
#include "shale.h"
#include "shale_internal.h"
#include "wire.h"

/* ---- Intrusive doubly linked queue ---------------------------------------*/

typedef struct cq {
    struct cq *next, *prev;
} cq_t;

static inline void cq_init(cq_t *q)
{
    q->next = q->prev = q;
}
static inline int cq_empty(const cq_t *q)
{
    return q->next == q;
}
static inline int cq_linked(const cq_t *n)
{
    return n->next != n;
}
static inline void cq_push(cq_t *q, cq_t *n)
{
    n->prev = q->prev;
    n->next = q;
    q->prev->next = n;
    q->prev = n;
}
static inline void cq_remove(cq_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    cq_init(n);
}
#define cq_data(n, type, field) ((type *)((char *)(n)-offsetof(type, field)))

/* ---- Requests ------------------------------------------------------------*/

/* One pending request. Allocated at submit together with its packed frame,
 * which is re-sent byte for byte after a reconnect (same id, same session
 * seq). Reference counted: one reference while the request is pending, one
 * per uv_write that still points at the frame; a request can complete (by
 * answer, deadline or close) while a write holding its frame is in flight. */
typedef struct creq {
    cq_t all_link;    /* client->pending (submit = deadline order) */
    cq_t send_link;   /* client->sendq while waiting to be written */
    cq_t mut_link;    /* client->mutations (seq order), mutations only */
    shale_req_t *req; /* NULL once completed */
    shale_cb cb;
    uint64_t id;
    uint64_t seq;      /* session seq, 0 for reads */
    uint64_t deadline; /* client_now_ms() clock */
    uint32_t timeout_ms; /* this request's deadline, from submit (messages) */
    uint8_t custom_deadline; /* not the client's default: pending is not in deadline order */
    uint16_t resp_type;
    uint8_t on_wire;   /* written on the current connection */
    uint8_t ever_sent; /* written on some connection: outcome may be unknown */
    uint8_t sends;     /* connections it was written on (saturates at 255) */
    uint8_t secret;    /* the frame holds a password (HELLO): wiped when freed */
    uint16_t retries;  /* NOT_LEADER / UNAVAILABLE answers retried */
    int last_answer;   /* the last retried answer's code (its message stays
                          in req->errmsg), 0 = none */
    int refs;
    size_t nkeys; /* MGET/MPUT: number of items the answer must carry */
    size_t flen;
    uint8_t frame[]; /* FRAME_HEADER_SIZE + payload */
} creq_t;

void creq_unref(creq_t *cr);

/* ---- Request table: id -> creq (open addressing, backward-shift delete) --*/

typedef struct reqtable {
    creq_t **slots;
    size_t cap; /* power of two, 0 before the first insert */
    size_t n;
} reqtable_t;

void reqtable_init(reqtable_t *t);
void reqtable_free(reqtable_t *t);
/* SHALE_OK or SHALE_ENOMEM. The id must not be present. */
int reqtable_put(reqtable_t *t, creq_t *cr);
creq_t *reqtable_get(const reqtable_t *t, uint64_t id);
/* Removes and returns the entry, NULL when absent. */
creq_t *reqtable_del(reqtable_t *t, uint64_t id);

/* ---- Codec ---------------------------------------------------------------*/

typedef struct codec_limits {
    uint32_t max_key;
    uint32_t max_value;
    uint32_t max_frame; /* largest frame the server accepts */
} codec_limits_t;

/* A request message built from caller arguments. Byte fields point at the
 * caller's buffers (nothing is copied until it is packed); arrays for
 * MGET/MPUT are malloc'd and released by codec_msg_free. */
typedef struct codec_msg {
    uint16_t type;      /* SHALE_MSG_*_REQ */
    uint16_t resp_type; /* the matching *_RESP */
    int mutation;       /* carries a Session */
    size_t nkeys;
    union {
        Shale__GetRequest get;
        Shale__PutRequest put;
        Shale__DeleteRequest del;
        Shale__CasRequest cas;
        Shale__MGetRequest mget;
        Shale__MPutRequest mput;
        Shale__TxnRequest txn;
        Shale__StatusRequest status;
        Shale__MemberAddRequest madd;
        Shale__MemberRemoveRequest mrem;
        Shale__LeaderTransferRequest xfer;
    } u;
    Shale__Member member;      /* MEMBER_ADD */
    Shale__ReadOptions read;
    Shale__Session session;
    Shale__KeyValue *kv;       /* MPUT items (malloc) */
    Shale__KeyValue **kvp;     /* MPUT item pointers (malloc) */
    ProtobufCBinaryData *keys; /* MGET keys (malloc) */
    Shale__TxnCompare *tc;     /* TXN compares and their pointers (malloc) */
    Shale__TxnCompare **tcp;
    Shale__TxnOp *to;          /* TXN ops, success then failure, and pointers (malloc) */
    Shale__TxnOp **top;
    const uint8_t *raw;        /* CALL: the payload, already encoded (caller's) */
    size_t raw_len;
} codec_msg_t;

/* Each builder validates its arguments against lim and fills m. Returns
 * SHALE_OK, SHALE_EINVAL, SHALE_ETOOLARGE or SHALE_ENOMEM with a message in
 * err (SHALE_ERRMSG_LEN). On failure m holds nothing to free. */
int codec_get(codec_msg_t *m, const codec_limits_t *lim, const void *key, size_t klen,
              const shale_read_opts_t *ro, char *err);
/* ttl_ms 0: no TTL (PutRequest.ttl_ms absent). */
int codec_put(codec_msg_t *m, const codec_limits_t *lim, const void *key, size_t klen,
              const void *value, size_t vlen, uint64_t ttl_ms, char *err);
int codec_del(codec_msg_t *m, const codec_limits_t *lim, const void *key, size_t klen, char *err);
int codec_cas(codec_msg_t *m, const codec_limits_t *lim, const void *key, size_t klen,
              const shale_cas_expect_t *expect, const void *value, size_t vlen, int del, char *err);
int codec_mget(codec_msg_t *m, const codec_limits_t *lim, const shale_item_t *keys, size_t n,
               const shale_read_opts_t *ro, char *err);
int codec_mput(codec_msg_t *m, const codec_limits_t *lim, const shale_item_t *items, size_t n,
               char *err);
/* A TXN: the checks of wire_txn_check except the one-slot rule (the
 * client does not know the slot count; the router and node check it).
 * mutation (a Session) only when it has a put or delete. */
int codec_txn(codec_msg_t *m, const codec_limits_t *lim, const shale_txn_t *txn, char *err);
void codec_msg_free(codec_msg_t *m);
/* Admin requests: status (of the node answering), member add/remove,
 * leadership transfer. Strings point at the caller's buffers. */
int codec_admin(codec_msg_t *m, uint16_t type, uint64_t id, const char *raft_addr,
                const char *client_addr, int replica, char *err);

/* A low-level call: type/resp_type and a payload encoded by the caller. */
int codec_call(codec_msg_t *m, uint16_t type, uint16_t resp_type, const void *payload,
               size_t len, char *err);

/* Stamp the session of a mutation (no-op for reads). */
void codec_set_session(codec_msg_t *m, uint64_t client_id, uint64_t seq, uint64_t ack_floor);
/* Payload size of the packed message. */
size_t codec_payload_size(const codec_msg_t *m);
/* Write header + payload into out (FRAME_HEADER_SIZE + payload size). */
void codec_pack(const codec_msg_t *m, uint64_t id, uint8_t *out);

/* Decode the answer (frame type h->type) to a request that expects
 * resp_type and nkeys items into req's public fields. Returns the request's
 * status: SHALE_OK, the server's error (-wire code), SHALE_EPROTO for an
 * answer that does not fit the request, or SHALE_ENOMEM. req->errmsg and
 * req->leader_hint are set for errors. */
int codec_decode(shale_req_t *req, uint16_t resp_type, size_t nkeys, uint16_t type,
                 const uint8_t *payload, size_t len);

/* Local code of a wire Error (unknown or OK codes become SHALE_EPROTO). */
int codec_error_code(const Shale__Error *e);

/* ---- Client --------------------------------------------------------------*/

typedef struct conn conn_t;

#define CLIENT_MAX_ADDRS 16
#define CLIENT_MAX_RETRIES 1000

enum client_state {
    CS_IDLE,       /* no connection, nothing to send */
    CS_RESOLVING,  /* getaddrinfo in flight */
    CS_CONNECTING, /* TCP connect in flight */
    CS_TLS,        /* TLS handshake in flight (opts.tls_ca set) */
    CS_HELLO,      /* HELLO sent, requests pipelined behind it */
    CS_READY,      /* HELLO_REPLY received */
    CS_BACKOFF,    /* waiting before the next attempt */
};

struct shale_client {
    uv_loop_t *loop;
    uv_loop_t *own_loop; /* sync clients: the private loop (owned) */
    shale_options_t opts;
    char addr[128]; /* the address in use, for messages */
    char host[128];
    char port[8];
    /* Every node address the client may use: the given list, plus leaders
     * it was told about. Connection failures rotate through them; a
     * NOT_LEADER hint jumps straight to the leader (redirect). */
    char addrs[CLIENT_MAX_ADDRS][128];
    unsigned naddrs, cur;
    int redirect;
    char *cluster_id; /* configured or learned on the first HELLO (malloc) */
    struct tls_ctx *tls; /* NULL: plain TCP (owned) */
    char tls_name[256];  /* the name servers' certificates must carry ("": none) */
    int tls_name_host;   /* ... or the host of the address in use */
    uint8_t *credential; /* packed Shale__Credential for HELLO (malloc; wiped) */
    size_t credential_len;
    /* Who the last HELLO_REPLY said this client is (shale_whoami). */
    struct {
        int have;          /* a HELLO_REPLY was received */
        int auth;          /* 1 --auth on, 0 off, -1 the server did not say */
        char user[65];     /* "": anonymous */
        int role;          /* shale.UserRole, 0: not said */
        uint8_t *prefix;   /* malloc, NULL: none */
        size_t prefix_len;
    } who;
    uint64_t client_id;
    uint64_t next_id;
    uint64_t next_seq;
    codec_limits_t lim;

    reqtable_t table;
    cq_t pending;   /* every pending creq, submit order (deadline order too
                       while ncustom == 0) */
    size_t ncustom; /* pending creqs with their own deadline (shale_set_timeout) */
    uint32_t call_timeout_ms; /* shale_set_timeout; 0: opts.timeout_ms */
    cq_t sendq;     /* pending creqs not yet written on this connection */
    cq_t mutations; /* pending mutations, seq order (ack_floor = head) */
    size_t npending;
    size_t inflight; /* written on the current connection, unanswered */

    enum client_state state;
    conn_t *conn;           /* current connection, NULL when none */
    unsigned attempt;       /* consecutive failed attempts (backoff exponent) */
    uint64_t conn_failures; /* attempts or connections that ended badly */
    int last_err_code;
    char last_err[SHALE_ERRMSG_LEN];
    uv_getaddrinfo_t *gai; /* in flight, or NULL */

    uv_timer_t deadline_timer; /* earliest request deadline */
    uv_timer_t conn_timer;     /* connect timeout or backoff delay */
    uv_timer_t stall_timer;    /* periodic: a silent connection with requests out */
    uint64_t last_rx_ms;       /* last bytes received, or first request written */
    uv_prepare_t flush_prep;   /* coalesces the writes of one loop turn */
    int flush_scheduled;
    int referenced; /* the connection handle keeps the loop alive */

    int closing;
    int nhandles; /* handles/requests whose close or callback is awaited */
    cq_t canceled;
    cq_t watches; /* shale_watch_t of this client (watch.c) */
    shale_close_cb close_cb;

    char errmsg[SHALE_ERRMSG_LEN]; /* sync API: last failure */
    uint32_t scan_slots; /* the slot count S a SCAN answer named (0: none yet) */
};

/* Monotonic milliseconds. */
uint64_t client_now_ms(void);

/* client.c, for conn.c and sync.c */
/* Allocate and initialise a client on loop (no connection yet). Returns
 * SHALE_OK or SHALE_EINVAL/SHALE_ENOMEM with a message in err. */
int client_create(uv_loop_t *loop, const char *addr, const shale_options_t *opts,
                  shale_client_t **out, char *err);
void client_handle_closed(shale_client_t *c); /* one awaited close done */
/* Move every pending request back to the send queue (new connection). */
void client_requeue_all(shale_client_t *c);
/* Detach pending requests (all, or only those written on the current
 * connection) into *out, linked by all_link, without running callbacks. */
void client_take(shale_client_t *c, int written_only, cq_t *out);
/* Complete every request of a taken list with code/msg, running callbacks.
 * A callback may close the client; the list is finished regardless. */
void client_finish_list(shale_client_t *c, cq_t *list, int code, const char *msg);
void client_fail_all(shale_client_t *c, int code, const char *msg);
void client_fail_id(shale_client_t *c, uint64_t id, int code, const char *msg);
/* Handle the answer frame of a request (unknown ids are ignored). */
void client_on_answer(shale_client_t *c, const frame_hdr_t *h, const uint8_t *payload);
/* The client's loop alive-ness follows whether requests are pending. */
void client_update_ref(shale_client_t *c);
/* Submit an admin request (codec_admin arguments); req->node_status is kept. */
int client_admin_async(shale_client_t *c, shale_req_t *req, uint16_t type, uint64_t id,
                       const char *raft_addr, const char *client_addr, int replica,
                       shale_cb cb);
/* Make addrs[i] the address the next connection uses. */
void client_use_addr(shale_client_t *c, unsigned i);
/* Index of addr in addrs, adding it when absent; -1 when it is malformed or
 * the list is full. */
int client_find_addr(shale_client_t *c, const char *addr);

/* watch.c: the client is closing — detach every watch from it; a watch
 * waiting to retry reports SHALE_ECANCELED from its own timer, one with a
 * poll in flight when that poll is canceled. */
void client_watches_closing(shale_client_t *c);

/* conn.c */
/* Start a connection attempt now (state IDLE or BACKOFF). */
void cconn_start(shale_client_t *c);
/* Requests were queued: connect if idle, else write them this loop turn. */
void cconn_kick(shale_client_t *c);
/* The connection (or attempt) ended: record the error, close it, requeue
 * what was written, and back off before reconnecting if requests wait. */
void cconn_failed(shale_client_t *c, int code, const char *msg);
/* Tear down for close: stop timers, close the connection, cancel resolve. */
void cconn_shutdown(shale_client_t *c);
void cconn_ref(conn_t *conn, int ref);
/* stall_timer callback: drop a connection that answers nothing (opts.stall_ms). */
void cconn_check_stall(uv_timer_t *t);

#endif
