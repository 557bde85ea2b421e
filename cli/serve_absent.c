/* serve_absent.c - `pi0 serve` in a build without the websocket server: says what is missing.
 * CMake uses it instead of serve.c when libwebsockets or msgpack-c was not found. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define MISSING "this pi0 was built without the server: it needs libwebsockets and msgpack-c " \
                "(Debian: apt-get install libwebsockets-dev libmsgpack-dev), then rebuild"

int pi0_cmd_serve(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: pi0 serve [flags]\n\n%s\n", MISSING);
            return 0;
        }
    fprintf(stderr, "pi0 serve: %s\n", MISSING);
    return 2;
}
