/* Backup manifest, checksums and group archives (backup_manifest.h).
 *
 * The manifest is text, one field per line, written in this order and
 * parsed only in this order:
 *
 *   shale-backup 1
 *   created_ms 1765120000000
 *   finished_ms 1765120004000
 *   cluster_id shale-test
 *   epoch 12
 *   slots 256
 *   map map.pb SIZE SHA256
 *   users users.pb SIZE SHA256
 *   group ID BARRIER APPLIED RAW_BYTES NAME SIZE SHA256     (one per group)
 *   end SHA256                       (of every byte before this line)
 *
 * Owns no network and no store; never exit()s. */

#include "backup_manifest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define BK_IO_BYTES (1u << 20)

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void hexify(const unsigned char *d, unsigned n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * n] = '\0';
}

void bk_sha256_hex(const void *buf, size_t len, char out[BK_SHA_HEX])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (EVP_Digest(buf, len, d, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        out[0] = '\0';
        return;
    }
    hexify(d, n, out);
}

static int sha256_file_progress(const char *path, char out[BK_SHA_HEX], uint64_t *size,
                                bk_progress_fn progress, void *arg, uint64_t *done,
                                uint64_t total, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    unsigned char *buf = malloc(BK_IO_BYTES);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rv = 0;
    uint64_t n = 0;
    if (buf == NULL || ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        rv = fail(err, errlen, "%s: out of memory", path);
    while (rv == 0) {
        ssize_t r = read(fd, buf, BK_IO_BYTES);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rv = fail(err, errlen, "%s: read: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)r);
        n += (uint64_t)r;
        if (done != NULL)
            *done += (uint64_t)r;
        if (progress != NULL)
            progress(arg, done != NULL ? *done : n, total);
    }
    if (rv == 0) {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned dl = 0;
        if (EVP_DigestFinal_ex(ctx, d, &dl) != 1 || dl != 32)
            rv = fail(err, errlen, "%s: SHA-256 failed", path);
        else
            hexify(d, dl, out);
    }
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
    if (rv == 0 && size != NULL)
        *size = n;
    return rv;
}

int bk_sha256_file(const char *path, char out[BK_SHA_HEX], uint64_t *size, char *err,
                   size_t errlen)
{
    return sha256_file_progress(path, out, size, NULL, NULL, NULL, 0, err, errlen);
}

int bk_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= BK_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int sha_ok(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int id_ok(const char *s)
{
    for (; *s; s++)
        if (*s <= ' ' || *s > '~')
            return 0;
    return 1;
}

/* ---- Manifest ---------------------------------------------------------------*/

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, b->p != NULL ? b->cap - b->len : 0,
                          fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->p != NULL && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 1024) + (size_t)n + 1;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

static void put_file(sbuf_t *b, const char *key, const bk_file_t *f)
{
    sb_printf(b, "%s %s %" PRIu64 " %s\n", key, f->name, f->size, f->sha256);
}

static int file_ok(const bk_file_t *f)
{
    return bk_name_ok(f->name) && sha_ok(f->sha256);
}

int bk_manifest_write(const bk_manifest_t *m, char **out, size_t *len)
{
    if (!id_ok(m->cluster_id) || !file_ok(&m->map) || !file_ok(&m->users))
        return -1;
    for (size_t i = 0; i < m->ngroups; i++)
        if (!file_ok(&m->groups[i].file))
            return -1;
    sbuf_t b = {0};
    sb_printf(&b, "shale-backup %u\n", m->version);
    sb_printf(&b, "created_ms %" PRIu64 "\n", m->created_ms);
    sb_printf(&b, "finished_ms %" PRIu64 "\n", m->finished_ms);
    sb_printf(&b, "cluster_id %s\n", m->cluster_id);
    sb_printf(&b, "epoch %" PRIu64 "\n", m->epoch);
    sb_printf(&b, "slots %u\n", m->slots);
    put_file(&b, "map", &m->map);
    put_file(&b, "users", &m->users);
    for (size_t i = 0; i < m->ngroups; i++) {
        const bk_group_t *g = &m->groups[i];
        sb_printf(&b, "group %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %s %" PRIu64 " %s\n",
                  g->id, g->barrier, g->applied, g->raw_bytes, g->file.name, g->file.size,
                  g->file.sha256);
    }
    if (b.oom) {
        free(b.p);
        return -1;
    }
    char sha[BK_SHA_HEX];
    bk_sha256_hex(b.p, b.len, sha);
    sb_printf(&b, "end %s\n", sha);
    if (b.oom) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

/* Decimal u64, digits only. */
static int parse_u64(const char *s, uint64_t *v)
{
    if (*s < '0' || *s > '9')
        return -1;
    uint64_t x = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

/* Split line (modified) at spaces into at most max words. */
static int split(char *line, char **w, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
        if (n == max)
            return max + 1;
        w[n++] = t;
    }
    return n;
}

static int parse_file(char **w, bk_file_t *f)
{
    if (strlen(w[0]) >= sizeof(f->name) || strlen(w[2]) >= sizeof(f->sha256))
        return -1;
    snprintf(f->name, sizeof(f->name), "%s", w[0]);
    snprintf(f->sha256, sizeof(f->sha256), "%s", w[2]);
    if (parse_u64(w[1], &f->size) != 0 || !file_ok(f))
        return -1;
    return 0;
}

int bk_manifest_parse(const char *text, size_t len, bk_manifest_t *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    if (memchr(text, '\0', len) != NULL)
        return fail(err, errlen, "manifest holds a NUL byte");
    /* The checksum line first: the last line, "end <sha>". */
    if (len < 2 || text[len - 1] != '\n')
        return fail(err, errlen, "manifest is truncated (no final newline)");
    size_t endpos = len - 1;
    while (endpos > 0 && text[endpos - 1] != '\n')
        endpos--;
    if (len - endpos != 4 + 64 + 1 || memcmp(text + endpos, "end ", 4) != 0)
        return fail(err, errlen, "manifest is truncated (no 'end <sha256>' line)");
    char want[BK_SHA_HEX], got[BK_SHA_HEX];
    memcpy(want, text + endpos + 4, 64);
    want[64] = '\0';
    bk_sha256_hex(text, endpos, got);
    if (strcmp(want, got) != 0)
        return fail(err, errlen, "manifest checksum mismatch (the manifest was changed or "
                    "damaged): end line says %s, its lines hash to %s", want, got);
    char *copy = strndup(text, endpos);
    if (copy == NULL)
        return fail(err, errlen, "out of memory");
    int rv = 0, lineno = 0, stage = 0;
    size_t gcap = 0;
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line != NULL && rv == 0;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *w[10];
        char *rest = strchr(line, ' ');
        int n = split(line, w, 9);
        if (n < 1) {
            rv = fail(err, errlen, "manifest line %d is empty", lineno);
            break;
        }
        const char *k = w[0];
        uint64_t v = 0;
        if (stage == 0 && strcmp(k, "shale-backup") == 0 && n == 2 && parse_u64(w[1], &v) == 0) {
            if (v != BK_FORMAT_VERSION)
                rv = fail(err, errlen, "backup format version %" PRIu64 " is not supported "
                          "(this shalectl reads version %d)", v, BK_FORMAT_VERSION);
            m->version = (uint32_t)v;
        } else if (stage == 1 && strcmp(k, "created_ms") == 0 && n == 2 &&
                   parse_u64(w[1], &m->created_ms) == 0) {
        } else if (stage == 2 && strcmp(k, "finished_ms") == 0 && n == 2 &&
                   parse_u64(w[1], &m->finished_ms) == 0) {
        } else if (stage == 3 && strcmp(k, "cluster_id") == 0 && n <= 2) {
            (void)rest;
            if (n == 2 && strlen(w[1]) >= sizeof(m->cluster_id))
                rv = fail(err, errlen, "manifest line %d: cluster id too long", lineno);
            else
                snprintf(m->cluster_id, sizeof(m->cluster_id), "%s", n == 2 ? w[1] : "");
        } else if (stage == 4 && strcmp(k, "epoch") == 0 && n == 2 &&
                   parse_u64(w[1], &m->epoch) == 0 && m->epoch > 0) {
        } else if (stage == 5 && strcmp(k, "slots") == 0 && n == 2 && parse_u64(w[1], &v) == 0 &&
                   v > 0 && v <= 65535) {
            m->slots = (uint32_t)v;
        } else if (stage == 6 && strcmp(k, "map") == 0 && n == 4 && parse_file(w + 1, &m->map) == 0) {
        } else if (stage == 7 && strcmp(k, "users") == 0 && n == 4 &&
                   parse_file(w + 1, &m->users) == 0) {
        } else if (stage >= 8 && strcmp(k, "group") == 0 && n == 8) {
            if (m->ngroups == BK_MAX_GROUPS) {
                rv = fail(err, errlen, "manifest names more than %d groups", BK_MAX_GROUPS);
                break;
            }
            if (m->ngroups == gcap) {
                size_t nc = gcap ? gcap * 2 : 8;
                bk_group_t *ng = realloc(m->groups, nc * sizeof(*ng));
                if (ng == NULL) {
                    rv = fail(err, errlen, "out of memory");
                    break;
                }
                m->groups = ng;
                gcap = nc;
            }
            bk_group_t *g = &m->groups[m->ngroups];
            memset(g, 0, sizeof(*g));
            if (parse_u64(w[1], &g->id) != 0 || g->id == 0 || parse_u64(w[2], &g->barrier) != 0 ||
                parse_u64(w[3], &g->applied) != 0 || parse_u64(w[4], &g->raw_bytes) != 0 ||
                parse_file(w + 5, &g->file) != 0 || g->applied < g->barrier) {
                rv = fail(err, errlen, "manifest line %d: bad group line", lineno);
                break;
            }
            for (size_t i = 0; i < m->ngroups; i++)
                if (m->groups[i].id == g->id || strcmp(m->groups[i].file.name, g->file.name) == 0)
                    rv = fail(err, errlen, "manifest line %d: group %" PRIu64 " or its file "
                              "appears twice", lineno, g->id);
            m->ngroups++;
            continue;
        } else {
            rv = fail(err, errlen, "manifest line %d ('%s') is not what a version %d manifest "
                      "has there", lineno, k, BK_FORMAT_VERSION);
            break;
        }
        stage++;
    }
    free(copy);
    if (rv == 0 && stage < 8)
        rv = fail(err, errlen, "manifest is incomplete (%d of 8 header lines)", stage);
    if (rv == 0 && m->ngroups == 0)
        rv = fail(err, errlen, "manifest names no group");
    if (rv != 0)
        bk_manifest_free(m);
    return rv;
}

void bk_manifest_free(bk_manifest_t *m)
{
    free(m->groups);
    m->groups = NULL;
    m->ngroups = 0;
}

/* ---- Verify ---------------------------------------------------------------*/

static int check_file(const char *dir, const bk_file_t *f, bk_progress_fn progress, void *arg,
                      uint64_t *done, uint64_t total, char *err, size_t errlen)
{
    char path[4096], sha[BK_SHA_HEX];
    snprintf(path, sizeof(path), "%s/%s", dir, f->name);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return fail(err, errlen, "%s: missing (%s)", path, strerror(errno));
    if ((uint64_t)sb.st_size != f->size)
        return fail(err, errlen, "%s: size %" PRIu64 " bytes, the manifest says %" PRIu64
                    " (truncated or replaced)", path, (uint64_t)sb.st_size, f->size);
    uint64_t size = 0;
    if (sha256_file_progress(path, sha, &size, progress, arg, done, total, err, errlen) != 0)
        return -1;
    if (strcmp(sha, f->sha256) != 0)
        return fail(err, errlen, "%s: SHA-256 mismatch (the file is damaged): %s, the manifest "
                    "says %s", path, sha, f->sha256);
    return 0;
}

int bk_verify_dir(const char *dir, bk_manifest_t *m, bk_progress_fn progress, void *arg,
                  char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, BK_MANIFEST_NAME);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return fail(err, errlen, "%s: %s (not a complete backup)", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0;
    int rv = 0;
    for (;;) {
        if (len + 4096 > cap) {
            if (cap > (1u << 24)) {
                rv = fail(err, errlen, "%s: larger than 16 MiB", path);
                break;
            }
            char *nt = realloc(text, cap ? cap * 2 : 8192);
            if (nt == NULL) {
                rv = fail(err, errlen, "out of memory");
                break;
            }
            text = nt;
            cap = cap ? cap * 2 : 8192;
        }
        size_t r = fread(text + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    if (rv == 0 && ferror(f))
        rv = fail(err, errlen, "%s: read error", path);
    fclose(f);
    char perr[512];
    if (rv == 0 && bk_manifest_parse(text, len, m, perr, sizeof(perr)) != 0)
        rv = fail(err, errlen, "%s: %s", path, perr);
    free(text);
    if (rv != 0)
        return rv;
    uint64_t total = m->map.size + m->users.size, done = 0;
    for (size_t i = 0; i < m->ngroups; i++)
        total += m->groups[i].file.size;
    rv = check_file(dir, &m->map, progress, arg, &done, total, err, errlen);
    if (rv == 0)
        rv = check_file(dir, &m->users, progress, arg, &done, total, err, errlen);
    for (size_t i = 0; i < m->ngroups && rv == 0; i++)
        rv = check_file(dir, &m->groups[i].file, progress, arg, &done, total, err, errlen);
    if (rv != 0)
        bk_manifest_free(m);
    return rv;
}

/* ---- Archives ----------------------------------------------------------------*/

typedef struct zout {
    FILE *f;
    ZSTD_CCtx *z;
    uint8_t *buf;
    size_t cap;
    int bad;
} zout_t;

static int zout_write(zout_t *o, const void *p, size_t n, ZSTD_EndDirective end)
{
    ZSTD_inBuffer in = {p, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {o->buf, o->cap, 0};
        size_t left = ZSTD_compressStream2(o->z, &out, &in, end);
        if (ZSTD_isError(left))
            return -1;
        if (out.pos > 0 && fwrite(o->buf, 1, out.pos, o->f) != out.pos)
            return -1;
        if (end == ZSTD_e_end ? left == 0 : in.pos == in.size)
            return 0;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static int fsync_path(const char *path, int dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rv = fsync(fd);
    close(fd);
    return rv;
}

static void parent_of(const char *path, char *out, size_t len)
{
    snprintf(out, len, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == out)
        slash[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    else
        snprintf(out, len, ".");
}

int bk_archive_pack(const char *src_dir, const char *dst, uint64_t *raw_bytes,
                    bk_progress_fn progress, void *arg, char *err, size_t errlen)
{
    DIR *d = opendir(src_dir);
    if (d == NULL)
        return fail(err, errlen, "%s: %s", src_dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rv = 0;
    uint64_t total = 0;
    struct dirent *de;
    while (rv == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[4096];
        struct stat sb;
        snprintf(p, sizeof(p), "%s/%s", src_dir, de->d_name);
        if (lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode) || !bk_name_ok(de->d_name)) {
            rv = fail(err, errlen, "%s: not a plain regular file (a checkpoint holds only those)",
                      p);
            break;
        }
        total += (uint64_t)sb.st_size;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 32;
            char **nn = realloc(names, nc * sizeof(*nn));
            if (nn == NULL) {
                rv = fail(err, errlen, "out of memory");
                break;
            }
            names = nn;
            cap = nc;
        }
        names[n] = strdup(de->d_name);
        if (names[n] == NULL) {
            rv = fail(err, errlen, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_str);
    char part[4096];
    snprintf(part, sizeof(part), "%s.part", dst);
    zout_t o = {0};
    uint8_t *raw = NULL;
    if (rv == 0) {
        o.f = fopen(part, "we");
        o.z = ZSTD_createCCtx();
        o.cap = ZSTD_CStreamOutSize();
        o.buf = malloc(o.cap);
        raw = malloc(BK_IO_BYTES);
        if (o.f == NULL)
            rv = fail(err, errlen, "%s: %s", part, strerror(errno));
        else if (o.z == NULL || o.buf == NULL || raw == NULL)
            rv = fail(err, errlen, "out of memory");
        else
        {
            ZSTD_CCtx_setParameter(o.z, ZSTD_c_compressionLevel, 1);
            /* The frame's own XXH64: a damaged archive fails at unpack too,
             * not only at the SHA-256 check before it. */
            ZSTD_CCtx_setParameter(o.z, ZSTD_c_checksumFlag, 1);
        }
    }
    uint64_t done = 0;
    for (size_t i = 0; i < n && rv == 0; i++) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", src_dir, names[i]);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) != 0) {
            rv = fail(err, errlen, "%s: %s", p, strerror(errno));
            if (fd >= 0)
                close(fd);
            break;
        }
        size_t nl = strlen(names[i]);
        uint8_t hdr[2 + BK_NAME_MAX + 8];
        put_be(hdr, nl, 2);
        memcpy(hdr + 2, names[i], nl);
        put_be(hdr + 2 + nl, (uint64_t)sb.st_size, 8);
        if (zout_write(&o, hdr, 2 + nl + 8, ZSTD_e_continue) != 0)
            rv = fail(err, errlen, "%s: write failed: %s", part, strerror(errno));
        uint64_t left = (uint64_t)sb.st_size;
        while (rv == 0 && left > 0) {
            size_t want = left < BK_IO_BYTES ? (size_t)left : BK_IO_BYTES;
            ssize_t r = read(fd, raw, want);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                rv = fail(err, errlen, "%s: read: %s", p, r == 0 ? "file shrank" : strerror(errno));
                break;
            }
            if (zout_write(&o, raw, (size_t)r, ZSTD_e_continue) != 0) {
                rv = fail(err, errlen, "%s: write failed: %s", part, strerror(errno));
                break;
            }
            left -= (uint64_t)r;
            done += (uint64_t)r;
            if (progress != NULL)
                progress(arg, done, total);
        }
        close(fd);
    }
    if (rv == 0) {
        uint8_t end[2] = {0, 0};
        if (zout_write(&o, end, 2, ZSTD_e_end) != 0)
            rv = fail(err, errlen, "%s: write failed: %s", part, strerror(errno));
    }
    if (o.f != NULL) {
        if (rv == 0 && (fflush(o.f) != 0 || fsync(fileno(o.f)) != 0))
            rv = fail(err, errlen, "%s: flush: %s", part, strerror(errno));
        if (fclose(o.f) != 0 && rv == 0)
            rv = fail(err, errlen, "%s: close: %s", part, strerror(errno));
    }
    if (rv == 0 && rename(part, dst) != 0)
        rv = fail(err, errlen, "rename %s: %s", part, strerror(errno));
    if (rv == 0) {
        char parent[4096];
        parent_of(dst, parent, sizeof(parent));
        fsync_path(parent, 1);
    }
    if (rv != 0)
        unlink(part);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(raw);
    free(o.buf);
    ZSTD_freeCCtx(o.z);
    if (rv == 0 && raw_bytes != NULL)
        *raw_bytes = total;
    return rv;
}

/* Decompressed reader over a zstd file. */
typedef struct zin {
    FILE *f;
    ZSTD_DCtx *z;
    uint8_t *ib;
    size_t icap;
    ZSTD_inBuffer in;
    uint8_t *ob;
    size_t ocap, opos, olen;
    int frame_done; /* ZSTD_decompressStream returned 0: a frame ended */
    int bad;
} zin_t;

/* Read exactly n bytes: 0, 1 at a clean end of data before any byte, -1 on
 * damage. */
static int zin_read(zin_t *r, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        if (r->opos < r->olen) {
            size_t k = r->olen - r->opos < n - got ? r->olen - r->opos : n - got;
            memcpy(p + got, r->ob + r->opos, k);
            r->opos += k;
            got += k;
            continue;
        }
        if (r->in.pos == r->in.size) {
            size_t k = fread(r->ib, 1, r->icap, r->f);
            if (k == 0)
                return got == 0 && r->frame_done ? 1 : -1;
            r->in.src = r->ib;
            r->in.size = k;
            r->in.pos = 0;
        }
        ZSTD_outBuffer out = {r->ob, r->ocap, 0};
        size_t rc = ZSTD_decompressStream(r->z, &out, &r->in);
        if (ZSTD_isError(rc))
            return -1;
        r->frame_done = rc == 0;
        r->opos = 0;
        r->olen = out.pos;
    }
    return 0;
}

int bk_archive_unpack(const char *src, const char *dst_dir, bk_progress_fn progress, void *arg,
                      char *err, size_t errlen)
{
    struct stat sb;
    if (lstat(dst_dir, &sb) == 0 || errno != ENOENT)
        return fail(err, errlen, "%s already exists", dst_dir);
    zin_t r = {0};
    r.f = fopen(src, "re");
    if (r.f == NULL)
        return fail(err, errlen, "%s: %s", src, strerror(errno));
    uint64_t total = fstat(fileno(r.f), &sb) == 0 ? (uint64_t)sb.st_size : 0;
    r.z = ZSTD_createDCtx();
    r.icap = ZSTD_DStreamInSize();
    r.ocap = ZSTD_DStreamOutSize();
    r.ib = malloc(r.icap);
    r.ob = malloc(r.ocap);
    uint8_t *raw = malloc(BK_IO_BYTES);
    int rv = 0;
    if (r.z == NULL || r.ib == NULL || r.ob == NULL || raw == NULL)
        rv = fail(err, errlen, "out of memory");
    else if (mkdir(dst_dir, 0755) != 0)
        rv = fail(err, errlen, "mkdir %s: %s", dst_dir, strerror(errno));
    int made = rv == 0;
    for (;;) {
        if (rv != 0)
            break;
        uint8_t h[8];
        if (zin_read(&r, h, 2) != 0) {
            rv = fail(err, errlen, "%s: damaged or truncated archive", src);
            break;
        }
        size_t nl = (size_t)get_be(h, 2);
        if (nl == 0) {
            uint8_t extra;
            if (zin_read(&r, &extra, 1) != 1)
                rv = fail(err, errlen, "%s: data after the archive's end", src);
            break;
        }
        char name[BK_NAME_MAX];
        if (nl >= BK_NAME_MAX || zin_read(&r, (uint8_t *)name, nl) != 0) {
            rv = fail(err, errlen, "%s: damaged archive (bad file name)", src);
            break;
        }
        name[nl] = '\0';
        if (!bk_name_ok(name) || zin_read(&r, h, 8) != 0) {
            rv = fail(err, errlen, "%s: damaged archive (bad file entry)", src);
            break;
        }
        uint64_t left = get_be(h, 8);
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", dst_dir, name);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            rv = fail(err, errlen, "%s: %s", p, strerror(errno));
            break;
        }
        while (rv == 0 && left > 0) {
            size_t want = left < BK_IO_BYTES ? (size_t)left : BK_IO_BYTES;
            if (zin_read(&r, raw, want) != 0) {
                rv = fail(err, errlen, "%s: damaged or truncated archive (in %s)", src, name);
                break;
            }
            size_t off = 0;
            while (off < want) {
                ssize_t w = write(fd, raw + off, want - off);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w < 0) {
                    rv = fail(err, errlen, "%s: write: %s", p, strerror(errno));
                    break;
                }
                off += (size_t)w;
            }
            left -= want;
            if (progress != NULL)
                progress(arg, (uint64_t)ftello(r.f), total);
        }
        if (rv == 0 && fsync(fd) != 0)
            rv = fail(err, errlen, "%s: fsync: %s", p, strerror(errno));
        close(fd);
    }
    fclose(r.f);
    free(r.ib);
    free(r.ob);
    free(raw);
    ZSTD_freeDCtx(r.z);
    if (rv != 0 && made) {
        DIR *d = opendir(dst_dir);
        if (d != NULL) {
            struct dirent *de;
            while ((de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                    continue;
                char p[4096];
                snprintf(p, sizeof(p), "%s/%s", dst_dir, de->d_name);
                unlink(p);
            }
            closedir(d);
        }
        rmdir(dst_dir);
    }
    if (rv == 0)
        fsync_path(dst_dir, 1);
    return rv;
}
