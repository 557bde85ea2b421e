/* rope_cpu.c - rotary position embedding of Gemma (PI0_SPEC 2.5) in float32, in the order
 * openpi computes it: timescale = 10000^((2/Dh)·i), angle = pos / timescale (reference README,
 * "Details" 4). Pairs are i and i + Dh/2 (halves), not adjacent elements. */
#include "ops/ops_cpu.h"

#include <math.h>

void pi0_rope_cpu(float *x, const int32_t *pos, int n_rows, int n_heads, int head_dim,
                  int row_stride) {
    const int half = head_dim / 2;
    for (int r = 0; r < n_rows; r++) {
        float *xr = x + (size_t)r * row_stride;
        for (int i = 0; i < half; i++) {
            float timescale = powf(10000.0f, (2.0f / (float)head_dim) * (float)i);
            float angle = (float)pos[r] / timescale;
            float c = cosf(angle), s = sinf(angle);
            for (int h = 0; h < n_heads; h++) {
                float *u = xr + (size_t)h * head_dim;
                float u1 = u[i], u2 = u[i + half];
                u[i] = u1 * c - u2 * s;
                u[i + half] = u2 * c + u1 * s;
            }
        }
    }
}
