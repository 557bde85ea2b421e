/* test_msgpack_numpy.c - the message encoding of SERVING_SPEC 2 against the spec's hex dumps
 * (2.6 a-h: each decoded, and the encodable ones re-encoded byte for byte), every dtype reader,
 * and broken inputs, one row per way a message breaks, each expecting its own message: truncated
 * (every prefix), str keys instead of bin, short data, bad dtypes, huge and negative shapes,
 * deep nesting, lying counts. Ends with seeded random corruptions that must fail cleanly
 * (--seed N replays them; the seed is printed). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/msgpack_numpy.h"
#include "rng.h"
#include "test_util.h"
#include "policy/policy_internal.h"

/* Hex text with spaces and newlines -> bytes. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap) {
    size_t n = 0;
    int hi = -1;
    for (const char *p = hex; *p; p++) {
        int v;
        if (*p >= '0' && *p <= '9') v = *p - '0';
        else if (*p >= 'a' && *p <= 'f') v = *p - 'a' + 10;
        else continue;
        if (hi < 0) {
            hi = v;
        } else {
            if (n < cap) out[n] = (uint8_t)(hi << 4 | v);
            n++;
            hi = -1;
        }
    }
    return n;
}

/* The spec's examples, exactly as printed in SERVING_SPEC 2.6. */
static const char *hex_a =
    "84 c4 0b 5f 5f 6e 64 61 72 72 61 79 5f 5f c3 c4 04 64 61 74 61 c4 08 00 00 80 3f 00 00 00 40"
    " c4 05 64 74 79 70 65 a3 3c 66 34 c4 05 73 68 61 70 65 91 02";
static const char *hex_b =
    "84 c4 0b 5f5f6e6461727261795f5f c3 c4 04 64617461 c4 04 01 02 03 04"
    " c4 05 6474797065 a3 7c 75 31 c4 05 7368617065 92 02 02";
static const char *hex_c =
    "84 c4 0b 5f5f6e6461727261795f5f c3 c4 04 64617461 c4 08 61 00 00 00 62 00 00 00"
    " c4 05 6474797065 a3 3c 55 32 c4 05 7368617065 90";
static const char *hex_d32 =
    "83 c4 0d 5f5f6e7067656e657269635f5f c3 c4 04 64617461 cb 3f f8 00 00 00 00 00 00 c4 05 6474797065 a3 3c 66 34";
static const char *hex_d64 = "cb 3f f8 00 00 00 00 00 00";
static const char *hex_e =
    "82 b1 6f62736572766174696f6e2f7374617465"
    " 84 c4 0b 5f5f6e6461727261795f5f c3 c4 04 64617461 c4 08 00 00 00 3f 00 00 80 bf"
    " c4 05 6474797065 a3 3c 66 34 c4 05 7368617065 91 02"
    " a6 70726f6d7074 a2 68 69";
static const char *hex_f =
    "83 a7 616374696f6e73"
    " 84 c4 0b 5f5f6e6461727261795f5f c3"
    " c4 04 64617461 c4 10 00 00 00 00 00 00 d0 3f 00 00 00 00 00 00 e0 bf"
    " c4 05 6474797065 a3 3c 66 38 c4 05 7368617065 92 01 02"
    " ad 706f6c6963795f74696d696e67 81 a8 696e6665725f6d73 cb 40 29 00 00 00 00 00 00"
    " ad 7365727665725f74696d696e67 82 a8 696e6665725f6d73 cb 40 34 00 00 00 00 00 00"
    " ad 707265765f746f74616c5f6d73 cb 40 3f 00 00 00 00 00 00";

static bool decode_hex(const char *hex, pi0_msg_doc *doc, uint8_t *buf, size_t cap, size_t *len, pi0_error *err) {
    *len = unhex(hex, buf, cap);
    return pi0_msg_doc_decode(doc, buf, *len, err) == PI0_OK;
}

static bool bytes_equal(const uint8_t *a, size_t na, const uint8_t *b, size_t nb) {
    return na == nb && !memcmp(a, b, na);
}

/* Encodes with a fresh writer; fn fills it. */
typedef void (*pack_fn)(msgpack_packer *pk);
static size_t encode(pack_fn fn, uint8_t **out) {
    pi0_msg_writer wr;
    pi0_msg_writer_init(&wr);
    fn(&wr.pk);
    size_t len;
    pi0_error err;
    if (pi0_msg_writer_finish(&wr, out, &len, &err)) return 0;
    return len;
}

static void pack_a(msgpack_packer *pk) {
    float v[2] = { 1.0f, 2.0f };
    pi0_msg_pack_ndarray(pk, "<f4", v, sizeof v, 1, (int64_t[]){ 2 });
}
static void pack_b(msgpack_packer *pk) {
    pi0_msg_pack_ndarray(pk, "|u1", (uint8_t[]){ 1, 2, 3, 4 }, 4, 2, (int64_t[]){ 2, 2 });
}
static void pack_c(msgpack_packer *pk) {
    pi0_msg_pack_ndarray(pk, "<U2", (uint8_t[]){ 'a', 0, 0, 0, 'b', 0, 0, 0 }, 8, 0, NULL);
}
static void pack_e(msgpack_packer *pk) {
    float v[2] = { 0.5f, -1.0f };
    msgpack_pack_map(pk, 2);
    pi0_msg_pack_str(pk, "observation/state");
    pi0_msg_pack_ndarray(pk, "<f4", v, sizeof v, 1, (int64_t[]){ 2 });
    pi0_msg_pack_str(pk, "prompt");
    pi0_msg_pack_str(pk, "hi");
}

static void test_examples(void) {
    uint8_t buf[256], *enc;
    size_t len, n;
    pi0_msg_doc doc;
    pi0_error err = { "" };

    /* (a) float32 [1.0, 2.0], 51 bytes */
    bool ok = decode_hex(hex_a, &doc, buf, sizeof buf, &len, &err);
    CHECK(ok && len == 51, "(a): %s (%zu bytes)", err.msg, len);
    if (ok) {
        const pi0_msg_value *v = doc.root;
        CHECK(v->kind == PI0_MSG_NDARRAY, "(a) is not an array");
        if (v->kind == PI0_MSG_NDARRAY) {
            const pi0_msg_ndarray *nd = v->as.nd;
            CHECK(nd->dtype.kind == 'f' && nd->dtype.itemsize == 4 && nd->ndim == 1 && nd->shape[0] == 2 &&
                      nd->count == 2, "(a) dtype/shape");
            CHECK(pi0_msg_ndarray_get(nd, 0) == 1.0 && pi0_msg_ndarray_get(nd, 1) == 2.0, "(a) values");
        }
        pi0_msg_doc_free(&doc);
    }
    n = encode(pack_a, &enc);
    CHECK(bytes_equal(enc, n, buf, len), "(a) re-encoded differs (%zu vs %zu bytes)", n, len);
    free(enc);

    /* (b) uint8 [[1, 2], [3, 4]] */
    ok = decode_hex(hex_b, &doc, buf, sizeof buf, &len, &err);
    CHECK(ok, "(b): %s", err.msg);
    if (ok) {
        const pi0_msg_ndarray *nd = doc.root->kind == PI0_MSG_NDARRAY ? doc.root->as.nd : NULL;
        CHECK(nd && nd->dtype.kind == 'u' && nd->ndim == 2 && nd->shape[0] == 2 && nd->shape[1] == 2 &&
                  pi0_msg_ndarray_get(nd, 3) == 4.0, "(b) content");
        pi0_msg_doc_free(&doc);
    }
    n = encode(pack_b, &enc);
    CHECK(bytes_equal(enc, n, buf, len), "(b) re-encoded differs");
    free(enc);

    /* (c) numpy.array("ab"): <U2, shape [] */
    ok = decode_hex(hex_c, &doc, buf, sizeof buf, &len, &err);
    CHECK(ok, "(c): %s", err.msg);
    if (ok) {
        const char *text;
        size_t tlen;
        char *owned;
        const pi0_msg_ndarray *nd = doc.root->kind == PI0_MSG_NDARRAY ? doc.root->as.nd : NULL;
        CHECK(nd && nd->dtype.kind == 'U' && nd->dtype.itemsize == 8 && nd->ndim == 0 && nd->count == 1,
              "(c) dtype/shape");
        pi0_status st = pi0_prompt_from_value(doc.root, &text, &tlen, &owned, &err);
        CHECK(st == PI0_OK && tlen == 2 && !memcmp(text, "ab", 2), "(c) as a prompt: %s", err.msg);
        if (!st) free(owned);
        pi0_msg_doc_free(&doc);
    }
    n = encode(pack_c, &enc);
    CHECK(bytes_equal(enc, n, buf, len), "(c) re-encoded differs");
    free(enc);

    /* (d) numpy.float32(1.5) as __npgeneric__, numpy.float64(1.5) as a plain float */
    ok = decode_hex(hex_d32, &doc, buf, sizeof buf, &len, &err);
    CHECK(ok, "(d) float32: %s", err.msg);
    if (ok) {
        double x = 0;
        CHECK(doc.root->kind == PI0_MSG_NPSCALAR && doc.root->as.scalar.dtype.kind == 'f' &&
                  doc.root->as.scalar.dtype.itemsize == 4 && pi0_msg_number(doc.root, &x) && x == 1.5,
              "(d) float32 scalar");
        pi0_msg_doc_free(&doc);
    }
    ok = decode_hex(hex_d64, &doc, buf, sizeof buf, &len, &err);
    CHECK(ok && doc.root->kind == PI0_MSG_FLOAT && doc.root->as.f == 1.5, "(d) float64: %s", err.msg);
    if (ok) pi0_msg_doc_free(&doc);

    /* (e) a small request, 80 bytes */
    ok = decode_hex(hex_e, &doc, buf, sizeof buf, &len, &err);
    CHECK(ok && len == 80, "(e): %s (%zu bytes)", err.msg, len);
    if (ok) {
        const pi0_msg_value *state = pi0_msg_map_get(doc.root, "observation/state");
        const pi0_msg_value *prompt = pi0_msg_map_get(doc.root, "prompt");
        double s[2];
        CHECK(state && pi0_read_numbers(state, "observation/state", 2, s, &err) == PI0_OK && s[0] == 0.5 &&
                  s[1] == -1.0, "(e) state: %s", err.msg);
        CHECK(prompt && prompt->kind == PI0_MSG_STR && prompt->as.str.len == 2 && !memcmp(prompt->as.str.ptr, "hi", 2),
              "(e) prompt");
        CHECK(!pi0_msg_map_get(doc.root, "missing"), "(e) a missing key was found");
        pi0_msg_doc_free(&doc);
    }
    n = encode(pack_e, &enc);
    CHECK(bytes_equal(enc, n, buf, len), "(e) re-encoded differs");
    free(enc);

    /* (f) a complete reply, 158 bytes, through the reply encoder */
    len = unhex(hex_f, buf, sizeof buf);
    double actions[2] = { 0.25, -0.5 };
    pi0_reply_timing timing = { 12.5, 20.0, 31.0 };
    size_t rlen = 0;
    pi0_status st = pi0_reply_encode(actions, 1, 2, &timing, &enc, &rlen, &err);
    CHECK(st == PI0_OK && len == 158 && bytes_equal(enc, rlen, buf, len), "(f) reply differs (%zu vs %zu bytes)",
          rlen, len);
    if (!st) free(enc);
    /* The first reply of a connection has no prev_total_ms: the map shrinks to one entry. */
    timing.prev_total_ms = -1;
    st = pi0_reply_encode(actions, 1, 2, &timing, &enc, &rlen, &err);
    CHECK(st == PI0_OK && rlen == 158 - 14 - 9, "(f) without prev_total_ms: %zu bytes", rlen);
    if (!st) {
        CHECK(pi0_msg_doc_decode(&doc, enc, rlen, &err) == PI0_OK, "(f) decode: %s", err.msg);
        const pi0_msg_value *srv = pi0_msg_map_get(doc.root, "server_timing");
        CHECK(srv && srv->kind == PI0_MSG_MAP && srv->as.map.n == 1 && !pi0_msg_map_get(srv, "prev_total_ms"),
              "(f) server_timing without prev_total_ms");
        pi0_msg_doc_free(&doc);
        free(enc);
    }

    /* (g) metadata is checked in test_policy (it needs a policy). (h) a 224x224x3 uint8 image. */
    size_t npix = 224 * 224 * 3;
    uint8_t *pix = malloc(npix);
    for (size_t i = 0; i < npix; i++) pix[i] = (uint8_t)(i * 7);
    pi0_msg_writer wr;
    pi0_msg_writer_init(&wr);
    pi0_msg_pack_ndarray(&wr.pk, "|u1", pix, npix, 3, (int64_t[]){ 224, 224, 3 });
    CHECK(pi0_msg_writer_finish(&wr, &enc, &n, &err) == PI0_OK, "(h) encode");
    uint8_t head[64], tail[64];
    size_t nh = unhex("84 c4 0b 5f5f6e6461727261795f5f c3 c4 04 64617461 c6 00 02 4c 00", head, sizeof head);
    size_t nt = unhex("c4 05 6474797065 a3 7c 75 31 c4 05 7368617065 93 cc e0 cc e0 03", tail, sizeof tail);
    CHECK(n == 150578 && !memcmp(enc, head, nh) && !memcmp(enc + nh, pix, npix) && !memcmp(enc + nh + npix, tail, nt),
          "(h) image encoding (%zu bytes)", n);
    CHECK(pi0_msg_doc_decode(&doc, enc, n, &err) == PI0_OK && doc.root->kind == PI0_MSG_NDARRAY &&
              doc.root->as.nd->count == npix && !memcmp(doc.root->as.nd->data, pix, npix),
          "(h) decode: %s", err.msg);
    pi0_msg_doc_free(&doc);
    free(enc);
    free(pix);
    printf("%s SERVING_SPEC 2.6 examples (a)-(f), (h)\n", n_failed ? "FAIL" : "PASS");
}

/* ---- dtype readers ------------------------------------------------------------------------- */

static pi0_msg_doc pack_array_doc(const char *dtype, const void *data, size_t bytes, int ndim, const int64_t *shape,
                                  uint8_t **keep, pi0_status *st, pi0_error *err) {
    pi0_msg_writer wr;
    pi0_msg_writer_init(&wr);
    pi0_msg_pack_ndarray(&wr.pk, dtype, data, bytes, ndim, shape);
    size_t n;
    pi0_msg_writer_finish(&wr, keep, &n, err);
    pi0_msg_doc doc;
    *st = pi0_msg_doc_decode(&doc, *keep, n, err);
    return doc;
}

static void test_dtypes(void) {
    int before = n_failed;
    struct {
        const char *dtype;
        uint8_t bytes[16];
        size_t n_bytes;
        double want[2];
    } rows[] = {
        { ">f4", { 0x3f, 0xc0, 0, 0, 0xc0, 0x20, 0, 0 }, 8, { 1.5, -2.5 } },
        { "<f2", { 0x00, 0x3e, 0xff, 0x7b }, 4, { 1.5, 65504.0 } },
        { "<f2", { 0x01, 0x00, 0x00, 0xc0 }, 4, { 0x1p-24, -2.0 } },          /* subnormal */
        { "<i2", { 0xfe, 0xff, 0x00, 0x80 }, 4, { -2, -32768 } },
        { ">i8", { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd, 0, 0, 0, 0, 0, 0, 0, 7 }, 16, { -3, 7 } },
        { "<u4", { 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0 }, 8, { 4294967295.0, 1 } },
        { "|b1", { 0, 1 }, 2, { 0, 1 } },
        { "|i1", { 0x80, 0x7f }, 2, { -128, 127 } },
        { "<f8", { 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0xf0, 0xbf }, 16, { 1.0, -1.0 } },
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        uint8_t *keep;
        pi0_status st;
        pi0_error err = { "" };
        pi0_msg_doc doc = pack_array_doc(rows[r].dtype, rows[r].bytes, rows[r].n_bytes, 1, (int64_t[]){ 2 }, &keep,
                                         &st, &err);
        CHECK(st == PI0_OK, "dtype %s: %s", rows[r].dtype, err.msg);
        if (!st) {
            double a = pi0_msg_ndarray_get(doc.root->as.nd, 0), b = pi0_msg_ndarray_get(doc.root->as.nd, 1);
            CHECK(a == rows[r].want[0] && b == rows[r].want[1], "dtype %s: got %.17g %.17g, want %.17g %.17g",
                  rows[r].dtype, a, b, rows[r].want[0], rows[r].want[1]);
            pi0_msg_doc_free(&doc);
        }
        free(keep);
    }
    REPORT(before, "dtype readers (byte orders, half floats, ints, bools)");
}

/* ---- broken inputs --------------------------------------------------------------------------- */

static void expect_fail(const char *what, const uint8_t *msg, size_t len, const char *text) {
    pi0_msg_doc doc;
    pi0_error err = { "" };
    pi0_status st = pi0_msg_doc_decode(&doc, msg, len, &err);
    bool ok = st != PI0_OK && strstr(err.msg, text);
    CHECK(ok, "%s: expected an error with \"%s\", got %s \"%s\"", what, text, st ? "error" : "success", err.msg);
    if (!st) pi0_msg_doc_free(&doc);
    printf("%s %s: %s\n", ok ? "PASS" : "FAIL", what, err.msg);
}

static void expect_fail_hex(const char *what, const char *hex, const char *text) {
    uint8_t buf[512];
    size_t n = unhex(hex, buf, sizeof buf);
    expect_fail(what, buf, n, text);
}

/* An ndarray map as hex with the given dtype str and shape hex. */
static void expect_array_fail(const char *what, const char *dtype, const char *shape_hex, size_t data_len,
                              const char *text) {
    char hex[1024];
    int n = snprintf(hex, sizeof hex, "84 c4 0b 5f5f6e6461727261795f5f c3 c4 04 64617461 c4 %02zx", data_len);
    for (size_t i = 0; i < data_len; i++) n += snprintf(hex + n, sizeof hex - (size_t)n, " 00");
    n += snprintf(hex + n, sizeof hex - (size_t)n, " c4 05 6474797065 a%zx", strlen(dtype));
    for (const char *p = dtype; *p; p++) n += snprintf(hex + n, sizeof hex - (size_t)n, " %02x", (unsigned char)*p);
    snprintf(hex + n, sizeof hex - (size_t)n, " c4 05 7368617065 %s", shape_hex);
    expect_fail_hex(what, hex, text);
}

static void test_broken(void) {
    uint8_t buf[256];
    size_t len = unhex(hex_e, buf, sizeof buf);
    int before = n_failed;
    for (size_t cut = 0; cut < len; cut++) {
        pi0_msg_doc doc;
        pi0_error err = { "" };
        pi0_status st = pi0_msg_doc_decode(&doc, buf, cut, &err);
        CHECK(st != PI0_OK && strstr(err.msg, "request is not valid msgpack"), "prefix of %zu bytes: \"%s\"", cut,
              err.msg);
        if (!st) pi0_msg_doc_free(&doc);
    }
    REPORT(before, "every truncation of example (e) is refused");

    /* Keys as str: openpi does not see an array; the decoder keeps a map, and says why if asked. */
    uint8_t str_keys[128];
    size_t n = unhex("84 ab 5f5f6e6461727261795f5f c3 a4 64617461 c4 01 07 a5 6474797065 a3 7c 75 31"
                     " a5 7368617065 91 01", str_keys, sizeof str_keys);
    pi0_msg_doc doc;
    pi0_error err = { "" };
    char desc[160];
    bool ok = pi0_msg_doc_decode(&doc, str_keys, n, &err) == PI0_OK && doc.root->kind == PI0_MSG_MAP &&
              strstr(pi0_msg_describe(doc.root, desc, sizeof desc), "numpy arrays need bin keys");
    CHECK(ok, "str keys: %s / %s", err.msg, ok ? desc : "");
    if (doc.root) pi0_msg_doc_free(&doc);
    printf("%s str keys instead of bin: a plain map described as \"%s\"\n", ok ? "PASS" : "FAIL", ok ? desc : "");
    expect_fail_hex("bin __ndarray__ but str data key",
                    "84 c4 0b 5f5f6e6461727261795f5f c3 a4 64617461 c4 01 07 c4 05 6474797065 a3 7c 75 31"
                    " c4 05 7368617065 91 01", "needs a bin 'data'");
    expect_fail_hex("data as str", "84 c4 0b 5f5f6e6461727261795f5f c3 c4 04 64617461 a1 07 c4 05 6474797065"
                    " a3 7c 75 31 c4 05 7368617065 91 01", "it is not bin");

    expect_array_fail("short data", "<f4", "91 03", 8, "data has 8 bytes, shape [3] with dtype '<f4' needs 12");
    expect_array_fail("complex dtype", "<c8", "91 01", 8, "dtype '<c8' is not supported (complex)");
    expect_array_fail("object dtype", "|O", "91 01", 8, "dtype '|O' is not supported (object)");
    expect_array_fail("void dtype", "|V8", "91 01", 8, "dtype '|V8' is not supported (void/structured)");
    expect_array_fail("datetime dtype", "<M8[ns]", "91 01", 8, "dtype '<M8[ns]' is not supported (datetime)");
    expect_array_fail("float128", "<f16", "91 01", 16, "dtype '<f16' is not supported (item size)");
    expect_array_fail("no byte order", "f4", "91 01", 4, "not a numpy dtype string");
    expect_array_fail("dtype name", "float32", "91 01", 4, "not a numpy dtype string");
    expect_array_fail("huge shape", "<f4", "92 cf 4000000000000000 cf 4000000000000000", 4, "too many elements");
    expect_array_fail("shape needing 4 TB", "<f4", "91 cf 0000010000000000", 4, "data has 4 bytes");
    expect_array_fail("negative shape", "|u1", "92 ff 02", 2, "shape entry 0 is negative (-1)");
    expect_array_fail("float in shape", "|u1", "91 cb 3ff0000000000000", 1, "shape entry 0 is not an integer");
    expect_array_fail("33 dimensions", "|u1",
                      "dc 0021 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01"
                      " 01 01 01 01 01", 1, "shape has 33 dimensions, numpy allows 32");
    expect_array_fail("shape not a list", "|u1", "01", 1, "needs a bin 'shape' key holding a list");

    /* Nesting: 16 levels decode, 17 do not, and 10000 fail without recursing 10000 deep. */
    uint8_t deep[10001];
    for (int depth = 16; depth <= 17; depth++) {
        memset(deep, 0x91, (size_t)depth);
        deep[depth] = 0x01;
        pi0_status st = pi0_msg_doc_decode(&doc, deep, (size_t)depth + 1, &err);
        CHECK((st == PI0_OK) == (depth == 16), "nesting %d: %s", depth, st ? err.msg : "accepted");
        if (!st) pi0_msg_doc_free(&doc);
    }
    memset(deep, 0x91, 10000);
    deep[10000] = 0x01;
    expect_fail("10000 nested lists", deep, sizeof deep, "nested deeper than 16");
    expect_fail_hex("array claiming 4 billion entries", "dd ffffffff 01 02", "claims 4294967295 entries");
    expect_fail_hex("map claiming 65535 entries", "de ffff a1 61 01", "claims 65535 entries");
    expect_fail_hex("bin claiming 4 GB", "c6 ffffffff 00", "needs 4294967295 bytes");
    expect_fail_hex("extra bytes", "80 00", "1 extra bytes after the first object");
    expect_fail_hex("extension type", "d4 01 00", "extension type 0xd4");
    expect_fail_hex("reserved byte", "c1", "byte 0xc1");
    expect_fail_hex("integer map key", "81 01 02", "is not str or bin");
    expect_fail_hex("invalid UTF-8 str", "81 a1 61 a2 c3 28", "not valid UTF-8");
    expect_fail_hex("surrogate in a str key", "81 a3 eda080 01", "not valid UTF-8");
    expect_fail("empty message", buf, 0, "empty message");
    expect_fail_hex("npgeneric with a str", "83 c4 0d 5f5f6e7067656e657269635f5f c3 c4 04 64617461 a1 61"
                    " c4 05 6474797065 a3 3c 66 34", "must be a number or bool");
    expect_fail_hex("npgeneric without dtype", "82 c4 0d 5f5f6e7067656e657269635f5f c3 c4 04 64617461 01",
                    "without a bin 'dtype'");
    /* Errors inside a request name the key path. */
    expect_fail_hex("bad dtype under images/cam_high",
                    "81 a6 696d61676573 81 a8 63616d5f68696768"
                    " 84 c4 0b 5f5f6e6461727261795f5f c3 c4 04 64617461 c4 08 0000000000000000"
                    " c4 05 6474797065 a3 3c 63 38 c4 05 7368617065 91 01",
                    "images/cam_high: dtype '<c8' is not supported");
}

/* ---- random corruption ------------------------------------------------------------------------- */

static void test_random_corruption(uint64_t seed) {
    const char *bases[] = { hex_a, hex_b, hex_c, hex_d32, hex_e, hex_f };
    pi0_rng rng;
    pi0_rng_seed(&rng, seed);
    int n_ok = 0, n_err = 0, before = n_failed;
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t buf[300];
        size_t len = unhex(bases[pi0_rng_next(&rng) % 6], buf, sizeof buf);
        int n_flips = 1 + (int)(pi0_rng_next(&rng) % 4);
        for (int k = 0; k < n_flips; k++) {
            size_t at = pi0_rng_next(&rng) % len;
            switch (pi0_rng_next(&rng) % 3) {
            case 0: buf[at] = (uint8_t)pi0_rng_next(&rng); break;
            case 1: buf[at] ^= (uint8_t)(1u << (pi0_rng_next(&rng) % 8)); break;
            default: len = at + 1; break;
            }
        }
        pi0_msg_doc doc;
        pi0_error err = { "" };
        if (pi0_msg_doc_decode(&doc, buf, len, &err) == PI0_OK) {
            char desc[160];
            pi0_msg_describe(doc.root, desc, sizeof desc);
            n_ok++;
            pi0_msg_doc_free(&doc);
        } else {
            n_err++;
            CHECK(err.msg[0] != '\0', "an error without a message (iteration %d)", iter);
        }
    }
    REPORT(before, "20000 corrupted messages: %d decoded, %d refused with a message (seed %" PRIu64 ")",
           n_ok, n_err, seed);
}

int main(int argc, char **argv) {
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--seed")) seed = strtoull(argv[i + 1], NULL, 0);
    test_examples();
    test_dtypes();
    test_broken();
    test_random_corruption(seed);
    return test_summary_checks();
}
