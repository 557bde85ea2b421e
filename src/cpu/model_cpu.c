/* model_cpu.c - Pi0 sample_actions on the CPU, in float32.
 * The reference every faster path is tested against. It follows PI0_SPEC.md block by block,
 * in order (2.2 SigLIP, 2.3 text, 2.4 prefix, 2.5-2.6 prefill, 2.7-2.10 Euler steps), with the
 * ops of src/ops/ (ops_cpu.h) threaded over rows. Not clever: no fusion, no reordering of sums
 * beyond what ops_cpu.h documents. Two exact shortcuts (PI0_SPEC 8.1): cameras masked in every
 * row are dropped when opt.skip_masked_cameras is on, and the last prefix layer stops after
 * its K/V (its output is never read).
 *
 * Dimension letters (PI0_SPEC 0.1):
 *   B batch, C input cameras, Ck cameras kept, N tokens per camera, L prompt slots,
 *   P prefix length = Ck·N + L, A horizon, S suffix length = 1 + A, Da action dim,
 *   Dv, Fv, Hv, Dhv SigLIP width, MLP width, heads, head dim; pp = 3·patch² patch values,
 *   D, F LLM width and MLP width; De, Fe expert width and MLP width,
 *   H query heads, K key/value heads, Dh head dim (shared by both Gemmas), Ld layers. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "model.h"
#include "ops/ops_cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define F32(t) ((const float *)(t).data)

typedef struct {
    pi0_pool *pool;
    /* Float32 copies of every weight: the same table as m->w with each slot's data pointing
     * into f32, except the token embedding, which stays borrowed from m->w (only L rows per
     * row of the batch are read, converted at run time). */
    pi0_weights w;
    float *f32;                  /* owned */

    /* The uploaded batch. in's pointers point into the owned copies below. */
    pi0_batch in;
    pi0_prefix_layout lay;
    int uploaded;                /* 1 once a batch is uploaded */

    char *arena;                 /* owned: every buffer below, carved by plan_buffers */
    size_t arena_bytes;

    /* inputs */
    float *images;               /* [B, C, Sz, Sz, 3] */
    uint8_t *image_masks;        /* [B, C] */
    int32_t *tokens;             /* [B, L] */
    uint8_t *token_mask;         /* [B, L] */
    float *state;                /* [B, Da] */
    float *noise;                /* [B, A, Da] */
    float *times;                /* [n] Euler step times */

    /* prefix layout */
    uint8_t *pad;                /* [B, P] 1 = valid prefix token */
    int32_t *pos;                /* [B, P] RoPE positions */
    int32_t *n_valid;            /* [B] */
    uint8_t *prefix_mask;        /* [B, P, P] query i may attend key j */
    uint8_t *suffix_mask;        /* [B, S, P + S] */
    int32_t *suffix_pos;         /* [B, S] */

    /* SigLIP, all kept cameras of all rows as one batch of B·Ck images */
    float *patches;              /* [B·Ck·N, pp] */
    float *vx;                   /* [B·Ck·N, Dv] residual stream */
    float *vh;                   /* [B·Ck·N, Dv] normalized */
    float *vq, *vk, *vv;         /* [B·Ck·N, Dv] = Hv heads of Dhv */
    float *vo;                   /* [B·Ck·N, Dv] attention output */
    float *vtmp;                 /* [B·Ck·N, Dv] */
    float *vf;                   /* [B·Ck·N, Fv] MLP hidden */
    float *img_tokens;           /* [B·Ck·N, D] projector output, image n = b·Ck + k */

    /* Gemma 2B over the prefix */
    float *prefix_embs;          /* [B, P, D] the LLM's input */
    float *x;                    /* [B·P, D] residual stream */
    float *h;                    /* [B·P, D] normalized */
    float *q;                    /* [B·P, H·Dh] */
    float *att;                  /* [B·P, H·Dh] attention output */
    float *tmp;                  /* [B·P, D] */
    float *gate, *up;            /* [B·P, F] */
    float *kc, *vc;              /* [Ld, B, P + S, K·Dh] keys (after RoPE) and values: rows
                                    0..P-1 from the prefix, P..P+S-1 from the current step */
    float *probs;                /* [max over attentions of heads·T·Tk] */

    /* the action expert over the suffix */
    float *state_tok;            /* [B, De] */
    float *temb;                 /* [De] time embedding of the current step */
    float *a_in;                 /* [B·A, De] action_in_proj(x_t) */
    float *cat;                  /* [B·A, 2·De] [action, time] */
    float *tm;                   /* [B·A, De] action_time_mlp_in, swish */
    float *sx;                   /* [B·S, De] residual stream */
    float *sh;                   /* [B·S, De] normalized */
    float *sq;                   /* [B·S, H·Dh] */
    float *satt;                 /* [B·S, H·Dh] */
    float *stmp;                 /* [B·S, De] */
    float *sgate, *sup;          /* [B·S, Fe] */
    float *x_t;                  /* [B, A, Da] the sample */
    float *vel;                  /* [B, A, Da] velocity of the current step */
    float *v_first;              /* [B, A, Da] velocity at t = 1 */
} cpu_backend;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int tokens_per_camera(const pi0_dims *d) {
    int n_side = d->image_size / d->patch_size;
    return n_side * n_side;
}

/* y[0:n] += x[0:n] */
static void add_inplace(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* ---- open: float32 weights -------------------------------------------------------------- */

typedef struct {
    cpu_backend *s;
    int n;                       /* tensors converted */
    size_t n_floats;
    pi0_tensor **slots;          /* [n] in pass 2 */
    size_t *offsets;             /* [n] in pass 2: where each goes in s->f32 */
} convert_plan;

static pi0_status plan_tensor(void *ctx, pi0_tensor *slot, pi0_part part, pi0_error *err) {
    convert_plan *c = ctx;
    if (slot == &c->s->w.embed) return PI0_OK;
    if (c->slots) {
        c->slots[c->n] = slot;
        c->offsets[c->n] = c->n_floats;
    }
    c->n++;
    c->n_floats += pi0_align_up(slot->n_elems, 16); /* 64-byte aligned tensors */
    return PI0_OK;
}

static void convert_task(void *ctx, int i) {
    convert_plan *c = ctx;
    pi0_tensor *t = c->slots[i];
    float *dst = c->s->f32 + c->offsets[i];
    pi0_tensor_to_f32(t, dst);
    t->data = dst;
    t->dtype = PI0_DT_F32;
}

static pi0_status convert_weights(pi0_model *m, cpu_backend *s, pi0_error *err) {
    const pi0_dims *d = &m->dims;
    /* A shallow copy of the table (names and shapes borrowed from m->w) with its own
     * per-layer arrays, so that its slots can point at float32 data. */
    s->w = m->w;
    s->w.names = NULL;
    s->w.vit = malloc((size_t)d->vision.depth * sizeof *s->w.vit);
    s->w.llm = malloc((size_t)d->llm.depth * sizeof *s->w.llm);
    s->w.expert = malloc((size_t)d->expert.depth * sizeof *s->w.expert);
    if (!s->w.vit || !s->w.llm || !s->w.expert)
        return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for the weight table");
    memcpy(s->w.vit, m->w.vit, (size_t)d->vision.depth * sizeof *s->w.vit);
    memcpy(s->w.llm, m->w.llm, (size_t)d->llm.depth * sizeof *s->w.llm);
    memcpy(s->w.expert, m->w.expert, (size_t)d->expert.depth * sizeof *s->w.expert);

    convert_plan c = { .s = s };
    pi0_status st = pi0_weights_each(d, &s->w, plan_tensor, &c, err);
    if (st != PI0_OK) return st;
    size_t n_floats = c.n_floats;
    s->f32 = aligned_alloc(64, pi0_align_up(n_floats * sizeof(float), 64));
    c.slots = malloc((size_t)c.n * sizeof *c.slots);
    c.offsets = malloc((size_t)c.n * sizeof *c.offsets);
    if (!s->f32 || !c.slots || !c.offsets) {
        free(c.slots);
        free(c.offsets);
        return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for %zu MB of float32 weights",
                        n_floats * sizeof(float) >> 20);
    }
    pi0_log(m, "cpu: converting %d tensors to float32 (%zu MB)", c.n, n_floats * sizeof(float) >> 20);
    c.n = 0;
    c.n_floats = 0;
    if ((st = pi0_weights_each(d, &s->w, plan_tensor, &c, err)) == PI0_OK)
        pi0_pool_run(s->pool, c.n, convert_task, &c);
    free(c.slots);
    free(c.offsets);
    return st;
}

static void cpu_close(pi0_model *m) {
    cpu_backend *s = m->backend;
    if (!s) return;
    pi0_pool_close(s->pool);
    pi0_weights_free(&s->w);     /* the per-layer arrays only: names is NULL */
    free(s->f32);
    free(s->arena);
    free(s);
    m->backend = NULL;
}

static pi0_status cpu_open(pi0_model *m, pi0_error *err) {
    cpu_backend *s = calloc(1, sizeof *s);
    if (!s) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory");
    m->backend = s;
    pi0_status st = pi0_pool_open(&s->pool, m->opt.n_threads, err);
    if (st == PI0_OK) st = convert_weights(m, s, err);
    if (st != PI0_OK) {
        cpu_close(m);
        return st;
    }
    snprintf(m->device_name, sizeof m->device_name, "CPU, %d threads, float32",
             pi0_pool_size(s->pool));
    return PI0_OK;
}

/* ---- upload: buffers for this batch shape, copies of the inputs ------------------------- */

typedef struct {
    void **ptr;
    size_t count, elem_size;
} buffer_spec;

/* base == NULL: only measure. Otherwise point each buffer into base. Returns bytes. */
static size_t plan_buffers(const buffer_spec *spec, int n, char *base) {
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        if (base) *spec[i].ptr = base + offset;
        offset += pi0_align_up(spec[i].count * spec[i].elem_size, 64);
    }
    return offset;
}

static size_t max3(size_t a, size_t b, size_t c) {
    size_t m = a > b ? a : b;
    return m > c ? m : c;
}

static pi0_status cpu_upload(pi0_model *m, const pi0_batch *in, pi0_error *err) {
    cpu_backend *s = m->backend;
    const pi0_dims *d = &m->dims;
    s->uploaded = 0;
    pi0_prefix_layout lay;
    pi0_prefix_layout_make(&lay, d, in, m->opt.skip_masked_cameras);

    const size_t B = (size_t)in->batch, C = (size_t)in->n_cameras, L = (size_t)in->n_tokens;
    const size_t Ck = (size_t)lay.n_cams_kept, N = (size_t)tokens_per_camera(d), P = (size_t)lay.P;
    const size_t A = (size_t)in->horizon, S = 1 + A, Da = (size_t)d->action_dim;
    const size_t Sz = (size_t)d->image_size, pp = 3 * (size_t)d->patch_size * d->patch_size;
    const size_t Dv = (size_t)d->vision.width, Fv = (size_t)d->vision.mlp_dim;
    const size_t D = (size_t)d->llm.width, F = (size_t)d->llm.mlp_dim;
    const size_t De = (size_t)d->expert.width, Fe = (size_t)d->expert.mlp_dim;
    const size_t H = (size_t)d->llm.num_heads, K = (size_t)d->llm.num_kv_heads;
    const size_t Dh = (size_t)d->llm.head_dim, Ld = (size_t)d->llm.depth;
    const size_t Tv = B * Ck * N;
    const size_t n_probs = max3((size_t)d->vision.num_heads * N * N, H * P * P, H * S * (P + S));

    const buffer_spec spec[] = {
        { (void **)&s->images, B * C * Sz * Sz * 3, sizeof(float) },
        { (void **)&s->image_masks, B * C, 1 },
        { (void **)&s->tokens, B * L, sizeof(int32_t) },
        { (void **)&s->token_mask, B * L, 1 },
        { (void **)&s->state, B * Da, sizeof(float) },
        { (void **)&s->noise, B * A * Da, sizeof(float) },
        { (void **)&s->times, (size_t)in->num_steps, sizeof(float) },
        { (void **)&s->pad, B * P, 1 },
        { (void **)&s->pos, B * P, sizeof(int32_t) },
        { (void **)&s->n_valid, B, sizeof(int32_t) },
        { (void **)&s->prefix_mask, B * P * P, 1 },
        { (void **)&s->suffix_mask, B * S * (P + S), 1 },
        { (void **)&s->suffix_pos, B * S, sizeof(int32_t) },
        { (void **)&s->patches, Tv * pp, sizeof(float) },
        { (void **)&s->vx, Tv * Dv, sizeof(float) },
        { (void **)&s->vh, Tv * Dv, sizeof(float) },
        { (void **)&s->vq, Tv * Dv, sizeof(float) },
        { (void **)&s->vk, Tv * Dv, sizeof(float) },
        { (void **)&s->vv, Tv * Dv, sizeof(float) },
        { (void **)&s->vo, Tv * Dv, sizeof(float) },
        { (void **)&s->vtmp, Tv * Dv, sizeof(float) },
        { (void **)&s->vf, Tv * Fv, sizeof(float) },
        { (void **)&s->img_tokens, Tv * D, sizeof(float) },
        { (void **)&s->prefix_embs, B * P * D, sizeof(float) },
        { (void **)&s->x, B * P * D, sizeof(float) },
        { (void **)&s->h, B * P * D, sizeof(float) },
        { (void **)&s->q, B * P * H * Dh, sizeof(float) },
        { (void **)&s->att, B * P * H * Dh, sizeof(float) },
        { (void **)&s->tmp, B * P * D, sizeof(float) },
        { (void **)&s->gate, B * P * F, sizeof(float) },
        { (void **)&s->up, B * P * F, sizeof(float) },
        { (void **)&s->kc, Ld * B * (P + S) * K * Dh, sizeof(float) },
        { (void **)&s->vc, Ld * B * (P + S) * K * Dh, sizeof(float) },
        { (void **)&s->probs, n_probs, sizeof(float) },
        { (void **)&s->state_tok, B * De, sizeof(float) },
        { (void **)&s->temb, De, sizeof(float) },
        { (void **)&s->a_in, B * A * De, sizeof(float) },
        { (void **)&s->cat, B * A * 2 * De, sizeof(float) },
        { (void **)&s->tm, B * A * De, sizeof(float) },
        { (void **)&s->sx, B * S * De, sizeof(float) },
        { (void **)&s->sh, B * S * De, sizeof(float) },
        { (void **)&s->sq, B * S * H * Dh, sizeof(float) },
        { (void **)&s->satt, B * S * H * Dh, sizeof(float) },
        { (void **)&s->stmp, B * S * De, sizeof(float) },
        { (void **)&s->sgate, B * S * Fe, sizeof(float) },
        { (void **)&s->sup, B * S * Fe, sizeof(float) },
        { (void **)&s->x_t, B * A * Da, sizeof(float) },
        { (void **)&s->vel, B * A * Da, sizeof(float) },
        { (void **)&s->v_first, B * A * Da, sizeof(float) },
    };
    const int n_spec = (int)(sizeof spec / sizeof spec[0]);
    size_t bytes = plan_buffers(spec, n_spec, NULL);
    if (bytes > s->arena_bytes) {    /* grow only: the same shape again allocates nothing */
        free(s->arena);
        s->arena_bytes = 0;
        if (!(s->arena = aligned_alloc(64, bytes)))
            return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for %zu MB of CPU buffers "
                            "(batch %d, prefix %zu)", bytes >> 20, in->batch, P);
        s->arena_bytes = bytes;
    }
    plan_buffers(spec, n_spec, s->arena);

    memcpy(s->images, in->images, B * C * Sz * Sz * 3 * sizeof(float));
    memcpy(s->image_masks, in->image_masks, B * C);
    memcpy(s->tokens, in->tokens, B * L * sizeof(int32_t));
    memcpy(s->token_mask, in->token_mask, B * L);
    memcpy(s->state, in->state, B * Da * sizeof(float));
    memcpy(s->noise, in->noise, B * A * Da * sizeof(float));
    s->in = *in;
    s->in.images = s->images;
    s->in.image_masks = s->image_masks;
    s->in.tokens = s->tokens;
    s->in.token_mask = s->token_mask;
    s->in.state = s->state;
    s->in.noise = s->noise;
    s->lay = lay;

    /* Masks and positions (PI0_SPEC 2.4, 2.8). Prefix: valid tokens see each other (no causal
     * order). Suffix: every row sees the valid prefix; the state token (row 0) sees itself
     * among the suffix; action tokens see the state and every action token. */
    pi0_prefix_masks(&lay, d, &s->in, s->pad, s->pos, s->n_valid);
    for (size_t b = 0; b < B; b++) {
        const uint8_t *pad_b = s->pad + b * P;
        for (size_t i = 0; i < P; i++)
            for (size_t j = 0; j < P; j++)
                s->prefix_mask[(b * P + i) * P + j] = pad_b[i] && pad_b[j];
        for (size_t i = 0; i < S; i++) {
            uint8_t *row = s->suffix_mask + (b * S + i) * (P + S);
            memcpy(row, pad_b, P);
            for (size_t j = 0; j < S; j++) row[P + j] = i == 0 ? j == 0 : 1;
            s->suffix_pos[b * S + i] = s->n_valid[b] + (int32_t)i;
        }
    }
    s->uploaded = 1;
    return PI0_OK;
}

/* ---- run: the stages of PI0_SPEC 2.12 ---------------------------------------------------- */

/* SigLIP over every kept camera of every row (PI0_SPEC 2.2), then the projector. */
static void run_vision(cpu_backend *s, const pi0_dims *d) {
    const pi0_batch *in = &s->in;
    const pi0_weights *w = &s->w;
    const int Ck = s->lay.n_cams_kept, N = tokens_per_camera(d), C = in->n_cameras;
    const int n_img = in->batch * Ck, Tv = n_img * N;
    const int p = d->patch_size, n_side = d->image_size / p, Sz = d->image_size, pp = 3 * p * p;
    const int Dv = d->vision.width, Fv = d->vision.mlp_dim, Hv = d->vision.num_heads;
    const int Dhv = d->vision.head_dim, D = d->llm.width;
    const float eps = d->vision.eps;
    if (n_img == 0) return;

    /* Patch vectors in the conv weight's order (ch, ky, kx); token t = n_side·py + px. */
    for (int n = 0; n < n_img; n++) {
        int b = n / Ck, cam = s->lay.cam_index[n % Ck];
        const float *img = in->images + ((size_t)b * C + cam) * Sz * Sz * 3;  /* [Sz, Sz, 3] */
        for (int py = 0; py < n_side; py++)
            for (int px = 0; px < n_side; px++) {
                float *dst = s->patches + ((size_t)n * N + py * n_side + px) * pp;  /* [pp] */
                for (int ch = 0; ch < 3; ch++)
                    for (int ky = 0; ky < p; ky++)
                        for (int kx = 0; kx < p; kx++)
                            dst[(ch * p + ky) * p + kx] =
                                img[((size_t)(py * p + ky) * Sz + px * p + kx) * 3 + ch];
            }
    }
    pi0_matmul_cpu(s->vx, s->patches, F32(w->patch_w), F32(w->patch_b), Tv, Dv, pp, s->pool);
    for (int n = 0; n < n_img; n++)
        add_inplace(s->vx + (size_t)n * N * Dv, F32(w->pos_emb), (size_t)N * Dv);

    const float scale = 1.0f / sqrtf((float)Dhv);
    for (int l = 0; l < d->vision.depth; l++) {
        const pi0_vit_layer *vl = &w->vit[l];
        pi0_layernorm_cpu(s->vh, s->vx, F32(vl->ln1_w), F32(vl->ln1_b), Tv, Dv, eps);
        pi0_matmul_cpu(s->vq, s->vh, F32(vl->q_w), F32(vl->q_b), Tv, Dv, Dv, s->pool);
        pi0_matmul_cpu(s->vk, s->vh, F32(vl->k_w), F32(vl->k_b), Tv, Dv, Dv, s->pool);
        pi0_matmul_cpu(s->vv, s->vh, F32(vl->v_w), F32(vl->v_b), Tv, Dv, Dv, s->pool);
        for (int n = 0; n < n_img; n++) {   /* each image attends to itself, no mask */
            size_t o = (size_t)n * N * Dv;
            pi0_attention_cpu(s->vo + o, s->vq + o, s->vk + o, s->vv + o, NULL, s->probs, N, N,
                              Hv, Hv, Dhv, scale, s->pool);
        }
        pi0_matmul_cpu(s->vtmp, s->vo, F32(vl->o_w), F32(vl->o_b), Tv, Dv, Dv, s->pool);
        add_inplace(s->vx, s->vtmp, (size_t)Tv * Dv);
        pi0_layernorm_cpu(s->vh, s->vx, F32(vl->ln2_w), F32(vl->ln2_b), Tv, Dv, eps);
        pi0_matmul_cpu(s->vf, s->vh, F32(vl->fc1_w), F32(vl->fc1_b), Tv, Fv, Dv, s->pool);
        pi0_gelu_cpu(s->vf, (size_t)Tv * Fv, s->pool);
        pi0_matmul_cpu(s->vtmp, s->vf, F32(vl->fc2_w), F32(vl->fc2_b), Tv, Dv, Fv, s->pool);
        add_inplace(s->vx, s->vtmp, (size_t)Tv * Dv);
    }
    pi0_layernorm_cpu(s->vh, s->vx, F32(w->vit_norm_w), F32(w->vit_norm_b), Tv, Dv, eps);
    pi0_matmul_cpu(s->img_tokens, s->vh, F32(w->proj_w), F32(w->proj_b), Tv, D, Dv, s->pool);
}

/* prefix_embs = [image tokens of the kept cameras ; text embeddings · sqrt(D)] per row
 * (PI0_SPEC 2.3, 2.4). Image tokens are not scaled. */
static void assemble_prefix(cpu_backend *s, const pi0_weights *w_src, const pi0_dims *d) {
    const pi0_batch *in = &s->in;
    const int Ck = s->lay.n_cams_kept, N = tokens_per_camera(d), L = in->n_tokens;
    const int P = s->lay.P, D = d->llm.width;
    /* openpi: sqrt(embed_dim) computed in double, cast to the compute dtype (float32). */
    const float text_scale = (float)sqrt((double)D);
    for (int b = 0; b < in->batch; b++) {
        float *row = s->prefix_embs + (size_t)b * P * D;   /* [P, D] */
        memcpy(row, s->img_tokens + (size_t)b * Ck * N * D, (size_t)Ck * N * D * sizeof(float));
        for (int i = 0; i < L; i++) {
            float *e = row + ((size_t)Ck * N + i) * D;
            pi0_tensor_rows_to_f32(&w_src->embed, in->tokens[(size_t)b * L + i], 1, e);
            for (int c = 0; c < D; c++) e[c] *= text_scale;
        }
    }
}

/* The layer's K or V rows of batch row b: [P + S, K·Dh]. */
static float *cache_rows(const cpu_backend *s, float *cache, const pi0_dims *d, int l, int b) {
    size_t rows = (size_t)s->lay.P + 1 + s->in.horizon;
    size_t kd = (size_t)d->llm.num_kv_heads * d->llm.head_dim;
    return cache + (((size_t)l * s->in.batch + b) * rows) * kd;
}

/* The 18 Gemma 2B blocks over the prefix (PI0_SPEC 2.5, 2.6), keeping K (after RoPE) and V
 * of every layer. The last layer stops after its K/V: its output feeds only the final norm,
 * which Pi0 never reads (PI0_SPEC 8.1, exact). */
static void run_prefill(cpu_backend *s, const pi0_dims *d) {
    const pi0_gemma_dims *g = &d->llm;
    const int B = s->in.batch, P = s->lay.P, T = B * P;
    const int D = g->width, F = g->mlp_dim, H = g->num_heads, K = g->num_kv_heads;
    const int Dh = g->head_dim, HD = H * Dh, KD = K * Dh;
    const float scale = 1.0f / sqrtf((float)Dh);   /* 1/16: exact, so same as scaling q */

    memcpy(s->x, s->prefix_embs, (size_t)T * D * sizeof(float));
    for (int l = 0; l < g->depth; l++) {
        const pi0_gemma_layer *gl = &s->w.llm[l];
        pi0_rmsnorm_cpu(s->h, s->x, F32(gl->attn_norm), T, D, g->eps);
        for (int b = 0; b < B; b++) {
            const float *h_b = s->h + (size_t)b * P * D;
            float *k = cache_rows(s, s->kc, d, l, b), *v = cache_rows(s, s->vc, d, l, b);
            pi0_matmul_cpu(k, h_b, F32(gl->k), NULL, P, KD, D, s->pool);
            pi0_matmul_cpu(v, h_b, F32(gl->v), NULL, P, KD, D, s->pool);
            pi0_rope_cpu(k, s->pos + (size_t)b * P, P, K, Dh, KD);
        }
        if (l == g->depth - 1) break;
        pi0_matmul_cpu(s->q, s->h, F32(gl->q), NULL, T, HD, D, s->pool);
        pi0_rope_cpu(s->q, s->pos, T, H, Dh, HD);
        for (int b = 0; b < B; b++)
            pi0_attention_cpu(s->att + (size_t)b * P * HD, s->q + (size_t)b * P * HD,
                              cache_rows(s, s->kc, d, l, b), cache_rows(s, s->vc, d, l, b),
                              s->prefix_mask + (size_t)b * P * P, s->probs, P, P, H, K, Dh, scale,
                              s->pool);
        pi0_matmul_cpu(s->tmp, s->att, F32(gl->o), NULL, T, D, HD, s->pool);
        add_inplace(s->x, s->tmp, (size_t)T * D);
        pi0_rmsnorm_cpu(s->h, s->x, F32(gl->ffw_norm), T, D, g->eps);
        pi0_matmul_cpu(s->gate, s->h, F32(gl->gate), NULL, T, F, D, s->pool);
        pi0_matmul_cpu(s->up, s->h, F32(gl->up), NULL, T, F, D, s->pool);
        pi0_gelu_gate_cpu(s->gate, s->gate, s->up, (size_t)T * F, s->pool);
        pi0_matmul_cpu(s->tmp, s->gate, F32(gl->down), NULL, T, D, F, s->pool);
        add_inplace(s->x, s->tmp, (size_t)T * D);
    }
}

/* Suffix embedding at time t (PI0_SPEC 2.7): [state token ; A action tokens] per row. */
static void embed_suffix(cpu_backend *s, const pi0_dims *d, float t) {
    const pi0_weights *w = &s->w;
    const int B = s->in.batch, A = s->in.horizon, S = 1 + A, BA = B * A;
    const int De = d->expert.width, Da = d->action_dim;
    pi0_time_embedding(t, De, s->temb);
    pi0_matmul_cpu(s->a_in, s->x_t, F32(w->action_in_w), F32(w->action_in_b), BA, De, Da, s->pool);
    for (int r = 0; r < BA; r++) {   /* concat: action part first, time part second */
        memcpy(s->cat + (size_t)r * 2 * De, s->a_in + (size_t)r * De, (size_t)De * sizeof(float));
        memcpy(s->cat + (size_t)r * 2 * De + De, s->temb, (size_t)De * sizeof(float));
    }
    pi0_matmul_cpu(s->tm, s->cat, F32(w->time_in_w), F32(w->time_in_b), BA, De, 2 * De, s->pool);
    pi0_swish_cpu(s->tm, (size_t)BA * De);
    pi0_matmul_cpu(s->stmp, s->tm, F32(w->time_out_w), F32(w->time_out_b), BA, De, De, s->pool);
    for (int b = 0; b < B; b++) {
        float *sx_b = s->sx + (size_t)b * S * De;   /* [S, De] */
        memcpy(sx_b, s->state_tok + (size_t)b * De, (size_t)De * sizeof(float));
        memcpy(sx_b + De, s->stmp + (size_t)b * A * De, (size_t)A * De * sizeof(float));
    }
}

/* One velocity evaluation: the expert's blocks over the suffix, reading the prefix cache
 * (PI0_SPEC 2.9), final norm, action_out_proj on the A action rows (2.10). */
static void run_expert(cpu_backend *s, const pi0_dims *d) {
    const pi0_gemma_dims *g = &d->expert;
    const int B = s->in.batch, A = s->in.horizon, S = 1 + A, P = s->lay.P, T = B * S;
    const int De = g->width, Fe = g->mlp_dim, H = g->num_heads, K = g->num_kv_heads;
    const int Dh = g->head_dim, HD = H * Dh, KD = K * Dh, Da = d->action_dim;
    const float scale = 1.0f / sqrtf((float)Dh);

    for (int l = 0; l < g->depth; l++) {
        const pi0_gemma_layer *gl = &s->w.expert[l];
        pi0_rmsnorm_cpu(s->sh, s->sx, F32(gl->attn_norm), T, De, g->eps);
        pi0_matmul_cpu(s->sq, s->sh, F32(gl->q), NULL, T, HD, De, s->pool);
        pi0_rope_cpu(s->sq, s->suffix_pos, T, H, Dh, HD);
        for (int b = 0; b < B; b++) {
            /* This step's keys and values go right after the prefix's in the cache rows, so
             * attention reads [prefix ; suffix] as one array. */
            float *k = cache_rows(s, s->kc, d, l, b), *v = cache_rows(s, s->vc, d, l, b);
            const float *sh_b = s->sh + (size_t)b * S * De;
            pi0_matmul_cpu(k + (size_t)P * KD, sh_b, F32(gl->k), NULL, S, KD, De, s->pool);
            pi0_matmul_cpu(v + (size_t)P * KD, sh_b, F32(gl->v), NULL, S, KD, De, s->pool);
            pi0_rope_cpu(k + (size_t)P * KD, s->suffix_pos + (size_t)b * S, S, K, Dh, KD);
            pi0_attention_cpu(s->satt + (size_t)b * S * HD, s->sq + (size_t)b * S * HD, k, v,
                              s->suffix_mask + (size_t)b * S * (P + S), s->probs, S, P + S, H, K,
                              Dh, scale, s->pool);
        }
        pi0_matmul_cpu(s->stmp, s->satt, F32(gl->o), NULL, T, De, HD, s->pool);
        add_inplace(s->sx, s->stmp, (size_t)T * De);
        pi0_rmsnorm_cpu(s->sh, s->sx, F32(gl->ffw_norm), T, De, g->eps);
        pi0_matmul_cpu(s->sgate, s->sh, F32(gl->gate), NULL, T, Fe, De, s->pool);
        pi0_matmul_cpu(s->sup, s->sh, F32(gl->up), NULL, T, Fe, De, s->pool);
        pi0_gelu_gate_cpu(s->sgate, s->sgate, s->sup, (size_t)T * Fe, s->pool);
        pi0_matmul_cpu(s->stmp, s->sgate, F32(gl->down), NULL, T, De, Fe, s->pool);
        add_inplace(s->sx, s->stmp, (size_t)T * De);
    }
    pi0_rmsnorm_cpu(s->sh, s->sx, F32(s->w.expert_norm), T, De, g->eps);
    for (int b = 0; b < B; b++)   /* rows 1..A of each row's suffix: the state row is dropped */
        pi0_matmul_cpu(s->vel + (size_t)b * A * Da, s->sh + ((size_t)b * S + 1) * De,
                       F32(s->w.action_out_w), F32(s->w.action_out_b), A, Da, De, s->pool);
}

/* The Euler loop (PI0_SPEC 2.10): x = noise at t = 1, x += dt·v, t accumulated in float32. */
static void run_diffusion(cpu_backend *s, const pi0_dims *d) {
    const int B = s->in.batch, n = s->in.num_steps;
    const size_t n_x = (size_t)B * s->in.horizon * d->action_dim;
    const float dt = pi0_euler_times(n, s->times);
    /* The state token depends on nothing but the state: the same in every step. */
    pi0_matmul_cpu(s->state_tok, s->state, F32(s->w.state_w), F32(s->w.state_b), B,
                   d->expert.width, d->action_dim, s->pool);
    memcpy(s->x_t, s->noise, n_x * sizeof(float));
    for (int k = 0; k < n; k++) {
        embed_suffix(s, d, s->times[k]);
        run_expert(s, d);
        if (k == 0) memcpy(s->v_first, s->vel, n_x * sizeof(float));
        for (size_t i = 0; i < n_x; i++) s->x_t[i] += dt * s->vel[i];
    }
}

static pi0_status cpu_run(pi0_model *m, pi0_run_mode mode, pi0_timing *timing, pi0_error *err) {
    cpu_backend *s = m->backend;
    if (!s->uploaded) return pi0_fail(err, PI0_ERR_INPUT, "cpu: run before an upload");
    /* Wall-clock time per stage in both modes: the stages run one after another anyway. */
    double t0 = now_ms();
    run_vision(s, &m->dims);
    assemble_prefix(s, &m->w, &m->dims);
    double t1 = now_ms();
    run_prefill(s, &m->dims);
    double t2 = now_ms();
    run_diffusion(s, &m->dims);
    double t3 = now_ms();
    (void)mode;
    timing->vision_ms = t1 - t0;
    timing->prefill_ms = t2 - t1;
    timing->diffusion_ms = t3 - t2;
    timing->total_ms = t3 - t0;
    return PI0_OK;
}

/* ---- download ---------------------------------------------------------------------------- */

/* prefix_embs comes back in the full layout [B, C·N + L, D]. Rows of cameras dropped by
 * skip_masked_cameras (masked in every row, hence never read by anything) are zeros. */
static pi0_status cpu_download(pi0_model *m, pi0_outputs *out, pi0_error *err) {
    cpu_backend *s = m->backend;
    const pi0_dims *d = &m->dims;
    if (!s->uploaded) return pi0_fail(err, PI0_ERR_INPUT, "cpu: download before an upload");
    const int B = s->in.batch, C = s->in.n_cameras, L = s->in.n_tokens, N = tokens_per_camera(d);
    const int D = d->llm.width, P = s->lay.P, Pf = C * N + L;
    const size_t n_x = (size_t)B * s->in.horizon * d->action_dim;
    memcpy(out->actions, s->x_t, n_x * sizeof(float));
    if (out->v_first) memcpy(out->v_first, s->v_first, n_x * sizeof(float));
    if (out->prefix_embs) {
        const size_t cam_floats = (size_t)N * D;
        for (int b = 0; b < B; b++) {
            float *dst = out->prefix_embs + (size_t)b * Pf * D;        /* [C·N + L, D] */
            const float *src = s->prefix_embs + (size_t)b * P * D;     /* [P, D] */
            int k = 0;
            for (int c = 0; c < C; c++) {
                float *cam = dst + (size_t)c * cam_floats;
                if (k < s->lay.n_cams_kept && s->lay.cam_index[k] == c)
                    memcpy(cam, src + (size_t)k++ * cam_floats, cam_floats * sizeof(float));
                else
                    memset(cam, 0, cam_floats * sizeof(float));
            }
            memcpy(dst + (size_t)C * cam_floats, src + (size_t)s->lay.n_cams_kept * cam_floats,
                   (size_t)L * D * sizeof(float));
        }
    }
    return PI0_OK;
}

const pi0_backend_ops pi0_backend_cpu = {
    .name = "cpu",
    .open = cpu_open,
    .upload = cpu_upload,
    .run = cpu_run,
    .download = cpu_download,
    .close = cpu_close,
};
