/* infer.c - `pi0 infer`: read an inputs file (reference README "Inputs file"), run
 * sample_actions once, write actions and v_first (and prefix_embs) as F32, and optionally compare
 * them with a reference outputs file by relative L2 error. Not a benchmark (see bench.c). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "args.h"
#include "batch_buf.h"
#include "cli.h"
#include "common.h"
#include "pi0.h"
#include "safetensors.h"

/* B batch, C cameras, S image size, L prompt slots, A horizon, Da action dim, P prefix length,
 * N image tokens per camera, D LLM width. */

static void log_stderr(void *ctx, const char *line) { fprintf(stderr, "pi0: %s\n", line); }

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* ---- reading the inputs file ------------------------------------------------------------- */

/* Finds name with one of the dtypes and the shape want (-1 = any, recorded into want). */
static const pi0_st_tensor *get_tensor(const pi0_safetensors *f, const char *path, const char *name,
                                       const pi0_dtype *dtypes, int n_dtypes, int ndim,
                                       int64_t *want, bool required) {
    const pi0_st_tensor *t = pi0_safetensors_find(f, name);
    if (!t) {
        if (required) fprintf(stderr, "pi0 infer: %s: missing tensor '%s'\n", path, name);
        return NULL;
    }
    bool dtype_ok = false;
    for (int i = 0; i < n_dtypes; i++) dtype_ok |= t->dtype == dtypes[i];
    if (!dtype_ok) {
        char list[64] = "";
        for (int i = 0; i < n_dtypes; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? " or " : "",
                     pi0_dtype_name(dtypes[i]));
        fprintf(stderr, "pi0 infer: %s: tensor '%s' has dtype %s, expected %s\n", path, name,
                pi0_dtype_name(t->dtype), list);
        return NULL;
    }
    bool shape_ok = t->ndim == ndim;
    for (int d = 0; shape_ok && d < ndim; d++) shape_ok = want[d] < 0 || want[d] == t->shape[d];
    if (!shape_ok) {
        char got[96], exp[96] = "[";
        for (int d = 0; d < ndim; d++) {
            char dim[24];
            if (want[d] < 0) snprintf(dim, sizeof dim, "%s*", d ? ", " : "");
            else snprintf(dim, sizeof dim, "%s%lld", d ? ", " : "", (long long)want[d]);
            strncat(exp, dim, sizeof exp - strlen(exp) - 2);
        }
        strcat(exp, "]");
        fprintf(stderr, "pi0 infer: %s: tensor '%s' has shape %s, expected %s\n", path, name,
                pi0_shape_str(got, sizeof got, t->ndim, t->shape), exp);
        return NULL;
    }
    for (int d = 0; d < ndim; d++) want[d] = t->shape[d];
    return t;
}

/* Integer tensors (I32, I64, U8, BOOL) as int64 values, read through memcpy (unaligned data). */
static int64_t int_at(const pi0_st_tensor *t, size_t i) {
    const uint8_t *p = (const uint8_t *)t->data + i * pi0_dtype_size(t->dtype);
    int32_t v32;
    int64_t v64;
    switch (t->dtype) {
    case PI0_DT_I32: memcpy(&v32, p, 4); return v32;
    case PI0_DT_I64: memcpy(&v64, p, 8); return v64;
    default: return *p;
    }
}

/* Fills in (every row of the file) and *num_steps; returns 0, or 1 with a line on stderr. */
static int read_inputs(const char *path, const pi0_dims *d, pi0_batch_buf *in, int *num_steps) {
    pi0_error err;
    pi0_safetensors *f;
    if (pi0_safetensors_open(&f, path, &err) != PI0_OK) {
        fprintf(stderr, "pi0 infer: %s\n", err.msg);
        return 1;
    }
    static const pi0_dtype f32[] = { PI0_DT_F32 };
    static const pi0_dtype mask_types[] = { PI0_DT_U8, PI0_DT_BOOL };
    static const pi0_dtype int_types[] = { PI0_DT_I32, PI0_DT_I64 };
    int rc = 1;
    const int64_t S = d->image_size, Da = d->action_dim;
    int64_t img_shape[5] = { -1, -1, S, S, 3 };
    const pi0_st_tensor *images = get_tensor(f, path, "images", f32, 1, 5, img_shape, true);
    if (!images) goto done;
    int64_t B = img_shape[0], C = img_shape[1];
    if (B < 1 || C < 1 || C > PI0_MAX_CAMERAS) {
        fprintf(stderr, "pi0 infer: %s: images has %lld rows and %lld cameras, expected >= 1 and "
                "1..%d\n", path, (long long)B, (long long)C, PI0_MAX_CAMERAS);
        goto done;
    }
    int64_t mask_shape[2] = { B, C }, tok_shape[2] = { B, -1 }, state_shape[2] = { B, Da };
    int64_t noise_shape[3] = { B, -1, Da };
    const pi0_st_tensor *image_masks = NULL, *tokens, *token_mask, *state, *noise, *steps;
    /* A missing image mask means every camera is present (PI0_SPEC 2.1). */
    if (pi0_safetensors_find(f, "image_masks") &&
        !(image_masks = get_tensor(f, path, "image_masks", mask_types, 2, 2, mask_shape, true)))
        goto done;
    if (!(tokens = get_tensor(f, path, "tokens", int_types, 2, 2, tok_shape, true))) goto done;
    int64_t tmask_shape[2] = { B, tok_shape[1] };
    if (!(token_mask = get_tensor(f, path, "token_mask", mask_types, 2, 2, tmask_shape, true)) ||
        !(state = get_tensor(f, path, "state", f32, 1, 2, state_shape, true)) ||
        !(noise = get_tensor(f, path, "noise", f32, 1, 3, noise_shape, true)))
        goto done;
    steps = pi0_safetensors_find(f, "num_steps");
    if (!steps) {
        fprintf(stderr, "pi0 infer: %s: missing tensor 'num_steps'\n", path);
        goto done;
    }
    if ((steps->dtype != PI0_DT_I32 && steps->dtype != PI0_DT_I64) || steps->n_elems != 1) {
        char sb[64];
        fprintf(stderr, "pi0 infer: %s: tensor 'num_steps' is %s %s, expected I32 [1]\n", path,
                pi0_dtype_name(steps->dtype), pi0_shape_str(sb, sizeof sb, steps->ndim, steps->shape));
        goto done;
    }
    int64_t n_steps = int_at(steps, 0);
    if (n_steps < 1 || n_steps > 1000) {
        fprintf(stderr, "pi0 infer: %s: num_steps is %lld, expected 1..1000\n", path,
                (long long)n_steps);
        goto done;
    }

    *num_steps = (int)n_steps;
    if (pi0_batch_buf_alloc(in, (int)B, (int)C, (int)S, (int)tok_shape[1], (int)noise_shape[1],
                            (int)Da) != 0) {
        fprintf(stderr, "pi0 infer: out of memory reading %s\n", path);
        goto done;
    }
    /* Shapes and dtypes are checked above: each F32 tensor is exactly its array. */
    memcpy(in->images, images->data, images->n_bytes);
    memcpy(in->state, state->data, state->n_bytes);
    memcpy(in->noise, noise->data, noise->n_bytes);
    for (int64_t i = 0; i < B * C; i++) in->image_masks[i] = image_masks ? (uint8_t)int_at(image_masks, i) : 1;
    for (int64_t i = 0; i < B * in->L; i++) {
        int64_t v = int_at(tokens, (size_t)i);
        if (v < INT32_MIN || v > INT32_MAX) {
            fprintf(stderr, "pi0 infer: %s: tokens[%lld][%lld] is %lld, out of the int32 range\n",
                    path, (long long)(i / in->L), (long long)(i % in->L), (long long)v);
            goto done;
        }
        in->tokens[i] = (int32_t)v;
        in->token_mask[i] = (uint8_t)int_at(token_mask, (size_t)i);
    }
    rc = 0;
done:
    pi0_safetensors_close(f);
    return rc;
}

/* ---- comparing with a reference ---------------------------------------------------------- */

typedef struct {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[3];
} out_tensor;

/* Relative L2 error over the rows whose mask is 1 (mask NULL: all rows); row = last dim. */
static void rel_l2(const float *x, const pi0_st_tensor *ref, const uint8_t *row_mask, size_t row_len,
                   double *rel, double *max_abs) {
    double num = 0, den = 0;
    *max_abs = 0;
    size_t n_rows = row_len ? ref->n_elems / row_len : 0;
    for (size_t r = 0; r < n_rows; r++) {
        if (row_mask && !row_mask[r]) continue;
        for (size_t k = 0; k < row_len; k++) {
            size_t i = r * row_len + k;
            float rv;
            memcpy(&rv, (const uint8_t *)ref->data + 4 * i, 4);
            double e = (double)x[i] - rv;
            num += e * e;
            den += (double)rv * rv;
            if (fabs(e) > *max_abs || isnan(e)) *max_abs = fabs(e);
        }
    }
    *rel = den > 0 ? sqrt(num / den) : sqrt(num);
}

static int compare(const char *ref_path, const out_tensor *outs, int n_outs, const pi0_batch_buf *in,
                   const pi0_dims *d, double tol) {
    pi0_error err;
    pi0_safetensors *ref;
    if (pi0_safetensors_open(&ref, ref_path, &err) != PI0_OK) {
        fprintf(stderr, "pi0 infer: %s\n", err.msg);
        return 1;
    }
    int rc = 0, n_shared = 0;
    uint8_t *prefix_mask = NULL;
    for (int i = 0; i < n_outs; i++) {
        const out_tensor *o = &outs[i];
        const pi0_st_tensor *r = pi0_safetensors_find(ref, o->name);
        if (!o->data || !r) continue;
        n_shared++;
        bool same = r->dtype == PI0_DT_F32 && r->ndim == o->ndim;
        for (int k = 0; same && k < o->ndim; k++) same = r->shape[k] == o->shape[k];
        if (!same) {
            char a[96], b[96];
            fprintf(stderr, "pi0 infer: %s: '%s' is %s %s, ours is F32 %s\n", ref_path, o->name,
                    pi0_dtype_name(r->dtype), pi0_shape_str(a, sizeof a, r->ndim, r->shape),
                    pi0_shape_str(b, sizeof b, o->ndim, o->shape));
            rc = 1;
            continue;
        }
        const uint8_t *mask = NULL;
        if (!strcmp(o->name, "prefix_embs")) {
            /* Only valid positions of present cameras and valid tokens are meaningful (reference
             * README "Outputs file"): take the reference's prefix_mask, else build it. */
            int64_t B = o->shape[0], P = o->shape[1], N = P - in->L;
            prefix_mask = malloc((size_t)(B * P));
            if (!prefix_mask) {
                fprintf(stderr, "pi0 infer: out of memory\n");
                rc = 1;
                break;
            }
            const pi0_st_tensor *pm = pi0_safetensors_find(ref, "prefix_mask");
            if (pm && (pm->dtype == PI0_DT_U8 || pm->dtype == PI0_DT_BOOL) && pm->n_elems == (size_t)(B * P)) {
                memcpy(prefix_mask, pm->data, (size_t)(B * P));
            } else {
                N /= in->C;
                for (int64_t b = 0; b < B; b++)
                    for (int64_t j = 0; j < P; j++)
                        prefix_mask[b * P + j] = j < in->C * N ? in->image_masks[b * in->C + j / N]
                                                               : in->token_mask[b * in->L + (j - in->C * N)];
            }
            mask = prefix_mask;
        }
        double err_rel, max_abs;
        rel_l2(o->data, r, mask, (size_t)o->shape[o->ndim - 1], &err_rel, &max_abs);
        bool ok = err_rel <= tol;   /* NaN fails */
        printf("compare %-12s rel_l2 %.3e  max_abs %.3e  %s %.1e  %s\n", o->name, err_rel, max_abs,
               ok ? "<=" : ">", tol, ok ? "ok" : "FAIL");
        if (!ok) rc = 1;
        free(prefix_mask);
        prefix_mask = NULL;
    }
    free(prefix_mask);
    if (n_shared == 0) {
        fprintf(stderr, "pi0 infer: %s holds none of actions, v_first, prefix_embs to compare\n",
                ref_path);
        rc = 1;
    }
    pi0_safetensors_close(ref);
    (void)d;
    return rc;
}

/* ---- the command ------------------------------------------------------------------------- */

static bool file_exists(const char *path, bool dir) {
    struct stat sb;
    return stat(path, &sb) == 0 && (dir ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode));
}

int pi0_cmd_infer(int argc, char **argv) {
    const char *model = NULL, *inputs_path = NULL, *out_path = NULL, *backend = "cpu",
               *ref_path = NULL;
    int threads = 0, max_batch = 0, device = 0;
    bool no_skip = false, intermediates = false, verbose = false;
    double tol = 1e-4;
    const pi0_arg args[] = {
        { "--model", PI0_ARG_STRING, &model, "DIR", "checkpoint: model.safetensors + config.json (required)" },
        { "--inputs", PI0_ARG_STRING, &inputs_path, "FILE", "inputs safetensors (required)" },
        { "--out", PI0_ARG_STRING, &out_path, "FILE", "write actions, v_first (F32) here" },
        { "--backend", PI0_ARG_STRING, &backend, "cpu|cuda", "backend (default cpu)" },
        { "--threads", PI0_ARG_INT, &threads, "N", "CPU threads (default 0 = one per core)" },
        { "--device", PI0_ARG_INT, &device, "N", "CUDA device index (default 0)" },
        { "--max-batch", PI0_ARG_INT, &max_batch, "N", "size buffers for N rows (default: the batch)" },
        { "--no-skip-masked", PI0_ARG_BOOL, &no_skip, NULL,
          "run cameras masked in every row through SigLIP anyway" },
        { "--intermediates", PI0_ARG_BOOL, &intermediates, NULL, "also write prefix_embs (CPU backend)" },
        { "--compare", PI0_ARG_STRING, &ref_path, "REF", "compare with a reference outputs file" },
        { "--tol", PI0_ARG_FLOAT, &tol, "X", "--compare: largest relative L2 error (default 1e-4)" },
        { "--verbose", PI0_ARG_BOOL, &verbose, NULL, "print loading progress on stderr" },
    };
    int prc = pi0_args_parse("infer", "pi0 infer --model DIR --inputs FILE --out FILE [flags]", args,
                             PI0_N_ARGS(args), argc, argv);
    if (prc != PI0_ARGS_OK) return prc == PI0_ARGS_HELP ? 0 : 2;
    if (!model || !inputs_path || (!out_path && !ref_path)) {
        fprintf(stderr, "pi0 infer: %s is required (see pi0 infer --help)\n",
                !model ? "--model" : !inputs_path ? "--inputs" : "--out (or --compare)");
        return 2;
    }
    if (!file_exists(model, true)) {
        fprintf(stderr, "pi0 infer: --model %s: no such directory\n", model);
        return 2;
    }
    if (!file_exists(inputs_path, false)) {
        fprintf(stderr, "pi0 infer: --inputs %s: no such file\n", inputs_path);
        return 2;
    }
    if (ref_path && !file_exists(ref_path, false)) {
        fprintf(stderr, "pi0 infer: --compare %s: no such file\n", ref_path);
        return 2;
    }
    pi0_options opt = pi0_options_default();
    if (!strcmp(backend, "cpu")) opt.backend = PI0_BACKEND_CPU;
    else if (!strcmp(backend, "cuda")) opt.backend = PI0_BACKEND_CUDA;
    else {
        fprintf(stderr, "pi0 infer: --backend is '%s', expected cpu or cuda\n", backend);
        return 2;
    }
    if (tol < 0) {
        fprintf(stderr, "pi0 infer: --tol must be >= 0\n");
        return 2;
    }
    opt.model_dir = model;
    opt.n_threads = threads;
    opt.device = device;
    opt.skip_masked_cameras = !no_skip;
    if (verbose) opt.log = log_stderr;

    pi0_error err;
    pi0_model *m = NULL;
    pi0_batch_buf in = { 0 };
    int steps = 0;
    float *actions = NULL, *v_first = NULL, *prefix = NULL;
    int rc = 1;
    double t0 = now_ms();
    /* The config is needed to check the inputs before the (slow) weights load. */
    char config[4096];
    snprintf(config, sizeof config, "%s/config.json", model);
    pi0_dims dims;
    if (pi0_dims_load(&dims, config, &err) != PI0_OK) {
        fprintf(stderr, "pi0 infer: %s\n", err.msg);
        return 1;
    }
    if (read_inputs(inputs_path, &dims, &in, &steps)) goto done;
    opt.max_batch = max_batch > 0 ? max_batch : in.B;
    if (pi0_model_open(&m, &opt, &err) != PI0_OK) {
        fprintf(stderr, "pi0 infer: %s\n", err.msg);
        goto done;
    }
    double t_open = now_ms() - t0;
    const pi0_dims *d = pi0_model_dims(m);
    int64_t N = (int64_t)(d->image_size / d->patch_size) * (d->image_size / d->patch_size);
    int64_t P = in.C * N + in.L, D = d->llm.width;
    size_t n_act = (size_t)in.B * in.A * d->action_dim;
    actions = malloc(n_act * sizeof *actions);
    v_first = malloc(n_act * sizeof *v_first);
    if (intermediates) prefix = malloc((size_t)(in.B * P * D) * sizeof *prefix);
    if (!actions || !v_first || (intermediates && !prefix)) {
        fprintf(stderr, "pi0 infer: out of memory for the outputs\n");
        goto done;
    }
    pi0_batch batch = pi0_batch_buf_rows(&in, in.B, steps);
    pi0_outputs outs = { .actions = actions, .v_first = v_first, .prefix_embs = prefix };
    double t1 = now_ms();
    if (pi0_model_sample(m, &batch, &outs, &err) != PI0_OK) {
        fprintf(stderr, "pi0 infer: %s: %s\n", inputs_path, err.msg);
        goto done;
    }
    double t_sample = now_ms() - t1;

    const out_tensor results[] = {
        { "actions", actions, 3, { in.B, in.A, d->action_dim } },
        { "v_first", v_first, 3, { in.B, in.A, d->action_dim } },
        { "prefix_embs", prefix, 3, { in.B, P, D } },
    };
    if (out_path) {
        pi0_st_write_entry entries[3];
        int n = 0;
        for (int i = 0; i < 3; i++) {
            if (!results[i].data) continue;
            entries[n] = (pi0_st_write_entry){ .name = results[i].name, .dtype = PI0_DT_F32,
                                               .ndim = results[i].ndim, .data = results[i].data };
            memcpy(entries[n].shape, results[i].shape, sizeof results[i].shape);
            n++;
        }
        if (pi0_safetensors_write(out_path, entries, n, &err) != PI0_OK) {
            fprintf(stderr, "pi0 infer: %s\n", err.msg);
            goto done;
        }
    }
    printf("pi0 infer: B=%d C=%d L=%d A=%d steps=%d on %s (%s): sample %.1f ms, load %.1f ms%s%s\n",
           in.B, in.C, in.L, in.A, steps, pi0_backend_name(opt.backend), pi0_model_device_name(m),
           t_sample, t_open, out_path ? ", wrote " : "", out_path ? out_path : "");
    rc = ref_path ? compare(ref_path, results, 3, &in, d, tol) : 0;
done:
    pi0_model_close(m);
    pi0_batch_buf_free(&in);
    free(actions);
    free(v_first);
    free(prefix);
    return rc;
}
