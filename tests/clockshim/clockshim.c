/* clockshim: an LD_PRELOAD library that shifts and skews one process's
 * realtime clock, for the clock tests (tests/integration/test_clock.c,
 * docs/jepsen.md "Why not libfaketime").
 *
 * CLOCK_REALTIME (and _COARSE), gettimeofday() and time() return
 *     real + offset + (real - t0) * drift_ppm / 1e6
 * where "offset_ms drift_ppm" is read from the file named by
 * $SHALE_CLOCKSHIM_FILE (missing or unreadable: 0 0) and t0 is the real
 * time the file was (re)read. The file is re-read when its mtime or size
 * changes, checked at most every 5 ms: writing a new offset steps the
 * process's clock. Every other clock (CLOCK_MONOTONIC, which libuv's
 * timers use) passes through untouched.
 *
 * Test code only: never built into a product binary. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*cg_fn)(clockid_t, struct timespec *);

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t g_offset_ns, g_drift_ppm, g_t0_ns;
static struct timespec g_mtime;
static off_t g_size = -1;
static int64_t g_checked_ns = -1;

static int real_clock(clockid_t id, struct timespec *ts)
{
    static cg_fn next;
    if (next == NULL)
        next = (cg_fn)dlsym(RTLD_NEXT, "clock_gettime");
    if (next == NULL)
        return (int)syscall(SYS_clock_gettime, id, ts);
    return next(id, ts);
}

static int64_t ns_of(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* Re-read the control file when it changed (caller holds mu). */
static void refresh(int64_t real_ns)
{
    struct timespec mono;
    real_clock(CLOCK_MONOTONIC, &mono);
    if (g_checked_ns >= 0 && ns_of(&mono) - g_checked_ns < 5000000)
        return;
    g_checked_ns = ns_of(&mono);
    const char *path = getenv("SHALE_CLOCKSHIM_FILE");
    struct stat st;
    if (path == NULL || stat(path, &st) != 0) {
        g_offset_ns = g_drift_ppm = 0;
        g_size = -1;
        return;
    }
    if (st.st_size == g_size && st.st_mtim.tv_sec == g_mtime.tv_sec &&
        st.st_mtim.tv_nsec == g_mtime.tv_nsec)
        return;
    FILE *f = fopen(path, "r");
    long long off_ms = 0, ppm = 0;
    if (f != NULL) {
        if (fscanf(f, "%lld %lld", &off_ms, &ppm) < 1)
            off_ms = ppm = 0;
        fclose(f);
    }
    g_mtime = st.st_mtim;
    g_size = st.st_size;
    g_offset_ns = (int64_t)off_ms * 1000000;
    g_drift_ppm = ppm;
    g_t0_ns = real_ns;
}

static int64_t fake_ns(void)
{
    struct timespec ts;
    real_clock(CLOCK_REALTIME, &ts);
    int64_t real = ns_of(&ts);
    pthread_mutex_lock(&mu);
    refresh(real);
    int64_t v = real + g_offset_ns + (real - g_t0_ns) / 1000000 * g_drift_ppm;
    pthread_mutex_unlock(&mu);
    return v;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    if (id != CLOCK_REALTIME && id != CLOCK_REALTIME_COARSE)
        return real_clock(id, ts);
    int64_t v = fake_ns();
    ts->tv_sec = (time_t)(v / 1000000000);
    ts->tv_nsec = (long)(v % 1000000000);
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000;
        ts->tv_sec--;
    }
    return 0;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    (void)tz;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *t)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t != NULL)
        *t = ts.tv_sec;
    return ts.tv_sec;
}
