/* Raft set-up for shaled: raft_uv (disk + TCP transport) with the settings
 * libraft 0.15 needs on this platform, bootstrap, start and close.
 *
 * Rules (FACTS.md):
 *  - auto-recovery off: on 0.15 it renamed a readable segment to corrupt-*
 *    and came back with an empty log; open segments, which the flag does
 *    not cover, are checked first (raft_segcheck.c);
 *  - large segments (default 64 MiB): every rollover stalls the loop;
 *  - raft_close() only from a timer, never inside a Raft callback; the io
 *    and transport are released after uv_run() returns.
 * This file never applies entries (raft_fsm.c) or answers clients. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "raft_segcheck.h"
#include "server.h"
#include "snapshot_xfer.h"

int raft_node_is_leader(shaled_t *s)
{
    return s->raft_inited && !s->raft_closed && raft_state(&s->raft) == RAFT_LEADER;
}

int raft_node_start(shaled_t *s, const Shale__MemberTable *seed, char *err,
                    size_t errlen)
{
    int rv;
    if (mkdir(s->raft_dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", s->raft_dir, strerror(errno));
        return -1;
    }
    /* Auto-recovery off (below) does not cover open segments: raft_uv 0.15
     * truncates one at its first bad batch whatever the flag says. Damage
     * before the last batch must stop the node, so the open segments are
     * checked before raft_start lets raft_uv load them (raft_segcheck.c). */
    if (rsc_check_dir(s->raft_dir, err, errlen) != RSC_OK)
        return -1;
    rv = raft_uv_tcp_init(&s->transport, s->loop);
    if (rv != 0) {
        snprintf(err, errlen, "raft transport: %s", raft_strerror(rv));
        return -1;
    }
    if (raft_tcp_wrap(s) != 0) {
        snprintf(err, errlen, "raft transport: out of memory");
        raft_uv_tcp_close(&s->transport);
        return -1;
    }
    rv = raft_uv_init(&s->io, s->loop, s->raft_dir, &s->transport);
    if (rv != 0) {
        snprintf(err, errlen, "raft storage in %s: %s", s->raft_dir,
                 s->io.errmsg[0] ? s->io.errmsg : raft_strerror(rv));
        raft_uv_tcp_close(&s->transport);
        raft_tcp_unwrap(s);
        return -1;
    }
    raft_uv_set_auto_recovery(&s->io, false);
    raft_disk_wrap(s);
    raft_uv_set_segment_size(&s->io, (size_t)s->cfg.segment_mb << 20);
    raft_fsm_init(s);
    rv = raft_init(&s->raft, &s->io, &s->fsm, s->cfg.id, s->cfg.raft);
    if (rv != 0) {
        snprintf(err, errlen, "raft storage in %s: %s (%s)", s->raft_dir,
                 raft_strerror(rv), raft_errmsg(&s->raft));
        raft_uv_close(&s->io);
        raft_uv_tcp_close(&s->transport);
        raft_tcp_unwrap(s);
        return -1;
    }
    s->raft_inited = 1;
    raft_set_election_timeout(&s->raft, (unsigned)s->cfg.election_timeout_ms);
    raft_set_heartbeat_timeout(&s->raft, (unsigned)s->cfg.heartbeat_ms);
    raft_set_snapshot_threshold(&s->raft, (unsigned)s->cfg.snapshot_threshold);
    raft_set_snapshot_trailing(&s->raft, (unsigned)s->cfg.snapshot_trailing);
    /* libraft 0.15 drops an InstallSnapshot that arrives while the follower
     * takes a snapshot of its own, sends no answer, and the leader waits
     * install_snapshot_timeout (default 30 s) before it sends another: a
     * follower catching up stalls for 30 s. 5 election timeouts (at least
     * 2 s) bounds the stall; a real transfer is not cut by it, since each
     * chunk of ours travels outside libraft (snapshot_fetch.c) and the
     * message libraft sends is a small descriptor. docs/raft-safety.md. */
    unsigned ist = 5u * (unsigned)s->cfg.election_timeout_ms;
    raft_set_install_snapshot_timeout(&s->raft, ist < 2000u ? 2000u : ist);
    /* Pre-vote (Raft thesis §9.6): a node cut off by a partition, or a
     * removed voter that never learned of its removal, asks for pre-votes
     * first and only starts a real election (bumping the term and deposing a
     * healthy leader) if a majority would vote for it. */
    raft_set_pre_vote(&s->raft, true);
    /* The safety guard wraps the io (over raft_disk's wrappers) before
     * raft_start loads the log: docs/raft-safety.md. */
    rv = rg_init(&s->guard, &s->raft, &s->io);
    if (rv != 0) {
        snprintf(err, errlen, "raft guard: %s", raft_strerror(rv));
        return -1;
    }

    /* A new data directory bootstraps the founding voters (every founding
     * member is given the same list; raft_bootstrap is a no-op on a log
     * that already has a configuration). A joining node (seed NULL)
     * bootstraps nothing and waits for the leader to add it. */
    if (seed != NULL) {
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        rv = 0;
        for (size_t i = 0; i < seed->n_members && rv == 0; i++)
            rv = raft_configuration_add(&conf, seed->members[i]->id,
                                        seed->members[i]->raft_addr, RAFT_VOTER);
        if (rv == 0)
            rv = raft_bootstrap(&s->raft, &conf);
        raft_configuration_close(&conf);
        if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
            snprintf(err, errlen, "raft bootstrap: %s", raft_strerror(rv));
            return -1;
        }
    }
    rv = raft_start(&s->raft);
    if (rv != 0) {
        snprintf(err, errlen, "raft start: %s (%s)", raft_strerror(rv),
                 s->io.errmsg[0] ? s->io.errmsg : raft_errmsg(&s->raft));
        return -1;
    }
    /* Storage can never be ahead of the log: entries up to the applied index
     * were committed, and a committed entry is never removed. If it is, the
     * log lost committed entries (the libraft 0.15 failure FACTS.md
     * describes) and new entries would reuse applied indexes and be skipped
     * as replays: refuse to run rather than drop writes silently. One
     * exception: a store just installed from a checkpoint ahead of the
     * snapshot that asked for it (raft_fsm.c fsm_restore). */
    uint64_t applied = store_applied_index(s->store);
    if (raft_last_index(&s->raft) < applied &&
        !snapx_store_ahead_ok(s, raft_last_index(&s->raft))) {
        snprintf(err, errlen,
                 "raft log ends at index %llu but storage has applied %llu: "
                 "the raft log in %s lost committed entries; refusing to start",
                 (unsigned long long)raft_last_index(&s->raft),
                 (unsigned long long)applied, s->raft_dir);
        return -1;
    }
    log_info("raft started", " id=%llu raft=%s last_index=%llu",
             (unsigned long long)s->cfg.id, s->cfg.raft,
             (unsigned long long)raft_last_index(&s->raft));
    return 0;
}

void raft_node_close(shaled_t *s, raft_close_cb cb)
{
    s->raft_closed = 1;
    raft_close(&s->raft, cb);
}

void raft_node_release(shaled_t *s)
{
    if (!s->raft_inited)
        return;
    raft_uv_close(&s->io);
    raft_uv_tcp_close(&s->transport);
    raft_tcp_unwrap(s);
    s->raft_inited = 0;
}
