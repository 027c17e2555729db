/* raw-rocksdb-bench: what the storage engine alone can do on this machine,
 * as the ceiling for shale-bench numbers.
 *
 * Uses RocksDB's C API directly with the options Shale's storage layer uses
 * (zstd, 10-bit bloom filter, LRU block cache, 64 MiB write buffer) and
 * measures, one thread, 100-byte values by default:
 *   1. put, WAL on, no sync          (what an un-synced write costs)
 *   2. put, sync every write          (one fsync per write)
 *   3. put, sync, 100 per write batch (group commit, as Raft batching does)
 *   4. random get after a flush       (bloom + block cache)
 *
 * Owns only the database directory it is given; destroys the database at
 * the end unless --keep. Never touches anything else on disk. */
#include <inttypes.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int key_of(char *buf, uint64_t k)
{
    return snprintf(buf, 32, "key-%010" PRIu64, k);
}

static void die(const char *what, char *err)
{
    fprintf(stderr, "raw-rocksdb-bench: %s: %s\n", what, err ? err : "?");
    free(err);
    exit(1);
}

static void report(const char *name, uint64_t n, double secs, const char *extra)
{
    printf("%-28s %10" PRIu64 " ops %12.0f ops/s  %8.2f us/op%s%s\n", name, n, (double)n / secs,
           secs * 1e6 / (double)n, extra[0] ? "  " : "", extra);
    fflush(stdout);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: raw-rocksdb-bench --dir DIR [options]\n"
               "  --dir DIR          database directory (created; destroyed at the end)\n"
               "  --n N              puts without sync, and random gets (default 200000)\n"
               "  --sync-n N         puts with a sync each (default 2000)\n"
               "  --batches N        sync batches of 100 puts (default 1000)\n"
               "  --value-size B     bytes per value (default 100)\n"
               "  --cache-mb MB      block cache (default 256, as shaled)\n"
               "  --keep             keep the database\n");
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    uint64_t n = 200000, sync_n = 2000, batches = 1000;
    size_t vsize = 100, cache_mb = 256;
    int keep = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        unsigned long long x = v ? strtoull(v, &end, 10) : 0;
        int bad = v == NULL || end == v || *end != '\0';
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--keep") == 0) {
            keep = 1;
            continue;
        } else if (strcmp(a, "--dir") == 0 && v != NULL) {
            dir = v;
        } else if (!bad && x > 0 && strcmp(a, "--n") == 0) {
            n = x;
        } else if (!bad && x > 0 && strcmp(a, "--sync-n") == 0) {
            sync_n = x;
        } else if (!bad && x > 0 && strcmp(a, "--batches") == 0) {
            batches = x;
        } else if (!bad && strcmp(a, "--value-size") == 0) {
            vsize = (size_t)x;
        } else if (!bad && x > 0 && strcmp(a, "--cache-mb") == 0) {
            cache_mb = (size_t)x;
        } else {
            fprintf(stderr, "raw-rocksdb-bench: bad option '%s' (try --help)\n", a);
            return 2;
        }
        i++;
    }
    if (dir == NULL) {
        fprintf(stderr, "raw-rocksdb-bench: --dir is required (try --help)\n");
        return 2;
    }

    rocksdb_options_t *opts = rocksdb_options_create();
    rocksdb_cache_t *cache = rocksdb_cache_create_lru(cache_mb << 20);
    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom(10));
    rocksdb_block_based_options_set_block_cache(t, cache);
    rocksdb_options_set_block_based_table_factory(opts, t);
    rocksdb_options_set_create_if_missing(opts, 1);
    rocksdb_options_set_error_if_exists(opts, 1);
    rocksdb_options_set_compression(opts, rocksdb_zstd_compression);
    rocksdb_options_set_write_buffer_size(opts, 64u << 20);
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(opts, dir, &err);
    if (err != NULL)
        die("open (the directory must not hold a database)", err);

    rocksdb_writeoptions_t *nosync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_t *sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(sync, 1);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *value = malloc(vsize ? vsize : 1);
    for (size_t i = 0; i < vsize; i++)
        value[i] = (char)('a' + rnd() % 26);
    char key[32], extra[64];
    uint64_t next = 0;

    printf("raw-rocksdb-bench: dir=%s value=%zuB zstd bloom=10 cache=%zuMiB\n", dir, vsize,
           cache_mb);

    double t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        int kl = key_of(key, next++);
        rocksdb_put(db, nosync, key, (size_t)kl, value, vsize, &err);
        if (err != NULL)
            die("put", err);
    }
    report("put (WAL, no sync)", n, now_s() - t0, "");

    t0 = now_s();
    for (uint64_t i = 0; i < sync_n; i++) {
        int kl = key_of(key, next++);
        rocksdb_put(db, sync, key, (size_t)kl, value, vsize, &err);
        if (err != NULL)
            die("put sync", err);
    }
    report("put (sync each)", sync_n, now_s() - t0, "");

    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    t0 = now_s();
    for (uint64_t b = 0; b < batches; b++) {
        rocksdb_writebatch_clear(wb);
        for (int j = 0; j < 100; j++) {
            int kl = key_of(key, next++);
            rocksdb_writebatch_put(wb, key, (size_t)kl, value, vsize);
        }
        rocksdb_write(db, sync, wb, &err);
        if (err != NULL)
            die("batch write", err);
    }
    snprintf(extra, sizeof(extra), "(%" PRIu64 " fsyncs)", batches);
    report("put (sync, batch 100)", batches * 100, now_s() - t0, extra);
    rocksdb_writebatch_destroy(wb);

    /* Reads from SST files, not the memtable: flush first. */
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush(db, fo, &err);
    rocksdb_flushoptions_destroy(fo);
    if (err != NULL)
        die("flush", err);
    uint64_t found = 0;
    t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        int kl = key_of(key, rnd() % n);
        size_t vl;
        char *v = rocksdb_get(db, ro, key, (size_t)kl, &vl, &err);
        if (err != NULL)
            die("get", err);
        found += v != NULL;
        rocksdb_free(v);
    }
    snprintf(extra, sizeof(extra), "(found %" PRIu64 ")", found);
    report("get (random, bloom+cache)", n, now_s() - t0, extra);

    free(value);
    rocksdb_readoptions_destroy(ro);
    rocksdb_writeoptions_destroy(nosync);
    rocksdb_writeoptions_destroy(sync);
    rocksdb_close(db);
    if (!keep) {
        rocksdb_destroy_db(opts, dir, &err);
        if (err != NULL)
            die("destroy", err);
    }
    rocksdb_block_based_options_destroy(t);
    rocksdb_cache_destroy(cache);
    rocksdb_options_destroy(opts);
    return 0;
}
