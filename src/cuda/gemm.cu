/* gemm.cu - cuBLASLt plans and epilogues for the CUDA backend (see gemm.h).
 * Row-major Y = X·W^T is column-major Y^T = W·X^T: cuBLASLt's A is W (transposed unless
 * w_kn), its B is X, its D is Y; m = N, n = M. Bias epilogues then add a vector of length
 * m = N, one value per output feature, as wanted. Plans are kept in a flat array searched
 * linearly: a model has well under a few hundred distinct shapes.
 * Autotuning: the heuristic's first choice is often not the fastest for the model's awkward
 * shapes (M = 532 prefix rows, N = 1152 SigLIP columns: few output tiles for 132 SMs, where
 * another tile shape or a split of K wins), so a new plan asks for up to TUNE_CANDIDATES
 * algorithms and times each on the call's own buffers. All of them accumulate in fp32. */
#include <stdlib.h>

#include "cuda/gemm.h"

/* Build-time default of autotuning (-DPI0_GEMM_AUTOTUNE=0: the heuristic's first choice, for
 * A/B timings of the whole model). */
#ifndef PI0_GEMM_AUTOTUNE
#define PI0_GEMM_AUTOTUNE 1
#endif

enum {
    MAX_PLANS = 1024,
    TUNE_CANDIDATES = 32,       /* algorithms asked of the heuristic, all timed when short ... */
    TUNE_CANDIDATES_LONG = 12,  /* ... the first ones only when one call takes TUNE_LONG_MS+ */
    TUNE_FIRST_REPS = 3,        /* isolated calls per candidate in the first round (1 if long) */
    TUNE_FINALISTS = 3,         /* fastest candidates re-timed against the heuristic's first */
    TUNE_FINAL_REPS = 7,        /* interleaved isolated calls of each finalist */
};
static const float TUNE_LONG_MS = 0.3f;
/* A finalist replaces the heuristic's first choice only when its median is this much lower.
 * Timings are medians of isolated calls (events around each), as the model issues them between
 * other kernels: back-to-back repeats overlap one call's tail with the next call's head and
 * once picked a SigLIP fc1 algorithm that ran 19 % slower in place, and the fastest of many
 * noisy single timings is biased low (it once picked a batch-64 down projection 15 % slower). */
static const float TUNE_MARGIN = 0.97f;

typedef struct {               /* everything that selects descriptors and an algorithm */
    int M, N, K, batch, w_kn, epilogue, tf32, beta_one;
    int ldx, ldw, ldy;
    long long sx, sw, sy;
    int tx, ty;
    int align;                 /* smallest alignment of the pointers, capped at 256 bytes */
} plan_key;

typedef struct {
    plan_key key;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} plan;

struct pi0_gemm_ctx {
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_bytes;
    plan *plans;
    int n_plans;
    int autotune;              /* time the heuristic's candidates (default on) */
    cudaEvent_t ev[2];         /* timing of candidates */
};

static int ptr_align(const void *p) {
    uintptr_t u = (uintptr_t)p;
    int a = 256;
    while (a > 1 && (u % (uintptr_t)a)) a >>= 1;
    return a;
}

static void plan_free(plan *p) {
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
}

static pi0_status layout(cublasLtMatrixLayout_t *l, cudaDataType_t t, int rows, int cols, int ld,
                         int batch, long long stride, pi0_error *err) {
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(l, t, rows, cols, ld));
    if (batch > 1) {
        CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                    sizeof batch));
        CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(
            *l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
    }
    return PI0_OK;
}

static size_t dtype_bytes(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

static float median(float *t, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { float x = t[j]; t[j] = t[j - 1]; t[j - 1] = x; }
    return t[n / 2];
}

/* Time (ms) of one isolated call of algo on a's buffers, or a negative value when it does not
 * run there. The workspace (64 MB in the model, more than an H100's 50 MB L2) is overwritten
 * first: in the model every layer's weights come from device memory, not from the cache that
 * the previous timing run left warm. */
static float algo_call_ms(pi0_gemm_ctx *g, plan *p, const pi0_gemm_args *a,
                          const cublasLtMatmulAlgo_t *algo, cudaStream_t stream) {
    float ms = -1.0f;
    if (cudaMemsetAsync(g->workspace, 0, g->workspace_bytes, stream) != cudaSuccess ||
        cudaEventRecord(g->ev[0], stream) != cudaSuccess ||
        cublasLtMatmul(g->lt, p->op, &a->alpha, a->w, p->la, a->x, p->lb, &a->beta, a->y, p->lc,
                       a->y, p->lc, algo, g->workspace, g->workspace_bytes,
                       stream) != CUBLAS_STATUS_SUCCESS ||
        cudaEventRecord(g->ev[1], stream) != cudaSuccess ||
        cudaEventSynchronize(g->ev[1]) != cudaSuccess ||
        cudaEventElapsedTime(&ms, g->ev[0], g->ev[1]) != cudaSuccess)
        return -1.0f;
    return ms;
}

/* Picks the fastest of the n candidates on a's own buffers, in two rounds: every candidate (the
 * first TUNE_CANDIDATES_LONG when the first choice takes TUNE_LONG_MS or more) gets a warm-up
 * and the median of TUNE_FIRST_REPS isolated calls; then the TUNE_FINALISTS fastest and the
 * heuristic's first choice take turns for TUNE_FINAL_REPS calls each, and the lowest median
 * wins by TUNE_MARGIN or the first choice stays. Plan time only (never inside a capture: the
 * caller checks). When beta != 0 the output is also an input, so it is saved before the timing
 * runs scribble on it and restored after; with beta = 0 the real call that follows overwrites
 * whatever they left. Returns the index of the winner (0 when timing is impossible). */
static int tune(pi0_gemm_ctx *g, plan *p, const pi0_gemm_args *a,
                const cublasLtMatmulHeuristicResult_t *res, int n, cudaStream_t stream) {
    const plan_key *k = &p->key;
    size_t y_bytes = ((size_t)(k->batch - 1) * (size_t)k->sy + (size_t)(k->M - 1) * k->ldy + k->N) *
                     dtype_bytes(a->ty);
    void *saved = NULL;
    if (a->beta != 0.0f) {
        if (cudaMalloc(&saved, y_bytes) != cudaSuccess) {
            cudaGetLastError(); /* out of memory is not sticky: keep the heuristic's choice */
            return 0;
        }
        if (cudaMemcpyAsync(saved, a->y, y_bytes, cudaMemcpyDeviceToDevice, stream) != cudaSuccess) {
            cudaFree(saved);
            return 0;
        }
    }
    float first[TUNE_CANDIDATES];
    int reps = TUNE_FIRST_REPS;
    for (int i = 0; i < n; i++) {
        first[i] = -1.0f;
        if (res[i].state != CUBLAS_STATUS_SUCCESS || res[i].workspaceSize > g->workspace_bytes)
            continue;
        float t[TUNE_FIRST_REPS];
        if (algo_call_ms(g, p, a, &res[i].algo, stream) < 0.0f) continue; /* warm-up */
        int ok = 1;
        for (int r = 0; r < reps && ok; r++) ok = (t[r] = algo_call_ms(g, p, a, &res[i].algo, stream)) >= 0.0f;
        if (!ok) continue;
        first[i] = median(t, reps);
        if (i == 0 && first[0] >= TUNE_LONG_MS) {
            reps = 1;
            if (n > TUNE_CANDIDATES_LONG) n = TUNE_CANDIDATES_LONG;
        }
    }
    int fin[TUNE_FINALISTS + 1], n_fin = 0;
    if (first[0] >= 0.0f) fin[n_fin++] = 0;
    for (int f = 0; f < TUNE_FINALISTS; f++) {
        int pick = -1;
        for (int i = 1; i < n; i++) {
            int taken = 0;
            for (int j = 0; j < n_fin; j++) taken |= fin[j] == i;
            if (!taken && first[i] >= 0.0f && (pick < 0 || first[i] < first[pick])) pick = i;
        }
        if (pick >= 0) fin[n_fin++] = pick;
    }
    float t[TUNE_FINALISTS + 1][TUNE_FINAL_REPS], med[TUNE_FINALISTS + 1];
    int usable[TUNE_FINALISTS + 1];
    for (int j = 0; j < n_fin; j++) usable[j] = 1;
    for (int r = 0; r < TUNE_FINAL_REPS; r++)
        for (int j = 0; j < n_fin; j++)
            if (usable[j] && (t[j][r] = algo_call_ms(g, p, a, &res[fin[j]].algo, stream)) < 0.0f)
                usable[j] = 0;
    int best = -1;
    for (int j = 0; j < n_fin; j++) {
        med[j] = usable[j] ? median(t[j], TUNE_FINAL_REPS) : -1.0f;
        if (med[j] >= 0.0f && (best < 0 || med[j] < med[best])) best = j;
    }
    int winner = 0;
    if (best >= 0) {
        winner = fin[best];
        /* fin[0] is the first choice whenever it ran: it keeps the place unless beaten clearly */
        if (fin[0] == 0 && med[0] >= 0.0f && !(med[best] < TUNE_MARGIN * med[0])) winner = 0;
    }
    cudaGetLastError(); /* a candidate that failed to launch leaves no error behind */
    if (saved) {
        cudaMemcpyAsync(a->y, saved, y_bytes, cudaMemcpyDeviceToDevice, stream);
        cudaStreamSynchronize(stream);
        cudaFree(saved);
    }
    return winner;
}

static pi0_status plan_make(pi0_gemm_ctx *g, plan *p, const pi0_gemm_args *a, cudaStream_t stream,
                            pi0_error *err) {
    const plan_key *k = &p->key;
    cublasComputeType_t ct = a->tx == CUDA_R_32F && a->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                            : CUBLAS_COMPUTE_32F;
    CUBLAS_TRY(cublasLtMatmulDescCreate(&p->op, ct, CUDA_R_32F));
    cublasOperation_t ta = a->w_kn ? CUBLAS_OP_N : CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    if (a->epilogue == PI0_EPI_BIAS) epi = CUBLASLT_EPILOGUE_BIAS;
    if (a->epilogue == PI0_EPI_GELU_BIAS) epi = CUBLASLT_EPILOGUE_GELU_BIAS;
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                              sizeof epi));
    if (a->epilogue != PI0_EPI_NONE) {
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                  &a->bias, sizeof a->bias));
        cudaDataType_t bt = a->ty;
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                                  sizeof bt));
    }
    /* W: [N, K] row-major = column-major K x N (ld ldw), transposed; [K, N] = N x K, as is. */
    if (a->w_kn)
        PI0_STATUS_TRY(layout(&p->la, a->tw, k->N, k->K, k->ldw, k->batch, k->sw, err));
    else
        PI0_STATUS_TRY(layout(&p->la, a->tw, k->K, k->N, k->ldw, k->batch, k->sw, err));
    PI0_STATUS_TRY(layout(&p->lb, a->tx, k->K, k->M, k->ldx, k->batch, k->sx, err));
    PI0_STATUS_TRY(layout(&p->lc, a->ty, k->N, k->M, k->ldy, k->batch, k->sy, err));

    cublasLtMatmulPreference_t pref;
    CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&pref));
    uint32_t al = (uint32_t)k->align;
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &g->workspace_bytes,
        sizeof g->workspace_bytes);
    cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; i++)
        s = cublasLtMatmulPreferenceSetAttribute(pref, align_attr[i], &al, sizeof al);
    cublasLtMatmulHeuristicResult_t res[TUNE_CANDIDATES];
    int n_res = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(g->lt, p->op, p->la, p->lb, p->lc, p->lc, pref,
                                           g->autotune ? TUNE_CANDIDATES : 1, res, &n_res);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS || n_res < 1)
        return pi0_fail(err, PI0_ERR_DEVICE,
                        "cuBLASLt has no algorithm for Y[%d, %d] = X[%d, %d]·W%s (batch %d, "
                        "epilogue %d, types %d/%d, status %d)",
                        k->M, k->N, k->M, k->K, a->w_kn ? "" : "^T", k->batch, k->epilogue, k->tx,
                        k->ty, (int)s);
    int pick = 0;
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    if (n_res > 1 && cudaStreamIsCapturing(stream, &capturing) == cudaSuccess &&
        capturing == cudaStreamCaptureStatusNone)
        pick = tune(g, p, a, res, n_res, stream);
    p->algo = res[pick].algo;
    return PI0_OK;
}

extern "C" pi0_status pi0_gemm_ctx_create(pi0_gemm_ctx **out, size_t workspace_bytes,
                                          pi0_error *err) {
    *out = NULL;
    pi0_gemm_ctx *g = (pi0_gemm_ctx *)calloc(1, sizeof *g);
    if (!g) return pi0_fail(err, PI0_ERR_NOMEM, "out of host memory for the GEMM context");
    g->plans = (plan *)calloc(MAX_PLANS, sizeof *g->plans);
    g->workspace_bytes = workspace_bytes;
    g->autotune = PI0_GEMM_AUTOTUNE;
    pi0_status st = PI0_ERR_NOMEM;
    if (!g->plans) {
        pi0_fail(err, PI0_ERR_NOMEM, "out of host memory for the GEMM plans");
        goto fail;
    }
    if (cublasLtCreate(&g->lt) != CUBLAS_STATUS_SUCCESS) {
        st = pi0_fail(err, PI0_ERR_DEVICE, "cublasLtCreate failed");
        goto fail;
    }
    if (cudaMalloc(&g->workspace, workspace_bytes) != cudaSuccess) {
        st = pi0_fail(err, PI0_ERR_NOMEM, "cudaMalloc of the %zu-byte cuBLASLt workspace failed",
                      workspace_bytes);
        goto fail;
    }
    if (cudaEventCreate(&g->ev[0]) != cudaSuccess || cudaEventCreate(&g->ev[1]) != cudaSuccess) {
        st = pi0_fail(err, PI0_ERR_DEVICE, "cudaEventCreate for GEMM autotuning failed");
        goto fail;
    }
    *out = g;
    return PI0_OK;
fail:
    pi0_gemm_ctx_destroy(g);
    return st;
}

extern "C" void pi0_gemm_ctx_destroy(pi0_gemm_ctx *g) {
    if (!g) return;
    for (int i = 0; i < g->n_plans; i++) plan_free(&g->plans[i]);
    free(g->plans);
    for (int i = 0; i < 2; i++)
        if (g->ev[i]) cudaEventDestroy(g->ev[i]);
    if (g->workspace) cudaFree(g->workspace);
    if (g->lt) cublasLtDestroy(g->lt);
    free(g);
}

extern "C" pi0_status pi0_gemm(pi0_gemm_ctx *g, const pi0_gemm_args *a, cudaStream_t stream,
                               pi0_error *err) {
    if (a->M <= 0 || a->N <= 0 || a->batch <= 0) return PI0_OK;
    plan_key key;
    memset(&key, 0, sizeof key);
    key.M = a->M; key.N = a->N; key.K = a->K; key.batch = a->batch; key.w_kn = a->w_kn;
    key.epilogue = a->epilogue; key.tf32 = a->tf32; key.beta_one = a->beta != 0.0f;
    key.ldx = a->ldx; key.ldw = a->ldw; key.ldy = a->ldy;
    if (a->batch > 1) { key.sx = a->sx; key.sw = a->sw; key.sy = a->sy; }
    key.tx = (int)a->tx; key.ty = (int)a->ty;
    int al = ptr_align(a->x);
    if (ptr_align(a->w) < al) al = ptr_align(a->w);
    if (ptr_align(a->y) < al) al = ptr_align(a->y);
    key.align = al;

    plan *p = NULL;
    for (int i = 0; i < g->n_plans; i++)
        if (!memcmp(&g->plans[i].key, &key, sizeof key)) { p = &g->plans[i]; break; }
    if (!p) {
        if (g->n_plans == MAX_PLANS)
            return pi0_fail(err, PI0_ERR_NOMEM, "more than %d distinct GEMM shapes", MAX_PLANS);
        p = &g->plans[g->n_plans];
        memset(p, 0, sizeof *p);
        p->key = key;
        pi0_status st = plan_make(g, p, a, stream, err);
        if (st != PI0_OK) {
            plan_free(p);
            memset(p, 0, sizeof *p);
            return st;
        }
        g->n_plans++;
    }
    if (a->epilogue != PI0_EPI_NONE)
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                  &a->bias, sizeof a->bias));
    CUBLAS_TRY(cublasLtMatmul(g->lt, p->op, &a->alpha, a->w, p->la, a->x, p->lb, &a->beta, a->y,
                              p->lc, a->y, p->lc, &p->algo, g->workspace, g->workspace_bytes,
                              stream));
    return PI0_OK;
}

extern "C" void pi0_gemm_ctx_set_autotune(pi0_gemm_ctx *g, int on) { g->autotune = on != 0; }
