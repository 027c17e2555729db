/* The Redis protocol (RESP2/RESP3) on shale-router's --resp port
 * (docs/resp.md, issue 15).
 *
 * What this file owns: one rt_resp_t per RESP connection — its parser
 * (resp.c), its protocol version, name, READONLY flag, session identity
 * (client_id, seq, ack_floor) for exactly-once writes — the command table
 * and its per-command counts, the dispatch of each parsed command, the
 * native requests a command sends (several rounds for the SCAN / KEYS walk
 * and EXPIRE with an option) and the replies' order. What each command
 * means is in resp_cmd_conn.c (connection and server), resp_cmd_string.c
 * (strings and keys), resp_cmd_scan.c (SCAN, KEYS) and resp_cmd_txn.c
 * (WATCH, MULTI, EXEC); their shared state and helpers are resp_int.h's.
 * The glob and the SCAN cursor table are resp_keyscan.c's.
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
#include "resp_int.h"
#include "router.h"

static uint64_t g_resp_ids;
/* Per command (the table's index; NCMDS: unknown commands): commands
 * received and error replies. INFO's cmdstat and /metrics
 * (shale_router_resp_commands_total, _errors_total) read the same counts. */
uint64_t rr_calls[64], rr_errors[64];

/* ---- Command table ----------------------------------------------------------*/

const cmdspec_t rr_cmds[] = {
    {"ping", -1, F_CONN, 0, 0, 0, rr_c_ping, "connection"},
    {"echo", 2, F_CONN, 0, 0, 0, rr_c_echo, "connection"},
    {"hello", -1, F_CONN | F_NOAUTH, 0, 0, 0, rr_c_hello, "connection"},
    {"auth", -2, F_CONN | F_NOAUTH, 0, 0, 0, rr_c_auth, "connection"},
    {"select", 2, F_CONN, 0, 0, 0, rr_c_select, "connection"},
    {"quit", -1, F_CONN | F_NOAUTH, 0, 0, 0, rr_c_quit, "connection"},
    {"client", -2, F_CONN, 0, 0, 0, rr_c_client, "connection"},
    {"command", -1, F_CONN, 0, 0, 0, rr_c_command, "server"},
    {"info", -1, F_CONN, 0, 0, 0, rr_c_info, "server"},
    {"config", -2, F_CONN, 0, 0, 0, rr_c_config, "server"},
    {"dbsize", 1, F_CONN, 0, 0, 0, rr_c_dbsize, "server"},
    {"wait", 3, F_CONN, 0, 0, 0, rr_c_wait, "generic"},
    {"readonly", 1, F_CONN, 0, 0, 0, rr_c_readonly, "cluster"},
    {"readwrite", 1, F_CONN, 0, 0, 0, rr_c_readwrite, "cluster"},
    {"get", 2, F_READ, 1, 1, 1, rr_c_get, "string"},
    {"strlen", 2, F_READ, 1, 1, 1, rr_c_get, "string"},
    {"type", 2, F_READ, 1, 1, 1, rr_c_get, "generic"},
    {"ttl", 2, F_READ, 1, 1, 1, rr_c_get, "generic"},
    {"pttl", 2, F_READ, 1, 1, 1, rr_c_get, "generic"},
    {"set", -3, F_WRITE, 1, 1, 1, rr_c_set, "string"},
    {"setnx", 3, F_WRITE, 1, 1, 1, rr_c_setnx, "string"},
    {"getset", 3, F_WRITE, 1, 1, 1, rr_c_getset, "string"},
    {"getdel", 2, F_WRITE, 1, 1, 1, rr_c_getdel, "string"},
    {"mget", -2, F_READ, 1, -1, 1, rr_c_mget, "string"},
    {"mset", -3, F_WRITE, 1, -1, 2, rr_c_mset, "string"},
    {"del", -2, F_WRITE, 1, -1, 1, rr_c_del, "generic"},
    {"unlink", -2, F_WRITE, 1, -1, 1, rr_c_del, "generic"},
    {"exists", -2, F_READ, 1, -1, 1, rr_c_exists, "generic"},
    {"expire", -3, F_WRITE, 1, 1, 1, rr_c_expire, "generic"},
    {"pexpire", -3, F_WRITE, 1, 1, 1, rr_c_expire, "generic"},
    {"persist", 2, F_WRITE, 1, 1, 1, rr_c_expire, "generic"},
    {"incr", 2, F_WRITE, 1, 1, 1, rr_c_incr, "string"},
    {"incrby", 3, F_WRITE, 1, 1, 1, rr_c_incr, "string"},
    {"decr", 2, F_WRITE, 1, 1, 1, rr_c_incr, "string"},
    {"decrby", 3, F_WRITE, 1, 1, 1, rr_c_incr, "string"},
    {"append", 3, F_WRITE, 1, 1, 1, rr_c_incr, "string"},
    {"scan", -2, F_READ, 0, 0, 0, rr_c_scan, "generic"},
    {"keys", 2, F_READ, 0, 0, 0, rr_c_scan, "generic"},
    {"watch", -2, F_READ, 1, -1, 1, rr_c_watch, "transactions"},
    {"unwatch", 1, F_CONN, 0, 0, 0, rr_c_multi, "transactions"},
    {"multi", 1, F_CONN, 0, 0, 0, rr_c_multi, "transactions"},
    {"exec", 1, F_CONN, 0, 0, 0, rr_c_exec, "transactions"},
    {"discard", 1, F_CONN, 0, 0, 0, rr_c_multi, "transactions"},
};
#define NCMDS (sizeof(rr_cmds) / sizeof(rr_cmds[0]))
const size_t rr_ncmds = NCMDS;
_Static_assert(NCMDS < sizeof(rr_calls) / sizeof(rr_calls[0]), "room for unknown");

size_t rt_resp_ncmds(void)
{
    return NCMDS;
}

const char *rt_resp_cmd_name(size_t i)
{
    return i < NCMDS ? rr_cmds[i].name : "unknown";
}

void rt_resp_cmd_counts(size_t i, uint64_t *calls, uint64_t *errors)
{
    *calls = i <= NCMDS ? rr_calls[i] : 0;
    *errors = i <= NCMDS ? rr_errors[i] : 0;
}

int rr_ci_is(int ci, const char *name)
{
    return ci >= 0 && strcmp(rr_cmds[ci].name, name) == 0;
}

int rr_cmd_is(const rcmd_t *cm, const char *name)
{
    return rr_ci_is(cm->ci, name);
}

int rr_find_cmd(const char *name, size_t len)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (strlen(rr_cmds[i].name) == len && strncasecmp(rr_cmds[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

int rr_arg_is(const char *a, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(a, word, len) == 0;
}

/* Where the keys of a command of spec sp with argc arguments are: argv[first],
 * argv[first + step], ... up to argv[last]. 0 when it has none. */
int rr_key_range(const cmdspec_t *sp, size_t argc, size_t *first, size_t *last, size_t *step)
{
    if (sp->first == 0 || (size_t)sp->first >= argc)
        return 0;
    *first = (size_t)sp->first;
    *last = sp->last < 0 || (size_t)sp->last >= argc ? argc - 1 : (size_t)sp->last;
    *step = (size_t)sp->step;
    return 1;
}

/* ---- Replies in order ---------------------------------------------------------*/

/* Copy argc arguments into h. -1 when out of memory (h holds what was
 * copied; argv_release frees it either way). */
int rr_argv_copy(held_t *h, size_t argc, const char *const *argv, const size_t *len)
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

void rr_argv_release(held_t *h)
{
    for (size_t i = 0; i < h->argc; i++)
        free(h->argv[i]);
    free(h->argv);
    free(h->len);
    memset(h, 0, sizeof(*h));
}

void rr_qcmds_free(qcmd_t *q, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rr_argv_release(&q[i].a);
    free(q);
}

void rr_cmd_free(rcmd_t *cm)
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
    rr_scan_free(cm->scan);
    free(cm->key);
    rr_qcmds_free(cm->q, cm->nq);
    resp_out_free(&cm->out);
    free(cm);
}

/* Hand every finished reply at the head of the queue to the connection. */
void rr_flush_done(rt_resp_t *s)
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
        rr_cmd_free(cm);
        if (close)
            break;
    }
    if (acc.oom) {
        resp_out_free(&acc);
        rt_error("out of memory building a RESP reply; closing", " peer=%s", rt_cconn_peer(s->c));
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

void rr_cmd_done(rcmd_t *cm)
{
    cm->done = 1;
    if (resp_out_failed(&cm->out)) {
        resp_out_reset(&cm->out);
        cm->out.oom = 0;
        resp_add_error(&cm->out, "ERR out of memory");
    }
    if (cm->counted && cm->out.len > 0 && cm->out.data[0] == '-')
        rr_errors[cm->ci >= 0 ? (size_t)cm->ci : NCMDS]++;
}

/* ---- Shale errors as Redis errors -----------------------------------------------*/

void rr_add_shale_error(resp_out_t *o, int code, const char *msg)
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
int rr_sub_answer(rcmd_t *cm, unsigned i, uint16_t want, ProtobufCMessage **m)
{
    *m = cm->ans[i];
    if (cm->atype[i] == want && *m != NULL)
        return 0;
    if (cm->atype[i] == SHALE_MSG_ERROR && *m != NULL) {
        const Shale__Error *e = (const Shale__Error *)*m;
        int code = -(int)e->code;
        if (code == SHALE_ECASFAILED)
            return SHALE_ECASFAILED;
        rr_add_shale_error(&cm->out, code, e->message);
        return 1;
    }
    resp_add_error(&cm->out, "ERR unexpected answer from the cluster");
    return 1;
}

/* ---- Native requests ---------------------------------------------------------------*/

int rr_subs_init(rcmd_t *cm, unsigned n)
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

Shale__Session *rr_session_fill(rt_resp_t *s, rcmd_t *cm, Shale__Session *ss)
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

void rr_read_opts(rt_resp_t *s, Shale__ReadOptions *ro)
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
void rr_sub_send(rcmd_t *cm, unsigned i, uint16_t type, const ProtobufCMessage *m)
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
int rr_send_single(rt_resp_t *s, rcmd_t *cm, uint16_t type, const ProtobufCMessage *m,
                   Shale__Session **session, Shale__Session *ss)
{
    if (rr_subs_init(cm, 1) != 0)
        return -1;
    if (session != NULL)
        *session = rr_session_fill(s, cm, ss);
    rr_sub_send(cm, 0, type, m);
    return 0;
}

/* A command of several rounds sends its next request (as sub 0 again,
 * under a new id): cm->again tells rt_resp_answer not to answer yet. */
void rr_sub_again(rcmd_t *cm, uint16_t type, const ProtobufCMessage *m)
{
    if (cm->ans[0] != NULL)
        protobuf_c_message_free_unpacked(cm->ans[0], NULL);
    cm->ans[0] = NULL;
    cm->atype[0] = 0;
    cm->nsub = cm->nleft = 1;
    cm->base_id = cm->s->next_id++;
    cm->again = 1;
    cm->round++;
    rr_sub_send(cm, 0, type, m);
}

/* Send sub 0 of a command of several rounds: the first or the next. -1
 * when out of memory (first round). */
int rr_send_round(rcmd_t *cm, uint16_t type, const ProtobufCMessage *m)
{
    if (cm->nsub == 0) {
        if (rr_subs_init(cm, 1) != 0)
            return -1;
        rr_sub_send(cm, 0, type, m);
        return 0;
    }
    rr_sub_again(cm, type, m);
    return 0;
}

/* Run cm's fin on its answers; again while a next round was answered at
 * once (while fin ran). cm->again on return: a round is still out. */
void rr_run_fin(rcmd_t *cm)
{
    do {
        cm->again = 0;
        cm->in_fin = 1;
        cm->fin(cm);
        cm->in_fin = 0;
    } while (cm->again && cm->nleft == 0);
}

ProtobufCBinaryData rr_bin(const char *p, size_t n)
{
    ProtobufCBinaryData b = {n, (uint8_t *)p};
    return b;
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
    resp_add_errorf(o, "ERR unknown command '%.128s', with args beginning with: %s", argv[0], args);
}

/* Key hashes of a command (for the ordering of pipelined commands). */
static int cmd_keys(rcmd_t *cm, const cmdspec_t *sp, size_t argc, char **argv, size_t *len)
{
    size_t first, last, step;
    if (!rr_key_range(sp, argc, &first, &last, &step))
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
int rr_exec_cmd(rt_resp_t *s, size_t argc, char **argv, size_t *len)
{
    rcmd_t *cm = calloc(1, sizeof(*cm));
    if (cm == NULL)
        return -1;
    cm->s = s;
    resp_out_init(&cm->out, s->proto);
    int k = rr_find_cmd(argv[0], len[0]);
    cm->ci = k;
    /* After MULTI every command but the transaction's own is queued. */
    int ctl = k >= 0 && (rr_cmd_is(cm, "exec") || rr_cmd_is(cm, "discard") ||
                         rr_cmd_is(cm, "multi") || rr_cmd_is(cm, "watch") || rr_cmd_is(cm, "quit"));
    int queue = s->in_multi && !ctl;
    if (k >= 0 && !queue) {
        const cmdspec_t *sp = &rr_cmds[k];
        cm->write = (sp->flags & F_WRITE) != 0;
        int rv = rr_cmd_is(cm, "exec") ? rr_exec_keys(s, cm) : cmd_keys(cm, sp, argc, argv, len);
        if (rv != 0) {
            rr_cmd_free(cm);
            return -1;
        }
        /* EXEC, UNWATCH, DISCARD need the versions of earlier WATCHes. */
        if (conflicts(s, cm) ||
            ((rr_cmd_is(cm, "exec") || rr_cmd_is(cm, "unwatch") || rr_cmd_is(cm, "discard")) &&
             rr_watch_pending(s))) {
            rr_cmd_free(cm);
            return EXEC_BLOCKED;
        }
    }
    rt_q_push(&s->pending, &cm->link);
    s->npending++;
    rr_calls[k >= 0 ? (size_t)k : NCMDS]++;
    cm->counted = 1;
    if (k < 0) {
        unknown_command(&cm->out, argc, argv, len);
        s->multi_dirty |= queue;
    } else if ((rr_cmds[k].arity > 0 && argc != (size_t)rr_cmds[k].arity) ||
               (rr_cmds[k].arity < 0 && argc < (size_t)-rr_cmds[k].arity)) {
        resp_add_errorf(&cm->out, "ERR wrong number of arguments for '%s' command",
                        rr_cmds[k].name);
        s->multi_dirty |= queue;
    } else if (s->r->cfg.auth && !s->authed && !(rr_cmds[k].flags & F_NOAUTH)) {
        resp_add_error(&cm->out, "NOAUTH Authentication required.");
        s->multi_dirty |= queue;
    } else if (queue) {
        if (rr_multi_queue(s, cm, argc, argv, len) < 0) {
            resp_out_reset(&cm->out);
            resp_add_error(&cm->out, "ERR out of memory");
            s->multi_dirty = 1;
        }
    } else {
        cm->in_fin = 1; /* an answer that comes at once waits for fn */
        int rv = rr_cmds[k].fn(s, cm, argc, argv, len);
        cm->in_fin = 0;
        if (rv < 0 && cm->nsub == 0)
            resp_add_error(&cm->out, "ERR out of memory");
        if (cm->nsub > 0 && cm->nleft == 0) {
            rr_run_fin(cm); /* answered at once */
            if (cm->again)
                return EXEC_DONE;
        } else if (cm->nsub > 0 || s->login_cmd == cm || rv == 1) {
            return EXEC_DONE; /* answered through rt_resp_answer / the login / DBSIZE */
        }
    }
    rr_cmd_done(cm);
    return EXEC_DONE;
}

void rr_held_free(rt_resp_t *s)
{
    if (!s->has_held)
        return;
    rr_argv_release(&s->held);
    s->has_held = 0;
}

int rr_held_keep(rt_resp_t *s, const resp_cmd_t *c)
{
    s->has_held = 1;
    return rr_argv_copy(&s->held, c->argc, c->argv, c->argvlen);
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
        rr_set_authed(s);
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
        rr_cmd_free(cm);
    }
    rr_held_free(s);
    rr_multi_reset(s);
    rr_unwatch_all(s);
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
            int e = rr_exec_cmd(s, s->held.argc, s->held.argv, s->held.len);
            if (e == EXEC_BLOCKED) {
                s->blocked = 1;
                rv = RT_RESP_WAITING;
                break;
            }
            rr_held_free(s);
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
            rr_cmd_done(cm);
            rt_q_push(&s->pending, &cm->link);
            s->npending++;
            rv = RT_RESP_IDLE;
            break;
        }
        int e = rr_exec_cmd(s, c.argc, (char **)c.argv, (size_t *)c.argvlen);
        if (e == EXEC_BLOCKED) {
            if (rr_held_keep(s, &c) != 0) {
                rr_held_free(s);
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
    rr_flush_done(s);
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
    rr_run_fin(cm);
    if (cm->again)
        return;
    rr_cmd_done(cm);
    rr_flush_done(s);
    if (s->blocked)
        rt_cconn_kick(s->c);
}
