/* shale-router flag table, parsing and validation. See config.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conftab.h"
#include "rlog.h"

#define RT_VERSION "0.1.0"

/* The settings table (server/conftab.h, shared with shaled): every flag is
 * also a config-file line. {name, kind, offset, string size, help, lo, hi}. */
typedef conf_setting_t setting_t;

#define STR(n, f, h) {n, CONF_STR, offsetof(rt_config_t, f), sizeof(((rt_config_t *)0)->f), h, 0, 0}
#define U64(n, f, lo, hi, h) {n, CONF_U64, offsetof(rt_config_t, f), 0, h, lo, hi}

static const setting_t settings[] = {
    STR("listen", listen, "client address HOST:PORT (default 127.0.0.1:7000)"),
    STR("resp", resp,
        "also speak the Redis protocol (RESP2/RESP3: redis-cli, redis-benchmark, Redis client "
        "libraries) on HOST:PORT, with the client port's TLS and --auth (default off; "
        "docs/resp.md)"),
    U64("resp-stale-ms", resp_stale_ms, 1, 3600000,
        "a RESP connection that sent READONLY reads STALE within this many ms (default 1000)"),
    U64("resp-keys-max", resp_keys_max, 1, 100000000,
        "KEYS on the RESP port answers an error past this many matching keys (default "
        "100000; use SCAN)"),
    STR("meta", meta, "meta group client addresses HOST:PORT[,HOST:PORT...] (required)"),
    STR("cluster-id", cluster_id,
        "cluster name: clients naming another are refused, and so is a map of another "
        "cluster (default shale)"),
    U64("timeout-ms", timeout_ms, 10, 600000,
        "deadline of one client request, retries included (default 5000)"),
    U64("max-pending", max_pending, 1, 10000000,
        "requests queued or in flight per shard group before OVERLOADED (default 10000)"),
    U64("max-frame", max_frame, 4096, 1u << 30,
        "largest frame accepted from a client, in bytes (default 8388608)"),
    U64("max-key", max_key, 1, 65535,
        "largest key in bytes; keep it equal to the nodes' (default 4096)"),
    U64("max-value", max_value, 0, 1u << 30,
        "largest value in bytes; keep it equal to the nodes' (default 1048576)"),
    U64("conn-max-inflight", conn_max_inflight, 1, 1000000,
        "requests in flight per client connection before reading pauses (default 4096)"),
    U64("node-conns", node_conns, 1, 16,
        "pooled connections per node, each multiplexing many requests (default 1)"),
    STR("log-level", log_level, "debug | info | warn | error (default info); SIGUSR1 cycles it"),
    U64("slow-ms", slow_ms, 0, 3600000,
        "log a request answered after this many ms at info/warn with its trace id, retries "
        "and their causes (default 100; 0: never; at debug every request is logged)"),
    STR("http", http,
        "serve /metrics (Prometheus) and /health on HOST:PORT, or :PORT on the --listen host "
        "(default off)"),
    STR("tls-ca", tls_ca,
        "TLS: the cluster CA (PEM) that signs the certificates of nodes and clients; needed "
        "with --tls-cert"),
    STR("tls-cert", tls_cert,
        "TLS on the client port and to the nodes and the meta group (whose ports must speak "
        "TLS too): this router's certificate (PEM), also presented to them (default off; "
        "docs/security.md)"),
    STR("tls-key", tls_key, "TLS: the private key of --tls-cert (PEM)"),
    U64("tls-client-auth", tls_client_auth, 0, 1,
        "TLS: 1 = clients must present a certificate signed by --tls-ca (mutual TLS); "
        "default 0"),
    {"auth", CONF_BOOL, offsetof(rt_config_t, auth), 0,
     "require an authenticated user on every client connection (HELLO credential) and check "
     "each request against the user's role and key prefix before forwarding it "
     "(docs/security.md, \"Users and roles\"); off by default until TLS is on everywhere", 0, 1},
    STR("auth-user", auth_user,
        "the user this router presents to the meta group and the nodes (started with --auth): "
        "admin role"),
    STR("auth-password-file", auth_password_file, "file whose first line is --auth-user's password"),
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))
static const conf_table_t table = {settings, NSETTINGS};

void rt_config_defaults(rt_config_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->listen, sizeof(c->listen), "127.0.0.1:7000");
    snprintf(c->cluster_id, sizeof(c->cluster_id), "shale");
    snprintf(c->log_level, sizeof(c->log_level), "info");
    c->timeout_ms = 5000;
    c->max_pending = 10000;
    c->max_frame = 8388608;
    c->max_key = 4096;
    c->max_value = 1048576;
    c->conn_max_inflight = 4096;
    c->node_conns = 1;
    c->slow_ms = 100;
    c->resp_stale_ms = 1000;
    c->resp_keys_max = 100000;
}

void rt_config_usage(const char *prog)
{
    printf("usage: %s --meta ADDR[,ADDR...] [--listen HOST:PORT] [options]\n\n"
           "shale-router is the stateless front door of a Shale cluster: it speaks the\n"
           "node protocol to clients, follows the cluster map of the meta group, and\n"
           "forwards each request to the shard group owning its key's slot, retrying\n"
           "redirects, leader changes and lost connections within the deadline.\n\n"
           "options:\n",
           prog);
    conf_usage(&table, stdout, 20);
    printf("  --%-20s %s\n", "config FILE",
           "read settings from FILE first (`name = value` lines, # comments); flags override it");
    printf("  --%-20s %s\n", "check-config",
           "check the settings (file and flags) and print them all as a config file, then exit "
           "(0 ok, 2 with the error)");
    printf("  --%-20s %s\n", "help", "print this help");
    printf("  --%-20s %s\n", "version", "print the version");
    printf("\nsignals: SIGTERM/SIGINT stop cleanly (in-flight requests finish first);\n"
           "SIGUSR1 cycles the log level; SIGHUP reloads the TLS files (new connections use\n"
           "them). Exit status 2: bad arguments.\n");
}

int rt_split_addr(const char *addr, char *host, size_t hlen, int *port)
{
    const char *h = addr, *hend, *p;
    if (addr == NULL || addr[0] == '\0')
        return -1;
    if (addr[0] == '[') {
        h = addr + 1;
        hend = strchr(h, ']');
        if (hend == NULL || hend[1] != ':')
            return -1;
        p = hend + 2;
    } else {
        hend = strrchr(addr, ':');
        if (hend == NULL || memchr(addr, ':', (size_t)(hend - addr)) != NULL)
            return -1;
        p = hend + 1;
    }
    size_t n = (size_t)(hend - h);
    if (n == 0 || n >= hlen || p[0] < '0' || p[0] > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 || v > 65535)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (int)v;
    return 0;
}

int rt_config_parse(rt_config_t *c, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            rt_config_usage(argv[0]);
            return 1;
        }
        if (strcmp(a, "--version") == 0) {
            printf("shale-router %s\n", RT_VERSION);
            return 1;
        }
        if (strcmp(a, "--check-config") == 0)
            c->check_config = 1;
    }
    /* The file first, then the flags over it. */
    const char *file = NULL;
    int at = conf_find_arg(argc, argv, "config", &file);
    if (at < 0 || (at > 0 && file[0] == '\0')) {
        snprintf(err, errlen, "--config needs a file name");
        return -1;
    }
    if (at > 0 && conf_file(&table, c, file, err, errlen) != 0)
        return -1;
    static const char *const skip_value[] = {"config", NULL};
    static const char *const skip_alone[] = {"check-config", NULL};
    return conf_args(&table, c, argc, argv, skip_value, skip_alone, err, errlen);
}

void rt_config_dump(const rt_config_t *c, FILE *out)
{
    fprintf(out, "# shale-router %s: the effective settings (--check-config)\n", RT_VERSION);
    conf_dump(&table, c, out);
}

int rt_config_validate(const rt_config_t *c, char *err, size_t errlen)
{
    char host[128];
    int port;
    if (rt_split_addr(c->listen, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "bad --listen address '%s' (want HOST:PORT)", c->listen);
        return -1;
    }
    if (c->resp[0] != '\0' && rt_split_addr(c->resp, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "bad --resp address '%s' (want HOST:PORT)", c->resp);
        return -1;
    }
    if (c->resp[0] != '\0' && strcmp(c->resp, c->listen) == 0) {
        snprintf(err, errlen, "--resp %s is also --listen: give the Redis protocol its own port",
                 c->resp);
        return -1;
    }
    if (c->meta[0] == '\0') {
        snprintf(err, errlen, "--meta is required: the meta group's client addresses");
        return -1;
    }
    int n = 0;
    const char *p = c->meta;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char one[128];
        if (len == 0 || len >= sizeof(one)) {
            snprintf(err, errlen, "bad --meta list '%s' (want HOST:PORT[,HOST:PORT...])", c->meta);
            return -1;
        }
        memcpy(one, p, len);
        one[len] = '\0';
        if (rt_split_addr(one, host, sizeof(host), &port) != 0) {
            snprintf(err, errlen, "bad --meta address '%s' (want HOST:PORT)", one);
            return -1;
        }
        if (++n > 16) {
            snprintf(err, errlen, "--meta names more than 16 addresses");
            return -1;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    if (c->cluster_id[0] == '\0') {
        snprintf(err, errlen, "--cluster-id must not be empty");
        return -1;
    }
    if (c->max_value + c->max_key + 1024 > c->max_frame) {
        snprintf(err, errlen, "--max-frame (%llu) must exceed --max-key + --max-value + 1024",
                 (unsigned long long)c->max_frame);
        return -1;
    }
    if (c->http[0] != '\0') {
        const char *hp = strrchr(c->http, ':');
        char *end = NULL;
        long p = hp != NULL ? strtol(hp + 1, &end, 10) : 0;
        if (hp == NULL || end == hp + 1 || *end != '\0' || p <= 0 || p > 65535) {
            snprintf(err, errlen, "bad --http address '%s' (want HOST:PORT or :PORT)", c->http);
            return -1;
        }
    }
    int tls_on = c->tls_cert[0] != '\0';
    if (tls_on != (c->tls_key[0] != '\0')) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together");
        return -1;
    }
    if (tls_on != (c->tls_ca[0] != '\0')) {
        snprintf(err, errlen, "TLS needs --tls-ca, --tls-cert and --tls-key together: the CA "
                              "verifies the nodes and the meta group");
        return -1;
    }
    if (c->tls_client_auth && !tls_on) {
        snprintf(err, errlen, "--tls-client-auth 1 needs --tls-ca, --tls-cert and --tls-key");
        return -1;
    }
    if ((c->auth_user[0] != '\0') != (c->auth_password_file[0] != '\0')) {
        snprintf(err, errlen, "--auth-user and --auth-password-file go together");
        return -1;
    }
    if (rt_log_parse_level(c->log_level) < 0) {
        snprintf(err, errlen, "bad --log-level '%s' (debug, info, warn or error)", c->log_level);
        return -1;
    }
    return 0;
}
