/* Following the meta group's user table from a node or a router started
 * with --auth (docs/security.md, "Users and roles").
 *
 * What this file owns: one libshale client on the owner's loop, given the
 * --meta address list and the process's own credential, that keeps one
 * USER_LIST {with_hashes, known_version, wait_ms} long-poll outstanding
 * (the meta member answers at once when its table's version differs from
 * known_version, else after the wait); the newest table it was given; and
 * a retry timer after a failure (capped backoff).
 *
 * Rules: the table only moves to a higher version (a lagging meta member
 * never rolls it back); every installed table bumps gen, so an owner that
 * keeps pointers into it knows when they are stale; until the first answer
 * there is no table (every login fails). Never logs (the owner's changed
 * callback may); never blocks the loop. */
#ifndef SHALE_USER_WATCH_H
#define SHALE_USER_WATCH_H

#include <stdint.h>
#include <uv.h>

#include "shale.h"
#include "shale.pb-c.h"

#define USER_WATCH_WAIT_MS 5000

typedef struct user_watch user_watch_t;
/* A newer table was installed (w->table), or a poll failed (status != 0,
 * msg says why). */
typedef void (*user_watch_cb)(user_watch_t *w, int status, const char *msg, void *arg);

struct user_watch {
    uv_loop_t *loop;
    shale_client_t *cli;
    shale_req_t req;
    uv_timer_t retry;
    Shale__UserTable *table; /* NULL until the first answer */
    uint64_t gen;            /* bumped per installed table */
    unsigned fails;
    int busy, stopping, started;
    user_watch_cb cb;
    void *arg;
};

/* Open the client (opts: the owner's, with its credential; the timeouts
 * are set here) and issue the first poll. 0, or a SHALE_E* code with err. */
int user_watch_start(user_watch_t *w, uv_loop_t *loop, const char *meta,
                     const shale_options_t *opts, user_watch_cb cb, void *arg, char *err,
                     size_t errlen);
/* Close the client and the timer (the loop finishes closing them). */
void user_watch_stop(user_watch_t *w);
/* Free the table (after the loop has run the closes). */
void user_watch_free(user_watch_t *w);

#endif
