/* test_ops.cu - every CUDA op against its CPU reference (src/ops/*_cpu.c), one table row per op
 * and shape: the real shapes (Gemma head dim 256, SigLIP 16 heads of 72, batch 1 and 64 row
 * counts) and awkward ones (one row, odd widths). Fresh random inputs each run, rounded to bf16
 * before either side sees them; the seed is printed (--seed N replays it).
 * Limits: every op here rounds its result to bf16 exactly once and computes in fp32 before
 * that; one round-to-nearest bf16 rounding is <= 2^-9 relative per element, hence <= 2^-9 in
 * relative L2. The limit 2^-8 leaves a factor 2 for fp32 summation order and transcendental
 * functions (both ~1e-6), never for a wrong formula (wrong pairing, mask or gain: > 1e-1).
 * Usage: test_ops [--seed N] [name-substring] | test_ops --bench (timings: the model's GEMM
 * shapes, heuristic's first algorithm vs autotuned plan; fused vs unfused SigLIP and prefix
 * attention). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/gemm.h"
#include "cuda/glue.h"
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
    /* a[2]: fp32 output (the final norm of the denoising step), only fp32 rounding then */
    int y_f32 = a[2];
    bf16 *dx = dev_bf16(x, n);
    void *dy = y_f32 ? (void *)dev_f32(NULL, n) : (void *)dev_bf16(x, n);
    float *ds = dev_f32(s, dim);
    pi0_error err;
    pi0_status st = pi0_rmsnorm_cuda(dy, y_f32, dx, ds, rows, dim, 1e-6f, 0, &err);
    cudaDeviceSynchronize();
    float *got = (float *)malloc(n * sizeof(float));
    if (y_f32) cudaMemcpy(got, dy, n * sizeof(float), cudaMemcpyDeviceToHost);
    else { free(got); got = get_bf16(dy, n, dim, dim); }
    verdict(name, got, ref, n, y_f32 ? 1e-5 : ONE_ROUNDING, st ? err.msg : NULL);
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

/* Fused SigLIP attention (attention_vit.cu) vs pi0_attention_cpu per image, with a[0] images,
 * a[1] tokens, a[2] heads, a[3] head dim; the output is poisoned (NaN) first, so an unwritten
 * element fails. Limit: two bf16 roundings in series, of the probabilities before P·V and of
 * the output. The first perturbs each p_j by <= 2^-9 relative, independently, so the error
 * sum_j dp_j v_j has an RMS <= 2^-9 * sqrt(sum_j p_j^2 v_j^2), which is the RMS of
 * o = sum_j p_j v_j for zero-mean random v: <= 2^-9 relative; the second adds <= 2^-9. Sum
 * 2^-8, times the factor 2 of ONE_ROUNDING for fp32 order and expf. Logits have an RMS of
 * about 1.5 here, so the softmax is far from uniform and a wrong scale or a wrong head
 * (> 1e-1) cannot pass. */
static void run_attention_vit(const char *name, const int *a) {
    int n_img = a[0], N = a[1], H = a[2], Dh = a[3], W = H * Dh;
    size_t n_qkv = (size_t)n_img * N * 3 * W, n_o = (size_t)n_img * N * W;
    float *qkv = host_rand(n_qkv, 1.0f);
    /* q, k uniform in [-c, c): logit RMS = sqrt(Dh) * c^2/3 * scale = c^2 / 3, ~1.5 here */
    float qk_scale = 2.1f;
    for (size_t r = 0; r < (size_t)n_img * N; r++)
        for (int c = 0; c < 2 * W; c++)
            qkv[r * 3 * W + c] = pi0_round_bf16(qkv[r * 3 * W + c] * qk_scale);
    float scale = 1.0f / sqrtf((float)Dh);
    float *ref = (float *)malloc(n_o * 4), *q = (float *)malloc((size_t)N * W * 4),
          *k = (float *)malloc((size_t)N * W * 4), *v = (float *)malloc((size_t)N * W * 4),
          *probs = (float *)malloc((size_t)H * N * N * 4);
    for (int i = 0; i < n_img; i++) {
        for (int r = 0; r < N; r++) {
            const float *row = qkv + ((size_t)i * N + r) * 3 * W;
            memcpy(q + (size_t)r * W, row, W * 4);
            memcpy(k + (size_t)r * W, row + W, W * 4);
            memcpy(v + (size_t)r * W, row + 2 * W, W * 4);
        }
        pi0_attention_cpu(ref + (size_t)i * N * W, q, k, v, NULL, probs, N, N, H, H, Dh, scale,
                          NULL);
    }
    bf16 *dqkv = dev_bf16(qkv, n_qkv), *dout = NULL;
    cudaMalloc(&dout, n_o * 2);
    cudaMemset(dout, 0xff, n_o * 2); /* bf16 0xffff is a NaN */
    pi0_error err;
    pi0_status st = pi0_attention_vit_cuda(dout, dqkv, n_img, N, H, Dh, scale, 0, &err);
    cudaError_t ce = cudaDeviceSynchronize();
    if (st == PI0_OK && ce != cudaSuccess) {
        snprintf(err.msg, sizeof err.msg, "%s", cudaGetErrorString(ce));
        st = PI0_ERR_DEVICE;
    }
    float *got = get_bf16(dout, n_o, W, W);
    verdict(name, got, ref, n_o, 2 * ONE_ROUNDING, st ? err.msg : NULL);
    free(qkv); free(ref); free(q); free(k); free(v); free(probs); free(got);
    cudaFree(dqkv); cudaFree(dout);
}

/* Fused prefix attention (attention_prefix.cu) vs pi0_attention_cpu per batch row: H = 8
 * query heads of a[3] dims over one key/value head, a[0] batch rows, a[1] tokens (R = 8*a[1]
 * query rows), a[2] keys; the pad pattern of batch row b is a[4 + b] (rows past a[5]: random).
 * The cache rows after the Tk keys are NaN and the pad row goes on past Tk, as in the model
 * (the suffix's rows follow): a kernel that reads past Tk fails. The output is poisoned (NaN),
 * with one block of rows past its end that must stay so.
 * Limits: the two bf16 roundings of run_attention_vit (p before P·V, o), so the same rel_l2
 * limit 2 * ONE_ROUNDING; the online softmax rounds p relative to the running max, before
 * the division by the sum, still <= 2^-9 relative per p. Per element too: the error of
 * o = sum_j p_j v_j from rounding the p_j is <= 2^-9 * sum_j p_j |v_j| <= 2^-9 max|v|, the
 * output rounding adds <= 2^-9 |o| <= 2^-9 max|v|: max abs error <= 2^-8 max|v|, limit
 * 2^-7 max|v| (the factor 2 for fp32 order, exp and the rescaling of o by exp(m_old - m)).
 * Logits: q uniform in [-4.5, 4.5) / sqrt(Dh) (the model's pre-scaling), k in [-1, 1), RMS
 * sqrt(Dh) * (4.5 / sqrt(Dh)) * 1 / 3 = 1.5, so the softmax is far from uniform: o has an RMS
 * of about 0.58 * sqrt(e^(1.5^2) / Tk), and one stray key (padded, or past Tk) moves a row by
 * about 0.58 / Tk, 0.32 / sqrt(Tk) relative: 4.5e-2 at Tk = 52, 2.8e-2 at 128, over the limit;
 * past Tk in an all-masked row, or a wrong pairing or mask, by far more. */
enum { PAD_RAND, PAD_NONE, PAD_TAIL, PAD_MID, PAD_ALL, PAD_LEAD };

static void run_attention_prefix(const char *name, const int *a) {
    int B = a[0], T = a[1], Tk = a[2], Dh = a[3], H = 8, R = T * H;
    if (!pi0_attention_prefix_supported(Dh)) {
        printf("SKIP %-36s head dim %d not supported on this device\n", name, Dh);
        return;
    }
    int pad_ld = Tk + 5, kv_rows = Tk + 3;
    long long q_stride = (long long)R * Dh, kv_stride = (long long)kv_rows * Dh;
    size_t n_q = (size_t)B * R * Dh, n_kv = (size_t)B * Tk * Dh, tail = (size_t)64 * Dh;
    float *q = host_rand(n_q, 4.5f / sqrtf((float)Dh)), *k = host_rand(n_kv, 1.0f),
          *v = host_rand(n_kv, 1.0f), *ref = (float *)malloc(n_q * 4);
    uint8_t *pad = (uint8_t *)malloc((size_t)B * pad_ld), *mask = (uint8_t *)malloc((size_t)T * Tk);
    float *probs = (float *)malloc((size_t)H * T * Tk * 4);
    for (int b = 0; b < B; b++) {
        int kind = b < 2 ? a[4 + b] : PAD_RAND;
        for (int j = 0; j < pad_ld; j++) {
            int valid = (rng_next() % 5) != 0; /* PAD_RAND, and every pad byte past Tk */
            if (j < Tk && kind == PAD_NONE) valid = 1;
            if (j < Tk && kind == PAD_TAIL) valid = j < Tk - Tk / 3;
            if (j < Tk && kind == PAD_MID) valid = j <= Tk / 4 || j >= Tk / 2;
            if (j < Tk && kind == PAD_ALL) valid = 0;
            if (j < Tk && kind == PAD_LEAD) valid = j >= Tk / 2;
            pad[(size_t)b * pad_ld + j] = (uint8_t)valid;
        }
        for (int i = 0; i < T; i++) memcpy(mask + (size_t)i * Tk, pad + (size_t)b * pad_ld, Tk);
        pi0_attention_cpu(ref + (size_t)b * q_stride, q + (size_t)b * q_stride,
                          k + (size_t)b * Tk * Dh, v + (size_t)b * Tk * Dh, mask, probs, T, Tk,
                          H, 1, Dh, 1.0f, NULL);
    }
    /* the cache: Tk rows of each batch row, then kv_rows - Tk NaN rows (bf16 0xffff) */
    float *kc = (float *)malloc((size_t)B * kv_stride * 4),
          *vc = (float *)malloc((size_t)B * kv_stride * 4);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < kv_rows; j++)
            for (int d = 0; d < Dh; d++) {
                size_t i = ((size_t)b * kv_rows + j) * Dh + d, s = ((size_t)b * Tk + j) * Dh + d;
                kc[i] = j < Tk ? k[s] : NAN;
                vc[i] = j < Tk ? v[s] : NAN;
            }
    bf16 *dq = dev_bf16(q, n_q), *dk = dev_bf16(kc, (size_t)B * kv_stride),
         *dv = dev_bf16(vc, (size_t)B * kv_stride), *dout = NULL;
    uint8_t *dpad = NULL;
    cudaMalloc(&dpad, (size_t)B * pad_ld);
    cudaMemcpy(dpad, pad, (size_t)B * pad_ld, cudaMemcpyHostToDevice);
    cudaMalloc(&dout, (n_q + tail) * 2);
    cudaMemset(dout, 0xff, (n_q + tail) * 2); /* bf16 0xffff is a NaN */
    pi0_error err;
    pi0_status st = pi0_attention_prefix_cuda(dout, dq, dk, dv, dpad, B, R, Tk, Dh, q_stride,
                                              kv_stride, pad_ld, 0, &err);
    cudaError_t ce = cudaDeviceSynchronize();
    if (st == PI0_OK && ce != cudaSuccess) {
        snprintf(err.msg, sizeof err.msg, "%s", cudaGetErrorString(ce));
        st = PI0_ERR_DEVICE;
    }
    float *got = get_bf16(dout, n_q + tail, Dh, Dh);
    double max_v = 0, worst = 0;
    for (size_t i = 0; i < n_kv; i++) max_v = fmax(max_v, fabs(v[i]));
    for (size_t i = 0; i < n_q; i++) worst = fmax(worst, fabs((double)got[i] - ref[i]));
    int tail_written = 0;
    for (size_t i = n_q; i < n_q + tail; i++) tail_written |= !isnan(got[i]);
    char msg[200];
    const char *fail = st ? err.msg : NULL;
    if (!fail && tail_written) fail = "wrote past the last query row";
    if (!fail && worst > 0x1p-7 * max_v) {
        snprintf(msg, sizeof msg, "max abs error %.2e > 2^-7 * max|v| = %.2e", worst,
                 0x1p-7 * max_v);
        fail = msg;
    }
    verdict(name, got, ref, n_q, 2 * ONE_ROUNDING, fail);
    free(q); free(k); free(v); free(ref); free(pad); free(mask); free(probs); free(kc); free(vc);
    free(got);
    cudaFree(dq); cudaFree(dk); cudaFree(dv); cudaFree(dout); cudaFree(dpad);
}

/* ---- --bench: the heuristic's first algorithm vs the autotuned plan, SigLIP attention ------ */

static __global__ void fill_kernel(bf16 *p, size_t n, uint32_t seed, float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15; h *= 0x2c1b3c6du; h ^= h >> 12;
        p[i] = __float2bfloat16(((h & 0xffffff) * 0x1p-24f * 2.0f - 1.0f) * scale);
    }
}

/* Median time (ms) of n_iter single calls of a through g, the plan made by a first call; the
 * L2 cache is overwritten before each (the model reads every layer's weights from memory). */
static float gemm_median_ms(pi0_gemm_ctx *g, const pi0_gemm_args *a, int n_iter) {
    pi0_error err;
    if (pi0_gemm(g, a, 0, &err) != PI0_OK) {
        printf("  gemm failed: %s\n", err.msg);
        return -1.0f;
    }
    static void *flush = NULL;
    const size_t flush_bytes = 64 << 20;
    if (!flush) cudaMalloc(&flush, flush_bytes);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float t[64];
    for (int i = 0; i < n_iter && i < 64; i++) {
        cudaMemsetAsync(flush, i, flush_bytes, 0);
        cudaEventRecord(e0, 0);
        pi0_gemm(g, a, 0, &err);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&t[i], e0, e1);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    for (int i = 1; i < n_iter; i++)  /* insertion sort, n_iter is small */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { float x = t[j]; t[j] = t[j - 1]; t[j - 1] = x; }
    return t[n_iter / 2];
}

/* The model's GEMM shapes (gemma_block and stage_vision): prefill at P = 532, 788 and batch 64
 * x 532; SigLIP at 2, 3 and 128 images of 256 tokens. beta 1 marks the residual products. */
static int bench_gemm(void) {
    static const struct { const char *what; int N, K, epi; float beta; } shapes[] = {
        { "gemma qkv", 2560, 2048, PI0_EPI_NONE, 0.0f },
        { "gemma o (+resid)", 2048, 2048, PI0_EPI_NONE, 1.0f },
        { "gemma gate|up", 32768, 2048, PI0_EPI_NONE, 0.0f },
        { "gemma down (+resid)", 2048, 16384, PI0_EPI_NONE, 1.0f },
        { "siglip qkv+bias", 3456, 1152, PI0_EPI_BIAS, 0.0f },
        { "siglip o+bias (+resid)", 1152, 1152, PI0_EPI_BIAS, 1.0f },
        { "siglip fc1+gelu", 4304, 1152, PI0_EPI_GELU_BIAS, 0.0f },
        { "siglip fc2+bias (+resid)", 1152, 4304, PI0_EPI_BIAS, 1.0f },
    };
    static const int m_gemma[] = { 532, 788, 64 * 532 }, m_vit[] = { 512, 768, 128 * 256 };
    pi0_gemm_ctx *g_heur = NULL, *g_tuned = NULL;
    pi0_error err;
    if (pi0_gemm_ctx_create(&g_heur, 64 << 20, &err) != PI0_OK ||
        pi0_gemm_ctx_create(&g_tuned, 64 << 20, &err) != PI0_OK) {
        printf("FAIL gemm context: %s\n", err.msg);
        return 1;
    }
    pi0_gemm_ctx_set_autotune(g_heur, 0);
    printf("| shape | M | N | K | heuristic us | TFLOP/s | tuned us | TFLOP/s | gain |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        for (int j = 0; j < 3; j++) {
            int M = i < 4 ? m_gemma[j] : m_vit[j], N = shapes[i].N, K = shapes[i].K;
            bf16 *x = NULL, *w = NULL, *y = NULL, *b = NULL;
            cudaMalloc(&x, (size_t)M * K * 2);
            cudaMalloc(&w, (size_t)N * K * 2);
            cudaMalloc(&y, (size_t)M * N * 2);
            cudaMalloc(&b, (size_t)N * 2);
            fill_kernel<<<1024, 256>>>(x, (size_t)M * K, 1, 1.0f);
            fill_kernel<<<1024, 256>>>(w, (size_t)N * K, 2, 1.0f / sqrtf((float)K));
            fill_kernel<<<1024, 256>>>(y, (size_t)M * N, 3, 0.1f);
            fill_kernel<<<1024, 256>>>(b, (size_t)N, 4, 0.1f);
            pi0_gemm_args a;
            memset(&a, 0, sizeof a);
            a.M = M; a.N = N; a.K = K; a.batch = 1;
            a.tx = a.tw = a.ty = CUDA_R_16BF;
            a.x = x; a.ldx = K; a.w = w; a.ldw = K; a.y = y; a.ldy = N;
            a.epilogue = shapes[i].epi; a.bias = b; a.alpha = 1.0f; a.beta = shapes[i].beta;
            int iters = (double)M * N * K > 1e12 ? 9 : 31;
            float th = gemm_median_ms(g_heur, &a, iters), tt = gemm_median_ms(g_tuned, &a, iters);
            double tf = 2.0 * M * N * K * 1e-9;
            printf("| %s | %d | %d | %d | %.1f | %.0f | %.1f | %.0f | %.2fx |\n", shapes[i].what, M,
                   N, K, th * 1e3, tf / th, tt * 1e3, tf / tt, th / tt);
            fflush(stdout);
            cudaFree(x); cudaFree(w); cudaFree(y); cudaFree(b);
        }
    }
    cudaError_t e = cudaDeviceSynchronize();
    pi0_gemm_ctx_destroy(g_heur);
    pi0_gemm_ctx_destroy(g_tuned);
    if (e != cudaSuccess) {
        printf("FAIL bench: %s\n", cudaGetErrorString(e));
        return 1;
    }
    return 0;
}

/* Median time (ms) of n_iter replays of a captured graph: launch gaps stay out. */
static float graph_median_ms(cudaGraphExec_t ge, cudaStream_t s, int n_iter) {
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float t[64];
    cudaGraphLaunch(ge, s);
    for (int i = 0; i < n_iter && i < 64; i++) {
        cudaEventRecord(e0, s);
        cudaGraphLaunch(ge, s);
        cudaEventRecord(e1, s);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&t[i], e0, e1);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    for (int i = 1; i < n_iter; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { float x = t[j]; t[j] = t[j - 1]; t[j - 1] = x; }
    return t[n_iter / 2];
}

/* A bench row's two variants (0: fused, 1: the launches it replaces) as graph executables:
 * each is queued once eagerly (its GEMMs plan outside any capture), then captured. */
typedef pi0_status (*bench_enqueue)(int variant, const void *ctx, cudaStream_t s, pi0_error *err);

static int capture_variants(bench_enqueue enqueue, const void *ctx, cudaStream_t s,
                            cudaGraphExec_t ge[2], const char *what) {
    pi0_error err;
    for (int variant = 0; variant < 2; variant++) {
        for (int pass = 0; pass < 2; pass++) {
            cudaGraph_t gr = NULL;
            if (pass) cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
            pi0_status st = enqueue(variant, ctx, s, &err);
            if (pass) cudaStreamEndCapture(s, &gr);
            if (st != PI0_OK) {
                printf("FAIL bench %s: %s\n", what, err.msg);
                if (gr) cudaGraphDestroy(gr);
                return 1;
            }
            if (pass) {
                cudaGraphInstantiate(&ge[variant], gr, 0);
                cudaGraphDestroy(gr);
            }
            cudaStreamSynchronize(s);
        }
    }
    return 0;
}

typedef struct {
    pi0_gemm_ctx *g;
    bf16 *o, *qkv, *q, *k, *v;
    float *scores;
    int n_img, N, H, Dh, ldN;
    float scale;
    pi0_gemm_args sc, pv;
} vit_bench;

static pi0_status vit_bench_enqueue(int variant, const void *ctx, cudaStream_t s,
                                    pi0_error *err) {
    const vit_bench *b = (const vit_bench *)ctx;
    if (variant == 0)
        return pi0_attention_vit_cuda(b->o, b->qkv, b->n_img, b->N, b->H, b->Dh, b->scale, s, err);
    pi0_status st = pi0_heads_split_cuda(b->q, b->k, b->v, b->qkv, b->n_img, b->N, b->H, b->Dh,
                                         s, err);
    if (!st) st = pi0_gemm(b->g, &b->sc, s, err);
    if (!st) st = pi0_softmax_cuda(b->scores, b->n_img * b->H, b->N, b->N, b->ldN,
                                   PI0_MASK_NONE, NULL, 0, 0, 1, s, err);
    if (!st) st = pi0_gemm(b->g, &b->pv, s, err);
    if (!st) st = pi0_heads_merge_cuda(b->o, b->q, b->n_img, b->N, b->H, b->Dh, s, err);
    return st;
}

/* SigLIP attention of n_img images, 16 heads of 72: the fused kernel against the five launches
 * it replaced (heads split, scores GEMM, softmax, P·V GEMM, heads merge), each as a graph. */
static int bench_attention_vit(void) {
    const int N = 256, H = 16, Dh = 72, W = H * Dh, ldN = 256;
    const int imgs[] = { 2, 3, 128 };
    pi0_gemm_ctx *g = NULL;
    pi0_error err;
    if (pi0_gemm_ctx_create(&g, 64 << 20, &err) != PI0_OK) return 1;
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    printf("\n| SigLIP attention | images | fused us | 5 launches us | gain |\n|---|---:|---:|---:|---:|\n");
    for (int c = 0; c < 3; c++) {
        int n_img = imgs[c];
        size_t rows = (size_t)n_img * N;
        bf16 *qkv, *o, *q, *k, *v;
        float *scores;
        cudaMalloc(&qkv, rows * 3 * W * 2);
        cudaMalloc(&o, rows * W * 2);
        cudaMalloc(&q, rows * W * 2); cudaMalloc(&k, rows * W * 2); cudaMalloc(&v, rows * W * 2);
        cudaMalloc(&scores, (size_t)n_img * H * N * ldN * 4);
        fill_kernel<<<1024, 256>>>(qkv, rows * 3 * W, 5, 2.0f);
        cudaDeviceSynchronize();
        long long sh = (long long)N * Dh, sS = (long long)N * ldN;
        vit_bench vb = { g, o, qkv, q, k, v, scores, n_img, N, H, Dh, ldN,
                         1.0f / sqrtf((float)Dh), {}, {} };
        pi0_gemm_args *sc = &vb.sc, *pv = &vb.pv;
        sc->M = N; sc->N = N; sc->K = Dh; sc->batch = n_img * H;
        sc->tx = sc->tw = CUDA_R_16BF; sc->ty = CUDA_R_32F;
        sc->x = q; sc->ldx = Dh; sc->sx = sh; sc->w = k; sc->ldw = Dh; sc->sw = sh;
        sc->y = scores; sc->ldy = ldN; sc->sy = sS; sc->alpha = vb.scale;
        pv->M = N; pv->N = Dh; pv->K = N; pv->batch = n_img * H;
        pv->tx = pv->tw = pv->ty = CUDA_R_16BF;
        pv->x = scores; pv->ldx = 2 * ldN; pv->sx = 2 * sS; pv->w = v; pv->ldw = Dh; pv->sw = sh;
        pv->w_kn = 1; pv->y = q; pv->ldy = Dh; pv->sy = sh; pv->alpha = 1.0f;
        cudaGraphExec_t ge[2] = { NULL, NULL };
        if (capture_variants(vit_bench_enqueue, &vb, s, ge, "attention")) return 1;
        float tf = graph_median_ms(ge[0], s, 31), tu = graph_median_ms(ge[1], s, 31);
        printf("| 16 heads x 72 | %d | %.1f | %.1f | %.2fx |\n", n_img, tf * 1e3, tu * 1e3, tu / tf);
        fflush(stdout);
        cudaGraphExecDestroy(ge[0]);
        cudaGraphExecDestroy(ge[1]);
        cudaFree(qkv); cudaFree(o); cudaFree(q); cudaFree(k); cudaFree(v); cudaFree(scores);
    }
    cudaError_t e = cudaDeviceSynchronize();
    cudaStreamDestroy(s);
    pi0_gemm_ctx_destroy(g);
    if (e != cudaSuccess) {
        printf("FAIL bench attention: %s\n", cudaGetErrorString(e));
        return 1;
    }
    return 0;
}

typedef struct {
    pi0_gemm_ctx *g;
    bf16 *o, *q, *k, *v;
    float *scores;
    const uint8_t *pad;
    int B, R, P, H, Dh, ldS;
    long long sq, kv_stride;
    pi0_gemm_args sc, pv;
} prefix_bench;

static pi0_status prefix_bench_enqueue(int variant, const void *ctx, cudaStream_t s,
                                       pi0_error *err) {
    const prefix_bench *b = (const prefix_bench *)ctx;
    if (variant == 0)
        return pi0_attention_prefix_cuda(b->o, b->q, b->k, b->v, b->pad, b->B, b->R, b->P, b->Dh,
                                         b->sq, b->kv_stride, b->P, s, err);
    pi0_status st = pi0_gemm(b->g, &b->sc, s, err);
    if (!st) st = pi0_softmax_cuda(b->scores, b->B, b->R, b->P, b->ldS, PI0_MASK_PREFIX, b->pad,
                                   b->P, b->P, b->H, s, err);
    if (!st) st = pi0_gemm(b->g, &b->pv, s, err);
    return st;
}

/* Gemma prefix attention (8 heads of 256 over one key/value head) at P = 532 and 788 keys:
 * the fused kernel against the three launches it replaces (scores GEMM, softmax, P·V GEMM, as
 * gemma_block issues them), each as a graph. Every key valid: the mask costs the same either
 * way. */
static int bench_attention_prefix(void) {
    const int H = 8, Dh = 256;
    const int shapes[][2] = { { 1, 532 }, { 1, 788 }, { 4, 788 } }; /* B, P */
    if (!pi0_attention_prefix_supported(Dh)) {
        printf("\nSKIP prefix attention: not supported on this device\n");
        return 0;
    }
    pi0_gemm_ctx *g = NULL;
    pi0_error err;
    if (pi0_gemm_ctx_create(&g, 64 << 20, &err) != PI0_OK) return 1;
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    printf("\n| prefix attention | B | P | fused us | TFLOP/s | 3 launches us | gain |\n"
           "|---|---:|---:|---:|---:|---:|---:|\n");
    for (int c = 0; c < 3; c++) {
        int B = shapes[c][0], P = shapes[c][1], R = P * H, kv_rows = P + 11;
        int ldS = (kv_rows + 7) / 8 * 8; /* gemma_block's: room for the suffix's keys */
        long long sq = (long long)R * Dh, kv_stride = (long long)kv_rows * Dh,
                  sS = (long long)R * ldS;
        bf16 *q, *k, *v, *o;
        float *scores;
        uint8_t *pad;
        cudaMalloc(&q, (size_t)B * sq * 2);
        cudaMalloc(&o, (size_t)B * sq * 2);
        cudaMalloc(&k, (size_t)B * kv_stride * 2);
        cudaMalloc(&v, (size_t)B * kv_stride * 2);
        cudaMalloc(&scores, (size_t)B * sS * 4);
        cudaMalloc(&pad, (size_t)B * P);
        fill_kernel<<<1024, 256>>>(q, (size_t)B * sq, 6, 0.28f);
        fill_kernel<<<1024, 256>>>(k, (size_t)B * kv_stride, 7, 1.0f);
        fill_kernel<<<1024, 256>>>(v, (size_t)B * kv_stride, 8, 1.0f);
        cudaMemset(pad, 1, (size_t)B * P);
        cudaDeviceSynchronize();
        prefix_bench pb = { g, o, q, k, v, scores, pad, B, R, P, H, Dh, ldS, sq, kv_stride,
                            {}, {} };
        pi0_gemm_args *sc = &pb.sc, *pv = &pb.pv;
        sc->M = R; sc->N = P; sc->K = Dh; sc->batch = B;
        sc->tx = sc->tw = CUDA_R_16BF; sc->ty = CUDA_R_32F;
        sc->x = q; sc->ldx = Dh; sc->sx = sq; sc->w = k; sc->ldw = Dh; sc->sw = kv_stride;
        sc->y = scores; sc->ldy = ldS; sc->sy = sS; sc->alpha = 1.0f;
        pv->M = R; pv->N = Dh; pv->K = P; pv->batch = B;
        pv->tx = pv->tw = pv->ty = CUDA_R_16BF;
        pv->x = scores; pv->ldx = 2 * ldS; pv->sx = 2 * sS; pv->w = v; pv->ldw = Dh;
        pv->sw = kv_stride; pv->w_kn = 1; pv->y = o; pv->ldy = Dh; pv->sy = sq; pv->alpha = 1.0f;
        cudaGraphExec_t ge[2] = { NULL, NULL };
        if (capture_variants(prefix_bench_enqueue, &pb, s, ge, "prefix attention")) return 1;
        float tf = graph_median_ms(ge[0], s, 31), tu = graph_median_ms(ge[1], s, 31);
        double flop = 4.0 * B * R * P * Dh;
        printf("| 8 heads x 256, 1 kv head | %d | %d | %.1f | %.0f | %.1f | %.2fx |\n", B, P,
               tf * 1e3, flop * 1e-9 / tf, tu * 1e3, tu / tf);
        fflush(stdout);
        cudaGraphExecDestroy(ge[0]);
        cudaGraphExecDestroy(ge[1]);
        cudaFree(q); cudaFree(o); cudaFree(k); cudaFree(v); cudaFree(scores); cudaFree(pad);
    }
    cudaError_t e = cudaDeviceSynchronize();
    cudaStreamDestroy(s);
    pi0_gemm_ctx_destroy(g);
    if (e != cudaSuccess) {
        printf("FAIL bench prefix attention: %s\n", cudaGetErrorString(e));
        return 1;
    }
    return 0;
}

static const op_case cases[] = {
    { "rmsnorm gemma-2b prefix B=1", run_rmsnorm, { 532, 2048 } },
    { "rmsnorm expert suffix B=64", run_rmsnorm, { 64 * 11, 1024 } },
    { "rmsnorm one row odd width", run_rmsnorm, { 1, 1001 } },
    { "rmsnorm expert final fp32 out", run_rmsnorm, { 11, 1024, 1 } },
    { "rmsnorm wide 4096 fp32 out", run_rmsnorm, { 5, 4096, 1 } },
    { "rmsnorm too wide for registers", run_rmsnorm, { 3, 4104 } },
    { "layernorm siglip partial piece", run_layernorm, { 5, 1160 } },
    { "layernorm siglip 3 images", run_layernorm, { 768, 1152 } },
    { "layernorm odd", run_layernorm, { 3, 77 } },
    { "gelu_mul gemma-2b B=1", run_gelu_mul, { 532, 16384 } },
    { "gelu_mul expert B=64", run_gelu_mul, { 704, 4096 } },
    { "gelu_mul odd", run_gelu_mul, { 1, 37 } },
    { "bias+gelu siglip fc1", run_bias_gelu, { 256, 4304 } },
    { "rope gemma Dh=256 B=1", run_rope, { 1, 532, 8, 256 } },
    { "rope gemma Dh=256 B=2", run_rope, { 2, 61, 8, 256 } },
    { "rope tiny Dh=16", run_rope, { 3, 17, 8, 16 } },
    { "rope Dh=20 (2-byte loads)", run_rope, { 2, 9, 4, 20 } },
    { "softmax siglip 16x72 heads", run_softmax, { 2 * 16, 256, 256, 0, PI0_MASK_NONE } },
    { "softmax prefix B=2", run_softmax, { 2, 8 * 40, 816, 816, PI0_MASK_PREFIX } },
    { "softmax suffix B=1", run_softmax, { 1, 8 * 11, 543, 532, PI0_MASK_SUFFIX } },
    { "softmax suffix B=64 odd", run_softmax, { 64, 8 * 3, 23, 21, PI0_MASK_SUFFIX } },
    { "gemm qkv B=1", run_gemm, { 532, 2560, 2048, PI0_EPI_NONE } },
    { "gemm expert gate|up M=11", run_gemm, { 11, 8192, 1024, PI0_EPI_NONE } },
    { "gemm siglip qkv + bias", run_gemm, { 256, 3456, 1152, PI0_EPI_BIAS } },
    { "gemm siglip fc1 gelu+bias", run_gemm, { 256, 4304, 1152, PI0_EPI_GELU_BIAS } },
    { "gemm odd", run_gemm, { 3, 24, 40, PI0_EPI_BIAS } },
    { "attention_vit siglip 2 images", run_attention_vit, { 2, 256, 16, 72 } },
    { "attention_vit siglip 3 images", run_attention_vit, { 3, 256, 16, 72 } },
    { "attention_vit tiny Dh=16", run_attention_vit, { 1, 256, 4, 16 } },
    { "attention_vit N=64 Dh=8", run_attention_vit, { 2, 64, 3, 8 } },
    { "attention_vit N=128 Dh=40", run_attention_vit, { 1, 128, 2, 40 } },
    /* prefix attention: { B, tokens T (R = 8T rows), keys Tk, Dh, pad of row 0, of row 1 } */
    { "attention_prefix B=2 Tk=52", run_attention_prefix, { 2, 20, 52, 256, PAD_TAIL, PAD_MID } },
    { "attention_prefix P=532", run_attention_prefix, { 1, 532, 532, 256, PAD_TAIL } },
    { "attention_prefix P=788", run_attention_prefix, { 1, 788, 788, 256, PAD_MID } },
    { "attention_prefix B=2 Tk=33", run_attention_prefix, { 2, 33, 33, 256, PAD_RAND, PAD_NONE } },
    { "attention_prefix all masked", run_attention_prefix, { 2, 7, 70, 256, PAD_ALL, PAD_TAIL } },
    { "attention_prefix tiny Dh=16", run_attention_prefix, { 3, 41, 41, 16, PAD_TAIL, PAD_ALL } },
    /* the kernel splits the key tiles (32 keys) into two halves, merged at the end: one half
     * all padded (row 0: keys 0-63 of 128), the second half empty (Tk within one tile) */
    { "attention_prefix lead pad", run_attention_prefix, { 2, 9, 128, 256, PAD_LEAD, PAD_TAIL } },
    { "attention_prefix Tk=20", run_attention_prefix, { 2, 5, 20, 256, PAD_MID, PAD_ALL } },
};

int main(int argc, char **argv) {
    uint64_t seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)clock();
    const char *only = NULL;
    int bench_gemm_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--bench"))
            bench_gemm_only = 1;
        else
            only = argv[i];
    }
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("SKIP: no CUDA device\n");
        return 0;
    }
    if (bench_gemm_only)
        return bench_gemm() | bench_attention_vit() | bench_attention_prefix();
    rng_state = seed;
    printf("seed 0x%llx\n", (unsigned long long)seed);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!only || strstr(cases[i].name, only)) cases[i].run(cases[i].name, cases[i].a);
    printf("%s: %d failure(s)\n", n_fail ? "FAIL" : "PASS", n_fail);
    return n_fail ? 1 : 0;
}
