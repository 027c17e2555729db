/* The blocking libshale API: thin wrappers over the async one.
 *
 * A sync client owns a private uv_loop_t. Each call submits one async
 * request and runs that loop with UV_RUN_ONCE until the request completes
 * (answer, deadline or error), then moves the results into the caller's
 * out-parameters. Only the calling thread ever runs the loop.
 *
 * A write to a connection the server has closed raises SIGPIPE, which kills
 * a process that has not ignored it. The library must not change the
 * process's signal dispositions, so while a sync call runs the loop SIGPIPE
 * is blocked in the calling thread and a SIGPIPE raised meanwhile is
 * consumed before the mask is restored (the write itself fails with EPIPE,
 * which the transport handles). Async users run their own loop and choose
 * their own SIGPIPE policy (as every libuv program does).
 *
 * Owns the private loop and the client's last error message. Never
 * implements protocol or retry logic of its own: all of it is client.c and
 * conn.c, shared with async users. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

typedef struct sigpipe_guard {
    sigset_t old;
    int was_pending;
} sigpipe_guard_t;

static void sigpipe_block(sigpipe_guard_t *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigemptyset(&pend);
    sigpending(&pend);
    g->was_pending = sigismember(&pend, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(sigpipe_guard_t *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigemptyset(&pend);
    sigpending(&pend);
    if (!g->was_pending && sigismember(&pend, SIGPIPE)) {
        /* Raised by our own write: consume it, it must not reach the app. */
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) == -1 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* Run the private loop once, with SIGPIPE held off. */
static int run_loop(uv_loop_t *loop, uv_run_mode mode)
{
    sigpipe_guard_t g;
    sigpipe_block(&g);
    int rv = uv_run(loop, mode);
    sigpipe_restore(&g);
    return rv;
}

static void set_err(char *err, const char *msg)
{
    if (err != NULL)
        snprintf(err, SHALE_ERRMSG_LEN, "%s", msg);
}

int shale_connect(const char *addr, const shale_options_t *opts, shale_client_t **out, char *err)
{
    char msg[SHALE_ERRMSG_LEN];
    if (out == NULL) {
        set_err(err, "out is NULL");
        return SHALE_EINVAL;
    }
    *out = NULL;
    uv_loop_t *loop = malloc(sizeof(*loop));
    if (loop == NULL) {
        set_err(err, "out of memory");
        return SHALE_ENOMEM;
    }
    int rv = uv_loop_init(loop);
    if (rv != 0) {
        snprintf(msg, sizeof(msg), "uv_loop_init: %s", uv_strerror(rv));
        set_err(err, msg);
        free(loop);
        return SHALE_ENOMEM;
    }
    shale_client_t *c;
    rv = client_create(loop, addr, opts, &c, msg);
    if (rv != SHALE_OK) {
        set_err(err, msg);
        uv_loop_close(loop);
        free(loop);
        return rv;
    }
    c->own_loop = loop;
    /* One attempt, bounded by connect_timeout_ms: a caller that wants to
     * wait for a server to come up retries shale_connect. */
    /* Each listed node once, in order, until one answers HELLO. */
    for (unsigned i = 0; i < c->naddrs && c->state != CS_READY; i++) {
        uint64_t failures = c->conn_failures;
        cconn_start(c);
        while (c->state != CS_READY && c->conn_failures == failures)
            run_loop(loop, UV_RUN_ONCE);
        if (c->last_err_code == SHALE_ECLUSTER || c->last_err_code == SHALE_EPROTO ||
            c->last_err_code == SHALE_EAUTH)
            break; /* a wrong peer or credential, not a down node */
    }
    if (c->state != CS_READY) {
        rv = c->last_err_code != 0 ? c->last_err_code : SHALE_EIO;
        set_err(err, c->last_err);
        shale_close(c);
        return rv;
    }
    *out = c;
    return SHALE_OK;
}

void shale_close(shale_client_t *c)
{
    if (c == NULL)
        return;
    uv_loop_t *loop = c->own_loop;
    shale_client_close(c, NULL);
    if (loop == NULL)
        return; /* an async client: its owner runs the loop */
    while (run_loop(loop, UV_RUN_DEFAULT) != 0) {
    }
    uv_loop_close(loop);
    free(loop);
}

const char *shale_errmsg(const shale_client_t *c)
{
    return c != NULL ? c->errmsg : "no client";
}

static void sync_cb(shale_req_t *req, int status)
{
    (void)status;
    *(int *)req->data = 1;
}

/* Start with req zeroed and req->data pointing at a done flag. */
static int sync_check(shale_client_t *c)
{
    if (c == NULL)
        return SHALE_EINVAL;
    if (c->own_loop == NULL) {
        snprintf(c->errmsg, sizeof(c->errmsg),
                 "synchronous call on a client made by shale_client_open");
        return SHALE_EINVAL;
    }
    return SHALE_OK;
}

/* Wait for the request submitted with result rv. */
static int sync_wait(shale_client_t *c, shale_req_t *req, int rv)
{
    if (rv == SHALE_OK) {
        while (!*(int *)req->data)
            run_loop(c->loop, UV_RUN_ONCE);
        rv = req->status;
    }
    if (rv != SHALE_OK)
        snprintf(c->errmsg, sizeof(c->errmsg), "%s",
                 req->errmsg[0] ? req->errmsg : shale_strerror(rv));
    return rv;
}

#define SYNC_BEGIN(c)                                                                              \
    shale_req_t req;                                                                               \
    int done_ = 0;                                                                                 \
    memset(&req, 0, sizeof(req));                                                                  \
    req.data = &done_;                                                                             \
    int rv = sync_check(c);                                                                        \
    if (rv != SHALE_OK)                                                                            \
    return rv

int shale_get(shale_client_t *c, const void *key, size_t klen, const shale_read_opts_t *ro,
              shale_value_t *out)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    SYNC_BEGIN(c);
    rv = sync_wait(c, &req, shale_get_async(c, &req, key, klen, ro, sync_cb));
    if (rv == SHALE_OK && out != NULL) {
        *out = req.value;
        memset(&req.value, 0, sizeof(req.value));
    }
    shale_req_cleanup(&req);
    return rv;
}

int shale_put(shale_client_t *c, const void *key, size_t klen, const void *value, size_t vlen,
              uint64_t *version)
{
    SYNC_BEGIN(c);
    rv = sync_wait(c, &req, shale_put_async(c, &req, key, klen, value, vlen, sync_cb));
    if (version != NULL)
        *version = rv == SHALE_OK ? req.version : 0;
    shale_req_cleanup(&req);
    return rv;
}

int shale_put_ttl(shale_client_t *c, const void *key, size_t klen, const void *value, size_t vlen,
                  uint64_t ttl_ms, uint64_t *version)
{
    SYNC_BEGIN(c);
    rv = sync_wait(c, &req, shale_put_ttl_async(c, &req, key, klen, value, vlen, ttl_ms, sync_cb));
    if (version != NULL)
        *version = rv == SHALE_OK ? req.version : 0;
    shale_req_cleanup(&req);
    return rv;
}

int shale_ttl(shale_client_t *c, const void *key, size_t klen, const shale_read_opts_t *ro,
              int64_t *ttl_ms)
{
    shale_value_t v;
    if (ttl_ms != NULL)
        *ttl_ms = 0;
    int rv = shale_get(c, key, klen, ro, &v);
    if (rv != SHALE_OK)
        return rv;
    if (!v.found) {
        shale_value_free(&v);
        return SHALE_ENOTFOUND;
    }
    if (ttl_ms != NULL)
        *ttl_ms = v.expires_in_ms > 0 ? (int64_t)v.expires_in_ms : -1;
    shale_value_free(&v);
    return SHALE_OK;
}

int shale_del(shale_client_t *c, const void *key, size_t klen, int *existed, uint64_t *version)
{
    SYNC_BEGIN(c);
    rv = sync_wait(c, &req, shale_del_async(c, &req, key, klen, sync_cb));
    if (existed != NULL)
        *existed = rv == SHALE_OK ? req.existed : 0;
    if (version != NULL)
        *version = rv == SHALE_OK ? req.version : 0;
    shale_req_cleanup(&req);
    return rv;
}

int shale_cas(shale_client_t *c, const void *key, size_t klen, const shale_cas_expect_t *expect,
              const void *value, size_t vlen, int del, uint64_t *version, shale_value_t *current)
{
    if (current != NULL)
        memset(current, 0, sizeof(*current));
    SYNC_BEGIN(c);
    rv = sync_wait(c, &req, shale_cas_async(c, &req, key, klen, expect, value, vlen, del, sync_cb));
    if (version != NULL)
        *version = rv == SHALE_OK ? req.version : 0;
    if (rv == SHALE_ECASFAILED && current != NULL) {
        *current = req.value;
        memset(&req.value, 0, sizeof(req.value));
    }
    shale_req_cleanup(&req);
    return rv;
}

int shale_compare_and_set(shale_client_t *c, const shale_cas_t *op, uint64_t *version,
                          shale_value_t *current)
{
    if (op == NULL) {
        if (current != NULL)
            memset(current, 0, sizeof(*current));
        if (version != NULL)
            *version = 0;
        if (c != NULL)
            snprintf(c->errmsg, sizeof(c->errmsg), "compare-and-set: op is NULL");
        return SHALE_EINVAL;
    }
    return shale_cas(c, op->key, op->klen, &op->expect, op->value, op->vlen, op->del, version,
                     current);
}

/* Move per-key results into the caller's array (n entries). */
static void take_items(shale_req_t *req, int rv, shale_item_result_t *results, size_t n)
{
    if (results == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        memset(&results[i], 0, sizeof(results[i]));
        if (rv == SHALE_OK && i < req->nitems) {
            results[i] = req->items[i];
            memset(&req->items[i], 0, sizeof(req->items[i]));
        } else {
            results[i].status = rv;
        }
    }
}

int shale_mget(shale_client_t *c, const shale_item_t *keys, size_t n, const shale_read_opts_t *ro,
               shale_item_result_t *results)
{
    SYNC_BEGIN(c);
    rv = sync_wait(c, &req, shale_mget_async(c, &req, keys, n, ro, sync_cb));
    take_items(&req, rv, results, n);
    shale_req_cleanup(&req);
    return rv;
}

int shale_mput(shale_client_t *c, const shale_item_t *items, size_t n, shale_item_result_t *results)
{
    SYNC_BEGIN(c);
    rv = sync_wait(c, &req, shale_mput_async(c, &req, items, n, sync_cb));
    take_items(&req, rv, results, n);
    shale_req_cleanup(&req);
    return rv;
}

int shale_txn(shale_client_t *c, const shale_txn_t *txn, int *succeeded,
              shale_item_result_t **results, size_t *nresults)
{
    if (succeeded != NULL)
        *succeeded = 0;
    if (results != NULL)
        *results = NULL;
    if (nresults != NULL)
        *nresults = 0;
    SYNC_BEGIN(c);
    rv = sync_wait(c, &req, shale_txn_async(c, &req, txn, sync_cb));
    if (rv == SHALE_OK) {
        if (succeeded != NULL)
            *succeeded = req.existed;
        if (results != NULL && nresults != NULL) {
            *results = req.items;
            *nresults = req.nitems;
            req.items = NULL;
            req.nitems = 0;
        }
    }
    shale_req_cleanup(&req);
    return rv;
}

/* ---- Group administration --------------------------------------------------*/

int shale_status(shale_client_t *c, shale_node_status_t *out)
{
    if (out == NULL)
        return SHALE_EINVAL;
    SYNC_BEGIN(c);
    req.node_status = out;
    rv = sync_wait(c, &req, client_admin_async(c, &req, SHALE_MSG_STATUS_REQ, 0, NULL, NULL, 0,
                                               sync_cb));
    shale_req_cleanup(&req);
    return rv;
}

int shale_call(shale_client_t *c, uint16_t type, uint16_t resp_type, const void *payload,
               size_t len, uint8_t **resp, size_t *resp_len, char *msg, uint64_t *epoch)
{
    if (resp == NULL || resp_len == NULL)
        return SHALE_EINVAL;
    *resp = NULL;
    *resp_len = 0;
    SYNC_BEGIN(c);
    rv = sync_wait(c, &req, shale_call_async(c, &req, type, resp_type, payload, len, sync_cb));
    if (rv == SHALE_OK) {
        *resp = req.raw;
        *resp_len = req.raw_len;
        req.raw = NULL;
    }
    if (msg != NULL)
        snprintf(msg, SHALE_ERRMSG_LEN, "%s", req.errmsg);
    if (epoch != NULL)
        *epoch = req.epoch;
    shale_req_cleanup(&req);
    return rv;
}

static int admin_call(shale_client_t *c, uint16_t type, uint64_t id, const char *raft_addr,
                      const char *client_addr, int replica, char *msg)
{
    SYNC_BEGIN(c);
    rv = sync_wait(c, &req, client_admin_async(c, &req, type, id, raft_addr, client_addr,
                                               replica, sync_cb));
    if (msg != NULL)
        snprintf(msg, SHALE_ERRMSG_LEN, "%s", req.errmsg);
    shale_req_cleanup(&req);
    return rv;
}

int shale_member_add(shale_client_t *c, uint64_t id, const char *raft_addr,
                     const char *client_addr, int replica, char *msg)
{
    return admin_call(c, SHALE_MSG_MEMBER_ADD_REQ, id, raft_addr, client_addr, replica, msg);
}

int shale_member_remove(shale_client_t *c, uint64_t id, char *msg)
{
    return admin_call(c, SHALE_MSG_MEMBER_REMOVE_REQ, id, NULL, NULL, 0, msg);
}

int shale_leader_transfer(shale_client_t *c, uint64_t id, char *msg)
{
    return admin_call(c, SHALE_MSG_LEADER_TRANSFER_REQ, id, NULL, NULL, 0, msg);
}
