/* suffix_glue.cu - see suffix_glue.h. fp32 throughout, like the cuBLAS path they replace. The
 * kernels are short: what costs is the latency of each round of loads, so every lane issues all
 * of its weight loads before it uses the first. */
#include "cuda/suffix_glue.h"

enum {
    LIN_THREADS = 256,
    LIN_KSPLIT = 4,  /* warps splitting K for one group of columns */
    LIN_GROUPS = 2,  /* column groups a block: 8 warps = 2 groups x 4 K quarters */
    LIN_AHEAD = 4,   /* 128-element pieces of K a lane loads at once: a K quarter of 1024-2048 */
    END_THREADS = 512,
    END_WARPS = END_THREADS / 32,
    END_OUT_PER_WARP = PI0_GLUE_MAX_ACTION / END_WARPS,   /* action outputs a warp, at most */
    END_COLS_PER_THREAD = PI0_GLUE_MAX_WIDTH / END_THREADS, /* time-MLP columns a thread */
};

static __device__ __forceinline__ float dot4(float4 a, float4 b) {
    return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Block: LIN_GROUPS * C consecutive columns. Warp (kq, grp) sums the K quarter kq of columns
 * grp*C .. grp*C + C-1 for every row: each x piece it loads (from L1: the block's warps share
 * them) feeds C columns, each weight piece all M rows. The quarters meet in shared memory.
 * MR: rows held in registers (acc is MR x C). */
template <int MR, int C>
static __global__ void __launch_bounds__(LIN_THREADS) glue_linear_kernel(pi0_glue_linear p) {
    constexpr int COLS = LIN_GROUPS * C;
    __shared__ float part[LIN_KSPLIT][MR][COLS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int grp = warp % LIN_GROUPS, kq = warp / LIN_GROUPS;
    const int nb = blockIdx.x * COLS, n0 = nb + grp * C;
    const float *wr[C];
#pragma unroll
    for (int c = 0; c < C; c++) wr[c] = p.w + (size_t)min(n0 + c, p.N - 1) * p.ldw;
    const int Kw = ((p.K + 4 * LIN_KSPLIT - 1) / (4 * LIN_KSPLIT)) * 4;
    const int k_end = min(p.K, (kq + 1) * Kw);

    float acc[MR][C];
#pragma unroll
    for (int m = 0; m < MR; m++)
#pragma unroll
        for (int c = 0; c < C; c++) acc[m][c] = 0.0f;
    for (int k0 = kq * Kw + lane * 4; k0 < k_end; k0 += 128 * LIN_AHEAD) {
        float4 wv[LIN_AHEAD][C];
#pragma unroll
        for (int i = 0; i < LIN_AHEAD; i++)
            if (k0 + 128 * i < k_end)
#pragma unroll
                for (int c = 0; c < C; c++) wv[i][c] = __ldg((const float4 *)(wr[c] + k0 + 128 * i));
#pragma unroll
        for (int i = 0; i < LIN_AHEAD; i++) {
            if (k0 + 128 * i < k_end) {
#pragma unroll
                for (int m = 0; m < MR; m++) {
                    if (m < p.M) {
                        const float4 xv =
                            __ldg((const float4 *)(p.x + (size_t)m * p.K + k0 + 128 * i));
#pragma unroll
                        for (int c = 0; c < C; c++) acc[m][c] += dot4(wv[i][c], xv);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < MR; m++) {
        if (m < p.M) {
#pragma unroll
            for (int c = 0; c < C; c++) {
                float v = warp_sum(acc[m][c]);
                if (lane == 0) part[kq][m][grp * C + c] = v;
            }
        }
    }
    __syncthreads();

    const int S = p.A + 1;
    for (int t = threadIdx.x; t < p.M * COLS; t += LIN_THREADS) {
        const int m = t / COLS, j = t % COLS, n = nb + j;
        if (n >= p.N) continue;
        float s = 0.0f;
#pragma unroll
        for (int q = 0; q < LIN_KSPLIT; q++) s += part[q][m][j];
        const float v = s + p.b[n];
        if (p.y)
            p.y[(size_t)m * p.N + n] = v;
        else
            p.ys[((size_t)(m / p.A) * S + 1 + m % p.A) * p.N + n] = __float2bfloat16(v);
    }
    if (p.y) return;
    for (int t = threadIdx.x; t < (p.M / p.A) * COLS; t += LIN_THREADS) { /* the state rows */
        const int b = t / COLS, n = nb + t % COLS;
        if (n < p.N)
            p.ys[(size_t)b * S * p.N + n] = __float2bfloat16(p.state_tok[(size_t)b * p.N + n]);
    }
}

static __global__ void __launch_bounds__(END_THREADS) glue_step_end_kernel(pi0_glue_step_end p) {
    __shared__ __align__(16) float h[PI0_GLUE_MAX_WIDTH];
    __shared__ __align__(16) float xs[PI0_GLUE_MAX_ACTION];
    const int m = blockIdx.x, b = m / p.A, a = m % p.A, W = p.W, Da = p.Da;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    /* both weight matrices toward L2 first (the expert step streamed 600 MB through it since
     * they were last read): the loads below then wait for L2, not for HBM */
    for (int i = tid * 32; i < Da * W; i += END_THREADS * 32) {
        if (p.ys) asm volatile("prefetch.global.L2 [%0];" ::"l"(p.w_out + i));
        if (p.tpart) asm volatile("prefetch.global.L2 [%0];" ::"l"(p.w_c + i));
    }
    if (p.ys) {
        /* final RMSNorm, the same expression as rmsnorm.cu's fp32 output */
        const bf16 *row = p.ys + ((size_t)b * (p.A + 1) + 1 + a) * W;
        float sum_sq = 0.0f;
        for (int i = tid; i < W; i += END_THREADS) {
            float v = __bfloat162float(row[i]);
            h[i] = v;
            sum_sq += v * v;
        }
        const float inv_rms = rsqrtf(pi0_block_sum(sum_sq) / W + p.eps);
        for (int i = tid; i < W; i += END_THREADS) h[i] = h[i] * inv_rms * (1.0f + p.norm_s[i]);
        __syncthreads();

        /* action_out_proj, outputs warp, warp + END_WARPS, ...; then the Euler update */
        float s[END_OUT_PER_WARP];
#pragma unroll
        for (int r = 0; r < END_OUT_PER_WARP; r++) s[r] = 0.0f;
#pragma unroll 8
        for (int k = lane * 4; k < W; k += 128) {
            const float4 hv = *(const float4 *)(h + k);
#pragma unroll
            for (int r = 0; r < END_OUT_PER_WARP; r++) {
                const int j = warp + r * END_WARPS;
                if (j < Da) s[r] += dot4(__ldg((const float4 *)(p.w_out + (size_t)j * W + k)), hv);
            }
        }
#pragma unroll
        for (int r = 0; r < END_OUT_PER_WARP; r++) {
            const int j = warp + r * END_WARPS;
            if (j < Da) {
                const float v = warp_sum(s[r]);
                if (lane == 0) {
                    const float vel = v + p.b_out[j];
                    const size_t at = (size_t)m * Da + j;
                    if (p.first) p.v_first[at] = vel;
                    const float x = p.x[at] + p.dt * vel;
                    p.x[at] = x;
                    xs[j] = x;
                }
            }
        }
    } else {
        for (int j = tid; j < Da; j += END_THREADS) xs[j] = p.x[(size_t)m * Da + j];
    }
    if (!p.tpart) return;
    __syncthreads();

    /* the next step's time-MLP input layer: swish(x · w_c^T + tpart) */
#pragma unroll
    for (int r = 0; r < END_COLS_PER_THREAD; r++) {
        const int n = tid + r * END_THREADS;
        if (n < W) {
            const float *w = p.w_c + (size_t)n * Da;
            float s = 0.0f;
#pragma unroll 16
            for (int k = 0; k < Da; k += 4)
                s += dot4(__ldg((const float4 *)(w + k)), *(const float4 *)(xs + k));
            const float v = s + p.tpart[n];
            p.smid[(size_t)m * W + n] = v / (1.0f + expf(-v));
        }
    }
}

extern "C" int pi0_glue_supported(int rows, int W, int Da) {
    return rows > 0 && rows <= PI0_GLUE_MAX_ROWS && W > 0 && W % 4 == 0 &&
           W <= PI0_GLUE_MAX_WIDTH && Da > 0 && Da % 4 == 0 && Da <= PI0_GLUE_MAX_ACTION;
}

extern "C" pi0_status pi0_glue_linear_cuda(const pi0_glue_linear *p, cudaStream_t stream,
                                           pi0_error *err) {
    if (p->M <= 0 || p->N <= 0) return PI0_OK;
    if (p->M > PI0_GLUE_MAX_ROWS || p->K <= 0 || p->K % 4 || p->ldw % 4 || p->ldw < p->K ||
        (!p->y && (p->A <= 0 || p->M % p->A || !p->ys || !p->state_tok)) ||
        !pi0_aligned16(p->x) || !pi0_aligned16(p->w))
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "suffix glue linear: %d rows (at most %d), K %d and ldw %d (multiples of "
                        "4), 16-byte aligned x and w", p->M, (int)PI0_GLUE_MAX_ROWS, p->K, p->ldw);
    /* up to 16 rows: 4 columns a warp (64 accumulators); more: 2 */
    if (p->M <= 16) {
        const int cols = LIN_GROUPS * 4;
        glue_linear_kernel<16, 4><<<(p->N + cols - 1) / cols, LIN_THREADS, 0, stream>>>(*p);
    } else {
        const int cols = LIN_GROUPS * 2;
        glue_linear_kernel<32, 2><<<(p->N + cols - 1) / cols, LIN_THREADS, 0, stream>>>(*p);
    }
    LAUNCH_CHECK();
    return PI0_OK;
}

extern "C" pi0_status pi0_glue_step_end_cuda(const pi0_glue_step_end *p, cudaStream_t stream,
                                             pi0_error *err) {
    const int rows = p->B * p->A;
    if (rows <= 0) return PI0_OK;
    if (!pi0_glue_supported(rows, p->W, p->Da) || !pi0_aligned16(p->w_out) ||
        (p->tpart && !pi0_aligned16(p->w_c)))
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "suffix glue step end: %d rows, width %d, %d action dims", rows, p->W,
                        p->Da);
    glue_step_end_kernel<<<rows, END_THREADS, 0, stream>>>(*p);
    LAUNCH_CHECK();
    return PI0_OK;
}
