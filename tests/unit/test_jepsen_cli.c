/* jepsen-check, the CLI (jepsen/main.c): exit codes 0 valid, 1 invalid,
 * 2 unknown, 3 usage or I/O error; the verdict, the offending
 * sub-history and the summary on stdout. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[256];
static char out[1 << 16];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/shale-jepsen-cli-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Run jepsen-check with args; stdout+stderr into out; returns the exit code. */
static int run(const char *args)
{
    const char *bin = getenv("SHALE_BIN_DIR");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/jepsen/jepsen-check %s > '%s/out' 2>&1", bin ? bin : ".", args,
             dir);
    int st = system(cmd);
    ck_assert(WIFEXITED(st));
    char path[512];
    snprintf(path, sizeof(path), "%s/out", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = 0;
    fclose(f);
    return WEXITSTATUS(st);
}

#define EV(p, type, f, extra, t)                                                                   \
    "{\"process\":" #p ",\"type\":\"" type "\",\"f\":\"" f "\",\"key\":\"k\"" extra                \
    ",\"time_us\":" #t "}\n"

static const char *valid_h =
    EV(1, "invoke", "write", ",\"value\":1", 0) EV(1, "ok", "write", ",\"value\":1", 10)
        EV(2, "invoke", "read", "", 20) EV(2, "ok", "read", ",\"value\":1", 30);

static const char *invalid_h =
    EV(1, "invoke", "write", ",\"value\":1", 0) EV(1, "ok", "write", ",\"value\":1", 10)
        EV(1, "invoke", "write", ",\"value\":2", 20) EV(1, "ok", "write", ",\"value\":2", 30)
            EV(2, "invoke", "read", "", 40) EV(2, "ok", "read", ",\"value\":1", 50);

START_TEST(valid_exit_0)
{
    char args[600];
    snprintf(args, sizeof(args), "'%s'", write_file("v.jsonl", valid_h));
    ck_assert_int_eq(run(args), 0);
    ck_assert_ptr_nonnull(strstr(out, "verdict: VALID"));
    ck_assert_ptr_nonnull(strstr(out, "write              1        0        0        1"));
    /* the same file as a stale-read history: also valid */
    snprintf(args, sizeof(args), "'%s/v.jsonl' --model stale --timeout 5", dir);
    ck_assert_int_eq(run(args), 0);
}
END_TEST

START_TEST(invalid_exit_1_with_sub_history)
{
    char args[600];
    snprintf(args, sizeof(args), "'%s' --model register", write_file("i.jsonl", invalid_h));
    ck_assert_int_eq(run(args), 1);
    ck_assert_ptr_nonnull(strstr(out, "verdict: INVALID"));
    ck_assert_ptr_nonnull(strstr(out, "offending sub-history"));
    ck_assert_ptr_nonnull(
        strstr(out, "p2    read       k        1  ok   [40, 50] us  (lines 5-6)"));
}
END_TEST

START_TEST(unknown_exit_2)
{
    /* 40 concurrent writes, then two reads no order explains */
    char *h = malloc(1 << 16);
    size_t off = 0;
    for (int i = 1; i <= 40; i++)
        off += (size_t)snprintf(h + off, (1 << 16) - off,
                                "{\"process\":%d,\"type\":\"invoke\",\"f\":\"write\",\"key\":\"k\","
                                "\"value\":%d,\"time_us\":0}\n",
                                i, i);
    for (int i = 1; i <= 40; i++)
        off += (size_t)snprintf(h + off, (1 << 16) - off,
                                "{\"process\":%d,\"type\":\"ok\",\"f\":\"write\",\"key\":\"k\","
                                "\"value\":%d,\"time_us\":1000}\n",
                                i, i);
    snprintf(h + off, (1 << 16) - off, "%s",
             EV(100, "invoke", "read", "", 2000) EV(100, "ok", "read", ",\"value\":1", 2010)
                 EV(100, "invoke", "read", "", 3000) EV(100, "ok", "read", ",\"value\":2", 3010));
    char args[600];
    snprintf(args, sizeof(args), "'%s' --timeout 0.3", write_file("u.jsonl", h));
    free(h);
    ck_assert_int_eq(run(args), 2);
    ck_assert_ptr_nonnull(strstr(out, "time bound reached"));
    ck_assert_ptr_nonnull(strstr(out, "verdict: UNKNOWN"));
}
END_TEST

START_TEST(usage_and_io_exit_3)
{
    ck_assert_int_eq(run(""), 3);
    ck_assert_ptr_nonnull(strstr(out, "usage:"));
    ck_assert_int_eq(run("x.jsonl --model graph"), 3);
    ck_assert_int_eq(run("x.jsonl --timeout -1"), 3);
    ck_assert_int_eq(run("x.jsonl --bogus"), 3);
    ck_assert_int_eq(run("/nonexistent/h.jsonl"), 3);
    ck_assert_ptr_nonnull(strstr(out, "/nonexistent/h.jsonl: No such file"));
    char args[600];
    snprintf(args, sizeof(args), "'%s'",
             write_file("bad.jsonl", "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":"
                                     "\"k\",\"time_us\":0}\n{\"process\":1,\"type\":\"ok\"\n"));
    ck_assert_int_eq(run(args), 3);
    ck_assert_ptr_nonnull(strstr(out, "bad.jsonl: line 2: expected ','"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jepsen_cli");
    TCase *tc = tcase_create("cli");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, valid_exit_0);
    tcase_add_test(tc, invalid_exit_1_with_sub_history);
    tcase_add_test(tc, unknown_exit_2);
    tcase_add_test(tc, usage_and_io_exit_3);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
