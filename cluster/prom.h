/* Reading the Prometheus text exposition format (0.0.4) that every Shale
 * process serves on /metrics, and the arithmetic shalectl top does on it:
 * counters summed over label filters, histogram buckets merged over series,
 * deltas between two scrapes, and quantiles from bucket counts (as PromQL's
 * histogram_quantile computes them).
 *
 * What this file owns: prom_text_t (the samples of one scrape, in one
 * allocation) and prom_hist_t. What it never does: I/O, or trust its input
 * — a malformed line is skipped and counted, never fatal; `# HELP` and
 * `# TYPE` lines are not needed (the sample names say what they are). */
#ifndef SHALE_PROM_H
#define SHALE_PROM_H

#include <stddef.h>

typedef struct prom_label {
    const char *name, *value;
} prom_label_t;

typedef struct prom_sample {
    const char *name;
    const prom_label_t *labels;
    size_t nlabels;
    double value; /* NaN and +/-Inf as written */
} prom_sample_t;

/* One parsed scrape. Strings point into memory the struct owns. */
typedef struct prom_text {
    prom_sample_t *samples;
    size_t n;
    size_t bad;            /* malformed lines skipped */
    char first_error[160]; /* what was wrong with the first of them */
    /* private */
    char *arena_;
    prom_label_t *labels_;
} prom_text_t;

/* Parse len bytes of text (need not be NUL-terminated). Returns 0 (bad
 * lines counted in out->bad), or SHALE_ENOMEM. prom_free releases *out in
 * either case. */
int prom_parse(const char *text, size_t len, prom_text_t *out);
void prom_free(prom_text_t *t);

/* The value of label name on s, or NULL when s has no such label. */
const char *prom_label(const prom_sample_t *s, const char *name);

/* A label filter: the label `name` must be one of `values` ("a|b|c"), or
 * with exclude must be none of them. A missing label reads as "". */
typedef struct prom_match {
    const char *name;
    const char *values;
    int exclude;
} prom_match_t;

/* Whether s passes every filter of m[0..nm). */
int prom_matches(const prom_sample_t *s, const prom_match_t *m, size_t nm);

/* Sum of the samples named name that pass m; NaN when there is none. */
double prom_sum(const prom_text_t *t, const char *name, const prom_match_t *m, size_t nm);

/* A histogram: cumulative counts by ascending upper bound; the last bound is
 * +Inf when the exposition had it. */
#define PROM_MAX_BUCKETS 64
typedef struct prom_hist {
    size_t n;
    double le[PROM_MAX_BUCKETS];
    double count[PROM_MAX_BUCKETS];
} prom_hist_t;

/* The buckets of histogram name (its name_bucket samples) over every
 * series that passes m (the le label aside), summed bound by bound. Returns
 * the number of bucket samples used (0: none; out is then empty), or -1
 * when a series has more than PROM_MAX_BUCKETS bounds or a bad le. */
int prom_histogram(const prom_text_t *t, const char *name, const prom_match_t *m, size_t nm,
                   prom_hist_t *out);

/* now -= before, bound by bound (bounds missing from before count 0). When
 * any count went down — the process restarted between the scrapes — now is
 * left as it was (its counts since the restart). */
void prom_hist_sub(prom_hist_t *now, const prom_hist_t *before);

/* The q-quantile (0 <= q <= 1) of the observations counted in h: the
 * bucket holding rank q * total, linearly interpolated within it (the
 * lowest bucket starts at 0 when its bound is positive); a rank in the +Inf
 * bucket answers the highest finite bound. NaN when h counts nothing or q
 * is out of range. */
double prom_hist_quantile(const prom_hist_t *h, double q);

/* now - before for a counter; now alone when it went down (a restart). NaN
 * when now is NaN; before NaN counts as 0. */
double prom_counter_delta(double now, double before);

#endif
