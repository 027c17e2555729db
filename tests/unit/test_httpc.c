/* cluster/httpc.c: shalectl's blocking HTTP GET, against a one-connection
 * server in a thread on 127.0.0.1.
 *
 * What it proves: the request is a GET with Host and Connection: close;
 * status and body come back (with Content-Length, and read to EOF without
 * it); a server that never answers costs the deadline and no more
 * (SHALE_ETIMEOUT); a body cut short, a non-HTTP answer and chunked
 * encoding are SHALE_EIO; a refused connection is SHALE_EIO and a bad
 * address SHALE_EINVAL; httpc_reach_addr replaces wildcard hosts by the
 * host the process was reached at. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "httpc.h"
#include "shale_errors.h"

typedef struct server {
    int lfd, port;
    const char *answer; /* sent after the request head; NULL: stay silent */
    char request[2048]; /* the head received */
    pthread_t th;
} server_t;

static void *serve(void *arg)
{
    server_t *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    size_t n = 0;
    while (n < sizeof(s->request) - 1 && strstr(s->request, "\r\n\r\n") == NULL) {
        ssize_t r = recv(fd, s->request + n, sizeof(s->request) - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        s->request[n] = '\0';
    }
    if (s->answer != NULL) {
        ssize_t w = send(fd, s->answer, strlen(s->answer), MSG_NOSIGNAL);
        (void)w;
    } else {
        char b[64];
        while (recv(fd, b, sizeof(b), 0) > 0) /* until the client gives up */
            ;
    }
    close(fd);
    return NULL;
}

static void server_start(server_t *s, const char *answer)
{
    memset(s, 0, sizeof(*s));
    s->answer = answer;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(s->lfd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(s->lfd, 4), 0);
    socklen_t sl = sizeof(sa);
    getsockname(s->lfd, (struct sockaddr *)&sa, &sl);
    s->port = ntohs(sa.sin_port);
    ck_assert_int_eq(pthread_create(&s->th, NULL, serve, s), 0);
}

static void server_join(server_t *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
}

/* GET /health from s: the httpc code, status and body (malloc'd). */
static int get(server_t *s, int timeout_ms, int *status, char **body, char *err)
{
    char addr[64];
    size_t len = 0;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", s->port);
    int rv = httpc_get(addr, "/health", timeout_ms, status, body, &len, err, 256);
    server_join(s);
    if (rv == 0)
        ck_assert_uint_eq(len, strlen(*body));
    return rv;
}

START_TEST(test_answers)
{
    server_t s;
    int status = 0;
    char *body = NULL, err[256] = "";
    server_start(&s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 6\r\n\r\n"
                     "ready\n");
    ck_assert_int_eq(get(&s, 2000, &status, &body, err), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(body, "ready\n");
    free(body);
    ck_assert_ptr_nonnull(strstr(s.request, "GET /health HTTP/1.1\r\n"));
    ck_assert_ptr_nonnull(strstr(s.request, "\r\nHost: 127.0.0.1:"));
    ck_assert_ptr_nonnull(strstr(s.request, "\r\nConnection: close\r\n"));

    server_start(&s, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 35\r\n\r\n"
                     "not ready: no known leader (term 7)");
    ck_assert_int_eq(get(&s, 2000, &status, &body, err), 0);
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(body, "not ready: no known leader (term 7)");
    free(body);

    /* No Content-Length: the body runs to the end of the connection. */
    server_start(&s, "HTTP/1.0 200 OK\r\n\r\nshale_ready 1\n");
    ck_assert_int_eq(get(&s, 2000, &status, &body, err), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(body, "shale_ready 1\n");
    free(body);
}
END_TEST

START_TEST(test_failures)
{
    server_t s;
    int status = 0;
    char *body = NULL, err[256] = "";
    struct timespec t0, t1;
    server_start(&s, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(get(&s, 300, &status, &body, err), SHALE_ETIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    ck_assert_msg(ms >= 250 && ms < 2000, "the deadline took %ld ms", ms);
    ck_assert_ptr_null(body);

    server_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
    ck_assert_int_eq(get(&s, 2000, &status, &body, err), SHALE_EIO);
    ck_assert_msg(strstr(err, "10 of 100") != NULL, "%s", err);

    server_start(&s, "hello there\r\n\r\n");
    ck_assert_int_eq(get(&s, 2000, &status, &body, err), SHALE_EIO);

    server_start(&s,
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nready\r\n0\r\n\r\n");
    ck_assert_int_eq(get(&s, 2000, &status, &body, err), SHALE_EIO);
    ck_assert_msg(strstr(err, "chunked") != NULL, "%s", err);

    /* Nobody listening: a port bound once, then closed. */
    server_start(&s, "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    char addr[64];
    size_t len;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", s.port);
    ck_assert_int_eq(httpc_get(addr, "/", 1000, &status, &body, &len, err, sizeof(err)), 0);
    ck_assert_int_eq(status, 204);
    ck_assert_uint_eq(len, 0);
    free(body);
    server_join(&s);
    ck_assert_int_eq(httpc_get(addr, "/", 1000, &status, &body, &len, err, sizeof(err)), SHALE_EIO);
    ck_assert_msg(strstr(err, "refused") != NULL, "%s", err);
    ck_assert_int_eq(httpc_get("nohostport", "/", 1000, &status, &body, &len, err, sizeof(err)),
                     SHALE_EINVAL);
    ck_assert_int_eq(httpc_get("127.0.0.1:x", "/", 1000, &status, &body, &len, err, sizeof(err)),
                     SHALE_EINVAL);
}
END_TEST

START_TEST(test_reach_addr)
{
    char out[128];
    ck_assert_int_eq(httpc_reach_addr("0.0.0.0:9100", "127.0.0.11:7001", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "127.0.0.11:9100");
    ck_assert_int_eq(httpc_reach_addr("10.0.0.5:9100", "127.0.0.11:7001", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "10.0.0.5:9100");
    ck_assert_int_eq(httpc_reach_addr("[::]:9100", "[::1]:7001", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "[::1]:9100");
    ck_assert_int_eq(httpc_reach_addr(":9100", "node7:7001", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "node7:9100");
    ck_assert_int_eq(httpc_reach_addr("nonsense", "127.0.0.1:1", out, sizeof(out)), -1);
    ck_assert_int_eq(httpc_reach_addr("0.0.0.0:9100", NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "0.0.0.0:9100");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("httpc");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_answers);
    tcase_add_test(tc, test_failures);
    tcase_add_test(tc, test_reach_addr);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
