/* policy.h - openpi's serving transforms around the model (SERVING_SPEC 2-3): a request
 * (msgpack with numpy arrays) becomes one model row; the model's actions become a reply.
 * Robot presets (droid, aloha, aloha_sim, libero, ...) are data, not code paths. */
#ifndef PI0_POLICY_H
#define PI0_POLICY_H

#include "common.h"
#include "tokenizer/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pi0_policy pi0_policy;

typedef struct {
    const char *preset;          /* droid, aloha, aloha_sim, aloha_towel, aloha_tupperware, libero */
    const char *norm_stats_path; /* norm_stats.json; NULL: <model_dir>/assets/<asset id>/norm_stats.json */
    const char *model_dir;       /* used to find the default norm stats */
    const pi0_tokenizer *tokenizer; /* borrowed */
    const char *default_prompt;  /* overrides the preset's; NULL for none */
    int action_horizon;          /* A of the model */
    int action_dim;              /* 32 */
    int max_token_len;           /* 48 */
    int image_size;              /* 224 */
} pi0_policy_options;

pi0_status pi0_policy_open(pi0_policy **out, const pi0_policy_options *opt, pi0_error *err);
void pi0_policy_close(pi0_policy *p);                  /* NULL is a no-op */
/* Names of the presets, NULL-terminated, for --help and error messages. */
const char *const *pi0_policy_preset_names(void);

/* The metadata message sent after the handshake (msgpack bytes, owned by p). */
const uint8_t *pi0_policy_metadata(const pi0_policy *p, size_t *len);

/* One request turned into one model row (SERVING_SPEC 3.1 input chain). Buffers are owned by
 * the row and reused across calls (allocate with pi0_policy_row_alloc). */
typedef struct {
    int n_cameras;               /* 3 */
    int image_size;              /* S */
    float *images;               /* [3, S, S, 3] in [-1, 1] */
    uint8_t image_masks[PI0_MAX_CAMERAS];
    int n_tokens;                /* L */
    int32_t *tokens;             /* [L] */
    uint8_t *token_mask;         /* [L] */
    int action_dim;              /* 32 */
    float *state;                /* [32] normalized, zero-padded: the model input */
    double *state_unnorm;        /* [32] unnormalize(float32(normalize(state))), for deltas */
} pi0_policy_row;

pi0_status pi0_policy_row_alloc(const pi0_policy *p, pi0_policy_row *row, pi0_error *err);
void pi0_policy_row_free(pi0_policy_row *row);

/* Decodes a msgpack request and runs the input transforms. Errors name the offending key. */
pi0_status pi0_policy_prepare(const pi0_policy *p, const uint8_t *msg, size_t len,
                              pi0_policy_row *row, pi0_error *err);

typedef struct {
    double policy_infer_ms;      /* the model call, device-complete */
    double server_infer_ms;      /* transforms + model + output transforms */
    double prev_total_ms;        /* < 0: absent (first reply of a connection) */
} pi0_reply_timing;

/* Output transforms on actions [A, action_dim] (unnormalize, deltas, slice, robot conversions)
 * and the msgpack reply map (actions <f8 [A, D_robot], policy_timing, server_timing).
 * *out is malloc'd; the caller frees it. */
pi0_status pi0_policy_reply(const pi0_policy *p, const pi0_policy_row *row, const float *actions,
                            const pi0_reply_timing *timing, uint8_t **out, size_t *out_len,
                            pi0_error *err);

#ifdef __cplusplus
}
#endif
#endif
