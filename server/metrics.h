/* Metrics registry: counters, gauges and fixed-bucket histograms rendered in
 * the Prometheus text exposition format (version 0.0.4).
 *
 * Rules:
 *  - every family's label values are fixed when it is registered (at most
 *    MET_MAX_DIMS label names, each with a `|`-separated list of values), so
 *    the number of series is known up front and bounded: the hot path is an
 *    array index, never an allocation or a string lookup;
 *  - callers resolve label values to a series index once (met_series) and
 *    keep it; an unknown value maps to the last value of its dimension,
 *    which should be a catch-all like "other";
 *  - gauges that mirror state owned elsewhere are set by collect callbacks
 *    that run just before rendering;
 *  - not thread-safe: one thread (the libuv loop) owns a registry.
 * Library code: never exits; registration errors return NULL. */
#ifndef SHALE_METRICS_H
#define SHALE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define MET_MAX_DIMS 2
#define MET_MAX_VALUES 64  /* values per label dimension */
#define MET_MAX_BUCKETS 24 /* histogram upper bounds, +Inf not counted */

typedef enum met_type { MET_COUNTER, MET_GAUGE, MET_HISTOGRAM } met_type_t;

typedef struct met_registry met_registry_t;
typedef struct met_family met_family_t;

/* Latency buckets in seconds, 100 µs .. 10 s (MET_LATENCY_NBUCKETS). */
extern const double met_latency_buckets[];
#define MET_LATENCY_NBUCKETS 16

/* A new empty registry (free with met_registry_free), NULL without memory. */
met_registry_t *met_registry_new(void);
void met_registry_free(met_registry_t *reg);

/* Register a family. name: [a-zA-Z_:][a-zA-Z0-9_:]*, unique in reg.
 * labels: NULL for a single series, else "name=v1|v2,name2=w1|w2" (values
 * [a-zA-Z0-9_.:-]+). Histograms take ascending upper bounds (seconds or
 * another base unit); the +Inf bucket is implicit. NULL on a bad spec or
 * without memory; the registry owns the family. */
met_family_t *met_counter(met_registry_t *reg, const char *name, const char *help,
                          const char *labels);
met_family_t *met_gauge(met_registry_t *reg, const char *name, const char *help,
                        const char *labels);
met_family_t *met_histogram(met_registry_t *reg, const char *name, const char *help,
                            const char *labels, const double *bounds, size_t nbounds);

/* A gauge with one label whose values change at run time (e.g. shard group
 * ids), bounded by max_series (<= MET_MAX_VALUES): a collect callback calls
 * met_dyn_reset, then met_dyn_set for each current value. */
#define MET_DYN_VALUE_LEN 32
met_family_t *met_gauge_dynamic(met_registry_t *reg, const char *name, const char *help,
                                const char *label, size_t max_series);
void met_dyn_reset(met_family_t *f);
/* 0, or -1 when full or value is not a valid label value. */
int met_dyn_set(met_family_t *f, const char *value, double v);

/* Series index for label values (one per dimension, in registration order;
 * a family without labels has the one series 0). Unknown values map to the
 * dimension's last value. Call once at set-up, not per observation. */
size_t met_series(const met_family_t *f, const char *v0, const char *v1);
/* Index of value in dimension dim, or -1. */
int met_label_index(const met_family_t *f, int dim, const char *value);
/* The i-th value of dimension dim as registered (i past the end: the last
 * value, the catch-all), or "" for a bad dimension. Never NULL. Lets a log
 * line name an operation or outcome exactly as the metrics label it. */
const char *met_label_value(const met_family_t *f, int dim, size_t i);
/* Series index from per-dimension value indexes. */
size_t met_series_at(const met_family_t *f, size_t i0, size_t i1);

/* Hot path: O(1) (histograms: O(buckets)), no allocation. A NULL family is
 * ignored, so optional metrics need no checks at call sites. */
void met_add(met_family_t *f, size_t series, uint64_t n);
void met_set(met_family_t *f, size_t series, double v);
void met_observe(met_family_t *f, size_t series, double v);
/* Counters mirrored from a monotonic count kept elsewhere. */
void met_counter_set(met_family_t *f, size_t series, uint64_t v);
/* A counter whose value is not an integer (CPU seconds). */
void met_counter_setf(met_family_t *f, size_t series, double v);

uint64_t met_counter_value(const met_family_t *f, size_t series);
double met_gauge_value(const met_family_t *f, size_t series);
/* Histogram observations of a series. */
uint64_t met_histogram_count(const met_family_t *f, size_t series);

/* Run cb(arg) before each rendering (to refresh gauges). At most 8. */
typedef void (*met_collect_cb)(void *arg);
int met_on_collect(met_registry_t *reg, met_collect_cb cb, void *arg);

/* Render every family. *out is malloc'd (caller frees with free()), *len
 * its length without the terminating NUL. 0, or -1 without memory. */
int met_render(met_registry_t *reg, char **out, size_t *len);

/* Standard process metrics from /proc/self (process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_cpu_seconds_total, process_open_fds,
 * process_max_fds, process_start_time_seconds), refreshed at render time. */
int met_register_process(met_registry_t *reg);

#endif
