/* cuda_common.h - what every .cu file of the CUDA backend shares: the bf16 type, the checked-call
 * macros, two host-side checks (alignment, shared memory) and the block reductions. Internal to
 * src/cuda and the .cu files of src/ops. */
#ifndef PI0_CUDA_COMMON_H
#define PI0_CUDA_COMMON_H

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "common.h"

typedef __nv_bfloat16 bf16;

/* Every CUDA call is checked; the message names the call. Needs `pi0_error *err` in scope. */
#define CUDA_TRY(call)                                                                     \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess)                                                             \
            return pi0_fail(err, PI0_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__,      \
                            #call, cudaGetErrorString(e_));                                \
    } while (0)

#define CUBLAS_TRY(call)                                                                   \
    do {                                                                                   \
        cublasStatus_t s_ = (call);                                                        \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                   \
            return pi0_fail(err, PI0_ERR_DEVICE, "%s:%d: %s: cuBLAS status %d", __FILE__,  \
                            __LINE__, #call, (int)s_);                                     \
    } while (0)

/* A launch is checked right after it is queued (errors of the configuration show up here). */
#define LAUNCH_CHECK() CUDA_TRY(cudaGetLastError())

/* Whether p allows 16-byte accesses (uint4 loads, cp.async, TMA). */
static inline int pi0_aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }

/* The opt-in shared memory a block may have on `device`, in bytes; 0 when the query fails (its
 * error cleared, not left for the next launch check to find). */
static inline int pi0_smem_optin(int device) {
    int bytes = 0;
    if (cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
        cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return bytes;
}

#define PI0_STATUS_TRY(call)                                                               \
    do {                                                                                   \
        pi0_status st_ = (call);                                                           \
        if (st_ != PI0_OK) return st_;                                                     \
    } while (0)

#ifdef __CUDACC__
/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024). Every thread gets it.
 * Reads of shared memory finish before a second call may overwrite it (trailing barrier). */
static __device__ __forceinline__ float pi0_block_sum(float v) {
    __shared__ float part[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float s = lane < n_warps ? part[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    __syncthreads();
    return s;
}

static __device__ __forceinline__ float pi0_block_max(float v) {
    __shared__ float part[32];
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float s = lane < n_warps ? part[lane] : -3.402823466e38f;
    for (int o = 16; o > 0; o >>= 1) s = fmaxf(s, __shfl_xor_sync(0xffffffffu, s, o));
    __syncthreads();
    return s;
}

static __device__ __forceinline__ float pi0_gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}
#endif

#endif
