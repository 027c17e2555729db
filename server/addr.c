/* Host:port addresses with host names (addr.h): splitting, numeric
 * parsing, blocking and loop lookups. No caching, no logging. */
#include "addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int addr_split(const char *address, char *host, size_t hostlen, char *port, size_t portlen)
{
    if (address == NULL)
        return -1;
    const char *start = address, *end, *colon;
    if (address[0] == '[') {
        start = address + 1;
        end = strchr(start, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        colon = end + 1;
    } else {
        end = colon = strrchr(address, ':');
        if (end == NULL)
            return -1;
    }
    size_t n = (size_t)(end - start);
    if (n == 0 || n >= hostlen)
        return -1;
    char *e = NULL;
    long p = strtol(colon + 1, &e, 10);
    if (e == colon + 1 || *e != '\0' || p < 0 || p > 65535 || strlen(colon + 1) >= portlen)
        return -1;
    memcpy(host, start, n);
    host[n] = '\0';
    snprintf(port, portlen, "%s", colon + 1);
    return 0;
}

int addr_numeric(const char *address, int port_zero, struct sockaddr_storage *ss)
{
    char host[ADDR_HOST_MAX], port[8];
    if (addr_split(address, host, sizeof(host), port, sizeof(port)) != 0)
        return -1;
    int p = port_zero ? 0 : atoi(port);
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, p, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, p, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return -1;
}

int addr_is_numeric(const char *address)
{
    struct sockaddr_storage ss;
    return addr_numeric(address, 0, &ss) == 0;
}

int addr_resolve_blocking(const char *address, int family, struct sockaddr_storage *ss, char *err,
                          size_t errlen)
{
    char host[ADDR_HOST_MAX], port[8];
    if (addr_split(address, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(err, errlen, "'%s' is not HOST:PORT", address ? address : "");
        return -1;
    }
    if (addr_numeric(address, 0, ss) == 0) {
        if (family == AF_UNSPEC || ss->ss_family == family)
            return 0;
        snprintf(err, errlen, "'%s' is not an %s address", address,
                 family == AF_INET ? "IPv4" : "IPv6");
        return -1;
    }
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rv = getaddrinfo(host, port, &hints, &res);
    if (rv != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve '%s': %s", address,
                 rv != 0 ? gai_strerror(rv) : "no address");
        if (res != NULL)
            freeaddrinfo(res);
        return -1;
    }
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

int addr_resolve_start(uv_loop_t *loop, uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb,
                       const char *address)
{
    char host[ADDR_HOST_MAX], port[8];
    if (addr_split(address, host, sizeof(host), port, sizeof(port)) != 0)
        return UV_EINVAL;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    return uv_getaddrinfo(loop, req, cb, host, port, &hints);
}

void addr_resolve_error(const char *address, int status, char *err, size_t errlen)
{
    snprintf(err, errlen, "cannot resolve '%s': %s", address,
             status == 0 ? "no address" : uv_strerror(status));
}
