/* libFuzzer target: the RESP request parser (router/resp.c) on arbitrary
 * bytes, split into arbitrary reads, and the encoder on what it parsed.
 *
 * The first input byte picks the read size, the second the limits (the
 * defaults, or small ones so the fuzzer reaches every limit), so it explores
 * requests split across reads as well as many per read. Each command parsed
 * is encoded again as an array of bulk strings (in RESP2 and RESP3, with the
 * other reply types after it) and must parse back to the same arguments.
 * Must never crash, leak, read out of bounds, or hold more memory than a
 * fixed multiple of the bytes fed (nothing sized from a declared length). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

static void roundtrip(const resp_cmd_t *c, int proto)
{
    resp_out_t o;
    resp_out_init(&o, proto);
    resp_add_array(&o, c->argc);
    for (size_t i = 0; i < c->argc; i++)
        resp_add_bulk(&o, c->argv[i], c->argvlen[i]);
    if (resp_out_failed(&o))
        abort();
    resp_parser_t q;
    resp_parser_init(&q, NULL);
    resp_cmd_t d;
    if (resp_parser_feed(&q, o.data, o.len) != 0 || resp_parser_next(&q, &d) != 1)
        abort();
    if (d.argc != c->argc || d.is_inline)
        abort();
    for (size_t i = 0; i < c->argc; i++)
        if (d.argvlen[i] != c->argvlen[i] || memcmp(d.argv[i], c->argv[i], c->argvlen[i]) != 0)
            abort();
    if (resp_parser_next(&q, &d) != 0 || resp_parser_pending(&q) != 0)
        abort();
    resp_parser_free(&q);
    /* the other reply types, on the command's bytes */
    resp_out_reset(&o);
    const char *a0 = c->argv[0];
    size_t l0 = c->argvlen[0];
    resp_add_simple(&o, a0);
    resp_add_error(&o, a0);
    resp_add_errorf(&o, "ERR unknown command '%.*s'", (int)(l0 > 128 ? 128 : l0), a0);
    double dv;
    memcpy(&dv, (l0 >= sizeof(dv)) ? a0 : "\0\0\0\0\0\0\xf0\x3f", sizeof(dv));
    resp_add_double(&o, dv);
    long long iv;
    if (resp_string2ll(a0, l0, &iv))
        resp_add_int(&o, iv);
    resp_add_map(&o, c->argc);
    resp_add_set(&o, c->argc);
    resp_add_push(&o, c->argc);
    resp_add_null(&o);
    resp_add_null_array(&o);
    resp_add_bool(&o, (int)(l0 & 1));
    resp_add_verbatim(&o, "txt", a0, l0);
    if (resp_out_failed(&o))
        abort();
    resp_out_free(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step = (size_t)data[0] + 1;
    uint8_t mode = data[1];
    data += 2;
    size -= 2;
    resp_limits_t lim;
    resp_limits_default(&lim);
    if (mode & 1) {
        lim.max_bulk = (size_t)(mode >> 1) & 15;
        lim.max_args = ((size_t)(mode >> 5) & 7) + 1;
        lim.max_inline = 8 + ((size_t)(mode >> 1) & 63);
        lim.max_request = 16 + (size_t)(mode >> 2) * 2;
    }
    resp_parser_t p;
    resp_parser_init(&p, &lim);
    size_t fed = 0;
    int rv = 0;
    for (size_t off = 0; off < size && rv >= 0; off += step) {
        size_t n = size - off < step ? size - off : step;
        rv = resp_parser_feed(&p, data + off, n);
        if (rv < 0)
            break;
        fed += n;
        resp_cmd_t c;
        while ((rv = resp_parser_next(&p, &c)) == 1) {
            if (c.argc == 0)
                abort();
            roundtrip(&c, 2 + (int)(c.argc & 1));
        }
        /* Memory follows the bytes that came, never a declared length:
         * the buffer, an inline line's copy and 24 bytes of argv per
         * argument (an argument costs at least two input bytes), doubled. */
        if (resp_parser_mem(&p) > 64 * fed + 4096)
            abort();
    }
    if (rv == RESP_EPROTO && strncmp(resp_parser_error(&p), "ERR Protocol error: ", 20) != 0)
        abort();
    resp_parser_free(&p);
    return 0;
}
