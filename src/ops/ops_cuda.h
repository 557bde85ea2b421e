/* ops_cuda.h - the CUDA ops, each beside its CPU reference (rmsnorm.cu next to rmsnorm_cpu.c...).
 * bf16 activations in and out, fp32 arithmetic inside. Every launcher queues its kernel on
 * `stream`, checks the launch and returns PI0_OK or PI0_ERR_DEVICE; none synchronizes, so all
 * of them can be captured into a CUDA graph. Row-major arrays; shapes in the comments.
 * Legend: B batch, T tokens, H query heads, Dh head dim, Tk keys, F MLP width. */
#ifndef PI0_OPS_CUDA_H
#define PI0_OPS_CUDA_H

#include "cuda/cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Gemma RMSNorm: y = x / sqrt(mean(x^2) + eps) * (1 + s); statistics and gain in fp32.
 * x [n_rows, dim] bf16; s [dim] fp32; y [n_rows, dim] bf16, or fp32 when y_f32. */
pi0_status pi0_rmsnorm_cuda(void *y, int y_f32, const bf16 *x, const float *s, int n_rows, int dim,
                            float eps, cudaStream_t stream, pi0_error *err);

/* LayerNorm (biased variance): y = (x - mean) / sqrt(var + eps) * g + b; fp32 statistics.
 * x, y [n_rows, dim] bf16; g, b [dim] fp32. */
pi0_status pi0_layernorm_cuda(bf16 *y, const bf16 *x, const float *g, const float *b, int n_rows,
                              int dim, float eps, cudaStream_t stream, pi0_error *err);

/* RoPE of the fused Gemma projection, half-split pairs (i, i + Dh/2),
 * angle = pos / 10000^((2/Dh)*i)
 * in fp32 as rope_cpu.c; q is also scaled by 1/sqrt(Dh) (a power of two).
 *   qkv [B*T, (H+2)*Dh] bf16: per token H query heads, then k, then v (head-major)
 *   q   [B, T*H, Dh]: query head h of token t at row t*H + h (NULL: q is not needed)
 *   kc, vc: row t of batch b goes to kc[b*kv_stride + (kv_row0 + t)*Dh], rotated k / plain v
 *   position of (b, t) = pos[b*pos_ld + t*pos_t] + t*pos_add: the prefix passes its position
 *   table (pos_ld T, pos_t 1, pos_add 0), the suffix n_valid (pos_ld 1, pos_t 0, pos_add 1). */
pi0_status pi0_rope_qkv_cuda(bf16 *q, bf16 *kc, bf16 *vc, const bf16 *qkv, const int32_t *pos,
                             int pos_ld, int pos_t, int pos_add, int B, int T, int H, int Dh,
                             long long kv_stride, int kv_row0, cudaStream_t stream,
                             pi0_error *err);

/* Masked softmax over attention logits, in place: scores [B, R, ld] fp32 in (row r of batch b,
 * first Tk columns used); out: bf16 probabilities at the start of the same row, i.e. a bf16
 * array [B, R, 2*ld]. Masked logits are replaced by -2.3819763e38 (PI0_SPEC 2.5), so a row
 * without any valid key becomes uniform, never NaN. Masks (query token t = r / H):
 *   PI0_MASK_NONE:   every key (SigLIP)
 *   PI0_MASK_PREFIX: key j valid iff pad[b*pad_ld + j]
 *   PI0_MASK_SUFFIX: key j < P valid iff pad[b*pad_ld + j]; suffix key j = P + s: the state
 *                    query (t = 0) sees only s = 0, action queries see every s (PI0_SPEC 2.8)
 * Tk <= 4096. */
enum { PI0_MASK_NONE = 0, PI0_MASK_PREFIX = 1, PI0_MASK_SUFFIX = 2 };
pi0_status pi0_softmax_cuda(float *scores, int B, int R, int Tk, int ld, int mask,
                            const uint8_t *pad, int pad_ld, int P, int H, cudaStream_t stream,
                            pi0_error *err);

/* Gated GELU in place: gu [n_rows, ld] holds gate in columns [0, F) and up in [F, 2F);
 * afterwards columns [0, F) hold gelu_tanh(gate) * up (one bf16 rounding). */
pi0_status pi0_gelu_mul_cuda(bf16 *gu, int n_rows, int F, int ld, cudaStream_t stream,
                             pi0_error *err);

/* y = act(y + b) in place, y [n_rows, n] bf16 (row stride ld), b [n] bf16; act = gelu_tanh
 * when gelu, else identity. The GEMM-epilogue-off path of bias and GELU+bias. */
pi0_status pi0_bias_act_cuda(bf16 *y, const bf16 *b, int n_rows, int n, int ld, int gelu,
                             cudaStream_t stream, pi0_error *err);

/* x += t, both [n] bf16, the sum in fp32 then rounded (the residual add without the epilogue). */
pi0_status pi0_add_cuda(bf16 *x, const bf16 *t, size_t n, cudaStream_t stream, pi0_error *err);

/* SigLIP self-attention in one launch (attention_vit.cu): per image and head,
 * o = bf16(softmax(q·k^T * scale)) · v with fp32 logits and softmax, the probabilities rounded
 * to bf16 before the product, fp32 accumulation. q, k, v are read from the fused projection
 * qkv [n_img*N, 3*H*Dh] (per token H query heads, then H key heads, then H value heads, head h
 * at columns h*Dh .. of its third); o [n_img*N, H*Dh], head h at columns h*Dh ... Needs
 * pi0_attention_vit_supported(N, Dh) (N a multiple of 64 up to 256, Dh a multiple of 8 up to
 * 80) and 16-byte aligned pointers, else PI0_ERR_UNSUPPORTED. */
int pi0_attention_vit_supported(int N, int Dh);
pi0_status pi0_attention_vit_cuda(bf16 *o, const bf16 *qkv, int n_img, int N, int H, int Dh,
                                  float scale, cudaStream_t stream, pi0_error *err);

/* Multi-query attention of the prefix in one launch (attention_prefix.cu): per batch row b,
 * the R = T*H query rows (row t*H + h: token t, head h) against the first Tk keys of the one
 * key/value head, every row seeing every valid key (the bidirectional prefix mask):
 *   o = bf16(softmax(q·k^T)) · v, fp32 logits and softmax statistics, fp32 accumulation;
 * the softmax and mask semantics of pi0_softmax_cuda with PI0_MASK_PREFIX (a masked logit is
 * -2.3819763e38, so a row without a valid key averages the Tk rows of v uniformly).
 *   q [B][R][Dh]: row stride Dh, batch stride q_stride, RoPE'd and already scaled by
 *                 1/sqrt(Dh) (no scale here)
 *   k, v: key j of batch b at k[b*kv_stride + j*Dh] (the KV cache); rows >= Tk are not read
 *   pad [B][pad_ld]: key j of batch b valid iff pad[b*pad_ld + j] != 0; NULL: all valid
 *   o [B][R][Dh]: the layout of q (may not overlap q, k, v)
 * Needs pi0_attention_prefix_supported(Dh) (Dh 256 or 16, and enough shared memory on the
 * current device: Hopper yes, A100 no), Tk >= 1, 16-byte aligned pointers and strides that
 * are multiples of 8 elements, else PI0_ERR_UNSUPPORTED or PI0_ERR_SHAPE. */
int pi0_attention_prefix_supported(int Dh);
pi0_status pi0_attention_prefix_cuda(bf16 *o, const bf16 *q, const bf16 *k, const bf16 *v,
                                     const uint8_t *pad, int B, int R, int Tk, int Dh,
                                     long long q_stride, long long kv_stride, int pad_ld,
                                     cudaStream_t stream, pi0_error *err);

#ifdef __cplusplus
}
#endif
#endif
