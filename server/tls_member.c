/* The naming rule for node-to-node TLS (tls_member.h): a peer's certificate
 * names a member when one of its SANs is exactly the host of the member's
 * address. No I/O, no logging, no Raft. */
#include "tls_member.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int tls_member_host(const char *address, char *buf, size_t len)
{
    if (address == NULL || len == 0)
        return -1;
    const char *start = address, *end;
    if (address[0] == '[') {
        start = address + 1;
        end = strchr(start, ']');
        if (end == NULL || end[1] != ':')
            return -1;
    } else {
        end = strrchr(address, ':');
        if (end == NULL)
            return -1;
    }
    size_t n = (size_t)(end - start);
    if (n == 0 || n >= len)
        return -1;
    memcpy(buf, start, n);
    buf[n] = '\0';
    return 0;
}

/* The host as an address: family and bytes; 0 when it is not an IP literal. */
static int ip_of(const char *host, unsigned char out[16])
{
    if (inet_pton(AF_INET, host, out) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, host, out) == 1)
        return AF_INET6;
    return 0;
}

typedef struct match {
    const char *host;
    int family;
    unsigned char ip[16];
    int found;
    char seen[200]; /* what the certificate names, for the refusal message */
    size_t seen_len;
} match_t;

static int on_name(void *arg, const char *kind, const char *name)
{
    match_t *m = arg;
    if (m->seen_len < sizeof(m->seen)) {
        int w = snprintf(m->seen + m->seen_len, sizeof(m->seen) - m->seen_len, "%s%s:%s",
                         m->seen_len > 0 ? "," : "", kind, name);
        m->seen_len = w < 0 ? sizeof(m->seen) : m->seen_len + (size_t)w;
    }
    if (strcmp(kind, "IP") == 0 && m->family != 0) {
        unsigned char ip[16];
        int fam = ip_of(name, ip);
        if (fam == m->family && memcmp(ip, m->ip, fam == AF_INET ? 4 : 16) == 0)
            m->found = 1;
    } else if (strcmp(kind, "DNS") == 0 && m->family == 0) {
        if (strcasecmp(name, m->host) == 0)
            m->found = 1;
    }
    return m->found;
}

int tls_member_named(const tls_sess_t *s, const char *address, char *why, size_t whylen)
{
    char host[256];
    if (tls_member_host(address, host, sizeof(host)) != 0) {
        if (whylen > 0)
            snprintf(why, whylen, "member address %s has no host:port form",
                     address ? address : "(none)");
        return 0;
    }
    match_t m = {.host = host};
    m.family = ip_of(host, m.ip);
    tls_sess_peer_names(s, on_name, &m);
    if (m.found)
        return 1;
    if (whylen > 0)
        snprintf(why, whylen, "the certificate does not name %s (%s SAN needed; it names %s)", host,
                 m.family != 0 ? "an IP" : "a DNS", m.seen_len > 0 ? m.seen : "nothing");
    return 0;
}
