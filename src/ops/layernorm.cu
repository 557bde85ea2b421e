/* layernorm.cu - SigLIP LayerNorm on the GPU: bf16 in and out, fp32 mean and biased variance
 * (two passes over the row, which stays in L1), fp32 gain and bias. Must match layernorm_cpu.c. */
#include "ops/ops_cuda.h"

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

extern "C" pi0_status pi0_layernorm_cuda(bf16 *y, const bf16 *x, const float *g, const float *b,
                                         int n_rows, int dim, float eps, cudaStream_t stream,
                                         pi0_error *err) {
    if (n_rows <= 0) return PI0_OK;
    layernorm_kernel<<<n_rows, 256, 0, stream>>>(y, x, g, b, dim, eps);
    LAUNCH_CHECK();
    return PI0_OK;
}
