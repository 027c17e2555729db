/* The jepsen history format (jepsen/history.c): JSON-lines round trip,
 * clear errors naming the line for malformed input, and the pairing of
 * invokes with completions (open invokes become info ops). */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checker.h"
#include "history.h"
#include "shale_errors.h"

static const char *good =
    "{\"process\":3,\"type\":\"invoke\",\"f\":\"write\",\"key\":\"k1\",\"value\":5,\"time_us\":100}"
    "\n"
    "\n"
    "{\"process\":4,\"type\":\"invoke\",\"f\":\"cas\",\"key\":\"k\\\"2\",\"expect\":null,"
    "\"value\":\"x\",\"time_us\":110, \"extra\":{\"a\":[1,{\"b\":null}]}}\n"
    "{\"process\":3,\"type\":\"ok\",\"f\":\"write\",\"key\":\"k1\",\"value\":5,\"time_us\":200}\n"
    "{\"process\":5,\"type\":\"invoke\",\"f\":\"stale_read\",\"key\":\"k1\",\"time_us\":150,"
    "\"bound_ms\":250}\n"
    "{\"process\":5,\"type\":\"ok\",\"f\":\"stale_read\",\"key\":\"k1\",\"value\":5,"
    "\"time_us\":300,\"bound_ms\":250}\n"
    "  {\"time_us\":400,\"f\":\"read\",\"type\":\"invoke\",\"key\":\"s\",\"process\":6}  \n"
    "{\"process\":6,\"type\":\"ok\",\"f\":\"read\",\"key\":\"s\",\"value\":[1,\"two\",-3, 7e1],"
    "\"time_us\":450}\n";

START_TEST(parse_good_and_round_trip)
{
    char err[256] = "";
    jep_history *h;
    ck_assert_int_eq(jep_history_parse(good, &h, err, sizeof(err)), 0);
    ck_assert_uint_eq(h->n, 7);
    ck_assert_int_eq(h->ev[0].process, 3);
    ck_assert_int_eq(h->ev[0].line, 1);
    ck_assert_int_eq(h->ev[1].line, 3); /* the blank line is skipped but counted */
    ck_assert_str_eq(h->ev[1].key, "k\"2");
    ck_assert_int_eq(h->ev[1].expect.kind, JEP_V_NULL);
    ck_assert_str_eq(h->ev[1].value.text, "\"x\"");
    ck_assert_int_eq(h->ev[3].bound_ms, 250);
    ck_assert_int_eq(h->ev[6].value.kind, JEP_V_ARRAY);
    ck_assert_uint_eq(h->ev[6].value.n, 4);
    ck_assert_str_eq(h->ev[6].value.elems[1], "\"two\"");

    /* write + read back: the same events */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_int_eq(jep_history_write(f, h), 0);
    fclose(f);
    jep_history *h2;
    ck_assert_msg(jep_history_parse(buf, &h2, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(h2->n, h->n);
    for (size_t i = 0; i < h->n; i++) {
        ck_assert_int_eq(h2->ev[i].process, h->ev[i].process);
        ck_assert_int_eq(h2->ev[i].type, h->ev[i].type);
        ck_assert_int_eq(h2->ev[i].f, h->ev[i].f);
        ck_assert_str_eq(h2->ev[i].key, h->ev[i].key);
        ck_assert(jep_value_eq(&h2->ev[i].value, &h->ev[i].value));
        ck_assert(jep_value_eq(&h2->ev[i].expect, &h->ev[i].expect));
        ck_assert_int_eq(h2->ev[i].time_us, h->ev[i].time_us);
        ck_assert_int_eq(h2->ev[i].bound_ms, h->ev[i].bound_ms);
    }
    free(buf);
    jep_history_free(h2);
    jep_history_free(h);
}
END_TEST

START_TEST(integers_are_canonical)
{
    char err[256];
    jep_history *h;
    ck_assert_int_eq(jep_history_parse("{\"process\":1,\"type\":\"invoke\",\"f\":\"write\","
                                       "\"key\":\"k\",\"value\":-0,\"time_us\":1}\n"
                                       "{\"process\":2,\"type\":\"invoke\",\"f\":\"write\","
                                       "\"key\":\"k\",\"value\":1.50,\"time_us\":1}",
                                       &h, err, sizeof(err)),
                     0);
    ck_assert_str_eq(h->ev[0].value.text, "0");
    ck_assert_str_eq(h->ev[1].value.text, "1.50");
    jep_history_free(h);
}
END_TEST

/* Every malformed line is refused with its line number and a reason. */
START_TEST(malformed_lines)
{
    static const struct {
        const char *line, *want;
    } cases[] = {
        {"not json", "expected a JSON object"},
        {"{\"process\":1,\"type\":\"ok\"", "expected ','"},
        {"{\"process\":1,\"type\":\"begin\",\"f\":\"read\",\"key\":\"k\",\"time_us\":1}",
         "bad type"},
        {"{\"process\":1,\"type\":\"ok\",\"f\":\"get\",\"key\":\"k\",\"time_us\":1}", "bad f"},
        {"{\"process\":\"x\",\"type\":\"ok\",\"f\":\"read\",\"key\":\"k\",\"time_us\":1}",
         "\"process\" must be an integer"},
        {"{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"key\":\"k\",\"time_us\":1.5}",
         "\"time_us\" must be an integer"},
        {"{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"key\":\"k\"}", "missing \"time_us\""},
        {"{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"time_us\":1}", "missing \"key\""},
        {"{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"key\":\"k\",\"time_us\":1} x",
         "trailing text"},
        {"{\"process\":1,\"type\":\"invoke\",\"f\":\"stale_read\",\"key\":\"k\",\"time_us\":1}",
         "needs \"bound_ms\""},
        {"{\"process\":1,\"type\":\"invoke\",\"f\":\"cas\",\"key\":\"k\",\"value\":1,"
         "\"time_us\":1}",
         "needs \"expect\""},
        {"{\"process\":1,\"type\":\"invoke\",\"f\":\"write\",\"key\":\"k\",\"time_us\":1}",
         "needs \"value\""},
        {"{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"key\":\"k\",\"time_us\":1,"
         "\"value\":\"ab",
         "unterminated string"},
        {"{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"key\":\"k\",\"value\":[1,[2]],"
         "\"time_us\":1}",
         "expected a value"},
        {"{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"key\":\"k\",\"value\":01,"
         "\"time_us\":1}",
         "leading zero"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512], err[256] = "";
        snprintf(text, sizeof(text),
                 "{\"process\":9,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"a\",\"time_us\":0}\n"
                 "%s\n",
                 cases[i].line);
        jep_history *h = (jep_history *)1;
        ck_assert_int_eq(jep_history_parse(text, &h, err, sizeof(err)), SHALE_EINVAL);
        ck_assert_ptr_null(h);
        ck_assert_msg(strstr(err, "line 2: ") == err, "case %zu: %s", i, err);
        ck_assert_msg(strstr(err, cases[i].want), "case %zu: want '%s' in '%s'", i, cases[i].want,
                      err);
    }
}
END_TEST

START_TEST(missing_file)
{
    char err[256];
    jep_history *h;
    ck_assert_int_eq(jep_history_read_file("/nonexistent/h.jsonl", &h, err, sizeof(err)),
                     SHALE_EIO);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/h.jsonl"));
}
END_TEST

START_TEST(pairing)
{
    char err[256];
    jep_history *h = jep_history_new();
    /* p1: write ok; p2: read ok; p3: cas with no completion (info);
     * p4: write with an explicit info completion; p5: write fail */
    ck_assert_int_eq(jep_history_append(h, 1, JEP_INVOKE, JEP_WRITE, "k", "1", NULL, 10, -1), 0);
    ck_assert_int_eq(jep_history_append(h, 2, JEP_INVOKE, JEP_READ, "k", NULL, NULL, 5, -1), 0);
    ck_assert_int_eq(jep_history_append(h, 3, JEP_INVOKE, JEP_CAS, "k", "2", "1", 20, -1), 0);
    ck_assert_int_eq(jep_history_append(h, 1, JEP_OK, JEP_WRITE, "k", "1", NULL, 30, -1), 0);
    ck_assert_int_eq(jep_history_append(h, 2, JEP_OK, JEP_READ, "k", "null", NULL, 15, -1), 0);
    ck_assert_int_eq(jep_history_append(h, 4, JEP_INVOKE, JEP_WRITE, "k", "3", NULL, 40, -1), 0);
    ck_assert_int_eq(jep_history_append(h, 4, JEP_INFO, JEP_WRITE, "k", "3", NULL, 90, -1), 0);
    ck_assert_int_eq(jep_history_append(h, 5, JEP_INVOKE, JEP_WRITE, "k", "4", NULL, 50, -1), 0);
    ck_assert_int_eq(jep_history_append(h, 5, JEP_FAIL, JEP_WRITE, "k", "4", NULL, 60, -1), 0);
    jep_op *ops;
    size_t n;
    ck_assert_msg(jep_history_ops(h, &ops, &n, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(n, 5);
    /* sorted by invoke time */
    ck_assert_int_eq(ops[0].process, 2);
    ck_assert_int_eq(ops[0].outcome, JEP_OK);
    ck_assert_int_eq(ops[0].value->kind, JEP_V_NULL);
    ck_assert_int_eq(ops[1].process, 1);
    ck_assert_int_eq(ops[1].ret_us, 30);
    ck_assert_int_eq(ops[2].process, 3);
    ck_assert_int_eq(ops[2].outcome, JEP_INFO);
    ck_assert(ops[2].ret_us == INT64_MAX);
    ck_assert_str_eq(ops[2].expect->text, "1");
    ck_assert_int_eq(ops[3].outcome, JEP_INFO);
    ck_assert(ops[3].ret_us == INT64_MAX);
    ck_assert_int_eq(ops[4].outcome, JEP_FAIL);
    free(ops);
    jep_history_free(h);
}
END_TEST

static void expect_pair_error(const char *text, const char *want)
{
    char err[256] = "";
    jep_history *h;
    ck_assert_int_eq(jep_history_parse(text, &h, err, sizeof(err)), 0);
    jep_op *ops = (jep_op *)1;
    size_t n;
    ck_assert_int_eq(jep_history_ops(h, &ops, &n, err, sizeof(err)), SHALE_EINVAL);
    ck_assert_ptr_null(ops);
    ck_assert_msg(strstr(err, want), "want '%s' in '%s'", want, err);
    jep_history_free(h);
}

START_TEST(pairing_errors)
{
    expect_pair_error(
        "{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"key\":\"k\",\"value\":1,\"time_us\":1}",
        "line 1: ok for process 1 with no open invoke");
    expect_pair_error(
        "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\",\"time_us\":1}\n"
        "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\",\"time_us\":2}",
        "line 2: process 1 invokes while its op from line 1 is open");
    expect_pair_error(
        "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\",\"time_us\":1}\n"
        "{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"key\":\"j\",\"value\":1,\"time_us\":2}",
        "does not match invoke");
    expect_pair_error(
        "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\",\"time_us\":5}\n"
        "{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"key\":\"k\",\"value\":1,\"time_us\":2}",
        "before its invoke");
    expect_pair_error(
        "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\",\"time_us\":1}\n"
        "{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"key\":\"k\",\"time_us\":2}",
        "an ok read needs \"value\"");
}
END_TEST

/* Damaged input never crashes the reader or the checkers: flip, drop and
 * insert bytes of a good history; whatever parses is paired and checked
 * under every model. (Run under ASan/UBSan in the sanitizer build.) */
START_TEST(damaged_input_never_crashes)
{
    uint64_t x = 88172645463325252ull;
    size_t len = strlen(good);
    char *buf = malloc(len + 64);
    int parsed = 0;
    for (int round = 0; round < 3000; round++) {
        memcpy(buf, good, len + 1);
        size_t n = len;
        for (int k = 0; k < 1 + round % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = x % n;
            static const char alphabet[] = "{}[]\",:-0123456789 \n\"nulltrue\\e.";
            char c = alphabet[(x >> 32) % (sizeof(alphabet) - 1)];
            switch ((x >> 20) % 3) {
            case 0:
                buf[at] = c;
                break;
            case 1:
                memmove(buf + at, buf + at + 1, n - at);
                n--;
                break;
            default:
                memmove(buf + at + 1, buf + at, n - at + 1);
                buf[at] = c;
                n++;
                break;
            }
        }
        char err[256];
        jep_history *h;
        if (jep_history_parse(buf, &h, err, sizeof(err)))
            continue;
        parsed++;
        jep_op *ops;
        size_t nops;
        if (jep_history_ops(h, &ops, &nops, err, sizeof(err)) == 0) {
            for (int m = JEP_MODEL_REGISTER; m <= JEP_MODEL_STALE; m++) {
                jep_result r;
                jep_opts o = {.max_steps = 10000};
                ck_assert_int_eq(jep_check((jep_model)m, ops, nops, &o, &r), 0);
                jep_result_free(&r);
            }
            free(ops);
        }
        jep_history_free(h);
    }
    free(buf);
    ck_assert_int_gt(parsed, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jepsen_history");
    TCase *tc = tcase_create("history");
    tcase_add_test(tc, parse_good_and_round_trip);
    tcase_add_test(tc, integers_are_canonical);
    tcase_add_test(tc, malformed_lines);
    tcase_add_test(tc, missing_file);
    tcase_add_test(tc, pairing);
    tcase_add_test(tc, pairing_errors);
    tcase_add_test(tc, damaged_input_never_crashes);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
