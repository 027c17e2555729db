/* server/clock_est.c: offset estimation from round trips to the leader.
 *
 * What it proves: a sample's offset is the leader's stamp minus the midpoint
 * of the local realtime reads and its uncertainty RTT/2 (rounded up) plus
 * drift for its age; the smallest-RTT sample in the window wins; samples
 * expire after CLK_WINDOW_US and then there is no estimate; samples from
 * another leader, answers before requests and round trips across a local
 * clock step are refused; a backwards (or forwards) step seen by clk_tick
 * drops every sample and keeps clk_check failing until a new sample; the
 * max-offset rule counts |offset| + uncertainty; the STALE bound is age +
 * offset + uncertainty, never below 0.
 *
 * The leader's side: the group median's range counts self as 0 and only
 * fresh reports of the voters named, needs a majority (self included), and
 * leaves room for what the unknown voters could say (lo = the majority-th
 * largest known, hi = the majority-th smallest); a full report table
 * replaces its oldest; a changed leader keeps the old leader's best sample as
 * clk_prev until it ages out or a step drops it; the stamp correction
 * never moves a stamp forward and moves it back only beyond the max. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "clock_est.h"

#define S 1000000ull /* 1 s in us */

/* A round trip at monotonic t (us) with local realtime = t + local_off and
 * leader realtime = t + leader_off, the leader reading its clock at the
 * round trip's midpoint. */
static int trip(clk_est_t *e, uint64_t t, uint64_t rtt, int64_t local_off, int64_t leader_off)
{
    uint64_t mid = t + rtt / 2;
    return clk_add(e, 7, t, t + rtt, (uint64_t)((int64_t)t + local_off),
                   (uint64_t)((int64_t)(t + rtt) + local_off),
                   (uint64_t)((int64_t)mid + leader_off));
}

START_TEST(test_offset_and_uncertainty)
{
    clk_est_t e;
    clk_init(&e);
    clk_set_leader(&e, 7);
    /* Local clock 2 s behind the leader (leader - local = +2 s). */
    ck_assert_int_eq(trip(&e, 100 * S, 3001, -2 * (int64_t)S, 0), 0);
    clk_view_t v;
    ck_assert_int_eq(clk_view(&e, 100 * S + 3001, &v), 0);
    ck_assert_int_eq(v.offset_us, 2 * (int64_t)S);
    ck_assert_uint_eq(v.rtt_us, 3001);
    ck_assert_uint_eq(v.age_us, 0);
    ck_assert_uint_eq(v.uncertainty_us, 1501); /* ceil(3001/2), no age yet */
    /* One second later: + 500 ppm of 1 s = 500 us of drift allowance. */
    ck_assert_int_eq(clk_view(&e, 101 * S + 3001, &v), 0);
    ck_assert_uint_eq(v.age_us, S);
    ck_assert_uint_eq(v.uncertainty_us, 1501 + 500);
}
END_TEST

START_TEST(test_smallest_rtt_wins)
{
    clk_est_t e;
    clk_init(&e);
    clk_set_leader(&e, 7);
    ck_assert_int_eq(trip(&e, 10 * S, 40000, 0, 1000), 0);
    ck_assert_int_eq(trip(&e, 11 * S, 2000, 0, 5000), 0);  /* best */
    ck_assert_int_eq(trip(&e, 12 * S, 90000, 0, 20000), 0);
    clk_view_t v;
    ck_assert_int_eq(clk_view(&e, 12 * S + 90000, &v), 0);
    ck_assert_uint_eq(v.rtt_us, 2000);
    ck_assert_int_eq(v.offset_us, 5000);
    /* The ring keeps at most CLK_SAMPLES: many slow samples push the best out. */
    for (int i = 0; i < CLK_SAMPLES; i++)
        ck_assert_int_eq(trip(&e, 12 * S + 100000 + (uint64_t)i * 1000, 50000, 0, 0), 0);
    ck_assert_int_eq(clk_view(&e, 13 * S, &v), 0);
    ck_assert_uint_eq(v.rtt_us, 50000);
}
END_TEST

START_TEST(test_window_expiry)
{
    clk_est_t e;
    clk_init(&e);
    clk_set_leader(&e, 7);
    ck_assert_int_eq(trip(&e, 10 * S, 1000, 0, 0), 0);   /* best, oldest */
    ck_assert_int_eq(trip(&e, 13 * S, 8000, 0, 3000), 0);
    clk_view_t v;
    ck_assert_int_eq(clk_view(&e, 10 * S + 1000 + CLK_WINDOW_US, &v), 0);
    ck_assert_uint_eq(v.rtt_us, 1000); /* exactly at the edge: still in */
    ck_assert_int_eq(clk_view(&e, 10 * S + 1001 + CLK_WINDOW_US, &v), 0);
    ck_assert_uint_eq(v.rtt_us, 8000); /* the first expired: the next best */
    ck_assert_int_eq(v.offset_us, 3000);
    ck_assert_int_eq(clk_view(&e, 13 * S + 8001 + CLK_WINDOW_US, &v), -1);
    char why[200];
    ck_assert_int_eq(clk_check(&e, 13 * S + 8001 + CLK_WINDOW_US, 250, why, sizeof(why)), -1);
    ck_assert_ptr_nonnull(strstr(why, "no offset sample"));
}
END_TEST

START_TEST(test_refused_samples)
{
    clk_est_t e;
    clk_init(&e);
    char why[200];
    ck_assert_int_eq(trip(&e, 10 * S, 1000, 0, 0), -1); /* no leader set */
    clk_set_leader(&e, 9);
    ck_assert_int_eq(trip(&e, 10 * S, 1000, 0, 0), -1); /* another leader's */
    clk_set_leader(&e, 7);
    ck_assert_int_eq(clk_add(&e, 7, 10 * S, 9 * S, 10 * S, 10 * S, 10 * S), -1); /* answer first */
    /* Local realtime jumped 1 s back inside the round trip. */
    ck_assert_int_eq(clk_add(&e, 7, 10 * S, 10 * S + 1000, 10 * S, 9 * S, 10 * S), -1);
    ck_assert_uint_eq(e.samples_rejected, 4);
    ck_assert_int_eq(clk_check(&e, 10 * S + 1000, 250, why, sizeof(why)), -1);
    ck_assert_int_eq(trip(&e, 10 * S, 1000, 0, 0), 0);
    ck_assert_int_eq(clk_check(&e, 10 * S + 1000, 250, why, sizeof(why)), 0);
    /* A new leader: the old leader's samples say nothing of its clock. */
    clk_set_leader(&e, 8);
    ck_assert_int_eq(clk_check(&e, 10 * S + 1000, 250, why, sizeof(why)), -1);
}
END_TEST

START_TEST(test_backwards_step)
{
    clk_est_t e;
    clk_init(&e);
    clk_set_leader(&e, 7);
    char why[200];
    ck_assert_int_eq(clk_tick(&e, 10 * S, 50 * S), 0);
    ck_assert_int_eq(trip(&e, 10 * S, 1000, 40 * S, 40 * S), 0);
    ck_assert_int_eq(clk_tick(&e, 11 * S, 51 * S), 0);        /* in step */
    ck_assert_int_eq(clk_tick(&e, 12 * S, 52 * S + 99000), 0); /* within tolerance */
    ck_assert_int_eq(clk_check(&e, 12 * S, 250, why, sizeof(why)), 0);
    /* Realtime moved back 2 s while monotonic moved 1 s forward: -3 s. */
    ck_assert_int_eq(clk_tick(&e, 13 * S, 50 * S + 99000), -3 * (int64_t)S);
    ck_assert_int_eq(e.stepped, -1);
    ck_assert_int_eq(clk_check(&e, 13 * S, 250, why, sizeof(why)), -1);
    ck_assert_ptr_nonnull(strstr(why, "stepped backwards"));
    ck_assert_int_eq(clk_tick(&e, 14 * S, 51 * S + 99000), 0); /* still remembered */
    ck_assert_int_eq(clk_check(&e, 14 * S, 250, why, sizeof(why)), -1);
    /* A new sample ends it; the offset it measures decides from then on. */
    ck_assert_int_eq(trip(&e, 14 * S, 1000, 37 * S + 99000, 40 * S), 0);
    ck_assert_int_eq(e.stepped, 0);
    ck_assert_int_eq(clk_check(&e, 14 * S + 1000, 250, why, sizeof(why)), -1);
    ck_assert_ptr_nonnull(strstr(why, "exceeds --max-clock-offset-ms 250"));
    /* Forwards steps are steps too. */
    ck_assert_int_eq(clk_tick(&e, 15 * S, 60 * S), 7 * (int64_t)S + 901000);
    ck_assert_int_eq(e.stepped, 1);
    ck_assert_uint_eq(e.steps, 2);
}
END_TEST

START_TEST(test_max_offset_rule)
{
    clk_est_t e;
    clk_init(&e);
    clk_set_leader(&e, 7);
    char why[200];
    /* offset 200 ms, uncertainty 50 ms: 250 is within 250, not within 249. */
    ck_assert_int_eq(trip(&e, 10 * S, 100000, 0, 200000), 0);
    ck_assert_int_eq(clk_check(&e, 10 * S + 100000, 250, why, sizeof(why)), 0);
    ck_assert_int_eq(clk_check(&e, 10 * S + 100000, 249, why, sizeof(why)), -1);
    /* A negative offset counts by its size. */
    clk_set_leader(&e, 8);
    clk_set_leader(&e, 7);
    ck_assert_int_eq(trip(&e, 10 * S, 100000, 0, -200001), 0);
    ck_assert_int_eq(clk_check(&e, 10 * S + 100000, 250, why, sizeof(why)), -1);
}
END_TEST

START_TEST(test_stale_bound)
{
    clk_view_t v = {.offset_us = 2000000, .uncertainty_us = 1501};
    /* Local clock 2 s behind: local age reads -1900 ms, truly 100 ms + 2. */
    ck_assert_uint_eq(clk_stale_bound_ms(-1900, &v), 102);
    v.offset_us = -500000; /* local ahead: its own age over-reads */
    v.uncertainty_us = 0;
    ck_assert_uint_eq(clk_stale_bound_ms(700, &v), 200);
    ck_assert_uint_eq(clk_stale_bound_ms(100, &v), 0); /* never below 0 */
    v.offset_us = 1; /* rounded up, never down */
    v.uncertainty_us = 1;
    ck_assert_uint_eq(clk_stale_bound_ms(0, &v), 2);
}
END_TEST

START_TEST(test_group_range)
{
    clk_peers_t t;
    memset(&t, 0, sizeof(t));
    const uint64_t ids3[] = {1, 2, 3};
    int64_t lo = 99, hi = 99;
    uint64_t now = 100 * S;
    const int64_t sec = (int64_t)S;
    /* Self alone is not a majority of 3. */
    ck_assert_int_eq(clk_group_range(&t, ids3, 3, 1, now, &lo, &hi), -1);
    /* The leader (1) is 10 s ahead of follower 2: offset (leader minus
     * follower) +10 s, so that voter's clock minus the leader's is -10 s.
     * With 2 of 3 known the median is anywhere in [-10 s, 0]. */
    clk_peers_report(&t, 2, 10 * sec, now);
    ck_assert_int_eq(clk_group_range(&t, ids3, 3, 1, now, &lo, &hi), 0);
    ck_assert_int_eq(lo, -10 * sec);
    ck_assert_int_eq(hi, 0);
    clk_peers_report(&t, 3, 10 * sec + 5, now); /* both behind: the median is known */
    ck_assert_int_eq(clk_group_range(&t, ids3, 3, 1, now, &lo, &hi), 0);
    ck_assert_int_eq(lo, -10 * sec);
    ck_assert_int_eq(hi, -10 * sec);
    /* A report replaces the node's last one. */
    clk_peers_report(&t, 3, 0, now);
    ck_assert_int_eq(t.n, 2);
    ck_assert_int_eq(clk_group_range(&t, ids3, 3, 1, now, &lo, &hi), 0);
    ck_assert_int_eq(lo, 0); /* {-10 s, 0, 0}: one follower off is not the group */
    ck_assert_int_eq(hi, 0);
    /* Reports of non-voters (not named) do not count; stale reports neither. */
    clk_peers_report(&t, 9, 50 * sec, now);
    const uint64_t ids2[] = {1, 2};
    ck_assert_int_eq(clk_group_range(&t, ids2, 2, 1, now, &lo, &hi), 0);
    ck_assert_int_eq(lo, -10 * sec); /* two voters: the two middle values */
    ck_assert_int_eq(hi, 0);
    ck_assert_int_eq(clk_group_range(&t, ids3, 3, 1, now + CLK_WINDOW_US + 1, &lo, &hi), -1);
    /* Five voters: q = 3. */
    clk_peers_clear(&t);
    const uint64_t ids5[] = {1, 2, 3, 4, 5};
    clk_peers_report(&t, 2, 2 * sec, now);
    ck_assert_int_eq(clk_group_range(&t, ids5, 5, 1, now, &lo, &hi), -1);
    clk_peers_report(&t, 3, 2 * sec, now);
    ck_assert_int_eq(clk_group_range(&t, ids5, 5, 1, now, &lo, &hi), 0);
    ck_assert_int_eq(lo, -2 * sec); /* {-2, -2, 0} and two unknown */
    ck_assert_int_eq(hi, 0);
    clk_peers_report(&t, 4, 3 * sec, now);
    ck_assert_int_eq(clk_group_range(&t, ids5, 5, 1, now, &lo, &hi), 0);
    ck_assert_int_eq(lo, -2 * sec); /* {-3, -2, -2, 0}: a majority at or below -2 s */
    ck_assert_int_eq(hi, -2 * sec);
    clk_peers_report(&t, 5, -sec, now);
    ck_assert_int_eq(clk_group_range(&t, ids5, 5, 1, now, &lo, &hi), 0);
    ck_assert_int_eq(lo, -2 * sec); /* {-3, -2, -2, 0, +1} */
    ck_assert_int_eq(hi, -2 * sec);
    /* A full table replaces its oldest report. */
    clk_peers_clear(&t);
    for (uint64_t id = 10; id < 10 + CLK_PEERS; id++)
        clk_peers_report(&t, id, 0, now + id);
    clk_peers_report(&t, 99, 0, now + 100);
    ck_assert_int_eq(t.n, CLK_PEERS);
    for (size_t i = 0; i < t.n; i++)
        ck_assert_uint_ne(t.p[i].id, 10);
}
END_TEST

START_TEST(test_prev_leader_and_correction)
{
    clk_est_t e;
    clk_init(&e);
    int64_t off = 0;
    ck_assert_int_eq(clk_prev(&e, 10 * S, &off), -1);
    clk_set_leader(&e, 7);
    /* This node runs 3 s ahead of leader 7: offset (leader minus local) -3 s. */
    ck_assert_int_eq(trip(&e, 10 * S, 2000, 3 * (int64_t)S, 0), 0);
    ck_assert_int_eq(trip(&e, 11 * S, 800, 3 * (int64_t)S, 0), 0);
    clk_set_leader(&e, 8); /* 7 is gone: its clock is kept */
    ck_assert_int_eq(e.n, 0);
    ck_assert_int_eq(clk_prev(&e, 12 * S, &off), 0);
    ck_assert_int_eq(off, -3 * (int64_t)S);
    ck_assert_int_eq(clk_prev(&e, 11 * S + 800 + CLK_PREV_TTL_US + 1, &off), -1);
    /* A step drops it. */
    clk_tick(&e, 20 * S, 20 * S);
    clk_tick(&e, 21 * S, 23 * S);
    ck_assert_int_eq(clk_prev(&e, 21 * S, &off), -1);

    /* The correction: never forward; back only beyond the max. */
    ck_assert_int_eq(clk_stamp_correction(0, 250000), 0);
    ck_assert_int_eq(clk_stamp_correction(5 * (int64_t)S, 250000), 0);   /* leader behind */
    ck_assert_int_eq(clk_stamp_correction(-250000, 250000), 0);          /* at the max */
    ck_assert_int_eq(clk_stamp_correction(-10 * (int64_t)S, 250000), -9750000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("clock_est");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_offset_and_uncertainty);
    tcase_add_test(tc, test_smallest_rtt_wins);
    tcase_add_test(tc, test_window_expiry);
    tcase_add_test(tc, test_refused_samples);
    tcase_add_test(tc, test_backwards_step);
    tcase_add_test(tc, test_max_offset_rule);
    tcase_add_test(tc, test_stale_bound);
    tcase_add_test(tc, test_group_range);
    tcase_add_test(tc, test_prev_leader_and_correction);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
