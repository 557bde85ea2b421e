/* pi0.h - load a Pi0 checkpoint (openpi, pi05=False) and sample action chunks.
 *
 *   pi0_options opt = pi0_options_default();
 *   opt.model_dir = "ckpt/pi0_droid";               // model.safetensors + config.json
 *   opt.backend = PI0_BACKEND_CUDA;
 *   pi0_model *m; pi0_error err;
 *   if (pi0_model_open(&m, &opt, &err) != PI0_OK) { fprintf(stderr, "pi0: %s\n", err.msg); ... }
 *   pi0_outputs out = { .actions = actions };       // [B, A, action_dim]
 *   pi0_model_sample(m, &batch, &out, &err);
 *   pi0_model_close(m);
 *
 * A pi0_model is used by one thread at a time; a server owns one per device.
 * Functions that can fail return a pi0_status and fill *err (which may be NULL) with one
 * line naming what is wrong. Nothing here prints, exits or reads the environment. */
#ifndef PI0_H
#define PI0_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PI0_OK = 0,
    PI0_ERR_IO,          /* missing, unreadable or truncated file */
    PI0_ERR_FORMAT,      /* corrupt header, bad offsets, unknown dtype, bad JSON */
    PI0_ERR_SHAPE,       /* a tensor or an input has the wrong shape */
    PI0_ERR_INPUT,       /* a bad value: NaN in state, token id out of range, bad option */
    PI0_ERR_DEVICE,      /* CUDA or cuBLASLt failure */
    PI0_ERR_NOMEM,       /* host or device allocation failed */
    PI0_ERR_UNSUPPORTED, /* not built in (e.g. CUDA), or not supported by this backend */
} pi0_status;

typedef struct { char msg[512]; } pi0_error;

const char *pi0_status_name(pi0_status s);

/* ---- model dimensions (config.json) ---------------------------------------------------- */

enum { PI0_MAX_CAMERAS = 8 };

typedef struct {
    int width, depth, mlp_dim, num_heads, head_dim; /* head_dim = width / num_heads */
    float eps;                                      /* LayerNorm epsilon (1e-6) */
} pi0_vision_dims;

typedef struct {
    int width, depth, mlp_dim, num_heads, num_kv_heads, head_dim;
    int vocab_size;                                 /* 0 for the action expert */
    float eps;                                      /* RMSNorm epsilon (1e-6) */
} pi0_gemma_dims;

typedef struct {
    int action_dim;      /* 32 */
    int action_horizon;  /* A: 50 by default, 10 for pi0_droid */
    int max_token_len;   /* L: 48 */
    int image_size;      /* 224 */
    int patch_size;      /* 14 */
    pi0_vision_dims vision;
    pi0_gemma_dims llm, expert;
} pi0_dims;

pi0_dims pi0_dims_full(void);  /* SigLIP So400m/14 + Gemma 2B + Gemma 300M, horizon 50 */
pi0_dims pi0_dims_tiny(void);  /* the small golden model (../shared/reference golden/model_tiny_h10) */

/* Parses openpi's short config.json form ("paligemma_variant": "gemma_2b", ...), LeRobot's policy
 * config (type "pi0", chunk_size, ...) or the explicit form with "vision"/"llm"/"expert". */
pi0_status pi0_dims_parse(pi0_dims *out, const char *json, size_t len, pi0_error *err);
pi0_status pi0_dims_load(pi0_dims *out, const char *config_path, pi0_error *err);
/* The explicit JSON form of d; malloc'd, the caller frees it. NULL when out of memory. */
char *pi0_dims_to_json(const pi0_dims *d);
/* Checks the invariants the model needs (shared heads, head_dim*heads, ...). */
pi0_status pi0_dims_check(const pi0_dims *d, pi0_error *err);

/* ---- opening a model ------------------------------------------------------------------- */

typedef enum { PI0_BACKEND_CPU = 0, PI0_BACKEND_CUDA = 1 } pi0_backend;

/* 1 if the backend was compiled in (CUDA also needs a device at open time). */
int pi0_backend_built(pi0_backend b);
const char *pi0_backend_name(pi0_backend b);

/* Optimization switches of the CUDA backend: all on by default. `pi0 bench --ladder` turns them
 * off one at a time to measure what each is worth. The CPU backend ignores them. */
enum {
    PI0_OPT_GRAPH         = 1u << 0, /* replay one CUDA graph per shape instead of launching */
    PI0_OPT_FUSED_PROJ    = 1u << 1, /* q/k/v and gate/up as one GEMM each */
    PI0_OPT_GEMM_EPILOGUE = 1u << 2, /* bias, GELU and residual adds fused into the GEMMs */
    PI0_OPT_FUSED_EXPERT  = 1u << 3, /* small batches: each denoising step's expert layers as one
                                        persistent kernel (Hopper) */
    PI0_OPT_FUSED_GLUE    = 1u << 4, /* small batches: the suffix embedding, final norm, action
                                        projection and Euler update in 2 launches a step, not 12 */
    PI0_OPT_FUSED_PREFIX_ATTN = 1u << 5, /* the prefix's attention as one kernel with an online
                                            softmax, no score matrix (Hopper: shared memory) */
    PI0_OPT_ALL           = 0xffffffffu,
};

typedef struct {
    const char *model_dir;       /* directory with model.safetensors and config.json; or NULL, */
    const pi0_dims *random_dims; /* ... then random weights of these dims (benchmarks, tests) */
    uint64_t random_seed;        /* seed for random weights */
    pi0_backend backend;         /* PI0_BACKEND_CPU by default */
    int max_batch;               /* CUDA: buffers are sized for this many rows (default 1) */
    int n_threads;               /* CPU: worker threads, 0 = one per core */
    int device;                  /* CUDA device index */
    int skip_masked_cameras;     /* 1 (default): drop cameras masked in every row; exact, PI0_SPEC 2.11 */
    unsigned opt_flags;          /* PI0_OPT_* (default PI0_OPT_ALL) */
    /* Progress lines (loading, conversions); NULL = silent. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
} pi0_options;

pi0_options pi0_options_default(void);

typedef struct pi0_model pi0_model; /* weights, buffers, CUDA graphs */

pi0_status pi0_model_open(pi0_model **out, const pi0_options *opt, pi0_error *err);
void pi0_model_close(pi0_model *m); /* NULL is a no-op */
const pi0_dims *pi0_model_dims(const pi0_model *m);
pi0_backend pi0_model_backend(const pi0_model *m);
/* A line describing the device (CPU threads, or GPU name, SMs, memory, driver). */
const char *pi0_model_device_name(const pi0_model *m);

/* ---- sampling -------------------------------------------------------------------------- */

/* One batch of observations, already transformed (PI0_SPEC 2.0). Arrays are row-major. */
typedef struct {
    int batch;                  /* B >= 1 */
    int n_cameras;              /* C, 1..PI0_MAX_CAMERAS (openpi: 3) */
    const float *images;        /* [B, C, S, S, 3] in [-1, 1], NHWC; S = dims.image_size */
    const uint8_t *image_masks; /* [B, C], 1 = camera present */
    int n_tokens;               /* L: prompt slots, 1..dims.max_token_len */
    const int32_t *tokens;      /* [B, L] token ids, valid ones first */
    const uint8_t *token_mask;  /* [B, L], 1 = valid token */
    const float *state;         /* [B, action_dim], normalized and zero-padded */
    const float *noise;         /* [B, A, action_dim], the sample at t = 1 */
    int horizon;                /* A >= 1 */
    int num_steps;              /* n >= 1 Euler steps */
} pi0_batch;

typedef struct {
    float *actions;     /* [B, A, action_dim]: required */
    float *v_first;     /* [B, A, action_dim]: velocity of the first step, or NULL */
    float *prefix_embs; /* [B, C*N + L, llm.width]: the LLM's input, or NULL. CPU backend only:
                           other backends return PI0_ERR_UNSUPPORTED when it is asked for. Rows
                           of a camera skipped as masked in every row are zeros. */
} pi0_outputs;

/* Checks in (shapes against the model, masks 0/1, token ids < vocab, finite values) and
 * samples. Exactly openpi's sample_actions with the given noise. */
pi0_status pi0_model_sample(pi0_model *m, const pi0_batch *in, pi0_outputs *out, pi0_error *err);

/* sample = upload + run + download, split for benchmarks:
 * upload checks the batch and copies it into the model's buffers (and picks the CUDA graph);
 * run computes on what was uploaded; download copies the results out. */
typedef enum {
    PI0_RUN_FAST = 0,    /* the fastest path (CUDA: graph replay) */
    PI0_RUN_STAGED = 1,  /* stage by stage with timing events between stages */
} pi0_run_mode;

typedef struct {
    double total_ms;       /* device time of the whole run */
    double vision_ms;      /* SigLIP + projector + text embedding (STAGED only) */
    double prefill_ms;     /* Gemma 2B over the prefix, filling the KV cache (STAGED only) */
    double diffusion_ms;   /* all Euler steps (STAGED only) */
} pi0_timing;

pi0_status pi0_model_upload(pi0_model *m, const pi0_batch *in, pi0_error *err);
pi0_status pi0_model_run(pi0_model *m, pi0_run_mode mode, pi0_timing *timing, pi0_error *err);
pi0_status pi0_model_download(pi0_model *m, pi0_outputs *out, pi0_error *err);

/* ---- parameter counts (pi0 inspect) ---------------------------------------------------- */

typedef struct {
    int64_t vision;      /* SigLIP + projector */
    int64_t llm;         /* Gemma 2B incl. its token embedding and final norm */
    int64_t llm_embed;   /* of which the token embedding */
    int64_t expert;      /* Gemma 300M */
    int64_t projections; /* state, action in/out, action-time MLP */
    int64_t total;       /* used by inference */
    int n_tensors;
} pi0_param_counts;

pi0_param_counts pi0_dims_param_counts(const pi0_dims *d);

#ifdef __cplusplus
}
#endif
#endif
