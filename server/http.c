/* HTTP/1.1 server for /metrics and /health: request parsing (pure) and the
 * libuv connection handling. See http.h for the rules. */
#include "http.h"

#include "addr.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Parsing -----------------------------------------------------------------*/

static int is_tchar(int c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Case-insensitive: does the comma-separated list hold token? */
static int list_has(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
            return 1;
    }
    return 0;
}

static int header_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* The request target into req->path: origin-form or absolute-form. */
static int parse_target(const char *t, size_t n, http_request_t *req)
{
    if (n >= 7 && strncasecmp(t, "http://", 7) == 0) {
        const char *slash = memchr(t + 7, '/', n - 7);
        n = slash != NULL ? n - (size_t)(slash - t) : 0;
        t = slash != NULL ? slash : "/";
        if (n == 0)
            n = 1;
    } else if (n >= 8 && strncasecmp(t, "https://", 8) == 0) {
        const char *slash = memchr(t + 8, '/', n - 8);
        n = slash != NULL ? n - (size_t)(slash - t) : 0;
        t = slash != NULL ? slash : "/";
        if (n == 0)
            n = 1;
    } else if (!(n == 1 && t[0] == '*') && t[0] != '/') {
        return -400;
    }
    size_t plen = 0;
    while (plen < n && t[plen] != '?' && t[plen] != '#')
        plen++;
    if (plen >= sizeof(req->path))
        return -414;
    memcpy(req->path, t, plen);
    req->path[plen] = '\0';
    return 0;
}

int http_parse(const char *buf, size_t len, http_request_t *req)
{
    memset(req, 0, sizeof(*req));
    size_t lim = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD;
    size_t start = 0;
    /* RFC 9112 2.2: empty lines before the request line are ignored. */
    while (start + 1 < lim && buf[start] == '\r' && buf[start + 1] == '\n')
        start += 2;
    /* Find the end of the head; refuse bytes no head may hold on the way. */
    size_t end = 0;
    for (size_t i = start; i < lim; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n' && (i == 0 || buf[i - 1] != '\r'))
            return -400; /* a bare LF: lines end with CRLF */
        if (c == '\r' && i + 1 < lim && buf[i + 1] != '\n')
            return -400;
        if ((c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f)
            return -400;
        if (c == '\n' && i >= start + 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
            end = i + 1;
            break;
        }
    }
    if (end == 0)
        return len >= HTTP_MAX_HEAD ? -400 : 0;

    /* Request line: method SP target SP HTTP/x.y CRLF. */
    const char *p = buf + start;
    const char *eol = memchr(p, '\r', end - start);
    size_t i = 0, ll = (size_t)(eol - p);
    while (i < ll && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i >= ll || p[i] != ' ')
        return -400;
    size_t mlen = i < sizeof(req->method) ? i : sizeof(req->method) - 1;
    memcpy(req->method, p, mlen);
    req->method[mlen] = '\0';
    size_t ts = ++i;
    while (i < ll && (unsigned char)p[i] > 0x20 && p[i] != 0x7f)
        i++;
    if (i == ts || i >= ll || p[i] != ' ')
        return -400;
    size_t te = i++;
    const char *v = p + i;
    size_t vl = ll - i;
    if (vl != 8 || strncmp(v, "HTTP/", 5) != 0 || !isdigit((unsigned char)v[5]) || v[6] != '.' ||
        !isdigit((unsigned char)v[7]))
        return -400;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return -505;
    req->minor = v[7] - '0';
    int rv = parse_target(p + ts, te - ts, req);
    if (rv != 0)
        return rv;

    /* Header fields: name ":" OWS value OWS CRLF, up to the empty line. */
    int conn_close = 0, conn_keep = 0, te_seen = 0, cl_seen = 0;
    unsigned long long cl = 0;
    const char *h = eol + 2;
    const char *stop = buf + end - 2; /* the final CRLF */
    while (h < stop) {
        const char *hend = memchr(h, '\r', (size_t)(stop - h));
        size_t hl = (size_t)(hend - h);
        if (h[0] == ' ' || h[0] == '\t')
            return -400; /* obsolete line folding */
        size_t n = 0;
        while (n < hl && is_tchar((unsigned char)h[n]))
            n++;
        if (n == 0 || n >= hl || h[n] != ':')
            return -400;
        const char *val = h + n + 1;
        size_t vlen = hl - n - 1;
        while (vlen > 0 && (*val == ' ' || *val == '\t')) {
            val++;
            vlen--;
        }
        while (vlen > 0 && (val[vlen - 1] == ' ' || val[vlen - 1] == '\t'))
            vlen--;
        if (header_is(h, n, "host")) {
            if (req->has_host)
                return -400;
            req->has_host = 1;
        } else if (header_is(h, n, "content-length")) {
            unsigned long long x = 0;
            if (vlen == 0 || vlen > 18)
                return -400;
            for (size_t k = 0; k < vlen; k++) {
                if (!isdigit((unsigned char)val[k]))
                    return -400;
                x = x * 10 + (unsigned)(val[k] - '0');
            }
            if (cl_seen && x != cl)
                return -400;
            cl_seen = 1;
            cl = x;
        } else if (header_is(h, n, "transfer-encoding")) {
            te_seen = 1;
        } else if (header_is(h, n, "connection")) {
            conn_close |= list_has(val, vlen, "close");
            conn_keep |= list_has(val, vlen, "keep-alive");
        }
        h = hend + 2;
    }
    if (te_seen && cl_seen)
        return -400; /* RFC 9112 6.1: a request smuggling sign */
    if (req->minor == 1 && !req->has_host)
        return -400; /* RFC 9112 3.2 */
    req->has_body = te_seen || cl > 0;
    req->keep_alive = req->minor == 1 ? !conn_close : (conn_keep && !conn_close);
    if (req->has_body)
        req->keep_alive = 0;
    return (int)end;
}

const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 414:
        return "URI Too Long";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

int http_resolve_addr(const char *spec, const char *default_host, char *out, size_t outlen)
{
    char tmp[256];
    if (spec == NULL || spec[0] == '\0')
        return -1;
    if (spec[0] == ':')
        snprintf(tmp, sizeof(tmp), "%s%s", default_host, spec);
    else
        snprintf(tmp, sizeof(tmp), "%s", spec);
    const char *colon = strrchr(tmp, ':');
    if (colon == NULL || colon == tmp)
        return -1;
    char *e = NULL;
    long port = strtol(colon + 1, &e, 10);
    if (e == colon + 1 || *e != '\0' || port <= 0 || port > 65535)
        return -1;
    if ((size_t)snprintf(out, outlen, "%s", tmp) >= outlen)
        return -1;
    return 0;
}

/* ---- Connections -------------------------------------------------------------*/

typedef struct http_conn http_conn_t;

typedef struct route {
    char path[HTTP_MAX_PATH];
    http_handler_cb cb;
    void *arg;
} route_t;

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listener_open; /* handle not yet closed */
    int closing;
    http_conn_t *conns; /* open connections */
    size_t nconns;
    size_t nalive; /* connection structs not freed yet */
    route_t routes[HTTP_MAX_ROUTES];
    int nroutes;
};

struct http_conn {
    http_conn_t *next, *prev;
    http_server_t *srv;
    uv_tcp_t tcp;
    uv_timer_t timer;
    int nclosed;
    int closing;
    int writing;
    int close_after;
    int draining; /* answer sent, write side shut: discarding input until EOF */
    uv_write_t wreq;
    uv_shutdown_t sreq;
    char *out;
    size_t inlen;
    char in[HTTP_MAX_HEAD];
};

static void server_maybe_free(http_server_t *s)
{
    if (s->closing && !s->listener_open && s->nalive == 0)
        free(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    http_conn_t *c = h->data;
    if (++c->nclosed < 2)
        return;
    http_server_t *s = c->srv;
    free(c->out);
    free(c);
    s->nalive--;
    server_maybe_free(s);
}

static void conn_close(http_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    http_server_t *s = c->srv;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->nconns--;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void process(http_conn_t *c);
static void on_timeout(uv_timer_t *t);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    http_conn_t *c = h->data;
    *buf = uv_buf_init(c->in + c->inlen, (unsigned)(sizeof(c->in) - c->inlen));
}

/* Lingering close: after the last answer the write side is shut and
 * input is read and dropped until the peer closes (or HTTP_LINGER_MS), so
 * unread request bytes do not make the kernel reset the connection before
 * the peer has read the answer. */
#define HTTP_LINGER_MS 2000

static void on_shutdown(uv_shutdown_t *req, int status)
{
    http_conn_t *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->draining = 1;
    c->inlen = 0;
    uv_timer_start(&c->timer, on_timeout, HTTP_LINGER_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static void on_write(uv_write_t *w, int status)
{
    http_conn_t *c = w->data;
    free(c->out);
    c->out = NULL;
    c->writing = 0;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->close_after) {
        c->sreq.data = c;
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
            conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, HTTP_REQUEST_TIMEOUT_MS, 0);
    process(c);
    if (!c->closing && !c->writing)
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

/* Queue one answer; reading stops until it is written. Takes body. */
static void respond(http_conn_t *c, int status, const char *ctype, char *body, size_t blen,
                    int head_only, int keep_alive)
{
    char hdr[512];
    int hl = snprintf(
        hdr, sizeof(hdr),
        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
        "Connection: %s\r\n%s\r\n",
        status, http_reason(status), ctype != NULL ? ctype : "text/plain; charset=utf-8", blen,
        keep_alive ? "keep-alive" : "close", status == 405 ? "Allow: GET, HEAD\r\n" : "");
    size_t send_body = head_only ? 0 : blen;
    c->out = malloc((size_t)hl + send_body + 1);
    if (c->out == NULL) {
        free(body);
        conn_close(c);
        return;
    }
    memcpy(c->out, hdr, (size_t)hl);
    if (send_body > 0)
        memcpy(c->out + hl, body, send_body);
    free(body);
    c->close_after = !keep_alive;
    c->writing = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_buf_t b = uv_buf_init(c->out, (unsigned)((size_t)hl + send_body));
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(c->out);
        c->out = NULL;
        c->writing = 0;
        conn_close(c);
    }
}

static void respond_text(http_conn_t *c, int status, const char *text, int head_only, int keep)
{
    size_t n = strlen(text);
    char *b = malloc(n + 1);
    if (b != NULL)
        memcpy(b, text, n + 1);
    respond(c, status, NULL, b, b != NULL ? n : 0, head_only, keep);
}

static void handle(http_conn_t *c, const http_request_t *req)
{
    int head = strcmp(req->method, "HEAD") == 0;
    if (!head && strcmp(req->method, "GET") != 0) {
        respond_text(c, 405, "method not allowed: GET or HEAD\n", 0, req->keep_alive);
        return;
    }
    const route_t *rt = NULL;
    for (int i = 0; i < c->srv->nroutes; i++)
        if (strcmp(c->srv->routes[i].path, req->path) == 0)
            rt = &c->srv->routes[i];
    if (rt == NULL) {
        respond_text(c, 404, "not found: try /metrics or /health\n", head, req->keep_alive);
        return;
    }
    http_response_t resp = {200, NULL, NULL, 0};
    rt->cb(rt->arg, req, &resp);
    respond(c, resp.status, resp.content_type, resp.body, resp.body != NULL ? resp.len : 0, head,
            req->keep_alive);
}

/* Answer the requests buffered, one at a time (stops while writing). */
static void process(http_conn_t *c)
{
    while (!c->closing && !c->writing && c->inlen > 0) {
        http_request_t req;
        int rv = http_parse(c->in, c->inlen, &req);
        if (rv == 0)
            return;
        if (rv < 0) {
            c->inlen = 0;
            char msg[64];
            snprintf(msg, sizeof(msg), "%s\n", http_reason(-rv));
            for (char *m = msg; *m; m++)
                *m = (char)tolower((unsigned char)*m);
            respond_text(c, -rv, msg, 0, 0);
            return;
        }
        memmove(c->in, c->in + rv, c->inlen - (size_t)rv);
        c->inlen -= (size_t)rv;
        if (req.has_body)
            c->inlen = 0; /* never read: the connection closes after the answer */
        handle(c, &req);
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    http_conn_t *c = st->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (c->draining) {
        c->inlen = 0;
        return;
    }
    c->inlen += (size_t)nread;
    process(c);
}

static void on_timeout(uv_timer_t *t)
{
    http_conn_t *c = t->data;
    if (c->closing)
        return;
    if (c->writing || c->draining || c->inlen == 0) {
        conn_close(c);
        return;
    }
    c->inlen = 0;
    respond_text(c, 408, "request timeout\n", 0, 0);
}

static void on_connection(uv_stream_t *ls, int status)
{
    http_server_t *s = ls->data;
    if (status < 0)
        return;
    http_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->nalive++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0 || s->nconns > HTTP_MAX_CONNS) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->timer, on_timeout, HTTP_REQUEST_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static void on_listener_closed(uv_handle_t *h)
{
    http_server_t *s = h->data;
    s->listener_open = 0;
    server_maybe_free(s);
}

int http_server_start(uv_loop_t *loop, const char *addr, http_server_t **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    /* Called at process start: a blocking lookup of a host name is
     * acceptable here (addr.h); the address is bound once. */
    struct sockaddr_storage ss;
    if (addr_resolve_blocking(addr, AF_UNSPEC, &ss, err, errlen) != 0)
        return -1;
    http_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->loop = loop;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->listener_open = 1;
    int rv = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
    if (rv != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, uv_strerror(rv));
        http_server_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

int http_route(http_server_t *s, const char *path, http_handler_cb cb, void *arg)
{
    if (s->nroutes == HTTP_MAX_ROUTES || strlen(path) >= HTTP_MAX_PATH)
        return -1;
    route_t *r = &s->routes[s->nroutes++];
    snprintf(r->path, sizeof(r->path), "%s", path);
    r->cb = cb;
    r->arg = arg;
    return 0;
}

void http_server_close(http_server_t *s)
{
    if (s == NULL || s->closing)
        return;
    s->closing = 1;
    while (s->conns != NULL)
        conn_close(s->conns);
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}

size_t http_server_conns(const http_server_t *s)
{
    return s != NULL ? s->nconns : 0;
}

int http_server_port(const http_server_t *s)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (s == NULL || uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}
