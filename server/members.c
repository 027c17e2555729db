/* The shard group's member table: raft id -> (raft address, client address,
 * role), replicated through the group's own log.
 *
 * Raft's configuration knows ids and raft addresses only; clients need the
 * leader's *client* address in NOT_LEADER hints. The table is written by
 * Command.members entries (one whole table per change, stored under the
 * "members" metadata key in the same RocksDB batch as the applied index) and
 * seeded at bootstrap from --initial-cluster, which every founding member is
 * given identically. A node that joins later receives it with the log or a
 * snapshot.
 *
 * Owns s->members (an unpacked MemberTable). Never changes Raft's
 * configuration itself: admin.c does that. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"

#define META_MEMBERS "members"

static void set_table(shaled_t *s, Shale__MemberTable *t)
{
    if (s->members != NULL)
        shale__member_table__free_unpacked(s->members, NULL);
    s->members = t;
}

/* Deep copy through pack/unpack: the result is one unpacked message that
 * shale__member_table__free_unpacked releases. */
static Shale__MemberTable *copy_table(const Shale__MemberTable *t)
{
    size_t n = shale__member_table__get_packed_size(t);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return NULL;
    shale__member_table__pack(t, buf);
    Shale__MemberTable *c = shale__member_table__unpack(NULL, n, buf);
    free(buf);
    return c;
}

int members_parse_list(const char *spec, Shale__MemberTable **out, char *err,
                       size_t errlen)
{
    /* "ID=RAFT_ADDR/CLIENT_ADDR[,...]" */
    Shale__MemberTable t = SHALE__MEMBER_TABLE__INIT;
    Shale__Member ms[16], *ptrs[16];
    char ids[16][24], rafts[16][128], clients[16][128];
    size_t n = 0;
    const char *p = spec;
    *out = NULL;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[300];
        if (n == 16 || len == 0 || len >= sizeof(item)) {
            snprintf(err, errlen, "initial-cluster: %s", n == 16 ? "more than 16 members"
                                                              : "empty or overlong entry");
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        char *eq = strchr(item, '='), *slash = strchr(item, '/');
        char host[128];
        int port;
        if (eq == NULL || slash == NULL || slash < eq) {
            snprintf(err, errlen,
                     "initial-cluster entry '%s' is not ID=RAFT_HOST:PORT/CLIENT_HOST:PORT", item);
            return -1;
        }
        *eq = '\0';
        *slash = '\0';
        char *e = NULL;
        unsigned long long id = strtoull(item, &e, 10);
        if (e == item || *e != '\0' || id == 0) {
            snprintf(err, errlen, "initial-cluster: bad id '%s'", item);
            return -1;
        }
        if (shale_split_addr(eq + 1, host, sizeof(host), &port) != 0 ||
            shale_split_addr(slash + 1, host, sizeof(host), &port) != 0 ||
            strlen(eq + 1) >= sizeof(rafts[0]) || strlen(slash + 1) >= sizeof(clients[0])) {
            snprintf(err, errlen, "initial-cluster: member %llu has a bad address", id);
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            if (ms[i].id == id) {
                snprintf(err, errlen, "initial-cluster: id %llu appears twice", id);
                return -1;
            }
        snprintf(ids[n], sizeof(ids[n]), "%llu", id);
        snprintf(rafts[n], sizeof(rafts[n]), "%s", eq + 1);
        snprintf(clients[n], sizeof(clients[n]), "%s", slash + 1);
        shale__member__init(&ms[n]);
        ms[n].id = id;
        ms[n].raft_addr = rafts[n];
        ms[n].client_addr = clients[n];
        ms[n].has_role = 1;
        ms[n].role = SHALE__MEMBER_ROLE__ROLE_VOTER;
        ptrs[n] = &ms[n];
        n++;
        p += len;
        if (*p == ',')
            p++;
    }
    if (n == 0) {
        snprintf(err, errlen, "initial-cluster is empty");
        return -1;
    }
    t.n_members = n;
    t.members = ptrs;
    *out = copy_table(&t);
    if (*out == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int members_set(shaled_t *s, uint64_t index, const Shale__MemberTable *t,
                char *err)
{
    size_t n = shale__member_table__get_packed_size(t);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        snprintf(err, STORE_ERRLEN, "out of memory");
        return SHALE_ENOMEM;
    }
    shale__member_table__pack(t, buf);
    int rv = store_apply_meta(s->store, index, META_MEMBERS, buf, n, err);
    free(buf);
    if (rv != 0)
        return rv;
    Shale__MemberTable *c = copy_table(t);
    if (c == NULL) {
        snprintf(err, STORE_ERRLEN, "out of memory");
        return SHALE_ENOMEM;
    }
    set_table(s, c);
    return 0;
}

int members_load(shaled_t *s, const Shale__MemberTable *seed, char *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rv = store_get_meta(s->store, META_MEMBERS, &buf, &len, err);
    if (rv == SHALE_ENOTFOUND) {
        if (seed == NULL)
            return 0; /* joining: the table arrives with the log */
        return members_set(s, 0, seed, err);
    }
    if (rv != 0)
        return rv;
    Shale__MemberTable *t = shale__member_table__unpack(NULL, len, buf);
    free(buf);
    if (t == NULL) {
        snprintf(err, STORE_ERRLEN, "stored member table is malformed");
        return SHALE_ECORRUPT;
    }
    set_table(s, t);
    return 0;
}

const Shale__Member *members_find(const shaled_t *s, uint64_t id)
{
    if (s->members == NULL)
        return NULL;
    for (size_t i = 0; i < s->members->n_members; i++)
        if (s->members->members[i]->id == id)
            return s->members->members[i];
    return NULL;
}

Shale__MemberTable *members_with(const shaled_t *s, const Shale__Member *add,
                                 uint64_t remove_id)
{
    Shale__MemberTable t = SHALE__MEMBER_TABLE__INIT;
    size_t have = s->members ? s->members->n_members : 0;
    Shale__Member **ptrs = calloc(have + 1, sizeof(*ptrs));
    if (ptrs == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < have; i++) {
        Shale__Member *m = s->members->members[i];
        if (m->id == remove_id || (add != NULL && m->id == add->id))
            continue;
        ptrs[n++] = m;
    }
    if (add != NULL)
        ptrs[n++] = (Shale__Member *)add;
    t.n_members = n;
    t.members = ptrs;
    Shale__MemberTable *c = copy_table(&t);
    free(ptrs);
    return c;
}

void members_free(shaled_t *s)
{
    set_table(s, NULL);
}
