/* schedule.c - the time values of the Euler loop and their sinusoidal embedding (PI0_SPEC
 * 2.7, 2.10), computed in float32 in the order openpi computes them: at t = 1 the fastest
 * frequency is ~1571 rad per unit of t, so one float32 rounding more or less anywhere moves
 * sin/cos by ~1e-4 (reference README, "Details" 9). Shared by every backend. */
#include "model.h"

#include <assert.h>
#include <math.h>

float pi0_euler_times(int n_steps, float *t) {
    /* openpi: dt = -1.0 / num_steps is a Python float (double), used against float32 arrays,
     * so it enters as the double quotient rounded once to float32; t starts at float32 1.0 and
     * is accumulated (t += dt), and the loop runs while t >= -dt/2: exactly n times (checked
     * in float32 for every n up to 1000). */
    const float dt = (float)(-1.0 / n_steps);
    float time = 1.0f;
    for (int k = 0; k < n_steps; k++) {
        t[k] = time;
        time += dt;
    }
    return dt;
}

/* jnp.pi as a float32 constant */
#define PI_F32 3.14159265358979323846f

void pi0_time_embedding(float t, int width, float *out) {
    const int half = width / 2;
    assert(half >= 2);
    for (int i = 0; i < half; i++) {
        /* fraction = linspace(0, 1, half) in float32; period = 4e-3 · (4.0 / 4e-3)^fraction,
         * where 4.0 / 4e-3 is 1000 exactly in float32; freq = (1 / period) · 2 · π; all
         * float32 roundings in openpi's order. */
        float fraction = (float)i / (float)(half - 1);
        float period = 4e-3f * powf(1000.0f, fraction);
        float freq = 1.0f / period * 2.0f * PI_F32;
        float angle = t * freq;
        out[i] = sinf(angle);
        out[half + i] = cosf(angle);
    }
}
