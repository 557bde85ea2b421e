/* layernorm.cu - SigLIP LayerNorm on the GPU: bf16 in and out, fp32 mean and biased variance
 * (two passes over the row, which stays in L1), fp32 gain and bias. Must match layernorm_cpu.c. */
#include "ops/ops_cuda.h"
#include "ops/norm_vec.cuh"

static __global__ void layernorm_kernel(bf16 *y, const bf16 *x, const float *g, const float *b,
                                        int dim, float eps) {
    const bf16 *xr = x + (size_t)blockIdx.x * dim;
    bf16 *yr = y + (size_t)blockIdx.x * dim;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) sum += __bfloat162float(xr[i]);
    float mean = pi0_block_sum(sum) / dim;
    float sum_sq = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float d = __bfloat162float(xr[i]) - mean;
        sum_sq += d * d;
    }
    float inv_std = rsqrtf(pi0_block_sum(sum_sq) / dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = (__bfloat162float(xr[i]) - mean) * inv_std;
        yr[i] = __float2bfloat16(v * g[i] + b[i]);
    }
}

/* The same with the row held in registers (see norm_vec.cuh): one read of x, 16-byte accesses. */
static __global__ void __launch_bounds__(NORM_VEC_THREADS)
    layernorm_vec_kernel(bf16 *y, const bf16 *x, const float *g, const float *b, int dim,
                         float eps) {
    float v[NORM_VEC_CHUNKS][8];
    norm_vec_load(v, x + (size_t)blockIdx.x * dim, dim);
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < NORM_VEC_CHUNKS; c++)
#pragma unroll
        for (int j = 0; j < 8; j++) sum += v[c][j];
    float mean = pi0_block_sum(sum) / dim;
    float sum_sq = 0.0f;
#pragma unroll
    for (int c = 0; c < NORM_VEC_CHUNKS; c++) {
        if (norm_vec_col(c) < dim) { /* the padding zeros are not deviations */
#pragma unroll
            for (int j = 0; j < 8; j++) sum_sq += (v[c][j] - mean) * (v[c][j] - mean);
        }
    }
    float inv_std = rsqrtf(pi0_block_sum(sum_sq) / dim + eps);
#pragma unroll
    for (int c = 0; c < NORM_VEC_CHUNKS; c++) {
        int i = norm_vec_col(c);
        if (i < dim) {
            float gain[8], bias[8];
            norm_vec_params(gain, g, i);
            norm_vec_params(bias, b, i);
#pragma unroll
            for (int j = 0; j < 8; j++) v[c][j] = (v[c][j] - mean) * inv_std * gain[j] + bias[j];
            norm_vec_store(y + (size_t)blockIdx.x * dim + i, v[c]);
        }
    }
}

extern "C" pi0_status pi0_layernorm_cuda(bf16 *y, const bf16 *x, const float *g, const float *b,
                                         int n_rows, int dim, float eps, cudaStream_t stream,
                                         pi0_error *err) {
    if (n_rows <= 0) return PI0_OK;
    if (norm_vec_ok(dim, x, y, g) && pi0_aligned16(b))
        layernorm_vec_kernel<<<n_rows, NORM_VEC_THREADS, 0, stream>>>(y, x, g, b, dim, eps);
    else
        layernorm_kernel<<<n_rows, 256, 0, stream>>>(y, x, g, b, dim, eps);
    LAUNCH_CHECK();
    return PI0_OK;
}
