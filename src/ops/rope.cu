/* rope.cu - RoPE on the output of the fused Gemma q|k|v projection (PI0_SPEC 2.5): rotates the H
 * query heads and the one key head in fp32, scales q by 1/sqrt(Dh), and scatters q into the
 * multi-query layout [B, T*H, Dh] and k, v into the KV cache. Must match rope_cpu.c: the angles
 * come from rope_angle.cuh, nothing precomputed across calls. */
#include "ops/ops_cuda.h"
#include "ops/rope_angle.cuh"

enum { ROPE_THREADS = 128 };

/* VEC bf16 moved as one word: 16-byte loads and stores where the rows allow them. */
template <int VEC> struct rope_word;
template <> struct rope_word<8> { typedef uint4 type; };
template <> struct rope_word<1> { typedef unsigned short type; };

/* A block per row bt = b*T + t: its threads first compute the row's Dh/2 angles, one each,
 * into shared memory, then rotate VEC consecutive pairs (i, i + Dh/2) of a head at a time.
 * VEC = 8 where Dh/2 % 8 == 0 and the rows are 16-byte aligned (Gemma's Dh 256: 4.1 us for the
 * prefix of P = 532 on an H200, against 5.8 us with 2-byte loads), else 1. */
template <int VEC>
static __global__ void __launch_bounds__(ROPE_THREADS)
    rope_qkv_kernel(bf16 *q, bf16 *kc, bf16 *vc, const bf16 *qkv, const int32_t *pos,
                    int pos_ld, int pos_t, int pos_add, int T, int H, int Dh,
                    long long kv_stride, int kv_row0) {
    typedef typename rope_word<VEC>::type word;
    extern __shared__ float2 angle[]; /* [Dh/2]: (cos, sin) */
    const int bt = blockIdx.x, b = bt / T, t = bt % T, half = Dh / 2, per_head = half / VEC;
    const bf16 *row = qkv + (size_t)bt * (H + 2) * Dh;
    const float p = (float)(pos[(size_t)b * pos_ld + (size_t)t * pos_t] + t * pos_add);
    for (int i = threadIdx.x; i < half; i += ROPE_THREADS) angle[i] = rope_angle(p, i, Dh);
    __syncthreads();
    const float q_scale = rsqrtf((float)Dh);
    const size_t kv_row = b * kv_stride + (long long)(kv_row0 + t) * Dh;
    /* items: VEC pairs of head h; h < H queries, H the key, H + 1 the value (copied) */
    for (int item = (q ? 0 : H * per_head) + threadIdx.x; item < (H + 2) * per_head;
         item += ROPE_THREADS) {
        const int h = item / per_head, i0 = (item % per_head) * VEC;
        const word x1 = *(const word *)(row + h * Dh + i0);
        const word x2 = *(const word *)(row + h * Dh + half + i0);
        if (h == H + 1) {
            *(word *)(vc + kv_row + i0) = x1;
            *(word *)(vc + kv_row + half + i0) = x2;
            continue;
        }
        const bf16 *u1 = (const bf16 *)&x1, *u2 = (const bf16 *)&x2;
        const float scale = h < H ? q_scale : 1.0f;
        __align__(16) bf16 r1[VEC], r2[VEC];
#pragma unroll
        for (int e = 0; e < VEC; e++) {
            const float2 cs = angle[i0 + e];
            const float a = __bfloat162float(u1[e]), c = __bfloat162float(u2[e]);
            r1[e] = __float2bfloat16((a * cs.x - c * cs.y) * scale);
            r2[e] = __float2bfloat16((c * cs.x + a * cs.y) * scale);
        }
        bf16 *dst = h < H ? q + ((size_t)bt * H + h) * Dh + i0 : kc + kv_row + i0;
        *(word *)dst = *(const word *)r1;
        *(word *)(dst + half) = *(const word *)r2;
    }
}

extern "C" pi0_status pi0_rope_qkv_cuda(bf16 *q, bf16 *kc, bf16 *vc, const bf16 *qkv,
                                        const int32_t *pos, int pos_ld, int pos_t, int pos_add,
                                        int B, int T, int H, int Dh, long long kv_stride,
                                        int kv_row0, cudaStream_t stream, pi0_error *err) {
    if (B * T <= 0) return PI0_OK;
    const size_t smem = (size_t)(Dh / 2) * sizeof(float2);
    if ((Dh / 2) % 8 == 0 && kv_stride % 8 == 0 && (!q || pi0_aligned16(q)) &&
        pi0_aligned16(kc) && pi0_aligned16(vc) && pi0_aligned16(qkv))
        rope_qkv_kernel<8><<<B * T, ROPE_THREADS, smem, stream>>>(
            q, kc, vc, qkv, pos, pos_ld, pos_t, pos_add, T, H, Dh, kv_stride, kv_row0);
    else
        rope_qkv_kernel<1><<<B * T, ROPE_THREADS, smem, stream>>>(
            q, kc, vc, qkv, pos, pos_ld, pos_t, pos_add, T, H, Dh, kv_stride, kv_row0);
    LAUNCH_CHECK();
    return PI0_OK;
}
