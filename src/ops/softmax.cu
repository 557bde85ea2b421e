/* softmax.cu - masked attention softmax on the GPU: fp32 logits in, fp32 max/exp/sum, bf16
 * probabilities out, written in place over the start of each logit row (the P·V GEMM reads them
 * with a row stride of 2*ld bf16 elements), so no second [B, R, Tk] buffer is needed. Masking
 * replaces logits by -2.3819763e38 as openpi does (PI0_SPEC 2.5): a masked key gets exactly
 * zero weight whenever a valid key exists. Must match attention_cpu.c's softmax. */
#include "ops/ops_cuda.h"

#define SOFTMAX_THREADS 256
#define SOFTMAX_PER_THREAD 16 /* Tk <= 4096 */

static __global__ void softmax_kernel(float *scores, int R, int Tk, int ld, int mask,
                                      const uint8_t *pad, int pad_ld, int P, int H) {
    int row = blockIdx.x, b = row / R, t = (row % R) / H;
    float *in = scores + (size_t)row * ld;
    const uint8_t *pb = pad ? pad + (size_t)b * pad_ld : NULL;
    float v[SOFTMAX_PER_THREAD];
    float mx = -3.402823466e38f;
#pragma unroll
    for (int k = 0; k < SOFTMAX_PER_THREAD; k++) {
        int j = threadIdx.x + k * SOFTMAX_THREADS;
        v[k] = -3.402823466e38f;
        if (j < Tk) {
            bool valid = true;
            if (mask == PI0_MASK_PREFIX)
                valid = pb[j] != 0;
            else if (mask == PI0_MASK_SUFFIX)
                valid = j < P ? pb[j] != 0 : (t > 0 || j == P);
            v[k] = valid ? in[j] : -2.3819763e38f;
            mx = fmaxf(mx, v[k]);
        }
    }
    mx = pi0_block_max(mx); /* barrier: every read of the row is done before the writes below */
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < SOFTMAX_PER_THREAD; k++) {
        int j = threadIdx.x + k * SOFTMAX_THREADS;
        v[k] = j < Tk ? expf(v[k] - mx) : 0.0f;
        sum += v[k];
    }
    float inv = 1.0f / pi0_block_sum(sum);
    bf16 *out = (bf16 *)in;
#pragma unroll
    for (int k = 0; k < SOFTMAX_PER_THREAD; k++) {
        int j = threadIdx.x + k * SOFTMAX_THREADS;
        if (j < Tk) out[j] = __float2bfloat16(v[k] * inv);
    }
}

extern "C" pi0_status pi0_softmax_cuda(float *scores, int B, int R, int Tk, int ld, int mask,
                                       const uint8_t *pad, int pad_ld, int P, int H,
                                       cudaStream_t stream, pi0_error *err) {
    if (Tk > SOFTMAX_THREADS * SOFTMAX_PER_THREAD || Tk < 1)
        return pi0_fail(err, PI0_ERR_SHAPE, "softmax over %d keys, expected 1..%d", Tk,
                        SOFTMAX_THREADS * SOFTMAX_PER_THREAD);
    if ((long long)B * R <= 0) return PI0_OK;
    softmax_kernel<<<B * R, SOFTMAX_THREADS, 0, stream>>>(scores, R, Tk, ld, mask, pad, pad_ld, P,
                                                          H);
    LAUNCH_CHECK();
    return PI0_OK;
}
