/* conftab.c — flags and config files against a settings table
 * (conftab.h). What it must never do: print on its own, exit, or keep a
 * pointer into argv or a file's lines (values are copied). */
#include "conftab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const conf_setting_t *find(const conf_table_t *t, const char *name, size_t nlen)
{
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->s[i].name) == nlen && strncmp(t->s[i].name, name, nlen) == 0)
            return &t->s[i];
    return NULL;
}

int conf_set(const conf_table_t *t, void *base, const char *name, size_t nlen, const char *v,
             char *err, size_t errlen)
{
    const conf_setting_t *s = find(t, name, nlen);
    if (s == NULL) {
        snprintf(err, errlen, "unknown option '--%.*s' (see --help)", (int)nlen, name);
        return -1;
    }
    char *field = (char *)base + s->off;
    if (s->kind == CONF_STR) {
        size_t len = strlen(v);
        if (len >= s->size) {
            snprintf(err, errlen, "value for --%s is too long (at most %zu bytes)", s->name,
                     s->size - 1);
            return -1;
        }
        memcpy(field, v, len + 1);
        return 0;
    }
    if (s->kind == CONF_BOOL) {
        int on = strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "on") == 0;
        if (!on && strcmp(v, "0") != 0 && strcmp(v, "false") != 0 && strcmp(v, "off") != 0) {
            snprintf(err, errlen, "--%s is on or off (1/0, true/false, on/off), not '%s'",
                     s->name, v);
            return -1;
        }
        uint64_t b = (uint64_t)on;
        memcpy(field, &b, sizeof(b));
        return 0;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long x = v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
    if (v[0] < '0' || v[0] > '9' || errno != 0 || end == v || *end != '\0') {
        snprintf(err, errlen, "--%s needs a non-negative integer, got '%s'", s->name, v);
        return -1;
    }
    if ((s->lo != 0 || s->hi != 0) && (x < s->lo || x > s->hi)) {
        snprintf(err, errlen, "--%s must be in %llu..%llu, got %llu", s->name,
                 (unsigned long long)s->lo, (unsigned long long)s->hi, x);
        return -1;
    }
    uint64_t u = x;
    memcpy(field, &u, sizeof(u));
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

int conf_file(const conf_table_t *t, void *base, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int lineno = 0, rv = 0;
    while (rv == 0 && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line longer than %zu bytes", path, lineno,
                     sizeof(line) - 2);
            rv = -1;
            break;
        }
        char *l = trim(line);
        if (*l == '\0' || *l == '#')
            continue;
        char *eq = strchr(l, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "%s:%d: expected `name = value`", path, lineno);
            rv = -1;
            break;
        }
        *eq = '\0';
        char *name = trim(l), *val = trim(eq + 1);
        char sub[512];
        if (find(t, name, strlen(name)) == NULL) {
            snprintf(err, errlen, "%s:%d: unknown setting '%s'", path, lineno, name);
            rv = -1;
        } else if (conf_set(t, base, name, strlen(name), val, sub, sizeof(sub)) != 0) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, sub);
            rv = -1;
        }
    }
    fclose(f);
    return rv;
}

static int in_list(const char *const *list, const char *name, size_t nlen)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++)
        if (strlen(list[i]) == nlen && strncmp(list[i], name, nlen) == 0)
            return 1;
    return 0;
}

int conf_args(const conf_table_t *t, void *base, int argc, char **argv,
              const char *const *skip_value, const char *const *skip_alone, char *err,
              size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", a);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (in_list(skip_alone, name, nlen))
            continue;
        if (in_list(skip_value, name, nlen)) {
            if (eq == NULL)
                i++;
            continue;
        }
        const conf_setting_t *s = find(t, name, nlen);
        if (s == NULL) {
            snprintf(err, errlen, "unknown option '--%.*s' (see --help)", (int)nlen, name);
            return -1;
        }
        const char *v;
        if (eq != NULL) {
            v = eq + 1;
        } else if (s->kind == CONF_BOOL) {
            v = "1"; /* --auth alone turns it on */
        } else {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value", s->name);
                return -1;
            }
            v = argv[++i];
        }
        if (conf_set(t, base, name, nlen, v, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int conf_find_arg(int argc, char **argv, const char *name, const char **value)
{
    size_t nlen = strlen(name);
    int at = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, nlen) != 0)
            continue;
        if (a[2 + nlen] == '=') {
            *value = a + 3 + nlen;
            at = i;
        } else if (a[2 + nlen] == '\0') {
            if (i + 1 >= argc)
                return -1;
            *value = argv[i + 1];
            at = i;
            i++;
        }
    }
    return at;
}

void conf_usage(const conf_table_t *t, FILE *out, int width)
{
    for (size_t i = 0; i < t->n; i++)
        fprintf(out, "  --%-*s %s\n", width, t->s[i].name, t->s[i].help);
}

void conf_dump(const conf_table_t *t, const void *base, FILE *out)
{
    for (size_t i = 0; i < t->n; i++) {
        const conf_setting_t *s = &t->s[i];
        const char *field = (const char *)base + s->off;
        if (s->kind == CONF_STR) {
            fprintf(out, "%s = %s\n", s->name, field);
        } else {
            uint64_t u;
            memcpy(&u, field, sizeof(u));
            fprintf(out, "%s = %llu\n", s->name, (unsigned long long)u);
        }
    }
}
