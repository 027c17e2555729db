/* Backups (shalectl backup / backup verify / restore): the manifest, the
 * checksums and the per-group archive format. docs/operations.md, "Back up
 * and restore".
 *
 * What this module owns:
 *  - the MANIFEST text format: writing it (with a SHA-256 over its own
 *    lines, so a damaged manifest is refused too) and parsing it, refusing
 *    anything it does not understand;
 *  - SHA-256 of files (OpenSSL EVP) and the check of a whole backup
 *    directory against its manifest;
 *  - the group archive: every file of a RocksDB checkpoint directory as
 *    [name length:2][name][size:8][bytes] records (big-endian), ended by a
 *    zero name length, the whole stream in one zstd frame; packing a
 *    directory into one and unpacking one into a new directory.
 *
 * Never talks to the network, never opens a store, never exit()s. File
 * names inside an archive and in the manifest are plain names (no '/', not
 * "." or ".."), checked on both sides. */
#ifndef SHALE_BACKUP_MANIFEST_H
#define SHALE_BACKUP_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#define BK_FORMAT_VERSION 1
#define BK_MANIFEST_NAME "MANIFEST"
#define BK_NAME_MAX 64
#define BK_SHA_HEX 65 /* 64 hex digits and a NUL */
#define BK_MAX_GROUPS 1024

/* One file of the backup: its plain name in the backup directory, its size
 * and the SHA-256 of its bytes (lowercase hex). */
typedef struct bk_file {
    char name[BK_NAME_MAX];
    uint64_t size;
    char sha256[BK_SHA_HEX];
} bk_file_t;

/* One shard group's data: the checkpoint of group `id` at Raft applied
 * index `applied` (>= the read barrier `barrier` asked for), raw_bytes
 * uncompressed, in archive `file`. */
typedef struct bk_group {
    uint64_t id;
    uint64_t barrier;
    uint64_t applied;
    uint64_t raw_bytes;
    bk_file_t file;
} bk_group_t;

typedef struct bk_manifest {
    uint32_t version;        /* BK_FORMAT_VERSION */
    uint64_t created_ms;     /* wall clock when the backup started */
    uint64_t finished_ms;    /* wall clock when the last checkpoint arrived */
    char cluster_id[128];
    uint64_t epoch;          /* the cluster map epoch of the cut (held) */
    uint32_t slots;
    bk_file_t map;           /* the packed ClusterMap at `epoch` */
    bk_file_t users;         /* the packed UserListResponse, with hashes */
    bk_group_t *groups;      /* malloc'd; bk_manifest_free */
    size_t ngroups;
} bk_manifest_t;

/* Lowercase hex SHA-256 of buf. */
void bk_sha256_hex(const void *buf, size_t len, char out[BK_SHA_HEX]);
/* SHA-256 and size of the file at path. 0, or -1 with err. */
int bk_sha256_file(const char *path, char out[BK_SHA_HEX], uint64_t *size, char *err,
                   size_t errlen);

/* A plain file name: 1..BK_NAME_MAX-1 bytes of [A-Za-z0-9._-], not "." or "..". */
int bk_name_ok(const char *name);

/* The manifest as text into *out (malloc'd, NUL-terminated; *len without
 * the NUL). 0, or -1 (out of memory, or a field that cannot be written). */
int bk_manifest_write(const bk_manifest_t *m, char **out, size_t *len);
/* Parse text[0..len): 0 with *m (bk_manifest_free), or -1 with a message
 * in err saying which line is wrong (a truncated or edited manifest fails
 * its own checksum). */
int bk_manifest_parse(const char *text, size_t len, bk_manifest_t *m, char *err, size_t errlen);
void bk_manifest_free(bk_manifest_t *m);

/* Progress of a long operation: done of total bytes (total 0: unknown). */
typedef void (*bk_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Read dir/MANIFEST, parse it and check every file it names (size and
 * SHA-256). 0 with *m (bk_manifest_free), or -1 with err naming the
 * first bad file and what is wrong. progress (may be NULL) is called as
 * bytes are hashed. */
int bk_verify_dir(const char *dir, bk_manifest_t *m, bk_progress_fn progress, void *arg,
                  char *err, size_t errlen);

/* Pack every regular file of src_dir (sorted by name; subdirectories are
 * refused) into the archive dst (written as dst.part, fsynced, renamed).
 * *raw_bytes: the files' total size. 0, or -1 with err. */
int bk_archive_pack(const char *src_dir, const char *dst, uint64_t *raw_bytes,
                    bk_progress_fn progress, void *arg, char *err, size_t errlen);
/* Unpack the archive src into dst_dir, which must not exist (created
 * here; removed again on failure). 0, or -1 with err. */
int bk_archive_unpack(const char *src, const char *dst_dir, bk_progress_fn progress, void *arg,
                      char *err, size_t errlen);

#endif
