/* common.h - small helpers shared by every file of libpi0: error formatting, bf16
 * conversion, alignment. Not public: include/pi0.h is the only public header. */
#ifndef PI0_COMMON_H
#define PI0_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pi0.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PI0_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PI0_PRINTF(a, b)
#endif

/* Formats one line into err (if not NULL) and returns status, so failing is one statement:
 *   return pi0_fail(err, PI0_ERR_SHAPE, "tensor '%s' has shape %s, expected %s", ...); */
pi0_status pi0_fail(pi0_error *err, pi0_status status, const char *fmt, ...) PI0_PRINTF(3, 4);

/* Prepends "context: " to an error already in err (keeps the status). */
pi0_status pi0_fail_context(pi0_error *err, pi0_status status, const char *fmt, ...) PI0_PRINTF(3, 4);

/* bfloat16 as raw bits. Rounding to nearest even; NaN stays NaN. */
static inline float pi0_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline uint16_t pi0_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float pi0_round_bf16(float f) { return pi0_bf16_to_f32(pi0_f32_to_bf16(f)); }

static inline size_t pi0_align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* Formats "[a, b, c]" into buf. */
const char *pi0_shape_str(char *buf, size_t size, int ndim, const int64_t *shape);

/* Reads a whole file into a malloc'd buffer (NUL-terminated for convenience). */
pi0_status pi0_read_file(const char *path, char **data, size_t *len, pi0_error *err);

#ifdef __cplusplus
}
#endif
#endif
