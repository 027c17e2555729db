/* RESP connection and server commands (docs/resp.md, "Connection and
 * server"): PING ECHO HELLO AUTH SELECT QUIT CLIENT COMMAND INFO CONFIG
 * WAIT READONLY READWRITE — answered by the router itself, except AUTH /
 * HELLO AUTH (a login through the router's authn.c).
 *
 * Never sends a data request to a node. */
#define RESP_VERSION_TEXT "7.0.0"
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "resp_int.h"

/* ---- Connection commands ------------------------------------------------------------*/

int rr_c_ping(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
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

int rr_c_echo(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
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

void rr_set_authed(rt_resp_t *s)
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
        rr_set_authed(s);
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
        resp_add_error(&cm->out, "WRONGPASS invalid username-password pair or user is disabled.");
    }
    rr_cmd_done(cm);
    rr_flush_done(s);
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
            rr_add_shale_error(&cm->out, rv, msg);
        return 0;
    }
    s->login_cmd = cm;
    s->blocked = 1;
    rt_cconn_begin(s->c); /* released by on_resp_login */
    return 1;
}

int rr_c_auth(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
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

int rr_c_hello(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
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
        if (rr_arg_is(argv[i], len[i], "auth") && i + 2 < argc) {
            user = argv[i + 1], ulen = len[i + 1];
            pw = argv[i + 2], pwlen = len[i + 2];
            i += 2;
        } else if (rr_arg_is(argv[i], len[i], "setname") && i + 1 < argc) {
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

int rr_c_select(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
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

int rr_c_quit(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc, (void)argv, (void)len;
    resp_add_simple(&cm->out, "OK");
    cm->close_after = 1;
    s->quit = 1;
    return 0;
}

int rr_c_client(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    if (rr_arg_is(argv[1], len[1], "setname") && argc == 3) {
        if (!valid_name(argv[2], len[2]) || len[2] >= sizeof(s->name))
            resp_add_error(&cm->out, "ERR Client names cannot contain spaces, newlines or "
                                     "special characters.");
        else {
            snprintf(s->name, sizeof(s->name), "%.*s", (int)len[2], argv[2]);
            resp_add_simple(&cm->out, "OK");
        }
    } else if (rr_arg_is(argv[1], len[1], "getname") && argc == 2) {
        if (s->name[0] == '\0')
            resp_add_null(&cm->out);
        else
            resp_add_bulk_str(&cm->out, s->name);
    } else if (rr_arg_is(argv[1], len[1], "id") && argc == 2) {
        resp_add_int(&cm->out, (long long)s->id);
    } else if (rr_arg_is(argv[1], len[1], "setinfo") && argc == 4) {
        resp_add_simple(&cm->out, "OK");
    } else if (rr_arg_is(argv[1], len[1], "info") && argc == 2) {
        char line[512];
        int n = snprintf(line, sizeof(line), "id=%llu addr=%s name=%s db=0 resp=%d user=%s\n",
                         (unsigned long long)s->id, rt_cconn_peer(s->c), s->name, s->proto,
                         rt_cconn_authn(s->c)->user[0] ? rt_cconn_authn(s->c)->user : "default");
        resp_add_verbatim(&cm->out, "txt", line, (size_t)n);
    } else {
        resp_add_errorf(&cm->out,
                        "ERR unknown subcommand or wrong number of arguments for "
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

int rr_c_command(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)s;
    if (argc == 1) {
        resp_add_array(&cm->out, rr_ncmds);
        for (size_t i = 0; i < rr_ncmds; i++)
            command_entry(&cm->out, &rr_cmds[i]);
    } else if (rr_arg_is(argv[1], len[1], "count")) {
        resp_add_int(&cm->out, (long long)rr_ncmds);
    } else if (rr_arg_is(argv[1], len[1], "docs")) {
        /* No docs: redis-cli falls back to its built-in hints. */
        resp_add_map(&cm->out, 0);
    } else if (rr_arg_is(argv[1], len[1], "info")) {
        resp_add_array(&cm->out, argc - 2);
        for (size_t i = 2; i < argc; i++) {
            int k = rr_find_cmd(argv[i], len[i]);
            if (k < 0)
                resp_add_null_array(&cm->out);
            else
                command_entry(&cm->out, &rr_cmds[k]);
        }
    } else {
        resp_add_errorf(&cm->out, "ERR unknown subcommand '%.64s'. Try COMMAND HELP.", argv[1]);
    }
    return 0;
}

int rr_c_info(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argv, (void)len, (void)argc;
    rt_router_t *r = s->r;
    size_t cap = 8192, n = 0;
    char *b = malloc(cap);
    if (b == NULL) {
        resp_add_error(&cm->out, "ERR out of memory");
        return 0;
    }
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (n < cap)                                                                               \
            n += (size_t)snprintf(b + n, cap - n, __VA_ARGS__);                                    \
    } while (0)
    ADD("# Server\r\nredis_version:%s\r\nshale_router:1\r\nredis_mode:standalone\r\n"
        "tcp_port:%s\r\ncluster_id:%s\r\n\r\n",
        RESP_VERSION_TEXT, r->cfg.resp, r->cfg.cluster_id);
    ADD("# Clients\r\nconnected_clients:%zu\r\n\r\n", r->nconns);
    ADD("# Stats\r\ntotal_requests_forwarded:%llu\r\nretries:%llu\r\ntimeouts:%llu\r\n\r\n",
        (unsigned long long)r->fwd.requests, (unsigned long long)r->fwd.retries,
        (unsigned long long)r->fwd.timeouts);
    ADD("# Commandstats\r\n");
    for (size_t i = 0; i < rr_ncmds; i++)
        if (rr_calls[i] > 0)
            ADD("cmdstat_%s:calls=%llu,failed_calls=%llu\r\n", rr_cmds[i].name,
                (unsigned long long)rr_calls[i], (unsigned long long)rr_errors[i]);
    ADD("\r\n# Cluster\r\nmap_epoch:%llu\r\nshard_groups:%zu\r\nslots:%u\r\n",
        (unsigned long long)r->route.epoch, r->route.ngroups, r->route.slots);
#undef ADD
    if (n >= cap)
        n = cap - 1;
    resp_add_verbatim(&cm->out, "txt", b, n);
    free(b);
    return 0;
}

int rr_c_config(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)s, (void)argc;
    if (rr_arg_is(argv[1], len[1], "get"))
        resp_add_map(&cm->out, 0); /* no Redis settings here */
    else
        resp_add_errorf(&cm->out, "ERR unknown subcommand '%.64s'. Try CONFIG HELP.", argv[1]);
    return 0;
}

int rr_c_wait(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
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

int rr_c_readonly(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc, (void)argv, (void)len;
    s->readonly = 1;
    resp_add_simple(&cm->out, "OK");
    return 0;
}

int rr_c_readwrite(rt_resp_t *s, rcmd_t *cm, size_t argc, char **argv, size_t *len)
{
    (void)argc, (void)argv, (void)len;
    s->readonly = 0;
    resp_add_simple(&cm->out, "OK");
    return 0;
}
