/* jepsen-check: check a history file.
 *   jepsen-check HISTORY.jsonl [--model register|set|counter|stale|bank] [--timeout S]
 * Prints the verdict, the offending sub-history of an invalid run and a
 * summary of the ops. Exit 0 valid, 1 invalid, 2 unknown, 3 usage or I/O
 * error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checker.h"
#include "history.h"
#include "shale_errors.h"

static int usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "jepsen-check: %s\n", msg);
    fprintf(stderr, "usage: jepsen-check HISTORY.jsonl [--model register|set|counter|stale|bank] "
                    "[--timeout SECONDS]\n"
                    "exit: 0 valid, 1 invalid, 2 unknown, 3 usage or I/O error\n");
    return 3;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    jep_model model = JEP_MODEL_REGISTER;
    jep_opts opts = {.timeout_s = 60};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model")) {
            if (++i >= argc)
                return usage("--model needs a value");
            if (jep_model_parse(argv[i], &model))
                return usage("unknown model");
        } else if (!strcmp(argv[i], "--timeout")) {
            char *end;
            if (++i >= argc)
                return usage("--timeout needs a value");
            opts.timeout_s = strtod(argv[i], &end);
            if (*end || end == argv[i] || opts.timeout_s <= 0)
                return usage("--timeout must be a positive number of seconds");
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(NULL);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage("unknown option");
        } else if (path) {
            return usage("more than one history file");
        } else {
            path = argv[i];
        }
    }
    if (!path)
        return usage("no history file");
    char err[512];
    jep_history *h;
    int rc = !strcmp(path, "-") ? jep_history_read(stdin, &h, err, sizeof(err))
                                : jep_history_read_file(path, &h, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "jepsen-check: %s\n", err);
        return 3;
    }
    jep_op *ops;
    size_t n;
    if (jep_history_ops(h, &ops, &n, err, sizeof(err))) {
        fprintf(stderr, "jepsen-check: %s: %s\n", path, err);
        jep_history_free(h);
        return 3;
    }
    jep_result r;
    double t0 = jep_now_s();
    if ((rc = jep_check(model, ops, n, &opts, &r))) {
        fprintf(stderr, "jepsen-check: %s\n", shale_strerror(rc));
        free(ops);
        jep_history_free(h);
        return 3;
    }
    double dt = jep_now_s() - t0;
    printf("model: %s   ops: %zu   keys: %zu   check: %.3f s\n", jep_model_name(model), n, r.keys,
           dt);
    if (r.report.n)
        fputs(r.report.s, stdout);
    jep_buf sum = {0};
    jep_summary(&sum, ops, n);
    printf("summary:\n%s", sum.s ? sum.s : "");
    printf("verdict: %s\n", jep_verdict_name(r.verdict));
    int code = r.verdict == JEP_VALID ? 0 : r.verdict == JEP_INVALID ? 1 : 2;
    jep_buf_free(&sum);
    jep_result_free(&r);
    free(ops);
    jep_history_free(h);
    return code;
}
