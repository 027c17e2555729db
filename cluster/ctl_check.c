/* shalectl check: the replica consistency check (docs/operations.md,
 * "Consistency check").
 *
 * What this file owns: for each shard group (or the one named), starting a
 * check at the group's leader (CHECK start: a check entry in the group's
 * log), waiting for every member — voters and read replicas, as the
 * leader's member table lists them — to finish summing its rows at that
 * entry's index, fetching each member's per-slot checksums (CHECK without
 * start) and comparing them.
 *
 * Rules:
 *  - Members are compared slot by slot on (data checksum, data keys,
 *    session checksum, session rows); a slot a member holds no row of
 *    counts as all zero. The value most members have is the reference (a
 *    tie: the leader's); a member with another value diverges in that
 *    slot. Every diverging (slot, member) is printed.
 *  - Exit: 5 when any group diverges; else 3 when a member could not be
 *    compared (down, no result within --wait, its check failed) or a group
 *    had no leader; else 0.
 *  - Never writes anything but the check entry itself. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmap.h"
#include "ctl.h"
#include "frame.h"
#include "shale_internal.h"

#define CHECK_WAIT_S 600 /* default --wait */
#define CHECK_POLL_MS 200
#define CHECK_START_TRIES 5

const flag_spec_t check_flags[] = {
    {"slots", NULL, "also list every slot's keys and checksum", 0},
    {"rate", "BYTES",
     "read rate of the check on each member, bytes/s (default: each member's --check-rate-mb, 64 "
     "MiB/s)",
     0},
    {"wait", "SECONDS", "how long to wait for the members' results (default 600)", 0},
    {NULL, NULL, NULL, 0},
};
enum { F_SLOTS, F_RATE, F_WAIT };

typedef struct mres {
    const Shale__Member *m;
    Shale__CheckResponse *r; /* DONE at the check's index, else NULL */
    char why[256];           /* why r is NULL */
} mres_t;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void nap_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int check_check(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t v;
    if (cmd->npos == 1 && ctl_parse_id(cmd->pos[0], &v) != 0) {
        snprintf(err, errlen, "GROUP must be a group id > 0, not '%s'", cmd->pos[0]);
        return -1;
    }
    if (cmd->set[F_RATE] && (ctl_parse_u64(cmd->val[F_RATE], &v) != 0 || v == 0)) {
        snprintf(err, errlen, "--rate must be bytes per second > 0, not '%s'", cmd->val[F_RATE]);
        return -1;
    }
    if (cmd->set[F_WAIT] && (ctl_parse_u64(cmd->val[F_WAIT], &v) != 0 || v == 0)) {
        snprintf(err, errlen, "--wait must be seconds > 0, not '%s'", cmd->val[F_WAIT]);
        return -1;
    }
    return 0;
}

/* One CHECK to c. *out: free with shale__check_response__free_unpacked. */
static int check_call(shale_client_t *c, int start, uint64_t rate, Shale__CheckResponse **out,
                      char *err)
{
    Shale__CheckRequest q = SHALE__CHECK_REQUEST__INIT;
    q.has_start = 1;
    q.start = start;
    q.has_rate_bytes_per_s = rate > 0;
    q.rate_bytes_per_s = rate;
    uint8_t buf[64];
    size_t len = shale__check_request__pack(&q, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    *out = NULL;
    err[0] = '\0';
    int rv =
        shale_call(c, SHALE_MSG_CHECK_REQ, SHALE_MSG_CHECK_RESP, buf, len, &resp, &rlen, err, NULL);
    if (rv != SHALE_OK)
        return rv;
    *out = shale__check_response__unpack(NULL, rlen, resp);
    free(resp);
    if (*out == NULL) {
        snprintf(err, SHALE_ERRMSG_LEN, "malformed CHECK answer");
        return SHALE_EPROTO;
    }
    return SHALE_OK;
}

/* Start a check at the leader of the group whose members are at addrs:
 * *index gets the check entry's index, *st the leader's status (its member
 * table). */
static int start_check(const cmd_t *cmd, const char *addrs, uint64_t rate, uint64_t *index,
                       Shale__StatusResponse **st, char *err)
{
    int rv = SHALE_EUNAVAILABLE;
    for (int attempt = 0; attempt < CHECK_START_TRIES; attempt++) {
        if (attempt > 0)
            nap_ms(500);
        rv = group_leader_status(cmd, addrs, st, err);
        if (rv != SHALE_OK)
            continue;
        shale_client_t *c = NULL;
        shale_options_t o;
        ctl_options(cmd, 15000, &o);
        rv = shale_connect((*st)->address, &o, &c, err);
        if (rv == SHALE_OK) {
            Shale__CheckResponse *r = NULL;
            rv = check_call(c, 1, rate, &r, err);
            shale_close(c);
            if (rv == SHALE_OK) {
                *index = r->index;
                shale__check_response__free_unpacked(r, NULL);
                return SHALE_OK;
            }
        }
        shale__status_response__free_unpacked(*st, NULL);
        *st = NULL;
        if (rv != SHALE_ENOTLEADER && rv != SHALE_EUNAVAILABLE && rv != SHALE_ETIMEOUT &&
            rv != SHALE_EIO)
            break;
    }
    return rv;
}

/* Wait for member m's result of the check at index. */
static void fetch_member(const cmd_t *cmd, mres_t *mr, uint64_t index, uint64_t deadline)
{
    shale_client_t *c = NULL;
    shale_options_t o;
    char err[SHALE_ERRMSG_LEN] = "";
    ctl_options(cmd, 15000, &o);
    int rv = SHALE_EUNAVAILABLE;
    while ((rv = shale_connect(mr->m->client_addr, &o, &c, err)) != SHALE_OK) {
        if (mono_ms() >= deadline) {
            snprintf(mr->why, sizeof(mr->why), "unreachable: %s: %.200s", shale_strerror(rv), err);
            return;
        }
        nap_ms(CHECK_POLL_MS * 5);
    }
    for (;;) {
        Shale__CheckResponse *r = NULL;
        rv = check_call(c, 0, 0, &r, err);
        if (rv == SHALE_OK) {
            uint64_t at = r->has_index ? r->index : 0;
            if (at == index && r->state == SHALE__CHECK_STATE__CHECK_DONE) {
                mr->r = r;
                break;
            }
            if (at == index && r->state == SHALE__CHECK_STATE__CHECK_FAILED) {
                snprintf(mr->why, sizeof(mr->why), "its check failed: %.200s",
                         r->error ? r->error : "?");
                shale__check_response__free_unpacked(r, NULL);
                break;
            }
            if (at > index) {
                snprintf(mr->why, sizeof(mr->why),
                         "a newer check (index %" PRIu64 ") replaced this one: run again", at);
                shale__check_response__free_unpacked(r, NULL);
                break;
            }
            shale__check_response__free_unpacked(r, NULL);
            snprintf(mr->why, sizeof(mr->why),
                     "no result within --wait (applied the check entry: %s)",
                     at == index ? "yes, still summing" : "not yet");
        } else {
            snprintf(mr->why, sizeof(mr->why), "CHECK failed: %s: %.200s", shale_strerror(rv), err);
        }
        if (mono_ms() >= deadline)
            break;
        nap_ms(CHECK_POLL_MS);
    }
    shale_close(c);
}

typedef struct sval {
    uint64_t data_sum, data_keys, sess_sum, sess_rows;
} sval_t;

static sval_t slot_val(const Shale__CheckResponse *r, uint32_t slot)
{
    sval_t v = {0, 0, 0, 0};
    size_t lo = 0, hi = r->n_slots;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const Shale__CheckSlot *e = r->slots[mid];
        if (e->slot == slot) {
            v.data_sum = e->data_sum;
            v.data_keys = e->data_keys;
            v.sess_sum = e->session_sum;
            v.sess_rows = e->session_rows;
            return v;
        }
        if (e->slot < slot)
            lo = mid + 1;
        else
            hi = mid;
    }
    return v;
}

static int sval_eq(sval_t a, sval_t b)
{
    return a.data_sum == b.data_sum && a.data_keys == b.data_keys && a.sess_sum == b.sess_sum &&
           a.sess_rows == b.sess_rows;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The slots any member holds rows of, ascending, without repeats. */
static uint32_t *slot_union(const mres_t *mr, size_t n, size_t *nout)
{
    size_t cap = 0;
    for (size_t i = 0; i < n; i++)
        if (mr[i].r != NULL)
            cap += mr[i].r->n_slots;
    uint32_t *u = malloc((cap ? cap : 1) * sizeof(*u));
    size_t k = 0;
    if (u == NULL) {
        *nout = 0;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; mr[i].r != NULL && j < mr[i].r->n_slots; j++)
            u[k++] = mr[i].r->slots[j]->slot;
    qsort(u, k, sizeof(*u), cmp_u32);
    size_t w = 0;
    for (size_t i = 0; i < k; i++)
        if (w == 0 || u[w - 1] != u[i])
            u[w++] = u[i];
    *nout = w;
    return u;
}

static const char *role_of(const Shale__Member *m)
{
    return member_kind(m);
}

/* Compare and print one group. Returns the number of diverging
 * (slot, member) pairs. */
static size_t compare_group(const cmd_t *cmd, uint64_t gid, uint64_t index, uint64_t leader_id,
                            mres_t *mr, size_t n, int *first_json)
{
    size_t nslots = 0, diverged = 0, missing = 0, nd_slots = 0;
    uint32_t *slots = slot_union(mr, n, &nslots);
    uint64_t keys = 0;
    if (slots == NULL) {
        fprintf(stderr, "shalectl: check: group %" PRIu64 ": out of memory comparing\n", gid);
        return SIZE_MAX;
    }
    for (size_t i = 0; i < n; i++)
        if (mr[i].r == NULL)
            missing++;
    if (cmd->json) {
        printf("%s{\"group\":%" PRIu64 ",\"index\":%" PRIu64 ",\"slots\":[", *first_json ? "" : ",",
               gid, index);
        *first_json = 0;
    }
    int jfirst = 1;
    for (size_t si = 0; si < nslots; si++) {
        uint32_t slot = slots[si];
        /* The reference: the value most members have (tie: the leader's). */
        sval_t ref = {0, 0, 0, 0};
        size_t best = 0;
        int ref_leader = 0;
        for (size_t i = 0; i < n; i++) {
            if (mr[i].r == NULL)
                continue;
            sval_t v = slot_val(mr[i].r, slot);
            size_t cnt = 0;
            for (size_t j = 0; j < n; j++)
                if (mr[j].r != NULL && sval_eq(v, slot_val(mr[j].r, slot)))
                    cnt++;
            int is_leader = mr[i].m->id == leader_id;
            if (cnt > best || (cnt == best && is_leader && !ref_leader)) {
                best = cnt;
                ref = v;
                ref_leader = is_leader;
            }
        }
        keys += ref.data_keys;
        int slot_bad = 0;
        for (size_t i = 0; i < n; i++) {
            if (mr[i].r == NULL)
                continue;
            sval_t v = slot_val(mr[i].r, slot);
            if (sval_eq(v, ref))
                continue;
            slot_bad = 1;
            diverged++;
            const char *what = v.data_sum != ref.data_sum || v.data_keys != ref.data_keys
                                   ? (v.sess_sum != ref.sess_sum || v.sess_rows != ref.sess_rows
                                          ? "data and sessions"
                                          : "data")
                                   : "sessions";
            if (cmd->json) {
                printf("%s{\"slot\":%u,\"node\":%" PRIu64 ",\"kind\":\"%s\",\"differs\":\"%s\","
                       "\"keys\":%" PRIu64 ",\"data_sum\":\"%016" PRIx64
                       "\",\"expect_keys\":%" PRIu64 ",\"expect_data_sum\":\"%016" PRIx64 "\"}",
                       jfirst ? "" : ",", slot, mr[i].m->id, role_of(mr[i].m), what, v.data_keys,
                       v.data_sum, ref.data_keys, ref.data_sum);
                jfirst = 0;
            } else {
                printf("  slot %u: node %" PRIu64 " (%s, %s) differs in %s: %" PRIu64
                       " keys, data %016" PRIx64 ", sessions %016" PRIx64
                       "; %zu other member(s): %" PRIu64 " keys, data %016" PRIx64
                       ", sessions %016" PRIx64 "\n",
                       slot, mr[i].m->id, role_of(mr[i].m), mr[i].m->client_addr, what, v.data_keys,
                       v.data_sum, v.sess_sum, best, ref.data_keys, ref.data_sum, ref.sess_sum);
            }
        }
        nd_slots += slot_bad;
        if (cmd->set[F_SLOTS] && !cmd->json)
            printf("  slot %u: %" PRIu64 " keys, data %016" PRIx64 ", sessions %016" PRIx64
                   ": %s\n",
                   slot, ref.data_keys, ref.data_sum, ref.sess_sum,
                   slot_bad ? "DIVERGENT" : "same on every member compared");
    }
    free(slots);
    if (cmd->json) {
        printf("],\"members\":[");
        for (size_t i = 0; i < n; i++) {
            printf("%s{\"id\":%" PRIu64 ",\"kind\":\"%s\",\"addr\":", i ? "," : "", mr[i].m->id,
                   role_of(mr[i].m));
            ctl_json_str(stdout, mr[i].m->client_addr);
            if (mr[i].r != NULL)
                printf(",\"compared\":true,\"duration_ms\":%" PRIu64 ",\"rows\":%" PRIu64 "}",
                       mr[i].r->duration_ms, mr[i].r->rows);
            else {
                printf(",\"compared\":false,\"error\":");
                ctl_json_str(stdout, mr[i].why);
                printf("}");
            }
        }
        printf("],\"keys\":%" PRIu64 ",\"divergent_slots\":%zu,\"ok\":%s}", keys, nd_slots,
               diverged == 0 && missing == 0 ? "true" : "false");
        return diverged;
    }
    for (size_t i = 0; i < n; i++)
        if (mr[i].r == NULL)
            printf("  node %" PRIu64 " (%s, %s) not compared: %s\n", mr[i].m->id, role_of(mr[i].m),
                   mr[i].m->client_addr, mr[i].why);
    uint64_t maxms = 0;
    for (size_t i = 0; i < n; i++)
        if (mr[i].r != NULL && mr[i].r->duration_ms > maxms)
            maxms = mr[i].r->duration_ms;
    if (diverged > 0)
        printf("group %" PRIu64 ": DIVERGENT at index %" PRIu64 ": %zu slot(s), %zu member "
               "value(s) differ (%zu of %zu members compared)\n",
               gid, index, nd_slots, diverged, n - missing, n);
    else if (missing > 0)
        printf("group %" PRIu64 ": INCOMPLETE at index %" PRIu64 ": %zu of %zu members compared, "
               "no divergence among them\n",
               gid, index, n - missing, n);
    else
        printf("group %" PRIu64 ": OK at index %" PRIu64 ": %zu members agree on %zu slot(s), "
               "%" PRIu64 " keys (slowest member %" PRIu64 " ms)\n",
               gid, index, n, nslots, keys, maxms);
    return diverged;
}

/* One group: start, wait, compare. Returns the exit code for it. */
static int check_group(const cmd_t *cmd, const Shale__ShardGroup *g, uint64_t rate, uint64_t wait_s,
                       int *first_json)
{
    char addrs[4096] = "", err[SHALE_ERRMSG_LEN] = "";
    size_t at = 0;
    for (size_t i = 0; i < g->n_members && at < sizeof(addrs); i++)
        at += (size_t)snprintf(addrs + at, sizeof(addrs) - at, "%s%s", i ? "," : "",
                               g->members[i]->client_addr);
    if (at >= sizeof(addrs))
        return ctl_say(EXIT_FAIL, "check", "group %" PRIu64 ": member list too long", g->id);
    Shale__StatusResponse *st = NULL;
    uint64_t index = 0;
    int rv = start_check(cmd, addrs, rate, &index, &st, err);
    if (rv != SHALE_OK) {
        if (cmd->json) {
            printf("%s{\"group\":%" PRIu64 ",\"ok\":false,\"error\":", *first_json ? "" : ",",
                   g->id);
            *first_json = 0;
            ctl_json_str(stdout, err);
            printf("}");
        } else {
            printf("group %" PRIu64 ": NOT CHECKED: cannot start a check: %s: %s\n", g->id,
                   shale_strerror(rv), err);
        }
        return EXIT_UNREACHABLE;
    }
    size_t n = 0;
    mres_t *mr = calloc(st->n_members ? st->n_members : 1, sizeof(*mr));
    if (mr == NULL) {
        shale__status_response__free_unpacked(st, NULL);
        return ctl_say(EXIT_FAIL, "check", "out of memory");
    }
    for (size_t i = 0; i < st->n_members; i++)
        if (strcmp(member_kind(st->members[i]), "spare") != 0) /* spares apply no log */
            mr[n++].m = st->members[i];
    uint64_t deadline = mono_ms() + wait_s * 1000u;
    for (size_t i = 0; i < n; i++)
        fetch_member(cmd, &mr[i], index, deadline);
    size_t missing = 0;
    for (size_t i = 0; i < n; i++)
        missing += mr[i].r == NULL;
    size_t diverged = compare_group(cmd, g->id, index, st->node_id, mr, n, first_json);
    for (size_t i = 0; i < n; i++)
        if (mr[i].r != NULL)
            shale__check_response__free_unpacked(mr[i].r, NULL);
    free(mr);
    shale__status_response__free_unpacked(st, NULL);
    if (diverged == SIZE_MAX)
        return EXIT_FAIL;
    return diverged > 0 ? EXIT_DIVERGED : missing > 0 ? EXIT_UNREACHABLE : EXIT_OKAY;
}

int run_check(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "check";
    char err[SHALE_ERRMSG_LEN];
    uint64_t gid = 0, rate = 0, wait_s = CHECK_WAIT_S;
    if (cmd->npos == 1)
        ctl_parse_id(cmd->pos[0], &gid);
    if (cmd->set[F_RATE])
        ctl_parse_u64(cmd->val[F_RATE], &rate);
    if (cmd->set[F_WAIT])
        ctl_parse_u64(cmd->val[F_WAIT], &wait_s);
    meta_t m;
    int code = meta_open(cmd, verb, &m);
    if (code != 0)
        return code;
    Shale__ClusterMap *map = NULL;
    int rv = map_get(&m, &map, err);
    meta_close(&m);
    if (rv != SHALE_OK)
        return ctl_error(verb, rv, err, 0);
    int worst = EXIT_OKAY, found = 0, first_json = 1;
    if (cmd->json)
        printf("{\"groups\":[");
    for (size_t i = 0; i < map->n_groups; i++) {
        const Shale__ShardGroup *g = map->groups[i];
        if (gid != 0 && g->id != gid)
            continue;
        found = 1;
        int gc = check_group(cmd, g, rate, wait_s, &first_json);
        fflush(stdout);
        if (gc == EXIT_DIVERGED || (gc != EXIT_OKAY && worst != EXIT_DIVERGED &&
                                    (worst == EXIT_OKAY || gc == EXIT_UNREACHABLE)))
            worst = gc;
    }
    if (cmd->json)
        printf("]}\n");
    cmap_free(map);
    if (!found) {
        if (gid != 0)
            return ctl_say(EXIT_FAIL, verb, "no group %" PRIu64 " in the cluster map", gid);
        printf("no shard groups in the cluster map\n");
    }
    return worst;
}
