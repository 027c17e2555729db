/* shalectl data verbs: get, mget, put, ttl, del, cas, txn, scan.
 *
 * They speak the ordinary client protocol to whatever main() connected:
 * a router (--router) that finds each key's group, or one group directly
 * (--addr). Exit 0 on success; 1 for a key not found or a CAS whose
 * expectation did not hold (scripts test for it); errors as ctl_exit_code. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static int data_error(const char *verb, shale_client_t *c, int rv)
{
    return ctl_error(verb, rv, shale_errmsg(c), 0);
}

const flag_spec_t get_flags[] = {
    {"stale", "MS",
     "read from any replica whose state is at most MS ms old (default: linearizable)", 0},
    {NULL, NULL, NULL, 0},
};

int check_get(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t ms;
    if (cmd->set[0] && (ctl_parse_u64(cmd->val[0], &ms) != 0 || ms == 0 || ms > UINT32_MAX)) {
        snprintf(err, errlen, "--stale needs a positive number of milliseconds, not '%s'",
                 cmd->val[0]);
        return -1;
    }
    return 0;
}

int run_get(shale_client_t *c, const cmd_t *cmd)
{
    const char *key = cmd->pos[0];
    shale_value_t v;
    shale_read_opts_t ro = {.consistency = SHALE_LINEARIZABLE};
    if (cmd->set[0]) {
        uint64_t ms = 0;
        ctl_parse_u64(cmd->val[0], &ms);
        ro.consistency = SHALE_STALE;
        ro.max_staleness_ms = (uint32_t)ms;
    }
    int rv = shale_get(c, key, strlen(key), &ro, &v);
    if (rv != SHALE_OK)
        return data_error("get", c, rv);
    if (cmd->json) {
        printf("{\"key\":");
        ctl_json_str(stdout, key);
        printf(",\"found\":%s", v.found ? "true" : "false");
        if (v.found) {
            printf(",\"value\":");
            ctl_json_string(stdout, v.data, v.len);
            printf(",\"version\":%" PRIu64, v.version);
        }
        printf("}\n");
    } else if (v.found) {
        if (v.len > 0)
            fwrite(v.data, 1, v.len, stdout);
        printf("\nversion %" PRIu64 "\n", v.version);
    } else {
        fprintf(stderr, "shalectl: get: key not found\n");
    }
    int found = v.found;
    shale_value_free(&v);
    return found ? EXIT_OKAY : EXIT_FAIL;
}

const flag_spec_t put_flags[] = {
    {"ttl", "MS",
     "the key expires MS ms after the write (1..3153600000000); without it a "
     "previous TTL of the key is cleared",
     0},
    {"file", "F", "the value is the bytes of file F (any bytes; instead of VALUE)", 0},
    {NULL, NULL, NULL, 0},
};

/* The value of put when it comes from a file or standard input: read by
 * check_put (before any connection, so a missing file is a usage error),
 * freed at exit by the process. Any bytes, NUL included. */
static uint8_t *put_value;
static size_t put_value_len;

/* Larger than any server's --max-value: the server's limit is what refuses
 * (TOO_LARGE, with its number); this only bounds the memory used here. */
#define PUT_VALUE_READ_MAX ((size_t)64 << 20)

static int read_value(FILE *f, const char *what, char *err, size_t errlen)
{
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory reading %s", what);
        return -1;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= PUT_VALUE_READ_MAX) {
                free(buf);
                snprintf(err, errlen, "%s holds more than %zu MiB", what, PUT_VALUE_READ_MAX >> 20);
                return -1;
            }
            uint8_t *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                snprintf(err, errlen, "out of memory reading %s", what);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                free(buf);
                snprintf(err, errlen, "cannot read %s: %s", what, strerror(errno));
                return -1;
            }
            break;
        }
    }
    put_value = buf;
    put_value_len = n;
    return 0;
}

int check_put(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t ms;
    if (cmd->set[0] && (ctl_parse_u64(cmd->val[0], &ms) != 0 || ms == 0 || ms > SHALE_TTL_MAX_MS)) {
        snprintf(err, errlen, "--ttl needs a number of milliseconds 1..%llu, not '%s'",
                 (unsigned long long)SHALE_TTL_MAX_MS, cmd->val[0]);
        return -1;
    }
    int file = cmd->set[1];
    if (file == (cmd->npos == 2)) {
        snprintf(err, errlen, "%s", file ? "give VALUE or --file, not both"
                                         : "missing VALUE (or --file F, or - for standard input)");
        return -1;
    }
    if (file) {
        FILE *f = fopen(cmd->val[1], "rb");
        if (f == NULL) {
            snprintf(err, errlen, "--file %s: %s", cmd->val[1], strerror(errno));
            return -1;
        }
        int rv = read_value(f, cmd->val[1], err, errlen);
        fclose(f);
        return rv;
    }
    if (strcmp(cmd->pos[1], "-") == 0)
        return read_value(stdin, "standard input", err, errlen);
    return 0;
}

int run_ttl(shale_client_t *c, const cmd_t *cmd)
{
    const char *key = cmd->pos[0];
    shale_read_opts_t ro = {.consistency = SHALE_LINEARIZABLE};
    if (cmd->set[0]) {
        uint64_t ms = 0;
        ctl_parse_u64(cmd->val[0], &ms);
        ro.consistency = SHALE_STALE;
        ro.max_staleness_ms = (uint32_t)ms;
    }
    int64_t left = 0;
    int rv = shale_ttl(c, key, strlen(key), &ro, &left);
    if (rv == SHALE_ENOTFOUND) {
        if (cmd->json)
            printf("{\"found\":false}\n");
        else
            fprintf(stderr, "shalectl: ttl: key not found\n");
        return EXIT_FAIL;
    }
    if (rv != SHALE_OK)
        return data_error("ttl", c, rv);
    if (cmd->json)
        printf("{\"found\":true,\"ttl_ms\":%" PRId64 "}\n", left);
    else
        printf("%" PRId64 "\n", left);
    return EXIT_OKAY;
}

/* Several keys in one request (MGET: split by group at the router, each
 * part linearizable or --stale; not one snapshot across groups). Text:
 * KEY=VALUE and its version per line, "KEY (not found)" for an absent key,
 * "KEY (error: ...)" for a key whose part failed. Exit 1 when any key was
 * absent or failed. */
int run_mget(shale_client_t *c, const cmd_t *cmd)
{
    size_t n = (size_t)cmd->npos;
    shale_item_t keys[CTL_MAX_POS];
    shale_item_result_t res[CTL_MAX_POS];
    memset(keys, 0, sizeof(keys));
    memset(res, 0, sizeof(res));
    for (size_t i = 0; i < n; i++) {
        keys[i].key = cmd->pos[i];
        keys[i].klen = strlen(cmd->pos[i]);
    }
    shale_read_opts_t ro = {.consistency = SHALE_LINEARIZABLE};
    if (cmd->set[0]) {
        uint64_t ms = 0;
        ctl_parse_u64(cmd->val[0], &ms);
        ro.consistency = SHALE_STALE;
        ro.max_staleness_ms = (uint32_t)ms;
    }
    int rv = shale_mget(c, keys, n, &ro, res);
    if (rv != SHALE_OK)
        return data_error("mget", c, rv);
    int all = 1;
    if (cmd->json)
        printf("[");
    for (size_t i = 0; i < n; i++) {
        const shale_item_result_t *r = &res[i];
        if (r->status != SHALE_OK || !r->found)
            all = 0;
        if (cmd->json) {
            printf("%s{\"key\":", i ? "," : "");
            ctl_json_str(stdout, cmd->pos[i]);
            if (r->status != SHALE_OK) {
                printf(",\"error\":");
                ctl_json_str(stdout, shale_strerror(r->status));
            } else {
                printf(",\"found\":%s", r->found ? "true" : "false");
                if (r->found) {
                    printf(",\"value\":");
                    ctl_json_string(stdout, r->data, r->len);
                    printf(",\"version\":%" PRIu64, r->version);
                }
            }
            printf("}");
        } else if (r->status != SHALE_OK) {
            printf("%s (error: %s)\n", cmd->pos[i], shale_strerror(r->status));
        } else if (!r->found) {
            printf("%s (not found)\n", cmd->pos[i]);
        } else {
            printf("%s=", cmd->pos[i]);
            if (r->len > 0)
                fwrite(r->data, 1, r->len, stdout);
            printf(" (version %" PRIu64 ")\n", r->version);
        }
    }
    if (cmd->json)
        printf("]\n");
    shale_item_results_free(res, n);
    return all ? EXIT_OKAY : EXIT_FAIL;
}

int run_put(shale_client_t *c, const cmd_t *cmd)
{
    const char *key = cmd->pos[0];
    const void *val = put_value;
    size_t vlen = put_value_len;
    if (put_value == NULL) { /* VALUE given on the command line */
        val = cmd->pos[1];
        vlen = strlen(cmd->pos[1]);
    }
    uint64_t version = 0, ttl = 0;
    if (cmd->set[0])
        ctl_parse_u64(cmd->val[0], &ttl);
    int rv = shale_put_ttl(c, key, strlen(key), val, vlen, ttl, &version);
    free(put_value);
    put_value = NULL;
    if (rv != SHALE_OK)
        return data_error("put", c, rv);
    if (cmd->json)
        printf("{\"ok\":true,\"version\":%" PRIu64 "}\n", version);
    else
        printf("OK version %" PRIu64 "\n", version);
    return EXIT_OKAY;
}

int run_del(shale_client_t *c, const cmd_t *cmd)
{
    const char *key = cmd->pos[0];
    int existed = 0;
    uint64_t version = 0;
    int rv = shale_del(c, key, strlen(key), &existed, &version);
    if (rv != SHALE_OK)
        return data_error("del", c, rv);
    if (cmd->json)
        printf("{\"existed\":%s,\"version\":%" PRIu64 "}\n", existed ? "true" : "false", version);
    else if (existed)
        printf("deleted (was version %" PRIu64 ")\n", version);
    else
        fprintf(stderr, "shalectl: del: key not found\n");
    return existed ? EXIT_OKAY : EXIT_FAIL;
}

enum { CAS_ABSENT, CAS_VERSION, CAS_VALUE, CAS_DELETE };

const flag_spec_t cas_flags[] = {
    [CAS_ABSENT] = {"expect-absent", NULL, "the key must not exist", 0},
    [CAS_VERSION] = {"expect-version", "N", "the key's version must be N", 0},
    [CAS_VALUE] = {"expect-value", "V", "the key's value must be V", 0},
    [CAS_DELETE] = {"delete", NULL, "delete the key on a match (instead of NEWVALUE)", 0},
    {NULL, NULL, NULL, 0},
};

int check_cas(const cmd_t *cmd, char *err, size_t errlen)
{
    int kinds = cmd->set[CAS_ABSENT] + cmd->set[CAS_VERSION] + cmd->set[CAS_VALUE];
    uint64_t v;
    if (kinds != 1) {
        snprintf(err, errlen,
                 "cas needs exactly one of --expect-absent, "
                 "--expect-version N, --expect-value V");
        return -1;
    }
    if (cmd->set[CAS_VERSION] && ctl_parse_u64(cmd->val[CAS_VERSION], &v) != 0) {
        snprintf(err, errlen, "--expect-version needs a number, not '%s'", cmd->val[CAS_VERSION]);
        return -1;
    }
    if (cmd->set[CAS_DELETE] == (cmd->npos == 2)) {
        snprintf(err, errlen, "cas needs either NEWVALUE or --delete (not both)");
        return -1;
    }
    return 0;
}

int run_cas(shale_client_t *c, const cmd_t *cmd)
{
    const char *key = cmd->pos[0];
    shale_cas_expect_t ex;
    memset(&ex, 0, sizeof(ex));
    if (cmd->set[CAS_ABSENT]) {
        ex.kind = SHALE_CAS_ABSENT;
    } else if (cmd->set[CAS_VERSION]) {
        ex.kind = SHALE_CAS_VERSION;
        ctl_parse_u64(cmd->val[CAS_VERSION], &ex.version);
    } else {
        ex.kind = SHALE_CAS_VALUE;
        ex.value = cmd->val[CAS_VALUE];
        ex.len = strlen(cmd->val[CAS_VALUE]);
    }
    int del = cmd->set[CAS_DELETE];
    const char *nv = del ? NULL : cmd->pos[1];
    uint64_t version = 0;
    shale_value_t cur;
    int rv = shale_cas(c, key, strlen(key), &ex, nv, nv ? strlen(nv) : 0, del, &version, &cur);
    if (rv == SHALE_OK) {
        if (cmd->json)
            printf("{\"ok\":true,\"version\":%" PRIu64 "}\n", version);
        else if (del)
            printf("OK deleted\n");
        else
            printf("OK version %" PRIu64 "\n", version);
        return EXIT_OKAY;
    }
    if (rv != SHALE_ECASFAILED)
        return data_error("cas", c, rv);
    if (cmd->json) {
        printf("{\"ok\":false,\"exists\":%s", cur.found ? "true" : "false");
        if (cur.found) {
            printf(",\"version\":%" PRIu64 ",\"value\":", cur.version);
            ctl_json_string(stdout, cur.data, cur.len);
        }
        printf("}\n");
    } else if (cur.found) {
        printf("CAS failed: current version %" PRIu64 ", value ", cur.version);
        if (cur.len > 0)
            fwrite(cur.data, 1, cur.len, stdout);
        printf("\n");
    } else {
        printf("CAS failed: the key does not exist\n");
    }
    shale_value_free(&cur);
    return EXIT_FAIL;
}

/* ---- txn -----------------------------------------------------------------------
 *
 * shalectl txn --if 'version({a}x) = 3' --if 'value({a}y) = foo' \
 *              --then 'put {a}x 1' --then 'del {a}y' --else 'get {a}x'
 *
 * COND: TARGET(KEY) OP OPERAND, TARGET version (OPERAND a number) or value
 * (OPERAND the rest of the text after OP and one run of spaces; may be
 * empty), OP = != < >; or exists(KEY) / missing(KEY). KEY ends at the first
 * ')' followed by an operator or the end. OP: put KEY VALUE (VALUE: the rest
 * after the first space), put:ttl=MS KEY VALUE, put:keepttl KEY VALUE, del
 * KEY, get KEY, add KEY DELTA, append KEY VALUE, expire KEY MS (0: no TTL).
 * Keys cannot hold spaces here. */

enum { TXN_IF, TXN_THEN, TXN_ELSE };

const flag_spec_t txn_flags[] = {
    [TXN_IF] = {"if", "COND", "a condition (all must hold)", 1},
    [TXN_THEN] = {"then", "OP", "an op run when every condition holds", 1},
    [TXN_ELSE] = {"else", "OP", "an op run otherwise", 1},
    {NULL, NULL, NULL, 0},
};

static const char *skip_sp(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Parse an operator at p: its kind and the text after it, or NULL. */
static const char *parse_cmp(const char *p, shale_txn_cmp_t *cmp)
{
    if (p[0] == '!' && p[1] == '=') {
        *cmp = SHALE_TXN_NOT_EQUAL;
        return p + 2;
    }
    if (p[0] == '=') {
        *cmp = SHALE_TXN_EQUAL;
        return p + (p[1] == '=' ? 2 : 1);
    }
    if (p[0] == '<') {
        *cmp = SHALE_TXN_LESS;
        return p + 1;
    }
    if (p[0] == '>') {
        *cmp = SHALE_TXN_GREATER;
        return p + 1;
    }
    return NULL;
}

/* One --if. key points into s (klen bytes); value into s too. 0 or -1. */
static int parse_cond(const char *s, shale_txn_compare_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    const char *open = strchr(s, '(');
    if (open == NULL) {
        snprintf(err, errlen, "--if '%s': expected version(KEY), value(KEY), exists(KEY) or "
                 "missing(KEY)", s);
        return -1;
    }
    size_t tlen = (size_t)(open - s);
    const char *key = open + 1, *close = NULL, *rest = NULL;
    for (const char *q = key; (q = strchr(q, ')')) != NULL; q++) {
        const char *after = skip_sp(q + 1);
        shale_txn_cmp_t dummy;
        if (*after == '\0' || parse_cmp(after, &dummy) != NULL) {
            close = q;
            rest = after;
            break;
        }
    }
    if (close == NULL || close == key) {
        snprintf(err, errlen, "--if '%s': no KEY in the parentheses", s);
        return -1;
    }
    c->key = key;
    c->klen = (size_t)(close - key);
    if ((tlen == 6 && strncmp(s, "exists", 6) == 0) || (tlen == 7 && strncmp(s, "missing", 7) == 0)) {
        if (*rest != '\0') {
            snprintf(err, errlen, "--if '%s': %.*s(KEY) takes no operator", s, (int)tlen, s);
            return -1;
        }
        c->target = SHALE_TXN_EXISTS;
        c->cmp = SHALE_TXN_EQUAL;
        c->exists = tlen == 6;
        return 0;
    }
    int is_ver = tlen == 7 && strncmp(s, "version", 7) == 0;
    int is_val = tlen == 5 && strncmp(s, "value", 5) == 0;
    if (!is_ver && !is_val) {
        snprintf(err, errlen, "--if '%s': unknown target '%.*s' (version, value, exists, missing)",
                 s, (int)tlen, s);
        return -1;
    }
    const char *operand = *rest != '\0' ? parse_cmp(rest, &c->cmp) : NULL;
    if (operand == NULL) {
        snprintf(err, errlen, "--if '%s': expected an operator (= != < >) after the key", s);
        return -1;
    }
    operand = skip_sp(operand);
    if (is_ver) {
        c->target = SHALE_TXN_VERSION;
        if (ctl_parse_u64(operand, &c->version) != 0) {
            snprintf(err, errlen, "--if '%s': a version is a number, not '%s'", s, operand);
            return -1;
        }
    } else {
        c->target = SHALE_TXN_VALUE;
        c->value = operand;
        c->vlen = strlen(operand);
    }
    return 0;
}

/* A signed 64-bit decimal (ADD's delta). 0 or -1. */
static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || *s == ' ')
        return -1;
    *out = v;
    return 0;
}

/* One --then/--else. 0 or -1. */
static int parse_op(const char *s, const char *flag, shale_txn_op_t *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    s = skip_sp(s);
    const char *sp = strchr(s, ' ');
    size_t vlen = sp != NULL ? (size_t)(sp - s) : strlen(s);
    const char *key = sp != NULL ? skip_sp(sp) : "";
    int takes_value = 0; /* the rest after KEY: VALUE (put, append) or a number */
    int keepttl = vlen == 11 && strncmp(s, "put:keepttl", 11) == 0;
    int ttl = vlen > 8 && strncmp(s, "put:ttl=", 8) == 0;
    if ((vlen == 3 && strncmp(s, "put", 3) == 0) || keepttl || ttl) {
        o->type = SHALE_TXN_PUT;
        o->keep_ttl = keepttl;
        if (ttl) {
            char ms[32];
            snprintf(ms, sizeof(ms), "%.*s", (int)(vlen - 8), s + 8);
            if (vlen - 8 >= sizeof(ms) || ctl_parse_u64(ms, &o->ttl_ms) != 0 || o->ttl_ms == 0) {
                snprintf(err, errlen, "--%s '%s': put:ttl=MS takes a TTL of 1 ms or more", flag, s);
                return -1;
            }
        }
        takes_value = 1;
    } else if (vlen == 3 && strncmp(s, "del", 3) == 0) {
        o->type = SHALE_TXN_DEL;
    } else if (vlen == 3 && strncmp(s, "get", 3) == 0) {
        o->type = SHALE_TXN_GET;
    } else if (vlen == 3 && strncmp(s, "add", 3) == 0) {
        o->type = SHALE_TXN_ADD;
        takes_value = 1;
    } else if (vlen == 6 && strncmp(s, "append", 6) == 0) {
        o->type = SHALE_TXN_APPEND;
        takes_value = 1;
    } else if (vlen == 6 && strncmp(s, "expire", 6) == 0) {
        o->type = SHALE_TXN_EXPIRE;
        takes_value = 1;
    } else {
        snprintf(err, errlen,
                 "--%s '%s': expected put[:ttl=MS|:keepttl] KEY VALUE, del KEY, get KEY, add KEY "
                 "DELTA, append KEY VALUE or expire KEY MS",
                 flag, s);
        return -1;
    }
    const char *kend = strchr(key, ' ');
    o->key = key;
    o->klen = kend != NULL ? (size_t)(kend - key) : strlen(key);
    if (o->klen == 0) {
        snprintf(err, errlen, "--%s '%s': no KEY", flag, s);
        return -1;
    }
    if (!takes_value) {
        if (kend != NULL && *skip_sp(kend) != '\0') {
            snprintf(err, errlen, "--%s '%s': %.3s takes only a KEY", flag, s, s);
            return -1;
        }
        return 0;
    }
    if (kend == NULL) {
        snprintf(err, errlen, "--%s '%s': %.*s needs KEY %s", flag, s, (int)vlen, s,
                 o->type == SHALE_TXN_ADD      ? "DELTA"
                 : o->type == SHALE_TXN_EXPIRE ? "MS"
                                               : "VALUE");
        return -1;
    }
    const char *rest = kend + 1;
    if (o->type == SHALE_TXN_ADD && parse_i64(rest, &o->delta) != 0) {
        snprintf(err, errlen, "--%s '%s': DELTA is a signed 64-bit number, not '%s'", flag, s,
                 rest);
        return -1;
    }
    if (o->type == SHALE_TXN_EXPIRE && ctl_parse_u64(rest, &o->ttl_ms) != 0) {
        snprintf(err, errlen, "--%s '%s': MS is a number of milliseconds, not '%s'", flag, s, rest);
        return -1;
    }
    if (o->type == SHALE_TXN_PUT || o->type == SHALE_TXN_APPEND) {
        o->value = rest;
        o->vlen = strlen(rest);
    }
    return 0;
}

typedef struct txn_args {
    shale_txn_compare_t cmps[CTL_MAX_LIST];
    shale_txn_op_t then[CTL_MAX_LIST], els[CTL_MAX_LIST];
    size_t ncmps, nthen, nelse;
} txn_args_t;

static int txn_parse(const cmd_t *cmd, txn_args_t *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < cmd->nlist; i++) {
        int rv;
        switch (cmd->list_flag[i]) {
        case TXN_IF:
            rv = parse_cond(cmd->list[i], &a->cmps[a->ncmps++], err, errlen);
            break;
        case TXN_THEN:
            rv = parse_op(cmd->list[i], "then", &a->then[a->nthen++], err, errlen);
            break;
        default:
            rv = parse_op(cmd->list[i], "else", &a->els[a->nelse++], err, errlen);
            break;
        }
        if (rv != 0)
            return -1;
    }
    if (a->ncmps + a->nthen + a->nelse == 0) {
        snprintf(err, errlen, "txn needs at least one --if, --then or --else");
        return -1;
    }
    return 0;
}

int check_txn(const cmd_t *cmd, char *err, size_t errlen)
{
    txn_args_t a;
    return txn_parse(cmd, &a, err, errlen);
}

static const char *const op_names[] = {"?", "put", "del", "get", "add", "append", "expire"};

int run_txn(shale_client_t *c, const cmd_t *cmd)
{
    txn_args_t a;
    char err[256];
    if (txn_parse(cmd, &a, err, sizeof(err)) != 0) {
        fprintf(stderr, "shalectl: txn: %s\n", err);
        return EXIT_USAGE;
    }
    shale_txn_t t = {a.cmps, a.ncmps, a.then, a.nthen, a.els, a.nelse};
    int ok = 0;
    shale_item_result_t *res = NULL;
    size_t n = 0;
    int rv = shale_txn(c, &t, &ok, &res, &n);
    if (rv != SHALE_OK)
        return data_error("txn", c, rv);
    const shale_txn_op_t *ops = ok ? a.then : a.els;
    size_t nops = ok ? a.nthen : a.nelse;
    if (cmd->json) {
        printf("{\"succeeded\":%s,\"results\":[", ok ? "true" : "false");
    } else {
        printf("%s\n", ok ? "succeeded: the conditions held, --then ran"
                          : "failed: the conditions did not hold, --else ran");
    }
    for (size_t i = 0; i < n && i < nops; i++) {
        const shale_item_result_t *r = &res[i];
        shale_txn_op_type_t ty = ops[i].type;
        const char *name = op_names[ty <= SHALE_TXN_EXPIRE ? ty : 0];
        /* put, add, append: always a new value and version; the others say
         * whether the key was there. */
        int writes_value = ty == SHALE_TXN_PUT || ty == SHALE_TXN_ADD || ty == SHALE_TXN_APPEND;
        int shows_value =
            (ty == SHALE_TXN_GET && r->found) || ty == SHALE_TXN_ADD || ty == SHALE_TXN_APPEND;
        if (cmd->json) {
            printf("%s{\"op\":\"%s\",\"key\":", i ? "," : "", name);
            ctl_json_string(stdout, ops[i].key, ops[i].klen);
            if (!writes_value)
                printf(",\"found\":%s", r->found ? "true" : "false");
            if (writes_value || r->found)
                printf(",\"version\":%" PRIu64, r->version);
            if (shows_value) {
                printf(",\"value\":");
                ctl_json_string(stdout, r->data, r->len);
            }
            printf("}");
            continue;
        }
        printf("%s %.*s: ", name, (int)ops[i].klen, (const char *)ops[i].key);
        if (ty == SHALE_TXN_PUT) {
            printf("version %" PRIu64 "\n", r->version);
        } else if (ty == SHALE_TXN_ADD || ty == SHALE_TXN_APPEND) {
            if (r->len > 0)
                fwrite(r->data, 1, r->len, stdout);
            printf(" (version %" PRIu64 ")\n", r->version);
        } else if (!r->found) {
            printf("not found\n");
        } else if (ty == SHALE_TXN_DEL) {
            printf("deleted (was version %" PRIu64 ")\n", r->version);
        } else if (ty == SHALE_TXN_EXPIRE) {
            printf("%s (version %" PRIu64 ")\n", ops[i].ttl_ms > 0 ? "TTL set" : "TTL removed",
                   r->version);
        } else {
            if (r->len > 0)
                fwrite(r->data, 1, r->len, stdout);
            printf(" (version %" PRIu64 ")\n", r->version);
        }
    }
    if (cmd->json)
        printf("]}\n");
    shale_item_results_free(res, n);
    free(res);
    return ok ? EXIT_OKAY : EXIT_FAIL;
}

/* ---- scan ---------------------------------------------------------------------*/

const flag_spec_t scan_flags[] = {
    {"prefix", "P", "only keys that begin with P (a {hash tag} prefix scans one slot)", 0},
    {"limit", "N", "keys per page (default 100, at most 1000)", 0},
    {"cursor", "C", "continue from the cursor a previous scan printed (same --prefix)", 0},
    {"stale", "MS", "read from any replica at most MS ms old (default: linearizable)", 0},
    {"all", NULL, "follow the cursor to the end of the scan (every page)", 0},
    {NULL, NULL, NULL, 0},
};

int check_scan(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t n;
    if (cmd->set[1] && (ctl_parse_u64(cmd->val[1], &n) != 0 || n == 0 || n > 1000)) {
        snprintf(err, errlen, "--limit needs a number of keys in 1..1000, not '%s'", cmd->val[1]);
        return -1;
    }
    if (cmd->set[3] && (ctl_parse_u64(cmd->val[3], &n) != 0 || n == 0 || n > UINT32_MAX)) {
        snprintf(err, errlen, "--stale needs a positive number of milliseconds, not '%s'",
                 cmd->val[3]);
        return -1;
    }
    return 0;
}

/* key=value lines, then "cursor C" (or "cursor -" when the scan is complete)
 * on stderr-free stdout; --json: {"items":[{key,value,version}...],
 * "cursor":C|null}. --all prints every page's items and the final cursor. */
int run_scan(shale_client_t *c, const cmd_t *cmd)
{
    shale_scan_opts_t o = {0};
    shale_read_opts_t ro = {.consistency = SHALE_LINEARIZABLE};
    uint64_t n = 0;
    if (cmd->set[0]) {
        o.prefix = cmd->val[0];
        o.plen = strlen(cmd->val[0]);
    }
    if (cmd->set[1] && ctl_parse_u64(cmd->val[1], &n) == 0)
        o.limit = (uint32_t)n;
    if (cmd->set[3]) {
        ctl_parse_u64(cmd->val[3], &n);
        ro.consistency = SHALE_STALE;
        ro.max_staleness_ms = (uint32_t)n;
        o.read = &ro;
    }
    char *cursor = cmd->set[2] ? strdup(cmd->val[2]) : NULL;
    int all = cmd->set[4], first = 1;
    if (cmd->json)
        printf("{\"items\":[");
    for (;;) {
        shale_scan_result_t r;
        int rv = shale_scan(c, cursor, &o, &r);
        if (rv != SHALE_OK) {
            if (cmd->json)
                printf("]}\n");
            free(cursor);
            return data_error("scan", c, rv);
        }
        for (size_t i = 0; i < r.n; i++) {
            if (cmd->json) {
                printf("%s{\"key\":", first ? "" : ",");
                ctl_json_string(stdout, r.items[i].key, r.items[i].klen);
                printf(",\"value\":");
                ctl_json_string(stdout, r.items[i].value, r.items[i].vlen);
                printf(",\"version\":%" PRIu64 "}", r.items[i].version);
            } else {
                fwrite(r.items[i].key, 1, r.items[i].klen, stdout);
                putchar('=');
                if (r.items[i].vlen > 0)
                    fwrite(r.items[i].value, 1, r.items[i].vlen, stdout);
                putchar('\n');
            }
            first = 0;
        }
        free(cursor);
        cursor = r.cursor != NULL ? strdup(r.cursor) : NULL;
        shale_scan_result_free(&r);
        if (!all || cursor == NULL)
            break;
    }
    if (cmd->json) {
        printf("],\"cursor\":");
        if (cursor != NULL)
            ctl_json_str(stdout, cursor);
        else
            printf("null");
        printf("}\n");
    } else {
        printf("cursor %s\n", cursor != NULL ? cursor : "-");
    }
    free(cursor);
    return EXIT_OKAY;
}

/* ---- watch ----------------------------------------------------------------------*/

const flag_spec_t watch_flags[] = {
    {"prefix", NULL, "KEY is a hash-tag prefix ({tag} or {tag}rest): every key under it", 0},
    {"from", "REV", "start at revision REV (resume: the last revision seen + 1; default: now)", 0},
    {"group", "G", "the group REV counts in (printed with each event; a resume should pass it)",
     0},
    {"count", "N", "stop after N events (default: until interrupted or the watch ends)", 0},
    {NULL, NULL, NULL, 0},
};

int check_watch(const cmd_t *cmd, char *err, size_t errlen)
{
    uint64_t n;
    if (cmd->set[1] && (ctl_parse_u64(cmd->val[1], &n) != 0 || n == 0)) {
        snprintf(err, errlen, "--from needs a revision (a positive number), not '%s'",
                 cmd->val[1]);
        return -1;
    }
    if (cmd->set[2] && ctl_parse_id(cmd->val[2], &n) != 0) {
        snprintf(err, errlen, "--group needs a group id (a positive number), not '%s'",
                 cmd->val[2]);
        return -1;
    }
    if (cmd->set[3] && (ctl_parse_u64(cmd->val[3], &n) != 0 || n == 0)) {
        snprintf(err, errlen, "--count needs a positive number of events, not '%s'", cmd->val[3]);
        return -1;
    }
    if (cmd->set[2] && !cmd->set[1]) {
        snprintf(err, errlen, "--group goes with --from (a watch from now follows any group)");
        return -1;
    }
    return 0;
}

typedef struct watch_out {
    const cmd_t *cmd;
    uint64_t left; /* events still to print (UINT64_MAX: no --count) */
    uint64_t revision, group;
} watch_out_t;

static const char *kind_name(shale_watch_kind_t k)
{
    return k == SHALE_WATCH_PUT ? "put" : k == SHALE_WATCH_DELETE ? "del" : "expire";
}

/* One line per event: "REV put KEY=VALUE version V group G" (del/expire:
 * "REV del KEY version V group G"); --json: one object per line. */
static int watch_print(const shale_watch_batch_t *b, void *ud)
{
    watch_out_t *o = ud;
    if (b->status != SHALE_OK) { /* the end: where the caller stands */
        o->revision = b->revision;
        o->group = b->group;
        return 1;
    }
    for (size_t i = 0; i < b->n && o->left > 0; i++, o->left--) {
        const shale_watch_event_t *e = &b->events[i];
        if (o->cmd->json) {
            printf("{\"revision\":%" PRIu64 ",\"kind\":\"%s\",\"key\":", e->revision,
                   kind_name(e->kind));
            ctl_json_string(stdout, e->key, e->klen);
            if (e->kind == SHALE_WATCH_PUT) {
                printf(",\"value\":");
                ctl_json_string(stdout, e->value, e->vlen);
            }
            printf(",\"version\":%" PRIu64 ",\"group\":%" PRIu64 "}\n", e->version, b->group);
        } else {
            printf("%" PRIu64 " %s ", e->revision, kind_name(e->kind));
            fwrite(e->key, 1, e->klen, stdout);
            if (e->kind == SHALE_WATCH_PUT) {
                putchar('=');
                if (e->vlen > 0)
                    fwrite(e->value, 1, e->vlen, stdout);
            }
            printf(" version %" PRIu64 " group %" PRIu64 "\n", e->version, b->group);
        }
        o->revision = e->revision;
    }
    if (o->left > 0)
        o->revision = b->revision;
    o->group = b->group;
    fflush(stdout);
    return o->left == 0;
}

int run_watch(shale_client_t *c, const cmd_t *cmd)
{
    shale_watch_opts_t wo = {0};
    uint64_t n = 0;
    wo.prefix = cmd->set[0];
    if (cmd->set[1] && ctl_parse_u64(cmd->val[1], &n) == 0)
        wo.from_revision = n;
    if (cmd->set[2] && ctl_parse_u64(cmd->val[2], &n) == 0)
        wo.group = n;
    watch_out_t o = {.cmd = cmd, .left = UINT64_MAX};
    if (cmd->set[3] && ctl_parse_u64(cmd->val[3], &n) == 0)
        o.left = n;
    const char *key = cmd->pos[0];
    int rv = shale_watch(c, key, strlen(key), &wo, watch_print, &o);
    if (rv == SHALE_OK)
        return EXIT_OKAY;
    int code = data_error("watch", c, rv);
    if (rv == SHALE_ECOMPACTED || rv == SHALE_EWRONGGROUP)
        fprintf(stderr, "shalectl: watch: delivered up to revision %" PRIu64 " of group %" PRIu64
                        ": re-read the keys and watch from now\n", o.revision, o.group);
    return code;
}
