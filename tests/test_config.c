/* test_config.c - config.json in its three forms (openpi's short form, LeRobot's policy config,
 * the explicit form), the refusals (Pi0.5, unknown variants, inconsistent dims), the explicit
 * form's round trip, and parameter counts: the full model's against PI0_SPEC 1.5, and both
 * against an independent count over the weight table and over the golden file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "safetensors.h"
#include "weights.h"
#include "test_util.h"

static bool dims_equal(const pi0_dims *a, const pi0_dims *b) {
    const pi0_vision_dims *va = &a->vision, *vb = &b->vision;
    bool same = a->action_dim == b->action_dim && a->action_horizon == b->action_horizon &&
                a->max_token_len == b->max_token_len && a->image_size == b->image_size &&
                a->patch_size == b->patch_size && va->width == vb->width && va->depth == vb->depth &&
                va->mlp_dim == vb->mlp_dim && va->num_heads == vb->num_heads &&
                va->head_dim == vb->head_dim && va->eps == vb->eps;
    const pi0_gemma_dims *g[2][2] = { { &a->llm, &b->llm }, { &a->expert, &b->expert } };
    for (int i = 0; i < 2; i++) {
        const pi0_gemma_dims *x = g[i][0], *y = g[i][1];
        same = same && x->width == y->width && x->depth == y->depth && x->mlp_dim == y->mlp_dim &&
               x->num_heads == y->num_heads && x->num_kv_heads == y->num_kv_heads &&
               x->head_dim == y->head_dim && x->vocab_size == y->vocab_size && x->eps == y->eps;
    }
    return same;
}

static pi0_status parse(const char *json, pi0_dims *d, pi0_error *err) {
    return pi0_dims_parse(d, json, strlen(json), err);
}

static void expect_ok(const char *what, const char *json, const pi0_dims *want) {
    pi0_dims d;
    pi0_error err = { "" };
    pi0_status st = parse(json, &d, &err);
    CHECK(st == PI0_OK, "%s: %s", what, err.msg);
    if (st == PI0_OK) CHECK(dims_equal(&d, want), "%s: dimensions differ from the expected ones", what);
    printf("%s %s\n", st == PI0_OK && dims_equal(&d, want) ? "PASS" : "FAIL", what);
}

static void expect_fail(const char *what, const char *json, pi0_status want, const char *text) {
    pi0_dims d;
    pi0_error err = { "" };
    pi0_status st = parse(json, &d, &err);
    bool ok = st == want && strstr(err.msg, text);
    CHECK(ok, "%s: expected %s with \"%s\", got %s \"%s\"", what, pi0_status_name(want), text,
          pi0_status_name(st), err.msg);
    printf("%s %s: %s\n", ok ? "PASS" : "FAIL", what, err.msg);
}

static void test_forms(void) {
    pi0_dims full10 = pi0_dims_full();
    full10.action_horizon = 10;
    expect_ok("openpi short form (pi0_droid)",
              "{\"action_dim\": 32, \"action_horizon\": 10, \"paligemma_variant\": \"gemma_2b\", "
              "\"action_expert_variant\": \"gemma_300m\", \"precision\": \"bfloat16\"}", &full10);
    pi0_dims full50 = pi0_dims_full();
    expect_ok("openpi short form, lora variants",
              "{\"action_dim\": 32, \"action_horizon\": 50, \"paligemma_variant\": \"gemma_2b_lora\", "
              "\"action_expert_variant\": \"gemma_300m_lora\", \"precision\": \"float32\"}", &full50);
    pi0_dims dummy = pi0_dims_full();
    dummy.llm = (pi0_gemma_dims){ 64, 4, 128, 8, 1, 16, 257152, 1e-6f };
    dummy.expert = (pi0_gemma_dims){ 64, 4, 128, 8, 1, 16, 0, 1e-6f };
    expect_ok("openpi short form, dummy variants",
              "{\"action_dim\": 32, \"action_horizon\": 50, \"paligemma_variant\": \"dummy\", "
              "\"action_expert_variant\": \"dummy\"}", &dummy);

    pi0_dims lerobot = pi0_dims_full();
    lerobot.action_horizon = 20;
    expect_ok("LeRobot policy config",
              "{\"type\": \"pi0\", \"n_obs_steps\": 1, \"chunk_size\": 20, \"n_action_steps\": 20, "
              "\"max_state_dim\": 32, \"max_action_dim\": 32, \"num_inference_steps\": 10, "
              "\"tokenizer_max_length\": 48, \"empty_cameras\": 0, "
              "\"input_features\": {\"observation.state\": {\"type\": \"STATE\", \"shape\": [8]}}}",
              &lerobot);

    char *text;
    size_t len;
    pi0_error err;
    if (pi0_read_file("tests/data/model_tiny_h10/config.json", &text, &len, &err) == PI0_OK) {
        pi0_dims tiny = pi0_dims_tiny();
        expect_ok("explicit form (golden model_tiny_h10)", text, &tiny);
        free(text);
    } else {
        CHECK(0, "%s", err.msg);
    }
    pi0_dims tiny50 = pi0_dims_tiny(), loaded;
    tiny50.action_horizon = 50;
    pi0_status st = pi0_dims_load(&loaded, "tests/data/model_tiny_h50/config.json", &err);
    CHECK(st == PI0_OK && dims_equal(&loaded, &tiny50), "model_tiny_h50/config.json: %s",
          st ? err.msg : "dims differ");

    /* The explicit form written by pi0_dims_to_json reads back to the same dims. */
    const pi0_dims sets[3] = { pi0_dims_full(), pi0_dims_tiny(), dummy };
    for (int i = 0; i < 3; i++) {
        char *json = pi0_dims_to_json(&sets[i]);
        pi0_dims back;
        st = parse(json, &back, &err);
        CHECK(st == PI0_OK && dims_equal(&back, &sets[i]), "to_json round trip %d: %s", i,
              st ? err.msg : "dims differ");
        printf("%s to_json round trip %d\n", st == PI0_OK && dims_equal(&back, &sets[i]) ? "PASS" : "FAIL", i);
        free(json);
    }
}

static void test_refusals(void) {
    expect_fail("pi05 in openpi form",
                "{\"action_dim\": 32, \"paligemma_variant\": \"gemma_2b\", "
                "\"action_expert_variant\": \"gemma_300m\", \"pi05\": true}",
                PI0_ERR_UNSUPPORTED, "Pi0.5 is not supported");
    expect_fail("pi05 LeRobot type", "{\"type\": \"pi05\", \"chunk_size\": 50}", PI0_ERR_UNSUPPORTED,
                "Pi0.5 is not supported");
    expect_fail("other LeRobot policy", "{\"type\": \"act\"}", PI0_ERR_UNSUPPORTED,
                "policy type 'act' is not supported");
    expect_fail("unknown variant",
                "{\"paligemma_variant\": \"gemma_7b\", \"action_expert_variant\": \"gemma_300m\"}",
                PI0_ERR_FORMAT, "\"paligemma_variant\" is 'gemma_7b', expected gemma_2b");
    expect_fail("missing expert variant", "{\"paligemma_variant\": \"gemma_2b\"}", PI0_ERR_FORMAT,
                "missing \"action_expert_variant\"");
    expect_fail("depths differ",
                "{\"paligemma_variant\": \"gemma_2b\", \"action_expert_variant\": \"dummy\"}",
                PI0_ERR_INPUT, "must share depth, heads, KV heads and head_dim");
    expect_fail("not a config", "{\"hello\": 1}", PI0_ERR_FORMAT, "not a Pi0 config");
    expect_fail("bad JSON", "{\"action_dim\": 32,", PI0_ERR_FORMAT, "not valid JSON");
    expect_fail("non-integer",
                "{\"action_dim\": 32.5, \"paligemma_variant\": \"gemma_2b\", "
                "\"action_expert_variant\": \"gemma_300m\"}",
                PI0_ERR_FORMAT, "\"action_dim\" must be an integer");

    /* The explicit form with broken invariants. */
    pi0_dims d = pi0_dims_tiny();
    pi0_error err;
    d.vision.num_heads = 5;
    d.vision.head_dim = 12;
    CHECK(pi0_dims_check(&d, &err) == PI0_ERR_INPUT && strstr(err.msg, "vision: width 64, 5 heads"),
          "vision heads: %s", err.msg);
    d = pi0_dims_tiny();
    d.patch_size = 15;
    CHECK(pi0_dims_check(&d, &err) == PI0_ERR_INPUT && strstr(err.msg, "not a multiple of patch_size"),
          "patch: %s", err.msg);
    d = pi0_dims_tiny();
    d.llm.head_dim = d.expert.head_dim = 15;
    CHECK(pi0_dims_check(&d, &err) == PI0_ERR_INPUT && strstr(err.msg, "even head dim"),
          "odd head dim: %s", err.msg);
    d = pi0_dims_tiny();
    d.llm.vocab_size = 0;
    CHECK(pi0_dims_check(&d, &err) == PI0_ERR_INPUT && strstr(err.msg, "llm.vocab_size is 0"),
          "vocab: %s", err.msg);
    const char *missing = "{\"vision\": {\"width\": 64, \"depth\": 2, \"mlp_dim\": 128, \"num_heads\": 4}, "
                    "\"llm\": {\"width\": 128}, \"expert\": {}}";
    expect_fail("explicit form, missing field", missing, PI0_ERR_FORMAT, "missing \"llm.depth\"");
}

/* Counts by walking the weight table: independent of the formulas in config.c. */
typedef struct {
    int64_t part[5];
    int n;
} table_count;

static pi0_status count_slot(void *ctx, pi0_tensor *slot, pi0_part part, pi0_error *err) {
    table_count *c = ctx;
    c->part[part] += (int64_t)slot->n_elems;
    c->n++;
    return PI0_OK;
}

static void check_counts_vs_table(const char *what, const pi0_dims *d) {
    pi0_param_counts pc = pi0_dims_param_counts(d);
    table_count tc = { { 0 }, 0 };
    pi0_weights w = { 0 };
    pi0_error err;
    CHECK(pi0_weights_visit(d, &w, count_slot, &tc, &err) == PI0_OK, "%s: visit: %s", what, err.msg);
    pi0_weights_free(&w);
    bool ok = pc.vision == tc.part[PI0_PART_VISION] && pc.llm_embed == tc.part[PI0_PART_LLM_EMBED] &&
              pc.llm == tc.part[PI0_PART_LLM_EMBED] + tc.part[PI0_PART_LLM] &&
              pc.expert == tc.part[PI0_PART_EXPERT] && pc.projections == tc.part[PI0_PART_PROJECTIONS] &&
              pc.n_tensors == tc.n;
    CHECK(ok, "%s: formula counts differ from the weight table", what);
    printf("%s %s: counts agree with the weight table (%d tensors)\n", ok ? "PASS" : "FAIL", what, tc.n);
}

static void test_counts(void) {
    pi0_dims full = pi0_dims_full();
    pi0_param_counts c = pi0_dims_param_counts(&full);
    /* PI0_SPEC 1.5. */
    CHECK(c.total == 3238048528LL, "full total %lld, expected 3,238,048,528", (long long)c.total);
    CHECK(c.n_tensors == 776, "full tensors %d, expected 776", c.n_tensors);
    CHECK(c.vision == 414803696LL, "vision+projector %lld", (long long)c.vision);
    CHECK(c.llm == 2508531712LL, "gemma 2b %lld", (long long)c.llm);
    CHECK(c.llm_embed == 526647296LL, "embedding %lld", (long long)c.llm_embed);
    CHECK(c.expert == 311464960LL, "expert %lld", (long long)c.expert);
    CHECK(c.projections == 3248160LL, "projections %lld", (long long)c.projections);
    printf("full counts: total %lld, %d tensors\n", (long long)c.total, c.n_tensors);
    check_counts_vs_table("full", &full);
    pi0_dims tiny = pi0_dims_tiny();
    check_counts_vs_table("tiny", &tiny);

    /* Tiny against the golden file: everything in it except the unused expert head. */
    pi0_safetensors *f;
    pi0_error err;
    if (pi0_safetensors_open(&f, "tests/data/model_tiny_h10/model.safetensors", &err) != PI0_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int64_t n_params = 0;
    int n_tensors = 0;
    for (int i = 0; i < pi0_safetensors_count(f); i++) {
        const pi0_st_tensor *t = pi0_safetensors_at(f, i);
        if (!strcmp(t->name, "paligemma_with_expert.gemma_expert.lm_head.weight")) continue;
        n_params += (int64_t)t->n_elems;
        n_tensors++;
    }
    pi0_safetensors_close(f);
    c = pi0_dims_param_counts(&tiny);
    CHECK(c.total == n_params && c.n_tensors == n_tensors,
          "tiny: %lld parameters in %d tensors, the golden file has %lld in %d", (long long)c.total,
          c.n_tensors, (long long)n_params, n_tensors);
    printf("tiny counts: total %lld, %d tensors (golden file: %lld, %d)\n", (long long)c.total,
           c.n_tensors, (long long)n_params, n_tensors);
}

int main(void) {
    test_forms();
    test_refusals();
    test_counts();
    return test_summary_checks();
}
