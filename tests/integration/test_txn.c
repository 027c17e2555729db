/* Transactions within one slot (issue 14; docs/protocol.md "Transactions",
 * docs/consistency.md), end to end through the router, with real processes
 * under the secure harness (TLS, --auth, logged in as admin): a 3-node meta
 * group, one shard group of 3 voters, a router. What it proves:
 *  - the success branch and the failure branch, gets seeing the txn's own
 *    earlier puts, versions growing and distinct per put;
 *  - keys in two slots are refused CROSSSLOT by the router and by the node
 *    (nothing written);
 *  - a retry of a txn with the same Session (raw frames to the router) is
 *    answered with the first outcome (duplicate, same versions and get
 *    values) and applied once;
 *  - the bank-transfer invariant: N accounts under one hash tag, several
 *    threads moving random amounts with compare-on-version txns, a reader
 *    checking the sum with get-only txns (always the same), and the group
 *    leader killed (SIGKILL) in the middle: no transfer lost or doubled,
 *    the final sum unchanged;
 *  - (test_txn_slot_move, two groups) the same bank while the accounts'
 *    slot moves to the other group and back (shalectl slot move): the
 *    txns' writes reach the target through the migration changelog, the
 *    fence refuses (never loses) a txn, every sum seen is the same.
 *
 * Hosts 127.0.0.160.. (meta), .170.. (group 1), .180 (group 2), .165 (router). */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmap.h"
#include "frame.h"
#include "harness_cluster.h"
#include "keyhash.h"
#include "shale.h"
#include "wire.h"

#define FIRST_HOST 160
#define SLOTS 64
#define NACCT 5
#define START_BAL 100
#define NWRITERS 3

static th_cluster_t g_cl;
static char *g_base;
static th_node_t g_router;

/* ngroups groups of voters voters each, the map over SLOTS slots, a router. */
static void start_cluster_n(int ngroups, int voters)
{
    g_base = th_tmpdir("txn");
    ck_assert_ptr_nonnull(g_base);
    ck_assert_int_eq(th_cluster_start(&g_cl, ngroups, voters, FIRST_HOST, g_base, NULL), 0);
    ck_assert_int_eq(th_cluster_init(&g_cl, SLOTS, 20000), 0);
    ck_assert_int_eq(th_cluster_router(&g_router, &g_cl, "127.0.0.165", g_base), 0);
}

static void start_cluster(void)
{
    start_cluster_n(1, 3);
}

static void stop_cluster(void)
{
    th_cluster_teardown(&g_cl, &g_base, (th_node_t *const[]){&g_router, NULL});
}

static shale_client_t *connect_to(const char *addrs)
{
    char err[SHALE_ERRMSG_LEN];
    shale_client_t *c = th_connect(addrs, 15000, 20000, err);
    ck_assert_msg(c != NULL, "connect to %s: %s", addrs, err);
    return c;
}

static shale_txn_op_t op(shale_txn_op_type_t t, const char *k, const char *v)
{
    shale_txn_op_t o = {
        .type = t, .key = k, .klen = strlen(k), .value = v, .vlen = v != NULL ? strlen(v) : 0};
    return o;
}

/* Branches, gets inside a txn, versions; CROSSSLOT at the router and node. */
static void check_branches(shale_client_t *c)
{
    /* Create {t}x and {t}y only if {t}x is absent. */
    shale_txn_compare_t absent = {.key = "{t}x", .klen = 4, .target = SHALE_TXN_EXISTS,
                                  .cmp = SHALE_TXN_EQUAL, .exists = 0};
    shale_txn_op_t create[] = {op(SHALE_TXN_PUT, "{t}x", "1"), op(SHALE_TXN_PUT, "{t}y", "a"),
                               op(SHALE_TXN_GET, "{t}x", NULL)};
    shale_txn_op_t other[] = {op(SHALE_TXN_GET, "{t}x", NULL)};
    shale_txn_t t = {&absent, 1, create, 3, other, 1};
    int ok = -1;
    shale_item_result_t *res = NULL;
    size_t n = 0;
    ck_assert_int_eq(shale_txn(c, &t, &ok, &res, &n), SHALE_OK);
    ck_assert_int_eq(ok, 1);
    ck_assert_uint_eq(n, 3);
    uint64_t vx = res[0].version;
    ck_assert_uint_gt(vx, 0);
    ck_assert_uint_gt(res[1].version, vx);
    ck_assert_int_eq(res[2].found, 1);
    ck_assert_uint_eq(res[2].version, vx);
    ck_assert_uint_eq(res[2].len, 1);
    ck_assert_int_eq(memcmp(res[2].data, "1", 1), 0);
    shale_item_results_free(res, n);
    free(res);

    /* Again: {t}x exists now, the failure branch runs (a get). */
    ck_assert_int_eq(shale_txn(c, &t, &ok, &res, &n), SHALE_OK);
    ck_assert_int_eq(ok, 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(res[0].found, 1);
    ck_assert_uint_eq(res[0].version, vx);
    shale_item_results_free(res, n);
    free(res);

    /* value(y) = a and version(x) = vx: delete y, put x. */
    shale_txn_compare_t both[] = {
        {.key = "{t}y", .klen = 4, .target = SHALE_TXN_VALUE, .cmp = SHALE_TXN_EQUAL,
         .value = "a", .vlen = 1},
        {.key = "{t}x", .klen = 4, .target = SHALE_TXN_VERSION, .cmp = SHALE_TXN_EQUAL,
         .version = vx},
    };
    shale_txn_op_t then[] = {op(SHALE_TXN_DEL, "{t}y", NULL), op(SHALE_TXN_PUT, "{t}x", "2")};
    shale_txn_t t2 = {both, 2, then, 2, NULL, 0};
    ck_assert_int_eq(shale_txn(c, &t2, &ok, &res, &n), SHALE_OK);
    ck_assert_int_eq(ok, 1);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(res[0].found, 1); /* existed */
    ck_assert_uint_gt(res[1].version, vx);
    shale_item_results_free(res, n);
    free(res);
    shale_value_t v;
    ck_assert_int_eq(shale_get(c, "{t}y", 4, NULL, &v), SHALE_OK);
    ck_assert_int_eq(v.found, 0);
    shale_value_free(&v);

    /* Two slots: refused by the router, nothing written. */
    const char *far = "{u}far";
    ck_assert_uint_ne(shale_key_slot(far, strlen(far), SLOTS), shale_key_slot("t", 1, SLOTS));
    shale_txn_op_t cross[] = {op(SHALE_TXN_PUT, "{t}z", "1"), op(SHALE_TXN_PUT, far, "1")};
    shale_txn_t t3 = {NULL, 0, cross, 2, NULL, 0};
    ck_assert_int_eq(shale_txn(c, &t3, &ok, &res, &n), SHALE_ECROSSSLOT);
    ck_assert_ptr_nonnull(strstr(shale_errmsg(c), "one slot"));
    ck_assert_int_eq(shale_get(c, "{t}z", 4, NULL, &v), SHALE_OK);
    ck_assert_int_eq(v.found, 0);
    shale_value_free(&v);

    /* And by the node itself, reached directly. */
    shale_client_t *direct = connect_to(g_cl.groups[0].addrs);
    ck_assert_int_eq(shale_txn(direct, &t3, &ok, &res, &n), SHALE_ECROSSSLOT);
    shale_close(direct);
}

/* A TXN with a Session sent twice through the router: one apply, the
 * second answer is the first one (duplicate). */
static void check_retry_once(void)
{
    Shale__TxnOp put = SHALE__TXN_OP__INIT, get = SHALE__TXN_OP__INIT;
    Shale__TxnOp *ops[2] = {&put, &get};
    put.type = SHALE__TXN_OP_TYPE__TXN_PUT;
    put.key.data = (uint8_t *)"{t}once";
    put.key.len = 7;
    put.has_value = 1;
    put.value.data = (uint8_t *)"v";
    put.value.len = 1;
    get.type = SHALE__TXN_OP_TYPE__TXN_GET;
    get.key = put.key;
    Shale__Session ses = SHALE__SESSION__INIT;
    ses.client_id = 0x7e57000000000001ull;
    ses.seq = 1;
    Shale__TxnRequest x = SHALE__TXN_REQUEST__INIT;
    x.n_success = 2;
    x.success = ops;
    x.session = &ses;
    uint64_t first_version = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = th_raw_connect_hello(g_router.host, g_router.port, NULL);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(th_raw_send_msg(fd, SHALE_MSG_TXN_REQ, 9, &x), 0);
        th_frame_t f;
        ck_assert_int_eq(th_raw_recv(fd, &f), 0);
        ck_assert_msg(f.type == SHALE_MSG_TXN_RESP, "answer %s error %d",
                      frame_type_name(f.type), th_frame_error_code(&f));
        Shale__TxnResponse *r =
            (Shale__TxnResponse *)wire_unpack(SHALE_MSG_TXN_RESP, f.payload, f.len);
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(r->succeeded, 1);
        ck_assert_uint_eq(r->n_results, 2);
        ck_assert_int_eq(r->has_duplicate && r->duplicate, attempt == 1);
        if (attempt == 0)
            first_version = r->results[0]->version;
        ck_assert_uint_eq(r->results[0]->version, first_version);
        ck_assert_uint_eq(r->results[1]->version, first_version);
        ck_assert_int_eq(r->results[1]->found, 1);
        shale__txn_response__free_unpacked(r, NULL);
        th_frame_free(&f);
        th_raw_close(fd);
    }
    /* Applied once: the key still has the first version. */
    shale_client_t *c = connect_to(g_router.addr);
    shale_value_t v;
    ck_assert_int_eq(shale_get(c, "{t}once", 7, NULL, &v), SHALE_OK);
    ck_assert_int_eq(v.found, 1);
    ck_assert_uint_eq(v.version, first_version);
    shale_value_free(&v);
    shale_close(c);
}

/* ---- The bank ------------------------------------------------------------*/

static const char *acct_key(int i)
{
    static const char *const k[NACCT] = {"{bank}a0", "{bank}a1", "{bank}a2", "{bank}a3",
                                         "{bank}a4"};
    return k[i];
}

typedef struct bank_state {
    long long bal[NACCT];
    uint64_t ver[NACCT];
} bank_state_t;

/* Read every account with one get-only txn. SHALE_OK or the error. */
static int bank_read(shale_client_t *c, bank_state_t *st)
{
    shale_txn_op_t gets[NACCT];
    for (int i = 0; i < NACCT; i++)
        gets[i] = op(SHALE_TXN_GET, acct_key(i), NULL);
    shale_txn_t t = {NULL, 0, gets, NACCT, NULL, 0};
    int ok = 0;
    shale_item_result_t *res = NULL;
    size_t n = 0;
    int rv = shale_txn(c, &t, &ok, &res, &n);
    if (rv != SHALE_OK)
        return rv;
    ck_assert_int_eq(ok, 1);
    ck_assert_uint_eq(n, NACCT);
    for (int i = 0; i < NACCT; i++) {
        char buf[32];
        ck_assert_msg(res[i].found, "account %d missing", i);
        snprintf(buf, sizeof(buf), "%.*s", (int)res[i].len, (const char *)res[i].data);
        st->bal[i] = atoll(buf);
        st->ver[i] = res[i].version;
    }
    shale_item_results_free(res, n);
    free(res);
    return SHALE_OK;
}

static volatile int g_stop;
static long g_transfers[NWRITERS], g_conflicts[NWRITERS], g_errors[NWRITERS + 1];
static long g_reads, g_bad_sums;

static void *writer(void *arg)
{
    int w = (int)(intptr_t)arg;
    unsigned seed = 1234u + (unsigned)w;
    shale_client_t *c = connect_to(g_router.addr);
    while (!g_stop) {
        bank_state_t st;
        if (bank_read(c, &st) != SHALE_OK) {
            g_errors[w]++;
            usleep(20 * 1000);
            continue;
        }
        int a = rand_r(&seed) % NACCT, b = rand_r(&seed) % NACCT;
        if (a == b || st.bal[a] == 0)
            continue;
        long long amt = 1 + rand_r(&seed) % st.bal[a];
        char va[32], vb[32];
        snprintf(va, sizeof(va), "%lld", st.bal[a] - amt);
        snprintf(vb, sizeof(vb), "%lld", st.bal[b] + amt);
        shale_txn_compare_t cmp[2] = {
            {.key = acct_key(a), .klen = strlen(acct_key(a)), .target = SHALE_TXN_VERSION,
             .cmp = SHALE_TXN_EQUAL, .version = st.ver[a]},
            {.key = acct_key(b), .klen = strlen(acct_key(b)), .target = SHALE_TXN_VERSION,
             .cmp = SHALE_TXN_EQUAL, .version = st.ver[b]},
        };
        shale_txn_op_t puts[2] = {op(SHALE_TXN_PUT, acct_key(a), va),
                                  op(SHALE_TXN_PUT, acct_key(b), vb)};
        shale_txn_t t = {cmp, 2, puts, 2, NULL, 0};
        int ok = 0;
        int rv = shale_txn(c, &t, &ok, NULL, NULL);
        if (rv != SHALE_OK)
            g_errors[w]++; /* e.g. TIMEOUT across the leader kill: the invariant still holds */
        else if (ok)
            g_transfers[w]++;
        else
            g_conflicts[w]++;
    }
    shale_close(c);
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    shale_client_t *c = connect_to(g_router.addr);
    while (!g_stop) {
        bank_state_t st;
        if (bank_read(c, &st) != SHALE_OK) {
            g_errors[NWRITERS]++;
            usleep(20 * 1000);
            continue;
        }
        long long sum = 0;
        for (int i = 0; i < NACCT; i++) {
            if (st.bal[i] < 0)
                g_bad_sums++;
            sum += st.bal[i];
        }
        if (sum != (long long)NACCT * START_BAL) {
            fprintf(stderr, "test_txn: reader saw sum %lld\n", sum);
            g_bad_sums++;
        }
        g_reads++;
    }
    shale_close(c);
    return NULL;
}

static long total(const long *v, int n)
{
    long s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return s;
}

/* shalectl against the meta group: exit code, output in out. */
static char g_out[16384];
#define CTL(...) th_shalectl(g_out, sizeof(g_out), "--meta %s " __VA_ARGS__)

/* The group owning slot in the newest map a meta member has. */
static uint64_t slot_owner(uint32_t slot, uint64_t *epoch)
{
    Shale__ClusterMap *best = NULL;
    for (int i = 0; i < g_cl.meta.n; i++) {
        Shale__ClusterMap *m = NULL;
        if (th_map_get(g_cl.meta.nodes[i].addr, 0, 0, &m) != SHALE_OK)
            continue;
        if (best == NULL || m->epoch > best->epoch) {
            if (best != NULL)
                shale__cluster_map__free_unpacked(best, NULL);
            best = m;
        } else {
            shale__cluster_map__free_unpacked(m, NULL);
        }
    }
    ck_assert_ptr_nonnull(best);
    uint64_t g = cmap_slot_group(best, slot);
    if (epoch != NULL)
        *epoch = best->epoch;
    shale__cluster_map__free_unpacked(best, NULL);
    return g;
}

enum { BANK_PLAIN, BANK_KILL_LEADER, BANK_SLOT_MOVES };

static void run_bank(int mode)
{
    int kill_leader = mode == BANK_KILL_LEADER;
    shale_client_t *c = connect_to(g_router.addr);
    /* Open the accounts once (create only if absent). */
    shale_txn_compare_t absent = {.key = acct_key(0), .klen = strlen(acct_key(0)),
                                  .target = SHALE_TXN_EXISTS, .cmp = SHALE_TXN_EQUAL, .exists = 0};
    shale_txn_op_t init[NACCT];
    char start[16];
    snprintf(start, sizeof(start), "%d", START_BAL);
    for (int i = 0; i < NACCT; i++)
        init[i] = op(SHALE_TXN_PUT, acct_key(i), start);
    shale_txn_t t = {&absent, 1, init, NACCT, NULL, 0};
    int ok = 0;
    ck_assert_int_eq(shale_txn(c, &t, &ok, NULL, NULL), SHALE_OK);

    memset(g_transfers, 0, sizeof(g_transfers));
    memset(g_conflicts, 0, sizeof(g_conflicts));
    memset(g_errors, 0, sizeof(g_errors));
    g_reads = g_bad_sums = 0;
    g_stop = 0;
    pthread_t th[NWRITERS + 1];
    for (int i = 0; i < NWRITERS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i), 0);
    ck_assert_int_eq(pthread_create(&th[NWRITERS], NULL, reader, NULL), 0);
    sleep(2);
    long at_kill = total(g_transfers, NWRITERS);
    if (kill_leader) {
        int leader = th_group_wait_leader(&g_cl.groups[0], 10000);
        ck_assert_int_ge(leader, 0);
        fprintf(stderr, "test_txn: killing group leader %s\n",
                g_cl.groups[0].nodes[leader].addr);
        th_node_stop(&g_cl.groups[0].nodes[leader], SIGKILL);
        ck_assert_int_ge(th_group_wait_leader(&g_cl.groups[0], 20000), 0);
        sleep(3);
    } else if (mode == BANK_SLOT_MOVES) {
        /* Move the accounts' slot to the other group and back while the
         * transfers run: the txns' writes must travel with the slot (the
         * changelog), and the fence must refuse, not lose, txns. */
        uint32_t slot = shale_key_slot("bank", 4, SLOTS);
        uint64_t from = slot_owner(slot, NULL), to = from == 1 ? 2 : 1;
        for (int i = 0; i < 2; i++) {
            long before = total(g_transfers, NWRITERS);
            int rc = CTL("slot move %u %llu", g_cl.meta.addrs, slot, (unsigned long long)to);
            ck_assert_msg(rc == 0, "slot move %u -> %llu: %s", slot, (unsigned long long)to,
                          g_out);
            uint64_t epoch = 0;
            ck_assert_uint_eq(slot_owner(slot, &epoch), to);
            ck_assert_int_eq(th_cluster_wait_epoch(&g_cl, epoch, 20000), 0);
            fprintf(stderr, "test_txn: slot %u moved to group %llu (%ld transfers during)\n", slot,
                    (unsigned long long)to, total(g_transfers, NWRITERS) - before);
            uint64_t t = from;
            from = to;
            to = t;
            sleep(1);
        }
    } else {
        sleep(2);
    }
    sleep(1);
    g_stop = 1;
    for (int i = 0; i <= NWRITERS; i++)
        pthread_join(th[i], NULL);
    fprintf(stderr,
            "test_txn: bank%s: %ld transfers, %ld conflicts, %ld errors, %ld reads, %ld bad sums\n",
            kill_leader ? " (leader killed)" : mode == BANK_SLOT_MOVES ? " (slot moved twice)" : "", total(g_transfers, NWRITERS),
            total(g_conflicts, NWRITERS), total(g_errors, NWRITERS + 1), g_reads, g_bad_sums);
    ck_assert_int_eq(g_bad_sums, 0);
    ck_assert_int_gt(total(g_transfers, NWRITERS), 0);
    ck_assert_int_gt(g_reads, 0);
    /* Transfers went on after the kill (a new leader served them). */
    ck_assert_int_gt(at_kill, 0);
    ck_assert_int_gt(total(g_transfers, NWRITERS), at_kill);
    bank_state_t st;
    int rv = SHALE_EUNAVAILABLE;
    for (int i = 0; i < 50 && rv != SHALE_OK; i++) {
        rv = bank_read(c, &st);
        if (rv != SHALE_OK)
            usleep(100 * 1000);
    }
    ck_assert_int_eq(rv, SHALE_OK);
    long long sum = 0;
    for (int i = 0; i < NACCT; i++)
        sum += st.bal[i];
    ck_assert_int_eq(sum, (long long)NACCT * START_BAL);
    shale_close(c);
}

/* The read-modify-write ops through libshale's txn API: ADD and APPEND
 * return the new value, in order within the txn; a put's TTL, keep_ttl,
 * EXPIRE (set, removed, absent key not created); a failing ADD applies
 * nothing of its txn. */
static void check_rmw(shale_client_t *c)
{
    shale_txn_op_t ops[] = {op(SHALE_TXN_ADD, "{r}n", NULL), op(SHALE_TXN_ADD, "{r}n", NULL),
                            op(SHALE_TXN_APPEND, "{r}s", "ab"), op(SHALE_TXN_APPEND, "{r}s", "ab")};
    ops[0].delta = 5;
    ops[1].delta = -7;
    shale_txn_t t = {NULL, 0, ops, 4, NULL, 0};
    int ok = -1;
    shale_item_result_t *res = NULL;
    size_t n = 0;
    ck_assert_int_eq(shale_txn(c, &t, &ok, &res, &n), SHALE_OK);
    ck_assert_int_eq(ok, 1);
    ck_assert_uint_eq(n, 4);
    const char *want[] = {"5", "-2", "ab", "abab"};
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(res[i].len == strlen(want[i]) &&
                          memcmp(res[i].data, want[i], res[i].len) == 0,
                      "op %d: %.*s", i, (int)res[i].len, (const char *)res[i].data);
        ck_assert_uint_gt(res[i].version, 0);
    }
    shale_item_results_free(res, n);
    free(res);

    /* A put with a TTL, a put keeping it, EXPIRE removing and setting it. */
    int64_t ttl = 0;
    shale_txn_op_t p = op(SHALE_TXN_PUT, "{r}t", "v");
    p.ttl_ms = 100000;
    t = (shale_txn_t){NULL, 0, &p, 1, NULL, 0};
    ck_assert_int_eq(shale_txn(c, &t, &ok, NULL, NULL), SHALE_OK);
    ck_assert_int_eq(shale_ttl(c, "{r}t", 4, NULL, &ttl), SHALE_OK);
    ck_assert_msg(ttl > 90000 && ttl <= 100000, "ttl %lld", (long long)ttl);
    p = op(SHALE_TXN_PUT, "{r}t", "w");
    p.keep_ttl = 1;
    ck_assert_int_eq(shale_txn(c, &t, &ok, NULL, NULL), SHALE_OK);
    ck_assert_int_eq(shale_ttl(c, "{r}t", 4, NULL, &ttl), SHALE_OK);
    ck_assert_msg(ttl > 90000 && ttl <= 100000, "keep_ttl: ttl %lld", (long long)ttl);
    shale_txn_op_t e[] = {op(SHALE_TXN_EXPIRE, "{r}t", NULL), op(SHALE_TXN_EXPIRE, "{r}none", NULL),
                          op(SHALE_TXN_GET, "{r}t", NULL)};
    t = (shale_txn_t){NULL, 0, e, 3, NULL, 0};
    ck_assert_int_eq(shale_txn(c, &t, &ok, &res, &n), SHALE_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(res[0].found, 1);
    ck_assert_int_eq(res[1].found, 0);
    ck_assert_msg(res[2].found && res[2].len == 1 && res[2].data[0] == 'w', "value kept");
    shale_item_results_free(res, n);
    free(res);
    ck_assert_int_eq(shale_ttl(c, "{r}t", 4, NULL, &ttl), SHALE_OK);
    ck_assert_int_eq(ttl, -1);
    ck_assert_int_eq(shale_ttl(c, "{r}none", 7, NULL, &ttl), SHALE_ENOTFOUND);
    e[0].ttl_ms = 500000;
    t.nsuccess = 1;
    ck_assert_int_eq(shale_txn(c, &t, &ok, NULL, NULL), SHALE_OK);
    ck_assert_int_eq(shale_ttl(c, "{r}t", 4, NULL, &ttl), SHALE_OK);
    ck_assert_msg(ttl > 400000, "expire: ttl %lld", (long long)ttl);

    /* ADD on "abab": the whole txn fails, its put is not applied. */
    shale_txn_op_t bad[] = {op(SHALE_TXN_PUT, "{r}u", "1"), op(SHALE_TXN_ADD, "{r}s", NULL)};
    bad[1].delta = 1;
    t = (shale_txn_t){NULL, 0, bad, 2, NULL, 0};
    ck_assert_int_eq(shale_txn(c, &t, &ok, NULL, NULL), SHALE_EINVAL);
    shale_value_t v;
    ck_assert_int_eq(shale_get(c, "{r}u", 4, NULL, &v), SHALE_OK);
    ck_assert_int_eq(v.found, 0);
    shale_value_free(&v);
}

/* shalectl txn through the router: text and --json, exit 0 / 1. */
static void check_shalectl(void)
{
    static char out[8192];
    int rc = th_shalectl(out, sizeof(out),
                         "--router %s txn --if 'missing({c}n)' --then 'put {c}n hello world' "
                         "--then 'get {c}n' --else 'get {c}n'",
                         g_router.addr);
    ck_assert_msg(rc == 0, "txn: exit %d: %s", rc, out);
    ck_assert_msg(strstr(out, "succeeded") != NULL && strstr(out, "put {c}n: version ") != NULL &&
                      strstr(out, "get {c}n: hello world (version ") != NULL,
                  "%s", out);
    rc = th_shalectl(out, sizeof(out),
                     "--router %s --json txn --if 'missing({c}n)' --if 'value({c}n) = hello world' "
                     "--then 'del {c}n' --else 'get {c}n'",
                     g_router.addr);
    ck_assert_msg(rc == 1, "txn with a false condition: exit %d: %s", rc, out);
    ck_assert_msg(strstr(out, "{\"succeeded\":false,\"results\":[{\"op\":\"get\",\"key\":"
                              "\"{c}n\",\"found\":true,\"version\":") != NULL &&
                      strstr(out, "\"value\":\"hello world\"}]}") != NULL,
                  "%s", out);
    rc = th_shalectl(out, sizeof(out), "--router %s txn --then 'put {c}a 1' --then 'put {d}b 2'",
                     g_router.addr);
    ck_assert_msg(rc == 1 && strstr(out, "one slot") != NULL, "cross-slot: exit %d: %s", rc, out);
    /* The read-modify-write ops and a put's TTL options. */
    rc = th_shalectl(out, sizeof(out),
                     "--router %s txn --then 'add {c}k 41' --then 'add {c}k 1' --then 'append {c}s "
                     "x y' --then 'put:ttl=60000 {c}t v' --then 'expire {c}t 0' --then "
                     "'put:keepttl {c}t w' --then 'expire {c}none 5000'",
                     g_router.addr);
    ck_assert_msg(rc == 0, "txn rmw: exit %d: %s", rc, out);
    ck_assert_msg(strstr(out, "add {c}k: 41 (version ") != NULL &&
                      strstr(out, "add {c}k: 42 (version ") != NULL &&
                      strstr(out, "append {c}s: x y (version ") != NULL &&
                      strstr(out, "put {c}t: version ") != NULL &&
                      strstr(out, "expire {c}t: TTL removed (version ") != NULL &&
                      strstr(out, "expire {c}none: not found") != NULL,
                  "%s", out);
    rc =
        th_shalectl(out, sizeof(out), "--router %s --json txn --then 'add {c}k -2'", g_router.addr);
    ck_assert_msg(rc == 0 && strstr(out, "{\"op\":\"add\",\"key\":\"{c}k\",\"version\":") != NULL &&
                      strstr(out, "\"value\":\"40\"}") != NULL,
                  "txn add --json: exit %d: %s", rc, out);
    rc = th_shalectl(out, sizeof(out),
                     "--router %s txn --then 'put:ttl=60000 {c}t v' --then "
                     "'expire {c}t 90000'",
                     g_router.addr);
    ck_assert_msg(rc == 0, "%s", out);
    rc = th_shalectl(out, sizeof(out), "--router %s ttl {c}t", g_router.addr);
    ck_assert_msg(rc == 0 && atol(out) > 80000, "ttl after expire: %s", out);
    rc = th_shalectl(out, sizeof(out), "--router %s txn --then 'add {c}k x'", g_router.addr);
    ck_assert_msg(rc != 0 && strstr(out, "DELTA is a signed 64-bit number") != NULL, "%s", out);
    rc = th_shalectl(out, sizeof(out), "--router %s txn --then 'put:ttl=0 {c}k 1'", g_router.addr);
    ck_assert_msg(rc != 0 && strstr(out, "put:ttl=MS") != NULL, "%s", out);
    rc = th_shalectl(out, sizeof(out), "--router %s txn --then 'add {c}s 1'", g_router.addr);
    ck_assert_msg(rc != 0 && strstr(out, "integer") != NULL, "add on a string: %s", out);
}

START_TEST(test_txn_through_router)
{
    start_cluster();
    shale_client_t *c = connect_to(g_router.addr);
    check_branches(c);
    check_rmw(c);
    shale_close(c);
    check_shalectl();
    check_retry_once();
    run_bank(BANK_PLAIN);
    run_bank(BANK_KILL_LEADER);
    th_node_stop(&g_router, SIGTERM);
    ck_assert_int_eq(th_log_sanitizer_errors(&g_router), 0);
    stop_cluster();
}
END_TEST

/* The bank while its slot moves between two groups and back. */
START_TEST(test_txn_slot_move)
{
    start_cluster_n(2, 1);
    run_bank(BANK_SLOT_MOVES);
    th_node_stop(&g_router, SIGTERM);
    ck_assert_int_eq(th_log_sanitizer_errors(&g_router), 0);
    stop_cluster();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("txn");
    TCase *tc = tcase_create("router");
    tcase_set_timeout(tc, 290);
    tcase_add_checked_fixture(tc, NULL, stop_cluster);
    tcase_add_test(tc, test_txn_through_router);
    tcase_add_test(tc, test_txn_slot_move);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
