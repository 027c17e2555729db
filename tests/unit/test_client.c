/* libshale without a real server: options, argument checks, the request
 * table and answer decoding, and the client's handling of the real protocol
 * against small scripted peers (threads in this file speaking the real frame
 * codec): refused and silent servers, garbage, HELLO refused for another
 * cluster, out-of-order pipelined answers, the max_inflight window,
 * reconnect with the same session seq, late answers after a timeout, an
 * answer over max_frame, and close with requests pending.
 *
 * End-to-end behaviour against shaled lives in the integration tests. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errors_wire.h"
#include "internal.h"
#include "shale.h"

/* ---- Scripted peers ------------------------------------------------------*/

#define MAXREC 128

typedef struct fake fake_t;
typedef void (*script_fn)(fake_t *f);

struct fake {
    int lfd;
    int port;
    char addr[32];
    pthread_t th;
    script_fn script;
    int failed;
    char why[256];
    /* What the peer saw, for the test to check after fake_join. */
    int n;
    uint64_t ids[MAXREC], seqs[MAXREC], floors[MAXREC], cids[MAXREC];
    int max_unanswered;
    int nconns;
};

#define FAIL(f, ...)                                                                               \
    do {                                                                                           \
        if (!(f)->failed) {                                                                        \
            (f)->failed = 1;                                                                       \
            snprintf((f)->why, sizeof((f)->why), __VA_ARGS__);                                     \
        }                                                                                          \
    } while (0)

static void fake_listen(fake_t *f)
{
    memset(f, 0, sizeof(*f));
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(f->lfd, 0);
    int one = 1;
    setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(f->lfd, 16), 0);
    socklen_t sl = sizeof(sa);
    ck_assert_int_eq(getsockname(f->lfd, (struct sockaddr *)&sa, &sl), 0);
    f->port = ntohs(sa.sin_port);
    snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%d", f->port);
}

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    f->script(f);
    return NULL;
}

static void fake_start(fake_t *f, script_fn script)
{
    fake_listen(f);
    f->script = script;
    ck_assert_int_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_join(fake_t *f)
{
    pthread_join(f->th, NULL);
    close(f->lfd);
    if (f->failed)
        ck_abort_msg("scripted peer: %s", f->why);
}

static int wait_fd(int fd, short ev, int ms)
{
    struct pollfd p = {.fd = fd, .events = ev};
    return poll(&p, 1, ms) == 1;
}

static int fake_accept(fake_t *f)
{
    if (!wait_fd(f->lfd, POLLIN, 5000)) {
        FAIL(f, "no connection within 5 s");
        return -1;
    }
    f->nconns++;
    return accept(f->lfd, NULL, NULL);
}

static int read_full(int fd, void *p, size_t n, int ms)
{
    size_t have = 0;
    while (have < n) {
        if (!wait_fd(fd, POLLIN, ms))
            return -1;
        ssize_t r = read(fd, (char *)p + have, n - have);
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
    return 0;
}

/* One frame; payload malloc'd (caller frees). -1 on EOF/timeout/bad. */
static int recv_frame(int fd, frame_hdr_t *h, uint8_t **payload, int ms)
{
    uint8_t hb[FRAME_HEADER_SIZE];
    *payload = NULL;
    if (read_full(fd, hb, sizeof(hb), ms) != 0 || frame_hdr_parse(hb, FRAME_DEFAULT_MAX, h) != 0)
        return -1;
    *payload = malloc(h->len + 1);
    if (h->len > 0 && read_full(fd, *payload, h->len, ms) != 0) {
        free(*payload);
        *payload = NULL;
        return -1;
    }
    return 0;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w <= 0)
            return;
        b += w;
        n -= (size_t)w;
    }
}

static void send_msg(int fd, uint16_t type, uint64_t id, const ProtobufCMessage *m)
{
    size_t len;
    uint8_t *fr = wire_pack(type, id, m, UINT32_MAX, &len);
    send_all(fd, fr, len);
    free(fr);
}

/* Read HELLO and accept it. Returns 0 or -1. */
static int serve_hello(fake_t *f, int fd)
{
    frame_hdr_t h;
    uint8_t *p;
    if (recv_frame(fd, &h, &p, 5000) != 0) {
        FAIL(f, "no HELLO");
        return -1;
    }
    Shale__Hello *hello = (Shale__Hello *)wire_unpack(h.type, p, h.len);
    free(p);
    if (h.type != SHALE_MSG_HELLO || hello == NULL ||
        hello->protocol_version != SHALE_PROTOCOL_VERSION ||
        hello->peer_kind != SHALE__PEER_KIND__PEER_CLIENT) {
        FAIL(f, "first frame is not a client HELLO (type %u)", h.type);
        if (hello)
            protobuf_c_message_free_unpacked(&hello->base, NULL);
        return -1;
    }
    protobuf_c_message_free_unpacked(&hello->base, NULL);
    Shale__HelloReply r = SHALE__HELLO_REPLY__INIT;
    r.protocol_version = SHALE_PROTOCOL_VERSION;
    r.cluster_id = "test";
    send_msg(fd, SHALE_MSG_HELLO_REPLY, h.id, &r.base);
    return 0;
}

/* Read one PUT and record its id and session. */
static int recv_put(fake_t *f, int fd, int ms)
{
    frame_hdr_t h;
    uint8_t *p;
    if (recv_frame(fd, &h, &p, ms) != 0)
        return -1;
    Shale__PutRequest *put = (Shale__PutRequest *)wire_unpack(h.type, p, h.len);
    free(p);
    if (h.type != SHALE_MSG_PUT_REQ || put == NULL || put->session == NULL) {
        FAIL(f, "expected a PUT with a session, got type %u", h.type);
        if (put)
            protobuf_c_message_free_unpacked(&put->base, NULL);
        return -1;
    }
    if (f->n < MAXREC) {
        f->ids[f->n] = h.id;
        f->seqs[f->n] = put->session->seq;
        f->floors[f->n] = put->session->has_ack_floor ? put->session->ack_floor : 0;
        f->cids[f->n] = put->session->client_id;
        f->n++;
    }
    protobuf_c_message_free_unpacked(&put->base, NULL);
    return 0;
}

static void answer_put(int fd, uint64_t id, uint64_t version, int dup)
{
    Shale__PutResponse r = SHALE__PUT_RESPONSE__INIT;
    r.version = version;
    r.has_duplicate = dup;
    r.duplicate = dup;
    send_msg(fd, SHALE_MSG_PUT_RESP, id, &r.base);
}

/* Read until the client closes (or 5 s). */
static void drain(int fd)
{
    char b[4096];
    while (wait_fd(fd, POLLIN, 5000) && read(fd, b, sizeof(b)) > 0) {
    }
    close(fd);
}

/* ---- Async helpers -------------------------------------------------------*/

typedef struct result {
    int called;
    int status;
    uint64_t version;
    int duplicate;
    char errmsg[SHALE_ERRMSG_LEN];
    uint64_t at_ms;
} result_t;

typedef struct slot {
    shale_req_t req;
    result_t res;
    shale_client_t *close_client; /* close this client from the callback */
} slot_t;

static int closed_cbs;

static void on_closed(shale_client_t *c)
{
    (void)c;
    closed_cbs++;
}

static void record_cb(shale_req_t *req, int status)
{
    slot_t *s = req->data;
    ck_assert_int_eq(s->res.called, 0);
    ck_assert_int_eq(status, req->status);
    s->res.called = 1;
    s->res.status = status;
    s->res.version = req->version;
    s->res.duplicate = req->duplicate;
    s->res.at_ms = client_now_ms();
    snprintf(s->res.errmsg, sizeof(s->res.errmsg), "%s", req->errmsg);
    shale_req_cleanup(req);
    if (s->close_client != NULL)
        shale_client_close(s->close_client, on_closed);
}

static shale_client_t *open_client(uv_loop_t *loop, const char *addr, uint32_t timeout_ms,
                                   uint32_t connect_ms)
{
    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = timeout_ms;
    o.connect_timeout_ms = connect_ms;
    shale_client_t *c = NULL;
    ck_assert_int_eq(uv_loop_init(loop), 0);
    ck_assert_int_eq(shale_client_open(loop, addr, &o, &c), SHALE_OK);
    return c;
}

/* Close the client, finish the loop, and prove no handle was left open. */
static void close_client(uv_loop_t *loop, shale_client_t *c)
{
    int before = closed_cbs;
    if (c != NULL)
        shale_client_close(c, on_closed);
    uv_run(loop, UV_RUN_DEFAULT);
    if (c != NULL)
        ck_assert_int_eq(closed_cbs, before + 1);
    ck_assert_int_eq(uv_loop_close(loop), 0);
}

static void put_async(shale_client_t *c, slot_t *s, const char *key)
{
    s->req.data = s;
    ck_assert_int_eq(shale_put_async(c, &s->req, key, strlen(key), "v", 1, record_cb), SHALE_OK);
}

/* A port with nothing listening. */
static int closed_port(void)
{
    fake_t f;
    fake_listen(&f);
    close(f.lfd);
    return f.port;
}

/* ---- Options, errors, argument checks ------------------------------------*/

START_TEST(test_options_defaults)
{
    shale_options_t o;
    memset(&o, 0xab, sizeof(o));
    shale_options_init(&o);
    ck_assert_ptr_null(o.cluster_id);
    ck_assert_uint_eq(o.timeout_ms, 5000);
    ck_assert_uint_eq(o.connect_timeout_ms, 2000);
    ck_assert_uint_eq(o.max_frame, 8u * 1024 * 1024);
    ck_assert_uint_eq(o.client_id, 0);
    ck_assert_uint_eq(o.max_inflight, 1024);
    ck_assert_uint_eq(o.stall_ms, 2000);

    /* client_id 0 draws a random non-zero id; a given one is kept. */
    uv_loop_t loop;
    shale_client_t *c = open_client(&loop, "127.0.0.1:1", 100, 100);
    ck_assert_uint_ne(shale_client_id(c), 0);
    shale_client_t *c2 = NULL;
    o.client_id = 42;
    ck_assert_int_eq(shale_client_open(&loop, "localhost:7001", &o, &c2), SHALE_OK);
    ck_assert_uint_eq(shale_client_id(c2), 42);
    shale_client_close(c2, NULL);
    close_client(&loop, c);
}
END_TEST

START_TEST(test_strerror_covers_codes)
{
    static const int codes[] = {
        SHALE_OK,           SHALE_ENOTLEADER, SHALE_EWRONGGROUP, SHALE_ETIMEOUT,
        SHALE_EUNAVAILABLE, SHALE_ETOOLARGE,  SHALE_EINVAL,      SHALE_ESTALE,
        SHALE_ECASFAILED,   SHALE_ENOTFOUND,  SHALE_EPROTO,      SHALE_ECLUSTER,
        SHALE_ESESSION,     SHALE_ESTORAGE,   SHALE_EOVERLOAD,   SHALE_ESLOTMOVING,
        SHALE_EAUTH,        SHALE_EPERM,      SHALE_ENOMEM,      SHALE_EIO,
        SHALE_ECLOSED,      SHALE_ECANCELED,  SHALE_ECORRUPT,    SHALE_ECROSSSLOT,
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *s = shale_strerror(codes[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_str_ne(s, "unknown error");
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(s, shale_strerror(codes[j]));
    }
    ck_assert_str_eq(shale_strerror(-9999), "unknown error");
    ck_assert_str_eq(shale_strerror(12345), "unknown error");
    /* Wire codes round-trip; local codes have no wire form. */
    ck_assert_int_eq(shale_error_to_wire(SHALE_ECLUSTER), 11);
    ck_assert_int_eq(shale_error_to_wire(SHALE_EIO), 0);
}
END_TEST

START_TEST(test_bad_addresses)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    static const char *bad[] = {
        "",         "localhost", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:12x",
        "::1:7001", "[::1]",     "[::1]7001",  ":7001"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        shale_client_t *c = (shale_client_t *)&loop; /* must be reset */
        ck_assert_int_eq(shale_client_open(&loop, bad[i], NULL, &c), SHALE_EINVAL);
        ck_assert_ptr_null(c);
    }
    shale_client_t *c = NULL;
    ck_assert_int_eq(shale_client_open(&loop, NULL, NULL, &c), SHALE_EINVAL);
    ck_assert_int_eq(shale_client_open(NULL, "127.0.0.1:1", NULL, &c), SHALE_EINVAL);
    ck_assert_int_eq(shale_client_open(&loop, "[::1]:7001", NULL, &c), SHALE_OK);
    shale_client_close(c, NULL);
    char err[SHALE_ERRMSG_LEN];
    ck_assert_int_eq(shale_connect("nope", NULL, &c, err), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "bad address"));
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

static void never_cb(shale_req_t *req, int status)
{
    (void)req;
    (void)status;
    ck_abort_msg("callback of a rejected request ran");
}

START_TEST(test_argument_checks_need_no_network)
{
    /* A listener that is never accepted from: any connection attempt would
     * show up in its accept queue. */
    fake_t f;
    fake_listen(&f);
    uv_loop_t loop;
    shale_client_t *c = open_client(&loop, f.addr, 1000, 1000);
    shale_req_t req;
    char key[4097], *big = calloc(1, 9u << 20);
    memset(key, 'k', sizeof(key));
    ck_assert_ptr_nonnull(big);

    ck_assert_int_eq(shale_get_async(c, &req, "", 0, NULL, never_cb), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(req.errmsg, "empty key"));
    ck_assert_int_eq(req.status, SHALE_EINVAL);
    ck_assert_int_eq(shale_get_async(c, &req, NULL, 3, NULL, never_cb), SHALE_EINVAL);
    ck_assert_int_eq(shale_get_async(c, &req, key, 4097, NULL, never_cb), SHALE_ETOOLARGE);
    ck_assert_ptr_nonnull(strstr(req.errmsg, "4097"));
    ck_assert_int_eq(shale_get_async(c, &req, "k", 1, NULL, NULL), SHALE_EINVAL);
    ck_assert_int_eq(shale_get_async(NULL, &req, "k", 1, NULL, never_cb), SHALE_EINVAL);
    shale_read_opts_t ro = {.consistency = (shale_consistency_t)7};
    ck_assert_int_eq(shale_get_async(c, &req, "k", 1, &ro, never_cb), SHALE_EINVAL);

    ck_assert_int_eq(shale_put_async(c, &req, "", 0, "v", 1, never_cb), SHALE_EINVAL);
    ck_assert_int_eq(shale_put_async(c, &req, key, 4097, "v", 1, never_cb), SHALE_ETOOLARGE);
    ck_assert_int_eq(shale_put_async(c, &req, "k", 1, big, (1u << 20) + 1, never_cb),
                     SHALE_ETOOLARGE);
    ck_assert_int_eq(shale_put_async(c, &req, "k", 1, NULL, 5, never_cb), SHALE_EINVAL);
    ck_assert_int_eq(shale_del_async(c, &req, "", 0, never_cb), SHALE_EINVAL);
    ck_assert_int_eq(shale_del_async(c, &req, key, 5000, never_cb), SHALE_ETOOLARGE);

    shale_cas_expect_t ex = {.kind = SHALE_CAS_ABSENT};
    ck_assert_int_eq(shale_cas_async(c, &req, "k", 1, NULL, "v", 1, 0, never_cb), SHALE_EINVAL);
    ck_assert_int_eq(shale_cas_async(c, &req, "k", 1, &ex, "v", 1, 1, never_cb), SHALE_EINVAL);
    ck_assert_int_eq(shale_cas_async(c, &req, "", 0, &ex, "v", 1, 0, never_cb), SHALE_EINVAL);
    ck_assert_int_eq(shale_cas_async(c, &req, "k", 1, &ex, big, (1u << 20) + 1, 0, never_cb),
                     SHALE_ETOOLARGE);
    ex.kind = (shale_cas_kind_t)9;
    ck_assert_int_eq(shale_cas_async(c, &req, "k", 1, &ex, "v", 1, 0, never_cb), SHALE_EINVAL);
    ex.kind = SHALE_CAS_VALUE;
    ex.value = big;
    ex.len = (1u << 20) + 1;
    ck_assert_int_eq(shale_cas_async(c, &req, "k", 1, &ex, "v", 1, 0, never_cb), SHALE_ETOOLARGE);

    shale_item_t items[9];
    for (int i = 0; i < 9; i++) {
        items[i].key = "k";
        items[i].klen = 1;
        items[i].value = big;
        items[i].vlen = 1u << 20;
    }
    ck_assert_int_eq(shale_mget_async(c, &req, items, 0, NULL, never_cb), SHALE_EINVAL);
    items[3].klen = 0;
    ck_assert_int_eq(shale_mget_async(c, &req, items, 9, NULL, never_cb), SHALE_EINVAL);
    ck_assert_int_eq(shale_mput_async(c, &req, items, 9, never_cb), SHALE_EINVAL);
    items[3].klen = 1;
    /* Every item fits, the frame (9 MiB) does not. */
    ck_assert_int_eq(shale_mput_async(c, &req, items, 9, never_cb), SHALE_ETOOLARGE);
    ck_assert_ptr_nonnull(strstr(req.errmsg, "frame"));
    items[2].vlen = (1u << 20) + 1;
    ck_assert_int_eq(shale_mput_async(c, &req, items, 3, never_cb), SHALE_ETOOLARGE);
    ck_assert_int_eq(shale_mput_async(c, &req, NULL, 3, never_cb), SHALE_EINVAL);

    /* The sync API refuses an async client. */
    ck_assert_int_eq(shale_put(c, "k", 1, "v", 1, NULL), SHALE_EINVAL);

    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(wait_fd(f.lfd, POLLIN, 50), 0); /* nobody connected */
    close_client(&loop, c);
    close(f.lfd);
    free(big);
}
END_TEST

START_TEST(test_reqtable)
{
    enum { N = 5000 };
    reqtable_t t;
    creq_t *crs = calloc(N, sizeof(*crs));
    reqtable_init(&t);
    for (int i = 0; i < N; i++) {
        crs[i].id = (uint64_t)i * 7 + 1;
        ck_assert_int_eq(reqtable_put(&t, &crs[i]), SHALE_OK);
    }
    ck_assert_uint_eq(t.n, N);
    /* Delete every third, in a scrambled order, and check all lookups. */
    for (int k = 0; k < N; k++) {
        int i = (int)(((uint64_t)k * 2654435761u) % N);
        if (i % 3 == 0)
            ck_assert_ptr_eq(reqtable_del(&t, crs[i].id), &crs[i]);
    }
    for (int i = 0; i < N; i++) {
        creq_t *got = reqtable_get(&t, crs[i].id);
        if (i % 3 == 0)
            ck_assert_ptr_null(got);
        else
            ck_assert_ptr_eq(got, &crs[i]);
    }
    ck_assert_ptr_null(reqtable_get(&t, 2));
    ck_assert_ptr_null(reqtable_del(&t, 2));
    reqtable_free(&t);
    free(crs);
}
END_TEST

START_TEST(test_decode_answers)
{
    shale_req_t req;
    size_t len;
    uint8_t *fr;

    /* CAS_FAILED carries the current state. */
    Shale__Error e = SHALE__ERROR__INIT;
    e.code = SHALE__ERROR_CODE__CAS_FAILED;
    e.message = "no match";
    e.has_current_exists = 1;
    e.current_exists = 1;
    e.has_current_version = 1;
    e.current_version = 77;
    e.has_current_value = 1;
    e.current_value.data = (uint8_t *)"cur";
    e.current_value.len = 3;
    fr = wire_pack(SHALE_MSG_ERROR, 1, &e.base, UINT32_MAX, &len);
    memset(&req, 0, sizeof(req));
    ck_assert_int_eq(codec_decode(&req, SHALE_MSG_CAS_RESP, 1, SHALE_MSG_ERROR,
                                  fr + FRAME_HEADER_SIZE, len - FRAME_HEADER_SIZE),
                     SHALE_ECASFAILED);
    ck_assert_int_eq(req.value.found, 1);
    ck_assert_uint_eq(req.value.version, 77);
    ck_assert_uint_eq(req.value.len, 3);
    ck_assert_int_eq(memcmp(req.value.data, "cur", 3), 0);
    ck_assert_str_eq(req.errmsg, "no match");
    shale_req_cleanup(&req);
    free(fr);

    /* NOT_LEADER: the hint is passed on. */
    Shale__Error nl = SHALE__ERROR__INIT;
    nl.code = SHALE__ERROR_CODE__NOT_LEADER;
    nl.leader_hint = "10.0.0.2:7001";
    fr = wire_pack(SHALE_MSG_ERROR, 1, &nl.base, UINT32_MAX, &len);
    memset(&req, 0, sizeof(req));
    ck_assert_int_eq(codec_decode(&req, SHALE_MSG_GET_RESP, 1, SHALE_MSG_ERROR,
                                  fr + FRAME_HEADER_SIZE, len - FRAME_HEADER_SIZE),
                     SHALE_ENOTLEADER);
    ck_assert_str_eq(req.leader_hint, "10.0.0.2:7001");
    ck_assert_str_eq(req.errmsg, shale_strerror(SHALE_ENOTLEADER));
    free(fr);

    /* MGET: per-key values and errors, in request order. */
    Shale__KeyValue kv[3] = {SHALE__KEY_VALUE__INIT, SHALE__KEY_VALUE__INIT,
                             SHALE__KEY_VALUE__INIT};
    Shale__KeyValue *kvp[3] = {&kv[0], &kv[1], &kv[2]};
    Shale__Error ke = SHALE__ERROR__INIT;
    ke.code = SHALE__ERROR_CODE__WRONG_GROUP;
    kv[0].has_found = 1;
    kv[0].found = 1;
    kv[0].has_value = 1;
    kv[0].value.data = (uint8_t *)"one";
    kv[0].value.len = 3;
    kv[0].has_version = 1;
    kv[0].version = 5;
    kv[1].has_found = 1;
    kv[1].found = 0;
    kv[2].error = &ke;
    Shale__MGetResponse mg = SHALE__MGET_RESPONSE__INIT;
    mg.n_items = 3;
    mg.items = kvp;
    fr = wire_pack(SHALE_MSG_MGET_RESP, 1, &mg.base, UINT32_MAX, &len);
    memset(&req, 0, sizeof(req));
    ck_assert_int_eq(codec_decode(&req, SHALE_MSG_MGET_RESP, 3, SHALE_MSG_MGET_RESP,
                                  fr + FRAME_HEADER_SIZE, len - FRAME_HEADER_SIZE),
                     SHALE_OK);
    ck_assert_uint_eq(req.nitems, 3);
    ck_assert_int_eq(req.items[0].status, SHALE_OK);
    ck_assert_int_eq(req.items[0].found, 1);
    ck_assert_uint_eq(req.items[0].version, 5);
    ck_assert_int_eq(memcmp(req.items[0].data, "one", 3), 0);
    ck_assert_int_eq(req.items[1].found, 0);
    ck_assert_ptr_null(req.items[1].data);
    ck_assert_int_eq(req.items[2].status, SHALE_EWRONGGROUP);
    shale_req_cleanup(&req);
    ck_assert_ptr_null(req.items);
    /* The same answer to a 2-key request does not fit it. */
    memset(&req, 0, sizeof(req));
    ck_assert_int_eq(codec_decode(&req, SHALE_MSG_MGET_RESP, 2, SHALE_MSG_MGET_RESP,
                                  fr + FRAME_HEADER_SIZE, len - FRAME_HEADER_SIZE),
                     SHALE_EPROTO);
    shale_req_cleanup(&req);
    /* Nor is it an answer to a PUT. */
    memset(&req, 0, sizeof(req));
    ck_assert_int_eq(codec_decode(&req, SHALE_MSG_PUT_RESP, 1, SHALE_MSG_MGET_RESP,
                                  fr + FRAME_HEADER_SIZE, len - FRAME_HEADER_SIZE),
                     SHALE_EPROTO);
    free(fr);

    /* Garbage payloads. */
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
    memset(&req, 0, sizeof(req));
    ck_assert_int_eq(
        codec_decode(&req, SHALE_MSG_GET_RESP, 1, SHALE_MSG_GET_RESP, junk, sizeof(junk)),
        SHALE_EPROTO);
    ck_assert_int_eq(codec_decode(&req, SHALE_MSG_GET_RESP, 1, SHALE_MSG_ERROR, junk, sizeof(junk)),
                     SHALE_EPROTO);
    /* An ERROR with code OK is not a valid error. */
    Shale__Error ok = SHALE__ERROR__INIT;
    ck_assert_int_eq(codec_error_code(&ok), SHALE_EPROTO);
}
END_TEST

/* ---- Connection failures -------------------------------------------------*/

START_TEST(test_connect_refused)
{
    char addr[32], err[SHALE_ERRMSG_LEN];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", closed_port());
    shale_options_t o;
    shale_options_init(&o);
    o.connect_timeout_ms = 500;
    shale_client_t *c = (shale_client_t *)addr;
    uint64_t t0 = client_now_ms();
    int rv = shale_connect(addr, &o, &c, err);
    ck_assert_msg(rv == SHALE_EIO || rv == SHALE_ETIMEOUT, "rv %d", rv);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "refused") != NULL, "err: %s", err);
    ck_assert_uint_lt(client_now_ms() - t0, 1500);

    /* Async: retried with backoff until the deadline, then a clear error. */
    uv_loop_t loop;
    c = open_client(&loop, addr, 300, 200);
    slot_t s;
    memset(&s, 0, sizeof(s));
    t0 = client_now_ms();
    put_async(c, &s, "k");
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(s.res.called, 1);
    ck_assert_msg(s.res.status == SHALE_EIO, "status %d: %s", s.res.status, s.res.errmsg);
    ck_assert_msg(strstr(s.res.errmsg, "refused") != NULL, "%s", s.res.errmsg);
    ck_assert_uint_ge(s.res.at_ms - t0, 290);
    ck_assert_uint_lt(s.res.at_ms - t0, 1500);
    close_client(&loop, c);
}
END_TEST

START_TEST(test_silent_server_times_out)
{
    /* Listens, never accepts: TCP connects, HELLO is never answered. */
    fake_t f;
    fake_listen(&f);
    char err[SHALE_ERRMSG_LEN];
    shale_options_t o;
    shale_options_init(&o);
    o.connect_timeout_ms = 200;
    shale_client_t *c = NULL;
    uint64_t t0 = client_now_ms();
    ck_assert_int_eq(shale_connect(f.addr, &o, &c, err), SHALE_ETIMEOUT);
    ck_assert_uint_lt(client_now_ms() - t0, 1500);
    ck_assert_msg(strstr(err, "HELLO_REPLY") != NULL, "%s", err);

    uv_loop_t loop;
    c = open_client(&loop, f.addr, 400, 150);
    slot_t s[2];
    memset(s, 0, sizeof(s));
    t0 = client_now_ms();
    put_async(c, &s[0], "k1");
    s[1].req.data = &s[1];
    ck_assert_int_eq(shale_get_async(c, &s[1].req, "k2", 2, NULL, record_cb), SHALE_OK);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(s[i].res.called, 1);
        ck_assert_msg(s[i].res.status == SHALE_ETIMEOUT, "%d: %s", s[i].res.status,
                      s[i].res.errmsg);
        ck_assert_uint_ge(s[i].res.at_ms - t0, 390);
        ck_assert_uint_lt(s[i].res.at_ms - t0, 1800);
    }
    /* The put was written: its outcome is unknown and the message says so. */
    ck_assert_ptr_nonnull(strstr(s[0].res.errmsg, "outcome unknown"));
    close_client(&loop, c);
    close(f.lfd);
}
END_TEST

/* Per-call deadlines (shale_set_timeout): a request submitted with a
 * shorter deadline completes by it, before one submitted earlier with the
 * client's; the setting applies from submission on and 0 restores the
 * default. The new names shale_connect_async / shale_close_async. */
START_TEST(test_per_call_deadline)
{
    fake_t f;
    fake_listen(&f); /* never accepts: nothing is ever answered */
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = 2000;
    o.connect_timeout_ms = 150;
    shale_client_t *c = NULL;
    ck_assert_int_eq(shale_connect_async(&loop, f.addr, &o, &c), SHALE_OK);
    slot_t s[3];
    memset(s, 0, sizeof(s));
    put_async(c, &s[0], "default-before");
    shale_set_timeout(c, 300);
    put_async(c, &s[1], "short");
    shale_set_timeout(c, 0);
    put_async(c, &s[2], "default-after");
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(s[i].res.called == 1 && s[i].res.status != SHALE_OK, "%d: %d %s", i,
                      s[i].res.status, s[i].res.errmsg);
    ck_assert_msg(strstr(s[1].res.errmsg, "within 300 ms") != NULL, "%s", s[1].res.errmsg);
    ck_assert_msg(strstr(s[0].res.errmsg, "within 2000 ms") != NULL, "%s", s[0].res.errmsg);
    ck_assert_msg(strstr(s[2].res.errmsg, "within 2000 ms") != NULL, "%s", s[2].res.errmsg);
    /* The short one did not wait behind the earlier, longer one. */
    ck_assert_uint_lt(s[1].res.at_ms, s[0].res.at_ms);
    int before = closed_cbs;
    shale_close_async(c, on_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(closed_cbs, before + 1);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    close(f.lfd);
}
END_TEST

static void script_garbage(fake_t *f)
{
    for (int i = 0; i < 2; i++) {
        int fd = fake_accept(f);
        if (fd < 0)
            return;
        static const char junk[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                                   "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09";
        send_all(fd, junk, sizeof(junk));
        drain(fd);
    }
}

START_TEST(test_garbage_peer)
{
    fake_t f;
    fake_start(&f, script_garbage);
    char err[SHALE_ERRMSG_LEN];
    shale_client_t *c = NULL;
    ck_assert_int_eq(shale_connect(f.addr, NULL, &c, err), SHALE_EPROTO);
    ck_assert_msg(strstr(err, "not a Shale server") != NULL, "%s", err);

    uv_loop_t loop;
    c = open_client(&loop, f.addr, 5000, 1000);
    slot_t s[3];
    memset(s, 0, sizeof(s));
    for (int i = 0; i < 3; i++)
        put_async(c, &s[i], "k");
    uint64_t t0 = client_now_ms();
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(s[i].res.called, 1);
        ck_assert_int_eq(s[i].res.status, SHALE_EPROTO);
    }
    ck_assert_uint_lt(client_now_ms() - t0, 2500); /* failed fast, no retry loop */
    close_client(&loop, c);
    fake_join(&f);
}
END_TEST

static void script_cluster_mismatch(fake_t *f)
{
    for (int i = 0; i < 2; i++) {
        int fd = fake_accept(f);
        if (fd < 0)
            return;
        frame_hdr_t h;
        uint8_t *p;
        if (recv_frame(fd, &h, &p, 5000) != 0 || h.type != SHALE_MSG_HELLO) {
            FAIL(f, "no HELLO");
            free(p);
            close(fd);
            return;
        }
        free(p);
        size_t len;
        uint8_t *fr = wire_error_frame(h.id, SHALE_ECLUSTER, "this node belongs to cluster 'blue'",
                                       NULL, &len);
        send_all(fd, fr, len);
        free(fr);
        close(fd);
    }
}

START_TEST(test_cluster_mismatch)
{
    fake_t f;
    fake_start(&f, script_cluster_mismatch);
    char err[SHALE_ERRMSG_LEN];
    shale_options_t o;
    shale_options_init(&o);
    o.cluster_id = "green";
    shale_client_t *c = NULL;
    ck_assert_int_eq(shale_connect(f.addr, &o, &c, err), SHALE_ECLUSTER);
    ck_assert_msg(strstr(err, "blue") != NULL, "%s", err);

    uv_loop_t loop;
    c = open_client(&loop, f.addr, 5000, 1000);
    slot_t s[4];
    memset(s, 0, sizeof(s));
    for (int i = 0; i < 4; i++)
        put_async(c, &s[i], "k");
    uint64_t t0 = client_now_ms();
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(s[i].res.called, 1);
        ck_assert_int_eq(s[i].res.status, SHALE_ECLUSTER);
        ck_assert_ptr_nonnull(strstr(s[i].res.errmsg, "blue"));
    }
    ck_assert_uint_lt(client_now_ms() - t0, 2500);
    close_client(&loop, c);
    fake_join(&f);
}
END_TEST

/* ---- Pipelining and sessions ---------------------------------------------*/

#define NPIPE 32

static void script_out_of_order(fake_t *f)
{
    int fd = fake_accept(f);
    if (fd < 0 || serve_hello(f, fd) != 0)
        goto out;
    for (int i = 0; i < NPIPE; i++)
        if (recv_put(f, fd, 5000) != 0) {
            FAIL(f, "only %d of %d pipelined PUTs arrived", i, NPIPE);
            goto out;
        }
    /* Answer in reverse, the version derived from the request id. */
    for (int i = NPIPE - 1; i >= 0; i--)
        answer_put(fd, f->ids[i], 1000 + f->ids[i], i % 2);
    /* One more: all answered, so its ack_floor is its own seq. */
    if (recv_put(f, fd, 5000) != 0) {
        FAIL(f, "no PUT after the answers");
        goto out;
    }
    answer_put(fd, f->ids[NPIPE], 1, 0);
out:
    if (fd >= 0)
        drain(fd);
}

static shale_client_t *ooo_client;
static slot_t ooo_slots[NPIPE + 1];
static int ooo_done;

static void ooo_cb(shale_req_t *req, int status)
{
    record_cb(req, status);
    if (++ooo_done == NPIPE)
        put_async(ooo_client, &ooo_slots[NPIPE], "last");
}

START_TEST(test_pipelined_answers_out_of_order)
{
    fake_t f;
    fake_start(&f, script_out_of_order);
    uv_loop_t loop;
    shale_client_t *c = open_client(&loop, f.addr, 5000, 2000);
    uint64_t cid = shale_client_id(c);
    ooo_client = c;
    ooo_done = 0;
    memset(ooo_slots, 0, sizeof(ooo_slots));
    uint64_t ids[NPIPE];
    for (int i = 0; i < NPIPE; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        ooo_slots[i].req.data = &ooo_slots[i];
        ck_assert_int_eq(shale_put_async(c, &ooo_slots[i].req, k, strlen(k), "v", 1, ooo_cb),
                         SHALE_OK);
        ids[i] = ((creq_t *)ooo_slots[i].req.priv_)->id;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    close_client(&loop, c); /* the peer reads until EOF */
    fake_join(&f);
    for (int i = 0; i <= NPIPE; i++) {
        ck_assert_int_eq(ooo_slots[i].res.called, 1);
        ck_assert_msg(ooo_slots[i].res.status == SHALE_OK, "%d: %s", i, ooo_slots[i].res.errmsg);
    }
    /* Every answer reached the request with its id. */
    for (int i = 0; i < NPIPE; i++)
        ck_assert_uint_eq(ooo_slots[i].res.version, 1000 + ids[i]);
    /* Sessions: one client id, seqs 1..N in submit order, nothing answered
     * yet so every ack_floor is 1; after all answers the floor moves up. */
    ck_assert_int_eq(f.n, NPIPE + 1);
    for (int i = 0; i < NPIPE; i++) {
        ck_assert_uint_eq(f.cids[i], cid);
        ck_assert_uint_eq(f.seqs[i], (uint64_t)i + 1);
        ck_assert_uint_eq(f.floors[i], 1);
        ck_assert_uint_eq(f.ids[i], ids[i]);
    }
    for (int i = 0; i < NPIPE; i++)
        ck_assert_int_eq(ooo_slots[i].res.duplicate, i % 2);
    ck_assert_uint_eq(f.seqs[NPIPE], NPIPE + 1);
    ck_assert_uint_eq(f.floors[NPIPE], NPIPE + 1);
}
END_TEST

#define WINDOW 4
#define NWIN 24

static void script_window(fake_t *f)
{
    int fd = fake_accept(f);
    int answered = 0;
    if (fd < 0 || serve_hello(f, fd) != 0)
        goto out;
    while (answered < NWIN) {
        int got = 0;
        /* Read what the client sends until it stops (50 ms of quiet). */
        while (recv_put(f, fd, got == 0 ? 5000 : 50) == 0)
            got++;
        if (f->failed)
            goto out;
        if (got == 0) {
            FAIL(f, "client stopped sending after %d answers", answered);
            goto out;
        }
        if (got > f->max_unanswered)
            f->max_unanswered = got;
        for (int i = f->n - 1; i >= f->n - got; i--)
            answer_put(fd, f->ids[i], f->seqs[i], 0);
        answered += got;
    }
out:
    if (fd >= 0)
        drain(fd);
}

START_TEST(test_max_inflight_window)
{
    fake_t f;
    fake_start(&f, script_window);
    shale_options_t o;
    shale_options_init(&o);
    o.max_inflight = WINDOW;
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    shale_client_t *c = NULL;
    ck_assert_int_eq(shale_client_open(&loop, f.addr, &o, &c), SHALE_OK);
    slot_t *s = calloc(NWIN, sizeof(*s));
    for (int i = 0; i < NWIN; i++)
        put_async(c, &s[i], "k");
    uv_run(&loop, UV_RUN_DEFAULT);
    close_client(&loop, c); /* the peer reads until EOF */
    fake_join(&f);
    for (int i = 0; i < NWIN; i++) {
        ck_assert_int_eq(s[i].res.status, SHALE_OK);
        ck_assert_uint_eq(s[i].res.version, (uint64_t)i + 1); /* seq echoed */
    }
    ck_assert_int_eq(f.max_unanswered, WINDOW);
    free(s);
}
END_TEST

static void script_reconnect(fake_t *f)
{
    /* First connection: take the PUT, then drop the connection unanswered. */
    int fd = fake_accept(f);
    if (fd < 0 || serve_hello(f, fd) != 0 || recv_put(f, fd, 5000) != 0) {
        FAIL(f, "first connection: no PUT");
        if (fd >= 0)
            close(fd);
        return;
    }
    close(fd);
    /* Second: the same request again; answer it as a duplicate. */
    fd = fake_accept(f);
    if (fd < 0 || serve_hello(f, fd) != 0 || recv_put(f, fd, 5000) != 0) {
        FAIL(f, "second connection: no PUT");
        if (fd >= 0)
            close(fd);
        return;
    }
    answer_put(fd, f->ids[1], 7, 1);
    drain(fd);
}

START_TEST(test_reconnect_resends_same_seq)
{
    fake_t f;
    fake_start(&f, script_reconnect);
    uv_loop_t loop;
    shale_client_t *c = open_client(&loop, f.addr, 5000, 1000);
    slot_t s;
    memset(&s, 0, sizeof(s));
    put_async(c, &s, "k");
    uv_run(&loop, UV_RUN_DEFAULT);
    close_client(&loop, c); /* the peer reads until EOF */
    fake_join(&f);
    ck_assert_int_eq(s.res.status, SHALE_OK);
    ck_assert_int_eq(s.res.duplicate, 1);
    ck_assert_uint_eq(s.res.version, 7);
    ck_assert_int_eq(f.nconns, 2);
    ck_assert_int_eq(f.n, 2);
    ck_assert_uint_eq(f.seqs[0], f.seqs[1]);
    ck_assert_uint_eq(f.cids[0], f.cids[1]);
    ck_assert_uint_eq(f.ids[0], f.ids[1]);
}
END_TEST

/* First connection: take the PUT, then go silent without closing (a paused
 * server). Second connection: answer the same request. */
static void script_stall(fake_t *f)
{
    int fd1 = fake_accept(f);
    if (fd1 < 0 || serve_hello(f, fd1) != 0 || recv_put(f, fd1, 5000) != 0) {
        FAIL(f, "first connection: no PUT");
        if (fd1 >= 0)
            close(fd1);
        return;
    }
    int fd2 = fake_accept(f); /* fd1 stays open and silent meanwhile */
    if (fd2 < 0 || serve_hello(f, fd2) != 0 || recv_put(f, fd2, 5000) != 0) {
        FAIL(f, "second connection: no PUT");
        close(fd1);
        if (fd2 >= 0)
            close(fd2);
        return;
    }
    answer_put(fd2, f->ids[1], 9, 0);
    drain(fd2);
    close(fd1);
}

START_TEST(test_stalled_server_fails_over)
{
    fake_t f;
    fake_start(&f, script_stall);
    uv_loop_t loop;
    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = 5000;
    o.connect_timeout_ms = 1000;
    o.stall_ms = 300;
    shale_client_t *c = NULL;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(shale_client_open(&loop, f.addr, &o, &c), SHALE_OK);
    slot_t s;
    memset(&s, 0, sizeof(s));
    uint64_t t0 = client_now_ms();
    put_async(c, &s, "k");
    uv_run(&loop, UV_RUN_DEFAULT);
    close_client(&loop, c);
    fake_join(&f);
    ck_assert_msg(s.res.status == SHALE_OK, "%d: %s", s.res.status, s.res.errmsg);
    ck_assert_uint_eq(s.res.version, 9);
    ck_assert_uint_ge(s.res.at_ms - t0, 290);  /* not before the stall bound */
    ck_assert_uint_lt(s.res.at_ms - t0, 2500); /* long before the deadline */
    ck_assert_int_eq(f.nconns, 2);
    ck_assert_uint_eq(f.seqs[0], f.seqs[1]); /* the same write, resent */
    ck_assert_uint_eq(f.cids[0], f.cids[1]);
}
END_TEST

/* Every attempt of the PUT is answered UNAVAILABLE, on as many
 * connections as the client opens, until it stops coming back. */
static void script_unavailable(fake_t *f)
{
    for (;;) {
        if (!wait_fd(f->lfd, POLLIN, 3000))
            return; /* the client gave up */
        int fd = fake_accept(f);
        if (fd < 0)
            return;
        if (serve_hello(f, fd) == 0 && recv_put(f, fd, 3000) == 0) {
            Shale__Error e = SHALE__ERROR__INIT;
            e.code = SHALE__ERROR_CODE__UNAVAILABLE;
            e.message = "leadership transfer did not complete";
            send_msg(fd, SHALE_MSG_ERROR, f->ids[f->n - 1], &e.base);
        }
        drain(fd);
    }
}

/* A request answered only with retryable refusals until its deadline ends
 * with TIMEOUT, and the message gives the last answer, not "no answer". */
START_TEST(test_refusals_until_deadline_name_the_last_answer)
{
    fake_t f;
    fake_start(&f, script_unavailable);
    uv_loop_t loop;
    shale_client_t *c = open_client(&loop, f.addr, 800, 300);
    slot_t s;
    memset(&s, 0, sizeof(s));
    put_async(c, &s, "k");
    uv_run(&loop, UV_RUN_DEFAULT);
    close_client(&loop, c);
    fake_join(&f);
    ck_assert_int_eq(s.res.called, 1);
    ck_assert_msg(s.res.status == SHALE_ETIMEOUT, "%d: %s", s.res.status, s.res.errmsg);
    ck_assert_msg(strstr(s.res.errmsg, "leadership transfer did not complete") != NULL &&
                      strstr(s.res.errmsg, "no answer") == NULL,
                  "%s", s.res.errmsg);
    ck_assert_ptr_nonnull(strstr(s.res.errmsg, "outcome unknown"));
    ck_assert_int_ge(f.n, 2); /* it was retried */
}
END_TEST

static void script_late(fake_t *f)
{
    int fd = fake_accept(f);
    if (fd < 0 || serve_hello(f, fd) != 0 || recv_put(f, fd, 5000) != 0) {
        FAIL(f, "no first PUT");
        goto out;
    }
    /* The client times the first PUT out and sends a second one. */
    if (recv_put(f, fd, 5000) != 0) {
        FAIL(f, "no second PUT");
        goto out;
    }
    answer_put(fd, f->ids[0], 111, 0); /* late: must be ignored */
    answer_put(fd, f->ids[1], 222, 0);
out:
    if (fd >= 0)
        drain(fd);
}

static shale_client_t *late_client;
static slot_t late_slots[2];

static void late_first_cb(shale_req_t *req, int status)
{
    record_cb(req, status);
    put_async(late_client, &late_slots[1], "second");
}

START_TEST(test_late_answer_ignored)
{
    fake_t f;
    fake_start(&f, script_late);
    uv_loop_t loop;
    shale_client_t *c = open_client(&loop, f.addr, 200, 1000);
    late_client = c;
    memset(late_slots, 0, sizeof(late_slots));
    late_slots[0].req.data = &late_slots[0];
    ck_assert_int_eq(shale_put_async(c, &late_slots[0].req, "first", 5, "v", 1, late_first_cb),
                     SHALE_OK);
    uv_run(&loop, UV_RUN_DEFAULT);
    close_client(&loop, c); /* the peer reads until EOF */
    fake_join(&f);
    ck_assert_int_eq(late_slots[0].res.status, SHALE_ETIMEOUT);
    ck_assert_ptr_nonnull(strstr(late_slots[0].res.errmsg, "outcome unknown"));
    ck_assert_int_eq(late_slots[1].res.status, SHALE_OK);
    ck_assert_uint_eq(late_slots[1].res.version, 222);
    /* A timed-out request is complete: it no longer holds the ack floor. */
    ck_assert_uint_eq(f.floors[1], 2);
}
END_TEST

static void script_big_answer(fake_t *f)
{
    int fd = fake_accept(f);
    frame_hdr_t h;
    uint8_t *p = NULL;
    if (fd < 0 || serve_hello(f, fd) != 0 || recv_frame(fd, &h, &p, 5000) != 0 ||
        h.type != SHALE_MSG_GET_REQ) {
        FAIL(f, "no GET");
        free(p);
        if (fd >= 0)
            close(fd);
        return;
    }
    free(p);
    static uint8_t big[8192];
    Shale__GetResponse g = SHALE__GET_RESPONSE__INIT;
    g.found = 1;
    g.has_value = 1;
    g.value.data = big;
    g.value.len = sizeof(big);
    send_msg(fd, SHALE_MSG_GET_RESP, h.id, &g.base);
    drain(fd);
}

START_TEST(test_answer_over_max_frame)
{
    fake_t f;
    fake_start(&f, script_big_answer);
    shale_options_t o;
    shale_options_init(&o);
    o.max_frame = 4096;
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    shale_client_t *c = NULL;
    ck_assert_int_eq(shale_client_open(&loop, f.addr, &o, &c), SHALE_OK);
    slot_t s;
    memset(&s, 0, sizeof(s));
    s.req.data = &s;
    ck_assert_int_eq(shale_get_async(c, &s.req, "k", 1, NULL, record_cb), SHALE_OK);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(s.res.status, SHALE_ETOOLARGE);
    ck_assert_ptr_nonnull(strstr(s.res.errmsg, "max_frame"));
    close_client(&loop, c);
    fake_join(&f);
}
END_TEST

static void script_hello_then_close(fake_t *f)
{
    int fd = fake_accept(f);
    if (fd < 0 || serve_hello(f, fd) != 0) {
        if (fd >= 0)
            close(fd);
        return;
    }
    /* Let the client see HELLO_REPLY, then close: the client's next
     * write is answered with a reset. */
    usleep(50 * 1000);
    close(fd);
}

START_TEST(test_sync_write_to_closed_connection)
{
    /* A sync call whose write meets a closed connection fails cleanly and
     * leaves the client usable, with SIGPIPE at its default (fatal)
     * disposition. (The sync API also holds SIGPIPE off while it runs the
     * loop; this test cannot force the kernel to raise one.) */
    signal(SIGPIPE, SIG_DFL);
    fake_t f;
    fake_start(&f, script_hello_then_close);
    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = 300;
    o.connect_timeout_ms = 100;
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];
    ck_assert_int_eq(shale_connect(f.addr, &o, &c, err), SHALE_OK);
    pthread_join(f.th, NULL); /* the peer has closed */
    f.th = 0;
    static char big[1024 * 1024];
    int rv = shale_put(c, "k", 1, big, sizeof(big), NULL);
    ck_assert_msg(rv == SHALE_ETIMEOUT || rv == SHALE_EIO, "rv %d: %s", rv, shale_errmsg(c));
    ck_assert_str_ne(shale_errmsg(c), "");
    /* The client is still usable (and still failing cleanly). */
    ck_assert_int_eq(shale_get(c, "", 0, NULL, NULL), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(shale_errmsg(c), "empty key"));
    shale_close(c);
    close(f.lfd);
    ck_assert_int_eq(f.failed, 0);
    signal(SIGPIPE, SIG_IGN);
}
END_TEST

/* ---- Close ---------------------------------------------------------------*/

START_TEST(test_close_cancels_pending)
{
    fake_t f;
    fake_listen(&f); /* connects, never answers */
    uv_loop_t loop;
    shale_client_t *c = open_client(&loop, f.addr, 5000, 5000);
    slot_t s[3];
    memset(s, 0, sizeof(s));
    put_async(c, &s[0], "a");
    s[1].req.data = &s[1];
    ck_assert_int_eq(shale_get_async(c, &s[1].req, "b", 1, NULL, record_cb), SHALE_OK);
    s[2].req.data = &s[2];
    ck_assert_int_eq(shale_del_async(c, &s[2].req, "c", 1, record_cb), SHALE_OK);
    uv_run(&loop, UV_RUN_NOWAIT);
    int before = closed_cbs;
    shale_client_close(c, on_closed);
    /* Callbacks never run inside shale_client_close. */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(s[i].res.called, 0);
    shale_req_t r;
    ck_assert_int_eq(shale_put_async(c, &r, "k", 1, "v", 1, never_cb), SHALE_ECLOSED);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(s[i].res.called, 1);
        ck_assert_int_eq(s[i].res.status, SHALE_ECANCELED);
    }
    ck_assert_int_eq(closed_cbs, before + 1);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    close(f.lfd);
}
END_TEST

START_TEST(test_close_from_callback)
{
    fake_t f;
    fake_listen(&f);
    uv_loop_t loop;
    shale_client_t *c = open_client(&loop, f.addr, 150, 5000);
    slot_t s[3];
    memset(s, 0, sizeof(s));
    s[0].close_client = c; /* the first timeout closes the client */
    for (int i = 0; i < 3; i++)
        put_async(c, &s[i], "k");
    int before = closed_cbs;
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(s[0].res.status, SHALE_ETIMEOUT);
    for (int i = 1; i < 3; i++)
        ck_assert_int_eq(s[i].res.status, SHALE_ECANCELED);
    ck_assert_int_eq(closed_cbs, before + 1);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    close(f.lfd);
}
END_TEST

START_TEST(test_close_while_connecting)
{
    /* A name that needs the resolver, closed before it answers. */
    uv_loop_t loop;
    shale_client_t *c = open_client(&loop, "localhost:1", 1000, 1000);
    slot_t s;
    memset(&s, 0, sizeof(s));
    put_async(c, &s, "k");
    close_client(&loop, c);
    ck_assert_int_eq(s.res.status, SHALE_ECANCELED);
}
END_TEST

int main(void)
{
    /* Peers here close connections the client may still write to; an async
     * libuv application ignores SIGPIPE (the sync API guards itself). */
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("client");
    TCase *tc = tcase_create("offline");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_options_defaults);
    tcase_add_test(tc, test_strerror_covers_codes);
    tcase_add_test(tc, test_bad_addresses);
    tcase_add_test(tc, test_argument_checks_need_no_network);
    tcase_add_test(tc, test_reqtable);
    tcase_add_test(tc, test_decode_answers);
    tcase_add_test(tc, test_connect_refused);
    tcase_add_test(tc, test_silent_server_times_out);
    tcase_add_test(tc, test_per_call_deadline);
    tcase_add_test(tc, test_garbage_peer);
    tcase_add_test(tc, test_cluster_mismatch);
    tcase_add_test(tc, test_pipelined_answers_out_of_order);
    tcase_add_test(tc, test_max_inflight_window);
    tcase_add_test(tc, test_reconnect_resends_same_seq);
    tcase_add_test(tc, test_stalled_server_fails_over);
    tcase_add_test(tc, test_late_answer_ignored);
    tcase_add_test(tc, test_refusals_until_deadline_name_the_last_answer);
    tcase_add_test(tc, test_answer_over_max_frame);
    tcase_add_test(tc, test_sync_write_to_closed_connection);
    tcase_add_test(tc, test_close_cancels_pending);
    tcase_add_test(tc, test_close_from_callback);
    tcase_add_test(tc, test_close_while_connecting);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
