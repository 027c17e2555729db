/* The libshale client handle and the life of a request.
 *
 * Owns: options, the session identity (client_id, seq, ack_floor), the
 * request table, the pending/send/mutation queues, deadlines, completion and
 * cancel-on-close, and the asynchronous entry points of shale.h.
 *
 * Rules of a request's life:
 *  - a request is checked and packed once, at submit; its frame (id and
 *    session seq included) is what every (re-)send writes, so a retry after
 *    a reconnect is the same request to the server;
 *  - it completes exactly once: by its answer, by its deadline, by a fatal
 *    connection verdict (cluster mismatch, garbage peer) or by close; its
 *    callback never runs inside the submit call;
 *  - a deadline that passes after the request was written completes it with
 *    SHALE_ETIMEOUT: for a mutation the outcome is then unknown. A request
 *    that never left the process gets SHALE_EIO (with the connection error)
 *    or SHALE_ETIMEOUT (still connecting / queued), and was not applied;
 *  - an answer for an id no longer pending (completed by timeout) is ignored;
 *  - a server's error answer (NOT_LEADER + hint, UNAVAILABLE, OVERLOADED,
 *    ...) completes the request with that error: redirects and retries on
 *    answers are the router's job (DESIGN §1); only lost connections are
 *    retried here. A mutation refused after it was re-sent says in its
 *    message that an earlier attempt may have applied.
 *
 * Never touches sockets: conn.c does. Never blocks: sync.c does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "tls.h"

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define DEFAULT_MAX_INFLIGHT 1024
#define DEFAULT_STALL_MS 2000
#define DEFAULT_MAX_KEY 4096
#define DEFAULT_MAX_VALUE (1024 * 1024)

const char *shale_version(void)
{
    return SHALE_VERSION;
}

void shale_options_init(shale_options_t *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
    o->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    o->max_frame = FRAME_DEFAULT_MAX;
    o->max_inflight = DEFAULT_MAX_INFLIGHT;
    o->stall_ms = DEFAULT_STALL_MS;
}

uint64_t client_now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

uint64_t shale_client_id(const shale_client_t *c)
{
    return c ? c->client_id : 0;
}

static const char *role_name(int role)
{
    switch (role) {
    case SHALE__USER_ROLE__USER_READ:
        return "read";
    case SHALE__USER_ROLE__USER_READWRITE:
        return "readwrite";
    case SHALE__USER_ROLE__USER_ADMIN:
        return "admin";
    case 0:
        return "";
    default:
        return "?";
    }
}

int shale_whoami(const shale_client_t *c, shale_whoami_t *out)
{
    if (out == NULL)
        return SHALE_EINVAL;
    memset(out, 0, sizeof(*out));
    if (c == NULL)
        return SHALE_EINVAL;
    if (!c->who.have)
        return SHALE_EUNAVAILABLE;
    out->auth = c->who.auth;
    snprintf(out->user, sizeof(out->user), "%s", c->who.user);
    snprintf(out->role, sizeof(out->role), "%s", role_name(c->who.role));
    out->key_prefix_len = c->who.prefix_len;
    if (c->who.prefix_len > 0)
        memcpy(out->key_prefix, c->who.prefix, c->who.prefix_len);
    return SHALE_OK;
}

void creq_unref(creq_t *cr)
{
    if (--cr->refs == 0) {
        if (cr->secret)
            explicit_bzero(cr->frame, cr->flen);
        free(cr);
    }
}

/* ---- Creation ------------------------------------------------------------*/

/* "host:port" or "[v6addr]:port". */
static int split_addr(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
    const char *h = addr, *hend, *p;
    if (addr == NULL || addr[0] == '\0')
        return -1;
    if (addr[0] == '[') {
        h = addr + 1;
        hend = strchr(h, ']');
        if (hend == NULL || hend[1] != ':')
            return -1;
        p = hend + 2;
    } else {
        hend = strrchr(addr, ':');
        if (hend == NULL || memchr(addr, ':', (size_t)(hend - addr)) != NULL)
            return -1; /* no port, or a bare IPv6 address */
        p = hend + 1;
    }
    size_t n = (size_t)(hend - h);
    if (n == 0 || n >= hlen || strlen(p) == 0 || strlen(p) >= plen)
        return -1;
    char *end;
    unsigned long v = strtoul(p, &end, 10);
    if (*end != '\0' || v == 0 || v > 65535 || p[0] < '0' || p[0] > '9')
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    snprintf(port, plen, "%lu", v);
    return 0;
}

void client_use_addr(shale_client_t *c, unsigned i)
{
    c->cur = i;
    snprintf(c->addr, sizeof(c->addr), "%s", c->addrs[i]);
    /* Validated when it entered the list. */
    split_addr(c->addrs[i], c->host, sizeof(c->host), c->port, sizeof(c->port));
}

int client_find_addr(shale_client_t *c, const char *addr)
{
    char h[128], pt[8];
    for (unsigned i = 0; i < c->naddrs; i++)
        if (strcmp(c->addrs[i], addr) == 0)
            return (int)i;
    if (c->naddrs == CLIENT_MAX_ADDRS || strlen(addr) >= sizeof(c->addrs[0]) ||
        split_addr(addr, h, sizeof(h), pt, sizeof(pt)) != 0)
        return -1;
    snprintf(c->addrs[c->naddrs], sizeof(c->addrs[0]), "%s", addr);
    return (int)c->naddrs++;
}

static uint64_t random_id(void)
{
    uint64_t id = 0;
    if (uv_random(NULL, NULL, &id, sizeof(id), 0, NULL) != 0 || id == 0)
        id = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&id;
    return id ? id : 1;
}

static void on_handle_close(uv_handle_t *h)
{
    client_handle_closed(h->data);
}

static int nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* The TLS context the options ask for (c->tls stays NULL without TLS). The
 * option strings are not kept. */
static int client_tls(shale_client_t *c, char *err)
{
    shale_options_t *o = &c->opts;
    int want = nonempty(o->tls_ca) || nonempty(o->tls_cert) || nonempty(o->tls_key) ||
               nonempty(o->tls_server_name);
    if (want) {
        tls_opts_t to = {.ca_file = o->tls_ca, .cert_file = o->tls_cert, .key_file = o->tls_key};
        char e[TLS_ERRLEN];
        int rv = tls_ctx_new(TLS_CLIENT, &to, &c->tls, e, sizeof(e));
        if (rv != 0) {
            snprintf(err, SHALE_ERRMSG_LEN, "%s", e);
            return rv == TLS_ENOMEM ? SHALE_ENOMEM : SHALE_EINVAL;
        }
        if (nonempty(o->tls_server_name)) {
            if (strcmp(o->tls_server_name, SHALE_TLS_NAME_HOST) == 0) {
                c->tls_name_host = 1;
            } else if (strlen(o->tls_server_name) >= sizeof(c->tls_name)) {
                tls_ctx_free(c->tls);
                c->tls = NULL;
                snprintf(err, SHALE_ERRMSG_LEN, "tls_server_name is too long");
                return SHALE_EINVAL;
            } else {
                snprintf(c->tls_name, sizeof(c->tls_name), "%s", o->tls_server_name);
            }
        }
    }
    o->tls_ca = o->tls_cert = o->tls_key = o->tls_server_name = NULL;
    return SHALE_OK;
}

int client_create(uv_loop_t *loop, const char *addr, const shale_options_t *opts,
                  shale_client_t **out, char *err)
{
    *out = NULL;
    if (loop == NULL) {
        snprintf(err, SHALE_ERRMSG_LEN, "no loop given");
        return SHALE_EINVAL;
    }
    shale_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, SHALE_ERRMSG_LEN, "out of memory");
        return SHALE_ENOMEM;
    }
    /* "host:port[,host:port...]": the nodes of one group, any order. */
    const char *p = addr ? addr : "";
    do {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char one[128], h[128], pt[8];
        if (n == 0 || n >= sizeof(one) || c->naddrs == CLIENT_MAX_ADDRS) {
            snprintf(err, SHALE_ERRMSG_LEN, "bad address list '%.120s' (want host:port[,host:port...], "
                     "at most %d)", addr ? addr : "(null)", CLIENT_MAX_ADDRS);
            free(c);
            return SHALE_EINVAL;
        }
        memcpy(one, p, n);
        one[n] = '\0';
        if (split_addr(one, h, sizeof(h), pt, sizeof(pt)) != 0) {
            snprintf(err, SHALE_ERRMSG_LEN, "bad address '%.200s' (want host:port or [v6]:port)",
                     one);
            free(c);
            return SHALE_EINVAL;
        }
        memcpy(c->addrs[c->naddrs++], one, n + 1);
        p = end ? end + 1 : p + n;
    } while (*p != '\0' || p[-1] == ',');
    client_use_addr(c, 0);
    if (opts != NULL)
        c->opts = *opts;
    else
        shale_options_init(&c->opts);
    /* Zero means "the default" for every numeric option. */
    if (c->opts.timeout_ms == 0)
        c->opts.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (c->opts.connect_timeout_ms == 0)
        c->opts.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (c->opts.max_frame == 0)
        c->opts.max_frame = FRAME_DEFAULT_MAX;
    if (c->opts.max_inflight == 0)
        c->opts.max_inflight = DEFAULT_MAX_INFLIGHT;
    if (c->opts.stall_ms == 0)
        c->opts.stall_ms = DEFAULT_STALL_MS;
    if (c->opts.cluster_id != NULL && c->opts.cluster_id[0] != '\0') {
        c->cluster_id = strdup(c->opts.cluster_id);
        if (c->cluster_id == NULL) {
            free(c);
            snprintf(err, SHALE_ERRMSG_LEN, "out of memory");
            return SHALE_ENOMEM;
        }
    }
    c->opts.cluster_id = NULL; /* the caller's string is not kept */
    if (c->opts.user != NULL) {
        Shale__Credential cred = SHALE__CREDENTIAL__INIT;
        cred.user = (char *)c->opts.user;
        cred.password.data = (uint8_t *)c->opts.password;
        cred.password.len = c->opts.password != NULL ? c->opts.password_len : 0;
        c->credential_len = shale__credential__get_packed_size(&cred);
        c->credential = malloc(c->credential_len);
        if (c->credential == NULL) {
            free(c->cluster_id);
            free(c);
            snprintf(err, SHALE_ERRMSG_LEN, "out of memory");
            return SHALE_ENOMEM;
        }
        shale__credential__pack(&cred, c->credential);
    }
    /* The caller's strings are not kept. */
    c->opts.user = NULL;
    c->opts.password = NULL;
    c->opts.password_len = 0;
    int rv = client_tls(c, err);
    if (rv != SHALE_OK) {
        if (c->credential != NULL)
            explicit_bzero(c->credential, c->credential_len);
        free(c->credential);
        free(c->cluster_id);
        free(c);
        return rv;
    }
    c->client_id = c->opts.client_id ? c->opts.client_id : random_id();
    c->next_id = 1;
    c->next_seq = 1;
    c->lim.max_key = DEFAULT_MAX_KEY;
    c->lim.max_value = DEFAULT_MAX_VALUE;
    c->lim.max_frame = FRAME_DEFAULT_MAX;
    c->loop = loop;
    c->state = CS_IDLE;
    reqtable_init(&c->table);
    cq_init(&c->pending);
    cq_init(&c->sendq);
    cq_init(&c->mutations);
    cq_init(&c->canceled);
    cq_init(&c->watches);
    uv_timer_init(loop, &c->deadline_timer);
    uv_timer_init(loop, &c->conn_timer);
    uv_timer_init(loop, &c->stall_timer);
    uv_prepare_init(loop, &c->flush_prep);
    c->deadline_timer.data = c;
    c->conn_timer.data = c;
    c->stall_timer.data = c;
    c->flush_prep.data = c;
    c->nhandles = 4;
    if (c->opts.stall_ms != UINT32_MAX) {
        uint64_t every = c->opts.stall_ms / 4 > 10 ? c->opts.stall_ms / 4 : 10;
        uv_timer_start(&c->stall_timer, cconn_check_stall, every, every);
        uv_unref((uv_handle_t *)&c->stall_timer); /* never keeps the loop alive */
    }
    *out = c;
    return SHALE_OK;
}

int shale_connect_async(uv_loop_t *loop, const char *addr, const shale_options_t *opts,
                        shale_client_t **out)
{
    return shale_client_open(loop, addr, opts, out);
}

void shale_close_async(shale_client_t *c, shale_close_cb cb)
{
    shale_client_close(c, cb);
}

int shale_client_open(uv_loop_t *loop, const char *addr, const shale_options_t *opts,
                      shale_client_t **out)
{
    char err[SHALE_ERRMSG_LEN];
    if (out == NULL)
        return SHALE_EINVAL;
    return client_create(loop, addr, opts, out, err);
}

/* ---- Completion ----------------------------------------------------------*/

static void on_deadline(uv_timer_t *t);

static void arm_deadline(shale_client_t *c)
{
    if (c->closing)
        return;
    if (cq_empty(&c->pending)) {
        uv_timer_stop(&c->deadline_timer);
        return;
    }
    /* Submit order is deadline order unless some request brought its
     * own deadline; then the earliest is looked for. */
    creq_t *head = cq_data(c->pending.next, creq_t, all_link);
    uint64_t due = head->deadline;
    if (c->ncustom > 0)
        for (cq_t *n = c->pending.next; n != &c->pending; n = n->next) {
            creq_t *cr = cq_data(n, creq_t, all_link);
            if (cr->deadline < due)
                due = cr->deadline;
        }
    uint64_t now = client_now_ms();
    uint64_t wait = due > now ? due - now : 0;
    /* The loop clock may lag real time: an early wake-up re-arms. */
    uv_timer_start(&c->deadline_timer, on_deadline, wait, 0);
}

void client_update_ref(shale_client_t *c)
{
    int want = c->npending > 0;
    if (c->conn != NULL && want != c->referenced)
        cconn_ref(c->conn, want);
    c->referenced = want;
}

/* Unlink a request from every client structure; it stays allocated. */
static void detach(shale_client_t *c, creq_t *cr)
{
    reqtable_del(&c->table, cr->id);
    cq_remove(&cr->all_link);
    if (cq_linked(&cr->send_link))
        cq_remove(&cr->send_link);
    if (cq_linked(&cr->mut_link))
        cq_remove(&cr->mut_link);
    c->npending--;
    if (cr->custom_deadline) {
        cr->custom_deadline = 0;
        c->ncustom--;
    }
    if (cr->on_wire) {
        cr->on_wire = 0;
        c->inflight--;
    }
}

static void after_detach(shale_client_t *c)
{
    if (c->closing)
        return;
    if (c->npending == 0) {
        uv_timer_stop(&c->deadline_timer);
        client_update_ref(c);
    }
    if (!cq_empty(&c->sendq) && c->inflight < c->opts.max_inflight)
        cconn_kick(c);
}

/* Hand a detached request back to its owner: last touch of cr and req. */
static void finish(creq_t *cr, int status)
{
    shale_req_t *req = cr->req;
    shale_cb cb = cr->cb;
    cr->req = NULL;
    req->priv_ = NULL;
    req->status = status;
    creq_unref(cr);
    cb(req, status);
}

static void complete(shale_client_t *c, creq_t *cr, int status)
{
    detach(c, cr);
    after_detach(c);
    finish(cr, status);
}

void client_take(shale_client_t *c, int written_only, cq_t *out)
{
    cq_t *n = c->pending.next;
    while (n != &c->pending) {
        creq_t *cr = cq_data(n, creq_t, all_link);
        n = n->next;
        if (written_only && !cr->on_wire)
            continue;
        detach(c, cr);
        cq_push(out, &cr->all_link);
    }
    after_detach(c);
}

void client_finish_list(shale_client_t *c, cq_t *list, int code, const char *msg)
{
    (void)c;
    while (!cq_empty(list)) {
        creq_t *cr = cq_data(list->next, creq_t, all_link);
        cq_remove(&cr->all_link);
        if (msg != NULL)
            snprintf(cr->req->errmsg, SHALE_ERRMSG_LEN, "%s", msg);
        finish(cr, code);
    }
}

void client_fail_all(shale_client_t *c, int code, const char *msg)
{
    cq_t list;
    cq_init(&list);
    client_take(c, 0, &list);
    client_finish_list(c, &list, code, msg);
}

void client_fail_id(shale_client_t *c, uint64_t id, int code, const char *msg)
{
    creq_t *cr = reqtable_get(&c->table, id);
    if (cr == NULL)
        return;
    snprintf(cr->req->errmsg, SHALE_ERRMSG_LEN, "%s", msg);
    complete(c, cr, code);
}

void client_requeue_all(shale_client_t *c)
{
    while (!cq_empty(&c->sendq))
        cq_remove(c->sendq.next);
    for (cq_t *n = c->pending.next; n != &c->pending; n = n->next) {
        creq_t *cr = cq_data(n, creq_t, all_link);
        cr->on_wire = 0;
        cq_push(&c->sendq, &cr->send_link);
    }
    c->inflight = 0;
}

void client_on_answer(shale_client_t *c, const frame_hdr_t *h, const uint8_t *payload)
{
    creq_t *cr = reqtable_get(&c->table, h->id);
    if (cr == NULL)
        return; /* completed already (deadline): the late answer is dropped */
    int status = codec_decode(cr->req, cr->resp_type, cr->nkeys, h->type, payload, h->len);
    if ((status == SHALE_ENOTLEADER || status == SHALE_EUNAVAILABLE) &&
        client_now_ms() < cr->deadline && cr->retries < CLIENT_MAX_RETRIES) {
        /* Another node leads (or none does yet): follow the hint, else try
         * the next address after a backoff. Everything pending is re-sent
         * byte for byte on the new connection: mutations keep their seq,
         * so the session table applies each at most once. */
        cr->retries++;
        cr->last_answer = status;
        const char *hint = cr->req->leader_hint;
        if (status == SHALE_ENOTLEADER && hint[0] != '\0' && strcmp(hint, c->addr) != 0) {
            int i = client_find_addr(c, hint);
            if (i >= 0) {
                client_use_addr(c, (unsigned)i);
                c->redirect = 1;
            }
        }
        char msg[SHALE_ERRMSG_LEN];
        snprintf(msg, sizeof(msg), "%s", cr->req->errmsg);
        cconn_failed(c, status, msg);
        return;
    }
    c->attempt = 0; /* a node that serves us: backoff starts over */
    if (status != SHALE_OK && status != SHALE_ECASFAILED && cr->seq != 0 && cr->sends > 1) {
        /* This attempt was refused, but an earlier one (on a lost
         * connection) may have been applied: say so. */
        size_t n = strlen(cr->req->errmsg);
        snprintf(cr->req->errmsg + n, SHALE_ERRMSG_LEN - n,
                 " (re-sent after a reconnect: an earlier attempt may have applied)");
    }
    complete(c, cr, status);
}

/* Complete cr by its deadline, saying what is known of its fate. */
static void expire(shale_client_t *c, creq_t *cr)
{
    int status = SHALE_ETIMEOUT;
    char *msg = cr->req->errmsg;
    unsigned t = cr->timeout_ms;
    if (cr->ever_sent && cr->last_answer != 0) {
        /* Answered, but only with retryable refusals: say the last one
         * rather than "no answer" (an admin request the leader keeps
         * refusing, e.g. a leadership transfer that does not complete). */
        char last[SHALE_ERRMSG_LEN];
        snprintf(last, sizeof(last), "%s", msg);
        snprintf(msg, SHALE_ERRMSG_LEN,
                 "no final answer within %u ms; last answer (of %u): %.40s: %.100s%s", t,
                 (unsigned)cr->retries, shale_strerror(cr->last_answer), last,
                 cr->seq ? " (outcome unknown: the write may have applied)" : "");
    } else if (cr->ever_sent) {
        snprintf(msg, SHALE_ERRMSG_LEN, "no answer from %s within %u ms%s", c->addr, t,
                 cr->seq ? " (outcome unknown: the write may have applied)" : "");
    } else if (c->state != CS_READY && c->last_err_code != 0) {
        status = SHALE_EIO;
        snprintf(msg, SHALE_ERRMSG_LEN, "not sent within %u ms: %.200s", t, c->last_err);
    } else {
        snprintf(msg, SHALE_ERRMSG_LEN, "not sent within %u ms (%s)", t,
                 c->state == CS_READY ? "queued behind max_inflight" : "still connecting");
    }
    complete(c, cr, status);
}

static void on_deadline(uv_timer_t *t)
{
    shale_client_t *c = t->data;
    uint64_t now = client_now_ms();
    while (!c->closing && !cq_empty(&c->pending)) {
        creq_t *cr = NULL;
        if (c->ncustom == 0) {
            cr = cq_data(c->pending.next, creq_t, all_link);
            if (cr->deadline > now)
                break;
        } else {
            /* Not in deadline order: the first expired one, looked for
             * again after each completion (its callback may submit,
             * cancel or close). */
            for (cq_t *n = c->pending.next; n != &c->pending && cr == NULL; n = n->next) {
                creq_t *x = cq_data(n, creq_t, all_link);
                if (x->deadline <= now)
                    cr = x;
            }
            if (cr == NULL)
                break;
        }
        expire(c, cr);
    }
    arm_deadline(c);
}

void shale_set_timeout(shale_client_t *c, uint32_t ms)
{
    if (c != NULL)
        c->call_timeout_ms = ms;
}

/* ---- Submit --------------------------------------------------------------*/

/* Common checks; resets the public fields of req (req->data is kept). */
static int precheck(shale_client_t *c, shale_req_t *req, shale_cb cb, shale_req_type_t type)
{
    if (req == NULL)
        return SHALE_EINVAL;
    void *data = req->data;
    memset(req, 0, sizeof(*req));
    req->data = data;
    req->type = type;
    if (c == NULL || cb == NULL) {
        snprintf(req->errmsg, SHALE_ERRMSG_LEN, "%s is NULL", c == NULL ? "client" : "callback");
        req->status = SHALE_EINVAL;
        return SHALE_EINVAL;
    }
    if (c->closing) {
        snprintf(req->errmsg, SHALE_ERRMSG_LEN, "client is closing");
        req->status = SHALE_ECLOSED;
        return SHALE_ECLOSED;
    }
    return SHALE_OK;
}

/* Pack m into a new pending request and queue it. Takes m's allocations. */
static int submit(shale_client_t *c, shale_req_t *req, shale_cb cb, codec_msg_t *m, int rv)
{
    if (rv != SHALE_OK) {
        req->status = rv;
        return rv;
    }
    uint64_t seq = 0;
    if (m->mutation) {
        seq = c->next_seq;
        uint64_t floor =
            cq_empty(&c->mutations) ? seq : cq_data(c->mutations.next, creq_t, mut_link)->seq;
        codec_set_session(m, c->client_id, seq, floor);
    }
    size_t plen = codec_payload_size(m);
    if (plen > c->lim.max_frame) {
        codec_msg_free(m);
        snprintf(req->errmsg, SHALE_ERRMSG_LEN,
                 "request of %zu bytes exceeds the frame limit of %u", plen, c->lim.max_frame);
        req->status = SHALE_ETOOLARGE;
        return SHALE_ETOOLARGE;
    }
    creq_t *cr = malloc(sizeof(*cr) + FRAME_HEADER_SIZE + plen);
    if (cr == NULL) {
        codec_msg_free(m);
        snprintf(req->errmsg, SHALE_ERRMSG_LEN, "out of memory");
        req->status = SHALE_ENOMEM;
        return SHALE_ENOMEM;
    }
    memset(cr, 0, sizeof(*cr));
    cq_init(&cr->all_link);
    cq_init(&cr->send_link);
    cq_init(&cr->mut_link);
    cr->id = c->next_id;
    cr->seq = seq;
    cr->req = req;
    cr->cb = cb;
    cr->resp_type = m->resp_type;
    cr->nkeys = m->nkeys;
    cr->refs = 1;
    cr->flen = FRAME_HEADER_SIZE + plen;
    codec_pack(m, cr->id, cr->frame);
    codec_msg_free(m);
    if (reqtable_put(&c->table, cr) != SHALE_OK) {
        free(cr);
        snprintf(req->errmsg, SHALE_ERRMSG_LEN, "out of memory");
        req->status = SHALE_ENOMEM;
        return SHALE_ENOMEM;
    }
    c->next_id++;
    if (seq != 0) {
        c->next_seq++;
        cq_push(&c->mutations, &cr->mut_link);
    }
    /* The deadline: shale_set_timeout's, else the client's option. */
    uint32_t t = c->call_timeout_ms ? c->call_timeout_ms : c->opts.timeout_ms;
    cr->timeout_ms = t;
    cr->deadline = client_now_ms() + t;
    if (t != c->opts.timeout_ms) {
        cr->custom_deadline = 1;
        c->ncustom++;
    }
    cq_push(&c->pending, &cr->all_link);
    cq_push(&c->sendq, &cr->send_link);
    req->priv_ = cr;
    if (++c->npending == 1) {
        arm_deadline(c);
        client_update_ref(c);
    } else if (cr->custom_deadline && t < c->opts.timeout_ms) {
        arm_deadline(c); /* it may be due before the one the timer waits for */
    }
    cconn_kick(c);
    return SHALE_OK;
}

int client_admin_async(shale_client_t *c, shale_req_t *req, uint16_t type, uint64_t id,
                       const char *raft_addr, const char *client_addr, int replica,
                       shale_cb cb)
{
    codec_msg_t m;
    shale_node_status_t *st = req != NULL ? req->node_status : NULL;
    int rv = precheck(c, req, cb, SHALE_REQ_ADMIN);
    if (rv != SHALE_OK)
        return rv;
    req->node_status = st;
    rv = codec_admin(&m, type, id, raft_addr, client_addr, replica, req->errmsg);
    return submit(c, req, cb, &m, rv);
}

int shale_call_async(shale_client_t *c, shale_req_t *req, uint16_t type, uint16_t resp_type,
                     const void *payload, size_t len, shale_cb cb)
{
    codec_msg_t m;
    int rv = precheck(c, req, cb, SHALE_REQ_CALL);
    if (rv != SHALE_OK)
        return rv;
    rv = codec_call(&m, type, resp_type, payload, len, req->errmsg);
    return submit(c, req, cb, &m, rv);
}

int shale_get_async(shale_client_t *c, shale_req_t *req, const void *key, size_t klen,
                    const shale_read_opts_t *ro, shale_cb cb)
{
    codec_msg_t m;
    int rv = precheck(c, req, cb, SHALE_REQ_GET);
    if (rv != SHALE_OK)
        return rv;
    rv = codec_get(&m, &c->lim, key, klen, ro, req->errmsg);
    return submit(c, req, cb, &m, rv);
}

int shale_put_async(shale_client_t *c, shale_req_t *req, const void *key, size_t klen,
                    const void *value, size_t vlen, shale_cb cb)
{
    codec_msg_t m;
    int rv = precheck(c, req, cb, SHALE_REQ_PUT);
    if (rv != SHALE_OK)
        return rv;
    rv = codec_put(&m, &c->lim, key, klen, value, vlen, 0, req->errmsg);
    return submit(c, req, cb, &m, rv);
}

int shale_put_ttl_async(shale_client_t *c, shale_req_t *req, const void *key, size_t klen,
                        const void *value, size_t vlen, uint64_t ttl_ms, shale_cb cb)
{
    codec_msg_t m;
    int rv = precheck(c, req, cb, SHALE_REQ_PUT);
    if (rv != SHALE_OK)
        return rv;
    rv = codec_put(&m, &c->lim, key, klen, value, vlen, ttl_ms, req->errmsg);
    return submit(c, req, cb, &m, rv);
}

int shale_del_async(shale_client_t *c, shale_req_t *req, const void *key, size_t klen, shale_cb cb)
{
    codec_msg_t m;
    int rv = precheck(c, req, cb, SHALE_REQ_DEL);
    if (rv != SHALE_OK)
        return rv;
    rv = codec_del(&m, &c->lim, key, klen, req->errmsg);
    return submit(c, req, cb, &m, rv);
}

int shale_compare_and_set_async(shale_client_t *c, shale_req_t *req, const shale_cas_t *op,
                                shale_cb cb)
{
    if (op == NULL) {
        int rv = precheck(c, req, cb, SHALE_REQ_CAS);
        if (rv != SHALE_OK)
            return rv;
        snprintf(req->errmsg, SHALE_ERRMSG_LEN, "compare-and-set: op is NULL");
        req->status = SHALE_EINVAL;
        return SHALE_EINVAL;
    }
    return shale_cas_async(c, req, op->key, op->klen, &op->expect, op->value, op->vlen, op->del,
                           cb);
}

int shale_cas_async(shale_client_t *c, shale_req_t *req, const void *key, size_t klen,
                    const shale_cas_expect_t *expect, const void *value, size_t vlen, int del,
                    shale_cb cb)
{
    codec_msg_t m;
    int rv = precheck(c, req, cb, SHALE_REQ_CAS);
    if (rv != SHALE_OK)
        return rv;
    rv = codec_cas(&m, &c->lim, key, klen, expect, value, vlen, del, req->errmsg);
    return submit(c, req, cb, &m, rv);
}

int shale_mget_async(shale_client_t *c, shale_req_t *req, const shale_item_t *keys, size_t n,
                     const shale_read_opts_t *ro, shale_cb cb)
{
    codec_msg_t m;
    int rv = precheck(c, req, cb, SHALE_REQ_MGET);
    if (rv != SHALE_OK)
        return rv;
    rv = codec_mget(&m, &c->lim, keys, n, ro, req->errmsg);
    return submit(c, req, cb, &m, rv);
}

int shale_mput_async(shale_client_t *c, shale_req_t *req, const shale_item_t *items, size_t n,
                     shale_cb cb)
{
    codec_msg_t m;
    int rv = precheck(c, req, cb, SHALE_REQ_MPUT);
    if (rv != SHALE_OK)
        return rv;
    rv = codec_mput(&m, &c->lim, items, n, req->errmsg);
    return submit(c, req, cb, &m, rv);
}

/* ---- Results -------------------------------------------------------------*/

void shale_value_free(shale_value_t *v)
{
    if (v == NULL)
        return;
    free(v->data);
    memset(v, 0, sizeof(*v));
}

int shale_txn_async(shale_client_t *c, shale_req_t *req, const shale_txn_t *txn, shale_cb cb)
{
    codec_msg_t m;
    int rv = precheck(c, req, cb, SHALE_REQ_TXN);
    if (rv != SHALE_OK)
        return rv;
    rv = codec_txn(&m, &c->lim, txn, req->errmsg);
    return submit(c, req, cb, &m, rv);
}

void shale_item_results_free(shale_item_result_t *results, size_t n)
{
    if (results == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(results[i].data);
        results[i].data = NULL;
        results[i].len = 0;
    }
}

void shale_req_cleanup(shale_req_t *req)
{
    if (req == NULL)
        return;
    free(req->raw);
    req->raw = NULL;
    req->raw_len = 0;
    shale_value_free(&req->value);
    shale_item_results_free(req->items, req->nitems);
    free(req->items);
    req->items = NULL;
    req->nitems = 0;
}

/* ---- Close ---------------------------------------------------------------*/

static void client_free(shale_client_t *c)
{
    /* Requests pending at close get their callbacks now, after every handle
     * is closed: never from inside shale_client_close. */
    while (!cq_empty(&c->canceled)) {
        creq_t *cr = cq_data(c->canceled.next, creq_t, all_link);
        cq_remove(&cr->all_link);
        snprintf(cr->req->errmsg, SHALE_ERRMSG_LEN, "client closed before the answer arrived");
        finish(cr, SHALE_ECANCELED);
    }
    shale_close_cb cb = c->close_cb;
    if (cb != NULL)
        cb(c);
    reqtable_free(&c->table);
    tls_ctx_free(c->tls);
    free(c->cluster_id);
    if (c->credential != NULL)
        explicit_bzero(c->credential, c->credential_len);
    free(c->credential);
    free(c->who.prefix);
    free(c);
}

void client_handle_closed(shale_client_t *c)
{
    if (--c->nhandles == 0 && c->closing)
        client_free(c);
}

void shale_client_close(shale_client_t *c, shale_close_cb cb)
{
    if (c == NULL || c->closing)
        return;
    c->closing = 1;
    c->close_cb = cb;
    client_watches_closing(c);
    while (!cq_empty(&c->pending)) {
        creq_t *cr = cq_data(c->pending.next, creq_t, all_link);
        detach(c, cr);
        cq_push(&c->canceled, &cr->all_link);
    }
    cconn_shutdown(c);
    uv_timer_stop(&c->deadline_timer);
    uv_prepare_stop(&c->flush_prep);
    uv_close((uv_handle_t *)&c->deadline_timer, on_handle_close);
    uv_close((uv_handle_t *)&c->conn_timer, on_handle_close);
    uv_timer_stop(&c->stall_timer);
    uv_close((uv_handle_t *)&c->stall_timer, on_handle_close);
    uv_close((uv_handle_t *)&c->flush_prep, on_handle_close);
}
