/* softmax_cpu.c - row softmax in float32 with a double denominator (attention probabilities). */
#include "ops/ops_cpu.h"

#include <math.h>

void pi0_softmax_cpu(float *x, int n_rows, int n) {
    for (int r = 0; r < n_rows; r++) {
        float *xr = x + (size_t)r * n;
        float max = xr[0];
        for (int j = 1; j < n; j++) max = xr[j] > max ? xr[j] : max;
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            xr[j] = expf(xr[j] - max);
            sum += xr[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < n; j++) xr[j] *= inv;
    }
}
