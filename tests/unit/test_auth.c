/* The credential module (cluster/auth.c): password hashes, user records, the
 * user table and the permission table. Pure functions: no processes, no
 * sockets. Hashes use cheap scrypt parameters (log2_n 10) except where the
 * defaults themselves are the point. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "frame.h"
#include "login.h"
#include "login_limit.h"

static const auth_kdf_params_t cheap = {.log2_n = 10, .r = 8, .p = 1};

static Shale__PasswordHash *hash_of(const char *pw)
{
    Shale__PasswordHash *h = NULL;
    char err[AUTH_ERRLEN];
    ck_assert_int_eq(auth_hash_password(pw, strlen(pw), &cheap, &h, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(h);
    return h;
}

static int verify(const Shale__PasswordHash *h, const char *pw)
{
    char err[AUTH_ERRLEN];
    return auth_verify_password(h, pw, strlen(pw), err, sizeof(err));
}

START_TEST(test_hash_verify)
{
    char err[AUTH_ERRLEN];
    /* The defaults, once: what a real user record holds. */
    Shale__PasswordHash *d = NULL;
    ck_assert_int_eq(auth_hash_password("correct horse", 13, NULL, &d, err, sizeof(err)), 0);
    ck_assert_str_eq(d->kdf, "scrypt");
    ck_assert_uint_eq(d->log2_n, auth_kdf_default.log2_n);
    ck_assert_uint_eq(d->r, auth_kdf_default.r);
    ck_assert_uint_eq(d->p, auth_kdf_default.p);
    ck_assert_uint_eq(d->salt.len, AUTH_SALT_LEN);
    ck_assert_uint_eq(d->hash.len, AUTH_HASH_LEN);
    ck_assert_int_eq(verify(d, "correct horse"), 0);
    auth_hash_free(d);

    /* Parameters travel with the hash: a record made with other ones
     * verifies by its own. */
    Shale__PasswordHash *h = hash_of("s3cret");
    ck_assert_uint_eq(h->log2_n, 10);
    ck_assert_int_eq(verify(h, "s3cret"), 0);
    /* Salted: the same password hashes differently each time. */
    Shale__PasswordHash *h2 = hash_of("s3cret");
    ck_assert_mem_ne(h->salt.data, h2->salt.data, AUTH_SALT_LEN);
    ck_assert_mem_ne(h->hash.data, h2->hash.data, AUTH_HASH_LEN);
    ck_assert_int_eq(verify(h2, "s3cret"), 0);
    auth_hash_free(h);
    auth_hash_free(h2);

    /* Passwords of 0 or more than AUTH_PASSWORD_MAX bytes are refused. */
    char big[AUTH_PASSWORD_MAX + 1];
    memset(big, 'a', sizeof(big));
    ck_assert_int_eq(auth_hash_password("", 0, &cheap, &h, err, sizeof(err)), SHALE_EINVAL);
    ck_assert_ptr_null(h);
    ck_assert_int_eq(auth_hash_password(big, sizeof(big), &cheap, &h, err, sizeof(err)),
                     SHALE_EINVAL);
    ck_assert_int_eq(auth_hash_password(big, AUTH_PASSWORD_MAX, &cheap, &h, err, sizeof(err)), 0);
    ck_assert_int_eq(auth_verify_password(h, big, AUTH_PASSWORD_MAX, err, sizeof(err)), 0);
    auth_hash_free(h);
    /* Parameters out of bounds are refused before any work. */
    auth_kdf_params_t huge = {.log2_n = 30, .r = 8, .p = 1};
    ck_assert_int_eq(auth_hash_password("x", 1, &huge, &h, err, sizeof(err)), SHALE_EINVAL);
    auth_kdf_params_t mem = {.log2_n = 20, .r = 32, .p = 1}; /* 4 GiB */
    ck_assert_int_eq(auth_kdf_check(&mem, err, sizeof(err)), SHALE_EINVAL);
    ck_assert_int_eq(auth_kdf_check(&auth_kdf_default, err, sizeof(err)), 0);
    auth_verify_dummy("anything", 8); /* runs, matches nothing, frees what it used */
}
END_TEST

START_TEST(test_wrong_password)
{
    Shale__PasswordHash *h = hash_of("hunter2");
    ck_assert_int_eq(verify(h, "hunter3"), SHALE_EAUTH);
    ck_assert_int_eq(verify(h, "hunter"), SHALE_EAUTH);
    ck_assert_int_eq(verify(h, "hunter22"), SHALE_EAUTH);
    ck_assert_int_eq(verify(h, "Hunter2"), SHALE_EAUTH);
    char err[AUTH_ERRLEN];
    ck_assert_int_eq(auth_verify_password(h, "", 0, err, sizeof(err)), SHALE_EAUTH);
    /* HMAC pads keys with zero bytes, so "hunter2\0" would hash as
     * "hunter2": passwords with a NUL are refused, never matched. */
    ck_assert_int_eq(auth_verify_password(h, "hunter2\0", 8, err, sizeof(err)), SHALE_EAUTH);
    Shale__PasswordHash *z = NULL;
    ck_assert_int_eq(auth_hash_password("a\0b", 3, &cheap, &z, err, sizeof(err)), SHALE_EINVAL);
    ck_assert_ptr_null(z);
    ck_assert_int_eq(auth_verify_password(NULL, "hunter2", 7, err, sizeof(err)), SHALE_EINVAL);
    auth_hash_free(h);
}
END_TEST

/* Every single-byte change of a stored hash record — salt, hash,
 * parameters, function name, encoding — either fails to decode or never
 * verifies the right password; and no change makes a verifier run with
 * parameters outside the bounds. */
START_TEST(test_tampered_record)
{
    Shale__PasswordHash *h = hash_of("pa55word");
    char err[AUTH_ERRLEN];
    size_t len = shale__password_hash__get_packed_size(h);
    uint8_t *buf = malloc(len);
    shale__password_hash__pack(h, buf);
    int decoded = 0, eauth = 0, einval = 0;
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            Shale__PasswordHash *t = shale__password_hash__unpack(NULL, len, buf);
            if (t != NULL) {
                decoded++;
                int rv = auth_verify_password(t, "pa55word", 8, err, sizeof(err));
                ck_assert_msg(rv != 0, "byte %zu bit %d changed and it still verifies", i, bit);
                eauth += rv == SHALE_EAUTH;
                einval += rv == SHALE_EINVAL;
                shale__password_hash__free_unpacked(t, NULL);
            }
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    ck_assert_int_gt(decoded, 8 * (AUTH_SALT_LEN + AUTH_HASH_LEN) - 1);
    ck_assert_int_gt(eauth, 0);
    ck_assert_int_gt(einval, 0);
    /* Untouched, it still verifies. */
    Shale__PasswordHash *t = shale__password_hash__unpack(NULL, len, buf);
    ck_assert_int_eq(verify(t, "pa55word"), 0);
    shale__password_hash__free_unpacked(t, NULL);
    free(buf);

    /* Named changes. */
    Shale__PasswordHash c = *h;
    c.kdf = "pbkdf2";
    ck_assert_int_eq(verify(&c, "pa55word"), SHALE_EINVAL);
    c = *h;
    c.log2_n = 11; /* raised parameters, old hash: no match */
    ck_assert_int_eq(verify(&c, "pa55word"), SHALE_EAUTH);
    c.log2_n = 40; /* refused before allocating 2^40 blocks */
    ck_assert_int_eq(verify(&c, "pa55word"), SHALE_EINVAL);
    c = *h;
    c.salt.len = AUTH_SALT_LEN - 1;
    ck_assert_int_eq(verify(&c, "pa55word"), SHALE_EINVAL);
    c = *h;
    c.hash.len = AUTH_HASH_LEN - 1;
    ck_assert_int_eq(verify(&c, "pa55word"), SHALE_EINVAL);
    c = *h;
    c.p = 0;
    ck_assert_int_eq(verify(&c, "pa55word"), SHALE_EINVAL);
    auth_hash_free(h);
}
END_TEST

/* The request types of proto/frame.h and the lowest role allowed each
 * (0: none, not even admin); keyed: a data verb. */
typedef struct perm_row {
    uint16_t type;
    auth_role_t min;
    int keyed;
    int prefix_ok; /* a prefix-restricted user may send it (on its keys) */
} perm_row_t;

static const perm_row_t perms[] = {
    {SHALE_MSG_GET_REQ, AUTH_ROLE_READ, 1, 1},
    {SHALE_MSG_MGET_REQ, AUTH_ROLE_READ, 1, 1},
    {SHALE_MSG_PUT_REQ, AUTH_ROLE_READWRITE, 1, 1},
    {SHALE_MSG_DEL_REQ, AUTH_ROLE_READWRITE, 1, 1},
    {SHALE_MSG_CAS_REQ, AUTH_ROLE_READWRITE, 1, 1},
    {SHALE_MSG_MPUT_REQ, AUTH_ROLE_READWRITE, 1, 1},
    {SHALE_MSG_TXN_REQ, AUTH_ROLE_READ, 1, 1}, /* a get-only txn; with writes: readwrite */
    {SHALE_MSG_SCAN_REQ, AUTH_ROLE_READ, 1, 1},  /* "key" = the scan's prefix */
    {SHALE_MSG_WATCH_REQ, AUTH_ROLE_READ, 1, 1}, /* "key" = the watched key or prefix */
    {SHALE_MSG_STATUS_REQ, AUTH_ROLE_READ, 0, 1},
    {SHALE_MSG_CLOCK_REQ, AUTH_ROLE_READ, 0, 1},
    {SHALE_MSG_MAP_GET_REQ, AUTH_ROLE_READ, 0, 0},
    {SHALE_MSG_MEMBER_ADD_REQ, AUTH_ROLE_ADMIN, 0, 0},
    {SHALE_MSG_MEMBER_REMOVE_REQ, AUTH_ROLE_ADMIN, 0, 0},
    {SHALE_MSG_LEADER_TRANSFER_REQ, AUTH_ROLE_ADMIN, 0, 0},
    {SHALE_MSG_MAP_CAS_REQ, AUTH_ROLE_ADMIN, 0, 0},
    {SHALE_MSG_SNAP_FETCH_REQ, AUTH_ROLE_ADMIN, 0, 0},
    {SHALE_MSG_MIG_EXPORT_REQ, AUTH_ROLE_ADMIN, 0, 0},
    {SHALE_MSG_MIG_IMPORT_REQ, AUTH_ROLE_ADMIN, 0, 0},
    {SHALE_MSG_CHECK_REQ, AUTH_ROLE_ADMIN, 0, 0},
    {SHALE_MSG_MIG_PUSH_REQ, AUTH_ROLE_ADMIN, 0, 0},
    {SHALE_MSG_USER_CHANGE_REQ, AUTH_ROLE_ADMIN, 0, 0},
    {SHALE_MSG_USER_LIST_REQ, AUTH_ROLE_ADMIN, 0, 0},
};
#define NPERMS (sizeof(perms) / sizeof(perms[0]))

static const perm_row_t *perm_of(uint16_t type)
{
    for (size_t i = 0; i < NPERMS; i++)
        if (perms[i].type == type)
            return &perms[i];
    return NULL;
}

/* Each role x each of the 65536 type numbers: a request type named in the
 * table is allowed exactly from its role up; every other number — HELLO,
 * answers, ERROR, reserved and unassigned numbers — is refused for every
 * role, admin included. */
START_TEST(test_role_by_type)
{
    const uint8_t *k = (const uint8_t *)"user:1";
    int allowed_somewhere = 0;
    for (uint32_t t = 0; t <= 0xffff; t++) {
        const perm_row_t *p = perm_of((uint16_t)t);
        for (int role = AUTH_ROLE_NONE; role <= AUTH_ROLE_ADMIN + 1; role++) {
            int want = p != NULL && role >= (int)p->min && role <= AUTH_ROLE_ADMIN;
            int got = auth_allowed((auth_role_t)role, NULL, 0, (uint16_t)t, k, 6);
            ck_assert_msg(got == want, "role %s type %u (%s): allowed %d, want %d",
                          auth_role_name(role), t, frame_type_name((uint16_t)t), got, want);
            /* Without a key the verb alone is asked about. */
            ck_assert_int_eq(auth_allowed((auth_role_t)role, NULL, 0, (uint16_t)t, NULL, 0), want);
            allowed_somewhere += got;
        }
    }
    ck_assert_int_eq(allowed_somewhere, 8 * 3 + 4 * 2 + 11 * 1); /* 8 read-role types incl. WATCH and CLOCK; 11 admin incl. CHECK and MIG_PUSH */
    /* Every request type the protocol knows is in the table: a new one
     * must be given a row (and a role) here, not slip through as denied or
     * allowed by accident. */
    for (uint32_t t = 0; t <= SHALE_MSG_MAX_; t++) {
        const char *n = frame_type_name((uint16_t)t);
        if (!frame_type_known((uint16_t)t) || t == SHALE_MSG_HELLO || t == SHALE_MSG_HELLO_REPLY ||
            t == SHALE_MSG_ERROR || strstr(n, "RESP") != NULL || t == SHALE_MSG_SNAP_CHUNK ||
            t == SHALE_MSG_MIG_BATCH)
            continue;
        ck_assert_msg(perm_of((uint16_t)t) != NULL, "request type %u (%s) has no row", t, n);
    }
}
END_TEST

START_TEST(test_prefix_restriction)
{
    const uint8_t *pre = (const uint8_t *)"app/";
    const struct {
        const char *key;
        int ok;
    } keys[] = {{"app/x", 1},       {"app/", 1},  {"app", 0},   {"ap", 0},
                {"other/app/x", 0}, {"App/x", 0}, {"app\\x", 0}};
    for (size_t i = 0; i < NPERMS; i++) {
        const perm_row_t *p = &perms[i];
        for (int role = AUTH_ROLE_READ; role <= AUTH_ROLE_READWRITE; role++) {
            int role_ok = role >= (int)p->min;
            for (size_t j = 0; j < sizeof(keys) / sizeof(keys[0]); j++) {
                int want = role_ok && p->prefix_ok && (!p->keyed || keys[j].ok);
                int got = auth_allowed((auth_role_t)role, pre, 4, p->type,
                                       (const uint8_t *)keys[j].key, strlen(keys[j].key));
                ck_assert_msg(got == want, "%s prefix app/ %s key %s: %d want %d",
                              auth_role_name(role), frame_type_name(p->type), keys[j].key, got,
                              want);
            }
            /* A keyed verb with no key is refused under a prefix. */
            ck_assert_int_eq(auth_allowed((auth_role_t)role, pre, 4, p->type, NULL, 0),
                             role_ok && p->prefix_ok && !p->keyed);
        }
    }
    /* Even an admin role with a prefix (a record auth_user_validate
     * refuses) gets no admin verb. */
    ck_assert_int_eq(auth_allowed(AUTH_ROLE_ADMIN, pre, 4, SHALE_MSG_MAP_CAS_REQ, NULL, 0), 0);
    /* A binary prefix compares bytes, NUL included. */
    const uint8_t bin[] = {0, 1};
    const uint8_t k1[] = {0, 1, 7}, k2[] = {0, 2, 7};
    ck_assert_int_eq(auth_allowed(AUTH_ROLE_READ, bin, 2, SHALE_MSG_GET_REQ, k1, 3), 1);
    ck_assert_int_eq(auth_allowed(AUTH_ROLE_READ, bin, 2, SHALE_MSG_GET_REQ, k2, 3), 0);
}
END_TEST

/* A TXN: read role for gets and compares only, readwrite once it has a put
 * or delete (in either branch); every key must pass the prefix. */
START_TEST(test_request_txn)
{
    char why[AUTH_ERRLEN];
    Shale__User u = SHALE__USER__INIT;
    u.name = "svc";
    u.role = SHALE__USER_ROLE__USER_READ;
    u.has_key_prefix = 1;
    u.key_prefix.data = (uint8_t *)"t1/";
    u.key_prefix.len = 3;
    Shale__TxnCompare c = SHALE__TXN_COMPARE__INIT, *cp = &c;
    c.key.data = (uint8_t *)"t1/a";
    c.key.len = 4;
    Shale__TxnOp g = SHALE__TXN_OP__INIT, p = SHALE__TXN_OP__INIT;
    Shale__TxnOp *gets[1] = {&g}, *puts[1] = {&p};
    g.type = SHALE__TXN_OP_TYPE__TXN_GET;
    g.key.data = (uint8_t *)"t1/b";
    g.key.len = 4;
    p.type = SHALE__TXN_OP_TYPE__TXN_PUT;
    p.key.data = (uint8_t *)"t1/c";
    p.key.len = 4;
    Shale__TxnRequest x = SHALE__TXN_REQUEST__INIT;
    x.n_compares = 1;
    x.compares = &cp;
    x.n_success = 1;
    x.success = gets;
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_TXN_REQ, &x.base, why, sizeof(why)), 1);
    /* A put in the failure branch makes it a write: read role refused. */
    x.n_failure = 1;
    x.failure = puts;
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_TXN_REQ, &x.base, why, sizeof(why)), 0);
    ck_assert_ptr_nonnull(strstr(why, "readwrite"));
    u.role = SHALE__USER_ROLE__USER_READWRITE;
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_TXN_REQ, &x.base, why, sizeof(why)), 1);
    /* Any key outside the prefix: the compare's, a get's, a put's. */
    c.key.data = (uint8_t *)"t2/a";
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_TXN_REQ, &x.base, why, sizeof(why)), 0);
    ck_assert_ptr_nonnull(strstr(why, "prefix"));
    c.key.data = (uint8_t *)"t1/a";
    g.key.data = (uint8_t *)"t2/b";
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_TXN_REQ, &x.base, why, sizeof(why)), 0);
    g.key.data = (uint8_t *)"t1/b";
    p.key.data = (uint8_t *)"t2/c";
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_TXN_REQ, &x.base, why, sizeof(why)), 0);
    p.key.data = (uint8_t *)"t1/c";
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_TXN_REQ, &x.base, why, sizeof(why)), 1);
    /* No user: refused. */
    ck_assert_int_eq(auth_request_allowed(NULL, SHALE_MSG_TXN_REQ, &x.base, why, sizeof(why)), 0);
}
END_TEST

/* A watched key or prefix must begin with a prefixed user's key prefix
 * ("{t1}" users watch "{t1}..." only); read role is enough. */
START_TEST(test_request_watch)
{
    char why[AUTH_ERRLEN];
    Shale__User u = SHALE__USER__INIT;
    u.name = "svc";
    u.role = SHALE__USER_ROLE__USER_READ;
    Shale__WatchRequest w = SHALE__WATCH_REQUEST__INIT;
    w.key.data = (uint8_t *)"{t2}k";
    w.key.len = 5;
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_WATCH_REQ, &w.base, why, sizeof(why)), 1);
    u.has_key_prefix = 1;
    u.key_prefix.data = (uint8_t *)"{t1}";
    u.key_prefix.len = 4;
    const struct {
        const char *k;
        int prefix, ok;
    } cases[] = {{"{t1}", 1, 1}, {"{t1}a", 1, 1}, {"{t1}a", 0, 1}, {"{t1", 1, 0},
                 {"{t2}k", 0, 0}, {"{t2}", 1, 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        w.key.data = (uint8_t *)cases[i].k;
        w.key.len = strlen(cases[i].k);
        w.has_prefix = 1;
        w.prefix = cases[i].prefix;
        ck_assert_msg(auth_request_allowed(&u, SHALE_MSG_WATCH_REQ, &w.base, why, sizeof(why)) ==
                          cases[i].ok, "WATCH '%s' prefix=%d", cases[i].k, cases[i].prefix);
    }
    ck_assert_int_eq(auth_request_allowed(NULL, SHALE_MSG_WATCH_REQ, &w.base, why, sizeof(why)), 0);
}
END_TEST

/* A scan's prefix must begin with a prefixed user's key prefix: refused
 * (not clamped) otherwise, an empty prefix included. */
START_TEST(test_request_scan)
{
    char why[AUTH_ERRLEN];
    Shale__User u = SHALE__USER__INIT;
    u.name = "svc";
    u.role = SHALE__USER_ROLE__USER_READ;
    Shale__ScanRequest q = SHALE__SCAN_REQUEST__INIT;
    /* No key prefix: any scan. */
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_SCAN_REQ, &q.base, why, sizeof(why)), 1);
    u.has_key_prefix = 1;
    u.key_prefix.data = (uint8_t *)"t1/";
    u.key_prefix.len = 3;
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_SCAN_REQ, &q.base, why, sizeof(why)), 0);
    ck_assert_ptr_nonnull(strstr(why, "prefix"));
    const struct {
        const char *p;
        int ok;
    } cases[] = {{"t1/", 1}, {"t1/x", 1}, {"t1", 0}, {"t", 0}, {"t2/", 0}, {"", 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        q.has_prefix = 1;
        q.prefix.data = (uint8_t *)cases[i].p;
        q.prefix.len = strlen(cases[i].p);
        ck_assert_msg(auth_request_allowed(&u, SHALE_MSG_SCAN_REQ, &q.base, why, sizeof(why)) ==
                          cases[i].ok, "SCAN prefix '%s'", cases[i].p);
    }
    /* No user: refused. */
    q.prefix.data = (uint8_t *)"t1/";
    q.prefix.len = 3;
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_SCAN_REQ, &q.base, why, sizeof(why)), 1);
    ck_assert_int_eq(auth_request_allowed(NULL, SHALE_MSG_SCAN_REQ, &q.base, why, sizeof(why)), 0);
}
END_TEST

/* auth_request_allowed checks every key of a multi-key request. */
START_TEST(test_request_keys)
{
    char why[AUTH_ERRLEN];
    Shale__User u = SHALE__USER__INIT;
    u.name = "svc";
    u.role = SHALE__USER_ROLE__USER_READWRITE;
    u.has_key_prefix = 1;
    u.key_prefix.data = (uint8_t *)"t1/";
    u.key_prefix.len = 3;

    ProtobufCBinaryData keys[3] = {
        {3, (uint8_t *)"t1/"}, {4, (uint8_t *)"t1/a"}, {4, (uint8_t *)"t2/a"}};
    Shale__MGetRequest mg = SHALE__MGET_REQUEST__INIT;
    mg.keys = keys;
    mg.n_keys = 2;
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_MGET_REQ, &mg.base, why, sizeof(why)), 1);
    mg.n_keys = 3; /* the last key is outside the prefix */
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_MGET_REQ, &mg.base, why, sizeof(why)), 0);
    ck_assert_ptr_nonnull(strstr(why, "prefix"));
    ck_assert_ptr_null(strstr(why, "t2/a")); /* never a key's bytes */
    mg.n_keys = 0;
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_MGET_REQ, &mg.base, why, sizeof(why)), 0);

    Shale__KeyValue kv[2] = {SHALE__KEY_VALUE__INIT, SHALE__KEY_VALUE__INIT};
    Shale__KeyValue *items[2] = {&kv[0], &kv[1]};
    kv[0].key = keys[1];
    kv[1].key = keys[2];
    Shale__MPutRequest mp = SHALE__MPUT_REQUEST__INIT;
    mp.items = items;
    mp.n_items = 1;
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_MPUT_REQ, &mp.base, why, sizeof(why)), 1);
    mp.n_items = 2;
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_MPUT_REQ, &mp.base, why, sizeof(why)), 0);

    Shale__PutRequest put = SHALE__PUT_REQUEST__INIT;
    put.key = keys[1];
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_PUT_REQ, &put.base, why, sizeof(why)), 1);
    put.key = keys[2];
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_PUT_REQ, &put.base, why, sizeof(why)), 0);
    Shale__CasRequest cas = SHALE__CAS_REQUEST__INIT;
    cas.key = keys[2];
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_CAS_REQ, &cas.base, why, sizeof(why)), 0);
    Shale__DeleteRequest del = SHALE__DELETE_REQUEST__INIT;
    del.key = keys[0];
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_DEL_REQ, &del.base, why, sizeof(why)), 1);

    /* A read user: reads yes, the write is refused with its role named. */
    u.role = SHALE__USER_ROLE__USER_READ;
    Shale__GetRequest get = SHALE__GET_REQUEST__INIT;
    get.key = keys[1];
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_GET_REQ, &get.base, why, sizeof(why)), 1);
    put.key = keys[1];
    ck_assert_int_eq(auth_request_allowed(&u, SHALE_MSG_PUT_REQ, &put.base, why, sizeof(why)), 0);
    ck_assert_ptr_nonnull(strstr(why, "role read"));
    ck_assert_ptr_nonnull(strstr(why, "PUT"));

    /* Not authenticated: nothing. */
    ck_assert_int_eq(auth_request_allowed(NULL, SHALE_MSG_GET_REQ, &get.base, why, sizeof(why)), 0);
    Shale__StatusRequest st = SHALE__STATUS_REQUEST__INIT;
    ck_assert_int_eq(auth_request_allowed(NULL, SHALE_MSG_STATUS_REQ, &st.base, why, sizeof(why)),
                     0);
    /* An admin without a prefix: admin verbs and any key. */
    Shale__User a = SHALE__USER__INIT;
    a.name = "root";
    a.role = SHALE__USER_ROLE__USER_ADMIN;
    Shale__MapCasRequest mc = SHALE__MAP_CAS_REQUEST__INIT;
    ck_assert_int_eq(auth_request_allowed(&a, SHALE_MSG_MAP_CAS_REQ, &mc.base, why, sizeof(why)),
                     1);
    mg.n_keys = 3;
    ck_assert_int_eq(auth_request_allowed(&a, SHALE_MSG_MGET_REQ, &mg.base, why, sizeof(why)), 1);
    /* An unknown type, even with a message, even for an admin. */
    ck_assert_int_eq(auth_request_allowed(&a, 200, &st.base, why, sizeof(why)), 0);
    ck_assert_int_eq(auth_request_allowed(&a, SHALE_MSG_MAP_RESP, &st.base, why, sizeof(why)), 0);
}
END_TEST

START_TEST(test_user_records)
{
    char err[AUTH_ERRLEN];
    ck_assert_int_eq(auth_role_parse("read"), AUTH_ROLE_READ);
    ck_assert_int_eq(auth_role_parse("readwrite"), AUTH_ROLE_READWRITE);
    ck_assert_int_eq(auth_role_parse("admin"), AUTH_ROLE_ADMIN);
    ck_assert_int_eq(auth_role_parse("root"), AUTH_ROLE_NONE);
    ck_assert_int_eq(auth_role_parse(NULL), AUTH_ROLE_NONE);
    ck_assert_str_eq(auth_role_name(AUTH_ROLE_READWRITE), "readwrite");

    ck_assert_int_eq(auth_name_check("alice", err, sizeof(err)), 0);
    ck_assert_int_eq(auth_name_check("svc.router-1@dc_2", err, sizeof(err)), 0);
    ck_assert_int_eq(auth_name_check("", err, sizeof(err)), SHALE_EINVAL);
    ck_assert_int_eq(auth_name_check(NULL, err, sizeof(err)), SHALE_EINVAL);
    ck_assert_int_eq(auth_name_check("a b", err, sizeof(err)), SHALE_EINVAL);
    ck_assert_int_eq(auth_name_check("a\nb", err, sizeof(err)), SHALE_EINVAL);
    ck_assert_int_eq(auth_name_check("a\"b", err, sizeof(err)), SHALE_EINVAL);
    char longname[AUTH_NAME_MAX + 2];
    memset(longname, 'n', sizeof(longname));
    longname[AUTH_NAME_MAX] = '\0';
    ck_assert_int_eq(auth_name_check(longname, err, sizeof(err)), 0);
    longname[AUTH_NAME_MAX] = 'n';
    longname[AUTH_NAME_MAX + 1] = '\0';
    ck_assert_int_eq(auth_name_check(longname, err, sizeof(err)), SHALE_EINVAL);

    Shale__PasswordHash *h = hash_of("pw");
    Shale__User u = SHALE__USER__INIT;
    u.name = "alice";
    u.role = SHALE__USER_ROLE__USER_ADMIN;
    u.password = h;
    ck_assert_int_eq(auth_user_validate(&u, 1, err, sizeof(err)), 0);
    u.has_key_prefix = 1;
    u.key_prefix.data = (uint8_t *)"a/";
    u.key_prefix.len = 2;
    ck_assert_int_eq(auth_user_validate(&u, 1, err, sizeof(err)), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "admin"));
    u.role = SHALE__USER_ROLE__USER_READ;
    ck_assert_int_eq(auth_user_validate(&u, 1, err, sizeof(err)), 0);
    u.role = (Shale__UserRole)4;
    ck_assert_int_eq(auth_user_validate(&u, 1, err, sizeof(err)), SHALE_EINVAL);
    u.role = (Shale__UserRole)0;
    ck_assert_int_eq(auth_user_validate(&u, 1, err, sizeof(err)), SHALE_EINVAL);
    u.role = SHALE__USER_ROLE__USER_READ;
    u.password = NULL;
    ck_assert_int_eq(auth_user_validate(&u, 1, err, sizeof(err)), SHALE_EINVAL);
    ck_assert_int_eq(auth_user_validate(&u, 0, err, sizeof(err)), 0);
    u.password = h;

    /* Encoding round trip; garbage and an invalid record do not decode. */
    size_t len;
    uint8_t *buf = auth_user_pack(&u, &len);
    Shale__User *back = auth_user_unpack(buf, len, 1);
    ck_assert_ptr_nonnull(back);
    ck_assert_str_eq(back->name, "alice");
    ck_assert_int_eq(back->role, SHALE__USER_ROLE__USER_READ);
    ck_assert_mem_eq(back->key_prefix.data, "a/", 2);
    ck_assert_int_eq(verify(back->password, "pw"), 0);
    shale__user__free_unpacked(back, NULL);
    free(buf);
    uint8_t junk[7] = {0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06};
    ck_assert_ptr_null(auth_user_unpack(junk, sizeof(junk), 0));
    u.role = SHALE__USER_ROLE__USER_ADMIN; /* admin + prefix: packs, never loads */
    buf = auth_user_pack(&u, &len);
    ck_assert_ptr_null(auth_user_unpack(buf, len, 1));
    free(buf);
    auth_hash_free(h);
}
END_TEST

static Shale__UserTable *apply(const Shale__UserTable *t, Shale__UserOp op, const char *name,
                               Shale__UserRole role, Shale__PasswordHash *pw, int want_code)
{
    Shale__User u = SHALE__USER__INIT;
    u.name = (char *)name;
    u.role = role;
    u.password = pw;
    Shale__Session ses = SHALE__SESSION__INIT;
    ses.client_id = 77;
    ses.seq = t != NULL ? t->version + 1 : 1;
    Shale__UserChangeRequest c = SHALE__USER_CHANGE_REQUEST__INIT;
    c.op = op;
    c.user = &u;
    c.session = &ses;
    int code = 99;
    char err[AUTH_ERRLEN] = "";
    Shale__UserTable *n = auth_table_apply(t, &c, &code, err, sizeof(err));
    ck_assert_msg(code == want_code, "%s %s: code %d want %d (%s)",
                  op == SHALE__USER_OP__USER_OP_ADD ? "add" : "other", name, code, want_code, err);
    ck_assert_int_eq(n != NULL, want_code == 0);
    if (want_code != 0)
        ck_assert_str_ne(err, "");
    return n;
}

/* One login through the service, run to its answer; returns its status. */
static int g_login_status;
static int g_login_done;
static void login_done(void *arg, int status, const char *user, const char *msg)
{
    (void)arg;
    (void)user;
    (void)msg;
    g_login_status = status;
    g_login_done = 1;
}

static int login_once(login_svc_t *ls, uv_loop_t *loop, const Shale__UserTable *t,
                      const char *user, const char *pw)
{
    uint8_t *cred = NULL;
    size_t clen = 0;
    char msg[LOGIN_MSGLEN];
    login_req_t *r = NULL;
    ck_assert_int_eq(auth_credential_pack(user, pw, strlen(pw), &cred, &clen), 0);
    g_login_done = 0;
    int rv = login_start(ls, "127.0.0.9:4000", cred, clen, t, login_done, NULL, &r, msg);
    free(cred);
    ck_assert_int_eq(rv, SHALE_OK);
    ck_assert_int_eq(g_login_done, 0); /* never inside login_start */
    while (!g_login_done)
        uv_run(loop, UV_RUN_ONCE);
    return g_login_status;
}

/* The verified-credential cache: a repeated good login skips the slow hash,
 * a wrong password never rides on it, a changed password stops matching.
 * Fails if the cache is gone (cached stays 0), keyed without the password
 * (the wrong password would pass) or without the stored record (the old
 * password would still pass after passwd). */
START_TEST(test_login_cache)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    login_svc_t ls;
    login_svc_init(&ls, &loop);
    Shale__PasswordHash *h1 = hash_of("first pass"), *h2 = hash_of("second pass");
    Shale__UserTable *t =
        apply(NULL, SHALE__USER_OP__USER_OP_ADD, "bob", SHALE__USER_ROLE__USER_READWRITE, h1, 0);

    ck_assert_int_eq(login_once(&ls, &loop, t, "bob", "first pass"), 0);
    ck_assert_uint_eq(ls.cached, 0);
    ck_assert_int_eq(login_once(&ls, &loop, t, "bob", "first pass"), 0);
    ck_assert_uint_eq(ls.cached, 1);
    ck_assert_int_eq(login_once(&ls, &loop, t, "bob", "first pasS"), SHALE_EAUTH);
    ck_assert_uint_eq(ls.cached, 1);
    ck_assert_int_eq(login_once(&ls, &loop, t, "bobby", "first pass"), SHALE_EAUTH);

    Shale__UserTable *t2 =
        apply(t, SHALE__USER_OP__USER_OP_PASSWD, "bob", SHALE__USER_ROLE__USER_READ, h2, 0);
    ck_assert_int_eq(login_once(&ls, &loop, t2, "bob", "first pass"), SHALE_EAUTH);
    ck_assert_int_eq(login_once(&ls, &loop, t2, "bob", "second pass"), 0);
    ck_assert_uint_eq(ls.cached, 1);
    ck_assert_int_eq(login_once(&ls, &loop, t2, "bob", "second pass"), 0);
    ck_assert_uint_eq(ls.cached, 2);
    ck_assert_uint_eq(ls.ok, 4);
    ck_assert_uint_eq(ls.failed, 3);

    login_svc_close(&ls);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    shale__user_table__free_unpacked(t, NULL);
    shale__user_table__free_unpacked(t2, NULL);
    shale__password_hash__free_unpacked(h1, NULL);
    shale__password_hash__free_unpacked(h2, NULL);
}
END_TEST

/* Logins that queued behind the first check of their credential (a pool
 * connecting at once) ride on it once it passes: 8 at once with one
 * password cost LOGIN_CONCURRENT hashes, not 8. A wrong password queued
 * among them still fails and is not counted as cached. Fails if queued
 * requests are not checked against the cache when they leave the queue
 * (cached stays 0), or if a wrong password rides on the cache. */
static int g_q_done, g_q_ok, g_q_fail;
static void q_done(void *arg, int status, const char *user, const char *msg)
{
    (void)arg;
    (void)user;
    (void)msg;
    g_q_done++;
    if (status == 0)
        g_q_ok++;
    else
        g_q_fail++;
}

START_TEST(test_login_cache_queue)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    login_svc_t ls;
    login_svc_init(&ls, &loop);
    Shale__PasswordHash *h = hash_of("pool pass");
    Shale__UserTable *t =
        apply(NULL, SHALE__USER_OP__USER_OP_ADD, "svc", SHALE__USER_ROLE__USER_ADMIN, h, 0);
    g_q_done = g_q_ok = g_q_fail = 0;
    enum { N = 8 };
    for (int i = 0; i < N + 1; i++) {
        const char *pw = i == 5 ? "pool pasS" : "pool pass"; /* one wrong, in the middle */
        uint8_t *cred = NULL;
        size_t clen = 0;
        char msg[LOGIN_MSGLEN];
        login_req_t *r = NULL;
        ck_assert_int_eq(auth_credential_pack("svc", pw, strlen(pw), &cred, &clen), 0);
        ck_assert_int_eq(login_start(&ls, "127.0.0.9:4000", cred, clen, t, q_done, NULL, &r, msg),
                         SHALE_OK);
        free(cred);
    }
    ck_assert_uint_eq(ls.waiting, N + 1 - LOGIN_CONCURRENT);
    while (g_q_done < N + 1)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(g_q_ok, N);
    ck_assert_int_eq(g_q_fail, 1);
    ck_assert_uint_eq(ls.ok, N);
    ck_assert_uint_eq(ls.failed, 1);
    /* The first LOGIN_CONCURRENT ran the hash; every other good one rode on it. */
    ck_assert_uint_eq(ls.cached, N - LOGIN_CONCURRENT);
    ck_assert_uint_eq(ls.waiting, 0);
    ck_assert_uint_eq(ls.running, 0);

    login_svc_close(&ls);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    shale__user_table__free_unpacked(t, NULL);
    shale__password_hash__free_unpacked(h, NULL);
}
END_TEST

START_TEST(test_table_changes)
{
    Shale__PasswordHash *h1 = hash_of("one"), *h2 = hash_of("two");
    ck_assert_int_eq(auth_table_has_admin(NULL), 0);
    Shale__UserTable *t =
        apply(NULL, SHALE__USER_OP__USER_OP_ADD, "mallory", SHALE__USER_ROLE__USER_READ, h1, 0);
    ck_assert_uint_eq(t->version, 1);
    ck_assert_uint_eq(t->last_change->client_id, 77);
    ck_assert_int_eq(auth_table_has_admin(t), 0);
    Shale__UserTable *t2 =
        apply(t, SHALE__USER_OP__USER_OP_ADD, "alice", SHALE__USER_ROLE__USER_ADMIN, h1, 0);
    Shale__UserTable *t3 =
        apply(t2, SHALE__USER_OP__USER_OP_ADD, "bob", SHALE__USER_ROLE__USER_READWRITE, h1, 0);
    ck_assert_uint_eq(t3->version, 3);
    ck_assert_uint_eq(t3->n_users, 3);
    /* Sorted by name whatever the order of adds. */
    ck_assert_str_eq(t3->users[0]->name, "alice");
    ck_assert_str_eq(t3->users[1]->name, "bob");
    ck_assert_str_eq(t3->users[2]->name, "mallory");
    ck_assert_int_eq(auth_table_has_admin(t3), 1);
    /* Refusals leave no new table. */
    apply(t3, SHALE__USER_OP__USER_OP_ADD, "bob", SHALE__USER_ROLE__USER_READ, h2, SHALE_EINVAL);
    apply(t3, SHALE__USER_OP__USER_OP_ADD, "carol", SHALE__USER_ROLE__USER_READ, NULL,
          SHALE_EINVAL);
    apply(t3, SHALE__USER_OP__USER_OP_ADD, "bad name", SHALE__USER_ROLE__USER_READ, h2,
          SHALE_EINVAL);
    apply(t3, SHALE__USER_OP__USER_OP_REMOVE, "nobody", SHALE__USER_ROLE__USER_READ, NULL,
          SHALE_ENOTFOUND);
    apply(t3, SHALE__USER_OP__USER_OP_PASSWD, "nobody", SHALE__USER_ROLE__USER_READ, h2,
          SHALE_ENOTFOUND);
    apply(t3, SHALE__USER_OP__USER_OP_PASSWD, "bob", SHALE__USER_ROLE__USER_READ, NULL,
          SHALE_EINVAL);
    apply(t3, (Shale__UserOp)9, "bob", SHALE__USER_ROLE__USER_READ, h2, SHALE_EINVAL);
    /* passwd: the new hash, role kept (the role given is ignored). */
    Shale__UserTable *t4 =
        apply(t3, SHALE__USER_OP__USER_OP_PASSWD, "bob", SHALE__USER_ROLE__USER_READ, h2, 0);
    const Shale__User *bob = auth_table_find(t4, "bob");
    ck_assert_int_eq(bob->role, SHALE__USER_ROLE__USER_READWRITE);
    ck_assert_int_eq(verify(bob->password, "two"), 0);
    ck_assert_int_eq(verify(bob->password, "one"), SHALE_EAUTH);
    ck_assert_int_eq(verify(auth_table_find(t3, "bob")->password, "one"), 0); /* t3 unchanged */
    /* remove */
    Shale__UserTable *t5 =
        apply(t4, SHALE__USER_OP__USER_OP_REMOVE, "alice", SHALE__USER_ROLE__USER_READ, NULL, 0);
    ck_assert_uint_eq(t5->n_users, 2);
    ck_assert_ptr_null(auth_table_find(t5, "alice"));
    ck_assert_int_eq(auth_table_has_admin(t5), 0);
    ck_assert_uint_eq(t5->version, 5);

    /* The wire copy for USER_LIST carries no hash unless asked. */
    Shale__UserTable *pub = auth_table_copy(t4, 0);
    ck_assert_uint_eq(pub->n_users, 3);
    ck_assert_uint_eq(pub->version, 4);
    ck_assert_ptr_null(pub->last_change);
    for (size_t i = 0; i < pub->n_users; i++)
        ck_assert_ptr_null(pub->users[i]->password);
    ck_assert_ptr_nonnull(t4->users[0]->password); /* the source keeps them */
    Shale__UserTable *full = auth_table_copy(t4, 1);
    ck_assert_ptr_nonnull(full->users[1]->password);
    Shale__UserTable *none = auth_table_copy(NULL, 0);
    ck_assert_uint_eq(none->n_users, 0);
    Shale__UserTable *tabs[] = {t, t2, t3, t4, t5, pub, full, none};
    for (size_t i = 0; i < sizeof(tabs) / sizeof(tabs[0]); i++)
        shale__user_table__free_unpacked(tabs[i], NULL);
    auth_hash_free(h1);
    auth_hash_free(h2);
}
END_TEST

START_TEST(test_credential)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    ck_assert_int_eq(auth_credential_pack("alice", "pw x", 4, &buf, &len), 0);
    Shale__Credential *c = auth_credential_unpack(buf, len);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->user, "alice");
    ck_assert_uint_eq(c->password.len, 4);
    ck_assert_mem_eq(c->password.data, "pw x", 4);
    auth_credential_free(c);
    free(buf);
    ck_assert_int_eq(auth_credential_pack("bad name", "pw", 2, &buf, &len), SHALE_EINVAL);
    ck_assert_int_eq(auth_credential_pack("alice", "", 0, &buf, &len), SHALE_EINVAL);
    ck_assert_int_eq(auth_credential_pack("alice", "p\0w", 3, &buf, &len), SHALE_EINVAL);
    /* A credential with an empty password or a bad name does not decode. */
    Shale__Credential raw = SHALE__CREDENTIAL__INIT;
    raw.user = "alice";
    uint8_t tmp[64];
    size_t n = shale__credential__pack(&raw, tmp);
    ck_assert_ptr_null(auth_credential_unpack(tmp, n));
    raw.user = "a\tb";
    raw.password.data = (uint8_t *)"x";
    raw.password.len = 1;
    n = shale__credential__pack(&raw, tmp);
    ck_assert_ptr_null(auth_credential_unpack(tmp, n));
    uint8_t junk[4] = {0x0a, 0x7f, 0x00, 0x00};
    ck_assert_ptr_null(auth_credential_unpack(junk, sizeof(junk)));
    auth_credential_free(NULL);
}
END_TEST

/* Failed logins per source (login_limit.c), on a clock the test drives. */
START_TEST(test_login_limit)
{
    static login_limit_t l;
    login_limit_init(&l);
    const char *a = "10.0.0.1", *b = "10.0.0.2";
    uint64_t t = 1000000;
    /* The free failures cost nothing. */
    for (int i = 0; i < LOGIN_FREE_FAILS; i++) {
        ck_assert_uint_eq(login_limit_wait(&l, a, t), 0);
        login_limit_fail(&l, a, t);
    }
    ck_assert_uint_eq(login_limit_wait(&l, a, t), 0);
    /* Then each failure blocks, doubling, up to the maximum. */
    login_limit_fail(&l, a, t);
    ck_assert_uint_eq(login_limit_wait(&l, a, t), LOGIN_BASE_MS);
    ck_assert_uint_eq(login_limit_wait(&l, a, t + LOGIN_BASE_MS - 1), 1);
    ck_assert_uint_eq(login_limit_wait(&l, a, t + LOGIN_BASE_MS), 0);
    t += LOGIN_BASE_MS;
    login_limit_fail(&l, a, t);
    ck_assert_uint_eq(login_limit_wait(&l, a, t), 2 * LOGIN_BASE_MS);
    for (int i = 0; i < 40; i++)
        login_limit_fail(&l, a, t);
    ck_assert_uint_eq(login_limit_wait(&l, a, t), LOGIN_MAX_MS);
    /* Another source is not affected. */
    ck_assert_uint_eq(login_limit_wait(&l, b, t), 0);
    /* Failures are forgotten after a quiet while: the next one is free. */
    t += LOGIN_FORGET_MS;
    ck_assert_uint_eq(login_limit_wait(&l, a, t), 0);
    login_limit_fail(&l, a, t);
    ck_assert_uint_eq(login_limit_wait(&l, a, t), 0);
    /* A full table forgets the source idle the longest, not the newest. */
    char src[32];
    for (int i = 0; i < LOGIN_LIMIT_SLOTS + 10; i++) {
        snprintf(src, sizeof(src), "10.1.%d.%d", i / 256, i % 256);
        for (int k = 0; k <= LOGIN_FREE_FAILS; k++)
            login_limit_fail(&l, src, t + (uint64_t)i);
    }
    ck_assert_uint_gt(login_limit_wait(&l, src, t + LOGIN_LIMIT_SLOTS + 10), 0);
    ck_assert_uint_eq(login_limit_wait(&l, "10.1.0.0", t + LOGIN_LIMIT_SLOTS + 10), 0);

    /* Sources from peers: the port goes, IPv6 brackets go. */
    char out[LOGIN_SRC_MAX];
    login_limit_source("127.0.0.5:4242", out, sizeof(out));
    ck_assert_str_eq(out, "127.0.0.5");
    login_limit_source("[::1]:80", out, sizeof(out));
    ck_assert_str_eq(out, "::1");
    login_limit_source("", out, sizeof(out));
    ck_assert_str_eq(out, "");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");
    tcase_add_test(tc, test_hash_verify);
    tcase_add_test(tc, test_wrong_password);
    tcase_add_test(tc, test_tampered_record);
    tcase_add_test(tc, test_role_by_type);
    tcase_add_test(tc, test_prefix_restriction);
    tcase_add_test(tc, test_request_keys);
    tcase_add_test(tc, test_request_txn);
    tcase_add_test(tc, test_request_scan);
    tcase_add_test(tc, test_request_watch);
    tcase_add_test(tc, test_user_records);
    tcase_add_test(tc, test_table_changes);
    tcase_add_test(tc, test_login_cache);
    tcase_add_test(tc, test_login_cache_queue);
    tcase_add_test(tc, test_credential);
    tcase_add_test(tc, test_login_limit);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
