/* The RESP2 / RESP3 codec of the router (router/resp.c), driven directly:
 * every request form redis-server accepts, inline splitting by
 * sdssplitargs' rules, streams split at every byte boundary, pipelines of
 * thousands, each limit refused before anything is allocated for the
 * declared length, garbage, and the encoder's exact bytes in RESP2 and
 * RESP3. */
#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

/* ---- helpers ---- */

/* Appends a command as "[arg|arg]" (bytes outside printable ASCII, '|',
 * '[', ']' and '\\' as \xHH) to out, plus "i" before it for inline. */
static void render(char *out, size_t cap, const resp_cmd_t *c)
{
    size_t n = strlen(out);
    n += (size_t)snprintf(out + n, cap - n, "%s[", c->is_inline ? "i" : "");
    for (size_t i = 0; i < c->argc; i++) {
        /* every argument is NUL-terminated past its length */
        ck_assert_int_eq(c->argv[i][c->argvlen[i]], '\0');
        if (i > 0)
            n += (size_t)snprintf(out + n, cap - n, "|");
        for (size_t k = 0; k < c->argvlen[i]; k++) {
            unsigned char b = (unsigned char)c->argv[i][k];
            if (b < 0x20 || b >= 0x7f || b == '|' || b == '[' || b == ']' || b == '\\')
                n += (size_t)snprintf(out + n, cap - n, "\\x%02x", b);
            else
                n += (size_t)snprintf(out + n, cap - n, "%c", b);
        }
    }
    snprintf(out + n, cap - n, "]");
}

/* Drains the parser into out; returns the last next() result (0 when all
 * was consumed, RESP_EPROTO...). */
static int drain(resp_parser_t *p, char *out, size_t cap)
{
    resp_cmd_t c;
    int rv;
    while ((rv = resp_parser_next(p, &c)) == 1)
        render(out, cap, &c);
    return rv;
}

/* Feeds s in one piece with the given limits (NULL: defaults); the rendered
 * commands in out, the final code returned, the error text in err. */
static int parse_all(const resp_limits_t *lim, const char *s, size_t len, char *out, size_t cap,
                     char *err, size_t errcap)
{
    resp_parser_t p;
    resp_parser_init(&p, lim);
    out[0] = '\0';
    int rv = resp_parser_feed(&p, s, len);
    ck_assert_int_eq(rv, 0);
    rv = drain(&p, out, cap);
    if (err != NULL)
        snprintf(err, errcap, "%s", rv == RESP_EPROTO ? resp_parser_error(&p) : "");
    resp_parser_free(&p);
    return rv;
}

#define PARSE_OK(in, want)                                                                         \
    do {                                                                                           \
        char out_[4096];                                                                           \
        ck_assert_int_eq(parse_all(NULL, in, sizeof(in) - 1, out_, sizeof(out_), NULL, 0), 0);     \
        ck_assert_str_eq(out_, want);                                                              \
    } while (0)

#define PARSE_ERR(lim, in, want_cmds, want_err)                                                    \
    do {                                                                                           \
        char out_[4096], err_[128];                                                                \
        ck_assert_int_eq(                                                                          \
            parse_all(lim, in, sizeof(in) - 1, out_, sizeof(out_), err_, sizeof(err_)),            \
            RESP_EPROTO);                                                                          \
        ck_assert_str_eq(out_, want_cmds);                                                         \
        ck_assert_str_eq(err_, want_err);                                                          \
    } while (0)

/* ---- request forms ---- */

START_TEST(test_multibulk)
{
    PARSE_OK("*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n", "[GET|foo]");
    PARSE_OK("*1\r\n$4\r\nPING\r\n", "[PING]");
    /* empty and binary arguments: NUL, CR, LF inside a bulk are data */
    PARSE_OK("*3\r\n$3\r\nSET\r\n$0\r\n\r\n$5\r\na\0\r\nb\r\n", "[SET||a\\x00\\x0d\\x0ab]");
    /* `*0` and negative counts are skipped without a command, as Redis */
    PARSE_OK("*0\r\n*-1\r\n*-5\r\n*1\r\n$1\r\nx\r\n", "[x]");
    /* many per read */
    PARSE_OK("*1\r\n$1\r\na\r\n*2\r\n$1\r\nb\r\n$1\r\nc\r\n", "[a][b|c]");
    /* a multi-digit length */
    PARSE_OK("*1\r\n$10\r\n0123456789\r\n", "[0123456789]");
}
END_TEST

START_TEST(test_multibulk_argv_ownership)
{
    /* argv points into the parser and stays put until the next call */
    resp_parser_t p;
    resp_parser_init(&p, NULL);
    const char s[] = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    ck_assert_int_eq(resp_parser_feed(&p, s, sizeof(s) - 1), 0);
    resp_cmd_t c;
    ck_assert_int_eq(resp_parser_next(&p, &c), 1);
    ck_assert_uint_eq(c.argc, 2);
    ck_assert_uint_eq(c.argvlen[0], 3);
    ck_assert_str_eq(c.argv[0], "GET");
    ck_assert_str_eq(c.argv[1], "k");
    ck_assert_int_eq(c.is_inline, 0);
    ck_assert_uint_eq(resp_parser_pending(&p), 0);
    ck_assert_int_eq(resp_parser_next(&p, &c), 0);
    resp_parser_free(&p);
    /* free leaves a parser that can be initialised again; free twice is fine */
    resp_parser_free(&p);
}
END_TEST

START_TEST(test_inline)
{
    PARSE_OK("PING\r\n", "i[PING]");
    PARSE_OK("PING\n", "i[PING]");
    PARSE_OK("  set  a   b \t\r\n", "i[set|a|b]");
    /* empty lines yield nothing */
    PARSE_OK("\r\n\n   \r\nPING\r\n", "i[PING]");
    /* an inline line may follow a multibulk and the other way round */
    PARSE_OK("GET a\r\n*1\r\n$4\r\nPING\r\nECHO b\n", "i[GET|a][PING]i[ECHO|b]");
    /* a lone CR inside the line separates (sdssplitargs ends a token on \r) */
    PARSE_OK("a\rb\n", "i[a|b]");
    /* leading \v \f are whitespace (isspace), but do not end a token */
    PARSE_OK("\v\fa\vb\n", "i[a\\x0bb]");
}
END_TEST

START_TEST(test_inline_quotes)
{
    PARSE_OK("set \"a b\" 'c d'\r\n", "i[set|a b|c d]");
    PARSE_OK("echo \"\"\r\n", "i[echo|]");
    PARSE_OK("echo ''\r\n", "i[echo|]");
    /* double quotes: \xHH, \n \r \t \b \a, anything else escaped is itself */
    PARSE_OK("echo \"\\x41\\x4a\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n",
             "i[echo|AJ\\x0a\\x0d\\x09\\x08\\x07\\x5c\"q]");
    /* \x without two hex digits is an escaped 'x' */
    PARSE_OK("echo \"\\xZZ\" \"\\x4\"\n", "i[echo|xZZ|x4]");
    /* single quotes: only \' is an escape */
    PARSE_OK("echo 'it\\'s \\n'\n", "i[echo|it's \\x5cn]");
    /* a quote inside a token starts a quoted part of the same token */
    PARSE_OK("echo foo\"bar baz\"\n", "i[echo|foobar baz]");
    PARSE_OK("echo a'b c'\n", "i[echo|ab c]");
    /* a closing quote followed by whitespace or the end */
    PARSE_OK("echo \"a\"\tb\n", "i[echo|a|b]");
    PARSE_OK("echo \"a\"", ""); /* no LF yet: no command */
    PARSE_OK("echo \"a\"\n", "i[echo|a]");
    /* quotes may hold CR bytes of the line as escapes, not raw LFs */
    PARSE_OK("echo \"a\rb\"\n", "i[echo|a\\x0db]");
}
END_TEST

START_TEST(test_inline_unbalanced)
{
    const char *want = "ERR Protocol error: unbalanced quotes in request";
    PARSE_ERR(NULL, "echo \"abc\r\n", "", want);
    PARSE_ERR(NULL, "echo 'abc\n", "", want);
    PARSE_ERR(NULL, "echo \"a\"b\n", "", want);
    PARSE_ERR(NULL, "echo 'a'b\n", "", want);
    PARSE_ERR(NULL, "echo \"a\\\"\n", "", want); /* the closing quote escaped */
    PARSE_ERR(NULL, "echo \"ab\\\n", "", want);  /* a backslash last */
    /* a NUL in an inline line: Redis's strchr never finds its LF (it waits
     * for 64 KiB, then refuses); refused at once here */
    PARSE_ERR(NULL, "echo a\0b c\nPING\n", "", "ERR Protocol error: NUL byte in inline request");
    PARSE_ERR(NULL, "PING\necho \0", "i[PING]", "ERR Protocol error: NUL byte in inline request");
    /* a NUL after the LF belongs to the next line */
    PARSE_ERR(NULL, "PING\n\0", "i[PING]", "ERR Protocol error: NUL byte in inline request");
    /* commands before the error come first */
    PARSE_ERR(NULL, "PING\r\n*1\r\n$1\r\nx\r\necho \"\n", "i[PING][x]", want);
}
END_TEST

/* ---- streams split anywhere ---- */

static const char stream[] = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nv\r\nal\r\n"
                             "PING\r\n"
                             "*0\r\n"
                             "\r\n"
                             "set \"a b\" 'c'\n"
                             "*1\r\n$0\r\n\r\n"
                             "*2\r\n$4\r\nMGET\r\n$12\r\n0123456789ab\r\n";
static const char stream_want[] = "[SET|key|v\\x0d\\x0aal]i[PING]i[set|a b|c][][MGET|0123456789ab]";

START_TEST(test_split_every_boundary)
{
    size_t n = sizeof(stream) - 1;
    for (size_t cut = 0; cut <= n; cut++) {
        resp_parser_t p;
        resp_parser_init(&p, NULL);
        char out[1024] = "";
        ck_assert_int_eq(resp_parser_feed(&p, stream, cut), 0);
        ck_assert_int_eq(drain(&p, out, sizeof(out)), 0);
        ck_assert_int_eq(resp_parser_feed(&p, stream + cut, n - cut), 0);
        ck_assert_int_eq(drain(&p, out, sizeof(out)), 0);
        ck_assert_msg(strcmp(out, stream_want) == 0, "cut %zu: %s", cut, out);
        ck_assert_uint_eq(resp_parser_pending(&p), 0);
        resp_parser_free(&p);
    }
}
END_TEST

START_TEST(test_split_two_cuts)
{
    size_t n = sizeof(stream) - 1;
    for (size_t a = 0; a <= n; a++)
        for (size_t b = a; b <= n; b++) {
            resp_parser_t p;
            resp_parser_init(&p, NULL);
            char out[1024] = "";
            ck_assert_int_eq(resp_parser_feed(&p, stream, a), 0);
            ck_assert_int_eq(drain(&p, out, sizeof(out)), 0);
            ck_assert_int_eq(resp_parser_feed(&p, stream + a, b - a), 0);
            ck_assert_int_eq(drain(&p, out, sizeof(out)), 0);
            ck_assert_int_eq(resp_parser_feed(&p, stream + b, n - b), 0);
            ck_assert_int_eq(drain(&p, out, sizeof(out)), 0);
            ck_assert_msg(strcmp(out, stream_want) == 0, "cuts %zu %zu: %s", a, b, out);
            resp_parser_free(&p);
        }
}
END_TEST

START_TEST(test_byte_at_a_time)
{
    resp_parser_t p;
    resp_parser_init(&p, NULL);
    char out[1024] = "";
    for (size_t i = 0; i < sizeof(stream) - 1; i++) {
        ck_assert_int_eq(resp_parser_feed(&p, stream + i, 1), 0);
        ck_assert_int_eq(drain(&p, out, sizeof(out)), 0);
    }
    ck_assert_str_eq(out, stream_want);
    resp_parser_free(&p);
}
END_TEST

/* ---- pipelines ---- */

START_TEST(test_pipeline_thousands)
{
    enum { N = 20000 };
    size_t cap = (size_t)N * 64;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        char k[16], v[16];
        int kl = snprintf(k, sizeof(k), "k%d", i), vl = snprintf(v, sizeof(v), "v%d", i * 7);
        if (i % 5 == 4) /* every fifth inline, as a pipe of typed commands */
            len += (size_t)snprintf(s + len, cap - len, "SET %s %s\r\n", k, v);
        else
            len += (size_t)snprintf(s + len, cap - len,
                                    "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", kl, k, vl, v);
    }
    /* once in one read, once in reads of 7 bytes, once in reads of 4096 */
    size_t steps[] = {len, 7, 4096};
    for (size_t t = 0; t < 3; t++) {
        resp_parser_t p;
        resp_parser_init(&p, NULL);
        int seen = 0;
        for (size_t off = 0; off < len; off += steps[t]) {
            size_t n = len - off < steps[t] ? len - off : steps[t];
            ck_assert_int_eq(resp_parser_feed(&p, s + off, n), 0);
            resp_cmd_t c;
            int rv;
            while ((rv = resp_parser_next(&p, &c)) == 1) {
                char k[16], v[16];
                snprintf(k, sizeof(k), "k%d", seen);
                snprintf(v, sizeof(v), "v%d", seen * 7);
                ck_assert_uint_eq(c.argc, 3);
                ck_assert_str_eq(c.argv[0], "SET");
                ck_assert_str_eq(c.argv[1], k);
                ck_assert_str_eq(c.argv[2], v);
                ck_assert_int_eq(c.is_inline, seen % 5 == 4);
                seen++;
            }
            ck_assert_int_eq(rv, 0);
            /* the buffer holds at most a partial request plus one read */
            ck_assert_uint_le(resp_parser_pending(&p), 64 + n);
        }
        ck_assert_int_eq(seen, N);
        resp_parser_free(&p);
    }
    free(s);
}
END_TEST

START_TEST(test_many_args)
{
    /* one request of 100000 arguments: argv grows as they arrive */
    enum { N = 100000 };
    resp_parser_t p;
    resp_parser_init(&p, NULL);
    char h[32];
    int hl = snprintf(h, sizeof(h), "*%d\r\n", N + 1);
    ck_assert_int_eq(resp_parser_feed(&p, h, (size_t)hl), 0);
    ck_assert_int_eq(resp_parser_feed(&p, "$3\r\nDEL\r\n", 9), 0);
    resp_cmd_t c;
    for (int i = 0; i < N; i++) {
        char num[16], a[32];
        int nl = snprintf(num, sizeof(num), "%d", i);
        int al = snprintf(a, sizeof(a), "$%d\r\n%s\r\n", nl, num);
        ck_assert_int_eq(resp_parser_feed(&p, a, (size_t)al), 0);
        ck_assert_int_eq(resp_parser_next(&p, &c), i == N - 1 ? 1 : 0);
    }
    ck_assert_uint_eq(c.argc, N + 1);
    ck_assert_str_eq(c.argv[0], "DEL");
    ck_assert_str_eq(c.argv[N], "99999");
    resp_parser_free(&p);
}
END_TEST

/* ---- limits, before allocation ---- */

START_TEST(test_limit_args_default)
{
    /* Redis 7's limit: 2^31 - 1 elements */
    PARSE_ERR(NULL, "*2147483648\r\n", "", "ERR Protocol error: invalid multibulk length");
    PARSE_ERR(NULL, "*9223372036854775807\r\n", "", "ERR Protocol error: invalid multibulk length");
    /* the limit itself is taken (the elements have not come) */
    resp_parser_t p;
    resp_parser_init(&p, NULL);
    resp_cmd_t c;
    ck_assert_int_eq(resp_parser_feed(&p, "*2147483647\r\n", 13), 0);
    ck_assert_int_eq(resp_parser_next(&p, &c), 0);
    /* and nothing was sized from it: only the bytes that came */
    ck_assert_uint_lt(resp_parser_mem(&p), 64);
    /* elements arriving grow argv by what came */
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(resp_parser_feed(&p, "$1\r\nx\r\n", 7), 0);
    ck_assert_int_eq(resp_parser_next(&p, &c), 0);
    ck_assert_uint_lt(resp_parser_mem(&p), 8192);
    resp_parser_free(&p);
}
END_TEST

START_TEST(test_limit_preauth)
{
    /* before AUTH, as Redis 7 with a password: 10 elements, 16 KiB bulks,
     * with its "unauthenticated" texts */
    resp_limits_t lim;
    resp_limits_preauth(&lim);
    ck_assert_int_eq(lim.preauth, 1);
    PARSE_ERR(&lim, "*11\r\n", "", "ERR Protocol error: unauthenticated multibulk length");
    PARSE_ERR(&lim, "*1\r\n$16385\r\n", "", "ERR Protocol error: unauthenticated bulk length");
    /* malformed is still "invalid" */
    PARSE_ERR(&lim, "*x\r\n", "", "ERR Protocol error: invalid multibulk length");
    PARSE_ERR(&lim, "*1\r\n$-1\r\n", "", "ERR Protocol error: invalid bulk length");
    resp_parser_t p;
    resp_parser_init(&p, &lim);
    resp_cmd_t c;
    const char ok[] = "*10\r\n$16384\r\n";
    ck_assert_int_eq(resp_parser_feed(&p, ok, sizeof(ok) - 1), 0);
    ck_assert_int_eq(resp_parser_next(&p, &c), 0);
    resp_parser_free(&p);
}
END_TEST

START_TEST(test_limit_args_huge_not_allocated)
{
    /* with no count limit at all, a 2^63 - 1 header allocates no argv */
    resp_limits_t lim;
    resp_limits_default(&lim);
    lim.max_args = SIZE_MAX;
    resp_parser_t p;
    resp_parser_init(&p, &lim);
    resp_cmd_t c;
    ck_assert_int_eq(resp_parser_feed(&p, "*9223372036854775807\r\n", 22), 0);
    ck_assert_int_eq(resp_parser_next(&p, &c), 0);
    ck_assert_uint_lt(resp_parser_mem(&p), 64);
    ck_assert_int_eq(resp_parser_feed(&p, "*1\r\n", 4), 0);
    ck_assert_int_eq(resp_parser_next(&p, &c), RESP_EPROTO); /* an element must be '$' */
    resp_parser_free(&p);
    /* one past the limit is refused, the limit taken */
    lim.max_args = 3;
    PARSE_ERR(&lim, "*4\r\n", "", "ERR Protocol error: invalid multibulk length");
    char out[256];
    const char three[] = "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n";
    ck_assert_int_eq(parse_all(&lim, three, sizeof(three) - 1, out, sizeof(out), NULL, 0), 0);
    ck_assert_str_eq(out, "[a|b|c]");
}
END_TEST

START_TEST(test_limit_bulk)
{
    PARSE_ERR(NULL, "*1\r\n$999999999999\r\n", "", "ERR Protocol error: invalid bulk length");
    PARSE_ERR(NULL, "*1\r\n$536870913\r\n", "", "ERR Protocol error: invalid bulk length");
    /* 512 MiB itself is accepted, and nothing is allocated for it */
    resp_parser_t p;
    resp_parser_init(&p, NULL);
    resp_cmd_t c;
    const char hdr[] = "*1\r\n$536870912\r\n";
    ck_assert_int_eq(resp_parser_feed(&p, hdr, sizeof(hdr) - 1), 0);
    ck_assert_int_eq(resp_parser_next(&p, &c), 0);
    ck_assert_uint_lt(resp_parser_mem(&p), 64);
    resp_parser_free(&p);
    /* no limit at all (bulk and request): still nothing sized from it */
    resp_limits_t lim;
    resp_limits_default(&lim);
    lim.max_bulk = SIZE_MAX;
    lim.max_request = SIZE_MAX;
    resp_parser_init(&p, &lim);
    const char hdr2[] = "*1\r\n$999999999999\r\nabc";
    ck_assert_int_eq(resp_parser_feed(&p, hdr2, sizeof(hdr2) - 1), 0);
    ck_assert_int_eq(resp_parser_next(&p, &c), 0);
    ck_assert_uint_lt(resp_parser_mem(&p), 64);
    resp_parser_free(&p);
    /* a configured, lower limit: exactly it passes, one more is refused */
    resp_limits_default(&lim);
    lim.max_bulk = 4;
    PARSE_ERR(&lim, "*1\r\n$5\r\n", "", "ERR Protocol error: invalid bulk length");
    char out[256];
    const char four[] = "*1\r\n$4\r\nabcd\r\n";
    ck_assert_int_eq(parse_all(&lim, four, sizeof(four) - 1, out, sizeof(out), NULL, 0), 0);
    ck_assert_str_eq(out, "[abcd]");
}
END_TEST

START_TEST(test_limit_request)
{
    resp_limits_t lim;
    resp_limits_default(&lim);
    lim.max_request = 30;
    /* 4 + 7 + 7 = 18 bytes, then `$7\r\n` and 7 + 2 bytes would make 31 > 30,
     * refused on the header; `$6` makes exactly 30 */
    PARSE_ERR(&lim, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$7\r\n", "",
              "ERR Protocol error: too big request");
    const char exact[] = "*3\r\n$1\r\na\r\n$1\r\nb\r\n$6\r\n123456\r\n";
    char out0[256];
    ck_assert_int_eq(parse_all(&lim, exact, sizeof(exact) - 1, out0, sizeof(out0), NULL, 0), 0);
    ck_assert_str_eq(out0, "[a|b|123456]");
    char out[256];
    const char ok[] = "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"; /* 25 bytes */
    ck_assert_int_eq(parse_all(&lim, ok, sizeof(ok) - 1, out, sizeof(out), NULL, 0), 0);
    ck_assert_str_eq(out, "[a|b|c]");
    /* the budget is per request: many small ones in a row pass */
    const char two[] =
        "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n";
    ck_assert_int_eq(parse_all(&lim, two, sizeof(two) - 1, out, sizeof(out), NULL, 0), 0);
    ck_assert_str_eq(out, "[a|b|c][a|b|c]");
}
END_TEST

START_TEST(test_limit_inline)
{
    resp_limits_t lim;
    resp_limits_default(&lim);
    lim.max_inline = 16;
    char out[256];
    /* 16 bytes without LF: wait; 17: refused */
    ck_assert_int_eq(parse_all(&lim, "0123456789abcdef", 16, out, sizeof(out), NULL, 0), 0);
    PARSE_ERR(&lim, "0123456789abcdefg", "", "ERR Protocol error: too big inline request");
    /* a complete line over the limit too (stricter than Redis) */
    PARSE_ERR(&lim, "0123456789abcdefg\r\n", "", "ERR Protocol error: too big inline request");
    const char ok[] = "0123456789 bcdef\r\n";
    ck_assert_int_eq(parse_all(&lim, ok, sizeof(ok) - 1, out, sizeof(out), NULL, 0), 0);
    ck_assert_str_eq(out, "i[0123456789|bcdef]");
    /* header lines without their CR are held to the same limit */
    PARSE_ERR(&lim, "*00000000000000000", "", "ERR Protocol error: too big mbulk count string");
    PARSE_ERR(&lim, "*1\r\n$00000000000000000", "",
              "ERR Protocol error: too big bulk count string");
    /* the default: 64 KiB */
    size_t n = 64 * 1024 + 1;
    char *big = malloc(n);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', n);
    char err[128];
    ck_assert_int_eq(parse_all(NULL, big, n, out, sizeof(out), err, sizeof(err)), RESP_EPROTO);
    ck_assert_str_eq(err, "ERR Protocol error: too big inline request");
    ck_assert_int_eq(parse_all(NULL, big, n - 1, out, sizeof(out), err, sizeof(err)), 0);
    free(big);
}
END_TEST

START_TEST(test_set_limits)
{
    /* tight before AUTH, wider after: the new limits hold from the next header */
    resp_limits_t tight;
    resp_limits_default(&tight);
    tight.max_bulk = 8;
    resp_parser_t p;
    resp_parser_init(&p, &tight);
    resp_cmd_t c;
    const char a[] = "*2\r\n$4\r\nAUTH\r\n$8\r\npassword\r\n";
    ck_assert_int_eq(resp_parser_feed(&p, a, sizeof(a) - 1), 0);
    ck_assert_int_eq(resp_parser_next(&p, &c), 1);
    resp_limits_t wide;
    resp_limits_default(&wide);
    resp_parser_set_limits(&p, &wide);
    const char b[] = "*1\r\n$9\r\n123456789\r\n";
    ck_assert_int_eq(resp_parser_feed(&p, b, sizeof(b) - 1), 0);
    ck_assert_int_eq(resp_parser_next(&p, &c), 1);
    ck_assert_str_eq(c.argv[0], "123456789");
    resp_parser_set_limits(&p, &tight);
    ck_assert_int_eq(resp_parser_feed(&p, b, sizeof(b) - 1), 0);
    ck_assert_int_eq(resp_parser_next(&p, &c), RESP_EPROTO);
    resp_parser_free(&p);
}
END_TEST

/* ---- garbage ---- */

START_TEST(test_garbage)
{
    const char *mb = "ERR Protocol error: invalid multibulk length";
    const char *bl = "ERR Protocol error: invalid bulk length";
    PARSE_ERR(NULL, "*abc\r\n", "", mb);
    PARSE_ERR(NULL, "*\r\n", "", mb);
    PARSE_ERR(NULL, "*+1\r\n", "", mb);
    PARSE_ERR(NULL, "*01\r\n", "", mb);
    PARSE_ERR(NULL, "*-0\r\n", "", mb);
    PARSE_ERR(NULL, "* 1\r\n", "", mb);
    PARSE_ERR(NULL, "*1 \r\n", "", mb);
    PARSE_ERR(NULL, "*99999999999999999999\r\n", "", mb); /* overflows */
    PARSE_ERR(NULL, "*-99999999999999999999\r\n", "", mb);
    PARSE_ERR(NULL, "*1\rX", "", mb); /* CR without LF */
    PARSE_ERR(NULL, "*1\0\r\n", "", mb);
    PARSE_ERR(NULL, "*1\r\n$abc\r\n", "", bl);
    PARSE_ERR(NULL, "*1\r\n$-1\r\n", "", bl);
    PARSE_ERR(NULL, "*1\r\n$-5\r\n", "", bl);
    PARSE_ERR(NULL, "*1\r\n$\r\n", "", bl);
    PARSE_ERR(NULL, "*1\r\n$+3\r\nabc\r\n", "", bl);
    PARSE_ERR(NULL, "*1\r\n$18446744073709551616\r\n", "", bl);
    PARSE_ERR(NULL, "*1\r\n$9223372036854775807\r\n", "", bl);
    /* the data not as long as said */
    PARSE_ERR(NULL, "*1\r\n$3\r\nabcd\r\n", "", bl);
    PARSE_ERR(NULL, "*1\r\n$3\r\nab\r\n\r\n", "", bl);
    /* an element that is not a bulk string: RESP3 aggregates do not nest */
    PARSE_ERR(NULL, "*2\r\n:1\r\n", "", "ERR Protocol error: expected '$', got ':'");
    PARSE_ERR(NULL, "*1\r\n*1\r\n$1\r\nx\r\n", "", "ERR Protocol error: expected '$', got '*'");
    PARSE_ERR(NULL, "*1\r\n%1\r\n", "", "ERR Protocol error: expected '$', got '%'");
    PARSE_ERR(NULL, "*1\r\n\r\n", "", "ERR Protocol error: expected '$', got ' '");
    PARSE_ERR(NULL, "*1\r\n\x01", "", "ERR Protocol error: expected '$', got '?'");
    PARSE_ERR(NULL, "*1\r\n\xff", "", "ERR Protocol error: expected '$', got '?'");
    /* commands before the bad one are still returned */
    PARSE_ERR(NULL, "*1\r\n$4\r\nPING\r\n*1\r\nx", "[PING]",
              "ERR Protocol error: expected '$', got 'x'");
}
END_TEST

START_TEST(test_error_is_final)
{
    resp_parser_t p;
    resp_parser_init(&p, NULL);
    resp_cmd_t c;
    ck_assert_int_eq(resp_parser_feed(&p, "*x\r\n", 4), 0);
    ck_assert_int_eq(resp_parser_next(&p, &c), RESP_EPROTO);
    ck_assert_int_eq(resp_parser_next(&p, &c), RESP_EPROTO);
    ck_assert_int_eq(resp_parser_feed(&p, "PING\r\n", 6), RESP_EPROTO);
    ck_assert_int_eq(resp_parser_next(&p, &c), RESP_EPROTO);
    ck_assert_str_eq(resp_parser_error(&p), "ERR Protocol error: invalid multibulk length");
    resp_parser_free(&p);
}
END_TEST

START_TEST(test_string2ll)
{
    long long v;
    ck_assert_int_eq(resp_string2ll("0", 1, &v), 1);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(resp_string2ll("-12", 3, &v), 1);
    ck_assert_int_eq(v, -12);
    ck_assert_int_eq(resp_string2ll("9223372036854775807", 19, &v), 1);
    ck_assert(v == LLONG_MAX);
    ck_assert_int_eq(resp_string2ll("-9223372036854775808", 20, &v), 1);
    ck_assert(v == LLONG_MIN);
    ck_assert_int_eq(resp_string2ll("9223372036854775808", 19, &v), 0);
    ck_assert_int_eq(resp_string2ll("-9223372036854775809", 20, &v), 0);
    ck_assert_int_eq(resp_string2ll("", 0, &v), 0);
    ck_assert_int_eq(resp_string2ll("-", 1, &v), 0);
    ck_assert_int_eq(resp_string2ll("-0", 2, &v), 0);
    ck_assert_int_eq(resp_string2ll("+1", 2, &v), 0);
    ck_assert_int_eq(resp_string2ll("01", 2, &v), 0);
    ck_assert_int_eq(resp_string2ll(" 1", 2, &v), 0);
    ck_assert_int_eq(resp_string2ll("1a", 2, &v), 0);
    ck_assert_int_eq(resp_string2ll("123456789012345678901", 21, &v), 0);
}
END_TEST

/* ---- encoder ---- */

#define OUT_IS(o, want)                                                                            \
    do {                                                                                           \
        ck_assert_int_eq(resp_out_failed(o), 0);                                                   \
        ck_assert_uint_eq((o)->len, sizeof(want) - 1);                                             \
        ck_assert_int_eq(memcmp((o)->data, want, sizeof(want) - 1), 0);                            \
        resp_out_reset(o);                                                                         \
    } while (0)

static void encode_both(resp_out_t *o)
{
    /* the same calls; the protocol version picks the bytes */
    resp_add_simple(o, "OK");
    resp_add_error(o, "ERR unknown command 'FOO'");
    resp_add_int(o, -42);
    resp_add_bulk(o, "a\0\r\n", 4);
    resp_add_bulk_str(o, "");
    resp_add_null(o);
    resp_add_null_array(o);
    resp_add_array(o, 2);
    resp_add_int(o, 1);
    resp_add_array(o, 0);
    resp_add_map(o, 1);
    resp_add_bulk_str(o, "proto");
    resp_add_int(o, 3);
    resp_add_set(o, 1);
    resp_add_bulk_str(o, "m");
    resp_add_push(o, 2);
    resp_add_bulk_str(o, "message");
    resp_add_bulk_str(o, "x");
    resp_add_double(o, 1.5);
    resp_add_bool(o, 1);
    resp_add_bool(o, 0);
    resp_add_verbatim(o, "txt", "hi", 2);
}

START_TEST(test_encode_resp2)
{
    resp_out_t o;
    resp_out_init(&o, 2);
    encode_both(&o);
    OUT_IS(&o, "+OK\r\n"
               "-ERR unknown command 'FOO'\r\n"
               ":-42\r\n"
               "$4\r\na\0\r\n\r\n"
               "$0\r\n\r\n"
               "$-1\r\n"
               "*-1\r\n"
               "*2\r\n:1\r\n*0\r\n"
               "*2\r\n$5\r\nproto\r\n:3\r\n"
               "*1\r\n$1\r\nm\r\n"
               "*2\r\n$7\r\nmessage\r\n$1\r\nx\r\n"
               "$3\r\n1.5\r\n"
               ":1\r\n"
               ":0\r\n"
               "$2\r\nhi\r\n");
    resp_out_free(&o);
}
END_TEST

START_TEST(test_encode_resp3)
{
    resp_out_t o;
    resp_out_init(&o, 3);
    encode_both(&o);
    OUT_IS(&o, "+OK\r\n"
               "-ERR unknown command 'FOO'\r\n"
               ":-42\r\n"
               "$4\r\na\0\r\n\r\n"
               "$0\r\n\r\n"
               "_\r\n"
               "_\r\n"
               "*2\r\n:1\r\n*0\r\n"
               "%1\r\n$5\r\nproto\r\n:3\r\n"
               "~1\r\n$1\r\nm\r\n"
               ">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n"
               ",1.5\r\n"
               "#t\r\n"
               "#f\r\n"
               "=6\r\ntxt:hi\r\n");
    resp_out_free(&o);
}
END_TEST

START_TEST(test_encode_hello3)
{
    /* HELLO 3's reply as redis-server shapes it (a map of 7) */
    resp_out_t o;
    resp_out_init(&o, 3);
    resp_add_map(&o, 7);
    resp_add_bulk_str(&o, "server");
    resp_add_bulk_str(&o, "redis");
    resp_add_bulk_str(&o, "version");
    resp_add_bulk_str(&o, "7.2.0");
    resp_add_bulk_str(&o, "proto");
    resp_add_int(&o, 3);
    resp_add_bulk_str(&o, "id");
    resp_add_int(&o, 5);
    resp_add_bulk_str(&o, "mode");
    resp_add_bulk_str(&o, "cluster");
    resp_add_bulk_str(&o, "role");
    resp_add_bulk_str(&o, "master");
    resp_add_bulk_str(&o, "modules");
    resp_add_array(&o, 0);
    OUT_IS(&o, "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n"
               "$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$7\r\ncluster\r\n"
               "$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n");
    /* the version is per connection: HELLO 2 turns the map into an array */
    o.proto = 2;
    resp_add_map(&o, 7);
    OUT_IS(&o, "*14\r\n");
    resp_out_free(&o);
}
END_TEST

START_TEST(test_encode_lines_and_numbers)
{
    resp_out_t o;
    resp_out_init(&o, 3);
    /* single-line types never carry CR / LF */
    resp_add_error(&o, "ERR a\r\nb");
    OUT_IS(&o, "-ERR a  b\r\n");
    resp_add_simple(&o, "x\ny");
    OUT_IS(&o, "+x y\r\n");
    resp_add_errorf(&o, "ERR unknown command '%s', with args beginning with: ", "FOO");
    OUT_IS(&o, "-ERR unknown command 'FOO', with args beginning with: \r\n");
    /* a long formatted error (past the stack buffer) */
    char arg[600];
    memset(arg, 'z', sizeof(arg) - 1);
    arg[sizeof(arg) - 1] = '\0';
    resp_add_errorf(&o, "ERR %s", arg);
    ck_assert_uint_eq(o.len, 1 + 4 + 599 + 2);
    ck_assert_int_eq(memcmp(o.data + o.len - 3, "z\r\n", 3), 0);
    resp_out_reset(&o);
    resp_add_int(&o, LLONG_MIN);
    OUT_IS(&o, ":-9223372036854775808\r\n");
    resp_add_int(&o, LLONG_MAX);
    OUT_IS(&o, ":9223372036854775807\r\n");
    /* doubles: shortest text that reads back, inf / nan as Redis */
    resp_add_double(&o, 0.1);
    OUT_IS(&o, ",0.1\r\n");
    resp_add_double(&o, 1.0);
    OUT_IS(&o, ",1\r\n");
    resp_add_double(&o, -2.5e-300);
    OUT_IS(&o, ",-2.5e-300\r\n");
    resp_add_double(&o, 1.0 / 3.0);
    OUT_IS(&o, ",0.3333333333333333\r\n");
    resp_add_double(&o, INFINITY);
    OUT_IS(&o, ",inf\r\n");
    resp_add_double(&o, -INFINITY);
    OUT_IS(&o, ",-inf\r\n");
    resp_add_double(&o, NAN);
    OUT_IS(&o, ",nan\r\n");
    o.proto = 2;
    resp_add_double(&o, -INFINITY);
    OUT_IS(&o, "$4\r\n-inf\r\n");
    resp_add_verbatim(&o, "mkd", "# a", 3);
    OUT_IS(&o, "$3\r\n# a\r\n");
    o.proto = 3;
    resp_add_verbatim(&o, "mkd", "# a", 3);
    OUT_IS(&o, "=7\r\nmkd:# a\r\n");
    resp_out_free(&o);
}
END_TEST

START_TEST(test_encode_growth_take)
{
    resp_out_t o;
    resp_out_init(&o, 2);
    size_t len;
    ck_assert_ptr_null(resp_out_take(&o, &len));
    ck_assert_uint_eq(len, 0);
    /* a 1 MiB bulk and 10000 small values grow the buffer */
    size_t n = 1 << 20;
    char *v = malloc(n);
    ck_assert_ptr_nonnull(v);
    memset(v, 'v', n);
    ck_assert_int_eq(resp_add_bulk(&o, v, n), 0);
    for (int i = 0; i < 10000; i++)
        ck_assert_int_eq(resp_add_int(&o, i), 0);
    char *d = resp_out_take(&o, &len);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(memcmp(d, "$1048576\r\nvv", 12), 0);
    ck_assert_int_eq(memcmp(d + len - 7, ":9999\r\n", 7), 0);
    ck_assert_uint_eq(o.len, 0);
    ck_assert_ptr_null(o.data);
    free(d);
    free(v);
    /* proto other than 3 means 2 */
    resp_out_init(&o, 7);
    ck_assert_int_eq(o.proto, 2);
    resp_out_free(&o);
}
END_TEST

/* ---- a parse / encode round trip ---- */

START_TEST(test_encoder_feeds_parser)
{
    /* a command encoded as an array of bulks (what every client sends)
     * parses back to the same arguments */
    resp_out_t o;
    resp_out_init(&o, 2);
    const char *args[] = {"SET", "key with spaces", "", "\r\n\0x"};
    size_t lens[] = {3, 15, 0, 4};
    resp_add_array(&o, 4);
    for (int i = 0; i < 4; i++)
        resp_add_bulk(&o, args[i], lens[i]);
    resp_parser_t p;
    resp_parser_init(&p, NULL);
    ck_assert_int_eq(resp_parser_feed(&p, o.data, o.len), 0);
    resp_cmd_t c;
    ck_assert_int_eq(resp_parser_next(&p, &c), 1);
    ck_assert_uint_eq(c.argc, 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq(c.argvlen[i], lens[i]);
        ck_assert_int_eq(memcmp(c.argv[i], args[i], lens[i]), 0);
    }
    resp_parser_free(&p);
    resp_out_free(&o);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("resp");
    TCase *req = tcase_create("requests");
    tcase_add_test(req, test_multibulk);
    tcase_add_test(req, test_multibulk_argv_ownership);
    tcase_add_test(req, test_inline);
    tcase_add_test(req, test_inline_quotes);
    tcase_add_test(req, test_inline_unbalanced);
    tcase_add_test(req, test_split_every_boundary);
    tcase_add_test(req, test_split_two_cuts);
    tcase_add_test(req, test_byte_at_a_time);
    tcase_add_test(req, test_pipeline_thousands);
    tcase_add_test(req, test_many_args);
    suite_add_tcase(s, req);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_limit_args_default);
    tcase_add_test(lim, test_limit_preauth);
    tcase_add_test(lim, test_limit_args_huge_not_allocated);
    tcase_add_test(lim, test_limit_bulk);
    tcase_add_test(lim, test_limit_request);
    tcase_add_test(lim, test_limit_inline);
    tcase_add_test(lim, test_set_limits);
    tcase_add_test(lim, test_garbage);
    tcase_add_test(lim, test_error_is_final);
    tcase_add_test(lim, test_string2ll);
    suite_add_tcase(s, lim);
    TCase *enc = tcase_create("encoder");
    tcase_add_test(enc, test_encode_resp2);
    tcase_add_test(enc, test_encode_resp3);
    tcase_add_test(enc, test_encode_hello3);
    tcase_add_test(enc, test_encode_lines_and_numbers);
    tcase_add_test(enc, test_encode_growth_take);
    tcase_add_test(enc, test_encoder_feeds_parser);
    suite_add_tcase(s, enc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
