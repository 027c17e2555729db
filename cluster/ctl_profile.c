/* ctl_profile.c — shalectl's profile file: connection settings kept in a
 * file instead of typed on every command (like kubectl's contexts).
 *
 *   # ~/.config/shale/shalectl.conf  (or --config FILE, or $SHALE_CONFIG)
 *   meta = 10.0.0.1:7001,10.0.0.2:7001
 *   tls-ca = tls/ca.crt              # relative paths: to the file's directory
 *   [prod]                           # --profile prod (or $SHALE_PROFILE)
 *   router = 10.0.1.1:7000
 *   user = admin
 *   password-file = admin.pw
 *
 * Lines before any [section] apply to every profile; a section's lines
 * apply when it is selected, after them. Each key is the global option of
 * the same name and becomes its $SHALE_* variable unless that variable is
 * already set: a flag beats the environment, which beats the file.
 *
 * Owns nothing after ctl_profile_load returns (values go to the process
 * environment). Never connects, never prints: errors come back as text. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

/* Keys a profile may set: the option's name and its variable; path keys
 * are resolved against the file's directory when relative. */
static const struct {
    const char *key, *env;
    int path;
} keys[] = {
    {"meta", "SHALE_META", 0},
    {"router", "SHALE_ROUTER", 0},
    {"addr", "SHALE_ADDR", 0},
    {"tls-ca", "SHALE_TLS_CA", 1},
    {"tls-cert", "SHALE_TLS_CERT", 1},
    {"tls-key", "SHALE_TLS_KEY", 1},
    {"tls-server-name", "SHALE_TLS_SERVER_NAME", 0},
    {"user", "SHALE_USER", 0},
    {"password-file", "SHALE_PASSWORD_FILE", 1},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

int ctl_profile_load(const char *file, const char *profile, char *err, size_t errlen)
{
    int explicit_file = file != NULL;
    char home_file[PATH_MAX];
    if (file == NULL) {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] == '\0')
            return profile != NULL ? (snprintf(err, errlen,
                                               "--profile %s: no profile file ($HOME is not set; "
                                               "give --config FILE)",
                                               profile),
                                      -1)
                                   : 0;
        snprintf(home_file, sizeof(home_file), "%s/.config/shale/shalectl.conf", home);
        file = home_file;
    }
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        if (!explicit_file && errno == ENOENT && profile == NULL)
            return 0; /* no default file: nothing to load */
        snprintf(err, errlen, "profile file %s: %s", file, strerror(errno));
        return -1;
    }
    /* The directory relative paths are resolved against. */
    char dir[PATH_MAX];
    const char *slash = strrchr(file, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - file), file);
    if (dir[0] == '\0')
        snprintf(dir, sizeof(dir), "/");

    /* Two passes over the lines: the common part, then the section, so a
     * section overrides the common lines wherever they are written. Values
     * are set only where the environment has none; the section's go
     * first for that reason. */
    char line[1024];
    int found = profile == NULL, rv = 0;
    for (int pass = 0; pass < 2 && rv == 0; pass++) {
        rewind(f);
        int lineno = 0;
        const char *section = NULL;
        char cur[128] = "";
        while (rv == 0 && fgets(line, sizeof(line), f) != NULL) {
            lineno++;
            char *hash = strchr(line, '#');
            if (hash != NULL)
                *hash = '\0';
            char *l = trim(line);
            if (*l == '\0')
                continue;
            if (*l == '[') {
                char *end = strchr(l, ']');
                if (end == NULL || end[1] != '\0' || end == l + 1 || (size_t)(end - l) >= sizeof(cur)) {
                    snprintf(err, errlen, "%s:%d: a section is [NAME]", file, lineno);
                    rv = -1;
                    break;
                }
                snprintf(cur, sizeof(cur), "%.*s", (int)(end - l - 1), l + 1);
                section = cur;
                if (profile != NULL && strcmp(cur, profile) == 0)
                    found = 1;
                continue;
            }
            char *eq = strchr(l, '=');
            if (eq == NULL) {
                snprintf(err, errlen, "%s:%d: expected 'name = value'", file, lineno);
                rv = -1;
                break;
            }
            *eq = '\0';
            char *k = trim(l), *v = trim(eq + 1);
            size_t i = 0;
            while (i < NKEYS && strcmp(keys[i].key, k) != 0)
                i++;
            if (i == NKEYS) {
                snprintf(err, errlen,
                         "%s:%d: unknown setting '%s' (meta, router, addr, tls-ca, tls-cert, "
                         "tls-key, tls-server-name, user, password-file)",
                         file, lineno, k);
                rv = -1;
                break;
            }
            if (*v == '\0') {
                snprintf(err, errlen, "%s:%d: '%s' needs a value", file, lineno, k);
                rv = -1;
                break;
            }
            /* pass 0: the selected section; pass 1: the common lines. */
            int mine = pass == 0 ? (section != NULL && profile != NULL && strcmp(section, profile) == 0)
                                 : section == NULL;
            if (!mine)
                continue;
            char path[PATH_MAX * 2];
            if (keys[i].path && v[0] != '/') {
                snprintf(path, sizeof(path), "%s/%s", dir, v);
                v = path;
            }
            /* An empty variable counts as unset (as env_or reads it). */
            const char *cur = getenv(keys[i].env);
            if (cur == NULL || cur[0] == '\0')
                setenv(keys[i].env, v, 1);
        }
    }
    fclose(f);
    if (rv == 0 && !found) {
        snprintf(err, errlen, "profile '%s' is not in %s", profile, file);
        rv = -1;
    }
    return rv;
}
