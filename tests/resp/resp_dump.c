/* resp_dump: the RESP parser (router/resp.c) on stdin, for the differential
 * test against redis-server (tests/resp/resp_vs_redis.py).
 *
 * Reads all of stdin, feeds it to a parser with the default limits (the
 * limits before AUTH with -a; one byte at a time with -1, else in one
 * piece) and prints one line per
 * command, "CMD" and each argument in hex, then "ERR <reply text>" on a
 * protocol error, and "PENDING <bytes>" for what is left unparsed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

static int drain(resp_parser_t *p)
{
    resp_cmd_t c;
    int rv;
    while ((rv = resp_parser_next(p, &c)) == 1) {
        printf("CMD");
        for (size_t i = 0; i < c.argc; i++) {
            printf(" ");
            for (size_t k = 0; k < c.argvlen[i]; k++)
                printf("%02x", (unsigned char)c.argv[i][k]);
            if (c.argvlen[i] == 0)
                printf("-");
        }
        printf("\n");
    }
    return rv;
}

int main(int argc, char **argv)
{
    int bytewise = 0, preauth = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-1") == 0)
            bytewise = 1;
        else if (strcmp(argv[i], "-a") == 0)
            preauth = 1;
    }
    size_t cap = 1 << 16, len = 0;
    char *in = malloc(cap);
    size_t n;
    while (in != NULL && (n = fread(in + len, 1, cap - len, stdin)) > 0) {
        len += n;
        if (len == cap) {
            char *q = realloc(in, cap * 2);
            if (q == NULL)
                free(in);
            in = q;
            cap *= 2;
        }
    }
    if (in == NULL)
        return 2;
    resp_parser_t p;
    resp_limits_t lim;
    if (preauth)
        resp_limits_preauth(&lim);
    else
        resp_limits_default(&lim);
    resp_parser_init(&p, &lim);
    int rv = 0;
    size_t step = bytewise ? 1 : (len ? len : 1);
    for (size_t off = 0; off < len && rv == 0; off += step) {
        size_t k = len - off < step ? len - off : step;
        rv = resp_parser_feed(&p, in + off, k);
        if (rv == 0)
            rv = drain(&p);
    }
    if (rv == RESP_EPROTO)
        printf("ERR %s\n", resp_parser_error(&p));
    else
        printf("PENDING %zu\n", resp_parser_pending(&p));
    resp_parser_free(&p);
    free(in);
    return rv == RESP_ENOMEM ? 2 : 0;
}
