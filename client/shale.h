/* libshale: the C client library of the Shale key-value database.
 *
 * Two ways to use it, one implementation underneath:
 *
 *  - Synchronous: shale_connect() opens a client that runs its own private
 *    libuv loop; every shale_<op>() call blocks until its answer, timeout or
 *    error. One thread at a time per client.
 *
 *  - Asynchronous, on the application's libuv loop (libuv style: a handle,
 *    requests with callbacks): shale_client_open() on a uv_loop_t, then
 *    shale_<op>_async(client, req, ..., cb). Many requests may be in flight on
 *    one connection (pipelining); answers are matched by request id and may
 *    complete in any order. Callbacks run on the loop thread.
 *
 * Every mutation carries (client_id, seq) so the server applies it exactly
 * once: after a lost connection the library reconnects and re-sends pending
 * requests with the same seq until the request's deadline.
 *
 * Errors are negative SHALE_E* codes (shale_errors.h); shale_strerror()
 * names them and the request/client carries the server's message.
 *
 * Keys are binary (1..max_key bytes; NUL is an ordinary byte). A cluster
 * places each key in a slot by hashing it (XXH64) -- only its hash tag when
 * it has one: the bytes between the first '{' and the first '}' after it,
 * if there is at least one ("{user1}.a" and "{user1}.b" hash "user1";
 * "{}a", "a{b" and "a{}{b}" hash the whole key; "a{b}{c}" hashes "b"). Keys
 * sharing a tag share a slot, hence a shard group: an MGET/MPUT of them
 * goes to one group, and moving the slot moves them together
 * (docs/protocol.md, "Keys, slots and hash tags"). The slot is computed by
 * routers and nodes, never by this library, which has no slot function:
 * `shalectl slot KEY` shows where a key lives.
 *
 * Ownership: keys and values passed in are copied before the call returns.
 * Values returned in a shale_value_t / shale_req_t are malloc'd by the
 * library and released with shale_value_free() / shale_req_cleanup(). */
#ifndef SHALE_H
#define SHALE_H

#include <stddef.h>
#include <stdint.h>

#include "shale_errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHALE_VERSION "0.1.0"
#define SHALE_ERRMSG_LEN 256

typedef struct shale_client shale_client_t;

typedef struct shale_options {
    const char *cluster_id;      /* NULL: accept the server's */
    uint32_t timeout_ms;         /* default per-request deadline (5000) */
    uint32_t connect_timeout_ms; /* per connection attempt (2000) */
    uint32_t max_frame;          /* largest frame accepted (8 MiB) */
    uint64_t client_id;          /* 0: random */
    uint32_t max_inflight;       /* requests in flight before queueing (1024) */
    /* A connection with requests outstanding that delivers nothing for this
     * long (a paused or wedged server) is dropped and the requests move to
     * the next address, with the same (client_id, seq) (2000; UINT32_MAX:
     * never — long-poll callers set it above their wait). */
    uint32_t stall_ms;
    /* TLS (docs/security.md). Setting tls_ca turns TLS on for every
     * connection of the client; all NULL: plain TCP. The files are read by
     * shale_connect / shale_client_open (a bad file fails them with
     * SHALE_EINVAL and a message); the strings are not kept.
     *  tls_ca          PEM file of the CA that signed the servers'
     *                  certificates (the cluster CA);
     *  tls_cert        PEM certificate this client presents, for servers
     *                  that require one (--tls-client-auth 1), with
     *  tls_key         its private key (PEM, unencrypted);
     *  tls_server_name NULL: any certificate the CA signed is accepted
     *                  (a dedicated cluster CA signs only the cluster's
     *                  members); a name or IP address: every server's
     *                  certificate must name it; SHALE_TLS_NAME_HOST: the
     *                  certificate must name the host of the address being
     *                  connected to (per connection, redirects included).
     * A handshake that fails (unknown CA, expired or misnamed certificate,
     * a client certificate refused, a server that does not speak TLS) fails
     * every pending request with SHALE_EPROTO and a message saying why. */
    const char *tls_ca;
    const char *tls_cert;
    const char *tls_key;
    const char *tls_server_name;
    /* Authentication, for servers started with --auth (docs/security.md,
     * "Users and roles"): the user name and its password, sent in every
     * HELLO this client makes. NULL user: an anonymous connection, which such
     * a server refuses every request on. The library copies both (the copy
     * is wiped when the client closes); the caller may wipe its own at once.
     * A wrong credential fails the connection with SHALE_EAUTH (not retried). */
    const char *user;
    const void *password;
    size_t password_len;
} shale_options_t;

/* tls_server_name: check each server against the host it was reached at. */
#define SHALE_TLS_NAME_HOST "@host"

void shale_options_init(shale_options_t *opts);

/* The version of the library loaded at run time (SHALE_VERSION is the one
 * of the header compiled against). */
const char *shale_version(void);

typedef enum shale_consistency {
    SHALE_LINEARIZABLE = 0,
    SHALE_STALE = 1,
} shale_consistency_t;

typedef struct shale_read_opts {
    shale_consistency_t consistency;
    uint32_t max_staleness_ms; /* SHALE_STALE only */
} shale_read_opts_t;

/* Result of a read. data is malloc'd (NULL when !found or empty). */
typedef struct shale_value {
    int found;
    uint64_t version;
    uint8_t *data;
    size_t len;
    /* GET of a key with a TTL: ms left on the answering node's log clock
     * (docs/consistency.md, "TTL"); 0: the key has no TTL. */
    uint64_t expires_in_ms;
} shale_value_t;

void shale_value_free(shale_value_t *v);

/* What a CAS compares against: exactly one kind. */
typedef enum shale_cas_kind {
    SHALE_CAS_ABSENT = 1,  /* key must not exist */
    SHALE_CAS_VERSION = 2, /* key's version must equal version */
    SHALE_CAS_VALUE = 3,   /* key's value must equal value/len */
} shale_cas_kind_t;

typedef struct shale_cas_expect {
    shale_cas_kind_t kind;
    uint64_t version;
    const void *value;
    size_t len;
} shale_cas_expect_t;

/* One compare-and-set (shale_compare_and_set): write value to key, or
 * delete key when del is set, if expect holds. The pointers are read (and
 * their bytes copied) during the call only. */
typedef struct shale_cas {
    const void *key;
    size_t klen;
    shale_cas_expect_t expect;
    const void *value; /* the new value (ignored when del is set) */
    size_t vlen;
    int del;
} shale_cas_t;

/* One key (MGET) or key/value (MPUT) of a multi-key operation. */
typedef struct shale_item {
    const void *key;
    size_t klen;
    const void *value; /* MPUT */
    size_t vlen;
} shale_item_t;

/* Per-key outcome of MGET/MPUT. */
typedef struct shale_item_result {
    int status;    /* SHALE_OK or the key's error */
    int found;     /* MGET */
    uint64_t version;
    uint8_t *data; /* MGET value, malloc'd */
    size_t len;
} shale_item_result_t;

/* ---- Transactions (within one slot; docs/protocol.md, "Transactions") -----
 *
 * etcd's Txn shape: if every compare holds, the success ops run, else the
 * failure ops; atomically, in one Raft entry, evaluated against the state
 * at that point of the log (linearizable). Every key (compares and both op
 * lists) must hash to one slot: give related keys the same {hash tag}, e.g.
 * "{acct}alice" and "{acct}bob". Otherwise the router or node refuses it
 * with SHALE_ECROSSSLOT before anything is proposed (libshale does not know
 * the cluster's slot count, so it cannot check this itself).
 * Limits: SHALE_TXN_MAX_COMPARES compares, SHALE_TXN_MAX_OPS ops in both
 * lists together (more: SHALE_ETOOLARGE). A txn with a put or delete
 * carries the client's session (exactly-once like every write: a retry is
 * answered with the first outcome, get values included); a get-only txn
 * carries none (re-running it changes nothing). */

#define SHALE_TXN_MAX_COMPARES 128
#define SHALE_TXN_MAX_OPS 128

typedef enum shale_txn_target {
    SHALE_TXN_VALUE = 1,   /* the key's value (bytewise); an absent key never matches */
    SHALE_TXN_VERSION = 2, /* the key's version; an absent key has version 0 */
    SHALE_TXN_EXISTS = 3,  /* whether the key exists: EQUAL / NOT_EQUAL only */
} shale_txn_target_t;

typedef enum shale_txn_cmp {
    SHALE_TXN_EQUAL = 1,
    SHALE_TXN_NOT_EQUAL = 2,
    SHALE_TXN_LESS = 3,    /* the key's value/version is less than the operand */
    SHALE_TXN_GREATER = 4,
} shale_txn_cmp_t;

typedef struct shale_txn_compare {
    const void *key;
    size_t klen;
    shale_txn_target_t target;
    shale_txn_cmp_t cmp;
    const void *value; /* SHALE_TXN_VALUE */
    size_t vlen;
    uint64_t version;  /* SHALE_TXN_VERSION */
    int exists;        /* SHALE_TXN_EXISTS */
} shale_txn_compare_t;

/* Read-modify-write ops (ADD, APPEND, EXPIRE, a put with keep_ttl) are
 * evaluated at apply, against the state at the txn's point in the log: two
 * concurrent ADDs never lose an update, and a retried one applies once.
 * Each keeps the key's TTL. A failing ADD fails the whole txn (nothing of
 * it applies): SHALE_EINVAL. */
typedef enum shale_txn_op_type {
    SHALE_TXN_PUT = 1,
    SHALE_TXN_DEL = 2,
    SHALE_TXN_GET = 3,
    /* The value read as a 64-bit decimal integer (Redis's rules: no spaces,
     * no leading zeros or '+'; an absent key is 0) plus delta, written back
     * as decimal text. Not an integer, or an overflow: SHALE_EINVAL.
     * Result: data = the new value (text), version. */
    SHALE_TXN_ADD = 4,
    /* The value (absent key: empty) followed by value/vlen. Result: data =
     * the new value, version. */
    SHALE_TXN_APPEND = 5,
    /* The key's TTL set to ttl_ms (0: the TTL removed), its value kept. An
     * absent key is not created. Result: found = the key existed. */
    SHALE_TXN_EXPIRE = 6,
} shale_txn_op_type_t;

typedef struct shale_txn_op {
    shale_txn_op_type_t type;
    const void *key;
    size_t klen;
    const void *value; /* SHALE_TXN_PUT, SHALE_TXN_APPEND */
    size_t vlen;
    int64_t delta; /* SHALE_TXN_ADD */
    /* SHALE_TXN_PUT: the value's TTL (1..SHALE_TTL_MAX_MS; 0: none, and a
     * previous one is cleared unless keep_ttl); SHALE_TXN_EXPIRE: the new
     * TTL (0: none). */
    uint64_t ttl_ms;
    int keep_ttl; /* SHALE_TXN_PUT: keep the key's TTL (with ttl_ms 0 only) */
} shale_txn_op_t;

typedef struct shale_txn {
    const shale_txn_compare_t *compares;
    size_t ncompares;
    const shale_txn_op_t *success;
    size_t nsuccess;
    const shale_txn_op_t *failure;
    size_t nfailure;
} shale_txn_t;

/* ---- Synchronous API ------------------------------------------------------*/

/* Naming: every blocking call shale_X has a libuv form shale_X_async taking a
 * shale_req_t and a callback (shale_connect / shale_connect_async,
 * shale_close / shale_close_async, shale_get / shale_get_async, ...).
 *
 * Addresses: addr is "host:port" or a comma list "h1:p1,h2:p2,..." of the
 * members of one group (or of routers): the client uses one and moves to the
 * next when it fails, when it stalls, or when NOT_LEADER names no leader.
 * Hosts are IP literals or names (resolved on every connect).
 *
 * Ownership of what calls return: a shale_value_t's data, a result's data,
 * a scan page and a transaction's results are malloc'd by the library and
 * released with the matching call (shale_value_free, shale_item_results_free,
 * shale_scan_result_free, shale_req_cleanup for an async request); a
 * shale_node_status_t is filled in place (nothing to free); error messages
 * live in the client (shale_errmsg: until its next call) or the request
 * (req->errmsg, until shale_req_cleanup). */

/* Connect to addr. On failure returns a SHALE_E* code and, if err is not
 * NULL, a message (SHALE_ERRMSG_LEN bytes). */
int shale_connect(const char *addr, const shale_options_t *opts,
                  shale_client_t **out, char *err);

/* Close the client and free it. Pending requests fail with SHALE_ECANCELED.
 * For a client made by shale_client_open, use shale_client_close instead. */
void shale_close(shale_client_t *c);

/* The server's or library's message for the last failed sync call. */
const char *shale_errmsg(const shale_client_t *c);

/* Per-call deadlines: every request submitted after this call, blocking or
 * async, completes by ms after its submission (0: back to
 * options.timeout_ms). Set it before a call that needs another deadline,
 * then back; a request keeps the deadline it was submitted with. */
void shale_set_timeout(shale_client_t *c, uint32_t ms);

int shale_get(shale_client_t *c, const void *key, size_t klen,
              const shale_read_opts_t *ro, shale_value_t *out);
int shale_put(shale_client_t *c, const void *key, size_t klen,
              const void *value, size_t vlen, uint64_t *version);

/* ---- TTL (docs/consistency.md, "TTL") ----------------------------------------
 *
 * shale_put_ttl writes value with a time to live of ttl_ms (1 ..
 * SHALE_TTL_MAX_MS; 0 is a put without TTL; more: SHALE_EINVAL). The key
 * expires when the leader's clock, carried in the log, passes the put's
 * entry time + ttl_ms: from then on it is absent for every read (GET, MGET,
 * SCAN, TXN, CAS) on every node alike, at every consistency level, and it
 * is deleted in the background. A later put without TTL (shale_put,
 * shale_mput, shale_cas, a txn put) clears the TTL; a later shale_put_ttl
 * replaces it (Redis semantics).
 * shale_ttl: *ttl_ms (may be NULL) gets the ms left (>= 1) or -1 when the
 * key has no TTL; SHALE_ENOTFOUND when the key is absent (or expired). The
 * time left is measured on the answering node's log clock, which trails
 * real time by up to the leader's tick (and more for a STALE read). */
#define SHALE_TTL_MAX_MS 3153600000000ULL
int shale_put_ttl(shale_client_t *c, const void *key, size_t klen, const void *value, size_t vlen,
                  uint64_t ttl_ms, uint64_t *version);
int shale_ttl(shale_client_t *c, const void *key, size_t klen, const shale_read_opts_t *ro,
              int64_t *ttl_ms);
/* *existed (may be NULL) says whether the key existed. */
int shale_del(shale_client_t *c, const void *key, size_t klen, int *existed,
              uint64_t *version);
/* Runs *op: SHALE_OK and *version (may be NULL) the new version (the one
 * deleted with del), or SHALE_ECASFAILED and *current (may be NULL; release
 * with shale_value_free) the key's current state. */
int shale_compare_and_set(shale_client_t *c, const shale_cas_t *op, uint64_t *version,
                          shale_value_t *current);
/* The same with the fields as arguments (deprecated: kept for one release,
 * use shale_compare_and_set). */
int shale_cas(shale_client_t *c, const void *key, size_t klen,
              const shale_cas_expect_t *expect, const void *value,
              size_t vlen, int del, uint64_t *version, shale_value_t *current);
/* results: n entries, each released with shale_item_results_free. The call
 * returns SHALE_OK when the request got an answer; per-key errors are in
 * results[i].status. */
int shale_mget(shale_client_t *c, const shale_item_t *keys, size_t n,
               const shale_read_opts_t *ro, shale_item_result_t *results);
int shale_mput(shale_client_t *c, const shale_item_t *items, size_t n,
               shale_item_result_t *results);
void shale_item_results_free(shale_item_result_t *results, size_t n);
/* Run a transaction. SHALE_OK when it ran (either branch): *succeeded (may
 * be NULL) says whether the compares held; *results (may be NULL; release
 * with shale_item_results_free(*results, *nresults), then free(*results))
 * gets one entry per op of the branch that ran, in order: a put's new
 * version; a delete's found = existed and the version deleted; a get's
 * found, value (data/len) and version, as of the txn's earlier ops; an add's
 * or append's new value (data/len) and version; an expire's found = the key
 * existed. Errors:
 * SHALE_ECROSSSLOT, SHALE_EINVAL, SHALE_ETOOLARGE (limits, or gets that
 * would return more than 4 MiB of values), SHALE_EPERM (a txn with a put or
 * delete needs a readwrite user; every key must pass the user's prefix),
 * and those of any write. */
int shale_txn(shale_client_t *c, const shale_txn_t *txn, int *succeeded,
              shale_item_result_t **results, size_t *nresults);

/* Ordered scans (docs/protocol.md, "Scans"). A scan walks the slots
 * 0..S-1 in order and, within a slot, the keys in bytewise order; a call
 * returns one page and an opaque cursor to continue from (NULL when the
 * scan is complete). Meant for a router (it sends each slot's page to the
 * slot's owner) or a standalone group; a shard group in a cluster answers
 * only its own slots (WRONG_GROUP for the rest).
 *
 * The cursor names (slot, last key returned): a scan continued with it is
 * served by whichever group owns the slot then, from the next key on, so
 * slot migrations between pages neither repeat nor skip a key that existed
 * for the whole scan. Each page of one slot is read at one point
 * (linearizable, or STALE within max_staleness_ms, as GET); the scan as a
 * whole is NOT a snapshot (docs/consistency.md).
 *
 * prefix: only keys that begin with it; a prefix that holds a complete hash
 * tag ("{user1}...") scans only that tag's slot. limit: keys per page
 * (0: 100, at most 1000). A page may hold fewer keys than limit, even none,
 * with a cursor still set: a call visits at most 256 slots and about 4 MiB
 * of keys and values; keep calling until the cursor is NULL. A cursor must
 * be passed back with the same prefix (else SHALE_EINVAL); a cursor that is
 * not one libshale made is SHALE_EINVAL. With --auth a prefixed user must
 * scan with a prefix that begins with its key prefix (else SHALE_EPERM). */
typedef struct shale_scan_opts {
    const void *prefix;
    size_t plen;
    uint32_t limit;
    int keys_only;                /* items carry no value */
    const shale_read_opts_t *read; /* NULL: linearizable */
} shale_scan_opts_t;

typedef struct shale_scan_item {
    uint8_t *key; /* malloc'd */
    size_t klen;
    uint8_t *value; /* malloc'd; NULL with keys_only */
    size_t vlen;
    uint64_t version;
} shale_scan_item_t;

typedef struct shale_scan_result {
    shale_scan_item_t *items;
    size_t n;
    char *cursor; /* malloc'd, NUL-terminated; NULL: the scan is complete */
} shale_scan_result_t;

/* One page from cursor (NULL or "": the start). opts may be NULL. On an
 * error *out is empty and the same cursor may be retried. */
int shale_scan(shale_client_t *c, const char *cursor, const shale_scan_opts_t *opts,
               shale_scan_result_t *out);
void shale_scan_result_free(shale_scan_result_t *r);

/* ---- Group administration (synchronous) -----------------------------------*/

#define SHALE_MAX_MEMBERS 16

typedef struct shale_member_info {
    uint64_t id;
    char raft_addr[128];
    char client_addr[128];
    int replica; /* a read replica (Raft standby), not a voter */
} shale_member_info_t;

/* What one node says about itself and its group. */
typedef struct shale_node_status {
    uint64_t node_id;
    char role[16];    /* leader, follower, candidate, replica, unavailable */
    char address[128];
    char cluster_id[64];
    uint64_t term, commit_index, applied_index, last_index;
    uint64_t leader_id;
    char leader[128]; /* leader's client address, "" if unknown */
    int staleness_known;
    uint64_t staleness_ms; /* how old this node's state may be */
    uint64_t keys_estimate;
    char mode[8];          /* "data", "meta" or "router" */
    uint64_t group_id;     /* data node in a cluster: its shard group (0: standalone) */
    uint64_t map_epoch;    /* data: the slot-ownership epoch; meta/router: the map's */
    int slots_owned_known; /* data node in a cluster */
    uint32_t slots_owned;
    size_t nmembers;
    shale_member_info_t members[SHALE_MAX_MEMBERS];
} shale_node_status_t;

/* The status of the node this client is connected to (use a client made
 * with that node's address alone to ask a particular node). */
int shale_status(shale_client_t *c, shale_node_status_t *out);
/* Membership changes and leadership transfer go to the leader (the client
 * follows NOT_LEADER hints). msg (SHALE_ERRMSG_LEN, may be NULL) receives
 * the server's message on success. */
int shale_member_add(shale_client_t *c, uint64_t id, const char *raft_addr,
                     const char *client_addr, int replica, char *msg);
int shale_member_remove(shale_client_t *c, uint64_t id, char *msg);
/* id 0: the most up-to-date voter. */
int shale_leader_transfer(shale_client_t *c, uint64_t id, char *msg);

/* ---- Asynchronous API (libuv) -----------------------------------------------*/

/* The asynchronous API runs on the application's libuv loop; the program
 * includes <uv.h> itself (uv_loop_t is struct uv_loop_s). shale.h does not
 * include it, so a program that uses only the synchronous API above needs
 * no libuv headers (the library still links libuv). */
struct uv_loop_s;

typedef struct shale_req shale_req_t;
typedef void (*shale_cb)(shale_req_t *req, int status);
typedef void (*shale_close_cb)(shale_client_t *c);

typedef enum shale_req_type {
    SHALE_REQ_GET = 1,
    SHALE_REQ_PUT,
    SHALE_REQ_DEL,
    SHALE_REQ_CAS,
    SHALE_REQ_MGET,
    SHALE_REQ_MPUT,
    SHALE_REQ_ADMIN,
    SHALE_REQ_CALL, /* Shale's own tools: any message, raw payloads (shale_internal.h) */
    SHALE_REQ_TXN,
} shale_req_type_t;

/* A request, owned by the caller; must stay valid until its callback runs.
 * Public fields are valid inside the callback and until shale_req_cleanup. */
struct shale_req {
    void *data;             /* for the caller */
    shale_req_type_t type;
    int status;             /* SHALE_OK or SHALE_E* */
    shale_value_t value;    /* GET; CAS_FAILED current state */
    uint64_t version;       /* PUT/DEL/CAS */
    int existed;            /* DEL; TXN: 1 when the compares held (success ops ran) */
    int duplicate;          /* server answered a retry with the first outcome */
    shale_item_result_t *items; /* MGET/MPUT, nitems entries; TXN: per op of the
                                   branch that ran (see shale_txn) */
    size_t nitems;
    char errmsg[SHALE_ERRMSG_LEN];
    char leader_hint[64];
    shale_node_status_t *node_status; /* ADMIN status: filled in when not NULL */
    uint64_t epoch;         /* WRONG_GROUP / CAS_FAILED on a map: the epoch */
    uint8_t *raw;           /* CALL: the answer's payload (malloc) */
    size_t raw_len;
    /* private */
    void *priv_;
};

/* Open a client on the caller's loop; connects in the background and queues
 * requests until connected. *out is freed by shale_close_async. */
int shale_connect_async(struct uv_loop_s *loop, const char *addr, const shale_options_t *opts,
                        shale_client_t **out);
/* Fails pending requests with SHALE_ECANCELED, closes handles, then calls cb
 * (may be NULL) and frees the client. */
void shale_close_async(shale_client_t *c, shale_close_cb cb);
/* The earlier names of those two (deprecated: kept for one release). */
int shale_client_open(struct uv_loop_s *loop, const char *addr,
                      const shale_options_t *opts, shale_client_t **out);
void shale_client_close(shale_client_t *c, shale_close_cb cb);

int shale_get_async(shale_client_t *c, shale_req_t *req, const void *key,
                    size_t klen, const shale_read_opts_t *ro, shale_cb cb);
int shale_put_async(shale_client_t *c, shale_req_t *req, const void *key,
                    size_t klen, const void *value, size_t vlen, shale_cb cb);
/* shale_put_ttl's async form (SHALE_REQ_PUT; req->version on success). The
 * remaining TTL of a key comes with shale_get_async: req->value.expires_in_ms. */
int shale_put_ttl_async(shale_client_t *c, shale_req_t *req, const void *key, size_t klen,
                        const void *value, size_t vlen, uint64_t ttl_ms, shale_cb cb);
int shale_del_async(shale_client_t *c, shale_req_t *req, const void *key,
                    size_t klen, shale_cb cb);
int shale_compare_and_set_async(shale_client_t *c, shale_req_t *req, const shale_cas_t *op,
                                shale_cb cb);
/* deprecated: kept for one release, use shale_compare_and_set_async */
int shale_cas_async(shale_client_t *c, shale_req_t *req, const void *key,
                    size_t klen, const shale_cas_expect_t *expect,
                    const void *value, size_t vlen, int del, shale_cb cb);
int shale_mget_async(shale_client_t *c, shale_req_t *req,
                     const shale_item_t *keys, size_t n,
                     const shale_read_opts_t *ro, shale_cb cb);
int shale_mput_async(shale_client_t *c, shale_req_t *req,
                     const shale_item_t *items, size_t n, shale_cb cb);
/* The arrays and bytes of txn are copied into the request before this
 * returns. On completion req->existed says whether the compares held and
 * req->items/nitems hold the results of the branch that ran. */
int shale_txn_async(shale_client_t *c, shale_req_t *req, const shale_txn_t *txn, shale_cb cb);


/* Release what a completed request holds (value, items). */
void shale_req_cleanup(shale_req_t *req);

/* The client's session id (for logs and tests). */
uint64_t shale_client_id(const shale_client_t *c);

/* ---- Watch ---------------------------------------------------------------------
 *
 * Every change to one key, or to the keys under a hash-tag prefix ("{tag}" or
 * "{tag}rest": every such key is in one slot), in order, from a revision on
 * (docs/protocol.md, "Watch"; the guarantee: docs/consistency.md, "Watch").
 *
 * A revision is the Raft index of the shard group's log entry that made the
 * change: the same on every member of the group, growing, one entry may
 * carry several changes (an MPUT, a transaction). Each batch says the
 * revision everything up to which has been delivered; the library asks for
 * the changes after it, from any member (a router picks one), so a lost
 * connection, a dead node or a new leader neither skips nor repeats a
 * change. Revisions are those of one group: when the slot moves to another
 * group the watch ends with SHALE_EWRONGGROUP (batch.epoch: the map epoch);
 * re-read the keys and watch again from now. A resume from a revision no
 * member keeps any more ends with SHALE_ECOMPACTED: re-read, watch from now.
 *
 * Under the hood a watch is a series of WATCH long-polls (frame 26), one at
 * a time, each waiting up to wait_ms for a change. */

typedef enum shale_watch_kind {
    SHALE_WATCH_PUT = 1,    /* value, version: the new ones */
    SHALE_WATCH_DELETE = 2, /* version: the version deleted */
    SHALE_WATCH_EXPIRE = 3, /* deleted by TTL expiry; version: the version deleted */
} shale_watch_kind_t;

typedef struct shale_watch_event {
    uint64_t revision;
    shale_watch_kind_t kind;
    const uint8_t *key;
    size_t klen;
    const uint8_t *value; /* PUT (NULL when empty) */
    size_t vlen;
    uint64_t version;
} shale_watch_event_t;

/* What a watch callback gets. Valid only during the callback. */
typedef struct shale_watch_batch {
    int status;                        /* SHALE_OK, or the error that ended the watch */
    const shale_watch_event_t *events; /* status OK: n events in revision order */
    size_t n;                          /* 0: progress only */
    uint64_t revision;                 /* every change up to here was delivered:
                                          resume from revision + 1 */
    uint64_t group;                    /* the group whose revisions these are (0: a standalone
                                          node) */
    uint64_t epoch;                    /* SHALE_EWRONGGROUP: the map epoch the node had */
    const char *errmsg;                /* status != OK: why */
} shale_watch_batch_t;

typedef struct shale_watch_opts {
    int prefix;             /* key is a hash-tag prefix: every key that begins with it */
    uint64_t from_revision; /* first revision wanted; 0: from now */
    uint64_t group;         /* the group from_revision counts in (from an earlier batch.group);
                               0: whichever answers first (a resume should pass it) */
    uint32_t wait_ms;       /* long-poll wait per request; 0: 1000, capped below the client's
                               timeout_ms and stall_ms */
} shale_watch_opts_t;

typedef struct shale_watch shale_watch_t;
/* Batches of events (status SHALE_OK; n may be 0: progress), in order and
 * without gap or repeat; then, once, the error that ended the watch
 * (COMPACTED, WRONG_GROUP, PERMISSION_DENIED, INVALID, CANCELED when the
 * client closes, ...). Transient failures (timeouts, lost connections,
 * UNAVAILABLE, OVERLOADED) are retried, never reported. */
typedef void (*shale_watch_cb)(shale_watch_t *w, const shale_watch_batch_t *b, void *ud);

/* Start watching on an async client. key/klen are copied. *out (may be
 * NULL) gets the handle; it stays valid until the callback reported the
 * end, or until shale_watch_cancel. SHALE_OK, or SHALE_EINVAL/ENOMEM
 * (nothing started, the callback never runs). shale_client_close ends the
 * client's watches: each not canceled reports SHALE_ECANCELED (from the
 * loop, after the close call returned). */
int shale_watch_async(shale_client_t *c, const void *key, size_t klen,
                      const shale_watch_opts_t *opts, shale_watch_cb cb, void *ud,
                      shale_watch_t **out);
/* Stop: after it returns the callback never runs again and w is gone (its
 * memory is released once the poll in flight ends). Not after the end was
 * reported. */
void shale_watch_cancel(shale_watch_t *w);
/* The revision everything up to which was delivered (0: none yet). */
uint64_t shale_watch_revision(const shale_watch_t *w);

/* Blocking form on a sync client: calls cb for each batch until cb returns
 * non-zero (then SHALE_OK) or the watch ends (its error; the message in the
 * client's last error and the batch). */
typedef int (*shale_watch_sync_cb)(const shale_watch_batch_t *b, void *ud);
int shale_watch(shale_client_t *c, const void *key, size_t klen, const shale_watch_opts_t *opts,
                shale_watch_sync_cb cb, void *ud);

/* ---- Who the server says this client is -------------------------------------*/

#define SHALE_PREFIX_MAX 4096

typedef struct shale_whoami {
    /* 1: the server runs with --auth (users and roles, docs/security.md);
     * 0: it does not (it serves every request to anyone who reaches it);
     * -1: it did not say (a server from before this field). */
    int auth;
    /* With --auth: the user this connection logged in as ("": anonymous,
     * every request will be refused), its role ("read", "readwrite",
     * "admin"; "" if the server did not say, e.g. the user was removed
     * while it logged in) and its key prefix (key_prefix_len 0: none). */
    char user[65];
    char role[16];
    uint8_t key_prefix[SHALE_PREFIX_MAX];
    size_t key_prefix_len;
} shale_whoami_t;

/* What the server said in the HELLO_REPLY of the client's current (or last)
 * connection: with --auth, who the client is logged in as — the record at
 * login (a role changed later applies to requests at once, but shows here
 * only after a reconnect). Information only: the server checks every
 * request itself. SHALE_OK with *out filled; SHALE_EUNAVAILABLE when no
 * connection has completed its HELLO yet (an async client before its first
 * answer; shale_connect returns only after one); SHALE_EINVAL for NULL. */
int shale_whoami(const shale_client_t *c, shale_whoami_t *out);

#ifdef __cplusplus
}
#endif
#endif
