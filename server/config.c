/* shaled settings table, config file and flag parsing. See config.h. */
#include "config.h"

#include "conftab.h"
#include "log.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The settings table (conftab.h): every flag is also a config-file line.
 * {name, kind, offset, string size, help[, lo, hi]}. */
#define K_U64 CONF_U64
#define K_STR CONF_STR
#define K_BOOL CONF_BOOL
typedef conf_setting_t setting_t;

#define U64(f, h) {#f, K_U64, offsetof(shaled_config_t, f), 0, h, 0, 0}
#define U64N(n, f, h) {n, K_U64, offsetof(shaled_config_t, f), 0, h, 0, 0}
#define BOOL(n, f, h) {n, K_BOOL, offsetof(shaled_config_t, f), 0, h, 0, 0}
#define STR(n, f, h) {n, K_STR, offsetof(shaled_config_t, f), sizeof(((shaled_config_t *)0)->f), h, 0, 0}

static const setting_t settings[] = {
    U64(id, "raft server id of this node (required, > 0)"),
    STR("listen", listen, "client address host:port (default 127.0.0.1:7001)"),
    STR("raft", raft, "raft peer address host:port (default 127.0.0.1:7101)"),
    STR("data", data, "data directory: raft log + RocksDB (required)"),
    STR("cluster-id", cluster_id, "cluster name; peers naming another are refused (default shale)"),
    U64N("slots", slots, "number of hash slots S (default 4096)"),
    U64N("block-cache-mb", block_cache_mb, "RocksDB block cache in MiB (default 256)"),
    U64N("write-buffer-mb", write_buffer_mb, "RocksDB memtable size in MiB (default 64)"),
    U64N("max-key", max_key, "largest key in bytes (default 4096)"),
    U64N("max-value", max_value, "largest value in bytes (default 1048576)"),
    U64N("max-frame", max_frame, "largest frame in bytes (default 8388608)"),
    U64N("election-timeout-ms", election_timeout_ms, "raft election timeout (default 1000)"),
    U64N("heartbeat-ms", heartbeat_ms, "raft heartbeat interval (default 100)"),
    U64N("snapshot-threshold", snapshot_threshold, "entries between raft snapshots (default 131072)"),
    U64N("snapshot-trailing", snapshot_trailing, "entries kept after a snapshot (default 65536)"),
    U64N("snapshot-rate-mb", snapshot_rate_mb, "limit each snapshot stream this node serves to N MiB/s (default 0: no limit)"),
    U64N("check-rate-mb", check_rate_mb, "read rate of a consistency check on this node in MiB/s when shalectl check gives no --rate (default 64; 0: no limit)"),
    U64N("segment-mb", segment_mb, "raft log segment size in MiB (default 64)"),
    U64N("batch-max", batch_max, "client mutations per raft entry (default 512)"),
    U64N("inflight-entries", inflight_entries, "raft entries in flight before batching harder (default 4)"),
    U64N("max-pending", max_pending, "queued mutations before OVERLOADED (default 100000)"),
    U64N("conn-max-inflight", conn_max_inflight, "requests in flight per connection before reading pauses (default 4096)"),
    U64N("session-ttl-s", session_ttl_s, "forget idle client sessions after this many seconds (default 3600)"),
    U64N("watch-cache-changes", watch_cache_changes, "recent changes kept for WATCH resumes (default 100000)"),
    U64N("watch-cache-mb", watch_cache_mb, "... and MiB of their keys and values (default 64)"),
    STR("initial-cluster", initial_cluster, "founding voters ID=RAFT_ADDR/CLIENT_ADDR,... (same on each; default: this node alone); 'none' joins an existing group"),
    U64N("tick-ms", tick_ms, "leader appends a freshness tick when idle this long; bounds STALE reads (default 100)"),
    STR("mode", mode, "data (a shard group member, default) | meta (a meta group member: holds the cluster map)"),
    U64(group, "data node in a cluster: this node's shard group id (needs --meta)"),
    STR("meta", meta, "data node in a cluster: meta group client addresses HOST:PORT,...; without it the group serves every slot (standalone)"),
    STR("log-level", log_level, "debug | info | warn | error (default info); SIGUSR1 cycles it"),
    U64N("slow-ms", slow_ms, "log a request answered after this many ms at info/warn with its trace id (default 100; 0: never; at debug every request is logged)"),
    STR("http", http, "serve /metrics (Prometheus) and /health on HOST:PORT, or :PORT on the --listen host (default off)"),
    STR("tls-ca", tls_ca, "TLS: the cluster CA (PEM) that signs the certificates of nodes and clients; needed with --tls-cert"),
    STR("tls-cert", tls_cert, "TLS on the client port: this node's certificate (PEM), also presented when it dials the meta group or a snapshot source (default off; docs/security.md)"),
    STR("tls-key", tls_key, "TLS: the private key of --tls-cert (PEM)"),
    U64N("tls-client-auth", tls_client_auth, "TLS: 1 = clients must present a certificate signed by --tls-ca (mutual TLS); default 0"),
    BOOL("auth", auth, "require an authenticated user on every connection (HELLO credential) and check each request against the user's role and key prefix (docs/security.md, \"Users and roles\"); off by default until TLS is on everywhere. As a flag: --auth; in a file: auth = 1"),
    STR("auth-user", auth_user, "the user this node presents to other processes started with --auth (the meta group, peers): admin role"),
    STR("auth-password-file", auth_password_file, "file whose first line is --auth-user's password"),
    U64N("max-clock-offset-ms", max_clock_offset_ms, "a member serves STALE reads only while its measured clock offset to the leader plus the measurement's uncertainty is within this many ms, and counts both into each read's staleness (docs/consistency.md, \"Clocks\"; default 250)"),
    U64N("test-clock-keep-leadership", test_clock_keep_leadership, "TEST ONLY: 1 = a leader whose clock its group measures ahead or behind by more than --max-clock-offset-ms keeps leading instead of handing leadership to a voter nearer the group's clock (its timestamps are still corrected; tests/integration/test_clock.c); default 0"),
    U64N("test-ignore-clock-offset", test_ignore_clock_offset, "TEST ONLY, breaks the STALE bound: 1 = STALE reads trust this node's own clock, ignoring the measured offset (tests/integration/test_clock.c; docs/jepsen.md); default 0"),
    U64N("test-map-watch-pause-ms", test_map_watch_pause_ms, "TEST ONLY, the node learns maps late: after each map its watch receives, wait this many ms before the next (0: off). Slot migrations then progress only through the coordinator's MIG_PUSH (tests/integration/test_migrate.c; docs/resharding.md)"),
    U64N("test-broken-reads", test_broken_reads, "TEST ONLY, breaks linearizability: 1 = a former leader answers LINEARIZABLE reads locally with no read barrier (jepsen/run --broken-reads; docs/jepsen.md); default 0"),
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))
static const conf_table_t table = {settings, NSETTINGS};

void shaled_config_defaults(shaled_config_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->listen, sizeof(c->listen), "127.0.0.1:7001");
    snprintf(c->raft, sizeof(c->raft), "127.0.0.1:7101");
    snprintf(c->cluster_id, sizeof(c->cluster_id), "shale");
    snprintf(c->log_level, sizeof(c->log_level), "info");
    snprintf(c->mode, sizeof(c->mode), "data");
    c->slots = 4096;
    c->max_clock_offset_ms = 250;
    c->block_cache_mb = 256;
    c->write_buffer_mb = 64;
    c->max_key = 4096;
    c->max_value = 1048576;
    c->max_frame = 8388608;
    c->election_timeout_ms = 1000;
    c->heartbeat_ms = 100;
    c->snapshot_threshold = 131072;
    c->snapshot_trailing = 65536;
    c->segment_mb = 64;
    c->batch_max = 512;
    c->inflight_entries = 4;
    c->max_pending = 100000;
    c->conn_max_inflight = 4096;
    c->session_ttl_s = 3600;
    c->check_rate_mb = 64;
    c->watch_cache_changes = 100000;
    c->watch_cache_mb = 64;
    c->tick_ms = 100;
    c->slow_ms = 100;
}

void shaled_config_usage(const char *prog)
{
    printf("usage: %s --id N --data DIR [options]\n\n"
           "shaled is one replica of a Shale shard group: a Raft node whose\n"
           "state machine is RocksDB, serving the Shale protocol.\n\n"
           "options (each may also be set in the config file as `name = value`):\n",
           prog);
    conf_usage(&table, stdout, 22);
    printf("  --%-22s %s\n", "config FILE", "read settings from FILE first; flags override it");
    printf("  --%-22s %s\n", "check-config",
           "check the settings (file and flags) and print them all as a config file, then exit "
           "(0 ok, 2 with the error)");
    printf("  --%-22s %s\n", "help", "print this help");
    printf("  --%-22s %s\n", "version", "print the version");
    printf("\nsignals: SIGTERM/SIGINT stop cleanly; SIGUSR1 cycles the log level;\n"
           "SIGHUP reloads the TLS certificate, key and CA files (new connections use them).\n");
}

int shaled_config_parse(shaled_config_t *c, int argc, char **argv, char *err,
                        size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            shaled_config_usage(argv[0]);
            return 1;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("shaled 0.1.0\n");
            return 1;
        }
        if (strcmp(argv[i], "--check-config") == 0)
            c->check_config = 1;
    }
    /* The file first, then the flags over it. */
    const char *file = NULL;
    int at = conf_find_arg(argc, argv, "config", &file);
    if (at < 0 || (at > 0 && file[0] == '\0')) {
        snprintf(err, errlen, "--config needs a file name");
        return -1;
    }
    if (at > 0) {
        snprintf(c->config_file, sizeof(c->config_file), "%s", file);
        if (conf_file(&table, c, file, err, errlen) != 0)
            return -1;
    }
    static const char *const skip_value[] = {"config", NULL};
    static const char *const skip_alone[] = {"check-config", NULL};
    return conf_args(&table, c, argc, argv, skip_value, skip_alone, err, errlen);
}

void shaled_config_dump(const shaled_config_t *c, FILE *out)
{
    fprintf(out, "# shaled %s: the effective settings (--check-config)\n", "0.1.0");
    conf_dump(&table, c, out);
}

int shale_split_addr(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= hostlen)
        return -1;
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || p <= 0 || p > 65535)
        return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *port = (int)p;
    return 0;
}

int shaled_config_validate(const shaled_config_t *c, char *err, size_t errlen)
{
    char host[128];
    int port;
    if (c->id == 0) {
        snprintf(err, errlen, "--id is required and must be > 0");
        return -1;
    }
    if (c->data[0] == '\0') {
        snprintf(err, errlen, "--data DIR is required");
        return -1;
    }
    if (strcmp(c->mode, "data") != 0 && strcmp(c->mode, "meta") != 0) {
        snprintf(err, errlen, "--mode must be data or meta, not '%s'", c->mode);
        return -1;
    }
    if (c->auth && strcmp(c->mode, "data") == 0 && c->meta[0] == '\0') {
        snprintf(err, errlen, "--auth on a data node needs --meta: the users live in the meta "
                              "group");
        return -1;
    }
    if ((c->auth_user[0] != '\0') != (c->auth_password_file[0] != '\0')) {
        snprintf(err, errlen, "--auth-user and --auth-password-file go together");
        return -1;
    }
    if (strcmp(c->mode, "meta") == 0 && (c->group != 0 || c->meta[0] != '\0')) {
        snprintf(err, errlen, "--group and --meta are for data nodes, not --mode meta");
        return -1;
    }
    if ((c->group != 0) != (c->meta[0] != '\0')) {
        snprintf(err, errlen, "a data node in a cluster needs both --group ID and --meta ADDRS");
        return -1;
    }
    if (c->meta[0] != '\0') {
        char tmp[sizeof(c->meta)];
        snprintf(tmp, sizeof(tmp), "%s", c->meta);
        char *save = NULL;
        for (char *a = strtok_r(tmp, ",", &save); a != NULL; a = strtok_r(NULL, ",", &save))
            if (shale_split_addr(a, host, sizeof(host), &port) != 0) {
                snprintf(err, errlen, "--meta: '%s' is not HOST:PORT", a);
                return -1;
            }
    }
    if (shale_split_addr(c->listen, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "--listen '%s' is not host:port", c->listen);
        return -1;
    }
    if (shale_split_addr(c->raft, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "--raft '%s' is not host:port", c->raft);
        return -1;
    }
    if (c->slots == 0 || c->slots > 65535) {
        snprintf(err, errlen, "--slots must be in 1..65535");
        return -1;
    }
    if (c->max_key == 0 || c->max_key > 65536 || c->max_value > 64u << 20 ||
        c->max_frame < c->max_value + c->max_key + 1024 || c->max_frame > 256u << 20) {
        snprintf(err, errlen,
                 "limits: max-key 1..65536, max-value <= 64 MiB, max-frame >= "
                 "max-value + max-key + 1024 and <= 256 MiB");
        return -1;
    }
    if (c->batch_max == 0 || c->inflight_entries == 0 || c->max_pending == 0 ||
        c->conn_max_inflight == 0) {
        snprintf(err, errlen,
                 "batch-max, inflight-entries, max-pending and conn-max-inflight "
                 "must be > 0");
        return -1;
    }
    if (c->heartbeat_ms == 0 || c->election_timeout_ms < 2 * c->heartbeat_ms) {
        snprintf(err, errlen, "election-timeout-ms must be at least twice heartbeat-ms (> 0)");
        return -1;
    }
    /* Values reach unsigned (32-bit) Raft settings and ms arithmetic. */
    if (c->election_timeout_ms > 600000 || c->heartbeat_ms > 60000) {
        snprintf(err, errlen, "election-timeout-ms must be <= 600000 and heartbeat-ms <= 60000");
        return -1;
    }
    if (c->snapshot_threshold < 64 || c->snapshot_threshold > UINT32_MAX ||
        c->snapshot_trailing > UINT32_MAX) {
        snprintf(err, errlen, "snapshot-threshold must be in 64..4294967295 and "
                              "snapshot-trailing <= 4294967295");
        return -1;
    }
    if (c->session_ttl_s == 0 || c->session_ttl_s > 10u * 365 * 86400) {
        snprintf(err, errlen, "session-ttl-s must be in 1..315360000 (10 years)");
        return -1;
    }
    if (c->block_cache_mb > (1u << 20)) {
        snprintf(err, errlen, "block-cache-mb must be <= 1048576");
        return -1;
    }
    if (c->write_buffer_mb == 0 || c->write_buffer_mb > 4096) {
        snprintf(err, errlen, "write-buffer-mb must be in 1..4096");
        return -1;
    }
    if (c->tick_ms == 0 || c->tick_ms > 60000) {
        snprintf(err, errlen, "tick-ms must be in 1..60000");
        return -1;
    }
    if (c->segment_mb == 0 || c->segment_mb > 1024) {
        snprintf(err, errlen, "segment-mb must be in 1..1024");
        return -1;
    }
    if (c->http[0] != '\0') {
        const char *hp = strrchr(c->http, ':');
        char *end = NULL;
        long p = hp != NULL ? strtol(hp + 1, &end, 10) : 0;
        if (hp == NULL || end == hp + 1 || *end != '\0' || p <= 0 || p > 65535) {
            snprintf(err, errlen, "--http '%s' is not HOST:PORT or :PORT", c->http);
            return -1;
        }
    }
    if (c->slow_ms > 3600000) {
        snprintf(err, errlen, "slow-ms must be <= 3600000 (one hour)");
        return -1;
    }
    if (c->test_clock_keep_leadership > 1) {
        snprintf(err, errlen, "test-clock-keep-leadership must be 0 or 1 (and is for tests only)");
        return -1;
    }
    if (c->test_ignore_clock_offset > 1) {
        snprintf(err, errlen, "test-ignore-clock-offset must be 0 or 1 (and is for tests only)");
        return -1;
    }
    if (c->max_clock_offset_ms == 0 || c->max_clock_offset_ms > 3600000) {
        snprintf(err, errlen, "max-clock-offset-ms must be 1..3600000");
        return -1;
    }
    if (c->test_broken_reads > 1) {
        snprintf(err, errlen, "test-broken-reads must be 0 or 1 (and is for the fault harness only)");
        return -1;
    }
    int tls_on = c->tls_cert[0] != '\0';
    if (tls_on != (c->tls_key[0] != '\0')) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together (TLS on the client port)");
        return -1;
    }
    if (tls_on && c->tls_ca[0] == '\0') {
        snprintf(err, errlen, "--tls-cert needs --tls-ca: the cluster CA this node verifies "
                              "peers with");
        return -1;
    }
    if (!tls_on && c->tls_ca[0] != '\0') {
        snprintf(err, errlen, "--tls-ca needs --tls-cert and --tls-key (TLS on the client port)");
        return -1;
    }
    if (c->tls_client_auth > 1 || (c->tls_client_auth && !tls_on)) {
        snprintf(err, errlen, "--tls-client-auth must be 0 or 1, and 1 needs --tls-cert, "
                              "--tls-key and --tls-ca");
        return -1;
    }
    if (log_parse_level(c->log_level) < 0) {
        snprintf(err, errlen, "--log-level must be debug, info, warn or error");
        return -1;
    }
    return 0;
}
