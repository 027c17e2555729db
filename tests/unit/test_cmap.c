/* Cluster map helpers (cluster/cmap.c) and the partitioning they rely on:
 * validation rules, even assignment, ownership bitmaps, and keys spreading
 * over groups in proportion to their slots. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "keyhash.h"

#define MAXG 4

typedef struct fixture {
    Shale__ClusterMap m;
    Shale__ShardGroup g[MAXG], *gp[MAXG];
    Shale__Member mem[MAXG][3], *mp[MAXG][3];
    char addr[MAXG][3][2][32];
    uint64_t slot_group[65535];
} fixture_t;

static fixture_t F;

/* ngroups groups of 3 voters, slots split evenly. */
static Shale__ClusterMap *make_map(int ngroups, uint32_t slots)
{
    memset(&F, 0, sizeof(F));
    shale__cluster_map__init(&F.m);
    uint64_t gids[MAXG];
    for (int g = 0; g < ngroups; g++) {
        shale__shard_group__init(&F.g[g]);
        F.g[g].id = (uint64_t)g + 1;
        for (int i = 0; i < 3; i++) {
            Shale__Member *m = &F.mem[g][i];
            shale__member__init(m);
            m->id = (uint64_t)i + 1;
            snprintf(F.addr[g][i][0], 32, "127.0.%d.%d:7001", g, i);
            snprintf(F.addr[g][i][1], 32, "127.0.%d.%d:7101", g, i);
            m->client_addr = F.addr[g][i][0];
            m->raft_addr = F.addr[g][i][1];
            F.mp[g][i] = m;
        }
        F.g[g].n_members = 3;
        F.g[g].members = F.mp[g];
        F.gp[g] = &F.g[g];
        gids[g] = (uint64_t)g + 1;
    }
    F.m.n_groups = (size_t)ngroups;
    F.m.groups = F.gp;
    F.m.has_slots = 1;
    F.m.slots = slots;
    F.m.n_slot_group = slots;
    F.m.slot_group = F.slot_group;
    cmap_assign_even(F.slot_group, slots, gids, (size_t)ngroups);
    return &F.m;
}

START_TEST(test_assign_even)
{
    Shale__ClusterMap *m = make_map(3, 4096);
    ck_assert_uint_eq(cmap_slot_count(m, 1), 1366);
    ck_assert_uint_eq(cmap_slot_count(m, 2), 1365);
    ck_assert_uint_eq(cmap_slot_count(m, 3), 1365);
    /* contiguous ranges in group order */
    ck_assert_uint_eq(cmap_slot_group(m, 0), 1);
    ck_assert_uint_eq(cmap_slot_group(m, 1365), 1);
    ck_assert_uint_eq(cmap_slot_group(m, 1366), 2);
    ck_assert_uint_eq(cmap_slot_group(m, 4095), 3);
    ck_assert_uint_eq(cmap_slot_group(m, 4096), 0); /* out of range */
    uint8_t bits[512];
    ck_assert_uint_eq(cmap_owned_bitmap(m, 2, bits), 1365);
    ck_assert_int_eq(bits[1366 / 8] >> (1366 % 8) & 1, 1);
    ck_assert_int_eq(bits[1365 / 8] >> (1365 % 8) & 1, 0);
    char err[200];
    ck_assert_int_eq(cmap_validate(NULL, m, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_validate_refuses_bad_maps)
{
    char err[200];
    Shale__ClusterMap *m = make_map(2, 64);
    Shale__ClusterMap prev = *m;
    prev.epoch = 3;

    m->slots = 32; /* slot table no longer matches, and the count changed */
    ck_assert_int_eq(cmap_validate(&prev, m, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "fixed at init"));
    m->slots = 64;

    F.slot_group[5] = 9;
    ck_assert_int_eq(cmap_validate(NULL, m, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "unknown group 9"));
    F.slot_group[5] = 1;

    F.g[1].id = 1;
    ck_assert_int_eq(cmap_validate(NULL, m, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "twice"));
    F.g[1].id = 2;

    F.mem[1][2].client_addr = F.addr[0][0][0]; /* another group's address */
    ck_assert_int_eq(cmap_validate(NULL, m, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "used twice"));
    F.mem[1][2].client_addr = F.addr[1][2][0];

    for (int i = 0; i < 3; i++) {
        F.mem[0][i].has_role = 1;
        F.mem[0][i].role = SHALE__MEMBER_ROLE__ROLE_STANDBY;
    }
    ck_assert_int_eq(cmap_validate(NULL, m, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "no voter"));
    for (int i = 0; i < 3; i++)
        F.mem[0][i].has_role = 0;

    m->slots = 0;
    m->n_slot_group = 0;
    ck_assert_int_eq(cmap_validate(NULL, m, err, sizeof(err)), -1);
    m->slots = 64;
    m->n_slot_group = 64;
    ck_assert_int_eq(cmap_validate(&prev, m, err, sizeof(err)), 0);
}
END_TEST

/* Keys spread over groups in proportion to their slots (DESIGN §3): 200,000
 * keys, 4096 slots, groups owning 1/2, 1/4, 1/4: each within 2 % of its
 * share. */
START_TEST(test_keys_spread_by_slots)
{
    Shale__ClusterMap *m = make_map(3, 4096);
    for (uint32_t s = 0; s < 4096; s++)
        F.slot_group[s] = s < 2048 ? 1 : s < 3072 ? 2 : 3;
    enum { N = 200000 };
    unsigned count[4] = {0};
    char key[40];
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof(key), "user:%d", i);
        count[cmap_slot_group(m, shale_key_slot(key, (size_t)n, m->slots))]++;
    }
    double share[4] = {0, 0.5, 0.25, 0.25};
    for (int g = 1; g <= 3; g++) {
        double got = (double)count[g] / N;
        ck_assert_msg(got > share[g] * 0.98 && got < share[g] * 1.02,
                      "group %d got %.4f of the keys, owns %.2f of the slots", g, got, share[g]);
    }
    ck_assert_uint_eq(count[0], 0);
}
END_TEST

START_TEST(test_copy_roundtrip)
{
    Shale__ClusterMap *m = make_map(2, 128);
    m->epoch = 7;
    Shale__ClusterMap *c = cmap_copy(m);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->epoch, 7);
    ck_assert_uint_eq(c->n_groups, 2);
    ck_assert_str_eq(cmap_group(c, 2)->members[1]->client_addr, "127.0.1.1:7001");
    ck_assert_ptr_null(cmap_group(c, 3));
    cmap_free(c);
    uint8_t junk[5] = {0xff, 0xff, 0xff, 0xff, 0xff};
    ck_assert_ptr_null(cmap_unpack(junk, sizeof(junk)));
}
END_TEST

START_TEST(test_migration_hold)
{
    Shale__ClusterMap *m = make_map(2, 128);
    m->epoch = 3;
    m->has_next_migration_id = 1;
    m->next_migration_id = 1;
    Shale__ClusterMap *held = cmap_copy(m);
    ck_assert_ptr_nonnull(held);
    held->migration_hold = strdup("backup 1");
    char err[256];
    /* Setting the hold is a change of its own. */
    ck_assert_int_eq(cmap_validate_change(m, held, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(cmap_hold_blocks(m, held), 0);
    /* Held: a new migration is refused, naming the hold. */
    Shale__ClusterMap *next = cmap_copy(held);
    ck_assert_ptr_nonnull(next);
    Shale__Migration mig = SHALE__MIGRATION__INIT, *mp = &mig;
    uint32_t sl = 0;
    mig.id = 1;
    mig.from_group = next->slot_group[0];
    mig.to_group = mig.from_group == 1 ? 2 : 1;
    mig.n_slots = 1;
    mig.slots = &sl;
    mig.state = SHALE__MIGRATION_STATE__MIG_COPYING;
    next->next_migration_id = 2;
    next->n_migrations = 1;
    next->migrations = &mp;
    ck_assert_int_eq(cmap_hold_blocks(held, next), 1);
    ck_assert_int_ne(cmap_validate_change(held, next, 0, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "held"));
    /* Forced changes pass (disaster repair). */
    ck_assert_int_eq(cmap_validate_change(held, next, 1, err, sizeof(err)), 0);
    /* The same migration without the hold is fine. */
    ck_assert_int_eq(cmap_validate_change(m, next, 0, err, sizeof(err)), 0);
    next->n_migrations = 0;
    next->migrations = NULL;
    /* Clearing the hold together with a slot owner change is refused too. */
    free(next->migration_hold);
    next->migration_hold = NULL;
    next->slot_group[0] = mig.to_group;
    ck_assert_int_eq(cmap_hold_blocks(held, next), 1);
    next->slot_group[0] = mig.from_group;
    next->next_migration_id = 1;
    ck_assert_int_eq(cmap_hold_blocks(held, next), 0);
    ck_assert_int_eq(cmap_validate_change(held, next, 0, err, sizeof(err)), 0);
    cmap_free(next);
    cmap_free(held);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cmap");
    TCase *tc = tcase_create("cmap");
    tcase_add_test(tc, test_assign_even);
    tcase_add_test(tc, test_validate_refuses_bad_maps);
    tcase_add_test(tc, test_keys_spread_by_slots);
    tcase_add_test(tc, test_copy_roundtrip);
    tcase_add_test(tc, test_migration_hold);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
