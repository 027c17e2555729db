/* libraft's allocator: geometric growth on realloc. See raft_heap.h. */
#include "raft_heap.h"

#include <malloc.h>
#include <raft.h>
#include <stdlib.h>

void *raft_heap_grow(void *ptr, size_t size)
{
    if (ptr == NULL || size == 0)
        return realloc(ptr, size);
    size_t have = malloc_usable_size(ptr);
    if (size <= have)
        return ptr; /* the room is there: no copy, no call */
    size_t want = have > (size_t)-1 / 2 ? size : 2 * have;
    if (want < size)
        want = size;
    void *p = realloc(ptr, want);
    return p != NULL || want == size ? p : realloc(ptr, size);
}

static void *h_malloc(void *data, size_t size)
{
    (void)data;
    return malloc(size);
}

static void h_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

static void *h_calloc(void *data, size_t nmemb, size_t size)
{
    (void)data;
    return calloc(nmemb, size);
}

static void *h_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    return raft_heap_grow(ptr, size);
}

static void *h_aligned_alloc(void *data, size_t alignment, size_t size)
{
    (void)data;
    return aligned_alloc(alignment, size);
}

static void h_aligned_free(void *data, size_t alignment, void *ptr)
{
    (void)data;
    (void)alignment;
    free(ptr);
}

void raft_heap_install(void)
{
    static struct raft_heap heap = {NULL,     h_malloc,        h_free,        h_calloc,
                                    h_realloc, h_aligned_alloc, h_aligned_free};
    raft_heap_set(&heap);
}
