/* shaled settings table, config file and flag parsing. See config.h. */
#include "config.h"

#include "log.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_U64, K_STR, K_BOOL };

typedef struct setting {
    const char *name;
    enum kind kind;
    size_t off;
    size_t size; /* K_STR buffer size */
    const char *help;
} setting_t;

#define U64(f, h) {#f, K_U64, offsetof(shaled_config_t, f), 0, h}
#define STR(n, f, h) {n, K_STR, offsetof(shaled_config_t, f), sizeof(((shaled_config_t *)0)->f), h}

static const setting_t settings[] = {
    U64(id, "raft server id of this node (required, > 0)"),
    STR("listen", listen, "client address host:port (default 127.0.0.1:7001)"),
    STR("raft", raft, "raft peer address host:port (default 127.0.0.1:7101)"),
    STR("data", data, "data directory: raft log + RocksDB (required)"),
    STR("cluster-id", cluster_id, "cluster name; peers naming another are refused (default shale)"),
    {"slots", K_U64, offsetof(shaled_config_t, slots), 0, "number of hash slots S (default 4096)"},
    {"block-cache-mb", K_U64, offsetof(shaled_config_t, block_cache_mb), 0, "RocksDB block cache in MiB (default 256)"},
    {"write-buffer-mb", K_U64, offsetof(shaled_config_t, write_buffer_mb), 0, "RocksDB memtable size in MiB (default 64)"},
    {"max-key", K_U64, offsetof(shaled_config_t, max_key), 0, "largest key in bytes (default 4096)"},
    {"max-value", K_U64, offsetof(shaled_config_t, max_value), 0, "largest value in bytes (default 1048576)"},
    {"max-frame", K_U64, offsetof(shaled_config_t, max_frame), 0, "largest frame in bytes (default 8388608)"},
    {"election-timeout-ms", K_U64, offsetof(shaled_config_t, election_timeout_ms), 0, "raft election timeout (default 1000)"},
    {"heartbeat-ms", K_U64, offsetof(shaled_config_t, heartbeat_ms), 0, "raft heartbeat interval (default 100)"},
    {"snapshot-threshold", K_U64, offsetof(shaled_config_t, snapshot_threshold), 0, "entries between raft snapshots (default 131072)"},
    {"snapshot-trailing", K_U64, offsetof(shaled_config_t, snapshot_trailing), 0, "entries kept after a snapshot (default 65536)"},
    {"snapshot-rate-mb", K_U64, offsetof(shaled_config_t, snapshot_rate_mb), 0, "limit each snapshot stream this node serves to N MiB/s (default 0: no limit)"},
    {"segment-mb", K_U64, offsetof(shaled_config_t, segment_mb), 0, "raft log segment size in MiB (default 64)"},
    {"batch-max", K_U64, offsetof(shaled_config_t, batch_max), 0, "client mutations per raft entry (default 512)"},
    {"inflight-entries", K_U64, offsetof(shaled_config_t, inflight_entries), 0, "raft entries in flight before batching harder (default 4)"},
    {"max-pending", K_U64, offsetof(shaled_config_t, max_pending), 0, "queued mutations before OVERLOADED (default 100000)"},
    {"conn-max-inflight", K_U64, offsetof(shaled_config_t, conn_max_inflight), 0, "requests in flight per connection before reading pauses (default 4096)"},
    {"session-ttl-s", K_U64, offsetof(shaled_config_t, session_ttl_s), 0, "forget idle client sessions after this many seconds (default 3600)"},
    STR("initial-cluster", initial_cluster, "founding voters ID=RAFT_ADDR/CLIENT_ADDR,... (same on each; default: this node alone); 'none' joins an existing group"),
    {"tick-ms", K_U64, offsetof(shaled_config_t, tick_ms), 0, "leader appends a freshness tick when idle this long; bounds STALE reads (default 100)"},
    STR("mode", mode, "data (a shard group member, default) | meta (a meta group member: holds the cluster map)"),
    U64(group, "data node in a cluster: this node's shard group id (needs --meta)"),
    STR("meta", meta, "data node in a cluster: meta group client addresses HOST:PORT,...; without it the group serves every slot (standalone)"),
    STR("log-level", log_level, "debug | info | warn | error (default info); SIGUSR1 cycles it"),
    {"slow-ms", K_U64, offsetof(shaled_config_t, slow_ms), 0, "log a request answered after this many ms at info/warn with its trace id (default 100; 0: never; at debug every request is logged)"},
    STR("http", http, "serve /metrics (Prometheus) and /health on HOST:PORT, or :PORT on the --listen host (default off)"),
    STR("tls-ca", tls_ca, "TLS: the cluster CA (PEM) that signs the certificates of nodes and clients; needed with --tls-cert"),
    STR("tls-cert", tls_cert, "TLS on the client port: this node's certificate (PEM), also presented when it dials the meta group or a snapshot source (default off; docs/security.md)"),
    STR("tls-key", tls_key, "TLS: the private key of --tls-cert (PEM)"),
    {"tls-client-auth", K_U64, offsetof(shaled_config_t, tls_client_auth), 0, "TLS: 1 = clients must present a certificate signed by --tls-ca (mutual TLS); default 0"},
    {"auth", K_BOOL, offsetof(shaled_config_t, auth), 0, "require an authenticated user on every connection (HELLO credential) and check each request against the user's role and key prefix (docs/security.md, \"Users and roles\"); off by default until TLS is on everywhere. As a flag: --auth; in a file: auth = 1"},
    STR("auth-user", auth_user, "the user this node presents to other processes started with --auth (the meta group, peers): admin role"),
    STR("auth-password-file", auth_password_file, "file whose first line is --auth-user's password"),
    {"test-broken-reads", K_U64, offsetof(shaled_config_t, test_broken_reads), 0, "TEST ONLY, breaks linearizability: 1 = a former leader answers LINEARIZABLE reads locally with no read barrier (jepsen/run --broken-reads; docs/jepsen.md); default 0"},
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

void shaled_config_defaults(shaled_config_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->listen, sizeof(c->listen), "127.0.0.1:7001");
    snprintf(c->raft, sizeof(c->raft), "127.0.0.1:7101");
    snprintf(c->cluster_id, sizeof(c->cluster_id), "shale");
    snprintf(c->log_level, sizeof(c->log_level), "info");
    snprintf(c->mode, sizeof(c->mode), "data");
    c->slots = 4096;
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
    for (size_t i = 0; i < NSETTINGS; i++)
        printf("  --%-22s %s\n", settings[i].name, settings[i].help);
    printf("  --%-22s %s\n", "config FILE", "read settings from FILE first; flags override it");
    printf("  --%-22s %s\n", "help", "print this help");
    printf("  --%-22s %s\n", "version", "print the version");
    printf("\nsignals: SIGTERM/SIGINT stop cleanly; SIGUSR1 cycles the log level;\n"
           "SIGHUP reloads the TLS certificate, key and CA files (new connections use them).\n");
}

static const setting_t *find(const char *name)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
}

static int set_value(shaled_config_t *c, const setting_t *s, const char *v,
                     char *err, size_t errlen)
{
    char *base = (char *)c + s->off;
    if (s->kind == K_STR) {
        if (strlen(v) >= s->size) {
            snprintf(err, errlen, "value for %s is too long (max %zu bytes)",
                     s->name, s->size - 1);
            return -1;
        }
        memcpy(base, v, strlen(v) + 1);
        return 0;
    }
    if (s->kind == K_BOOL) {
        uint64_t b;
        if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "on") == 0)
            b = 1;
        else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0 || strcmp(v, "off") == 0)
            b = 0;
        else {
            snprintf(err, errlen, "%s is on or off (1/0, true/false), not '%s'", s->name, v);
            return -1;
        }
        memcpy(base, &b, sizeof(b));
        return 0;
    }
    char *end = NULL;
    errno = 0;
    if (*v == '-' || *v == '\0') {
        snprintf(err, errlen, "%s needs a non-negative integer, got '%s'",
                 s->name, v);
        return -1;
    }
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0') {
        snprintf(err, errlen, "%s needs a non-negative integer, got '%s'",
                 s->name, v);
        return -1;
    }
    uint64_t u = x;
    memcpy(base, &u, sizeof(u));
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' ||
                     s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static int parse_file(shaled_config_t *c, const char *path, char *err,
                      size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open config file %s: %s", path,
                 strerror(errno));
        return -1;
    }
    char line[1024];
    int lineno = 0, rv = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *l = trim(line);
        if (*l == '\0' || *l == '#')
            continue;
        char *eq = strchr(l, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "%s:%d: expected `name = value`", path, lineno);
            rv = -1;
            break;
        }
        *eq = '\0';
        char *name = trim(l), *val = trim(eq + 1);
        const setting_t *s = find(name);
        if (s == NULL) {
            snprintf(err, errlen, "%s:%d: unknown setting '%s'", path, lineno,
                     name);
            rv = -1;
            break;
        }
        char sub[512];
        if (set_value(c, s, val, sub, sizeof(sub)) != 0) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, sub);
            rv = -1;
            break;
        }
    }
    fclose(f);
    return rv;
}

int shaled_config_parse(shaled_config_t *c, int argc, char **argv, char *err,
                        size_t errlen)
{
    /* Pass 1: --help, --version, --config. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            shaled_config_usage(argv[0]);
            return 1;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("shaled 0.1.0\n");
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--config needs a file name");
                return -1;
            }
            snprintf(c->config_file, sizeof(c->config_file), "%s", argv[i + 1]);
            if (parse_file(c, argv[i + 1], err, errlen) != 0)
                return -1;
            i++;
        }
    }
    /* Pass 2: flags, as --name value or --name=value. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", a);
            return -1;
        }
        char name[64];
        const char *val = NULL;
        const char *eq = strchr(a + 2, '=');
        size_t nlen = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (nlen >= sizeof(name)) {
            snprintf(err, errlen, "unknown option '%s' (see --help)", a);
            return -1;
        }
        memcpy(name, a + 2, nlen);
        name[nlen] = '\0';
        const setting_t *s = find(name);
        if (s == NULL) {
            snprintf(err, errlen, "unknown option '--%s' (see --help)", name);
            return -1;
        }
        if (eq != NULL) {
            val = eq + 1;
        } else if (s->kind == K_BOOL) {
            val = "1"; /* --auth alone turns it on */
        } else {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value", name);
                return -1;
            }
            val = argv[++i];
        }
        if (set_value(c, s, val, err, errlen) != 0)
            return -1;
    }
    return 0;
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
