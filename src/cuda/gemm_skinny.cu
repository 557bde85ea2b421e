/* gemm_skinny.cu - Y = X·W^T for M <= 64 rows (see gemm_skinny.h), the action expert's GEMMs at
 * small batch. There the work is streaming the weights (0.63 GB per Euler step) and cuBLASLt's
 * small-M kernels reach a fraction of the bandwidth, so this kernel is built around the weight
 * stream:
 *   - a block owns 8 output columns (8 weight rows; 8 gate + 8 up rows for the GELU gate) and
 *     its 8 warps split K into slabs of 32: lane (g, q) = (lane / 4, lane % 4) loads 16 bytes of
 *     weight row g at k = 32 s + 8 q, so each weight byte is read once, and a lane has U slabs
 *     (U * 16 bytes per column tile) in flight, double buffered, bypassing L1;
 *   - X comes through L1 (every block of an SM reads the same few KB) and meets the weights in
 *     mma.m16n8k16 (bf16 in, fp32 accumulate). A lane holds k = 8q .. 8q+7 of both operands;
 *     the mma's k order is a permutation of that, the same for X and W, so the products are the
 *     same dot products;
 *   - the 8 warps' partial sums meet in shared memory, where the epilogue runs.
 * The RMSNorm prologue recomputes the rows' 1/rms in every block (M * K reads from L1/L2,
 * cheaper than a launch) and normalizes X while loading it, rounding to bf16 before the mma as
 * the unfused rmsnorm -> GEMM path does. */
#include <string.h>

#include "cuda/gemm_skinny.h"

enum { SK_WARPS = 8, SK_THREADS = SK_WARPS * 32 };

/* 16 bytes of the weight stream: read once, so not kept in L1 (X lives there). */
static __device__ __forceinline__ uint4 load_stream(const bf16 *p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

/* c += A·B for one m16n8k16 tile: a0..a3 the A fragment (rows g, g+8), b0, b1 the B fragment. */
static __device__ __forceinline__ void mma_bf16(float *c, uint32_t a0, uint32_t a1, uint32_t a2,
                                                uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* bf16(x · inv_rms · (1 + s)) of two packed values: rmsnorm.cu's expression, same order. */
static __device__ __forceinline__ uint32_t norm_pair(uint32_t u, float inv, float s0, float s1) {
    __nv_bfloat162 h;
    memcpy(&h, &u, 4);
    float2 f = __bfloat1622float2(h);
    __nv_bfloat162 o = __floats2bfloat162_rn(f.x * inv * (1.0f + s0), f.y * inv * (1.0f + s1));
    uint32_t r;
    memcpy(&r, &o, 4);
    return r;
}

/* X'[r, k .. k+8) as 8 packed bf16; zeros for the padding rows r >= M. */
template <bool NORM>
static __device__ __forceinline__ uint4 load_x(const bf16 *x, int ldx, int M, int r, int k,
                                               const float *inv_rms, const float *s) {
    if (r >= M) return make_uint4(0u, 0u, 0u, 0u);
    uint4 v = __ldg((const uint4 *)(x + (size_t)r * ldx + k));
    if (!NORM) return v;
    float4 sa = __ldg((const float4 *)(s + k)), sb = __ldg((const float4 *)(s + k + 4));
    float inv = inv_rms[r];
    v.x = norm_pair(v.x, inv, sa.x, sa.y);
    v.y = norm_pair(v.y, inv, sa.z, sa.w);
    v.z = norm_pair(v.z, inv, sb.x, sb.y);
    v.w = norm_pair(v.w, inv, sb.z, sb.w);
    return v;
}

static __device__ __forceinline__ float sum_sq8(uint4 v) {
    uint32_t u[4] = { v.x, v.y, v.z, v.w };
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        __nv_bfloat162 h;
        memcpy(&h, &u[i], 4);
        float2 f = __bfloat1622float2(h);
        s += f.x * f.x;
        s += f.y * f.y;
    }
    return s;
}

/* MT m16 row tiles (M <= 16 MT); NT column tiles of 8: 1, or 2 for the GELU gate (gate rows
 * n0.., up rows N + n0..). */
template <int MT, int NT, int EPI, bool NORM>
static __global__ void __launch_bounds__(SK_THREADS)
skinny_kernel(bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w, int M, int N, int K,
              const float *norm_s, float eps) {
    constexpr int U = NT == 1 ? 8 : 4; /* slabs per lane in flight, per buffer */
    constexpr int STEP = SK_WARPS * U;
    __shared__ float inv_rms[MT * 16];
    __shared__ float red[SK_WARPS][MT * 16][NT * 8 + 1];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int n0 = blockIdx.x * 8, n_slab = K >> 5;

    const bf16 *wr[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) wr[t] = w + (size_t)(n0 + g + t * N) * K + q * 8;
    uint4 cur[U][NT], nxt[U][NT];
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            int s = warp + u * SK_WARPS;
            cur[u][t] = s < n_slab ? load_stream(wr[t] + s * 32) : make_uint4(0u, 0u, 0u, 0u);
        }

    if (NORM) { /* the weights are on their way meanwhile */
        for (int r = warp; r < M; r += SK_WARPS) {
            const bf16 *xr = x + (size_t)r * ldx;
            float ss = 0.0f;
#pragma unroll 4
            for (int k = lane * 8; k < K; k += 256) ss += sum_sq8(__ldg((const uint4 *)(xr + k)));
            for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
            if (lane == 0) inv_rms[r] = rsqrtf(ss / K + eps);
        }
        __syncthreads();
    }

    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[mt][t][0] = acc[mt][t][1] = acc[mt][t][2] = acc[mt][t][3] = 0.0f;

    for (int s0 = warp; s0 < n_slab; s0 += STEP) {
        if (s0 + STEP < n_slab) { /* warp-uniform */
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    int s = s0 + STEP + u * SK_WARPS;
                    nxt[u][t] = s < n_slab ? load_stream(wr[t] + s * 32) : make_uint4(0u, 0u, 0u, 0u);
                }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            int s = s0 + u * SK_WARPS;
            if (s < n_slab) {
                int k = s * 32 + q * 8;
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    uint4 a = load_x<NORM>(x, ldx, M, mt * 16 + g, k, inv_rms, norm_s);
                    uint4 b = load_x<NORM>(x, ldx, M, mt * 16 + g + 8, k, inv_rms, norm_s);
#pragma unroll
                    for (int t = 0; t < NT; t++) {
                        mma_bf16(acc[mt][t], a.x, b.x, a.y, b.y, cur[u][t].x, cur[u][t].y);
                        mma_bf16(acc[mt][t], a.z, b.z, a.w, b.w, cur[u][t].z, cur[u][t].w);
                    }
                }
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int t = 0; t < NT; t++) cur[u][t] = nxt[u][t];
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            int r = mt * 16 + g, c = t * 8 + 2 * q;
            red[warp][r][c] = acc[mt][t][0];
            red[warp][r][c + 1] = acc[mt][t][1];
            red[warp][r + 8][c] = acc[mt][t][2];
            red[warp][r + 8][c + 1] = acc[mt][t][3];
        }
    __syncthreads();
    for (int i = threadIdx.x; i < M * 8; i += SK_THREADS) {
        int m = i >> 3, c = i & 7;
        float v0 = 0.0f, v1 = 0.0f;
#pragma unroll
        for (int wi = 0; wi < SK_WARPS; wi++) {
            v0 += red[wi][m][c];
            if (NT == 2) v1 += red[wi][m][8 + c];
        }
        bf16 *yp = y + (size_t)m * ldy + n0 + c;
        if (EPI == PI0_SKINNY_STORE) {
            *yp = __float2bfloat16(v0);
        } else if (EPI == PI0_SKINNY_RESIDUAL) {
            *yp = __float2bfloat16(__bfloat162float(*yp) + v0);
        } else {
            float gate = __bfloat162float(__float2bfloat16(v0));
            float up = __bfloat162float(__float2bfloat16(v1));
            *yp = __float2bfloat16(pi0_gelu_tanh(gate) * up);
        }
    }
}

template <int EPI, bool NORM>
static void launch(int MT, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w, int M, int N,
                   int K, const float *s, float eps, cudaStream_t stream) {
    constexpr int NT = EPI == PI0_SKINNY_GELU_GATE ? 2 : 1;
    dim3 grid(N / 8);
    if (MT == 1)
        skinny_kernel<1, NT, EPI, NORM><<<grid, SK_THREADS, 0, stream>>>(y, ldy, x, ldx, w, M, N, K, s, eps);
    else if (MT == 2)
        skinny_kernel<2, NT, EPI, NORM><<<grid, SK_THREADS, 0, stream>>>(y, ldy, x, ldx, w, M, N, K, s, eps);
    else
        skinny_kernel<4, NT, EPI, NORM><<<grid, SK_THREADS, 0, stream>>>(y, ldy, x, ldx, w, M, N, K, s, eps);
}

extern "C" int pi0_gemm_skinny_fits(int M, int N, int K, int ldx, const void *x, const void *w) {
    return M >= 1 && M <= PI0_SKINNY_MAX_M && N > 0 && N % 8 == 0 && K > 0 && K % 32 == 0 &&
           ldx % 8 == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)w & 15) == 0;
}

extern "C" pi0_status pi0_gemm_skinny_cuda(bf16 *y, int ldy, const bf16 *x, int ldx,
                                           const bf16 *w, int M, int N, int K,
                                           const float *norm_s, float eps, int epilogue,
                                           cudaStream_t stream, pi0_error *err) {
    if (!pi0_gemm_skinny_fits(M, N, K, ldx, x, w) || ((uintptr_t)norm_s & 15) != 0)
        return pi0_fail(err, PI0_ERR_SHAPE,
                        "skinny GEMM of M %d, N %d, K %d, ldx %d: expected M 1..%d, N %% 8 == 0, "
                        "K %% 32 == 0, ldx %% 8 == 0, 16-byte aligned operands",
                        M, N, K, ldx, PI0_SKINNY_MAX_M);
    int MT = M <= 16 ? 1 : M <= 32 ? 2 : 4;
    bool norm = norm_s != NULL;
    switch (epilogue) {
    case PI0_SKINNY_STORE:
        if (norm) launch<PI0_SKINNY_STORE, true>(MT, y, ldy, x, ldx, w, M, N, K, norm_s, eps, stream);
        else launch<PI0_SKINNY_STORE, false>(MT, y, ldy, x, ldx, w, M, N, K, norm_s, eps, stream);
        break;
    case PI0_SKINNY_RESIDUAL:
        if (norm) launch<PI0_SKINNY_RESIDUAL, true>(MT, y, ldy, x, ldx, w, M, N, K, norm_s, eps, stream);
        else launch<PI0_SKINNY_RESIDUAL, false>(MT, y, ldy, x, ldx, w, M, N, K, norm_s, eps, stream);
        break;
    case PI0_SKINNY_GELU_GATE:
        if (norm) launch<PI0_SKINNY_GELU_GATE, true>(MT, y, ldy, x, ldx, w, M, N, K, norm_s, eps, stream);
        else launch<PI0_SKINNY_GELU_GATE, false>(MT, y, ldy, x, ldx, w, M, N, K, norm_s, eps, stream);
        break;
    default:
        return pi0_fail(err, PI0_ERR_SHAPE, "skinny GEMM epilogue %d, expected 0..2", epilogue);
    }
    LAUNCH_CHECK();
    return PI0_OK;
}
