/* Raft log disk faults: a failed log write stops the node, never an ack.
 *
 * libraft 0.15 does not survive a failed append: with the Raft directory on
 * a full file system it segfaults while handling the error (seen here with a
 * 3 MB tmpfs; dmesg: "segfault at 0 ... in libraft.so.2.0.0"). Two defences:
 *
 *  1. Before it happens: a timer checks the free space of the Raft
 *     directory's file system every 100 ms; below a floor (two segments plus
 *     16 MiB) the node stops accepting writes and shuts down cleanly with
 *     exit code 2 and a message, like a failed RocksDB write.
 *  2. If it happens anyway (a burst between checks, an I/O error): io->append
 *     is wrapped in place (struct raft_io is the library's public extension
 *     point) and a failed completion ends the process at once with exit
 *     code 2 after logging — before libraft touches the failure. The entry
 *     was not persisted, so it was never acknowledged; everything that was
 *     acknowledged is on disk and a restart replays it.
 *
 * 3. raft_uv in libraft 0.15 can fire io->close's callback twice when the
 *    log is on a file system without direct I/O (tmpfs: the thread-pool
 *    writer path); libraft's handler then frees its state twice (ASan:
 *    double free of raft->address in raft_close). io->close is wrapped so
 *    the library sees the callback exactly once.
 *
 * Never reads or changes log contents. */
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

#define DISK_CHECK_MS 100

typedef struct append_req {
    struct raft_io_append inner;
    struct raft_io_append *user;
    raft_io_append_cb user_cb;
} append_req_t;

static shaled_t *disk_server; /* one per process */

static int (*orig_append)(struct raft_io *io, struct raft_io_append *req,
                          const struct raft_entry entries[], unsigned n, raft_io_append_cb cb);

static void on_append(struct raft_io_append *req, int status)
{
    append_req_t *ar = req->data;
    struct raft_io_append *user = ar->user;
    raft_io_append_cb cb = ar->user_cb;
    free(ar);
    if (status != 0 && status != RAFT_CANCELED) {
        /* libraft 0.15 crashes handling this; stop first (see above). */
        log_error("raft log write failed: stopping at once; nothing unwritten was "
                  "acknowledged and a restart replays the log once the disk is fixed",
                  " status=%d err=\"%s\"", status, raft_strerror(status));
        _exit(2);
    }
    user->cb = cb;
    cb(user, status);
}

static int wrap_append(struct raft_io *io, struct raft_io_append *req,
                       const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    append_req_t *ar = malloc(sizeof(*ar));
    if (ar == NULL)
        return RAFT_NOMEM;
    ar->inner.data = ar;
    ar->user = req;
    ar->user_cb = cb;
    int rv = orig_append(io, &ar->inner, entries, n, on_append);
    if (rv != 0) {
        free(ar); /* refused up front: no callback */
    } else if (disk_server != NULL) {
        uint64_t bytes = 0;
        for (unsigned i = 0; i < n; i++)
            bytes += entries[i].buf.len;
        obs_appended(disk_server, n, bytes);
    }
    return rv;
}

static void (*orig_close)(struct raft_io *io, raft_io_close_cb cb);
static raft_io_close_cb user_close_cb;
static int close_fired;

static void on_close_once(struct raft_io *io)
{
    if (close_fired++) {
        /* the repeated callback of item 3 above */
        log_warn("raft_uv fired its close callback again: ignored", "%s", "");
        return;
    }
    user_close_cb(io);
}

static void wrap_close(struct raft_io *io, raft_io_close_cb cb)
{
    user_close_cb = cb;
    close_fired = 0;
    orig_close(io, on_close_once);
}

static void on_disk_check(uv_timer_t *t)
{
    shaled_t *s = t->data;
    struct statvfs vs;
    if (s->stopping || statvfs(s->raft_dir, &vs) != 0)
        return;
    uint64_t free_bytes = (uint64_t)vs.f_bavail * vs.f_frsize;
    uint64_t floor = 2 * ((uint64_t)s->cfg.segment_mb << 20) + (16u << 20);
    if (free_bytes < floor) {
        char msg[900];
        snprintf(msg, sizeof(msg),
                 "raft log file system nearly full: %llu bytes free in %s, need %llu",
                 (unsigned long long)free_bytes, s->raft_dir, (unsigned long long)floor);
        shaled_storage_failed(s, msg);
    }
}

int raft_disk_wrap(shaled_t *s)
{
    disk_server = s;
    orig_append = s->io.append;
    s->io.append = wrap_append;
    orig_close = s->io.close;
    s->io.close = wrap_close;
    uv_timer_init(s->loop, &s->disk_timer);
    s->disk_timer.data = s;
    uv_timer_start(&s->disk_timer, on_disk_check, 0, DISK_CHECK_MS);
    return 0;
}

void raft_disk_stop(shaled_t *s)
{
    if (s->disk_timer.loop != NULL && !uv_is_closing((uv_handle_t *)&s->disk_timer)) {
        uv_timer_stop(&s->disk_timer);
        uv_close((uv_handle_t *)&s->disk_timer, NULL);
    }
}
