/* safetensors.c - bounds-checked safetensors reader over a read-only mmap, and a streaming
 * writer. The format: u64 little-endian header length, a JSON header
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
 * then the data section, which the offsets index from its start.
 * The reader trusts nothing in the file: every number is checked before it is used, and each
 * failure names the tensor and what was wrong. It does not check tensors against the model
 * (that is weights.c). The caller prefixes the file name with pi0_fail_context. */
#define _GNU_SOURCE /* fstat, mmap, fileno */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation refuses headers above 100 MB; so do we (a real checkpoint's
 * header is ~100 KB). */
#define PI0_ST_MAX_HEADER_BYTES ((uint64_t)100 * 1000 * 1000)

struct pi0_safetensors {
    const uint8_t *base;         /* borrowed (parse) or the mapping (open): the whole file */
    size_t len;
    void *map;                   /* owned mapping, or NULL */
    size_t map_len;
    const uint8_t *data;         /* start of the data section */
    size_t data_bytes;
    pi0_st_tensor *tensors;      /* [n], owned, in header order */
    int n;
    int *by_name;                /* [n] indices sorted by name, for find */
    char **meta;                 /* [2 * n_meta] key, value pairs, owned */
    int n_meta;
};

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [PI0_DT_F32] = { "F32", 4 },  [PI0_DT_BF16] = { "BF16", 2 }, [PI0_DT_F16] = { "F16", 2 },
    [PI0_DT_F64] = { "F64", 8 },  [PI0_DT_I64] = { "I64", 8 },   [PI0_DT_I32] = { "I32", 4 },
    [PI0_DT_I16] = { "I16", 2 },  [PI0_DT_I8] = { "I8", 1 },     [PI0_DT_U8] = { "U8", 1 },
    [PI0_DT_BOOL] = { "BOOL", 1 }, [PI0_DT_U16] = { "U16", 2 },  [PI0_DT_U32] = { "U32", 4 },
    [PI0_DT_U64] = { "U64", 8 },
};
enum { N_DTYPES = (int)(sizeof dtype_info / sizeof dtype_info[0]) };

const char *pi0_dtype_name(pi0_dtype t) {
    return (int)t >= 0 && (int)t < N_DTYPES ? dtype_info[t].name : "?";
}

size_t pi0_dtype_size(pi0_dtype t) {
    return (int)t >= 0 && (int)t < N_DTYPES ? dtype_info[t].size : 0;
}

static bool dtype_parse(const char *s, pi0_dtype *out) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (pi0_dtype)i;
            return true;
        }
    return false;
}

void pi0_safetensors_close(pi0_safetensors *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->by_name);
    for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->meta);
    if (f->map) munmap(f->map, f->map_len);
    free(f);
}

/* A JSON number that is a non-negative integer exactly representable in a double. */
static bool json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double v = j->valuedouble;
    if (!(v >= 0.0) || v > 9007199254740992.0 || floor(v) != v) return false;
    *out = (uint64_t)v;
    return true;
}

/* The header names are printed in messages: keep them short. */
static const char *short_name(const char *name, char *buf, size_t size) {
    size_t n = strlen(name);
    if (n < size) return name;
    snprintf(buf, size, "%.*s...", (int)(size - 4), name);
    return buf;
}

static pi0_status parse_tensor(pi0_safetensors *f, pi0_st_tensor *t, const cJSON *entry,
                               uint64_t *begin, uint64_t *end, pi0_error *err) {
    char nb[160];
    const char *name = short_name(t->name, nb, sizeof nb);
    if (!cJSON_IsObject(entry))
        return pi0_fail(err, PI0_ERR_FORMAT, "tensor '%s': header entry is not an object", name);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(dt))
        return pi0_fail(err, PI0_ERR_FORMAT, "tensor '%s': missing \"dtype\" string", name);
    if (!dtype_parse(dt->valuestring, &t->dtype)) {
        char db[40];
        return pi0_fail(err, PI0_ERR_FORMAT, "tensor '%s': unknown dtype '%s'", name,
                        short_name(dt->valuestring, db, sizeof db));
    }

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!cJSON_IsArray(shape))
        return pi0_fail(err, PI0_ERR_FORMAT, "tensor '%s': missing \"shape\" list", name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > PI0_ST_MAX_DIMS)
        return pi0_fail(err, PI0_ERR_FORMAT, "tensor '%s': %d dimensions, at most %d supported",
                        name, ndim, PI0_ST_MAX_DIMS);
    t->ndim = ndim;
    size_t n_elems = 1;
    bool overflow = false;
    int d = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, d++) {
        uint64_t v;
        if (!json_uint(dim, &v) || v > (uint64_t)INT64_MAX)
            return pi0_fail(err, PI0_ERR_FORMAT,
                            "tensor '%s': shape entry %d is not a non-negative integer", name, d);
        t->shape[d] = (int64_t)v;
        if (v != 0 && n_elems > SIZE_MAX / v) overflow = true;
        else n_elems *= (size_t)v;
    }
    /* A zero dimension makes the count 0 whatever overflowed before it. */
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] == 0) overflow = false, n_elems = 0;
    size_t esize = pi0_dtype_size(t->dtype);
    if (overflow || (n_elems && n_elems > SIZE_MAX / esize))
        return pi0_fail(err, PI0_ERR_FORMAT, "tensor '%s': element count of its shape overflows",
                        name);
    t->n_elems = n_elems;

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        !json_uint(off->child, begin) || !json_uint(off->child->next, end))
        return pi0_fail(err, PI0_ERR_FORMAT,
                        "tensor '%s': data_offsets is not a list [begin, end] of two "
                        "non-negative integers", name);
    if (*begin > *end)
        return pi0_fail(err, PI0_ERR_FORMAT, "tensor '%s': data_offsets [%llu, %llu] has begin > end",
                        name, (unsigned long long)*begin, (unsigned long long)*end);
    if (*end > f->data_bytes)
        return pi0_fail(err, PI0_ERR_FORMAT,
                        "tensor '%s': data_offsets [%llu, %llu] past the end of the data (%zu bytes)",
                        name, (unsigned long long)*begin, (unsigned long long)*end, f->data_bytes);
    size_t n_bytes = (size_t)(*end - *begin);
    if (n_bytes != n_elems * esize) {
        char sb[128];
        return pi0_fail(err, PI0_ERR_FORMAT,
                        "tensor '%s': data_offsets [%llu, %llu] hold %zu bytes, but %s %s needs %zu",
                        name, (unsigned long long)*begin, (unsigned long long)*end, n_bytes,
                        dtype_info[t->dtype].name, pi0_shape_str(sb, sizeof sb, ndim, t->shape),
                        n_elems * esize);
    }
    t->n_bytes = n_bytes;
    t->data = f->data + *begin;
    return PI0_OK;
}

static pi0_status parse_metadata(pi0_safetensors *f, const cJSON *meta, pi0_error *err) {
    if (!cJSON_IsObject(meta))
        return pi0_fail(err, PI0_ERR_FORMAT, "\"__metadata__\" is not an object");
    int n = cJSON_GetArraySize(meta);
    f->meta = calloc((size_t)n * 2 + 1, sizeof *f->meta);
    if (!f->meta) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for the header metadata");
    for (const cJSON *kv = meta->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv)) {
            char kb[80];
            return pi0_fail(err, PI0_ERR_FORMAT, "\"__metadata__\" value of '%s' is not a string",
                            short_name(kv->string, kb, sizeof kb));
        }
        f->meta[2 * f->n_meta] = strdup(kv->string);
        f->meta[2 * f->n_meta + 1] = strdup(kv->valuestring);
        f->n_meta++;
        if (!f->meta[2 * f->n_meta - 2] || !f->meta[2 * f->n_meta - 1])
            return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for the header metadata");
    }
    return PI0_OK;
}

typedef struct {
    uint64_t begin, end;
    int index;
} byte_range;

static int range_cmp(const void *a, const void *b) {
    const byte_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* qsort has no context argument: the comparator reads the table through this. The parse of
 * one file runs on one thread, but two files may be parsed concurrently, so keep it per thread. */
static _Thread_local const pi0_st_tensor *sort_tensors;

static int name_cmp(const void *a, const void *b) {
    return strcmp(sort_tensors[*(const int *)a].name, sort_tensors[*(const int *)b].name);
}

static pi0_status parse_header(pi0_safetensors *f, const char *json, size_t json_len,
                               pi0_error *err) {
    const char *end_of_json = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, json_len, &end_of_json, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t pos = at && at >= json && at <= json + json_len ? (size_t)(at - json) : 0;
        return pi0_fail(err, PI0_ERR_FORMAT, "header is not valid JSON (error near byte %zu of %zu)",
                        pos, json_len);
    }
    pi0_status st = PI0_OK;
    byte_range *ranges = NULL;
    /* The reference writer pads the header with spaces; anything else after the JSON is junk. */
    for (const char *p = end_of_json; p && p < json + json_len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st = pi0_fail(err, PI0_ERR_FORMAT, "header has bytes after its JSON object (at byte %zu)",
                          (size_t)(p - json));
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        st = pi0_fail(err, PI0_ERR_FORMAT, "header is not a JSON object");
        goto done;
    }
    int n_entries = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)n_entries + 1, sizeof *f->tensors);
    f->by_name = calloc((size_t)n_entries + 1, sizeof *f->by_name);
    ranges = calloc((size_t)n_entries + 1, sizeof *ranges);
    if (!f->tensors || !f->by_name || !ranges) {
        st = pi0_fail(err, PI0_ERR_NOMEM, "out of memory for %d header entries", n_entries);
        goto done;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (f->meta) {
                st = pi0_fail(err, PI0_ERR_FORMAT, "\"__metadata__\" appears twice");
                goto done;
            }
            if ((st = parse_metadata(f, e, err)) != PI0_OK) goto done;
            continue;
        }
        pi0_st_tensor *t = &f->tensors[f->n];
        t->name = strdup(e->string);
        if (!t->name) {
            st = pi0_fail(err, PI0_ERR_NOMEM, "out of memory for tensor names");
            goto done;
        }
        f->n++;
        byte_range *r = &ranges[f->n - 1];
        r->index = f->n - 1;
        if ((st = parse_tensor(f, t, e, &r->begin, &r->end, err)) != PI0_OK) goto done;
    }

    /* Duplicate names (JSON allows repeated keys; a tensor table does not). */
    for (int i = 0; i < f->n; i++) f->by_name[i] = i;
    sort_tensors = f->tensors;
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, name_cmp);
    for (int i = 1; i < f->n; i++) {
        const char *a = f->tensors[f->by_name[i - 1]].name, *b = f->tensors[f->by_name[i]].name;
        if (strcmp(a, b) == 0) {
            char nb[160];
            st = pi0_fail(err, PI0_ERR_FORMAT, "tensor '%s' appears twice in the header",
                          short_name(a, nb, sizeof nb));
            goto done;
        }
    }

    /* Overlapping byte ranges: sorted by begin, each range must end before the next begins.
     * Empty ranges overlap nothing. */
    qsort(ranges, (size_t)f->n, sizeof *ranges, range_cmp);
    uint64_t prev_end = 0;
    int prev = -1;
    for (int i = 0; i < f->n; i++) {
        if (ranges[i].begin == ranges[i].end) continue;
        if (prev >= 0 && ranges[i].begin < prev_end) {
            char na[120], nb[120];
            const byte_range *p = &ranges[prev];
            st = pi0_fail(err, PI0_ERR_FORMAT,
                          "tensor '%s': data_offsets [%llu, %llu] overlap those of tensor '%s' "
                          "[%llu, %llu]",
                          short_name(f->tensors[ranges[i].index].name, na, sizeof na),
                          (unsigned long long)ranges[i].begin, (unsigned long long)ranges[i].end,
                          short_name(f->tensors[p->index].name, nb, sizeof nb),
                          (unsigned long long)p->begin, (unsigned long long)p->end);
            goto done;
        }
        prev_end = ranges[i].end;
        prev = i;
    }
done:
    free(ranges);
    cJSON_Delete(root);
    return st;
}

pi0_status pi0_safetensors_parse(pi0_safetensors **out, const uint8_t *buf, size_t len,
                                 pi0_error *err) {
    *out = NULL;
    if (len < 8)
        return pi0_fail(err, PI0_ERR_IO,
                        "truncated: %zu bytes, shorter than the 8-byte header length", len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i]; /* little-endian whatever the host */
    if (hlen > PI0_ST_MAX_HEADER_BYTES)
        return pi0_fail(err, PI0_ERR_FORMAT,
                        "header length %llu is absurd (limit %llu bytes): not a safetensors file?",
                        (unsigned long long)hlen, (unsigned long long)PI0_ST_MAX_HEADER_BYTES);
    if (hlen > len - 8)
        return pi0_fail(err, PI0_ERR_IO,
                        "header length %llu is past the end of the file (%zu bytes): truncated?",
                        (unsigned long long)hlen, len);
    pi0_safetensors *f = calloc(1, sizeof *f);
    if (!f) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory");
    f->base = buf;
    f->len = len;
    f->data = buf + 8 + hlen;
    f->data_bytes = len - 8 - (size_t)hlen;
    pi0_status st = parse_header(f, (const char *)buf + 8, (size_t)hlen, err);
    if (st != PI0_OK) {
        pi0_safetensors_close(f);
        return st;
    }
    *out = f;
    return PI0_OK;
}

pi0_status pi0_safetensors_open(pi0_safetensors **out, const char *path, pi0_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pi0_fail(err, PI0_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return pi0_fail(err, PI0_ERR_IO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return pi0_fail(err, PI0_ERR_IO, "%s is not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = NULL;
    if (len >= 8) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return pi0_fail(err, PI0_ERR_IO, "cannot map %s (%zu bytes): %s", path, len, strerror(e));
        }
    }
    close(fd); /* the mapping keeps the file */
    /* Files under 8 bytes are not mapped; parse only reports their length. */
    static const uint8_t empty[8];
    pi0_status st = pi0_safetensors_parse(out, map ? map : empty, len, err);
    if (st != PI0_OK) {
        if (map) munmap(map, len);
        return pi0_fail_context(err, st, "%s", path);
    }
    (*out)->map = map;
    (*out)->map_len = len;
    return PI0_OK;
}

int pi0_safetensors_count(const pi0_safetensors *f) { return f->n; }

const pi0_st_tensor *pi0_safetensors_at(const pi0_safetensors *f, int i) {
    return i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const pi0_st_tensor *pi0_safetensors_find(const pi0_safetensors *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const pi0_st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

size_t pi0_safetensors_file_bytes(const pi0_safetensors *f) { return f->len; }

const char *pi0_safetensors_metadata(const pi0_safetensors *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

/* ---- writer ------------------------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap) cap *= 2;
        char *g = realloc(b->s, cap);
        if (!g) {
            b->oom = true;
            return;
        }
        b->s = g;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json_string(strbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static size_t entry_bytes(const pi0_st_write_entry *e) {
    size_t n = pi0_dtype_size(e->dtype);
    for (int d = 0; d < e->ndim; d++) n *= (size_t)e->shape[d];
    return n;
}

pi0_status pi0_safetensors_write(const char *path, const pi0_st_write_entry *entries, int n,
                                 pi0_error *err) {
    strbuf h = { 0 };
    size_t offset = 0, max_fill = 0;
    sb_str(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        const pi0_st_write_entry *e = &entries[i];
        if (e->ndim < 0 || e->ndim > PI0_ST_MAX_DIMS || pi0_dtype_size(e->dtype) == 0 ||
            (!e->data && !e->fill)) {
            free(h.s);
            return pi0_fail(err, PI0_ERR_INPUT, "cannot write tensor '%s': bad entry", e->name);
        }
        size_t nb = entry_bytes(e);
        if (!e->data && nb > max_fill) max_fill = nb;
        char num[64];
        sb_str(&h, ",");
        sb_json_string(&h, e->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, pi0_dtype_name(e->dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)e->shape[d]);
            sb_str(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", offset, offset + nb);
        sb_str(&h, num);
        offset += nb;
    }
    sb_str(&h, "}");
    /* Pad with spaces so the data section starts 8-byte aligned, as the reference writer does. */
    while (!h.oom && (8 + h.len) % 8) sb_str(&h, " ");
    if (h.oom) {
        free(h.s);
        return pi0_fail(err, PI0_ERR_NOMEM, "out of memory building the header of %s", path);
    }

    size_t tmp_len = strlen(path) + 16;
    char *tmp = malloc(tmp_len);
    void *fill_buf = max_fill ? malloc(max_fill) : NULL;
    FILE *fp = NULL;
    pi0_status st = PI0_OK;
    if (!tmp || (max_fill && !fill_buf)) {
        st = pi0_fail(err, PI0_ERR_NOMEM, "out of memory writing %s (%zu bytes of staging)", path,
                      max_fill);
        goto done;
    }
    snprintf(tmp, tmp_len, "%s.tmp%ld", path, (long)getpid());
    fp = fopen(tmp, "wb");
    if (!fp) {
        st = pi0_fail(err, PI0_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    if (fwrite(len8, 1, 8, fp) != 8 || fwrite(h.s, 1, h.len, fp) != h.len) goto write_failed;
    for (int i = 0; i < n; i++) {
        const pi0_st_write_entry *e = &entries[i];
        size_t nb = entry_bytes(e);
        const void *src = e->data;
        if (!src) {
            if ((st = e->fill(e->fill_ctx, i, fill_buf, nb, err)) != PI0_OK) goto done;
            src = fill_buf;
        }
        if (nb && fwrite(src, 1, nb, fp) != nb) goto write_failed;
    }
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) goto write_failed;
    if (fclose(fp) != 0) {
        fp = NULL;
        goto write_failed;
    }
    fp = NULL;
    if (rename(tmp, path) != 0) {
        st = pi0_fail(err, PI0_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
    free(tmp);
    tmp = NULL;
    goto done;
write_failed:
    st = pi0_fail(err, PI0_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
done:
    if (fp) fclose(fp);
    if (tmp) remove(tmp); /* only on failure: success renamed it and cleared tmp */
    free(tmp);
    free(fill_buf);
    free(h.s);
    return st;
}
