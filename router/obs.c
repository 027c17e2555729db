/* Observability of shale-router: its metrics (server/metrics.c) and the
 * HTTP endpoint (--http, server/http.c) serving /metrics and /health.
 *
 * Rules:
 *  - counting on the request path is an array increment plus one
 *    uv_hrtime() per answered request; group queue depths, the map epoch
 *    and connection counts are read at scrape time (collect);
 *  - per-group series are bounded: at most RT_OBS_MAX_GROUPS groups are
 *    listed (group ids come from the cluster map, which holds few);
 *  - ready (/health 200) once a cluster map is installed and the router is
 *    not shutting down. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs_http.h"
#include "metrics.h"
#include "router.h"
#include "sd_notify.h"

#define RT_OBS_MAX_GROUPS 32
#define OPS "get|put|del|cas|mget|mput|status|txn|scan|watch|other"
#define OUTCOMES                                                                                   \
    "ok|not_leader|wrong_group|timeout|unavailable|too_large|invalid|stale_too_old|cas_failed|"    \
    "not_found|protocol|cluster_mismatch|session_expired|storage|overloaded|slot_moving|"    \
    "unauthenticated|permission_denied|crossslot|compacted|other"
enum { OP_TXN = 7, OP_SCAN = 8, OP_WATCH = 9, OP_OTHER = 10, OUTCOME_OTHER = 20 };
#define CAUSES                                                                                     \
    "not_leader|wrong_group|unavailable|timeout|connection|stale_too_old|overloaded|other"
enum {
    C_NOT_LEADER,
    C_WRONG_GROUP,
    C_UNAVAILABLE,
    C_TIMEOUT,
    C_CONNECTION,
    C_STALE,
    C_OVERLOAD,
    C_OTHER
};
_Static_assert(C_OTHER + 1 == RT_OBS_NCAUSES, "router.h counts the retry causes");

struct rt_obs {
    met_registry_t *reg;
    obs_http_t ep;       /* /metrics and /health (obs_http.h) */
    met_family_t *requests, *duration, *retries, *map_epoch, *map_installs, *map_refreshes;
    met_family_t *group_pending, *inflight, *clients, *upstream, *nodes, *ready;
    met_family_t *logins, *denied;
    met_family_t *resp_cmds, *resp_errors; /* --resp: per command (resp_conn.c counts) */
};

static int op_index(uint16_t type)
{
    switch (type) {
    case SHALE_MSG_GET_REQ:
        return 0;
    case SHALE_MSG_PUT_REQ:
        return 1;
    case SHALE_MSG_DEL_REQ:
        return 2;
    case SHALE_MSG_CAS_REQ:
        return 3;
    case SHALE_MSG_MGET_REQ:
        return 4;
    case SHALE_MSG_MPUT_REQ:
        return 5;
    case SHALE_MSG_STATUS_REQ:
        return 6;
    case SHALE_MSG_TXN_REQ:
        return OP_TXN;
    case SHALE_MSG_SCAN_REQ:
        return OP_SCAN;
    case SHALE_MSG_WATCH_REQ:
        return OP_WATCH;
    default:
        return OP_OTHER;
    }
}

static int outcome_index(int code)
{
    return code == 0 ? 0 : (code <= -1 && code >= -19 ? -code : OUTCOME_OTHER);
}

void rt_obs_request(rt_router_t *r, uint16_t type, int code, uint64_t start_ns)
{
    struct rt_obs *o = r->obs;
    if (o == NULL)
        return;
    int op = op_index(type);
    met_add(o->requests, met_series_at(o->requests, (size_t)op, (size_t)outcome_index(code)), 1);
    uint64_t now = uv_hrtime();
    met_observe(o->duration, (size_t)op, now > start_ns ? (double)(now - start_ns) / 1e9 : 0);
}

int rt_obs_cause(int code)
{
    switch (code) {
    case SHALE_ENOTLEADER:
        return C_NOT_LEADER;
    case SHALE_EWRONGGROUP:
        return C_WRONG_GROUP;
    case SHALE_EUNAVAILABLE:
        return C_UNAVAILABLE;
    case SHALE_ETIMEOUT:
        return C_TIMEOUT;
    case SHALE_EIO:
        return C_CONNECTION;
    case SHALE_ESTALE:
        return C_STALE;
    case SHALE_EOVERLOAD:
        return C_OVERLOAD;
    default:
        return C_OTHER;
    }
}

void rt_obs_retry(rt_router_t *r, int code)
{
    if (r->obs != NULL)
        met_add(r->obs->retries, (size_t)rt_obs_cause(code), 1);
}

const char *rt_obs_op_name(const rt_router_t *r, uint16_t type)
{
    return r->obs != NULL ? met_label_value(r->obs->requests, 0, (size_t)op_index(type)) : "?";
}

const char *rt_obs_outcome_name(const rt_router_t *r, int code)
{
    return r->obs != NULL ? met_label_value(r->obs->requests, 1, (size_t)outcome_index(code)) : "?";
}

const char *rt_obs_cause_name(const rt_router_t *r, int cause)
{
    return r->obs != NULL ? met_label_value(r->obs->retries, 0, (size_t)cause) : "?";
}

void rt_obs_map_installed(rt_router_t *r)
{
    if (r->obs != NULL)
        met_add(r->obs->map_installs, 0, 1);
    /* Ready from the first map on (/health's rule): tell a service
     * manager once (sd_notify.h). */
    if (!r->notified_ready && !r->stopping) {
        r->notified_ready = 1;
        sdn_notifyf("STATUS=ready: cluster map epoch %llu", (unsigned long long)r->route.epoch);
    }
}

void rt_obs_map_refresh(rt_router_t *r)
{
    if (r->obs != NULL)
        met_add(r->obs->map_refreshes, 0, 1);
}

static int ready(rt_router_t *r, char *why, size_t n)
{
    if (r->stopping) {
        snprintf(why, n, "shutting down");
        return 0;
    }
    if (r->route.map == NULL) {
        snprintf(why, n, "no cluster map yet (meta group %.200s)", r->cfg.meta);
        return 0;
    }
    return 1;
}

static void collect(void *arg)
{
    rt_router_t *r = arg;
    struct rt_obs *o = r->obs;
    char why[300];
    met_set(o->ready, 0, ready(r, why, sizeof(why)));
    met_set(o->map_epoch, 0, (double)r->route.epoch);
    met_set(o->inflight, 0, (double)r->fwd.live);
    met_set(o->clients, 0, (double)r->nconns);
    met_set(o->upstream, 0, (double)rt_up_open_conns(r));
    met_set(o->nodes, 0, (double)r->up.nnodes);
    met_counter_set(o->logins, 0, r->authn.login.ok);
    met_counter_set(o->logins, 1, r->authn.login.failed);
    met_counter_set(o->logins, 2, r->authn.login.throttled);
    met_counter_set(o->logins, 3, r->authn.login.overloaded);
    met_counter_set(o->denied, 0, r->authn.denied);
    for (size_t i = 0; o->resp_cmds != NULL && i <= rt_resp_ncmds(); i++) {
        uint64_t calls, errors;
        rt_resp_cmd_counts(i, &calls, &errors);
        met_counter_set(o->resp_cmds, i, calls);
        met_counter_set(o->resp_errors, i, errors);
    }
    met_dyn_reset(o->group_pending);
    for (size_t i = 0; i < r->route.ngroups && i < RT_OBS_MAX_GROUPS; i++) {
        char id[24];
        snprintf(id, sizeof(id), "%llu", (unsigned long long)r->route.groups[i].id);
        met_dyn_set(o->group_pending, id, (double)r->route.groups[i].pending);
    }
}

/* The RESP port's per-command families: label cmd = every command of its
 * table, then "unknown" (in the table's order, so series i is command i). */
static int resp_families(struct rt_obs *o)
{
    size_t n = rt_resp_ncmds(), cap = 16;
    for (size_t i = 0; i <= n; i++)
        cap += strlen(rt_resp_cmd_name(i)) + 1;
    char *labels = malloc(cap);
    if (labels == NULL)
        return -1;
    size_t k = (size_t)snprintf(labels, cap, "cmd=");
    for (size_t i = 0; i <= n; i++)
        k += (size_t)snprintf(labels + k, cap - k, "%s%s", i ? "|" : "", rt_resp_cmd_name(i));
    o->resp_cmds = met_counter(o->reg, "shale_router_resp_commands_total",
                               "Commands received on the Redis port (--resp), by command "
                               "(unknown: not in its table).",
                               labels);
    o->resp_errors = met_counter(o->reg, "shale_router_resp_errors_total",
                                 "Error replies of the Redis port (--resp), by command.", labels);
    free(labels);
    return o->resp_cmds != NULL && o->resp_errors != NULL ? 0 : -1;
}

int rt_obs_init(rt_router_t *r)
{
    struct rt_obs *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return -1;
    r->obs = o;
    met_registry_t *g = o->reg = met_registry_new();
    if (g == NULL)
        return -1;
    o->requests = met_counter(g, "shale_router_requests_total",
                              "Client requests answered by the router, by operation and outcome "
                              "(ok or the error code).",
                              "op=" OPS ",outcome=" OUTCOMES);
    o->duration = met_histogram(g, "shale_router_request_duration_seconds",
                                "Time from a request's arrival at the router to its answer, "
                                "retries included, by operation.",
                                "op=" OPS, met_latency_buckets, MET_LATENCY_NBUCKETS);
    o->retries = met_counter(g, "shale_router_retries_total",
                             "Attempts retried, by cause (the error that made the router try "
                             "again).",
                             "cause=" CAUSES);
    o->map_epoch = met_gauge(g, "shale_router_map_epoch",
                             "Epoch of the cluster map the router routes with (0: none).", NULL);
    o->map_installs =
        met_counter(g, "shale_router_map_installs_total", "Newer cluster maps installed.", NULL);
    o->map_refreshes = met_counter(g, "shale_router_map_refreshes_total",
                                   "Immediate map refreshes sent to the meta group (after "
                                   "WRONG_GROUP or while there is no map).",
                                   NULL);
    o->group_pending = met_gauge_dynamic(g, "shale_router_group_pending_requests",
                                         "Requests queued or in flight per shard group (the "
                                         "--max-pending admission count).",
                                         "group", RT_OBS_MAX_GROUPS);
    o->inflight = met_gauge(g, "shale_router_inflight_requests",
                            "Client requests accepted and not yet answered.", NULL);
    o->clients = met_gauge(g, "shale_router_client_connections", "Open client connections.", NULL);
    o->upstream = met_gauge(g, "shale_router_upstream_connections",
                            "Open pooled connections to nodes.", NULL);
    o->nodes =
        met_gauge(g, "shale_router_upstream_nodes", "Nodes the router has connected to.", NULL);
    o->logins = met_counter(g, "shale_auth_logins_total",
                            "Client HELLO credentials checked (--auth): ok, failed (wrong "
                            "password, unknown user, malformed), throttled (the source address "
                            "had too many failures: refused without checking), overloaded "
                            "(queue full).",
                            "outcome=ok|failed|throttled|overloaded");
    o->denied = met_counter(g, "shale_auth_denied_total",
                            "Client requests refused because the user's role or key prefix "
                            "does not allow them, or there is no user (--auth).",
                            NULL);
    o->ready = met_gauge(g, "shale_ready", "1 when /health answers ready.", NULL);
    if (r->cfg.resp[0] != '\0' && resp_families(o) != 0)
        return -1;
    if (o->requests == NULL || o->duration == NULL || o->retries == NULL ||
        o->group_pending == NULL || o->ready == NULL || met_register_process(g) != 0 ||
        met_on_collect(g, collect, r) != 0)
        return -1;
    return 0;
}

static int ready_cb(void *arg, char *why, size_t whylen)
{
    return ready(arg, why, whylen);
}

int rt_obs_start(rt_router_t *r, char *err, size_t errlen)
{
    if (r->cfg.http[0] == '\0' || r->obs == NULL)
        return 0;
    obs_http_t *ep = &r->obs->ep;
    ep->reg = r->obs->reg;
    ep->ready = ready_cb;
    ep->arg = r;
    if (obs_http_start(ep, r->loop, r->cfg.http, r->cfg.listen, err, errlen) != 0)
        return -1;
    rt_info("serving metrics", " http=%s paths=/metrics,/health", ep->addr);
    return 0;
}

const char *rt_obs_http_addr(const rt_router_t *r)
{
    return r->obs != NULL ? obs_http_bound(&r->obs->ep) : NULL;
}

void rt_obs_stop(rt_router_t *r)
{
    if (r->obs != NULL)
        obs_http_stop(&r->obs->ep);
}

void rt_obs_free(rt_router_t *r)
{
    if (r->obs == NULL)
        return;
    met_registry_free(r->obs->reg);
    free(r->obs);
    r->obs = NULL;
}
