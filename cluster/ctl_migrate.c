/* shalectl: online resharding — the coordinator of slot migrations
 * (docs/resharding.md): slot move, rebalance, migration status / abort /
 * resume, and the drain that group remove runs first.
 *
 * A migration moves a set of slots from group A to group B in five steps:
 * start (MAP_CAS adding the record, COPYING), copy (DATA pages, then LOG
 * rounds), fence (MAP_CAS: FENCED), drain (LOG until "done and fenced",
 * then SESSIONS) and flip (one MAP_CAS assigning the slots to B and
 * removing the record). Rules this file follows:
 *  - it keeps no state of its own: everything needed to continue is the
 *    map's record, so a killed coordinator is resumed by any later one
 *    (migration resume bumps the record's run, which makes B refuse the
 *    imports of every older run, and unfences);
 *  - every map change is a read-modify-CAS whose edit first asks "is it
 *    done already?" (NOOP) and "is the record still ours?" (same id, same
 *    run): a CAS whose outcome is unknown, or one that lost a race, is
 *    re-read and re-decided; a record that is gone (aborted) or has another
 *    run (taken over) stops this coordinator with EXIT_REFUSED;
 *  - imports of one slot are sent in order, each after the previous one is
 *    acknowledged: import lanes (threads with their own B client) take the
 *    pages the exporting thread queues, a slot always on the same lane, so
 *    exporting page k+1 overlaps importing page k, and the drain's imports
 *    of different slots run side by side (the write pause is shorter);
 *  - nodes that have not applied the record yet answer UNAVAILABLE; that
 *    and every other transient error is retried with back-off for up to
 *    MIG_RETRY_MS before the migration fails (and stays in the map);
 *  - Ctrl-C stops at a safe point: a COPYING migration is left in the map
 *    for migration resume, a FENCED one is finished (its slots are paused
 *    until it is); a second Ctrl-C exits at once;
 *  - --max-parallel migrations run at once, each on its own threads (one
 *    exporting, MIG_LANES importing) with their own libshale clients (sync
 *    clients are per thread); --rate is one token bucket shared by all. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "shale_internal.h"
#include "cmap.h"
#include "ctl.h"
#include "frame.h"
#include "rebalance.h"

#define MIG_RETRY_MS 30000        /* transient errors of one request, and a CAS loop */
#define MIG_PAGE_BYTES (1u << 20) /* raw bytes asked per export page */
#define MIG_LOG_SMALL (64u << 10) /* a LOG round this small: ready to fence */
#define MIG_LOG_ROUNDS 8          /* at most this many LOG rounds before the fence */
#define MIG_IMPORT_DEPTH 4        /* pages queued per import lane */
#define MIG_LANES 4               /* import lanes (threads, B clients) per migration */
#define MIG_FENCE_POLL_MS 5       /* drain: asking again until the fence is applied */
/* drain: a source member still not fenced after this long may be cut off
 * from its group (a deposed leader): ask the next member instead. */
#define MIG_FENCE_ROTATE_MS 300
#define MIG_MAX_PARALLEL 32
#define MIG_DEFAULT_BATCH 64
#define MIG_DEFAULT_RATE_MB 64.0
#define MB 1e6

enum { STOP_NONE, STOP_START, STOP_COPY, STOP_FENCE, STOP_DRAIN };
static const char *const stop_names[] = {"", "start", "copy", "fence", "drain"};

/* How a migration ended for this run of shalectl. */
typedef enum outcome {
    OUT_PENDING,
    OUT_DONE,    /* flipped */
    OUT_STOPPED, /* --stop-after: left in the map */
    OUT_LEFT,    /* interrupted or failed: left in the map */
    OUT_GONE,    /* aborted or taken over by someone else */
} outcome_t;

typedef struct mig_opts {
    double rate; /* bytes/s; 0: unlimited */
    uint32_t batch;
    int parallel;
    int stop_after;
    int dry_run;
} mig_opts_t;

/* One migration: new (id 0 until started) or the resume of a record. */
typedef struct mig_job {
    uint64_t id, from, to;
    uint32_t *slots; /* new: malloc'd; resume: filled from the record */
    size_t nslots;
    char note[64];
    /* results */
    outcome_t outcome;
    int left_state; /* OUT_LEFT / OUT_STOPPED: the record's state */
    int code;       /* exit code */
    char msg[SHALE_ERRMSG_LEN + 128];
    uint64_t bytes, keys, changes;
    uint64_t fenced_ms, ms;
    /* where the fenced window went (ms): the fence MAP_CAS, fence CAS done
     * -> every slot's source member answered "fenced", the rest of the
     * drain (changelog tail and sessions imported), the flip MAP_CAS */
    uint64_t fence_cas_ms, fence_seen_ms, drain_ms, flip_cas_ms;
} mig_job_t;

/* What every migration thread shares. */
typedef struct run_ctx {
    const cmd_t *cmd;
    const char *verb;
    mig_opts_t opts;
    mig_job_t *jobs;
    size_t njobs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t next_job;
    int running;  /* threads not finished */
    int stop_new; /* start no more migrations */
    /* progress (under mu) */
    uint64_t total_slots, copied_slots, moved_slots, bytes;
    uint64_t t0;
    /* token bucket (under mu) */
    double tokens;
    uint64_t tb_last;
    int tty;
    size_t progress_len;
} run_ctx_t;

/* Ctrl-C: 1 after the first (stop at a safe point). */
static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    if (g_interrupted) {
        static const char m[] = "\nshalectl: interrupted again: exiting now\n";
        ssize_t w = write(2, m, sizeof(m) - 1);
        (void)w;
        _exit(130);
    }
    g_interrupted = 1;
    static const char m[] = "\nshalectl: stopping at a safe point (Ctrl-C again exits now)\n";
    ssize_t w = write(2, m, sizeof(m) - 1);
    (void)w;
}

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Errors worth retrying: the node is not ready, not the leader, busy, or
 * the connection broke. */
static int transient(int rv)
{
    return rv == SHALE_EUNAVAILABLE || rv == SHALE_ETIMEOUT || rv == SHALE_EIO ||
           rv == SHALE_ENOTLEADER || rv == SHALE_EOVERLOAD || rv == SHALE_ESLOTMOVING;
}

static const char *state_name(int state)
{
    return state == SHALE__MIGRATION_STATE__MIG_FENCED ? "fenced" : "copying";
}

/* ---- Records in a map ------------------------------------------------------------*/

/* cmap_migration, for a map being edited. */
static Shale__Migration *map_find_mig(Shale__ClusterMap *m, uint64_t id)
{
    return (Shale__Migration *)cmap_migration(m, id);
}

/* The migration slot s is in, or NULL. */
static const Shale__Migration *slot_mig(const Shale__ClusterMap *m, uint32_t s)
{
    for (size_t i = 0; i < m->n_migrations; i++)
        for (size_t k = 0; k < m->migrations[i]->n_slots; k++)
            if (m->migrations[i]->slots[k] == s)
                return m->migrations[i];
    return NULL;
}

static void map_remove_mig(Shale__ClusterMap *m, uint64_t id)
{
    for (size_t i = 0; i < m->n_migrations; i++) {
        if (m->migrations[i]->id != id)
            continue;
        shale__migration__free_unpacked(m->migrations[i], NULL);
        memmove(&m->migrations[i], &m->migrations[i + 1],
                (m->n_migrations - i - 1) * sizeof(Shale__Migration *));
        m->n_migrations--;
        return;
    }
}

/* Append a record (malloc'd: cmap_free frees it with the map). -1 on ENOMEM. */
static int map_add_mig(Shale__ClusterMap *m, uint64_t id, const mig_job_t *job, uint64_t created)
{
    Shale__Migration *r = malloc(sizeof(*r));
    Shale__Migration **arr = realloc(m->migrations, (m->n_migrations + 1) * sizeof(*arr));
    if (arr != NULL)
        m->migrations = arr;
    if (r == NULL || arr == NULL) {
        free(r);
        return -1;
    }
    shale__migration__init(r);
    r->id = id;
    r->from_group = job->from;
    r->to_group = job->to;
    r->slots = malloc((job->nslots ? job->nslots : 1) * sizeof(uint32_t));
    r->note = strdup(job->note);
    if (r->slots == NULL || r->note == NULL) {
        shale__migration__free_unpacked(r, NULL);
        return -1;
    }
    memcpy(r->slots, job->slots, job->nslots * sizeof(uint32_t));
    r->n_slots = job->nslots;
    r->state = SHALE__MIGRATION_STATE__MIG_COPYING;
    r->has_run = 1;
    r->run = 1;
    r->has_created_ms = 1;
    r->created_ms = created;
    m->migrations[m->n_migrations++] = r;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The record's slots as ranges (sorted copy). */
static void mig_ranges(const Shale__Migration *r, char *buf, size_t len)
{
    uint32_t *s = malloc((r->n_slots ? r->n_slots : 1) * sizeof(uint32_t));
    if (s == NULL) {
        snprintf(buf, len, "?");
        return;
    }
    memcpy(s, r->slots, r->n_slots * sizeof(uint32_t));
    qsort(s, r->n_slots, sizeof(uint32_t), cmp_u32);
    rb_format_ranges(s, r->n_slots, buf, len);
    free(s);
}

static void fmt_age(uint64_t ms, char *buf, size_t len)
{
    uint64_t s = ms / 1000;
    if (s < 120)
        snprintf(buf, len, "%" PRIu64 "s", s);
    else if (s < 7200)
        snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    else
        snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
}

static uint64_t mig_age(const Shale__Migration *r)
{
    uint64_t now = wall_ms();
    return r->has_created_ms && r->created_ms < now ? now - r->created_ms : 0;
}

void mig_print_list(const Shale__ClusterMap *map, const char *indent)
{
    printf("%s%-5s %-5s %-5s %-8s %-4s %-7s %-6s %s\n", indent, "ID", "FROM", "TO", "STATE", "RUN",
           "AGE", "SLOTS", "RANGES / NOTE");
    for (size_t i = 0; i < map->n_migrations; i++) {
        const Shale__Migration *r = map->migrations[i];
        char ranges[160], age[48];
        mig_ranges(r, ranges, sizeof(ranges));
        fmt_age(mig_age(r), age, sizeof(age));
        printf("%s%-5" PRIu64 " %-5" PRIu64 " %-5" PRIu64 " %-8s %-4" PRIu64 " %-7s %-6zu %s%s%s\n",
               indent, r->id, r->from_group, r->to_group, state_name(r->state), r->run, age,
               r->n_slots, ranges, r->note && r->note[0] ? "  " : "", r->note ? r->note : "");
    }
}

void mig_json_list(const Shale__ClusterMap *map)
{
    printf("[");
    for (size_t i = 0; i < map->n_migrations; i++) {
        const Shale__Migration *r = map->migrations[i];
        char ranges[4096];
        mig_ranges(r, ranges, sizeof(ranges));
        printf("%s{\"id\":%" PRIu64 ",\"from\":%" PRIu64 ",\"to\":%" PRIu64
               ",\"state\":\"%s\",\"run\":%" PRIu64 ",\"created_ms\":%" PRIu64
               ",\"age_ms\":%" PRIu64 ",\"nslots\":%zu,\"slots\":\"%s\",\"note\":",
               i ? "," : "", r->id, r->from_group, r->to_group, state_name(r->state), r->run,
               r->created_ms, mig_age(r), r->n_slots, ranges);
        ctl_json_str(stdout, r->note);
        printf("}");
    }
    printf("]");
}

/* ---- Flags ----------------------------------------------------------------------*/

/* The flags the migration verbs share. */
// clang-format off
#define FLAG_RATE {"rate", "MB/s", "copy at most this many MB (10^6 raw bytes) per second, all " \
                   "migrations together (default 64; 0: unlimited)", 0}
#define FLAG_BATCH {"batch", "N", "at most N slots per migration (default 64)", 0}
#define FLAG_PARALLEL {"max-parallel", "N", "run up to N migrations at once (default 1)", 0}
#define FLAG_STOP {"stop-after", "STEP", "test hook: exit 0 right after STEP (start, copy, " \
                   "fence or drain), leaving the migration in the map, as a coordinator " \
                   "killed there would", 0}
// clang-format on

const flag_spec_t slot_move_flags[] = {FLAG_PARALLEL, FLAG_RATE, FLAG_BATCH, FLAG_STOP, {NULL, NULL, NULL, 0}};
const flag_spec_t rebalance_flags[] = {
    {"dry-run", NULL, "print the plan and stop", 0},
    FLAG_PARALLEL,
    FLAG_RATE,
    FLAG_BATCH,
    FLAG_STOP,
    {NULL, NULL, NULL, 0},
};
const flag_spec_t migration_abort_flags[] = {
    {"all", NULL, "every migration in the map", 0},
    {NULL, NULL, NULL, 0},
};
const flag_spec_t migration_resume_flags[] = {
    FLAG_PARALLEL, FLAG_RATE, FLAG_STOP, {NULL, NULL, NULL, 0}};
const flag_spec_t group_remove_flags[] = {
    FLAG_PARALLEL, FLAG_RATE, FLAG_BATCH, FLAG_STOP, {NULL, NULL, NULL, 0}};

/* The value of verb flag `name` (NULL: not given; "" for a flag with no
 * value that was given). */
static const char *flag(const cmd_t *cmd, const char *name)
{
    const flag_spec_t *fl = cmd->verb->flags;
    for (int i = 0; fl != NULL && fl[i].name != NULL; i++)
        if (strcmp(fl[i].name, name) == 0 && cmd->set[i])
            return fl[i].arg != NULL ? cmd->val[i] : "";
    return NULL;
}

/* Reads the migration flags into o; 0, or -1 with err. */
static int parse_opts(const cmd_t *cmd, mig_opts_t *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->rate = MIG_DEFAULT_RATE_MB * MB;
    o->batch = MIG_DEFAULT_BATCH;
    o->parallel = 1;
    const char *v;
    uint64_t n;
    if ((v = flag(cmd, "rate")) != NULL) {
        char *end;
        errno = 0;
        double r = strtod(v, &end);
        if (errno != 0 || end == v || *end != '\0' || !(r >= 0) || r > 1e6) {
            snprintf(err, errlen, "--rate needs MB/s as a number >= 0 (0: unlimited), not '%s'", v);
            return -1;
        }
        o->rate = r * MB;
    }
    if ((v = flag(cmd, "batch")) != NULL) {
        if (ctl_parse_u64(v, &n) != 0 || n == 0 || n > 65535) {
            snprintf(err, errlen, "--batch needs a number of slots in 1..65535, not '%s'", v);
            return -1;
        }
        o->batch = (uint32_t)n;
    }
    if ((v = flag(cmd, "max-parallel")) != NULL) {
        if (ctl_parse_u64(v, &n) != 0 || n == 0 || n > MIG_MAX_PARALLEL) {
            snprintf(err, errlen, "--max-parallel needs a number in 1..%d, not '%s'",
                     MIG_MAX_PARALLEL, v);
            return -1;
        }
        o->parallel = (int)n;
    }
    if ((v = flag(cmd, "stop-after")) != NULL) {
        for (int s = STOP_START; s <= STOP_DRAIN; s++)
            if (strcmp(v, stop_names[s]) == 0)
                o->stop_after = s;
        if (o->stop_after == STOP_NONE) {
            snprintf(err, errlen, "--stop-after needs start, copy, fence or drain, not '%s'", v);
            return -1;
        }
    }
    o->dry_run = flag(cmd, "dry-run") != NULL;
    return 0;
}

/* "S" or "FROM-TO". */
static int parse_slot_range(const char *s, uint64_t *first, uint64_t *last)
{
    const char *dash = strchr(s, '-');
    if (dash == NULL) {
        if (ctl_parse_u64(s, first) != 0)
            return -1;
        *last = *first;
        return 0;
    }
    char a[32];
    if ((size_t)(dash - s) >= sizeof(a) || dash == s)
        return -1;
    memcpy(a, s, (size_t)(dash - s));
    a[dash - s] = '\0';
    return ctl_parse_u64(a, first) != 0 || ctl_parse_u64(dash + 1, last) != 0 ? -1 : 0;
}

int check_slot_move(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t first, last, gid;
    mig_opts_t o;
    if (parse_slot_range(cmd->pos[0], &first, &last) != 0 || first > 65534 || last > 65534) {
        snprintf(err, errlen, "SLOTS must be a slot number or a range FROM-TO, not '%s'",
                 cmd->pos[0]);
        return -1;
    }
    if (first > last) {
        snprintf(err, errlen, "slot range '%s' is empty (FROM > TO)", cmd->pos[0]);
        return -1;
    }
    if (ctl_parse_id(cmd->pos[1], &gid) != 0) {
        snprintf(err, errlen, "GROUP must be a positive integer, not '%s'", cmd->pos[1]);
        return -1;
    }
    return parse_opts(cmd, &o, err, errlen);
}

int check_rebalance(const cmd_t *cmd, char *err, size_t errlen)
{
    mig_opts_t o;
    return parse_opts(cmd, &o, err, errlen);
}

int check_migration_ids(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t id;
    mig_opts_t o;
    for (int i = 0; i < cmd->npos; i++)
        if (ctl_parse_id(cmd->pos[i], &id) != 0) {
            snprintf(err, errlen, "migration ids are positive integers, not '%s'", cmd->pos[i]);
            return -1;
        }
    if (strcmp(cmd->verb->name, "migration abort") == 0) {
        int all = flag(cmd, "all") != NULL;
        if (all && cmd->npos > 0) {
            snprintf(err, errlen, "give migration ids or --all, not both");
            return -1;
        }
        if (!all && cmd->npos == 0) {
            snprintf(err, errlen, "name the migrations to abort (IDs) or --all");
            return -1;
        }
        return 0;
    }
    return parse_opts(cmd, &o, err, errlen);
}

int check_group_remove(const cmd_t *cmd, char *err, size_t errlen)
{
    mig_opts_t o;
    if (check_ids(cmd, err, errlen) != 0)
        return -1;
    return parse_opts(cmd, &o, err, errlen);
}

/* ---- Running migrations -------------------------------------------------------------*/

/* One migration in progress on one thread. */
typedef struct mig mig_t;

/* A page waiting for its import. */
typedef struct imp_item {
    uint32_t slot;
    int phase;     /* 0: no page, a mark that the slot's copy is queued before it */
    uint8_t *data; /* malloc'd */
    size_t len;
    uint32_t raw_len, count;
} imp_item_t;

/* An import lane: a thread with its own B client importing the pages
 * queued for it in order. A slot always uses the same lane (the slot's
 * index in the migration modulo the lanes), so a slot's imports stay in
 * order while different slots' imports (the drain) run side by side. */
typedef struct lane {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    imp_item_t q[MIG_IMPORT_DEPTH];
    size_t head, n;
    int busy, quit;
    int rv; /* the first failure: later items are dropped */
    char err[SHALE_ERRMSG_LEN + 64];
    mig_t *mg;
    shale_client_t *b;
} lane_t;

/* The start step's memory across CAS attempts: the id its last attempt
 * used, and the record's creation time, which together identify our
 * record when an attempt's answer was lost. */
typedef struct start_arg {
    uint64_t id;
    uint64_t created;
} start_arg_t;

struct mig {
    run_ctx_t *rc;
    meta_t *meta;
    mig_job_t *job;
    uint64_t run;
    shale_client_t *a;
    ProtobufCBinaryData *cursor; /* per slot: the LOG position (malloc'd data) */
    lane_t lanes[MIG_LANES];
    int nlanes; /* started */
    /* The lanes' one meta connection (import_behind), under lanes_mu. */
    pthread_mutex_t lanes_mu;
    meta_t lanes_meta;
    int lanes_meta_open;
    start_arg_t start;
    shale_client_t *pb; /* B, leader first: MIG_PUSH (A's pushes use a) */
    uint64_t t_fenced_seen; /* drain: when the last slot's LOG said done and fenced */
};

/* Count imported bytes and records, for the run and for the job (phase 0:
 * a slot's copy is imported). */
static void progress_add(mig_t *mg, int phase, uint64_t bytes, uint64_t count)
{
    run_ctx_t *rc = mg->rc;
    pthread_mutex_lock(&rc->mu);
    rc->copied_slots += phase == 0;
    rc->bytes += bytes;
    mg->job->bytes += bytes;
    if (phase == SHALE__MIG_PHASE__MIG_PHASE_DATA) {
        mg->job->keys += count;
    } else if (phase == SHALE__MIG_PHASE__MIG_PHASE_LOG) {
        mg->job->changes += count;
    }
    pthread_mutex_unlock(&rc->mu);
}

/* Take n bytes from the shared token bucket (burst: one second's worth),
 * sleeping as long as the debt says. */
static void throttle(run_ctx_t *rc, uint64_t n)
{
    if (rc->opts.rate <= 0 || n == 0)
        return;
    pthread_mutex_lock(&rc->mu);
    uint64_t now = uv_hrtime();
    rc->tokens += (double)(now - rc->tb_last) / 1e9 * rc->opts.rate;
    if (rc->tokens > rc->opts.rate)
        rc->tokens = rc->opts.rate;
    rc->tb_last = now;
    rc->tokens -= (double)n;
    double debt = rc->tokens < 0 ? -rc->tokens / rc->opts.rate : 0;
    pthread_mutex_unlock(&rc->mu);
    if (debt > 0)
        sleep_ms((uint64_t)(debt * 1000.0) + 1);
}

/* Sleep for a retry: 20 ms doubling to 500 ms. */
static void backoff(int attempt)
{
    uint64_t ms = 20u << (attempt < 5 ? attempt : 5);
    sleep_ms(ms > 500 ? 500 : ms);
}

static map_edit_result_t check_ours(const Shale__ClusterMap *cur, mig_t *mg,
                                    const Shale__Migration **r, char *why, size_t len);

/* B refused an import as INVALID: is it only behind (its applied record has
 * an older run of ours) while the map still says the migration is ours? */
static int import_behind(mig_t *mg)
{
    Shale__ClusterMap *map = NULL;
    const Shale__Migration *r;
    char err[SHALE_ERRMSG_LEN], why[SHALE_ERRMSG_LEN];
    int ours = 0;
    pthread_mutex_lock(&mg->lanes_mu);
    if (mg->lanes_meta_open && map_get(&mg->lanes_meta, &map, err) == SHALE_OK)
        ours = check_ours(map, mg, &r, why, sizeof(why)) == EDIT_APPLY;
    pthread_mutex_unlock(&mg->lanes_mu);
    cmap_free(map);
    return ours;
}

static int import_one(lane_t *ln, const imp_item_t *it, char *err, size_t errlen)
{
    mig_t *mg = ln->mg;
    Shale__MigImportRequest rq = SHALE__MIG_IMPORT_REQUEST__INIT;
    rq.id = mg->job->id;
    rq.run = mg->run;
    rq.slot = it->slot;
    rq.has_data = 1;
    rq.data.data = it->data;
    rq.data.len = it->len;
    rq.has_raw_len = 1;
    rq.raw_len = it->raw_len;
    rq.has_count = 1;
    rq.count = it->count;
    size_t len = shale__mig_import_request__get_packed_size(&rq);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        return SHALE_ENOMEM;
    }
    shale__mig_import_request__pack(&rq, buf);
    uint64_t deadline = mono_ms() + MIG_RETRY_MS;
    int rv;
    char msg[SHALE_ERRMSG_LEN];
    for (int attempt = 0;; attempt++) {
        uint8_t *resp = NULL;
        size_t rlen = 0;
        msg[0] = '\0';
        rv = shale_call(ln->b, SHALE_MSG_MIG_IMPORT_REQ, SHALE_MSG_MIG_IMPORT_RESP, buf, len, &resp,
                        &rlen, msg, NULL);
        free(resp);
        if (rv == SHALE_OK || mono_ms() >= deadline)
            break;
        /* A refusal for another run while the map says ours: B has not
         * applied our (re)start yet. Anything else INVALID is final. */
        if (!transient(rv) && !(rv == SHALE_EINVAL && import_behind(mg)))
            break;
        backoff(attempt);
    }
    free(buf);
    if (rv != SHALE_OK)
        snprintf(err, errlen, "import of slot %u into group %" PRIu64 ": %s", it->slot, mg->job->to,
                 msg[0] ? msg : shale_strerror(rv));
    return rv;
}

static void *lane_main(void *arg)
{
    lane_t *ln = arg;
    pthread_mutex_lock(&ln->mu);
    for (;;) {
        while (ln->n == 0 && !ln->quit)
            pthread_cond_wait(&ln->cv, &ln->mu);
        if (ln->n == 0)
            break;
        imp_item_t it = ln->q[ln->head];
        int failed = ln->rv != 0;
        ln->busy = 1;
        pthread_mutex_unlock(&ln->mu);
        char err[sizeof(ln->err)];
        int rv = failed || it.phase == 0 ? 0 : import_one(ln, &it, err, sizeof(err));
        if (!failed && rv == SHALE_OK)
            progress_add(ln->mg, it.phase, it.raw_len, it.count);
        free(it.data);
        pthread_mutex_lock(&ln->mu);
        ln->head = (ln->head + 1) % MIG_IMPORT_DEPTH;
        ln->n--;
        ln->busy = 0;
        if (rv != SHALE_OK && ln->rv == 0) {
            ln->rv = rv;
            snprintf(ln->err, sizeof(ln->err), "%s", err);
        }
        pthread_cond_broadcast(&ln->cv);
    }
    pthread_mutex_unlock(&ln->mu);
    return NULL;
}

static int connect_retry(mig_t *mg, uint64_t gid, const char *list, shale_client_t **c, char *err,
                         size_t errlen);

/* Start the import lanes, each connected to B (addrs: leader first). */
static int lanes_start(mig_t *mg, const char *addrs, char *err, size_t errlen)
{
    mg->lanes_meta_open = meta_open(mg->rc->cmd, mg->rc->verb, &mg->lanes_meta) == 0;
    for (int i = 0; i < MIG_LANES; i++) {
        lane_t *ln = &mg->lanes[i];
        memset(ln, 0, sizeof(*ln));
        ln->mg = mg;
        int rv = connect_retry(mg, mg->job->to, addrs, &ln->b, err, errlen);
        if (rv != SHALE_OK)
            return rv;
        pthread_mutex_init(&ln->mu, NULL);
        pthread_cond_init(&ln->cv, NULL);
        if (pthread_create(&ln->th, NULL, lane_main, ln) != 0) {
            pthread_mutex_destroy(&ln->mu);
            pthread_cond_destroy(&ln->cv);
            shale_close(ln->b);
            snprintf(err, errlen, "cannot start a thread");
            return SHALE_ENOMEM;
        }
        mg->nlanes++;
    }
    return SHALE_OK;
}

/* Stop the lanes; what is still queued is dropped. */
static void lanes_stop(mig_t *mg)
{
    for (int i = 0; i < mg->nlanes; i++) {
        lane_t *ln = &mg->lanes[i];
        pthread_mutex_lock(&ln->mu);
        ln->quit = 1;
        if (ln->rv == 0)
            ln->rv = SHALE_ECANCELED;
        pthread_cond_broadcast(&ln->cv);
        pthread_mutex_unlock(&ln->mu);
        pthread_join(ln->th, NULL);
        pthread_mutex_destroy(&ln->mu);
        pthread_cond_destroy(&ln->cv);
        shale_close(ln->b);
    }
    mg->nlanes = 0;
    if (mg->lanes_meta_open)
        meta_close(&mg->lanes_meta);
    mg->lanes_meta_open = 0;
}

/* The first failure of any lane (SHALE_OK: none), message in err. */
static int lanes_failed(mig_t *mg, char *err, size_t errlen)
{
    for (int i = 0; i < mg->nlanes; i++) {
        lane_t *ln = &mg->lanes[i];
        pthread_mutex_lock(&ln->mu);
        int rv = ln->rv;
        if (rv != 0)
            snprintf(err, errlen, "%s", ln->err);
        pthread_mutex_unlock(&ln->mu);
        if (rv != 0)
            return rv;
    }
    return SHALE_OK;
}

/* Queue a page of the slot at index si for import (copies b's data; b
 * NULL and phase 0: the mark that the slot's copy is all queued). SHALE_OK,
 * or a lane's failure (err). */
static int import_push(mig_t *mg, size_t si, int phase, const Shale__MigBatch *b, char *err,
                       size_t errlen)
{
    int rv = lanes_failed(mg, err, errlen);
    if (rv != SHALE_OK)
        return rv;
    lane_t *ln = &mg->lanes[si % (size_t)mg->nlanes];
    imp_item_t it = {mg->job->slots[si], phase, NULL, 0, b ? b->raw_len : 0, b ? b->count : 0};
    if (b != NULL && b->has_data && b->data.len > 0) {
        it.data = malloc(b->data.len);
        if (it.data == NULL) {
            snprintf(err, errlen, "out of memory");
            return SHALE_ENOMEM;
        }
        memcpy(it.data, b->data.data, b->data.len);
        it.len = b->data.len;
    }
    pthread_mutex_lock(&ln->mu);
    while (ln->n == MIG_IMPORT_DEPTH && ln->rv == 0)
        pthread_cond_wait(&ln->cv, &ln->mu);
    rv = ln->rv;
    if (rv == 0) {
        ln->q[(ln->head + ln->n) % MIG_IMPORT_DEPTH] = it;
        ln->n++;
        pthread_cond_broadcast(&ln->cv);
    } else {
        snprintf(err, errlen, "%s", ln->err);
    }
    pthread_mutex_unlock(&ln->mu);
    if (rv != 0)
        free(it.data);
    return rv;
}

/* Wait until every queued page is imported. SHALE_OK or the first failure. */
static int import_flush(mig_t *mg, char *err, size_t errlen)
{
    for (int i = 0; i < mg->nlanes; i++) {
        lane_t *ln = &mg->lanes[i];
        pthread_mutex_lock(&ln->mu);
        while ((ln->n > 0 || ln->busy) && ln->rv == 0)
            pthread_cond_wait(&ln->cv, &ln->mu);
        pthread_mutex_unlock(&ln->mu);
    }
    return lanes_failed(mg, err, errlen);
}

/* One export page from A, retrying transient errors. *out: free with
 * shale__mig_batch__free_unpacked. */
static int export_page(mig_t *mg, uint32_t slot, int phase, const ProtobufCBinaryData *after,
                       Shale__MigBatch **out, char *err, size_t errlen)
{
    Shale__MigExportRequest rq = SHALE__MIG_EXPORT_REQUEST__INIT;
    rq.id = mg->job->id;
    rq.slot = slot;
    rq.phase = (Shale__MigPhase)phase;
    if (after != NULL && after->len > 0) {
        rq.has_after = 1;
        rq.after = *after;
    }
    rq.has_max_bytes = 1;
    rq.max_bytes = MIG_PAGE_BYTES;
    size_t len = shale__mig_export_request__get_packed_size(&rq);
    uint8_t *buf = malloc(len ? len : 1);
    *out = NULL;
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        return SHALE_ENOMEM;
    }
    shale__mig_export_request__pack(&rq, buf);
    uint64_t deadline = mono_ms() + MIG_RETRY_MS;
    char msg[SHALE_ERRMSG_LEN];
    int rv;
    for (int attempt = 0;; attempt++) {
        uint8_t *resp = NULL;
        size_t rlen = 0;
        msg[0] = '\0';
        rv = shale_call(mg->a, SHALE_MSG_MIG_EXPORT_REQ, SHALE_MSG_MIG_BATCH, buf, len, &resp,
                        &rlen, msg, NULL);
        if (rv == SHALE_OK) {
            *out = shale__mig_batch__unpack(NULL, rlen, resp);
            free(resp);
            if (*out == NULL) {
                rv = SHALE_EPROTO;
                snprintf(msg, sizeof(msg), "malformed MIG_BATCH answer");
            }
            break;
        }
        if (!transient(rv) || mono_ms() >= deadline)
            break;
        backoff(attempt);
    }
    free(buf);
    if (rv != SHALE_OK) {
        static const char *const phases[] = {"", "data", "log", "sessions"};
        snprintf(err, errlen, "export of slot %u (%s) from group %" PRIu64 ": %s%s", slot,
                 phases[phase], mg->job->from, msg[0] ? msg : shale_strerror(rv),
                 rv == SHALE_EUNAVAILABLE ? " (still not ready after 30 s)" : "");
    }
    return rv;
}

/* Keep b's `next` as the cursor c (unchanged when b has none). */
static int keep_cursor(ProtobufCBinaryData *c, const Shale__MigBatch *b)
{
    if (!b->has_next || b->next.len == 0)
        return 0;
    uint8_t *d = malloc(b->next.len);
    if (d == NULL)
        return -1;
    memcpy(d, b->next.data, b->next.len);
    free(c->data);
    c->data = d;
    c->len = b->next.len;
    return 0;
}

/* Page through one phase of a slot (before the fence), queueing each page
 * for import:
 *  - DATA starts from an empty cursor and ends at `done`;
 *  - LOG continues from the slot's kept cursor; one call is one round (to
 *    `done` for now: writes keep coming while the slot is COPYING);
 *  - *bytes (may be NULL) gets the raw bytes of the pages.
 * A Ctrl-C ends it early with SHALE_ECANCELED (the migration is left in the
 * map, COPYING, for migration resume). */
static int copy_phase(mig_t *mg, size_t si, int phase, uint64_t *bytes, char *err, size_t errlen)
{
    ProtobufCBinaryData own = {0, NULL};
    ProtobufCBinaryData *cur = phase == SHALE__MIG_PHASE__MIG_PHASE_LOG ? &mg->cursor[si] : &own;
    uint32_t slot = mg->job->slots[si];
    uint64_t total = 0;
    int rv = SHALE_OK;
    for (;;) {
        if (g_interrupted) {
            rv = SHALE_ECANCELED;
            snprintf(err, errlen, "interrupted");
            break;
        }
        Shale__MigBatch *b = NULL;
        if ((rv = export_page(mg, slot, phase, cur, &b, err, errlen)) != SHALE_OK)
            break;
        throttle(mg->rc, b->raw_len);
        total += b->raw_len;
        if (b->count > 0 || b->raw_len > 0)
            rv = import_push(mg, si, phase, b, err, errlen);
        if (rv == SHALE_OK && keep_cursor(cur, b) != 0) {
            rv = SHALE_ENOMEM;
            snprintf(err, errlen, "out of memory");
        }
        int done = b->has_done && b->done;
        shale__mig_batch__free_unpacked(b, NULL);
        if (rv != SHALE_OK || done)
            break;
    }
    free(own.data);
    if (bytes != NULL)
        *bytes = total;
    return rv;
}

/* ---- The drain: every slot at once ----------------------------------------------------*/

/* One slot in the drain. */
typedef struct dslot {
    shale_req_t req;
    int phase;                /* LOG until done and fenced, then SESSIONS until done; 0: finished */
    ProtobufCBinaryData sess; /* the SESSIONS cursor (malloc'd data) */
    Shale__MigBatch *pend;    /* a page exported, not yet imported */
    Shale__MigBatch *pend2;   /* the sessions page imported with pend (or NULL) */
    uint8_t *cat;             /* pend + pend2 data, as sent (malloc'd) */
    int pend_phase;
    int sent;  /* an export for this slot is out in this pass */
    int chain; /* its LOG just ended fenced: SESSIONS export in the same round */
    int rv; /* this round's answer */
    char err[SHALE_ERRMSG_LEN];
    uint8_t *raw; /* the answer's payload (export) */
    size_t raw_len;
    int *left;
} dslot_t;

static void dslot_cb(shale_req_t *req, int status)
{
    dslot_t *d = req->data;
    d->rv = status;
    if (status == SHALE_OK) {
        d->raw = req->raw;
        d->raw_len = req->raw_len;
        req->raw = NULL;
    } else {
        snprintf(d->err, sizeof(d->err), "%s",
                 req->errmsg[0] != '\0' ? req->errmsg : shale_strerror(status));
    }
    shale_req_cleanup(req);
    (*d->left)--;
}

/* Send one request for d on c (payload packed from msg). */
static void dslot_send(dslot_t *d, shale_client_t *c, uint16_t type, uint16_t resp_type,
                       const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    memset(&d->req, 0, sizeof(d->req));
    d->req.data = d;
    d->raw = NULL;
    d->rv = SHALE_OK;
    if (buf == NULL) {
        d->rv = SHALE_ENOMEM;
        snprintf(d->err, sizeof(d->err), "out of memory");
        return;
    }
    protobuf_c_message_pack(msg, buf);
    int r = shale_call_async(c, &d->req, type, resp_type, buf, len, dslot_cb);
    free(buf); /* the request holds its own copy */
    if (r != SHALE_OK) {
        d->rv = r;
        snprintf(d->err, sizeof(d->err), "%s", d->req.errmsg);
    } else {
        (*d->left)++;
    }
}

/* The comma list `list` rotated left by k entries (k modulo its length)
 * into out; 0, or -1 when it does not fit. */
static int rotate_list(const char *list, size_t k, char *out, size_t len)
{
    const char *items[64];
    size_t lens[64], n = 0;
    for (const char *p = list; *p != '\0' && n < 64;) {
        const char *c = strchr(p, ',');
        size_t l = c != NULL ? (size_t)(c - p) : strlen(p);
        if (l > 0) {
            items[n] = p;
            lens[n++] = l;
        }
        p += l + (c != NULL);
    }
    if (n == 0)
        return -1;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = (i + k) % n;
        if (used + lens[j] + 2 > len)
            return -1;
        if (i > 0)
            out[used++] = ',';
        memcpy(out + used, items[j], lens[j]);
        used += lens[j];
    }
    out[used] = '\0';
    return 0;
}

/* Step 4 for every slot of the migration together, in rounds on one event
 * loop: a round sends an export for every slot that has nothing waiting,
 * then an import for every slot whose page has data, each kind all at once
 * (A's leader first for exports, B's leader for imports), so the write
 * pause costs a few round trips, not two or four per slot. A slot's imports
 * stay in order: its next export leaves only after its import is
 * acknowledged. Rules:
 *  - LOG continues from the slot's kept cursor until a page says done and
 *    fenced (the member answering applied the fence: nothing can follow);
 *    done but not fenced is asked again MIG_FENCE_POLL_MS later, and after
 *    MIG_FENCE_ROTATE_MS of that the next member of A is asked instead (the
 *    one answering may be a deposed leader cut off from its group);
 *  - then SESSIONS from an empty cursor until done;
 *  - transient errors (and B refusing our run before it applied it) are
 *    tried again next round, until MIG_RETRY_MS passes with no progress.
 * The copy's lanes are idle here (flushed before the fence). */
static int drain(mig_t *mg, const char *alist, const char *blist, char *err, size_t errlen)
{
    mig_job_t *job = mg->job;
    uv_loop_t loop;
    shale_client_t *ac = NULL, *bc = NULL;
    shale_options_t o;
    dslot_t *ds = calloc(job->nslots ? job->nslots : 1, sizeof(*ds));
    int rv = SHALE_OK, left = 0;
    if (ds == NULL || uv_loop_init(&loop) != 0) {
        free(ds);
        snprintf(err, errlen, "out of memory");
        return SHALE_ENOMEM;
    }
    ctl_options(mg->rc->cmd, 5000, &o);
    if ((rv = shale_client_open(&loop, alist, &o, &ac)) != SHALE_OK ||
        (rv = shale_client_open(&loop, blist, &o, &bc)) != SHALE_OK) {
        snprintf(err, errlen, "cannot reach group %" PRIu64 ": %s",
                 ac == NULL ? job->from : job->to, shale_strerror(rv));
        goto out;
    }
    for (size_t i = 0; i < job->nslots; i++) {
        ds[i].phase = SHALE__MIG_PHASE__MIG_PHASE_LOG;
        ds[i].left = &left;
    }
    uint64_t deadline = mono_ms() + MIG_RETRY_MS;
    uint64_t unfenced_since = 0; /* when the source member first said "not fenced" */
    size_t rot = 0;              /* how far the source's address list is rotated */
    size_t open = job->nslots, pending = 0; /* slots not finished; pages not imported */
    while ((open > 0 || pending > 0) && rv == SHALE_OK) {
        int progress = 0, waiting = 0;
        /* Exports, for every slot with no page waiting (pass 0); then, in
         * the same round, the SESSIONS export of every slot whose LOG just
         * ended fenced (pass 1), so its changelog tail and its sessions go
         * to B in one import: one commit in B's log instead of two. */
        for (int pass = 0; pass < 2 && rv == SHALE_OK; pass++) {
            size_t sent = 0;
            for (size_t i = 0; i < job->nslots; i++) {
                dslot_t *d = &ds[i];
                if (d->phase == 0 || (pass == 0 ? d->pend != NULL : !d->chain))
                    continue;
                d->chain = 0;
                Shale__MigExportRequest rq = SHALE__MIG_EXPORT_REQUEST__INIT;
                const ProtobufCBinaryData *cur =
                    d->phase == SHALE__MIG_PHASE__MIG_PHASE_LOG ? &mg->cursor[i] : &d->sess;
                rq.id = job->id;
                rq.slot = job->slots[i];
                rq.phase = (Shale__MigPhase)d->phase;
                rq.has_after = cur->len > 0;
                rq.after = *cur;
                rq.has_max_bytes = 1;
                rq.max_bytes = MIG_PAGE_BYTES;
                dslot_send(d, ac, SHALE_MSG_MIG_EXPORT_REQ, SHALE_MSG_MIG_BATCH, &rq.base);
                d->sent = 1;
                sent++;
            }
            if (sent == 0)
                break;
            while (left > 0)
                uv_run(&loop, UV_RUN_ONCE);
            for (size_t i = 0; i < job->nslots && rv == SHALE_OK; i++) {
                dslot_t *d = &ds[i];
                if (!d->sent)
                    continue;
                d->sent = 0;
                if (d->rv != SHALE_OK) {
                    if (!transient(d->rv)) {
                        rv = d->rv;
                        snprintf(err, errlen, "drain of slot %u from group %" PRIu64 ": %s",
                                 job->slots[i], job->from, d->err);
                    }
                    continue;
                }
                Shale__MigBatch *b = shale__mig_batch__unpack(NULL, d->raw_len, d->raw);
                free(d->raw);
                d->raw = NULL;
                if (b == NULL) {
                    rv = SHALE_EPROTO;
                    snprintf(err, errlen, "malformed MIG_BATCH answer for slot %u",
                             job->slots[i]);
                    break;
                }
                int log = d->phase == SHALE__MIG_PHASE__MIG_PHASE_LOG;
                int done = b->has_done && b->done, fenced = b->has_fenced && b->fenced;
                throttle(mg->rc, b->raw_len);
                if (keep_cursor(log ? &mg->cursor[i] : &d->sess, b) != 0) {
                    shale__mig_batch__free_unpacked(b, NULL);
                    rv = SHALE_ENOMEM;
                    snprintf(err, errlen, "out of memory");
                    break;
                }
                int kept = 0;
                if (b->count > 0 || b->raw_len > 0) {
                    kept = 1;
                    if (d->pend == NULL) {
                        d->pend = b;
                        d->pend_phase = d->phase;
                        pending++;
                    } else {
                        d->pend2 = b; /* pass 1: sessions after the LOG tail */
                    }
                } else {
                    shale__mig_batch__free_unpacked(b, NULL);
                }
                progress |= kept || (done && (!log || fenced));
                if (done && log && fenced) {
                    d->phase = SHALE__MIG_PHASE__MIG_PHASE_SESSIONS;
                    d->chain = pass == 0;
                    mg->t_fenced_seen = mono_ms();
                } else if (done && !log) {
                    d->phase = 0;
                    open--;
                } else if (done) {
                    waiting = 1; /* this member has not applied the fence yet */
                }
            }
        }
        /* Imports, for every slot with a page waiting (two pages, LOG tail
         * and sessions, go as one batch: zstd frames concatenate). */
        for (size_t i = 0; i < job->nslots && rv == SHALE_OK; i++) {
            dslot_t *d = &ds[i];
            if (d->pend == NULL)
                continue;
            Shale__MigImportRequest rq = SHALE__MIG_IMPORT_REQUEST__INIT;
            rq.id = job->id;
            rq.run = mg->run;
            rq.slot = job->slots[i];
            rq.has_data = d->pend->has_data;
            rq.data = d->pend->data;
            rq.has_raw_len = 1;
            rq.raw_len = d->pend->raw_len;
            rq.has_count = 1;
            rq.count = d->pend->count;
            free(d->cat);
            d->cat = NULL;
            if (d->pend2 != NULL && d->pend2->has_data) {
                size_t n1 = d->pend->has_data ? d->pend->data.len : 0, n2 = d->pend2->data.len;
                d->cat = malloc(n1 + n2 ? n1 + n2 : 1);
                if (d->cat == NULL) {
                    rv = SHALE_ENOMEM;
                    snprintf(err, errlen, "out of memory");
                    break;
                }
                if (n1 > 0)
                    memcpy(d->cat, d->pend->data.data, n1);
                memcpy(d->cat + n1, d->pend2->data.data, n2);
                rq.has_data = 1;
                rq.data.data = d->cat;
                rq.data.len = n1 + n2;
                rq.raw_len += d->pend2->raw_len;
                rq.count += d->pend2->count;
            }
            dslot_send(d, bc, SHALE_MSG_MIG_IMPORT_REQ, SHALE_MSG_MIG_IMPORT_RESP, &rq.base);
        }
        while (left > 0)
            uv_run(&loop, UV_RUN_ONCE);
        for (size_t i = 0; i < job->nslots && rv == SHALE_OK; i++) {
            dslot_t *d = &ds[i];
            if (d->pend == NULL)
                continue;
            free(d->raw);
            d->raw = NULL;
            if (d->rv == SHALE_OK) {
                progress_add(mg, d->pend_phase, d->pend->raw_len, d->pend->count);
                shale__mig_batch__free_unpacked(d->pend, NULL);
                d->pend = NULL;
                if (d->pend2 != NULL) {
                    progress_add(mg, SHALE__MIG_PHASE__MIG_PHASE_SESSIONS, d->pend2->raw_len,
                                 d->pend2->count);
                    shale__mig_batch__free_unpacked(d->pend2, NULL);
                    d->pend2 = NULL;
                }
                pending--;
                progress = 1;
            } else if (!transient(d->rv) && !(d->rv == SHALE_EINVAL && import_behind(mg))) {
                rv = d->rv;
                snprintf(err, errlen, "import of slot %u into group %" PRIu64 ": %s", job->slots[i],
                         job->to, d->err);
            }
        }
        if (!waiting) {
            unfenced_since = 0;
        } else if (unfenced_since == 0) {
            unfenced_since = mono_ms();
        } else if (mono_ms() - unfenced_since >= MIG_FENCE_ROTATE_MS && rv == SHALE_OK) {
            /* The member keeps answering without the fence: it may be cut
             * off from its group while the others applied it long ago.
             * Start with the next member of the list (the export is the
             * same from any member). */
            char rotated[2048];
            if (rotate_list(alist, ++rot, rotated, sizeof(rotated)) == 0) {
                shale_client_t *nc = NULL;
                if (shale_client_open(&loop, rotated, &o, &nc) == SHALE_OK) {
                    shale_client_close(ac, NULL);
                    ac = nc;
                }
            }
            unfenced_since = mono_ms();
        }
        if (progress)
            deadline = mono_ms() + MIG_RETRY_MS;
        else if (rv == SHALE_OK && mono_ms() >= deadline) {
            rv = SHALE_EUNAVAILABLE;
            snprintf(err, errlen,
                     "the drain made no progress for 30 s (group %" PRIu64
                     " has not applied the fence, or a group is unreachable)",
                     job->from);
        } else if (!progress && rv == SHALE_OK)
            sleep_ms(waiting ? MIG_FENCE_POLL_MS : 50);
    }
out:
    for (size_t i = 0; i < job->nslots; i++) {
        if (ds[i].pend != NULL)
            shale__mig_batch__free_unpacked(ds[i].pend, NULL);
        if (ds[i].pend2 != NULL)
            shale__mig_batch__free_unpacked(ds[i].pend2, NULL);
        free(ds[i].cat);
        free(ds[i].raw);
        free(ds[i].sess.data);
    }
    free(ds);
    if (ac != NULL)
        shale_client_close(ac, NULL);
    if (bc != NULL)
        shale_client_close(bc, NULL);
    while (uv_run(&loop, UV_RUN_DEFAULT) != 0) {
    }
    uv_loop_close(&loop);
    return rv;
}

/* ---- Map steps ------------------------------------------------------------------------*/

typedef map_edit_result_t (*mig_edit_fn)(const Shale__ClusterMap *cur, Shale__ClusterMap *next,
                                         mig_t *mg, char *why, size_t len);

/* The fields the meta leader sets itself are not sent back to it. */
static void clear_change(Shale__ClusterMap *m)
{
    if (m->last_change != NULL)
        shale__session__free_unpacked(m->last_change, NULL);
    m->last_change = NULL;
    free(m->last_change_note);
    m->last_change_note = NULL;
}

/* Read-modify-CAS until the edit applies or says NOOP (SHALE_OK, *out the
 * map after, may be NULL) or REFUSE (SHALE_ECASFAILED, why). Conflicts and
 * transient errors are re-read and re-decided until MIG_RETRY_MS passes. */
static int mig_cas(mig_t *mg, mig_edit_fn edit, const char *note, Shale__ClusterMap **out,
                   char *why, size_t whylen)
{
    char err[SHALE_ERRMSG_LEN];
    uint64_t min_epoch = 0, deadline = mono_ms() + MIG_RETRY_MS;
    if (out != NULL)
        *out = NULL;
    for (int attempt = 0;; attempt++) {
        Shale__ClusterMap *cur = NULL, *next = NULL;
        int rv = map_get_min(mg->meta, min_epoch, &cur, err);
        if (rv == SHALE_OK && (next = cmap_copy(cur)) == NULL) {
            rv = SHALE_ENOMEM;
            snprintf(err, sizeof(err), "out of memory");
        }
        if (rv == SHALE_OK) {
            map_edit_result_t er = edit(cur, next, mg, why, whylen);
            if (er == EDIT_APPLY && cmap_validate_change(cur, next, 0, why, whylen) != 0)
                er = EDIT_REFUSE;
            if (er != EDIT_APPLY) {
                cmap_free(next);
                if (er == EDIT_NOOP && out != NULL)
                    *out = cur;
                else
                    cmap_free(cur);
                return er == EDIT_NOOP ? SHALE_OK : SHALE_ECASFAILED;
            }
            clear_change(next);
            next->epoch = cur->epoch + 1;
            uint64_t now = 0;
            rv = map_cas(mg->meta, cur->epoch, next, note, out, &now, err);
            if (rv == SHALE_ECASFAILED)
                min_epoch = now > cur->epoch ? now : cur->epoch + 1;
            cmap_free(next);
            cmap_free(cur);
            if (rv == SHALE_OK)
                return SHALE_OK;
        }
        if ((rv != SHALE_ECASFAILED && !transient(rv)) || mono_ms() >= deadline) {
            snprintf(why, whylen, "map change: %s", err);
            return rv == SHALE_ECASFAILED ? SHALE_ETIMEOUT : rv;
        }
        /* A conflict with a sibling migration is normal: retry soon, with
         * a little jitter so two threads do not keep colliding. */
        if (rv == SHALE_ECASFAILED)
            sleep_ms(1 + ctl_random_id() % 20);
        else
            backoff(attempt);
    }
}

/* The record is still ours: present and at our run. REFUSE otherwise. */
static map_edit_result_t check_ours(const Shale__ClusterMap *cur, mig_t *mg,
                                    const Shale__Migration **r, char *why, size_t len)
{
    *r = cmap_migration(cur, mg->job->id);
    if (*r == NULL) {
        snprintf(why, len,
                 "migration %" PRIu64 " is no longer in the map: it was aborted (or finished) "
                 "by someone else",
                 mg->job->id);
        return EDIT_REFUSE;
    }
    if ((*r)->run != mg->run) {
        snprintf(why, len,
                 "migration %" PRIu64 " was taken over by another shalectl (run %" PRIu64
                 ", ours %" PRIu64 ")",
                 mg->job->id, (*r)->run, mg->run);
        return EDIT_REFUSE;
    }
    return EDIT_APPLY;
}

static map_edit_result_t edit_start(const Shale__ClusterMap *cur, Shale__ClusterMap *next,
                                    mig_t *mg, char *why, size_t len)
{
    const mig_job_t *job = mg->job;
    start_arg_t *sa = &mg->start;
    /* An attempt whose answer was lost may have applied. The record is ours
     * if it has our slots (a slot is in at most one migration, and this
     * process's jobs never share one) and our creation time (another
     * shalectl moving the same slots at once): the id alone is not enough,
     * a sibling thread's start may have taken it. */
    const Shale__Migration *r = sa->id ? cmap_migration(cur, sa->id) : NULL;
    if (r != NULL && r->created_ms == sa->created && r->from_group == job->from &&
        r->to_group == job->to && r->n_slots == job->nslots &&
        memcmp(r->slots, job->slots, job->nslots * sizeof(uint32_t)) == 0)
        return EDIT_NOOP;
    if (cmap_group(cur, job->from) == NULL || cmap_group(cur, job->to) == NULL) {
        snprintf(why, len, "group %" PRIu64 " is no longer in the map",
                 cmap_group(cur, job->from) == NULL ? job->from : job->to);
        return EDIT_REFUSE;
    }
    for (size_t i = 0; i < job->nslots; i++) {
        uint32_t s = job->slots[i];
        const Shale__Migration *in = slot_mig(cur, s);
        if (in != NULL) {
            snprintf(why, len,
                     "slot %u is already moving (migration %" PRIu64 ", %" PRIu64 " -> %" PRIu64
                     ")",
                     s, in->id, in->from_group, in->to_group);
            return EDIT_REFUSE;
        }
        if (cmap_slot_group(cur, s) != job->from) {
            snprintf(why, len, "slot %u is now owned by group %" PRIu64 ", not %" PRIu64, s,
                     cmap_slot_group(cur, s), job->from);
            return EDIT_REFUSE;
        }
    }
    uint64_t id =
        cur->has_next_migration_id && cur->next_migration_id > 0 ? cur->next_migration_id : 1;
    while (cmap_migration(cur, id) != NULL)
        id++;
    if (map_add_mig(next, id, job, sa->created) != 0) {
        snprintf(why, len, "out of memory");
        return EDIT_REFUSE;
    }
    next->has_next_migration_id = 1;
    next->next_migration_id = id + 1;
    sa->id = id;
    return EDIT_APPLY;
}

static map_edit_result_t edit_resume(const Shale__ClusterMap *cur, Shale__ClusterMap *next,
                                     mig_t *mg, char *why, size_t len)
{
    (void)cur;
    Shale__Migration *r = map_find_mig(next, mg->job->id);
    if (r == NULL) {
        snprintf(why, len, "there is no migration %" PRIu64 " in the map", mg->job->id);
        return EDIT_REFUSE;
    }
    /* Every attempt bumps again: only a bump whose answer we got is ours
     * for sure, and each bump fences off every older run. */
    r->has_run = 1;
    r->run = r->run + 1;
    r->state = SHALE__MIGRATION_STATE__MIG_COPYING;
    mg->run = r->run;
    return EDIT_APPLY;
}

static map_edit_result_t edit_fence(const Shale__ClusterMap *cur, Shale__ClusterMap *next,
                                    mig_t *mg, char *why, size_t len)
{
    const Shale__Migration *r;
    if (check_ours(cur, mg, &r, why, len) != EDIT_APPLY)
        return EDIT_REFUSE;
    if (r->state == SHALE__MIGRATION_STATE__MIG_FENCED)
        return EDIT_NOOP;
    map_find_mig(next, mg->job->id)->state = SHALE__MIGRATION_STATE__MIG_FENCED;
    return EDIT_APPLY;
}

static map_edit_result_t edit_flip(const Shale__ClusterMap *cur, Shale__ClusterMap *next, mig_t *mg,
                                   char *why, size_t len)
{
    const mig_job_t *job = mg->job;
    const Shale__Migration *r = cmap_migration(cur, job->id);
    if (r == NULL) {
        size_t moved = 0;
        for (size_t i = 0; i < job->nslots; i++)
            moved += cmap_slot_group(cur, job->slots[i]) == job->to;
        if (moved == job->nslots)
            return EDIT_NOOP; /* our flip applied; its answer was lost */
    }
    if (check_ours(cur, mg, &r, why, len) != EDIT_APPLY)
        return EDIT_REFUSE;
    if (r->state != SHALE__MIGRATION_STATE__MIG_FENCED) {
        snprintf(why, len, "migration %" PRIu64 " is not fenced", job->id);
        return EDIT_REFUSE;
    }
    for (size_t i = 0; i < r->n_slots; i++)
        if (r->slots[i] < next->n_slot_group)
            next->slot_group[r->slots[i]] = r->to_group;
    map_remove_mig(next, job->id);
    return EDIT_APPLY;
}

/* ---- The push ---------------------------------------------------------------------------*/

/* Hand map (just committed by our MAP_CAS for this migration) to group
 * gid's leader over c with MIG_PUSH, so it commits the new ownership record
 * now instead of when its map watch sees the epoch (docs/resharding.md,
 * "The fence push"). Best effort: the watch still delivers the same map,
 * so a failure only costs time; a STALE answer (CAS_FAILED) means the group
 * already applied it or a newer map. */
static void push_map(mig_t *mg, shale_client_t *c, uint64_t gid, const Shale__ClusterMap *map)
{
    if (c == NULL || map == NULL)
        return;
    Shale__MigPushRequest q = SHALE__MIG_PUSH_REQUEST__INIT;
    q.id = mg->job->id;
    q.map = (Shale__ClusterMap *)map;
    size_t len = shale__mig_push_request__get_packed_size(&q);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return;
    shale__mig_push_request__pack(&q, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    char msg[SHALE_ERRMSG_LEN] = "";
    int rv = shale_call(c, SHALE_MSG_MIG_PUSH_REQ, SHALE_MSG_MIG_PUSH_RESP, buf, len, &resp, &rlen,
                        msg, NULL);
    free(buf);
    free(resp);
    (void)rv; /* best effort (see above) */
    (void)gid;
}

/* ---- One migration --------------------------------------------------------------------*/

/* Comma list of a group's client addresses. */
static void group_client_addrs(const Shale__ShardGroup *g, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < g->n_members && i < SHALE_MAX_MEMBERS; i++) {
        int w =
            snprintf(buf + used, len - used, "%s%s", used ? "," : "", g->members[i]->client_addr);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
}

/* Group gid's client addresses, its leader first: imports must reach the
 * leader, and on the source it is the first member to apply the fence (the
 * drain waits for that). Any member will do when leadership moves. */
static int group_list(mig_t *mg, const Shale__ClusterMap *map, uint64_t gid, char *list, size_t len,
                      char *err, size_t errlen)
{
    const Shale__ShardGroup *g = cmap_group(map, gid);
    char addrs[SHALE_MAX_MEMBERS * 130], msg[SHALE_ERRMSG_LEN] = "";
    if (g == NULL) {
        snprintf(err, errlen, "group %" PRIu64 " is not in the map", gid);
        return SHALE_EINVAL;
    }
    group_client_addrs(g, addrs, sizeof(addrs));
    Shale__StatusResponse *st = NULL;
    snprintf(list, len, "%s", addrs);
    if (group_leader_status(mg->rc->cmd, addrs, &st, msg) == SHALE_OK) {
        if (st->address != NULL && st->address[0] != '\0' && strlen(st->address) < 128)
            snprintf(list, len, "%s,%s", st->address, addrs);
        shale__status_response__free_unpacked(st, NULL);
    }
    return SHALE_OK;
}

/* shale_connect, retrying while the group is unreachable (MIG_RETRY_MS). */
static int connect_retry(mig_t *mg, uint64_t gid, const char *list, shale_client_t **c, char *err,
                         size_t errlen)
{
    shale_options_t o;
    char msg[SHALE_ERRMSG_LEN] = "";
    ctl_options(mg->rc->cmd, 5000, &o);
    uint64_t deadline = mono_ms() + MIG_RETRY_MS;
    int rv;
    for (int attempt = 0;; attempt++) {
        rv = shale_connect(list, &o, c, msg);
        if (rv == SHALE_OK || !transient(rv) || mono_ms() >= deadline)
            break;
        backoff(attempt);
    }
    if (rv != SHALE_OK)
        snprintf(err, errlen, "cannot reach group %" PRIu64 " (%s): %s", gid, list, msg);
    return rv;
}

static void job_left(mig_job_t *job, outcome_t out, int state, int code, const char *msg)
{
    job->outcome = out;
    job->left_state = state;
    job->code = code;
    snprintf(job->msg, sizeof(job->msg), "%s", msg);
}

/* The whole life of one migration (docs/resharding.md "The steps"):
 * start or resume, copy, fence, drain, flip. Fills the job's results. */
static void mig_run(run_ctx_t *rc, meta_t *meta, mig_job_t *job)
{
    mig_t mgs;
    memset(&mgs, 0, sizeof(mgs));
    mig_t *mg = &mgs;
    mg->rc = rc;
    mg->meta = meta;
    mg->job = job;
    mg->start.created = wall_ms();
    pthread_mutex_init(&mg->lanes_mu, NULL);
    char why[SHALE_ERRMSG_LEN + 64] = "", note[160];
    char alist[SHALE_MAX_MEMBERS * 130 + 160], blist[SHALE_MAX_MEMBERS * 130 + 160];
    Shale__ClusterMap *map = NULL;
    uint64_t t0 = mono_ms(), t_fence = 0;
    int state = SHALE__MIGRATION_STATE__MIG_COPYING, rv;
    int resume = job->id != 0;

    /* 1. Start (or resume: a new run, unfenced). */
    if (resume)
        snprintf(note, sizeof(note), "migration %" PRIu64 ": resume", job->id);
    else
        snprintf(note, sizeof(note),
                 "migration start: group %" PRIu64 " -> %" PRIu64 ", %zu slots (%s)", job->from,
                 job->to, job->nslots, job->note);
    rv = mig_cas(mg, resume ? edit_resume : edit_start, note, &map, why, sizeof(why));
    if (rv != SHALE_OK) {
        job_left(job, OUT_GONE, 0, rv == SHALE_ECASFAILED ? EXIT_REFUSED : ctl_exit_code(rv, 1),
                 why);
        if (rv != SHALE_ECASFAILED && !resume) {
            /* The record may exist (a lost answer): say where to look. */
            snprintf(job->msg, sizeof(job->msg),
                     "%s (check 'shalectl migration status': a migration may have been started)",
                     why);
        }
        goto out;
    }
    if (!resume) {
        job->id = mg->start.id;
        mg->run = 1;
        const Shale__Migration *r = map != NULL ? cmap_migration(map, job->id) : NULL;
        if (r != NULL)
            mg->run = r->run;
    } else {
        const Shale__Migration *r = map != NULL ? cmap_migration(map, job->id) : NULL;
        if (r == NULL) {
            job_left(job, OUT_GONE, 0, EXIT_REFUSED, "the map after the resume lacks the record");
            goto out;
        }
        job->from = r->from_group;
        job->to = r->to_group;
        job->nslots = r->n_slots;
        free(job->slots);
        job->slots = malloc((r->n_slots ? r->n_slots : 1) * sizeof(uint32_t));
        if (job->slots == NULL) {
            job_left(job, OUT_LEFT, state, EXIT_FAIL, "out of memory");
            goto out;
        }
        memcpy(job->slots, r->slots, r->n_slots * sizeof(uint32_t));
        qsort(job->slots, job->nslots, sizeof(uint32_t), cmp_u32);
    }
    if (rc->opts.stop_after == STOP_START) {
        job_left(job, OUT_STOPPED, state, EXIT_OKAY, "");
        goto out;
    }

    /* 2. Copy: DATA, then LOG rounds, slot by slot; then catch-up passes
     * over every slot until the remaining delta is small. */
    mg->cursor = calloc(job->nslots ? job->nslots : 1, sizeof(*mg->cursor));
    if (mg->cursor == NULL) {
        job_left(job, OUT_LEFT, state, EXIT_FAIL, "out of memory");
        goto out;
    }
    if ((rv = group_list(mg, map, job->from, alist, sizeof(alist), why, sizeof(why))) != SHALE_OK ||
        (rv = connect_retry(mg, job->from, alist, &mg->a, why, sizeof(why))) != SHALE_OK ||
        (rv = group_list(mg, map, job->to, blist, sizeof(blist), why, sizeof(why))) != SHALE_OK ||
        (rv = lanes_start(mg, blist, why, sizeof(why))) != SHALE_OK)
        goto failed;
    /* Both groups commit the new record now (A must apply it before it
     * exports, B before it imports). */
    if (connect_retry(mg, job->to, blist, &mg->pb, why, sizeof(why)) != SHALE_OK)
        mg->pb = NULL; /* the lanes will say why; the watch still works */
    push_map(mg, mg->a, job->from, map);
    push_map(mg, mg->pb, job->to, map);
    for (size_t i = 0; i < job->nslots; i++) {
        uint64_t bytes = 0;
        if ((rv = copy_phase(mg, i, SHALE__MIG_PHASE__MIG_PHASE_DATA, NULL, why, sizeof(why))) !=
            SHALE_OK)
            goto failed;
        for (int round = 0; round < MIG_LOG_ROUNDS; round++) {
            if ((rv = copy_phase(mg, i, SHALE__MIG_PHASE__MIG_PHASE_LOG, &bytes, why,
                                 sizeof(why))) != SHALE_OK)
                goto failed;
            if (bytes < MIG_LOG_SMALL)
                break;
        }
        /* Counted as copied (progress) once its lane has imported it all. */
        if ((rv = import_push(mg, i, 0, NULL, why, sizeof(why))) != SHALE_OK)
            goto failed;
    }
    for (int pass = 0; pass < MIG_LOG_ROUNDS && job->nslots > 1; pass++) {
        uint64_t total = 0, bytes = 0;
        for (size_t i = 0; i < job->nslots; i++) {
            if ((rv = copy_phase(mg, i, SHALE__MIG_PHASE__MIG_PHASE_LOG, &bytes, why,
                                 sizeof(why))) != SHALE_OK)
                goto failed;
            total += bytes;
        }
        if (total < MIG_LOG_SMALL)
            break;
    }
    if ((rv = import_flush(mg, why, sizeof(why))) != SHALE_OK)
        goto failed;
    if (rc->opts.stop_after == STOP_COPY) {
        job_left(job, OUT_STOPPED, state, EXIT_OKAY, "");
        goto out;
    }
    if (g_interrupted) {
        rv = SHALE_ECANCELED;
        snprintf(why, sizeof(why), "interrupted");
        goto failed;
    }

    /* 3. Fence. From here on a Ctrl-C no longer stops it: the slots are
     * paused until the flip. */
    snprintf(note, sizeof(note), "migration %" PRIu64 ": fence", job->id);
    uint64_t t_cas = mono_ms();
    Shale__ClusterMap *fmap = NULL;
    if ((rv = mig_cas(mg, edit_fence, note, &fmap, why, sizeof(why))) != SHALE_OK)
        goto failed;
    t_fence = mono_ms();
    job->fence_cas_ms = t_fence - t_cas;
    /* The source commits the fence now; the target learns the epoch. */
    push_map(mg, mg->a, job->from, fmap);
    push_map(mg, mg->pb, job->to, fmap);
    cmap_free(fmap);
    state = SHALE__MIGRATION_STATE__MIG_FENCED;
    if (rc->opts.stop_after == STOP_FENCE) {
        job_left(job, OUT_STOPPED, state, EXIT_OKAY, "");
        goto out;
    }

    /* 4. Drain: the changelog to its fenced end, then the sessions. */
    if ((rv = drain(mg, alist, blist, why, sizeof(why))) != SHALE_OK)
        goto failed;
    if ((rv = import_flush(mg, why, sizeof(why))) != SHALE_OK)
        goto failed;
    uint64_t t_drained = mono_ms();
    if (mg->t_fenced_seen < t_fence)
        mg->t_fenced_seen = t_fence;
    job->fence_seen_ms = mg->t_fenced_seen - t_fence;
    job->drain_ms = t_drained - mg->t_fenced_seen;
    if (rc->opts.stop_after == STOP_DRAIN) {
        job_left(job, OUT_STOPPED, state, EXIT_OKAY, "");
        goto out;
    }

    /* 5. Flip. */
    char ranges[96];
    rb_format_ranges(job->slots, job->nslots, ranges, sizeof(ranges));
    snprintf(note, sizeof(note), "migration %" PRIu64 ": slots %s to group %" PRIu64, job->id,
             ranges, job->to);
    Shale__ClusterMap *xmap = NULL;
    if ((rv = mig_cas(mg, edit_flip, note, &xmap, why, sizeof(why))) != SHALE_OK)
        goto failed;
    job->flip_cas_ms = mono_ms() - t_drained;
    /* The target serves once it commits the flip; the source lets go. */
    push_map(mg, mg->pb, job->to, xmap);
    push_map(mg, mg->a, job->from, xmap);
    cmap_free(xmap);
    job->fenced_ms = mono_ms() - t_fence;
    job->outcome = OUT_DONE;
    job->code = EXIT_OKAY;
    pthread_mutex_lock(&rc->mu);
    rc->moved_slots += job->nslots;
    pthread_mutex_unlock(&rc->mu);
    goto out;

failed:
    /* Is the record still ours? If not, that is why this failed. */
    if (rv != SHALE_ECASFAILED) {
        char own[SHALE_ERRMSG_LEN + 64] = "", err[SHALE_ERRMSG_LEN];
        Shale__ClusterMap *now = NULL;
        if (map_get(meta, &now, err) == SHALE_OK) {
            const Shale__Migration *r = cmap_migration(now, job->id);
            if (check_ours(now, mg, &r, own, sizeof(own)) != EDIT_APPLY)
                rv = SHALE_ECASFAILED;
            else
                state = r->state;
        }
        cmap_free(now);
        if (rv == SHALE_ECASFAILED)
            snprintf(why, sizeof(why), "%s", own);
    }
    if (rv == SHALE_ECASFAILED)
        job_left(job, OUT_GONE, 0, EXIT_REFUSED, why);
    else if (rv == SHALE_ECANCELED && g_interrupted)
        job_left(job, OUT_LEFT, state, EXIT_FAIL, "interrupted");
    else
        job_left(job, OUT_LEFT, state, ctl_exit_code(rv, 1), why);
out:
    lanes_stop(mg);
    pthread_mutex_destroy(&mg->lanes_mu);
    if (mg->cursor != NULL)
        for (size_t i = 0; i < job->nslots; i++)
            free(mg->cursor[i].data);
    free(mg->cursor);
    if (mg->a != NULL)
        shale_close(mg->a);
    if (mg->pb != NULL)
        shale_close(mg->pb);
    cmap_free(map);
    job->ms = mono_ms() - t0;
}

/* ---- Threads, progress, summary -----------------------------------------------------*/

static void progress_clear(run_ctx_t *rc)
{
    if (rc->tty && rc->progress_len > 0) {
        fprintf(stderr, "\r%*s\r", (int)rc->progress_len, "");
        rc->progress_len = 0;
    }
}

/* The line a migration ends with: on stdout when it flipped or stopped as
 * asked, on stderr when it failed (with why). JSON output sums up at the
 * end instead. */
static void print_job(run_ctx_t *rc, const mig_job_t *job)
{
    if (rc->cmd->json)
        return;
    char ranges[256], what[64];
    rb_format_ranges(job->slots, job->nslots, ranges, sizeof(ranges));
    if (job->id != 0)
        snprintf(what, sizeof(what), "migration %" PRIu64, job->id);
    else
        snprintf(what, sizeof(what), "migration (not started)");
    int ok = job->outcome == OUT_DONE || job->outcome == OUT_STOPPED;
    FILE *f = ok ? stdout : stderr;
    progress_clear(rc);
    if (!ok)
        fprintf(f, "shalectl: %s: ", rc->verb);
    fprintf(f, "%s: group %" PRIu64 " -> %" PRIu64 ", %zu slot%s (%s)", what, job->from, job->to,
            job->nslots, job->nslots == 1 ? "" : "s", ranges);
    switch (job->outcome) {
    case OUT_DONE:
        fprintf(f,
                ": %.1f MB, %" PRIu64 " keys, %" PRIu64 " changes in %.1f s, fenced %" PRIu64
                " ms\n",
                (double)job->bytes / MB, job->keys, job->changes, (double)job->ms / 1000.0,
                job->fenced_ms);
        break;
    case OUT_STOPPED:
        fprintf(f, ": stopped after %s (--stop-after), left in the map (%s)\n",
                stop_names[rc->opts.stop_after], state_name(job->left_state));
        break;
    case OUT_LEFT:
        fprintf(f, ": %s; left in the map (%s)\n", job->msg, state_name(job->left_state));
        break;
    default:
        fprintf(f, ": %s\n", job->msg);
        break;
    }
    fflush(f);
}

static void *worker_main(void *arg)
{
    run_ctx_t *rc = arg;
    meta_t meta;
    int code = meta_open(rc->cmd, rc->verb, &meta);
    for (;;) {
        pthread_mutex_lock(&rc->mu);
        mig_job_t *job = NULL;
        if (!rc->stop_new && !g_interrupted && rc->next_job < rc->njobs)
            job = &rc->jobs[rc->next_job++];
        pthread_mutex_unlock(&rc->mu);
        if (job == NULL)
            break;
        if (code != 0) {
            job_left(job, OUT_GONE, 0, code, "cannot reach the meta group");
        } else {
            mig_run(rc, &meta, job);
        }
        pthread_mutex_lock(&rc->mu);
        if (job->outcome != OUT_DONE)
            rc->stop_new = 1;
        print_job(rc, job);
        pthread_mutex_unlock(&rc->mu);
    }
    if (code == 0)
        meta_close(&meta);
    pthread_mutex_lock(&rc->mu);
    rc->running--;
    pthread_cond_broadcast(&rc->cv);
    pthread_mutex_unlock(&rc->mu);
    return NULL;
}

static void progress_print(run_ctx_t *rc)
{
    uint64_t el = mono_ms() - rc->t0;
    double secs = (double)el / 1000.0, mbs = secs > 0 ? (double)rc->bytes / MB / secs : 0;
    char line[200], eta[32] = "?";
    if (rc->copied_slots > 0 && rc->copied_slots < rc->total_slots) {
        uint64_t left = el * (rc->total_slots - rc->copied_slots) / rc->copied_slots / 1000;
        snprintf(eta, sizeof(eta), "%" PRIu64 ":%02" PRIu64, left / 60, left % 60);
    } else if (rc->copied_slots >= rc->total_slots) {
        snprintf(eta, sizeof(eta), "0:00");
    }
    int n = snprintf(line, sizeof(line),
                     "%s: %" PRIu64 "/%" PRIu64 " slots moved (%" PRIu64
                     " copied), %.1f MB, %.1f MB/s, ETA %s",
                     rc->verb, rc->moved_slots, rc->total_slots, rc->copied_slots,
                     (double)rc->bytes / MB, mbs, eta);
    if (rc->tty) {
        fprintf(stderr, "\r%s", line);
        if ((size_t)n < rc->progress_len)
            fprintf(stderr, "%*s", (int)(rc->progress_len - (size_t)n), "");
        rc->progress_len = (size_t)n;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

/* Run the jobs (the caller filled from/to/slots/note, or id for a resume)
 * on up to opts.parallel threads, with progress and a final summary.
 * Returns the exit code; *finished (may be NULL) says every job flipped. */
static int run_jobs(const cmd_t *cmd, const char *verb, const mig_opts_t *opts, mig_job_t *jobs,
                    size_t njobs, int quiet_json, int *finished)
{
    run_ctx_t rc;
    memset(&rc, 0, sizeof(rc));
    rc.cmd = cmd;
    rc.verb = verb;
    rc.opts = *opts;
    rc.jobs = jobs;
    rc.njobs = njobs;
    rc.t0 = mono_ms();
    rc.tb_last = uv_hrtime();
    rc.tokens = opts->rate;
    rc.tty = isatty(2);
    for (size_t i = 0; i < njobs; i++)
        rc.total_slots += jobs[i].nslots;
    pthread_mutex_init(&rc.mu, NULL);
    pthread_cond_init(&rc.cv, NULL);

    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);

    int nthreads = opts->parallel < (int)njobs ? opts->parallel : (int)njobs;
    pthread_t th[MIG_MAX_PARALLEL];
    int started = 0;
    pthread_mutex_lock(&rc.mu);
    for (int i = 0; i < nthreads; i++) {
        rc.running++;
        if (pthread_create(&th[i], NULL, worker_main, &rc) != 0) {
            rc.running--;
            break;
        }
        started++;
    }
    /* Progress: a refreshed line on a terminal (4 per second), a plain
     * line every 5 s otherwise. */
    uint64_t every = rc.tty ? 250 : 5000, last = mono_ms();
    while (rc.running > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&rc.cv, &rc.mu, &ts);
        if (rc.running > 0 && mono_ms() - last >= every) {
            progress_print(&rc);
            last = mono_ms();
        }
    }
    progress_clear(&rc);
    pthread_mutex_unlock(&rc.mu);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    sigaction(SIGINT, &old, NULL);

    /* Summary. */
    uint64_t el = mono_ms() - rc.t0, bytes = 0, keys = 0, changes = 0, maxf = 0, maxf_id = 0;
    size_t done = 0, stopped = 0, left = 0, gone = 0, notrun = 0, moved = 0;
    int code = EXIT_OKAY;
    for (size_t i = 0; i < njobs; i++) {
        const mig_job_t *j = &jobs[i];
        bytes += j->bytes;
        keys += j->keys;
        changes += j->changes;
        switch (j->outcome) {
        case OUT_DONE:
            done++;
            moved += j->nslots;
            if (j->fenced_ms >= maxf) {
                maxf = j->fenced_ms;
                maxf_id = j->id;
            }
            break;
        case OUT_STOPPED:
            stopped++;
            break;
        case OUT_LEFT:
            left++;
            break;
        case OUT_GONE:
            gone++;
            break;
        case OUT_PENDING:
            notrun++;
            break;
        }
        if (j->code != EXIT_OKAY && code == EXIT_OKAY)
            code = j->code;
    }
    double secs = (double)el / 1000.0, mbs = secs > 0 ? (double)bytes / MB / secs : 0;
    if (finished != NULL)
        *finished = done == njobs;
    if (cmd->json && !quiet_json) {
        printf("{\"ok\":%s,\"slots_moved\":%zu,\"migrations_done\":%zu,\"bytes\":%" PRIu64
               ",\"keys\":%" PRIu64 ",\"changes\":%" PRIu64
               ",\"seconds\":%.3f,\"mb_per_s\":%.2f,\"max_fenced_ms\":%" PRIu64
               ",\"interrupted\":%s,\"migrations\":[",
               code == EXIT_OKAY ? "true" : "false", moved, done, bytes, keys, changes, secs, mbs,
               maxf, g_interrupted ? "true" : "false");
        static const char *const outs[] = {"not-run", "done", "stopped", "left", "gone"};
        for (size_t i = 0; i < njobs; i++) {
            const mig_job_t *j = &jobs[i];
            char ranges[4096];
            rb_format_ranges(j->slots, j->nslots, ranges, sizeof(ranges));
            printf("%s{\"id\":%" PRIu64 ",\"from\":%" PRIu64 ",\"to\":%" PRIu64
                   ",\"nslots\":%zu,\"slots\":\"%s\",\"outcome\":\"%s\",\"bytes\":%" PRIu64
                   ",\"keys\":%" PRIu64 ",\"changes\":%" PRIu64 ",\"ms\":%" PRIu64
                   ",\"fenced_ms\":%" PRIu64 ",\"fence_cas_ms\":%" PRIu64
                   ",\"fence_seen_ms\":%" PRIu64 ",\"drain_ms\":%" PRIu64
                   ",\"flip_cas_ms\":%" PRIu64,
                   i ? "," : "", j->id, j->from, j->to, j->nslots, ranges, outs[j->outcome],
                   j->bytes, j->keys, j->changes, j->ms, j->fenced_ms, j->fence_cas_ms,
                   j->fence_seen_ms, j->drain_ms, j->flip_cas_ms);
            if (j->outcome == OUT_LEFT || j->outcome == OUT_STOPPED)
                printf(",\"state\":\"%s\"", state_name(j->left_state));
            if (j->msg[0] != '\0') {
                printf(",\"error\":");
                ctl_json_str(stdout, j->msg);
            }
            printf("}");
        }
        printf("]}\n");
    } else if (!cmd->json && done > 0) {
        printf("%s %zu slot%s in %zu migration%s: %.1f MB, %" PRIu64 " keys, %" PRIu64
               " changes in %.1f s (%.1f MB/s)",
               done == njobs ? "OK moved" : "moved", moved, moved == 1 ? "" : "s", done,
               done == 1 ? "" : "s", (double)bytes / MB, keys, changes, secs, mbs);
        if (done > 0)
            printf("; longest fenced window %" PRIu64 " ms (migration %" PRIu64 ")", maxf, maxf_id);
        printf("\n");
    }
    /* What is left in the map, and what to do about it. */
    char ids[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < njobs; i++)
        if ((jobs[i].outcome == OUT_LEFT || jobs[i].outcome == OUT_STOPPED) && used < 200)
            used += (size_t)snprintf(ids + used, sizeof(ids) - used, " %" PRIu64, jobs[i].id);
    if (stopped > 0)
        fprintf(stderr, "shalectl: %s: stopped after %s (--stop-after): left in the map:%s\n", verb,
                stop_names[opts->stop_after], ids);
    if (left > 0) {
        fprintf(stderr, "shalectl: %s: %s; left in the map:%s\n", verb,
                g_interrupted ? "interrupted" : "failed", ids);
        fprintf(stderr,
                "shalectl: %s: finish with 'shalectl migration resume%s' or undo with "
                "'shalectl migration abort%s' (see 'shalectl migration status')\n",
                verb, ids, ids);
    }
    if (notrun > 0 && (left > 0 || gone > 0 || g_interrupted))
        fprintf(stderr, "shalectl: %s: %zu planned migration%s not started\n", verb, notrun,
                notrun == 1 ? " was" : "s were");
    for (size_t i = 0; cmd->json && i < njobs; i++)
        if (jobs[i].outcome == OUT_GONE || jobs[i].outcome == OUT_LEFT)
            fprintf(stderr, "shalectl: %s: migration %" PRIu64 ": %s\n", verb, jobs[i].id,
                    jobs[i].msg);
    if (code == EXIT_OKAY && g_interrupted && left + notrun > 0)
        code = EXIT_FAIL;
    pthread_mutex_destroy(&rc.mu);
    pthread_cond_destroy(&rc.cv);
    return code;
}

/* Jobs of at most batch slots each from a plan, the moves interleaved so
 * parallel migrations spread over the groups. *out: free_jobs. */
static int plan_jobs(const rb_plan_t *p, uint32_t batch, const char *what, mig_job_t **out,
                     size_t *n)
{
    size_t total = 0;
    for (size_t i = 0; i < p->nmoves; i++)
        total += (p->moves[i].nslots + batch - 1) / batch;
    mig_job_t *jobs = calloc(total ? total : 1, sizeof(*jobs));
    if (jobs == NULL)
        return -1;
    size_t k = 0;
    for (size_t round = 0; k < total; round++)
        for (size_t i = 0; i < p->nmoves; i++) {
            const rb_move_t *mv = &p->moves[i];
            size_t at = round * batch;
            if (at >= mv->nslots)
                continue;
            size_t len = mv->nslots - at < batch ? mv->nslots - at : batch;
            mig_job_t *j = &jobs[k++];
            j->from = mv->from;
            j->to = mv->to;
            j->nslots = len;
            j->slots = malloc(len * sizeof(uint32_t));
            if (j->slots == NULL) {
                for (size_t x = 0; x < k; x++)
                    free(jobs[x].slots);
                free(jobs);
                return -1;
            }
            memcpy(j->slots, mv->slots + at, len * sizeof(uint32_t));
        }
    for (size_t i = 0; i < total; i++)
        snprintf(jobs[i].note, sizeof(jobs[i].note), "%s %zu/%zu", what, i + 1, total);
    *out = jobs;
    *n = total;
    return 0;
}

static void free_jobs(mig_job_t *jobs, size_t n)
{
    for (size_t i = 0; jobs != NULL && i < n; i++)
        free(jobs[i].slots);
    free(jobs);
}

/* Every group's slot count before and after the plan. */
static void print_plan(const cmd_t *cmd, const Shale__ClusterMap *map, const rb_plan_t *p,
                       size_t njobs, uint32_t batch, uint64_t drain)
{
    if (cmd->json) {
        printf("{\"epoch\":%" PRIu64 ",\"slots_to_move\":%zu,\"migrations\":%zu,\"moves\":[",
               map->epoch, p->nslots, njobs);
        for (size_t i = 0; i < p->nmoves; i++) {
            char r[4096];
            rb_format_ranges(p->moves[i].slots, p->moves[i].nslots, r, sizeof(r));
            printf("%s{\"from\":%" PRIu64 ",\"to\":%" PRIu64 ",\"nslots\":%zu,\"slots\":\"%s\"}",
                   i ? "," : "", p->moves[i].from, p->moves[i].to, p->moves[i].nslots, r);
        }
        printf("],\"groups\":[");
    } else if (p->nslots == 0) {
        printf("plan (map epoch %" PRIu64 "): nothing to move, the slots are even\n", map->epoch);
    } else {
        printf("plan (map epoch %" PRIu64 "): move %zu slot%s in %zu migration%s of up to %u "
               "slots\n",
               map->epoch, p->nslots, p->nslots == 1 ? "" : "s", njobs, njobs == 1 ? "" : "s",
               batch);
        for (size_t i = 0; i < p->nmoves; i++) {
            char r[200];
            rb_format_ranges(p->moves[i].slots, p->moves[i].nslots, r, sizeof(r));
            printf("  group %" PRIu64 " -> %" PRIu64 ": %zu slot%s (%s)\n", p->moves[i].from,
                   p->moves[i].to, p->moves[i].nslots, p->moves[i].nslots == 1 ? "" : "s", r);
        }
    }
    if (!cmd->json && p->nslots > 0)
        printf("  slots per group:");
    for (size_t g = 0; g < map->n_groups; g++) {
        uint64_t gid = map->groups[g]->id;
        int64_t after = cmap_slot_count(map, gid);
        for (size_t i = 0; i < p->nmoves; i++)
            after += (p->moves[i].to == gid     ? 1
                      : p->moves[i].from == gid ? -1
                                                : 0) *
                     (int64_t)p->moves[i].nslots;
        if (cmd->json)
            printf("%s{\"id\":%" PRIu64 ",\"slots\":%u,\"after\":%" PRId64 "%s}", g ? "," : "", gid,
                   cmap_slot_count(map, gid), after, gid == drain ? ",\"drain\":true" : "");
        else if (p->nslots > 0)
            printf(" %" PRIu64 ": %u -> %" PRId64 "%s", gid, cmap_slot_count(map, gid), after,
                   g + 1 < map->n_groups ? "," : "\n");
    }
    if (cmd->json)
        printf("]}\n");
    fflush(stdout);
}

/* The map, or an exit code (printed). */
static int read_map(const cmd_t *cmd, const char *verb, meta_t *m, Shale__ClusterMap **map)
{
    char err[SHALE_ERRMSG_LEN];
    int code = meta_open(cmd, verb, m);
    if (code != 0)
        return code;
    *map = NULL;
    int rv = map_get(m, map, err);
    if (rv != SHALE_OK || *map == NULL) {
        meta_close(m);
        return ctl_error(verb, rv != SHALE_OK ? rv : SHALE_EPROTO, err, 0);
    }
    if ((*map)->epoch == 0) {
        cmap_free(*map);
        *map = NULL;
        meta_close(m);
        return ctl_say(EXIT_REFUSED, verb, "there is no cluster map yet: run 'shalectl init'");
    }
    return 0;
}

/* read_map for a verb that needs only the map: the meta connection is
 * closed once it is read. 0 (free *map with cmap_free) or the exit code. */
static int read_map_only(const cmd_t *cmd, const char *verb, Shale__ClusterMap **map)
{
    meta_t m;
    int code = read_map(cmd, verb, &m, map);
    if (code == 0)
        meta_close(&m);
    return code;
}

/* The migration options of a verb whose flags its check_* function has
 * accepted already (so parsing them again cannot fail). */
static void opts_checked(const cmd_t *cmd, mig_opts_t *o)
{
    char err[256];
    parse_opts(cmd, o, err, sizeof(err));
}

/* Rebalancing plans assume no slot is moving. */
static int refuse_if_migrating(const char *verb, const Shale__ClusterMap *map)
{
    if (map->n_migrations == 0)
        return 0;
    char ids[128] = "";
    size_t used = 0;
    for (size_t i = 0; i < map->n_migrations && used < 100; i++)
        used +=
            (size_t)snprintf(ids + used, sizeof(ids) - used, " %" PRIu64, map->migrations[i]->id);
    return ctl_say(EXIT_REFUSED, verb,
                   "%zu migration%s in progress (%s ): finish with 'shalectl migration resume' "
                   "or undo with 'shalectl migration abort' first (see 'shalectl migration "
                   "status')",
                   map->n_migrations, map->n_migrations == 1 ? " is" : "s are", ids);
}

/* Plan and run an even-out (drain: the group to empty, 0: none). */
static int rebalance(const cmd_t *cmd, const char *verb, const mig_opts_t *o,
                     const Shale__ClusterMap *map, uint64_t drain, int quiet_json, int *finished)
{
    uint64_t *gids = calloc(map->n_groups ? map->n_groups : 1, sizeof(uint64_t));
    rb_plan_t plan;
    char why[256];
    if (gids == NULL)
        return ctl_say(EXIT_FAIL, verb, "out of memory");
    for (size_t i = 0; i < map->n_groups; i++)
        gids[i] = map->groups[i]->id;
    int rv = rb_plan_even(map->slot_group, (uint32_t)map->n_slot_group, gids, map->n_groups, drain,
                          &plan, why, sizeof(why));
    free(gids);
    if (rv == RB_ENOMEM)
        return ctl_say(EXIT_FAIL, verb, "out of memory");
    if (rv != 0)
        return ctl_say(EXIT_REFUSED, verb, "%s", why);
    mig_job_t *jobs = NULL;
    size_t njobs = 0;
    if (plan_jobs(&plan, o->batch, drain ? "drain" : "rebalance", &jobs, &njobs) != 0) {
        rb_plan_free(&plan);
        return ctl_say(EXIT_FAIL, verb, "out of memory");
    }
    if (!quiet_json || !cmd->json)
        print_plan(cmd, map, &plan, njobs, o->batch, drain);
    int code = EXIT_OKAY;
    if (finished != NULL)
        *finished = 1;
    if (!o->dry_run && njobs > 0)
        code = run_jobs(cmd, verb, o, jobs, njobs, quiet_json, finished);
    free_jobs(jobs, njobs);
    rb_plan_free(&plan);
    return code;
}

/* ---- Verbs -------------------------------------------------------------------------*/

int run_slot_move(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "slot move";
    mig_opts_t o;
    char err[256];
    uint64_t first = 0, last = 0, to = 0;
    opts_checked(cmd, &o);
    parse_slot_range(cmd->pos[0], &first, &last);
    ctl_parse_id(cmd->pos[1], &to);
    Shale__ClusterMap *map = NULL;
    int code = read_map_only(cmd, verb, &map);
    if (code != 0)
        return code;
    rb_plan_t plan;
    mig_job_t *jobs = NULL;
    size_t njobs = 0;
    memset(&plan, 0, sizeof(plan));
    if (cmap_group(map, to) == NULL) {
        code = ctl_say(EXIT_REFUSED, verb,
                       "there is no group %" PRIu64 " in the map (epoch %" PRIu64
                       "; see 'shalectl map')",
                       to, map->epoch);
        goto out;
    }
    if (last >= map->n_slot_group) {
        code = ctl_say(EXIT_USAGE, verb,
                       "slot %" PRIu64 " is out of range: the cluster has %zu slots (0-%zu)", last,
                       map->n_slot_group, map->n_slot_group ? map->n_slot_group - 1 : 0);
        goto out;
    }
    int rv = rb_plan_range(map->slot_group, (uint32_t)map->n_slot_group, (uint32_t)first,
                           (uint32_t)last, to, &plan, err, sizeof(err));
    if (rv != 0) {
        code = ctl_say(rv == RB_ENOMEM ? EXIT_FAIL : EXIT_REFUSED, verb, "%s",
                       rv == RB_ENOMEM ? "out of memory" : err);
        goto out;
    }
    for (size_t i = 0; i < plan.nmoves; i++)
        for (size_t k = 0; k < plan.moves[i].nslots; k++) {
            const Shale__Migration *r = slot_mig(map, plan.moves[i].slots[k]);
            if (r != NULL) {
                code = ctl_say(EXIT_REFUSED, verb,
                               "slot %u is already moving (migration %" PRIu64 ", group %" PRIu64
                               " -> %" PRIu64 ", %s; see 'shalectl migration status')",
                               plan.moves[i].slots[k], r->id, r->from_group, r->to_group,
                               state_name(r->state));
                goto out;
            }
        }
    if (plan.nslots == 0) {
        if (cmd->json)
            printf("{\"ok\":true,\"slots_moved\":0,\"migrations\":[]}\n");
        else
            printf("OK nothing to move: group %" PRIu64 " already owns slot%s %s at epoch %" PRIu64
                   "\n",
                   to, first == last ? "" : "s", cmd->pos[0], map->epoch);
        goto out;
    }
    if (plan_jobs(&plan, o.batch, "slot move", &jobs, &njobs) != 0) {
        code = ctl_say(EXIT_FAIL, verb, "out of memory");
        goto out;
    }
    code = run_jobs(cmd, verb, &o, jobs, njobs, 0, NULL);
out:
    free_jobs(jobs, njobs);
    rb_plan_free(&plan);
    cmap_free(map);
    return code;
}

int run_rebalance(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "rebalance";
    mig_opts_t o;
    opts_checked(cmd, &o);
    Shale__ClusterMap *map = NULL;
    int code = read_map_only(cmd, verb, &map);
    if (code != 0)
        return code;
    if ((code = refuse_if_migrating(verb, map)) == 0)
        code = rebalance(cmd, verb, &o, map, 0, 0, NULL);
    cmap_free(map);
    return code;
}

int run_migration_status(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "migration status";
    Shale__ClusterMap *map = NULL;
    int code = read_map_only(cmd, verb, &map);
    if (code != 0)
        return code;
    if (cmd->json) {
        printf("{\"epoch\":%" PRIu64 ",\"next_migration_id\":%" PRIu64 ",\"migrations\":",
               map->epoch, map->next_migration_id);
        mig_json_list(map);
        printf("}\n");
    } else if (map->n_migrations == 0) {
        printf("no migrations in progress (map epoch %" PRIu64 ")\n", map->epoch);
    } else {
        printf("%zu migration%s in progress (map epoch %" PRIu64 "):\n", map->n_migrations,
               map->n_migrations == 1 ? "" : "s", map->epoch);
        mig_print_list(map, "  ");
    }
    cmap_free(map);
    return EXIT_OKAY;
}

typedef struct abort_arg {
    const cmd_t *cmd;
    int all;
} abort_arg_t;

static map_edit_result_t edit_abort(const Shale__ClusterMap *cur, Shale__ClusterMap *next,
                                    void *arg, char *why, size_t len)
{
    const abort_arg_t *aa = arg;
    if (aa->all) {
        if (cur->n_migrations == 0) {
            snprintf(why, len, "no migrations in progress");
            return EDIT_NOOP;
        }
        while (next->n_migrations > 0)
            map_remove_mig(next, next->migrations[0]->id);
        return EDIT_APPLY;
    }
    size_t found = 0;
    for (int i = 0; i < aa->cmd->npos; i++) {
        uint64_t id = 0;
        ctl_parse_id(aa->cmd->pos[i], &id);
        if (map_find_mig(next, id) != NULL) {
            map_remove_mig(next, id);
            found++;
        }
    }
    if (found == 0) {
        snprintf(why, len, "no such migration in the map (finished or aborted already?)");
        return EDIT_NOOP;
    }
    return EDIT_APPLY;
}

int run_migration_abort(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "migration abort";
    abort_arg_t aa = {cmd, flag(cmd, "all") != NULL};
    meta_t m;
    Shale__ClusterMap *map = NULL;
    int code = read_map(cmd, verb, &m, &map);
    if (code != 0)
        return code;
    char note[200];
    size_t used = (size_t)snprintf(note, sizeof(note), "migration abort");
    if (aa.all)
        snprintf(note + used, sizeof(note) - used, " --all");
    for (int i = 0; i < cmd->npos && used < 150; i++) {
        uint64_t id = 0;
        ctl_parse_id(cmd->pos[i], &id);
        if (cmap_migration(map, id) == NULL)
            fprintf(stderr,
                    "shalectl: %s: there is no migration %" PRIu64 " in the map (epoch %" PRIu64
                    ")\n",
                    verb, id, map->epoch);
        used += (size_t)snprintf(note + used, sizeof(note) - used, " %" PRIu64, id);
    }
    code = map_update(cmd, &m, verb, map, edit_abort, &aa, note);
    cmap_free(map);
    meta_close(&m);
    return code;
}

int run_migration_resume(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "migration resume";
    mig_opts_t o;
    opts_checked(cmd, &o);
    Shale__ClusterMap *map = NULL;
    int code = read_map_only(cmd, verb, &map);
    if (code != 0)
        return code;
    size_t n = cmd->npos > 0 ? (size_t)cmd->npos : map->n_migrations;
    mig_job_t *jobs = calloc(n ? n : 1, sizeof(*jobs));
    if (jobs == NULL) {
        cmap_free(map);
        return ctl_say(EXIT_FAIL, verb, "out of memory");
    }
    for (size_t i = 0; i < n && code == 0; i++) {
        uint64_t id = 0;
        if (cmd->npos > 0)
            ctl_parse_id(cmd->pos[i], &id);
        else
            id = map->migrations[i]->id;
        const Shale__Migration *r = cmap_migration(map, id);
        if (r == NULL) {
            code = ctl_say(EXIT_REFUSED, verb,
                           "there is no migration %" PRIu64 " in the map (epoch %" PRIu64
                           "; see 'shalectl migration status')",
                           id, map->epoch);
            break;
        }
        jobs[i].id = id;
        jobs[i].from = r->from_group;
        jobs[i].to = r->to_group;
        jobs[i].slots = malloc((r->n_slots ? r->n_slots : 1) * sizeof(uint32_t));
        if (jobs[i].slots == NULL) {
            code = ctl_say(EXIT_FAIL, verb, "out of memory");
            break;
        }
        memcpy(jobs[i].slots, r->slots, r->n_slots * sizeof(uint32_t));
        jobs[i].nslots = r->n_slots;
        qsort(jobs[i].slots, jobs[i].nslots, sizeof(uint32_t), cmp_u32);
        snprintf(jobs[i].note, sizeof(jobs[i].note), "%s", r->note ? r->note : "");
    }
    if (code == 0 && n == 0) {
        if (cmd->json)
            printf("{\"ok\":true,\"slots_moved\":0,\"migrations\":[]}\n");
        else
            printf("OK nothing to resume: no migrations in the map (epoch %" PRIu64 ")\n",
                   map->epoch);
    } else if (code == 0) {
        code = run_jobs(cmd, verb, &o, jobs, n, 0, NULL);
    }
    free_jobs(jobs, n);
    cmap_free(map);
    return code;
}

int mig_drain_group(const cmd_t *cmd, const char *verb, const Shale__ClusterMap *map, uint64_t gid,
                    int *finished)
{
    mig_opts_t o;
    opts_checked(cmd, &o);
    *finished = 0;
    for (size_t i = 0; i < map->n_migrations; i++) {
        const Shale__Migration *r = map->migrations[i];
        if (r->from_group == gid || r->to_group == gid)
            return ctl_say(EXIT_REFUSED, verb,
                           "migration %" PRIu64 " (group %" PRIu64 " -> %" PRIu64
                           ", %s) involves group %" PRIu64
                           ": finish it with 'shalectl migration resume %" PRIu64
                           "' or undo it with 'shalectl migration abort %" PRIu64 "' first",
                           r->id, r->from_group, r->to_group, state_name(r->state), gid, r->id,
                           r->id);
    }
    if (cmap_slot_count(map, gid) == 0) {
        *finished = 1;
        return EXIT_OKAY;
    }
    int code = refuse_if_migrating(verb, map);
    if (code != 0)
        return code;
    return rebalance(cmd, verb, &o, map, gid, 1, finished);
}
