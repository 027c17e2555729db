/* The Redis protocol on shale-router (--resp; docs/resp.md, issue 15), end
 * to end: the real redis-cli (Debian redis-tools) against a real router in
 * front of a real cluster (a 3-node meta group and two shard groups), under
 * the secure harness (TLS on the RESP port like on the native one; --auth,
 * redis-cli logging in as admin). What it proves:
 *  - connection commands: PING ECHO HELLO 2/3 (with AUTH and SETNAME)
 *    SELECT CLIENT SETNAME/GETNAME/ID COMMAND INFO WAIT READONLY/READWRITE
 *    QUIT, unknown commands and wrong arity in Redis 7's text;
 *  - AUTH: NOAUTH before it, WRONGPASS for a wrong password or user, OK
 *    for the right one;
 *  - strings: GET SET (NX XX GET EX PX EXAT PXAT) SETNX GETSET GETDEL MGET
 *    (across groups) MSET (one slot; CROSSSLOT across slots) DEL UNLINK
 *    EXISTS STRLEN TYPE TTL PTTL INCR INCRBY DECR DECRBY APPEND (their
 *    errors; INCR keeps a TTL), with the values read back natively
 *    (shalectl) too;
 *  - pipelining: 5,000 commands in one redis-cli --pipe stream, every reply
 *    in order; and pipelined SET then GET of one key on a raw connection
 *    sees the SET;
 *  - garbage on the port gets "ERR Protocol error" and a close, and the
 *    router keeps serving other connections;
 *  - (test_resp_leader_kill: one group of 3 voters) redis-benchmark SET /
 *    GET / INCR with 20 connections while the group leader is SIGKILLed:
 *    0 errors.
 * Hosts 127.0.0.80.. (meta), .90 and .100 (groups), .85 (router). */
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmap.h"
#include "harness_cluster.h"
#include "keyhash.h"
#include "obs_util.h"

#define FIRST_HOST 80
#define SLOTS 64
#define RHOST "127.0.0.85"

static th_cluster_t g_cl;
static char *g_base;
static th_node_t g_router;
static int g_resp_port, g_http_port;
static char g_out[1 << 20];

static void start_all(int ngroups, int voters)
{
    g_base = th_tmpdir("resp");
    ck_assert_ptr_nonnull(g_base);
    ck_assert_int_eq(th_cluster_start(&g_cl, ngroups, voters, FIRST_HOST, g_base, NULL), 0);
    ck_assert_int_eq(th_cluster_init(&g_cl, SLOTS, 20000), 0);
    th_node_init(&g_router, 1, RHOST, g_base);
    snprintf(g_router.log, sizeof(g_router.log), "%s/router.log", g_base);
    g_resp_port = th_free_port(RHOST);
    g_http_port = th_free_port(RHOST);
    char resp[64], http[64];
    snprintf(resp, sizeof(resp), "%s:%d", RHOST, g_resp_port);
    snprintf(http, sizeof(http), "%s:%d", RHOST, g_http_port);
    const char *argv[] = {"--listen", g_router.addr, "--meta", g_cl.meta.addrs, "--resp", resp,
                          "--timeout-ms", "10000", "--http", http,
                          /* check_scan's 300 keys fit, one more does not */
                          "--resp-keys-max", "300",
                          /* small: pipelines run into the flow control */
                          "--conn-max-inflight", "64", NULL};
    ck_assert_int_eq(th_router_start(&g_router, argv, 1), 0);
    ck_assert_int_eq(th_router_wait_epoch(&g_router, 1, 20000), 0);
}

static void stop_all(void)
{
    if (g_base == NULL)
        return;
    if (g_router.pid > 0) {
        th_node_stop(&g_router, SIGTERM);
        ck_assert_int_eq(th_log_sanitizer_errors(&g_router), 0);
    }
    th_cluster_stop(&g_cl);
    th_rmrf(g_base);
    free(g_base);
    g_base = NULL;
}

/* The redis-cli flags for the router: TLS files and (login) the admin. */
static void cli_prefix(char *buf, size_t n, int login)
{
    const char *ca = NULL, *crt = NULL, *key = NULL;
    th_tls_files(&ca, &crt, &key);
    int k = snprintf(buf, n, "redis-cli -h %s -p %d", RHOST, g_resp_port);
    if (ca != NULL)
        k += snprintf(buf + k, n - (size_t)k, " --tls --cacert '%s' --cert '%s' --key '%s'", ca,
                      crt, key);
    if (login && th_admin_password() != NULL)
        snprintf(buf + k, n - (size_t)k, " --user admin --pass '%s' --no-auth-warning",
                 th_admin_password());
}

/* Run a shell command; its stdout+stderr in g_out (fails the test by name
 * when it does not fit). Returns the exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    ck_assert_msg(w > 0 && (size_t)w < sizeof(cmd) - 8, "command too long");
    strcat(cmd, " 2>&1");
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = 0, r;
    while ((r = fread(g_out + n, 1, sizeof(g_out) - 1 - n, f)) > 0)
        n += r;
    ck_assert_msg(n < sizeof(g_out) - 1, "output of '%.200s' over %zu bytes", cmd, sizeof(g_out));
    g_out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* redis-cli (logged in) with args; g_out holds its output without the
 * final newline. */
static const char *cli(const char *args)
{
    char pre[2048];
    cli_prefix(pre, sizeof(pre), 1);
    sh("%s %s", pre, args);
    size_t n = strlen(g_out);
    while (n > 0 && g_out[n - 1] == '\n')
        g_out[--n] = '\0';
    return g_out;
}

#define CLI_EQ(args, want)                                                                       \
    do {                                                                                         \
        const char *got_ = cli(args);                                                            \
        ck_assert_msg(strcmp(got_, (want)) == 0, "redis-cli %s: got [%s], want [%s]", (args),    \
                      got_, (want));                                                             \
    } while (0)

#define CLI_HAS(args, want)                                                                      \
    do {                                                                                         \
        const char *got_ = cli(args);                                                            \
        ck_assert_msg(strstr(got_, (want)) != NULL, "redis-cli %s: got [%s], want [%s] in it",   \
                      (args), got_, (want));                                                     \
    } while (0)

/* Raw connection to the RESP port (TLS when the harness is secure). */
static int raw(void)
{
    int fd = th_raw_connect(RHOST, g_resp_port, 20000);
    ck_assert_int_ge(fd, 0);
    return fd;
}

/* Read until want bytes arrived or EOF; returns the bytes in buf. */
static size_t raw_read_n(int fd, char *buf, size_t cap, size_t want, int *eof)
{
    size_t n = 0;
    *eof = 0;
    while (n < want && n < cap - 1) {
        long r = th_raw_read(fd, buf + n, cap - 1 - n);
        if (r <= 0) {
            *eof = 1;
            break;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

static void raw_auth(int fd)
{
    if (th_admin_password() == NULL)
        return;
    char cmd[512];
    int n = snprintf(cmd, sizeof(cmd), "*3\r\n$4\r\nAUTH\r\n$5\r\nadmin\r\n$%zu\r\n%s\r\n",
                     strlen(th_admin_password()), th_admin_password());
    ck_assert_int_eq(th_raw_send(fd, cmd, (size_t)n), 0);
    char buf[64];
    int eof;
    raw_read_n(fd, buf, sizeof(buf), 5, &eof);
    ck_assert_str_eq(buf, "+OK\r\n");
}

/* A command on a raw connection; the reply's first want bytes (or all
 * until EOF) in buf. */
static const char *raw_cmd(int fd, const char *cmd, char *buf, size_t cap, size_t want)
{
    ck_assert_int_eq(th_raw_send(fd, cmd, strlen(cmd)), 0);
    int eof;
    raw_read_n(fd, buf, cap, want, &eof);
    return buf;
}

#define RAW_EQ(fd, cmd, want)                                                                      \
    do {                                                                                           \
        char b_[4096];                                                                             \
        raw_cmd((fd), (cmd), b_, sizeof(b_), strlen(want));                                        \
        ck_assert_msg(strcmp(b_, (want)) == 0, "%s: got [%s], want [%s]", (cmd), b_, (want));      \
    } while (0)

#define NSCAN 300

/* SCAN over the whole cluster with redis-cli, COUNT count, MATCH match (NULL:
 * none): counts[i] += the times "sc:%03d" came back; other keys are
 * ignored. move_after > 0: after that many calls, the slot of the last key
 * returned moves to the other group (mid-scan; mid-slot when the page
 * ended inside it). Returns the number of calls. */
static int scan_walk(const char *match, int count, int *counts, int move_after)
{
    char cur[64] = "0";
    int calls = 0;
    do {
        char args[256];
        snprintf(args, sizeof(args), "SCAN %s%s%s%s COUNT %d", cur, match ? " MATCH '" : "",
                 match ? match : "", match ? "'" : "", count);
        cli(args);
        calls++;
        char *save = NULL, *line = strtok_r(g_out, "\n", &save);
        ck_assert_msg(line != NULL && strspn(line, "0123456789") == strlen(line),
                      "SCAN: cursor [%s]", line ? line : "");
        snprintf(cur, sizeof(cur), "%s", line);
        char last[64] = "";
        while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
            int i;
            if (sscanf(line, "sc:%d", &i) == 1 && i >= 0 && i < NSCAN)
                counts[i]++;
            snprintf(last, sizeof(last), "%s", line);
        }
        if (move_after > 0 && calls == move_after && last[0] != '\0') {
            uint32_t slot = shale_key_slot(last, strlen(last), SLOTS);
            Shale__ClusterMap *m = th_map_newest(&g_cl);
            uint64_t owner = cmap_slot_group(m, slot);
            cmap_free(m);
            int rc = th_shalectl(g_out, sizeof(g_out), "--meta %s slot move %u %llu",
                                 g_cl.meta.addrs, slot, (unsigned long long)(owner == 1 ? 2 : 1));
            ck_assert_msg(rc == 0, "slot move: %s", g_out);
            m = th_map_newest(&g_cl);
            uint64_t epoch = m->epoch;
            cmap_free(m);
            ck_assert_int_eq(th_router_wait_epoch(&g_router, epoch, 20000), 0);
            fprintf(stderr, "test_resp: slot %u (of %s) moved mid-SCAN\n", slot, last);
        }
        ck_assert_int_lt(calls, 5000);
    } while (strcmp(cur, "0") != 0);
    return calls;
}

/* SCAN (every key once, a slot moving mid-walk included), MATCH, TYPE,
 * COUNT, bad cursors; KEYS. */
static void check_scan(void)
{
    char pre[2048], path[600];
    cli_prefix(pre, sizeof(pre), 1);
    snprintf(path, sizeof(path), "%s/scan.txt", g_base);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < NSCAN; i++)
        fprintf(f, "*3\r\n$3\r\nSET\r\n$6\r\nsc:%03d\r\n$1\r\nv\r\n", i);
    fclose(f);
    ck_assert_int_eq(sh("%s --pipe < '%s'", pre, path), 0);
    int counts[NSCAN];
    memset(counts, 0, sizeof(counts));
    int calls = scan_walk(NULL, 10, counts, 0);
    for (int i = 0; i < NSCAN; i++)
        ck_assert_msg(counts[i] == 1, "SCAN: sc:%03d came %d times", i, counts[i]);
    fprintf(stderr, "test_resp: SCAN of the cluster in %d calls\n", calls);
    /* MATCH: the prefix narrows the nodes' scans, the rest is filtered. */
    memset(counts, 0, sizeof(counts));
    scan_walk("sc:1?[05]", 7, counts, 0);
    for (int i = 0; i < NSCAN; i++)
        ck_assert_int_eq(counts[i], i >= 100 && i < 200 && (i % 10 == 0 || i % 10 == 5));
    /* A slot moves to the other group mid-walk: still every key once. */
    memset(counts, 0, sizeof(counts));
    scan_walk("sc:*", 5, counts, 3);
    for (int i = 0; i < NSCAN; i++)
        ck_assert_msg(counts[i] == 1, "SCAN across a move: sc:%03d came %d times", i, counts[i]);
    /* A hash-tagged prefix is one slot: the first call ends the walk. */
    CLI_EQ("MSET {sc}a 1 {sc}b 2 {sc}c 3", "OK");
    CLI_EQ("SCAN 0 MATCH {sc}* COUNT 100", "0\n{sc}a\n{sc}b\n{sc}c");
    CLI_EQ("SCAN 0 MATCH {sc}[ab] TYPE string COUNT 100", "0\n{sc}a\n{sc}b");
    CLI_EQ("SCAN 0 MATCH {sc}* TYPE hash", "0");
    CLI_EQ("SCAN 123456789", "ERR invalid cursor");
    CLI_EQ("SCAN -1", "ERR invalid cursor");
    CLI_EQ("SCAN x", "ERR invalid cursor");
    CLI_EQ("SCAN 0 COUNT 0", "ERR syntax error");
    CLI_EQ("SCAN 0 COUNT x", "ERR value is not an integer or out of range");
    CLI_EQ("SCAN 0 FOO bar", "ERR syntax error");
    CLI_EQ("SCAN 0 MATCH", "ERR syntax error");
    /* KEYS walks the whole cluster. */
    CLI_EQ("KEYS {sc}*", "{sc}a\n{sc}b\n{sc}c");
    sh("%s KEYS 'sc:29?' | sort", pre); /* slot order: sorted to compare */
    ck_assert_str_eq(g_out, "sc:290\nsc:291\nsc:292\nsc:293\nsc:294\nsc:295\nsc:296\nsc:297\n"
                            "sc:298\nsc:299\n");
    CLI_EQ("KEYS nomatch*", "");
    cli("KEYS 'sc:*'");
    int n = 0;
    for (const char *p = g_out; (p = strstr(p, "sc:")) != NULL; p++)
        n++;
    ck_assert_int_eq(n, NSCAN); /* --resp-keys-max 300: at the cap */
    CLI_EQ("KEYS '*'", "ERR KEYS would return more than 300 keys: use SCAN (docs/resp.md)");
}

/* WATCH / MULTI / EXEC / DISCARD / UNWATCH: one TXN within one slot. */
static void check_txn(void)
{
    char pre[2048];
    cli_prefix(pre, sizeof(pre), 1);
    /* Success: every queued command's reply, in order. */
    sh("printf 'MULTI\\nSET {x}a 1\\nINCR {x}b\\nINCRBY {x}b 5\\nAPPEND {x}a 23\\nGET {x}a\\n"
       "MGET {x}a {x}b {x}c\\nDEL {x}c {x}a\\nEXISTS {x}a {x}b\\nGETSET {x}b 7\\nEXEC\\n' | %s",
       pre);
    ck_assert_msg(strcmp(g_out, "OK\nQUEUED\nQUEUED\nQUEUED\nQUEUED\nQUEUED\nQUEUED\nQUEUED\n"
                                "QUEUED\nQUEUED\nOK\n1\n6\n3\n123\n123\n6\n\n1\n1\n6\n") == 0,
                  "MULTI/EXEC: [%s]", g_out);
    CLI_EQ("MGET {x}a {x}b", "\n7");
    /* SET with EX / KEEPTTL, EXPIRE, PERSIST, STRLEN, TYPE, GETDEL queued. */
    sh("printf 'MULTI\\nSET {x}t v EX 1000\\nSET {x}t w KEEPTTL GET\\nSTRLEN {x}t\\nTYPE {x}t\\n"
       "PEXPIRE {x}b 900000\\nPERSIST {x}t\\nGETDEL {x}b\\nUNWATCH\\nEXEC\\n' | %s",
       pre);
    ck_assert_msg(strcmp(g_out, "OK\nQUEUED\nQUEUED\nQUEUED\nQUEUED\nQUEUED\nQUEUED\nQUEUED\n"
                                "QUEUED\nOK\nv\n1\nstring\n1\n1\n7\nOK\n") == 0,
                  "MULTI/EXEC 2: [%s]", g_out);
    CLI_EQ("TTL {x}t", "-1");
    /* Empty, DISCARD, errors in Redis's texts. */
    sh("printf 'MULTI\\nEXEC\\nMULTI\\nUNWATCH\\nEXEC\\n' | %s", pre);
    ck_assert_str_eq(g_out, "OK\n\nOK\nQUEUED\nOK\n");
    sh("printf 'MULTI\\nSET {x}d 1\\nDISCARD\\nGET {x}d\\nDISCARD\\nEXEC\\n' | %s", pre);
    ck_assert_str_eq(g_out, "OK\nQUEUED\nOK\n\nERR DISCARD without MULTI\n\n"
                            "ERR EXEC without MULTI\n\n");
    sh("printf 'MULTI\\nMULTI\\nWATCH {x}a\\nSET {x}d 1\\nEXEC\\n' | %s", pre);
    ck_assert_str_eq(g_out, "OK\nERR MULTI calls can not be nested\n\n"
                            "ERR WATCH inside MULTI is not allowed\n\nQUEUED\nOK\n");
    CLI_EQ("GET {x}d", "1");
    /* EXECABORT: an unknown command, a wrong arity, a command that is not a
     * TXN op, SET NX; nothing of the transaction applies. */
    sh("printf 'MULTI\\nSET {x}e 1\\nFOO\\nEXEC\\nMULTI\\nSET {x}e 1\\nGET\\nEXEC\\n"
       "MULTI\\nSET {x}e 1\\nSCAN 0\\nEXEC\\nMULTI\\nSET {x}e 1 NX\\nEXEC\\n' | %s",
       pre);
    ck_assert_msg(strstr(g_out, "OK\nQUEUED\nERR unknown command 'FOO'") == g_out, "%s", g_out);
    ck_assert_msg(strstr(g_out, "EXECABORT Transaction discarded because of previous errors.\n\n"
                                "OK\nQUEUED\nERR wrong number of arguments for 'get' command\n\n"
                                "EXECABORT") != NULL,
                  "%s", g_out);
    ck_assert_msg(strstr(g_out, "ERR 'scan' cannot be queued in a Shale transaction") != NULL, "%s",
                  g_out);
    ck_assert_msg(strstr(g_out, "ERR SET NX/XX cannot be queued") != NULL, "%s", g_out);
    int aborts = 0;
    for (const char *p = g_out; (p = strstr(p, "EXECABORT")) != NULL; p++)
        aborts++;
    ck_assert_int_eq(aborts, 4);
    CLI_EQ("EXISTS {x}e", "0");
    /* CROSSSLOT: queued keys of two slots; watched and queued of two. */
    sh("printf 'MULTI\\nSET a1 1\\nSET a2 2\\nEXEC\\nWATCH a1\\nMULTI\\nSET a3 1\\nEXEC\\n' | %s",
       pre);
    ck_assert_str_eq(g_out, "OK\nQUEUED\nQUEUED\nCROSSSLOT Keys in request don't hash to the same "
                            "slot\n\nOK\nOK\nQUEUED\nCROSSSLOT Keys in request don't hash to the "
                            "same slot\n\n");
    CLI_EQ("EXISTS a1 a2 a3", "0");
    /* A failing op (INCR of a non-integer) fails the whole TXN. */
    sh("printf 'MULTI\\nSET {x}f 1\\nSET {x}g abc\\nINCR {x}g\\nEXEC\\n' | %s", pre);
    ck_assert_msg(strstr(g_out, "ERR value is not an integer") != NULL, "%s", g_out);
    CLI_EQ("EXISTS {x}f", "0");

    /* WATCH: unchanged keys → EXEC runs; a concurrent change (another
     * connection) → null; the connection's own change counts too. Absent
     * stays absent. Raw RESP2 and RESP3 (the null array's two forms). */
    CLI_EQ("SET {w}k 1", "OK");
    int fd = raw();
    raw_auth(fd);
    RAW_EQ(fd, "WATCH {w}k {w}none\r\n", "+OK\r\n");
    RAW_EQ(fd, "MULTI\r\n", "+OK\r\n");
    RAW_EQ(fd, "INCR {w}k\r\n", "+QUEUED\r\n");
    RAW_EQ(fd, "EXEC\r\n", "*1\r\n:2\r\n");
    RAW_EQ(fd, "WATCH {w}k\r\n", "+OK\r\n");
    CLI_EQ("SET {w}k 10", "OK"); /* a concurrent change */
    RAW_EQ(fd, "MULTI\r\n", "+OK\r\n");
    RAW_EQ(fd, "INCR {w}k\r\n", "+QUEUED\r\n");
    RAW_EQ(fd, "EXEC\r\n", "*-1\r\n");
    CLI_EQ("GET {w}k", "10");
    /* EXEC unwatched: the next one runs. */
    RAW_EQ(fd, "MULTI\r\nINCR {w}k\r\nEXEC\r\n", "+OK\r\n+QUEUED\r\n*1\r\n:11\r\n");
    /* A watched absent key created meanwhile; RESP3's null. */
    {
        /* HELLO 3's map ends with "modules" and an empty array. */
        char b[4096];
        size_t n = 0;
        const char *end = "$7\r\nmodules\r\n*0\r\n";
        ck_assert_int_eq(th_raw_send(fd, "HELLO 3\r\n", 9), 0);
        while (n < strlen(end) || strcmp(b + n - strlen(end), end) != 0) {
            long r = th_raw_read(fd, b + n, sizeof(b) - 1 - n);
            ck_assert_int_gt(r, 0);
            n += (size_t)r;
            b[n] = '\0';
        }
    }
    RAW_EQ(fd, "WATCH {w}new\r\n", "+OK\r\n");
    CLI_EQ("SET {w}new x", "OK");
    RAW_EQ(fd, "MULTI\r\nGET {w}k\r\nEXEC\r\n", "+OK\r\n+QUEUED\r\n_\r\n");
    /* UNWATCH forgets; the connection's own write invalidates its WATCH. */
    RAW_EQ(fd, "WATCH {w}k\r\nUNWATCH\r\n", "+OK\r\n+OK\r\n");
    CLI_EQ("SET {w}k 20", "OK");
    RAW_EQ(fd, "MULTI\r\nGET {w}k\r\nEXEC\r\n", "+OK\r\n+QUEUED\r\n*1\r\n$2\r\n20\r\n");
    RAW_EQ(fd, "WATCH {w}k\r\nSET {w}k 21\r\nMULTI\r\nGET {w}k\r\nEXEC\r\n",
           "+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n_\r\n");
    th_raw_close(fd);

    /* EXPIRE's options: atomic (read the version, TXN compares it). */
    CLI_EQ("SET e1 v", "OK");
    CLI_EQ("EXPIRE e1 100 XX", "0");
    CLI_EQ("EXPIRE e1 100 GT", "0"); /* no TTL is infinite */
    CLI_EQ("EXPIRE e1 100 NX", "1");
    CLI_EQ("EXPIRE e1 200 NX", "0");
    CLI_EQ("EXPIRE e1 50 GT", "0");
    CLI_EQ("EXPIRE e1 200 GT", "1");
    ck_assert_int_gt(atol(cli("TTL e1")), 150);
    CLI_EQ("EXPIRE e1 300 LT", "0");
    CLI_EQ("PEXPIRE e1 50000 LT", "1");
    ck_assert_int_le(atol(cli("TTL e1")), 50);
    CLI_EQ("EXPIRE e1 100 XX GT", "1");
    CLI_EQ("PERSIST e1", "1");
    CLI_EQ("EXPIRE e1 100 LT", "1");
    CLI_EQ("EXPIRE nokey 100 NX", "0");
    CLI_EQ("EXPIRE e1 0 XX", "1"); /* a TTL <= 0 deletes, as Redis */
    CLI_EQ("EXISTS e1", "0");
    CLI_EQ("EXPIRE e1 10 NX XX",
           "ERR NX and XX, GT or LT options at the same time are not compatible");
    CLI_EQ("EXPIRE e1 10 GT LT", "ERR GT and LT options at the same time are not compatible");
    CLI_EQ("EXPIRE e1 10 FOO", "ERR Unsupported option FOO");
}

START_TEST(test_resp_commands)
{
    start_all(2, 1);
    char pre[2048];

    /* Connection commands. */
    CLI_EQ("PING", "PONG");
    CLI_EQ("PING hello", "hello");
    CLI_EQ("ECHO 'a b'", "a b");
    CLI_EQ("SELECT 0", "OK");
    CLI_EQ("SELECT 1", "ERR DB index is out of range");
    CLI_EQ("CLIENT GETNAME", "");
    CLI_HAS("HELLO 3 SETNAME me", "proto 3");
    CLI_HAS("HELLO 2", "server\nshale");
    CLI_EQ("HELLO 4", "NOPROTO unsupported protocol version");
    CLI_HAS("INFO", "redis_version:");
    CLI_HAS("INFO", "shard_groups:2");
    CLI_EQ("COMMAND COUNT", cli("COMMAND COUNT")); /* an integer */
    ck_assert_int_gt(atoi(g_out), 20);
    CLI_HAS("COMMAND INFO get", "get");
    CLI_EQ("WAIT 0 0", "0"); /* groups of one voter: no other replica */
    CLI_EQ("READONLY", "OK");
    CLI_EQ("READWRITE", "OK");
    CLI_EQ("CLIENT NOPE", "ERR unknown subcommand or wrong number of arguments for 'NOPE'. "
                          "Try CLIENT HELP.");
    CLI_EQ("FOO bar baz", "ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' ");
    CLI_EQ("GET", "ERR wrong number of arguments for 'get' command");
    CLI_EQ("GET a b", "ERR wrong number of arguments for 'get' command");
    ck_assert_msg(strspn(cli("DBSIZE"), "0123456789") == strlen(g_out) && g_out[0] != '\0',
                  "DBSIZE: %s", g_out); /* an estimate: a number */

    /* Strings. */
    CLI_EQ("SET k1 v1", "OK");
    CLI_EQ("GET k1", "v1");
    CLI_EQ("GET nokey", "");
    CLI_EQ("STRLEN k1", "2");
    CLI_EQ("STRLEN nokey", "0");
    CLI_EQ("TYPE k1", "string");
    CLI_EQ("TYPE nokey", "none");
    CLI_EQ("TTL k1", "-1");
    CLI_EQ("TTL nokey", "-2");
    CLI_EQ("SET k1 v2 NX", "");
    CLI_EQ("GET k1", "v1");
    CLI_EQ("SET k2 v2 NX", "OK");
    CLI_EQ("SET k3 v3 XX", "");
    CLI_EQ("EXISTS k3", "0");
    CLI_EQ("SET k2 v22 XX", "OK");
    CLI_EQ("GET k2", "v22");
    CLI_EQ("SET k2 v23 GET", "v22");
    CLI_EQ("SET k4 v4 GET", "");
    CLI_EQ("GET k4", "v4");
    CLI_EQ("SET k4 x NX GET", "v4"); /* NX failed: the old value, not set */
    CLI_EQ("GET k4", "v4");
    CLI_EQ("SET k5 v EX 100", "OK");
    {
        long t = atol(cli("TTL k5"));
        ck_assert_msg(t > 90 && t <= 100, "TTL k5 = %ld", t);
        long p = atol(cli("PTTL k5"));
        ck_assert_msg(p > 90000 && p <= 100000, "PTTL k5 = %ld", p);
    }
    CLI_EQ("SET k5 v PX 100000", "OK");
    CLI_EQ("SET k5 v", "OK"); /* a plain SET clears the TTL */
    CLI_EQ("TTL k5", "-1");
    CLI_EQ("SET k6 v EXAT 1", "OK"); /* in the past: gone */
    CLI_EQ("EXISTS k6", "0");
    /* A time already past with NX / XX / GET (Redis 7): where the
     * condition holds the key is set and gone at once; GET answers the
     * old value either way. */
    CLI_EQ("SET k6 v EXAT 1 NX", "OK");   /* absent: OK, still absent */
    CLI_EQ("EXISTS k6", "0");
    CLI_EQ("SET k6 v EXAT 1 XX", "");     /* absent: nil */
    CLI_EQ("SET k6 old", "OK");
    CLI_EQ("SET k6 v PXAT 1 NX", "");     /* present: nil, kept */
    CLI_EQ("GET k6", "old");
    CLI_EQ("SET k6 v EXAT 1 XX GET", "old"); /* present: deleted */
    CLI_EQ("EXISTS k6", "0");
    CLI_EQ("SET k6 v EXAT 1 GET", "");
    CLI_EQ("EXISTS k6", "0");
    CLI_EQ("SET k6 v PXAT 99999999999999", "OK");
    CLI_EQ("TTL k6", cli("TTL k6"));
    ck_assert_int_gt(atol(g_out), 1000000);
    CLI_EQ("SET k7 v EX 0", "ERR invalid expire time in 'set' command");
    CLI_EQ("SET k7 v EX x", "ERR value is not an integer or out of range");
    CLI_EQ("SET k7 v NX XX", "ERR syntax error");
    CLI_EQ("SET k7 v FOO", "ERR syntax error");
    /* TTLs with NX/XX/GET and KEEPTTL (TXN puts with a TTL), EXPIRE,
     * PEXPIRE, PERSIST (TXN_EXPIRE). */
    CLI_EQ("SET t1 a EX 1000 NX", "OK");
    ck_assert_int_gt(atol(cli("TTL t1")), 900);
    CLI_EQ("SET t1 b KEEPTTL", "OK");
    CLI_EQ("GET t1", "b");
    ck_assert_int_gt(atol(cli("TTL t1")), 900);
    CLI_EQ("SET t1 c PX 2000000 XX GET", "b");
    ck_assert_int_gt(atol(cli("TTL t1")), 1900);
    CLI_EQ("SET t1 d EX 1000 KEEPTTL", "ERR syntax error");
    CLI_EQ("PERSIST t1", "1");
    CLI_EQ("PERSIST t1", "0");
    CLI_EQ("TTL t1", "-1");
    CLI_EQ("GET t1", "c");
    CLI_EQ("EXPIRE t1 500", "1");
    ck_assert_int_gt(atol(cli("TTL t1")), 400);
    CLI_EQ("PEXPIRE t1 700000", "1");
    ck_assert_int_gt(atol(cli("PTTL t1")), 600000);
    CLI_EQ("EXPIRE nokey 10", "0");
    CLI_EQ("EXISTS nokey", "0");
    CLI_EQ("EXPIRE t1 x", "ERR value is not an integer or out of range");
    CLI_EQ("EXPIRE t1 0", "1"); /* Redis: deleted */
    CLI_EQ("EXISTS t1", "0");
    CLI_EQ("SET t2 a PX 1", "OK");
    for (int i = 0; i < 200 && strcmp(cli("EXISTS t2"), "0") != 0; i++)
        usleep(50 * 1000);
    CLI_EQ("EXISTS t2", "0"); /* expired */
    CLI_EQ("SETNX n1 a", "1");
    CLI_EQ("SETNX n1 b", "0");
    CLI_EQ("GET n1", "a");
    CLI_EQ("GETSET n1 c", "a");
    CLI_EQ("GETSET n2 c", "");
    CLI_EQ("GET n1", "c");
    CLI_EQ("GETDEL n1", "c");
    CLI_EQ("GETDEL n1", "");
    CLI_EQ("EXISTS n1", "0");
    /* MGET across groups: keys spread over the slots of both. */
    CLI_EQ("MSET {t}a 1 {t}b 2 {t}c 3", "OK");
    CLI_EQ("MGET {t}a {t}b nokey {t}c k1 k2", "1\n2\n\n3\nv1\nv23");
    CLI_EQ("MSET a1 1 a2 2 a3 3 a4 4 a5 5", "CROSSSLOT Keys in request don't hash to the same slot");
    CLI_EQ("MSET a1 1 a2", "ERR wrong number of arguments for 'mset' command");
    CLI_EQ("EXISTS {t}a {t}a {t}b nokey", "3");
    CLI_EQ("DEL {t}a {t}b nokey", "2");
    CLI_EQ("UNLINK k1 k2 k4 nokey", "3");
    CLI_EQ("DEL {t}c", "1");
    CLI_EQ("EXISTS {t}a k1 {t}c", "0");
    CLI_EQ("MGET {t}a k1 {t}c k5", "\n\n\nv");
    /* INCR* / APPEND: evaluated at apply (TXN_ADD / TXN_APPEND). */
    CLI_EQ("INCR c1", "1");
    CLI_EQ("INCRBY c1 41", "42");
    CLI_EQ("DECR c1", "41");
    CLI_EQ("DECRBY c1 50", "-9");
    CLI_EQ("GET c1", "-9");
    CLI_EQ("INCRBY c1 x", "ERR value is not an integer or out of range");
    CLI_EQ("SET c2 abc", "OK");
    CLI_EQ("INCR c2", "ERR value is not an integer or out of range");
    CLI_EQ("SET c3 9223372036854775807", "OK");
    CLI_EQ("INCR c3", "ERR increment or decrement would overflow");
    CLI_EQ("DECRBY c3 -9223372036854775808", "ERR decrement would overflow");
    CLI_EQ("APPEND c2 def", "6");
    CLI_EQ("APPEND c9 xy", "2");
    CLI_EQ("GET c2", "abcdef");
    CLI_EQ("SET c4 10 EX 1000", "OK");
    CLI_EQ("INCR c4", "11");
    ck_assert_int_gt(atol(cli("TTL c4")), 900); /* INCR keeps the TTL */
    /* Binary-safe values, read natively too. */
    cli_prefix(pre, sizeof(pre), 1);
    ck_assert_int_eq(sh("printf 'line1\\nline2' | %s -x SET bin", pre), 0);
    CLI_EQ("STRLEN bin", "11");
    ck_assert_int_eq(th_shalectl(g_out, sizeof(g_out), "--router %s get bin", g_router.addr), 0);
    ck_assert_msg(strstr(g_out, "line1\nline2") != NULL, "shalectl get bin: %s", g_out);
    check_txn();
    check_scan();
    /* Per-command counts: /metrics and INFO's cmdstat share them. */
    int status;
    char *body = NULL;
    ck_assert_int_eq(obs_get(RHOST, g_http_port, "/metrics", &status, &body), 0);
    ck_assert_int_eq(status, 200);
    char err[256];
    ck_assert_msg(expo_check(body, err, sizeof(err)) == 0, "/metrics: %s", err);
    double scans = expo_value(body, "shale_router_resp_commands_total", "cmd=\"scan\"");
    double scan_err = expo_value(body, "shale_router_resp_errors_total", "cmd=\"scan\"");
    ck_assert_double_ge(expo_value(body, "shale_router_resp_commands_total", "cmd=\"get\""), 10);
    ck_assert_double_ge(expo_value(body, "shale_router_resp_commands_total", "cmd=\"unknown\""), 1);
    ck_assert_double_ge(expo_value(body, "shale_router_resp_errors_total", "cmd=\"unknown\""), 1);
    ck_assert_double_ge(scans, 20);
    ck_assert_double_ge(scan_err, 7); /* the bad cursors and options above */
    free(body);
    char want[128];
    snprintf(want, sizeof(want), "cmdstat_scan:calls=%.0f,failed_calls=%.0f", scans, scan_err);
    CLI_HAS("INFO", want);
    CLI_EQ("QUIT", "OK");
}
END_TEST

START_TEST(test_resp_auth)
{
    start_all(1, 1);
    if (!th_secure())
        return;
    char pre[2048];
    cli_prefix(pre, sizeof(pre), 0);
    sh("%s PING", pre);
    ck_assert_msg(strstr(g_out, "NOAUTH Authentication required.") != NULL, "%s", g_out);
    sh("%s GET x", pre);
    ck_assert_msg(strstr(g_out, "NOAUTH Authentication required.") != NULL, "%s", g_out);
    sh("%s HELLO 3", pre);
    ck_assert_msg(strstr(g_out, "NOAUTH HELLO must be called") != NULL, "%s", g_out);
    sh("%s --user admin --pass wrong --no-auth-warning PING", pre);
    ck_assert_msg(strstr(g_out, "WRONGPASS invalid username-password pair") != NULL, "%s",
                  g_out);
    sh("%s --user nobody --pass wrong --no-auth-warning PING", pre);
    ck_assert_msg(strstr(g_out, "WRONGPASS") != NULL, "%s", g_out);
    sh("%s AUTH onlypassword", pre);
    ck_assert_msg(strstr(g_out, "WRONGPASS") != NULL, "%s", g_out);
    sh("%s HELLO 3 AUTH admin '%s' SETNAME x", pre, th_admin_password());
    ck_assert_msg(strstr(g_out, "proto 3") != NULL, "%s", g_out);
    CLI_EQ("PING", "PONG");
    /* Before AUTH the parser keeps its small limits: a big bulk is refused. */
    int fd = raw();
    const char *big = "*2\r\n$4\r\nECHO\r\n$100000\r\n";
    ck_assert_int_eq(th_raw_send(fd, big, strlen(big)), 0);
    char buf[256];
    int eof;
    raw_read_n(fd, buf, sizeof(buf), 200, &eof);
    ck_assert_msg(strcmp(buf, "-ERR Protocol error: unauthenticated bulk length\r\n") == 0, "%s",
                  buf);
    ck_assert_int_eq(eof, 1);
    th_raw_close(fd);
}
END_TEST

START_TEST(test_resp_pipeline_garbage)
{
    start_all(1, 1);
    char pre[2048];
    cli_prefix(pre, sizeof(pre), 1);
    /* 5,000 commands in one stream: redis-cli --pipe counts the replies. */
    char path[600];
    snprintf(path, sizeof(path), "%s/pipe.txt", g_base);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 2500; i++) {
        char k[32], v[32];
        int kl = snprintf(k, sizeof(k), "p%d", i), vl = snprintf(v, sizeof(v), "v%d", i);
        fprintf(f, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", kl, k, vl, v);
        fprintf(f, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", kl, k);
    }
    fclose(f);
    ck_assert_int_eq(sh("%s --pipe < '%s'", pre, path), 0);
    ck_assert_msg(strstr(g_out, "errors: 0, replies: 5000") != NULL, "%s", g_out);
    CLI_EQ("GET p2499", "v2499");

    /* In order on one connection: SET then GET of one key, pipelined. */
    int fd = raw();
    raw_auth(fd);
    char out[1 << 16];
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(out + n, sizeof(out) - n,
                              "*3\r\n$3\r\nSET\r\n$2\r\nzz\r\n$4\r\n%04d\r\n"
                              "*2\r\n$3\r\nGET\r\n$2\r\nzz\r\n",
                              i);
    ck_assert_int_eq(th_raw_send(fd, out, n), 0);
    /* Each pair answers +OK\r\n then $4\r\nNNNN\r\n: 5 + 10 bytes. */
    char in[1 << 16];
    int eof;
    size_t got = raw_read_n(fd, in, sizeof(in), 200 * 15, &eof);
    ck_assert_uint_eq(got, 200 * 15);
    for (int i = 0; i < 200; i++) {
        char want[32];
        snprintf(want, sizeof(want), "+OK\r\n$4\r\n%04d\r\n", i);
        ck_assert_msg(memcmp(in + i * 15, want, 15) == 0, "pair %d: %.15s", i, in + i * 15);
    }
    th_raw_close(fd);

    /* Garbage: a protocol error, the connection closes, nothing else dies. */
    const char *bad[] = {"*2\r\n$3\r\nGET\r\n$x\r\n", "*1\r\n:1\r\n", "\"unbalanced\r\n",
                         "*3000000000\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fd = raw();
        raw_auth(fd);
        ck_assert_int_eq(th_raw_send(fd, bad[i], strlen(bad[i])), 0);
        got = raw_read_n(fd, in, sizeof(in), sizeof(in) - 1, &eof);
        ck_assert_msg(strncmp(in, "-ERR Protocol error: ", 21) == 0, "garbage %zu: %s", i, in);
        ck_assert_int_eq(eof, 1);
        th_raw_close(fd);
    }
    /* Random bytes too. */
    fd = raw();
    unsigned char junk[4096];
    srand(15);
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (unsigned char)rand();
    junk[0] = '*';
    th_raw_send(fd, junk, sizeof(junk));
    raw_read_n(fd, in, sizeof(in), sizeof(in) - 1, &eof);
    th_raw_close(fd);
    /* A native-protocol client is not a RESP client either. */
    CLI_EQ("PING", "PONG");
    CLI_EQ("GET p0", "v0");
    ck_assert_int_eq(kill(g_router.pid, 0), 0);
}
END_TEST

/* redis-benchmark (SET, GET, INCR; 20 connections) against the router while
 * the group's leader is killed: the router retries (exactly once for the
 * writes), the benchmark sees 0 errors. */
START_TEST(test_resp_leader_kill)
{
    start_all(1, 3);
    const char *ca = NULL, *crt = NULL, *key = NULL;
    th_tls_files(&ca, &crt, &key);
    char tls[1800] = "", auth[300] = "";
    if (ca != NULL)
        snprintf(tls, sizeof(tls), "--tls --cacert '%s' --cert '%s' --key '%s'", ca, crt, key);
    if (th_admin_password() != NULL)
        snprintf(auth, sizeof(auth), "--user admin -a '%s'", th_admin_password());
    char out[600], pidf[600], cmd[4096];
    snprintf(out, sizeof(out), "%s/bench.out", g_base);
    snprintf(pidf, sizeof(pidf), "%s/bench.pid", g_base);
    snprintf(cmd, sizeof(cmd),
             "redis-benchmark -h %s -p %d %s %s -t set,get,incr -n 20000 -c 20 -r 1000 -e "
             "> '%s' 2>&1 & echo $! > '%s'",
             RHOST, g_resp_port, tls, auth, out, pidf);
    ck_assert_int_eq(system(cmd), 0);
    FILE *f = fopen(pidf, "r");
    ck_assert_ptr_nonnull(f);
    int bpid = 0;
    ck_assert_int_eq(fscanf(f, "%d", &bpid), 1);
    fclose(f);
    /* Kill the leader once the benchmark is running (its output grows). */
    for (int i = 0; i < 400; i++) {
        struct stat st;
        if (stat(out, &st) == 0 && st.st_size > 200)
            break;
        usleep(50 * 1000);
    }
    int leader = th_group_wait_leader(&g_cl.groups[0], 20000);
    ck_assert_int_ge(leader, 0);
    fprintf(stderr, "test_resp: killing group leader %s during redis-benchmark\n",
            g_cl.groups[0].nodes[leader].addr);
    th_node_stop(&g_cl.groups[0].nodes[leader], SIGKILL);
    ck_assert_int_ge(th_group_wait_leader(&g_cl.groups[0], 20000), 0);
    /* The benchmark ends (bounded: it would fail the test at the ctest
     * timeout, never on speed). */
    while (kill(bpid, 0) == 0)
        usleep(100 * 1000);
    sh("cat '%s'", out);
    fprintf(stderr, "%s\n", g_out);
    ck_assert_msg(strstr(g_out, "Error") == NULL && strstr(g_out, "ERR") == NULL &&
                      strstr(g_out, "CLUSTERDOWN") == NULL && strstr(g_out, "TIMEOUT") == NULL,
                  "redis-benchmark saw errors: %s", g_out);
    ck_assert_msg(strstr(g_out, "INCR") != NULL && strstr(g_out, "requests completed") != NULL,
                  "redis-benchmark did not finish: %s", g_out);
}
END_TEST

int main(void)
{
    if (system("redis-cli --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_resp: redis-cli is missing (install redis-tools: scripts/deps.sh)\n");
        return 1;
    }
    Suite *s = suite_create("resp");
    TCase *tc = tcase_create("router");
    tcase_set_timeout(tc, 200);
    tcase_add_checked_fixture(tc, NULL, stop_all);
    tcase_add_test(tc, test_resp_commands);
    tcase_add_test(tc, test_resp_auth);
    tcase_add_test(tc, test_resp_pipeline_garbage);
    tcase_add_test(tc, test_resp_leader_kill);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
