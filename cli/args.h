/* args.h - the small flag parser every subcommand uses: "--flag VALUE" and "--flag=VALUE",
 * booleans as bare "--flag", ints, floats, strings and comma lists ("1,2,4"). Unknown flags and
 * stray arguments are rejected by name. Usage:
 *     const char *model = NULL; int threads = 0; bool verbose = false;
 *     const pi0_arg args[] = {
 *         { "--model", PI0_ARG_STRING, &model, "DIR", "checkpoint directory (required)" },
 *         { "--threads", PI0_ARG_INT, &threads, "N", "CPU threads (0 = one per core)" },
 *         { "--verbose", PI0_ARG_BOOL, &verbose, NULL, "print progress on stderr" },
 *     };
 *     int rc = pi0_args_parse("infer", "pi0 infer --model DIR [flags]", args, PI0_N_ARGS(args),
 *                             argc, argv);
 *     if (rc != PI0_ARGS_OK) return rc == PI0_ARGS_HELP ? 0 : 2;
 * The values keep their defaults when a flag is absent. "--help" / "-h" print the usage on
 * stdout. Errors are one line on stderr: "pi0 infer: unknown flag --modle (see pi0 infer --help)". */
#ifndef PI0_CLI_ARGS_H
#define PI0_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    PI0_ARG_BOOL,     /* bool *: set to true by "--flag" (no value) */
    PI0_ARG_INT,      /* int * */
    PI0_ARG_U64,      /* uint64_t * (seeds) */
    PI0_ARG_FLOAT,    /* double * */
    PI0_ARG_STRING,   /* const char **: points into argv */
    PI0_ARG_INT_LIST, /* pi0_int_list * */
} pi0_arg_kind;

enum { PI0_INT_LIST_MAX = 64 };
typedef struct {
    int n;
    int v[PI0_INT_LIST_MAX];
} pi0_int_list;

typedef struct {
    const char *name;   /* "--model" */
    pi0_arg_kind kind;
    void *dst;
    const char *meta;   /* value placeholder in the usage ("DIR"); NULL for booleans */
    const char *help;   /* one line */
} pi0_arg;

#define PI0_N_ARGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

enum { PI0_ARGS_OK = 0, PI0_ARGS_HELP = 1, PI0_ARGS_ERROR = 2 };

/* Parses argv[1..argc-1] (argv[0] is the subcommand). cmd names the subcommand in messages;
 * usage is the synopsis line printed first by --help. */
int pi0_args_parse(const char *cmd, const char *usage, const pi0_arg *args, int n_args, int argc,
                   char **argv);
void pi0_args_usage(FILE *f, const char *usage, const pi0_arg *args, int n_args);

/* Parses "1,2,4" into list; false (and a message on stderr naming what) on a bad list. */
bool pi0_int_list_parse(const char *cmd, const char *what, const char *text, pi0_int_list *list);

#endif
