/* shalectl: the Shale command-line tool.
 *
 * Parses the command line into (global options, verb, positional args, verb
 * flags), connects with libshale's blocking API and runs the verb. Verbs are
 * rows of one table; each row declares its arguments and flags, so usage
 * errors are found before any connection is made and --help is generated
 * from the table. Admin verbs (cluster init, groups, slots) join the table
 * later.
 *
 * Exit codes (also in --help): 0 ok; 1 key not found or CAS failed; 2 usage
 * error; 3 server or connection error.
 *
 * Never speaks the wire protocol itself: everything goes through libshale. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale.h"

#define EXIT_OKAY 0
#define EXIT_MISS 1 /* not found / CAS failed */
#define EXIT_USAGE 2
#define EXIT_SERVER 3
#define MAX_POS 4
#define DEFAULT_ADDR "127.0.0.1:7001"

/* A verb flag: --name, followed by a value when arg names one. */
typedef struct flag_spec {
    const char *name;
    const char *arg; /* NULL: takes no value */
    const char *help;
} flag_spec_t;

typedef struct cmd {
    const char *addr;
    uint32_t timeout_ms;
    const char *cluster_id;
    int json;
    const struct verb *verb;
    const char *pos[MAX_POS];
    int npos;
    /* Verb flags, indexed like verb->flags; set[i] says it was given. */
    int set[8];
    const char *val[8];
} cmd_t;

typedef struct verb {
    const char *name;
    const char *synopsis;
    const char *help;
    int min_pos, max_pos;
    const flag_spec_t *flags; /* NULL-name terminated, may be NULL */
    int (*check)(const cmd_t *cmd, char *err, size_t errlen);
    int (*run)(shale_client_t *c, const cmd_t *cmd);
} verb_t;

/* ---- Output --------------------------------------------------------------*/

static void json_string(FILE *f, const uint8_t *p, size_t n)
{
    /* Bytes >= 0x80 pass through: values are expected to be UTF-8. */
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch == '\t')
            fputs("\\t", f);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static int server_error(const char *verb, shale_client_t *c, int rv)
{
    const char *msg = shale_errmsg(c);
    fprintf(stderr, "shalectl: %s: %s", verb, shale_strerror(rv));
    if (msg != NULL && msg[0] != '\0' && strcmp(msg, shale_strerror(rv)) != 0)
        fprintf(stderr, ": %s", msg);
    fputc('\n', stderr);
    return EXIT_SERVER;
}

/* ---- Verbs ---------------------------------------------------------------*/

static int parse_u64(const char *s, uint64_t *out);

static const flag_spec_t get_flags[] = {
    {"stale", "MS", "read from any node whose state is at most MS ms old (default: linearizable)"},
    {NULL, NULL, NULL},
};

static int check_get(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t ms;
    if (cmd->set[0] && (parse_u64(cmd->val[0], &ms) != 0 || ms == 0 || ms > UINT32_MAX)) {
        snprintf(err, errlen, "--stale needs a positive number of milliseconds");
        return -1;
    }
    return 0;
}

static int run_get(shale_client_t *c, const cmd_t *cmd)
{
    const char *key = cmd->pos[0];
    shale_value_t v;
    shale_read_opts_t ro = {.consistency = SHALE_LINEARIZABLE};
    if (cmd->set[0]) {
        uint64_t ms = 0;
        parse_u64(cmd->val[0], &ms);
        ro.consistency = SHALE_STALE;
        ro.max_staleness_ms = (uint32_t)ms;
    }
    int rv = shale_get(c, key, strlen(key), &ro, &v);
    if (rv != SHALE_OK)
        return server_error("get", c, rv);
    if (cmd->json) {
        printf("{\"key\":");
        json_string(stdout, (const uint8_t *)key, strlen(key));
        printf(",\"found\":%s", v.found ? "true" : "false");
        if (v.found) {
            printf(",\"value\":");
            json_string(stdout, v.data, v.len);
            printf(",\"version\":%" PRIu64, v.version);
        }
        printf("}\n");
    } else if (v.found) {
        if (v.len > 0)
            fwrite(v.data, 1, v.len, stdout);
        printf("\nversion %" PRIu64 "\n", v.version);
    } else {
        fprintf(stderr, "shalectl: get: key not found\n");
    }
    int found = v.found;
    shale_value_free(&v);
    return found ? EXIT_OKAY : EXIT_MISS;
}

static int run_put(shale_client_t *c, const cmd_t *cmd)
{
    const char *key = cmd->pos[0], *val = cmd->pos[1];
    uint64_t version = 0;
    int rv = shale_put(c, key, strlen(key), val, strlen(val), &version);
    if (rv != SHALE_OK)
        return server_error("put", c, rv);
    if (cmd->json)
        printf("{\"ok\":true,\"version\":%" PRIu64 "}\n", version);
    else
        printf("OK version %" PRIu64 "\n", version);
    return EXIT_OKAY;
}

static int run_del(shale_client_t *c, const cmd_t *cmd)
{
    const char *key = cmd->pos[0];
    int existed = 0;
    uint64_t version = 0;
    int rv = shale_del(c, key, strlen(key), &existed, &version);
    if (rv != SHALE_OK)
        return server_error("del", c, rv);
    if (cmd->json)
        printf("{\"existed\":%s,\"version\":%" PRIu64 "}\n", existed ? "true" : "false", version);
    else if (existed)
        printf("deleted (was version %" PRIu64 ")\n", version);
    else
        fprintf(stderr, "shalectl: del: key not found\n");
    return existed ? EXIT_OKAY : EXIT_MISS;
}

enum { CAS_ABSENT, CAS_VERSION, CAS_VALUE, CAS_DELETE };

static const flag_spec_t cas_flags[] = {
    [CAS_ABSENT] = {"expect-absent", NULL, "the key must not exist"},
    [CAS_VERSION] = {"expect-version", "N", "the key's version must be N"},
    [CAS_VALUE] = {"expect-value", "V", "the key's value must be V"},
    [CAS_DELETE] = {"delete", NULL, "delete the key on a match (instead of NEWVALUE)"},
    {NULL, NULL, NULL},
};

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int check_cas(const cmd_t *cmd, char *err, size_t errlen)
{
    int kinds = cmd->set[CAS_ABSENT] + cmd->set[CAS_VERSION] + cmd->set[CAS_VALUE];
    uint64_t v;
    if (kinds != 1) {
        snprintf(err, errlen,
                 "cas needs exactly one of --expect-absent, "
                 "--expect-version N, --expect-value V");
        return -1;
    }
    if (cmd->set[CAS_VERSION] && parse_u64(cmd->val[CAS_VERSION], &v) != 0) {
        snprintf(err, errlen, "--expect-version needs a number, not '%s'", cmd->val[CAS_VERSION]);
        return -1;
    }
    if (cmd->set[CAS_DELETE] == (cmd->npos == 2)) {
        snprintf(err, errlen, "cas needs either NEWVALUE or --delete (not both)");
        return -1;
    }
    return 0;
}

static int run_cas(shale_client_t *c, const cmd_t *cmd)
{
    const char *key = cmd->pos[0];
    shale_cas_expect_t ex;
    memset(&ex, 0, sizeof(ex));
    if (cmd->set[CAS_ABSENT]) {
        ex.kind = SHALE_CAS_ABSENT;
    } else if (cmd->set[CAS_VERSION]) {
        ex.kind = SHALE_CAS_VERSION;
        parse_u64(cmd->val[CAS_VERSION], &ex.version);
    } else {
        ex.kind = SHALE_CAS_VALUE;
        ex.value = cmd->val[CAS_VALUE];
        ex.len = strlen(cmd->val[CAS_VALUE]);
    }
    int del = cmd->set[CAS_DELETE];
    const char *nv = del ? NULL : cmd->pos[1];
    uint64_t version = 0;
    shale_value_t cur;
    int rv = shale_cas(c, key, strlen(key), &ex, nv, nv ? strlen(nv) : 0, del, &version, &cur);
    if (rv == SHALE_OK) {
        if (cmd->json)
            printf("{\"ok\":true,\"version\":%" PRIu64 "}\n", version);
        else if (del)
            printf("OK deleted\n");
        else
            printf("OK version %" PRIu64 "\n", version);
        return EXIT_OKAY;
    }
    if (rv != SHALE_ECASFAILED)
        return server_error("cas", c, rv);
    if (cmd->json) {
        printf("{\"ok\":false,\"exists\":%s", cur.found ? "true" : "false");
        if (cur.found) {
            printf(",\"version\":%" PRIu64 ",\"value\":", cur.version);
            json_string(stdout, cur.data, cur.len);
        }
        printf("}\n");
    } else if (cur.found) {
        printf("CAS failed: current version %" PRIu64 ", value ", cur.version);
        if (cur.len > 0)
            fwrite(cur.data, 1, cur.len, stdout);
        printf("\n");
    } else {
        printf("CAS failed: the key does not exist\n");
    }
    shale_value_free(&cur);
    return EXIT_MISS;
}

/* ---- Group administration ---------------------------------------------------*/

static int ask_status(const char *addr, const cmd_t *cmd, shale_node_status_t *st, char *err)
{
    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = cmd->timeout_ms ? cmd->timeout_ms : 2000;
    o.connect_timeout_ms = o.timeout_ms < 1000 ? o.timeout_ms : 1000;
    o.cluster_id = cmd->cluster_id;
    shale_client_t *c = NULL;
    int rv = shale_connect(addr, &o, &c, err);
    if (rv != SHALE_OK)
        return rv;
    rv = shale_status(c, st);
    if (rv != SHALE_OK)
        snprintf(err, SHALE_ERRMSG_LEN, "%s", shale_errmsg(c));
    shale_close(c);
    return rv;
}

static int run_status(shale_client_t *c, const cmd_t *cmd)
{
    static shale_node_status_t first, each[SHALE_MAX_MEMBERS];
    int rv = shale_status(c, &first);
    if (rv != SHALE_OK)
        return server_error("status", c, rv);
    int ok[SHALE_MAX_MEMBERS] = {0};
    char errs[SHALE_MAX_MEMBERS][SHALE_ERRMSG_LEN];
    uint64_t top = 0; /* the highest applied index any member reports */
    size_t n = first.nmembers;
    for (size_t i = 0; i < n; i++) {
        const shale_member_info_t *m = &first.members[i];
        if (m->id == first.node_id) {
            each[i] = first;
            ok[i] = 1;
        } else {
            ok[i] = ask_status(m->client_addr, cmd, &each[i], errs[i]) == SHALE_OK;
        }
        if (ok[i] && each[i].applied_index > top)
            top = each[i].applied_index;
    }
    int down = 0;
    if (cmd->json) {
        printf("{\"cluster_id\":\"%s\",\"leader_id\":%" PRIu64 ",\"term\":%" PRIu64
               ",\"members\":[",
               first.cluster_id, first.leader_id, first.term);
        for (size_t i = 0; i < n; i++) {
            const shale_member_info_t *m = &first.members[i];
            printf("%s{\"id\":%" PRIu64 ",\"client\":\"%s\",\"raft\":\"%s\",\"kind\":\"%s\"",
                   i ? "," : "", m->id, m->client_addr, m->raft_addr,
                   m->replica ? "replica" : "voter");
            if (ok[i]) {
                printf(",\"up\":true,\"role\":\"%s\",\"term\":%" PRIu64 ",\"commit\":%" PRIu64
                       ",\"applied\":%" PRIu64 ",\"lag\":%" PRIu64 ",\"staleness_ms\":",
                       each[i].role, each[i].term, each[i].commit_index, each[i].applied_index,
                       top - each[i].applied_index);
                if (each[i].staleness_known)
                    printf("%" PRIu64 "}", each[i].staleness_ms);
                else
                    printf("null}");
            } else {
                printf(",\"up\":false}");
            }
            down += !ok[i];
        }
        printf("]}\n");
    } else {
        printf("cluster %s, leader %" PRIu64 ", term %" PRIu64 "\n", first.cluster_id,
               first.leader_id, first.term);
        printf("%-4s %-8s %-10s %-22s %-22s %10s %8s %10s\n", "ID", "KIND", "ROLE", "CLIENT",
               "RAFT", "APPLIED", "LAG", "STALENESS");
        for (size_t i = 0; i < n; i++) {
            const shale_member_info_t *m = &first.members[i];
            if (ok[i]) {
                char stal[32];
                if (each[i].staleness_known)
                    snprintf(stal, sizeof(stal), "%" PRIu64 "ms", each[i].staleness_ms);
                else
                    snprintf(stal, sizeof(stal), "-");
                printf("%-4" PRIu64 " %-8s %-10s %-22s %-22s %10" PRIu64 " %8" PRIu64 " %10s\n",
                       m->id, m->replica ? "replica" : "voter", each[i].role, m->client_addr,
                       m->raft_addr, each[i].applied_index, top - each[i].applied_index, stal);
            } else {
                printf("%-4" PRIu64 " %-8s %-10s %-22s %-22s   unreachable: %s\n", m->id,
                       m->replica ? "replica" : "voter", "down", m->client_addr, m->raft_addr,
                       errs[i]);
                down++;
            }
        }
    }
    return down ? EXIT_MISS : EXIT_OKAY;
}

static int id_arg(const char *s, uint64_t *id)
{
    return parse_u64(s, id) != 0 || *id == 0 ? -1 : 0;
}

static int check_member_add(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t id;
    if (id_arg(cmd->pos[0], &id) != 0) {
        snprintf(err, errlen, "ID must be a positive integer, not '%s'", cmd->pos[0]);
        return -1;
    }
    for (int i = 1; i < 3; i++)
        if (strchr(cmd->pos[i], ':') == NULL) {
            snprintf(err, errlen, "'%s' is not HOST:PORT", cmd->pos[i]);
            return -1;
        }
    return 0;
}

static int check_id(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t id;
    if (cmd->npos > 0 && id_arg(cmd->pos[0], &id) != 0) {
        snprintf(err, errlen, "ID must be a positive integer, not '%s'", cmd->pos[0]);
        return -1;
    }
    return 0;
}

static const flag_spec_t member_add_flags[] = {
    {"replica", NULL, "add a read replica (receives the log, never votes)"},
    {NULL, NULL, NULL},
};

static int admin_done(const char *verb, shale_client_t *c, const cmd_t *cmd, int rv,
                      const char *msg)
{
    if (rv != SHALE_OK)
        return server_error(verb, c, rv);
    if (cmd->json) {
        printf("{\"ok\":true,\"message\":");
        json_string(stdout, (const uint8_t *)msg, strlen(msg));
        printf("}\n");
    } else {
        printf("OK %s\n", msg);
    }
    return EXIT_OKAY;
}

static int run_member_add(shale_client_t *c, const cmd_t *cmd)
{
    uint64_t id = 0;
    char msg[SHALE_ERRMSG_LEN] = "";
    id_arg(cmd->pos[0], &id);
    int rv = shale_member_add(c, id, cmd->pos[1], cmd->pos[2], cmd->set[0], msg);
    return admin_done("member add", c, cmd, rv, msg);
}

static int run_member_remove(shale_client_t *c, const cmd_t *cmd)
{
    uint64_t id = 0;
    char msg[SHALE_ERRMSG_LEN] = "";
    id_arg(cmd->pos[0], &id);
    int rv = shale_member_remove(c, id, msg);
    return admin_done("member remove", c, cmd, rv, msg);
}

static int run_leader_transfer(shale_client_t *c, const cmd_t *cmd)
{
    uint64_t id = 0;
    char msg[SHALE_ERRMSG_LEN] = "";
    if (cmd->npos > 0)
        id_arg(cmd->pos[0], &id);
    int rv = shale_leader_transfer(c, id, msg);
    return admin_done("leader transfer", c, cmd, rv, msg);
}

static const verb_t verbs[] = {
    {"get", "get KEY [--stale MS]", "print the value of KEY and its version", 1, 1, get_flags,
     check_get, run_get},
    {"put", "put KEY VALUE", "set KEY to VALUE; prints the new version", 2, 2, NULL, NULL, run_put},
    {"del", "del KEY", "delete KEY", 1, 1, NULL, NULL, run_del},
    {"cas",
     "cas KEY (--expect-absent | --expect-version N | --expect-value V) "
     "(NEWVALUE | --delete)",
     "compare-and-set: write NEWVALUE (or delete) only if the expectation holds", 1, 2, cas_flags,
     check_cas, run_cas},
    {"status", "status",
     "the group of the node at --addr: every member, its role, applied index, lag and "
     "staleness (exit 1 when a member is unreachable)",
     0, 0, NULL, NULL, run_status},
    {"member add", "member add ID RAFT_ADDR CLIENT_ADDR [--replica]",
     "add a node (started with --initial-cluster none) to the group as a voter or read replica",
     3, 3, member_add_flags, check_member_add, run_member_add},
    {"member remove", "member remove ID", "remove a node from the group", 1, 1, NULL, check_id,
     run_member_remove},
    {"leader transfer", "leader transfer [ID]",
     "hand leadership to voter ID (default: the most up-to-date voter)", 0, 1, NULL, check_id,
     run_leader_transfer},
};
#define NVERBS (sizeof(verbs) / sizeof(verbs[0]))

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shalectl [options] VERB [ARGS]\n"
            "\n"
            "options:\n"
            "  --addr HOST:PORT[,HOST:PORT...]\n"
            "                      node address(es) of one group; the client follows the\n"
            "                      leader (default $SHALE_ADDR or %s)\n"
            "  --timeout MS        per-request deadline in ms (default 5000)\n"
            "  --cluster-id ID     refuse a server of another cluster\n"
            "  --json              machine-readable output\n"
            "  -h, --help          this help\n"
            "  --                  end of options (for keys or values that start with -)\n"
            "\n"
            "verbs:\n",
            DEFAULT_ADDR);
    for (size_t i = 0; i < NVERBS; i++) {
        fprintf(f, "  %s\n      %s\n", verbs[i].synopsis, verbs[i].help);
        for (const flag_spec_t *fl = verbs[i].flags; fl && fl->name; fl++) {
            char flag[64];
            snprintf(flag, sizeof(flag), "--%s%s%s", fl->name, fl->arg ? " " : "",
                     fl->arg ? fl->arg : "");
            fprintf(f, "      %-20s %s\n", flag, fl->help);
        }
    }
    fprintf(f, "\n"
               "exit status:\n"
               "  0  ok\n"
               "  1  key not found (get, del), CAS failed, or (status) a member is down\n"
               "  2  usage error\n"
               "  3  server or connection error (message on stderr)\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "shalectl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (try --help)\n");
    return EXIT_USAGE;
}

static const verb_t *find_verb(const char *name)
{
    for (size_t i = 0; i < NVERBS; i++)
        if (strcmp(verbs[i].name, name) == 0)
            return &verbs[i];
    return NULL;
}

/* Global option at argv[*i] (advances *i past its value). Returns 1 when
 * it was one, 0 when it is not a global option, or an exit code + 10. */
static int global_option(int argc, char **argv, int *i, cmd_t *cmd)
{
    const char *a = argv[*i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        usage(stdout);
        return 10 + EXIT_OKAY;
    }
    if (strcmp(a, "--json") == 0) {
        cmd->json = 1;
        return 1;
    }
    if (strcmp(a, "--addr") != 0 && strcmp(a, "--timeout") != 0 && strcmp(a, "--cluster-id") != 0)
        return 0;
    if (*i + 1 >= argc)
        return 10 + usage_error("option '%s' needs a value", a);
    const char *v = argv[++*i];
    if (strcmp(a, "--addr") == 0) {
        cmd->addr = v;
    } else if (strcmp(a, "--cluster-id") == 0) {
        cmd->cluster_id = v;
    } else {
        uint64_t t;
        if (parse_u64(v, &t) != 0 || t == 0 || t > UINT32_MAX)
            return 10 + usage_error("--timeout needs a positive number of "
                                    "milliseconds, not '%s'",
                                    v);
        cmd->timeout_ms = (uint32_t)t;
    }
    return 1;
}

/* Command line: [global options] VERB [args, verb flags, global options].
 * Verb flags come after the verb (their table is the verb's). Returns -1 to
 * go on, or an exit code (help, usage error). */
static int parse(int argc, char **argv, cmd_t *cmd)
{
    int no_more_flags = 0;
    const verb_t *v = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int is_flag = !no_more_flags && a[0] == '-' && a[1] != '\0';
        if (is_flag && strcmp(a, "--") == 0) {
            no_more_flags = 1;
            continue;
        }
        if (is_flag) {
            int g = global_option(argc, argv, &i, cmd);
            if (g >= 10)
                return g - 10;
            if (g == 1)
                continue;
            if (v == NULL)
                return usage_error("unknown option '%s'", a);
            int idx = -1;
            for (int j = 0; v->flags != NULL && v->flags[j].name != NULL; j++)
                if (strncmp(a, "--", 2) == 0 && strcmp(a + 2, v->flags[j].name) == 0)
                    idx = j;
            if (idx < 0) {
                fprintf(stderr, "shalectl: %s: unknown option '%s' (try --help)\n", v->name, a);
                return EXIT_USAGE;
            }
            if (cmd->set[idx]) {
                fprintf(stderr, "shalectl: %s: option '%s' given twice\n", v->name, a);
                return EXIT_USAGE;
            }
            cmd->set[idx] = 1;
            if (v->flags[idx].arg != NULL) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "shalectl: %s: option '%s' needs a value\n", v->name, a);
                    return EXIT_USAGE;
                }
                cmd->val[idx] = argv[++i];
            }
            continue;
        }
        if (v == NULL) {
            /* Two-word verbs ("member add") first. */
            if (i + 1 < argc) {
                char two[64];
                snprintf(two, sizeof(two), "%s %s", a, argv[i + 1]);
                v = find_verb(two);
                if (v != NULL)
                    i++;
            }
            if (v == NULL)
                v = find_verb(a);
            if (v == NULL)
                return usage_error("unknown verb '%s'", a);
            cmd->verb = v;
            continue;
        }
        if (cmd->npos == MAX_POS || cmd->npos >= v->max_pos) {
            fprintf(stderr,
                    "shalectl: %s: too many arguments ('%s')\n"
                    "usage: shalectl [options] %s\n",
                    v->name, a, v->synopsis);
            return EXIT_USAGE;
        }
        cmd->pos[cmd->npos++] = a;
    }
    if (v == NULL)
        return usage_error("%s", "no verb given");
    if (cmd->npos < v->min_pos) {
        fprintf(stderr, "shalectl: %s: missing arguments\nusage: shalectl [options] %s\n", v->name,
                v->synopsis);
        return EXIT_USAGE;
    }
    if (v->check != NULL) {
        char err[256];
        if (v->check(cmd, err, sizeof(err)) != 0) {
            fprintf(stderr, "shalectl: %s: %s\nusage: shalectl [options] %s\n", v->name, err,
                    v->synopsis);
            return EXIT_USAGE;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    cmd_t cmd;
    memset(&cmd, 0, sizeof(cmd));
    const char *env = getenv("SHALE_ADDR");
    cmd.addr = env != NULL && env[0] != '\0' ? env : DEFAULT_ADDR;
    int rv = parse(argc, argv, &cmd);
    if (rv >= 0)
        return rv;

    shale_options_t opts;
    shale_options_init(&opts);
    if (cmd.timeout_ms != 0) {
        opts.timeout_ms = cmd.timeout_ms;
        if (opts.connect_timeout_ms > cmd.timeout_ms)
            opts.connect_timeout_ms = cmd.timeout_ms;
    }
    opts.cluster_id = cmd.cluster_id;
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];
    rv = shale_connect(cmd.addr, &opts, &c, err);
    if (rv != SHALE_OK) {
        fprintf(stderr, "shalectl: cannot connect to %s: %s: %s\n", cmd.addr, shale_strerror(rv),
                err);
        return rv == SHALE_EINVAL ? EXIT_USAGE : EXIT_SERVER;
    }
    rv = cmd.verb->run(c, &cmd);
    shale_close(c);
    return rv;
}
