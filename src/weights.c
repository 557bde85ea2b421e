/* weights.c - the tensor table of Pi0 (PI0_SPEC 4.2): one visitor walks every tensor with its
 * canonical name, shape and part; binding to a checkpoint (with LeRobot's and older names),
 * float32 conversion, and deterministic multi-threaded random weights are built on it.
 * It does not compute anything with the weights (the backends do). */
#define _POSIX_C_SOURCE 200809L /* sysconf */
#include "weights.h"
#include "rng.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define V_ "paligemma_with_expert.paligemma.model.vision_tower.vision_model."
#define L_ "paligemma_with_expert.paligemma.model.language_model."
#define E_ "paligemma_with_expert.gemma_expert.model."
#define EMBED_NAME "paligemma_with_expert.paligemma.lm_head.weight"

/* Bytes reserved per per-layer name: the longest is ~105 characters plus the layer index. */
enum { NAME_STRIDE = 160 };

typedef struct {
    const pi0_dims *d;
    pi0_weights *w;
    pi0_weights_visitor fn;
    void *ctx;
    int next_name;               /* next free slot of w->names */
    bool keep;                   /* pi0_weights_each: the slots are filled already */
} visit_state;

static pi0_status emit(visit_state *vs, pi0_tensor *slot, pi0_part part, const char *name,
                       int ndim, int64_t s0, int64_t s1, int64_t s2, int64_t s3, pi0_error *err) {
    const int64_t s[4] = { s0, s1, s2, s3 };
    if (vs->keep) return vs->fn(vs->ctx, slot, part, err);
    memset(slot, 0, sizeof *slot);
    slot->name = name;
    slot->ndim = ndim;
    slot->n_elems = 1;
    for (int i = 0; i < ndim; i++) {
        slot->shape[i] = s[i];
        slot->n_elems *= (size_t)s[i];
    }
    return vs->fn(vs->ctx, slot, part, err);
}

/* A per-layer name, formatted into the owned name storage. */
static const char *layer_name(visit_state *vs, const char *prefix, int layer, const char *suffix) {
    if (vs->keep) return NULL;   /* the slot keeps the name it has */
    char *dst = vs->w->names + (size_t)vs->next_name++ * NAME_STRIDE;
    snprintf(dst, NAME_STRIDE, "%slayers.%d.%s", prefix, layer, suffix);
    return dst;
}

#define EMIT(slot, part, name, ndim, ...)                                              \
    do {                                                                               \
        pi0_status st_ = emit(vs, slot, part, name, ndim, __VA_ARGS__, err);           \
        if (st_ != PI0_OK) return st_;                                                 \
    } while (0)

static pi0_status visit_gemma(visit_state *vs, const pi0_gemma_dims *g, const char *prefix,
                              pi0_gemma_layer *layers, pi0_part part, pi0_error *err) {
    int64_t W = g->width, F = g->mlp_dim, qd = (int64_t)g->num_heads * g->head_dim,
            kvd = (int64_t)g->num_kv_heads * g->head_dim;
    for (int i = 0; i < g->depth; i++) {
        pi0_gemma_layer *l = &layers[i];
        EMIT(&l->attn_norm, part, layer_name(vs, prefix, i, "input_layernorm.weight"), 1, W, 0, 0, 0);
        EMIT(&l->q, part, layer_name(vs, prefix, i, "self_attn.q_proj.weight"), 2, qd, W, 0, 0);
        EMIT(&l->k, part, layer_name(vs, prefix, i, "self_attn.k_proj.weight"), 2, kvd, W, 0, 0);
        EMIT(&l->v, part, layer_name(vs, prefix, i, "self_attn.v_proj.weight"), 2, kvd, W, 0, 0);
        EMIT(&l->o, part, layer_name(vs, prefix, i, "self_attn.o_proj.weight"), 2, W, qd, 0, 0);
        EMIT(&l->ffw_norm, part, layer_name(vs, prefix, i, "post_attention_layernorm.weight"), 1, W,
             0, 0, 0);
        EMIT(&l->gate, part, layer_name(vs, prefix, i, "mlp.gate_proj.weight"), 2, F, W, 0, 0);
        EMIT(&l->up, part, layer_name(vs, prefix, i, "mlp.up_proj.weight"), 2, F, W, 0, 0);
        EMIT(&l->down, part, layer_name(vs, prefix, i, "mlp.down_proj.weight"), 2, W, F, 0, 0);
    }
    return PI0_OK;
}

static pi0_status visit_all(visit_state *vs, pi0_error *err) {
    const pi0_dims *d = vs->d;
    pi0_weights *w = vs->w;
    const pi0_part VIS = PI0_PART_VISION;
    int64_t Dv = d->vision.width, Fv = d->vision.mlp_dim, p = d->patch_size;
    int64_t N = (int64_t)(d->image_size / p) * (d->image_size / p);
    int64_t D = d->llm.width, De = d->expert.width, Da = d->action_dim;

    EMIT(&w->patch_w, VIS, V_ "embeddings.patch_embedding.weight", 4, Dv, 3, p, p);
    EMIT(&w->patch_b, VIS, V_ "embeddings.patch_embedding.bias", 1, Dv, 0, 0, 0);
    EMIT(&w->pos_emb, VIS, V_ "embeddings.position_embedding.weight", 2, N, Dv, 0, 0);
    const char *vp = V_ "encoder.";
    for (int i = 0; i < d->vision.depth; i++) {
        pi0_vit_layer *l = &w->vit[i];
        EMIT(&l->ln1_w, VIS, layer_name(vs, vp, i, "layer_norm1.weight"), 1, Dv, 0, 0, 0);
        EMIT(&l->ln1_b, VIS, layer_name(vs, vp, i, "layer_norm1.bias"), 1, Dv, 0, 0, 0);
        EMIT(&l->q_w, VIS, layer_name(vs, vp, i, "self_attn.q_proj.weight"), 2, Dv, Dv, 0, 0);
        EMIT(&l->q_b, VIS, layer_name(vs, vp, i, "self_attn.q_proj.bias"), 1, Dv, 0, 0, 0);
        EMIT(&l->k_w, VIS, layer_name(vs, vp, i, "self_attn.k_proj.weight"), 2, Dv, Dv, 0, 0);
        EMIT(&l->k_b, VIS, layer_name(vs, vp, i, "self_attn.k_proj.bias"), 1, Dv, 0, 0, 0);
        EMIT(&l->v_w, VIS, layer_name(vs, vp, i, "self_attn.v_proj.weight"), 2, Dv, Dv, 0, 0);
        EMIT(&l->v_b, VIS, layer_name(vs, vp, i, "self_attn.v_proj.bias"), 1, Dv, 0, 0, 0);
        EMIT(&l->o_w, VIS, layer_name(vs, vp, i, "self_attn.out_proj.weight"), 2, Dv, Dv, 0, 0);
        EMIT(&l->o_b, VIS, layer_name(vs, vp, i, "self_attn.out_proj.bias"), 1, Dv, 0, 0, 0);
        EMIT(&l->ln2_w, VIS, layer_name(vs, vp, i, "layer_norm2.weight"), 1, Dv, 0, 0, 0);
        EMIT(&l->ln2_b, VIS, layer_name(vs, vp, i, "layer_norm2.bias"), 1, Dv, 0, 0, 0);
        EMIT(&l->fc1_w, VIS, layer_name(vs, vp, i, "mlp.fc1.weight"), 2, Fv, Dv, 0, 0);
        EMIT(&l->fc1_b, VIS, layer_name(vs, vp, i, "mlp.fc1.bias"), 1, Fv, 0, 0, 0);
        EMIT(&l->fc2_w, VIS, layer_name(vs, vp, i, "mlp.fc2.weight"), 2, Dv, Fv, 0, 0);
        EMIT(&l->fc2_b, VIS, layer_name(vs, vp, i, "mlp.fc2.bias"), 1, Dv, 0, 0, 0);
    }
    EMIT(&w->vit_norm_w, VIS, V_ "post_layernorm.weight", 1, Dv, 0, 0, 0);
    EMIT(&w->vit_norm_b, VIS, V_ "post_layernorm.bias", 1, Dv, 0, 0, 0);
    EMIT(&w->proj_w, VIS, "paligemma_with_expert.paligemma.model.multi_modal_projector.linear.weight",
         2, D, Dv, 0, 0);
    EMIT(&w->proj_b, VIS, "paligemma_with_expert.paligemma.model.multi_modal_projector.linear.bias",
         1, D, 0, 0, 0);

    EMIT(&w->embed, PI0_PART_LLM_EMBED, EMBED_NAME, 2, d->llm.vocab_size, D, 0, 0);
    pi0_status st = visit_gemma(vs, &d->llm, L_, w->llm, PI0_PART_LLM, err);
    if (st != PI0_OK) return st;
    EMIT(&w->llm_norm, PI0_PART_LLM, L_ "norm.weight", 1, D, 0, 0, 0);

    if ((st = visit_gemma(vs, &d->expert, E_, w->expert, PI0_PART_EXPERT, err)) != PI0_OK) return st;
    EMIT(&w->expert_norm, PI0_PART_EXPERT, E_ "norm.weight", 1, De, 0, 0, 0);

    const pi0_part PRJ = PI0_PART_PROJECTIONS;
    EMIT(&w->state_w, PRJ, "state_proj.weight", 2, De, Da, 0, 0);
    EMIT(&w->state_b, PRJ, "state_proj.bias", 1, De, 0, 0, 0);
    EMIT(&w->action_in_w, PRJ, "action_in_proj.weight", 2, De, Da, 0, 0);
    EMIT(&w->action_in_b, PRJ, "action_in_proj.bias", 1, De, 0, 0, 0);
    EMIT(&w->time_in_w, PRJ, "action_time_mlp_in.weight", 2, De, 2 * De, 0, 0);
    EMIT(&w->time_in_b, PRJ, "action_time_mlp_in.bias", 1, De, 0, 0, 0);
    EMIT(&w->time_out_w, PRJ, "action_time_mlp_out.weight", 2, De, De, 0, 0);
    EMIT(&w->time_out_b, PRJ, "action_time_mlp_out.bias", 1, De, 0, 0, 0);
    EMIT(&w->action_out_w, PRJ, "action_out_proj.weight", 2, Da, De, 0, 0);
    EMIT(&w->action_out_b, PRJ, "action_out_proj.bias", 1, Da, 0, 0, 0);
    return PI0_OK;
}

void pi0_weights_free(pi0_weights *w) {
    if (!w) return;
    free(w->vit);
    free(w->llm);
    free(w->expert);
    free(w->names);
    memset(w, 0, sizeof *w);
}

pi0_status pi0_weights_visit(const pi0_dims *d, pi0_weights *w, pi0_weights_visitor fn,
                             void *ctx, pi0_error *err) {
    pi0_status st = pi0_dims_check(d, err);
    if (st != PI0_OK) return st;
    pi0_weights_free(w);
    size_t n_names = 16 * (size_t)d->vision.depth + 9 * (size_t)(d->llm.depth + d->expert.depth);
    w->vit = calloc((size_t)d->vision.depth, sizeof *w->vit);
    w->llm = calloc((size_t)d->llm.depth, sizeof *w->llm);
    w->expert = calloc((size_t)d->expert.depth, sizeof *w->expert);
    w->names = calloc(n_names, NAME_STRIDE);
    if (!w->vit || !w->llm || !w->expert || !w->names) {
        pi0_weights_free(w);
        return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for the weight table");
    }
    visit_state vs = { .d = d, .w = w, .fn = fn, .ctx = ctx };
    return visit_all(&vs, err);
}

pi0_status pi0_weights_each(const pi0_dims *d, pi0_weights *w, pi0_weights_visitor fn, void *ctx,
                            pi0_error *err) {
    if (!w->vit || !w->llm || !w->expert)
        return pi0_fail(err, PI0_ERR_INPUT, "pi0_weights_each on a table that was never filled");
    visit_state vs = { .d = d, .w = w, .fn = fn, .ctx = ctx, .keep = true };
    return visit_all(&vs, err);
}

/* ---- binding to a checkpoint ------------------------------------------------------------- */

typedef struct {
    const pi0_safetensors *f;
} bind_ctx;

static const pi0_st_tensor *find_prefixed(const pi0_safetensors *f, const char *name) {
    const pi0_st_tensor *t = pi0_safetensors_find(f, name);
    if (t) return t;
    char buf[2 * NAME_STRIDE];
    snprintf(buf, sizeof buf, "model.%s", name);     /* LeRobot */
    return pi0_safetensors_find(f, buf);
}

/* Replaces the prefix `from` of name by `to`; false if name does not start with it. */
static bool rename_prefix(char *dst, size_t size, const char *name, const char *from, const char *to) {
    size_t n = strlen(from);
    if (strncmp(name, from, n)) return false;
    snprintf(dst, size, "%s%s", to, name + n);
    return true;
}

/* The tensor a canonical name refers to, under any of the names files use for it:
 * canonical; LeRobot's "model." prefix; the embed_tokens alias of the embedding; LeRobot's
 * time_mlp_in/out; and the older LeRobot module tree (PI0_SPEC 4.6). */
static const pi0_st_tensor *find_any(const pi0_safetensors *f, const char *name) {
    const pi0_st_tensor *t = find_prefixed(f, name);
    if (t) return t;
    char alt[NAME_STRIDE + 32];
    if (!strcmp(name, EMBED_NAME)) {
        static const char *const aliases[] = {
            L_ "embed_tokens.weight",
            "paligemma_with_expert.paligemma.language_model.model.embed_tokens.weight",
            "paligemma_with_expert.paligemma.language_model.lm_head.weight",
        };
        for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
            if ((t = find_prefixed(f, aliases[i]))) return t;
        return NULL;
    }
    if (rename_prefix(alt, sizeof alt, name, "action_time_mlp_", "time_mlp_") ||
        rename_prefix(alt, sizeof alt, name, "paligemma_with_expert.paligemma.model.language_model.",
                      "paligemma_with_expert.paligemma.language_model.model.") ||
        rename_prefix(alt, sizeof alt, name, "paligemma_with_expert.paligemma.model.",
                      "paligemma_with_expert.paligemma."))
        return find_prefixed(f, alt);
    return NULL;
}

static pi0_status bind_one(void *ctx, pi0_tensor *slot, pi0_part part, pi0_error *err) {
    const bind_ctx *bc = ctx;
    const pi0_st_tensor *t = find_any(bc->f, slot->name);
    char want[128], got[128];
    if (!t) return pi0_fail(err, PI0_ERR_FORMAT, "missing tensor %s", slot->name);
    if (t->dtype != PI0_DT_F32 && t->dtype != PI0_DT_BF16)
        return pi0_fail(err, PI0_ERR_FORMAT, "tensor %s has dtype %s, expected F32 or BF16", t->name,
                        pi0_dtype_name(t->dtype));
    bool same = t->ndim == slot->ndim;
    for (int i = 0; same && i < t->ndim; i++) same = t->shape[i] == slot->shape[i];
    if (!same)
        return pi0_fail(err, PI0_ERR_SHAPE, "tensor %s has shape %s, expected %s", t->name,
                        pi0_shape_str(got, sizeof got, t->ndim, t->shape),
                        pi0_shape_str(want, sizeof want, slot->ndim, slot->shape));
    slot->dtype = t->dtype;
    slot->data = t->data;
    return PI0_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Pi0.5 replaces the plain norm scales with adaRMS modulation layers (".dense.") and the
 * action-time MLP with time_mlp_in/out, and has no state_proj (PI0_SPEC 4.5). */
static pi0_status refuse_pi05(const pi0_safetensors *f, pi0_error *err) {
    bool has_state = find_prefixed(f, "state_proj.weight") != NULL;
    for (int i = 0; i < pi0_safetensors_count(f); i++) {
        const char *name = pi0_safetensors_at(f, i)->name;
        bool adarms = strstr(name, "layernorm.dense.") || strstr(name, "norm.dense.");
        bool time_mlp = !has_state && ends_with(name, "time_mlp_in.weight");
        if (adarms || time_mlp)
            return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                            "this checkpoint is Pi0.5 (it has tensor %s): Pi0.5 is not supported, "
                            "only Pi0", name);
    }
    return PI0_OK;
}

pi0_status pi0_weights_bind(pi0_weights *w, const pi0_dims *d, const pi0_safetensors *f,
                            pi0_error *err) {
    pi0_status st = refuse_pi05(f, err);
    if (st != PI0_OK) return st;
    bind_ctx bc = { .f = f };
    st = pi0_weights_visit(d, w, bind_one, &bc, err);
    if (st != PI0_OK) pi0_weights_free(w);
    return st;
}

/* ---- float32 views ----------------------------------------------------------------------- */

/* src may be unaligned (it points into a file mapping): read through memcpy. */
static void to_f32(pi0_dtype dtype, const uint8_t *src, size_t n, float *dst) {
    if (dtype == PI0_DT_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, sizeof h);
        dst[i] = pi0_bf16_to_f32(h);
    }
}

void pi0_tensor_to_f32(const pi0_tensor *t, float *dst) {
    to_f32(t->dtype, t->data, t->n_elems, dst);
}

void pi0_tensor_rows_to_f32(const pi0_tensor *t, int64_t row0, int64_t n_rows, float *dst) {
    size_t row = t->ndim > 0 && t->shape[0] > 0 ? t->n_elems / (size_t)t->shape[0] : 0;
    size_t esize = pi0_dtype_size(t->dtype);
    to_f32(t->dtype, (const uint8_t *)t->data + (size_t)row0 * row * esize, (size_t)n_rows * row, dst);
}

/* ---- random weights ---------------------------------------------------------------------- */

/* Each element's value depends only on (seed, tensor index, element index): the counter-based
 * form of rng.h feeding Box-Muller. Any split of the work over threads gives the same bytes. */

typedef enum { INIT_NORMAL, INIT_ONE_PLUS } init_kind;

typedef struct {
    pi0_tensor *slot;
    void *dst;                   /* into the storage */
    float std;
    init_kind kind;
    uint64_t key;                /* per-tensor stream */
} random_job;

typedef struct {
    random_job *jobs;
    int n_jobs, cap;
    size_t bytes;                /* storage size so far */
    pi0_dtype dtype;
    uint64_t seed;
    const pi0_dims *d;
} random_plan;

/* The scales of the reference's --random-init (reference README, weights.h): Linear and conv
 * weights N(0, 1/fan_in), embeddings N(0, 1/width), biases and RMSNorm scales N(0, 0.1),
 * LayerNorm gains 1 + N(0, 0.1) (as std: the values are std 0.1 around their centre). */
static void pick_scale(const pi0_tensor *t, float *std, init_kind *kind) {
    const char *n = t->name;
    *kind = INIT_NORMAL;
    bool vision_ln = strstr(n, "vision_model.") && (strstr(n, "layer_norm") || strstr(n, "post_layernorm"));
    if (vision_ln) {
        *std = 0.1f;
        if (ends_with(n, ".weight")) *kind = INIT_ONE_PLUS;
    } else if (ends_with(n, "norm.weight") || ends_with(n, ".bias")) {
        *std = 0.1f;
    } else if (!strcmp(n, EMBED_NAME) || ends_with(n, "position_embedding.weight")) {
        *std = 1.0f / sqrtf((float)t->shape[1]);
    } else {
        int64_t fan_in = 1;
        for (int i = 1; i < t->ndim; i++) fan_in *= t->shape[i];
        *std = 1.0f / sqrtf((float)fan_in);
    }
}

static pi0_status plan_one(void *ctx, pi0_tensor *slot, pi0_part part, pi0_error *err) {
    random_plan *p = ctx;
    if (p->n_jobs == p->cap) {
        int cap = p->cap ? 2 * p->cap : 1024;
        random_job *g = realloc(p->jobs, (size_t)cap * sizeof *g);
        if (!g) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory planning random weights");
        p->jobs = g;
        p->cap = cap;
    }
    random_job *j = &p->jobs[p->n_jobs];
    j->slot = slot;
    j->dst = (void *)(uintptr_t)p->bytes;   /* offset now; pointer once storage exists */
    j->key = pi0_rng_mix64(p->seed ^ pi0_rng_mix64(PI0_RNG_GAMMA * (uint64_t)(p->n_jobs + 1)));
    pick_scale(slot, &j->std, &j->kind);
    slot->dtype = p->dtype;
    p->bytes += pi0_align_up(slot->n_elems * pi0_dtype_size(p->dtype), 64);
    p->n_jobs++;
    return PI0_OK;
}

/* Work is cut into chunks of CHUNK elements (even, so a Box-Muller pair never straddles two
 * chunks), handed out through an atomic counter. */
enum { CHUNK = 1 << 18 };

typedef struct {
    random_plan *plan;
    size_t *chunk_start;         /* [n_jobs + 1] prefix sums of chunks per job */
    size_t n_chunks;
    atomic_size_t next;
} random_work;

static void fill_chunk(const random_plan *p, const random_job *j, size_t i0, size_t i1) {
    const float two_pi = 6.28318530717958647692f;
    for (size_t i = i0; i < i1; i += 2) {
        uint64_t r = pi0_rng_mix64(j->key + (uint64_t)(i / 2) * PI0_RNG_GAMMA);
        float u1 = ((float)(uint32_t)(r >> 40) + 1.0f) * 0x1p-24f;       /* (0, 1] */
        float u2 = (float)(uint32_t)((r >> 8) & 0xffffffu) * 0x1p-24f;   /* [0, 1) */
        float rad = sqrtf(-2.0f * logf(u1));
        float z[2] = { rad * cosf(two_pi * u2), rad * sinf(two_pi * u2) };
        for (size_t k = 0; k < 2 && i + k < i1; k++) {
            float v = z[k] * j->std + (j->kind == INIT_ONE_PLUS ? 1.0f : 0.0f);
            if (p->dtype == PI0_DT_F32) ((float *)j->dst)[i + k] = v;
            else ((uint16_t *)j->dst)[i + k] = pi0_f32_to_bf16(v);
        }
    }
}

static void *random_worker(void *arg) {
    random_work *wk = arg;
    const random_plan *p = wk->plan;
    int job = 0;
    for (;;) {
        size_t c = atomic_fetch_add(&wk->next, 1);
        if (c >= wk->n_chunks) break;
        while (wk->chunk_start[job + 1] <= c) job++;   /* chunks are taken in increasing order */
        const random_job *j = &p->jobs[job];
        size_t i0 = (c - wk->chunk_start[job]) * CHUNK;
        size_t i1 = i0 + CHUNK < j->slot->n_elems ? i0 + CHUNK : j->slot->n_elems;
        fill_chunk(p, j, i0, i1);
    }
    return NULL;
}

pi0_status pi0_weights_random(pi0_weights *w, const pi0_dims *d, pi0_dtype dtype, uint64_t seed,
                              void **storage, pi0_error *err) {
    *storage = NULL;
    if (dtype != PI0_DT_F32 && dtype != PI0_DT_BF16)
        return pi0_fail(err, PI0_ERR_INPUT, "random weights must be F32 or BF16, not %s",
                        pi0_dtype_name(dtype));
    random_plan plan = { .dtype = dtype, .seed = seed, .d = d };
    pi0_status st = pi0_weights_visit(d, w, plan_one, &plan, err);
    size_t *chunk_start = NULL;
    uint8_t *base = NULL;
    if (st != PI0_OK) goto fail;
    base = malloc(plan.bytes ? plan.bytes : 1);
    chunk_start = malloc(((size_t)plan.n_jobs + 1) * sizeof *chunk_start);
    if (!base || !chunk_start) {
        st = pi0_fail(err, PI0_ERR_NOMEM, "out of memory for %zu bytes of random weights", plan.bytes);
        goto fail;
    }
    chunk_start[0] = 0;
    for (int i = 0; i < plan.n_jobs; i++) {
        random_job *j = &plan.jobs[i];
        j->dst = base + (uintptr_t)j->dst;
        j->slot->data = j->dst;
        chunk_start[i + 1] = chunk_start[i] + (j->slot->n_elems + CHUNK - 1) / CHUNK;
    }
    random_work wk = { .plan = &plan, .chunk_start = chunk_start, .n_chunks = chunk_start[plan.n_jobs] };
    atomic_init(&wk.next, 0);
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    int n_threads = n_cpu < 1 ? 1 : n_cpu > 64 ? 64 : (int)n_cpu;
    if ((size_t)n_threads > wk.n_chunks) n_threads = wk.n_chunks ? (int)wk.n_chunks : 1;
    pthread_t tid[64];
    int started = 0;
    for (; started < n_threads - 1; started++)
        if (pthread_create(&tid[started], NULL, random_worker, &wk) != 0) break;
    random_worker(&wk);   /* this thread works too; with no helpers it does everything */
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
    free(chunk_start);
    free(plan.jobs);
    *storage = base;
    return PI0_OK;
fail:
    free(chunk_start);
    free(base);
    free(plan.jobs);
    pi0_weights_free(w);
    return st;
}
