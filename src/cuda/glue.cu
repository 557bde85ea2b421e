/* glue.cu - data movement and small fp32 kernels of the CUDA backend (see glue.h). Plain
 * grid-stride loops: each moves at most a few MB per inference at batch 1. */
#include "cuda/glue.h"

#define GRID_STRIDE(i, n)                                                       \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);     \
         i += (size_t)gridDim.x * blockDim.x)

static int grid_for(size_t n) {
    size_t g = (n + 255) / 256;
    return g > 65536 ? 65536 : (int)(g ? g : 1);
}

static __global__ void im2col_kernel(float *patches, int ld, const float *img, int n_img, int S,
                                     int p) {
    int np = S / p, kp = 3 * p * p;
    size_t n = (size_t)n_img * np * np * ld;
    GRID_STRIDE(i, n) {
        size_t row = i / ld;
        int col = (int)(i % ld);
        float v = 0.0f;
        if (col < kp) {
            int ch = col / (p * p), ky = (col / p) % p, kx = col % p;
            size_t im = row / (np * np);
            int t = (int)(row % (np * np)), py = t / np, px = t % np;
            v = img[((im * S + (size_t)(py * p + ky)) * S + (size_t)(px * p + kx)) * 3 + ch];
        }
        patches[i] = v;
    }
}

static __global__ void patch_finish_kernel(bf16 *x, const float *acc, const float *bias,
                                           const float *pos, int N, int Dv, size_t n) {
    GRID_STRIDE(i, n) {
        int c = (int)(i % Dv), t = (int)((i / Dv) % N);
        x[i] = __float2bfloat16(acc[i] + bias[c] + pos[(size_t)t * Dv + c]);
    }
}

static __global__ void heads_split_kernel(bf16 *q, bf16 *k, bf16 *v, const bf16 *qkv, int N,
                                          int Hv, int Dh, size_t n) {
    int Dv = Hv * Dh;
    GRID_STRIDE(i, n) { /* i indexes [img, t, h, d] of one of q, k, v */
        int d = (int)(i % Dh), h = (int)((i / Dh) % Hv);
        size_t it = i / Dv;  /* img * N + t */
        size_t img = it / N, t = it % N;
        size_t dst = ((img * Hv + h) * N + t) * Dh + d;
        const bf16 *src = qkv + it * 3 * Dv + (size_t)h * Dh + d;
        q[dst] = src[0];
        k[dst] = src[Dv];
        v[dst] = src[2 * Dv];
    }
}

static __global__ void heads_merge_kernel(bf16 *o, const bf16 *oh, int N, int Hv, int Dh,
                                          size_t n) {
    int Dv = Hv * Dh;
    GRID_STRIDE(i, n) {
        int d = (int)(i % Dh), h = (int)((i / Dh) % Hv);
        size_t it = i / Dv, img = it / N, t = it % N;
        o[i] = oh[((img * Hv + h) * N + t) * Dh + d];
    }
}

static __global__ void embed_gather_kernel(bf16 *prefix, const bf16 *embed,
                                           const int32_t *tokens, int L, int D, int P, int row0,
                                           float scale, size_t n) {
    GRID_STRIDE(i, n) {
        int c = (int)(i % D);
        size_t bl = i / D, b = bl / L, l = bl % L;
        int tok = tokens[bl];
        float e = __bfloat162float(embed[(size_t)tok * D + c]);
        prefix[(b * P + row0 + l) * D + c] = __float2bfloat16(e * scale);
    }
}

static __global__ void time_cat_kernel(float *cat, const float *a, const float *temb, int W,
                                       size_t n) {
    GRID_STRIDE(i, n) {
        size_t r = i / (2 * W);
        int c = (int)(i % (2 * W));
        cat[i] = c < W ? a[r * W + c] : temb[c - W];
    }
}

static __global__ void bias_act_f32_kernel(float *y, const float *b, int n, int swish,
                                           size_t total) {
    GRID_STRIDE(i, total) {
        float v = y[i] + b[i % n];
        y[i] = swish ? v / (1.0f + expf(-v)) : v;
    }
}

static __global__ void rows_scatter_kernel(bf16 *dst, int dst_ld_rows, const bf16 *src, int rows,
                                           int W, size_t n) {
    GRID_STRIDE(i, n) {
        int c = (int)(i % W);
        size_t br = i / W, b = br / rows, r = br % rows;
        dst[(b * dst_ld_rows + r) * W + c] = src[i];
    }
}

static __global__ void convert_kernel(void *dst, int dst_f32, const void *src, int src_bf16,
                                      size_t n) {
    GRID_STRIDE(i, n) {
        float v = src_bf16 ? __bfloat162float(((const bf16 *)src)[i]) : ((const float *)src)[i];
        if (dst_f32)
            ((float *)dst)[i] = v;
        else
            ((bf16 *)dst)[i] = __float2bfloat16(v);
    }
}

static __global__ void suffix_assemble_kernel(bf16 *ys, const float *state_tok, const float *act,
                                              int A, int W, size_t n) {
    GRID_STRIDE(i, n) {
        int c = (int)(i % W);
        size_t bs = i / W, b = bs / (A + 1), s = bs % (A + 1);
        float v = s == 0 ? state_tok[b * W + c] : act[(b * A + s - 1) * W + c];
        ys[i] = __float2bfloat16(v);
    }
}

static __global__ void euler_kernel(float *x, float *v_first, const float *vel, int A, int Da,
                                    float dt, int first, size_t n) {
    GRID_STRIDE(i, n) {
        size_t ba = i / Da, b = ba / A, a = ba % A;
        float v = vel[(b * (A + 1) + 1 + a) * Da + i % Da];
        if (first) v_first[i] = v;
        x[i] += dt * v;
    }
}

extern "C" pi0_status pi0_im2col_cuda(float *patches, int ld, const float *img, int n_img, int S,
                                      int p, cudaStream_t stream, pi0_error *err) {
    size_t n = (size_t)n_img * (S / p) * (S / p) * ld;
    if (!n) return PI0_OK;
    im2col_kernel<<<grid_for(n), 256, 0, stream>>>(patches, ld, img, n_img, S, p);
    LAUNCH_CHECK();
    return PI0_OK;
}

extern "C" pi0_status pi0_patch_finish_cuda(bf16 *x, const float *acc, const float *bias,
                                            const float *pos, int n_img, int N, int Dv,
                                            cudaStream_t stream, pi0_error *err) {
    size_t n = (size_t)n_img * N * Dv;
    if (!n) return PI0_OK;
    patch_finish_kernel<<<grid_for(n), 256, 0, stream>>>(x, acc, bias, pos, N, Dv, n);
    LAUNCH_CHECK();
    return PI0_OK;
}

extern "C" pi0_status pi0_heads_split_cuda(bf16 *q, bf16 *k, bf16 *v, const bf16 *qkv, int n_img,
                                           int N, int Hv, int Dh, cudaStream_t stream,
                                           pi0_error *err) {
    size_t n = (size_t)n_img * N * Hv * Dh;
    if (!n) return PI0_OK;
    heads_split_kernel<<<grid_for(n), 256, 0, stream>>>(q, k, v, qkv, N, Hv, Dh, n);
    LAUNCH_CHECK();
    return PI0_OK;
}

extern "C" pi0_status pi0_heads_merge_cuda(bf16 *o, const bf16 *oh, int n_img, int N, int Hv,
                                           int Dh, cudaStream_t stream, pi0_error *err) {
    size_t n = (size_t)n_img * N * Hv * Dh;
    if (!n) return PI0_OK;
    heads_merge_kernel<<<grid_for(n), 256, 0, stream>>>(o, oh, N, Hv, Dh, n);
    LAUNCH_CHECK();
    return PI0_OK;
}

extern "C" pi0_status pi0_embed_gather_cuda(bf16 *prefix, const bf16 *embed,
                                            const int32_t *tokens, int B, int L, int D, int P,
                                            int row0, float scale, cudaStream_t stream,
                                            pi0_error *err) {
    size_t n = (size_t)B * L * D;
    if (!n) return PI0_OK;
    embed_gather_kernel<<<grid_for(n), 256, 0, stream>>>(prefix, embed, tokens, L, D, P, row0,
                                                         scale, n);
    LAUNCH_CHECK();
    return PI0_OK;
}

extern "C" pi0_status pi0_time_cat_cuda(float *cat, const float *a, const float *temb, int rows,
                                        int W, cudaStream_t stream, pi0_error *err) {
    size_t n = (size_t)rows * 2 * W;
    if (!n) return PI0_OK;
    time_cat_kernel<<<grid_for(n), 256, 0, stream>>>(cat, a, temb, W, n);
    LAUNCH_CHECK();
    return PI0_OK;
}

extern "C" pi0_status pi0_bias_act_f32_cuda(float *y, const float *b, int rows, int n, int swish,
                                            cudaStream_t stream, pi0_error *err) {
    size_t total = (size_t)rows * n;
    if (!total) return PI0_OK;
    bias_act_f32_kernel<<<grid_for(total), 256, 0, stream>>>(y, b, n, swish, total);
    LAUNCH_CHECK();
    return PI0_OK;
}

extern "C" pi0_status pi0_rows_scatter_cuda(bf16 *dst, int dst_ld_rows, const bf16 *src, int B,
                                            int rows, int W, cudaStream_t stream, pi0_error *err) {
    size_t n = (size_t)B * rows * W;
    if (!n) return PI0_OK;
    rows_scatter_kernel<<<grid_for(n), 256, 0, stream>>>(dst, dst_ld_rows, src, rows, W, n);
    LAUNCH_CHECK();
    return PI0_OK;
}

extern "C" pi0_status pi0_convert_cuda(void *dst, int dst_f32, const void *src, int src_bf16,
                                       size_t n, cudaStream_t stream, pi0_error *err) {
    if (!n) return PI0_OK;
    convert_kernel<<<grid_for(n), 256, 0, stream>>>(dst, dst_f32, src, src_bf16, n);
    LAUNCH_CHECK();
    return PI0_OK;
}

extern "C" pi0_status pi0_suffix_assemble_cuda(bf16 *ys, const float *state_tok, const float *act,
                                               int B, int A, int W, cudaStream_t stream,
                                               pi0_error *err) {
    size_t n = (size_t)B * (A + 1) * W;
    if (!n) return PI0_OK;
    suffix_assemble_kernel<<<grid_for(n), 256, 0, stream>>>(ys, state_tok, act, A, W, n);
    LAUNCH_CHECK();
    return PI0_OK;
}

extern "C" pi0_status pi0_euler_cuda(float *x, float *v_first, const float *vel, int B, int A,
                                     int Da, float dt, int first, cudaStream_t stream,
                                     pi0_error *err) {
    size_t n = (size_t)B * A * Da;
    if (!n) return PI0_OK;
    euler_kernel<<<grid_for(n), 256, 0, stream>>>(x, v_first, vel, A, Da, dt, first, n);
    LAUNCH_CHECK();
    return PI0_OK;
}
