/* safetensors.h - bounds-checked reader (over an mmap) and writer of safetensors files.
 * Used for checkpoints and for the inputs/outputs files of `pi0 infer`. The reader never
 * trusts the file: header length, JSON, dtypes, shapes and byte ranges are all checked, and
 * every failure names what is wrong. */
#ifndef PI0_SAFETENSORS_H
#define PI0_SAFETENSORS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { PI0_ST_MAX_DIMS = 8 };

typedef enum {
    PI0_DT_F32, PI0_DT_BF16, PI0_DT_F16, PI0_DT_F64,
    PI0_DT_I64, PI0_DT_I32, PI0_DT_I16, PI0_DT_I8,
    PI0_DT_U8, PI0_DT_BOOL, PI0_DT_U16, PI0_DT_U32, PI0_DT_U64,
} pi0_dtype;

const char *pi0_dtype_name(pi0_dtype t);   /* "F32", "BF16", ... as in the header */
size_t pi0_dtype_size(pi0_dtype t);

typedef struct {
    char *name;                  /* owned */
    pi0_dtype dtype;
    int ndim;
    int64_t shape[PI0_ST_MAX_DIMS];
    size_t n_elems;
    const void *data;            /* borrowed: into the mapping; may be unaligned (use memcpy) */
    size_t n_bytes;
} pi0_st_tensor;

typedef struct pi0_safetensors pi0_safetensors;

/* Maps and checks a whole file. */
pi0_status pi0_safetensors_open(pi0_safetensors **out, const char *path, pi0_error *err);
/* Checks a file image already in memory (borrowed, must outlive the object). For fuzzing. */
pi0_status pi0_safetensors_parse(pi0_safetensors **out, const uint8_t *buf, size_t len,
                                 pi0_error *err);
void pi0_safetensors_close(pi0_safetensors *f);          /* NULL is a no-op */
int pi0_safetensors_count(const pi0_safetensors *f);
const pi0_st_tensor *pi0_safetensors_at(const pi0_safetensors *f, int i);
const pi0_st_tensor *pi0_safetensors_find(const pi0_safetensors *f, const char *name);
size_t pi0_safetensors_file_bytes(const pi0_safetensors *f);
/* The "__metadata__" object's string value for key, or NULL. */
const char *pi0_safetensors_metadata(const pi0_safetensors *f, const char *key);

/* Writing: each tensor's bytes come from a callback so multi-GB files stream without a copy. */
typedef struct {
    const char *name;
    pi0_dtype dtype;
    int ndim;
    int64_t shape[PI0_ST_MAX_DIMS];
    const void *data;            /* n_elems * dtype size bytes, or NULL to use fill() */
    /* fill(ctx, index, dst, n_bytes) writes the tensor's bytes into dst; used when data is NULL */
    pi0_status (*fill)(void *ctx, int index, void *dst, size_t n_bytes, pi0_error *err);
    void *fill_ctx;
} pi0_st_write_entry;

pi0_status pi0_safetensors_write(const char *path, const pi0_st_write_entry *entries, int n,
                                 pi0_error *err);

#ifdef __cplusplus
}
#endif
#endif
