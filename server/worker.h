/* worker.h - the inference worker: one thread per device, owning that device's pi0_model. It takes
 * queued requests (up to max_batch, from different connections), runs the policy's input
 * transforms, samples them as one batch, builds the replies and hands the requests back to the
 * websocket thread. Not the websocket side (server.c) and not the transforms (src/policy/). */
#ifndef PI0_SERVER_WORKER_H
#define PI0_SERVER_WORKER_H

#include <stdatomic.h>
#include <stdint.h>

#include "common.h"
#include "policy/policy.h"
#include "queue.h"

/* One request on its way through the server. The websocket thread fills the first part and
 * pushes it to the worker queue; from then on the worker owns it until it pushes it to the done
 * queue; then the websocket thread owns it again (sends the reply, or drops it). */
typedef struct pi0_request {
    uint64_t conn_id;            /* the connection it came from (connections are looked up by id) */
    uint8_t *msg;                /* owned: the request message (msgpack) */
    size_t msg_len;
    double queued_ms;            /* monotonic time of the push to the worker queue */
    double prev_total_ms;        /* server_timing.prev_total_ms; < 0: first exchange, absent */
    atomic_int cancelled;        /* set by the websocket thread when the connection is gone */

    uint8_t *reply;              /* owned: the msgpack reply; NULL when the request failed */
    size_t reply_len;
    int close_code;              /* when it failed: the websocket close code (1011, 1009, ...) */
    char error[512];             /* when it failed: one line for the client */

    struct pi0_request *next;    /* the connection's FIFO (websocket thread only) */
} pi0_request;

/* Allocates a request owning a copy of nothing: msg is taken over (may be NULL for local
 * errors). NULL when out of memory. */
pi0_request *pi0_request_new(uint64_t conn_id, uint8_t *msg, size_t msg_len);
void pi0_request_free(pi0_request *r);           /* NULL is a no-op */
/* Marks r failed with a one-line message and a close code. */
void pi0_request_fail(pi0_request *r, int close_code, const char *fmt, ...) PI0_PRINTF(3, 4);

double pi0_now_ms(void);                         /* CLOCK_MONOTONIC in milliseconds */

/* Formats one log line (printf-style, cut at 1 KiB) and hands it to log; log NULL: nothing.
 * The worker and the websocket side both log through it. */
void pi0_log_line(void (*log)(void *ctx, const char *line), void *ctx, const char *fmt, ...)
    PI0_PRINTF(3, 4);

typedef struct {
    const pi0_policy *policy;    /* borrowed; its functions are used from every worker at once */
    pi0_queue *in;               /* requests to run */
    pi0_queue *out;              /* finished requests */
    int max_batch;               /* rows per model call */
    int num_steps;               /* Euler steps (openpi: 10) */
    double request_timeout_ms;   /* a request queued longer than this fails */
    uint64_t noise_seed;         /* worker i draws from seed + i */
    const char *record_dir;      /* or NULL: write <n>_inputs/outputs.safetensors per request */
    atomic_ullong *record_counter; /* shared by the workers: the next <n> */
    void (*notify)(void *ctx);   /* called after pushing to out (wakes the websocket thread) */
    void *notify_ctx;
    void (*log)(void *ctx, const char *line); /* thread-safe; NULL = silent */
    void *log_ctx;
} pi0_worker_config;

typedef struct pi0_worker pi0_worker;

/* Sizes the batch buffers for cfg->max_batch rows of model m (borrowed; m must have been opened
 * with max_batch >= cfg->max_batch). index tells workers apart in logs and noise seeds. */
pi0_status pi0_worker_open(pi0_worker **out, pi0_model *m, int index, const pi0_worker_config *cfg,
                           pi0_error *err);
/* Runs the model on dummy inputs for every batch shape it will see, so that the first request
 * does not pay for first-call work (CUDA graph capture). Does not consume the noise stream. */
pi0_status pi0_worker_warmup(pi0_worker *w, pi0_error *err);
/* Starts the thread; it runs until the in queue is shut down. */
pi0_status pi0_worker_start(pi0_worker *w, pi0_error *err);
void pi0_worker_join(pi0_worker *w);             /* after pi0_queue_shutdown(cfg->in) */
/* What the worker did: model calls, rows sampled, the largest batch. Read after the join. */
void pi0_worker_stats(const pi0_worker *w, long long *n_calls, long long *n_rows, int *max_rows);
void pi0_worker_close(pi0_worker *w);            /* NULL is a no-op; joins first if running */

#endif
