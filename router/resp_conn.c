/* The Redis protocol (RESP2/RESP3) on shale-router's --resp port
 * (docs/resp.md, issue 15).
 *
 * What this file owns: one rt_resp_t per RESP connection — its parser
 * (resp.c), its protocol version, name, READONLY flag, session identity
 * (client_id, seq, ack_floor) for exactly-once writes, its MULTI queue and
 * WATCHed versions — the command table and its per-command counts, and the
 * translation of each command into native requests (several rounds for the
 * SCAN / KEYS walk and EXPIRE with an option) and of their answers back
 * into Redis replies, in command order. The glob and the SCAN cursor table
 * are resp_keyscan.c's.
 *
 * Rules:
 *  - every data command becomes one or more native requests handed to
 *    rt_fwd_accept exactly as a native client's frames are (same map,
 *    retries, deadline, auth check, per-request metrics); the router's own
 *    session stamps every write, so a retried write applies once;
 *  - replies leave in command order (pipelining), whatever order the
 *    native answers arrive in;
 *  - a command whose keys a still unanswered command of the connection
 *    writes (or that writes keys one reads) waits for it: pipelined
 *    commands see each other's effects in order, as in Redis;
 *  - with --auth, every command but AUTH, HELLO and QUIT is NOAUTH until a
 *    login succeeds, and the parser keeps its pre-AUTH limits until then;
 *  - a protocol error is answered, and the connection closes once every
 *    earlier reply and the error are written.
 *
 * Never touches sockets or TLS (client_conn.c does) and never reads or
 * writes anything at the router that a node should evaluate (no
 * read-then-write: conditional writes are CAS/TXN, decided at apply; a
 * decision made here from a read — WATCH, EXPIRE's options — is sent as a
 * TXN that compares the version read). */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "idmap.h"
#include "keyhash.h"
#include "resp.h"
#include "router.h"

#define RESP_VERSION_TEXT "7.0.0"

typedef struct rcmd rcmd_t;
typedef void (*fin_fn)(rcmd_t *cm);

struct rcmd {
    rt_q_t link;
    rt_resp_t *s;
    int done;
    int close_after; /* close the connection once this reply is written */
    resp_out_t out;
    fin_fn fin;
    uint64_t base_id;
    unsigned nsub, nleft;
    uint16_t *atype;         /* per sub: answer type */
    ProtobufCMessage **ans;  /* per sub: unpacked answer (NULL: undecodable) */
    uint64_t *keyh;          /* hashes of the keys it touches */
    size_t nkeys;
    int write;
    uint64_t seq_lo; /* its first session seq (writes), 0 none */
    int opt;         /* per command (SET: flags; TTL: ms) */
    int ci;          /* command table index */
    int counted;     /* in g_resp_calls (its error reply counts too) */
    /* DBSIZE: STATUS calls to each group, straight to a member */
    rt_upcall_t **calls;
    size_t ncalls, calls_left;
    uint64_t keys;
    int calls_failed;
    /* Commands of several rounds (SCAN, KEYS, EXPIRE with an option): fin
     * sent the next request (again) rather than answering; in_fin: fin is
     * running, so an answer that arrives at once waits for it to return. */
    int again, in_fin;
    unsigned round;
    struct scan_st *scan;
    char *key; /* EXPIRE with an option: the key (a copy) */
    size_t klen;
    long long arg_ms;
    /* EXEC: the queued commands it answers for (owned) */
    struct qcmd *q;
    size_t nq;
};

/* A copy of a command's arguments (each NUL-terminated): one parsed
 * while an earlier one blocked it, or one queued after MULTI. */
typedef struct held {
    size_t argc;
    char **argv;
    size_t *len;
} held_t;

/* A command queued after MULTI, and the TXN ops it became. */
typedef struct qcmd {
    int ci;
    held_t a;
    int opt;
    size_t op0, nops;
} qcmd_t;

/* A key WATCHed, with the version it had (0: absent). */
typedef struct wkey {
    char *k;
    size_t n;
    uint64_t ver;
} wkey_t;

struct rt_resp {
    rt_router_t *r;
    rt_cconn_t *c;
    resp_parser_t p;
    int proto;
    int authed;
    int readonly;
    int quit;
    int failed; /* protocol error answered: parse nothing more */
    uint64_t id;
    char name[128];
    rt_q_t pending; /* rcmd_t in command order */
    size_t npending;
    rt_idmap_t ids; /* native request id -> rcmd_t */
    uint64_t next_id;
    uint64_t client_id, seq;
    held_t held;
    int has_held;
    int blocked;      /* waiting for an answer (conflict) or a login */
    login_req_t *login;
    rcmd_t *login_cmd;
    int login_hello; /* the login is HELLO's: proto to switch to */
    int login_proto;
    char login_user[AUTH_NAME_MAX + 1];
    char login_setname[128];
    /* MULTI / WATCH (docs/resp.md, "Transactions") */
    int in_multi, multi_dirty, watch_failed;
    qcmd_t *q;
    size_t nq, capq;
    wkey_t *w;
    size_t nw, capw;
};

static uint64_t g_resp_ids;
/* Per command (the table's index; NCMDS: unknown commands): commands
 * received and error replies. INFO's cmdstat and /metrics
 * (shale_router_resp_commands_total, _errors_total) read the same counts. */
static uint64_t g_resp_calls[64], g_resp_errors[64];

/* ---- Command table ----------------------------------------------------------*/

enum { F_WRITE = 1, F_READ = 2, F_NOAUTH = 4, F_CONN = 8, F_ADMIN = 16 };

typedef int (*cmd_fn)(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);

typedef struct cmdspec {
    const char *name;
    int arity; /* Redis: n exact, -n at least n */
    int flags;
    int first, last, step; /* key positions (0: none) */
    cmd_fn fn;
    const char *group;
} cmdspec_t;

static int c_ping(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_echo(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_hello(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_auth(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_select(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_quit(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_client(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_command(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_info(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_config(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_wait(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_readonly(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_readwrite(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_get(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_set(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_setnx(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_getset(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_getdel(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_mget(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_mset(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_del(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_exists(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_incr(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_dbsize(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_expire(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_scan(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_watch(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_multi(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);
static int c_exec(rt_resp_t *, rcmd_t *, size_t, char **, size_t *);

static const cmdspec_t cmds[] = {
    {"ping", -1, F_CONN, 0, 0, 0, c_ping, "connection"},
    {"echo", 2, F_CONN, 0, 0, 0, c_echo, "connection"},
    {"hello", -1, F_CONN | F_NOAUTH, 0, 0, 0, c_hello, "connection"},
    {"auth", -2, F_CONN | F_NOAUTH, 0, 0, 0, c_auth, "connection"},
    {"select", 2, F_CONN, 0, 0, 0, c_select, "connection"},
    {"quit", -1, F_CONN | F_NOAUTH, 0, 0, 0, c_quit, "connection"},
    {"client", -2, F_CONN, 0, 0, 0, c_client, "connection"},
    {"command", -1, F_CONN, 0, 0, 0, c_command, "server"},
    {"info", -1, F_CONN, 0, 0, 0, c_info, "server"},
    {"config", -2, F_CONN, 0, 0, 0, c_config, "server"},
    {"dbsize", 1, F_CONN, 0, 0, 0, c_dbsize, "server"},
    {"wait", 3, F_CONN, 0, 0, 0, c_wait, "generic"},
    {"readonly", 1, F_CONN, 0, 0, 0, c_readonly, "cluster"},
    {"readwrite", 1, F_CONN, 0, 0, 0, c_readwrite, "cluster"},
    {"get", 2, F_READ, 1, 1, 1, c_get, "string"},
    {"strlen", 2, F_READ, 1, 1, 1, c_get, "string"},
    {"type", 2, F_READ, 1, 1, 1, c_get, "generic"},
    {"ttl", 2, F_READ, 1, 1, 1, c_get, "generic"},
    {"pttl", 2, F_READ, 1, 1, 1, c_get, "generic"},
    {"set", -3, F_WRITE, 1, 1, 1, c_set, "string"},
    {"setnx", 3, F_WRITE, 1, 1, 1, c_setnx, "string"},
    {"getset", 3, F_WRITE, 1, 1, 1, c_getset, "string"},
    {"getdel", 2, F_WRITE, 1, 1, 1, c_getdel, "string"},
    {"mget", -2, F_READ, 1, -1, 1, c_mget, "string"},
    {"mset", -3, F_WRITE, 1, -1, 2, c_mset, "string"},
    {"del", -2, F_WRITE, 1, -1, 1, c_del, "generic"},
    {"unlink", -2, F_WRITE, 1, -1, 1, c_del, "generic"},
    {"exists", -2, F_READ, 1, -1, 1, c_exists, "generic"},
    {"expire", -3, F_WRITE, 1, 1, 1, c_expire, "generic"},
    {"pexpire", -3, F_WRITE, 1, 1, 1, c_expire, "generic"},
    {"persist", 2, F_WRITE, 1, 1, 1, c_expire, "generic"},
    {"incr", 2, F_WRITE, 1, 1, 1, c_incr, "string"},
    {"incrby", 3, F_WRITE, 1, 1, 1, c_incr, "string"},
    {"decr", 2, F_WRITE, 1, 1, 1, c_incr, "string"},
    {"decrby", 3, F_WRITE, 1, 1, 1, c_incr, "string"},
    {"append", 3, F_WRITE, 1, 1, 1, c_incr, "string"},
    {"scan", -2, F_READ, 0, 0, 0, c_scan, "generic"},
    {"keys", 2, F_READ, 0, 0, 0, c_scan, "generic"},
    {"watch", -2, F_READ, 1, -1, 1, c_watch, "transactions"},
    {"unwatch", 1, F_CONN, 0, 0, 0, c_multi, "transactions"},
    {"multi", 1, F_CONN, 0, 0, 0, c_multi, "transactions"},
    {"exec", 1, F_CONN, 0, 0, 0, c_exec, "transactions"},
    {"discard", 1, F_CONN, 0, 0, 0, c_multi, "transactions"},
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))
_Static_assert(NCMDS < sizeof(g_resp_calls) / sizeof(g_resp_calls[0]), "room for unknown");

size_t rt_resp_ncmds(void)
{
    return NCMDS;
}

const char *rt_resp_cmd_name(size_t i)
{
    return i < NCMDS ? cmds[i].name : "unknown";
}

void rt_resp_cmd_counts(size_t i, uint64_t *calls, uint64_t *errors)
{
    *calls = i <= NCMDS ? g_resp_calls[i] : 0;
    *errors = i <= NCMDS ? g_resp_errors[i] : 0;
}

static int ci_is(int ci, const char *name)
{
    return ci >= 0 && strcmp(cmds[ci].name, name) == 0;
}

static int cmd_is(const rcmd_t *cm, const char *name)
{
    return ci_is(cm->ci, name);
}

static int find_cmd(const char *name, size_t len)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (strlen(cmds[i].name) == len && strncasecmp(cmds[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

static int arg_is(const char *a, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(a, word, len) == 0;
}

/* Where the keys of a command of spec sp with argc arguments are: argv[first],
 * argv[first + step], ... up to argv[last]. 0 when it has none. */
static int key_range(const cmdspec_t *sp, size_t argc, size_t *first, size_t *last, size_t *step)
{
    if (sp->first == 0 || (size_t)sp->first >= argc)
        return 0;
    *first = (size_t)sp->first;
    *last = sp->last < 0 || (size_t)sp->last >= argc ? argc - 1 : (size_t)sp->last;
    *step = (size_t)sp->step;
    return 1;
}

/* ---- Replies in order ---------------------------------------------------------*/

static void scan_free(struct scan_st *st);

/* Copy argc arguments into h. -1 when out of memory (h holds what was
 * copied; argv_release frees it either way). */
static int argv_copy(held_t *h, size_t argc, const char *const *argv, const size_t *len)
{
    memset(h, 0, sizeof(*h));
    h->argv = calloc(argc, sizeof(char *));
    h->len = calloc(argc, sizeof(size_t));
    if (h->argv == NULL || h->len == NULL)
        return -1;
    for (size_t i = 0; i < argc; i++) {
        h->argv[i] = malloc(len[i] + 1);
        if (h->argv[i] == NULL)
            return -1;
        memcpy(h->argv[i], argv[i], len[i]);
        h->argv[i][len[i]] = '\0';
        h->len[i] = len[i];
        h->argc = i + 1;
    }
    return 0;
}

static void argv_release(held_t *h)
{
    for (size_t i = 0; i < h->argc; i++)
        free(h->argv[i]);
    free(h->argv);
    free(h->len);
    memset(h, 0, sizeof(*h));
}

static void qcmds_free(qcmd_t *q, size_t n)
{
    for (size_t i = 0; i < n; i++)
        argv_release(&q[i].a);
    free(q);
}

static void cmd_free(rcmd_t *cm)
{
    for (size_t i = 0; i < cm->ncalls; i++)
        if (cm->calls[i] != NULL)
            rt_up_cancel(cm->calls[i]);
    free(cm->calls);
    for (unsigned i = 0; i < cm->nsub; i++)
        if (cm->ans != NULL && cm->ans[i] != NULL)
            protobuf_c_message_free_unpacked(cm->ans[i], NULL);
    free(cm->ans);
    free(cm->atype);
    free(cm->keyh);
    scan_free(cm->scan);
    free(cm->key);
    qcmds_free(cm->q, cm->nq);
    resp_out_free(&cm->out);
    free(cm);
}

/* Hand every finished reply at the head of the queue to the connection. */
static void flush_done(rt_resp_t *s)
{
    resp_out_t acc;
    resp_out_init(&acc, 2);
    int close = 0;
    while (!rt_q_empty(&s->pending)) {
        rcmd_t *cm = rt_q_data(s->pending.next, rcmd_t, link);
        if (!cm->done)
            break;
        rt_q_remove(&cm->link);
        s->npending--;
        if (acc.len == 0 && acc.data == NULL) {
            acc = cm->out; /* take its buffer */
            acc.proto = 2;
            resp_out_init(&cm->out, 2);
        } else if (cm->out.len > 0) {
            if (acc.len + cm->out.len > acc.cap) {
                size_t cap = (acc.len + cm->out.len) * 2;
                char *nb = realloc(acc.data, cap);
                if (nb == NULL)
                    acc.oom = 1;
                else {
                    acc.data = nb;
                    acc.cap = cap;
                }
            }
            if (!acc.oom) {
                memcpy(acc.data + acc.len, cm->out.data, cm->out.len);
                acc.len += cm->out.len;
            }
        }
        close = cm->close_after;
        cmd_free(cm);
        if (close)
            break;
    }
    if (acc.oom) {
        resp_out_free(&acc);
        rt_error("out of memory building a RESP reply; closing", " peer=%s",
                 rt_cconn_peer(s->c));
        rt_cconn_close_after_flush(s->c);
        return;
    }
    size_t n = 0;
    char *b = resp_out_take(&acc, &n);
    resp_out_free(&acc);
    if (b != NULL)
        rt_cconn_send_raw(s->c, b, n);
    if (close)
        rt_cconn_close_after_flush(s->c);
}

static void cmd_done(rcmd_t *cm)
{
    cm->done = 1;
    if (resp_out_failed(&cm->out)) {
        resp_out_reset(&cm->out);
        cm->out.oom = 0;
        resp_add_error(&cm->out, "ERR out of memory");
    }
    if (cm->counted && cm->out.len > 0 && cm->out.data[0] == '-')
        g_resp_errors[cm->ci >= 0 ? (size_t)cm->ci : NCMDS]++;
}

/* ---- Shale errors as Redis errors -----------------------------------------------*/

static void add_shale_error(resp_out_t *o, int code, const char *msg)
{
    if (msg == NULL || msg[0] == '\0')
        msg = shale_strerror(code);
    switch (code) {
    case SHALE_EAUTH:
        resp_add_errorf(o, "NOAUTH %s", msg);
        break;
    case SHALE_EPERM:
        resp_add_errorf(o, "NOPERM %s", msg);
        break;
    case SHALE_EUNAVAILABLE:
        resp_add_errorf(o, "CLUSTERDOWN %s", msg);
        break;
    case SHALE_ETIMEOUT:
        resp_add_errorf(o, "TIMEOUT outcome unknown (the write may or may not have applied): %s",
                        msg);
        break;
    case SHALE_ECROSSSLOT:
        resp_add_error(o, "CROSSSLOT Keys in request don't hash to the same slot");
        break;
    case SHALE_EOVERLOAD:
        resp_add_errorf(o, "TRYAGAIN %s", msg);
        break;
    default:
        resp_add_errorf(o, "ERR %s", msg);
        break;
    }
}

/* Sub-request i's answer: 0 with *m of want, or the error written to cm->out
 * (1). CAS_FAILED is returned as SHALE_ECASFAILED without a reply. */
static int sub_answer(rcmd_t *cm, unsigned i, uint16_t want, ProtobufCMessage **m)
{
    *m = cm->ans[i];
    if (cm->atype[i] == want && *m != NULL)
        return 0;
    if (cm->atype[i] == SHALE_MSG_ERROR && *m != NULL) {
        const Shale__Error *e = (const Shale__Error *)*m;
        int code = -(int)e->code;
        if (code == SHALE_ECASFAILED)
            return SHALE_ECASFAILED;
        add_shale_error(&cm->out, code, e->message);
        return 1;
    }
    resp_add_error(&cm->out, "ERR unexpected answer from the cluster");
    return 1;
}

/* ---- Native requests ---------------------------------------------------------------*/

static int subs_init(rcmd_t *cm, unsigned n)
{
    cm->atype = calloc(n, sizeof(*cm->atype));
    cm->ans = calloc(n, sizeof(*cm->ans));
    if (cm->atype == NULL || cm->ans == NULL)
        return -1;
    cm->nsub = cm->nleft = n;
    cm->base_id = cm->s->next_id;
    cm->s->next_id += n;
    return 0;
}

static Shale__Session *session_fill(rt_resp_t *s, rcmd_t *cm, Shale__Session *ss)
{
    shale__session__init(ss);
    uint64_t seq = ++s->seq;
    if (cm->seq_lo == 0)
        cm->seq_lo = seq;
    uint64_t floor = seq;
    for (rt_q_t *n = s->pending.next; n != &s->pending; n = n->next) {
        rcmd_t *o = rt_q_data(n, rcmd_t, link);
        if (!o->done && o->seq_lo != 0) {
            floor = o->seq_lo < floor ? o->seq_lo : floor;
            break;
        }
    }
    ss->client_id = s->client_id;
    ss->seq = seq;
    ss->has_ack_floor = 1;
    ss->ack_floor = floor;
    return ss;
}

static void read_opts(rt_resp_t *s, Shale__ReadOptions *ro)
{
    shale__read_options__init(ro);
    if (s->readonly) {
        ro->has_consistency = 1;
        ro->consistency = SHALE__CONSISTENCY__STALE;
        ro->has_max_staleness_ms = 1;
        ro->max_staleness_ms = (uint32_t)s->r->cfg.resp_stale_ms;
    }
}

/* Send sub i. The answer comes through rt_resp_answer (maybe at once). */
static void sub_send(rcmd_t *cm, unsigned i, uint16_t type, const ProtobufCMessage *m)
{
    rt_resp_t *s = cm->s;
    uint64_t id = cm->base_id + i;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL || rt_idmap_put(&s->ids, id, cm) != 0) {
        free(buf);
        size_t flen;
        uint8_t *f = wire_error_frame(id, SHALE_ENOMEM, "out of memory", NULL, &flen);
        rt_idmap_put(&s->ids, id, cm);
        rt_resp_answer(s, f, flen);
        return;
    }
    protobuf_c_message_pack(m, buf);
    rt_cconn_begin(s->c);
    rt_fwd_accept(s->r, s->c, type, id, buf, n);
    free(buf);
}

/* A command that is one native request, sent as sub 0; a write's session
 * (session: where the request keeps it) is filled first. -1 when out of
 * memory. */
static int send_single(rt_resp_t *s, rcmd_t *cm, uint16_t type, const ProtobufCMessage *m,
                       Shale__Session **session, Shale__Session *ss)
{
    if (subs_init(cm, 1) != 0)
        return -1;
    if (session != NULL)
        *session = session_fill(s, cm, ss);
    sub_send(cm, 0, type, m);
    return 0;
}

/* A command of several rounds sends its next request (as sub 0 again,
 * under a new id): cm->again tells rt_resp_answer not to answer yet. */
static void sub_again(rcmd_t *cm, uint16_t type, const ProtobufCMessage *m)
{
    if (cm->ans[0] != NULL)
        protobuf_c_message_free_unpacked(cm->ans[0], NULL);
    cm->ans[0] = NULL;
    cm->atype[0] = 0;
    cm->nsub = cm->nleft = 1;
    cm->base_id = cm->s->next_id++;
    cm->again = 1;
    cm->round++;
    sub_send(cm, 0, type, m);
}

/* Send sub 0 of a command of several rounds: the first or the next. -1
 * when out of memory (first round). */
static int send_round(rcmd_t *cm, uint16_t type, const ProtobufCMessage *m)
{
    if (cm->nsub == 0) {
        if (subs_init(cm, 1) != 0)
            return -1;
        sub_send(cm, 0, type, m);
        return 0;
    }
    sub_again(cm, type, m);
    return 0;
}

/* Run cm's fin on its answers; again while a next round was answered at
 * once (while fin ran). cm->again on return: a round is still out. */
static void run_fin(rcmd_t *cm)
{
    do {
        cm->again = 0;
        cm->in_fin = 1;
        cm->fin(cm);
        cm->in_fin = 0;
    } while (cm->again && cm->nleft == 0);
}

static ProtobufCBinaryData bin(const char *p, size_t n)
{
    ProtobufCBinaryData b = {n, (uint8_t *)p};
    return b;
}

/* ---- Connection commands ------------------------------------------------------------*/

static int c_ping(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)s;
    if (argc > 2)
        resp_add_error(&cm->out, "ERR wrong number of arguments for 'ping' command");
    else if (argc == 2)
        resp_add_bulk(&cm->out, argv[1], len[1]);
    else
        resp_add_simple(&cm->out, "PONG");
    return 0;
}

static int c_echo(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)s, (void)argc;
    resp_add_bulk(&cm->out, argv[1], len[1]);
    return 0;
}

static void hello_map(rt_resp_t *s, resp_out_t *o)
{
    resp_add_map(o, 7);
    resp_add_bulk_str(o, "server");
    resp_add_bulk_str(o, "shale");
    resp_add_bulk_str(o, "version");
    resp_add_bulk_str(o, RESP_VERSION_TEXT);
    resp_add_bulk_str(o, "proto");
    resp_add_int(o, s->proto);
    resp_add_bulk_str(o, "id");
    resp_add_int(o, (long long)s->id);
    resp_add_bulk_str(o, "mode");
    resp_add_bulk_str(o, "standalone");
    resp_add_bulk_str(o, "role");
    resp_add_bulk_str(o, "master");
    resp_add_bulk_str(o, "modules");
    resp_add_array(o, 0);
}

static int valid_name(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '!' || p[i] > '~')
            return 0;
    return 1;
}

static void set_authed(rt_resp_t *s)
{
    s->authed = 1;
    resp_limits_t lim;
    resp_limits_default(&lim);
    size_t big = s->r->cfg.max_value > s->r->cfg.max_key ? s->r->cfg.max_value : s->r->cfg.max_key;
    lim.max_bulk = big + 1024;
    resp_parser_set_limits(&s->p, &lim);
}

static void on_resp_login(void *arg, int status, const char *user, const char *msg)
{
    rt_resp_t *s = arg;
    rcmd_t *cm = s->login_cmd;
    s->login = NULL;
    s->login_cmd = NULL;
    s->blocked = 0;
    if (status == 0) {
        rt_authn_conn_t *ac = rt_cconn_authn(s->c);
        snprintf(ac->user, sizeof(ac->user), "%s", user);
        ac->u = NULL;
        set_authed(s);
        rt_debug("RESP login", " peer=%s user=%s", rt_cconn_peer(s->c), user);
        if (s->login_hello) {
            s->proto = s->login_proto;
            if (s->login_setname[0] != '\0')
                snprintf(s->name, sizeof(s->name), "%s", s->login_setname);
            cm->out.proto = s->proto;
            hello_map(s, &cm->out);
        } else {
            resp_add_simple(&cm->out, "OK");
        }
    } else {
        rt_warn("RESP login failed", " peer=%s user=%s err=\"%s\"", rt_cconn_peer(s->c),
                s->login_user, msg);
        resp_add_error(&cm->out,
                       "WRONGPASS invalid username-password pair or user is disabled.");
    }
    cmd_done(cm);
    flush_done(s);
    rt_cconn_kick(s->c);
    rt_cconn_request_done(s->c); /* the login's hold on the connection */
}

/* Start checking user/password: 1 when pending (the reply comes later), 0
 * when answered now. */
static int start_login(rt_resp_t *s, rcmd_t *cm, const char *user, size_t ulen, const char *pw,
                       size_t pwlen)
{
    rt_router_t *r = s->r;
    if (!r->cfg.auth) {
        resp_add_error(&cm->out, "ERR AUTH <password> called without any password configured "
                                 "for the default user. Are you sure your configuration is "
                                 "correct?");
        return 0;
    }
    snprintf(s->login_user, sizeof(s->login_user), "%.*s",
             (int)(ulen < AUTH_NAME_MAX ? ulen : AUTH_NAME_MAX), user);
    uint8_t *cred = NULL;
    size_t clen = 0;
    if (ulen > AUTH_NAME_MAX || memchr(user, '\0', ulen) != NULL ||
        auth_credential_pack(s->login_user, pw, pwlen, &cred, &clen) != 0) {
        resp_add_error(&cm->out, "WRONGPASS invalid username-password pair or user is disabled.");
        return 0;
    }
    char msg[LOGIN_MSGLEN];
    int rv = login_start(&r->authn.login, rt_cconn_peer(s->c), cred, clen, r->authn.uwatch.table,
                         on_resp_login, s, &s->login, msg);
    OPENSSL_cleanse(cred, clen);
    free(cred);
    if (rv != SHALE_OK) {
        rt_warn("RESP login refused", " peer=%s err=\"%s\"", rt_cconn_peer(s->c), msg);
        if (rv == SHALE_EAUTH)
            resp_add_error(&cm->out,
                           "WRONGPASS invalid username-password pair or user is disabled.");
        else
            add_shale_error(&cm->out, rv, msg);
        return 0;
    }
    s->login_cmd = cm;
    s->blocked = 1;
    rt_cconn_begin(s->c); /* released by on_resp_login */
    return 1;
}

static int c_auth(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    if (argc > 3) {
        resp_add_error(&cm->out, "ERR syntax error");
        return 0;
    }
    s->login_hello = 0;
    if (argc == 2)
        return start_login(s, cm, "default", 7, argv[1], len[1]);
    return start_login(s, cm, argv[1], len[1], argv[2], len[2]);
}

static int c_hello(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    int proto = s->proto;
    size_t i = 1;
    if (argc >= 2) {
        long long v;
        if (!resp_string2ll(argv[1], len[1], &v)) {
            resp_add_error(&cm->out, "ERR Protocol version is not an integer or out of range");
            return 0;
        }
        if (v != 2 && v != 3) {
            resp_add_error(&cm->out, "NOPROTO unsupported protocol version");
            return 0;
        }
        proto = (int)v;
        i = 2;
    }
    const char *user = NULL, *pw = NULL, *name = NULL;
    size_t ulen = 0, pwlen = 0, nlen = 0;
    for (; i < argc; i++) {
        if (arg_is(argv[i], len[i], "auth") && i + 2 < argc) {
            user = argv[i + 1], ulen = len[i + 1];
            pw = argv[i + 2], pwlen = len[i + 2];
            i += 2;
        } else if (arg_is(argv[i], len[i], "setname") && i + 1 < argc) {
            name = argv[i + 1], nlen = len[i + 1];
            i += 1;
        } else {
            resp_add_errorf(&cm->out, "ERR Syntax error in HELLO option '%.64s'", argv[i]);
            return 0;
        }
    }
    if (name != NULL && (!valid_name(name, nlen) || nlen >= sizeof(s->name))) {
        resp_add_error(&cm->out, "ERR Client names cannot contain spaces, newlines or special "
                                 "characters.");
        return 0;
    }
    if (user != NULL) {
        s->login_hello = 1;
        s->login_proto = proto;
        snprintf(s->login_setname, sizeof(s->login_setname), "%.*s", (int)nlen,
                 name != NULL ? name : "");
        return start_login(s, cm, user, ulen, pw, pwlen);
    }
    if (s->r->cfg.auth && !s->authed) {
        resp_add_error(&cm->out, "NOAUTH HELLO must be called with the client already "
                                 "authenticated, otherwise the HELLO <proto> AUTH <user> <pass> "
                                 "option can be used to authenticate the client and select the "
                                 "RESP protocol version at the same time");
        return 0;
    }
    s->proto = proto;
    if (name != NULL)
        snprintf(s->name, sizeof(s->name), "%.*s", (int)nlen, name);
    cm->out.proto = proto;
    hello_map(s, &cm->out);
    return 0;
}

static int c_select(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)s, (void)argc;
    long long v;
    if (!resp_string2ll(argv[1], len[1], &v))
        resp_add_error(&cm->out, "ERR value is not an integer or out of range");
    else if (v != 0)
        resp_add_error(&cm->out, "ERR DB index is out of range");
    else
        resp_add_simple(&cm->out, "OK");
    return 0;
}

static int c_quit(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc, (void)argv, (void)len;
    resp_add_simple(&cm->out, "OK");
    cm->close_after = 1;
    s->quit = 1;
    return 0;
}

static int c_client(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    if (arg_is(argv[1], len[1], "setname") && argc == 3) {
        if (!valid_name(argv[2], len[2]) || len[2] >= sizeof(s->name))
            resp_add_error(&cm->out, "ERR Client names cannot contain spaces, newlines or "
                                     "special characters.");
        else {
            snprintf(s->name, sizeof(s->name), "%.*s", (int)len[2], argv[2]);
            resp_add_simple(&cm->out, "OK");
        }
    } else if (arg_is(argv[1], len[1], "getname") && argc == 2) {
        if (s->name[0] == '\0')
            resp_add_null(&cm->out);
        else
            resp_add_bulk_str(&cm->out, s->name);
    } else if (arg_is(argv[1], len[1], "id") && argc == 2) {
        resp_add_int(&cm->out, (long long)s->id);
    } else if (arg_is(argv[1], len[1], "setinfo") && argc == 4) {
        resp_add_simple(&cm->out, "OK");
    } else if (arg_is(argv[1], len[1], "info") && argc == 2) {
        char line[512];
        int n = snprintf(line, sizeof(line), "id=%llu addr=%s name=%s db=0 resp=%d user=%s\n",
                         (unsigned long long)s->id, rt_cconn_peer(s->c), s->name, s->proto,
                         rt_cconn_authn(s->c)->user[0] ? rt_cconn_authn(s->c)->user : "default");
        resp_add_verbatim(&cm->out, "txt", line, (size_t)n);
    } else {
        resp_add_errorf(&cm->out, "ERR unknown subcommand or wrong number of arguments for "
                                  "'%.64s'. Try CLIENT HELP.",
                        argv[1]);
    }
    return 0;
}

static void command_entry(resp_out_t *o, const cmdspec_t *c)
{
    resp_add_array(o, 10);
    resp_add_bulk_str(o, c->name);
    resp_add_int(o, c->arity);
    int nf = !!(c->flags & F_WRITE) + !!(c->flags & F_READ) + !!(c->flags & F_NOAUTH);
    resp_add_set(o, (size_t)nf);
    if (c->flags & F_WRITE)
        resp_add_simple(o, "write");
    if (c->flags & F_READ)
        resp_add_simple(o, "readonly");
    if (c->flags & F_NOAUTH)
        resp_add_simple(o, "no_auth");
    resp_add_int(o, c->first);
    resp_add_int(o, c->last);
    resp_add_int(o, c->step);
    resp_add_set(o, 0);
    resp_add_set(o, 0);
    resp_add_array(o, 0);
    resp_add_array(o, 0);
}

static int c_command(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)s;
    if (argc == 1) {
        resp_add_array(&cm->out, NCMDS);
        for (size_t i = 0; i < NCMDS; i++)
            command_entry(&cm->out, &cmds[i]);
    } else if (arg_is(argv[1], len[1], "count")) {
        resp_add_int(&cm->out, (long long)NCMDS);
    } else if (arg_is(argv[1], len[1], "docs")) {
        /* No docs: redis-cli falls back to its built-in hints. */
        resp_add_map(&cm->out, 0);
    } else if (arg_is(argv[1], len[1], "info")) {
        resp_add_array(&cm->out, argc - 2);
        for (size_t i = 2; i < argc; i++) {
            int k = find_cmd(argv[i], len[i]);
            if (k < 0)
                resp_add_null_array(&cm->out);
            else
                command_entry(&cm->out, &cmds[k]);
        }
    } else {
        resp_add_errorf(&cm->out, "ERR unknown subcommand '%.64s'. Try COMMAND HELP.", argv[1]);
    }
    return 0;
}

static int c_info(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argv, (void)len, (void)argc;
    rt_router_t *r = s->r;
    size_t cap = 8192, n = 0;
    char *b = malloc(cap);
    if (b == NULL) {
        resp_add_error(&cm->out, "ERR out of memory");
        return 0;
    }
#define ADD(...)                                                                                 \
    do {                                                                                         \
        if (n < cap)                                                                             \
            n += (size_t)snprintf(b + n, cap - n, __VA_ARGS__);                                  \
    } while (0)
    ADD("# Server\r\nredis_version:%s\r\nshale_router:1\r\nredis_mode:standalone\r\n"
        "tcp_port:%s\r\ncluster_id:%s\r\n\r\n",
        RESP_VERSION_TEXT, r->cfg.resp, r->cfg.cluster_id);
    ADD("# Clients\r\nconnected_clients:%zu\r\n\r\n", r->nconns);
    ADD("# Stats\r\ntotal_requests_forwarded:%llu\r\nretries:%llu\r\ntimeouts:%llu\r\n\r\n",
        (unsigned long long)r->fwd.requests, (unsigned long long)r->fwd.retries,
        (unsigned long long)r->fwd.timeouts);
    ADD("# Commandstats\r\n");
    for (size_t i = 0; i < NCMDS; i++)
        if (g_resp_calls[i] > 0)
            ADD("cmdstat_%s:calls=%llu,failed_calls=%llu\r\n", cmds[i].name,
                (unsigned long long)g_resp_calls[i], (unsigned long long)g_resp_errors[i]);
    ADD("\r\n# Cluster\r\nmap_epoch:%llu\r\nshard_groups:%zu\r\nslots:%u\r\n",
        (unsigned long long)r->route.epoch, r->route.ngroups, r->route.slots);
#undef ADD
    if (n >= cap)
        n = cap - 1;
    resp_add_verbatim(&cm->out, "txt", b, n);
    free(b);
    return 0;
}

static int c_config(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)s, (void)argc;
    if (arg_is(argv[1], len[1], "get"))
        resp_add_map(&cm->out, 0); /* no Redis settings here */
    else
        resp_add_errorf(&cm->out, "ERR unknown subcommand '%.64s'. Try CONFIG HELP.", argv[1]);
    return 0;
}

static int c_wait(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc;
    long long a, b;
    if (!resp_string2ll(argv[1], len[1], &a) || !resp_string2ll(argv[2], len[2], &b)) {
        resp_add_error(&cm->out, "ERR value is not an integer or out of range");
        return 0;
    }
    if (b < 0) {
        resp_add_error(&cm->out, "ERR timeout is negative");
        return 0;
    }
    /* Every acknowledged write reached a majority of its group's voters:
     * the leader plus (voters / 2) others, for the smallest group. */
    long long least = -1;
    for (size_t g = 0; g < s->r->route.ngroups; g++) {
        const rt_group_t *gr = &s->r->route.groups[g];
        long long voters = 0;
        for (size_t m = 0; m < gr->nmembers; m++)
            voters += !gr->members[m].replica;
        long long rep = voters / 2;
        if (least < 0 || rep < least)
            least = rep;
    }
    resp_add_int(&cm->out, least < 0 ? 0 : least);
    return 0;
}

static int c_readonly(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc, (void)argv, (void)len;
    s->readonly = 1;
    resp_add_simple(&cm->out, "OK");
    return 0;
}

static int c_readwrite(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc, (void)argv, (void)len;
    s->readonly = 0;
    resp_add_simple(&cm->out, "OK");
    return 0;
}

/* ---- Strings and keys -----------------------------------------------------------------*/

static void fin_get(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (sub_answer(cm, 0, SHALE_MSG_GET_RESP, &m) != 0)
        return;
    const Shale__GetResponse *g = (const Shale__GetResponse *)m;
    int found = g->found;
    if (cmd_is(cm, "get")) {
        if (found)
            resp_add_bulk(&cm->out, g->has_value ? g->value.data : (const uint8_t *)"",
                          g->has_value ? g->value.len : 0);
        else
            resp_add_null(&cm->out);
    } else if (cmd_is(cm, "strlen")) {
        resp_add_int(&cm->out, found && g->has_value ? (long long)g->value.len : 0);
    } else if (cmd_is(cm, "type")) {
        resp_add_simple(&cm->out, found ? "string" : "none");
    } else { /* ttl, pttl */
        int ms = cmd_is(cm, "pttl");
        if (!found)
            resp_add_int(&cm->out, -2);
        else if (!g->has_expires_in_ms)
            resp_add_int(&cm->out, -1);
        else
            resp_add_int(&cm->out, ms ? (long long)g->expires_in_ms
                                      : (long long)((g->expires_in_ms + 500) / 1000));
    }
}

static int c_get(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc;
    Shale__GetRequest q = SHALE__GET_REQUEST__INIT;
    Shale__ReadOptions ro;
    read_opts(s, &ro);
    q.key = bin(argv[1], len[1]);
    q.read = &ro;
    cm->fin = fin_get;
    return send_single(s, cm, SHALE_MSG_GET_REQ, &q.base, NULL, NULL);
}

enum { SET_NX = 1, SET_XX = 2, SET_GET = 4, SET_TTL = 8, SET_KEEPTTL = 16, SET_PAST = 32 };

static void fin_set(rcmd_t *cm)
{
    ProtobufCMessage *m;
    int rv;
    if ((cm->opt & SET_PAST) && !(cm->opt & (SET_NX | SET_XX | SET_GET))) {
        /* a delete: the expiry time had passed */
        if (sub_answer(cm, 0, SHALE_MSG_DEL_RESP, &m) == 0)
            resp_add_simple(&cm->out, "OK");
        return;
    }
    if (!(cm->opt & (SET_NX | SET_XX | SET_GET | SET_KEEPTTL))) {
        if (sub_answer(cm, 0, SHALE_MSG_PUT_RESP, &m) == 0)
            resp_add_simple(&cm->out, "OK");
        return;
    }
    if (cm->opt == SET_NX) { /* CAS expect_absent */
        rv = sub_answer(cm, 0, SHALE_MSG_CAS_RESP, &m);
        if (rv == 0)
            resp_add_simple(&cm->out, "OK");
        else if (rv == SHALE_ECASFAILED)
            resp_add_null(&cm->out);
        return;
    }
    if (sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
        return;
    const Shale__TxnResponse *t = (const Shale__TxnResponse *)m;
    if (cm->opt & SET_GET) {
        const Shale__TxnOpResult *g = t->n_results > 0 ? t->results[0] : NULL;
        if (g != NULL && g->found)
            resp_add_bulk(&cm->out, g->has_value ? g->value.data : (const uint8_t *)"",
                          g->has_value ? g->value.len : 0);
        else
            resp_add_null(&cm->out);
    } else if (t->succeeded) {
        resp_add_simple(&cm->out, "OK");
    } else {
        resp_add_null(&cm->out);
    }
}

static uint64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* SET's options (argv[3..]): *opt (SET_*) and *ttl (ms). 0, or 1 with the
 * error written to o. */
static int set_parse(size_t argc, char **argv, size_t *len, int *optp, long long *ttlp,
                     resp_out_t *o)
{
    int opt = 0;
    long long ttl = 0;
    for (size_t i = 3; i < argc; i++) {
        const char *a = argv[i];
        size_t n = len[i];
        int has_next = i + 1 < argc;
        if (arg_is(a, n, "nx") && !(opt & SET_XX))
            opt |= SET_NX;
        else if (arg_is(a, n, "xx") && !(opt & SET_NX))
            opt |= SET_XX;
        else if (arg_is(a, n, "get"))
            opt |= SET_GET;
        else if (arg_is(a, n, "keepttl") && !(opt & SET_TTL))
            opt |= SET_KEEPTTL;
        else if ((arg_is(a, n, "ex") || arg_is(a, n, "px") || arg_is(a, n, "exat") ||
                  arg_is(a, n, "pxat")) &&
                 !(opt & (SET_TTL | SET_KEEPTTL)) && has_next) {
            long long v;
            if (!resp_string2ll(argv[i + 1], len[i + 1], &v)) {
                resp_add_error(o, "ERR value is not an integer or out of range");
                return 1;
            }
            int secs = arg_is(a, n, "ex") || arg_is(a, n, "exat");
            int at = arg_is(a, n, "exat") || arg_is(a, n, "pxat");
            if (v <= 0 || (secs && v > (long long)(INT64_MAX / 1000))) {
                resp_add_error(o, "ERR invalid expire time in 'set' command");
                return 1;
            }
            long long ms = secs ? v * 1000 : v;
            if (at) {
                long long now = (long long)realtime_ms();
                ms = ms - now;
                if (ms <= 0)
                    opt |= SET_PAST;
            }
            ttl = ms;
            opt |= SET_TTL;
            i++;
        } else {
            resp_add_error(o, "ERR syntax error");
            return 1;
        }
    }
    if (ttl > 3153600000000LL)
        ttl = 3153600000000LL;
    *optp = opt;
    *ttlp = ttl;
    return 0;
}

static int c_set(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    int opt;
    long long ttl;
    if (set_parse(argc, argv, len, &opt, &ttl, &cm->out) != 0)
        return 0;
    cm->opt = opt;
    cm->fin = fin_set;
    if (subs_init(cm, 1) != 0)
        return -1;
    Shale__Session ss;
    if ((opt & SET_PAST) && !(opt & (SET_NX | SET_XX | SET_GET))) {
        Shale__DeleteRequest d = SHALE__DELETE_REQUEST__INIT;
        d.key = bin(argv[1], len[1]);
        d.session = session_fill(s, cm, &ss);
        sub_send(cm, 0, SHALE_MSG_DEL_REQ, &d.base);
    } else if (!(opt & (SET_NX | SET_XX | SET_GET | SET_KEEPTTL))) {
        Shale__PutRequest p = SHALE__PUT_REQUEST__INIT;
        p.key = bin(argv[1], len[1]);
        p.value = bin(argv[2], len[2]);
        if (opt & SET_TTL) {
            p.has_ttl_ms = 1;
            p.ttl_ms = (uint64_t)ttl;
        }
        p.session = session_fill(s, cm, &ss);
        sub_send(cm, 0, SHALE_MSG_PUT_REQ, &p.base);
    } else if (opt == SET_NX) {
        Shale__CasRequest c = SHALE__CAS_REQUEST__INIT;
        c.key = bin(argv[1], len[1]);
        c.has_expect_absent = 1;
        c.expect_absent = 1;
        c.has_new_value = 1;
        c.new_value = bin(argv[2], len[2]);
        c.session = session_fill(s, cm, &ss);
        sub_send(cm, 0, SHALE_MSG_CAS_REQ, &c.base);
    } else {
        Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
        Shale__TxnCompare cmp = SHALE__TXN_COMPARE__INIT;
        Shale__TxnCompare *cmps[1] = {&cmp};
        Shale__TxnOp get = SHALE__TXN_OP__INIT, put = SHALE__TXN_OP__INIT;
        Shale__TxnOp *succ[2], *fail[1];
        size_t ns = 0;
        if (opt & (SET_NX | SET_XX)) {
            cmp.key = bin(argv[1], len[1]);
            cmp.target = SHALE__TXN_TARGET__TXN_EXISTS;
            cmp.op = SHALE__TXN_COMPARE_OP__TXN_EQUAL;
            cmp.has_exists = 1;
            cmp.exists = (opt & SET_XX) ? 1 : 0;
            t.n_compares = 1;
            t.compares = cmps;
        }
        get.type = SHALE__TXN_OP_TYPE__TXN_GET;
        get.key = bin(argv[1], len[1]);
        put.key = bin(argv[1], len[1]);
        if (opt & SET_PAST) {
            /* Set and expired at once (Redis 7): where the compare holds,
             * the key ends deleted; GET still answers the old value. */
            put.type = SHALE__TXN_OP_TYPE__TXN_DELETE;
        } else {
            put.type = SHALE__TXN_OP_TYPE__TXN_PUT;
            put.has_value = 1;
            put.value = bin(argv[2], len[2]);
        }
        if ((opt & SET_TTL) && !(opt & SET_PAST)) {
            put.has_ttl_ms = 1;
            put.ttl_ms = (uint64_t)ttl;
        }
        if (opt & SET_KEEPTTL) {
            put.has_keep_ttl = 1;
            put.keep_ttl = 1;
        }
        if (opt & SET_GET)
            succ[ns++] = &get;
        succ[ns++] = &put;
        t.n_success = ns;
        t.success = succ;
        if (opt & SET_GET) {
            fail[0] = &get;
            t.n_failure = 1;
            t.failure = fail;
        }
        t.session = session_fill(s, cm, &ss);
        sub_send(cm, 0, SHALE_MSG_TXN_REQ, &t.base);
    }
    return 0;
}

static void fin_setnx(rcmd_t *cm)
{
    ProtobufCMessage *m;
    int rv = sub_answer(cm, 0, SHALE_MSG_CAS_RESP, &m);
    if (rv == 0)
        resp_add_int(&cm->out, 1);
    else if (rv == SHALE_ECASFAILED)
        resp_add_int(&cm->out, 0);
}

static int c_setnx(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc;
    Shale__CasRequest c = SHALE__CAS_REQUEST__INIT;
    Shale__Session ss;
    c.key = bin(argv[1], len[1]);
    c.has_expect_absent = 1;
    c.expect_absent = 1;
    c.has_new_value = 1;
    c.new_value = bin(argv[2], len[2]);
    cm->fin = fin_setnx;
    return send_single(s, cm, SHALE_MSG_CAS_REQ, &c.base, &c.session, &ss);
}

/* GETSET / GETDEL: the old value from the txn's first op. */
static void fin_getx(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
        return;
    const Shale__TxnResponse *t = (const Shale__TxnResponse *)m;
    const Shale__TxnOpResult *g = t->n_results > 0 ? t->results[0] : NULL;
    if (g != NULL && g->found)
        resp_add_bulk(&cm->out, g->has_value ? g->value.data : (const uint8_t *)"",
                      g->has_value ? g->value.len : 0);
    else
        resp_add_null(&cm->out);
}

static int txn_get_then(rt_resp_t *s, rcmd_t *cm, const char *k, size_t klen, int del,
                        const char *v, size_t vlen)
{
    Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
    Shale__TxnOp get = SHALE__TXN_OP__INIT, op = SHALE__TXN_OP__INIT;
    Shale__TxnOp *succ[2] = {&get, &op};
    Shale__Session ss;
    get.type = SHALE__TXN_OP_TYPE__TXN_GET;
    get.key = bin(k, klen);
    op.type = del ? SHALE__TXN_OP_TYPE__TXN_DELETE : SHALE__TXN_OP_TYPE__TXN_PUT;
    op.key = bin(k, klen);
    if (!del) {
        op.has_value = 1;
        op.value = bin(v, vlen);
    }
    t.n_success = 2;
    t.success = succ;
    cm->fin = fin_getx;
    return send_single(s, cm, SHALE_MSG_TXN_REQ, &t.base, &t.session, &ss);
}

static int c_getset(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc;
    return txn_get_then(s, cm, argv[1], len[1], 0, argv[2], len[2]);
}

static int c_getdel(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc;
    return txn_get_then(s, cm, argv[1], len[1], 1, NULL, 0);
}

/* MGET / EXISTS: one MGET (the router splits it by group). */
static void fin_mget(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (sub_answer(cm, 0, SHALE_MSG_MGET_RESP, &m) != 0)
        return;
    const Shale__MGetResponse *g = (const Shale__MGetResponse *)m;
    for (size_t i = 0; i < g->n_items; i++)
        if (g->items[i]->error != NULL) {
            add_shale_error(&cm->out, -(int)g->items[i]->error->code,
                            g->items[i]->error->message);
            return;
        }
    if (cmd_is(cm, "exists")) {
        long long n = 0;
        for (size_t i = 0; i < g->n_items; i++)
            n += g->items[i]->found;
        resp_add_int(&cm->out, n);
        return;
    }
    resp_add_array(&cm->out, g->n_items);
    for (size_t i = 0; i < g->n_items; i++) {
        const Shale__KeyValue *kv = g->items[i];
        if (kv->found)
            resp_add_bulk(&cm->out, kv->has_value ? kv->value.data : (const uint8_t *)"",
                          kv->has_value ? kv->value.len : 0);
        else
            resp_add_null(&cm->out);
    }
}

/* One MGET of argv[1..] (ro NULL: linearizable). -1 when out of memory. */
static int mget_send(rcmd_t *cm, size_t argc, char **argv, size_t *len, Shale__ReadOptions *ro)
{
    Shale__MGetRequest q = SHALE__MGET_REQUEST__INIT;
    q.n_keys = argc - 1;
    q.keys = malloc(q.n_keys * sizeof(*q.keys));
    if (q.keys == NULL || subs_init(cm, 1) != 0) {
        free(q.keys);
        return -1;
    }
    for (size_t i = 1; i < argc; i++)
        q.keys[i - 1] = bin(argv[i], len[i]);
    q.read = ro;
    sub_send(cm, 0, SHALE_MSG_MGET_REQ, &q.base);
    free(q.keys);
    return 0;
}

static int c_mget(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    Shale__ReadOptions ro;
    read_opts(s, &ro);
    cm->fin = fin_mget;
    return mget_send(cm, argc, argv, len, &ro);
}

static int c_exists(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    int ro = s->readonly;
    int rv = c_mget(s, cm, argc, argv, len);
    s->readonly = ro;
    return rv;
}

/* The keys argv[first], argv[first+step], ... all in one slot? 1 yes, 0 no,
 * -1 no map yet. */
static int one_slot(rt_resp_t *s, size_t argc, char **argv, size_t *len, size_t first,
                    size_t step)
{
    uint32_t n = s->r->route.slots;
    if (s->r->route.map == NULL || n == 0)
        return -1;
    uint32_t slot = shale_key_slot(argv[first], len[first], n);
    for (size_t i = first + step; i < argc; i += step)
        if (shale_key_slot(argv[i], len[i], n) != slot)
            return 0;
    return 1;
}

static void no_map(rt_resp_t *s, rcmd_t *cm)
{
    resp_add_errorf(&cm->out, "CLUSTERDOWN no cluster map yet (meta group %.180s)",
                    s->r->cfg.meta);
}

static void fin_ok_txn(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) == 0)
        resp_add_simple(&cm->out, "OK");
}

static int c_mset(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    if (argc % 2 != 1) {
        resp_add_error(&cm->out, "ERR wrong number of arguments for 'mset' command");
        return 0;
    }
    int os = one_slot(s, argc, argv, len, 1, 2);
    if (os < 0) {
        no_map(s, cm);
        return 0;
    }
    if (os == 0) {
        resp_add_error(&cm->out, "CROSSSLOT Keys in request don't hash to the same slot");
        return 0;
    }
    size_t n = (argc - 1) / 2;
    Shale__TxnOp *ops = calloc(n, sizeof(*ops));
    Shale__TxnOp **pp = calloc(n, sizeof(*pp));
    if (ops == NULL || pp == NULL) {
        free(ops);
        free(pp);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        shale__txn_op__init(&ops[i]);
        ops[i].type = SHALE__TXN_OP_TYPE__TXN_PUT;
        ops[i].key = bin(argv[1 + 2 * i], len[1 + 2 * i]);
        ops[i].has_value = 1;
        ops[i].value = bin(argv[2 + 2 * i], len[2 + 2 * i]);
        pp[i] = &ops[i];
    }
    Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
    Shale__Session ss;
    t.n_success = n;
    t.success = pp;
    cm->fin = fin_ok_txn;
    int rv = send_single(s, cm, SHALE_MSG_TXN_REQ, &t.base, &t.session, &ss);
    free(ops);
    free(pp);
    return rv;
}

/* DEL / UNLINK: keys of one slot in one TXN of deletes (atomic); else one
 * DELETE per key. The reply counts the keys that existed. */
static void fin_del(rcmd_t *cm)
{
    long long n = 0;
    ProtobufCMessage *m;
    if (cm->opt) { /* txn */
        if (sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
            return;
        const Shale__TxnResponse *t = (const Shale__TxnResponse *)m;
        for (size_t i = 0; i < t->n_results; i++)
            n += t->results[i]->has_found && t->results[i]->found;
    } else {
        for (unsigned i = 0; i < cm->nsub; i++) {
            if (sub_answer(cm, i, SHALE_MSG_DEL_RESP, &m) != 0)
                return;
            n += ((const Shale__DeleteResponse *)m)->existed;
        }
    }
    resp_add_int(&cm->out, n);
}

static int c_del(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    size_t n = argc - 1;
    int os = n > 1 ? one_slot(s, argc, argv, len, 1, 1) : 0;
    if (os < 0) {
        no_map(s, cm);
        return 0;
    }
    cm->fin = fin_del;
    Shale__Session ss;
    if (os == 1 && n <= 128) {
        cm->opt = 1;
        Shale__TxnOp *ops = calloc(n, sizeof(*ops));
        Shale__TxnOp **pp = calloc(n, sizeof(*pp));
        if (ops == NULL || pp == NULL || subs_init(cm, 1) != 0) {
            free(ops);
            free(pp);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            shale__txn_op__init(&ops[i]);
            ops[i].type = SHALE__TXN_OP_TYPE__TXN_DELETE;
            ops[i].key = bin(argv[1 + i], len[1 + i]);
            pp[i] = &ops[i];
        }
        Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
        t.n_success = n;
        t.success = pp;
        t.session = session_fill(s, cm, &ss);
        sub_send(cm, 0, SHALE_MSG_TXN_REQ, &t.base);
        free(ops);
        free(pp);
        return 0;
    }
    if (subs_init(cm, (unsigned)n) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        Shale__DeleteRequest d = SHALE__DELETE_REQUEST__INIT;
        d.key = bin(argv[1 + i], len[1 + i]);
        d.session = session_fill(s, cm, &ss);
        sub_send(cm, (unsigned)i, SHALE_MSG_DEL_REQ, &d.base);
    }
    return 0;
}

/* INCR / INCRBY / DECR / DECRBY / APPEND: one TXN op evaluated at apply
 * (TXN_ADD / TXN_APPEND), never a read-then-write here. */
static void fin_incr(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
        return;
    const Shale__TxnResponse *t = (const Shale__TxnResponse *)m;
    const Shale__TxnOpResult *x = t->n_results > 0 ? t->results[0] : NULL;
    if (x == NULL || !x->has_value) {
        resp_add_error(&cm->out, "ERR unexpected answer from the cluster");
        return;
    }
    if (cmd_is(cm, "append")) {
        resp_add_int(&cm->out, (long long)x->value.len);
        return;
    }
    long long v;
    if (!resp_string2ll((const char *)x->value.data, x->value.len, &v)) {
        resp_add_error(&cm->out, "ERR unexpected answer from the cluster");
        return;
    }
    resp_add_int(&cm->out, v);
}

/* The TXN op of INCR / INCRBY / DECR / DECRBY / APPEND (command ci). 0, or
 * 1 with the error written to o. op points into argv. */
static int incr_op(int ci, size_t argc, char **argv, size_t *len, Shale__TxnOp *op, resp_out_t *o)
{
    op->key = bin(argv[1], len[1]);
    if (ci_is(ci, "append")) {
        op->type = SHALE__TXN_OP_TYPE__TXN_APPEND;
        op->has_value = 1;
        op->value = bin(argv[2], len[2]);
        return 0;
    }
    long long d = 1;
    if (argc == 3 && !resp_string2ll(argv[2], len[2], &d)) {
        resp_add_error(o, "ERR value is not an integer or out of range");
        return 1;
    }
    if (ci_is(ci, "decr") || ci_is(ci, "decrby")) {
        if (d == INT64_MIN) {
            resp_add_error(o, "ERR decrement would overflow");
            return 1;
        }
        d = -d;
    }
    op->type = SHALE__TXN_OP_TYPE__TXN_ADD;
    op->has_delta = 1;
    op->delta = d;
    return 0;
}

static int c_incr(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
    Shale__TxnOp op = SHALE__TXN_OP__INIT;
    Shale__TxnOp *succ[1] = {&op};
    Shale__Session ss;
    if (incr_op(cm->ci, argc, argv, len, &op, &cm->out) != 0)
        return 0;
    t.n_success = 1;
    t.success = succ;
    cm->fin = fin_incr;
    return send_single(s, cm, SHALE_MSG_TXN_REQ, &t.base, &t.session, &ss);
}

/* EXPIRE / PEXPIRE / PERSIST: one TXN_EXPIRE (or, for a TTL <= 0, a delete,
 * as Redis) evaluated at apply. */
static void fin_expire(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
        return;
    const Shale__TxnResponse *t = (const Shale__TxnResponse *)m;
    const Shale__TxnOpResult *x = t->n_results > 0 ? t->results[0] : NULL;
    int found = x != NULL && x->has_found && x->found;
    if (cmd_is(cm, "persist"))
        found = found && x->has_had_ttl && x->had_ttl;
    resp_add_int(&cm->out, found);
}

/* The time argument of EXPIRE / PEXPIRE (command ci) in ms: 0, or 1 with
 * the error written to o. */
static int expire_ms(int ci, const char *a, size_t n, long long *ms, resp_out_t *o)
{
    long long v;
    if (!resp_string2ll(a, n, &v)) {
        resp_add_error(o, "ERR value is not an integer or out of range");
        return 1;
    }
    int secs = ci_is(ci, "expire");
    if (secs && (v > (long long)(INT64_MAX / 1000) || v < (long long)(INT64_MIN / 1000))) {
        resp_add_errorf(o, "ERR invalid expire time in '%s' command", cmds[ci].name);
        return 1;
    }
    *ms = secs ? v * 1000 : v;
    return 0;
}

/* The TXN op that gives key the TTL ms: EXPIRE, or for ms <= 0 a delete
 * (as Redis); PERSIST (persist): EXPIRE without a TTL. */
static void expire_op(const char *k, size_t klen, int persist, long long ms, Shale__TxnOp *op)
{
    op->key = bin(k, klen);
    op->type = SHALE__TXN_OP_TYPE__TXN_EXPIRE;
    if (persist)
        return;
    if (ms <= 0) {
        op->type = SHALE__TXN_OP_TYPE__TXN_DELETE;
    } else {
        op->has_ttl_ms = 1;
        op->ttl_ms = (uint64_t)ms > SHALE_TTL_MAX_MS ? SHALE_TTL_MAX_MS : (uint64_t)ms;
    }
}

/* EXPIRE's options, as Redis 7 checks them. 0 with *flags, or 1 with the
 * error written to o. */
enum { EXP_NX = 1, EXP_XX = 2, EXP_GT = 4, EXP_LT = 8 };
static int expire_flags(size_t argc, char **argv, size_t *len, int *flags, resp_out_t *o)
{
    int f = 0;
    for (size_t i = 3; i < argc; i++) {
        if (arg_is(argv[i], len[i], "nx"))
            f |= EXP_NX;
        else if (arg_is(argv[i], len[i], "xx"))
            f |= EXP_XX;
        else if (arg_is(argv[i], len[i], "gt"))
            f |= EXP_GT;
        else if (arg_is(argv[i], len[i], "lt"))
            f |= EXP_LT;
        else {
            resp_add_errorf(o, "ERR Unsupported option %.64s", argv[i]);
            return 1;
        }
    }
    if ((f & EXP_NX) && (f & (EXP_XX | EXP_GT | EXP_LT))) {
        resp_add_error(o, "ERR NX and XX, GT or LT options at the same time are not compatible");
        return 1;
    }
    if ((f & EXP_GT) && (f & EXP_LT)) {
        resp_add_error(o, "ERR GT and LT options at the same time are not compatible");
        return 1;
    }
    *flags = f;
    return 0;
}

/* EXPIRE / PEXPIRE with NX / XX / GT / LT: atomic without a TTL compare in
 * TXN. Round 1 reads the key (linearizable: its version and TTL); if the
 * option holds, round 2 is one TXN "version unchanged → EXPIRE" (or a
 * delete for a TTL <= 0); a failed compare (the key changed between) reads
 * again, at most EXPIRE_TRIES times. An option that does not hold answers 0
 * at the read's point: never a read-then-blind-write. */
#define EXPIRE_TRIES 16

static void expire_read(rcmd_t *cm)
{
    Shale__GetRequest q = SHALE__GET_REQUEST__INIT;
    q.key = bin(cm->key, cm->klen);
    send_round(cm, SHALE_MSG_GET_REQ, &q.base);
}

static void fin_expire_opt(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (cm->round % 2 == 1) { /* the TXN's answer (rounds: read, txn, read, ...) */
        if (sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
            return;
        if (((const Shale__TxnResponse *)m)->succeeded) {
            resp_add_int(&cm->out, 1);
        } else if (cm->round + 1 >= 2 * EXPIRE_TRIES) {
            resp_add_errorf(&cm->out, "TRYAGAIN the key kept changing during %s (%d attempts)",
                            cmds[cm->ci].name, EXPIRE_TRIES);
        } else {
            expire_read(cm);
        }
        return;
    }
    if (sub_answer(cm, 0, SHALE_MSG_GET_RESP, &m) != 0)
        return;
    const Shale__GetResponse *g = (const Shale__GetResponse *)m;
    if (!g->found) {
        resp_add_int(&cm->out, 0);
        return;
    }
    int f = cm->opt, has = g->has_expires_in_ms;
    long long cur = has ? (long long)g->expires_in_ms : 0, ms = cm->arg_ms;
    int ok = (!(f & EXP_NX) || !has) && (!(f & EXP_XX) || has) &&
             (!(f & EXP_GT) || (has && ms > cur)) && (!(f & EXP_LT) || !has || ms < cur);
    if (!ok) {
        resp_add_int(&cm->out, 0);
        return;
    }
    Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
    Shale__TxnCompare cmp = SHALE__TXN_COMPARE__INIT;
    Shale__TxnCompare *cmps[1] = {&cmp};
    Shale__TxnOp op = SHALE__TXN_OP__INIT;
    Shale__TxnOp *succ[1] = {&op};
    Shale__Session ss;
    cmp.key = bin(cm->key, cm->klen);
    cmp.target = SHALE__TXN_TARGET__TXN_VERSION;
    cmp.op = SHALE__TXN_COMPARE_OP__TXN_EQUAL;
    cmp.has_version = 1;
    cmp.version = g->version;
    t.n_compares = 1;
    t.compares = cmps;
    expire_op(cm->key, cm->klen, 0, ms, &op);
    t.n_success = 1;
    t.success = succ;
    t.session = session_fill(cm->s, cm, &ss);
    sub_again(cm, SHALE_MSG_TXN_REQ, &t.base);
}

static int c_expire(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
    Shale__TxnOp op = SHALE__TXN_OP__INIT;
    Shale__TxnOp *succ[1] = {&op};
    Shale__Session ss;
    long long ms = 0;
    int persist = cmd_is(cm, "persist");
    if (!persist && expire_ms(cm->ci, argv[2], len[2], &ms, &cm->out) != 0)
        return 0;
    if (argc > 3) {
        if (expire_flags(argc, argv, len, &cm->opt, &cm->out) != 0)
            return 0;
        cm->key = malloc(len[1] + 1);
        if (cm->key == NULL)
            return -1;
        memcpy(cm->key, argv[1], len[1]);
        cm->klen = len[1];
        cm->arg_ms = ms;
        cm->fin = fin_expire_opt;
        cm->round = 0;
        Shale__GetRequest q = SHALE__GET_REQUEST__INIT;
        q.key = bin(cm->key, cm->klen);
        return send_round(cm, SHALE_MSG_GET_REQ, &q.base);
    }
    expire_op(argv[1], len[1], persist, ms, &op);
    t.n_success = 1;
    t.success = succ;
    cm->fin = fin_expire;
    return send_single(s, cm, SHALE_MSG_TXN_REQ, &t.base, &t.session, &ss);
}

/* DBSIZE: the sum of the groups' key estimates (RocksDB's estimate:
 * approximate), one STATUS to a member of each group. */
typedef struct dbsz_call {
    rcmd_t *cm;
    size_t i;
} dbsz_call_t;

static void on_dbsize(void *ud, int status, int written, uint16_t type, const uint8_t *payload,
                      size_t len, const char *errmsg)
{
    (void)written, (void)errmsg;
    dbsz_call_t *dc = ud;
    rcmd_t *cm = dc->cm;
    cm->calls[dc->i] = NULL;
    free(dc);
    Shale__StatusResponse *st = NULL;
    if (status == 0 && type == SHALE_MSG_STATUS_RESP)
        st = (Shale__StatusResponse *)wire_unpack(type, payload, len);
    if (st != NULL) {
        cm->keys += st->keys_estimate;
        protobuf_c_message_free_unpacked(&st->base, NULL);
    } else {
        cm->calls_failed = 1;
    }
    if (--cm->calls_left > 0)
        return;
    if (cm->calls_failed)
        resp_add_error(&cm->out, "CLUSTERDOWN a shard group did not answer STATUS");
    else
        resp_add_int(&cm->out, (long long)cm->keys);
    rt_resp_t *s = cm->s;
    cmd_done(cm);
    flush_done(s);
    if (s->blocked)
        rt_cconn_kick(s->c);
}

static int c_dbsize(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc, (void)argv, (void)len;
    rt_router_t *r = s->r;
    if (r->route.map == NULL || r->route.ngroups == 0) {
        no_map(s, cm);
        return 0;
    }
    cm->calls = calloc(r->route.ngroups, sizeof(*cm->calls));
    if (cm->calls == NULL)
        return -1;
    cm->ncalls = r->route.ngroups;
    cm->calls_left = r->route.ngroups + 1; /* +1: until every call is sent */
    for (size_t g = 0; g < r->route.ngroups; g++) {
        rt_group_t *gr = &r->route.groups[g];
        const char *addr = gr->leader[0] != '\0' ? gr->leader
                           : gr->nmembers > 0   ? gr->members[0].addr
                                                : NULL;
        dbsz_call_t *dc = malloc(sizeof(*dc));
        uint8_t *f = addr != NULL ? frame_build(SHALE_MSG_STATUS_REQ, 0, NULL, 0) : NULL;
        char err[160];
        if (dc != NULL && f != NULL) {
            dc->cm = cm;
            dc->i = g;
            cm->calls[g] = rt_up_send(r, addr, f, FRAME_HEADER_SIZE, on_dbsize, dc, err,
                                      sizeof(err));
            if (cm->calls[g] != NULL)
                continue;
        } else {
            free(f);
        }
        free(dc);
        cm->calls_failed = 1;
        cm->calls_left--;
    }
    if (--cm->calls_left > 0)
        return 1; /* answered by on_dbsize */
    if (cm->calls_failed)
        resp_add_error(&cm->out, "CLUSTERDOWN a shard group did not answer STATUS");
    else
        resp_add_int(&cm->out, (long long)cm->keys);
    return 0;
}

/* ---- SCAN and KEYS ------------------------------------------------------------------------*/

/* The cluster walk of SCAN / KEYS: the native SCAN of one slot page at a
 * time (docs/consistency.md, "Scans"), from (slot, after) on. A MATCH's
 * literal prefix goes to the nodes (each slot is in key order, so they
 * read only that range); a prefix with a hash tag is one slot; the rest
 * of the pattern is matched here. */
#define SCAN_PAGE_MAX 1000        /* a node's page cap */
#define SCAN_SLOTS_PER_CALL 256   /* SCAN: slots one call may walk */
#define SCAN_CURSORS 16384        /* cursors a router keeps... */
#define SCAN_CURSOR_TTL_MS 600000 /* ...each for 10 minutes */

typedef struct scan_st {
    int keys_cmd; /* KEYS: the whole walk in one reply, no cursor */
    char *pat;    /* MATCH (NULL: every key) */
    size_t plen, prefix_len;
    int tagged; /* the prefix names one slot */
    int none;   /* TYPE other than string: nothing matches */
    long long count;
    uint32_t slot, nslots, walked;
    char *after;
    size_t alen;
    long long examined;
    char **keys;
    size_t *klen, nkeys, cap;
} scan_st_t;

static void scan_free(scan_st_t *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->nkeys; i++)
        free(st->keys[i]);
    free(st->keys);
    free(st->klen);
    free(st->pat);
    free(st->after);
    free(st);
}

static int scan_keep(scan_st_t *st, const uint8_t *k, size_t n)
{
    if (st->nkeys == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        char **nk = realloc(st->keys, cap * sizeof(*nk));
        if (nk == NULL)
            return -1;
        st->keys = nk;
        size_t *nl = realloc(st->klen, cap * sizeof(*nl));
        if (nl == NULL)
            return -1;
        st->klen = nl;
        st->cap = cap;
    }
    char *c = malloc(n ? n : 1);
    if (c == NULL)
        return -1;
    memcpy(c, k, n);
    st->keys[st->nkeys] = c;
    st->klen[st->nkeys++] = n;
    return 0;
}

static int scan_set_after(scan_st_t *st, const uint8_t *k, size_t n)
{
    free(st->after);
    st->after = NULL;
    st->alen = 0;
    if (n == 0)
        return 0;
    st->after = malloc(n);
    if (st->after == NULL)
        return -1;
    memcpy(st->after, k, n);
    st->alen = n;
    return 0;
}

static int scan_send(rcmd_t *cm)
{
    scan_st_t *st = cm->scan;
    Shale__ScanRequest q = SHALE__SCAN_REQUEST__INIT;
    Shale__ReadOptions ro;
    read_opts(cm->s, &ro);
    q.slot = st->slot;
    if (st->alen > 0) {
        q.has_start_after = 1;
        q.start_after = bin(st->after, st->alen);
    }
    if (st->prefix_len > 0) {
        q.has_prefix = 1;
        q.prefix = bin(st->pat, st->prefix_len);
    }
    long long want = st->keys_cmd ? SCAN_PAGE_MAX : st->count - st->examined;
    q.has_limit = 1;
    q.limit = (uint32_t)(want < 1 ? 1 : want > SCAN_PAGE_MAX ? SCAN_PAGE_MAX : want);
    q.has_keys_only = 1;
    q.keys_only = 1;
    q.read = &ro;
    return send_round(cm, SHALE_MSG_SCAN_REQ, &q.base);
}

static void scan_reply(rcmd_t *cm)
{
    scan_st_t *st = cm->scan;
    if (!st->keys_cmd) {
        char cur[32] = "0";
        if (st->slot < st->nslots) {
            rt_router_t *r = cm->s->r;
            uint64_t id =
                rk_cursor_put(&r->resp_cursors, st->slot, st->after, st->alen, uv_now(r->loop));
            if (id == 0) {
                resp_add_error(&cm->out, "ERR out of memory");
                return;
            }
            snprintf(cur, sizeof(cur), "%llu", (unsigned long long)id);
        }
        resp_add_array(&cm->out, 2);
        resp_add_bulk(&cm->out, cur, strlen(cur));
    }
    resp_add_array(&cm->out, st->nkeys);
    for (size_t i = 0; i < st->nkeys; i++)
        resp_add_bulk(&cm->out, st->keys[i], st->klen[i]);
}

static void fin_scan(rcmd_t *cm)
{
    scan_st_t *st = cm->scan;
    ProtobufCMessage *m;
    if (sub_answer(cm, 0, SHALE_MSG_SCAN_RESP, &m) != 0)
        return;
    const Shale__ScanResponse *g = (const Shale__ScanResponse *)m;
    for (size_t i = 0; i < g->n_items; i++) {
        const ProtobufCBinaryData *k = &g->items[i]->key;
        st->examined++;
        if (st->none ||
            (st->pat != NULL && !rk_glob_match(st->pat, st->plen, (const char *)k->data, k->len)))
            continue;
        uint64_t keys_max = cm->s->r->cfg.resp_keys_max;
        if (st->keys_cmd && st->nkeys >= keys_max) {
            resp_add_errorf(&cm->out,
                            "ERR KEYS would return more than %llu keys: use SCAN (docs/resp.md)",
                            (unsigned long long)keys_max);
            return;
        }
        if (scan_keep(st, k->data, k->len) != 0) {
            resp_add_error(&cm->out, "ERR out of memory");
            return;
        }
    }
    if (g->has_slots && g->slots < st->nslots)
        st->nslots = g->slots;
    int rv;
    if (g->more && g->n_items > 0) {
        const ProtobufCBinaryData *last = &g->items[g->n_items - 1]->key;
        rv = scan_set_after(st, last->data, last->len);
    } else {
        rv = scan_set_after(st, NULL, 0);
        st->slot = st->tagged ? st->nslots : st->slot + 1;
    }
    if (rv != 0) {
        resp_add_error(&cm->out, "ERR out of memory");
        return;
    }
    st->walked++;
    if (st->slot < st->nslots &&
        (st->keys_cmd || (st->examined < st->count && st->walked < SCAN_SLOTS_PER_CALL))) {
        scan_send(cm);
        return;
    }
    scan_reply(cm);
}

/* SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]; KEYS pattern. */
static int c_scan(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    rt_router_t *r = s->r;
    scan_st_t *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return -1;
    cm->scan = st;
    st->count = 10;
    const char *pat = NULL;
    size_t plen = 0;
    uint64_t cursor = 0;
    if (cmd_is(cm, "keys")) {
        st->keys_cmd = 1;
        pat = argv[1];
        plen = len[1];
    } else {
        long long v;
        if (!resp_string2ll(argv[1], len[1], &v) || v < 0) {
            resp_add_error(&cm->out, "ERR invalid cursor");
            return 0;
        }
        cursor = (uint64_t)v;
        for (size_t i = 2; i < argc; i += 2) {
            if (i + 1 >= argc) {
                resp_add_error(&cm->out, "ERR syntax error");
                return 0;
            }
            if (arg_is(argv[i], len[i], "count")) {
                if (!resp_string2ll(argv[i + 1], len[i + 1], &st->count)) {
                    resp_add_error(&cm->out, "ERR value is not an integer or out of range");
                    return 0;
                }
                if (st->count < 1) {
                    resp_add_error(&cm->out, "ERR syntax error");
                    return 0;
                }
            } else if (arg_is(argv[i], len[i], "match")) {
                pat = argv[i + 1];
                plen = len[i + 1];
            } else if (arg_is(argv[i], len[i], "type")) {
                st->none = !arg_is(argv[i + 1], len[i + 1], "string");
            } else {
                resp_add_error(&cm->out, "ERR syntax error");
                return 0;
            }
        }
    }
    if (r->route.map == NULL || r->route.slots == 0) {
        no_map(s, cm);
        return 0;
    }
    st->nslots = r->route.slots;
    if (pat != NULL && !(plen == 1 && pat[0] == '*')) {
        st->pat = malloc(plen ? plen : 1);
        if (st->pat == NULL)
            return -1;
        memcpy(st->pat, pat, plen);
        st->plen = plen;
        st->prefix_len = rk_glob_prefix(pat, plen);
        st->tagged = rk_prefix_tagged(pat, st->prefix_len);
    }
    if (cursor == 0) {
        st->slot = st->tagged ? shale_key_slot(st->pat, st->prefix_len, st->nslots) : 0;
    } else {
        if (r->resp_cursors.pos == NULL) {
            resp_add_error(&cm->out, "ERR invalid cursor");
            return 0;
        }
        const char *after;
        size_t alen;
        if (rk_cursor_get(&r->resp_cursors, cursor, uv_now(r->loop), &st->slot, &after, &alen) !=
            0) {
            resp_add_error(&cm->out, "ERR invalid cursor");
            return 0;
        }
        if (scan_set_after(st, (const uint8_t *)after, alen) != 0)
            return -1;
    }
    if (!st->keys_cmd && r->resp_cursors.pos == NULL) {
        uint64_t base;
        if (uv_random(NULL, NULL, &base, sizeof(base), 0, NULL) != 0)
            base = uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32);
        if (rk_cursors_init(&r->resp_cursors, SCAN_CURSORS, SCAN_CURSOR_TTL_MS, base) != 0)
            return -1;
    }
    if (st->slot >= st->nslots || st->none) {
        st->slot = st->nslots; /* done (TYPE other than string: no key is) */
        scan_reply(cm);
        return 0;
    }
    cm->fin = fin_scan;
    return scan_send(cm);
}

/* ---- WATCH / MULTI / EXEC ---------------------------------------------------------------*/

/* A transaction is ONE Shale TXN within one slot (docs/resp.md,
 * "Transactions"): WATCH reads each key's version (linearizable; absent:
 * 0); MULTI starts queueing at the router; each queued command is checked
 * and turned into TXN ops at once (QUEUED, or its error, which aborts the
 * EXEC as Redis does); EXEC sends one TXN whose compares are "each watched
 * key still has its version" and whose success ops are the queued
 * commands' ops, in order, with the connection's session (exactly once).
 * A failed compare is EXEC's null array. All keys must share one slot. */

static void unwatch_all(rt_resp_t *s)
{
    for (size_t i = 0; i < s->nw; i++)
        free(s->w[i].k);
    free(s->w);
    s->w = NULL;
    s->nw = s->capw = 0;
    s->watch_failed = 0;
}

static void multi_reset(rt_resp_t *s)
{
    qcmds_free(s->q, s->nq);
    s->q = NULL;
    s->nq = s->capq = 0;
    s->in_multi = 0;
    s->multi_dirty = 0;
}

/* Is a WATCH of the connection still unanswered? */
static int watch_pending(const rt_resp_t *s)
{
    for (const rt_q_t *n = s->pending.next; n != &s->pending; n = n->next) {
        const rcmd_t *o = rt_q_data(n, rcmd_t, link);
        if (!o->done && cmd_is(o, "watch"))
            return 1;
    }
    return 0;
}

/* The TXN ops of the queued command q (argv[0] is its name): their number
 * in *nops and, when ops is not NULL, the ops (pointing into q->argv). 0, or
 * 1 with the error (why it cannot be queued) written to o. */
static int q_ops(qcmd_t *q, Shale__TxnOp *ops, size_t *nops, resp_out_t *o)
{
    char **argv = q->a.argv;
    size_t *len = q->a.len, argc = q->a.argc, n = 0;
    int ci = q->ci;
    Shale__TxnOp scratch = SHALE__TXN_OP__INIT;
#define OP() (ops != NULL ? &ops[n++] : (n++, &scratch))
    if (ci_is(ci, "get") || ci_is(ci, "strlen") || ci_is(ci, "type") || ci_is(ci, "mget") ||
        ci_is(ci, "exists") || ci_is(ci, "getset") || ci_is(ci, "getdel")) {
        size_t last = ci_is(ci, "mget") || ci_is(ci, "exists") ? argc - 1 : 1;
        for (size_t i = 1; i <= last; i++) {
            Shale__TxnOp *op = OP();
            op->type = SHALE__TXN_OP_TYPE__TXN_GET;
            op->key = bin(argv[i], len[i]);
        }
        if (ci_is(ci, "getset") || ci_is(ci, "getdel")) {
            Shale__TxnOp *op = OP();
            op->key = bin(argv[1], len[1]);
            op->type =
                ci_is(ci, "getdel") ? SHALE__TXN_OP_TYPE__TXN_DELETE : SHALE__TXN_OP_TYPE__TXN_PUT;
            if (ci_is(ci, "getset")) {
                op->has_value = 1;
                op->value = bin(argv[2], len[2]);
            }
        }
    } else if (ci_is(ci, "set")) {
        long long ttl;
        if (set_parse(argc, argv, len, &q->opt, &ttl, o) != 0)
            return 1;
        if (q->opt & (SET_NX | SET_XX)) {
            resp_add_error(o, "ERR SET NX/XX cannot be queued in a Shale transaction: WATCH the "
                              "key instead (docs/resp.md)");
            return 1;
        }
        if (q->opt & SET_GET) {
            Shale__TxnOp *op = OP();
            op->type = SHALE__TXN_OP_TYPE__TXN_GET;
            op->key = bin(argv[1], len[1]);
        }
        Shale__TxnOp *op = OP();
        op->key = bin(argv[1], len[1]);
        if (q->opt & SET_PAST) {
            op->type = SHALE__TXN_OP_TYPE__TXN_DELETE;
        } else {
            op->type = SHALE__TXN_OP_TYPE__TXN_PUT;
            op->has_value = 1;
            op->value = bin(argv[2], len[2]);
            if (q->opt & SET_TTL) {
                op->has_ttl_ms = 1;
                op->ttl_ms = (uint64_t)ttl;
            }
            if (q->opt & SET_KEEPTTL) {
                op->has_keep_ttl = 1;
                op->keep_ttl = 1;
            }
        }
    } else if (ci_is(ci, "mset") || ci_is(ci, "del") || ci_is(ci, "unlink")) {
        int mset = ci_is(ci, "mset");
        if (mset && argc % 2 != 1) {
            resp_add_error(o, "ERR wrong number of arguments for 'mset' command");
            return 1;
        }
        for (size_t i = 1; i < argc; i += mset ? 2 : 1) {
            Shale__TxnOp *op = OP();
            op->key = bin(argv[i], len[i]);
            op->type = mset ? SHALE__TXN_OP_TYPE__TXN_PUT : SHALE__TXN_OP_TYPE__TXN_DELETE;
            if (mset) {
                op->has_value = 1;
                op->value = bin(argv[i + 1], len[i + 1]);
            }
        }
    } else if (ci_is(ci, "incr") || ci_is(ci, "incrby") || ci_is(ci, "decr") ||
               ci_is(ci, "decrby") || ci_is(ci, "append")) {
        if (incr_op(ci, argc, argv, len, OP(), o) != 0)
            return 1;
    } else if (ci_is(ci, "expire") || ci_is(ci, "pexpire") || ci_is(ci, "persist")) {
        long long ms = 0;
        int persist = ci_is(ci, "persist");
        if (!persist && argc > 3) {
            resp_add_error(o, "ERR EXPIRE options cannot be queued in a Shale transaction: WATCH "
                              "the key instead (docs/resp.md)");
            return 1;
        }
        if (!persist && expire_ms(ci, argv[2], len[2], &ms, o) != 0)
            return 1;
        expire_op(argv[1], len[1], persist, ms, OP());
    } else if (!ci_is(ci, "unwatch")) {
        resp_add_errorf(o, "ERR '%s' cannot be queued in a Shale transaction (docs/resp.md)",
                        cmds[ci].name);
        return 1;
    }
#undef OP
    *nops = n;
    return 0;
}

/* Queue a command after MULTI (a copy): QUEUED, or its error (the
 * transaction then aborts at EXEC). -1 when out of memory. */
static int multi_queue(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    if (s->nq == s->capq) {
        size_t cap = s->capq ? s->capq * 2 : 8;
        qcmd_t *nq = realloc(s->q, cap * sizeof(*nq));
        if (nq == NULL)
            return -1;
        s->q = nq;
        s->capq = cap;
    }
    qcmd_t *q = &s->q[s->nq];
    memset(q, 0, sizeof(*q));
    q->ci = cm->ci;
    int rv = argv_copy(&q->a, argc, (const char *const *)argv, len);
    s->nq++; /* freed with the queue even when half made */
    if (rv != 0)
        return -1;
    size_t n;
    if (q_ops(q, NULL, &n, &cm->out) != 0) {
        s->multi_dirty = 1;
        return 0;
    }
    resp_add_simple(&cm->out, "QUEUED");
    return 0;
}

/* MULTI, DISCARD, UNWATCH. */
static int c_multi(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc, (void)argv, (void)len;
    if (cmd_is(cm, "multi")) {
        if (s->in_multi) {
            resp_add_error(&cm->out, "ERR MULTI calls can not be nested");
            return 0;
        }
        s->in_multi = 1;
    } else if (cmd_is(cm, "discard")) {
        if (!s->in_multi) {
            resp_add_error(&cm->out, "ERR DISCARD without MULTI");
            return 0;
        }
        multi_reset(s);
        unwatch_all(s);
    } else {
        unwatch_all(s);
    }
    resp_add_simple(&cm->out, "OK");
    return 0;
}

static void fin_watch(rcmd_t *cm)
{
    rt_resp_t *s = cm->s;
    ProtobufCMessage *m;
    if (sub_answer(cm, 0, SHALE_MSG_MGET_RESP, &m) != 0) {
        s->watch_failed = 1; /* EXEC then answers as if a key changed */
        return;
    }
    const Shale__MGetResponse *g = (const Shale__MGetResponse *)m;
    for (size_t i = 0; i < g->n_items; i++) {
        const Shale__KeyValue *kv = g->items[i];
        if (kv->error != NULL) {
            s->watch_failed = 1;
            add_shale_error(&cm->out, -(int)kv->error->code, kv->error->message);
            return;
        }
    }
    if (s->nw + g->n_items > s->capw) {
        size_t cap = (s->nw + g->n_items) * 2;
        wkey_t *nw = realloc(s->w, cap * sizeof(*nw));
        if (nw == NULL) {
            s->watch_failed = 1;
            resp_add_error(&cm->out, "ERR out of memory");
            return;
        }
        s->w = nw;
        s->capw = cap;
    }
    for (size_t i = 0; i < g->n_items; i++) {
        const Shale__KeyValue *kv = g->items[i];
        wkey_t *w = &s->w[s->nw];
        w->k = malloc(kv->key.len ? kv->key.len : 1);
        if (w->k == NULL) {
            s->watch_failed = 1;
            resp_add_error(&cm->out, "ERR out of memory");
            return;
        }
        memcpy(w->k, kv->key.data, kv->key.len);
        w->n = kv->key.len;
        w->ver = kv->found && kv->has_version ? kv->version : 0;
        s->nw++;
    }
    resp_add_simple(&cm->out, "OK");
}

/* WATCH k...: the keys' versions, read linearizably (one MGET). Inside
 * MULTI it is refused (exec_cmd does not queue it). */
static int c_watch(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    if (s->in_multi) {
        resp_add_error(&cm->out, "ERR WATCH inside MULTI is not allowed");
        return 0;
    }
    cm->fin = fin_watch;
    return mget_send(cm, argc, argv, len, NULL); /* linearizable */
}

/* EXEC's keys for the ordering of pipelined commands: the watched ones and
 * every queued command's. */
static int exec_keys(rt_resp_t *s, rcmd_t *cm)
{
    size_t n = s->nw;
    for (size_t i = 0; i < s->nq; i++)
        n += s->q[i].a.argc;
    cm->write = 1;
    if (n == 0)
        return 0;
    cm->keyh = malloc(n * sizeof(*cm->keyh));
    if (cm->keyh == NULL)
        return -1;
    for (size_t i = 0; i < s->nw; i++)
        cm->keyh[cm->nkeys++] = shale_hash64(s->w[i].k, s->w[i].n, 0x5e5e);
    for (size_t i = 0; i < s->nq; i++) {
        const held_t *a = &s->q[i].a;
        size_t first, last, step;
        if (!key_range(&cmds[s->q[i].ci], a->argc, &first, &last, &step))
            continue;
        for (size_t j = first; j <= last; j += step)
            cm->keyh[cm->nkeys++] = shale_hash64(a->argv[j], a->len[j], 0x5e5e);
    }
    return 0;
}

static void bulk_or_null(resp_out_t *o, const Shale__TxnOpResult *x)
{
    if (x->has_found && x->found)
        resp_add_bulk(o, x->has_value ? x->value.data : (const uint8_t *)"",
                      x->has_value ? x->value.len : 0);
    else
        resp_add_null(o);
}

/* The Redis reply of queued command q from its TXN results r[0..q->nops). */
static void q_reply(resp_out_t *o, const qcmd_t *q, Shale__TxnOpResult **r)
{
    int ci = q->ci;
    long long n = 0;
    if (ci_is(ci, "get") || ci_is(ci, "getset") || ci_is(ci, "getdel") ||
        (ci_is(ci, "set") && (q->opt & SET_GET))) {
        bulk_or_null(o, r[0]);
    } else if (ci_is(ci, "strlen")) {
        resp_add_int(o, r[0]->found && r[0]->has_value ? (long long)r[0]->value.len : 0);
    } else if (ci_is(ci, "type")) {
        resp_add_simple(o, r[0]->found ? "string" : "none");
    } else if (ci_is(ci, "mget")) {
        resp_add_array(o, q->nops);
        for (size_t i = 0; i < q->nops; i++)
            bulk_or_null(o, r[i]);
    } else if (ci_is(ci, "exists") || ci_is(ci, "del") || ci_is(ci, "unlink")) {
        for (size_t i = 0; i < q->nops; i++)
            n += r[i]->has_found && r[i]->found;
        resp_add_int(o, n);
    } else if (ci_is(ci, "append")) {
        resp_add_int(o, r[0]->has_value ? (long long)r[0]->value.len : 0);
    } else if (ci_is(ci, "incr") || ci_is(ci, "incrby") || ci_is(ci, "decr") ||
               ci_is(ci, "decrby")) {
        if (r[0]->has_value && resp_string2ll((const char *)r[0]->value.data, r[0]->value.len, &n))
            resp_add_int(o, n);
        else
            resp_add_error(o, "ERR unexpected answer from the cluster");
    } else if (ci_is(ci, "expire") || ci_is(ci, "pexpire") || ci_is(ci, "persist")) {
        int found = r[0]->has_found && r[0]->found;
        if (ci_is(ci, "persist"))
            found = found && r[0]->has_had_ttl && r[0]->had_ttl;
        resp_add_int(o, found);
    } else { /* set, mset, unwatch */
        resp_add_simple(o, "OK");
    }
}

static void fin_exec(rcmd_t *cm)
{
    ProtobufCMessage *m;
    if (sub_answer(cm, 0, SHALE_MSG_TXN_RESP, &m) != 0)
        return;
    const Shale__TxnResponse *t = (const Shale__TxnResponse *)m;
    if (!t->succeeded) {
        resp_add_null_array(&cm->out); /* a watched key changed */
        return;
    }
    size_t need = cm->nq > 0 ? cm->q[cm->nq - 1].op0 + cm->q[cm->nq - 1].nops : 0;
    if (t->n_results < need) {
        resp_add_error(&cm->out, "ERR unexpected answer from the cluster");
        return;
    }
    resp_add_array(&cm->out, cm->nq);
    for (size_t i = 0; i < cm->nq; i++)
        q_reply(&cm->out, &cm->q[i], t->results + cm->q[i].op0);
}

/* The slot of every watched and queued key: 1 one slot, 0 several, -1 no
 * map. */
static int exec_one_slot(rt_resp_t *s, const qcmd_t *q, size_t nq)
{
    uint32_t n = s->r->route.slots;
    if (s->r->route.map == NULL || n == 0)
        return -1;
    int have = 0;
    uint32_t slot = 0;
    for (size_t i = 0; i < s->nw; i++) {
        uint32_t k = shale_key_slot(s->w[i].k, s->w[i].n, n);
        if (have && k != slot)
            return 0;
        slot = k;
        have = 1;
    }
    for (size_t i = 0; i < nq; i++) {
        const held_t *a = &q[i].a;
        size_t first, last, step;
        if (!key_range(&cmds[q[i].ci], a->argc, &first, &last, &step))
            continue;
        for (size_t j = first; j <= last; j += step) {
            uint32_t k = shale_key_slot(a->argv[j], a->len[j], n);
            if (have && k != slot)
                return 0;
            slot = k;
            have = 1;
        }
    }
    return 1;
}

/* EXEC's one TXN: compares on the watched versions, the queued commands'
 * ops (cm->q; each one's op0 / nops set here). -1 when out of memory. */
static int exec_send(rt_resp_t *s, rcmd_t *cm)
{
    size_t total = 0;
    resp_out_t scratch;
    resp_out_init(&scratch, 2);
    for (size_t i = 0; i < cm->nq; i++) {
        cm->q[i].op0 = total;
        if (q_ops(&cm->q[i], NULL, &cm->q[i].nops, &scratch) != 0) {
            resp_out_free(&scratch);
            resp_add_error(&cm->out, "EXECABORT Transaction discarded because of previous errors.");
            return 0;
        }
        total += cm->q[i].nops;
    }
    if (total == 0 && s->nw == 0) { /* only UNWATCHes queued: nothing to send */
        resp_out_free(&scratch);
        resp_add_array(&cm->out, cm->nq);
        for (size_t i = 0; i < cm->nq; i++)
            q_reply(&cm->out, &cm->q[i], NULL);
        return 0;
    }
    /* Only watches: one get of a watched key, so the TXN has an op. */
    size_t nops = total > 0 ? total : 1;
    Shale__TxnOp *ops = calloc(nops, sizeof(*ops));
    Shale__TxnOp **pp = calloc(nops, sizeof(*pp));
    Shale__TxnCompare *cmp = calloc(s->nw ? s->nw : 1, sizeof(*cmp));
    Shale__TxnCompare **cp = calloc(s->nw ? s->nw : 1, sizeof(*cp));
    int rv = -1;
    if (ops == NULL || pp == NULL || cmp == NULL || cp == NULL)
        goto out;
    for (size_t i = 0; i < nops; i++) {
        shale__txn_op__init(&ops[i]);
        pp[i] = &ops[i];
    }
    int writes = 0;
    for (size_t i = 0; i < cm->nq; i++) {
        size_t n;
        q_ops(&cm->q[i], ops + cm->q[i].op0, &n, &scratch); /* checked above */
    }
    if (total == 0) {
        ops[0].type = SHALE__TXN_OP_TYPE__TXN_GET;
        ops[0].key = bin(s->w[0].k, s->w[0].n);
    }
    for (size_t i = 0; i < nops; i++)
        writes |= ops[i].type != SHALE__TXN_OP_TYPE__TXN_GET;
    for (size_t i = 0; i < s->nw; i++) {
        shale__txn_compare__init(&cmp[i]);
        cmp[i].key = bin(s->w[i].k, s->w[i].n);
        cmp[i].target = SHALE__TXN_TARGET__TXN_VERSION;
        cmp[i].op = SHALE__TXN_COMPARE_OP__TXN_EQUAL;
        cmp[i].has_version = 1;
        cmp[i].version = s->w[i].ver;
        cp[i] = &cmp[i];
    }
    Shale__TxnRequest t = SHALE__TXN_REQUEST__INIT;
    Shale__Session ss;
    t.n_compares = s->nw;
    t.compares = cp;
    t.n_success = nops;
    t.success = pp;
    cm->fin = fin_exec;
    rv = send_single(s, cm, SHALE_MSG_TXN_REQ, &t.base, writes ? &t.session : NULL, &ss);
out:
    resp_out_free(&scratch);
    free(ops);
    free(pp);
    free(cmp);
    free(cp);
    return rv;
}

static int c_exec(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc, (void)argv, (void)len;
    if (!s->in_multi) {
        resp_add_error(&cm->out, "ERR EXEC without MULTI");
        return 0;
    }
    /* The queue is EXEC's now; the connection leaves MULTI and unwatches
     * whatever happens (as Redis). */
    cm->q = s->q;
    cm->nq = s->nq;
    int dirty = s->multi_dirty, failed = s->watch_failed;
    s->q = NULL;
    s->nq = s->capq = 0;
    multi_reset(s);
    int rv = 0;
    if (dirty) {
        resp_add_error(&cm->out, "EXECABORT Transaction discarded because of previous errors.");
    } else if (failed) {
        resp_add_null_array(&cm->out);
    } else if (cm->nq == 0 && s->nw == 0) {
        resp_add_array(&cm->out, 0);
    } else {
        int os = exec_one_slot(s, cm->q, cm->nq);
        if (os < 0)
            no_map(s, cm);
        else if (os == 0)
            resp_add_error(&cm->out, "CROSSSLOT Keys in request don't hash to the same slot");
        else
            rv = exec_send(s, cm);
    }
    unwatch_all(s);
    return rv;
}

/* ---- Dispatch ---------------------------------------------------------------------------*/

static void unknown_command(resp_out_t *o, size_t argc, char **argv, size_t *len)
{
    char args[512];
    size_t n = 0;
    args[0] = '\0';
    for (size_t i = 1; i < argc && n < 128; i++) {
        int room = 128 - (int)n;
        int w = snprintf(args + n, sizeof(args) - n, "'%.*s' ",
                         (int)(len[i] < (size_t)room ? len[i] : (size_t)room), argv[i]);
        if (w < 0)
            break;
        n += (size_t)w;
        if (n >= sizeof(args))
            n = sizeof(args) - 1;
    }
    resp_add_errorf(o, "ERR unknown command '%.128s', with args beginning with: %s", argv[0],
                    args);
}

/* Key hashes of a command (for the ordering of pipelined commands). */
static int cmd_keys(rcmd_t *cm, const cmdspec_t *sp, size_t argc, char **argv, size_t *len)
{
    size_t first, last, step;
    if (!key_range(sp, argc, &first, &last, &step))
        return 0;
    cm->keyh = malloc(((last - first) / step + 1) * sizeof(*cm->keyh));
    if (cm->keyh == NULL)
        return -1;
    for (size_t i = first; i <= last; i += step)
        cm->keyh[cm->nkeys++] = shale_hash64(argv[i], len[i], 0x5e5e);
    return 0;
}

/* Does an unanswered command conflict with cm (a key in common, one of them
 * a write)? */
static int conflicts(rt_resp_t *s, const rcmd_t *cm)
{
    if (cm->nkeys == 0)
        return 0;
    for (rt_q_t *n = s->pending.next; n != &s->pending; n = n->next) {
        const rcmd_t *o = rt_q_data(n, rcmd_t, link);
        if (o->done || o->nkeys == 0 || (!o->write && !cm->write))
            continue;
        for (size_t i = 0; i < cm->nkeys; i++)
            for (size_t j = 0; j < o->nkeys; j++)
                if (cm->keyh[i] == o->keyh[j])
                    return 1;
    }
    return 0;
}

enum { EXEC_DONE = 0, EXEC_BLOCKED = 1 };

/* Run one command. EXEC_BLOCKED: it must wait (nothing done; the caller
 * keeps it). */
static int exec_cmd(rt_resp_t *s, size_t argc, char **argv, size_t *len)
{
    rcmd_t *cm = calloc(1, sizeof(*cm));
    if (cm == NULL)
        return -1;
    cm->s = s;
    resp_out_init(&cm->out, s->proto);
    int k = find_cmd(argv[0], len[0]);
    cm->ci = k;
    /* After MULTI every command but the transaction's own is queued. */
    int ctl = k >= 0 && (cmd_is(cm, "exec") || cmd_is(cm, "discard") || cmd_is(cm, "multi") ||
                         cmd_is(cm, "watch") || cmd_is(cm, "quit"));
    int queue = s->in_multi && !ctl;
    if (k >= 0 && !queue) {
        const cmdspec_t *sp = &cmds[k];
        cm->write = (sp->flags & F_WRITE) != 0;
        int rv = cmd_is(cm, "exec") ? exec_keys(s, cm) : cmd_keys(cm, sp, argc, argv, len);
        if (rv != 0) {
            cmd_free(cm);
            return -1;
        }
        /* EXEC, UNWATCH, DISCARD need the versions of earlier WATCHes. */
        if (conflicts(s, cm) ||
            ((cmd_is(cm, "exec") || cmd_is(cm, "unwatch") || cmd_is(cm, "discard")) &&
             watch_pending(s))) {
            cmd_free(cm);
            return EXEC_BLOCKED;
        }
    }
    rt_q_push(&s->pending, &cm->link);
    s->npending++;
    g_resp_calls[k >= 0 ? (size_t)k : NCMDS]++;
    cm->counted = 1;
    if (k < 0) {
        unknown_command(&cm->out, argc, argv, len);
        s->multi_dirty |= queue;
    } else if ((cmds[k].arity > 0 && argc != (size_t)cmds[k].arity) ||
               (cmds[k].arity < 0 && argc < (size_t)-cmds[k].arity)) {
        resp_add_errorf(&cm->out, "ERR wrong number of arguments for '%s' command",
                        cmds[k].name);
        s->multi_dirty |= queue;
    } else if (s->r->cfg.auth && !s->authed && !(cmds[k].flags & F_NOAUTH)) {
        resp_add_error(&cm->out, "NOAUTH Authentication required.");
        s->multi_dirty |= queue;
    } else if (queue) {
        if (multi_queue(s, cm, argc, argv, len) < 0) {
            resp_out_reset(&cm->out);
            resp_add_error(&cm->out, "ERR out of memory");
            s->multi_dirty = 1;
        }
    } else {
        cm->in_fin = 1; /* an answer that comes at once waits for fn */
        int rv = cmds[k].fn(s, cm, argc, argv, len);
        cm->in_fin = 0;
        if (rv < 0 && cm->nsub == 0)
            resp_add_error(&cm->out, "ERR out of memory");
        if (cm->nsub > 0 && cm->nleft == 0) {
            run_fin(cm); /* answered at once */
            if (cm->again)
                return EXEC_DONE;
        } else if (cm->nsub > 0 || s->login_cmd == cm || rv == 1) {
            return EXEC_DONE; /* answered through rt_resp_answer / the login / DBSIZE */
        }
    }
    cmd_done(cm);
    return EXEC_DONE;
}

static void held_free(rt_resp_t *s)
{
    if (!s->has_held)
        return;
    argv_release(&s->held);
    s->has_held = 0;
}

static int held_keep(rt_resp_t *s, const resp_cmd_t *c)
{
    s->has_held = 1;
    return argv_copy(&s->held, c->argc, c->argv, c->argvlen);
}

/* ---- Interface with client_conn.c -------------------------------------------------------*/

rt_resp_t *rt_resp_new(rt_router_t *r, rt_cconn_t *c)
{
    rt_resp_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->r = r;
    s->c = c;
    s->proto = 2;
    s->id = ++g_resp_ids;
    s->next_id = 1;
    rt_q_init(&s->pending);
    rt_idmap_init(&s->ids);
    if (uv_random(NULL, NULL, &s->client_id, sizeof(s->client_id), 0, NULL) != 0)
        s->client_id = uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32) ^ s->id;
    if (s->client_id == 0)
        s->client_id = 1;
    resp_limits_t lim;
    if (r->cfg.auth) {
        resp_limits_preauth(&lim);
        resp_parser_init(&s->p, &lim);
    } else {
        resp_limits_default(&lim);
        resp_parser_init(&s->p, &lim);
        set_authed(s);
    }
    return s;
}

void rt_resp_free(rt_resp_t *s)
{
    if (s == NULL)
        return;
    if (s->login != NULL)
        login_cancel(s->login);
    while (!rt_q_empty(&s->pending)) {
        rcmd_t *cm = rt_q_data(s->pending.next, rcmd_t, link);
        rt_q_remove(&cm->link);
        cmd_free(cm);
    }
    held_free(s);
    multi_reset(s);
    unwatch_all(s);
    rt_idmap_free(&s->ids);
    resp_parser_free(&s->p);
    free(s);
}

int rt_resp_login_pending(const rt_resp_t *s)
{
    return s->login != NULL;
}

void rt_resp_cancel_login(rt_resp_t *s)
{
    if (s->login != NULL) {
        login_cancel(s->login);
        s->login = NULL;
        s->login_cmd = NULL;
        rt_cconn_request_done(s->c);
    }
}

int rt_resp_feed(rt_resp_t *s, const uint8_t *p, size_t n)
{
    if (s->failed || s->quit)
        return 0;
    return resp_parser_feed(&s->p, p, n) == 0 ? 0 : -1;
}

int rt_resp_drive(rt_resp_t *s)
{
    int rv = RT_RESP_IDLE;
    for (;;) {
        if (s->failed || s->quit) {
            rv = RT_RESP_IDLE;
            break;
        }
        if (s->blocked && s->login != NULL) {
            rv = RT_RESP_WAITING;
            break;
        }
        s->blocked = 0;
        if (!rt_cconn_can_take(s->c)) {
            rv = RT_RESP_PAUSED;
            break;
        }
        if (s->npending >= s->r->cfg.conn_max_inflight) {
            /* Replies held for order: the next completion kicks. */
            s->blocked = 1;
            rv = RT_RESP_WAITING;
            break;
        }
        if (s->has_held) {
            int e = exec_cmd(s, s->held.argc, s->held.argv, s->held.len);
            if (e == EXEC_BLOCKED) {
                s->blocked = 1;
                rv = RT_RESP_WAITING;
                break;
            }
            held_free(s);
            continue;
        }
        resp_cmd_t c;
        int pr = resp_parser_next(&s->p, &c);
        if (pr == 0) {
            rv = RT_RESP_IDLE;
            break;
        }
        if (pr < 0) {
            rcmd_t *cm = calloc(1, sizeof(*cm));
            s->failed = 1;
            if (cm == NULL || pr == RESP_ENOMEM) {
                free(cm);
                rt_cconn_close_after_flush(s->c);
                break;
            }
            rt_warn("RESP protocol error", " peer=%s err=\"%s\"", rt_cconn_peer(s->c),
                    resp_parser_error(&s->p));
            cm->s = s;
            cm->ci = -1;
            resp_out_init(&cm->out, s->proto);
            resp_add_error(&cm->out, resp_parser_error(&s->p));
            cm->close_after = 1;
            cmd_done(cm);
            rt_q_push(&s->pending, &cm->link);
            s->npending++;
            rv = RT_RESP_IDLE;
            break;
        }
        int e = exec_cmd(s, c.argc, (char **)c.argv, (size_t *)c.argvlen);
        if (e == EXEC_BLOCKED) {
            if (held_keep(s, &c) != 0) {
                held_free(s);
                s->failed = 1;
                rt_cconn_close_after_flush(s->c);
                break;
            }
            s->blocked = 1;
            rv = RT_RESP_WAITING;
            break;
        }
        if (e < 0) {
            s->failed = 1;
            rt_cconn_close_after_flush(s->c);
            break;
        }
    }
    flush_done(s);
    return rv;
}

void rt_resp_answer(rt_resp_t *s, uint8_t *frame, size_t len)
{
    frame_hdr_t h;
    if (len < FRAME_HEADER_SIZE || frame_hdr_parse(frame, UINT32_MAX, &h) != 0) {
        free(frame);
        return;
    }
    rcmd_t *cm = rt_idmap_del(&s->ids, h.id);
    if (cm == NULL || h.id < cm->base_id || h.id - cm->base_id >= cm->nsub) {
        free(frame);
        return;
    }
    unsigned i = (unsigned)(h.id - cm->base_id);
    cm->atype[i] = h.type;
    cm->ans[i] = wire_unpack(h.type, frame + FRAME_HEADER_SIZE,
                             len - FRAME_HEADER_SIZE < h.len ? len - FRAME_HEADER_SIZE : h.len);
    free(frame);
    if (--cm->nleft > 0 || cm->in_fin)
        return; /* in_fin: run_fin takes it when fin returns */
    run_fin(cm);
    if (cm->again)
        return;
    cmd_done(cm);
    flush_done(s);
    if (s->blocked)
        rt_cconn_kick(s->c);
}
