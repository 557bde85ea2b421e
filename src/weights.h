/* weights.h - the tensor table of Pi0: every tensor inference uses, by role, with its
 * checkpoint name and shape (PI0_SPEC 4.2). One table serves the loader (presence, dtype and
 * shape checks), the random-weight writer and `pi0 inspect`. */
#ifndef PI0_WEIGHTS_H
#define PI0_WEIGHTS_H

#include "common.h"
#include "safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One weight tensor. data is F32 or BF16 (dtype), borrowed from the checkpoint mapping or from
 * the random-weight buffer, possibly unaligned: read it through pi0_tensor_to_f32. */
typedef struct {
    const char *name;            /* canonical checkpoint name (no "model." prefix); static or owned by pi0_weights */
    pi0_dtype dtype;             /* PI0_DT_F32 or PI0_DT_BF16 */
    int ndim;
    int64_t shape[4];
    size_t n_elems;
    const void *data;            /* borrowed */
} pi0_tensor;

/* SigLIP encoder block (PI0_SPEC 2.2). Linear weights [out, in]. */
typedef struct {
    pi0_tensor ln1_w, ln1_b;                     /* [Dv] */
    pi0_tensor q_w, q_b, k_w, k_b, v_w, v_b;     /* [Dv, Dv], [Dv] */
    pi0_tensor o_w, o_b;                         /* [Dv, Dv], [Dv] */
    pi0_tensor ln2_w, ln2_b;                     /* [Dv] */
    pi0_tensor fc1_w, fc1_b;                     /* [Fv, Dv], [Fv] */
    pi0_tensor fc2_w, fc2_b;                     /* [Dv, Fv], [Dv] */
} pi0_vit_layer;

/* Gemma block (PI0_SPEC 2.5), for the LLM (W = 2048) and the expert (W = 1024). No biases. */
typedef struct {
    pi0_tensor attn_norm;                        /* [W] input_layernorm, gain 1 + s */
    pi0_tensor q, k, v;                          /* [H*Dh, W], [K*Dh, W], [K*Dh, W] */
    pi0_tensor o;                                /* [W, H*Dh] */
    pi0_tensor ffw_norm;                         /* [W] post_attention_layernorm = pre-MLP norm */
    pi0_tensor gate, up;                         /* [F, W] */
    pi0_tensor down;                             /* [W, F] */
} pi0_gemma_layer;

typedef struct {
    pi0_tensor patch_w, patch_b;                 /* [Dv, 3, p, p], [Dv] */
    pi0_tensor pos_emb;                          /* [N, Dv] */
    pi0_vit_layer *vit;                          /* [vision.depth], owned */
    pi0_tensor vit_norm_w, vit_norm_b;           /* [Dv] post_layernorm */
    pi0_tensor proj_w, proj_b;                   /* [D, Dv], [D] multi_modal_projector */
    pi0_tensor embed;                            /* [V, D] token embedding (lm_head alias) */
    pi0_gemma_layer *llm;                        /* [llm.depth], owned */
    pi0_tensor llm_norm;                         /* [D] never used by Pi0, but checked */
    pi0_gemma_layer *expert;                     /* [expert.depth], owned */
    pi0_tensor expert_norm;                      /* [De] */
    pi0_tensor state_w, state_b;                 /* [De, Da], [De] state_proj */
    pi0_tensor action_in_w, action_in_b;         /* [De, Da], [De] action_in_proj */
    pi0_tensor time_in_w, time_in_b;             /* [De, 2*De], [De] action_time_mlp_in */
    pi0_tensor time_out_w, time_out_b;           /* [De, De], [De] action_time_mlp_out */
    pi0_tensor action_out_w, action_out_b;       /* [Da, De], [Da] action_out_proj */
    char *names;                                 /* owned storage for the per-layer names */
} pi0_weights;

/* Which part of the model a tensor belongs to (for parameter counts). */
typedef enum { PI0_PART_VISION, PI0_PART_LLM_EMBED, PI0_PART_LLM, PI0_PART_EXPERT,
               PI0_PART_PROJECTIONS } pi0_part;

/* Calls fn once per tensor of the model, in checkpoint order, with the slot to fill, its
 * canonical name and expected shape. Allocates w->vit/llm/expert/names first (free with
 * pi0_weights_free). Returns the first failure of fn, or PI0_ERR_NOMEM. */
typedef pi0_status (*pi0_weights_visitor)(void *ctx, pi0_tensor *slot, pi0_part part,
                                          pi0_error *err);
pi0_status pi0_weights_visit(const pi0_dims *d, pi0_weights *w, pi0_weights_visitor fn,
                             void *ctx, pi0_error *err);
void pi0_weights_free(pi0_weights *w);
/* Calls fn once per slot of a table already filled by pi0_weights_visit/bind/random, in the
 * same order, leaving names, shapes and data as they are (`pi0 inspect`, `pi0 init-random`). */
pi0_status pi0_weights_each(const pi0_dims *d, pi0_weights *w, pi0_weights_visitor fn, void *ctx,
                            pi0_error *err);

/* Fills every slot of w from the checkpoint f: accepts the canonical names, the "model."
 * prefix of LeRobot files, the lm_head/embed_tokens aliases of the embedding and older
 * LeRobot names; checks dtype (F32 or BF16) and shape; reports the first problem by name. */
pi0_status pi0_weights_bind(pi0_weights *w, const pi0_dims *d, const pi0_safetensors *f,
                            pi0_error *err);

/* Converts (or copies) t into dst[t->n_elems] as float32. */
void pi0_tensor_to_f32(const pi0_tensor *t, float *dst);
/* Same for the rows [row0, row0 + n_rows) of a 2-D tensor (embedding gathers). */
void pi0_tensor_rows_to_f32(const pi0_tensor *t, int64_t row0, int64_t n_rows, float *dst);

/* Random weights of realistic scale (PI0_SPEC / reference README: Linear N(0, 1/fan_in),
 * embeddings N(0, 1/width), biases N(0, 0.1), RMSNorm scales N(0, 0.1), LayerNorm gains
 * 1 + N(0, 0.1)), deterministic for a seed whatever the thread count. The data lives in one
 * owned buffer (*storage, free with free()); w's slots point into it. */
pi0_status pi0_weights_random(pi0_weights *w, const pi0_dims *d, pi0_dtype dtype, uint64_t seed,
                              void **storage, pi0_error *err);

#ifdef __cplusplus
}
#endif
#endif
