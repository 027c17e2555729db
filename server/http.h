/* A small HTTP/1.1 server on libuv for the observability endpoints
 * (/metrics, /health): GET and HEAD only, answers built synchronously by
 * route handlers. Why hand-written and not a library: docs/observability.md.
 *
 * Rules it follows:
 *  - a request head is at most HTTP_MAX_HEAD bytes; a longer one, a bad
 *    request line, a line not ended by CRLF, a header without a colon, an
 *    obsolete folded header, a bad or conflicting Content-Length, or an
 *    HTTP/1.1 request without Host gets 400 and the connection closes;
 *  - other methods get 405 (Allow: GET, HEAD), other paths 404, an HTTP
 *    version other than 1.0/1.1 gets 505;
 *  - keep-alive by default on HTTP/1.1, on HTTP/1.0 only when asked;
 *    "Connection: close" is honoured; a request with a body is answered and
 *    the connection closed (the body is never read);
 *  - pipelined requests are answered in order, one at a time: reading stops
 *    while an answer is being written, so memory per connection is bounded
 *    (HTTP_MAX_HEAD of input plus one answer);
 *  - each request must arrive within HTTP_REQUEST_TIMEOUT_MS of the previous
 *    answer (or of the connection): otherwise 408 (or a quiet close if
 *    nothing was sent) — an answer not taken by then is dropped too;
 *  - after an answer with "Connection: close" the write side is shut and
 *    input dropped until the peer closes (at most 2 s): a lingering close,
 *    so the peer reads the answer before any reset;
 *  - at most HTTP_MAX_CONNS connections; more are accepted and closed.
 * Everything runs on the loop's thread. Module prefix http_. */
#ifndef SHALE_HTTP_H
#define SHALE_HTTP_H

#include <stddef.h>
#include <uv.h>

#define HTTP_MAX_HEAD 8192
#define HTTP_MAX_PATH 1024
#define HTTP_REQUEST_TIMEOUT_MS 10000
#define HTTP_MAX_CONNS 256
#define HTTP_MAX_ROUTES 8

typedef struct http_request {
    char method[16];
    char path[HTTP_MAX_PATH]; /* without the query string */
    int minor;                /* HTTP/1.minor */
    int keep_alive;           /* after this answer */
    int has_body;             /* Content-Length > 0 or Transfer-Encoding */
    int has_host;
} http_request_t;

/* Parse a request head from buf[0..len). Returns the head's length (> 0)
 * with req filled, 0 when more bytes are needed (len < HTTP_MAX_HEAD and no
 * error seen yet), or -status (-400, -414, -505) for a request that cannot
 * be served. Pure: no I/O, no allocation. */
int http_parse(const char *buf, size_t len, http_request_t *req);

/* A handler's answer: status and a body (malloc'd by the handler, freed by
 * the server; NULL for none). content_type NULL: text/plain. */
typedef struct http_response {
    int status;
    const char *content_type;
    char *body;
    size_t len;
} http_response_t;

typedef void (*http_handler_cb)(void *arg, const http_request_t *req, http_response_t *resp);

typedef struct http_server http_server_t;

/* "HOST:PORT", or ":PORT" meaning default_host (the process's own address),
 * into out ("HOST:PORT"). 0, or -1 when it is not an address. */
int http_resolve_addr(const char *spec, const char *default_host, char *out, size_t outlen);

/* Listen on addr (HOST:PORT, IPv4 or [IPv6]). *out is freed by
 * http_server_close. 0, or -1 with a message in err. */
int http_server_start(uv_loop_t *loop, const char *addr, http_server_t **out, char *err,
                      size_t errlen);
/* Serve path (exact match, query string ignored) with cb. 0 or -1 (full). */
int http_route(http_server_t *s, const char *path, http_handler_cb cb, void *arg);
/* Close the listener and every connection; the server frees itself when
 * its handles have closed (the loop must run). NULL is ignored. */
void http_server_close(http_server_t *s);
/* The port listened on (useful after binding port 0), or -1. */
int http_server_port(const http_server_t *s);
/* Open connections (for tests and metrics). */
size_t http_server_conns(const http_server_t *s);

/* Reason phrase of a status code ("Unknown" for others). */
const char *http_reason(int status);

#endif
