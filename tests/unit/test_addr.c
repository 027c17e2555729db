/* addr.h: splitting host:port, numeric parsing without lookups, the
 * blocking lookup and its error sentence, the loop lookup.
 *
 * Names used: "localhost" (every /etc/hosts has it) and a name whose first
 * label is longer than DNS allows (63 bytes), which no resolver can find
 * and which fails without sending a query. */
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "addr.h"

#define LONG_LABEL "a123456789b123456789c123456789d123456789e123456789f123456789g123456789.test"

START_TEST(test_split_forms)
{
    char host[ADDR_HOST_MAX], port[8];
    ck_assert_int_eq(addr_split("10.0.0.1:7001", host, sizeof(host), port, sizeof(port)), 0);
    ck_assert_str_eq(host, "10.0.0.1");
    ck_assert_str_eq(port, "7001");
    ck_assert_int_eq(addr_split("[::1]:7101", host, sizeof(host), port, sizeof(port)), 0);
    ck_assert_str_eq(host, "::1");
    ck_assert_str_eq(port, "7101");
    ck_assert_int_eq(addr_split("n1.shale.test:7001", host, sizeof(host), port, sizeof(port)), 0);
    ck_assert_str_eq(host, "n1.shale.test");
    ck_assert_int_eq(addr_split("127.0.0.1:0", host, sizeof(host), port, sizeof(port)), 0);
    ck_assert_str_eq(port, "0"); /* a bind to any port (the tests' --http :0) */
    const char *bad[] = {"noport", ":7001",     "h:",        "h:-1", "h:65536",
                         "h:70x",  "[::1]7001", "[::1:7001", NULL};
    for (int i = 0; bad[i] != NULL; i++)
        ck_assert_msg(addr_split(bad[i], host, sizeof(host), port, sizeof(port)) != 0, "%s",
                      bad[i]);
    char tiny[4];
    ck_assert_int_ne(addr_split("abcd:1", tiny, sizeof(tiny), port, sizeof(port)), 0);
    ck_assert_int_ne(addr_split(NULL, host, sizeof(host), port, sizeof(port)), 0);
}
END_TEST

START_TEST(test_numeric_never_looks_up)
{
    struct sockaddr_storage ss;
    ck_assert_int_eq(addr_numeric("10.0.0.1:7001", 0, &ss), 0);
    ck_assert_int_eq(ss.ss_family, AF_INET);
    ck_assert_int_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 7001);
    ck_assert_int_eq(addr_numeric("10.0.0.1:7001", 1, &ss), 0);
    ck_assert_int_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 0);
    ck_assert_int_eq(addr_numeric("[::1]:7101", 0, &ss), 0);
    ck_assert_int_eq(ss.ss_family, AF_INET6);
    ck_assert_int_eq(addr_numeric("localhost:7001", 0, &ss), -1);
    ck_assert_int_eq(addr_is_numeric("127.0.0.5:1"), 1);
    ck_assert_int_eq(addr_is_numeric("n1.shale.test:1"), 0);
    ck_assert_int_eq(addr_is_numeric("garbage"), 0);
}
END_TEST

START_TEST(test_blocking_lookup)
{
    struct sockaddr_storage ss;
    char err[600] = "";
    ck_assert_int_eq(addr_resolve_blocking("127.0.0.9:80", AF_UNSPEC, &ss, err, sizeof(err)), 0);
    ck_assert_int_eq(ss.ss_family, AF_INET);
    ck_assert_int_eq(addr_resolve_blocking("localhost:80", AF_INET, &ss, err, sizeof(err)), 0);
    ck_assert_int_eq(ss.ss_family, AF_INET);
    ck_assert_int_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 80);
    /* A literal of the wrong family is refused, not looked up. */
    ck_assert_int_eq(addr_resolve_blocking("[::1]:80", AF_INET, &ss, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "not an IPv4 address") != NULL, "%s", err);
    ck_assert_int_eq(addr_resolve_blocking("nocolon", AF_UNSPEC, &ss, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "'nocolon' is not HOST:PORT") != NULL, "%s", err);
    /* A name nobody can resolve: the address and the resolver's reason. */
    ck_assert_int_eq(addr_resolve_blocking(LONG_LABEL ":80", AF_UNSPEC, &ss, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "cannot resolve '" LONG_LABEL ":80': ") != NULL &&
                      strlen(err) > strlen("cannot resolve '" LONG_LABEL ":80': "),
                  "%s", err);
}
END_TEST

static int g_status = 1, g_family;

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    (void)req;
    g_status = status;
    g_family = res != NULL ? res->ai_family : 0;
    uv_freeaddrinfo(res);
}

START_TEST(test_loop_lookup)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_getaddrinfo_t req;
    ck_assert_int_eq(addr_resolve_start(&loop, &req, on_resolved, "bad"), UV_EINVAL);
    ck_assert_int_eq(addr_resolve_start(&loop, &req, on_resolved, "127.0.0.1:7001"), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(g_status, 0);
    ck_assert_int_eq(g_family, AF_INET);
    g_status = 1;
    ck_assert_int_eq(addr_resolve_start(&loop, &req, on_resolved, "localhost:7001"), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(g_status, 0);
    ck_assert_int_eq(addr_resolve_start(&loop, &req, on_resolved, LONG_LABEL ":7001"), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_ne(g_status, 0);
    char err[600];
    addr_resolve_error(LONG_LABEL ":7001", g_status, err, sizeof(err));
    ck_assert_msg(strncmp(err, "cannot resolve '" LONG_LABEL ":7001': ", 16) == 0, "%s", err);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("addr");
    TCase *tc = tcase_create("addr");
    tcase_add_test(tc, test_split_forms);
    tcase_add_test(tc, test_numeric_never_looks_up);
    tcase_add_test(tc, test_blocking_lookup);
    tcase_add_test(tc, test_loop_lookup);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
