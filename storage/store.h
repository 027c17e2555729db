/* Storage engine: Shale's state machine data in RocksDB (C API).
 *
 * Owns the RocksDB instance of one node: key encoding (slot prefix + user
 * key, so a slot is one contiguous range), per-key versions, the applied Raft
 * index (written in the same atomic batch as the mutations it covers), the
 * client-session table for exactly-once retries, slot iteration from a
 * snapshot, slot range delete, checkpoints and restore.
 *
 * It never talks to the network or to Raft, never exits or aborts on a
 * RocksDB error (every error is a SHALE_E* code plus a message), and never
 * leaves a batch half-applied. Not thread-safe: one owner thread per store.
 *
 * Layout of RocksDB keys (big-endian integers):
 *   [slot:2]['d'][user key]                 data:  [version:8][value]
 *   [slot:2]['s'][client_id:8][seq:8]       session result (see below)
 *   [slot:2]['c'][client_id:8]              session header: [max_seq:8][last_ms:8]
 *   [slot:2]['x'][index:8][n:4]             changelog of a migrating slot:
 *                                           one record (see Slot migration)
 *   [0xFF 0xFF]['e'][expires_at:8][slot:2][key]
 *                                           expiry index (empty value)
 *   [0xFF 0xFF]['m'][name]                  node metadata (applied index...)
 * A data row with a TTL is [version | 1<<63 :8][expires_at:8][value]; a row
 * without one keeps the old form [version:8][value] (see "Expiry" below).
 * Slot numbers are < STORE_MAX_SLOTS, so the metadata prefix is never a slot.
 *
 * Slots are the caller's (shale_key_slot, proto/keyhash.h): the store puts a
 * row where it is told. It records, in a metadata row, the key-hash version
 * its rows were placed with (SHALE_KEYHASH_VERSION), and store_open refuses
 * a store whose rows a build with another version would not find (see
 * store_open).
 */
#ifndef SHALE_STORE_H
#define SHALE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "shale_errors.h"

#define STORE_MAX_SLOTS 65535u
#define STORE_ERRLEN 256
/* How many seqs behind a client's highest seq the session table remembers
 * results for; a retry older than that gets SHALE_ESESSION. */
#define STORE_SESSION_WINDOW 4096u

typedef struct store store_t;

typedef struct store_options {
    size_t block_cache_bytes; /* 0: 64 MiB */
    size_t write_buffer_bytes; /* 0: 64 MiB */
    int disable_compression;  /* 1: no compression; default zstd */
    int sync_writes;          /* 1: fsync the WAL on every apply */
    int create_if_missing;    /* 1: create the directory's DB */
} store_options_t;

/* Fill opts with defaults (zstd on, 64 MiB cache, create_if_missing=1). */
void store_options_default(store_options_t *opts);

/* Open (creating when allowed) the store in dir. On error returns a SHALE_E*
 * code and writes a message into err (STORE_ERRLEN bytes). *out is owned by
 * the caller and released with store_close.
 *
 * The key-hash check (docs/storage.md, "Key-hash version"): a store that
 * records SHALE_KEYHASH_VERSION opens at once. A store that records none —
 * a new one, or one written by a build that hashed whole keys (v1) — gets
 * one scan of its data rows: with no key holding a hash tag every row is
 * where this build looks for it, the marker is written and the open goes
 * on; with such keys the open fails with SHALE_ECORRUPT and a message
 * giving their number, the first of them and what to do (nothing is
 * written). A store recording a later version than this build's is refused
 * (SHALE_ECORRUPT) too. */
int store_open(const char *dir, const store_options_t *opts, store_t **out,
               char *err);
void store_close(store_t *s);

/* Highest Raft index whose batch is in the store (0 for a new store). */
uint64_t store_applied_index(const store_t *s);

/* A value read from the store. value is malloc'd (caller frees with free());
 * NULL when not found. */
typedef struct store_value {
    int found;
    uint64_t version;
    uint8_t *value;
    size_t len;
    uint64_t expires_at; /* the key's expiry on the log clock (ms); 0: no TTL */
} store_value_t;

/* Point read of the latest committed state. A key whose TTL has run out at
 * the log clock (store_clock) is absent (found 0), whether or not its row
 * was deleted yet. */
int store_get(store_t *s, uint16_t slot, const uint8_t *key, size_t klen,
              store_value_t *out, char *err);

/* ---- Mutations ------------------------------------------------------------*/

typedef enum store_op_type {
    STORE_OP_PUT = 1,
    STORE_OP_DEL = 2,
    STORE_OP_CAS = 3,
} store_op_type_t;

typedef enum store_cas_kind {
    STORE_CAS_ABSENT = 1,  /* key must not exist */
    STORE_CAS_VERSION = 2, /* key's version must equal expect_version */
    STORE_CAS_VALUE = 3,   /* key's value must equal expect/expect_len */
} store_cas_kind_t;

/* One key mutation. Pointers are borrowed for the duration of the call. */
typedef struct store_op {
    store_op_type_t type;
    uint16_t slot;
    const uint8_t *key;
    size_t klen;
    const uint8_t *value; /* PUT, CAS (new value) */
    size_t vlen;
    int cas_delete;       /* CAS: delete on match instead of writing value */
    store_cas_kind_t cas_kind;
    uint64_t expect_version;
    const uint8_t *expect;
    size_t expect_len;
    uint64_t ttl_ms; /* PUT: time to live; expires_at = log clock + ttl_ms.
                        0: no TTL (clears a previous one, as a CAS write
                        and a TXN put always do) */
} store_op_t;

/* Outcome of one op. For CAS_FAILED, existed/version describe the key as
 * found (the current value itself is not returned; read it). */
typedef struct store_result {
    int code;          /* SHALE_OK, SHALE_ECASFAILED */
    uint64_t version;  /* PUT/CAS: new version; DEL and CAS delete: version
                          deleted (0 if absent); CAS_FAILED: current (0 if
                          absent) */
    int existed;       /* DEL and CAS: whether the key existed before the
                          op. Always 0 for a PUT: a PUT is blind (it reads
                          the old version only when the version rule needs
                          it, see store_apply) and reports no existence. */
} store_result_t;

/* ---- Transactions (etcd's Txn shape, within one slot) -----------------------
 *
 * A txn is evaluated at apply, against the state the batch has built so far
 * (earlier requests of the entry included): every compare is checked; if
 * all hold the success ops run, else the failure ops; each op sees the
 * earlier ops of the txn. Puts and deletes go through the same path as
 * STORE_OP_PUT/DEL (versions, the changelog of a migrating slot), so
 * several puts of one txn get distinct, growing versions. Every key is in
 * txn->slot (the caller checks that the keys hash there). */

typedef enum store_txn_target {
    STORE_TXN_VALUE = 1,   /* the key's value; an absent key never matches */
    STORE_TXN_VERSION = 2, /* the key's version; absent: 0 */
    STORE_TXN_EXISTS = 3,  /* whether the key exists (EQUAL/NOT_EQUAL only) */
} store_txn_target_t;

typedef enum store_txn_cmp {
    STORE_TXN_EQUAL = 1,
    STORE_TXN_NOT_EQUAL = 2,
    STORE_TXN_LESS = 3,    /* VALUE: bytewise, a proper prefix is less */
    STORE_TXN_GREATER = 4,
} store_txn_cmp_t;

typedef struct store_txn_compare {
    const uint8_t *key;
    size_t klen;
    store_txn_target_t target;
    store_txn_cmp_t cmp;
    const uint8_t *value; /* VALUE */
    size_t vlen;
    uint64_t version;     /* VERSION */
    int exists;           /* EXISTS */
} store_txn_compare_t;

typedef enum store_txn_op_type {
    STORE_TXN_PUT = 1,
    STORE_TXN_DEL = 2,
    STORE_TXN_GET = 3,
    /* Read-modify-write at apply (Redis INCRBY / APPEND). The result is
     * found = 1, the new version and the new value; the key's TTL is kept.
     * ADD reads the value as Redis does (string2ll: optional '-', no '+',
     * no leading zeros or spaces, at most 20 bytes; absent = 0); a value
     * that is not such an integer, or a sum outside int64, fails the whole
     * txn (code SHALE_EINVAL, op_error says which; nothing applied). */
    STORE_TXN_ADD = 4,
    STORE_TXN_APPEND = 5,
    /* The key's TTL set to ttl_ms (0: removed), value kept; result found =
     * existed, had_ttl. An absent key is not created; removing a TTL the
     * key does not have writes nothing. */
    STORE_TXN_EXPIRE = 6,
} store_txn_op_type_t;

typedef struct store_txn_op {
    store_txn_op_type_t type;
    const uint8_t *key;
    size_t klen;
    const uint8_t *value; /* PUT, APPEND */
    size_t vlen;
    int64_t delta; /* ADD */
    uint64_t ttl_ms; /* PUT: its TTL (0: none); EXPIRE: the new TTL (0: none) */
    int keep_ttl;    /* PUT: keep the key's TTL */
} store_txn_op_t;

/* Outcome of one op of the branch that ran. */
typedef struct store_txn_result {
    store_txn_op_type_t type;
    int found;        /* GET: found; DEL: existed */
    uint64_t version; /* PUT: new; DEL: deleted (0 if absent); GET: current */
    uint8_t *value;   /* GET when found: malloc'd (store_txn_clear frees) */
    size_t vlen;
    int had_ttl; /* EXPIRE: the key had a TTL */
} store_txn_result_t;

typedef struct store_txn {
    uint16_t slot;
    size_t ncompares;
    const store_txn_compare_t *compares;
    size_t nsuccess;
    const store_txn_op_t *success;
    size_t nfailure;
    const store_txn_op_t *failure;
    /* Filled by store_apply (also for a duplicate, from the session
     * record): which branch ran and its results (malloc'd). */
    int succeeded;
    size_t nresults;
    store_txn_result_t *results;
    int op_error; /* code SHALE_EINVAL from an op: STORE_TXN_ENOTINT / ENOVERFLOW */
} store_txn_t;

#define STORE_TXN_ENOTINT 1   /* ADD: "value is not an integer or out of range" */
#define STORE_TXN_EOVERFLOW 2 /* ADD: "increment or decrement would overflow" */
#define STORE_TXN_ETOOBIG 3   /* APPEND: the value would exceed STORE_TXN_MAX_VALUE */
#define STORE_TXN_MAX_VALUE (64u << 20)

/* Free the results store_apply put in txn (safe on a txn without any). */
void store_txn_clear(store_txn_t *txn);

/* A client request: 1..n ops sharing one (client_id, seq). client_id 0 means
 * no session (not deduplicated). The session record is kept under the slot
 * of ops[0]. After store_apply, results[i] holds each op's outcome and
 * duplicate says the request had already been applied (results are then the
 * first outcome, read back from the session table). code is SHALE_OK,
 * SHALE_ESESSION (seq too old to know; nothing applied) or SHALE_EINVAL
 * (malformed: nops 0, NULL ops/results, slot >= STORE_MAX_SLOTS, unknown
 * type or cas_kind, NULL pointer with a non-zero length; or a (client_id,
 * seq) already recorded with another op count, then duplicate is 1). On
 * SHALE_EINVAL/SHALE_ESESSION nothing of the request is applied or recorded
 * and results are not written; the other requests of the entry still apply,
 * so one bad request cannot stall the log. */
typedef struct store_request {
    uint64_t client_id;
    uint64_t seq;
    uint64_t ack_floor; /* seqs below it may be forgotten */
    size_t nops;
    const store_op_t *ops;
    store_result_t *results; /* nops entries, filled by store_apply */
    int duplicate;
    int code;
    /* A transaction instead of ops (then nops is 0, ops/results unused):
     * the session record is kept under txn->slot and holds the whole
     * outcome (branch, versions, get values), so a retry is answered with
     * the first one. A txn whose gets would return more than
     * STORE_TXN_MAX_RESULT_BYTES of values gets code SHALE_ETOOLARGE with
     * nothing applied or recorded; a txn with no op and no compare, or a
     * malformed one, SHALE_EINVAL. */
    store_txn_t *txn;
} store_request_t;

#define STORE_TXN_MAX_RESULT_BYTES (4u << 20)

/* Apply one Raft entry: every request in order, in ONE atomic RocksDB write
 * batch that also records `index` as the applied index. Later ops in the
 * batch see earlier ones (a PUT then CAS on the same key works).
 *  - index <= store_applied_index(): nothing is written, returns SHALE_OK
 *    and sets *skipped = 1 (re-apply after restart is a no-op).
 *  - now_ms: the entry's timestamp (the leader's clock), stamped on sessions.
 *  - Versions: a write's new version is max(old + 1, index << 16 | n) where n
 *    counts ops within the entry (1, 2, ... over the ops executed, capped at
 *    0xFFFF), so versions only grow per key. A PUT reads the old version
 *    only when the store cannot prove it is below the floor: the store keeps
 *    a persisted upper bound of the versions it did not give by the floor
 *    (imports through store_apply_records and the old + 1 term), and below
 *    the n cap a floor above that bound is the answer. Anything that puts
 *    data rows into a store must go through a function that raises the bound
 *    (store_apply, store_apply_records; store_restore copies it with the
 *    files).
 * On a RocksDB error returns SHALE_ESTORAGE with a message (SHALE_ECORRUPT
 * for a malformed stored record, SHALE_ENOMEM): nothing of the batch is
 * written, the applied index does not move, and results are meaningless. */
int store_apply(store_t *s, uint64_t index, uint64_t now_ms,
                store_request_t *reqs, size_t nreqs, int *skipped, char *err);

/* ---- Expiry (docs/storage.md, "Expiry") ----------------------------------
 *
 * The log clock is the newest entry timestamp (the leader's clock carried in
 * the log) this store has applied: store_apply and store_apply_expire move
 * it to their now_ms, and the owner moves it for every other entry with
 * store_clock_advance. It only grows, is persisted with the next batch (the
 * row travels in checkpoints) and is therefore the same on every member at
 * the same applied index. A row whose expires_at <= the log clock is absent
 * for every read (store_get, store_scan, CAS, txn compares and gets), on
 * every member alike, before and after its row is deleted. */

/* Move the log clock to ms if that is later (in memory; written with the
 * next batch of any kind). */
void store_clock_advance(store_t *s, uint64_t ms);
uint64_t store_clock(const store_t *s);

/* A key the expiry index lists: its slot, key and the expires_at indexed. */
typedef struct store_expire_key {
    uint16_t slot;
    uint8_t *key; /* malloc'd by store_expire_due; borrowed by store_apply_expire */
    size_t klen;
    uint64_t expires_at;
} store_expire_key_t;

/* A key an expiry entry deleted: slot, key (malloc'd) and the version it had. */
typedef struct store_expired {
    uint16_t slot;
    uint8_t *key;
    size_t klen;
    uint64_t version;
} store_expired_t;

/* Leader: up to max entries of the expiry index with expires_at <= now_ms,
 * oldest first (one bounded range scan). *out (NULL when none) is released
 * with store_expire_keys_free(*out, *n). The index may list a key whose row
 * has changed since (a blind PUT leaves the old entry); store_apply_expire
 * then only drops the entry. */
int store_expire_due(store_t *s, uint64_t now_ms, size_t max, store_expire_key_t **out, size_t *n,
                     char *err);
void store_expire_keys_free(store_expire_key_t *keys, size_t n);

/* Apply an expiry entry at `index` (same no-op rule as store_apply): move
 * the log clock to now_ms, then for each listed key delete its index entry
 * and, when the row still carries that expires_at and it is due at the log
 * clock, the row (logged like a delete in a migrating slot). *deleted (may
 * be NULL; release with store_expired_free) gets the rows deleted, in list
 * order, for watchers (NULL when none); a replay gets none. */
int store_apply_expire(store_t *s, uint64_t index, uint64_t now_ms, const store_expire_key_t *keys,
                       size_t n, store_expired_t **deleted, size_t *ndeleted, char *err);
void store_expired_free(store_expired_t *d, size_t n);

/* Record `index` as applied with no data change (e.g. Raft no-op entries,
 * configuration changes). Same no-op rule as store_apply. */
int store_apply_noop(store_t *s, uint64_t index, char *err);

/* Named metadata (replicated group state such as the member table), written
 * atomically with the applied index like any mutation; index 0 writes
 * without touching it. val NULL deletes. Names are 1..64 bytes. */
int store_apply_meta(store_t *s, uint64_t index, const char *name,
                     const uint8_t *val, size_t len, char *err);
/* *val is malloc'd (caller frees); SHALE_ENOTFOUND when absent. */
int store_get_meta(store_t *s, const char *name, uint8_t **val, size_t *len,
                   char *err);

/* Delete the session state (headers and results) of every client whose last
 * activity is before cutoff_ms, in one batch that records `index`. *expired
 * (may be NULL) gets the number of clients dropped. Same no-op rule as
 * store_apply (index <= store_applied_index(): nothing done, *expired = 0). */
int store_expire_sessions(store_t *s, uint64_t index, uint64_t cutoff_ms,
                          uint64_t *expired, char *err);

/* ---- Slots -----------------------------------------------------------------*/

typedef struct store_iter store_iter_t;

/* Iterate slot's user data from a consistent RocksDB snapshot taken now:
 * writes after this call are not seen. Release with store_iter_close. */
int store_iter_slot(store_t *s, uint16_t slot, store_iter_t **out, char *err);

/* Next key in order. Returns 1 with the entry, 0 at the end (and on every
 * later call), or a negative code. key/value point into the iterator: valid
 * until the next call. version may be NULL. Close every iterator before
 * store_close. */
int store_iter_next(store_iter_t *it, const uint8_t **key, size_t *klen,
                    const uint8_t **value, size_t *vlen, uint64_t *version);
/* The expiry (log clock ms; 0: no TTL) of the entry store_iter_next
 * returned last. Rows whose TTL ran out but are not deleted yet are still
 * returned by store_iter_next: compare with store_clock. */
uint64_t store_iter_expires_at(const store_iter_t *it);
void store_iter_close(store_iter_t *it);

/* One page of an ordered scan of slot's user data (docs/protocol.md,
 * "Scans"), read from one RocksDB iterator (a consistent view of the latest
 * applied state): keys > after (after NULL/alen 0: from the slot's first
 * key) that begin with prefix (plen 0: any), in bytewise key order, at most
 * `limit` of them and, past the first, at most max_bytes of keys and values
 * together. keys_only: values are not copied (vlen 0, value NULL).
 * page->more: the slot may hold matching keys after the last item (a page
 * that stopped on limit or max_bytes with another match behind it).
 * Free with store_scan_free. */
typedef struct store_scan_item {
    uint8_t *key;
    size_t klen;
    uint8_t *value;
    size_t vlen;
    uint64_t version;
} store_scan_item_t;

typedef struct store_scan_page {
    store_scan_item_t *items;
    size_t n;
    int more;
} store_scan_page_t;

int store_scan(store_t *s, uint16_t slot, const uint8_t *after, size_t alen,
               const uint8_t *prefix, size_t plen, size_t limit, size_t max_bytes,
               int keys_only, store_scan_page_t *page, char *err);
void store_scan_free(store_scan_page_t *page);

/* Delete everything of slot (data and sessions) with a range delete, in one
 * batch that records `index` (0: do not touch the applied index). A non-zero
 * index <= store_applied_index() is a no-op, as in store_apply. The expiry
 * index entries of the slot's keys stay: each is dropped when its time comes
 * (store_apply_expire then finds no row with its expires_at). */
int store_delete_slot(store_t *s, uint16_t slot, uint64_t index, char *err);

/* Approximate number of keys (RocksDB estimate). */
uint64_t store_estimate_keys(store_t *s);
/* An integer RocksDB property (e.g. "rocksdb.total-sst-files-size"): 0 with
 * *out, or -1 when RocksDB does not know it. For metrics. */
int store_property(store_t *s, const char *name, uint64_t *out);
/* Block cache bytes in use and its capacity (0, 0 without a cache). */
void store_block_cache(store_t *s, uint64_t *usage, uint64_t *capacity);

/* ---- Slot migration (docs/resharding.md) -----------------------------------
 *
 * A "record" is a raw store entry of one slot, without the slot prefix:
 *   [op:1][klen:4 BE][key][vlen:4 BE][value]     op STORE_REC_PUT / _DEL
 * key starts with its kind byte ('d' data, 'c'/'s' sessions); the value is
 * stored as is (data values begin with their 8-byte version; a row with a
 * TTL has the version's top bit set and its 8-byte expires_at next, so the
 * TTL travels with the row; an old-format row imports without one). A
 * record batch is records back to back. store_apply_records indexes the
 * imported rows that carry a TTL. */

#define STORE_REC_PUT 1
#define STORE_REC_DEL 2

typedef enum store_scan_kind {
    STORE_SCAN_DATA = 1,     /* the slot's user data, key order */
    STORE_SCAN_LOG = 2,      /* the slot's changelog, apply order */
    STORE_SCAN_SESSIONS = 3, /* the slot's session headers and results */
} store_scan_kind_t;

/* A growing byte buffer (data is malloc'd; free(buf.data) when done). */
typedef struct store_buf {
    uint8_t *data;
    size_t len, cap;
} store_buf_t;

/* Turn the changelog of slot on or off. While on, every data change the
 * store applies to the slot (store_apply) also writes a record of the
 * change (the key's new stored value, or its deletion) under
 * [slot]['x'][index][n] in the same batch. In memory only: the owner sets
 * it from replicated state, at open and at apply, identically on every
 * member. */
int store_changelog_set(store_t *s, uint16_t slot, int on);
int store_changelog_on(const store_t *s, uint16_t slot);

/* Append to out the records of kind in slot that follow the cursor `after`
 * (alen 0: from the start), from a consistent view taken now, until about
 * max_bytes were added (at least one record when any is left). For
 * STORE_SCAN_LOG the records are the changelog's, in apply order. *count
 * gets the number of records, *next (malloc'd, free it; NULL when nothing
 * was added) the cursor to pass next time, *done whether the end was
 * reached. */
int store_scan_records(store_t *s, uint16_t slot, store_scan_kind_t kind, const uint8_t *after,
                       size_t alen, size_t max_bytes, store_buf_t *out, uint32_t *count,
                       uint8_t **next, size_t *nlen, int *done, char *err);

/* Apply a record batch to slot in one atomic batch that records index (same
 * no-op rule as store_apply). Only kinds 'd', 'c' and 's' are accepted: a
 * malformed batch is SHALE_EINVAL with nothing written. *count (may be
 * NULL) gets the number of records. */
int store_apply_records(store_t *s, uint64_t index, uint16_t slot, const uint8_t *recs,
                        size_t len, uint32_t *count, char *err);

/* Check that every data record ('d') of a record batch belongs to slot by
 * this build's key-hash function: shale_key_slot(user key, nslots) == slot.
 * SHALE_OK; SHALE_EINVAL with a message naming the first key that does not
 * (a batch exported by a build that placed keys with another key-hash
 * version) or a malformed batch. Session records carry no user key and are
 * not checked. Reads only recs. */
int store_records_check_slot(const uint8_t *recs, size_t len, uint16_t slot, uint32_t nslots,
                             char *err);

/* 1 when a record batch holds a data put whose row carries a TTL (a build
 * without TTL would misread it), else 0 (also for a malformed batch, which
 * store_apply_records refuses anyway). Reads only recs. */
int store_records_have_ttl(const uint8_t *recs, size_t len);

/* Delete slot's changelog (range delete; does not touch the applied index). */
int store_delete_changelog(store_t *s, uint16_t slot, char *err);

/* ---- Durability, checkpoints -------------------------------------------------*/

/* Make everything applied so far durable (fsync the WAL). */
int store_sync(store_t *s, char *err);

/* Write a consistent checkpoint of the whole store into dir (must not
 * exist). Hard links where possible. */
int store_checkpoint(store_t *s, const char *dir, char *err);

/* Replace the DB in db_dir by a copy of the checkpoint in ckpt_dir. The store
 * at db_dir must be closed. db_dir is created if missing (not its parents).
 * SHALE_EINVAL, with db_dir untouched, when ckpt_dir has no CURRENT file or
 * one directory is inside the other. CURRENT is removed first and copied
 * last, so a restore cut short never opens as a half-copied DB. */
int store_restore(const char *ckpt_dir, const char *db_dir, char *err);

/* ---- Views (the consistency check, storage/store_check.c) -------------------------
 *
 * A view pins a RocksDB snapshot of the whole store at the moment it is
 * opened (on the owner thread, e.g. right after an entry was applied) and
 * reads the raw rows of every slot ([slot:2][kind][...] keys, values as
 * stored; metadata and the expiry index excluded), in key order. Unlike the
 * rest of the store a view may be read and closed from ANY one thread
 * (RocksDB reads from a snapshot are thread-safe) while the owner keeps
 * applying; it must be closed before store_close. */
typedef struct store_view store_view_t;

int store_view_open(store_t *s, store_view_t **out, char *err);
/* The applied index when the view was opened. */
uint64_t store_view_applied(const store_view_t *v);
/* Next raw row: 1 with key/value (valid until the next call), 0 at the
 * end, or a negative code. */
int store_view_next(store_view_t *v, const uint8_t **key, size_t *klen, const uint8_t **value,
                    size_t *vlen);
void store_view_close(store_view_t *v);

#endif
