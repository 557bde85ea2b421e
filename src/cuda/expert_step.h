/* expert_step.h - every layer of the action expert for one denoising step as a single
 * persistent kernel (Hopper), for the small batches a robot sends. Internal to src/cuda.
 *
 * Why: at batch 1 a step is 18 layers of ~11 short kernels on 11 rows; each kernel streams a few
 * MB of weights and then the GPU idles between launches, so a step took ~1 ms against ~0.13 ms
 * of weight reading. Here one CTA per SM walks all layers; a producer thread streams that CTA's
 * share of every weight matrix into a shared-memory ring with TMA bulk copies, running ahead
 * across phase and layer boundaries (weights never depend on activations), while eight consumer
 * warps compute each phase and meet the other CTAs at a grid barrier between phases. Where the
 * GPU allows, the CTAs run in clusters of two, and the O and DOWN phases' inputs (every CTA needs
 * all of them) reach both CTAs of a pair by one multicast copy. */
#ifndef PI0_CUDA_EXPERT_STEP_H
#define PI0_CUDA_EXPERT_STEP_H

#include "cuda/cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Suffix rows (B * S) the fused step takes: two MMA row tiles (batch 1-2 at horizon 10). With
 * three or four the layer-by-layer path measured faster on the H200 (batch 3: 28.2 against
 * 27.8 ms, batch 4: 34.1 against 32.9, batch 5: 43.3 against 38.3; docs/BENCHMARKS.md). */
enum { PI0_XSTEP_MAX_ROWS = 32 };

typedef struct {
    const bf16 *wqkv;       /* [(H+2)*Dh, W]: q rows, then k, then v */
    const bf16 *wo;         /* [W, H*Dh] */
    const bf16 *wgu;        /* [2F, W]: gate rows, then up */
    const bf16 *wd;         /* [W, F] */
    const float *attn_norm; /* [W] raw scales s of 1 + s */
    const float *ffw_norm;  /* [W] */
    bf16 *kc, *vc;          /* this layer's KV cache [B, kv_stride]: P prefix rows, then S */
} pi0_xstep_layer;

typedef struct {
    const pi0_xstep_layer *layers; /* device array [depth] */
    int depth, W, F, H, Dh;
    float eps;
    int B, S, P;                   /* batch rows, suffix tokens per row, prefix rows */
    long long kv_stride;           /* elements between batch rows of kc/vc */
    bf16 *ys;                      /* [B*S, W] suffix residual stream, updated in place */
    bf16 *q;                       /* [B*S*H, Dh] scratch: rotated, scaled queries */
    bf16 *o;                       /* [B*S, H*Dh] scratch: attention output */
    bf16 *act;                     /* [B*S, F] scratch: gelu(gate) * up */
    float *part;                   /* [pi0_xstep_part_floats] attention partials */
    const uint8_t *pad;            /* [B, pad_ld] prefix key mask */
    int pad_ld;
    const int32_t *n_valid;        /* [B] suffix positions start here */
    const float *rope;             /* [B*S, Dh/2, 2] from pi0_xstep_rope_cuda */
    unsigned *barrier;             /* one word, zeroed once before the first launch */
    int cluster;                   /* CTAs per cluster: what pi0_xstep_supported returned */
} pi0_xstep_args;

/* Nonzero when this device and these shapes can take the fused step (compute capability 9.0+,
 * at most PI0_XSTEP_MAX_ROWS suffix rows, head dim 16 or 256, widths that tile, expert width at
 * most 1024, one block per SM fits), after setting the kernel's shared-memory size for every
 * later pi0_xstep_run; 0 means use the layer-by-layer path. The nonzero value is the cluster
 * size to launch with (pi0_xstep_args.cluster): 2 when pairs of CTAs on neighbouring SMs can all
 * be resident together and a test launch of them succeeded, else 1 (PI0_XSTEP_CLUSTER=1 or 2
 * in the environment asks for another size, for measurements). Never fails: a CUDA error while
 * asking also answers 0 (or 1 for the cluster test). Call it outside stream capture. */
int pi0_xstep_supported(int device, int W, int F, int H, int Dh, int rows);

/* Floats of scratch `part` needs for `rows` = B*S suffix rows whose attention sees at most
 * `keys` = P + S keys. */
size_t pi0_xstep_part_floats(int rows, int keys, int H, int Dh);

/* rope[r, i] = (cos, sin) of the RoPE angle i of suffix row r (b = r / S at position
 * n_valid[b] + r % S): the same for every layer and step, so made once per inference. */
pi0_status pi0_xstep_rope_cuda(float *rope, const int32_t *n_valid, int B, int S, int Dh,
                               cudaStream_t stream, pi0_error *err);

/* Runs all a->depth layers on `stream` (one cooperative launch), for shapes that
 * pi0_xstep_supported accepted. */
pi0_status pi0_xstep_run(const pi0_xstep_args *a, cudaStream_t stream, pi0_error *err);

#ifdef __cplusplus
}
#endif
#endif
