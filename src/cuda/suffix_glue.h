/* suffix_glue.h - the work of a denoising step outside the expert layers, for the few suffix
 * rows of a small batch, in two launches a step instead of twelve.
 *
 * The time MLP's input layer acts on [action_in_proj(x_t), temb(t)] (PI0_SPEC 2.7). Being
 * linear in both halves, it splits exactly:
 *   W_in · [x W_a^T + b_a ; temb] + b_in = x · (W_in1 W_a)^T + (temb W_in2^T + W_in1 b_a + b_in)
 * so the model keeps W_c = W_in1 · W_a [W, Da] (composed once at load) and, per inference, the
 * time part tpart[k] = temb[k] W_in2^T + W_in1 b_a + b_in of every step. A step then reads 128 KB
 * of weights for the input layer instead of 8.1 MB, and action_in_proj disappears. Only the fp32
 * summation order differs from applying the two layers one after the other.
 *
 * Before: cuBLAS's fp32 GEMMs took 4-18 us each at M = 10 on the H200 (0.3-0.5 TB/s of weights)
 * and the bias, concatenation and assembly kernels 2 us each: 62 us a step of glue beside a
 * 700 us expert step. Internal to src/cuda. */
#ifndef PI0_CUDA_SUFFIX_GLUE_H
#define PI0_CUDA_SUFFIX_GLUE_H

#include "cuda/cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    PI0_GLUE_MAX_ROWS = 32,    /* rows (batch x horizon, or steps) a launch takes */
    PI0_GLUE_MAX_WIDTH = 2048, /* expert width the step-end kernel holds in shared memory */
    PI0_GLUE_MAX_ACTION = 64,  /* action dims of the same */
};

/* y[m, n] = b[n] + sum_k x[m, k] * w[n * ldw + k] in fp32, m < M <= PI0_GLUE_MAX_ROWS.
 * Output: y [M, N] fp32 when y is not NULL; otherwise the suffix rows of the expert's residual
 * stream: row m = b*A + a goes to ys[b*(A+1) + 1 + a, :] as bf16, and every
 * ys[b*(A+1), :] = bf16(state_tok[b, :]). K and ldw multiples of 4, 16-byte aligned x and w. */
typedef struct {
    const float *x;
    const float *w;
    int ldw;
    const float *b;
    int M, N, K;
    float *y;
    bf16 *ys;
    int A;
    const float *state_tok;
} pi0_glue_linear;

pi0_status pi0_glue_linear_cuda(const pi0_glue_linear *p, cudaStream_t stream, pi0_error *err);

/* Per action row m = b*A + a, one block each. When ys is not NULL (the end of a step):
 *   h = rmsnorm(ys[b*(A+1) + 1 + a, :]) * (1 + norm_s) in fp32 (as pi0_rmsnorm_cuda, fp32 out)
 *   vel = h · w_out^T + b_out                  (action_out_proj, [Da])
 *   first: v_first[m, :] = vel;   x[m, :] += dt * vel   (Euler, as glue.h's pi0_euler_cuda)
 * When tpart is not NULL (the start of the next step), with x as it now is:
 *   smid[m, :] = swish(x[m, :] · w_c^T + tpart)     (the time MLP's input layer, see above)
 * W a multiple of 4 up to PI0_GLUE_MAX_WIDTH, Da a multiple of 4 up to PI0_GLUE_MAX_ACTION. */
typedef struct {
    const bf16 *ys;
    const float *norm_s;
    float eps;
    int B, A, W, Da;
    const float *w_out, *b_out;
    float *x, *v_first;
    float dt;
    int first;
    const float *w_c, *tpart;
    float *smid;
} pi0_glue_step_end;

pi0_status pi0_glue_step_end_cuda(const pi0_glue_step_end *p, cudaStream_t stream,
                                  pi0_error *err);

/* Whether the glue kernels take these shapes (rows = B*A, expert width W, action dims Da). */
int pi0_glue_supported(int rows, int W, int Da);

#ifdef __cplusplus
}
#endif
#endif
