/* Blocking HTTP/1.1 GET with one deadline. See httpc.h. */
#include "httpc.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "shale_errors.h"

#define HEAD_MAX 16384

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "HOST:PORT" or "[V6]:PORT" into host and port strings. 0 or -1. */
static int split(const char *hp, char *host, size_t hlen, char *port, size_t plen)
{
    const char *h = hp, *hend, *p;
    if (hp == NULL || hp[0] == '\0')
        return -1;
    if (hp[0] == '[') {
        h = hp + 1;
        hend = strchr(h, ']');
        if (hend == NULL || hend[1] != ':')
            return -1;
        p = hend + 2;
    } else {
        hend = strrchr(hp, ':');
        if (hend == NULL)
            return -1;
        p = hend + 1;
    }
    size_t n = (size_t)(hend - h);
    if (n >= hlen || strlen(p) == 0 || strlen(p) >= plen || strspn(p, "0123456789") != strlen(p))
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    snprintf(port, plen, "%s", p);
    return 0;
}

int httpc_reach_addr(const char *http_addr, const char *client_addr, char *out, size_t outlen)
{
    char host[256], port[16], chost[256], cport[16];
    if (split(http_addr, host, sizeof(host), port, sizeof(port)) != 0)
        return -1;
    int wildcard = host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
    if (wildcard && client_addr != NULL &&
        split(client_addr, chost, sizeof(chost), cport, sizeof(cport)) == 0)
        snprintf(host, sizeof(host), "%s", chost);
    int n = strchr(host, ':') != NULL ? snprintf(out, outlen, "[%s]:%s", host, port)
                                      : snprintf(out, outlen, "%s:%s", host, port);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* Wait for events on fd until the deadline. 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {.fd = fd, .events = events};
        int rv = poll(&pfd, 1, (int)left);
        if (rv > 0)
            return 1;
        if (rv == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

static int connect_to(const char *host, const char *port, long long deadline, char *err,
                      size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gai));
        return SHALE_EIO;
    }
    int fd = -1, code = SHALE_EIO;
    int tried = 0;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        tried++;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            snprintf(err, errlen, "socket: %s", strerror(errno));
            continue;
        }
        int rv = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rv != 0 && errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, deadline);
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (w == 0) {
                snprintf(err, errlen, "connect to %s:%s: timed out", host, port);
                code = SHALE_ETIMEOUT;
                rv = -1;
                errno = ETIMEDOUT;
            } else if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) {
                rv = -1;
            } else if (soerr != 0) {
                errno = soerr;
                rv = -1;
            } else {
                rv = 0;
            }
        }
        if (rv != 0) {
            if (code != SHALE_ETIMEOUT)
                snprintf(err, errlen, "connect to %s:%s: %s", host, port, strerror(errno));
            close(fd);
            fd = -1;
            if (code == SHALE_ETIMEOUT)
                break;
        }
    }
    freeaddrinfo(res);
    if (tried == 0)
        snprintf(err, errlen, "no address for %s", host);
    return fd >= 0 ? fd : code;
}

static int send_all(int fd, const char *p, size_t n, long long deadline, char *err, size_t errlen)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(err, errlen, "send: %s", strerror(errno));
            return SHALE_EIO;
        }
        int r = wait_fd(fd, POLLOUT, deadline);
        if (r <= 0) {
            snprintf(err, errlen, r == 0 ? "send: timed out" : "send: poll failed");
            return r == 0 ? SHALE_ETIMEOUT : SHALE_EIO;
        }
    }
    return 0;
}

/* The value of header name in the head (NUL-terminated, CRLF lines), or
 * NULL. Copies at most vlen-1 bytes to val. */
static const char *header(const char *head, const char *name, char *val, size_t vlen)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l != NULL; l = strstr(l, "\r\n")) {
        l += 2;
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t n = strcspn(v, "\r\n");
            while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                n--;
            if (n >= vlen)
                n = vlen - 1;
            memcpy(val, v, n);
            val[n] = '\0';
            return val;
        }
    }
    return NULL;
}

/* Read the answer until EOF, or until Content-Length bytes of body once
 * the head is known. buf grows (malloc'd). */
static int read_answer(int fd, long long deadline, char **buf, size_t *n, char *err, size_t errlen)
{
    size_t cap = 8192, len = 0, want = (size_t)-1;
    char *b = malloc(cap + 1);
    if (b == NULL)
        return SHALE_ENOMEM;
    for (;;) {
        if (len == cap) {
            if (cap >= HTTPC_MAX_BODY + HEAD_MAX) {
                free(b);
                snprintf(err, errlen, "answer over %u bytes", HTTPC_MAX_BODY);
                return SHALE_ETOOLARGE;
            }
            cap *= 2;
            char *nb = realloc(b, cap + 1);
            if (nb == NULL) {
                free(b);
                return SHALE_ENOMEM;
            }
            b = nb;
        }
        ssize_t r = recv(fd, b + len, cap - len, 0);
        if (r > 0) {
            len += (size_t)r;
            b[len] = '\0';
            if (want == (size_t)-1) {
                char *end = strstr(b, "\r\n\r\n");
                char cl[32];
                if (end != NULL && header(b, "Content-Length", cl, sizeof(cl)) != NULL) {
                    char *e = NULL;
                    unsigned long long v = strtoull(cl, &e, 10);
                    if (e == cl || *e != '\0' || v > HTTPC_MAX_BODY) {
                        free(b);
                        snprintf(err, errlen, "bad or too large Content-Length '%s'", cl);
                        return v > HTTPC_MAX_BODY ? SHALE_ETOOLARGE : SHALE_EIO;
                    }
                    want = (size_t)(end + 4 - b) + (size_t)v;
                }
            }
            if (want != (size_t)-1 && len >= want)
                break;
            continue;
        }
        if (r == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            free(b);
            snprintf(err, errlen, "recv: %s", strerror(errno));
            return SHALE_EIO;
        }
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) {
            free(b);
            snprintf(err, errlen, w == 0 ? "no complete answer in time" : "recv: poll failed");
            return w == 0 ? SHALE_ETIMEOUT : SHALE_EIO;
        }
    }
    b[len] = '\0';
    *buf = b;
    *n = len;
    return 0;
}

int httpc_get(const char *hostport, const char *path, int timeout_ms, int *status, char **body,
              size_t *len, char *err, size_t errlen)
{
    char host[256], port[16];
    *body = NULL;
    *len = 0;
    *status = 0;
    if (split(hostport, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(err, errlen, "'%s' is not HOST:PORT", hostport != NULL ? hostport : "");
        return SHALE_EINVAL;
    }
    long long deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 1);
    int fd = connect_to(host, port, deadline, err, errlen);
    if (fd < 0)
        return fd;
    char req[1024];
    int rn = snprintf(req, sizeof(req),
                      "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shalectl\r\n"
                      "Connection: close\r\n\r\n",
                      path, hostport);
    if (rn < 0 || (size_t)rn >= sizeof(req)) {
        close(fd);
        snprintf(err, errlen, "path too long");
        return SHALE_EINVAL;
    }
    char *buf = NULL;
    size_t n = 0;
    int rv = send_all(fd, req, (size_t)rn, deadline, err, errlen);
    if (rv == 0)
        rv = read_answer(fd, deadline, &buf, &n, err, errlen);
    close(fd);
    if (rv != 0)
        return rv;
    char *end = strstr(buf, "\r\n\r\n");
    int code = 0;
    char te[64];
    if (end == NULL || sscanf(buf, "HTTP/1.%*1[01] %3d", &code) != 1 || code < 100 || code > 599) {
        snprintf(err, errlen, "not an HTTP/1.x answer");
        free(buf);
        return SHALE_EIO;
    }
    *end = '\0'; /* the head, for header() */
    if (header(buf, "Transfer-Encoding", te, sizeof(te)) != NULL) {
        snprintf(err, errlen, "Transfer-Encoding %s is not supported", te);
        free(buf);
        return SHALE_EIO;
    }
    char cl[32];
    size_t blen = n - (size_t)(end + 4 - buf);
    if (header(buf, "Content-Length", cl, sizeof(cl)) != NULL) {
        unsigned long long want = strtoull(cl, NULL, 10);
        if (want > (unsigned long long)blen) {
            snprintf(err, errlen, "connection closed after %zu of %s body bytes", blen, cl);
            free(buf);
            return SHALE_EIO;
        }
        blen = (size_t)want; /* anything after it is not this answer's */
    }
    memmove(buf, end + 4, blen);
    buf[blen] = '\0';
    *body = buf;
    *len = blen;
    *status = code;
    return 0;
}
