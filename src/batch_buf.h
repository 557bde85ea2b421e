/* batch_buf.h - host arrays holding the inputs of pi0_model_sample (PI0_SPEC 5.1) for up to B
 * rows, row-major with the batch first. `pi0 infer` fills them from an inputs file, `pi0 bench`
 * with its random workload, the server's worker with transformed requests. Only the arrays:
 * what goes in them is the caller's business.
 * C cameras, S image size, L prompt slots, A horizon, Da action dim. */
#ifndef PI0_BATCH_BUF_H
#define PI0_BATCH_BUF_H

#include <stdint.h>

#include "pi0.h"

typedef struct {
    int B, C, S, L, A, Da;       /* B: rows held; a batch may use the first few */
    float *images;               /* [B, C, S, S, 3] */
    uint8_t *image_masks;        /* [B, C] */
    int32_t *tokens;             /* [B, L] */
    uint8_t *token_mask;         /* [B, L] */
    float *state;                /* [B, Da] */
    float *noise;                /* [B, A, Da] */
} pi0_batch_buf;

/* Allocates every array for these sizes (contents undefined). Returns 0, or -1 when memory ran
 * out, with nothing left allocated. */
int pi0_batch_buf_alloc(pi0_batch_buf *b, int B, int C, int S, int L, int A, int Da);

/* Frees the arrays and zeroes *b; a zeroed pi0_batch_buf is fine. */
void pi0_batch_buf_free(pi0_batch_buf *b);

/* The first n_rows rows as a batch for pi0_model_sample (borrowing the arrays). */
pi0_batch pi0_batch_buf_rows(const pi0_batch_buf *b, int n_rows, int num_steps);

/* Row r alone as a one-row batch (borrowing the arrays). */
pi0_batch pi0_batch_buf_row(const pi0_batch_buf *b, int r, int num_steps);

#endif
