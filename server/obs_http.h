/* The observability endpoint every Shale process serves: /metrics (one
 * metrics registry in the Prometheus text format) and /health (200 "ready"
 * or 503 "not ready: <reason>") on the --http address.
 *
 * Owns the HTTP server it starts (closed by obs_http_stop) and nothing else:
 * the registry and the readiness check belong to the caller (shaled's
 * server/obs.c, the router's router/obs.c), which embeds obs_http_t. Part of
 * the shale_http library; never touches process state beyond its arguments. */
#ifndef SHALE_OBS_HTTP_H
#define SHALE_OBS_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "http.h"
#include "metrics.h"

/* 1 when ready; else 0 with the reason in why. */
typedef int (*obs_ready_fn)(void *arg, char *why, size_t whylen);

typedef struct obs_http {
    met_registry_t *reg; /* rendered at /metrics (caller's) */
    obs_ready_fn ready;  /* answers /health */
    void *arg;
    http_server_t *http; /* NULL until started */
    char addr[200];      /* the address bound ("" until started) */
} obs_http_t;

/* Start serving on spec ("HOST:PORT" or ":PORT", the host then being the
 * host of listen, the process's client address "HOST:PORT"); o->addr gets
 * the address bound. Returns 0, or -1 with a message in err. */
int obs_http_start(obs_http_t *o, uv_loop_t *loop, const char *spec, const char *listen,
                   char *err, size_t errlen);
/* o->addr once started, else NULL. */
const char *obs_http_bound(const obs_http_t *o);
void obs_http_stop(obs_http_t *o);

#endif
