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

extern "C" pi0_status pi0_rope_qkv_cuda(bf16 *q, bf16 *kc, bf16 *vc, const bf16 *qkv,
                                        const int32_t *pos, int pos_ld, int pos_t, int pos_add,
                                        int B, int T, int H, int Dh, long long kv_stride,
                                        int kv_row0, cudaStream_t stream, pi0_error *err) {
    if (B * T <= 0) return PI0_OK;
    int threads = Dh / 2 < 32 ? 32 : (Dh / 2 > 256 ? 256 : Dh / 2);
    rope_qkv_kernel<<<B * T, threads, 0, stream>>>(q, kc, vc, qkv, pos, pos_ld, pos_t, pos_add, T,
                                                   H, Dh, kv_stride, kv_row0);
    LAUNCH_CHECK();
    return PI0_OK;
}
