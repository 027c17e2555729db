/* shaled configuration: defaults, a `key = value` config file, and command
 * line flags (flags win over the file). One table describes every setting,
 * so --help, the file parser and the flag parser never disagree.
 *
 * Never exits: errors come back as a message for main() to print. */
#ifndef SHALE_SERVER_CONFIG_H
#define SHALE_SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct shaled_config {
    uint64_t id;            /* raft server id (>0) */
    char listen[128];       /* client address host:port */
    char raft[128];         /* raft address host:port */
    char data[512];         /* data directory */
    char cluster_id[64];
    uint64_t slots;         /* slot count S */
    uint64_t block_cache_mb;
    uint64_t write_buffer_mb;
    uint64_t max_key;
    uint64_t max_value;
    uint64_t max_frame;
    uint64_t election_timeout_ms;
    uint64_t heartbeat_ms;
    uint64_t snapshot_threshold;
    uint64_t snapshot_trailing;
    uint64_t snapshot_rate_mb;  /* snapshot streams served, MiB/s each; 0: no limit */
    uint64_t check_rate_mb;     /* consistency check read rate when the entry gives none;
                                 * MiB/s, 0: no limit (server/check.c) */
    uint64_t segment_mb;
    uint64_t batch_max;         /* mutations per raft entry */
    uint64_t inflight_entries;  /* raft entries proposed but not applied */
    uint64_t max_pending;       /* queued mutations before OVERLOADED */
    uint64_t conn_max_inflight; /* per connection, before reads pause */
    uint64_t session_ttl_s;
    uint64_t watch_cache_changes; /* WATCH: changes kept in the watch cache */
    uint64_t watch_cache_mb;      /* ... and their bytes, MiB */
    char initial_cluster[2048]; /* "" self | "none" join | ID=RAFT/CLIENT,... */
    uint64_t tick_ms;           /* leader freshness tick for STALE reads */
    char mode[8];               /* "data" (a shard group) or "meta" */
    uint64_t group;             /* data: shard group id in the cluster map (0: standalone) */
    char meta[1024];            /* data: meta group client addresses, comma list */
    char log_level[16];
    uint64_t slow_ms;           /* log requests taking this long at info/warn; 0 off */
    char http[160];             /* metrics/health HTTP address; "" off */
    uint64_t test_map_watch_pause_ms; /* TEST ONLY: ownership.c, test_migrate.c */
    uint64_t test_broken_reads; /* TEST ONLY (jepsen/run --broken-reads): read_index.c */
    uint64_t max_clock_offset_ms; /* STALE reads need |offset| + uncertainty within this */
    uint64_t test_clock_keep_leadership; /* TEST ONLY: no clock-driven leadership handoff (clock_ping.c) */
    uint64_t test_ignore_clock_offset; /* TEST ONLY: STALE reads trust the local clock (clock_ping.c) */
    /* TLS on the client port and on this node's own dials to client ports
     * (meta, snapshot sources); off while tls_cert is "" (docs/security.md). */
    char tls_ca[512];
    char tls_cert[512];
    char tls_key[512];
    uint64_t tls_client_auth;   /* 1: clients must present a certificate the CA signed */
    uint64_t auth;              /* 1: every request needs an authenticated user (auth_conn.c) */
    char auth_user[128];        /* this node's own user, for what it asks other processes */
    char auth_password_file[512];
    char config_file[512];
    int check_config; /* --check-config: print the settings, exit (not a setting) */
} shaled_config_t;

void shaled_config_defaults(shaled_config_t *c);

/* Parse argv (file first when --config is given, then flags). Returns 0,
 * 1 when --help/--version was printed (caller exits 0), or -1 with a message
 * in err. */
int shaled_config_parse(shaled_config_t *c, int argc, char **argv, char *err,
                        size_t errlen);

/* Check cross-field rules (required fields, ranges). */
int shaled_config_validate(const shaled_config_t *c, char *err, size_t errlen);

void shaled_config_usage(const char *prog);

/* Every setting of c as a config file (--check-config). */
void shaled_config_dump(const shaled_config_t *c, FILE *out);

/* Split "host:port" into host (buf) and port. Returns 0 or -1. */
int shale_split_addr(const char *addr, char *host, size_t hostlen, int *port);

#endif
