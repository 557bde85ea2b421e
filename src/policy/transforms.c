/* transforms.c - openpi's per-key input and output transforms (SERVING_SPEC 3.2-3.4, 3.7, 3.9):
 * numbers for states, images to HWC uint8, pixels to floats, ALOHA's joint and gripper
 * conversions, the prompt's text. Each function reads one value and names its key in errors.
 * Not here: which keys a robot has (presets.c), normalization and the whole chain (policy.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "policy/policy_internal.h"

enum { MAX_IMAGE_SIDE = 1 << 16 };

static const char *nonfinite_name(double v) { return isnan(v) ? "NaN" : "infinite"; }

pi0_status pi0_read_numbers(const pi0_msg_value *v, const char *key, int n, double *out, pi0_error *err) {
    char desc[160];
    if (v->kind == PI0_MSG_NDARRAY) {
        const pi0_msg_ndarray *nd = v->as.nd;
        if (!strchr("biuf", nd->dtype.kind))
            return pi0_fail(err, PI0_ERR_INPUT, "%s: expected numbers, got dtype '%s'", key, nd->dtype.str);
        bool shape_ok = (nd->ndim == 1 && nd->shape[0] == n) || (n == 1 && nd->ndim == 0);
        if (!shape_ok) {
            char sbuf[128];
            return pi0_fail(err, PI0_ERR_SHAPE, "%s: expected %d number%s, got shape %s", key, n, n == 1 ? "" : "s",
                            pi0_shape_str(sbuf, sizeof sbuf, nd->ndim, nd->shape));
        }
        for (int i = 0; i < n; i++) out[i] = pi0_msg_ndarray_get(nd, (size_t)i);
    } else if (v->kind == PI0_MSG_LIST) {
        if (v->as.list.n != (size_t)n)
            return pi0_fail(err, PI0_ERR_SHAPE, "%s: expected %d number%s, got a list of %zu", key, n,
                            n == 1 ? "" : "s", v->as.list.n);
        for (int i = 0; i < n; i++)
            if (!pi0_msg_number(&v->as.list.items[i], &out[i]))
                return pi0_fail(err, PI0_ERR_INPUT, "%s: entry %d is %s, expected a number", key, i,
                                pi0_msg_describe(&v->as.list.items[i], desc, sizeof desc));
    } else if (n == 1 && pi0_msg_number(v, &out[0])) {
        /* a bare scalar, e.g. the DROID gripper position */
    } else {
        return pi0_fail(err, PI0_ERR_INPUT, "%s: expected %d number%s, got %s", key, n, n == 1 ? "" : "s",
                        pi0_msg_describe(v, desc, sizeof desc));
    }
    for (int i = 0; i < n; i++)
        if (!isfinite(out[i])) return pi0_fail(err, PI0_ERR_INPUT, "%s: value %d is %s", key, i, nonfinite_name(out[i]));
    return PI0_OK;
}

/* numpy's float16 arithmetic: the float32 result rounded to the nearest half (ties to even). */
static float round_to_half(float x) {
    if (!isfinite(x) || x == 0.0f) return x;
    int e;
    frexpf(x, &e);                          /* |x| in [2^(e-1), 2^e): an ulp is 2^(e-11) */
    int ulp_exp = e - 11 < -24 ? -24 : e - 11;
    float r = ldexpf(nearbyintf(ldexpf(x, -ulp_exp)), ulp_exp);
    return fabsf(r) > 65504.0f ? copysignf(INFINITY, x) : r;
}

/* openpi's (255 * image).astype(np.uint8) for a float pixel: the product in the array's own
 * precision, truncated. Only products in (-1, 256) have a defined result; others are refused. */
static pi0_status float_pixel(const pi0_msg_ndarray *nd, size_t i, const char *key, uint8_t *out,
                              pi0_error *err) {
    double v = pi0_msg_ndarray_get(nd, i);
    double p;
    if (nd->dtype.itemsize == 8) p = 255.0 * v;
    else if (nd->dtype.itemsize == 4) p = 255.0f * (float)v;
    else p = round_to_half(255.0f * (float)v);
    if (!(p > -1.0 && p < 256.0))
        return pi0_fail(err, PI0_ERR_INPUT, "%s: float pixel %zu is %g, expected values in [0, 1]", key, i, v);
    *out = (uint8_t)(int)p;
    return PI0_OK;
}

pi0_status pi0_image_to_hwc(const pi0_msg_value *v, const char *key, bool channel_first_only, uint8_t **out,
                            int *h, int *w, pi0_error *err) {
    *out = NULL;
    char desc[160], sbuf[128];
    if (v->kind != PI0_MSG_NDARRAY)
        return pi0_fail(err, PI0_ERR_INPUT, "%s: expected an image array, got %s", key,
                        pi0_msg_describe(v, desc, sizeof desc));
    const pi0_msg_ndarray *nd = v->as.nd;
    bool is_float = nd->dtype.kind == 'f';
    if (!is_float && !(nd->dtype.kind == 'u' && nd->dtype.itemsize == 1))
        return pi0_fail(err, PI0_ERR_INPUT, "%s: expected uint8 or float pixels, got dtype '%s'", key,
                        nd->dtype.str);
    const char *shape = pi0_shape_str(sbuf, sizeof sbuf, nd->ndim, nd->shape);
    if (nd->ndim != 3)
        return pi0_fail(err, PI0_ERR_SHAPE, "%s: expected an image [H, W, 3] or [3, H, W], got shape %s", key, shape);
    /* openpi: "if the first axis has length 3, treat the image as CHW" (ALOHA: always CHW). */
    bool chw = nd->shape[0] == 3;
    if (channel_first_only && !chw)
        return pi0_fail(err, PI0_ERR_SHAPE, "%s: ALOHA images must be channel-first [3, H, W], got %s", key, shape);
    if (!chw && nd->shape[2] != 3)
        return pi0_fail(err, PI0_ERR_SHAPE, "%s: expected an RGB image [H, W, 3] or [3, H, W], got %s", key, shape);
    int64_t hh = chw ? nd->shape[1] : nd->shape[0], ww = chw ? nd->shape[2] : nd->shape[1];
    if (hh < 1 || ww < 1 || hh > MAX_IMAGE_SIDE || ww > MAX_IMAGE_SIDE)
        return pi0_fail(err, PI0_ERR_SHAPE, "%s: image sides must be 1 to %d pixels, got %s", key, MAX_IMAGE_SIDE,
                        shape);
    size_t plane = (size_t)hh * (size_t)ww;
    uint8_t *img = malloc(plane * 3);
    if (!img) return pi0_fail(err, PI0_ERR_NOMEM, "%s: out of memory for a %s image", key, shape);
    for (size_t p = 0; p < plane; p++) {
        for (size_t c = 0; c < 3; c++) {
            size_t src = chw ? c * plane + p : p * 3 + c;
            if (is_float) {
                pi0_status st = float_pixel(nd, src, key, &img[p * 3 + c], err);
                if (st) {
                    free(img);
                    return st;
                }
            } else {
                img[p * 3 + c] = nd->data[src];
            }
        }
    }
    *out = img;
    *h = (int)hh;
    *w = (int)ww;
    return PI0_OK;
}

void pi0_image_to_float(float *dst, const uint8_t *src, size_t n) {
    float lut[256];
    for (int u = 0; u < 256; u++) lut[u] = ((float)u / 255.0f) * 2.0f - 1.0f;
    for (size_t i = 0; i < n; i++) dst[i] = lut[src[i]];
}

/* ---- ALOHA (SERVING_SPEC 3.4) --------------------------------------------------------------- */

/* Sign flips between ALOHA's joint conventions and the ones Pi0 was trained with. */
static const double aloha_flip[14] = { 1, -1, -1, 1, 1, 1, 1, 1, -1, -1, 1, 1, 1, 1 };
static const int aloha_grippers[2] = { 6, 13 };

void pi0_aloha_state_to_pi(double *s) {
    for (int i = 0; i < 14; i++) s[i] *= aloha_flip[i];
    for (int k = 0; k < 2; k++) {
        int g = aloha_grippers[k];
        /* Linear gripper opening in metres, then the horn angle of the gripper's linkage
         * (arm 0.036, horn radius 0.022), then that angle's range mapped to [0, 1]. */
        double lin = s[g] * (0.05800 - 0.01844) + 0.01844;
        double c = (0.022 * 0.022 + lin * lin - 0.036 * 0.036) / (2 * 0.022 * lin);
        double theta = asin(c < -1.0 ? -1.0 : c > 1.0 ? 1.0 : c);
        s[g] = (theta - 0.5476) / (1.6296 - 0.5476);
    }
}

void pi0_aloha_actions_from_pi(double *a) {
    for (int i = 0; i < 14; i++) a[i] *= aloha_flip[i];
    for (int k = 0; k < 2; k++) {
        int g = aloha_grippers[k];
        a[g] = ((a[g] + 0.5476) - (-0.6213)) / (1.4910 - (-0.6213));
    }
}

/* ---- prompt (SERVING_SPEC 3.9) -------------------------------------------------------------- */

static size_t utf8_put(char *dst, uint32_t cp) {
    if (cp < 0x80) { dst[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        dst[0] = (char)(0xc0 | cp >> 6), dst[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xe0 | cp >> 12), dst[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        dst[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (char)(0xf0 | cp >> 18), dst[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), dst[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

pi0_status pi0_prompt_from_value(const pi0_msg_value *v, const char **text, size_t *len, char **owned,
                                 pi0_error *err) {
    *owned = NULL;
    char desc[160];
    if (v->kind == PI0_MSG_STR) {
        *text = v->as.str.ptr, *len = v->as.str.len;
        return PI0_OK;
    }
    if (v->kind == PI0_MSG_BIN) {   /* openpi's DROID transform decodes bytes as UTF-8 */
        if (!pi0_utf8_valid((const uint8_t *)v->as.str.ptr, v->as.str.len))
            return pi0_fail(err, PI0_ERR_INPUT, "prompt: bytes are not valid UTF-8");
        *text = v->as.str.ptr, *len = v->as.str.len;
        return PI0_OK;
    }
    const pi0_msg_ndarray *nd = v->kind == PI0_MSG_NDARRAY ? v->as.nd : NULL;
    if (!nd || (nd->dtype.kind != 'U' && nd->dtype.kind != 'S') || nd->count != 1)
        return pi0_fail(err, PI0_ERR_INPUT, "prompt: expected a str (or a one-element numpy string array), got %s",
                        pi0_msg_describe(v, desc, sizeof desc));
    /* numpy drops trailing NULs of fixed-width strings. */
    size_t n = nd->dtype.kind == 'U' ? nd->dtype.itemsize / 4 : nd->dtype.itemsize;
    if (nd->dtype.kind == 'S') {
        while (n > 0 && nd->data[n - 1] == 0) n--;
        if (!pi0_utf8_valid(nd->data, n)) return pi0_fail(err, PI0_ERR_INPUT, "prompt: bytes are not valid UTF-8");
        *text = (const char *)nd->data, *len = n;
        return PI0_OK;
    }
    uint32_t *cps = malloc((n ? n : 1) * sizeof *cps);
    char *utf8 = malloc(n * 4 + 1);
    if (!cps || !utf8) {
        free(cps);
        free(utf8);
        return pi0_fail(err, PI0_ERR_NOMEM, "prompt: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = nd->data + 4 * i;
        cps[i] = nd->dtype.big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                                      : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
    }
    while (n > 0 && cps[n - 1] == 0) n--;
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (cps[i] > 0x10ffff || (cps[i] >= 0xd800 && cps[i] <= 0xdfff)) {
            uint32_t bad = cps[i];
            free(cps);
            free(utf8);
            return pi0_fail(err, PI0_ERR_INPUT, "prompt: character %zu (0x%x) is not a Unicode scalar value", i, bad);
        }
        out += utf8_put(utf8 + out, cps[i]);
    }
    utf8[out] = '\0';
    free(cps);
    *owned = utf8;
    *text = utf8, *len = out;
    return PI0_OK;
}
