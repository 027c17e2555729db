/* Users, roles and passwords (auth.h): scrypt hashing through OpenSSL,
 * user-record rules, the user table as data, and the permission table.
 *
 * Why scrypt from libcrypto: a memory-hard KDF from a maintained library
 * (DESIGN §1: no hand-made crypto), already a dependency of the TLS half of
 * issue 13. The parameters travel with every hash, so raising the defaults
 * later only affects new hashes; verification refuses parameters outside
 * auth_kdf_check's bounds, so a crafted record cannot make a node allocate
 * gigabytes.
 *
 * Never does I/O, never logs, keeps no state between calls; the derived key
 * is wiped (OPENSSL_cleanse) before a function returns. */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

const auth_kdf_params_t auth_kdf_default = {.log2_n = 15, .r = 8, .p = 1};

#define KDF_MAX_MEM (256u << 20)

const char *auth_role_name(int role)
{
    switch (role) {
    case AUTH_ROLE_NONE:
        return "none";
    case AUTH_ROLE_READ:
        return "read";
    case AUTH_ROLE_READWRITE:
        return "readwrite";
    case AUTH_ROLE_ADMIN:
        return "admin";
    default:
        return "?";
    }
}

auth_role_t auth_role_parse(const char *s)
{
    if (s == NULL)
        return AUTH_ROLE_NONE;
    if (strcmp(s, "read") == 0)
        return AUTH_ROLE_READ;
    if (strcmp(s, "readwrite") == 0)
        return AUTH_ROLE_READWRITE;
    if (strcmp(s, "admin") == 0)
        return AUTH_ROLE_ADMIN;
    return AUTH_ROLE_NONE;
}

/* ---- Passwords ---------------------------------------------------------------*/

int auth_kdf_check(const auth_kdf_params_t *k, char *err, size_t errlen)
{
    if (k->log2_n < 10 || k->log2_n > 20 || k->r < 1 || k->r > 32 || k->p < 1 || k->p > 4) {
        snprintf(err, errlen,
                 "scrypt parameters out of bounds (log2_n=%u r=%u p=%u; allowed "
                 "log2_n 10..20, r 1..32, p 1..4)",
                 k->log2_n, k->r, k->p);
        return SHALE_EINVAL;
    }
    if ((uint64_t)128 * k->r * ((uint64_t)1 << k->log2_n) > KDF_MAX_MEM) {
        snprintf(err, errlen, "scrypt parameters need more than %u MiB (log2_n=%u r=%u)",
                 KDF_MAX_MEM >> 20, k->log2_n, k->r);
        return SHALE_EINVAL;
    }
    return 0;
}

/* OpenSSL's own accounting: the V array (128 * r * (N + 2)) plus B
 * (128 * r * p), with room to spare. */
static uint64_t kdf_maxmem(const auth_kdf_params_t *k)
{
    uint64_t n = (uint64_t)1 << k->log2_n;
    return (uint64_t)128 * k->r * (n + 2) + (uint64_t)128 * k->r * k->p + (1u << 20);
}

static int scrypt(const void *pw, size_t len, const uint8_t *salt, size_t slen,
                  const auth_kdf_params_t *k, uint8_t out[AUTH_HASH_LEN])
{
    /* EVP_PBE_scrypt takes the password as char*; an empty one is never
     * asked for (callers check 1..AUTH_PASSWORD_MAX). */
    return EVP_PBE_scrypt((const char *)pw, len, salt, slen, (uint64_t)1 << k->log2_n, k->r, k->p,
                          kdf_maxmem(k), out, AUTH_HASH_LEN) == 1
               ? 0
               : -1;
}

/* 1..AUTH_PASSWORD_MAX bytes, no NUL: scrypt's PBKDF2-HMAC pads a key with
 * zero bytes, so "pw" and "pw\0" would hash alike. */
static int password_check(const void *pw, size_t len, char *err, size_t errlen)
{
    if (len == 0 || len > AUTH_PASSWORD_MAX) {
        snprintf(err, errlen, "a password has 1..%d bytes (got %zu)", AUTH_PASSWORD_MAX, len);
        return SHALE_EINVAL;
    }
    if (memchr(pw, 0, len) != NULL) {
        snprintf(err, errlen, "a password may not contain a NUL byte");
        return SHALE_EINVAL;
    }
    return 0;
}

int auth_hash_password(const void *pw, size_t len, const auth_kdf_params_t *params,
                       Shale__PasswordHash **out, char *err, size_t errlen)
{
    const auth_kdf_params_t *k = params != NULL ? params : &auth_kdf_default;
    *out = NULL;
    int rv = password_check(pw, len, err, errlen);
    if (rv != 0 || (rv = auth_kdf_check(k, err, errlen)) != 0)
        return rv;
    uint8_t salt[AUTH_SALT_LEN], dk[AUTH_HASH_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        snprintf(err, errlen, "no random bytes for a salt (OpenSSL RAND_bytes failed)");
        return SHALE_EIO;
    }
    if (scrypt(pw, len, salt, sizeof(salt), k, dk) != 0) {
        snprintf(err, errlen, "scrypt failed (out of memory?)");
        return SHALE_ENOMEM;
    }
    /* Built on the stack, then copied through its encoding so that the
     * result is one protobuf-c allocation (free_unpacked frees it all). */
    Shale__PasswordHash h = SHALE__PASSWORD_HASH__INIT;
    h.kdf = (char *)AUTH_KDF_SCRYPT;
    h.log2_n = k->log2_n;
    h.r = k->r;
    h.p = k->p;
    h.salt.data = salt;
    h.salt.len = sizeof(salt);
    h.hash.data = dk;
    h.hash.len = sizeof(dk);
    uint8_t buf[128];
    size_t n = shale__password_hash__pack(&h, buf);
    OPENSSL_cleanse(dk, sizeof(dk));
    *out = shale__password_hash__unpack(NULL, n, buf);
    OPENSSL_cleanse(buf, sizeof(buf));
    if (*out == NULL) {
        snprintf(err, errlen, "out of memory");
        return SHALE_ENOMEM;
    }
    return 0;
}

void auth_hash_free(Shale__PasswordHash *h)
{
    if (h != NULL)
        shale__password_hash__free_unpacked(h, NULL);
}

static int hash_record_check(const Shale__PasswordHash *h, char *err, size_t errlen)
{
    if (h == NULL) {
        snprintf(err, errlen, "no password hash");
        return SHALE_EINVAL;
    }
    if (h->kdf == NULL || strcmp(h->kdf, AUTH_KDF_SCRYPT) != 0) {
        snprintf(err, errlen, "unknown password hash function '%.32s'", h->kdf ? h->kdf : "");
        return SHALE_EINVAL;
    }
    auth_kdf_params_t k = {.log2_n = h->log2_n, .r = h->r, .p = h->p};
    int rv = auth_kdf_check(&k, err, errlen);
    if (rv != 0)
        return rv;
    if (h->salt.len != AUTH_SALT_LEN || h->hash.len != AUTH_HASH_LEN) {
        snprintf(err, errlen,
                 "password hash record has a %zu-byte salt and a %zu-byte hash "
                 "(want %d and %d)",
                 h->salt.len, h->hash.len, AUTH_SALT_LEN, AUTH_HASH_LEN);
        return SHALE_EINVAL;
    }
    return 0;
}

int auth_verify_password(const Shale__PasswordHash *h, const void *pw, size_t len, char *err,
                         size_t errlen)
{
    int rv = hash_record_check(h, err, errlen);
    if (rv != 0)
        return rv;
    char why[AUTH_ERRLEN];
    if (password_check(pw, len, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "wrong password");
        return SHALE_EAUTH;
    }
    auth_kdf_params_t k = {.log2_n = h->log2_n, .r = h->r, .p = h->p};
    uint8_t dk[AUTH_HASH_LEN];
    if (scrypt(pw, len, h->salt.data, h->salt.len, &k, dk) != 0) {
        snprintf(err, errlen, "scrypt failed (out of memory?)");
        return SHALE_ENOMEM;
    }
    int same = CRYPTO_memcmp(dk, h->hash.data, AUTH_HASH_LEN) == 0;
    OPENSSL_cleanse(dk, sizeof(dk));
    if (!same) {
        snprintf(err, errlen, "wrong password");
        return SHALE_EAUTH;
    }
    return 0;
}

void auth_verify_dummy(const void *pw, size_t len)
{
    static const uint8_t salt[AUTH_SALT_LEN] = "shale-no-user!!";
    uint8_t dk[AUTH_HASH_LEN];
    if (pw == NULL || len == 0 || len > AUTH_PASSWORD_MAX) {
        pw = "x";
        len = 1;
    }
    (void)scrypt(pw, len, salt, sizeof(salt), &auth_kdf_default, dk);
    OPENSSL_cleanse(dk, sizeof(dk));
}

/* ---- User records -------------------------------------------------------------*/

int auth_name_check(const char *name, char *err, size_t errlen)
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (n == 0 || n > AUTH_NAME_MAX) {
        snprintf(err, errlen, "a user name has 1..%d characters", AUTH_NAME_MAX);
        return SHALE_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '_' || ch == '.' || ch == '@' || ch == '-';
        if (!ok) {
            snprintf(err, errlen, "a user name may only hold letters, digits and _ . @ -");
            return SHALE_EINVAL;
        }
    }
    return 0;
}

int auth_user_validate(const Shale__User *u, int need_hash, char *err, size_t errlen)
{
    if (u == NULL) {
        snprintf(err, errlen, "no user record");
        return SHALE_EINVAL;
    }
    int rv = auth_name_check(u->name, err, errlen);
    if (rv != 0)
        return rv;
    if ((int)u->role < AUTH_ROLE_READ || (int)u->role > AUTH_ROLE_ADMIN) {
        snprintf(err, errlen, "user '%s': unknown role %d (read, readwrite or admin)", u->name,
                 (int)u->role);
        return SHALE_EINVAL;
    }
    size_t plen = u->has_key_prefix ? u->key_prefix.len : 0;
    if (plen > AUTH_PREFIX_MAX) {
        snprintf(err, errlen, "user '%s': key prefix of %zu bytes (at most %d)", u->name, plen,
                 AUTH_PREFIX_MAX);
        return SHALE_EINVAL;
    }
    if (plen > 0 && (int)u->role == AUTH_ROLE_ADMIN) {
        snprintf(err, errlen,
                 "user '%s': an admin cannot have a key prefix (admin verbs act on "
                 "the whole cluster)",
                 u->name);
        return SHALE_EINVAL;
    }
    if (need_hash || u->password != NULL) {
        char why[AUTH_ERRLEN];
        if (hash_record_check(u->password, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "user '%s': %s", u->name, why);
            return SHALE_EINVAL;
        }
    }
    return 0;
}

uint8_t *auth_user_pack(const Shale__User *u, size_t *len)
{
    *len = shale__user__get_packed_size(u);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf != NULL)
        shale__user__pack(u, buf);
    return buf;
}

Shale__User *auth_user_unpack(const uint8_t *buf, size_t len, int need_hash)
{
    char err[AUTH_ERRLEN];
    Shale__User *u = shale__user__unpack(NULL, len, buf);
    if (u != NULL && auth_user_validate(u, need_hash, err, sizeof(err)) != 0) {
        shale__user__free_unpacked(u, NULL);
        u = NULL;
    }
    return u;
}

const Shale__User *auth_table_find(const Shale__UserTable *t, const char *name)
{
    if (t == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < t->n_users; i++)
        if (t->users[i]->name != NULL && strcmp(t->users[i]->name, name) == 0)
            return t->users[i];
    return NULL;
}

void auth_hello_fill(Shale__HelloReply *hr, int auth_on, const char *user, const Shale__User *u)
{
    hr->has_auth = 1;
    hr->auth = auth_on != 0;
    if (!auth_on || user == NULL || user[0] == '\0')
        return; /* no users, or an anonymous connection */
    hr->user = (char *)user;
    if (u == NULL)
        return; /* removed since the login started: its requests are refused */
    hr->has_role = 1;
    hr->role = u->role;
    if (u->has_key_prefix && u->key_prefix.len > 0) {
        hr->has_key_prefix = 1;
        hr->key_prefix = u->key_prefix;
    }
}

int auth_table_has_admin(const Shale__UserTable *t)
{
    for (size_t i = 0; t != NULL && i < t->n_users; i++)
        if (t->users[i]->role == SHALE__USER_ROLE__USER_ADMIN)
            return 1;
    return 0;
}

/* Copy a shallow table (pointers into other tables) into one protobuf-c
 * allocation, through its encoding. */
static Shale__UserTable *table_dup(const Shale__UserTable *t)
{
    size_t len = shale__user_table__get_packed_size(t);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return NULL;
    shale__user_table__pack(t, buf);
    Shale__UserTable *c = shale__user_table__unpack(NULL, len, buf);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return c;
}

Shale__UserTable *auth_table_apply(const Shale__UserTable *t, const Shale__UserChangeRequest *c,
                                   int *code, char *err, size_t errlen)
{
    static const Shale__UserTable empty = SHALE__USER_TABLE__INIT;
    if (t == NULL)
        t = &empty;
    *code = SHALE_EINVAL;
    if (c == NULL || c->user == NULL) {
        snprintf(err, errlen, "user change without a user");
        return NULL;
    }
    const Shale__User *u = c->user;
    if (auth_name_check(u->name, err, errlen) != 0)
        return NULL;
    const Shale__User *old = auth_table_find(t, u->name);
    Shale__User **users = malloc((t->n_users + 1) * sizeof(*users));
    if (users == NULL) {
        *code = SHALE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    Shale__User changed; /* PASSWD: the old record with the new hash */
    size_t n = 0;
    switch (c->op) {
    case SHALE__USER_OP__USER_OP_ADD:
        if (c->has_bootstrap && c->bootstrap &&
            (auth_table_has_admin(t) || u->role != SHALE__USER_ROLE__USER_ADMIN)) {
            *code = SHALE_EAUTH;
            snprintf(err, errlen, "an admin user exists: log in as one to add users");
            goto refuse;
        }
        if (old != NULL) {
            snprintf(err, errlen,
                     "user '%s' exists (change its password with user passwd, or "
                     "remove it first)",
                     u->name);
            goto refuse;
        }
        if (auth_user_validate(u, 1, err, errlen) != 0)
            goto refuse;
        if (t->n_users >= AUTH_USERS_MAX) {
            snprintf(err, errlen, "the user table is full (%d users)", AUTH_USERS_MAX);
            goto refuse;
        }
        /* Sorted by name: the table reads the same on every member. */
        for (size_t i = 0; i < t->n_users; i++) {
            if (n == i && strcmp(t->users[i]->name, u->name) > 0)
                users[n++] = (Shale__User *)u;
            users[n++] = t->users[i];
        }
        if (n == t->n_users)
            users[n++] = (Shale__User *)u;
        break;
    case SHALE__USER_OP__USER_OP_REMOVE:
    case SHALE__USER_OP__USER_OP_PASSWD:
        if (old == NULL) {
            *code = SHALE_ENOTFOUND;
            snprintf(err, errlen, "no user '%s'", u->name);
            goto refuse;
        }
        if (c->op == SHALE__USER_OP__USER_OP_PASSWD) {
            changed = *old;
            changed.password = u->password;
            if (auth_user_validate(&changed, 1, err, errlen) != 0)
                goto refuse;
        }
        for (size_t i = 0; i < t->n_users; i++) {
            if (t->users[i] != old)
                users[n++] = t->users[i];
            else if (c->op == SHALE__USER_OP__USER_OP_PASSWD)
                users[n++] = &changed;
        }
        break;
    default:
        snprintf(err, errlen, "unknown user change %d", (int)c->op);
        goto refuse;
    }
    Shale__UserTable next = SHALE__USER_TABLE__INIT;
    next.has_version = 1;
    next.version = (t->has_version ? t->version : 0) + 1;
    next.n_users = n;
    next.users = users;
    next.last_change = c->session;
    Shale__UserTable *out = table_dup(&next);
    free(users);
    if (out == NULL) {
        *code = SHALE_ENOMEM;
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *code = 0;
    return out;
refuse:
    free(users);
    return NULL;
}

Shale__UserTable *auth_table_copy(const Shale__UserTable *t, int with_hashes)
{
    static const Shale__UserTable empty = SHALE__USER_TABLE__INIT;
    if (t == NULL)
        t = &empty;
    Shale__UserTable shallow = *t;
    shallow.last_change = NULL;
    Shale__User *copies = NULL;
    Shale__User **ptrs = NULL;
    if (!with_hashes && t->n_users > 0) {
        copies = malloc(t->n_users * sizeof(*copies));
        ptrs = malloc(t->n_users * sizeof(*ptrs));
        if (copies == NULL || ptrs == NULL) {
            free(copies);
            free(ptrs);
            return NULL;
        }
        for (size_t i = 0; i < t->n_users; i++) {
            copies[i] = *t->users[i];
            copies[i].password = NULL;
            ptrs[i] = &copies[i];
        }
        shallow.users = ptrs;
    }
    Shale__UserTable *out = table_dup(&shallow);
    free(copies);
    free(ptrs);
    return out;
}

/* ---- Permissions ----------------------------------------------------------------*/

/* What a request type is, for the table below. */
typedef enum verb_class {
    V_DENY,         /* unknown, answers, HELLO */
    V_DATA_READ,    /* keyed reads */
    V_DATA_WRITE,   /* keyed writes */
    V_STATUS,       /* a node describing itself */
    V_CLUSTER_READ, /* the cluster map */
    V_ADMIN,        /* membership, map changes, raw state, users */
} verb_class_t;

static verb_class_t verb_class(uint16_t type)
{
    switch (type) {
    case SHALE_MSG_GET_REQ:
    case SHALE_MSG_MGET_REQ:
    case SHALE_MSG_TXN_REQ: /* the verb alone: read; with a put/delete, readwrite (below) */
    case SHALE_MSG_SCAN_REQ: /* the "key" checked is the scan's prefix (below) */
    case SHALE_MSG_WATCH_REQ: /* the "key" checked is the watched key or prefix */
        return V_DATA_READ;
    case SHALE_MSG_PUT_REQ:
    case SHALE_MSG_DEL_REQ:
    case SHALE_MSG_CAS_REQ:
    case SHALE_MSG_MPUT_REQ:
        return V_DATA_WRITE;
    case SHALE_MSG_STATUS_REQ:
    case SHALE_MSG_CLOCK_REQ: /* the time of day, for offset estimation */
        return V_STATUS;
    case SHALE_MSG_MAP_GET_REQ:
        return V_CLUSTER_READ;
    case SHALE_MSG_MEMBER_ADD_REQ:
    case SHALE_MSG_MEMBER_REMOVE_REQ:
    case SHALE_MSG_LEADER_TRANSFER_REQ:
    case SHALE_MSG_MAP_CAS_REQ:
    case SHALE_MSG_SNAP_FETCH_REQ: /* a whole replica's data */
    case SHALE_MSG_MIG_EXPORT_REQ: /* a whole slot's data */
    case SHALE_MSG_MIG_IMPORT_REQ:
    case SHALE_MSG_CHECK_REQ: /* proposes an entry; a result shows row checksums */
    case SHALE_MSG_MIG_PUSH_REQ: /* a map for the group's ownership record */
    case SHALE_MSG_USER_CHANGE_REQ:
    case SHALE_MSG_USER_LIST_REQ:
        return V_ADMIN;
    default:
        return V_DENY;
    }
}

int auth_allowed(auth_role_t role, const uint8_t *prefix, size_t plen, uint16_t type,
                 const uint8_t *key, size_t klen)
{
    if (role < AUTH_ROLE_READ || role > AUTH_ROLE_ADMIN)
        return 0;
    switch (verb_class(type)) {
    case V_DATA_WRITE:
    case V_DATA_READ:
        if (verb_class(type) == V_DATA_WRITE && role < AUTH_ROLE_READWRITE)
            return 0;
        if (plen == 0)
            return 1;
        return key != NULL && klen >= plen && memcmp(key, prefix, plen) == 0;
    case V_STATUS:
        return 1;
    case V_CLUSTER_READ:
        return plen == 0;
    case V_ADMIN:
        return role == AUTH_ROLE_ADMIN && plen == 0;
    case V_DENY:
    default:
        return 0;
    }
}

/* A TXN: with a put or delete in either branch it needs what a PUT needs
 * (readwrite), else what a GET needs (read); every key of its compares and
 * of both branches must pass the key prefix. */
static int txn_allowed(const Shale__User *u, const Shale__TxnRequest *x, char *why, size_t whylen)
{
    auth_role_t role = (auth_role_t)u->role;
    const uint8_t *pre = u->has_key_prefix ? u->key_prefix.data : NULL;
    size_t plen = u->has_key_prefix ? u->key_prefix.len : 0;
    int writes = 0;
    for (size_t i = 0; i < x->n_success + x->n_failure; i++) {
        const Shale__TxnOp *o = i < x->n_success ? x->success[i] : x->failure[i - x->n_success];
        writes |= o->type != SHALE__TXN_OP_TYPE__TXN_GET;
    }
    uint16_t as = writes ? SHALE_MSG_PUT_REQ : SHALE_MSG_TXN_REQ;
    if (!auth_allowed(role, NULL, 0, as, NULL, 0)) {
        snprintf(why, whylen, "user '%s' (role %s) may not send a TXN%s", u->name,
                 auth_role_name(role), writes ? " with puts or deletes (needs readwrite)" : "");
        return 0;
    }
    int ok = 1;
    for (size_t i = 0; i < x->n_compares && ok; i++)
        ok = auth_allowed(role, pre, plen, as, x->compares[i]->key.data, x->compares[i]->key.len);
    for (size_t i = 0; i < x->n_success + x->n_failure && ok; i++) {
        const Shale__TxnOp *o = i < x->n_success ? x->success[i] : x->failure[i - x->n_success];
        ok = auth_allowed(role, pre, plen, as, o->key.data, o->key.len);
    }
    if (!ok)
        snprintf(why, whylen, "user '%s' may only use keys that begin with its prefix (TXN)",
                 u->name);
    return ok;
}

int auth_request_allowed(const Shale__User *u, uint16_t type, const ProtobufCMessage *msg,
                         char *why, size_t whylen)
{
    if (u == NULL) {
        snprintf(why, whylen, "this process requires a user: log in with a user name and "
                             "password (HELLO credential)");
        return 0;
    }
    auth_role_t role = (auth_role_t)u->role;
    const uint8_t *pre = u->has_key_prefix ? u->key_prefix.data : NULL;
    size_t plen = u->has_key_prefix ? u->key_prefix.len : 0;
    const ProtobufCBinaryData *keys = NULL;
    size_t nkeys = 0;
    Shale__KeyValue **items = NULL;
    switch (msg != NULL ? type : 0) {
    case SHALE_MSG_GET_REQ:
        keys = &((const Shale__GetRequest *)msg)->key;
        nkeys = 1;
        break;
    case SHALE_MSG_PUT_REQ:
        keys = &((const Shale__PutRequest *)msg)->key;
        nkeys = 1;
        break;
    case SHALE_MSG_DEL_REQ:
        keys = &((const Shale__DeleteRequest *)msg)->key;
        nkeys = 1;
        break;
    case SHALE_MSG_CAS_REQ:
        keys = &((const Shale__CasRequest *)msg)->key;
        nkeys = 1;
        break;
    case SHALE_MSG_MGET_REQ:
        keys = ((const Shale__MGetRequest *)msg)->keys;
        nkeys = ((const Shale__MGetRequest *)msg)->n_keys;
        break;
    case SHALE_MSG_MPUT_REQ:
        items = ((const Shale__MPutRequest *)msg)->items;
        nkeys = ((const Shale__MPutRequest *)msg)->n_items;
        break;
    case SHALE_MSG_TXN_REQ:
        return txn_allowed(u, (const Shale__TxnRequest *)msg, why, whylen);
    case SHALE_MSG_WATCH_REQ:
        /* A watched prefix must begin with the user's key prefix, as a key
         * must: a prefixed user watches only inside it. */
        keys = &((const Shale__WatchRequest *)msg)->key;
        nkeys = 1;
        break;
    case SHALE_MSG_SCAN_REQ: {
        /* A scan is refused, not clamped, unless its prefix begins with the
         * user's key prefix: a prefixed user scans only inside it (an empty
         * scan prefix is the whole keyspace, so refused for such a user). */
        const ProtobufCBinaryData *sp = &((const Shale__ScanRequest *)msg)->prefix;
        int has = ((const Shale__ScanRequest *)msg)->has_prefix;
        if (auth_allowed(role, pre, plen, type, has ? sp->data : NULL, has ? sp->len : 0))
            return 1;
        if (plen > 0 && auth_allowed(role, NULL, 0, type, NULL, 0))
            snprintf(why, whylen, "user '%s' may only scan with a prefix that begins with its "
                     "key prefix (%s)", u->name, frame_type_name(type));
        else
            snprintf(why, whylen, "user '%s' (role %s) may not send %s", u->name,
                     auth_role_name(role), frame_type_name(type));
        return 0;
    }
    default:
        break;
    }
    int ok;
    if (nkeys == 0) {
        ok = auth_allowed(role, pre, plen, type, NULL, 0);
    } else {
        ok = 1;
        for (size_t i = 0; i < nkeys && ok; i++) {
            const ProtobufCBinaryData *k = items != NULL ? &items[i]->key : &keys[i];
            ok = auth_allowed(role, pre, plen, type, k->data, k->len);
        }
    }
    if (!ok) {
        verb_class_t vc = verb_class(type);
        if (plen > 0 && (vc == V_DATA_READ || vc == V_DATA_WRITE) &&
            auth_allowed(role, NULL, 0, type, NULL, 0))
            snprintf(why, whylen, "user '%s' may only use keys that begin with its prefix (%s)",
                     u->name, frame_type_name(type));
        else
            snprintf(why, whylen, "user '%s' (role %s%s) may not send %s", u->name,
                     auth_role_name(role), plen > 0 ? ", key prefix" : "", frame_type_name(type));
    }
    return ok;
}

/* ---- HELLO credential -----------------------------------------------------------*/

int auth_credential_pack(const char *user, const void *pw, size_t pwlen, uint8_t **out, size_t *len)
{
    char err[AUTH_ERRLEN];
    *out = NULL;
    if (auth_name_check(user, err, sizeof(err)) != 0 ||
        password_check(pw, pwlen, err, sizeof(err)) != 0)
        return SHALE_EINVAL;
    Shale__Credential c = SHALE__CREDENTIAL__INIT;
    c.user = (char *)user;
    c.password.data = (uint8_t *)pw;
    c.password.len = pwlen;
    *len = shale__credential__get_packed_size(&c);
    *out = malloc(*len);
    if (*out == NULL)
        return SHALE_ENOMEM;
    shale__credential__pack(&c, *out);
    return 0;
}

Shale__Credential *auth_credential_unpack(const uint8_t *buf, size_t len)
{
    char err[AUTH_ERRLEN];
    Shale__Credential *c = shale__credential__unpack(NULL, len, buf);
    if (c == NULL)
        return NULL;
    if (auth_name_check(c->user, err, sizeof(err)) != 0 ||
        password_check(c->password.data, c->password.len, err, sizeof(err)) != 0) {
        auth_credential_free(c);
        return NULL;
    }
    return c;
}

void auth_credential_free(Shale__Credential *c)
{
    if (c == NULL)
        return;
    if (c->password.data != NULL)
        OPENSSL_cleanse(c->password.data, c->password.len);
    shale__credential__free_unpacked(c, NULL);
}

int auth_password_file_read(const char *path, char **pw, size_t *len, char *err,
                            size_t errlen)
{
    *pw = NULL;
    *len = 0;
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read password file %s", path);
        return -1;
    }
    char buf[AUTH_PASSWORD_MAX + 2];
    int ok = fgets(buf, sizeof(buf), f) != NULL;
    if (f != stdin)
        fclose(f);
    size_t n = ok ? strlen(buf) : 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (n == 0 || n > AUTH_PASSWORD_MAX) {
        OPENSSL_cleanse(buf, sizeof(buf));
        snprintf(err, errlen, "password file %s: the first line must hold a password of 1..%d bytes",
                 path, AUTH_PASSWORD_MAX);
        return -1;
    }
    *pw = malloc(n);
    if (*pw == NULL) {
        OPENSSL_cleanse(buf, sizeof(buf));
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(*pw, buf, n);
    *len = n;
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}
