/* bench.c - `pi0 bench`: openpi's policy-inference benchmark (PI0_SPEC §5) on pi0c.
 * Builds the seed workload (three 224x224 cameras, the third all zeros and masked, 20 random
 * prompt tokens, randn state and noise, horizon 10, 10 Euler steps), uploads it once and times
 * pi0_model_run. Prints markdown tables: the headline, and on request the stage breakdown
 * against the roofline floor of PI0_SPEC §6, a batch sweep and the optimization ladder, then the
 * published numbers beside ours; --json FILE keeps every sample. Not a correctness test: the
 * weights are random unless --model is given, and outputs are never downloaded. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "args.h"
#include "batch_buf.h"
#include "cli.h"
#include "common.h"
#include "nvml.h"
#include "pi0.h"
#include "rng.h"


/* B batch, C cameras, S image size, N tokens per camera, L prompt tokens, P prefix length,
 * A horizon, Da action dim, n Euler steps (PI0_SPEC §0.1). */

enum { CPU_DEFAULT_WARMUP = 2, CPU_DEFAULT_ITERS = 5, CUDA_DEFAULT_WARMUP = 10, CUDA_DEFAULT_ITERS = 100 };

/* The PI0_OPT_* switches of include/pi0.h: a new one needs one row here, which gives it its
 * --no-<name> flag and its ladder row. */
typedef struct { unsigned flag; const char *name, *no_flag, *label, *help; } opt_switch;
static const opt_switch opt_switches[] = {
    { PI0_OPT_GRAPH, "graph", "--no-graph", "CUDA graph",
      "launch kernels instead of replaying a CUDA graph" },
    { PI0_OPT_FUSED_PROJ, "fused-proj", "--no-fused-proj", "fused q/k/v and gate/up projections",
      "separate q/k/v and gate/up GEMMs" },
    { PI0_OPT_GEMM_EPILOGUE, "gemm-epilogue", "--no-gemm-epilogue", "GEMM epilogues",
      "bias, GELU and residual adds as separate kernels" },
    { PI0_OPT_FUSED_EXPERT, "fused-expert", "--no-fused-expert", "persistent expert-step kernel",
      "run the expert layer by layer instead of one persistent kernel per denoising step" },
    { PI0_OPT_FUSED_GLUE, "fused-glue", "--no-fused-glue", "fused denoising-step glue",
      "the suffix embedding, final norm, action projection and Euler update through cuBLAS "
      "and small kernels (12 launches a step instead of 2)" },
    { PI0_OPT_FUSED_PREFIX_ATTN, "fused-prefix-attention", "--no-fused-prefix-attention",
      "fused prefix attention",
      "prefix attention as scores GEMM, softmax and P·V GEMM instead of one kernel" },
};
enum { N_OPT_SWITCHES = (int)(sizeof opt_switches / sizeof opt_switches[0]) };

typedef struct {
    const char *model_dir;    /* checkpoint, or NULL: random weights */
    const char *dims_arg;     /* full | tiny | CONFIG.json, or NULL: full on CUDA, tiny on CPU */
    const char *backend_arg;  /* auto | cuda | cpu */
    int batch, steps, horizon, cameras, prompt_len, warmup, iters, threads, device;
    uint8_t masked[PI0_MAX_CAMERAS]; /* 1 = camera masked (all zeros) in every row */
    uint64_t seed;
    int skip;                 /* skip_masked_cameras */
    unsigned opt_flags;
    int breakdown, ladder, floor_only;
    pi0_int_list sweep;
    const char *json_path;
    double peak_tflops, peak_tbps;
    int argc;
    char **argv;
} bench_config;

/* ---- random inputs ----------------------------------------------------------------------- */

/* The workload in B_max rows (a batch of B <= B_max uses the first B): a camera masked by
 * --masked is all zeros in every row, the others uniform in [-1, 1); every prompt slot holds a
 * random token; state and noise are standard normal. */
static int workload_make(pi0_batch_buf *w, const bench_config *cfg, const pi0_dims *d, int B_max) {
    if (pi0_batch_buf_alloc(w, B_max, cfg->cameras, d->image_size, cfg->prompt_len, cfg->horizon,
                            d->action_dim) != 0)
        return -1;
    size_t n_pixels = (size_t)w->S * w->S * 3;
    pi0_rng rng;
    pi0_rng_seed(&rng, cfg->seed ^ 0x5eedull);
    int vocab = d->llm.vocab_size < 256000 ? d->llm.vocab_size : 256000; /* randint(0, 256000) */
    for (int b = 0; b < B_max; b++) {
        for (int c = 0; c < w->C; c++) {
            float *img = w->images + ((size_t)b * w->C + c) * n_pixels;
            int masked = cfg->masked[c];
            w->image_masks[b * w->C + c] = masked ? 0 : 1;
            for (size_t i = 0; i < n_pixels; i++) img[i] = masked ? 0.0f : pi0_rng_uniform_pm1(&rng);
        }
        for (int l = 0; l < w->L; l++) {
            w->tokens[b * w->L + l] = (int32_t)(pi0_rng_next(&rng) % (uint64_t)vocab);
            w->token_mask[b * w->L + l] = 1;
        }
        for (int i = 0; i < w->Da; i++) w->state[b * w->Da + i] = pi0_rng_normal(&rng);
        for (int i = 0; i < w->A * w->Da; i++) w->noise[(size_t)b * w->A * w->Da + i] = pi0_rng_normal(&rng);
    }
    return 0;
}

/* ---- statistics ---------------------------------------------------------------------------- */

typedef struct { double mean, std, p50, p90, p99, min, max; } stats;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentiles interpolate linearly between the two nearest ranks (numpy's default), so
 * p99 of 100 samples is not simply the maximum. */
static double percentile(const double *sorted, int n, double q) {
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1) return sorted[n - 1];
    return sorted[i] + (pos - i) * (sorted[i + 1] - sorted[i]);
}

static stats stats_of(const double *x, int n) {
    stats s = { 0 };
    if (n <= 0) return s;
    double *sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) return s;
    memcpy(sorted, x, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < n; i++) sum += x[i];
    s.mean = sum / n;
    for (int i = 0; i < n; i++) sq += (x[i] - s.mean) * (x[i] - s.mean);
    s.std = n > 1 ? sqrt(sq / (n - 1)) : 0.0;
    s.p50 = percentile(sorted, n, 0.50);
    s.p90 = percentile(sorted, n, 0.90);
    s.p99 = percentile(sorted, n, 0.99);
    s.min = sorted[0];
    s.max = sorted[n - 1];
    free(sorted);
    return s;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* ---- the roofline floor (PI0_SPEC §6) -------------------------------------------------------- */

enum { ST_VISION, ST_PREFILL, ST_STEP, ST_DIFFUSION, ST_TOTAL, N_STAGES };
static const char *const stage_names[N_STAGES] = {
    "vision", "LLM prefill", "diffusion, per step", "diffusion", "total",
};

typedef struct { double flops, bytes, compute_ms, memory_ms, floor_ms; } stage_floor;

/* Matrix-product FLOPs (2 per multiply-add) and bf16 bytes (weights read once per stage plus
 * the KV cache) for B rows with n_images cameras through SigLIP per row, exactly the formulas
 * of PI0_SPEC §6.1-6.3 and §6.5, but from the actual dims, so they hold for any model. */
static void floor_compute(stage_floor f[N_STAGES], const pi0_dims *d, int B, int n_images, int L,
                          int A, int n_steps, double tflops, double tbps) {
    const double bf16 = 2.0;
    pi0_param_counts pc = pi0_dims_param_counts(d);
    const pi0_vision_dims *v = &d->vision;
    const pi0_gemma_dims *g = &d->llm, *e = &d->expert;
    double N = (double)(d->image_size / d->patch_size) * (d->image_size / d->patch_size);
    double patch_in = 3.0 * d->patch_size * d->patch_size;
    double Dv = v->width, Av = (double)v->num_heads * v->head_dim;
    double D = g->width, De = e->width, Da = d->action_dim;
    double P = n_images * N + L, S = A + 1.0;
    double kv_bytes_per_token = (double)g->depth * 2 * g->num_kv_heads * g->head_dim * bf16;

    /* §6.1: patch embedding, per layer q/k/v + scores and weighted sum + out + MLP, projector */
    double vit_layer = 2 * N * Dv * 3 * Av + 2 * 2 * N * N * Av + 2 * N * Av * Dv + 2 * 2 * N * Dv * v->mlp_dim;
    double per_image = 2 * N * patch_in * Dv + v->depth * vit_layer + 2 * N * Dv * D;
    f[ST_VISION].flops = (double)B * n_images * per_image;
    f[ST_VISION].bytes = (double)pc.vision * bf16;

    /* §6.2: linear layers per token per layer, attention over all P keys */
    double q_out = (double)g->num_heads * g->head_dim, kv_out = (double)g->num_kv_heads * g->head_dim;
    double llm_linear = 2 * (D * q_out + 2 * D * kv_out + q_out * D + 3 * D * g->mlp_dim);
    f[ST_PREFILL].flops = (double)B * g->depth * (llm_linear * P + 2 * 2 * q_out * P * P);
    f[ST_PREFILL].bytes = (double)(pc.llm - pc.llm_embed) * bf16 + B * kv_bytes_per_token * P;

    /* §6.3: S queries against P + S keys, plus the small projections of the suffix */
    double eq_out = (double)e->num_heads * e->head_dim, ekv_out = (double)e->num_kv_heads * e->head_dim;
    double exp_linear = 2 * (De * eq_out + 2 * De * ekv_out + eq_out * De + 3 * De * e->mlp_dim);
    double proj = 2 * Da * De + A * (2 * Da * De + 2 * (2 * De) * De + 2 * De * De + 2 * De * Da);
    f[ST_STEP].flops = (double)B * (e->depth * (exp_linear * S + 2 * 2 * eq_out * S * (P + S)) + proj);
    f[ST_STEP].bytes = (double)(pc.expert + pc.projections) * bf16 + B * kv_bytes_per_token * P;

    f[ST_DIFFUSION].flops = n_steps * f[ST_STEP].flops;
    f[ST_DIFFUSION].bytes = n_steps * f[ST_STEP].bytes;

    f[ST_TOTAL] = (stage_floor){ 0 };
    for (int s = 0; s < ST_TOTAL; s++) {
        f[s].compute_ms = f[s].flops / (tflops * 1e12) * 1e3;
        f[s].memory_ms = f[s].bytes / (tbps * 1e12) * 1e3;
        f[s].floor_ms = f[s].compute_ms > f[s].memory_ms ? f[s].compute_ms : f[s].memory_ms;
        if (s == ST_STEP) continue; /* counted inside diffusion */
        f[ST_TOTAL].flops += f[s].flops;
        f[ST_TOTAL].bytes += f[s].bytes;
        f[ST_TOTAL].compute_ms += f[s].compute_ms;
        f[ST_TOTAL].memory_ms += f[s].memory_ms;
        f[ST_TOTAL].floor_ms += f[s].floor_ms;
    }
}
/* ---- opening models ------------------------------------------------------------------------ */

static void log_to_stderr(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "pi0: %s\n", line);
}

/* dims for random weights: full | tiny | a config.json; the horizon follows the workload, as
 * openpi's benchmark builds its model with action_horizon 10 (no weight depends on it). */
static pi0_status dims_resolve(pi0_dims *out, const char *name, int horizon, pi0_error *err) {
    if (strcmp(name, "full") == 0) *out = pi0_dims_full();
    else if (strcmp(name, "tiny") == 0) *out = pi0_dims_tiny();
    else if (pi0_dims_load(out, name, err) != PI0_OK) return PI0_ERR_INPUT;
    out->action_horizon = horizon;
    return PI0_OK;
}

typedef struct {
    pi0_backend backend;
    pi0_dims random_dims;  /* used when cfg->model_dir is NULL */
    int max_batch;
} model_recipe;

static pi0_status model_open(pi0_model **m, const bench_config *cfg, const model_recipe *r,
                             int skip, unsigned opt_flags, pi0_error *err) {
    pi0_options opt = pi0_options_default();
    opt.model_dir = cfg->model_dir;
    opt.random_dims = cfg->model_dir ? NULL : &r->random_dims;
    opt.random_seed = cfg->seed;
    opt.backend = r->backend;
    opt.max_batch = r->max_batch;
    opt.n_threads = cfg->threads;
    opt.device = cfg->device;
    opt.skip_masked_cameras = skip;
    opt.opt_flags = opt_flags;
    opt.log = log_to_stderr;
    return pi0_model_open(m, &opt, err);
}

/* Picks the backend and opens the main model; returns an exit code. --backend auto tries CUDA
 * first. CUDA is probed with the tiny model before the real one, so a machine without a GPU
 * does not first spend its time drawing 3.2 billion random weights only to find no device. */
static int open_main_model(pi0_model **m, model_recipe *r, const bench_config *cfg, pi0_error *err) {
    int want_cuda = strcmp(cfg->backend_arg, "cpu") != 0;
    int need_cuda = strcmp(cfg->backend_arg, "cuda") == 0;
    if (want_cuda) {
        r->backend = PI0_BACKEND_CUDA;
        pi0_model *probe = NULL;
        pi0_options opt = pi0_options_default();
        pi0_dims tiny = pi0_dims_tiny();
        opt.random_dims = &tiny;
        opt.backend = PI0_BACKEND_CUDA;
        opt.device = cfg->device;
        pi0_status st = pi0_backend_built(PI0_BACKEND_CUDA)
                            ? pi0_model_open(&probe, &opt, err)
                            : pi0_fail(err, PI0_ERR_UNSUPPORTED, "this pi0 was built without CUDA");
        pi0_model_close(probe);
        if (st == PI0_OK) {
            if (!cfg->model_dir &&
                dims_resolve(&r->random_dims, cfg->dims_arg ? cfg->dims_arg : "full", cfg->horizon,
                             err) != PI0_OK)
                return 2;
            return model_open(m, cfg, r, cfg->skip, cfg->opt_flags, err) == PI0_OK ? 0 : 1;
        }
        if (need_cuda) return 1;
        printf("CUDA backend unavailable (%s): benchmarking on the CPU%s; the numbers say "
               "nothing about GPU speed.\n\n", err->msg,
               cfg->model_dir || cfg->dims_arg ? "" : " with the tiny model");
    }
    r->backend = PI0_BACKEND_CPU;
    if (!cfg->model_dir &&
        dims_resolve(&r->random_dims, cfg->dims_arg ? cfg->dims_arg : "tiny", cfg->horizon, err) != PI0_OK)
        return 2;
    return model_open(m, cfg, r, cfg->skip, cfg->opt_flags, err) == PI0_OK ? 0 : 1;
}

/* ---- timing --------------------------------------------------------------------------------- */

typedef struct {
    int n;
    double *total_ms, *wall_ms;                     /* [n]: backend timing, host wall clock */
    double *vision_ms, *prefill_ms, *diffusion_ms;  /* [n]: STAGED only */
    double power_w;                                 /* mean board power; < 0: not measured */
    int power_samples;
} timed_runs;

static void timed_runs_free(timed_runs *t) {
    free(t->total_ms);
    free(t->wall_ms);
    free(t->vision_ms);
    free(t->prefill_ms);
    free(t->diffusion_ms);
    memset(t, 0, sizeof *t);
}

/* Timed: one pi0_model_run of what was uploaded (CUDA FAST: one graph replay of
 * sample_actions, GPU time from an event pair; CPU: wall clock inside the backend).
 * Not timed: making the inputs, the upload, the warm-up runs (the first captures the graph).
 * The NVML sampler runs only around the timed loop. */
static pi0_status time_runs(pi0_model *m, pi0_run_mode mode, int warmup, int iters, pi0_nvml *nv,
                            timed_runs *t, pi0_error *err) {
    memset(t, 0, sizeof *t);
    t->power_w = -1.0;
    size_t bytes = (size_t)iters * sizeof(double);
    t->total_ms = malloc(bytes);
    t->wall_ms = malloc(bytes);
    t->vision_ms = malloc(bytes);
    t->prefill_ms = malloc(bytes);
    t->diffusion_ms = malloc(bytes);
    if (!t->total_ms || !t->wall_ms || !t->vision_ms || !t->prefill_ms || !t->diffusion_ms) {
        timed_runs_free(t);
        return pi0_fail(err, PI0_ERR_NOMEM, "no memory for %d timing samples", iters);
    }
    pi0_timing timing;
    pi0_status st = PI0_OK;
    for (int i = 0; i < warmup && st == PI0_OK; i++) st = pi0_model_run(m, mode, &timing, err);
    int sampling = st == PI0_OK && nv && pi0_nvml_power_start(nv) == 0;
    for (int i = 0; i < iters && st == PI0_OK; i++) {
        memset(&timing, 0, sizeof timing);
        double t0 = now_ms();
        if ((st = pi0_model_run(m, mode, &timing, err)) != PI0_OK) break;
        t->wall_ms[i] = now_ms() - t0;
        t->total_ms[i] = timing.total_ms;
        t->vision_ms[i] = timing.vision_ms;
        t->prefill_ms[i] = timing.prefill_ms;
        t->diffusion_ms[i] = timing.diffusion_ms;
        t->n = i + 1;
    }
    if (sampling && pi0_nvml_power_stop(nv, &t->power_w, &t->power_samples) != 0) t->power_w = -1.0;
    if (st != PI0_OK) timed_runs_free(t);
    return st;
}

/* ---- published numbers -------------------------------------------------------------------- */

/* Other engines on the same workload (docs/BENCHMARKS.md); 0 = not published. */
typedef struct {
    const char *engine, *device, *setting;
    double latency_ms, samples_per_s;
    const char *source;
} published_row;

static const published_row published[] = {
    { "openpi PyTorch + torch.compile + CUDA graph", "NVIDIA H200", "B=1, masked camera run", 25.3, 0,
      "the openpi fork's benchmark scripts (branch mi300-bench), reported H200 run" },
    { "openpi PyTorch + torch.compile + CUDA graph", "NVIDIA H200", "B=64", 0, 97.6,
      "same source" },
    { "openpi PyTorch on ROCm", "AMD MI350", "B=1, masked camera run", 24.8, 0,
      "the same fork, reported MI350 runs" },
    { "openpi PyTorch on ROCm", "AMD MI350", "B=1, masked camera skipped", 21.2, 0, "same source" },
    { "openpi PyTorch on ROCm", "AMD MI350", "B=64", 0, 153.7, "same source" },
    { "openpi PyTorch on ROCm", "AMD MI300X", "B=1, masked camera run", 26.4, 0,
      "the same fork, documented MI300X headline run" },
    { "hand-written Triton engine", "NVIDIA H200", "B=1", 21.3, 0, "the engine's own published benchmark" },
    { "roofline floor (PI0_SPEC 6.4)", "H200 at 790 TFLOP/s, 4.3 TB/s", "B=1, masked camera run", 6.40, 0,
      "work counts of PI0_SPEC 6" },
    { "roofline floor (PI0_SPEC 6.4)", "H200 at 790 TFLOP/s, 4.3 TB/s", "B=1, masked camera skipped", 4.77, 0,
      "work counts of PI0_SPEC 6" },
};

static void print_published(cJSON *root) {
    printf("\n## Published (same workload, other engines)\n\n");
    printf("| engine | device | setting | latency ms | Hz | samples/s | source |\n");
    printf("|---|---|---|---:|---:|---:|---|\n");
    cJSON *arr = cJSON_AddArrayToObject(root, "published");
    for (size_t i = 0; i < sizeof published / sizeof published[0]; i++) {
        const published_row *p = &published[i];
        char lat[32] = "", hz[32] = "", sps[32] = "";
        if (p->latency_ms > 0) {
            snprintf(lat, sizeof lat, "%.2f", p->latency_ms);
            snprintf(hz, sizeof hz, "%.1f", 1000.0 / p->latency_ms);
        }
        if (p->samples_per_s > 0) snprintf(sps, sizeof sps, "%.1f", p->samples_per_s);
        printf("| %s | %s | %s | %s | %s | %s | %s |\n", p->engine, p->device, p->setting, lat, hz,
               sps, p->source);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "engine", p->engine);
        cJSON_AddStringToObject(o, "device", p->device);
        cJSON_AddStringToObject(o, "setting", p->setting);
        if (p->latency_ms > 0) {
            cJSON_AddNumberToObject(o, "latency_ms", p->latency_ms);
            cJSON_AddNumberToObject(o, "hz", 1000.0 / p->latency_ms);
        }
        if (p->samples_per_s > 0) cJSON_AddNumberToObject(o, "samples_per_s", p->samples_per_s);
        cJSON_AddStringToObject(o, "source", p->source);
        cJSON_AddItemToArray(arr, o);
    }
}

/* ---- flags ---------------------------------------------------------------------------------- */

static const char usage[] =
    "pi0 bench [--model DIR] [--backend auto|cuda|cpu] [--batch B] [--breakdown] "
    "[--sweep 1,2,...,64] [--ladder] [--json FILE]\n"
    "openpi's policy-inference benchmark (PI0_SPEC 5): B rows of three 224x224 cameras (the "
    "third all zeros and masked), 20 random prompt tokens, horizon 10, 10 Euler steps; random "
    "full-size weights unless --model is given. --backend auto uses CUDA when it can, else the "
    "tiny model on the CPU.";

static int usage_error(const char *fmt, ...) PI0_PRINTF(1, 2);
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pi0 bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see pi0 bench --help)\n");
    va_end(ap);
    return PI0_ARGS_ERROR;
}

static int parse_args(bench_config *cfg, int argc, char **argv) {
    memset(cfg, 0, sizeof *cfg);
    cfg->backend_arg = "auto";
    cfg->batch = 1;
    cfg->steps = 10;
    cfg->horizon = 10;
    cfg->cameras = 3;
    cfg->prompt_len = 20;
    cfg->warmup = -1; /* set from the backend */
    cfg->iters = -1;
    cfg->seed = 1;
    cfg->peak_tflops = 790.0;
    cfg->peak_tbps = 4.3;
    cfg->argc = argc;
    cfg->argv = argv;
    const char *masked = "2";
    bool skip_on = false, skip_off = false, breakdown = false, ladder = false;
    bool floor_only = false;
    bool no_opt[N_OPT_SWITCHES] = { false }; /* indexed like opt_switches */
    const pi0_arg fixed[] = {
        { "--model", PI0_ARG_STRING, &cfg->model_dir, "DIR", "checkpoint (default: random weights)" },
        { "--dims", PI0_ARG_STRING, &cfg->dims_arg, "full|tiny|FILE",
          "dims of the random weights (default: full on CUDA, tiny on the CPU)" },
        { "--backend", PI0_ARG_STRING, &cfg->backend_arg, "auto|cuda|cpu", "default auto" },
        { "--batch", PI0_ARG_INT, &cfg->batch, "B", "rows per run (default 1)" },
        { "--steps", PI0_ARG_INT, &cfg->steps, "N", "Euler steps (default 10)" },
        { "--horizon", PI0_ARG_INT, &cfg->horizon, "A", "actions per chunk (default 10)" },
        { "--cameras", PI0_ARG_INT, &cfg->cameras, "C", "cameras per row (default 3)" },
        { "--masked", PI0_ARG_STRING, &masked, "I,J|none",
          "cameras masked (all zeros) in every row (default 2)" },
        { "--prompt-len", PI0_ARG_INT, &cfg->prompt_len, "L", "prompt tokens, all valid (default 20)" },
        { "--warmup", PI0_ARG_INT, &cfg->warmup, "N", "untimed runs first (default 10; CPU 2)" },
        { "--iters", PI0_ARG_INT, &cfg->iters, "N", "timed runs (default 100; CPU 5)" },
        { "--seed", PI0_ARG_U64, &cfg->seed, "N", "seed of the weights and inputs (default 1)" },
        { "--threads", PI0_ARG_INT, &cfg->threads, "N", "CPU threads (default 0: one per core)" },
        { "--device", PI0_ARG_INT, &cfg->device, "N", "CUDA device (default 0)" },
        { "--skip-masked", PI0_ARG_BOOL, &skip_on, NULL,
          "drop cameras masked in every row (the default; exact)" },
        { "--no-skip-masked", PI0_ARG_BOOL, &skip_off, NULL,
          "run masked cameras through SigLIP like openpi (apples-to-apples)" },
        { "--breakdown", PI0_ARG_BOOL, &breakdown, NULL,
          "stage times (staged runs) against the roofline floor" },
        { "--sweep", PI0_ARG_INT_LIST, &cfg->sweep, "B1,B2,...", "batch scaling table" },
        { "--ladder", PI0_ARG_BOOL, &ladder, NULL, "each optimization turned off one at a time" },
        { "--floor", PI0_ARG_BOOL, &floor_only, NULL,
          "print the roofline floor of the workload and exit (no model is opened)" },
        { "--json", PI0_ARG_STRING, &cfg->json_path, "FILE", "every sample and table as JSON" },
        { "--peak-tflops", PI0_ARG_FLOAT, &cfg->peak_tflops, "R", "compute rate of the floor (default 790)" },
        { "--peak-tbps", PI0_ARG_FLOAT, &cfg->peak_tbps, "R", "memory rate of the floor (default 4.3)" },
    };
    pi0_arg args[PI0_N_ARGS(fixed) + N_OPT_SWITCHES]; /* the fixed flags, then one --no-<name> per switch */
    memcpy(args, fixed, sizeof fixed);
    for (int i = 0; i < N_OPT_SWITCHES; i++)
        args[PI0_N_ARGS(fixed) + i] = (pi0_arg){ opt_switches[i].no_flag, PI0_ARG_BOOL, &no_opt[i], NULL,
                                            opt_switches[i].help };
    int rc = pi0_args_parse("bench", usage, args, PI0_N_ARGS(args), argc, argv);
    if (rc != PI0_ARGS_OK) return rc;

    cfg->opt_flags = PI0_OPT_ALL;
    for (int i = 0; i < N_OPT_SWITCHES; i++)
        if (no_opt[i]) cfg->opt_flags &= ~opt_switches[i].flag;
    if (skip_on && skip_off) return usage_error("--skip-masked and --no-skip-masked contradict");
    cfg->skip = !skip_off;
    cfg->breakdown = breakdown;
    cfg->ladder = ladder;
    cfg->floor_only = floor_only;

    if (strcmp(cfg->backend_arg, "auto") && strcmp(cfg->backend_arg, "cuda") &&
        strcmp(cfg->backend_arg, "cpu"))
        return usage_error("--backend is '%s', expected auto, cuda or cpu", cfg->backend_arg);
    if (cfg->batch < 1) return usage_error("--batch must be >= 1");
    if (cfg->steps < 1) return usage_error("--steps must be >= 1");
    if (cfg->horizon < 1) return usage_error("--horizon must be >= 1");
    if (cfg->prompt_len < 1) return usage_error("--prompt-len must be >= 1");
    if (cfg->cameras < 1 || cfg->cameras > PI0_MAX_CAMERAS)
        return usage_error("--cameras is %d, expected 1..%d", cfg->cameras, PI0_MAX_CAMERAS);
    if (cfg->warmup < -1) return usage_error("--warmup is %d, expected >= 0", cfg->warmup);
    if (cfg->iters == 0 || cfg->iters < -1) return usage_error("--iters is %d, expected >= 1", cfg->iters);
    if (cfg->threads < 0) return usage_error("--threads must be >= 0");
    if (cfg->device < 0) return usage_error("--device must be >= 0");
    if (!(cfg->peak_tflops > 0) || !(cfg->peak_tbps > 0))
        return usage_error("--peak-tflops and --peak-tbps must be > 0");
    struct stat sb;
    if (cfg->model_dir && (stat(cfg->model_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        return usage_error("--model %s: no such directory", cfg->model_dir);
    for (int i = 0; i < cfg->sweep.n; i++)
        if (cfg->sweep.v[i] < 1) return usage_error("--sweep batch sizes must be >= 1");
    if (strcmp(masked, "none") != 0 && masked[0] != '\0') {
        pi0_int_list list;
        if (!pi0_int_list_parse("bench", "--masked", masked, &list)) return PI0_ARGS_ERROR;
        for (int i = 0; i < list.n; i++) {
            if (list.v[i] < 0 || list.v[i] >= cfg->cameras)
                return usage_error("--masked names camera %d, expected 0..%d (--cameras %d)", list.v[i],
                                   cfg->cameras - 1, cfg->cameras);
            cfg->masked[list.v[i]] = 1;
        }
    }
    return PI0_ARGS_OK;
}

/* ---- the benchmark ---------------------------------------------------------------------------- */

/* What one `pi0 bench` run shares between its tables. */
typedef struct {
    const bench_config *cfg;
    model_recipe recipe;
    pi0_model *m;             /* the main model: cfg's flags and skip setting */
    const pi0_dims *dims;
    pi0_batch_buf w;          /* the workload */
    pi0_nvml *nv;             /* NULL: no power readings */
    char power_why[128];      /* why not */
    int n_masked, n_images;   /* masked cameras; cameras through SigLIP per row */
    cJSON *root;
} bench;

static cJSON *json_samples(const double *x, int n) { return cJSON_CreateDoubleArray(x, n); }

static void json_stats(cJSON *o, const stats *s) {
    cJSON_AddNumberToObject(o, "mean_ms", s->mean);
    cJSON_AddNumberToObject(o, "std_ms", s->std);
    cJSON_AddNumberToObject(o, "p50_ms", s->p50);
    cJSON_AddNumberToObject(o, "p90_ms", s->p90);
    cJSON_AddNumberToObject(o, "p99_ms", s->p99);
    cJSON_AddNumberToObject(o, "min_ms", s->min);
    cJSON_AddNumberToObject(o, "max_ms", s->max);
}

static void json_power(cJSON *o, const timed_runs *t, double hz) {
    if (t->power_w > 0) {
        cJSON_AddNumberToObject(o, "power_w", t->power_w);
        cJSON_AddNumberToObject(o, "power_samples", t->power_samples);
        cJSON_AddNumberToObject(o, "hz_per_kw", hz / (t->power_w / 1000.0));
    } else {
        cJSON_AddNullToObject(o, "power_w");
        cJSON_AddNullToObject(o, "hz_per_kw");
    }
}

static void fmt_power(char *buf, size_t size, const timed_runs *t) {
    if (t->power_w > 0) snprintf(buf, size, "%.0f", t->power_w);
    else snprintf(buf, size, "n/a");
}

/* "graph, fused-proj, ..." for the flags that are on. */
static void fmt_opts(char *buf, size_t size, unsigned flags) {
    size_t pos = 0;
    buf[0] = '\0';
    for (int i = 0; i < N_OPT_SWITCHES && pos < size; i++)
        if (flags & opt_switches[i].flag) {
            int n = snprintf(buf + pos, size - pos, "%s%s", pos ? ", " : "", opt_switches[i].name);
            if (n > 0) pos += (size_t)n;
        }
    if (!buf[0]) snprintf(buf, size, "none");
}

/* Uploads the first B rows of the workload. */
static pi0_status upload_rows(bench *b, pi0_model *m, int B, pi0_error *err) {
    pi0_batch in = pi0_batch_buf_rows(&b->w, B, b->cfg->steps);
    return pi0_model_upload(m, &in, err);
}

static void print_header(bench *b) {
    const bench_config *cfg = b->cfg;
    int cuda = b->recipe.backend == PI0_BACKEND_CUDA;
    int N = (b->dims->image_size / b->dims->patch_size) * (b->dims->image_size / b->dims->patch_size);
    int P = b->n_images * N + cfg->prompt_len;
    char opts[160], masked[64] = "";
    fmt_opts(opts, sizeof opts, cfg->opt_flags);
    for (int c = 0, pos = 0; c < cfg->cameras; c++)
        if (cfg->masked[c]) pos += snprintf(masked + pos, sizeof masked - (size_t)pos, "%s%d", pos ? "," : "", c);
    printf("# pi0 bench\n\n");
    printf("- device: %s\n", pi0_model_device_name(b->m));
    printf("- backend: %s; %s", pi0_backend_name(b->recipe.backend),
           cfg->model_dir ? "checkpoint " : "random weights, ");
    if (cfg->model_dir) printf("%s\n", cfg->model_dir);
    else printf("%s dims, seed %llu\n", cfg->dims_arg ? cfg->dims_arg : (cuda ? "full" : "tiny"),
                (unsigned long long)cfg->seed);
    printf("- workload: B=%d, %d cameras %dx%d (masked in every row: %s), %d prompt tokens, "
           "state randn(%d), noise randn [B, %d, %d], horizon %d, %d steps, seed %llu\n",
           cfg->batch, cfg->cameras, b->dims->image_size, b->dims->image_size,
           masked[0] ? masked : "none", cfg->prompt_len, b->dims->action_dim, cfg->horizon,
           b->dims->action_dim, cfg->horizon, cfg->steps, (unsigned long long)cfg->seed);
    if (b->n_masked == 0)
        printf("- masked cameras: none (P = %d)\n", P);
    else if (cfg->skip)
        printf("- masked cameras: skipped (--skip-masked, exact; P = %d). The apples-to-apples "
               "setting against openpi is --no-skip-masked\n", P);
    else
        printf("- masked cameras: run through SigLIP like openpi (--no-skip-masked, "
               "apples-to-apples; P = %d)\n", P);
    printf("- optimizations on: %s%s\n", opts, cuda ? "" : " (the CPU backend ignores them)");
    printf("- timed: one replay of sample_actions; inputs already in device buffers (%s). "
           "Not timed: making the inputs, the upload, %d warm-up runs%s\n",
           cuda ? "GPU time from a CUDA event pair around each run" : "CPU: wall clock of each run",
           cfg->warmup, cuda && (cfg->opt_flags & PI0_OPT_GRAPH) ? " (the first captures the CUDA graph)" : "");
    if (b->nv) printf("- power: mean NVML board power during the timed loop, read every ~10 ms\n");
    else printf("- power: n/a (%s)\n", b->power_why);
    fflush(stdout);
}

static int run_headline(bench *b, pi0_error *err) {
    const bench_config *cfg = b->cfg;
    timed_runs t;
    if (upload_rows(b, b->m, cfg->batch, err) != PI0_OK ||
        time_runs(b->m, PI0_RUN_FAST, cfg->warmup, cfg->iters, b->nv, &t, err) != PI0_OK)
        return 1;
    stats s = stats_of(t.total_ms, t.n), wall = stats_of(t.wall_ms, t.n);
    stage_floor f[N_STAGES];
    floor_compute(f, b->dims, cfg->batch, b->n_images, cfg->prompt_len, cfg->horizon, cfg->steps,
                  cfg->peak_tflops, cfg->peak_tbps);
    double hz = 1000.0 / s.mean;
    char power[32], hz_kw[32] = "n/a", device[64];
    fmt_power(power, sizeof power, &t);
    if (t.power_w > 0) snprintf(hz_kw, sizeof hz_kw, "%.1f", hz / (t.power_w / 1000.0));
    /* the short device name for the table: NVML's, else the device line up to its first comma */
    snprintf(device, sizeof device, "%s", b->nv && pi0_nvml_gpu_name(b->nv)[0] ? pi0_nvml_gpu_name(b->nv)
                                                                             : pi0_model_device_name(b->m));
    device[strcspn(device, ",")] = '\0';

    printf("\n## Headline\n\n");
    printf("| device | B | masked cameras | iters | mean ms | p50 ms | p90 ms | p99 ms | min ms | max ms "
           "| Hz | samples/s | power W | Hz/kW |\n");
    printf("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    printf("| %s | %d | %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f | %s | %s |\n",
           device, cfg->batch, b->n_masked == 0 ? "none" : cfg->skip ? "skipped" : "run", t.n, s.mean,
           s.p50, s.p90, s.p99, s.min, s.max, hz, hz * cfg->batch, power, hz_kw);
    printf("\nhost wall clock per run (includes launch and synchronization): mean %.3f ms, p50 %.3f ms\n",
           wall.mean, wall.p50);
    printf("roofline floor of this workload at %.0f TFLOP/s and %.2f TB/s (PI0_SPEC 6): %.3f ms; "
           "measured mean / floor = %.2f\n", cfg->peak_tflops, cfg->peak_tbps, f[ST_TOTAL].floor_ms,
           s.mean / f[ST_TOTAL].floor_ms);
    fflush(stdout);

    cJSON *o = cJSON_AddObjectToObject(b->root, "headline");
    cJSON_AddNumberToObject(o, "batch", cfg->batch);
    cJSON_AddBoolToObject(o, "skip_masked", cfg->skip);
    cJSON_AddNumberToObject(o, "iters", t.n);
    json_stats(o, &s);
    cJSON_AddNumberToObject(o, "hz", hz);
    cJSON_AddNumberToObject(o, "samples_per_s", hz * cfg->batch);
    json_power(o, &t, hz);
    cJSON_AddNumberToObject(o, "floor_ms", f[ST_TOTAL].floor_ms);
    cJSON_AddItemToObject(o, "samples_ms", json_samples(t.total_ms, t.n));
    cJSON_AddItemToObject(o, "wall_ms", json_samples(t.wall_ms, t.n));
    timed_runs_free(&t);
    return 0;
}

static int run_breakdown(bench *b, pi0_error *err) {
    const bench_config *cfg = b->cfg;
    timed_runs t;
    if (upload_rows(b, b->m, cfg->batch, err) != PI0_OK ||
        time_runs(b->m, PI0_RUN_STAGED, cfg->warmup, cfg->iters, NULL, &t, err) != PI0_OK)
        return 1;
    stage_floor f[N_STAGES];
    floor_compute(f, b->dims, cfg->batch, b->n_images, cfg->prompt_len, cfg->horizon, cfg->steps,
                  cfg->peak_tflops, cfg->peak_tbps);
    double *per_step = malloc((size_t)t.n * sizeof *per_step);
    if (!per_step) {
        timed_runs_free(&t);
        return pi0_fail(err, PI0_ERR_NOMEM, "out of memory"), 1;
    }
    for (int i = 0; i < t.n; i++) per_step[i] = t.diffusion_ms[i] / cfg->steps;
    const double *samples[N_STAGES] = { t.vision_ms, t.prefill_ms, per_step, t.diffusion_ms, t.total_ms };
    double total_mean = stats_of(t.total_ms, t.n).mean;

    printf("\n## Breakdown (staged runs: each stage bracketed by its own timing, B=%d, masked "
           "cameras %s)\n\n", cfg->batch, b->n_masked == 0 ? "none" : cfg->skip ? "skipped" : "run");
    printf("| stage | mean ms | %% of total | GFLOP | GB | floor ms | measured / floor |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    cJSON *o = cJSON_AddObjectToObject(b->root, "breakdown");
    cJSON_AddNumberToObject(o, "iters", t.n);
    cJSON_AddNumberToObject(o, "peak_tflops", cfg->peak_tflops);
    cJSON_AddNumberToObject(o, "peak_tbps", cfg->peak_tbps);
    cJSON *arr = cJSON_AddArrayToObject(o, "stages");
    for (int st = 0; st < N_STAGES; st++) {
        stats s = stats_of(samples[st], t.n);
        char name[64];
        if (st == ST_DIFFUSION) snprintf(name, sizeof name, "diffusion (%d steps)", cfg->steps);
        else if (st == ST_TOTAL) snprintf(name, sizeof name, "total (staged)");
        else snprintf(name, sizeof name, "%s", stage_names[st]);
        double ratio = f[st].floor_ms > 0 ? s.mean / f[st].floor_ms : 0.0;
        printf("| %s | %.3f | %.1f | %.1f | %.3f | %.3f | %.2f |\n", name, s.mean,
               100.0 * s.mean / total_mean, f[st].flops * 1e-9, f[st].bytes * 1e-9, f[st].floor_ms, ratio);
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "name", name);
        json_stats(r, &s);
        cJSON_AddNumberToObject(r, "percent", 100.0 * s.mean / total_mean);
        cJSON_AddNumberToObject(r, "flops", f[st].flops);
        cJSON_AddNumberToObject(r, "bytes", f[st].bytes);
        cJSON_AddNumberToObject(r, "compute_ms", f[st].compute_ms);
        cJSON_AddNumberToObject(r, "memory_ms", f[st].memory_ms);
        cJSON_AddNumberToObject(r, "floor_ms", f[st].floor_ms);
        cJSON_AddNumberToObject(r, "ratio", ratio);
        cJSON_AddItemToObject(r, "samples_ms", json_samples(samples[st], t.n));
        cJSON_AddItemToArray(arr, r);
    }
    printf("\nfloor = max(FLOPs / %.0f TFLOP/s, bytes / %.2f TB/s) per stage; FLOPs are matrix "
           "products, bytes are bf16 weights read once plus the KV cache (PI0_SPEC 6)\n",
           cfg->peak_tflops, cfg->peak_tbps);
    fflush(stdout);
    free(per_step);
    timed_runs_free(&t);
    return 0;
}

static int run_sweep(bench *b, pi0_error *err) {
    const bench_config *cfg = b->cfg;
    printf("\n## Batch sweep (masked cameras %s, %d iters each)\n\n",
           b->n_masked == 0 ? "none" : cfg->skip ? "skipped" : "run", cfg->iters);
    printf("| B | p50 ms | mean ms | p99 ms | samples/s | power W | floor ms | floor samples/s |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    fflush(stdout);
    cJSON *arr = cJSON_AddArrayToObject(b->root, "sweep");
    for (int i = 0; i < cfg->sweep.n; i++) {
        int B = cfg->sweep.v[i];
        timed_runs t;
        if (upload_rows(b, b->m, B, err) != PI0_OK ||
            time_runs(b->m, PI0_RUN_FAST, cfg->warmup, cfg->iters, b->nv, &t, err) != PI0_OK) {
            pi0_fail_context(err, PI0_ERR_INPUT, "batch %d", B);
            return 1;
        }
        stats s = stats_of(t.total_ms, t.n);
        stage_floor f[N_STAGES];
        floor_compute(f, b->dims, B, b->n_images, cfg->prompt_len, cfg->horizon, cfg->steps,
                      cfg->peak_tflops, cfg->peak_tbps);
        double hz = 1000.0 / s.mean;
        char power[32];
        fmt_power(power, sizeof power, &t);
        printf("| %d | %.3f | %.3f | %.3f | %.1f | %s | %.3f | %.1f |\n", B, s.p50, s.mean, s.p99,
               hz * B, power, f[ST_TOTAL].floor_ms, 1000.0 * B / f[ST_TOTAL].floor_ms);
        fflush(stdout);
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "batch", B);
        json_stats(r, &s);
        cJSON_AddNumberToObject(r, "hz", hz);
        cJSON_AddNumberToObject(r, "samples_per_s", hz * B);
        json_power(r, &t, hz);
        cJSON_AddNumberToObject(r, "floor_ms", f[ST_TOTAL].floor_ms);
        cJSON_AddItemToObject(r, "samples_ms", json_samples(t.total_ms, t.n));
        cJSON_AddItemToArray(arr, r);
        timed_runs_free(&t);
    }
    return 0;
}

/* One ladder row: open (unless m is given), upload, time, report. */
static int ladder_row(bench *b, cJSON *arr, const char *label, pi0_model *given, int skip,
                      unsigned flags, double base_p50, double *p50_out, pi0_error *err) {
    const bench_config *cfg = b->cfg;
    pi0_model *m = given;
    if (!m) {
        model_recipe r = b->recipe;
        r.max_batch = cfg->batch;
        fprintf(stderr, "pi0 bench: ladder: opening the model without %s\n", label);
        if (model_open(&m, cfg, &r, skip, flags, err) != PI0_OK) return 1;
    }
    timed_runs t;
    int rc = upload_rows(b, m, cfg->batch, err) != PI0_OK ||
             time_runs(m, PI0_RUN_FAST, cfg->warmup, cfg->iters, NULL, &t, err) != PI0_OK;
    if (m != given) pi0_model_close(m);
    if (rc) return 1;
    stats s = stats_of(t.total_ms, t.n);
    if (base_p50 < 0) base_p50 = s.p50;
    double delta = s.p50 - base_p50;
    char name[96];
    snprintf(name, sizeof name, given ? "%s" : "without %s", label);
    printf("| %s | %.3f | %.1f | %+.3f | %+.1f%% |\n", name, s.p50, 1000.0 / s.mean, delta,
           100.0 * delta / base_p50);
    fflush(stdout);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "config", name);
    cJSON_AddNumberToObject(o, "opt_flags", flags);
    cJSON_AddBoolToObject(o, "skip_masked", skip);
    json_stats(o, &s);
    cJSON_AddNumberToObject(o, "hz", 1000.0 / s.mean);
    cJSON_AddNumberToObject(o, "delta_ms", delta);
    cJSON_AddNumberToObject(o, "delta_percent", 100.0 * delta / base_p50);
    cJSON_AddItemToObject(o, "samples_ms", json_samples(t.total_ms, t.n));
    cJSON_AddItemToArray(arr, o);
    timed_runs_free(&t);
    *p50_out = s.p50;
    return 0;
}

/* The optimization ladder: the main model (every optimization of cfg on), then each PI0_OPT_*
 * switch and the masked-camera skip turned off one at a time. Each row opens its own model
 * from the same seed, so the weights are the same; the main model is closed first to leave the
 * device memory to the others. */
static int run_ladder(bench *b, pi0_error *err) {
    const bench_config *cfg = b->cfg;
    char base[160], label[200];
    fmt_opts(base, sizeof base, cfg->opt_flags);
    printf("\n## Optimization ladder (B=%d, %d iters each; one switch off at a time)\n\n", cfg->batch,
           cfg->iters);
    printf("| configuration | p50 ms | Hz | delta p50 ms | delta %% |\n");
    printf("|---|---:|---:|---:|---:|\n");
    cJSON *arr = cJSON_AddArrayToObject(b->root, "ladder");
    double base_p50, p50;
    snprintf(label, sizeof label, "all on (%s%s)", base,
             b->n_masked && cfg->skip ? ", skip-masked" : "");
    if (ladder_row(b, arr, label, b->m, cfg->skip, cfg->opt_flags, -1.0, &base_p50, err)) return 1;
    pi0_model_close(b->m);
    b->m = NULL;
    for (int i = 0; i < N_OPT_SWITCHES; i++) {
        if (!(cfg->opt_flags & opt_switches[i].flag)) continue;
        if (ladder_row(b, arr, opt_switches[i].label, NULL, cfg->skip,
                       cfg->opt_flags & ~opt_switches[i].flag, base_p50, &p50, err))
            return 1;
    }
    if (b->n_masked && cfg->skip &&
        ladder_row(b, arr, "masked-camera skip", NULL, 0, cfg->opt_flags, base_p50, &p50, err))
        return 1;
    return 0;
}

static void json_header(bench *b) {
    const bench_config *cfg = b->cfg;
    cJSON *root = b->root;
    size_t len = 1;
    for (int i = 0; i < cfg->argc; i++) len += strlen(cfg->argv[i]) + 1;
    char *cmd = malloc(len + 4);
    if (cmd) {
        strcpy(cmd, "pi0");
        for (int i = 0; i < cfg->argc; i++) {
            strcat(cmd, " ");
            strcat(cmd, cfg->argv[i]);
        }
        cJSON_AddStringToObject(root, "command", cmd);
        free(cmd);
    }
    const char *commit = getenv("PI0_COMMIT"); /* set by scripts/gpu_check.sh and run.sh */
    cJSON_AddStringToObject(root, "commit", commit && commit[0] ? commit : "unknown");
    cJSON_AddStringToObject(root, "device", pi0_model_device_name(b->m));
    cJSON_AddStringToObject(root, "gpu", b->nv ? pi0_nvml_gpu_name(b->nv) : "");
    cJSON_AddStringToObject(root, "driver", b->nv ? pi0_nvml_driver_version(b->nv) : "n/a");
    cJSON_AddStringToObject(root, "backend", pi0_backend_name(b->recipe.backend));
    cJSON_AddStringToObject(root, "model", cfg->model_dir ? cfg->model_dir : "random");
    cJSON_AddNumberToObject(root, "seed", (double)cfg->seed);
    char *dims = pi0_dims_to_json(b->dims);
    cJSON *dj = dims ? cJSON_Parse(dims) : NULL;
    free(dims);
    if (dj) cJSON_AddItemToObject(root, "dims", dj);
    cJSON *w = cJSON_AddObjectToObject(root, "workload");
    cJSON_AddNumberToObject(w, "batch", cfg->batch);
    cJSON_AddNumberToObject(w, "cameras", cfg->cameras);
    cJSON *masked = cJSON_AddArrayToObject(w, "masked");
    for (int c = 0; c < cfg->cameras; c++)
        if (cfg->masked[c]) cJSON_AddItemToArray(masked, cJSON_CreateNumber(c));
    cJSON_AddNumberToObject(w, "prompt_len", cfg->prompt_len);
    cJSON_AddNumberToObject(w, "horizon", cfg->horizon);
    cJSON_AddNumberToObject(w, "steps", cfg->steps);
    cJSON_AddBoolToObject(w, "skip_masked", cfg->skip);
    cJSON_AddNumberToObject(w, "opt_flags", cfg->opt_flags);
    cJSON_AddNumberToObject(w, "warmup", cfg->warmup);
    cJSON_AddNumberToObject(w, "iters", cfg->iters);
    cJSON_AddStringToObject(root, "timing_window",
                            "one replay of sample_actions; inputs already in device buffers");
}

static int write_json(const cJSON *root, const char *path, pi0_error *err) {
    char *text = cJSON_Print(root);
    if (!text) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory formatting the JSON"), 1;
    FILE *f = fopen(path, "w");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0) ok = 0;
    free(text);
    if (!ok) return pi0_fail(err, PI0_ERR_IO, "cannot write %s", path), 1;
    return 0;
}

/* --floor: PI0_SPEC §6 for the workload's dims, batch and P, without opening a model. */
static int run_floor_only(const bench_config *cfg) {
    pi0_error err = { { 0 } };
    pi0_dims d;
    pi0_status st;
    if (cfg->model_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", cfg->model_dir);
        st = pi0_dims_load(&d, path, &err);
    } else {
        st = dims_resolve(&d, cfg->dims_arg ? cfg->dims_arg : "full", cfg->horizon, &err);
    }
    if (st != PI0_OK) {
        fprintf(stderr, "pi0 bench: %s\n", err.msg);
        return 2;
    }
    int n_masked = 0;
    for (int c = 0; c < cfg->cameras; c++) n_masked += cfg->masked[c];
    int n_images = cfg->skip ? cfg->cameras - n_masked : cfg->cameras;
    int N = (d.image_size / d.patch_size) * (d.image_size / d.patch_size);
    stage_floor f[N_STAGES];
    floor_compute(f, &d, cfg->batch, n_images, cfg->prompt_len, cfg->horizon, cfg->steps,
                  cfg->peak_tflops, cfg->peak_tbps);
    printf("# pi0 bench --floor\n\n");
    printf("- B=%d, %d of %d cameras through SigLIP (masked cameras %s), L=%d, P=%d, A=%d, %d steps\n",
           cfg->batch, n_images, cfg->cameras, n_masked == 0 ? "none" : cfg->skip ? "skipped" : "run",
           cfg->prompt_len, n_images * N + cfg->prompt_len, cfg->horizon, cfg->steps);
    printf("- floor = max(FLOPs / %.0f TFLOP/s, bytes / %.2f TB/s) per stage (PI0_SPEC 6): FLOPs are "
           "matrix products, bytes are bf16 weights read once plus the KV cache\n\n",
           cfg->peak_tflops, cfg->peak_tbps);
    printf("| stage | GFLOP | GB | compute ms | memory ms | floor ms |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "floor");
    for (int s = 0; s < N_STAGES; s++) {
        printf("| %s | %.1f | %.3f | %.3f | %.3f | %.3f |\n", stage_names[s], f[s].flops * 1e-9,
               f[s].bytes * 1e-9, f[s].compute_ms, f[s].memory_ms, f[s].floor_ms);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", stage_names[s]);
        cJSON_AddNumberToObject(o, "flops", f[s].flops);
        cJSON_AddNumberToObject(o, "bytes", f[s].bytes);
        cJSON_AddNumberToObject(o, "compute_ms", f[s].compute_ms);
        cJSON_AddNumberToObject(o, "memory_ms", f[s].memory_ms);
        cJSON_AddNumberToObject(o, "floor_ms", f[s].floor_ms);
        cJSON_AddItemToArray(arr, o);
    }
    printf("\nfloor: %.3f ms, %.1f Hz, %.1f samples/s\n", f[ST_TOTAL].floor_ms,
           1000.0 / f[ST_TOTAL].floor_ms, 1000.0 * cfg->batch / f[ST_TOTAL].floor_ms);
    int rc = 0;
    if (cfg->json_path && write_json(root, cfg->json_path, &err)) {
        fprintf(stderr, "pi0 bench: %s\n", err.msg);
        rc = 1;
    }
    cJSON_Delete(root);
    return rc;
}

int pi0_cmd_bench(int argc, char **argv) {
    bench_config cfg;
    int rc = parse_args(&cfg, argc, argv);
    if (rc != PI0_ARGS_OK) return rc == PI0_ARGS_HELP ? 0 : 2;
    if (cfg.floor_only) return run_floor_only(&cfg);

    bench b = { .cfg = &cfg };
    pi0_error err = { { 0 } };
    b.recipe.max_batch = cfg.batch;
    for (int i = 0; i < cfg.sweep.n; i++)
        if (cfg.sweep.v[i] > b.recipe.max_batch) b.recipe.max_batch = cfg.sweep.v[i];
    rc = open_main_model(&b.m, &b.recipe, &cfg, &err);
    if (rc) {
        fprintf(stderr, "pi0 bench: %s\n", err.msg);
        return rc;
    }
    int cuda = b.recipe.backend == PI0_BACKEND_CUDA;
    if (cfg.warmup < 0) cfg.warmup = cuda ? CUDA_DEFAULT_WARMUP : CPU_DEFAULT_WARMUP;
    if (cfg.iters < 0) cfg.iters = cuda ? CUDA_DEFAULT_ITERS : CPU_DEFAULT_ITERS;
    b.dims = pi0_model_dims(b.m);
    for (int c = 0; c < cfg.cameras; c++) b.n_masked += cfg.masked[c];
    b.n_images = cfg.skip ? cfg.cameras - b.n_masked : cfg.cameras;
    if (!cuda) snprintf(b.power_why, sizeof b.power_why, "CPU backend");
    else pi0_nvml_open(&b.nv, cfg.device, b.power_why, sizeof b.power_why);

    rc = 1;
    if (!(b.root = cJSON_CreateObject())) {
        pi0_fail(&err, PI0_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (workload_make(&b.w, &cfg, b.dims, b.recipe.max_batch) != 0) {
        pi0_fail(&err, PI0_ERR_NOMEM, "out of memory for the inputs of %d rows", b.recipe.max_batch);
        goto done;
    }
    json_header(&b);
    print_header(&b);
    if (run_headline(&b, &err)) goto done;
    if (cfg.breakdown && run_breakdown(&b, &err)) goto done;
    if (cfg.sweep.n && run_sweep(&b, &err)) goto done;
    if (cfg.ladder && run_ladder(&b, &err)) goto done;
    print_published(b.root);
    if (cfg.json_path) {
        if (write_json(b.root, cfg.json_path, &err)) goto done;
        printf("\nwrote %s\n", cfg.json_path);
    }
    rc = 0;
done:
    if (rc) fprintf(stderr, "pi0 bench: %s\n", err.msg);
    cJSON_Delete(b.root);
    pi0_batch_buf_free(&b.w);
    pi0_nvml_close(b.nv);
    pi0_model_close(b.m);
    return rc;
}
