/* rmsnorm.cu - Gemma RMSNorm on the GPU: bf16 in, bf16 or fp32 out, fp32 statistics and an fp32
 * gain 1 + s (openpi forms 1 + s in bf16; fp32 is closer to exact, PI0_SPEC 3.3). Must match
 * rmsnorm_cpu.c. One block per row. */
#include "ops/ops_cuda.h"
#include "ops/norm_vec.cuh"

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

/* The same with the row held in registers, 8 elements per 16-byte load (dim a multiple of 8 up
 * to NORM_VEC_MAX_DIM, 16-byte aligned rows): one read of x instead of two, and 128-thread
 * blocks. The scalar kernel took 6-8 us a prefix norm on the H200, mostly load latency. */
static __global__ void __launch_bounds__(NORM_VEC_THREADS)
    rmsnorm_vec_kernel(void *y, int y_f32, const bf16 *x, const float *s, int dim, float eps) {
    float v[NORM_VEC_CHUNKS][8];
    norm_vec_load(v, x + (size_t)blockIdx.x * dim, dim);
    float sum_sq = 0.0f;
#pragma unroll
    for (int c = 0; c < NORM_VEC_CHUNKS; c++)
#pragma unroll
        for (int j = 0; j < 8; j++) sum_sq += v[c][j] * v[c][j];
    float inv_rms = rsqrtf(pi0_block_sum(sum_sq) / dim + eps);
    const size_t row = (size_t)blockIdx.x * dim;
#pragma unroll
    for (int c = 0; c < NORM_VEC_CHUNKS; c++) {
        int i = norm_vec_col(c);
        if (i < dim) {
            float gain[8];
            norm_vec_params(gain, s, i);
#pragma unroll
            for (int j = 0; j < 8; j++) v[c][j] = v[c][j] * inv_rms * (1.0f + gain[j]);
            if (y_f32) {
                float4 *d = (float4 *)((float *)y + row + i);
                d[0] = make_float4(v[c][0], v[c][1], v[c][2], v[c][3]);
                d[1] = make_float4(v[c][4], v[c][5], v[c][6], v[c][7]);
            } else {
                norm_vec_store((bf16 *)y + row + i, v[c]);
            }
        }
    }
}

extern "C" pi0_status pi0_rmsnorm_cuda(void *y, int y_f32, const bf16 *x, const float *s,
                                       int n_rows, int dim, float eps, cudaStream_t stream,
                                       pi0_error *err) {
    if (n_rows <= 0) return PI0_OK;
    if (norm_vec_ok(dim, x, y, s))
        rmsnorm_vec_kernel<<<n_rows, NORM_VEC_THREADS, 0, stream>>>(y, y_f32, x, s, dim, eps);
    else
        rmsnorm_kernel<<<n_rows, 256, 0, stream>>>(y, y_f32, x, s, dim, eps);
    LAUNCH_CHECK();
    return PI0_OK;
}
