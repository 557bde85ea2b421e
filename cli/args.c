/* args.c - the flag parser of the `pi0` subcommands (see args.h). It prints only usage and
 * one-line errors; what a flag means is up to the subcommand. */
#include "args.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void pi0_args_usage(FILE *f, const char *usage, const pi0_arg *args, int n_args) {
    fprintf(f, "usage: %s\n", usage);
    if (n_args) fprintf(f, "\nflags:\n");
    for (int i = 0; i < n_args; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", args[i].name, args[i].meta ? " " : "",
                 args[i].meta ? args[i].meta : "");
        fprintf(f, "  %-26s %s\n", left, args[i].help);
    }
    fprintf(f, "  %-26s %s\n", "--help", "show this help");
}

static bool parse_long(const char *text, long long lo, long long hi, long long *out) {
    if (!*text) return false;
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool pi0_int_list_parse(const char *cmd, const char *what, const char *text, pi0_int_list *list) {
    list->n = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char item[32];
        long long v;
        if (n == 0 || n >= sizeof item) goto bad;
        memcpy(item, p, n);
        item[n] = '\0';
        if (!parse_long(item, INT_MIN, INT_MAX, &v)) goto bad;
        if (list->n == PI0_INT_LIST_MAX) {
            fprintf(stderr, "pi0 %s: %s: more than %d values in '%s'\n", cmd, what,
                    PI0_INT_LIST_MAX, text);
            return false;
        }
        list->v[list->n++] = (int)v;
        if (!comma) return true;
        p = comma + 1;
    }
bad:
    fprintf(stderr, "pi0 %s: %s expects a comma-separated list of integers like 1,2,4, got '%s'\n",
            cmd, what, text);
    return false;
}

static bool set_value(const char *cmd, const pi0_arg *a, const char *value) {
    long long v;
    switch (a->kind) {
    case PI0_ARG_BOOL:
        return true;
    case PI0_ARG_INT:
        if (!parse_long(value, INT_MIN, INT_MAX, &v)) break;
        *(int *)a->dst = (int)v;
        return true;
    case PI0_ARG_U64: {
        char *end;
        errno = 0;
        if (!*value || *value == '-') break;
        unsigned long long u = strtoull(value, &end, 0);
        if (errno || *end) break;
        *(uint64_t *)a->dst = (uint64_t)u;
        return true;
    }
    case PI0_ARG_FLOAT: {
        char *end;
        errno = 0;
        double d = strtod(value, &end);
        if (!*value || errno || *end || !isfinite(d)) break;
        *(double *)a->dst = d;
        return true;
    }
    case PI0_ARG_STRING:
        *(const char **)a->dst = value;
        return true;
    case PI0_ARG_INT_LIST:
        return pi0_int_list_parse(cmd, a->name, value, (pi0_int_list *)a->dst);
    }
    static const char *const expected[] = { "", "an integer", "a non-negative integer", "a number",
                                            "", "" };
    fprintf(stderr, "pi0 %s: %s expects %s, got '%s'\n", cmd, a->name, expected[a->kind], value);
    return false;
}

int pi0_args_parse(const char *cmd, const char *usage, const pi0_arg *args, int n_args, int argc,
                   char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            pi0_args_usage(stdout, usage, args, n_args);
            return PI0_ARGS_HELP;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "pi0 %s: unexpected argument '%s' (see pi0 %s --help)\n", cmd, arg, cmd);
            return PI0_ARGS_ERROR;
        }
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const pi0_arg *a = NULL;
        for (int k = 0; k < n_args && !a; k++)
            if (strlen(args[k].name) == name_len && !strncmp(args[k].name, arg, name_len)) a = &args[k];
        if (!a) {
            fprintf(stderr, "pi0 %s: unknown flag %.*s (see pi0 %s --help)\n", cmd, (int)name_len,
                    arg, cmd);
            return PI0_ARGS_ERROR;
        }
        if (a->kind == PI0_ARG_BOOL) {
            if (eq) {
                fprintf(stderr, "pi0 %s: %s takes no value\n", cmd, a->name);
                return PI0_ARGS_ERROR;
            }
            *(bool *)a->dst = true;
            continue;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "pi0 %s: %s needs a value (%s)\n", cmd, a->name,
                        a->meta ? a->meta : "VALUE");
                return PI0_ARGS_ERROR;
            }
            value = argv[++i];
        }
        if (!set_value(cmd, a, value)) return PI0_ARGS_ERROR;
    }
    return PI0_ARGS_OK;
}
