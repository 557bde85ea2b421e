/* bpe.c - SentencePiece BPE encoding with byte fallback, as the SentencePiece library computes
 * it for PaliGemma's settings (SERVING_SPEC 5.3): normalize, split into characters and
 * user-defined pieces, merge the best-scoring adjacent pair until none is left, re-segment
 * UNUSED pieces, map to ids with <0xHH> pieces for anything outside the vocabulary.
 * Not sampling (no BPE-dropout), no special tokens: the Pi0 layout is in prompt.c.
 * n input bytes; the merge loop is O(n log n): a heap of candidate pairs over a linked list
 * of symbols, stale heap entries skipped when popped. */
#include "tokenizer/sp_model.h"

#include <limits.h>
#include <stdlib.h>

/* Texts up to this size (bytes): every index below fits an int32 even after normalization
 * triples the bytes. */
#define MAX_TEXT_BYTES ((size_t)INT_MAX / 4)

typedef struct {
    uint32_t start, len; /* bytes of the normalized text; len 0: merged into its left */
    int32_t prev, next;  /* neighbours in the list, -1 at the ends */
    bool freeze;         /* a user-defined piece: never merged */
} symbol;

typedef struct {
    float score;         /* of the merged piece */
    int32_t left, right; /* symbols */
    uint32_t len;        /* bytes of the merged piece: tells a stale entry (a side grew) */
} pair;

/* Pop order: highest score first, then the leftmost pair (SentencePiece's comparator). */
static bool pair_before(const pair *a, const pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
    pair *items;
    size_t n;
} heap;

static void heap_push(heap *h, pair p) {
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &h->items[parent])) break;
        h->items[i] = h->items[parent];
        i = parent;
    }
    h->items[i] = p;
}

static pair heap_pop(heap *h) {
    pair top = h->items[0], last = h->items[--h->n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->n) break;
        if (child + 1 < h->n && pair_before(&h->items[child + 1], &h->items[child])) child++;
        if (!pair_before(&h->items[child], &last)) break;
        h->items[i] = h->items[child];
        i = child;
    }
    if (h->n) h->items[i] = last;
    return top;
}

/* UNUSED piece id -> byte length of the left half it was last merged from. SentencePiece keeps
 * the split of the last pair that formed the piece (a map overwritten on every insertion). */
typedef struct {
    int32_t *keys; /* -1: empty */
    uint32_t *left_len;
    uint32_t mask;
} split_map;

static void split_put(split_map *m, int32_t id, uint32_t left_len) {
    for (uint32_t i = ((uint32_t)id * 2654435761u) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] < 0 || m->keys[i] == id) {
            m->keys[i] = id;
            m->left_len[i] = left_len;
            return;
        }
    }
}

static bool split_get(const split_map *m, int32_t id, uint32_t *left_len) {
    if (!m->keys) return false;
    for (uint32_t i = ((uint32_t)id * 2654435761u) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] < 0) return false;
        if (m->keys[i] == id) {
            *left_len = m->left_len[i];
            return true;
        }
    }
}

/* Byte length of the UTF-8 character at s, or 0 if it is malformed, exactly as SentencePiece's
 * DecodeUTF8 decides: no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_char_len(const uint8_t *s, size_t len) {
    if (s[0] < 0x80) return 1;
    if (len >= 2 && (s[0] & 0xE0) == 0xC0) {
        uint32_t cp = (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
        return (s[1] & 0xC0) == 0x80 && cp >= 0x80 ? 2 : 0;
    }
    if (len >= 3 && (s[0] & 0xF0) == 0xE0) {
        uint32_t cp = (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        bool trail = (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80;
        return trail && cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF) ? 3 : 0;
    }
    if (len >= 4 && (s[0] & 0xF8) == 0xF0) {
        uint32_t cp = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
                      (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
        bool trail = (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80;
        return trail && cp >= 0x10000 && cp <= 0x10FFFF ? 4 : 0;
    }
    return 0;
}

/* Appends s[0, n) to out with every space escaped to U+2581. */
static size_t append_escaped(char *out, const char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(out + o, "\xE2\x96\x81", 3);
            o += 3;
        } else {
            out[o++] = s[i];
        }
    }
    return o;
}

/* The identity normalizer with escaped spaces (SERVING_SPEC 5.3 step 1). Like SentencePiece it
 * also turns each byte of malformed UTF-8 into U+FFFD, and it copies user-defined pieces
 * whole. out has room for 3 * len bytes. Returns the bytes written. */
static size_t normalize(const pi0_tokenizer *t, const char *in, size_t len, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = pi0_sp_match_user(t, in + i, len - i);
        if (!n) n = utf8_char_len((const uint8_t *)in + i, len - i);
        if (n) {
            o += append_escaped(out + o, in + i, n);
            i += n;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += 1;
        }
    }
    return o;
}

typedef struct {
    const pi0_tokenizer *t;
    const char *norm; /* normalized text */
    symbol *syms;
    heap agenda;
    split_map splits;
} encoder;

/* Queues the merge of symbols left and right if their concatenation is a normal piece. */
static void maybe_add_pair(encoder *e, int32_t left, int32_t right) {
    if (left < 0 || right < 0 || e->syms[left].freeze || e->syms[right].freeze) return;
    const symbol *l = &e->syms[left], *r = &e->syms[right];
    uint32_t len = l->len + r->len;
    int id = pi0_sp_find_normal(e->t, e->norm + l->start, len);
    if (id < 0) return;
    const pi0_sp_piece *p = &e->t->pieces[id];
    heap_push(&e->agenda, (pair){ p->score, left, right, len });
    if (p->type == PI0_SP_UNUSED) split_put(&e->splits, id, l->len);
}

typedef struct {
    int32_t *ids;
    int max_ids, n_ids;
} id_sink;

static void emit(id_sink *out, int32_t id) {
    if (out->n_ids < out->max_ids) out->ids[out->n_ids] = id;
    out->n_ids++;
}

int pi0_tokenizer_encode(const pi0_tokenizer *t, const char *text, size_t len, int32_t *ids,
                         int max_ids, pi0_error *err) {
    if (!text && len) {
        pi0_fail(err, PI0_ERR_INPUT, "text is NULL");
        return -1;
    }
    if (max_ids < 0 || (max_ids > 0 && !ids)) {
        pi0_fail(err, PI0_ERR_INPUT, "ids is %s with max_ids %d", ids ? "set" : "NULL", max_ids);
        return -1;
    }
    if (len > MAX_TEXT_BYTES) {
        pi0_fail(err, PI0_ERR_INPUT, "text of %zu bytes is longer than the tokenizer's limit "
                 "of %zu", len, MAX_TEXT_BYTES);
        return -1;
    }
    if (len == 0) return 0;

    encoder e = { .t = t };
    char *norm = malloc(3 * len);
    size_t n_norm = 0, n_syms = 0, *stack = NULL;
    int result = -1;
    if (!norm) goto nomem;
    n_norm = normalize(t, text, len, norm);
    e.norm = norm;

    /* Initial symbols (step 2): a user-defined piece, frozen, or one character. */
    e.syms = malloc(n_norm * sizeof *e.syms);
    if (!e.syms) goto nomem;
    for (size_t pos = 0; pos < n_norm;) {
        size_t n = pi0_sp_match_user(t, norm + pos, n_norm - pos);
        bool freeze = n > 0;
        if (!n) {
            static const uint8_t char_len[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
            n = char_len[(uint8_t)norm[pos] >> 4];
            if (n > n_norm - pos) n = n_norm - pos;
        }
        int32_t i = (int32_t)n_syms++;
        e.syms[i] = (symbol){ (uint32_t)pos, (uint32_t)n, i - 1, -1, freeze };
        pos += n;
        if (pos < n_norm) e.syms[i].next = i + 1;
    }

    /* Merges (step 3). At most n - 1 initial pairs and 2 new ones per merge. */
    e.agenda.items = malloc(3 * n_syms * sizeof *e.agenda.items);
    if (!e.agenda.items) goto nomem;
    if (t->n_unused > 0) {
        size_t cap = 16, want = 3 * n_syms < (size_t)t->n_unused ? 3 * n_syms : (size_t)t->n_unused;
        while (cap < 2 * want) cap *= 2;
        e.splits.keys = malloc(cap * sizeof *e.splits.keys);
        e.splits.left_len = malloc(cap * sizeof *e.splits.left_len);
        if (!e.splits.keys || !e.splits.left_len) goto nomem;
        memset(e.splits.keys, 0xff, cap * sizeof *e.splits.keys);
        e.splits.mask = (uint32_t)cap - 1;
    }
    for (size_t i = 1; i < n_syms; i++) maybe_add_pair(&e, (int32_t)i - 1, (int32_t)i);
    while (e.agenda.n) {
        pair top = heap_pop(&e.agenda);
        symbol *l = &e.syms[top.left], *r = &e.syms[top.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != top.len) continue;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) e.syms[r->next].prev = top.left;
        r->len = 0;
        maybe_add_pair(&e, l->prev, top.left);
        maybe_add_pair(&e, top.left, l->next);
    }

    /* Re-segmentation (step 4) and ids (step 5), with an explicit stack of (start, len) pieces
     * still to emit; each split makes both halves shorter, so n_norm + 1 entries suffice. */
    stack = malloc(2 * (n_norm + 1) * sizeof *stack);
    if (!stack) goto nomem;
    id_sink out = { ids, max_ids, 0 };
    for (int32_t i = 0; i >= 0; i = e.syms[i].next) {
        size_t n_stack = 0;
        stack[n_stack++] = e.syms[i].start;
        stack[n_stack++] = e.syms[i].len;
        while (n_stack) {
            size_t n = stack[--n_stack], start = stack[--n_stack];
            int id = pi0_sp_piece_to_id(t, norm + start, n);
            uint8_t type = t->pieces[id].type;
            uint32_t left_len;
            if (type == PI0_SP_UNUSED && split_get(&e.splits, id, &left_len)) {
                stack[n_stack++] = start + left_len; /* right half, popped second */
                stack[n_stack++] = n - left_len;
                stack[n_stack++] = start;
                stack[n_stack++] = left_len;
            } else if (type == PI0_SP_UNKNOWN) {
                for (size_t k = 0; k < n; k++) emit(&out, t->byte_ids[(uint8_t)norm[start + k]]);
            } else if (type == PI0_SP_CONTROL) {
                /* Only a model with odd one-character control pieces gets here; SentencePiece
                 * fails on such text too ("all normalized characters are not consumed"). */
                pi0_fail(err, PI0_ERR_INPUT, "text contains '%.*s', which is the CONTROL piece %d",
                         (int)n, norm + start, id);
                goto done;
            } else {
                emit(&out, id);
            }
        }
    }
    result = out.n_ids;
    goto done;
nomem:
    pi0_fail(err, PI0_ERR_NOMEM, "out of memory encoding a text of %zu bytes", len);
done:
    free(stack);
    free(e.splits.keys);
    free(e.splits.left_len);
    free(e.agenda.items);
    free(e.syms);
    free(norm);
    return result;
}
