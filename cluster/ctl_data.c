/* shalectl data verbs: get, put, del, cas.
 *
 * They speak the ordinary client protocol to whatever main() connected:
 * a router (--router) that finds each key's group, or one group directly
 * (--addr). Exit 0 on success; 1 for a key not found or a CAS whose
 * expectation did not hold (scripts test for it); errors as ctl_exit_code. */
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

int run_put(shale_client_t *c, const cmd_t *cmd)
{
    const char *key = cmd->pos[0], *val = cmd->pos[1];
    uint64_t version = 0;
    int rv = shale_put(c, key, strlen(key), val, strlen(val), &version);
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
