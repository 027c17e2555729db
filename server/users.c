/* Meta group (shaled --mode meta): the user table as a replicated state
 * machine, beside the cluster map (docs/security.md, "Users and roles").
 *
 * What this file owns:
 *  - s->users, the applied UserTable (NULL before the first user), stored
 *    in RocksDB metadata "users" atomically with the applied index, so it
 *    survives restarts and travels in snapshots (a checkpoint of the store)
 *    exactly as the map does;
 *  - USER_CHANGE: the leader proposes the change as one Raft entry
 *    (Command.user_change); the FSM decides it (auth_table_apply: add,
 *    remove, password; exactly-once by the change's Session) identically on
 *    every member, and the proposer answers from the apply;
 *  - USER_LIST: any member answers from its applied table — without the
 *    password hashes unless with_hashes is asked — at once, or as a
 *    long-poll (known_version + wait_ms) like MAP_GET.
 *
 * Rules: the version grows by exactly one per applied change; a refused
 * change (name exists, unknown user, bad record) changes nothing but the
 * applied index. Passwords never reach this file: shalectl hashes them and
 * sends the hash. Log lines name the user, role and operation, never a hash.
 * Never calls into Raft from a Raft callback (proposals leave from
 * users_flush, in the end-of-turn check). Who may send these requests is
 * decided before they get here (cluster/auth.h). */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "log.h"
#include "server.h"
#include "wire.h"

#define META_USERS "users"
#define USERS_WAIT_MAX_MS 60000
#define USERS_WATCHERS_MAX 10000
#define USERS_SWEEP_MS 50

static void change_unanswered(shaled_t *s, sreq_t *r, int status);

static int is_meta(const shaled_t *s)
{
    return strcmp(s->cfg.mode, "meta") == 0;
}

uint64_t users_version(const shaled_t *s)
{
    return s->users != NULL && s->users->has_version ? s->users->version : 0;
}

static void reply_list(shaled_t *s, sreq_t *r)
{
    const Shale__UserListRequest *q = (const Shale__UserListRequest *)r->msg;
    Shale__UserTable *t = auth_table_copy(s->users, q->has_with_hashes && q->with_hashes);
    if (t == NULL) {
        sreq_fail(r, SHALE_ENOMEM, "out of memory listing users");
        return;
    }
    Shale__UserListResponse resp = SHALE__USER_LIST_RESPONSE__INIT;
    resp.version = users_version(s);
    resp.n_users = t->n_users;
    resp.users = t->users;
    sreq_reply(r, SHALE_MSG_USER_LIST_RESP, &resp.base);
    shale__user_table__free_unpacked(t, NULL);
}

static uint64_t watch_deadline_us(const sreq_t *r)
{
    const Shale__UserListRequest *q = (const Shale__UserListRequest *)r->msg;
    uint64_t w = q->has_wait_ms ? q->wait_ms : 0;
    if (w > USERS_WAIT_MAX_MS)
        w = USERS_WAIT_MAX_MS;
    return r->received_us + w * 1000;
}

/* Answer the watchers that now have news (or whose wait is over). */
static void wake_watchers(shaled_t *s, int all)
{
    uint64_t now = shaled_now_us();
    qnode_t *n = s->user_watchers.next;
    while (n != &s->user_watchers) {
        sreq_t *r = q_data(n, sreq_t, link);
        n = n->next;
        const Shale__UserListRequest *q = (const Shale__UserListRequest *)r->msg;
        uint64_t known = q->has_known_version ? q->known_version : 0;
        if (all || users_version(s) != known || now >= watch_deadline_us(r)) {
            q_remove(&r->link);
            s->nuser_watchers--;
            reply_list(s, r);
        }
    }
}

static void on_sweep(uv_timer_t *t)
{
    wake_watchers(t->data, 0);
}

int users_load(shaled_t *s, char *err)
{
    if (!is_meta(s))
        return 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rv = store_get_meta(s->store, META_USERS, &buf, &len, err);
    if (rv == SHALE_ENOTFOUND) {
        users_free(s);
        return 0;
    }
    if (rv != 0)
        return rv;
    Shale__UserTable *t = shale__user_table__unpack(NULL, len, buf);
    free(buf);
    if (t == NULL) {
        snprintf(err, STORE_ERRLEN, "stored user table is malformed");
        return SHALE_ECORRUPT;
    }
    users_free(s);
    s->users = t;
    s->users_gen++;
    return 0;
}

void users_start(shaled_t *s)
{
    q_init(&s->user_watchers);
    q_init(&s->user_pending);
    rp_init(&s->user_props, s, change_unanswered);
    uv_timer_init(s->loop, &s->user_sweep);
    s->user_sweep.data = s;
    if (is_meta(s))
        uv_timer_start(&s->user_sweep, on_sweep, USERS_SWEEP_MS, USERS_SWEEP_MS);
}

void users_list(shaled_t *s, sreq_t *r)
{
    const Shale__UserListRequest *q = (const Shale__UserListRequest *)r->msg;
    uint64_t known = q->has_known_version ? q->known_version : 0;
    if (users_version(s) != known || !q->has_wait_ms || q->wait_ms == 0) {
        reply_list(s, r);
        return;
    }
    if (s->nuser_watchers >= USERS_WATCHERS_MAX) {
        sreq_fail(r, SHALE_EOVERLOAD, "too many user table watchers on this meta node");
        return;
    }
    q_push(&s->user_watchers, &r->link);
    s->nuser_watchers++;
}

void users_change(shaled_t *s, sreq_t *r)
{
    const Shale__UserChangeRequest *c = (const Shale__UserChangeRequest *)r->msg;
    char msg[AUTH_ERRLEN];
    /* A record that could never apply is refused before it reaches the log
     * (the apply decides everything else: existence, the table's size). */
    if (auth_name_check(c->user->name, msg, sizeof(msg)) != 0 ||
        (c->op == SHALE__USER_OP__USER_OP_ADD &&
         auth_user_validate(c->user, 1, msg, sizeof(msg)) != 0)) {
        sreq_fail(r, SHALE_EINVAL, msg);
        return;
    }
    q_push(&s->user_pending, &r->link);
}

/* A USER_CHANGE whose entry completed without its apply answering it. */
static void change_unanswered(shaled_t *s, sreq_t *r, int status)
{
    if (status != 0) {
        sreq_fail(r, SHALE_ENOTLEADER,
                  "leadership lost before the user change was confirmed; outcome unknown, "
                  "retry with the same session");
        return;
    }
    Shale__UserChangeResponse resp = SHALE__USER_CHANGE_RESPONSE__INIT;
    resp.version = users_version(s); /* applied as a replay: the table as it is */
    sreq_reply(r, SHALE_MSG_USER_CHANGE_RESP, &resp.base);
}

void users_flush(shaled_t *s)
{
    while (!q_empty(&s->user_pending)) {
        sreq_t *r = q_data(s->user_pending.next, sreq_t, link);
        q_remove(&r->link);
        if (s->stopping || !raft_node_is_leader(s)) {
            sreq_fail(r, s->stopping ? SHALE_EUNAVAILABLE : SHALE_ENOTLEADER,
                      s->stopping ? "node is shutting down" : "user changes go to the leader");
            continue;
        }
        Shale__Command cmd = SHALE__COMMAND__INIT;
        cmd.user_change = (Shale__UserChangeRequest *)r->msg;
        rp_submit(&s->user_props, r, &cmd);
    }
}

static int same_session(const Shale__Session *a, const Shale__Session *b)
{
    return a != NULL && b != NULL && a->client_id == b->client_id && a->seq == b->seq;
}

static const char *op_name(int op)
{
    switch (op) {
    case SHALE__USER_OP__USER_OP_ADD:
        return "added";
    case SHALE__USER_OP__USER_OP_REMOVE:
        return "removed";
    case SHALE__USER_OP__USER_OP_PASSWD:
        return "password changed";
    default:
        return "?";
    }
}

static void reply_changed(sreq_t *r, uint64_t version, const char *msg)
{
    Shale__UserChangeResponse resp = SHALE__USER_CHANGE_RESPONSE__INIT;
    resp.version = version;
    resp.message = (char *)msg;
    sreq_reply(r, SHALE_MSG_USER_CHANGE_RESP, &resp.base);
}

int users_apply(shaled_t *s, uint64_t index, const Shale__Command *cmd, char *err)
{
    const Shale__UserChangeRequest *c = cmd->user_change;
    if (index <= store_applied_index(s->store))
        return 0; /* replay: the stored table already includes it */
    sreq_t *r = rp_take(&s->user_props, cmd);
    if (!is_meta(s)) {
        if (r != NULL)
            sreq_fail(r, SHALE_EINVAL, "not a meta node");
        return store_apply_noop(s->store, index, err);
    }
    char msg[AUTH_ERRLEN + 64];
    if (s->users != NULL && same_session(s->users->last_change, c->session)) {
        if (r != NULL) /* a retry of the change that made this version */
            reply_changed(r, users_version(s), "already applied (a retry)");
        return store_apply_noop(s->store, index, err);
    }
    int code = 0;
    Shale__UserTable *next = auth_table_apply(s->users, c, &code, msg, sizeof(msg));
    if (next == NULL && code == SHALE_ENOMEM) {
        /* Not a decision every member would make: stop rather than diverge. */
        snprintf(err, STORE_ERRLEN, "out of memory applying a user change");
        if (r != NULL)
            sreq_fail(r, SHALE_ENOMEM, err);
        return SHALE_ENOMEM;
    }
    if (next == NULL) {
        if (r != NULL)
            sreq_fail(r, code, msg);
        return store_apply_noop(s->store, index, err);
    }
    size_t len = shale__user_table__get_packed_size(next);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        shale__user_table__free_unpacked(next, NULL);
        snprintf(err, STORE_ERRLEN, "out of memory storing the user table");
        if (r != NULL)
            sreq_fail(r, SHALE_ENOMEM, err);
        return SHALE_ENOMEM;
    }
    shale__user_table__pack(next, buf);
    int rv = store_apply_meta(s->store, index, META_USERS, buf, len, err);
    free(buf);
    if (rv != 0) {
        shale__user_table__free_unpacked(next, NULL);
        if (r != NULL)
            sreq_fail(r, SHALE_ESTORAGE, err);
        return rv;
    }
    users_free(s);
    s->users = next;
    s->users_gen++;
    const Shale__User *u = auth_table_find(next, c->user->name);
    log_info("user table changed", " version=%llu user=%s change=\"%s\" role=%s users=%zu",
             (unsigned long long)users_version(s), c->user->name, op_name(c->op),
             u != NULL ? auth_role_name(u->role) : "-", next->n_users);
    snprintf(msg, sizeof(msg), "user '%s' %s", c->user->name, op_name(c->op));
    if (r != NULL)
        reply_changed(r, users_version(s), msg);
    wake_watchers(s, 0);
    return 0;
}

void users_fail_all(shaled_t *s, int code, const char *msg)
{
    wake_watchers(s, 1); /* the table as it is: a valid long-poll answer */
    while (!q_empty(&s->user_pending)) {
        sreq_t *r = q_data(s->user_pending.next, sreq_t, link);
        q_remove(&r->link);
        sreq_fail(r, code, msg);
    }
}

void users_stop(shaled_t *s)
{
    if (s->user_sweep.loop != NULL && !uv_is_closing((uv_handle_t *)&s->user_sweep))
        uv_close((uv_handle_t *)&s->user_sweep, NULL);
}

void users_free(shaled_t *s)
{
    if (s->users != NULL)
        shale__user_table__free_unpacked(s->users, NULL);
    s->users = NULL;
    s->users_gen++;
}
