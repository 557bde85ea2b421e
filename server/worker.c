/* worker.c - the inference worker thread of one device (see worker.h).
 * B batch rows, C cameras, S image size, L prompt slots, A horizon, Da model action dim (32).
 * A batch is filled from whatever is queued when the worker becomes free (no waiting for more:
 * under load batches form by themselves, and an idle server answers a lone request at once). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "batch_buf.h"
#include "rng.h"
#include "safetensors.h"
#include "worker.h"

#define N_ENTRIES(a) ((int)(sizeof(a) / sizeof((a)[0])))

enum { ERROR_CLOSE_CODE = 1011 }; /* what openpi closes with after any failure (SERVING_SPEC 1.7) */

/* ---- requests ---------------------------------------------------------------------------- */

pi0_request *pi0_request_new(uint64_t conn_id, uint8_t *msg, size_t msg_len) {
    pi0_request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->conn_id = conn_id;
    r->msg = msg;
    r->msg_len = msg_len;
    r->prev_total_ms = -1.0;
    atomic_init(&r->cancelled, 0);
    return r;
}

void pi0_request_free(pi0_request *r) {
    if (!r) return;
    free(r->msg);
    free(r->reply);
    free(r);
}

void pi0_request_fail(pi0_request *r, int close_code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    /* One line: the client shows it verbatim after "Error in inference server:". */
    for (char *p = r->error; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    if (!r->error[0]) snprintf(r->error, sizeof r->error, "request failed");
    r->close_code = close_code;
    free(r->reply);
    r->reply = NULL;
    r->reply_len = 0;
}

void pi0_log_line(void (*log)(void *ctx, const char *line), void *ctx, const char *fmt, ...) {
    if (!log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log(ctx, line);
}

double pi0_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ---- the worker ---------------------------------------------------------------------------- */

struct pi0_worker {
    pi0_worker_config cfg;
    pi0_model *model;            /* borrowed */
    int index;
    pi0_rng rng;                 /* noise: any good generator serves (rng.h) */
    pthread_t thread;
    bool running;

    pi0_policy_row *rows;        /* [max_batch], buffers owned by each row */
    pi0_batch_buf in;            /* the model inputs of up to max_batch rows */
    float *actions;              /* [B, A, Da] */
    int *slot;                   /* [B] per queued request: its batch row, or -1 */
    double *prep_ms, *model_ms;  /* [B] per queued request */
    long long n_calls, n_rows;   /* statistics for the shutdown log */
    int max_rows;
};

#define worker_log(w, ...) pi0_log_line((w)->cfg.log, (w)->cfg.log_ctx, __VA_ARGS__)

void pi0_worker_close(pi0_worker *w) {
    if (!w) return;
    pi0_worker_join(w);
    if (w->rows)
        for (int b = 0; b < w->cfg.max_batch; b++) pi0_policy_row_free(&w->rows[b]);
    free(w->rows);
    pi0_batch_buf_free(&w->in);
    free(w->actions);
    free(w->slot);
    free(w->prep_ms);
    free(w->model_ms);
    free(w);
}

pi0_status pi0_worker_open(pi0_worker **out, pi0_model *m, int index, const pi0_worker_config *cfg,
                           pi0_error *err) {
    *out = NULL;
    if (cfg->max_batch < 1)
        return pi0_fail(err, PI0_ERR_INPUT, "max batch is %d, expected >= 1", cfg->max_batch);
    pi0_worker *w = calloc(1, sizeof *w);
    if (!w) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for a worker");
    w->cfg = *cfg;
    w->model = m;
    w->index = index;
    pi0_rng_seed(&w->rng, cfg->noise_seed + (uint64_t)index);
    const int B = cfg->max_batch;
    pi0_status st = PI0_OK;
    w->rows = calloc((size_t)B, sizeof *w->rows);
    if (!w->rows) {
        st = pi0_fail(err, PI0_ERR_NOMEM, "out of memory for %d request rows", B);
        goto fail;
    }
    for (int b = 0; b < B; b++)
        if ((st = pi0_policy_row_alloc(cfg->policy, &w->rows[b], err)) != PI0_OK) goto fail;
    const pi0_dims *d = pi0_model_dims(m);
    const pi0_policy_row *r0 = &w->rows[0];
    if (r0->image_size != d->image_size || r0->action_dim != d->action_dim) {
        st = pi0_fail(err, PI0_ERR_SHAPE, "the policy makes %dx%d images and %d state values, the "
                      "model takes %dx%d and %d", r0->image_size, r0->image_size, r0->action_dim,
                      d->image_size, d->image_size, d->action_dim);
        goto fail;
    }
    const size_t act = (size_t)d->action_horizon * d->action_dim;
    if (pi0_batch_buf_alloc(&w->in, B, r0->n_cameras, r0->image_size, r0->n_tokens,
                            d->action_horizon, d->action_dim) != 0) {
        st = pi0_fail(err, PI0_ERR_NOMEM, "out of memory for batch buffers of %d rows", B);
        goto fail;
    }
    w->actions = malloc((size_t)B * act * sizeof *w->actions);
    w->slot = malloc((size_t)B * sizeof *w->slot);
    w->prep_ms = malloc((size_t)B * sizeof *w->prep_ms);
    w->model_ms = malloc((size_t)B * sizeof *w->model_ms);
    if (!w->actions || !w->slot || !w->prep_ms || !w->model_ms) {
        st = pi0_fail(err, PI0_ERR_NOMEM, "out of memory for batch buffers of %d rows", B);
        goto fail;
    }
    *out = w;
    return PI0_OK;
fail:
    pi0_worker_close(w);
    return st;
}

/* The actions [A, Da] of batch row b. */
static float *row_actions(const pi0_worker *w, int b) {
    return w->actions + (size_t)b * w->in.A * w->in.Da;
}

static pi0_batch batch_of(const pi0_worker *w, int B) {
    return pi0_batch_buf_rows(&w->in, B, w->cfg.num_steps);
}

/* Row b of the batch buffers as its own one-row batch (to retry rows one by one). */
static pi0_batch batch_row(const pi0_worker *w, int b) {
    return pi0_batch_buf_row(&w->in, b, w->cfg.num_steps);
}

pi0_status pi0_worker_warmup(pi0_worker *w, pi0_error *err) {
    /* Gray images, the empty prompt ([bos, "\n"]), zero state, noise from its own generator. The
     * camera patterns are those of the presets: two cameras and a missing one (DROID, LIBERO,
     * ALOHA without the right wrist), and all three; the CUDA backend captures a graph per shape. */
    pi0_rng g;
    pi0_rng_seed(&g, 0x5eedull);
    const int B = w->cfg.max_batch;
    pi0_batch_buf *in = &w->in;
    memset(in->images, 0, (size_t)B * in->C * in->S * in->S * 3 * sizeof *in->images);
    memset(in->state, 0, (size_t)B * in->Da * sizeof *in->state);
    for (int b = 0; b < B; b++)
        for (int l = 0; l < in->L; l++) {
            in->tokens[b * in->L + l] = l == 0 ? 2 : l == 1 ? 108 : 0;
            in->token_mask[b * in->L + l] = l < 2;
        }
    for (size_t i = 0; i < (size_t)B * in->A * in->Da; i++) in->noise[i] = pi0_rng_normal(&g);
    /* On the CPU every shape costs the same and a full-size run takes long: one is enough. */
    const bool every_shape = pi0_model_backend(w->model) != PI0_BACKEND_CPU;
    for (int n = every_shape ? 1 : B; n <= B; n++) {
        for (int pattern = 0; pattern < (every_shape ? 2 : 1); pattern++) {
            for (int b = 0; b < n; b++)
                for (int c = 0; c < in->C; c++) in->image_masks[b * in->C + c] = pattern || c < 2;
            pi0_batch batch = batch_of(w, n);
            pi0_outputs outs = { .actions = w->actions };
            double t0 = pi0_now_ms();
            pi0_status st = pi0_model_sample(w->model, &batch, &outs, err);
            if (st != PI0_OK) return pi0_fail_context(err, st, "warm-up with %d rows", n);
            worker_log(w, "worker %d: warm-up with %d row%s, cameras %s: %.1f ms", w->index, n,
                       n > 1 ? "s" : "", pattern ? "3 of 3" : "2 of 3", pi0_now_ms() - t0);
        }
    }
    return PI0_OK;
}

/* ---- recording (--record) ------------------------------------------------------------------ */

static void record_row(pi0_worker *w, int b) {
    unsigned long long n = atomic_fetch_add(w->cfg.record_counter, 1);
    pi0_batch r = batch_row(w, b);
    const int32_t steps = w->cfg.num_steps;
    const pi0_st_write_entry inputs[] = {
        { "images", PI0_DT_F32, 5, { 1, w->in.C, w->in.S, w->in.S, 3 }, r.images, NULL, NULL },
        { "image_masks", PI0_DT_U8, 2, { 1, w->in.C }, r.image_masks, NULL, NULL },
        { "tokens", PI0_DT_I32, 2, { 1, w->in.L }, r.tokens, NULL, NULL },
        { "token_mask", PI0_DT_U8, 2, { 1, w->in.L }, r.token_mask, NULL, NULL },
        { "state", PI0_DT_F32, 2, { 1, w->in.Da }, r.state, NULL, NULL },
        { "noise", PI0_DT_F32, 3, { 1, w->in.A, w->in.Da }, r.noise, NULL, NULL },
        { "num_steps", PI0_DT_I32, 1, { 1 }, &steps, NULL, NULL },
    };
    const pi0_st_write_entry outputs[] = {
        { "actions", PI0_DT_F32, 3, { 1, w->in.A, w->in.Da }, row_actions(w, b),
          NULL, NULL },
    };
    char path[4096];
    pi0_error err;
    snprintf(path, sizeof path, "%s/%llu_inputs.safetensors", w->cfg.record_dir, n);
    if (pi0_safetensors_write(path, inputs, N_ENTRIES(inputs), &err) != PI0_OK) goto fail;
    snprintf(path, sizeof path, "%s/%llu_outputs.safetensors", w->cfg.record_dir, n);
    if (pi0_safetensors_write(path, outputs, N_ENTRIES(outputs), &err) != PI0_OK) goto fail;
    return;
fail:
    worker_log(w, "worker %d: --record: %s", w->index, err.msg);
}

/* ---- one batch ------------------------------------------------------------------------------ */

static void copy_row_in(pi0_worker *w, int b, const pi0_policy_row *row) {
    const size_t img = (size_t)w->in.C * w->in.S * w->in.S * 3;
    memcpy(w->in.images + (size_t)b * img, row->images, img * sizeof *w->in.images);
    memcpy(w->in.image_masks + (size_t)b * w->in.C, row->image_masks, (size_t)w->in.C);
    memcpy(w->in.tokens + (size_t)b * w->in.L, row->tokens,
           (size_t)w->in.L * sizeof *w->in.tokens);
    memcpy(w->in.token_mask + (size_t)b * w->in.L, row->token_mask, (size_t)w->in.L);
    memcpy(w->in.state + (size_t)b * w->in.Da, row->state,
           (size_t)w->in.Da * sizeof *w->in.state);
    const size_t act = (size_t)w->in.A * w->in.Da;
    for (size_t i = 0; i < act; i++) w->in.noise[(size_t)b * act + i] = pi0_rng_normal(&w->rng);
}

static void run_batch(pi0_worker *w, pi0_request **reqs, int n) {
    int *slot = w->slot;          /* request k -> batch row, or -1 when it is not in the batch */
    int B = 0;
    for (int k = 0; k < n; k++) {
        pi0_request *r = reqs[k];
        slot[k] = -1;
        if (atomic_load(&r->cancelled)) continue;        /* the client left: skip the work */
        double t0 = pi0_now_ms(), waited = t0 - r->queued_ms;
        if (waited > w->cfg.request_timeout_ms) {
            pi0_request_fail(r, ERROR_CLOSE_CODE, "request waited %.1f s for the model, more than "
                             "the server's --request-timeout-s %g", waited / 1e3,
                             w->cfg.request_timeout_ms / 1e3);
            continue;
        }
        pi0_error err;
        if (pi0_policy_prepare(w->cfg.policy, r->msg, r->msg_len, &w->rows[B], &err) != PI0_OK) {
            pi0_request_fail(r, ERROR_CLOSE_CODE, "%s", err.msg);
            continue;
        }
        copy_row_in(w, B, &w->rows[B]);
        w->prep_ms[k] = pi0_now_ms() - t0;
        slot[k] = B++;
    }
    if (B > 0) {
        pi0_batch batch = batch_of(w, B);
        pi0_outputs outs = { .actions = w->actions };
        pi0_error err;
        double t0 = pi0_now_ms();
        pi0_status st = pi0_model_sample(w->model, &batch, &outs, &err);
        double model_ms = pi0_now_ms() - t0;
        for (int k = 0; k < n; k++) w->model_ms[k] = model_ms;
        w->n_calls++;
        w->n_rows += B;
        if (B > w->max_rows) w->max_rows = B;
        if (st != PI0_OK) {
            /* One bad row (a token id past the vocabulary, ...) must not fail the others: retry
             * the rows one by one and fail only those that fail alone. */
            for (int k = 0; k < n; k++) {
                if (slot[k] < 0) continue;
                pi0_batch one = batch_row(w, slot[k]);
                pi0_outputs one_out = { .actions = row_actions(w, slot[k]) };
                double t1 = pi0_now_ms();
                if (B == 1 || pi0_model_sample(w->model, &one, &one_out, &err) != PI0_OK) {
                    pi0_request_fail(reqs[k], ERROR_CLOSE_CODE, "%s", err.msg);
                    slot[k] = -1;
                }
                w->model_ms[k] = pi0_now_ms() - t1;
            }
        }
    }
    for (int k = 0; k < n; k++) {
        pi0_request *r = reqs[k];
        if (slot[k] < 0) continue;
        const int b = slot[k];
        /* policy_timing: the model call (device-complete: sample returns host actions);
         * server_timing: this request's transforms and the model call (SERVING_SPEC 1.6). */
        pi0_reply_timing timing = {
            .policy_infer_ms = w->model_ms[k],
            .server_infer_ms = w->prep_ms[k] + w->model_ms[k],
            .prev_total_ms = r->prev_total_ms,
        };
        pi0_error err;
        if (pi0_policy_reply(w->cfg.policy, &w->rows[b], row_actions(w, b),
                             &timing, &r->reply, &r->reply_len, &err) != PI0_OK) {
            pi0_request_fail(r, ERROR_CLOSE_CODE, "%s", err.msg);
            continue;
        }
        if (w->cfg.record_dir) record_row(w, b);
    }
}

static void *worker_main(void *arg) {
    pi0_worker *w = arg;
    pi0_request **reqs = calloc((size_t)w->cfg.max_batch, sizeof *reqs);
    if (!reqs) {
        worker_log(w, "worker %d: out of memory, not serving", w->index);
        return NULL;
    }
    int n;
    while ((n = pi0_queue_pop(w->cfg.in, (void **)reqs, w->cfg.max_batch, true)) > 0) {
        run_batch(w, reqs, n);
        for (int k = 0; k < n; k++) {
            if (reqs[k]->error[0])
                worker_log(w, "request of connection %llu failed: %s",
                           (unsigned long long)reqs[k]->conn_id, reqs[k]->error);
            /* The done queue holds every request in flight, so it cannot be full. */
            if (!pi0_queue_push(w->cfg.out, reqs[k])) pi0_request_free(reqs[k]);
        }
        if (w->cfg.notify) w->cfg.notify(w->cfg.notify_ctx);
    }
    free(reqs);
    return NULL;
}

pi0_status pi0_worker_start(pi0_worker *w, pi0_error *err) {
    /* Signals go to the websocket thread, which turns SIGINT/SIGTERM into a clean shutdown: the
     * worker starts with them blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return pi0_fail(err, PI0_ERR_NOMEM, "cannot start worker thread %d: %s", w->index,
                        strerror(rc));
    w->running = true;
    return PI0_OK;
}

void pi0_worker_stats(const pi0_worker *w, long long *n_calls, long long *n_rows, int *max_rows) {
    *n_calls = w->n_calls;
    *n_rows = w->n_rows;
    *max_rows = w->max_rows;
}

void pi0_worker_join(pi0_worker *w) {
    if (w && w->running) {
        pthread_join(w->thread, NULL);
        w->running = false;
    }
}
