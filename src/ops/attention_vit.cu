/* attention_vit.cu - SigLIP self-attention in one launch: per (image, head, 64 query rows) a
 * block reads q, k and v straight from the fused QKV projection, computes softmax(q·k^T * scale)
 * with fp32 logits and an fp32 softmax, rounds the probabilities to bf16 (as the unfused path
 * of scores GEMM + softmax.cu + P·V GEMM does) and multiplies them by v on the tensor cores
 * (mma.sync m16n8k16, fp32 accumulation). Replaces heads split, scores GEMM, softmax, P·V GEMM
 * and heads merge, whose two fp32 [N, N] matrices per head went through memory. q, k and v reach
 * shared memory by cp.async, every copy of a block in flight at once (a copy loop through
 * registers waited one L2 round trip per turn: 20 us a layer on the H200); v stays row-major and
 * feeds the P·V product through ldmatrix.trans.
 * Not here: masking (SigLIP has none) and key counts over 256 (the logits live in registers).
 * CPU reference: pi0_attention_cpu (attention_cpu.c), with n_kv_heads = n_heads.
 * Legend: N tokens per image (keys = queries), H heads, Dh head dim, W = H*Dh. */
#include "ops/ops_cuda.h"
#include "cuda/ptx.cuh"

enum {
    VIT_ROW_TILES = 4,          /* 16-row query tiles per block */
    VIT_HALVES = 2,             /* warps per row tile, each over half of the keys */
    VIT_WARPS = VIT_ROW_TILES * VIT_HALVES,
    VIT_ROWS = 16 * VIT_ROW_TILES, /* query rows per block */
    VIT_MAX_N = 256,            /* keys; a warp holds its half's fp32 logits in registers */
    VIT_MAX_HALF_TILES = VIT_MAX_N / VIT_HALVES / 8,
    VIT_MAX_DH = 80,            /* head dim padded to the k16 of the q·k product */
    /* shared-memory row stride in bf16 elements: 44 words put the 8 rows that a fragment load
     * or an ldmatrix touches in 8 different 4-bank groups, so both are conflict-free */
    LD_K = 88,
};

static const size_t VIT_SMEM_BYTES =
    sizeof(bf16) * (2 * (size_t)VIT_MAX_N + (size_t)VIT_ROWS) * LD_K;

static __device__ __forceinline__ uint32_t ld_pair(const bf16 *p) {
    return *(const uint32_t *)p;
}

/* grid (N / VIT_ROWS, H, n_img), VIT_WARPS warps; warp w owns query rows q0 + 16(w % 4) .. + 15
 * against keys of half w / 4. The two warps of a row tile trade their row maxima and sums
 * through shared memory, so each rounds exactly the probabilities the whole row would
 * (softmax.cu's max, exp(x - max), sum, x * (1 / sum)), then add their halves of P·V.
 * (One warp per row tile over all keys issued ~5000 instructions a warp with one warp per
 * scheduler: 16 us a layer on the H200, latency-bound.)
 * Fragment layout of m16n8k16 (lane = 4g + t): A holds rows g and g+8, columns 2t, 2t+1 and
 * 2t+8, 2t+9; B holds rows (k) 2t, 2t+1 and 2t+8, 2t+9 of column (n) g; C holds rows g, g+8,
 * columns 2t, 2t+1. A C tile of logits is therefore already half an A tile of probabilities. */
static __global__ void __launch_bounds__(VIT_WARPS * 32)
    attention_vit_kernel(bf16 *o, const bf16 *qkv, int N, int H, int Dh, float scale) {
    extern __shared__ uint4 smem[];
    __shared__ float row_stat[VIT_WARPS][16]; /* a warp's row maxima, then its row sums */
    bf16 *ks = (bf16 *)smem;                   /* [N][LD_K]: k rows, columns >= Dh zero */
    bf16 *vs = ks + VIT_MAX_N * LD_K;          /* [N][LD_K]: v rows, columns >= Dh zero */
    bf16 *qs = vs + VIT_MAX_N * LD_K;          /* [VIT_ROWS][LD_K]: q rows, columns >= Dh zero */
    const int h = blockIdx.y, q0 = blockIdx.x * VIT_ROWS, W = H * Dh, ld = 3 * W;
    const int n_chunks = Dh / 8;               /* 16-byte pieces of a head row */
    const int kd = (Dh + 15) & ~15;            /* contraction length of q·k, zero-padded */
    const bf16 *img = qkv + (size_t)blockIdx.z * N * ld;
    const int tid = threadIdx.x;

    /* every copy in flight at once: one round trip to L2 instead of one per loop turn */
    for (int i = tid; i < N * n_chunks; i += VIT_WARPS * 32) {
        int r = i / n_chunks, c = i % n_chunks;
        const bf16 *src = img + (size_t)r * ld + h * Dh + c * 8;
        cp_async16(ks + r * LD_K + c * 8, src + W, true);
        cp_async16(vs + r * LD_K + c * 8, src + 2 * W, true);
    }
    for (int i = tid; i < VIT_ROWS * n_chunks; i += VIT_WARPS * 32) {
        int r = i / n_chunks, c = i % n_chunks;
        cp_async16(qs + r * LD_K + c * 8, img + (size_t)(q0 + r) * ld + h * Dh + c * 8, true);
    }
    if (kd != Dh) { /* Dh = 8 mod 16: one zero piece after each k, v and q row */
        const uint4 zero = make_uint4(0, 0, 0, 0);
        for (int r = tid; r < 2 * N + VIT_ROWS; r += VIT_WARPS * 32) {
            bf16 *row = r < N ? ks + r * LD_K : r < 2 * N ? vs + (r - N) * LD_K : qs + (r - 2 * N) * LD_K;
            *(uint4 *)(row + Dh) = zero;
        }
    }
    cp_async_wait_all();
    __syncthreads();

    const int lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int rt = warp % VIT_ROW_TILES, half = warp / VIT_ROW_TILES;
    const int partner = warp ^ VIT_ROW_TILES;  /* the other half of the same rows */
    const int n_kt = N / VIT_HALVES / 8, k0 = half * (N / VIT_HALVES);
    const int n_dt = Dh / 8, n_k16 = kd / 16;
    const bf16 *qw = qs + rt * 16 * LD_K;
    uint32_t qa[VIT_MAX_DH / 16][4];
#pragma unroll
    for (int kk = 0; kk < VIT_MAX_DH / 16; kk++) {
        if (kk < n_k16) {
            qa[kk][0] = ld_pair(qw + g * LD_K + kk * 16 + 2 * t);
            qa[kk][1] = ld_pair(qw + (g + 8) * LD_K + kk * 16 + 2 * t);
            qa[kk][2] = ld_pair(qw + g * LD_K + kk * 16 + 8 + 2 * t);
            qa[kk][3] = ld_pair(qw + (g + 8) * LD_K + kk * 16 + 8 + 2 * t);
        }
    }

    /* logits of rows g, g+8 against this half's keys: s[j] covers keys k0 + 8j .. + 7 */
    float s[VIT_MAX_HALF_TILES][4];
#pragma unroll
    for (int j = 0; j < VIT_MAX_HALF_TILES; j++) {
        s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
        if (j < n_kt) {
            const bf16 *kr = ks + (k0 + 8 * j + g) * LD_K + 2 * t;
#pragma unroll
            for (int kk = 0; kk < VIT_MAX_DH / 16; kk++)
                if (kk < n_k16) mma_bf16(s[j], qa[kk], ld_pair(kr + kk * 16), ld_pair(kr + kk * 16 + 8));
        }
    }

    /* softmax of the two rows over both halves, fp32; the four lanes of a quad share a row */
    float mx0 = -3.402823466e38f, mx1 = -3.402823466e38f;
#pragma unroll
    for (int j = 0; j < VIT_MAX_HALF_TILES; j++) {
        if (j < n_kt) {
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] *= scale;
            mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
            mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
        }
    }
#pragma unroll
    for (int m = 1; m <= 2; m <<= 1) {
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, m));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, m));
    }
    if (t == 0) {
        row_stat[warp][g] = mx0;
        row_stat[warp][g + 8] = mx1;
    }
    __syncthreads();
    mx0 = fmaxf(mx0, row_stat[partner][g]);
    mx1 = fmaxf(mx1, row_stat[partner][g + 8]);
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int j = 0; j < VIT_MAX_HALF_TILES; j++) {
        if (j < n_kt) {
            s[j][0] = expf(s[j][0] - mx0); s[j][1] = expf(s[j][1] - mx0);
            s[j][2] = expf(s[j][2] - mx1); s[j][3] = expf(s[j][3] - mx1);
            sum0 += s[j][0] + s[j][1];
            sum1 += s[j][2] + s[j][3];
        }
    }
#pragma unroll
    for (int m = 1; m <= 2; m <<= 1) {
        sum0 += __shfl_xor_sync(0xffffffffu, sum0, m);
        sum1 += __shfl_xor_sync(0xffffffffu, sum1, m);
    }
    __syncthreads(); /* every warp has read the maxima */
    if (t == 0) {
        row_stat[warp][g] = sum0;
        row_stat[warp][g + 8] = sum1;
    }
    __syncthreads();
    /* the first half's sum first, as one pass over the row would add them */
    const float inv0 = 1.0f / (half ? row_stat[partner][g] + sum0 : sum0 + row_stat[partner][g]);
    const float inv1 =
        1.0f / (half ? row_stat[partner][g + 8] + sum1 : sum1 + row_stat[partner][g + 8]);

    /* o = bf16(p) · v over this half: key tiles 2kk and 2kk+1 form the A tile of keys
     * k0 + 16kk .. + 15 */
    float acc[VIT_MAX_DH / 8][4];
#pragma unroll
    for (int n = 0; n < VIT_MAX_DH / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < VIT_MAX_HALF_TILES / 2; kk++) {
        if (2 * kk < n_kt) {
            uint32_t pa[4];
            pa[0] = pack_bf16(s[2 * kk][0] * inv0, s[2 * kk][1] * inv0);
            pa[1] = pack_bf16(s[2 * kk][2] * inv1, s[2 * kk][3] * inv1);
            pa[2] = pack_bf16(s[2 * kk + 1][0] * inv0, s[2 * kk + 1][1] * inv0);
            pa[3] = pack_bf16(s[2 * kk + 1][2] * inv1, s[2 * kk + 1][3] * inv1);
            /* the B fragments of two dim tiles from one ldmatrix.trans of the row-major v
             * rows: matrices (keys 16kk + 0..7 | 8..15) x (dims 8n + 0..7 | 8n + 8..15) */
            const bf16 *vrow = vs + (k0 + 16 * kk + (lane & 15)) * LD_K + (lane >> 4) * 8;
#pragma unroll
            for (int n = 0; n < VIT_MAX_DH / 8; n += 2) {
                if (n < n_dt) {
                    unsigned b[4];
                    ldsm_x4_trans(smem_addr(vrow + 8 * n), b);
                    mma_bf16(acc[n], pa, b[0], b[1]);
                    if (n + 1 < n_dt) mma_bf16(acc[n + 1], pa, b[2], b[3]);
                }
            }
        }
    }

    /* the second half hands its partial sums over (through the k rows, no longer read) */
    float *xfer = (float *)ks + (size_t)rt * (VIT_MAX_DH / 8) * 4 * 32;
    __syncthreads();
    if (half) {
#pragma unroll
        for (int n = 0; n < VIT_MAX_DH / 8; n++)
            if (n < n_dt)
                *(float4 *)(xfer + (n * 32 + lane) * 4) =
                    make_float4(acc[n][0], acc[n][1], acc[n][2], acc[n][3]);
    }
    __syncthreads();
    if (half) return;
    bf16 *o0 = o + ((size_t)blockIdx.z * N + q0 + rt * 16 + g) * W + h * Dh + 2 * t;
    bf16 *o1 = o0 + (size_t)8 * W;
#pragma unroll
    for (int n = 0; n < VIT_MAX_DH / 8; n++) {
        if (n < n_dt) {
            const float4 q = *(const float4 *)(xfer + (n * 32 + lane) * 4);
            *(uint32_t *)(o0 + 8 * n) = pack_bf16(acc[n][0] + q.x, acc[n][1] + q.y);
            *(uint32_t *)(o1 + 8 * n) = pack_bf16(acc[n][2] + q.z, acc[n][3] + q.w);
        }
    }
}

extern "C" int pi0_attention_vit_supported(int N, int Dh) {
    return N > 0 && N % VIT_ROWS == 0 && N <= VIT_MAX_N && Dh > 0 && Dh % 8 == 0 &&
           Dh <= VIT_MAX_DH;
}

extern "C" pi0_status pi0_attention_vit_cuda(bf16 *o, const bf16 *qkv, int n_img, int N, int H,
                                             int Dh, float scale, cudaStream_t stream,
                                             pi0_error *err) {
    if (!pi0_attention_vit_supported(N, Dh))
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "fused SigLIP attention over %d tokens of head dim %d, expected a "
                        "multiple of %d tokens up to %d and a head dim that is a multiple of 8 "
                        "up to %d", N, Dh, VIT_ROWS, VIT_MAX_N, VIT_MAX_DH);
    if (n_img <= 0 || H <= 0) return PI0_OK;
    if (!pi0_aligned16(qkv) || !pi0_aligned16(o))
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "fused SigLIP attention needs 16-byte aligned q/k/v and o, got %p and %p",
                        (const void *)qkv, (void *)o);
    /* more than the default 48 KB of dynamic shared memory: raised once per device (the
     * attribute belongs to the function in a device's context, and this is no stream
     * operation, so it may happen during a graph capture) */
    static unsigned smem_raised = 0; /* bit d: done on device d */
    int dev = 0;
    CUDA_TRY(cudaGetDevice(&dev));
    if (dev >= 32 || !(smem_raised & (1u << dev))) {
        CUDA_TRY(cudaFuncSetAttribute(attention_vit_kernel,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      (int)VIT_SMEM_BYTES));
        if (dev < 32) smem_raised |= 1u << dev;
    }
    dim3 grid(N / VIT_ROWS, H, n_img);
    attention_vit_kernel<<<grid, VIT_WARPS * 32, VIT_SMEM_BYTES, stream>>>(o, qkv, N, H, Dh,
                                                                           scale);
    LAUNCH_CHECK();
    return PI0_OK;
}
