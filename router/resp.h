/* The Redis protocol (RESP2 / RESP3) codec of the router: an incremental
 * request parser and a reply encoder.
 *
 * Owns: turning bytes a Redis client sent into commands (argv arrays), and
 * replies into bytes, for one connection at a time. Never does I/O, never
 * routes, never looks at what a command means (no command table here): the
 * RESP listener (part 2 of issue 15) reads the socket, feeds the parser,
 * executes each command and writes the encoder's bytes. Pure, so the unit
 * tests and the fuzzer drive it directly. docs/resp.md is the reference.
 *
 * Requests, as redis-server accepts them (networking.c):
 *  - a multibulk request `*<n>\r\n` then n bulk strings `$<len>\r\n<bytes>\r\n`;
 *    `*0` and negative counts are skipped without a command (as Redis);
 *  - anything not starting with '*' is an inline command: one line ended by
 *    "\n" (an "\r" before it is dropped), split by sdssplitargs' rules
 *    (whitespace separates, "double quotes" with \n \r \t \b \a \\ \" \xHH
 *    escapes, 'single quotes' with only \' , a closing quote must be followed
 *    by whitespace or the end); an empty line yields no command; a NUL byte
 *    in the line is refused (Redis never finds the end of such a line);
 *  - request arrays never nest: an element that is not a bulk string is the
 *    "expected '$'" error, so RESP3 aggregate types (which could nest) are
 *    refused at depth one, before anything is allocated for them.
 *
 * Limits (resp_limits_t) are checked on the header line, before a byte of
 * the element is buffered or an argv slot allocated: nothing is sized from
 * a declared length. The argv arrays grow as elements really arrive and the
 * input buffer only holds bytes that really arrived, so memory is bounded
 * by what the peer sent, which the limits bound in turn.
 *
 * Errors: a protocol error is final. resp_parser_next returns RESP_EPROTO,
 * resp_parser_error gives the reply text in Redis's shape ("ERR Protocol
 * error: ..."), the caller sends it as an error reply and closes the
 * connection once it is flushed; commands returned before the error are
 * still answered first (Redis does the same). */
#ifndef SHALE_RESP_H
#define SHALE_RESP_H

#include <stddef.h>
#include <stdint.h>

enum {
    RESP_EPROTO = -1, /* malformed stream: reply resp_parser_error, close */
    RESP_ENOMEM = -2, /* out of memory: close */
};

typedef struct resp_limits {
    size_t max_bulk;    /* one bulk string's length (Redis proto-max-bulk-len) */
    size_t max_args;    /* elements of one multibulk request */
    size_t max_inline;  /* one inline line, and a header line */
    size_t max_request; /* bytes of one multibulk request, headers included */
    /* The connection has not authenticated: a count or length over the
     * limits is refused with Redis's "unauthenticated multibulk length" /
     * "unauthenticated bulk length" instead of "invalid ...". */
    int preauth;
} resp_limits_t;

/* Redis 7's defaults: 512 MiB bulks, 2^31 - 1 arguments, 64 KiB inline
 * lines, and 1 GiB per request (client-query-buffer-limit). */
#define RESP_DEFAULT_MAX_BULK (512ull * 1024 * 1024)
#define RESP_DEFAULT_MAX_ARGS 2147483647u
#define RESP_DEFAULT_MAX_INLINE (64u * 1024)
#define RESP_DEFAULT_MAX_REQUEST (1024ull * 1024 * 1024)
/* Redis 7's limits before AUTH when a password is required. */
#define RESP_PREAUTH_MAX_ARGS 10u
#define RESP_PREAUTH_MAX_BULK 16384u

void resp_limits_default(resp_limits_t *lim);
/* The defaults, narrowed to RESP_PREAUTH_* with preauth set: what a
 * connection gets until it has authenticated. */
void resp_limits_preauth(resp_limits_t *lim);

/* One parsed command. argv[i] points at argvlen[i] bytes followed by a NUL
 * (which is not counted; arguments may contain NULs of their own).
 *
 * Ownership: the parser owns argv, argvlen and the bytes they point at.
 * They stay valid until the next call of any resp_parser_* function on the
 * same parser (feed, next, set_limits, free); a caller that needs them
 * longer copies them. */
typedef struct resp_cmd {
    size_t argc; /* >= 1 */
    const char *const *argv;
    const size_t *argvlen;
    int is_inline; /* it came as an inline command */
} resp_cmd_t;

typedef struct resp_parser {
    resp_limits_t lim;
    char *buf; /* malloc: bytes fed and not yet consumed from `pos` on */
    size_t len, cap;
    size_t pos;  /* start of the request being parsed */
    size_t scan; /* parse cursor */
    size_t seek; /* where the search for a line end resumes */
    int state;
    size_t mb_left;    /* elements still to come */
    size_t mb_n;       /* elements parsed */
    size_t bulk_len;   /* length of the element being read */
    size_t *offs;      /* malloc: element offsets, relative to pos */
    size_t *lens;      /* malloc */
    const char **argv; /* malloc */
    size_t acap;       /* capacity of offs / lens / argv */
    char *scratch;     /* malloc: an inline command's unescaped arguments */
    size_t scap;
    size_t mem; /* bytes the parser holds (all of the above) */
    char err[96];
} resp_parser_t;

/* lim NULL: the defaults. Allocates nothing. */
void resp_parser_init(resp_parser_t *p, const resp_limits_t *lim);
/* Frees what the parser holds; p may be initialised again. */
void resp_parser_free(resp_parser_t *p);
/* New limits from the next header on (e.g. wider after AUTH). */
void resp_parser_set_limits(resp_parser_t *p, const resp_limits_t *lim);

/* Appends len bytes (copied). 0, RESP_ENOMEM, or RESP_EPROTO when the parser
 * already failed (the bytes are dropped). Call resp_parser_next until it
 * returns 0 before feeding more, so the buffer holds at most one partial
 * request plus one read. */
int resp_parser_feed(resp_parser_t *p, const void *data, size_t len);

/* The next complete command: 1 and *cmd filled, 0 when more bytes are
 * needed, RESP_EPROTO or RESP_ENOMEM (final; the parser keeps answering the
 * same code). */
int resp_parser_next(resp_parser_t *p, resp_cmd_t *cmd);

/* After RESP_EPROTO: the error reply's text without the leading '-' and
 * CRLF, e.g. "ERR Protocol error: invalid bulk length". Owned by p. */
const char *resp_parser_error(const resp_parser_t *p);

/* Bytes fed and not consumed yet (a partial request, or commands not taken
 * yet by resp_parser_next). */
size_t resp_parser_pending(const resp_parser_t *p);
/* Bytes of heap the parser holds now: what the tests read to prove that no
 * declared length was allocated for. */
size_t resp_parser_mem(const resp_parser_t *p);

/* ---- replies ----
 *
 * A growable output buffer with the connection's protocol version (2, the
 * default of a new connection, or 3 after HELLO 3). Each resp_add_* appends
 * one value or one aggregate header; the caller adds the aggregate's
 * elements after it. Types RESP2 lacks degrade as redis-server does: null
 * to `$-1` (or `*-1` for a null array), map to a flat array of 2n, set and
 * push to arrays, double to a bulk string, boolean to 1 / 0, verbatim to a
 * bulk string.
 *
 * Out of memory is sticky: the failing add and all later ones return -1 and
 * append nothing more; resp_out_failed tells it once at the end. Simple
 * strings and errors are single lines: their CR and LF bytes become spaces
 * (as addReplyErrorFormat). Ownership: data is the caller's to take with
 * resp_out_take (then free()) or to leave to resp_out_free. */
typedef struct resp_out {
    char *data; /* malloc */
    size_t len, cap;
    int proto; /* 2 or 3 */
    int oom;
} resp_out_t;

void resp_out_init(resp_out_t *o, int proto);
void resp_out_free(resp_out_t *o);
/* Forgets the bytes, keeps the memory and the protocol version. */
void resp_out_reset(resp_out_t *o);
/* The bytes, now the caller's (free()); o is left empty. NULL when empty. */
char *resp_out_take(resp_out_t *o, size_t *len);
int resp_out_failed(const resp_out_t *o);

int resp_add_simple(resp_out_t *o, const char *s);  /* +s */
int resp_add_error(resp_out_t *o, const char *msg); /* -msg, msg starts with its code */
int resp_add_errorf(resp_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int resp_add_int(resp_out_t *o, long long v); /* :v */
int resp_add_bulk(resp_out_t *o, const void *data, size_t len);
int resp_add_bulk_str(resp_out_t *o, const char *s);
int resp_add_null(resp_out_t *o);       /* `_` | `$-1` */
int resp_add_null_array(resp_out_t *o); /* `_` | `*-1` */
int resp_add_array(resp_out_t *o, size_t n);
int resp_add_map(resp_out_t *o, size_t npairs); /* then 2 * npairs values */
int resp_add_set(resp_out_t *o, size_t n);
int resp_add_push(resp_out_t *o, size_t n);
int resp_add_double(resp_out_t *o, double v); /* shortest text that reads back */
int resp_add_bool(resp_out_t *o, int v);
/* fmt: three characters, "txt" or "mkd". */
int resp_add_verbatim(resp_out_t *o, const char *fmt, const void *data, size_t len);

/* Redis's string2ll: a decimal integer with an optional '-', no '+', no
 * leading zeros, no spaces, "-0" refused; 1 and *out on success, 0 if not.
 * The router reads numeric arguments (EX, INCRBY, SCAN counts) with it. */
int resp_string2ll(const char *s, size_t len, long long *out);

#endif
