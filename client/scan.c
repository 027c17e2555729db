/* libshale: ordered scans (shale_scan). The walk over the slots lives here:
 * each step is one SCAN (frame 24) of one slot, sent with shale_call, which
 * a router forwards to the slot's owner (docs/protocol.md, "Scans"). The
 * cursor is a hex-encoded ScanCursor (proto/wire.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "keyhash.h"

void shale_scan_result_free(shale_scan_result_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->items[i].key);
        free(r->items[i].value);
    }
    free(r->items);
    free(r->cursor);
    memset(r, 0, sizeof(*r));
}

static int fail(shale_client_t *c, shale_scan_result_t *out, int rv, const char *msg)
{
    shale_scan_result_free(out);
    if (c != NULL && msg != NULL)
        snprintf(c->errmsg, sizeof(c->errmsg), "%s", msg);
    return rv;
}

/* Append one node page to out; *bytes grows by what it carried. */
static int take(shale_scan_result_t *out, size_t *cap, const Shale__ScanResponse *resp,
                size_t *bytes)
{
    for (size_t i = 0; i < resp->n_items; i++) {
        const Shale__KeyValue *kv = resp->items[i];
        if (out->n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 64;
            shale_scan_item_t *p = realloc(out->items, ncap * sizeof(*p));
            if (p == NULL)
                return SHALE_ENOMEM;
            out->items = p;
            *cap = ncap;
        }
        shale_scan_item_t *it = &out->items[out->n];
        memset(it, 0, sizeof(*it));
        it->key = malloc(kv->key.len ? kv->key.len : 1);
        if (it->key == NULL)
            return SHALE_ENOMEM;
        if (kv->key.len > 0)
            memcpy(it->key, kv->key.data, kv->key.len);
        it->klen = kv->key.len;
        if (kv->has_value) {
            it->value = malloc(kv->value.len ? kv->value.len : 1);
            if (it->value == NULL) {
                free(it->key);
                return SHALE_ENOMEM;
            }
            if (kv->value.len > 0)
                memcpy(it->value, kv->value.data, kv->value.len);
            it->vlen = kv->value.len;
        }
        it->version = kv->has_version ? kv->version : 0;
        out->n++;
        *bytes += it->klen + it->vlen;
    }
    return SHALE_OK;
}

int shale_scan(shale_client_t *c, const char *cursor, const shale_scan_opts_t *opts,
               shale_scan_result_t *out)
{
    char msg[SHALE_ERRMSG_LEN];
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (c == NULL || out == NULL)
        return SHALE_EINVAL;
    shale_scan_opts_t o = {0};
    if (opts != NULL)
        o = *opts;
    if (o.plen > 0 && o.prefix == NULL)
        return fail(c, out, SHALE_EINVAL, "scan prefix is NULL with a length");
    const uint8_t *prefix = o.plen > 0 ? (const uint8_t *)o.prefix : NULL;
    uint32_t limit = wire_scan_limit(o.limit);
    uint32_t slot = 0, tslot = 0;
    uint8_t *after = NULL;
    size_t alen = 0;
    int tagged = wire_prefix_slot(prefix, o.plen, 65536, &tslot);
    (void)tslot; /* its slot depends on S: computed below */
    if (cursor != NULL && cursor[0] != '\0') {
        int rv = wire_cursor_decode((const uint8_t *)cursor, strlen(cursor), 65536, prefix,
                                    o.plen, &slot, &after, &alen, msg, sizeof(msg));
        if (rv != 0)
            return fail(c, out, rv, msg);
    }
    uint32_t nslots = 0; /* learnt from the first answer */
    size_t cap = 0, bytes = 0;
    int done = 0, rv = SHALE_OK;
    Shale__ReadOptions ro = SHALE__READ_OPTIONS__INIT;
    if (o.read != NULL) {
        ro.has_consistency = 1;
        ro.consistency = o.read->consistency == SHALE_STALE ? SHALE__CONSISTENCY__STALE
                                                            : SHALE__CONSISTENCY__LINEARIZABLE;
        ro.has_max_staleness_ms = o.read->consistency == SHALE_STALE;
        ro.max_staleness_ms = o.read->max_staleness_ms;
    }
    /* A tagged prefix without a cursor: its slot under the slot count the
     * client last heard of (the default 4096 before any SCAN answer) is a
     * guess until an answer names the cluster's count S (a guess >= S is
     * refused as INVALID: then slot 0 is asked to learn S). */
    int guess = 0;
    if (tagged && (cursor == NULL || cursor[0] == '\0')) {
        slot = shale_key_slot(prefix, o.plen, c->scan_slots ? c->scan_slots : SHALE_DEFAULT_SLOTS);
        guess = 1;
    }
    for (unsigned visited = 0;;) {
        uint32_t want = slot;
        Shale__ScanRequest q = SHALE__SCAN_REQUEST__INIT;
        q.slot = want;
        q.has_start_after = alen > 0;
        q.start_after.data = after;
        q.start_after.len = alen;
        q.has_prefix = o.plen > 0;
        q.prefix.data = (uint8_t *)prefix;
        q.prefix.len = o.plen;
        q.has_limit = 1;
        q.limit = limit - (uint32_t)out->n;
        q.has_keys_only = o.keys_only != 0;
        q.keys_only = o.keys_only != 0;
        q.read = o.read != NULL ? &ro : NULL;
        size_t plen = protobuf_c_message_get_packed_size(&q.base);
        uint8_t *payload = malloc(plen ? plen : 1);
        if (payload == NULL) {
            rv = SHALE_ENOMEM;
            break;
        }
        protobuf_c_message_pack(&q.base, payload);
        uint8_t *resp = NULL;
        size_t rlen = 0;
        rv = shale_call(c, SHALE_MSG_SCAN_REQ, SHALE_MSG_SCAN_RESP, payload, plen, &resp, &rlen,
                        msg, NULL);
        free(payload);
        if (rv == SHALE_EINVAL && guess == 1) {
            guess = 2; /* probe slot 0 */
            slot = 0;
            continue;
        }
        if (rv != SHALE_OK)
            break;
        Shale__ScanResponse *sr = shale__scan_response__unpack(NULL, rlen, resp);
        free(resp);
        if (sr == NULL) {
            rv = SHALE_EPROTO;
            snprintf(msg, sizeof(msg), "malformed SCAN_RESP");
            break;
        }
        uint32_t s_count = sr->has_slots && sr->slots > 0 ? sr->slots : SHALE_DEFAULT_SLOTS;
        c->scan_slots = s_count;
        if (guess) {
            guess = 0;
            uint32_t real = shale_key_slot(prefix, o.plen, s_count);
            if (want != real) {
                /* Another slot count: the tag's slot is another one. */
                shale__scan_response__free_unpacked(sr, NULL);
                nslots = s_count;
                slot = real;
                continue;
            }
        }
        nslots = s_count;
        rv = take(out, &cap, sr, &bytes);
        int more = sr->more;
        shale__scan_response__free_unpacked(sr, NULL);
        if (rv != SHALE_OK)
            break;
        if (more && out->n > 0) {
            /* Continue in this slot after the last key returned. */
            const shale_scan_item_t *last = &out->items[out->n - 1];
            uint8_t *na = malloc(last->klen ? last->klen : 1);
            if (na == NULL) {
                rv = SHALE_ENOMEM;
                break;
            }
            if (last->klen > 0)
                memcpy(na, last->key, last->klen);
            free(after);
            after = na;
            alen = last->klen;
            slot = want;
            break;
        }
        /* This slot is exhausted. */
        free(after);
        after = NULL;
        alen = 0;
        if (tagged || want + 1 >= nslots) {
            done = 1;
            break;
        }
        slot = want + 1;
        visited++;
        if (out->n >= limit || visited >= SHALE_SCAN_MAX_SLOTS_PER_PAGE ||
            bytes >= SHALE_SCAN_MAX_BYTES)
            break;
    }
    if (rv != SHALE_OK) {
        free(after);
        return fail(c, out, rv, msg);
    }
    if (!done) {
        out->cursor = wire_cursor_encode(slot, after, alen, prefix, o.plen, NULL);
        if (out->cursor == NULL) {
            free(after);
            return fail(c, out, SHALE_ENOMEM, "out of memory");
        }
    }
    free(after);
    return SHALE_OK;
}
