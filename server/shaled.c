/* shaled: one replica of a Shale shard group.
 *
 * main() wires the modules together on one libuv loop: configuration,
 * storage (RocksDB), Raft (raft_uv), the client listener, the end-of-turn
 * flush (proposals, read barriers, output), and signals. Shutdown on
 * SIGTERM/SIGINT: stop accepting, fail queued work, close Raft from a timer,
 * close storage, then release raft_uv after the loop ends. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "log.h"
#include "raft_heap.h"
#include "sd_notify.h"
#include "server.h"
#include "snapshot_xfer.h"

uint64_t shaled_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t shaled_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void on_flush(uv_check_t *h)
{
    shaled_t *s = h->data;
    /* First: barrier callbacks, the new leader's no-op, held TimeoutNow. */
    if (s->raft_inited && !s->raft_closed) {
        int rv = rg_poll(&s->guard);
        if (rv != 0 && rv != RAFT_NOTLEADER && rv != RAFT_LEADERSHIPLOST)
            log_warn("raft guard: no-op barrier refused", " err=\"%s\"", raft_strerror(rv));
    }
    conn_resume_all(s);
    admin_poll(s);
    meta_flush(s);
    own_flush(s);
    mig_flush(s);
    propose_flush(s);
    reads_flush(s);
    conn_flush_all(s);
    obs_turn(s);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_raft_closed(struct raft *r)
{
    shaled_t *s = r->data;
    char err[STORE_ERRLEN];
    /* Barrier callbacks the library never answered fail now (reads waiting
     * on them get their answers flushed below); the io is unwrapped. */
    if (s->guard.io != NULL) {
        const rg_stats_t *gs = &s->guard.stats;
        log_info("raft guard summary",
                 " noops=%llu votes_rewritten=%llu candidacy_deferred=%llu votes_held=%llu"
                 " timeout_now_held=%llu acks_held=%llu acks_clamped=%llu"
                 " uv_ops_deferred=%llu double_callbacks=%llu barriers_failed=%llu",
                 (unsigned long long)gs->noops, (unsigned long long)gs->votes_rewritten,
                 (unsigned long long)gs->candidacy_deferred,
                 (unsigned long long)gs->votes_held,
                 (unsigned long long)gs->timeout_now_held,
                 (unsigned long long)gs->acks_held, (unsigned long long)gs->acks_clamped,
                 (unsigned long long)gs->uv_ops_deferred,
                 (unsigned long long)gs->double_callbacks,
                 (unsigned long long)gs->barriers_failed);
    }
    rg_close(&s->guard);
    /* Everything applied is in RocksDB's WAL; make it durable before exit. */
    if (s->store != NULL && !s->storage_failed && store_sync(s->store, err) != 0)
        log_warn("final storage sync failed", " err=\"%s\"", err);
    /* Answers produced while Raft closed are flushed, then handles close. */
    admin_fail_all(s, SHALE_EUNAVAILABLE, "node is shutting down");
    conn_flush_all(s);
    close_handle((uv_handle_t *)&s->flush);
    close_handle((uv_handle_t *)&s->tick_timer);
    close_handle((uv_handle_t *)&s->stop_timer);
    close_handle((uv_handle_t *)&s->sigterm);
    close_handle((uv_handle_t *)&s->sigint);
    close_handle((uv_handle_t *)&s->sigusr1);
    close_handle((uv_handle_t *)&s->sighup);
    /* Closing the last uv handle of a signal restores its default action:
     * a SIGTERM arriving from here until exit would kill the process
     * mid-shutdown (before the final sync and exit code). Ignore them. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    if (s->tls_server != NULL)
        signal(SIGHUP, SIG_IGN);
    log_info("raft closed", "%s", "");
}

#define STOP_DRAIN_POLL_MS 10
#define STOP_DRAIN_MAX_MS 5000

static void on_stop_timer(uv_timer_t *t)
{
    shaled_t *s = t->data;
    /* libraft 0.15 crashes in raft_close when appends are still queued in
     * raft_uv (upstream #338: the cancelled requests' callbacks touch freed
     * state). No new entries are proposed once stopping, so wait, bounded,
     * until everything appended is on disk. */
    if (s->raft_inited && !s->raft_closed &&
        s->raft.last_stored < raft_last_index(&s->raft) &&
        s->stop_waited_ms < STOP_DRAIN_MAX_MS) {
        if (s->stop_waited_ms == 0)
            log_info("waiting for queued raft appends before closing",
                     " last_index=%llu last_stored=%llu",
                     (unsigned long long)raft_last_index(&s->raft),
                     (unsigned long long)s->raft.last_stored);
        s->stop_waited_ms += STOP_DRAIN_POLL_MS;
        uv_timer_start(&s->stop_timer, on_stop_timer, STOP_DRAIN_POLL_MS, 0);
        return;
    }
    if (s->raft_inited && !s->raft_closed) {
        s->raft.data = s;
        raft_node_close(s, on_raft_closed);
    } else {
        s->raft.data = s;
        on_raft_closed(&s->raft);
    }
}

void shaled_stop(shaled_t *s, int exit_code)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    s->exit_code = exit_code;
    log_info("shutting down", " exit_code=%d", exit_code);
    sdn_notifyf("STOPPING=1\nSTATUS=shutting down (exit code %d)", exit_code);
    propose_stop(s);
    check_stop(s);
    raft_disk_stop(s);
    meta_fail_all(s, SHALE_EUNAVAILABLE, "node is shutting down");
    mig_fail_all(s, SHALE_EUNAVAILABLE, "node is shutting down");
    meta_stop(s);
    watch_stop(s);
    own_stop(s);
    clock_stop(s);
    authn_stop(s);
    obs_stop(s);
    uv_timer_stop(&s->tick_timer);
    admin_fail_all(s, SHALE_EUNAVAILABLE, "node is shutting down");
    reads_fail_all(s, SHALE_EUNAVAILABLE, "node is shutting down");
    conn_close_all(s);
    /* raft_close must not run inside a Raft callback (FACTS.md). */
    uv_timer_start(&s->stop_timer, on_stop_timer, 0, 0);
}

void shaled_storage_failed(shaled_t *s, const char *msg)
{
    if (s->storage_failed)
        return;
    s->storage_failed = 1;
    snprintf(s->storage_err, sizeof(s->storage_err), "%s", msg);
    log_error("storage failed: this node stops applying and shuts down; "
              "the Raft log keeps every committed entry and a restart "
              "re-applies them once the cause is fixed",
              " err=\"%s\"", msg);
    propose_fail_all(s, SHALE_ESTORAGE, msg);
    shaled_stop(s, 2);
}

static void on_signal(uv_signal_t *h, int signum)
{
    shaled_t *s = h->data;
    if (signum == SIGUSR1) {
        log_cycle_level();
        return;
    }
    if (signum == SIGHUP) {
        conn_tls_reload(s);
        own_tls_reloaded(s);
        return;
    }
    log_info("signal received", " signal=%d", signum);
    shaled_stop(s, 0);
}

/* Leader: when nothing was proposed for tick-ms, append an empty entry so
 * followers and replicas can prove how fresh their state is. */
/* Tell a service manager (systemd Type=notify) when readiness changes:
 * STATUS= is /health's answer, looked at once a second. */
static void notify_status(shaled_t *s)
{
    uint64_t now = shaled_now_ms();
    if (now - s->notify_checked_ms < 1000)
        return;
    s->notify_checked_ms = now;
    char why[300], st[320];
    if (obs_health(s, why, sizeof(why)))
        snprintf(st, sizeof(st), "STATUS=ready");
    else
        snprintf(st, sizeof(st), "STATUS=not ready: %s", why);
    if (strcmp(st, s->notified_status) != 0) {
        snprintf(s->notified_status, sizeof(s->notified_status), "%s", st);
        sdn_notify(st);
    }
}

static void on_tick(uv_timer_t *t)
{
    shaled_t *s = t->data;
    if (!s->stopping)
        notify_status(s);
    if (s->stopping || !raft_node_is_leader(s))
        return;
    if (shaled_now_ms() - s->last_proposal_ms >= s->cfg.tick_ms)
        propose_tick(s);
}

/* The founding voters to bootstrap (NULL when joining), as a table. */
static int initial_members(shaled_t *s, Shale__MemberTable **out, char *err,
                           size_t errlen)
{
    *out = NULL;
    if (strcmp(s->cfg.initial_cluster, "none") == 0)
        return 0;
    char self[400];
    const char *spec = s->cfg.initial_cluster;
    if (spec[0] == '\0') {
        snprintf(self, sizeof(self), "%llu=%s/%s", (unsigned long long)s->cfg.id,
                 s->cfg.raft, s->cfg.listen);
        spec = self;
    }
    if (members_parse_list(spec, out, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < (*out)->n_members; i++) {
        const Shale__Member *m = (*out)->members[i];
        if (m->id != s->cfg.id)
            continue;
        if (strcmp(m->raft_addr, s->cfg.raft) != 0 ||
            strcmp(m->client_addr, s->cfg.listen) != 0) {
            snprintf(err, errlen, "initial-cluster names node %llu at %s/%s but this "
                     "node has --raft %s --listen %s", (unsigned long long)m->id,
                     m->raft_addr, m->client_addr, s->cfg.raft, s->cfg.listen);
            shale__member_table__free_unpacked(*out, NULL);
            *out = NULL;
            return -1;
        }
        return 0;
    }
    snprintf(err, errlen, "initial-cluster does not name this node (--id %llu); "
             "use --initial-cluster none to join an existing group",
             (unsigned long long)s->cfg.id);
    shale__member_table__free_unpacked(*out, NULL);
    *out = NULL;
    return -1;
}

static int make_dirs(shaled_t *s, char *err, size_t errlen)
{
    if (mkdir(s->cfg.data, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create data directory %s: %s", s->cfg.data,
                 strerror(errno));
        return -1;
    }
    snprintf(s->raft_dir, sizeof(s->raft_dir), "%s/raft", s->cfg.data);
    snprintf(s->db_dir, sizeof(s->db_dir), "%s/db", s->cfg.data);
    return 0;
}

static void init_signal(shaled_t *s, uv_signal_t *h, int signum)
{
    uv_signal_init(s->loop, h);
    h->data = s;
    uv_signal_start(h, on_signal, signum);
}

/* Resolve --listen, --raft and --http (addr.h); keep --raft's address
 * (port 0) in s->raft_src. 0, or -1 with a sentence naming the flag. */
static int check_bind_addresses(shaled_t *s, char *err, size_t errlen)
{
    struct {
        const char *flag, *addr;
    } a[] = {{"--listen", s->cfg.listen}, {"--raft", s->cfg.raft}, {"--http", s->cfg.http}};
    char why[600];
    struct sockaddr_storage ss;
    for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++) {
        if (a[i].addr[0] == '\0' || a[i].addr[0] == ':')
            continue; /* off, or ":PORT" on the --listen host (checked) */
        /* The plain Raft transport (raft_uv_tcp, libraft 0.15) binds IPv4
         * only: a name must have an IPv4 address there. */
        int family = i == 1 && s->cfg.tls_cert[0] == '\0' ? AF_INET : AF_UNSPEC;
        if (addr_resolve_blocking(a[i].addr, family, &ss, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s: %s", a[i].flag, why);
            return -1;
        }
        if (i == 1) {
            s->raft_src = ss;
            if (ss.ss_family == AF_INET)
                ((struct sockaddr_in *)&s->raft_src)->sin_port = 0;
            else
                ((struct sockaddr_in6 *)&s->raft_src)->sin6_port = 0;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static shaled_t server; /* large (raft structs): not on the stack */
    shaled_t *s = &server;
    char err[1024];
    /* raft_uv does not ignore SIGPIPE (FACTS.md); neither would a write to
     * a client that went away. */
    signal(SIGPIPE, SIG_IGN);
    log_set_proc("shaled");
    raft_heap_install(); /* before anything libraft allocates */

    shaled_config_defaults(&s->cfg);
    int rv = shaled_config_parse(&s->cfg, argc, argv, err, sizeof(err));
    if (rv == 1)
        return 0;
    if (rv != 0 || shaled_config_validate(&s->cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "shaled: %s\n", err);
        return 2;
    }
    if (s->cfg.check_config) {
        shaled_config_dump(&s->cfg, stdout);
        return 0;
    }
    log_set_level(log_parse_level(s->cfg.log_level));
    /* Every address this process binds may be a host name: look each up
     * now, before anything starts, so a name that does not resolve stops
     * the process with its reason (exit 2) instead of a half-started node.
     * A blocking getaddrinfo is acceptable here: no loop runs yet. */
    if (check_bind_addresses(s, err, sizeof(err)) != 0) {
        fprintf(stderr, "shaled: %s\n", err);
        return 2;
    }
    if (authn_init(s, err, sizeof(err)) != 0) {
        fprintf(stderr, "shaled: %s\n", err);
        authn_free(s);
        return 2;
    }
    Shale__MemberTable *seed = NULL;
    if (initial_members(s, &seed, err, sizeof(err)) != 0) {
        fprintf(stderr, "shaled: %s\n", err);
        return 2;
    }
    if (conn_tls_init(s, err, sizeof(err)) != 0) {
        fprintf(stderr, "shaled: %s\n", err);
        if (seed != NULL)
            shale__member_table__free_unpacked(seed, NULL);
        return 2;
    }
    if (make_dirs(s, err, sizeof(err)) != 0) {
        fprintf(stderr, "shaled: %s\n", err);
        conn_tls_free(s);
        return 1;
    }

    /* Undo a store swap a crash cut short; drop snapshot leftovers. */
    snapx_recover_dirs(s->cfg.data, s->db_dir);
    store_options_t so;
    store_options_default(&so);
    so.block_cache_bytes = (size_t)s->cfg.block_cache_mb << 20;
    so.write_buffer_bytes = (size_t)s->cfg.write_buffer_mb << 20;
    char serr[STORE_ERRLEN];
    if (store_open(s->db_dir, &so, &s->store, serr) != 0) {
        fprintf(stderr, "shaled: cannot open storage in %s: %s\n", s->db_dir, serr);
        if (seed != NULL)
            shale__member_table__free_unpacked(seed, NULL);
        conn_tls_free(s);
        return 1;
    }
    if (members_load(s, seed, serr) != 0) {
        fprintf(stderr, "shaled: cannot load the member table: %s\n", serr);
        if (seed != NULL)
            shale__member_table__free_unpacked(seed, NULL);
        store_close(s->store);
        conn_tls_free(s);
        return 1;
    }
    if (meta_load(s, serr) != 0 || own_load(s, serr) != 0) {
        fprintf(stderr, "shaled: cannot load the cluster state: %s\n", serr);
        if (seed != NULL)
            shale__member_table__free_unpacked(seed, NULL);
        members_free(s);
        meta_free(s);
        own_free(s);
        store_close(s->store);
        conn_tls_free(s);
        return 1;
    }

    s->loop = uv_default_loop();
    if (watch_init(s, err, sizeof(err)) != 0 || obs_init(s) != 0) {
        fprintf(stderr, "shaled: out of memory setting up metrics or the watch cache\n");
        watch_free(s);
        members_free(s);
        meta_free(s);
        own_free(s);
        obs_free(s);
        store_close(s->store);
        if (seed != NULL)
            shale__member_table__free_unpacked(seed, NULL);
        conn_tls_free(s);
        return 1;
    }
    q_init(&s->conns);
    q_init(&s->dirty);
    q_init(&s->resumable);
    uv_idle_init(s->loop, &s->resume_idle);
    q_init(&s->reads_waiting);
    uv_timer_init(s->loop, &s->stop_timer);
    s->stop_timer.data = s;
    uv_check_init(s->loop, &s->flush);
    s->flush.data = s;
    uv_check_start(&s->flush, on_flush);
    propose_start(s);
    meta_start(s);
    mig_start(s);
    watch_start(s);
    if (check_init(s) != 0)
        log_warn("consistency checks unavailable: out of memory", "%s", "");
    clock_start(s);
    uv_timer_init(s->loop, &s->tick_timer);
    s->tick_timer.data = s;
    uv_timer_start(&s->tick_timer, on_tick, s->cfg.tick_ms, s->cfg.tick_ms);
    init_signal(s, &s->sigterm, SIGTERM);
    init_signal(s, &s->sigint, SIGINT);
    init_signal(s, &s->sigusr1, SIGUSR1);
    /* SIGHUP reloads the TLS files; without TLS it keeps its default. */
    uv_signal_init(s->loop, &s->sighup);
    s->sighup.data = s;
    if (s->tls_server != NULL)
        uv_signal_start(&s->sighup, on_signal, SIGHUP);

    int failed = 0;
    int raft_rv = raft_node_start(s, seed, err, sizeof(err));
    if (seed != NULL)
        shale__member_table__free_unpacked(seed, NULL);
    if (raft_rv != 0) {
        log_error("cannot start raft", " err=\"%s\"", err);
        failed = 1;
    } else if (authn_start(s, err, sizeof(err)) != 0) {
        log_error("cannot start authentication", " err=\"%s\"", err);
        failed = 1;
    } else if (conn_listen(s, err, sizeof(err)) != 0) {
        log_error("cannot listen", " err=\"%s\"", err);
        failed = 1;
    } else if (own_start(s, err, sizeof(err)) != 0) {
        log_error("cannot follow the cluster map", " err=\"%s\"", err);
        failed = 1;
    } else if (obs_start(s, err, sizeof(err)) != 0) {
        log_error("cannot serve metrics", " err=\"%s\"", err);
        failed = 1;
    } else {
        if (s->cfg.test_broken_reads)
            log_warn("TEST ONLY: --test-broken-reads: LINEARIZABLE reads are answered without "
                     "a read barrier; this node is deliberately NOT linearizable", "%s", "");
        log_info("serving", " id=%llu listen=%s raft=%s data=%s cluster=%s applied=%llu",
                 (unsigned long long)s->cfg.id, s->cfg.listen, s->cfg.raft,
                 s->cfg.data, s->cfg.cluster_id,
                 (unsigned long long)store_applied_index(s->store));
        /* READY=1 once the ports are open and the store is loaded (a
         * joining node is not a member yet: STATUS says what it waits
         * for, docs/deploy.md). */
        sdn_notifyf("READY=1\nMAINPID=%ld\nSTATUS=serving on %s, waiting for readiness",
                    (long)getpid(), s->cfg.listen);
    }
    if (failed) {
        shaled_stop(s, 1);
    }

    uv_run(s->loop, UV_RUN_DEFAULT);
    raft_node_release(s);
    /* Handles closed by raft_uv_close may need a last turn. */
    uv_run(s->loop, UV_RUN_DEFAULT);
    check_quiesce(s);
    store_close(s->store);
    check_free(s);
    members_free(s);
    meta_free(s);
    own_free(s);
    watch_free(s);
    authn_free(s);
    obs_free(s);
    conn_tls_free(s);
    int lrv = uv_loop_close(s->loop);
    if (lrv != 0)
        log_warn("loop closed with handles still open", " err=%s", uv_strerror(lrv));
    log_info("stopped", " exit_code=%d", s->exit_code);
    return s->exit_code;
}
