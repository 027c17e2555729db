/* uvwrite: one stream write that skips libuv's write queue when it can.
 *
 * Owns nothing: the caller keeps its buffers and its uv_write_t. Every
 * process's connection code (shaled, shale-router, libshale) writes through
 * it; it never reads, never closes a handle and never calls the caller's
 * callback itself.
 *
 * Why: libuv 1.44 finishes every queued write by stopping POLLOUT on the
 * handle (uv__drain), which re-arms the descriptor with one epoll_ctl per
 * write even though POLLOUT was never started. A write that goes out whole
 * with uv_try_write has no request and no drain: one syscall instead of two
 * (measured on the router: docs/performance.md). */
#ifndef SHALE_UVWRITE_H
#define SHALE_UVWRITE_H

#include <uv.h>

/* Write bufs[0..n) to stream, in order after anything already queued on it.
 * Returns:
 *   1  everything was written now; cb will not be called and req is unused
 *      (the caller completes as if cb(req, 0) had run, outside any libuv
 *      callback of this write);
 *   0  the rest was queued with uv_write(req, ..., cb): cb will be called,
 *      and the caller's buffers must stay valid until then (their bases are
 *      never moved: a partly written first buffer is passed on as a view);
 *  <0  a libuv error: nothing was queued, cb will not be called (part of
 *      the bytes may have been written; the connection is broken anyway).
 * The bufs array itself may be reused once this returns. */
int uvw_write(uv_write_t *req, uv_stream_t *stream, const uv_buf_t *bufs, unsigned n,
              uv_write_cb cb);

#endif
