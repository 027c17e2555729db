/* Logins on a listener (login.h): the limit, the queue, the thread pool. */
#include "login.h"

#include <assert.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct login_req {
    uv_work_t work;
    login_svc_t *ls;
    login_req_t *next; /* in the waiting queue */
    login_cb cb;       /* NULL: canceled */
    void *arg;
    int started;
    int cached; /* the credential matched a verified one: no slow hash */
    uint8_t digest[LOGIN_DIGEST];
    int has_digest;
    char src[LOGIN_SRC_MAX];
    char user[AUTH_NAME_MAX + 1];
    Shale__PasswordHash *hash; /* copy; NULL: unknown user (dummy check) */
    uint8_t *pw;
    size_t pwlen;
    int result;
    char msg[LOGIN_MSGLEN];
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

void login_svc_init(login_svc_t *ls, uv_loop_t *loop)
{
    memset(ls, 0, sizeof(*ls));
    ls->loop = loop;
    login_limit_init(&ls->limit);
    /* Without a key there is no cache: every login takes the slow hash. */
    if (RAND_bytes(ls->cache_key, sizeof(ls->cache_key)) != 1)
        ls->cache_n = UINT32_MAX;
}

/* HMAC(key, user 0 password 0 record) into out; 0 on success. */
static int cred_digest(const login_svc_t *ls, const char *user, const uint8_t *pw, size_t pwlen,
                       const uint8_t *rec, size_t reclen, uint8_t out[LOGIN_DIGEST])
{
    if (ls->cache_n == UINT32_MAX)
        return -1;
    size_t ul = strlen(user), n = ul + 1 + pwlen + 1 + reclen;
    uint8_t *buf = malloc(n);
    if (buf == NULL)
        return -1;
    memcpy(buf, user, ul + 1);
    memcpy(buf + ul + 1, pw, pwlen);
    buf[ul + 1 + pwlen] = 0;
    memcpy(buf + ul + 2 + pwlen, rec, reclen);
    unsigned mdlen = 0;
    int ok = HMAC(EVP_sha256(), ls->cache_key, (int)sizeof(ls->cache_key), buf, n, out, &mdlen) !=
                 NULL &&
             mdlen == LOGIN_DIGEST;
    OPENSSL_cleanse(buf, n);
    free(buf);
    return ok ? 0 : -1;
}

static int cache_has(const login_svc_t *ls, const uint8_t d[LOGIN_DIGEST])
{
    for (unsigned i = 0; i < ls->cache_n && ls->cache_n != UINT32_MAX; i++)
        if (CRYPTO_memcmp(ls->cache[i], d, LOGIN_DIGEST) == 0)
            return 1;
    return 0;
}

static void cache_add(login_svc_t *ls, const uint8_t d[LOGIN_DIGEST])
{
    if (ls->cache_n == UINT32_MAX || cache_has(ls, d))
        return;
    memcpy(ls->cache[ls->cache_next], d, LOGIN_DIGEST);
    ls->cache_next = (ls->cache_next + 1) % LOGIN_CACHE;
    if (ls->cache_n < LOGIN_CACHE)
        ls->cache_n++;
}

static void req_free(login_req_t *r)
{
    if (r->pw != NULL)
        OPENSSL_cleanse(r->pw, r->pwlen);
    free(r->pw);
    auth_hash_free(r->hash);
    free(r);
}

/* Worker thread: only r is touched. */
static void do_check(uv_work_t *w)
{
    login_req_t *r = w->data;
    char err[AUTH_ERRLEN];
    if (r->cached) {
        r->result = 0;
        return;
    }
    if (r->hash == NULL) {
        auth_verify_dummy(r->pw, r->pwlen);
        r->result = SHALE_EAUTH;
        snprintf(r->msg, sizeof(r->msg), "authentication failed for user '%s'", r->user);
        return;
    }
    int rv = auth_verify_password(r->hash, r->pw, r->pwlen, err, sizeof(err));
    r->result = rv == 0 ? 0 : SHALE_EAUTH;
    if (rv != 0)
        snprintf(r->msg, sizeof(r->msg), "authentication failed for user '%s'", r->user);
}

static void start_next(login_svc_t *ls);

static void after_check(uv_work_t *w, int status)
{
    login_req_t *r = w->data;
    login_svc_t *ls = r->ls;
    if (!r->cached)
        ls->running--;
    if (status != 0 && r->result == 0) {
        r->result = SHALE_EAUTH;
        snprintf(r->msg, sizeof(r->msg), "authentication did not run");
    }
    if (r->cb != NULL) {
        if (r->result == 0) {
            ls->ok++;
            if (r->cached)
                ls->cached++;
            else if (r->has_digest)
                cache_add(ls, r->digest);
        } else {
            ls->failed++;
            login_limit_fail(&ls->limit, r->src, now_ms());
        }
        r->cb(r->arg, r->result, r->user, r->msg);
    }
    req_free(r);
    start_next(ls);
}

/* Take r (after prev, NULL: the head) out of the waiting queue and run it:
 * the slow hash, or, cached, only the answer from the loop. */
static void start_one(login_svc_t *ls, login_req_t *prev, login_req_t *r, int cached)
{
    if (prev != NULL)
        prev->next = r->next;
    else
        ls->wait_head = r->next;
    if (ls->wait_tail == r)
        ls->wait_tail = prev;
    ls->waiting--;
    r->next = NULL;
    r->cached = cached;
    r->started = 1;
    r->work.data = r;
    /* Fails only for a NULL work callback. */
    int rv = uv_queue_work(ls->loop, &r->work, do_check, after_check);
    assert(rv == 0);
    (void)rv;
    if (!cached)
        ls->running++;
}

static void start_next(login_svc_t *ls)
{
    /* Credentials verified while they waited (a pool of connections that
     * logged in at once with one password: the first hashes ran, the
     * others queued behind them) need no hash now. */
    login_req_t *prev = NULL, *r = ls->wait_head;
    while (r != NULL) {
        login_req_t *next = r->next;
        if (r->has_digest && cache_has(ls, r->digest))
            start_one(ls, prev, r, 1);
        else
            prev = r;
        r = next;
    }
    while (ls->running < LOGIN_CONCURRENT && ls->wait_head != NULL)
        start_one(ls, NULL, ls->wait_head, 0);
}

int login_start(login_svc_t *ls, const char *peer, const uint8_t *cred, size_t len,
                const Shale__UserTable *table, login_cb cb, void *arg, login_req_t **out,
                char msg[LOGIN_MSGLEN])
{
    *out = NULL;
    char src[LOGIN_SRC_MAX];
    login_limit_source(peer, src, sizeof(src));
    uint64_t wait = login_limit_wait(&ls->limit, src, now_ms());
    if (wait > 0) {
        ls->throttled++;
        snprintf(msg, LOGIN_MSGLEN, "too many failed logins from %s: try again in %llu ms", src,
                 (unsigned long long)wait);
        return SHALE_EAUTH;
    }
    if (table == NULL) {
        /* Not the peer's fault: nothing to check against (yet). */
        snprintf(msg, LOGIN_MSGLEN, "no user table here yet (no user exists, or this process "
                                    "has not reached the meta group): retry shortly");
        return SHALE_EUNAVAILABLE;
    }
    Shale__Credential *c = auth_credential_unpack(cred, len);
    if (c == NULL) {
        ls->failed++;
        login_limit_fail(&ls->limit, src, now_ms());
        snprintf(msg, LOGIN_MSGLEN, "malformed credential (want a user name and a password)");
        return SHALE_EAUTH;
    }
    login_req_t *r = calloc(1, sizeof(*r));
    if (r != NULL)
        r->pw = malloc(c->password.len);
    const Shale__User *u = auth_table_find(table, c->user);
    if (r != NULL && r->pw != NULL && u != NULL && u->password != NULL) {
        /* The record as it is now, through its encoding. */
        size_t hl = shale__password_hash__get_packed_size(u->password);
        uint8_t *hb = malloc(hl ? hl : 1);
        if (hb != NULL) {
            shale__password_hash__pack(u->password, hb);
            r->hash = shale__password_hash__unpack(NULL, hl, hb);
            r->has_digest = cred_digest(ls, c->user, c->password.data, c->password.len, hb, hl,
                                        r->digest) == 0;
            free(hb);
        }
        if (r->hash == NULL) {
            free(r->pw);
            r->pw = NULL;
        }
    }
    if (r == NULL || r->pw == NULL) {
        if (r != NULL)
            req_free(r);
        auth_credential_free(c);
        snprintf(msg, LOGIN_MSGLEN, "out of memory");
        return SHALE_ENOMEM;
    }
    memcpy(r->pw, c->password.data, c->password.len);
    r->pwlen = c->password.len;
    snprintf(r->user, sizeof(r->user), "%s", c->user);
    snprintf(r->src, sizeof(r->src), "%s", src);
    auth_credential_free(c);
    r->ls = ls;
    r->cb = cb;
    r->arg = arg;
    *out = r;
    if (r->has_digest && cache_has(ls, r->digest)) {
        /* Verified before: past the queue, no slow hash; still answered
         * from the loop later, as every login is. */
        r->cached = 1;
        r->started = 1;
        r->work.data = r;
        int rv = uv_queue_work(ls->loop, &r->work, do_check, after_check);
        assert(rv == 0);
        (void)rv;
        return SHALE_OK;
    }
    if (ls->waiting >= LOGIN_QUEUE_MAX) {
        *out = NULL;
        req_free(r);
        ls->overloaded++;
        snprintf(msg, LOGIN_MSGLEN, "too many logins in progress: retry shortly");
        return SHALE_EOVERLOAD;
    }
    if (ls->wait_tail != NULL)
        ls->wait_tail->next = r;
    else
        ls->wait_head = r;
    ls->wait_tail = r;
    ls->waiting++;
    start_next(ls);
    return SHALE_OK;
}

void login_cancel(login_req_t *r)
{
    if (r == NULL)
        return;
    r->cb = NULL;
    if (r->started)
        return; /* after_check frees it */
    login_svc_t *ls = r->ls;
    login_req_t **pp = &ls->wait_head, *prev = NULL;
    while (*pp != NULL && *pp != r) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == r) {
        *pp = r->next;
        if (ls->wait_tail == r)
            ls->wait_tail = prev;
        ls->waiting--;
        req_free(r);
    }
}

void login_svc_close(login_svc_t *ls)
{
    while (ls->wait_head != NULL) {
        login_req_t *r = ls->wait_head;
        ls->wait_head = r->next;
        req_free(r);
    }
    ls->wait_tail = NULL;
    ls->waiting = 0;
}
