/* /metrics and /health over the small HTTP server (obs_http.h). */
#include <stdio.h>
#include <stdlib.h>

#include <string.h>

#include "obs_http.h"

#define HEALTH_BODY_MAX 400

static void on_metrics(void *arg, const http_request_t *req, http_response_t *resp)
{
    (void)req;
    obs_http_t *o = arg;
    if (met_render(o->reg, &resp->body, &resp->len) != 0) {
        resp->status = 500;
        return;
    }
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

static void on_health(void *arg, const http_request_t *req, http_response_t *resp)
{
    (void)req;
    obs_http_t *o = arg;
    char why[300];
    int ok = o->ready(o->arg, why, sizeof(why));
    char *b = malloc(HEALTH_BODY_MAX);
    if (b == NULL) {
        resp->status = 500;
        return;
    }
    int n = ok ? snprintf(b, HEALTH_BODY_MAX, "ready\n")
               : snprintf(b, HEALTH_BODY_MAX, "not ready: %s\n", why);
    resp->len = (size_t)n < HEALTH_BODY_MAX ? (size_t)n : HEALTH_BODY_MAX - 1;
    resp->status = ok ? 200 : 503;
    resp->body = b;
}

int obs_http_start(obs_http_t *o, uv_loop_t *loop, const char *spec, const char *listen,
                   char *err, size_t errlen)
{
    char bound[200], sub[256], host[128];
    const char *colon = strrchr(listen, ':');
    size_t hl = colon != NULL ? (size_t)(colon - listen) : 0;
    if (colon == NULL || hl == 0 || hl >= sizeof(host)) {
        snprintf(err, errlen, "--listen '%s' is not HOST:PORT", listen);
        return -1;
    }
    memcpy(host, listen, hl);
    host[hl] = '\0';
    if (http_resolve_addr(spec, host, bound, sizeof(bound)) != 0) {
        snprintf(err, errlen, "--http '%s' is not HOST:PORT or :PORT", spec);
        return -1;
    }
    if (http_server_start(loop, bound, &o->http, sub, sizeof(sub)) != 0) {
        snprintf(err, errlen, "http: %s", sub);
        return -1;
    }
    http_route(o->http, "/metrics", on_metrics, o);
    http_route(o->http, "/health", on_health, o);
    snprintf(o->addr, sizeof(o->addr), "%s", bound);
    return 0;
}

const char *obs_http_bound(const obs_http_t *o)
{
    return o->addr[0] != '\0' ? o->addr : NULL;
}

void obs_http_stop(obs_http_t *o)
{
    if (o->http != NULL)
        http_server_close(o->http);
    o->http = NULL;
}
