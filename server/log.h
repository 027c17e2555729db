/* Levelled, structured logging (logfmt: ts=... level=... msg="..." k=v).
 *
 * One line per event on stderr, written with a single write(2) so lines from
 * concurrent processes never interleave. Level changes at run time
 * (shaled: SIGUSR1 cycles it). Never allocates on the logging path. */
#ifndef SHALE_LOG_H
#define SHALE_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(int level);
int log_get_level(void);
/* "debug" | "info" | "warn" | "error" -> level, -1 if unknown. */
int log_parse_level(const char *s);
const char *log_level_name(int level);
/* Set a process tag written as proc=... on every line. */
void log_set_proc(const char *proc);

/* msg is a plain sentence; fmt adds logfmt pairs (" k=v k2=v2"). */
void log_write(int level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(msg, ...) \
    do { if (log_get_level() <= LOG_DEBUG) log_write(LOG_DEBUG, msg, __VA_ARGS__); } while (0)
#define log_info(msg, ...) log_write(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_write(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_write(LOG_ERROR, msg, __VA_ARGS__)

#endif
