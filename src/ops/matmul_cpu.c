/* matmul_cpu.c - y = x·Wᵀ + b in float32 on the CPU: every linear layer of the reference.
 * It is most of the CPU time, so it is blocked for the caches and written for the compiler's
 * vector units (GCC/clang vector types, no intrinsics): each output is a dot product of two
 * contiguous rows, taken 8 lanes at a time. x86-64 builds carry an AVX2 + FMA copy of the
 * kernel chosen at run time, so one binary is fast on AVX2 machines and still runs on any
 * x86-64.
 *
 * Summation order (fixed, independent of the thread count): y = b, then for each block of 512
 * along K, y += (8 interleaved lane sums, added pairwise) + the tail of the block. The AVX2
 * copy fuses each multiply-add (one rounding instead of two), so its bits differ from the
 * baseline copy's at float32 rounding level; on one machine the results are reproducible. */
#include "ops/ops_cpu.h"

/* The vector helpers below are static and always inlined: the note that passing 32-byte
 * vectors without AVX changes the calling convention does not apply to them. */
#pragma GCC diagnostic ignored "-Wpsabi"

enum {
    MR = 3,      /* rows of x per tile */
    NR = 4,      /* rows of w (columns of y) per tile: 12 accumulators + 3 x + 1 w registers */
    MB = 48,     /* rows of x per task: 96 KB of x per K block stays in L2 */
    NB = 64,     /* rows of w per task */
    KC = 512,    /* K block: a 3 x 4 tile reads 14 KB per block, within L1 */
};

typedef float v8 __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) v8 load8(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v); /* unaligned load */
    return v;
}

static inline __attribute__((always_inline)) float sum8(const v8 *v) {
    const v8 a = *v;
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

/* y[r, c] += Σ_{k < kn} x[r, k]·w[c, k] for a full MR x NR tile: 12 vector accumulators that
 * stay in registers once the constant loops are unrolled. */
static inline __attribute__((always_inline)) void
tile_full(float *y, int ldy, const float *x, int ldx, const float *w, int ldw, int kn) {
    v8 acc[MR][NR];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NR; c++) acc[r][c] = (v8){ 0 };
    int k = 0;
    for (; k + 8 <= kn; k += 8) {
        v8 xv[MR];
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) xv[r] = load8(x + (size_t)r * ldx + k);
#pragma GCC unroll 4
        for (int c = 0; c < NR; c++) {
            v8 wv = load8(w + (size_t)c * ldw + k);
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) acc[r][c] += xv[r] * wv;
        }
    }
    for (int r = 0; r < MR; r++)
        for (int c = 0; c < NR; c++) {
            float s = sum8(&acc[r][c]);
            for (int kk = k; kk < kn; kk++) s += x[(size_t)r * ldx + kk] * w[(size_t)c * ldw + kk];
            y[(size_t)r * ldy + c] += s;
        }
}

/* The same sum for one output (tile edges), in the same order as tile_full. */
static inline __attribute__((always_inline)) void
tile_one(float *y, const float *x, const float *w, int kn) {
    v8 acc = { 0 };
    int k = 0;
    for (; k + 8 <= kn; k += 8) acc += load8(x + k) * load8(w + k);
    float s = sum8(&acc);
    for (; k < kn; k++) s += x[k] * w[k];
    *y += s;
}

typedef struct matmul_job {
    float *y;
    const float *x, *w, *b;
    int M, N, K;
    int ldy, ldx, ldw;           /* row strides */
    int n_mb, n_nb;              /* task grid: row blocks x column blocks */
    void (*block)(const struct matmul_job *j, int m0, int m1, int n0, int n1);
} matmul_job;

/* One task: rows [m0, m1) of y and columns [n0, n1). */
static inline __attribute__((always_inline)) void
matmul_block(const matmul_job *j, int m0, int m1, int n0, int n1) {
    const int K = j->K, ldy = j->ldy, ldx = j->ldx, ldw = j->ldw;
    for (int m = m0; m < m1; m++)
        for (int n = n0; n < n1; n++) j->y[(size_t)m * ldy + n] = j->b ? j->b[n] : 0.0f;
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kn = K - k0 < KC ? K - k0 : KC;
        for (int n = n0; n < n1; n += NR) {
            int nr = n1 - n < NR ? n1 - n : NR;
            const float *w = j->w + (size_t)n * ldw + k0;
            for (int m = m0; m < m1; m += MR) {
                int mr = m1 - m < MR ? m1 - m : MR;
                const float *x = j->x + (size_t)m * ldx + k0;
                float *y = j->y + (size_t)m * ldy + n;
                if (mr == MR && nr == NR) {
                    tile_full(y, ldy, x, ldx, w, ldw, kn);
                    continue;
                }
                for (int r = 0; r < mr; r++)
                    for (int c = 0; c < nr; c++)
                        tile_one(y + (size_t)r * ldy + c, x + (size_t)r * ldx, w + (size_t)c * ldw, kn);
            }
        }
    }
}

/* The same block compiled twice: for AVX2 + FMA (picked at run time where the CPU has them)
 * and for the baseline instruction set. */
#if defined(__x86_64__) && defined(__GNUC__)
#define PI0_HAVE_AVX2_CLONE 1
__attribute__((target("avx2,fma"))) static void matmul_block_avx2(const matmul_job *j, int m0,
                                                                   int m1, int n0, int n1) {
    matmul_block(j, m0, m1, n0, n1);
}
#endif
static void matmul_block_plain(const matmul_job *j, int m0, int m1, int n0, int n1) {
    matmul_block(j, m0, m1, n0, n1);
}

static void matmul_task(void *ctx, int task) {
    const matmul_job *j = ctx;
    int mb = task / j->n_nb, nb = task % j->n_nb;
    int m0 = mb * MB, n0 = nb * NB;
    int m1 = m0 + MB < j->M ? m0 + MB : j->M;
    int n1 = n0 + NB < j->N ? n0 + NB : j->N;
    j->block(j, m0, m1, n0, n1);
}

void pi0_matmul_strided_cpu(float *y, int ldy, const float *x, int ldx, const float *w, int ldw,
                            const float *b, int M, int N, int K, pi0_pool *pool) {
    if (M <= 0 || N <= 0) return;
    matmul_job j = { .y = y, .x = x, .w = w, .b = b, .M = M, .N = N, .K = K,
                     .ldy = ldy, .ldx = ldx, .ldw = ldw,
                     .n_mb = (M + MB - 1) / MB, .n_nb = (N + NB - 1) / NB,
                     .block = matmul_block_plain };
#ifdef PI0_HAVE_AVX2_CLONE
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) j.block = matmul_block_avx2;
#endif
    pi0_pool_run(pool, j.n_mb * j.n_nb, matmul_task, &j);
}

void pi0_matmul_cpu(float *y, const float *x, const float *w, const float *b, int M, int N, int K,
                    pi0_pool *pool) {
    pi0_matmul_strided_cpu(y, N, x, K, w, K, b, M, N, K, pool);
}
