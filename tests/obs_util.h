/* Test helpers for the observability endpoints (header-only, static): a
 * checker of the Prometheus text exposition format, a sample lookup, and a
 * blocking HTTP/1.1 client for exact bytes. Functions are static inline: a
 * test uses the ones it needs.
 *
 * expo_check rules: every sample belongs to a family announced by one
 * `# HELP` and one `# TYPE` line before it; names and label names are
 * valid; values parse (NaN, +Inf, -Inf allowed); histogram buckets of one
 * series have increasing `le`, non-decreasing counts, end with le="+Inf",
 * and that count equals the series' _count; every histogram series has
 * _sum and _count. */
#ifndef SHALE_TEST_OBS_UTIL_H
#define SHALE_TEST_OBS_UTIL_H

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define EXPO_MAX_FAMILIES 256

typedef struct expo_family {
    char name[128];
    char type[16];
    int help, typed;
} expo_family_t;

static inline int expo_name_ok(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return 0;
    return 1;
}

static inline expo_family_t *expo_find(expo_family_t *f, int n, const char *name, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(f[i].name) == len && strncmp(f[i].name, name, len) == 0)
            return &f[i];
    return NULL;
}

static inline int expo_value_parse(const char *s, double *v)
{
    if (strcmp(s, "NaN") == 0)
        *v = NAN;
    else if (strcmp(s, "+Inf") == 0)
        *v = INFINITY;
    else if (strcmp(s, "-Inf") == 0)
        *v = -INFINITY;
    else {
        char *e;
        *v = strtod(s, &e);
        if (e == s || *e != '\0')
            return -1;
    }
    return 0;
}

/* Parse `{k="v",...}` at *p: the labels without le into rest, le into le
 * ("" if none). Advances *p past the closing brace. 0 or -1. */
static inline int expo_labels(const char **p, char *rest, size_t rlen, char *le, size_t llen)
{
    const char *s = *p;
    rest[0] = le[0] = '\0';
    if (*s != '{')
        return 0;
    s++;
    size_t rl = 0;
    while (*s != '}') {
        const char *k = s;
        while (isalnum((unsigned char)*s) || *s == '_')
            s++;
        size_t kl = (size_t)(s - k);
        if (!expo_name_ok(k, kl) || s[0] != '=' || s[1] != '"')
            return -1;
        s += 2;
        char val[256];
        size_t vl = 0;
        while (*s != '"') {
            if (*s == '\0' || *s == '\n' || vl + 2 >= sizeof(val))
                return -1;
            if (*s == '\\') {
                s++;
                if (*s != '\\' && *s != '"' && *s != 'n')
                    return -1;
            }
            val[vl++] = *s++;
        }
        val[vl] = '\0';
        s++;
        if (kl == 2 && strncmp(k, "le", 2) == 0) {
            snprintf(le, llen, "%.63s", val);
        } else {
            int w = snprintf(rest + rl, rlen - rl, "%s%.*s=\"%s\"", rl ? "," : "", (int)kl, k, val);
            if (w < 0 || (size_t)w >= rlen - rl)
                return -1;
            rl += (size_t)w;
        }
        if (*s == ',')
            s++;
        else if (*s != '}')
            return -1;
    }
    *p = s + 1;
    return 0;
}

static inline int expo_check(const char *text, char *err, size_t errlen)
{
    static expo_family_t fam[EXPO_MAX_FAMILIES];
    int nfam = 0, lineno = 0;
    char hkey[600] = "";
    double last_le = -INFINITY, last_cnt = 0, inf_cnt = -1;
    int hist_open = 0;
    const char *p = text;
    memset(fam, 0, sizeof(fam));
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (eol == NULL) {
            snprintf(err, errlen, "last line not terminated by a newline");
            return -1;
        }
        char line[2048];
        size_t ll = (size_t)(eol - p);
        lineno++;
        if (ll >= sizeof(line)) {
            snprintf(err, errlen, "line %d too long", lineno);
            return -1;
        }
        memcpy(line, p, ll);
        line[ll] = '\0';
        p = eol + 1;
        if (ll == 0)
            continue;
        if (line[0] == '#') {
            char kind[8], name[200];
            int off = 0;
            if (sscanf(line, "# %7s %199s %n", kind, name, &off) < 2 ||
                (strcmp(kind, "HELP") != 0 && strcmp(kind, "TYPE") != 0))
                continue; /* a plain comment */
            if (!expo_name_ok(name, strlen(name))) {
                snprintf(err, errlen, "line %d: bad metric name '%s'", lineno, name);
                return -1;
            }
            expo_family_t *f = expo_find(fam, nfam, name, strlen(name));
            if (f == NULL) {
                if (nfam == EXPO_MAX_FAMILIES) {
                    snprintf(err, errlen, "too many families");
                    return -1;
                }
                f = &fam[nfam++];
                snprintf(f->name, sizeof(f->name), "%.127s", name);
            }
            if (kind[0] == 'H') {
                if (f->help++) {
                    snprintf(err, errlen, "line %d: second HELP for %s", lineno, name);
                    return -1;
                }
            } else {
                const char *t = line + off;
                if (f->typed++ ||
                    (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
                     strcmp(t, "summary") && strcmp(t, "untyped"))) {
                    snprintf(err, errlen, "line %d: bad or second TYPE for %s", lineno, name);
                    return -1;
                }
                snprintf(f->type, sizeof(f->type), "%s", t);
            }
            continue;
        }
        /* A sample: name[{labels}] value [timestamp] */
        const char *s = line;
        while (isalnum((unsigned char)*s) || *s == '_' || *s == ':')
            s++;
        size_t nl = (size_t)(s - line);
        if (!expo_name_ok(line, nl)) {
            snprintf(err, errlen, "line %d: bad sample name", lineno);
            return -1;
        }
        char rest[512], le[64];
        if (expo_labels(&s, rest, sizeof(rest), le, sizeof(le)) != 0 || *s != ' ') {
            snprintf(err, errlen, "line %d: bad labels: %.100s", lineno, line);
            return -1;
        }
        char vbuf[64];
        if (sscanf(s + 1, "%63s", vbuf) != 1) {
            snprintf(err, errlen, "line %d: no value", lineno);
            return -1;
        }
        double v;
        if (expo_value_parse(vbuf, &v) != 0) {
            snprintf(err, errlen, "line %d: bad value '%s'", lineno, vbuf);
            return -1;
        }
        const char *suffix = "";
        expo_family_t *f = expo_find(fam, nfam, line, nl);
        static const char *const sfx[] = {"_bucket", "_sum", "_count"};
        for (int k = 0; f == NULL && k < 3; k++) {
            size_t sl = strlen(sfx[k]);
            if (nl > sl && strncmp(line + nl - sl, sfx[k], sl) == 0) {
                f = expo_find(fam, nfam, line, nl - sl);
                if (f != NULL)
                    suffix = sfx[k];
            }
        }
        if (f == NULL || !f->help || !f->typed) {
            snprintf(err, errlen, "line %d: sample %.*s without HELP and TYPE before it", lineno,
                     (int)nl, line);
            return -1;
        }
        int hist = strcmp(f->type, "histogram") == 0;
        if (hist != (suffix[0] != '\0')) {
            snprintf(err, errlen, "line %d: %.*s does not fit TYPE %s", lineno, (int)nl, line,
                     f->type);
            return -1;
        }
        if (strcmp(f->type, "counter") == 0 && !(v >= 0)) {
            snprintf(err, errlen, "line %d: negative or NaN counter", lineno);
            return -1;
        }
        if (!hist)
            continue;
        char key[600];
        snprintf(key, sizeof(key), "%s{%s}", f->name, rest);
        if (strcmp(suffix, "_bucket") == 0) {
            double lv;
            if (le[0] == '\0' || expo_value_parse(le, &lv) != 0) {
                snprintf(err, errlen, "line %d: bucket without a valid le", lineno);
                return -1;
            }
            if (strcmp(key, hkey) != 0) {
                if (hist_open) {
                    snprintf(err, errlen, "line %d: series %.100s ended without _count", lineno,
                             hkey);
                    return -1;
                }
                snprintf(hkey, sizeof(hkey), "%s", key);
                last_le = -INFINITY;
                last_cnt = 0;
                inf_cnt = -1;
                hist_open = 1;
            }
            if (!(lv > last_le) || v < last_cnt || inf_cnt >= 0) {
                snprintf(err, errlen, "line %d: buckets not increasing/cumulative in %.100s",
                         lineno, key);
                return -1;
            }
            last_le = lv;
            last_cnt = v;
            if (isinf(lv))
                inf_cnt = v;
        } else if (strcmp(suffix, "_count") == 0) {
            if (strcmp(key, hkey) != 0 || inf_cnt < 0 || v != inf_cnt) {
                snprintf(err, errlen, "line %d: %.100s _count %g does not match its +Inf bucket %g",
                         lineno, key, v, inf_cnt);
                return -1;
            }
            hist_open = 0;
        } else if (strcmp(key, hkey) != 0) {
            snprintf(err, errlen, "line %d: _sum of %.100s outside its series", lineno, key);
            return -1;
        }
    }
    if (hist_open) {
        snprintf(err, errlen, "histogram series %.100s ended without _count", hkey);
        return -1;
    }
    for (int i = 0; i < nfam; i++)
        if (!fam[i].help || !fam[i].typed) {
            snprintf(err, errlen, "family %s lacks HELP or TYPE", fam[i].name);
            return -1;
        }
    return 0;
}

/* The value of sample `name{labels}` (labels as rendered, "" for none), or
 * NAN when absent. */
static inline double expo_value(const char *text, const char *name, const char *labels)
{
    char want[600];
    if (labels == NULL || labels[0] == '\0')
        snprintf(want, sizeof(want), "%s ", name);
    else
        snprintf(want, sizeof(want), "%s{%s} ", name, labels);
    size_t wl = strlen(want);
    const char *p = text;
    while (p != NULL && *p) {
        if (strncmp(p, want, wl) == 0) {
            double v;
            char vbuf[64];
            if (sscanf(p + wl, "%63s", vbuf) == 1 && expo_value_parse(vbuf, &v) == 0)
                return v;
            return NAN;
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return NAN;
}

/* ---- Blocking HTTP client ---------------------------------------------------*/

static inline int obs_connect(const char *host, int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static inline int obs_send(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read one response: status, body (malloc'd, NUL-terminated; may be NULL).
 * Uses Content-Length. 0 or -1 (EOF, timeout, malformed). */
static inline int obs_read_response(int fd, int *status, char **body, size_t *blen)
{
    static char buf[1 << 20];
    size_t n = 0;
    char *hend = NULL;
    *status = 0;
    if (body != NULL)
        *body = NULL;
    while (hend == NULL) {
        if (n == sizeof(buf) - 1)
            return -1;
        ssize_t r = recv(fd, buf + n, 1, 0); /* byte by byte: never read past one answer */
        if (r <= 0)
            return -1;
        n += (size_t)r;
        buf[n] = '\0';
        if (n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0)
            hend = buf + n;
    }
    if (sscanf(buf, "HTTP/1.1 %d", status) != 1)
        return -1;
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    if (cl == NULL)
        return -1;
    size_t len = strtoul(cl + 17, NULL, 10);
    char *b = malloc(len + 1);
    size_t got = 0;
    while (got < len) {
        ssize_t r = recv(fd, b + got, len - got, 0);
        if (r <= 0) {
            free(b);
            return -1;
        }
        got += (size_t)r;
    }
    b[len] = '\0';
    if (blen != NULL)
        *blen = len;
    if (body != NULL)
        *body = b;
    else
        free(b);
    return 0;
}

/* GET path with Connection: close. 0 with *status and *body (malloc'd). */
static inline int obs_get(const char *host, int port, const char *path, int *status, char **body)
{
    int fd = obs_connect(host, port, 5000);
    if (fd < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     path, host);
    int rv = obs_send(fd, req, (size_t)n) == 0 ? obs_read_response(fd, status, body, NULL) : -1;
    close(fd);
    return rv;
}

/* Send raw bytes, read one response: its status, or -1. */
static inline int obs_raw_status(const char *host, int port, const char *bytes, size_t n)
{
    int fd = obs_connect(host, port, 5000);
    if (fd < 0)
        return -1;
    int status = -1;
    if (obs_send(fd, bytes, n) != 0 || obs_read_response(fd, &status, NULL, NULL) != 0)
        status = -1;
    close(fd);
    return status;
}

/* Milliseconds on the monotonic clock. */
static inline long long obs_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Poll GET /health on host:port every 50 ms until it answers want: 0, or
 * -1 when it has not after timeout_ms. */
static inline int obs_wait_health(const char *host, int port, int want, int timeout_ms)
{
    long long end = obs_mono_ms() + timeout_ms;
    while (obs_mono_ms() < end) {
        int st = -1;
        if (obs_get(host, port, "/health", &st, NULL) == 0 && st == want)
            return 0;
        usleep(50 * 1000);
    }
    return -1;
}

#endif
