/* Jepsen histories: the event model, the JSON-lines file format and the
 * pairing of invoke/completion events into operations.
 *
 * One event per line, one JSON object per event:
 *   {"process":3,"type":"invoke","f":"write","key":"k1","value":5,"time_us":1200}
 *   {"process":3,"type":"ok","f":"write","key":"k1","value":5,"time_us":1850}
 * type: invoke | ok | fail | info.  f: read | write | cas | add | incr |
 * stale_read | transfer.  "value" is a scalar (integer, string, null) or,
 * for the final read of a set, a read of the bank's accounts and a
 * transfer ([from, to, amount]), an array of scalars; "expect" is the expected value
 * of a cas; "bound_ms" the staleness bound of a stale_read. Unknown fields
 * are skipped. docs/jepsen.md describes the semantics. */
#ifndef SHALE_JEPSEN_HISTORY_H
#define SHALE_JEPSEN_HISTORY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { JEP_INVOKE, JEP_OK, JEP_FAIL, JEP_INFO } jep_type;
#define JEP_NTYPES 4

typedef enum { JEP_READ, JEP_WRITE, JEP_CAS, JEP_ADD, JEP_INCR, JEP_STALE_READ, JEP_TRANSFER } jep_fn;
#define JEP_NFNS 7

/* What a "value" / "expect" field held. Scalars are kept as canonical JSON
 * text (integers re-printed, strings with their quotes, exactly as
 * written otherwise), so two values are equal iff their texts are. */
typedef enum { JEP_V_NONE, JEP_V_NULL, JEP_V_SCALAR, JEP_V_ARRAY } jep_vkind;

typedef struct {
    jep_vkind kind;
    char *text;   /* JEP_V_SCALAR: canonical text; else NULL */
    char **elems; /* JEP_V_ARRAY: n canonical scalar texts */
    size_t n;
} jep_value;

/* One line of a history. Strings are owned by the history holding it. */
typedef struct {
    int64_t process;
    jep_type type;
    jep_fn f;
    char *key;
    jep_value value;
    jep_value expect;
    int64_t time_us;
    int64_t bound_ms; /* -1 when absent */
    int line;         /* 1-based line in the file (0 when built in memory) */
} jep_event;

typedef struct {
    jep_event *ev;
    size_t n, cap;
} jep_history;

/* An invoke paired with its completion. A process with an invoke and no
 * completion by the end of the history yields an INFO op. */
typedef struct {
    int64_t process;
    jep_fn f;
    jep_type outcome;        /* JEP_OK, JEP_FAIL or JEP_INFO */
    const char *key;         /* borrowed from the history */
    const jep_value *value;  /* read: the completion's value; others: the invoke's */
    const jep_value *expect; /* cas only (else a JEP_V_NONE value) */
    int64_t call_us;
    int64_t ret_us;          /* INT64_MAX for INFO */
    int64_t bound_ms;        /* stale_read: the bound; -1 otherwise */
    int call_line, ret_line; /* ret_line 0 when there was no completion */
} jep_op;

const char *jep_type_name(jep_type t);
const char *jep_fn_name(jep_fn f);

/* An empty history. Free with jep_history_free. NULL on allocation failure. */
jep_history *jep_history_new(void);
void jep_history_free(jep_history *h);

/* Append one event built from C strings (copied). value/expect are JSON
 * text ("5", "\"a\"", "null", "[1,2]") or NULL for absent; bound_ms -1 for
 * absent. Returns 0, SHALE_EINVAL (bad JSON text) or SHALE_ENOMEM. */
int jep_history_append(jep_history *h, int64_t process, jep_type type, jep_fn f, const char *key,
                       const char *value, const char *expect, int64_t time_us, int64_t bound_ms);

/* Parse one line into *ev (strings malloc'd; free with jep_event_clear).
 * Returns 0 or SHALE_EINVAL with a message in err ("bad f \"foo\"", ...). */
int jep_event_parse(const char *line, size_t len, jep_event *ev, char *err, size_t errlen);
void jep_event_clear(jep_event *ev);

/* Read a whole JSON-lines stream / file. Blank lines are skipped. On error
 * returns SHALE_EINVAL (err names the line and the problem), SHALE_EIO or
 * SHALE_ENOMEM and *out is NULL. The caller frees *out with jep_history_free. */
int jep_history_read(FILE *f, jep_history **out, char *err, size_t errlen);
int jep_history_read_file(const char *path, jep_history **out, char *err, size_t errlen);
int jep_history_parse(const char *text, jep_history **out, char *err, size_t errlen);

/* Write one event as one line (with '\n'). Returns 0 or SHALE_EIO. */
int jep_event_write(FILE *f, const jep_event *ev);
int jep_history_write(FILE *f, const jep_history *h);

/* Pair invokes with completions, per process, in file order. Rules:
 *  - a completion must follow an open invoke of the same process, with the
 *    same f and key (else SHALE_EINVAL naming both lines);
 *  - a second invoke while one is open is an error (a process is
 *    sequential; a client that times out continues as a new process);
 *  - invokes still open at the end become INFO ops;
 *  - ops are ordered by invoke time (then line).
 * *ops is malloc'd (free with free()); it borrows strings from h. */
int jep_history_ops(const jep_history *h, jep_op **ops, size_t *n, char *err, size_t errlen);

/* Print v's JSON text into buf (truncating). Returns buf. */
const char *jep_value_str(const jep_value *v, char *buf, size_t len);
int jep_value_eq(const jep_value *a, const jep_value *b);

#endif
