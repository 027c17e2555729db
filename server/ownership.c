/* Slot ownership of a data node in a cluster (shaled --group G --meta ...).
 *
 * What this file owns:
 *  - following the cluster map: every member keeps one MAP_GET long-poll
 *    open against the meta group (libshale on this node's loop; it follows
 *    NOT_LEADER hints and rotates through the --meta addresses);
 *  - the group's ownership record (SlotOwnership: epoch + bitmap of the
 *    slots group G owns), replicated in the group's own Raft log: when the
 *    leader sees a map epoch newer than the applied record it proposes the
 *    new record; every member applies it (RocksDB metadata "ownership",
 *    atomically with the applied index) so all members, followers and read
 *    replicas included, check requests against the same state;
 *  - the request check (own_check): a slot the group does not own at its
 *    epoch is refused with WRONG_GROUP{epoch} so the router refreshes.
 *
 *  - the migration side of the record (docs/resharding.md): a slot of a
 *    migration out of this group is logged (store changelog) and, once the
 *    migration is FENCED, refused with SLOT_MOVING; a slot of a migration
 *    into this group accepts imports (migrate.c) and nothing else; a record
 *    that drops a slot deletes what this node stored of it.
 *  - MIG_PUSH (own_push): the coordinator hands over a map it just
 *    committed with MAP_CAS for a migration of this group, so the leader
 *    proposes the record now instead of when the watch sees the epoch;
 *    the push is checked against this node's applied record (newer epoch,
 *    a migration of this group) and only ever replaces own_map by a newer
 *    map, exactly like a watch answer (docs/resharding.md, "The fence
 *    push").
 *
 * A node without --meta is a standalone group and owns every slot. Never
 * changes the map; never calls into Raft from a callback (proposals leave
 * from own_flush in the end-of-turn check). */
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "frame.h"
#include "keyhash.h"
#include "log.h"
#include "server.h"
#include "shale.h"
#include "shale_internal.h"

#define META_OWNERSHIP "ownership"
/* Short long-polls: a meta member that is paused (not dead: its socket
 * stays open) is noticed by libshale's stall check after WATCH_STALL_MS
 * and the watch moves to another member. */
#define WATCH_WAIT_MS 3000
#define WATCH_STALL_MS (WATCH_WAIT_MS + 1500)
#define WATCH_RETRY_MS 500

static int in_cluster(const shaled_t *s)
{
    return s->cfg.group != 0;
}

int own_mig_has_slot(const Shale__Migration *m, uint32_t slot)
{
    for (size_t i = 0; i < m->n_slots; i++)
        if (m->slots[i] == slot)
            return 1;
    return 0;
}

/* Per-slot state of record o (NULL: all OWN_NONE) into st (o->slots bytes). */
static void derive_state(const Shale__SlotOwnership *o, uint64_t group, uint8_t *st)
{
    if (o == NULL)
        return;
    memset(st, OWN_NONE, o->slots);
    for (uint32_t sl = 0; sl < o->slots; sl++)
        if ((o->owned.data[sl / 8] >> (sl % 8)) & 1)
            st[sl] = OWN_SERVE;
    for (size_t i = 0; i < o->n_migrations; i++) {
        const Shale__Migration *m = o->migrations[i];
        for (size_t j = 0; j < m->n_slots; j++) {
            uint32_t sl = m->slots[j];
            if (sl >= o->slots)
                continue;
            if (m->from_group == group && st[sl] == OWN_SERVE &&
                m->state == SHALE__MIGRATION_STATE__MIG_FENCED)
                st[sl] = OWN_FENCED;
            else if (m->to_group == group && st[sl] == OWN_NONE)
                st[sl] = OWN_IMPORTING;
        }
    }
}

/* Whether record o logs changes of slot (a migration out of group lists it
 * and the group owns it). */
static int logs_slot(const Shale__SlotOwnership *o, uint64_t group, const uint8_t *st,
                     uint32_t sl)
{
    if (o == NULL || sl >= o->slots || (st[sl] != OWN_SERVE && st[sl] != OWN_FENCED))
        return 0;
    for (size_t i = 0; i < o->n_migrations; i++)
        if (o->migrations[i]->from_group == group && own_mig_has_slot(o->migrations[i], sl))
            return 1;
    return 0;
}

static void set_own(shaled_t *s, Shale__SlotOwnership *o)
{
    if (s->own != NULL)
        shale__slot_ownership__free_unpacked(s->own, NULL);
    s->own = o;
    free(s->own_state);
    s->own_state = NULL;
    if (o != NULL) {
        s->own_state = malloc(o->slots);
        if (s->own_state != NULL) {
            derive_state(o, s->cfg.group, s->own_state);
            for (uint32_t sl = 0; sl < o->slots; sl++)
                store_changelog_set(s->store, (uint16_t)sl,
                                    logs_slot(o, s->cfg.group, s->own_state, sl));
        }
    }
}

int own_slot_state(const shaled_t *s, uint32_t slot)
{
    if (s->cfg.group == 0)
        return OWN_SERVE;
    if (s->own == NULL || s->own_state == NULL || slot >= s->own->slots)
        return OWN_NONE;
    return s->own_state[slot];
}

const Shale__Migration *own_migration(const shaled_t *s, uint64_t id, int *outgoing)
{
    if (s->own == NULL)
        return NULL;
    for (size_t i = 0; i < s->own->n_migrations; i++) {
        const Shale__Migration *m = s->own->migrations[i];
        if (m->id == id) {
            *outgoing = m->from_group == s->cfg.group;
            return m;
        }
    }
    return NULL;
}

int own_apply_check(const shaled_t *s, const uint16_t *slots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int st = own_slot_state(s, slots[i]);
        if (st == OWN_FENCED)
            return SHALE_ESLOTMOVING;
        if (st != OWN_SERVE)
            return SHALE_EWRONGGROUP;
    }
    return 0;
}

static uint32_t count_owned(const Shale__SlotOwnership *o)
{
    uint32_t n = 0;
    for (uint32_t sl = 0; sl < o->slots; sl++)
        n += (o->owned.data[sl / 8] >> (sl % 8)) & 1;
    return n;
}

int own_load(shaled_t *s, char *err)
{
    if (!in_cluster(s))
        return 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rv = store_get_meta(s->store, META_OWNERSHIP, &buf, &len, err);
    if (rv == SHALE_ENOTFOUND) {
        set_own(s, NULL);
        return 0;
    }
    if (rv != 0)
        return rv;
    Shale__SlotOwnership *o = shale__slot_ownership__unpack(NULL, len, buf);
    free(buf);
    if (o == NULL || o->slots == 0 || o->owned.len < (o->slots + 7) / 8) {
        if (o != NULL)
            shale__slot_ownership__free_unpacked(o, NULL);
        snprintf(err, STORE_ERRLEN, "stored slot ownership is malformed");
        return SHALE_ECORRUPT;
    }
    s->cfg.slots = o->slots; /* the cluster's S, fixed at init */
    set_own(s, o);
    if (s->own_state == NULL) {
        snprintf(err, STORE_ERRLEN, "out of memory loading slot ownership");
        return SHALE_ENOMEM;
    }
    s->own_count = count_owned(o);
    return 0;
}


/* ---- Request check ---------------------------------------------------------*/

int own_check_slot(shaled_t *s, uint32_t slot, const Shale__Route *route, char *msg,
                   size_t msglen, uint64_t *epoch)
{
    if (!in_cluster(s))
        return 0;
    if (s->own == NULL) {
        snprintf(msg, msglen, "group %llu does not know its slots yet (waiting for the cluster "
                 "map from the meta group)", (unsigned long long)s->cfg.group);
        return SHALE_EUNAVAILABLE;
    }
    *epoch = s->own->epoch;
    int st = own_slot_state(s, slot);
    if (st == OWN_FENCED) {
        snprintf(msg, msglen, "slot %u is fenced for a migration out of group %llu: "
                 "retry shortly", slot, (unsigned long long)s->cfg.group);
        return SHALE_ESLOTMOVING;
    }
    if (st != OWN_SERVE) {
        snprintf(msg, msglen, "slot %u is not owned by group %llu at epoch %llu", slot,
                 (unsigned long long)s->cfg.group, (unsigned long long)s->own->epoch);
        if (route != NULL && route->has_epoch && route->epoch > s->own->epoch)
            s->own_hurry = 1; /* the caller knows a newer map: look now */
        return SHALE_EWRONGGROUP;
    }
    return 0;
}

int own_check(shaled_t *s, const ProtobufCBinaryData *keys, size_t n, const Shale__Route *route,
              char *msg, size_t msglen, uint64_t *epoch)
{
    if (!in_cluster(s))
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t slot = shale_key_slot(keys[i].data, keys[i].len, (uint32_t)s->cfg.slots);
        if (i == 0 && route != NULL && route->has_slot && route->slot != slot && n == 1) {
            snprintf(msg, msglen, "route names slot %u but the key hashes to slot %u",
                     route->slot, slot);
            return SHALE_EINVAL;
        }
        int rv = own_check_slot(s, slot, route, msg, msglen, epoch);
        if (rv != 0)
            return rv;
    }
    if (n == 0 && s->own != NULL)
        *epoch = s->own->epoch;
    return 0;
}

/* ---- Following the map -----------------------------------------------------*/

static void watch(shaled_t *s);

static void on_retry(uv_timer_t *t)
{
    watch(t->data);
}

static void on_map(shale_req_t *req, int status)
{
    shaled_t *s = req->data;
    s->own_watching = 0;
    if (s->stopping) {
        shale_req_cleanup(req);
        return;
    }
    if (status == SHALE_OK) {
        Shale__MapResponse *resp =
            shale__map_response__unpack(NULL, req->raw_len, req->raw);
        if (resp != NULL && resp->map != NULL &&
            (s->own_map == NULL || resp->map->epoch > s->own_map->epoch)) {
            Shale__ClusterMap *m = cmap_copy(resp->map);
            if (m != NULL) {
                cmap_free(s->own_map);
                s->own_map = m;
                log_info("cluster map received", " epoch=%llu group=%llu slots_owned=%u",
                         (unsigned long long)m->epoch, (unsigned long long)s->cfg.group,
                         cmap_slot_count(m, s->cfg.group));
            }
        }
        if (resp != NULL)
            shale__map_response__free_unpacked(resp, NULL);
        shale_req_cleanup(req);
        if (s->cfg.test_map_watch_pause_ms > 0 && s->own_map != NULL && s->own_map->epoch > 0)
            s->own_watch_at = uv_now(s->loop) + s->cfg.test_map_watch_pause_ms;
        if (s->own_reopen) /* swap clients from a later loop turn, not inside its callback */
            uv_timer_start(&s->own_timer, on_retry, 0, 0);
        else
            watch(s);
        return;
    }
    if (status != SHALE_ECLOSED && status != SHALE_ECANCELED)
        log_debug("cluster map watch failed; retrying", " err=\"%s\"", req->errmsg);
    shale_req_cleanup(req);
    uv_timer_start(&s->own_timer, on_retry, WATCH_RETRY_MS, 0);
}

static int open_meta_client(shaled_t *s, struct shale_client **out);

/* After SIGHUP: a new meta client made with the reloaded TLS files, between
 * two watches (nothing in flight on the old one). On failure the old one
 * stays. */
static void reopen_meta_client(shaled_t *s)
{
    struct shale_client *fresh = NULL;
    s->own_reopen = 0;
    int rv = open_meta_client(s, &fresh);
    if (rv != SHALE_OK) {
        log_error("cannot reopen the meta client with the reloaded TLS files; keeping the old one",
                  " err=%s", shale_strerror(rv));
        return;
    }
    shale_client_close(s->meta_client, NULL);
    s->meta_client = fresh;
    log_info("meta client reopened with the reloaded TLS files", "%s", "");
}

void own_tls_reloaded(shaled_t *s)
{
    if (s->meta_client != NULL && s->tls_client != NULL)
        s->own_reopen = 1; /* at the next watch (at most WATCH_WAIT_MS away) */
}

static void watch(shaled_t *s)
{
    if (s->stopping || s->own_watching || s->meta_client == NULL)
        return;
    if (s->own_watch_at > 0 && uv_now(s->loop) < s->own_watch_at) { /* TEST ONLY */
        uv_timer_start(&s->own_timer, on_retry, s->own_watch_at - uv_now(s->loop), 0);
        return;
    }
    if (s->own_reopen)
        reopen_meta_client(s);
    Shale__MapGetRequest g = SHALE__MAP_GET_REQUEST__INIT;
    g.has_known_epoch = 1;
    g.known_epoch = s->own_map != NULL ? s->own_map->epoch : 0;
    g.has_wait_ms = 1;
    g.wait_ms = s->own_hurry ? 0 : WATCH_WAIT_MS;
    s->own_hurry = 0;
    uint8_t buf[32];
    size_t len = shale__map_get_request__pack(&g, buf);
    s->own_req.data = s;
    if (shale_call_async(s->meta_client, &s->own_req, SHALE_MSG_MAP_GET_REQ, SHALE_MSG_MAP_RESP,
                         buf, len, on_map) != SHALE_OK) {
        uv_timer_start(&s->own_timer, on_retry, WATCH_RETRY_MS, 0);
        return;
    }
    s->own_watching = 1;
}

/* A libshale client of the meta group; TLS files are read now. */
static int open_meta_client(shaled_t *s, struct shale_client **out)
{
    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = WATCH_WAIT_MS + 10000;
    o.stall_ms = WATCH_STALL_MS;
    o.cluster_id = s->cfg.cluster_id;
    if (s->tls_client != NULL) { /* the meta group's client port speaks TLS too */
        o.tls_ca = s->cfg.tls_ca;
        o.tls_cert = s->cfg.tls_cert;
        o.tls_key = s->cfg.tls_key;
    }
    authn_client_options(s, &o);
    return shale_client_open(s->loop, s->cfg.meta, &o, out);
}

int own_start(shaled_t *s, char *err, size_t errlen)
{
    uv_timer_init(s->loop, &s->own_timer);
    s->own_timer.data = s;
    if (!in_cluster(s))
        return 0;
    int rv = open_meta_client(s, &s->meta_client);
    if (rv != SHALE_OK) {
        snprintf(err, errlen, "--meta %s: %s", s->cfg.meta, shale_strerror(rv));
        return -1;
    }
    watch(s);
    return 0;
}

/* ---- The coordinator's push ----------------------------------------------------*/

/* Whether map m may be a change of migration id for this node: the map
 * lists it with this group as source or target (start, fence, resume), or
 * it is gone from the map but in the applied record (flip or abort). 0, or
 * a code with msg. */
static int push_refusal(const shaled_t *s, const Shale__ClusterMap *m, uint64_t id, char *msg,
                        size_t len)
{
    uint64_t g = s->cfg.group;
    if (s->own == NULL) {
        snprintf(msg, len, "group %llu has no ownership record yet", (unsigned long long)g);
        return SHALE_EUNAVAILABLE;
    }
    if (m->slots != s->own->slots) {
        snprintf(msg, len, "the pushed map has %u slots, this group %u", m->slots,
                 s->own->slots);
        return SHALE_EINVAL;
    }
    char why[256];
    if (cmap_validate(NULL, m, why, sizeof(why)) != 0) {
        snprintf(msg, len, "the pushed map is not valid: %s", why);
        return SHALE_EINVAL;
    }
    if (m->epoch <= s->own->epoch) {
        snprintf(msg, len, "stale map: the push carries epoch %llu, group %llu applied epoch %llu",
                 (unsigned long long)m->epoch, (unsigned long long)g,
                 (unsigned long long)s->own->epoch);
        return SHALE_ECASFAILED;
    }
    int out = 0;
    const Shale__Migration *have = own_migration(s, id, &out);
    const Shale__Migration *rec = cmap_migration(m, id);
    if (rec != NULL && rec->from_group != g && rec->to_group != g) {
        snprintf(msg, len, "migration %llu does not involve group %llu", (unsigned long long)id,
                 (unsigned long long)g);
        return SHALE_EINVAL;
    }
    if (rec == NULL && have == NULL) {
        snprintf(msg, len, "migration %llu is neither in the pushed map nor in group %llu's "
                 "applied record", (unsigned long long)id, (unsigned long long)g);
        return SHALE_EINVAL;
    }
    if (rec != NULL && have != NULL &&
        (rec->from_group != have->from_group || rec->to_group != have->to_group ||
         (rec->has_run ? rec->run : 0) < (have->has_run ? have->run : 0))) {
        snprintf(msg, len, "the pushed map's migration %llu does not follow this group's applied "
                 "record (groups or run)", (unsigned long long)id);
        return SHALE_EINVAL;
    }
    return 0;
}

void own_push(shaled_t *s, sreq_t *r)
{
    const Shale__MigPushRequest *q = (const Shale__MigPushRequest *)r->msg;
    char msg[512];
    if (q->map == NULL) {
        sreq_fail(r, SHALE_EINVAL, "MIG_PUSH without a map");
        return;
    }
    int rv = push_refusal(s, q->map, q->id, msg, sizeof(msg));
    if (rv != 0) {
        sreq_fail(r, rv, msg);
        return;
    }
    Shale__MigPushResponse resp = SHALE__MIG_PUSH_RESPONSE__INIT;
    if (s->own_map == NULL || q->map->epoch > s->own_map->epoch) {
        Shale__ClusterMap *m = cmap_copy(q->map);
        if (m == NULL) {
            sreq_fail(r, SHALE_ENOMEM, "out of memory copying the pushed map");
            return;
        }
        cmap_free(s->own_map);
        s->own_map = m;
        resp.adopted = 1;
        log_info("cluster map pushed", " epoch=%llu group=%llu migration=%llu",
                 (unsigned long long)m->epoch, (unsigned long long)s->cfg.group,
                 (unsigned long long)q->id);
    }
    resp.has_adopted = 1;
    resp.has_applied_epoch = 1;
    resp.applied_epoch = s->own->epoch;
    resp.has_leader = 1;
    resp.leader = raft_node_is_leader(s) != 0;
    sreq_reply(r, SHALE_MSG_MIG_PUSH_RESP, &resp.base); /* own_flush proposes at end of turn */
}

/* ---- Proposing and applying the ownership record ----------------------------*/

static void own_apply_cb(struct raft_apply *req, int status, void *result)
{
    (void)status;
    (void)result;
    shaled_t *s = req->data;
    s->own_proposing = 0;
}

void own_flush(shaled_t *s)
{
    if (!in_cluster(s) || s->own_map == NULL || s->own_proposing || s->stopping ||
        !raft_node_is_leader(s))
        return;
    if (s->own_hurry && !s->own_watching)
        watch(s);
    if (s->own != NULL && s->own->epoch >= s->own_map->epoch)
        return;
    if (s->own != NULL && s->own_map->slots != s->own->slots) {
        if (!s->own_slots_warned)
            log_error("cluster map has a different slot count than this group's ownership record; "
                      "ignoring it", " map_slots=%u slots=%u", s->own_map->slots,
                      s->own->slots);
        s->own_slots_warned = 1;
        return;
    }
    size_t nbytes = (s->own_map->slots + 7) / 8;
    uint8_t *bits = malloc(nbytes);
    if (bits == NULL)
        return;
    Shale__SlotOwnership o = SHALE__SLOT_OWNERSHIP__INIT;
    o.epoch = s->own_map->epoch;
    o.group_id = s->cfg.group;
    o.slots = s->own_map->slots;
    cmap_owned_bitmap(s->own_map, s->cfg.group, bits);
    o.has_owned = 1;
    o.owned.data = bits;
    o.owned.len = nbytes;
    Shale__Migration *migs[64];
    Shale__Migration **mp = migs;
    size_t nm = 0;
    if (s->own_map->n_migrations > 64) {
        mp = malloc(s->own_map->n_migrations * sizeof(*mp));
        if (mp == NULL) {
            free(bits);
            return;
        }
    }
    for (size_t i = 0; i < s->own_map->n_migrations; i++) {
        Shale__Migration *m = s->own_map->migrations[i];
        if (m->from_group == s->cfg.group || m->to_group == s->cfg.group)
            mp[nm++] = m;
    }
    o.n_migrations = nm;
    o.migrations = mp;
    Shale__Command cmd = SHALE__COMMAND__INIT;
    cmd.timestamp_ms = clock_stamp_ms(s);
    cmd.ownership = &o;
    struct raft_buffer buf;
    int rv = raft_cmd_encode(&cmd, &buf);
    free(bits);
    if (mp != migs)
        free(mp);
    if (rv != 0)
        return;
    s->own_apply.data = s;
    rv = raft_apply(&s->raft, &s->own_apply, &buf, 1, own_apply_cb);
    if (rv != 0) {
        if (rv == RAFT_NOTLEADER)
            raft_free(buf.base);
        return;
    }
    s->own_proposing = 1;
    s->last_proposal_ms = cmd.timestamp_ms;
}

/* The data a new record o makes obsolete, deleted before the record is
 * stored (deletes do not move the applied index, so a crash in between
 * re-applies the entry and deletes again):
 *  - a slot this node held (owned or importing) that o neither owns nor
 *    imports: its data, sessions and changelog (after a flip: the source;
 *    after an abort: the target's partial import);
 *  - a slot o starts importing under a migration the old record did not
 *    have: leftovers of an earlier attempt, so the import starts clean;
 *  - a slot still owned whose changelog o stops: the changelog (abort). */
static int own_transition(shaled_t *s, const Shale__SlotOwnership *o, char *err)
{
    uint8_t *nst = malloc(o->slots);
    if (nst == NULL) {
        snprintf(err, STORE_ERRLEN, "out of memory applying slot ownership");
        return SHALE_ENOMEM;
    }
    derive_state(o, s->cfg.group, nst);
    const Shale__SlotOwnership *old = s->own;
    int rv = 0;
    uint32_t dropped = 0, cleared = 0;
    for (uint32_t sl = 0; sl < o->slots && rv == 0; sl++) {
        int was = old != NULL && s->own_state != NULL && sl < old->slots ? s->own_state[sl]
                                                                        : OWN_NONE;
        int now = nst[sl];
        if (was != OWN_NONE && now == OWN_NONE) {
            rv = store_delete_slot(s->store, (uint16_t)sl, 0, err);
            dropped++;
        } else if (now == OWN_IMPORTING) {
            /* The migration importing it now: new to this record? */
            int fresh = 1;
            for (size_t i = 0; old != NULL && i < o->n_migrations && fresh; i++) {
                const Shale__Migration *m = o->migrations[i];
                if (m->to_group != s->cfg.group || !own_mig_has_slot(m, sl))
                    continue;
                int out;
                const Shale__Migration *pm = own_migration(s, m->id, &out);
                fresh = pm == NULL || !own_mig_has_slot(pm, sl);
            }
            if (fresh && was != OWN_SERVE) {
                rv = store_delete_slot(s->store, (uint16_t)sl, 0, err);
                cleared++;
            }
        } else if ((now == OWN_SERVE || now == OWN_FENCED) &&
                   store_changelog_on(s->store, (uint16_t)sl) &&
                   !logs_slot(o, s->cfg.group, nst, sl)) {
            rv = store_delete_changelog(s->store, (uint16_t)sl, err);
        }
    }
    free(nst);
    if (dropped > 0 || cleared > 0)
        log_info("slot data deleted by an ownership change", " epoch=%llu dropped=%u "
                 "cleared_for_import=%u", (unsigned long long)o->epoch, dropped, cleared);
    return rv;
}

int own_apply(shaled_t *s, uint64_t index, const Shale__SlotOwnership *o, char *err)
{
    if (index <= store_applied_index(s->store))
        return 0;
    /* The first record fixes the slot count (data is refused until then, so
     * nothing was stored under another one); later ones must agree. */
    if (!in_cluster(s) || o->group_id != s->cfg.group || o->slots == 0 ||
        o->owned.len < (o->slots + 7) / 8 ||
        (s->own != NULL && (o->epoch <= s->own->epoch || o->slots != s->own->slots)))
        return store_apply_noop(s->store, index, err);
    int rv = own_transition(s, o, err);
    if (rv != 0)
        return rv;
    size_t len = shale__slot_ownership__get_packed_size(o);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        snprintf(err, STORE_ERRLEN, "out of memory storing slot ownership");
        return SHALE_ENOMEM;
    }
    shale__slot_ownership__pack(o, buf);
    rv = store_apply_meta(s->store, index, META_OWNERSHIP, buf, len, err);
    Shale__SlotOwnership *c = rv == 0 ? shale__slot_ownership__unpack(NULL, len, buf) : NULL;
    free(buf);
    if (rv != 0)
        return rv;
    if (c == NULL) {
        snprintf(err, STORE_ERRLEN, "out of memory storing slot ownership");
        return SHALE_ENOMEM;
    }
    uint32_t n = count_owned(c);
    s->cfg.slots = c->slots;
    set_own(s, c);
    s->own_count = n;
    if (s->own_state == NULL) {
        snprintf(err, STORE_ERRLEN, "out of memory applying slot ownership");
        return SHALE_ENOMEM;
    }
    log_info("slot ownership applied", " epoch=%llu group=%llu slots_owned=%u migrations=%zu",
             (unsigned long long)c->epoch, (unsigned long long)c->group_id, n,
             c->n_migrations);
    return 0;
}

uint32_t own_count(const shaled_t *s)
{
    return s->own != NULL ? s->own_count : 0;
}

void own_stop(shaled_t *s)
{
    if (s->own_timer.loop != NULL && !uv_is_closing((uv_handle_t *)&s->own_timer)) {
        uv_timer_stop(&s->own_timer);
        uv_close((uv_handle_t *)&s->own_timer, NULL);
    }
    if (s->meta_client != NULL) {
        shale_client_close(s->meta_client, NULL);
        s->meta_client = NULL;
    }
}

void own_free(shaled_t *s)
{
    set_own(s, NULL);
    cmap_free(s->own_map);
    s->own_map = NULL;
}
