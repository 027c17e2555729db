/* A TLS session over a blocking socket. See tls.h ("Blocking sockets").
 *
 * Rules: every byte the session produces is sent before waiting for the
 * peer (the handshake and alerts included); a wait that times out, a reset
 * and an early close are TLS_EIO with errno saying which (0: closed). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "tls.h"

#define IO_CHUNK 16384

static int flush(tls_sess_t *s, int fd)
{
    uint8_t buf[IO_CHUNK];
    while (tls_sess_pending(s) > 0) {
        size_t n = tls_sess_take(s, buf, sizeof(buf));
        size_t off = 0;
        while (off < n) {
            ssize_t w = send(fd, buf + off, n - off, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return TLS_EIO;
            off += (size_t)w;
        }
    }
    return 0;
}

/* Read what the socket has into the session: 0, 1 at end of stream, or a
 * negative TLS_E*. */
static int pull(tls_sess_t *s, int fd)
{
    uint8_t buf[IO_CHUNK];
    ssize_t r;
    do
        r = recv(fd, buf, sizeof(buf), 0);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return TLS_EIO;
    if (r == 0) {
        errno = 0;
        return 1;
    }
    return tls_sess_feed(s, buf, (size_t)r);
}

int tls_fd_handshake(tls_sess_t *s, int fd)
{
    for (;;) {
        long r = tls_sess_read(s, NULL, 0);
        int f = flush(s, fd);
        if (r < 0)
            return (int)r;
        if (f != 0)
            return f;
        if (tls_sess_established(s))
            return 0;
        int p = pull(s, fd);
        if (p == 1)
            return TLS_EIO; /* closed during the handshake (errno 0) */
        if (p != 0)
            return p;
    }
}

int tls_fd_send(tls_sess_t *s, int fd, const void *data, size_t n)
{
    int rv = tls_sess_write(s, data, n);
    return rv != 0 ? rv : flush(s, fd);
}

long tls_fd_recv(tls_sess_t *s, int fd, void *buf, size_t cap)
{
    for (;;) {
        long r = tls_sess_read(s, buf, cap);
        int f = flush(s, fd);
        if (r != 0)
            return r;
        if (f != 0)
            return f;
        int p = pull(s, fd);
        if (p == 1)
            return 0;
        if (p != 0)
            return p;
    }
}

const char *tls_fd_strerror(const tls_sess_t *s, int code, char *buf, size_t len)
{
    int e = errno;
    if (code == TLS_EIO)
        snprintf(buf, len, "%s",
                 e == 0                            ? "connection closed by the peer"
                 : e == EAGAIN || e == EWOULDBLOCK ? "timed out"
                                                   : strerror(e));
    else if (s != NULL && tls_sess_errmsg(s)[0] != '\0')
        snprintf(buf, len, "%s", tls_sess_errmsg(s));
    else
        snprintf(buf, len, "TLS error %d", code);
    return buf;
}
