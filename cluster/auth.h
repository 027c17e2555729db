/* Users, roles and passwords: the credential module (DESIGN §11, issue 13).
 *
 * What this file owns:
 *  - password hashing: scrypt (OpenSSL's EVP_PBE_scrypt) over a fresh
 *    16-byte random salt, the parameters stored beside the hash
 *    (Shale__PasswordHash) so they can be raised later, and verification
 *    with a constant-time compare (CRYPTO_memcmp);
 *  - the rules of a user record (auth_user_validate): name, role, key
 *    prefix, hash parameters within bounds (a stored record can never make
 *    a verifier allocate without limit);
 *  - the user table as data: lookup, sorted insert/remove, copies without
 *    the hashes (what USER_LIST shows);
 *  - the permission table (auth_allowed): which role may send which request
 *    type on which key, default deny; auth_request_allowed walks every key
 *    of a request;
 *  - the HELLO credential encoding (Shale__Credential).
 *
 * What it never does: sockets, clocks, logging, global state, keeping a
 * password after a call returns (the caller owns and wipes its buffers).
 * Every function is reentrant: hashing and verifying may run on a worker
 * thread. Errors are SHALE_E* codes with a message in err (AUTH_ERRLEN). */
#ifndef SHALE_AUTH_H
#define SHALE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "shale.pb-c.h"
#include "shale_errors.h"

#define AUTH_ERRLEN 256
#define AUTH_NAME_MAX 64
#define AUTH_PASSWORD_MAX 1024
#define AUTH_PREFIX_MAX 4096
#define AUTH_SALT_LEN 16
#define AUTH_HASH_LEN 32
#define AUTH_KDF_SCRYPT "scrypt"
#define AUTH_USERS_MAX 4096 /* users one table holds */

/* Roles, ordered: each includes what the one below it may do. The numbers
 * are the wire enum shale.UserRole. */
typedef enum auth_role {
    AUTH_ROLE_NONE = 0, /* not authenticated: nothing is allowed */
    AUTH_ROLE_READ = 1,
    AUTH_ROLE_READWRITE = 2,
    AUTH_ROLE_ADMIN = 3,
} auth_role_t;

/* "read", "readwrite", "admin" ("none" for AUTH_ROLE_NONE, "?" otherwise). */
const char *auth_role_name(int role);
/* The role named s, or AUTH_ROLE_NONE for anything else. */
auth_role_t auth_role_parse(const char *s);

/* ---- Passwords ---------------------------------------------------------------*/

/* scrypt parameters: N = 2^log2_n, r, p. */
typedef struct auth_kdf_params {
    uint32_t log2_n, r, p;
} auth_kdf_params_t;

/* The defaults for new hashes: N = 2^15, r = 8, p = 1 (32 MiB, ~0.1-0.2 s on
 * the machines of FACTS.md). */
extern const auth_kdf_params_t auth_kdf_default;

/* Whether params are within what a verifier accepts: log2_n 10..20, r 1..32,
 * p 1..4, and 128 * r * N at most 256 MiB. 0 or SHALE_EINVAL with err. */
int auth_kdf_check(const auth_kdf_params_t *params, char *err, size_t errlen);

/* Hash a password (1..AUTH_PASSWORD_MAX bytes, none of them NUL: HMAC
 * would hash "pw" and "pw\0" alike) with params (NULL: the defaults) and a
 * fresh random salt. *out is malloc'd: auth_hash_free. */
int auth_hash_password(const void *pw, size_t len, const auth_kdf_params_t *params,
                       Shale__PasswordHash **out, char *err, size_t errlen);
void auth_hash_free(Shale__PasswordHash *h);

/* Check pw against h. 0 on a match; SHALE_EAUTH when it does not match;
 * SHALE_EINVAL when h itself is not a valid record (unknown kdf, parameters
 * out of bounds, wrong salt or hash length) — such a record never
 * matches. The comparison takes the same time wherever the bytes differ. */
int auth_verify_password(const Shale__PasswordHash *h, const void *pw, size_t len, char *err,
                         size_t errlen);

/* Spend what one verification with the default parameters costs, matching
 * nothing: a login for an unknown user takes as long as a wrong password,
 * so timing does not tell which names exist. */
void auth_verify_dummy(const void *pw, size_t len);

/* ---- User records -------------------------------------------------------------*/

/* A user name: 1..AUTH_NAME_MAX bytes of [A-Za-z0-9_.@-]. 0 or SHALE_EINVAL. */
int auth_name_check(const char *name, char *err, size_t errlen);

/* Whether u is a record the user table may hold: a valid name, a known
 * role, a prefix of at most AUTH_PREFIX_MAX bytes and never on an admin
 * (admin verbs are not scoped to keys), and (when need_hash) a password
 * hash that auth_verify_password would accept as a record. */
int auth_user_validate(const Shale__User *u, int need_hash, char *err, size_t errlen);

/* Pack a user (or a table) into a fresh buffer; *len its size. NULL on
 * ENOMEM. Caller frees with free(). */
uint8_t *auth_user_pack(const Shale__User *u, size_t *len);
/* Unpack and validate (need_hash as for auth_user_validate). NULL when the
 * bytes are not a valid record. Free with shale__user__free_unpacked. */
Shale__User *auth_user_unpack(const uint8_t *buf, size_t len, int need_hash);

/* The user named name in t, or NULL. t may be NULL. */
const Shale__User *auth_table_find(const Shale__UserTable *t, const char *name);
/* What HELLO_REPLY tells a client about its own login (docs/protocol.md):
 * whether the process runs with --auth (auth_on), and for a logged-in user
 * (user non-empty) its name and, when u (its record now; NULL when it was
 * removed since the login) is known, its role and key prefix. hr points
 * into user and u: they must outlive the packing of the reply. */
void auth_hello_fill(Shale__HelloReply *hr, int auth_on, const char *user, const Shale__User *u);
/* Whether t holds at least one admin user. */
int auth_table_has_admin(const Shale__UserTable *t);

/* A fresh table (malloc'd by protobuf-c's allocator: free with
 * shale__user_table__free_unpacked), equal to t (may be NULL: empty) with
 * the change applied, version + 1, last_change = session (copied, may be
 * NULL). Rules: ADD refuses an existing name and a table of AUTH_USERS_MAX
 * users, and a bootstrap ADD (c->bootstrap: the first-admin rule) unless it
 * adds an admin to a table without one (*code SHALE_EAUTH); REMOVE and
 * PASSWD refuse an
 * unknown one; PASSWD keeps role and prefix. On a refusal returns NULL with
 * *code SHALE_EINVAL (or SHALE_ENOTFOUND for an unknown name) and err; on
 * ENOMEM NULL with *code SHALE_ENOMEM. */
Shale__UserTable *auth_table_apply(const Shale__UserTable *t, const Shale__UserChangeRequest *c,
                                   int *code, char *err, size_t errlen);

/* A copy of t (NULL: empty) for the wire: without the password hashes
 * unless with_hashes. Free with shale__user_table__free_unpacked. NULL on
 * ENOMEM. */
Shale__UserTable *auth_table_copy(const Shale__UserTable *t, int with_hashes);

/* ---- Permissions ----------------------------------------------------------------*/

/* Whether a user of role, restricted to keys beginning with prefix (plen 0:
 * every key), may send a request of frame type `type` on key (NULL for a
 * request that names no key). Rules:
 *  - default deny: AUTH_ROLE_NONE, an unknown role, an unknown type, and
 *    every answer type (a peer only sends requests) are refused;
 *  - read: GET, MGET, STATUS, MAP_GET;
 *  - readwrite: read's, plus PUT, DELETE, CAS, MPUT;
 *  - admin: everything, including MEMBER_ADD/REMOVE, LEADER_TRANSFER,
 *    MAP_CAS, SNAP_FETCH and MIG_EXPORT (a replica's or a slot's whole
 *    data), MIG_IMPORT, MIG_PUSH, USER_CHANGE and USER_LIST;
 *  - with a prefix, a data verb (GET, MGET, PUT, DELETE, CAS, MPUT) needs a
 *    key that begins with it (key NULL: refused); without one, key NULL
 *    asks about the verb alone. A prefix-restricted user gets only data
 *    verbs and STATUS (never MAP_GET or admin verbs);
 *  - HELLO is not a request: refused here (the connection layer handles it). */
int auth_allowed(auth_role_t role, const uint8_t *prefix, size_t plen, uint16_t type,
                 const uint8_t *key, size_t klen);

/* auth_allowed for every key of msg (an unpacked request of frame type
 * `type`; every key of an MGET/MPUT must pass). u NULL: not authenticated.
 * 1 allowed; 0 refused with why (for the PERMISSION_DENIED answer: names
 * the user, role and verb, never a key's bytes). */
int auth_request_allowed(const Shale__User *u, uint16_t type, const ProtobufCMessage *msg,
                         char *why, size_t whylen);

/* ---- HELLO credential -----------------------------------------------------------*/

/* A password from the first line of the file at path ("-": standard input),
 * without its line end: *pw malloc'd (caller wipes and frees), *len its
 * size. 0, or -1 with a message naming the file (never the password). The
 * one reader of --password-file / --auth-password-file for every tool. */
int auth_password_file_read(const char *path, char **pw, size_t *len, char *err,
                            size_t errlen);

/* Pack {user, password} for HELLO.credential: *out malloc'd (caller wipes
 * and frees), *len its size. 0, SHALE_EINVAL (bad name or password length),
 * SHALE_ENOMEM. */
int auth_credential_pack(const char *user, const void *pw, size_t pwlen, uint8_t **out,
                         size_t *len);
/* Unpack HELLO.credential: NULL when malformed or the name or password
 * breaks the rules. Free with auth_credential_free (wipes the password). */
Shale__Credential *auth_credential_unpack(const uint8_t *buf, size_t len);
void auth_credential_free(Shale__Credential *c);

#endif
