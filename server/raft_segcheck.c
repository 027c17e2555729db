/* Raft segment check: a damaged open segment stops the node instead of
 * being silently truncated by raft_uv 0.15 (raft_segcheck.h).
 *
 * raft_uv's segment format, version 1 (all integers little-endian):
 *
 *   segment: u64 format version (1), then batches, then zeros (an open
 *            segment is preallocated; a batch never starts with 16 zero bytes)
 *   batch:   u32 crc32 of the header, u32 crc32 of the data,
 *            header = u64 entry count n, then n entry headers of 16 bytes
 *                     (u64 term, u8 type, 3 unused bytes, u32 payload size),
 *            data   = the n payloads back to back
 *
 * The loader takes the data as the plain sum of the payload sizes; the
 * writer advances by each size rounded up to 8. Shale pads every payload to
 * 8 (FACTS.md), and so does libraft for its own entries, so both agree; a
 * payload that is not padded makes the next batch unreadable to raft_uv and,
 * here, reads as damage (that is what it is to the loader). The checksum is
 * libraft's own CRC-32: polynomial 0x04C11DB7, most significant bit first,
 * initial value 0, no final XOR.
 *
 * The rule (one write in flight):
 *  - raft_uv issues one segment write at a time and starts the next only
 *    when the previous one completed (fdatasync'ed), so after a crash only
 *    the LAST batch of the log can be torn: a batch that does not decode
 *    with nothing intact after it (in its file or a newer open segment) is
 *    a torn last write and is fine — raft_uv drops it, and it was never
 *    acknowledged;
 *  - a batch that does not decode (bad checksum, impossible count or size,
 *    cut short, or zeros) with an intact batch after it, at any 8-byte
 *    aligned offset of the same file, is damage to a completed write: the
 *    entries from it on were acknowledged and raft_uv would drop them;
 *  - zeros where a batch should start end an open segment normally (the
 *    preallocated tail); a newer open segment may follow it. Only a torn
 *    batch followed by an intact batch in a newer open segment is damage —
 *    raft_uv would then also load the newer segment's entries at the wrong
 *    indexes, since version-1 open segments do not record their first index.
 *
 * Limit: raft_uv folds appends queued behind the write in flight into one
 * write; a power loss in the middle of that (unacknowledged) write could in
 * principle persist a later block of it and not an earlier one. The check
 * then refuses to start too; the recovery is the same, and no acknowledged
 * write depends on it. */
#include "raft_segcheck.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_FORMAT 1
#define PREAMBLE 16   /* two checksums + entry count */
#define ENTRY_HDR 16  /* term, type, unused, size */
#define MAX_OPEN 4096 /* open segments looked at; raft_uv keeps a handful */

/* Little-endian reads as single loads (the byte-by-byte loop they replace
 * was 90 % of a startup check of three 64 MiB open segments: ~0.3 s). */
static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static void crc_table(uint32_t tab[256])
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i << 24;
        for (int k = 0; k < 8; k++)
            c = (c & 0x80000000u) ? (c << 1) ^ 0x04C11DB7u : c << 1;
        tab[i] = c;
    }
}

static uint32_t crc32_msb(const uint32_t tab[256], const uint8_t *p, size_t n)
{
    uint32_t crc = 0;
    while (n--)
        crc = (crc << 8) ^ tab[((crc >> 24) ^ *p++) & 0xff];
    return crc;
}

/* Decode the batch at @off. Returns NULL and sets *next / *n_entries when
 * it is intact, else why it is not. Never reads outside buf[0..len). */
static const char *decode_batch(const uint32_t tab[256], const uint8_t *buf, size_t len, size_t off,
                                size_t *next, uint64_t *n_entries)
{
    if (off > len || len - off < PREAMBLE) {
        for (size_t i = off; i < len; i++)
            if (buf[i] != 0)
                return "batch cut short";
        return "zeros";
    }
    const uint8_t *p = buf + off;
    uint32_t crc_hdr = get32(p), crc_data = get32(p + 4);
    uint64_t n = get64(p + 8);
    if (n == 0)
        return crc_hdr == 0 && crc_data == 0 ? "zeros" : "entry count is zero";
    size_t room = len - off - PREAMBLE;
    if (n > room / ENTRY_HDR)
        return "entry count does not fit in the file";
    size_t hlen = 8 + (size_t)n * ENTRY_HDR;
    if (crc32_msb(tab, p + 8, hlen) != crc_hdr)
        return "header checksum mismatch";
    uint64_t dlen = 0;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *e = p + PREAMBLE + i * ENTRY_HDR;
        uint8_t type = e[8];
        if (type != RAFT_COMMAND && type != RAFT_BARRIER && type != RAFT_CHANGE)
            return "unknown entry type";
        dlen += get32(e + 12);
    }
    size_t data = off + 8 + hlen;
    if (dlen > len - data)
        return "entry data cut short";
    if (crc32_msb(tab, buf + data, (size_t)dlen) != crc_data)
        return "data checksum mismatch";
    *next = data + (size_t)dlen;
    *n_entries = n;
    return NULL;
}

int rsc_scan(const uint8_t *buf, size_t len, rsc_segment_t *out)
{
    uint32_t tab[256];
    memset(out, 0, sizeof(*out));
    if (len < 8) {
        out->why = "shorter than the 8-byte format header";
        return RSC_ECORRUPT;
    }
    out->format = get64(buf);
    if (out->format != SEG_FORMAT && out->format != 0) {
        out->why = "unknown format version";
        return RSC_ECORRUPT;
    }
    crc_table(tab);
    size_t off = 8, next = 0;
    uint64_t n = 0;
    const char *why = NULL;
    /* A zero format header is a segment preallocated but never written
     * (raft_uv removes it when the rest is zeros too); anything intact
     * after it was written and lost its header. */
    if (out->format == 0)
        why = "zero format header";
    while (why == NULL) {
        why = decode_batch(tab, buf, len, off, &next, &n);
        if (why != NULL)
            break;
        out->n_batches++;
        out->n_entries += n;
        off = next;
        if (off == len) {
            why = "end of file";
            break;
        }
    }
    out->stop = off;
    out->why = why;
    out->torn = strcmp(why, "zeros") != 0 && strcmp(why, "end of file") != 0;
    /* Look for any intact batch after the stop, 8-byte aligned like every
     * batch raft_uv writes. The count is checked first: in the zeroed tail
     * of a healthy segment that rejects every offset at once. */
    size_t from = out->format == 0 ? 8 : (off + 8) & ~(size_t)7;
    for (size_t o = from; o + PREAMBLE <= len; o += 8) {
        uint64_t cnt = get64(buf + o + 8);
        if (cnt == 0 || cnt > (len - o - PREAMBLE) / ENTRY_HDR)
            continue;
        if (decode_batch(tab, buf, len, o, &next, &n) == NULL) {
            out->later_intact = 1;
            out->later_offset = o;
            break;
        }
    }
    return RSC_OK;
}

/* ---- The directory ------------------------------------------------------------*/

typedef struct {
    uint64_t counter;
    char name[64];
} open_seg_t;

static int cmp_open(const void *a, const void *b)
{
    const open_seg_t *x = a, *y = b;
    return x->counter < y->counter ? -1 : x->counter > y->counter;
}

/* "open-N" exactly: N decimal. */
static int parse_open(const char *name, uint64_t *counter)
{
    if (strncmp(name, "open-", 5) != 0 || name[5] == '\0')
        return -1;
    uint64_t v = 0;
    for (const char *p = name + 5; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *counter = v;
    return 0;
}

/* "FIRST-LAST" (raft_uv writes each as 16 digits): the closed segment's last index. */
static int parse_closed(const char *name, uint64_t *last)
{
    unsigned long long a, b;
    int used = 0;
    if (sscanf(name, "%20llu-%20llu%n", &a, &b, &used) != 2 || name[used] != '\0' ||
        name[0] < '0' || name[0] > '9')
        return -1;
    *last = b;
    return 0;
}

/* "snapshot-TERM-INDEX-TIMESTAMP.meta": the snapshot's last index. */
static int parse_snapshot(const char *name, uint64_t *index)
{
    unsigned long long t, i, ts;
    int used = 0;
    if (sscanf(name, "snapshot-%20llu-%20llu-%20llu.meta%n", &t, &i, &ts, &used) != 3 ||
        name[used] != '\0')
        return -1;
    *index = i;
    return 0;
}

/* Map @path read-only. An empty file maps to NULL with *len 0. */
static int map_file(const char *path, const uint8_t **buf, size_t *len, char *msg, size_t msglen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    *buf = NULL;
    *len = 0;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(msg, msglen, "raft log check: cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return RSC_EIO;
    }
    if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            snprintf(msg, msglen, "raft log check: cannot map %s: %s", path, strerror(errno));
            close(fd);
            return RSC_EIO;
        }
        *buf = m;
        *len = (size_t)st.st_size;
    }
    close(fd);
    return RSC_OK;
}

int rsc_check_dir(const char *dir, char *msg, size_t msglen)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return RSC_OK; /* a new node: nothing to check */
        snprintf(msg, msglen, "raft log check: cannot open %s: %s", dir, strerror(errno));
        return RSC_EIO;
    }
    open_seg_t *segs = NULL;
    size_t n_segs = 0;
    uint64_t last_closed = 0, snap_index = 0, v;
    int have_closed = 0, rv = RSC_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (parse_open(de->d_name, &v) == 0 && strlen(de->d_name) < sizeof(segs[0].name)) {
            if (n_segs == MAX_OPEN)
                continue;
            open_seg_t *grown = realloc(segs, (n_segs + 1) * sizeof(*segs));
            if (grown == NULL) {
                snprintf(msg, msglen, "raft log check: out of memory");
                rv = RSC_EIO;
                break;
            }
            segs = grown;
            segs[n_segs].counter = v;
            snprintf(segs[n_segs].name, sizeof(segs[n_segs].name), "%s", de->d_name);
            n_segs++;
        } else if (parse_closed(de->d_name, &v) == 0) {
            if (!have_closed || v > last_closed)
                last_closed = v;
            have_closed = 1;
        } else if (parse_snapshot(de->d_name, &v) == 0 && v > snap_index) {
            snap_index = v;
        }
    }
    closedir(d);
    if (rv != RSC_OK) {
        free(segs);
        return rv;
    }
    if (n_segs > 1)
        qsort(segs, n_segs, sizeof(*segs), cmp_open);

    /* raft_uv numbers the first open segment's entries after the last
     * closed segment, or after the snapshot when there is none. */
    uint64_t next_index = (have_closed ? last_closed : snap_index) + 1;
    const char *torn_name = NULL; /* an older open segment that ended on a torn batch */
    size_t torn_at = 0;
    uint64_t torn_index = 0;
    for (size_t i = 0; i < n_segs && rv == RSC_OK; i++) {
        char path[4096];
        const uint8_t *buf;
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", dir, segs[i].name);
        if ((rv = map_file(path, &buf, &len, msg, msglen)) != RSC_OK)
            break;
        if (len == 0)
            continue; /* never written: raft_uv removes it */
        rsc_segment_t s;
        int srv = rsc_scan(buf, len, &s);
        munmap((void *)buf, len);
        if (srv != RSC_OK) {
            snprintf(msg, msglen,
                     "raft log %s is not a readable raft_uv segment (%s: %zu bytes, format version "
                     "%" PRIu64 "); the entries after index %" PRIu64
                     " cannot be loaded; refusing to start; " RSC_RECOVERY,
                     path, s.why, len, s.format, next_index - 1);
            rv = RSC_ECORRUPT;
            break;
        }
        if (torn_name != NULL && s.n_batches > 0) {
            snprintf(msg, msglen,
                     "raft log %s/%s is damaged: the batch at byte %zu does not decode but %s "
                     "holds intact batches after it; raft_uv would silently drop the acknowledged "
                     "entries from index %" PRIu64 " on; refusing to start; " RSC_RECOVERY,
                     dir, torn_name, torn_at, path, torn_index);
            rv = RSC_ECORRUPT;
            break;
        }
        uint64_t lost = next_index + s.n_entries;
        if (s.later_intact) {
            snprintf(msg, msglen,
                     "raft log %s is damaged at byte %zu (batch %u: %s) but an intact batch "
                     "follows at byte %zu: this is not a torn last write; raft_uv would silently "
                     "drop the acknowledged entries from index %" PRIu64
                     " on; refusing to start; " RSC_RECOVERY,
                     path, s.stop, s.n_batches + 1, s.why, s.later_offset, lost);
            rv = RSC_ECORRUPT;
            break;
        }
        if (s.torn && torn_name == NULL) {
            torn_name = segs[i].name;
            torn_at = s.stop;
            torn_index = lost;
        }
        next_index = lost;
    }
    free(segs);
    return rv;
}
