/* Internal to the RESP port of shale-router (router/resp_conn.c and the
 * resp_cmd_*.c files that serve its commands; docs/resp.md): the
 * per-connection and per-command state, the command table's shape and the
 * helpers the command files share. Nothing outside router/resp_*.c
 * includes it; client_conn.c sees only router.h's rt_resp_* calls. */
#ifndef SHALE_ROUTER_RESP_INT_H
#define SHALE_ROUTER_RESP_INT_H

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
    uint16_t *atype;        /* per sub: answer type */
    ProtobufCMessage **ans; /* per sub: unpacked answer (NULL: undecodable) */
    uint64_t *keyh;         /* hashes of the keys it touches */
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
    int blocked; /* waiting for an answer (conflict) or a login */
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

/* SET's options (rr_set_parse), also read by MULTI's queue. */
enum { SET_NX = 1, SET_XX = 2, SET_GET = 4, SET_TTL = 8, SET_KEEPTTL = 16, SET_PAST = 32 };

/* The command table (resp_conn.c) and its per-command counts: index
 * rr_ncmds counts unknown commands. */
extern const cmdspec_t rr_cmds[];
extern const size_t rr_ncmds;
extern uint64_t rr_calls[64], rr_errors[64];

/* resp_conn.c: connection core: the command table helpers, replies in order, errors, native
 * requests, dispatch. */
int rr_ci_is(int ci, const char *name);
int rr_cmd_is(const rcmd_t *cm, const char *name);
int rr_find_cmd(const char *name, size_t len);
int rr_arg_is(const char *a, size_t len, const char *word);
int rr_key_range(const cmdspec_t *sp, size_t argc, size_t *first, size_t *last, size_t *step);
int rr_argv_copy(held_t *h, size_t argc, const char *const *argv, const size_t *len);
void rr_argv_release(held_t *h);
void rr_qcmds_free(qcmd_t *q, size_t n);
void rr_cmd_free(rcmd_t *cm);
void rr_flush_done(rt_resp_t *s);
void rr_cmd_done(rcmd_t *cm);
void rr_add_shale_error(resp_out_t *o, int code, const char *msg);
int rr_sub_answer(rcmd_t *cm, unsigned i, uint16_t want, ProtobufCMessage **m);
int rr_subs_init(rcmd_t *cm, unsigned n);
Shale__Session *rr_session_fill(rt_resp_t *s, rcmd_t *cm, Shale__Session *ss);
void rr_read_opts(rt_resp_t *s, Shale__ReadOptions *ro);
void rr_sub_send(rcmd_t *cm, unsigned i, uint16_t type, const ProtobufCMessage *m);
int rr_send_single(rt_resp_t *s, rcmd_t *cm, uint16_t type, const ProtobufCMessage *m,
                   Shale__Session **session, Shale__Session *ss);
void rr_sub_again(rcmd_t *cm, uint16_t type, const ProtobufCMessage *m);
int rr_send_round(rcmd_t *cm, uint16_t type, const ProtobufCMessage *m);
void rr_run_fin(rcmd_t *cm);
ProtobufCBinaryData rr_bin(const char *p, size_t n);
int rr_exec_cmd(rt_resp_t *s, size_t argc, char **argv, size_t *len);
void rr_held_free(rt_resp_t *s);
int rr_held_keep(rt_resp_t *s, const resp_cmd_t *c);

/* resp_cmd_conn.c: connection and server commands. */
int rr_c_ping(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_echo(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
void rr_set_authed(rt_resp_t *s);
int rr_c_auth(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_hello(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_select(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_quit(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_client(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_command(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_info(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_config(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_wait(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_readonly(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_readwrite(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);

/* resp_cmd_string.c: string and key commands (helpers MULTI reuses: SET's options, INCR / EXPIRE as
 * TXN ops, MGET). */
int rr_c_get(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_set_parse(size_t argc, char **argv, size_t *len, int *optp, long long *ttlp, resp_out_t *o);
void rr_txn_get_reply(resp_out_t *o, const Shale__TxnOpResult *x);
int rr_c_set(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_setnx(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_getset(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_getdel(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_mget_send(rcmd_t *cm, size_t argc, char **argv, size_t *len, Shale__ReadOptions *ro);
int rr_c_mget(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_exists(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
void rr_no_map(rt_resp_t *s, rcmd_t *cm);
int rr_c_mset(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_del(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_incr_op(int ci, size_t argc, char **argv, size_t *len, Shale__TxnOp *op, resp_out_t *o);
int rr_c_incr(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_expire_ms(int ci, const char *a, size_t n, long long *ms, resp_out_t *o);
void rr_expire_op(const char *k, size_t klen, int persist, long long ms, Shale__TxnOp *op);
int rr_c_expire(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_dbsize(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);

/* resp_cmd_scan.c: SCAN and KEYS. */
void rr_scan_free(struct scan_st *st);
int rr_c_scan(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);

/* resp_cmd_txn.c: WATCH / MULTI / EXEC. */
void rr_unwatch_all(rt_resp_t *s);
void rr_multi_reset(rt_resp_t *s);
int rr_watch_pending(const rt_resp_t *s);
int rr_multi_queue(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_multi(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_c_watch(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);
int rr_exec_keys(rt_resp_t *s, rcmd_t *cm);
int rr_c_exec(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len);

#endif
