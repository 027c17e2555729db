/* Slot migration, node side, with real processes (docs/resharding.md): the
 * map's migration record drives each group's ownership record; the source
 * exports pages (data, changelog, sessions), the target imports them
 * through its Raft log; the fence stops the source; the flip hands the slot
 * over with every acknowledged write and the sessions; an abort leaves the
 * source intact and the target clean; an imported key must belong to the
 * slot by this build's key hash. The steps are driven by hand here
 * (MAP_CAS + MIG_EXPORT/MIG_IMPORT), so each check is about the nodes, not
 * the coordinator (shalectl's tests cover that).
 *
 * Hosts 127.0.0.150.. (meta), .160.. (group 1), .170.. (group 2). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "cmap.h"
#include "frame.h"
#include "harness_cluster.h"
#include "keyhash.h"
#include "shale.h"
#include "shale_internal.h"
#include "shale.pb-c.h"

#define SLOTS 64
#define NKEYS 120

static th_cluster_t g_cl;
static char *g_base;

static void start_cluster(int voters)
{
    g_base = th_tmpdir("migrate");
    ck_assert_int_eq(th_cluster_start(&g_cl, 2, voters, 150, g_base, NULL), 0);
    ck_assert_int_eq(th_cluster_init(&g_cl, SLOTS, 20000), 0);
}

static void stop_cluster(void)
{
    th_cluster_teardown(&g_cl, &g_base, NULL);
}

static Shale__ClusterMap *get_map(void)
{
    Shale__ClusterMap *m = NULL;
    ck_assert_int_eq(th_map_get(g_cl.meta.addrs, 0, 0, &m), SHALE_OK);
    return m;
}

/* Apply a map change (shalectl's rules: no force) and wait for everyone. */
static int map_change(Shale__ClusterMap *next, uint64_t expect, char *msg)
{
    Shale__MapCasRequest c = SHALE__MAP_CAS_REQUEST__INIT;
    c.expect_epoch = expect;
    c.map = next;
    size_t len = shale__map_cas_request__get_packed_size(&c);
    uint8_t *buf = malloc(len);
    shale__map_cas_request__pack(&c, buf);
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = 10000;
    shale_client_t *cl = NULL;
    ck_assert_int_eq(shale_connect(g_cl.meta.addrs, &o, &cl, NULL), SHALE_OK);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rv = shale_call(cl, SHALE_MSG_MAP_CAS_REQ, SHALE_MSG_MAP_RESP, buf, len, &resp, &rlen,
                        msg, NULL);
    free(buf);
    free(resp);
    shale_close(cl);
    if (rv == SHALE_OK)
        ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, expect + 1, 20000), 0);
    return rv;
}

/* libshale retries UNAVAILABLE until its deadline: refusals of that kind
 * are checked through a client with a short one (SHALE_ETIMEOUT then). */
static int unavailable(int rv)
{
    return rv == SHALE_EUNAVAILABLE || rv == SHALE_ETIMEOUT;
}

static shale_client_t *client_to(const th_group_t *g, uint32_t timeout_ms)
{
    shale_options_t o;
    th_client_options(&o);
    o.timeout_ms = timeout_ms;
    shale_client_t *c = NULL;
    ck_assert_int_eq(shale_connect(g->addrs, &o, &c, NULL), SHALE_OK);
    return c;
}

static shale_client_t *client_for(const th_group_t *g)
{
    return client_to(g, 5000);
}

/* The nth key (of a fixed sequence) whose slot is `slot`. */
static void key_in_slot(uint32_t slot, int nth, char *key, size_t len)
{
    for (int i = 0, found = 0;; i++) {
        int n = snprintf(key, len, "k%d", i);
        if (shale_key_slot(key, (size_t)n, SLOTS) == slot && found++ == nth)
            return;
    }
}

static Shale__Migration *new_migration(uint64_t id, uint64_t from, uint64_t to, uint32_t slot)
{
    Shale__Migration *m = malloc(sizeof(*m));
    shale__migration__init(m);
    m->id = id;
    m->from_group = from;
    m->to_group = to;
    m->n_slots = 1;
    m->slots = malloc(sizeof(uint32_t));
    m->slots[0] = slot;
    m->state = SHALE__MIGRATION_STATE__MIG_COPYING;
    m->has_run = 1;
    m->run = 1;
    return m;
}

static void add_migration(Shale__ClusterMap *m, Shale__Migration *mig)
{
    m->migrations = realloc(m->migrations, (m->n_migrations + 1) * sizeof(*m->migrations));
    m->migrations[m->n_migrations++] = mig;
    m->has_next_migration_id = 1;
    m->next_migration_id = mig->id + 1;
}

/* Start migration 1 (group 1 -> 2) of slot: m0 with its record, applied at
 * m0's epoch. Returns that new map (cmap_free). */
static Shale__ClusterMap *start_migration(const Shale__ClusterMap *m0, uint32_t slot)
{
    char msg[SHALE_ERRMSG_LEN];
    Shale__ClusterMap *m1 = cmap_copy(m0);
    add_migration(m1, new_migration(1, 1, 2, slot));
    ck_assert_int_eq(map_change(m1, m0->epoch, msg), SHALE_OK);
    return m1;
}

/* Drop the record (cmap_free frees what the map holds). */
static void drop_migrations(Shale__ClusterMap *m)
{
    for (size_t i = 0; i < m->n_migrations; i++)
        shale__migration__free_unpacked(m->migrations[i], NULL);
    free(m->migrations);
    m->migrations = NULL;
    m->n_migrations = 0;
}

/* One MIG_EXPORT; *b: shale__mig_batch__free_unpacked. */
static int export_page(shale_client_t *c, uint64_t id, uint32_t slot, Shale__MigPhase phase,
                       const ProtobufCBinaryData *after, uint32_t max, Shale__MigBatch **b,
                       char *msg)
{
    Shale__MigExportRequest q = SHALE__MIG_EXPORT_REQUEST__INIT;
    q.id = id;
    q.slot = slot;
    q.phase = phase;
    if (after != NULL && after->len > 0) {
        q.has_after = 1;
        q.after = *after;
    }
    q.has_max_bytes = 1;
    q.max_bytes = max;
    uint8_t buf[512];
    size_t len = shale__mig_export_request__pack(&q, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rv = shale_call(c, SHALE_MSG_MIG_EXPORT_REQ, SHALE_MSG_MIG_BATCH, buf, len, &resp,
                        &rlen, msg, NULL);
    if (rv == SHALE_OK) {
        *b = shale__mig_batch__unpack(NULL, rlen, resp);
        ck_assert_ptr_nonnull(*b);
    }
    free(resp);
    return rv;
}

static int import_batch(shale_client_t *c, uint64_t id, uint64_t run, uint32_t slot,
                        const Shale__MigBatch *b, char *msg)
{
    Shale__MigImportRequest q = SHALE__MIG_IMPORT_REQUEST__INIT;
    q.id = id;
    q.run = run;
    q.slot = slot;
    q.has_data = b->has_data;
    q.data = b->data;
    q.has_raw_len = 1;
    q.raw_len = b->raw_len;
    q.has_count = 1;
    q.count = b->count;
    size_t len = shale__mig_import_request__get_packed_size(&q);
    uint8_t *buf = malloc(len);
    shale__mig_import_request__pack(&q, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rv = shale_call(c, SHALE_MSG_MIG_IMPORT_REQ, SHALE_MSG_MIG_IMPORT_RESP, buf, len, &resp,
                        &rlen, msg, NULL);
    free(buf);
    free(resp);
    return rv;
}

/* What a source on whole-key hashing (key-hash v1, a build from before
 * hash tags) would export for slot: one data record of a key with a hash
 * tag whose whole-key slot is slot and whose tag's slot is not. The import
 * must be refused INVALID (the key would be stored where no read looks). */
static void import_v1_placed_key(shale_client_t *dst, uint64_t id, uint32_t slot)
{
    char key[32];
    int kl = 0;
    for (int i = 0;; i++) {
        kl = snprintf(key, sizeof(key), "{t%d}.x", i);
        if (shale_hash64(key, (size_t)kl, 0) % SLOTS == slot &&
            shale_key_slot(key, (size_t)kl, SLOTS) != slot)
            break;
    }
    uint8_t raw[64];
    size_t n = 0;
    raw[n++] = 1; /* put */
    uint32_t klen = (uint32_t)kl + 1, vlen = 8 + 1;
    for (int i = 3; i >= 0; i--)
        raw[n++] = (uint8_t)(klen >> (8 * i));
    raw[n++] = 'd';
    memcpy(raw + n, key, (size_t)kl);
    n += (size_t)kl;
    for (int i = 3; i >= 0; i--)
        raw[n++] = (uint8_t)(vlen >> (8 * i));
    memset(raw + n, 0, 7);
    raw[n + 7] = 1; /* version 1 */
    raw[n + 8] = 'v';
    n += vlen;
    uint8_t z[256];
    size_t zl = ZSTD_compress(z, sizeof(z), raw, n, 1);
    ck_assert(!ZSTD_isError(zl));
    Shale__MigBatch b = SHALE__MIG_BATCH__INIT;
    b.has_data = 1;
    b.data.data = z;
    b.data.len = zl;
    b.raw_len = (uint32_t)n;
    b.count = 1;
    char msg[SHALE_ERRMSG_LEN] = "";
    ck_assert_int_eq(import_batch(dst, id, 1, slot, &b, msg), SHALE_EINVAL);
    ck_assert_msg(strstr(msg, key) != NULL && strstr(msg, "key-hash") != NULL, "%s", msg);
}

/* Copy every page of a phase from src to dst, from *cursor (kept up to
 * date). Returns the records moved; *fenced: the last page's flag. */
static uint32_t copy_phase(shale_client_t *src, shale_client_t *dst, uint64_t id, uint64_t run,
                           uint32_t slot, Shale__MigPhase phase, uint8_t *cursor,
                           size_t *curlen, int *fenced)
{
    uint32_t moved = 0;
    char msg[SHALE_ERRMSG_LEN];
    for (;;) {
        ProtobufCBinaryData after = {*curlen, cursor};
        Shale__MigBatch *b = NULL;
        ck_assert_int_eq(export_page(src, id, slot, phase, &after, 700, &b, msg), SHALE_OK);
        if (b->count > 0)
            ck_assert_int_eq(import_batch(dst, id, run, slot, b, msg), SHALE_OK);
        moved += b->count;
        if (b->has_next) {
            ck_assert_uint_le(b->next.len, 256);
            memcpy(cursor, b->next.data, b->next.len);
            *curlen = b->next.len;
        }
        int done = b->done;
        if (fenced != NULL)
            *fenced = b->fenced;
        shale__mig_batch__free_unpacked(b, NULL);
        if (done)
            return moved;
    }
}

/* A PUT with an explicit session, through shale_call. */
static int put_session(shale_client_t *c, const char *key, const char *val, uint64_t cid,
                       uint64_t seq, uint64_t *version, int *dup)
{
    Shale__PutRequest p = SHALE__PUT_REQUEST__INIT;
    Shale__Session ses = SHALE__SESSION__INIT;
    ses.client_id = cid;
    ses.seq = seq;
    p.key.data = (uint8_t *)key;
    p.key.len = strlen(key);
    p.value.data = (uint8_t *)val;
    p.value.len = strlen(val);
    p.session = &ses;
    uint8_t buf[512];
    size_t len = shale__put_request__pack(&p, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    char msg[SHALE_ERRMSG_LEN];
    int rv = shale_call(c, SHALE_MSG_PUT_REQ, SHALE_MSG_PUT_RESP, buf, len, &resp, &rlen, msg,
                        NULL);
    if (rv == SHALE_OK) {
        Shale__PutResponse *r = shale__put_response__unpack(NULL, rlen, resp);
        ck_assert_ptr_nonnull(r);
        *version = r->version;
        *dup = r->has_duplicate && r->duplicate;
        shale__put_response__free_unpacked(r, NULL);
    }
    free(resp);
    return rv;
}

/* PUT the first n keys of slot through c, the ith with the value
 * "<prefix>-<i>". */
static void put_keys(shale_client_t *c, uint32_t slot, int n, const char *prefix)
{
    char key[32], val[64];
    for (int i = 0; i < n; i++) {
        key_in_slot(slot, i, key, sizeof(key));
        snprintf(val, sizeof(val), "%s-%d", prefix, i);
        ck_assert_int_eq(shale_put(c, key, strlen(key), val, strlen(val), NULL), SHALE_OK);
    }
}

/* A test's end: free its maps, close its two clients, stop the cluster. */
static void finish(Shale__ClusterMap *const *maps, size_t n, shale_client_t *a, shale_client_t *b)
{
    for (size_t i = 0; i < n; i++)
        cmap_free(maps[i]);
    shale_close(a);
    shale_close(b);
    stop_cluster();
}

static void expect_value(shale_client_t *c, const char *key, const char *want)
{
    shale_value_t v;
    ck_assert_int_eq(shale_get(c, key, strlen(key), NULL, &v), SHALE_OK);
    if (want == NULL) {
        ck_assert_msg(!v.found, "%s should be absent", key);
    } else {
        ck_assert_msg(v.found, "%s is missing", key);
        ck_assert_uint_eq(v.len, strlen(want));
        ck_assert_msg(memcmp(v.data, want, v.len) == 0, "%s has the wrong value", key);
    }
    shale_value_free(&v);
}

/* The whole path by hand, with writes and deletes during the copy, the
 * fence refusing reads and writes, the flip carrying data and sessions,
 * and the rules the meta group and the nodes enforce on the way. */
START_TEST(test_migration_by_hand)
{
    start_cluster(1);
    Shale__ClusterMap *m0 = get_map();
    const uint32_t slot = 3; /* group 1 owns 0..31 */
    ck_assert_uint_eq(cmap_slot_group(m0, slot), 1);
    shale_client_t *a = client_for(&g_cl.groups[0]), *b = client_for(&g_cl.groups[1]);
    char key[32], val[64], msg[SHALE_ERRMSG_LEN];
    static char model[NKEYS][64]; /* "" = absent */
    for (int i = 0; i < NKEYS; i++) {
        key_in_slot(slot, i, key, sizeof(key));
        snprintf(val, sizeof(val), "v0-%d", i);
        ck_assert_int_eq(shale_put(a, key, strlen(key), val, strlen(val), NULL), SHALE_OK);
        snprintf(model[i], sizeof(model[i]), "%s", val);
    }
    /* A write with a session the test controls, to retry after the move. */
    uint64_t ver1 = 0, ver2 = 0;
    int dup = 0;
    key_in_slot(slot, 0, key, sizeof(key));
    ck_assert_int_eq(put_session(a, key, "session-write", 777, 5, &ver1, &dup), SHALE_OK);
    ck_assert(!dup);
    snprintf(model[0], sizeof(model[0]), "session-write");

    /* Moving a slot without a migration is refused by the meta group. */
    Shale__ClusterMap *bad = cmap_copy(m0);
    bad->slot_group[slot] = 2;
    ck_assert_int_eq(map_change(bad, m0->epoch, msg), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "without a fenced migration"));
    cmap_free(bad);

    /* 1. start: the record; group 2 imports, group 1 logs. */
    Shale__ClusterMap *m1 = start_migration(m0, slot);
    uint64_t e = m0->epoch + 1;
    /* group 2 does not serve the slot yet */
    ck_assert_int_eq(shale_put(b, key, strlen(key), "x", 1, NULL), SHALE_EWRONGGROUP);
    /* imports of an older run are refused (a newer coordinator took over);
     * of a newer run or an unknown migration: not applied here (yet) */
    Shale__MigBatch empty = SHALE__MIG_BATCH__INIT;
    ck_assert_int_eq(import_batch(b, 1, 0, slot, &empty, msg), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "took it over"));
    shale_client_t *qa = client_to(&g_cl.groups[0], 600), *qb = client_to(&g_cl.groups[1], 600);
    ck_assert(unavailable(import_batch(qb, 1, 2, slot, &empty, msg)));
    ck_assert(unavailable(import_batch(qb, 9, 1, slot, &empty, msg)));
    /* sessions only once fenced */
    Shale__MigBatch *pb = NULL;
    ck_assert(unavailable(export_page(qa, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_SESSIONS, NULL,
                                      700, &pb, msg)));

    /* 2. copy the data in small pages, while writes and deletes go on */
    uint8_t cur[256];
    size_t curlen = 0;
    uint32_t n = copy_phase(a, b, 1, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_DATA, cur, &curlen,
                            NULL);
    ck_assert_uint_eq(n, NKEYS);
    for (int i = 0; i < NKEYS; i += 3) {
        key_in_slot(slot, i, key, sizeof(key));
        if (i % 2 == 0) {
            snprintf(val, sizeof(val), "v1-%d", i);
            ck_assert_int_eq(shale_put(a, key, strlen(key), val, strlen(val), NULL), SHALE_OK);
            snprintf(model[i], sizeof(model[i]), "%s", val);
        } else {
            ck_assert_int_eq(shale_del(a, key, strlen(key), NULL, NULL), SHALE_OK);
            model[i][0] = '\0';
        }
    }
    uint8_t lcur[256];
    size_t lcurlen = 0;
    int fenced = 1;
    n = copy_phase(a, b, 1, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_LOG, lcur, &lcurlen, &fenced);
    ck_assert_uint_eq(n, (NKEYS + 2) / 3);
    ck_assert(!fenced);
    /* more changes after the first round */
    for (int i = 1; i < NKEYS; i += 7) {
        key_in_slot(slot, i, key, sizeof(key));
        snprintf(val, sizeof(val), "v2-%d", i);
        ck_assert_int_eq(shale_put(a, key, strlen(key), val, strlen(val), NULL), SHALE_OK);
        snprintf(model[i], sizeof(model[i]), "%s", val);
    }

    /* 3. fence: group 1 refuses reads and writes of the slot */
    Shale__ClusterMap *m2 = cmap_copy(m1);
    m2->migrations[0]->state = SHALE__MIGRATION_STATE__MIG_FENCED;
    ck_assert_int_eq(map_change(m2, e, msg), SHALE_OK);
    e++;
    ck_assert_int_eq(shale_put(a, key, strlen(key), "late", 4, NULL), SHALE_ESLOTMOVING);
    shale_value_t v;
    ck_assert_int_eq(shale_get(a, key, strlen(key), NULL, &v), SHALE_ESLOTMOVING);
    /* other slots of group 1 still serve */
    char other[32];
    key_in_slot(slot + 1, 0, other, sizeof(other));
    ck_assert_int_eq(shale_put(a, other, strlen(other), "fine", 4, NULL), SHALE_OK);

    /* 4. drain: the rest of the changelog (final: fenced), then sessions */
    n = copy_phase(a, b, 1, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_LOG, lcur, &lcurlen, &fenced);
    ck_assert_uint_eq(n, (NKEYS + 5) / 7);
    ck_assert(fenced);
    uint8_t scur[256];
    size_t scurlen = 0;
    n = copy_phase(a, b, 1, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_SESSIONS, scur, &scurlen, NULL);
    ck_assert_uint_ge(n, 2); /* at least client 777's header and result */

    /* 5. flip */
    Shale__ClusterMap *m3 = cmap_copy(m2);
    drop_migrations(m3);
    m3->slot_group[slot] = 2;
    ck_assert_int_eq(map_change(m3, e, msg), SHALE_OK);
    e++;
    for (int i = 0; i < NKEYS; i++) {
        key_in_slot(slot, i, key, sizeof(key));
        expect_value(b, key, model[i][0] ? model[i] : NULL);
    }
    key_in_slot(slot, 0, key, sizeof(key));
    ck_assert_int_eq(shale_get(a, key, strlen(key), NULL, &v), SHALE_EWRONGGROUP);
    /* the retried write (same client and seq) is not applied again on B */
    ck_assert_int_eq(put_session(b, key, "retried-write", 777, 5, &ver2, &dup), SHALE_OK);
    ck_assert(dup);
    ck_assert_uint_eq(ver2, ver1);
    expect_value(b, key, model[0]);
    /* B owns it now: writes go through */
    ck_assert_int_eq(shale_put(b, key, strlen(key), "new-owner", 9, NULL), SHALE_OK);
    /* A deleted the slot: an export for the finished migration is refused */
    ck_assert(unavailable(export_page(qa, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_DATA, NULL, 700,
                                      &pb, msg)));
    shale_close(qa);
    shale_close(qb);

    Shale__ClusterMap *maps[] = {m0, m1, m2, m3};
    finish(maps, sizeof(maps) / sizeof(maps[0]), a, b);
}
END_TEST

/* Abort after a partial copy (and after the fence): the source serves the
 * slot again with all its data; the target dropped what it imported, so a
 * second migration of the same slot starts clean and completes. */
START_TEST(test_abort_leaves_source_intact)
{
    start_cluster(1);
    Shale__ClusterMap *m0 = get_map();
    const uint32_t slot = 7;
    shale_client_t *a = client_for(&g_cl.groups[0]), *b = client_for(&g_cl.groups[1]);
    char key[32], val[64], msg[SHALE_ERRMSG_LEN];
    put_keys(a, slot, 40, "a");
    Shale__ClusterMap *m1 = start_migration(m0, slot);
    import_v1_placed_key(b, 1, slot);
    uint8_t cur[256];
    size_t curlen = 0;
    ck_assert_uint_eq(copy_phase(a, b, 1, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_DATA, cur,
                                 &curlen, NULL), 40);
    Shale__ClusterMap *m2 = cmap_copy(m1);
    m2->migrations[0]->state = SHALE__MIGRATION_STATE__MIG_FENCED;
    ck_assert_int_eq(map_change(m2, m0->epoch + 1, msg), SHALE_OK);
    key_in_slot(slot, 0, key, sizeof(key));
    ck_assert_int_eq(shale_put(a, key, strlen(key), "x", 1, NULL), SHALE_ESLOTMOVING);
    /* abort: remove the record (the slot stays with group 1) */
    Shale__ClusterMap *m3 = cmap_copy(m2);
    drop_migrations(m3);
    ck_assert_int_eq(map_change(m3, m0->epoch + 2, msg), SHALE_OK);
    for (int i = 0; i < 40; i++) {
        key_in_slot(slot, i, key, sizeof(key));
        snprintf(val, sizeof(val), "a-%d", i);
        expect_value(a, key, val);
    }
    key_in_slot(slot, 1, key, sizeof(key));
    ck_assert_int_eq(shale_put(a, key, strlen(key), "after-abort", 11, NULL), SHALE_OK);
    shale_value_t v;
    ck_assert_int_eq(shale_get(b, key, strlen(key), NULL, &v), SHALE_EWRONGGROUP);

    /* Migration 2 of the same slot: delete a key first; the target must not
     * resurrect it from the aborted attempt's import. */
    key_in_slot(slot, 2, key, sizeof(key));
    ck_assert_int_eq(shale_del(a, key, strlen(key), NULL, NULL), SHALE_OK);
    Shale__ClusterMap *m4 = cmap_copy(m3);
    Shale__Migration *mig2 = new_migration(2, 1, 2, slot);
    add_migration(m4, mig2);
    /* reusing id 1 is refused */
    mig2->id = 1;
    m4->next_migration_id = 2;
    ck_assert_int_eq(map_change(m4, m0->epoch + 3, msg), SHALE_EINVAL);
    mig2->id = 2;
    m4->next_migration_id = 3;
    ck_assert_int_eq(map_change(m4, m0->epoch + 3, msg), SHALE_OK);
    curlen = 0;
    ck_assert_uint_eq(copy_phase(a, b, 2, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_DATA, cur,
                                 &curlen, NULL), 39);
    Shale__ClusterMap *m5 = cmap_copy(m4);
    m5->migrations[0]->state = SHALE__MIGRATION_STATE__MIG_FENCED;
    ck_assert_int_eq(map_change(m5, m0->epoch + 4, msg), SHALE_OK);
    uint8_t lcur[256];
    size_t lcurlen = 0;
    int fenced = 0;
    copy_phase(a, b, 2, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_LOG, lcur, &lcurlen, &fenced);
    ck_assert(fenced);
    Shale__ClusterMap *m6 = cmap_copy(m5);
    drop_migrations(m6);
    m6->slot_group[slot] = 2;
    ck_assert_int_eq(map_change(m6, m0->epoch + 5, msg), SHALE_OK);
    expect_value(b, key, NULL);
    key_in_slot(slot, 1, key, sizeof(key));
    expect_value(b, key, "after-abort");
    Shale__ClusterMap *maps[] = {m0, m1, m2, m3, m4, m5, m6};
    finish(maps, sizeof(maps) / sizeof(maps[0]), a, b);
}
END_TEST

/* Leader index of g (waits for one). */
static int leader_of(th_group_t *g)
{
    int l = th_group_wait_leader(g, 20000);
    ck_assert_int_ge(l, 0);
    return l;
}

static void restart_data_node(int group, int i)
{
    char gid[16];
    snprintf(gid, sizeof(gid), "%d", group);
    const char *args[] = {"--group", gid, "--meta", g_cl.meta.addrs, NULL};
    ck_assert_int_eq(th_group_start_node(&g_cl.groups[group - 1], i, args), 0);
}

/* kill -9 at three steps of one migration, with 3-voter groups: the source
 * leader during the copy, the target leader between the fence and the
 * drain, the meta leader before the flip. The state of the migration lives
 * in the Raft logs (the map's record, each group's ownership record and
 * changelog, the imports), so the steps continue against the new leaders
 * and the migration completes with every write and one owner. */
START_TEST(test_leader_kills_at_each_step)
{
    start_cluster(3);
    Shale__ClusterMap *m0 = get_map();
    const uint32_t slot = 5;
    shale_client_t *a = client_for(&g_cl.groups[0]), *b = client_for(&g_cl.groups[1]);
    char key[32], val[64], msg[SHALE_ERRMSG_LEN];
    put_keys(a, slot, 60, "v");
    Shale__ClusterMap *m1 = start_migration(m0, slot);
    uint64_t e = m0->epoch + 1;

    /* Source leader killed during the copy. */
    uint8_t cur[256];
    size_t curlen = 0;
    copy_phase(a, b, 1, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_DATA, cur, &curlen, NULL);
    int la = leader_of(&g_cl.groups[0]);
    th_node_stop(&g_cl.groups[0].nodes[la], SIGKILL);
    for (int i = 0; i < 60; i += 2) { /* changes land on the new leader */
        key_in_slot(slot, i, key, sizeof(key));
        snprintf(val, sizeof(val), "w-%d", i);
        ck_assert_int_eq(shale_put(a, key, strlen(key), val, strlen(val), NULL), SHALE_OK);
    }
    uint8_t lcur[256];
    size_t lcurlen = 0;
    int fenced = 1;
    ck_assert_uint_eq(copy_phase(a, b, 1, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_LOG, lcur,
                                 &lcurlen, &fenced), 30);
    ck_assert(!fenced);
    restart_data_node(1, la);

    /* Fence, then the target leader dies before the drain. */
    Shale__ClusterMap *m2 = cmap_copy(m1);
    m2->migrations[0]->state = SHALE__MIGRATION_STATE__MIG_FENCED;
    ck_assert_int_eq(map_change(m2, e, msg), SHALE_OK);
    e++;
    int lb = leader_of(&g_cl.groups[1]);
    th_node_stop(&g_cl.groups[1].nodes[lb], SIGKILL);
    copy_phase(a, b, 1, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_LOG, lcur, &lcurlen, &fenced);
    ck_assert(fenced);
    uint8_t scur[256];
    size_t scurlen = 0;
    copy_phase(a, b, 1, 1, slot, SHALE__MIG_PHASE__MIG_PHASE_SESSIONS, scur, &scurlen, NULL);
    restart_data_node(2, lb);

    /* The meta leader dies before the flip. */
    int lm = leader_of(&g_cl.meta);
    th_node_stop(&g_cl.meta.nodes[lm], SIGKILL);
    Shale__ClusterMap *m3 = cmap_copy(m2);
    drop_migrations(m3);
    m3->slot_group[slot] = 2;
    ck_assert_int_eq(map_change(m3, e, msg), SHALE_OK);
    /* One owner: every member of group 2 serves the slot (stale reads on
     * each member, after it applied the flip), group 1 refuses it. */
    for (int i = 0; i < 60; i++) {
        key_in_slot(slot, i, key, sizeof(key));
        snprintf(val, sizeof(val), i % 2 == 0 ? "w-%d" : "v-%d", i);
        expect_value(b, key, val);
    }
    shale_read_opts_t ro = {.consistency = SHALE_STALE, .max_staleness_ms = 0};
    key_in_slot(slot, 0, key, sizeof(key));
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < 3; i++) {
            shale_options_t o;
            th_client_options(&o);
            o.timeout_ms = 3000;
            shale_client_t *c = NULL;
            ck_assert_int_eq(shale_connect(g_cl.groups[g].nodes[i].addr, &o, &c, NULL),
                             SHALE_OK);
            shale_value_t v;
            int rv = shale_get(c, key, strlen(key), &ro, &v);
            if (g == 0) {
                ck_assert_int_eq(rv, SHALE_EWRONGGROUP);
            } else {
                ck_assert_int_eq(rv, SHALE_OK);
                ck_assert(v.found && v.len == 3 && memcmp(v.data, "w-0", 3) == 0);
                shale_value_free(&v);
            }
            shale_close(c);
        }
    Shale__ClusterMap *maps[] = {m0, m1, m2, m3};
    finish(maps, sizeof(maps) / sizeof(maps[0]), a, b);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("migrate_node");
    TCase *tc = tcase_create("node");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_migration_by_hand);
    tcase_add_test(tc, test_abort_leaves_source_intact);
    tcase_add_test(tc, test_leader_kills_at_each_step);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
