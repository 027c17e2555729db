/* Snapshot transfer: RocksDB state moved between members out of band.
 *
 * canonical raft 0.15 sends a snapshot as ONE in-memory buffer, which cannot
 * hold a multi-GB store. Shale's Raft snapshot is a small descriptor
 * (raft_fsm.c: applied index, the snapshotting node's id, client address and
 * cluster id); the data moves here, on the client port:
 *
 *   descriptor (snapshot_fetch.c) what fsm_snapshot hands libraft, all
 *             integers big-endian, length a multiple of 8 (libraft 0.15):
 *        v1  [magic "SHS1":4][version 1:4][applied index:8]
 *        v2  v1's 16 bytes with version 2, then [node id:8]
 *            [address length:2][cluster id length:2][reserved 0:4]
 *            [client address][cluster id][zero pad to 8]
 *             Later versions may only append fields.
 *   serving   (snapshot_xfer.c) a SNAP_FETCH request makes the node write a
 *             RocksDB checkpoint (hard links, after a memtable flush) into
 *             <data>/snap-out-N and stream every file as SNAP_CHUNK frames
 *             of at most chunk_bytes raw (default 1 MiB), zstd level 1,
 *             XXH64 of the raw bytes. The next chunks are produced only
 *             when the connection has drained (conn_set_drain_cb), so one
 *             stream holds about SNAPX_OUT_HIGH bytes of output plus one raw
 *             and one compressed chunk, whatever the data size. At most
 *             SNAPX_MAX_STREAMS streams at once (more: OVERLOADED); an
 *             optional byte rate (--snapshot-rate-mb); a stream that makes
 *             no progress for SNAPX_STALL_MS is ended. The checkpoint
 *             directory is removed when the stream ends or the connection
 *             drops; leftovers of a crash are removed at start.
 *             File reads are synchronous pread() on the loop thread, one
 *             chunk at a time (microseconds from the page cache; a cold
 *             disk read of 1 MiB costs the loop a few ms per chunk), and so
 *             are compression and checksums: ~1-3 ms of loop time per MiB.
 *   fetching  (snapshot_fetch.c) snapx_fetch() uses a blocking socket with
 *             timeouts, verifies every chunk (size, offset, checksum), each
 *             file's size, the file count and the total, writes into
 *             <dest>.part, fsyncs, and renames it to <dest> only when all
 *             of it is there.
 *   catch-up  (snapshot_install.c) snapx_install() is what fsm_restore calls
 *             when a descriptor is ahead of the local store: fetch from the
 *             descriptor's node, else the other members;
 *             open the copy and check its applied index; then swap it in by
 *             renaming directories (never a half-copied store: on any
 *             failure the old store stays, or comes back at the next start).
 *
 * Never touches Raft state; never reads the live RocksDB files (only the
 * checkpoint's hard links). */
#ifndef SHALE_SNAPSHOT_XFER_H
#define SHALE_SNAPSHOT_XFER_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>

typedef struct shaled shaled_t;
typedef struct sreq sreq_t;

#define SNAPX_CHUNK_DEFAULT (1u << 20)
#define SNAPX_CHUNK_MIN 1024u
#define SNAPX_CHUNK_MAX (1u << 20)
#define SNAPX_MAX_STREAMS 2
/* A stream queues chunks while less than this is unsent on its connection. */
#define SNAPX_OUT_HIGH (4u << 20)
/* A stream whose connection accepts nothing for this long is ended. */
#define SNAPX_STALL_MS 60000
/* Per socket operation of a fetch (connect, each send and recv). */
#define SNAPX_IO_TIMEOUT_MS 10000
/* Largest SNAP_CHUNK frame payload a fetcher accepts. */
#define SNAPX_FRAME_MAX (2 * SNAPX_CHUNK_MAX + 65536)

/* ---- Raft snapshot descriptor (pure) ----------------------------------------*/

typedef struct snapx_desc {
    uint32_t version;    /* 1: index only; 2: + node id, address, cluster id */
    uint64_t index;      /* applied index of the snapshotting node */
    uint64_t node_id;    /* 0 in v1 */
    char addr[128];      /* its client address, "" in v1 */
    char cluster_id[64]; /* "" in v1 */
} snapx_desc_t;
/* Encode as version 2 into out->base (raft_malloc'd; whoever owns the
 * buffer frees it with raft_free). 0 or RAFT_NOMEM. */
int snapx_desc_encode(const snapx_desc_t *d, struct raft_buffer *out);
/* Decode any version (a newer one as far as v2 goes). 0 or RAFT_MALFORMED. */
int snapx_desc_decode(const void *buf, size_t len, snapx_desc_t *d);

/* ---- Chunk codec (pure; no I/O) --------------------------------------------*/

/* Room the compressed form of n raw bytes may need. */
size_t snapx_chunk_bound(size_t n);
/* Compress raw[0..n) into out (cap >= snapx_chunk_bound(n)) with zctx (a
 * ZSTD_CCtx *, or NULL for a one-shot context) and compute *checksum (XXH64,
 * seed 0, of the raw bytes). Returns the compressed length, 0 on error. */
size_t snapx_chunk_pack(void *zctx, const uint8_t *raw, size_t n, uint8_t *out, size_t cap,
                        uint64_t *checksum);
/* Decompress z[0..zn) into out (cap bytes) with dctx (a ZSTD_DCtx *, or
 * NULL) and check that it is exactly raw_len bytes whose XXH64 is checksum.
 * Returns 0, SHALE_ECORRUPT (bad data, wrong length or checksum) or
 * SHALE_ETOOLARGE (raw_len > cap). */
int snapx_chunk_unpack(void *dctx, const uint8_t *z, size_t zn, size_t raw_len, uint64_t checksum,
                       uint8_t *out, size_t cap);

/* ---- Serving (loop thread) ---------------------------------------------------*/

/* Answer a SNAP_FETCH request: start a stream, or fail r with OVERLOADED,
 * UNAVAILABLE (min_applied_index not applied here), INVALID / TOO_LARGE
 * (chunk_bytes), STORAGE (checkpoint failed). Takes r. */
void snapx_serve(shaled_t *s, sreq_t *r);

/* ---- Fetching (blocking; any thread) -----------------------------------------*/

typedef struct snapx_fetch_opts {
    uint32_t chunk_bytes; /* 0: SNAPX_CHUNK_DEFAULT */
    int timeout_ms;       /* per socket operation; 0: SNAPX_IO_TIMEOUT_MS */
    struct tls_ctx *tls;  /* a TLS client context: the source's port speaks TLS; NULL: plain */
    /* HELLO.credential (a packed Credential; NULL: none), for a source
     * started with --auth: the fetching node's own user. */
    const uint8_t *credential;
    size_t credential_len;
    /* Called after each chunk is written with the raw bytes so far and the
     * total the source announced (may be NULL; shalectl backup's progress). */
    void (*progress)(void *arg, uint64_t done, uint64_t total);
    void *progress_arg;
} snapx_fetch_opts_t;

typedef struct snapx_fetch_stats {
    uint64_t bytes;      /* raw bytes written */
    uint64_t wire_bytes; /* compressed bytes received */
    uint64_t chunks;
    uint32_t files;
    uint64_t ms;
    uint64_t leader_ms; /* the checkpoint's freshness (SnapChunk.leader_ms) */
} snapx_fetch_stats_t;

/* Fetch a checkpoint that has applied at least min_index from the node at
 * addr ("host:port", IPv4) of cluster_id (NULL or "": any) into dest_dir,
 * which must not exist (its parent must). Data goes to "<dest_dir>.part"
 * first (removed on failure) and is renamed to dest_dir once complete and
 * fsynced. *applied: the checkpoint's applied index. Returns 0 or a
 * SHALE_E* code with a message in err: the server's own error code
 * (OVERLOADED, UNAVAILABLE, CLUSTER_MISMATCH, ...), SHALE_EIO (connection),
 * SHALE_ETIMEOUT, SHALE_ECORRUPT (a chunk or total failed its check),
 * SHALE_EPROTO, SHALE_ESTORAGE (local disk), SHALE_EINVAL (arguments). */
int snapx_fetch(const char *addr, const char *cluster_id, uint64_t min_index, const char *dest_dir,
                uint64_t *applied, char *err, size_t errlen);
/* The same with options and statistics (opts, stats may be NULL). */
int snapx_fetch_ex(const char *addr, const char *cluster_id, uint64_t min_index,
                   const char *dest_dir, const snapx_fetch_opts_t *opts, uint64_t *applied,
                   snapx_fetch_stats_t *stats, char *err, size_t errlen);

/* ---- Catch-up (loop thread, inside fsm_restore) ------------------------------*/

/* Replace s->store by a checkpoint that has applied at least index, fetched
 * from hint (the descriptor's address; may be NULL or ""), then the
 * other members' client addresses. cluster_id:
 * the descriptor's (NULL: this node's). Blocks the loop for the transfer.
 * Returns 0 (s->store replaced, the member table reloaded) or a SHALE_E*
 * code with err; the old store is then still open and unchanged, unless it
 * could not even be reopened (shaled_storage_failed was called). */
int snapx_install(shaled_t *s, uint64_t index, const char *hint, const char *cluster_id, char *err,
                  size_t errlen);

/* True when the store was installed from a checkpoint ahead of the Raft
 * snapshot it answered and nothing has been applied since, with the Raft log
 * ending at or after that snapshot, and this node is not the only voter:
 * storage is then legitimately ahead of the log (the entries in between are
 * committed, held by the other voters, and arrive again). Call after
 * raft_start (it reads the configuration). */
int snapx_store_ahead_ok(shaled_t *s, uint64_t raft_last_index);

/* ---- Directories ---------------------------------------------------------------*/

/* Before the store is opened at start: finish or undo a swap a crash
 * interrupted (db missing and db.old present: db.old goes back), and remove
 * leftover snap-out-*, snap-in* and db.old directories in data_dir. */
void snapx_recover_dirs(const char *data_dir, const char *db_dir);
/* rm -rf path (no shell; does not follow symlinks). 0 or -1. */
int snapx_remove_tree(const char *path);
/* fsync a directory. 0 or -1 (errno). */
int snapx_fsync_dir(const char *path);

/* Big-endian 64-bit integers in descriptors and markers. */
static inline void snapx_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint64_t snapx_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

#endif
