/* Observability of shaled: the metrics it keeps (registry in metrics.c),
 * the HTTP endpoint (--http, http.c) serving /metrics and /health, and the
 * readiness rule. docs/observability.md lists every metric.
 *
 * Rules:
 *  - counting on the request path is an array increment plus one clock read
 *    per answered request; everything that mirrors state owned elsewhere
 *    (Raft indexes, ownership, RocksDB, guard counters) is read at scrape
 *    time by collect(), never maintained on the hot path;
 *  - the registry exists whether or not --http is set (counting is cheap,
 *    and it keeps call sites unconditional); only the listener is optional;
 *  - every answered request is logged with its trace id (Route.trace_id)
 *    at debug, and at info/warn when it took --slow-ms or longer
 *    (log_request_level); the op and outcome words are the metric labels;
 *  - ready (/health 200) means: running, storage healthy, Raft knows a
 *    leader of this group, and a data node of a cluster has applied a slot
 *    ownership record. Otherwise 503 with the first reason that applies. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "obs_http.h"
#include "log.h"
#include "metrics.h"
#include "server.h"

#define OPS "get|put|del|cas|mget|mput|map_get|map_cas|status|admin|txn|scan|watch|other|clock|check"
enum { OP_MAP_GET = 6, OP_TXN = 10, OP_SCAN = 11, OP_WATCH = 12, OP_OTHER = 13, OP_CLOCK = 14,
       OP_CHECK = 15 };
/* Outcome i (1..19) is SHALE_E* code -i (shale.proto ErrorCode, lower case). */
#define OUTCOMES                                                                                   \
    "ok|not_leader|wrong_group|timeout|unavailable|too_large|invalid|stale_too_old|cas_failed|"    \
    "not_found|protocol|cluster_mismatch|session_expired|storage|overloaded|slot_moving|"    \
    "unauthenticated|permission_denied|crossslot|compacted|other"
enum { OUTCOME_OTHER = 20 };

#define GUARD_KINDS                                                                                \
    "votes_rewritten|candidacy_deferred|votes_held|timeout_now_dropped|timeout_now_held|"          \
    "acks_held|acks_clamped|noops|uv_ops_deferred|double_callbacks|barriers_failed"

static const double snapshot_buckets[] = {0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};

struct obs {
    met_registry_t *reg;
    obs_http_t ep; /* /metrics and /health (obs_http.h) */
    uint64_t last_leader;
    met_family_t *requests, *duration, *leader_changes, *app_entries, *app_bytes;
    met_family_t *snapshots, *snap_duration;
    met_family_t *term, *commit, *applied, *last_index, *is_leader, *leader_known, *lag;
    met_family_t *staleness, *applied_entries, *applied_mutations, *conns, *pending, *inflight;
    met_family_t *expired_keys;
    met_family_t *own_epoch, *slots_owned, *map_epoch, *map_watchers, *guard, *ready;
    met_family_t *sst, *memtable, *pending_compaction, *cache_usage, *cache_capacity, *keys;
    met_family_t *live_data;
    met_family_t *mig_bytes, *mig_keys, *mig_active;
    met_family_t *logins, *denied;
    met_family_t *clk_offset, *clk_unc, *clk_age, *clk_steps, *clk_samples;
    met_family_t *clk_group, *clk_corrected, *clk_handoffs;
    met_family_t *chk_index, *chk_state, *chk_duration, *chk_done, *chk_rows, *chk_total;
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
    case SHALE_MSG_MAP_GET_REQ:
        return OP_MAP_GET;
    case SHALE_MSG_MAP_CAS_REQ:
        return 7;
    case SHALE_MSG_STATUS_REQ:
        return 8;
    case SHALE_MSG_MEMBER_ADD_REQ:
    case SHALE_MSG_MEMBER_REMOVE_REQ:
    case SHALE_MSG_LEADER_TRANSFER_REQ:
        return 9;
    case SHALE_MSG_TXN_REQ:
        return OP_TXN;
    case SHALE_MSG_SCAN_REQ:
        return OP_SCAN;
    case SHALE_MSG_WATCH_REQ:
        return OP_WATCH;
    case SHALE_MSG_CLOCK_REQ:
        return OP_CLOCK;
    case SHALE_MSG_CHECK_REQ:
        return OP_CHECK;
    default:
        return OP_OTHER;
    }
}

static int outcome_index(int code)
{
    if (code == 0)
        return 0;
    if (code <= -1 && code >= -19)
        return -code;
    return OUTCOME_OTHER;
}

/* Whether a request of op may count as slow: MAP_GET and WATCH long-polls
 * wait by design, and snapshot streams (other) last as long as the transfer. */
static int op_can_be_slow(int op)
{
    return op != OP_MAP_GET && op != OP_WATCH && op != OP_OTHER;
}

void obs_request_done(shaled_t *s, const sreq_t *r)
{
    struct obs *o = s->obs;
    if (o == NULL)
        return;
    int op = op_index(r->type);
    int oc = outcome_index(r->code);
    met_add(o->requests, met_series_at(o->requests, (size_t)op, (size_t)oc), 1);
    uint64_t now = shaled_now_us();
    uint64_t us = now > r->received_us ? now - r->received_us : 0;
    met_observe(o->duration, (size_t)op, (double)us / 1e6);

    double ms = (double)us / 1e3;
    int expected = r->code == 0 || r->code == SHALE_ECASFAILED || r->code == SHALE_ENOTFOUND;
    int level = log_request_level(ms, op_can_be_slow(op) ? s->cfg.slow_ms : 0, expected);
    if (level < log_get_level())
        return;
    char trace[LOG_TRACE_LEN], slot[8] = "-";
    if (r->has_slot)
        snprintf(slot, sizeof(slot), "%u", (unsigned)r->slot);
    log_write(level, level == LOG_DEBUG ? "request" : "slow request",
              " trace=%s op=%s slot=%s outcome=%s ms=%.3f peer=%s id=%llu",
              log_trace_str(r->trace, trace), met_label_value(o->requests, 0, (size_t)op), slot,
              met_label_value(o->requests, 1, (size_t)oc), ms, conn_peer(r->conn),
              (unsigned long long)r->id);
}

void obs_turn(shaled_t *s)
{
    struct obs *o = s->obs;
    if (o == NULL || !s->raft_inited || s->raft_closed)
        return;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&s->raft, &lid, &laddr);
    if (lid != 0 && lid != o->last_leader) {
        o->last_leader = lid;
        met_add(o->leader_changes, 0, 1);
    }
}

void obs_appended(shaled_t *s, unsigned n, uint64_t bytes)
{
    struct obs *o = s->obs;
    if (o == NULL)
        return;
    met_add(o->app_entries, 0, n);
    met_add(o->app_bytes, 0, bytes);
}

void obs_snapshot(shaled_t *s, int install, uint64_t us)
{
    struct obs *o = s->obs;
    if (o == NULL)
        return;
    met_add(o->snapshots, install ? 1 : 0, 1);
    met_observe(o->snap_duration, install ? 1 : 0, (double)us / 1e6);
}

void obs_migration(shaled_t *s, int source, uint64_t bytes, uint64_t keys)
{
    struct obs *o = s->obs;
    if (o == NULL || o->mig_bytes == NULL)
        return;
    met_add(o->mig_bytes, source ? 0 : 1, bytes);
    met_add(o->mig_keys, source ? 0 : 1, keys);
}

int obs_health(shaled_t *s, char *why, size_t n)
{
    if (s->stopping) {
        snprintf(why, n, "shutting down");
        return 0;
    }
    if (s->storage_failed) {
        snprintf(why, n, "storage failed: %s", s->storage_err);
        return 0;
    }
    if (!s->raft_inited || s->raft_closed) {
        snprintf(why, n, "raft is not running");
        return 0;
    }
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&s->raft, &lid, &laddr);
    if (lid == 0) {
        static const char *const states[] = {"unavailable", "follower", "candidate", "leader"};
        int st = raft_state(&s->raft);
        snprintf(why, n, "no known leader of this group (raft state %s, term %llu)",
                 st >= 0 && st <= 3 ? states[st] : "?", (unsigned long long)s->raft.current_term);
        return 0;
    }
    if (clock_problem(s, why, n))
        return 0; /* "clock: ...": may not serve STALE reads (clock_ping.c) */
    if (strcmp(s->cfg.mode, "data") == 0 && s->cfg.group != 0 && s->own == NULL) {
        snprintf(why, n,
                 "no slot ownership record applied yet (group %llu; is the cluster "
                 "map initialised?)",
                 (unsigned long long)s->cfg.group);
        return 0;
    }
    return 1;
}

static void collect(void *arg)
{
    shaled_t *s = arg;
    struct obs *o = s->obs;
    char why[300];
    met_set(o->ready, 0, obs_health(s, why, sizeof(why)));
    if (s->raft_inited && !s->raft_closed) {
        uint64_t applied = store_applied_index(s->store);
        met_set(o->term, 0, (double)s->raft.current_term);
        met_set(o->commit, 0, (double)s->raft.commit_index);
        met_set(o->applied, 0, (double)applied);
        met_set(o->last_index, 0, (double)raft_last_index(&s->raft));
        met_set(o->is_leader, 0, raft_node_is_leader(s));
        raft_id lid = 0;
        const char *laddr = NULL;
        raft_leader(&s->raft, &lid, &laddr);
        met_set(o->leader_known, 0, lid != 0);
        met_set(o->lag, 0,
                s->raft.commit_index > applied ? (double)(s->raft.commit_index - applied) : 0);
    }
    if (s->applied_leader_ms == 0) {
        met_set(o->staleness, 0, NAN);
    } else {
        uint64_t now = shaled_now_ms();
        met_set(o->staleness, 0,
                now > s->applied_leader_ms ? (double)(now - s->applied_leader_ms) / 1e3 : 0);
    }
    clk_view_t cv;
    int have = clock_view_now(s, &cv) == 0;
    met_set(o->clk_offset, 0, have ? (double)cv.offset_us / 1e6 : NAN);
    met_set(o->clk_unc, 0, have ? (double)cv.uncertainty_us / 1e6 : NAN);
    met_set(o->clk_age, 0, have ? (double)cv.age_us / 1e6 : NAN);
    met_counter_set(o->clk_steps, 0, s->clk.steps);
    met_counter_set(o->clk_samples, 0, s->clk.samples_taken);
    met_counter_set(o->clk_samples, 1, s->clk.samples_rejected);
    int64_t glo, ghi;
    const char *gsrc;
    int gknown = clock_group_view(s, &glo, &ghi, &gsrc) == 0;
    met_set(o->clk_group, 0, gknown ? (double)glo / 1e6 : NAN);
    met_set(o->clk_group, 1, gknown ? (double)ghi / 1e6 : NAN);
    met_counter_set(o->clk_corrected, 0, s->clk_stamps_corrected);
    met_counter_set(o->clk_handoffs, 0, s->clk_handoffs);
    met_counter_set(o->logins, 0, s->login.ok);
    met_counter_set(o->logins, 1, s->login.failed);
    met_counter_set(o->logins, 2, s->login.throttled);
    met_counter_set(o->logins, 3, s->login.overloaded);
    met_counter_set(o->denied, 0, s->auth_denied);
    met_counter_set(o->applied_entries, 0, s->applied_entries);
    met_counter_set(o->applied_mutations, 0, s->applied_mutations);
    met_counter_set(o->expired_keys, 0, s->expired_keys);
    if (o->chk_index != NULL) {
        check_metrics_t cm;
        check_metrics(s, &cm);
        met_set(o->chk_index, 0, (double)cm.index);
        met_set(o->chk_state, 0, (double)cm.state);
        met_set(o->chk_duration, 0, (double)cm.duration_ms / 1e3);
        met_set(o->chk_done, 0, cm.done_unix_ms ? (double)cm.done_unix_ms / 1e3 : NAN);
        met_set(o->chk_rows, 0, (double)cm.rows);
        met_counter_set(o->chk_total, 0, cm.completed);
        met_counter_set(o->chk_total, 1, cm.failed);
    }
    met_set(o->conns, 0, (double)s->nconns);
    met_set(o->pending, 0, (double)s->npending);
    met_set(o->inflight, 0, (double)s->ninflight);
    if (o->own_epoch != NULL) {
        met_set(o->own_epoch, 0, s->own != NULL ? (double)s->own->epoch : 0);
        met_set(o->slots_owned, 0, (double)own_count(s));
    }
    if (o->mig_active != NULL) {
        size_t out = 0, in = 0;
        for (size_t i = 0; s->own != NULL && i < s->own->n_migrations; i++) {
            if (s->own->migrations[i]->from_group == s->cfg.group)
                out++;
            else
                in++;
        }
        met_set(o->mig_active, 0, (double)out);
        met_set(o->mig_active, 1, (double)in);
    }
    if (o->map_epoch != NULL) {
        met_set(o->map_epoch, 0, s->map != NULL ? (double)s->map->epoch : 0);
        met_set(o->map_watchers, 0, (double)s->nmap_watchers);
    }
    const rg_stats_t *g = &s->guard.stats;
    const uint64_t gv[] = {
        g->votes_rewritten,  g->candidacy_deferred, g->votes_held,     g->timeout_now_dropped,
        g->timeout_now_held, g->acks_held,          g->acks_clamped,   g->noops,
        g->uv_ops_deferred,  g->double_callbacks,   g->barriers_failed};
    for (size_t i = 0; i < sizeof(gv) / sizeof(gv[0]); i++)
        met_counter_set(o->guard, i, gv[i]);
    if (s->store != NULL && !s->storage_failed) {
        uint64_t v = 0, cap = 0;
        met_set(o->sst, 0,
                store_property(s->store, "rocksdb.total-sst-files-size", &v) == 0 ? (double)v
                                                                                  : NAN);
        met_set(o->live_data, 0,
                store_property(s->store, "rocksdb.estimate-live-data-size", &v) == 0 ? (double)v
                                                                                     : NAN);
        met_set(o->memtable, 0,
                store_property(s->store, "rocksdb.cur-size-all-mem-tables", &v) == 0 ? (double)v
                                                                                     : NAN);
        met_set(o->pending_compaction, 0,
                store_property(s->store, "rocksdb.estimate-pending-compaction-bytes", &v) == 0
                    ? (double)v
                    : NAN);
        met_set(o->keys, 0, (double)store_estimate_keys(s->store));
        store_block_cache(s->store, &v, &cap);
        met_set(o->cache_usage, 0, (double)v);
        met_set(o->cache_capacity, 0, (double)cap);
    }
}

int obs_init(shaled_t *s)
{
    struct obs *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return -1;
    s->obs = o;
    met_registry_t *r = o->reg = met_registry_new();
    if (r == NULL)
        return -1;
    o->requests = met_counter(r, "shale_requests_total",
                              "Client requests answered, by operation and outcome (ok or the "
                              "error code).",
                              "op=" OPS ",outcome=" OUTCOMES);
    o->duration = met_histogram(r, "shale_request_duration_seconds",
                                "Time from a request's arrival to its answer, by operation.",
                                "op=" OPS, met_latency_buckets, MET_LATENCY_NBUCKETS);
    o->term = met_gauge(r, "shale_raft_term", "Current Raft term of this node.", NULL);
    o->commit =
        met_gauge(r, "shale_raft_commit_index", "Highest Raft index known committed.", NULL);
    o->applied =
        met_gauge(r, "shale_raft_applied_index", "Highest Raft index applied to storage.", NULL);
    o->last_index =
        met_gauge(r, "shale_raft_last_index", "Last index in this node's Raft log.", NULL);
    o->is_leader =
        met_gauge(r, "shale_raft_is_leader", "1 when this node is the group leader.", NULL);
    o->leader_known = met_gauge(r, "shale_raft_leader_known",
                                "1 when this node knows a leader of its group.", NULL);
    o->leader_changes =
        met_counter(r, "shale_raft_leader_changes_total",
                    "Times this node saw a new leader (the first one included).", NULL);
    o->app_entries = met_counter(r, "shale_raft_entries_appended_total",
                                 "Entries appended to this node's Raft log.", NULL);
    o->app_bytes =
        met_counter(r, "shale_raft_bytes_appended_total",
                    "Payload bytes of the entries appended to this node's Raft log.", NULL);
    o->applied_entries = met_counter(r, "shale_raft_entries_applied_total",
                                     "Raft entries applied by this process.", NULL);
    o->applied_mutations = met_counter(r, "shale_mutations_applied_total",
                                       "Client mutations applied by this process.", NULL);
    o->expired_keys =
        met_counter(r, "shale_keys_expired_total",
                    "Keys whose TTL ran out, deleted by EXPIRE entries applied here.", NULL);
    o->snapshots = met_counter(r, "shale_snapshots_total",
                               "Raft snapshots taken, and installed from a peer's checkpoint.",
                               "kind=take|install");
    o->snap_duration = met_histogram(r, "shale_snapshot_duration_seconds",
                                     "Time to take a snapshot (storage sync) or install one "
                                     "(checkpoint transfer and swap).",
                                     "kind=take|install", snapshot_buckets,
                                     sizeof(snapshot_buckets) / sizeof(snapshot_buckets[0]));
    o->lag = met_gauge(r, "shale_replica_lag_entries",
                       "Committed entries this node has not applied yet.", NULL);
    o->staleness = met_gauge(r, "shale_replica_staleness_seconds",
                             "Age of the newest leader timestamp applied here (the STALE-read "
                             "bound); NaN until one is applied.",
                             NULL);
    o->clk_offset = met_gauge(r, "shale_clock_offset_seconds",
                              "This member's clock offset to its group leader (leader minus "
                              "local realtime), from the best CLOCK round trip in the window; "
                              "NaN on the leader and while no sample is in the window.", NULL);
    o->clk_unc = met_gauge(r, "shale_clock_uncertainty_seconds",
                           "Uncertainty of shale_clock_offset_seconds: RTT/2 plus drift for "
                           "the sample's age.", NULL);
    o->clk_age = met_gauge(r, "shale_clock_sample_age_seconds",
                           "Age of the offset sample in use.", NULL);
    o->clk_steps = met_counter(r, "shale_clock_steps_total",
                               "Steps of the local realtime clock against the monotonic clock "
                               "(each drops the offset samples).", NULL);
    o->clk_samples = met_counter(r, "shale_clock_samples_total",
                                 "CLOCK round trips kept as offset samples, and refused.",
                                 "result=kept|refused");
    o->clk_group = met_gauge(r, "shale_clock_group_offset_seconds",
                             "On the leader: the range its group's clock minus its own lies in "
                             "(the median over the voters' reported offsets, voters without a "
                             "report taken as anything; or the previous leader's clock just "
                             "after an election); NaN elsewhere and while too few voters "
                             "reported.", "bound=low|high");
    o->clk_corrected = met_counter(r, "shale_clock_stamps_corrected_total",
                                   "Entries this leader stamped behind its own clock because its "
                                   "group measured it ahead by more than the max offset.", NULL);
    o->clk_handoffs = met_counter(r, "shale_clock_handoffs_total",
                                  "Leadership handed over because this leader's clock was off "
                                  "its group's by more than the max offset.", NULL);
    o->conns = met_gauge(r, "shale_client_connections", "Open client connections.", NULL);
    o->pending = met_gauge(r, "shale_pending_mutations",
                           "Mutations queued for the next Raft entry (leader).", NULL);
    o->inflight = met_gauge(r, "shale_inflight_entries",
                            "Raft entries proposed and not yet applied (leader).", NULL);
    if (strcmp(s->cfg.mode, "meta") == 0) {
        o->map_epoch = met_gauge(r, "shale_map_epoch",
                                 "Epoch of the cluster map applied on this meta node.", NULL);
        o->map_watchers = met_gauge(r, "shale_map_watchers",
                                    "MAP_GET long-polls waiting on this meta node.", NULL);
    } else {
        o->chk_index = met_gauge(r, "shale_check_last_index",
                                 "Raft index of the last consistency check applied here (0: none "
                                 "since this process started).", NULL);
        o->chk_state = met_gauge(r, "shale_check_last_state",
                                 "State of that check here: 0 none, 1 running, 2 done, 3 failed.",
                                 NULL);
        o->chk_duration = met_gauge(r, "shale_check_last_duration_seconds",
                                    "Time this member took to sum its rows for the last check.",
                                    NULL);
        o->chk_done = met_gauge(r, "shale_check_last_timestamp_seconds",
                                "Unix time the last check ended here (NaN: none yet).", NULL);
        o->chk_rows = met_gauge(r, "shale_check_last_rows",
                                "Rows (data and sessions) the last check summed here.", NULL);
        o->chk_total = met_counter(r, "shale_checks_total",
                                   "Consistency checks this member finished, and failed.",
                                   "result=done|failed");
    }
    if (strcmp(s->cfg.mode, "meta") != 0 && s->cfg.group != 0) {
        o->own_epoch =
            met_gauge(r, "shale_ownership_epoch",
                      "Map epoch of the slot ownership record applied in this group.", NULL);
        o->slots_owned = met_gauge(r, "shale_slots_owned",
                                   "Slots this node's group owns at its ownership epoch.", NULL);
        o->mig_bytes = met_counter(r, "shale_migration_bytes_total",
                                   "Raw record bytes of slot migrations: exported by this "
                                   "node (source) or applied from imports (target).",
                                   "role=source|target");
        o->mig_keys = met_counter(r, "shale_migration_keys_total",
                                  "Records (keys, changes, sessions) of slot migrations "
                                  "exported (source) or applied (target) here.",
                                  "role=source|target");
        o->mig_active = met_gauge(r, "shale_migrations_active",
                                  "Migrations in this group's applied ownership record, by "
                                  "this group's side.", "role=source|target");
    }
    o->guard = met_counter(r, "shale_raft_guard_events_total",
                           "Interventions of the libraft 0.15 safety guard (docs/raft-safety.md).",
                           "kind=" GUARD_KINDS);
    o->logins = met_counter(r, "shale_auth_logins_total",
                            "HELLO credentials checked (--auth): ok, failed (wrong password, "
                            "unknown user, malformed), throttled (the source address had too "
                            "many failures: refused without checking), overloaded (queue full).",
                            "outcome=ok|failed|throttled|overloaded");
    o->denied = met_counter(r, "shale_auth_denied_total",
                            "Requests refused because the user's role or key prefix does not "
                            "allow them, or there is no user (--auth).",
                            NULL);
    o->ready = met_gauge(r, "shale_ready", "1 when /health answers ready.", NULL);
    o->sst = met_gauge(r, "shale_rocksdb_sst_bytes", "Total size of RocksDB SST files.", NULL);
    o->live_data =
        met_gauge(r, "shale_rocksdb_live_data_bytes", "RocksDB estimate of live data size.", NULL);
    o->memtable =
        met_gauge(r, "shale_rocksdb_memtable_bytes", "Size of all RocksDB memtables.", NULL);
    o->pending_compaction = met_gauge(r, "shale_rocksdb_pending_compaction_bytes",
                                      "RocksDB estimate of bytes compaction has to rewrite.", NULL);
    o->cache_usage = met_gauge(r, "shale_rocksdb_block_cache_usage_bytes",
                               "Bytes held by the RocksDB block cache.", NULL);
    o->cache_capacity = met_gauge(r, "shale_rocksdb_block_cache_capacity_bytes",
                                  "Capacity of the RocksDB block cache.", NULL);
    o->keys = met_gauge(r, "shale_rocksdb_estimated_keys",
                        "RocksDB estimate of the number of keys (data and sessions).", NULL);
    if (o->requests == NULL || o->duration == NULL || o->keys == NULL || o->guard == NULL ||
        met_register_process(r) != 0 || met_on_collect(r, collect, s) != 0)
        return -1;
    return 0;
}

static int ready_cb(void *arg, char *why, size_t whylen)
{
    return obs_health(arg, why, whylen);
}

int obs_start(shaled_t *s, char *err, size_t errlen)
{
    if (s->cfg.http[0] == '\0' || s->obs == NULL)
        return 0;
    obs_http_t *ep = &s->obs->ep;
    ep->reg = s->obs->reg;
    ep->ready = ready_cb;
    ep->arg = s;
    if (obs_http_start(ep, s->loop, s->cfg.http, s->cfg.listen, err, errlen) != 0)
        return -1;
    log_info("serving metrics", " http=%s paths=/metrics,/health", ep->addr);
    return 0;
}

const char *obs_http_addr(const shaled_t *s)
{
    return s->obs != NULL ? obs_http_bound(&s->obs->ep) : NULL;
}

void obs_stop(shaled_t *s)
{
    if (s->obs != NULL)
        obs_http_stop(&s->obs->ep);
}

void obs_free(shaled_t *s)
{
    if (s->obs == NULL)
        return;
    met_registry_free(s->obs->reg);
    free(s->obs);
    s->obs = NULL;
}
