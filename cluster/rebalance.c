/* Slot rebalancing plans (rebalance.h): even targets, the donors' pieces,
 * and which receiver takes each piece. Pure functions; never does I/O. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rebalance.h"

static int fail(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why != NULL && len > 0)
        vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return RB_EINVAL;
}

/* A contiguous run of slots: one group's run, or a piece that moves. */
typedef struct run {
    uint32_t start, len;
    size_t from; /* pieces: index of the donor in gids */
} run_t;

static int cmp_run_len_desc(const void *a, const void *b)
{
    const run_t *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int cmp_run_start(const void *a, const void *b)
{
    const run_t *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int cmp_move_first(const void *a, const void *b)
{
    const rb_move_t *x = a, *y = b;
    return x->slots[0] < y->slots[0] ? -1 : x->slots[0] > y->slots[0];
}

/* Index of gid in gids, or -1. */
static long gid_index(const uint64_t *gids, size_t n, uint64_t gid)
{
    for (size_t i = 0; i < n; i++)
        if (gids[i] == gid)
            return (long)i;
    return -1;
}

/* Receivers in the order that gets the one-slot remainders: most slots
 * first, then lower id. */
typedef struct rank {
    uint32_t count;
    uint64_t gid;
    size_t idx;
} rank_t;

static int cmp_rank(const void *a, const void *b)
{
    const rank_t *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return x->gid < y->gid ? -1 : x->gid > y->gid;
}

int rb_targets(const uint64_t *slot_group, uint32_t nslots, const uint64_t *gids, size_t ngids,
               uint64_t drain, uint32_t *count, uint32_t *target, char *why, size_t whylen)
{
    for (size_t i = 0; i < ngids; i++) {
        if (gids[i] == 0)
            return fail(why, whylen, "group id 0 is reserved");
        if (gid_index(gids, i, gids[i]) >= 0)
            return fail(why, whylen, "group %llu is named twice", (unsigned long long)gids[i]);
    }
    if (drain != 0 && gid_index(gids, ngids, drain) < 0)
        return fail(why, whylen, "group %llu (to drain) is not among the groups",
                    (unsigned long long)drain);
    uint64_t total = 0;
    size_t k = 0;
    rank_t *rank = calloc(ngids ? ngids : 1, sizeof(*rank));
    if (rank == NULL)
        return RB_ENOMEM;
    for (size_t i = 0; i < ngids; i++) {
        uint32_t n = 0;
        for (uint32_t s = 0; s < nslots; s++)
            n += slot_group[s] == gids[i];
        if (count != NULL)
            count[i] = n;
        target[i] = 0;
        total += n;
        if (gids[i] != drain)
            rank[k++] = (rank_t){n, gids[i], i};
    }
    if (k == 0) {
        free(rank);
        if (total > 0)
            return fail(why, whylen, "no other group to take group %llu's %llu slots",
                        (unsigned long long)drain, (unsigned long long)total);
        return 0;
    }
    qsort(rank, k, sizeof(*rank), cmp_rank);
    for (size_t r = 0; r < k; r++)
        target[rank[r].idx] = (uint32_t)(total / k + (r < total % k ? 1 : 0));
    free(rank);
    return 0;
}

/* Append slots start..start+len-1 to the move from -> to (added if new). */
static int plan_add(rb_plan_t *p, uint64_t from, uint64_t to, uint32_t start, uint32_t len)
{
    rb_move_t *mv = NULL;
    for (size_t i = 0; i < p->nmoves && mv == NULL; i++)
        if (p->moves[i].from == from && p->moves[i].to == to)
            mv = &p->moves[i];
    if (mv == NULL) {
        rb_move_t *arr = realloc(p->moves, (p->nmoves + 1) * sizeof(*arr));
        if (arr == NULL)
            return RB_ENOMEM;
        p->moves = arr;
        mv = &p->moves[p->nmoves++];
        *mv = (rb_move_t){from, to, NULL, 0};
    }
    uint32_t *s = realloc(mv->slots, (mv->nslots + len) * sizeof(uint32_t));
    if (s == NULL)
        return RB_ENOMEM;
    mv->slots = s;
    for (uint32_t i = 0; i < len; i++)
        mv->slots[mv->nslots++] = start + i;
    p->nslots += len;
    return 0;
}

/* How good it is to cut a donor's piece at the end facing `slot` (outside
 * the run): another donor's slot is best (its piece may join ours at the
 * receiver), then a receiver's (the piece extends it). */
static int end_score(const uint64_t *slot_group, uint32_t nslots, long slot, size_t self,
                     const uint64_t *gids, size_t ngids, const uint32_t *surplus,
                     const uint32_t *deficit)
{
    if (slot < 0 || slot >= (long)nslots)
        return 0;
    long i = gid_index(gids, ngids, slot_group[slot]);
    if (i < 0 || (size_t)i == self)
        return 0;
    if (surplus[i] > 0)
        return 2;
    return deficit[i] > 0 ? 1 : 0;
}

/* The donor gids[d]'s surplus as pieces appended to *pieces: largest runs
 * whole, at most one run cut. */
static int donor_pieces(const uint64_t *slot_group, uint32_t nslots, const uint64_t *gids,
                        size_t ngids, size_t d, const uint32_t *surplus, const uint32_t *deficit,
                        run_t **pieces, size_t *npieces)
{
    size_t nruns = 0, cap = 16;
    run_t *runs = malloc(cap * sizeof(*runs));
    if (runs == NULL)
        return RB_ENOMEM;
    for (uint32_t s = 0; s < nslots;) {
        if (slot_group[s] != gids[d]) {
            s++;
            continue;
        }
        uint32_t e = s;
        while (e + 1 < nslots && slot_group[e + 1] == gids[d])
            e++;
        if (nruns == cap) {
            run_t *r = realloc(runs, 2 * cap * sizeof(*runs));
            if (r == NULL) {
                free(runs);
                return RB_ENOMEM;
            }
            runs = r;
            cap *= 2;
        }
        runs[nruns++] = (run_t){s, e - s + 1, d};
        s = e + 1;
    }
    qsort(runs, nruns, sizeof(*runs), cmp_run_len_desc);
    uint32_t need = surplus[d];
    for (size_t i = 0; i < nruns && need > 0; i++) {
        run_t piece = runs[i];
        if (piece.len > need) {
            long head = (long)piece.start - 1, tail = (long)piece.start + piece.len;
            int hs = end_score(slot_group, nslots, head, d, gids, ngids, surplus, deficit);
            int ts = end_score(slot_group, nslots, tail, d, gids, ngids, surplus, deficit);
            if (ts >= hs)
                piece.start += piece.len - need;
            piece.len = need;
        }
        need -= piece.len;
        run_t *p = realloc(*pieces, (*npieces + 1) * sizeof(run_t));
        if (p == NULL) {
            free(runs);
            return RB_ENOMEM;
        }
        *pieces = p;
        (*pieces)[(*npieces)++] = piece;
    }
    free(runs);
    return 0;
}

/* The receiver for a piece a..b: one that owns a slot next to it, else the
 * one missing the most slots (then the lowest id). -1 when none is left. */
static long pick_receiver(const uint64_t *slot_group, uint32_t nslots, uint32_t a, uint32_t b,
                          const uint64_t *gids, size_t ngids, const uint32_t *rem)
{
    long adj[2] = {a > 0 ? (long)a - 1 : -1, b + 1 < nslots ? (long)b + 1 : -1};
    for (int k = 0; k < 2; k++) {
        if (adj[k] < 0)
            continue;
        long i = gid_index(gids, ngids, slot_group[adj[k]]);
        if (i >= 0 && rem[i] > 0)
            return i;
    }
    long best = -1;
    for (size_t i = 0; i < ngids; i++)
        if (rem[i] > 0 &&
            (best < 0 || rem[i] > rem[best] || (rem[i] == rem[best] && gids[i] < gids[best])))
            best = (long)i;
    return best;
}

void rb_plan_free(rb_plan_t *p)
{
    for (size_t i = 0; p != NULL && i < p->nmoves; i++)
        free(p->moves[i].slots);
    if (p != NULL) {
        free(p->moves);
        memset(p, 0, sizeof(*p));
    }
}

int rb_plan_even(const uint64_t *slot_group, uint32_t nslots, const uint64_t *gids, size_t ngids,
                 uint64_t drain, rb_plan_t *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    size_t n = ngids ? ngids : 1;
    uint32_t *count = calloc(n, sizeof(uint32_t)), *target = calloc(n, sizeof(uint32_t));
    uint32_t *surplus = calloc(n, sizeof(uint32_t)), *deficit = calloc(n, sizeof(uint32_t));
    run_t *pieces = NULL;
    size_t npieces = 0;
    int rv = RB_ENOMEM;
    if (count == NULL || target == NULL || surplus == NULL || deficit == NULL)
        goto out;
    rv = rb_targets(slot_group, nslots, gids, ngids, drain, count, target, why, whylen);
    if (rv != 0)
        goto out;
    for (size_t i = 0; i < ngids; i++) {
        surplus[i] = count[i] > target[i] ? count[i] - target[i] : 0;
        deficit[i] = target[i] > count[i] ? target[i] - count[i] : 0;
    }
    for (size_t d = 0; d < ngids; d++)
        if (surplus[d] > 0 && (rv = donor_pieces(slot_group, nslots, gids, ngids, d, surplus,
                                                 deficit, &pieces, &npieces)) != 0)
            goto out;
    if (npieces > 0)
        qsort(pieces, npieces, sizeof(*pieces), cmp_run_start);
    long cur = -1;
    for (size_t i = 0; i < npieces; i++) {
        const run_t *p = &pieces[i];
        for (uint32_t off = 0; off < p->len;) {
            if (cur < 0 || deficit[cur] == 0)
                cur = pick_receiver(slot_group, nslots, p->start + off, p->start + p->len - 1, gids,
                                    ngids, deficit);
            /* Surpluses and deficits have the same sum (the targets add up
             * to the slots owned), so a receiver is always left. */
            if (cur < 0) {
                rv = fail(why, whylen, "internal: no receiver left for slot %u", p->start + off);
                goto out;
            }
            uint32_t take = p->len - off < deficit[cur] ? p->len - off : deficit[cur];
            if ((rv = plan_add(out, gids[p->from], gids[cur], p->start + off, take)) != 0)
                goto out;
            deficit[cur] -= take;
            off += take;
        }
    }
    if (out->nmoves > 0)
        qsort(out->moves, out->nmoves, sizeof(*out->moves), cmp_move_first);
    rv = 0;
out:
    if (rv != 0)
        rb_plan_free(out);
    free(pieces);
    free(count);
    free(target);
    free(surplus);
    free(deficit);
    return rv;
}

int rb_plan_range(const uint64_t *slot_group, uint32_t nslots, uint32_t first, uint32_t last,
                  uint64_t to, rb_plan_t *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    if (to == 0)
        return fail(why, whylen, "group id 0 is reserved");
    if (first > last)
        return fail(why, whylen, "slot range %u-%u is empty", first, last);
    if (last >= nslots)
        return fail(why, whylen, "slot %u is out of range: the cluster has %u slots (0-%u)", last,
                    nslots, nslots ? nslots - 1 : 0);
    for (uint32_t s = first; s <= last; s++) {
        if (slot_group[s] == 0) {
            rb_plan_free(out);
            return fail(why, whylen, "slot %u is unassigned (no group to move it from)", s);
        }
        if (slot_group[s] == to)
            continue;
        uint32_t e = s;
        while (e < last && slot_group[e + 1] == slot_group[s])
            e++;
        if (plan_add(out, slot_group[s], to, s, e - s + 1) != 0) {
            rb_plan_free(out);
            return RB_ENOMEM;
        }
        s = e;
    }
    if (out->nmoves > 0)
        qsort(out->moves, out->nmoves, sizeof(*out->moves), cmp_move_first);
    return 0;
}

size_t rb_format_ranges(const uint32_t *slots, size_t n, char *buf, size_t len)
{
    size_t used = 0, runs = 0;
    int truncated = 0;
    if (len == 0)
        return 0;
    snprintf(buf, len, "-");
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && slots[j + 1] == slots[j] + 1)
            j++;
        runs++;
        if (!truncated) {
            char one[32];
            if (i == j)
                snprintf(one, sizeof(one), "%s%u", used ? "," : "", slots[i]);
            else
                snprintf(one, sizeof(one), "%s%u-%u", used ? "," : "", slots[i], slots[j]);
            size_t w = strlen(one);
            if (used + w + 5 > len) {
                if (used + 5 <= len)
                    snprintf(buf + used, len - used, ",...");
                truncated = 1;
            } else {
                memcpy(buf + used, one, w + 1);
                used += w;
            }
        }
        i = j + 1;
    }
    return runs;
}
