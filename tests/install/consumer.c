/* A program of a libshale user, built against an *installed* libshale only
 * (tests/install/test_install.sh): strict C11, the sync API, no <uv.h>.
 * Usage: consumer HOST:PORT — puts a key, reads it back, prints "ok". */
#include <stdio.h>
#include <string.h>

#include <shale.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: consumer HOST:PORT\n");
        return 2;
    }
    shale_options_t o;
    shale_options_init(&o);
    o.timeout_ms = 10000;
    shale_client_t *c = NULL;
    char err[SHALE_ERRMSG_LEN];
    int rv = shale_connect(argv[1], &o, &c, err);
    if (rv != SHALE_OK) {
        fprintf(stderr, "connect: %s: %s\n", shale_strerror(rv), err);
        return 1;
    }
    uint64_t ver = 0;
    rv = shale_put(c, "installed", 9, "yes", 3, &ver);
    if (rv != SHALE_OK) {
        fprintf(stderr, "put: %s: %s\n", shale_strerror(rv), shale_errmsg(c));
        shale_close(c);
        return 1;
    }
    shale_value_t v = {0};
    rv = shale_get(c, "installed", 9, NULL, &v);
    int ok = rv == SHALE_OK && v.found && v.len == 3 && memcmp(v.data, "yes", 3) == 0 &&
             v.version == ver;
    if (!ok)
        fprintf(stderr, "get: %s: %s\n", shale_strerror(rv), shale_errmsg(c));
    shale_value_free(&v);
    shale_close(c);
    if (ok)
        printf("ok: libshale %s (header %s), version %llu\n", shale_version(), SHALE_VERSION,
               (unsigned long long)ver);
    return ok ? 0 : 1;
}
