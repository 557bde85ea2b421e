/* server.h - openpi's websocket policy server (SERVING_SPEC 1) on libwebsockets: one I/O thread
 * for every connection (handshakes, pings, reassembly, replies) and one inference worker per
 * device (worker.h). Requests from different connections may share a model call; each
 * connection still gets its replies in order, one per request.
 *   pi0_server_open(&s, &opt, &err);   warms the models up, then binds: "ready" means loaded
 *   pi0_server_run(s, &err);           until pi0_server_stop(s), e.g. from a signal handler
 *   pi0_server_close(s); */
#ifndef PI0_SERVER_H
#define PI0_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "policy/policy.h"

typedef struct {
    const char *host;            /* bind address ("0.0.0.0": every IPv4 interface) */
    int port;                    /* 0: any free port (see pi0_server_port) */
    size_t max_message_bytes;    /* larger requests get an error and close 1009 */
    int max_clients;             /* more concurrent connections are refused with HTTP 503 */
    double request_timeout_s;    /* a request queued longer than this fails */
    double keepalive_s;          /* ping every keepalive_s, drop if unanswered as long; 0 = off */
    int max_batch;               /* requests per model call */
    int num_steps;               /* Euler steps */
    uint64_t noise_seed;
    const char *record_dir;      /* NULL, or write every request's model inputs and outputs here */
    const pi0_policy *policy;    /* borrowed */
    pi0_model *const *models;    /* borrowed: one per device, each opened with max_batch rows */
    int n_models;
    void (*log)(void *ctx, const char *line); /* called from several threads; NULL = silent */
    void *log_ctx;
} pi0_server_options;

typedef struct pi0_server pi0_server;

pi0_status pi0_server_open(pi0_server **out, const pi0_server_options *opt, pi0_error *err);
int pi0_server_port(const pi0_server *s);          /* the port bound */
/* Serves until pi0_server_stop; then closes every connection and stops the workers. */
pi0_status pi0_server_run(pi0_server *s, pi0_error *err);
void pi0_server_stop(pi0_server *s);               /* async-signal-safe */
void pi0_server_close(pi0_server *s);              /* NULL is a no-op */

#endif
