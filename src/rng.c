/* rng.c - xoshiro256** (Blackman and Vigna) seeded through splitmix64, and the uniform and
 * normal draws built on it. The counter-based form is inline in rng.h. */
#include "rng.h"

#include <math.h>

void pi0_rng_seed(pi0_rng *g, uint64_t seed) {
    for (int i = 0; i < 4; i++) g->s[i] = pi0_splitmix64(&seed);
    g->has_spare = false;
    g->spare = 0.0;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pi0_rng_next(pi0_rng *g) {
    uint64_t *s = g->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double pi0_rng_uniform(pi0_rng *g) { return (double)(pi0_rng_next(g) >> 11) * 0x1p-53; }

/* k / 2^23 - 1 for k in [0, 2^24): exact in float, so never 1 (2u - 1 in double, rounded to
 * float, would give 1.0f for u within 2^-25 of 1). */
float pi0_rng_uniform_pm1(pi0_rng *g) { return (float)(pi0_rng_next(g) >> 40) * 0x1p-23f - 1.0f; }

/* (0, 1): the midpoint of one of 2^53 equal cells, so never 0 and never 1. */
static double uniform_open(pi0_rng *g) { return ((double)(pi0_rng_next(g) >> 11) + 0.5) * 0x1p-53; }

float pi0_rng_normal(pi0_rng *g) {
    if (g->has_spare) {
        g->has_spare = false;
        return (float)g->spare;
    }
    double r = sqrt(-2.0 * log(uniform_open(g))), phi = 6.283185307179586 * uniform_open(g);
    g->spare = r * sin(phi);
    g->has_spare = true;
    return (float)(r * cos(phi));
}
