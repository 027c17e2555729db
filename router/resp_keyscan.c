/* Redis's glob, literal prefixes and the SCAN cursor table (resp_keyscan.h).
 *
 * The glob follows redis-server's stringmatchlen (util.c) case-sensitively,
 * but iteratively: on a mismatch it goes back to the last '*' and lets it
 * take one byte more. With '*' as the only multi-byte wildcard that finds
 * a match whenever the recursive form does, and it cannot blow up on
 * patterns such as "*a*a*a*a*b". */
#include "resp_keyscan.h"

#include <stdlib.h>
#include <string.h>

/* Does the one-byte token at p (plen > 0, not '*') match c? *adv: its
 * length in the pattern. */
static int token_match(const char *p, size_t plen, unsigned char c, size_t *adv)
{
    if (p[0] == '?') {
        *adv = 1;
        return 1;
    }
    if (p[0] == '\\' && plen >= 2) {
        *adv = 2;
        return (unsigned char)p[1] == c;
    }
    if (p[0] != '[') {
        *adv = 1;
        return (unsigned char)p[0] == c;
    }
    /* A class: [abc] [^abc] [a-z] [\]]; "[]" is empty; an unterminated one
     * runs to the pattern's end (as Redis). */
    size_t i = 1;
    int neg = 0, hit = 0;
    if (i < plen && p[i] == '^') {
        neg = 1;
        i++;
    }
    for (;;) {
        if (i >= plen)
            break;
        if (p[i] == '\\' && plen - i >= 2) {
            hit |= (unsigned char)p[i + 1] == c;
            i += 2;
            continue;
        }
        if (p[i] == ']') {
            i++;
            break;
        }
        if (plen - i >= 3 && p[i + 1] == '-') {
            unsigned char lo = (unsigned char)p[i], hi = (unsigned char)p[i + 2];
            if (lo > hi) {
                unsigned char t = lo;
                lo = hi;
                hi = t;
            }
            hit |= c >= lo && c <= hi;
            i += 3;
            continue;
        }
        hit |= (unsigned char)p[i] == c;
        i++;
    }
    *adv = i;
    return neg ? !hit : hit;
}

int rk_glob_match(const char *p, size_t plen, const char *s, size_t slen)
{
    size_t pi = 0, si = 0, star_p = 0, star_s = 0;
    int star = 0;
    while (si < slen) {
        if (pi < plen) {
            if (p[pi] == '*') {
                star = 1;
                star_p = pi;
                star_s = si;
                pi++;
                continue;
            }
            size_t adv;
            if (token_match(p + pi, plen - pi, (unsigned char)s[si], &adv)) {
                pi += adv;
                si++;
                continue;
            }
        }
        if (!star)
            return 0;
        pi = star_p + 1;
        si = ++star_s;
    }
    while (pi < plen && p[pi] == '*')
        pi++;
    return pi == plen;
}

size_t rk_glob_prefix(const char *p, size_t plen)
{
    size_t i = 0;
    while (i < plen && p[i] != '*' && p[i] != '?' && p[i] != '[' && p[i] != '\\')
        i++;
    return i;
}

int rk_prefix_tagged(const char *prefix, size_t len)
{
    const char *open = memchr(prefix, '{', len);
    if (open == NULL)
        return 0;
    size_t rest = len - (size_t)(open - prefix) - 1;
    const char *close = memchr(open + 1, '}', rest);
    return close != NULL && close > open + 1;
}

int rk_cursors_init(rk_cursors_t *t, size_t cap, uint64_t ttl_ms, uint64_t base)
{
    memset(t, 0, sizeof(*t));
    t->pos = calloc(cap, sizeof(*t->pos));
    if (t->pos == NULL)
        return -1;
    t->cap = cap;
    t->ttl_ms = ttl_ms;
    /* Room for 2^52 cursors above the base, all below 2^53. */
    t->base = (base & ((UINT64_C(1) << 52) - 1)) + 1;
    return 0;
}

void rk_cursors_free(rk_cursors_t *t)
{
    if (t->pos == NULL)
        return;
    for (size_t i = 0; i < t->cap; i++)
        free(t->pos[i].after);
    free(t->pos);
    t->pos = NULL;
}

uint64_t rk_cursor_put(rk_cursors_t *t, uint32_t slot, const char *after, size_t alen,
                       uint64_t now_ms)
{
    char *copy = NULL;
    if (alen > 0) {
        copy = malloc(alen);
        if (copy == NULL)
            return 0;
        memcpy(copy, after, alen);
    }
    uint64_t id = t->base + t->next++;
    rk_pos_t *e = &t->pos[id % t->cap];
    free(e->after);
    e->id = id;
    e->expires_ms = now_ms + t->ttl_ms;
    e->slot = slot;
    e->after = copy;
    e->alen = alen;
    return id;
}

int rk_cursor_get(const rk_cursors_t *t, uint64_t id, uint64_t now_ms, uint32_t *slot,
                  const char **after, size_t *alen)
{
    if (t->pos == NULL || id == 0)
        return -1;
    const rk_pos_t *e = &t->pos[id % t->cap];
    if (e->id != id || now_ms >= e->expires_ms)
        return -1;
    *slot = e->slot;
    *after = e->after;
    *alen = e->alen;
    return 0;
}
