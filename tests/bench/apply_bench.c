/* store-apply-bench: the CPU one member spends applying writes, measured on
 * the real storage layer (store_apply) without Raft, network or other
 * processes, so it answers "what does this storage change buy per write"
 * on a busy machine too: it reports CPU time (getrusage), not wall time.
 *
 * Applies --entries Raft entries of --batch PUT requests each (100-byte
 * values by default) on --keys keys over 16384 slots, skewed towards low
 * keys (u^2: a hot set, as the zipfian benchmarks), from --clients session
 * clients whose seqs rise by one per request with ack_floor trailing by
 * --window, exactly as the router's requests arrive at a member. Prints CPU
 * microseconds per request and per entry, and the wall rate.
 *
 *   store-apply-bench [--dir D] [--entries N] [--batch B] [--keys K]
 *                     [--clients C] [--value-size V] [--window W]
 *                     [--repeat R]
 *
 * Owns only its database directory (a new one under $TMPDIR unless --dir),
 * removed at the end. Never touches anything else. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "shale_errors.h"
#include "store.h"

#define NSLOTS 16384u

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int arg_u64(int argc, char **argv, int *i, const char *name, uint64_t *out)
{
    if (strcmp(argv[*i], name) != 0)
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "store-apply-bench: %s needs a value\n", name);
        exit(2);
    }
    char *end;
    *out = strtoull(argv[++*i], &end, 10);
    if (*end != '\0') {
        fprintf(stderr, "store-apply-bench: %s: not a number: %s\n", name, argv[*i]);
        exit(2);
    }
    return 1;
}

int main(int argc, char **argv)
{
    uint64_t entries = 20000, batch = 8, keys = 100000, clients = 4, vsize = 100, window = 256,
             repeat = 1;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (!arg_u64(argc, argv, &i, "--entries", &entries) &&
                   !arg_u64(argc, argv, &i, "--batch", &batch) &&
                   !arg_u64(argc, argv, &i, "--keys", &keys) &&
                   !arg_u64(argc, argv, &i, "--clients", &clients) &&
                   !arg_u64(argc, argv, &i, "--value-size", &vsize) &&
                   !arg_u64(argc, argv, &i, "--window", &window) &&
                   !arg_u64(argc, argv, &i, "--repeat", &repeat)) {
            fprintf(stderr, "usage: store-apply-bench [--dir D] [--entries N] [--batch B] "
                            "[--keys K] [--clients C] [--value-size V] [--window W] "
                            "[--repeat R]\n");
            return 2;
        }
    }
    if (batch == 0 || keys == 0 || clients == 0 || entries == 0) {
        fprintf(stderr, "store-apply-bench: --entries, --batch, --keys and --clients must be > 0\n");
        return 2;
    }
    char tmpl[512];
    if (dir == NULL) {
        const char *t = getenv("TMPDIR");
        snprintf(tmpl, sizeof(tmpl), "%s/shale-apply-bench-XXXXXX", t != NULL ? t : "/tmp");
        if (mkdtemp(tmpl) == NULL) {
            perror("store-apply-bench: mkdtemp");
            return 1;
        }
        dir = tmpl;
    }
    store_options_t so;
    store_options_default(&so);
    store_t *s;
    char err[STORE_ERRLEN];
    if (store_open(dir, &so, &s, err) != 0) {
        fprintf(stderr, "store-apply-bench: open %s: %s\n", dir, err);
        return 1;
    }
    uint8_t *value = malloc(vsize ? vsize : 1);
    store_op_t *ops = calloc(batch, sizeof(*ops));
    store_result_t *res = calloc(batch, sizeof(*res));
    store_request_t *reqs = calloc(batch, sizeof(*reqs));
    char (*kbuf)[32] = calloc(batch, sizeof(*kbuf));
    uint64_t *seq = calloc(clients, sizeof(*seq));
    if (value == NULL || ops == NULL || res == NULL || reqs == NULL || kbuf == NULL ||
        seq == NULL) {
        fprintf(stderr, "store-apply-bench: out of memory\n");
        return 1;
    }
    memset(value, 'v', vsize);
    uint64_t index = 0, now_ms = 1700000000000ull;
    int rc = 0;
    for (uint64_t round = 0; round < repeat && rc == 0; round++) {
        double c0 = cpu_s(), w0 = wall_s();
        for (uint64_t e = 0; e < entries && rc == 0; e++) {
            for (uint64_t b = 0; b < batch; b++) {
                double u = (double)(rnd() % 1000000) / 1e6;
                uint64_t k = (uint64_t)(u * u * (double)keys);
                int klen = snprintf(kbuf[b], sizeof(kbuf[b]), "key-%010" PRIu64, k);
                uint64_t cl = rnd() % clients;
                ops[b] = (store_op_t){.type = STORE_OP_PUT,
                                      .slot = (uint16_t)(k % NSLOTS),
                                      .key = (const uint8_t *)kbuf[b],
                                      .klen = (size_t)klen,
                                      .value = value,
                                      .vlen = vsize};
                seq[cl]++;
                reqs[b] = (store_request_t){.client_id = cl + 1,
                                            .seq = seq[cl],
                                            .ack_floor = seq[cl] > window ? seq[cl] - window : 0,
                                            .nops = 1,
                                            .ops = &ops[b],
                                            .results = &res[b]};
            }
            now_ms += 1;
            if (store_apply(s, ++index, now_ms, reqs, batch, NULL, err) != 0) {
                fprintf(stderr, "store-apply-bench: apply %" PRIu64 ": %s\n", index, err);
                rc = 1;
            }
        }
        double c1 = cpu_s(), w1 = wall_s();
        double n = (double)(entries * batch);
        printf("round %" PRIu64 ": %" PRIu64 " entries x %" PRIu64
               " puts: %.2f us CPU per put, %.1f us per entry, %.0f puts/s wall\n",
               round + 1, entries, batch, (c1 - c0) * 1e6 / n,
               (c1 - c0) * 1e6 / (double)entries, n / (w1 - w0));
    }
    store_close(s);
    if (dir == tmpl) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
        if (system(cmd) != 0)
            fprintf(stderr, "store-apply-bench: could not remove %s\n", tmpl);
    }
    free(value);
    free(ops);
    free(res);
    free(reqs);
    free(kbuf);
    free(seq);
    return rc;
}
