/* Who is on a client connection of shale-router, and what they may do
 * (--auth; docs/security.md, "Users and roles").
 *
 * What this file owns:
 *  - the router's own credential (--auth-user, --auth-password-file): read
 *    once, given to its meta-group clients (watch.c, the user table watch)
 *    and to every node connection's HELLO (upstream.c), wiped at exit;
 *  - the meta group's user table, followed (user_watch.h);
 *  - the HELLO credential check (login.h), binding the connection to the
 *    user (client_conn.c calls in) and telling the client in HELLO_REPLY
 *    who it is (user, role, key prefix);
 *  - the check of each client request against the user's role and key
 *    prefix before it is forwarded. The nodes check again against the
 *    router's own user: the router is not a trust boundary for node ports.
 *
 * Rules: without --auth nothing here refuses anything. A connection's user
 * is looked up by name in the current table (cached per generation): a
 * removed user is refused at its next request, a role change applies at
 * once. Log lines name the user and the peer, never a password. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

int rt_authn_init(rt_router_t *r, char *err, size_t errlen)
{
    rt_authn_t *a = &r->authn;
    if (r->cfg.auth_user[0] == '\0')
        return 0;
    if (auth_name_check(r->cfg.auth_user, err, errlen) != 0)
        return -1;
    if (auth_password_file_read(r->cfg.auth_password_file, &a->pw, &a->pwlen, err, errlen) != 0)
        return -1;
    if (auth_credential_pack(r->cfg.auth_user, a->pw, a->pwlen, &a->cred, &a->cred_len) != 0) {
        snprintf(err, errlen, "--auth-password-file %s: the first line must hold a password",
                 r->cfg.auth_password_file);
        return -1;
    }
    return 0;
}

void rt_authn_client_options(const rt_router_t *r, shale_options_t *o)
{
    if (r->authn.pw == NULL)
        return;
    o->user = r->cfg.auth_user;
    o->password = r->authn.pw;
    o->password_len = r->authn.pwlen;
}

static void on_users(user_watch_t *w, int status, const char *msg, void *arg)
{
    (void)arg;
    if (status == 0)
        rt_info("user table received from the meta group", " version=%llu users=%zu",
                (unsigned long long)w->table->version, w->table->n_users);
    else if (w->fails == 0 || status == SHALE_EAUTH || status == SHALE_EPERM)
        rt_warn("cannot read the user table from the meta group", " err=\"%s\"", msg);
}

int rt_authn_start(rt_router_t *r, char *err, size_t errlen)
{
    login_svc_init(&r->authn.login, r->loop);
    if (!r->cfg.auth)
        return 0;
    if (r->authn.pw == NULL)
        rt_warn("--auth without --auth-user: a meta group started with --auth will not give "
                "this router its user table, and every login here will fail",
                "%s", "");
    shale_options_t o;
    shale_options_init(&o);
    o.cluster_id = r->cfg.cluster_id;
    rt_authn_client_options(r, &o);
    if (r->cfg.tls_cert[0] != '\0') { /* the meta group's client port speaks TLS too */
        o.tls_ca = r->cfg.tls_ca;
        o.tls_cert = r->cfg.tls_cert;
        o.tls_key = r->cfg.tls_key;
    }
    if (user_watch_start(&r->authn.uwatch, r->loop, r->cfg.meta, &o, on_users, r, err, errlen) != 0)
        return -1;
    rt_info("authentication on", " users_from=%s", r->cfg.meta);
    return 0;
}

void rt_authn_stop(rt_router_t *r)
{
    login_svc_close(&r->authn.login);
    user_watch_stop(&r->authn.uwatch);
}

void rt_authn_free(rt_router_t *r)
{
    rt_authn_t *a = &r->authn;
    user_watch_free(&a->uwatch);
    if (a->pw != NULL)
        OPENSSL_cleanse(a->pw, a->pwlen);
    free(a->pw);
    a->pw = NULL;
    if (a->cred != NULL)
        OPENSSL_cleanse(a->cred, a->cred_len);
    free(a->cred);
    a->cred = NULL;
}

int rt_authn_check(rt_router_t *r, rt_authn_conn_t *ac, uint16_t type, const ProtobufCMessage *m,
                   char *why, size_t whylen)
{
    if (!r->cfg.auth)
        return 0;
    const Shale__User *u = NULL;
    if (ac->user[0] != '\0') {
        if (ac->u == NULL || ac->gen != r->authn.uwatch.gen) {
            ac->u = auth_table_find(r->authn.uwatch.table, ac->user);
            ac->gen = r->authn.uwatch.gen;
        }
        u = ac->u;
        if (u == NULL) {
            snprintf(why, whylen, "user '%s' no longer exists", ac->user);
            r->authn.denied++;
            return SHALE_EAUTH;
        }
    }
    if (!auth_request_allowed(u, type, m, why, whylen)) {
        r->authn.denied++;
        return u != NULL ? SHALE_EPERM : SHALE_EAUTH;
    }
    return 0;
}

void rt_authn_hello_fill(rt_router_t *r, rt_authn_conn_t *ac, Shale__HelloReply *hr)
{
    if (r->cfg.auth && ac->user[0] != '\0') {
        ac->u = auth_table_find(r->authn.uwatch.table, ac->user);
        ac->gen = r->authn.uwatch.gen;
    }
    auth_hello_fill(hr, r->cfg.auth, ac->user, ac->u);
}
