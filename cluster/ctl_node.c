/* shalectl: talking to nodes — STATUS probes and the direct group verbs.
 *
 * Rules:
 *  - STATUS goes through shale_call (raw StatusResponse), so a member's
 *    exact role (voter, standby, spare) reaches the map as the group has it.
 *  - Probing many nodes (status) runs every request at once on one private
 *    loop: a cluster with dead nodes costs one deadline, not one per node.
 *  - A node that does not answer is a row that says so, never a failed
 *    command.
 *  - A node's own readiness comes from its /health (the http_addr its
 *    STATUS names), read only from nodes that answered STATUS; a node
 *    without --http shows "-". */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "shale_internal.h"
#include "ctl.h"
#include "frame.h"
#include "httpc.h"

/* ---- STATUS -------------------------------------------------------------------*/

int node_status(shale_client_t *c, Shale__StatusResponse **st, char *err)
{
    uint8_t *resp = NULL;
    size_t len = 0;
    *st = NULL;
    int rv =
        shale_call(c, SHALE_MSG_STATUS_REQ, SHALE_MSG_STATUS_RESP, NULL, 0, &resp, &len, err, NULL);
    if (rv != SHALE_OK)
        return rv;
    *st = shale__status_response__unpack(NULL, len, resp);
    free(resp);
    if (*st == NULL) {
        snprintf(err, SHALE_ERRMSG_LEN, "malformed STATUS answer");
        return SHALE_EPROTO;
    }
    return SHALE_OK;
}

static void probe_cb(shale_req_t *req, int status)
{
    probe_t *p = req->data;
    p->rv = status;
    if (status == SHALE_OK) {
        p->st = shale__status_response__unpack(NULL, req->raw_len, req->raw);
        if (p->st == NULL) {
            p->rv = SHALE_EPROTO;
            snprintf(p->err, sizeof(p->err), "malformed STATUS answer");
        }
    } else {
        snprintf(p->err, sizeof(p->err), "%s",
                 req->errmsg[0] != '\0' ? req->errmsg : shale_strerror(status));
    }
    shale_req_cleanup(req);
}

void probe_all(const cmd_t *cmd, probe_t *p, size_t n)
{
    uv_loop_t loop;
    shale_options_t o;
    ctl_options(cmd, CTL_PROBE_TIMEOUT_MS, &o);
    for (size_t i = 0; i < n; i++) {
        p[i].st = NULL;
        p[i].c_ = NULL;
        p[i].err[0] = '\0';
        p[i].rv = SHALE_ENOMEM;
        memset(&p[i].req_, 0, sizeof(p[i].req_));
    }
    if (uv_loop_init(&loop) != 0) {
        for (size_t i = 0; i < n; i++)
            snprintf(p[i].err, sizeof(p[i].err), "cannot create an event loop");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int rv = shale_client_open(&loop, p[i].addr, &o, &p[i].c_);
        if (rv != SHALE_OK) {
            p[i].rv = rv;
            p[i].c_ = NULL;
            snprintf(p[i].err, sizeof(p[i].err), "cannot open a client for '%s'", p[i].addr);
            continue;
        }
        p[i].req_.data = &p[i];
        rv = shale_call_async(p[i].c_, &p[i].req_, SHALE_MSG_STATUS_REQ, SHALE_MSG_STATUS_RESP,
                              NULL, 0, probe_cb);
        if (rv != SHALE_OK) {
            p[i].rv = rv;
            snprintf(p[i].err, sizeof(p[i].err), "%s", p[i].req_.errmsg);
        }
    }
    /* The loop stays alive only while requests are pending. */
    uv_run(&loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < n; i++)
        if (p[i].c_ != NULL)
            shale_client_close(p[i].c_, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

void probe_health(const cmd_t *cmd, probe_t *p, size_t n)
{
    int timeout = cmd->timeout_ms ? (int)cmd->timeout_ms : CTL_HEALTH_TIMEOUT_MS;
    for (size_t i = 0; i < n; i++) {
        p[i].http[0] = p[i].health[0] = '\0';
        p[i].health_status = 0;
        if (p[i].rv != SHALE_OK || p[i].st->http_addr == NULL || p[i].st->http_addr[0] == '\0')
            continue;
        if (httpc_reach_addr(p[i].st->http_addr, p[i].addr, p[i].http, sizeof(p[i].http)) != 0) {
            p[i].health_status = -1;
            snprintf(p[i].health, sizeof(p[i].health), "bad http address '%.100s'",
                     p[i].st->http_addr);
            continue;
        }
        char *body = NULL, err[200];
        size_t len = 0;
        int status = 0;
        int rv = httpc_get(p[i].http, "/health", timeout, &status, &body, &len, err, sizeof(err));
        if (rv != 0) {
            p[i].health_status = -1;
            snprintf(p[i].health, sizeof(p[i].health), "%s", err);
            continue;
        }
        /* "ready\n" or "not ready: <reason>\n": keep the reason. */
        const char *why = body;
        if (strncmp(why, "not ready: ", 11) == 0)
            why += 11;
        size_t wl = strcspn(why, "\r\n");
        p[i].health_status = status;
        if (status != 200)
            snprintf(p[i].health, sizeof(p[i].health), "%.*s", (int)(wl < 200 ? wl : 200), why);
        free(body);
    }
}

void probe_free(probe_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i].st != NULL)
            shale__status_response__free_unpacked(p[i].st, NULL);
        p[i].st = NULL;
    }
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int is_leader(const Shale__StatusResponse *st)
{
    return st->role != NULL && strcmp(st->role, "leader") == 0;
}

/* One round: ask addrs, then the leader it names. 1: *st is the leader's. */
static int leader_round(const cmd_t *cmd, const char *addrs, Shale__StatusResponse **st, int *rv,
                        char *err)
{
    shale_options_t o;
    shale_client_t *c = NULL;
    ctl_options(cmd, 5000, &o);
    *rv = shale_connect(addrs, &o, &c, err);
    if (*rv != SHALE_OK)
        return 0;
    *rv = node_status(c, st, err);
    shale_close(c);
    if (*rv != SHALE_OK || is_leader(*st))
        return *rv == SHALE_OK;
    char hint[128];
    snprintf(hint, sizeof(hint), "%s", (*st)->leader != NULL ? (*st)->leader : "");
    uint64_t id = (*st)->node_id;
    const char *role = (*st)->role != NULL ? (*st)->role : "?";
    snprintf(err, SHALE_ERRMSG_LEN, "the group has no leader (node %" PRIu64 " at %.120s is %.20s)",
             id, addrs, role);
    *rv = SHALE_EUNAVAILABLE;
    if (hint[0] == '\0')
        return 0;
    shale__status_response__free_unpacked(*st, NULL);
    *st = NULL;
    char lerr[SHALE_ERRMSG_LEN];
    int lrv = shale_connect(hint, &o, &c, lerr);
    if (lrv == SHALE_OK) {
        lrv = node_status(c, st, lerr);
        shale_close(c);
    }
    if (lrv == SHALE_OK && is_leader(*st))
        return 1;
    if (lrv == SHALE_OK) {
        shale__status_response__free_unpacked(*st, NULL);
        *st = NULL;
    }
    snprintf(err, SHALE_ERRMSG_LEN,
             "the leader named by %.60s (%.60s) does not answer as leader: %.60s", addrs, hint,
             lrv == SHALE_OK ? "it is not (any more)" : lerr);
    return 0;
}

/* addrs ("a,b,c") rotated left by k entries into out ("b,c,a" for k = 1);
 * addrs itself when it does not fit. */
static const char *rotate_addrs(const char *addrs, unsigned k, char *out, size_t len)
{
    size_t n = 1, alen = strlen(addrs);
    for (const char *p = addrs; *p != '\0'; p++)
        n += *p == ',';
    if (n < 2 || alen >= len)
        return addrs;
    const char *start = addrs;
    for (unsigned i = 0; i < k % n; i++)
        start = strchr(start, ',') + 1;
    if (start == addrs)
        return addrs;
    size_t head = (size_t)(start - addrs) - 1; /* the entries before start, without the comma */
    snprintf(out, len, "%s,%.*s", start, (int)head, addrs);
    return out;
}

int group_leader_status(const cmd_t *cmd, const char *addrs, Shale__StatusResponse **st, char *err)
{
    uint64_t deadline = now_ms() + (cmd->timeout_ms ? cmd->timeout_ms : 5000);
    char rot[2048];
    *st = NULL;
    /* Each round starts at the next member: one cut off from its group
     * answers (a candidate, naming no leader) and would otherwise be asked
     * again every round while the others have a leader. */
    for (unsigned round = 0;; round++) {
        int rv;
        if (leader_round(cmd, rotate_addrs(addrs, round, rot, sizeof(rot)), st, &rv, err))
            return SHALE_OK;
        if (*st != NULL) {
            shale__status_response__free_unpacked(*st, NULL);
            *st = NULL;
        }
        /* A down node fails at once; an election in progress is waited out. */
        if (rv != SHALE_EUNAVAILABLE || now_ms() >= deadline)
            return rv;
        sleep_ms(100);
    }
}

const char *member_kind(const Shale__Member *m)
{
    if (!m->has_role || m->role == SHALE__MEMBER_ROLE__ROLE_VOTER)
        return "voter";
    return m->role == SHALE__MEMBER_ROLE__ROLE_STANDBY ? "replica" : "spare";
}

/* ---- Member tables (status of a group, direct or through the map) -----------*/

const char *row_health(const member_row_t *r)
{
    if (r->probe == NULL || r->probe->rv != SHALE_OK)
        return "down";
    const Shale__StatusResponse *st = r->probe->st;
    if (r->expect_group != 0 && st->group_id != r->expect_group)
        return "wrong-group";
    if (st->role != NULL && strcmp(st->role, "candidate") == 0)
        return "no-leader";
    if (r->lag > CTL_LAG_WARN)
        return "lagging";
    if (st->has_staleness_ms && st->staleness_ms > CTL_STALE_WARN_MS)
        return "stale";
    return "ok";
}

const char *row_ready(const member_row_t *r)
{
    const probe_t *p = r->probe;
    if (p == NULL || p->health_status == 0)
        return "-";
    if (p->health_status == 200)
        return "ready";
    return p->health_status == 503 ? "not-ready" : "?";
}

/* " (not ready: why)" / " (/health: why)" after the health word, or "". */
static void ready_note(const member_row_t *r, char *buf, size_t len)
{
    const probe_t *p = r->probe;
    buf[0] = '\0';
    if (p == NULL || p->health_status == 0 || p->health_status == 200)
        return;
    if (p->health_status == 503)
        snprintf(buf, len, " (not ready: %s)", p->health);
    else if (p->health_status < 0)
        snprintf(buf, len, " (/health: %s)", p->health);
    else
        snprintf(buf, len, " (/health answered %d %s)", p->health_status, p->health);
}

void rows_compute_lag(member_row_t *rows, size_t n)
{
    /* Lag is measured from the leader's applied index when the leader
     * answered, else from the most advanced member's. */
    uint64_t ref = 0;
    int have_leader = 0;
    for (size_t i = 0; i < n; i++) {
        const probe_t *p = rows[i].probe;
        if (p == NULL || p->rv != SHALE_OK)
            continue;
        if (is_leader(p->st) && !have_leader) {
            ref = p->st->applied_index;
            have_leader = 1;
        } else if (!have_leader && p->st->applied_index > ref) {
            ref = p->st->applied_index;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const probe_t *p = rows[i].probe;
        rows[i].lag = 0;
        if (p != NULL && p->rv == SHALE_OK && p->st->applied_index < ref)
            rows[i].lag = ref - p->st->applied_index;
    }
}

/* The CLOCK column: this member's offset to the leader +- uncertainty in
 * ms ("+2000~2ms"), "-" on the leader or while no sample is in use. */
static void clock_cell(const Shale__StatusResponse *st, char *buf, size_t len)
{
    if (!st->has_clock_offset_us) {
        snprintf(buf, len, "-");
        return;
    }
    snprintf(buf, len, "%+" PRId64 "~%" PRIu64 "ms", st->clock_offset_us / 1000,
             (st->clock_uncertainty_us + 999) / 1000);
}

void rows_print(const member_row_t *rows, size_t n, const char *indent)
{
    printf("%s%-4s %-8s %-10s %-22s %10s %8s %10s %14s  %-9s  %s\n", indent, "ID", "KIND",
           "ROLE", "CLIENT", "APPLIED", "LAG", "STALENESS", "CLOCK", "READY", "HEALTH");
    for (size_t i = 0; i < n; i++) {
        const member_row_t *r = &rows[i];
        const probe_t *p = r->probe;
        const char *health = row_health(r);
        char note[SHALE_ERRMSG_LEN + 32] = "";
        if (r->note != NULL)
            snprintf(note, sizeof(note), " (%s)", r->note);
        if (p == NULL || p->rv != SHALE_OK) {
            printf("%s%-4" PRIu64 " %-8s %-10s %-22s %10s %8s %10s %14s  %-9s  %s: %s%s\n",
                   indent, r->m->id, member_kind(r->m), "-", r->m->client_addr, "-", "-", "-", "-",
                   "-", health,
                   p != NULL ? p->err : "not asked", note);
            continue;
        }
        const Shale__StatusResponse *st = p->st;
        char stal[32];
        if (st->has_staleness_ms)
            snprintf(stal, sizeof(stal), "%" PRIu64 "ms", st->staleness_ms);
        else
            snprintf(stal, sizeof(stal), "-");
        char rnote[300];
        ready_note(r, rnote, sizeof(rnote));
        char clk[48];
        clock_cell(st, clk, sizeof(clk));
        printf("%s%-4" PRIu64 " %-8s %-10s %-22s %10" PRIu64 " %8" PRIu64 " %10s %14s  %-9s  "
               "%s%s%s\n",
               indent, r->m->id, member_kind(r->m), st->role ? st->role : "?", r->m->client_addr,
               st->applied_index, r->lag, stal, clk, row_ready(r), health, rnote, note);
    }
}

void rows_json(const member_row_t *rows, size_t n)
{
    printf("[");
    for (size_t i = 0; i < n; i++) {
        const member_row_t *r = &rows[i];
        const probe_t *p = r->probe;
        printf("%s{\"id\":%" PRIu64 ",\"kind\":\"%s\",\"client\":", i ? "," : "", r->m->id,
               member_kind(r->m));
        ctl_json_str(stdout, r->m->client_addr);
        printf(",\"raft\":");
        ctl_json_str(stdout, r->m->raft_addr);
        printf(",\"health\":\"%s\"", row_health(r));
        if (r->note != NULL) {
            printf(",\"note\":");
            ctl_json_str(stdout, r->note);
        }
        printf(",\"http\":");
        if (p != NULL && p->http[0] != '\0')
            ctl_json_str(stdout, p->http);
        else
            printf("null");
        printf(",\"ready\":%s", p == NULL || p->health_status == 0 ? "null"
                                : p->health_status == 200          ? "true"
                                                                   : "false");
        if (p != NULL && p->health_status != 0 && p->health_status != 200) {
            printf(",\"ready_reason\":");
            ctl_json_str(stdout, p->health);
        }
        if (p == NULL || p->rv != SHALE_OK) {
            printf(",\"up\":false,\"error\":");
            ctl_json_str(stdout, p != NULL ? p->err : "not asked");
            printf("}");
            continue;
        }
        const Shale__StatusResponse *st = p->st;
        printf(",\"up\":true,\"role\":");
        ctl_json_str(stdout, st->role ? st->role : "");
        printf(",\"term\":%" PRIu64 ",\"commit\":%" PRIu64 ",\"applied\":%" PRIu64
               ",\"lag\":%" PRIu64 ",\"staleness_ms\":",
               st->term, st->commit_index, st->applied_index, r->lag);
        if (st->has_staleness_ms)
            printf("%" PRIu64, st->staleness_ms);
        else
            printf("null");
        if (st->has_clock_offset_us)
            printf(",\"clock_offset_us\":%" PRId64 ",\"clock_uncertainty_us\":%" PRIu64
                   ",\"clock_sample_age_ms\":%" PRIu64,
                   st->clock_offset_us, st->clock_uncertainty_us, st->clock_sample_age_ms);
        if (st->clock_problem != NULL && st->clock_problem[0] != '\0') {
            printf(",\"clock_problem\":");
            ctl_json_str(stdout, st->clock_problem);
        }
        if (st->mode != NULL && strcmp(st->mode, "data") == 0)
            printf(",\"group_id\":%" PRIu64 ",\"map_epoch\":%" PRIu64, st->group_id, st->map_epoch);
        else if (st->mode != NULL)
            printf(",\"map_epoch\":%" PRIu64, st->map_epoch);
        printf("}");
    }
    printf("]");
}

/* ---- Direct group verbs (--addr) ---------------------------------------------*/

int run_node_status(shale_client_t *c, const cmd_t *cmd)
{
    char err[SHALE_ERRMSG_LEN];
    Shale__StatusResponse *first = NULL;
    shale_whoami_t who;
    int rv = node_status(c, &first, err);
    ctl_whoami(c, &who);
    if (rv != SHALE_OK)
        return ctl_error("status", rv, err, 0);
    size_t n = first->n_members;
    probe_t *probes = calloc(n ? n : 1, sizeof(*probes));
    member_row_t *rows = calloc(n ? n : 1, sizeof(*rows));
    if (probes == NULL || rows == NULL) {
        free(probes);
        free(rows);
        shale__status_response__free_unpacked(first, NULL);
        return ctl_say(EXIT_FAIL, "status", "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(probes[i].addr, sizeof(probes[i].addr), "%s", first->members[i]->client_addr);
        rows[i].m = first->members[i];
        rows[i].probe = &probes[i];
    }
    probe_all(cmd, probes, n);
    probe_health(cmd, probes, n);
    rows_compute_lag(rows, n);
    const char *mode = first->mode != NULL ? first->mode : "data";
    if (cmd->json) {
        printf("{\"cluster_id\":");
        ctl_json_str(stdout, first->cluster_id ? first->cluster_id : "");
        printf(",\"mode\":\"%s\",\"group_id\":%" PRIu64 ",\"map_epoch\":%" PRIu64, mode,
               first->group_id, first->map_epoch);
        if (first->has_slots_owned)
            printf(",\"slots_owned\":%u", first->slots_owned);
        printf(",\"leader_id\":%" PRIu64 ",\"term\":%" PRIu64 ",\"auth\":", first->leader_id,
               first->term);
        ctl_whoami_json(&who);
        printf(",\"members\":");
        rows_json(rows, n);
        printf("}\n");
    } else {
        printf("cluster %s, ", first->cluster_id ? first->cluster_id : "?");
        if (strcmp(mode, "meta") == 0)
            printf("meta group (map epoch %" PRIu64 "), ", first->map_epoch);
        else if (first->group_id != 0)
            printf("group %" PRIu64 " (ownership epoch %" PRIu64 ", %u slots owned), ",
                   first->group_id, first->map_epoch, first->slots_owned);
        printf("leader %" PRIu64 ", term %" PRIu64 "\n", first->leader_id, first->term);
        ctl_whoami_print(&who);
        rows_print(rows, n, "");
    }
    probe_free(probes, n);
    free(probes);
    free(rows);
    shale__status_response__free_unpacked(first, NULL);
    return EXIT_OKAY;
}

const flag_spec_t member_add_flags[] = {
    {"replica", NULL, "add a read replica (receives the log, never votes)", 0},
    {NULL, NULL, NULL, 0},
};

int check_ids(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t id;
    for (int i = 0; i < cmd->npos; i++)
        if (ctl_parse_id(cmd->pos[i], &id) != 0) {
            snprintf(err, errlen, "ids are positive integers, not '%s'", cmd->pos[i]);
            return -1;
        }
    return 0;
}

int check_member_add(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t id;
    if (ctl_parse_id(cmd->pos[0], &id) != 0) {
        snprintf(err, errlen, "ID must be a positive integer, not '%s'", cmd->pos[0]);
        return -1;
    }
    for (int i = 1; i < 3; i++)
        if (!ctl_is_hostport(cmd->pos[i])) {
            snprintf(err, errlen, "'%s' is not HOST:PORT", cmd->pos[i]);
            return -1;
        }
    return 0;
}

static int admin_done(const char *verb, const cmd_t *cmd, int rv, const char *msg)
{
    if (rv != SHALE_OK)
        return ctl_error(verb, rv, msg, 1);
    if (cmd->json) {
        printf("{\"ok\":true,\"message\":");
        ctl_json_str(stdout, msg);
        printf("}\n");
    } else {
        printf("OK %s\n", msg);
    }
    return EXIT_OKAY;
}

int run_member_add(shale_client_t *c, const cmd_t *cmd)
{
    uint64_t id = 0;
    char msg[SHALE_ERRMSG_LEN] = "";
    ctl_parse_id(cmd->pos[0], &id);
    int rv = shale_member_add(c, id, cmd->pos[1], cmd->pos[2], cmd->set[0], msg);
    return admin_done("member add", cmd, rv, rv == SHALE_OK ? msg : shale_errmsg(c));
}

int run_member_remove(shale_client_t *c, const cmd_t *cmd)
{
    uint64_t id = 0;
    char msg[SHALE_ERRMSG_LEN] = "";
    ctl_parse_id(cmd->pos[0], &id);
    int rv = shale_member_remove(c, id, msg);
    return admin_done("member remove", cmd, rv, rv == SHALE_OK ? msg : shale_errmsg(c));
}

int run_node_leader_transfer(shale_client_t *c, const cmd_t *cmd)
{
    uint64_t id = 0;
    char msg[SHALE_ERRMSG_LEN] = "";
    if (cmd->npos > 0)
        ctl_parse_id(cmd->pos[0], &id);
    int rv = shale_leader_transfer(c, id, msg);
    return admin_done("leader transfer", cmd, rv, rv == SHALE_OK ? msg : shale_errmsg(c));
}
