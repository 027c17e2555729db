/* shalectl: the Shale command-line tool (data verbs and cluster admin).
 *
 * Parses the command line into (global options, verb, positional args, verb
 * flags), picks what to talk to — a router, one group, or the meta group —
 * and runs the verb. Verbs are rows of one table; each row declares its
 * arguments and flags, so usage errors are found before any connection is
 * made, and --help (global and per verb) is generated from the table.
 *
 * Exit codes (also in --help): 0 ok; 1 key not found, CAS mismatch or
 * another error; 2 wrong arguments; 3 cluster unreachable; 4 change refused;
 * 5 check found a divergence.
 *
 * Never speaks the wire protocol itself: everything goes through libshale.
 * The verbs live in ctl_data.c, ctl_node.c, ctl_map.c, ctl_admin.c and
 * ctl_migrate.c (ctl.h says which does what). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <uv.h>

#include "auth.h"
#include "ctl.h"

/* ---- Helpers shared by the verbs (ctl.h) ---------------------------------------*/

int ctl_parse_u64(const char *s, uint64_t *out)
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

int ctl_parse_id(const char *s, uint64_t *id)
{
    return ctl_parse_u64(s, id) != 0 || *id == 0 ? -1 : 0;
}

int ctl_is_hostport(const char *s)
{
    const char *colon = s != NULL ? strrchr(s, ':') : NULL;
    return colon != NULL && colon != s && colon[1] >= '0' && colon[1] <= '9';
}

void ctl_json_string(FILE *f, const void *data, size_t n)
{
    const uint8_t *p = data;
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

void ctl_json_str(FILE *f, const char *s)
{
    ctl_json_string(f, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

int ctl_exit_code(int rv, int admin)
{
    switch (rv) {
    case SHALE_OK:
        return EXIT_OKAY;
    case SHALE_EIO:
    case SHALE_ETIMEOUT:
    case SHALE_EUNAVAILABLE:
    case SHALE_ENOTLEADER:
    case SHALE_ECLOSED:
    case SHALE_ECANCELED:
        return EXIT_UNREACHABLE;
    case SHALE_ECASFAILED:
    case SHALE_EOVERLOAD:
    case SHALE_EINVAL:
        return admin ? EXIT_REFUSED : EXIT_FAIL;
    default:
        return EXIT_FAIL;
    }
}

int ctl_error(const char *verb, int rv, const char *msg, int admin)
{
    fprintf(stderr, "shalectl: %s: %s", verb, shale_strerror(rv));
    if (msg != NULL && msg[0] != '\0' && strcmp(msg, shale_strerror(rv)) != 0)
        fprintf(stderr, ": %s", msg);
    if (admin && rv == SHALE_EOVERLOAD)
        fprintf(stderr, " (another membership change is running: retry when it is done)");
    fputc('\n', stderr);
    return ctl_exit_code(rv, admin);
}

int ctl_say(int code, const char *verb, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shalectl: %s: ", verb);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

void ctl_options(const cmd_t *cmd, uint32_t default_ms, shale_options_t *o)
{
    shale_options_init(o);
    o->timeout_ms = cmd->timeout_ms ? cmd->timeout_ms : default_ms;
    if (o->connect_timeout_ms > o->timeout_ms)
        o->connect_timeout_ms = o->timeout_ms;
    o->cluster_id = cmd->cluster_id;
    o->tls_ca = cmd->tls_ca;
    o->tls_cert = cmd->tls_cert;
    o->tls_key = cmd->tls_key;
    o->tls_server_name = cmd->tls_server_name;
    o->stall_ms = CTL_MAP_WAIT_MS + 3000; /* map long-polls are silent while they wait */
    if (cmd->user != NULL && cmd->password != NULL) {
        o->user = cmd->user;
        o->password = cmd->password;
        o->password_len = cmd->password_len;
    }
}

int ctl_connect(const cmd_t *cmd, const char *verb, const char *addrs, uint32_t default_ms,
                shale_client_t **c)
{
    shale_options_t o;
    char err[SHALE_ERRMSG_LEN] = "";
    ctl_options(cmd, default_ms, &o);
    int rv = shale_connect(addrs, &o, c, err);
    if (rv == SHALE_OK)
        return 0;
    fprintf(stderr, "shalectl: %s: cannot connect to %s: %s: %s\n", verb, addrs, shale_strerror(rv),
            err);
    if (rv == SHALE_EINVAL)
        return EXIT_USAGE;
    return rv == SHALE_ECLUSTER || rv == SHALE_EPROTO || rv == SHALE_EAUTH ? EXIT_FAIL
                                                                            : EXIT_UNREACHABLE;
}

uint64_t ctl_random_id(void)
{
    uint64_t id = 0;
    if (uv_random(NULL, NULL, &id, sizeof(id), 0, NULL) != 0 || id == 0)
        id = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    return id ? id : 1;
}

int ctl_whoami(shale_client_t *c, shale_whoami_t *w)
{
    if (shale_whoami(c, w) != SHALE_OK)
        w->auth = -1;
    return w->auth == 1;
}

void ctl_whoami_print(const shale_whoami_t *w)
{
    if (w == NULL || w->auth != 1)
        return;
    if (w->user[0] == '\0') {
        printf("user: anonymous\n");
        return;
    }
    printf("user: %s (role %s", w->user, w->role[0] != '\0' ? w->role : "unknown");
    if (w->key_prefix_len > 0) {
        printf(", key prefix ");
        ctl_json_string(stdout, w->key_prefix, w->key_prefix_len);
    }
    printf(")\n");
}

void ctl_whoami_json(const shale_whoami_t *w)
{
    if (w == NULL || w->auth != 1) {
        printf("null");
        return;
    }
    printf("{\"user\":");
    if (w->user[0] != '\0')
        ctl_json_str(stdout, w->user);
    else
        printf("null");
    printf(",\"role\":");
    if (w->role[0] != '\0')
        ctl_json_str(stdout, w->role);
    else
        printf("null");
    printf(",\"key_prefix\":");
    if (w->key_prefix_len > 0)
        ctl_json_string(stdout, w->key_prefix, w->key_prefix_len);
    else
        printf("null");
    printf("}");
}

/* ---- The verb table ------------------------------------------------------------*/

static const verb_t verbs[] = {
    /* data */
    {"get", "get KEY [--stale MS]", "print the value of KEY and its version", 1, 1, get_flags,
     CTL_DATA, check_get, run_get, 0},
    {"put", "put [--ttl MS] KEY (VALUE | - | --file F)",
     "set KEY to VALUE (-: the bytes of standard input; --file F: of file F, any bytes); "
     "prints the new version. --ttl: the key expires MS ms later (on the leader's clock "
     "carried in the log); a put without --ttl clears a previous TTL",
     1, 2, put_flags, CTL_DATA, check_put, run_put, 0},
    {"ttl", "ttl KEY [--stale MS]",
     "print the ms KEY has left before it expires, -1 when it has no TTL; exit 1 if the key "
     "is absent (or expired)",
     1, 1, get_flags, CTL_DATA, check_get, run_ttl, 0},
    {"del", "del KEY", "delete KEY", 1, 1, NULL, CTL_DATA, NULL, run_del, 0},
    {"mget", "mget KEY... [--stale MS]",
     "read several keys in one request (each group's part linearizable, or --stale; not one "
     "snapshot across groups): KEY=VALUE (version N) lines, 'KEY (not found)'; exit 1 if any "
     "key was absent or failed",
     1, CTL_MAX_POS, get_flags, CTL_DATA, check_get, run_mget, 0},
    {"cas",
     "cas KEY (--expect-absent | --expect-version N | --expect-value V) (NEWVALUE | --delete)",
     "compare-and-set: write NEWVALUE (or delete) only if the expectation holds", 1, 2, cas_flags,
     CTL_DATA, check_cas, run_cas, 0},
    {"txn", "txn [--if COND ...] [--then OP ...] [--else OP ...]",
     "transaction within one slot: if every --if holds, run the --then ops, else the --else "
     "ops, atomically. COND: version(KEY) OP N | value(KEY) OP V | exists(KEY) | missing(KEY) "
     "with OP one of = != < >; OP: put KEY VALUE | del KEY | get KEY. Every key must be in one "
     "slot (use a {hash tag}: {acct}a, {acct}b). Prints each op's result; exit 1 when the "
     "conditions did not hold (the --else branch ran)",
     0, 0, txn_flags, CTL_DATA, check_txn, run_txn, 0},
    {"scan", "scan [--prefix P] [--limit N] [--cursor C] [--stale MS] [--all]",
     "ordered scan, slot by slot and key order within a slot: prints KEY=VALUE lines and then "
     "'cursor C' to continue with --cursor C ('cursor -': the scan is complete); --all follows "
     "the cursor to the end. A page may be short, even empty, with a cursor: a call visits "
     "at most 256 slots",
     0, 0, scan_flags, CTL_DATA, check_scan, run_scan, 0},
    {"watch", "watch KEY [--prefix] [--from REV [--group G]] [--count N]",
     "print every change to KEY (or, with --prefix, to the keys under the hash-tag prefix KEY) "
     "as it happens, in order: 'REV put KEY=VALUE version V group G', 'REV del KEY version V "
     "group G' (--json: one object per line). REV is the group's revision of the change; "
     "resume with --from REV+1 --group G. Ends with exit 1 when the slot moved to another "
     "group or the revision is no longer kept (re-read and watch from now)",
     1, 1, watch_flags, CTL_DATA, check_watch, run_watch, 0},
    /* cluster, through the meta group */
    {"init", "init --group ID=ADDR [--group ID=ADDR ...] [--slots S]",
     "create the cluster map from running shard groups (started with --group ID --meta ...): "
     "asks each group's leader for its members, splits the slots evenly, commits epoch 1; "
     "refused (4) if the cluster exists",
     0, 0, init_flags, CTL_META, check_init, run_init, 0},
    {"status", "status",
     "the whole cluster: map epoch and slots, the meta group, every group's members with role, "
     "applied index, lag behind the leader, staleness, clock offset to the leader (CLOCK), "
     "the member's own /health verdict "
     "(READY; - for nodes without --http) and health (down members are shown, not fatal); "
     "with --auth, the user this command logged in as, its role and key prefix",
     0, 0, NULL, CTL_META, NULL, run_cluster_status, 0},
    {"top", "top [--interval S] [--count N]",
     "live view refreshed every --interval seconds, from each process's /metrics (nodes "
     "started with --http): per group the leader, term, members up, ops/s, errors/s, p50/p99 "
     "latency, replica lag (entries, ms) and leader changes; with --router ADDRS the routers' "
     "ops/s, latency, retries/s and requests in flight; --json prints one object per refresh",
     0, 0, top_flags, CTL_META, check_top, run_top, 1},
    {"check", "check [GROUP] [--slots] [--rate BYTES] [--wait SECONDS]",
     "replica consistency check: in each group (or GROUP) the leader puts a check entry in the "
     "log; every member (voters and read replicas) sums its rows per slot at that index in the "
     "background (at --rate bytes/s); the sums are compared. Prints per group OK or each "
     "divergent slot with the member(s) that differ; exit 5 on a divergence, 3 when a member "
     "could not be compared",
     0, 1, check_flags, CTL_META, check_check, run_check, 0},
    {"map", "map", "print the cluster map: epoch, groups and members, slot ranges", 0, 0, NULL,
     CTL_META, NULL, run_map, 0},
    {"slot", "slot KEY...",
     "where keys live: KEY -> slot -> group, at the current map; a key with a hash tag "
     "({...}: only the text in the first non-empty braces is hashed) shows it",
     1, CTL_MAX_POS, NULL, CTL_META, NULL, run_slot, 0},
    {"group add", "group add ID ADDR",
     "register a running shard group (any member's client address) with no slots; its "
     "members come from its leader",
     2, 2, NULL, CTL_META, check_group_add, run_group_add, 0},
    {"group remove", "group remove ID [--max-parallel N] [--rate MB/s] [--batch N]",
     "drain the group (move its slots to the other groups, evening them out, as rebalance "
     "does), then drop it from the map; refused (4) while migrations are in progress",
     1, 1, group_remove_flags, CTL_META, check_group_remove, run_group_remove, 0},
    {"slot move", "slot move SLOT|FROM-TO GROUP [--max-parallel N] [--rate MB/s] [--batch N]",
     "move a slot or a range of slots to GROUP while the cluster serves them: one migration "
     "per source group and --batch slots (copy, fence, drain, flip; docs/resharding.md)",
     2, 2, slot_move_flags, CTL_META, check_slot_move, run_slot_move, 0},
    {"slot assign", "slot assign SLOTS GROUP --force",
     "REPAIR: give SLOTS (5, 0-99 or 1,2,7) to GROUP WITHOUT moving their data, for slots "
     "whose group is lost for good: the former owner stops serving them and deletes its copy, "
     "GROUP serves them from empty (MAP_CAS with force; admin). Refused without --force; to "
     "move slots with their data use slot move",
     2, 2, slot_assign_flags, CTL_META, check_slot_assign, run_slot_assign, 0},
    {"rebalance", "rebalance [--dry-run] [--max-parallel N] [--rate MB/s] [--batch N]",
     "even out the groups' slot counts (they end up differing by at most one) with the fewest "
     "slot moves; prints the plan, then runs it as migrations of --batch slots",
     0, 0, rebalance_flags, CTL_META, check_rebalance, run_rebalance, 0},
    {"backup", "backup DIR",
     "an online, consistent backup of the whole cluster into DIR (created; must hold no "
     "backup): migrations are held for the cut, each group's RocksDB checkpoint is fetched "
     "from one member at or past a read barrier taken after the start (every write "
     "acknowledged before the backup started is in it), zstd, with the map, the users and a "
     "checksummed MANIFEST; progress with MB/s and ETA on stderr",
     1, 1, NULL, CTL_META, check_backup_dir, run_backup, 0},
    {"backup verify", "backup verify DIR",
     "check a backup: the manifest's own checksum and every file's size and SHA-256; a damaged "
     "or missing file is named and the exit code is 1",
     1, 1, NULL, CTL_META, check_backup_dir, run_backup_verify, 0},
    {"backup release", "backup release",
     "clear the migration hold a killed backup left in the map (migrations may run again)",
     0, 0, NULL, CTL_META, NULL, run_backup_release, 0},
    {"restore", "restore DIR [--into-same-cluster]",
     "verify the backup in DIR (a damaged one is refused), then write its data into a new, "
     "initialised cluster (any number of groups and slots) through --router and add its users "
     "that the new cluster lacks (with their password hashes)",
     1, 1, restore_flags, CTL_META, check_backup_dir, run_restore, 1},
    {"migration status", "migration status",
     "the migrations in progress in the map: id, groups, state, run, age, slots", 0, 0, NULL,
     CTL_META, NULL, run_migration_status, 0},
    {"migration resume", "migration resume [ID...] [--max-parallel N] [--rate MB/s]",
     "finish migrations left in the map by an interrupted or killed shalectl (default: all); "
     "a fenced one is unfenced and copied again under a new run",
     0, CTL_MAX_POS, migration_resume_flags, CTL_META, check_migration_ids, run_migration_resume, 0},
    {"migration abort", "migration abort (ID... | --all)",
     "undo migrations: their records leave the map, the source group keeps (and unfences) "
     "the slots, the target drops what it imported; a shalectl still running one stops",
     0, CTL_MAX_POS, migration_abort_flags, CTL_META, check_migration_ids, run_migration_abort, 0},
    {"replica add", "replica add GROUP ID RAFT_ADDR CLIENT_ADDR [--read-only]",
     "add node ID (started with --id ID --group GROUP --initial-cluster none) to GROUP as a "
     "voter or read replica, then record the group's members in the map; an existing member "
     "(same addresses) changes role: promoted to voter, or demoted with --read-only",
     4, 4, replica_add_flags, CTL_META, check_replica_add, run_replica_add, 0},
    {"replica remove", "replica remove GROUP ID",
     "remove member ID from GROUP, then record the group's members in the map", 2, 2, NULL,
     CTL_META, check_ids, run_replica_remove, 0},
    {"replica rejoin", "replica rejoin GROUP ID [--wait S]",
     "re-join a member whose own data cannot be trusted (a damaged Raft log): remove it, wait "
     "while it is wiped and started again as a joiner, add it back with its addresses and role",
     2, 2, replica_rejoin_flags, CTL_META, check_replica_rejoin, run_replica_rejoin, 0},
    {"user add", "user add NAME --role R [--prefix P] [--password-file F]",
     "add a user to the meta group's user table with a role (read: get, mget, status, map; "
     "readwrite: also put, del, cas, mput; admin: everything) and optionally a key prefix; "
     "the password is hashed here (scrypt) and only the hash is sent; refused (4) if NAME "
     "exists",
     1, 1, user_add_flags, CTL_META, check_user_add, run_user_add, 0},
    {"user remove", "user remove NAME", "remove a user (1 if there is no such user)", 1, 1, NULL,
     CTL_META, check_user_name, run_user_remove, 0},
    {"user list", "user list",
     "the users: name, role, key prefix (never a password hash) and the table's version", 0, 0,
     NULL, CTL_META, NULL, run_user_list, 0},
    {"user passwd", "user passwd NAME [--password-file F]",
     "set a user's password (role and prefix are kept); hashed here, only the hash is sent", 1,
     1, user_passwd_flags, CTL_META, check_user_name, run_user_passwd, 0},
    {"leader transfer", "leader transfer GROUP [ID]",
     "hand GROUP's leadership to voter ID (default: the most up-to-date voter)", 1, 2, NULL,
     CTL_META, check_ids, run_leader_transfer, 0},
    /* one group directly (--addr) */
    {"status", "--addr ADDRS status",
     "one group (or the meta group) directly: every member, its role, applied index, lag, "
     "staleness and health; with --auth, the user this command logged in as and its role",
     0, 0, NULL, CTL_NODE, NULL, run_node_status, 0},
    {"leader transfer", "--addr ADDRS leader transfer [ID]",
     "hand the group's leadership to voter ID (default: the most up-to-date voter)", 0, 1, NULL,
     CTL_NODE, check_ids, run_node_leader_transfer, 0},
    {"member add", "--addr ADDRS member add ID RAFT_ADDR CLIENT_ADDR [--replica]",
     "add a node (started with --initial-cluster none) to the group at --addr as a voter or "
     "read replica; does not touch the cluster map (see replica add)",
     3, 3, member_add_flags, CTL_NODE, check_member_add, run_member_add, 0},
    {"member remove", "--addr ADDRS member remove ID",
     "remove a node from the group at --addr; does not touch the cluster map (see replica "
     "remove)",
     1, 1, NULL, CTL_NODE, check_ids, run_member_remove, 0},
};
#define NVERBS (sizeof(verbs) / sizeof(verbs[0]))

static const char exit_help[] = "exit status:\n"
                                "  0  ok\n"
                                "  1  key not found (get, del), cas expectation not met, or "
                                "another error\n"
                                "  2  wrong arguments (nothing was sent)\n"
                                "  3  cluster unreachable: cannot connect, no leader, timed out "
                                "(a change's\n"
                                "     outcome is then unknown: check with status/map)\n"
                                "  4  change refused: the map changed meanwhile (CAS conflict), "
                                "the cluster\n"
                                "     already exists, a group owns slots, a node belongs to "
                                "another group, ...\n"
                                "  5  check: members of a group hold different data "
                                "(divergent slots printed)\n";

#define HELP_WIDTH 79

/* text, word-wrapped at HELP_WIDTH; the first line continues at column
 * `at` (already printed), the others start with indent. */
static void print_wrapped(FILE *f, const char *text, size_t at, const char *indent)
{
    size_t col = at;
    int first = 1;
    while (*text != '\0') {
        while (*text == ' ')
            text++;
        size_t w = strcspn(text, " ");
        if (w == 0)
            break;
        if (!first && col + 1 + w > HELP_WIDTH) {
            fprintf(f, "\n%s", indent);
            col = strlen(indent);
            first = 1;
        }
        fprintf(f, "%s%.*s", first ? "" : " ", (int)w, text);
        col += w + (first ? 0 : 1);
        first = 0;
        text += w;
    }
    fputc('\n', f);
}

static void print_flags(FILE *f, const verb_t *v, const char *indent)
{
    for (const flag_spec_t *fl = v->flags; fl && fl->name; fl++) {
        char flag[64], help[512], hang[64];
        snprintf(flag, sizeof(flag), "--%s%s%s", fl->name, fl->arg ? " " : "",
                 fl->arg ? fl->arg : "");
        snprintf(help, sizeof(help), "%s%s", fl->help, fl->repeat ? " (repeatable)" : "");
        fprintf(f, "%s%-20s ", indent, flag);
        snprintf(hang, sizeof(hang), "%s%-20s ", indent, "");
        print_wrapped(f, help, strlen(hang), hang);
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shalectl [options] VERB [ARGS]      (shalectl VERB --help for one verb)\n"
            "\n"
            "options:\n"
            "  --meta ADDRS        the meta group's members, host:port,... (cluster verbs);\n"
            "                      default $SHALE_META, else\n"
            "                      %s\n"
            "  --router ADDRS      router(s) for the data verbs (default $SHALE_ROUTER, then\n"
            "                      $SHALE_ADDR, then %s); top shows the routers named\n"
            "  --addr ADDRS        one group's members: data verbs go to it directly, and\n"
            "                      status / leader transfer / member act on that group alone\n"
            "  --timeout MS        per-request deadline in ms (default 5000; 2000 per node for\n"
            "                      status and top, 1000 per /health or /metrics read)\n"
            "  --cluster-id ID     refuse nodes of another cluster\n"
            "  --tls-ca FILE       speak TLS to every node, router and meta member, trusting\n"
            "                      the CA in FILE (PEM; default $SHALE_TLS_CA; off when unset)\n"
            "  --tls-cert FILE     the certificate to present where nodes require one\n"
            "                      (default $SHALE_TLS_CERT), with\n"
            "  --tls-key FILE      its private key (default $SHALE_TLS_KEY)\n"
            "  --tls-server-name N the name every server's certificate must carry, or @host\n"
            "                      for the host of each address (default $SHALE_TLS_SERVER_NAME;\n"
            "                      unset: any certificate the CA signed)\n"
            "  --user NAME         log in as NAME to processes started with --auth (default\n"
            "                      $SHALE_USER); its password is the first line of\n"
            "  --password-file F   F (default $SHALE_PASSWORD_FILE; - : standard input)\n"
            "  --config FILE       profile file of connection settings (default $SHALE_CONFIG,\n"
            "                      else ~/.config/shale/shalectl.conf when it exists): lines\n"
            "                      'name = value' naming the options above (meta, router, addr,\n"
            "                      tls-*, user, password-file); flags and $SHALE_* win over it\n"
            "  --profile NAME      also apply the file's [NAME] section (default $SHALE_PROFILE)\n"
            "  --json              machine-readable output\n"
            "  -h, --help          this help\n"
            "  --version           print shalectl's and libshale's versions\n"
            "  --                  end of options (for keys or values that start with -)\n",
            CTL_DEFAULT_META, CTL_DEFAULT_ROUTER);
    static const char *const sections[] = {"data (through --router, or one group with --addr)",
                                           "cluster (through the meta group, --meta)",
                                           "one group directly (--addr)"};
    static const ctl_target_t order[] = {CTL_DATA, CTL_META, CTL_NODE};
    for (size_t s = 0; s < 3; s++) {
        fprintf(f, "\n%s:\n", sections[s]);
        for (size_t i = 0; i < NVERBS; i++) {
            if (verbs[i].target != order[s])
                continue;
            fprintf(f, "  %s\n      ", verbs[i].synopsis);
            print_wrapped(f, verbs[i].help, 6, "      ");
            print_flags(f, &verbs[i], "      ");
        }
    }
    fprintf(f, "\n%s", exit_help);
}

/* A verb's name is `name`, or starts with the word `name` ("group"). */
static int verb_named(const verb_t *v, const char *name)
{
    size_t n = strlen(name);
    return strncmp(v->name, name, n) == 0 && (v->name[n] == '\0' || v->name[n] == ' ');
}

static void verb_usage(FILE *f, const char *name)
{
    fprintf(f, "usage:\n");
    for (size_t i = 0; i < NVERBS; i++)
        if (verb_named(&verbs[i], name))
            fprintf(f, "  shalectl [options] %s\n", verbs[i].synopsis);
    for (size_t i = 0; i < NVERBS; i++) {
        const verb_t *v = &verbs[i];
        if (!verb_named(v, name))
            continue;
        fprintf(f, "\n%s:\n  ", v->synopsis);
        print_wrapped(f, v->help, 2, "  ");
        if (v->flags != NULL)
            print_flags(f, v, "  ");
        fprintf(f, "  talks to: %s\n",
                v->target == CTL_DATA ? "--router (or one group: --addr)"
                : v->target == CTL_META && v->with_router
                    ? "the meta group (--meta), then the groups it names, and --router"
                : v->target == CTL_META ? "the meta group (--meta), then the groups it names"
                                        : "the group at --addr");
    }
    fprintf(f,
            "\nglobal options: --meta, --router, --addr, --timeout, --cluster-id, --tls-ca, "
            "--tls-cert, --tls-key, --tls-server-name, --user, --password-file, --config, --profile, --json "
            "(shalectl --help)\n\n%s",
            exit_help);
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "shalectl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (try --help)\n");
    return EXIT_USAGE;
}

static const verb_t *find_verb(const char *name, ctl_target_t prefer)
{
    const verb_t *first = NULL;
    for (size_t i = 0; i < NVERBS; i++)
        if (strcmp(verbs[i].name, name) == 0) {
            if (verbs[i].target == prefer)
                return &verbs[i];
            if (first == NULL)
                first = &verbs[i];
        }
    return first;
}

/* Global option at argv[*i] (advances *i past its value). Returns 1 when
 * it was one, 0 when it is not a global option, or an exit code + 10. */
static int global_option(int argc, char **argv, int *i, cmd_t *cmd)
{
    static const char *const with_value[] = {"--addr",     "--router",   "--meta",
                                             "--timeout",  "--cluster-id", "--tls-ca",
                                             "--tls-cert", "--tls-key",  "--tls-server-name",
                                             "--user",     "--password-file",
                                             "--config",   "--profile"};
    const char *a = argv[*i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        if (cmd->verb != NULL)
            verb_usage(stdout, cmd->verb->name);
        else
            usage(stdout);
        return 10 + EXIT_OKAY;
    }
    if (strcmp(a, "--version") == 0) {
        printf("shalectl %s (libshale %s)\n", SHALE_VERSION, shale_version());
        return 10 + EXIT_OKAY;
    }
    if (strcmp(a, "--json") == 0) {
        cmd->json = 1;
        return 1;
    }
    size_t k = 0;
    while (k < sizeof(with_value) / sizeof(with_value[0]) && strcmp(a, with_value[k]) != 0)
        k++;
    if (k == sizeof(with_value) / sizeof(with_value[0]))
        return 0;
    if (*i + 1 >= argc)
        return 10 + usage_error("option '%s' needs a value", a);
    const char *v = argv[++*i];
    if (k <= 2 && v[0] == '\0')
        return 10 + usage_error("option '%s' needs a host:port list", a);
    if (k == 0) {
        cmd->addr = v;
    } else if (k == 1) {
        cmd->router = v;
    } else if (k == 2) {
        cmd->meta = v;
    } else if (k == 4) {
        cmd->cluster_id = v;
    } else if (k >= 5 && k <= 8) {
        if (v[0] == '\0')
            return 10 + usage_error("option '%s' needs a value", a);
        const char **slot[] = {&cmd->tls_ca, &cmd->tls_cert, &cmd->tls_key,
                               &cmd->tls_server_name};
        *slot[k - 5] = v;
    } else if (k == 9) {
        cmd->user = v;
    } else if (k == 11 || k == 12) {
        /* --config / --profile: loaded before parsing (main). */
    } else if (k == 10) {
        cmd->password_file = v;
    } else {
        uint64_t t;
        if (ctl_parse_u64(v, &t) != 0 || t == 0 || t > UINT32_MAX)
            return 10 +
                   usage_error("--timeout needs a positive number of milliseconds, not '%s'", v);
        cmd->timeout_ms = (uint32_t)t;
    }
    return 1;
}

static int verb_has_flag(const verb_t *v, const char *a)
{
    for (int j = 0; v != NULL && v->flags != NULL && v->flags[j].name != NULL; j++)
        if (strncmp(a, "--", 2) == 0 && strcmp(a + 2, v->flags[j].name) == 0)
            return 1;
    return 0;
}

static int verb_flag(int argc, char **argv, int *i, cmd_t *cmd)
{
    const verb_t *v = cmd->verb;
    const char *a = argv[*i];
    int idx = -1;
    for (int j = 0; v->flags != NULL && v->flags[j].name != NULL; j++)
        if (strncmp(a, "--", 2) == 0 && strcmp(a + 2, v->flags[j].name) == 0)
            idx = j;
    if (idx < 0) {
        fprintf(stderr, "shalectl: %s: unknown option '%s' (try shalectl %s --help)\n", v->name, a,
                v->name);
        return EXIT_USAGE;
    }
    const flag_spec_t *fl = &v->flags[idx];
    if (cmd->set[idx] && !fl->repeat) {
        fprintf(stderr, "shalectl: %s: option '%s' given twice\n", v->name, a);
        return EXIT_USAGE;
    }
    cmd->set[idx] = 1;
    if (fl->arg == NULL)
        return -1;
    if (*i + 1 >= argc) {
        fprintf(stderr, "shalectl: %s: option '%s' needs a value (%s)\n", v->name, a, fl->arg);
        return EXIT_USAGE;
    }
    cmd->val[idx] = argv[++*i];
    if (fl->repeat) {
        if (cmd->nlist == CTL_MAX_LIST) {
            fprintf(stderr, "shalectl: %s: option '%s' given more than %d times\n", v->name, a,
                    CTL_MAX_LIST);
            return EXIT_USAGE;
        }
        cmd->list_flag[cmd->nlist] = idx;
        cmd->list[cmd->nlist++] = cmd->val[idx];
    }
    return -1;
}

/* Which of a verb's rows applies, and whether the address options fit it. */
static int pick_target(cmd_t *cmd)
{
    const verb_t *v = cmd->verb;
    if (cmd->addr != NULL) {
        const verb_t *direct = find_verb(v->name, CTL_NODE);
        if (direct->target == CTL_NODE)
            v = direct;
    }
    cmd->verb = v;
    const char *name = v->name;
    switch (v->target) {
    case CTL_DATA:
        if (cmd->addr != NULL && cmd->router != NULL) {
            fprintf(stderr,
                    "shalectl: %s: give --router (the cluster) or --addr (one group), "
                    "not both\n",
                    name);
            return EXIT_USAGE;
        }
        if (cmd->meta != NULL) {
            fprintf(stderr,
                    "shalectl: %s: data verbs go through --router (or --addr), not "
                    "--meta\n",
                    name);
            return EXIT_USAGE;
        }
        break;
    case CTL_META:
        if (cmd->addr != NULL || (cmd->router != NULL && !v->with_router)) {
            fprintf(stderr, "shalectl: %s: works through the meta group: use --meta, not %s\n",
                    name, cmd->addr != NULL ? "--addr" : "--router");
            return EXIT_USAGE;
        }
        break;
    case CTL_NODE:
        if (cmd->meta != NULL || cmd->router != NULL) {
            fprintf(stderr, "shalectl: %s: --addr names one group; %s does not apply\n", name,
                    cmd->meta != NULL ? "--meta" : "--router");
            return EXIT_USAGE;
        }
        if (cmd->addr == NULL) {
            const char *env = getenv("SHALE_ADDR");
            if (env == NULL || env[0] == '\0') {
                fprintf(stderr,
                        "shalectl: %s: acts on one group: give its members with --addr (or "
                        "$SHALE_ADDR)%s\n",
                        name,
                        strcmp(name, "member add") == 0      ? "; in a cluster use replica add"
                        : strcmp(name, "member remove") == 0 ? "; in a cluster use replica remove"
                                                             : "");
                return EXIT_USAGE;
            }
            cmd->addr = env;
        }
        break;
    }
    return -1;
}

/* Command line: [global options] VERB [args, verb flags, global options].
 * Verb flags come after the verb (their table is the verb's). Returns -1 to
 * go on, or an exit code (help, usage error). */
static int parse(int argc, char **argv, cmd_t *cmd)
{
    int no_more_flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        /* "-1" is a (bad) number, for the verb's check to name. */
        int is_flag = !no_more_flags && a[0] == '-' && a[1] != '\0' && (a[1] < '0' || a[1] > '9');
        if (is_flag && strcmp(a, "--") == 0) {
            no_more_flags = 1;
            continue;
        }
        if (is_flag) {
            /* A verb's own flag wins over a global option of the same name
             * (user add --password-file is the new user's password; the
             * login's --password-file goes before the verb). */
            if (verb_has_flag(cmd->verb, a)) {
                int rv = verb_flag(argc, argv, &i, cmd);
                if (rv >= 0)
                    return rv;
                continue;
            }
            int g = global_option(argc, argv, &i, cmd);
            if (g >= 10)
                return g - 10;
            if (g == 1)
                continue;
            if (cmd->verb == NULL)
                return usage_error("unknown option '%s'", a);
            int rv = verb_flag(argc, argv, &i, cmd);
            if (rv >= 0)
                return rv;
            continue;
        }
        if (cmd->verb == NULL) {
            /* Two-word verbs ("group add") first. */
            const verb_t *v = NULL;
            if (i + 1 < argc) {
                char two[64];
                snprintf(two, sizeof(two), "%s %s", a, argv[i + 1]);
                if ((v = find_verb(two, CTL_META)) != NULL)
                    i++;
            }
            if (v == NULL)
                v = find_verb(a, CTL_META);
            if (v == NULL) {
                int help = i + 1 < argc &&
                           (strcmp(argv[i + 1], "--help") == 0 || strcmp(argv[i + 1], "-h") == 0);
                for (size_t k = 0; k < NVERBS; k++)
                    if (strncmp(verbs[k].name, a, strlen(a)) == 0 &&
                        verbs[k].name[strlen(a)] == ' ') {
                        if (help) {
                            verb_usage(stdout, a);
                            return EXIT_OKAY;
                        }
                        fprintf(stderr,
                                "shalectl: '%s' needs a second word: %s ... (try "
                                "--help)\n",
                                a, verbs[k].name);
                        return EXIT_USAGE;
                    }
                return usage_error("unknown verb '%s'", a);
            }
            cmd->verb = v;
            continue;
        }
        if (cmd->npos == CTL_MAX_POS) {
            fprintf(stderr, "shalectl: %s: too many arguments ('%s')\n", cmd->verb->name, a);
            return EXIT_USAGE;
        }
        cmd->pos[cmd->npos++] = a;
    }
    if (cmd->verb == NULL)
        return usage_error("%s", "no verb given");
    int rv = pick_target(cmd);
    if (rv >= 0)
        return rv;
    const verb_t *v = cmd->verb;
    if (cmd->npos > v->max_pos) {
        fprintf(stderr, "shalectl: %s: too many arguments ('%s')\nusage: shalectl [options] %s\n",
                v->name, cmd->pos[v->max_pos], v->synopsis);
        return EXIT_USAGE;
    }
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

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

/* --user / --password-file (or their variables): the password's first
 * line into cmd->password. -1 to go on, else an exit code printed. */
static int load_credential(cmd_t *cmd)
{
    if (cmd->user == NULL)
        cmd->user = env_or("SHALE_USER", NULL);
    if (cmd->password_file == NULL)
        cmd->password_file = env_or("SHALE_PASSWORD_FILE", NULL);
    if (cmd->user == NULL && cmd->password_file == NULL)
        return -1;
    if (cmd->user == NULL || cmd->password_file == NULL)
        return usage_error("%s", "--user and --password-file go together");
    char err[AUTH_ERRLEN];
    if (auth_name_check(cmd->user, err, sizeof(err)) != 0)
        return usage_error("--user: %s", err);
    if (auth_password_file_read(cmd->password_file, &cmd->password, &cmd->password_len, err,
                                sizeof(err)) != 0)
        return usage_error("--password-file: %s", err);
    return -1;
}

static int run(cmd_t *cmd);

/* --config FILE / --profile NAME (or $SHALE_CONFIG / $SHALE_PROFILE): the
 * profile file's settings become $SHALE_* defaults before anything reads
 * them (ctl_profile.c). -1 to go on, else the exit code, printed. */
static int load_profile(int argc, char **argv)
{
    const char *file = env_or("SHALE_CONFIG", NULL), *profile = env_or("SHALE_PROFILE", NULL);
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        int is_file = strcmp(argv[i], "--config") == 0;
        if (!is_file && strcmp(argv[i], "--profile") != 0)
            continue;
        if (i + 1 >= argc || argv[i + 1][0] == '\0')
            return usage_error("option '%s' needs a value", argv[i]);
        if (is_file)
            file = argv[++i];
        else
            profile = argv[++i];
    }
    char err[512];
    if (ctl_profile_load(file, profile, err, sizeof(err)) != 0)
        return usage_error("%s", err);
    return -1;
}

int main(int argc, char **argv)
{
    cmd_t cmd;
    memset(&cmd, 0, sizeof(cmd));
    int rv = load_profile(argc, argv);
    if (rv >= 0)
        return rv;
    rv = parse(argc, argv, &cmd);
    if (rv >= 0)
        return rv;
    rv = load_credential(&cmd);
    if (rv >= 0)
        return rv;
    rv = run(&cmd);
    if (cmd.password != NULL)
        OPENSSL_cleanse(cmd.password, cmd.password_len);
    free(cmd.password);
    return rv;
}

static int run(cmd_t *cmdp)
{
    cmd_t cmd = *cmdp;
    if (cmd.meta == NULL)
        cmd.meta = env_or("SHALE_META", CTL_DEFAULT_META);
    if (cmd.tls_ca == NULL)
        cmd.tls_ca = env_or("SHALE_TLS_CA", NULL);
    if (cmd.tls_cert == NULL)
        cmd.tls_cert = env_or("SHALE_TLS_CERT", NULL);
    if (cmd.tls_key == NULL)
        cmd.tls_key = env_or("SHALE_TLS_KEY", NULL);
    if (cmd.tls_server_name == NULL)
        cmd.tls_server_name = env_or("SHALE_TLS_SERVER_NAME", NULL);
    /* Status probes run on the async API; a node closing a connection must
     * not kill the tool (libuv programs ignore SIGPIPE). */
    signal(SIGPIPE, SIG_IGN);

    const verb_t *v = cmd.verb;
    if (v->target == CTL_META)
        return v->run(NULL, &cmd);
    const char *addrs = cmd.addr;
    if (v->target == CTL_DATA) {
        if (addrs == NULL)
            addrs = cmd.router;
        if (addrs == NULL)
            addrs = env_or("SHALE_ROUTER", env_or("SHALE_ADDR", CTL_DEFAULT_ROUTER));
    }
    shale_client_t *c = NULL;
    int code = ctl_connect(&cmd, v->name, addrs, 5000, &c);
    if (code != 0)
        return code;
    code = v->run(c, &cmd);
    shale_close(c);
    return code;
}
