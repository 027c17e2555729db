/* What the router does with a node's answer: pass it on, or retry (where,
 * and after how long). The one retry/backoff helper of the router.
 *
 * Pure: no clocks, no I/O. forward.c applies the decision within the
 * request's deadline; the unit tests pin the table.
 *
 * Rules:
 *  - NOT_LEADER with a hint naming another node: go there, at once for the
 *    first two redirects of a request, then with backoff (a stale hint must
 *    not make two nodes ping-pong a request in a tight loop);
 *  - NOT_LEADER without a hint, UNAVAILABLE, TIMEOUT, a lost or refused
 *    connection: forget that node as the leader, try another member after
 *    a backoff; a mutation is safe to re-send: it keeps its Session;
 *  - WRONG_GROUP: refresh the map now, re-route when it arrives (or after a
 *    backoff);
 *  - SLOT_MOVING: the same group again after a backoff (and a map refresh:
 *    the slot may be about to move);
 *  - STALE_TOO_OLD on a STALE read: another member at once (the caller's
 *    pick order ends at the leader);
 *  - anything else (CAS_FAILED, INVALID, TOO_LARGE, SESSION_EXPIRED,
 *    OVERLOADED, STORAGE, ...) is the final answer, passed on as is.
 * Backoff: 5 ms, doubling, capped at 100 ms. */
#ifndef SHALE_RT_RETRY_H
#define SHALE_RT_RETRY_H

#include <stdint.h>

enum rt_action {
    RT_FINAL = 0, /* answer the client with this outcome */
    RT_REDIRECT,  /* to the hinted leader */
    RT_NEXT,      /* another member of the same group */
    RT_SAME,      /* the same group and node choice again */
    RT_REMAP,     /* wait for a map refresh, then route again */
};

#define RT_BACKOFF_FIRST_MS 5
#define RT_BACKOFF_CAP_MS 100
#define RT_REDIRECTS_AT_ONCE 2

typedef struct rt_retry {
    int action;        /* enum rt_action */
    uint32_t delay_ms; /* wait before the next attempt */
    int forget_node;   /* the node is not (or no longer) the leader */
    int refresh_map;   /* ask the meta group for the map now */
} rt_retry_t;

/* The n-th backoff delay (n from 0): 5, 10, 20, 40, 80, 100, 100, ... */
uint32_t rt_backoff_ms(unsigned n);

/* Decide for an attempt that ended with code (SHALE_OK, a SHALE_E* from the
 * node's ERROR, or SHALE_EIO for a lost connection). hint: the NOT_LEADER
 * hint ("" or NULL: none); node: the address that answered. *backoffs and
 * *redirects count this request's earlier retries and are advanced. */
void rt_retry_decide(int code, int stale_read, const char *hint, const char *node,
                     unsigned *backoffs, unsigned *redirects, rt_retry_t *out);

#endif
