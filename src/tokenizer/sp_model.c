/* sp_model.c - reads a SentencePiece .model file (a protobuf ModelProto, proto2) and checks
 * that it is set up like PaliGemma's tokenizer (SERVING_SPEC 5.1, 5.2).
 * Not a general protobuf library: it knows the handful of fields the encoder needs and skips
 * the rest. Every read goes through a bounds-checked cursor, so a corrupt or truncated file
 * gives an error with its byte offset, never a read past the end. */
#include "tokenizer/sp_model.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };
enum { MODEL_UNIGRAM = 1, MODEL_BPE = 2, MODEL_WORD = 3, MODEL_CHAR = 4 };

typedef struct {
    const uint8_t *base;
    size_t len, pos;      /* pos <= len always */
    size_t origin;        /* offset of base in the whole file, for messages */
    char error[160];      /* the first error, with its offset */
} cursor;

/* ---- protobuf wire format -------------------------------------------------------------- */

static bool cursor_fail(cursor *c, const char *what, const char *problem) {
    if (!c->error[0])
        snprintf(c->error, sizeof c->error, "%s %s at byte %zu", problem, what,
                 c->origin + c->pos);
    return false;
}

/* On failure pos stays at the varint's first byte, the offset the message gives. */
static bool cursor_varint(cursor *c, uint64_t *v, const char *what) {
    uint64_t value = 0;
    size_t start = c->pos;
    for (int shift = 0; shift < 70; shift += 7) {
        if (c->pos == c->len) {
            c->pos = start;
            return cursor_fail(c, what, "truncated");
        }
        uint8_t b = c->base[c->pos++];
        if (shift == 63 && b > 1) {
            c->pos = start;
            return cursor_fail(c, what, "overlong varint in");
        }
        value |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = value;
            return true;
        }
    }
    c->pos = start;
    return cursor_fail(c, what, "overlong varint in");
}

/* A length-delimited field: *sub covers its bytes, and c moves past them. */
static bool cursor_sub(cursor *c, cursor *sub, const char *what) {
    uint64_t n;
    if (!cursor_varint(c, &n, what)) return false;
    if (n > c->len - c->pos) return cursor_fail(c, what, "truncated");
    *sub = (cursor){ .base = c->base + c->pos, .len = (size_t)n, .origin = c->origin + c->pos };
    c->pos += (size_t)n;
    return true;
}

static bool cursor_fixed32(cursor *c, uint32_t *v, const char *what) {
    if (c->len - c->pos < 4) return cursor_fail(c, what, "truncated");
    const uint8_t *p = c->base + c->pos;
    *v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    c->pos += 4;
    return true;
}

static bool cursor_skip(cursor *c, int wire, const char *what) {
    uint64_t v;
    cursor sub;
    switch (wire) {
    case WIRE_VARINT: return cursor_varint(c, &v, what);
    case WIRE_LEN: return cursor_sub(c, &sub, what);
    case WIRE_FIXED32:
        if (c->len - c->pos < 4) return cursor_fail(c, what, "truncated");
        c->pos += 4;
        return true;
    case WIRE_FIXED64:
        if (c->len - c->pos < 8) return cursor_fail(c, what, "truncated");
        c->pos += 8;
        return true;
    }
    return cursor_fail(c, what, "unsupported wire type (groups?) in");
}

/* Reads a field key; a wire type that does not match the field's declared one is an error. */
static bool cursor_key(cursor *c, int *field, int *wire, const char *what) {
    uint64_t key;
    if (!cursor_varint(c, &key, what)) return false;
    if (key >> 3 == 0 || key >> 3 > INT_MAX) return cursor_fail(c, what, "bad field number in");
    *field = (int)(key >> 3);
    *wire = (int)(key & 7);
    return true;
}

static bool expect_wire(cursor *c, int wire, int expected, const char *what) {
    return wire == expected || cursor_fail(c, what, "wrong wire type for");
}

/* ---- the messages ---------------------------------------------------------------------- */

typedef struct {
    const uint8_t *piece; /* borrowed: into the file bytes */
    size_t piece_len;
    bool has_piece;
    float score;
    uint64_t type;
} raw_piece;

/* proto2 defaults (sentencepiece_model.proto): an absent field has these values. */
typedef struct {
    uint64_t model_type;           /* default UNIGRAM */
    bool byte_fallback;            /* default false */
    bool treat_whitespace_as_suffix;
    const uint8_t *bos_piece;      /* default "<s>" */
    size_t bos_piece_len;
    bool has_normalizer;
    const uint8_t *norm_name;
    size_t norm_name_len;
    size_t charsmap_len;
    bool add_dummy_prefix;         /* default true */
    bool remove_extra_whitespaces; /* default true */
    bool escape_whitespaces;       /* default true */
} raw_specs;

static bool read_piece(cursor *c, raw_piece *p) {
    *p = (raw_piece){ .type = PI0_SP_NORMAL };
    while (c->pos < c->len) {
        int field, wire;
        if (!cursor_key(c, &field, &wire, "piece field")) return false;
        if (field == 1) {
            cursor s;
            if (!expect_wire(c, wire, WIRE_LEN, "piece text") || !cursor_sub(c, &s, "piece text"))
                return false;
            p->piece = s.base;
            p->piece_len = s.len;
            p->has_piece = true;
        } else if (field == 2) {
            uint32_t bits;
            if (!expect_wire(c, wire, WIRE_FIXED32, "piece score") ||
                !cursor_fixed32(c, &bits, "piece score"))
                return false;
            memcpy(&p->score, &bits, sizeof p->score);
        } else if (field == 3) {
            if (!expect_wire(c, wire, WIRE_VARINT, "piece type") ||
                !cursor_varint(c, &p->type, "piece type"))
                return false;
        } else if (!cursor_skip(c, wire, "unknown piece field")) {
            return false;
        }
    }
    return true;
}

static bool read_bool(cursor *c, int wire, bool *out, const char *what) {
    uint64_t v;
    if (!expect_wire(c, wire, WIRE_VARINT, what) || !cursor_varint(c, &v, what)) return false;
    *out = v != 0;
    return true;
}

static bool read_trainer_spec(cursor *c, raw_specs *s) {
    while (c->pos < c->len) {
        int field, wire;
        if (!cursor_key(c, &field, &wire, "trainer_spec field")) return false;
        bool ok;
        if (field == 3) {
            ok = expect_wire(c, wire, WIRE_VARINT, "trainer_spec.model_type") &&
                 cursor_varint(c, &s->model_type, "trainer_spec.model_type");
        } else if (field == 24) {
            ok = read_bool(c, wire, &s->treat_whitespace_as_suffix,
                           "trainer_spec.treat_whitespace_as_suffix");
        } else if (field == 35) {
            ok = read_bool(c, wire, &s->byte_fallback, "trainer_spec.byte_fallback");
        } else if (field == 46) {
            cursor sub;
            ok = expect_wire(c, wire, WIRE_LEN, "trainer_spec.bos_piece") &&
                 cursor_sub(c, &sub, "trainer_spec.bos_piece");
            if (ok) {
                s->bos_piece = sub.base;
                s->bos_piece_len = sub.len;
            }
        } else {
            ok = cursor_skip(c, wire, "trainer_spec field");
        }
        if (!ok) return false;
    }
    return true;
}

static bool read_normalizer_spec(cursor *c, raw_specs *s) {
    s->has_normalizer = true;
    while (c->pos < c->len) {
        int field, wire;
        if (!cursor_key(c, &field, &wire, "normalizer_spec field")) return false;
        bool ok;
        cursor sub;
        if (field == 1 || field == 2) {
            ok = expect_wire(c, wire, WIRE_LEN, "normalizer_spec string") &&
                 cursor_sub(c, &sub, "normalizer_spec string");
            if (ok && field == 1) {
                s->norm_name = sub.base;
                s->norm_name_len = sub.len;
            }
            if (ok && field == 2) s->charsmap_len = sub.len;
        } else if (field == 3) {
            ok = read_bool(c, wire, &s->add_dummy_prefix, "normalizer_spec.add_dummy_prefix");
        } else if (field == 4) {
            ok = read_bool(c, wire, &s->remove_extra_whitespaces,
                           "normalizer_spec.remove_extra_whitespaces");
        } else if (field == 5) {
            ok = read_bool(c, wire, &s->escape_whitespaces, "normalizer_spec.escape_whitespaces");
        } else {
            ok = cursor_skip(c, wire, "normalizer_spec field");
        }
        if (!ok) return false;
    }
    return true;
}

/* ---- the piece hash -------------------------------------------------------------------- */

static uint32_t hash_bytes(const char *s, size_t len) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static bool slot_holds(const pi0_tokenizer *t, const pi0_sp_slot *slot, const char *s,
                       size_t len) {
    int id = slot->normal_id >= 0 ? slot->normal_id : slot->reserved_id;
    const pi0_sp_piece *p = &t->pieces[id];
    return p->len == len && memcmp(t->text + p->offset, s, len) == 0;
}

/* The slot holding s (hash h), or the empty slot where it would go. The table is at most half
 * full, so the probe ends. Lookups never write: concurrent encodes share the tokenizer. */
static pi0_sp_slot *find_slot(const pi0_tokenizer *t, const char *s, size_t len, uint32_t h) {
    for (uint32_t i = h & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        pi0_sp_slot *slot = &t->slots[i];
        if (slot->normal_id < 0 && slot->reserved_id < 0) return slot;
        if (slot->hash == h && slot_holds(t, slot, s, len)) return slot;
    }
}

int pi0_sp_find_normal(const pi0_tokenizer *t, const char *s, size_t len) {
    return find_slot(t, s, len, hash_bytes(s, len))->normal_id;
}

int pi0_sp_piece_to_id(const pi0_tokenizer *t, const char *s, size_t len) {
    const pi0_sp_slot *slot = find_slot(t, s, len, hash_bytes(s, len));
    if (slot->reserved_id >= 0) return slot->reserved_id;
    if (slot->normal_id >= 0) return slot->normal_id;
    return t->unk_id;
}

size_t pi0_sp_match_user(const pi0_tokenizer *t, const char *s, size_t len) {
    if (len == 0 || !t->user_first[(uint8_t)s[0]]) return 0;
    for (int i = 0; i < t->n_user_lens; i++) {
        size_t n = t->user_lens[i];
        if (n > len) continue;
        int id = pi0_sp_find_normal(t, s, n);
        if (id >= 0 && t->pieces[id].type == PI0_SP_USER_DEFINED) return n;
    }
    return 0;
}

/* ---- load ------------------------------------------------------------------------------ */

static const char *model_type_name(uint64_t type) {
    switch (type) {
    case MODEL_UNIGRAM: return "UNIGRAM";
    case MODEL_BPE: return "BPE";
    case MODEL_WORD: return "WORD";
    case MODEL_CHAR: return "CHAR";
    }
    return "unknown";
}

/* "<0xHH>" with upper-case hex (SentencePiece's ByteToPiece) -> 0..255, else -1. */
static int byte_piece_value(const char *s, size_t len) {
    static const char hex[] = "0123456789ABCDEF";
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    const char *hi = memchr(hex, s[3], 16), *lo = memchr(hex, s[4], 16);
    if (!hi || !lo) return -1;
    return (int)(hi - hex) * 16 + (int)(lo - hex);
}

/* Piece text for a message: cut short, control bytes shown as \xHH. */
static const char *piece_str(char *buf, size_t size, const char *s, size_t len) {
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < size; i++) {
        uint8_t ch = (uint8_t)s[i];
        if (ch >= 0x20 && ch != 0x7f) buf[o++] = (char)ch;
        else o += (size_t)snprintf(buf + o, size - o, "\\x%02x", ch);
    }
    buf[o] = '\0';
    return buf;
}

static int compare_desc(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Parses the whole file into t (pieces, text) and the specs. */
static pi0_status parse_model(pi0_tokenizer *t, raw_specs *specs, const uint8_t *data,
                              size_t len, pi0_error *err) {
    cursor c = { .base = data, .len = len };
    size_t cap_pieces = 0, cap_text = 0, n_text = 0;
    while (c.pos < c.len) {
        int field, wire;
        if (!cursor_key(&c, &field, &wire, "ModelProto field")) break;
        cursor sub = { 0 };
        if (field == 1) {
            raw_piece p;
            if (!expect_wire(&c, wire, WIRE_LEN, "piece") || !cursor_sub(&c, &sub, "piece") ||
                !read_piece(&sub, &p)) {
                if (sub.error[0]) memcpy(c.error, sub.error, sizeof c.error);
                break;
            }
            if (t->n_pieces == INT_MAX / 2)
                return pi0_fail(err, PI0_ERR_FORMAT, "more than %d pieces", INT_MAX / 2);
            if ((size_t)t->n_pieces == cap_pieces) {
                cap_pieces = cap_pieces ? cap_pieces * 2 : 1024;
                pi0_sp_piece *grown = realloc(t->pieces, cap_pieces * sizeof *grown);
                if (!grown) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for pieces");
                t->pieces = grown;
            }
            if (p.piece_len > cap_text - n_text) {
                while (p.piece_len > cap_text - n_text) cap_text = cap_text ? cap_text * 2 : 65536;
                char *grown = realloc(t->text, cap_text);
                if (!grown) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for pieces");
                t->text = grown;
            }
            if (p.piece_len > UINT32_MAX || n_text > UINT32_MAX - p.piece_len)
                return pi0_fail(err, PI0_ERR_FORMAT, "piece text larger than 4 GiB");
            if (p.piece_len) memcpy(t->text + n_text, p.piece, p.piece_len);
            t->pieces[t->n_pieces++] = (pi0_sp_piece){
                .offset = (uint32_t)n_text, .len = (uint32_t)p.piece_len,
                .score = p.score, .type = p.type <= 255 ? (uint8_t)p.type : 0 };
            n_text += p.piece_len;
            if (p.type < PI0_SP_NORMAL || p.type > PI0_SP_BYTE)
                return pi0_fail(err, PI0_ERR_FORMAT, "piece %d has type %llu, expected 1..6",
                                t->n_pieces - 1, (unsigned long long)p.type);
        } else if (field == 2 || field == 3) {
            const char *what = field == 2 ? "trainer_spec" : "normalizer_spec";
            if (!expect_wire(&c, wire, WIRE_LEN, what) || !cursor_sub(&c, &sub, what)) break;
            bool ok = field == 2 ? read_trainer_spec(&sub, specs)
                                 : read_normalizer_spec(&sub, specs);
            if (!ok) {
                memcpy(c.error, sub.error, sizeof c.error);
                break;
            }
        } else if (!cursor_skip(&c, wire, "ModelProto field")) {
            break;
        }
    }
    if (c.error[0]) return pi0_fail(err, PI0_ERR_FORMAT, "not a SentencePiece model: %s", c.error);
    return PI0_OK;
}

/* PaliGemma's settings (SERVING_SPEC 5.2): anything else would tokenize differently. */
static pi0_status check_settings(const raw_specs *s, pi0_error *err) {
    if (s->model_type != MODEL_BPE)
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "trainer_spec.model_type is %s (%llu), expected BPE (2) as in the "
                        "PaliGemma tokenizer", model_type_name(s->model_type),
                        (unsigned long long)s->model_type);
    if (!s->byte_fallback)
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "trainer_spec.byte_fallback is false, expected true");
    if (s->treat_whitespace_as_suffix)
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "trainer_spec.treat_whitespace_as_suffix is true, expected false");
    bool identity = s->norm_name_len == 8 && memcmp(s->norm_name, "identity", 8) == 0;
    if (!identity && s->charsmap_len != 0) {
        char name[64];
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "normalizer_spec is '%s' with a %zu-byte character map, expected the "
                        "identity normalizer (name 'identity' or an empty map)",
                        piece_str(name, sizeof name, (const char *)s->norm_name, s->norm_name_len),
                        s->charsmap_len);
    }
    if (s->add_dummy_prefix)
        return pi0_fail(err, PI0_ERR_UNSUPPORTED, "normalizer_spec.add_dummy_prefix is true%s, "
                        "expected false", s->has_normalizer ? "" : " (no normalizer_spec)");
    if (s->remove_extra_whitespaces)
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "normalizer_spec.remove_extra_whitespaces is true, expected false");
    if (!s->escape_whitespaces)
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "normalizer_spec.escape_whitespaces is false, expected true");
    return PI0_OK;
}

/* The checks SentencePiece makes when it loads (ModelInterface::InitializePieces), plus the
 * hash, the byte ids and the user-defined lengths. */
static pi0_status index_pieces(pi0_tokenizer *t, const raw_specs *s, pi0_error *err) {
    char buf[64];
    if (t->n_pieces == 0) return pi0_fail(err, PI0_ERR_FORMAT, "the model has no pieces");
    uint32_t n_slots = 16;
    while (n_slots < 2u * (uint32_t)t->n_pieces) n_slots *= 2;
    t->slots = malloc((size_t)n_slots * sizeof *t->slots);
    t->user_lens = malloc((size_t)t->n_pieces * sizeof *t->user_lens);
    if (!t->slots || !t->user_lens) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for the piece hash");
    for (uint32_t i = 0; i < n_slots; i++) t->slots[i] = (pi0_sp_slot){ 0, -1, -1 };
    t->slot_mask = n_slots - 1;
    t->unk_id = -1;
    for (int b = 0; b < 256; b++) t->byte_ids[b] = -1;

    for (int id = 0; id < t->n_pieces; id++) {
        const pi0_sp_piece *p = &t->pieces[id];
        const char *text = t->text + p->offset;
        if (p->len == 0) return pi0_fail(err, PI0_ERR_FORMAT, "piece %d is empty", id);
        bool normal = p->type == PI0_SP_NORMAL || p->type == PI0_SP_USER_DEFINED ||
                      p->type == PI0_SP_UNUSED;
        uint32_t h = hash_bytes(text, p->len);
        pi0_sp_slot *slot = find_slot(t, text, p->len, h);
        slot->hash = h;
        int32_t *dst = normal ? &slot->normal_id : &slot->reserved_id;
        if (*dst >= 0)
            return pi0_fail(err, PI0_ERR_FORMAT, "piece '%s' is defined twice (ids %d and %d)",
                            piece_str(buf, sizeof buf, text, p->len), (int)*dst, id);
        *dst = id;
        if (p->type == PI0_SP_UNKNOWN) {
            if (t->unk_id >= 0)
                return pi0_fail(err, PI0_ERR_FORMAT, "two UNKNOWN pieces (ids %d and %d)",
                                t->unk_id, id);
            t->unk_id = id;
        } else if (p->type == PI0_SP_BYTE) {
            int b = byte_piece_value(text, p->len);
            if (b < 0)
                return pi0_fail(err, PI0_ERR_FORMAT, "BYTE piece %d is '%s', expected <0xHH>",
                                id, piece_str(buf, sizeof buf, text, p->len));
            t->byte_ids[b] = id;
        } else if (p->type == PI0_SP_UNUSED) {
            t->n_unused++;
        } else if (p->type == PI0_SP_USER_DEFINED) {
            t->user_first[(uint8_t)text[0]] = 1;
            bool seen = false;
            for (int i = 0; i < t->n_user_lens && !seen; i++) seen = t->user_lens[i] == p->len;
            if (!seen) t->user_lens[t->n_user_lens++] = p->len;
        }
    }
    qsort(t->user_lens, (size_t)t->n_user_lens, sizeof *t->user_lens, compare_desc);
    if (t->unk_id < 0) return pi0_fail(err, PI0_ERR_FORMAT, "the model has no UNKNOWN piece");
    for (int b = 0; b < 256; b++)
        if (t->byte_ids[b] < 0)
            return pi0_fail(err, PI0_ERR_FORMAT, "byte fallback is on but piece <0x%02X> is "
                            "missing (expected 256 BYTE pieces)", b);

    const char *bos = s->bos_piece ? (const char *)s->bos_piece : "<s>";
    size_t bos_len = s->bos_piece ? s->bos_piece_len : 3;
    t->bos_id = pi0_sp_piece_to_id(t, bos, bos_len);
    if (t->pieces[t->bos_id].type != PI0_SP_CONTROL)
        return pi0_fail(err, PI0_ERR_FORMAT, "no CONTROL piece '%s' for <bos> "
                        "(trainer_spec.bos_piece)", piece_str(buf, sizeof buf, bos, bos_len));
    return PI0_OK;
}

pi0_status pi0_tokenizer_load(pi0_tokenizer **out, const uint8_t *data, size_t len,
                              pi0_error *err) {
    *out = NULL;
    if (!data && len) return pi0_fail(err, PI0_ERR_INPUT, "tokenizer data is NULL");
    pi0_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for the tokenizer");
    raw_specs specs = { .model_type = MODEL_UNIGRAM, .add_dummy_prefix = true,
                        .remove_extra_whitespaces = true, .escape_whitespaces = true };
    pi0_status st = parse_model(t, &specs, data ? data : (const uint8_t *)"", len, err);
    if (st == PI0_OK && t->n_pieces == 0)
        st = pi0_fail(err, PI0_ERR_FORMAT, "no pieces in %zu bytes: not a SentencePiece model", len);
    if (st == PI0_OK) st = check_settings(&specs, err);
    if (st == PI0_OK) st = index_pieces(t, &specs, err);
    if (st != PI0_OK) {
        pi0_tokenizer_close(t);
        return st;
    }
    *out = t;
    return PI0_OK;
}

pi0_status pi0_tokenizer_open(pi0_tokenizer **out, const char *path, pi0_error *err) {
    *out = NULL;
    struct stat sb;
    if (!path || !path[0] || (stat(path, &sb) != 0 && (errno == ENOENT || errno == ENOTDIR)))
        return pi0_fail(err, PI0_ERR_IO,
                        "PaliGemma tokenizer not found at %s: download "
                        "gs://big_vision/paligemma_tokenizer.model (public; e.g. `gsutil cp "
                        "gs://big_vision/paligemma_tokenizer.model .`; openpi caches it under "
                        "~/.cache/openpi/big_vision/) and pass --tokenizer PATH",
                        path && path[0] ? path : "(no path given)");
    char *data;
    size_t len;
    pi0_status st = pi0_read_file(path, &data, &len, err);
    if (st != PI0_OK) return st;
    st = pi0_tokenizer_load(out, (const uint8_t *)data, len, err);
    free(data);
    if (st != PI0_OK) return pi0_fail_context(err, st, "tokenizer %s", path);
    return PI0_OK;
}

void pi0_tokenizer_close(pi0_tokenizer *t) {
    if (!t) return;
    free(t->pieces);
    free(t->text);
    free(t->slots);
    free(t->user_lens);
    free(t);
}

int pi0_tokenizer_vocab_size(const pi0_tokenizer *t) { return t->n_pieces; }
