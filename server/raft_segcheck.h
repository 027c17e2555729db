/* Raft segment check: refuses a raft_uv directory whose open segments lost
 * acknowledged entries to media damage, before libraft 0.15 loads it.
 *
 * Why: raft_uv 0.15 stops loading an open segment (open-N) at its first
 * batch that does not decode and renames what it read to a closed segment,
 * whatever raft_uv_set_auto_recovery says. For a torn last write after a
 * crash that is right; for a damaged batch followed by intact ones it
 * silently drops acknowledged entries (docs/raft-safety.md, section 3).
 *
 * What this file owns: read-only decoding of raft_uv's on-disk segment
 * format (format version 1; checksums, batch headers, entry sizes) and the
 * rule that tells a torn last batch from damage before it.
 *
 * What it must never do: write, rename or remove anything in the directory
 * (raft_uv owns it: the check only reads, before raft_start); exit or abort
 * on any input (return codes and a message buffer only); judge closed
 * segments (raft_uv already refuses a bad one with auto-recovery off). */
#ifndef SHALE_RAFT_SEGCHECK_H
#define SHALE_RAFT_SEGCHECK_H

#include <stddef.h>
#include <stdint.h>

#define RSC_OK 0
#define RSC_EIO (-1)      /* the directory or a file could not be read */
#define RSC_ECORRUPT (-2) /* an open segment is damaged before its last batch, or unreadable */

/* What one open segment holds, as far as it decodes. */
typedef struct rsc_segment {
    uint64_t format;     /* format version in its first 8 bytes */
    unsigned n_batches;  /* intact batches from the start */
    uint64_t n_entries;  /* entries in them */
    size_t stop;         /* byte offset where decoding stopped */
    int torn;            /* stopped on a batch that does not decode (not zeros or end of file) */
    const char *why;     /* why it stopped (static string) */
    int later_intact;    /* an intact batch exists after the stop */
    size_t later_offset; /* ... at this byte offset */
} rsc_segment_t;

/* Decode the open segment held in buf[0..len): its intact batches from the
 * start, where and why decoding stopped, and whether any intact batch lies
 * at an 8-byte aligned offset after that point. Never reads outside buf.
 * Returns RSC_OK, or RSC_ECORRUPT with out->why set when the file is not a
 * segment at all (shorter than its format header, unknown format version). */
int rsc_scan(const uint8_t *buf, size_t len, rsc_segment_t *out);

/* Check every open segment of the raft_uv directory @dir, oldest first.
 * Returns RSC_OK when each one is intact up to its end or to a torn last
 * batch; otherwise RSC_ECORRUPT or RSC_EIO with a message in msg naming the
 * file, the byte offset, the first Raft index that would be lost and how to
 * recover. The first index of an open segment is worked out like raft_uv
 * does: after the last closed segment (NNNN-MMMM), or after the newest
 * snapshot when there is none, plus the entries of the older open
 * segments. Reads files only. */
int rsc_check_dir(const char *dir, char *msg, size_t msglen);

/* The recovery step named in every refusal (docs/operations.md). */
#define RSC_RECOVERY                                                                              \
    "recover by wiping this node's data and re-joining it from its peers: run 'shalectl replica "  \
    "rejoin GROUP ID', then wipe the data directory and start the node with --initial-cluster "    \
    "none (docs/operations.md, \"A damaged Raft log\")"

#endif
