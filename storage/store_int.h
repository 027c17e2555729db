/* What the store's modules share (storage/store*.c): the key layout
 * constants, the store and iterator structs, the data row format, the apply
 * context of one entry, the byte-order helpers and the functions one module
 * calls in another. Internal: nothing outside storage/ includes it.
 *
 * Every key is [slot:2][tag:1]...; metadata lives under the slot 0xFFFF.
 */
#ifndef SHALE_STORE_INT_H
#define SHALE_STORE_INT_H

#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define TAG_DATA 'd'
#define TAG_RESULT 's'
#define TAG_HEADER 'c'
#define TAG_META 'm'
#define TAG_CLOG 'x'
#define TAG_EXPIRY 'e' /* [0xFFFF]['e'][expires_at:8][slot:2][key]: expiry index */
#define CLOG_KEY_LEN 15 /* [slot:2]['x'][index:8][n:4] */
#define META_SLOT 0xFFFFu
#define HEADER_KEY_LEN 11 /* [slot:2]['c'][client:8] */
#define RESULT_KEY_LEN 19 /* [slot:2]['s'][client:8][seq:8] */
#define HEADER_VAL_LEN 16 /* [max_seq:8][last_ms:8] */
#define RESULT_OP_LEN 10  /* [-code:1][existed:1][version:8] */
#define VERSION_LEN 8
/* A data row with a time-to-live: the version word has this bit set and is
 * followed by [expires_at:8] (ms of the log clock) before the value. Rows
 * without it are the old format, [version:8][value]. */
#define TTL_FLAG (1ULL << 63)
#define TTL_HEAD_LEN 16
#define EXP_KEY_HEAD 13 /* [0xFFFF]['e'][expires_at:8][slot:2] */
#define KEYHASH_VAL_LEN 4
/* Bytes of a refused key quoted in the open error (escaped). */
#define KEY_SAMPLE 24
/* Pruning of a (slot, client)'s old session results (store_session.c,
 * st_prune_session):
 *  - a request whose previous result (the header's max_seq) is already
 *    below the prune bound deletes that one record by key: no scan. This is
 *    the common case: a client's seqs are global and a slot sees one of them
 *    every few thousand seqs, so nearly every request crosses the bound;
 *  - a scan of the (slot, client)'s records below the bound runs when
 *    max_seq crosses a multiple of PRUNE_EVERY while the previous result is
 *    still kept (a busy slot), or a multiple of PRUNE_SCAN_EVERY otherwise:
 *    records a point delete could not name (kept when their successor came)
 *    go then.
 * Records kept per (slot, client) whose client acks: those of the last
 * WINDOW + PRUNE_EVERY seqs, plus those a point delete left behind — the
 * requests of a burst (seqs within WINDOW of each other) that a quiet gap
 * followed, all but the last — until the next scan: at most the (slot,
 * client)'s requests of the last PRUNE_SCAN_EVERY seqs. Session expiry
 * takes all of an idle client's. */
#define PRUNE_EVERY 4096u
#define PRUNE_SCAN_EVERY (1u << 20)

static const char APPLIED_KEY[] = {(char)0xFF, (char)0xFF, TAG_META, 'a', 'p',
                                   'p',        'l',        'i',      'e', 'd'};

/* The version bound (see st_vbound_raise): [0xFFFF]['m']['v']... sorts apart
 * from the applied index ('a') and named metadata ('u'). */
static const char VBOUND_KEY[] = {(char)0xFF, (char)0xFF, TAG_META, 'v', 'b',
                                  'o',        'u',        'n',      'd'};

/* The key-hash marker (see keyhash_load, keyhash_verify): [0xFFFF]['m']['k']... ->
 * [version:4], the key-hash version (proto/keyhash.h) every data row's slot
 * was computed with. */
static const char KEYHASH_KEY[] = {(char)0xFF, (char)0xFF, TAG_META, 'k', 'e',
                                   'y',        'h',        'a',      's', 'h'};

/* The log clock (see store_clock_advance): [0xFFFF]['m']['c']... -> [ms:8]. */
static const char CLOCK_KEY[] = {(char)0xFF, (char)0xFF, TAG_META, 'c', 'l', 'o', 'c', 'k'};

struct store {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_cache_t *cache;
    rocksdb_readoptions_t *ropts;
    rocksdb_writeoptions_t *wopts;
    uint64_t applied;
    /* An upper bound of every data version this store holds that was not
     * given by the version floor of an entry before the current one:
     * versions imported from another group and versions of the old + 1 term
     * (see next_version). A blind PUT whose floor is above it needs no read
     * of the old version. Persisted under VBOUND_KEY in the batch that raises
     * it; vbound_dirty says the row must be (re)written with the next batch
     * (a store from a build without the row: bound found by a scan at open). */
    uint64_t vbound;
    int vbound_dirty;
    /* The log clock: the newest entry timestamp applied (store_clock_advance),
     * persisted under CLOCK_KEY with the next batch (clock_dirty). */
    uint64_t clock;
    int clock_dirty;
    /* Scratch buffer for data keys ([slot]['d'][key]); grows, never shrinks. */
    uint8_t *kbuf;
    size_t kcap;
    /* Slots whose changes are logged for a migration: bit per slot,
     * allocated when the first is turned on. */
    uint8_t *clog;
};

struct store_iter {
    rocksdb_t *db;
    const rocksdb_snapshot_t *snap;
    rocksdb_readoptions_t *ropts;
    rocksdb_iterator_t *it;
    uint8_t upper[3]; /* iterate_upper_bound points here: must outlive it */
    int started;
    int done; /* RocksDB asserts on Next() past the end: remember the end */
    uint64_t expires_at; /* of the entry store_iter_next returned last */
};

/* ---- Data rows and the expiry index ----------------------------------------*/

/* A decoded data row: version, expires_at (0: no TTL) and the user value
 * (pointing into the stored bytes). */
typedef struct row {
    uint64_t version;
    uint64_t expires_at;
    const char *val;
    size_t vlen;
} row_t;

/* ---- Apply ----------------------------------------------------------------*/

typedef struct apply_ctx {
    store_t *s;
    rocksdb_writebatch_wi_t *wb;
    uint64_t index;
    uint64_t now_ms;
    uint64_t nop; /* ops executed so far in this entry (the n of versions) */
    char *err;
} apply_ctx_t;

/* ---- Small helpers --------------------------------------------------------*/

__attribute__((format(printf, 2, 3))) static inline void set_err(char *err,
                                                          const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, STORE_ERRLEN, fmt, ap);
    va_end(ap);
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t get_be64(const void *q)
{
    const uint8_t *p = q;
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static inline uint16_t get_be16(const void *q)
{
    const uint8_t *p = q;
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* store.c */
int st_rdb_fail(char *err, char *rerr, const char *what);
int st_data_key(store_t *s, uint16_t slot, const uint8_t *key, size_t klen,
                size_t *len, char *err);
int st_row_decode(const char *v, size_t vl, row_t *r);
int st_row_expired(const row_t *r, uint64_t clock);
size_t st_row_head(uint8_t *h, uint64_t version, uint64_t expires_at);
uint64_t st_add_sat(uint64_t a, uint64_t b);
void st_key_sample(char *out, size_t cap, const uint8_t *key, size_t klen);

/* store_apply.c */
int st_batch_get(apply_ctx_t *c, const void *key, size_t klen, char **val,
                 size_t *vlen);
void st_vbound_raise(store_t *s, uint64_t v);
void st_vbound_row(store_t *s, uint8_t *v);
int st_apply_op(apply_ctx_t *c, const store_op_t *op, store_result_t *res);
void st_applied_value(uint8_t *v, uint64_t index);
int st_write_plain(store_t *s, rocksdb_writebatch_t *wb, uint64_t index,
                   const char *what, char *err);

/* store_session.c */
void st_header_key(uint8_t *k, uint16_t slot, uint64_t client);
void st_result_key(uint8_t *k, uint16_t slot, uint64_t client, uint64_t seq);
int st_decode_results(apply_ctx_t *c, store_request_t *r, const char *val,
                      size_t vlen);
int st_encode_results(apply_ctx_t *c, const store_request_t *r,
                      const uint8_t *rkey);
int st_prune_session(apply_ctx_t *c, uint16_t slot, uint64_t client, uint64_t old_max,
                     uint64_t new_max, uint64_t ack_floor);

/* store_txn.c */
int st_txn_valid(const store_request_t *r);
int st_is_txn_record(const char *val, size_t vlen);
int st_apply_txn(apply_ctx_t *c, store_txn_t *t, int *code);
int st_encode_txn_results(apply_ctx_t *c, const store_txn_t *t, const uint8_t *rkey);
int st_decode_txn_results(apply_ctx_t *c, store_request_t *r, const char *val, size_t vlen);

/* store_ttl.c */
int st_exp_key(uint64_t expires_at, uint16_t slot, const uint8_t *key, size_t klen,
               uint8_t **out, size_t *len);
int st_exp_index(apply_ctx_t *c, int put, uint64_t expires_at, uint16_t slot,
                 const uint8_t *key, size_t klen);

/* store_changelog.c */
int st_changelog_put(apply_ctx_t *c, uint16_t slot, int op, const uint8_t *key, size_t klen,
                     const uint8_t *hdr, size_t hlen, const uint8_t *val, size_t vlen);

#endif
