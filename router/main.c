/* shale-router: the stateless front door of a Shale cluster (DESIGN §1).
 *
 * main() wires the modules together on one libuv loop: flags, the client
 * listener, the meta watch, the end-of-turn prepare (send what is due,
 * resume paused clients, write all output), and signals.
 *
 * Shutdown on SIGTERM/SIGINT: stop accepting and stop reading requests;
 * requests in flight finish (bounded by --timeout-ms); then everything left
 * is answered UNAVAILABLE, answers are written, connections and the meta
 * clients close, and the process exits 0 when the loop has no handle left.
 * Never routes or forwards anything itself. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "router.h"
#include "sd_notify.h"
#include "tls.h"

#define STOP_POLL_MS 10
#define STOP_FORCE_MS 2000

static void on_turn(uv_prepare_t *h)
{
    rt_router_t *r = h->data;
    rt_cconn_resume_all(r);
    rt_fwd_turn(r);
    rt_up_flush_all(r);
    rt_cconn_flush_all(r);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Connections whose peer does not read their last answers must not keep
 * the process alive: closed for good STOP_FORCE_MS after the end. */
static void on_force_timer(uv_timer_t *t)
{
    rt_router_t *r = t->data;
    rt_cconn_force_close_all(r);
    close_handle((uv_handle_t *)t);
}

static void finish_stop(rt_router_t *r)
{
    rt_fwd_fail_all(r, SHALE_EUNAVAILABLE, "router is shutting down");
    rt_cconn_stop_accepting(r);
    rt_cconn_close_all(r);
    rt_watch_stop(r);
    rt_authn_stop(r);
    rt_obs_stop(r);
    rt_up_close_all(r);
    rt_fwd_close(r);
    uv_prepare_stop(&r->turn);
    close_handle((uv_handle_t *)&r->turn);
    /* Unreferenced: it fires only if something else still holds the loop. */
    uv_timer_start(&r->stop_timer, on_force_timer, STOP_FORCE_MS, 0);
    uv_unref((uv_handle_t *)&r->stop_timer);
    close_handle((uv_handle_t *)&r->sigterm);
    close_handle((uv_handle_t *)&r->sigint);
    close_handle((uv_handle_t *)&r->sigusr1);
    close_handle((uv_handle_t *)&r->sighup);
}

/* TLS contexts from --tls-* (none when TLS is off). 0 or -1 with err. */
static int tls_init(rt_router_t *r, char *err, size_t errlen)
{
    if (r->cfg.tls_cert[0] == '\0')
        return 0;
    tls_opts_t o = {.ca_file = r->cfg.tls_ca,
                    .cert_file = r->cfg.tls_cert,
                    .key_file = r->cfg.tls_key,
                    .require_peer_cert = r->cfg.tls_client_auth != 0};
    if (tls_ctx_new(TLS_SERVER, &o, &r->tls_server, err, errlen) != 0 ||
        tls_ctx_new(TLS_CLIENT, &o, &r->tls_client, err, errlen) != 0) {
        tls_ctx_free(r->tls_server);
        r->tls_server = NULL;
        return -1;
    }
    return 0;
}

/* SIGHUP: new client and node connections use the files as they are now;
 * open ones keep theirs. (The meta watch's clients keep theirs until they
 * reconnect: docs/security.md.) */
static void tls_reload(rt_router_t *r)
{
    if (r->tls_server == NULL)
        return;
    char err[TLS_ERRLEN];
    if (tls_ctx_reload(r->tls_server, err, sizeof(err)) != 0 ||
        tls_ctx_reload(r->tls_client, err, sizeof(err)) != 0) {
        rt_error("TLS reload failed: the files in use before stay in use", " err=\"%s\"", err);
        return;
    }
    rt_info("TLS certificates reloaded", " cert=%s generation=%llu", r->cfg.tls_cert,
            (unsigned long long)tls_ctx_generation(r->tls_server));
}

static void on_stop_timer(uv_timer_t *t)
{
    rt_router_t *r = t->data;
    uint64_t waited = uv_now(r->loop) - r->stop_started;
    if (r->fwd.live > 0 && waited < r->cfg.timeout_ms) {
        uv_timer_start(&r->stop_timer, on_stop_timer, STOP_POLL_MS, 0);
        return;
    }
    if (r->fwd.live > 0)
        rt_warn("requests still in flight at shutdown", " count=%zu", r->fwd.live);
    finish_stop(r);
}

void rt_router_stop(rt_router_t *r, int exit_code)
{
    if (r->stopping)
        return;
    r->stopping = 1;
    r->exit_code = exit_code;
    r->stop_started = uv_now(r->loop);
    rt_info("shutting down", " in_flight=%zu connections=%zu", r->fwd.live, r->nconns);
    sdn_notifyf("STOPPING=1\nSTATUS=shutting down (exit code %d)", exit_code);
    rt_cconn_stop_accepting(r);
    uv_timer_start(&r->stop_timer, on_stop_timer, 0, 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    rt_router_t *r = h->data;
    if (signum == SIGUSR1) {
        log_cycle_level();
        return;
    }
    if (signum == SIGHUP) {
        tls_reload(r);
        return;
    }
    rt_info("signal received", " signal=%d", signum);
    rt_router_stop(r, 0);
}

static void init_signal(rt_router_t *r, uv_signal_t *h, int signum)
{
    uv_signal_init(r->loop, h);
    h->data = r;
    uv_signal_start(h, on_signal, signum);
}

int main(int argc, char **argv)
{
    static rt_router_t router;
    rt_router_t *r = &router;
    char err[1024];
    /* A write to a client or node that went away must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    log_set_proc("shale-router");

    rt_config_defaults(&r->cfg);
    int rv = rt_config_parse(&r->cfg, argc, argv, err, sizeof(err));
    if (rv == 1)
        return 0;
    if (rv != 0 || rt_config_validate(&r->cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "shale-router: %s\n", err);
        return 2;
    }
    if (r->cfg.check_config) {
        rt_config_dump(&r->cfg, stdout);
        return 0;
    }
    rt_log_set_level(rt_log_parse_level(r->cfg.log_level));
    /* --listen and --http may be host names: look them up now (a blocking
     * getaddrinfo is acceptable before the loop runs) so a name that does
     * not resolve stops the router with its reason, exit 2. */
    const char *flags[] = {"--listen", "--http"}, *addrs[] = {r->cfg.listen, r->cfg.http};
    for (int i = 0; i < 2; i++) {
        struct sockaddr_storage ss;
        char why[600];
        if (addrs[i][0] != '\0' && addrs[i][0] != ':' && /* ":PORT": the --listen host */
            addr_resolve_blocking(addrs[i], AF_UNSPEC, &ss, why, sizeof(why)) != 0) {
            fprintf(stderr, "shale-router: %s: %s\n", flags[i], why);
            return 2;
        }
    }
    if (tls_init(r, err, sizeof(err)) != 0) {
        fprintf(stderr, "shale-router: %s\n", err);
        return 2;
    }
    if (rt_authn_init(r, err, sizeof(err)) != 0) {
        fprintf(stderr, "shale-router: %s\n", err);
        rt_authn_free(r);
        tls_ctx_free(r->tls_server);
        tls_ctx_free(r->tls_client);
        return 2;
    }

    r->loop = uv_default_loop();
    if (rt_obs_init(r) != 0) {
        fprintf(stderr, "shale-router: out of memory setting up metrics\n");
        rt_obs_free(r);
        tls_ctx_free(r->tls_server);
        tls_ctx_free(r->tls_client);
        return 1;
    }
    rt_q_init(&r->conns);
    rt_q_init(&r->dirty);
    rt_q_init(&r->resumable);
    rt_route_init(&r->route);
    rt_fwd_init(r);
    rt_up_init(r);
    uv_prepare_init(r->loop, &r->turn);
    r->turn.data = r;
    uv_prepare_start(&r->turn, on_turn);
    uv_timer_init(r->loop, &r->stop_timer);
    r->stop_timer.data = r;
    init_signal(r, &r->sigterm, SIGTERM);
    init_signal(r, &r->sigint, SIGINT);
    init_signal(r, &r->sigusr1, SIGUSR1);
    /* SIGHUP reloads the TLS files; without TLS it keeps its default. */
    uv_signal_init(r->loop, &r->sighup);
    r->sighup.data = r;
    if (r->tls_server != NULL)
        uv_signal_start(&r->sighup, on_signal, SIGHUP);

    if (rt_authn_start(r, err, sizeof(err)) != 0) {
        rt_error("cannot start authentication", " err=\"%s\"", err);
        r->exit_code = 1;
        r->stopping = 1;
        finish_stop(r);
    } else if (rt_cconn_listen(r, err, sizeof(err)) != 0) {
        rt_error("cannot listen", " err=\"%s\"", err);
        r->exit_code = 1;
        r->stopping = 1;
        finish_stop(r);
    } else if (rt_watch_start(r, err, sizeof(err)) != 0) {
        rt_error("cannot watch the cluster map", " err=\"%s\"", err);
        rt_router_stop(r, 1);
    } else if (rt_obs_start(r, err, sizeof(err)) != 0) {
        rt_error("cannot serve metrics", " err=\"%s\"", err);
        rt_router_stop(r, 1);
    } else {
        rt_info("serving",
                " listen=%s meta=%s cluster=%s timeout_ms=%llu max_pending=%llu "
                "node_conns=%llu",
                r->cfg.listen, r->cfg.meta, r->cfg.cluster_id,
                (unsigned long long)r->cfg.timeout_ms, (unsigned long long)r->cfg.max_pending,
                (unsigned long long)r->cfg.node_conns);
        /* The port is open; /health turns ready with the first map. */
        sdn_notifyf("READY=1\nMAINPID=%ld\nSTATUS=serving on %s, %s", (long)getpid(),
                    r->cfg.listen, r->notified_ready ? "ready" : "waiting for the cluster map");
    }

    uv_run(r->loop, UV_RUN_DEFAULT);
    /* The unreferenced force-close timer may not have fired: close it. */
    close_handle((uv_handle_t *)&r->stop_timer);
    uv_run(r->loop, UV_RUN_DEFAULT);
    rt_route_free(&r->route);
    rk_cursors_free(&r->resp_cursors);
    rt_authn_free(r);
    rt_obs_free(r);
    tls_ctx_free(r->tls_server);
    tls_ctx_free(r->tls_client);
    int lrv = uv_loop_close(r->loop);
    if (lrv != 0)
        rt_warn("loop closed with handles still open", " err=%s", uv_strerror(lrv));
    rt_info("stopped", " exit_code=%d", r->exit_code);
    return r->exit_code;
}
