/* shale-router flag table, parsing and validation. See config.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlog.h"

#define RT_VERSION "0.1.0"

enum kind { K_U64, K_STR, K_BOOL };

typedef struct setting {
    const char *name;
    enum kind kind;
    size_t off;
    size_t size;     /* K_STR buffer size */
    uint64_t lo, hi; /* K_U64 range */
    const char *help;
} setting_t;

#define STR(n, f, h)                                                                               \
    {                                                                                              \
        n, K_STR, offsetof(rt_config_t, f), sizeof(((rt_config_t *)0)->f), 0, 0, h                 \
    }
#define U64(n, f, lo, hi, h)                                                                       \
    {                                                                                              \
        n, K_U64, offsetof(rt_config_t, f), 0, lo, hi, h                                           \
    }

static const setting_t settings[] = {
    STR("listen", listen, "client address HOST:PORT (default 127.0.0.1:7000)"),
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
    {"auth", K_BOOL, offsetof(rt_config_t, auth), 0, 0, 1,
     "require an authenticated user on every client connection (HELLO credential) and check "
     "each request against the user's role and key prefix before forwarding it "
     "(docs/security.md, \"Users and roles\"); off by default until TLS is on everywhere"},
    STR("auth-user", auth_user,
        "the user this router presents to the meta group and the nodes (started with --auth): "
        "admin role"),
    STR("auth-password-file", auth_password_file, "file whose first line is --auth-user's password"),
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

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
    for (size_t i = 0; i < NSETTINGS; i++)
        printf("  --%-20s %s\n", settings[i].name, settings[i].help);
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

static const setting_t *find(const char *name, size_t len)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strlen(settings[i].name) == len && strncmp(settings[i].name, name, len) == 0)
            return &settings[i];
    return NULL;
}

static int set_value(rt_config_t *c, const setting_t *s, const char *v, char *err, size_t errlen)
{
    char *base = (char *)c + s->off;
    if (s->kind == K_STR) {
        if (strlen(v) >= s->size) {
            snprintf(err, errlen, "value for --%s is too long (at most %zu bytes)", s->name,
                     s->size - 1);
            return -1;
        }
        memcpy(base, v, strlen(v) + 1);
        return 0;
    }
    if (s->kind == K_BOOL) {
        int on = strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "on") == 0;
        if (!on && strcmp(v, "0") != 0 && strcmp(v, "false") != 0 && strcmp(v, "off") != 0) {
            snprintf(err, errlen, "--%s is on or off (1/0, true/false), not '%s'", s->name, v);
            return -1;
        }
        memcpy(base, &(uint64_t){(uint64_t)on}, sizeof(uint64_t));
        return 0;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || errno != 0 || end == v || *end != '\0') {
        snprintf(err, errlen, "--%s wants a non-negative integer, got '%s'", s->name, v);
        return -1;
    }
    if (x < s->lo || x > s->hi) {
        snprintf(err, errlen, "--%s must be in %llu..%llu, got %llu", s->name,
                 (unsigned long long)s->lo, (unsigned long long)s->hi, x);
        return -1;
    }
    memcpy(base, &(uint64_t){x}, sizeof(uint64_t));
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
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", a);
            return -1;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const setting_t *s = find(name, nlen);
        if (s == NULL) {
            snprintf(err, errlen, "unknown flag '%.*s' (see --help)", (int)(nlen + 2), a);
            return -1;
        }
        const char *v;
        if (eq != NULL) {
            v = eq + 1;
        } else if (s->kind == K_BOOL) {
            v = "1"; /* --auth alone turns it on */
        } else {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value", s->name);
                return -1;
            }
            v = argv[++i];
        }
        if (set_value(c, s, v, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int rt_config_validate(const rt_config_t *c, char *err, size_t errlen)
{
    char host[128];
    int port;
    if (rt_split_addr(c->listen, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "bad --listen address '%s' (want HOST:PORT)", c->listen);
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
