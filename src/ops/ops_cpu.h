/* ops_cpu.h - the float32 CPU ops of the reference backend (src/cpu/model_cpu.c), one op per
 * file in src/ops/<op>_cpu.c. They are also the references the CUDA ops are tested against
 * (tests/test_ops.cu), so every signature takes plain row-major float arrays with explicit
 * dimensions and owns nothing.
 *
 * Threading: the ops that matter for speed take a pi0_pool (NULL = run on the calling thread).
 * Results never depend on the number of threads: every output element is computed by one
 * task, with the same order of additions whatever the split.
 * Sums that set a statistic (norms, softmax denominators) are taken in double: the reference
 * must never be the noisy side of a comparison. */
#ifndef PI0_OPS_CPU_H
#define PI0_OPS_CPU_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- thread pool (pool_cpu.c) ----------------------------------------------------------- */

typedef struct pi0_pool pi0_pool;

/* Starts n_threads - 1 workers; the caller of pi0_pool_run is the n-th. n_threads = 0 means
 * one per online core. */
pi0_status pi0_pool_open(pi0_pool **out, int n_threads, pi0_error *err);
void pi0_pool_close(pi0_pool *p);             /* NULL is a no-op */
int pi0_pool_size(const pi0_pool *p);         /* threads that run tasks; 1 for NULL */
/* Calls fn(ctx, task) for task = 0 .. n_tasks-1, spread over the threads, and returns when all
 * are done. Tasks must be independent. Not reentrant: fn must not call pi0_pool_run. */
void pi0_pool_run(pi0_pool *p, int n_tasks, void (*fn)(void *ctx, int task), void *ctx);

/* ---- linear layers (matmul_cpu.c) ------------------------------------------------------- */

/* y[M, N] = x[M, K] · w[N, K]ᵀ + b[N]   (b may be NULL). w is a Linear weight as stored,
 * [out, in]. Each output is a float32 dot product over K in blocks of 512, each block summed
 * in 8 interleaved partial sums. y must not overlap x or w. */
void pi0_matmul_cpu(float *y, const float *x, const float *w, const float *b, int M, int N, int K,
                    pi0_pool *pool);
/* The same with row strides (in floats): y[m, n] at y[m·ldy + n], x[m, k] at x[m·ldx + k],
 * w[n, k] at w[n·ldw + k]. For head slices of q, k, v in attention. */
void pi0_matmul_strided_cpu(float *y, int ldy, const float *x, int ldx, const float *w, int ldw,
                            const float *b, int M, int N, int K, pi0_pool *pool);

/* ---- normalizations --------------------------------------------------------------------- */

/* LayerNorm (SigLIP): y = (x - mean) / sqrt(var + eps) · w + b, biased variance, statistics
 * in double. x, y: [n_rows, dim] (may be the same array); w, b: [dim]. */
void pi0_layernorm_cpu(float *y, const float *x, const float *w, const float *b, int n_rows,
                       int dim, float eps);

/* Gemma RMSNorm: y = x / sqrt(mean(x²) + eps) · (1 + s), mean in double. x, y: [n_rows, dim]
 * (may be the same array); s: [dim], the stored scale (a zero scale is the identity gain). */
void pi0_rmsnorm_cpu(float *y, const float *x, const float *s, int n_rows, int dim, float eps);

/* ---- activations ------------------------------------------------------------------------ */

/* gelu_tanh(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), in place over n values. */
void pi0_gelu_cpu(float *x, size_t n, pi0_pool *pool);
/* Gemma's gated MLP activation: y = gelu_tanh(gate) · up, over n values (y may be gate). */
void pi0_gelu_gate_cpu(float *y, const float *gate, const float *up, size_t n, pi0_pool *pool);
/* swish(x) = x·σ(x) = x / (1 + e^(-x)), in place over n values. */
void pi0_swish_cpu(float *x, size_t n);

/* ---- rotary position embedding (rope_cpu.c) --------------------------------------------- */

/* RoPE with half-split pairs, in place, as openpi's Gemma computes it in float32:
 *   timescale_i = 10000^((2/Dh)·i),  θ_i = pos / timescale_i,  i = 0 .. Dh/2 - 1
 *   u'[i] = u[i]·cos θ_i - u[i + Dh/2]·sin θ_i,   u'[i + Dh/2] = u[i + Dh/2]·cos θ_i + u[i]·sin θ_i
 * x: [n_rows, row_stride] holding n_heads heads of head_dim each from column 0 (head-major);
 * pos: [n_rows]. head_dim must be even. */
void pi0_rope_cpu(float *x, const int32_t *pos, int n_rows, int n_heads, int head_dim,
                  int row_stride);

/* ---- softmax (softmax_cpu.c) ------------------------------------------------------------ */

/* Softmax over each row of x: [n_rows, n], in place; max subtracted first, exp in float32,
 * denominator summed in double. */
void pi0_softmax_cpu(float *x, int n_rows, int n);

/* ---- attention (attention_cpu.c) -------------------------------------------------------- */

/* The logit that replaces a masked one (PI0_SPEC 2.5): finite, so a fully masked row becomes
 * a uniform average instead of NaN, and exp(masked - max) is exactly 0 otherwise. */
#define PI0_MASK_LOGIT (-2.3819763e38f)

/* Multi-head attention of one sequence, with grouped key/value heads (n_kv_heads divides
 * n_heads; query head h reads key/value head h / (n_heads / n_kv_heads)):
 *   logit[h, i, j] = (q[i, h] · k[j, h']) · scale,  replaced by PI0_MASK_LOGIT where !mask[i, j]
 *   p = softmax over j (pi0_softmax_cpu),   o[i, h] = Σ_j p[h, i, j] · v[j, h']
 * q: [T, n_heads·Dh]; k, v: [Tk, n_kv_heads·Dh]; o: [T, n_heads·Dh] (must not overlap q, k, v);
 * mask: [T, Tk] (1 = may attend) or NULL for none; probs: scratch [n_heads, T, Tk], holds the
 * probabilities on return. */
void pi0_attention_cpu(float *o, const float *q, const float *k, const float *v,
                       const uint8_t *mask, float *probs, int T, int Tk, int n_heads,
                       int n_kv_heads, int head_dim, float scale, pi0_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
