/* Frame type -> protobuf-c descriptor table, and pack/unpack helpers.
 * Owns no state; every buffer it returns is the caller's to free. */
#include "errors_wire.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyhash.h"

const ProtobufCMessageDescriptor *wire_descriptor(uint16_t type)
{
    switch (type) {
    case SHALE_MSG_HELLO: return &shale__hello__descriptor;
    case SHALE_MSG_HELLO_REPLY: return &shale__hello_reply__descriptor;
    case SHALE_MSG_ERROR: return &shale__error__descriptor;
    case SHALE_MSG_GET_REQ: return &shale__get_request__descriptor;
    case SHALE_MSG_GET_RESP: return &shale__get_response__descriptor;
    case SHALE_MSG_PUT_REQ: return &shale__put_request__descriptor;
    case SHALE_MSG_PUT_RESP: return &shale__put_response__descriptor;
    case SHALE_MSG_DEL_REQ: return &shale__delete_request__descriptor;
    case SHALE_MSG_DEL_RESP: return &shale__delete_response__descriptor;
    case SHALE_MSG_CAS_REQ: return &shale__cas_request__descriptor;
    case SHALE_MSG_CAS_RESP: return &shale__cas_response__descriptor;
    case SHALE_MSG_MGET_REQ: return &shale__mget_request__descriptor;
    case SHALE_MSG_MGET_RESP: return &shale__mget_response__descriptor;
    case SHALE_MSG_MPUT_REQ: return &shale__mput_request__descriptor;
    case SHALE_MSG_MPUT_RESP: return &shale__mput_response__descriptor;
    case SHALE_MSG_TXN_REQ: return &shale__txn_request__descriptor;
    case SHALE_MSG_TXN_RESP: return &shale__txn_response__descriptor;
    case SHALE_MSG_SCAN_REQ: return &shale__scan_request__descriptor;
    case SHALE_MSG_SCAN_RESP: return &shale__scan_response__descriptor;
    case SHALE_MSG_WATCH_REQ: return &shale__watch_request__descriptor;
    case SHALE_MSG_WATCH_RESP: return &shale__watch_response__descriptor;
    case SHALE_MSG_STATUS_REQ: return &shale__status_request__descriptor;
    case SHALE_MSG_STATUS_RESP: return &shale__status_response__descriptor;
    case SHALE_MSG_CLOCK_REQ: return &shale__clock_request__descriptor;
    case SHALE_MSG_CLOCK_RESP: return &shale__clock_response__descriptor;
    case SHALE_MSG_MEMBER_ADD_REQ: return &shale__member_add_request__descriptor;
    case SHALE_MSG_ADMIN_RESP: return &shale__admin_response__descriptor;
    case SHALE_MSG_MEMBER_REMOVE_REQ: return &shale__member_remove_request__descriptor;
    case SHALE_MSG_LEADER_TRANSFER_REQ: return &shale__leader_transfer_request__descriptor;
    case SHALE_MSG_MAP_GET_REQ: return &shale__map_get_request__descriptor;
    case SHALE_MSG_MAP_RESP: return &shale__map_response__descriptor;
    case SHALE_MSG_MAP_CAS_REQ: return &shale__map_cas_request__descriptor;
    case SHALE_MSG_USER_CHANGE_REQ: return &shale__user_change_request__descriptor;
    case SHALE_MSG_USER_CHANGE_RESP: return &shale__user_change_response__descriptor;
    case SHALE_MSG_USER_LIST_REQ: return &shale__user_list_request__descriptor;
    case SHALE_MSG_USER_LIST_RESP: return &shale__user_list_response__descriptor;
    case SHALE_MSG_SNAP_FETCH_REQ: return &shale__snap_fetch_request__descriptor;
    case SHALE_MSG_SNAP_CHUNK: return &shale__snap_chunk__descriptor;
    case SHALE_MSG_MIG_EXPORT_REQ: return &shale__mig_export_request__descriptor;
    case SHALE_MSG_MIG_BATCH: return &shale__mig_batch__descriptor;
    case SHALE_MSG_CHECK_REQ: return &shale__check_request__descriptor;
    case SHALE_MSG_CHECK_RESP: return &shale__check_response__descriptor;
    case SHALE_MSG_MIG_IMPORT_REQ: return &shale__mig_import_request__descriptor;
    case SHALE_MSG_MIG_IMPORT_RESP: return &shale__mig_import_response__descriptor;
    case SHALE_MSG_MIG_PUSH_REQ: return &shale__mig_push_request__descriptor;
    case SHALE_MSG_MIG_PUSH_RESP: return &shale__mig_push_response__descriptor;
    default: return NULL;
    }
}

uint8_t *wire_pack(uint16_t type, uint64_t id, const ProtobufCMessage *msg,
                   uint32_t max_frame, size_t *len)
{
    size_t plen = protobuf_c_message_get_packed_size(msg);
    *len = plen;
    if (plen > max_frame)
        return NULL;
    uint8_t *out = malloc(FRAME_HEADER_SIZE + plen);
    if (out == NULL)
        return NULL;
    frame_hdr_t h = {.len = (uint32_t)plen, .type = type, .id = id};
    frame_hdr_write(out, &h);
    protobuf_c_message_pack(msg, out + FRAME_HEADER_SIZE);
    *len = FRAME_HEADER_SIZE + plen;
    return out;
}

ProtobufCMessage *wire_unpack(uint16_t type, const uint8_t *payload,
                              size_t len)
{
    const ProtobufCMessageDescriptor *d = wire_descriptor(type);
    if (d == NULL)
        return NULL;
    return protobuf_c_message_unpack(d, NULL, len, payload);
}

uint8_t *wire_error_frame(uint64_t id, int code, const char *msg,
                          const char *leader_hint, size_t *len)
{
    Shale__Error e = SHALE__ERROR__INIT;
    e.code = (Shale__ErrorCode)shale_error_to_wire(code);
    if (e.code == SHALE__ERROR_CODE__OK)
        e.code = SHALE__ERROR_CODE__UNAVAILABLE; /* local code: no wire form */
    e.message = (char *)(msg ? msg : shale_strerror(code));
    e.leader_hint = (char *)leader_hint;
    return wire_pack(SHALE_MSG_ERROR, id, &e.base, UINT32_MAX, len);
}

/* Key check for wire_txn_check: where names the key in messages. */
static int txn_key(const ProtobufCBinaryData *k, uint32_t max_key, uint32_t nslots, int *have,
                   uint32_t *slot, const char *where, size_t i, char *msg, size_t mlen)
{
    if (k->len == 0) {
        snprintf(msg, mlen, "txn %s %zu: empty key", where, i);
        return SHALE_EINVAL;
    }
    if (k->len > max_key) {
        snprintf(msg, mlen, "txn %s %zu: key of %zu bytes exceeds the limit of %u", where, i,
                 k->len, max_key);
        return SHALE_ETOOLARGE;
    }
    uint32_t sl = shale_key_slot(k->data, k->len, nslots);
    if (!*have) {
        *have = 1;
        *slot = sl;
    } else if (sl != *slot) {
        snprintf(msg, mlen,
                 "txn %s %zu: key hashes to slot %u but the first key to slot %u; every key "
                 "of a transaction must be in one slot (give them the same {hash tag})",
                 where, i, sl, *slot);
        return SHALE_ECROSSSLOT;
    }
    return 0;
}

static int txn_ops(Shale__TxnOp **ops, size_t n, const char *where, uint32_t max_key,
                   uint32_t max_value, uint32_t nslots, int *have, uint32_t *slot, int *writes,
                   char *msg, size_t mlen)
{
    for (size_t i = 0; i < n; i++) {
        const Shale__TxnOp *o = ops[i];
        int rv = txn_key(&o->key, max_key, nslots, have, slot, where, i, msg, mlen);
        if (rv != 0)
            return rv;
        if (o->has_ttl_ms && (o->ttl_ms == 0 || o->ttl_ms > SHALE_TTL_MAX_MS)) {
            snprintf(msg, mlen, "txn %s %zu: ttl_ms %llu out of 1..%llu", where, i,
                     (unsigned long long)o->ttl_ms, (unsigned long long)SHALE_TTL_MAX_MS);
            return SHALE_EINVAL;
        }
        switch (o->type) {
        case SHALE__TXN_OP_TYPE__TXN_PUT:
            if (o->has_keep_ttl && o->keep_ttl && o->has_ttl_ms) {
                snprintf(msg, mlen, "txn %s %zu: a put has a TTL or keeps one, not both", where,
                         i);
                return SHALE_EINVAL;
            }
            if (!o->has_value) {
                snprintf(msg, mlen, "txn %s %zu: a put needs a value", where, i);
                return SHALE_EINVAL;
            }
            if (o->value.len > max_value) {
                snprintf(msg, mlen, "txn %s %zu: value of %zu bytes exceeds the limit of %u",
                         where, i, o->value.len, max_value);
                return SHALE_ETOOLARGE;
            }
            *writes = 1;
            break;
        case SHALE__TXN_OP_TYPE__TXN_DELETE:
            *writes = 1;
            break;
        case SHALE__TXN_OP_TYPE__TXN_ADD:
            if (!o->has_delta) {
                snprintf(msg, mlen, "txn %s %zu: an add needs a delta", where, i);
                return SHALE_EINVAL;
            }
            *writes = 1;
            break;
        case SHALE__TXN_OP_TYPE__TXN_EXPIRE:
            *writes = 1;
            break;
        case SHALE__TXN_OP_TYPE__TXN_APPEND:
            if (!o->has_value) {
                snprintf(msg, mlen, "txn %s %zu: an append needs a value", where, i);
                return SHALE_EINVAL;
            }
            if (o->value.len > max_value) {
                snprintf(msg, mlen, "txn %s %zu: value of %zu bytes exceeds the limit of %u",
                         where, i, o->value.len, max_value);
                return SHALE_ETOOLARGE;
            }
            *writes = 1;
            break;
        case SHALE__TXN_OP_TYPE__TXN_GET:
            break;
        default:
            snprintf(msg, mlen, "txn %s %zu: unknown op type %d", where, i, (int)o->type);
            return SHALE_EINVAL;
        }
    }
    return 0;
}

int wire_txn_check(const Shale__TxnRequest *x, uint32_t max_key, uint32_t max_value,
                   uint32_t nslots, uint32_t *slot, int *writes, char *msg, size_t mlen)
{
    int have = 0, rv;
    *slot = 0;
    *writes = 0;
    if (x->n_compares > SHALE_TXN_MAX_COMPARES) {
        snprintf(msg, mlen, "txn with %zu compares (at most %d)", x->n_compares,
                 SHALE_TXN_MAX_COMPARES);
        return SHALE_ETOOLARGE;
    }
    if (x->n_success + x->n_failure > SHALE_TXN_MAX_OPS) {
        snprintf(msg, mlen, "txn with %zu ops (at most %d in both branches together)",
                 x->n_success + x->n_failure, SHALE_TXN_MAX_OPS);
        return SHALE_ETOOLARGE;
    }
    if (x->n_compares + x->n_success + x->n_failure == 0) {
        snprintf(msg, mlen, "txn with no compare and no op");
        return SHALE_EINVAL;
    }
    size_t size = protobuf_c_message_get_packed_size(&x->base);
    if (size > SHALE_TXN_MAX_BYTES) {
        snprintf(msg, mlen, "txn of %zu bytes (at most %u)", size, (unsigned)SHALE_TXN_MAX_BYTES);
        return SHALE_ETOOLARGE;
    }
    for (size_t i = 0; i < x->n_compares; i++) {
        const Shale__TxnCompare *c = x->compares[i];
        if ((rv = txn_key(&c->key, max_key, nslots, &have, slot, "compare", i, msg, mlen)) != 0)
            return rv;
        if (c->op < SHALE__TXN_COMPARE_OP__TXN_EQUAL ||
            c->op > SHALE__TXN_COMPARE_OP__TXN_GREATER) {
            snprintf(msg, mlen, "txn compare %zu: unknown operator %d", i, (int)c->op);
            return SHALE_EINVAL;
        }
        switch (c->target) {
        case SHALE__TXN_TARGET__TXN_VALUE:
            if (!c->has_value) {
                snprintf(msg, mlen, "txn compare %zu: a value compare needs a value", i);
                return SHALE_EINVAL;
            }
            if (c->value.len > max_value) {
                snprintf(msg, mlen, "txn compare %zu: value of %zu bytes exceeds the limit of %u",
                         i, c->value.len, max_value);
                return SHALE_ETOOLARGE;
            }
            break;
        case SHALE__TXN_TARGET__TXN_VERSION:
            if (!c->has_version) {
                snprintf(msg, mlen, "txn compare %zu: a version compare needs a version", i);
                return SHALE_EINVAL;
            }
            break;
        case SHALE__TXN_TARGET__TXN_EXISTS:
            if (!c->has_exists) {
                snprintf(msg, mlen, "txn compare %zu: an existence compare needs exists", i);
                return SHALE_EINVAL;
            }
            if (c->op != SHALE__TXN_COMPARE_OP__TXN_EQUAL &&
                c->op != SHALE__TXN_COMPARE_OP__TXN_NOT_EQUAL) {
                snprintf(msg, mlen, "txn compare %zu: existence compares only with = or !=", i);
                return SHALE_EINVAL;
            }
            break;
        default:
            snprintf(msg, mlen, "txn compare %zu: unknown target %d", i, (int)c->target);
            return SHALE_EINVAL;
        }
    }
    if ((rv = txn_ops(x->success, x->n_success, "success op", max_key, max_value, nslots, &have,
                      slot, writes, msg, mlen)) != 0)
        return rv;
    return txn_ops(x->failure, x->n_failure, "failure op", max_key, max_value, nslots, &have, slot,
                   writes, msg, mlen);
}

/* ---- Scans -------------------------------------------------------------------*/

uint32_t wire_scan_limit(uint32_t limit)
{
    if (limit == 0)
        return SHALE_SCAN_DEFAULT_LIMIT;
    return limit > SHALE_SCAN_MAX_LIMIT ? SHALE_SCAN_MAX_LIMIT : limit;
}

char *wire_cursor_encode(uint32_t slot, const uint8_t *after, size_t alen,
                         const uint8_t *prefix, size_t plen, size_t *len)
{
    Shale__ScanCursor c = SHALE__SCAN_CURSOR__INIT;
    c.version = SHALE_SCAN_CURSOR_VERSION;
    c.slot = slot;
    c.has_after = alen > 0;
    c.after.data = (uint8_t *)after;
    c.after.len = alen;
    c.has_prefix = plen > 0;
    c.prefix.data = (uint8_t *)prefix;
    c.prefix.len = plen;
    size_t n = protobuf_c_message_get_packed_size(&c.base);
    uint8_t *raw = malloc(n > 0 ? n : 1);
    char *hex = malloc(2 * n + 1);
    if (raw == NULL || hex == NULL) {
        free(raw);
        free(hex);
        return NULL;
    }
    protobuf_c_message_pack(&c.base, raw);
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[raw[i] >> 4];
        hex[2 * i + 1] = digits[raw[i] & 15];
    }
    hex[2 * n] = '\0';
    free(raw);
    if (len != NULL)
        *len = 2 * n;
    return hex;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int wire_cursor_decode(const uint8_t *cur, size_t len, uint32_t nslots,
                       const uint8_t *prefix, size_t plen, uint32_t *slot,
                       uint8_t **after, size_t *alen, char *msg, size_t mlen)
{
    *after = NULL;
    *alen = 0;
    if (cur == NULL || len == 0 || len % 2 != 0 || len > 2 * (SHALE_SCAN_MAX_BYTES / 4)) {
        snprintf(msg, mlen, "invalid scan cursor (not one this cluster made)");
        return SHALE_EINVAL;
    }
    uint8_t *raw = malloc(len / 2);
    if (raw == NULL) {
        snprintf(msg, mlen, "out of memory decoding a scan cursor");
        return SHALE_ENOMEM;
    }
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hexval(cur[2 * i]), lo = hexval(cur[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(raw);
            snprintf(msg, mlen, "invalid scan cursor (not hex)");
            return SHALE_EINVAL;
        }
        raw[i] = (uint8_t)(hi << 4 | lo);
    }
    Shale__ScanCursor *c = shale__scan_cursor__unpack(NULL, len / 2, raw);
    free(raw);
    if (c == NULL) {
        snprintf(msg, mlen, "invalid scan cursor (undecodable)");
        return SHALE_EINVAL;
    }
    int rv = 0;
    size_t cpl = c->has_prefix ? c->prefix.len : 0;
    if (c->version != SHALE_SCAN_CURSOR_VERSION) {
        snprintf(msg, mlen, "invalid scan cursor (version %u, this build knows %u)",
                 c->version, SHALE_SCAN_CURSOR_VERSION);
        rv = SHALE_EINVAL;
    } else if (c->slot >= nslots) {
        snprintf(msg, mlen, "invalid scan cursor (slot %u of a %u-slot cluster)", c->slot,
                 nslots);
        rv = SHALE_EINVAL;
    } else if (cpl != plen || (plen > 0 && memcmp(c->prefix.data, prefix, plen) != 0)) {
        snprintf(msg, mlen, "scan cursor was made for another prefix: continue a scan "
                            "with the prefix it started with");
        rv = SHALE_EINVAL;
    } else if (c->has_after && c->after.len > 0) {
        *after = malloc(c->after.len);
        if (*after == NULL) {
            snprintf(msg, mlen, "out of memory decoding a scan cursor");
            rv = SHALE_ENOMEM;
        } else {
            memcpy(*after, c->after.data, c->after.len);
            *alen = c->after.len;
        }
    }
    if (rv == 0)
        *slot = c->slot;
    shale__scan_cursor__free_unpacked(c, NULL);
    return rv;
}

int wire_prefix_slot(const uint8_t *prefix, size_t plen, uint32_t nslots, uint32_t *slot)
{
    size_t off, tl;
    if (plen == 0 || !shale_key_tag(prefix, plen, &off, &tl))
        return 0;
    *slot = shale_key_slot(prefix, plen, nslots);
    return 1;
}
