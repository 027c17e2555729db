/* shale-router's map cache and node choice (router/route.c), driven
 * directly: which group owns a key, which node an attempt goes to (leader,
 * voters in turn, STALE reads over replicas then followers then the
 * leader), and what survives a new map. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "keyhash.h"
#include "route.h"
#include "split.h"

/* A map of `groups` groups; group g has 3 voters g.1..g.3 at
 * 10.0.g.k:7000 plus `replicas` read replicas (10.0.g.(10+k)); slots are
 * split evenly. Free with cmap_free. */
static Shale__ClusterMap *make_map(uint64_t epoch, int groups, int replicas, uint32_t slots,
                                   const char *cluster)
{
    Shale__ClusterMap *m = calloc(1, sizeof(*m));
    shale__cluster_map__init(m);
    m->epoch = epoch;
    m->cluster_id = strdup(cluster);
    m->has_slots = 1;
    m->slots = slots;
    m->n_groups = (size_t)groups;
    m->groups = calloc((size_t)groups, sizeof(*m->groups));
    uint64_t gids[8];
    for (int g = 0; g < groups; g++) {
        Shale__ShardGroup *sg = calloc(1, sizeof(*sg));
        shale__shard_group__init(sg);
        sg->id = (uint64_t)g + 1;
        gids[g] = sg->id;
        sg->n_members = (size_t)(3 + replicas);
        sg->members = calloc(sg->n_members, sizeof(*sg->members));
        for (size_t k = 0; k < sg->n_members; k++) {
            Shale__Member *mb = calloc(1, sizeof(*mb));
            shale__member__init(mb);
            mb->id = k + 1;
            char a[64];
            int rep = k >= 3;
            snprintf(a, sizeof(a), "10.0.%d.%zu:7000", g + 1, rep ? 10 + k - 3 : k + 1);
            mb->client_addr = strdup(a);
            snprintf(a, sizeof(a), "10.0.%d.%zu:7100", g + 1, k + 1);
            mb->raft_addr = strdup(a);
            mb->has_role = 1;
            mb->role = rep ? SHALE__MEMBER_ROLE__ROLE_STANDBY : SHALE__MEMBER_ROLE__ROLE_VOTER;
            sg->members[k] = mb;
        }
        m->groups[g] = sg;
    }
    m->n_slot_group = slots;
    m->slot_group = calloc(slots, sizeof(uint64_t));
    cmap_assign_even(m->slot_group, slots, gids, (size_t)groups);
    /* Make it a protobuf-c owned message (one free function for all). */
    Shale__ClusterMap *c = cmap_copy(m);
    shale__cluster_map__free_unpacked(m, NULL); /* the allocator is malloc for both */
    return c;
}

/* Init r with make_map(epoch 1, groups, replicas, 16 slots) installed. */
static void route_init_with(rt_route_t *r, int groups, int replicas)
{
    char err[256];
    rt_route_init(r);
    ck_assert_int_eq(
        rt_route_install(r, make_map(1, groups, replicas, 16, "shale"), "shale", err, sizeof(err)),
        0);
}

START_TEST(test_install_rules)
{
    rt_route_t r;
    char err[256];
    rt_route_init(&r);
    ck_assert_uint_eq(rt_route_slot_group(&r, 0), 0);
    Shale__ClusterMap *m0 = make_map(0, 2, 0, 64, "shale");
    ck_assert_int_eq(rt_route_install(&r, m0, "shale", err, sizeof(err)), 1);
    cmap_free(m0);
    Shale__ClusterMap *other = make_map(1, 2, 0, 64, "elsewhere");
    ck_assert_int_eq(rt_route_install(&r, other, "shale", err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "elsewhere"));
    cmap_free(other);
    Shale__ClusterMap *bad = make_map(1, 2, 0, 64, "shale");
    bad->n_slot_group = 63; /* table shorter than the slot count */
    ck_assert_int_eq(rt_route_install(&r, bad, "shale", err, sizeof(err)), -1);
    bad->n_slot_group = 64;
    cmap_free(bad);
    Shale__ClusterMap *m1 = make_map(1, 2, 0, 64, "shale");
    ck_assert_int_eq(rt_route_install(&r, m1, "shale", err, sizeof(err)), 0);
    ck_assert_uint_eq(r.epoch, 1);
    ck_assert_uint_eq(r.ngroups, 2);
    ck_assert_uint_eq(rt_route_group(&r, 1)->slots, 32);
    /* Not newer: ignored. */
    Shale__ClusterMap *again = make_map(1, 2, 0, 64, "shale");
    ck_assert_int_eq(rt_route_install(&r, again, "shale", err, sizeof(err)), 1);
    cmap_free(again);
    /* The slot count never changes. */
    Shale__ClusterMap *resized = make_map(2, 2, 0, 128, "shale");
    ck_assert_int_eq(rt_route_install(&r, resized, "shale", err, sizeof(err)), -1);
    cmap_free(resized);
    ck_assert_uint_eq(r.epoch, 1);
    rt_route_free(&r);
}
END_TEST

/* slot = XXH64(key) % S (untagged keys); group = slot table; every key of one slot goes to
 * one group, and both groups get keys. */
START_TEST(test_key_to_group)
{
    rt_route_t r;
    char err[256];
    rt_route_init(&r);
    Shale__ClusterMap *m = make_map(3, 2, 0, 4096, "shale");
    ck_assert_int_eq(rt_route_install(&r, m, "shale", err, sizeof(err)), 0);
    int count[3] = {0, 0, 0};
    for (int i = 0; i < 10000; i++) {
        char k[32];
        int n = snprintf(k, sizeof(k), "key-%d", i);
        uint32_t slot = shale_key_slot(k, (size_t)n, r.slots);
        uint64_t g = rt_route_slot_group(&r, slot);
        ck_assert(g == 1 || g == 2);
        ck_assert_uint_eq(g, slot < 2048 ? 1 : 2);
        count[g]++;
    }
    ck_assert_int_gt(count[1], 4700);
    ck_assert_int_gt(count[2], 4700);
    ck_assert_uint_eq(rt_route_slot_group(&r, 4096), 0); /* out of range */
    ck_assert_ptr_null(rt_route_group(&r, 9));
    rt_route_free(&r);
}
END_TEST

/* Hash tags through the router's routing path (forward.c setup_multi: key
 * -> shale_key_slot -> slot's group -> rt_split_by_group): keys sharing a
 * tag land in one slot, so an MPUT/MGET sends them to one group in one
 * part, even where their whole-key slots (key-hash v1) lie elsewhere. */
START_TEST(test_hash_tag_one_part)
{
    rt_route_t r;
    char err[256];
    rt_route_init(&r);
    Shale__ClusterMap *m = make_map(1, 2, 0, 4096, "shale");
    ck_assert_int_eq(rt_route_install(&r, m, "shale", err, sizeof(err)), 0);
    const char *keys[] = {"{user1}.a", "user:1000", "{user1}.b", "{user1}.c", "{user1}"};
    enum { N = 5 };
    uint64_t gids[N];
    for (int i = 0; i < N; i++)
        gids[i] = rt_route_slot_group(&r, shale_key_slot(keys[i], strlen(keys[i]), r.slots));
    /* The tag's slot (2343) is group 2's; each tagged key's whole-key slot
     * is group 1's (so v1 routing would send them all to group 1), as is
     * user:1000's (slot 10). */
    for (int i = 0; i < N; i++) {
        uint32_t v1 = (uint32_t)(shale_hash64(keys[i], strlen(keys[i]), 0) % r.slots);
        if (i != 1 && i != 4)
            ck_assert_uint_eq(rt_route_slot_group(&r, v1), 1);
    }
    ck_assert_uint_eq(gids[0], 2);
    ck_assert_uint_eq(gids[1], 1);
    rt_split_t sp;
    ck_assert_int_eq(rt_split_by_group(gids, N, &sp), 0);
    ck_assert_uint_eq(sp.nparts, 2);
    ck_assert_uint_eq(sp.parts[0].group, 2);
    ck_assert_uint_eq(sp.parts[0].n, 4); /* every {user1} key, in request order */
    ck_assert_uint_eq(sp.parts[0].idx[0], 0);
    ck_assert_uint_eq(sp.parts[0].idx[1], 2);
    ck_assert_uint_eq(sp.parts[0].idx[2], 3);
    ck_assert_uint_eq(sp.parts[0].idx[3], 4);
    ck_assert_uint_eq(sp.parts[1].group, 1);
    ck_assert_uint_eq(sp.parts[1].n, 1);
    ck_assert_uint_eq(sp.parts[1].idx[0], 1);
    rt_split_free(&sp);
    rt_route_free(&r);
}
END_TEST

START_TEST(test_pick_leader_and_voters)
{
    rt_route_t r;
    route_init_with(&r, 1, 1);
    rt_group_t *g = rt_route_group(&r, 1);
    ck_assert_uint_eq(g->nmembers, 4);
    /* No leader known: each voter once, never the replica, then again. */
    uint64_t tried = 0;
    int seen[4] = {0};
    for (int i = 0; i < 3; i++) {
        const char *a = rt_group_pick(g, 0, &tried, 0);
        ck_assert_ptr_nonnull(a);
        int idx = rt_group_member(g, a);
        ck_assert_int_ge(idx, 0);
        ck_assert(!g->members[idx].replica);
        ck_assert_int_eq(seen[idx]++, 0);
    }
    ck_assert_ptr_nonnull(rt_group_pick(g, 0, &tried, 0)); /* a new round */
    /* A leader learned (e.g. from a NOT_LEADER hint) takes every request. */
    rt_group_note_leader(g, "10.0.1.2:7000");
    for (int i = 0; i < 5; i++) {
        tried = 0;
        ck_assert_str_eq(rt_group_pick(g, 0, &tried, 0), "10.0.1.2:7000");
    }
    /* Another node failing changes nothing; the leader failing forgets it. */
    rt_group_note_failure(g, "10.0.1.3:7000", 0);
    ck_assert_str_eq(g->leader, "10.0.1.2:7000");
    rt_group_note_failure(g, "10.0.1.2:7000", 0);
    ck_assert_str_eq(g->leader, "");
    /* A hint outside the map is followed too (the map may be behind). */
    rt_group_note_leader(g, "10.9.9.9:7000");
    tried = 0;
    ck_assert_str_eq(rt_group_pick(g, 0, &tried, 0), "10.9.9.9:7000");
    ck_assert(tried & RT_TRIED_LEADER);
    rt_route_free(&r);
}
END_TEST

START_TEST(test_pick_stale_order)
{
    rt_route_t r;
    route_init_with(&r, 1, 2);
    rt_group_t *g = rt_route_group(&r, 1);
    rt_group_note_leader(g, "10.0.1.1:7000");
    /* One request: both replicas, then the two followers, then the
     * leader, then nothing. */
    uint64_t tried = 0;
    const char *order[5];
    for (int i = 0; i < 5; i++) {
        order[i] = rt_group_pick(g, 1, &tried, 0);
        ck_assert_ptr_nonnull(order[i]);
    }
    ck_assert(g->members[rt_group_member(g, order[0])].replica);
    ck_assert(g->members[rt_group_member(g, order[1])].replica);
    ck_assert_str_ne(order[0], order[1]);
    ck_assert(!g->members[rt_group_member(g, order[2])].replica);
    ck_assert(!g->members[rt_group_member(g, order[3])].replica);
    ck_assert_str_ne(order[2], "10.0.1.1:7000");
    ck_assert_str_ne(order[3], "10.0.1.1:7000");
    ck_assert_str_eq(order[4], "10.0.1.1:7000");
    ck_assert_ptr_null(rt_group_pick(g, 1, &tried, 0));
    /* Many requests: first choices spread over both replicas. */
    int first[2] = {0, 0};
    for (int i = 0; i < 100; i++) {
        tried = 0;
        const char *a = rt_group_pick(g, 1, &tried, 0);
        first[strcmp(a, "10.0.1.10:7000") == 0 ? 0 : 1]++;
    }
    ck_assert_int_gt(first[0], 30);
    ck_assert_int_gt(first[1], 30);
    rt_route_free(&r);
}
END_TEST

/* A member that just failed (a paused node: its requests time out) is
 * asked last for RT_SUSPECT_MS, then spread over again. */
START_TEST(test_pick_avoids_suspects)
{
    rt_route_t r;
    route_init_with(&r, 1, 2);
    rt_group_t *g = rt_route_group(&r, 1);
    rt_group_note_leader(g, "10.0.1.1:7000");
    rt_group_note_failure(g, "10.0.1.10:7000", 1000);
    for (int i = 0; i < 50; i++) {
        uint64_t tried = 0;
        ck_assert_str_eq(rt_group_pick(g, 1, &tried, 1500), "10.0.1.11:7000");
    }
    /* both replicas suspect: a follower first, the suspects after it */
    rt_group_note_failure(g, "10.0.1.11:7000", 1000);
    uint64_t tried = 0;
    const char *a = rt_group_pick(g, 1, &tried, 1500);
    ck_assert(!g->members[rt_group_member(g, a)].replica);
    ck_assert_str_ne(a, "10.0.1.1:7000");
    /* every member is still tried once per request */
    int n = 1;
    while (rt_group_pick(g, 1, &tried, 1500) != NULL)
        n++;
    ck_assert_int_eq(n, 5);
    /* suspicion ends */
    int first[2] = {0, 0};
    for (int i = 0; i < 100; i++) {
        tried = 0;
        a = rt_group_pick(g, 1, &tried, 1000 + RT_SUSPECT_MS + 1);
        ck_assert(g->members[rt_group_member(g, a)].replica);
        first[strcmp(a, "10.0.1.10:7000") == 0 ? 0 : 1]++;
    }
    ck_assert_int_gt(first[0], 30);
    ck_assert_int_gt(first[1], 30);
    rt_route_free(&r);
}
END_TEST

/* Without replicas, STALE reads spread over the followers. */
START_TEST(test_pick_stale_followers)
{
    rt_route_t r;
    route_init_with(&r, 1, 0);
    rt_group_t *g = rt_route_group(&r, 1);
    rt_group_note_leader(g, "10.0.1.3:7000");
    int hits[4] = {0};
    for (int i = 0; i < 90; i++) {
        uint64_t tried = 0;
        hits[rt_group_member(g, rt_group_pick(g, 1, &tried, 0))]++;
    }
    ck_assert_int_eq(hits[2], 0); /* the leader only as the last resort */
    ck_assert_int_gt(hits[0], 30);
    ck_assert_int_gt(hits[1], 30);
    rt_route_free(&r);
}
END_TEST

/* A new map keeps what was learned about groups that stay. */
START_TEST(test_new_map_keeps_learned_state)
{
    rt_route_t r;
    char err[256];
    route_init_with(&r, 2, 0);
    rt_group_note_leader(rt_route_group(&r, 1), "10.0.1.2:7000");
    rt_group_note_leader(rt_route_group(&r, 2), "10.9.9.9:7000"); /* not a member */
    rt_route_group(&r, 1)->pending = 7;
    Shale__ClusterMap *m2 = make_map(2, 2, 0, 16, "shale");
    for (uint32_t s = 0; s < 16; s++)
        m2->slot_group[s] = 2; /* every slot moves to group 2 */
    ck_assert_int_eq(rt_route_install(&r, m2, "shale", err, sizeof(err)), 0);
    ck_assert_str_eq(rt_route_group(&r, 1)->leader, "10.0.1.2:7000");
    ck_assert_uint_eq(rt_route_group(&r, 1)->pending, 7);
    ck_assert_str_eq(rt_route_group(&r, 2)->leader, "");
    ck_assert_uint_eq(rt_route_slot_group(&r, 0), 2);
    ck_assert_uint_eq(rt_route_group(&r, 1)->slots, 0);
    rt_route_free(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("router_route");
    TCase *tc = tcase_create("route");
    tcase_add_test(tc, test_install_rules);
    tcase_add_test(tc, test_key_to_group);
    tcase_add_test(tc, test_hash_tag_one_part);
    tcase_add_test(tc, test_pick_leader_and_voters);
    tcase_add_test(tc, test_pick_stale_order);
    tcase_add_test(tc, test_pick_avoids_suspects);
    tcase_add_test(tc, test_pick_stale_followers);
    tcase_add_test(tc, test_new_map_keeps_learned_state);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
