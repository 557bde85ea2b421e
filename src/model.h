/* model.h - what a pi0_model holds, and what a backend provides. Internal. */
#ifndef PI0_MODEL_H
#define PI0_MODEL_H

#include "common.h"
#include "safetensors.h"
#include "weights.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A backend: open converts/uploads the weights in m->w and sizes its buffers;
 * upload/run/download implement the public functions of the same name (inputs already
 * checked by pi0.c); close frees m->backend. */
typedef struct {
    const char *name;
    pi0_status (*open)(pi0_model *m, pi0_error *err);
    pi0_status (*upload)(pi0_model *m, const pi0_batch *in, pi0_error *err);
    pi0_status (*run)(pi0_model *m, pi0_run_mode mode, pi0_timing *timing, pi0_error *err);
    pi0_status (*download)(pi0_model *m, pi0_outputs *out, pi0_error *err);
    void (*close)(pi0_model *m);
} pi0_backend_ops;

extern const pi0_backend_ops pi0_backend_cpu;
extern const pi0_backend_ops pi0_backend_cuda;   /* src/cuda/, or src/cuda_absent.c */
extern const int pi0_cuda_built;                 /* 1 when src/cuda/ was compiled in */

struct pi0_model {
    pi0_options opt;             /* model_dir/random_dims point into our own copies below */
    char *model_dir;             /* owned copy, or NULL */
    pi0_dims dims;
    pi0_safetensors *file;       /* owned: the checkpoint mapping, or NULL for random weights */
    void *random_storage;        /* owned: random weights, or NULL */
    pi0_weights w;               /* slots borrowed from file or random_storage */
    const pi0_backend_ops *ops;
    void *backend;               /* owned by ops */
    pi0_batch last;              /* shape of the last upload (pointers not kept) */
    char device_name[256];       /* filled by the backend's open */
};

/* Sends one line to opt.log if set. */
void pi0_log(const pi0_model *m, const char *fmt, ...) PI0_PRINTF(2, 3);

/* Prefix layout of a batch (PI0_SPEC 2.4, 2.11), computed on the host from the masks.
 * With skip, cameras masked in every row are dropped entirely. */
typedef struct {
    int n_cams_kept;             /* cameras that go through SigLIP */
    int cam_index[PI0_MAX_CAMERAS]; /* kept camera k is input camera cam_index[k] */
    int P;                       /* prefix length = n_cams_kept * N + L */
} pi0_prefix_layout;

void pi0_prefix_layout_make(pi0_prefix_layout *lay, const pi0_dims *d, const pi0_batch *in,
                            int skip_masked);
/* prefix pad mask [B, P] (1 = valid), positions [B, P] (cumsum - 1) and n_valid [B]. */
void pi0_prefix_masks(const pi0_prefix_layout *lay, const pi0_dims *d, const pi0_batch *in,
                      uint8_t *pad, int32_t *pos, int32_t *n_valid);

/* The float32 time values of the Euler loop: t_0 = 1, t_{k+1} = t_k + dt, dt = -1/n, in
 * float32 as openpi accumulates them (PI0_SPEC 2.10). Returns dt. */
float pi0_euler_times(int n_steps, float *t);
/* The time embedding of PI0_SPEC 2.7 in float32, in the order the reference README gives:
 * fraction = i / (half - 1), period = 4e-3 * 1000^fraction, freq = (1/period) * 2pi,
 * angle = t * freq; out[0:half] = sin, out[half:2 half] = cos. width = 2 * half. */
void pi0_time_embedding(float t, int width, float *out);

#ifdef __cplusplus
}
#endif
#endif
