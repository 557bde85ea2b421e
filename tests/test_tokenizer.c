/* test_tokenizer.c - the PaliGemma tokenizer: openpi's Pi0 prompt layout and cleaning, the BPE
 * rules on hand-built models, ids that the SentencePiece tool printed for the small trained
 * models, and the loader's refusals and errors (corrupt, truncated, other settings).
 *   test_tokenizer                 every row
 *   test_tokenizer NAME            one row;  --list lists them;  --seed N replays the corruption
 *   test_tokenizer --encode MODEL  reads lines on stdin, prints each line's ids (for
 *                                  test_tokenizer_exact.sh, which compares with spm_encode)
 * Run from the repository root (the models are under tests/data/tokenizer/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "rng.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

#define TINY "tests/data/tokenizer/tiny_paligemma_like.model"
#define TINY_NEWLINE 4 /* "\n" is the first user-defined symbol of make_models.sh: id 4 */

static uint64_t seed;

static pi0_tokenizer *open_model(const char *path) {
    pi0_tokenizer *t;
    pi0_error err = { "" };
    if (pi0_tokenizer_open(&t, path, &err) != PI0_OK) {
        printf("FAIL cannot open %s: %s\n", path, err.msg);
        n_failed++;
        return NULL;
    }
    return t;
}

/* encode(s) into ids (room for cap); returns the count, or -1 with a FAIL printed. */
static int encode(const pi0_tokenizer *t, const char *s, int32_t *ids, int cap) {
    pi0_error err = { "" };
    int n = pi0_tokenizer_encode(t, s, strlen(s), ids, cap, &err);
    CHECK(n >= 0, "encode '%s': %s", s, err.msg);
    CHECK(n <= cap, "encode '%s': %d ids, more than the test's %d", s, n, cap);
    return n;
}

static bool ids_equal(const int32_t *a, int n_a, const int32_t *b, int n_b) {
    return n_a == n_b && (n_a == 0 || memcmp(a, b, (size_t)n_a * sizeof *a) == 0);
}

static const char *ids_str(char *buf, size_t size, const int32_t *ids, int n) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && o + 12 < size; i++) o += (size_t)snprintf(buf + o, size - o, " %d", ids[i]);
    return buf;
}

/* ---- ids printed by spm_encode (SentencePiece 0.1.97) for the trained models ---------- */

static bool row_spm_ids(void) {
    static const struct { const char *text; int32_t ids[40]; int n; } cases[] = {
        { "Pick up the red block   and put it in 12 bowls <loc0003> 把红色 <bos> ▁x 😀",
          { 926, 402, 529, 284, 530, 547, 298, 644, 499, 353, 349, 820, 848, 844, 532, 832, 820,
            8, 685, 873, 880, 820, 85, 363, 832, 87, 281, 145, 820, 265, 184, 177, 153 }, 33 },
        { "\tOpen the drawer,\r close it_now  ",
          { 34, 953, 410, 284, 494, 913, 38, 559, 353, 120, 828, 294, 281 }, 13 },
        /* U+FB01 is not in the vocabulary (bytes); \xff and the cut U+3000 become U+FFFD each. */
        { "πάρε το κόκκινο <loc0001><loc00012> ﬁ\xff\xe3\x80 é",
          { 590, 525, 643, 820, 6, 85, 324, 831, 853, 853, 853, 848, 844, 87, 820, 264, 197, 154,
            264, 216, 214, 264, 216, 214, 264, 216, 214, 820, 856 }, 29 },
        { "", { 0 }, 0 },
    };
    pi0_tokenizer *t = open_model(TINY);
    if (!t) return false;
    int before = n_failed;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t ids[64];
        char got[512], want[512];
        int n = encode(t, cases[i].text, ids, 64);
        CHECK(ids_equal(ids, n, cases[i].ids, cases[i].n), "'%s': got%s, spm_encode gave%s",
              cases[i].text, ids_str(got, sizeof got, ids, n),
              ids_str(want, sizeof want, cases[i].ids, cases[i].n));
    }
    int32_t nl[4];
    int n = encode(t, "\n", nl, 4);
    CHECK(n == 1 && nl[0] == TINY_NEWLINE, "encode(\"\\n\") gave %d ids, first %d; expected [%d]",
          n, n ? nl[0] : -1, TINY_NEWLINE);
    CHECK(pi0_tokenizer_vocab_size(t) == 1000, "vocab size %d, expected 1000",
          pi0_tokenizer_vocab_size(t));
    /* Too small an output buffer: the count is still the whole text's. */
    int32_t two[2];
    pi0_error err = { "" };
    n = pi0_tokenizer_encode(t, cases[0].text, strlen(cases[0].text), two, 2, &err);
    CHECK(n == cases[0].n && two[0] == cases[0].ids[0] && two[1] == cases[0].ids[1],
          "with room for 2 ids: count %d (expected %d)", n, cases[0].n);
    n = pi0_tokenizer_encode(t, cases[0].text, strlen(cases[0].text), NULL, 0, &err);
    CHECK(n == cases[0].n, "counting only: %d, expected %d", n, cases[0].n);
    pi0_tokenizer_close(t);
    return n_failed == before;
}

/* ---- the Pi0 layout (SERVING_SPEC 3.9) -------------------------------------------------- */

/* Checks tokenize_prompt(raw) == layout of [bos] + encode(cleaned) + [nl] at max_len, with
 * the expected cleaned text written by hand. */
static void check_prompt(const pi0_tokenizer *t, const char *raw, size_t raw_len,
                         const char *cleaned, int max_len) {
    int32_t body[4096], want[4096 + 2], ids[4096];
    uint8_t mask[4096];
    int n_body = encode(t, cleaned, body, 4096);
    if (n_body < 0) return;
    int total = 0;
    want[total++] = 2;
    for (int i = 0; i < n_body; i++) want[total++] = body[i];
    want[total++] = TINY_NEWLINE;
    pi0_error err = { "" };
    memset(ids, 0x55, sizeof ids);
    memset(mask, 0x55, sizeof mask);
    int n = pi0_tokenize_prompt(t, raw, raw_len, max_len, ids, mask, &err);
    int n_want = total < max_len ? total : max_len;
    CHECK(n == n_want, "prompt '%s' (max_len %d): %d valid tokens, expected %d (%s)", raw,
          max_len, n, n_want, err.msg);
    if (n != n_want) return;
    for (int i = 0; i < max_len; i++) {
        int32_t id = i < n_want ? want[i] : 0;
        CHECK(ids[i] == id && mask[i] == (i < n_want),
              "prompt '%s' (max_len %d) position %d: id %d mask %d, expected id %d mask %d",
              raw, max_len, i, ids[i], mask[i], id, i < n_want);
        if (ids[i] != id || mask[i] != (i < n_want)) return;
    }
}

static bool row_layout(void) {
    pi0_tokenizer *t = open_model(TINY);
    if (!t) return false;
    int before = n_failed;
    int32_t ids[48];
    uint8_t mask[48];
    pi0_error err = { "" };

    /* The shape by hand: bos, the text (ids from spm_encode), the newline token, padding. */
    int n = pi0_tokenize_prompt(t, "pick up the red block", 21, 48, ids, mask, &err);
    static const int32_t head[] = { 2, 707, 529, 284, 530, 547, TINY_NEWLINE };
    CHECK(n == 7, "'pick up the red block': %d tokens, expected 7 (%s)", n, err.msg);
    for (int i = 0; i < 48 && n == 7; i++)
        CHECK(ids[i] == (i < 7 ? head[i] : 0) && mask[i] == (i < 7), "position %d: id %d mask %d",
              i, ids[i], mask[i]);

    /* Empty and all-whitespace prompts: [bos, nl]. */
    static const char *empty[] = { "", " ", "\t\n\r\v\f", "\xe3\x80\x80\xc2\xa0 \xe2\x80\xa8" };
    for (size_t k = 0; k < sizeof empty / sizeof *empty; k++) {
        n = pi0_tokenize_prompt(t, empty[k], strlen(empty[k]), 48, ids, mask, &err);
        CHECK(n == 2 && ids[0] == 2 && ids[1] == TINY_NEWLINE && ids[2] == 0 && mask[1] == 1 &&
              mask[2] == 0, "empty prompt %zu: %d tokens [%d, %d, %d]", k, n, ids[0], ids[1], ids[2]);
    }

    /* Every length around 48: k words give 2k + 2 ids or so; the rule is checked for each. */
    char text[2048] = "";
    for (int k = 0; k < 60; k++) {
        check_prompt(t, text, strlen(text), text, 48);
        strcat(text, k % 3 ? " move" : " 7");
        if (k == 0) memmove(text, text + 1, strlen(text)); /* no leading space to strip */
    }
    /* A long prompt: truncated to 48, mask all true, the newline token lost. */
    n = pi0_tokenize_prompt(t, text, strlen(text), 48, ids, mask, &err);
    int n_true = 0;
    for (int i = 0; i < 48; i++) n_true += mask[i];
    CHECK(n == 48 && n_true == 48 && ids[0] == 2 && ids[47] != TINY_NEWLINE,
          "long prompt: %d tokens, %d mask true, last id %d", n, n_true, ids[47]);
    check_prompt(t, text, strlen(text), text, 200);
    check_prompt(t, text, strlen(text), text, 1);

    CHECK(pi0_tokenize_prompt(t, "x", 1, 0, ids, mask, &err) == -1 && err.msg[0],
          "max_len 0 must fail");
    pi0_tokenizer_close(t);
    return n_failed == before;
}

static bool row_cleaning(void) {
    pi0_tokenizer *t = open_model(TINY);
    if (!t) return false;
    int before = n_failed;
    static const struct { const char *raw, *cleaned; } cases[] = {
        { "  pick up\t", "pick up" },
        { "pick_up_the\ncube", "pick up the cube" },
        { "_pick_", " pick " },                        /* '_' goes after the strip */
        { "\n pick \n", "pick" },                      /* '\n' at the ends is whitespace */
        { "a\rb\x1c", "a\rb" },                        /* CR inside is kept */
        { "\x1c\x1d\x1e\x1f\v\fx", "x" },
        /* U+3000 U+2003 ... U+00A0 inside kept ... U+205F U+2028 U+0085 */
        { "\xe3\x80\x80\xe2\x80\x83pick\xc2\xa0up\xe2\x81\x9f\xe2\x80\xa8\xc2\x85", "pick\xc2\xa0up" },
        { "\xe1\x9a\x80\xe2\x80\x80\xe2\x80\x8ax\xe2\x80\xa9\xe2\x80\xaf", "x" }, /* 1680 2000 200A / 2029 202F */
        { "x\xe2\x80\x8b", "x\xe2\x80\x8b" },          /* U+200B is not whitespace in Python */
        { "x\xe1\xa0\x8e", "x\xe1\xa0\x8e" },          /* nor U+180E */
        { "x\xff", "x\xff" },                          /* malformed UTF-8 is not whitespace */
        { "\xe3\x80", "\xe3\x80" },                    /* a cut U+3000 neither */
        { "\x80 x", "\x80 x" },
        { "x \xc0\xa0", "x \xc0\xa0" },                /* an overlong space neither */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_prompt(t, cases[i].raw, strlen(cases[i].raw), cases[i].cleaned, 48);
    pi0_tokenizer_close(t);
    return n_failed == before;
}

/* ---- hand-built models ------------------------------------------------------------------ */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void put_varint(buf *b, uint64_t v) {
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) c |= 0x80;
        put(b, &c, 1);
    } while (v);
}
static void put_len(buf *b, int field, const void *data, size_t n) {
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    put(b, data, n);
}
static void put_int(buf *b, int field, uint64_t v) {
    put_varint(b, (uint64_t)field << 3);
    put_varint(b, v);
}

typedef struct {
    const char *piece;
    float score;
    int type;
} test_piece;

enum { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER = 4, UNUSED = 5, BYTE = 6 };
#define FIRST_EXTRA 259 /* <unk> <s> </s>, 256 bytes, then the test's pieces */

typedef struct {
    int model_type, byte_fallback, suffix;        /* -1: field absent */
    bool no_normalizer;
    const char *norm_name;
    int charsmap_len;
    int dummy_prefix, remove_ws, escape_ws;       /* -1: field absent */
    int skip_byte;                                /* a byte piece to leave out, or -1 */
} model_opts;

static const model_opts paligemma_opts = { 2, 1, -1, false, "identity", 0, 0, 0, -1, -1 };

static void put_piece(buf *b, const char *text, float score, int type) {
    buf p = { 0 };
    put_len(&p, 1, text, strlen(text));
    uint32_t bits;
    memcpy(&bits, &score, 4);
    uint8_t le[5] = { 2 << 3 | 5, (uint8_t)bits, (uint8_t)(bits >> 8), (uint8_t)(bits >> 16),
                      (uint8_t)(bits >> 24) };
    put(&p, le, 5);
    if (type != NORMAL) put_int(&p, 3, (uint64_t)type);
    put_len(b, 1, p.p, p.n);
    free(p.p);
}

static buf build_model(const test_piece *extra, int n_extra, const model_opts *o) {
    buf b = { 0 };
    put_piece(&b, "<unk>", 0, UNKNOWN);
    put_piece(&b, "<s>", 0, CONTROL);
    put_piece(&b, "</s>", 0, CONTROL);
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        put_piece(&b, name, 0, i == o->skip_byte ? NORMAL : BYTE);
    }
    for (int i = 0; i < n_extra; i++) put_piece(&b, extra[i].piece, extra[i].score, extra[i].type);
    buf ts = { 0 };
    if (o->model_type >= 0) put_int(&ts, 3, (uint64_t)o->model_type);
    put_int(&ts, 4, (uint64_t)(FIRST_EXTRA + n_extra));
    if (o->suffix >= 0) put_int(&ts, 24, (uint64_t)o->suffix);
    if (o->byte_fallback >= 0) put_int(&ts, 35, (uint64_t)o->byte_fallback);
    put_len(&b, 2, ts.p, ts.n);
    free(ts.p);
    if (!o->no_normalizer) {
        buf ns = { 0 };
        if (o->norm_name) put_len(&ns, 1, o->norm_name, strlen(o->norm_name));
        if (o->charsmap_len) {
            uint8_t zeros[64] = { 0 };
            put_len(&ns, 2, zeros, (size_t)o->charsmap_len);
        }
        if (o->dummy_prefix >= 0) put_int(&ns, 3, (uint64_t)o->dummy_prefix);
        if (o->remove_ws >= 0) put_int(&ns, 4, (uint64_t)o->remove_ws);
        if (o->escape_ws >= 0) put_int(&ns, 5, (uint64_t)o->escape_ws);
        put_len(&b, 3, ns.p, ns.n);
        free(ns.p);
    }
    return b;
}

static pi0_tokenizer *load_built(const test_piece *extra, int n_extra, const model_opts *o,
                                 pi0_status *st, pi0_error *err) {
    buf b = build_model(extra, n_extra, o);
    pi0_tokenizer *t;
    *st = pi0_tokenizer_load(&t, b.p, b.n, err);
    free(b.p);
    return t;
}

/* Expects the load to fail with status want and a message containing `needle`. */
static void expect_refusal(const char *what, const test_piece *extra, int n_extra,
                           const model_opts *o, pi0_status want, const char *needle) {
    pi0_error err = { "" };
    pi0_status st;
    pi0_tokenizer *t = load_built(extra, n_extra, o, &st, &err);
    CHECK(st == want && !t && strstr(err.msg, needle), "%s: status %d (expected %d), message "
          "'%s' should contain '%s'", what, (int)st, (int)want, err.msg, needle);
    pi0_tokenizer_close(t);
}

static const test_piece letters[] = {
    { "a", 0, NORMAL }, { "b", 0, NORMAL }, { "c", 0, NORMAL }, { "d", 0, NORMAL },
};

static bool row_settings(void) {
    int before = n_failed;
    model_opts o = paligemma_opts;
    pi0_error err = { "" };
    pi0_status st;
    pi0_tokenizer *t = load_built(letters, 4, &o, &st, &err);
    CHECK(st == PI0_OK && t, "the PaliGemma-like hand-built model must load: %s", err.msg);
    pi0_tokenizer_close(t);

    o = paligemma_opts; o.model_type = 1;
    expect_refusal("unigram", letters, 4, &o, PI0_ERR_UNSUPPORTED, "model_type is UNIGRAM");
    o = paligemma_opts; o.model_type = -1; /* proto2 default: UNIGRAM */
    expect_refusal("no model_type", letters, 4, &o, PI0_ERR_UNSUPPORTED, "model_type is UNIGRAM");
    o = paligemma_opts; o.byte_fallback = -1;
    expect_refusal("no byte_fallback", letters, 4, &o, PI0_ERR_UNSUPPORTED, "byte_fallback is false");
    o = paligemma_opts; o.suffix = 1;
    expect_refusal("whitespace suffix", letters, 4, &o, PI0_ERR_UNSUPPORTED,
                   "treat_whitespace_as_suffix");
    o = paligemma_opts; o.no_normalizer = true;
    expect_refusal("no normalizer_spec", letters, 4, &o, PI0_ERR_UNSUPPORTED,
                   "add_dummy_prefix is true (no normalizer_spec)");
    o = paligemma_opts; o.dummy_prefix = -1;
    expect_refusal("add_dummy_prefix absent", letters, 4, &o, PI0_ERR_UNSUPPORTED,
                   "add_dummy_prefix is true");
    o = paligemma_opts; o.dummy_prefix = 1;
    expect_refusal("add_dummy_prefix", letters, 4, &o, PI0_ERR_UNSUPPORTED, "add_dummy_prefix is true");
    o = paligemma_opts; o.remove_ws = -1;
    expect_refusal("remove_extra_whitespaces absent", letters, 4, &o, PI0_ERR_UNSUPPORTED,
                   "remove_extra_whitespaces is true");
    o = paligemma_opts; o.escape_ws = 0;
    expect_refusal("escape_whitespaces", letters, 4, &o, PI0_ERR_UNSUPPORTED,
                   "escape_whitespaces is false");
    o = paligemma_opts; o.norm_name = "nmt_nfkc"; o.charsmap_len = 40;
    expect_refusal("nfkc", letters, 4, &o, PI0_ERR_UNSUPPORTED, "normalizer_spec is 'nmt_nfkc'");
    o = paligemma_opts; o.norm_name = "nmt_nfkc"; /* an empty map normalizes nothing */
    t = load_built(letters, 4, &o, &st, &err);
    CHECK(st == PI0_OK, "a normalizer with an empty map must load: %s", err.msg);
    pi0_tokenizer_close(t);

    /* The trained models that differ from PaliGemma's settings. */
    static const struct { const char *path, *needle; } files[] = {
        { "tests/data/tokenizer/unigram_tiny.model", "model_type is UNIGRAM" },
        { "tests/data/tokenizer/dummy_prefix.model", "add_dummy_prefix is true" },
    };
    for (size_t i = 0; i < 2; i++) {
        err.msg[0] = '\0';
        st = pi0_tokenizer_open(&t, files[i].path, &err);
        CHECK(st == PI0_ERR_UNSUPPORTED && !t && strstr(err.msg, files[i].needle) &&
              strstr(err.msg, files[i].path), "%s: status %d, message '%s' should name the "
              "file and contain '%s'", files[i].path, (int)st, err.msg, files[i].needle);
    }
    return n_failed == before;
}

static bool row_bad_pieces(void) {
    int before = n_failed;
    model_opts o = paligemma_opts;
    static const test_piece twice[] = { { "a", 0, NORMAL }, { "a", 1, USER } };
    expect_refusal("duplicate", twice, 2, &o, PI0_ERR_FORMAT, "piece 'a' is defined twice");
    /* The same text as a normal and a reserved piece is allowed (two maps in SentencePiece). */
    static const test_piece both[] = { { "a", 0, NORMAL }, { "a", 0, CONTROL } };
    pi0_error err = { "" };
    pi0_status st;
    pi0_tokenizer *t = load_built(both, 2, &o, &st, &err);
    CHECK(st == PI0_OK, "normal and control 'a' must load: %s", err.msg);
    pi0_tokenizer_close(t);
    static const test_piece unk2[] = { { "<unk2>", 0, UNKNOWN } };
    expect_refusal("two unk", unk2, 1, &o, PI0_ERR_FORMAT, "two UNKNOWN pieces");
    static const test_piece badbyte[] = { { "<0x4g>", 0, BYTE } };
    expect_refusal("bad byte piece", badbyte, 1, &o, PI0_ERR_FORMAT, "expected <0xHH>");
    static const test_piece lowbyte[] = { { "<0xab>", 0, BYTE } };
    expect_refusal("lower-case byte piece", lowbyte, 1, &o, PI0_ERR_FORMAT, "expected <0xHH>");
    static const test_piece empty[] = { { "", 0, NORMAL } };
    expect_refusal("empty piece", empty, 1, &o, PI0_ERR_FORMAT, "piece 259 is empty");
    static const test_piece type9[] = { { "q", 0, 9 } };
    expect_refusal("type 9", type9, 1, &o, PI0_ERR_FORMAT, "piece 259 has type 9");
    o.skip_byte = 0x41;
    expect_refusal("missing byte", letters, 4, &o, PI0_ERR_FORMAT, "piece <0x41> is missing");

    /* Wire-level damage, hand-made. */
    static const struct { const char *what; uint8_t bytes[16]; size_t n; const char *needle; } raw[] = {
        { "length past the end", { 0x0a, 0xff, 0x7f, 0x01 }, 4, "truncated piece at byte" },
        { "cut inside a varint", { 0x0a, 0x80 }, 2, "truncated piece at byte 1" },
        { "group wire type", { 0x23, 0x00 }, 2, "unsupported wire type" },
        { "overlong varint", { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                               0x01 }, 11, "overlong varint in ModelProto field at byte 0" },
        { "field 0", { 0x02, 0x00 }, 2, "bad field number" },
        { "piece as a varint", { 0x08, 0x01 }, 2, "wrong wire type for piece at byte" },
        { "score as a varint", { 0x0a, 0x02, 0x10, 0x01 }, 4, "wrong wire type for piece score" },
        { "cut score", { 0x0a, 0x03, 0x15, 0x00, 0x00 }, 5, "truncated piece score at byte 3" },
    };
    for (size_t i = 0; i < sizeof raw / sizeof *raw; i++) {
        err.msg[0] = '\0';
        st = pi0_tokenizer_load(&t, raw[i].bytes, raw[i].n, &err);
        CHECK(st == PI0_ERR_FORMAT && !t && strstr(err.msg, raw[i].needle),
              "%s: status %d, message '%s' should contain '%s'", raw[i].what, (int)st, err.msg,
              raw[i].needle);
    }
    st = pi0_tokenizer_load(&t, (const uint8_t *)"", 0, &err);
    CHECK(st != PI0_OK && !t && err.msg[0], "an empty file must be refused");

    /* A missing file names the file needed and where it usually lives. */
    st = pi0_tokenizer_open(&t, "/nonexistent/dir/tok.model", &err);
    CHECK(st == PI0_ERR_IO && !t &&
          strstr(err.msg, "PaliGemma tokenizer not found at /nonexistent/dir/tok.model") &&
          strstr(err.msg, "gs://big_vision/paligemma_tokenizer.model") &&
          strstr(err.msg, "~/.cache/openpi/big_vision/") && strstr(err.msg, "--tokenizer PATH"),
          "missing file: status %d, '%s'", (int)st, err.msg);
    return n_failed == before;
}

/* Encodes with a hand-built model and compares with ids given as piece indices (FIRST_EXTRA +
 * i for the test's pieces) or raw ids. */
static void expect_encode(const char *what, const test_piece *pieces, int n_pieces,
                          const char *text, const int32_t *want, int n_want) {
    pi0_error err = { "" };
    pi0_status st;
    pi0_tokenizer *t = load_built(pieces, n_pieces, &paligemma_opts, &st, &err);
    CHECK(st == PI0_OK, "%s: load: %s", what, err.msg);
    if (st != PI0_OK) return;
    int32_t ids[64];
    char got[256], exp[256];
    int n = encode(t, text, ids, 64);
    CHECK(ids_equal(ids, n, want, n_want), "%s: got%s, expected%s", what,
          ids_str(got, sizeof got, ids, n), ids_str(exp, sizeof exp, want, n_want));
    pi0_tokenizer_close(t);
}

#define X(i) (FIRST_EXTRA + (i))
#define B(byte) (3 + (byte))
#define IDS(...) (const int32_t[]){ __VA_ARGS__ }, (int)(sizeof((const int32_t[]){ __VA_ARGS__ }) / sizeof(int32_t))

static bool row_bpe_rules(void) {
    int before = n_failed;
    /* Equal scores: the leftmost pair merges first. */
    static const test_piece tie[] = { { "a", 0, NORMAL }, { "b", 0, NORMAL }, { "c", 0, NORMAL },
                                      { "ab", 1, NORMAL }, { "bc", 1, NORMAL } };
    expect_encode("tie -> leftmost", tie, 5, "abc", IDS(X(3), X(2)));
    /* The higher score wins wherever it is. */
    static const test_piece high[] = { { "a", 0, NORMAL }, { "b", 0, NORMAL }, { "c", 0, NORMAL },
                                       { "ab", 1, NORMAL }, { "bc", 2, NORMAL } };
    expect_encode("higher score", high, 5, "abc", IDS(X(0), X(4)));
    /* The best pair anywhere goes first ("ca"); the pairs it overlapped ("ab" at 3) are dropped,
     * and merged symbols merge again ("ab" + "c" where no "ca" took the c). */
    static const test_piece chain[] = { { "a", 0, NORMAL }, { "b", 0, NORMAL }, { "c", 0, NORMAL },
                                        { "ab", 3, NORMAL }, { "abc", 2, NORMAL }, { "ca", 9, NORMAL } };
    expect_encode("best pair first", chain, 6, "abcab", IDS(X(3), X(5), X(1)));
    expect_encode("merged symbols merge", chain, 6, "abcb", IDS(X(4), X(1)));
    /* An UNUSED piece takes part in merges but is split back into what it was made of. */
    static const test_piece unused[] = { { "a", 0, NORMAL }, { "b", 0, NORMAL }, { "c", 0, NORMAL },
                                         { "d", 0, NORMAL }, { "ab", 3, NORMAL }, { "abc", 2, UNUSED },
                                         { "abcd", 1, NORMAL } };
    expect_encode("unused split", unused, 7, "abc", IDS(X(4), X(2)));
    expect_encode("unused as a step", unused, 7, "abcd", IDS(X(6)));
    /* Nested UNUSED pieces split recursively. */
    static const test_piece nested[] = { { "a", 0, NORMAL }, { "b", 0, NORMAL }, { "c", 0, NORMAL },
                                         { "ab", 3, UNUSED }, { "abc", 2, UNUSED } };
    expect_encode("unused nested", nested, 5, "abc", IDS(X(0), X(1), X(2)));
    /* User-defined pieces: longest match, never merged with neighbours. */
    static const test_piece user[] = { { "a", 0, NORMAL }, { "<l", 0, USER }, { "<loc>", 0, USER },
                                       { "a<", 9, NORMAL }, { "q", 0, USER }, { "qa", 9, NORMAL } };
    expect_encode("user-defined", user, 6, "a<loc><lqa",
                  IDS(X(0), X(2), X(1), X(4), X(0)));
    /* Spaces become U+2581; other whitespace and unknown characters fall back to bytes,
     * malformed UTF-8 to U+FFFD's bytes; control pieces are not matched in text. */
    static const test_piece space[] = { { "a", 0, NORMAL }, { "\xe2\x96\x81", 0, NORMAL },
                                        { "\xe2\x96\x81" "a", 1, NORMAL } };
    expect_encode("space", space, 3, " a a\t\xc3\xa9\xff<s>",
                  IDS(X(2), X(2), B(0x09), B(0xc3), B(0xa9), B(0xef), B(0xbf), B(0xbd),
                      B('<'), B('s'), B('>')));
    /* Score ties are broken by position, not by id or length. */
    static const test_piece pos[] = { { "a", 0, NORMAL }, { "b", 0, NORMAL },
                                      { "bb", 1, NORMAL }, { "ab", 1, NORMAL } };
    expect_encode("tie by position", pos, 4, "abb", IDS(X(3), X(1)));
    return n_failed == before;
}

/* ---- damaged copies of a real file ---------------------------------------------------- */

static bool read_whole(const char *path, char **data, size_t *len) {
    pi0_error err = { "" };
    if (pi0_read_file(path, data, len, &err) != PI0_OK) {
        printf("FAIL %s\n", err.msg);
        n_failed++;
        return false;
    }
    return true;
}

static const char sample[] = "Pick up the red block  and put it in 12 bowls <loc0003> 把红色 😀";

static bool row_truncated(void) {
    char *data;
    size_t len;
    if (!read_whole(TINY, &data, &len)) return false;
    int before = n_failed;
    pi0_tokenizer *full = open_model(TINY);
    int32_t want[128], got[128];
    int n_want = full ? encode(full, sample, want, 128) : -1;
    int n_loaded = 0;
    /* Every prefix: an error with a message, or (cut exactly between trailing fields) a model
     * that still encodes like the whole one. */
    for (size_t cut = 0; cut < len; cut++) {
        pi0_tokenizer *t;
        pi0_error err = { "" };
        pi0_status st = pi0_tokenizer_load(&t, (const uint8_t *)data, cut, &err);
        if (st == PI0_OK) {
            n_loaded++;
            int n = encode(t, sample, got, 128);
            CHECK(ids_equal(got, n, want, n_want), "prefix of %zu bytes loads but encodes "
                  "differently", cut);
            pi0_tokenizer_close(t);
        } else {
            CHECK(!t && err.msg[0], "prefix of %zu bytes: status %d without a message", cut, (int)st);
        }
    }
    pi0_tokenizer *t;
    pi0_error err = { "" };
    CHECK(pi0_tokenizer_load(&t, (const uint8_t *)data, len / 2, &err) == PI0_ERR_FORMAT &&
          strstr(err.msg, "truncated"), "half the file: '%s'", err.msg);
    printf("    %zu prefixes, %d of them load (cut between trailing fields)\n", len, n_loaded);
    pi0_tokenizer_close(full);
    free(data);
    return n_failed == before;
}

static bool row_corrupt(void) {
    char *data;
    size_t len;
    if (!read_whole("tests/data/tokenizer/bpe_500.model", &data, &len)) return false;
    int before = n_failed;
    printf("    seed %llu (replay: test_tokenizer corrupt --seed %llu)\n",
           (unsigned long long)seed, (unsigned long long)seed);
    pi0_rng g;
    pi0_rng_seed(&g, seed);
    uint8_t *copy = malloc(len);
    int n_loaded = 0, n_trials = 3000;
    for (int trial = 0; trial < n_trials; trial++) {
        memcpy(copy, data, len);
        int n_flips = 1 + (int)(pi0_rng_next(&g) % 4);
        for (int k = 0; k < n_flips; k++) copy[pi0_rng_next(&g) % len] = (uint8_t)pi0_rng_next(&g);
        pi0_tokenizer *t;
        pi0_error err = { "" };
        if (pi0_tokenizer_load(&t, copy, len, &err) == PI0_OK) {
            n_loaded++;
            int32_t ids[256];
            uint8_t mask[48];
            /* Whatever it loaded must encode without trouble (ASan watches). */
            int n = pi0_tokenizer_encode(t, sample, sizeof sample - 1, ids, 256, &err);
            CHECK(n >= 0 || err.msg[0], "trial %d: encode failed without a message", trial);
            n = pi0_tokenize_prompt(t, sample, sizeof sample - 1, 48, ids, mask, &err);
            CHECK(n >= 0 || err.msg[0], "trial %d: prompt failed without a message", trial);
            pi0_tokenizer_close(t);
        } else {
            CHECK(!t && err.msg[0], "trial %d: failed without a message", trial);
        }
    }
    printf("    %d corrupted copies, %d still load\n", n_trials, n_loaded);
    free(copy);
    free(data);
    return n_failed == before;
}

/* ---- long input ------------------------------------------------------------------------ */

static bool row_long(void) {
    pi0_tokenizer *t = open_model("tests/data/tokenizer/bpe_2000.model");
    if (!t) return false;
    int before = n_failed;
    /* A frozen user-defined piece after each sentence keeps merges from crossing it, so ~1 MiB
     * of (sentence + "<loc0000>") must encode to the sentence's ids + [loc], repeated. */
    static const char sentence[] = "Pick up the red block  and put it in 12 bowls, 把红色 😀 ";
    int32_t one[64], loc[4];
    int n_one = encode(t, sentence, one, 64), n_loc = encode(t, "<loc0000>", loc, 4);
    CHECK(n_loc == 1, "<loc0000> is %d ids, expected 1 (a user-defined piece)", n_loc);
    size_t unit = sizeof sentence - 1 + 9, n_units = (1u << 20) / unit;
    char *text = malloc(n_units * unit);
    for (size_t k = 0; k < n_units; k++) {
        memcpy(text + k * unit, sentence, sizeof sentence - 1);
        memcpy(text + k * unit + sizeof sentence - 1, "<loc0000>", 9);
    }
    int cap = (int)n_units * (n_one + 1);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    pi0_error err = { "" };
    clock_t t0 = clock();
    int n = pi0_tokenizer_encode(t, text, n_units * unit, ids, cap, &err);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(n == cap, "%zu bytes: %d ids, expected %d (%s)", n_units * unit, n, cap, err.msg);
    for (int i = 0; i < n && n == cap; i++) {
        int k = i % (n_one + 1);
        int32_t want = k < n_one ? one[k] : loc[0];
        CHECK(ids[i] == want, "id %d is %d, expected %d", i, ids[i], want);
        if (ids[i] != want) break;
    }
    printf("    %zu bytes of text: %d ids in %.2f s\n", n_units * unit, n, secs);
    free(ids);
    free(text);
    pi0_tokenizer_close(t);
    return n_failed == before;
}

/* ---- the driver for test_tokenizer_exact.sh --------------------------------------------- */

static int encode_lines(const char *path) {
    pi0_tokenizer *t;
    pi0_error err = { "" };
    if (pi0_tokenizer_open(&t, path, &err) != PI0_OK) {
        fprintf(stderr, "test_tokenizer: %s\n", err.msg);
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    char *line = malloc(cap);
    int32_t *ids = NULL;
    int ids_cap = 0, c;
    for (;;) {
        c = getchar();
        if (c != EOF && c != '\n') {
            if (n + 1 == cap) line = realloc(line, cap *= 2);
            line[n++] = (char)c;
            continue;
        }
        if (c == EOF && n == 0) break;
        int count = pi0_tokenizer_encode(t, line, n, ids, ids_cap, &err);
        if (count > ids_cap) {
            ids_cap = count;
            ids = realloc(ids, (size_t)ids_cap * sizeof *ids);
            count = pi0_tokenizer_encode(t, line, n, ids, ids_cap, &err);
        }
        if (count < 0) {
            fprintf(stderr, "test_tokenizer: %s\n", err.msg);
            return 1;
        }
        for (int i = 0; i < count; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
        n = 0;
        if (c == EOF) break;
    }
    free(line);
    free(ids);
    pi0_tokenizer_close(t);
    return 0;
}

static const test_row rows[] = {
    { "spm_ids", row_spm_ids },         { "layout", row_layout },
    { "cleaning", row_cleaning },       { "settings", row_settings },
    { "bad_pieces", row_bad_pieces },   { "bpe_rules", row_bpe_rules },
    { "truncated", row_truncated },     { "corrupt", row_corrupt },
    { "long", row_long },
};
#define N_ROWS (int)(sizeof rows / sizeof *rows)

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--encode")) return encode_lines(argv[2]);
    const char *only;
    seed = (uint64_t)time(NULL);
    if (!test_rows_args(argc, argv, rows, N_ROWS, &only, &seed)) return 0;
    return test_rows_run("test_tokenizer", rows, N_ROWS, only, true);
}
