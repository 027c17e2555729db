/* shalectl: the cluster map — reading it, changing it, printing it.
 *
 * Every change is read-modify-CAS (DESIGN §5): read the map at epoch E,
 * edit a copy, check it with cmap_validate_change, MAP_CAS it with expect_epoch E.
 * The meta leader commits it as E+1 or answers CAS_FAILED with the epoch it
 * has. Rules map_update follows:
 *  - on CAS_FAILED it re-reads and re-runs the edit, because someone else's
 *    change may leave ours still meaningful (another group was added) or
 *    not (our group was added by someone else): the edit decides, on the
 *    new map, each time;
 *  - it gives up after CTL_CAS_ATTEMPTS conflicts and names the epoch;
 *  - each attempt carries a Session (random client id of this run, seq 1,
 *    2, ...), so a retry that libshale makes after a lost answer or a meta
 *    leader change is answered with the first outcome, never applied twice;
 *  - the map is validated here before it is sent, so a refusal names the
 *    rule instead of coming back as a bare INVALID;
 *  - MAP_CAS.force (a slot changes owner without a migration, its data
 *    left behind) is sent only by slot assign, only with its --force flag
 *    (meta_t.force), and the meta group still requires an admin. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale_internal.h"
#include "cmap.h"
#include "ctl.h"
#include "frame.h"
#include "keyhash.h"

#define CTL_CAS_ATTEMPTS 5

int meta_open(const cmd_t *cmd, const char *verb, meta_t *m)
{
    memset(m, 0, sizeof(*m));
    m->client_id = ctl_random_id();
    int code = ctl_connect(cmd, verb, cmd->meta, 5000, &m->c);
    if (code != 0)
        return code;
    /* Any member answers MAP_GET from the map it has applied, and a lagging
     * one would cost a change one CAS conflict: talk to the leader, with the
     * other addresses behind it for when leadership moves. */
    Shale__StatusResponse *st = NULL;
    char err[SHALE_ERRMSG_LEN];
    if (node_status(m->c, &st, err) != SHALE_OK)
        return 0;
    if (st->role != NULL && strcmp(st->role, "leader") != 0 && st->leader != NULL &&
        st->leader[0] != '\0' && strlen(st->leader) + strlen(cmd->meta) + 2 < 2048) {
        char list[2048];
        snprintf(list, sizeof(list), "%.127s,%.1900s", st->leader, cmd->meta);
        shale_options_t o;
        shale_client_t *c = NULL;
        ctl_options(cmd, 5000, &o);
        if (shale_connect(list, &o, &c, err) == SHALE_OK) {
            shale_close(m->c);
            m->c = c;
        }
    }
    shale__status_response__free_unpacked(st, NULL);
    return 0;
}

void meta_close(meta_t *m)
{
    if (m->c != NULL)
        shale_close(m->c);
    m->c = NULL;
}

/* A request the meta group does not understand comes from a node that is
 * not a meta member: say so. */
static void hint_not_meta(int rv, char *err)
{
    if (rv == SHALE_EPROTO || rv == SHALE_EINVAL) {
        size_t n = strlen(err);
        snprintf(err + n, SHALE_ERRMSG_LEN - n, " (are the --meta addresses meta group members?)");
    }
}

int map_get(meta_t *m, Shale__ClusterMap **out, char *err)
{
    return map_get_min(m, 0, out, err);
}

int map_get_min(meta_t *m, uint64_t min_epoch, Shale__ClusterMap **out, char *err)
{
    Shale__MapGetRequest rq = SHALE__MAP_GET_REQUEST__INIT;
    /* A member answers a known_epoch below its own at once, else waits for
     * a newer map (long-poll): known = min - 1 waits out a lagging member. */
    rq.has_known_epoch = 1;
    rq.known_epoch = min_epoch > 0 ? min_epoch - 1 : 0;
    rq.has_wait_ms = 1;
    rq.wait_ms = min_epoch > 0 ? CTL_MAP_WAIT_MS : 0;
    uint8_t buf[32];
    size_t len = shale__map_get_request__pack(&rq, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    *out = NULL;
    int rv = shale_call(m->c, SHALE_MSG_MAP_GET_REQ, SHALE_MSG_MAP_RESP, buf, len, &resp, &rlen,
                        err, NULL);
    if (rv != SHALE_OK) {
        hint_not_meta(rv, err);
        return rv;
    }
    Shale__MapResponse *r = shale__map_response__unpack(NULL, rlen, resp);
    free(resp);
    if (r == NULL || r->map == NULL) {
        if (r != NULL)
            shale__map_response__free_unpacked(r, NULL);
        snprintf(err, SHALE_ERRMSG_LEN, "malformed MAP_RESP answer");
        return SHALE_EPROTO;
    }
    *out = cmap_copy(r->map);
    shale__map_response__free_unpacked(r, NULL);
    if (*out == NULL) {
        snprintf(err, SHALE_ERRMSG_LEN, "out of memory");
        return SHALE_ENOMEM;
    }
    return SHALE_OK;
}

int map_cas(meta_t *m, uint64_t expect, const Shale__ClusterMap *next, const char *note,
            Shale__ClusterMap **out, uint64_t *cur_epoch, char *err)
{
    Shale__Session sess = SHALE__SESSION__INIT;
    sess.client_id = m->client_id;
    sess.seq = ++m->seq;
    Shale__MapCasRequest rq = SHALE__MAP_CAS_REQUEST__INIT;
    rq.expect_epoch = expect;
    rq.map = (Shale__ClusterMap *)next; /* only read by pack */
    rq.session = &sess;
    rq.note = (char *)note;
    if (m->force) {
        rq.has_force = 1;
        rq.force = 1;
    }
    size_t len = shale__map_cas_request__get_packed_size(&rq);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        snprintf(err, SHALE_ERRMSG_LEN, "out of memory");
        return SHALE_ENOMEM;
    }
    shale__map_cas_request__pack(&rq, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    uint64_t epoch = 0;
    if (out != NULL)
        *out = NULL;
    int rv = shale_call(m->c, SHALE_MSG_MAP_CAS_REQ, SHALE_MSG_MAP_RESP, buf, len, &resp, &rlen,
                        err, &epoch);
    free(buf);
    if (cur_epoch != NULL)
        *cur_epoch = epoch;
    if (rv != SHALE_OK) {
        if (rv != SHALE_ECASFAILED)
            hint_not_meta(rv, err);
        return rv;
    }
    Shale__MapResponse *r = shale__map_response__unpack(NULL, rlen, resp);
    free(resp);
    if (r == NULL || r->map == NULL) {
        if (r != NULL)
            shale__map_response__free_unpacked(r, NULL);
        snprintf(err, SHALE_ERRMSG_LEN, "malformed MAP_RESP answer (the change was applied)");
        return SHALE_EPROTO;
    }
    if (cur_epoch != NULL)
        *cur_epoch = r->map->epoch;
    if (out != NULL)
        *out = cmap_copy(r->map);
    shale__map_response__free_unpacked(r, NULL);
    return SHALE_OK;
}

/* The fields the meta leader sets itself are not sent back to it. */
static void clear_change_fields(Shale__ClusterMap *m)
{
    if (m->last_change != NULL)
        shale__session__free_unpacked(m->last_change, NULL);
    m->last_change = NULL;
    free(m->last_change_note);
    m->last_change_note = NULL;
}

static void print_done(const cmd_t *cmd, uint64_t epoch, int changed, const char *msg)
{
    if (cmd->json) {
        printf("{\"ok\":true,\"changed\":%s,\"epoch\":%" PRIu64 ",\"message\":",
               changed ? "true" : "false", epoch);
        ctl_json_str(stdout, msg);
        printf("}\n");
    } else if (changed) {
        printf("OK epoch %" PRIu64 ": %s\n", epoch, msg);
    } else {
        printf("OK nothing to change at epoch %" PRIu64 ": %s\n", epoch, msg);
    }
}

int map_update(const cmd_t *cmd, meta_t *m, const char *verb, const Shale__ClusterMap *cur0,
               map_edit_fn edit, void *arg, const char *note)
{
    char err[SHALE_ERRMSG_LEN], why[512];
    Shale__ClusterMap *cur = cur0 != NULL ? cmap_copy(cur0) : NULL;
    uint64_t first_epoch = 0, min_epoch = 0;
    for (int attempt = 1;; attempt++) {
        int rv;
        if (cur == NULL && (rv = map_get_min(m, min_epoch, &cur, err)) != SHALE_OK)
            return ctl_error(verb, rv, err, 1);
        if (first_epoch == 0)
            first_epoch = cur->epoch;
        if (cur->epoch == 0) {
            cmap_free(cur);
            return ctl_say(EXIT_REFUSED, verb, "there is no cluster map yet: run 'shalectl init'");
        }
        Shale__ClusterMap *next = cmap_copy(cur);
        if (next == NULL) {
            cmap_free(cur);
            return ctl_say(EXIT_FAIL, verb, "out of memory");
        }
        why[0] = '\0';
        map_edit_result_t er = edit(cur, next, arg, why, sizeof(why));
        if (er == EDIT_APPLY && cmap_validate_change(cur, next, m->force, why, sizeof(why)) != 0) {
            char tmp[512];
            snprintf(tmp, sizeof(tmp), "the new map would be invalid: %s", why);
            snprintf(why, sizeof(why), "%s", tmp);
            er = EDIT_REFUSE;
        }
        if (er != EDIT_APPLY) {
            uint64_t epoch = cur->epoch;
            cmap_free(next);
            cmap_free(cur);
            if (er == EDIT_NOOP) {
                print_done(cmd, epoch, 0, why);
                return EXIT_OKAY;
            }
            if (epoch != first_epoch)
                return ctl_say(EXIT_REFUSED, verb,
                               "%s (map epoch %" PRIu64 "; this command first read epoch %" PRIu64
                               ")",
                               why, epoch, first_epoch);
            return ctl_say(EXIT_REFUSED, verb, "%s (map epoch %" PRIu64 ")", why, epoch);
        }
        clear_change_fields(next);
        next->epoch = cur->epoch + 1;
        uint64_t now = 0, expect = cur->epoch;
        rv = map_cas(m, expect, next, note, NULL, &now, err);
        cmap_free(next);
        cmap_free(cur);
        cur = NULL;
        if (rv == SHALE_OK) {
            print_done(cmd, now, 1, note);
            return EXIT_OKAY;
        }
        if (rv != SHALE_ECASFAILED)
            return ctl_error(verb, rv, err, 1);
        if (attempt == CTL_CAS_ATTEMPTS)
            return ctl_say(EXIT_REFUSED, verb,
                           "the map kept changing under this change (last conflict: expected "
                           "epoch %" PRIu64 ", the map is at %" PRIu64 "); gave up after %d tries",
                           expect, now, attempt);
        fprintf(stderr,
                "shalectl: %s: the map changed (epoch %" PRIu64 " -> %" PRIu64
                ") while this change was being made; re-reading and trying again\n",
                verb, expect, now);
        min_epoch = now;
    }
}

/* ---- Edits --------------------------------------------------------------------*/

Shale__Member *member_dup(const Shale__Member *src)
{
    Shale__Member *m = malloc(sizeof(*m));
    if (m == NULL)
        return NULL;
    shale__member__init(m);
    m->id = src->id;
    m->raft_addr = strdup(src->raft_addr ? src->raft_addr : "");
    m->client_addr = strdup(src->client_addr ? src->client_addr : "");
    m->has_role = 1;
    m->role = src->has_role ? src->role : SHALE__MEMBER_ROLE__ROLE_VOTER;
    if (m->raft_addr == NULL || m->client_addr == NULL) {
        shale__member__free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

int group_set_members(Shale__ShardGroup *g, Shale__Member *const *members, size_t n)
{
    Shale__Member **arr = calloc(n ? n : 1, sizeof(Shale__Member *));
    if (arr == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((arr[i] = member_dup(members[i])) == NULL) {
            while (i-- > 0)
                shale__member__free_unpacked(arr[i], NULL);
            free(arr);
            return -1;
        }
    for (size_t i = 0; i < g->n_members; i++)
        shale__member__free_unpacked(g->members[i], NULL);
    free(g->members);
    g->members = arr;
    g->n_members = n;
    return 0;
}

int map_add_group(Shale__ClusterMap *m, uint64_t id, Shale__Member *const *members, size_t n)
{
    Shale__ShardGroup *g = malloc(sizeof(*g));
    if (g == NULL)
        return -1;
    shale__shard_group__init(g);
    g->id = id;
    Shale__ShardGroup **arr = realloc(m->groups, (m->n_groups + 1) * sizeof(Shale__ShardGroup *));
    if (arr == NULL || group_set_members(g, members, n) != 0) {
        if (arr != NULL)
            m->groups = arr;
        free(g);
        return -1;
    }
    m->groups = arr;
    m->groups[m->n_groups++] = g;
    return 0;
}

void map_remove_group(Shale__ClusterMap *m, uint64_t id)
{
    for (size_t i = 0; i < m->n_groups; i++) {
        if (m->groups[i]->id != id)
            continue;
        shale__shard_group__free_unpacked(m->groups[i], NULL);
        memmove(&m->groups[i], &m->groups[i + 1],
                (m->n_groups - i - 1) * sizeof(Shale__ShardGroup *));
        m->n_groups--;
        return;
    }
}

int member_same(const Shale__Member *a, const Shale__Member *b)
{
    return a->id == b->id && strcmp(a->raft_addr, b->raft_addr) == 0 &&
           strcmp(a->client_addr, b->client_addr) == 0 &&
           strcmp(member_kind(a), member_kind(b)) == 0;
}

int members_equal(Shale__Member *const *a, size_t na, Shale__Member *const *b, size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++) {
        size_t j = 0;
        while (j < nb && !member_same(a[i], b[j]))
            j++;
        if (j == nb)
            return 0;
    }
    return 1;
}

/* ---- Printing -----------------------------------------------------------------*/

void map_ranges(const Shale__ClusterMap *m,
                void (*fn)(uint32_t from, uint32_t to, uint64_t gid, void *arg), void *arg)
{
    size_t n = m->n_slot_group;
    for (size_t s = 0; s < n;) {
        size_t e = s;
        while (e + 1 < n && m->slot_group[e + 1] == m->slot_group[s])
            e++;
        fn((uint32_t)s, (uint32_t)e, m->slot_group[s], arg);
        s = e + 1;
    }
}

typedef struct range_buf {
    uint64_t gid;
    char *buf;
    size_t len, used;
    int truncated;
} range_buf_t;

static void range_append(uint32_t from, uint32_t to, uint64_t gid, void *arg)
{
    range_buf_t *rb = arg;
    if (gid != rb->gid || rb->truncated)
        return;
    char one[32];
    if (from == to)
        snprintf(one, sizeof(one), "%s%u", rb->used ? "," : "", from);
    else
        snprintf(one, sizeof(one), "%s%u-%u", rb->used ? "," : "", from, to);
    if (rb->used + strlen(one) + 4 >= rb->len) {
        snprintf(rb->buf + rb->used, rb->len - rb->used, ",...");
        rb->truncated = 1;
        return;
    }
    memcpy(rb->buf + rb->used, one, strlen(one) + 1);
    rb->used += strlen(one);
}

void map_group_ranges(const Shale__ClusterMap *m, uint64_t gid, char *buf, size_t len)
{
    range_buf_t rb = {gid, buf, len, 0, 0};
    snprintf(buf, len, "-");
    map_ranges(m, range_append, &rb);
}

static void range_print(uint32_t from, uint32_t to, uint64_t gid, void *arg)
{
    (void)arg;
    char r[32];
    snprintf(r, sizeof(r), "%u-%u", from, to);
    if (gid == 0)
        printf("  %-13s -> unassigned\n", r);
    else
        printf("  %-13s -> %" PRIu64 "\n", r, gid);
}

static void range_json(uint32_t from, uint32_t to, uint64_t gid, void *arg)
{
    int *first = arg;
    printf("%s{\"from\":%u,\"to\":%u,\"group\":%" PRIu64 "}", *first ? "" : ",", from, to, gid);
    *first = 0;
}

/* A backup's hold on migrations (ClusterMap.migration_hold, ctl_backup.c). */
static int map_held(const Shale__ClusterMap *map)
{
    return map->migration_hold != NULL && map->migration_hold[0] != '\0';
}

static void map_print(const cmd_t *cmd, const Shale__ClusterMap *map)
{
    if (cmd->json) {
        printf("{\"epoch\":%" PRIu64 ",\"cluster_id\":", map->epoch);
        ctl_json_str(stdout, map->cluster_id ? map->cluster_id : "");
        printf(",\"slots\":%u,\"last_change\":", map->slots);
        ctl_json_str(stdout, map->last_change_note ? map->last_change_note : "");
        printf(",\"migration_hold\":");
        if (map_held(map))
            ctl_json_str(stdout, map->migration_hold);
        else
            printf("null");
        printf(",\"groups\":[");
        for (size_t i = 0; i < map->n_groups; i++) {
            const Shale__ShardGroup *g = map->groups[i];
            printf("%s{\"id\":%" PRIu64 ",\"slots\":%u,\"members\":[", i ? "," : "", g->id,
                   cmap_slot_count(map, g->id));
            for (size_t k = 0; k < g->n_members; k++) {
                const Shale__Member *mb = g->members[k];
                printf("%s{\"id\":%" PRIu64 ",\"kind\":\"%s\",\"client\":", k ? "," : "", mb->id,
                       member_kind(mb));
                ctl_json_str(stdout, mb->client_addr);
                printf(",\"raft\":");
                ctl_json_str(stdout, mb->raft_addr);
                printf("}");
            }
            printf("]}");
        }
        printf("],\"slot_ranges\":[");
        int first = 1;
        map_ranges(map, range_json, &first);
        printf("]}\n");
        return;
    }
    if (map->epoch == 0) {
        printf("no cluster map yet (epoch 0): create it with 'shalectl init'\n");
        return;
    }
    printf("cluster %s, epoch %" PRIu64 ", %u slots, %zu group%s\n",
           map->cluster_id ? map->cluster_id : "?", map->epoch, map->slots, map->n_groups,
           map->n_groups == 1 ? "" : "s");
    if (map->last_change_note != NULL && map->last_change_note[0] != '\0')
        printf("last change: %s\n", map->last_change_note);
    if (map_held(map))
        printf("migrations held: %s (no slot move starts until it is cleared: a backup clears "
               "its own; after a killed backup, shalectl backup release)\n",
               map->migration_hold);
    for (size_t i = 0; i < map->n_groups; i++) {
        const Shale__ShardGroup *g = map->groups[i];
        printf("\ngroup %" PRIu64 ": %u slots\n", g->id, cmap_slot_count(map, g->id));
        printf("  %-4s %-8s %-22s %s\n", "ID", "KIND", "CLIENT", "RAFT");
        for (size_t k = 0; k < g->n_members; k++) {
            const Shale__Member *mb = g->members[k];
            printf("  %-4" PRIu64 " %-8s %-22s %s\n", mb->id, member_kind(mb), mb->client_addr,
                   mb->raft_addr);
        }
    }
    printf("\nslots:\n");
    map_ranges(map, range_print, NULL);
}

int run_map(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    meta_t m;
    char err[SHALE_ERRMSG_LEN];
    int code = meta_open(cmd, "map", &m);
    if (code != 0)
        return code;
    Shale__ClusterMap *map = NULL;
    int rv = map_get(&m, &map, err);
    meta_close(&m);
    if (rv != SHALE_OK)
        return ctl_error("map", rv, err, 0);
    map_print(cmd, map);
    cmap_free(map);
    return EXIT_OKAY;
}

int run_slot(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    meta_t m;
    char err[SHALE_ERRMSG_LEN];
    int code = meta_open(cmd, "slot", &m);
    if (code != 0)
        return code;
    Shale__ClusterMap *map = NULL;
    int rv = map_get(&m, &map, err);
    meta_close(&m);
    if (rv != SHALE_OK)
        return ctl_error("slot", rv, err, 0);
    if (map->epoch == 0 || map->slots == 0) {
        cmap_free(map);
        return ctl_say(EXIT_FAIL, "slot", "there is no cluster map yet: run 'shalectl init'");
    }
    if (cmd->json)
        printf("{\"epoch\":%" PRIu64 ",\"slots\":%u,\"keys\":[", map->epoch, map->slots);
    for (int i = 0; i < cmd->npos; i++) {
        const char *key = cmd->pos[i];
        size_t klen = strlen(key), off, tlen;
        /* A key with a hash tag: only the tag is hashed (proto/keyhash.h). */
        int tagged = shale_key_tag(key, klen, &off, &tlen);
        uint32_t slot = shale_key_slot(key, klen, map->slots);
        uint64_t gid = cmap_slot_group(map, slot);
        if (cmd->json) {
            printf("%s{\"key\":", i ? "," : "");
            ctl_json_str(stdout, key);
            printf(",\"slot\":%u", slot);
            if (tagged) {
                printf(",\"hash_tag\":");
                ctl_json_string(stdout, key + off, tlen);
            }
            printf(",\"group\":%" PRIu64 "}", gid);
            continue;
        }
        printf("%s -> slot %u", key, slot);
        if (tagged) {
            printf(" (hash tag ");
            ctl_json_string(stdout, key + off, tlen);
            printf(")");
        }
        if (gid != 0)
            printf(" -> group %" PRIu64 "\n", gid);
        else
            printf(" -> unassigned\n");
    }
    if (cmd->json)
        printf("]}\n");
    cmap_free(map);
    return EXIT_OKAY;
}

/* ---- slot assign --force: the repair ------------------------------------------------*/

/* Slot numbers a map may have (init --slots 1..65535). */
#define SLOT_LIMIT 65535u
#define ASSIGN_FORCE 0

const flag_spec_t slot_assign_flags[] = {
    {"force", NULL,
     "required: the slots change owner WITHOUT their data (the old owner deletes its copy, "
     "GROUP serves them from empty)",
     0},
    {NULL, NULL, NULL, 0},
};

/* "5", "0-99", "1,2,7", "0-9,20": every slot named is set in bits
 * (SLOT_LIMIT bits); *max is the highest. 0, or -1 with err. */
static int parse_slot_list(const char *s, uint8_t *bits, uint32_t *max, char *err, size_t errlen)
{
    *max = 0;
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        char item[48], *dash;
        uint64_t a, b;
        if (len == 0 || len >= sizeof(item)) {
            snprintf(err, errlen,
                     "SLOTS is a slot, a range FROM-TO or a comma list of them (5, 0-99, "
                     "1,2,7), not '%s'",
                     s);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if ((dash = strchr(item, '-')) != NULL)
            *dash = '\0';
        if (ctl_parse_u64(item, &a) != 0 || (dash != NULL && ctl_parse_u64(dash + 1, &b) != 0)) {
            snprintf(err, errlen,
                     "SLOTS is a slot, a range FROM-TO or a comma list of them (5, 0-99, "
                     "1,2,7), not '%s'",
                     s);
            return -1;
        }
        if (dash == NULL)
            b = a;
        if (a > b) {
            snprintf(err, errlen, "slot range '%.*s' is empty (FROM > TO)", (int)len, p);
            return -1;
        }
        if (b >= SLOT_LIMIT) {
            snprintf(err, errlen, "slot %" PRIu64 " is beyond any map (at most %u slots)", b,
                     SLOT_LIMIT);
            return -1;
        }
        for (uint64_t sl = a; sl <= b; sl++)
            bits[sl / 8] |= (uint8_t)(1u << (sl % 8));
        if (b > *max)
            *max = (uint32_t)b;
        if (p[len] == '\0')
            return 0;
        p += len + 1;
    }
}

static int bit_set(const uint8_t *bits, uint32_t sl)
{
    return (bits[sl / 8] >> (sl % 8)) & 1;
}

/* The runs of slots set in bits, up to max: "1-2,7" into buf (",..." when
 * it does not fit). */
static void slot_list_text(const uint8_t *bits, uint32_t max, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t sl = 0; sl <= max;) {
        if (!bit_set(bits, sl)) {
            sl++;
            continue;
        }
        uint32_t e = sl;
        while (e + 1 <= max && bit_set(bits, e + 1))
            e++;
        char one[32];
        if (e == sl)
            snprintf(one, sizeof(one), "%s%u", used ? "," : "", sl);
        else
            snprintf(one, sizeof(one), "%s%u-%u", used ? "," : "", sl, e);
        if (used + strlen(one) + 5 >= len) {
            snprintf(buf + used, len - used, ",...");
            return;
        }
        memcpy(buf + used, one, strlen(one) + 1);
        used += strlen(one);
        sl = e + 1;
    }
}

typedef struct assign {
    uint8_t *bits; /* the slots named (SLOT_LIMIT bits) */
    uint32_t max;  /* the highest one */
    uint64_t gid;
    /* What the last edit did, for the note and the summary. */
    uint32_t moved;
    char slots[160]; /* the slots that change owner */
    char from[200];  /* "group 2 (99), unassigned (1)" */
    char note[512];  /* the map's last_change_note (map_cas reads it after the edit) */
} assign_t;

static map_edit_result_t edit_assign(const Shale__ClusterMap *cur, Shale__ClusterMap *next,
                                     void *arg, char *why, size_t whylen)
{
    assign_t *a = arg;
    a->moved = 0;
    if (a->max >= cur->slots || cur->n_slot_group < cur->slots) {
        snprintf(why, whylen, "slot %u does not exist: the map has %u slots (0-%u)", a->max,
                 cur->slots, cur->slots ? cur->slots - 1 : 0);
        return EDIT_REFUSE;
    }
    if (cmap_group(cur, a->gid) == NULL) {
        snprintf(why, whylen, "group %" PRIu64 " is not in the map (see 'shalectl map')", a->gid);
        return EDIT_REFUSE;
    }
    for (size_t i = 0; i < cur->n_migrations; i++) {
        const Shale__Migration *mg = cur->migrations[i];
        for (size_t k = 0; k < mg->n_slots; k++)
            if (mg->slots[k] <= a->max && bit_set(a->bits, mg->slots[k])) {
                snprintf(why, whylen,
                         "slot %u is in migration %" PRIu64 " (group %" PRIu64 " -> %" PRIu64
                         "): finish or abort it first ('shalectl migration abort %" PRIu64 "')",
                         mg->slots[k], mg->id, mg->from_group, mg->to_group, mg->id);
                return EDIT_REFUSE;
            }
    }
    /* Per former owner: how many slots it loses (a few groups; the rest "..."). */
    uint64_t from_gid[8];
    uint32_t from_n[8], nfrom = 0, other = 0;
    uint8_t *moved = calloc(SLOT_LIMIT / 8 + 1, 1);
    if (moved == NULL) {
        snprintf(why, whylen, "out of memory");
        return EDIT_REFUSE;
    }
    for (uint32_t sl = 0; sl <= a->max; sl++) {
        if (!bit_set(a->bits, sl) || cur->slot_group[sl] == a->gid)
            continue;
        uint64_t was = cur->slot_group[sl];
        next->slot_group[sl] = a->gid;
        moved[sl / 8] |= (uint8_t)(1u << (sl % 8));
        a->moved++;
        uint32_t j = 0;
        while (j < nfrom && from_gid[j] != was)
            j++;
        if (j < nfrom)
            from_n[j]++;
        else if (nfrom < 8) {
            from_gid[nfrom] = was;
            from_n[nfrom++] = 1;
        } else {
            other++;
        }
    }
    slot_list_text(moved, a->max, a->slots, sizeof(a->slots));
    free(moved);
    if (a->moved == 0) {
        snprintf(why, whylen, "group %" PRIu64 " owns every one of these slots already", a->gid);
        return EDIT_NOOP;
    }
    size_t used = 0;
    a->from[0] = '\0';
    for (uint32_t j = 0; j < nfrom && used < sizeof(a->from); j++) {
        if (from_gid[j] == 0)
            used += (size_t)snprintf(a->from + used, sizeof(a->from) - used, "%sunassigned (%u)",
                                     j ? ", " : "", from_n[j]);
        else
            used += (size_t)snprintf(a->from + used, sizeof(a->from) - used,
                                     "%sgroup %" PRIu64 " (%u)", j ? ", " : "", from_gid[j],
                                     from_n[j]);
    }
    if (other > 0 && used < sizeof(a->from))
        snprintf(a->from + used, sizeof(a->from) - used, ", other groups (%u)", other);
    snprintf(a->note, sizeof(a->note),
             "slot assign --force: %u slot%s (%s) to group %" PRIu64
             " without their data, from %s",
             a->moved, a->moved == 1 ? "" : "s", a->slots, a->gid, a->from);
    return EDIT_APPLY;
}

int check_slot_assign(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t gid;
    uint32_t max;
    uint8_t *bits = calloc(SLOT_LIMIT / 8 + 1, 1);
    if (bits == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rv = parse_slot_list(cmd->pos[0], bits, &max, err, errlen);
    free(bits);
    if (rv != 0)
        return -1;
    if (ctl_parse_id(cmd->pos[1], &gid) != 0) {
        snprintf(err, errlen, "GROUP must be a positive integer, not '%s'", cmd->pos[1]);
        return -1;
    }
    return 0;
}

int run_slot_assign(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "slot assign";
    if (!cmd->set[ASSIGN_FORCE]) {
        fprintf(stderr,
                "shalectl: %s: refused without --force. This gives the slots to group %s WITHOUT "
                "moving their data: the group that owns them now stops serving them and deletes "
                "its copy of their keys when it applies the new map (a group that is down does "
                "so when it comes back), and group %s serves them from empty. It is a repair "
                "for slots whose group is lost for good; to move slots with their data use "
                "'shalectl slot move'. Check who owns them with 'shalectl map', then run again "
                "with --force. Nothing was sent.\n",
                verb, cmd->pos[1], cmd->pos[1]);
        return EXIT_USAGE;
    }
    assign_t *a = calloc(1, sizeof(*a));
    if (a == NULL || (a->bits = calloc(SLOT_LIMIT / 8 + 1, 1)) == NULL) {
        free(a);
        return ctl_say(EXIT_FAIL, verb, "out of memory");
    }
    char err[256];
    parse_slot_list(cmd->pos[0], a->bits, &a->max, err, sizeof(err)); /* checked already */
    ctl_parse_id(cmd->pos[1], &a->gid);
    meta_t m;
    int code = meta_open(cmd, verb, &m);
    if (code == 0) {
        m.force = 1;
        code = map_update(cmd, &m, verb, NULL, edit_assign, a, a->note);
        meta_close(&m);
        if (code == EXIT_OKAY && a->moved > 0 && !cmd->json)
            printf("group %" PRIu64 " now owns slots %s and serves them from empty; former "
                   "owners: %s. A former owner stops serving them and deletes its copy of their "
                   "keys when it applies the new map.\n",
                   a->gid, a->slots, a->from);
    }
    free(a->bits);
    free(a);
    return code;
}
