/* config.c - model dimensions: the built-in full and tiny sets, config.json in its three forms
 * (openpi's short form, LeRobot's policy config, our explicit form), the invariants the model
 * needs, and parameter counts. It does not look at tensors (weights.c does). */
#include "common.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Dimensions stay far below these; the limits keep every product in the counts in range. */
enum { MAX_DIM = 1 << 20, MAX_VOCAB = 1 << 24, MAX_DEPTH = 1024 };

static const pi0_vision_dims so400m = { .width = 1152, .depth = 27, .mlp_dim = 4304,
                                        .num_heads = 16, .head_dim = 72, .eps = 1e-6f };
static const pi0_gemma_dims gemma_2b = { .width = 2048, .depth = 18, .mlp_dim = 16384,
                                         .num_heads = 8, .num_kv_heads = 1, .head_dim = 256,
                                         .vocab_size = 257152, .eps = 1e-6f };
static const pi0_gemma_dims gemma_300m = { .width = 1024, .depth = 18, .mlp_dim = 4096,
                                           .num_heads = 8, .num_kv_heads = 1, .head_dim = 256,
                                           .vocab_size = 0, .eps = 1e-6f };
/* openpi's "dummy" variant (PI0_SPEC 4.5): 64 wide, 4 deep, MLP 128, 8 heads of 16, one KV head. */
static const pi0_gemma_dims gemma_dummy = { .width = 64, .depth = 4, .mlp_dim = 128,
                                            .num_heads = 8, .num_kv_heads = 1, .head_dim = 16,
                                            .vocab_size = 0, .eps = 1e-6f };

pi0_dims pi0_dims_full(void) {
    pi0_dims d = { .action_dim = 32, .action_horizon = 50, .max_token_len = 48,
                   .image_size = 224, .patch_size = 14 };
    d.vision = so400m;
    d.llm = gemma_2b;
    d.expert = gemma_300m;
    return d;
}

/* The golden tiny model (reference README "golden/"): as model_tiny_h10/config.json. */
pi0_dims pi0_dims_tiny(void) {
    pi0_dims d = { .action_dim = 32, .action_horizon = 10, .max_token_len = 48,
                   .image_size = 224, .patch_size = 14 };
    d.vision = (pi0_vision_dims){ .width = 64, .depth = 2, .mlp_dim = 128, .num_heads = 4,
                                  .head_dim = 16, .eps = 1e-6f };
    d.llm = (pi0_gemma_dims){ .width = 128, .depth = 3, .mlp_dim = 256, .num_heads = 8,
                              .num_kv_heads = 1, .head_dim = 16, .vocab_size = 1024, .eps = 1e-6f };
    d.expert = (pi0_gemma_dims){ .width = 64, .depth = 3, .mlp_dim = 128, .num_heads = 8,
                                 .num_kv_heads = 1, .head_dim = 16, .vocab_size = 0, .eps = 1e-6f };
    return d;
}

/* ---- checks ------------------------------------------------------------------------------ */

#define CHECK_RANGE(value, lo, hi, what)                                                      \
    do {                                                                                      \
        if ((value) < (lo) || (value) > (hi))                                                 \
            return pi0_fail(err, PI0_ERR_INPUT, "%s is %d, expected %d..%d", what, (int)(value), \
                            (int)(lo), (int)(hi));                                            \
    } while (0)

static pi0_status check_gemma(const pi0_gemma_dims *g, const char *who, bool llm, pi0_error *err) {
    char what[64];
#define G(field, lo, hi)                                      \
    snprintf(what, sizeof what, "%s.%s", who, #field);        \
    CHECK_RANGE(g->field, lo, hi, what)
    G(width, 1, MAX_DIM);
    G(depth, 1, MAX_DEPTH);
    G(mlp_dim, 1, MAX_DIM);
    G(num_heads, 1, 1024);
    G(num_kv_heads, 1, 1024);
    G(head_dim, 2, 4096);
    if (llm) {
        G(vocab_size, 1, MAX_VOCAB);
    }
#undef G
    if (g->num_heads % g->num_kv_heads)
        return pi0_fail(err, PI0_ERR_INPUT, "%s: %d query heads are not a multiple of %d KV heads",
                        who, g->num_heads, g->num_kv_heads);
    if (g->head_dim % 2)
        return pi0_fail(err, PI0_ERR_INPUT, "%s.head_dim is %d: RoPE needs an even head dim", who,
                        g->head_dim);
    if (!(g->eps > 0.0f && g->eps < 1.0f))
        return pi0_fail(err, PI0_ERR_INPUT, "%s.rms_norm_eps is %g, expected a small positive number",
                        who, (double)g->eps);
    return PI0_OK;
}

pi0_status pi0_dims_check(const pi0_dims *d, pi0_error *err) {
    CHECK_RANGE(d->action_dim, 1, 4096, "action_dim");
    CHECK_RANGE(d->action_horizon, 1, 4096, "action_horizon");
    CHECK_RANGE(d->max_token_len, 1, 8192, "max_token_len");
    CHECK_RANGE(d->image_size, 1, 4096, "image_size");
    CHECK_RANGE(d->patch_size, 1, 4096, "patch_size");
    if (d->image_size % d->patch_size)
        return pi0_fail(err, PI0_ERR_INPUT, "image_size %d is not a multiple of patch_size %d",
                        d->image_size, d->patch_size);
    const pi0_vision_dims *v = &d->vision;
    CHECK_RANGE(v->width, 1, MAX_DIM, "vision.width");
    CHECK_RANGE(v->depth, 1, MAX_DEPTH, "vision.depth");
    CHECK_RANGE(v->mlp_dim, 1, MAX_DIM, "vision.mlp_dim");
    CHECK_RANGE(v->num_heads, 1, 1024, "vision.num_heads");
    if (v->width % v->num_heads || v->head_dim != v->width / v->num_heads)
        return pi0_fail(err, PI0_ERR_INPUT,
                        "vision: width %d, %d heads and head_dim %d do not fit (width = heads * head_dim)",
                        v->width, v->num_heads, v->head_dim);
    if (!(v->eps > 0.0f && v->eps < 1.0f))
        return pi0_fail(err, PI0_ERR_INPUT, "vision.layer_norm_eps is %g, expected a small positive number",
                        (double)v->eps);
    pi0_status st;
    if ((st = check_gemma(&d->llm, "llm", true, err)) != PI0_OK) return st;
    if ((st = check_gemma(&d->expert, "expert", false, err)) != PI0_OK) return st;
    /* The two Gemmas attend jointly, layer by layer (PI0_SPEC 1.3, 2.9). */
    if (d->llm.depth != d->expert.depth || d->llm.num_heads != d->expert.num_heads ||
        d->llm.num_kv_heads != d->expert.num_kv_heads || d->llm.head_dim != d->expert.head_dim)
        return pi0_fail(err, PI0_ERR_INPUT,
                        "llm and expert must share depth, heads, KV heads and head_dim for joint "
                        "attention: llm %d/%d/%d/%d, expert %d/%d/%d/%d",
                        d->llm.depth, d->llm.num_heads, d->llm.num_kv_heads, d->llm.head_dim,
                        d->expert.depth, d->expert.num_heads, d->expert.num_kv_heads,
                        d->expert.head_dim);
    /* The time embedding has the expert's width: half sines, half cosines, fraction i/(half-1). */
    if (d->expert.width % 2 || d->expert.width < 4)
        return pi0_fail(err, PI0_ERR_INPUT,
                        "expert.width is %d: the time embedding needs an even width of at least 4",
                        d->expert.width);
    int64_t n_patches = (int64_t)(d->image_size / d->patch_size) * (d->image_size / d->patch_size);
    if (n_patches > 65536)
        return pi0_fail(err, PI0_ERR_INPUT, "%lld patches per image is too many",
                        (long long)n_patches);
    return PI0_OK;
}

/* ---- parsing ----------------------------------------------------------------------------- */

static pi0_status get_int(const cJSON *obj, const char *key, const char *where, int *out,
                          bool required, pi0_error *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j) {
        if (!required) return PI0_OK;
        return pi0_fail(err, PI0_ERR_FORMAT, "missing \"%s%s\"", where, key);
    }
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) ||
        fabs(j->valuedouble) > 2e9)
        return pi0_fail(err, PI0_ERR_FORMAT, "\"%s%s\" must be an integer", where, key);
    *out = (int)j->valuedouble;
    return PI0_OK;
}

static pi0_status get_float(const cJSON *obj, const char *key, const char *where, float *out,
                            pi0_error *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j) return PI0_OK; /* epsilons default to 1e-6 */
    if (!cJSON_IsNumber(j)) return pi0_fail(err, PI0_ERR_FORMAT, "\"%s%s\" must be a number", where, key);
    *out = (float)j->valuedouble;
    return PI0_OK;
}

static pi0_status parse_gemma(const cJSON *root, const char *key, pi0_gemma_dims *g, bool llm,
                              pi0_error *err) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsObject(o)) return pi0_fail(err, PI0_ERR_FORMAT, "\"%s\" must be an object", key);
    char where[32];
    snprintf(where, sizeof where, "%s.", key);
    pi0_status st;
    *g = (pi0_gemma_dims){ .num_kv_heads = 1, .eps = 1e-6f };
    if ((st = get_int(o, "width", where, &g->width, true, err)) ||
        (st = get_int(o, "depth", where, &g->depth, true, err)) ||
        (st = get_int(o, "mlp_dim", where, &g->mlp_dim, true, err)) ||
        (st = get_int(o, "num_heads", where, &g->num_heads, true, err)) ||
        (st = get_int(o, "num_kv_heads", where, &g->num_kv_heads, false, err)) ||
        (st = get_int(o, "head_dim", where, &g->head_dim, true, err)) ||
        (st = get_float(o, "rms_norm_eps", where, &g->eps, err)))
        return st;
    if (llm && (st = get_int(o, "vocab_size", where, &g->vocab_size, true, err))) return st;
    return PI0_OK;
}

static pi0_status parse_explicit(const cJSON *root, pi0_dims *d, pi0_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "vision");
    if (!cJSON_IsObject(v)) return pi0_fail(err, PI0_ERR_FORMAT, "\"vision\" must be an object");
    pi0_status st;
    d->vision.eps = 1e-6f;
    if ((st = get_int(v, "width", "vision.", &d->vision.width, true, err)) ||
        (st = get_int(v, "depth", "vision.", &d->vision.depth, true, err)) ||
        (st = get_int(v, "mlp_dim", "vision.", &d->vision.mlp_dim, true, err)) ||
        (st = get_int(v, "num_heads", "vision.", &d->vision.num_heads, true, err)) ||
        (st = get_float(v, "layer_norm_eps", "vision.", &d->vision.eps, err)))
        return st;
    if (d->vision.num_heads > 0) d->vision.head_dim = d->vision.width / d->vision.num_heads;
    if ((st = parse_gemma(root, "llm", &d->llm, true, err)) ||
        (st = parse_gemma(root, "expert", &d->expert, false, err)))
        return st;
    return PI0_OK;
}

/* openpi's Gemma variant names (PI0_SPEC 4.5); the _lora variants have the same shapes. */
static pi0_status variant(const cJSON *root, const char *key, const char *fallback,
                          pi0_gemma_dims *g, pi0_error *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    const char *name = fallback;
    if (j) {
        if (!cJSON_IsString(j)) return pi0_fail(err, PI0_ERR_FORMAT, "\"%s\" must be a string", key);
        name = j->valuestring;
    }
    if (!name) return pi0_fail(err, PI0_ERR_FORMAT, "missing \"%s\"", key);
    if (!strcmp(name, "gemma_2b") || !strcmp(name, "gemma_2b_lora")) *g = gemma_2b;
    else if (!strcmp(name, "gemma_300m") || !strcmp(name, "gemma_300m_lora")) *g = gemma_300m;
    else if (!strcmp(name, "dummy")) *g = gemma_dummy;
    else
        return pi0_fail(err, PI0_ERR_FORMAT,
                        "\"%s\" is '%.64s', expected gemma_2b, gemma_2b_lora, gemma_300m, "
                        "gemma_300m_lora or dummy", key, name);
    return PI0_OK;
}

static pi0_status parse_short(const cJSON *root, pi0_dims *d, pi0_error *err) {
    pi0_status st;
    if ((st = variant(root, "paligemma_variant", NULL, &d->llm, err)) ||
        (st = variant(root, "action_expert_variant", NULL, &d->expert, err)))
        return st;
    /* The LLM keeps PaliGemma's vocabulary whatever its size; the expert has none. */
    d->llm.vocab_size = gemma_2b.vocab_size;
    d->expert.vocab_size = 0;
    return PI0_OK;
}

static pi0_status parse_lerobot(const cJSON *root, pi0_dims *d, pi0_error *err) {
    pi0_status st;
    /* Newer LeRobot configs name the variants like openpi; older ones imply the full sizes. */
    if ((st = variant(root, "paligemma_variant", "gemma_2b", &d->llm, err)) ||
        (st = variant(root, "action_expert_variant", "gemma_300m", &d->expert, err)))
        return st;
    d->llm.vocab_size = gemma_2b.vocab_size;
    d->expert.vocab_size = 0;
    if ((st = get_int(root, "chunk_size", "", &d->action_horizon, false, err)) ||
        (st = get_int(root, "max_action_dim", "", &d->action_dim, false, err)) ||
        (st = get_int(root, "tokenizer_max_length", "", &d->max_token_len, false, err)))
        return st;
    return PI0_OK;
}

static pi0_status parse_root(const cJSON *root, pi0_dims *d, pi0_error *err) {
    if (!cJSON_IsObject(root)) return pi0_fail(err, PI0_ERR_FORMAT, "not a JSON object");
    const cJSON *pi05 = cJSON_GetObjectItemCaseSensitive(root, "pi05");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (cJSON_IsTrue(pi05) || (cJSON_IsString(type) && !strcmp(type->valuestring, "pi05")))
        return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                        "this is a Pi0.5 model (pi05): Pi0.5 is not supported, only Pi0");

    /* Defaults of Pi0 (PI0_SPEC 1.1); each form may override them. */
    *d = pi0_dims_full();
    pi0_status st;
    if (cJSON_IsString(type)) {
        if (strcmp(type->valuestring, "pi0"))
            return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                            "policy type '%.64s' is not supported (expected \"pi0\")",
                            type->valuestring);
        if ((st = parse_lerobot(root, d, err))) return st;
    } else if (cJSON_GetObjectItemCaseSensitive(root, "vision") ||
               cJSON_GetObjectItemCaseSensitive(root, "llm") ||
               cJSON_GetObjectItemCaseSensitive(root, "expert")) {
        if ((st = parse_explicit(root, d, err))) return st;
    } else if (cJSON_GetObjectItemCaseSensitive(root, "paligemma_variant")) {
        if ((st = parse_short(root, d, err))) return st;
    } else {
        return pi0_fail(err, PI0_ERR_FORMAT,
                        "not a Pi0 config: expected openpi's form (\"paligemma_variant\", "
                        "\"action_expert_variant\"), LeRobot's (\"type\": \"pi0\") or the explicit "
                        "form (\"vision\", \"llm\", \"expert\")");
    }
    if (!cJSON_IsString(type) &&
        ((st = get_int(root, "action_dim", "", &d->action_dim, false, err)) ||
         (st = get_int(root, "action_horizon", "", &d->action_horizon, false, err)) ||
         (st = get_int(root, "max_token_len", "", &d->max_token_len, false, err)) ||
         (st = get_int(root, "image_size", "", &d->image_size, false, err)) ||
         (st = get_int(root, "patch_size", "", &d->patch_size, false, err))))
        return st;
    return pi0_dims_check(d, err);
}

pi0_status pi0_dims_parse(pi0_dims *out, const char *json, size_t len, pi0_error *err) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t pos = at && at >= json && at <= json + len ? (size_t)(at - json) : 0;
        return pi0_fail(err, PI0_ERR_FORMAT, "not valid JSON (error near byte %zu)", pos);
    }
    pi0_dims d;
    pi0_status st = parse_root(root, &d, err);
    cJSON_Delete(root);
    if (st == PI0_OK) *out = d;
    return st;
}

pi0_status pi0_dims_load(pi0_dims *out, const char *config_path, pi0_error *err) {
    struct stat sb;
    if (stat(config_path, &sb) != 0 && errno == ENOENT)
        return pi0_fail(err, PI0_ERR_IO,
                        "missing %s: pi0 needs the model's config.json next to model.safetensors "
                        "(openpi's converter examples/convert_jax_model_to_pytorch.py writes it)",
                        config_path);
    char *text;
    size_t len;
    pi0_status st = pi0_read_file(config_path, &text, &len, err);
    if (st != PI0_OK) return st;
    st = pi0_dims_parse(out, text, len, err);
    free(text);
    if (st != PI0_OK) return pi0_fail_context(err, st, "%s", config_path);
    return PI0_OK;
}

char *pi0_dims_to_json(const pi0_dims *d) {
    const pi0_vision_dims *v = &d->vision;
    const pi0_gemma_dims *l = &d->llm, *e = &d->expert;
    const char *fmt =
        "{\n"
        " \"action_dim\": %d,\n"
        " \"action_horizon\": %d,\n"
        " \"max_token_len\": %d,\n"
        " \"image_size\": %d,\n"
        " \"patch_size\": %d,\n"
        " \"vision\": {\"width\": %d, \"depth\": %d, \"mlp_dim\": %d, \"num_heads\": %d, "
        "\"layer_norm_eps\": %.9g},\n"
        " \"llm\": {\"width\": %d, \"depth\": %d, \"mlp_dim\": %d, \"num_heads\": %d, "
        "\"num_kv_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, \"rms_norm_eps\": %.9g},\n"
        " \"expert\": {\"width\": %d, \"depth\": %d, \"mlp_dim\": %d, \"num_heads\": %d, "
        "\"num_kv_heads\": %d, \"head_dim\": %d, \"rms_norm_eps\": %.9g},\n"
        " \"pi05\": false\n"
        "}\n";
#define ARGS                                                                                     \
    d->action_dim, d->action_horizon, d->max_token_len, d->image_size, d->patch_size, v->width,   \
        v->depth, v->mlp_dim, v->num_heads, (double)v->eps, l->width, l->depth, l->mlp_dim,       \
        l->num_heads, l->num_kv_heads, l->head_dim, l->vocab_size, (double)l->eps, e->width,      \
        e->depth, e->mlp_dim, e->num_heads, e->num_kv_heads, e->head_dim, (double)e->eps
    int n = snprintf(NULL, 0, fmt, ARGS);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (s) snprintf(s, (size_t)n + 1, fmt, ARGS);
#undef ARGS
    return s;
}

/* ---- parameter counts (PI0_SPEC 1.5) ----------------------------------------------------- */

static int64_t gemma_layer_params(const pi0_gemma_dims *g) {
    int64_t W = g->width, F = g->mlp_dim, qd = (int64_t)g->num_heads * g->head_dim,
            kvd = (int64_t)g->num_kv_heads * g->head_dim;
    return qd * W + 2 * kvd * W + W * qd + 3 * F * W + 2 * W;
}

pi0_param_counts pi0_dims_param_counts(const pi0_dims *d) {
    pi0_param_counts c = { 0 };
    const pi0_vision_dims *v = &d->vision;
    int64_t Dv = v->width, Fv = v->mlp_dim, p = d->patch_size, g = d->image_size / d->patch_size;
    int64_t vit_layer = 4 * Dv + 4 * (Dv * Dv + Dv) + (Fv * Dv + Fv) + (Dv * Fv + Dv);
    int64_t D = d->llm.width, De = d->expert.width, Da = d->action_dim;
    c.vision = (Dv * 3 * p * p + Dv) + g * g * Dv + v->depth * vit_layer + 2 * Dv + (D * Dv + D);
    c.llm_embed = (int64_t)d->llm.vocab_size * D;
    c.llm = c.llm_embed + d->llm.depth * gemma_layer_params(&d->llm) + D;
    c.expert = d->expert.depth * gemma_layer_params(&d->expert) + De;
    c.projections = 2 * (De * Da + De) + (De * 2 * De + De) + (De * De + De) + (Da * De + Da);
    c.total = c.vision + c.llm + c.expert + c.projections;
    /* vision: patch w, b, position, 16 per layer, post-norm w, b, projector w, b;
     * each Gemma: 9 per layer and a final norm (+ the LLM's embedding); 10 projections. */
    c.n_tensors = 7 + 16 * v->depth + (1 + 9 * d->llm.depth + 1) + (9 * d->expert.depth + 1) + 10;
    return c;
}
