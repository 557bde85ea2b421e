/* attention_vit.cu - SigLIP self-attention in one launch: per (image, head, 64 query rows) a
 * block reads q, k and v straight from the fused QKV projection, computes softmax(q·k^T * scale)
 * with fp32 logits and an fp32 softmax, rounds the probabilities to bf16 (as the unfused path
 * of scores GEMM + softmax.cu + P·V GEMM does) and multiplies them by v on the tensor cores
 * (mma.sync m16n8k16, fp32 accumulation). Replaces heads split, scores GEMM, softmax, P·V GEMM
 * and heads merge, whose two fp32 [N, N] matrices per head went through memory.
 * Not here: masking (SigLIP has none) and key counts over 256 (the logits live in registers).
 * CPU reference: pi0_attention_cpu (attention_cpu.c), with n_kv_heads = n_heads.
 * Legend: N tokens per image (keys = queries), H heads, Dh head dim, W = H*Dh. */
#include "ops/ops_cuda.h"

enum {
    VIT_WARPS = 4,
    VIT_ROWS = 16 * VIT_WARPS,  /* query rows per block: 16 per warp, one mma row tile */
    VIT_MAX_N = 256,            /* keys held as fp32 logits in registers: 32 tiles of 8 */
    VIT_MAX_DH = 80,            /* head dim padded to the k16 of the q·k product */
    /* shared-memory row strides in bf16 elements; 44 and 132 words put the 8 rows a fragment
     * load touches in 8 different 4-bank groups, so those 32-bit loads are conflict-free */
    LD_K = 88,
    LD_VT = VIT_MAX_N + 8,
};

static const size_t VIT_SMEM_BYTES =
    sizeof(bf16) * ((size_t)VIT_MAX_N * LD_K + (size_t)VIT_MAX_DH * LD_VT + (size_t)VIT_ROWS * LD_K);

static __device__ __forceinline__ uint32_t ld_pair(const bf16 *p) {
    return *(const uint32_t *)p;
}

static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); /* .x (low half) = lo */
    return *(uint32_t *)&v;
}

/* c += a · b for one m16n8k16 tile: a 16x16 bf16 (row), b 16x8 bf16 (col), c 16x8 fp32. */
static __device__ __forceinline__ void mma_bf16(float *c, const uint32_t *a, uint32_t b0,
                                                uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* grid (N / VIT_ROWS, H, n_img), VIT_WARPS warps; warp w owns query rows q0 + 16w .. + 15.
 * Fragment layout of m16n8k16 (lane = 4g + t): A holds rows g and g+8, columns 2t, 2t+1 and
 * 2t+8, 2t+9; B holds rows (k) 2t, 2t+1 and 2t+8, 2t+9 of column (n) g; C holds rows g, g+8,
 * columns 2t, 2t+1. A C tile of logits is therefore already half an A tile of probabilities. */
static __global__ void __launch_bounds__(VIT_WARPS * 32)
    attention_vit_kernel(bf16 *o, const bf16 *qkv, int N, int H, int Dh, float scale) {
    extern __shared__ uint4 smem[];
    bf16 *ks = (bf16 *)smem;                   /* [N][LD_K]: k rows, columns >= Dh zero */
    bf16 *vt = ks + VIT_MAX_N * LD_K;          /* [Dh][LD_VT]: v transposed, key-contiguous */
    bf16 *qs = vt + VIT_MAX_DH * LD_VT;        /* [VIT_ROWS][LD_K]: q rows, columns >= Dh zero */
    const int h = blockIdx.y, q0 = blockIdx.x * VIT_ROWS, W = H * Dh, ld = 3 * W;
    const int n_chunks = Dh / 8;               /* 16-byte pieces of a head row */
    const int kd = (Dh + 15) & ~15;            /* contraction length of q·k, zero-padded */
    const bf16 *img = qkv + (size_t)blockIdx.z * N * ld;
    const int tid = threadIdx.x;

    for (int i = tid; i < N * n_chunks; i += VIT_WARPS * 32) {
        int r = i / n_chunks, c = i % n_chunks;
        *(uint4 *)(ks + r * LD_K + c * 8) = *(const uint4 *)(img + (size_t)r * ld + W + h * Dh + c * 8);
    }
    for (int i = tid; i < VIT_ROWS * n_chunks; i += VIT_WARPS * 32) {
        int r = i / n_chunks, c = i % n_chunks;
        *(uint4 *)(qs + r * LD_K + c * 8) =
            *(const uint4 *)(img + (size_t)(q0 + r) * ld + h * Dh + c * 8);
    }
    /* v: consecutive threads take consecutive keys of one 8-column piece, so the transposing
     * 2-byte stores of a warp fall into consecutive words */
    for (int i = tid; i < N * n_chunks; i += VIT_WARPS * 32) {
        int c = i / N, r = i % N;
        uint4 raw = *(const uint4 *)(img + (size_t)r * ld + 2 * W + h * Dh + c * 8);
        const bf16 *e = (const bf16 *)&raw;
#pragma unroll
        for (int j = 0; j < 8; j++) vt[(c * 8 + j) * LD_VT + r] = e[j];
    }
    if (kd != Dh) { /* Dh = 8 mod 16: one zero piece after each k and q row */
        const uint4 zero = make_uint4(0, 0, 0, 0);
        for (int r = tid; r < N + VIT_ROWS; r += VIT_WARPS * 32) {
            bf16 *row = r < N ? ks + r * LD_K : qs + (r - N) * LD_K;
            *(uint4 *)(row + Dh) = zero;
        }
    }
    __syncthreads();

    const int lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int n_kt = N / 8, n_dt = Dh / 8, n_k16 = kd / 16;
    const bf16 *qw = qs + warp * 16 * LD_K;
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

    /* logits of rows g, g+8 against every key: s[j] covers keys 8j .. 8j+7 */
    float s[VIT_MAX_N / 8][4];
#pragma unroll
    for (int j = 0; j < VIT_MAX_N / 8; j++) {
        s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
        if (j < n_kt) {
            const bf16 *kr = ks + (8 * j + g) * LD_K + 2 * t;
#pragma unroll
            for (int kk = 0; kk < VIT_MAX_DH / 16; kk++)
                if (kk < n_k16) mma_bf16(s[j], qa[kk], ld_pair(kr + kk * 16), ld_pair(kr + kk * 16 + 8));
        }
    }

    /* softmax of the two rows, fp32, as softmax.cu: max, exp(x - max), sum, x * (1 / sum);
     * the four lanes of a quad share a row */
    float mx0 = -3.402823466e38f, mx1 = -3.402823466e38f;
#pragma unroll
    for (int j = 0; j < VIT_MAX_N / 8; j++) {
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
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int j = 0; j < VIT_MAX_N / 8; j++) {
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
    const float inv0 = 1.0f / sum0, inv1 = 1.0f / sum1;

    /* o = bf16(p) · v: key tiles 2kk and 2kk+1 form the A tile of keys 16kk .. 16kk+15 */
    float acc[VIT_MAX_DH / 8][4];
#pragma unroll
    for (int n = 0; n < VIT_MAX_DH / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < VIT_MAX_N / 16; kk++) {
        if (2 * kk < n_kt) {
            uint32_t pa[4];
            pa[0] = pack_bf16(s[2 * kk][0] * inv0, s[2 * kk][1] * inv0);
            pa[1] = pack_bf16(s[2 * kk][2] * inv1, s[2 * kk][3] * inv1);
            pa[2] = pack_bf16(s[2 * kk + 1][0] * inv0, s[2 * kk + 1][1] * inv0);
            pa[3] = pack_bf16(s[2 * kk + 1][2] * inv1, s[2 * kk + 1][3] * inv1);
#pragma unroll
            for (int n = 0; n < VIT_MAX_DH / 8; n++) {
                if (n < n_dt) {
                    const bf16 *vr = vt + (8 * n + g) * LD_VT + kk * 16 + 2 * t;
                    mma_bf16(acc[n], pa, ld_pair(vr), ld_pair(vr + 8));
                }
            }
        }
    }

    bf16 *o0 = o + ((size_t)blockIdx.z * N + q0 + warp * 16 + g) * W + h * Dh + 2 * t;
    bf16 *o1 = o0 + (size_t)8 * W;
#pragma unroll
    for (int n = 0; n < VIT_MAX_DH / 8; n++) {
        if (n < n_dt) {
            *(uint32_t *)(o0 + 8 * n) = pack_bf16(acc[n][0], acc[n][1]);
            *(uint32_t *)(o1 + 8 * n) = pack_bf16(acc[n][2], acc[n][3]);
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
    if (((uintptr_t)qkv | (uintptr_t)o) % 16)
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
