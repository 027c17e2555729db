/* Frame header layout and a streaming, allocation-bounded decoder.
 *
 * The decoder never trusts a length before checking it against max_frame,
 * and grows its payload buffer only to the announced (checked) size. A bad
 * header poisons the decoder: a stream that lost framing cannot be resynced,
 * so the owner must close the connection. */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

#include "shale_errors.h"

static const char *const type_names[SHALE_MSG_MAX_ + 1] = {
    [SHALE_MSG_HELLO] = "HELLO",
    [SHALE_MSG_HELLO_REPLY] = "HELLO_REPLY",
    [SHALE_MSG_ERROR] = "ERROR",
    [SHALE_MSG_GET_REQ] = "GET",
    [SHALE_MSG_GET_RESP] = "GET_RESP",
    [SHALE_MSG_PUT_REQ] = "PUT",
    [SHALE_MSG_PUT_RESP] = "PUT_RESP",
    [SHALE_MSG_DEL_REQ] = "DELETE",
    [SHALE_MSG_DEL_RESP] = "DELETE_RESP",
    [SHALE_MSG_CAS_REQ] = "CAS",
    [SHALE_MSG_CAS_RESP] = "CAS_RESP",
    [SHALE_MSG_MGET_REQ] = "MGET",
    [SHALE_MSG_MGET_RESP] = "MGET_RESP",
    [SHALE_MSG_MPUT_REQ] = "MPUT",
    [SHALE_MSG_MPUT_RESP] = "MPUT_RESP",
    [SHALE_MSG_TXN_REQ] = "TXN",
    [SHALE_MSG_TXN_RESP] = "TXN_RESP",
    [SHALE_MSG_SCAN_REQ] = "SCAN",
    [SHALE_MSG_SCAN_RESP] = "SCAN_RESP",
    [SHALE_MSG_WATCH_REQ] = "WATCH",
    [SHALE_MSG_WATCH_RESP] = "WATCH_RESP",
    [SHALE_MSG_STATUS_REQ] = "STATUS",
    [SHALE_MSG_STATUS_RESP] = "STATUS_RESP",
    [SHALE_MSG_CLOCK_REQ] = "CLOCK",
    [SHALE_MSG_CLOCK_RESP] = "CLOCK_RESP",
    [SHALE_MSG_MEMBER_ADD_REQ] = "MEMBER_ADD",
    [SHALE_MSG_ADMIN_RESP] = "ADMIN_RESP",
    [SHALE_MSG_MEMBER_REMOVE_REQ] = "MEMBER_REMOVE",
    [SHALE_MSG_LEADER_TRANSFER_REQ] = "LEADER_TRANSFER",
    [SHALE_MSG_MAP_GET_REQ] = "MAP_GET",
    [SHALE_MSG_MAP_RESP] = "MAP_RESP",
    [SHALE_MSG_MAP_CAS_REQ] = "MAP_CAS",
    [SHALE_MSG_USER_CHANGE_REQ] = "USER_CHANGE",
    [SHALE_MSG_USER_CHANGE_RESP] = "USER_CHANGE_RESP",
    [SHALE_MSG_USER_LIST_REQ] = "USER_LIST",
    [SHALE_MSG_USER_LIST_RESP] = "USER_LIST_RESP",
    [SHALE_MSG_SNAP_FETCH_REQ] = "SNAP_FETCH",
    [SHALE_MSG_SNAP_CHUNK] = "SNAP_CHUNK",
    [SHALE_MSG_MIG_EXPORT_REQ] = "MIG_EXPORT",
    [SHALE_MSG_MIG_BATCH] = "MIG_BATCH",
    [SHALE_MSG_CHECK_REQ] = "CHECK",
    [SHALE_MSG_CHECK_RESP] = "CHECK_RESP",
    [SHALE_MSG_MIG_IMPORT_REQ] = "MIG_IMPORT",
    [SHALE_MSG_MIG_IMPORT_RESP] = "MIG_IMPORT_RESP",
    [SHALE_MSG_MIG_PUSH_REQ] = "MIG_PUSH",
    [SHALE_MSG_MIG_PUSH_RESP] = "MIG_PUSH_RESP",
};

const char *frame_type_name(uint16_t type)
{
    if (type > SHALE_MSG_MAX_ || type_names[type] == NULL)
        return "?";
    return type_names[type];
}

int frame_type_known(uint16_t type)
{
    return type <= SHALE_MSG_MAX_ && type_names[type] != NULL;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

void frame_hdr_write(uint8_t out[FRAME_HEADER_SIZE], const frame_hdr_t *h)
{
    put32(out, h->len);
    out[4] = FRAME_MAGIC;
    out[5] = FRAME_VERSION;
    out[6] = (uint8_t)(h->type >> 8);
    out[7] = (uint8_t)h->type;
    put32(out + 8, (uint32_t)(h->id >> 32));
    put32(out + 12, (uint32_t)h->id);
}

int frame_hdr_parse(const uint8_t in[FRAME_HEADER_SIZE], uint32_t max_frame,
                    frame_hdr_t *h)
{
    if (in[4] != FRAME_MAGIC || in[5] != FRAME_VERSION)
        return SHALE_EPROTO;
    h->len = get32(in);
    h->type = (uint16_t)((in[6] << 8) | in[7]);
    h->id = ((uint64_t)get32(in + 8) << 32) | get32(in + 12);
    if (h->len > max_frame)
        return SHALE_ETOOLARGE;
    return 0;
}

void frame_decoder_init(frame_decoder_t *d, uint32_t max_frame)
{
    memset(d, 0, sizeof(*d));
    d->max_frame = max_frame ? max_frame : FRAME_DEFAULT_MAX;
}

void frame_decoder_free(frame_decoder_t *d)
{
    free(d->buf);
    d->buf = NULL;
    d->buf_cap = 0;
    free(d->backlog);
    d->backlog = NULL;
    d->backlog_len = 0;
}

size_t frame_decoder_backlog(const frame_decoder_t *d)
{
    return d->backlog_len;
}

/* After cb asked to pause: keep the n bytes not yet decoded. data may point
 * into the current backlog, so copy before releasing it. */
static int keep_backlog(frame_decoder_t *d, const uint8_t *data, size_t n)
{
    uint8_t *nb = NULL;
    if (n > 0) {
        nb = malloc(n);
        if (nb == NULL) {
            d->error = SHALE_ENOMEM;
            return SHALE_ENOMEM;
        }
        memcpy(nb, data, n);
    }
    free(d->backlog);
    d->backlog = nb;
    d->backlog_len = n;
    return FRAME_PAUSE;
}

static int decode(frame_decoder_t *d, const uint8_t *data, size_t n,
                  frame_cb cb, void *ud)
{
    while (n > 0) {
        if (d->hdr_have < FRAME_HEADER_SIZE) {
            size_t take = FRAME_HEADER_SIZE - d->hdr_have;
            if (take > n)
                take = n;
            memcpy(d->hdr + d->hdr_have, data, take);
            d->hdr_have += take;
            data += take;
            n -= take;
            if (d->hdr_have < FRAME_HEADER_SIZE)
                break;
            int rv = frame_hdr_parse(d->hdr, d->max_frame, &d->cur);
            if (rv != 0) {
                d->error = rv;
                return rv;
            }
            d->have = 0;
            /* Fast path: the whole payload is already in this read. */
            if (n >= d->cur.len) {
                rv = cb(ud, &d->cur, data);
                data += d->cur.len;
                n -= d->cur.len;
                d->hdr_have = 0;
                if (rv == FRAME_PAUSE)
                    return keep_backlog(d, data, n);
                if (rv != 0)
                    return rv;
                continue;
            }
            if (d->buf_cap < d->cur.len) {
                uint8_t *nb = realloc(d->buf, d->cur.len);
                if (nb == NULL) {
                    d->error = SHALE_ENOMEM;
                    return SHALE_ENOMEM;
                }
                d->buf = nb;
                d->buf_cap = d->cur.len;
            }
        }
        size_t need = d->cur.len - d->have;
        size_t take = need < n ? need : n;
        memcpy(d->buf + d->have, data, take);
        d->have += take;
        data += take;
        n -= take;
        if (d->have == d->cur.len) {
            d->hdr_have = 0;
            int rv = cb(ud, &d->cur, d->buf);
            /* Do not keep a huge buffer around after one big frame. */
            if (d->buf_cap > 1024 * 1024) {
                free(d->buf);
                d->buf = NULL;
                d->buf_cap = 0;
            }
            if (rv == FRAME_PAUSE)
                return keep_backlog(d, data, n);
            if (rv != 0)
                return rv;
        }
    }
    return 0;
}

int frame_decoder_feed(frame_decoder_t *d, const uint8_t *data, size_t n,
                       frame_cb cb, void *ud)
{
    if (d->error)
        return d->error;
    if (d->backlog_len > 0)
        return SHALE_EPROTO;
    return decode(d, data, n, cb, ud);
}

int frame_decoder_resume(frame_decoder_t *d, frame_cb cb, void *ud)
{
    if (d->error)
        return d->error;
    uint8_t *bl = d->backlog;
    size_t n = d->backlog_len;
    if (bl == NULL)
        return 0;
    /* Decode from a detached copy: a new pause replaces the backlog. */
    d->backlog = NULL;
    d->backlog_len = 0;
    int rv = decode(d, bl, n, cb, ud);
    free(bl);
    return rv;
}

uint8_t *frame_build(uint16_t type, uint64_t id, const uint8_t *payload,
                     uint32_t len)
{
    uint8_t *out = malloc(FRAME_HEADER_SIZE + (size_t)len);
    if (out == NULL)
        return NULL;
    frame_hdr_t h = {.len = len, .type = type, .id = id};
    frame_hdr_write(out, &h);
    if (len > 0)
        memcpy(out + FRAME_HEADER_SIZE, payload, len);
    return out;
}
