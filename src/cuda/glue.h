/* glue.h - the CUDA backend's model-specific kernels that are not ops with a CPU twin: moving
 * pixels into patches, heads in and out of the batched-attention layout, the text embedding
 * gather, the suffix embedding's pieces and the Euler update. Internal. */
#ifndef PI0_CUDA_GLUE_H
#define PI0_CUDA_GLUE_H

#include "cuda/cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* img [n_img, S, S, 3] fp32 -> patches [n_img * Np*Np, ld] fp32, columns in (ch, ky, kx) order
 * (the conv weight's [Dv, 3, p, p] flattening, PI0_SPEC 2.2); columns [3p^2, ld) are zeroed. */
pi0_status pi0_im2col_cuda(float *patches, int ld, const float *img, int n_img, int S, int p,
                           cudaStream_t stream, pi0_error *err);
/* x[i, t, :] = bf16(acc[i, t, :] + bias + pos[t, :]) for n_img images of N tokens, width Dv. */
pi0_status pi0_patch_finish_cuda(bf16 *x, const float *acc, const float *bias, const float *pos,
                                 int n_img, int N, int Dv, cudaStream_t stream, pi0_error *err);
/* qkv [n_img*N, 3*Hv*Dh] -> q, k, v each [n_img, Hv, N, Dh]. */
pi0_status pi0_heads_split_cuda(bf16 *q, bf16 *k, bf16 *v, const bf16 *qkv, int n_img, int N,
                                int Hv, int Dh, cudaStream_t stream, pi0_error *err);
/* oh [n_img, Hv, N, Dh] -> o [n_img*N, Hv*Dh]. */
pi0_status pi0_heads_merge_cuda(bf16 *o, const bf16 *oh, int n_img, int N, int Hv, int Dh,
                                cudaStream_t stream, pi0_error *err);
/* prefix[b, row0 + i, :] = bf16(float(embed[tokens[b, i]]) * scale), b < B, i < L; rows of
 * batch b start at b * P. */
pi0_status pi0_embed_gather_cuda(bf16 *prefix, const bf16 *embed, const int32_t *tokens, int B,
                                 int L, int D, int P, int row0, float scale, cudaStream_t stream,
                                 pi0_error *err);
/* cat [rows, 2*W] fp32 = [a[rows, W], temb[W] for every row]. */
pi0_status pi0_time_cat_cuda(float *cat, const float *a, const float *temb, int rows, int W,
                             cudaStream_t stream, pi0_error *err);
/* y = act(y + b) in place, y [rows, n] fp32, b [n]; act = swish (x * sigmoid(x)) when swish. */
pi0_status pi0_bias_act_f32_cuda(float *y, const float *b, int rows, int n, int swish,
                                 cudaStream_t stream, pi0_error *err);
/* dst[b*dst_ld_rows + r, :] = src[b*rows + r, :] for r < rows, width W (bf16). */
pi0_status pi0_rows_scatter_cuda(bf16 *dst, int dst_ld_rows, const bf16 *src, int B, int rows,
                                 int W, cudaStream_t stream, pi0_error *err);
/* dst[i] = src[i] converted: src bf16 (src_bf16) or fp32, dst fp32 (dst_f32) or bf16. */
pi0_status pi0_convert_cuda(void *dst, int dst_f32, const void *src, int src_bf16, size_t n,
                            cudaStream_t stream, pi0_error *err);
/* ys [B, 1 + A, W] bf16: row 0 = bf16(state_tok[b]), rows 1.. = bf16(act[b, a]). */
pi0_status pi0_suffix_assemble_cuda(bf16 *ys, const float *state_tok, const float *act, int B,
                                    int A, int W, cudaStream_t stream, pi0_error *err);
/* x[b, a, :] += dt * vel[b, 1 + a, :] (fp32; vel holds all 1 + A suffix rows, the state
 * row unused); first: also v_first[b, a, :] = vel[b, 1 + a, :]. x, v_first [B, A, Da]. */
pi0_status pi0_euler_cuda(float *x, float *v_first, const float *vel, int B, int A, int Da,
                          float dt, int first, cudaStream_t stream, pi0_error *err);

#ifdef __cplusplus
}
#endif
#endif
