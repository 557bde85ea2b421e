/* policy_internal.h - the pieces behind policy.h, shared by the files of src/policy and by the
 * tests: robot presets (presets.c), norm stats (norm_stats.c), Pillow's bilinear resize
 * (resize.c) and the per-key transforms (transforms.c). Not a public interface. */
#ifndef PI0_POLICY_INTERNAL_H
#define PI0_POLICY_INTERNAL_H

#include "common.h"
#include "policy/msgpack_numpy.h"
#include "policy/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    PI0_PRESET_MAX_STATE = 14,   /* ALOHA's 14 is the longest robot state */
    PI0_PRESET_MAX_SOURCES = 4,  /* ALOHA's four cameras */
};

/* ---- presets.c: SERVING_SPEC 3.3-3.6 as data -------------------------------------------- */

typedef enum { PI0_ROBOT_DROID, PI0_ROBOT_ALOHA, PI0_ROBOT_LIBERO } pi0_robot;

typedef struct {
    const char *key;             /* request key, e.g. observation/joint_position */
    int n;                       /* numbers it holds; n == 1 also takes a bare scalar */
} pi0_state_part;

typedef struct {
    const char *key;             /* request key, or camera name inside images_map */
    int slot;                    /* 0 base, 1 left wrist, 2 right wrist; -1 accepted, unused */
    bool required;
} pi0_camera_source;

typedef struct {
    const char *name;            /* droid, aloha, ... (pi0 serve --policy) */
    const char *config;          /* openpi's training config, e.g. pi0_droid */
    pi0_robot robot;
    const char *robot_name;      /* DROID, ALOHA, LIBERO: for messages */
    int horizon;                 /* openpi's H for the config (the model's A is what is used) */
    int n_state_parts;
    pi0_state_part state_parts[2];
    int state_dim;               /* sum of the parts */
    const char *images_map;      /* NULL: cameras are top-level keys; else the map holding them */
    bool channel_first_only;     /* ALOHA: images must be [3, H, W] */
    int n_sources;
    pi0_camera_source sources[PI0_PRESET_MAX_SOURCES];
    bool aloha_convert;          /* SERVING_SPEC 3.4 state/action conversions (adapt_to_pi) */
    int reply_dim;               /* D_robot */
    int n_delta;                 /* length of the delta mask; 0: absolute actions */
    uint8_t delta_mask[PI0_PRESET_MAX_STATE];
    const char *default_prompt;  /* NULL for none */
    const char *asset_id;        /* <model_dir>/assets/<asset_id>/norm_stats.json */
    bool reset_pose;             /* metadata {"reset_pose": [0, -1.5, 1.5, 0, 0, 0]}; else {} */
} pi0_preset;

/* The preset called name, or NULL. */
const pi0_preset *pi0_preset_find(const char *name);

/* ---- norm_stats.c: z-score statistics (SERVING_SPEC 3.8, 3.10) --------------------------- */

typedef struct {
    int dim;                     /* padded length: the model's action dim (32) */
    int n_state, n_actions;      /* entries the file gives for each (usable for normalizing) */
    double *state_mean, *state_std;       /* [dim], padded with 0 and 1 */
    double *actions_mean, *actions_std;   /* [dim], padded with 0 and 1 */
} pi0_norm_stats;

/* Parses a norm_stats.json text; `where` names it in messages. Vectors may be shorter than dim
 * (padded) or exactly dim; q01/q99 may be null or absent (unused by z-score). */
pi0_status pi0_norm_stats_parse(pi0_norm_stats *ns, const char *json, size_t len, int dim,
                                const char *where, pi0_error *err);
/* Reads the file; a missing file gets a message saying where openpi checkpoints carry it. */
pi0_status pi0_norm_stats_load(pi0_norm_stats *ns, const char *path, int dim, pi0_error *err);
void pi0_norm_stats_free(pi0_norm_stats *ns);            /* zeroed or loaded */

/* ---- resize.c: openpi's resize_with_pad with Pillow's bilinear filter (SERVING_SPEC 3.7) -- */

typedef struct {
    int n_in, n_out, ksize;
    int *lo, *n;                 /* [n_out]: first input index and tap count of each output */
    int32_t *w;                  /* [n_out, ksize]: weights in 22-bit fixed point */
} pi0_resample_axis;

pi0_status pi0_resample_axis_init(pi0_resample_axis *ax, int n_in, int n_out, pi0_error *err);
void pi0_resample_axis_free(pi0_resample_axis *ax);

/* Output size of resize_with_pad's resample step for an h x w image and an out_h x out_w target
 * (both zero when the image is too thin to keep a pixel). */
void pi0_resize_pad_size(int h, int w, int out_h, int out_w, int *h_r, int *w_r);

/* src [h, w, 3] uint8 -> dst [out_h, out_w, 3] uint8 with Pillow's Image.resize(BILINEAR). */
pi0_status pi0_resize_bilinear(uint8_t *dst, int out_h, int out_w, const uint8_t *src, int h, int w,
                               pi0_error *err);

/* src [h, w, 3] uint8 -> dst [out_h, out_w, 3] uint8, resampled like Pillow's Image.resize
 * (bilinear), aspect kept, centered on black. Same size: copied unchanged. */
pi0_status pi0_resize_with_pad(uint8_t *dst, int out_h, int out_w, const uint8_t *src, int h, int w,
                               pi0_error *err);

/* ---- transforms.c: one request key at a time ------------------------------------------- */

/* n numbers from a list or a 1-D numeric array of length n (n == 1: also a scalar or a 0-d
 * array). Non-finite values are refused. Messages start with key. */
pi0_status pi0_read_numbers(const pi0_msg_value *v, const char *key, int n, double *out, pi0_error *err);

/* A request image as HWC uint8 (malloc'd into *out): float pixels become uint8(255 * v), CHW is
 * transposed (channel_first_only: it must be CHW). */
pi0_status pi0_image_to_hwc(const pi0_msg_value *v, const char *key, bool channel_first_only,
                            uint8_t **out, int *h, int *w, pi0_error *err);

/* uint8 pixels to the model's floats: ((float)u / 255) * 2 - 1, in float (SERVING_SPEC 3.2). */
void pi0_image_to_float(float *dst, const uint8_t *src, size_t n);

/* ALOHA state into pi space and actions back (SERVING_SPEC 3.4), in place, 14 entries. */
void pi0_aloha_state_to_pi(double *s);
void pi0_aloha_actions_from_pi(double *a);

/* The request's prompt as UTF-8: a str, bytes, or a one-element <U / |S array. *text borrows
 * the message or, for <U arrays, points to *owned (malloc'd; free it). */
pi0_status pi0_prompt_from_value(const pi0_msg_value *v, const char **text, size_t *len, char **owned,
                                 pi0_error *err);

/* ---- policy.c ------------------------------------------------------------------------------ */

/* The reply map (SERVING_SPEC 1.6) for actions [A, D] already in robot units: actions as <f8,
 * policy_timing, server_timing (prev_total_ms only when >= 0). *out is malloc'd. */
pi0_status pi0_reply_encode(const double *actions, int A, int D, const pi0_reply_timing *timing, uint8_t **out,
                            size_t *out_len, pi0_error *err);

#ifdef __cplusplus
}
#endif
#endif
