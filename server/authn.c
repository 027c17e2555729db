/* Who is on a connection of shaled, and what they may do (--auth;
 * docs/security.md, "Users and roles").
 *
 * What this file owns:
 *  - this node's own credential (--auth-user, --auth-password-file), read
 *    once at start and given to every connection it makes to another
 *    process (the meta group, a peer's snapshot stream), wiped at exit;
 *  - where the user table comes from: a meta member has it applied
 *    (s->users, users.c); a data node follows the meta group's
 *    (user_watch.h, with its own credential);
 *  - the HELLO credential check (login.h: per-source limit, password hash
 *    off the loop), binding the connection to the user, and telling the
 *    client in HELLO_REPLY who it is (user, role, key prefix);
 *  - the check of every request against the user's role and key prefix
 *    (auth_request_allowed), at this process, whoever forwarded it;
 *  - the first-admin rule: a meta member with --auth accepts USER_CHANGE
 *    ADD of an admin from a connection without a user while its table has
 *    no admin, marked bootstrap so the apply refuses it if an admin
 *    appeared meanwhile (exactly one first admin).
 *
 * Rules: without --auth nothing here refuses anything. A connection's user
 * is looked up by name in the current table for each request (cached per
 * table generation): a removed user is refused at its next request, a
 * changed role applies at once, a changed password does not close
 * connections already logged in. Log lines name the user and the peer,
 * never a password. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "frame.h"
#include "log.h"
#include "server.h"

int authn_init(shaled_t *s, char *err, size_t errlen)
{
    if (s->cfg.auth_user[0] != '\0') {
        if (auth_name_check(s->cfg.auth_user, err, errlen) != 0)
            return -1;
        if (auth_password_file_read(s->cfg.auth_password_file, &s->auth_pw, &s->auth_pwlen,
                                    err, errlen) != 0)
            return -1;
        if (auth_credential_pack(s->cfg.auth_user, s->auth_pw, s->auth_pwlen, &s->auth_cred,
                                 &s->auth_cred_len) != 0) {
            snprintf(err, errlen, "--auth-password-file: not a usable password");
            return -1;
        }
    }
    return 0;
}

void authn_client_options(const shaled_t *s, shale_options_t *o)
{
    if (s->auth_pw == NULL)
        return;
    o->user = s->cfg.auth_user;
    o->password = s->auth_pw;
    o->password_len = s->auth_pwlen;
}

static void on_users(user_watch_t *w, int status, const char *msg, void *arg)
{
    (void)arg;
    if (status == 0)
        log_info("user table received from the meta group", " version=%llu users=%zu",
                 (unsigned long long)w->table->version, w->table->n_users);
    else if (w->fails == 0 || status == SHALE_EAUTH || status == SHALE_EPERM)
        log_warn("cannot read the user table from the meta group", " err=\"%s\"", msg);
}

int authn_start(shaled_t *s, char *err, size_t errlen)
{
    login_svc_init(&s->login, s->loop);
    if (!s->cfg.auth)
        return 0;
    if (strcmp(s->cfg.mode, "meta") == 0) {
        log_info("authentication on", " users=%zu admin=%s",
                 s->users != NULL ? s->users->n_users : (size_t)0,
                 auth_table_has_admin(s->users) ? "yes" : "none yet (first-admin rule applies)");
        return 0;
    }
    if (s->auth_pw == NULL)
        log_warn("--auth without --auth-user: a meta group started with --auth will not give "
                 "this node its user table, and every login here will fail",
                 "%s", "");
    shale_options_t o;
    shale_options_init(&o);
    o.cluster_id = s->cfg.cluster_id;
    authn_client_options(s, &o);
    if (s->cfg.tls_cert[0] != '\0') { /* the meta group's client port speaks TLS too */
        o.tls_ca = s->cfg.tls_ca;
        o.tls_cert = s->cfg.tls_cert;
        o.tls_key = s->cfg.tls_key;
    }
    if (user_watch_start(&s->uwatch, s->loop, s->cfg.meta, &o, on_users, s, err, errlen) != 0)
        return -1;
    log_info("authentication on", " users_from=%s", s->cfg.meta);
    return 0;
}

void authn_stop(shaled_t *s)
{
    login_svc_close(&s->login);
    user_watch_stop(&s->uwatch);
}

void authn_free(shaled_t *s)
{
    user_watch_free(&s->uwatch);
    if (s->auth_pw != NULL)
        OPENSSL_cleanse(s->auth_pw, s->auth_pwlen);
    free(s->auth_pw);
    s->auth_pw = NULL;
    if (s->auth_cred != NULL)
        OPENSSL_cleanse(s->auth_cred, s->auth_cred_len);
    free(s->auth_cred);
    s->auth_cred = NULL;
}

const Shale__UserTable *authn_table(const shaled_t *s, uint64_t *gen)
{
    if (strcmp(s->cfg.mode, "meta") == 0) {
        *gen = s->users_gen;
        return s->users;
    }
    *gen = s->uwatch.gen;
    return s->uwatch.table;
}

void authn_hello_fill(shaled_t *s, authn_conn_t *a, Shale__HelloReply *hr)
{
    if (s->cfg.auth && a->user[0] != '\0') {
        uint64_t gen;
        a->u = auth_table_find(authn_table(s, &gen), a->user);
        a->gen = gen;
    }
    auth_hello_fill(hr, s->cfg.auth, a->user, a->u);
}

/* The first-admin rule (file comment). */
static int bootstrap_allowed(shaled_t *s, const sreq_t *r)
{
    if (r->type != SHALE_MSG_USER_CHANGE_REQ || strcmp(s->cfg.mode, "meta") != 0 ||
        auth_table_has_admin(s->users))
        return 0;
    const Shale__UserChangeRequest *c = (const Shale__UserChangeRequest *)r->msg;
    return c->op == SHALE__USER_OP__USER_OP_ADD && c->user != NULL &&
           c->user->role == SHALE__USER_ROLE__USER_ADMIN;
}

int authn_check(shaled_t *s, sreq_t *r)
{
    if (r->type == SHALE_MSG_USER_CHANGE_REQ) {
        /* Only this node marks a change bootstrap, never a client. */
        Shale__UserChangeRequest *c = (Shale__UserChangeRequest *)r->msg;
        c->has_bootstrap = 0;
        c->bootstrap = 0;
    }
    if (!s->cfg.auth)
        return 0;
    authn_conn_t *a = conn_authn(r->conn);
    const Shale__User *u = NULL;
    char why[AUTH_ERRLEN + 64];
    if (a->user[0] != '\0') {
        uint64_t gen;
        const Shale__UserTable *t = authn_table(s, &gen);
        if (a->u == NULL || a->gen != gen) {
            a->u = auth_table_find(t, a->user);
            a->gen = gen;
        }
        u = a->u;
        if (u == NULL) {
            snprintf(why, sizeof(why), "user '%s' no longer exists", a->user);
            sreq_fail(r, SHALE_EAUTH, why);
            return -1;
        }
    }
    if (u == NULL && bootstrap_allowed(s, r)) {
        Shale__UserChangeRequest *c = (Shale__UserChangeRequest *)r->msg;
        c->has_bootstrap = 1;
        c->bootstrap = 1;
        log_warn("first admin user requested by an unauthenticated connection", " peer=%s user=%s",
                 conn_peer(r->conn), c->user->name);
        return 0;
    }
    if (!auth_request_allowed(u, r->type, r->msg, why, sizeof(why))) {
        s->auth_denied++;
        log_debug("request refused", " peer=%s user=%s type=%s", conn_peer(r->conn),
                  u != NULL ? u->name : "-", frame_type_name(r->type));
        sreq_fail(r, u != NULL ? SHALE_EPERM : SHALE_EAUTH, why);
        return -1;
    }
    return 0;
}
