/* logfmt logger. See log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int g_level = LOG_INFO;
static char g_proc[32] = "shale";

void log_set_level(int level)
{
    if (level >= LOG_DEBUG && level <= LOG_ERROR)
        g_level = level;
}

int log_get_level(void) { return g_level; }

static const char *const names[] = {"debug", "info", "warn", "error"};

int log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

const char *log_level_name(int level)
{
    return (level >= 0 && level <= 3) ? names[level] : "?";
}

int log_request_level(double ms, uint64_t slow_ms, int expected)
{
    if (slow_ms > 0 && ms >= (double)slow_ms)
        return expected ? LOG_INFO : LOG_WARN;
    return LOG_DEBUG;
}

const char *log_trace_str(uint64_t trace, char *buf)
{
    if (trace == 0)
        snprintf(buf, LOG_TRACE_LEN, "-");
    else
        snprintf(buf, LOG_TRACE_LEN, "%016llx", (unsigned long long)trace);
    return buf;
}

void log_set_proc(const char *proc)
{
    snprintf(g_proc, sizeof(g_proc), "%s", proc);
}

static void vwrite_line(int level, const char *msg, const char *fmt, va_list ap)
{
    char line[2048];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s proc=%s "
                     "msg=\"%s\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
                     names[level], g_proc, msg);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(line) && fmt != NULL && fmt[0] != '\0') {
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void log_write(int level, const char *msg, const char *fmt, ...)
{
    if (level < g_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vwrite_line(level, msg, fmt, ap);
    va_end(ap);
}

static void write_always(int level, const char *msg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwrite_line(level, msg, fmt, ap);
    va_end(ap);
}

int log_cycle_level(void)
{
    int next = (g_level + 1) % 4;
    g_level = next;
    write_always(LOG_WARN, "log level changed", " level=%s", names[next]);
    return next;
}
