/* Framing codec: the fixed frame header and a streaming decoder.
 *
 * Wire layout of one frame (all integers big-endian):
 *
 *     0      4     5     6        8                 16
 *     +------+-----+-----+--------+-----------------+-------------+
 *     | len  | 'S' | ver | type   | request id      | payload ... |
 *     +------+-----+-----+--------+-----------------+-------------+
 *
 * len counts the payload only (not the 16-byte header). The payload is one
 * protobuf message of the kind `type` names (SHALE_MSG_*).
 *
 * This file owns byte layout and incremental reassembly. It never does I/O,
 * never interprets payloads, and never allocates more than the configured
 * maximum for one frame: the length is checked before any allocation. */
#ifndef SHALE_FRAME_H
#define SHALE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_SIZE 16
#define FRAME_MAGIC 0x53 /* 'S' */
#define FRAME_VERSION 1
#define FRAME_DEFAULT_MAX (8u * 1024 * 1024)

/* Message types carried in the header. Numbers are protocol: never reuse. */
enum shale_msg_type {
    SHALE_MSG_HELLO = 1,
    SHALE_MSG_HELLO_REPLY = 2,
    SHALE_MSG_ERROR = 3,
    SHALE_MSG_GET_REQ = 10,
    SHALE_MSG_GET_RESP = 11,
    SHALE_MSG_PUT_REQ = 12,
    SHALE_MSG_PUT_RESP = 13,
    SHALE_MSG_DEL_REQ = 14,
    SHALE_MSG_DEL_RESP = 15,
    SHALE_MSG_CAS_REQ = 16,
    SHALE_MSG_CAS_RESP = 17,
    SHALE_MSG_MGET_REQ = 18,
    SHALE_MSG_MGET_RESP = 19,
    SHALE_MSG_MPUT_REQ = 20,
    SHALE_MSG_MPUT_RESP = 21,
    SHALE_MSG_TXN_REQ = 22, /* transaction within one slot */
    SHALE_MSG_TXN_RESP = 23,
    SHALE_MSG_SCAN_REQ = 24, /* one page of one slot, key order */
    SHALE_MSG_SCAN_RESP = 25,
    SHALE_MSG_WATCH_REQ = 26, /* long-poll for the changes of a key / tag prefix */
    SHALE_MSG_WATCH_RESP = 27,
    /* 28: reserved (WATCH_CANCEL of a streamed watch; the long-poll needs none) */
    SHALE_MSG_STATUS_REQ = 30,
    SHALE_MSG_STATUS_RESP = 31,
    SHALE_MSG_CLOCK_REQ = 32, /* a member reads the leader's clock (docs/consistency.md) */
    SHALE_MSG_CLOCK_RESP = 33,
    SHALE_MSG_CHECK_REQ = 40, /* replica consistency check (server/check.c) */
    SHALE_MSG_CHECK_RESP = 41,
    SHALE_MSG_MEMBER_ADD_REQ = 60,
    SHALE_MSG_ADMIN_RESP = 61,
    SHALE_MSG_MEMBER_REMOVE_REQ = 62,
    SHALE_MSG_LEADER_TRANSFER_REQ = 64,
    SHALE_MSG_MAP_GET_REQ = 70, /* cluster map (meta group): 70..79 */
    SHALE_MSG_MAP_RESP = 71,
    SHALE_MSG_MAP_CAS_REQ = 72,
    SHALE_MSG_USER_CHANGE_REQ = 73, /* users and roles (meta group) */
    SHALE_MSG_USER_CHANGE_RESP = 74,
    SHALE_MSG_USER_LIST_REQ = 75,
    SHALE_MSG_USER_LIST_RESP = 76,
    SHALE_MSG_SNAP_FETCH_REQ = 80, /* snapshot transfer: 80..89 */
    SHALE_MSG_SNAP_CHUNK = 81,
    SHALE_MSG_MIG_EXPORT_REQ = 90, /* slot migration: 90..99 */
    SHALE_MSG_MIG_BATCH = 91,
    SHALE_MSG_MIG_IMPORT_REQ = 92,
    SHALE_MSG_MIG_IMPORT_RESP = 93,
    SHALE_MSG_MIG_PUSH_REQ = 94, /* coordinator -> group: a map it changed */
    SHALE_MSG_MIG_PUSH_RESP = 95,
    /* 40..59 router, 60..79 admin / meta: reserved. */
    SHALE_MSG_MAX_ = 127
};

typedef struct frame_hdr {
    uint32_t len;  /* payload bytes */
    uint16_t type; /* enum shale_msg_type */
    uint64_t id;   /* request id; a response repeats its request's id */
} frame_hdr_t;

/* Name of a message type, "?" for unknown ones. */
const char *frame_type_name(uint16_t type);

/* True for a type this protocol version defines. */
int frame_type_known(uint16_t type);

/* Write a 16-byte header into out. */
void frame_hdr_write(uint8_t out[FRAME_HEADER_SIZE], const frame_hdr_t *h);

/* Parse a 16-byte header. Returns 0, SHALE_EPROTO for bad magic/version,
 * or SHALE_ETOOLARGE when h->len > max_frame. */
int frame_hdr_parse(const uint8_t in[FRAME_HEADER_SIZE], uint32_t max_frame,
                    frame_hdr_t *h);

/* Called once per complete frame. payload is valid only during the call
 * (owned by the decoder). Return 0 to continue, FRAME_PAUSE to stop after
 * this frame and keep the rest of the input for frame_decoder_resume (flow
 * control), or any other non-zero value to stop feeding: frame_decoder_feed
 * then returns that value. */
typedef int (*frame_cb)(void *ud, const frame_hdr_t *h, const uint8_t *payload);
#define FRAME_PAUSE 0x7fff0001

typedef struct frame_decoder {
    uint32_t max_frame;
    uint8_t hdr[FRAME_HEADER_SIZE];
    size_t hdr_have;
    frame_hdr_t cur;
    uint8_t *buf; /* payload being assembled (malloc, owned) */
    size_t buf_cap;
    size_t have;
    int error; /* sticky: after a bad header nothing else is accepted */
    uint8_t *backlog; /* input kept after a FRAME_PAUSE (malloc, owned) */
    size_t backlog_len;
} frame_decoder_t;

void frame_decoder_init(frame_decoder_t *d, uint32_t max_frame);
void frame_decoder_free(frame_decoder_t *d);

/* Feed n bytes read from a stream: any split of frames across calls and any
 * number of frames per call. Calls cb for each complete frame in order.
 * Returns 0, a negative SHALE_E* for a bad header (then sticky), or the first
 * non-zero value cb returned. Must not be called while a backlog is kept
 * (resume it first): returns SHALE_EPROTO then. */
int frame_decoder_feed(frame_decoder_t *d, const uint8_t *data, size_t n,
                       frame_cb cb, void *ud);

/* Bytes of input kept back by a FRAME_PAUSE, not yet decoded. */
size_t frame_decoder_backlog(const frame_decoder_t *d);

/* Decode the kept-back input, as frame_decoder_feed would have. Returns as
 * frame_decoder_feed (FRAME_PAUSE again keeps what is still left). */
int frame_decoder_resume(frame_decoder_t *d, frame_cb cb, void *ud);

/* Encode one frame from an already-packed payload into a fresh buffer of
 * FRAME_HEADER_SIZE + len bytes (malloc; caller frees). NULL on ENOMEM. */
uint8_t *frame_build(uint16_t type, uint64_t id, const uint8_t *payload,
                     uint32_t len);

#endif
