/* Snapshot transfer, catch-up: replace the local store by a checkpoint
 * fetched from another member, for fsm_restore. See snapshot_xfer.h.
 *
 * Rules of a swap:
 *  - the fetched copy is opened and its applied index checked before the
 *    live store is touched; a marker (checkpoint index, snapshot index) is
 *    written into it so a restart can tell "installed ahead of the log"
 *    from "the log lost entries" (snapx_store_ahead_ok);
 *  - the live store is closed and replaced by renaming directories
 *    (db -> db.old, snap-in -> db): a failure puts db.old back and reopens
 *    it, and a crash between the renames is undone at the next start
 *    (snapx_recover_dirs). No file is copied. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "server.h"
#include "snapshot_xfer.h"

#define SOURCES_MAX 16
#define META_INSTALL "snap_install" /* [checkpoint index:8][snapshot index:8] */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}


static int open_store(shaled_t *s, const char *dir, int create, store_t **out, char *err)
{
    store_options_t so;
    store_options_default(&so);
    so.block_cache_bytes = (size_t)s->cfg.block_cache_mb << 20;
    so.write_buffer_bytes = (size_t)s->cfg.write_buffer_mb << 20;
    so.create_if_missing = create;
    return store_open(dir, &so, out, err);
}

/* Open the fetched copy, check it holds index, and mark it as installed for
 * that snapshot (see snapx_store_ahead_ok). */
static int check_copy(shaled_t *s, const char *dir, uint64_t index, uint64_t *applied, char *err,
                      size_t errlen)
{
    char serr[STORE_ERRLEN];
    store_t *c = NULL;
    int rv = open_store(s, dir, 0, &c, serr);
    if (rv != 0) {
        snprintf(err, errlen, "the fetched checkpoint does not open: %s", serr);
        return rv;
    }
    *applied = store_applied_index(c);
    if (*applied < index) {
        snprintf(err, errlen, "the fetched checkpoint has applied %llu, below %llu",
                 (unsigned long long)*applied, (unsigned long long)index);
        store_close(c);
        return SHALE_ECORRUPT;
    }
    uint8_t mark[16];
    snapx_put_be64(mark, *applied);
    snapx_put_be64(mark + 8, index);
    rv = store_apply_meta(c, 0, META_INSTALL, mark, sizeof(mark), serr);
    if (rv == 0)
        rv = store_sync(c, serr);
    if (rv != 0)
        snprintf(err, errlen, "cannot mark the fetched checkpoint: %s", serr);
    store_close(c);
    return rv;
}

/* Put the fetched copy in place of the live store (closed here). On failure
 * the old store is back open, or the node is stopped if even that fails. */
static int swap_in(shaled_t *s, const char *copy, char *err, size_t errlen)
{
    char old[1024], bad[1100], serr[STORE_ERRLEN];
    snprintf(old, sizeof(old), "%s.old", s->db_dir);
    snprintf(bad, sizeof(bad), "%s.bad", copy);
    snapx_remove_tree(old);
    check_quiesce(s); /* no check worker may read the store being closed */
    store_close(s->store);
    s->store = NULL;
    int rv = 0;
    if (rename(s->db_dir, old) != 0) {
        snprintf(err, errlen, "rename %s: %s", s->db_dir, strerror(errno));
        rv = SHALE_ESTORAGE;
    } else if (rename(copy, s->db_dir) != 0) {
        snprintf(err, errlen, "rename %s: %s", copy, strerror(errno));
        rename(old, s->db_dir);
        rv = SHALE_ESTORAGE;
    } else if (snapx_fsync_dir(s->cfg.data) != 0) {
        snprintf(err, errlen, "fsync %s: %s", s->cfg.data, strerror(errno));
        rename(s->db_dir, bad);
        rename(old, s->db_dir);
        rv = SHALE_ESTORAGE;
    } else if (open_store(s, s->db_dir, 0, &s->store, serr) != 0) {
        snprintf(err, errlen, "the installed store does not open: %s", serr);
        s->store = NULL;
        rename(s->db_dir, bad);
        rename(old, s->db_dir);
        rv = SHALE_ESTORAGE;
    }
    if (rv != 0) {
        snapx_remove_tree(bad);
        if (open_store(s, s->db_dir, 0, &s->store, serr) != 0) {
            char msg[STORE_ERRLEN * 2];
            snprintf(msg, sizeof(msg), "cannot reopen the store after a failed swap: %s", serr);
            s->store = NULL;
            shaled_storage_failed(s, msg);
        }
        return rv;
    }
    snapx_fsync_dir(s->cfg.data);
    if (snapx_remove_tree(old) != 0)
        log_warn("cannot remove the replaced store", " dir=%s err=\"%s\"", old, strerror(errno));
    if (members_load(s, NULL, serr) != 0)
        log_warn("member table unreadable after installing a snapshot", " err=\"%s\"", serr);
    if (meta_load(s, serr) != 0 || own_load(s, serr) != 0)
        log_warn("cluster state unreadable after installing a snapshot", " err=\"%s\"", serr);
    return 0;
}

static void add_source(const char **src, size_t *n, const char *a, const char *self)
{
    if (a == NULL || a[0] == '\0' || strcmp(a, self) == 0 || *n >= SOURCES_MAX)
        return;
    for (size_t i = 0; i < *n; i++)
        if (strcmp(src[i], a) == 0)
            return;
    src[(*n)++] = a;
}

int snapx_install(shaled_t *s, uint64_t index, const char *hint, const char *cluster_id, char *err,
                  size_t errlen)
{
    const char *src[SOURCES_MAX];
    size_t n = 0;
    char copy[1024], e[1024] = "";
    add_source(src, &n, hint, s->cfg.listen);
    for (size_t i = 0; s->members != NULL && i < s->members->n_members; i++)
        if (s->members->members[i]->id != s->cfg.id)
            add_source(src, &n, s->members->members[i]->client_addr, s->cfg.listen);
    if (cluster_id == NULL || cluster_id[0] == '\0')
        cluster_id = s->cfg.cluster_id;
    snprintf(copy, sizeof(copy), "%s/snap-in", s->cfg.data);
    for (size_t k = 0; k < n; k++) {
        uint64_t got = 0, applied = 0;
        snapx_fetch_stats_t st;
        snapx_remove_tree(copy);
        log_info("fetching the state for a raft snapshot", " from=%s index=%llu", src[k],
                 (unsigned long long)index);
        snapx_fetch_opts_t fo = {.tls = s->tls_client, /* peers' client ports, TLS or not */
                                 .credential = s->auth_cred,
                                 .credential_len = s->auth_cred_len};
        int rv = snapx_fetch_ex(src[k], cluster_id, index, copy, &fo, &got, &st, e, sizeof(e));
        if (rv == 0)
            rv = check_copy(s, copy, index, &applied, e, sizeof(e));
        if (rv != 0) {
            log_warn("snapshot fetch failed", " from=%s err=\"%s\"", src[k], e);
            snapx_remove_tree(copy);
            continue;
        }
        uint64_t t0 = mono_ms();
        rv = swap_in(s, copy, err, errlen);
        snapx_remove_tree(copy);
        if (rv != 0) {
            log_error("cannot install a fetched snapshot", " err=\"%s\"", err);
            return rv;
        }
        /* The store is now as fresh as the source's was at its checkpoint:
         * STALE reads may rely on that before the next entry is applied. */
        if (st.leader_ms > s->applied_leader_ms)
            s->applied_leader_ms = st.leader_ms;
        log_info("state restored from a checkpoint",
                 " from=%s snapshot=%llu applied=%llu files=%u bytes=%llu wire_bytes=%llu "
                 "fetch_ms=%llu swap_ms=%llu",
                 src[k], (unsigned long long)index, (unsigned long long)applied, st.files,
                 (unsigned long long)st.bytes, (unsigned long long)st.wire_bytes,
                 (unsigned long long)st.ms, (unsigned long long)(mono_ms() - t0));
        return 0;
    }
    snprintf(err, errlen, "no member could provide the state for index %llu (%zu tried%s%s)",
             (unsigned long long)index, n, n ? "; last: " : "", n ? e : "");
    return SHALE_EUNAVAILABLE;
}

/* Rules:
 *  - the marker must name the store's applied index (nothing applied since
 *    the install) and a snapshot the log has reached;
 *  - this node must not be the only voter: the entries between the
 *    snapshot and the checkpoint are committed, hence held by a majority of
 *    the other voters, which also keeps this node from being elected until
 *    its log has them again. A sole voter with storage ahead of its log
 *    would hand out applied indexes again, the loss raft_node.c refuses. */
int snapx_store_ahead_ok(shaled_t *s, uint64_t raft_last_index)
{
    uint8_t *v = NULL;
    size_t len = 0;
    char serr[STORE_ERRLEN];
    unsigned voters = 0;
    for (unsigned i = 0; i < s->raft.configuration.n; i++)
        voters += s->raft.configuration.servers[i].role == RAFT_VOTER;
    if (voters < 2)
        return 0;
    if (store_get_meta(s->store, META_INSTALL, &v, &len, serr) != 0)
        return 0;
    int ok = len == 16 && snapx_get_be64(v) == store_applied_index(s->store) &&
             snapx_get_be64(v + 8) <= raft_last_index;
    free(v);
    return ok;
}
