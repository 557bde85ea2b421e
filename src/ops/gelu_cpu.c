/* gelu_cpu.c - GELU, tanh form (PI0_SPEC 0.2: Pi0 never uses the erf form), alone for SigLIP's
 * MLP and gated (gelu(gate)·up) for Gemma's. Threaded: at full size the prefix MLP applies it
 * to 13 M values per layer, and tanhf is not cheap. */
#include "ops/ops_cpu.h"

#include <math.h>

enum { CHUNK = 16384 };          /* values per task */

static inline float gelu_tanh(float x) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

typedef struct {
    float *y;
    const float *gate, *up;      /* up == NULL: plain GELU of gate */
    size_t n;
} gelu_job;

static void gelu_task(void *ctx, int task) {
    const gelu_job *j = ctx;
    size_t i0 = (size_t)task * CHUNK, i1 = i0 + CHUNK < j->n ? i0 + CHUNK : j->n;
    if (j->up)
        for (size_t i = i0; i < i1; i++) j->y[i] = gelu_tanh(j->gate[i]) * j->up[i];
    else
        for (size_t i = i0; i < i1; i++) j->y[i] = gelu_tanh(j->gate[i]);
}

static void gelu_run(float *y, const float *gate, const float *up, size_t n, pi0_pool *pool) {
    gelu_job j = { .y = y, .gate = gate, .up = up, .n = n };
    pi0_pool_run(pool, (int)((n + CHUNK - 1) / CHUNK), gelu_task, &j);
}

void pi0_gelu_cpu(float *x, size_t n, pi0_pool *pool) { gelu_run(x, x, NULL, n, pool); }

void pi0_gelu_gate_cpu(float *y, const float *gate, const float *up, size_t n, pi0_pool *pool) {
    gelu_run(y, gate, up, n, pool);
}
