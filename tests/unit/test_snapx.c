/* Snapshot transfer, the pure parts: the chunk codec (zstd + XXH64) and the
 * Raft snapshot descriptor (versions 1 and 2). */
#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "keyhash.h"
#include "shale_errors.h"
#include "snapshot_xfer.h"

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

/* Round trip of n bytes; returns the compressed size. */
static size_t round_trip(const uint8_t *raw, size_t n)
{
    size_t cap = snapx_chunk_bound(n);
    uint8_t *z = malloc(cap), *out = malloc(n ? n : 1);
    uint64_t sum = 0;
    size_t zn = snapx_chunk_pack(NULL, raw, n, z, cap, &sum);
    ck_assert_uint_gt(zn, 0);
    ck_assert_uint_eq(sum, shale_hash64(raw, n, 0));
    ck_assert_int_eq(snapx_chunk_unpack(NULL, z, zn, n, sum, out, n ? n : 1), 0);
    ck_assert(n == 0 || memcmp(out, raw, n) == 0);
    free(z);
    free(out);
    return zn;
}

START_TEST(test_chunk_round_trip)
{
    size_t n = SNAPX_CHUNK_MAX;
    uint8_t *raw = malloc(n);
    fill_random(raw, n, 1);
    size_t zr = round_trip(raw, n);
    ck_assert_uint_ge(zr, n); /* random data does not compress */
    memset(raw, 'a', n);
    size_t zc = round_trip(raw, n);
    ck_assert_uint_lt(zc, n / 100);
    round_trip(raw, 0); /* an empty file's chunk */
    round_trip(raw, 1);
    round_trip(raw, 4093); /* odd size */
    free(raw);
}
END_TEST

START_TEST(test_chunk_damage_is_caught)
{
    enum { N = 65536 };
    uint8_t *raw = malloc(N), *out = malloc(N);
    for (int i = 0; i < N; i++)
        raw[i] = (uint8_t)(i % 251 < 40 ? i : 'x'); /* compressible, not trivial */
    size_t cap = snapx_chunk_bound(N);
    uint8_t *z = malloc(cap), *bad = malloc(cap);
    uint64_t sum;
    size_t zn = snapx_chunk_pack(NULL, raw, N, z, cap, &sum);
    ck_assert_uint_gt(zn, 0);
    /* Wrong checksum, wrong length, too small a buffer. */
    ck_assert_int_eq(snapx_chunk_unpack(NULL, z, zn, N, sum ^ 1, out, N), SHALE_ECORRUPT);
    ck_assert_int_eq(snapx_chunk_unpack(NULL, z, zn, N - 1, sum, out, N), SHALE_ECORRUPT);
    ck_assert_int_eq(snapx_chunk_unpack(NULL, z, zn, N, sum, out, N - 1), SHALE_ETOOLARGE);
    /* Truncated frame. */
    ck_assert_int_eq(snapx_chunk_unpack(NULL, z, zn / 2, N, sum, out, N), SHALE_ECORRUPT);
    /* Every single-byte flip is refused (by zstd or by the checksum). */
    for (size_t i = 0; i < zn; i += (zn / 97) + 1) {
        memcpy(bad, z, zn);
        bad[i] ^= 0x40;
        ck_assert_int_eq(snapx_chunk_unpack(NULL, bad, zn, N, sum, out, N), SHALE_ECORRUPT);
    }
    /* Garbage. */
    fill_random(bad, 100, 7);
    ck_assert_int_eq(snapx_chunk_unpack(NULL, bad, 100, N, sum, out, N), SHALE_ECORRUPT);
    ck_assert_int_eq(snapx_chunk_unpack(NULL, bad, 0, 0, sum, out, N), SHALE_ECORRUPT);
    free(raw);
    free(out);
    free(z);
    free(bad);
}
END_TEST

START_TEST(test_desc_v2_round_trip)
{
    snapx_desc_t d = {.version = 2, .index = 0x0102030405060708ull, .node_id = 42};
    snprintf(d.addr, sizeof(d.addr), "127.0.0.9:7001");
    snprintf(d.cluster_id, sizeof(d.cluster_id), "prod-eu");
    struct raft_buffer b;
    ck_assert_int_eq(snapx_desc_encode(&d, &b), 0);
    ck_assert_uint_eq(b.len % 8, 0);
    ck_assert_uint_eq(b.len, 32 + 16 + 7 + 1); /* padded to 8 */
    snapx_desc_t e;
    ck_assert_int_eq(snapx_desc_decode(b.base, b.len, &e), 0);
    ck_assert_uint_eq(e.version, 2);
    ck_assert_uint_eq(e.index, d.index);
    ck_assert_uint_eq(e.node_id, 42);
    ck_assert_str_eq(e.addr, d.addr);
    ck_assert_str_eq(e.cluster_id, "prod-eu");
    /* The first 16 bytes are exactly a v1 descriptor's layout. */
    const uint8_t *p = b.base;
    ck_assert(memcmp(p, "SHS1", 4) == 0);
    ck_assert_uint_eq(p[15], 0x08);
    /* Truncations are refused, never read past the end; the padding is
     * not needed to decode. */
    for (size_t n = 0; n <= b.len; n++)
        ck_assert_int_eq(snapx_desc_decode(b.base, n, &e), n < 32 + 14 + 7 ? RAFT_MALFORMED : 0);
    /* Empty strings and maximal ones. */
    memset(&d, 0, sizeof(d));
    d.index = 5;
    raft_free(b.base);
    ck_assert_int_eq(snapx_desc_encode(&d, &b), 0);
    ck_assert_uint_eq(b.len, 32);
    ck_assert_int_eq(snapx_desc_decode(b.base, b.len, &e), 0);
    ck_assert_str_eq(e.addr, "");
    raft_free(b.base);
    memset(d.addr, 'a', sizeof(d.addr) - 1);
    memset(d.cluster_id, 'c', sizeof(d.cluster_id) - 1);
    ck_assert_int_eq(snapx_desc_encode(&d, &b), 0);
    ck_assert_uint_eq(b.len % 8, 0);
    ck_assert_int_eq(snapx_desc_decode(b.base, b.len, &e), 0);
    ck_assert_uint_eq(strlen(e.addr), sizeof(e.addr) - 1);
    ck_assert_uint_eq(strlen(e.cluster_id), sizeof(e.cluster_id) - 1);
    raft_free(b.base);
}
END_TEST

static void put32(uint8_t *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, 4);
}

START_TEST(test_desc_v1_and_malformed)
{
    /* What earlier builds wrote: 16 bytes, version 1. */
    uint8_t v1[16] = {'S', 'H', 'S', '1', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x30, 0x39};
    snapx_desc_t d;
    ck_assert_int_eq(snapx_desc_decode(v1, sizeof(v1), &d), 0);
    ck_assert_uint_eq(d.version, 1);
    ck_assert_uint_eq(d.index, 12345);
    ck_assert_str_eq(d.addr, "");
    ck_assert_uint_eq(d.node_id, 0);
    /* Bad magic, version 0. */
    uint8_t bad[16];
    memcpy(bad, v1, 16);
    bad[0] = 'X';
    ck_assert_int_eq(snapx_desc_decode(bad, 16, &d), RAFT_MALFORMED);
    memcpy(bad, v1, 16);
    put32(bad + 4, 0);
    ck_assert_int_eq(snapx_desc_decode(bad, 16, &d), RAFT_MALFORMED);
    /* v2 whose lengths point past the end, or past the fields' room. */
    uint8_t v2[40] = {0};
    memcpy(v2, v1, 16);
    put32(v2 + 4, 2);
    v2[25] = 8; /* address length 8, cluster 0: 32 + 8 fits in 40 */
    ck_assert_int_eq(snapx_desc_decode(v2, 40, &d), 0);
    v2[27] = 1; /* 32 + 8 + 1 > 40 */
    ck_assert_int_eq(snapx_desc_decode(v2, 40, &d), RAFT_MALFORMED);
    v2[27] = 0;
    v2[24] = 1; /* address length 265 >= 128 */
    ck_assert_int_eq(snapx_desc_decode(v2, 40, &d), RAFT_MALFORMED);
    /* A later version that appended fields still reads as v2. */
    snapx_desc_t w = {.index = 77, .node_id = 3};
    snprintf(w.addr, sizeof(w.addr), "h:1");
    struct raft_buffer b;
    ck_assert_int_eq(snapx_desc_encode(&w, &b), 0);
    uint8_t *v3 = calloc(1, b.len + 16);
    memcpy(v3, b.base, b.len);
    put32(v3 + 4, 3);
    ck_assert_int_eq(snapx_desc_decode(v3, b.len + 16, &d), 0);
    ck_assert_uint_eq(d.version, 3);
    ck_assert_uint_eq(d.index, 77);
    ck_assert_str_eq(d.addr, "h:1");
    free(v3);
    raft_free(b.base);
    ck_assert_int_eq(snapx_desc_decode(NULL, 0, &d), RAFT_MALFORMED);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("snapx");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, test_chunk_round_trip);
    tcase_add_test(tc, test_chunk_damage_is_caught);
    tcase_add_test(tc, test_desc_v2_round_trip);
    tcase_add_test(tc, test_desc_v1_and_malformed);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
