/* Clock offset to the group leader, measured (docs/consistency.md, "Clocks").
 *
 * Every CLK_TICK_MS a data member compares its realtime and monotonic
 * clocks (a step of realtime drops every offset sample, clock_est.h) and,
 * every 400 ms when it is not the leader (every tick while it has no
 * estimate), sends one CLOCK request
 * to the leader's client port over a libshale client of its own (TLS and
 * the node's credential as for the meta watch). Each answer is one sample
 * for the estimator in s->clk. The leader answers CLOCK with its realtime.
 *
 * Each CLOCK request carries the member's current estimate; the leader
 * keeps those of its voters (clk_peers) and so knows how far its own clock
 * is from its group's (the median). clock_stamp_ms is the timestamp a
 * leader writes into an entry: its realtime, moved back when the group
 * measures it ahead by more than --max-clock-offset-ms (TTL expiry and
 * STALE reads lean on stamps). A leader beyond the max either way for
 * CLK_OFF_TICKS ticks hands leadership to the voter whose clock is nearest
 * the group's.
 *
 * clock_stale_check is the STALE-read rule built on it; clock_problem is
 * what /health and STATUS say. This file never changes how
 * applied_leader_ms is computed (raft_fsm.c owns that) and never blocks
 * the loop. Linearizable reads and writes never consult it. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "frame.h"
#include "log.h"
#include "server.h"
#include "shale_internal.h"

#define CLK_TICK_MS 200
#define CLK_PING_EVERY 2 /* ticks: a ping every 400 ms */
#define CLK_PING_TIMEOUT_MS 2000
#define CLK_OFF_TICKS 2 /* a leader off for this many ticks hands over */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int clock_applies(const shaled_t *s)
{
    return strcmp(s->cfg.mode, "data") == 0;
}

static int is_voter(const shaled_t *s, uint64_t id)
{
    const Shale__Member *m = members_find(s, id);
    return m != NULL && (!m->has_role || m->role == SHALE__MEMBER_ROLE__ROLE_VOTER);
}

/* Whether a report on this connection may move the leader's stamps: a
 * cluster credential (admin) or any caller when --auth is off. */
static int may_report(shaled_t *s, sreq_t *r)
{
    if (!s->cfg.auth)
        return 1;
    const authn_conn_t *a = conn_authn(r->conn);
    return a->u != NULL && a->u->role == SHALE__USER_ROLE__USER_ADMIN;
}

void clock_handle_req(shaled_t *s, sreq_t *r)
{
    const Shale__ClockRequest *q = (const Shale__ClockRequest *)r->msg;
    Shale__ClockResponse c = SHALE__CLOCK_RESPONSE__INIT;
    c.node_id = s->cfg.id;
    c.realtime_us = shaled_now_us();
    c.has_leader = 1;
    c.leader = s->raft_inited && !s->raft_closed && raft_node_is_leader(s);
    if (c.leader && q != NULL && q->has_node_id && q->has_leader_id && q->has_offset_us &&
        q->leader_id == s->cfg.id && q->node_id != s->cfg.id && is_voter(s, q->node_id) &&
        may_report(s, r))
        clk_peers_report(&s->clk_peers, q->node_id, q->offset_us, mono_us());
    sreq_reply(r, SHALE_MSG_CLOCK_RESP, &c.base);
}

static void on_client_closed(shale_client_t *c)
{
    (void)c;
}

static void drop_client(shaled_t *s)
{
    if (s->clk_client != NULL) {
        shale_close_async(s->clk_client, on_client_closed);
        s->clk_client = NULL;
    }
    s->clk_addr[0] = '\0';
}

static void on_clock(shale_req_t *req, int status)
{
    shaled_t *s = req->data;
    uint64_t recv_mono = mono_us(), recv_real = shaled_now_us();
    s->clk_inflight = 0;
    int first = s->clk_conn_new; /* its round trip includes connecting: not a sample */
    s->clk_conn_new = 0;
    if (status == SHALE_OK && !s->stopping && !first) {
        Shale__ClockResponse *resp = shale__clock_response__unpack(NULL, req->raw_len, req->raw);
        if (resp != NULL && resp->node_id == s->clk_ping_leader && resp->has_leader &&
            resp->leader) {
            if (clk_add(&s->clk, resp->node_id, s->clk_send_mono, recv_mono, s->clk_send_real,
                        recv_real, resp->realtime_us) == 0)
                log_debug("clock sample", " leader=%" PRIu64 " rtt_us=%" PRIu64,
                          resp->node_id, recv_mono - s->clk_send_mono);
        }
        if (resp != NULL)
            shale__clock_response__free_unpacked(resp, NULL);
    } else if (status != SHALE_ECANCELED && status != SHALE_ECLOSED && !s->stopping) {
        log_debug("clock ping failed", " err=\"%s\"", req->errmsg);
    }
    shale_req_cleanup(req);
}

static void ping(shaled_t *s, uint64_t lid)
{
    const Shale__Member *m = members_find(s, lid);
    if (m == NULL || m->client_addr == NULL || m->client_addr[0] == '\0')
        return;
    if (s->clk_client != NULL && strcmp(s->clk_addr, m->client_addr) != 0)
        drop_client(s); /* nothing in flight here: the caller checked */
    if (s->clk_client == NULL) {
        shale_options_t o;
        shale_options_init(&o);
        o.timeout_ms = CLK_PING_TIMEOUT_MS;
        o.cluster_id = s->cfg.cluster_id;
        if (s->tls_client != NULL) {
            o.tls_ca = s->cfg.tls_ca;
            o.tls_cert = s->cfg.tls_cert;
            o.tls_key = s->cfg.tls_key;
        }
        authn_client_options(s, &o);
        if (shale_connect_async(s->loop, m->client_addr, &o, &s->clk_client) != SHALE_OK) {
            s->clk_client = NULL;
            return;
        }
        snprintf(s->clk_addr, sizeof(s->clk_addr), "%s", m->client_addr);
        s->clk_conn_new = 1;
    }
    Shale__ClockRequest q = SHALE__CLOCK_REQUEST__INIT;
    clk_view_t v;
    if (clk_view(&s->clk, mono_us(), &v) == 0 && s->clk.leader_id == lid) {
        q.has_node_id = q.has_leader_id = q.has_offset_us = 1;
        q.node_id = s->cfg.id;
        q.leader_id = lid;
        q.offset_us = v.offset_us;
    }
    uint8_t buf[64];
    size_t len = shale__clock_request__pack(&q, buf);
    memset(&s->clk_req, 0, sizeof(s->clk_req));
    s->clk_req.data = s;
    s->clk_ping_leader = lid;
    s->clk_send_mono = mono_us();
    s->clk_send_real = shaled_now_us();
    if (shale_call_async(s->clk_client, &s->clk_req, SHALE_MSG_CLOCK_REQ, SHALE_MSG_CLOCK_RESP,
                         buf, len, on_clock) == SHALE_OK)
        s->clk_inflight = 1;
}

int clock_group_view(shaled_t *s, int64_t *lo_us, int64_t *hi_us, const char **source)
{
    if (!clock_applies(s) || !s->raft_inited || s->raft_closed || !raft_node_is_leader(s))
        return -1;
    /* Elected since the last tick: the samples are the previous leader's;
     * keep them as clk_prev now, before the first stamp. */
    clk_set_leader(&s->clk, s->cfg.id);
    uint64_t ids[CLK_PEERS + 1];
    size_t nv = 0;
    for (size_t i = 0; s->members != NULL && i < s->members->n_members && nv < CLK_PEERS + 1;
         i++) {
        const Shale__Member *m = s->members->members[i];
        if (!m->has_role || m->role == SHALE__MEMBER_ROLE__ROLE_VOTER)
            ids[nv++] = m->id;
    }
    uint64_t now = mono_us();
    if (clk_group_range(&s->clk_peers, ids, nv, s->cfg.id, now, lo_us, hi_us) == 0) {
        *source = "reports";
        return 0;
    }
    /* Just elected: the previous leader's clock, as this node last measured it. */
    if (nv > 1 && clk_prev(&s->clk, now, lo_us) == 0) {
        *hi_us = *lo_us;
        *source = "previous leader";
        return 0;
    }
    return -1;
}

uint64_t clock_stamp_ms(shaled_t *s)
{
    uint64_t now = shaled_now_us();
    int64_t lo, hi;
    const char *src;
    if (clock_group_view(s, &lo, &hi, &src) != 0)
        return now / 1000;
    int64_t c = clk_stamp_correction(lo, s->cfg.max_clock_offset_ms * 1000);
    if (c == 0)
        return now / 1000;
    s->clk_stamps_corrected++;
    uint64_t back = (uint64_t)(-c);
    return now > back ? (now - back) / 1000 : 0;
}

static void on_handoff(struct raft_transfer *req)
{
    shaled_t *s = req->data;
    s->clk_xfer_busy = 0;
}

/* The voter (not self) whose clock is nearest the group's, by its report. */
static uint64_t handoff_target(shaled_t *s, int64_t median_us)
{
    uint64_t best = 0, now = mono_us();
    int64_t bestd = 0;
    for (size_t i = 0; i < s->clk_peers.n; i++) {
        const clk_peer_t *p = &s->clk_peers.p[i];
        if (!is_voter(s, p->id) || p->at_mono_us > now || now - p->at_mono_us > CLK_WINDOW_US)
            continue;
        int64_t d = -p->offset_us - median_us; /* its clock minus the group's */
        if (d < 0)
            d = -d;
        if (best == 0 || d < bestd) {
            best = p->id;
            bestd = d;
        }
    }
    return best;
}

/* Whether the group's clock is known to be off this leader's by more than
 * the max: the whole range beyond it on one side. 1 with the range's
 * middle in *mid_us. */
static int leader_off(shaled_t *s, int64_t *mid_us, const char **src)
{
    int64_t lo, hi;
    int64_t max = (int64_t)(s->cfg.max_clock_offset_ms * 1000);
    if (clock_group_view(s, &lo, &hi, src) != 0 || (hi >= -max && lo <= max))
        return 0;
    *mid_us = lo + (hi - lo) / 2;
    return 1;
}

/* On the leader, every tick: beyond the max offset for CLK_OFF_TICKS ticks
 * in a row, hand leadership to the voter nearest the group's clock. */
static void leader_tick(shaled_t *s)
{
    int64_t m;
    const char *src;
    if (!leader_off(s, &m, &src)) {
        s->clk_off_ticks = 0;
        return;
    }
    if (++s->clk_off_ticks < CLK_OFF_TICKS || s->cfg.test_clock_keep_leadership ||
        s->clk_xfer_busy || s->admin != NULL)
        return;
    uint64_t to = handoff_target(s, m);
    if (to == 0)
        return;
    s->clk_xfer.data = s;
    if (raft_transfer(&s->raft, &s->clk_xfer, to, on_handoff) != 0)
        return;
    s->clk_xfer_busy = 1;
    s->clk_handoffs++;
    log_warn("this leader's clock is off its group's: handing leadership over",
             " group_minus_local_ms=%" PRId64 " source=\"%s\" max_ms=%" PRIu64 " to=%" PRIu64,
             m / 1000, src, s->cfg.max_clock_offset_ms, to);
}

static void on_clk_timer(uv_timer_t *t)
{
    shaled_t *s = t->data;
    if (s->stopping)
        return;
    int64_t step = clk_tick(&s->clk, mono_us(), shaled_now_us());
    if (step != 0)
        log_warn("the realtime clock stepped: offset samples dropped; STALE reads refused "
                 "until a new sample",
                 " step_ms=%" PRId64, step / 1000);
    if (!s->raft_inited || s->raft_closed)
        return;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&s->raft, &lid, &laddr);
    if (lid != 0) /* another leader: another clock; none: keep the last (it expires) */
        clk_set_leader(&s->clk, lid);
    if (lid == s->cfg.id) {
        leader_tick(s);
        return;
    }
    clk_peers_clear(&s->clk_peers); /* reports were about this node's last term */
    s->clk_off_ticks = 0;
    if (lid == 0 || s->clk_inflight)
        return;
    /* Every CLK_PING_EVERY ticks; every tick while there is no estimate
     * (a new leader, a step, startup). */
    clk_view_t v;
    int hurry = lid != s->clk_ping_leader || clk_view(&s->clk, mono_us(), &v) != 0;
    if (!hurry && ++s->clk_ticks < CLK_PING_EVERY)
        return;
    s->clk_ticks = 0;
    ping(s, lid);
}

void clock_start(shaled_t *s)
{
    clk_init(&s->clk);
    uv_timer_init(s->loop, &s->clk_timer);
    s->clk_timer.data = s;
    if (clock_applies(s))
        uv_timer_start(&s->clk_timer, on_clk_timer, 0, CLK_TICK_MS);
}

void clock_stop(shaled_t *s)
{
    if (s->clk_timer.loop != NULL && !uv_is_closing((uv_handle_t *)&s->clk_timer)) {
        uv_timer_stop(&s->clk_timer);
        uv_close((uv_handle_t *)&s->clk_timer, NULL);
    }
    drop_client(s);
}

/* Whether this node is its group's reference clock (the leader now). */
static int is_reference(shaled_t *s)
{
    return s->raft_inited && !s->raft_closed && raft_node_is_leader(s);
}

int clock_problem(shaled_t *s, char *why, size_t n)
{
    if (!clock_applies(s))
        return 0;
    if (is_reference(s)) {
        int64_t m;
        const char *src;
        if (!leader_off(s, &m, &src))
            return 0;
        snprintf(why, n,
                 "clock: this leader's clock is %" PRId64 " ms %s its group's (%s), beyond "
                 "--max-clock-offset-ms %" PRIu64 "; its timestamps are corrected%s",
                 (m < 0 ? -m : m) / 1000, m < 0 ? "ahead of" : "behind", src,
                 s->cfg.max_clock_offset_ms,
                 s->cfg.test_clock_keep_leadership ? "" : " and it hands leadership over");
        return 1;
    }
    if (s->cfg.test_ignore_clock_offset)
        return 0;
    return clk_check(&s->clk, mono_us(), s->cfg.max_clock_offset_ms, why, n) != 0;
}

int clock_view_now(shaled_t *s, clk_view_t *v)
{
    if (!clock_applies(s) || is_reference(s))
        return -1;
    return clk_view(&s->clk, mono_us(), v);
}

uint64_t clock_stale_check(shaled_t *s, uint64_t applied_leader_ms, char *why, size_t n)
{
    int64_t age = (int64_t)shaled_now_ms() - (int64_t)applied_leader_ms;
    if (s->cfg.test_ignore_clock_offset || is_reference(s) || !clock_applies(s))
        return age > 0 ? (uint64_t)age : 0; /* the local clock, trusted as before */
    if (clk_check(&s->clk, mono_us(), s->cfg.max_clock_offset_ms, why, n) != 0)
        return UINT64_MAX;
    clk_view_t v;
    if (clk_view(&s->clk, mono_us(), &v) != 0) { /* cannot happen after clk_check */
        snprintf(why, n, "clock: no offset sample from the leader");
        return UINT64_MAX;
    }
    return clk_stale_bound_ms(age, &v);
}
