/* Per-key linearizability of read/write/cas registers: the Wing–Gong
 * search with Lowe's memoisation, as Porcupine does it.
 *
 * Rules (docs/jepsen.md has the long form):
 *  - the history is split by key; each key is an independent register
 *    whose initial value is null (absent);
 *  - fail ops did not happen and are dropped; info reads observed nothing
 *    and are dropped; info writes and cases keep their call time and get
 *    return time +inf, so they may take effect at any point after their
 *    call; "never" is the same as "after every completed op";
 *  - events are ordered by time with calls before returns on ties (equal
 *    times count as overlapping);
 *  - depth-first: linearize any pending call whose model step succeeds,
 *    unless (set of linearized ops, register value) was seen before; at a
 *    return whose op is not yet linearized, backtrack;
 *  - the search stops with UNKNOWN when the step, memo or time bound is
 *    hit, never by running forever. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checker.h"
#include "shale_errors.h"

enum { K_READ, K_WRITE, K_CAS };

/* One op of one key, with values interned to small ints (0 = null). */
typedef struct {
    int kind;
    int info;
    int32_t value;  /* write/cas: the new value; read: the value read */
    int32_t expect; /* cas */
    int64_t call, ret;
    size_t orig; /* index into the caller's ops */
} kop;

typedef struct {
    int64_t time;
    int is_ret;
    int32_t op;
} kent;

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* --- memo: a hash set of (bitset, state) ------------------------------
 *
 * A bitset over all the key's ops would cost m/8 bytes per entry (1.3 KB
 * for 10,000 ops). Stored instead, exactly: hi = 1 + the highest
 * linearized op (ops are numbered in invoke order) and the list of ops
 * below hi not yet linearized — the ops still in flight and the pending
 * unknown ones, usually a handful. Entry, in uint32 units:
 *   [hash lo][hash hi][state][hi][nz][nz op indices...] */

typedef struct {
    size_t words;     /* of the live bitset */
    uint32_t *arena;  /* entries back to back */
    size_t used, cap; /* uint32 units */
    uint64_t *slots;  /* arena offset + 1; 0 = empty */
    size_t mask, n;   /* n = entries */
    uint32_t *enc;    /* scratch: the entry being looked up */
} memo;

static int memo_init(memo *m, size_t words, size_t ops)
{
    memset(m, 0, sizeof(*m));
    m->words = words;
    m->mask = 1023;
    m->slots = calloc(m->mask + 1, sizeof(*m->slots));
    m->enc = malloc((ops + 5) * sizeof(uint32_t));
    return m->slots && m->enc ? 0 : SHALE_ENOMEM;
}

static void memo_free(memo *m)
{
    free(m->arena);
    free(m->slots);
    free(m->enc);
}

static size_t memo_bytes(const memo *m)
{
    return m->cap * sizeof(uint32_t) + (m->mask + 1) * sizeof(uint64_t);
}

static uint64_t entry_hash(const uint32_t *e)
{
    return (uint64_t)e[0] | (uint64_t)e[1] << 32;
}

static int memo_grow(memo *m)
{
    size_t nmask = m->mask * 2 + 1;
    uint64_t *ns = calloc(nmask + 1, sizeof(*ns));
    if (!ns)
        return SHALE_ENOMEM;
    for (size_t i = 0; i <= m->mask; i++) {
        if (!m->slots[i])
            continue;
        size_t j = entry_hash(m->arena + m->slots[i] - 1) & nmask;
        while (ns[j])
            j = (j + 1) & nmask;
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->mask = nmask;
    return 0;
}

/* Encode (bits, state) into m->enc; returns its length in uint32s. */
static size_t memo_encode(memo *m, uint64_t hash, int32_t state, const uint64_t *bits)
{
    uint32_t *e = m->enc;
    size_t w = m->words, hi = 0, nz = 0;
    while (w > 0 && !bits[w - 1])
        w--;
    if (w)
        hi = (w - 1) * 64 + 64 - (size_t)__builtin_clzll(bits[w - 1]);
    for (size_t k = 0; k < w; k++) {
        uint64_t z = ~bits[k];
        if (k == w - 1 && hi % 64)
            z &= (1ull << (hi % 64)) - 1;
        while (z) {
            e[5 + nz++] = (uint32_t)(k * 64 + (size_t)__builtin_ctzll(z));
            z &= z - 1;
        }
    }
    e[0] = (uint32_t)hash;
    e[1] = (uint32_t)(hash >> 32);
    e[2] = (uint32_t)state;
    e[3] = (uint32_t)hi;
    e[4] = (uint32_t)nz;
    return 5 + nz;
}

/* Insert (bits, state) unless present. Returns 1 inserted, 0 present,
 * SHALE_ENOMEM. */
static int memo_insert(memo *m, uint64_t hash, int32_t state, const uint64_t *bits)
{
    size_t len = memo_encode(m, hash, state, bits);
    size_t i = hash & m->mask;
    for (uint64_t s; (s = m->slots[i]); i = (i + 1) & m->mask) {
        const uint32_t *e = m->arena + s - 1;
        if (e[0] == m->enc[0] && e[1] == m->enc[1] && e[2] == m->enc[2] && e[3] == m->enc[3] &&
            e[4] == m->enc[4] && !memcmp(e + 5, m->enc + 5, e[4] * sizeof(uint32_t)))
            return 0;
    }
    if (m->used + len > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4096;
        while (cap < m->used + len)
            cap *= 2;
        uint32_t *na = realloc(m->arena, cap * sizeof(uint32_t));
        if (!na)
            return SHALE_ENOMEM;
        m->arena = na;
        m->cap = cap;
    }
    memcpy(m->arena + m->used, m->enc, len * sizeof(uint32_t));
    m->slots[i] = m->used + 1;
    m->used += len;
    m->n++;
    if (m->n * 2 > m->mask)
        return memo_grow(m) ? SHALE_ENOMEM : 1;
    return 1;
}

/* The memo of one key may use up to this much memory. */
#define MEMO_MAX_BYTES ((size_t)1 << 30)

/* --- the search ------------------------------------------------------- */

typedef struct {
    uint64_t max_steps;
    size_t max_cache;
    double deadline; /* 0: none */
    int any_init;    /* the register starts with an unknown value, not null */
    uint64_t steps;  /* out: steps taken */
    int64_t stuck;   /* out (INVALID): latest return the search could not pass */
    int32_t stuck_op;
    const char *why; /* out (UNKNOWN) */
} search_ctx;

static int cmp_kent(const void *a, const void *b)
{
    const kent *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    if (x->is_ret != y->is_ret)
        return x->is_ret - y->is_ret;
    return (x->op > y->op) - (x->op < y->op);
}

#define ANY (-1) /* the unknown value a witness window starts from */

static int step(const kop *o, int32_t state, int32_t *next)
{
    if (state == ANY) {
        /* Any value: a read fixes it; an ok cas saw its expected value; an
         * unknown cas may or may not have run (still unknown: a superset
         * of both outcomes, so a window found invalid really is). */
        *next = o->kind == K_READ ? o->value : (o->kind == K_CAS && o->info) ? ANY : o->value;
        return 1;
    }
    switch (o->kind) {
    case K_READ:
        *next = state;
        return state == o->value;
    case K_WRITE:
        *next = o->value;
        return 1;
    default:
        if (state == o->expect) {
            *next = o->value;
            return 1;
        }
        *next = state;
        return o->info; /* an unknown cas may have run and failed */
    }
}

/* Returns JEP_VALID / JEP_INVALID / JEP_UNKNOWN, or SHALE_ENOMEM. */
static int search(const kop *ops, size_t m, search_ctx *c)
{
    c->steps = 0;
    c->stuck = INT64_MIN;
    c->stuck_op = -1;
    size_t remaining = 0;
    for (size_t i = 0; i < m; i++)
        remaining += !ops[i].info;
    if (!remaining)
        return JEP_VALID;
    size_t ne = 2 * m, head = ne;
    size_t words = (m + 63) / 64;
    kent *ents = malloc(ne * sizeof(*ents));
    /* entry id: 2*op (call) or 2*op+1 (return); head = 2m; -1 = end */
    int32_t *next = malloc((ne + 1) * sizeof(int32_t));
    int32_t *prev = malloc((ne + 1) * sizeof(int32_t));
    int64_t *etime = malloc(ne * sizeof(int64_t));
    uint64_t *bits = calloc(words, sizeof(uint64_t));
    uint64_t *z = malloc(m * sizeof(uint64_t));
    struct frame {
        int32_t op, state;
    } *stack = malloc(m * sizeof(*stack));
    memo memo;
    int rc = memo_init(&memo, words, m);
    if (!ents || !next || !prev || !etime || !bits || !z || !stack || rc) {
        rc = SHALE_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < m; i++) {
        ents[2 * i] = (kent){ops[i].call, 0, (int32_t)i};
        ents[2 * i + 1] = (kent){ops[i].info ? INT64_MAX : ops[i].ret, 1, (int32_t)i};
        z[i] = mix64(i * 2654435761u + 17);
    }
    qsort(ents, ne, sizeof(*ents), cmp_kent);
    int32_t last = (int32_t)head;
    for (size_t k = 0; k < ne; k++) {
        int32_t id = 2 * ents[k].op + ents[k].is_ret;
        etime[id] = ents[k].time;
        next[last] = id;
        prev[id] = last;
        last = id;
    }
    next[last] = -1;

    int32_t state = c->any_init ? ANY : 0;
    uint64_t h = 0;
    size_t sp = 0;
    int32_t e = next[head];
    for (;;) {
        if (!remaining) {
            rc = JEP_VALID;
            break;
        }
        if (c->max_steps && c->steps >= c->max_steps) {
            c->why = "step bound reached";
            rc = JEP_UNKNOWN;
            break;
        }
        if ((++c->steps & 0x3fff) == 0 && c->deadline > 0 && jep_now_s() > c->deadline) {
            c->why = "time bound reached";
            rc = JEP_UNKNOWN;
            break;
        }
        if (e >= 0 && !(e & 1)) {
            int32_t i = e >> 1, ns;
            if (step(&ops[i], state, &ns)) {
                bits[i >> 6] |= 1ull << (i & 63);
                uint64_t nh = h ^ z[i];
                if (memo.n >= c->max_cache || memo_bytes(&memo) > MEMO_MAX_BYTES) {
                    c->why = "memo size bound reached";
                    rc = JEP_UNKNOWN;
                    break;
                }
                int ins = memo_insert(&memo, nh ^ mix64((uint64_t)(uint32_t)ns), ns, bits);
                if (ins < 0) {
                    rc = ins;
                    break;
                }
                if (ins) {
                    stack[sp++] = (struct frame){i, state};
                    state = ns;
                    h = nh;
                    remaining -= !ops[i].info;
                    /* lift: unlink the call and its return */
                    int32_t r = e + 1;
                    next[prev[e]] = next[e];
                    if (next[e] >= 0)
                        prev[next[e]] = prev[e];
                    next[prev[r]] = next[r];
                    if (next[r] >= 0)
                        prev[next[r]] = prev[r];
                    e = next[head];
                    continue;
                }
                bits[i >> 6] &= ~(1ull << (i & 63));
            }
            e = next[e];
            continue;
        }
        /* a return (or the end) whose op is not linearized: backtrack */
        if (e >= 0 && etime[e] >= c->stuck) {
            c->stuck = etime[e];
            c->stuck_op = e >> 1;
        }
        if (!sp) {
            rc = JEP_INVALID;
            break;
        }
        struct frame f = stack[--sp];
        int32_t i = f.op, call = 2 * i, r = call + 1;
        state = f.state;
        h ^= z[i];
        bits[i >> 6] &= ~(1ull << (i & 63));
        remaining += !ops[i].info;
        /* unlift in reverse order of the unlinking */
        next[prev[r]] = r;
        if (next[r] >= 0)
            prev[next[r]] = r;
        next[prev[call]] = call;
        if (next[call] >= 0)
            prev[next[call]] = call;
        e = next[call];
    }
out:
    free(ents);
    free(next);
    free(prev);
    free(etime);
    free(bits);
    free(z);
    free(stack);
    memo_free(&memo);
    return rc;
}

/* --- per key ---------------------------------------------------------- */

/* The id of a register value: 0 for null/absent, else the interned text's. */
static int32_t intern(jep_interner *in, const jep_value *v)
{
    return v->kind == JEP_V_SCALAR ? jep_intern(in, v->text) : 0;
}

/* A register op that takes part in the check? */
static int relevant(const jep_op *o)
{
    if (o->outcome == JEP_FAIL)
        return 0;
    if (o->f == JEP_READ)
        return o->outcome == JEP_OK;
    return o->f == JEP_WRITE || o->f == JEP_CAS;
}

/* Keep only ops with call <= t (the prefix the search could not get past). */
static size_t prefix(kop *k, size_t m, int64_t t)
{
    size_t w = 0;
    for (size_t i = 0; i < m; i++)
        if (k[i].call <= t)
            k[w++] = k[i];
    return w;
}

/* Cut the witness from the left at a quiescent point. If every non-info
 * op invoked before k[i] returned before k[i] was invoked, all of them
 * precede k[i..] in any linearization, so k[i..] plus the earlier info
 * ops (which can always move to the end) must be linearizable from *some*
 * register value. Hence if that window is not linearizable from any
 * value, it is a witness on its own. The latest such cut is found by
 * binary search (a later cut keeps fewer ops, so fewer constraints).
 * Sets c->any_init when a cut was made. */
static int cut_left(kop *k, size_t *m, search_ctx *outer)
{
    size_t n = *m, nc = 0;
    size_t *cuts = malloc((n ? n : 1) * sizeof(*cuts));
    kop *tmp = malloc((n ? n : 1) * sizeof(*tmp));
    if (!cuts || !tmp) {
        free(cuts);
        free(tmp);
        return SHALE_ENOMEM;
    }
    int64_t maxret = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && maxret < k[i].call)
            cuts[nc++] = i;
        if (!k[i].info && k[i].ret > maxret)
            maxret = k[i].ret;
    }
    size_t lo = 0, hi = nc, best = SIZE_MAX; /* find the last good cut */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2, t = 0, at = cuts[mid];
        for (size_t i = 0; i < n; i++)
            if (i >= at || k[i].info)
                tmp[t++] = k[i];
        search_ctx c = {
            .max_steps = 200000, .max_cache = 1u << 20, .deadline = outer->deadline, .any_init = 1};
        int rc = search(tmp, t, &c);
        if (rc < 0) {
            free(cuts);
            free(tmp);
            return rc;
        }
        if (rc == JEP_INVALID) {
            best = mid;
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (best != SIZE_MAX) {
        /* recompute the best window (tmp holds the last one tried) */
        size_t t = 0, at = cuts[best];
        for (size_t i = 0; i < n; i++)
            if (i >= at || k[i].info)
                tmp[t++] = k[i];
        search_ctx c = {
            .max_steps = 200000, .max_cache = 1u << 20, .deadline = outer->deadline, .any_init = 1};
        if (search(tmp, t, &c) == JEP_INVALID) {
            t = prefix(tmp, t, c.stuck);
            memcpy(k, tmp, t * sizeof(*k));
            *m = t;
            outer->any_init = 1;
        }
    }
    free(cuts);
    free(tmp);
    return 0;
}

/* May op j be dropped from a witness without making it unsound? Reads
 * always; a write or cas only if no other op reads or expects its value
 * (then it can have been observed by nobody). */
static int droppable(const kop *k, size_t m, size_t j)
{
    if (k[j].kind == K_READ)
        return 1;
    for (size_t i = 0; i < m; i++) {
        if (i == j)
            continue;
        if ((k[i].kind == K_READ && k[i].value == k[j].value) ||
            (k[i].kind == K_CAS && k[i].expect == k[j].value))
            return 0;
    }
    return 1;
}

/* Shrink an invalid witness greedily: drop one op at a time when the rest
 * is still (provably) not linearizable, then cut to the failing prefix.
 * Bounded in size and steps; a larger witness is left as it is. */
static int shrink(kop *k, size_t *m, const search_ctx *outer)
{
    if (*m > 200 || *m < 2)
        return 0;
    kop *tmp = malloc(*m * sizeof(*tmp));
    if (!tmp)
        return SHALE_ENOMEM;
    for (size_t j = *m; j-- > 0;) {
        if (j >= *m || !droppable(k, *m, j))
            continue;
        size_t t = 0;
        for (size_t i = 0; i < *m; i++)
            if (i != j)
                tmp[t++] = k[i];
        search_ctx c = {.max_steps = 200000,
                        .max_cache = 1u << 20,
                        .deadline = outer->deadline,
                        .any_init = outer->any_init};
        int rc = search(tmp, t, &c);
        if (rc < 0) {
            free(tmp);
            return rc;
        }
        if (rc == JEP_INVALID) {
            t = prefix(tmp, t, c.stuck);
            memcpy(k, tmp, t * sizeof(*k));
            *m = t;
            j = t; /* restart from the (new) end */
        }
    }
    free(tmp);
    return 0;
}

/* For a reader: the last write of each value a witness read returned,
 * when the witness itself does not include one (a cut or shrunk window
 * may prove the anomaly without it). key_ops: the key's op indices. */
static void witness_context(jep_buf *b, const jep_op *ops, const size_t *key_ops, size_t nk,
                            const size_t *wit, size_t nw)
{
    int header = 0;
    for (size_t i = 0; i < nw; i++) {
        const jep_op *rd = &ops[wit[i]];
        if (rd->f != JEP_READ || rd->value->kind != JEP_V_SCALAR)
            continue;
        const jep_op *best = NULL;
        size_t best_idx = 0;
        for (size_t x = 0; x < nk; x++) {
            const jep_op *w = &ops[key_ops[x]];
            if ((w->f == JEP_WRITE || w->f == JEP_CAS) && w->outcome != JEP_FAIL &&
                w->value->kind == JEP_V_SCALAR && !strcmp(w->value->text, rd->value->text) &&
                w->call_us <= rd->ret_us && (!best || w->call_us > best->call_us)) {
                best = w;
                best_idx = key_ops[x];
            }
        }
        int shown = !best;
        for (size_t j = 0; j < nw && !shown; j++)
            shown = wit[j] == best_idx;
        for (size_t j = 0; j < i && !shown; j++) /* same value read twice */
            shown = ops[wit[j]].f == JEP_READ && jep_value_eq(ops[wit[j]].value, rd->value);
        if (shown)
            continue;
        if (!header++)
            jep_buf_printf(b, "context (the last write of each value read above):\n");
        jep_op_format(b, best);
    }
}

static int cmp_kop_call(const void *a, const void *b)
{
    const kop *x = a, *y = b;
    if (x->call != y->call)
        return x->call < y->call ? -1 : 1;
    return (x->orig > y->orig) - (x->orig < y->orig);
}

int jep_check_register(const jep_op *ops, size_t n, const jep_opts *o, jep_result *r)
{
    memset(r, 0, sizeof(*r));
    jep_opts dflt = {0};
    if (!o)
        o = &dflt;
    double deadline = o->timeout_s > 0 ? jep_now_s() + o->timeout_s : 0;
    size_t *order, *starts, nk;
    int rc = jep_group_by_key(ops, n, &order, &starts, &nk);
    if (rc)
        return rc;
    kop *k = malloc((n ? n : 1) * sizeof(*k));
    if (!k) {
        free(order);
        free(starts);
        return SHALE_ENOMEM;
    }
    size_t n_invalid = 0, n_unknown = 0, checked = 0;
    jep_buf notes = {0};
    for (size_t g = 0; g < nk; g++) {
        jep_interner in = {0};
        size_t m = 0;
        const char *key = ops[order[starts[g]]].key;
        for (size_t x = starts[g]; x < starts[g + 1]; x++) {
            const jep_op *op = &ops[order[x]];
            if (!relevant(op))
                continue;
            kop ko = {.kind = op->f == JEP_READ    ? K_READ
                              : op->f == JEP_WRITE ? K_WRITE
                                                   : K_CAS,
                      .info = op->outcome == JEP_INFO,
                      .call = op->call_us,
                      .ret = op->ret_us,
                      .orig = order[x]};
            ko.value = intern(&in, op->value);
            ko.expect = op->f == JEP_CAS ? intern(&in, op->expect) : 0;
            if (ko.value < 0 || ko.expect < 0) {
                jep_interner_free(&in);
                rc = SHALE_ENOMEM;
                goto out;
            }
            k[m++] = ko;
        }
        if (!m) {
            jep_interner_free(&in);
            continue;
        }
        checked++;
        if (deadline > 0 && jep_now_s() > deadline) {
            n_unknown++;
            jep_buf_printf(&notes, "key %s: not checked (time bound reached)\n", key);
            jep_interner_free(&in);
            continue;
        }
        search_ctx c = {.max_steps = o->max_steps,
                        .max_cache = o->max_cache ? o->max_cache : (size_t)16 << 20,
                        .deadline = deadline};
        /* A read of a value nobody wrote needs no search. */
        int found_phantom = 0;
        unsigned char *written = calloc(in.n + 1, 1);
        if (!written) {
            jep_interner_free(&in);
            rc = SHALE_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < m; i++)
            if (k[i].kind != K_READ)
                written[k[i].value] = 1;
        for (size_t i = 0; i < m && !found_phantom; i++)
            if (k[i].kind == K_READ && k[i].value != 0 && !written[k[i].value]) {
                found_phantom = 1;
                k[0] = k[i];
            }
        free(written);
        if (found_phantom) {
            rc = JEP_INVALID;
            m = 1;
        } else {
            rc = search(k, m, &c);
        }
        r->steps += c.steps;
        if (rc < 0) {
            jep_interner_free(&in);
            goto out;
        }
        if (rc == JEP_UNKNOWN) {
            n_unknown++;
            jep_buf_printf(&notes, "key %s: UNKNOWN after %" PRIu64 " steps (%s)\n", key, c.steps,
                           c.why);
        } else if (rc == JEP_INVALID && n_invalid++ == 0) {
            const jep_op *blocked = found_phantom ? &ops[k[0].orig] : &ops[k[c.stuck_op].orig];
            if (found_phantom) {
                jep_buf_printf(&r->report,
                               "key %s: not linearizable: a read returns a value that no write or "
                               "cas of this key ever wrote\n",
                               key);
            } else {
                size_t full = m;
                m = prefix(k, m, c.stuck);
                jep_buf_printf(&r->report,
                               "key %s: not linearizable: no order of its ops explains the "
                               "history up to the return of\n",
                               key);
                jep_op_format(&r->report, blocked);
                c.any_init = 0;
                if (!o->no_minimize &&
                    ((rc = cut_left(k, &m, &c)) < 0 || (rc = shrink(k, &m, &c)) < 0)) {
                    jep_interner_free(&in);
                    goto out;
                }
                jep_buf_printf(&r->report,
                               "offending sub-history (%zu of the key's %zu ops; no linearization "
                               "of these exists%s):\n",
                               m, full,
                               c.any_init ? ", whatever value the key held before the first of "
                                            "them: every earlier op had returned by then"
                                          : "");
            }
            qsort(k, m, sizeof(*k), cmp_kop_call);
            r->witness = malloc((m ? m : 1) * sizeof(*r->witness));
            if (!r->witness) {
                jep_interner_free(&in);
                rc = SHALE_ENOMEM;
                goto out;
            }
            for (size_t i = 0; i < m; i++) {
                r->witness[i] = k[i].orig;
                jep_op_format(&r->report, &ops[k[i].orig]);
            }
            r->n_witness = m;
            witness_context(&r->report, ops, order + starts[g], starts[g + 1] - starts[g],
                            r->witness, m);
        } else if (rc == JEP_INVALID) {
            jep_buf_printf(&notes, "key %s: also not linearizable\n", key);
        }
        jep_interner_free(&in);
    }
    rc = 0;
    r->keys = checked;
    r->verdict = n_invalid ? JEP_INVALID : n_unknown ? JEP_UNKNOWN : JEP_VALID;
    if (r->verdict == JEP_VALID)
        jep_buf_printf(&r->report, "all %zu keys linearizable (%" PRIu64 " search steps)\n",
                       checked, r->steps);
    else
        jep_buf_printf(&r->report, "%zu of %zu keys not linearizable, %zu unknown\n", n_invalid,
                       checked, n_unknown);
    if (notes.n)
        jep_buf_printf(&r->report, "%s", notes.s);
out:
    jep_buf_free(&notes);
    free(k);
    free(order);
    free(starts);
    if (rc)
        jep_result_free(r);
    return rc;
}
