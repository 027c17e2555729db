/* Slot migration, node side (docs/resharding.md).
 *
 * What this file owns:
 *  - MIG_EXPORT on a member of the source group: one page of a migrating
 *    slot's data, changelog or sessions, as a zstd record batch, with the
 *    cursor for the next page; served by any member whose applied ownership
 *    record lists the migration (so its changelog is on), and for sessions
 *    only once the member applied the fence;
 *  - MIG_IMPORT on the target group's leader: the batch is proposed as one
 *    Raft entry; every member applies it (mig_apply_import) only if its
 *    applied record names the migration, with the same run, as importing
 *    the slot — the check that keeps a stale coordinator or an aborted
 *    migration from writing — and only if every data key of the batch
 *    hashes to the slot by this build's key hash (a batch from a source
 *    that placed keys by an older key-hash version is refused INVALID);
 *    the proposer answers from the apply.
 *
 * Never changes ownership (ownership.c does, from the map) and never talks
 * to the meta group or to another group: the coordinator (shalectl) moves
 * batches between groups. Never calls into Raft from a Raft callback
 * (proposals leave from mig_flush, in the end-of-turn check). */
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "frame.h"
#include "log.h"
#include "server.h"
#include "wire.h"

/* Raw bytes per exported page: the default and the most a caller gets. */
#define MIG_PAGE_DEFAULT (1u << 20)
#define MIG_PAGE_MAX (4u << 20)
#define MIG_ZSTD_LEVEL 1
/* Imports proposed and not yet applied, per node. */
#define MIG_IMPORTS_MAX 64

/* ---- Export --------------------------------------------------------------*/

void mig_export(shaled_t *s, sreq_t *r)
{
    const Shale__MigExportRequest *q = (const Shale__MigExportRequest *)r->msg;
    char msg[STORE_ERRLEN + 96];
    int out = 0;
    const Shale__Migration *m = own_migration(s, q->id, &out);
    if (m == NULL || !out) {
        snprintf(msg, sizeof(msg), "migration %llu out of group %llu is not in this node's "
                 "applied ownership record (not applied here yet, finished or aborted)",
                 (unsigned long long)q->id, (unsigned long long)s->cfg.group);
        sreq_fail(r, SHALE_EUNAVAILABLE, msg);
        return;
    }
    if (!own_mig_has_slot(m, q->slot)) {
        snprintf(msg, sizeof(msg), "slot %u is not part of migration %llu", q->slot,
                 (unsigned long long)q->id);
        sreq_fail(r, SHALE_EINVAL, msg);
        return;
    }
    int st = own_slot_state(s, q->slot);
    int fenced = st == OWN_FENCED;
    if (st != OWN_SERVE && st != OWN_FENCED) {
        snprintf(msg, sizeof(msg), "slot %u is not owned by this group", q->slot);
        sreq_fail(r, SHALE_EINVAL, msg);
        return;
    }
    store_scan_kind_t kind;
    switch (q->phase) {
    case SHALE__MIG_PHASE__MIG_PHASE_DATA: kind = STORE_SCAN_DATA; break;
    case SHALE__MIG_PHASE__MIG_PHASE_LOG: kind = STORE_SCAN_LOG; break;
    case SHALE__MIG_PHASE__MIG_PHASE_SESSIONS: kind = STORE_SCAN_SESSIONS; break;
    default:
        sreq_fail(r, SHALE_EINVAL, "unknown migration phase");
        return;
    }
    if (kind == STORE_SCAN_SESSIONS && !fenced) {
        sreq_fail(r, SHALE_EUNAVAILABLE, "sessions are exported once the fence is applied "
                  "here");
        return;
    }
    size_t max = q->has_max_bytes && q->max_bytes > 0 ? q->max_bytes : MIG_PAGE_DEFAULT;
    if (max > MIG_PAGE_MAX)
        max = MIG_PAGE_MAX;
    store_buf_t raw = {0};
    uint32_t count = 0;
    uint8_t *next = NULL;
    size_t nlen = 0;
    int done = 0;
    char err[STORE_ERRLEN];
    uint64_t applied = store_applied_index(s->store);
    int rv = store_scan_records(s->store, (uint16_t)q->slot, kind,
                                q->has_after ? q->after.data : NULL,
                                q->has_after ? q->after.len : 0, max, &raw, &count, &next,
                                &nlen, &done, err);
    if (rv != 0) {
        free(raw.data);
        sreq_fail(r, rv, err);
        return;
    }
    uint8_t *z = NULL;
    size_t zlen = 0;
    if (raw.len > 0) {
        size_t bound = ZSTD_compressBound(raw.len);
        z = malloc(bound);
        if (z != NULL)
            zlen = ZSTD_compress(z, bound, raw.data, raw.len, MIG_ZSTD_LEVEL);
        if (z == NULL || ZSTD_isError(zlen)) {
            free(z);
            free(raw.data);
            free(next);
            sreq_fail(r, SHALE_ENOMEM, "cannot compress the page");
            return;
        }
    }
    Shale__MigBatch b = SHALE__MIG_BATCH__INIT;
    b.has_data = raw.len > 0;
    b.data.data = z;
    b.data.len = zlen;
    b.has_raw_len = 1;
    b.raw_len = (uint32_t)raw.len;
    b.has_count = 1;
    b.count = count;
    b.has_next = next != NULL;
    b.next.data = next;
    b.next.len = nlen;
    if (next == NULL && q->has_after) { /* nothing new: the cursor stays */
        b.has_next = 1;
        b.next = q->after;
    }
    b.has_done = 1;
    b.done = done;
    b.has_fenced = 1;
    b.fenced = fenced;
    b.has_applied_index = 1;
    b.applied_index = applied;
    obs_migration(s, 1, raw.len, count);
    sreq_reply(r, SHALE_MSG_MIG_BATCH, &b.base);
    free(z);
    free(raw.data);
    free(next);
}

/* ---- Import --------------------------------------------------------------*/

/* Why this node's applied record refuses an import of (id, run, slot):
 * 0 when it accepts, else a code with msg filled. */
static int import_refusal(const shaled_t *s, uint64_t id, uint64_t run, uint32_t slot,
                          char *msg, size_t msglen)
{
    int out = 0;
    const Shale__Migration *m = own_migration(s, id, &out);
    if (m == NULL || out) {
        snprintf(msg, msglen, "migration %llu into group %llu is not in this node's applied "
                 "ownership record (not applied here yet, finished or aborted)",
                 (unsigned long long)id, (unsigned long long)s->cfg.group);
        return SHALE_EUNAVAILABLE;
    }
    uint64_t have = m->has_run ? m->run : 0;
    if (run > have) {
        snprintf(msg, msglen, "migration %llu is at run %llu here, not yet %llu (not applied "
                 "here yet)", (unsigned long long)id, (unsigned long long)have,
                 (unsigned long long)run);
        return SHALE_EUNAVAILABLE;
    }
    if (have != run) {
        snprintf(msg, msglen, "migration %llu is at run %llu here, not %llu: another "
                 "coordinator took it over", (unsigned long long)id,
                 (unsigned long long)(m->has_run ? m->run : 0), (unsigned long long)run);
        return SHALE_EINVAL;
    }
    if (!own_mig_has_slot(m, slot) || own_slot_state(s, slot) != OWN_IMPORTING) {
        snprintf(msg, msglen, "slot %u is not being imported by migration %llu", slot,
                 (unsigned long long)id);
        return SHALE_EINVAL;
    }
    return 0;
}

void mig_import(shaled_t *s, sreq_t *r)
{
    const Shale__MigImportRequest *q = (const Shale__MigImportRequest *)r->msg;
    char msg[256];
    int rv = import_refusal(s, q->id, q->run, q->slot, msg, sizeof(msg));
    if (rv != 0) {
        sreq_fail(r, rv, msg);
        return;
    }
    if (s->mig_props.n >= MIG_IMPORTS_MAX) {
        sreq_fail(r, SHALE_EOVERLOAD, "too many imports in flight; back off and retry");
        return;
    }
    q_push(&s->mig_pending, &r->link);
}

/* An import whose entry completed without its apply answering it. */
static void import_unanswered(shaled_t *s, sreq_t *r, int status)
{
    (void)s;
    sreq_fail(r, status != 0 ? SHALE_ENOTLEADER : SHALE_EUNAVAILABLE,
              status != 0 ? "leadership lost before the import was confirmed; outcome "
                            "unknown, send it again (imports are idempotent)"
                          : "import applied as a replay; send it again");
}

/* Set q->carries_ttl from the batch itself (one extra decompression per
 * import, on the leader only): raft_fsm.c frames the entry "SHC2" when it
 * is set, so a member of a build without TTL refuses it instead of storing
 * TTL rows it would misread. A batch that does not decompress is refused at
 * apply anyway. */
static void import_mark_ttl(Shale__MigImportRequest *q)
{
    q->has_carries_ttl = 1;
    q->carries_ttl = 0;
    if (q->raw_len == 0 || !q->has_data)
        return;
    uint8_t *raw = malloc(q->raw_len);
    if (raw == NULL) {
        q->carries_ttl = 1; /* unknown: the safe framing */
        return;
    }
    size_t n = ZSTD_decompress(raw, q->raw_len, q->data.data, q->data.len);
    if (!ZSTD_isError(n) && n == q->raw_len)
        q->carries_ttl = store_records_have_ttl(raw, q->raw_len) != 0;
    free(raw);
}

void mig_flush(shaled_t *s)
{
    while (!q_empty(&s->mig_pending)) {
        sreq_t *r = q_data(s->mig_pending.next, sreq_t, link);
        q_remove(&r->link);
        if (s->stopping || !raft_node_is_leader(s)) {
            sreq_fail(r, s->stopping ? SHALE_EUNAVAILABLE : SHALE_ENOTLEADER,
                      s->stopping ? "node is shutting down" : "imports go to the leader");
            continue;
        }
        Shale__Command cmd = SHALE__COMMAND__INIT;
        cmd.import = (Shale__MigImportRequest *)r->msg;
        import_mark_ttl(cmd.import);
        rp_submit(&s->mig_props, r, &cmd);
    }
}

int mig_apply_import(shaled_t *s, uint64_t index, const Shale__Command *cmd, char *err)
{
    const Shale__MigImportRequest *q = cmd->import;
    if (index <= store_applied_index(s->store))
        return 0;
    sreq_t *r = rp_take(&s->mig_props, cmd);
    char msg[256];
    int rv = import_refusal(s, q->id, q->run, q->slot, msg, sizeof(msg));
    uint8_t *raw = NULL;
    if (rv == 0 && q->raw_len > 0) {
        raw = malloc(q->raw_len);
        size_t n = raw != NULL ? ZSTD_decompress(raw, q->raw_len, q->data.data, q->data.len)
                               : 0;
        if (raw == NULL) {
            snprintf(err, STORE_ERRLEN, "out of memory applying an import");
            if (r != NULL)
                sreq_fail(r, SHALE_ENOMEM, err);
            return SHALE_ENOMEM;
        }
        if (ZSTD_isError(n) || n != q->raw_len) {
            snprintf(msg, sizeof(msg), "import batch does not decompress to %u bytes",
                     q->raw_len);
            rv = SHALE_EINVAL;
        } else {
            /* Every key must belong to the slot by this build's key hash:
             * a source that placed keys by another version (an older
             * build) is refused, never stored where no read looks. */
            rv = store_records_check_slot(raw, q->raw_len, (uint16_t)q->slot,
                                          (uint32_t)s->cfg.slots, msg);
        }
    }
    if (rv != 0) {
        free(raw);
        if (r != NULL)
            sreq_fail(r, rv, msg);
        return store_apply_noop(s->store, index, err);
    }
    uint32_t count = 0;
    char serr[STORE_ERRLEN];
    rv = store_apply_records(s->store, index, (uint16_t)q->slot, raw, q->raw_len, &count, serr);
    free(raw);
    if (rv == SHALE_EINVAL) { /* malformed: the same on every member */
        if (r != NULL)
            sreq_fail(r, rv, serr);
        return store_apply_noop(s->store, index, err);
    }
    if (rv != 0) {
        snprintf(err, STORE_ERRLEN, "%s", serr);
        if (r != NULL)
            sreq_fail(r, SHALE_ESTORAGE, serr);
        return rv;
    }
    obs_migration(s, 0, q->raw_len, count);
    if (r != NULL) {
        Shale__MigImportResponse resp = SHALE__MIG_IMPORT_RESPONSE__INIT;
        resp.has_applied_index = 1;
        resp.applied_index = index;
        sreq_reply(r, SHALE_MSG_MIG_IMPORT_RESP, &resp.base);
    }
    return 0;
}

void mig_start(shaled_t *s)
{
    q_init(&s->mig_pending);
    rp_init(&s->mig_props, s, import_unanswered);
}

void mig_fail_all(shaled_t *s, int code, const char *msg)
{
    while (!q_empty(&s->mig_pending)) {
        sreq_t *r = q_data(s->mig_pending.next, sreq_t, link);
        q_remove(&r->link);
        sreq_fail(r, code, msg);
    }
}
