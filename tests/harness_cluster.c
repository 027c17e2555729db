/* Whole-cluster test harness (harness_cluster.h). Starts real processes
 * through harness.c and talks to the meta group through libshale. */
#include "harness_cluster.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmap.h"
#include "frame.h"
#include "shale.h"
#include "shale_internal.h"

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int th_cluster_start(th_cluster_t *c, int ngroups, int voters, int first_host, const char *base,
                     const char *const *extra)
{
    return th_cluster_start_ex(c, ngroups, voters, first_host, base, extra, NULL);
}

int th_cluster_start_ex(th_cluster_t *c, int ngroups, int voters, int first_host,
                        const char *base, const char *const *extra,
                        const char *const *meta_extra)
{
    char dir[600];
    memset(c, 0, sizeof(*c));
    snprintf(c->base, sizeof(c->base), "%s", base);
    if (ngroups > TH_MAX_GROUPS)
        return -1;
    c->ngroups = ngroups;
    snprintf(dir, sizeof(dir), "%s/meta", base);
    mkdir(dir, 0755);
    th_group_init(&c->meta, 3, first_host, dir);
    const char *margs[40] = {"--mode", "meta"};
    int nm = 2;
    for (int i = 0; meta_extra != NULL && meta_extra[i] != NULL && nm < 38; i++)
        margs[nm++] = meta_extra[i];
    margs[nm] = NULL;
    if (th_secure_setup() != 0)
        return -1;
    th_secure_login(0); /* no login can succeed before the first admin */
    if (th_group_start(&c->meta, margs) != 0)
        return -1;
    /* Secure by default: the meta members run with --auth; the user
     * "admin" every other process logs in as comes first (harness.h). */
    if (th_bootstrap_admin(c->meta.addrs, 60000) != 0)
        return -1;
    for (int g = 1; g <= ngroups; g++) {
        th_group_t *gr = &c->groups[g - 1];
        snprintf(dir, sizeof(dir), "%s/g%d", base, g);
        mkdir(dir, 0755);
        th_group_init(gr, voters, first_host + 10 * g, dir);
        char gid[16];
        snprintf(gid, sizeof(gid), "%d", g);
        const char *args[40] = {"--group", gid, "--meta", c->meta.addrs};
        int n = 4;
        for (int i = 0; extra != NULL && extra[i] != NULL && n < 38; i++)
            args[n++] = extra[i];
        args[n] = NULL;
        if (th_group_start(gr, args) != 0)
            return -1;
    }
    if (th_group_wait_leader(&c->meta, 20000) < 0)
        return -1;
    for (int g = 0; g < ngroups; g++)
        if (th_group_wait_leader(&c->groups[g], 20000) < 0)
            return -1;
    return 0;
}

Shale__ShardGroup *th_shard_group(const th_group_t *g, uint64_t id)
{
    Shale__ShardGroup *sg = calloc(1, sizeof(*sg));
    shale__shard_group__init(sg);
    sg->id = id;
    sg->n_members = (size_t)g->n;
    sg->members = calloc((size_t)g->n, sizeof(*sg->members));
    for (int i = 0; i < g->n; i++) {
        Shale__Member *m = calloc(1, sizeof(*m));
        shale__member__init(m);
        m->id = g->nodes[i].id;
        char raft[64];
        snprintf(raft, sizeof(raft), "%s:%d", g->nodes[i].host, g->nodes[i].raft_port);
        m->raft_addr = strdup(raft);
        m->client_addr = strdup(g->nodes[i].addr);
        m->has_role = 1;
        m->role = SHALE__MEMBER_ROLE__ROLE_VOTER;
        sg->members[i] = m;
    }
    return sg;
}

void th_shard_group_free(Shale__ShardGroup *g)
{
    for (size_t i = 0; i < g->n_members; i++) {
        free(g->members[i]->raft_addr);
        free(g->members[i]->client_addr);
        free(g->members[i]);
    }
    free(g->members);
    free(g);
}

static shale_client_t *meta_client(const char *addrs, uint32_t timeout_ms)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = timeout_ms;
    o.stall_ms = timeout_ms; /* long-polls are silent while they wait */
    shale_client_t *cl = NULL;
    if (shale_connect(addrs, &o, &cl, NULL) != SHALE_OK)
        return NULL;
    return cl;
}

int th_map_get(const char *meta_addrs, uint64_t known_epoch, uint32_t wait_ms,
               Shale__ClusterMap **out)
{
    *out = NULL;
    shale_client_t *cl = meta_client(meta_addrs, wait_ms + 10000);
    if (cl == NULL)
        return SHALE_EIO;
    Shale__MapGetRequest g = SHALE__MAP_GET_REQUEST__INIT;
    g.has_known_epoch = 1;
    g.known_epoch = known_epoch;
    g.has_wait_ms = 1;
    g.wait_ms = wait_ms;
    uint8_t buf[32];
    size_t len = shale__map_get_request__pack(&g, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rv = shale_call(cl, SHALE_MSG_MAP_GET_REQ, SHALE_MSG_MAP_RESP, buf, len, &resp, &rlen,
                        NULL, NULL);
    shale_close(cl);
    if (rv != SHALE_OK)
        return rv;
    Shale__MapResponse *r = shale__map_response__unpack(NULL, rlen, resp);
    free(resp);
    if (r == NULL || r->map == NULL) {
        if (r != NULL)
            shale__map_response__free_unpacked(r, NULL);
        return SHALE_EPROTO;
    }
    *out = cmap_copy(r->map);
    shale__map_response__free_unpacked(r, NULL);
    return *out != NULL ? SHALE_OK : SHALE_ENOMEM;
}

Shale__ClusterMap *th_map_newest(const th_cluster_t *c)
{
    Shale__ClusterMap *best = NULL;
    for (int i = 0; i < c->meta.n; i++) {
        Shale__ClusterMap *m = NULL;
        if (th_map_get(c->meta.nodes[i].addr, 0, 0, &m) != SHALE_OK || m == NULL)
            continue;
        if (best == NULL || m->epoch > best->epoch) {
            cmap_free(best);
            best = m;
        } else {
            cmap_free(m);
        }
    }
    return best;
}

int th_map_cas(const char *meta_addrs, uint64_t expect, const Shale__ClusterMap *map,
               uint64_t client_id, uint64_t seq, Shale__ClusterMap **out, uint64_t *epoch,
               char *msg)
{
    if (out != NULL)
        *out = NULL;
    shale_client_t *cl = meta_client(meta_addrs, 10000);
    if (cl == NULL)
        return SHALE_EIO;
    Shale__MapCasRequest c = SHALE__MAP_CAS_REQUEST__INIT;
    Shale__Session ses = SHALE__SESSION__INIT;
    c.expect_epoch = expect;
    c.map = (Shale__ClusterMap *)map;
    if (client_id != 0) {
        ses.client_id = client_id;
        ses.seq = seq;
        c.session = &ses;
    }
    c.note = "test";
    c.has_force = 1; /* tests reassign slots directly (no data to move) */
    c.force = 1;
    size_t len = shale__map_cas_request__get_packed_size(&c);
    uint8_t *buf = malloc(len ? len : 1);
    shale__map_cas_request__pack(&c, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    char m[SHALE_ERRMSG_LEN];
    uint64_t e = 0;
    int rv = shale_call(cl, SHALE_MSG_MAP_CAS_REQ, SHALE_MSG_MAP_RESP, buf, len, &resp, &rlen, m,
                        &e);
    free(buf);
    shale_close(cl);
    if (epoch != NULL)
        *epoch = e;
    if (msg != NULL)
        snprintf(msg, 256, "%s", m);
    if (rv != SHALE_OK)
        return rv;
    Shale__MapResponse *r = shale__map_response__unpack(NULL, rlen, resp);
    free(resp);
    if (r == NULL)
        return SHALE_EPROTO;
    if (out != NULL && r->map != NULL)
        *out = cmap_copy(r->map);
    shale__map_response__free_unpacked(r, NULL);
    return SHALE_OK;
}

int th_cluster_init(th_cluster_t *c, uint32_t slots, int timeout_ms)
{
    Shale__ClusterMap m = SHALE__CLUSTER_MAP__INIT;
    Shale__ShardGroup *groups[TH_MAX_GROUPS];
    uint64_t gids[TH_MAX_GROUPS];
    for (int g = 0; g < c->ngroups; g++) {
        groups[g] = th_shard_group(&c->groups[g], (uint64_t)g + 1);
        gids[g] = (uint64_t)g + 1;
    }
    m.has_slots = 1;
    m.slots = slots;
    m.n_groups = (size_t)c->ngroups;
    m.groups = groups;
    m.n_slot_group = slots;
    m.slot_group = calloc(slots, sizeof(uint64_t));
    cmap_assign_even(m.slot_group, slots, gids, (size_t)c->ngroups);
    char msg[256];
    int rv = th_map_cas(c->meta.addrs, 0, &m, 0, 0, NULL, NULL, msg);
    free(m.slot_group);
    for (int g = 0; g < c->ngroups; g++)
        th_shard_group_free(groups[g]);
    if (rv != SHALE_OK) {
        fprintf(stderr, "harness: cluster init failed: %s\n", msg);
        return -1;
    }
    return th_cluster_wait_epoch(c, 1, timeout_ms);
}

int th_cluster_wait_epoch(th_cluster_t *c, uint64_t e, int timeout_ms)
{
    long long end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
        int behind = 0;
        /* g == -1: the meta group (its map epoch); then every shard group. */
        for (int g = -1; g < c->ngroups; g++)
            for (int i = 0; i < (g < 0 ? c->meta.n : c->groups[g].n); i++) {
                th_node_t *n = g < 0 ? &c->meta.nodes[i] : &c->groups[g].nodes[i];
                Shale__StatusResponse *st;
                if (n->pid <= 0)
                    continue;
                if (th_node_status(n, &st) != 0) {
                    behind = 1;
                    continue;
                }
                if (!st->has_map_epoch || st->map_epoch < e)
                    behind = 1;
                shale__status_response__free_unpacked(st, NULL);
            }
        if (!behind)
            return 0;
        usleep(50 * 1000);
    }
    return -1;
}

void th_cluster_stop(th_cluster_t *c)
{
    for (int g = 0; g < c->ngroups; g++)
        th_group_stop_all(&c->groups[g]);
    th_group_stop_all(&c->meta);
}

void th_cluster_teardown(th_cluster_t *c, char **base, th_node_t *const nodes[])
{
    if (*base == NULL)
        return;
    for (size_t i = 0; nodes != NULL && nodes[i] != NULL; i++)
        if (nodes[i]->pid > 0)
            th_node_stop(nodes[i], SIGTERM);
    th_cluster_stop(c);
    if (getenv("SHALE_KEEP_TMP") == NULL)
        th_rmrf(*base);
    free(*base);
    *base = NULL;
}

int th_cluster_router(th_node_t *router, const th_cluster_t *c, const char *host,
                      const char *base)
{
    th_node_init(router, 1, host, base);
    snprintf(router->log, sizeof(router->log), "%s/router.log", base);
    const char *argv[] = {"--listen",     router->addr, "--meta", c->meta.addrs,
                          "--timeout-ms", "10000",      NULL};
    return th_router_start(router, argv, 1);
}

shale_client_t *th_connect(const char *addrs, uint32_t timeout_ms, int wait_ms, char *err)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = timeout_ms;
    shale_client_t *c = NULL;
    err[0] = '\0';
    long long end = th_now_ms() + wait_ms;
    for (;;) {
        if (shale_connect(addrs, &o, &c, err) == SHALE_OK)
            return c;
        if (th_now_ms() >= end)
            return NULL;
        usleep(100 * 1000);
    }
}
