/* msgpack_numpy.c - decode a request into a value tree, encode numpy arrays (SERVING_SPEC 2).
 * msgpack-c parses the bytes; a first pass over them bounds what msgpack-c will allocate
 * (counts, depth, object total) so hostile headers cannot ask for gigabytes. The tree then
 * applies openpi's object hook: a map with the bin key "__ndarray__" is an array, one with
 * "__npgeneric__" a numpy scalar. Not here: what any key means. */
#include "policy/msgpack_numpy.h"

#include <math.h>
#include <stdio.h>

/* Objects in one message. An openpi request holds a few dozen; the cap keeps msgpack-c's slots
 * (24 bytes each) and ours under ~60 MB for any input. */
enum { MAX_OBJECTS = 1 << 20 };

#define NOT_MSGPACK "request is not valid msgpack: "

/* ---- first pass: structure and limits --------------------------------------------------- */

static uint64_t read_be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Walks msg once. msgpack-c allocates a container's slots as soon as it reads the count, so an
 * array header claiming 4 billion entries would ask for ~100 GB; every entry takes at least one
 * byte, so a count larger than the bytes left is refused here, as are deep nesting, extension
 * types (openpi sends none) and bytes after the first object (msgpack-python refuses those). */
static pi0_status prescan(const uint8_t *p, size_t len, pi0_error *err) {
    uint64_t pending[PI0_MSG_MAX_DEPTH + 1]; /* objects still to read at each nesting level */
    int depth = 0;
    pending[0] = 1;
    size_t pos = 0, n_objects = 0;
    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        if (pos >= len) return pi0_fail(err, PI0_ERR_FORMAT, NOT_MSGPACK "truncated at byte %zu", pos);
        if (++n_objects > MAX_OBJECTS)
            return pi0_fail(err, PI0_ERR_INPUT, NOT_MSGPACK "more than %d objects", MAX_OBJECTS);
        size_t at = pos;
        uint8_t b = p[pos++];
        int len_bytes = 0;       /* size of the length or count field that follows */
        uint64_t n = 0;          /* payload bytes (scalars, str, bin) or entries (containers) */
        int per_entry = 0;       /* objects per entry: 1 array, 2 map, 0 not a container */
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool: no payload */
        } else if (b <= 0x8f) {
            n = b & 0x0f, per_entry = 2;
        } else if (b <= 0x9f) {
            n = b & 0x0f, per_entry = 1;
        } else if (b <= 0xbf) {
            n = b & 0x1f;
        } else {
            switch (b) {
            case 0xc4: case 0xd9: len_bytes = 1; break;               /* bin8, str8 */
            case 0xc5: case 0xda: len_bytes = 2; break;               /* bin16, str16 */
            case 0xc6: case 0xdb: len_bytes = 4; break;               /* bin32, str32 */
            case 0xcc: case 0xd0: n = 1; break;
            case 0xcd: case 0xd1: n = 2; break;
            case 0xca: case 0xce: case 0xd2: n = 4; break;
            case 0xcb: case 0xcf: case 0xd3: n = 8; break;
            case 0xdc: len_bytes = 2, per_entry = 1; break;
            case 0xdd: len_bytes = 4, per_entry = 1; break;
            case 0xde: len_bytes = 2, per_entry = 2; break;
            case 0xdf: len_bytes = 4, per_entry = 2; break;
            case 0xc1:
                return pi0_fail(err, PI0_ERR_FORMAT, NOT_MSGPACK "byte 0xc1 (never used) at byte %zu", at);
            default:
                return pi0_fail(err, PI0_ERR_FORMAT,
                                NOT_MSGPACK "extension type 0x%02x at byte %zu (openpi sends none)", b, at);
            }
        }
        if (len_bytes) {
            if ((size_t)len_bytes > len - pos)
                return pi0_fail(err, PI0_ERR_FORMAT, NOT_MSGPACK "truncated at byte %zu", pos);
            n = read_be(p + pos, len_bytes);
            pos += (size_t)len_bytes;
        }
        if (!per_entry) {
            if (n > len - pos)
                return pi0_fail(err, PI0_ERR_FORMAT,
                                NOT_MSGPACK "truncated: the object at byte %zu needs %llu bytes, %zu are left",
                                at, (unsigned long long)n, len - pos);
            pos += (size_t)n;
            continue;
        }
        uint64_t n_children = n * (uint64_t)per_entry;
        if (n_children > len - pos)
            return pi0_fail(err, PI0_ERR_FORMAT,
                            NOT_MSGPACK "truncated: the %s at byte %zu claims %llu entries, %zu bytes are left",
                            per_entry == 2 ? "map" : "array", at, (unsigned long long)n, len - pos);
        if (n_children == 0) continue;
        if (depth == PI0_MSG_MAX_DEPTH)
            return pi0_fail(err, PI0_ERR_INPUT, NOT_MSGPACK "containers nested deeper than %d levels",
                            PI0_MSG_MAX_DEPTH);
        pending[++depth] = n_children;
    }
    if (pos != len)
        return pi0_fail(err, PI0_ERR_FORMAT, NOT_MSGPACK "%zu extra bytes after the first object", len - pos);
    return PI0_OK;
}

/* ---- dtype strings and numbers ----------------------------------------------------------- */

pi0_status pi0_npy_dtype_parse(pi0_npy_dtype *dt, const char *s, size_t len, pi0_error *err) {
    memset(dt, 0, sizeof *dt);
    size_t shown = len < sizeof dt->str - 1 ? len : sizeof dt->str - 1;
    for (size_t i = 0; i < shown; i++) dt->str[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (len < 2 || !strchr("<>|=", s[0]))
        return pi0_fail(err, PI0_ERR_FORMAT, "dtype '%s' is not a numpy dtype string (e.g. '<f4', '|u1')",
                        dt->str);
    dt->big_endian = s[0] == '>';
    dt->kind = s[1];
    const char *why = NULL;
    switch (s[1]) {
    case 'c': why = "complex"; break;
    case 'O': why = "object"; break;
    case 'V': why = "void/structured"; break;
    case 'M': case 'm': why = "datetime"; break;
    case 'b': case 'i': case 'u': case 'f': case 'U': case 'S': break;
    default: why = "unknown kind";
    }
    if (why) return pi0_fail(err, PI0_ERR_UNSUPPORTED, "dtype '%s' is not supported (%s)", dt->str, why);
    uint64_t n = 0;
    if (len == 2 || len > 2 + 9)
        return pi0_fail(err, PI0_ERR_FORMAT, "dtype '%s' has no valid item size", dt->str);
    for (size_t i = 2; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return pi0_fail(err, PI0_ERR_FORMAT, "dtype '%s' has no valid item size", dt->str);
        n = n * 10 + (uint64_t)(s[i] - '0');
    }
    bool ok;
    switch (dt->kind) {
    case 'b': ok = n == 1; break;
    case 'i': case 'u': ok = n == 1 || n == 2 || n == 4 || n == 8; break;
    case 'f': ok = n == 2 || n == 4 || n == 8; break;
    default: ok = true; /* U<n>, S<n>: n characters, n >= 0 */
    }
    if (!ok) return pi0_fail(err, PI0_ERR_UNSUPPORTED, "dtype '%s' is not supported (item size)", dt->str);
    dt->itemsize = dt->kind == 'U' ? (size_t)n * 4 : (size_t)n;
    return PI0_OK;
}

/* IEEE binary16 to double (exact). */
static double half_to_double(uint16_t h) {
    int exp = (h >> 10) & 0x1f;
    int mant = h & 0x3ff;
    double v;
    if (exp == 0) v = ldexp(mant, -24);
    else if (exp == 31) v = mant ? NAN : INFINITY;
    else v = ldexp(mant | 0x400, exp - 25);
    return (h & 0x8000) ? -v : v;
}

double pi0_msg_ndarray_get(const pi0_msg_ndarray *nd, size_t i) {
    const pi0_npy_dtype *dt = &nd->dtype;
    const uint8_t *p = nd->data + i * dt->itemsize;
    uint64_t raw = 0;
    for (size_t k = 0; k < dt->itemsize; k++) {
        size_t byte = dt->big_endian ? dt->itemsize - 1 - k : k;
        raw |= (uint64_t)p[byte] << (8 * k);
    }
    switch (dt->kind) {
    case 'b': return raw != 0;
    case 'u': return (double)raw;
    case 'i': {
        int shift = 64 - 8 * (int)dt->itemsize;
        return (double)((int64_t)(raw << shift) >> shift);   /* sign-extend */
    }
    case 'f':
        if (dt->itemsize == 2) return half_to_double((uint16_t)raw);
        if (dt->itemsize == 4) {
            uint32_t u = (uint32_t)raw;
            float f;
            memcpy(&f, &u, sizeof f);
            return f;
        } else {
            double d;
            memcpy(&d, &raw, sizeof d);
            return d;
        }
    }
    return NAN; /* text kinds: callers check the kind first */
}

bool pi0_msg_number(const pi0_msg_value *v, double *out) {
    if (v->kind == PI0_MSG_NPSCALAR) v = v->as.scalar.value;
    switch (v->kind) {
    case PI0_MSG_BOOL: *out = v->as.b; return true;
    case PI0_MSG_INT: *out = (double)v->as.i; return true;
    case PI0_MSG_UINT: *out = (double)v->as.u; return true;
    case PI0_MSG_FLOAT: *out = v->as.f; return true;
    default: return false;
    }
}

/* ---- second pass: msgpack objects to our tree --------------------------------------------- */

typedef struct {
    msgpack_zone *zone;
    char path[256];              /* keys from the root joined with '/', for messages */
    pi0_error *err;
} converter;

static const char *path_or_root(const converter *c) { return c->path[0] ? c->path : "request"; }

/* Python's strict UTF-8 (see msgpack_numpy.h); also used for prompts in transforms.c. */
bool pi0_utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) { i++; continue; }
        int extra;
        uint32_t cp, min;
        if ((b & 0xe0) == 0xc0) extra = 1, cp = b & 0x1f, min = 0x80;
        else if ((b & 0xf0) == 0xe0) extra = 2, cp = b & 0x0f, min = 0x800;
        else if ((b & 0xf8) == 0xf0) extra = 3, cp = b & 0x07, min = 0x10000;
        else return false;
        if ((size_t)extra > n - i - 1) return false;
        for (int k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += (size_t)extra + 1;
    }
    return true;
}

static void *zone_alloc(converter *c, size_t size) {
    return msgpack_zone_malloc(c->zone, size ? size : 1);
}

/* Appends "/key" (or "[i]" when key is NULL) to the path; returns the old length to restore. */
static size_t path_push(converter *c, const char *key, size_t key_len, size_t index) {
    size_t old = strlen(c->path), room = sizeof c->path - old;
    if (key) {
        int n = (int)(key_len < 64 ? key_len : 64);
        snprintf(c->path + old, room, "%s%.*s", old ? "/" : "", n, key);
    } else {
        snprintf(c->path + old, room, "[%zu]", index);
    }
    return old;
}

static const msgpack_object *find_bin_key(const msgpack_object *map, const char *key) {
    size_t n = strlen(key);
    for (uint32_t i = map->via.map.size; i-- > 0;) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_BIN && k->via.bin.size == n && !memcmp(k->via.bin.ptr, key, n))
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static pi0_status parse_dtype_object(converter *c, const msgpack_object *o, pi0_npy_dtype *dt) {
    if (!o) return pi0_fail(c->err, PI0_ERR_FORMAT, "%s: numpy map without a bin 'dtype' key",
                            path_or_root(c));
    if (o->type != MSGPACK_OBJECT_STR && o->type != MSGPACK_OBJECT_BIN)
        return pi0_fail(c->err, PI0_ERR_FORMAT, "%s: numpy 'dtype' must be a str", path_or_root(c));
    pi0_status st = pi0_npy_dtype_parse(dt, o->via.str.ptr, o->via.str.size, c->err);
    if (st) return pi0_fail_context(c->err, st, "%s", path_or_root(c));
    return PI0_OK;
}

static pi0_status make_ndarray(converter *c, const msgpack_object *map, pi0_msg_value *out) {
    const char *where = path_or_root(c);
    pi0_msg_ndarray *nd = zone_alloc(c, sizeof *nd);
    if (!nd) return pi0_fail(c->err, PI0_ERR_NOMEM, "%s: out of memory", where);
    memset(nd, 0, sizeof *nd);
    const msgpack_object *data = find_bin_key(map, "data");
    const msgpack_object *shape = find_bin_key(map, "shape");
    if (!data || data->type != MSGPACK_OBJECT_BIN)
        return pi0_fail(c->err, PI0_ERR_FORMAT, "%s: numpy array needs a bin 'data' entry (%s)", where,
                        data ? "it is not bin" : "missing; keys must be bin");
    pi0_status st = parse_dtype_object(c, find_bin_key(map, "dtype"), &nd->dtype);
    if (st) return st;
    if (!shape || shape->type != MSGPACK_OBJECT_ARRAY)
        return pi0_fail(c->err, PI0_ERR_FORMAT, "%s: numpy array needs a bin 'shape' key holding a list", where);
    if (shape->via.array.size > PI0_NPY_MAX_DIMS)
        return pi0_fail(c->err, PI0_ERR_SHAPE, "%s: shape has %u dimensions, numpy allows %d", where,
                        shape->via.array.size, PI0_NPY_MAX_DIMS);
    nd->ndim = (int)shape->via.array.size;
    size_t count = 1;
    bool overflow = false;
    for (int i = 0; i < nd->ndim; i++) {
        const msgpack_object *d = &shape->via.array.ptr[i];
        if (d->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            return pi0_fail(c->err, PI0_ERR_SHAPE, "%s: shape entry %d is negative (%lld)", where, i,
                            (long long)d->via.i64);
        if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return pi0_fail(c->err, PI0_ERR_SHAPE, "%s: shape entry %d is not an integer", where, i);
        if (d->via.u64 > (uint64_t)INT64_MAX)
            return pi0_fail(c->err, PI0_ERR_SHAPE, "%s: shape entry %d is too large", where, i);
        nd->shape[i] = (int64_t)d->via.u64;
        if (d->via.u64 != 0 && count > SIZE_MAX / d->via.u64) overflow = true;
        else count *= (size_t)d->via.u64;
    }
    char sbuf[128];
    pi0_shape_str(sbuf, sizeof sbuf, nd->ndim, nd->shape);
    size_t item = nd->dtype.itemsize;
    if (overflow || (item && count > SIZE_MAX / item))
        return pi0_fail(c->err, PI0_ERR_SHAPE, "%s: shape %s has too many elements", where, sbuf);
    /* With a zero-sized dimension count is 0 even if another factor overflowed alone. */
    for (int i = 0; i < nd->ndim; i++)
        if (nd->shape[i] == 0) count = 0;
    if ((size_t)data->via.bin.size < count * item)
        return pi0_fail(c->err, PI0_ERR_SHAPE,
                        "%s: data has %u bytes, shape %s with dtype '%s' needs %zu", where,
                        data->via.bin.size, sbuf, nd->dtype.str, count * item);
    nd->count = count;
    nd->data = (const uint8_t *)data->via.bin.ptr;
    out->kind = PI0_MSG_NDARRAY;
    out->as.nd = nd;
    return PI0_OK;
}

static pi0_status convert(converter *c, const msgpack_object *o, pi0_msg_value *out);

static pi0_status make_scalar(converter *c, const msgpack_object *map, pi0_msg_value *out) {
    const char *where = path_or_root(c);
    pi0_npy_dtype dt;
    pi0_status st = parse_dtype_object(c, find_bin_key(map, "dtype"), &dt);
    if (st) return st;
    const msgpack_object *data = find_bin_key(map, "data");
    if (!data) return pi0_fail(c->err, PI0_ERR_FORMAT, "%s: numpy scalar without a bin 'data' key", where);
    pi0_msg_value *v = zone_alloc(c, sizeof *v);
    if (!v) return pi0_fail(c->err, PI0_ERR_NOMEM, "%s: out of memory", where);
    st = convert(c, data, v);
    if (st) return st;
    if (v->kind != PI0_MSG_BOOL && v->kind != PI0_MSG_INT && v->kind != PI0_MSG_UINT &&
        v->kind != PI0_MSG_FLOAT)
        return pi0_fail(c->err, PI0_ERR_FORMAT, "%s: numpy scalar data must be a number or bool", where);
    if (dt.kind == 'U' || dt.kind == 'S')
        return pi0_fail(c->err, PI0_ERR_FORMAT, "%s: numpy scalar of dtype '%s' holds a number", where, dt.str);
    out->kind = PI0_MSG_NPSCALAR;
    out->as.scalar.dtype = dt;
    out->as.scalar.value = v;
    return PI0_OK;
}

static pi0_status convert(converter *c, const msgpack_object *o, pi0_msg_value *out) {
    memset(out, 0, sizeof *out);
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: out->kind = PI0_MSG_NIL; return PI0_OK;
    case MSGPACK_OBJECT_BOOLEAN: out->kind = PI0_MSG_BOOL, out->as.b = o->via.boolean; return PI0_OK;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 <= (uint64_t)INT64_MAX) out->kind = PI0_MSG_INT, out->as.i = (int64_t)o->via.u64;
        else out->kind = PI0_MSG_UINT, out->as.u = o->via.u64;
        return PI0_OK;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: out->kind = PI0_MSG_INT, out->as.i = o->via.i64; return PI0_OK;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: out->kind = PI0_MSG_FLOAT, out->as.f = o->via.f64; return PI0_OK;
    case MSGPACK_OBJECT_STR:
        if (!pi0_utf8_valid((const uint8_t *)o->via.str.ptr, o->via.str.size))
            return pi0_fail(c->err, PI0_ERR_FORMAT, NOT_MSGPACK "str under '%s' is not valid UTF-8",
                            path_or_root(c));
        out->kind = PI0_MSG_STR, out->as.str.ptr = o->via.str.ptr, out->as.str.len = o->via.str.size;
        return PI0_OK;
    case MSGPACK_OBJECT_BIN:
        out->kind = PI0_MSG_BIN, out->as.str.ptr = o->via.bin.ptr, out->as.str.len = o->via.bin.size;
        return PI0_OK;
    case MSGPACK_OBJECT_ARRAY: {
        size_t n = o->via.array.size;
        pi0_msg_value *items = zone_alloc(c, n * sizeof *items);
        if (!items) return pi0_fail(c->err, PI0_ERR_NOMEM, "%s: out of memory", path_or_root(c));
        for (size_t i = 0; i < n; i++) {
            size_t old = path_push(c, NULL, 0, i);
            pi0_status st = convert(c, &o->via.array.ptr[i], &items[i]);
            if (st) return st;
            c->path[old] = '\0';
        }
        out->kind = PI0_MSG_LIST, out->as.list.items = items, out->as.list.n = n;
        return PI0_OK;
    }
    case MSGPACK_OBJECT_MAP: {
        size_t n = o->via.map.size;
        pi0_msg_entry *entries = zone_alloc(c, n * sizeof *entries);
        pi0_msg_value *values = zone_alloc(c, n * sizeof *values);
        if (!entries || !values) return pi0_fail(c->err, PI0_ERR_NOMEM, "%s: out of memory", path_or_root(c));
        for (size_t i = 0; i < n; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type != MSGPACK_OBJECT_STR && k->type != MSGPACK_OBJECT_BIN)
                return pi0_fail(c->err, PI0_ERR_FORMAT, NOT_MSGPACK "a map key under '%s' is not str or bin",
                                path_or_root(c));
            if (k->type == MSGPACK_OBJECT_STR && !pi0_utf8_valid((const uint8_t *)k->via.str.ptr, k->via.str.size))
                return pi0_fail(c->err, PI0_ERR_FORMAT, NOT_MSGPACK "a str key under '%s' is not valid UTF-8",
                                path_or_root(c));
            entries[i].key_is_bin = k->type == MSGPACK_OBJECT_BIN;
            entries[i].key = k->via.str.ptr;
            entries[i].key_len = k->via.str.size;
            entries[i].value = &values[i];
            size_t old = path_push(c, k->via.str.ptr, k->via.str.size, 0);
            pi0_status st = convert(c, &o->via.map.ptr[i].val, &values[i]);
            if (st) return st;
            c->path[old] = '\0';
        }
        /* openpi's object hook, applied after the map's contents are decoded (SERVING_SPEC 2.4). */
        if (find_bin_key(o, "__ndarray__")) return make_ndarray(c, o, out);
        if (find_bin_key(o, "__npgeneric__")) return make_scalar(c, o, out);
        out->kind = PI0_MSG_MAP, out->as.map.entries = entries, out->as.map.n = n;
        return PI0_OK;
    }
    default:
        return pi0_fail(c->err, PI0_ERR_FORMAT, NOT_MSGPACK "unsupported object type under '%s'",
                        path_or_root(c));
    }
}

pi0_status pi0_msg_doc_decode(pi0_msg_doc *doc, const uint8_t *msg, size_t len, pi0_error *err) {
    memset(doc, 0, sizeof *doc);
    if (len == 0) return pi0_fail(err, PI0_ERR_FORMAT, NOT_MSGPACK "empty message");
    pi0_status st = prescan(msg, len, err);
    if (st) return st;
    msgpack_unpacked_init(&doc->unpacked);
    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(&doc->unpacked, (const char *)msg, len, &off);
    if (ret != MSGPACK_UNPACK_SUCCESS || off != len) {
        msgpack_unpacked_destroy(&doc->unpacked);
        if (ret == MSGPACK_UNPACK_NOMEM_ERROR) return pi0_fail(err, PI0_ERR_NOMEM, NOT_MSGPACK "out of memory");
        return pi0_fail(err, PI0_ERR_FORMAT, NOT_MSGPACK "msgpack-c refused it (code %d)", (int)ret);
    }
    if (!doc->unpacked.zone) doc->unpacked.zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
    converter c = { .zone = doc->unpacked.zone, .path = "", .err = err };
    pi0_msg_value *root = c.zone ? zone_alloc(&c, sizeof *root) : NULL;
    if (!root) {
        msgpack_unpacked_destroy(&doc->unpacked);
        return pi0_fail(err, PI0_ERR_NOMEM, NOT_MSGPACK "out of memory");
    }
    st = convert(&c, &doc->unpacked.data, root);
    if (st) {
        msgpack_unpacked_destroy(&doc->unpacked);
        memset(doc, 0, sizeof *doc);
        return st;
    }
    doc->root = root;
    return PI0_OK;
}

void pi0_msg_doc_free(pi0_msg_doc *doc) {
    if (!doc || !doc->root) return;
    msgpack_unpacked_destroy(&doc->unpacked);
    memset(doc, 0, sizeof *doc);
}

const pi0_msg_value *pi0_msg_map_get(const pi0_msg_value *map, const char *key) {
    if (!map || map->kind != PI0_MSG_MAP) return NULL;
    size_t n = strlen(key);
    for (size_t i = map->as.map.n; i-- > 0;) {
        const pi0_msg_entry *e = &map->as.map.entries[i];
        if (!e->key_is_bin && e->key_len == n && !memcmp(e->key, key, n)) return e->value;
    }
    return NULL;
}

const char *pi0_msg_describe(const pi0_msg_value *v, char *buf, size_t size) {
    char sbuf[128];
    switch (v->kind) {
    case PI0_MSG_NIL: snprintf(buf, size, "nil"); break;
    case PI0_MSG_BOOL: snprintf(buf, size, "a bool"); break;
    case PI0_MSG_INT:
    case PI0_MSG_UINT: snprintf(buf, size, "an int"); break;
    case PI0_MSG_FLOAT: snprintf(buf, size, "a float"); break;
    case PI0_MSG_STR: snprintf(buf, size, "a str"); break;
    case PI0_MSG_BIN: snprintf(buf, size, "bytes"); break;
    case PI0_MSG_LIST: snprintf(buf, size, "a list of %zu", v->as.list.n); break;
    case PI0_MSG_MAP:
        /* The usual mistake behind a map where an array was expected: str keys. */
        if (pi0_msg_map_get(v, "__ndarray__"))
            snprintf(buf, size, "a map with a str key '__ndarray__' (numpy arrays need bin keys)");
        else
            snprintf(buf, size, "a map");
        break;
    case PI0_MSG_NDARRAY:
        snprintf(buf, size, "an array of shape %s and dtype %s",
                 pi0_shape_str(sbuf, sizeof sbuf, v->as.nd->ndim, v->as.nd->shape), v->as.nd->dtype.str);
        break;
    case PI0_MSG_NPSCALAR: snprintf(buf, size, "a numpy scalar of dtype %s", v->as.scalar.dtype.str); break;
    }
    return buf;
}

/* ---- encoding ------------------------------------------------------------------------------ */

static int writer_write(void *data, const char *buf, size_t len) {
    pi0_msg_writer *w = data;
    if (w->failed) return -1;
    if (msgpack_sbuffer_write(&w->sb, buf, len) != 0) w->failed = true;
    return w->failed ? -1 : 0;
}

void pi0_msg_writer_init(pi0_msg_writer *w) {
    memset(w, 0, sizeof *w);
    msgpack_sbuffer_init(&w->sb);
    msgpack_packer_init(&w->pk, w, writer_write);
}

pi0_status pi0_msg_writer_finish(pi0_msg_writer *w, uint8_t **out, size_t *len, pi0_error *err) {
    *out = NULL;
    *len = 0;
    if (w->failed || !w->sb.data) {
        msgpack_sbuffer_destroy(&w->sb);
        return pi0_fail(err, PI0_ERR_NOMEM, "encoding a message: out of memory");
    }
    *out = (uint8_t *)w->sb.data;
    *len = w->sb.size;
    return PI0_OK;
}

static void pack_bin(msgpack_packer *pk, const void *p, size_t n) {
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, p, n);
}

void pi0_msg_pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void pi0_msg_pack_ndarray(msgpack_packer *pk, const char *dtype, const void *data, size_t data_bytes,
                          int ndim, const int64_t *shape) {
    msgpack_pack_map(pk, 4);
    pack_bin(pk, "__ndarray__", 11);
    msgpack_pack_true(pk);
    pack_bin(pk, "data", 4);
    pack_bin(pk, data, data_bytes);
    pack_bin(pk, "dtype", 5);
    pi0_msg_pack_str(pk, dtype);
    pack_bin(pk, "shape", 5);
    msgpack_pack_array(pk, (size_t)ndim);
    for (int i = 0; i < ndim; i++) msgpack_pack_int64(pk, shape[i]);
}
