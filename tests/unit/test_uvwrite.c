/* uvw_write (server/uvwrite.h): a write that goes out whole returns 1 and
 * never calls back; a write the socket cannot take at once queues the rest
 * (the first buffer from where the kernel stopped) and calls back once; the
 * bytes arrive whole and in order either way, also behind a queued write. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "uvwrite.h"

typedef struct {
    uv_pipe_t w, r;
    uint8_t *got;
    size_t ngot, cap;
    int cbs, cb_status;
} pair_t;

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)h;
    static char buf[65536];
    (void)sz;
    *b = uv_buf_init(buf, sizeof(buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    pair_t *p = s->data;
    if (n <= 0)
        return;
    ck_assert_uint_le(p->ngot + (size_t)n, p->cap);
    memcpy(p->got + p->ngot, b->base, (size_t)n);
    p->ngot += (size_t)n;
}

static void on_written(uv_write_t *req, int status)
{
    pair_t *p = req->data;
    p->cbs++;
    p->cb_status = status;
}

static void pair_open(uv_loop_t *loop, pair_t *p, size_t cap)
{
    int fds[2];
    memset(p, 0, sizeof(*p));
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    int small = 4096; /* the kernel takes little at once: partial writes */
    setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    ck_assert_int_eq(uv_pipe_init(loop, &p->w, 0), 0);
    ck_assert_int_eq(uv_pipe_init(loop, &p->r, 0), 0);
    ck_assert_int_eq(uv_pipe_open(&p->w, fds[0]), 0);
    ck_assert_int_eq(uv_pipe_open(&p->r, fds[1]), 0);
    p->r.data = p;
    p->cap = cap;
    p->got = malloc(cap);
    ck_assert_ptr_nonnull(p->got);
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&p->r, on_alloc, on_read), 0);
}

static void pair_close(uv_loop_t *loop, pair_t *p)
{
    uv_close((uv_handle_t *)&p->w, NULL);
    uv_close((uv_handle_t *)&p->r, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    free(p->got);
}

START_TEST(test_small_write_is_immediate)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    pair_t p;
    pair_open(&loop, &p, 64);
    uv_write_t req;
    req.data = &p;
    uv_buf_t b[2] = {uv_buf_init("hello ", 6), uv_buf_init("world", 5)};
    ck_assert_int_eq(uvw_write(&req, (uv_stream_t *)&p.w, b, 2, on_written), 1);
    while (p.ngot < 11)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(p.cbs, 0); /* whole at once: no callback, ever */
    ck_assert(memcmp(p.got, "hello world", 11) == 0);
    pair_close(&loop, &p);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(test_partial_write_queues_the_rest_in_order)
{
    enum { N = 3, LEN = 700001 };
    uv_loop_t loop;
    uv_loop_init(&loop);
    pair_t p;
    pair_open(&loop, &p, (size_t)N * LEN + 16);
    uint8_t *data[N];
    uv_buf_t b[N];
    for (int i = 0; i < N; i++) {
        data[i] = malloc(LEN);
        ck_assert_ptr_nonnull(data[i]);
        for (size_t k = 0; k < LEN; k++)
            data[i][k] = (uint8_t)(k * 7 + (size_t)i * 13);
        b[i] = uv_buf_init((char *)data[i], LEN);
    }
    uv_write_t req, req2;
    req.data = req2.data = &p;
    ck_assert_int_eq(uvw_write(&req, (uv_stream_t *)&p.w, b, N, on_written), 0);
    /* Behind a queued write nothing may jump ahead: this one queues too. */
    uv_buf_t tail = uv_buf_init("end", 3);
    ck_assert_int_eq(uvw_write(&req2, (uv_stream_t *)&p.w, &tail, 1, on_written), 0);
    while (p.ngot < (size_t)N * LEN + 3)
        uv_run(&loop, UV_RUN_ONCE);
    while (p.cbs < 2)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(p.cbs, 2);
    ck_assert_int_eq(p.cb_status, 0);
    for (int i = 0; i < N; i++)
        ck_assert(memcmp(p.got + (size_t)i * LEN, data[i], LEN) == 0);
    ck_assert(memcmp(p.got + (size_t)N * LEN, "end", 3) == 0);
    for (int i = 0; i < N; i++)
        free(data[i]);
    pair_close(&loop, &p);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("uvwrite");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_small_write_is_immediate);
    tcase_add_test(tc, test_partial_write_queues_the_rest_in_order);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
