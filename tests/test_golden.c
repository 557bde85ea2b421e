/* test_golden.c - the CPU float32 backend against openpi's own float32 outputs (tests/data,
 * made by openpi's JAX Pi0; ../shared/reference/README.md "golden/").
 * For every case folder (one with case.json): open its model through the public API, sample,
 * and compare actions, v_first and prefix_embs (valid prefix positions only: invalid rows are
 * whatever openpi computes there, read by nothing) by ||x - ref|| / ||ref||.
 * Limit 1e-4: the reference README's tolerance for a float32 engine (openpi's own run-to-run
 * floor is ~1e-7..6e-6; a wrong mask, position or formula gives ~1e-1).
 *   test_golden [--list] [name]   names: skip, noskip, threads */
#include "safetensors.h"
#include "test_util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#define DATA_DIR "tests/data"
#define TOL 1e-4

/* ---- one case: inputs and reference outputs -------------------------------------------- */

typedef struct {
    char name[128];
    char model_dir[256];
    pi0_batch in;
    float *images, *state, *noise;
    uint8_t *image_masks, *token_mask;
    int32_t *tokens;
    float *ref_actions, *ref_v_first, *ref_prefix; /* [B, A, Da], [B, A, Da], [B, P, D] */
    uint8_t *ref_prefix_mask;                      /* [B, P] */
    int P, D, Da;
} golden_case;

static void case_free(golden_case *c) {
    free(c->images);
    free(c->state);
    free(c->noise);
    free(c->image_masks);
    free(c->token_mask);
    free(c->tokens);
    free(c->ref_actions);
    free(c->ref_v_first);
    free(c->ref_prefix);
    free(c->ref_prefix_mask);
    memset(c, 0, sizeof *c);
}

static int case_load(golden_case *c, const char *name) {
    char path[1024];
    if (snprintf(c->name, sizeof c->name, "%s", name) >= (int)sizeof c->name ||
        snprintf(path, sizeof path, DATA_DIR "/%s/case.json", name) >= (int)sizeof path) {
        fprintf(stderr, "case name too long: %s\n", name);
        return -1;
    }
    char *json = NULL;
    size_t len = 0;
    pi0_error err;
    if (pi0_read_file(path, &json, &len, &err) != PI0_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    int ok = cJSON_IsString(model);
    if (ok)
        ok = snprintf(c->model_dir, sizeof c->model_dir, DATA_DIR "/%s", model->valuestring) <
             (int)sizeof c->model_dir;
    cJSON_Delete(root);
    free(json);
    if (!ok) {
        fprintf(stderr, "%s: no usable \"model\" string\n", path);
        return -1;
    }

    pi0_safetensors *f = NULL;
    snprintf(path, sizeof path, DATA_DIR "/%s/inputs.safetensors", c->name);
    if (pi0_safetensors_open(&f, path, &err) != PI0_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    int64_t si[5] = { 0 }, sm[2] = { 0 }, st[2] = { 0 }, stm[2] = { 0 }, ss[2] = { 0 }, sn[3] = { 0 },
            sk[1] = { 0 };   /* zero: gcc cannot see that a NULL copy leaves them unread */
    c->images = test_tensor_copy(f, path, "images", PI0_DT_F32, 5, si);
    c->image_masks = test_tensor_copy(f, path, "image_masks", PI0_DT_U8, 2, sm);
    c->tokens = test_tensor_copy(f, path, "tokens", PI0_DT_I32, 2, st);
    c->token_mask = test_tensor_copy(f, path, "token_mask", PI0_DT_U8, 2, stm);
    c->state = test_tensor_copy(f, path, "state", PI0_DT_F32, 2, ss);
    c->noise = test_tensor_copy(f, path, "noise", PI0_DT_F32, 3, sn);
    int32_t *steps = test_tensor_copy(f, path, "num_steps", PI0_DT_I32, 1, sk);
    pi0_safetensors_close(f);
    if (!c->images || !c->image_masks || !c->tokens || !c->token_mask || !c->state || !c->noise ||
        !steps) {
        free(steps);
        return -1;
    }
    c->in = (pi0_batch){ .batch = (int)si[0], .n_cameras = (int)si[1], .images = c->images,
                         .image_masks = c->image_masks, .n_tokens = (int)st[1],
                         .tokens = c->tokens, .token_mask = c->token_mask, .state = c->state,
                         .noise = c->noise, .horizon = (int)sn[1], .num_steps = steps[0] };
    free(steps);

    snprintf(path, sizeof path, DATA_DIR "/%s/outputs.safetensors", c->name);
    if (pi0_safetensors_open(&f, path, &err) != PI0_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    int64_t sa[3] = { 0 }, sv[3] = { 0 }, sp[3] = { 0 }, spm[2] = { 0 };
    c->ref_actions = test_tensor_copy(f, path, "actions", PI0_DT_F32, 3, sa);
    c->ref_v_first = test_tensor_copy(f, path, "v_first", PI0_DT_F32, 3, sv);
    c->ref_prefix = test_tensor_copy(f, path, "prefix_embs", PI0_DT_F32, 3, sp);
    c->ref_prefix_mask = test_tensor_copy(f, path, "prefix_mask", PI0_DT_U8, 2, spm);
    pi0_safetensors_close(f);
    if (!c->ref_actions || !c->ref_v_first || !c->ref_prefix || !c->ref_prefix_mask) return -1;
    c->Da = (int)sa[2];
    c->P = (int)sp[1];
    c->D = (int)sp[2];
    return 0;
}

/* Names of the case folders, sorted; returns the count (at most max). */
static int list_cases(char names[][128], int max) {
    DIR *dir = opendir(DATA_DIR);
    if (!dir) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) && n < max) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        if (snprintf(path, sizeof path, DATA_DIR "/%s/case.json", e->d_name) >= (int)sizeof path)
            continue;
        FILE *fp = fopen(path, "rb");
        if (!fp) continue;
        fclose(fp);
        if (snprintf(names[n], 128, "%s", e->d_name) < 128) n++;
    }
    closedir(dir);
    for (int i = 1; i < n; i++)   /* insertion sort: a handful of names */
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[128];
            memcpy(t, names[j], 128);
            memcpy(names[j], names[j - 1], 128);
            memcpy(names[j - 1], t, 128);
        }
    return n;
}

/* ---- running and comparing -------------------------------------------------------------- */

typedef struct {
    float *actions, *v_first, *prefix;   /* [B, A, Da], [B, A, Da], [B, P, D] */
} run_out;

static void run_free(run_out *r) {
    free(r->actions);
    free(r->v_first);
    free(r->prefix);
}

static int run_case(const golden_case *c, int skip, int n_threads, run_out *r) {
    pi0_options opt = pi0_options_default();
    opt.model_dir = c->model_dir;
    opt.backend = PI0_BACKEND_CPU;
    opt.n_threads = n_threads;
    opt.skip_masked_cameras = skip;
    pi0_model *m = NULL;
    pi0_error err;
    if (pi0_model_open(&m, &opt, &err) != PI0_OK) {
        fprintf(stderr, "%s: %s\n", c->model_dir, err.msg);
        return -1;
    }
    const pi0_dims *d = pi0_model_dims(m);
    size_t n_x = (size_t)c->in.batch * c->in.horizon * d->action_dim;
    size_t n_p = (size_t)c->in.batch * c->P * c->D;
    r->actions = malloc(n_x * sizeof(float));
    r->v_first = malloc(n_x * sizeof(float));
    r->prefix = malloc(n_p * sizeof(float));
    pi0_outputs out = { .actions = r->actions, .v_first = r->v_first, .prefix_embs = r->prefix };
    int rc = 0;
    if (!r->actions || !r->v_first || !r->prefix) {
        fprintf(stderr, "out of memory\n");
        rc = -1;
    } else if (d->llm.width != c->D) {
        fprintf(stderr, "%s: LLM width %d, golden prefix_embs width %d\n", c->name, d->llm.width, c->D);
        rc = -1;
    } else if (pi0_model_sample(m, &c->in, &out, &err) != PI0_OK) {
        fprintf(stderr, "%s: sample: %s\n", c->name, err.msg);
        rc = -1;
    }
    pi0_model_close(m);
    return rc;
}

/* One PASS/FAIL line; returns 1 on failure (NaN fails). */
static int verdict(const char *test, const char *case_name, const char *what, double e, double tol) {
    char label[192];
    snprintf(label, sizeof label, "%s %s", case_name, what);
    int ok = e <= tol;
    printf("%s %-7s %-38s rel_l2 %.3e %s %.0e\n", ok ? "PASS" : "FAIL", test, label, e,
           ok ? "<=" : ">", tol);
    return !ok;
}

static int check_case(const char *test, const golden_case *c, int skip) {
    run_out r = { 0 };
    if (run_case(c, skip, 0, &r) != 0) {
        printf("FAIL %-7s %s: could not run\n", test, c->name);
        run_free(&r);
        return 1;
    }
    size_t n_x = (size_t)c->in.batch * c->in.horizon * c->Da;
    size_t n_p = (size_t)c->in.batch * c->P * c->D;
    double ea = test_rel_l2(r.actions, c->ref_actions, n_x);
    double ev = test_rel_l2(r.v_first, c->ref_v_first, n_x);
    double ep = test_rel_l2_rows(r.prefix, c->ref_prefix, n_p, (size_t)c->D, c->ref_prefix_mask);
    int fails = verdict(test, c->name, "actions", ea, TOL);
    fails += verdict(test, c->name, "v_first", ev, TOL);
    fails += verdict(test, c->name, "prefix_embs (valid rows)", ep, TOL);
    run_free(&r);
    return fails;
}

/* ---- tests ------------------------------------------------------------------------------ */

enum { MAX_CASES = 32 };

static int for_each_case(const char *test, int (*fn)(const char *, const golden_case *, int),
                         int arg) {
    char names[MAX_CASES][128];
    int n = list_cases(names, MAX_CASES), fails = 0;
    if (n == 0) {
        printf("FAIL %-7s no case folders with case.json in " DATA_DIR " (run from the repo root)\n",
               test);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        golden_case c = { 0 };
        if (case_load(&c, names[i]) != 0) {
            printf("FAIL %-7s %s: could not load the case\n", test, names[i]);
            fails++;
        } else {
            fails += fn(test, &c, arg);
        }
        case_free(&c);
    }
    return fails;
}

static bool test_skip(void) { return for_each_case("skip", check_case, 1) == 0; }
static bool test_noskip(void) { return for_each_case("noskip", check_case, 0) == 0; }

/* Every output element is computed by one task with a fixed order of additions, so the
 * thread count must not change a single bit. */
static int check_threads(const char *test, const golden_case *c, int unused) {
    run_out r1 = { 0 }, r2 = { 0 };
    int fails = 0;
    if (run_case(c, 1, 1, &r1) != 0 || run_case(c, 1, 2, &r2) != 0) {
        printf("FAIL %-7s %s: could not run\n", test, c->name);
        fails = 1;
    } else {
        size_t n_x = (size_t)c->in.batch * c->in.horizon * c->Da;
        size_t n_p = (size_t)c->in.batch * c->P * c->D;
        double ea = test_rel_l2(r2.actions, r1.actions, n_x);
        double ev = test_rel_l2(r2.v_first, r1.v_first, n_x);
        double ep = test_rel_l2(r2.prefix, r1.prefix, n_p);
        int same = !memcmp(r1.actions, r2.actions, n_x * sizeof(float)) &&
                   !memcmp(r1.v_first, r2.v_first, n_x * sizeof(float)) &&
                   !memcmp(r1.prefix, r2.prefix, n_p * sizeof(float));
        printf("%s %-7s %-22s 1 vs 2 threads: actions %.1e v_first %.1e prefix_embs %.1e "
               "(bitwise equal expected)\n",
               same ? "PASS" : "FAIL", test, c->name, ea, ev, ep);
        fails = !same;
    }
    run_free(&r1);
    run_free(&r2);
    return fails;
}

static bool test_threads(void) { return for_each_case("threads", check_threads, 0) == 0; }

/* A case's first row alone, as a batch of 1, reproduces the reference's first row: rows never
 * see each other (test_cuda_model takes batch-1 cases from the goldens this way). */
static int check_first_row(const char *test, const golden_case *c, int skip) {
    if (c->in.batch < 2) return 0;
    golden_case one = *c;
    one.in.batch = 1;
    run_out r = { 0 };
    int fails;
    if (run_case(&one, skip, 0, &r) != 0) {
        printf("FAIL %-7s %s: could not run its first row\n", test, c->name);
        fails = 1;
    } else {
        size_t n_x = (size_t)c->in.horizon * c->Da;
        fails = verdict(test, c->name, "row 0 alone: actions",
                        test_rel_l2(r.actions, c->ref_actions, n_x), TOL);
        fails += verdict(test, c->name, "row 0 alone: v_first",
                         test_rel_l2(r.v_first, c->ref_v_first, n_x), TOL);
    }
    run_free(&r);
    return fails;
}

static bool test_first_row(void) { return for_each_case("row0", check_first_row, 1) == 0; }

static const test_row tests[] = {
    { "skip", test_skip },       /* skip_masked_cameras on (the default) */
    { "noskip", test_noskip },   /* every camera through SigLIP, as openpi does */
    { "threads", test_threads }, /* 1 and 2 threads give identical bits */
    { "row0", test_first_row },  /* a case's first row alone gives its reference's first row */
};

int main(int argc, char **argv) {
    const int n_tests = (int)(sizeof tests / sizeof tests[0]);
    const char *only;
    if (!test_rows_args(argc, argv, tests, n_tests, &only, NULL)) return 0;
    return test_rows_run("test_golden", tests, n_tests, only, false);   /* verdict() prints */
}
