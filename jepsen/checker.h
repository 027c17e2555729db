/* The checkers: per-key linearizability of registers, lost/phantom
 * elements of sets, double-applied counter increments, stale reads and
 * the bank's constant total (transactions).
 * All work on paired ops (history.h) and never do I/O; docs/jepsen.md
 * gives the precise rules each one applies. */
#ifndef SHALE_JEPSEN_CHECKER_H
#define SHALE_JEPSEN_CHECKER_H

#include <stddef.h>
#include <stdint.h>

#include "history.h"

typedef enum { JEP_VALID = 0, JEP_INVALID = 1, JEP_UNKNOWN = 2 } jep_verdict;

typedef enum {
    JEP_MODEL_REGISTER,
    JEP_MODEL_SET,
    JEP_MODEL_COUNTER,
    JEP_MODEL_STALE,
    JEP_MODEL_BANK
} jep_model;

/* The bank workload: every account's opening balance (bank.c). */
#define JEP_BANK_START 100

typedef struct {
    double timeout_s;   /* wall-clock bound on the whole check; <= 0: none */
    uint64_t max_steps; /* search steps per key; 0: none */
    size_t max_cache;   /* memo entries per key; 0: default (8M) */
    int no_minimize;    /* skip shrinking an invalid register witness */
} jep_opts;

/* A growable text buffer. */
typedef struct {
    char *s;
    size_t n, cap;
} jep_buf;
void jep_buf_printf(jep_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jep_buf_free(jep_buf *b);

/* A checker's answer. report is human-readable text: for INVALID the
 * anomaly and the offending sub-history (one op per line), for UNKNOWN
 * why. witness lists the indices (into the ops array given) of that
 * sub-history. Free with jep_result_free. */
typedef struct {
    jep_verdict verdict;
    jep_buf report;
    size_t *witness;
    size_t n_witness;
    uint64_t steps; /* register: search steps over all keys */
    size_t keys;    /* keys checked */
} jep_result;

void jep_result_free(jep_result *r);
const char *jep_verdict_name(jep_verdict v);
const char *jep_model_name(jep_model m);
int jep_model_parse(const char *s, jep_model *m); /* 0 or SHALE_EINVAL */

/* Each returns 0 with *r filled, or SHALE_ENOMEM. ops: sorted by call
 * time as jep_history_ops returns them. Ops of other kinds than the model
 * uses are ignored (e.g. stale_read in the register model). */
int jep_check_register(const jep_op *ops, size_t n, const jep_opts *o, jep_result *r);
int jep_check_set(const jep_op *ops, size_t n, const jep_opts *o, jep_result *r);
int jep_check_counter(const jep_op *ops, size_t n, const jep_opts *o, jep_result *r);
int jep_check_stale(const jep_op *ops, size_t n, const jep_opts *o, jep_result *r);
int jep_check_bank(const jep_op *ops, size_t n, const jep_opts *o, jep_result *r);
int jep_check(jep_model m, const jep_op *ops, size_t n, const jep_opts *o, jep_result *r);

/* One op as a readable line: "p3  write k1 5  ok  [1200, 1850] us  (lines 4-7)". */
void jep_op_format(jep_buf *b, const jep_op *op);

/* Ops by f and outcome, as a small table. */
void jep_summary(jep_buf *b, const jep_op *ops, size_t n);

/* --- internal helpers shared by the checkers ------------------------ */

/* Group ops by key: fills *order with the op indices sorted by (key,
 * call time) and returns the number of distinct keys; *starts (n_keys+1
 * entries) marks where each key's run begins. malloc'd; free both. */
int jep_group_by_key(const jep_op *ops, size_t n, size_t **order, size_t **starts, size_t *n_keys);

double jep_now_s(void);

/* A string -> small int map (ids 1..n in insertion order). Texts are
 * borrowed, not copied. */
typedef struct {
    const char **text; /* id - 1 -> text */
    size_t n;
    int32_t *slot; /* id or 0 */
    size_t mask;
} jep_interner;
int32_t jep_intern(jep_interner *in, const char *text);            /* id, or -1: no memory */
int32_t jep_intern_find(const jep_interner *in, const char *text); /* id, or 0 */
void jep_interner_free(jep_interner *in);

#endif
