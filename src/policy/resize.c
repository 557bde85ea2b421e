/* resize.c - openpi's resize_with_pad (SERVING_SPEC 3.7): keep the aspect ratio, resample with
 * Pillow's bilinear filter bit for bit, center on a black canvas. Pillow resamples separably
 * (x first, then y) with 22-bit fixed-point weights and a uint8 image between the passes; the
 * same steps in the same order give the same bytes: checked against Pillow 11.2.1 (the version
 * openpi pins) on random images of 57 sizes. Pillow 13 runs the vertical pass first for some tall
 * images and then differs by 1 in a few pixels. Not here: float images (transforms.c). */
#include <math.h>
#include <stdlib.h>

#include "policy/policy_internal.h"

enum { PRECISION_BITS = 32 - 8 - 2 };   /* Pillow's 8-bit fixed point: 22 fractional bits */

static double bilinear(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for a box covering the whole input. */
pi0_status pi0_resample_axis_init(pi0_resample_axis *ax, int n_in, int n_out, pi0_error *err) {
    memset(ax, 0, sizeof *ax);
    if (n_in < 1 || n_out < 1)
        return pi0_fail(err, PI0_ERR_SHAPE, "resample from %d to %d pixels: sizes must be >= 1", n_in, n_out);
    double scale = (double)(float)n_in / n_out;     /* Pillow: (in1 - in0) in float, then double */
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;             /* bilinear radius 1, widened when shrinking */
    int ksize = (int)ceil(support) * 2 + 1;
    ax->n_in = n_in, ax->n_out = n_out, ax->ksize = ksize;
    ax->lo = malloc((size_t)n_out * sizeof *ax->lo);
    ax->n = malloc((size_t)n_out * sizeof *ax->n);
    ax->w = malloc((size_t)n_out * (size_t)ksize * sizeof *ax->w);
    double *k = malloc((size_t)ksize * sizeof *k);
    if (!ax->lo || !ax->n || !ax->w || !k) {
        free(k);
        pi0_resample_axis_free(ax);
        return pi0_fail(err, PI0_ERR_NOMEM, "resample from %d to %d pixels: out of memory", n_in, n_out);
    }
    /* Pillow multiplies by the reciprocal rather than dividing: keep it, the last bit can matter. */
    double ss = 1.0 / filterscale;
    for (int i = 0; i < n_out; i++) {
        double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > n_in) hi = n_in;
        int n = hi - lo;
        double sum = 0.0;
        for (int x = 0; x < n; x++) {
            k[x] = bilinear((x + lo - center + 0.5) * ss);
            sum += k[x];
        }
        int32_t *w = ax->w + (size_t)i * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = x < n ? (sum != 0.0 ? k[x] / sum : k[x]) : 0.0;
            w[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        ax->lo[i] = lo;
        ax->n[i] = n;
    }
    free(k);
    return PI0_OK;
}

void pi0_resample_axis_free(pi0_resample_axis *ax) {
    if (!ax) return;
    free(ax->lo);
    free(ax->n);
    free(ax->w);
    memset(ax, 0, sizeof *ax);
}

static uint8_t clip8(int32_t v) {
    if (v >= (1 << PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

/* One pass over n_lines lines: src line l, tap t is src[l * line + t * step + c]. */
static void resample_pass(uint8_t *dst, const uint8_t *src, const pi0_resample_axis *ax, int n_lines,
                          size_t src_line, size_t src_step, size_t dst_line, size_t dst_step) {
    for (int l = 0; l < n_lines; l++) {
        for (int i = 0; i < ax->n_out; i++) {
            const int32_t *w = ax->w + (size_t)i * ax->ksize;
            const uint8_t *in = src + (size_t)l * src_line + (size_t)ax->lo[i] * src_step;
            uint8_t *out = dst + (size_t)l * dst_line + (size_t)i * dst_step;
            for (int c = 0; c < 3; c++) {
                int32_t acc = 1 << (PRECISION_BITS - 1);
                for (int t = 0; t < ax->n[i]; t++) acc += in[t * src_step + c] * w[t];
                out[c] = clip8(acc);
            }
        }
    }
}

void pi0_resize_pad_size(int h, int w, int out_h, int out_w, int *h_r, int *w_r) {
    /* In this order, in double (SERVING_SPEC 3.7): the truncation sees ratio's rounding. */
    double ratio = fmax((double)w / out_w, (double)h / out_h);
    *h_r = (int)((double)h / ratio);
    *w_r = (int)((double)w / ratio);
}

pi0_status pi0_resize_bilinear(uint8_t *dst, int out_h, int out_w, const uint8_t *src, int h, int w,
                               pi0_error *err) {
    bool need_x = out_w != w, need_y = out_h != h;
    if (!need_x && !need_y) {
        memcpy(dst, src, (size_t)h * w * 3);
        return PI0_OK;
    }
    pi0_resample_axis ax_x = { 0 }, ax_y = { 0 };
    uint8_t *tmp = NULL;
    pi0_status st = PI0_OK;
    if (need_x) st = pi0_resample_axis_init(&ax_x, w, out_w, err);
    if (!st && need_y) st = pi0_resample_axis_init(&ax_y, h, out_h, err);
    if (!st && need_x && need_y && !(tmp = malloc((size_t)h * out_w * 3)))  /* [h, out_w, 3] */
        st = pi0_fail(err, PI0_ERR_NOMEM, "resizing a %dx%d image: out of memory", h, w);
    if (!st) {
        /* x first into uint8, then y, like Pillow. */
        uint8_t *x_out = need_y ? tmp : dst;
        const uint8_t *y_in = src;
        if (need_x) {
            resample_pass(x_out, src, &ax_x, h, (size_t)w * 3, 3, (size_t)out_w * 3, 3);
            y_in = x_out;
        }
        /* Lines are columns here: a tap steps over a whole row. */
        if (need_y) resample_pass(dst, y_in, &ax_y, out_w, 3, (size_t)out_w * 3, 3, (size_t)out_w * 3);
    }
    free(tmp);
    pi0_resample_axis_free(&ax_x);
    pi0_resample_axis_free(&ax_y);
    return st;
}

pi0_status pi0_resize_with_pad(uint8_t *dst, int out_h, int out_w, const uint8_t *src, int h, int w,
                               pi0_error *err) {
    if (h == out_h && w == out_w) {
        memcpy(dst, src, (size_t)out_h * out_w * 3);
        return PI0_OK;
    }
    int h_r, w_r;
    pi0_resize_pad_size(h, w, out_h, out_w, &h_r, &w_r);
    if (h_r < 1 || w_r < 1)
        return pi0_fail(err, PI0_ERR_SHAPE, "a %dx%d image is too thin to resize to %dx%d (it would be %dx%d)",
                        h, w, out_h, out_w, h_r, w_r);
    uint8_t *resized = malloc((size_t)h_r * w_r * 3);                    /* [h_r, w_r, 3] */
    if (!resized) return pi0_fail(err, PI0_ERR_NOMEM, "resizing a %dx%d image: out of memory", h, w);
    pi0_status st = pi0_resize_bilinear(resized, h_r, w_r, src, h, w, err);
    if (!st) {
        /* Odd padding puts the extra row or column at the bottom or right. */
        int top = (out_h - h_r) / 2, left = (out_w - w_r) / 2;
        if (top < 0) top = 0;
        if (left < 0) left = 0;
        memset(dst, 0, (size_t)out_h * out_w * 3);
        int n = w_r < out_w - left ? w_r : out_w - left;
        for (int y = 0; y < h_r && top + y < out_h; y++)
            memcpy(dst + ((size_t)(top + y) * out_w + left) * 3, resized + (size_t)y * w_r * 3, (size_t)n * 3);
    }
    free(resized);
    return st;
}
