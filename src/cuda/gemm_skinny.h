/* gemm_skinny.h - bf16 products with few rows (M <= 64: the action expert's suffix rows at small
 * batch), Y = X·W^T with W stored [N, K] as Linear weights. At such M the product only streams
 * the weights, so the kernel reads each weight row once with 16-byte loads, keeps X in the L1
 * cache, accumulates in fp32 on the tensor cores, and fuses what would otherwise be separate
 * launches: the RMSNorm before q|k|v and gate|up, the residual add after o and down, and the
 * gated GELU after gate|up. Its CPU twin is pi0_matmul_cpu (plus rmsnorm/gelu_gate). Internal. */
#ifndef PI0_CUDA_GEMM_SKINNY_H
#define PI0_CUDA_GEMM_SKINNY_H

#include "cuda/cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { PI0_SKINNY_MAX_M = 64 };

typedef enum {
    PI0_SKINNY_STORE = 0,     /* y[m, n] = bf16(acc) */
    PI0_SKINNY_RESIDUAL = 1,  /* y[m, n] = bf16(y + acc), one rounding (cuBLASLt's beta = 1) */
    PI0_SKINNY_GELU_GATE = 2, /* W = [gate; up], [2N, K]: y[m, n] = bf16(gelu(bf16(gate)) ·
                               * bf16(up)), the roundings of the unfused GEMM + gelu_mul path */
} pi0_skinny_epilogue;

/* 1 when pi0_gemm_skinny_cuda takes the shape: 1 <= M <= 64, N % 8 == 0, K % 32 == 0, ldx % 8 == 0
 * (16-byte rows), x and w 16-byte aligned. */
int pi0_gemm_skinny_fits(int M, int N, int K, int ldx, const void *x, const void *w);

/* Y[M, N] (epilogue) X'[M, K]·W[N, K]^T, fp32 accumulation.
 *   x [M, ldx] bf16; when norm_s is given (the RMSNorm scale s [K], fp32), X' = bf16(x / rms(x) ·
 *   (1 + s)) per row with fp32 statistics, exactly the numerics of pi0_rmsnorm_cuda, else X' = x.
 *   w [N, K] bf16 ([2N, K] for PI0_SKINNY_GELU_GATE: gate rows, then up rows).
 *   y [M, ldy] bf16; must not overlap x or w.
 * Queues one kernel on stream; checks the launch. PI0_ERR_SHAPE when the shape does not fit. */
pi0_status pi0_gemm_skinny_cuda(bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w, int M,
                                int N, int K, const float *norm_s, float eps, int epilogue,
                                cudaStream_t stream, pi0_error *err);

#ifdef __cplusplus
}
#endif
#endif
