/* Frame type -> protobuf-c descriptor table, and pack/unpack helpers.
 * Owns no state; every buffer it returns is the caller's to free. */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

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
    case SHALE_MSG_STATUS_REQ: return &shale__status_request__descriptor;
    case SHALE_MSG_STATUS_RESP: return &shale__status_response__descriptor;
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
    case SHALE_MSG_MIG_IMPORT_REQ: return &shale__mig_import_request__descriptor;
    case SHALE_MSG_MIG_IMPORT_RESP: return &shale__mig_import_response__descriptor;
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
