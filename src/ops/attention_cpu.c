/* attention_cpu.c - multi-head attention with grouped key/value heads, in float32: SigLIP's
 * 16 heads (one key/value head each) and Gemma's multi-query attention (8 query heads, one
 * key/value head), PI0_SPEC 2.2 and 2.5. Logits come from the matmul kernel, one head at a
 * time; masking replaces a logit by PI0_MASK_LOGIT (as JAX's where(), not an added bias);
 * softmax and p·v run one (head, row) at a time. */
#include "ops/ops_cpu.h"

/* The p·v sum vectorizes over the head dimension; the vector helpers are static and inlined,
 * so the ABI note about 32-byte vectors without AVX does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

enum { ROWS = 16 };              /* query rows per task */

typedef float v8 __attribute__((vector_size(32)));

typedef struct {
    float *o;
    const float *v;
    const uint8_t *mask;
    float *probs;
    int T, Tk, n_heads, n_kv_heads, head_dim;
    float scale;
    int n_row_blocks;
} attention_job;

/* o[0:n] += p·v[0:n] */
static void axpy(float *restrict o, float p, const float *restrict v, int n) {
    int d = 0;
    const v8 pv = { p, p, p, p, p, p, p, p };
    for (; d + 8 <= n; d += 8) {
        v8 a, b;
        memcpy(&a, o + d, sizeof a);
        memcpy(&b, v + d, sizeof b);
        a += pv * b;
        memcpy(o + d, &a, sizeof a);
    }
    for (; d < n; d++) o[d] += p * v[d];
}

/* Masks, normalizes and applies the probabilities of head h, rows [i0, i1). */
static void attention_task(void *ctx, int task) {
    const attention_job *j = ctx;
    const int h = task / j->n_row_blocks, Dh = j->head_dim, Tk = j->Tk;
    const int i0 = (task % j->n_row_blocks) * ROWS;
    const int i1 = i0 + ROWS < j->T ? i0 + ROWS : j->T;
    const int kvh = h / (j->n_heads / j->n_kv_heads), ldv = j->n_kv_heads * Dh;
    for (int i = i0; i < i1; i++) {
        float *p = j->probs + ((size_t)h * j->T + i) * Tk;    /* [Tk] logits, then probabilities */
        const uint8_t *m = j->mask ? j->mask + (size_t)i * Tk : NULL;
        for (int t = 0; t < Tk; t++) p[t] = m && !m[t] ? PI0_MASK_LOGIT : p[t] * j->scale;
        pi0_softmax_cpu(p, 1, Tk);
        float *o = j->o + (size_t)i * j->n_heads * Dh + (size_t)h * Dh;  /* [Dh] */
        for (int d = 0; d < Dh; d++) o[d] = 0.0f;
        for (int t = 0; t < Tk; t++) axpy(o, p[t], j->v + (size_t)t * ldv + (size_t)kvh * Dh, Dh);
    }
}

void pi0_attention_cpu(float *o, const float *q, const float *k, const float *v,
                       const uint8_t *mask, float *probs, int T, int Tk, int n_heads,
                       int n_kv_heads, int head_dim, float scale, pi0_pool *pool) {
    const int group = n_heads / n_kv_heads;
    const int ldq = n_heads * head_dim, ldk = n_kv_heads * head_dim;
    for (int h = 0; h < n_heads; h++)   /* logits of head h: q_h · k_h'ᵀ, [T, Tk] */
        pi0_matmul_strided_cpu(probs + (size_t)h * T * Tk, Tk, q + (size_t)h * head_dim, ldq,
                               k + (size_t)(h / group) * head_dim, ldk, NULL, T, Tk, head_dim, pool);
    attention_job j = { .o = o, .v = v, .mask = mask, .probs = probs, .T = T, .Tk = Tk,
                        .n_heads = n_heads, .n_kv_heads = n_kv_heads, .head_dim = head_dim,
                        .scale = scale, .n_row_blocks = (T + ROWS - 1) / ROWS };
    pi0_pool_run(pool, n_heads * j.n_row_blocks, attention_task, &j);
}
