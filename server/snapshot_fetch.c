/* Snapshot transfer, the parts that need no running node: the Raft
 * snapshot descriptor, the chunk codec, the blocking fetch client and the
 * directory helpers. Usable from tools and tests. See snapshot_xfer.h.
 *
 * Rules of a fetch:
 *  - nothing is trusted: file names are plain names, each file arrives in
 *    order from offset 0, no chunk exceeds the chunk size asked for or its
 *    file's announced size, every chunk's zstd frame decompresses to exactly
 *    raw_len bytes with the announced XXH64, each file ends at its size, and
 *    the done frame's totals match what arrived;
 *  - data goes to <dest>.part, fsynced file by file, and becomes <dest> by
 *    one rename (then the parent directory is fsynced): <dest> existing means
 *    the checkpoint is complete;
 *  - memory: one raw chunk, one frame buffer, one zstd context;
 *  - with opts->tls the stream runs inside TLS (tls_fd_*), since it comes
 *    from the source's client port, and the source's certificate must name
 *    the address dialed (tls_member.h); the source checks ours in turn. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "addr.h"
#include "config.h"
#include "frame.h"
#include "keyhash.h"
#include "log.h"
#include "shale_errors.h"
#include "snapshot_xfer.h"
#include "tls.h"
#include "tls_member.h"
#include "wire.h"

#define ZSTD_LEVEL 1
#define DESC_V2_HDR 32
#define DESC_MAGIC 0x53485331u /* "SHS1" */

/* ---- Chunk codec -------------------------------------------------------------*/

size_t snapx_chunk_bound(size_t n)
{
    return ZSTD_compressBound(n);
}

size_t snapx_chunk_pack(void *zctx, const uint8_t *raw, size_t n, uint8_t *out, size_t cap,
                        uint64_t *checksum)
{
    size_t zn = zctx != NULL ? ZSTD_compressCCtx(zctx, out, cap, raw, n, ZSTD_LEVEL)
                             : ZSTD_compress(out, cap, raw, n, ZSTD_LEVEL);
    if (ZSTD_isError(zn))
        return 0;
    *checksum = shale_hash64(raw, n, 0);
    return zn;
}

int snapx_chunk_unpack(void *dctx, const uint8_t *z, size_t zn, size_t raw_len, uint64_t checksum,
                       uint8_t *out, size_t cap)
{
    if (raw_len > cap)
        return SHALE_ETOOLARGE;
    /* The frame must say how big it is, and say raw_len: a lying frame is
     * refused before anything is decompressed. */
    unsigned long long fs = ZSTD_getFrameContentSize(z, zn);
    if (fs != raw_len)
        return SHALE_ECORRUPT;
    size_t n = dctx != NULL ? ZSTD_decompressDCtx(dctx, out, cap, z, zn)
                            : ZSTD_decompress(out, cap, z, zn);
    if (ZSTD_isError(n) || n != raw_len || shale_hash64(out, n, 0) != checksum)
        return SHALE_ECORRUPT;
    return 0;
}

/* ---- Raft snapshot descriptor ------------------------------------------------*/


int snapx_desc_encode(const snapx_desc_t *d, struct raft_buffer *out)
{
    size_t alen = strnlen(d->addr, sizeof(d->addr) - 1);
    size_t clen = strnlen(d->cluster_id, sizeof(d->cluster_id) - 1);
    size_t len = (DESC_V2_HDR + alen + clen + 7) & ~(size_t)7;
    uint8_t *p = raft_malloc(len);
    if (p == NULL)
        return RAFT_NOMEM;
    memset(p, 0, len);
    uint32_t magic = htonl(DESC_MAGIC), ver = htonl(2);
    uint16_t al = htons((uint16_t)alen), cl = htons((uint16_t)clen);
    memcpy(p, &magic, 4);
    memcpy(p + 4, &ver, 4);
    snapx_put_be64(p + 8, d->index);
    snapx_put_be64(p + 16, d->node_id);
    memcpy(p + 24, &al, 2);
    memcpy(p + 26, &cl, 2);
    memcpy(p + DESC_V2_HDR, d->addr, alen);
    memcpy(p + DESC_V2_HDR + alen, d->cluster_id, clen);
    out->base = p;
    out->len = len;
    return 0;
}

int snapx_desc_decode(const void *buf, size_t len, snapx_desc_t *d)
{
    const uint8_t *p = buf;
    uint32_t magic, ver;
    memset(d, 0, sizeof(*d));
    if (p == NULL || len < 16)
        return RAFT_MALFORMED;
    memcpy(&magic, p, 4);
    memcpy(&ver, p + 4, 4);
    if (ntohl(magic) != DESC_MAGIC || ntohl(ver) == 0)
        return RAFT_MALFORMED;
    d->version = ntohl(ver);
    d->index = snapx_get_be64(p + 8);
    if (d->version == 1)
        return 0;
    uint16_t al, cl;
    if (len < DESC_V2_HDR)
        return RAFT_MALFORMED;
    d->node_id = snapx_get_be64(p + 16);
    memcpy(&al, p + 24, 2);
    memcpy(&cl, p + 26, 2);
    al = ntohs(al);
    cl = ntohs(cl);
    if (al >= sizeof(d->addr) || cl >= sizeof(d->cluster_id) || DESC_V2_HDR + (size_t)al + cl > len)
        return RAFT_MALFORMED;
    memcpy(d->addr, p + DESC_V2_HDR, al);
    memcpy(d->cluster_id, p + DESC_V2_HDR + al, cl);
    return 0;
}

/* ---- Directories ---------------------------------------------------------------*/

int snapx_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    struct dirent *e;
    char p[1024];
    int rv = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if ((size_t)snprintf(p, sizeof(p), "%s/%s", path, e->d_name) >= sizeof(p)) {
            rv = -1;
            continue;
        }
        if (snapx_remove_tree(p) != 0)
            rv = -1;
    }
    closedir(d);
    return rmdir(path) == 0 ? rv : -1;
}

void snapx_recover_dirs(const char *data_dir, const char *db_dir)
{
    char old[1024], p[1024];
    struct stat st;
    snprintf(old, sizeof(old), "%s.old", db_dir);
    if (lstat(db_dir, &st) != 0 && errno == ENOENT && lstat(old, &st) == 0) {
        /* A swap was cut between its two renames: the old store is whole. */
        if (rename(old, db_dir) == 0)
            log_warn("an interrupted state swap was undone: the old store is back", " db=%s",
                     db_dir);
    }
    DIR *d = opendir(data_dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "snap-out-", 9) != 0 && strncmp(e->d_name, "snap-in", 7) != 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", data_dir, e->d_name);
        snapx_remove_tree(p);
        log_info("removed a leftover snapshot directory", " dir=%s", p);
    }
    closedir(d);
    if (lstat(old, &st) == 0) {
        snapx_remove_tree(old);
        log_info("removed the store replaced by a snapshot", " dir=%s", old);
    }
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- Blocking socket I/O -------------------------------------------------------*/

/* The connection to the source: a socket, and a TLS session on it or not. */
typedef struct link {
    int fd;
    tls_sess_t *tls;
    char why[TLS_ERRLEN]; /* the TLS failure, when one ended the stream */
} link_t;

/* A tls_fd_* failure as a SHALE_E* code (errno intact for TLS_EIO). */
static int tls_code(link_t *l, int rv)
{
    if (rv == TLS_EIO)
        return errno == EAGAIN || errno == EWOULDBLOCK ? SHALE_ETIMEOUT : SHALE_EIO;
    tls_fd_strerror(l->tls, rv, l->why, sizeof(l->why));
    return rv == TLS_ENOMEM ? SHALE_ENOMEM : SHALE_EPROTO;
}

/* 0, or the SHALE_E* of the failure (SHALE_ETIMEOUT / SHALE_EIO). */
static int io_code(ssize_t r)
{
    if (r == 0)
        return SHALE_EIO; /* EOF */
    return errno == EAGAIN || errno == EWOULDBLOCK ? SHALE_ETIMEOUT : SHALE_EIO;
}

static int send_all(link_t *l, const uint8_t *p, size_t n)
{
    if (l->tls != NULL) {
        int rv = tls_fd_send(l->tls, l->fd, p, n);
        return rv == 0 ? 0 : tls_code(l, rv);
    }
    int fd = l->fd;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return io_code(w);
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int recv_all(link_t *l, uint8_t *p, size_t n)
{
    while (n > 0 && l->tls != NULL) {
        long r = tls_fd_recv(l->tls, l->fd, p, n);
        if (r == 0)
            return SHALE_EIO; /* EOF */
        if (r < 0)
            return tls_code(l, (int)r);
        p += r;
        n -= (size_t)r;
    }
    int fd = l->fd;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return io_code(r);
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int send_msg(link_t *l, uint16_t type, uint64_t id, const ProtobufCMessage *m)
{
    size_t len;
    uint8_t *f = wire_pack(type, id, m, UINT32_MAX, &len);
    if (f == NULL)
        return SHALE_ENOMEM;
    int rv = send_all(l, f, len);
    free(f);
    return rv;
}

/* ---- Fetch ----------------------------------------------------------------------*/

typedef struct fetch {
    const char *addr;
    char *err;
    size_t errlen;
    char part[1024];
    int out;        /* file being written, or -1 */
    char file[256]; /* its name */
    uint64_t file_size, written;
    uint32_t files; /* files started */
    uint64_t total; /* raw bytes written */
    int have_totals;
    uint64_t ann_total, ann_applied;
    uint32_t ann_files;
    uint32_t chunk; /* largest raw chunk accepted */
    uint8_t *raw;
    ZSTD_DCtx *z;
    snapx_fetch_stats_t st;
    const uint8_t *cred; /* HELLO.credential, or NULL */
    size_t cred_len;
    void (*progress)(void *arg, uint64_t done, uint64_t total);
    void *progress_arg;
} fetch_t;

static int ferr(fetch_t *f, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int ferr(fetch_t *f, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->err, f->errlen, fmt, ap);
    va_end(ap);
    return code;
}

static int safe_name(const char *n)
{
    return n != NULL && n[0] != '\0' && n[0] != '.' && strchr(n, '/') == NULL && strlen(n) < 200;
}

int snapx_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rv = fsync(fd);
    close(fd);
    return rv;
}

/* Finish the file being written: complete, durable, closed. */
static int close_file(fetch_t *f)
{
    if (f->out < 0)
        return 0;
    if (f->written != f->file_size)
        return ferr(f, SHALE_ECORRUPT, "%s: %s ended at %llu of %llu bytes", f->addr, f->file,
                    (unsigned long long)f->written, (unsigned long long)f->file_size);
    int rv = fsync(f->out);
    int e = errno;
    if (close(f->out) != 0 && rv == 0) {
        rv = -1;
        e = errno;
    }
    f->out = -1;
    if (rv != 0)
        return ferr(f, SHALE_ESTORAGE, "write %s/%s: %s", f->part, f->file, strerror(e));
    return 0;
}

static int on_chunk(fetch_t *f, const Shale__SnapChunk *ch)
{
    if (!ch->has_total_bytes || !ch->has_nfiles || !ch->has_applied_index)
        return ferr(f, SHALE_EPROTO, "%s: a snapshot chunk without totals", f->addr);
    if (!f->have_totals) {
        f->have_totals = 1;
        f->ann_total = ch->total_bytes;
        f->ann_files = ch->nfiles;
        f->ann_applied = ch->applied_index;
    } else if (ch->total_bytes != f->ann_total || ch->nfiles != f->ann_files ||
               ch->applied_index != f->ann_applied) {
        return ferr(f, SHALE_EPROTO, "%s: snapshot totals changed within the stream", f->addr);
    }
    if (!safe_name(ch->file) || !ch->has_offset || !ch->has_raw_len || !ch->has_checksum ||
        !ch->has_file_size || !ch->has_data)
        return ferr(f, SHALE_EPROTO, "%s: a snapshot chunk with a bad file name or fields",
                    f->addr);
    if (f->out < 0 || strcmp(ch->file, f->file) != 0) {
        int rv = close_file(f);
        if (rv != 0)
            return rv;
        if (++f->files > f->ann_files)
            return ferr(f, SHALE_EPROTO, "%s: more files than the %u announced", f->addr,
                        f->ann_files);
        snprintf(f->file, sizeof(f->file), "%s", ch->file);
        char path[1400];
        snprintf(path, sizeof(path), "%s/%s", f->part, f->file);
        /* O_EXCL: a file sent twice is an error, not an overwrite. */
        f->out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (f->out < 0)
            return ferr(f, errno == EEXIST ? SHALE_EPROTO : SHALE_ESTORAGE, "create %s: %s", path,
                        strerror(errno));
        f->file_size = ch->file_size;
        f->written = 0;
    }
    if (ch->file_size != f->file_size || ch->offset != f->written || ch->raw_len > f->chunk ||
        f->written + ch->raw_len > f->file_size)
        return ferr(f, SHALE_EPROTO, "%s: chunk of %s at %llu (%u bytes) out of order or size",
                    f->addr, f->file, (unsigned long long)ch->offset, ch->raw_len);
    int rv = snapx_chunk_unpack(f->z, ch->data.data, ch->data.len, ch->raw_len, ch->checksum,
                                f->raw, f->chunk);
    if (rv != 0)
        return ferr(f, SHALE_ECORRUPT, "%s: chunk of %s at %llu failed its checksum", f->addr,
                    f->file, (unsigned long long)ch->offset);
    size_t n = ch->raw_len, at = 0;
    while (at < n) {
        ssize_t w = write(f->out, f->raw + at, n - at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return ferr(f, SHALE_ESTORAGE, "write %s/%s: %s", f->part, f->file,
                        w < 0 ? strerror(errno) : "short write");
        at += (size_t)w;
    }
    f->written += n;
    f->total += n;
    f->st.bytes += n;
    f->st.wire_bytes += ch->data.len;
    f->st.chunks++;
    if (f->progress != NULL)
        f->progress(f->progress_arg, f->total, f->ann_total);
    return 0;
}

static int on_done(fetch_t *f, const Shale__SnapChunk *ch, uint64_t min_index, uint64_t *applied)
{
    int rv = close_file(f);
    if (rv != 0)
        return rv;
    if (!ch->has_total_bytes || !ch->has_nfiles || !ch->has_applied_index)
        return ferr(f, SHALE_EPROTO, "%s: snapshot done frame without totals", f->addr);
    if (ch->total_bytes != f->total || ch->nfiles != f->files ||
        (f->have_totals && (f->ann_total != f->total || f->ann_applied != ch->applied_index)))
        return ferr(f, SHALE_ECORRUPT,
                    "%s: snapshot totals do not match: %llu bytes in %u files received, "
                    "%llu in %u announced",
                    f->addr, (unsigned long long)f->total, f->files,
                    (unsigned long long)ch->total_bytes, ch->nfiles);
    if (ch->applied_index < min_index)
        return ferr(f, SHALE_EPROTO, "%s: checkpoint at index %llu, below the %llu asked for",
                    f->addr, (unsigned long long)ch->applied_index, (unsigned long long)min_index);
    *applied = ch->applied_index;
    f->st.files = f->files;
    f->st.leader_ms = ch->has_leader_ms ? ch->leader_ms : 0;
    return 0;
}

static int connect_to(const char *addr, int timeout_ms, int *out, char *err, size_t errlen)
{
    /* A blocking client: its caller (fsm_restore -> snapx_install, on the
     * loop thread) waits for the whole transfer anyway, so a member's host
     * name is looked up with a blocking getaddrinfo here, on every fetch
     * (addr.h); an unresolvable name costs the resolver's timeout once per
     * source tried. */
    struct sockaddr_storage sa;
    char why[600], host[ADDR_HOST_MAX], port[8];
    if (addr == NULL || addr_split(addr, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(err, errlen, "bad snapshot source address '%s' (want host:port)",
                 addr ? addr : "");
        return SHALE_EINVAL;
    }
    if (addr_resolve_blocking(addr, AF_UNSPEC, &sa, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "snapshot source %s", why);
        return SHALE_EIO; /* a name that does not resolve now: retried like a refusal */
    }
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return SHALE_EIO;
    }
    /* On Linux SO_SNDTIMEO bounds connect() too. */
    struct timeval tv = {.tv_sec = timeout_ms / 1000,
                         .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        connect(fd, (struct sockaddr *)&sa,
                sa.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                        : sizeof(struct sockaddr_in6)) != 0) {
        int e = errno;
        snprintf(err, errlen, "connect to %s: %s", addr, strerror(e));
        close(fd);
        return e == EINPROGRESS || e == EAGAIN || e == ETIMEDOUT ? SHALE_ETIMEOUT : SHALE_EIO;
    }
    *out = fd;
    return 0;
}

/* The stream itself: HELLO, SNAP_FETCH, chunks until done or an error. */
static int run_fetch(fetch_t *f, link_t *l, const char *cluster_id, uint64_t min_index,
                     uint64_t *applied)
{
    Shale__Hello h = SHALE__HELLO__INIT;
    h.protocol_version = SHALE_PROTOCOL_VERSION;
    h.cluster_id = (char *)(cluster_id != NULL ? cluster_id : "");
    h.peer_kind = SHALE__PEER_KIND__PEER_NODE;
    h.client_name = "snapshot-fetch";
    if (f->cred != NULL) {
        h.has_credential = 1;
        h.credential.data = (uint8_t *)f->cred;
        h.credential.len = f->cred_len;
    }
    Shale__SnapFetchRequest q = SHALE__SNAP_FETCH_REQUEST__INIT;
    q.has_min_applied_index = 1;
    q.min_applied_index = min_index;
    q.has_chunk_bytes = 1;
    q.chunk_bytes = f->chunk;
    int rv = send_msg(l, SHALE_MSG_HELLO, 1, &h.base);
    if (rv == 0)
        rv = send_msg(l, SHALE_MSG_SNAP_FETCH_REQ, 2, &q.base);
    if (rv != 0)
        return ferr(f, rv, "send to %s: %s", f->addr, l->why[0] ? l->why : strerror(errno));
    size_t cap = 0;
    uint8_t *buf = NULL;
    for (;;) {
        uint8_t hdr[FRAME_HEADER_SIZE];
        frame_hdr_t fh;
        if ((rv = recv_all(l, hdr, sizeof(hdr))) != 0) {
            rv = ferr(f, rv, "snapshot stream from %s broke: %s", f->addr,
                      l->why[0]                ? l->why
                      : rv == SHALE_ETIMEOUT ? "timed out"
                                             : "connection closed or reset");
            break;
        }
        if (frame_hdr_parse(hdr, SNAPX_FRAME_MAX, &fh) != 0) {
            rv = ferr(f, SHALE_EPROTO, "%s: bad frame header in a snapshot stream", f->addr);
            break;
        }
        if (cap < (size_t)fh.len + 1) {
            uint8_t *nb = realloc(buf, (size_t)fh.len + 1);
            if (nb == NULL) {
                rv = ferr(f, SHALE_ENOMEM, "out of memory");
                break;
            }
            buf = nb;
            cap = (size_t)fh.len + 1;
        }
        if ((rv = recv_all(l, buf, fh.len)) != 0) {
            rv = ferr(f, rv, "snapshot stream from %s broke mid-frame%s%s", f->addr,
                      l->why[0] ? ": " : "", l->why);
            break;
        }
        if (fh.type == SHALE_MSG_HELLO_REPLY && fh.id == 1)
            continue;
        if (fh.type == SHALE_MSG_ERROR) {
            Shale__Error *e = shale__error__unpack(NULL, fh.len, buf);
            int code = e != NULL && e->code > 0 && e->code < 100 ? -(int)e->code : SHALE_EPROTO;
            rv = ferr(f, code, "%s refused the snapshot: %s (%s)", f->addr,
                      e != NULL && e->message != NULL ? e->message : "error", shale_strerror(code));
            if (e != NULL)
                shale__error__free_unpacked(e, NULL);
            break;
        }
        if (fh.type != SHALE_MSG_SNAP_CHUNK || fh.id != 2) {
            rv = ferr(f, SHALE_EPROTO, "%s: unexpected %s (id %llu) in a snapshot stream", f->addr,
                      frame_type_name(fh.type), (unsigned long long)fh.id);
            break;
        }
        Shale__SnapChunk *ch = shale__snap_chunk__unpack(NULL, fh.len, buf);
        if (ch == NULL) {
            rv = ferr(f, SHALE_EPROTO, "%s: malformed snapshot chunk", f->addr);
            break;
        }
        int done = ch->has_done && ch->done;
        rv = done ? on_done(f, ch, min_index, applied) : on_chunk(f, ch);
        shale__snap_chunk__free_unpacked(ch, NULL);
        if (rv != 0 || done)
            break;
    }
    free(buf);
    return rv;
}

int snapx_fetch_ex(const char *addr, const char *cluster_id, uint64_t min_index,
                   const char *dest_dir, const snapx_fetch_opts_t *opts, uint64_t *applied,
                   snapx_fetch_stats_t *stats, char *err, size_t errlen)
{
    fetch_t f = {.addr = addr, .err = err, .errlen = errlen, .out = -1};
    uint64_t t0 = mono_ms();
    int timeout = opts != NULL && opts->timeout_ms > 0 ? opts->timeout_ms : SNAPX_IO_TIMEOUT_MS;
    f.chunk = opts != NULL && opts->chunk_bytes != 0 ? opts->chunk_bytes : SNAPX_CHUNK_DEFAULT;
    if (opts != NULL) {
        f.progress = opts->progress;
        f.progress_arg = opts->progress_arg;
    }
    if (opts != NULL && opts->credential != NULL) {
        f.cred = opts->credential;
        f.cred_len = opts->credential_len;
    }
    if (stats != NULL)
        memset(stats, 0, sizeof(*stats));
    if (f.chunk < SNAPX_CHUNK_MIN || f.chunk > SNAPX_CHUNK_MAX)
        return ferr(&f, SHALE_EINVAL, "chunk_bytes %u outside %u..%u", f.chunk, SNAPX_CHUNK_MIN,
                    SNAPX_CHUNK_MAX);
    struct stat sb;
    if (dest_dir == NULL || dest_dir[0] == '\0' ||
        (size_t)snprintf(f.part, sizeof(f.part), "%s.part", dest_dir) >= sizeof(f.part))
        return ferr(&f, SHALE_EINVAL, "bad destination directory");
    if (lstat(dest_dir, &sb) == 0 || errno != ENOENT)
        return ferr(&f, SHALE_EINVAL, "%s already exists", dest_dir);
    snapx_remove_tree(f.part);
    if (mkdir(f.part, 0755) != 0)
        return ferr(&f, SHALE_ESTORAGE, "mkdir %s: %s", f.part, strerror(errno));
    int fd = -1;
    uint64_t got = 0;
    f.raw = malloc(f.chunk);
    f.z = ZSTD_createDCtx();
    int rv = f.raw == NULL || f.z == NULL ? ferr(&f, SHALE_ENOMEM, "out of memory")
                                          : connect_to(addr, timeout, &fd, err, errlen);
    link_t link = {.fd = fd};
    if (rv == 0 && opts != NULL && opts->tls != NULL) {
        char e[TLS_ERRLEN];
        link.tls = tls_sess_new(opts->tls, NULL, e, sizeof(e));
        int hrv = link.tls == NULL ? TLS_ENOMEM : tls_fd_handshake(link.tls, fd);
        if (hrv != 0) {
            int code = hrv == TLS_EIO && errno == EAGAIN ? SHALE_ETIMEOUT : SHALE_EIO;
            if (link.tls != NULL)
                tls_fd_strerror(link.tls, hrv, e, sizeof(e));
            rv = ferr(&f, code, "TLS with %s: %s", addr, e);
        } else if (!tls_member_named(link.tls, addr, e, sizeof(e))) {
            /* The source must be the member at addr (tls_member.h). */
            rv = ferr(&f, SHALE_ECLUSTER, "TLS with %s: %s", addr, e);
        }
    }
    if (rv == 0)
        rv = run_fetch(&f, &link, cluster_id, min_index, &got);
    tls_sess_free(link.tls);
    if (fd >= 0)
        close(fd);
    if (f.out >= 0)
        close(f.out);
    if (rv == 0 && snapx_fsync_dir(f.part) != 0)
        rv = ferr(&f, SHALE_ESTORAGE, "fsync %s: %s", f.part, strerror(errno));
    if (rv == 0 && rename(f.part, dest_dir) != 0)
        rv = ferr(&f, SHALE_ESTORAGE, "rename %s: %s", f.part, strerror(errno));
    if (rv == 0) {
        /* Make the rename durable: fsync the parent directory. */
        char parent[1024];
        snprintf(parent, sizeof(parent), "%s", dest_dir);
        char *slash = strrchr(parent, '/');
        if (slash == parent)
            slash[1] = '\0';
        else if (slash != NULL)
            *slash = '\0';
        else
            snprintf(parent, sizeof(parent), ".");
        if (snapx_fsync_dir(parent) != 0)
            rv = ferr(&f, SHALE_ESTORAGE, "fsync %s: %s", parent, strerror(errno));
    }
    if (rv != 0) {
        snapx_remove_tree(f.part);
        snapx_remove_tree(dest_dir);
    } else if (applied != NULL) {
        *applied = got;
    }
    free(f.raw);
    ZSTD_freeDCtx(f.z);
    f.st.ms = mono_ms() - t0;
    if (stats != NULL)
        *stats = f.st;
    return rv;
}

int snapx_fetch(const char *addr, const char *cluster_id, uint64_t min_index, const char *dest_dir,
                uint64_t *applied, char *err, size_t errlen)
{
    return snapx_fetch_ex(addr, cluster_id, min_index, dest_dir, NULL, applied, NULL, err, errlen);
}
