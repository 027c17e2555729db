/* RESP2 / RESP3 request parser and reply encoder. See resp.h for the
 * rules; no I/O and no routing here. */
#include "resp.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    ST_START = 0,     /* between requests */
    ST_BULK_HDR = 1,  /* inside a multibulk: expecting `$<len>\r\n` */
    ST_BULK_DATA = 2, /* inside a multibulk: expecting <len> bytes + CRLF */
    ST_FAILED = 3,
    ST_NOMEM = 4,
};

/* Internal: a request that yields no command (an empty inline line, `*0`,
 * a negative count) was consumed; parsing goes on. */
#define AGAIN 2

void resp_limits_default(resp_limits_t *lim)
{
    lim->max_bulk = RESP_DEFAULT_MAX_BULK;
    lim->max_args = RESP_DEFAULT_MAX_ARGS;
    lim->max_inline = RESP_DEFAULT_MAX_INLINE;
    lim->max_request = RESP_DEFAULT_MAX_REQUEST;
    lim->preauth = 0;
}

void resp_limits_preauth(resp_limits_t *lim)
{
    resp_limits_default(lim);
    lim->max_args = RESP_PREAUTH_MAX_ARGS;
    lim->max_bulk = RESP_PREAUTH_MAX_BULK;
    lim->preauth = 1;
}

void resp_parser_init(resp_parser_t *p, const resp_limits_t *lim)
{
    memset(p, 0, sizeof(*p));
    if (lim != NULL)
        p->lim = *lim;
    else
        resp_limits_default(&p->lim);
}

void resp_parser_free(resp_parser_t *p)
{
    free(p->buf);
    free(p->offs);
    free(p->lens);
    free(p->argv);
    free(p->scratch);
    memset(p, 0, sizeof(*p));
}

void resp_parser_set_limits(resp_parser_t *p, const resp_limits_t *lim)
{
    p->lim = *lim;
}

const char *resp_parser_error(const resp_parser_t *p)
{
    return p->err;
}

size_t resp_parser_pending(const resp_parser_t *p)
{
    return p->len - p->pos;
}

size_t resp_parser_mem(const resp_parser_t *p)
{
    return p->mem;
}

int resp_string2ll(const char *s, size_t len, long long *out)
{
    /* Redis's rules (util.c string2ll): no empty, no '+', no leading zeros,
     * no "-0", no spaces, no overflow. */
    if (len == 0 || len > 20)
        return 0;
    size_t i = 0;
    int neg = 0;
    if (len == 1 && s[0] == '0') {
        *out = 0;
        return 1;
    }
    if (s[0] == '-') {
        neg = 1;
        i = 1;
        if (len == 1)
            return 0;
    }
    if (s[i] < '1' || s[i] > '9')
        return 0;
    unsigned long long v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return 0;
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return 0;
        *out = (long long)v;
    }
    return 1;
}

/* ---- parser ---- */

static int fail(resp_parser_t *p, const char *what)
{
    snprintf(p->err, sizeof(p->err), "ERR Protocol error: %s", what);
    p->state = ST_FAILED;
    return RESP_EPROTO;
}

static int nomem(resp_parser_t *p)
{
    snprintf(p->err, sizeof(p->err), "ERR out of memory");
    p->state = ST_NOMEM;
    return RESP_ENOMEM;
}

/* Grows a heap block to at least `need` bytes, doubling; keeps p->mem. */
static int grow(resp_parser_t *p, void **ptr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem)
            return -1;
        n *= 2;
    }
    void *q = realloc(*ptr, n * elem);
    if (q == NULL)
        return -1;
    p->mem += (n - *cap) * elem;
    *ptr = q;
    *cap = n;
    return 0;
}

/* Room for one more element in offs / lens / argv (all of capacity acap). */
static int grow_args(resp_parser_t *p, size_t need)
{
    if (need <= p->acap)
        return 0;
    size_t n = p->acap ? p->acap * 2 : 8;
    while (n < need)
        n *= 2;
    size_t *o = realloc(p->offs, n * sizeof(*o));
    if (o == NULL)
        return -1;
    p->offs = o;
    size_t *l = realloc(p->lens, n * sizeof(*l));
    if (l == NULL)
        return -1;
    p->lens = l;
    const char **a = realloc(p->argv, n * sizeof(*a));
    if (a == NULL)
        return -1;
    p->argv = a;
    p->mem += (n - p->acap) * (sizeof(*o) + sizeof(*l) + sizeof(*a));
    p->acap = n;
    return 0;
}

int resp_parser_feed(resp_parser_t *p, const void *data, size_t len)
{
    if (p->state == ST_FAILED)
        return RESP_EPROTO;
    if (p->state == ST_NOMEM)
        return RESP_ENOMEM;
    if (len == 0)
        return 0;
    /* Drop what is consumed: offsets inside the request are relative to pos,
     * so only the cursors move. */
    if (p->pos > 0) {
        memmove(p->buf, p->buf + p->pos, p->len - p->pos);
        p->len -= p->pos;
        p->scan -= p->pos;
        p->seek -= p->pos;
        p->pos = 0;
    }
    if (len > SIZE_MAX - p->len)
        return nomem(p);
    void *b = p->buf;
    if (grow(p, &b, &p->cap, p->len + len, 1) != 0)
        return nomem(p);
    p->buf = b;
    memcpy(p->buf + p->len, data, len);
    p->len += len;
    return 0;
}

/* The next CR, searching from p->seek; NULL when it has not arrived
 * (p->seek then remembers how far the search got). */
static const char *find_cr(resp_parser_t *p)
{
    const char *cr = memchr(p->buf + p->seek, '\r', p->len - p->seek);
    if (cr == NULL)
        p->seek = p->len;
    return cr;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Splits one inline line (no NUL in it) as sdssplitargs does into
 * p->scratch (each argument NUL-terminated) and p->offs / p->lens.
 * 0, RESP_EPROTO, RESP_ENOMEM. */
static int split_inline(resp_parser_t *p, const char *line, size_t len)
{
    /* The unescaped arguments plus one NUL each never exceed len + 1. */
    void *s = p->scratch;
    if (grow(p, &s, &p->scap, len + 1, 1) != 0)
        return nomem(p);
    p->scratch = s;
    size_t i = 0, w = 0, argc = 0;
    for (;;) {
        while (i < len && is_space(line[i]))
            i++;
        if (i == len)
            break;
        size_t start = w;
        int inq = 0, insq = 0, done = 0;
        while (!done) {
            char c = i < len ? line[i] : '\0';
            if (inq) {
                if (c == '\\' && i + 3 < len && line[i + 1] == 'x' && hex_val(line[i + 2]) >= 0 &&
                    hex_val(line[i + 3]) >= 0) {
                    p->scratch[w++] = (char)(hex_val(line[i + 2]) * 16 + hex_val(line[i + 3]));
                    i += 3;
                } else if (c == '\\' && i + 1 < len) {
                    i++;
                    switch (line[i]) {
                    case 'n':
                        c = '\n';
                        break;
                    case 'r':
                        c = '\r';
                        break;
                    case 't':
                        c = '\t';
                        break;
                    case 'b':
                        c = '\b';
                        break;
                    case 'a':
                        c = '\a';
                        break;
                    default:
                        c = line[i];
                        break;
                    }
                    p->scratch[w++] = c;
                } else if (c == '"') {
                    /* the closing quote must be followed by a space or nothing */
                    if (i + 1 < len && !is_space(line[i + 1]))
                        return fail(p, "unbalanced quotes in request");
                    done = 1;
                } else if (i == len) {
                    return fail(p, "unbalanced quotes in request");
                } else {
                    p->scratch[w++] = c;
                }
            } else if (insq) {
                if (c == '\\' && i + 1 < len && line[i + 1] == '\'') {
                    i++;
                    p->scratch[w++] = '\'';
                } else if (c == '\'') {
                    if (i + 1 < len && !is_space(line[i + 1]))
                        return fail(p, "unbalanced quotes in request");
                    done = 1;
                } else if (i == len) {
                    return fail(p, "unbalanced quotes in request");
                } else {
                    p->scratch[w++] = c;
                }
            } else {
                if (i == len || c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                    done = 1;
                } else if (c == '"') {
                    inq = 1;
                } else if (c == '\'') {
                    insq = 1;
                } else {
                    p->scratch[w++] = c;
                }
            }
            if (i < len)
                i++;
        }
        if (grow_args(p, argc + 1) != 0)
            return nomem(p);
        p->offs[argc] = start;
        p->lens[argc] = w - start;
        p->scratch[w++] = '\0';
        argc++;
    }
    p->mb_n = argc;
    return 0;
}

static int parse_inline(resp_parser_t *p, resp_cmd_t *cmd)
{
    const char *nl = memchr(p->buf + p->seek, '\n', p->len - p->seek);
    /* Redis looks for the LF with strchr, which stops at a NUL: a line with
     * a NUL never ends there, and the connection waits until 64 KiB have
     * come to be refused. The outcome is the same, refused, only sooner. */
    size_t upto = nl != NULL ? (size_t)(nl - p->buf) : p->len;
    if (memchr(p->buf + p->seek, '\0', upto - p->seek) != NULL)
        return fail(p, "NUL byte in inline request");
    if (nl == NULL) {
        p->seek = p->len;
        if (p->len - p->pos > p->lim.max_inline)
            return fail(p, "too big inline request");
        return 0;
    }
    size_t end = (size_t)(nl - p->buf); /* the LF */
    size_t next = end + 1;
    if (end > p->pos && p->buf[end - 1] == '\r')
        end--;
    /* Stricter than Redis, which only measures a line still without its LF:
     * a complete line is held to the same limit. */
    if (end - p->pos > p->lim.max_inline)
        return fail(p, "too big inline request");
    int rv = split_inline(p, p->buf + p->pos, end - p->pos);
    if (rv < 0)
        return rv;
    p->pos = p->scan = p->seek = next;
    if (p->mb_n == 0)
        return AGAIN; /* an empty line: no command */
    for (size_t i = 0; i < p->mb_n; i++)
        p->argv[i] = p->scratch + p->offs[i];
    cmd->argc = p->mb_n;
    cmd->argv = p->argv;
    cmd->argvlen = p->lens;
    cmd->is_inline = 1;
    return 1;
}

/* A header line `<c><number>\r\n` starting at p->scan. 1 and *v when whole,
 * 0 when more is needed, <0 on error (too_big: the message when the line has
 * no end within max_inline; bad: when it does not hold a number). */
static int header_line(resp_parser_t *p, long long *v, const char *too_big, const char *bad)
{
    const char *cr = find_cr(p);
    if (cr == NULL) {
        if (p->len - p->scan > p->lim.max_inline)
            return fail(p, too_big);
        return 0;
    }
    size_t at = (size_t)(cr - p->buf);
    if (at + 1 >= p->len) {
        p->seek = at; /* the LF has not arrived */
        return 0;
    }
    if (at - p->scan > p->lim.max_inline)
        return fail(p, too_big);
    /* Redis skips the byte after CR unseen; a stream without the LF is not
     * one a Redis client sends, so it is refused. */
    if (p->buf[at + 1] != '\n' || !resp_string2ll(p->buf + p->scan + 1, at - p->scan - 1, v))
        return fail(p, bad);
    p->scan = p->seek = at + 2;
    return 1;
}

static int parse_multibulk(resp_parser_t *p, resp_cmd_t *cmd)
{
    int rv;
    long long v;
    if (p->state == ST_START) {
        rv = header_line(p, &v, "too big mbulk count string", "invalid multibulk length");
        if (rv <= 0)
            return rv;
        if (v > 0 && (unsigned long long)v > p->lim.max_args)
            return fail(p, p->lim.preauth ? "unauthenticated multibulk length"
                                          : "invalid multibulk length");
        if (v <= 0) {
            p->pos = p->scan; /* `*0`, `*-1`: nothing, as Redis */
            return AGAIN;
        }
        /* No argv slot is allocated here: they grow as elements arrive. */
        p->mb_left = (size_t)v;
        p->mb_n = 0;
        p->state = ST_BULK_HDR;
    }
    while (p->mb_left > 0) {
        if (p->state == ST_BULK_HDR) {
            if (p->scan == p->len)
                return 0;
            char c = p->buf[p->scan];
            if (c != '$') {
                char msg[40];
                /* Redis prints the byte raw with CR / LF mapped to spaces;
                 * other control and non-ASCII bytes become '?' here so the
                 * message stays one printable line. */
                if (c == '\r' || c == '\n')
                    c = ' ';
                else if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
                    c = '?';
                snprintf(msg, sizeof(msg), "expected '$', got '%c'", c);
                return fail(p, msg);
            }
            rv = header_line(p, &v, "too big bulk count string", "invalid bulk length");
            if (rv <= 0)
                return rv;
            if (v < 0)
                return fail(p, "invalid bulk length");
            if ((unsigned long long)v > p->lim.max_bulk)
                return fail(p,
                            p->lim.preauth ? "unauthenticated bulk length" : "invalid bulk length");
            size_t so_far = p->scan - p->pos;
            if (so_far > p->lim.max_request || (size_t)v + 2 > p->lim.max_request - so_far)
                return fail(p, "too big request");
            p->bulk_len = (size_t)v;
            p->state = ST_BULK_DATA;
        }
        /* ST_BULK_DATA: the payload and its CRLF, all arrived. */
        if (p->len - p->scan < p->bulk_len + 2)
            return 0;
        size_t at = p->scan + p->bulk_len;
        if (p->buf[at] != '\r' || p->buf[at + 1] != '\n')
            return fail(p, "invalid bulk length"); /* the data is not as long as said */
        if (grow_args(p, p->mb_n + 1) != 0)
            return nomem(p);
        p->buf[at] = '\0'; /* the CR, checked: now the argument's terminator */
        p->offs[p->mb_n] = p->scan - p->pos;
        p->lens[p->mb_n] = p->bulk_len;
        p->mb_n++;
        p->mb_left--;
        p->scan = p->seek = at + 2;
        p->state = ST_BULK_HDR;
    }
    for (size_t i = 0; i < p->mb_n; i++)
        p->argv[i] = p->buf + p->pos + p->offs[i];
    cmd->argc = p->mb_n;
    cmd->argv = p->argv;
    cmd->argvlen = p->lens;
    cmd->is_inline = 0;
    p->pos = p->scan;
    p->state = ST_START;
    return 1;
}

int resp_parser_next(resp_parser_t *p, resp_cmd_t *cmd)
{
    int rv;
    do {
        if (p->state == ST_FAILED)
            return RESP_EPROTO;
        if (p->state == ST_NOMEM)
            return RESP_ENOMEM;
        if (p->state != ST_START)
            rv = parse_multibulk(p, cmd);
        else if (p->pos == p->len)
            rv = 0;
        else
            rv = p->buf[p->pos] == '*' ? parse_multibulk(p, cmd) : parse_inline(p, cmd);
    } while (rv == AGAIN);
    return rv;
}

/* ---- encoder ---- */

void resp_out_init(resp_out_t *o, int proto)
{
    memset(o, 0, sizeof(*o));
    o->proto = proto == 3 ? 3 : 2;
}

void resp_out_free(resp_out_t *o)
{
    free(o->data);
    o->data = NULL;
    o->len = o->cap = 0;
    o->oom = 0;
}

void resp_out_reset(resp_out_t *o)
{
    o->len = 0;
    o->oom = 0;
}

char *resp_out_take(resp_out_t *o, size_t *len)
{
    char *d = o->len ? o->data : NULL;
    *len = o->len;
    if (d == NULL)
        free(o->data);
    o->data = NULL;
    o->len = o->cap = 0;
    return d;
}

int resp_out_failed(const resp_out_t *o)
{
    return o->oom;
}

static int put(resp_out_t *o, const void *d, size_t n)
{
    if (o->oom)
        return -1;
    if (n > o->cap - o->len) {
        if (n > SIZE_MAX / 2 - o->len) {
            o->oom = 1;
            return -1;
        }
        size_t c = o->cap ? o->cap : 64;
        while (c < o->len + n)
            c *= 2;
        char *q = realloc(o->data, c);
        if (q == NULL) {
            o->oom = 1;
            return -1;
        }
        o->data = q;
        o->cap = c;
    }
    if (n > 0)
        memcpy(o->data + o->len, d, n);
    o->len += n;
    return 0;
}

/* `<t><n>\r\n` */
static int put_hdr(resp_out_t *o, char t, long long n)
{
    char h[32];
    int k = snprintf(h, sizeof(h), "%c%lld\r\n", t, n);
    return put(o, h, (size_t)k);
}

/* t, then s with CR / LF as spaces, then CRLF. */
static int put_line(resp_out_t *o, char t, const char *s, size_t n)
{
    if (put(o, &t, 1) != 0)
        return -1;
    size_t start = o->len;
    if (put(o, s, n) != 0)
        return -1;
    for (size_t i = start; i < o->len; i++)
        if (o->data[i] == '\r' || o->data[i] == '\n')
            o->data[i] = ' ';
    return put(o, "\r\n", 2);
}

int resp_add_simple(resp_out_t *o, const char *s)
{
    return put_line(o, '+', s, strlen(s));
}

int resp_add_error(resp_out_t *o, const char *msg)
{
    return put_line(o, '-', msg, strlen(msg));
}

int resp_add_errorf(resp_out_t *o, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->oom = 1;
        return -1;
    }
    if ((size_t)n < sizeof(small))
        return put_line(o, '-', small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (big == NULL) {
        o->oom = 1;
        return -1;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rv = put_line(o, '-', big, (size_t)n);
    free(big);
    return rv;
}

int resp_add_int(resp_out_t *o, long long v)
{
    return put_hdr(o, ':', v);
}

int resp_add_bulk(resp_out_t *o, const void *data, size_t len)
{
    char h[32];
    int k = snprintf(h, sizeof(h), "$%zu\r\n", len);
    if (put(o, h, (size_t)k) != 0 || put(o, data, len) != 0)
        return -1;
    return put(o, "\r\n", 2);
}

int resp_add_bulk_str(resp_out_t *o, const char *s)
{
    return resp_add_bulk(o, s, strlen(s));
}

int resp_add_null(resp_out_t *o)
{
    return o->proto == 3 ? put(o, "_\r\n", 3) : put(o, "$-1\r\n", 5);
}

int resp_add_null_array(resp_out_t *o)
{
    return o->proto == 3 ? put(o, "_\r\n", 3) : put(o, "*-1\r\n", 5);
}

static int put_count(resp_out_t *o, char t, size_t n)
{
    char h[32];
    int k = snprintf(h, sizeof(h), "%c%zu\r\n", t, n);
    return put(o, h, (size_t)k);
}

int resp_add_array(resp_out_t *o, size_t n)
{
    return put_count(o, '*', n);
}

int resp_add_map(resp_out_t *o, size_t npairs)
{
    if (o->proto == 3)
        return put_count(o, '%', npairs);
    if (npairs > SIZE_MAX / 2) {
        o->oom = 1;
        return -1;
    }
    return put_count(o, '*', npairs * 2);
}

int resp_add_set(resp_out_t *o, size_t n)
{
    return put_count(o, o->proto == 3 ? '~' : '*', n);
}

int resp_add_push(resp_out_t *o, size_t n)
{
    return put_count(o, o->proto == 3 ? '>' : '*', n);
}

int resp_add_double(resp_out_t *o, double v)
{
    char t[40];
    if (isnan(v)) {
        snprintf(t, sizeof(t), "nan");
    } else if (isinf(v)) {
        snprintf(t, sizeof(t), "%s", v > 0 ? "inf" : "-inf");
    } else {
        /* the shortest %g that reads back as v */
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(t, sizeof(t), "%.*g", prec, v);
            if (strtod(t, NULL) == v)
                break;
        }
    }
    if (o->proto == 3)
        return put_line(o, ',', t, strlen(t));
    return resp_add_bulk(o, t, strlen(t));
}

int resp_add_bool(resp_out_t *o, int v)
{
    if (o->proto == 3)
        return put(o, v ? "#t\r\n" : "#f\r\n", 4);
    return put(o, v ? ":1\r\n" : ":0\r\n", 4);
}

int resp_add_verbatim(resp_out_t *o, const char *fmt, const void *data, size_t len)
{
    if (o->proto != 3)
        return resp_add_bulk(o, data, len);
    if (len > SIZE_MAX - 4) {
        o->oom = 1;
        return -1;
    }
    char h[40];
    int k = snprintf(h, sizeof(h), "=%zu\r\n%.3s:", len + 4, fmt);
    if (put(o, h, (size_t)k) != 0 || put(o, data, len) != 0)
        return -1;
    return put(o, "\r\n", 2);
}
