/* Key matching and scan cursors of the Redis port's SCAN and KEYS
 * (docs/resp.md, "SCAN and KEYS").
 *
 * What this module owns: Redis's glob (stringmatchlen: * ? [...] [^...]
 * ranges, backslash escapes), the literal prefix of a pattern (what a node
 * can narrow a scan by), and the table of numeric SCAN cursors a router
 * keeps: each names a (slot, last key) position of the cluster walk.
 *
 * Pure: no I/O, no clock of its own (the caller passes "now"), no routing.
 * Never allocates per match; the cursor table allocates its entries once. */
#ifndef SHALE_RESP_KEYSCAN_H
#define SHALE_RESP_KEYSCAN_H

#include <stddef.h>
#include <stdint.h>

/* 1 when s matches the glob pattern p (Redis's rules, case-sensitive),
 * else 0. Linear in len(p) * len(s) at worst; no recursion. */
int rk_glob_match(const char *p, size_t plen, const char *s, size_t slen);

/* The length of p's literal prefix: the bytes before its first '*', '?',
 * '[' or '\\'. Every key p matches begins with those bytes. */
size_t rk_glob_prefix(const char *p, size_t plen);

/* When every key beginning with prefix has the same hash tag (the prefix
 * holds a complete non-empty "{tag}" after its first '{'): 1, so the keys
 * are all in the slot of the prefix; else 0. */
int rk_prefix_tagged(const char *prefix, size_t len);

/* The cursor table: at most cap positions, each valid for ttl_ms after it
 * was made; a new position takes the place of the oldest. A cursor is
 * base + n (n counts positions made), never 0, below 2^53 (clients that
 * hold numbers as doubles keep it exact). Another router, or this one
 * restarted, has another random base, so an old cursor is unknown there. */
typedef struct rk_pos {
    uint64_t id; /* 0: free */
    uint64_t expires_ms;
    uint32_t slot;
    size_t alen;
    char *after; /* the last key returned in slot (malloc), NULL: none */
} rk_pos_t;

typedef struct rk_cursors {
    rk_pos_t *pos;
    size_t cap;
    uint64_t ttl_ms;
    uint64_t base, next;
} rk_cursors_t;

/* cap >= 1. base: random (the caller's). -1 when out of memory. Free with
 * rk_cursors_free. */
int rk_cursors_init(rk_cursors_t *t, size_t cap, uint64_t ttl_ms, uint64_t base);
void rk_cursors_free(rk_cursors_t *t);

/* Keep (slot, after) and return its cursor; 0 when out of memory. */
uint64_t rk_cursor_put(rk_cursors_t *t, uint32_t slot, const char *after, size_t alen,
                       uint64_t now_ms);

/* The position of cursor id: 0 with *slot and *after (pointing into the
 * table: valid until the next rk_cursor_put), or -1 when unknown or expired.
 * A cursor stays valid after use (a client may retry a SCAN call). */
int rk_cursor_get(const rk_cursors_t *t, uint64_t id, uint64_t now_ms, uint32_t *slot,
                  const char **after, size_t *alen);

#endif
