/* rng.h - the one source of pseudo-random numbers in pi0c: the server's noise, the bench
 * workload, random weights and the tests' fresh inputs. Reproducible (the same bits from the
 * same seed on every machine), small and fast; not cryptographic, and not JAX's generator:
 * openpi draws its noise from JAX, but noise is an input, so any good generator serves.
 *   pi0_rng g;  pi0_rng_seed(&g, seed);  float z = pi0_rng_normal(&g);
 * Two forms:
 *   - a stream, pi0_rng (xoshiro256** seeded through splitmix64), for sequential draws;
 *   - counter-based, pi0_rng_mix64(key + i * PI0_RNG_GAMMA): value i depends only on (key, i),
 *     so work split over threads in any way gives the same bits (random weights). */
#ifndef PI0_RNG_H
#define PI0_RNG_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* splitmix64's increment: 2^64 / golden ratio, odd, so key + i * gamma visits every value. */
#define PI0_RNG_GAMMA 0x9e3779b97f4a7c15ull

/* splitmix64's output function: a bijective, well-mixed function of a 64-bit counter. */
static inline uint64_t pi0_rng_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One splitmix64 step: advances *state and returns the next 64 random bits. */
static inline uint64_t pi0_splitmix64(uint64_t *state) { return pi0_rng_mix64(*state += PI0_RNG_GAMMA); }

typedef struct {
    uint64_t s[4];      /* xoshiro256** state; never all zero (splitmix64 seeding sees to it) */
    bool has_spare;     /* Box-Muller makes normals in pairs: the second waits in spare */
    double spare;
} pi0_rng;

/* Any seed is fine, 0 included; nearby seeds give unrelated streams. */
void pi0_rng_seed(pi0_rng *g, uint64_t seed);
uint64_t pi0_rng_next(pi0_rng *g);          /* 64 random bits */
double pi0_rng_uniform(pi0_rng *g);         /* [0, 1), 53 bits */
float pi0_rng_uniform_pm1(pi0_rng *g);      /* [-1, 1), 24 bits */
/* Standard normal: Box-Muller in double over two uniforms in (0, 1) (never 0, so log is
 * finite), rounded to float once. */
float pi0_rng_normal(pi0_rng *g);

#ifdef __cplusplus
}
#endif
#endif
