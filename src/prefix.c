/* prefix.c - the layout of the prefix for one batch (PI0_SPEC 2.4, 2.11): which cameras go
 * through SigLIP, and per row the pad mask, the RoPE positions and the count of valid tokens.
 * Host-side bookkeeping shared by every backend; it computes nothing on tensors.
 * B batch, C cameras, N tokens per camera, L prompt slots, P prefix length. */
#include "model.h"

void pi0_prefix_layout_make(pi0_prefix_layout *lay, const pi0_dims *d, const pi0_batch *in,
                            int skip_masked) {
    const int n_side = d->image_size / d->patch_size, N = n_side * n_side;
    memset(lay, 0, sizeof *lay);
    for (int c = 0; c < in->n_cameras; c++) {
        /* A camera masked in every row changes nothing but its own (unread) rows: dropping it
         * is exact in real arithmetic (PI0_SPEC 2.11). A camera present in any row stays. */
        int present = !skip_masked;
        for (int b = 0; b < in->batch && !present; b++)
            present = in->image_masks[(size_t)b * in->n_cameras + c] != 0;
        if (present) lay->cam_index[lay->n_cams_kept++] = c;
    }
    lay->P = lay->n_cams_kept * N + in->n_tokens;
}

void pi0_prefix_masks(const pi0_prefix_layout *lay, const pi0_dims *d, const pi0_batch *in,
                      uint8_t *pad, int32_t *pos, int32_t *n_valid) {
    const int n_side = d->image_size / d->patch_size, N = n_side * n_side;
    const int P = lay->P, C = in->n_cameras, L = in->n_tokens;
    for (int b = 0; b < in->batch; b++) {
        uint8_t *pad_b = pad + (size_t)b * P;             /* [P] */
        int32_t *pos_b = pos + (size_t)b * P;             /* [P] */
        int j = 0;
        for (int k = 0; k < lay->n_cams_kept; k++) {
            uint8_t present = in->image_masks[(size_t)b * C + lay->cam_index[k]] != 0;
            for (int t = 0; t < N; t++) pad_b[j++] = present;
        }
        for (int i = 0; i < L; i++) pad_b[j++] = in->token_mask[(size_t)b * L + i] != 0;
        /* Positions count valid tokens only: cumsum(pad) - 1, so a masked token repeats the
         * previous position (or -1 before the first valid one). */
        int32_t count = 0;
        for (int i = 0; i < P; i++) {
            count += pad_b[i];
            pos_b[i] = count - 1;
        }
        n_valid[b] = count;
    }
}
