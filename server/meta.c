/* Meta group (shaled --mode meta): the cluster map as a replicated state
 * machine (DESIGN §5).
 *
 * What this file owns:
 *  - s->map, the applied ClusterMap (NULL before `shalectl init`), stored in
 *    RocksDB metadata "clustermap" atomically with the applied index;
 *  - MAP_GET: any member answers from its applied map; a request that knows
 *    the current epoch waits (long-poll) until a newer one is applied or its
 *    wait_ms passes, then gets the map as it is;
 *  - MAP_CAS: the leader proposes the change as one Raft entry; the FSM
 *    decides it (compare-and-set on the epoch, cmap_validate, exactly-once
 *    by the change's Session) identically on every member, and the proposer
 *    answers from the apply;
 *  - the meta group's lifecycle: load, start, end-of-turn flush, fail,
 *    stop and free also run the user table's (users.c).
 *
 * Rules: the epoch only grows, by exactly one per applied change; a change
 * whose outcome is unknown to the client (leader lost) is retried with the
 * same Session and answered with its first result. Never talks to shard
 * groups; never calls into Raft from a Raft callback (proposals leave from
 * meta_flush, in the end-of-turn check). */
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "log.h"
#include "server.h"
#include "wire.h"

#define META_MAP "clustermap"
#define MAP_WAIT_MAX_MS 60000
#define MAP_WATCHERS_MAX 10000
#define MAP_SWEEP_MS 50

static void cas_unanswered(shaled_t *s, sreq_t *r, int status);

static uint64_t map_epoch(const shaled_t *s)
{
    return s->map != NULL ? s->map->epoch : 0;
}

/* An empty map (epoch 0) for answers before init. */
static void reply_map(shaled_t *s, sreq_t *r)
{
    Shale__MapResponse resp = SHALE__MAP_RESPONSE__INIT;
    Shale__ClusterMap empty = SHALE__CLUSTER_MAP__INIT;
    empty.cluster_id = s->cfg.cluster_id;
    resp.map = s->map != NULL ? s->map : &empty;
    sreq_reply(r, SHALE_MSG_MAP_RESP, &resp.base);
}

static uint64_t watch_deadline_us(const sreq_t *r)
{
    const Shale__MapGetRequest *g = (const Shale__MapGetRequest *)r->msg;
    uint64_t w = g->has_wait_ms ? g->wait_ms : 0;
    if (w > MAP_WAIT_MAX_MS)
        w = MAP_WAIT_MAX_MS;
    return r->received_us + w * 1000;
}

/* Answer the watchers that now have news (or whose wait is over). */
static void wake_watchers(shaled_t *s, int all)
{
    uint64_t now = shaled_now_us();
    qnode_t *n = s->map_watchers.next;
    while (n != &s->map_watchers) {
        sreq_t *r = q_data(n, sreq_t, link);
        n = n->next;
        const Shale__MapGetRequest *g = (const Shale__MapGetRequest *)r->msg;
        uint64_t known = g->has_known_epoch ? g->known_epoch : 0;
        if (all || map_epoch(s) > known || now >= watch_deadline_us(r)) {
            q_remove(&r->link);
            s->nmap_watchers--;
            reply_map(s, r);
        }
    }
}

static void on_sweep(uv_timer_t *t)
{
    wake_watchers(t->data, 0);
}

int meta_load(shaled_t *s, char *err)
{
    if (strcmp(s->cfg.mode, "meta") != 0)
        return 0;
    int rv = users_load(s, err);
    if (rv != 0)
        return rv;
    uint8_t *buf = NULL;
    size_t len = 0;
    rv = store_get_meta(s->store, META_MAP, &buf, &len, err);
    if (rv == SHALE_ENOTFOUND) {
        cmap_free(s->map);
        s->map = NULL;
        return 0;
    }
    if (rv != 0)
        return rv;
    Shale__ClusterMap *m = cmap_unpack(buf, len);
    free(buf);
    if (m == NULL) {
        snprintf(err, STORE_ERRLEN, "stored cluster map is malformed");
        return SHALE_ECORRUPT;
    }
    cmap_free(s->map);
    s->map = m;
    return 0;
}

void meta_start(shaled_t *s)
{
    q_init(&s->map_watchers);
    q_init(&s->map_cas_pending);
    rp_init(&s->map_props, s, cas_unanswered);
    uv_timer_init(s->loop, &s->map_sweep);
    s->map_sweep.data = s;
    if (strcmp(s->cfg.mode, "meta") == 0)
        uv_timer_start(&s->map_sweep, on_sweep, MAP_SWEEP_MS, MAP_SWEEP_MS);
    users_start(s);
}

void meta_get(shaled_t *s, sreq_t *r)
{
    const Shale__MapGetRequest *g = (const Shale__MapGetRequest *)r->msg;
    uint64_t known = g->has_known_epoch ? g->known_epoch : 0;
    if (map_epoch(s) > known || !g->has_wait_ms || g->wait_ms == 0 ||
        known > map_epoch(s)) {
        /* known > ours: this member lags; answer now so the caller can try
         * another member instead of waiting here. */
        reply_map(s, r);
        return;
    }
    if (s->nmap_watchers >= MAP_WATCHERS_MAX) {
        sreq_fail(r, SHALE_EOVERLOAD, "too many map watchers on this meta node");
        return;
    }
    q_push(&s->map_watchers, &r->link);
    s->nmap_watchers++;
}

void meta_cas(shaled_t *s, sreq_t *r)
{
    const Shale__MapCasRequest *c = (const Shale__MapCasRequest *)r->msg;
    if (c->map == NULL) {
        sreq_fail(r, SHALE_EINVAL, "MAP_CAS without a map");
        return;
    }
    q_push(&s->map_cas_pending, &r->link);
}

/* A MAP_CAS whose entry completed without its apply answering it. */
static void cas_unanswered(shaled_t *s, sreq_t *r, int status)
{
    if (status != 0)
        sreq_fail(r, SHALE_ENOTLEADER,
                  "leadership lost before the map change was confirmed; outcome "
                  "unknown, retry with the same session");
    else
        reply_map(s, r); /* applied as a replay: the map as it is */
}

void meta_flush(shaled_t *s)
{
    while (!q_empty(&s->map_cas_pending)) {
        sreq_t *r = q_data(s->map_cas_pending.next, sreq_t, link);
        q_remove(&r->link);
        if (s->stopping || !raft_node_is_leader(s)) {
            sreq_fail(r, s->stopping ? SHALE_EUNAVAILABLE : SHALE_ENOTLEADER,
                      s->stopping ? "node is shutting down" : "map changes go to the leader");
            continue;
        }
        Shale__Command cmd = SHALE__COMMAND__INIT;
        cmd.map_cas = (Shale__MapCasRequest *)r->msg;
        rp_submit(&s->map_props, r, &cmd);
    }
    users_flush(s);
}

static int same_session(const Shale__Session *a, const Shale__Session *b)
{
    return a != NULL && b != NULL && a->client_id == b->client_id && a->seq == b->seq;
}

int meta_apply(shaled_t *s, uint64_t index, const Shale__Command *cmd, char *err)
{
    const Shale__MapCasRequest *c = cmd->map_cas;
    if (index <= store_applied_index(s->store))
        return 0; /* replay: the stored map already includes it */
    sreq_t *r = rp_take(&s->map_props, cmd);
    if (strcmp(s->cfg.mode, "meta") != 0) {
        if (r != NULL)
            sreq_fail(r, SHALE_EINVAL, "not a meta node");
        return store_apply_noop(s->store, index, err);
    }
    uint64_t cur = map_epoch(s);
    char msg[300];
    if (s->map != NULL && same_session(s->map->last_change, c->session)) {
        if (r != NULL)
            reply_map(s, r); /* a retry of the change that made this epoch */
        return store_apply_noop(s->store, index, err);
    }
    if (c->expect_epoch != cur) {
        if (r != NULL) {
            snprintf(msg, sizeof(msg), "the cluster map changed: epoch is %llu, not %llu",
                     (unsigned long long)cur, (unsigned long long)c->expect_epoch);
            sreq_fail_epoch(r, SHALE_ECASFAILED, msg, cur);
        }
        return store_apply_noop(s->store, index, err);
    }
    int bad = cmap_validate_change(s->map, c->map, c->has_force && c->force, msg,
                                   sizeof(msg)) != 0;
    if (!bad && c->map->cluster_id != NULL && c->map->cluster_id[0] != '\0' &&
        strcmp(c->map->cluster_id, s->cfg.cluster_id) != 0) {
        snprintf(msg, sizeof(msg), "map names cluster '%s'; this is '%s'", c->map->cluster_id,
                 s->cfg.cluster_id);
        bad = 1;
    }
    if (bad) {
        if (r != NULL)
            sreq_fail_epoch(r, SHALE_EINVAL, msg, cur);
        return store_apply_noop(s->store, index, err);
    }
    Shale__ClusterMap next = *c->map; /* shallow: only packed below */
    next.epoch = cur + 1;
    next.cluster_id = s->cfg.cluster_id;
    next.last_change = c->session;
    next.last_change_note = c->note;
    size_t len = shale__cluster_map__get_packed_size(&next);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        snprintf(err, STORE_ERRLEN, "out of memory storing the cluster map");
        if (r != NULL)
            sreq_fail(r, SHALE_ENOMEM, err);
        return SHALE_ENOMEM;
    }
    shale__cluster_map__pack(&next, buf);
    int rv = store_apply_meta(s->store, index, META_MAP, buf, len, err);
    Shale__ClusterMap *m = rv == 0 ? cmap_unpack(buf, len) : NULL;
    free(buf);
    if (rv != 0 || m == NULL) {
        if (rv == 0) {
            snprintf(err, STORE_ERRLEN, "cluster map does not decode after packing");
            rv = SHALE_ECORRUPT;
        }
        if (r != NULL)
            sreq_fail(r, SHALE_ESTORAGE, err);
        return rv;
    }
    cmap_free(s->map);
    s->map = m;
    log_info("cluster map changed", " epoch=%llu groups=%zu slots=%u note=\"%s\"",
             (unsigned long long)m->epoch, m->n_groups, m->slots,
             c->note != NULL ? c->note : "");
    if (c->has_force && c->force)
        log_warn("cluster map changed with force: slots may have changed owner without their "
                 "data (the former owner deletes its copy)",
                 " epoch=%llu note=\"%s\"", (unsigned long long)m->epoch,
                 c->note != NULL ? c->note : "");
    if (r != NULL)
        reply_map(s, r);
    wake_watchers(s, 0);
    return 0;
}

void meta_fail_all(shaled_t *s, int code, const char *msg)
{
    (void)code;
    (void)msg;
    /* Watchers get the map as it is (a valid long-poll answer). */
    wake_watchers(s, 1);
    while (!q_empty(&s->map_cas_pending)) {
        sreq_t *r = q_data(s->map_cas_pending.next, sreq_t, link);
        q_remove(&r->link);
        sreq_fail(r, code, msg);
    }
    users_fail_all(s, code, msg);
}

void meta_stop(shaled_t *s)
{
    if (s->map_sweep.loop != NULL && !uv_is_closing((uv_handle_t *)&s->map_sweep))
        uv_close((uv_handle_t *)&s->map_sweep, NULL);
    users_stop(s);
}

void meta_free(shaled_t *s)
{
    cmap_free(s->map);
    s->map = NULL;
    users_free(s);
}
