/* attention_suffix.cu - one Euler step's attention of the suffix tokens in one launch (PI0_SPEC
 * 2.5, 2.8, 2.9): RoPE of the suffix's q and k from the fused q|k|v projection, the k/v rows
 * written into the KV cache, then per query row and head the masked multi-query attention over
 * the cached prefix keys and the suffix keys, out as o [B*T, H*Dh] bf16. It replaces rope +
 * scores GEMM + softmax + P·V GEMM (four launches on 11-row problems). Its CPU twin is
 * pi0_rope_cpu followed by pi0_attention_cpu (tests/test_ops.cu composes them).
 * Not a general attention: one KV head, few query rows (the fast path at small batch).
 *
 * Keys are split into chunks over the grid (flash decoding): block (chunk c, head h, batch b)
 * computes its chunk's fp32 logits for the T query rows of head h, their max m_c, the sum
 * l_c = sum exp(logit - m_c) and acc_c = sum bf16(exp(logit - m_c)) · v, and writes these
 * partials; the last block of (b, h) to finish (an atomic ticket) combines them:
 * o = sum_c acc_c e^(m_c - M) / sum_c l_c e^(m_c - M). Numerics: q rounded to bf16 after RoPE and
 * the 1/sqrt(Dh) scale, k rounded to bf16 (exactly the cached values rope.cu writes), fp32
 * logits and softmax, probabilities rounded to bf16 before P·V as softmax.cu does (here before
 * the final normalization: the same one rounding of each weight, relative to a different
 * scale), fp32 accumulation, one bf16 rounding of o. Masked logits become -2.3819763e38 like
 * softmax.cu, so a key-less row is uniform, never NaN. */
#include "ops/ops_cuda.h"

enum { AS_THREADS = 256, AS_WARPS = AS_THREADS / 32 };
/* Chunks per (b, h) aim at about one wave of blocks on a 132-SM GPU: more chunks add combine
 * work (the last block reads every chunk's partials), fewer leave SMs idle. */
enum { AS_TARGET_BLOCKS = 128, AS_SMEM_MAX = 160 * 1024 };

typedef struct {
    bf16 *o, *kc, *vc;
    const bf16 *qkv;
    const int32_t *n_valid;
    const uint8_t *pad;
    float *part;
    unsigned *count;
    long long kv_stride;
    int T, t0, P, H, Dh, Tk, chunk, n_chunk;
} as_args;

/* RoPE of element pair (i, i + Dh/2) of u at position p, rope.cu's formula and order. */
static __device__ __forceinline__ void rope_pair(const bf16 *u, int i, int half, float p,
                                                 float *r1, float *r2) {
    float timescale = powf(10000.0f, (2.0f / (float)(2 * half)) * (float)i);
    float s, c;
    sincosf(p / timescale, &s, &c);
    float u1 = __bfloat162float(u[i]), u2 = __bfloat162float(u[i + half]);
    *r1 = u1 * c - u2 * s;
    *r2 = u2 * c + u1 * s;
}

static __global__ void __launch_bounds__(AS_THREADS) attention_suffix_kernel(as_args a) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int T = a.T, Dh = a.Dh, half = Dh / 2, H = a.H, C = a.chunk, QKV = (H + 2) * Dh;
    const int j0 = c * C, n_keys = min(C, a.Tk - j0), n_cached = a.P + a.t0;
    bf16 *qs = (bf16 *)smem;                        /* [T, Dh] rotated, scaled q of head h */
    bf16 *ks = qs + (size_t)T * Dh;                 /* [C, Dh] */
    bf16 *vs = ks + (size_t)C * Dh;                 /* [C, Dh] */
    float *lg = (float *)(vs + (size_t)C * Dh);     /* [T, C] logits, then bf16-rounded weights */
    float *ml = lg + (size_t)T * C;                 /* [T, 2] chunk max and sum */
    float *sc = ml + 2 * T;                         /* [n_chunk, T] combine scales */
    __shared__ int last;

    const bf16 *rows = a.qkv + (size_t)b * T * QKV;
    const float pos0 = (float)(a.n_valid[b] + a.t0);
    const float q_scale = rsqrtf((float)Dh);
    bf16 *kc = a.kc + b * a.kv_stride, *vc = a.vc + b * a.kv_stride;
    const bool writer = c == 0 && h == 0;           /* one block stores this pass's k, v rows */
    /* every phase is a few L2 round trips per thread: unrolled so they overlap */
#pragma unroll 4
    for (int idx = threadIdx.x; idx < T * half; idx += AS_THREADS) {
        int t = idx / half, i = idx % half;
        const bf16 *row = rows + (size_t)t * QKV;
        float r1, r2;
        rope_pair(row + h * Dh, i, half, pos0 + t, &r1, &r2);
        qs[t * Dh + i] = __float2bfloat16(r1 * q_scale);
        qs[t * Dh + i + half] = __float2bfloat16(r2 * q_scale);
        if (writer) {
            rope_pair(row + H * Dh, i, half, pos0 + t, &r1, &r2);
            size_t kr = (size_t)(n_cached + t) * Dh;
            kc[kr + i] = __float2bfloat16(r1);
            kc[kr + i + half] = __float2bfloat16(r2);
            vc[kr + i] = row[(H + 1) * Dh + i];
            vc[kr + i + half] = row[(H + 1) * Dh + i + half];
        }
    }
    /* the chunk's keys: cached rows (prefix, and earlier suffix rows) by 16-byte copies; this
     * pass's own rows straight from q|k|v (the writer block may not have stored them yet) */
    const int vec = Dh / 8;
#pragma unroll 8
    for (int idx = threadIdx.x; idx < n_keys * vec; idx += AS_THREADS) {
        int kk = idx / vec, d = (idx % vec) * 8, j = j0 + kk;
        if (j < n_cached) {
            *(uint4 *)(ks + kk * Dh + d) = *(const uint4 *)(kc + (size_t)j * Dh + d);
            *(uint4 *)(vs + kk * Dh + d) = *(const uint4 *)(vc + (size_t)j * Dh + d);
        } else {
            const bf16 *row = rows + (size_t)(j - n_cached) * QKV;
            *(uint4 *)(vs + kk * Dh + d) = *(const uint4 *)(row + (H + 1) * Dh + d);
        }
    }
#pragma unroll 4
    for (int idx = threadIdx.x; idx < n_keys * half; idx += AS_THREADS) {
        int kk = idx / half, i = idx % half, j = j0 + kk;
        if (j < n_cached) continue;
        float r1, r2;
        rope_pair(rows + (size_t)(j - n_cached) * QKV + H * Dh, i, half, pos0 + (j - n_cached),
                  &r1, &r2);
        ks[kk * Dh + i] = __float2bfloat16(r1);
        ks[kk * Dh + i + half] = __float2bfloat16(r2);
    }
    __syncthreads();

    /* logits: a thread per (query row, key), the dot product from shared memory; each thread
     * starts at its own 16-byte piece, so a quarter warp's reads hit distinct banks */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const uint8_t *pad = a.pad + (size_t)b * a.P;
    for (int idx = threadIdx.x; idx < T * n_keys; idx += AS_THREADS) {
        int t = idx / n_keys, kk = idx % n_keys, j = j0 + kk, e0 = idx % vec;
        const bf16 *qr = qs + t * Dh, *kr = ks + kk * Dh;
        float sum = 0.0f;
        for (int e = 0; e < vec; e++) {
            int d = (e + e0 < vec ? e + e0 : e + e0 - vec) * 8;
            uint4 uq = *(const uint4 *)(qr + d), uk = *(const uint4 *)(kr + d);
            const __nv_bfloat162 *pq = (const __nv_bfloat162 *)&uq;
            const __nv_bfloat162 *pk = (const __nv_bfloat162 *)&uk;
#pragma unroll
            for (int z = 0; z < 4; z++) {
                float2 fq = __bfloat1622float2(pq[z]), fk = __bfloat1622float2(pk[z]);
                sum += fq.x * fk.x;
                sum += fq.y * fk.y;
            }
        }
        /* PI0_SPEC 2.8: prefix keys by the pad mask; the state query (suffix index 0) sees
         * only the state key, action queries every suffix key */
        bool valid = j < a.P ? pad[j] != 0 : (a.t0 + t > 0 || j == a.P);
        lg[t * C + kk] = valid ? sum : -2.3819763e38f;
    }
    __syncthreads();

    /* chunk softmax: a warp per query row */
    for (int t = warp; t < T; t += AS_WARPS) {
        float m = -3.402823466e38f;
        for (int kk = lane; kk < n_keys; kk += 32) m = fmaxf(m, lg[t * C + kk]);
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float l = 0.0f;
        for (int kk = lane; kk < n_keys; kk += 32) {
            float e = expf(lg[t * C + kk] - m);
            l += e;
            lg[t * C + kk] = __bfloat162float(__float2bfloat16(e));
        }
        for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
        if (lane == 0) {
            ml[2 * t] = m;
            ml[2 * t + 1] = l;
        }
    }
    __syncthreads();

    /* P·V of the chunk, two adjacent head-dim elements per thread */
    const size_t bh = (size_t)b * H + h;
    float *part = a.part + bh * a.n_chunk * T * Dh;          /* [n_chunk, T, Dh] */
    float *pml = a.part + (size_t)gridDim.z * H * a.n_chunk * T * Dh +
                 bh * a.n_chunk * T * 2;                      /* [n_chunk, T, 2] */
    float *mine = part + (size_t)c * T * Dh;
    for (int idx = threadIdx.x; idx < T * half; idx += AS_THREADS) {
        int t = idx / half, d = 2 * (idx % half);
        float acc0 = 0.0f, acc1 = 0.0f;
        for (int kk = 0; kk < n_keys; kk++) {
            float p = lg[t * C + kk];
            float2 v = __bfloat1622float2(*(const __nv_bfloat162 *)(vs + kk * Dh + d));
            acc0 += p * v.x;
            acc1 += p * v.y;
        }
        *(float2 *)(mine + (size_t)t * Dh + d) = make_float2(acc0, acc1);
    }
    for (int t = threadIdx.x; t < T; t += AS_THREADS)
        *(float2 *)(pml + ((size_t)c * T + t) * 2) = make_float2(ml[2 * t], ml[2 * t + 1]);

    /* the last block of (b, h) combines: partials visible device-wide before the ticket */
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&a.count[bh], 1u) == (unsigned)(a.n_chunk - 1);
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int t = warp; t < T; t += AS_WARPS) { /* a warp per row, lanes over the chunks */
        float M = -3.402823466e38f, L = 0.0f;
        for (int k = lane; k < a.n_chunk; k += 32)
            M = fmaxf(M, __ldcg(pml + ((size_t)k * T + t) * 2));
        for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
        for (int k = lane; k < a.n_chunk; k += 32) {
            float2 v = __ldcg((const float2 *)(pml + ((size_t)k * T + t) * 2));
            float e = expf(v.x - M);
            sc[k * T + t] = e;
            L += v.y * e;
        }
        for (int o = 16; o > 0; o >>= 1) L += __shfl_xor_sync(0xffffffffu, L, o);
        float inv = 1.0f / L;
        __syncwarp();
        for (int k = lane; k < a.n_chunk; k += 32) sc[k * T + t] *= inv;
    }
    __syncthreads();
    const int q4 = Dh / 4;
    for (int idx = threadIdx.x; idx < T * q4; idx += AS_THREADS) {
        int t = idx / q4, d = 4 * (idx % q4);
        float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 16
        for (int k = 0; k < a.n_chunk; k++) {
            float4 v = __ldcg((const float4 *)(part + ((size_t)k * T + t) * Dh + d));
            float w = sc[k * T + t];
            o.x += w * v.x;
            o.y += w * v.y;
            o.z += w * v.z;
            o.w += w * v.w;
        }
        __nv_bfloat162 *out =
            (__nv_bfloat162 *)(a.o + ((size_t)b * T + t) * H * Dh + (size_t)h * Dh + d);
        out[0] = __floats2bfloat162_rn(o.x, o.y);
        out[1] = __floats2bfloat162_rn(o.z, o.w);
    }
    if (threadIdx.x == 0) a.count[bh] = 0; /* ready for the next launch (and graph replay) */
}

extern "C" size_t pi0_attention_suffix_scratch_bytes(int n_rows, int H, int Dh) {
    return (size_t)n_rows * H * PI0_ATTN_SUFFIX_MAX_CHUNKS * (Dh + 2) * sizeof(float);
}

extern "C" pi0_status pi0_attention_suffix_cuda(bf16 *o, bf16 *kc, bf16 *vc, const bf16 *qkv,
                                                const int32_t *n_valid, const uint8_t *pad, int B,
                                                int T, int t0, int P, int H, int Dh,
                                                long long kv_stride, float *part, unsigned *count,
                                                cudaStream_t stream, pi0_error *err) {
    if (Dh % 8 || Dh > 512 || T < 1 || B < 1 || P < 0 || t0 < 0)
        return pi0_fail(err, PI0_ERR_SHAPE,
                        "suffix attention of B %d, T %d, t0 %d, P %d, Dh %d: expected Dh a "
                        "multiple of 8 up to 512, B, T >= 1", B, T, t0, P, Dh);
    int Tk = P + t0 + T;
    int n_chunk = (AS_TARGET_BLOCKS + B * H - 1) / (B * H);
    if (n_chunk > PI0_ATTN_SUFFIX_MAX_CHUNKS) n_chunk = PI0_ATTN_SUFFIX_MAX_CHUNKS;
    if (n_chunk > Tk) n_chunk = Tk;
    int chunk = (Tk + n_chunk - 1) / n_chunk;
    size_t fixed = (size_t)T * Dh * 2 + (size_t)2 * T * 4;
    size_t per_key = (size_t)2 * Dh * 2 + (size_t)T * 4;
    size_t smem = fixed + per_key * chunk + (size_t)n_chunk * T * 4;
    if (smem > AS_SMEM_MAX) {  /* long prompts with many rows: smaller chunks, more of them */
        int fit = (int)((AS_SMEM_MAX - fixed - (size_t)PI0_ATTN_SUFFIX_MAX_CHUNKS * T * 4) / per_key);
        if (fit < 1) fit = 1;
        chunk = fit;
        n_chunk = (Tk + chunk - 1) / chunk;
        smem = fixed + per_key * chunk + (size_t)n_chunk * T * 4;
    }
    n_chunk = (Tk + chunk - 1) / chunk; /* no empty chunk */
    if (n_chunk > PI0_ATTN_SUFFIX_MAX_CHUNKS || smem > AS_SMEM_MAX)
        return pi0_fail(err, PI0_ERR_SHAPE,
                        "suffix attention over %d keys with %d query rows needs %d chunks, at "
                        "most %d fit", Tk, T, n_chunk, PI0_ATTN_SUFFIX_MAX_CHUNKS);
    if (smem > 48 * 1024)
        CUDA_TRY(cudaFuncSetAttribute(attention_suffix_kernel,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    as_args a = { o, kc, vc, qkv, n_valid, pad, part, count, kv_stride,
                  T, t0, P, H, Dh, Tk, chunk, n_chunk };
    attention_suffix_kernel<<<dim3(n_chunk, H, B), AS_THREADS, smem, stream>>>(a);
    LAUNCH_CHECK();
    return PI0_OK;
}
