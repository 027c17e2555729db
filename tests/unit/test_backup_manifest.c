/* Backup file formats (cluster/backup_manifest.c): the manifest round trip
 * and every way a damaged one is refused; SHA-256 against a known vector;
 * archives pack/unpack byte for byte and refuse damage; bk_verify_dir names
 * the file that is wrong. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup_manifest.h"

static char g_dir[256];

static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof(g_dir), "%s/bkunit-XXXXXX", t != NULL ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void rm_tree(const char *p)
{
    DIR *d = opendir(p);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char q[1024];
            snprintf(q, sizeof(q), "%s/%s", p, e->d_name);
            struct stat sb;
            if (lstat(q, &sb) == 0 && S_ISDIR(sb.st_mode))
                rm_tree(q);
            else
                unlink(q);
        }
        closedir(d);
    }
    rmdir(p);
}

static void teardown(void)
{
    rm_tree(g_dir);
}

static void put(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static uint8_t *get(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)l + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)l, f), (size_t)l);
    fclose(f);
    *n = (size_t)l;
    return b;
}

static void flip_byte(const char *path, long at)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t c;
    ck_assert_int_eq(pread(fd, &c, 1, at), 1);
    c ^= 0x5a;
    ck_assert_int_eq(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

static void sample(bk_manifest_t *m, bk_group_t *g)
{
    memset(m, 0, sizeof(*m));
    m->version = BK_FORMAT_VERSION;
    m->created_ms = 1765120000000ull;
    m->finished_ms = 1765120004321ull;
    snprintf(m->cluster_id, sizeof(m->cluster_id), "shale-test");
    m->epoch = 12;
    m->slots = 256;
    snprintf(m->map.name, sizeof(m->map.name), "map.pb");
    m->map.size = 77;
    bk_sha256_hex("map", 3, m->map.sha256);
    snprintf(m->users.name, sizeof(m->users.name), "users.pb");
    m->users.size = 5;
    bk_sha256_hex("users", 5, m->users.sha256);
    for (int i = 0; i < 2; i++) {
        memset(&g[i], 0, sizeof(g[i]));
        g[i].id = (uint64_t)i + 1;
        g[i].barrier = 100 + (uint64_t)i;
        g[i].applied = 110 + (uint64_t)i;
        g[i].raw_bytes = 1u << 20;
        snprintf(g[i].file.name, sizeof(g[i].file.name), "group-%d.shb", i + 1);
        g[i].file.size = 4096;
        bk_sha256_hex(g[i].file.name, strlen(g[i].file.name), g[i].file.sha256);
    }
    m->groups = g;
    m->ngroups = 2;
}

START_TEST(test_sha256_vector)
{
    char h[BK_SHA_HEX];
    bk_sha256_hex("abc", 3, h);
    ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    char p[512];
    snprintf(p, sizeof(p), "%s/f", g_dir);
    put(p, "abc", 3);
    char e[256];
    uint64_t size = 0;
    ck_assert_int_eq(bk_sha256_file(p, h, &size, e, sizeof(e)), 0);
    ck_assert_uint_eq(size, 3);
    ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ck_assert_int_ne(bk_name_ok("../x"), 1);
    ck_assert_int_ne(bk_name_ok(".."), 1);
    ck_assert_int_ne(bk_name_ok(""), 1);
    ck_assert_int_eq(bk_name_ok("000012.sst"), 1);
}
END_TEST

START_TEST(test_manifest_roundtrip)
{
    bk_manifest_t m, r;
    bk_group_t g[2];
    sample(&m, g);
    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(bk_manifest_write(&m, &text, &len), 0);
    char err[512];
    ck_assert_msg(bk_manifest_parse(text, len, &r, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(r.version, 1);
    ck_assert_uint_eq(r.created_ms, m.created_ms);
    ck_assert_uint_eq(r.finished_ms, m.finished_ms);
    ck_assert_str_eq(r.cluster_id, "shale-test");
    ck_assert_uint_eq(r.epoch, 12);
    ck_assert_uint_eq(r.slots, 256);
    ck_assert_str_eq(r.map.name, "map.pb");
    ck_assert_uint_eq(r.map.size, 77);
    ck_assert_str_eq(r.users.sha256, m.users.sha256);
    ck_assert_uint_eq(r.ngroups, 2);
    ck_assert_uint_eq(r.groups[1].id, 2);
    ck_assert_uint_eq(r.groups[1].barrier, 101);
    ck_assert_uint_eq(r.groups[1].applied, 111);
    ck_assert_uint_eq(r.groups[1].raw_bytes, 1u << 20);
    ck_assert_str_eq(r.groups[1].file.name, "group-2.shb");
    ck_assert_str_eq(r.groups[1].file.sha256, g[1].file.sha256);
    bk_manifest_free(&r);

    /* Every single-byte change is refused (the manifest's own checksum, or
     * the end line's shape). */
    for (size_t i = 0; i < len; i++) {
        char *bad = malloc(len);
        memcpy(bad, text, len);
        bad[i] = bad[i] == 'x' ? 'y' : 'x';
        ck_assert_msg(bk_manifest_parse(bad, len, &r, err, sizeof(err)) != 0,
                      "byte %zu changed and still parsed", i);
        free(bad);
    }
    /* Truncated anywhere. */
    for (size_t n = 0; n < len; n += 7)
        ck_assert_int_ne(bk_manifest_parse(text, n, &r, err, sizeof(err)), 0);
    free(text);

    /* A later format version is refused by name. */
    m.version = 2;
    ck_assert_int_eq(bk_manifest_write(&m, &text, &len), 0);
    ck_assert_int_ne(bk_manifest_parse(text, len, &r, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "version 2"));
    free(text);
    m.version = 1;
    /* A file name that is a path cannot be written. */
    snprintf(g[0].file.name, sizeof(g[0].file.name), "../etc/x");
    ck_assert_int_ne(bk_manifest_write(&m, &text, &len), 0);
    /* No groups: refused when read. */
    snprintf(g[0].file.name, sizeof(g[0].file.name), "group-1.shb");
    m.ngroups = 0;
    ck_assert_int_eq(bk_manifest_write(&m, &text, &len), 0);
    ck_assert_int_ne(bk_manifest_parse(text, len, &r, err, sizeof(err)), 0);
    free(text);
    /* A group whose applied index is below its barrier: refused. */
    m.ngroups = 2;
    g[1].applied = 50;
    ck_assert_int_eq(bk_manifest_write(&m, &text, &len), 0);
    ck_assert_int_ne(bk_manifest_parse(text, len, &r, err, sizeof(err)), 0);
    free(text);
}
END_TEST

/* A directory of files: empty, small, a few MiB of mixed bytes. */
static void make_src(const char *src)
{
    ck_assert_int_eq(mkdir(src, 0755), 0);
    char p[600];
    snprintf(p, sizeof(p), "%s/EMPTY", src);
    put(p, "", 0);
    snprintf(p, sizeof(p), "%s/CURRENT", src);
    put(p, "MANIFEST-000007\n", 16);
    size_t n = (3u << 20) + 12345;
    uint8_t *b = malloc(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = i % 3 == 0 ? (uint8_t)(x >> 16) : (uint8_t)(i & 7);
    }
    snprintf(p, sizeof(p), "%s/000012.sst", src);
    put(p, b, n);
    free(b);
}

static void same_file(const char *a, const char *b)
{
    size_t na, nb;
    uint8_t *x = get(a, &na), *y = get(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(x, y, na), 0);
    free(x);
    free(y);
}

static uint64_t g_calls;
static void count(void *arg, uint64_t done, uint64_t total)
{
    (void)arg;
    (void)done;
    (void)total;
    g_calls++;
}

START_TEST(test_archive_roundtrip_and_damage)
{
    char src[512], arch[512], out[512], err[1024], p1[700], p2[700];
    snprintf(src, sizeof(src), "%s/src", g_dir);
    snprintf(arch, sizeof(arch), "%s/group-1.shb", g_dir);
    snprintf(out, sizeof(out), "%s/out", g_dir);
    make_src(src);
    uint64_t raw = 0;
    g_calls = 0;
    ck_assert_msg(bk_archive_pack(src, arch, &raw, count, NULL, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(raw, (3u << 20) + 12345 + 16);
    ck_assert_uint_gt(g_calls, 0);
    ck_assert_msg(bk_archive_unpack(arch, out, NULL, NULL, err, sizeof(err)) == 0, "%s", err);
    const char *names[] = {"EMPTY", "CURRENT", "000012.sst"};
    for (int i = 0; i < 3; i++) {
        snprintf(p1, sizeof(p1), "%s/%s", src, names[i]);
        snprintf(p2, sizeof(p2), "%s/%s", out, names[i]);
        same_file(p1, p2);
    }
    /* The destination must not exist. */
    ck_assert_int_ne(bk_archive_unpack(arch, out, NULL, NULL, err, sizeof(err)), 0);
    rm_tree(out);
    /* A flipped byte anywhere in the compressed stream is refused (zstd's
     * frame checksum, a bad stream or bad records) and leaves no directory
     * behind. Try a few places. */
    size_t n;
    uint8_t *orig = get(arch, &n);
    int refused = 0, tries = 0;
    for (long at = 0; at < (long)n; at += (long)n / 16 + 1) {
        put(arch, orig, n);
        flip_byte(arch, at);
        tries++;
        if (bk_archive_unpack(arch, out, NULL, NULL, err, sizeof(err)) != 0) {
            refused++;
            struct stat sb;
            ck_assert_int_ne(stat(out, &sb), 0);
        } else {
            rm_tree(out);
        }
    }
    ck_assert_int_eq(refused, tries);
    /* Truncated: refused. */
    put(arch, orig, n / 2);
    ck_assert_int_ne(bk_archive_unpack(arch, out, NULL, NULL, err, sizeof(err)), 0);
    free(orig);
    /* A subdirectory in the source is refused. */
    snprintf(p1, sizeof(p1), "%s/sub", src);
    ck_assert_int_eq(mkdir(p1, 0755), 0);
    ck_assert_int_ne(bk_archive_pack(src, arch, &raw, NULL, NULL, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_verify_dir_names_the_bad_file)
{
    char src[512], arch[512], p[700], err[1024];
    snprintf(src, sizeof(src), "%s/src", g_dir);
    make_src(src);
    snprintf(arch, sizeof(arch), "%s/bk", g_dir);
    ck_assert_int_eq(mkdir(arch, 0755), 0);
    bk_manifest_t m, r;
    bk_group_t g[2];
    sample(&m, g);
    m.ngroups = 1;
    snprintf(p, sizeof(p), "%s/group-1.shb", arch);
    ck_assert_int_eq(bk_archive_pack(src, p, &g[0].raw_bytes, NULL, NULL, err, sizeof(err)), 0);
    ck_assert_int_eq(bk_sha256_file(p, g[0].file.sha256, &g[0].file.size, err, sizeof(err)), 0);
    snprintf(p, sizeof(p), "%s/map.pb", arch);
    put(p, "MAPBYTES", 8);
    ck_assert_int_eq(bk_sha256_file(p, m.map.sha256, &m.map.size, err, sizeof(err)), 0);
    snprintf(p, sizeof(p), "%s/users.pb", arch);
    put(p, "U", 1);
    ck_assert_int_eq(bk_sha256_file(p, m.users.sha256, &m.users.size, err, sizeof(err)), 0);
    /* No manifest yet: not a complete backup. */
    ck_assert_int_ne(bk_verify_dir(arch, &r, NULL, NULL, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "MANIFEST"));
    char *text;
    size_t len;
    ck_assert_int_eq(bk_manifest_write(&m, &text, &len), 0);
    snprintf(p, sizeof(p), "%s/MANIFEST", arch);
    put(p, text, len);
    free(text);
    ck_assert_msg(bk_verify_dir(arch, &r, count, NULL, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(r.ngroups, 1);
    bk_manifest_free(&r);
    /* One byte flipped in the group file: refused, naming it. */
    snprintf(p, sizeof(p), "%s/group-1.shb", arch);
    flip_byte(p, 100);
    ck_assert_int_ne(bk_verify_dir(arch, &r, NULL, NULL, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "group-1.shb"));
    ck_assert_ptr_nonnull(strstr(err, "SHA-256 mismatch"));
    flip_byte(p, 100);
    ck_assert_int_eq(bk_verify_dir(arch, &r, NULL, NULL, err, sizeof(err)), 0);
    bk_manifest_free(&r);
    /* Missing map: named. */
    snprintf(p, sizeof(p), "%s/map.pb", arch);
    unlink(p);
    ck_assert_int_ne(bk_verify_dir(arch, &r, NULL, NULL, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "map.pb"));
    put(p, "MAPBYTEZ", 8);
    ck_assert_int_ne(bk_verify_dir(arch, &r, NULL, NULL, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "map.pb"));
    /* A flipped byte in the manifest itself. */
    put(p, "MAPBYTES", 8);
    snprintf(p, sizeof(p), "%s/MANIFEST", arch);
    flip_byte(p, 30);
    ck_assert_int_ne(bk_verify_dir(arch, &r, NULL, NULL, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "MANIFEST"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backup_manifest");
    TCase *tc = tcase_create("backup_manifest");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sha256_vector);
    tcase_add_test(tc, test_manifest_roundtrip);
    tcase_add_test(tc, test_archive_roundtrip_and_damage);
    tcase_add_test(tc, test_verify_dir_names_the_bad_file);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
