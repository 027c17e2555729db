/* The naming rule for node-to-node TLS: does a peer's certificate name a
 * member of the configuration? (docs/security.md, "Which certificate a
 * node needs").
 *
 * The rule: a member is named by the host part of its address ("host:port",
 * "[v6]:port"). The peer's certificate names it when a subject alternative
 * name equals that host exactly: an IP SAN for an IP address (compared as
 * addresses, so 10.0.0.1 and ::ffff:... forms follow inet_pton), a DNS SAN
 * for a host name (ASCII case-insensitive, no wildcards). The CN is never
 * used: OpenSSL's CN fallback and wildcards would let one certificate speak
 * for many members.
 *
 * What this file owns: that rule, over tls_sess_peer_names (tls.h). It
 * never does I/O, never logs, and knows nothing of Raft or configurations:
 * callers pass the member address they expect. */
#ifndef SHALE_TLS_MEMBER_H
#define SHALE_TLS_MEMBER_H

#include <stddef.h>

#include "tls.h"

/* The host part of address into buf ("10.0.0.1:7101" -> "10.0.0.1",
 * "[::1]:7101" -> "::1", "node-1:7101" -> "node-1"). 0, or -1 when it has
 * no ":port" or the host does not fit. */
int tls_member_host(const char *address, char *buf, size_t len);

/* 1 when the verified peer certificate of s names the member at address
 * (the rule above), else 0 with a sentence in why (whylen bytes, may be 0)
 * listing what the certificate does name. */
int tls_member_named(const tls_sess_t *s, const char *address, char *why, size_t whylen);

#endif
