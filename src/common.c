/* common.c - error formatting, shape strings and whole-file reads shared by libpi0.
 * Nothing here prints: errors go into the caller's pi0_error. */
#define _POSIX_C_SOURCE 200809L /* strnlen */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *pi0_status_name(pi0_status s) {
    switch (s) {
    case PI0_OK: return "ok";
    case PI0_ERR_IO: return "I/O error";
    case PI0_ERR_FORMAT: return "format error";
    case PI0_ERR_SHAPE: return "shape error";
    case PI0_ERR_INPUT: return "input error";
    case PI0_ERR_DEVICE: return "device error";
    case PI0_ERR_NOMEM: return "out of memory";
    case PI0_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

pi0_status pi0_fail(pi0_error *err, pi0_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

pi0_status pi0_fail_context(pi0_error *err, pi0_status status, const char *fmt, ...) {
    if (!err) return status;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Built in a buffer large enough for both parts, then cut to the message size. */
    char joined[sizeof prefix + sizeof err->msg + 2];
    size_t n_prefix = strlen(prefix), n_old = strnlen(err->msg, sizeof err->msg - 1);
    memcpy(joined, prefix, n_prefix);
    memcpy(joined + n_prefix, ": ", 2);
    memcpy(joined + n_prefix + 2, err->msg, n_old);
    joined[n_prefix + 2 + n_old] = '\0';
    size_t n = n_prefix + 2 + n_old < sizeof err->msg ? n_prefix + 2 + n_old : sizeof err->msg - 1;
    memcpy(err->msg, joined, n);
    err->msg[n] = '\0';
    return status;
}

const char *pi0_shape_str(char *buf, size_t size, int ndim, const int64_t *shape) {
    if (size == 0) return buf;
    size_t pos = 0;
    buf[0] = '\0';
    /* snprintf returns what it would have written: clamp so pos never passes size. */
#define PI0_APPEND(...)                                                         \
    do {                                                                        \
        if (pos < size) {                                                       \
            int n_ = snprintf(buf + pos, size - pos, __VA_ARGS__);              \
            pos = n_ < 0 ? size : pos + (size_t)n_;                             \
        }                                                                       \
    } while (0)
    PI0_APPEND("[");
    for (int i = 0; i < ndim; i++) PI0_APPEND("%s%lld", i ? ", " : "", (long long)shape[i]);
    PI0_APPEND("]");
#undef PI0_APPEND
    return buf;
}

pi0_status pi0_read_file(const char *path, char **data, size_t *len, pi0_error *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return pi0_fail(err, PI0_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return pi0_fail(err, PI0_ERR_NOMEM, "out of memory reading %s", path);
    }
    for (;;) {
        if (n == cap) {
            char *grown = realloc(buf, cap * 2 + 1);
            if (!grown) {
                free(buf);
                fclose(f);
                return pi0_fail(err, PI0_ERR_NOMEM, "out of memory reading %s", path);
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return pi0_fail(err, PI0_ERR_IO, "cannot read %s", path);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return PI0_OK;
}
