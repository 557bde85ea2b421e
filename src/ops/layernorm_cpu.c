/* layernorm_cpu.c - LayerNorm of SigLIP (PI0_SPEC 2.2) in float32 with double statistics. */
#include "ops/ops_cpu.h"

#include <math.h>

void pi0_layernorm_cpu(float *y, const float *x, const float *w, const float *b, int n_rows,
                       int dim, float eps) {
    for (int r = 0; r < n_rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        double sum = 0.0;
        for (int i = 0; i < dim; i++) sum += xr[i];
        double mean = sum / dim;
        double sum_sq = 0.0; /* two passes: no cancellation in E[x²] - E[x]² */
        for (int i = 0; i < dim; i++) sum_sq += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        float inv_std = (float)(1.0 / sqrt(sum_sq / dim + eps));
        float m = (float)mean;
        for (int i = 0; i < dim; i++) yr[i] = (xr[i] - m) * inv_std * w[i] + b[i];
    }
}
