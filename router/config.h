/* shale-router settings: defaults, command-line parsing, validation.
 *
 * Owns rt_config_t and the table of flags (one place that names each flag,
 * its default and its help line). Pure: no sockets, no loop; main.c turns a
 * parse failure into exit status 2. */
#ifndef SHALE_RT_CONFIG_H
#define SHALE_RT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct rt_config {
    char listen[128];           /* HOST:PORT this router serves clients on */
    char meta[2048];            /* meta group client addresses, comma separated */
    char cluster_id[64];        /* HELLO cluster id; the map must name the same */
    uint64_t timeout_ms;        /* deadline of one client request, retries included */
    uint64_t max_pending;       /* requests queued or in flight per shard group */
    uint64_t max_frame;         /* largest frame accepted from a client */
    uint64_t max_key;           /* key size limit checked (and advertised in HELLO_REPLY) */
    uint64_t max_value;         /* value size limit checked (and advertised) */
    uint64_t conn_max_inflight; /* per client connection before reading pauses */
    uint64_t node_conns;        /* pooled connections per node */
    char log_level[16];
    uint64_t slow_ms; /* log requests taking this long at info/warn; 0 off */
    char http[160];   /* metrics/health HTTP address; "" off */
    /* TLS on the client port and on every dial to nodes and the meta group;
     * off while tls_cert is "" (docs/security.md). */
    char tls_ca[512];
    char tls_cert[512];
    char tls_key[512];
    uint64_t tls_client_auth; /* 1: clients must present a certificate the CA signed */
    uint64_t auth;    /* 1: clients must log in; each request is checked (authn.c) */
    char auth_user[128];           /* the router's own user, for the meta group and nodes */
    char auth_password_file[512];
    char resp[128];         /* Redis protocol HOST:PORT; "" off (docs/resp.md) */
    uint64_t resp_stale_ms; /* READONLY connections: STALE bound of their reads */
    uint64_t resp_keys_max; /* KEYS: more matching keys is an error */
    int check_config; /* --check-config: print the settings, exit (not a setting) */
} rt_config_t;

void rt_config_defaults(rt_config_t *c);

/* Parse argv. Returns 0, 1 when --help or --version was printed (exit 0),
 * or -1 with a message in err. */
int rt_config_parse(rt_config_t *c, int argc, char **argv, char *err, size_t errlen);

/* Check values and combinations. 0, or -1 with a message in err. */
int rt_config_validate(const rt_config_t *c, char *err, size_t errlen);

void rt_config_usage(const char *prog);

/* Every setting of c as a config file (--check-config). */
void rt_config_dump(const rt_config_t *c, FILE *out);

/* Split "host:port" / "[v6]:port" into its parts. 0 or -1. */
int rt_split_addr(const char *addr, char *host, size_t hlen, int *port);

#endif
