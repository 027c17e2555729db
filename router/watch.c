/* Watching the cluster map: the router's link to the meta group.
 *
 * What this file owns: two libshale clients on the router's loop, both
 * given the --meta address list (libshale follows NOT_LEADER hints, rotates
 * addresses on failures and reconnects):
 *  - the watch: always one MAP_GET {known_epoch: current, wait_ms: 5000}
 *    long-poll outstanding; the meta node answers at once when it knows a
 *    newer epoch, else after the wait with the map as it is;
 *  - the refresher: MAP_GET {known_epoch: current, wait_ms: 0} when a node
 *    answered WRONG_GROUP (forward.c), at most one in flight and at most one
 *    every REFRESH_MIN_MS, with one more queued if asked again meanwhile;
 *    and every NOMAP_RETRY_MS while the router has no map at all (so a
 *    first meta member that accepts connections but never answers delays
 *    the first map by one retry, not by a whole long-poll deadline).
 * Each answer goes to rt_route_install; the newest epoch wins, so the two
 * never conflict. The two clients start at different members of the list,
 * so one stuck member cannot blind both. A client whose request timed out or lost its connection
 * is reopened with the address list rotated by one, so a stuck meta member
 * (accepting connections, answering nothing) is left behind.
 *
 * Never routes requests; never changes the map. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale_internal.h"
#include "cmap.h"
#include "router.h"

#define POLL_RETRY_FIRST_MS 100
#define POLL_RETRY_CAP_MS 2000
#define POLL_MIN_INTERVAL_MS 50 /* a long-poll answered at once twice in a row */
#define REFRESH_MIN_MS 20
#define NOMAP_RETRY_MS 1000

static void poll_issue(rt_router_t *r);
static void ref_issue(rt_router_t *r);

/* The --meta list rotated left by rot entries. */
static void rotated(const char *list, unsigned rot, char *out, size_t len)
{
    const char *addrs[16];
    size_t lens[16];
    unsigned n = 0;
    const char *p = list;
    while (n < 16) {
        const char *end = strchr(p, ',');
        addrs[n] = p;
        lens[n] = end ? (size_t)(end - p) : strlen(p);
        n++;
        if (end == NULL)
            break;
        p = end + 1;
    }
    size_t at = 0;
    out[0] = '\0';
    for (unsigned k = 0; k < n; k++) {
        unsigned i = (rot + k) % n;
        at += (size_t)snprintf(out + at, len - at, "%s%.*s", k ? "," : "", (int)lens[i], addrs[i]);
        if (at >= len)
            break;
    }
}

static shale_client_t *open_client(rt_router_t *r, uint32_t timeout_ms, unsigned rot)
{
    shale_options_t o;
    shale_options_init(&o);
    o.cluster_id = r->cfg.cluster_id;
    rt_authn_client_options(r, &o);
    o.timeout_ms = timeout_ms;
    if (r->tls_client != NULL) { /* the meta group's client port speaks TLS too */
        o.tls_ca = r->cfg.tls_ca;
        o.tls_cert = r->cfg.tls_cert;
        o.tls_key = r->cfg.tls_key;
    }
    o.connect_timeout_ms = 1000;
    /* A long-poll is silent by design: only a member silent past the wait
     * (plus a margin) is stalled. The refresher (wait 0) keeps the default. */
    if (timeout_ms > RT_MAP_WAIT_MS)
        o.stall_ms = RT_MAP_WAIT_MS + 2000;
    char addrs[sizeof(r->cfg.meta)];
    rotated(r->cfg.meta, rot, addrs, sizeof(addrs));
    shale_client_t *c = NULL;
    int rv = shale_client_open(r->loop, addrs, &o, &c);
    if (rv != SHALE_OK) {
        rt_error("cannot open a meta client", " meta=%s err=\"%s\"", addrs, shale_strerror(rv));
        return NULL;
    }
    return c;
}

static uint32_t poll_timeout(rt_router_t *r)
{
    return (uint32_t)(RT_MAP_WAIT_MS + r->cfg.timeout_ms);
}

/* Leave a meta member that did not answer: the next connection starts at
 * the following address. */
static void reopen(rt_router_t *r, shale_client_t **cli, uint32_t timeout_ms, unsigned *rot)
{
    (*rot)++;
    shale_client_close(*cli, NULL);
    *cli = open_client(r, timeout_ms, *rot);
}

static void take_map(rt_router_t *r, const shale_req_t *req, const char *who)
{
    Shale__MapResponse *resp =
        (Shale__MapResponse *)wire_unpack(SHALE_MSG_MAP_RESP, req->raw, req->raw_len);
    if (resp == NULL) {
        rt_warn("malformed MAP_RESP from the meta group", " via=%s", who);
        return;
    }
    Shale__ClusterMap *m = cmap_copy(resp->map);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (m == NULL)
        return;
    char err[256];
    uint64_t prev = r->route.epoch;
    int rv = rt_route_install(&r->route, m, r->cfg.cluster_id, err, sizeof(err));
    if (rv == 0) {
        rt_obs_map_installed(r);
        rt_info("cluster map installed",
                " epoch=%llu previous=%llu groups=%zu slots=%u cluster=%s via=%s",
                (unsigned long long)m->epoch, (unsigned long long)prev, r->route.ngroups,
                r->route.slots, m->cluster_id ? m->cluster_id : "", who);
        rt_fwd_map_changed(r);
        return;
    }
    if (rv < 0 && m->epoch != r->watch.refused_epoch) {
        r->watch.refused_epoch = m->epoch;
        rt_error("refusing the cluster map", " epoch=%llu err=\"%s\"", (unsigned long long)m->epoch,
                 err);
    }
    cmap_free(m);
}

static int conn_trouble(int status)
{
    return status == SHALE_ETIMEOUT || status == SHALE_EIO;
}

/* ---- The long-poll -----------------------------------------------------------*/

static void on_poll_timer(uv_timer_t *t)
{
    poll_issue(t->data);
}

static void on_poll(shale_req_t *req, int status)
{
    rt_router_t *r = req->data;
    rt_watch_t *w = &r->watch;
    w->poll_busy = 0;
    if (w->stopping) {
        shale_req_cleanup(req);
        return;
    }
    if (status == SHALE_OK) {
        uint64_t before = r->route.epoch;
        take_map(r, req, "watch");
        shale_req_cleanup(req);
        if (w->poll_fails > 0)
            rt_info("meta group reachable again", " epoch=%llu",
                    (unsigned long long)r->route.epoch);
        w->poll_fails = 0;
        /* A meta node that answers at once without news (older than this
         * router's map) must not make us spin. */
        if (r->route.epoch == before && uv_now(r->loop) - w->poll_sent_ms < 10)
            uv_timer_start(&w->poll_timer, on_poll_timer, POLL_MIN_INTERVAL_MS, 0);
        else
            poll_issue(r);
        return;
    }
    if (w->poll_fails == 0 || w->poll_fails % 20 == 0)
        rt_warn("cannot read the cluster map", " meta=%s err=\"%s\" msg=\"%s\" failures=%u",
                r->cfg.meta, shale_strerror(status), req->errmsg, w->poll_fails + 1);
    shale_req_cleanup(req);
    w->poll_fails++;
    if (conn_trouble(status))
        reopen(r, &w->poll_cli, poll_timeout(r), &w->poll_rot);
    unsigned f = w->poll_fails < 8 ? w->poll_fails - 1 : 7;
    uint64_t d = (uint64_t)POLL_RETRY_FIRST_MS << f;
    uv_timer_start(&w->poll_timer, on_poll_timer, d < POLL_RETRY_CAP_MS ? d : POLL_RETRY_CAP_MS, 0);
}

static void poll_issue(rt_router_t *r)
{
    rt_watch_t *w = &r->watch;
    if (w->stopping || w->poll_busy)
        return;
    if (w->poll_cli == NULL &&
        (w->poll_cli = open_client(r, poll_timeout(r), w->poll_rot)) == NULL) {
        uv_timer_start(&w->poll_timer, on_poll_timer, POLL_RETRY_CAP_MS, 0);
        return;
    }
    Shale__MapGetRequest g = SHALE__MAP_GET_REQUEST__INIT;
    g.has_known_epoch = 1;
    g.known_epoch = r->route.epoch;
    g.has_wait_ms = 1;
    g.wait_ms = RT_MAP_WAIT_MS;
    uint8_t buf[32];
    size_t len = shale__map_get_request__pack(&g, buf);
    w->poll_req.data = r;
    int rv = shale_call_async(w->poll_cli, &w->poll_req, SHALE_MSG_MAP_GET_REQ, SHALE_MSG_MAP_RESP,
                              buf, len, on_poll);
    if (rv != SHALE_OK) {
        rt_warn("cannot send MAP_GET", " err=\"%s\"", w->poll_req.errmsg);
        uv_timer_start(&w->poll_timer, on_poll_timer, POLL_RETRY_CAP_MS, 0);
        return;
    }
    w->poll_busy = 1;
    w->poll_sent_ms = uv_now(r->loop);
}

/* ---- Immediate refreshes -----------------------------------------------------*/

static void on_ref_timer(uv_timer_t *t)
{
    ref_issue(t->data);
}

static void on_ref(shale_req_t *req, int status)
{
    rt_router_t *r = req->data;
    rt_watch_t *w = &r->watch;
    w->ref_busy = 0;
    if (w->stopping) {
        shale_req_cleanup(req);
        return;
    }
    if (status == SHALE_OK) {
        take_map(r, req, "refresh");
        w->ref_fails = 0;
    } else {
        if (w->ref_fails++ % 20 == 0)
            rt_warn("cluster map refresh failed", " err=\"%s\" msg=\"%s\"", shale_strerror(status),
                    req->errmsg);
        if (conn_trouble(status))
            reopen(r, &w->ref_cli, (uint32_t)r->cfg.timeout_ms, &w->ref_rot);
    }
    shale_req_cleanup(req);
    if (w->ref_again) {
        w->ref_again = 0;
        ref_issue(r);
    } else if (r->route.epoch == 0) {
        uv_timer_start(&w->nomap_timer, on_ref_timer, NOMAP_RETRY_MS, 0);
    }
}

static void ref_issue(rt_router_t *r)
{
    rt_watch_t *w = &r->watch;
    if (w->stopping)
        return;
    if (w->ref_busy) {
        w->ref_again = 1;
        return;
    }
    uint64_t now = uv_now(r->loop);
    if (w->last_ref_ms != 0 && now - w->last_ref_ms < REFRESH_MIN_MS) {
        if (!uv_is_active((uv_handle_t *)&w->ref_timer))
            uv_timer_start(&w->ref_timer, on_ref_timer, REFRESH_MIN_MS - (now - w->last_ref_ms), 0);
        return;
    }
    if (w->ref_cli == NULL &&
        (w->ref_cli = open_client(r, (uint32_t)r->cfg.timeout_ms, w->ref_rot)) == NULL)
        return;
    Shale__MapGetRequest g = SHALE__MAP_GET_REQUEST__INIT;
    g.has_known_epoch = 1;
    g.known_epoch = r->route.epoch;
    g.has_wait_ms = 1;
    g.wait_ms = 0;
    uint8_t buf[32];
    size_t len = shale__map_get_request__pack(&g, buf);
    w->ref_req.data = r;
    if (shale_call_async(w->ref_cli, &w->ref_req, SHALE_MSG_MAP_GET_REQ, SHALE_MSG_MAP_RESP, buf,
                         len, on_ref) != SHALE_OK)
        return;
    w->ref_busy = 1;
    w->last_ref_ms = now;
    rt_obs_map_refresh(r);
}

void rt_watch_refresh(rt_router_t *r, uint64_t seen)
{
    rt_watch_t *w = &r->watch;
    if (seen > w->want_epoch)
        w->want_epoch = seen;
    rt_debug("cluster map refresh asked", " seen_epoch=%llu epoch=%llu", (unsigned long long)seen,
             (unsigned long long)r->route.epoch);
    ref_issue(r);
}

/* ---- Start and stop ----------------------------------------------------------*/

int rt_watch_start(rt_router_t *r, char *err, size_t errlen)
{
    rt_watch_t *w = &r->watch;
    memset(w, 0, sizeof(*w));
    w->started = 1;
    uv_timer_init(r->loop, &w->poll_timer);
    w->poll_timer.data = r;
    uv_timer_init(r->loop, &w->ref_timer);
    w->ref_timer.data = r;
    uv_timer_init(r->loop, &w->nomap_timer);
    w->nomap_timer.data = r;
    /* The two clients start at different members, so one stuck member
     * cannot blind both. */
    w->ref_rot = 1;
    w->poll_cli = open_client(r, poll_timeout(r), w->poll_rot);
    w->ref_cli = open_client(r, (uint32_t)r->cfg.timeout_ms, w->ref_rot);
    if (w->poll_cli == NULL || w->ref_cli == NULL) {
        snprintf(err, errlen, "cannot open a client for the meta group %s", r->cfg.meta);
        return -1;
    }
    poll_issue(r);
    ref_issue(r); /* the first map from whichever member answers first */
    return 0;
}

void rt_watch_stop(rt_router_t *r)
{
    rt_watch_t *w = &r->watch;
    if (!w->started || w->stopping)
        return;
    w->stopping = 1;
    uv_timer_stop(&w->poll_timer);
    uv_timer_stop(&w->ref_timer);
    uv_timer_stop(&w->nomap_timer);
    if (!uv_is_closing((uv_handle_t *)&w->nomap_timer))
        uv_close((uv_handle_t *)&w->nomap_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->poll_timer))
        uv_close((uv_handle_t *)&w->poll_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->ref_timer))
        uv_close((uv_handle_t *)&w->ref_timer, NULL);
    /* Pending requests end with SHALE_ECANCELED callbacks (ignored). */
    if (w->poll_cli != NULL)
        shale_client_close(w->poll_cli, NULL);
    if (w->ref_cli != NULL)
        shale_client_close(w->ref_cli, NULL);
    w->poll_cli = w->ref_cli = NULL;
}
