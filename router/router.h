/* shale-router internals: the router object and the interfaces between its
 * I/O modules. Nothing here is installed.
 *
 * The split (each file says at its top what it owns and never does):
 *   main.c         flags, the loop, signals, TLS contexts, clean shutdown;
 *   client_conn.c  client connections: HELLO, framing, flow control, output;
 *   forward.c      a client request's life: route, send, retry, split/merge,
 *                  deadline, answer;
 *   upstream.c     pooled, multiplexed connections to nodes;
 *   watch.c        following the cluster map of the meta group (libshale);
 *   route.c        the map cache and node choice (pure);
 *   retry.c        retry decisions and backoff (pure);
 *   split.c        MGET/MPUT split by group and merge (pure);
 *   config.c       flags (pure); rlog.c logging; idmap.c id -> pointer map;
 *   obs.c          metrics and the HTTP endpoint (--http: /metrics, /health);
 *   authn.c        users and roles (--auth): logins, per-request checks.
 *
 * One libuv loop thread does everything. Output produced during a loop turn
 * is written at the end of the turn (the uv_prepare in main.c runs before
 * the loop polls), one uv_write per connection. */
#ifndef SHALE_RT_ROUTER_H
#define SHALE_RT_ROUTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "auth.h"
#include "config.h"
#include "frame.h"
#include "login.h"
#include "resp_keyscan.h"
#include "rlog.h"
#include "route.h"
#include "shale.h"
#include "user_watch.h"
#include "wire.h"

/* ---- Intrusive doubly linked queue ---------------------------------------*/

typedef struct rt_q {
    struct rt_q *next, *prev;
} rt_q_t;

static inline void rt_q_init(rt_q_t *q)
{
    q->next = q->prev = q;
}
static inline int rt_q_empty(const rt_q_t *q)
{
    return q->next == q;
}
static inline int rt_q_linked(const rt_q_t *n)
{
    return n->next != n;
}
static inline void rt_q_push(rt_q_t *q, rt_q_t *n)
{
    n->prev = q->prev;
    n->next = q;
    q->prev->next = n;
    q->prev = n;
}
static inline void rt_q_remove(rt_q_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    rt_q_init(n);
}
#define rt_q_data(n, type, field) ((type *)((char *)(n)-offsetof(type, field)))

typedef struct rt_router rt_router_t;
typedef struct rt_cconn rt_cconn_t;
typedef struct rt_upcall rt_upcall_t;
typedef struct rt_upnode rt_upnode_t;

/* ---- upstream.c: pooled node connections ---------------------------------*/

/* The answer to one upstream call. status 0: a frame of `type` arrived
 * (payload valid during the call only). status SHALE_EIO: the connection
 * failed first; written says whether the request had been handed to the
 * socket (it may have reached the node). errmsg says what happened. */
typedef void (*rt_up_cb)(void *ud, int status, int written, uint16_t type, const uint8_t *payload,
                         size_t len, const char *errmsg);

#define RT_UP_BUCKETS 256

typedef struct rt_upstream {
    rt_upnode_t *buckets[RT_UP_BUCKETS]; /* nodes by address */
    rt_q_t dirty;                        /* connections with output to write */
    uv_timer_t sweep;                    /* connect timeouts, stalled nodes */
    size_t nnodes;
} rt_upstream_t;

void rt_up_init(rt_router_t *r);
/* Send frame (FRAME_HEADER_SIZE + payload; the header's type and length set
 * by the caller, the id assigned here) to the node at addr. Takes the frame
 * in every case. Returns the call, or NULL when the node cannot take it now
 * (unreachable and in its reconnect backoff, bad address, out of memory):
 * err says why and cb will not run. Otherwise cb runs exactly once, later,
 * unless rt_up_cancel is called first. */
rt_upcall_t *rt_up_send(rt_router_t *r, const char *addr, uint8_t *frame, size_t flen, rt_up_cb cb,
                        void *ud, char *err, size_t errlen);
/* Drop interest in a call: its callback will not run. */
void rt_up_cancel(rt_upcall_t *c);
/* Whether the call's request was handed to the socket. */
int rt_up_written(const rt_upcall_t *c);
/* Write what the loop turn queued. */
void rt_up_flush_all(rt_router_t *r);
/* Close every connection; calls still pending get SHALE_EIO callbacks. */
void rt_up_close_all(rt_router_t *r);
/* Connections to nodes that are open (metrics). */
size_t rt_up_open_conns(rt_router_t *r);

/* ---- client_conn.c: downstream connections -------------------------------*/

int rt_cconn_listen(rt_router_t *r, char *err, size_t errlen);
/* Queue a frame (malloc'd, taken; NULL is ignored) for the end of the turn. */
void rt_cconn_send(rt_cconn_t *c, uint8_t *frame, size_t len);
void rt_cconn_send_error(rt_cconn_t *c, uint64_t id, int code, const char *msg);
/* A request taken by rt_fwd_accept is finished: releases its slot and its
 * reference on c. */
void rt_cconn_request_done(rt_cconn_t *c);
const char *rt_cconn_peer(const rt_cconn_t *c);
/* Decode input kept back by flow control, for connections that can take
 * requests again. */
void rt_cconn_resume_all(rt_router_t *r);
void rt_cconn_flush_all(rt_router_t *r);
/* Stop accepting and stop reading (shutdown, first step). */
void rt_cconn_stop_accepting(rt_router_t *r);
/* Write what is queued, then close every connection. */
void rt_cconn_close_all(rt_router_t *r);
/* Close every connection now, written or not (end of shutdown). */
void rt_cconn_force_close_all(rt_router_t *r);

/* RESP connections (resp_conn.c) use these. */
int rt_cconn_can_take(const rt_cconn_t *c);
/* Queue bytes (malloc'd, taken) for the end of the turn, as they are. */
void rt_cconn_send_raw(rt_cconn_t *c, char *bytes, size_t len);
/* Close once everything queued is written; read nothing more. */
void rt_cconn_close_after_flush(rt_cconn_t *c);
/* One more request (or login) in flight: released by rt_cconn_request_done. */
void rt_cconn_begin(rt_cconn_t *c);
/* Run the connection's buffered input again at the end of the turn. */
void rt_cconn_kick(rt_cconn_t *c);

/* ---- resp_conn.c: the Redis protocol (--resp; docs/resp.md) --------------*/

typedef struct rt_resp rt_resp_t;
enum { RT_RESP_IDLE = 0, RT_RESP_PAUSED = 1, RT_RESP_WAITING = 2 };
rt_resp_t *rt_resp_new(rt_router_t *r, rt_cconn_t *c);
void rt_resp_free(rt_resp_t *s);
/* Bytes read from the peer (copied). 0, or -1 out of memory. */
int rt_resp_feed(rt_resp_t *s, const uint8_t *p, size_t n);
/* Run the commands parsed while the connection takes them. RT_RESP_IDLE:
 * nothing left to run; RT_RESP_PAUSED: input kept back until the connection
 * can take requests again; RT_RESP_WAITING: a command waits for an answer
 * (rt_cconn_kick follows it). */
int rt_resp_drive(rt_resp_t *s);
/* The native answer (frame, taken) to one of s's requests. */
void rt_resp_answer(rt_resp_t *s, uint8_t *frame, size_t len);
/* The connection closes: a login in progress is dropped. */
void rt_resp_cancel_login(rt_resp_t *s);
/* Per-command counts of the RESP port (INFO's cmdstat and /metrics share
 * them): commands 0 .. rt_resp_ncmds()-1 by name, then "unknown". */
size_t rt_resp_ncmds(void);
const char *rt_resp_cmd_name(size_t i);
void rt_resp_cmd_counts(size_t i, uint64_t *calls, uint64_t *errors);

/* ---- forward.c: request lifecycle ----------------------------------------*/

#define RT_BACKOFF_LEVELS 6

typedef struct rt_forward {
    rt_q_t deadlines;                  /* requests, deadline order */
    rt_q_t attempts;                   /* parts in flight, send order */
    rt_q_t backoff[RT_BACKOFF_LEVELS]; /* parts waiting 5, 10, ... 100 ms */
    rt_q_t now;                        /* parts to (re)send this turn */
    uv_timer_t timer;                  /* earliest of the queues' heads */
    uint64_t timer_at;                 /* when it fires, 0: not armed */
    uint64_t attempt_ms;               /* one attempt's answer time limit */
    size_t live;                       /* requests not yet answered */
    uint64_t trace_base;               /* random per process: trace ids are base + seq */
    uint64_t trace_seq;
    /* counters for the shutdown summary */
    uint64_t requests, retries, redirects, timeouts, overloaded;
} rt_forward_t;

void rt_fwd_init(rt_router_t *r);
/* Take one client frame (after HELLO). Answers it exactly once, then calls
 * rt_cconn_request_done(c). */
void rt_fwd_accept(rt_router_t *r, rt_cconn_t *c, uint16_t type, uint64_t id,
                   const uint8_t *payload, size_t len);
/* Send the parts due this turn (the end-of-turn prepare). */
void rt_fwd_turn(rt_router_t *r);
/* A new map was installed: parts waiting for one route again now. */
void rt_fwd_map_changed(rt_router_t *r);
/* Answer every live request with code (shutdown). */
void rt_fwd_fail_all(rt_router_t *r, int code, const char *msg);
void rt_fwd_close(rt_router_t *r);

/* ---- watch.c: the cluster map from the meta group ------------------------*/

#define RT_MAP_WAIT_MS 5000 /* one MAP_GET long-poll */

typedef struct rt_watch {
    shale_client_t *poll_cli; /* the long-poll (its deadline: wait + timeout) */
    shale_client_t *ref_cli;  /* immediate refreshes (deadline: timeout) */
    shale_req_t poll_req, ref_req;
    int poll_busy, ref_busy, ref_again;
    uv_timer_t poll_timer;  /* next long-poll after a failure */
    uv_timer_t ref_timer;   /* rate limit of refreshes */
    uv_timer_t nomap_timer; /* refresh again while there is no map */
    uint64_t poll_sent_ms, last_ref_ms;
    uint64_t want_epoch; /* newest epoch a node told about */
    unsigned poll_fails, ref_fails;
    unsigned poll_rot, ref_rot; /* rotation of the --meta list per client */
    int started, stopping;
    uint64_t refused_epoch; /* last map refused (logged once) */
} rt_watch_t;

int rt_watch_start(rt_router_t *r, char *err, size_t errlen);
/* A node answered WRONG_GROUP (its epoch: seen, 0 unknown): ask for the map
 * now (at most one refresh in flight, and rate limited). */
void rt_watch_refresh(rt_router_t *r, uint64_t seen);
void rt_watch_stop(rt_router_t *r);

/* ---- obs.c: metrics and the HTTP endpoint --------------------------------*/

struct rt_obs;
/* The registry (always kept; counting is cheap). 0 or -1 without memory. */
int rt_obs_init(rt_router_t *r);
/* Listen when --http is set. 0, or -1 with err. */
int rt_obs_start(rt_router_t *r, char *err, size_t errlen);
void rt_obs_stop(rt_router_t *r);
void rt_obs_free(rt_router_t *r);
/* A client request of type answered with code (0 ok); start_ns: uv_hrtime()
 * at its arrival. */
void rt_obs_request(rt_router_t *r, uint16_t type, int code, uint64_t start_ns);
/* An attempt retried because of code (SHALE_EIO: the connection). */
void rt_obs_retry(rt_router_t *r, int code);
/* The retry cause (0..RT_OBS_NCAUSES-1) of an attempt that ended with code. */
#define RT_OBS_NCAUSES 8
int rt_obs_cause(int code);
/* Words for log lines, the same as the metric labels: the op of a request
 * type, the outcome of a code, the name of a cause. Never NULL. */
const char *rt_obs_op_name(const rt_router_t *r, uint16_t type);
const char *rt_obs_outcome_name(const rt_router_t *r, int code);
const char *rt_obs_cause_name(const rt_router_t *r, int cause);
/* The address /metrics and /health are served on, or NULL without --http. */
const char *rt_obs_http_addr(const rt_router_t *r);
void rt_obs_map_installed(rt_router_t *r);
void rt_obs_map_refresh(rt_router_t *r);

/* ---- authn.c: users and roles (--auth) --------------------------------------*/

/* Who is on a client connection. */
typedef struct rt_authn_conn {
    char user[AUTH_NAME_MAX + 1]; /* the logged-in user; "": none (anonymous) */
    const Shale__User *u;         /* its record in the table of generation gen */
    uint64_t gen;
    login_req_t *login;           /* HELLO credential being checked */
} rt_authn_conn_t;

typedef struct rt_authn {
    login_svc_t login;
    user_watch_t uwatch; /* the meta group's user table */
    char *pw;            /* --auth-password-file's password (wiped at exit) */
    size_t pwlen;
    uint8_t *cred;       /* packed Credential for node HELLOs (upstream.c) */
    size_t cred_len;
    uint64_t denied;     /* requests refused (metrics) */
} rt_authn_t;

/* Read the router's own credential. 0, or -1 with err. */
int rt_authn_init(rt_router_t *r, char *err, size_t errlen);
/* Start the login service and (--auth) the user table watch. */
int rt_authn_start(rt_router_t *r, char *err, size_t errlen);
void rt_authn_stop(rt_router_t *r);
void rt_authn_free(rt_router_t *r);
/* The router's credential for a libshale client it opens (none: unchanged). */
void rt_authn_client_options(const rt_router_t *r, shale_options_t *o);
/* 0 when the connection's user may send m (of type); else SHALE_EAUTH (no
 * user) or SHALE_EPERM with why. m NULL: the verb alone (STATUS). */
int rt_authn_check(rt_router_t *r, rt_authn_conn_t *ac, uint16_t type, const ProtobufCMessage *m,
                   char *why, size_t whylen);
/* The connection's user (client_conn.c). */
rt_authn_conn_t *rt_cconn_authn(rt_cconn_t *c);
/* Who the connection is, for its HELLO_REPLY: auth (whether --auth is on)
 * and, once logged in, user, role and key prefix of its record now. The
 * strings point into ac and the table: pack hr before returning to the loop. */
void rt_authn_hello_fill(rt_router_t *r, rt_authn_conn_t *ac, Shale__HelloReply *hr);

/* ---- The router ------------------------------------------------------------*/

struct rt_router {
    uv_loop_t *loop;
    rt_config_t cfg;
    uv_tcp_t listener;
    int listener_inited;
    uv_tcp_t resp_listener; /* --resp: the Redis protocol */
    int resp_listener_inited;
    rk_cursors_t resp_cursors; /* the RESP port's SCAN cursors (made at the first SCAN) */
    uv_prepare_t turn; /* end of turn: resume, send, flush */
    uv_signal_t sigterm, sigint, sigusr1, sighup;
    struct tls_ctx *tls_server; /* the client port's TLS (NULL: plain TCP) */
    struct tls_ctx *tls_client; /* dials to nodes (upstream.c) */
    uv_timer_t stop_timer;
    uint64_t stop_started;
    rt_q_t conns;     /* client connections */
    rt_q_t dirty;     /* client connections with output queued */
    rt_q_t resumable; /* client connections with input kept back */
    size_t nconns;
    rt_route_t route;
    rt_watch_t watch;
    rt_upstream_t up;
    rt_forward_t fwd;
    struct rt_obs *obs;
    rt_authn_t authn;
    int stopping;
    int notified_ready; /* the service manager was told STATUS=ready */
    int exit_code;
};

/* Begin a clean shutdown (signal): stop accepting, let in-flight requests
 * finish within the request timeout, then close everything. */
void rt_router_stop(rt_router_t *r, int exit_code);

#endif
