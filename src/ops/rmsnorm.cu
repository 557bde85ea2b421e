/* rmsnorm.cu - Gemma RMSNorm on the GPU: bf16 in, bf16 or fp32 out, fp32 statistics and an fp32
 * gain 1 + s (openpi forms 1 + s in bf16; fp32 is closer to exact, PI0_SPEC 3.3). Must match
 * rmsnorm_cpu.c. One block per row. */
#include "ops/ops_cuda.h"

static __global__ void rmsnorm_kernel(void *y, int y_f32, const bf16 *x, const float *s, int dim,
                                      float eps) {
    const bf16 *xr = x + (size_t)blockIdx.x * dim;
    float sum_sq = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = __bfloat162float(xr[i]);
        sum_sq += v * v;
    }
    float inv_rms = rsqrtf(pi0_block_sum(sum_sq) / dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = __bfloat162float(xr[i]) * inv_rms * (1.0f + s[i]);
        if (y_f32)
            ((float *)y)[(size_t)blockIdx.x * dim + i] = v;
        else
            ((bf16 *)y)[(size_t)blockIdx.x * dim + i] = __float2bfloat16(v);
    }
}

extern "C" pi0_status pi0_rmsnorm_cuda(void *y, int y_f32, const bf16 *x, const float *s,
                                       int n_rows, int dim, float eps, cudaStream_t stream,
                                       pi0_error *err) {
    if (n_rows <= 0) return PI0_OK;
    rmsnorm_kernel<<<n_rows, 256, 0, stream>>>(y, y_f32, x, s, dim, eps);
    LAUNCH_CHECK();
    return PI0_OK;
}
