/* shalectl backup / backup verify / backup release / restore
 * (docs/operations.md, "Back up and restore").
 *
 * What this file owns:
 *  - backup: hold migrations in the map (ClusterMap.migration_hold, which
 *    the meta group enforces: cmap_validate_change), record the held map's
 *    epoch; for each group ask every member's STATUS for a read barrier
 *    (the highest applied index of any member and the leader's commit
 *    index), fetch a RocksDB checkpoint that has applied at least that
 *    index from one member (SNAP_FETCH, snapshot_xfer.h; read replicas and
 *    followers before the leader), pack it into one zstd archive; then the
 *    users (USER_LIST with hashes) and the map; clear the hold; write the
 *    manifest (backup_manifest.h) last, so a backup without one is
 *    incomplete;
 *  - backup verify: every checksum and the manifest's own;
 *  - backup release: clear a hold a killed backup left behind;
 *  - restore: verify, then write the backup's data into a new, initialised
 *    cluster through its router (MPUT batches; keys with a TTL by PUT with
 *    the time they had left at the cut), any group count and slot count,
 *    taking each slot only from the group the held map gave it to (a
 *    migration's half-copied target is ignored); users missing in the new
 *    cluster are added with their password hashes.
 *
 * Never changes data in the backed-up cluster (only the map's hold field),
 * never writes a backup file in place (".part" then rename). */

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup_manifest.h"
#include "cmap.h"
#include "ctl.h"
#include "shale_internal.h"
#include "snapshot_xfer.h"
#include "store.h"
#include "tls.h"
#include "wire.h"

/* How long backup waits for a fenced migration to finish before holding,
 * and for a member to apply the barrier. */
#define BK_WAIT_MS 60000
#define BK_MPUT_ITEMS 256
#define BK_MPUT_BYTES (256u << 10)

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- Progress on stderr ------------------------------------------------------*/

typedef struct prog {
    const char *verb;
    char what[96];
    uint64_t t0, last;
    int quiet;
} prog_t;

static void prog_start(prog_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void prog_start(prog_t *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->what, sizeof(p->what), fmt, ap);
    va_end(ap);
    p->t0 = mono_ms();
    p->last = 0;
}

static void prog_line(prog_t *p, uint64_t done, uint64_t total, int final)
{
    if (p->quiet)
        return;
    uint64_t now = mono_ms();
    if (!final && now - p->last < 1000)
        return;
    p->last = now;
    double s = (double)(now - p->t0) / 1000.0;
    double mb = (double)done / 1e6, rate = s > 0 ? mb / s : 0;
    if (total > 0 && !final && done <= total) {
        double left = rate > 0 ? ((double)(total - (done < total ? done : total)) / 1e6) / rate : 0;
        fprintf(stderr, "%s: %s: %.1f/%.1f MB (%.0f%%), %.1f MB/s, ETA %.0f s\n", p->verb,
                p->what, mb, (double)total / 1e6, 100.0 * (double)done / (double)total, rate, left);
    } else {
        fprintf(stderr, "%s: %s: %.1f MB%s, %.1f MB/s, %.1f s\n", p->verb, p->what, mb,
                final ? " done" : "", rate, s);
    }
}

static void prog_cb(void *arg, uint64_t done, uint64_t total)
{
    prog_line(arg, done, total, 0);
}

/* ---- Shared -----------------------------------------------------------------*/

static int dir_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int write_file(const char *dir, const char *name, const void *buf, size_t len,
                      bk_file_t *f, char *err, size_t errlen)
{
    char path[4096], part[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(part, sizeof(part), "%s.part", path);
    FILE *fp = fopen(part, "we");
    if (fp == NULL) {
        snprintf(err, errlen, "%.400s: %s", part, strerror(errno));
        return -1;
    }
    int ok = fwrite(buf, 1, len, fp) == len && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    ok = fclose(fp) == 0 && ok;
    if (!ok || rename(part, path) != 0) {
        snprintf(err, errlen, "%.400s: write failed: %s", path, strerror(errno));
        unlink(part);
        return -1;
    }
    if (f != NULL) {
        snprintf(f->name, sizeof(f->name), "%s", name);
        f->size = len;
        bk_sha256_hex(buf, len, f->sha256);
    }
    return 0;
}

static int read_file(const char *dir, const char *name, uint8_t **out, size_t *len, char *err,
                     size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "re");
    struct stat sb;
    if (fp == NULL || fstat(fileno(fp), &sb) != 0) {
        snprintf(err, errlen, "%.400s: %s", path, strerror(errno));
        if (fp != NULL)
            fclose(fp);
        return -1;
    }
    *len = (size_t)sb.st_size;
    *out = malloc(*len ? *len : 1);
    int ok = *out != NULL && fread(*out, 1, *len, fp) == *len;
    fclose(fp);
    if (!ok) {
        free(*out);
        *out = NULL;
        snprintf(err, errlen, "%.400s: read failed", path);
        return -1;
    }
    return 0;
}

/* ---- Holding migrations ------------------------------------------------------*/

static int has_fenced(const Shale__ClusterMap *m)
{
    for (size_t i = 0; i < m->n_migrations; i++)
        if (m->migrations[i]->state == SHALE__MIGRATION_STATE__MIG_FENCED)
            return 1;
    return 0;
}

/* Set the hold (waiting while a migration is fenced, so no slot stays
 * paused for the backup's length). 0 with *held (the map that holds), or
 * an exit code. */
static int hold_set(meta_t *m, const char *verb, const char *hold, Shale__ClusterMap **held)
{
    uint64_t deadline = mono_ms() + BK_WAIT_MS;
    char err[SHALE_ERRMSG_LEN];
    for (;;) {
        Shale__ClusterMap *cur = NULL;
        int rv = map_get(m, &cur, err);
        if (rv != SHALE_OK)
            return ctl_error(verb, rv, err, 0);
        if (cur->epoch == 0) {
            cmap_free(cur);
            return ctl_say(EXIT_FAIL, verb, "the cluster has no map yet (shalectl init)");
        }
        if (cur->migration_hold != NULL && cur->migration_hold[0] != '\0') {
            int c = ctl_say(EXIT_REFUSED, verb, "migrations are already held ('%s'): another "
                            "backup is running, or one was killed (then: shalectl backup release)",
                            cur->migration_hold);
            cmap_free(cur);
            return c;
        }
        if (has_fenced(cur)) {
            cmap_free(cur);
            if (mono_ms() > deadline)
                return ctl_say(EXIT_UNREACHABLE, verb, "a migration stayed fenced for %d s",
                               BK_WAIT_MS / 1000);
            sleep_ms(200);
            continue;
        }
        Shale__ClusterMap *next = cmap_copy(cur);
        if (next == NULL) {
            cmap_free(cur);
            return ctl_say(EXIT_FAIL, verb, "out of memory");
        }
        free(next->migration_hold);
        next->migration_hold = strdup(hold);
        uint64_t at = 0;
        Shale__ClusterMap *out = NULL;
        rv = next->migration_hold == NULL ? SHALE_ENOMEM
                                          : map_cas(m, cur->epoch, next, hold, &out, &at, err);
        cmap_free(next);
        cmap_free(cur);
        if (rv == SHALE_OK) {
            *held = out;
            return 0;
        }
        if (rv != SHALE_ECASFAILED || mono_ms() > deadline)
            return ctl_error(verb, rv, err, 1);
    }
}

/* Clear the hold if it is hold (NULL: whatever it is). 0 or an exit code. */
static int hold_clear(meta_t *m, const char *verb, const char *hold)
{
    char err[SHALE_ERRMSG_LEN];
    for (int attempt = 0;; attempt++) {
        Shale__ClusterMap *cur = NULL;
        int rv = map_get(m, &cur, err);
        if (rv != SHALE_OK)
            return ctl_error(verb, rv, err, 0);
        if (cur->migration_hold == NULL || cur->migration_hold[0] == '\0' ||
            (hold != NULL && strcmp(cur->migration_hold, hold) != 0)) {
            cmap_free(cur);
            return 0;
        }
        Shale__ClusterMap *next = cmap_copy(cur);
        if (next == NULL) {
            cmap_free(cur);
            return ctl_say(EXIT_FAIL, verb, "out of memory");
        }
        free(next->migration_hold);
        next->migration_hold = NULL;
        uint64_t at = 0;
        rv = map_cas(m, cur->epoch, next, "migrations released", NULL, &at, err);
        cmap_free(next);
        cmap_free(cur);
        if (rv == SHALE_OK)
            return 0;
        if (rv != SHALE_ECASFAILED || attempt > 20)
            return ctl_error(verb, rv, err, 1);
    }
}

/* ---- Backup -------------------------------------------------------------------*/

typedef struct fetch_ctx {
    tls_ctx_t *tls;
    uint8_t *cred;
    size_t cred_len;
} fetch_ctx_t;

static int fetch_ctx_init(const cmd_t *cmd, fetch_ctx_t *fc, char *err, size_t errlen)
{
    memset(fc, 0, sizeof(*fc));
    if (cmd->tls_ca != NULL) {
        tls_opts_t o = {.ca_file = cmd->tls_ca, .cert_file = cmd->tls_cert,
                        .key_file = cmd->tls_key};
        if (tls_ctx_new(TLS_CLIENT, &o, &fc->tls, err, errlen) != 0)
            return -1;
    }
    if (cmd->user != NULL && cmd->password != NULL) {
        Shale__Credential c = SHALE__CREDENTIAL__INIT;
        c.user = (char *)cmd->user;
        c.password.data = (uint8_t *)cmd->password;
        c.password.len = cmd->password_len;
        fc->cred_len = shale__credential__get_packed_size(&c);
        fc->cred = malloc(fc->cred_len ? fc->cred_len : 1);
        if (fc->cred == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        shale__credential__pack(&c, fc->cred);
    }
    return 0;
}

static void fetch_ctx_free(fetch_ctx_t *fc)
{
    if (fc->cred != NULL)
        OPENSSL_cleanse(fc->cred, fc->cred_len);
    free(fc->cred);
    tls_ctx_free(fc->tls);
}

/* The order to ask members in: read replicas, then followers, then the
 * leader (a stream costs its source loop time). */
static int member_rank(const Shale__Member *m, const probe_t *p)
{
    if (p->rv != SHALE_OK)
        return 3;
    if (m->has_role && m->role == SHALE__MEMBER_ROLE__ROLE_STANDBY)
        return 0;
    if (p->st->role != NULL && strcmp(p->st->role, "leader") == 0)
        return 2;
    return 1;
}

/* Back up group g into dir: barrier, fetch, pack. */
static int backup_group(const cmd_t *cmd, const char *verb, const fetch_ctx_t *fc,
                        const Shale__ClusterMap *map, const Shale__ShardGroup *g, const char *dir,
                        bk_group_t *out)
{
    size_t n = g->n_members;
    if (n == 0)
        return ctl_say(EXIT_FAIL, verb, "group %" PRIu64 " has no members", g->id);
    probe_t *p = calloc(n, sizeof(*p));
    if (p == NULL)
        return ctl_say(EXIT_FAIL, verb, "out of memory");
    for (size_t i = 0; i < n; i++)
        snprintf(p[i].addr, sizeof(p[i].addr), "%s", g->members[i]->client_addr);
    probe_all(cmd, p, n);
    /* The read barrier: every write acknowledged before now was applied by
     * the leader that acknowledged it, so it is at or below the highest
     * applied index of any member (and the current leader's commit index). */
    uint64_t barrier = 0;
    size_t answered = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i].rv != SHALE_OK)
            continue;
        answered++;
        const Shale__StatusResponse *st = p[i].st;
        if (st->has_group_id && st->group_id != g->id)
            continue;
        if (st->has_applied_index && st->applied_index > barrier)
            barrier = st->applied_index;
        if (st->role != NULL && strcmp(st->role, "leader") == 0 && st->has_commit_index &&
            st->commit_index > barrier)
            barrier = st->commit_index;
    }
    int code = 0;
    if (answered == 0) {
        code = ctl_say(EXIT_UNREACHABLE, verb, "no member of group %" PRIu64 " answered STATUS "
                       "(%s: %s)", g->id, p[0].addr, p[0].err);
        probe_free(p, n);
        free(p);
        return code;
    }
    size_t order[64];
    size_t no = 0;
    for (int rank = 0; rank <= 3 && no < 64; rank++)
        for (size_t i = 0; i < n && no < 64; i++)
            if (member_rank(g->members[i], &p[i]) == rank)
                order[no++] = i;
    char tmp[4096], arch[4096], name[BK_NAME_MAX], err[512] = "";
    snprintf(tmp, sizeof(tmp), "%s/.fetch-group-%" PRIu64, dir, g->id);
    snprintf(name, sizeof(name), "group-%" PRIu64 ".shb", g->id);
    snprintf(arch, sizeof(arch), "%s/%s", dir, name);
    snapx_remove_tree(tmp);
    snapx_fetch_opts_t o = {.tls = fc->tls, .credential = fc->cred,
                            .credential_len = fc->cred_len, .progress = prog_cb};
    prog_t pr = {.verb = verb};
    o.progress_arg = &pr;
    uint64_t applied = 0, deadline = mono_ms() + BK_WAIT_MS;
    snapx_fetch_stats_t stats;
    int rv = -1;
    char src[128] = ""; /* a copy: p is freed before the summary line */
    for (int round = 0; rv != SHALE_OK; round++) {
        for (size_t k = 0; k < no && rv != SHALE_OK; k++) {
            snprintf(src, sizeof(src), "%s", p[order[k]].addr);
            prog_start(&pr, "group %" PRIu64 " checkpoint from %s (barrier %" PRIu64 ")", g->id,
                       src, barrier);
            rv = snapx_fetch_ex(src, map->cluster_id, barrier, tmp, &o, &applied, &stats, err,
                                sizeof(err));
            if (rv != SHALE_OK)
                fprintf(stderr, "%s: group %" PRIu64 ": %s: %s (trying the next member)\n", verb,
                        g->id, src, err);
        }
        if (rv == SHALE_OK || mono_ms() > deadline)
            break;
        sleep_ms(500);
    }
    probe_free(p, n);
    free(p);
    if (rv != SHALE_OK)
        return ctl_say(ctl_exit_code(rv, 0), verb, "group %" PRIu64 ": no member gave a "
                       "checkpoint at or past index %" PRIu64 ": %s", g->id, barrier, err);
    prog_line(&pr, stats.bytes, 0, 1);
    prog_start(&pr, "group %" PRIu64 " pack", g->id);
    uint64_t raw = 0;
    char perr[512];
    if (bk_archive_pack(tmp, arch, &raw, prog_cb, &pr, perr, sizeof(perr)) != 0) {
        snapx_remove_tree(tmp);
        return ctl_say(EXIT_FAIL, verb, "group %" PRIu64 ": %s", g->id, perr);
    }
    snapx_remove_tree(tmp);
    memset(out, 0, sizeof(*out));
    out->id = g->id;
    out->barrier = barrier;
    out->applied = applied;
    out->raw_bytes = raw;
    snprintf(out->file.name, sizeof(out->file.name), "%s", name);
    if (bk_sha256_file(arch, out->file.sha256, &out->file.size, perr, sizeof(perr)) != 0)
        return ctl_say(EXIT_FAIL, verb, "%s", perr);
    fprintf(stderr, "%s: group %" PRIu64 ": applied index %" PRIu64 " (barrier %" PRIu64
            ") from %s, %.1f MB raw, %.1f MB in %s\n", verb, g->id, applied, barrier, src,
            (double)raw / 1e6, (double)out->file.size / 1e6, name);
    return code;
}

static int fetch_users(meta_t *m, const char *verb, uint8_t **buf, size_t *len)
{
    Shale__UserListRequest rq = SHALE__USER_LIST_REQUEST__INIT;
    rq.has_with_hashes = 1;
    rq.with_hashes = 1;
    uint8_t q[32];
    size_t qlen = shale__user_list_request__pack(&rq, q);
    char err[SHALE_ERRMSG_LEN] = "";
    int rv = shale_call(m->c, SHALE_MSG_USER_LIST_REQ, SHALE_MSG_USER_LIST_RESP, q, qlen, buf,
                        len, err, NULL);
    if (rv != SHALE_OK)
        return ctl_error(verb, rv, err, 0);
    return 0;
}

int check_backup_dir(const cmd_t *cmd, char *err, size_t errlen)
{
    if (cmd->pos[0][0] == '\0' || strlen(cmd->pos[0]) > 3000) {
        snprintf(err, errlen, "DIR must be a directory path (1..3000 bytes)");
        return -1;
    }
    return 0;
}

int run_backup(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "backup";
    const char *dir = cmd->pos[0];
    if (mkdir(dir, 0755) != 0) {
        if (errno != EEXIST || !dir_exists(dir))
            return ctl_say(EXIT_FAIL, verb, "cannot create %s: %s", dir, strerror(errno));
        char mf[4096];
        snprintf(mf, sizeof(mf), "%s/%s", dir, BK_MANIFEST_NAME);
        if (access(mf, F_OK) == 0)
            return ctl_say(EXIT_REFUSED, verb, "%s already holds a backup (%s exists)", dir,
                           BK_MANIFEST_NAME);
    }
    bk_manifest_t man;
    memset(&man, 0, sizeof(man));
    man.version = BK_FORMAT_VERSION;
    man.created_ms = wall_ms();
    fetch_ctx_t fc;
    char err[512];
    if (fetch_ctx_init(cmd, &fc, err, sizeof(err)) != 0)
        return ctl_say(EXIT_USAGE, verb, "TLS: %s", err);
    meta_t m;
    int code = meta_open(cmd, verb, &m);
    if (code != 0) {
        fetch_ctx_free(&fc);
        return code;
    }
    char hold[128];
    snprintf(hold, sizeof(hold), "backup %" PRIu64 " pid %d", man.created_ms, (int)getpid());
    Shale__ClusterMap *map = NULL;
    code = hold_set(&m, verb, hold, &map);
    if (code != 0) {
        meta_close(&m);
        fetch_ctx_free(&fc);
        return code;
    }
    fprintf(stderr, "%s: migrations held at map epoch %" PRIu64 ", %zu group%s, %u slots\n", verb,
            map->epoch, map->n_groups, map->n_groups == 1 ? "" : "s", map->slots);
    man.epoch = map->epoch;
    man.slots = map->slots;
    snprintf(man.cluster_id, sizeof(man.cluster_id), "%s",
             map->cluster_id != NULL ? map->cluster_id : "");
    man.groups = calloc(map->n_groups ? map->n_groups : 1, sizeof(*man.groups));
    if (man.groups == NULL)
        code = ctl_say(EXIT_FAIL, verb, "out of memory");
    uint64_t t0 = mono_ms(), bytes = 0;
    for (size_t i = 0; i < map->n_groups && code == 0; i++) {
        code = backup_group(cmd, verb, &fc, map, map->groups[i], dir, &man.groups[i]);
        if (code == 0) {
            bytes += man.groups[i].raw_bytes;
            man.ngroups++;
        }
    }
    man.finished_ms = wall_ms();
    /* The hold ends whatever happened. */
    int hcode = hold_clear(&m, verb, hold);
    uint8_t *users = NULL;
    size_t ulen = 0;
    if (code == 0)
        code = fetch_users(&m, verb, &users, &ulen);
    meta_close(&m);
    fetch_ctx_free(&fc);
    if (code == 0 && write_file(dir, "users.pb", users, ulen, &man.users, err, sizeof(err)) != 0)
        code = ctl_say(EXIT_FAIL, verb, "%s", err);
    if (users != NULL)
        OPENSSL_cleanse(users, ulen);
    free(users);
    if (code == 0) {
        /* The map as of the cut, without the hold. */
        free(map->migration_hold);
        map->migration_hold = NULL;
        size_t len = shale__cluster_map__get_packed_size(map);
        uint8_t *buf = malloc(len ? len : 1);
        if (buf == NULL)
            code = ctl_say(EXIT_FAIL, verb, "out of memory");
        else {
            shale__cluster_map__pack(map, buf);
            if (write_file(dir, "map.pb", buf, len, &man.map, err, sizeof(err)) != 0)
                code = ctl_say(EXIT_FAIL, verb, "%s", err);
            free(buf);
        }
    }
    char *text = NULL;
    size_t tlen = 0;
    if (code == 0 && bk_manifest_write(&man, &text, &tlen) != 0)
        code = ctl_say(EXIT_FAIL, verb, "cannot write the manifest (bad field)");
    if (code == 0 && write_file(dir, BK_MANIFEST_NAME, text, tlen, NULL, err, sizeof(err)) != 0)
        code = ctl_say(EXIT_FAIL, verb, "%s", err);
    free(text);
    if (code == 0) {
        double s = (double)(mono_ms() - t0) / 1000.0;
        printf("backup of cluster %s at map epoch %" PRIu64 ": %zu groups, %.1f MB raw in %.1f s "
               "(%.1f MB/s), in %s\n", man.cluster_id, man.epoch, man.ngroups, (double)bytes / 1e6,
               s, s > 0 ? (double)bytes / 1e6 / s : 0.0, dir);
        for (size_t i = 0; i < man.ngroups; i++)
            printf("  group %" PRIu64 ": applied index %" PRIu64 " (barrier %" PRIu64 "), %s\n",
                   man.groups[i].id, man.groups[i].applied, man.groups[i].barrier,
                   man.groups[i].file.name);
    }
    cmap_free(map);
    bk_manifest_free(&man);
    if (code == 0 && hcode != 0)
        fprintf(stderr, "%s: the backup is complete, but clearing the migration hold failed: "
                "run shalectl backup release\n", verb);
    return code != 0 ? code : hcode;
}

int run_backup_release(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "backup release";
    meta_t m;
    int code = meta_open(cmd, verb, &m);
    if (code != 0)
        return code;
    code = hold_clear(&m, verb, NULL);
    meta_close(&m);
    if (code == 0)
        printf("migrations are not held\n");
    return code;
}

static int verify(const char *verb, const char *dir, bk_manifest_t *man)
{
    prog_t pr = {.verb = verb};
    prog_start(&pr, "checksums");
    char err[1024];
    if (bk_verify_dir(dir, man, prog_cb, &pr, err, sizeof(err)) != 0) {
        fprintf(stderr, "shalectl: %s: backup %s is damaged, refused: %s\n", verb, dir, err);
        return EXIT_FAIL;
    }
    return 0;
}

int run_backup_verify(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    bk_manifest_t man;
    int code = verify("backup verify", cmd->pos[0], &man);
    if (code != 0)
        return code;
    uint64_t raw = 0;
    for (size_t i = 0; i < man.ngroups; i++)
        raw += man.groups[i].raw_bytes;
    printf("backup %s is intact: cluster %s, map epoch %" PRIu64 ", %u slots, %zu groups, "
           "%.1f MB raw, every checksum matches\n", cmd->pos[0], man.cluster_id, man.epoch,
           man.slots, man.ngroups, (double)raw / 1e6);
    bk_manifest_free(&man);
    return EXIT_OKAY;
}

/* ---- Restore ------------------------------------------------------------------*/

typedef struct batch {
    shale_item_t items[BK_MPUT_ITEMS];
    uint8_t *bufs[BK_MPUT_ITEMS];
    size_t n, bytes;
} batch_t;

static int retryable(int rv)
{
    return rv == SHALE_ETIMEOUT || rv == SHALE_EUNAVAILABLE || rv == SHALE_EOVERLOAD ||
           rv == SHALE_EIO || rv == SHALE_ENOTLEADER || rv == SHALE_EWRONGGROUP ||
           rv == SHALE_ESLOTMOVING;
}

/* One MPUT of the batch; a batch whose request or any key failed in a way
 * that may pass later (timeout, no leader, overload, connection) is sent
 * again, whole (the same values: writing them twice is harmless), up to
 * BK_RETRIES times with a growing pause. */
#define BK_RETRIES 8
static int batch_flush(shale_client_t *c, batch_t *b, char *err, size_t errlen)
{
    if (b->n == 0)
        return 0;
    shale_item_result_t res[BK_MPUT_ITEMS];
    int rv = SHALE_OK;
    for (int attempt = 0; attempt <= BK_RETRIES; attempt++) {
        if (attempt > 0)
            sleep_ms(250u * (unsigned)attempt);
        memset(res, 0, sizeof(res));
        rv = shale_mput(c, b->items, b->n, res);
        if (rv == SHALE_OK) {
            for (size_t i = 0; i < b->n && rv == SHALE_OK; i++)
                rv = res[i].status;
            shale_item_results_free(res, b->n);
        }
        if (rv == SHALE_OK || !retryable(rv))
            break;
    }
    if (rv != SHALE_OK)
        snprintf(err, errlen, "MPUT of %zu keys failed%s: %s", b->n,
                 retryable(rv) ? " after retries" : "", shale_strerror(rv));
    return rv;
}

static void batch_free(batch_t *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->bufs[i]);
    free(b);
}

/* Writers: BK_WRITERS threads, each with its own (sync) client of the
 * router, send the batches the reader hands over, so a restore is not bound
 * by one MPUT round trip at a time. The first error stops the rest (queued
 * batches are dropped) and is what pool_drain returns. */
#define BK_WRITERS 4
#define BK_QUEUE 16

typedef struct pool pool_t;
typedef struct pool_worker {
    pool_t *pool;
    shale_client_t *c;
    pthread_t th;
} pool_worker_t;

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv_item, cv_space, cv_idle;
    batch_t *q[BK_QUEUE];
    size_t head, n;
    int busy, closing, rv;
    char err[512];
    pool_worker_t w[BK_WRITERS];
    int nw;
};

static void *pool_run(void *arg)
{
    pool_worker_t *w = arg;
    pool_t *p = w->pool;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->n == 0 && !p->closing)
            pthread_cond_wait(&p->cv_item, &p->mu);
        if (p->n == 0) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        batch_t *b = p->q[p->head];
        p->head = (p->head + 1) % BK_QUEUE;
        p->n--;
        p->busy++;
        int failed = p->rv != SHALE_OK;
        pthread_cond_signal(&p->cv_space);
        pthread_mutex_unlock(&p->mu);
        char e[512] = "";
        int rv = failed ? SHALE_OK : batch_flush(w->c, b, e, sizeof(e));
        batch_free(b);
        pthread_mutex_lock(&p->mu);
        if (rv != SHALE_OK && p->rv == SHALE_OK) {
            p->rv = rv;
            snprintf(p->err, sizeof(p->err), "%s", e);
            pthread_cond_broadcast(&p->cv_space);
        }
        p->busy--;
        if (p->n == 0 && p->busy == 0)
            pthread_cond_broadcast(&p->cv_idle);
        pthread_mutex_unlock(&p->mu);
    }
}

/* 0, or an exit code (printed). */
static int pool_start(pool_t *p, const cmd_t *cmd, const char *verb, const char *router)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_item, NULL);
    pthread_cond_init(&p->cv_space, NULL);
    pthread_cond_init(&p->cv_idle, NULL);
    for (int i = 0; i < BK_WRITERS; i++) {
        pool_worker_t *w = &p->w[i];
        w->pool = p;
        int code = ctl_connect(cmd, verb, router, 30000, &w->c);
        if (code != 0)
            return code;
        if (pthread_create(&w->th, NULL, pool_run, w) != 0) {
            shale_close(w->c);
            w->c = NULL;
            return ctl_say(EXIT_FAIL, verb, "cannot start a writer thread");
        }
        p->nw++;
    }
    return 0;
}

/* Hand b over (the pool frees it). SHALE_OK, or the first writer error. */
static int pool_submit(pool_t *p, batch_t *b)
{
    pthread_mutex_lock(&p->mu);
    while (p->n == BK_QUEUE && p->rv == SHALE_OK)
        pthread_cond_wait(&p->cv_space, &p->mu);
    int rv = p->rv;
    if (rv == SHALE_OK) {
        p->q[(p->head + p->n) % BK_QUEUE] = b;
        p->n++;
        pthread_cond_signal(&p->cv_item);
    }
    pthread_mutex_unlock(&p->mu);
    if (rv != SHALE_OK)
        batch_free(b);
    return rv;
}

/* Wait until every batch handed over is written; the first error (err). */
static int pool_drain(pool_t *p, char *err, size_t errlen)
{
    pthread_mutex_lock(&p->mu);
    while (p->n > 0 || p->busy > 0)
        pthread_cond_wait(&p->cv_idle, &p->mu);
    int rv = p->rv;
    snprintf(err, errlen, "%s", p->err);
    pthread_mutex_unlock(&p->mu);
    return rv;
}

static void pool_stop(pool_t *p)
{
    pthread_mutex_lock(&p->mu);
    p->closing = 1;
    pthread_cond_broadcast(&p->cv_item);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nw; i++)
        pthread_join(p->w[i].th, NULL);
    for (int i = 0; i < BK_WRITERS; i++)
        if (p->w[i].c != NULL)
            shale_close(p->w[i].c);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_item);
    pthread_cond_destroy(&p->cv_space);
    pthread_cond_destroy(&p->cv_idle);
}

/* Write every key of group g's slots (by the backup's map) to the new
 * cluster through c. */
static int restore_group(shale_client_t *c, pool_t *pool, const char *verb, const char *dir,
                         const bk_group_t *g, const Shale__ClusterMap *map, uint64_t *keys,
                         uint64_t *bytes)
{
    char arch[4096], tmp[4096], err[512] = "";
    snprintf(arch, sizeof(arch), "%s/%s", dir, g->file.name);
    snprintf(tmp, sizeof(tmp), "%s/.restore-group-%" PRIu64 "-%d", dir, g->id, (int)getpid());
    snapx_remove_tree(tmp);
    prog_t pr = {.verb = verb};
    prog_start(&pr, "group %" PRIu64 " unpack", g->id);
    if (bk_archive_unpack(arch, tmp, prog_cb, &pr, err, sizeof(err)) != 0)
        return ctl_say(EXIT_FAIL, verb, "%s", err);
    store_options_t so;
    store_options_default(&so);
    so.create_if_missing = 0;
    store_t *st = NULL;
    char serr[STORE_ERRLEN] = "";
    int rv = store_open(tmp, &so, &st, serr);
    if (rv != SHALE_OK) {
        snapx_remove_tree(tmp);
        return ctl_say(EXIT_FAIL, verb, "group %" PRIu64 ": the checkpoint does not open: %s",
                       g->id, serr);
    }
    uint64_t clock = store_clock(st);
    batch_t *b = calloc(1, sizeof(*b));
    int code = b == NULL ? ctl_say(EXIT_FAIL, verb, "out of memory") : 0;
    prog_start(&pr, "group %" PRIu64 " write", g->id);
    uint64_t est = g->raw_bytes, n0 = *keys, b0 = *bytes;
    for (uint32_t s = 0; s < map->n_slot_group && code == 0; s++) {
        if (map->slot_group[s] != g->id)
            continue;
        store_iter_t *it = NULL;
        if (store_iter_slot(st, (uint16_t)s, &it, serr) != SHALE_OK) {
            code = ctl_say(EXIT_FAIL, verb, "group %" PRIu64 " slot %u: %s", g->id, s, serr);
            break;
        }
        const uint8_t *k, *v;
        size_t kl, vl;
        int r;
        while (code == 0 && (r = store_iter_next(it, &k, &kl, &v, &vl, NULL)) == 1) {
            uint64_t exp = store_iter_expires_at(it);
            if (exp != 0 && exp <= clock)
                continue; /* expired at the cut */
            if (exp != 0) {
                for (int attempt = 0; attempt <= BK_RETRIES; attempt++) {
                    if (attempt > 0)
                        sleep_ms(250u * (unsigned)attempt);
                    rv = shale_put_ttl(c, k, kl, v, vl, exp - clock, NULL);
                    if (rv == SHALE_OK || !retryable(rv))
                        break;
                }
                if (rv != SHALE_OK)
                    code = ctl_say(ctl_exit_code(rv, 0), verb, "PUT with TTL: %s",
                                   shale_strerror(rv));
            } else {
                uint8_t *kv = malloc(kl + vl + 1);
                if (kv == NULL) {
                    code = ctl_say(EXIT_FAIL, verb, "out of memory");
                    break;
                }
                memcpy(kv, k, kl);
                if (vl > 0)
                    memcpy(kv + kl, v, vl);
                b->bufs[b->n] = kv;
                b->items[b->n] = (shale_item_t){kv, kl, kv + kl, vl};
                b->n++;
                b->bytes += kl + vl;
                if (b->n == BK_MPUT_ITEMS || b->bytes >= BK_MPUT_BYTES) {
                    rv = pool_submit(pool, b);
                    b = calloc(1, sizeof(*b));
                    if (rv != SHALE_OK)
                        code = EXIT_FAIL; /* said after pool_drain */
                    else if (b == NULL)
                        code = ctl_say(EXIT_FAIL, verb, "out of memory");
                }
            }
            (*keys)++;
            *bytes += kl + vl;
            prog_line(&pr, *bytes - b0, est, 0);
        }
        if (code == 0 && r < 0)
            code = ctl_say(EXIT_FAIL, verb, "group %" PRIu64 " slot %u: reading the checkpoint "
                           "failed (%s)", g->id, s, shale_strerror(r));
        store_iter_close(it);
    }
    if (code == 0 && b != NULL && b->n > 0) {
        pool_submit(pool, b);
        b = NULL;
    }
    batch_free(b);
    /* Every batch handed over is written (or dropped after an error). */
    rv = pool_drain(pool, err, sizeof(err));
    if (rv != SHALE_OK && (code == 0 || code == EXIT_FAIL))
        code = ctl_say(ctl_exit_code(rv, 0), verb, "%s", err[0] ? err : shale_strerror(rv));
    store_close(st);
    snapx_remove_tree(tmp);
    if (code == 0)
        fprintf(stderr, "%s: group %" PRIu64 " (applied index %" PRIu64 "): %" PRIu64
                " keys, %.1f MB written\n", verb, g->id, g->applied, *keys - n0,
                (double)(*bytes - b0) / 1e6);
    return code;
}

/* Add the backup's users that the new cluster lacks, with their hashes. */
static int restore_users(const cmd_t *cmd, const char *verb, meta_t *m, const uint8_t *buf,
                         size_t len, size_t *added)
{
    (void)cmd;
    Shale__UserListResponse *bu = shale__user_list_response__unpack(NULL, len, buf);
    if (bu == NULL)
        return ctl_say(EXIT_FAIL, verb, "users.pb does not parse");
    uint8_t *cur = NULL;
    size_t clen = 0;
    int code = fetch_users(m, verb, &cur, &clen);
    Shale__UserListResponse *nu = code == 0 ? shale__user_list_response__unpack(NULL, clen, cur)
                                            : NULL;
    free(cur);
    if (code == 0 && nu == NULL)
        code = ctl_say(EXIT_FAIL, verb, "malformed USER_LIST_RESP answer");
    for (size_t i = 0; code == 0 && i < bu->n_users; i++) {
        Shale__User *u = bu->users[i];
        int exists = 0;
        for (size_t j = 0; j < nu->n_users; j++)
            if (strcmp(nu->users[j]->name, u->name) == 0)
                exists = 1;
        if (exists) {
            fprintf(stderr, "%s: user %s exists in the new cluster: kept as it is\n", verb,
                    u->name);
            continue;
        }
        Shale__Session ses = SHALE__SESSION__INIT;
        ses.client_id = m->client_id;
        ses.seq = ++m->seq;
        Shale__UserChangeRequest rq = SHALE__USER_CHANGE_REQUEST__INIT;
        rq.op = SHALE__USER_OP__USER_OP_ADD;
        rq.user = u;
        rq.session = &ses;
        size_t ql = shale__user_change_request__get_packed_size(&rq);
        uint8_t *q = malloc(ql ? ql : 1);
        if (q == NULL) {
            code = ctl_say(EXIT_FAIL, verb, "out of memory");
            break;
        }
        shale__user_change_request__pack(&rq, q);
        uint8_t *resp = NULL;
        size_t rlen = 0;
        char err[SHALE_ERRMSG_LEN] = "";
        int rv = shale_call(m->c, SHALE_MSG_USER_CHANGE_REQ, SHALE_MSG_USER_CHANGE_RESP, q, ql,
                            &resp, &rlen, err, NULL);
        OPENSSL_cleanse(q, ql);
        free(q);
        free(resp);
        if (rv != SHALE_OK)
            code = ctl_error(verb, rv, err, 1);
        else
            (*added)++;
    }
    if (nu != NULL)
        shale__user_list_response__free_unpacked(nu, NULL);
    shale__user_list_response__free_unpacked(bu, NULL);
    return code;
}

int run_restore(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "restore";
    const char *dir = cmd->pos[0];
    bk_manifest_t man;
    int code = verify(verb, dir, &man);
    if (code != 0)
        return code;
    uint8_t *mbuf = NULL, *ubuf = NULL;
    size_t mlen = 0, ulen = 0;
    char err[512];
    Shale__ClusterMap *bmap = NULL;
    if (read_file(dir, man.map.name, &mbuf, &mlen, err, sizeof(err)) != 0 ||
        read_file(dir, man.users.name, &ubuf, &ulen, err, sizeof(err)) != 0)
        code = ctl_say(EXIT_FAIL, verb, "%s", err);
    else if ((bmap = cmap_unpack(mbuf, mlen)) == NULL || bmap->n_slot_group != bmap->slots ||
             bmap->slots != man.slots)
        code = ctl_say(EXIT_FAIL, verb, "map.pb does not parse or does not match the manifest");
    free(mbuf);
    for (size_t i = 0; code == 0 && i < man.ngroups; i++)
        if (cmap_group(bmap, man.groups[i].id) == NULL)
            code = ctl_say(EXIT_FAIL, verb, "group %" PRIu64 " is not in the backup's map",
                           man.groups[i].id);
    meta_t m;
    memset(&m, 0, sizeof(m));
    if (code == 0)
        code = meta_open(cmd, verb, &m);
    Shale__ClusterMap *nmap = NULL;
    if (code == 0) {
        char e[SHALE_ERRMSG_LEN];
        int rv = map_get(&m, &nmap, e);
        if (rv != SHALE_OK)
            code = ctl_error(verb, rv, e, 0);
        else if (nmap->epoch == 0)
            code = ctl_say(EXIT_FAIL, verb, "the new cluster has no map yet: start it and run "
                           "shalectl init (any number of groups) first");
        else if (man.cluster_id[0] != '\0' && nmap->cluster_id != NULL &&
                 strcmp(nmap->cluster_id, man.cluster_id) == 0 && !cmd->set[0])
            code = ctl_say(EXIT_REFUSED, verb, "the target is cluster '%s', the one the backup "
                           "was taken of: restore builds a new cluster (--into-same-cluster to "
                           "write into it anyway)", man.cluster_id);
    }
    size_t added = 0;
    if (code == 0)
        code = restore_users(cmd, verb, &m, ubuf, ulen, &added);
    if (ubuf != NULL)
        OPENSSL_cleanse(ubuf, ulen);
    free(ubuf);
    meta_close(&m);
    shale_client_t *rc = NULL;
    pool_t *pool = calloc(1, sizeof(*pool));
    int pooled = 0;
    if (code == 0 && pool == NULL)
        code = ctl_say(EXIT_FAIL, verb, "out of memory");
    if (code == 0) {
        const char *router = cmd->router != NULL ? cmd->router : getenv("SHALE_ROUTER");
        if (router == NULL || router[0] == '\0')
            router = CTL_DEFAULT_ROUTER;
        code = ctl_connect(cmd, verb, router, 30000, &rc);
        if (code == 0) {
            code = pool_start(pool, cmd, verb, router);
            pooled = 1;
        }
    }
    uint64_t keys = 0, bytes = 0, t0 = mono_ms();
    for (size_t i = 0; code == 0 && i < man.ngroups; i++)
        code = restore_group(rc, pool, verb, dir, &man.groups[i], bmap, &keys, &bytes);
    if (pooled)
        pool_stop(pool);
    free(pool);
    if (rc != NULL)
        shale_close(rc);
    if (code == 0) {
        double s = (double)(mono_ms() - t0) / 1000.0;
        printf("restored backup %s (cluster %s, map epoch %" PRIu64 ", %zu groups) into cluster "
               "%s with %zu groups: %" PRIu64 " keys, %.1f MB in %.1f s (%.1f MB/s), %zu users "
               "added\n", dir, man.cluster_id, man.epoch, man.ngroups,
               nmap->cluster_id != NULL ? nmap->cluster_id : "", nmap->n_groups, keys,
               (double)bytes / 1e6, s, s > 0 ? (double)bytes / 1e6 / s : 0.0, added);
    }
    if (nmap != NULL)
        cmap_free(nmap);
    if (bmap != NULL)
        cmap_free(bmap);
    bk_manifest_free(&man);
    return code;
}

const flag_spec_t restore_flags[] = {
    {"into-same-cluster", NULL, "allow a target whose cluster id is the backup's", 0},
    {NULL, NULL, NULL, 0},
};
