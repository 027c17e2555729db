/* The leader's background deletion of keys whose TTL ran out.
 *
 * Owns the expire timer and the one EXPIRE entry it may have in flight.
 * Every EXPIRE_TICK_MS the leader reads up to EXPIRE_MAX_KEYS entries of the
 * expiry index that are due by its own clock (store_expire_due: one bounded
 * range scan) and proposes them as one entry (Command.expire) stamped with
 * that same clock reading, so at apply the log clock is at least every
 * listed expires_at. Apply (raft_fsm.c, store_apply_expire) deletes a row
 * only if it still carries the listed expires_at: a key re-put meanwhile is
 * left alone. At most one EXPIRE entry is in flight; when one was full the
 * next tick comes sooner (EXPIRE_HURRY_MS), so a backlog drains at about
 * EXPIRE_MAX_KEYS per round trip without starving client writes.
 *
 * Reads never wait for this: an expired row is absent at the log clock
 * whether or not it was deleted (store.h, "Expiry"). This file never reads
 * a member's clock to decide what a read sees, and never calls raft_apply
 * from a Raft callback (FACTS). */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"

#define EXPIRE_TICK_MS 500
#define EXPIRE_HURRY_MS 10
#define EXPIRE_MAX_KEYS 256

static void expire_tick(uv_timer_t *t);

static void expire_apply_cb(struct raft_apply *req, int status, void *result)
{
    (void)status;
    (void)result;
    shaled_t *s = req->data;
    s->expire_inflight = 0;
    if (s->expire_full && !s->stopping && !uv_is_closing((uv_handle_t *)&s->expire_timer))
        uv_timer_start(&s->expire_timer, expire_tick, EXPIRE_HURRY_MS, EXPIRE_TICK_MS);
}

static void expire_tick(uv_timer_t *t)
{
    shaled_t *s = t->data;
    if (s->stopping || s->storage_failed || s->expire_inflight || !raft_node_is_leader(s) ||
        s->ninflight >= s->cfg.inflight_entries)
        return;
    uint64_t now = clock_stamp_ms(s);
    store_expire_key_t *keys = NULL;
    size_t n = 0;
    char err[STORE_ERRLEN];
    if (store_expire_due(s->store, now, EXPIRE_MAX_KEYS, &keys, &n, err) != 0) {
        log_warn("cannot read the expiry index", " err=\"%s\"", err);
        return;
    }
    if (n == 0)
        return;
    Shale__ExpireKey *ks = calloc(n, sizeof(*ks));
    Shale__ExpireKey **ptrs = calloc(n, sizeof(*ptrs));
    int rv = SHALE_ENOMEM;
    struct raft_buffer buf;
    if (ks != NULL && ptrs != NULL) {
        for (size_t i = 0; i < n; i++) {
            shale__expire_key__init(&ks[i]);
            ks[i].slot = keys[i].slot;
            ks[i].key.data = keys[i].key;
            ks[i].key.len = keys[i].klen;
            ks[i].expires_at_ms = keys[i].expires_at;
            ptrs[i] = &ks[i];
        }
        Shale__ExpireList list = SHALE__EXPIRE_LIST__INIT;
        list.n_keys = n;
        list.keys = ptrs;
        Shale__Command cmd = SHALE__COMMAND__INIT;
        cmd.timestamp_ms = now;
        cmd.expire = &list;
        rv = raft_cmd_encode(&cmd, &buf);
    }
    free(ks);
    free(ptrs);
    store_expire_keys_free(keys, n);
    if (rv != 0)
        return;
    s->expire_req.data = s;
    rv = raft_apply(&s->raft, &s->expire_req, &buf, 1, expire_apply_cb);
    if (rv != 0) {
        if (rv == RAFT_NOTLEADER)
            raft_free(buf.base); /* as propose.c: kept only when refused up front */
        log_debug("expire entry refused", " err=%s", raft_strerror(rv));
        return;
    }
    s->expire_inflight = 1;
    s->expire_full = n == EXPIRE_MAX_KEYS;
    s->last_proposal_ms = now;
    if (s->expire_full)
        log_debug("expire entry full: more keys are due", " keys=%zu", n);
}

int expire_start(shaled_t *s)
{
    s->expire_inflight = 0;
    s->expire_full = 0;
    uv_timer_init(s->loop, &s->expire_timer);
    s->expire_timer.data = s;
    return uv_timer_start(&s->expire_timer, expire_tick, EXPIRE_TICK_MS, EXPIRE_TICK_MS);
}

void expire_stop(shaled_t *s)
{
    uv_timer_stop(&s->expire_timer);
    if (!uv_is_closing((uv_handle_t *)&s->expire_timer))
        uv_close((uv_handle_t *)&s->expire_timer, NULL);
}
