/* add.cu - residual add x += t on the GPU (bf16, sum in fp32, one rounding), for the path
 * without GEMM epilogues; with them the GEMM adds into the residual stream itself (beta = 1). */
#include "ops/ops_cuda.h"

static __global__ void add_kernel(bf16 *x, const bf16 *t, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = __float2bfloat16(__bfloat162float(x[i]) + __bfloat162float(t[i]));
}

extern "C" pi0_status pi0_add_cuda(bf16 *x, const bf16 *t, size_t n, cudaStream_t stream,
                                   pi0_error *err) {
    if (n == 0) return PI0_OK;
    size_t g = (n + 255) / 256;
    add_kernel<<<g > 65536 ? 65536 : (int)g, 256, 0, stream>>>(x, t, n);
    LAUNCH_CHECK();
    return PI0_OK;
}
