/* test_rng.c - src/rng.h: splitmix64 and xoshiro256** against values of the published
 * algorithms (worked out independently of this code), the counter form against the stream
 * form, and the distributions of the uniform and normal draws on a fresh seed.
 * Statistical limits are 5 standard errors of a correct generator (about one false failure in
 * a million runs per check); a wrong scale, offset or missing half of Box-Muller's pair is
 * off by far more.
 *   test_rng [--seed N] */
#include <inttypes.h>
#include <time.h>

#include "rng.h"
#include "test_util.h"

static void test_known_values(void) {
    /* splitmix64 from state 0 (its reference implementation's first outputs). */
    static const uint64_t splitmix0[3] = { 0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull,
                                           0x06c45d188009454full };
    uint64_t state = 0;
    for (int i = 0; i < 3; i++) {
        uint64_t got = pi0_splitmix64(&state);
        CHECK(got == splitmix0[i], "splitmix64 output %d from 0: %#" PRIx64 ", want %#" PRIx64, i,
              got, splitmix0[i]);
    }
    /* The counter form: output i of a stream from s is mix64(s + (i + 1) * gamma). */
    CHECK(pi0_rng_mix64(3 * PI0_RNG_GAMMA) == splitmix0[2], "mix64(3 gamma) is not output 2");

    /* xoshiro256** seeded with four splitmix64 outputs. */
    static const struct { uint64_t seed, want[4]; } streams[] = {
        { 0, { 0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull, 0x1a5f849d4933e6e0ull,
               0x6aa594f1262d2d2cull } },
        { 12345, { 0xbe6a36374160d49bull, 0x214aaa0637a688c6ull, 0xf69d16de9954d388ull,
                   0x0c60048c4e96e033ull } },
    };
    for (int k = 0; k < 2; k++) {
        pi0_rng g;
        pi0_rng_seed(&g, streams[k].seed);
        for (int i = 0; i < 4; i++) {
            uint64_t got = pi0_rng_next(&g);
            CHECK(got == streams[k].want[i], "xoshiro256** seed %" PRIu64 " output %d: %#" PRIx64
                  ", want %#" PRIx64, streams[k].seed, i, got, streams[k].want[i]);
        }
    }
    /* Seeding again restarts the stream, the Box-Muller spare included. */
    pi0_rng a, b;
    pi0_rng_seed(&a, 7);
    float first = pi0_rng_normal(&a);
    pi0_rng_seed(&a, 7);
    pi0_rng_seed(&b, 7);
    CHECK(pi0_rng_normal(&a) == first && pi0_rng_normal(&b) == first, "reseeding does not replay");
}

static void test_distributions(uint64_t seed) {
    enum { N = 1000000 };
    pi0_rng g;
    pi0_rng_seed(&g, seed);
    double sum_u = 0.0, sum_v = 0.0;
    int u_out = 0, pm_out = 0;
    for (int i = 0; i < N; i++) {
        double u = pi0_rng_uniform(&g);
        float v = pi0_rng_uniform_pm1(&g);
        u_out += !(u >= 0.0 && u < 1.0);
        pm_out += !(v >= -1.0f && v < 1.0f);
        sum_u += u;
        sum_v += v;
    }
    double mean_u = sum_u / N, se_u = sqrt(1.0 / 12.0 / N);
    CHECK(u_out == 0 && pm_out == 0, "%d uniforms outside [0, 1), %d outside [-1, 1)", u_out, pm_out);
    CHECK(fabs(mean_u - 0.5) <= 5 * se_u, "uniform mean %.6f, want 0.5 +- %.6f", mean_u, 5 * se_u);
    double mean_v = sum_v / N, se_v = sqrt(1.0 / 3.0 / N);
    CHECK(fabs(mean_v) <= 5 * se_v, "[-1, 1) mean %.6f, want 0 +- %.6f", mean_v, 5 * se_v);

    double sum = 0.0, sum_sq = 0.0;
    int n_tail = 0, n_bad = 0;
    for (int i = 0; i < N; i++) {
        float z = pi0_rng_normal(&g);
        n_bad += !isfinite(z);
        sum += z;
        sum_sq += (double)z * z;
        n_tail += fabsf(z) > 3.0f;
    }
    double mean = sum / N, var = sum_sq / N - mean * mean;
    const double p_tail = 0.0026997960632601866;   /* P(|Z| > 3) */
    double tail = (double)n_tail / N, se_tail = sqrt(p_tail * (1 - p_tail) / N);
    CHECK(n_bad == 0, "%d normals are not finite", n_bad);
    CHECK(fabs(mean) <= 5 / sqrt((double)N), "normal mean %.5f, want 0 +- %.5f", mean, 5 / sqrt((double)N));
    CHECK(fabs(var - 1) <= 5 * sqrt(2.0 / N), "normal variance %.5f, want 1 +- %.5f", var, 5 * sqrt(2.0 / N));
    CHECK(fabs(tail - p_tail) <= 5 * se_tail, "P(|z| > 3) is %.5f, want %.5f +- %.5f", tail, p_tail,
          5 * se_tail);
    printf("uniform mean %.5f; normal mean %.5f, variance %.5f, P(|z| > 3) %.5f\n", mean_u, mean,
           var, tail);
}

int main(int argc, char **argv) {
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--seed")) seed = strtoull(argv[i + 1], NULL, 0);
    printf("seed %" PRIu64 " (--seed %" PRIu64 " replays it)\n", seed, seed);
    int before = n_failed;
    test_known_values();
    REPORT(before, "splitmix64 and xoshiro256** known values, counter form, reseeding");
    before = n_failed;
    test_distributions(seed);
    REPORT(before, "uniform and normal distributions over 10^6 draws");
    return test_summary_checks();
}
