/* batch_buf.c - allocation and views of the host input arrays (infer, bench, the server). */
#include "batch_buf.h"

#include <stdlib.h>
#include <string.h>

/* malloc that never asks for 0 bytes, so an empty array (L = 0) is not mistaken for no memory. */
static void *alloc_bytes(size_t n) { return malloc(n ? n : 1); }

int pi0_batch_buf_alloc(pi0_batch_buf *b, int B, int C, int S, int L, int A, int Da) {
    *b = (pi0_batch_buf){ .B = B, .C = C, .S = S, .L = L, .A = A, .Da = Da };
    b->images = alloc_bytes((size_t)B * C * S * S * 3 * sizeof *b->images);
    b->image_masks = alloc_bytes((size_t)B * C);
    b->tokens = alloc_bytes((size_t)B * L * sizeof *b->tokens);
    b->token_mask = alloc_bytes((size_t)B * L);
    b->state = alloc_bytes((size_t)B * Da * sizeof *b->state);
    b->noise = alloc_bytes((size_t)B * A * Da * sizeof *b->noise);
    if (!b->images || !b->image_masks || !b->tokens || !b->token_mask || !b->state || !b->noise) {
        pi0_batch_buf_free(b);
        return -1;
    }
    return 0;
}

void pi0_batch_buf_free(pi0_batch_buf *b) {
    free(b->images);
    free(b->image_masks);
    free(b->tokens);
    free(b->token_mask);
    free(b->state);
    free(b->noise);
    memset(b, 0, sizeof *b);
}

pi0_batch pi0_batch_buf_rows(const pi0_batch_buf *b, int n_rows, int num_steps) {
    return (pi0_batch){
        .batch = n_rows, .n_cameras = b->C, .images = b->images, .image_masks = b->image_masks,
        .n_tokens = b->L, .tokens = b->tokens, .token_mask = b->token_mask, .state = b->state,
        .noise = b->noise, .horizon = b->A, .num_steps = num_steps,
    };
}

pi0_batch pi0_batch_buf_row(const pi0_batch_buf *b, int r, int num_steps) {
    pi0_batch one = pi0_batch_buf_rows(b, 1, num_steps);
    one.images += (size_t)r * b->C * b->S * b->S * 3;
    one.image_masks += (size_t)r * b->C;
    one.tokens += (size_t)r * b->L;
    one.token_mask += (size_t)r * b->L;
    one.state += (size_t)r * b->Da;
    one.noise += (size_t)r * b->A * b->Da;
    return one;
}
