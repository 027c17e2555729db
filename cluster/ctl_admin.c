/* shalectl cluster verbs: init, group add/remove, replica add/remove,
 * leader transfer, status — all through the meta group's cluster map.
 * (group remove drains the group first with ctl_migrate.c's migrations.)
 *
 * Rules:
 *  - a group's members are what its own leader says (STATUS, following the
 *    leader), never what the command line claims: the map records the
 *    group's replicated member table;
 *  - a node must say it belongs to the group it is registered as (it was
 *    started with --group ID); a mismatch is refused before anything changes;
 *  - membership changes run on the group first (shale_member_add/remove,
 *    through the addresses the map has for it), then the group's new table
 *    is recorded in the map. The map is checked (cmap_validate) with the
 *    new member before the group is touched, so a change the map would
 *    refuse never half-happens;
 *  - every map change is map_update's read-modify-CAS (ctl_map.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmap.h"
#include "ctl.h"
#include "keyhash.h"

/* ---- Helpers ------------------------------------------------------------------*/

/* "ID=ADDR[,ADDR...]" */
static int parse_group_spec(const char *spec, uint64_t *id, const char **addrs)
{
    const char *eq = strchr(spec, '=');
    char num[32];
    if (eq == NULL || eq == spec || (size_t)(eq - spec) >= sizeof(num))
        return -1;
    memcpy(num, spec, (size_t)(eq - spec));
    num[eq - spec] = '\0';
    if (ctl_parse_id(num, id) != 0 || !ctl_is_hostport(eq + 1))
        return -1;
    *addrs = eq + 1;
    return 0;
}

/* The client addresses of a group's members, comma-separated. */
static void group_addrs(const Shale__ShardGroup *g, uint64_t skip_id, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0, n = 0; i < g->n_members && n < SHALE_MAX_MEMBERS; i++) {
        if (g->members[i]->id == skip_id)
            continue;
        int w =
            snprintf(buf + used, len - used, "%s%s", used ? "," : "", g->members[i]->client_addr);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
        n++;
    }
}

static void count_kinds(Shale__Member *const *members, size_t n, size_t *voters, size_t *replicas)
{
    *voters = *replicas = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(member_kind(members[i]), "voter") == 0)
            (*voters)++;
        else
            (*replicas)++;
    }
}

static const Shale__Member *group_find_member(const Shale__ShardGroup *g, uint64_t id)
{
    for (size_t i = 0; g != NULL && i < g->n_members; i++)
        if (g->members[i]->id == id)
            return g->members[i];
    return NULL;
}

/* A data node's STATUS must name this group. 0 ok, else exit code printed. */
static int check_group_node(const char *verb, const char *addr, const Shale__StatusResponse *st,
                            uint64_t gid)
{
    const char *mode = st->mode != NULL ? st->mode : "data";
    if (strcmp(mode, "data") != 0)
        return ctl_say(EXIT_REFUSED, verb, "the node at %s is a %s node, not a shard group member",
                       addr, mode);
    if (st->group_id == 0)
        return ctl_say(EXIT_REFUSED, verb,
                       "the node at %s was started without --group (standalone): start the "
                       "group's nodes with --group %" PRIu64 " --meta ...",
                       addr, gid);
    if (st->group_id != gid)
        return ctl_say(EXIT_REFUSED, verb,
                       "the node at %s belongs to group %" PRIu64 " (--group %" PRIu64
                       "), not %" PRIu64,
                       addr, st->group_id, st->group_id, gid);
    if (st->n_members == 0)
        return ctl_say(EXIT_REFUSED, verb, "the group at %s reports no members", addr);
    return 0;
}

/* The leader's STATUS of group gid reached through addrs, checked. */
static int fetch_group(const cmd_t *cmd, const char *verb, uint64_t gid, const char *addrs,
                       Shale__StatusResponse **st)
{
    char err[SHALE_ERRMSG_LEN];
    int rv = group_leader_status(cmd, addrs, st, err);
    if (rv != SHALE_OK) {
        char msg[SHALE_ERRMSG_LEN + 64];
        snprintf(msg, sizeof(msg), "group %" PRIu64 " at %s: %s", gid, addrs, err);
        return ctl_error(verb, rv, msg, 0);
    }
    int code = check_group_node(verb, addrs, *st, gid);
    if (code != 0) {
        shale__status_response__free_unpacked(*st, NULL);
        *st = NULL;
    }
    return code;
}

/* ---- init ---------------------------------------------------------------------*/

enum { INIT_SLOTS, INIT_GROUP };

const flag_spec_t init_flags[] = {
    [INIT_SLOTS] = {"slots", "S",
                    "slot count, fixed for the cluster's life (default 4096; the data "
                    "nodes take it from the map)",
                    0},
    [INIT_GROUP] = {"group", "ID=ADDR",
                    "a running shard group: its id and the client address of any member "
                    "(ADDR may be a comma list)",
                    1},
    {NULL, NULL, NULL, 0},
};

static uint32_t init_slots(const cmd_t *cmd)
{
    uint64_t s = SHALE_DEFAULT_SLOTS;
    if (cmd->set[INIT_SLOTS])
        ctl_parse_u64(cmd->val[INIT_SLOTS], &s);
    return (uint32_t)s;
}

int check_init(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t s, ids[CTL_MAX_LIST];
    const char *addrs;
    if (cmd->set[INIT_SLOTS] &&
        (ctl_parse_u64(cmd->val[INIT_SLOTS], &s) != 0 || s == 0 || s > 65535)) {
        snprintf(err, errlen, "--slots needs a number in 1..65535, not '%s'", cmd->val[INIT_SLOTS]);
        return -1;
    }
    if (cmd->nlist == 0) {
        snprintf(err, errlen, "name at least one group: --group ID=ADDR");
        return -1;
    }
    for (int i = 0; i < cmd->nlist; i++) {
        if (parse_group_spec(cmd->list[i], &ids[i], &addrs) != 0) {
            snprintf(err, errlen,
                     "--group wants ID=HOST:PORT (a positive id and a member's client "
                     "address), not '%s'",
                     cmd->list[i]);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (ids[j] == ids[i]) {
                snprintf(err, errlen, "group %" PRIu64 " is named twice", ids[i]);
                return -1;
            }
    }
    if ((uint32_t)cmd->nlist > init_slots(cmd)) {
        snprintf(err, errlen, "%d groups need at least %d slots", cmd->nlist, cmd->nlist);
        return -1;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void print_init_range(uint32_t from, uint32_t to, uint64_t gid, void *arg)
{
    (void)arg;
    printf("  slots %u-%u -> group %" PRIu64 "\n", from, to, gid);
}

int run_init(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "init";
    char err[SHALE_ERRMSG_LEN];
    meta_t m;
    int code = meta_open(cmd, verb, &m);
    if (code != 0)
        return code;
    Shale__ClusterMap *cur = NULL, *map = NULL;
    Shale__StatusResponse *st[CTL_MAX_LIST] = {0};
    Shale__StatusResponse *mst = NULL;
    int ng = cmd->nlist;
    uint32_t slots = init_slots(cmd);
    uint64_t gids[CTL_MAX_LIST];
    const char *addrs[CTL_MAX_LIST];

    int rv = map_get(&m, &cur, err);
    if (rv != SHALE_OK) {
        code = ctl_error(verb, rv, err, 0);
        goto out;
    }
    if (cur->epoch != 0) {
        code =
            ctl_say(EXIT_REFUSED, verb,
                    "the cluster already exists: map epoch %" PRIu64
                    ", cluster '%s', %zu group(s), %u slots (see 'shalectl status'; add "
                    "groups with 'shalectl group add')",
                    cur->epoch, cur->cluster_id ? cur->cluster_id : "", cur->n_groups, cur->slots);
        goto out;
    }
    if ((rv = node_status(m.c, &mst, err)) != SHALE_OK) {
        code = ctl_error(verb, rv, err, 0);
        goto out;
    }
    for (int i = 0; i < ng; i++) {
        if (parse_group_spec(cmd->list[i], &gids[i], &addrs[i]) != 0) {
            code = ctl_say(EXIT_USAGE, verb, "bad --group '%s'", cmd->list[i]);
            goto out;
        }
        if ((code = fetch_group(cmd, verb, gids[i], addrs[i], &st[i])) != 0)
            goto out;
        const char *cid = st[i]->cluster_id ? st[i]->cluster_id : "";
        const char *want = mst->cluster_id ? mst->cluster_id : "";
        if (strcmp(cid, want) != 0) {
            code = ctl_say(EXIT_REFUSED, verb,
                           "group %" PRIu64 " is cluster '%s' but the meta group is cluster '%s' "
                           "(start every node with the same --cluster-id)",
                           gids[i], cid, want);
            goto out;
        }
    }

    map = calloc(1, sizeof(*map));
    if (map == NULL) {
        code = ctl_say(EXIT_FAIL, verb, "out of memory");
        goto out;
    }
    shale__cluster_map__init(map);
    map->epoch = 1;
    map->cluster_id = strdup(mst->cluster_id ? mst->cluster_id : "");
    map->has_slots = 1;
    map->slots = slots;
    map->slot_group = calloc(slots, sizeof(uint64_t));
    map->n_slot_group = slots;
    int oom = map->cluster_id == NULL || map->slot_group == NULL;
    for (int i = 0; i < ng && !oom; i++)
        oom = map_add_group(map, gids[i], st[i]->members, st[i]->n_members) != 0;
    if (oom) {
        code = ctl_say(EXIT_FAIL, verb, "out of memory");
        goto out;
    }
    uint64_t sorted[CTL_MAX_LIST];
    memcpy(sorted, gids, sizeof(uint64_t) * (size_t)ng);
    qsort(sorted, (size_t)ng, sizeof(uint64_t), cmp_u64);
    cmap_assign_even(map->slot_group, slots, sorted, (size_t)ng);
    char why[512];
    if (cmap_validate(NULL, map, why, sizeof(why)) != 0) {
        code = ctl_say(EXIT_REFUSED, verb, "the map would be invalid: %s", why);
        goto out;
    }

    char note[128];
    snprintf(note, sizeof(note), "init: %d group%s, %u slots", ng, ng == 1 ? "" : "s", slots);
    uint64_t epoch = 0;
    rv = map_cas(&m, 0, map, note, NULL, &epoch, err);
    if (rv == SHALE_ECASFAILED) {
        code = ctl_say(EXIT_REFUSED, verb,
                       "the cluster already exists (map epoch %" PRIu64 "; see 'shalectl status')",
                       epoch);
        goto out;
    }
    if (rv != SHALE_OK) {
        code = ctl_error(verb, rv, err, 1);
        goto out;
    }
    if (cmd->json) {
        printf("{\"ok\":true,\"epoch\":%" PRIu64 ",\"cluster_id\":", epoch);
        ctl_json_str(stdout, map->cluster_id);
        printf(",\"slots\":%u,\"groups\":[", slots);
        for (int i = 0; i < ng; i++) {
            char r[256];
            map_group_ranges(map, sorted[i], r, sizeof(r));
            printf("%s{\"id\":%" PRIu64 ",\"slots\":%u,\"ranges\":\"%s\"}", i ? "," : "", sorted[i],
                   cmap_slot_count(map, sorted[i]), r);
        }
        printf("]}\n");
    } else {
        printf("OK epoch %" PRIu64 ": cluster '%s' created with %d group%s and %u slots\n", epoch,
               map->cluster_id, ng, ng == 1 ? "" : "s", slots);
        for (int i = 0; i < ng; i++) {
            size_t v, r;
            const Shale__ShardGroup *g = cmap_group(map, gids[i]);
            count_kinds(g->members, g->n_members, &v, &r);
            printf("  group %" PRIu64 ": %zu voter%s, %zu read replica%s\n", gids[i], v,
                   v == 1 ? "" : "s", r, r == 1 ? "" : "s");
        }
        map_ranges(map, print_init_range, NULL);
    }
    code = EXIT_OKAY;
out:
    for (int i = 0; i < ng; i++)
        if (st[i] != NULL)
            shale__status_response__free_unpacked(st[i], NULL);
    if (mst != NULL)
        shale__status_response__free_unpacked(mst, NULL);
    cmap_free(cur);
    cmap_free(map);
    meta_close(&m);
    return code;
}

/* ---- group add / remove ----------------------------------------------------------*/

int check_group_add(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t id;
    if (ctl_parse_id(cmd->pos[0], &id) != 0) {
        snprintf(err, errlen, "ID must be a positive integer, not '%s'", cmd->pos[0]);
        return -1;
    }
    if (!ctl_is_hostport(cmd->pos[1])) {
        snprintf(err, errlen, "'%s' is not HOST:PORT", cmd->pos[1]);
        return -1;
    }
    return 0;
}

typedef struct group_edit {
    uint64_t gid;
    const Shale__StatusResponse *st; /* the group leader's status */
} group_edit_t;

static map_edit_result_t edit_group_add(const Shale__ClusterMap *cur, Shale__ClusterMap *next,
                                        void *arg, char *why, size_t len)
{
    const group_edit_t *ge = arg;
    const char *cid = ge->st->cluster_id ? ge->st->cluster_id : "";
    if (cur->cluster_id != NULL && strcmp(cur->cluster_id, cid) != 0) {
        snprintf(why, len, "group %" PRIu64 " is cluster '%s', the map is cluster '%s'", ge->gid,
                 cid, cur->cluster_id);
        return EDIT_REFUSE;
    }
    if (cmap_group(cur, ge->gid) != NULL) {
        snprintf(why, len, "group %" PRIu64 " is already in the map", ge->gid);
        return EDIT_REFUSE;
    }
    if (map_add_group(next, ge->gid, ge->st->members, ge->st->n_members) != 0) {
        snprintf(why, len, "out of memory");
        return EDIT_REFUSE;
    }
    return EDIT_APPLY;
}

int run_group_add(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "group add";
    group_edit_t ge;
    Shale__StatusResponse *st = NULL;
    ctl_parse_id(cmd->pos[0], &ge.gid);
    meta_t m;
    int code = meta_open(cmd, verb, &m);
    if (code != 0)
        return code;
    if ((code = fetch_group(cmd, verb, ge.gid, cmd->pos[1], &st)) != 0) {
        meta_close(&m);
        return code;
    }
    ge.st = st;
    size_t v, r;
    count_kinds(st->members, st->n_members, &v, &r);
    char note[160];
    snprintf(note, sizeof(note),
             "group add %" PRIu64 ": %zu voter%s, %zu read replica%s, no slots yet", ge.gid, v,
             v == 1 ? "" : "s", r, r == 1 ? "" : "s");
    code = map_update(cmd, &m, verb, NULL, edit_group_add, &ge, note);
    shale__status_response__free_unpacked(st, NULL);
    meta_close(&m);
    return code;
}

static map_edit_result_t edit_group_remove(const Shale__ClusterMap *cur, Shale__ClusterMap *next,
                                           void *arg, char *why, size_t len)
{
    uint64_t gid = *(const uint64_t *)arg;
    if (cmap_group(cur, gid) == NULL) {
        snprintf(why, len, "there is no group %" PRIu64 " in the map", gid);
        return EDIT_REFUSE;
    }
    for (size_t i = 0; i < cur->n_migrations; i++) {
        const Shale__Migration *r = cur->migrations[i];
        if (r->from_group == gid || r->to_group == gid) {
            snprintf(why, len,
                     "migration %" PRIu64 " (group %" PRIu64 " -> %" PRIu64
                     ") involves group %" PRIu64 ": wait for it, or abort it",
                     r->id, r->from_group, r->to_group, gid);
            return EDIT_REFUSE;
        }
    }
    uint32_t owned = cmap_slot_count(cur, gid);
    if (owned > 0) {
        char ranges[128];
        map_group_ranges(cur, gid, ranges, sizeof(ranges));
        snprintf(why, len,
                 "group %" PRIu64 " still owns %u slot%s (%s): slots moved to it while it "
                 "was drained; run group remove again",
                 gid, owned, owned == 1 ? "" : "s", ranges);
        return EDIT_REFUSE;
    }
    map_remove_group(next, gid);
    return EDIT_APPLY;
}

static int load_group(const cmd_t *cmd, const char *verb, meta_t *m, uint64_t gid,
                      Shale__ClusterMap **map, const Shale__ShardGroup **g);

int run_group_remove(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "group remove";
    uint64_t gid = 0;
    ctl_parse_id(cmd->pos[0], &gid);
    meta_t m;
    Shale__ClusterMap *map = NULL;
    const Shale__ShardGroup *g = NULL;
    int code = load_group(cmd, verb, &m, gid, &map, &g);
    if (code != 0 || g == NULL)
        return code != 0 ? code : EXIT_FAIL;
    /* Drain first: the group's slots go to the others, as migrations. The
     * connection to meta is not kept across it (the migrations have their
     * own); the removal re-reads the map. */
    meta_close(&m);
    int finished = 0;
    code = mig_drain_group(cmd, verb, map, gid, &finished);
    cmap_free(map);
    if (code != 0 || !finished)
        return code;
    if ((code = meta_open(cmd, verb, &m)) != 0)
        return code;
    char note[64];
    snprintf(note, sizeof(note), "group remove %" PRIu64, gid);
    code = map_update(cmd, &m, verb, NULL, edit_group_remove, &gid, note);
    meta_close(&m);
    return code;
}

/* ---- replica add / remove, leader transfer -------------------------------------*/

const flag_spec_t replica_add_flags[] = {
    {"read-only", NULL,
     "a read replica (Raft standby: applies the log, never votes); default: a voter", 0},
    {NULL, NULL, NULL, 0},
};

int check_replica_add(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t id;
    for (int i = 0; i < 2; i++)
        if (ctl_parse_id(cmd->pos[i], &id) != 0) {
            snprintf(err, errlen, "%s must be a positive integer, not '%s'", i ? "ID" : "GROUP",
                     cmd->pos[i]);
            return -1;
        }
    for (int i = 2; i < 4; i++)
        if (!ctl_is_hostport(cmd->pos[i])) {
            snprintf(err, errlen, "%s '%s' is not HOST:PORT", i == 2 ? "RAFT" : "CLIENT",
                     cmd->pos[i]);
            return -1;
        }
    return 0;
}

/* Record a group's member table (from its leader) in the map. */
static map_edit_result_t edit_set_members(const Shale__ClusterMap *cur, Shale__ClusterMap *next,
                                          void *arg, char *why, size_t len)
{
    const group_edit_t *ge = arg;
    const Shale__ShardGroup *g = cmap_group(cur, ge->gid);
    if (g == NULL) {
        snprintf(why, len, "group %" PRIu64 " is no longer in the map", ge->gid);
        return EDIT_REFUSE;
    }
    if (members_equal(g->members, g->n_members, ge->st->members, ge->st->n_members)) {
        snprintf(why, len, "the map already records group %" PRIu64 "'s members", ge->gid);
        return EDIT_NOOP;
    }
    Shale__ShardGroup *ng = (Shale__ShardGroup *)cmap_group(next, ge->gid);
    if (group_set_members(ng, ge->st->members, ge->st->n_members) != 0) {
        snprintf(why, len, "out of memory");
        return EDIT_REFUSE;
    }
    return EDIT_APPLY;
}

/* The map and the group gid in it; prints and returns an exit code when
 * either is missing. */
static int load_group(const cmd_t *cmd, const char *verb, meta_t *m, uint64_t gid,
                      Shale__ClusterMap **map, const Shale__ShardGroup **g)
{
    char err[SHALE_ERRMSG_LEN];
    int code = meta_open(cmd, verb, m);
    if (code != 0)
        return code;
    int rv = map_get(m, map, err);
    if (rv != SHALE_OK) {
        meta_close(m);
        return ctl_error(verb, rv, err, 0);
    }
    if ((*map)->epoch == 0)
        code = ctl_say(EXIT_REFUSED, verb, "there is no cluster map yet: run 'shalectl init'");
    else if ((*g = cmap_group(*map, gid)) == NULL)
        code = ctl_say(EXIT_REFUSED, verb,
                       "there is no group %" PRIu64 " in the map (epoch %" PRIu64
                       "; see 'shalectl map')",
                       gid, (*map)->epoch);
    if (code != 0) {
        cmap_free(*map);
        *map = NULL;
        meta_close(m);
    }
    return code;
}

/* After a membership change: read the group's table from its leader and
 * record it in the map. */
static int record_members(const cmd_t *cmd, const char *verb, meta_t *m,
                          const Shale__ClusterMap *map, uint64_t gid, const char *addrs,
                          const char *note)
{
    Shale__StatusResponse *st = NULL;
    int code = fetch_group(cmd, verb, gid, addrs, &st);
    if (code != 0) {
        fprintf(stderr,
                "shalectl: %s: the group changed but its new member table is not in the map "
                "yet: run the same command again to record it\n",
                verb);
        return code;
    }
    group_edit_t ge = {gid, st};
    code = map_update(cmd, m, verb, map, edit_set_members, &ge, note);
    shale__status_response__free_unpacked(st, NULL);
    return code;
}

/* replica add's work, for it and replica rejoin. Returns an exit code. */
static int replica_add(const cmd_t *cmd, const char *verb, uint64_t gid, uint64_t id,
                       const char *raft, const char *client, int read_only)
{
    meta_t m;
    Shale__ClusterMap *map = NULL, *trial = NULL;
    const Shale__ShardGroup *g = NULL;
    int code = load_group(cmd, verb, &m, gid, &map, &g);
    if (code != 0 || g == NULL)
        return code != 0 ? code : EXIT_FAIL;
    char err[SHALE_ERRMSG_LEN], why[512], addrs[SHALE_MAX_MEMBERS * 130];
    Shale__Member want = SHALE__MEMBER__INIT;
    want.id = id;
    want.raft_addr = (char *)raft;
    want.client_addr = (char *)client;
    want.has_role = 1;
    want.role = read_only ? SHALE__MEMBER_ROLE__ROLE_STANDBY : SHALE__MEMBER_ROLE__ROLE_VOTER;

    /* The map must accept the new member before the group gets it. A
     * member already there at the same addresses with the other role is a
     * promotion (read replica -> voter) or a demotion (voter -> read
     * replica): the group's leader assigns the new role (admin.c, the
     * member is already in Raft's configuration). */
    const Shale__Member *old = group_find_member(g, id);
    if (old != NULL) {
        if (strcmp(old->raft_addr, raft) != 0 || strcmp(old->client_addr, client) != 0) {
            code = ctl_say(EXIT_REFUSED, verb,
                           "group %" PRIu64 " already has member %" PRIu64
                           " (%s, raft %s, client %s): remove it first",
                           gid, id, member_kind(old), old->raft_addr, old->client_addr);
            goto out;
        }
        size_t voters, replicas;
        count_kinds(g->members, g->n_members, &voters, &replicas);
        if (read_only && strcmp(member_kind(old), "voter") == 0 && voters == 1) {
            code = ctl_say(EXIT_REFUSED, verb,
                           "member %" PRIu64 " is group %" PRIu64
                           "'s only voter: add another voter first",
                           id, gid);
            goto out;
        }
    } else {
        trial = cmap_copy(map);
        Shale__ShardGroup *tg = trial != NULL ? (Shale__ShardGroup *)cmap_group(trial, gid) : NULL;
        Shale__Member **ms = tg != NULL ? calloc(tg->n_members + 1, sizeof(Shale__Member *)) : NULL;
        if (ms == NULL) {
            code = ctl_say(EXIT_FAIL, verb, "out of memory");
            goto out;
        }
        memcpy(ms, tg->members, tg->n_members * sizeof(Shale__Member *));
        ms[tg->n_members] = &want;
        int bad = group_set_members(tg, ms, tg->n_members + 1) != 0 ||
                  cmap_validate(map, trial, why, sizeof(why)) != 0;
        free(ms);
        if (bad) {
            code = ctl_say(EXIT_REFUSED, verb, "the map would not accept it: %s", why);
            goto out;
        }
    }

    /* The new node must be up, and be this group's node with this id. */
    shale_client_t *nc = NULL;
    Shale__StatusResponse *nst = NULL;
    if ((code = ctl_connect(cmd, verb, client, 5000, &nc)) != 0) {
        fprintf(stderr,
                "shalectl: %s: start the new node first: shaled --id %" PRIu64 " --group %" PRIu64
                " --meta ... --listen %s --raft %s --initial-cluster none\n",
                verb, id, gid, client, raft);
        goto out;
    }
    int rv = node_status(nc, &nst, err);
    shale_close(nc);
    if (rv != SHALE_OK) {
        code = ctl_error(verb, rv, err, 0);
        goto out;
    }
    const char *mode = nst->mode != NULL ? nst->mode : "data";
    if (strcmp(mode, "data") != 0 || nst->group_id != gid || nst->node_id != id) {
        code =
            ctl_say(EXIT_REFUSED, verb,
                    "the node at %s is %s node %" PRIu64 " of group %" PRIu64 ", not node %" PRIu64
                    " of group %" PRIu64 " (start it with --id %" PRIu64 " --group %" PRIu64 ")",
                    client, mode, nst->node_id, nst->group_id, id, gid, id, gid);
        shale__status_response__free_unpacked(nst, NULL);
        goto out;
    }
    shale__status_response__free_unpacked(nst, NULL);

    /* The group's change, through the members the map lists. */
    group_addrs(g, 0, addrs, sizeof(addrs));
    shale_client_t *gc = NULL;
    if ((code = ctl_connect(cmd, verb, addrs, 5000, &gc)) != 0)
        goto out;
    char msg[SHALE_ERRMSG_LEN] = "";
    rv = shale_member_add(gc, id, raft, client, read_only, msg);
    if (rv != SHALE_OK) {
        snprintf(err, sizeof(err), "group %" PRIu64 ": %s", gid, shale_errmsg(gc));
        shale_close(gc);
        code = ctl_error(verb, rv, err, 1);
        goto out;
    }
    shale_close(gc);
    if (!cmd->json)
        printf("group %" PRIu64 ": %s\n", gid, msg);

    char note[128];
    snprintf(note, sizeof(note), "replica add: group %" PRIu64 " member %" PRIu64 " (%s)", gid, id,
             read_only ? "read replica" : "voter");
    code = record_members(cmd, verb, &m, map, gid, addrs, note);
out:
    cmap_free(trial);
    cmap_free(map);
    meta_close(&m);
    return code;
}

int run_replica_add(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    uint64_t gid = 0, id = 0;
    ctl_parse_id(cmd->pos[0], &gid);
    ctl_parse_id(cmd->pos[1], &id);
    return replica_add(cmd, "replica add", gid, id, cmd->pos[2], cmd->pos[3], cmd->set[0]);
}

/* replica remove's work, for it and replica rejoin. Returns an exit code. */
static int replica_remove(const cmd_t *cmd, const char *verb, uint64_t gid, uint64_t id)
{
    meta_t m;
    Shale__ClusterMap *map = NULL;
    const Shale__ShardGroup *g = NULL;
    int code = load_group(cmd, verb, &m, gid, &map, &g);
    if (code != 0 || g == NULL)
        return code != 0 ? code : EXIT_FAIL;
    char err[SHALE_ERRMSG_LEN], addrs[SHALE_MAX_MEMBERS * 130];
    const Shale__Member *old = group_find_member(g, id);
    size_t voters, replicas;
    count_kinds(g->members, g->n_members, &voters, &replicas);
    if (old != NULL && strcmp(member_kind(old), "voter") == 0 && voters == 1) {
        code =
            ctl_say(EXIT_REFUSED, verb,
                    "member %" PRIu64 " is group %" PRIu64 "'s only voter: add another voter first",
                    id, gid);
        goto out;
    }
    /* The remaining members carry the change and answer for the new table;
     * the departing one may stop answering at any moment. */
    group_addrs(g, id, addrs, sizeof(addrs));
    if (addrs[0] == '\0') {
        code = ctl_say(EXIT_REFUSED, verb, "group %" PRIu64 " has no other member", gid);
        goto out;
    }
    if (old == NULL) {
        /* Not in the map: the group may still have it (added with --addr
         * member add); its leader's table decides. */
        Shale__StatusResponse *st = NULL;
        if ((code = fetch_group(cmd, verb, gid, addrs, &st)) != 0)
            goto out;
        int found = 0;
        for (size_t i = 0; i < st->n_members; i++)
            found |= st->members[i]->id == id;
        shale__status_response__free_unpacked(st, NULL);
        if (!found) {
            code = ctl_say(EXIT_REFUSED, verb, "group %" PRIu64 " has no member %" PRIu64, gid, id);
            goto out;
        }
    }
    shale_client_t *gc = NULL;
    if ((code = ctl_connect(cmd, verb, addrs, 5000, &gc)) != 0)
        goto out;
    char msg[SHALE_ERRMSG_LEN] = "";
    int rv = shale_member_remove(gc, id, msg);
    if (rv == SHALE_EINVAL && old != NULL) {
        /* The group no longer has it but the map does: an earlier removal
         * stopped before recording it. Finish that. */
        snprintf(msg, sizeof(msg), "%s (only the map still listed it)", shale_errmsg(gc));
        rv = SHALE_OK;
    }
    if (rv != SHALE_OK) {
        snprintf(err, sizeof(err), "group %" PRIu64 ": %s", gid, shale_errmsg(gc));
        shale_close(gc);
        code = ctl_error(verb, rv, err, 1);
        goto out;
    }
    shale_close(gc);
    if (!cmd->json)
        printf("group %" PRIu64 ": %s\n", gid, msg);
    char note[128];
    snprintf(note, sizeof(note), "replica remove: group %" PRIu64 " member %" PRIu64, gid, id);
    code = record_members(cmd, verb, &m, map, gid, addrs, note);
out:
    cmap_free(map);
    meta_close(&m);
    return code;
}

int run_replica_remove(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    uint64_t gid = 0, id = 0;
    ctl_parse_id(cmd->pos[0], &gid);
    ctl_parse_id(cmd->pos[1], &id);
    return replica_remove(cmd, "replica remove", gid, id);
}

/* ---- replica rejoin -----------------------------------------------------------*/

enum { REJOIN_WAIT };

const flag_spec_t replica_rejoin_flags[] = {
    [REJOIN_WAIT] = {"wait", "S",
                     "how long to wait for the wiped node to answer as a joiner (default 600)",
                     0},
    {NULL, NULL, NULL, 0},
};

int check_replica_rejoin(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t v;
    if (check_ids(cmd, err, errlen) != 0)
        return -1;
    if (cmd->set[REJOIN_WAIT] && (ctl_parse_u64(cmd->val[REJOIN_WAIT], &v) != 0 || v == 0 ||
                                  v > 86400)) {
        snprintf(err, errlen, "--wait takes seconds, 1..86400, not '%s'", cmd->val[REJOIN_WAIT]);
        return -1;
    }
    return 0;
}

/* The node at @client as a fresh joiner of (gid, id): 1 yes, 0 not (yet);
 * *has_log gets its last index when it answers with a log. */
static int is_fresh_joiner(const cmd_t *cmd, const char *client, uint64_t gid, uint64_t id,
                           uint64_t *has_log)
{
    shale_client_t *nc = NULL;
    shale_options_t o;
    char err[SHALE_ERRMSG_LEN] = "";
    ctl_options(cmd, 1000, &o);
    o.connect_timeout_ms = 1000;
    if (shale_connect(client, &o, &nc, err) != SHALE_OK)
        return 0;
    Shale__StatusResponse *st = NULL;
    int ok = 0;
    if (node_status(nc, &st, err) == SHALE_OK) {
        const char *mode = st->mode != NULL ? st->mode : "data";
        if (strcmp(mode, "data") == 0 && st->group_id == gid && st->node_id == id) {
            *has_log = st->last_index;
            ok = st->last_index == 0;
        }
        shale__status_response__free_unpacked(st, NULL);
    }
    shale_close(nc);
    return ok;
}

/* Re-join a member whose own data cannot be trusted (a damaged Raft log,
 * docs/operations.md "A damaged Raft log"): take it out of the group (so
 * the group stops counting its votes and acknowledgements), wait for the
 * operator to wipe it and start it again as a joiner, and add it back with
 * its addresses and role from the map. Every step is the same as replica
 * remove / add; an interrupted rejoin is finished with those. */
int run_replica_rejoin(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "replica rejoin";
    uint64_t gid = 0, id = 0, wait_s = 600;
    ctl_parse_id(cmd->pos[0], &gid);
    ctl_parse_id(cmd->pos[1], &id);
    if (cmd->set[REJOIN_WAIT])
        ctl_parse_u64(cmd->val[REJOIN_WAIT], &wait_s);
    meta_t m;
    Shale__ClusterMap *map = NULL;
    const Shale__ShardGroup *g = NULL;
    int code = load_group(cmd, verb, &m, gid, &map, &g);
    if (code != 0 || g == NULL)
        return code != 0 ? code : EXIT_FAIL;
    const Shale__Member *old = group_find_member(g, id);
    char raft[128], client[128];
    int read_only = 0;
    if (old == NULL || strlen(old->raft_addr) >= sizeof(raft) ||
        strlen(old->client_addr) >= sizeof(client)) {
        code = ctl_say(EXIT_REFUSED, verb,
                       "the map has no member %" PRIu64 " in group %" PRIu64
                       " (a node that is not a member joins with 'replica add')",
                       id, gid);
    } else {
        snprintf(raft, sizeof(raft), "%s", old->raft_addr);
        snprintf(client, sizeof(client), "%s", old->client_addr);
        read_only = strcmp(member_kind(old), "voter") != 0;
    }
    cmap_free(map);
    meta_close(&m);
    if (code != 0)
        return code;

    if ((code = replica_remove(cmd, verb, gid, id)) != 0)
        return code;
    if (!cmd->json) {
        printf("node %" PRIu64 " is out of group %" PRIu64
               ". Now wipe its data directory and start it again as a joiner:\n"
               "  shaled --id %" PRIu64 " --group %" PRIu64
               " --meta ... --data DIR --listen %s --raft %s --initial-cluster none\n"
               "waiting up to %" PRIu64 " s for it to answer at %s ...\n",
               id, gid, id, gid, client, raft, wait_s, client);
        fflush(stdout);
    }
    uint64_t has_log = 0, said = 0;
    for (uint64_t waited_ms = 0;; waited_ms += 500) {
        if (is_fresh_joiner(cmd, client, gid, id, &has_log))
            break;
        if (has_log != 0 && said != has_log) {
            fprintf(stderr,
                    "shalectl: %s: the node at %s still has a Raft log (last index %" PRIu64
                    "): wipe its data directory and start it again\n",
                    verb, client, has_log);
            said = has_log;
        }
        if (waited_ms >= wait_s * 1000)
            return ctl_say(EXIT_UNREACHABLE, verb,
                           "node %" PRIu64 " did not come back as a joiner within %" PRIu64
                           " s; when it is up: shalectl replica add %" PRIu64 " %" PRIu64
                           " %s %s%s",
                           id, wait_s, gid, id, raft, client, read_only ? " --read-only" : "");
        usleep(500 * 1000);
    }
    return replica_add(cmd, verb, gid, id, raft, client, read_only);
}

int run_leader_transfer(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "leader transfer";
    uint64_t gid = 0, id = 0;
    ctl_parse_id(cmd->pos[0], &gid);
    if (cmd->npos > 1)
        ctl_parse_id(cmd->pos[1], &id);
    meta_t m;
    Shale__ClusterMap *map = NULL;
    const Shale__ShardGroup *g = NULL;
    int code = load_group(cmd, verb, &m, gid, &map, &g);
    if (code != 0 || g == NULL)
        return code != 0 ? code : EXIT_FAIL;
    if (id != 0 && group_find_member(g, id) == NULL) {
        code = ctl_say(EXIT_REFUSED, verb, "group %" PRIu64 " has no member %" PRIu64 " in the map",
                       gid, id);
        goto out;
    }
    char addrs[SHALE_MAX_MEMBERS * 130], msg[SHALE_ERRMSG_LEN] = "", err[SHALE_ERRMSG_LEN];
    group_addrs(g, 0, addrs, sizeof(addrs));
    shale_client_t *gc = NULL;
    if ((code = ctl_connect(cmd, verb, addrs, 5000, &gc)) != 0)
        goto out;
    int rv = shale_leader_transfer(gc, id, msg);
    if (rv != SHALE_OK) {
        snprintf(err, sizeof(err), "group %" PRIu64 ": %s", gid, shale_errmsg(gc));
        code = ctl_error(verb, rv, err, 1);
    } else if (cmd->json) {
        printf("{\"ok\":true,\"group\":%" PRIu64 ",\"message\":", gid);
        ctl_json_str(stdout, msg);
        printf("}\n");
    } else {
        printf("OK group %" PRIu64 ": %s\n", gid, msg);
    }
    shale_close(gc);
out:
    cmap_free(map);
    meta_close(&m);
    return code;
}

/* ---- status ---------------------------------------------------------------------*/

/* What status shows for one group. */
typedef struct gview {
    const Shale__ShardGroup *g;
    member_row_t *rows;
    size_t nrows;
    const Shale__StatusResponse *leader; /* the member that answered as leader */
    int table_differs;                   /* its member table is not the map's */
} gview_t;

static const probe_t *rows_leader(const member_row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].probe != NULL && rows[i].probe->rv == SHALE_OK && rows[i].probe->st->role &&
            strcmp(rows[i].probe->st->role, "leader") == 0)
            return rows[i].probe;
    return NULL;
}

static void group_header_text(const Shale__ClusterMap *map, const gview_t *v)
{
    char ranges[256];
    uint32_t n = cmap_slot_count(map, v->g->id);
    map_group_ranges(map, v->g->id, ranges, sizeof(ranges));
    printf("\ngroup %" PRIu64 ": %u slot%s (%s)", v->g->id, n, n == 1 ? "" : "s", ranges);
    if (v->leader == NULL) {
        printf(", no leader answered\n");
    } else {
        printf(", leader %" PRIu64 ", term %" PRIu64 ", ownership epoch %" PRIu64 "\n",
               v->leader->node_id, v->leader->term, v->leader->map_epoch);
        if (v->leader->has_slots_owned && v->leader->slots_owned != n)
            printf("  note: the group owns %u slots at epoch %" PRIu64
                   "; the map gives it %u (it has not applied the map yet)\n",
                   v->leader->slots_owned, v->leader->map_epoch, n);
    }
    if (v->table_differs)
        printf("  note: the group's member table differs from the map (rows marked); record it "
               "with 'shalectl replica add/remove'\n");
}

static void group_json(const Shale__ClusterMap *map, const gview_t *v)
{
    char ranges[256];
    map_group_ranges(map, v->g->id, ranges, sizeof(ranges));
    printf("{\"id\":%" PRIu64 ",\"slots\":%u,\"ranges\":\"%s\",\"leader_id\":", v->g->id,
           cmap_slot_count(map, v->g->id), ranges);
    if (v->leader != NULL)
        printf("%" PRIu64 ",\"term\":%" PRIu64 ",\"ownership_epoch\":%" PRIu64, v->leader->node_id,
               v->leader->term, v->leader->map_epoch);
    else
        printf("null");
    if (v->leader != NULL && v->leader->has_slots_owned)
        printf(",\"slots_owned\":%u", v->leader->slots_owned);
    printf(",\"table_differs\":%s,\"members\":", v->table_differs ? "true" : "false");
    rows_json(v->rows, v->nrows);
    printf("}");
}

int run_cluster_status(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "status";
    char err[SHALE_ERRMSG_LEN];
    meta_t m;
    int code = meta_open(cmd, verb, &m);
    if (code != 0)
        return code;
    Shale__ClusterMap *map = NULL;
    Shale__StatusResponse *mst = NULL;
    shale_whoami_t who;
    int rv = map_get(&m, &map, err);
    if (rv == SHALE_OK)
        rv = node_status(m.c, &mst, err);
    int auth = ctl_whoami(m.c, &who);
    meta_close(&m);
    if (rv != SHALE_OK) {
        cmap_free(map);
        code = ctl_error(verb, rv, err, 0);
        if (rv == SHALE_EAUTH && auth && who.user[0] == '\0')
            fprintf(stderr, "shalectl: %s: connected as anonymous to a meta group started with "
                            "--auth: give --user NAME --password-file F (or $SHALE_USER, "
                            "$SHALE_PASSWORD_FILE)\n",
                    verb);
        return code;
    }

    /* Rows: the meta members, then each group's map members followed by the
     * members its leader lists that the map lacks. Probes are laid out the
     * same way, with room for those extras. */
    size_t nmeta = mst->n_members, nmapped = 0, k = 0;
    for (size_t i = 0; i < map->n_groups; i++)
        nmapped += map->groups[i]->n_members;
    size_t cap = nmeta + nmapped + map->n_groups * SHALE_MAX_MEMBERS + 1;
    probe_t *probes = calloc(cap, sizeof(*probes));
    member_row_t *rows = calloc(cap, sizeof(*rows));
    member_row_t *first = calloc(cap, sizeof(*first)); /* round-1 rows */
    gview_t *views = calloc(map->n_groups + 1, sizeof(*views));
    if (probes == NULL || rows == NULL || first == NULL || views == NULL) {
        code = ctl_say(EXIT_FAIL, verb, "out of memory");
        goto out;
    }

    /* Round 1: every meta member and every member the map lists. */
    for (size_t i = 0; i < nmeta; i++, k++) {
        snprintf(probes[k].addr, sizeof(probes[k].addr), "%s", mst->members[i]->client_addr);
        first[k].m = mst->members[i];
        first[k].probe = &probes[k];
    }
    for (size_t i = 0; i < map->n_groups; i++) {
        const Shale__ShardGroup *g = map->groups[i];
        views[i].g = g;
        for (size_t j = 0; j < g->n_members; j++, k++) {
            snprintf(probes[k].addr, sizeof(probes[k].addr), "%s", g->members[j]->client_addr);
            first[k].m = g->members[j];
            first[k].probe = &probes[k];
            first[k].expect_group = g->id;
        }
    }
    probe_all(cmd, probes, k);

    /* Final layout; round 2 probes the members only a leader knows. */
    size_t w = 0, at = nmeta, round2 = k;
    for (; w < nmeta; w++)
        rows[w] = first[w];
    for (size_t i = 0; i < map->n_groups; i++) {
        const Shale__ShardGroup *g = views[i].g;
        views[i].rows = &rows[w];
        for (size_t j = 0; j < g->n_members; j++)
            rows[w++] = first[at++];
        const probe_t *lp = rows_leader(views[i].rows, g->n_members);
        views[i].leader = lp != NULL ? lp->st : NULL;
        for (size_t j = 0; lp != NULL && j < lp->st->n_members && k < cap; j++) {
            const Shale__Member *lm = lp->st->members[j];
            if (group_find_member(g, lm->id) != NULL)
                continue;
            snprintf(probes[k].addr, sizeof(probes[k].addr), "%s", lm->client_addr);
            rows[w].m = lm;
            rows[w].probe = &probes[k++];
            rows[w].expect_group = g->id;
            rows[w++].note = "not in the map";
        }
        if (lp != NULL)
            views[i].table_differs =
                !members_equal(g->members, g->n_members, lp->st->members, lp->st->n_members);
        views[i].nrows = (size_t)(&rows[w] - views[i].rows);
    }
    if (k > round2)
        probe_all(cmd, &probes[round2], k - round2);
    probe_health(cmd, probes, k);
    rows_compute_lag(rows, nmeta);
    for (size_t i = 0; i < map->n_groups; i++)
        rows_compute_lag(views[i].rows, views[i].nrows);

    uint32_t assigned = 0;
    for (size_t s = 0; s < map->n_slot_group; s++)
        assigned += map->slot_group[s] != 0;
    const probe_t *mlead = rows_leader(rows, nmeta);
    if (cmd->json) {
        printf("{\"cluster_id\":");
        ctl_json_str(stdout, map->cluster_id ? map->cluster_id : "");
        printf(",\"epoch\":%" PRIu64 ",\"slots\":%u,\"assigned\":%u,\"last_change\":", map->epoch,
               map->slots, assigned);
        ctl_json_str(stdout, map->last_change_note ? map->last_change_note : "");
        printf(",\"auth\":");
        ctl_whoami_json(&who);
        printf(",\"meta\":{\"leader_id\":");
        if (mlead != NULL)
            printf("%" PRIu64, mlead->st->node_id);
        else
            printf("null");
        printf(",\"members\":");
        rows_json(rows, nmeta);
        printf("},\"groups\":[");
        for (size_t i = 0; i < map->n_groups; i++) {
            printf("%s", i ? "," : "");
            group_json(map, &views[i]);
        }
        printf("],\"migrations\":");
        mig_json_list(map);
        printf("}\n");
    } else {
        if (map->epoch == 0)
            printf("cluster %s: no cluster map yet (epoch 0): create it with 'shalectl init'\n",
                   mst->cluster_id ? mst->cluster_id : "?");
        else
            printf("cluster %s, map epoch %" PRIu64 ", %u slots (%u assigned), %zu group%s\n",
                   map->cluster_id ? map->cluster_id : "?", map->epoch, map->slots, assigned,
                   map->n_groups, map->n_groups == 1 ? "" : "s");
        if (map->last_change_note != NULL && map->last_change_note[0] != '\0')
            printf("last change: %s\n", map->last_change_note);
        ctl_whoami_print(&who);
        printf("\nmeta group: ");
        if (mlead != NULL)
            printf("leader %" PRIu64 ", term %" PRIu64 "\n", mlead->st->node_id, mlead->st->term);
        else
            printf("no leader answered\n");
        rows_print(rows, nmeta, "  ");
        for (size_t i = 0; i < map->n_groups; i++) {
            group_header_text(map, &views[i]);
            rows_print(views[i].rows, views[i].nrows, "  ");
        }
        if (map->n_migrations > 0) {
            printf("\nmigrations: %zu in progress (a fenced one pauses its slots; see "
                   "'shalectl migration status')\n",
                   map->n_migrations);
            mig_print_list(map, "  ");
        }
    }
    code = EXIT_OKAY;
out:
    if (probes != NULL)
        probe_free(probes, k);
    free(probes);
    free(rows);
    free(first);
    free(views);
    shale__status_response__free_unpacked(mst, NULL);
    cmap_free(map);
    return code;
}
