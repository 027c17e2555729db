/* Test harness for whole clusters: a meta group (shaled --mode meta) plus
 * shard groups (shaled --group G --meta ...), on 127.0.0.x, each process
 * started and stopped by PID (harness.h); and blocking cluster-map calls
 * (MAP_GET / MAP_CAS through libshale).
 *
 * Layout from first_host F: meta nodes on 127.0.0.F..F+2, group g (1-based)
 * on 127.0.0.(F + 10*g) .. +voters-1. Data under base/meta, base/g<g>. */
#ifndef SHALE_TEST_HARNESS_CLUSTER_H
#define SHALE_TEST_HARNESS_CLUSTER_H

#include <stdint.h>

#include "harness.h"
#include "shale.pb-c.h"

#define TH_MAX_GROUPS 4

typedef struct th_cluster {
    char base[512];
    th_group_t meta;
    int ngroups;
    th_group_t groups[TH_MAX_GROUPS]; /* groups[g-1] is group g */
} th_cluster_t;

/* Start meta (3 voters) and ngroups groups of `voters` voters each, wait
 * for every leader. extra: flags for every data node (may be NULL). The
 * map is not created: th_cluster_init does that. 0 or -1. */
int th_cluster_start(th_cluster_t *c, int ngroups, int voters, int first_host, const char *base,
                     const char *const *extra);
/* The same, with meta_extra flags for every meta node (may be NULL). */
int th_cluster_start_ex(th_cluster_t *c, int ngroups, int voters, int first_host,
                        const char *base, const char *const *extra,
                        const char *const *meta_extra);
/* Create the map (MAP_CAS epoch 0): every group, slots split evenly; then
 * wait until every group's leader applied ownership at epoch 1. */
int th_cluster_init(th_cluster_t *c, uint32_t slots, int timeout_ms);
/* Wait until every running node — meta members (map epoch) and every
 * group's members (ownership epoch) — reports map_epoch >= e. Any meta
 * member answers MAP_GET, so a test reading the map after a change waits
 * here first. */
int th_cluster_wait_epoch(th_cluster_t *c, uint64_t e, int timeout_ms);
void th_cluster_stop(th_cluster_t *c);
/* The end of a test's cluster: stop each node of `nodes` that runs (a
 * NULL-terminated list, may be NULL: routers, replicas, spare members the
 * test started itself), then the cluster, then remove *base (kept when
 * SHALE_KEEP_TMP is set, for a failure's logs), free it and set it NULL.
 * Nothing to do when *base is NULL: safe from a fixture's teardown after a
 * setup that failed. */
void th_cluster_teardown(th_cluster_t *c, char **base, th_node_t *const nodes[]);

/* A router in front of c: router is set up here (id 1 on host, its log
 * base/router.log) and started with --listen, --meta c's meta group,
 * --timeout-ms 10000 and the harness's auth. 0 or -1. */
int th_cluster_router(th_node_t *router, const th_cluster_t *c, const char *host,
                      const char *base);

/* A client of addrs (th_client_options; request deadline timeout_ms),
 * trying again every 100 ms for up to wait_ms (0: one attempt). NULL with
 * the last error in err (SHALE_ERRMSG_LEN bytes) when it never connected. */
struct shale_client *th_connect(const char *addrs, uint32_t timeout_ms, int wait_ms, char *err);

/* A ShardGroup of the map built from a harness group (malloc'd; free with
 * th_shard_group_free). */
Shale__ShardGroup *th_shard_group(const th_group_t *g, uint64_t id);
void th_shard_group_free(Shale__ShardGroup *g);

/* MAP_GET against the meta addresses: *out (shale__cluster_map__free_unpacked)
 * or a SHALE_E* code. */
int th_map_get(const char *meta_addrs, uint64_t known_epoch, uint32_t wait_ms,
               Shale__ClusterMap **out);
/* The newest map any of c's meta members answers (MAP_GET without waiting
 * at each; a member that does not answer is skipped), or NULL when none
 * answers. Free with cmap_free. */
Shale__ClusterMap *th_map_newest(const th_cluster_t *c);
/* MAP_CAS: 0 with *out the new map (may be NULL), or a SHALE_E* code; *epoch
 * (may be NULL) gets the epoch an error carried, msg (may be NULL, 256
 * bytes) its message. client_id/seq 0: no session. */
int th_map_cas(const char *meta_addrs, uint64_t expect, const Shale__ClusterMap *map,
               uint64_t client_id, uint64_t seq, Shale__ClusterMap **out, uint64_t *epoch,
               char *msg);

#endif
