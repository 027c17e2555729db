/* shale_internal.h — libshale calls for Shale's own processes and tests
 * (shalectl, shale-router, shaled following the cluster map, the test
 * harness), not part of the application API in shale.h and not installed.
 * libshale.so does not export them (client/libshale.map); the in-tree users
 * link the static library.
 *
 * Owns nothing; declarations only. */
#ifndef SHALE_INTERNAL_H
#define SHALE_INTERNAL_H

#include "shale.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Low-level call, for Shale's own tools (shalectl, shale-router, shaled
 * following the cluster map): send one message of frame type `type` whose
 * protobuf encoding is payload/len (proto/shale.proto) and expect an answer
 * of type resp_type; its payload is copied into req->raw (freed by
 * shale_req_cleanup). Deadlines, NOT_LEADER redirects and retries work as
 * for data requests; the message carries no libshale session (a mutation
 * that needs exactly-once puts its own in the payload). */
int shale_call_async(shale_client_t *c, shale_req_t *req, uint16_t type, uint16_t resp_type,
                     const void *payload, size_t len, shale_cb cb);
/* Blocking form: *resp (malloc, free()) and *resp_len receive the answer. On
 * an error, msg (SHALE_ERRMSG_LEN, may be NULL) gets the server's message
 * and *epoch (may be NULL) the epoch an error carried. */
int shale_call(shale_client_t *c, uint16_t type, uint16_t resp_type, const void *payload,
               size_t len, uint8_t **resp, size_t *resp_len, char *msg, uint64_t *epoch);

#ifdef __cplusplus
}
#endif

#endif
