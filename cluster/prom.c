/* Prometheus text format parsing and histogram arithmetic. See prom.h.
 *
 * Parsing rules (text exposition format 0.0.4):
 *  - one sample per line: NAME[{LABEL="VALUE",...}] VALUE [TIMESTAMP];
 *    names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*,
 *    label values with the escapes \\ \" \n only, a trailing comma in the
 *    braces allowed, a label named twice refused;
 *  - values as strtod reads them (NaN, +Inf, -Inf included), the timestamp
 *    an integer; anything else on the line makes it malformed;
 *  - empty lines and lines starting with # are skipped;
 *  - a malformed line is counted and skipped; the rest still parses.
 * Memory: one arena for every string (never larger than the text: each
 * string is copied with its NUL into the room its delimiters took), and
 * sample and label arrays sized by counting lines and '=' signs first, so
 * nothing moves once written. */
#include "prom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale_errors.h"

static int name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static int name_char(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

static int ws(char c)
{
    return c == ' ' || c == '\t';
}

typedef struct cursor {
    const char *p, *end;
} cursor_t;

static void skip_ws(cursor_t *c)
{
    while (c->p < c->end && ws(*c->p))
        c->p++;
}

/* A name at the cursor into the arena (NUL-terminated). labels: no ':'. */
static const char *read_name(cursor_t *c, char **arena, int label)
{
    const char *s = c->p;
    if (c->p >= c->end || !name_start(*c->p) || (label && *c->p == ':'))
        return NULL;
    while (c->p < c->end && name_char(*c->p) && !(label && *c->p == ':'))
        c->p++;
    size_t n = (size_t)(c->p - s);
    char *out = *arena;
    memcpy(out, s, n);
    out[n] = '\0';
    *arena += n + 1;
    return out;
}

/* A quoted label value (the cursor on the opening quote), unescaped. */
static const char *read_value(cursor_t *c, char **arena, const char **why)
{
    if (c->p >= c->end || *c->p != '"') {
        *why = "label value not quoted";
        return NULL;
    }
    c->p++;
    char *out = *arena, *w = out;
    for (;;) {
        if (c->p >= c->end) {
            *why = "label value not closed";
            return NULL;
        }
        char ch = *c->p++;
        if (ch == '"')
            break;
        if (ch == '\\') {
            if (c->p >= c->end) {
                *why = "label value not closed";
                return NULL;
            }
            char e = *c->p++;
            if (e == 'n')
                ch = '\n';
            else if (e == '\\' || e == '"')
                ch = e;
            else {
                *why = "bad escape in a label value";
                return NULL;
            }
        }
        *w++ = ch;
    }
    *w = '\0';
    *arena = w + 1;
    return out;
}

/* A whitespace-delimited token as a double. 0 or -1. */
static int read_number(cursor_t *c, double *v, int integer)
{
    char tok[64];
    const char *s = c->p;
    while (c->p < c->end && !ws(*c->p))
        c->p++;
    size_t n = (size_t)(c->p - s);
    if (n == 0 || n >= sizeof(tok))
        return -1;
    memcpy(tok, s, n);
    tok[n] = '\0';
    char *e = NULL;
    if (integer) {
        (void)strtoll(tok, &e, 10);
        *v = 0;
    } else {
        *v = strtod(tok, &e);
    }
    return e == tok || *e != '\0' ? -1 : 0;
}

/* One line (without its newline). 1 a sample was added, 0 nothing to add
 * (blank, comment), -1 malformed (why says how). */
static int parse_line(const char *line, size_t len, prom_text_t *t, char **arena, size_t *nlabels,
                      const char **why)
{
    cursor_t c = {line, line + len};
    while (c.end > c.p && c.end[-1] == '\r')
        c.end--;
    skip_ws(&c);
    if (c.p == c.end || *c.p == '#')
        return 0;
    char *arena0 = *arena;
    size_t nl0 = *nlabels;
    prom_sample_t *s = &t->samples[t->n];
    prom_label_t *labs = &t->labels_[*nlabels];
    size_t nl = 0;
    s->name = read_name(&c, arena, 0);
    if (s->name == NULL) {
        *why = "bad metric name";
        goto bad;
    }
    const char *after_name = c.p;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '{') {
        c.p++;
        for (;;) {
            skip_ws(&c);
            if (c.p < c.end && *c.p == '}') {
                c.p++;
                break;
            }
            const char *ln = read_name(&c, arena, 1);
            if (ln == NULL) {
                *why = "bad label name";
                goto bad;
            }
            skip_ws(&c);
            if (c.p >= c.end || *c.p != '=') {
                *why = "label without '='";
                goto bad;
            }
            c.p++;
            skip_ws(&c);
            const char *lv = read_value(&c, arena, why);
            if (lv == NULL)
                goto bad;
            for (size_t i = 0; i < nl; i++)
                if (strcmp(labs[i].name, ln) == 0) {
                    *why = "label named twice";
                    goto bad;
                }
            labs[nl].name = ln;
            labs[nl].value = lv;
            nl++;
            skip_ws(&c);
            if (c.p < c.end && *c.p == ',') {
                c.p++;
                continue;
            }
            if (c.p < c.end && *c.p == '}') {
                c.p++;
                break;
            }
            *why = "labels not separated by ',' or closed by '}'";
            goto bad;
        }
    } else {
        c.p = after_name; /* the spaces before the value */
    }
    if (c.p >= c.end || !ws(*c.p)) {
        *why = c.p >= c.end ? "no value" : "no space before the value";
        goto bad;
    }
    skip_ws(&c);
    if (read_number(&c, &s->value, 0) != 0) {
        *why = "bad value";
        goto bad;
    }
    skip_ws(&c);
    if (c.p < c.end) {
        double ts;
        if (read_number(&c, &ts, 1) != 0) {
            *why = "bad timestamp";
            goto bad;
        }
        skip_ws(&c);
        if (c.p < c.end) {
            *why = "text after the timestamp";
            goto bad;
        }
    }
    s->labels = labs;
    s->nlabels = nl;
    *nlabels += nl;
    t->n++;
    return 1;
bad:
    *arena = arena0;
    *nlabels = nl0;
    return -1;
}

int prom_parse(const char *text, size_t len, prom_text_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t lines = 1, eqs = 0;
    for (size_t i = 0; i < len; i++) {
        lines += text[i] == '\n';
        eqs += text[i] == '=';
    }
    out->samples = calloc(lines, sizeof(*out->samples));
    out->labels_ = calloc(eqs + 1, sizeof(*out->labels_));
    out->arena_ = malloc(len + 2);
    if (out->samples == NULL || out->labels_ == NULL || out->arena_ == NULL)
        return SHALE_ENOMEM;
    char *arena = out->arena_;
    size_t nlabels = 0, lineno = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol != NULL ? (size_t)(eol - p) : (size_t)(end - p);
        const char *why = "";
        lineno++;
        if (parse_line(p, n, out, &arena, &nlabels, &why) < 0) {
            if (out->bad++ == 0)
                snprintf(out->first_error, sizeof(out->first_error), "line %zu: %s", lineno, why);
        }
        p += n + (eol != NULL);
    }
    return 0;
}

void prom_free(prom_text_t *t)
{
    free(t->samples);
    free(t->labels_);
    free(t->arena_);
    memset(t, 0, sizeof(*t));
}

const char *prom_label(const prom_sample_t *s, const char *name)
{
    for (size_t i = 0; i < s->nlabels; i++)
        if (strcmp(s->labels[i].name, name) == 0)
            return s->labels[i].value;
    return NULL;
}

/* Whether v is one of the '|'-separated words of list. */
static int in_list(const char *v, const char *list)
{
    size_t vl = strlen(v);
    for (const char *p = list;;) {
        size_t n = strcspn(p, "|");
        if (n == vl && strncmp(p, v, n) == 0)
            return 1;
        if (p[n] == '\0')
            return 0;
        p += n + 1;
    }
}

int prom_matches(const prom_sample_t *s, const prom_match_t *m, size_t nm)
{
    for (size_t i = 0; i < nm; i++) {
        const char *v = prom_label(s, m[i].name);
        if (in_list(v != NULL ? v : "", m[i].values) == (m[i].exclude != 0))
            return 0;
    }
    return 1;
}

double prom_sum(const prom_text_t *t, const char *name, const prom_match_t *m, size_t nm)
{
    double sum = 0;
    int any = 0;
    for (size_t i = 0; i < t->n; i++) {
        const prom_sample_t *s = &t->samples[i];
        if (strcmp(s->name, name) != 0 || !prom_matches(s, m, nm))
            continue;
        sum += s->value;
        any = 1;
    }
    return any ? sum : NAN;
}

int prom_histogram(const prom_text_t *t, const char *name, const prom_match_t *m, size_t nm,
                   prom_hist_t *out)
{
    char bucket[256];
    memset(out, 0, sizeof(*out));
    int n = snprintf(bucket, sizeof(bucket), "%s_bucket", name);
    if (n < 0 || (size_t)n >= sizeof(bucket))
        return -1;
    int used = 0;
    for (size_t i = 0; i < t->n; i++) {
        const prom_sample_t *s = &t->samples[i];
        if (strcmp(s->name, bucket) != 0 || !prom_matches(s, m, nm))
            continue;
        const char *les = prom_label(s, "le");
        char *e = NULL;
        double le = les != NULL ? strtod(les, &e) : NAN;
        if (les == NULL || e == les || *e != '\0' || isnan(le))
            return -1;
        size_t k = 0;
        while (k < out->n && out->le[k] < le)
            k++;
        if (k == out->n || out->le[k] != le) {
            if (out->n == PROM_MAX_BUCKETS)
                return -1;
            memmove(&out->le[k + 1], &out->le[k], (out->n - k) * sizeof(double));
            memmove(&out->count[k + 1], &out->count[k], (out->n - k) * sizeof(double));
            out->le[k] = le;
            out->count[k] = 0;
            out->n++;
        }
        if (!isnan(s->value))
            out->count[k] += s->value;
        used++;
    }
    return used;
}

void prom_hist_sub(prom_hist_t *now, const prom_hist_t *before)
{
    double d[PROM_MAX_BUCKETS];
    for (size_t i = 0; i < now->n; i++) {
        double b = 0;
        for (size_t j = 0; j < before->n; j++)
            if (before->le[j] == now->le[i])
                b = before->count[j];
        if (now->count[i] < b)
            return; /* a restart: keep the counts since it */
        d[i] = now->count[i] - b;
    }
    memcpy(now->count, d, now->n * sizeof(double));
}

double prom_hist_quantile(const prom_hist_t *h, double q)
{
    if (h->n == 0 || !(q >= 0 && q <= 1))
        return NAN;
    double total = h->count[h->n - 1];
    if (!(total > 0))
        return NAN;
    double rank = q * total;
    size_t b = 0;
    while (b < h->n - 1 && h->count[b] < rank)
        b++;
    if (isinf(h->le[b]))
        return b > 0 ? h->le[b - 1] : NAN;
    double start = b > 0 ? h->le[b - 1] : (h->le[0] > 0 ? 0 : h->le[0]);
    double cstart = b > 0 ? h->count[b - 1] : 0;
    double in = h->count[b] - cstart;
    if (!(in > 0))
        return h->le[b];
    return start + (h->le[b] - start) * ((rank - cstart) / in);
}

double prom_counter_delta(double now, double before)
{
    if (isnan(now))
        return NAN;
    if (isnan(before))
        before = 0;
    return now >= before ? now - before : now;
}
