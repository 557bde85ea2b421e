/* swish_cpu.c - swish (SiLU) of the action-time MLP (PI0_SPEC 2.7): x·σ(x). */
#include "ops/ops_cpu.h"

#include <math.h>

void pi0_swish_cpu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}
