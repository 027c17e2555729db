/* conftab.h — the settings table shared by shaled and shale-router: one
 * format for flags and config files.
 *
 * A process describes its settings as a table of conf_setting_t (name,
 * kind, offset into its config struct, bounds, help). This module parses
 * `--name value` / `--name=value` flags and config files of `name = value`
 * lines (`#` comments) against that table, prints --help lines, and dumps
 * the effective settings in the file format (--check-config). Every flag is
 * a file line and the other way round.
 *
 * Owns nothing: it writes into the caller's struct. Never prints except
 * where asked (conf_usage, conf_dump), never exits; errors come back as -1
 * with a message. */
#ifndef SHALE_CONFTAB_H
#define SHALE_CONFTAB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum conf_kind {
    CONF_U64,  /* uint64_t, decimal, within [lo, hi] */
    CONF_STR,  /* char[size], NUL-terminated */
    CONF_BOOL, /* uint64_t 0/1; "1/0, true/false, on/off"; a bare --flag is 1 */
} conf_kind_t;

typedef struct conf_setting {
    const char *name;
    conf_kind_t kind;
    size_t off;  /* offset of the field in the caller's struct */
    size_t size; /* CONF_STR: buffer size */
    const char *help;
    uint64_t lo, hi; /* CONF_U64: allowed range; both 0 (left out): any value */
} conf_setting_t;

typedef struct conf_table {
    const conf_setting_t *s;
    size_t n;
} conf_table_t;

/* Set one setting (name of nlen bytes) of base from text v. 0 ok; -1 with
 * err (unknown name: "unknown option '--NAME'"). */
int conf_set(const conf_table_t *t, void *base, const char *name, size_t nlen, const char *v,
             char *err, size_t errlen);

/* Read a config file into base. 0 ok; -1 with "PATH:LINE: why" in err. */
int conf_file(const conf_table_t *t, void *base, const char *path, char *err, size_t errlen);

/* Apply the flags of argv[1..argc) to base, skipping the process's own
 * options: each name in skip_value takes the next argument as its value
 * (e.g. "config"), each in skip_alone takes none (e.g. "help"). 0 ok; -1
 * with err. */
int conf_args(const conf_table_t *t, void *base, int argc, char **argv,
              const char *const *skip_value, const char *const *skip_alone, char *err,
              size_t errlen);

/* Position of "--NAME VALUE" or "--NAME=VALUE" in argv (the value in
 * *value), 0 when absent, -1 when it has no value. The last one wins. */
int conf_find_arg(int argc, char **argv, const char *name, const char **value);

/* --help lines: "  --NAME  help" with names padded to width. */
void conf_usage(const conf_table_t *t, FILE *out, int width);

/* The effective settings of base as a config file (every setting, one
 * `name = value` line each): what --check-config prints. */
void conf_dump(const conf_table_t *t, const void *base, FILE *out);

#endif
