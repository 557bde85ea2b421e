/* pi0.c - the public API of include/pi0.h: open a model (config + checkpoint, or random
 * weights), pick the backend, check every input before a backend sees it, and split sample
 * into upload + run + download. The computing is done by the backends (cpu/, cuda/); the
 * dimension functions live in config.c. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Random weights of models above this size are drawn in bf16, as real checkpoints are stored
 * (and `pi0 init-random` writes): the full model is 6.5 GB in bf16, 13 GB in f32. */
#define PI0_RANDOM_F32_MAX_PARAMS ((int64_t)100 * 1000 * 1000)

enum { MAX_STEPS = 1000, MAX_BATCH = 4096 };

pi0_options pi0_options_default(void) {
    return (pi0_options){
        .backend = PI0_BACKEND_CPU,
        .max_batch = 1,
        .skip_masked_cameras = 1,
        .opt_flags = PI0_OPT_ALL,
    };
}

int pi0_backend_built(pi0_backend b) {
    switch (b) {
    case PI0_BACKEND_CPU: return 1;
    case PI0_BACKEND_CUDA: return pi0_cuda_built;
    }
    return 0;
}

const char *pi0_backend_name(pi0_backend b) {
    switch (b) {
    case PI0_BACKEND_CPU: return "cpu";
    case PI0_BACKEND_CUDA: return "cuda";
    }
    return "unknown";
}

void pi0_log(const pi0_model *m, const char *fmt, ...) {
    if (!m || !m->opt.log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    m->opt.log(m->opt.log_ctx, line);
}

void pi0_model_close(pi0_model *m) {
    if (!m) return;
    if (m->ops && m->ops->close) m->ops->close(m);
    pi0_weights_free(&m->w);
    pi0_safetensors_close(m->file);
    free(m->random_storage);
    free(m->model_dir);
    free(m);
}

/* "dir/name" into a malloc'd string. */
static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static pi0_status load_checkpoint(pi0_model *m, pi0_error *err) {
    pi0_status st;
    char *config = path_join(m->model_dir, "config.json");
    char *weights = path_join(m->model_dir, "model.safetensors");
    if (!config || !weights) {
        st = pi0_fail(err, PI0_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = pi0_dims_load(&m->dims, config, err)) != PI0_OK) goto done;
    pi0_log(m, "opening %s", weights);
    if ((st = pi0_safetensors_open(&m->file, weights, err)) != PI0_OK) goto done;
    if ((st = pi0_weights_bind(&m->w, &m->dims, m->file, err)) != PI0_OK) {
        st = pi0_fail_context(err, st, "%s", weights);
        goto done;
    }
    pi0_log(m, "%s: %d tensors in the file, %zu bytes", weights,
            pi0_safetensors_count(m->file), pi0_safetensors_file_bytes(m->file));
done:
    free(config);
    free(weights);
    return st;
}

pi0_status pi0_model_open(pi0_model **out, const pi0_options *opt, pi0_error *err) {
    *out = NULL;
    if (!opt) return pi0_fail(err, PI0_ERR_INPUT, "options are NULL (use pi0_options_default())");
    if (!opt->model_dir == !opt->random_dims)
        return pi0_fail(err, PI0_ERR_INPUT,
                        "give exactly one of options.model_dir and options.random_dims");
    if (opt->backend != PI0_BACKEND_CPU && opt->backend != PI0_BACKEND_CUDA)
        return pi0_fail(err, PI0_ERR_INPUT, "options.backend is %d, expected CPU (0) or CUDA (1)",
                        (int)opt->backend);
    if (opt->max_batch < 1 || opt->max_batch > MAX_BATCH)
        return pi0_fail(err, PI0_ERR_INPUT, "options.max_batch is %d, expected 1..%d",
                        opt->max_batch, MAX_BATCH);
    if (opt->n_threads < 0 || opt->n_threads > 4096)
        return pi0_fail(err, PI0_ERR_INPUT, "options.n_threads is %d, expected 0 (one per core)..4096",
                        opt->n_threads);
    if (opt->device < 0)
        return pi0_fail(err, PI0_ERR_INPUT, "options.device is %d, expected >= 0", opt->device);

    pi0_status st;
    pi0_model *m = calloc(1, sizeof *m);
    if (!m) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory");
    m->opt = *opt;
    if (opt->model_dir) {
        if (!(m->model_dir = strdup(opt->model_dir))) {
            st = pi0_fail(err, PI0_ERR_NOMEM, "out of memory");
            goto fail;
        }
        m->opt.model_dir = m->model_dir;
        if ((st = load_checkpoint(m, err)) != PI0_OK) goto fail;
    } else {
        m->dims = *opt->random_dims;
        m->opt.random_dims = &m->dims;
        if ((st = pi0_dims_check(&m->dims, err)) != PI0_OK) goto fail;
        pi0_param_counts pc = pi0_dims_param_counts(&m->dims);
        pi0_dtype dt = pc.total > PI0_RANDOM_F32_MAX_PARAMS ? PI0_DT_BF16 : PI0_DT_F32;
        pi0_log(m, "drawing %lld random %s weights (seed %llu)", (long long)pc.total,
                pi0_dtype_name(dt), (unsigned long long)opt->random_seed);
        st = pi0_weights_random(&m->w, &m->dims, dt, opt->random_seed, &m->random_storage, err);
        if (st != PI0_OK) goto fail;
    }

    m->ops = opt->backend == PI0_BACKEND_CUDA ? &pi0_backend_cuda : &pi0_backend_cpu;
    pi0_log(m, "starting the %s backend", m->ops->name);
    if ((st = m->ops->open(m, err)) != PI0_OK) goto fail;
    if (!m->device_name[0])
        snprintf(m->device_name, sizeof m->device_name, "%s", m->ops->name);
    *out = m;
    return PI0_OK;
fail:
    pi0_model_close(m);
    return st;
}

const pi0_dims *pi0_model_dims(const pi0_model *m) { return &m->dims; }

pi0_backend pi0_model_backend(const pi0_model *m) { return m->opt.backend; }

const char *pi0_model_device_name(const pi0_model *m) { return m->device_name; }

/* ---- input checks ------------------------------------------------------------------------ */

/* Formats an index like "[0][5]" for an element i of an array of the given shape. */
static const char *index_str(char *buf, size_t size, size_t i, int ndim, const int64_t *shape) {
    size_t idx[8];
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = i % (size_t)shape[d];
        i /= (size_t)shape[d];
    }
    size_t pos = 0;
    buf[0] = '\0';
    for (int d = 0; d < ndim && pos < size; d++) {
        int n = snprintf(buf + pos, size - pos, "[%zu]", idx[d]);
        if (n < 0) break;
        pos += (size_t)n;
    }
    return buf;
}

static pi0_status check_finite(const char *what, const float *x, int ndim, const int64_t *shape,
                               pi0_error *err) {
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            char ib[96];
            return pi0_fail(err, PI0_ERR_INPUT, "%s%s is %s", what,
                            index_str(ib, sizeof ib, i, ndim, shape), isnan(x[i]) ? "NaN" : "inf");
        }
    return PI0_OK;
}

static pi0_status check_mask(const char *what, const uint8_t *x, int64_t rows, int64_t cols,
                             pi0_error *err) {
    for (int64_t i = 0; i < rows * cols; i++)
        if (x[i] > 1)
            return pi0_fail(err, PI0_ERR_INPUT, "%s[%lld][%lld] is %u, expected 0 or 1", what,
                            (long long)(i / cols), (long long)(i % cols), x[i]);
    return PI0_OK;
}

static pi0_status check_batch(const pi0_model *m, const pi0_batch *in, pi0_error *err) {
    const pi0_dims *d = &m->dims;
    if (!in) return pi0_fail(err, PI0_ERR_INPUT, "batch is NULL");
    if (in->batch < 1)
        return pi0_fail(err, PI0_ERR_SHAPE, "batch size is %d, expected >= 1", in->batch);
    if (m->opt.backend == PI0_BACKEND_CUDA && in->batch > m->opt.max_batch)
        return pi0_fail(err, PI0_ERR_SHAPE,
                        "batch size is %d, but the model was opened with max_batch %d",
                        in->batch, m->opt.max_batch);
    if (in->n_cameras < 1 || in->n_cameras > PI0_MAX_CAMERAS)
        return pi0_fail(err, PI0_ERR_SHAPE, "n_cameras is %d, expected 1..%d", in->n_cameras,
                        PI0_MAX_CAMERAS);
    if (in->n_tokens < 1 || in->n_tokens > d->max_token_len)
        return pi0_fail(err, PI0_ERR_SHAPE, "n_tokens is %d, expected 1..%d (max_token_len)",
                        in->n_tokens, d->max_token_len);
    if (in->horizon < 1 || in->horizon > 4096)
        return pi0_fail(err, PI0_ERR_SHAPE, "horizon is %d, expected 1..4096", in->horizon);
    if (in->num_steps < 1 || in->num_steps > MAX_STEPS)
        return pi0_fail(err, PI0_ERR_INPUT, "num_steps is %d, expected 1..%d", in->num_steps,
                        MAX_STEPS);
    const struct {
        const void *p;
        const char *name;
    } ptrs[] = { { in->images, "images" }, { in->image_masks, "image_masks" },
                 { in->tokens, "tokens" }, { in->token_mask, "token_mask" },
                 { in->state, "state" },   { in->noise, "noise" } };
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++)
        if (!ptrs[i].p) return pi0_fail(err, PI0_ERR_INPUT, "%s is NULL", ptrs[i].name);

    int64_t B = in->batch, C = in->n_cameras, L = in->n_tokens, S = d->image_size;
    pi0_status st;
    if ((st = check_mask("image_masks", in->image_masks, B, C, err)) != PI0_OK) return st;
    if ((st = check_mask("token_mask", in->token_mask, B, L, err)) != PI0_OK) return st;
    for (int64_t i = 0; i < B * L; i++)
        if (in->tokens[i] < 0 || in->tokens[i] >= d->llm.vocab_size)
            return pi0_fail(err, PI0_ERR_INPUT,
                            "tokens[%lld][%lld] is %d, expected 0..%d (vocabulary of %d)",
                            (long long)(i / L), (long long)(i % L), in->tokens[i],
                            d->llm.vocab_size - 1, d->llm.vocab_size);
    const int64_t state_shape[2] = { B, d->action_dim };
    const int64_t noise_shape[3] = { B, in->horizon, d->action_dim };
    const int64_t image_shape[5] = { B, C, S, S, 3 };
    if ((st = check_finite("state", in->state, 2, state_shape, err)) != PI0_OK) return st;
    if ((st = check_finite("noise", in->noise, 3, noise_shape, err)) != PI0_OK) return st;
    if ((st = check_finite("images", in->images, 5, image_shape, err)) != PI0_OK) return st;
    return PI0_OK;
}

/* ---- sampling ---------------------------------------------------------------------------- */

pi0_status pi0_model_upload(pi0_model *m, const pi0_batch *in, pi0_error *err) {
    pi0_status st = check_batch(m, in, err);
    if (st != PI0_OK) return st;
    /* The backend may look at m->last (the previous shape) while uploading; a failed upload
     * leaves nothing to run. */
    if ((st = m->ops->upload(m, in, err)) != PI0_OK) {
        m->last = (pi0_batch){ 0 };
        return st;
    }
    m->last = *in;
    m->last.images = NULL;   /* the caller's buffers are not kept */
    m->last.image_masks = NULL;
    m->last.tokens = NULL;
    m->last.token_mask = NULL;
    m->last.state = NULL;
    m->last.noise = NULL;
    return PI0_OK;
}

pi0_status pi0_model_run(pi0_model *m, pi0_run_mode mode, pi0_timing *timing, pi0_error *err) {
    if (m->last.batch < 1)
        return pi0_fail(err, PI0_ERR_INPUT, "pi0_model_run before a successful pi0_model_upload");
    if (mode != PI0_RUN_FAST && mode != PI0_RUN_STAGED)
        return pi0_fail(err, PI0_ERR_INPUT, "run mode is %d, expected FAST (0) or STAGED (1)",
                        (int)mode);
    pi0_timing local;
    pi0_timing *t = timing ? timing : &local;
    *t = (pi0_timing){ 0 };
    return m->ops->run(m, mode, t, err);
}

pi0_status pi0_model_download(pi0_model *m, pi0_outputs *out, pi0_error *err) {
    if (m->last.batch < 1)
        return pi0_fail(err, PI0_ERR_INPUT, "pi0_model_download before a successful pi0_model_upload");
    if (!out || !out->actions)
        return pi0_fail(err, PI0_ERR_INPUT, "outputs.actions is NULL");
    return m->ops->download(m, out, err);
}

pi0_status pi0_model_sample(pi0_model *m, const pi0_batch *in, pi0_outputs *out, pi0_error *err) {
    if (!out || !out->actions) return pi0_fail(err, PI0_ERR_INPUT, "outputs.actions is NULL");
    pi0_status st = pi0_model_upload(m, in, err);
    if (st == PI0_OK) st = pi0_model_run(m, PI0_RUN_FAST, NULL, err);
    if (st == PI0_OK) st = pi0_model_download(m, out, err);
    return st;
}
