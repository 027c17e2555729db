/* Metrics registry and the Prometheus text exposition. See metrics.h. */
#include "metrics.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

const double met_latency_buckets[MET_LATENCY_NBUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};

struct met_family {
    met_family_t *next;
    met_type_t type;
    char *name, *help;
    int ndims;
    char *dim_name[MET_MAX_DIMS];
    char *dim_val[MET_MAX_DIMS][MET_MAX_VALUES];
    size_t dim_n[MET_MAX_DIMS];
    size_t nseries;
    uint64_t *counts; /* counter values; histograms: nseries * (nbounds + 1) */
    double *values;   /* gauge values; histograms: per-series sums */
    uint64_t *hcount; /* histograms: observations per series */
    double bounds[MET_MAX_BUCKETS];
    size_t nbounds;
    int dynamic; /* one label whose values collect callbacks set */
};

#define MET_MAX_COLLECT 8

struct met_registry {
    met_family_t *head, *tail;
    met_collect_cb collect[MET_MAX_COLLECT];
    void *collect_arg[MET_MAX_COLLECT];
    int ncollect;
    /* process metrics (met_register_process) */
    met_family_t *p_rss, *p_vsz, *p_cpu, *p_fds, *p_maxfds, *p_start;
};

met_registry_t *met_registry_new(void)
{
    return calloc(1, sizeof(met_registry_t));
}

static void family_free(met_family_t *f)
{
    if (f->dynamic)
        f->dim_n[0] = f->nseries ? f->nseries : f->dim_n[0];
    free(f->name);
    free(f->help);
    for (int d = 0; d < f->ndims; d++) {
        free(f->dim_name[d]);
        for (size_t i = 0; i < f->dim_n[d]; i++)
            free(f->dim_val[d][i]);
    }
    free(f->counts);
    free(f->values);
    free(f->hcount);
    free(f);
}

void met_registry_free(met_registry_t *reg)
{
    if (reg == NULL)
        return;
    met_family_t *f = reg->head;
    while (f != NULL) {
        met_family_t *n = f->next;
        family_free(f);
        f = n;
    }
    free(reg);
}

static int name_ok(const char *s, int colon)
{
    if (s == NULL || !(isalpha((unsigned char)*s) || *s == '_' || (colon && *s == ':')))
        return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || (colon && *s == ':')))
            return 0;
    return 1;
}

static int value_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || strchr("_.:-", s[i]) != NULL))
            return 0;
    return 1;
}

/* Parse "name=v1|v2,name2=w1" into f's dimensions. 0 or -1. */
static int parse_labels(met_family_t *f, const char *spec)
{
    const char *p = spec;
    while (*p) {
        if (f->ndims == MET_MAX_DIMS)
            return -1;
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        if (eq == NULL || eq > end)
            return -1;
        int d = f->ndims++;
        f->dim_name[d] = strndup(p, (size_t)(eq - p));
        if (f->dim_name[d] == NULL || !name_ok(f->dim_name[d], 0) ||
            strncmp(f->dim_name[d], "__", 2) == 0 || strcmp(f->dim_name[d], "le") == 0)
            return -1;
        const char *v = eq + 1;
        while (v <= end) {
            const char *bar = memchr(v, '|', (size_t)(end - v));
            const char *vend = bar != NULL ? bar : end;
            if (f->dim_n[d] == MET_MAX_VALUES || !value_ok(v, (size_t)(vend - v)))
                return -1;
            f->dim_val[d][f->dim_n[d]] = strndup(v, (size_t)(vend - v));
            if (f->dim_val[d][f->dim_n[d]] == NULL)
                return -1;
            f->dim_n[d]++;
            v = vend + 1;
        }
        p = *end ? end + 1 : end;
    }
    return 0;
}

static met_family_t *family_new(met_registry_t *reg, met_type_t type, const char *name,
                                const char *help, const char *labels, const double *bounds,
                                size_t nbounds)
{
    if (reg == NULL || !name_ok(name, 1) || nbounds > MET_MAX_BUCKETS)
        return NULL;
    for (met_family_t *o = reg->head; o != NULL; o = o->next)
        if (strcmp(o->name, name) == 0)
            return NULL;
    for (size_t i = 0; i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
            return NULL;
    met_family_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help != NULL ? help : "");
    if (f->name == NULL || f->help == NULL || (labels != NULL && parse_labels(f, labels) != 0)) {
        family_free(f);
        return NULL;
    }
    f->nseries = 1;
    for (int d = 0; d < f->ndims; d++)
        f->nseries *= f->dim_n[d];
    if (f->nseries == 0) {
        family_free(f);
        return NULL;
    }
    f->nbounds = nbounds;
    if (nbounds > 0)
        memcpy(f->bounds, bounds, nbounds * sizeof(*bounds));
    size_t ncounts = type == MET_HISTOGRAM ? f->nseries * (nbounds + 1) : f->nseries;
    f->counts = calloc(ncounts, sizeof(*f->counts));
    f->values = calloc(f->nseries, sizeof(*f->values));
    f->hcount = type == MET_HISTOGRAM ? calloc(f->nseries, sizeof(*f->hcount)) : NULL;
    if (f->counts == NULL || f->values == NULL || (type == MET_HISTOGRAM && f->hcount == NULL)) {
        family_free(f);
        return NULL;
    }
    if (reg->tail != NULL)
        reg->tail->next = f;
    else
        reg->head = f;
    reg->tail = f;
    return f;
}

met_family_t *met_counter(met_registry_t *reg, const char *name, const char *help,
                          const char *labels)
{
    return family_new(reg, MET_COUNTER, name, help, labels, NULL, 0);
}

met_family_t *met_gauge(met_registry_t *reg, const char *name, const char *help, const char *labels)
{
    return family_new(reg, MET_GAUGE, name, help, labels, NULL, 0);
}

met_family_t *met_gauge_dynamic(met_registry_t *reg, const char *name, const char *help,
                                const char *label, size_t max_series)
{
    if (label == NULL || !name_ok(label, 0) || max_series == 0 || max_series > MET_MAX_VALUES)
        return NULL;
    met_family_t *f = family_new(reg, MET_GAUGE, name, help, NULL, NULL, 0);
    if (f == NULL)
        return NULL;
    f->dynamic = 1;
    f->ndims = 1;
    f->dim_name[0] = strdup(label);
    f->dim_n[0] = max_series; /* every value buffer, for family_free */
    int failed = f->dim_name[0] == NULL;
    for (size_t i = 0; i < max_series; i++)
        failed |= (f->dim_val[0][i] = calloc(1, MET_DYN_VALUE_LEN)) == NULL;
    double *nv = realloc(f->values, max_series * sizeof(*f->values));
    if (nv != NULL)
        f->values = nv;
    if (failed || nv == NULL) {
        /* Left registered (the registry owns it) but with no series. */
        f->nseries = 0;
        return NULL;
    }
    f->nseries = max_series;
    f->dim_n[0] = 0;
    return f;
}

void met_dyn_reset(met_family_t *f)
{
    if (f != NULL && f->dynamic)
        f->dim_n[0] = 0;
}

int met_dyn_set(met_family_t *f, const char *value, double v)
{
    if (f == NULL || !f->dynamic || f->dim_n[0] == f->nseries || !value_ok(value, strlen(value)) ||
        strlen(value) >= MET_DYN_VALUE_LEN)
        return -1;
    snprintf(f->dim_val[0][f->dim_n[0]], MET_DYN_VALUE_LEN, "%s", value);
    f->values[f->dim_n[0]++] = v;
    return 0;
}

met_family_t *met_histogram(met_registry_t *reg, const char *name, const char *help,
                            const char *labels, const double *bounds, size_t nbounds)
{
    return family_new(reg, MET_HISTOGRAM, name, help, labels, bounds, nbounds);
}

int met_label_index(const met_family_t *f, int dim, const char *value)
{
    if (f == NULL || dim < 0 || dim >= f->ndims || value == NULL)
        return -1;
    for (size_t i = 0; i < f->dim_n[dim]; i++)
        if (strcmp(f->dim_val[dim][i], value) == 0)
            return (int)i;
    return -1;
}

const char *met_label_value(const met_family_t *f, int dim, size_t i)
{
    if (f == NULL || f->dynamic || dim < 0 || dim >= f->ndims || f->dim_n[dim] == 0)
        return "";
    return f->dim_val[dim][i < f->dim_n[dim] ? i : f->dim_n[dim] - 1];
}

size_t met_series_at(const met_family_t *f, size_t i0, size_t i1)
{
    if (f == NULL || f->ndims == 0)
        return 0;
    if (i0 >= f->dim_n[0])
        i0 = f->dim_n[0] - 1;
    if (f->ndims == 1)
        return i0;
    if (i1 >= f->dim_n[1])
        i1 = f->dim_n[1] - 1;
    return i0 * f->dim_n[1] + i1;
}

size_t met_series(const met_family_t *f, const char *v0, const char *v1)
{
    if (f == NULL || f->ndims == 0)
        return 0;
    int a = met_label_index(f, 0, v0);
    int b = f->ndims > 1 ? met_label_index(f, 1, v1) : 0;
    return met_series_at(f, a < 0 ? f->dim_n[0] - 1 : (size_t)a,
                         b < 0 ? f->dim_n[f->ndims - 1] - 1 : (size_t)b);
}

void met_add(met_family_t *f, size_t series, uint64_t n)
{
    if (f != NULL && series < f->nseries && f->type == MET_COUNTER)
        f->counts[series] += n;
}

void met_counter_set(met_family_t *f, size_t series, uint64_t v)
{
    if (f != NULL && series < f->nseries && f->type == MET_COUNTER)
        f->counts[series] = v;
}

void met_counter_setf(met_family_t *f, size_t series, double v)
{
    if (f != NULL && series < f->nseries && f->type == MET_COUNTER) {
        f->counts[series] = 0;
        f->values[series] = v;
    }
}

void met_set(met_family_t *f, size_t series, double v)
{
    if (f != NULL && series < f->nseries && f->type == MET_GAUGE)
        f->values[series] = v;
}

void met_observe(met_family_t *f, size_t series, double v)
{
    if (f == NULL || series >= f->nseries || f->type != MET_HISTOGRAM)
        return;
    size_t b = 0;
    while (b < f->nbounds && v > f->bounds[b])
        b++;
    f->counts[series * (f->nbounds + 1) + b]++;
    f->values[series] += v;
    f->hcount[series]++;
}

uint64_t met_counter_value(const met_family_t *f, size_t series)
{
    return f != NULL && series < f->nseries && f->type == MET_COUNTER ? f->counts[series] : 0;
}

double met_gauge_value(const met_family_t *f, size_t series)
{
    return f != NULL && series < f->nseries && f->type == MET_GAUGE ? f->values[series] : 0;
}

uint64_t met_histogram_count(const met_family_t *f, size_t series)
{
    return f != NULL && series < f->nseries && f->type == MET_HISTOGRAM ? f->hcount[series] : 0;
}

int met_on_collect(met_registry_t *reg, met_collect_cb cb, void *arg)
{
    if (reg == NULL || reg->ncollect == MET_MAX_COLLECT)
        return -1;
    reg->collect[reg->ncollect] = cb;
    reg->collect_arg[reg->ncollect] = arg;
    reg->ncollect++;
    return 0;
}

/* ---- Rendering ------------------------------------------------------------*/

typedef struct buf {
    char *p;
    size_t len, cap;
    int failed;
} buf_t;

static void put(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf_t *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

/* A sample value: integers exactly, NaN and infinities as Prometheus spells
 * them, other values with 17 significant digits (round-trips a double). */
static void put_double(buf_t *b, double v)
{
    if (isnan(v))
        put(b, "NaN");
    else if (isinf(v))
        put(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9.007199254740992e15)
        put(b, "%.0f", v);
    else {
        char t[40];
        snprintf(t, sizeof(t), "%.15g", v);
        if (strtod(t, NULL) != v)
            snprintf(t, sizeof(t), "%.17g", v);
        put(b, "%s", t);
    }
}

static void put_help(buf_t *b, const met_family_t *f)
{
    put(b, "# HELP %s ", f->name);
    for (const char *c = f->help; *c; c++) {
        if (*c == '\\')
            put(b, "\\\\");
        else if (*c == '\n')
            put(b, "\\n");
        else
            put(b, "%c", *c);
    }
    static const char *const types[] = {"counter", "gauge", "histogram"};
    put(b, "\n# TYPE %s %s\n", f->name, types[f->type]);
}

/* `{a="x",b="y"` for series s (no closing brace: histograms add le). */
static int put_labels_open(buf_t *b, const met_family_t *f, size_t s)
{
    if (f->ndims == 0)
        return 0;
    size_t i1 = f->ndims > 1 ? s % f->dim_n[1] : 0;
    size_t i0 = f->ndims > 1 ? s / f->dim_n[1] : s;
    put(b, "{%s=\"%s\"", f->dim_name[0], f->dim_val[0][i0]);
    if (f->ndims > 1)
        put(b, ",%s=\"%s\"", f->dim_name[1], f->dim_val[1][i1]);
    return 1;
}

static void render_family(buf_t *b, const met_family_t *f)
{
    put_help(b, f);
    size_t nseries = f->dynamic ? f->dim_n[0] : f->nseries;
    for (size_t s = 0; s < nseries; s++) {
        if (f->type != MET_HISTOGRAM) {
            put(b, "%s", f->name);
            if (put_labels_open(b, f, s))
                put(b, "}");
            if (f->type == MET_COUNTER && f->values[s] == 0)
                put(b, " %llu\n", (unsigned long long)f->counts[s]);
            else if (f->type == MET_COUNTER) {
                put(b, " ");
                put_double(b, f->values[s] + (double)f->counts[s]);
                put(b, "\n");
            } else {
                put(b, " ");
                put_double(b, f->values[s]);
                put(b, "\n");
            }
            continue;
        }
        uint64_t cum = 0;
        const uint64_t *c = f->counts + s * (f->nbounds + 1);
        for (size_t k = 0; k <= f->nbounds; k++) {
            cum += c[k];
            put(b, "%s_bucket", f->name);
            put(b, put_labels_open(b, f, s) ? "," : "{");
            put(b, "le=\"");
            if (k < f->nbounds)
                put(b, "%g", f->bounds[k]);
            else
                put(b, "+Inf");
            put(b, "\"} %llu\n", (unsigned long long)cum);
        }
        put(b, "%s_sum", f->name);
        if (put_labels_open(b, f, s))
            put(b, "}");
        put(b, " ");
        put_double(b, f->values[s]);
        put(b, "\n%s_count", f->name);
        if (put_labels_open(b, f, s))
            put(b, "}");
        put(b, " %llu\n", (unsigned long long)f->hcount[s]);
    }
}

static void collect_process(met_registry_t *reg);

int met_render(met_registry_t *reg, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (reg == NULL)
        return -1;
    if (reg->p_rss != NULL)
        collect_process(reg);
    for (int i = 0; i < reg->ncollect; i++)
        reg->collect[i](reg->collect_arg[i]);
    buf_t b = {malloc(16384), 0, 16384, 0};
    if (b.p == NULL)
        return -1;
    b.p[0] = '\0';
    for (const met_family_t *f = reg->head; f != NULL; f = f->next)
        render_family(&b, f);
    if (b.failed) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

/* ---- Process metrics ------------------------------------------------------*/

int met_register_process(met_registry_t *reg)
{
    reg->p_rss =
        met_gauge(reg, "process_resident_memory_bytes", "Resident memory size in bytes.", NULL);
    reg->p_vsz =
        met_gauge(reg, "process_virtual_memory_bytes", "Virtual memory size in bytes.", NULL);
    reg->p_cpu = met_counter(reg, "process_cpu_seconds_total",
                             "Total user and system CPU time spent in seconds.", NULL);
    reg->p_fds = met_gauge(reg, "process_open_fds", "Number of open file descriptors.", NULL);
    reg->p_maxfds =
        met_gauge(reg, "process_max_fds", "Maximum number of open file descriptors.", NULL);
    reg->p_start = met_gauge(reg, "process_start_time_seconds",
                             "Start time of the process since unix epoch in seconds.", NULL);
    if (reg->p_rss == NULL || reg->p_vsz == NULL || reg->p_cpu == NULL || reg->p_fds == NULL ||
        reg->p_maxfds == NULL || reg->p_start == NULL) {
        reg->p_rss = NULL;
        return -1;
    }
    return 0;
}

/* /proc/self/stat fields after the command name (which may hold spaces and
 * parentheses: parse from the last ')'). */
static void collect_process(met_registry_t *reg)
{
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    char buf[1024];
    FILE *fp = fopen("/proc/self/stat", "r");
    if (fp != NULL) {
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        unsigned long utime = 0, stime = 0, vsize = 0;
        unsigned long long start = 0;
        long rss = 0;
        /* fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt
         * majflt cmajflt utime(14) stime(15) cutime cstime priority nice
         * num_threads itrealvalue starttime(22) vsize(23) rss(24) */
        if (p != NULL &&
            sscanf(p + 1,
                   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                   "%*d %llu %lu %ld",
                   &utime, &stime, &start, &vsize, &rss) == 5 &&
            tick > 0) {
            met_counter_setf(reg->p_cpu, 0, (double)(utime + stime) / (double)tick);
            met_set(reg->p_vsz, 0, (double)vsize);
            met_set(reg->p_rss, 0, (double)rss * (double)page);
            double boot = 0;
            FILE *st = fopen("/proc/stat", "r");
            if (st != NULL) {
                char line[256];
                while (fgets(line, sizeof(line), st) != NULL)
                    if (strncmp(line, "btime ", 6) == 0) {
                        boot = strtod(line + 6, NULL);
                        break;
                    }
                fclose(st);
            }
            met_set(reg->p_start, 0, boot + (double)start / (double)tick);
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        met_set(reg->p_fds, 0, (double)(n > 0 ? n - 1 : 0)); /* not the DIR's own fd */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        met_set(reg->p_maxfds, 0, rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}
