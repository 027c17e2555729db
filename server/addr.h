/* addr: "host:port" addresses that may name a host (DNS or /etc/hosts)
 * rather than a numeric IP, for every process (shaled, shale-router,
 * shalectl's tools) — one split rule, one lookup, one error sentence.
 *
 * Forms: "10.0.0.1:7001", "[::1]:7001", "n1.shale.test:7001". The host part
 * is what tls_member.h compares with a peer certificate's names.
 *
 * Rules:
 *  - a numeric host is parsed, never looked up (no resolver traffic for
 *    literals; IPv6 literals need the brackets);
 *  - a name is looked up every time it is asked for: callers resolve again
 *    on every (re)connect, so a name whose address changes is followed
 *    without a restart (nothing is cached here);
 *  - addr_resolve_blocking uses getaddrinfo on the calling thread: only for
 *    a listen/bind address at process start, or in a client that blocks
 *    its caller for the whole exchange anyway (the snapshot fetch); on a
 *    loop, connect paths use uv_getaddrinfo (addr_resolve_start);
 *  - the first result is used (the order getaddrinfo gives: /etc/gai.conf).
 *
 * Owns no memory beyond the caller's buffers and requests; never logs. */
#ifndef SHALE_ADDR_H
#define SHALE_ADDR_H

#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#define ADDR_HOST_MAX 256

/* Split address into host (brackets removed) and port text. 0, or -1 when
 * it is not HOST:PORT with a port in 0..65535 (0: any, for a bind) or the
 * host does not fit. */
int addr_split(const char *address, char *host, size_t hostlen, char *port, size_t portlen);

/* 1 when address's host is an IP literal (no lookup needed), else 0. */
int addr_is_numeric(const char *address);

/* A numeric address into *ss (port 0 when port_zero). 0, or -1 when the
 * host is not an IP literal (or the address is malformed). */
int addr_numeric(const char *address, int port_zero, struct sockaddr_storage *ss);

/* Resolve address (numeric or a name) into *ss, blocking. family:
 * AF_UNSPEC, AF_INET or AF_INET6. 0, or -1 with a sentence naming the
 * address and gai_strerror's reason in err. */
int addr_resolve_blocking(const char *address, int family, struct sockaddr_storage *ss, char *err,
                          size_t errlen);

/* Start an asynchronous lookup of address (numeric or a name; TCP,
 * AF_UNSPEC) on loop; cb runs on the loop with uv_getaddrinfo's result
 * (the callee frees res with uv_freeaddrinfo). The caller owns req and
 * keeps it alive until cb ran. 0, or a negative libuv error (UV_EINVAL
 * for a malformed address) and cb will not run. */
int addr_resolve_start(uv_loop_t *loop, uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb,
                       const char *address);

/* "cannot resolve ADDRESS: REASON" for a uv_getaddrinfo status into err. */
void addr_resolve_error(const char *address, int status, char *err, size_t errlen);

#endif
