/* Snapshot transfer against a real shaled: a store of a few hundred MB
 * (many keys of 1-4 KB, some of odd sizes, plus large values) fetched with
 * snapx_fetch and compared key by key (value and version) with the live
 * node; tiny chunks; typed errors; a dropped connection cleans up on the
 * server; two streams at most; server memory does not grow with the data;
 * leftovers and an interrupted store swap are handled at start; the rate
 * limit holds.
 *
 * One node with the data is started once for the suite (an unchecked
 * fixture); each test runs in its own forked process and never stops it.
 * SHALE_SNAP_TEST_MB sets the data size (default 200). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "harness.h"
#include "keyhash.h"
#include "snapshot_xfer.h"
#include "store.h"
#include "tls.h"
#include "wire.h"

#define SMALL_KEYS 30000
#define BIG_LEN (512u << 10)
/* How much a stream may add to the server's peak RSS: its queued frames
 * (SNAPX_OUT_HIGH), chunk buffers and allocator slack. Under ASan the node
 * runs with a 16 MiB quarantine (ASAN_QUARANTINE below): the default 256 MiB
 * keeps every freed chunk resident, so an 82 MB stream grew the peak by
 * 96.6 MiB there while the normal build stays far under 48 MiB. */
#if defined(__SANITIZE_ADDRESS__)
#define ASAN_QUARANTINE "quarantine_size_mb=16"
#define STREAM_RSS_BOUND (64u << 20)
#else
#define STREAM_RSS_BOUND (48u << 20)
#endif

static char *g_base;
static th_node_t g_node;
static int g_nsmall, g_nbig;
static uint64_t g_bytes; /* user value bytes loaded */
static int g_unclean;    /* the fixture node did not exit cleanly */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- The data set ------------------------------------------------------------*/

static int nkeys(void)
{
    return g_nsmall + g_nbig;
}

static void key_of(int i, char *k)
{
    if (i < g_nsmall)
        snprintf(k, 32, "s%06d", i);
    else
        snprintf(k, 32, "big%04d", i - g_nsmall);
}

/* 1024..4096 bytes, most of them odd; big values just over 512 KiB. */
static size_t len_of(int i)
{
    if (i < g_nsmall)
        return 1024 + ((size_t)i * 7919) % 3073;
    return BIG_LEN + (size_t)(i - g_nsmall) * 13 + 1;
}

/* Incompressible bytes, reproducible from the key's index. */
static void val_of(int i, uint8_t *p)
{
    size_t n = len_of(i);
    uint64_t x = (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull;
    for (size_t j = 0; j < n; j++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[j] = (uint8_t)(x >> 24);
    }
}

/* MPUT keys [first, first+n) on fd, pipelined (window 8). */
static void load_range(int fd, int first, int n, int per_req, uint64_t *id)
{
    int outstanding = 0;
    for (int b = first; b < first + n || outstanding > 0;) {
        if (b < first + n && outstanding < 8) {
            int cnt = first + n - b < per_req ? first + n - b : per_req;
            Shale__KeyValue kv[64], *pk[64];
            static char keys[64][32];
            uint8_t *vals[64];
            for (int j = 0; j < cnt; j++) {
                key_of(b + j, keys[j]);
                vals[j] = malloc(len_of(b + j));
                val_of(b + j, vals[j]);
                shale__key_value__init(&kv[j]);
                kv[j].key.data = (uint8_t *)keys[j];
                kv[j].key.len = strlen(keys[j]);
                kv[j].has_value = 1;
                kv[j].value.data = vals[j];
                kv[j].value.len = len_of(b + j);
                pk[j] = &kv[j];
            }
            Shale__MPutRequest m = SHALE__MPUT_REQUEST__INIT;
            m.n_items = (size_t)cnt;
            m.items = pk;
            ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_MPUT_REQ, ++*id, &m), 0);
            for (int j = 0; j < cnt; j++)
                free(vals[j]);
            b += cnt;
            outstanding++;
            continue;
        }
        th_frame_t f;
        ck_assert_int_eq(th_raw_recv(fd, &f), 0);
        ck_assert_msg(f.type == SHALE_MSG_MPUT_RESP, "MPUT answered with %u (error %d)", f.type,
                      th_frame_error_code(&f));
        Shale__MPutResponse *r = shale__mput_response__unpack(NULL, f.len, f.payload);
        ck_assert_ptr_nonnull(r);
        for (size_t j = 0; j < r->n_items; j++)
            ck_assert_ptr_null(r->items[j]->error);
        shale__mput_response__free_unpacked(r, NULL);
        th_frame_free(&f);
        outstanding--;
    }
}

static void setup(void)
{
    const char *env = getenv("SHALE_SNAP_TEST_MB");
    uint64_t target = (uint64_t)(env != NULL && atoi(env) > 0 ? atoi(env) : 200) << 20;
    g_nsmall = SMALL_KEYS;
    g_nbig = 0;
    uint64_t small = 0;
    for (int i = 0; i < g_nsmall; i++)
        small += len_of(i);
    g_nbig = target > small ? (int)((target - small) / BIG_LEN) : 0;
    if (g_nbig < 8)
        g_nbig = 8;
    g_bytes = 0;
    for (int i = 0; i < nkeys(); i++)
        g_bytes += len_of(i);

    g_base = th_tmpdir("snap");
    ck_assert_ptr_nonnull(g_base);
    th_node_init(&g_node, 1, "127.0.0.4", g_base);
#if defined(ASAN_QUARANTINE)
    {   /* every node this suite starts inherits it */
        const char *asan = getenv("ASAN_OPTIONS");
        char opts[512];
        snprintf(opts, sizeof(opts), "%s%s" ASAN_QUARANTINE, asan ? asan : "",
                 asan && asan[0] ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
    }
#endif
    ck_assert_int_eq(th_node_start(&g_node, NULL), 0);
    if (th_node_wait_ready(&g_node, 20000) != 0) {
        th_node_dump_log(&g_node);
        ck_abort_msg("shaled did not become ready");
    }
    uint64_t t0 = now_ms(), id = 0;
    int fd = th_raw_connect_hello(g_node.host, g_node.port, NULL);
    ck_assert_int_ge(fd, 0);
    load_range(fd, 0, g_nsmall, 64, &id);
    load_range(fd, g_nsmall, g_nbig, 8, &id);
    close(fd);
    fprintf(stderr, "test_snapshot: loaded %d keys, %.1f MB of values in %llu ms\n", nkeys(),
            (double)g_bytes / 1e6, (unsigned long long)(now_ms() - t0));
}

static void teardown(void)
{
    if (g_node.pid > 0) {
        int st = th_node_stop(&g_node, SIGTERM);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            th_node_dump_log(&g_node);
            fprintf(stderr, "test_snapshot: shaled did not exit cleanly (status %d)\n", st);
            g_unclean = 1;
        }
    }
    th_rmrf(g_base);
    free(g_base);
}

/* ---- Helpers -----------------------------------------------------------------*/

/* Entries of the node's data dir whose name starts with prefix. */
static int count_dirs(const th_node_t *n, const char *prefix)
{
    DIR *d = opendir(n->dir);
    int c = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        c += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d != NULL)
        closedir(d);
    return c;
}

static int wait_snap_out(const th_node_t *n, int want, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (count_dirs(n, "snap-out-") != want) {
        if (now_ms() > end)
            return -1;
        usleep(20000);
    }
    return 0;
}

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static void send_fetch(int fd, uint64_t id, uint64_t min_index, uint32_t chunk)
{
    Shale__SnapFetchRequest q = SHALE__SNAP_FETCH_REQUEST__INIT;
    q.has_min_applied_index = min_index != 0;
    q.min_applied_index = min_index;
    q.has_chunk_bytes = chunk != 0;
    q.chunk_bytes = chunk;
    ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_SNAP_FETCH_REQ, id, &q), 0);
}

/* The wire error code answering id (-1 when the answer is not an ERROR). */
static int recv_error(int fd, uint64_t id)
{
    th_frame_t f;
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_uint_eq(f.id, id);
    int code = th_frame_error_code(&f);
    th_frame_free(&f);
    return code;
}

static void expect_chunk(int fd, uint64_t id)
{
    th_frame_t f;
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_msg(f.type == SHALE_MSG_SNAP_CHUNK, "answered with %u (error %d)", f.type,
                  th_frame_error_code(&f));
    ck_assert_uint_eq(f.id, id);
    Shale__SnapChunk *c = shale__snap_chunk__unpack(NULL, f.len, f.payload);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(c->file);
    ck_assert(!c->done);
    shale__snap_chunk__free_unpacked(c, NULL);
    th_frame_free(&f);
}

static store_t *open_copy(const char *dir)
{
    store_options_t so;
    store_options_default(&so);
    so.create_if_missing = 0;
    so.block_cache_bytes = 8u << 20;
    store_t *c = NULL;
    char err[STORE_ERRLEN];
    int rv = store_open(dir, &so, &c, err);
    ck_assert_msg(rv == 0, "the fetched checkpoint does not open: %s", err);
    return c;
}

/* Every key of the fetched store equals the live node's (value, version)
 * and the generator's value; the copy has no other keys. */
static void compare_with_live(const char *dir, uint64_t applied)
{
    store_t *c = open_copy(dir);
    char err[STORE_ERRLEN];
    ck_assert_uint_eq(store_applied_index(c), applied);
    uint64_t count = 0;
    for (uint32_t slot = 0; slot < SHALE_DEFAULT_SLOTS; slot++) {
        store_iter_t *it;
        ck_assert_int_eq(store_iter_slot(c, (uint16_t)slot, &it, err), 0);
        const uint8_t *k, *v;
        size_t kl, vl;
        while (store_iter_next(it, &k, &kl, &v, &vl, NULL) == 1)
            count++;
        store_iter_close(it);
    }
    ck_assert_uint_eq(count, (uint64_t)nkeys());

    int fd = th_raw_connect_hello(g_node.host, g_node.port, NULL);
    ck_assert_int_ge(fd, 0);
    uint8_t *expect = malloc(BIG_LEN + 65536);
    static char keys[64][32];
    for (int b = 0; b < nkeys();) {
        int per = b < g_nsmall ? 64 : 8;
        int cnt = nkeys() - b < per ? nkeys() - b : per;
        if (b < g_nsmall && b + cnt > g_nsmall)
            cnt = g_nsmall - b;
        ProtobufCBinaryData ks[64];
        for (int j = 0; j < cnt; j++) {
            key_of(b + j, keys[j]);
            ks[j].data = (uint8_t *)keys[j];
            ks[j].len = strlen(keys[j]);
        }
        Shale__MGetRequest m = SHALE__MGET_REQUEST__INIT;
        m.n_keys = (size_t)cnt;
        m.keys = ks;
        ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_MGET_REQ, (uint64_t)b + 1, &m), 0);
        th_frame_t f;
        ck_assert_int_eq(th_raw_recv(fd, &f), 0);
        ck_assert_msg(f.type == SHALE_MSG_MGET_RESP, "MGET answered %u (error %d)", f.type,
                      th_frame_error_code(&f));
        Shale__MGetResponse *r = shale__mget_response__unpack(NULL, f.len, f.payload);
        ck_assert_ptr_nonnull(r);
        ck_assert_uint_eq(r->n_items, (size_t)cnt);
        for (int j = 0; j < cnt; j++) {
            const Shale__KeyValue *kv = r->items[j];
            store_value_t sv = {0};
            uint16_t slot = (uint16_t)shale_key_slot(keys[j], strlen(keys[j]), SHALE_DEFAULT_SLOTS);
            ck_assert_int_eq(
                store_get(c, slot, (const uint8_t *)keys[j], strlen(keys[j]), &sv, err), 0);
            ck_assert_msg(kv->found && sv.found, "%s missing (live %d, copy %d)", keys[j],
                          kv->found, sv.found);
            ck_assert_uint_eq(sv.version, kv->version);
            size_t n = len_of(b + j);
            val_of(b + j, expect);
            ck_assert_uint_eq(sv.len, n);
            ck_assert_uint_eq(kv->value.len, n);
            ck_assert_msg(memcmp(sv.value, expect, n) == 0, "%s differs in the copy", keys[j]);
            ck_assert(memcmp(kv->value.data, expect, n) == 0);
            free(sv.value);
        }
        shale__mget_response__free_unpacked(r, NULL);
        th_frame_free(&f);
        b += cnt;
    }
    free(expect);
    close(fd);
    store_close(c);
}

/* snapx_fetch / snapx_fetch_ex as the node's port wants them: over TLS
 * with the harness's client certificate when the harness runs secure
 * (harness.h), plain otherwise. The context lives until the process ends. */
static int fetch_ex(const char *addr, const char *cluster_id, uint64_t min_index,
                    const char *dest, const snapx_fetch_opts_t *opts, uint64_t *applied,
                    snapx_fetch_stats_t *st, char *err, size_t errlen)
{
    static tls_ctx_t *tls;
    const char *ca, *cert, *key;
    th_tls_files(&ca, &cert, &key);
    if (tls == NULL && ca != NULL) {
        tls_opts_t to = {.ca_file = ca, .cert_file = cert, .key_file = key};
        char terr[TLS_ERRLEN];
        ck_assert_msg(tls_ctx_new(TLS_CLIENT, &to, &tls, terr, sizeof(terr)) == 0, "%s", terr);
    }
    snapx_fetch_opts_t o = {0};
    if (opts != NULL)
        o = *opts;
    o.tls = ca != NULL ? tls : NULL;
    return snapx_fetch_ex(addr, cluster_id, min_index, dest, &o, applied, st, err, errlen);
}

static int fetch(const char *addr, const char *cluster_id, uint64_t min_index, const char *dest,
                 uint64_t *applied, char *err, size_t errlen)
{
    return fetch_ex(addr, cluster_id, min_index, dest, NULL, applied, NULL, err, errlen);
}

static void print_stats(const char *what, const snapx_fetch_stats_t *st)
{
    fprintf(stderr,
            "test_snapshot: %s: %llu bytes in %u files, %llu chunks, %llu wire bytes, "
            "%llu ms, %.1f MB/s\n",
            what, (unsigned long long)st->bytes, st->files, (unsigned long long)st->chunks,
            (unsigned long long)st->wire_bytes, (unsigned long long)st->ms,
            st->ms ? (double)st->bytes / 1e3 / (double)st->ms : 0.0);
}

/* ---- Tests --------------------------------------------------------------------*/

START_TEST(test_fetch_matches_live_node)
{
    char dest[700], err[1024];
    snprintf(dest, sizeof(dest), "%s/fetch-whole", g_base);
    uint64_t before = th_node_applied(&g_node), applied = 0;
    ck_assert_uint_gt(before, 0);
    snapx_fetch_stats_t st;
    int rv =
        fetch_ex(g_node.addr, "shale", before, dest, NULL, &applied, &st, err, sizeof(err));
    ck_assert_msg(rv == 0, "fetch failed: %s (%d)", err, rv);
    print_stats("default chunks", &st);
    ck_assert_uint_ge(applied, before);
    ck_assert_uint_gt(st.leader_ms, 0); /* the checkpoint's STALE-read freshness */
    ck_assert_uint_ge(st.bytes, g_bytes / 2); /* random values: SSTs do not shrink much */
    ck_assert_uint_ge(st.files, 4);
    ck_assert(exists(dest));
    char part[720];
    snprintf(part, sizeof(part), "%s.part", dest);
    ck_assert(!exists(part));
    compare_with_live(dest, applied);
    /* The server removed its checkpoint when the stream ended. */
    ck_assert_int_eq(wait_snap_out(&g_node, 0, 5000), 0);
    th_rmrf(dest);
}
END_TEST

START_TEST(test_fetch_tiny_chunks)
{
    char dest[700], err[1024];
    snprintf(dest, sizeof(dest), "%s/fetch-tiny", g_base);
    uint64_t applied = 0;
    snapx_fetch_stats_t st;
    snapx_fetch_opts_t o = {.chunk_bytes = SNAPX_CHUNK_MIN};
    int rv = fetch_ex(g_node.addr, NULL, 1, dest, &o, &applied, &st, err, sizeof(err));
    ck_assert_msg(rv == 0, "fetch failed: %s (%d)", err, rv);
    print_stats("1 KiB chunks", &st);
    ck_assert_uint_ge(st.chunks, st.bytes / SNAPX_CHUNK_MIN);
    compare_with_live(dest, applied);
    ck_assert_int_eq(wait_snap_out(&g_node, 0, 5000), 0);
    th_rmrf(dest);
}
END_TEST

START_TEST(test_bad_requests_get_typed_errors)
{
    int fd = th_raw_connect_hello(g_node.host, g_node.port, NULL);
    ck_assert_int_ge(fd, 0);
    /* Garbage payload. */
    uint8_t junk[7] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    uint8_t *f = frame_build(SHALE_MSG_SNAP_FETCH_REQ, 5, junk, sizeof(junk));
    ck_assert_int_eq(th_raw_send(fd, f, FRAME_HEADER_SIZE + sizeof(junk)), 0);
    free(f);
    ck_assert_int_eq(recv_error(fd, 5), SHALE__ERROR_CODE__INVALID);
    /* An index this node has not applied. */
    send_fetch(fd, 6, 1ull << 60, 0);
    ck_assert_int_eq(recv_error(fd, 6), SHALE__ERROR_CODE__UNAVAILABLE);
    /* Chunk sizes out of range. */
    send_fetch(fd, 7, 0, 10);
    ck_assert_int_eq(recv_error(fd, 7), SHALE__ERROR_CODE__INVALID);
    send_fetch(fd, 8, 0, SNAPX_CHUNK_MAX + 1);
    ck_assert_int_eq(recv_error(fd, 8), SHALE__ERROR_CODE__TOO_LARGE);
    close(fd);
    /* Before HELLO. */
    fd = th_raw_connect(g_node.host, g_node.port, 5000);
    ck_assert_int_ge(fd, 0);
    send_fetch(fd, 9, 0, 0);
    ck_assert_int_eq(recv_error(fd, 9), SHALE__ERROR_CODE__PROTOCOL);
    close(fd);

    /* The same through snapx_fetch: typed codes, nothing left behind. */
    char dest[700], part[720], err[1024];
    snprintf(dest, sizeof(dest), "%s/fetch-bad", g_base);
    snprintf(part, sizeof(part), "%s.part", dest);
    uint64_t applied;
    ck_assert_int_eq(fetch(g_node.addr, "other-cluster", 0, dest, &applied, err, sizeof(err)),
                     SHALE_ECLUSTER);
    ck_assert(!exists(dest) && !exists(part));
    ck_assert_int_eq(fetch(g_node.addr, NULL, 1ull << 60, dest, &applied, err, sizeof(err)),
                     SHALE_EUNAVAILABLE);
    ck_assert_msg(strstr(err, "below the requested") != NULL, "%s", err);
    ck_assert(!exists(dest) && !exists(part));
    char closed[64];
    snprintf(closed, sizeof(closed), "127.0.0.4:%d", th_free_port("127.0.0.4"));
    ck_assert_int_eq(fetch(closed, NULL, 0, dest, &applied, err, sizeof(err)), SHALE_EIO);
    ck_assert_int_eq(fetch("nonsense", NULL, 0, dest, &applied, err, sizeof(err)),
                     SHALE_EINVAL);
    snapx_fetch_opts_t o = {.chunk_bytes = 10};
    ck_assert_int_eq(
        fetch_ex(g_node.addr, NULL, 0, dest, &o, &applied, NULL, err, sizeof(err)),
        SHALE_EINVAL);
    ck_assert_int_eq(mkdir(dest, 0755), 0);
    ck_assert_int_eq(fetch(g_node.addr, NULL, 0, dest, &applied, err, sizeof(err)),
                     SHALE_EINVAL);
    rmdir(dest);
    ck_assert(!exists(part));
    ck_assert_int_eq(wait_snap_out(&g_node, 0, 5000), 0);
}
END_TEST

START_TEST(test_dropped_connection_removes_checkpoint)
{
    int fd = th_raw_connect_hello(g_node.host, g_node.port, NULL);
    ck_assert_int_ge(fd, 0);
    send_fetch(fd, 1, 0, 65536);
    for (int i = 0; i < 3; i++)
        expect_chunk(fd, 1);
    ck_assert_int_eq(count_dirs(&g_node, "snap-out-"), 1);
    close(fd); /* mid-stream */
    ck_assert_msg(wait_snap_out(&g_node, 0, 10000) == 0,
                  "the server kept its checkpoint after the connection dropped");
    ck_assert_uint_gt(th_node_applied(&g_node), 0);
}
END_TEST

START_TEST(test_two_streams_at_most)
{
    int fds[4];
    for (int i = 0; i < 2; i++) {
        fds[i] = th_raw_connect_hello(g_node.host, g_node.port, NULL);
        ck_assert_int_ge(fds[i], 0);
        send_fetch(fds[i], 1, 0, 0);
        expect_chunk(fds[i], 1); /* started; not read further: it stalls */
    }
    ck_assert_int_eq(count_dirs(&g_node, "snap-out-"), 2);
    fds[2] = th_raw_connect_hello(g_node.host, g_node.port, NULL);
    send_fetch(fds[2], 1, 0, 0);
    ck_assert_int_eq(recv_error(fds[2], 1), SHALE__ERROR_CODE__OVERLOADED);
    char dest[700], err[1024];
    uint64_t applied;
    snprintf(dest, sizeof(dest), "%s/fetch-third", g_base);
    ck_assert_int_eq(fetch(g_node.addr, NULL, 0, dest, &applied, err, sizeof(err)),
                     SHALE_EOVERLOAD);
    /* A stream ending frees its slot. */
    close(fds[0]);
    ck_assert_int_eq(wait_snap_out(&g_node, 1, 10000), 0);
    send_fetch(fds[2], 2, 0, 0);
    expect_chunk(fds[2], 2);
    close(fds[1]);
    close(fds[2]);
    ck_assert_int_eq(wait_snap_out(&g_node, 0, 10000), 0);
}
END_TEST

static long status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, field, strlen(field)) == 0)
            v = atol(line + strlen(field) + 1);
    if (f != NULL)
        fclose(f);
    return v;
}

START_TEST(test_server_memory_does_not_grow_with_data)
{
    pid_t pid = g_node.pid;
    long rss0 = status_kb(pid, "VmRSS");
    ck_assert_int_gt(rss0, 0);
    /* Reset the peak so VmHWM measures the stream alone. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)pid);
    FILE *f = fopen(path, "w");
    int reset = f != NULL && fputs("5", f) >= 0;
    if (f != NULL && fclose(f) != 0)
        reset = 0;
    char dest[700], err[1024];
    snprintf(dest, sizeof(dest), "%s/fetch-rss", g_base);
    uint64_t applied;
    snapx_fetch_stats_t st;
    int rv = fetch_ex(g_node.addr, NULL, 0, dest, NULL, &applied, &st, err, sizeof(err));
    ck_assert_msg(rv == 0, "fetch failed: %s", err);
    long rss1 = status_kb(pid, "VmRSS"), hwm = status_kb(pid, "VmHWM");
    long peak = reset ? hwm : rss1;
    print_stats("memory run", &st);
    fprintf(stderr,
            "test_snapshot: server VmRSS before %ld kB, after %ld kB, peak during the stream "
            "%ld kB (%s); growth %ld kB for %llu bytes streamed\n",
            rss0, rss1, peak, reset ? "VmHWM after clear_refs" : "VmRSS after", peak - rss0,
            (unsigned long long)st.bytes);
    /* The peak can read below the start (pages given back meanwhile). */
    ck_assert_msg(peak <= rss0 || (uint64_t)(peak - rss0) * 1024 < STREAM_RSS_BOUND,
                  "server memory grew by %ld kB while streaming %llu bytes", peak - rss0,
                  (unsigned long long)st.bytes);
    th_rmrf(dest);
}
END_TEST

/* A second, small node: the rate limit, leftovers removed at start, and a
 * store swap cut between its renames undone at start. */
START_TEST(test_rate_limit_and_start_cleanup)
{
    char *base = th_tmpdir("snap-start");
    th_node_t n;
    th_node_init(&n, 1, "127.0.0.5", base);
    const char *extra[] = {"--snapshot-rate-mb", "4", NULL};
    ck_assert_int_eq(th_node_start(&n, extra), 0);
    ck_assert_int_eq(th_node_wait_ready(&n, 20000), 0);
    int saved_small = g_nsmall, saved_big = g_nbig;
    g_nsmall = 0; /* keys big0000.. of ~512 KiB */
    g_nbig = 24;
    int fd = th_raw_connect_hello(n.host, n.port, NULL);
    uint64_t id = 0;
    load_range(fd, 0, g_nbig, 8, &id);
    close(fd);

    char dest[700], err[1024];
    snprintf(dest, sizeof(dest), "%s/fetch-rate", base);
    uint64_t applied;
    snapx_fetch_stats_t st;
    ck_assert_int_eq(fetch_ex(n.addr, NULL, 0, dest, NULL, &applied, &st, err, sizeof(err)),
                     0);
    print_stats("rate-limited to 4 MiB/s", &st);
    double mib_s = (double)st.bytes / 1048576.0 / ((double)st.ms / 1000.0);
    ck_assert_msg(st.bytes > (8u << 20) && mib_s < 6.0, "%.1f MiB/s with a 4 MiB/s limit", mib_s);
    store_t *c = open_copy(dest);
    ck_assert_uint_eq(store_applied_index(c), applied);
    store_close(c);
    th_rmrf(dest);

    /* Leftovers of a crash are removed at start. */
    ck_assert_int_eq(th_node_stop(&n, SIGTERM), 0);
    const char *junk[] = {"snap-out-7", "snap-in", "snap-in.part", "db.old"};
    char p[1200];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s/%s", n.dir, junk[i]);
        ck_assert_int_eq(mkdir(p, 0755), 0);
        snprintf(p, sizeof(p), "%s/%s/file", n.dir, junk[i]);
        FILE *f = fopen(p, "w");
        fputs("x", f);
        fclose(f);
    }
    ck_assert_int_eq(th_node_start(&n, extra), 0);
    ck_assert_int_eq(th_node_wait_ready(&n, 20000), 0);
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s/%s", n.dir, junk[i]);
        ck_assert_msg(!exists(p), "%s survived the start", p);
    }
    /* A swap cut between "db -> db.old" and "snap-in -> db": the old store
     * comes back with every key. */
    ck_assert_int_eq(th_node_stop(&n, SIGTERM), 0);
    char db[700], old[720];
    snprintf(db, sizeof(db), "%s/db", n.dir);
    snprintf(old, sizeof(old), "%s/db.old", n.dir);
    ck_assert_int_eq(rename(db, old), 0);
    ck_assert_int_eq(th_node_start(&n, extra), 0);
    if (th_node_wait_ready(&n, 20000) != 0) {
        th_node_dump_log(&n);
        ck_abort_msg("the node did not come back after an interrupted swap");
    }
    ck_assert(!exists(old));
    fd = th_raw_connect_hello(n.host, n.port, NULL);
    char key[32];
    key_of(g_nbig - 1, key);
    Shale__GetRequest g = SHALE__GET_REQUEST__INIT;
    g.key.data = (uint8_t *)key;
    g.key.len = strlen(key);
    ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_GET_REQ, 1, &g), 0);
    th_frame_t f;
    ck_assert_int_eq(th_raw_recv(fd, &f), 0);
    ck_assert_int_eq(f.type, SHALE_MSG_GET_RESP);
    Shale__GetResponse *r = shale__get_response__unpack(NULL, f.len, f.payload);
    ck_assert(r != NULL && r->found && r->value.len == len_of(g_nbig - 1));
    shale__get_response__free_unpacked(r, NULL);
    th_frame_free(&f);
    close(fd);
    g_nsmall = saved_small;
    g_nbig = saved_big;
    ck_assert_int_eq(th_node_stop(&n, SIGTERM), 0);
    th_rmrf(base);
    free(base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("snapshot");
    TCase *tc = tcase_create("transfer");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_fetch_matches_live_node);
    tcase_add_test(tc, test_fetch_tiny_chunks);
    tcase_add_test(tc, test_bad_requests_get_typed_errors);
    tcase_add_test(tc, test_dropped_connection_removes_checkpoint);
    tcase_add_test(tc, test_two_streams_at_most);
    tcase_add_test(tc, test_server_memory_does_not_grow_with_data);
    tcase_add_test(tc, test_rate_limit_and_start_cleanup);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 && !g_unclean ? 0 : 1;
}
