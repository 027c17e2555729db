/* Snapshot transfer, serving side: one SNAP_FETCH request -> a RocksDB
 * checkpoint streamed as SNAP_CHUNK frames, paced by the connection.
 * See snapshot_xfer.h for the whole design.
 *
 * Rules of a stream:
 *  - it owns its checkpoint directory (<data>/snap-out-N), its request and
 *    the request's connection reference until it ends, and ends exactly
 *    once: finished (the done frame), failed (an ERROR frame), stalled, or
 *    abandoned because the connection closed (no answer possible);
 *  - chunks are produced only while fewer than SNAPX_OUT_HIGH bytes are
 *    unsent on the connection (and, with a rate limit, while the byte budget
 *    allows); the drain callback and a timer produce the rest;
 *  - files are read with pread on the loop thread, chunk by chunk: nothing
 *    bigger than one chunk is ever held besides the queued frames. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "frame.h"
#include "keyhash.h"
#include "log.h"
#include "server.h"
#include "snapshot_xfer.h"
#include "tls_member.h"
#include "wire.h"

/* ---- Streams ---------------------------------------------------------------------*/

typedef struct sx_file {
    char *name;
    uint64_t size;
} sx_file_t;

typedef struct sx_stream {
    shaled_t *s;
    sreq_t *r;        /* the SNAP_FETCH request (holds the connection) */
    uv_timer_t timer; /* rate limit refill and stall check */
    char dir[700];    /* the checkpoint (removed when the stream ends) */
    sx_file_t *files;
    size_t nfiles, cur;
    int fd;             /* files[cur] open, or -1 */
    uint64_t off;       /* next offset in files[cur] */
    uint64_t applied;   /* the checkpoint's applied index */
    uint64_t leader_ms; /* and its freshness (s->applied_leader_ms then) */
    uint64_t total;     /* raw bytes of all files */
    uint64_t sent;      /* raw bytes queued so far */
    uint64_t wire;      /* compressed bytes queued so far */
    uint32_t chunk;     /* raw bytes per chunk */
    uint8_t *raw, *zbuf;
    size_t zcap;
    ZSTD_CCtx *z;
    uint64_t rate;  /* bytes per second, 0: unlimited */
    int64_t budget; /* bytes that may be sent now (rate limit) */
    uint64_t refill_ms, progress_ms, started_ms;
    int pumping; /* inside pump(): a close is handled on the way out */
    int conn_gone;
    int err; /* send_chunk failure: code and message */
    char msg[1200];
} sx_stream_t;

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Release everything but the request (answered or freed by the caller). */
static void stream_release(sx_stream_t *st)
{
    if (st->fd >= 0)
        close(st->fd);
    for (size_t i = 0; i < st->nfiles; i++)
        free(st->files[i].name);
    free(st->files);
    free(st->raw);
    free(st->zbuf);
    ZSTD_freeCCtx(st->z);
    if (st->dir[0] != '\0' && snapx_remove_tree(st->dir) != 0)
        log_warn("cannot remove a snapshot checkpoint", " dir=%s err=\"%s\"", st->dir,
                 strerror(errno));
    st->s->snap_streams--;
    uv_timer_stop(&st->timer);
    uv_close((uv_handle_t *)&st->timer, on_timer_closed);
}

/* End the stream with the done frame (code 0) or an error answer. */
static void stream_end(sx_stream_t *st, int code, const char *msg)
{
    conn_set_drain_cb(st->r->conn, NULL, NULL);
    uint64_t ms = shaled_now_ms() - st->started_ms;
    if (code == 0) {
        Shale__SnapChunk done = SHALE__SNAP_CHUNK__INIT;
        done.has_done = 1;
        done.done = 1;
        done.has_applied_index = 1;
        done.applied_index = st->applied;
        done.has_total_bytes = 1;
        done.total_bytes = st->sent;
        done.has_nfiles = 1;
        done.nfiles = (uint32_t)st->nfiles;
        done.has_leader_ms = st->leader_ms != 0;
        done.leader_ms = st->leader_ms;
        log_info("snapshot stream done",
                 " peer=%s applied=%llu files=%zu bytes=%llu wire_bytes=%llu ms=%llu",
                 conn_peer(st->r->conn), (unsigned long long)st->applied, st->nfiles,
                 (unsigned long long)st->sent, (unsigned long long)st->wire,
                 (unsigned long long)ms);
        sreq_reply(st->r, SHALE_MSG_SNAP_CHUNK, &done.base);
    } else {
        log_warn("snapshot stream failed", " peer=%s sent=%llu err=\"%s\"", conn_peer(st->r->conn),
                 (unsigned long long)st->sent, msg);
        sreq_fail(st->r, code, msg);
    }
    stream_release(st);
}

static int stream_fail(sx_stream_t *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int stream_fail(sx_stream_t *st, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
    va_end(ap);
    st->err = code;
    return -1;
}

/* Queue the next chunk. Returns 1 when one was queued, 0 when every file has
 * been sent, -1 on error (st->err, st->msg). */
static int send_chunk(sx_stream_t *st)
{
    char path[1024];
    if (st->cur >= st->nfiles)
        return 0;
    sx_file_t *f = &st->files[st->cur];
    if (st->fd < 0) {
        snprintf(path, sizeof(path), "%s/%s", st->dir, f->name);
        st->fd = open(path, O_RDONLY | O_CLOEXEC);
        st->off = 0;
        if (st->fd < 0)
            return stream_fail(st, SHALE_ESTORAGE, "snapshot: cannot open %s: %s", path,
                               strerror(errno));
    }
    size_t want = f->size - st->off < st->chunk ? (size_t)(f->size - st->off) : st->chunk;
    size_t n = 0;
    while (n < want) {
        ssize_t got = pread(st->fd, st->raw + n, want - n, (off_t)(st->off + n));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return stream_fail(st, SHALE_ESTORAGE, "snapshot: read %s: %s", f->name,
                               strerror(errno));
        if (got == 0)
            return stream_fail(st, SHALE_ESTORAGE, "snapshot: %s shrank while sent", f->name);
        n += (size_t)got;
    }
    uint64_t sum = 0;
    size_t zn = snapx_chunk_pack(st->z, st->raw, n, st->zbuf, st->zcap, &sum);
    if (zn == 0)
        return stream_fail(st, SHALE_ENOMEM, "snapshot: compressing %s failed", f->name);
    Shale__SnapChunk ch = SHALE__SNAP_CHUNK__INIT;
    ch.file = f->name;
    ch.has_offset = 1;
    ch.offset = st->off;
    ch.has_data = 1;
    ch.data.data = st->zbuf;
    ch.data.len = zn;
    ch.has_raw_len = 1;
    ch.raw_len = (uint32_t)n;
    ch.has_checksum = 1;
    ch.checksum = sum;
    ch.has_file_size = 1;
    ch.file_size = f->size;
    ch.has_applied_index = 1;
    ch.applied_index = st->applied;
    ch.has_total_bytes = 1;
    ch.total_bytes = st->total;
    ch.has_nfiles = 1;
    ch.nfiles = (uint32_t)st->nfiles;
    size_t flen;
    uint8_t *frame = wire_pack(SHALE_MSG_SNAP_CHUNK, st->r->id, &ch.base, UINT32_MAX, &flen);
    if (frame == NULL)
        return stream_fail(st, SHALE_ENOMEM, "snapshot: out of memory");
    conn_send(st->r->conn, frame, flen);
    st->off += n;
    st->sent += n;
    st->wire += zn;
    st->budget -= (int64_t)n;
    st->progress_ms = shaled_now_ms();
    if (st->off >= f->size) {
        close(st->fd);
        st->fd = -1;
        st->cur++;
    }
    return 1;
}

/* Produce chunks while the connection and the rate limit allow. */
static void pump(sx_stream_t *st)
{
    conn_t *c = st->r->conn;
    int rv = 1;
    st->pumping = 1;
    while (!st->conn_gone && conn_is_open(c) && conn_out_bytes(c) < SNAPX_OUT_HIGH) {
        if (st->rate != 0 && st->budget <= 0)
            break;
        if ((rv = send_chunk(st)) <= 0)
            break;
    }
    st->pumping = 0;
    if (st->conn_gone || !conn_is_open(c)) {
        log_info("snapshot stream abandoned: the connection closed", " sent=%llu",
                 (unsigned long long)st->sent);
        sreq_free(st->r);
        stream_release(st);
    } else if (rv == 0) {
        stream_end(st, 0, NULL);
    } else if (rv < 0) {
        stream_end(st, st->err, st->msg);
    }
    /* Queued frames are written at the end of this loop turn. */
}

static void on_drain(conn_t *c, void *arg)
{
    sx_stream_t *st = arg;
    st->progress_ms = shaled_now_ms();
    if (!conn_is_open(c)) {
        st->conn_gone = 1;
        if (st->pumping)
            return; /* pump() ends it on its way out */
    }
    pump(st);
}

static void on_timer(uv_timer_t *t)
{
    sx_stream_t *st = t->data;
    uint64_t now = shaled_now_ms();
    if (now - st->progress_ms > SNAPX_STALL_MS) {
        char msg[128];
        snprintf(msg, sizeof(msg), "snapshot stream made no progress for %d s",
                 SNAPX_STALL_MS / 1000);
        stream_end(st, SHALE_ETIMEOUT, msg);
        return;
    }
    if (st->rate == 0)
        return;
    /* Token bucket: at most ~100 ms of rate (or one chunk) as a burst. */
    int64_t cap = (int64_t)(st->rate / 10 > st->chunk ? st->rate / 10 : st->chunk);
    st->budget += (int64_t)(st->rate * (now - st->refill_ms) / 1000);
    if (st->budget > cap)
        st->budget = cap;
    st->refill_ms = now;
    if (st->budget > 0 && conn_out_bytes(st->r->conn) < SNAPX_OUT_HIGH)
        pump(st);
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const sx_file_t *)a)->name, ((const sx_file_t *)b)->name);
}

/* Regular files of st->dir, sorted by name, with their sizes. */
static int list_files(sx_stream_t *st)
{
    DIR *d = opendir(st->dir);
    if (d == NULL)
        return -1;
    struct dirent *e;
    size_t cap = 0;
    int rv = 0;
    while (rv == 0 && (e = readdir(d)) != NULL) {
        char p[1024];
        struct stat sb;
        snprintf(p, sizeof(p), "%s/%s", st->dir, e->d_name);
        if (lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (st->nfiles == cap) {
            cap = cap ? cap * 2 : 32;
            sx_file_t *nf = realloc(st->files, cap * sizeof(*nf));
            if (nf == NULL) {
                rv = -1;
                break;
            }
            st->files = nf;
        }
        st->files[st->nfiles].name = strdup(e->d_name);
        st->files[st->nfiles].size = (uint64_t)sb.st_size;
        if (st->files[st->nfiles].name == NULL)
            rv = -1;
        else
            st->total += (uint64_t)sb.st_size, st->nfiles++;
    }
    closedir(d);
    if (st->nfiles > 1)
        qsort(st->files, st->nfiles, sizeof(*st->files), cmp_file);
    return rv;
}

/* With client certificates required (--tls-client-auth 1), the fetching
 * node's certificate must name a member of this group's configuration
 * (tls_member.h): a checkpoint is every key and value, so holding a
 * cluster-CA certificate is not enough. Without them the port serves
 * anyone every key through GET anyway, and there is no certificate to
 * check (the server does not ask for one). */
static int requester_is_member(shaled_t *s, sreq_t *r, char *msg, size_t len)
{
    const tls_sess_t *tls = conn_tls_sess(r->conn);
    if (tls == NULL || s->cfg.tls_client_auth == 0)
        return 1;
    const struct raft_configuration *c = &s->raft.configuration;
    char why[300] = "no configuration yet";
    for (unsigned i = 0; i < c->n; i++)
        if (tls_member_named(tls, c->servers[i].address, why, sizeof(why)))
            return 1;
    snprintf(msg, len, "snapshot: the client's certificate names no member of this group: %s", why);
    return 0;
}

void snapx_serve(shaled_t *s, sreq_t *r)
{
    char msg[STORE_ERRLEN + 128], err[STORE_ERRLEN];
    const Shale__SnapFetchRequest *q = (const Shale__SnapFetchRequest *)r->msg;
    uint32_t chunk =
        q->has_chunk_bytes && q->chunk_bytes != 0 ? q->chunk_bytes : SNAPX_CHUNK_DEFAULT;
    if (chunk < SNAPX_CHUNK_MIN || chunk > SNAPX_CHUNK_MAX) {
        snprintf(msg, sizeof(msg), "chunk_bytes %u outside %u..%u", chunk, SNAPX_CHUNK_MIN,
                 SNAPX_CHUNK_MAX);
        sreq_fail(r, chunk < SNAPX_CHUNK_MIN ? SHALE_EINVAL : SHALE_ETOOLARGE, msg);
        return;
    }
    if (!requester_is_member(s, r, msg, sizeof(msg))) {
        log_warn("snapshot stream refused: certificate names no member", " peer=%s why=\"%s\"",
                 conn_peer(r->conn), msg);
        sreq_fail(r, SHALE_ECLUSTER, msg); /* not one of this cluster's members */
        return;
    }
    if (s->snap_streams >= SNAPX_MAX_STREAMS) {
        snprintf(msg, sizeof(msg), "%d snapshot streams already running; retry shortly",
                 s->snap_streams);
        sreq_fail(r, SHALE_EOVERLOAD, msg);
        return;
    }
    uint64_t applied = store_applied_index(s->store);
    if (q->has_min_applied_index && q->min_applied_index > applied) {
        snprintf(msg, sizeof(msg), "this node has applied index %llu, below the requested %llu",
                 (unsigned long long)applied, (unsigned long long)q->min_applied_index);
        sreq_fail(r, SHALE_EUNAVAILABLE, msg);
        return;
    }
    sx_stream_t *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        sreq_fail(r, SHALE_ENOMEM, "snapshot: out of memory");
        return;
    }
    s->snap_streams++;
    st->s = s;
    st->r = r;
    st->fd = -1;
    st->chunk = chunk;
    st->applied = applied;
    st->leader_ms = s->applied_leader_ms;
    /* Above 1 TiB/s a limit means nothing (and the shift would overflow). */
    st->rate = s->cfg.snapshot_rate_mb < (1u << 20) ? s->cfg.snapshot_rate_mb << 20 : 0;
    st->budget = chunk;
    st->started_ms = st->refill_ms = st->progress_ms = shaled_now_ms();
    uv_timer_init(s->loop, &st->timer);
    st->timer.data = st;
    snprintf(st->dir, sizeof(st->dir), "%s/snap-out-%llu", s->cfg.data,
             (unsigned long long)++s->snap_seq);
    snapx_remove_tree(st->dir);
    /* Everything applied so far is in the checkpoint (this is the loop
     * thread: nothing is applied meanwhile); RocksDB flushes the memtable
     * first, so the checkpoint is SST files plus small metadata files. */
    uint64_t t0 = shaled_now_ms();
    if (store_checkpoint(s->store, st->dir, err) != 0) {
        snprintf(msg, sizeof(msg), "snapshot: checkpoint failed: %s", err);
        sreq_fail(r, SHALE_ESTORAGE, msg);
        stream_release(st);
        return;
    }
    st->zcap = snapx_chunk_bound(chunk);
    st->raw = malloc(chunk);
    st->zbuf = malloc(st->zcap);
    st->z = ZSTD_createCCtx();
    if (list_files(st) != 0 || st->raw == NULL || st->zbuf == NULL || st->z == NULL) {
        sreq_fail(r, SHALE_ENOMEM, "snapshot: cannot list the checkpoint or out of memory");
        stream_release(st);
        return;
    }
    log_info("snapshot stream started",
             " peer=%s applied=%llu files=%zu bytes=%llu chunk=%u checkpoint_ms=%llu",
             conn_peer(r->conn), (unsigned long long)applied, st->nfiles,
             (unsigned long long)st->total, chunk, (unsigned long long)(shaled_now_ms() - t0));
    conn_set_drain_cb(r->conn, on_drain, st);
    uint64_t every = st->rate != 0 ? 20 : 1000;
    uv_timer_start(&st->timer, on_timer, every, every);
    pump(st);
}
