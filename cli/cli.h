/* cli.h - the subcommands of the `pi0` command. Each takes the arguments after its name
 * (argv[0] is the subcommand name) and returns the process exit code: 0 success, 1 failure,
 * 2 bad usage (unknown flag, missing file). */
#ifndef PI0_CLI_H
#define PI0_CLI_H

int pi0_cmd_infer(int argc, char **argv);        /* infer.c */
int pi0_cmd_init_random(int argc, char **argv);  /* init_random.c */
int pi0_cmd_inspect(int argc, char **argv);      /* inspect.c */
int pi0_cmd_bench(int argc, char **argv);        /* bench.c */
int pi0_cmd_serve(int argc, char **argv);        /* serve.c, or serve_absent.c without the server */

#endif
