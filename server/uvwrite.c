/* uvwrite: try the write straight away, queue what is left (uvwrite.h). */
#include "uvwrite.h"

#include <stdlib.h>
#include <string.h>

#define VIEW_STACK 16

int uvw_write(uv_write_t *req, uv_stream_t *stream, const uv_buf_t *bufs, unsigned n,
              uv_write_cb cb)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    /* uv_try_write returns UV_EAGAIN by itself when writes are queued
     * ahead (ordering) or nothing can be written now. */
    int w = uv_try_write(stream, bufs, n);
    if (w < 0 && w != UV_EAGAIN)
        return w;
    size_t done = w > 0 ? (size_t)w : 0;
    if (done == total)
        return 1;
    /* Skip the buffers written whole; the first one left is a view of its
     * unwritten tail. uv_write copies the array. */
    unsigned first = 0;
    while (first < n && done >= bufs[first].len) {
        done -= bufs[first].len;
        first++;
    }
    unsigned left = n - first;
    uv_buf_t stackv[VIEW_STACK];
    uv_buf_t *view = left <= VIEW_STACK ? stackv : malloc(left * sizeof(*view));
    if (view == NULL)
        return UV_ENOMEM;
    memcpy(view, bufs + first, left * sizeof(*view));
    view[0].base += done;
    view[0].len -= done;
    int rv = uv_write(req, stream, view, left, cb);
    if (view != stackv)
        free(view);
    return rv < 0 ? rv : 0;
}
