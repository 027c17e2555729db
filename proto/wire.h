/* Message <-> frame glue: which protobuf-c descriptor each frame type uses,
 * packing a message into a complete frame and unpacking a payload.
 *
 * Owns nothing long-lived. Never does I/O. */
#ifndef SHALE_WIRE_H
#define SHALE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "shale.pb-c.h"
#include "shale_errors.h"

#define SHALE_PROTOCOL_VERSION 1
/* Most keys one MGET or items one MPUT may carry. A bigger request gets
 * TOO_LARGE: one request must not make a node read without bound. */
#define SHALE_MAX_BATCH_KEYS 4096

/* Descriptor for a frame type, NULL for an unknown type. */
const ProtobufCMessageDescriptor *wire_descriptor(uint16_t type);

/* Pack msg (whose descriptor must match `type`) into one frame.
 * Returns a malloc'd buffer of *len bytes (caller frees), NULL on ENOMEM or
 * when the packed size exceeds max_frame (then *len is the packed size). */
uint8_t *wire_pack(uint16_t type, uint64_t id, const ProtobufCMessage *msg,
                   uint32_t max_frame, size_t *len);

/* Unpack a payload of frame type `type`. Returns the message (free with
 * protobuf_c_message_free_unpacked(msg, NULL)) or NULL for an unknown type
 * or malformed/incomplete protobuf. */
ProtobufCMessage *wire_unpack(uint16_t type, const uint8_t *payload,
                              size_t len);

/* Build an Error frame: code is a SHALE_E* (negative), msg may be NULL.
 * Returns a malloc'd frame of *len bytes, NULL on ENOMEM. */
uint8_t *wire_error_frame(uint64_t id, int code, const char *msg,
                          const char *leader_hint, size_t *len);

#endif
