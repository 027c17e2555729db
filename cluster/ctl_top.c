/* shalectl top: a live view of the cluster from the processes' own
 * /metrics, refreshed every --interval seconds.
 *
 * Each refresh: the map from the meta group (the last one read stands when
 * the meta group does not answer), STATUS of every group member and of
 * each --router (role, term, applied index, staleness, and where it serves
 * /metrics), then one scrape of /metrics per process that serves it. Rates
 * are deltas between a process's two latest scrapes over the time between
 * them; latency quantiles come from the deltas of the latency histograms'
 * buckets, merged over a group's members (prom.h). The first view needs a
 * scrape before it, so one is taken an interval ahead.
 *
 * What it shows per group: leader, term, members answering, ops/s (data
 * requests get/put/del/cas/mget/mput its members answered, NOT_LEADER and
 * WRONG_GROUP redirects left out), errors/s (those of them answered with
 * an error other than cas_failed/not_found), p50/p99 latency, the largest
 * replica lag (entries behind the leader's applied index, and staleness in
 * ms), leader changes seen in the interval. Per router: ops/s, errors/s,
 * p50/p99 (arrival to answer, retries included), retries/s, requests in
 * flight.
 *
 * Never changes anything; never fails on a down member (it is shown as
 * such). Exits after --count refreshes, or runs until interrupted. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmap.h"
#include "ctl.h"
#include "httpc.h"
#include "prom.h"

#define TOP_MAX_ROUTERS 8
#define DATA_OPS "get|put|del|cas|mget|mput"
#define REDIRECTS "not_leader|wrong_group"
#define NOT_ERRORS "ok|cas_failed|not_found|not_leader|wrong_group"

const flag_spec_t top_flags[] = {
    {"interval", "S", "seconds between refreshes, e.g. 0.5 (default 1)", 0},
    {"count", "N", "exit after N refreshes (default: run until interrupted)", 0},
    {NULL, NULL, NULL, 0},
};
enum { F_INTERVAL, F_COUNT };

static int parse_interval(const char *s, double *out)
{
    char *end = NULL;
    double v = s != NULL ? strtod(s, &end) : 0;
    if (s == NULL || end == s || *end != '\0' || !(v >= 0.1 && v <= 3600))
        return -1;
    *out = v;
    return 0;
}

int check_top(const cmd_t *cmd, char *err, size_t errlen)
{
    double iv;
    uint64_t n;
    if (cmd->set[F_INTERVAL] && parse_interval(cmd->val[F_INTERVAL], &iv) != 0) {
        snprintf(err, errlen, "--interval needs seconds in 0.1..3600, not '%s'",
                 cmd->val[F_INTERVAL]);
        return -1;
    }
    if (cmd->set[F_COUNT] && (ctl_parse_u64(cmd->val[F_COUNT], &n) != 0 || n == 0)) {
        snprintf(err, errlen, "--count needs a positive number, not '%s'", cmd->val[F_COUNT]);
        return -1;
    }
    return 0;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Scrapes -------------------------------------------------------------------*/

/* What top keeps of one scrape of one process. */
typedef struct scrape {
    int ok;
    double t;                    /* mono_s() when it was read */
    double ops, errors, retries; /* counters (NaN: absent) */
    double leader_changes;
    double inflight; /* gauge */
    prom_hist_t lat; /* data ops' latency buckets */
} scrape_t;

/* A process's previous scrape, by its /metrics address. */
typedef struct prev {
    char http[160];
    scrape_t s;
} prev_t;

typedef struct top {
    const cmd_t *cmd;
    int timeout_ms;
    prev_t *prev;
    size_t nprev, cap;
} top_t;

static scrape_t *prev_find(top_t *t, const char *http)
{
    for (size_t i = 0; i < t->nprev; i++)
        if (strcmp(t->prev[i].http, http) == 0)
            return &t->prev[i].s;
    return NULL;
}

static void prev_store(top_t *t, const char *http, const scrape_t *s)
{
    scrape_t *p = prev_find(t, http);
    if (p == NULL) {
        if (t->nprev == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 16;
            prev_t *np = realloc(t->prev, cap * sizeof(*np));
            if (np == NULL)
                return; /* no rate for it next time */
            t->prev = np;
            t->cap = cap;
        }
        prev_t *e = &t->prev[t->nprev++];
        snprintf(e->http, sizeof(e->http), "%s", http);
        p = &e->s;
    }
    *p = *s;
}

/* Read http's /metrics. router: the shale_router_* families. */
static int scrape(top_t *t, const char *http, int router, scrape_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    char *body = NULL;
    size_t len = 0;
    int status = 0;
    int rv = httpc_get(http, "/metrics", t->timeout_ms, &status, &body, &len, err, errlen);
    if (rv != 0)
        return rv;
    if (status != 200) {
        snprintf(err, errlen, "/metrics answered %d", status);
        free(body);
        return SHALE_EIO;
    }
    prom_text_t pt;
    if (prom_parse(body, len, &pt) != 0) {
        free(body);
        prom_free(&pt);
        snprintf(err, errlen, "out of memory");
        return SHALE_ENOMEM;
    }
    free(body);
    const char *req = router ? "shale_router_requests_total" : "shale_requests_total";
    const char *dur =
        router ? "shale_router_request_duration_seconds" : "shale_request_duration_seconds";
    /* The router answers every request itself: no redirects to leave out. */
    prom_match_t served[] = {{"op", DATA_OPS, 0}, {"outcome", REDIRECTS, !router ? 1 : 0}};
    prom_match_t failed[] = {{"op", DATA_OPS, 0}, {"outcome", NOT_ERRORS, 1}};
    prom_match_t data[] = {{"op", DATA_OPS, 0}};
    out->ops = router ? prom_sum(&pt, req, data, 1) : prom_sum(&pt, req, served, 2);
    out->errors = prom_sum(&pt, req, failed, 2);
    if (isnan(out->errors) && !isnan(out->ops))
        out->errors = 0;
    out->retries = router ? prom_sum(&pt, "shale_router_retries_total", NULL, 0) : NAN;
    out->leader_changes = router ? NAN : prom_sum(&pt, "shale_raft_leader_changes_total", NULL, 0);
    out->inflight = router ? prom_sum(&pt, "shale_router_inflight_requests", NULL, 0) : NAN;
    if (prom_histogram(&pt, dur, data, 1, &out->lat) < 0)
        out->lat.n = 0;
    int found = !isnan(out->ops);
    prom_free(&pt);
    if (!found) {
        snprintf(err, errlen, "no %s in /metrics", req);
        return SHALE_EPROTO;
    }
    out->ok = 1;
    out->t = mono_s();
    err[0] = '\0';
    return 0;
}

/* The interval's figures of one process: now against its previous scrape. */
typedef struct rates {
    int ok; /* both scrapes read */
    double ops, errors, retries, leader_changes;
    prom_hist_t lat;
} rates_t;

static void rates_of(top_t *t, const char *http, const scrape_t *now, rates_t *r)
{
    memset(r, 0, sizeof(*r));
    const scrape_t *before = prev_find(t, http);
    if (now->ok && before != NULL && before->ok && now->t > before->t) {
        double dt = now->t - before->t;
        r->ok = 1;
        r->ops = prom_counter_delta(now->ops, before->ops) / dt;
        r->errors = prom_counter_delta(now->errors, before->errors) / dt;
        r->retries = prom_counter_delta(now->retries, before->retries) / dt;
        r->leader_changes = prom_counter_delta(now->leader_changes, before->leader_changes);
        r->lat = now->lat;
        prom_hist_sub(&r->lat, &before->lat);
    }
    if (now->ok)
        prev_store(t, http, now);
}

/* ---- One refresh ----------------------------------------------------------------*/

/* A process top looks at: a group member or a router. */
typedef struct target {
    const Shale__Member *m; /* NULL for a router */
    uint64_t group;         /* 0 for a router */
    probe_t *probe;
    scrape_t now;
    rates_t rate;
    char err[200]; /* why there is no scrape */
} target_t;

static void json_num(double v, int decimals)
{
    if (isnan(v) || isinf(v))
        printf("null");
    else
        printf("%.*f", decimals, v);
}

/* "%.Nf" or "-" into buf. */
static const char *fmt_num(char *buf, size_t len, double v, int decimals)
{
    if (isnan(v) || isinf(v))
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.*f", decimals, v);
    return buf;
}

/* A group's figures, from its members' rows. */
typedef struct gsum {
    const Shale__StatusResponse *leader;
    size_t members, up, scraped;
    double ops, errors, leader_changes, p50_ms, p99_ms;
    uint64_t lag;
    double staleness_ms;
} gsum_t;

static void group_sum(target_t *tg, member_row_t *rows, size_t n, gsum_t *g)
{
    memset(g, 0, sizeof(*g));
    g->members = n;
    g->ops = g->errors = g->leader_changes = NAN;
    g->staleness_ms = NAN;
    prom_hist_t lat = {0};
    int have_lat = 0;
    rows_compute_lag(rows, n);
    for (size_t i = 0; i < n; i++) {
        const probe_t *p = tg[i].probe;
        if (p->rv != SHALE_OK)
            continue;
        g->up++;
        if (p->st->role != NULL && strcmp(p->st->role, "leader") == 0 && g->leader == NULL)
            g->leader = p->st;
        if (rows[i].lag > g->lag)
            g->lag = rows[i].lag;
        if (p->st->has_staleness_ms &&
            (isnan(g->staleness_ms) || (double)p->st->staleness_ms > g->staleness_ms))
            g->staleness_ms = (double)p->st->staleness_ms;
        const rates_t *r = &tg[i].rate;
        if (!r->ok)
            continue;
        g->scraped++;
        g->ops = (isnan(g->ops) ? 0 : g->ops) + (isnan(r->ops) ? 0 : r->ops);
        g->errors = (isnan(g->errors) ? 0 : g->errors) + (isnan(r->errors) ? 0 : r->errors);
        if (!isnan(r->leader_changes))
            g->leader_changes = isnan(g->leader_changes)
                                    ? r->leader_changes
                                    : fmax(g->leader_changes, r->leader_changes);
        /* Every member has the same bounds: add them up bound by bound. */
        if (r->lat.n > 0 && (!have_lat || lat.n == r->lat.n)) {
            if (!have_lat) {
                lat = r->lat;
                have_lat = 1;
            } else {
                for (size_t b = 0; b < lat.n; b++)
                    lat.count[b] += r->lat.count[b];
            }
        }
    }
    g->p50_ms = have_lat ? prom_hist_quantile(&lat, 0.5) * 1e3 : NAN;
    g->p99_ms = have_lat ? prom_hist_quantile(&lat, 0.99) * 1e3 : NAN;
}

static void router_lat(const target_t *t, double *p50, double *p99)
{
    *p50 = t->rate.ok ? prom_hist_quantile(&t->rate.lat, 0.5) * 1e3 : NAN;
    *p99 = t->rate.ok ? prom_hist_quantile(&t->rate.lat, 0.99) * 1e3 : NAN;
}

static void print_json(const Shale__ClusterMap *map, target_t *tg, size_t nmembers, size_t nrouters,
                       member_row_t *rows, double interval, const char *map_err)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    printf("{\"ts\":%lld.%03ld,\"interval_s\":%.3f,\"map_epoch\":%" PRIu64, (long long)now.tv_sec,
           now.tv_nsec / 1000000, interval, map->epoch);
    if (map_err != NULL) {
        printf(",\"map_error\":");
        ctl_json_str(stdout, map_err);
    }
    printf(",\"groups\":[");
    size_t at = 0;
    for (size_t gi = 0; gi < map->n_groups; gi++) {
        const Shale__ShardGroup *g = map->groups[gi];
        gsum_t s;
        group_sum(&tg[at], &rows[at], g->n_members, &s);
        printf("%s{\"id\":%" PRIu64 ",\"slots\":%u,\"leader_id\":", gi ? "," : "", g->id,
               cmap_slot_count(map, g->id));
        if (s.leader != NULL)
            printf("%" PRIu64 ",\"term\":%" PRIu64, s.leader->node_id, s.leader->term);
        else
            printf("null,\"term\":null");
        printf(",\"members\":%zu,\"up\":%zu,\"scraped\":%zu,\"ops_per_s\":", s.members, s.up,
               s.scraped);
        json_num(s.ops, 1);
        printf(",\"errors_per_s\":");
        json_num(s.errors, 1);
        printf(",\"p50_ms\":");
        json_num(s.p50_ms, 3);
        printf(",\"p99_ms\":");
        json_num(s.p99_ms, 3);
        printf(",\"lag_entries\":%" PRIu64 ",\"staleness_ms\":", s.lag);
        json_num(s.staleness_ms, 0);
        printf(",\"leader_changes\":");
        json_num(s.leader_changes, 0);
        printf(",\"nodes\":[");
        for (size_t j = 0; j < g->n_members; j++) {
            const target_t *t = &tg[at + j];
            const probe_t *p = t->probe;
            printf("%s{\"id\":%" PRIu64 ",\"client\":", j ? "," : "", t->m->id);
            ctl_json_str(stdout, t->m->client_addr);
            printf(",\"up\":%s,\"role\":", p->rv == SHALE_OK ? "true" : "false");
            if (p->rv == SHALE_OK)
                ctl_json_str(stdout, p->st->role ? p->st->role : "");
            else
                printf("null");
            printf(",\"http\":");
            if (p->http[0] != '\0')
                ctl_json_str(stdout, p->http);
            else
                printf("null");
            printf(",\"applied\":");
            if (p->rv == SHALE_OK)
                printf("%" PRIu64 ",\"lag\":%" PRIu64, p->st->applied_index, rows[at + j].lag);
            else
                printf("null,\"lag\":null");
            printf(",\"ops_per_s\":");
            json_num(t->rate.ok ? t->rate.ops : NAN, 1);
            if (t->err[0] != '\0') {
                printf(",\"error\":");
                ctl_json_str(stdout, t->err);
            }
            printf("}");
        }
        printf("]}");
        at += g->n_members;
    }
    printf("]");
    if (nrouters > 0) {
        printf(",\"routers\":[");
        for (size_t i = 0; i < nrouters; i++) {
            const target_t *t = &tg[nmembers + i];
            double p50, p99;
            router_lat(t, &p50, &p99);
            printf("%s{\"addr\":", i ? "," : "");
            ctl_json_str(stdout, t->probe->addr);
            printf(",\"up\":%s,\"http\":", t->probe->rv == SHALE_OK ? "true" : "false");
            if (t->probe->http[0] != '\0')
                ctl_json_str(stdout, t->probe->http);
            else
                printf("null");
            printf(",\"ops_per_s\":");
            json_num(t->rate.ok ? t->rate.ops : NAN, 1);
            printf(",\"errors_per_s\":");
            json_num(t->rate.ok ? t->rate.errors : NAN, 1);
            printf(",\"p50_ms\":");
            json_num(p50, 3);
            printf(",\"p99_ms\":");
            json_num(p99, 3);
            printf(",\"retries_per_s\":");
            json_num(t->rate.ok ? t->rate.retries : NAN, 1);
            printf(",\"inflight\":");
            json_num(t->now.ok ? t->now.inflight : NAN, 0);
            if (t->err[0] != '\0') {
                printf(",\"error\":");
                ctl_json_str(stdout, t->err);
            }
            printf("}");
        }
        printf("]");
    }
    printf("}\n");
}

static void print_text(const Shale__ClusterMap *map, target_t *tg, size_t nmembers, size_t nrouters,
                       member_row_t *rows, double interval, const char *map_err)
{
    char clock[32] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm) != NULL)
        strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
    printf("shale top: cluster %s, map epoch %" PRIu64 ", %zu group%s, every %.1f s, %s\n",
           map->cluster_id ? map->cluster_id : "?", map->epoch, map->n_groups,
           map->n_groups == 1 ? "" : "s", interval, clock);
    if (map_err != NULL)
        printf("(meta group: %s; showing the last map read)\n", map_err);
    printf("\n%-6s %-7s %-6s %-7s %10s %8s %9s %9s %8s %9s %5s\n", "GROUP", "LEADER", "TERM", "UP",
           "OPS/S", "ERR/S", "P50(ms)", "P99(ms)", "LAG", "STALE(ms)", "LCHG");
    size_t at = 0;
    char b[8][32];
    for (size_t gi = 0; gi < map->n_groups; gi++) {
        const Shale__ShardGroup *g = map->groups[gi];
        gsum_t s;
        group_sum(&tg[at], &rows[at], g->n_members, &s);
        char up[16], leader[24], term[24];
        snprintf(up, sizeof(up), "%zu/%zu", s.up, s.members);
        snprintf(leader, sizeof(leader), "%s", "-");
        snprintf(term, sizeof(term), "%s", "-");
        if (s.leader != NULL) {
            snprintf(leader, sizeof(leader), "%" PRIu64, s.leader->node_id);
            snprintf(term, sizeof(term), "%" PRIu64, s.leader->term);
        }
        printf("%-6" PRIu64 " %-7s %-6s %-7s %10s %8s %9s %9s %8" PRIu64 " %9s %5s", g->id, leader,
               term, up, fmt_num(b[0], 32, s.ops, 1), fmt_num(b[1], 32, s.errors, 1),
               fmt_num(b[2], 32, s.p50_ms, 2), fmt_num(b[3], 32, s.p99_ms, 2), s.lag,
               fmt_num(b[4], 32, s.staleness_ms, 0), fmt_num(b[5], 32, s.leader_changes, 0));
        if (s.up > s.scraped)
            printf("  (/metrics of %zu of %zu members)", s.scraped, s.up);
        printf("\n");
        at += g->n_members;
    }
    if (nrouters == 0)
        return;
    printf("\n%-22s %10s %8s %9s %9s %10s %9s\n", "ROUTER", "OPS/S", "ERR/S", "P50(ms)", "P99(ms)",
           "RETRIES/S", "INFLIGHT");
    for (size_t i = 0; i < nrouters; i++) {
        const target_t *t = &tg[nmembers + i];
        double p50, p99;
        router_lat(t, &p50, &p99);
        printf("%-22s %10s %8s %9s %9s %10s %9s", t->probe->addr,
               fmt_num(b[0], 32, t->rate.ok ? t->rate.ops : NAN, 1),
               fmt_num(b[1], 32, t->rate.ok ? t->rate.errors : NAN, 1), fmt_num(b[2], 32, p50, 2),
               fmt_num(b[3], 32, p99, 2), fmt_num(b[4], 32, t->rate.ok ? t->rate.retries : NAN, 1),
               fmt_num(b[5], 32, t->now.ok ? t->now.inflight : NAN, 0));
        if (t->err[0] != '\0')
            printf("  (%s)", t->err);
        printf("\n");
    }
}

/* Probe and scrape every target; print when show. */
static int refresh(top_t *t, const Shale__ClusterMap *map, const char *routers[], size_t nrouters,
                   double interval, const char *map_err, int show)
{
    size_t nmembers = 0;
    for (size_t i = 0; i < map->n_groups; i++)
        nmembers += map->groups[i]->n_members;
    size_t n = nmembers + nrouters;
    target_t *tg = calloc(n + 1, sizeof(*tg));
    probe_t *probes = calloc(n + 1, sizeof(*probes));
    member_row_t *rows = calloc(n + 1, sizeof(*rows));
    if (tg == NULL || probes == NULL || rows == NULL) {
        free(tg);
        free(probes);
        free(rows);
        return ctl_say(EXIT_FAIL, "top", "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < map->n_groups; i++) {
        const Shale__ShardGroup *g = map->groups[i];
        for (size_t j = 0; j < g->n_members; j++, k++) {
            tg[k].m = g->members[j];
            tg[k].group = g->id;
            snprintf(probes[k].addr, sizeof(probes[k].addr), "%s", g->members[j]->client_addr);
            rows[k].m = g->members[j];
            rows[k].probe = &probes[k];
            rows[k].expect_group = g->id;
        }
    }
    for (size_t i = 0; i < nrouters; i++, k++)
        snprintf(probes[k].addr, sizeof(probes[k].addr), "%s", routers[i]);
    probe_all(t->cmd, probes, n);
    for (size_t i = 0; i < n; i++) {
        target_t *x = &tg[i];
        probe_t *p = &probes[i];
        x->probe = p;
        if (p->rv != SHALE_OK) {
            snprintf(x->err, sizeof(x->err), "%s", p->err);
            continue;
        }
        if (p->st->http_addr == NULL || p->st->http_addr[0] == '\0') {
            snprintf(x->err, sizeof(x->err), "no /metrics (started without --http)");
            continue;
        }
        if (httpc_reach_addr(p->st->http_addr, p->addr, p->http, sizeof(p->http)) != 0) {
            snprintf(x->err, sizeof(x->err), "bad http address '%.100s'", p->st->http_addr);
            continue;
        }
        if (scrape(t, p->http, i >= nmembers, &x->now, x->err, sizeof(x->err)) != 0)
            continue;
        rates_of(t, p->http, &x->now, &x->rate);
    }
    if (show) {
        if (t->cmd->json)
            print_json(map, tg, nmembers, nrouters, rows, interval, map_err);
        else
            print_text(map, tg, nmembers, nrouters, rows, interval, map_err);
        fflush(stdout);
    }
    probe_free(probes, n);
    free(tg);
    free(probes);
    free(rows);
    return EXIT_OKAY;
}

static void sleep_until(double t)
{
    double left = t - mono_s();
    if (left <= 0)
        return;
    struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
    nanosleep(&ts, NULL);
}

int run_top(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    double interval = 1;
    uint64_t count = 0;
    if (cmd->set[F_INTERVAL])
        parse_interval(cmd->val[F_INTERVAL], &interval);
    if (cmd->set[F_COUNT])
        ctl_parse_u64(cmd->val[F_COUNT], &count);
    /* --router: a comma list. */
    char rlist[1024] = "";
    const char *routers[TOP_MAX_ROUTERS];
    size_t nrouters = 0;
    if (cmd->router != NULL) {
        snprintf(rlist, sizeof(rlist), "%s", cmd->router);
        char *save = NULL;
        for (char *a = strtok_r(rlist, ",", &save); a != NULL && nrouters < TOP_MAX_ROUTERS;
             a = strtok_r(NULL, ",", &save))
            routers[nrouters++] = a;
    }
    meta_t m;
    int code = meta_open(cmd, "top", &m);
    if (code != 0)
        return code;
    char err[SHALE_ERRMSG_LEN];
    Shale__ClusterMap *map = NULL;
    int rv = map_get(&m, &map, err);
    if (rv != SHALE_OK) {
        meta_close(&m);
        return ctl_error("top", rv, err, 0);
    }
    top_t t = {.cmd = cmd};
    t.timeout_ms = cmd->timeout_ms ? (int)cmd->timeout_ms : CTL_HEALTH_TIMEOUT_MS;
    int tty = isatty(STDOUT_FILENO) && !cmd->json;
    /* The first view needs a scrape an interval before it. */
    double next = mono_s() + interval;
    code = refresh(&t, map, routers, nrouters, interval, NULL, 0);
    for (uint64_t i = 0; code == EXIT_OKAY && (count == 0 || i < count); i++) {
        sleep_until(next);
        next += interval;
        if (next < mono_s())
            next = mono_s() + interval; /* a slow refresh: do not try to catch up */
        Shale__ClusterMap *fresh = NULL;
        const char *map_err = NULL;
        rv = map_get(&m, &fresh, err);
        if (rv == SHALE_OK) {
            cmap_free(map);
            map = fresh;
        } else {
            map_err = err;
        }
        if (tty)
            printf("\033[H\033[2J");
        else if (i > 0 && !cmd->json)
            printf("\n");
        code = refresh(&t, map, routers, nrouters, interval, map_err, 1);
    }
    free(t.prev);
    cmap_free(map);
    meta_close(&m);
    return code;
}
