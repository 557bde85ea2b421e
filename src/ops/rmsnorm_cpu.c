/* rmsnorm_cpu.c - Gemma RMSNorm (PI0_SPEC 2.5) in float32 with a double sum of squares.
 * The gain is 1 + s: checkpoints store the offset from 1. */
#include "ops/ops_cpu.h"

#include <math.h>

void pi0_rmsnorm_cpu(float *y, const float *x, const float *s, int n_rows, int dim, float eps) {
    for (int r = 0; r < n_rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        double sum_sq = 0.0;
        for (int i = 0; i < dim; i++) sum_sq += (double)xr[i] * xr[i];
        float inv_rms = 1.0f / sqrtf((float)(sum_sq / dim) + eps);
        for (int i = 0; i < dim; i++) yr[i] = xr[i] * inv_rms * (1.0f + s[i]);
    }
}
