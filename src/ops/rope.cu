/* rope.cu - RoPE on the output of the fused Gemma q|k|v projection (PI0_SPEC 2.5): rotates the H
 * query heads and the one key head in fp32, scales q by 1/sqrt(Dh), and scatters q into the
 * multi-query layout [B, T*H, Dh] and k, v into the KV cache. Must match rope_cpu.c: the angle
 * is pos / 10000^((2/Dh)*i) computed in fp32 the same way, accurate sin/cos, nothing precomputed. */
#include "ops/ops_cuda.h"

/* grid (B*T), block: Dh/2 threads per head slot, (H+1) slots (H query heads, then k) plus v. */
static __global__ void rope_qkv_kernel(bf16 *q, bf16 *kc, bf16 *vc, const bf16 *qkv,
                                       const int32_t *pos, int pos_ld, int pos_t, int pos_add,
                                       int T, int H, int Dh, long long kv_stride, int kv_row0) {
    int bt = blockIdx.x, b = bt / T, t = bt % T, half = Dh / 2;
    const bf16 *row = qkv + (size_t)bt * (H + 2) * Dh;
    float p = (float)(pos[(size_t)b * pos_ld + (size_t)t * pos_t] + t * pos_add);
    float q_scale = rsqrtf((float)Dh);
    bf16 *krow = kc + b * kv_stride + (long long)(kv_row0 + t) * Dh;
    bf16 *vrow = vc + b * kv_stride + (long long)(kv_row0 + t) * Dh;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float timescale = powf(10000.0f, (2.0f / (float)Dh) * (float)i);
        float s, c;
        sincosf(p / timescale, &s, &c);
        for (int h = q ? 0 : H; h <= H; h++) { /* h == H is the key head */
            const bf16 *u = row + h * Dh;
            float u1 = __bfloat162float(u[i]), u2 = __bfloat162float(u[i + half]);
            float r1 = u1 * c - u2 * s, r2 = u2 * c + u1 * s;
            if (h < H) {
                bf16 *qo = q + ((size_t)bt * H + h) * Dh;
                qo[i] = __float2bfloat16(r1 * q_scale);
                qo[i + half] = __float2bfloat16(r2 * q_scale);
            } else {
                krow[i] = __float2bfloat16(r1);
                krow[i + half] = __float2bfloat16(r2);
            }
        }
        const bf16 *v = row + (H + 1) * Dh;
        vrow[i] = v[i];
        vrow[i + half] = v[i + half];
    }
}

/* The same for head dims with Dh/2 % 8 == 0 and 16-byte aligned rows, a block per row: the
 * threads first compute the row's Dh/2 angles one each into shared memory, then rotate 8
 * consecutive pairs (i, i + Dh/2) of a head at a time with 16-byte loads and stores. (The
 * scalar kernel moved 2 bytes a load, 5.8 us for the prefix of P = 532 on an H200; 8 angles a
 * thread in registers left too few threads for the sincos latency, 7.9 us.) */
enum { ROPE_VEC = 8, ROPE_VEC_THREADS = 128 };

static __global__ void __launch_bounds__(ROPE_VEC_THREADS)
    rope_qkv_vec_kernel(bf16 *q, bf16 *kc, bf16 *vc, const bf16 *qkv, const int32_t *pos,
                        int pos_ld, int pos_t, int pos_add, int T, int H, int Dh,
                        long long kv_stride, int kv_row0) {
    extern __shared__ float2 angle[]; /* [Dh/2]: (cos, sin) */
    const int bt = blockIdx.x, b = bt / T, t = bt % T, half = Dh / 2, per_head = half / ROPE_VEC;
    const bf16 *row = qkv + (size_t)bt * (H + 2) * Dh;
    const float p = (float)(pos[(size_t)b * pos_ld + (size_t)t * pos_t] + t * pos_add);
    for (int i = threadIdx.x; i < half; i += ROPE_VEC_THREADS) {
        float timescale = powf(10000.0f, (2.0f / (float)Dh) * (float)i), sn, cs;
        sincosf(p / timescale, &sn, &cs);
        angle[i] = make_float2(cs, sn);
    }
    __syncthreads();
    const float q_scale = rsqrtf((float)Dh);
    const size_t kv_row = b * kv_stride + (long long)(kv_row0 + t) * Dh;
    for (int item = (q ? 0 : H * per_head) + threadIdx.x; item < (H + 2) * per_head;
         item += ROPE_VEC_THREADS) {
        const int h = item / per_head, i0 = (item % per_head) * ROPE_VEC; /* h == H: k, H+1: v */
        const uint4 x1 = *(const uint4 *)(row + h * Dh + i0);
        const uint4 x2 = *(const uint4 *)(row + h * Dh + half + i0);
        if (h == H + 1) {
            *(uint4 *)(vc + kv_row + i0) = x1;
            *(uint4 *)(vc + kv_row + half + i0) = x2;
            continue;
        }
        const bf16 *u1 = (const bf16 *)&x1, *u2 = (const bf16 *)&x2;
        const float scale = h < H ? q_scale : 1.0f;
        __align__(16) bf16 r1[ROPE_VEC], r2[ROPE_VEC];
#pragma unroll
        for (int e = 0; e < ROPE_VEC; e++) {
            const float2 cs = angle[i0 + e];
            const float a = __bfloat162float(u1[e]), c = __bfloat162float(u2[e]);
            r1[e] = __float2bfloat16((a * cs.x - c * cs.y) * scale);
            r2[e] = __float2bfloat16((c * cs.x + a * cs.y) * scale);
        }
        bf16 *dst = h < H ? q + ((size_t)bt * H + h) * Dh + i0 : kc + kv_row + i0;
        *(uint4 *)dst = *(const uint4 *)r1;
        *(uint4 *)(dst + half) = *(const uint4 *)r2;
    }
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

extern "C" pi0_status pi0_rope_qkv_cuda(bf16 *q, bf16 *kc, bf16 *vc, const bf16 *qkv,
                                        const int32_t *pos, int pos_ld, int pos_t, int pos_add,
                                        int B, int T, int H, int Dh, long long kv_stride,
                                        int kv_row0, cudaStream_t stream, pi0_error *err) {
    if (B * T <= 0) return PI0_OK;
    if ((Dh / 2) % ROPE_VEC == 0 && kv_stride % ROPE_VEC == 0 && (!q || aligned16(q)) &&
        aligned16(kc) && aligned16(vc) && aligned16(qkv)) {
        rope_qkv_vec_kernel<<<B * T, ROPE_VEC_THREADS, (size_t)(Dh / 2) * sizeof(float2),
                              stream>>>(q, kc, vc, qkv, pos, pos_ld, pos_t, pos_add, T, H, Dh,
                                        kv_stride, kv_row0);
        LAUNCH_CHECK();
        return PI0_OK;
    }
    int threads = Dh / 2 < 32 ? 32 : (Dh / 2 > 256 ? 256 : Dh / 2);
    rope_qkv_kernel<<<B * T, threads, 0, stream>>>(q, kc, vc, qkv, pos, pos_ld, pos_t, pos_add, T,
                                                   H, Dh, kv_stride, kv_row0);
    LAUNCH_CHECK();
    return PI0_OK;
}
