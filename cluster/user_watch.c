/* Following the meta group's user table (user_watch.h). */
#include "shale_internal.h"
#include "user_watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define RETRY_FIRST_MS 100
#define RETRY_CAP_MS 2000

static void poll_issue(user_watch_t *w);

static void on_retry(uv_timer_t *t)
{
    poll_issue(t->data);
}

static void retry_later(user_watch_t *w)
{
    if (w->stopping)
        return;
    uint64_t ms = RETRY_FIRST_MS << (w->fails < 5 ? w->fails : 5);
    if (ms > RETRY_CAP_MS)
        ms = RETRY_CAP_MS;
    w->fails++;
    uv_timer_start(&w->retry, on_retry, ms, 0);
}

static void on_answer(shale_req_t *req, int status)
{
    user_watch_t *w = req->data;
    w->busy = 0;
    if (w->stopping) {
        shale_req_cleanup(req);
        return;
    }
    if (status != SHALE_OK) {
        char msg[SHALE_ERRMSG_LEN];
        snprintf(msg, sizeof(msg), "%s", req->errmsg);
        shale_req_cleanup(req);
        if (w->cb != NULL && status != SHALE_ECANCELED && status != SHALE_ECLOSED)
            w->cb(w, status, msg, w->arg);
        retry_later(w);
        return;
    }
    Shale__UserListResponse *r = shale__user_list_response__unpack(NULL, req->raw_len, req->raw);
    shale_req_cleanup(req);
    if (r == NULL) {
        if (w->cb != NULL)
            w->cb(w, SHALE_EPROTO, "malformed USER_LIST_RESP", w->arg);
        retry_later(w);
        return;
    }
    w->fails = 0;
    uint64_t have = w->table != NULL ? w->table->version : 0;
    if (w->table == NULL || r->version > have) {
        /* Keep it as a table: the same fields, one allocation. */
        Shale__UserTable t = SHALE__USER_TABLE__INIT;
        t.has_version = 1;
        t.version = r->version;
        t.n_users = r->n_users;
        t.users = r->users;
        size_t len = shale__user_table__get_packed_size(&t);
        uint8_t *buf = malloc(len ? len : 1);
        Shale__UserTable *nt = NULL;
        if (buf != NULL) {
            shale__user_table__pack(&t, buf);
            nt = shale__user_table__unpack(NULL, len, buf);
            free(buf);
        }
        if (nt != NULL) {
            if (w->table != NULL)
                shale__user_table__free_unpacked(w->table, NULL);
            w->table = nt;
            w->gen++;
            if (w->cb != NULL)
                w->cb(w, 0, NULL, w->arg);
        }
    }
    int behind = r->version < have;
    shale__user_list_response__free_unpacked(r, NULL);
    if (behind) /* a lagging member answers at once: do not spin on it */
        uv_timer_start(&w->retry, on_retry, RETRY_FIRST_MS, 0);
    else
        poll_issue(w);
}

static void poll_issue(user_watch_t *w)
{
    if (w->stopping || w->busy || w->cli == NULL)
        return;
    Shale__UserListRequest q = SHALE__USER_LIST_REQUEST__INIT;
    q.has_with_hashes = 1;
    q.with_hashes = 1;
    q.has_known_version = 1;
    q.known_version = w->table != NULL ? w->table->version : 0;
    q.has_wait_ms = 1;
    q.wait_ms = w->table != NULL ? USER_WATCH_WAIT_MS : 0;
    uint8_t buf[32];
    size_t len = shale__user_list_request__pack(&q, buf);
    w->req.data = w;
    if (shale_call_async(w->cli, &w->req, SHALE_MSG_USER_LIST_REQ, SHALE_MSG_USER_LIST_RESP, buf,
                         len, on_answer) != SHALE_OK) {
        retry_later(w);
        return;
    }
    w->busy = 1;
}

int user_watch_start(user_watch_t *w, uv_loop_t *loop, const char *meta,
                     const shale_options_t *opts, user_watch_cb cb, void *arg, char *err,
                     size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->loop = loop;
    w->cb = cb;
    w->arg = arg;
    uv_timer_init(loop, &w->retry);
    w->retry.data = w;
    w->started = 1;
    shale_options_t o = *opts;
    o.timeout_ms = USER_WATCH_WAIT_MS + 5000;
    o.stall_ms = USER_WATCH_WAIT_MS + 2000; /* a long-poll is silent by design */
    int rv = shale_client_open(loop, meta, &o, &w->cli);
    if (rv != SHALE_OK) {
        snprintf(err, errlen, "--meta %s: %s", meta, shale_strerror(rv));
        return rv;
    }
    poll_issue(w);
    return 0;
}

void user_watch_stop(user_watch_t *w)
{
    if (!w->started || w->stopping)
        return;
    w->stopping = 1;
    if (!uv_is_closing((uv_handle_t *)&w->retry)) {
        uv_timer_stop(&w->retry);
        uv_close((uv_handle_t *)&w->retry, NULL);
    }
    if (w->cli != NULL) {
        shale_client_close(w->cli, NULL);
        w->cli = NULL;
    }
}

void user_watch_free(user_watch_t *w)
{
    if (w->table != NULL)
        shale__user_table__free_unpacked(w->table, NULL);
    w->table = NULL;
}
