/* test_ops.cu - every CUDA op against its CPU reference (src/ops/*_cpu.c), one table row per op
 * and shape: the real shapes (Gemma head dim 256, SigLIP 16 heads of 72, batch 1 and 64 row
 * counts) and awkward ones (one row, odd widths). Fresh random inputs each run, rounded to bf16
 * before either side sees them; the seed is printed (--seed N replays it).
 * Limits: every op here rounds its result to bf16 exactly once and computes in fp32 before
 * that; one round-to-nearest bf16 rounding is <= 2^-9 relative per element, hence <= 2^-9 in
 * relative L2. The limit 2^-8 leaves a factor 2 for fp32 summation order and transcendental
 * functions (both ~1e-6), never for a wrong formula (wrong pairing, mask or gain: > 1e-1).
 * Usage: test_ops [--seed N] [name-substring]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/gemm.h"
#include "ops/ops_cpu.h"
#include "ops/ops_cuda.h"

static const double ONE_ROUNDING = 0x1p-8;

static uint64_t rng_state;
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rnd(float scale) { /* uniform in [-scale, scale), rounded to bf16 */
    return pi0_round_bf16((float)(((rng_next() >> 11) * 0x1p-53 * 2.0 - 1.0) * scale));
}

static float *host_rand(size_t n, float scale) {
    float *p = (float *)malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = rnd(scale);
    return p;
}

static bf16 *dev_bf16(const float *h, size_t n) {
    uint16_t *t = (uint16_t *)malloc(n * 2);
    for (size_t i = 0; i < n; i++) t[i] = pi0_f32_to_bf16(h[i]);
    void *d = NULL;
    cudaMalloc(&d, n * 2);
    cudaMemcpy(d, t, n * 2, cudaMemcpyHostToDevice);
    free(t);
    return (bf16 *)d;
}

static float *dev_f32(const float *h, size_t n) {
    void *d = NULL;
    cudaMalloc(&d, n * 4);
    if (h) cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice);
    return (float *)d;
}

static float *get_bf16(const void *d, size_t n, size_t ld_elems, size_t row_len) {
    /* rows of row_len bf16 values at stride ld_elems -> dense floats */
    size_t rows = n / row_len;
    uint16_t *t = (uint16_t *)malloc(rows * ld_elems * 2);
    cudaMemcpy(t, d, rows * ld_elems * 2, cudaMemcpyDeviceToHost);
    float *h = (float *)malloc(n * sizeof(float));
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < row_len; c++) h[r * row_len + c] = pi0_bf16_to_f32(t[r * ld_elems + c]);
    free(t);
    return h;
}

static int n_fail = 0;

static void verdict(const char *name, const float *got, const float *ref, size_t n, double tol,
                    const char *status_msg) {
    if (status_msg) {
        printf("FAIL %-36s %s\n", name, status_msg);
        n_fail++;
        return;
    }
    double d2 = 0, r2 = 0, worst = -1;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        d2 += d * d;
        r2 += (double)ref[i] * ref[i];
        if (!(fabs(d) <= worst)) { worst = fabs(d); wi = i; }
    }
    double e = sqrt(d2 / (r2 > 0 ? r2 : 1));
    int ok = e <= tol;
    if (!ok) n_fail++;
    printf("%s %-36s rel_l2 %.1e %s %.1e", ok ? "PASS" : "FAIL", name, e, ok ? "<=" : ">", tol);
    if (!ok) printf("  worst [%zu]: %.4f vs %.4f", wi, got[wi], ref[wi]);
    printf("\n");
}

/* ---- rows of the table -------------------------------------------------------------------- */

typedef struct {
    const char *name;
    void (*run)(const char *name, const int *a);
    int a[6];
} op_case;

static void run_rmsnorm(const char *name, const int *a) {
    int rows = a[0], dim = a[1];
    size_t n = (size_t)rows * dim;
    float *x = host_rand(n, 3.0f), *s = host_rand(dim, 0.5f), *ref = (float *)malloc(n * 4);
    pi0_rmsnorm_cpu(ref, x, s, rows, dim, 1e-6f);
    bf16 *dx = dev_bf16(x, n), *dy = dev_bf16(x, n);
    float *ds = dev_f32(s, dim);
    pi0_error err;
    pi0_status st = pi0_rmsnorm_cuda(dy, 0, dx, ds, rows, dim, 1e-6f, 0, &err);
    cudaDeviceSynchronize();
    float *got = get_bf16(dy, n, dim, dim);
    verdict(name, got, ref, n, ONE_ROUNDING, st ? err.msg : NULL);
    free(x); free(s); free(ref); free(got);
    cudaFree(dx); cudaFree(dy); cudaFree(ds);
}

static void run_layernorm(const char *name, const int *a) {
    int rows = a[0], dim = a[1];
    size_t n = (size_t)rows * dim;
    float *x = host_rand(n, 2.0f), *g = host_rand(dim, 1.5f), *b = host_rand(dim, 0.5f);
    for (size_t i = 0; i < n; i++) x[i] = pi0_round_bf16(x[i] + 0.7f); /* a non-zero mean */
    float *ref = (float *)malloc(n * 4);
    pi0_layernorm_cpu(ref, x, g, b, rows, dim, 1e-6f);
    bf16 *dx = dev_bf16(x, n), *dy = dev_bf16(x, n);
    float *dg = dev_f32(g, dim), *db = dev_f32(b, dim);
    pi0_error err;
    pi0_status st = pi0_layernorm_cuda(dy, dx, dg, db, rows, dim, 1e-6f, 0, &err);
    cudaDeviceSynchronize();
    float *got = get_bf16(dy, n, dim, dim);
    verdict(name, got, ref, n, ONE_ROUNDING, st ? err.msg : NULL);
    free(x); free(g); free(b); free(ref); free(got);
    cudaFree(dx); cudaFree(dy); cudaFree(dg); cudaFree(db);
}

static void run_gelu_mul(const char *name, const int *a) {
    int rows = a[0], F = a[1];
    size_t n = (size_t)rows * 2 * F;
    float *gu = host_rand(n, 4.0f), *gate = (float *)malloc((size_t)rows * F * 4),
          *up = (float *)malloc((size_t)rows * F * 4), *ref = (float *)malloc((size_t)rows * F * 4);
    for (int r = 0; r < rows; r++) {
        memcpy(gate + (size_t)r * F, gu + (size_t)r * 2 * F, F * 4);
        memcpy(up + (size_t)r * F, gu + (size_t)r * 2 * F + F, F * 4);
    }
    pi0_gelu_gate_cpu(ref, gate, up, (size_t)rows * F, NULL);
    bf16 *d = dev_bf16(gu, n);
    pi0_error err;
    pi0_status st = pi0_gelu_mul_cuda(d, rows, F, 2 * F, 0, &err);
    cudaDeviceSynchronize();
    float *got = get_bf16(d, (size_t)rows * F, 2 * F, F);
    verdict(name, got, ref, (size_t)rows * F, ONE_ROUNDING, st ? err.msg : NULL);
    free(gu); free(gate); free(up); free(ref); free(got);
    cudaFree(d);
}

static void run_bias_gelu(const char *name, const int *a) {
    int rows = a[0], n = a[1];
    size_t total = (size_t)rows * n;
    float *y = host_rand(total, 3.0f), *b = host_rand(n, 1.0f), *ref = (float *)malloc(total * 4);
    for (size_t i = 0; i < total; i++) ref[i] = y[i] + b[i % n];
    pi0_gelu_cpu(ref, total, NULL);
    bf16 *dy = dev_bf16(y, total), *dbias = dev_bf16(b, n);
    pi0_error err;
    pi0_status st = pi0_bias_act_cuda(dy, dbias, rows, n, n, 1, 0, &err);
    cudaDeviceSynchronize();
    float *got = get_bf16(dy, total, n, n);
    verdict(name, got, ref, total, ONE_ROUNDING, st ? err.msg : NULL);
    free(y); free(b); free(ref); free(got);
    cudaFree(dy); cudaFree(dbias);
}

/* RoPE of q (H heads) and k from the fused layout, positions with gaps and -1 like a masked
 * prefix; compares q (scaled by 1/sqrt(Dh) on the CPU side too) and the cached k and v. */
static void run_rope(const char *name, const int *a) {
    int B = a[0], T = a[1], H = a[2], Dh = a[3];
    int QKV = (H + 2) * Dh;
    size_t n = (size_t)B * T * QKV;
    float *qkv = host_rand(n, 2.0f);
    int32_t *pos = (int32_t *)malloc((size_t)B * T * 4);
    for (int b = 0; b < B; b++) {
        int p = -1;
        for (int t = 0; t < T; t++) {
            if (rng_next() % 4) p++;
            pos[b * T + t] = p;
        }
    }
    float *ref = (float *)malloc(n * 4);
    memcpy(ref, qkv, n * 4);
    pi0_rope_cpu(ref, pos, B * T, H + 1, Dh, QKV); /* the H query heads and the key head */
    float q_scale = 1.0f / sqrtf((float)Dh);
    size_t nq = (size_t)B * T * H * Dh, nk = (size_t)B * T * Dh;
    float *rq = (float *)malloc(nq * 4), *rk = (float *)malloc(nk * 4), *rv = (float *)malloc(nk * 4);
    for (size_t bt = 0; bt < (size_t)B * T; bt++) {
        for (int i = 0; i < H * Dh; i++) rq[bt * H * Dh + i] = ref[bt * QKV + i] * q_scale;
        for (int i = 0; i < Dh; i++) {
            rk[bt * Dh + i] = ref[bt * QKV + H * Dh + i];
            rv[bt * Dh + i] = qkv[bt * QKV + (H + 1) * Dh + i];
        }
    }
    bf16 *dqkv = dev_bf16(qkv, n), *dq = dev_bf16(rq, nq), *dk = dev_bf16(rk, nk),
         *dv = dev_bf16(rv, nk);
    int32_t *dpos = NULL;
    cudaMalloc(&dpos, (size_t)B * T * 4);
    cudaMemcpy(dpos, pos, (size_t)B * T * 4, cudaMemcpyHostToDevice);
    pi0_error err;
    pi0_status st = pi0_rope_qkv_cuda(dq, dk, dv, dqkv, dpos, T, 1, 0, B, T, H, Dh,
                                      (long long)T * Dh, 0, 0, &err);
    cudaDeviceSynchronize();
    float *gq = get_bf16(dq, nq, Dh, Dh), *gk = get_bf16(dk, nk, Dh, Dh),
          *gv = get_bf16(dv, nk, Dh, Dh);
    char nm[128];
    snprintf(nm, sizeof nm, "%s q", name);
    verdict(nm, gq, rq, nq, ONE_ROUNDING, st ? err.msg : NULL);
    snprintf(nm, sizeof nm, "%s k", name);
    verdict(nm, gk, rk, nk, ONE_ROUNDING, st ? err.msg : NULL);
    snprintf(nm, sizeof nm, "%s v (copy)", name);
    verdict(nm, gv, rv, nk, 0.0, st ? err.msg : NULL);
    free(qkv); free(pos); free(ref); free(rq); free(rk); free(rv); free(gq); free(gk); free(gv);
    cudaFree(dqkv); cudaFree(dq); cudaFree(dk); cudaFree(dv); cudaFree(dpos);
}

/* Masked softmax (a[4] = mask kind) against pi0_softmax_cpu over logits with the masked ones
 * replaced by PI0_MASK_LOGIT; a[0] B, a[1] rows per batch, a[2] keys, a[3] prefix length P. */
static void run_softmax(const char *name, const int *a) {
    int B = a[0], R = a[1], Tk = a[2], P = a[3], mask = a[4], H = 8;
    int ld = (Tk + 7) / 8 * 8;
    size_t n = (size_t)B * R * Tk;
    float *x = host_rand(n, 8.0f), *ref = (float *)malloc(n * 4);
    uint8_t *pad = (uint8_t *)malloc((size_t)B * P + 1);
    for (int i = 0; i < B * P; i++) pad[i] = (rng_next() % 5) != 0;
    for (int b = 0; b < B; b++)
        for (int r = 0; r < R; r++)
            for (int j = 0; j < Tk; j++) {
                size_t i = ((size_t)b * R + r) * Tk + j;
                int t = r / H, valid = 1;
                if (mask == PI0_MASK_PREFIX) valid = pad[b * P + j];
                if (mask == PI0_MASK_SUFFIX) valid = j < P ? pad[b * P + j] : (t > 0 || j == P);
                ref[i] = valid ? x[i] : PI0_MASK_LOGIT;
            }
    pi0_softmax_cpu(ref, B * R, Tk);
    float *hx = (float *)calloc((size_t)B * R * ld, 4);
    for (size_t r = 0; r < (size_t)B * R; r++) memcpy(hx + r * ld, x + r * Tk, Tk * 4);
    float *dx = dev_f32(hx, (size_t)B * R * ld);
    uint8_t *dpad = NULL;
    cudaMalloc(&dpad, (size_t)B * P + 1);
    cudaMemcpy(dpad, pad, (size_t)B * P + 1, cudaMemcpyHostToDevice);
    pi0_error err;
    pi0_status st = pi0_softmax_cuda(dx, B, R, Tk, ld, mask, mask ? dpad : NULL, P, P, H, 0, &err);
    cudaDeviceSynchronize();
    float *got = get_bf16(dx, n, 2 * (size_t)ld, Tk);
    verdict(name, got, ref, n, ONE_ROUNDING, st ? err.msg : NULL);
    free(x); free(ref); free(pad); free(hx); free(got);
    cudaFree(dx); cudaFree(dpad);
}

/* Y = X·W^T (+ bias, + GELU) through gemm.cu with a[3] = epilogue, vs pi0_matmul_cpu. */
static void run_gemm(const char *name, const int *a) {
    static pi0_gemm_ctx *g = NULL;
    pi0_error err;
    if (!g && pi0_gemm_ctx_create(&g, 32 << 20, &err) != PI0_OK) {
        verdict(name, NULL, NULL, 0, 0, err.msg);
        return;
    }
    int M = a[0], N = a[1], K = a[2], epi = a[3];
    float *x = host_rand((size_t)M * K, 1.0f), *w = host_rand((size_t)N * K, 1.0f / sqrtf((float)K)),
          *b = host_rand(N, 0.5f), *ref = (float *)malloc((size_t)M * N * 4);
    pi0_matmul_cpu(ref, x, w, epi ? b : NULL, M, N, K, NULL);
    if (epi == PI0_EPI_GELU_BIAS) pi0_gelu_cpu(ref, (size_t)M * N, NULL);
    bf16 *dx = dev_bf16(x, (size_t)M * K), *dw = dev_bf16(w, (size_t)N * K), *db = dev_bf16(b, N);
    bf16 *dy = dev_bf16(ref, (size_t)M * N);
    pi0_gemm_args ga;
    memset(&ga, 0, sizeof ga);
    ga.M = M; ga.N = N; ga.K = K; ga.batch = 1;
    ga.tx = ga.tw = ga.ty = CUDA_R_16BF;
    ga.x = dx; ga.ldx = K; ga.w = dw; ga.ldw = K; ga.y = dy; ga.ldy = N;
    ga.epilogue = epi; ga.bias = db; ga.alpha = 1.0f;
    pi0_status st = pi0_gemm(g, &ga, 0, &err);
    cudaDeviceSynchronize();
    float *got = get_bf16(dy, (size_t)M * N, N, N);
    verdict(name, got, ref, (size_t)M * N, ONE_ROUNDING, st ? err.msg : NULL);
    free(x); free(w); free(b); free(ref); free(got);
    cudaFree(dx); cudaFree(dw); cudaFree(db); cudaFree(dy);
}

static const op_case cases[] = {
    { "rmsnorm gemma-2b prefix B=1", run_rmsnorm, { 532, 2048 } },
    { "rmsnorm expert suffix B=64", run_rmsnorm, { 64 * 11, 1024 } },
    { "rmsnorm one row odd width", run_rmsnorm, { 1, 1001 } },
    { "layernorm siglip 3 images", run_layernorm, { 768, 1152 } },
    { "layernorm odd", run_layernorm, { 3, 77 } },
    { "gelu_mul gemma-2b B=1", run_gelu_mul, { 532, 16384 } },
    { "gelu_mul expert B=64", run_gelu_mul, { 704, 4096 } },
    { "gelu_mul odd", run_gelu_mul, { 1, 37 } },
    { "bias+gelu siglip fc1", run_bias_gelu, { 256, 4304 } },
    { "rope gemma Dh=256 B=1", run_rope, { 1, 532, 8, 256 } },
    { "rope gemma Dh=256 B=2", run_rope, { 2, 61, 8, 256 } },
    { "rope tiny Dh=16", run_rope, { 3, 17, 8, 16 } },
    { "softmax siglip 16x72 heads", run_softmax, { 2 * 16, 256, 256, 0, PI0_MASK_NONE } },
    { "softmax prefix B=2", run_softmax, { 2, 8 * 40, 816, 816, PI0_MASK_PREFIX } },
    { "softmax suffix B=1", run_softmax, { 1, 8 * 11, 543, 532, PI0_MASK_SUFFIX } },
    { "softmax suffix B=64 odd", run_softmax, { 64, 8 * 3, 23, 21, PI0_MASK_SUFFIX } },
    { "gemm qkv B=1", run_gemm, { 532, 2560, 2048, PI0_EPI_NONE } },
    { "gemm expert gate|up M=11", run_gemm, { 11, 8192, 1024, PI0_EPI_NONE } },
    { "gemm siglip qkv + bias", run_gemm, { 256, 3456, 1152, PI0_EPI_BIAS } },
    { "gemm siglip fc1 gelu+bias", run_gemm, { 256, 4304, 1152, PI0_EPI_GELU_BIAS } },
    { "gemm odd", run_gemm, { 3, 24, 40, PI0_EPI_BIAS } },
};

int main(int argc, char **argv) {
    uint64_t seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)clock();
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else
            only = argv[i];
    }
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("SKIP: no CUDA device\n");
        return 0;
    }
    rng_state = seed;
    printf("seed 0x%llx\n", (unsigned long long)seed);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!only || strstr(cases[i].name, only)) cases[i].run(cases[i].name, cases[i].a);
    printf("%s: %d failure(s)\n", n_fail ? "FAIL" : "PASS", n_fail);
    return n_fail ? 1 : 0;
}
