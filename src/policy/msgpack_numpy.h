/* msgpack_numpy.h - openpi's message encoding (SERVING_SPEC 2): msgpack with numpy arrays and
 * scalars as bin-keyed maps. Decoding turns one message into a small tree of values whose
 * strings and array data point into the message; encoding writes arrays the way openpi does.
 * Not here: what the keys mean (transforms.c, policy.c). */
#ifndef PI0_POLICY_MSGPACK_NUMPY_H
#define PI0_POLICY_MSGPACK_NUMPY_H

#include <msgpack.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    PI0_MSG_MAX_DEPTH = 16,      /* containers inside containers; openpi requests use 2 */
    PI0_NPY_MAX_DIMS = 32,       /* numpy 1.26's NPY_MAXDIMS */
};

/* A numpy dtype string (SERVING_SPEC 2.5) parsed: kind b, i, u, f (numbers) or U, S (text). */
typedef struct {
    char kind;
    bool big_endian;             /* '>'; '<', '|' and '=' are little-endian here */
    size_t itemsize;             /* bytes per element: U<n> is 4n, S<n> is n */
    char str[24];                /* as received, for messages */
} pi0_npy_dtype;

typedef enum {
    PI0_MSG_NIL,
    PI0_MSG_BOOL,
    PI0_MSG_INT,                 /* i: any msgpack integer that fits int64 */
    PI0_MSG_UINT,                /* u: positive integers above INT64_MAX */
    PI0_MSG_FLOAT,
    PI0_MSG_STR,                 /* valid UTF-8 */
    PI0_MSG_BIN,
    PI0_MSG_LIST,
    PI0_MSG_MAP,
    PI0_MSG_NDARRAY,             /* a bin-keyed "__ndarray__" map */
    PI0_MSG_NPSCALAR,            /* a bin-keyed "__npgeneric__" map */
} pi0_msg_kind;

typedef struct pi0_msg_value pi0_msg_value;

typedef struct {
    bool key_is_bin;
    const char *key;             /* borrowed: into the message, not NUL-terminated */
    size_t key_len;
    const pi0_msg_value *value;
} pi0_msg_entry;

typedef struct {
    pi0_npy_dtype dtype;
    int ndim;
    int64_t shape[PI0_NPY_MAX_DIMS];
    size_t count;                /* product of shape; count * itemsize <= data bytes */
    const uint8_t *data;         /* borrowed: C order, unaligned, byte order of dtype */
} pi0_msg_ndarray;

struct pi0_msg_value {
    pi0_msg_kind kind;
    union {
        bool b;
        int64_t i;
        uint64_t u;
        double f;
        struct { const char *ptr; size_t len; } str;   /* STR and BIN */
        struct { const pi0_msg_value *items; size_t n; } list;
        struct { const pi0_msg_entry *entries; size_t n; } map;
        const pi0_msg_ndarray *nd;                     /* in the document's zone */
        struct { pi0_npy_dtype dtype; const pi0_msg_value *value; } scalar; /* BOOL, INT, UINT, FLOAT */
    } as;
};

/* One decoded message. Everything hangs off the msgpack zone inside; strings and array data
 * borrow the message bytes, which must outlive the document. */
typedef struct {
    msgpack_unpacked unpacked;
    const pi0_msg_value *root;
} pi0_msg_doc;

/* Decodes exactly one msgpack object covering all of msg[0, len). Errors start with
 * "request is not valid msgpack: " for broken bytes, or name the key path of a bad array
 * ("images/cam_high: dtype '<c8' is not supported (complex)"). On failure nothing needs freeing;
 * on success call pi0_msg_doc_free. */
pi0_status pi0_msg_doc_decode(pi0_msg_doc *doc, const uint8_t *msg, size_t len, pi0_error *err);
void pi0_msg_doc_free(pi0_msg_doc *doc);

/* The value under a str key of a map (the last one if repeated, like a Python dict), or NULL.
 * Bin keys never match: openpi looks keys up as str. */
const pi0_msg_value *pi0_msg_map_get(const pi0_msg_value *map, const char *key);

/* "a str", "a map", "an array of shape [2, 3] and dtype <f4", ... for messages. */
const char *pi0_msg_describe(const pi0_msg_value *v, char *buf, size_t size);

/* Parses a numpy dtype string. Complex, object, void and datetime kinds are refused by name. */
pi0_status pi0_npy_dtype_parse(pi0_npy_dtype *dt, const char *s, size_t len, pi0_error *err);

/* Element i of a numeric (b, i, u, f) array as double; i < nd->count. */
double pi0_msg_ndarray_get(const pi0_msg_ndarray *nd, size_t i);

/* The number held by a BOOL, INT, UINT, FLOAT or NPSCALAR value; false for anything else. */
bool pi0_msg_number(const pi0_msg_value *v, double *out);

/* Whether s[0, n) is UTF-8 as Python's strict decoder takes it (msgpack str, numpy U and S
 * prompts): no overlong forms, no surrogates, nothing above U+10FFFF. */
bool pi0_utf8_valid(const uint8_t *s, size_t n);

/* A msgpack_packer into a growing buffer that remembers a failed allocation, so a message is
 * either complete or refused (msgpack_sbuffer alone would drop the failed piece and go on). */
typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    bool failed;
} pi0_msg_writer;

void pi0_msg_writer_init(pi0_msg_writer *w);
/* Hands the bytes to the caller (malloc'd) or frees them and fails with NOMEM. */
pi0_status pi0_msg_writer_finish(pi0_msg_writer *w, uint8_t **out, size_t *len, pi0_error *err);

/* Writes a str (the key form openpi uses for its own dicts). */
void pi0_msg_pack_str(msgpack_packer *pk, const char *s);
/* Writes a numpy array: bin keys in openpi's order __ndarray__, data, dtype, shape. */
void pi0_msg_pack_ndarray(msgpack_packer *pk, const char *dtype, const void *data, size_t data_bytes,
                          int ndim, const int64_t *shape);

#ifdef __cplusplus
}
#endif
#endif
