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
/* Most compares, and most ops in the success and failure lists together,
 * one TXN may carry (more: TOO_LARGE). Its packed size is also capped
 * (SHALE_TXN_MAX_BYTES), as is the total size of the values its gets
 * return (SHALE_TXN_MAX_RESULT_BYTES: over it the txn fails as a whole with
 * TOO_LARGE at apply, nothing written). docs/protocol.md, "Transactions". */
#define SHALE_TXN_MAX_COMPARES 128
#define SHALE_TXN_MAX_OPS 128
#define SHALE_TXN_MAX_BYTES (4u << 20)
#define SHALE_TXN_MAX_RESULT_BYTES (4u << 20)

/* The longest TTL a PUT may carry (ms, 100 years of 365 days): every
 * process refuses ttl_ms 0 or above it (SHALE_EINVAL). Same value as
 * client/shale.h. */
#ifndef SHALE_TTL_MAX_MS
#define SHALE_TTL_MAX_MS 3153600000000ULL
#endif

/* The checks every process makes on a TXN before anything is proposed
 * (libshale, the router and the node share them): counts within
 * SHALE_TXN_MAX_COMPARES / SHALE_TXN_MAX_OPS and the packed size within
 * SHALE_TXN_MAX_BYTES (else SHALE_ETOOLARGE), at least one compare or op,
 * every key 1..max_key bytes and every value within max_value, each
 * compare well formed (VALUE has value, VERSION has version, EXISTS has
 * exists and only EQUAL/NOT_EQUAL; known enums), each op known (a PUT has a
 * value) — else SHALE_EINVAL / SHALE_ETOOLARGE — and every key in one
 * slot of nslots (else SHALE_ECROSSSLOT, naming the first key that is
 * not). *slot gets that slot; *writes whether the txn has a put or delete
 * (in either branch). 0 or a code with a message in msg. */
int wire_txn_check(const Shale__TxnRequest *x, uint32_t max_key, uint32_t max_value,
                   uint32_t nslots, uint32_t *slot, int *writes, char *msg, size_t mlen);

/* Scans (docs/protocol.md, "Scans"): keys per page when a request names
 * none, the most it may ask for, and the most value bytes one page carries
 * (a page stops early, more=true, when the next item would pass it; it
 * always carries at least one item). A router visits at most
 * SHALE_SCAN_MAX_SLOTS_PER_PAGE slots for one cluster-scan request. */
#define SHALE_SCAN_DEFAULT_LIMIT 100u
#define SHALE_SCAN_MAX_LIMIT 1000u
#define SHALE_SCAN_MAX_BYTES (4u << 20)
#define SHALE_SCAN_MAX_SLOTS_PER_PAGE 256u
#define SHALE_SCAN_CURSOR_VERSION 1u

/* The page size a scan of `limit` asks for: 0 -> the default, capped. */
uint32_t wire_scan_limit(uint32_t limit);

/* An opaque cluster-scan cursor: a packed ScanCursor {version, slot, after,
 * prefix}, hex-encoded (lower case) so tools can print and pass it.
 * Returns a malloc'd NUL-terminated string (*len its length), NULL on
 * allocation failure. */
char *wire_cursor_encode(uint32_t slot, const uint8_t *after, size_t alen,
                         const uint8_t *prefix, size_t plen, size_t *len);
/* Decode a cursor for a scan of `prefix` over nslots slots: 0 with *slot and
 * *after (malloc'd, may be NULL when *alen is 0; the caller frees), or
 * SHALE_EINVAL with a message for anything else: not hex, not a ScanCursor,
 * another version, a slot >= nslots, or a cursor made for another prefix. */
int wire_cursor_decode(const uint8_t *cur, size_t len, uint32_t nslots,
                       const uint8_t *prefix, size_t plen, uint32_t *slot,
                       uint8_t **after, size_t *alen, char *msg, size_t mlen);
/* 1 when every key that begins with prefix hashes to one slot (the prefix
 * holds a complete hash tag, "{tag}..."): *slot gets it. Else 0. */
int wire_prefix_slot(const uint8_t *prefix, size_t plen, uint32_t nslots, uint32_t *slot);

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
