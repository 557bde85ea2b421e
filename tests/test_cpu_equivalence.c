/* test_cpu_equivalence.c - properties of the CPU float32 backend that hold exactly in real
 * arithmetic, on the tiny golden model (tests/data/model_tiny_h10) with fresh random inputs:
 *   skip     dropping a camera masked in every row = running it through SigLIP and masking it
 *            (PI0_SPEC 2.11); only the lengths of sums change, so the limit is float32
 *            summation level: 1e-5 relative L2 (float32 eps 6e-8 times sum lengths ~1e3,
 *            amplified through 10 steps), well below the 1e-1 of a wrong mask or position;
 *   rows     a batch of 2 = two batches of 1 (rows are independent), same limit;
 *   masked   changing the pixels of a masked camera changes nothing at all: its keys get
 *            softmax weight exactly +0 (exp(-2.38e38 - max) = 0), so the outputs must be
 *            bitwise equal; and, so that this check can fail, changing a present camera's
 *            pixels must change them.
 *   test_cpu_equivalence [--seed N] [--list] [name] */
#include "common.h"
#include "rng.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MODEL_DIR "tests/data/model_tiny_h10"
#define TOL 1e-5

enum { C = 3, MAX_B = 4 };

static pi0_rng rng;

/* ---- inputs ---------------------------------------------------------------------------- */

typedef struct {
    int B, Sz, L, A, Da, vocab;
    float *images;               /* [B, C, Sz, Sz, 3] */
    uint8_t image_masks[MAX_B * C];
    int32_t *tokens;             /* [B, L] */
    uint8_t *token_mask;         /* [B, L] */
    float *state;                /* [B, Da] */
    float *noise;                /* [B, A, Da] */
    int num_steps;
} inputs;

static size_t image_floats(const inputs *x) { return (size_t)x->Sz * x->Sz * 3; }

/* Random inputs for B rows with the given camera masks (B·C values). */
static int inputs_make(inputs *x, const pi0_dims *d, int B, const uint8_t *cams) {
    memset(x, 0, sizeof *x);
    x->B = B;
    x->Sz = d->image_size;
    x->L = d->max_token_len;
    x->A = d->action_horizon;
    x->Da = d->action_dim;
    x->vocab = d->llm.vocab_size;
    x->num_steps = 10;
    x->images = malloc((size_t)B * C * image_floats(x) * sizeof(float));
    x->tokens = calloc((size_t)B * x->L, sizeof(int32_t));
    x->token_mask = calloc((size_t)B * x->L, 1);
    x->state = malloc((size_t)B * x->Da * sizeof(float));
    x->noise = malloc((size_t)B * x->A * x->Da * sizeof(float));
    if (!x->images || !x->tokens || !x->token_mask || !x->state || !x->noise) return -1;
    memcpy(x->image_masks, cams, (size_t)B * C);
    for (size_t i = 0; i < (size_t)B * C * image_floats(x); i++)
        x->images[i] = pi0_rng_uniform_pm1(&rng);
    for (int b = 0; b < B; b++) {
        int n = 1 + (int)(pi0_rng_next(&rng) % (uint64_t)x->L);   /* 1..L valid tokens */
        for (int i = 0; i < n; i++) {
            x->tokens[b * x->L + i] = (int32_t)(pi0_rng_next(&rng) % (uint64_t)x->vocab);
            x->token_mask[b * x->L + i] = 1;
        }
    }
    for (int i = 0; i < B * x->Da; i++) x->state[i] = pi0_rng_normal(&rng);
    for (int i = 0; i < B * x->A * x->Da; i++) x->noise[i] = pi0_rng_normal(&rng);
    return 0;
}

static void inputs_free(inputs *x) {
    free(x->images);
    free(x->tokens);
    free(x->token_mask);
    free(x->state);
    free(x->noise);
}

/* The batch of rows [b0, b0 + n) of x. */
static pi0_batch batch_rows(const inputs *x, int b0, int n) {
    return (pi0_batch){ .batch = n, .n_cameras = C,
                        .images = x->images + (size_t)b0 * C * image_floats(x),
                        .image_masks = x->image_masks + b0 * C, .n_tokens = x->L,
                        .tokens = x->tokens + (size_t)b0 * x->L,
                        .token_mask = x->token_mask + (size_t)b0 * x->L,
                        .state = x->state + (size_t)b0 * x->Da,
                        .noise = x->noise + (size_t)b0 * x->A * x->Da, .horizon = x->A,
                        .num_steps = x->num_steps };
}

/* ---- running ---------------------------------------------------------------------------- */

static pi0_model *model_open(int skip) {
    pi0_options opt = pi0_options_default();
    opt.model_dir = MODEL_DIR;
    opt.skip_masked_cameras = skip;
    pi0_model *m = NULL;
    pi0_error err;
    if (pi0_model_open(&m, &opt, &err) != PI0_OK) {
        fprintf(stderr, "%s: %s (run from the repo root)\n", MODEL_DIR, err.msg);
        return NULL;
    }
    return m;
}

/* actions and v_first of a batch into a [2, B, A, Da] array. */
static int sample(pi0_model *m, const pi0_batch *in, float *out) {
    size_t n_x = (size_t)in->batch * in->horizon * pi0_model_dims(m)->action_dim;
    pi0_outputs o = { .actions = out, .v_first = out + n_x };
    pi0_error err;
    if (pi0_model_sample(m, in, &o, &err) != PI0_OK) {
        fprintf(stderr, "sample: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* Compares the actions and v_first halves of a and ref ([2, n_x] each). */
static int verdict(const char *test, const char *what, const float *a, const float *ref,
                   size_t n_x, double tol) {
    double ea = test_rel_l2(a, ref, n_x), ev = test_rel_l2(a + n_x, ref + n_x, n_x);
    int ok = ea <= tol && ev <= tol;
    int exact = !memcmp(a, ref, 2 * n_x * sizeof(float));
    printf("%s %-7s %-44s actions %.2e v_first %.2e %s %.0e%s\n", ok ? "PASS" : "FAIL", test,
           what, ea, ev, ok ? "<=" : ">", tol, exact ? " (bitwise equal)" : "");
    return !ok;
}

typedef struct {
    pi0_model *skip, *noskip;
    const pi0_dims *d;
} models;

static models ms_open;   /* opened once in main, used by every test */

/* ---- tests ------------------------------------------------------------------------------ */

/* 1 if rows [r0, r0 + n) of x ([rows, width]) are all zero. */
static int rows_zero(const float *x, size_t r0, size_t n, size_t width) {
    for (size_t i = r0 * width; i < (r0 + n) * width; i++)
        if (x[i] != 0.0f) return 0;
    return 1;
}

static bool test_skip(void) {
    const models *ms = &ms_open;
    /* Every row masks camera 2 (as a single-arm robot does), one row also camera 0. */
    static const uint8_t cams[] = { 1, 1, 0, 0, 1, 0 };
    inputs x;
    if (inputs_make(&x, ms->d, 2, cams) != 0) return false;
    pi0_batch in = batch_rows(&x, 0, 2);
    const size_t N = (size_t)(ms->d->image_size / ms->d->patch_size) *
                     (size_t)(ms->d->image_size / ms->d->patch_size);
    const size_t Pf = C * N + (size_t)x.L, D = (size_t)ms->d->llm.width, n_x = (size_t)2 * x.A * x.Da;
    float *a = malloc(2 * n_x * sizeof(float)), *b = malloc(2 * n_x * sizeof(float));
    float *pa = malloc(2 * Pf * D * sizeof(float)), *pb = malloc(2 * Pf * D * sizeof(float));
    pi0_outputs oa = { .actions = a, .v_first = a ? a + n_x : NULL, .prefix_embs = pa };
    pi0_outputs ob = { .actions = b, .v_first = b ? b + n_x : NULL, .prefix_embs = pb };
    pi0_error err;
    int fails = 0;
    if (!a || !b || !pa || !pb || pi0_model_sample(ms->skip, &in, &oa, &err) != PI0_OK ||
        pi0_model_sample(ms->noskip, &in, &ob, &err) != PI0_OK) {
        printf("FAIL skip    could not run\n");
        fails = 1;
    } else {
        fails += verdict("skip", "camera 2 masked in both rows: skip vs no skip", a, b, n_x, TOL);
        /* Proof that the camera really was dropped: its prefix rows come back as zeros
         * (documented in model_cpu.c), while without skipping they hold SigLIP's output. */
        int dropped = rows_zero(pa, 2 * N, N, D) && !rows_zero(pb, 2 * N, N, D);
        printf("%s skip    %-44s %s\n", dropped ? "PASS" : "FAIL", "camera 2 dropped only when skipping",
               dropped ? "yes" : "no");
        fails += !dropped;
    }
    free(a);
    free(b);
    free(pa);
    free(pb);
    inputs_free(&x);
    return fails == 0;
}

/* both = the batch of rows 0 and 1, one = the same reassembled from two batches of one row,
 * each as [actions of rows 0, 1 ; v_first of rows 0, 1]. */
static int rows_run(pi0_model *m, const inputs *x, float *both, float *one, float *row) {
    size_t n_row = (size_t)x->A * x->Da, n_x = 2 * n_row;
    pi0_batch in = batch_rows(x, 0, 2);
    if (sample(m, &in, both)) return -1;
    for (int b = 0; b < 2; b++) {
        in = batch_rows(x, b, 1);
        if (sample(m, &in, row)) return -1;
        memcpy(one + b * n_row, row, n_row * sizeof(float));
        memcpy(one + n_x + b * n_row, row + n_row, n_row * sizeof(float));
    }
    return 0;
}

static bool test_rows(void) {
    const models *ms = &ms_open;
    /* Row 0 alone masks camera 2 in every row (dropped when skipping); in the pair it is not. */
    static const uint8_t cams[] = { 1, 1, 0, 0, 1, 1 };
    inputs x;
    if (inputs_make(&x, ms->d, 2, cams) != 0) return false;
    size_t n_row = (size_t)x.A * x.Da, n_x = 2 * n_row;
    float *both = malloc(2 * n_x * sizeof(float)), *one = malloc(2 * n_x * sizeof(float));
    float *row = malloc(2 * n_row * sizeof(float));
    int fails = 0;
    for (int s = 0; s < 2; s++) {
        const char *what = s ? "batch of 2 vs 2 x batch of 1 (skip)"
                             : "batch of 2 vs 2 x batch of 1 (no skip)";
        if (!both || !one || !row || rows_run(s ? ms->skip : ms->noskip, &x, both, one, row)) {
            printf("FAIL rows    %s: could not run\n", what);
            fails++;
        } else {
            fails += verdict("rows", what, both, one, n_x, TOL);
        }
    }
    free(both);
    free(one);
    free(row);
    inputs_free(&x);
    return fails == 0;
}

/* Replaces the pixels of camera c in row b with fresh random values. */
static void repaint(inputs *x, int b, int c) {
    float *img = x->images + ((size_t)b * C + c) * image_floats(x);
    for (size_t i = 0; i < image_floats(x); i++) img[i] = pi0_rng_uniform_pm1(&rng);
}

static bool test_masked(void) {
    const models *ms = &ms_open;
    /* Camera 1 is masked in row 0 but present in row 1, so it is kept and computed even with
     * skipping: row 0's copy goes through SigLIP and must still not matter. */
    static const uint8_t cams[] = { 1, 0, 1, 1, 1, 0 };
    inputs x;
    int fails = 0;
    if (inputs_make(&x, ms->d, 2, cams) != 0) return false;
    size_t n_x = (size_t)2 * x.A * x.Da;
    float *ref = malloc(2 * n_x * sizeof(float)), *got = malloc(2 * n_x * sizeof(float));
    pi0_batch in = batch_rows(&x, 0, 2);
    for (int s = 0; s < 2; s++) {
        pi0_model *m = s ? ms->skip : ms->noskip;
        const char *mode = s ? "skip" : "no skip";
        char what[96];
        if (!ref || !got || sample(m, &in, ref)) {
            printf("FAIL masked  could not run\n");
            fails++;
            break;
        }
        repaint(&x, 0, 1);   /* masked in row 0 */
        repaint(&x, 1, 2);   /* masked in row 1 */
        if (sample(m, &in, got)) {
            fails++;
            break;
        }
        int same = !memcmp(ref, got, 2 * n_x * sizeof(float));
        printf("%s masked  %-44s %s\n", same ? "PASS" : "FAIL",
               s ? "masked pixels changed (skip)" : "masked pixels changed (no skip)",
               same ? "outputs bitwise equal" : "outputs changed");
        fails += !same;
        /* The control: a present camera's pixels must matter, or this test proves nothing. */
        repaint(&x, 0, 0);
        if (sample(m, &in, got)) {
            fails++;
            break;
        }
        double e = test_rel_l2(got, ref, n_x);
        snprintf(what, sizeof what, "present pixels changed (%s)", mode);
        printf("%s masked  %-44s actions moved by %.2e (must be > 1e-3)\n", e > 1e-3 ? "PASS" : "FAIL",
               what, e);
        fails += !(e > 1e-3);
    }
    free(ref);
    free(got);
    inputs_free(&x);
    return fails == 0;
}

static const test_row tests[] = {
    { "skip", test_skip },
    { "rows", test_rows },
    { "masked", test_masked },
};

int main(int argc, char **argv) {
    const int n_tests = (int)(sizeof tests / sizeof tests[0]);
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    const char *only;
    if (!test_rows_args(argc, argv, tests, n_tests, &only, &seed)) return 0;
    printf("seed %llu (--seed %llu replays it)\n", (unsigned long long)seed,
           (unsigned long long)seed);
    models *ms = &ms_open;
    ms->skip = model_open(1);
    ms->noskip = model_open(0);
    if (!ms->skip || !ms->noskip) {
        pi0_model_close(ms->skip);
        pi0_model_close(ms->noskip);
        printf("FAIL: could not open %s\n", MODEL_DIR);
        return 1;
    }
    ms->d = pi0_model_dims(ms->skip);
    /* test_rows_run's loop, but each test draws from the seed plus its index, so that it
     * replays alone with the same seed. */
    int failed = 0, ran = 0;
    for (int t = 0; t < n_tests; t++) {
        if (only && strcmp(only, tests[t].name)) continue;
        pi0_rng_seed(&rng, seed + (uint64_t)t);
        failed += !tests[t].fn();
        ran++;
    }
    pi0_model_close(ms->skip);
    pi0_model_close(ms->noskip);
    if (!ran) {
        fprintf(stderr, "test_cpu_equivalence: no row named '%s' (see --list)\n", only);
        return 2;
    }
    return test_summary(ran - failed, failed);
}
