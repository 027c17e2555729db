/* Checkpoints and restore of the store (docs/snapshots.md): a RocksDB
 * checkpoint of the whole store, and a restore that copies one into a
 * store directory file by file with fsync.
 *
 * It never deletes anything outside the directory it restores into.
 */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
int store_checkpoint(store_t *s, const char *dir, char *err)
{
    rocksdb_checkpoint_t *cp;
    char *rerr = NULL;

    if (s == NULL || dir == NULL) {
        set_err(err, "store_checkpoint: NULL argument");
        return SHALE_EINVAL;
    }
    cp = rocksdb_checkpoint_object_create(s->db, &rerr);
    if (rerr != NULL) {
        return st_rdb_fail(err, rerr, "checkpoint");
    }
    /* log_size_for_flush 0: always flush the memtable first, so the
     * checkpoint is SST files only and needs no WAL replay. */
    rocksdb_checkpoint_create(cp, dir, 0, &rerr);
    rocksdb_checkpoint_object_destroy(cp);
    if (rerr != NULL) {
        return st_rdb_fail(err, rerr, "checkpoint");
    }
    return SHALE_OK;
}

static int sys_fail(char *err, const char *what, const char *path)
{
    set_err(err, "%s %s: %s", what, path, strerror(errno));
    return SHALE_ESTORAGE;
}

static int fsync_path(const char *path, char *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
        return sys_fail(err, "open", path);
    }
    if (fsync(fd) != 0) {
        int rc = sys_fail(err, "fsync", path);
        close(fd);
        return rc;
    }
    close(fd);
    return SHALE_OK;
}

/* Remove everything inside dir (not dir itself). */
static int remove_contents(const char *dir, char *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];
    int rc = SHALE_OK;

    if (d == NULL) {
        return sys_fail(err, "opendir", dir);
    }
    while (rc == SHALE_OK && (errno = 0, e = readdir(d)) != NULL) {
        struct stat st;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >=
            sizeof(path)) {
            set_err(err, "restore: path too long under %s", dir);
            rc = SHALE_EINVAL;
            break;
        }
        if (lstat(path, &st) != 0) {
            rc = sys_fail(err, "lstat", path);
        } else if (S_ISDIR(st.st_mode)) {
            rc = remove_contents(path, err);
            if (rc == SHALE_OK && rmdir(path) != 0) {
                rc = sys_fail(err, "rmdir", path);
            }
        } else if (unlink(path) != 0) {
            rc = sys_fail(err, "unlink", path);
        }
    }
    if (rc == SHALE_OK && errno != 0) {
        rc = sys_fail(err, "readdir", dir);
    }
    closedir(d);
    return rc;
}

static int copy_file(const char *src, const char *dst, char *err)
{
    char buf[64 * 1024];
    int in, out, rc = SHALE_OK;

    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return sys_fail(err, "open", src);
    }
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        rc = sys_fail(err, "create", dst);
        close(in);
        return rc;
    }
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = sys_fail(err, "read", src);
            break;
        }
        if (n == 0) {
            break;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR) {
                    continue;
                }
                rc = sys_fail(err, "write", dst);
                break;
            }
            off += w;
        }
        if (rc != SHALE_OK) {
            break;
        }
    }
    if (rc == SHALE_OK && fsync(out) != 0) {
        rc = sys_fail(err, "fsync", dst);
    }
    if (close(out) != 0 && rc == SHALE_OK) {
        rc = sys_fail(err, "close", dst);
    }
    close(in);
    return rc;
}

/* Is `inner` equal to or inside `outer` (both existing paths)? */
static int path_within(const char *inner, const char *outer)
{
    char a[PATH_MAX], b[PATH_MAX];
    size_t n;

    if (realpath(inner, a) == NULL || realpath(outer, b) == NULL) {
        return 0;
    }
    n = strlen(b);
    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/' || n == 1);
}

/* Rules:
 *  - ckpt_dir is checked (a directory holding CURRENT, not inside db_dir)
 *    before anything in db_dir is touched;
 *  - db_dir's CURRENT goes first and the checkpoint's CURRENT is copied last,
 *    after every other file is fsynced: a restore cut short by a crash leaves
 *    a directory without CURRENT, which never opens as a half-restored DB
 *    (it fails to open, or opens empty with applied index 0 when created);
 *  - only regular files are copied (a RocksDB checkpoint is flat). */
int store_restore(const char *ckpt_dir, const char *db_dir, char *err)
{
    char src[PATH_MAX], dst[PATH_MAX];
    struct stat st;
    DIR *d;
    struct dirent *e;
    int rc = SHALE_OK, created = 0;

    if (ckpt_dir == NULL || db_dir == NULL) {
        set_err(err, "store_restore: NULL argument");
        return SHALE_EINVAL;
    }
    if (snprintf(src, sizeof(src), "%s/CURRENT", ckpt_dir) >= (int)sizeof(src)) {
        set_err(err, "restore: path too long");
        return SHALE_EINVAL;
    }
    if (stat(src, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, "restore: %s is not a checkpoint (no CURRENT file)",
                ckpt_dir);
        return SHALE_EINVAL;
    }
    if (mkdir(db_dir, 0755) == 0) {
        created = 1;
    } else if (errno != EEXIST) {
        return sys_fail(err, "mkdir", db_dir);
    }
    if (path_within(ckpt_dir, db_dir) || path_within(db_dir, ckpt_dir)) {
        if (created) {
            rmdir(db_dir);
        }
        set_err(err, "restore: %s and %s overlap", ckpt_dir, db_dir);
        return SHALE_EINVAL;
    }

    if (snprintf(dst, sizeof(dst), "%s/CURRENT", db_dir) >= (int)sizeof(dst)) {
        set_err(err, "restore: path too long");
        return SHALE_EINVAL;
    }
    if (unlink(dst) != 0 && errno != ENOENT) {
        return sys_fail(err, "unlink", dst);
    }
    rc = fsync_path(db_dir, err);
    if (rc == SHALE_OK) {
        rc = remove_contents(db_dir, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }

    d = opendir(ckpt_dir);
    if (d == NULL) {
        return sys_fail(err, "opendir", ckpt_dir);
    }
    while (rc == SHALE_OK && (errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, "CURRENT") == 0) {
            continue;
        }
        if ((size_t)snprintf(src, sizeof(src), "%s/%s", ckpt_dir, e->d_name) >=
                sizeof(src) ||
            (size_t)snprintf(dst, sizeof(dst), "%s/%s", db_dir, e->d_name) >=
                sizeof(dst)) {
            set_err(err, "restore: path too long");
            rc = SHALE_EINVAL;
            break;
        }
        if (lstat(src, &st) != 0) {
            rc = sys_fail(err, "lstat", src);
        } else if (!S_ISREG(st.st_mode)) {
            set_err(err, "restore: %s is not a regular file", src);
            rc = SHALE_EINVAL;
        } else {
            rc = copy_file(src, dst, err);
        }
    }
    if (rc == SHALE_OK && errno != 0) {
        rc = sys_fail(err, "readdir", ckpt_dir);
    }
    closedir(d);
    if (rc == SHALE_OK) {
        rc = fsync_path(db_dir, err);
    }
    if (rc == SHALE_OK) {
        snprintf(src, sizeof(src), "%s/CURRENT", ckpt_dir);
        snprintf(dst, sizeof(dst), "%s/CURRENT", db_dir);
        rc = copy_file(src, dst, err);
    }
    if (rc == SHALE_OK) {
        rc = fsync_path(db_dir, err);
    }
    return rc;
}
