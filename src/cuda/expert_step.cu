/* expert_step.cu - the action expert's layers for one denoising step in one persistent kernel
 * (see expert_step.h for why). Numerics follow the layer-by-layer path (model_cuda.cu's
 * gemma_block): bf16 operands, fp32 accumulation, each GEMM output rounded to bf16 once, the
 * RMSNorm/RoPE/GELU formulas of rmsnorm.cu, rope.cu and gelu.cu. The one difference is the
 * attention softmax, which is split over chunks of keys and merged exactly in fp32 (probabilities
 * are rounded to bf16 before P·V relative to the chunk's maximum instead of the row's).
 *
 * Per layer, six phases separated by grid barriers:
 *   QKV   h = rmsnorm(ys); q|k|v = h · Wqkv^T; RoPE; q to scratch, k and v to the KV cache
 *   ATT   per (batch row, chunk of 32 keys, share of the query tiles): scores, masked softmax
 *         pieces, P·V partials
 *   MERGE partials -> o
 *   O     ys += o · Wo^T
 *   GU    h = rmsnorm(ys); act = gelu(h · Wgate^T) * (h · Wup^T)
 *   DOWN  ys += act · Wd^T
 * The GEMM phases split the output columns into tiles of 8 weight rows; tile j of a phase goes
 * to CTA (j + rotation) mod grid, the rotation moving on with every phase and layer so that no
 * CTA always gets the extra tile. A tile's weight rows are streamed in chunks of W columns
 * (one ring slot each); see gemm_phase_run for how the 8 consumer warps share them. QKV tiles
 * hold rows i..i+3 and i+Dh/2..i+Dh/2+3 of a head, so the two halves RoPE mixes sit in one
 * thread quad; GU tiles hold gate rows f..f+3 and the matching up rows.
 *
 * Legend: R = B*S suffix rows, MT = ceil(R/16) MMA row tiles, QR = S*H query rows per batch
 * row, W expert width, F MLP width, H heads, Dh head dim (DH when a template parameter). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/expert_step.h"
#include "cuda/ptx.cuh"
#include "ops/rope_angle.cuh"

/* The kernel's real body exists for sm_90 and newer (TMA bulk copies, mbarrier transactions);
 * the portable sm_80 build gets a stub that traps, which pi0_xstep_supported never launches.
 * The host pass sees the real body too, for its checks. */
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
#define XSTEP_HOPPER 1
#endif
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && !defined(XSTEP_NO_REGSHIFT)
#define XSTEP_REGSHIFT 1
#endif

namespace {

constexpr int CONSUMER_WARPS = 8;
constexpr int CONSUMERS = CONSUMER_WARPS * 32;
/* + a producer warpgroup, of which one thread streams the weights. With 9 warps the SM's
 * quarter that runs three of them would cap every thread at 168 registers (the consumers
 * spilled); with a whole fourth warpgroup the producers give theirs to the consumers
 * (setmaxnreg, where the target has it: sm_90a): 384 x 168 = 256 x CONSUMER_REGS +
 * 128 x PRODUCER_REGS registers. Batch 1 skip 11.44 -> 11.40 ms on the H200; spilling more,
 * other variants lost up to 1.6 ms. XSTEP_NO_REGSHIFT builds the kernel without. */
constexpr int PRODUCER_THREADS = 128;
enum { CONSUMER_REGS = 232, PRODUCER_REGS = 40 };
constexpr int THREADS = CONSUMERS + PRODUCER_THREADS;
constexpr int KEYS_PER_CHUNK = 32;
constexpr int MAX_SLOTS = CONSUMER_WARPS; /* see gemm_phase_run: one-chunk tiles go slot by warp */
constexpr int BATCH = 4;                  /* uint4 loads a lane has in flight per row */
constexpr int MAX_NORM_WIDTH = 32 * BATCH * 8; /* the widest row load_activations normalizes */

enum { PH_QKV, PH_O, PH_GU, PH_DOWN, N_GEMM_PHASES };

/* PI0_XSTEP_TRACE layout: per layer l and phase k four times of CTA 0's thread 0 (TR_*), then
 * the producer's start of each layer, then the kernel's start. Zero = not reached. */
enum { TR_ARRIVE, TR_LEAVE, TR_INPUTS, TR_WEIGHTS, TR_PER_PHASE };

struct xstep_params {
    pi0_xstep_args a;
    int R, QR, Tk, n_chunks;   /* rows, query rows per batch row, keys, key chunks per row */
    int n_slots;               /* ring slots */
    unsigned off_scratch, off_region, off_ring; /* byte offsets in dynamic shared memory */
    unsigned long long *trace; /* PI0_XSTEP_TRACE: CTA 0's times (trace_at), NULL normally */
};

/* ---- shared-memory layout (host and device agree through xstep_params) ------------------ */

struct smem_plan { int n_slots; unsigned off_scratch, off_region, off_ring, total; };

static unsigned round_up(unsigned x, unsigned m) { return (x + m - 1) / m * m; }

/* mbarriers (each ring slot's full and empty, then IN_FULL: a multicast input has landed), then
 * the cross-warp sum scratch (double-buffered), then one region that holds a GEMM's activation
 * chunk, the attention's K/V tiles, the merge's partial rows, or (in clusters) the whole input of
 * O or DOWN, then the weight ring. in_bytes: that whole input, 0 without clusters. */
enum { BAR_IN_FULL = 2 * MAX_SLOTS, N_BARS };

static smem_plan plan_smem(int MT, int DH, int W, int max_bytes, unsigned in_bytes = 0) {
    smem_plan s;
    unsigned bars = N_BARS * 8;
    unsigned scratch = 2u * CONSUMER_WARPS * MT * 32 * 4 * sizeof(float);
    unsigned a_chunk = (unsigned)MT * 16 * (W + 8) * 2;
    unsigned attn = (unsigned)(2 * KEYS_PER_CHUNK) * (DH + 8) * 2 + KEYS_PER_CHUNK;
    unsigned slot = 8u * (W + 8) * 2;
    s.off_scratch = round_up(bars, 128);
    s.off_region = round_up(s.off_scratch + scratch, 128);
    unsigned region = a_chunk > attn ? a_chunk : attn;
    s.off_ring = round_up(s.off_region + (in_bytes > region ? in_bytes : region), 128);
    int n = max_bytes > (int)s.off_ring ? (int)((max_bytes - s.off_ring) / slot) : 0;
    s.n_slots = n > MAX_SLOTS ? MAX_SLOTS : n;
    s.total = s.off_ring + (unsigned)s.n_slots * slot;
    return s;
}

#ifdef XSTEP_HOPPER
constexpr float MASKED_LOGIT = -2.3819763e38f; /* openpi's, as in softmax.cu */

/* ---- helpers of this kernel ----------------------------------------------------------- */

__device__ __forceinline__ void named_sync() { /* the 256 consumer threads only */
    asm volatile("bar.sync 1, %0;" ::"n"(CONSUMERS) : "memory");
}

__device__ __forceinline__ unsigned long long *trace_at(unsigned long long *trace, int l, int k) {
    return trace ? trace + ((size_t)l * 6 + k) * TR_PER_PHASE : NULL;
}

__device__ __forceinline__ void stamp(unsigned long long *t, int what) {
    if (t && blockIdx.x == 0 && threadIdx.x == 0) t[what] = now_ns();
}

/* stamp() for phase k of layer l, finding the place only when tracing */
__device__ __forceinline__ void stamp_phase(unsigned long long *trace, int l, int k, int what) {
    if (trace) stamp(trace_at(trace, l, k), what);
}

/* Grid-wide barrier of the consumer threads; every CTA is resident (cooperative launch). The
 * counter's top bit flips once all gridDim.x CTAs have added their share (CTA 0 adds
 * 2^31 - (n-1), the others 1), which also leaves the low bits as they were for the next use.
 * The add publishes this CTA's writes (ordered before it by the named barrier; release is
 * cumulative), the acquire loads make every other CTA's visible. Full fences on both sides
 * cost 0.7 ms at batch 1 on the H200 (docs/BENCHMARKS.md) and add nothing to the ordering.
 * The CTA whose add flips the bit arrived last: its add is also an acquire (acq_rel), and it
 * goes on without the round trip of a load that could only confirm its own add. */
__device__ __forceinline__ void grid_sync(unsigned *counter, unsigned long long *trace) {
    named_sync();
    if (threadIdx.x == 0) {
        stamp(trace, TR_ARRIVE);
        unsigned add = blockIdx.x == 0 ? 0x80000000u - (gridDim.x - 1) : 1u, old, now;
        asm volatile("atom.add.acq_rel.gpu.global.u32 %0, [%1], %2;"
                     : "=r"(old)
                     : "l"(counter), "r"(add)
                     : "memory");
        if (((old ^ (old + add)) & 0x80000000u) == 0) /* not the last to arrive */
            do {
                asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(now) : "l"(counter)
                             : "memory");
            } while (((old ^ now) & 0x80000000u) == 0);
        stamp(trace, TR_LEAVE);
    }
    named_sync();
}

/* ---- the GEMM phases' schedule: shared by producer and consumers ----------------------- */

struct gemm_phase {
    const bf16 *w;
    int ldw, n_tiles, n_chunks;
};

__device__ __forceinline__ gemm_phase phase_of(const pi0_xstep_args &a, const pi0_xstep_layer &L,
                                               int ph) {
    int W = a.W, F = a.F, HD = a.H * a.Dh;
    switch (ph) {
    case PH_QKV: return { L.wqkv, W, (a.H + 2) * a.Dh / 8, 1 };
    case PH_O: return { L.wo, HD, W / 8, HD / W };
    case PH_GU: return { L.wgu, W, F / 4, 1 };
    default: return { L.wd, F, W / 8, F / W };
    }
}

/* Weight row of slot row n (0..7) of tile j. */
__device__ __forceinline__ int weight_row(const pi0_xstep_args &a, int ph, int j, int n) {
    if (ph == PH_QKV) {
        int per_head = a.Dh / 8, head = j / per_head, i0 = (j % per_head) * 4;
        return head * a.Dh + (n < 4 ? i0 + n : a.Dh / 2 + i0 + n - 4);
    }
    if (ph == PH_GU) return n < 4 ? j * 4 + n : a.F + j * 4 + n - 4;
    return j * 8 + n;
}

/* This CTA's first tile of phase ph of layer l (then every gridDim.x-th). Tile counts are the
 * same in every layer, so the rotation only needs the phase's index and the layer's. */
__device__ __forceinline__ int first_tile(const pi0_xstep_args &a, int l, int ph) {
    const pi0_xstep_layer none = {};
    long long before = 0, per_layer = 0;
    for (int i = 0; i < N_GEMM_PHASES; i++) {
        int n = phase_of(a, none, i).n_tiles;
        if (i < ph) before += n;
        per_layer += n;
    }
    int G = gridDim.x, rot = (int)((l * per_layer + before) % G);
    return ((int)blockIdx.x - rot + G) % G;
}

/* ---- producer: one thread streams every weight tile this CTA will consume, in order ---- */

/* (An L2 prefetch running ahead of the ring, cp.async.bulk.prefetch.L2, was measured slower:
 * 867 -> 1010 us a step on an H100.) */
__device__ void producer(const xstep_params &p, unsigned char *smem) {
    const pi0_xstep_args &a = p.a;
    unsigned full0 = smem_addr(smem), empty0 = full0 + MAX_SLOTS * 8;
    unsigned ring = smem_addr(smem + p.off_ring), row_bytes = a.W * 2,
             row_stride = (a.W + 8) * 2, slot_bytes = 8 * row_stride;
    unsigned it = 0;
    /* Every weight is read once a step: tagged to leave L2 first, the 0.6 GB stream no longer
     * pushes out what each step reads again (the KV cache, norm scales, RoPE table, the
     * activations): 685 -> 661 us a step on the H200. */
    const unsigned long long evict_first = l2_evict_first_policy();
    for (int l = 0; l < a.depth; l++) {
        pi0_xstep_layer L = a.layers[l];
        if (p.trace && blockIdx.x == 0) p.trace[(size_t)a.depth * 6 * TR_PER_PHASE + l] = now_ns();
        for (int ph = 0; ph < N_GEMM_PHASES; ph++) {
            gemm_phase g = phase_of(a, L, ph);
            for (int j = first_tile(a, l, ph); j < g.n_tiles; j += gridDim.x)
                for (int c = 0; c < g.n_chunks; c++, it++) {
                    unsigned slot = it % p.n_slots, round = it / p.n_slots;
                    if (round > 0) mbar_wait(empty0 + slot * 8, (round - 1) & 1);
                    mbar_expect_tx(full0 + slot * 8, 8 * row_bytes);
                    for (int n = 0; n < 8; n++) {
                        const bf16 *src = g.w + (size_t)weight_row(a, ph, j, n) * g.ldw +
                                          (size_t)c * a.W;
                        bulk_copy(ring + slot * slot_bytes + n * row_stride, src, row_bytes,
                                  full0 + slot * 8, evict_first);
                    }
                }
        }
    }
}

/* ---- consumers ------------------------------------------------------------------------- */

/* The activation chunk c of a GEMM phase into shared memory as MT*16 rows of W (+8 padding
 * so ldmatrix rows fall in different banks); rows >= R are zero. QKV and GU apply RMSNorm.
 * Loads are issued together, BATCH or more per thread, before the first is used: each phase's
 * critical path is a handful of L2 round trips, and a loop that waits for one load before
 * issuing the next multiplies them. */
template <int MT>
__device__ void load_activations(const xstep_params &p, const pi0_xstep_layer &L, int ph, int c,
                                 bf16 *A) {
    const pi0_xstep_args &a = p.a;
    int W = a.W, lda = W + 8, vecs = W / 8, tid = threadIdx.x;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    if (ph == PH_QKV || ph == PH_GU) {
        /* Warp w normalizes rows w and w + 8 of each 16 together (W <= MAX_NORM_WIDTH: a row
         * is one uint4 per lane per k): the rows and the scales are all in flight at once.
         * The scales are the same for every row, so they are loaded once. */
        const float *s = ph == PH_QKV ? L.attn_norm : L.ffw_norm;
        int warp = tid >> 5, lane = tid & 31;
        float4 g[BATCH][2];
#pragma unroll
        for (int k = 0; k < BATCH; k++)
            if (lane + 32 * k < vecs) {
                const float4 *sv = reinterpret_cast<const float4 *>(s + (lane + 32 * k) * 8);
                g[k][0] = __ldg(sv);
                g[k][1] = __ldg(sv + 1);
            }
        for (int r0 = warp; r0 < MT * 16; r0 += 2 * CONSUMER_WARPS) {
            uint4 x[2][BATCH];
#pragma unroll
            for (int h = 0; h < 2; h++)
#pragma unroll
                for (int k = 0; k < BATCH; k++) {
                    int r = r0 + 8 * h, v = lane + 32 * k;
                    x[h][k] = r < p.R && v < vecs
                                  ? __ldcg(reinterpret_cast<const uint4 *>(a.ys + (size_t)r * W) + v)
                                  : zero;
                }
#pragma unroll
            for (int h = 0; h < 2; h++) {
                float sum_sq = 0.0f; /* rows >= R are zeros and stay zeros */
#pragma unroll
                for (int k = 0; k < BATCH; k++) {
                    const bf16 *e = reinterpret_cast<const bf16 *>(&x[h][k]);
                    for (int i = 0; i < 8; i++) {
                        float f = __bfloat162float(e[i]);
                        sum_sq += f * f;
                    }
                }
                for (int o = 16; o > 0; o >>= 1) sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, o);
                float inv_rms = rsqrtf(sum_sq / W + a.eps);
                bf16 *dst = A + (size_t)(r0 + 8 * h) * lda;
#pragma unroll
                for (int k = 0; k < BATCH; k++) {
                    int v = lane + 32 * k;
                    if (v >= vecs) break;
                    const bf16 *e = reinterpret_cast<const bf16 *>(&x[h][k]);
                    const float *gk = reinterpret_cast<const float *>(g[k]);
                    __align__(16) bf16 out[8];
                    for (int i = 0; i < 8; i++)
                        out[i] = __float2bfloat16(__bfloat162float(e[i]) * inv_rms * (1.0f + gk[i]));
                    *reinterpret_cast<uint4 *>(dst + v * 8) = *reinterpret_cast<const uint4 *>(out);
                }
            }
        }
    } else {
        const bf16 *src = ph == PH_O ? a.o : a.act;
        int ld = ph == PH_O ? a.H * a.Dh : a.F, total = MT * 16 * vecs;
        for (int i0 = tid; i0 < total; i0 += CONSUMERS * 2 * BATCH) {
            uint4 x[2 * BATCH];
#pragma unroll
            for (int k = 0; k < 2 * BATCH; k++) {
                int i = i0 + k * CONSUMERS, r = i / vecs, v = i % vecs;
                x[k] = i < total && r < p.R
                           ? __ldcg(reinterpret_cast<const uint4 *>(src + (size_t)r * ld +
                                                                    (size_t)c * W) + v)
                           : zero;
            }
#pragma unroll
            for (int k = 0; k < 2 * BATCH; k++) {
                int i = i0 + k * CONSUMERS;
                if (i < total)
                    *reinterpret_cast<uint4 *>(A + (size_t)(i / vecs) * lda + (i % vecs) * 8) = x[k];
            }
        }
    }
}

/* In clusters: O's or DOWN's whole input (R rows of o or act) into the region of every CTA of
 * the cluster, at row stride ld + 8 (rows 4 banks apart for ldmatrix). CTA `rank` copies rows
 * rank, rank + CL, ... with TMA multicast, so the cluster reads each row from L2 once: those
 * reads, every CTA reading all of o or act, are what O and DOWN wait for (docs/BENCHMARKS.md).
 * No handshake: the grid barrier before the phase means every CTA of the cluster is done with
 * its region, and a CTA leaves the phase only after its own IN_FULL completes, so no copy of the
 * next phase can count toward this one. Rows past R are not written; they reach only output
 * rows that are never stored (an MMA row depends on its own A row alone). `use` counts the
 * loads, the same in every CTA. */
template <int CL>
__device__ void load_inputs_multicast(const xstep_params &p, int ph, unsigned a_base,
                                      unsigned bars, unsigned &use) {
    const pi0_xstep_args &a = p.a;
    unsigned in_full = bars + BAR_IN_FULL * 8;
    if (threadIdx.x < 32) {
        int lane = threadIdx.x & 31, ld = ph == PH_O ? a.H * a.Dh : a.F;
        const bf16 *src = ph == PH_O ? a.o : a.act;
        if (lane == 0) mbar_expect_tx(in_full, (unsigned)(p.R * ld * 2));
        fence_proxy_async_global(); /* o or act, written by other CTAs before the grid barrier */
        for (int r = (int)cluster_rank() + lane * CL; r < p.R; r += 32 * CL)
            bulk_copy_multicast(a_base + (unsigned)(r * (ld + 8) * 2), src + (size_t)r * ld,
                                (unsigned)(ld * 2), in_full, (unsigned short)((1u << CL) - 1));
    }
    mbar_wait(in_full, use & 1);
    use++;
}

/* What a tile's epilogue needs from global memory, loaded before the tile's weights are
 * waited for so that the load's latency hides behind them: the residual values a tile of O or
 * DOWN adds to, or the RoPE cos/sin of a QKV tile's q and k columns. pre[hr] for rows g, g+8. */
__device__ void epilogue_prefetch(const xstep_params &p, int ph, int j, int mt, float4 pre[2]) {
    const pi0_xstep_args &a = p.a;
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    for (int hr = 0; hr < 2; hr++) {
        int r = mt * 16 + g + hr * 8;
        pre[hr] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (r >= p.R) continue;
        if (ph == PH_O || ph == PH_DOWN) {
            float2 old = ld_bf16x2(a.ys + (size_t)r * a.W + j * 8 + 2 * t);
            pre[hr].x = old.x;
            pre[hr].y = old.y;
        } else if (ph == PH_QKV) {
            int per_head = a.Dh / 8, head = j / per_head, i = (j % per_head) * 4 + 2 * (t & 1);
            if (head <= a.H)
                pre[hr] = __ldg(reinterpret_cast<const float4 *>(a.rope + ((size_t)r * a.Dh / 2 + i) * 2));
        }
    }
}

/* Writes the finished 16x8 piece of tile j in row tile mt (rows mt*16 + g, +8; tile columns
 * 2t, 2t+1). Called by a whole warp (the partner shuffle needs every lane). */
__device__ void gemm_epilogue(const xstep_params &p, const pi0_xstep_layer &L, int ph, int j,
                              int mt, const float c[4], const float4 pre[2]) {
    const pi0_xstep_args &a = p.a;
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    float other[4]; /* the value 4 tile columns away: the RoPE half or the up of this gate */
    for (int e = 0; e < 4; e++) other[e] = __shfl_xor_sync(0xffffffffu, c[e], 2);
    for (int hr = 0; hr < 2; hr++) {
        int r = mt * 16 + g + hr * 8;
        if (r >= p.R) continue;
        const float *mine = c + hr * 2, *theirs = other + hr * 2;
        if (ph == PH_O || ph == PH_DOWN) {
            st_bf16x2(a.ys + (size_t)r * a.W + j * 8 + 2 * t, mine[0] + pre[hr].x,
                      mine[1] + pre[hr].y);
        } else if (ph == PH_GU) {
            if (t < 2) {
                float u0 = round_bf16(theirs[0]), u1 = round_bf16(theirs[1]);
                float g0 = round_bf16(mine[0]), g1 = round_bf16(mine[1]);
                st_bf16x2(a.act + (size_t)r * a.F + j * 4 + 2 * t, pi0_gelu_tanh(g0) * u0,
                          pi0_gelu_tanh(g1) * u1);
            }
        } else { /* PH_QKV */
            int Dh = a.Dh, half = Dh / 2, per_head = Dh / 8, head = j / per_head;
            int i = (j % per_head) * 4 + 2 * (t & 1), first = t < 2;
            int col = first ? i : half + i, b = r / a.S, tok = r % a.S;
            size_t kv_off = (size_t)b * a.kv_stride + (size_t)(a.P + tok) * Dh + col;
            if (head == a.H + 1) {
                st_bf16x2(L.vc + kv_off, mine[0], mine[1]);
                continue;
            }
            float cs[2] = { pre[hr].x, pre[hr].z }, sn[2] = { pre[hr].y, pre[hr].w }, out[2];
            for (int e = 0; e < 2; e++) {
                float x = round_bf16(mine[e]), y = round_bf16(theirs[e]);
                float x1 = first ? x : y, x2 = first ? y : x;
                out[e] = first ? x1 * cs[e] - x2 * sn[e] : x2 * cs[e] + x1 * sn[e];
            }
            if (head < a.H) {
                float q_scale = rsqrtf((float)Dh);
                st_bf16x2(a.q + ((size_t)r * a.H + head) * Dh + col, out[0] * q_scale,
                          out[1] * q_scale);
            } else {
                st_bf16x2(L.kc + kv_off, out[0], out[1]);
            }
        }
    }
}

/* acc[m] += A[m*16.., 0..W) · slot^T for every row tile m; k-blocks of 32 from kb0 by step.
 * Two accumulators, lo and hi for the two 16-column halves of each k-block, summed at the end,
 * halve the chain of dependent MMAs (a one-chunk tile is 64 of them): batch 1 skip
 * 11.40 -> 11.33 ms on the H200; four were slower (11.58). */
template <int MT>
__device__ __forceinline__ void mma_chunk(float acc[MT][4], unsigned a_base, int lda,
                                          unsigned w_base, int W, int kb0, int step) {
    int lane = threadIdx.x & 31;
    float lo[MT][4], hi[MT][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            lo[m][e] = acc[m][e];
            hi[m][e] = 0.0f;
        }
    for (int kb = kb0; kb < W / 32; kb += step) {
        unsigned b[4], af[4];
        ldsm_x4(w_base + ((lane & 7) * (W + 8) + kb * 32 + (lane >> 3) * 8) * 2, b);
#pragma unroll
        for (int m = 0; m < MT; m++) {
            unsigned row = a_base + ((m * 16 + (lane & 15)) * lda + kb * 32 +
                                     (lane >> 4) * 8) * 2;
            ldsm_x4(row, af);
            mma_bf16(lo[m], af, b[0], b[1]);
            ldsm_x4(row + 32, af);
            mma_bf16(hi[m], af, b[2], b[3]);
        }
    }
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[m][e] = lo[m][e] + hi[m][e];
}

/* One GEMM phase: every tile of this CTA, in the ring's order. `it` counts ring fills.
 * One-chunk phases (QKV, GU: several tiles per CTA) give each warp whole tiles, so tiles run in
 * parallel with no cross-warp sum; warp w takes the tiles k = w mod n_slots, which keeps a
 * warp from waiting on a slot's next fill before that slot's current one has landed (an
 * mbarrier parity wait cannot tell the two apart). Multi-chunk phases (O, DOWN: about one tile
 * per CTA, K = 2W or 4W) split each chunk's columns over all warps and sum through shared
 * memory. Their input comes a chunk at a time by loads into registers (CL = 1) or all at once by
 * multicast copies shared with the cluster's other CTA (CL = 2: half the L2 reads; H200 step
 * 632 -> 570 us). All at once without the cluster was slower than either (every CTA pulling the
 * whole input in one burst: step +0.25 ms). `use` counts multicast loads. */
template <int MT, int CL>
__device__ void gemm_phase_run(const xstep_params &p, unsigned char *smem,
                               const pi0_xstep_layer &L, int l, int ph, unsigned &it, int &buf,
                               unsigned &use) {
    const pi0_xstep_args &a = p.a;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, W = a.W, G = gridDim.x;
    gemm_phase gp = phase_of(a, L, ph);
    int j0 = first_tile(a, l, ph);
    int n_mine = j0 < gp.n_tiles ? (gp.n_tiles - j0 + G - 1) / G : 0;
    bf16 *A = reinterpret_cast<bf16 *>(smem + p.off_region);
    unsigned full0 = smem_addr(smem), empty0 = full0 + MAX_SLOTS * 8;
    unsigned ring = smem_addr(smem + p.off_ring), slot_bytes = 8 * (W + 8) * 2;
    unsigned a_base = smem_addr(A);

    const int tk = ph == PH_QKV ? 0 : ph == PH_O ? 3 : ph == PH_GU ? 4 : 5; /* trace phase */
    if (gp.n_chunks == 1) {
        if (n_mine == 0) return;
        named_sync(); /* the previous phase is done with the region */
        load_activations<MT>(p, L, ph, 0, A);
        named_sync();
        stamp_phase(p.trace, l, tk, TR_INPUTS);
        for (int k = warp; k < n_mine && warp < p.n_slots; k += p.n_slots) {
            int j = j0 + k * G;
            unsigned f = it + k, slot = f % p.n_slots;
            float4 pre[MT][2];
            for (int m = 0; m < MT; m++) epilogue_prefetch(p, ph, j, m, pre[m]);
            float acc[MT][4];
            for (int m = 0; m < MT; m++)
                for (int e = 0; e < 4; e++) acc[m][e] = 0.0f;
            mbar_wait(full0 + slot * 8, (f / p.n_slots) & 1);
            if (k == 0) stamp_phase(p.trace, l, tk, TR_WEIGHTS);
            mma_chunk<MT>(acc, a_base, W + 8, ring + slot * slot_bytes, W, 0, 1);
            __syncwarp();
            if (lane == 0) mbar_arrive_n(empty0 + slot * 8, CONSUMER_WARPS);
            for (int m = 0; m < MT; m++) gemm_epilogue(p, L, ph, j, m, acc[m], pre[m]);
        }
        it += n_mine;
        return;
    }

    int a_chunk = -1, lda = W + 8;
    if (CL > 1) { /* the whole input at once, every chunk at its column offset; every CTA of
                   * the pair takes part in the copy, tiles of its own or not */
        load_inputs_multicast<CL>(p, ph, a_base, full0, use);
        stamp_phase(p.trace, l, tk, TR_INPUTS);
        lda = gp.n_chunks * W + 8;
    }
    float *scratch = reinterpret_cast<float *>(smem + p.off_scratch);
    for (int k = 0; k < n_mine; k++) {
        int j = j0 + k * G;
        float4 pre[2];
        if (warp < MT) epilogue_prefetch(p, ph, j, warp, pre);
        float acc[MT][4];
        for (int m = 0; m < MT; m++)
            for (int e = 0; e < 4; e++) acc[m][e] = 0.0f;
        for (int c = 0; c < gp.n_chunks; c++, it++) {
            if (CL == 1 && c != a_chunk) {
                named_sync(); /* everyone is done with what the region held */
                load_activations<MT>(p, L, ph, c, A);
                named_sync();
                if (k == 0 && c == 0) stamp_phase(p.trace, l, tk, TR_INPUTS);
                a_chunk = c;
            }
            unsigned slot = it % p.n_slots;
            mbar_wait(full0 + slot * 8, (it / p.n_slots) & 1);
            if (k == 0 && c == 0) stamp_phase(p.trace, l, tk, TR_WEIGHTS);
            unsigned a_c = CL == 1 ? a_base : a_base + (unsigned)(c * W * 2);
            mma_chunk<MT>(acc, a_c, lda, ring + slot * slot_bytes, W, warp, CONSUMER_WARPS);
            __syncwarp();
            if (lane == 0) mbar_arrive(empty0 + slot * 8);
        }
        /* sum the 8 warps' partial tiles; warp m finishes row tile m */
        float *sc = scratch + buf * (CONSUMER_WARPS * MT * 128);
        for (int m = 0; m < MT; m++)
            *reinterpret_cast<float4 *>(sc + ((warp * MT + m) * 32 + lane) * 4) =
                make_float4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]);
        named_sync();
        if (warp < MT) {
            float sum[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
            for (int w = 0; w < CONSUMER_WARPS; w++) {
                float4 v = *reinterpret_cast<const float4 *>(sc + ((w * MT + warp) * 32 + lane) * 4);
                sum[0] += v.x; sum[1] += v.y; sum[2] += v.z; sum[3] += v.w;
            }
            gemm_epilogue(p, L, ph, j, warp, sum, pre);
        }
        buf ^= 1;
    }
}

/* The A operands of S = Q·K^T for query rows mt*16.. of batch row b (zeros past QR), every
 * k-step, loaded from global memory straight into the mma's register layout: qf[ks] holds rows
 * g and g+8 at columns ks*16 + 2t and ks*16 + 8 + 2t. No shared-memory tile, so the region
 * is only K and V and the weight ring gets its eighth slot. */
template <int DH>
__device__ __forceinline__ void load_q_frags(const xstep_params &p, int b, int mt,
                                             unsigned qf[DH / 16][4]) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, QR = p.QR;
    const unsigned *row[2];
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        int qr = mt * 16 + g + 8 * hr;
        row[hr] = qr < QR ? reinterpret_cast<const unsigned *>(p.a.q + ((size_t)b * QR + qr) * DH)
                          : NULL;
    }
#pragma unroll
    for (int ks = 0; ks < DH / 16; ks++)
#pragma unroll
        for (int half = 0; half < 2; half++)
#pragma unroll
            for (int hr = 0; hr < 2; hr++)
                qf[ks][2 * half + hr] = row[hr] ? __ldcg(row[hr] + ks * 8 + half * 4 + t) : 0u;
}

/* One 16-row query tile mt of batch row b against key chunk ch (K, V and key flags in shared
 * memory): scores, masked softmax pieces, P·V; m, l and O into the partials. */
template <int DH>
__device__ __forceinline__ void attention_tile(const xstep_params &p, int b, int ch, int mt,
                                               const unsigned (&qf)[DH / 16][4], const bf16 *Ks,
                                               const bf16 *Vs, const unsigned char *key_ok) {
    const pi0_xstep_args &a = p.a;
    constexpr int LD = DH + 8;
    constexpr int PASSES = DH >= 128 ? 2 : 1, DP = DH / PASSES; /* P·V columns per pass */
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, QR = p.QR, n_ch = p.n_chunks;
    float *ml = a.part + (size_t)a.B * n_ch * QR * DH;
    float s[4][4];
    for (int n = 0; n < 4; n++)
        for (int e = 0; e < 4; e++) s[n][e] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < DH / 16; ks++) {
#pragma unroll
        for (int n = 0; n < 4; n++) {
            unsigned bf[2];
            ldsm_x2(smem_addr(Ks + (n * 8 + (lane & 7)) * LD + ks * 16 +
                              ((lane >> 3) & 1) * 8),
                    bf);
            mma_bf16(s[n], qf[ks], bf[0], bf[1]);
        }
    }
    /* mask (PI0_SPEC 2.5 suffix rule), chunk max and sum per query row */
    float mx[2], sum[2];
    for (int hr = 0; hr < 2; hr++) {
        int qr = mt * 16 + g + hr * 8, tok = qr < QR ? qr / a.H : 0;
        float m = -3.402823466e38f;
        for (int n = 0; n < 4; n++)
            for (int e = 0; e < 2; e++) {
                bool valid = key_ok[n * 8 + 2 * t + e] & (tok > 0 ? 2 : 1);
                float &v = s[n][hr * 2 + e];
                if (!valid) v = MASKED_LOGIT;
                m = fmaxf(m, v);
            }
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
        float l = 0.0f;
        for (int n = 0; n < 4; n++)
            for (int e = 0; e < 2; e++) {
                float &v = s[n][hr * 2 + e];
                v = expf(v - m);
                l += v;
            }
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        mx[hr] = m;
        sum[hr] = l;
    }
    /* P as the A operand of P·V: the score tile's C layout is the A layout */
    unsigned pa[2][4];
    for (int kk = 0; kk < 2; kk++) {
        pa[kk][0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
        pa[kk][1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
        pa[kk][2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[kk][3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
    float *out = a.part + ((size_t)(b * n_ch + ch) * QR) * DH;
    for (int pass = 0; pass < PASSES; pass++) {
        float o[DP / 8][4];
        for (int n = 0; n < DP / 8; n++)
            for (int e = 0; e < 4; e++) o[n][e] = 0.0f;
#pragma unroll
        for (int nd = 0; nd < DP / 16; nd++)
#pragma unroll
            for (int kk = 0; kk < 2; kk++) {
                unsigned bv[4];
                ldsm_x4_trans(smem_addr(Vs + (kk * 16 + (lane & 15)) * LD + pass * DP +
                                        nd * 16 + (lane >> 4) * 8),
                              bv);
                mma_bf16(o[2 * nd], pa[kk], bv[0], bv[1]);
                mma_bf16(o[2 * nd + 1], pa[kk], bv[2], bv[3]);
            }
        for (int hr = 0; hr < 2; hr++) {
            int qr = mt * 16 + g + hr * 8;
            if (qr >= QR) continue;
            for (int n = 0; n < DP / 8; n++)
                *reinterpret_cast<float2 *>(out + (size_t)qr * DH + pass * DP + n * 8 +
                                            2 * t) =
                    make_float2(o[n][hr * 2], o[n][hr * 2 + 1]);
        }
    }
    if (t == 0)
        for (int hr = 0; hr < 2; hr++) {
            int qr = mt * 16 + g + hr * 8;
            if (qr < QR)
                *reinterpret_cast<float2 *>(ml + ((size_t)(b * n_ch + ch) * QR + qr) * 2) =
                    make_float2(mx[hr], sum[hr]);
        }
}

/* ATT: per (batch row b, chunk of 32 keys), each warp takes 16-row tiles of the QR query rows:
 * S = Q·K^T (q is pre-scaled), mask, chunk-local max m and sum l, O = P·V unnormalised; m, l
 * and O go to the partials. */
template <int DH>
__device__ void attention_phase(const xstep_params &p, unsigned char *smem,
                                const pi0_xstep_layer &L, unsigned long long *tr) {
    const pi0_xstep_args &a = p.a;
    constexpr int LD = DH + 8, VECS = DH / 8;
    int tid = threadIdx.x, warp = tid >> 5;
    bf16 *Ks = reinterpret_cast<bf16 *>(smem + p.off_region), *Vs = Ks + KEYS_PER_CHUNK * LD;
    unsigned char *key_ok = reinterpret_cast<unsigned char *>(Vs + KEYS_PER_CHUNK * LD);
    int n_mt = (p.QR + 15) / 16, n_ch = p.n_chunks, Tk = p.Tk, P = a.P;
    /* With fewer chunks than CTAs, qsplit CTAs share a chunk's query tiles, each loading the
     * chunk's K and V: CTA qs of the chunk takes tiles qs + qsplit * (warp + 8i). At batch 1
     * that puts 102 CTAs to work instead of 17 (attention 7.2 -> 4.8 us a layer, H200). */
    int qsplit = (int)gridDim.x / (a.B * n_ch);
    qsplit = qsplit < 1 ? 1 : qsplit > n_mt ? n_mt : qsplit;
    for (int u = blockIdx.x; u < a.B * n_ch * qsplit; u += gridDim.x) {
        int qs = u % qsplit, b = u / qsplit / n_ch, ch = u / qsplit % n_ch;
        int k0 = ch * KEYS_PER_CHUNK;
        const bf16 *kg = L.kc + (size_t)b * a.kv_stride, *vg = L.vc + (size_t)b * a.kv_stride;
        /* K and V rows of the chunk (keys past the end: zeros, never NaN garbage), and which
         * query tokens may see each key (bit 0: the state token, bit 1: action tokens) */
        if (tid < KEYS_PER_CHUNK) {
            int key = k0 + tid, f = 0;
            if (key < P)
                f = __ldg(a.pad + (size_t)b * a.pad_ld + key) ? 3 : 0;
            else if (key < Tk)
                f = key == P ? 3 : 2;
            key_ok[tid] = (unsigned char)f;
        }
        /* K and V by cp.async, every copy in flight at once. (The query fragments are loaded
         * once K and V have landed: loading them beside K and V measured slower on the H200,
         * batch 1 skip 11.40 -> 11.44 ms.) */
        for (int i = tid; i < KEYS_PER_CHUNK * VECS; i += CONSUMERS) {
            int row = i / VECS, v = i % VECS, key = k0 + row;
            bool in = key < Tk;
            size_t off = in ? (size_t)key * DH + v * 8 : 0;
            cp_async16(Ks + row * LD + v * 8, kg + off, in);
            cp_async16(Vs + row * LD + v * 8, vg + off, in);
        }
        cp_async_wait_all();
        named_sync();
        if (u == (int)blockIdx.x) stamp(tr, TR_INPUTS);
        for (int mt = qs + qsplit * warp; mt < n_mt; mt += qsplit * CONSUMER_WARPS) {
            unsigned qf[DH / 16][4];
            load_q_frags<DH>(p, b, mt, qf);
            attention_tile<DH>(p, b, ch, mt, qf, Ks, Vs, key_ok);
        }
        named_sync(); /* Ks, Vs are rewritten by the next unit */
    }
}

/* MERGE: o[b, qr, :] = sum_c e^(m_c - M) O_c / sum_c e^(m_c - M) l_c, M = max_c m_c, in one
 * pass that rescales when a larger m_c comes. A chunk whose keys are all masked has
 * m_c = MASKED_LOGIT and weighs exactly zero (the state token's own key is always valid, so M
 * is a real logit). The chunks' partial rows come into the shared region by cp.async, every
 * copy in flight at once: one L2 round trip for the benchmark's 17 chunks (as many as fit,
 * then the next round), where loads into registers took two, 8 or 9 at a time (more made the
 * kernel's other phases spill). */
template <int DH>
__device__ void merge_phase(const xstep_params &p, unsigned char *smem) {
    static_assert(DH <= CONSUMERS && DH % 4 == 0, "one output column per thread");
    const pi0_xstep_args &a = p.a;
    constexpr int PIECES = DH / 4; /* 16-byte copies a partial row */
    int QR = p.QR, n_ch = p.n_chunks, tid = threadIdx.x;
    int per_round = (int)((p.off_ring - p.off_region) / (DH * 4 + sizeof(float2)));
    per_round = per_round > CONSUMERS ? CONSUMERS : per_round; /* stats: one per thread */
    float *rows = reinterpret_cast<float *>(smem + p.off_region);  /* [per_round][DH] */
    float2 *stats = reinterpret_cast<float2 *>(rows + (size_t)per_round * DH); /* m_c, l_c */
    const float2 *ml = reinterpret_cast<const float2 *>(a.part + (size_t)a.B * n_ch * QR * DH);
    for (int item = blockIdx.x; item < a.B * QR; item += gridDim.x) {
        int b = item / QR, qr = item % QR;
        float M = -3.402823466e38f, den = 0.0f, num = 0.0f;
        for (int c0 = 0; c0 < n_ch; c0 += per_round) {
            int n = n_ch - c0 < per_round ? n_ch - c0 : per_round;
            named_sync(); /* the region's last readers are done */
            for (int i = tid; i < n * PIECES; i += CONSUMERS) {
                size_t row = (size_t)(b * n_ch + c0 + i / PIECES) * QR + qr;
                cp_async16(rows + (size_t)i * 4, a.part + row * DH + (i % PIECES) * 4, true);
            }
            if (tid < n) stats[tid] = __ldcg(ml + (size_t)(b * n_ch + c0 + tid) * QR + qr);
            cp_async_wait_all();
            named_sync();
            if (tid < DH)
                for (int c = 0; c < n; c++) {
                    float2 v = stats[c];
                    if (v.x > M) {
                        float scale = expf(M - v.x);
                        den *= scale;
                        num *= scale;
                        M = v.x;
                    }
                    float w = expf(v.x - M);
                    den += w * v.y;
                    num += w * rows[c * DH + tid];
                }
        }
        if (tid < DH) a.o[((size_t)b * QR + qr) * DH + tid] = __float2bfloat16(num / den);
    }
}

#endif /* XSTEP_HOPPER */

#ifdef XSTEP_HOPPER
/* The consumers' walk over every layer of one step; ends with a grid barrier. */
template <int MT, int DH, int CL>
__device__ void expert_layers(const xstep_params &p, unsigned char *smem) {
    unsigned it = 0, use = 0; /* ring fills consumed, region loads by multicast */
    int buf = 0;              /* the cross-warp scratch's half */
    const pi0_xstep_args &a = p.a;
#define SYNC_(k) grid_sync(a.barrier, trace_at(p.trace, l, k))
    for (int l = 0; l < a.depth; l++) {
        pi0_xstep_layer L = a.layers[l];
        gemm_phase_run<MT, CL>(p, smem, L, l, PH_QKV, it, buf, use);
        SYNC_(0);
        attention_phase<DH>(p, smem, L, trace_at(p.trace, l, 1));
        SYNC_(1);
        merge_phase<DH>(p, smem);
        /* in clusters the partner copies O's input into this CTA's region after the barrier:
         * this CTA's own accesses to the region come first (likewise before DOWN) */
        if (CL > 1) fence_proxy_async_shared();
        SYNC_(2);
        gemm_phase_run<MT, CL>(p, smem, L, l, PH_O, it, buf, use);
        SYNC_(3);
        gemm_phase_run<MT, CL>(p, smem, L, l, PH_GU, it, buf, use);
        if (CL > 1) fence_proxy_async_shared();
        SYNC_(4);
        gemm_phase_run<MT, CL>(p, smem, L, l, PH_DOWN, it, buf, use);
        SYNC_(5); /* the last one also times the end */
    }
#undef SYNC_
}
#endif

template <int MT, int DH, int CL>
__global__ void __launch_bounds__(THREADS, 1) expert_step_kernel(const xstep_params p) {
#ifdef XSTEP_HOPPER
    extern __shared__ __align__(128) unsigned char smem[];
    unsigned full0 = smem_addr(smem), empty0 = full0 + MAX_SLOTS * 8;
    if (threadIdx.x == 0) {
        for (int s = 0; s < p.n_slots; s++) {
            mbar_init(full0 + s * 8, 1);
            mbar_init(empty0 + s * 8, CONSUMER_WARPS);
        }
        mbar_init(full0 + BAR_IN_FULL * 8, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    if (CL > 1)
        cluster_sync_all(); /* no CTA copies into a partner before its inits */
    else
        __syncthreads();
    if (threadIdx.x >= CONSUMERS) {
#ifdef XSTEP_REGSHIFT
        setmaxnreg_dec<PRODUCER_REGS>();
#endif
        if (threadIdx.x == CONSUMERS) producer(p, smem);
        return;
    }
#ifdef XSTEP_REGSHIFT
    setmaxnreg_inc<CONSUMER_REGS>();
#endif
    if (p.trace && blockIdx.x == 0 && threadIdx.x == 0)
        p.trace[(size_t)p.a.depth * (6 * TR_PER_PHASE + 1)] = now_ns();
    /* A CTA of a cluster leaves only after every copy into it has landed (IN_FULL). */
    expert_layers<MT, DH, CL>(p, smem);
#else
    __trap(); /* built without sm_90 code: pi0_xstep_supported said no, never launched */
#endif
}

/* rope[r, i] = (cos, sin) of RoPE angle i at suffix row r's position n_valid[b] + t, computed
 * as rope.cu computes it (rope_angle.cuh). */
__global__ void rope_table_kernel(float *rope, const int32_t *n_valid, int S, int Dh) {
    int r = blockIdx.x, half = Dh / 2;
    float pos = (float)(n_valid[r / S] + r % S);
    for (int i = threadIdx.x; i < half; i += blockDim.x)
        reinterpret_cast<float2 *>(rope)[(size_t)r * half + i] = rope_angle(pos, i, Dh);
}

/* Launched once at load, with the step kernel's launch shape, to learn whether a cooperative
 * launch of clusters is accepted and resident. */
__global__ void __launch_bounds__(THREADS, 1) cluster_probe_kernel() {}

typedef void (*kernel_fn)(const xstep_params);

/* Clusters of 2 share O's and DOWN's inputs (load_inputs_multicast), for one row tile: with
 * two, the whole input does not fit beside the ring. (Clusters of 4: only 30 fit at once on the
 * 132 SMs of an H200.) */
static kernel_fn kernel_for(int MT, int DH, int cluster) {
#define K_(mt, dh, cl) \
    if (MT == mt && DH == dh && cluster == cl) return expert_step_kernel<mt, dh, cl>
    K_(1, 256, 1); K_(2, 256, 1); K_(1, 16, 1); K_(2, 16, 1);
    K_(1, 256, 2); K_(1, 16, 2);
#undef K_
    return NULL;
}

/* The shared-memory plan of a launch: in clusters, the region holds O's or DOWN's whole input
 * (R rows, the wider of the two) when that leaves the ring all its slots and the row tiles'
 * padding rows inside the allocation; otherwise cluster becomes 1. */
static smem_plan plan_launch(int R, int DH, int W, int F, int H, int max_bytes, int *cluster) {
    int MT = (R + 15) / 16;
    if (*cluster > 1) {
        unsigned ld = (unsigned)(F > H * DH ? F : H * DH), row = (ld + 8) * 2;
        smem_plan sp = plan_smem(MT, DH, W, max_bytes, (unsigned)R * row);
        if (sp.n_slots == MAX_SLOTS && sp.off_region + (unsigned)MT * 16 * row <= sp.total)
            return sp;
        *cluster = 1;
    }
    return plan_smem(MT, DH, W, max_bytes);
}

} /* namespace */

/* The launch configuration of every step: one CTA per SM, all resident (the grid barrier waits
 * for all of them), in clusters of `cluster` CTAs. attr must have room for two. */
static cudaLaunchConfig_t launch_config(int n_sm, unsigned smem, int cluster, cudaStream_t stream,
                                        cudaLaunchAttribute *attr) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(n_sm);
    cfg.blockDim = dim3(THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    if (cluster > 1) {
        attr[1].id = cudaLaunchAttributeClusterDimension;
        attr[1].val.clusterDim.x = cluster;
        attr[1].val.clusterDim.y = 1;
        attr[1].val.clusterDim.z = 1;
        cfg.numAttrs = 2;
    }
    return cfg;
}

/* Clusters of 1 instead of the size asked for in PI0_XSTEP_CLUSTER, saying why when it was
 * asked for explicitly; any CUDA error of the attempt is cleared. */
static int no_clusters(int asked, const char *want, const char *why) {
    if (asked) fprintf(stderr, "PI0_XSTEP_CLUSTER=%s: %s; clusters of 1\n", want, why);
    cudaGetLastError();
    return 1;
}

/* The cluster size for the (MT, DH) step (see pi0_xstep_supported): 2 when there is a kernel
 * for it, the grid fits in pairs all at once and a test launch of such a grid runs, else 1.
 * smem: the opt-in maximum, set as the pair kernel's limit (plan_launch sizes each launch). */
static int cluster_size(int MT, int DH, int device, unsigned smem) {
    const char *e = getenv("PI0_XSTEP_CLUSTER");
    int asked = e && *e;
    const char *want = asked ? e : "2";
    if (!strcmp(want, "1")) return 1;
    if (strcmp(want, "2")) return no_clusters(asked, want, "the sizes are 1 and 2");
    kernel_fn k = kernel_for(MT, DH, 2);
    if (!k) return 1; /* two row tiles: the input does not fit beside the ring */
    int n_sm = 0, n_clusters = 0;
    if (cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
        n_sm % 2)
        return no_clusters(asked, want, "an odd or unknown number of SMs");
    cudaLaunchAttribute attr[2];
    cudaLaunchConfig_t cfg = launch_config(n_sm, smem, 2, 0, attr), occ = cfg;
    occ.attrs = attr + 1; /* the occupancy query takes the cluster shape alone */
    occ.numAttrs = 1;
    cudaError_t ce = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          (int)smem);
    if (ce == cudaSuccess) ce = cudaOccupancyMaxActiveClusters(&n_clusters, k, &occ);
    if (ce == cudaSuccess && 2 * n_clusters < n_sm)
        return no_clusters(asked, want, "not every pair fits at once");
    if (ce == cudaSuccess)
        ce = cudaFuncSetAttribute(cluster_probe_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)smem);
    if (ce == cudaSuccess) ce = cudaLaunchKernelEx(&cfg, cluster_probe_kernel);
    if (ce == cudaSuccess) ce = cudaDeviceSynchronize();
    if (ce != cudaSuccess) return no_clusters(asked, want, cudaGetErrorString(ce));
    return 2;
}

extern "C" int pi0_xstep_supported(int device, int W, int F, int H, int Dh, int rows) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess)
        return 0;
    if (major < 9 || rows < 1 || rows > PI0_XSTEP_MAX_ROWS || W < 32 || W % 32 ||
        W > MAX_NORM_WIDTH || F % W || F % 4 ||
        (H * Dh) % W || (H * Dh) < W)
        return 0;
    int MT = (rows + 15) / 16;
    kernel_fn k = kernel_for(MT, Dh, 1);
    if (!k) return 0;
    cudaFuncAttributes attr;
    if (cudaFuncGetAttributes(&attr, k) != cudaSuccess) return 0;
    if (attr.ptxVersion < 90) return 0; /* only the portable sm_80 copy exists for this GPU */
    smem_plan sp = plan_smem(MT, Dh, W, pi0_smem_optin(device));
    if (sp.n_slots < 2) return 0;
    /* the kernel's shared-memory size is set here, once, for every later launch */
    int per_sm = 0;
    if (cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sp.total) !=
            cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, THREADS, sp.total) !=
            cudaSuccess ||
        per_sm < 1)
        return 0;
    return cluster_size(MT, Dh, device, (unsigned)pi0_smem_optin(device));
}

extern "C" size_t pi0_xstep_part_floats(int rows, int keys, int H, int Dh) {
    size_t n_chunks = (size_t)(keys + KEYS_PER_CHUNK - 1) / KEYS_PER_CHUNK;
    return (size_t)rows * n_chunks * H * (Dh + 2);
}

extern "C" pi0_status pi0_xstep_rope_cuda(float *rope, const int32_t *n_valid, int B, int S,
                                          int Dh, cudaStream_t stream, pi0_error *err) {
    if (B * S <= 0) return PI0_OK;
    int threads = Dh / 2 < 32 ? 32 : (Dh / 2 > 256 ? 256 : Dh / 2);
    rope_table_kernel<<<B * S, threads, 0, stream>>>(rope, n_valid, S, Dh);
    LAUNCH_CHECK();
    return PI0_OK;
}

/* PI0_XSTEP_TRACE=1 in the environment: after every launch outside graph capture, print where
 * CTA 0's time went per phase (print_trace; it synchronizes). A development aid, read once.
 * The variants measured and dropped (fewer CTAs, fewer ring slots, full fences at the barrier, K
 * split over the warps in every phase, cp.async inputs, the whole denoising loop and its glue
 * in one launch, one CTA per key chunk, every chunk at once in the merge into registers) are in
 * docs/BENCHMARKS.md. */
static int trace_wanted() {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("PI0_XSTEP_TRACE");
        v = e && atoi(e) != 0;
    }
    return v;
}

/* PI0_XSTEP_TRACE: CTA 0's view of one step, averaged over layers. Per phase: from the previous
 * barrier to its inputs in shared memory (activation chunk or K/V), to its first weight slot,
 * to its arrival at the barrier (total work), and the wait there (the slowest CTA plus the
 * barrier itself); and how far the producer runs ahead of the consumers. */
static pi0_status print_trace(const unsigned long long *dev, const xstep_params &p, int grid,
                              int cluster,
                              cudaStream_t stream, pi0_error *err) {
    const int depth = p.a.depth, per_layer = 6 * TR_PER_PHASE;
    static unsigned long long h[64 * (6 * TR_PER_PHASE + 1) + 1];
    size_t n = (size_t)depth * (per_layer + 1) + 1;
    if (n > sizeof h / sizeof h[0]) return PI0_OK;
    CUDA_TRY(cudaStreamSynchronize(stream));
    CUDA_TRY(cudaMemcpy(h, dev, n * sizeof h[0], cudaMemcpyDeviceToHost));
    static const char *names[6] = { "qkv", "attn", "merge", "o", "gu", "down" };
    double work[6] = { 0 }, wait[6] = { 0 }, in[6] = { 0 }, wt[6] = { 0 }, lead = 0;
    int n_in[6] = { 0 }, n_wt[6] = { 0 };
    unsigned long long t0 = h[(size_t)depth * (per_layer + 1)], prev = t0;
    for (int l = 0; l < depth; l++) {
        lead += (double)(long long)(prev - h[(size_t)depth * per_layer + l]); /* > 0: ahead */
        for (int k = 0; k < 6; k++) {
            const unsigned long long *t = h + ((size_t)l * 6 + k) * TR_PER_PHASE;
            work[k] += (double)(t[TR_ARRIVE] - prev) / depth;
            wait[k] += (double)(t[TR_LEAVE] - t[TR_ARRIVE]) / depth;
            if (t[TR_INPUTS]) { in[k] += (double)(t[TR_INPUTS] - prev); n_in[k]++; }
            if (t[TR_WEIGHTS]) { wt[k] += (double)(t[TR_WEIGHTS] - prev); n_wt[k]++; }
            prev = t[TR_LEAVE];
        }
    }
    fprintf(stderr, "xstep trace: %d rows, grid %d in clusters of %d, %d slots: total %.1f us; "
            "us per layer, phase: inputs/weights/work+wait:", p.R, grid, cluster, p.n_slots,
            (prev - t0) / 1e3);
    for (int k = 0; k < 6; k++)
        fprintf(stderr, " %s %.1f/%.1f/%.2f+%.2f", names[k], n_in[k] ? in[k] / n_in[k] / 1e3 : 0.0,
                n_wt[k] ? wt[k] / n_wt[k] / 1e3 : 0.0, work[k] / 1e3, wait[k] / 1e3);
    fprintf(stderr, "; producer lead %.1f us\n", lead / depth / 1e3);
    return PI0_OK;
}

extern "C" pi0_status pi0_xstep_run(const pi0_xstep_args *a, cudaStream_t stream,
                                    pi0_error *err) {
    int device = 0, n_sm = 0;
    CUDA_TRY(cudaGetDevice(&device));
    CUDA_TRY(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, device));
    int R = a->B * a->S, MT = (R + 15) / 16, cluster = a->cluster > 1 ? a->cluster : 1;
    smem_plan sp = plan_launch(R, a->Dh, a->W, a->F, a->H, pi0_smem_optin(device), &cluster);
    kernel_fn k = kernel_for(MT, a->Dh, cluster);
    if (!k || R > PI0_XSTEP_MAX_ROWS || sp.n_slots < 2 || n_sm % cluster ||
        (cluster > 1 && (!pi0_aligned16(a->o) || !pi0_aligned16(a->act))))
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "fused expert step: %d rows, head dim %d, width %d, clusters of %d "
                        "not supported", R, a->Dh, a->W, cluster);
    xstep_params p;
    memset(&p, 0, sizeof p);
    p.a = *a;
    p.R = R;
    p.QR = a->S * a->H;
    p.Tk = a->P + a->S;
    p.n_chunks = (p.Tk + KEYS_PER_CHUNK - 1) / KEYS_PER_CHUNK;
    p.n_slots = sp.n_slots;
    p.off_scratch = sp.off_scratch;
    p.off_region = sp.off_region;
    p.off_ring = sp.off_ring;
    static unsigned long long *trace_buf; /* a development aid: allocated once, kept */
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    CUDA_TRY(cudaStreamIsCapturing(stream, &capturing));
    if (trace_wanted() && capturing == cudaStreamCaptureStatusNone) { /* it synchronizes */
        size_t n = 64 * (6 * TR_PER_PHASE + 1) + 1;
        if (!trace_buf) CUDA_TRY(cudaMalloc((void **)&trace_buf, n * sizeof *trace_buf));
        CUDA_TRY(cudaMemsetAsync(trace_buf, 0, n * sizeof *trace_buf, stream));
        if (a->depth <= 64) p.trace = trace_buf;
    }

    cudaLaunchAttribute attr[2];
    cudaLaunchConfig_t cfg = launch_config(n_sm, sp.total, cluster, stream, attr);
    CUDA_TRY(cudaLaunchKernelEx(&cfg, k, p));
    if (p.trace) PI0_STATUS_TRY(print_trace(trace_buf, p, n_sm, cluster, stream, err));
    return PI0_OK;
}
