/* norm_vec.cuh - the row access shared by the vectorized RMSNorm and LayerNorm kernels: a block
 * of NORM_VEC_THREADS threads holds one row in registers, thread i taking the 8-element pieces
 * i, i + NORM_VEC_THREADS, ... (one 16-byte load each, all issued before any is used). Pieces
 * past the row's end read as zeros. Internal to src/ops. */
#ifndef PI0_OPS_NORM_VEC_CUH
#define PI0_OPS_NORM_VEC_CUH

#include "cuda/cuda_common.h"

enum {
    NORM_VEC_THREADS = 128,
    NORM_VEC_CHUNKS = 4,                                     /* pieces a thread at most */
    NORM_VEC_MAX_DIM = 8 * NORM_VEC_THREADS * NORM_VEC_CHUNKS, /* 4096 */
};

/* Whether a row of `dim` fits and every pointer allows 16-byte accesses. */
static inline int norm_vec_ok(int dim, const void *x, const void *y, const float *scale) {
    return dim > 0 && dim % 8 == 0 && dim <= NORM_VEC_MAX_DIM &&
           pi0_aligned16(x) && pi0_aligned16(y) && pi0_aligned16(scale);
}

/* First column of this thread's piece c. */
static __device__ __forceinline__ int norm_vec_col(int c) {
    return 8 * (threadIdx.x + c * NORM_VEC_THREADS);
}

static __device__ __forceinline__ void norm_vec_load(float v[NORM_VEC_CHUNKS][8], const bf16 *row,
                                                     int dim) {
    uint4 raw[NORM_VEC_CHUNKS];
#pragma unroll
    for (int c = 0; c < NORM_VEC_CHUNKS; c++) {
        int i = norm_vec_col(c);
        raw[c] = i < dim ? *(const uint4 *)(row + i) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int c = 0; c < NORM_VEC_CHUNKS; c++) {
        const __nv_bfloat162 *p = (const __nv_bfloat162 *)&raw[c];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float2 f = __bfloat1622float2(p[j]);
            v[c][2 * j] = f.x;
            v[c][2 * j + 1] = f.y;
        }
    }
}

/* The 8 fp32 parameters (gain, bias) of a piece starting at column i. */
static __device__ __forceinline__ void norm_vec_params(float out[8], const float *p, int i) {
    const float4 a = *(const float4 *)(p + i), b = *(const float4 *)(p + i + 4);
    out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
    out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
}

static __device__ __forceinline__ void norm_vec_store(bf16 *dst, const float v[8]) {
    uint4 raw;
    __nv_bfloat162 *p = (__nv_bfloat162 *)&raw;
#pragma unroll
    for (int j = 0; j < 4; j++) p[j] = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
    *(uint4 *)dst = raw;
}

#endif
