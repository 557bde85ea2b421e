/* gemm.cu - cuBLASLt plans and epilogues for the CUDA backend (see gemm.h).
 * Row-major Y = X·W^T is column-major Y^T = W·X^T: cuBLASLt's A is W (transposed unless
 * w_kn), its B is X, its D is Y; m = N, n = M. Bias epilogues then add a vector of length
 * m = N, one value per output feature, as wanted. Plans are kept in a flat array searched
 * linearly: a model has well under a few hundred distinct shapes. */
#include <stdlib.h>

#include "cuda/gemm.h"

enum { MAX_PLANS = 1024 };

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

static pi0_status plan_make(pi0_gemm_ctx *g, plan *p, const pi0_gemm_args *a, pi0_error *err) {
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
    cublasLtMatmulHeuristicResult_t res;
    int n_res = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(g->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &res,
                                           &n_res);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS || n_res < 1)
        return pi0_fail(err, PI0_ERR_DEVICE,
                        "cuBLASLt has no algorithm for Y[%d, %d] = X[%d, %d]·W%s (batch %d, "
                        "epilogue %d, types %d/%d, status %d)",
                        k->M, k->N, k->M, k->K, a->w_kn ? "" : "^T", k->batch, k->epilogue, k->tx,
                        k->ty, (int)s);
    p->algo = res.algo;
    return PI0_OK;
}

extern "C" pi0_status pi0_gemm_ctx_create(pi0_gemm_ctx **out, size_t workspace_bytes,
                                          pi0_error *err) {
    *out = NULL;
    pi0_gemm_ctx *g = (pi0_gemm_ctx *)calloc(1, sizeof *g);
    if (!g) return pi0_fail(err, PI0_ERR_NOMEM, "out of host memory for the GEMM context");
    g->plans = (plan *)calloc(MAX_PLANS, sizeof *g->plans);
    g->workspace_bytes = workspace_bytes;
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
        pi0_status st = plan_make(g, p, a, err);
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
