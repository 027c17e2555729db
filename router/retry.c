/* Retry decisions and backoff. See retry.h for the rules. */
#include "retry.h"

#include <string.h>

#include "shale_errors.h"

uint32_t rt_backoff_ms(unsigned n)
{
    uint32_t d = RT_BACKOFF_FIRST_MS;
    for (unsigned i = 0; i < n && d < RT_BACKOFF_CAP_MS; i++)
        d *= 2;
    return d < RT_BACKOFF_CAP_MS ? d : RT_BACKOFF_CAP_MS;
}

void rt_retry_decide(int code, int stale_read, const char *hint, const char *node,
                     unsigned *backoffs, unsigned *redirects, rt_retry_t *out)
{
    memset(out, 0, sizeof(*out));
    switch (code) {
    case SHALE_ENOTLEADER:
        if (hint != NULL && hint[0] != '\0' && (node == NULL || strcmp(hint, node) != 0)) {
            out->action = RT_REDIRECT;
            if ((*redirects)++ >= RT_REDIRECTS_AT_ONCE)
                out->delay_ms = rt_backoff_ms((*backoffs)++);
            return;
        }
        out->action = RT_NEXT;
        out->forget_node = 1;
        out->delay_ms = rt_backoff_ms((*backoffs)++);
        return;
    case SHALE_EUNAVAILABLE:
    case SHALE_ETIMEOUT:
    case SHALE_EIO:
    case SHALE_ECLOSED:
        out->action = RT_NEXT;
        out->forget_node = 1;
        out->delay_ms = rt_backoff_ms((*backoffs)++);
        return;
    case SHALE_EWRONGGROUP:
        out->action = RT_REMAP;
        out->refresh_map = 1;
        out->delay_ms = rt_backoff_ms((*backoffs)++);
        return;
    case SHALE_ESLOTMOVING:
        out->action = RT_SAME;
        out->refresh_map = 1;
        out->delay_ms = rt_backoff_ms((*backoffs)++);
        return;
    case SHALE_ESTALE:
        if (stale_read) {
            out->action = RT_NEXT;
            return;
        }
        out->action = RT_FINAL;
        return;
    default:
        out->action = RT_FINAL;
        return;
    }
}
