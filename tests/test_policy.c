/* test_policy.c - openpi's serving transforms (SERVING_SPEC 3) against values worked out from
 * the spec: Pillow's resize weights and outputs (the spec's worked examples, and checksums of
 * Pillow 11.2.1 outputs made by tests/policy/pillow_sums.py), padding layouts, pixel and float
 * image conversions, z-score round trips, ALOHA's joint and gripper conversions, delta masks,
 * DROID's state concatenation, absent cameras, prompt forms and precedence, metadata, norm-stats
 * files, one error message per way a request breaks, and full DROID, ALOHA and LIBERO requests
 * through prepare -> random actions -> reply -> decoded again. Random inputs print their seed
 * (--seed N replays). Uses tests/data/norm_stats/ and tests/data/tokenizer/. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "policy/msgpack_numpy.h"
#include "policy/policy_internal.h"
#include "rng.h"
#include "test_util.h"

#define TOKENIZER_PATH "tests/data/tokenizer/tiny_paligemma_like.model"
#define DROID_STATS "tests/data/norm_stats/droid.json"
#define ALOHA_STATS "tests/data/norm_stats/aloha.json"
#define LIBERO_STATS "tests/data/norm_stats/libero.json"

enum { S = 224, A_DROID = 10, A_ALOHA = 50, AD = 32, L = 48 };

/* The statistics written in tests/data/norm_stats/ (droid, aloha, libero .json), repeated so a parsing mistake
 * cannot hide behind itself. */
static const double droid_state_mean[8] = { 0.0213, 0.2461, -0.0187, -2.0532, 0.0125, 2.3154, 0.0871, 0.3842 };
static const double droid_state_std[8] = { 0.3105, 0.4872, 0.2759, 0.4738, 0.5601, 0.4413, 0.7324, 0.4189 };
static const double droid_act_mean[8] = { 0.0028, 0.0175, -0.0043, -0.0212, 0.0019, 0.0246, 0.0057, 0.3921 };
static const double droid_act_std[8] = { 0.2034, 0.2612, 0.1947, 0.2886, 0.3151, 0.3307, 0.3745, 0.4253 };
static const double libero_state_mean[8] = { -0.0467, 0.0339, 0.7645, 2.9723, -0.2203, -0.1253, 0.0267, -0.0272 };
static const double libero_state_std[8] = { 0.1044, 0.1508, 0.3850, 0.3464, 0.9078, 0.3249, 0.0141, 0.0141 };
static const double libero_act_mean[7] = { 0.0636, 0.0868, -0.0900, 0.0060, 0.0055, -0.0051, -0.0460 };
static const double libero_act_std[7] = { 0.3362, 0.3773, 0.4457, 0.0393, 0.0656, 0.0738, 0.9989 };
static const double aloha_state_mean[14] = { -0.0432, -0.6125, 0.8513, 0.0311, 0.2986, -0.0127, 0.4418,
                                             0.0432, -0.6125, 0.8513, -0.0311, 0.2986, -0.0127, 0.4418 };
static const double aloha_state_std[14] = { 0.1863, 0.3521, 0.3017, 0.2245, 0.2903, 0.3385, 0.3049,
                                            0.3385, 0.2903, 0.2245, 0.3017, 0.3521, 0.1863, 0.3049 };
static const double aloha_act_mean[14] = { 0.0012, -0.0035, 0.0041, -0.0007, 0.0023, 0.0009, 0.4521,
                                           -0.0019, 0.0028, -0.0046, 0.0011, -0.0015, 0.0004, 0.4387 };
static const double aloha_act_std[14] = { 0.0452, 0.0613, 0.0587, 0.0711, 0.0698, 0.0925, 0.3312,
                                          0.0447, 0.0629, 0.0574, 0.0733, 0.0681, 0.0901, 0.3289 };

static pi0_tokenizer *tok;

/* ---- random numbers ------------------------------------------------------------------------ */

static pi0_rng rng;
static double rng_uniform(double lo, double hi) { return lo + (hi - lo) * pi0_rng_uniform(&rng); }

/* ---- building requests ---------------------------------------------------------------------- */

static void key(msgpack_packer *pk, const char *k) { pi0_msg_pack_str(pk, k); }

static void put_f8(msgpack_packer *pk, const double *v, int n) {
    pi0_msg_pack_ndarray(pk, "<f8", v, (size_t)n * 8, 1, (int64_t[]){ n });
}
static void put_f4(msgpack_packer *pk, const double *v, int n) {
    float f[32];
    for (int i = 0; i < n; i++) f[i] = (float)v[i];
    pi0_msg_pack_ndarray(pk, "<f4", f, (size_t)n * 4, 1, (int64_t[]){ n });
}
static void put_list(msgpack_packer *pk, const double *v, int n) {
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) msgpack_pack_double(pk, v[i]);
}
/* hwc: [h, w, 3]; sent as [3, h, w] when chw. */
static void put_image(msgpack_packer *pk, const uint8_t *hwc, int h, int w, bool chw) {
    size_t plane = (size_t)h * w, n = plane * 3;
    uint8_t *buf = malloc(n);
    for (size_t p = 0; p < plane; p++)
        for (size_t c = 0; c < 3; c++) buf[chw ? c * plane + p : p * 3 + c] = hwc[p * 3 + c];
    int64_t shape_chw[3] = { 3, h, w }, shape_hwc[3] = { h, w, 3 };
    pi0_msg_pack_ndarray(pk, "|u1", buf, n, 3, chw ? shape_chw : shape_hwc);
    free(buf);
}

/* The image formulas of tests/policy/pillow_sums.py. */
static uint8_t *pattern(int h, int w, int kind) {
    uint8_t *img = malloc((size_t)h * w * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                uint64_t i = ((uint64_t)y * w + x) * 3 + c;
                img[i] = kind == 0 ? (uint8_t)(((i * 2654435761u) & 0xffffffffu) >> 24)
                                   : (uint8_t)((x * 3 + y * 5 + c * 50) & 255);
            }
    return img;
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

typedef struct {
    pi0_msg_writer wr;
    uint8_t *msg;
    size_t len;
} request;

static msgpack_packer *req_begin(request *r, size_t n_keys) {
    pi0_msg_writer_init(&r->wr);
    msgpack_pack_map(&r->wr.pk, n_keys);
    return &r->wr.pk;
}
static void req_end(request *r) {
    pi0_error err;
    if (pi0_msg_writer_finish(&r->wr, &r->msg, &r->len, &err)) {
        printf("FAIL building a request: %s\n", err.msg);
        exit(1);
    }
}

/* ---- policies ------------------------------------------------------------------------------- */

static pi0_policy *open_policy(const char *preset, const char *stats, const char *default_prompt, int horizon) {
    pi0_policy_options opt = { .preset = preset, .norm_stats_path = stats, .tokenizer = tok,
                               .default_prompt = default_prompt, .action_horizon = horizon, .action_dim = AD,
                               .max_token_len = L, .image_size = S };
    pi0_policy *p;
    pi0_error err = { "" };
    if (pi0_policy_open(&p, &opt, &err)) {
        printf("FAIL opening policy %s: %s\n", preset, err.msg);
        exit(1);
    }
    return p;
}

/* ---- resize (SERVING_SPEC 3.7) -------------------------------------------------------------- */

static void test_resize_weights(void) {
    int before = n_failed;
    pi0_resample_axis ax;
    pi0_error err = { "" };
    CHECK(pi0_resample_axis_init(&ax, 4, 3, &err) == PI0_OK, "4 -> 3: %s", err.msg);
    const int32_t want4[3][2] = { { 2936013, 1258291 }, { 2097152, 2097152 }, { 1258291, 2936013 } };
    for (int i = 0; i < 3; i++) {
        CHECK(ax.lo[i] == i && ax.n[i] == 2, "4 -> 3 output %d reads %d taps from %d, want 2 from %d", i, ax.n[i],
              ax.lo[i], i);
        CHECK(ax.w[i * ax.ksize] == want4[i][0] && ax.w[i * ax.ksize + 1] == want4[i][1],
              "4 -> 3 output %d weights [%d, %d]", i, ax.w[i * ax.ksize], ax.w[i * ax.ksize + 1]);
    }
    pi0_resample_axis_free(&ax);
    CHECK(pi0_resample_axis_init(&ax, 256, 224, &err) == PI0_OK, "256 -> 224: %s", err.msg);
    CHECK(ax.lo[0] == 0 && ax.n[0] == 2 && ax.w[0] == 3495253 && ax.w[1] == 699051, "256 -> 224 output 0: %d [%d, %d]",
          ax.lo[0], ax.w[0], ax.w[1]);
    CHECK(ax.lo[1] == 1 && ax.n[1] == 2 && ax.w[ax.ksize] == 3029220 && ax.w[ax.ksize + 1] == 1165084,
          "256 -> 224 output 1: %d [%d, %d]", ax.lo[1], ax.w[ax.ksize], ax.w[ax.ksize + 1]);
    pi0_resample_axis_free(&ax);

    /* One row 0, 100, 200, 255 to width 3 gives 30, 150, 239 (in every channel). */
    uint8_t row[12], out[9];
    const uint8_t vals[4] = { 0, 100, 200, 255 };
    for (int i = 0; i < 12; i++) row[i] = vals[i / 3];
    CHECK(pi0_resize_bilinear(out, 1, 3, row, 1, 4, &err) == PI0_OK, "row resize: %s", err.msg);
    const uint8_t want[3] = { 30, 150, 239 };
    for (int i = 0; i < 9; i++) CHECK(out[i] == want[i / 3], "row resize output %d: %d, want %d", i, out[i], want[i / 3]);
    REPORT(before, "resample weights and the 0,100,200,255 -> 30,150,239 row (SERVING_SPEC 3.7)");
}

/* A white image's padded output: black rows/columns outside the resized block. */
static void check_layout(int h, int w, int want_h, int want_w, int top, int bottom, int left, int right) {
    int before = n_failed, h_r, w_r;
    pi0_resize_pad_size(h, w, S, S, &h_r, &w_r);
    CHECK(h_r == want_h && w_r == want_w, "%dx%d -> %dx%d, want %dx%d", h, w, h_r, w_r, want_h, want_w);
    uint8_t *img = malloc((size_t)h * w * 3), *out = malloc(S * S * 3);
    memset(img, 255, (size_t)h * w * 3);
    pi0_error err = { "" };
    CHECK(pi0_resize_with_pad(out, S, S, img, h, w, &err) == PI0_OK, "%dx%d: %s", h, w, err.msg);
    int n_bad = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            bool inside = y >= top && y < S - bottom && x >= left && x < S - right;
            n_bad += out[((size_t)y * S + x) * 3] != (inside ? 255 : 0);
        }
    CHECK(n_bad == 0, "%dx%d: %d pixels outside the expected layout", h, w, n_bad);
    free(img);
    free(out);
    REPORT(before, "%dx%d -> %dx%d, black rows %d above / %d below, columns %d left / %d right", h, w, want_h, want_w,
           top, bottom, left, right);
}

static void test_resize_pillow(void) {
    /* From tests/policy/pillow_sums.py with Pillow 11.2.1. */
    static const struct { int h, w, kind; uint64_t sum; } rows[] = {
        { 480, 640, 0, 0x865c3d535d2c92daull },  { 480, 640, 1, 0x7b5b1b62689fda63ull },
        { 256, 320, 0, 0xaa51c88bf82ff52cull },  { 256, 320, 1, 0x142e9f6d700f584eull },
        { 230, 224, 0, 0x9286bd81eeecc3c5ull },  { 230, 224, 1, 0x20e6fa6d0ead21eaull },
        { 10, 10, 0, 0x4b12ac55f7c7ec67ull },    { 10, 10, 1, 0x4238d438ae9386bdull },
        { 720, 1280, 0, 0x6f6f7ad8361ed040ull }, { 720, 1280, 1, 0xf9d88600145868b3ull },
        { 97, 13, 0, 0x3feb8789f9cb8723ull },    { 97, 13, 1, 0x666713a7a932a033ull },
        { 1080, 1920, 0, 0x5444e5d0257af285ull }, { 1080, 1920, 1, 0x6e6b8586ae97f763ull },
        { 224, 300, 0, 0xad5ec2e5e91dad69ull },  { 224, 300, 1, 0x509c6519fe70575full },
        { 100, 224, 0, 0xee2f4c777ec8408eull },  { 100, 224, 1, 0xd77dbe8de2257dc5ull },
        { 3, 500, 0, 0x0d6c86ce688bd184ull },    { 3, 500, 1, 0xa84d7b86e1021d2eull },
    };
    int before = n_failed;
    uint8_t *out = malloc(S * S * 3);
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        uint8_t *img = pattern(rows[r].h, rows[r].w, rows[r].kind);
        pi0_error err = { "" };
        pi0_status st = pi0_resize_with_pad(out, S, S, img, rows[r].h, rows[r].w, &err);
        uint64_t sum = st ? 0 : fnv1a(out, S * S * 3);
        CHECK(st == PI0_OK && sum == rows[r].sum, "%dx%d pattern %d: checksum %016" PRIx64 ", Pillow's %016" PRIx64 " %s",
              rows[r].h, rows[r].w, rows[r].kind, sum, rows[r].sum, err.msg);
        free(img);
    }
    free(out);
    REPORT(before, "resize_with_pad equals Pillow 11.2.1 on 20 images (10 sizes x 2 patterns)");

    before = n_failed;
    uint8_t img[1000 * 3] = { 0 }, dst[S * S * 3];
    pi0_error err = { "" };
    pi0_status st = pi0_resize_with_pad(dst, S, S, img, 1, 1000, &err);
    CHECK(st == PI0_ERR_SHAPE && strstr(err.msg, "too thin"), "1x1000: %s", err.msg);
    REPORT(before, "a 1x1000 image is refused (Pillow cannot make it 0 rows high): %s", err.msg);
}

/* ---- pixels --------------------------------------------------------------------------------- */

static void test_pixels(void) {
    int before = n_failed;
    uint8_t u[256];
    float f[256];
    for (int i = 0; i < 256; i++) u[i] = (uint8_t)i;
    pi0_image_to_float(f, u, 256);
    for (int i = 0; i < 256; i++) CHECK(f[i] == (float)i / 127.5f - 1.0f, "pixel %d -> %.9g", i, f[i]);
    CHECK(f[0] == -1.0f && f[255] == 1.0f, "ends: %g %g", f[0], f[255]);
    REPORT(before, "uint8 -> float: all 256 values equal u / 127.5 - 1, 0 -> -1, 255 -> 1");

    /* Float images: uint8(255 * v), truncated, in the array's own precision. */
    before = n_failed;
    struct { const char *dtype; size_t item; double v; int want; } rows[] = {
        { "<f4", 4, 0.5, 127 }, { "<f4", 4, 1.0, 255 }, { "<f4", 4, 0.999, 254 }, { "<f8", 8, 0.2, 51 },
        { "<f8", 8, 0.0, 0 },   { "<f2", 2, 0.5, 127 }, { "<f4", 4, -0.001, 0 },
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        uint8_t data[2 * 2 * 3 * 8];
        for (int i = 0; i < 12; i++) {
            if (rows[r].item == 8) memcpy(data + 8 * i, &rows[r].v, 8);
            else if (rows[r].item == 4) {
                float x = (float)rows[r].v;
                memcpy(data + 4 * i, &x, 4);
            } else {
                uint16_t h = 0x3800; /* 0.5 in binary16 */
                memcpy(data + 2 * i, &h, 2);
            }
        }
        pi0_msg_writer wr;
        pi0_msg_writer_init(&wr);
        pi0_msg_pack_ndarray(&wr.pk, rows[r].dtype, data, 12 * rows[r].item, 3, (int64_t[]){ 2, 2, 3 });
        uint8_t *msg;
        size_t len;
        pi0_error err = { "" };
        pi0_msg_writer_finish(&wr, &msg, &len, &err);
        pi0_msg_doc doc;
        CHECK(pi0_msg_doc_decode(&doc, msg, len, &err) == PI0_OK, "%s: %s", rows[r].dtype, err.msg);
        uint8_t *hwc = NULL;
        int h, w;
        pi0_status st = pi0_image_to_hwc(doc.root, "img", false, &hwc, &h, &w, &err);
        CHECK(st == PI0_OK && h == 2 && w == 2 && hwc[0] == rows[r].want && hwc[11] == rows[r].want,
              "%s %g -> %d, want %d (%s)", rows[r].dtype, rows[r].v, hwc ? hwc[0] : -1, rows[r].want, err.msg);
        free(hwc);
        pi0_msg_doc_free(&doc);
        free(msg);
    }
    REPORT(before, "float images -> uint8(255 * v) with truncation (f2, f4, f8)");
}

/* ---- ALOHA conversions (SERVING_SPEC 3.4) ----------------------------------------------------- */

static void test_aloha_conversions(void) {
    int before = n_failed;
    /* Worked from the spec's formulas: L = g * 0.03956 + 0.01844, c = (0.022^2 + L^2 - 0.036^2) /
     * (2 * 0.022 * L), (asin(clamp(c)) - 0.5476) / 1.082. */
    static const struct { double in, out; } grippers[] = {
        { 0.5, -0.1400559217021429 }, { 0.8, 0.30602369356042286 }, { 0.0, -1.0798655475132917 },
        { 1.0, 0.945652797407483 },   { -0.5, 0.945652797407483 },  /* c > 1: clamped to asin(1) */
    };
    for (size_t r = 0; r < sizeof grippers / sizeof grippers[0]; r++) {
        double s[14];
        for (int i = 0; i < 14; i++) s[i] = 0.1 * (i + 1);
        s[6] = grippers[r].in, s[13] = grippers[r].in;
        pi0_aloha_state_to_pi(s);
        CHECK(fabs(s[6] - grippers[r].out) < 1e-12 && fabs(s[13] - grippers[r].out) < 1e-12,
              "gripper %g -> %.17g / %.17g, want %.17g", grippers[r].in, s[6], s[13], grippers[r].out);
        /* Joints: flipped at 1, 2, 8, 9 only. */
        static const int flipped[14] = { 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0 };
        for (int i = 0; i < 14; i++)
            if (i != 6 && i != 13)
                CHECK(s[i] == (flipped[i] ? -0.1 * (i + 1) : 0.1 * (i + 1)), "joint %d -> %g", i, s[i]);
    }
    /* Output: a = ((a + 0.5476) + 0.6213) / 2.1123 for the grippers. */
    double a[14];
    for (int i = 0; i < 14; i++) a[i] = -0.05 * (i + 1);
    a[6] = 0.3, a[13] = -0.2;
    pi0_aloha_actions_from_pi(a);
    CHECK(fabs(a[6] - 0.6954031150878188) < 1e-12 && fabs(a[13] - 0.4586943142546039) < 1e-12,
          "gripper actions: %.17g %.17g", a[6], a[13]);
    CHECK(a[1] == 0.1 && a[2] == 0.15000000000000002 && a[0] == -0.05 && a[8] == 0.45 && a[9] == 0.5 &&
              a[10] == -0.55, "joint actions flipped wrongly: %g %g %g %g %g", a[0], a[1], a[2], a[8], a[9]);
    REPORT(before, "ALOHA state/action conversions: flips and gripper formulas against worked values");
}

/* ---- norm stats ----------------------------------------------------------------------------- */

static void test_norm_stats(void) {
    int before = n_failed;
    pi0_norm_stats ns;
    pi0_error err = { "" };
    CHECK(pi0_norm_stats_load(&ns, ALOHA_STATS, AD, &err) == PI0_OK, "aloha stats (q01/q99 null): %s", err.msg);
    if (!n_failed) {
        CHECK(ns.n_state == 14 && ns.n_actions == 14, "aloha lengths %d %d", ns.n_state, ns.n_actions);
        for (int i = 0; i < 14; i++)
            CHECK(ns.state_mean[i] == aloha_state_mean[i] && ns.state_std[i] == aloha_state_std[i] &&
                      ns.actions_mean[i] == aloha_act_mean[i] && ns.actions_std[i] == aloha_act_std[i],
                  "aloha entry %d", i);
        for (int i = 14; i < AD; i++)
            CHECK(ns.state_mean[i] == 0 && ns.state_std[i] == 1 && ns.actions_mean[i] == 0 && ns.actions_std[i] == 1,
                  "padding %d: mean 0, std 1", i);
        pi0_norm_stats_free(&ns);
    }
    /* 32-entry vectors (already padded) are taken as they are. */
    char json[4096];
    int n = snprintf(json, sizeof json, "{\"norm_stats\": {\"state\": {\"mean\": [");
    for (int i = 0; i < 32; i++) n += snprintf(json + n, sizeof json - (size_t)n, "%s%d", i ? "," : "", i);
    n += snprintf(json + n, sizeof json - (size_t)n, "], \"std\": [");
    for (int i = 0; i < 32; i++) n += snprintf(json + n, sizeof json - (size_t)n, "%s2", i ? "," : "");
    snprintf(json + n, sizeof json - (size_t)n,
             "], \"q01\": null}, \"actions\": {\"mean\": [1], \"std\": [3], \"q99\": [4]}}}");
    CHECK(pi0_norm_stats_parse(&ns, json, strlen(json), AD, "inline", &err) == PI0_OK, "32 entries: %s", err.msg);
    if (ns.state_mean) {
        CHECK(ns.n_state == 32 && ns.state_mean[31] == 31 && ns.state_std[31] == 2 && ns.n_actions == 1 &&
                  ns.actions_mean[1] == 0 && ns.actions_std[1] == 1, "32-entry stats read wrongly");
        pi0_norm_stats_free(&ns);
    }
    REPORT(before, "norm stats: 14 entries padded with 0/1, 32 entries as given, null quantiles accepted");

    struct { const char *what, *json, *text; } bad[] = {
        { "not JSON", "{", "not valid JSON" },
        { "no norm_stats", "{\"x\": 1}", "no \"norm_stats\" object" },
        { "no actions", "{\"norm_stats\": {\"state\": {\"mean\": [1], \"std\": [1]}}}", "norm_stats.actions is missing" },
        { "string entry", "{\"norm_stats\": {\"state\": {\"mean\": [\"a\"], \"std\": [1]}, \"actions\": {}}}",
          "norm_stats.state.mean[0] is not a number" },
        { "negative std", "{\"norm_stats\": {\"state\": {\"mean\": [1], \"std\": [-1]}, \"actions\": {}}}",
          "norm_stats.state.std[0] is negative" },
        { "std missing", "{\"norm_stats\": {\"state\": {\"mean\": [1]}, \"actions\": {}}}", "norm_stats.state.std is missing" },
    };
    for (size_t r = 0; r < sizeof bad / sizeof bad[0]; r++) {
        int b = n_failed;
        pi0_status st = pi0_norm_stats_parse(&ns, bad[r].json, strlen(bad[r].json), AD, "x.json", &err);
        CHECK(st != PI0_OK && strstr(err.msg, bad[r].text), "%s: \"%s\"", bad[r].what, err.msg);
        REPORT(b, "norm stats %s: %s", bad[r].what, err.msg);
    }
    char big[1024] = "{\"norm_stats\": {\"state\": {\"mean\": [0";
    for (int i = 0; i < 32; i++) strcat(big, ",0");
    strcat(big, "], \"std\": [1]}, \"actions\": {}}}");
    pi0_status st = pi0_norm_stats_parse(&ns, big, strlen(big), AD, "x.json", &err);
    CHECK(st == PI0_ERR_SHAPE && strstr(err.msg, "has 33 entries, expected 1 to 32"), "33 entries: %s", err.msg);

    /* A missing file names the path openpi uses and where to get it. */
    before = n_failed;
    const char *cases[][2] = { { "droid", "/nonexistent/ckpt/assets/droid/norm_stats.json" },
                               { "libero", "/nonexistent/ckpt/assets/physical-intelligence/libero/norm_stats.json" },
                               { "aloha_sim", "/nonexistent/ckpt/assets/lerobot/aloha_sim_transfer_cube_human/norm_stats.json" } };
    for (int c = 0; c < 3; c++) {
        pi0_policy_options opt = { .preset = cases[c][0], .model_dir = "/nonexistent/ckpt", .tokenizer = tok,
                                   .action_horizon = 10, .action_dim = AD, .max_token_len = L, .image_size = S };
        pi0_policy *p = NULL;
        st = pi0_policy_open(&p, &opt, &err);
        CHECK(st == PI0_ERR_IO && strstr(err.msg, cases[c][1]) && strstr(err.msg, "JAX checkpoint's assets"),
              "missing stats for %s: %s", cases[c][0], err.msg);
        pi0_policy_close(p);
    }
    REPORT(before, "missing norm stats: %s", err.msg);

    /* The default location is found: <model_dir>/assets/<asset id>/norm_stats.json. */
    before = n_failed;
    char dir[256], path[512];
    if (test_temp_dir(dir, sizeof dir, "pi0_policy_test_")) {
        snprintf(path, sizeof path, "%s/assets", dir);
        mkdir(path, 0700);
        snprintf(path, sizeof path, "%s/assets/droid", dir);
        mkdir(path, 0700);
        snprintf(path, sizeof path, "%s/assets/droid/norm_stats.json", dir);
        char *text;
        size_t len;
        FILE *f = fopen(path, "wb");
        if (f && pi0_read_file(DROID_STATS, &text, &len, &err) == PI0_OK) {
            fwrite(text, 1, len, f);
            free(text);
        }
        if (f) fclose(f);
        pi0_policy_options opt = { .preset = "droid", .model_dir = dir, .tokenizer = tok, .action_horizon = 10,
                                   .action_dim = AD, .max_token_len = L, .image_size = S };
        pi0_policy *p = NULL;
        CHECK(pi0_policy_open(&p, &opt, &err) == PI0_OK, "stats under the model dir: %s", err.msg);
        pi0_policy_close(p);
        test_remove_tree(dir);
    }
    /* Statistics shorter than the robot's state are refused at start-up. */
    const char *short_stats = "{\"norm_stats\": {\"state\": {\"mean\": [0,0,0,0,0,0], \"std\": [1,1,1,1,1,1]},"
                              " \"actions\": {\"mean\": [0], \"std\": [1]}}}";
    char tmp[] = "/tmp/pi0_policy_stats_XXXXXX";
    int fd = mkstemp(tmp);
    if (fd >= 0) {
        if (write(fd, short_stats, strlen(short_stats)) < 0) perror("write");
        close(fd);
        pi0_policy_options opt = { .preset = "droid", .norm_stats_path = tmp, .tokenizer = tok, .action_horizon = 10,
                                   .action_dim = AD, .max_token_len = L, .image_size = S };
        pi0_policy *p = NULL;
        st = pi0_policy_open(&p, &opt, &err);
        CHECK(st == PI0_ERR_SHAPE && strstr(err.msg, "state statistics have 6 entries, the DROID state has 8"), "%s",
              err.msg);
        pi0_policy_close(p);
        unlink(tmp);
    }
    pi0_policy_options opt = { .preset = "pi05_droid", .tokenizer = tok, .action_horizon = 10, .action_dim = AD,
                               .max_token_len = L, .image_size = S };
    pi0_policy *p = NULL;
    st = pi0_policy_open(&p, &opt, &err);
    CHECK(st == PI0_ERR_INPUT && strstr(err.msg, "unknown policy preset 'pi05_droid' (expected one of droid, aloha,"),
          "%s", err.msg);
    REPORT(before, "stats found under the model dir; short stats and unknown presets refused (%s)", err.msg);
}

/* ---- metadata ------------------------------------------------------------------------------- */

static void test_metadata(void) {
    int before = n_failed;
    static const uint8_t reset_pose[] = { 0x81, 0xaa, 'r', 'e', 's', 'e', 't', '_', 'p', 'o', 's', 'e', 0x96, 0x00,
                                          0xcb, 0xbf, 0xf8, 0, 0, 0, 0, 0, 0, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,
                                          0x00, 0x00, 0x00 };
    const char *with[] = { "aloha", "aloha_towel", "aloha_tupperware" }, *without[] = { "droid", "aloha_sim", "libero" };
    const char *stats[] = { DROID_STATS, ALOHA_STATS, LIBERO_STATS };
    for (int i = 0; i < 3; i++) {
        pi0_policy *p = open_policy(with[i], ALOHA_STATS, NULL, A_ALOHA);
        size_t n;
        const uint8_t *m = pi0_policy_metadata(p, &n);
        CHECK(n == sizeof reset_pose && !memcmp(m, reset_pose, n), "%s metadata (%zu bytes)", with[i], n);
        pi0_policy_close(p);
        p = open_policy(without[i], stats[i], NULL, 10);
        m = pi0_policy_metadata(p, &n);
        CHECK(n == 1 && m[0] == 0x80, "%s metadata is not {}", without[i]);
        pi0_policy_close(p);
    }
    REPORT(before, "metadata: reset_pose for the real ALOHA presets (SERVING_SPEC 2.6 g), 0x80 otherwise");
}

/* ---- requests -------------------------------------------------------------------------------- */

typedef struct {
    double joints[7], gripper, libero_state[8], aloha_state[14];
    uint8_t *img0, *img1, *img2;  /* 224x224 HWC */
} observation;

static void random_observation(observation *o) {
    for (int i = 0; i < 7; i++) o->joints[i] = droid_state_mean[i] + rng_uniform(-2, 2) * droid_state_std[i];
    o->gripper = rng_uniform(0, 1);
    for (int i = 0; i < 8; i++) o->libero_state[i] = libero_state_mean[i] + rng_uniform(-2, 2) * libero_state_std[i];
    for (int i = 0; i < 14; i++) o->aloha_state[i] = rng_uniform(-1, 1);
    o->aloha_state[6] = rng_uniform(0.05, 0.95), o->aloha_state[13] = rng_uniform(0.05, 0.95);
    uint8_t **imgs[3] = { &o->img0, &o->img1, &o->img2 };
    for (int k = 0; k < 3; k++) {
        *imgs[k] = malloc(S * S * 3);
        for (int i = 0; i < S * S * 3; i++) (*imgs[k])[i] = (uint8_t)pi0_rng_next(&rng);
    }
}
static void free_observation(observation *o) {
    free(o->img0);
    free(o->img1);
    free(o->img2);
}

static void droid_request(request *r, const observation *o, const char *prompt) {
    msgpack_packer *pk = req_begin(r, prompt ? 5 : 4);
    key(pk, "observation/exterior_image_1_left");
    put_image(pk, o->img0, S, S, false);
    key(pk, "observation/wrist_image_left");
    put_image(pk, o->img1, S, S, true);          /* CHW works too for DROID */
    key(pk, "observation/joint_position");
    put_list(pk, o->joints, 7);                  /* a list, as DROID clients send */
    key(pk, "observation/gripper_position");
    put_f4(pk, &o->gripper, 1);
    if (prompt) {
        key(pk, "prompt");
        pi0_msg_pack_str(pk, prompt);
    }
    req_end(r);
}

static void aloha_request(request *r, const observation *o, const char *prompt, bool wrists) {
    msgpack_packer *pk = req_begin(r, prompt ? 3 : 2);
    key(pk, "images");
    msgpack_pack_map(pk, wrists ? 4 : 1);
    key(pk, "cam_high");
    put_image(pk, o->img0, S, S, true);
    if (wrists) {
        key(pk, "cam_left_wrist");
        put_image(pk, o->img1, S, S, true);
        key(pk, "cam_right_wrist");
        put_image(pk, o->img2, S, S, true);
        key(pk, "cam_low");
        put_image(pk, o->img2, S, S, true);
    }
    key(pk, "state");
    put_f8(pk, o->aloha_state, 14);
    if (prompt) {
        key(pk, "prompt");
        pi0_msg_pack_str(pk, prompt);
    }
    req_end(r);
}

static void libero_request(request *r, const observation *o, const char *prompt) {
    msgpack_packer *pk = req_begin(r, 4);
    key(pk, "observation/image");
    put_image(pk, o->img0, S, S, false);
    key(pk, "observation/wrist_image");
    put_image(pk, o->img1, S, S, false);
    key(pk, "observation/state");
    put_f4(pk, o->libero_state, 8);
    key(pk, "prompt");
    pi0_msg_pack_str(pk, prompt);
    req_end(r);
}

static bool image_slot_equals(const pi0_policy_row *row, int slot, const uint8_t *hwc) {
    const float *f = row->images + (size_t)slot * S * S * 3;
    for (int i = 0; i < S * S * 3; i++)
        if (f[i] != ((float)hwc[i] / 255.0f) * 2.0f - 1.0f) return false;
    return true;
}
static bool image_slot_absent(const pi0_policy_row *row, int slot) {
    const float *f = row->images + (size_t)slot * S * S * 3;
    for (int i = 0; i < S * S * 3; i++)
        if (f[i] != -1.0f) return false;
    return row->image_masks[slot] == 0;
}

static bool tokens_of(const pi0_policy_row *row, const char *text) {
    int32_t ids[L];
    uint8_t mask[L];
    pi0_error err;
    if (pi0_tokenize_prompt(tok, text, strlen(text), L, ids, mask, &err) < 0) return false;
    return !memcmp(ids, row->tokens, sizeof ids) && !memcmp(mask, row->token_mask, sizeof mask);
}

/* Decodes a reply and returns its actions [A, D] as doubles (malloc'd), checking the layout. */
static double *decode_reply(const uint8_t *msg, size_t len, int A, int D, bool has_prev) {
    pi0_msg_doc doc;
    pi0_error err = { "" };
    if (pi0_msg_doc_decode(&doc, msg, len, &err)) {
        CHECK(0, "reply does not decode: %s", err.msg);
        return NULL;
    }
    const pi0_msg_value *root = doc.root;
    CHECK(root->kind == PI0_MSG_MAP && root->as.map.n == 3, "reply is not a 3-entry map");
    static const char *order[3] = { "actions", "policy_timing", "server_timing" };
    for (size_t i = 0; i < 3 && i < root->as.map.n; i++)
        CHECK(!root->as.map.entries[i].key_is_bin && root->as.map.entries[i].key_len == strlen(order[i]) &&
                  !memcmp(root->as.map.entries[i].key, order[i], strlen(order[i])),
              "reply key %zu is not %s", i, order[i]);
    const pi0_msg_value *act = pi0_msg_map_get(root, "actions");
    const pi0_msg_value *srv = pi0_msg_map_get(root, "server_timing");
    const pi0_msg_value *pol = pi0_msg_map_get(root, "policy_timing");
    CHECK(pol && pi0_msg_map_get(pol, "infer_ms") && pi0_msg_map_get(pol, "infer_ms")->kind == PI0_MSG_FLOAT,
          "policy_timing.infer_ms");
    CHECK(srv && pi0_msg_map_get(srv, "infer_ms") && (pi0_msg_map_get(srv, "prev_total_ms") != NULL) == has_prev,
          "server_timing keys");
    double *out = NULL;
    if (act && act->kind == PI0_MSG_NDARRAY && !strcmp(act->as.nd->dtype.str, "<f8") && act->as.nd->ndim == 2 &&
        act->as.nd->shape[0] == A && act->as.nd->shape[1] == D) {
        out = malloc((size_t)A * D * sizeof *out);
        for (size_t i = 0; i < (size_t)A * D; i++) out[i] = pi0_msg_ndarray_get(act->as.nd, i);
    } else {
        CHECK(0, "actions are not <f8 [%d, %d]", A, D);
    }
    pi0_msg_doc_free(&doc);
    return out;
}

static bool close_to(double got, double want) { return fabs(got - want) <= 1e-12 * (1.0 + fabs(want)); }

static float *random_actions(int A) {
    float *a = malloc((size_t)A * AD * sizeof *a);
    for (int i = 0; i < A * AD; i++) a[i] = (float)rng_uniform(-2, 2);
    return a;
}

static void test_droid(void) {
    int before = n_failed;
    pi0_policy *p = open_policy("droid", DROID_STATS, NULL, A_DROID);
    pi0_policy_row row;
    pi0_error err = { "" };
    CHECK(pi0_policy_row_alloc(p, &row, &err) == PI0_OK, "row: %s", err.msg);
    observation o;
    random_observation(&o);
    request r;
    droid_request(&r, &o, "pick up the red cup");
    pi0_status st = pi0_policy_prepare(p, r.msg, r.len, &row, &err);
    CHECK(st == PI0_OK, "droid prepare: %s", err.msg);
    /* State: concat(joints, gripper), z-scored in double, float32, zero-padded to 32. */
    double x[8];
    memcpy(x, o.joints, sizeof o.joints);
    x[7] = (double)(float)o.gripper;             /* the gripper was sent as <f4 */
    for (int i = 0; i < AD; i++) {
        double xn = i < 8 ? (x[i] - droid_state_mean[i]) / (droid_state_std[i] + 1e-6) : 0.0;
        CHECK(row.state[i] == (float)xn, "state %d: %.9g, want %.9g", i, row.state[i], (float)xn);
        if (i < 8) {
            /* The round trip loses at most float32's half ulp of the normalized value. */
            double tol = fabs(xn) * 0x1p-24 * (droid_state_std[i] + 1e-6) + 1e-15;
            CHECK(fabs(row.state_unnorm[i] - x[i]) <= tol, "round trip %d: %.17g vs %.17g", i, row.state_unnorm[i], x[i]);
        }
    }
    CHECK(row.image_masks[0] && row.image_masks[1] && image_slot_equals(&row, 0, o.img0) &&
              image_slot_equals(&row, 1, o.img1), "droid images (HWC and CHW)");
    CHECK(image_slot_absent(&row, 2), "droid right wrist must be -1.0 with mask false");
    CHECK(tokens_of(&row, "pick up the red cup"), "droid tokens");
    REPORT(before, "DROID prepare: state concat + z-score, HWC/CHW images, absent right wrist = -1.0 / mask 0");

    before = n_failed;
    float *acts = random_actions(A_DROID);
    pi0_reply_timing timing = { 1.5, 2.5, -1 };
    uint8_t *reply;
    size_t len;
    CHECK(pi0_policy_reply(p, &row, acts, &timing, &reply, &len, &err) == PI0_OK, "reply: %s", err.msg);
    double *got = decode_reply(reply, len, A_DROID, 8, false);
    for (int t = 0; got && t < A_DROID; t++)
        for (int j = 0; j < 8; j++) {
            double want = (double)acts[t * AD + j] * (droid_act_std[j] + 1e-6) + droid_act_mean[j];
            CHECK(close_to(got[t * 8 + j], want), "droid action [%d, %d]: %.17g, want %.17g", t, j, got[t * 8 + j], want);
        }
    free(got);
    free(reply);
    timing.prev_total_ms = 40.0;
    CHECK(pi0_policy_reply(p, &row, acts, &timing, &reply, &len, &err) == PI0_OK, "reply: %s", err.msg);
    free(decode_reply(reply, len, A_DROID, 8, true));
    free(reply);
    free(acts);
    REPORT(before, "DROID reply: <f8 [10, 8] un-normalized, absolute; prev_total_ms only when given");

    /* Gripper forms: scalar float, numpy scalar, [1] array and one-element list are the same. */
    before = n_failed;
    float ref[AD];
    memcpy(ref, row.state, sizeof ref);
    for (int form = 0; form < 4; form++) {
        msgpack_packer *pk = req_begin(&r, 5);
        free(r.msg);
        key(pk, "observation/exterior_image_1_left");
        put_image(pk, o.img0, S, S, false);
        key(pk, "observation/wrist_image_left");
        put_image(pk, o.img1, S, S, false);
        key(pk, "observation/joint_position");
        put_f8(pk, o.joints, 7);
        key(pk, "observation/gripper_position");
        double g = (double)(float)o.gripper;
        if (form == 0) msgpack_pack_double(pk, g);
        if (form == 1) {
            msgpack_pack_map(pk, 3);
            msgpack_pack_bin(pk, 13);
            msgpack_pack_bin_body(pk, "__npgeneric__", 13);
            msgpack_pack_true(pk);
            msgpack_pack_bin(pk, 4);
            msgpack_pack_bin_body(pk, "data", 4);
            msgpack_pack_double(pk, g);
            msgpack_pack_bin(pk, 5);
            msgpack_pack_bin_body(pk, "dtype", 5);
            pi0_msg_pack_str(pk, "<f4");
        }
        if (form == 2) put_f8(pk, &g, 1);
        if (form == 3) put_list(pk, &g, 1);
        key(pk, "prompt");
        pi0_msg_pack_str(pk, "x");
        req_end(&r);
        st = pi0_policy_prepare(p, r.msg, r.len, &row, &err);
        CHECK(st == PI0_OK && !memcmp(ref, row.state, sizeof ref), "gripper form %d: %s", form, err.msg);
    }
    free(r.msg);
    REPORT(before, "DROID gripper as float, numpy scalar, [1] array, list: same state");

    /* A 480x640 camera is resized with padding exactly like Pillow. */
    before = n_failed;
    uint8_t *big = pattern(480, 640, 0);
    msgpack_packer *pk = req_begin(&r, 5);
    key(pk, "observation/exterior_image_1_left");
    put_image(pk, big, 480, 640, false);
    key(pk, "observation/wrist_image_left");
    put_image(pk, big, 480, 640, true);
    key(pk, "observation/joint_position");
    put_f8(pk, o.joints, 7);
    key(pk, "observation/gripper_position");
    put_f8(pk, &o.gripper, 1);
    key(pk, "prompt");
    pi0_msg_pack_str(pk, "x");
    req_end(&r);
    st = pi0_policy_prepare(p, r.msg, r.len, &row, &err);
    CHECK(st == PI0_OK, "480x640: %s", err.msg);
    uint8_t *back = malloc(S * S * 3);
    for (int slot = 0; slot < 2; slot++) {
        for (int i = 0; i < S * S * 3; i++)
            back[i] = (uint8_t)lrintf((row.images[(size_t)slot * S * S * 3 + i] + 1.0f) * 127.5f);
        CHECK(fnv1a(back, S * S * 3) == 0x865c3d535d2c92daull, "480x640 slot %d differs from Pillow", slot);
    }
    free(back);
    free(big);
    free(r.msg);
    REPORT(before, "DROID 480x640 cameras (HWC and CHW) resized with padding equal Pillow's output");

    free_observation(&o);
    pi0_policy_row_free(&row);
    pi0_policy_close(p);
}

static void test_aloha(void) {
    int before = n_failed;
    pi0_policy *p = open_policy("aloha", ALOHA_STATS, NULL, A_ALOHA);
    pi0_policy_row row;
    pi0_error err = { "" };
    CHECK(pi0_policy_row_alloc(p, &row, &err) == PI0_OK, "row: %s", err.msg);
    observation o;
    random_observation(&o);
    request r;
    aloha_request(&r, &o, "fold the shirt", true);
    pi0_status st = pi0_policy_prepare(p, r.msg, r.len, &row, &err);
    CHECK(st == PI0_OK, "aloha prepare: %s", err.msg);
    free(r.msg);
    /* The test's own pi-space state from the spec's formulas. */
    static const double flip[14] = { 1, -1, -1, 1, 1, 1, 1, 1, -1, -1, 1, 1, 1, 1 };
    double s[14];
    for (int i = 0; i < 14; i++) s[i] = flip[i] * o.aloha_state[i];
    for (int g = 6; g <= 13; g += 7) {
        double lin = s[g] * (0.058 - 0.01844) + 0.01844;
        double c = (0.022 * 0.022 + lin * lin - 0.036 * 0.036) / (2 * 0.022 * lin);
        s[g] = (asin(fmax(-1.0, fmin(1.0, c))) - 0.5476) / (1.6296 - 0.5476);
    }
    double s_un[14];
    for (int i = 0; i < AD; i++) {
        double xn = i < 14 ? (s[i] - aloha_state_mean[i]) / (aloha_state_std[i] + 1e-6) : 0.0;
        CHECK(fabs((double)row.state[i] - (float)xn) <= 1e-6 * fabs(xn) + 1e-7, "aloha state %d: %.9g, want %.9g", i,
              row.state[i], (float)xn);
        if (i < 14) s_un[i] = (double)row.state[i] * (aloha_state_std[i] + 1e-6) + aloha_state_mean[i];
    }
    CHECK(image_slot_equals(&row, 0, o.img0) && image_slot_equals(&row, 1, o.img1) &&
              image_slot_equals(&row, 2, o.img2) && row.image_masks[0] && row.image_masks[1] && row.image_masks[2],
          "aloha cameras high, left, right");
    CHECK(tokens_of(&row, "fold the shirt"), "aloha tokens");

    float *acts = random_actions(A_ALOHA);
    pi0_reply_timing timing = { 1, 2, 3 };
    uint8_t *reply;
    size_t len;
    CHECK(pi0_policy_reply(p, &row, acts, &timing, &reply, &len, &err) == PI0_OK, "reply: %s", err.msg);
    double *got = decode_reply(reply, len, A_ALOHA, 14, true);
    for (int t = 0; got && t < A_ALOHA; t++) {
        double a[14];
        for (int j = 0; j < 14; j++) {
            a[j] = (double)acts[t * AD + j] * (aloha_act_std[j] + 1e-6) + aloha_act_mean[j];
            if (j != 6 && j != 13) a[j] += s_un[j];          /* joints are deltas, grippers absolute */
            a[j] *= flip[j];
        }
        for (int g = 6; g <= 13; g += 7) a[g] = ((a[g] + 0.5476) + 0.6213) / (1.4910 + 0.6213);
        for (int j = 0; j < 14; j++)
            CHECK(close_to(got[t * 14 + j], a[j]), "aloha action [%d, %d]: %.17g, want %.17g", t, j, got[t * 14 + j], a[j]);
    }
    free(got);
    free(reply);
    free(acts);
    REPORT(before, "ALOHA: pi-space state, 3 cameras CHW, reply with joint deltas, flips and gripper conversion");

    /* Without wrist cameras: slots 1 and 2 are -1.0 with masks false. */
    before = n_failed;
    aloha_request(&r, &o, "x", false);
    st = pi0_policy_prepare(p, r.msg, r.len, &row, &err);
    CHECK(st == PI0_OK && row.image_masks[0] && image_slot_absent(&row, 1) && image_slot_absent(&row, 2),
          "aloha without wrists: %s", err.msg);
    free(r.msg);
    REPORT(before, "ALOHA without wrist cameras: -1.0 images, masks false");

    free_observation(&o);
    pi0_policy_row_free(&row);
    pi0_policy_close(p);
}

static void test_libero(void) {
    int before = n_failed;
    pi0_policy *p = open_policy("libero", LIBERO_STATS, NULL, A_ALOHA);
    pi0_policy_row row;
    pi0_error err = { "" };
    CHECK(pi0_policy_row_alloc(p, &row, &err) == PI0_OK, "row: %s", err.msg);
    observation o;
    random_observation(&o);
    request r;
    libero_request(&r, &o, "put the bowl on the plate");
    pi0_status st = pi0_policy_prepare(p, r.msg, r.len, &row, &err);
    CHECK(st == PI0_OK, "libero prepare: %s", err.msg);
    free(r.msg);
    double s_un[8];
    for (int i = 0; i < 8; i++) {
        double x = (double)(float)o.libero_state[i];
        double xn = (x - libero_state_mean[i]) / (libero_state_std[i] + 1e-6);
        CHECK(row.state[i] == (float)xn, "libero state %d", i);
        s_un[i] = (double)(float)xn * (libero_state_std[i] + 1e-6) + libero_state_mean[i];
        CHECK(row.state_unnorm[i] == s_un[i], "libero round-tripped state %d", i);
    }
    CHECK(image_slot_equals(&row, 0, o.img0) && image_slot_equals(&row, 1, o.img1) && image_slot_absent(&row, 2),
          "libero cameras");
    CHECK(tokens_of(&row, "put the bowl on the plate"), "libero tokens");
    float *acts = random_actions(A_ALOHA);
    pi0_reply_timing timing = { 1, 2, 3 };
    uint8_t *reply;
    size_t len;
    CHECK(pi0_policy_reply(p, &row, acts, &timing, &reply, &len, &err) == PI0_OK, "reply: %s", err.msg);
    double *got = decode_reply(reply, len, A_ALOHA, 7, true);
    for (int t = 0; got && t < A_ALOHA; t++)
        for (int j = 0; j < 7; j++) {
            double want = (double)acts[t * AD + j] * (libero_act_std[j] + 1e-6) + libero_act_mean[j];
            if (j < 6) want += s_un[j];               /* mask (6, -1) */
            CHECK(close_to(got[t * 7 + j], want), "libero action [%d, %d]: %.17g, want %.17g", t, j, got[t * 7 + j], want);
        }
    free(got);
    free(reply);
    free(acts);
    free_observation(&o);
    pi0_policy_row_free(&row);
    pi0_policy_close(p);
    REPORT(before, "LIBERO: state z-score, reply [50, 7] with deltas on the first 6 dims only");
}

/* ---- prompts (SERVING_SPEC 3.9) ---------------------------------------------------------------- */

static void prompt_case(pi0_policy *p, pi0_policy_row *row, const observation *o, int form, const char *text,
                        const char *want_text, const char *want_error) {
    request r;
    msgpack_packer *pk = req_begin(&r, form < 0 ? 2 : 3);
    key(pk, "images");
    msgpack_pack_map(pk, 1);
    key(pk, "cam_high");
    put_image(pk, o->img0, S, S, true);
    key(pk, "state");
    put_f8(pk, o->aloha_state, 14);
    if (form >= 0) {
        key(pk, "prompt");
        size_t n = text ? strlen(text) : 0;
        if (form == 0) pi0_msg_pack_str(pk, text);
        if (form == 1) {
            msgpack_pack_bin(pk, n);
            msgpack_pack_bin_body(pk, text, n);
        }
        if (form == 2) {     /* numpy <U40 0-d array: UTF-32LE, zero-padded */
            uint8_t u[160] = { 0 };
            size_t k = 0;
            for (size_t i = 0; i < n; k++) {
                uint32_t cp = (uint8_t)text[i];
                int extra = cp >= 0xf0 ? 3 : cp >= 0xe0 ? 2 : cp >= 0xc0 ? 1 : 0;
                cp &= extra ? (0x3fu >> extra) : 0x7fu;
                for (int e = 1; e <= extra; e++) cp = cp << 6 | ((uint8_t)text[i + (size_t)e] & 0x3f);
                i += (size_t)extra + 1;
                memcpy(u + 4 * k, (uint8_t[]){ (uint8_t)cp, (uint8_t)(cp >> 8), (uint8_t)(cp >> 16), 0 }, 4);
            }
            pi0_msg_pack_ndarray(pk, "<U40", u, sizeof u, 0, NULL);
        }
        if (form == 3) {     /* numpy |S64 0-d array */
            uint8_t b[64] = { 0 };
            memcpy(b, text, n);
            pi0_msg_pack_ndarray(pk, "|S64", b, sizeof b, 0, NULL);
        }
        if (form == 4) msgpack_pack_int(pk, 7);
        if (form == 5) msgpack_pack_nil(pk);
    }
    req_end(&r);
    pi0_error err = { "" };
    pi0_status st = pi0_policy_prepare(p, r.msg, r.len, row, &err);
    free(r.msg);
    if (want_error) {
        CHECK(st != PI0_OK && strstr(err.msg, want_error), "prompt form %d: expected \"%s\", got \"%s\"", form,
              want_error, err.msg);
    } else {
        CHECK(st == PI0_OK && tokens_of(row, want_text), "prompt form %d '%s': %s", form, want_text, err.msg);
    }
}

static void test_prompts(void) {
    int before = n_failed;
    observation o;
    random_observation(&o);
    pi0_policy_row row;
    pi0_error err = { "" };
    const char *text = "pick up the caf\xc3\xa9 cup \xe2\x98\x95";
    pi0_policy *p = open_policy("aloha", ALOHA_STATS, NULL, A_ALOHA);
    pi0_policy_row_alloc(p, &row, &err);
    for (int form = 0; form < 4; form++) prompt_case(p, &row, &o, form, text, text, NULL);
    REPORT(before, "prompt as str, bin, <U array (UTF-32) and |S array: same tokens");

    before = n_failed;
    prompt_case(p, &row, &o, -1, NULL, NULL, "Prompt is required");
    prompt_case(p, &row, &o, 4, "", NULL, "prompt: expected a str");
    pi0_policy_close(p);
    /* aloha_towel has a preset default; a server default beats it; a request prompt beats both. */
    p = open_policy("aloha_towel", ALOHA_STATS, NULL, A_ALOHA);
    prompt_case(p, &row, &o, -1, NULL, "fold the towel", NULL);
    prompt_case(p, &row, &o, 5, NULL, "fold the towel", NULL);     /* prompt: nil counts as absent */
    prompt_case(p, &row, &o, 0, "stack the cups", "stack the cups", NULL);
    pi0_policy_close(p);
    p = open_policy("aloha_towel", ALOHA_STATS, "wipe the table", A_ALOHA);
    prompt_case(p, &row, &o, -1, NULL, "wipe the table", NULL);
    prompt_case(p, &row, &o, 0, "stack the cups", "stack the cups", NULL);
    prompt_case(p, &row, &o, 0, "", "", NULL);                      /* an empty prompt is a prompt */
    pi0_policy_close(p);
    p = open_policy("aloha", ALOHA_STATS, "wipe the table", A_ALOHA);
    prompt_case(p, &row, &o, -1, NULL, "wipe the table", NULL);
    pi0_policy_close(p);
    REPORT(before, "prompt precedence: request > server default > preset default > \"Prompt is required\"");
    pi0_policy_row_free(&row);
    free_observation(&o);
}

/* ---- errors ---------------------------------------------------------------------------------- */

typedef enum {
    BAD_JOINTS_6, BAD_ALOHA_HWC, BAD_LIBERO_NAN, BAD_CAM_TOP, BAD_COMPLEX, BAD_MISSING_WRIST, BAD_STR_KEYS,
    BAD_GRIPPER_INF, BAD_STATE_STR, BAD_FOUR_CHANNELS, BAD_INT_PIXELS, BAD_NO_CAM_HIGH, BAD_THIN, BAD_FLOAT_RANGE,
    BAD_IMAGES_LIST, BAD_STATE_2D, BAD_LIST_ENTRY,
} bad_kind;

static void bad_request(request *r, bad_kind kind, const observation *o) {
    msgpack_packer *pk;
    double v[14];
    switch (kind) {
    case BAD_ALOHA_HWC: case BAD_CAM_TOP: case BAD_NO_CAM_HIGH: case BAD_IMAGES_LIST:
        pk = req_begin(r, 2);
        key(pk, "images");
        if (kind == BAD_IMAGES_LIST) {
            msgpack_pack_array(pk, 1);
            put_image(pk, o->img0, S, S, true);
        } else {
            msgpack_pack_map(pk, kind == BAD_CAM_TOP ? 2 : 1);
            key(pk, kind == BAD_NO_CAM_HIGH ? "cam_left_wrist" : "cam_high");
            put_image(pk, o->img0, S, S, kind != BAD_ALOHA_HWC);
            if (kind == BAD_CAM_TOP) {
                key(pk, "cam_top");
                put_image(pk, o->img0, S, S, true);
            }
        }
        key(pk, "state");
        put_f8(pk, o->aloha_state, 14);
        break;
    case BAD_LIBERO_NAN: case BAD_STATE_2D:
        pk = req_begin(r, 4);
        key(pk, "observation/image");
        put_image(pk, o->img0, S, S, false);
        key(pk, "observation/wrist_image");
        put_image(pk, o->img1, S, S, false);
        key(pk, "observation/state");
        memcpy(v, o->libero_state, 8 * sizeof *v);
        if (kind == BAD_LIBERO_NAN) {
            v[3] = NAN;
            put_f4(pk, v, 8);
        } else {
            pi0_msg_pack_ndarray(pk, "<f8", v, 64, 2, (int64_t[]){ 1, 8 });
        }
        key(pk, "prompt");
        pi0_msg_pack_str(pk, "x");
        break;
    default: /* DROID */
        pk = req_begin(r, kind == BAD_MISSING_WRIST ? 4 : 5);
        key(pk, "observation/exterior_image_1_left");
        if (kind == BAD_STR_KEYS) {
            msgpack_pack_map(pk, 4);
            key(pk, "__ndarray__");
            msgpack_pack_true(pk);
            key(pk, "data");
            msgpack_pack_bin(pk, 3);
            msgpack_pack_bin_body(pk, "abc", 3);
            key(pk, "dtype");
            key(pk, "|u1");
            key(pk, "shape");
            put_list(pk, (double[]){ 1, 1, 3 }, 0);
        } else if (kind == BAD_FOUR_CHANNELS) {
            uint8_t px[2 * 2 * 4] = { 0 };
            pi0_msg_pack_ndarray(pk, "|u1", px, sizeof px, 3, (int64_t[]){ 2, 2, 4 });
        } else if (kind == BAD_INT_PIXELS) {
            int32_t px[2 * 2 * 3] = { 0 };
            pi0_msg_pack_ndarray(pk, "<i4", px, sizeof px, 3, (int64_t[]){ 2, 2, 3 });
        } else if (kind == BAD_THIN) {
            uint8_t px[1 * 1000 * 3] = { 0 };
            pi0_msg_pack_ndarray(pk, "|u1", px, sizeof px, 3, (int64_t[]){ 1, 1000, 3 });
        } else if (kind == BAD_FLOAT_RANGE) {
            float px[12];
            for (int i = 0; i < 12; i++) px[i] = i == 5 ? 1.5f : 0.5f;
            pi0_msg_pack_ndarray(pk, "<f4", px, sizeof px, 3, (int64_t[]){ 2, 2, 3 });
        } else {
            put_image(pk, o->img0, S, S, false);
        }
        if (kind != BAD_MISSING_WRIST) {
            key(pk, "observation/wrist_image_left");
            put_image(pk, o->img1, S, S, false);
        }
        key(pk, "observation/joint_position");
        if (kind == BAD_JOINTS_6) put_f8(pk, o->joints, 6);
        else if (kind == BAD_STATE_STR) pi0_msg_pack_str(pk, "0,0,0,0,0,0,0");
        else if (kind == BAD_COMPLEX) pi0_msg_pack_ndarray(pk, "<c8", v, 56, 1, (int64_t[]){ 7 });
        else if (kind == BAD_LIST_ENTRY) {
            msgpack_pack_array(pk, 7);
            for (int i = 0; i < 6; i++) msgpack_pack_double(pk, 0.0);
            pi0_msg_pack_str(pk, "x");
        } else put_f8(pk, o->joints, 7);
        key(pk, "observation/gripper_position");
        double g = kind == BAD_GRIPPER_INF ? INFINITY : 0.5;
        msgpack_pack_double(pk, g);
        key(pk, "prompt");
        pi0_msg_pack_str(pk, "x");
    }
    req_end(r);
}

static void test_errors(void) {
    static const struct { bad_kind kind; const char *preset, *text; } rows[] = {
        { BAD_JOINTS_6, "droid", "observation/joint_position: expected 7 numbers, got shape [6]" },
        { BAD_ALOHA_HWC, "aloha", "images/cam_high: ALOHA images must be channel-first [3, H, W], got [224, 224, 3]" },
        { BAD_LIBERO_NAN, "libero", "observation/state: value 3 is NaN" },
        { BAD_CAM_TOP, "aloha",
          "unknown ALOHA camera 'cam_top' (expected cam_high, cam_left_wrist, cam_right_wrist, cam_low)" },
        { BAD_COMPLEX, "droid", "observation/joint_position: dtype '<c8' is not supported" },
        { BAD_MISSING_WRIST, "droid", "observation/wrist_image_left: missing" },
        { BAD_STR_KEYS, "droid", "observation/exterior_image_1_left: expected an image array, got a map with a str key "
                                 "'__ndarray__' (numpy arrays need bin keys)" },
        { BAD_GRIPPER_INF, "droid", "observation/gripper_position: value 0 is infinite" },
        { BAD_STATE_STR, "droid", "observation/joint_position: expected 7 numbers, got a str" },
        { BAD_FOUR_CHANNELS, "droid", "observation/exterior_image_1_left: expected an RGB image [H, W, 3] or [3, H, W], got [2, 2, 4]" },
        { BAD_INT_PIXELS, "droid", "expected uint8 or float pixels, got dtype '<i4'" },
        { BAD_NO_CAM_HIGH, "aloha", "images/cam_high: missing" },
        { BAD_THIN, "droid", "observation/exterior_image_1_left: a 1x1000 image is too thin" },
        { BAD_FLOAT_RANGE, "droid", "float pixel 5 is 1.5, expected values in [0, 1]" },
        { BAD_IMAGES_LIST, "aloha", "images: expected a map of camera name to image, got a list of 1" },
        { BAD_STATE_2D, "libero", "observation/state: expected 8 numbers, got shape [1, 8]" },
        { BAD_LIST_ENTRY, "droid", "observation/joint_position: entry 6 is a str, expected a number" },
    };
    observation o;
    random_observation(&o);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int before = n_failed;
        bool aloha = !strcmp(rows[i].preset, "aloha");
        pi0_policy *p = open_policy(rows[i].preset, aloha ? ALOHA_STATS : !strcmp(rows[i].preset, "libero") ? LIBERO_STATS
                                                                                                      : DROID_STATS,
                                    NULL, 10);
        pi0_policy_row row;
        pi0_error err = { "" };
        pi0_policy_row_alloc(p, &row, &err);
        request r;
        bad_request(&r, rows[i].kind, &o);
        pi0_status st = pi0_policy_prepare(p, r.msg, r.len, &row, &err);
        CHECK(st != PI0_OK && strstr(err.msg, rows[i].text), "expected \"%s\", got \"%s\"", rows[i].text, err.msg);
        REPORT(before, "%s", err.msg);
        free(r.msg);
        pi0_policy_row_free(&row);
        pi0_policy_close(p);
    }
    /* Not msgpack at all, and not a map. */
    pi0_policy *p = open_policy("droid", DROID_STATS, NULL, 10);
    pi0_policy_row row;
    pi0_error err = { "" };
    pi0_policy_row_alloc(p, &row, &err);
    const char *text = "hello";
    int before = n_failed;
    pi0_status st = pi0_policy_prepare(p, (const uint8_t *)text, 5, &row, &err);
    CHECK(st != PI0_OK && strstr(err.msg, "request is not valid msgpack"), "text: %s", err.msg);
    REPORT(before, "%s", err.msg);
    before = n_failed;
    st = pi0_policy_prepare(p, (const uint8_t[]){ 0x91, 0x01 }, 2, &row, &err);
    CHECK(st != PI0_OK && strstr(err.msg, "request: expected a map of observation keys, got a list of 1"), "list: %s",
          err.msg);
    REPORT(before, "%s", err.msg);
    pi0_policy_row_free(&row);
    pi0_policy_close(p);
    free_observation(&o);
}

int main(int argc, char **argv) {
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--seed")) seed = strtoull(argv[i + 1], NULL, 0);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("seed %" PRIu64 "\n", seed);
    pi0_rng_seed(&rng, seed);
    pi0_error err = { "" };
    if (pi0_tokenizer_open(&tok, TOKENIZER_PATH, &err)) {
        printf("FAIL tokenizer %s: %s\n", TOKENIZER_PATH, err.msg);
        return 1;
    }
    test_resize_weights();
    check_layout(480, 640, 168, 224, 28, 28, 0, 0);
    check_layout(720, 1280, 126, 224, 49, 49, 0, 0);
    check_layout(256, 320, 179, 224, 22, 23, 0, 0);
    check_layout(230, 224, 224, 218, 0, 0, 3, 3);
    check_layout(256, 256, 224, 224, 0, 0, 0, 0);
    check_layout(10, 10, 224, 224, 0, 0, 0, 0);
    test_resize_pillow();
    test_pixels();
    test_aloha_conversions();
    test_norm_stats();
    test_metadata();
    test_droid();
    test_aloha();
    test_libero();
    test_prompts();
    test_errors();
    pi0_tokenizer_close(tok);
    printf("seed %" PRIu64 "\n", seed);
    return test_summary_checks();
}
