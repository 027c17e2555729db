/* Failed logins per source address (login_limit.h): a small table scanned
 * linearly — logins happen once per connection and each costs a password
 * hash, so 1024 string compares are noise. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "login_limit.h"

void login_limit_init(login_limit_t *l)
{
    memset(l, 0, sizeof(*l));
}

static login_source_t *find(const login_limit_t *l, const char *src, uint64_t now_ms)
{
    for (size_t i = 0; i < LOGIN_LIMIT_SLOTS; i++) {
        const login_source_t *e = &l->s[i];
        if (e->src[0] != '\0' && strcmp(e->src, src) == 0)
            return now_ms - e->last_ms < LOGIN_FORGET_MS || now_ms < e->last_ms
                       ? (login_source_t *)e
                       : NULL;
    }
    return NULL;
}

uint64_t login_limit_wait(const login_limit_t *l, const char *src, uint64_t now_ms)
{
    const login_source_t *e = find(l, src, now_ms);
    return e != NULL && now_ms < e->until_ms ? e->until_ms - now_ms : 0;
}

void login_limit_fail(login_limit_t *l, const char *src, uint64_t now_ms)
{
    login_source_t *e = NULL;
    for (size_t i = 0; i < LOGIN_LIMIT_SLOTS && e == NULL; i++)
        if (l->s[i].src[0] != '\0' && strcmp(l->s[i].src, src) == 0)
            e = &l->s[i];
    if (e != NULL && now_ms >= e->last_ms && now_ms - e->last_ms >= LOGIN_FORGET_MS) {
        e->fails = 0; /* forgotten: starts over */
        e->until_ms = 0;
    }
    if (e == NULL) {
        /* A free slot, else the one idle the longest. */
        e = &l->s[0];
        for (size_t i = 0; i < LOGIN_LIMIT_SLOTS; i++) {
            if (l->s[i].src[0] == '\0') {
                e = &l->s[i];
                break;
            }
            if (l->s[i].last_ms < e->last_ms)
                e = &l->s[i];
        }
        memset(e, 0, sizeof(*e));
        snprintf(e->src, sizeof(e->src), "%s", src);
    }
    e->fails++;
    e->last_ms = now_ms;
    if (e->fails > LOGIN_FREE_FAILS) {
        uint32_t over = e->fails - LOGIN_FREE_FAILS - 1;
        uint64_t wait = over >= 16 ? LOGIN_MAX_MS : (uint64_t)LOGIN_BASE_MS << over;
        if (wait > LOGIN_MAX_MS)
            wait = LOGIN_MAX_MS;
        e->until_ms = now_ms + wait;
    }
}

void login_limit_source(const char *peer, char *out, size_t outlen)
{
    const char *colon = peer != NULL ? strrchr(peer, ':') : NULL;
    size_t n = colon != NULL ? (size_t)(colon - peer) : (peer != NULL ? strlen(peer) : 0);
    if (n >= 2 && peer[0] == '[' && peer[n - 1] == ']') {
        peer++;
        n -= 2;
    }
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, peer != NULL ? peer : "", n);
    out[n] = '\0';
}
