/* Backup and restore through shalectl, with real processes (TLS and users
 * on: the harness's secure default). docs/operations.md, "Back up and
 * restore". What it proves:
 *  - shalectl backup under a concurrent writer: then restored (shalectl
 *    restore) into a NEW cluster with a different group count (2 -> 3) and
 *    slot count (256 -> 128): every write acknowledged before the backup
 *    started is there with its value, no write sent after the backup
 *    finished is there, a key with a TTL keeps one, and the users come
 *    along (a restored user logs in with its old password);
 *  - the migration hold: the backup clears it; a hold in the map refuses a
 *    slot move and a second backup, and backup release clears it;
 *  - a backup with one byte flipped in a group file is refused by backup
 *    verify and by restore, naming the file, and restore writes nothing.
 *
 * Hosts: 127.0.0.60.. (cluster A: meta 60-62, groups 70-72, 80-82, router
 * 65), 127.0.0.130.. (cluster B: meta 130-132, groups 140, 150, 160,
 * router 135). */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmap.h"
#include "harness_cluster.h"
#include "shale.h"

#define PRE_KEYS 3000
#define VLEN 180
#define MAXW 200000

static th_cluster_t g_a, g_b;
static th_node_t g_ra, g_rb;
static char *g_base;
static char g_out[262144];

/* shalectl with args against meta; exit code, stdout+stderr in g_out. */
static int ctl_at(const char *meta, const char *router, const char *const *args)
{
    char cmd[8192];
    int n = snprintf(cmd, sizeof(cmd), "%s/cluster/shalectl --meta %s --timeout 10000",
                     th_bin_dir(), meta);
    if (router != NULL)
        n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, " --router %s", router);
    for (int i = 0; args[i] != NULL; i++)
        n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, " '%s'", args[i]);
    snprintf(cmd + n, sizeof(cmd) - (size_t)n, " 2>&1");
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t r = fread(g_out, 1, sizeof(g_out) - 1, p);
    ck_assert_msg(r < sizeof(g_out) - 1, "shalectl output overflowed the test's buffer");
    g_out[r] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The end of g_out, for messages (Check limits a message's length); the
 * whole output goes to stderr. */
static const char *tail(void)
{
    size_t n = strlen(g_out);
    fprintf(stderr, "shalectl output:\n%s\n", g_out);
    return n > 1500 ? g_out + n - 1500 : g_out;
}

static void start_cluster(th_cluster_t *c, th_node_t *router, int ngroups, int voters, int first,
                          const char *rhost, uint32_t slots, const char *tag)
{
    char base[600];
    snprintf(base, sizeof(base), "%s/%s", g_base, tag);
    ck_assert_int_eq(mkdir(base, 0755), 0);
    ck_assert_int_eq(th_cluster_start(c, ngroups, voters, first, base, NULL), 0);
    ck_assert_int_eq(th_cluster_init(c, slots, 30000), 0);
    ck_assert_int_eq(th_cluster_router(router, c, rhost, base), 0);
    long long end = th_now_ms() + 20000;
    while (th_router_epoch(router) < 1 && th_now_ms() < end)
        usleep(20 * 1000);
    ck_assert_uint_ge(th_router_epoch(router), 1);
}

static shale_client_t *connect_to(const char *addrs)
{
    char err[SHALE_ERRMSG_LEN] = "";
    shale_client_t *c = th_connect(addrs, 15000, 10000, err);
    ck_assert_msg(c != NULL, "connect to %s: %s", addrs, err);
    return c;
}

static void value_of(const char *tag, long i, char *v)
{
    int n = snprintf(v, VLEN, "%s%ld:", tag, i);
    for (int k = n; k < VLEN; k++)
        v[k] = (char)('a' + (i * 11 + k) % 26);
}

/* ---- The writer: unique keys w<i>, times of send and acknowledgement ----------*/

typedef struct wrec {
    long long sent, acked; /* 0: not acknowledged */
} wrec_t;

static wrec_t *g_w;
static volatile int g_stop;
static long g_nw;

static void *writer(void *arg)
{
    (void)arg;
    shale_client_t *c = connect_to(g_ra.addr);
    char k[32], v[VLEN];
    for (long i = 0; i < MAXW && !g_stop; i++) {
        int kl = snprintf(k, sizeof(k), "w%ld", i);
        value_of("w", i, v);
        g_w[i].sent = th_now_ms();
        if (shale_put(c, k, (size_t)kl, v, VLEN, NULL) == SHALE_OK)
            g_w[i].acked = th_now_ms();
        __atomic_store_n(&g_nw, i + 1, __ATOMIC_RELEASE);
    }
    shale_close(c);
    return NULL;
}

static void preload(void)
{
    shale_client_t *c = connect_to(g_ra.addr);
    enum { B = 100 };
    char keys[B][16], vals[B][VLEN];
    shale_item_t items[B];
    shale_item_result_t res[B];
    for (int at = 0; at < PRE_KEYS; at += B) {
        for (int i = 0; i < B; i++) {
            int kl = snprintf(keys[i], sizeof(keys[i]), "p%d", at + i);
            value_of("p", at + i, vals[i]);
            items[i] = (shale_item_t){keys[i], (size_t)kl, vals[i], VLEN};
        }
        ck_assert_int_eq(shale_mput(c, items, B, res), SHALE_OK);
        for (int i = 0; i < B; i++)
            ck_assert_int_eq(res[i].status, SHALE_OK);
        shale_item_results_free(res, B);
    }
    /* A key with a long TTL, and a hash-tagged pair. */
    ck_assert_int_eq(shale_put_ttl(c, "ttlkey", 6, "tv", 2, 3600000, NULL), SHALE_OK);
    ck_assert_int_eq(shale_put(c, "{t}a", 4, "A", 1, NULL), SHALE_OK);
    ck_assert_int_eq(shale_put(c, "{t}b", 4, "B", 1, NULL), SHALE_OK);
    shale_close(c);
}

/* 1 found (*v: shale_value_free), 0 absent; any error fails the test. */
static int get_key(shale_client_t *c, const char *k, shale_value_t *v)
{
    memset(v, 0, sizeof(*v));
    int rv = shale_get(c, k, strlen(k), NULL, v);
    ck_assert_msg(rv == SHALE_OK, "get %s: %s", k, shale_strerror(rv));
    if (!v->found)
        shale_value_free(v);
    return v->found;
}

static void flip_byte(const char *path, long at)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    unsigned char b;
    ck_assert_int_eq(pread(fd, &b, 1, at), 1);
    b ^= 0x01;
    ck_assert_int_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

static int hold_of(const th_cluster_t *c, char *out, size_t len)
{
    Shale__ClusterMap *m = th_map_newest(c);
    ck_assert_ptr_nonnull(m);
    int held = m->migration_hold != NULL && m->migration_hold[0] != '\0';
    snprintf(out, len, "%s", held ? m->migration_hold : "");
    cmap_free(m);
    return held;
}

START_TEST(test_backup_restore)
{
    g_base = th_tmpdir("backup");
    start_cluster(&g_a, &g_ra, 2, 3, 60, "127.0.0.65", 256, "a");
    const char *ma = g_a.meta.addrs;
    /* A user that must come along. */
    char pwf[700];
    snprintf(pwf, sizeof(pwf), "%s/bkuser.pw", g_base);
    FILE *f = fopen(pwf, "w");
    ck_assert_ptr_nonnull(f);
    fputs("bk-secret-pw\n", f);
    fclose(f);
    {
        const char *a[] = {"user", "add", "bkuser", "--role", "readwrite", "--password-file", pwf,
                           NULL};
        ck_assert_msg(ctl_at(ma, NULL, a) == 0, "user add: %s", tail());
    }
    preload();

    /* ---- The hold: refuses a slot move and a second backup; release clears. */
    {
        Shale__ClusterMap *m = th_map_newest(&g_a);
        ck_assert_ptr_nonnull(m);
        Shale__ClusterMap *next = cmap_copy(m);
        free(next->migration_hold);
        next->migration_hold = strdup("test hold");
        ck_assert_int_eq(th_map_cas(ma, m->epoch, next, 0, 0, NULL, NULL, NULL), 0);
        cmap_free(next);
        cmap_free(m);
        char h[256];
        ck_assert_int_eq(hold_of(&g_a, h, sizeof(h)), 1);
        /* An operator sees it in the map, text and JSON. */
        const char *mp[] = {"map", NULL};
        ck_assert_msg(ctl_at(ma, NULL, mp) == 0 && strstr(g_out, "migrations held: test hold") != NULL,
                      "map while held: %s", tail());
        const char *mj[] = {"--json", "map", NULL};
        ck_assert_msg(ctl_at(ma, NULL, mj) == 0 &&
                      strstr(g_out, "\"migration_hold\":\"test hold\"") != NULL,
                      "map --json while held: %s", tail());
        const char *mv[] = {"slot", "move", "0", "2", NULL};
        int rc = ctl_at(ma, NULL, mv);
        ck_assert_msg(rc != 0 && strstr(g_out, "held") != NULL, "slot move while held -> %d: %s",
                      rc, tail());
        char d[700];
        snprintf(d, sizeof(d), "%s/bk-refused", g_base);
        const char *bk[] = {"backup", d, NULL};
        rc = ctl_at(ma, NULL, bk);
        ck_assert_msg(rc == 4 && strstr(g_out, "already held") != NULL, "backup while held -> "
                      "%d: %s", rc, tail());
        const char *rel[] = {"backup", "release", NULL};
        ck_assert_msg(ctl_at(ma, NULL, rel) == 0, "release: %s", tail());
        ck_assert_int_eq(hold_of(&g_a, h, sizeof(h)), 0);
        ck_assert_msg(ctl_at(ma, NULL, mj) == 0 && strstr(g_out, "\"migration_hold\":null") != NULL,
                      "map --json after release: %s", tail());
    }

    /* ---- Backup under a concurrent writer. */
    g_w = calloc(MAXW, sizeof(*g_w));
    ck_assert_ptr_nonnull(g_w);
    g_stop = 0;
    pthread_t wt;
    ck_assert_int_eq(pthread_create(&wt, NULL, writer, NULL), 0);
    while (__atomic_load_n(&g_nw, __ATOMIC_ACQUIRE) < 300)
        usleep(10 * 1000);
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/bk", g_base);
    long long t_start = th_now_ms();
    const char *bk[] = {"backup", dir, NULL};
    int rc = ctl_at(ma, NULL, bk);
    long long t_end = th_now_ms();
    ck_assert_msg(rc == 0, "backup -> %d:\n%s", rc, tail());
    ck_assert_msg(strstr(g_out, "MB/s") != NULL, "no progress output: %s", tail());
    /* Writes continue after the cut; then stop. */
    long after = __atomic_load_n(&g_nw, __ATOMIC_ACQUIRE);
    while (__atomic_load_n(&g_nw, __ATOMIC_ACQUIRE) < after + 300)
        usleep(10 * 1000);
    g_stop = 1;
    pthread_join(wt, NULL);
    long nw = g_nw;
    char h[256];
    ck_assert_msg(hold_of(&g_a, h, sizeof(h)) == 0, "the backup left the hold: %s", h);
    fprintf(stderr, "backup output:\n%s\n", g_out);

    /* ---- verify: intact; then a damaged copy is refused by name. */
    const char *vf[] = {"backup", "verify", dir, NULL};
    ck_assert_msg(ctl_at(ma, NULL, vf) == 0 && strstr(g_out, "intact") != NULL, "verify: %s",
                  tail());
    char bad[700], cmd[2048];
    snprintf(bad, sizeof(bad), "%s/bk-bad", g_base);
    snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s'", dir, bad);
    ck_assert_int_eq(system(cmd), 0);
    char gf[800];
    snprintf(gf, sizeof(gf), "%s/group-1.shb", bad);
    flip_byte(gf, 200);
    const char *vb[] = {"backup", "verify", bad, NULL};
    rc = ctl_at(ma, NULL, vb);
    ck_assert_msg(rc == 1 && strstr(g_out, "group-1.shb") != NULL &&
                  strstr(g_out, "SHA-256 mismatch") != NULL, "verify of a damaged backup -> %d: %s",
                  rc, tail());

    /* The source goes away: the restore needs only the backup. */
    th_node_stop(&g_ra, SIGTERM);
    th_cluster_stop(&g_a);

    /* ---- A new cluster: 3 groups of 1, 128 slots. */
    start_cluster(&g_b, &g_rb, 3, 1, 130, "127.0.0.135", 128, "b");
    const char *mb = g_b.meta.addrs;
    const char *rb[] = {"restore", bad, "--into-same-cluster", NULL};
    rc = ctl_at(mb, g_rb.addr, rb);
    ck_assert_msg(rc == 1 && strstr(g_out, "group-1.shb") != NULL && strstr(g_out, "refused"),
                  "restore of a damaged backup -> %d: %s", rc, tail());
    shale_client_t *c = connect_to(g_rb.addr);
    shale_value_t v;
    ck_assert_int_eq(get_key(c, "p0", &v), 0);
    /* Same cluster id as the source (the harness's default): refused without the flag. */
    const char *rs[] = {"restore", dir, NULL};
    rc = ctl_at(mb, g_rb.addr, rs);
    ck_assert_msg(rc == 4, "restore into a cluster of the same id -> %d: %s", rc, tail());
    const char *r[] = {"restore", dir, "--into-same-cluster", NULL};
    rc = ctl_at(mb, g_rb.addr, r);
    ck_assert_msg(rc == 0, "restore -> %d:\n%s", rc, tail());
    fprintf(stderr, "restore output:\n%s\n", g_out);

    /* ---- The data: preloaded keys, writes acknowledged before the start. */
    char want[VLEN], k[32];
    for (int i = 0; i < PRE_KEYS; i++) {
        snprintf(k, sizeof(k), "p%d", i);
        value_of("p", i, want);
        ck_assert_msg(get_key(c, k, &v) == 1 && v.len == VLEN &&
                      memcmp(v.data, want, VLEN) == 0, "%s missing or wrong after restore", k);
        shale_value_free(&v);
    }
    long before = 0, excluded = 0, between = 0;
    for (long i = 0; i < nw; i++) {
        snprintf(k, sizeof(k), "w%ld", i);
        int grv = get_key(c, k, &v);
        if (g_w[i].acked != 0 && g_w[i].acked < t_start) {
            value_of("w", i, want);
            ck_assert_msg(grv == 1 && v.len == VLEN && memcmp(v.data, want, VLEN) == 0,
                          "%s was acknowledged before the backup started and is missing", k);
            before++;
        } else if (g_w[i].sent > t_end) {
            ck_assert_msg(grv == 0, "%s was sent after the backup finished and "
                          "is in the restored cluster", k);
            excluded++;
        } else {
            between++;
        }
        if (grv == 1)
            shale_value_free(&v);
    }
    fprintf(stderr, "writes: %ld acknowledged before the start (all there), %ld sent after the "
            "end (none there), %ld in between\n", before, excluded, between);
    ck_assert_int_gt(before, 0);
    ck_assert_int_gt(excluded, 0);
    /* TTL kept (some of the hour left), hash-tagged keys. */
    int64_t ttl = 0;
    ck_assert_int_eq(shale_ttl(c, "ttlkey", 6, NULL, &ttl), SHALE_OK);
    ck_assert_msg(ttl > 0 && ttl <= 3600000, "ttl %lld", (long long)ttl);
    ck_assert_int_eq(get_key(c, "{t}b", &v), 1);
    ck_assert_int_eq(v.len, 1);
    shale_value_free(&v);
    shale_close(c);

    /* ---- The user came along with its password. */
    th_set_credential("bkuser", "bk-secret-pw");
    shale_client_t *uc = connect_to(g_rb.addr);
    ck_assert_int_eq(get_key(uc, "p1", &v), 1);
    shale_value_free(&v);
    shale_close(uc);
    th_secure_login(1);

    th_node_stop(&g_rb, SIGTERM);
    th_cluster_stop(&g_b);
    free(g_w);
    th_rmrf(g_base);
    free(g_base);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("backup");
    TCase *tc = tcase_create("backup");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_backup_restore);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
