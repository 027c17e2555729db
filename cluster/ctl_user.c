/* shalectl user verbs: user add / remove / list / passwd, through the meta
 * group's user table (server/users.c; docs/security.md, "Users and roles").
 *
 * Rules:
 *  - the password is read here (the verb's --password-file F, "-" for
 *    standard input; else asked twice on the terminal without echo; else the
 *    first line of standard input) and hashed here (auth_hash_password, scrypt with the
 *    default parameters): only the salted hash is sent, never the password;
 *  - every password buffer is wiped before the verb returns;
 *  - a change carries a Session (random client id of this run, seq 1), so a
 *    retry that libshale makes after a lost answer or a leader change is
 *    answered with the first outcome, never applied twice;
 *  - user list never prints a hash (the meta group does not send them
 *    unless asked, and this verb does not ask);
 *  - the verb's --password-file is the user's new password; the global
 *    --user/--password-file (before the verb) are who runs the verb. */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "shale_internal.h"
#include "auth.h"
#include "ctl.h"
#include "frame.h"

enum { ADD_ROLE, ADD_PREFIX, ADD_PWFILE };
const flag_spec_t user_add_flags[] = {
    [ADD_ROLE] = {"role", "R", "read, readwrite or admin (required)", 0},
    [ADD_PREFIX] = {"prefix", "P",
                    "the user's data verbs only on keys that begin with P (not for admin)", 0},
    [ADD_PWFILE] = {"password-file", "F",
                    "read the password from the first line of F (- : standard input); "
                    "default: ask on the terminal, else read standard input",
                    0},
    {NULL, NULL, NULL, 0},
};

enum { PW_PWFILE };
const flag_spec_t user_passwd_flags[] = {
    [PW_PWFILE] = {"password-file", "F",
                   "read the new password from the first line of F (- : standard input); "
                   "default: ask on the terminal, else read standard input",
                   0},
    {NULL, NULL, NULL, 0},
};

int check_user_name(const cmd_t *cmd, char *err, size_t errlen)
{
    return auth_name_check(cmd->pos[0], err, errlen) != 0 ? -1 : 0;
}

int check_user_add(const cmd_t *cmd, char *err, size_t errlen)
{
    if (check_user_name(cmd, err, errlen) != 0)
        return -1;
    if (!cmd->set[ADD_ROLE]) {
        snprintf(err, errlen, "--role is required (read, readwrite or admin)");
        return -1;
    }
    auth_role_t role = auth_role_parse(cmd->val[ADD_ROLE]);
    if (role == AUTH_ROLE_NONE) {
        snprintf(err, errlen, "--role must be read, readwrite or admin, not '%s'",
                 cmd->val[ADD_ROLE]);
        return -1;
    }
    if (cmd->set[ADD_PREFIX]) {
        size_t n = strlen(cmd->val[ADD_PREFIX]);
        if (n == 0 || n > AUTH_PREFIX_MAX) {
            snprintf(err, errlen, "--prefix needs 1..%d bytes", AUTH_PREFIX_MAX);
            return -1;
        }
        if (role == AUTH_ROLE_ADMIN) {
            snprintf(err, errlen,
                     "an admin cannot have a --prefix (admin verbs act on the whole "
                     "cluster)");
            return -1;
        }
    }
    return 0;
}

/* One line of f into pw (without its line end). 0, or -1 with err. */
static int read_line(FILE *f, char *pw, size_t cap, size_t *len, char *err, size_t errlen)
{
    if (fgets(pw, (int)cap, f) == NULL) {
        snprintf(err, errlen, "no password to read");
        return -1;
    }
    size_t n = strlen(pw);
    if (n > 0 && pw[n - 1] == '\n')
        pw[--n] = '\0';
    else if (n == cap - 1) {
        snprintf(err, errlen, "password longer than %d bytes", AUTH_PASSWORD_MAX);
        return -1;
    }
    if (n > 0 && pw[n - 1] == '\r')
        pw[--n] = '\0';
    if (n == 0) {
        snprintf(err, errlen, "empty password");
        return -1;
    }
    *len = n;
    return 0;
}

/* Ask on the terminal with echo off. */
static int ask(const char *prompt, char *pw, size_t cap, size_t *len, char *err, size_t errlen)
{
    struct termios old, quiet;
    int have = tcgetattr(STDIN_FILENO, &old) == 0;
    fputs(prompt, stderr);
    fflush(stderr);
    if (have) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    int rv = read_line(stdin, pw, cap, len, err, errlen);
    if (have)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputc('\n', stderr);
    return rv;
}

#define PWBUF (AUTH_PASSWORD_MAX + 2)

/* The password, as the file comment says. 0, or an exit code printed. */
static int get_password(const char *verb, const char *user, const char *file, char *pw, size_t *len)
{
    char err[256];
    int rv;
    if (file != NULL && strcmp(file, "-") != 0) {
        FILE *f = fopen(file, "r");
        if (f == NULL)
            return ctl_say(EXIT_USAGE, verb, "cannot read --password-file %s", file);
        rv = read_line(f, pw, PWBUF, len, err, sizeof(err));
        fclose(f);
    } else if (file == NULL && isatty(STDIN_FILENO)) {
        char again[PWBUF];
        char prompt[128];
        size_t alen = 0;
        snprintf(prompt, sizeof(prompt), "password for %s: ", user);
        rv = ask(prompt, pw, PWBUF, len, err, sizeof(err));
        if (rv == 0)
            rv = ask("again: ", again, sizeof(again), &alen, err, sizeof(err));
        if (rv == 0 && (alen != *len || memcmp(again, pw, alen) != 0)) {
            snprintf(err, sizeof(err), "the passwords differ");
            rv = -1;
        }
        OPENSSL_cleanse(again, sizeof(again));
    } else {
        rv = read_line(stdin, pw, PWBUF, len, err, sizeof(err));
    }
    if (rv != 0)
        return ctl_say(EXIT_USAGE, verb, "%s", err);
    return 0;
}

/* Hash the password for user into *h. 0, or an exit code printed. */
static int hash_password(const char *verb, const char *user, const char *file,
                         Shale__PasswordHash **h)
{
    char pw[PWBUF], err[AUTH_ERRLEN];
    size_t len = 0;
    int code = get_password(verb, user, file, pw, &len);
    if (code == 0 && auth_hash_password(pw, len, NULL, h, err, sizeof(err)) != 0)
        code = ctl_say(EXIT_USAGE, verb, "%s", err);
    OPENSSL_cleanse(pw, sizeof(pw));
    return code;
}

/* Send one change; prints the outcome and returns the exit code. */
static int user_change(const cmd_t *cmd, const char *verb, Shale__UserOp op, Shale__User *u)
{
    meta_t m;
    int code = meta_open(cmd, verb, &m);
    if (code != 0)
        return code;
    Shale__Session ses = SHALE__SESSION__INIT;
    ses.client_id = m.client_id;
    ses.seq = ++m.seq;
    Shale__UserChangeRequest rq = SHALE__USER_CHANGE_REQUEST__INIT;
    rq.op = op;
    rq.user = u;
    rq.session = &ses;
    size_t len = shale__user_change_request__get_packed_size(&rq);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        meta_close(&m);
        return ctl_say(EXIT_FAIL, verb, "out of memory");
    }
    shale__user_change_request__pack(&rq, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    char err[SHALE_ERRMSG_LEN] = "";
    int rv = shale_call(m.c, SHALE_MSG_USER_CHANGE_REQ, SHALE_MSG_USER_CHANGE_RESP, buf, len, &resp,
                        &rlen, err, NULL);
    OPENSSL_cleanse(buf, len);
    free(buf);
    meta_close(&m);
    if (rv != SHALE_OK)
        return ctl_error(verb, rv, err, 1);
    Shale__UserChangeResponse *r = shale__user_change_response__unpack(NULL, rlen, resp);
    free(resp);
    if (r == NULL)
        return ctl_say(EXIT_FAIL, verb, "malformed USER_CHANGE_RESP answer (the change applied)");
    if (cmd->json) {
        printf("{\"ok\":true,\"version\":%" PRIu64 ",\"message\":", r->version);
        ctl_json_str(stdout, r->message);
        printf("}\n");
    } else {
        printf("OK user table version %" PRIu64 ": %s\n", r->version,
               r->message != NULL ? r->message : "");
    }
    shale__user_change_response__free_unpacked(r, NULL);
    return EXIT_OKAY;
}

int run_user_add(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "user add";
    Shale__User u = SHALE__USER__INIT;
    u.name = (char *)cmd->pos[0];
    u.role = (Shale__UserRole)auth_role_parse(cmd->val[ADD_ROLE]);
    if (cmd->set[ADD_PREFIX]) {
        u.has_key_prefix = 1;
        u.key_prefix.data = (uint8_t *)cmd->val[ADD_PREFIX];
        u.key_prefix.len = strlen(cmd->val[ADD_PREFIX]);
    }
    int code = hash_password(verb, u.name, cmd->set[ADD_PWFILE] ? cmd->val[ADD_PWFILE] : NULL,
                             &u.password);
    if (code != 0)
        return code;
    code = user_change(cmd, verb, SHALE__USER_OP__USER_OP_ADD, &u);
    auth_hash_free(u.password);
    return code;
}

int run_user_passwd(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "user passwd";
    Shale__User u = SHALE__USER__INIT;
    u.name = (char *)cmd->pos[0];
    u.role = SHALE__USER_ROLE__USER_READ; /* required on the wire; the table keeps the role */
    int code =
        hash_password(verb, u.name, cmd->set[PW_PWFILE] ? cmd->val[PW_PWFILE] : NULL, &u.password);
    if (code != 0)
        return code;
    code = user_change(cmd, verb, SHALE__USER_OP__USER_OP_PASSWD, &u);
    auth_hash_free(u.password);
    return code;
}

int run_user_remove(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    Shale__User u = SHALE__USER__INIT;
    u.name = (char *)cmd->pos[0];
    u.role = SHALE__USER_ROLE__USER_READ; /* required on the wire; not looked at */
    return user_change(cmd, "user remove", SHALE__USER_OP__USER_OP_REMOVE, &u);
}

/* A key prefix for the table: printable ASCII as is, other bytes \xHH. */
static void print_prefix(const Shale__User *u)
{
    if (!u->has_key_prefix || u->key_prefix.len == 0) {
        fputs("-", stdout);
        return;
    }
    for (size_t i = 0; i < u->key_prefix.len; i++) {
        uint8_t ch = u->key_prefix.data[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            fputc(ch, stdout);
        else
            printf("\\x%02x", ch);
    }
}

int run_user_list(shale_client_t *c, const cmd_t *cmd)
{
    (void)c;
    const char *verb = "user list";
    meta_t m;
    int code = meta_open(cmd, verb, &m);
    if (code != 0)
        return code;
    Shale__UserListRequest rq = SHALE__USER_LIST_REQUEST__INIT;
    uint8_t buf[32];
    size_t len = shale__user_list_request__pack(&rq, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    char err[SHALE_ERRMSG_LEN] = "";
    int rv = shale_call(m.c, SHALE_MSG_USER_LIST_REQ, SHALE_MSG_USER_LIST_RESP, buf, len, &resp,
                        &rlen, err, NULL);
    meta_close(&m);
    if (rv != SHALE_OK)
        return ctl_error(verb, rv, err, 0);
    Shale__UserListResponse *r = shale__user_list_response__unpack(NULL, rlen, resp);
    free(resp);
    if (r == NULL)
        return ctl_say(EXIT_FAIL, verb, "malformed USER_LIST_RESP answer");
    if (cmd->json) {
        printf("{\"version\":%" PRIu64 ",\"users\":[", r->version);
        for (size_t i = 0; i < r->n_users; i++) {
            const Shale__User *u = r->users[i];
            printf("%s{\"name\":", i ? "," : "");
            ctl_json_str(stdout, u->name);
            printf(",\"role\":\"%s\",\"prefix\":", auth_role_name(u->role));
            if (u->has_key_prefix && u->key_prefix.len > 0)
                ctl_json_string(stdout, u->key_prefix.data, u->key_prefix.len);
            else
                fputs("null", stdout);
            fputc('}', stdout);
        }
        printf("]}\n");
    } else {
        printf("user table version %" PRIu64 ", %zu user%s\n", r->version, r->n_users,
               r->n_users == 1 ? "" : "s");
        if (r->n_users > 0)
            printf("%-24s %-10s %s\n", "NAME", "ROLE", "PREFIX");
        for (size_t i = 0; i < r->n_users; i++) {
            const Shale__User *u = r->users[i];
            printf("%-24s %-10s ", u->name, auth_role_name(u->role));
            print_prefix(u);
            fputc('\n', stdout);
        }
    }
    shale__user_list_response__free_unpacked(r, NULL);
    return EXIT_OKAY;
}
