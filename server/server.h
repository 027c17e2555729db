/* The shaled process state shared by its modules.
 *
 * One shaled_t per process, owned by main (shaled.c). Modules:
 *   conn.c        client connections: framing, HELLO, output coalescing
 *   dispatch.c    request validation and routing to reads or the proposer
 *   propose.c     group commit: many client mutations per Raft entry
 *   raft_fsm.c    the Raft state machine (apply/snapshot/restore) on storage
 *   read_index.c  linearizable reads batched behind one leadership check
 *   raft_node.c   raft + raft_uv set-up, start and shutdown
 *   raft_guard.c  libraft 0.15 safety fixes through struct raft_io
 *   snapshot_*.c  RocksDB state moved out of band (snapshot_xfer.h)
 *   obs.c         metrics and the HTTP endpoint (--http: /metrics, /health)
 * Everything runs on the one libuv loop thread. */
#ifndef SHALE_SERVER_H
#define SHALE_SERVER_H

#include <raft.h>
#include <raft/uv.h>
#include <stdint.h>
#include <uv.h>

#include "auth.h"
#include "clock_est.h"
#include "config.h"
#include "login.h"
#include "raft_guard.h"
#include "shale.h"
#include "shale.pb-c.h"
#include "store.h"
#include "user_watch.h"
#include "watch_cache.h"

typedef struct shaled shaled_t;
typedef struct conn conn_t;
typedef struct sreq sreq_t;
typedef struct batch batch_t;
typedef struct rp_list rp_list_t;

/* Intrusive doubly linked queue (as in libuv's QUEUE). */
typedef struct qnode {
    struct qnode *next, *prev;
} qnode_t;

static inline void q_init(qnode_t *h) { h->next = h->prev = h; }
static inline int q_empty(const qnode_t *h) { return h->next == h; }
static inline void q_push(qnode_t *h, qnode_t *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}
static inline void q_remove(qnode_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}
#define q_data(ptr, type, field) \
    ((type *)((char *)(ptr) - offsetof(type, field)))

/* One client request between its frame arriving and its answer leaving.
 * Holds a reference on its connection; freed by sreq_done. */
struct sreq {
    qnode_t link;          /* in a proposer / read queue */
    conn_t *conn;
    uint64_t id;           /* frame request id */
    uint16_t type;         /* SHALE_MSG_*_REQ */
    ProtobufCMessage *msg; /* unpacked request (owned) */
    uint16_t slot;         /* first key's slot (when has_slot) */
    int has_slot;
    uint64_t trace;        /* Route.trace_id a router stamped (0: none) */
    uint64_t received_us;
    int code;              /* outcome answered (SHALE_E*, 0 ok): for metrics */
    uint64_t watch_from;   /* WATCH: the first revision it asks for (watch.c) */
};

/* Who is on a connection (authn.c). */
typedef struct authn_conn {
    char user[AUTH_NAME_MAX + 1]; /* the logged-in user; "": none (anonymous) */
    const Shale__User *u;         /* its record in the table of generation gen */
    uint64_t gen;
    login_req_t *login;           /* HELLO credential being checked */
} authn_conn_t;

/* Process-wide server state. */
/* A request proposed as its own Raft entry and answered from its apply
 * (req_prop.c). unanswered gets a request whose entry completed without
 * rp_take finding it: status 0 (applied as a replay) or a Raft error
 * (leadership lost: outcome unknown); it must answer r. */
typedef void (*rp_unanswered_cb)(shaled_t *s, sreq_t *r, int status);
struct rp_list {
    qnode_t props;
    shaled_t *s;
    uint64_t n; /* proposed, callback pending */
    rp_unanswered_cb unanswered;
};

struct shaled {
    shaled_config_t cfg;
    uv_loop_t *loop;
    store_t *store;
    char raft_dir[600];
    char db_dir[600];

    /* raft (raft_node.c) */
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct tcp_wrap *transport_wrap; /* raft_tcp.c: TCP_NODELAY on peers */
    /* --raft resolved once at start (shaled.c; a host name looked up with
     * a blocking getaddrinfo before the loop runs): the listener binds to
     * it and outgoing Raft connections leave from it (port 0 here). */
    struct sockaddr_storage raft_src;
    uv_timer_t disk_timer;           /* raft_disk.c: free-space watch */
    struct raft_fsm fsm;
    raft_guard_t guard;              /* raft_guard.c: safety wrapper of io */
    int raft_inited;
    int raft_closed;

    /* network (conn.c) */
    struct tls_ctx *tls_server; /* the client port's TLS (NULL: plain TCP) */
    struct tls_ctx *tls_client; /* what this node dials client ports with (meta, snapshots)
                                 * and peers' Raft ports */
    struct tls_ctx *tls_raft;   /* the Raft port's TLS: client certificates required */
    uv_tcp_t listener;
    int listener_inited;
    qnode_t conns;       /* all open connections */
    qnode_t dirty;       /* connections with output to flush */
    qnode_t resumable;   /* connections with kept-back input to decode */
    uv_idle_t resume_idle; /* active while resumable is not empty */
    uv_check_t flush;    /* end of each loop turn: propose, flush output */
    uint64_t nconns;

    /* proposer (propose.c) */
    qnode_t pending;     /* sreqs waiting for a Raft entry */
    uint64_t npending;
    qnode_t inflight;    /* batches proposed, callback not yet fired */
    uint64_t ninflight;
    uint64_t proposal_seq;
    uint64_t boot_nonce;  /* random per process start (Command.proposer_boot) */
    uv_timer_t session_timer;
    uv_timer_t expire_timer; /* leader: proposes EXPIRE entries (TTL) */
    struct raft_apply expire_req;
    int expire_inflight; /* an EXPIRE entry is proposed, callback pending */
    int expire_full;     /* the last one listed EXPIRE_MAX_KEYS keys */

    /* group membership (members.c, admin.c) */
    Shale__MemberTable *members; /* replicated table; NULL until known */
    struct admin_op *admin;      /* the membership change in progress */
    uint64_t applied_leader_ms;  /* newest leader timestamp applied here */
    uint64_t last_proposal_ms;   /* when this leader last proposed an entry */
    uv_timer_t tick_timer;       /* leader: freshness ticks for STALE reads */
    /* What the service manager was last told (sd_notify.h): STATUS text
     * and when readiness was last looked at. */
    char notified_status[320];
    uint64_t notify_checked_ms;

    /* snapshot transfer (snapshot_xfer.h) */
    int snap_streams;            /* streams being served */
    uint64_t snap_seq;           /* names checkpoint directories */

    /* meta group (meta.c, --mode meta) */
    Shale__ClusterMap *map;      /* applied cluster map; NULL before init */
    qnode_t map_watchers;        /* MAP_GET long-polls waiting for news */
    uint64_t nmap_watchers;
    qnode_t map_cas_pending;     /* MAP_CAS waiting to be proposed */
    rp_list_t map_props;         /* MAP_CAS proposed, callback pending */
    uv_timer_t map_sweep;        /* ends long-polls whose wait is over */

    /* users and roles (users.c, --mode meta; started and stopped by meta.c) */
    Shale__UserTable *users;     /* applied user table; NULL before the first user */
    qnode_t user_watchers;       /* USER_LIST long-polls waiting for news */
    uint64_t nuser_watchers;
    qnode_t user_pending;        /* USER_CHANGE waiting to be proposed */
    rp_list_t user_props;        /* USER_CHANGE proposed, callback pending */
    uv_timer_t user_sweep;       /* ends long-polls whose wait is over */
    uint64_t users_gen;          /* bumped whenever s->users is replaced */

    /* authentication (authn.c, --auth) */
    login_svc_t login;           /* HELLO credential checks */
    user_watch_t uwatch;         /* data node: the meta group's user table */
    char *auth_pw;               /* --auth-password-file's password (wiped at exit) */
    size_t auth_pwlen;
    uint8_t *auth_cred;          /* packed Credential for raw HELLOs (snapshot fetch) */
    size_t auth_cred_len;
    uint64_t auth_denied;        /* requests refused by role or prefix (metrics) */

    /* slot ownership (ownership.c, data node with --group/--meta) */
    Shale__SlotOwnership *own;   /* applied record; NULL: none yet */
    uint32_t own_count;          /* slots set in own */
    uint8_t *own_state;          /* per slot: OWN_* (derived from own) */
    Shale__ClusterMap *own_map;  /* newest map seen from meta */
    struct shale_client *meta_client;
    struct shale_req own_req;    /* the MAP_GET long-poll */
    int own_watching, own_hurry, own_proposing, own_slots_warned;
    int own_reopen; /* SIGHUP reloaded TLS: reopen meta_client before the next watch */
    uint64_t own_watch_at; /* TEST ONLY (test-map-watch-pause-ms): no watch before (ms) */
    struct raft_apply own_apply;
    uv_timer_t own_timer;

    /* slot migration (migrate.c) */
    qnode_t mig_pending;         /* MIG_IMPORT waiting to be proposed */
    rp_list_t mig_props;         /* imports proposed, callback pending */

    /* consistency check (check.c) */
    struct check_state *check;
    rp_list_t check_props;       /* check entries proposed, callback pending */

    /* WATCH (watch.c) */
    watch_cache_t wcache;        /* the group's recent changes, from the apply path */
    qnode_t watchers;            /* WATCH long-polls waiting for a change */
    uint64_t nwatchers;
    uv_timer_t watch_sweep;      /* ends long-polls whose wait is over */
    int watch_dirty;             /* changes appended by the entry being applied */
#define WATCH_TOUCHED_MAX 64
    uint32_t watch_touched[WATCH_TOUCHED_MAX]; /* ... to these slots */
    int watch_ntouched;          /* > WATCH_TOUCHED_MAX: to too many to list */
    /* reads (read_index.c) */
    qnode_t reads_waiting;    /* arrived, waiting for the next barrier */
    struct rd_barrier *barrier; /* in flight, or NULL */
    int broken_lease;         /* TEST ONLY (--test-broken-reads): reads_broken_local */

    /* clock offset to the leader (clock_ping.c) */
    clk_est_t clk;
    uv_timer_t clk_timer;
    struct shale_client *clk_client; /* to the leader's client port, or NULL */
    char clk_addr[160];              /* the address clk_client dials */
    struct shale_req clk_req;        /* the CLOCK request in flight */
    int clk_inflight;
    int clk_conn_new;                /* clk_client was opened for the ping in flight */
    unsigned clk_ticks;
    uint64_t clk_ping_leader;        /* whom the last ping went to */
    uint64_t clk_send_mono, clk_send_real; /* us, when it was sent */
    /* leader: its clock against its group's (clock_ping.c, "The leader's
     * timestamps" in docs/consistency.md) */
    clk_peers_t clk_peers;           /* its voters' reported offsets to it */
    unsigned clk_off_ticks;          /* consecutive ticks beyond the max offset */
    struct raft_transfer clk_xfer;   /* a clock-driven handoff in flight */
    int clk_xfer_busy;
    uint64_t clk_handoffs;           /* handoffs started */
    uint64_t clk_stamps_corrected;   /* entries stamped behind the local clock */

    /* lifecycle */
    uv_signal_t sigterm, sigint, sigusr1, sighup;
    uv_timer_t stop_timer;
    uint64_t stop_waited_ms; /* draining raft appends before raft_close */
    int stopping;
    int exit_code;
    int storage_failed;
    char storage_err[STORE_ERRLEN];

    /* counters, read by obs.c at scrape time */
    uint64_t applied_entries;
    uint64_t applied_mutations;
    uint64_t expired_keys; /* rows deleted by EXPIRE entries (TTL) */

    /* observability (obs.c) */
    struct obs *obs;
};

/* conn.c */
/* Build the TLS contexts from --tls-* (nothing when TLS is off). 0, or -1
 * with err. */
int conn_tls_init(shaled_t *s, char *err, size_t errlen);
/* SIGHUP: rebuild both contexts from their files; new connections use
 * them, open ones keep theirs. A failure is logged and changes nothing. */
void conn_tls_reload(shaled_t *s);
void conn_tls_free(shaled_t *s);
int conn_listen(shaled_t *s, char *err, size_t errlen);
void conn_close_all(shaled_t *s);
/* Queue a packed frame (malloc'd, ownership passes) for c. */
void conn_send(conn_t *c, uint8_t *frame, size_t len);
void conn_flush_all(shaled_t *s);
/* Decode input kept back by flow control on connections that may take
 * requests again (end of loop turn, never inside a callback chain). */
void conn_resume_all(shaled_t *s);
/* Queue an Error frame answering request id (0: the connection). */
void conn_send_error(conn_t *c, uint64_t id, int code, const char *msg);
void conn_unref(conn_t *c);
/* Bytes of answers queued or being written on c. */
size_t conn_out_bytes(const conn_t *c);
const char *conn_peer(const conn_t *c);
/* The connection's TLS session once established (NULL on a plain port). */
const struct tls_sess *conn_tls_sess(const conn_t *c);
/* Long answers (a snapshot stream) produce more output only when the
 * connection drains: cb runs after a write completes with fewer than
 * CONN_DRAIN_LOW_WATER bytes unsent, and once when the connection closes
 * (conn_is_open() is then false; the callback is cleared after that). */
#define CONN_DRAIN_LOW_WATER (1u << 20)
typedef void (*conn_drain_cb)(conn_t *c, void *arg);
void conn_set_drain_cb(conn_t *c, conn_drain_cb cb, void *arg);
void conn_ref(conn_t *c);
int conn_is_open(const conn_t *c);
void conn_request_done(conn_t *c);
shaled_t *conn_server(const conn_t *c);

/* The connection's user record (authn.c). */
authn_conn_t *conn_authn(conn_t *c);

/* authn.c: users on connections, role checks (--auth) */
/* Read this node's own credential. 0, or -1 with err. */
int authn_init(shaled_t *s, char *err, size_t errlen);
/* Start the login service and (data node) the user table watch. */
int authn_start(shaled_t *s, char *err, size_t errlen);
void authn_stop(shaled_t *s);
void authn_free(shaled_t *s);
/* This node's credential for a libshale client it opens (none: unchanged). */
void authn_client_options(const shaled_t *s, shale_options_t *o);
/* The user table logins and checks use now, and its generation. */
const Shale__UserTable *authn_table(const shaled_t *s, uint64_t *gen);
/* 0 when r's user may send it; else r is answered (UNAUTHENTICATED or
 * PERMISSION_DENIED) and -1 returned. */
int authn_check(shaled_t *s, sreq_t *r);
/* Who the connection is, for its HELLO_REPLY: auth (whether --auth is on)
 * and, once logged in, user, role and key prefix of its record now. The
 * strings point into a and the table: pack hr before returning to the loop. */
void authn_hello_fill(shaled_t *s, authn_conn_t *a, Shale__HelloReply *hr);

/* dispatch.c */
void dispatch_frame(shaled_t *s, conn_t *c, uint16_t type, uint64_t id,
                    const uint8_t *payload, size_t len);
/* Answer a request with an error frame and free it. */
void sreq_fail(sreq_t *r, int code, const char *msg);
/* Answer with a packed response message and free it. */
void sreq_reply(sreq_t *r, uint16_t type, const ProtobufCMessage *resp);
void sreq_free(sreq_t *r);
/* Answer with an Error message built by the caller (e.g. with an epoch). */
void sreq_reply_error(sreq_t *r, const Shale__Error *e);
/* An error carrying the epoch the caller should refresh past. */
void sreq_fail_epoch(sreq_t *r, int code, const char *msg, uint64_t epoch);
/* The leader's client address hint for NOT_LEADER answers ("" if none). */
const char *shaled_leader_hint(shaled_t *s);

/* propose.c */
void propose_enqueue(shaled_t *s, sreq_t *r);
void propose_flush(shaled_t *s);
/* FSM side: results for this node's own entry (proposal_seq). */
void propose_deliver(shaled_t *s, uint64_t proposal_seq,
                     store_request_t *reqs, size_t n,
                     const Shale__Command *cmd);
void propose_fail_all(shaled_t *s, int code, const char *msg);
/* An entry with no mutations: a leader timestamp for STALE-read freshness. */
int propose_tick(shaled_t *s);
/* An entry replacing the member table (admin.c). */
int propose_members(shaled_t *s, const Shale__MemberTable *t);
int propose_start(shaled_t *s);
void propose_stop(shaled_t *s);

/* expire.c: the leader's EXPIRE entries (TTL background deletion) */
int expire_start(shaled_t *s);
void expire_stop(shaled_t *s);

/* check.c: the replica consistency check (CHECK, Command.check) */
int check_init(shaled_t *s);
void check_request(shaled_t *s, sreq_t *r);
/* Apply of a check entry at index (after its no-op batch); replay: the
 * store was already past index. */
void check_applied(shaled_t *s, uint64_t index, const Shale__Command *cmd, int replay);
/* Cancel the running check (node stopping); does not wait. */
void check_stop(shaled_t *s);
/* Cancel and wait until no worker reads the store (before it is closed or
 * replaced). */
void check_quiesce(shaled_t *s);
void check_free(shaled_t *s);
typedef struct check_metrics {
    uint64_t index;        /* the last check's entry (0: none) */
    int state;             /* SHALE__CHECK_STATE__* */
    uint64_t duration_ms, done_unix_ms, rows, completed, failed;
} check_metrics_t;
void check_metrics(shaled_t *s, check_metrics_t *m);

/* raft_fsm.c */
void raft_fsm_init(shaled_t *s);
/* Encode a Command into a padded raft buffer (raft_malloc'd). */
int raft_cmd_encode(const Shale__Command *cmd, struct raft_buffer *out);
/* Decode a padded raft buffer; returns NULL if malformed. */
Shale__Command *raft_cmd_decode(const struct raft_buffer *buf);

/* read_index.c */
void reads_enqueue(shaled_t *s, sreq_t *r);
void reads_flush(shaled_t *s);
void reads_fail_all(shaled_t *s, int code, const char *msg);
/* Serve one read request from the local store now. */
void reads_serve(shaled_t *s, sreq_t *r);
/* TEST ONLY (--test-broken-reads 1): whether this node answers a
 * LINEARIZABLE read from its local state at once, skipping the barrier.
 * Always 0 without the flag. */
int reads_broken_local(shaled_t *s);

/* clock_ping.c: this member's clock against the leader's (clock_est.h) */
void clock_start(shaled_t *s);
void clock_stop(shaled_t *s);
/* CLOCK: answer with this node's realtime and whether it leads. */
void clock_handle_req(shaled_t *s, sreq_t *r);
/* 1 with a reason line when this member may not serve STALE reads by its
 * clock (no fresh sample, a step, or |offset| + uncertainty over
 * --max-clock-offset-ms); 0 when it may, on the leader, on meta nodes and
 * with --test-ignore-clock-offset. */
int clock_problem(shaled_t *s, char *why, size_t n);
/* The estimate now: 0 and *v, or -1 (none, the leader, a meta node). */
int clock_view_now(shaled_t *s, clk_view_t *v);
/* The timestamp (ms) the leader writes into the entry it proposes now: its
 * realtime, moved back when its voters measure it ahead of the group's
 * clock by more than --max-clock-offset-ms (clk_stamp_correction). */
uint64_t clock_stamp_ms(shaled_t *s);
/* The leader's view of its group's clock: 0 with the range the group's
 * clock minus its own (us) lies in (clk_group_range) and what it rests on
 * ("reports" or "previous leader"), or -1 when it knows too little (not
 * the leader, too few reports, no previous leader's sample). */
int clock_group_view(shaled_t *s, int64_t *lo_us, int64_t *hi_us, const char **source);
/* Upper bound (ms, leader's clock) on how old state stamped
 * applied_leader_ms is now; UINT64_MAX with why when the clock rule
 * refuses. Without the rule (leader, --test-ignore-clock-offset): the
 * local clock's age, as before. */
uint64_t clock_stale_check(shaled_t *s, uint64_t applied_leader_ms, char *why, size_t n);

/* raft_node.c */
/* seed: founding voters to bootstrap on an empty log; NULL when joining. */
int raft_node_start(shaled_t *s, const Shale__MemberTable *seed, char *err,
                    size_t errlen);
void raft_node_close(shaled_t *s, raft_close_cb cb);
void raft_node_release(shaled_t *s);
int raft_node_is_leader(shaled_t *s);

/* raft_tcp.c: TCP_NODELAY on every Raft connection (wraps the transport's
 * listen/connect; call after raft_uv_tcp_init, unwrap after it is closed). */
int raft_tcp_wrap(shaled_t *s);
void raft_tcp_unwrap(shaled_t *s);
/* 1 when a stream whose Raft handshake says (id, address) may be handed to
 * raft_uv: a configuration member other than this node, connecting from
 * its own IP; else 0 with the reason in why. */
int raft_tcp_peer_allowed(shaled_t *s, raft_id id, const char *address, struct uv_stream_s *stream,
                          char *why, size_t whylen);

/* raft_tls.c: mutual TLS on the Raft port (used by raft_tcp.c when
 * s->tls_raft is set). */
typedef struct raft_tls raft_tls_t;
raft_tls_t *raft_tls_new(shaled_t *s, struct raft_uv_transport *t);
int raft_tls_listen(raft_tls_t *rt, raft_uv_accept_cb cb);
int raft_tls_connect(raft_tls_t *rt, struct raft_uv_connect *req, raft_id id, const char *address,
                     raft_uv_connect_cb cb);
/* Stop listening and close every connection (the loop finishes the
 * closes); then raft_tls_free once the loop has run. */
void raft_tls_close(raft_tls_t *rt);
void raft_tls_free(raft_tls_t *rt);

/* raft_disk.c: a failed Raft log write stops the node (wraps io->append,
 * watches free space). Wrap after raft_uv_init; stop when shutting down. */
int raft_disk_wrap(shaled_t *s);
void raft_disk_stop(shaled_t *s);

/* members.c */
/* Parse --initial-cluster "ID=RAFT/CLIENT,..." into a table (*out malloc'd,
 * shale__member_table__free_unpacked). */
int members_parse_list(const char *spec, Shale__MemberTable **out, char *err,
                       size_t errlen);
/* Load the stored table; when there is none, store seed (may be NULL). */
int members_load(shaled_t *s, const Shale__MemberTable *seed, char *err);
/* Replace the table (FSM apply of Command.members, or the bootstrap seed at
 * index 0), atomically with the applied index. */
int members_set(shaled_t *s, uint64_t index, const Shale__MemberTable *t,
                char *err);
const Shale__Member *members_find(const shaled_t *s, uint64_t id);
/* A fresh copy of the table with add inserted/replaced and remove_id gone. */
Shale__MemberTable *members_with(const shaled_t *s, const Shale__Member *add,
                                 uint64_t remove_id);
void members_free(shaled_t *s);

/* admin.c: membership changes and leadership transfer, one at a time. */
void admin_start(shaled_t *s, sreq_t *r);
void admin_poll(shaled_t *s);
void admin_fail_all(shaled_t *s, int code, const char *msg);

/* meta.c: the cluster map (--mode meta) */
int meta_load(shaled_t *s, char *err);
void meta_start(shaled_t *s);
void meta_get(shaled_t *s, sreq_t *r);   /* MAP_GET: any member, long-poll */
void meta_cas(shaled_t *s, sreq_t *r);   /* MAP_CAS: queued for meta_flush */
void meta_flush(shaled_t *s);            /* end of turn: propose queued changes */
/* FSM: apply Command.map_cas at index (answers the proposer's request). */
int meta_apply(shaled_t *s, uint64_t index, const Shale__Command *cmd, char *err);
void meta_fail_all(shaled_t *s, int code, const char *msg);
void meta_stop(shaled_t *s);
void meta_free(shaled_t *s);

/* users.c: the user table (--mode meta). meta_load/start/flush/fail_all/
 * stop/free call the matching users_* (the meta group's state is the map
 * and the users). */
int users_load(shaled_t *s, char *err);
void users_start(shaled_t *s);
void users_list(shaled_t *s, sreq_t *r);   /* USER_LIST: any member, long-poll */
void users_change(shaled_t *s, sreq_t *r); /* USER_CHANGE: queued for users_flush */
void users_flush(shaled_t *s);
/* FSM: apply Command.user_change at index (answers the proposer's request). */
int users_apply(shaled_t *s, uint64_t index, const Shale__Command *cmd, char *err);
void users_fail_all(shaled_t *s, int code, const char *msg);
void users_stop(shaled_t *s);
void users_free(shaled_t *s);
/* The applied table's version (0: no user yet). */
uint64_t users_version(const shaled_t *s);

/* ownership.c: the slots this data node's group owns (--group/--meta) */
/* Answer r (WRONG_GROUP / SLOT_MOVING / UNAVAILABLE) and return -1 unless
 * this node serves every key's slot now; 0 otherwise. */
int dispatch_check_ownership(shaled_t *s, sreq_t *r);

void rp_init(rp_list_t *l, shaled_t *s, rp_unanswered_cb unanswered);
/* Propose cmd for r (this stamps timestamp and proposer fields); on
 * failure r is answered and -1 returned. */
int rp_submit(rp_list_t *l, sreq_t *r, Shale__Command *cmd);
/* In apply: the proposer's request for this entry, or NULL (another
 * node's entry, an earlier boot's, or already answered). */
sreq_t *rp_take(rp_list_t *l, const Shale__Command *cmd);

/* Slot migration, node side (migrate.c, docs/resharding.md). */
void mig_start(shaled_t *s);
void mig_export(shaled_t *s, sreq_t *r); /* MIG_EXPORT: any member of the source */
void mig_import(shaled_t *s, sreq_t *r); /* MIG_IMPORT: queued for mig_flush */
void mig_flush(shaled_t *s);             /* end of turn: propose queued imports */
int mig_apply_import(shaled_t *s, uint64_t index, const Shale__Command *cmd, char *err);
void mig_fail_all(shaled_t *s, int code, const char *msg);

int own_load(shaled_t *s, char *err);
int own_start(shaled_t *s, char *err, size_t errlen);
/* 0, or SHALE_EWRONGGROUP (*epoch set) / SHALE_EUNAVAILABLE / SHALE_EINVAL
 * with msg, for a request on keys[0..n). */
int own_check(shaled_t *s, const ProtobufCBinaryData *keys, size_t n, const Shale__Route *route,
              char *msg, size_t msglen, uint64_t *epoch);
/* The same check for one slot (a SCAN names its slot, not a key). */
int own_check_slot(shaled_t *s, uint32_t slot, const Shale__Route *route, char *msg,
                   size_t msglen, uint64_t *epoch);
void own_flush(shaled_t *s);             /* end of turn: leader proposes a newer record */
void own_push(shaled_t *s, sreq_t *r);   /* MIG_PUSH: a map the coordinator just changed */
int own_apply(shaled_t *s, uint64_t index, const Shale__SlotOwnership *o, char *err);
uint32_t own_count(const shaled_t *s);
/* What the applied record says of one slot. */
enum { OWN_NONE = 0, OWN_SERVE = 1, OWN_FENCED = 2, OWN_IMPORTING = 3 };
int own_slot_state(const shaled_t *s, uint32_t slot);
/* The applied record's migration with this id, or NULL; *outgoing says
 * whether this group is its source. */
const Shale__Migration *own_migration(const shaled_t *s, uint64_t id, int *outgoing);
/* Whether the migration lists slot. */
int own_mig_has_slot(const Shale__Migration *m, uint32_t slot);
/* 0 when every op's slot is served here now (apply time, deterministic on
 * every member), else SHALE_ESLOTMOVING / SHALE_EWRONGGROUP. */
int own_apply_check(const shaled_t *s, const uint16_t *slots, size_t n);
void own_stop(shaled_t *s);
/* SIGHUP reloaded the TLS files: the meta watch reconnects with them. */
void own_tls_reloaded(shaled_t *s);
void own_free(shaled_t *s);

/* watch.c: WATCH long-polls over the watch cache (watch_cache.h). */
int watch_init(shaled_t *s, char *err, size_t errlen); /* after the store is open */
void watch_start(shaled_t *s);
void watch_stop(shaled_t *s);   /* answers waiting watches UNAVAILABLE */
void watch_free(shaled_t *s);
void watch_request(shaled_t *s, sreq_t *r); /* WATCH: any member */
/* The apply path (raft_fsm.c): the changes of the entry at index (requests
 * as store_apply left them; refused ones have nops 0 / txn NULL). */
void watch_note_entry(shaled_t *s, uint64_t index, const store_request_t *reqs, size_t n);
/* A key deleted by TTL expiry in the entry at index (for the expiry path:
 * call it from the apply of the entry that deletes the key, before
 * watch_applied). version: the version deleted. */
void watch_note_expired(shaled_t *s, uint64_t index, const uint8_t *key, size_t klen,
                        uint64_t version);
/* The entry at index is applied: progress, and wake watches with news. */
void watch_applied(shaled_t *s, uint64_t index);
/* The store was swapped for a checkpoint: the cache restarts at its index. */
void watch_restored(shaled_t *s);
/* Around own_apply: a copy of the slot states before (malloc, NULL: none),
 * then the slots that moved in start their history at index; watches of
 * slots that left are answered WRONG_GROUP. watch_own_after frees before. */
uint8_t *watch_own_before(const shaled_t *s);
void watch_own_after(shaled_t *s, uint64_t index, uint8_t *before);

/* obs.c: metrics (always kept) and the HTTP endpoint (--http). */
int obs_init(shaled_t *s);
/* Start the HTTP listener when --http is set. 0 or -1 with err. */
int obs_start(shaled_t *s, char *err, size_t errlen);
void obs_stop(shaled_t *s);
/* 1 when the node is ready (what /health and shale_ready report); else 0
 * and why (a line for operators). */
int obs_health(shaled_t *s, char *why, size_t n);
void obs_free(shaled_t *s);
/* A request was answered with r->code (0 ok) (sreq_free): counts it, and
 * logs it with its trace id when slow (--slow-ms) or at debug. */
void obs_request_done(shaled_t *s, const sreq_t *r);
/* The address /metrics and /health are served on, or NULL without --http. */
const char *obs_http_addr(const shaled_t *s);
/* End of loop turn: notice leader changes. */
void obs_turn(shaled_t *s);
/* n entries of bytes payload handed to the Raft log (raft_disk.c). */
void obs_appended(shaled_t *s, unsigned n, uint64_t bytes);
/* A snapshot taken (install 0) or installed (1) in us microseconds. */
void obs_snapshot(shaled_t *s, int install, uint64_t us);
/* Migration records exported (source 1) or imported and applied (0). */
void obs_migration(shaled_t *s, int source, uint64_t bytes, uint64_t keys);

/* shaled.c */
void shaled_stop(shaled_t *s, int exit_code);
/* Storage failed: stop applying, refuse work, shut down. */
void shaled_storage_failed(shaled_t *s, const char *msg);
uint64_t shaled_now_ms(void);
uint64_t shaled_now_us(void);

#endif
