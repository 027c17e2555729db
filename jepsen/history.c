/* Jepsen histories: a small JSON-lines reader/writer and invoke/completion
 * pairing. The reader accepts exactly one flat JSON object per line; it is
 * not a general JSON library (nested objects are only skipped, in fields
 * it does not know). */
#include "history.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "shale_errors.h"

static const char *type_names[JEP_NTYPES] = {"invoke", "ok", "fail", "info"};
static const char *fn_names[JEP_NFNS] = {"read", "write", "cas", "add", "incr", "stale_read", "transfer"};

const char *jep_type_name(jep_type t)
{
    return (unsigned)t < JEP_NTYPES ? type_names[t] : "?";
}
const char *jep_fn_name(jep_fn f)
{
    return (unsigned)f < JEP_NFNS ? fn_names[f] : "?";
}

static void set_err(char *err, size_t len, const char *fmt, ...)
{
    if (!err || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static void value_clear(jep_value *v)
{
    free(v->text);
    for (size_t i = 0; i < v->n; i++)
        free(v->elems[i]);
    free(v->elems);
    memset(v, 0, sizeof(*v));
}

void jep_event_clear(jep_event *ev)
{
    free(ev->key);
    value_clear(&ev->value);
    value_clear(&ev->expect);
    memset(ev, 0, sizeof(*ev));
}

/* --- lexer ---------------------------------------------------------- */

typedef struct {
    const char *p, *end;
    char *err;
    size_t errlen;
} lex;

static void ws(lex *l)
{
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\r' || *l->p == '\n'))
        l->p++;
}

static int fail(lex *l, const char *what)
{
    if (l->p >= l->end)
        set_err(l->err, l->errlen, "%s at end of line", what);
    else
        set_err(l->err, l->errlen, "%s near '%.12s'", what, l->p);
    return SHALE_EINVAL;
}

/* A JSON string at l->p: the raw text including quotes in [*s, *e). */
static int lex_string_raw(lex *l, const char **s, const char **e)
{
    if (l->p >= l->end || *l->p != '"')
        return fail(l, "expected a string");
    *s = l->p++;
    while (l->p < l->end && *l->p != '"') {
        unsigned char c = (unsigned char)*l->p;
        if (c < 0x20)
            return fail(l, "control character in string");
        if (c == '\\') {
            l->p++;
            if (l->p >= l->end)
                return fail(l, "unterminated string");
            if (*l->p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (l->p + i >= l->end || !isxdigit((unsigned char)l->p[i]))
                        return fail(l, "bad \\u escape");
                l->p += 4;
            } else if (!strchr("\"\\/bfnrt", *l->p)) {
                return fail(l, "bad escape in string");
            }
        }
        l->p++;
    }
    if (l->p >= l->end)
        return fail(l, "unterminated string");
    l->p++;
    *e = l->p;
    return 0;
}

/* Decode a raw string (with quotes) into a malloc'd C string. \u escapes
 * above 0x7f are kept verbatim (keys are compared as text). */
static char *decode_string(const char *s, const char *e)
{
    char *out = malloc((size_t)(e - s) + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s + 1; p < e - 1; p++) {
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        p++;
        switch (*p) {
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            unsigned v = (unsigned)strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
            if (v > 0 && v < 0x80) {
                *o++ = (char)v;
                p += 4;
            } else {
                *o++ = '\\';
                *o++ = 'u';
            }
            break;
        }
        default:
            *o++ = *p;
            break;
        }
    }
    *o = 0;
    return out;
}

/* A JSON number; *out the canonical text (malloc'd): integers that fit
 * int64 re-printed, others verbatim. is_int/ival filled for integers. */
static int lex_number(lex *l, char **out, int *is_int, int64_t *ival)
{
    const char *s = l->p;
    if (l->p < l->end && *l->p == '-')
        l->p++;
    if (l->p >= l->end || !isdigit((unsigned char)*l->p))
        return fail(l, "bad number");
    if (*l->p == '0' && l->p + 1 < l->end && isdigit((unsigned char)l->p[1]))
        return fail(l, "leading zero in number");
    while (l->p < l->end && isdigit((unsigned char)*l->p))
        l->p++;
    int frac = 0;
    if (l->p < l->end && *l->p == '.') {
        frac = 1;
        l->p++;
        if (l->p >= l->end || !isdigit((unsigned char)*l->p))
            return fail(l, "bad number");
        while (l->p < l->end && isdigit((unsigned char)*l->p))
            l->p++;
    }
    if (l->p < l->end && (*l->p == 'e' || *l->p == 'E')) {
        frac = 1;
        l->p++;
        if (l->p < l->end && (*l->p == '+' || *l->p == '-'))
            l->p++;
        if (l->p >= l->end || !isdigit((unsigned char)*l->p))
            return fail(l, "bad number");
        while (l->p < l->end && isdigit((unsigned char)*l->p))
            l->p++;
    }
    size_t n = (size_t)(l->p - s);
    char tmp[64];
    *is_int = 0;
    if (!frac && n < sizeof(tmp)) {
        memcpy(tmp, s, n);
        tmp[n] = 0;
        errno = 0;
        long long v = strtoll(tmp, NULL, 10);
        if (errno == 0) {
            *is_int = 1;
            *ival = v;
            snprintf(tmp, sizeof(tmp), "%lld", v);
            *out = strdup(tmp);
            return *out ? 0 : SHALE_ENOMEM;
        }
    }
    *out = strndup(s, n);
    return *out ? 0 : SHALE_ENOMEM;
}

static int lex_word(lex *l, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(l->end - l->p) >= n && memcmp(l->p, w, n) == 0) {
        l->p += n;
        return 1;
    }
    return 0;
}

/* A scalar (string, number, true, false, null) as canonical text; *is_null
 * set for null (then *out NULL). */
static int lex_scalar(lex *l, char **out, int *is_null)
{
    *out = NULL;
    *is_null = 0;
    if (l->p >= l->end)
        return fail(l, "expected a value");
    if (*l->p == '"') {
        const char *s, *e;
        int rc = lex_string_raw(l, &s, &e);
        if (rc)
            return rc;
        *out = strndup(s, (size_t)(e - s));
        return *out ? 0 : SHALE_ENOMEM;
    }
    if (*l->p == '-' || isdigit((unsigned char)*l->p)) {
        int is_int;
        int64_t v;
        return lex_number(l, out, &is_int, &v);
    }
    if (lex_word(l, "true") || lex_word(l, "false")) {
        *out = strdup(l->p[-1] == 'e' && l->p[-2] == 'u' ? "true" : "false");
        return *out ? 0 : SHALE_ENOMEM;
    }
    if (lex_word(l, "null")) {
        *is_null = 1;
        return 0;
    }
    return fail(l, "expected a value");
}

/* A value field: scalar, null or an array of scalars. */
static int lex_value(lex *l, jep_value *v)
{
    value_clear(v);
    if (l->p < l->end && *l->p == '[') {
        l->p++;
        v->kind = JEP_V_ARRAY;
        ws(l);
        if (l->p < l->end && *l->p == ']') {
            l->p++;
            return 0;
        }
        size_t cap = 0;
        for (;;) {
            ws(l);
            char *t;
            int is_null, rc = lex_scalar(l, &t, &is_null);
            if (rc)
                return rc;
            if (is_null && !(t = strdup("null")))
                return SHALE_ENOMEM;
            if (v->n == cap) {
                cap = cap ? cap * 2 : 8;
                char **ne = realloc(v->elems, cap * sizeof(*ne));
                if (!ne) {
                    free(t);
                    return SHALE_ENOMEM;
                }
                v->elems = ne;
            }
            v->elems[v->n++] = t;
            ws(l);
            if (l->p < l->end && *l->p == ',') {
                l->p++;
                continue;
            }
            if (l->p < l->end && *l->p == ']') {
                l->p++;
                return 0;
            }
            return fail(l, "expected ',' or ']' in array");
        }
    }
    int is_null;
    int rc = lex_scalar(l, &v->text, &is_null);
    if (rc)
        return rc;
    v->kind = is_null ? JEP_V_NULL : JEP_V_SCALAR;
    return 0;
}

/* Skip any JSON value (fields this reader does not know). */
static int lex_skip(lex *l, int depth)
{
    if (depth > 32)
        return fail(l, "nesting too deep");
    ws(l);
    if (l->p < l->end && (*l->p == '[' || *l->p == '{')) {
        char close = *l->p == '[' ? ']' : '}';
        int obj = close == '}';
        l->p++;
        ws(l);
        if (l->p < l->end && *l->p == close) {
            l->p++;
            return 0;
        }
        for (;;) {
            ws(l);
            if (obj) {
                const char *s, *e;
                int rc = lex_string_raw(l, &s, &e);
                if (rc)
                    return rc;
                ws(l);
                if (l->p >= l->end || *l->p != ':')
                    return fail(l, "expected ':'");
                l->p++;
            }
            int rc = lex_skip(l, depth + 1);
            if (rc)
                return rc;
            ws(l);
            if (l->p < l->end && *l->p == ',') {
                l->p++;
                continue;
            }
            if (l->p < l->end && *l->p == close) {
                l->p++;
                return 0;
            }
            return fail(l, "expected ',' or a closing bracket");
        }
    }
    char *t;
    int is_null, rc = lex_scalar(l, &t, &is_null);
    free(t);
    return rc;
}

static int lex_int(lex *l, const char *field, int64_t *out)
{
    char *t = NULL;
    int is_int = 0;
    if (l->p >= l->end || !(*l->p == '-' || isdigit((unsigned char)*l->p))) {
        set_err(l->err, l->errlen, "\"%s\" must be an integer", field);
        return SHALE_EINVAL;
    }
    int rc = lex_number(l, &t, &is_int, out);
    free(t);
    if (rc)
        return rc;
    if (!is_int) {
        set_err(l->err, l->errlen, "\"%s\" must be an integer", field);
        return SHALE_EINVAL;
    }
    return 0;
}

static int lex_name(lex *l, const char *field, const char **names, int n, int *out)
{
    const char *s, *e;
    int rc = lex_string_raw(l, &s, &e);
    if (rc) {
        set_err(l->err, l->errlen, "\"%s\" must be a string", field);
        return rc;
    }
    for (int i = 0; i < n; i++)
        if ((size_t)(e - s - 2) == strlen(names[i]) &&
            !memcmp(s + 1, names[i], (size_t)(e - s - 2))) {
            *out = i;
            return 0;
        }
    set_err(l->err, l->errlen, "bad %s %.*s", field, (int)(e - s > 40 ? 40 : e - s), s);
    return SHALE_EINVAL;
}

enum { F_PROCESS = 1, F_TYPE = 2, F_F = 4, F_KEY = 8, F_TIME = 16 };

int jep_event_parse(const char *line, size_t len, jep_event *ev, char *err, size_t errlen)
{
    lex l = {line, line + len, err, errlen};
    memset(ev, 0, sizeof(*ev));
    ev->bound_ms = -1;
    unsigned seen = 0;
    int rc = 0;
    ws(&l);
    if (l.p >= l.end || *l.p != '{')
        return fail(&l, "expected a JSON object");
    l.p++;
    ws(&l);
    if (l.p < l.end && *l.p == '}') {
        l.p++;
        goto done;
    }
    for (;;) {
        ws(&l);
        const char *s, *e;
        if ((rc = lex_string_raw(&l, &s, &e)))
            goto out;
        ws(&l);
        if (l.p >= l.end || *l.p != ':') {
            rc = fail(&l, "expected ':'");
            goto out;
        }
        l.p++;
        ws(&l);
        size_t n = (size_t)(e - s - 2);
        const char *name = s + 1;
#define IS(w) (n == strlen(w) && !memcmp(name, w, n))
        int x;
        if (IS("process")) {
            rc = lex_int(&l, "process", &ev->process);
            seen |= F_PROCESS;
        } else if (IS("type")) {
            if (!(rc = lex_name(&l, "type", type_names, JEP_NTYPES, &x)))
                ev->type = (jep_type)x;
            seen |= F_TYPE;
        } else if (IS("f")) {
            if (!(rc = lex_name(&l, "f", fn_names, JEP_NFNS, &x)))
                ev->f = (jep_fn)x;
            seen |= F_F;
        } else if (IS("key")) {
            const char *ks, *ke;
            if ((rc = lex_string_raw(&l, &ks, &ke))) {
                set_err(err, errlen, "\"key\" must be a string");
            } else {
                free(ev->key);
                ev->key = decode_string(ks, ke);
                if (!ev->key)
                    rc = SHALE_ENOMEM;
            }
            seen |= F_KEY;
        } else if (IS("value")) {
            rc = lex_value(&l, &ev->value);
        } else if (IS("expect")) {
            rc = lex_value(&l, &ev->expect);
        } else if (IS("time_us")) {
            rc = lex_int(&l, "time_us", &ev->time_us);
            seen |= F_TIME;
        } else if (IS("bound_ms")) {
            rc = lex_int(&l, "bound_ms", &ev->bound_ms);
            if (!rc && ev->bound_ms < 0) {
                set_err(err, errlen, "\"bound_ms\" must be >= 0");
                rc = SHALE_EINVAL;
            }
        } else {
            rc = lex_skip(&l, 0);
        }
#undef IS
        if (rc)
            goto out;
        ws(&l);
        if (l.p < l.end && *l.p == ',') {
            l.p++;
            continue;
        }
        if (l.p < l.end && *l.p == '}') {
            l.p++;
            break;
        }
        rc = fail(&l, "expected ',' or '}'");
        goto out;
    }
done:
    ws(&l);
    if (l.p != l.end) {
        rc = fail(&l, "trailing text after the object");
        goto out;
    }
    static const struct {
        unsigned bit;
        const char *name;
    } req[] = {
        {F_PROCESS, "process"}, {F_TYPE, "type"}, {F_F, "f"}, {F_KEY, "key"}, {F_TIME, "time_us"}};
    for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++)
        if (!(seen & req[i].bit)) {
            set_err(err, errlen, "missing \"%s\"", req[i].name);
            rc = SHALE_EINVAL;
            goto out;
        }
    if (ev->f == JEP_STALE_READ && ev->type == JEP_INVOKE && ev->bound_ms < 0) {
        set_err(err, errlen, "a stale_read invoke needs \"bound_ms\"");
        rc = SHALE_EINVAL;
    }
    if (ev->f == JEP_CAS && ev->type == JEP_INVOKE && ev->expect.kind == JEP_V_NONE) {
        set_err(err, errlen, "a cas invoke needs \"expect\"");
        rc = SHALE_EINVAL;
    }
    if ((ev->f == JEP_WRITE || ev->f == JEP_CAS || ev->f == JEP_ADD) && ev->type == JEP_INVOKE &&
        ev->value.kind == JEP_V_NONE) {
        set_err(err, errlen, "a %s invoke needs \"value\"", jep_fn_name(ev->f));
        rc = SHALE_EINVAL;
    }
out:
    if (rc)
        jep_event_clear(ev);
    return rc;
}

/* --- histories ------------------------------------------------------ */

jep_history *jep_history_new(void)
{
    return calloc(1, sizeof(jep_history));
}

void jep_history_free(jep_history *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        jep_event_clear(&h->ev[i]);
    free(h->ev);
    free(h);
}

static int push(jep_history *h, jep_event *ev)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        jep_event *ne = realloc(h->ev, cap * sizeof(*ne));
        if (!ne)
            return SHALE_ENOMEM;
        h->ev = ne;
        h->cap = cap;
    }
    h->ev[h->n++] = *ev;
    return 0;
}

static int parse_value_text(const char *text, jep_value *v)
{
    memset(v, 0, sizeof(*v));
    if (!text)
        return 0;
    lex l = {text, text + strlen(text), NULL, 0};
    ws(&l);
    int rc = lex_value(&l, v);
    ws(&l);
    if (!rc && l.p != l.end)
        rc = SHALE_EINVAL;
    if (rc)
        value_clear(v);
    return rc;
}

int jep_history_append(jep_history *h, int64_t process, jep_type type, jep_fn f, const char *key,
                       const char *value, const char *expect, int64_t time_us, int64_t bound_ms)
{
    jep_event ev = {
        .process = process, .type = type, .f = f, .time_us = time_us, .bound_ms = bound_ms};
    int rc;
    if (!(ev.key = strdup(key ? key : "")))
        return SHALE_ENOMEM;
    if ((rc = parse_value_text(value, &ev.value)) || (rc = parse_value_text(expect, &ev.expect)) ||
        (rc = push(h, &ev)))
        jep_event_clear(&ev);
    return rc;
}

int jep_history_read(FILE *f, jep_history **out, char *err, size_t errlen)
{
    *out = NULL;
    jep_history *h = jep_history_new();
    if (!h)
        return SHALE_ENOMEM;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    char msg[200];
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t n = (size_t)len;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            n--;
        size_t i = 0;
        while (i < n && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i == n)
            continue;
        jep_event ev;
        if ((rc = jep_event_parse(line, n, &ev, msg, sizeof(msg)))) {
            set_err(err, errlen, "line %d: %s", lineno, rc == SHALE_ENOMEM ? "out of memory" : msg);
            break;
        }
        ev.line = lineno;
        if ((rc = push(h, &ev))) {
            jep_event_clear(&ev);
            set_err(err, errlen, "line %d: out of memory", lineno);
            break;
        }
    }
    free(line);
    if (!rc && ferror(f)) {
        set_err(err, errlen, "read error after line %d: %s", lineno, strerror(errno));
        rc = SHALE_EIO;
    }
    if (rc) {
        jep_history_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

int jep_history_read_file(const char *path, jep_history **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return SHALE_EIO;
    }
    char inner[200];
    int rc = jep_history_read(f, out, inner, sizeof(inner));
    fclose(f);
    if (rc)
        set_err(err, errlen, "%s: %s", path, inner);
    return rc;
}

int jep_history_parse(const char *text, jep_history **out, char *err, size_t errlen)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    if (!f) {
        /* fmemopen refuses a zero-length buffer on some libcs. */
        if (!*text)
            return (*out = jep_history_new()) ? 0 : SHALE_ENOMEM;
        set_err(err, errlen, "fmemopen: %s", strerror(errno));
        return SHALE_ENOMEM;
    }
    int rc = jep_history_read(f, out, err, errlen);
    fclose(f);
    return rc;
}

static void write_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void write_value(FILE *f, const jep_value *v)
{
    if (v->kind == JEP_V_NULL) {
        fputs("null", f);
    } else if (v->kind == JEP_V_SCALAR) {
        fputs(v->text, f);
    } else {
        fputc('[', f);
        for (size_t i = 0; i < v->n; i++)
            fprintf(f, "%s%s", i ? "," : "", v->elems[i]);
        fputc(']', f);
    }
}

int jep_event_write(FILE *f, const jep_event *ev)
{
    fprintf(f, "{\"process\":%" PRId64 ",\"type\":\"%s\",\"f\":\"%s\",\"key\":", ev->process,
            jep_type_name(ev->type), jep_fn_name(ev->f));
    write_string(f, ev->key ? ev->key : "");
    if (ev->value.kind != JEP_V_NONE) {
        fputs(",\"value\":", f);
        write_value(f, &ev->value);
    }
    if (ev->expect.kind != JEP_V_NONE) {
        fputs(",\"expect\":", f);
        write_value(f, &ev->expect);
    }
    fprintf(f, ",\"time_us\":%" PRId64, ev->time_us);
    if (ev->bound_ms >= 0)
        fprintf(f, ",\"bound_ms\":%" PRId64, ev->bound_ms);
    fputs("}\n", f);
    return ferror(f) ? SHALE_EIO : 0;
}

int jep_history_write(FILE *f, const jep_history *h)
{
    for (size_t i = 0; i < h->n; i++)
        if (jep_event_write(f, &h->ev[i]))
            return SHALE_EIO;
    return fflush(f) ? SHALE_EIO : 0;
}

/* --- pairing -------------------------------------------------------- */

static const jep_value none_value = {JEP_V_NONE, NULL, NULL, 0};

typedef struct {
    int64_t process;
    size_t op; /* index into ops, or SIZE_MAX when idle */
} proc_slot;

static int cmp_ops(const void *a, const void *b)
{
    const jep_op *x = a, *y = b;
    if (x->call_us != y->call_us)
        return x->call_us < y->call_us ? -1 : 1;
    return (x->call_line > y->call_line) - (x->call_line < y->call_line);
}

/* Find or add the slot of process p (linear probing over a power-of-two table). */
static proc_slot *slot_for(proc_slot *t, size_t mask, int64_t p)
{
    size_t i = ((uint64_t)p * 0x9E3779B97F4A7C15ull) >> 20 & mask;
    while (t[i].op != 0 && t[i].process != p)
        i = (i + 1) & mask;
    return &t[i];
}

int jep_history_ops(const jep_history *h, jep_op **ops_out, size_t *n_out, char *err, size_t errlen)
{
    *ops_out = NULL;
    *n_out = 0;
    size_t tsize = 16;
    while (tsize < 2 * h->n + 16)
        tsize *= 2;
    /* slot.op holds op index + 1 (0 = empty slot), slot.process the id;
     * an idle process keeps its slot with op = SIZE_MAX. */
    proc_slot *t = calloc(tsize, sizeof(*t));
    jep_op *ops = calloc(h->n ? h->n : 1, sizeof(*ops));
    if (!t || !ops) {
        free(t);
        free(ops);
        return SHALE_ENOMEM;
    }
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; i < h->n && !rc; i++) {
        const jep_event *ev = &h->ev[i];
        proc_slot *s = slot_for(t, tsize - 1, ev->process);
        int open = s->op != 0 && s->op != SIZE_MAX;
        if (ev->type == JEP_INVOKE) {
            if (open) {
                set_err(err, errlen,
                        "line %d: process %" PRId64 " invokes while its op from line %d is open",
                        ev->line, ev->process, ops[s->op - 1].call_line);
                rc = SHALE_EINVAL;
                break;
            }
            jep_op *o = &ops[n];
            o->process = ev->process;
            o->f = ev->f;
            o->outcome = JEP_INFO;
            o->key = ev->key;
            o->value = &ev->value;
            o->expect = ev->f == JEP_CAS ? &ev->expect : &none_value;
            o->call_us = ev->time_us;
            o->ret_us = INT64_MAX;
            o->bound_ms = ev->f == JEP_STALE_READ ? ev->bound_ms : -1;
            o->call_line = ev->line;
            s->process = ev->process;
            s->op = ++n;
            continue;
        }
        if (!open) {
            set_err(err, errlen, "line %d: %s for process %" PRId64 " with no open invoke",
                    ev->line, jep_type_name(ev->type), ev->process);
            rc = SHALE_EINVAL;
            break;
        }
        jep_op *o = &ops[s->op - 1];
        if (o->f != ev->f || strcmp(o->key, ev->key) != 0) {
            set_err(err, errlen, "line %d: completion %s %s does not match invoke %s %s (line %d)",
                    ev->line, jep_fn_name(ev->f), ev->key, jep_fn_name(o->f), o->key, o->call_line);
            rc = SHALE_EINVAL;
            break;
        }
        if (ev->time_us < o->call_us) {
            set_err(err, errlen,
                    "line %d: completion at %" PRId64 " us before its invoke (%" PRId64
                    " us, line %d)",
                    ev->line, ev->time_us, o->call_us, o->call_line);
            rc = SHALE_EINVAL;
            break;
        }
        o->outcome = ev->type;
        o->ret_line = ev->line;
        /* An info completion keeps ret = infinity: the op may take effect
         * at any later time. Its time is informational only. */
        if (ev->type != JEP_INFO)
            o->ret_us = ev->time_us;
        if ((o->f == JEP_READ || o->f == JEP_STALE_READ) && ev->type == JEP_OK)
            o->value = &ev->value;
        if ((o->f == JEP_READ || o->f == JEP_STALE_READ) && ev->type == JEP_OK &&
            ev->value.kind == JEP_V_NONE) {
            set_err(err, errlen, "line %d: an ok %s needs \"value\"", ev->line, jep_fn_name(o->f));
            rc = SHALE_EINVAL;
            break;
        }
        s->op = SIZE_MAX;
    }
    free(t);
    if (rc) {
        free(ops);
        return rc;
    }
    qsort(ops, n, sizeof(*ops), cmp_ops);
    *ops_out = ops;
    *n_out = n;
    return 0;
}

const char *jep_value_str(const jep_value *v, char *buf, size_t len)
{
    if (!len)
        return buf;
    buf[0] = 0;
    switch (v->kind) {
    case JEP_V_NONE:
        snprintf(buf, len, "-");
        break;
    case JEP_V_NULL:
        snprintf(buf, len, "null");
        break;
    case JEP_V_SCALAR:
        snprintf(buf, len, "%s", v->text);
        break;
    case JEP_V_ARRAY: {
        size_t off = 0;
        off += (size_t)snprintf(buf + off, len - off, "[");
        for (size_t i = 0; i < v->n && off < len; i++)
            off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "", v->elems[i]);
        if (off < len)
            snprintf(buf + off, len - off, "]");
        break;
    }
    }
    return buf;
}

int jep_value_eq(const jep_value *a, const jep_value *b)
{
    if (a->kind != b->kind)
        return 0;
    if (a->kind == JEP_V_SCALAR)
        return strcmp(a->text, b->text) == 0;
    if (a->kind == JEP_V_ARRAY) {
        if (a->n != b->n)
            return 0;
        for (size_t i = 0; i < a->n; i++)
            if (strcmp(a->elems[i], b->elems[i]))
                return 0;
    }
    return 1;
}
