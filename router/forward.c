/* Forwarding: the life of a client request inside the router.
 *
 * What this file owns: rt_req_t (one client request) and its parts (one per
 * shard group it touches: a single-key request has one part, an MGET/MPUT
 * one per group), the request deadline, each part's attempts and retries,
 * the per-group admission count, and the answer to the client.
 *
 * Rules of a request's life:
 *  - it is answered exactly once: by the node's answer passed on byte for
 *    byte (single-part requests: values, CAS_FAILED with the current value,
 *    STALE_TOO_OLD, ... reach the client exactly as the node sent them), by
 *    a merged answer (multi-part), or by the router's own error;
 *  - every attempt is stamped Route{slot, epoch, trace_id} (the request
 *    re-encoded); the trace id is the client's own Route.trace_id when it
 *    sent one, else this router's (a random per-process base plus a
 *    counter, never 0), the same for every attempt and part;
 *  - an answered request is logged with that trace id, its total time,
 *    attempts, retries and their causes: at debug always, at info/warn when
 *    it took --slow-ms or longer (the nodes log the same id);
 *  - the client's Session is never touched, so a mutation
 *    re-sent after a lost connection, a NOT_LEADER or an attempt timeout is
 *    applied at most once by the group (its session table);
 *  - retries follow retry.c within the deadline (--timeout-ms from
 *    arrival); an attempt unanswered for attempt_ms (a quarter of the
 *    deadline) is abandoned and the next member tried;
 *  - at the deadline a part still working ends with TIMEOUT if it is a
 *    mutation that was written to a node at least once (outcome unknown),
 *    else UNAVAILABLE, naming the last error seen;
 *  - admission: a part is charged to its group while it works; a group with
 *    --max-pending parts charged refuses new ones with OVERLOADED at once
 *    (memory stays bounded, an unreachable group does not stall others);
 *  - MGET/MPUT: parts run in parallel; a part's failure becomes per-key
 *    errors unless every part failed with the same code (split.c). A part
 *    told WRONG_GROUP re-splits its keys under the newer map.
 *
 * Never touches sockets (upstream.c and client_conn.c do) and never changes
 * the map (watch.c installs it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors_wire.h"
#include "keyhash.h"
#include "retry.h"
#include "router.h"
#include "split.h"

enum { P_NEW, P_FLIGHT, P_WAIT, P_DONE };

typedef struct rt_req rt_req_t;

typedef struct rt_part {
    rt_req_t *req;
    rt_q_t tlink;  /* attempts, backoff[i] or now */
    uint64_t wake; /* when its timed queue releases it (loop ms) */
    int state;
    int remap;      /* waiting for a newer map (WRONG_GROUP) */
    uint64_t group; /* the group charged, 0: none */
    uint32_t slot;  /* of the first key: Route.slot */
    size_t n;       /* multi: keys of this part */
    size_t *idx;    /* multi: their request positions (malloc) */
    void *arr;      /* multi: ProtobufCBinaryData[n] (MGET) or KeyValue*[n] (MPUT) */
    rt_upcall_t *call;
    char node[128];      /* node of the current / last attempt */
    uint64_t last_group; /* group of the current / last attempt (logs) */
    uint64_t tried, tried_epoch;
    unsigned backoffs, redirects, attempts;
    int written;    /* a mutation handed to a node at least once */
    int code;       /* final outcome */
    char msg[240];  /* last error (final or retried) */
    uint8_t *frame; /* final answer for the client, or a STALE_TOO_OLD kept for the end */
    size_t flen;
    ProtobufCMessage *resp; /* multi: the part's answer */
    int duplicate;
} rt_part_t;

struct rt_req {
    rt_q_t dlink;
    rt_router_t *r;
    rt_cconn_t *conn;
    uint64_t id, trace;
    uint16_t type, resp_type;
    ProtobufCMessage *msg;
    int mutation, stale, multi;
    int no_resend; /* a TXN with writes and no Session: never re-sent once written */
    int pinned;    /* a WATCH that follows one group (WatchRequest.group): WRONG_GROUP is final */
    uint64_t start, deadline;
    uint64_t start_ns; /* uv_hrtime() at arrival: latency metric */
    unsigned retries;  /* attempts retried, every part */
    uint32_t causes;   /* their causes: bit rt_obs_cause(code) */
    size_t nkeys;
    ProtobufCBinaryData *keys; /* multi: request keys by position (shallow) */
    uint32_t *slots;           /* multi: their slots */
    rt_part_t **parts;
    size_t nparts, cap;
    size_t live;     /* parts not done */
    int hold;        /* > 0: do not complete yet (parts being set up) */
    rt_part_t part0; /* the first part lives here (most requests have one) */
    rt_part_t *parts0[1];
};

static void part_send(rt_part_t *p);
static void arm(rt_router_t *r);

static uint64_t now_ms(rt_router_t *r)
{
    return uv_now(r->loop);
}

/* ---- Timed queues ----------------------------------------------------------
 * Every queue holds entries with one fixed delay, so pushing at the tail
 * keeps it sorted: one timer, armed at the earliest head, serves them all. */

static const uint32_t level_ms[RT_BACKOFF_LEVELS] = {5, 10, 20, 40, 80, 100};

static int level_of(uint32_t ms)
{
    for (int i = 0; i < RT_BACKOFF_LEVELS; i++)
        if (ms <= level_ms[i])
            return i;
    return RT_BACKOFF_LEVELS - 1;
}

static void unqueue(rt_part_t *p)
{
    if (rt_q_linked(&p->tlink))
        rt_q_remove(&p->tlink);
}

static void on_timer(uv_timer_t *t);

static uint64_t head_wake(rt_q_t *q, int parts)
{
    if (rt_q_empty(q))
        return UINT64_MAX;
    if (parts)
        return rt_q_data(q->next, rt_part_t, tlink)->wake;
    return rt_q_data(q->next, rt_req_t, dlink)->deadline;
}

static void arm(rt_router_t *r)
{
    rt_forward_t *f = &r->fwd;
    uint64_t at = head_wake(&f->deadlines, 0);
    uint64_t a = head_wake(&f->attempts, 1);
    if (a < at)
        at = a;
    for (int i = 0; i < RT_BACKOFF_LEVELS; i++) {
        a = head_wake(&f->backoff[i], 1);
        if (a < at)
            at = a;
    }
    if (at == UINT64_MAX) {
        if (f->timer_at != 0)
            uv_timer_stop(&f->timer);
        f->timer_at = 0;
        return;
    }
    if (f->timer_at != 0 && f->timer_at <= at)
        return; /* fires early enough; on_timer re-arms */
    uint64_t now = now_ms(r);
    f->timer_at = at;
    uv_timer_start(&f->timer, on_timer, at > now ? at - now : 0, 0);
}

static void schedule(rt_part_t *p, uint32_t delay_ms)
{
    rt_router_t *r = p->req->r;
    unqueue(p);
    p->state = P_WAIT;
    if (delay_ms == 0) {
        p->wake = 0;
        rt_q_push(&r->fwd.now, &p->tlink);
        return;
    }
    int lv = level_of(delay_ms);
    p->wake = now_ms(r) + level_ms[lv];
    rt_q_push(&r->fwd.backoff[lv], &p->tlink);
    arm(r);
}

/* ---- Group admission -------------------------------------------------------*/

static void charge(rt_part_t *p, uint64_t gid)
{
    rt_router_t *r = p->req->r;
    if (p->group == gid)
        return;
    if (p->group != 0) {
        rt_group_t *old = rt_route_group(&r->route, p->group);
        if (old != NULL && old->pending > 0)
            old->pending--;
    }
    p->group = gid;
    rt_group_t *g = gid != 0 ? rt_route_group(&r->route, gid) : NULL;
    if (g != NULL)
        g->pending++;
    else
        p->group = 0;
}

/* ---- Answers -----------------------------------------------------------------*/

static uint8_t *error_frame(uint64_t id, int code, const char *msg, size_t *len)
{
    return wire_error_frame(id, code, msg, NULL, len);
}

static void req_free(rt_req_t *q)
{
    for (size_t i = 0; i < q->nparts; i++) {
        rt_part_t *p = q->parts[i];
        free(p->frame);
        free(p->idx);
        free(p->arr);
        if (p->resp != NULL)
            protobuf_c_message_free_unpacked(p->resp, NULL);
        if (p != &q->part0)
            free(p);
    }
    if (q->parts != q->parts0)
        free(q->parts);
    free(q->keys);
    free(q->slots);
    if (q->msg != NULL)
        protobuf_c_message_free_unpacked(q->msg, NULL);
    rt_cconn_t *c = q->conn;
    free(q);
    rt_cconn_request_done(c);
}

/* The merged answer of a multi-part request, or a whole-request error. */
static void answer_multi(rt_req_t *q)
{
    rt_router_t *r = q->r;
    size_t len = 0;
    uint8_t *f = NULL;
    /* (a multi-key request has at least one key and one part) */
    int *codes = calloc(q->nparts + 1, sizeof(int));
    Shale__KeyValue **merged = calloc(q->nkeys + 1, sizeof(*merged));
    Shale__KeyValue **errkv = calloc(q->nparts + 1, sizeof(*errkv));
    Shale__Error *errs = calloc(q->nparts + 1, sizeof(*errs));
    if (codes == NULL || merged == NULL || errkv == NULL || errs == NULL) {
        f = error_frame(q->id, SHALE_ENOMEM, "out of memory merging the answer", &len);
        goto out;
    }
    for (size_t i = 0; i < q->nparts; i++)
        codes[i] = q->parts[i]->code;
    int verdict = rt_merge_verdict(codes, q->nparts);
    if (verdict != SHALE_OK) {
        rt_part_t *p0 = q->parts[0];
        if (q->nparts == 1 && p0->frame != NULL) {
            f = p0->frame; /* the node's own error, byte for byte */
            len = p0->flen;
            p0->frame = NULL;
        } else {
            f = error_frame(q->id, verdict, p0->msg, &len);
        }
        goto out;
    }
    int dup = 0;
    for (size_t i = 0; i < q->nparts; i++) {
        rt_part_t *p = q->parts[i];
        if (p->code == SHALE_OK) {
            Shale__KeyValue **items;
            size_t nitems;
            if (q->type == SHALE_MSG_MGET_REQ) {
                items = ((Shale__MGetResponse *)p->resp)->items;
                nitems = ((Shale__MGetResponse *)p->resp)->n_items;
            } else {
                items = ((Shale__MPutResponse *)p->resp)->items;
                nitems = ((Shale__MPutResponse *)p->resp)->n_items;
            }
            rt_merge_place(merged, p->idx, p->n, items, nitems); /* counts checked */
            dup |= p->duplicate;
            continue;
        }
        errkv[i] = calloc(p->n, sizeof(Shale__KeyValue));
        if (errkv[i] == NULL) {
            f = error_frame(q->id, SHALE_ENOMEM, "out of memory merging the answer", &len);
            goto out;
        }
        shale__error__init(&errs[i]);
        int wire = shale_error_to_wire(p->code);
        errs[i].code = (Shale__ErrorCode)(wire != 0 ? wire : SHALE__ERROR_CODE__UNAVAILABLE);
        errs[i].message = p->msg;
        rt_merge_fail(merged, p->idx, p->n, errkv[i], q->keys, &errs[i]);
    }
    ProtobufCMessage *resp;
    Shale__MGetResponse mg = SHALE__MGET_RESPONSE__INIT;
    Shale__MPutResponse mp = SHALE__MPUT_RESPONSE__INIT;
    if (q->type == SHALE_MSG_MGET_REQ) {
        mg.n_items = q->nkeys;
        mg.items = merged;
        resp = &mg.base;
    } else {
        mp.n_items = q->nkeys;
        mp.items = merged;
        mp.has_duplicate = dup;
        mp.duplicate = dup;
        resp = &mp.base;
    }
    size_t need = protobuf_c_message_get_packed_size(resp);
    if (need > r->cfg.max_frame) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "answer of %zu bytes exceeds the %llu-byte frame limit; ask for less", need,
                 (unsigned long long)r->cfg.max_frame);
        f = error_frame(q->id, SHALE_ETOOLARGE, msg, &len);
        goto out;
    }
    f = wire_pack(q->resp_type, q->id, resp, UINT32_MAX, &len);
    if (f == NULL)
        f = error_frame(q->id, SHALE_ENOMEM, "out of memory building the answer", &len);
out:
    rt_cconn_send(q->conn, f, len);
    if (errkv != NULL)
        for (size_t i = 0; i < q->nparts; i++)
            free(errkv[i]);
    free(errkv);
    free(errs);
    free(merged);
    free(codes);
}

/* The outcome for metrics: a single part's code; for MGET/MPUT the code
 * every part failed with, else ok (per-key errors inside the answer). */
static int req_outcome(const rt_req_t *q)
{
    int code = q->parts[0]->code;
    for (size_t i = 1; i < q->nparts && code != SHALE_OK; i++)
        if (q->parts[i]->code != code)
            return SHALE_OK;
    return code;
}

/* The request's log line (docs/observability.md, "Request tracing"):
 * debug always, info/warn when it took --slow-ms or longer. The slot,
 * group and node are those of its first part. */
static void log_answered(const rt_req_t *q)
{
    const rt_router_t *r = q->r;
    int code = req_outcome(q);
    uint64_t now = uv_hrtime();
    double ms = now > q->start_ns ? (double)(now - q->start_ns) / 1e6 : 0;
    int expected = code == SHALE_OK || code == SHALE_ECASFAILED || code == SHALE_ENOTFOUND;
    /* A WATCH long-poll waits by design: never "slow". */
    int level = log_request_level(q->type == SHALE_MSG_WATCH_REQ ? 0 : ms, r->cfg.slow_ms,
                                  expected);
    if (level < rt_log_get_level())
        return;
    char trace[LOG_TRACE_LEN], causes[160] = "-";
    size_t n = 0;
    for (int c = 0; c < RT_OBS_NCAUSES; c++) {
        if (!(q->causes & (1u << c)))
            continue;
        int w =
            snprintf(causes + n, sizeof(causes) - n, "%s%s", n ? "," : "", rt_obs_cause_name(r, c));
        if (w < 0 || (size_t)w >= sizeof(causes) - n)
            break;
        n += (size_t)w;
    }
    unsigned attempts = 0;
    for (size_t i = 0; i < q->nparts; i++)
        attempts += q->parts[i]->attempts;
    const rt_part_t *p0 = q->parts[0];
    rt_log_write(level, level == RT_LOG_DEBUG ? "request" : "slow request",
                 " trace=%s op=%s slot=%u group=%llu node=%s parts=%zu attempts=%u retries=%u "
                 "causes=%s outcome=%s ms=%.3f peer=%s",
                 log_trace_str(q->trace, trace), rt_obs_op_name(r, q->type), p0->slot,
                 (unsigned long long)p0->last_group, p0->node[0] ? p0->node : "-", q->nparts,
                 attempts, q->retries, causes, rt_obs_outcome_name(r, code), ms,
                 rt_cconn_peer(q->conn));
}

static void complete(rt_req_t *q)
{
    rt_router_t *r = q->r;
    rt_q_remove(&q->dlink);
    r->fwd.live--;
    rt_obs_request(r, q->type, req_outcome(q), q->start_ns);
    if (!q->multi) {
        rt_part_t *p = q->parts[0];
        if (p->frame == NULL) {
            p->frame = error_frame(q->id, p->code != SHALE_OK ? p->code : SHALE_ENOMEM,
                                   p->msg[0] ? p->msg : NULL, &p->flen);
        }
        rt_cconn_send(q->conn, p->frame, p->flen);
        p->frame = NULL;
    } else {
        answer_multi(q);
    }
    log_answered(q);
    req_free(q);
}

/* The part has its final outcome. frame: the answer for the client (taken;
 * NULL: built from code and msg when needed). */
static void part_finish(rt_part_t *p, int code, const char *msg, uint8_t *frame, size_t flen)
{
    rt_req_t *q = p->req;
    unqueue(p);
    if (p->call != NULL) {
        rt_up_cancel(p->call);
        p->call = NULL;
    }
    p->state = P_DONE;
    p->code = code;
    if (msg != NULL)
        snprintf(p->msg, sizeof(p->msg), "%s", msg);
    if (frame != NULL) {
        free(p->frame);
        p->frame = frame;
        p->flen = flen;
    } else if (code != SHALE_OK && code != SHALE_ESTALE && code != SHALE_ECOMPACTED &&
               p->frame != NULL) {
        /* A kept STALE_TOO_OLD is the answer only when every member
         * refused (code ESTALE); any other ending replaces it. */
        free(p->frame);
        p->frame = NULL;
    }
    charge(p, 0);
    if (--q->live == 0 && q->hold == 0)
        complete(q);
}

/* ---- Building an attempt -------------------------------------------------*/

/* The request re-encoded for this part with Route stamped; a frame whose
 * header carries type and length (upstream.c sets the id). */
static uint8_t *encode(rt_part_t *p, size_t *flen)
{
    rt_req_t *q = p->req;
    rt_router_t *r = q->r;
    Shale__Route rt = SHALE__ROUTE__INIT;
    rt.has_slot = 1;
    rt.slot = p->slot;
    rt.has_epoch = 1;
    rt.epoch = r->route.epoch;
    rt.has_trace_id = 1;
    rt.trace_id = q->trace;
    Shale__Route **routep = NULL;
    Shale__MGetRequest mg = SHALE__MGET_REQUEST__INIT;
    Shale__MPutRequest mp = SHALE__MPUT_REQUEST__INIT;
    ProtobufCMessage *m = q->msg;
    switch (q->type) {
    case SHALE_MSG_GET_REQ:
        routep = &((Shale__GetRequest *)m)->route;
        break;
    case SHALE_MSG_PUT_REQ:
        routep = &((Shale__PutRequest *)m)->route;
        break;
    case SHALE_MSG_DEL_REQ:
        routep = &((Shale__DeleteRequest *)m)->route;
        break;
    case SHALE_MSG_CAS_REQ:
        routep = &((Shale__CasRequest *)m)->route;
        break;
    case SHALE_MSG_TXN_REQ:
        routep = &((Shale__TxnRequest *)m)->route;
        break;
    case SHALE_MSG_SCAN_REQ:
        routep = &((Shale__ScanRequest *)m)->route;
        break;
    case SHALE_MSG_WATCH_REQ:
        routep = &((Shale__WatchRequest *)m)->route;
        break;
    case SHALE_MSG_MGET_REQ:
        mg.n_keys = p->n;
        mg.keys = p->arr;
        mg.read = ((Shale__MGetRequest *)m)->read;
        mg.route = &rt;
        m = &mg.base;
        break;
    case SHALE_MSG_MPUT_REQ:
        mp.n_items = p->n;
        mp.items = p->arr;
        mp.session = ((Shale__MPutRequest *)m)->session;
        mp.route = &rt;
        m = &mp.base;
        break;
    default:
        return NULL;
    }
    Shale__Route *saved = NULL;
    if (routep != NULL) {
        saved = *routep; /* the client's own Route (if any) is replaced, then restored */
        *routep = &rt;
    }
    size_t plen = protobuf_c_message_get_packed_size(m);
    uint8_t *f = malloc(FRAME_HEADER_SIZE + plen);
    if (f != NULL) {
        frame_hdr_t h = {.len = (uint32_t)plen, .type = q->type, .id = 0};
        frame_hdr_write(f, &h);
        protobuf_c_message_pack(m, f + FRAME_HEADER_SIZE);
        *flen = FRAME_HEADER_SIZE + plen;
    }
    if (routep != NULL)
        *routep = saved;
    return f;
}

/* The part's per-key arrays for its current idx. */
static int part_build_arr(rt_part_t *p)
{
    rt_req_t *q = p->req;
    free(p->arr);
    p->arr = NULL;
    if (q->type == SHALE_MSG_MGET_REQ) {
        ProtobufCBinaryData *k = malloc(p->n * sizeof(*k));
        if (k == NULL)
            return -1;
        for (size_t j = 0; j < p->n; j++)
            k[j] = q->keys[p->idx[j]];
        p->arr = k;
    } else {
        Shale__MPutRequest *mp = (Shale__MPutRequest *)q->msg;
        Shale__KeyValue **it = malloc(p->n * sizeof(*it));
        if (it == NULL)
            return -1;
        for (size_t j = 0; j < p->n; j++)
            it[j] = mp->items[p->idx[j]];
        p->arr = it;
    }
    p->slot = q->slots[p->idx[0]];
    return 0;
}

static rt_part_t *part_new(rt_req_t *q)
{
    rt_part_t *p;
    if (q->cap == 0) {
        /* The first part: inside the request, no allocation. */
        q->parts = q->parts0;
        q->cap = 1;
        p = &q->part0;
        memset(p, 0, sizeof(*p));
    } else {
        if (q->nparts == q->cap) {
            size_t cap = q->cap * 4;
            rt_part_t **np = malloc(cap * sizeof(*np));
            if (np == NULL)
                return NULL;
            memcpy(np, q->parts, q->nparts * sizeof(*np));
            if (q->parts != q->parts0)
                free(q->parts);
            q->parts = np;
            q->cap = cap;
        }
        p = calloc(1, sizeof(*p));
        if (p == NULL)
            return NULL;
    }
    p->req = q;
    rt_q_init(&p->tlink);
    p->state = P_NEW;
    p->code = SHALE_OK;
    q->parts[q->nparts++] = p;
    q->live++;
    return p;
}

/* A multi part whose keys now belong to several groups keeps the first
 * group's keys and hands the others to new parts (sent this turn). */
static int part_resplit(rt_part_t *p)
{
    rt_req_t *q = p->req;
    rt_router_t *r = q->r;
    uint64_t *gids = malloc(p->n * sizeof(*gids));
    if (gids == NULL)
        return -1;
    for (size_t j = 0; j < p->n; j++)
        gids[j] = rt_route_slot_group(&r->route, q->slots[p->idx[j]]);
    rt_split_t sp;
    int rv = rt_split_by_group(gids, p->n, &sp);
    free(gids);
    if (rv != 0)
        return -1;
    if (sp.nparts <= 1) {
        rt_split_free(&sp);
        return 0;
    }
    size_t *old = p->idx;
    q->hold++;
    for (size_t k = 0; k < sp.nparts && rv == 0; k++) {
        size_t *idx = malloc(sp.parts[k].n * sizeof(*idx));
        rt_part_t *np = k == 0 ? p : (idx != NULL ? part_new(q) : NULL);
        if (idx == NULL || np == NULL) {
            free(idx);
            rv = -1;
            break;
        }
        for (size_t j = 0; j < sp.parts[k].n; j++)
            idx[j] = old[sp.parts[k].idx[j]];
        np->idx = idx;
        np->n = sp.parts[k].n;
        if (part_build_arr(np) != 0) {
            rv = -1;
            break;
        }
        if (k > 0) {
            np->written = p->written;
            np->backoffs = p->backoffs;
            schedule(np, 0);
        }
    }
    free(old);
    rt_split_free(&sp);
    q->hold--;
    return rv;
}

/* ---- Attempts ----------------------------------------------------------------*/

static void on_answer(void *ud, int status, int written, uint16_t type, const uint8_t *payload,
                      size_t len, const char *errmsg);

/* Wait (or not) and try again as d says; the deadline timer ends it. */
static void retry(rt_part_t *p, const rt_retry_t *d, int cause)
{
    rt_req_t *q = p->req;
    rt_router_t *r = q->r;
    r->fwd.retries++;
    rt_obs_retry(r, cause);
    q->retries++;
    q->causes |= 1u << rt_obs_cause(cause);
    p->remap = d->action == RT_REMAP;
    char trace[LOG_TRACE_LEN];
    rt_debug("retrying", " trace=%s cause=%s node=%s group=%llu delay_ms=%u err=\"%s\"",
             log_trace_str(q->trace, trace), rt_obs_cause_name(r, rt_obs_cause(cause)), p->node,
             (unsigned long long)p->group, d->delay_ms, p->msg);
    schedule(p, d->delay_ms);
}

static void part_send(rt_part_t *p)
{
    rt_req_t *q = p->req;
    rt_router_t *r = q->r;
    char msg[240];
    unqueue(p);
    if (q->multi && part_resplit(p) != 0) {
        part_finish(p, SHALE_ENOMEM, "out of memory splitting the request", NULL, 0);
        return;
    }
    uint64_t gid = rt_route_slot_group(&r->route, p->slot);
    rt_group_t *g = gid != 0 ? rt_route_group(&r->route, gid) : NULL;
    if (g == NULL) {
        snprintf(msg, sizeof(msg), "slot %u is not assigned to a shard group (map epoch %llu)",
                 p->slot, (unsigned long long)r->route.epoch);
        part_finish(p, SHALE_EUNAVAILABLE, msg, NULL, 0);
        return;
    }
    charge(p, gid);
    p->last_group = gid;
    if (p->tried_epoch != r->route.epoch) {
        p->tried = 0;
        p->tried_epoch = r->route.epoch;
    }
    const char *addr = rt_group_pick(g, q->stale, &p->tried, now_ms(r));
    if (addr == NULL) {
        /* STALE read: every member refused; the last refusal stands. */
        part_finish(p, SHALE_ESTALE, NULL, NULL, 0);
        return;
    }
    snprintf(p->node, sizeof(p->node), "%s", addr);
    size_t flen = 0;
    uint8_t *f = encode(p, &flen);
    if (f == NULL) {
        part_finish(p, SHALE_ENOMEM, "out of memory encoding the request", NULL, 0);
        return;
    }
    p->attempts++;
    char err[240];
    p->call = rt_up_send(r, addr, f, flen, on_answer, p, err, sizeof(err));
    if (p->call == NULL) {
        /* Not sent: the node is down (or in its reconnect backoff). */
        snprintf(p->msg, sizeof(p->msg), "%s", err);
        rt_group_note_failure(g, addr, now_ms(r));
        rt_retry_t d;
        rt_retry_decide(SHALE_EIO, q->stale, NULL, addr, &p->backoffs, &p->redirects, &d);
        retry(p, &d, SHALE_EIO);
        return;
    }
    p->state = P_FLIGHT;
    p->wake = now_ms(r) + r->fwd.attempt_ms;
    rt_q_push(&r->fwd.attempts, &p->tlink);
    arm(r);
}

/* A TXN with writes and no Session whose attempt may have reached the log:
 * end it with TIMEOUT (outcome unknown) rather than re-send it. */
static void finish_unknown(rt_part_t *p)
{
    char msg[512];
    snprintf(msg, sizeof(msg),
             "transaction with writes and no session was sent to %.127s, which did not confirm it "
             "(%.120s): outcome unknown, not re-sent (send a Session to make retries safe)",
             p->node, p->msg);
    part_finish(p, SHALE_ETIMEOUT, msg, NULL, 0);
}

static int wire_code(const Shale__Error *e)
{
    int code = (int)e->code;
    return code > 0 && code < 100 ? -code : SHALE_EPROTO;
}

static void on_answer(void *ud, int status, int written, uint16_t type, const uint8_t *payload,
                      size_t len, const char *errmsg)
{
    rt_part_t *p = ud;
    rt_req_t *q = p->req;
    rt_router_t *r = q->r;
    p->call = NULL;
    unqueue(p);
    if (written && q->mutation)
        p->written = 1;
    rt_group_t *g = p->group != 0 ? rt_route_group(&r->route, p->group) : NULL;
    size_t flen = 0;
    rt_retry_t d;

    if (status != 0) {
        snprintf(p->msg, sizeof(p->msg), "%s", errmsg != NULL ? errmsg : "connection lost");
        if (g != NULL)
            rt_group_note_failure(g, p->node, now_ms(r));
        if (q->no_resend && p->written) {
            finish_unknown(p);
            return;
        }
        rt_retry_decide(SHALE_EIO, q->stale, NULL, p->node, &p->backoffs, &p->redirects, &d);
        retry(p, &d, SHALE_EIO);
        return;
    }
    if (type == q->resp_type) {
        if (!q->stale && g != NULL)
            rt_group_note_leader(g, p->node); /* only the leader answers these */
        if (!q->multi) {
            uint8_t *f = frame_build(type, q->id, payload, (uint32_t)len);
            flen = FRAME_HEADER_SIZE + len;
            part_finish(p, f != NULL ? SHALE_OK : SHALE_ENOMEM, f != NULL ? NULL : "out of memory",
                        f, flen);
            return;
        }
        ProtobufCMessage *m = wire_unpack(type, payload, len);
        size_t nitems = 0;
        if (m != NULL && type == SHALE_MSG_MGET_RESP) {
            nitems = ((Shale__MGetResponse *)m)->n_items;
        } else if (m != NULL) {
            nitems = ((Shale__MPutResponse *)m)->n_items;
            p->duplicate =
                ((Shale__MPutResponse *)m)->has_duplicate && ((Shale__MPutResponse *)m)->duplicate;
        }
        if (m == NULL || nitems != p->n) {
            char msg[240];
            snprintf(msg, sizeof(msg), "node %s answered %s with %zu items for %zu keys", p->node,
                     frame_type_name(type), nitems, p->n);
            if (m != NULL)
                protobuf_c_message_free_unpacked(m, NULL);
            part_finish(p, SHALE_EPROTO, msg, NULL, 0);
            return;
        }
        p->resp = m;
        part_finish(p, SHALE_OK, NULL, NULL, 0);
        return;
    }
    if (type != SHALE_MSG_ERROR) {
        char msg[240];
        snprintf(msg, sizeof(msg), "node %s answered %s to %s", p->node, frame_type_name(type),
                 frame_type_name(q->type));
        part_finish(p, SHALE_EPROTO, msg, NULL, 0);
        return;
    }
    Shale__Error *e = (Shale__Error *)wire_unpack(SHALE_MSG_ERROR, payload, len);
    if (e == NULL) {
        char msg[240];
        snprintf(msg, sizeof(msg), "malformed ERROR from node %s", p->node);
        part_finish(p, SHALE_EPROTO, msg, NULL, 0);
        return;
    }
    int code = wire_code(e);
    snprintf(p->msg, sizeof(p->msg), "%s", e->message != NULL ? e->message : shale_strerror(code));
    char hint[128] = "";
    if (e->leader_hint != NULL)
        snprintf(hint, sizeof(hint), "%s", e->leader_hint);
    uint64_t epoch = e->has_epoch ? e->epoch : 0;
    protobuf_c_message_free_unpacked(&e->base, NULL);

    rt_retry_decide(code, q->stale, hint, p->node, &p->backoffs, &p->redirects, &d);
    if (d.action != RT_FINAL && q->no_resend && p->written &&
        (code == SHALE_ENOTLEADER || code == SHALE_EUNAVAILABLE || code == SHALE_ETIMEOUT)) {
        /* May have been proposed: without a Session a re-send could apply
         * it twice. The node's answer stands. */
        d.action = RT_FINAL;
    }
    if (code == SHALE_ECOMPACTED && q->type == SHALE_MSG_WATCH_REQ) {
        /* One member's cache (a restarted one's starts empty) may lack
         * what another still has: try the others; the refusal is the
         * answer when every member refused (kept like STALE_TOO_OLD). */
        free(p->frame);
        p->frame = frame_build(SHALE_MSG_ERROR, q->id, payload, (uint32_t)len);
        p->flen = FRAME_HEADER_SIZE + len;
        d.action = RT_NEXT;
        d.delay_ms = 0;
        d.forget_node = 0;
        d.refresh_map = 0;
    }
    if (code == SHALE_EWRONGGROUP && q->pinned) {
        rt_watch_refresh(r, epoch); /* the slot moved: learn where, end the watch */
        d.action = RT_FINAL;
    }
    if (d.action == RT_FINAL) {
        uint8_t *f = frame_build(SHALE_MSG_ERROR, q->id, payload, (uint32_t)len);
        part_finish(p, code, NULL, f, FRAME_HEADER_SIZE + len);
        return;
    }
    if (g != NULL && d.forget_node)
        rt_group_note_failure(g, p->node, now_ms(r));
    if (g != NULL && d.action == RT_REDIRECT) {
        rt_group_note_leader(g, hint);
        r->fwd.redirects++;
    }
    if (d.refresh_map)
        rt_watch_refresh(r, epoch);
    if (code == SHALE_ESTALE) {
        /* Kept: the answer if no other member can serve the read. */
        free(p->frame);
        p->frame = frame_build(SHALE_MSG_ERROR, q->id, payload, (uint32_t)len);
        p->flen = FRAME_HEADER_SIZE + len;
    }
    retry(p, &d, code);
}

/* ---- Deadlines and attempt timeouts -------------------------------------*/

static void expire(rt_req_t *q)
{
    rt_router_t *r = q->r;
    char msg[400];
    q->hold++;
    for (size_t i = 0; i < q->nparts; i++) {
        rt_part_t *p = q->parts[i];
        if (p->state == P_DONE)
            continue;
        if (p->call != NULL && q->mutation && rt_up_written(p->call))
            p->written = 1;
        int code = q->mutation && p->written ? SHALE_ETIMEOUT : SHALE_EUNAVAILABLE;
        if (code == SHALE_ETIMEOUT)
            snprintf(msg, sizeof(msg),
                     "no answer from shard group %llu within %llu ms (outcome unknown: the write "
                     "may have applied; retry with the same session); last error: %s",
                     (unsigned long long)p->group, (unsigned long long)r->cfg.timeout_ms,
                     p->msg[0] ? p->msg : "none");
        else
            snprintf(msg, sizeof(msg),
                     "shard group %llu did not serve the request within %llu ms; last error: %s",
                     (unsigned long long)p->group, (unsigned long long)r->cfg.timeout_ms,
                     p->msg[0] ? p->msg : "none");
        r->fwd.timeouts++;
        part_finish(p, code, msg, NULL, 0);
    }
    q->hold--;
    if (q->live == 0)
        complete(q);
}

static void attempt_timeout(rt_part_t *p)
{
    rt_req_t *q = p->req;
    rt_router_t *r = q->r;
    if (p->call != NULL) {
        if (q->mutation && rt_up_written(p->call))
            p->written = 1;
        rt_up_cancel(p->call);
        p->call = NULL;
    }
    snprintf(p->msg, sizeof(p->msg), "node %s did not answer within %llu ms", p->node,
             (unsigned long long)r->fwd.attempt_ms);
    rt_group_t *g = p->group != 0 ? rt_route_group(&r->route, p->group) : NULL;
    if (g != NULL)
        rt_group_note_failure(g, p->node, now_ms(r));
    if (q->no_resend && p->written) {
        finish_unknown(p);
        return;
    }
    rt_retry_t d;
    rt_retry_decide(SHALE_ETIMEOUT, q->stale, NULL, p->node, &p->backoffs, &p->redirects, &d);
    retry(p, &d, SHALE_ETIMEOUT);
}

static void on_timer(uv_timer_t *t)
{
    rt_router_t *r = t->data;
    rt_forward_t *f = &r->fwd;
    f->timer_at = 0;
    uint64_t now = now_ms(r);
    while (!rt_q_empty(&f->deadlines)) {
        rt_req_t *q = rt_q_data(f->deadlines.next, rt_req_t, dlink);
        if (q->deadline > now)
            break;
        expire(q);
    }
    while (!rt_q_empty(&f->attempts)) {
        rt_part_t *p = rt_q_data(f->attempts.next, rt_part_t, tlink);
        if (p->wake > now)
            break;
        attempt_timeout(p);
    }
    for (int i = 0; i < RT_BACKOFF_LEVELS; i++) {
        while (!rt_q_empty(&f->backoff[i])) {
            rt_part_t *p = rt_q_data(f->backoff[i].next, rt_part_t, tlink);
            if (p->wake > now)
                break;
            part_send(p);
        }
    }
    arm(r);
}

void rt_fwd_turn(rt_router_t *r)
{
    rt_q_t list;
    rt_q_init(&list);
    while (!rt_q_empty(&r->fwd.now)) {
        rt_q_t *n = r->fwd.now.next;
        rt_q_remove(n);
        rt_q_push(&list, n);
    }
    while (!rt_q_empty(&list))
        part_send(rt_q_data(list.next, rt_part_t, tlink));
}

void rt_fwd_map_changed(rt_router_t *r)
{
    for (int i = 0; i < RT_BACKOFF_LEVELS; i++) {
        rt_q_t *n = r->fwd.backoff[i].next;
        while (n != &r->fwd.backoff[i]) {
            rt_part_t *p = rt_q_data(n, rt_part_t, tlink);
            n = n->next;
            if (p->remap)
                schedule(p, 0);
        }
    }
}

/* ---- Accepting a request ---------------------------------------------------*/

static int is_data(uint16_t t)
{
    return t == SHALE_MSG_GET_REQ || t == SHALE_MSG_PUT_REQ || t == SHALE_MSG_DEL_REQ ||
           t == SHALE_MSG_CAS_REQ || t == SHALE_MSG_MGET_REQ || t == SHALE_MSG_MPUT_REQ ||
           t == SHALE_MSG_TXN_REQ || t == SHALE_MSG_SCAN_REQ || t == SHALE_MSG_WATCH_REQ;
}

/* The debug line of a request answered at once, never forwarded (no trace
 * id): STATUS, and requests refused before routing. */
static void log_immediate(rt_router_t *r, rt_cconn_t *c, uint16_t type, int code, uint64_t t0)
{
    if (rt_log_get_level() > RT_LOG_DEBUG)
        return;
    uint64_t now = uv_hrtime();
    rt_debug("request", " trace=- op=%s outcome=%s ms=%.3f peer=%s", rt_obs_op_name(r, type),
             rt_obs_outcome_name(r, code), now > t0 ? (double)(now - t0) / 1e6 : 0.0,
             rt_cconn_peer(c));
}

static void answer_now(rt_router_t *r, uint16_t type, uint64_t t0, rt_cconn_t *c, uint64_t id,
                       int code, const char *msg)
{
    rt_obs_request(r, type, code, t0);
    log_immediate(r, c, type, code, t0);
    rt_cconn_send_error(c, id, code, msg);
    rt_cconn_request_done(c);
}

static void reply_status(rt_router_t *r, rt_cconn_t *c, uint64_t id)
{
    Shale__StatusResponse st = SHALE__STATUS_RESPONSE__INIT;
    st.node_id = 0;
    st.address = r->cfg.listen;
    st.role = (char *)"router";
    st.mode = (char *)"router";
    st.cluster_id = r->cfg.cluster_id;
    st.http_addr = (char *)rt_obs_http_addr(r);
    st.has_map_epoch = 1;
    st.map_epoch = r->route.epoch;
    size_t len;
    uint8_t *f = wire_pack(SHALE_MSG_STATUS_RESP, id, &st.base, UINT32_MAX, &len);
    rt_cconn_send(c, f, len);
    rt_cconn_request_done(c);
}

static int check_key(const rt_config_t *cfg, const ProtobufCBinaryData *k, char *msg, size_t n)
{
    if (k->len == 0) {
        snprintf(msg, n, "empty key");
        return SHALE_EINVAL;
    }
    if (k->len > cfg->max_key) {
        snprintf(msg, n, "key of %zu bytes exceeds the limit of %llu", k->len,
                 (unsigned long long)cfg->max_key);
        return SHALE_ETOOLARGE;
    }
    return 0;
}

static int check_value(const rt_config_t *cfg, const ProtobufCBinaryData *v, char *msg, size_t n)
{
    if (v->len > cfg->max_value) {
        snprintf(msg, n, "value of %zu bytes exceeds the limit of %llu", v->len,
                 (unsigned long long)cfg->max_value);
        return SHALE_ETOOLARGE;
    }
    return 0;
}

/* The checks a node makes on the whole request, made before splitting so a
 * bad multi-key request fails as a whole, as it would on a node. Request
 * shape (CAS expectations, ...) is left to the node. */
static int validate(const rt_config_t *cfg, uint16_t type, ProtobufCMessage *m, char *msg, size_t n)
{
    int rv = 0;
    switch (type) {
    case SHALE_MSG_GET_REQ:
        return check_key(cfg, &((Shale__GetRequest *)m)->key, msg, n);
    case SHALE_MSG_DEL_REQ:
        return check_key(cfg, &((Shale__DeleteRequest *)m)->key, msg, n);
    case SHALE_MSG_WATCH_REQ:
        return check_key(cfg, &((Shale__WatchRequest *)m)->key, msg, n);
    case SHALE_MSG_PUT_REQ: {
        Shale__PutRequest *p = (Shale__PutRequest *)m;
        if ((rv = check_key(cfg, &p->key, msg, n)) == 0)
            rv = check_value(cfg, &p->value, msg, n);
        /* ttl_ms is forwarded as is (encode() re-packs the whole request). */
        if (rv == 0 && p->has_ttl_ms && (p->ttl_ms == 0 || p->ttl_ms > SHALE_TTL_MAX_MS)) {
            snprintf(msg, n, "ttl_ms must be 1..%llu (absent: no TTL)",
                     (unsigned long long)SHALE_TTL_MAX_MS);
            return SHALE_EINVAL;
        }
        return rv;
    }
    case SHALE_MSG_CAS_REQ: {
        Shale__CasRequest *c = (Shale__CasRequest *)m;
        if ((rv = check_key(cfg, &c->key, msg, n)) == 0 && c->has_new_value)
            rv = check_value(cfg, &c->new_value, msg, n);
        if (rv == 0 && c->has_expect_value)
            rv = check_value(cfg, &c->expect_value, msg, n);
        return rv;
    }
    case SHALE_MSG_MGET_REQ: {
        Shale__MGetRequest *g = (Shale__MGetRequest *)m;
        if (g->n_keys == 0) {
            snprintf(msg, n, "MGET with no keys");
            return SHALE_EINVAL;
        }
        if (g->n_keys > SHALE_MAX_BATCH_KEYS) {
            snprintf(msg, n, "MGET of %zu keys (at most %d per request)", g->n_keys,
                     SHALE_MAX_BATCH_KEYS);
            return SHALE_ETOOLARGE;
        }
        for (size_t i = 0; i < g->n_keys && rv == 0; i++)
            rv = check_key(cfg, &g->keys[i], msg, n);
        return rv;
    }
    case SHALE_MSG_MPUT_REQ: {
        Shale__MPutRequest *p = (Shale__MPutRequest *)m;
        if (p->n_items == 0) {
            snprintf(msg, n, "MPUT with no items");
            return SHALE_EINVAL;
        }
        if (p->n_items > SHALE_MAX_BATCH_KEYS) {
            snprintf(msg, n, "MPUT of %zu items (at most %d per request)", p->n_items,
                     SHALE_MAX_BATCH_KEYS);
            return SHALE_ETOOLARGE;
        }
        for (size_t i = 0; i < p->n_items && rv == 0; i++) {
            if (!p->items[i]->has_value) {
                snprintf(msg, n, "MPUT item %zu has no value", i);
                return SHALE_EINVAL;
            }
            if ((rv = check_key(cfg, &p->items[i]->key, msg, n)) == 0)
                rv = check_value(cfg, &p->items[i]->value, msg, n);
        }
        return rv;
    }
    default:
        return 0;
    }
}

static const ProtobufCBinaryData *single_key(uint16_t type, ProtobufCMessage *m)
{
    switch (type) {
    case SHALE_MSG_GET_REQ:
        return &((Shale__GetRequest *)m)->key;
    case SHALE_MSG_PUT_REQ:
        return &((Shale__PutRequest *)m)->key;
    case SHALE_MSG_DEL_REQ:
        return &((Shale__DeleteRequest *)m)->key;
    case SHALE_MSG_CAS_REQ:
        return &((Shale__CasRequest *)m)->key;
    default:
        return NULL;
    }
}

static int is_stale(uint16_t type, ProtobufCMessage *m)
{
    const Shale__ReadOptions *ro = NULL;
    if (type == SHALE_MSG_GET_REQ)
        ro = ((Shale__GetRequest *)m)->read;
    else if (type == SHALE_MSG_MGET_REQ)
        ro = ((Shale__MGetRequest *)m)->read;
    else if (type == SHALE_MSG_SCAN_REQ)
        ro = ((Shale__ScanRequest *)m)->read;
    return ro != NULL && ro->has_consistency && ro->consistency == SHALE__CONSISTENCY__STALE;
}

/* The trace id the client stamped in its own Route (0: none). */
static uint64_t client_trace(uint16_t type, ProtobufCMessage *m)
{
    const Shale__Route *rt = NULL;
    switch (type) {
    case SHALE_MSG_GET_REQ:
        rt = ((Shale__GetRequest *)m)->route;
        break;
    case SHALE_MSG_PUT_REQ:
        rt = ((Shale__PutRequest *)m)->route;
        break;
    case SHALE_MSG_DEL_REQ:
        rt = ((Shale__DeleteRequest *)m)->route;
        break;
    case SHALE_MSG_CAS_REQ:
        rt = ((Shale__CasRequest *)m)->route;
        break;
    case SHALE_MSG_MGET_REQ:
        rt = ((Shale__MGetRequest *)m)->route;
        break;
    case SHALE_MSG_MPUT_REQ:
        rt = ((Shale__MPutRequest *)m)->route;
        break;
    case SHALE_MSG_TXN_REQ:
        rt = ((Shale__TxnRequest *)m)->route;
        break;
    case SHALE_MSG_SCAN_REQ:
        rt = ((Shale__ScanRequest *)m)->route;
        break;
    case SHALE_MSG_WATCH_REQ:
        rt = ((Shale__WatchRequest *)m)->route;
        break;
    default:
        break;
    }
    return rt != NULL && rt->has_trace_id ? rt->trace_id : 0;
}

/* A new trace id: the random base plus a counter, never 0. */
static uint64_t new_trace(rt_forward_t *f)
{
    uint64_t t = f->trace_base + ++f->trace_seq;
    return t != 0 ? t : f->trace_base + ++f->trace_seq;
}

/* Admit a new part to its group (OVERLOADED when the group is full) and
 * send it. */
static void part_start(rt_part_t *p, uint64_t gid)
{
    rt_router_t *r = p->req->r;
    rt_group_t *g = gid != 0 ? rt_route_group(&r->route, gid) : NULL;
    if (g != NULL && g->pending >= r->cfg.max_pending) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "shard group %llu has %llu requests queued at this router; back off and retry",
                 (unsigned long long)gid, (unsigned long long)g->pending);
        r->fwd.overloaded++;
        part_finish(p, SHALE_EOVERLOAD, msg, NULL, 0);
        return;
    }
    part_send(p);
}

static int setup_multi(rt_req_t *q)
{
    rt_router_t *r = q->r;
    if (q->type == SHALE_MSG_MGET_REQ)
        q->nkeys = ((Shale__MGetRequest *)q->msg)->n_keys;
    else
        q->nkeys = ((Shale__MPutRequest *)q->msg)->n_items;
    q->keys = malloc(q->nkeys * sizeof(*q->keys));
    q->slots = malloc(q->nkeys * sizeof(*q->slots));
    uint64_t *gids = malloc(q->nkeys * sizeof(*gids));
    if (q->keys == NULL || q->slots == NULL || gids == NULL) {
        free(gids);
        return -1;
    }
    for (size_t i = 0; i < q->nkeys; i++) {
        q->keys[i] = q->type == SHALE_MSG_MGET_REQ ? ((Shale__MGetRequest *)q->msg)->keys[i]
                                                   : ((Shale__MPutRequest *)q->msg)->items[i]->key;
        q->slots[i] = shale_key_slot(q->keys[i].data, q->keys[i].len, r->route.slots);
        gids[i] = rt_route_slot_group(&r->route, q->slots[i]);
    }
    rt_split_t sp;
    int rv = rt_split_by_group(gids, q->nkeys, &sp);
    free(gids);
    if (rv != 0)
        return -1;
    for (size_t k = 0; k < sp.nparts && rv == 0; k++) {
        rt_part_t *p = part_new(q);
        if (p == NULL) {
            rv = -1;
            break;
        }
        p->n = sp.parts[k].n;
        p->idx = malloc(p->n * sizeof(*p->idx));
        if (p->idx == NULL) {
            rv = -1;
            break;
        }
        memcpy(p->idx, sp.parts[k].idx, p->n * sizeof(*p->idx));
        if (part_build_arr(p) != 0)
            rv = -1;
    }
    rt_split_free(&sp);
    return rv;
}

void rt_fwd_accept(rt_router_t *r, rt_cconn_t *c, uint16_t type, uint64_t id,
                   const uint8_t *payload, size_t len)
{
    char msg[240];
    uint64_t t0 = uv_hrtime();
    int arv;
    if (type == SHALE_MSG_STATUS_REQ &&
        (arv = rt_authn_check(r, rt_cconn_authn(c), type, NULL, msg, sizeof(msg))) != 0) {
        answer_now(r, type, t0, c, id, arv, msg);
        return;
    }
    if (type == SHALE_MSG_STATUS_REQ) {
        log_immediate(r, c, type, SHALE_OK, t0);
        reply_status(r, c, id);
        rt_obs_request(r, type, SHALE_OK, t0);
        return;
    }
    if (!is_data(type)) {
        /* An admin call sent here by mistake gets told where it goes. */
        const char *to = !frame_type_known(type)   ? NULL
                         : type >= 60 && type < 70 ? "the group's members (shalectl --addr GROUP_ADDRS)"
                         : type >= 70 && type < 80 ? "the meta group (shalectl --meta META_ADDRS)"
                         : type >= 80 && type < 100 ? "a shard group member (node to node)"
                                                    : NULL;
        if (to != NULL)
            snprintf(msg, sizeof(msg),
                     "a router serves data requests only: %s goes to %s, not to a router",
                     frame_type_name(type), to);
        else
            snprintf(msg, sizeof(msg), "unexpected message type %u (%s) for a router", type,
                     frame_type_name(type));
        answer_now(r, type, t0, c, id, to != NULL ? SHALE_EINVAL : SHALE_EPROTO, msg);
        return;
    }
    ProtobufCMessage *m = wire_unpack(type, payload, len);
    if (m == NULL) {
        snprintf(msg, sizeof(msg), "malformed %s message", frame_type_name(type));
        answer_now(r, type, t0, c, id, SHALE_EINVAL, msg);
        return;
    }
    /* --auth: the client's user, checked here before anything is sent. */
    if ((arv = rt_authn_check(r, rt_cconn_authn(c), type, m, msg, sizeof(msg))) != 0) {
        protobuf_c_message_free_unpacked(m, NULL);
        answer_now(r, type, t0, c, id, arv, msg);
        return;
    }
    int rv = r->stopping ? SHALE_EUNAVAILABLE : validate(&r->cfg, type, m, msg, sizeof(msg));
    if (rv == SHALE_EUNAVAILABLE)
        snprintf(msg, sizeof(msg), "router is shutting down");
    if (rv == 0 && r->route.map == NULL) {
        rv = SHALE_EUNAVAILABLE;
        snprintf(msg, sizeof(msg), "no cluster map yet (meta group %.180s)", r->cfg.meta);
    }
    uint32_t txn_slot = 0;
    int txn_writes = 0;
    if (rv == 0 && type == SHALE_MSG_TXN_REQ)
        rv = wire_txn_check((Shale__TxnRequest *)m, (uint32_t)r->cfg.max_key,
                            (uint32_t)r->cfg.max_value, r->route.slots, &txn_slot, &txn_writes,
                            msg, sizeof(msg));
    if (rv == 0 && type == SHALE_MSG_SCAN_REQ) {
        /* A SCAN names its slot: it goes to the slot's owner, like a GET of
         * a key of that slot (the node checks the rest). */
        const Shale__ScanRequest *sc = (Shale__ScanRequest *)m;
        if (sc->slot >= r->route.slots) {
            rv = SHALE_EINVAL;
            snprintf(msg, sizeof(msg), "SCAN of slot %u (this cluster has %u slots)", sc->slot,
                     r->route.slots);
        }
    }
    uint32_t watch_slot = 0;
    if (rv == 0 && type == SHALE_MSG_WATCH_REQ) {
        /* A WATCH goes to a member of the slot's group, like a STALE read:
         * any member serves it (docs/router.md, "Watch"). Its long-poll wait
         * is cut to half an attempt so a waiting watch is never taken for a
         * stuck node. */
        Shale__WatchRequest *w = (Shale__WatchRequest *)m;
        if (w->has_prefix && w->prefix) {
            if (!wire_prefix_slot(w->key.data, w->key.len, r->route.slots, &watch_slot)) {
                rv = SHALE_EINVAL;
                snprintf(msg, sizeof(msg), "a WATCH prefix must name a hash tag ({tag}...) so "
                         "that every key under it is in one slot");
            }
        } else {
            watch_slot = shale_key_slot(w->key.data, w->key.len, r->route.slots);
        }
        if (w->has_wait_ms && w->wait_ms > r->fwd.attempt_ms / 2)
            w->wait_ms = (uint32_t)(r->fwd.attempt_ms / 2);
    }
    rt_req_t *q = rv == 0 ? calloc(1, sizeof(*q)) : NULL;
    if (rv == 0 && q == NULL) {
        rv = SHALE_ENOMEM;
        snprintf(msg, sizeof(msg), "out of memory");
    }
    if (rv != 0) {
        protobuf_c_message_free_unpacked(m, NULL);
        answer_now(r, type, t0, c, id, rv, msg);
        return;
    }
    q->r = r;
    q->conn = c;
    q->id = id;
    q->trace = client_trace(type, m);
    if (q->trace == 0)
        q->trace = new_trace(&r->fwd);
    q->type = type;
    q->resp_type = (uint16_t)(type + 1); /* every *_REQ's answer is the next type */
    q->msg = m;
    q->mutation = type == SHALE_MSG_PUT_REQ || type == SHALE_MSG_DEL_REQ ||
                  type == SHALE_MSG_CAS_REQ || type == SHALE_MSG_MPUT_REQ || txn_writes;
    q->no_resend = txn_writes && ((Shale__TxnRequest *)m)->session == NULL;
    q->stale = is_stale(type, m) || type == SHALE_MSG_WATCH_REQ;
    /* A watch that follows one group's revisions ends when the slot leaves
     * that group: WRONG_GROUP is its answer, not a reason to re-route. */
    q->pinned = type == SHALE_MSG_WATCH_REQ && ((Shale__WatchRequest *)m)->has_group &&
                ((Shale__WatchRequest *)m)->group != 0;
    q->multi = type == SHALE_MSG_MGET_REQ || type == SHALE_MSG_MPUT_REQ;
    q->start = now_ms(r);
    q->start_ns = t0;
    q->deadline = q->start + r->cfg.timeout_ms;
    rt_q_push(&r->fwd.deadlines, &q->dlink);
    r->fwd.live++;
    r->fwd.requests++;
    q->hold = 1;
    int bad = 0;
    if (q->multi) {
        bad = setup_multi(q) != 0;
    } else {
        rt_part_t *p = part_new(q);
        const ProtobufCBinaryData *k = single_key(type, m);
        q->nkeys = 1;
        if (p == NULL)
            bad = 1;
        else if (type == SHALE_MSG_TXN_REQ)
            p->slot = txn_slot; /* every key's (wire_txn_check) */
        else if (type == SHALE_MSG_SCAN_REQ)
            p->slot = ((Shale__ScanRequest *)m)->slot;
        else if (type == SHALE_MSG_WATCH_REQ)
            p->slot = watch_slot;
        else
            p->slot = shale_key_slot(k->data, k->len, r->route.slots);
    }
    if (bad) {
        /* Nothing was sent: fail every part that exists, or the request. */
        for (size_t i = 0; i < q->nparts; i++)
            if (q->parts[i]->state != P_DONE)
                part_finish(q->parts[i], SHALE_ENOMEM, "out of memory", NULL, 0);
        if (q->nparts == 0) {
            rt_q_remove(&q->dlink);
            r->fwd.live--;
            rt_obs_request(r, type, SHALE_ENOMEM, t0);
            rt_cconn_send_error(c, id, SHALE_ENOMEM, "out of memory");
            req_free(q); /* releases c's request slot */
            return;
        }
    } else {
        for (size_t i = 0; i < q->nparts; i++) {
            rt_part_t *p = q->parts[i];
            if (p->state != P_NEW)
                continue;
            part_start(p, rt_route_slot_group(&r->route, p->slot));
        }
    }
    q->hold = 0;
    if (q->live == 0)
        complete(q);
    else
        arm(r);
}

/* ---- Setup and shutdown --------------------------------------------------*/

void rt_fwd_init(rt_router_t *r)
{
    rt_forward_t *f = &r->fwd;
    memset(f, 0, sizeof(*f));
    rt_q_init(&f->deadlines);
    rt_q_init(&f->attempts);
    rt_q_init(&f->now);
    for (int i = 0; i < RT_BACKOFF_LEVELS; i++)
        rt_q_init(&f->backoff[i]);
    uv_timer_init(r->loop, &f->timer);
    f->timer.data = r;
    /* Random so two routers (or one restarted) do not hand out the same
     * ids: a trace id names one request across every process's logs. */
    if (uv_random(NULL, NULL, &f->trace_base, sizeof(f->trace_base), 0, NULL) != 0)
        f->trace_base = uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32);
    f->attempt_ms = r->cfg.timeout_ms / 4;
    if (f->attempt_ms < 100)
        f->attempt_ms = r->cfg.timeout_ms;
}

void rt_fwd_fail_all(rt_router_t *r, int code, const char *msg)
{
    while (!rt_q_empty(&r->fwd.deadlines)) {
        rt_req_t *q = rt_q_data(r->fwd.deadlines.next, rt_req_t, dlink);
        q->hold++;
        for (size_t i = 0; i < q->nparts; i++)
            if (q->parts[i]->state != P_DONE)
                part_finish(q->parts[i], code, msg, NULL, 0);
        q->hold--;
        complete(q);
    }
}

void rt_fwd_close(rt_router_t *r)
{
    rt_forward_t *f = &r->fwd;
    rt_info("forwarding summary",
            " requests=%llu retries=%llu redirects=%llu deadline_errors=%llu overloaded=%llu",
            (unsigned long long)f->requests, (unsigned long long)f->retries,
            (unsigned long long)f->redirects, (unsigned long long)f->timeouts,
            (unsigned long long)f->overloaded);
    uv_timer_stop(&f->timer);
    if (!uv_is_closing((uv_handle_t *)&f->timer))
        uv_close((uv_handle_t *)&f->timer, NULL);
}
