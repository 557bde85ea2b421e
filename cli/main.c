/* main.c - the `pi0` command: dispatches to one subcommand per file (infer, init-random,
 * inspect, bench, serve). Usage errors are one line on stderr and exit code 2. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    { "infer", pi0_cmd_infer, "run sample_actions on an inputs file, write actions (and compare)" },
    { "init-random", pi0_cmd_init_random, "write a checkpoint of random weights (full or tiny)" },
    { "inspect", pi0_cmd_inspect, "show a checkpoint's dimensions, tensors and parameter counts" },
    { "bench", pi0_cmd_bench, "time sample_actions on the benchmark workload" },
    { "serve", pi0_cmd_serve, "serve a policy to openpi's websocket clients" },
};
enum { N_COMMANDS = (int)(sizeof commands / sizeof commands[0]) };

static void usage(FILE *f) {
    fprintf(f, "pi0 - Pi0 robot policy inference (openpi-compatible)\n\n"
               "usage: pi0 <command> [flags]      pi0 <command> --help for its flags\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(cmd, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "pi0: unknown command '%s' (commands: infer, init-random, inspect, bench, "
                    "serve; see pi0 --help)\n", cmd);
    return 2;
}
