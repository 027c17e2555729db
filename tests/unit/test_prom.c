/* cluster/prom.c: the Prometheus text parser and the histogram arithmetic
 * shalectl top relies on.
 *
 * What it proves: samples with and without labels, escapes, timestamps,
 * NaN/Inf values and comments parse; malformed lines (bad names, unclosed
 * braces or quotes, bad escapes, duplicate labels, missing or bad values,
 * trailing junk) are skipped and counted while the lines around them
 * parse; label filters select and exclude; counters sum over series;
 * histogram buckets merge over labelled series by bound; deltas between
 * two scrapes, counter resets; quantiles interpolate within a bucket as
 * PromQL's histogram_quantile does; a real shaled-style exposition
 * (metrics.c's renderer) round-trips. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "prom.h"

static prom_text_t parse(const char *s)
{
    prom_text_t t;
    ck_assert_int_eq(prom_parse(s, strlen(s), &t), 0);
    return t;
}

START_TEST(test_counters_and_gauges)
{
    prom_text_t t = parse("# HELP shale_raft_term Current term.\n"
                          "# TYPE shale_raft_term gauge\n"
                          "shale_raft_term 7\n"
                          "\n"
                          "shale_requests_total{op=\"get\",outcome=\"ok\"} 10\n"
                          "shale_requests_total{op=\"put\",outcome=\"ok\"} 5 1700000000000\n"
                          "shale_requests_total{op=\"put\",outcome=\"not_leader\",} 2\n"
                          "shale_requests_total { op = \"status\" , outcome=\"ok\" }\t3\n"
                          "shale_replica_staleness_seconds NaN\n"
                          "big +Inf\n"
                          "neg -Inf\n"
                          "sci 1.5e3\r\n"
                          "last_no_newline 42");
    ck_assert_uint_eq(t.bad, 0);
    ck_assert_uint_eq(t.n, 10);
    ck_assert_str_eq(t.samples[0].name, "shale_raft_term");
    ck_assert_uint_eq(t.samples[0].nlabels, 0);
    ck_assert(t.samples[0].value == 7);
    ck_assert_str_eq(prom_label(&t.samples[1], "op"), "get");
    ck_assert_str_eq(prom_label(&t.samples[1], "outcome"), "ok");
    ck_assert_ptr_null(prom_label(&t.samples[1], "le"));
    ck_assert_uint_eq(t.samples[3].nlabels, 2);
    ck_assert_str_eq(prom_label(&t.samples[4], "op"), "status");
    ck_assert(isnan(t.samples[5].value));
    ck_assert(isinf(t.samples[6].value) && t.samples[6].value > 0);
    ck_assert(isinf(t.samples[7].value) && t.samples[7].value < 0);
    ck_assert(t.samples[8].value == 1500);
    ck_assert(t.samples[9].value == 42);

    ck_assert(prom_sum(&t, "shale_requests_total", NULL, 0) == 20);
    prom_match_t data[] = {{"op", "get|put|del|cas|mget|mput", 0}};
    ck_assert(prom_sum(&t, "shale_requests_total", data, 1) == 17);
    prom_match_t served[] = {{"op", "get|put|del|cas|mget|mput", 0},
                             {"outcome", "not_leader|wrong_group", 1}};
    ck_assert(prom_sum(&t, "shale_requests_total", served, 2) == 15);
    prom_match_t none[] = {{"op", "mget", 0}};
    ck_assert(isnan(prom_sum(&t, "shale_requests_total", none, 1)));
    ck_assert(isnan(prom_sum(&t, "absent_metric", NULL, 0)));
    /* A missing label reads as "". */
    prom_match_t nolabel[] = {{"group", "", 0}};
    ck_assert(prom_sum(&t, "shale_raft_term", nolabel, 1) == 7);
    prom_free(&t);
}
END_TEST

START_TEST(test_label_escapes)
{
    prom_text_t t = parse("m{path=\"a\\\\b\",q=\"say \\\"hi\\\"\",nl=\"x\\ny\",e=\"\"} 1\n");
    ck_assert_uint_eq(t.bad, 0);
    ck_assert_uint_eq(t.n, 1);
    ck_assert_str_eq(prom_label(&t.samples[0], "path"), "a\\b");
    ck_assert_str_eq(prom_label(&t.samples[0], "q"), "say \"hi\"");
    ck_assert_str_eq(prom_label(&t.samples[0], "nl"), "x\ny");
    ck_assert_str_eq(prom_label(&t.samples[0], "e"), "");
    prom_free(&t);
}
END_TEST

START_TEST(test_malformed_lines)
{
    static const char *const bad[] = {
        "9bad_name 1",            /* name starts with a digit */
        "m{op=\"get\" 1",         /* braces not closed */
        "m{op=\"get} 1",          /* quote not closed */
        "m{op=get} 1",            /* value not quoted */
        "m{op=\"a\\tb\"} 1",      /* escape other than \\ \" \n */
        "m{op=\"a\",op=\"b\"} 1", /* label named twice */
        "m{9x=\"a\"} 1",          /* bad label name */
        "m{a:b=\"a\"} 1",         /* ':' in a label name */
        "m{op=\"a\" x=\"b\"} 1",  /* no comma */
        "m",                      /* no value */
        "m{op=\"a\"}",            /* no value after labels */
        "m{op=\"a\"}1",           /* no space before the value */
        "m one",                  /* value not a number */
        "m 1 2 3",                /* text after the timestamp */
        "m 1 12.5",               /* timestamp not an integer */
        "m 1x",                   /* junk in the value */
        "{op=\"a\"} 1",           /* no name */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* Each bad line between two good ones: both good ones survive. */
        char text[256];
        snprintf(text, sizeof(text), "before 1\n%s\nafter{k=\"v\"} 2\n", bad[i]);
        prom_text_t t = parse(text);
        ck_assert_msg(t.bad == 1, "'%s' not refused", bad[i]);
        ck_assert_msg(strncmp(t.first_error, "line 2: ", 8) == 0, "'%s': %s", bad[i],
                      t.first_error);
        ck_assert_uint_eq(t.n, 2);
        ck_assert_str_eq(t.samples[0].name, "before");
        ck_assert_str_eq(t.samples[1].name, "after");
        ck_assert_uint_eq(t.samples[1].nlabels, 1);
        ck_assert_str_eq(prom_label(&t.samples[1], "k"), "v");
        ck_assert(t.samples[1].value == 2);
        prom_free(&t);
    }
    /* Garbage only, and nothing at all. */
    prom_text_t t = parse("\x01\x02 garbage {{{\n}}}\n\"\n");
    ck_assert_uint_eq(t.n, 0);
    ck_assert_uint_eq(t.bad, 3);
    prom_free(&t);
    t = parse("");
    ck_assert_uint_eq(t.n, 0);
    ck_assert_uint_eq(t.bad, 0);
    prom_free(&t);
}
END_TEST

/* Two series of one histogram (op=get, op=put) with the same bounds. */
static const char hist_text[] = "# TYPE lat histogram\n"
                                "lat_bucket{op=\"get\",le=\"0.001\"} 10\n"
                                "lat_bucket{op=\"get\",le=\"0.01\"} 20\n"
                                "lat_bucket{op=\"get\",le=\"0.1\"} 20\n"
                                "lat_bucket{op=\"get\",le=\"+Inf\"} 20\n"
                                "lat_sum{op=\"get\"} 0.05\n"
                                "lat_count{op=\"get\"} 20\n"
                                "lat_bucket{op=\"put\",le=\"0.001\"} 0\n"
                                "lat_bucket{op=\"put\",le=\"0.01\"} 40\n"
                                "lat_bucket{op=\"put\",le=\"0.1\"} 78\n"
                                "lat_bucket{op=\"put\",le=\"+Inf\"} 80\n"
                                "lat_sum{op=\"put\"} 2\n"
                                "lat_count{op=\"put\"} 80\n";

START_TEST(test_histogram_merge)
{
    prom_text_t t = parse(hist_text);
    ck_assert_uint_eq(t.bad, 0);
    prom_hist_t h;
    ck_assert_int_eq(prom_histogram(&t, "lat", NULL, 0, &h), 8);
    ck_assert_uint_eq(h.n, 4);
    ck_assert(h.le[0] == 0.001 && h.le[1] == 0.01 && h.le[2] == 0.1 && isinf(h.le[3]));
    ck_assert(h.count[0] == 10 && h.count[1] == 60 && h.count[2] == 98 && h.count[3] == 100);
    prom_match_t get[] = {{"op", "get", 0}};
    ck_assert_int_eq(prom_histogram(&t, "lat", get, 1, &h), 4);
    ck_assert(h.count[0] == 10 && h.count[3] == 20);
    prom_match_t none[] = {{"op", "del", 0}};
    ck_assert_int_eq(prom_histogram(&t, "lat", none, 1, &h), 0);
    ck_assert_uint_eq(h.n, 0);
    ck_assert(isnan(prom_hist_quantile(&h, 0.5)));
    /* Buckets listed out of order merge in bound order. */
    prom_text_t u =
        parse("x_bucket{le=\"+Inf\"} 4\nx_bucket{le=\"1\"} 1\nx_bucket{le=\"0.5\"} 0\n");
    ck_assert_int_eq(prom_histogram(&u, "x", NULL, 0, &h), 3);
    ck_assert(h.le[0] == 0.5 && h.le[1] == 1 && isinf(h.le[2]));
    prom_free(&u);
    /* A bucket without a usable le makes the histogram unusable. */
    u = parse("x_bucket{le=\"fast\"} 1\n");
    ck_assert_int_eq(prom_histogram(&u, "x", NULL, 0, &h), -1);
    prom_free(&u);
    prom_free(&t);
}
END_TEST

START_TEST(test_quantiles)
{
    prom_text_t t = parse(hist_text);
    prom_hist_t h;
    prom_histogram(&t, "lat", NULL, 0, &h);
    /* 100 observations: 10 <= 1ms, 50 in (1ms, 10ms], 38 in (10ms, 100ms], 2 above. */
    ck_assert(fabs(prom_hist_quantile(&h, 0.05) - 0.0005) < 1e-12); /* rank 5 of 10 in [0, 1ms] */
    /* rank 50: 40 of 50 into (0.001, 0.01] */
    ck_assert(fabs(prom_hist_quantile(&h, 0.5) - (0.001 + 0.009 * 40.0 / 50.0)) < 1e-12);
    /* rank 90: 30 of 38 into (0.01, 0.1] */
    ck_assert(fabs(prom_hist_quantile(&h, 0.9) - (0.01 + 0.09 * 30.0 / 38.0)) < 1e-12);
    /* rank 99 is in the +Inf bucket: the highest finite bound. */
    ck_assert(prom_hist_quantile(&h, 0.99) == 0.1);
    ck_assert(prom_hist_quantile(&h, 1) == 0.1);
    ck_assert(isnan(prom_hist_quantile(&h, -0.1)));
    ck_assert(isnan(prom_hist_quantile(&h, 1.1)));
    ck_assert(isnan(prom_hist_quantile(&h, NAN)));
    /* All observations in the first bucket. */
    prom_hist_t one = {.n = 2, .le = {0.25, INFINITY}, .count = {4, 4}};
    ck_assert(fabs(prom_hist_quantile(&one, 0.5) - 0.125) < 1e-12);
    /* Nothing counted: no quantile. */
    prom_hist_t zero = {.n = 2, .le = {0.25, INFINITY}, .count = {0, 0}};
    ck_assert(isnan(prom_hist_quantile(&zero, 0.5)));
    prom_free(&t);
}
END_TEST

START_TEST(test_deltas)
{
    prom_text_t a =
        parse("c{op=\"put\"} 100\n"
              "h_bucket{le=\"0.01\"} 5\nh_bucket{le=\"0.1\"} 10\nh_bucket{le=\"+Inf\"} 10\n");
    prom_text_t b =
        parse("c{op=\"put\"} 160\n"
              "h_bucket{le=\"0.01\"} 5\nh_bucket{le=\"0.1\"} 30\nh_bucket{le=\"+Inf\"} 31\n");
    double ca = prom_sum(&a, "c", NULL, 0), cb = prom_sum(&b, "c", NULL, 0);
    ck_assert(prom_counter_delta(cb, ca) == 60);
    ck_assert(prom_counter_delta(ca, cb) == 100); /* went down: a restart */
    ck_assert(prom_counter_delta(5, NAN) == 5);
    ck_assert(isnan(prom_counter_delta(NAN, 5)));
    prom_hist_t ha, hb;
    prom_histogram(&a, "h", NULL, 0, &ha);
    prom_histogram(&b, "h", NULL, 0, &hb);
    prom_hist_sub(&hb, &ha);
    ck_assert(hb.count[0] == 0 && hb.count[1] == 20 && hb.count[2] == 21);
    /* Of the 21 new observations, the median (rank 10.5) is in (0.01, 0.1]. */
    ck_assert(fabs(prom_hist_quantile(&hb, 0.5) - (0.01 + 0.09 * 10.5 / 20.0)) < 1e-12);
    /* A restart between the scrapes: the counts since it stand. */
    prom_hist_t again;
    prom_histogram(&a, "h", NULL, 0, &again);
    prom_hist_t later;
    prom_histogram(&b, "h", NULL, 0, &later);
    prom_hist_sub(&again, &later);
    ck_assert(again.count[0] == 5 && again.count[1] == 10 && again.count[2] == 10);
    /* A bound the earlier scrape lacked counts from 0. */
    prom_hist_t x = {.n = 2, .le = {1, INFINITY}, .count = {3, 4}};
    prom_hist_t y = {.n = 1, .le = {INFINITY}, .count = {1}};
    prom_hist_sub(&x, &y);
    ck_assert(x.count[0] == 3 && x.count[1] == 3);
    prom_free(&a);
    prom_free(&b);
}
END_TEST

/* What Shale's own renderer writes parses without a bad line, and a
 * histogram observed through it comes back with the same quantile. */
START_TEST(test_metrics_round_trip)
{
    met_registry_t *reg = met_registry_new();
    met_family_t *req = met_counter(reg, "shale_requests_total", "Requests.",
                                    "op=get|put|other,outcome=ok|not_leader|other");
    met_family_t *dur =
        met_histogram(reg, "shale_request_duration_seconds", "Latency.", "op=get|put|other",
                      met_latency_buckets, MET_LATENCY_NBUCKETS);
    met_family_t *st = met_gauge(reg, "shale_replica_staleness_seconds", "Age.", NULL);
    ck_assert_ptr_nonnull(req);
    ck_assert_ptr_nonnull(dur);
    met_add(req, met_series(req, "put", "ok"), 7);
    met_add(req, met_series(req, "get", "not_leader"), 2);
    for (int i = 0; i < 100; i++)
        met_observe(dur, met_series(dur, "put", NULL), 0.003); /* in (2.5ms, 5ms] */
    met_set(st, 0, NAN);
    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(met_render(reg, &text, &len), 0);
    prom_text_t t;
    ck_assert_int_eq(prom_parse(text, len, &t), 0);
    ck_assert_msg(t.bad == 0, "%s", t.first_error);
    ck_assert(prom_sum(&t, "shale_requests_total", NULL, 0) == 9);
    prom_match_t put[] = {{"op", "put", 0}};
    ck_assert(prom_sum(&t, "shale_requests_total", put, 1) == 7);
    ck_assert(isnan(prom_sum(&t, "shale_replica_staleness_seconds", NULL, 0)));
    prom_hist_t h;
    ck_assert_int_eq(prom_histogram(&t, "shale_request_duration_seconds", put, 1, &h),
                     MET_LATENCY_NBUCKETS + 1);
    double p50 = prom_hist_quantile(&h, 0.5);
    ck_assert_msg(p50 > 0.0025 && p50 <= 0.005, "p50 %g", p50);
    prom_free(&t);
    free(text);
    met_registry_free(reg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("prom");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_counters_and_gauges);
    tcase_add_test(tc, test_label_escapes);
    tcase_add_test(tc, test_malformed_lines);
    tcase_add_test(tc, test_histogram_merge);
    tcase_add_test(tc, test_quantiles);
    tcase_add_test(tc, test_deltas);
    tcase_add_test(tc, test_metrics_round_trip);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
