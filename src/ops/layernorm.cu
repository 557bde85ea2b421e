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
        if (norm_vec_col(c) >= dim) break; /* the padding zeros are not deviations */
#pragma unroll
        for (int j = 0; j < 8; j++) sum_sq += (v[c][j] - mean) * (v[c][j] - mean);
    }
    float inv_std = rsqrtf(pi0_block_sum(sum_sq) / dim + eps);
#pragma unroll
    for (int c = 0; c < NORM_VEC_CHUNKS; c++) {
        int i = norm_vec_col(c);
        if (i >= dim) break;
        const float4 g0 = *(const float4 *)(g + i), g1 = *(const float4 *)(g + i + 4);
        const float4 b0 = *(const float4 *)(b + i), b1 = *(const float4 *)(b + i + 4);
        const float gain[8] = { g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w };
        const float bias[8] = { b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w };
#pragma unroll
        for (int j = 0; j < 8; j++) v[c][j] = (v[c][j] - mean) * inv_std * gain[j] + bias[j];
        norm_vec_store(y + (size_t)blockIdx.x * dim + i, v[c]);
    }
}

extern "C" pi0_status pi0_layernorm_cuda(bf16 *y, const bf16 *x, const float *g, const float *b,
                                         int n_rows, int dim, float eps, cudaStream_t stream,
                                         pi0_error *err) {
    if (n_rows <= 0) return PI0_OK;
    if (norm_vec_ok(dim, x, y, g) && (uintptr_t)b % 16 == 0)
        layernorm_vec_kernel<<<n_rows, NORM_VEC_THREADS, 0, stream>>>(y, x, g, b, dim, eps);
    else
        layernorm_kernel<<<n_rows, 256, 0, stream>>>(y, x, g, b, dim, eps);
    LAUNCH_CHECK();
    return PI0_OK;
}
