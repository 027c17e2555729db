/* Levelled, structured logging (logfmt: ts=... level=... msg="..." k=v).
 *
 * One line per event on stderr, written with a single write(2) so lines from
 * concurrent processes never interleave. Level changes at run time
 * (SIGUSR1 cycles it in shaled and shale-router: log_cycle_level). Never
 * allocates on the logging path. */
#ifndef SHALE_LOG_H
#define SHALE_LOG_H

#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(int level);
int log_get_level(void);
/* "debug" | "info" | "warn" | "error" -> level, -1 if unknown. */
int log_parse_level(const char *s);
const char *log_level_name(int level);
/* SIGUSR1's action in every process: debug -> info -> warn -> error ->
 * debug. Logs msg="log level changed" level=<new> as a warn line that is
 * written whatever the new level (at error too). Returns the new level. */
int log_cycle_level(void);
/* Set a process tag written as proc=... on every line. */
void log_set_proc(const char *proc);

/* ---- Request lines (docs/observability.md, "Request tracing") ------------
 * shaled and shale-router log each answered request the same way: at debug
 * as msg="request", and — when it took at least the slow threshold (their
 * --slow-ms, 0: off) — as msg="slow request" at info (answered ok,
 * cas_failed or not_found) or warn (any other outcome). Both carry
 * trace=<16 hex digits> (or trace=- for a request no router stamped). */

/* The level of a request's line: LOG_INFO / LOG_WARN when slow, else
 * LOG_DEBUG. expected: the outcome is ok, cas_failed or not_found.
 * slow_ms 0 never counts a request as slow. */
int log_request_level(double ms, uint64_t slow_ms, int expected);
/* The trace id as it appears in logs: 16 lower-case hex digits, "-" for 0.
 * buf: at least LOG_TRACE_LEN bytes; returns buf. */
#define LOG_TRACE_LEN 17
const char *log_trace_str(uint64_t trace, char *buf);

/* msg is a plain sentence; fmt adds logfmt pairs (" k=v k2=v2"). */
void log_write(int level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(msg, ...) \
    do { if (log_get_level() <= LOG_DEBUG) log_write(LOG_DEBUG, msg, __VA_ARGS__); } while (0)
#define log_info(msg, ...) log_write(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_write(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_write(LOG_ERROR, msg, __VA_ARGS__)

#endif
