/* Clock offset estimation arithmetic (clock_est.h). Owns the sample ring and
 * the step detector; never reads a clock or does I/O. */
#include "clock_est.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void clk_init(clk_est_t *e)
{
    memset(e, 0, sizeof(*e));
}

static void drop_samples(clk_est_t *e)
{
    e->n = 0;
    e->head = 0;
}

void clk_set_leader(clk_est_t *e, uint64_t leader_id)
{
    if (e->leader_id == leader_id)
        return;
    /* Keep the old leader's clock as the best (smallest RTT) sample of the
     * ring: a new leader's reference until its followers report. */
    const clk_sample_t *best = NULL;
    for (size_t i = 0; i < e->n; i++)
        if (best == NULL || e->s[i].rtt_us < best->rtt_us ||
            (e->s[i].rtt_us == best->rtt_us && e->s[i].at_mono_us > best->at_mono_us))
            best = &e->s[i];
    if (best != NULL) {
        e->has_prev = 1;
        e->prev_offset_us = best->offset_us;
        e->prev_at_mono_us = best->at_mono_us;
    }
    e->leader_id = leader_id;
    drop_samples(e);
}

int clk_prev(const clk_est_t *e, uint64_t now_mono_us, int64_t *offset_us)
{
    if (!e->has_prev || e->prev_at_mono_us > now_mono_us ||
        now_mono_us - e->prev_at_mono_us > CLK_PREV_TTL_US)
        return -1;
    *offset_us = e->prev_offset_us;
    return 0;
}

void clk_peers_clear(clk_peers_t *t)
{
    t->n = 0;
}

void clk_peers_report(clk_peers_t *t, uint64_t id, int64_t offset_us, uint64_t now_mono_us)
{
    size_t at = t->n;
    for (size_t i = 0; i < t->n; i++)
        if (t->p[i].id == id)
            at = i;
    if (at == CLK_PEERS) { /* full: the oldest report goes */
        at = 0;
        for (size_t i = 1; i < t->n; i++)
            if (t->p[i].at_mono_us < t->p[at].at_mono_us)
                at = i;
    } else if (at == t->n) {
        t->n++;
    }
    t->p[at].id = id;
    t->p[at].offset_us = offset_us;
    t->p[at].at_mono_us = now_mono_us;
}

int clk_group_range(const clk_peers_t *t, const uint64_t *ids, size_t nv, uint64_t self,
                    uint64_t now_mono_us, int64_t *lo_us, int64_t *hi_us)
{
    int64_t d[CLK_PEERS + 1];
    size_t k = 0;
    for (size_t v = 0; v < nv && k < CLK_PEERS + 1; v++) {
        if (ids[v] == self) {
            d[k++] = 0;
            continue;
        }
        for (size_t i = 0; i < t->n; i++) {
            const clk_peer_t *p = &t->p[i];
            if (p->id != ids[v] || p->at_mono_us > now_mono_us ||
                now_mono_us - p->at_mono_us > CLK_WINDOW_US)
                continue;
            d[k++] = -p->offset_us;
            break;
        }
    }
    size_t q = nv / 2 + 1;
    if (nv == 0 || k < q)
        return -1;
    for (size_t i = 1; i < k; i++) /* insertion sort: k <= 17 */
        for (size_t j = i; j > 0 && d[j - 1] > d[j]; j--) {
            int64_t x = d[j];
            d[j] = d[j - 1];
            d[j - 1] = x;
        }
    *lo_us = d[k - q];
    *hi_us = d[q - 1];
    return 0;
}

int64_t clk_stamp_correction(int64_t group_minus_leader_us, uint64_t max_offset_us)
{
    int64_t c = group_minus_leader_us + (int64_t)max_offset_us;
    return c < 0 ? c : 0;
}

int clk_add(clk_est_t *e, uint64_t leader_id, uint64_t send_mono_us, uint64_t recv_mono_us,
            uint64_t send_real_us, uint64_t recv_real_us, uint64_t leader_real_us)
{
    if (leader_id == 0 || leader_id != e->leader_id || recv_mono_us < send_mono_us) {
        e->samples_rejected++;
        return -1;
    }
    uint64_t rtt = recv_mono_us - send_mono_us;
    int64_t dreal = (int64_t)(recv_real_us - send_real_us);
    int64_t skew = dreal - (int64_t)rtt;
    if (skew > (int64_t)CLK_STEP_TOLERANCE_US || skew < -(int64_t)CLK_STEP_TOLERANCE_US) {
        e->samples_rejected++;
        return -1;
    }
    /* Midpoint of the local realtime reads (overflow-free). */
    uint64_t mid = send_real_us + (recv_real_us - send_real_us) / 2;
    if (recv_real_us < send_real_us)
        mid = recv_real_us + (send_real_us - recv_real_us) / 2;
    clk_sample_t *s = &e->s[e->head];
    s->at_mono_us = recv_mono_us;
    s->offset_us = (int64_t)(leader_real_us - mid);
    s->rtt_us = rtt;
    e->head = (e->head + 1) % CLK_SAMPLES;
    if (e->n < CLK_SAMPLES)
        e->n++;
    e->stepped = 0;
    e->samples_taken++;
    return 0;
}

int64_t clk_tick(clk_est_t *e, uint64_t now_mono_us, uint64_t now_real_us)
{
    int64_t step = 0;
    if (e->last_mono_us != 0 && now_mono_us >= e->last_mono_us) {
        int64_t dmono = (int64_t)(now_mono_us - e->last_mono_us);
        int64_t dreal = (int64_t)(now_real_us - e->last_real_us);
        int64_t d = dreal - dmono;
        if (d > (int64_t)CLK_STEP_TOLERANCE_US || d < -(int64_t)CLK_STEP_TOLERANCE_US) {
            step = d;
            e->stepped = d < 0 ? -1 : 1;
            e->steps++;
            e->has_prev = 0;
            drop_samples(e);
        }
    }
    e->last_mono_us = now_mono_us;
    e->last_real_us = now_real_us;
    return step;
}

int clk_view(const clk_est_t *e, uint64_t now_mono_us, clk_view_t *v)
{
    const clk_sample_t *best = NULL;
    for (size_t i = 0; i < e->n; i++) {
        const clk_sample_t *s = &e->s[i];
        if (s->at_mono_us > now_mono_us || now_mono_us - s->at_mono_us > CLK_WINDOW_US)
            continue; /* expired (or from the future: ignore) */
        if (best == NULL || s->rtt_us < best->rtt_us ||
            (s->rtt_us == best->rtt_us && s->at_mono_us > best->at_mono_us))
            best = s;
    }
    if (best == NULL)
        return -1;
    v->offset_us = best->offset_us;
    v->age_us = now_mono_us - best->at_mono_us;
    v->rtt_us = best->rtt_us;
    /* Round up both halves: the bound must never be too small. */
    v->uncertainty_us = (best->rtt_us + 1) / 2 + (v->age_us * CLK_DRIFT_PPM + 999999) / 1000000;
    return 0;
}

static uint64_t abs64(int64_t x)
{
    return x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
}

int clk_check(const clk_est_t *e, uint64_t now_mono_us, uint64_t max_offset_ms, char *why,
              size_t whylen)
{
    clk_view_t v;
    if (e->stepped != 0) {
        snprintf(why, whylen, "clock: the local realtime clock stepped %s; waiting for a new "
                 "offset sample from the leader", e->stepped < 0 ? "backwards" : "forwards");
        return -1;
    }
    if (clk_view(e, now_mono_us, &v) != 0) {
        snprintf(why, whylen, "clock: no offset sample from the leader in the last %u ms",
                 CLK_WINDOW_US / 1000);
        return -1;
    }
    uint64_t worst_us = abs64(v.offset_us) + v.uncertainty_us;
    if (worst_us > max_offset_ms * 1000) {
        snprintf(why, whylen, "clock: offset to the leader %" PRId64 " ms +- %" PRIu64
                 " ms exceeds --max-clock-offset-ms %" PRIu64,
                 v.offset_us / 1000, (v.uncertainty_us + 999) / 1000, max_offset_ms);
        return -1;
    }
    return 0;
}

uint64_t clk_stale_bound_ms(int64_t age_ms, const clk_view_t *v)
{
    /* True staleness = leader_now - stamp, and leader_now lies within
     * local_now + offset +- uncertainty: the upper end is the bound. */
    int64_t off_ms = v->offset_us >= 0 ? (v->offset_us + 999) / 1000 : -((-v->offset_us) / 1000);
    int64_t unc_ms = (int64_t)((v->uncertainty_us + 999) / 1000);
    int64_t b = age_ms + off_ms + unc_ms;
    return b > 0 ? (uint64_t)b : 0;
}
