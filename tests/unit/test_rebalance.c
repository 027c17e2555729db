/* The rebalance planner (cluster/rebalance.c): fewest moves, even targets,
 * draining, contiguous pieces, slot ranges, and a property test on random
 * maps checking every rule of rebalance.h. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rebalance.h"

#define MAXS 65535

static uint64_t sg[MAXS];

/* Slots [0, n) split into ngroups contiguous near-equal ranges, groups 1.. */
static void layout_even(uint32_t n, int ngroups)
{
    uint32_t at = 0;
    for (int g = 0; g < ngroups; g++) {
        uint32_t len = n / (uint32_t)ngroups + ((uint32_t)g < n % (uint32_t)ngroups ? 1u : 0u);
        for (uint32_t k = 0; k < len; k++)
            sg[at++] = (uint64_t)g + 1;
    }
}

static uint32_t count_of(const uint64_t *a, uint32_t n, uint64_t gid)
{
    uint32_t c = 0;
    for (uint32_t s = 0; s < n; s++)
        c += a[s] == gid;
    return c;
}

/* Runs of gid in a. */
static uint32_t runs_of(const uint64_t *a, uint32_t n, uint64_t gid)
{
    uint32_t r = 0;
    for (uint32_t s = 0; s < n; s++)
        r += a[s] == gid && (s == 0 || a[s - 1] != gid);
    return r;
}

/* Check a plan against every rule and apply it to a copy of sg (in after).
 * Returns the slots moved. */
static size_t check_plan(const rb_plan_t *p, uint32_t n, const uint64_t *gids, size_t ngids,
                         uint64_t drain, uint64_t *after)
{
    static uint8_t seen[MAXS];
    memset(seen, 0, n);
    memcpy(after, sg, n * sizeof(uint64_t));
    size_t moved = 0;
    for (size_t i = 0; i < p->nmoves; i++) {
        const rb_move_t *m = &p->moves[i];
        ck_assert_uint_ne(m->from, m->to);
        ck_assert_uint_ne(m->to, 0);
        ck_assert_uint_ne(m->to, drain);
        ck_assert_uint_gt(m->nslots, 0);
        if (i > 0)
            ck_assert_uint_lt(p->moves[i - 1].slots[0], m->slots[0]);
        /* Check's asserts cost a write each: the loop only tests. */
        for (size_t k = 0; k < m->nslots; k++) {
            uint32_t s = m->slots[k];
            if (s >= n || (k > 0 && m->slots[k - 1] >= s))
                ck_abort_msg("move %zu: slot %u out of range or order", i, s);
            if (seen[s])
                ck_abort_msg("slot %u moves twice", s);
            if (sg[s] != m->from)
                ck_abort_msg("slot %u moves from %llu but group %llu owns it", s,
                             (unsigned long long)m->from, (unsigned long long)sg[s]);
            seen[s] = 1;
            after[s] = m->to;
            moved++;
        }
    }
    ck_assert_uint_eq(moved, p->nslots);

    /* Fewest moves: exactly the surplus over the targets. */
    uint32_t count[64], target[64];
    ck_assert_int_eq(rb_targets(sg, n, gids, ngids, drain, count, target, NULL, 0), 0);
    size_t surplus = 0;
    uint32_t lo = UINT32_MAX, hi = 0;
    for (size_t i = 0; i < ngids; i++) {
        surplus += count[i] > target[i] ? count[i] - target[i] : 0;
        ck_assert_uint_eq(count_of(after, n, gids[i]), target[i]);
        if (gids[i] == drain)
            continue;
        lo = target[i] < lo ? target[i] : lo;
        hi = target[i] > hi ? target[i] : hi;
    }
    ck_assert_uint_eq(moved, surplus);
    if (hi > 0)
        ck_assert_uint_le(hi - lo, 1);
    /* No group both gives and receives. */
    for (size_t i = 0; i < p->nmoves; i++)
        for (size_t j = 0; j < p->nmoves; j++)
            ck_assert_uint_ne(p->moves[i].from, p->moves[j].to);
    return moved;
}

START_TEST(test_balanced_no_move)
{
    uint64_t gids[] = {1, 2, 3};
    static uint64_t after[MAXS];
    rb_plan_t p;
    for (uint32_t n = 3; n < 200; n += 7) {
        layout_even(n, 3);
        ck_assert_int_eq(rb_plan_even(sg, n, gids, 3, 0, &p, NULL, 0), 0);
        ck_assert_uint_eq(p.nmoves, 0);
        ck_assert_uint_eq(p.nslots, 0);
        check_plan(&p, n, gids, 3, 0, after);
        rb_plan_free(&p);
    }
    /* 6 and 5 is balanced; 6 and 4 is one move. */
    layout_even(11, 2);
    ck_assert_int_eq(rb_plan_even(sg, 11, gids, 2, 0, &p, NULL, 0), 0);
    ck_assert_uint_eq(p.nslots, 0);
    rb_plan_free(&p);
    layout_even(10, 2);
    sg[5] = 1;
    ck_assert_int_eq(rb_plan_even(sg, 10, gids, 2, 0, &p, NULL, 0), 0);
    ck_assert_uint_eq(check_plan(&p, 10, gids, 2, 0, after), 1);
    rb_plan_free(&p);
}
END_TEST

/* 2 groups -> 3: the new group gets a third of the slots, in one run, taken
 * from the ends where groups 1 and 2 meet. */
START_TEST(test_add_group)
{
    uint64_t gids[] = {1, 2, 3};
    static uint64_t after[MAXS];
    layout_even(4096, 2);
    rb_plan_t p;
    ck_assert_int_eq(rb_plan_even(sg, 4096, gids, 3, 0, &p, NULL, 0), 0);
    ck_assert_uint_eq(check_plan(&p, 4096, gids, 3, 0, after), 1365);
    ck_assert_uint_eq(p.nmoves, 2);
    ck_assert_uint_eq(p.moves[0].from, 1);
    ck_assert_uint_eq(p.moves[0].to, 3);
    ck_assert_uint_eq(p.moves[1].from, 2);
    ck_assert_uint_eq(runs_of(after, 4096, 1), 1);
    ck_assert_uint_eq(runs_of(after, 4096, 2), 1);
    ck_assert_uint_eq(runs_of(after, 4096, 3), 1);
    ck_assert_uint_eq(count_of(after, 4096, 1), 1366); /* the remainder: it had the most */
    rb_plan_free(&p);

    /* 3 -> 4 and 1 -> 4: still the surplus, few runs per group. */
    uint64_t g4[] = {1, 2, 3, 4};
    layout_even(4096, 3);
    ck_assert_int_eq(rb_plan_even(sg, 4096, g4, 4, 0, &p, NULL, 0), 0);
    ck_assert_uint_eq(check_plan(&p, 4096, g4, 4, 0, after), 1024);
    ck_assert_uint_le(runs_of(after, 4096, 4), 2);
    rb_plan_free(&p);
    layout_even(4096, 1);
    ck_assert_int_eq(rb_plan_even(sg, 4096, g4, 4, 0, &p, NULL, 0), 0);
    ck_assert_uint_eq(check_plan(&p, 4096, g4, 4, 0, after), 3072);
    for (uint64_t g = 1; g <= 4; g++)
        ck_assert_uint_eq(runs_of(after, 4096, g), 1);
    rb_plan_free(&p);
}
END_TEST

START_TEST(test_drain)
{
    uint64_t gids[] = {1, 2, 3};
    static uint64_t after[MAXS];
    rb_plan_t p;
    layout_even(4096, 3);
    ck_assert_int_eq(rb_plan_even(sg, 4096, gids, 3, 2, &p, NULL, 0), 0);
    ck_assert_uint_eq(check_plan(&p, 4096, gids, 3, 2, after), 1365);
    ck_assert_uint_eq(count_of(after, 4096, 2), 0);
    ck_assert_uint_eq(count_of(after, 4096, 1), 2048);
    ck_assert_uint_eq(count_of(after, 4096, 3), 2048);
    /* Each receiver gets the half next to it: still one run each. */
    ck_assert_uint_eq(runs_of(after, 4096, 1), 1);
    ck_assert_uint_eq(runs_of(after, 4096, 3), 1);
    rb_plan_free(&p);

    /* A drained group with no slots: nothing to do; an uneven rest is
     * evened out at the same time (a rebalance that drains). */
    layout_even(100, 2);
    ck_assert_int_eq(rb_plan_even(sg, 100, gids, 3, 3, &p, NULL, 0), 0);
    ck_assert_uint_eq(p.nmoves, 0);
    rb_plan_free(&p);
    for (uint32_t s = 0; s < 100; s++)
        sg[s] = s < 70 ? 1 : s < 90 ? 2 : 3;
    ck_assert_int_eq(rb_plan_even(sg, 100, gids, 3, 3, &p, NULL, 0), 0);
    ck_assert_uint_eq(check_plan(&p, 100, gids, 3, 3, after), 30);
    rb_plan_free(&p);

    /* The only group cannot be drained; an empty only group can. */
    char why[128] = "";
    layout_even(100, 1);
    ck_assert_int_eq(rb_plan_even(sg, 100, gids, 1, 1, &p, why, sizeof(why)), RB_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "no other group"));
    for (uint32_t s = 0; s < 100; s++)
        sg[s] = 0;
    ck_assert_int_eq(rb_plan_even(sg, 100, gids, 1, 1, &p, why, sizeof(why)), 0);
    ck_assert_uint_eq(p.nmoves, 0);
    rb_plan_free(&p);
}
END_TEST

START_TEST(test_bad_input)
{
    char why[128];
    rb_plan_t p;
    uint64_t dup[] = {1, 2, 1}, zero[] = {1, 0};
    layout_even(10, 2);
    ck_assert_int_eq(rb_plan_even(sg, 10, dup, 3, 0, &p, why, sizeof(why)), RB_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "twice"));
    ck_assert_int_eq(rb_plan_even(sg, 10, zero, 2, 0, &p, why, sizeof(why)), RB_EINVAL);
    ck_assert_int_eq(rb_plan_even(sg, 10, dup, 2, 7, &p, why, sizeof(why)), RB_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "not among"));
    ck_assert_uint_eq(p.nmoves, 0);
}
END_TEST

/* Unassigned slots are never counted or moved. */
START_TEST(test_unassigned_ignored)
{
    uint64_t gids[] = {1, 2};
    static uint64_t after[MAXS];
    rb_plan_t p;
    for (uint32_t s = 0; s < 100; s++)
        sg[s] = s < 10 ? 0 : s < 80 ? 1 : 2;
    ck_assert_int_eq(rb_plan_even(sg, 100, gids, 2, 0, &p, NULL, 0), 0);
    ck_assert_uint_eq(check_plan(&p, 100, gids, 2, 0, after), 25);
    for (uint32_t s = 0; s < 10; s++)
        ck_assert_uint_eq(after[s], 0);
    rb_plan_free(&p);
}
END_TEST

START_TEST(test_range)
{
    rb_plan_t p;
    char why[128];
    layout_even(100, 2); /* 0-49 -> 1, 50-99 -> 2 */
    ck_assert_int_eq(rb_plan_range(sg, 100, 40, 60, 3, &p, NULL, 0), 0);
    ck_assert_uint_eq(p.nmoves, 2);
    ck_assert_uint_eq(p.nslots, 21);
    ck_assert_uint_eq(p.moves[0].from, 1);
    ck_assert_uint_eq(p.moves[0].nslots, 10);
    ck_assert_uint_eq(p.moves[0].slots[0], 40);
    ck_assert_uint_eq(p.moves[1].from, 2);
    ck_assert_uint_eq(p.moves[1].slots[10], 60);
    rb_plan_free(&p);
    /* Slots the target owns are left out. */
    ck_assert_int_eq(rb_plan_range(sg, 100, 45, 55, 2, &p, NULL, 0), 0);
    ck_assert_uint_eq(p.nmoves, 1);
    ck_assert_uint_eq(p.nslots, 5);
    rb_plan_free(&p);
    ck_assert_int_eq(rb_plan_range(sg, 100, 60, 70, 2, &p, NULL, 0), 0);
    ck_assert_uint_eq(p.nmoves, 0);
    rb_plan_free(&p);
    ck_assert_int_eq(rb_plan_range(sg, 100, 99, 100, 2, &p, why, sizeof(why)), RB_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "out of range"));
    ck_assert_int_eq(rb_plan_range(sg, 100, 5, 4, 2, &p, why, sizeof(why)), RB_EINVAL);
    sg[7] = 0;
    ck_assert_int_eq(rb_plan_range(sg, 100, 5, 9, 2, &p, why, sizeof(why)), RB_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "unassigned"));
    ck_assert_uint_eq(p.nmoves, 0);
}
END_TEST

START_TEST(test_format_ranges)
{
    char buf[64];
    uint32_t a[] = {0, 1, 2, 3, 7, 9, 10};
    ck_assert_uint_eq(rb_format_ranges(a, 7, buf, sizeof(buf)), 3);
    ck_assert_str_eq(buf, "0-3,7,9-10");
    ck_assert_uint_eq(rb_format_ranges(a, 0, buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "-");
    uint32_t many[40];
    for (int i = 0; i < 40; i++)
        many[i] = (uint32_t)(1000 + 3 * i);
    ck_assert_uint_eq(rb_format_ranges(many, 40, buf, 24), 40);
    ck_assert_uint_lt(strlen(buf), 24);
    ck_assert_ptr_nonnull(strstr(buf, ",..."));
}
END_TEST

/* Random maps: groups 1..8, any slot count, layouts made of random runs
 * (some unassigned), a drained group half the time. Every rule holds. */
START_TEST(test_property_random)
{
    static uint64_t after[MAXS];
    srand(12345);
    for (int iter = 0; iter < 3000; iter++) {
        size_t ngids = 1 + (size_t)(rand() % 8);
        uint64_t gids[8];
        for (size_t i = 0; i < ngids; i++)
            gids[i] = 10 + (uint64_t)i * 7;
        uint32_t n = 1 + (uint32_t)(rand() % (iter % 10 == 0 ? 20000 : 600));
        for (uint32_t s = 0; s < n;) {
            uint32_t len = 1 + (uint32_t)(rand() % (1 + n / 4));
            uint64_t g = rand() % 10 == 0 ? 0 : gids[rand() % (int)ngids];
            for (uint32_t k = 0; k < len && s < n; k++)
                sg[s++] = g;
        }
        uint64_t drain = ngids > 1 && rand() % 2 ? gids[rand() % (int)ngids] : 0;
        rb_plan_t p;
        char why[128];
        int rv = rb_plan_even(sg, n, gids, ngids, drain, &p, why, sizeof(why));
        ck_assert_msg(rv == 0, "iter %d: %s", iter, why);
        check_plan(&p, n, gids, ngids, drain, after);
        if (drain != 0)
            ck_assert_uint_eq(count_of(after, n, drain), 0);
        /* Planning the result again: nothing left to do. */
        memcpy(sg, after, n * sizeof(uint64_t));
        rb_plan_t again;
        ck_assert_int_eq(rb_plan_even(sg, n, gids, ngids, drain, &again, NULL, 0), 0);
        ck_assert_uint_eq(again.nslots, 0);
        rb_plan_free(&again);
        rb_plan_free(&p);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rebalance");
    TCase *tc = tcase_create("plan");
    tcase_add_test(tc, test_balanced_no_move);
    tcase_add_test(tc, test_add_group);
    tcase_add_test(tc, test_drain);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_unassigned_ignored);
    tcase_add_test(tc, test_range);
    tcase_add_test(tc, test_format_ranges);
    tcase_add_test(tc, test_property_random);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
