/* Replica consistency check: per-slot checksums of a store's replicated rows.
 *
 * Owns the checksum of one member's state (docs/operations.md, "Consistency
 * check"): for every slot that holds any row, a 64-bit checksum of its data
 * rows and one of its session rows, taken in key order from a store view
 * (store_view_open: a RocksDB snapshot pinned at one applied index), so two
 * members that applied the same log prefix compute the same numbers.
 *
 * What is summed, per slot, in key order:
 *  - data rows ('d'): the user key and the stored value as is — the 8-byte
 *    version, the TTL flag and expires_at when the row has one, the value.
 *    A row whose TTL ran out but that no EXPIRE entry deleted yet is summed
 *    too: its deletion goes through the log, so every member holds it
 *    until the same index.
 *  - session rows ('c' headers, 's' results): exactly-once state, written by
 *    apply only, so it must be identical as well; summed apart so a report
 *    can say which kind differs.
 * Not summed: the changelog of a migrating slot ('x': migration
 * bookkeeping, not data the slot serves; left out to keep the check to
 * what clients read and retry against), the expiry index (derived from
 * the data rows) and node metadata (applied index, node-local markers).
 *
 * Never touches the network or Raft; check_compute may run on any thread
 * (it only reads the view) and never writes the store. */
#ifndef SHALE_STORE_CHECK_H
#define SHALE_STORE_CHECK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct check_slot {
    uint16_t slot;
    uint64_t data_sum;  /* 0 with no data row */
    uint64_t data_keys; /* data rows */
    uint64_t sess_sum;  /* 0 with no session row */
    uint64_t sess_rows;
} check_slot_t;

/* Slots with at least one summed row, in slot order. slots is malloc'd:
 * check_result_free. */
typedef struct check_result {
    check_slot_t *slots;
    size_t n, cap;
    uint64_t rows;  /* rows summed */
    uint64_t bytes; /* bytes of keys and values summed */
} check_result_t;

/* Add one raw store row (key [slot:2][kind][...], value as stored). Rows
 * must come in key order (as a view gives them); rows of kinds not summed
 * are skipped. 0, SHALE_ENOMEM, or SHALE_EINVAL for a row out of order. */
int check_add_row(check_result_t *r, const uint8_t *key, size_t klen, const uint8_t *val,
                  size_t vlen);

/* Sum every row of v into out (zeroed first), reading at most
 * rate_bytes_per_s (0: unlimited) and stopping with SHALE_EUNAVAILABLE as
 * soon as *cancel is set (cancel may be NULL). On error out is freed and a
 * message is in err (STORE_ERRLEN). Does not close v. */
int check_compute(store_view_t *v, uint64_t rate_bytes_per_s, atomic_int *cancel,
                  check_result_t *out, char *err);

/* The entry of slot in r, or NULL when r holds no row of it. */
const check_slot_t *check_find(const check_result_t *r, uint16_t slot);

void check_result_free(check_result_t *r);

#endif
