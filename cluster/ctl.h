/* shalectl internals: the parsed command line, the verb table's row, exit
 * codes and the helpers the ctl_*.c files share.
 *
 * The split:
 *   shalectl.c    command line, verb table, --help, main
 *   ctl_data.c    data verbs: get put del cas txn scan watch (through a router or a group)
 *   ctl_node.c    talking to nodes: STATUS probes (one node, a group's leader,
 *                 many nodes at once) and the direct group verbs of --addr
 *                 (status, member add/remove, leader transfer)
 *   ctl_map.c     the cluster map: MAP_GET, MAP_CAS with retries on a
 *                 conflict, map edits, the map and slot verbs, and slot
 *                 assign --force (the repair that skips migrations)
 *   ctl_admin.c   cluster verbs through the meta group: init, group
 *                 add/remove, replica add/remove, leader transfer, status
 *   ctl_migrate.c online resharding: slot move, rebalance, migration
 *                 status/abort/resume, the drain of group remove
 *                 (rebalance.c is its pure planner)
 *   ctl_top.c     top: the live view from every process's /metrics
 *   ctl_check.c   check: the replica consistency check (per-slot checksums of
 *                 every member at one index of the group's log, compared)
 *   ctl_user.c    users and roles: user add/remove/list/passwd (the meta
 *                 group's user table; passwords hashed here)
 *   ctl_backup.c  backup, backup verify/release, restore (backup_manifest.c
 *                 is its file formats; the checkpoints come through
 *                 snapshot_fetch.c, SNAP_FETCH)
 *
 * Never speaks the wire protocol itself: every request goes through libshale
 * (shale_call for the messages that have no typed call); the observability
 * endpoints (/health, /metrics) are read with httpc.h and prom.h. */
#ifndef SHALE_CTL_H
#define SHALE_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shale.h"
#include "shale.pb-c.h"

/* Exit codes (the table is printed by --help). */
#define EXIT_OKAY 0
#define EXIT_FAIL 1        /* key not found, data CAS mismatch, any other error */
#define EXIT_USAGE 2       /* wrong arguments: nothing was sent */
#define EXIT_UNREACHABLE 3 /* could not reach the cluster / no leader / timed out */
#define EXIT_REFUSED 4     /* the change was refused (map conflict, precondition) */
#define EXIT_DIVERGED 5    /* check: members of a group hold different data */

#define CTL_MAX_POS 64
#define CTL_MAX_FLAGS 8
#define CTL_MAX_LIST 32

/* Defaults: the layout of scripts/cluster.sh. */
#define CTL_DEFAULT_META "127.0.0.1:7001,127.0.0.2:7001,127.0.0.3:7001"
#define CTL_DEFAULT_ROUTER "127.0.0.100:7000"
/* Probes of many nodes (status) use this deadline unless --timeout says. */
#define CTL_PROBE_TIMEOUT_MS 2000

/* A verb flag: --name, followed by a value when arg names one. Repeatable
 * flags collect their values in cmd_t.list, in command-line order, with
 * cmd_t.list_flag naming each value's flag. */
typedef struct flag_spec {
    const char *name;
    const char *arg; /* NULL: takes no value */
    const char *help;
    int repeat;
} flag_spec_t;

/* Where a verb talks to. main() connects for CTL_DATA and CTL_NODE; a
 * CTL_META verb opens its own connections (meta group, then groups). */
typedef enum ctl_target {
    CTL_DATA, /* --router, --addr, $SHALE_ROUTER, $SHALE_ADDR, the local router */
    CTL_NODE, /* one group directly: --addr or $SHALE_ADDR */
    CTL_META, /* the meta group: --meta, $SHALE_META, the local meta group */
} ctl_target_t;

typedef struct cmd {
    const char *addr;    /* --addr as given (NULL: not given) */
    const char *router;  /* --router as given */
    const char *meta;    /* --meta, else $SHALE_META, else the default */
    uint32_t timeout_ms; /* --timeout (0: not given) */
    const char *cluster_id;
    /* TLS (--tls-*, else $SHALE_TLS_*; NULL: plain TCP): every connection
     * to a node, a router or the meta group. */
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
    /* --user (else $SHALE_USER) and the first line of --password-file (else
     * $SHALE_PASSWORD_FILE): the credential every connection presents to a
     * process started with --auth. password: malloc'd, wiped at exit. */
    const char *user;
    const char *password_file;
    char *password;
    size_t password_len;
    int json;
    const struct verb *verb;
    const char *pos[CTL_MAX_POS];
    int npos;
    /* Verb flags, indexed like verb->flags; set[i] says it was given. */
    int set[CTL_MAX_FLAGS];
    const char *val[CTL_MAX_FLAGS];
    const char *list[CTL_MAX_LIST]; /* every value of the repeatable flags */
    int list_flag[CTL_MAX_LIST];    /* the flag (index) of each */
    int nlist;
} cmd_t;

typedef struct verb {
    const char *name;
    const char *synopsis;
    const char *help;
    int min_pos, max_pos;
    const flag_spec_t *flags; /* NULL-name terminated, may be NULL */
    ctl_target_t target;
    /* Argument checks beyond counts; a message in err makes it exit 2. */
    int (*check)(const cmd_t *cmd, char *err, size_t errlen);
    /* c: the connected client (NULL for CTL_META). Returns the exit code. */
    int (*run)(shale_client_t *c, const cmd_t *cmd);
    int with_router; /* a CTL_META verb that also looks at --router (top) */
} verb_t;

/* ---- Profile file (ctl_profile.c) -------------------------------------------*/

/* Load the profile file (file NULL: ~/.config/shale/shalectl.conf when it
 * exists) and its section profile (NULL: the common lines only) into the
 * $SHALE_* variables that are not set. 0 ok; -1 with err (exit 2). */
int ctl_profile_load(const char *file, const char *profile, char *err, size_t errlen);

/* ---- Helpers (shalectl.c) ---------------------------------------------------*/

/* Decimal u64, digits only. 0 ok, -1 otherwise. */
int ctl_parse_u64(const char *s, uint64_t *out);
/* A positive id. 0 ok, -1 otherwise. */
int ctl_parse_id(const char *s, uint64_t *id);
/* "host:port" (a first check only; libshale checks the rest). */
int ctl_is_hostport(const char *s);

/* JSON string of n bytes (bytes >= 0x80 pass through: UTF-8 expected). */
void ctl_json_string(FILE *f, const void *p, size_t n);
void ctl_json_str(FILE *f, const char *s);

/* The exit code for a libshale error: unreachable (3) for connection
 * failures, timeouts, UNAVAILABLE and no leader; refused (4) for
 * CAS_FAILED, OVERLOADED and INVALID on an admin change; else 1. */
int ctl_exit_code(int rv, int admin);

/* Print "shalectl: VERB: <code name>: MSG" and return ctl_exit_code. */
int ctl_error(const char *verb, int rv, const char *msg, int admin);
/* Print "shalectl: VERB: MESSAGE" and return code. */
int ctl_say(int code, const char *verb, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Client options from the command line: --timeout (else default_ms),
 * --cluster-id, --user and its password. */
void ctl_options(const cmd_t *cmd, uint32_t default_ms, shale_options_t *o);

/* Connect to addrs (a comma list); on failure prints why and returns the
 * exit code, else 0 and *c (shale_close). */
int ctl_connect(const cmd_t *cmd, const char *verb, const char *addrs, uint32_t default_ms,
                shale_client_t **c);

/* Random non-zero id (map change sessions). */
uint64_t ctl_random_id(void);

/* Who the server c is connected to says the caller is (shale_whoami into
 * *w). Returns 1 when it runs with --auth (w says who), else 0. */
int ctl_whoami(shale_client_t *c, shale_whoami_t *w);
/* With --auth, the line "user: NAME (role R[, key prefix "P"])" or "user:
 * anonymous" on stdout; nothing when w is NULL or not --auth. */
void ctl_whoami_print(const shale_whoami_t *w);
/* The JSON value for "auth": {"user":..,"role":..,"key_prefix":..} (null
 * members for an anonymous connection), or null without --auth. */
void ctl_whoami_json(const shale_whoami_t *w);

/* ---- Node status (ctl_node.c) -------------------------------------------------*/

/* What one node answered to STATUS, or why it did not. */
typedef struct probe {
    char addr[128];
    int rv; /* SHALE_OK or the error */
    char err[SHALE_ERRMSG_LEN];
    Shale__StatusResponse *st; /* when rv == SHALE_OK; probe_free releases */
    /* Its /health (probe_health): status 200 ready, 503 not ready, 0 not
     * asked (down, or no --http), -1 no answer; health: the reason it is
     * not ready, or why /health did not answer. */
    char http[160]; /* where it serves /metrics and /health ("": nowhere) */
    int health_status;
    char health[240];
    /* private */
    shale_client_t *c_;
    shale_req_t req_;
} probe_t;

/* Ask every probe's addr for its STATUS at once; returns when each has an
 * answer or failed (bounded by --timeout, default CTL_PROBE_TIMEOUT_MS). */
void probe_all(const cmd_t *cmd, probe_t *p, size_t n);
void probe_free(probe_t *p, size_t n);
/* GET /health of every probe that answered STATUS with an http_addr, one
 * after the other (a node that answered STATUS answers at once; each GET is
 * bounded by --timeout, default CTL_HEALTH_TIMEOUT_MS). */
#define CTL_HEALTH_TIMEOUT_MS 1000
void probe_health(const cmd_t *cmd, probe_t *p, size_t n);

/* STATUS of the node c is connected to (*st: free with
 * shale__status_response__free_unpacked). */
int node_status(shale_client_t *c, Shale__StatusResponse **st, char *err);

/* STATUS of the leader of the group that the node(s) at addrs belong to:
 * asks one, follows its leader address, and waits (up to the deadline) while
 * the group has no leader. Returns a SHALE_E* code with err filled. */
int group_leader_status(const cmd_t *cmd, const char *addrs, Shale__StatusResponse **st, char *err);

/* "voter", "replica" or "spare" for a member's role. */
const char *member_kind(const Shale__Member *m);

/* One row of a member table in status: the member (from a map or a
 * group's table) and what it answered. */
typedef struct member_row {
    const Shale__Member *m;
    const probe_t *probe;  /* NULL: not asked */
    uint64_t expect_group; /* the group it must say it belongs to (0: any) */
    uint64_t lag;          /* entries behind the leader (rows_compute_lag) */
    const char *note;      /* shown after the health, may be NULL */
} member_row_t;

/* Health thresholds: a member this far behind is "lagging"/"stale". */
#define CTL_LAG_WARN 1000
#define CTL_STALE_WARN_MS 5000

/* down, wrong-group, no-leader, lagging, stale or ok. */
const char *row_health(const member_row_t *r);
/* The member's own /health verdict: ready, not-ready, "?" (no answer) or
 * "-" (not asked: down, or no --http). */
const char *row_ready(const member_row_t *r);
/* Lag from the leader's applied index (else the most advanced member's). */
void rows_compute_lag(member_row_t *rows, size_t n);
/* The table (ID KIND ROLE CLIENT APPLIED LAG STALENESS READY HEALTH), each line
 * prefixed by indent; or a JSON array. */
void rows_print(const member_row_t *rows, size_t n, const char *indent);
void rows_json(const member_row_t *rows, size_t n);

int run_node_status(shale_client_t *c, const cmd_t *cmd);
int check_member_add(const cmd_t *cmd, char *err, size_t errlen);
int check_ids(const cmd_t *cmd, char *err, size_t errlen);
int run_member_add(shale_client_t *c, const cmd_t *cmd);
int run_member_remove(shale_client_t *c, const cmd_t *cmd);
int run_node_leader_transfer(shale_client_t *c, const cmd_t *cmd);
extern const flag_spec_t member_add_flags[];

/* ---- Cluster map (ctl_map.c) ---------------------------------------------------*/

/* A connection to the meta group and the session that makes map changes
 * exactly-once: a random client id, one seq per change attempt. */
typedef struct meta {
    shale_client_t *c;
    uint64_t client_id;
    uint64_t seq;
    /* Send every change with MAP_CAS.force (and validate it so): slots may
     * change owner without a migration. Only slot assign --force sets it. */
    int force;
} meta_t;

/* Connect to the meta group (--meta); prints why on failure and returns the
 * exit code, else 0. meta_close releases it. */
int meta_open(const cmd_t *cmd, const char *verb, meta_t *m);
void meta_close(meta_t *m);

/* The current map (epoch 0: none yet). *out: cmap_free. */
int map_get(meta_t *m, Shale__ClusterMap **out, char *err);
/* The map at epoch >= min_epoch if the member asked gets there within
 * CTL_MAP_WAIT_MS (else the map it has). */
#define CTL_MAP_WAIT_MS 2000
int map_get_min(meta_t *m, uint64_t min_epoch, Shale__ClusterMap **out, char *err);

/* How an edit answered for the map it was shown. */
typedef enum map_edit_result {
    EDIT_APPLY,  /* next holds the change */
    EDIT_NOOP,   /* the map already says what the verb wants: nothing to do */
    EDIT_REFUSE, /* the change does not apply to this map (why says) */
} map_edit_result_t;

/* Turn next (a copy of cur) into the wanted map. */
typedef map_edit_result_t (*map_edit_fn)(const Shale__ClusterMap *cur, Shale__ClusterMap *next,
                                         void *arg, char *why, size_t whylen);

/* Read the map, edit a copy, validate it (cmap_validate), MAP_CAS it on the
 * epoch read. On CAS_FAILED re-read and re-edit, a few times, as long as the
 * edit still applies. Prints the outcome; returns the exit code. cur (may be
 * NULL) is a map already read, used for the first attempt. */
int map_update(const cmd_t *cmd, meta_t *m, const char *verb, const Shale__ClusterMap *cur,
               map_edit_fn edit, void *arg, const char *note);

/* MAP_CAS with expect_epoch; *out (may be NULL) receives the new map; on
 * CAS_FAILED *cur_epoch the current epoch. */
int map_cas(meta_t *m, uint64_t expect, const Shale__ClusterMap *next, const char *note,
            Shale__ClusterMap **out, uint64_t *cur_epoch, char *err);

/* Edits on a map from cmap_unpack/cmap_copy. protobuf-c's default allocator
 * is malloc/free, so what these add is malloc'd and cmap_free frees it with
 * the rest. Each returns 0, or -1 when out of memory. */
Shale__Member *member_dup(const Shale__Member *m);
int group_set_members(Shale__ShardGroup *g, Shale__Member *const *members, size_t n);
int map_add_group(Shale__ClusterMap *m, uint64_t id, Shale__Member *const *members, size_t n);
void map_remove_group(Shale__ClusterMap *m, uint64_t id);
/* Same id, addresses and kind. */
int member_same(const Shale__Member *a, const Shale__Member *b);
/* Same members (ids, addresses, roles), in any order. */
int members_equal(Shale__Member *const *a, size_t na, Shale__Member *const *b, size_t nb);

/* Slot ranges of a map, compressed: calls fn for each run [from, to] of
 * slots owned by one group (0: unassigned). */
void map_ranges(const Shale__ClusterMap *m,
                void (*fn)(uint32_t from, uint32_t to, uint64_t gid, void *arg), void *arg);
/* "0-2047,4000-4095" for group gid into buf ("-" when it owns none). */
void map_group_ranges(const Shale__ClusterMap *m, uint64_t gid, char *buf, size_t len);

int run_map(shale_client_t *c, const cmd_t *cmd);
/* Where keys live: key -> slot -> group, at the current map. */
int run_slot(shale_client_t *c, const cmd_t *cmd);
/* The repair: give slots to a group without moving their data (MAP_CAS
 * with force); refused without --force. */
extern const flag_spec_t slot_assign_flags[];
int check_slot_assign(const cmd_t *cmd, char *err, size_t errlen);
int run_slot_assign(shale_client_t *c, const cmd_t *cmd);

/* ---- Cluster verbs (ctl_admin.c) ---------------------------------------------*/

extern const flag_spec_t init_flags[];
extern const flag_spec_t replica_add_flags[];
extern const flag_spec_t replica_rejoin_flags[];
int check_init(const cmd_t *cmd, char *err, size_t errlen);
int check_group_add(const cmd_t *cmd, char *err, size_t errlen);
int check_replica_add(const cmd_t *cmd, char *err, size_t errlen);
int check_replica_rejoin(const cmd_t *cmd, char *err, size_t errlen);
int run_init(shale_client_t *c, const cmd_t *cmd);
int run_group_add(shale_client_t *c, const cmd_t *cmd);
int run_group_remove(shale_client_t *c, const cmd_t *cmd);
int run_replica_add(shale_client_t *c, const cmd_t *cmd);
int run_replica_remove(shale_client_t *c, const cmd_t *cmd);
int run_replica_rejoin(shale_client_t *c, const cmd_t *cmd);
int run_leader_transfer(shale_client_t *c, const cmd_t *cmd);
int run_cluster_status(shale_client_t *c, const cmd_t *cmd);

/* ---- Slot migration (ctl_migrate.c) -----------------------------------------------*/

extern const flag_spec_t slot_move_flags[];
extern const flag_spec_t rebalance_flags[];
extern const flag_spec_t migration_abort_flags[];
extern const flag_spec_t migration_resume_flags[];
extern const flag_spec_t group_remove_flags[];
int check_slot_move(const cmd_t *cmd, char *err, size_t errlen);
int check_rebalance(const cmd_t *cmd, char *err, size_t errlen);
int check_migration_ids(const cmd_t *cmd, char *err, size_t errlen);
int check_group_remove(const cmd_t *cmd, char *err, size_t errlen);
int run_slot_move(shale_client_t *c, const cmd_t *cmd);
int run_rebalance(shale_client_t *c, const cmd_t *cmd);
int run_migration_status(shale_client_t *c, const cmd_t *cmd);
int run_migration_abort(shale_client_t *c, const cmd_t *cmd);
int run_migration_resume(shale_client_t *c, const cmd_t *cmd);

/* Move every slot of group gid to the other groups (a rebalance that
 * drains it), with cmd's migration flags. Refused while a migration
 * involves gid. Returns the exit code; *finished says the group owns no
 * slot now (0 after --stop-after or a failure). */
int mig_drain_group(const cmd_t *cmd, const char *verb, const Shale__ClusterMap *map, uint64_t gid,
                    int *finished);

/* The map's migrations: a table (ID FROM TO STATE RUN AGE SLOTS RANGES),
 * each line prefixed by indent; or a JSON array. */
void mig_print_list(const Shale__ClusterMap *map, const char *indent);
void mig_json_list(const Shale__ClusterMap *map);
/* ---- Backup and restore (ctl_backup.c) ------------------------------------------*/

extern const flag_spec_t restore_flags[];
int check_backup_dir(const cmd_t *cmd, char *err, size_t errlen);
int run_backup(shale_client_t *c, const cmd_t *cmd);
int run_backup_verify(shale_client_t *c, const cmd_t *cmd);
int run_backup_release(shale_client_t *c, const cmd_t *cmd);
int run_restore(shale_client_t *c, const cmd_t *cmd);

/* ---- Live view (ctl_top.c) -----------------------------------------------------*/

extern const flag_spec_t top_flags[];
int check_top(const cmd_t *cmd, char *err, size_t errlen);
int run_top(shale_client_t *c, const cmd_t *cmd);

/* ---- Consistency check (ctl_check.c) ----------------------------------------------*/

extern const flag_spec_t check_flags[];
int check_check(const cmd_t *cmd, char *err, size_t errlen);
int run_check(shale_client_t *c, const cmd_t *cmd);

/* ---- Users and roles (ctl_user.c) ------------------------------------------------*/

extern const flag_spec_t user_add_flags[];
extern const flag_spec_t user_passwd_flags[];
int check_user_name(const cmd_t *cmd, char *err, size_t errlen);
int check_user_add(const cmd_t *cmd, char *err, size_t errlen);
int run_user_add(shale_client_t *c, const cmd_t *cmd);
int run_user_remove(shale_client_t *c, const cmd_t *cmd);
int run_user_list(shale_client_t *c, const cmd_t *cmd);
int run_user_passwd(shale_client_t *c, const cmd_t *cmd);

/* ---- Data verbs (ctl_data.c) ---------------------------------------------------*/

extern const flag_spec_t get_flags[];
extern const flag_spec_t cas_flags[];
extern const flag_spec_t txn_flags[];
extern const flag_spec_t scan_flags[];
extern const flag_spec_t watch_flags[];
int check_txn(const cmd_t *cmd, char *err, size_t errlen);
int run_txn(shale_client_t *c, const cmd_t *cmd);
int check_get(const cmd_t *cmd, char *err, size_t errlen);
int check_cas(const cmd_t *cmd, char *err, size_t errlen);
int run_get(shale_client_t *c, const cmd_t *cmd);
int check_scan(const cmd_t *cmd, char *err, size_t errlen);
int run_scan(shale_client_t *c, const cmd_t *cmd);
int check_watch(const cmd_t *cmd, char *err, size_t errlen);
int run_watch(shale_client_t *c, const cmd_t *cmd);
int run_put(shale_client_t *c, const cmd_t *cmd);
extern const flag_spec_t put_flags[];
int check_put(const cmd_t *cmd, char *err, size_t errlen);
int run_ttl(shale_client_t *c, const cmd_t *cmd);
int run_mget(shale_client_t *c, const cmd_t *cmd);
int run_del(shale_client_t *c, const cmd_t *cmd);
int run_cas(shale_client_t *c, const cmd_t *cmd);

#endif
