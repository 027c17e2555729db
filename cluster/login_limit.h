/* Failed logins, rate-limited per source address (issue 13).
 *
 * What this file owns: a fixed-size table of source addresses with their
 * recent failed logins, and the rule that turns failures into a wait.
 * Rules:
 *  - the first LOGIN_FREE_FAILS failures of a source cost nothing (typos);
 *  - each failure after them blocks the source for LOGIN_BASE_MS, doubled
 *    per further failure, at most LOGIN_MAX_MS; a blocked source's attempts
 *    are refused without running the password hash (CPU is what an attacker
 *    would spend otherwise);
 *  - a source with no failure for LOGIN_FORGET_MS is forgotten; a
 *    successful login does not clear it (else an attacker holding any
 *    account could reset its own count between guesses);
 *  - the table holds LOGIN_LIMIT_SLOTS sources; when full, the one idle the
 *    longest is forgotten (an attacker with many addresses dilutes the
 *    table: the limit is per address, not a global budget).
 *
 * Pure: no clock (callers pass now_ms), no I/O, no allocation. Not
 * thread-safe: one owner (the loop thread). */
#ifndef SHALE_LOGIN_LIMIT_H
#define SHALE_LOGIN_LIMIT_H

#include <stddef.h>
#include <stdint.h>

#define LOGIN_LIMIT_SLOTS 1024
#define LOGIN_FREE_FAILS 5
#define LOGIN_BASE_MS 1000
#define LOGIN_MAX_MS 60000
#define LOGIN_FORGET_MS (15 * 60 * 1000)
#define LOGIN_SRC_MAX 64

typedef struct login_source {
    char src[LOGIN_SRC_MAX]; /* "" : free slot */
    uint32_t fails;
    uint64_t last_ms;  /* the last failure */
    uint64_t until_ms; /* blocked before this */
} login_source_t;

typedef struct login_limit {
    login_source_t s[LOGIN_LIMIT_SLOTS];
} login_limit_t;

void login_limit_init(login_limit_t *l);

/* 0 when src may try to log in at now_ms, else how many ms it must wait. */
uint64_t login_limit_wait(const login_limit_t *l, const char *src, uint64_t now_ms);

/* A failed login from src at now_ms. */
void login_limit_fail(login_limit_t *l, const char *src, uint64_t now_ms);

/* The source part of a "host:port" peer ("[v6]:port" too) into out. */
void login_limit_source(const char *peer, char *out, size_t outlen);

#endif
