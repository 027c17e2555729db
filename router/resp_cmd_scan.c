/* RESP SCAN and KEYS (docs/resp.md, "SCAN and KEYS"): the cluster walk,
 * slot by slot in key order, one native SCAN page at a time, from a
 * (slot, last key) position a numeric cursor names (resp_keyscan.c keeps
 * the cursors and the glob).
 *
 * Never returns a key twice for one walk and never keeps a position past
 * its cursor's life. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "resp_int.h"

/* ---- SCAN and KEYS ------------------------------------------------------------------------*/

/* The cluster walk of SCAN / KEYS: the native SCAN of one slot page at a
 * time (docs/consistency.md, "Scans"), from (slot, after) on. A MATCH's
 * literal prefix goes to the nodes (each slot is in key order, so they
 * read only that range); a prefix with a hash tag is one slot; the rest
 * of the pattern is matched here. */
#define SCAN_PAGE_MAX 1000        /* a node's page cap */
#define SCAN_SLOTS_PER_CALL 256   /* SCAN: slots one call may walk */
#define SCAN_CURSORS 16384        /* cursors a router keeps... */
#define SCAN_CURSOR_TTL_MS 600000 /* ...each for 10 minutes */

typedef struct scan_st {
    int keys_cmd; /* KEYS: the whole walk in one reply, no cursor */
    char *pat;    /* MATCH (NULL: every key) */
    size_t plen, prefix_len;
    int tagged; /* the prefix names one slot */
    int none;   /* TYPE other than string: nothing matches */
    long long count;
    uint32_t slot, nslots, walked;
    char *after;
    size_t alen;
    long long examined;
    char **keys;
    size_t *klen, nkeys, cap;
} scan_st_t;

void rr_scan_free(scan_st_t *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->nkeys; i++)
        free(st->keys[i]);
    free(st->keys);
    free(st->klen);
    free(st->pat);
    free(st->after);
    free(st);
}

static int scan_keep(scan_st_t *st, const uint8_t *k, size_t n)
{
    if (st->nkeys == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        char **nk = realloc(st->keys, cap * sizeof(*nk));
        if (nk == NULL)
            return -1;
        st->keys = nk;
        size_t *nl = realloc(st->klen, cap * sizeof(*nl));
        if (nl == NULL)
            return -1;
        st->klen = nl;
        st->cap = cap;
    }
    char *c = malloc(n ? n : 1);
    if (c == NULL)
        return -1;
    memcpy(c, k, n);
    st->keys[st->nkeys] = c;
    st->klen[st->nkeys++] = n;
    return 0;
}

static int scan_set_after(scan_st_t *st, const uint8_t *k, size_t n)
{
    free(st->after);
    st->after = NULL;
    st->alen = 0;
    if (n == 0)
        return 0;
    st->after = malloc(n);
    if (st->after == NULL)
        return -1;
    memcpy(st->after, k, n);
    st->alen = n;
    return 0;
}

static int scan_send(rcmd_t *cm)
{
    scan_st_t *st = cm->scan;
    Shale__ScanRequest q = SHALE__SCAN_REQUEST__INIT;
    Shale__ReadOptions ro;
    rr_read_opts(cm->s, &ro);
    q.slot = st->slot;
    if (st->alen > 0) {
        q.has_start_after = 1;
        q.start_after = rr_bin(st->after, st->alen);
    }
    if (st->prefix_len > 0) {
        q.has_prefix = 1;
        q.prefix = rr_bin(st->pat, st->prefix_len);
    }
    long long want = st->keys_cmd ? SCAN_PAGE_MAX : st->count - st->examined;
    q.has_limit = 1;
    q.limit = (uint32_t)(want < 1 ? 1 : want > SCAN_PAGE_MAX ? SCAN_PAGE_MAX : want);
    q.has_keys_only = 1;
    q.keys_only = 1;
    q.read = &ro;
    return rr_send_round(cm, SHALE_MSG_SCAN_REQ, &q.base);
}

static void scan_reply(rcmd_t *cm)
{
    scan_st_t *st = cm->scan;
    if (!st->keys_cmd) {
        char cur[32] = "0";
        if (st->slot < st->nslots) {
            rt_router_t *r = cm->s->r;
            uint64_t id =
                rk_cursor_put(&r->resp_cursors, st->slot, st->after, st->alen, uv_now(r->loop));
            if (id == 0) {
                resp_add_error(&cm->out, "ERR out of memory");
                return;
            }
            snprintf(cur, sizeof(cur), "%llu", (unsigned long long)id);
        }
        resp_add_array(&cm->out, 2);
        resp_add_bulk(&cm->out, cur, strlen(cur));
    }
    resp_add_array(&cm->out, st->nkeys);
    for (size_t i = 0; i < st->nkeys; i++)
        resp_add_bulk(&cm->out, st->keys[i], st->klen[i]);
}

static void fin_scan(rcmd_t *cm)
{
    scan_st_t *st = cm->scan;
    ProtobufCMessage *m;
    if (rr_sub_answer(cm, 0, SHALE_MSG_SCAN_RESP, &m) != 0)
        return;
    const Shale__ScanResponse *g = (const Shale__ScanResponse *)m;
    for (size_t i = 0; i < g->n_items; i++) {
        const ProtobufCBinaryData *k = &g->items[i]->key;
        st->examined++;
        if (st->none ||
            (st->pat != NULL && !rk_glob_match(st->pat, st->plen, (const char *)k->data, k->len)))
            continue;
        uint64_t keys_max = cm->s->r->cfg.resp_keys_max;
        if (st->keys_cmd && st->nkeys >= keys_max) {
            resp_add_errorf(&cm->out,
                            "ERR KEYS would return more than %llu keys: use SCAN (docs/resp.md)",
                            (unsigned long long)keys_max);
            return;
        }
        if (scan_keep(st, k->data, k->len) != 0) {
            resp_add_error(&cm->out, "ERR out of memory");
            return;
        }
    }
    if (g->has_slots && g->slots < st->nslots)
        st->nslots = g->slots;
    int rv;
    if (g->more && g->n_items > 0) {
        const ProtobufCBinaryData *last = &g->items[g->n_items - 1]->key;
        rv = scan_set_after(st, last->data, last->len);
    } else {
        rv = scan_set_after(st, NULL, 0);
        st->slot = st->tagged ? st->nslots : st->slot + 1;
    }
    if (rv != 0) {
        resp_add_error(&cm->out, "ERR out of memory");
        return;
    }
    st->walked++;
    if (st->slot < st->nslots &&
        (st->keys_cmd || (st->examined < st->count && st->walked < SCAN_SLOTS_PER_CALL))) {
        scan_send(cm);
        return;
    }
    scan_reply(cm);
}

/* SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]; KEYS pattern. */
int rr_c_scan(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    rt_router_t *r = s->r;
    scan_st_t *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return -1;
    cm->scan = st;
    st->count = 10;
    const char *pat = NULL;
    size_t plen = 0;
    uint64_t cursor = 0;
    if (rr_cmd_is(cm, "keys")) {
        st->keys_cmd = 1;
        pat = argv[1];
        plen = len[1];
    } else {
        long long v;
        if (!resp_string2ll(argv[1], len[1], &v) || v < 0) {
            resp_add_error(&cm->out, "ERR invalid cursor");
            return 0;
        }
        cursor = (uint64_t)v;
        for (size_t i = 2; i < argc; i += 2) {
            if (i + 1 >= argc) {
                resp_add_error(&cm->out, "ERR syntax error");
                return 0;
            }
            if (rr_arg_is(argv[i], len[i], "count")) {
                if (!resp_string2ll(argv[i + 1], len[i + 1], &st->count)) {
                    resp_add_error(&cm->out, "ERR value is not an integer or out of range");
                    return 0;
                }
                if (st->count < 1) {
                    resp_add_error(&cm->out, "ERR syntax error");
                    return 0;
                }
            } else if (rr_arg_is(argv[i], len[i], "match")) {
                pat = argv[i + 1];
                plen = len[i + 1];
            } else if (rr_arg_is(argv[i], len[i], "type")) {
                st->none = !rr_arg_is(argv[i + 1], len[i + 1], "string");
            } else {
                resp_add_error(&cm->out, "ERR syntax error");
                return 0;
            }
        }
    }
    if (r->route.map == NULL || r->route.slots == 0) {
        rr_no_map(s, cm);
        return 0;
    }
    st->nslots = r->route.slots;
    if (pat != NULL && !(plen == 1 && pat[0] == '*')) {
        st->pat = malloc(plen ? plen : 1);
        if (st->pat == NULL)
            return -1;
        memcpy(st->pat, pat, plen);
        st->plen = plen;
        st->prefix_len = rk_glob_prefix(pat, plen);
        st->tagged = rk_prefix_tagged(pat, st->prefix_len);
    }
    if (cursor == 0) {
        st->slot = st->tagged ? shale_key_slot(st->pat, st->prefix_len, st->nslots) : 0;
    } else {
        if (r->resp_cursors.pos == NULL) {
            resp_add_error(&cm->out, "ERR invalid cursor");
            return 0;
        }
        const char *after;
        size_t alen;
        if (rk_cursor_get(&r->resp_cursors, cursor, uv_now(r->loop), &st->slot, &after, &alen) !=
            0) {
            resp_add_error(&cm->out, "ERR invalid cursor");
            return 0;
        }
        if (scan_set_after(st, (const uint8_t *)after, alen) != 0)
            return -1;
    }
    if (!st->keys_cmd && r->resp_cursors.pos == NULL) {
        uint64_t base;
        if (uv_random(NULL, NULL, &base, sizeof(base), 0, NULL) != 0)
            base = uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32);
        if (rk_cursors_init(&r->resp_cursors, SCAN_CURSORS, SCAN_CURSOR_TTL_MS, base) != 0)
            return -1;
    }
    if (st->slot >= st->nslots || st->none) {
        st->slot = st->nslots; /* done (TYPE other than string: no key is) */
        scan_reply(cm);
        return 0;
    }
    cm->fin = fin_scan;
    return scan_send(cm);
}
