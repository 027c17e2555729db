/* Logins on a listener (shaled, shale-router): a HELLO credential checked
 * against a user table, off the loop thread (docs/security.md, "Users and
 * roles").
 *
 * What this file owns: the per-source failed-login limit of one process
 * (login_limit.h), the queue of password checks and their run on libuv's
 * thread pool — at most LOGIN_CONCURRENT at a time, because the pool also
 * runs Raft's and the store's work and a flood of logins must not starve
 * them — and the counters /metrics shows.
 *
 * Rules:
 *  - a malformed credential, a throttled source and a full queue are
 *    answered at once (login_start returns the error); everything else
 *    gets its callback later, exactly once, unless canceled first;
 *  - an unknown user costs the same password hash as a wrong password
 *    (auth_verify_dummy), so timing does not tell which names exist;
 *  - the record checked is the one in the table when the login started (a
 *    copy): a table that changes meanwhile does not affect it;
 *  - passwords are copied only into the request, wiped when it ends, and
 *    never logged; messages name the user, never the password;
 *  - a credential that passed the slow hash is remembered as an HMAC-SHA256,
 *    under a key drawn at random when the service starts, of the user, the
 *    password and the stored hash record (LOGIN_CACHE entries, oldest
 *    replaced): the same credential again skips the slow hash and the
 *    queue (a pool of connections logs in at once), and so do those that
 *    queued behind the first check of a credential, once it passes (a pool
 *    connecting at once pays LOGIN_CONCURRENT hashes, not one per
 *    connection). A changed password or
 *    a removed user changes or drops the record, so the entry stops
 *    matching; a wrong password never matches and still costs the hash.
 * Runs on one loop thread; the worker touches only its own request. */
#ifndef SHALE_LOGIN_H
#define SHALE_LOGIN_H

#include <stdint.h>
#include <uv.h>

#include "auth.h"
#include "login_limit.h"

#define LOGIN_CONCURRENT 2
#define LOGIN_QUEUE_MAX 256
#define LOGIN_MSGLEN 200
#define LOGIN_CACHE 64
#define LOGIN_DIGEST 32

typedef struct login_req login_req_t;

typedef struct login_svc {
    uv_loop_t *loop;
    login_limit_t limit;
    login_req_t *wait_head, *wait_tail; /* not started yet */
    unsigned waiting, running;
    /* verified credentials (see the rules above) */
    uint8_t cache_key[32];
    uint8_t cache[LOGIN_CACHE][LOGIN_DIGEST];
    unsigned cache_n, cache_next;
    /* counters (read at scrape time) */
    uint64_t ok, failed, throttled, overloaded, cached;
} login_svc_t;

/* status 0: user is who the peer is (name valid during the call); else
 * SHALE_EAUTH with msg (wrong password, unknown user, bad record). */
typedef void (*login_cb)(void *arg, int status, const char *user, const char *msg);

void login_svc_init(login_svc_t *ls, uv_loop_t *loop);
/* Cancel every login not started; the running ones end on the loop (their
 * callbacks do not run if canceled). */
void login_svc_close(login_svc_t *ls);

/* Check cred (HELLO.credential bytes) from peer ("host:port") against table
 * (NULL: no users). SHALE_OK: pending, cb runs later (never inside this
 * call) and *out lets the owner cancel it. Otherwise answered now: the
 * code (SHALE_EAUTH: malformed credential or the source is throttled;
 * SHALE_EUNAVAILABLE: no table yet, not counted as a failure;
 * SHALE_EOVERLOAD: too many logins queued; SHALE_ENOMEM) with msg. */
int login_start(login_svc_t *ls, const char *peer, const uint8_t *cred, size_t len,
                const Shale__UserTable *table, login_cb cb, void *arg, login_req_t **out,
                char msg[LOGIN_MSGLEN]);
/* The owner goes away: the callback will not run. */
void login_cancel(login_req_t *r);

#endif
