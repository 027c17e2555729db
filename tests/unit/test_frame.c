/* Frame codec, wire pack/unpack and the partitioning hash. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors_wire.h"
#include "frame.h"
#include "keyhash.h"
#include "wire.h"

typedef struct sink {
    int n;
    frame_hdr_t hdrs[64];
    uint8_t *payloads[64];
    int stop_after;
    int pause; /* answer FRAME_PAUSE after every frame */
} sink_t;

static int collect(void *ud, const frame_hdr_t *h, const uint8_t *p)
{
    sink_t *s = ud;
    ck_assert_int_lt(s->n, 64);
    s->hdrs[s->n] = *h;
    s->payloads[s->n] = malloc(h->len + 1);
    memcpy(s->payloads[s->n], p, h->len);
    s->n++;
    if (s->stop_after && s->n == s->stop_after)
        return 7;
    return s->pause ? FRAME_PAUSE : 0;
}

static void sink_free(sink_t *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->payloads[i]);
    memset(s, 0, sizeof(*s));
}

static uint8_t *put_frame(uint64_t id, const char *key, const char *val, size_t *len)
{
    Shale__PutRequest p = SHALE__PUT_REQUEST__INIT;
    Shale__Session ses = SHALE__SESSION__INIT;
    p.key.data = (uint8_t *)key;
    p.key.len = strlen(key);
    p.value.data = (uint8_t *)val;
    p.value.len = strlen(val);
    ses.client_id = 0xDEADBEEFCAFEull;
    ses.seq = id;
    p.session = &ses;
    return wire_pack(SHALE_MSG_PUT_REQ, id, &p.base, FRAME_DEFAULT_MAX, len);
}

START_TEST(test_header_round_trip)
{
    uint8_t b[FRAME_HEADER_SIZE];
    frame_hdr_t h = {.len = 123456, .type = SHALE_MSG_MPUT_REQ, .id = 0x0102030405060708ull};
    frame_hdr_write(b, &h);
    ck_assert_int_eq(b[4], FRAME_MAGIC);
    frame_hdr_t o;
    ck_assert_int_eq(frame_hdr_parse(b, FRAME_DEFAULT_MAX, &o), 0);
    ck_assert_uint_eq(o.len, h.len);
    ck_assert_uint_eq(o.type, h.type);
    ck_assert_uint_eq(o.id, h.id);
    ck_assert_int_eq(frame_hdr_parse(b, 1000, &o), SHALE_ETOOLARGE);
    b[5] = 9;
    ck_assert_int_eq(frame_hdr_parse(b, FRAME_DEFAULT_MAX, &o), SHALE_EPROTO);
}
END_TEST

START_TEST(test_message_round_trip)
{
    size_t len;
    uint8_t *f = put_frame(42, "hello", "world", &len);
    ck_assert_ptr_nonnull(f);
    frame_hdr_t h;
    ck_assert_int_eq(frame_hdr_parse(f, FRAME_DEFAULT_MAX, &h), 0);
    ck_assert_uint_eq(h.len + FRAME_HEADER_SIZE, len);
    ProtobufCMessage *m = wire_unpack(h.type, f + FRAME_HEADER_SIZE, h.len);
    ck_assert_ptr_nonnull(m);
    Shale__PutRequest *p = (Shale__PutRequest *)m;
    ck_assert_uint_eq(p->key.len, 5);
    ck_assert(memcmp(p->value.data, "world", 5) == 0);
    ck_assert_uint_eq(p->session->client_id, 0xDEADBEEFCAFEull);
    ck_assert_uint_eq(p->session->seq, 42);
    protobuf_c_message_free_unpacked(m, NULL);
    free(f);

    /* Every frame type we define has a descriptor, and only those. */
    for (unsigned t = 0; t <= SHALE_MSG_MAX_; t++)
        ck_assert_int_eq(frame_type_known((uint16_t)t), wire_descriptor((uint16_t)t) != NULL);
    ck_assert_str_eq(frame_type_name(SHALE_MSG_CAS_REQ), "CAS");
    ck_assert_str_eq(frame_type_name(77), "?");

    /* An error frame carries code, message and hint. */
    f = wire_error_frame(9, SHALE_ENOTLEADER, "go away", "127.0.0.1:1", &len);
    ck_assert_int_eq(frame_hdr_parse(f, FRAME_DEFAULT_MAX, &h), 0);
    Shale__Error *e = (Shale__Error *)wire_unpack(SHALE_MSG_ERROR, f + 16, h.len);
    ck_assert_int_eq(e->code, SHALE__ERROR_CODE__NOT_LEADER);
    ck_assert_str_eq(e->message, "go away");
    ck_assert_str_eq(e->leader_hint, "127.0.0.1:1");
    protobuf_c_message_free_unpacked(&e->base, NULL);
    free(f);
    /* Wire codes and local codes mirror each other. */
    ck_assert_int_eq(shale_error_to_wire(SHALE_ECASFAILED), SHALE__ERROR_CODE__CAS_FAILED);
    ck_assert_int_eq(shale_error_to_wire(SHALE_ESLOTMOVING), SHALE__ERROR_CODE__SLOT_MOVING);
    ck_assert_int_eq(shale_error_to_wire(SHALE_EAUTH), SHALE__ERROR_CODE__UNAUTHENTICATED);
    ck_assert_int_eq(shale_error_to_wire(SHALE_EPERM), SHALE__ERROR_CODE__PERMISSION_DENIED);
    ck_assert_int_eq(shale_error_to_wire(SHALE_ECROSSSLOT), SHALE__ERROR_CODE__CROSSSLOT);
    ck_assert_int_eq(shale_error_to_wire(SHALE_ECOMPACTED), SHALE__ERROR_CODE__COMPACTED);
    ck_assert_int_eq(SHALE__ERROR_CODE__COMPACTED, 19);
    ck_assert_ptr_nonnull(strstr(shale_strerror(SHALE_ECOMPACTED), "watch from now"));
    ck_assert_int_eq(shale_error_to_wire(SHALE_ENOMEM), 0);
    for (int c = 0; c >= -104; c--)
        ck_assert_ptr_nonnull(shale_strerror(c));
}
END_TEST

/* Three frames in one buffer, fed split at every pair of byte boundaries. */
START_TEST(test_split_at_every_boundary)
{
    size_t l1, l2, l3;
    uint8_t *f1 = put_frame(1, "a", "first", &l1);
    uint8_t *f2 = put_frame(2, "bb", "", &l2);
    uint8_t *f3 = put_frame(3, "ccc", "third value, a bit longer than the rest", &l3);
    size_t total = l1 + l2 + l3;
    uint8_t *all = malloc(total);
    memcpy(all, f1, l1);
    memcpy(all + l1, f2, l2);
    memcpy(all + l1 + l2, f3, l3);
    for (size_t a = 0; a <= total; a++) {
        for (size_t b = a; b <= total; b += 3) {
            frame_decoder_t d;
            sink_t s = {0};
            frame_decoder_init(&d, FRAME_DEFAULT_MAX);
            ck_assert_int_eq(frame_decoder_feed(&d, all, a, collect, &s), 0);
            ck_assert_int_eq(frame_decoder_feed(&d, all + a, b - a, collect, &s), 0);
            ck_assert_int_eq(frame_decoder_feed(&d, all + b, total - b, collect, &s), 0);
            ck_assert_int_eq(s.n, 3);
            ck_assert_uint_eq(s.hdrs[0].id, 1);
            ck_assert_uint_eq(s.hdrs[1].id, 2);
            ck_assert_uint_eq(s.hdrs[2].id, 3);
            ck_assert(memcmp(s.payloads[2], f3 + 16, l3 - 16) == 0);
            sink_free(&s);
            frame_decoder_free(&d);
        }
    }
    /* One byte at a time. */
    frame_decoder_t d;
    sink_t s = {0};
    frame_decoder_init(&d, FRAME_DEFAULT_MAX);
    for (size_t i = 0; i < total; i++)
        ck_assert_int_eq(frame_decoder_feed(&d, all + i, 1, collect, &s), 0);
    ck_assert_int_eq(s.n, 3);
    sink_free(&s);
    frame_decoder_free(&d);
    free(all);
    free(f1);
    free(f2);
    free(f3);
}
END_TEST

START_TEST(test_callback_stops_feed)
{
    size_t l1;
    uint8_t *f1 = put_frame(1, "a", "x", &l1);
    uint8_t two[256];
    memcpy(two, f1, l1);
    memcpy(two + l1, f1, l1);
    frame_decoder_t d;
    sink_t s = {.stop_after = 1};
    frame_decoder_init(&d, FRAME_DEFAULT_MAX);
    ck_assert_int_eq(frame_decoder_feed(&d, two, 2 * l1, collect, &s), 7);
    ck_assert_int_eq(s.n, 1);
    sink_free(&s);
    frame_decoder_free(&d);
    free(f1);
}
END_TEST

START_TEST(test_pause_keeps_the_rest)
{
    /* Three frames, the last split across two reads: pausing after every
     * frame delivers each exactly once, in order, and a feed while input is
     * kept back is refused rather than reordered. */
    size_t l1, l2, l3;
    uint8_t *f1 = put_frame(1, "a", "first", &l1);
    uint8_t *f2 = put_frame(2, "bb", "", &l2);
    uint8_t *f3 = put_frame(3, "ccc", "third", &l3);
    size_t total = l1 + l2 + l3;
    uint8_t *all = malloc(total);
    memcpy(all, f1, l1);
    memcpy(all + l1, f2, l2);
    memcpy(all + l1 + l2, f3, l3);
    size_t cut = l1 + l2 + 5; /* inside frame 3's header */
    frame_decoder_t d;
    sink_t s = {.pause = 1};
    frame_decoder_init(&d, FRAME_DEFAULT_MAX);
    ck_assert_int_eq(frame_decoder_feed(&d, all, cut, collect, &s), FRAME_PAUSE);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(frame_decoder_backlog(&d), cut - l1);
    ck_assert_int_eq(frame_decoder_feed(&d, all + cut, total - cut, collect, &s),
                     SHALE_EPROTO);
    ck_assert_int_eq(frame_decoder_resume(&d, collect, &s), FRAME_PAUSE);
    ck_assert_int_eq(s.n, 2);
    /* Frame 3's first 5 bytes are consumed into the header buffer. */
    ck_assert_int_eq(frame_decoder_resume(&d, collect, &s), 0);
    ck_assert_uint_eq(frame_decoder_backlog(&d), 0);
    ck_assert_int_eq(frame_decoder_feed(&d, all + cut, total - cut, collect, &s),
                     FRAME_PAUSE);
    ck_assert_int_eq(s.n, 3);
    ck_assert_uint_eq(frame_decoder_backlog(&d), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(s.hdrs[i].id, (uint64_t)i + 1);
    ck_assert(memcmp(s.payloads[2], f3 + 16, l3 - 16) == 0);
    sink_free(&s);
    frame_decoder_free(&d);
    free(all);
    free(f1);
    free(f2);
    free(f3);
}
END_TEST

START_TEST(test_oversize_rejected_before_allocation)
{
    frame_decoder_t d;
    sink_t s = {0};
    frame_decoder_init(&d, 1024);
    uint8_t h[FRAME_HEADER_SIZE];
    frame_hdr_t fh = {.len = 0xFFFFFFFFu, .type = SHALE_MSG_PUT_REQ, .id = 1};
    frame_hdr_write(h, &fh);
    ck_assert_int_eq(frame_decoder_feed(&d, h, sizeof(h), collect, &s), SHALE_ETOOLARGE);
    ck_assert_ptr_null(d.buf); /* nothing allocated */
    /* Sticky: nothing more is accepted. */
    ck_assert_int_eq(frame_decoder_feed(&d, h, 1, collect, &s), SHALE_ETOOLARGE);
    ck_assert_int_eq(s.n, 0);
    frame_decoder_free(&d);
    /* The limit is inclusive. */
    frame_decoder_init(&d, 1024);
    uint8_t *f = calloc(1, 16 + 1024);
    fh.len = 1024;
    frame_hdr_write(f, &fh);
    ck_assert_int_eq(frame_decoder_feed(&d, f, 16 + 1024, collect, &s), 0);
    ck_assert_int_eq(s.n, 1);
    sink_free(&s);
    frame_decoder_free(&d);
    free(f);
}
END_TEST

START_TEST(test_garbage_and_truncation)
{
    srand(1234);
    for (int round = 0; round < 2000; round++) {
        uint8_t junk[200];
        size_t n = (size_t)(rand() % (int)sizeof(junk));
        for (size_t i = 0; i < n; i++)
            junk[i] = (uint8_t)rand();
        if (round % 2)
            junk[4] = FRAME_MAGIC, junk[5] = FRAME_VERSION; /* pass the magic */
        frame_decoder_t d;
        sink_t s = {0};
        frame_decoder_init(&d, 4096);
        int rv = frame_decoder_feed(&d, junk, n, collect, &s);
        ck_assert(rv == 0 || rv == SHALE_EPROTO || rv == SHALE_ETOOLARGE);
        /* Whatever frames came out must not crash the unpacker. */
        for (int i = 0; i < s.n; i++) {
            ProtobufCMessage *m = wire_unpack(s.hdrs[i].type, s.payloads[i], s.hdrs[i].len);
            if (m)
                protobuf_c_message_free_unpacked(m, NULL);
        }
        sink_free(&s);
        frame_decoder_free(&d);
    }
    /* A truncated frame yields nothing and keeps waiting. */
    size_t l;
    uint8_t *f = put_frame(5, "key", "value", &l);
    frame_decoder_t d;
    sink_t s = {0};
    frame_decoder_init(&d, 4096);
    ck_assert_int_eq(frame_decoder_feed(&d, f, l - 1, collect, &s), 0);
    ck_assert_int_eq(s.n, 0);
    /* Truncated protobuf payloads are rejected by the unpacker. */
    for (size_t cut = 1; cut < l - 16; cut++) {
        ProtobufCMessage *m = wire_unpack(SHALE_MSG_PUT_REQ, f + 16, cut);
        if (m) /* a prefix may still be a valid message; never a crash */
            protobuf_c_message_free_unpacked(m, NULL);
    }
    ck_assert_ptr_null(wire_unpack(SHALE_MSG_PUT_REQ, (const uint8_t *)"\xff\xff", 2));
    ck_assert_ptr_null(wire_unpack(200, f + 16, l - 16));
    frame_decoder_free(&d);
    free(f);
}
END_TEST

/* The partitioning hash must never change: fixed vectors (XXH64, seed 0).
 * Untagged keys hash whole, in v1 and v2 alike. */
START_TEST(test_hash_vectors)
{
    ck_assert_uint_eq(shale_hash64("", 0, 0), 0xEF46DB3751D8E999ull);
    ck_assert_uint_eq(shale_hash64("a", 1, 0), 0xD24EC4F1A98C6E5Bull);
    ck_assert_uint_eq(shale_hash64("abc", 3, 0), 0x44BC2CF5AD770999ull);
    const char *s1 = "Nobody inspects the spammish repetition";
    ck_assert_uint_eq(shale_hash64(s1, strlen(s1), 0), 0xFBCEA83C8A378BF1ull);
    const char *s2 = "0123456789abcdef0123456789abcdef0123456789";
    ck_assert_uint_eq(shale_hash64(s2, strlen(s2), 0), 0xA76190C3ACF08A1Cull);
    ck_assert_uint_eq(shale_key_slot("user:1000", 9, 4096),
                      (uint32_t)(shale_hash64("user:1000", 9, 0) % 4096));
    /* Slots spread: 40,000 keys over 16 slots, each within 10% of even. */
    int count[16] = {0};
    char k[32];
    for (int i = 0; i < 40000; i++) {
        int n = snprintf(k, sizeof(k), "key-%d", i);
        count[shale_key_slot(k, (size_t)n, 16)]++;
    }
    for (int i = 0; i < 16; i++)
        ck_assert(count[i] > 2250 && count[i] < 2750);
}
END_TEST

/* The hashed part of a key (key-hash v2): want NULL means no tag, the
 * whole key is hashed. */
static void tag_is(const char *key, size_t len, const char *want, size_t wlen)
{
    size_t off = 99, n = 99;
    int tagged = shale_key_tag(key, len, &off, &n);
    if (want == NULL) {
        ck_assert_msg(!tagged, "key of %zu bytes: no tag expected", len);
        ck_assert_uint_eq(off, 0);
        ck_assert_uint_eq(n, len);
        ck_assert_uint_eq(shale_key_slot(key, len, 4096),
                          (uint32_t)(shale_hash64(key, len, 0) % 4096));
        return;
    }
    ck_assert_msg(tagged, "key of %zu bytes: tag expected", len);
    ck_assert_uint_eq(n, wlen);
    ck_assert_uint_le(off + n, len);
    ck_assert_int_eq(memcmp(key + off, want, wlen), 0);
    ck_assert_uint_eq(shale_key_slot(key, len, 4096),
                      (uint32_t)(shale_hash64(want, wlen, 0) % 4096));
}
#define TAG_IS(lit, want) tag_is(lit, sizeof(lit) - 1, want, sizeof(want) - 1)
#define NO_TAG(lit) tag_is(lit, sizeof(lit) - 1, NULL, 0)

/* Key-hash v2, the Redis Cluster rule: only the bytes between the first '{'
 * and the first '}' after it are hashed, if there is at least one. */
START_TEST(test_hash_tags)
{
    ck_assert_uint_eq(SHALE_KEYHASH_VERSION, 2);
    TAG_IS("{user1}.a", "user1");
    TAG_IS("{user1}", "user1");
    TAG_IS("x{user1}", "user1");
    TAG_IS("a{b}{c}", "b"); /* the first tag only */
    TAG_IS("{{a}}", "{a");  /* from the first '{' to the first '}' after it */
    TAG_IS("}{x}", "x");    /* a '}' before the first '{' does not count */
    NO_TAG("{}a");          /* empty tag: the whole key */
    NO_TAG("a{}{b}");       /* the first braces are empty: no later tag */
    NO_TAG("{}");
    NO_TAG("a{b"); /* unmatched '{' */
    NO_TAG("a}b"); /* unmatched '}' */
    NO_TAG("a}b{");
    NO_TAG("{");
    NO_TAG("}");
    NO_TAG("user1");
    NO_TAG("");
    /* Binary keys: NUL and high bytes are ordinary bytes, inside a tag or
     * around it. */
    TAG_IS("\0{\0}\0", "\0");
    TAG_IS("x{a\0b}y", "a\0b");
    TAG_IS("\0\0{k}", "k");
    TAG_IS("\xff{\xfe\x80}", "\xfe\x80");
    NO_TAG("\0{}\0{a}");

    /* Fixed vectors, forever: the slot of a tagged key is the slot of its
     * tag (XXH64("user1") pinned), not of the whole key. */
    ck_assert_uint_eq(shale_hash64("user1", 5, 0), 0x63EDB0950FC8C927ull);
    ck_assert_uint_eq(shale_key_slot("{user1}.a", 9, 4096), 2343);
    ck_assert_uint_eq(shale_key_slot("{user1}.b", 9, 4096), 2343);
    ck_assert_uint_eq(shale_key_slot("{user1}.c", 9, 4096), 2343);
    ck_assert_uint_eq(shale_key_slot("user1", 5, 4096), 2343); /* the bare tag too */
    ck_assert_uint_eq(shale_key_slot("{user1}.a", 9, 256), 39);
    ck_assert_uint_eq(shale_key_slot("a{b}{c}", 7, 4096), 3995);
    ck_assert_uint_eq(shale_key_slot("{{a}}", 5, 4096), 179);
    ck_assert_uint_eq(shale_key_slot("{}a", 3, 4096), 2352);
    ck_assert_uint_eq(shale_key_slot("a{}{b}", 6, 4096), 4064);
    ck_assert_uint_eq(shale_key_slot("x{a\0b}y", 7, 4096), 2241);
    ck_assert_uint_eq(shale_key_slot("user:1000", 9, 4096), 10); /* untagged: unchanged */
    /* What v1 (the whole key) gave for the same keys: different slots, which
     * is why a store from before hash tags is checked at open. */
    ck_assert_uint_eq(shale_hash64("{user1}.a", 9, 0) % 4096, 96);
    ck_assert_uint_eq(shale_hash64("{user1}.b", 9, 0) % 4096, 1362);
    ck_assert_uint_eq(shale_hash64("{user1}.c", 9, 0) % 4096, 1922);

    /* Many keys of one tag: one slot; tags still spread keys evenly. */
    int count[16] = {0};
    char k[48];
    for (int i = 0; i < 40000; i++) {
        int n = snprintf(k, sizeof(k), "{user1}.field-%d", i);
        ck_assert_uint_eq(shale_key_slot(k, (size_t)n, 4096), 2343);
        n = snprintf(k, sizeof(k), "{tenant-%d}.x", i);
        count[shale_key_slot(k, (size_t)n, 16)]++;
    }
    for (int i = 0; i < 16; i++)
        ck_assert(count[i] > 2250 && count[i] < 2750);
}
END_TEST

/* TXN: the frame round trip and wire_txn_check (limits, shapes, one slot). */
START_TEST(test_txn_check)
{
    Shale__TxnCompare c = SHALE__TXN_COMPARE__INIT, *cp = &c;
    Shale__TxnOp o1 = SHALE__TXN_OP__INIT, o2 = SHALE__TXN_OP__INIT;
    Shale__TxnOp *ops[2] = {&o1, &o2};
    Shale__TxnRequest x = SHALE__TXN_REQUEST__INIT;
    char msg[256];
    uint32_t slot;
    int writes;
    c.key.data = (uint8_t *)"{acct}a";
    c.key.len = 7;
    c.target = SHALE__TXN_TARGET__TXN_VERSION;
    c.op = SHALE__TXN_COMPARE_OP__TXN_EQUAL;
    c.has_version = 1;
    c.version = 3;
    o1.type = SHALE__TXN_OP_TYPE__TXN_PUT;
    o1.key.data = (uint8_t *)"{acct}b";
    o1.key.len = 7;
    o1.has_value = 1;
    o1.value.data = (uint8_t *)"1";
    o1.value.len = 1;
    o2.type = SHALE__TXN_OP_TYPE__TXN_GET;
    o2.key.data = (uint8_t *)"{acct}c";
    o2.key.len = 7;
    x.n_compares = 1;
    x.compares = &cp;
    x.n_success = 1;
    x.success = ops;
    x.n_failure = 1;
    x.failure = ops + 1;
    ck_assert_int_eq(wire_txn_check(&x, 4096, 1 << 20, 16384, &slot, &writes, msg, sizeof(msg)),
                     0);
    ck_assert_uint_eq(slot, shale_key_slot("{acct}zz", 8, 16384));
    ck_assert_int_eq(writes, 1);
    /* Round trip through a frame. */
    size_t len;
    uint8_t *f = wire_pack(SHALE_MSG_TXN_REQ, 5, &x.base, FRAME_DEFAULT_MAX, &len);
    ck_assert_ptr_nonnull(f);
    Shale__TxnRequest *y = (Shale__TxnRequest *)wire_unpack(SHALE_MSG_TXN_REQ, f + 16, len - 16);
    ck_assert_ptr_nonnull(y);
    ck_assert_uint_eq(y->n_compares, 1);
    ck_assert_uint_eq(y->compares[0]->version, 3);
    ck_assert_uint_eq(y->n_success, 1);
    ck_assert_uint_eq(y->n_failure, 1);
    ck_assert_int_eq(y->failure[0]->type, SHALE__TXN_OP_TYPE__TXN_GET);
    protobuf_c_message_free_unpacked(&y->base, NULL);
    free(f);
    ck_assert_str_eq(frame_type_name(SHALE_MSG_TXN_REQ), "TXN");
    ck_assert_str_eq(frame_type_name(SHALE_MSG_TXN_RESP), "TXN_RESP");
    /* Get-only: no writes. */
    x.n_success = 0;
    ck_assert_int_eq(wire_txn_check(&x, 4096, 1 << 20, 16384, &slot, &writes, msg, sizeof(msg)),
                     0);
    ck_assert_int_eq(writes, 0);
    x.n_success = 1;
    /* Keys in two slots: CROSSSLOT, naming the op. */
    o2.key.data = (uint8_t *)"{other}c";
    o2.key.len = 8;
    ck_assert_uint_ne(shale_key_slot("{other}c", 8, 16384), slot);
    ck_assert_int_eq(wire_txn_check(&x, 4096, 1 << 20, 16384, &slot, &writes, msg, sizeof(msg)),
                     SHALE_ECROSSSLOT);
    ck_assert_ptr_nonnull(strstr(msg, "failure op 0"));
    o2.key.data = (uint8_t *)"{acct}c";
    o2.key.len = 7;
    /* Shapes. */
    c.has_version = 0;
    ck_assert_int_eq(wire_txn_check(&x, 4096, 1 << 20, 16384, &slot, &writes, msg, sizeof(msg)),
                     SHALE_EINVAL);
    c.has_version = 1;
    c.target = SHALE__TXN_TARGET__TXN_EXISTS;
    c.has_exists = 1;
    c.op = SHALE__TXN_COMPARE_OP__TXN_LESS;
    ck_assert_int_eq(wire_txn_check(&x, 4096, 1 << 20, 16384, &slot, &writes, msg, sizeof(msg)),
                     SHALE_EINVAL);
    c.op = SHALE__TXN_COMPARE_OP__TXN_NOT_EQUAL;
    ck_assert_int_eq(wire_txn_check(&x, 4096, 1 << 20, 16384, &slot, &writes, msg, sizeof(msg)),
                     0);
    o1.has_value = 0;
    ck_assert_int_eq(wire_txn_check(&x, 4096, 1 << 20, 16384, &slot, &writes, msg, sizeof(msg)),
                     SHALE_EINVAL);
    o1.has_value = 1;
    ck_assert_int_eq(wire_txn_check(&x, 4, 1 << 20, 16384, &slot, &writes, msg, sizeof(msg)),
                     SHALE_ETOOLARGE);
    ck_assert_int_eq(wire_txn_check(&x, 4096, 0, 16384, &slot, &writes, msg, sizeof(msg)),
                     SHALE_ETOOLARGE);
    /* Limits and emptiness. */
    x.n_compares = SHALE_TXN_MAX_COMPARES + 1;
    ck_assert_int_eq(wire_txn_check(&x, 4096, 1 << 20, 16384, &slot, &writes, msg, sizeof(msg)),
                     SHALE_ETOOLARGE);
    x.n_compares = 0;
    x.n_success = 0;
    x.n_failure = SHALE_TXN_MAX_OPS + 1;
    ck_assert_int_eq(wire_txn_check(&x, 4096, 1 << 20, 16384, &slot, &writes, msg, sizeof(msg)),
                     SHALE_ETOOLARGE);
    x.n_failure = 0;
    ck_assert_int_eq(wire_txn_check(&x, 4096, 1 << 20, 16384, &slot, &writes, msg, sizeof(msg)),
                     SHALE_EINVAL);
}
END_TEST

/* Scan cursors: round trip, garbage refused with INVALID, prefix bound,
 * tagged prefixes name one slot; the page-size rule. */
START_TEST(test_scan_cursor)
{
    char msg[200];
    uint32_t slot = 99;
    uint8_t *after = NULL;
    size_t alen = 7, len = 0;
    char *c = wire_cursor_encode(17, (const uint8_t *)"k\0y", 3, NULL, 0, &len);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(strlen(c), len);
    ck_assert_int_eq(wire_cursor_decode((const uint8_t *)c, len, 4096, NULL, 0, &slot, &after,
                                        &alen, msg, sizeof(msg)), 0);
    ck_assert_uint_eq(slot, 17);
    ck_assert(alen == 3 && memcmp(after, "k\0y", 3) == 0);
    free(after);
    /* The same cursor for another prefix, or fewer slots: refused. */
    ck_assert_int_eq(wire_cursor_decode((const uint8_t *)c, len, 4096, (const uint8_t *)"p", 1,
                                        &slot, &after, &alen, msg, sizeof(msg)), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "prefix"));
    ck_assert_int_eq(wire_cursor_decode((const uint8_t *)c, len, 16, NULL, 0, &slot, &after,
                                        &alen, msg, sizeof(msg)), SHALE_EINVAL);
    free(c);
    /* With a prefix and no key (start of a slot). */
    c = wire_cursor_encode(0, NULL, 0, (const uint8_t *)"pre", 3, &len);
    ck_assert_int_eq(wire_cursor_decode((const uint8_t *)c, len, 4096, (const uint8_t *)"pre",
                                        3, &slot, &after, &alen, msg, sizeof(msg)), 0);
    ck_assert(slot == 0 && after == NULL && alen == 0);
    free(c);
    /* Garbage: not hex, odd length, empty, hex of a non-cursor, version 2. */
    const char *bad[] = {"zz", "abc", "", "ffffffff", "0802", "deadbeef00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_int_eq(wire_cursor_decode((const uint8_t *)bad[i], strlen(bad[i]), 4096, NULL,
                                            0, &slot, &after, &alen, msg, sizeof(msg)),
                         SHALE_EINVAL);
    /* version=2 (08 02), slot=1 (10 01) */
    ck_assert_int_eq(wire_cursor_decode((const uint8_t *)"08021001", 8, 4096, NULL, 0, &slot,
                                        &after, &alen, msg, sizeof(msg)), SHALE_EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "version"));
    ck_assert_int_eq(wire_cursor_decode((const uint8_t *)"08011001", 8, 4096, NULL, 0, &slot,
                                        &after, &alen, msg, sizeof(msg)), 0);
    ck_assert_uint_eq(slot, 1);

    /* Tagged prefixes: one slot; untagged or incomplete tags: not. */
    ck_assert_int_eq(wire_prefix_slot((const uint8_t *)"{u1}.", 5, 4096, &slot), 1);
    ck_assert_uint_eq(slot, shale_key_slot("{u1}.zzz", 8, 4096));
    ck_assert_int_eq(wire_prefix_slot((const uint8_t *)"x{u1}", 5, 4096, &slot), 1);
    ck_assert_uint_eq(slot, shale_key_slot("u1", 2, 4096));
    ck_assert_int_eq(wire_prefix_slot((const uint8_t *)"{u1", 3, 4096, &slot), 0);
    ck_assert_int_eq(wire_prefix_slot((const uint8_t *)"{}a", 3, 4096, &slot), 0);
    ck_assert_int_eq(wire_prefix_slot((const uint8_t *)"user", 4, 4096, &slot), 0);
    ck_assert_int_eq(wire_prefix_slot(NULL, 0, 4096, &slot), 0);

    ck_assert_uint_eq(wire_scan_limit(0), SHALE_SCAN_DEFAULT_LIMIT);
    ck_assert_uint_eq(wire_scan_limit(5), 5);
    ck_assert_uint_eq(wire_scan_limit(100000), SHALE_SCAN_MAX_LIMIT);
    ck_assert_str_eq(frame_type_name(SHALE_MSG_SCAN_REQ), "SCAN");
    ck_assert_str_eq(frame_type_name(SHALE_MSG_SCAN_RESP), "SCAN_RESP");
}
END_TEST

/* WATCH (26) / WATCH_RESP (27): known, named, round-trip through a frame;
 * 28 stays reserved (unknown). */
START_TEST(test_watch_frames)
{
    ck_assert_int_eq(SHALE_MSG_WATCH_REQ, 26);
    ck_assert_int_eq(SHALE_MSG_WATCH_RESP, 27);
    ck_assert_str_eq(frame_type_name(SHALE_MSG_WATCH_REQ), "WATCH");
    ck_assert_str_eq(frame_type_name(SHALE_MSG_WATCH_RESP), "WATCH_RESP");
    ck_assert_int_eq(frame_type_known(28), 0);
    Shale__WatchRequest q = SHALE__WATCH_REQUEST__INIT;
    q.key.data = (uint8_t *)"{t}";
    q.key.len = 3;
    q.has_prefix = q.prefix = 1;
    q.has_from_revision = 1;
    q.from_revision = 42;
    q.has_group = 1;
    q.group = 7;
    size_t len;
    frame_hdr_t h;
    uint8_t *f = wire_pack(SHALE_MSG_WATCH_REQ, 5, &q.base, FRAME_DEFAULT_MAX, &len);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(frame_hdr_parse(f, FRAME_DEFAULT_MAX, &h), 0);
    Shale__WatchRequest *g = (Shale__WatchRequest *)wire_unpack(h.type, f + 16, h.len);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(g->prefix, 1);
    ck_assert_uint_eq(g->from_revision, 42);
    ck_assert_uint_eq(g->group, 7);
    protobuf_c_message_free_unpacked(&g->base, NULL);
    free(f);
    Shale__WatchEvent ev = SHALE__WATCH_EVENT__INIT, *evp = &ev;
    ev.revision = 43;
    ev.kind = SHALE__WATCH_KIND__WATCH_DELETE;
    ev.key.data = (uint8_t *)"{t}a";
    ev.key.len = 4;
    ev.has_version = 1;
    ev.version = 9;
    Shale__WatchResponse r = SHALE__WATCH_RESPONSE__INIT;
    r.n_events = 1;
    r.events = &evp;
    r.revision = 44;
    f = wire_pack(SHALE_MSG_WATCH_RESP, 5, &r.base, FRAME_DEFAULT_MAX, &len);
    ck_assert_int_eq(frame_hdr_parse(f, FRAME_DEFAULT_MAX, &h), 0);
    Shale__WatchResponse *rr = (Shale__WatchResponse *)wire_unpack(h.type, f + 16, h.len);
    ck_assert_ptr_nonnull(rr);
    ck_assert_uint_eq(rr->n_events, 1);
    ck_assert_uint_eq(rr->events[0]->revision, 43);
    ck_assert_int_eq(rr->events[0]->kind, SHALE__WATCH_KIND__WATCH_DELETE);
    ck_assert_uint_eq(rr->revision, 44);
    protobuf_c_message_free_unpacked(&rr->base, NULL);
    free(f);
}
END_TEST

/* CLOCK (32/33): the clock-offset ping's frames are known, named, and a
 * ClockResponse survives a frame round trip with its fields. */
START_TEST(test_clock_frames)
{
    ck_assert(frame_type_known(SHALE_MSG_CLOCK_REQ));
    ck_assert(frame_type_known(SHALE_MSG_CLOCK_RESP));
    ck_assert_str_eq(frame_type_name(SHALE_MSG_CLOCK_REQ), "CLOCK");
    ck_assert_str_eq(frame_type_name(SHALE_MSG_CLOCK_RESP), "CLOCK_RESP");
    Shale__ClockResponse c = SHALE__CLOCK_RESPONSE__INIT;
    c.node_id = 3;
    c.realtime_us = 1765000000123456ull;
    c.has_leader = 1;
    c.leader = 1;
    size_t len;
    uint8_t *f = wire_pack(SHALE_MSG_CLOCK_RESP, 9, &c.base, FRAME_DEFAULT_MAX, &len);
    ck_assert_ptr_nonnull(f);
    Shale__ClockResponse *d =
        (Shale__ClockResponse *)wire_unpack(SHALE_MSG_CLOCK_RESP, f + 16, len - 16);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(d->node_id, 3);
    ck_assert_uint_eq(d->realtime_us, 1765000000123456ull);
    ck_assert(d->has_leader && d->leader);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    free(f);
    Shale__ClockRequest q = SHALE__CLOCK_REQUEST__INIT;
    f = wire_pack(SHALE_MSG_CLOCK_REQ, 10, &q.base, FRAME_DEFAULT_MAX, &len);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(len, 16);
    ProtobufCMessage *m = wire_unpack(SHALE_MSG_CLOCK_REQ, f + 16, 0);
    ck_assert_ptr_nonnull(m);
    protobuf_c_message_free_unpacked(m, NULL);
    free(f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, test_header_round_trip);
    tcase_add_test(tc, test_message_round_trip);
    tcase_add_test(tc, test_split_at_every_boundary);
    tcase_add_test(tc, test_callback_stops_feed);
    tcase_add_test(tc, test_pause_keeps_the_rest);
    tcase_add_test(tc, test_oversize_rejected_before_allocation);
    tcase_add_test(tc, test_garbage_and_truncation);
    tcase_add_test(tc, test_hash_vectors);
    tcase_add_test(tc, test_hash_tags);
    tcase_add_test(tc, test_txn_check);
    tcase_add_test(tc, test_scan_cursor);
    tcase_add_test(tc, test_watch_frames);
    tcase_add_test(tc, test_clock_frames);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
