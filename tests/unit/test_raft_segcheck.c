/* Unit tests of the Raft segment check (server/raft_segcheck.c), the proof
 * behind docs/raft-safety.md section 3.
 *
 * Every segment here is written by a real raft_uv (libraft 0.15) in a
 * forked child that appends 6 batches of one entry each, waits for each to
 * be stored (acknowledged), then _exits without closing anything: a killed
 * writer. The parent damages the open segment and compares what raft_uv's
 * own load (auto-recovery off) makes of it with what the check says:
 *  - a flipped byte in batch 2: bare raft_uv comes back with 1 entry and no
 *    error (the silent truncation); the check refuses, naming the file, the
 *    offset and index 2;
 *  - a torn last batch: the check passes and raft_uv loads the 5 others;
 *  - an intact segment passes and loads whole;
 *  - short and garbage files are refused with a message, never a crash. */
#include <check.h>
#include <fcntl.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "harness.h"
#include "raft_segcheck.h"

#define N_BATCHES 6
#define PAYLOAD 24                             /* one entry per batch, a multiple of 8 */
#define BATCH_SIZE (8 + 8 + 16 + PAYLOAD)      /* checksums, count, entry header, data */
#define BATCH_AT(k) (8 + ((k)-1) * BATCH_SIZE) /* byte offset of batch k (1-based) */

/* ---- raft_uv, driven directly --------------------------------------------------*/

typedef struct uvh {
    uv_loop_t loop;
    struct raft_uv_transport transport;
    struct raft_io io;
    int appended;
    int closed;
} uvh_t;

static void uv_open(uvh_t *h, const char *dir)
{
    memset(h, 0, sizeof(*h));
    ck_assert_int_eq(uv_loop_init(&h->loop), 0);
    ck_assert_int_eq(raft_uv_tcp_init(&h->transport, &h->loop), 0);
    ck_assert_int_eq(raft_uv_init(&h->io, &h->loop, dir, &h->transport), 0);
    raft_uv_set_auto_recovery(&h->io, false);
    raft_uv_set_segment_size(&h->io, 1 << 20);
    ck_assert_int_eq(h->io.init(&h->io, 1, "127.0.0.1:9"), 0);
    h->io.data = h;
}

static void on_closed(struct raft_io *io)
{
    ((uvh_t *)io->data)->closed = 1;
}

static void uv_shut(uvh_t *h)
{
    h->io.close(&h->io, on_closed);
    for (int i = 0; i < 2000 && !h->closed; i++) {
        uv_run(&h->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    raft_uv_close(&h->io);
    raft_uv_tcp_close(&h->transport);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&h->loop), 0);
}

static void on_append(struct raft_io_append *req, int status)
{
    if (status == 0)
        ((uvh_t *)req->data)->appended++;
}

/* The payload of entry i: its index repeated. */
static void payload_of(uint64_t i, uint8_t out[PAYLOAD])
{
    for (int k = 0; k < PAYLOAD / 8; k++)
        memcpy(out + 8 * k, &i, 8);
}

/* A killed writer: a child appends entries 1..6 as 6 batches, each stored
 * before the next is issued, and _exits without closing. */
static void write_killed(const char *dir)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        uvh_t h;
        raft_term term;
        raft_id voted;
        struct raft_snapshot *snap;
        raft_index start;
        struct raft_entry *loaded;
        size_t n;
        uv_open(&h, dir);
        if (h.io.load(&h.io, &term, &voted, &snap, &start, &loaded, &n) != 0 || n != 0)
            _exit(3);
        for (int b = 1; b <= N_BATCHES; b++) {
            static uint8_t bufs[N_BATCHES][PAYLOAD];
            struct raft_entry e;
            struct raft_io_append req;
            payload_of((uint64_t)b, bufs[b - 1]);
            e.term = 1;
            e.type = RAFT_COMMAND;
            e.buf.base = bufs[b - 1];
            e.buf.len = PAYLOAD;
            e.batch = NULL;
            req.data = &h;
            if (h.io.append(&h.io, &req, &e, 1, on_append) != 0)
                _exit(4);
            for (int ms = 0; ms < 5000 && h.appended < b; ms++) {
                uv_run(&h.loop, UV_RUN_NOWAIT);
                usleep(1000);
            }
            if (h.appended < b)
                _exit(5);
        }
        _exit(0);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer failed: status %d", st);
}

typedef struct {
    int rv;
    size_t n;
    raft_index start;
    int payloads_ok; /* entry i carries payload_of(start + i) */
    char errmsg[512];
} loaded_t;

/* raft_uv's own load of @dir, auto-recovery off (what raft_start does). */
static loaded_t uv_load(const char *dir)
{
    uvh_t *h = calloc(1, sizeof(*h));
    loaded_t out;
    raft_term term;
    raft_id voted;
    struct raft_snapshot *snap = NULL;
    struct raft_entry *entries = NULL;
    memset(&out, 0, sizeof(out));
    uv_open(h, dir);
    out.rv = h->io.load(&h->io, &term, &voted, &snap, &out.start, &entries, &out.n);
    snprintf(out.errmsg, sizeof(out.errmsg), "%s", h->io.errmsg);
    if (out.rv == 0) {
        out.payloads_ok = 1;
        for (size_t i = 0; i < out.n; i++) {
            uint8_t want[PAYLOAD];
            payload_of(out.start + i, want);
            if (entries[i].buf.len != PAYLOAD || memcmp(entries[i].buf.base, want, PAYLOAD) != 0)
                out.payloads_ok = 0;
        }
        for (size_t i = 0; i < out.n; i++)
            if (i == 0 || entries[i].batch != entries[i - 1].batch)
                raft_free(entries[i].batch);
        raft_free(entries);
        ck_assert_ptr_null(snap);
    }
    uv_shut(h);
    free(h);
    return out;
}

/* ---- Files ---------------------------------------------------------------------*/

/* A fresh directory (th_tmpdir; the caller frees it with rm_tree). */
static char *mkdir_tmp(void)
{
    char *dir = th_tmpdir("rsc");
    ck_assert_ptr_nonnull(dir);
    return dir;
}

static void rm_tree(char *dir)
{
    th_rmrf(dir);
    free(dir);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(*len ? *len : 1);
    ck_assert_uint_eq(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

static void write_at(const char *path, size_t off, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, data, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void flip_byte(const char *path, size_t off)
{
    size_t len;
    uint8_t *buf = read_all(path, &len);
    ck_assert_uint_lt(off, len);
    uint8_t b = buf[off] ^ 0x5a;
    free(buf);
    write_at(path, off, &b, 1);
}

static void seg_path(char *out, size_t len, const char *dir, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static int file_exists(const char *dir, const char *name)
{
    char p[256];
    struct stat st;
    seg_path(p, sizeof(p), dir, name);
    return stat(p, &st) == 0;
}

/* ---- Tests ---------------------------------------------------------------------*/

/* What raft_uv 0.15 writes is what the check decodes: format 1, six batches
 * of one entry at the expected offsets, then the preallocated zeros. */
START_TEST(test_decodes_real_raft_uv_segment)
{
    char *dir = mkdir_tmp(), path[256];
    write_killed(dir);
    seg_path(path, sizeof(path), dir, "open-1");
    size_t len;
    uint8_t *buf = read_all(path, &len);
    ck_assert_uint_ge(len, BATCH_AT(N_BATCHES + 1));
    rsc_segment_t s;
    ck_assert_int_eq(rsc_scan(buf, len, &s), RSC_OK);
    ck_assert_uint_eq(s.format, 1);
    ck_assert_uint_eq(s.n_batches, N_BATCHES);
    ck_assert_uint_eq(s.n_entries, N_BATCHES);
    ck_assert_uint_eq(s.stop, BATCH_AT(N_BATCHES + 1));
    ck_assert_str_eq(s.why, "zeros");
    ck_assert_int_eq(s.torn, 0);
    ck_assert_int_eq(s.later_intact, 0);
    /* Each batch: count 1 at +8, term 1 at +16, type RAFT_COMMAND at +24,
     * size PAYLOAD at +28, the payload at +32. */
    for (int k = 1; k <= N_BATCHES; k++) {
        const uint8_t *b = buf + BATCH_AT(k);
        uint8_t want[PAYLOAD];
        payload_of((uint64_t)k, want);
        ck_assert_uint_eq(b[8], 1);
        ck_assert_uint_eq(b[16], 1);
        ck_assert_uint_eq(b[24], RAFT_COMMAND);
        ck_assert_uint_eq(b[28], PAYLOAD);
        ck_assert(memcmp(b + 32, want, PAYLOAD) == 0);
    }
    free(buf);
    char msg[1024] = "";
    ck_assert_int_eq(rsc_check_dir(dir, msg, sizeof(msg)), RSC_OK);
    rm_tree(dir);
}
END_TEST

/* (a) + (b): one flipped byte in batch 2 of an open segment. */
START_TEST(test_flip_in_batch2_bare_truncates_check_refuses)
{
    char *dir = mkdir_tmp(), path[256], msg[1024] = "";
    write_killed(dir);
    seg_path(path, sizeof(path), dir, "open-1");
    flip_byte(path, BATCH_AT(2) + 32 + 3); /* inside entry 2's payload */

    /* (b) the check refuses, naming the file, the offset and index 2, and
     * changes nothing on disk. */
    ck_assert_int_eq(rsc_check_dir(dir, msg, sizeof(msg)), RSC_ECORRUPT);
    ck_assert_msg(strstr(msg, path) != NULL, "file not named: %s", msg);
    char want[64];
    snprintf(want, sizeof(want), "at byte %d", BATCH_AT(2));
    ck_assert_msg(strstr(msg, want) != NULL, "offset not named: %s", msg);
    ck_assert_msg(strstr(msg, "data checksum mismatch") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "from index 2 on") != NULL, "index not named: %s", msg);
    ck_assert_msg(strstr(msg, "re-join") != NULL, "no recovery step: %s", msg);
    ck_assert(file_exists(dir, "open-1"));

    /* (a) the bare library, auto-recovery off: no error, 1 entry of 6. */
    loaded_t l = uv_load(dir);
    ck_assert_int_eq(l.rv, 0);
    ck_assert_uint_eq(l.start, 1);
    ck_assert_uint_eq(l.n, 1);
    ck_assert(l.payloads_ok);
    /* ... and it made the loss permanent: the open segment became a closed
     * one holding entry 1 alone. */
    ck_assert(!file_exists(dir, "open-1"));
    ck_assert(file_exists(dir, "0000000000000001-0000000000000001"));
    rm_tree(dir);
}
END_TEST

/* A flipped byte anywhere in batches 1..5 (checksums, count, entry header,
 * payload) is refused; anywhere in batch 6, the last, it is a torn write
 * and passes. Checked on the real segment, in memory, byte by byte. */
START_TEST(test_every_flip_classified)
{
    char *dir = mkdir_tmp(), path[256];
    write_killed(dir);
    seg_path(path, sizeof(path), dir, "open-1");
    size_t len;
    uint8_t *buf = read_all(path, &len);
    for (size_t off = BATCH_AT(1); off < BATCH_AT(N_BATCHES + 1); off++) {
        int batch = (int)((off - 8) / BATCH_SIZE) + 1;
        rsc_segment_t s;
        buf[off] ^= 0x01;
        ck_assert_int_eq(rsc_scan(buf, len, &s), RSC_OK);
        buf[off] ^= 0x01;
        ck_assert_msg(s.n_batches == (unsigned)batch - 1, "byte %zu: %u intact batches", off,
                      s.n_batches);
        ck_assert_msg(s.torn, "byte %zu not seen as damage (%s)", off, s.why);
        if (batch < N_BATCHES) {
            ck_assert_msg(s.later_intact, "byte %zu (batch %d): nothing intact after", off, batch);
            ck_assert_uint_eq(s.later_offset, BATCH_AT(batch + 1));
        } else {
            ck_assert_msg(!s.later_intact, "byte %zu (last batch) refused", off);
        }
    }
    free(buf);
    rm_tree(dir);
}
END_TEST

/* (c) a torn last batch: its tail never reached the disk. */
START_TEST(test_torn_last_batch_passes_and_loads_five)
{
    char *dir = mkdir_tmp(), path[256], msg[1024] = "";
    write_killed(dir);
    seg_path(path, sizeof(path), dir, "open-1");
    uint8_t zeros[BATCH_SIZE] = {0};
    write_at(path, BATCH_AT(N_BATCHES) + 20, zeros, BATCH_SIZE - 20);
    ck_assert_msg(rsc_check_dir(dir, msg, sizeof(msg)) == RSC_OK, "refused: %s", msg);
    loaded_t l = uv_load(dir);
    ck_assert_int_eq(l.rv, 0);
    ck_assert_uint_eq(l.n, N_BATCHES - 1);
    ck_assert(l.payloads_ok);
    rm_tree(dir);
}
END_TEST

/* (c) the same with the file cut in the middle of the last batch. */
START_TEST(test_cut_last_batch_passes)
{
    char *dir = mkdir_tmp(), path[256], msg[1024] = "";
    write_killed(dir);
    seg_path(path, sizeof(path), dir, "open-1");
    ck_assert_int_eq(truncate(path, BATCH_AT(N_BATCHES) + 40), 0);
    ck_assert_msg(rsc_check_dir(dir, msg, sizeof(msg)) == RSC_OK, "refused: %s", msg);
    rm_tree(dir);
}
END_TEST

/* (d) an intact segment passes, and raft_uv loads all six entries. */
START_TEST(test_intact_passes_and_loads_six)
{
    char *dir = mkdir_tmp(), msg[1024] = "";
    write_killed(dir);
    ck_assert_msg(rsc_check_dir(dir, msg, sizeof(msg)) == RSC_OK, "refused: %s", msg);
    loaded_t l = uv_load(dir);
    ck_assert_int_eq(l.rv, 0);
    ck_assert_uint_eq(l.n, N_BATCHES);
    ck_assert(l.payloads_ok);
    /* After raft_uv closed it, the check still passes (closed segments are
     * raft_uv's to judge; the fresh open ones are zeros). */
    ck_assert_msg(rsc_check_dir(dir, msg, sizeof(msg)) == RSC_OK, "refused: %s", msg);
    rm_tree(dir);
}
END_TEST

/* A torn tail in open-1 with intact batches in the newer open-2: raft_uv
 * would load open-2's entries at the wrong indexes. Refused. */
START_TEST(test_torn_then_newer_open_segment_refused)
{
    char *dir = mkdir_tmp(), path[256], path2[256], msg[1024] = "";
    write_killed(dir);
    seg_path(path, sizeof(path), dir, "open-1");
    seg_path(path2, sizeof(path2), dir, "open-2");
    size_t len;
    uint8_t *buf = read_all(path, &len);
    /* open-2: the format header and batch 6; open-1: batch 5 damaged. */
    uint8_t seg2[8 + BATCH_SIZE];
    memcpy(seg2, buf, 8);
    memcpy(seg2 + 8, buf + BATCH_AT(6), BATCH_SIZE);
    free(buf);
    write_file(path2, seg2, sizeof(seg2));
    uint8_t zeros[BATCH_SIZE] = {0};
    write_at(path, BATCH_AT(6), zeros, BATCH_SIZE);
    flip_byte(path, BATCH_AT(5) + 40);
    ck_assert_int_eq(rsc_check_dir(dir, msg, sizeof(msg)), RSC_ECORRUPT);
    ck_assert_msg(strstr(msg, "open-1") != NULL && strstr(msg, path2) != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "from index 5 on") != NULL, "%s", msg);
    rm_tree(dir);
}
END_TEST

/* The first index of an open segment comes after the last closed segment,
 * or after the newest snapshot when there is no closed segment. */
START_TEST(test_index_counts_closed_segments_and_snapshots)
{
    char *dir = mkdir_tmp(), path[256], msg[1024] = "";
    write_killed(dir);
    seg_path(path, sizeof(path), dir, "open-1");
    flip_byte(path, BATCH_AT(3));
    ck_assert_int_eq(rsc_check_dir(dir, msg, sizeof(msg)), RSC_ECORRUPT);
    ck_assert_msg(strstr(msg, "from index 3 on") != NULL, "%s", msg);
    seg_path(path, sizeof(path), dir, "snapshot-2-20-1234.meta");
    write_file(path, "x", 1);
    ck_assert_int_eq(rsc_check_dir(dir, msg, sizeof(msg)), RSC_ECORRUPT);
    ck_assert_msg(strstr(msg, "from index 23 on") != NULL, "%s", msg);
    seg_path(path, sizeof(path), dir, "0000000000000011-0000000000000030");
    write_file(path, "x", 1);
    seg_path(path, sizeof(path), dir, "0000000000000001-0000000000000010");
    write_file(path, "x", 1);
    ck_assert_int_eq(rsc_check_dir(dir, msg, sizeof(msg)), RSC_ECORRUPT);
    ck_assert_msg(strstr(msg, "from index 33 on") != NULL, "%s", msg);
    rm_tree(dir);
}
END_TEST

/* (e) short and garbage open segments: a clear refusal, never a crash. */
START_TEST(test_garbage_and_short_files)
{
    char *dir = mkdir_tmp(), path[256], msg[1024] = "";
    seg_path(path, sizeof(path), dir, "open-1");
    write_file(path, "abc", 3);
    ck_assert_int_eq(rsc_check_dir(dir, msg, sizeof(msg)), RSC_ECORRUPT);
    ck_assert_msg(strstr(msg, path) != NULL && strstr(msg, "shorter than") != NULL, "%s", msg);

    uint8_t junk[3000];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)((i * 131 + 7) & 0xff);
    write_file(path, junk, sizeof(junk));
    ck_assert_int_eq(rsc_check_dir(dir, msg, sizeof(msg)), RSC_ECORRUPT);
    ck_assert_msg(strstr(msg, path) != NULL && strstr(msg, "unknown format version") != NULL, "%s",
                  msg);

    /* An empty open segment was never written: raft_uv removes it. */
    write_file(path, "", 0);
    ck_assert_int_eq(rsc_check_dir(dir, msg, sizeof(msg)), RSC_OK);
    /* A missing directory is a new node. */
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/none", dir);
    ck_assert_int_eq(rsc_check_dir(missing, msg, sizeof(msg)), RSC_OK);
    /* An unreadable one is an I/O error naming it. */
    write_file(path, "", 0);
    ck_assert_int_eq(chmod(path, 0), 0);
    if (access(path, R_OK) != 0) { /* not when running as root */
        ck_assert_int_eq(rsc_check_dir(dir, msg, sizeof(msg)), RSC_EIO);
        ck_assert_msg(strstr(msg, path) != NULL, "%s", msg);
    }
    chmod(path, 0644);
    rm_tree(dir);

    /* Every prefix of a real segment and pseudo-random bytes after a valid
     * format header: the scan stays inside the buffer (ASan) and answers. */
    dir = mkdir_tmp();
    write_killed(dir);
    seg_path(path, sizeof(path), dir, "open-1");
    size_t len;
    uint8_t *buf = read_all(path, &len);
    for (size_t n = 0; n <= BATCH_AT(N_BATCHES + 1) + 16; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, buf, n);
        rsc_segment_t s;
        int rv = rsc_scan(copy, n, &s);
        ck_assert_int_eq(rv, n < 8 ? RSC_ECORRUPT : RSC_OK);
        ck_assert_ptr_nonnull(s.why);
        if (rv == RSC_OK)
            ck_assert_int_eq(s.later_intact, 0); /* a cut is only ever at the end */
        free(copy);
    }
    uint32_t x = 12345;
    for (int round = 0; round < 200; round++) {
        uint8_t rnd[512];
        memcpy(rnd, buf, 8);
        for (size_t i = 8; i < sizeof(rnd); i++) {
            x = x * 1103515245u + 12345u;
            rnd[i] = (uint8_t)(x >> 16);
        }
        /* small counts so decoding goes past the count check */
        rnd[16] = (uint8_t)(round % 5);
        memset(rnd + 17, 0, 7);
        rsc_segment_t s;
        ck_assert_int_eq(rsc_scan(rnd, sizeof(rnd), &s), RSC_OK);
        ck_assert_uint_eq(s.n_batches, 0);
    }
    free(buf);
    rm_tree(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("raft_segcheck");
    TCase *tc = tcase_create("segcheck");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_decodes_real_raft_uv_segment);
    tcase_add_test(tc, test_flip_in_batch2_bare_truncates_check_refuses);
    tcase_add_test(tc, test_every_flip_classified);
    tcase_add_test(tc, test_torn_last_batch_passes_and_loads_five);
    tcase_add_test(tc, test_cut_last_batch_passes);
    tcase_add_test(tc, test_intact_passes_and_loads_six);
    tcase_add_test(tc, test_torn_then_newer_open_segment_refused);
    tcase_add_test(tc, test_index_counts_closed_segments_and_snapshots);
    tcase_add_test(tc, test_garbage_and_short_files);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
