/* A tiny blocking HTTP/1.1 GET client, for shalectl reading the processes'
 * observability endpoints (/health, /metrics; docs/observability.md).
 *
 * What this file owns: one GET over a fresh TCP connection with
 * `Connection: close`, bounded in time (one deadline for connect, send and
 * the whole answer) and in size (the body limit), answering the status code
 * and the body. What it never does: follow redirects, keep connections,
 * speak TLS or chunked encoding (Shale's endpoints answer with a
 * Content-Length), retry, or exit — errors come back as a code and a
 * message. */
#ifndef SHALE_HTTPC_H
#define SHALE_HTTPC_H

#include <stddef.h>

/* Bodies larger than this are refused (a data node's /metrics is ~31 KiB). */
#define HTTPC_MAX_BODY (8u << 20)

/* GET http://hostport/path. hostport: "HOST:PORT" or "[V6]:PORT".
 * Returns 0 with *status (e.g. 200, 503) and *body (malloc'd, NUL-
 * terminated, *len bytes without the NUL; free with free()), or a negative
 * SHALE_E* code (SHALE_EINVAL bad address, SHALE_EIO connection or
 * protocol failure, SHALE_ETIMEOUT deadline, SHALE_ETOOLARGE body over
 * HTTPC_MAX_BODY, SHALE_ENOMEM) with a message in err. */
int httpc_get(const char *hostport, const char *path, int timeout_ms, int *status, char **body,
              size_t *len, char *err, size_t errlen);

/* The address to reach an endpoint that reports it serves on http_addr,
 * as seen by a client that reached the same process at client_addr: a
 * wildcard host (0.0.0.0, [::], empty) is replaced by client_addr's host.
 * Writes out (outlen bytes); returns 0, or -1 when http_addr is not
 * HOST:PORT. */
int httpc_reach_addr(const char *http_addr, const char *client_addr, char *out, size_t outlen);

#endif
