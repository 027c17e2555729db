/* WATCH on a node: the changes of one key, or of the keys under a hash-tag
 * prefix, from a revision on (docs/protocol.md, "Watch";
 * docs/consistency.md, "Watch").
 *
 * What this file owns:
 *  - the group's watch cache (watch_cache.h), fed from the apply path
 *    (raft_fsm.c calls watch_note_entry / watch_note_expired /
 *    watch_applied / watch_restored / watch_own_before / watch_own_after);
 *  - WATCH requests: any member answers from what it applied (a revision is
 *    the Raft index of the entry, the same on every member); a request with
 *    changes waiting is answered at once, else it waits (long-poll) until a
 *    matching change is applied or its wait_ms passes;
 *  - the slot rule: a watch is served while this group holds the slot
 *    (serving or fenced for a migration out); refused with WRONG_GROUP and
 *    the epoch otherwise, and a waiting watch whose slot left the group is
 *    answered WRONG_GROUP (revisions restart in the new group: re-read and
 *    watch from now). A slot that moved in has no history here before its
 *    flip: a resume from before it is COMPACTED.
 *
 * Rules: memory is bounded — the cache by --watch-cache-changes/-mb, the
 * waiting requests by WATCHERS_MAX, one answer by its max_events and
 * ANSWER_MAX_BYTES (whole revisions). A watcher that falls behind the cache
 * gets COMPACTED, never a gap; a slow reader holds nothing here between two
 * polls. Never proposes anything; never blocks the apply path beyond copying
 * the changes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyhash.h"
#include "log.h"
#include "server.h"
#include "wire.h"

#define WATCH_WAIT_MAX_MS 30000
#define WATCH_DEFAULT_EVENTS 1000
#define WATCHERS_MAX 10000
#define WATCH_SWEEP_MS 50

static uint64_t answer_max_bytes(const shaled_t *s)
{
    return s->cfg.max_frame / 2;
}

int watch_init(shaled_t *s, char *err, size_t errlen)
{
    q_init(&s->watchers);
    s->nwatchers = 0;
    if (wc_init(&s->wcache, (size_t)s->cfg.watch_cache_changes, (size_t)s->cfg.watch_cache_mb << 20,
                store_applied_index(s->store)) != 0) {
        snprintf(err, errlen, "out of memory for the watch cache");
        return -1;
    }
    return 0;
}

static int slot_held(const shaled_t *s, uint32_t slot)
{
    if (s->cfg.group == 0 || s->cfg.meta[0] == '\0')
        return 1; /* standalone: every slot */
    if (s->own == NULL)
        return 0;
    int st = own_slot_state(s, slot);
    return st == OWN_SERVE || st == OWN_FENCED;
}

static uint64_t own_epoch(const shaled_t *s)
{
    return s->own != NULL ? s->own->epoch : 0;
}

static void fail_moved(shaled_t *s, sreq_t *r, uint32_t slot)
{
    char msg[300];
    snprintf(msg, sizeof(msg),
             "slot %u is not held by group %llu at epoch %llu: a watch follows "
             "one group's revisions, which end here; re-read the keys and watch from now "
             "(revision 0) through the slot's new group",
             slot, (unsigned long long)s->cfg.group, (unsigned long long)own_epoch(s));
    sreq_fail_epoch(r, SHALE_EWRONGGROUP, msg, own_epoch(s));
}

/* Answer r when it has changes (or `force`): 1 answered, 0 still waiting. */
static int try_answer(shaled_t *s, sreq_t *r, int force)
{
    const Shale__WatchRequest *w = (const Shale__WatchRequest *)r->msg;
    wc_query_t q = {.key = w->key.data,
                    .klen = w->key.len,
                    .prefix = w->has_prefix && w->prefix,
                    .slot = r->slot,
                    .from = r->watch_from,
                    .max_events = w->has_max_events && w->max_events > 0 ? w->max_events
                                                                         : WATCH_DEFAULT_EVENTS,
                    .max_bytes = answer_max_bytes(s)};
    const wc_change_t **ch = NULL;
    size_t n = 0;
    uint64_t rev = 0;
    char msg[300];
    int rv = wc_collect(&s->wcache, &q, &ch, &n, &rev, msg, sizeof(msg));
    if (rv != 0) {
        sreq_fail(r, rv, rv == SHALE_ENOMEM ? "out of memory" : msg);
        return 1;
    }
    if (n == 0 && !slot_held(s, r->slot)) {
        fail_moved(s, r, r->slot);
        return 1;
    }
    if (n == 0 && !force) {
        free(ch);
        return 0;
    }
    Shale__WatchEvent *ev = calloc(n ? n : 1, sizeof(*ev));
    Shale__WatchEvent **evp = calloc(n ? n : 1, sizeof(*evp));
    if (ev == NULL || evp == NULL) {
        free(ev);
        free(evp);
        free(ch);
        sreq_fail(r, SHALE_ENOMEM, "out of memory");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        shale__watch_event__init(&ev[i]);
        ev[i].revision = ch[i]->revision;
        ev[i].kind = (Shale__WatchKind)ch[i]->kind;
        ev[i].key.data = ch[i]->data;
        ev[i].key.len = ch[i]->klen;
        if (ch[i]->kind == WC_PUT) {
            ev[i].has_value = 1;
            ev[i].value.data = ch[i]->data + ch[i]->klen;
            ev[i].value.len = ch[i]->vlen;
        }
        ev[i].has_version = 1;
        ev[i].version = ch[i]->version;
        evp[i] = &ev[i];
    }
    Shale__WatchResponse resp = SHALE__WATCH_RESPONSE__INIT;
    resp.n_events = n;
    resp.events = evp;
    resp.revision = rev;
    if (s->cfg.group != 0) {
        resp.has_group = 1;
        resp.group = s->cfg.group;
    }
    sreq_reply(r, SHALE_MSG_WATCH_RESP, &resp.base);
    free(ev);
    free(evp);
    free(ch);
    return 1;
}

static uint64_t deadline_us(const sreq_t *r)
{
    const Shale__WatchRequest *w = (const Shale__WatchRequest *)r->msg;
    uint64_t ms = w->has_wait_ms ? w->wait_ms : 0;
    if (ms > WATCH_WAIT_MAX_MS)
        ms = WATCH_WAIT_MAX_MS;
    return r->received_us + ms * 1000;
}

/* Whether the entry just applied changed slot (touched: up to
 * WATCH_TOUCHED_MAX distinct slots, else every slot counts as touched). */
static int touched(const shaled_t *s, uint32_t slot)
{
    if (s->watch_ntouched > WATCH_TOUCHED_MAX)
        return 1;
    for (int i = 0; i < s->watch_ntouched; i++)
        if (s->watch_touched[i] == slot)
            return 1;
    return 0;
}

/* Answer the waiting watches that now have changes, lost their slot, or
 * whose wait is over (all: every one, e.g. at shutdown). only_touched: the
 * apply path, where only watches of a slot the entry changed can have news
 * (the sweep looks at the rest). */
static void wake_ex(shaled_t *s, int all, int only_touched)
{
    uint64_t now = shaled_now_us();
    qnode_t batch;
    q_init(&batch);
    while (!q_empty(&s->watchers)) { /* answering may not touch the list */
        qnode_t *n = s->watchers.next;
        q_remove(n);
        q_push(&batch, n);
    }
    while (!q_empty(&batch)) {
        sreq_t *r = q_data(batch.next, sreq_t, link);
        q_remove(&r->link);
        if (only_touched && !touched(s, r->slot))
            q_push(&s->watchers, &r->link);
        else if (try_answer(s, r, all || now >= deadline_us(r)))
            s->nwatchers--;
        else
            q_push(&s->watchers, &r->link);
    }
}

static void wake(shaled_t *s, int all)
{
    wake_ex(s, all, 0);
}

static void on_sweep(uv_timer_t *t)
{
    wake(t->data, 0);
}

void watch_start(shaled_t *s)
{
    uv_timer_init(s->loop, &s->watch_sweep);
    s->watch_sweep.data = s;
    if (strcmp(s->cfg.mode, "meta") != 0)
        uv_timer_start(&s->watch_sweep, on_sweep, WATCH_SWEEP_MS, WATCH_SWEEP_MS);
}

void watch_stop(shaled_t *s)
{
    while (!q_empty(&s->watchers)) {
        sreq_t *r = q_data(s->watchers.next, sreq_t, link);
        q_remove(&r->link);
        s->nwatchers--;
        sreq_fail(r, SHALE_EUNAVAILABLE, "node is shutting down: resume the watch elsewhere");
    }
    if (s->watch_sweep.loop != NULL && !uv_is_closing((uv_handle_t *)&s->watch_sweep))
        uv_close((uv_handle_t *)&s->watch_sweep, NULL);
}

void watch_free(shaled_t *s)
{
    wc_free(&s->wcache);
}

void watch_request(shaled_t *s, sreq_t *r)
{
    const Shale__WatchRequest *w = (const Shale__WatchRequest *)r->msg;
    char msg[300];
    uint32_t S = (uint32_t)s->cfg.slots, slot = 0;
    int prefix = w->has_prefix && w->prefix;
    if (w->key.len == 0 || w->key.len > s->cfg.max_key) {
        snprintf(msg, sizeof(msg), "WATCH %s of %zu bytes (1..%llu)", prefix ? "prefix" : "key",
                 w->key.len, (unsigned long long)s->cfg.max_key);
        sreq_fail(r, w->key.len == 0 ? SHALE_EINVAL : SHALE_ETOOLARGE, msg);
        return;
    }
    if (prefix) {
        if (!wire_prefix_slot(w->key.data, w->key.len, S, &slot)) {
            sreq_fail(r, SHALE_EINVAL,
                      "a WATCH prefix must name a hash tag ({tag}...) so that "
                      "every key under it is in one slot");
            return;
        }
    } else {
        slot = shale_key_slot(w->key.data, w->key.len, S);
    }
    if (w->route != NULL && w->route->has_slot && w->route->slot != slot) {
        snprintf(msg, sizeof(msg), "route names slot %u but the watch is of slot %u",
                 w->route->slot, slot);
        sreq_fail(r, SHALE_EINVAL, msg);
        return;
    }
    r->slot = (uint16_t)slot;
    r->has_slot = 1;
    if (w->has_group && w->group != 0 && w->group != s->cfg.group) {
        snprintf(msg, sizeof(msg),
                 "this watch follows group %llu's revisions; this node is of "
                 "group %llu (the slot moved): re-read the keys and watch from now",
                 (unsigned long long)w->group, (unsigned long long)s->cfg.group);
        sreq_fail_epoch(r, SHALE_EWRONGGROUP, msg, own_epoch(s));
        return;
    }
    if (s->cfg.group != 0 && s->cfg.meta[0] != '\0' && s->own == NULL) {
        sreq_fail(r, SHALE_EUNAVAILABLE, "this group does not know its slots yet");
        return;
    }
    if (!slot_held(s, slot)) {
        fail_moved(s, r, slot);
        return;
    }
    r->watch_from =
        w->has_from_revision && w->from_revision > 0 ? w->from_revision : s->wcache.last + 1;
    if (try_answer(s, r, !w->has_wait_ms || w->wait_ms == 0))
        return;
    if (s->nwatchers >= WATCHERS_MAX) {
        sreq_fail(r, SHALE_EOVERLOAD, "too many watches waiting on this node");
        return;
    }
    q_push(&s->watchers, &r->link);
    s->nwatchers++;
}

/* ---- The apply path -------------------------------------------------------*/

static void note(shaled_t *s, uint64_t index, wc_kind_t kind, const uint8_t *key, size_t klen,
                 const uint8_t *value, size_t vlen, uint64_t version)
{
    uint32_t slot = shale_key_slot(key, klen, (uint32_t)s->cfg.slots);
    if (!touched(s, slot) && s->watch_ntouched <= WATCH_TOUCHED_MAX) {
        if (s->watch_ntouched < WATCH_TOUCHED_MAX)
            s->watch_touched[s->watch_ntouched] = slot;
        s->watch_ntouched++; /* past the max: every slot counts as touched */
    }
    if (wc_append(&s->wcache, index, slot, kind, key, klen, value, vlen, version) != 0)
        log_warn("watch cache: out of memory; resumes before this revision get COMPACTED",
                 " revision=%llu", (unsigned long long)index);
    s->watch_dirty = 1;
}

void watch_note_entry(shaled_t *s, uint64_t index, const store_request_t *reqs, size_t n)
{
    if (index <= s->wcache.last)
        return; /* a replay: already counted (or below the floor) */
    for (size_t i = 0; i < n; i++) {
        const store_request_t *q = &reqs[i];
        if (q->code != 0 || q->duplicate)
            continue;
        if (q->txn != NULL) {
            const store_txn_t *t = q->txn;
            const store_txn_op_t *ops = t->succeeded ? t->success : t->failure;
            size_t nops = t->succeeded ? t->nsuccess : t->nfailure;
            for (size_t j = 0; j < t->nresults && j < nops; j++) {
                const store_txn_result_t *res = &t->results[j];
                if (res->type == STORE_TXN_PUT)
                    note(s, index, WC_PUT, ops[j].key, ops[j].klen, ops[j].value, ops[j].vlen,
                         res->version);
                else if (res->type == STORE_TXN_ADD || res->type == STORE_TXN_APPEND ||
                         (res->type == STORE_TXN_EXPIRE && res->value != NULL))
                    note(s, index, WC_PUT, ops[j].key, ops[j].klen, res->value, res->vlen,
                         res->version);
                else if (res->type == STORE_TXN_DEL && res->found)
                    note(s, index, WC_DELETE, ops[j].key, ops[j].klen, NULL, 0, res->version);
            }
            continue;
        }
        for (size_t j = 0; j < q->nops; j++) {
            const store_op_t *op = &q->ops[j];
            const store_result_t *res = &q->results[j];
            if (res->code != 0)
                continue;
            switch (op->type) {
            case STORE_OP_PUT:
                note(s, index, WC_PUT, op->key, op->klen, op->value, op->vlen, res->version);
                break;
            case STORE_OP_DEL:
                if (res->existed)
                    note(s, index, WC_DELETE, op->key, op->klen, NULL, 0, res->version);
                break;
            case STORE_OP_CAS:
                if (!op->cas_delete)
                    note(s, index, WC_PUT, op->key, op->klen, op->value, op->vlen, res->version);
                else if (res->existed)
                    note(s, index, WC_DELETE, op->key, op->klen, NULL, 0, res->version);
                break;
            default:
                break;
            }
        }
    }
}

void watch_note_expired(shaled_t *s, uint64_t index, const uint8_t *key, size_t klen,
                        uint64_t version)
{
    if (index < s->wcache.last)
        return;
    note(s, index, WC_EXPIRE, key, klen, NULL, 0, version);
}

void watch_applied(shaled_t *s, uint64_t index)
{
    wc_advance(&s->wcache, index);
    if (s->watch_dirty) {
        s->watch_dirty = 0;
        wake_ex(s, 0, 1);
        s->watch_ntouched = 0;
    }
}

void watch_restored(shaled_t *s)
{
    wc_reset(&s->wcache, store_applied_index(s->store));
    wake(s, 0); /* waiting watches now behind the floor: COMPACTED */
}

uint8_t *watch_own_before(const shaled_t *s)
{
    if (s->own_state == NULL || s->cfg.slots == 0)
        return NULL;
    uint8_t *copy = malloc((size_t)s->cfg.slots);
    if (copy != NULL)
        memcpy(copy, s->own_state, (size_t)s->cfg.slots);
    return copy;
}

void watch_own_after(shaled_t *s, uint64_t index, uint8_t *before)
{
    uint32_t S = (uint32_t)s->cfg.slots;
    if (s->own_state != NULL) {
        for (uint32_t i = 0; i < S; i++) {
            int was = before != NULL ? before[i] : OWN_NONE;
            int now = s->own_state[i];
            int held_was = was == OWN_SERVE || was == OWN_FENCED;
            int held_now = now == OWN_SERVE || now == OWN_FENCED;
            if (held_now && !held_was && wc_slot_start(&s->wcache, S, i, index) != 0)
                wc_reset(&s->wcache, index); /* cannot record it: refuse every resume */
        }
    }
    free(before);
    wake(s, 0); /* waiting watches of a slot that left: WRONG_GROUP */
}
