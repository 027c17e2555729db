/* Unit tests of the metrics registry (server/metrics.c) and the HTTP server
 * (server/http.c): the exposition parses (names, HELP/TYPE, cumulative
 * histogram buckets ending with +Inf equal to _count), label sets are
 * bounded and validated, the request parser refuses malformed heads with
 * 400 (and friends), and a live server answers 400 to garbage and keeps
 * serving, keep-alive, pipelining, 404/405, HEAD, many connections. */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "http.h"
#include "metrics.h"
#include "obs_util.h"

/* ---- Metrics ----------------------------------------------------------------*/

static char *render(met_registry_t *r)
{
    char *out = NULL;
    size_t len = 0;
    ck_assert_int_eq(met_render(r, &out, &len), 0);
    ck_assert_uint_eq(strlen(out), len);
    char err[256] = "";
    ck_assert_msg(expo_check(out, err, sizeof(err)) == 0, "exposition: %s\n%s", err, out);
    return out;
}

START_TEST(test_counter_labels)
{
    met_registry_t *r = met_registry_new();
    met_family_t *c = met_counter(r, "t_requests_total", "Requests.",
                                  "op=get|put|other,outcome=ok|not_leader|other");
    ck_assert_ptr_nonnull(c);
    size_t put_ok = met_series(c, "put", "ok");
    met_add(c, put_ok, 3);
    met_add(c, met_series(c, "get", "not_leader"), 1);
    met_add(c, met_series(c, "nosuch", "weird"), 5); /* -> other, other */
    ck_assert_uint_eq(met_counter_value(c, put_ok), 3);
    char *out = render(r);
    ck_assert_ptr_nonnull(strstr(out, "# HELP t_requests_total Requests.\n"
                                      "# TYPE t_requests_total counter\n"));
    ck_assert(expo_value(out, "t_requests_total", "op=\"put\",outcome=\"ok\"") == 3);
    ck_assert(expo_value(out, "t_requests_total", "op=\"get\",outcome=\"not_leader\"") == 1);
    ck_assert(expo_value(out, "t_requests_total", "op=\"other\",outcome=\"other\"") == 5);
    ck_assert(expo_value(out, "t_requests_total", "op=\"get\",outcome=\"ok\"") == 0);
    free(out);
    met_registry_free(r);
}
END_TEST

START_TEST(test_histogram_cumulative)
{
    met_registry_t *r = met_registry_new();
    static const double b[] = {0.001, 0.01, 0.1};
    met_family_t *h = met_histogram(r, "t_duration_seconds", "Latency.", "op=get|put", b, 3);
    ck_assert_ptr_nonnull(h);
    size_t put = met_series(h, "put", NULL);
    met_observe(h, put, 0.0005);
    met_observe(h, put, 0.001); /* le is inclusive */
    met_observe(h, put, 0.05);
    met_observe(h, put, 7);
    ck_assert_uint_eq(met_histogram_count(h, put), 4);
    char *out = render(r);
    ck_assert(expo_value(out, "t_duration_seconds_bucket", "op=\"put\",le=\"0.001\"") == 2);
    ck_assert(expo_value(out, "t_duration_seconds_bucket", "op=\"put\",le=\"0.01\"") == 2);
    ck_assert(expo_value(out, "t_duration_seconds_bucket", "op=\"put\",le=\"0.1\"") == 3);
    ck_assert(expo_value(out, "t_duration_seconds_bucket", "op=\"put\",le=\"+Inf\"") == 4);
    ck_assert(expo_value(out, "t_duration_seconds_count", "op=\"put\"") == 4);
    double sum = expo_value(out, "t_duration_seconds_sum", "op=\"put\"");
    ck_assert(fabs(sum - 7.0515) < 1e-9);
    ck_assert(expo_value(out, "t_duration_seconds_count", "op=\"get\"") == 0);
    ck_assert(expo_value(out, "t_duration_seconds_bucket", "op=\"get\",le=\"+Inf\"") == 0);
    free(out);
    met_registry_free(r);
}
END_TEST

START_TEST(test_gauges_and_process)
{
    met_registry_t *r = met_registry_new();
    met_family_t *g = met_gauge(r, "t_lag", "Lag with a \\ backslash\nand a newline.", NULL);
    met_family_t *n = met_gauge(r, "t_staleness_seconds", "Staleness.", NULL);
    met_family_t *d = met_gauge_dynamic(r, "t_group_pending", "Per group.", "group", 4);
    ck_assert_ptr_nonnull(g);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(met_register_process(r), 0);
    met_set(g, 0, 12.5);
    met_set(n, 0, NAN);
    met_dyn_reset(d);
    for (int i = 1; i <= 4; i++) {
        char id[8];
        snprintf(id, sizeof(id), "%d", i);
        ck_assert_int_eq(met_dyn_set(d, id, i * 10), 0);
    }
    ck_assert_int_eq(met_dyn_set(d, "5", 1), -1); /* bounded */
    ck_assert_int_eq(met_dyn_set(d, "a\"b", 1), -1);
    char *out = render(r);
    ck_assert_ptr_nonnull(strstr(out, "# HELP t_lag Lag with a \\\\ backslash\\nand a newline.\n"));
    ck_assert(expo_value(out, "t_lag", "") == 12.5);
    ck_assert(isnan(expo_value(out, "t_staleness_seconds", "")));
    ck_assert_ptr_nonnull(strstr(out, "t_staleness_seconds NaN\n"));
    ck_assert(expo_value(out, "t_group_pending", "group=\"3\"") == 30);
    ck_assert(expo_value(out, "process_resident_memory_bytes", "") > 0);
    ck_assert(expo_value(out, "process_open_fds", "") > 0);
    ck_assert_ptr_nonnull(strstr(out, "# TYPE process_cpu_seconds_total counter\n"));
    free(out);
    met_dyn_reset(d);
    ck_assert_int_eq(met_dyn_set(d, "9", 1), 0);
    out = render(r);
    ck_assert(isnan(expo_value(out, "t_group_pending", "group=\"3\"")));
    ck_assert(expo_value(out, "t_group_pending", "group=\"9\"") == 1);
    free(out);
    met_registry_free(r);
}
END_TEST

START_TEST(test_bad_registrations)
{
    met_registry_t *r = met_registry_new();
    static const double b[] = {0.1, 0.01};
    ck_assert_ptr_nonnull(met_counter(r, "t_x_total", "x", NULL));
    ck_assert_ptr_null(met_counter(r, "t_x_total", "again", NULL)); /* duplicate */
    ck_assert_ptr_null(met_counter(r, "9bad", "x", NULL));          /* name */
    ck_assert_ptr_null(met_counter(r, "t_a", "x", "op=get|pu\"t")); /* value */
    ck_assert_ptr_null(met_counter(r, "t_b", "x", "op=get|"));      /* empty value */
    ck_assert_ptr_null(met_counter(r, "t_c", "x", "a=1,b=2,c=3"));  /* too many dims */
    ck_assert_ptr_null(met_counter(r, "t_d", "x", "le=1|2"));       /* reserved */
    ck_assert_ptr_null(met_histogram(r, "t_e", "x", NULL, b, 2));   /* not ascending */
    met_add(NULL, 0, 1);                                            /* ignored */
    met_observe(NULL, 0, 1);
    char *out = render(r);
    ck_assert_ptr_null(strstr(out, "t_a"));
    free(out);
    met_registry_free(r);
}
END_TEST

/* ---- Request parsing ----------------------------------------------------------*/

static int parse(const char *s, http_request_t *req)
{
    return http_parse(s, strlen(s), req);
}

START_TEST(test_parse_good)
{
    http_request_t q;
    const char *a = "GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n";
    ck_assert_int_eq(parse(a, &q), (int)strlen(a));
    ck_assert_str_eq(q.method, "GET");
    ck_assert_str_eq(q.path, "/metrics");
    ck_assert_int_eq(q.keep_alive, 1);
    ck_assert_int_eq(q.has_body, 0);
    const char *b = "GET /health?x=1 HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n";
    ck_assert_int_eq(parse(b, &q), (int)strlen(b));
    ck_assert_str_eq(q.path, "/health");
    ck_assert_int_eq(q.keep_alive, 0);
    ck_assert_int_gt(parse("GET / HTTP/1.0\r\n\r\n", &q), 0); /* 1.0: no Host needed */
    ck_assert_int_eq(q.keep_alive, 0);
    ck_assert_int_gt(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &q), 0);
    ck_assert_int_eq(q.keep_alive, 1);
    ck_assert_int_gt(parse("GET http://h:1/metrics HTTP/1.1\r\nHost: h\r\n\r\n", &q), 0);
    ck_assert_str_eq(q.path, "/metrics");
    ck_assert_int_gt(parse("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", &q), 0);
    ck_assert_int_gt(parse("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", &q), 0);
    ck_assert_str_eq(q.method, "POST");
    ck_assert_int_eq(q.has_body, 1);
    ck_assert_int_eq(q.keep_alive, 0);
    /* Pipelined: the first head only. */
    const char *two = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    ck_assert_int_eq(parse(two, &q), (int)strlen(two) / 2);
    ck_assert_str_eq(q.path, "/a");
    /* Incomplete: more bytes needed. */
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n", &q), 0);
    ck_assert_int_eq(parse("GE", &q), 0);
}
END_TEST

START_TEST(test_parse_bad)
{
    http_request_t q;
    static const char *const bad400[] = {
        "garbage\r\n\r\n",
        "GET /metrics\r\nHost: x\r\n\r\n",           /* no version */
        "GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", /* two spaces */
        "GET /metrics HTTP/1.1 \r\nHost: x\r\n\r\n", /* trailing space */
        "GET /metrics HTTP/1.1\nHost: x\n\n",        /* bare LF */
        "GET /metrics HTTP/1.1\r\nHost: x\n\r\n",    /* one bare LF */
        "GET /metrics HTTP/1.1\r\nHost x\r\n\r\n",   /* no colon */
        "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", /* space before colon */
        "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n\r\n", /* 1.1 without Host */
        "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: "
        "chunked\r\n\r\n",
        "GET metrics HTTP/1.1\r\nHost: x\r\n\r\n", /* not origin-form */
        "GET /metrics HTTX/1.1\r\nHost: x\r\n\r\n",
        "GET /met\001rics HTTP/1.1\r\nHost: x\r\n\r\n", /* control byte */
        "GET /metrics HTTP/1.1\r\nHost: x\rY\r\n\r\n",  /* CR without LF */
        "G(T /metrics HTTP/1.1\r\nHost: x\r\n\r\n",     /* not a token */
    };
    for (size_t i = 0; i < sizeof(bad400) / sizeof(bad400[0]); i++)
        ck_assert_msg(parse(bad400[i], &q) == -400, "case %zu: %d", i, parse(bad400[i], &q));
    ck_assert_int_eq(parse("GET / HTTP/2.0\r\nHost: x\r\n\r\n", &q), -505);
    /* A head over 8 KiB: refused whether or not it is complete. */
    size_t n = HTTP_MAX_HEAD + 100;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    static const char pre[] = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ";
    memcpy(big, pre, sizeof(pre) - 1);
    big[n] = '\0';
    ck_assert_int_eq(http_parse(big, n, &q), -400);
    memcpy(big + n - 4, "\r\n\r\n", 4);
    ck_assert_int_eq(http_parse(big, n, &q), -400);
    free(big);
    char longpath[HTTP_MAX_PATH + 64];
    memset(longpath, 'p', sizeof(longpath));
    int k = snprintf(longpath, sizeof(longpath), "GET /");
    memset(longpath + k, 'p', HTTP_MAX_PATH);
    snprintf(longpath + k + HTTP_MAX_PATH, 40, " HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(parse(longpath, &q), -414);
}
END_TEST

/* ---- A live server --------------------------------------------------------------*/

static uv_loop_t g_loop;
static http_server_t *g_srv;
static uv_async_t g_stop;
static pthread_t g_thread;
static int g_port;
static int g_hits;

static void on_hello(void *arg, const http_request_t *req, http_response_t *resp)
{
    (void)arg;
    (void)req;
    g_hits++;
    resp->body = strdup("hello\n");
    resp->len = 6;
}

static void on_stop(uv_async_t *a)
{
    http_server_close(g_srv);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&g_loop, UV_RUN_DEFAULT);
    return NULL;
}

static void server_up(void)
{
    char err[256];
    ck_assert_int_eq(uv_loop_init(&g_loop), 0);
    ck_assert_msg(http_server_start(&g_loop, "127.0.0.1:0", &g_srv, err, sizeof(err)) == 0, "%s",
                  err);
    ck_assert_int_eq(http_route(g_srv, "/hello", on_hello, NULL), 0);
    g_port = http_server_port(g_srv);
    ck_assert_int_gt(g_port, 0);
    uv_async_init(&g_loop, &g_stop, on_stop);
    pthread_create(&g_thread, NULL, loop_main, NULL);
}

static void server_down(void)
{
    uv_async_send(&g_stop);
    pthread_join(g_thread, NULL);
    ck_assert_int_eq(uv_loop_close(&g_loop), 0); /* every handle closed and freed */
}

static int raw(const char *bytes)
{
    return obs_raw_status("127.0.0.1", g_port, bytes, strlen(bytes));
}

START_TEST(test_server_status_codes)
{
    server_up();
    int st;
    char *body = NULL;
    ck_assert_int_eq(obs_get("127.0.0.1", g_port, "/hello", &st, &body), 0);
    ck_assert_int_eq(st, 200);
    ck_assert_str_eq(body, "hello\n");
    free(body);
    ck_assert_int_eq(raw("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
    ck_assert_int_eq(raw("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"), 405);
    ck_assert_int_eq(raw("DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n"), 405);
    ck_assert_int_eq(raw("garbage\r\n\r\n"), 400);
    ck_assert_int_eq(raw("GET /hello HTTP/1.1\nHost: x\n\n"), 400);
    ck_assert_int_eq(raw("GET /hello HTTP/1.1\r\n\r\n"), 400);
    ck_assert_int_eq(raw("GET /hello HTTP/3.0\r\nHost: x\r\n\r\n"), 505);
    /* Oversize headers: 400, then the server still serves. */
    size_t n = 3 * HTTP_MAX_HEAD;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    static const char pre[] = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ";
    memcpy(big, pre, sizeof(pre) - 1);
    big[n] = '\0';
    ck_assert_int_eq(raw(big), 400);
    free(big);
    ck_assert_int_eq(raw("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), 400); /* TLS hello */
    ck_assert_int_eq(obs_get("127.0.0.1", g_port, "/hello", &st, NULL), 0);
    ck_assert_int_eq(st, 200);
    server_down();
}
END_TEST

START_TEST(test_server_keepalive_pipelining)
{
    server_up();
    int fd = obs_connect("127.0.0.1", g_port, 5000);
    ck_assert_int_ge(fd, 0);
    int st;
    char *body;
    /* Two requests, one after the other, on one connection. */
    for (int i = 0; i < 2; i++) {
        const char *q = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
        ck_assert_int_eq(obs_send(fd, q, strlen(q)), 0);
        ck_assert_int_eq(obs_read_response(fd, &st, &body, NULL), 0);
        ck_assert_int_eq(st, 200);
        ck_assert_str_eq(body, "hello\n");
        free(body);
    }
    /* Three pipelined: GET, HEAD (no body), then GET with close. */
    const char *p = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                    "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    ck_assert_int_eq(obs_send(fd, p, strlen(p)), 0);
    ck_assert_int_eq(obs_read_response(fd, &st, &body, NULL), 0);
    ck_assert_int_eq(st, 200);
    free(body);
    /* HEAD: Content-Length says 6, no body follows; read the header only. */
    char hb[512];
    size_t hn = 0;
    while (hn < 4 || memcmp(hb + hn - 4, "\r\n\r\n", 4) != 0) {
        ck_assert_int_eq(recv(fd, hb + hn, 1, 0), 1);
        hn++;
    }
    hb[hn] = '\0';
    ck_assert_ptr_nonnull(strstr(hb, "Content-Length: 6\r\n"));
    ck_assert_int_eq(obs_read_response(fd, &st, &body, NULL), 0);
    ck_assert_str_eq(body, "hello\n");
    free(body);
    char c;
    ck_assert_int_eq(recv(fd, &c, 1, 0), 0); /* closed after Connection: close */
    close(fd);
    server_down();
}
END_TEST

START_TEST(test_server_many_connections)
{
    server_up();
    enum { N = 100 };
    int fds[N];
    /* Open them all first (the server holds them), then use each. */
    for (int i = 0; i < N; i++) {
        fds[i] = obs_connect("127.0.0.1", g_port, 5000);
        ck_assert_int_ge(fds[i], 0);
    }
    const char *q = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(obs_send(fds[i], q, strlen(q)), 0);
    for (int i = 0; i < N; i++) {
        int st;
        ck_assert_int_eq(obs_read_response(fds[i], &st, NULL, NULL), 0);
        ck_assert_int_eq(st, 200);
        close(fds[i]);
    }
    /* A half-sent request stays pending; a whole one on another connection
     * is answered meanwhile. */
    int slow = obs_connect("127.0.0.1", g_port, 5000);
    ck_assert_int_eq(obs_send(slow, "GET /hel", 8), 0);
    ck_assert_int_eq(raw("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
    ck_assert_int_eq(obs_send(slow, "lo HTTP/1.1\r\nHost: x\r\n\r\n", 25), 0);
    int st;
    ck_assert_int_eq(obs_read_response(slow, &st, NULL, NULL), 0);
    ck_assert_int_eq(st, 200);
    close(slow);
    server_down();
}
END_TEST

START_TEST(test_resolve_addr)
{
    char out[64];
    ck_assert_int_eq(http_resolve_addr(":9100", "127.0.0.5", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "127.0.0.5:9100");
    ck_assert_int_eq(http_resolve_addr("0.0.0.0:80", "127.0.0.5", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "0.0.0.0:80");
    ck_assert_int_eq(http_resolve_addr("nope", "h", out, sizeof(out)), -1);
    ck_assert_int_eq(http_resolve_addr(":0", "h", out, sizeof(out)), -1);
    ck_assert_int_eq(http_resolve_addr(":70000", "h", out, sizeof(out)), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *m = tcase_create("metrics");
    tcase_add_test(m, test_counter_labels);
    tcase_add_test(m, test_histogram_cumulative);
    tcase_add_test(m, test_gauges_and_process);
    tcase_add_test(m, test_bad_registrations);
    suite_add_tcase(s, m);
    TCase *p = tcase_create("http_parse");
    tcase_add_test(p, test_parse_good);
    tcase_add_test(p, test_parse_bad);
    tcase_add_test(p, test_resolve_addr);
    suite_add_tcase(s, p);
    TCase *h = tcase_create("http_server");
    tcase_add_test(h, test_server_status_codes);
    tcase_add_test(h, test_server_keepalive_pipelining);
    tcase_add_test(h, test_server_many_connections);
    tcase_set_timeout(h, 60);
    suite_add_tcase(s, h);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
