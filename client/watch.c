/* libshale: watches (shale_watch_async, shale_watch). A watch is a chain of
 * WATCH long-polls (frame 26) sent with shale_call(_async), one at a time,
 * each asking for the changes after the last revision delivered
 * (docs/protocol.md, "Watch").
 *
 * Rules:
 *  - the next poll asks from the revision the last answer covered + 1,
 *    pinned to the group that answered: events are delivered once, in
 *    order, whichever member or router answers the next poll;
 *  - a poll that fails with a transient error (timeout, lost connection,
 *    UNAVAILABLE, OVERLOADED, ...) is sent again, unchanged, after
 *    RETRY_MS: nothing of it was delivered, so nothing is lost or repeated;
 *  - any other error ends the watch and is reported once;
 *  - memory: one poll in flight, one answer decoded at a time.
 * Never touches the connection itself (client.c / conn.c do). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_WAIT_MS 1000
#define RETRY_MS 100

struct shale_watch {
    cq_t link;         /* in c->watches while the client is open */
    shale_client_t *c; /* NULL once the client closed */
    shale_req_t req;
    uv_timer_t timer;
    uint8_t *key;
    size_t klen;
    int prefix;
    uint64_t next;      /* the next poll's from_revision (0: from now) */
    uint64_t group;     /* the group whose revisions these are (0: not yet known) */
    uint64_t delivered; /* everything up to here was delivered */
    uint32_t wait_ms;
    shale_watch_cb cb;
    void *ud;
    int inflight, in_cb, canceled, closing;
};

static int transient(int code)
{
    switch (code) {
    case SHALE_ETIMEOUT:
    case SHALE_EUNAVAILABLE:
    case SHALE_EIO:
    case SHALE_ENOTLEADER:
    case SHALE_EOVERLOAD:
    case SHALE_ESTALE:
    case SHALE_ESLOTMOVING:
    case SHALE_ESTORAGE:
        return 1;
    default:
        return 0;
    }
}

static uint32_t wait_for(const shale_options_t *o, uint32_t asked)
{
    uint32_t w = asked ? asked : DEFAULT_WAIT_MS;
    if (o->timeout_ms / 2 < w)
        w = o->timeout_ms / 2;
    if (o->stall_ms != UINT32_MAX && o->stall_ms / 2 < w)
        w = o->stall_ms / 2;
    return w;
}

/* The WATCH payload (malloc'd, *len bytes). */
static uint8_t *pack_request(const uint8_t *key, size_t klen, int prefix, uint64_t from,
                             uint64_t group, uint32_t wait_ms, size_t *len)
{
    Shale__WatchRequest q = SHALE__WATCH_REQUEST__INIT;
    q.key.data = (uint8_t *)key;
    q.key.len = klen;
    if (prefix) {
        q.has_prefix = 1;
        q.prefix = 1;
    }
    if (from > 0) {
        q.has_from_revision = 1;
        q.from_revision = from;
    }
    if (group > 0) {
        q.has_group = 1;
        q.group = group;
    }
    q.has_wait_ms = 1;
    q.wait_ms = wait_ms;
    *len = protobuf_c_message_get_packed_size(&q.base);
    uint8_t *p = malloc(*len ? *len : 1);
    if (p != NULL)
        protobuf_c_message_pack(&q.base, p);
    return p;
}

/* An answer as a batch (events point into resp). Advances *next, *group,
 * *delivered. 0, or an error code with msg for an answer that breaks the
 * rules (another group, out of order). *deliver: whether there is anything
 * to tell (events or progress). */
static int take_answer(const Shale__WatchResponse *resp, shale_watch_event_t **evs,
                       shale_watch_batch_t *b, uint64_t *next, uint64_t *group, uint64_t *delivered,
                       int *deliver, char *msg)
{
    memset(b, 0, sizeof(*b));
    *evs = NULL;
    *deliver = 0;
    uint64_t g = resp->has_group ? resp->group : 0;
    if (*group != 0 && g != *group) {
        snprintf(msg, SHALE_ERRMSG_LEN,
                 "group %llu answered a watch of group %llu's revisions: "
                 "re-read and watch from now",
                 (unsigned long long)g, (unsigned long long)*group);
        return SHALE_EWRONGGROUP;
    }
    *group = g;
    if (resp->n_events > 0 && (*evs = calloc(resp->n_events, sizeof(**evs))) == NULL) {
        snprintf(msg, SHALE_ERRMSG_LEN, "out of memory");
        return SHALE_ENOMEM;
    }
    size_t n = 0;
    uint64_t prev = *delivered;
    for (size_t i = 0; i < resp->n_events; i++) {
        const Shale__WatchEvent *e = resp->events[i];
        if (e->revision <= *delivered || e->revision < prev || e->revision > resp->revision ||
            (*next > 0 && e->revision < *next)) {
            free(*evs);
            *evs = NULL;
            snprintf(msg, SHALE_ERRMSG_LEN,
                     "watch answer out of order (revision %llu after "
                     "%llu)",
                     (unsigned long long)e->revision, (unsigned long long)prev);
            return SHALE_EPROTO;
        }
        prev = e->revision;
        shale_watch_event_t *o = &(*evs)[n++];
        o->revision = e->revision;
        o->kind = (shale_watch_kind_t)e->kind;
        o->key = e->key.data;
        o->klen = e->key.len;
        o->value = e->has_value && e->value.len > 0 ? e->value.data : NULL;
        o->vlen = e->has_value ? e->value.len : 0;
        o->version = e->has_version ? e->version : 0;
    }
    b->status = SHALE_OK;
    b->events = *evs;
    b->n = n;
    b->group = g;
    if (resp->revision + 1 > *next) {
        *next = resp->revision + 1;
        *deliver = 1;
    }
    if (resp->revision > *delivered)
        *delivered = resp->revision;
    b->revision = *delivered;
    if (n > 0)
        *deliver = 1;
    return 0;
}

/* ---- Asynchronous ----------------------------------------------------------*/

static void on_closed(uv_handle_t *h)
{
    shale_watch_t *w = h->data;
    free(w->key);
    free(w);
}

static void finish(shale_watch_t *w)
{
    if (w->closing)
        return;
    w->closing = 1;
    if (w->c != NULL)
        cq_remove(&w->link);
    w->c = NULL;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, on_closed);
}

static void report_end(shale_watch_t *w, int status, const char *msg, uint64_t epoch)
{
    shale_watch_batch_t b;
    memset(&b, 0, sizeof(b));
    b.status = status;
    b.revision = w->delivered;
    b.group = w->group;
    b.epoch = epoch;
    b.errmsg = msg != NULL && msg[0] != '\0' ? msg : shale_strerror(status);
    if (!w->canceled) {
        w->in_cb = 1;
        w->cb(w, &b, w->ud);
        w->in_cb = 0;
    }
    finish(w);
}

static void poll_send(shale_watch_t *w);

static void on_retry(uv_timer_t *t)
{
    shale_watch_t *w = t->data;
    if (w->canceled || w->closing)
        return;
    if (w->c == NULL) {
        report_end(w, SHALE_ECANCELED, "the client was closed", 0);
        return;
    }
    poll_send(w);
}

void client_watches_closing(shale_client_t *c)
{
    while (!cq_empty(&c->watches)) {
        shale_watch_t *w = cq_data(c->watches.next, shale_watch_t, link);
        cq_remove(&w->link);
        w->c = NULL;
        if (!w->inflight && !w->closing) /* else its poll's cancel ends it */
            uv_timer_start(&w->timer, on_retry, 0, 0);
    }
}

static void on_poll(shale_req_t *req, int status)
{
    shale_watch_t *w = req->data;
    w->inflight = 0;
    if (w->canceled) {
        shale_req_cleanup(req);
        finish(w);
        return;
    }
    if (status != SHALE_OK) {
        char msg[SHALE_ERRMSG_LEN];
        snprintf(msg, sizeof(msg), "%s", req->errmsg);
        uint64_t epoch = req->epoch;
        shale_req_cleanup(req);
        if (transient(status)) {
            uv_timer_start(&w->timer, on_retry, RETRY_MS, 0);
            return;
        }
        report_end(w, status, msg, epoch);
        return;
    }
    Shale__WatchResponse *resp = shale__watch_response__unpack(NULL, req->raw_len, req->raw);
    if (resp == NULL) {
        shale_req_cleanup(req);
        report_end(w, SHALE_EPROTO, "malformed WATCH_RESP", 0);
        return;
    }
    shale_watch_event_t *evs = NULL;
    shale_watch_batch_t b;
    char msg[SHALE_ERRMSG_LEN];
    int deliver = 0;
    int rv = take_answer(resp, &evs, &b, &w->next, &w->group, &w->delivered, &deliver, msg);
    if (rv == SHALE_OK && deliver) {
        w->in_cb = 1;
        w->cb(w, &b, w->ud);
        w->in_cb = 0;
    }
    free(evs);
    shale__watch_response__free_unpacked(resp, NULL);
    shale_req_cleanup(req);
    if (rv != SHALE_OK) {
        report_end(w, rv, msg, 0);
        return;
    }
    if (w->canceled) {
        finish(w);
        return;
    }
    poll_send(w);
}

static void poll_send(shale_watch_t *w)
{
    if (w->c == NULL) {
        report_end(w, SHALE_ECANCELED, "the client was closed", 0);
        return;
    }
    size_t len = 0;
    uint8_t *p = pack_request(w->key, w->klen, w->prefix, w->next, w->group, w->wait_ms, &len);
    if (p == NULL) {
        report_end(w, SHALE_ENOMEM, "out of memory", 0);
        return;
    }
    memset(&w->req, 0, sizeof(w->req));
    w->req.data = w;
    int rv =
        shale_call_async(w->c, &w->req, SHALE_MSG_WATCH_REQ, SHALE_MSG_WATCH_RESP, p, len, on_poll);
    free(p);
    if (rv != SHALE_OK) {
        char msg[SHALE_ERRMSG_LEN];
        snprintf(msg, sizeof(msg), "%s", w->req.errmsg);
        shale_req_cleanup(&w->req);
        report_end(w, rv, msg, 0);
        return;
    }
    w->inflight = 1;
}

int shale_watch_async(shale_client_t *c, const void *key, size_t klen,
                      const shale_watch_opts_t *opts, shale_watch_cb cb, void *ud,
                      shale_watch_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL || cb == NULL || key == NULL || klen == 0 || c->closing)
        return SHALE_EINVAL;
    shale_watch_opts_t o;
    memset(&o, 0, sizeof(o));
    if (opts != NULL)
        o = *opts;
    shale_watch_t *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->key = malloc(klen)) == NULL) {
        free(w);
        return SHALE_ENOMEM;
    }
    memcpy(w->key, key, klen);
    w->klen = klen;
    w->c = c;
    w->prefix = o.prefix != 0;
    w->next = o.from_revision;
    w->delivered = o.from_revision > 0 ? o.from_revision - 1 : 0;
    w->group = o.group;
    w->wait_ms = wait_for(&c->opts, o.wait_ms);
    w->cb = cb;
    w->ud = ud;
    uv_timer_init(c->loop, &w->timer);
    w->timer.data = w;
    cq_init(&w->link);
    cq_push(&c->watches, &w->link);
    if (out != NULL)
        *out = w;
    /* The first poll leaves from a timer so the callback never runs inside
     * this call, even for an error. */
    uv_timer_start(&w->timer, on_retry, 0, 0);
    return SHALE_OK;
}

void shale_watch_cancel(shale_watch_t *w)
{
    if (w == NULL || w->canceled || w->closing)
        return;
    w->canceled = 1;
    if (!w->inflight && !w->in_cb)
        finish(w);
}

uint64_t shale_watch_revision(const shale_watch_t *w)
{
    return w != NULL ? w->delivered : 0;
}

/* ---- Blocking --------------------------------------------------------------*/

int shale_watch(shale_client_t *c, const void *key, size_t klen, const shale_watch_opts_t *opts,
                shale_watch_sync_cb cb, void *ud)
{
    if (c == NULL || cb == NULL || key == NULL || klen == 0)
        return SHALE_EINVAL;
    shale_watch_opts_t o;
    memset(&o, 0, sizeof(o));
    if (opts != NULL)
        o = *opts;
    uint64_t next = o.from_revision, group = o.group;
    uint64_t delivered = next > 0 ? next - 1 : 0;
    uint32_t wait_ms = wait_for(&c->opts, o.wait_ms);
    char msg[SHALE_ERRMSG_LEN];
    for (;;) {
        size_t len = 0;
        uint8_t *p = pack_request(key, klen, o.prefix != 0, next, group, wait_ms, &len);
        if (p == NULL)
            return SHALE_ENOMEM;
        uint8_t *raw = NULL;
        size_t rlen = 0;
        uint64_t epoch = 0;
        int rv = shale_call(c, SHALE_MSG_WATCH_REQ, SHALE_MSG_WATCH_RESP, p, len, &raw, &rlen, msg,
                            &epoch);
        free(p);
        shale_watch_batch_t b;
        if (rv != SHALE_OK && transient(rv)) {
            uv_sleep(RETRY_MS);
            continue;
        }
        if (rv == SHALE_OK) {
            Shale__WatchResponse *resp = shale__watch_response__unpack(NULL, rlen, raw);
            free(raw);
            if (resp == NULL) {
                rv = SHALE_EPROTO;
                snprintf(msg, sizeof(msg), "malformed WATCH_RESP");
            } else {
                shale_watch_event_t *evs = NULL;
                int deliver = 0, stop = 0;
                rv = take_answer(resp, &evs, &b, &next, &group, &delivered, &deliver, msg);
                if (rv == SHALE_OK && deliver)
                    stop = cb(&b, ud);
                free(evs);
                shale__watch_response__free_unpacked(resp, NULL);
                if (rv == SHALE_OK && stop)
                    return SHALE_OK;
                if (rv == SHALE_OK)
                    continue;
            }
        }
        memset(&b, 0, sizeof(b));
        b.status = rv;
        b.revision = delivered;
        b.group = group;
        b.epoch = epoch;
        b.errmsg = msg[0] != '\0' ? msg : shale_strerror(rv);
        snprintf(c->errmsg, sizeof(c->errmsg), "%s", b.errmsg);
        cb(&b, ud);
        return rv;
    }
}
