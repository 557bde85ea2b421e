/* attention_prefix.cu - the prefix's multi-query attention in one launch (PI0_SPEC 2.5): per
 * batch row, the R = T*H query rows (RoPE'd and already scaled by 1/sqrt(Dh)) against the Tk
 * cached keys of the one key/value head, masked by the prefix padding. FlashAttention-2 style:
 * a block walks the keys in tiles with an online softmax (running max and sum per row), so the
 * fp32 [R, Tk] score matrix of the unfused path (scores GEMM, softmax.cu, P·V GEMM) never goes
 * through memory. Numerics as that path: fp32 logits of bf16 products, masked logits replaced
 * by -2.3819763e38 (a row without a valid key averages v uniformly, never NaN), fp32 max and
 * sum, probabilities rounded to bf16 for the P·V mma, fp32 accumulation, one bf16 rounding of
 * o. The differences: a probability is rounded relative to the running max, before the
 * division by the sum instead of after it (either rounding is <= 2^-9 relative), and exp(x)
 * is the hardware's 2^(x log2 e), within |x| 2^-24 + 2^-22 relative instead of expf's 2 ulp
 * (2^-20 where p > e^-16, far below p's rounding): 3 instructions a logit instead of 10.
 * Not here: the suffix's mask (the expert's rows) and causal masks.
 * CPU reference: pi0_attention_cpu (attention_cpu.c) with one key/value head.
 * Legend: B batch, R query rows per batch row, Tk keys, Dh head dim (DH as a template
 * parameter). */
#include "cuda/ptx.cuh"
#include "ops/ops_cuda.h"

/* A block owns PFX_ROWS query rows, one m16 row tile per warp of a half; the two halves of
 * the block (warps 0-3 and 4-7) take the same rows over the first and the second half of the
 * key tiles, each with its own double-buffered tiles, and merge their softmax states at the
 * end: twice the warps of one 64-row block, each with half the serial work (one block per SM
 * leaves a scheduler a single warp otherwise, stalled on its own latency). */
enum {
    PFX_WARPS = 8,
    PFX_THREADS = 32 * PFX_WARPS,
    PFX_HALF_THREADS = PFX_THREADS / 2,
    PFX_ROWS = 16 * (PFX_WARPS / 2),
    PFX_KEYS = 32, /* keys per tile: 2 halves x 2 stages x (k, v) tiles fit beside q */
};

static constexpr float PFX_MASK_LOGIT = -2.3819763e38f; /* PI0_SPEC 2.5, as softmax.cu */
static constexpr float PFX_LOG2E = 1.4426950408889634f;

/* Shared memory, in order:
 *   q rows       bf16  [PFX_ROWS][DH + 8]
 *   key caps     float [2 halves][2 stages][PFX_KEYS]: what the mask makes of a key's logit
 *                      s, as min(s, cap): +inf valid (s), PFX_MASK_LOGIT padded (as
 *                      softmax.cu: every logit is above it), -inf past Tk (weight exactly 0)
 *   key tiles    bf16  [2 halves][2 stages][k, v][PFX_KEYS][DH + 8]
 * and, once the key loop is done, over the key tiles:
 *   handed-over  float4 [PFX_WARPS][DH / 16][32 lanes]: half of each warp's o accumulator
 *   states       float4 [PFX_WARPS][32 lanes]: m and l of the lane's two rows
 * The 8 bf16 of row padding make the row stride an odd multiple of 16 bytes (528 at Dh 256,
 * 48 at 16), so the 8 row addresses of an ldmatrix phase fall into 8 different 16-byte bank
 * groups: conflict-free. */
static constexpr size_t pfx_q_bytes(int DH) { return sizeof(bf16) * PFX_ROWS * (DH + 8); }
static constexpr size_t pfx_caps_bytes() { return sizeof(float) * 4 * PFX_KEYS; }
static constexpr size_t pfx_tiles_bytes(int DH) { return sizeof(bf16) * 8 * PFX_KEYS * (DH + 8); }
static constexpr size_t pfx_merge_bytes(int DH) {
    return 16 * (size_t)PFX_WARPS * 32 * (DH / 16 + 1);
}
static constexpr size_t pfx_smem_bytes(int DH) {
    return pfx_q_bytes(DH) + pfx_caps_bytes() +
           (pfx_tiles_bytes(DH) > pfx_merge_bytes(DH) ? pfx_tiles_bytes(DH) : pfx_merge_bytes(DH));
}

/* 2^x, one MUFU.EX2 (subnormal results flushed to 0, far below a bf16 probability's ulp) */
static __device__ __forceinline__ float exp2_fast(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* barrier of the 4 warps of half h (ids 1, 2; __syncthreads is 0) */
static __device__ __forceinline__ void half_sync(int h) {
    asm volatile("bar.sync %0, %1;" ::"r"(1 + h), "n"((int)PFX_HALF_THREADS) : "memory");
}

/* Queue the copies of keys j0 .. j0 + PFX_KEYS - 1, k and v rows, by the 128 threads of a half
 * (ht = its thread index; a thread copies the same 16-byte column of every STEP-th row).
 * Rows of keys >= Tk are zero-filled, never read: the cache rows after the prefix may hold
 * anything (the suffix's keys, or NaN garbage), and 0 * NaN would poison the P·V sum. Only the
 * last tile has such rows; the others go without the per-row predicates. */
template <int DH>
static __device__ __forceinline__ void copy_keys(bf16 *ks, const bf16 *kb, const bf16 *vb, int j0,
                                                 int Tk, int ht) {
    constexpr int LD = DH + 8, CHUNKS = DH / 8, STEP = PFX_HALF_THREADS / CHUNKS;
    constexpr int N = (PFX_KEYS + STEP - 1) / STEP; /* rows a thread copies (Dh 16: 1 or none) */
    static_assert(PFX_HALF_THREADS % CHUNKS == 0, "a thread keeps its column");
    const int r0 = ht / CHUNKS, c = (ht % CHUNKS) * 8;
    bf16 *kd = ks + r0 * LD + c, *vd = kd + PFX_KEYS * LD;
    const size_t off = (size_t)(j0 + r0) * DH + c;
    if (j0 + PFX_KEYS <= Tk) {
#pragma unroll
        for (int x = 0; x < N; x++)
            if (r0 + x * STEP < PFX_KEYS) {
                cp_async16(kd + x * STEP * LD, kb + off + x * STEP * DH, true);
                cp_async16(vd + x * STEP * LD, vb + off + x * STEP * DH, true);
            }
    } else {
#pragma unroll
        for (int x = 0; x < N; x++)
            if (r0 + x * STEP < PFX_KEYS) {
                const bool in = j0 + r0 + x * STEP < Tk;
                const size_t src = in ? off + x * STEP * DH : 0; /* a valid address when unread */
                cp_async16(kd + x * STEP * LD, kb + src, in);
                cp_async16(vd + x * STEP * LD, vb + src, in);
            }
    }
}

/* The pad byte of key j (1 without pad rows; keys >= Tk are not read) and the cap it makes. */
static __device__ __forceinline__ unsigned key_pad(const uint8_t *pb, int j, int Tk) {
    return j < Tk && pb ? __ldg(pb + j) : 1u;
}

static __device__ __forceinline__ float key_cap(int j, int Tk, unsigned pad) {
    return j >= Tk ? -INFINITY : pad ? INFINITY : PFX_MASK_LOGIT;
}

/* Half of a warp's o accumulator (acc[0 .. DH/16)) to the exchange: out[32 n] = acc[n]. */
template <int DH>
static __device__ __forceinline__ void hand_over(float4 *out, const float (*acc)[4]) {
#pragma unroll
    for (int n = 0; n < DH / 16; n++)
        out[32 * n] = make_float4(acc[n][0], acc[n][1], acc[n][2], acc[n][3]);
}

/* The end of a row pair: this warp's own half of the o columns (acc = the matching part of
 * its accumulator, acc[n] the columns 8n + 2t, +1 of its part), merged with the partner's
 * (xin[32 n], same layout) as o = acc * c + partner * cp, each row's c, cp = its half's
 * exp(m_half - m) / l, stored as bf16 where the rows exist. */
template <int DH>
static __device__ __forceinline__ void merge_store(bf16 *o0, bf16 *o1, bool in0, bool in1,
                                                   const float (*acc)[4], const float4 *xin,
                                                   float c0, float c1, float cp0, float cp1) {
#pragma unroll
    for (int n = 0; n < DH / 16; n++) {
        const float4 x = xin[32 * n];
        if (in0)
            *(unsigned *)(o0 + 8 * n) =
                pack_bf16(fmaf(acc[n][0], c0, x.x * cp0), fmaf(acc[n][1], c0, x.y * cp0));
        if (in1)
            *(unsigned *)(o1 + 8 * n) =
                pack_bf16(fmaf(acc[n][2], c1, x.z * cp1), fmaf(acc[n][3], c1, x.w * cp1));
    }
}

/* grid (ceil(R / PFX_ROWS), B), PFX_WARPS warps: warp w owns query rows r0 + 16 (w & 3) .. +15
 * over the key tiles of half w >> 2.
 * Fragment layouts of mma.m16n8k16 (lane = 4g + t): A holds rows g and g+8, columns 2t, 2t+1
 * and 2t+8, 2t+9; B holds rows (k) 2t, 2t+1 and 2t+8, 2t+9 of column (n) g; C holds rows g,
 * g+8, columns 2t, 2t+1. So the C tiles of keys 16kk .. 16kk+7 and 16kk+8 .. 16kk+15 are the
 * two halves of P's A tile for k = 16kk .. 16kk+15.
 * Every ldmatrix.x4 here reads a 16x16 block whose lane L gives the address of row L & 15,
 * column 8 * (L >> 4): matrices 0..3 are then (rows 0-7, cols 0-7), (rows 8-15, cols 0-7),
 * (rows 0-7, cols 8-15), (rows 8-15, cols 8-15), and register i holds row g, columns 2t, 2t+1
 * of matrix i (with .trans: rows 2t, 2t+1 of column g). For the three operands:
 *   q (rows = query rows, cols = dims):      registers 0..3 are A's four, in order
 *   k (rows = keys = n, cols = dims = k):    B of keys 0-7 is (0, 2), of keys 8-15 is (1, 3)
 *   v (rows = keys = k, cols = dims = n), .trans: B of dims 0-7 is (0, 1), of dims 8-15 (2, 3) */
template <int DH>
static __global__ void __launch_bounds__(PFX_THREADS, 1)
    attention_prefix_kernel(bf16 *o, const bf16 *q, const bf16 *k, const bf16 *v,
                            const uint8_t *pad, int R, int Tk, long long q_stride,
                            long long kv_stride, int pad_ld) {
    constexpr int LD = DH + 8, CHUNKS = DH / 8, NH = DH / 16;
    constexpr int TILE = PFX_KEYS * LD, STAGE = 2 * TILE; /* bf16: one k or v tile; k and v */
    extern __shared__ uint4 smem[];
    bf16 *qs = (bf16 *)smem;                               /* [PFX_ROWS][LD] */
    float *caps = (float *)(qs + PFX_ROWS * LD);           /* [2][2][PFX_KEYS] */
    bf16 *kvs = (bf16 *)(caps + 4 * PFX_KEYS);             /* [2][2][k, v][PFX_KEYS][LD] */
    const int b = blockIdx.y, r0 = blockIdx.x * PFX_ROWS, tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5, half = warp >> 2, g = lane >> 2, t = lane & 3;
    const int ht = tid & (PFX_HALF_THREADS - 1);
    const bf16 *qb = q + (size_t)b * q_stride, *kb = k + (size_t)b * kv_stride,
               *vb = v + (size_t)b * kv_stride;
    const uint8_t *pb = pad ? pad + (size_t)b * pad_ld : NULL;

    /* tiles [tile0, tile_end) of this half: the first half takes the larger share, so only
     * the second may be empty (Tk <= PFX_KEYS). Every tile holds a key < Tk. */
    const int n_tiles = (Tk + PFX_KEYS - 1) / PFX_KEYS, n_first = (n_tiles + 1) / 2;
    const int tile0 = half ? n_first : 0, tile_end = half ? n_tiles : n_first;
    bf16 *my_kv = kvs + half * 2 * STAGE;                  /* [2 stages][k, v][PFX_KEYS][LD] */
    float *my_caps = caps + half * 2 * PFX_KEYS;           /* [2 stages][PFX_KEYS] */

    /* q rows past R: zeros (their results are not stored) */
    for (int i = tid; i < PFX_ROWS * CHUNKS; i += PFX_THREADS) {
        int r = i / CHUNKS, c = i % CHUNKS;
        bool in = r0 + r < R;
        cp_async16(qs + r * LD + c * 8, qb + (size_t)(in ? r0 + r : 0) * DH + c * 8, in);
    }
    /* Caps: thread ht < PFX_KEYS of a half writes key j0 + ht of each tile, from a pad byte
     * loaded a tile ahead (its latency hidden behind a tile's work, not stalling the warp). */
    unsigned pad_ahead = 1;
    if (tile0 < tile_end) {
        copy_keys<DH>(my_kv, kb, vb, tile0 * PFX_KEYS, Tk, ht);
        if (ht < PFX_KEYS) {
            const int j = tile0 * PFX_KEYS + ht;
            my_caps[ht] = key_cap(j, Tk, key_pad(pb, j, Tk));
            pad_ahead = key_pad(pb, j + PFX_KEYS, Tk);
        }
    }
    cp_async_wait_all();
    __syncthreads();

    const unsigned lane_off = ((lane & 15) * LD + (lane >> 4) * 8) * sizeof(bf16);
    const unsigned q_addr = smem_addr(qs + (warp & 3) * 16 * LD) + lane_off;
    const unsigned kv_addr = smem_addr(my_kv) + lane_off;

    /* Rows g and g+8 of the warp's tile: acc[n] holds dims 8n + 2t, +1 (C layout), m the
     * running max, l this lane's share of the running sum (the quad's four add up at the end).
     * m starts below every logit (the first tile's rescaling factor is 0); after the first
     * tile it is >= PFX_MASK_LOGIT, since every tile holds a key < Tk, so exp(-inf - m) of a
     * key past Tk is exactly 0. */
    float acc[DH / 8][4];
#pragma unroll
    for (int n = 0; n < DH / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    float m0 = -3.402823466e38f, m1 = -3.402823466e38f, l0 = 0.0f, l1 = 0.0f;

    for (int tile = tile0; tile < tile_end; tile++) {
        /* After this barrier the tile is in shared memory for the half, and its 4 warps are
         * done with the previous tile, whose stage the copies of the next overwrite while we
         * compute. (The first tile came with q, before __syncthreads.) */
        const int cur = (tile - tile0) & 1;
        if (tile > tile0) {
            cp_async_wait_all();
            half_sync(half);
        }
        if (tile + 1 < tile_end) {
            copy_keys<DH>(my_kv + (cur ^ 1) * STAGE, kb, vb, (tile + 1) * PFX_KEYS, Tk, ht);
            if (ht < PFX_KEYS) {
                const int j = (tile + 1) * PFX_KEYS + ht;
                my_caps[(cur ^ 1) * PFX_KEYS + ht] = key_cap(j, Tk, pad_ahead);
                pad_ahead = key_pad(pb, j + PFX_KEYS, Tk);
            }
        }
        const unsigned k_addr = kv_addr + cur * STAGE * sizeof(bf16),
                       v_addr = k_addr + TILE * sizeof(bf16);
        const float *cap = my_caps + cur * PFX_KEYS;

        /* S = q · k^T: s[n] holds keys 8n + 2t, +1 of rows g, g+8 */
        float s[PFX_KEYS / 8][4];
#pragma unroll
        for (int n = 0; n < PFX_KEYS / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < DH / 16; kk++) {
            unsigned qa[4];
            ldsm_x4(q_addr + kk * 16 * sizeof(bf16), qa);
#pragma unroll
            for (int np = 0; np < PFX_KEYS / 16; np++) {
                unsigned kf[4];
                ldsm_x4(k_addr + (np * 16 * LD + kk * 16) * sizeof(bf16), kf);
                mma_bf16(s[2 * np], qa, kf[0], kf[2]);
                mma_bf16(s[2 * np + 1], qa, kf[1], kf[3]);
            }
        }

        /* mask, then the online softmax update; the four lanes of a quad share a row */
#pragma unroll
        for (int n = 0; n < PFX_KEYS / 8; n++) {
            const float2 c = *(const float2 *)(cap + 8 * n + 2 * t);
            s[n][0] = fminf(s[n][0], c.x);
            s[n][1] = fminf(s[n][1], c.y);
            s[n][2] = fminf(s[n][2], c.x);
            s[n][3] = fminf(s[n][3], c.y);
        }
        float tm0 = fmaxf(s[0][0], s[0][1]), tm1 = fmaxf(s[0][2], s[0][3]);
#pragma unroll
        for (int n = 1; n < PFX_KEYS / 8; n++) {
            tm0 = fmaxf(tm0, fmaxf(s[n][0], s[n][1]));
            tm1 = fmaxf(tm1, fmaxf(s[n][2], s[n][3]));
        }
#pragma unroll
        for (int x = 1; x <= 2; x <<= 1) {
            tm0 = fmaxf(tm0, __shfl_xor_sync(0xffffffffu, tm0, x));
            tm1 = fmaxf(tm1, __shfl_xor_sync(0xffffffffu, tm1, x));
        }
        /* exp(a - b) as 2^((a - b) log2 e): the difference first, so a masked logit minus a
         * masked max is exactly 0 (weight 1) and one minus a real max overflows to -inf
         * (weight 0), as in softmax.cu */
        const float mn0 = fmaxf(m0, tm0), mn1 = fmaxf(m1, tm1);
        const float alpha0 = exp2_fast((m0 - mn0) * PFX_LOG2E),
                    alpha1 = exp2_fast((m1 - mn1) * PFX_LOG2E); /* 1 if the max stayed */
        m0 = mn0;
        m1 = mn1;
        float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
        for (int n = 0; n < PFX_KEYS / 8; n++) {
            s[n][0] = exp2_fast((s[n][0] - m0) * PFX_LOG2E);
            s[n][1] = exp2_fast((s[n][1] - m0) * PFX_LOG2E);
            s[n][2] = exp2_fast((s[n][2] - m1) * PFX_LOG2E);
            s[n][3] = exp2_fast((s[n][3] - m1) * PFX_LOG2E);
            sum0 += s[n][0] + s[n][1];
            sum1 += s[n][2] + s[n][3];
        }
        l0 = l0 * alpha0 + sum0;
        l1 = l1 * alpha1 + sum1;
        /* once the maxima settle, a tile leaves them all and the rescaling (x1) is skipped */
        if (__any_sync(0xffffffffu, alpha0 != 1.0f || alpha1 != 1.0f)) {
#pragma unroll
            for (int n = 0; n < DH / 8; n++) {
                acc[n][0] *= alpha0; acc[n][1] *= alpha0;
                acc[n][2] *= alpha1; acc[n][3] *= alpha1;
            }
        }

        /* acc += bf16(p) · v */
#pragma unroll
        for (int kk = 0; kk < PFX_KEYS / 16; kk++) {
            unsigned pa[4];
            pa[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int dp = 0; dp < DH / 16; dp++) {
                unsigned vf[4];
                ldsm_x4_trans(v_addr + (kk * 16 * LD + dp * 16) * sizeof(bf16), vf);
                mma_bf16(acc[2 * dp], pa, vf[0], vf[1]);
                mma_bf16(acc[2 * dp + 1], pa, vf[2], vf[3]);
            }
        }
    }

#pragma unroll
    for (int x = 1; x <= 2; x <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, x);
        l1 += __shfl_xor_sync(0xffffffffu, l1, x);
    }

    /* Merge the halves' states of the same rows: m = max(m', m''), l = l' e^(m' - m) +
     * l'' e^(m'' - m), o = (acc' e^(m' - m) + acc'' e^(m'' - m)) / l, each half finishing
     * its own half of the columns (the first half the first DH / 2) with the other's
     * accumulator for them. The cases, by the same exp as the key loop: both halves with a
     * valid key, or neither (both maxima PFX_MASK_LOGIT: weights 1, the uniform average of
     * the Tk keys); one half with, the other without (its max PFX_MASK_LOGIT: weight 0); the
     * second half without tiles (m -3.4e38, l and acc 0: weight 0). l >= 1: the key that set
     * the final max contributed exp(0). After the barrier no warp reads a key tile any more:
     * the exchange goes over them. */
    __syncthreads();
    float4 *xs = (float4 *)kvs;             /* [PFX_WARPS][NH][32], then [PFX_WARPS][32] */
    float4 *states = xs + PFX_WARPS * NH * 32;
    /* (a branch, not acc + half * NH: acc's indices stay compile-time, in registers) */
    if (half) hand_over<DH>(xs + warp * NH * 32 + lane, acc);
    else hand_over<DH>(xs + warp * NH * 32 + lane, acc + NH);
    states[warp * 32 + lane] = make_float4(m0, m1, l0, l1);
    __syncthreads();
    const int partner = warp ^ (PFX_WARPS / 2);
    const float4 ps = states[partner * 32 + lane];
    const float mm0 = fmaxf(m0, ps.x), mm1 = fmaxf(m1, ps.y);
    const float e0 = exp2_fast((m0 - mm0) * PFX_LOG2E), e1 = exp2_fast((m1 - mm1) * PFX_LOG2E),
                ep0 = exp2_fast((ps.x - mm0) * PFX_LOG2E),
                ep1 = exp2_fast((ps.y - mm1) * PFX_LOG2E);
    const float inv0 = 1.0f / (l0 * e0 + ps.z * ep0), inv1 = 1.0f / (l1 * e1 + ps.w * ep1);
    const int row0 = r0 + (warp & 3) * 16 + g, row1 = row0 + 8;
    bf16 *o0 = o + (size_t)b * q_stride + (size_t)row0 * DH + half * (DH / 2) + 2 * t,
         *o1 = o0 + 8 * DH;
    const float4 *xin = xs + partner * NH * 32 + lane;
    if (half)
        merge_store<DH>(o0, o1, row0 < R, row1 < R, acc + NH, xin, e0 * inv0, e1 * inv1,
                        ep0 * inv0, ep1 * inv1);
    else
        merge_store<DH>(o0, o1, row0 < R, row1 < R, acc, xin, e0 * inv0, e1 * inv1,
                        ep0 * inv0, ep1 * inv1);
}

/* Opt-in shared memory a block may have on the current device; 0 if unknown. */
static int device_smem_optin(void) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        cudaGetLastError(); /* not left for the next launch check to find */
        return 0;
    }
    return pi0_smem_optin(dev);
}

static_assert(pfx_smem_bytes(256) <= 227 * 1024, "Dh 256 fits a Hopper block");

static size_t pfx_smem_for(int Dh) {
    return Dh == 256 ? pfx_smem_bytes(256) : Dh == 16 ? pfx_smem_bytes(16) : 0;
}

/* Dh 256 is Gemma's; 16 is the tiny test model's, so its golden cases run this kernel too.
 * At Dh = 256 the block takes 165.5 KB of shared memory: H100/H200 have 227 KB a block, A100
 * only 163 KB, where the caller keeps the unfused path. */
extern "C" int pi0_attention_prefix_supported(int Dh) {
    size_t need = pfx_smem_for(Dh);
    return need > 0 && device_smem_optin() >= (long long)need;
}

template <int DH>
static pi0_status launch_prefix(bf16 *o, const bf16 *q, const bf16 *k, const bf16 *v,
                                const uint8_t *pad, int B, int R, int Tk, long long q_stride,
                                long long kv_stride, int pad_ld, cudaStream_t stream,
                                pi0_error *err) {
    /* more than the default 48 KB of dynamic shared memory: raised once per device (the
     * attribute belongs to the function in a device's context, and this is no stream
     * operation, so it may happen during a graph capture) */
    static unsigned smem_raised = 0; /* bit d: done on device d */
    const size_t smem = pfx_smem_bytes(DH);
    int dev = 0;
    CUDA_TRY(cudaGetDevice(&dev));
    if (dev >= 32 || !(smem_raised & (1u << dev))) {
        CUDA_TRY(cudaFuncSetAttribute(attention_prefix_kernel<DH>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        if (dev < 32) smem_raised |= 1u << dev;
    }
    dim3 grid((R + PFX_ROWS - 1) / PFX_ROWS, B);
    attention_prefix_kernel<DH><<<grid, PFX_THREADS, smem, stream>>>(o, q, k, v, pad, R, Tk,
                                                                     q_stride, kv_stride, pad_ld);
    LAUNCH_CHECK();
    return PI0_OK;
}

extern "C" pi0_status pi0_attention_prefix_cuda(bf16 *o, const bf16 *q, const bf16 *k,
                                                const bf16 *v, const uint8_t *pad, int B, int R,
                                                int Tk, int Dh, long long q_stride,
                                                long long kv_stride, int pad_ld,
                                                cudaStream_t stream, pi0_error *err) {
    if (!pi0_attention_prefix_supported(Dh))
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "fused prefix attention with head dim %d: expected 256 or 16, and %zu "
                        "bytes of shared memory a block (the device allows %d)",
                        Dh, pfx_smem_for(Dh), device_smem_optin());
    if (Tk < 1)
        return pi0_fail(err, PI0_ERR_SHAPE, "fused prefix attention over %d keys, expected >= 1",
                        Tk);
    if (B <= 0 || R <= 0) return PI0_OK;
    if (B > 65535)
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "fused prefix attention over %d batch rows, expected at most 65535", B);
    if (!pi0_aligned16(o) || !pi0_aligned16(q) || !pi0_aligned16(k) || !pi0_aligned16(v) ||
        q_stride % 8 || kv_stride % 8)
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "fused prefix attention needs 16-byte aligned o, q, k, v and batch "
                        "strides, got %p, %p, %p, %p and strides %lld, %lld elements",
                        (void *)o, (const void *)q, (const void *)k, (const void *)v, q_stride,
                        kv_stride);
    if (Dh == 256)
        return launch_prefix<256>(o, q, k, v, pad, B, R, Tk, q_stride, kv_stride, pad_ld, stream,
                                  err);
    return launch_prefix<16>(o, q, k, v, pad, B, R, Tk, q_stride, kv_stride, pad_ld, stream, err);
}
