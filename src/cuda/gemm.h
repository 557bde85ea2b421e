/* gemm.h - cuBLASLt matrix products in the row-major form the model uses:
 *   Y[M, N] = alpha * X[M, K] · W^T + beta * Y  (+ epilogue), W stored [N, K] (Linear weights)
 * or W stored [K, N] when w_kn (the P·V product). Optionally batched with element strides.
 * A plan (descriptors + the heuristic's algorithm) is made once per distinct call shape and
 * cached; the model makes every plan in its first, eager run, so that a captured CUDA graph
 * never asks the heuristic. A new plan times up to 16 of the heuristic's algorithms on the
 * call's own buffers and keeps the fastest (autotuning, on by default): the first call of a
 * shape then synchronizes the stream, and y must not overlap x or w. Internal to the CUDA
 * backend. */
#ifndef PI0_CUDA_GEMM_H
#define PI0_CUDA_GEMM_H

#include "cuda/cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { PI0_EPI_NONE = 0, PI0_EPI_BIAS = 1, PI0_EPI_GELU_BIAS = 2 };

typedef struct {
    int M, N, K, batch;            /* batch >= 1 */
    cudaDataType_t tx, tw, ty;     /* CUDA_R_16BF or CUDA_R_32F; tx == tw */
    const void *x; int ldx; long long sx;
    const void *w; int ldw; long long sw; int w_kn;
    void *y; int ldy; long long sy;
    int epilogue;                  /* PI0_EPI_*; the bias has ty's type, length N */
    const void *bias;
    float alpha, beta;             /* beta 0 or 1 (1: accumulate into y, in place) */
    int tf32;                      /* fp32 inputs: allow TF32 tensor cores */
} pi0_gemm_args;

typedef struct pi0_gemm_ctx pi0_gemm_ctx;

pi0_status pi0_gemm_ctx_create(pi0_gemm_ctx **out, size_t workspace_bytes, pi0_error *err);
void pi0_gemm_ctx_destroy(pi0_gemm_ctx *g);
/* Queues the product on stream. Plans a new shape on first sight (host work only). */
pi0_status pi0_gemm(pi0_gemm_ctx *g, const pi0_gemm_args *a, cudaStream_t stream, pi0_error *err);
/* Autotuning of plans made from now on: on (default) or off (the heuristic's first choice). */
void pi0_gemm_ctx_set_autotune(pi0_gemm_ctx *g, int on);

#ifdef __cplusplus
}
#endif
#endif
