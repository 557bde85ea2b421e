/* test_loader.c - the checkpoint loader against broken and variant files: one row per way a
 * file breaks (each expecting its own message) and per accepted variant (F32, BF16, LeRobot's
 * "model." prefix, the embed_tokens alias, ...). Every file is derived from the tiny golden
 * model (tests/data/model_tiny_h10) in a temporary directory.
 *   test_loader            run every row
 *   test_loader --list     list the rows
 *   test_loader NAME       run one row */
#define _GNU_SOURCE /* mkdtemp */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "safetensors.h"
#include "weights.h"
#include "test_util.h"

#define GOLDEN_DIR "tests/data/model_tiny_h10"
#define V_ "paligemma_with_expert.paligemma.model.vision_tower.vision_model."
#define L_ "paligemma_with_expert.paligemma.model.language_model."
#define EMBED "paligemma_with_expert.paligemma.lm_head.weight"

static char tmp_root[256];
static int n_dirs;

/* ---- the golden file, split into header JSON and data section ----------------------------- */

static uint8_t *golden;          /* whole model.safetensors */
static size_t golden_len;
static char *golden_config;      /* config.json text */
static size_t golden_header_len;

static void die(const char *what) {
    fprintf(stderr, "test_loader: %s\n", what);
    exit(2);
}

static void load_golden(void) {
    pi0_error err;
    char *text;
    size_t len;
    if (pi0_read_file(GOLDEN_DIR "/model.safetensors", &text, &len, &err) != PI0_OK) die(err.msg);
    golden = (uint8_t *)text;
    golden_len = len;
    if (pi0_read_file(GOLDEN_DIR "/config.json", &golden_config, &len, &err) != PI0_OK) die(err.msg);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = h << 8 | golden[i];
    golden_header_len = (size_t)h;
}

static cJSON *golden_header(void) {
    cJSON *j = cJSON_ParseWithLength((const char *)golden + 8, golden_header_len);
    if (!j) die("cannot parse the golden header");
    return j;
}

/* A new empty directory under the temporary root. */
static const char *new_dir(void) {
    static char path[512];
    snprintf(path, sizeof path, "%s/m%d", tmp_root, n_dirs++);
    if (mkdir(path, 0700) != 0) die("mkdir");
    return path;
}

static void write_bytes(const char *dir, const char *name, const void *data, size_t len) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) die("write");
}

/* A model dir whose model.safetensors is header (as JSON text) + the golden data section. */
static const char *dir_with_header_text(const char *json) {
    const char *dir = new_dir();
    size_t n = strlen(json), data_len = golden_len - 8 - golden_header_len;
    uint8_t *buf = malloc(8 + n + data_len);
    if (!buf) die("oom");
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    memcpy(buf + 8 + n, golden + 8 + golden_header_len, data_len);
    write_bytes(dir, "model.safetensors", buf, 8 + n + data_len);
    write_bytes(dir, "config.json", golden_config, strlen(golden_config));
    free(buf);
    return dir;
}

static const char *dir_with_header(cJSON *h) {
    char *json = cJSON_PrintUnformatted(h);
    const char *dir = dir_with_header_text(json);
    free(json);
    cJSON_Delete(h);
    return dir;
}

static const char *dir_with_bytes(const void *data, size_t len) {
    const char *dir = new_dir();
    write_bytes(dir, "model.safetensors", data, len);
    write_bytes(dir, "config.json", golden_config, strlen(golden_config));
    return dir;
}

/* ---- loading, as pi0_model_open does it before the backend ------------------------------- */

typedef struct {
    pi0_status st;
    pi0_error err;
    pi0_dims dims;
    pi0_safetensors *f;
    pi0_weights w;
} loaded;

static void load_dir(loaded *l, const char *dir) {
    char config[600], weights[600];
    snprintf(config, sizeof config, "%s/config.json", dir);
    snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
    memset(l, 0, sizeof *l);
    l->st = pi0_dims_load(&l->dims, config, &l->err);
    if (l->st == PI0_OK) l->st = pi0_safetensors_open(&l->f, weights, &l->err);
    if (l->st == PI0_OK) l->st = pi0_weights_bind(&l->w, &l->dims, l->f, &l->err);
}

static void unload(loaded *l) {
    pi0_weights_free(&l->w);
    pi0_safetensors_close(l->f);
    memset(l, 0, sizeof *l);
}

static bool check_fails(const char *dir, pi0_status want, const char *text) {
    loaded l;
    load_dir(&l, dir);
    int ok = l.st == want && strstr(l.err.msg, text) != NULL;
    if (!ok)
        printf("    expected %s with \"%s\", got %s: \"%s\"\n", pi0_status_name(want), text,
               pi0_status_name(l.st), l.st ? l.err.msg : "");
    else
        printf("    %s\n", l.err.msg);
    unload(&l);
    return ok;
}

/* The bound weights equal the golden ones, value for value (after rounding to bf16 if the
 * file is bf16). */
static bool check_loads(const char *dir, pi0_dtype want_dtype) {
    loaded got, ref;
    load_dir(&got, dir);
    load_dir(&ref, GOLDEN_DIR);
    int ok = got.st == PI0_OK && ref.st == PI0_OK;
    if (!ok) {
        printf("    load failed: %s\n", got.st ? got.err.msg : ref.err.msg);
    } else {
        /* Compare a few tensors of each kind in full. */
        const pi0_tensor *pairs[][2] = {
            { &got.w.patch_w, &ref.w.patch_w }, { &got.w.embed, &ref.w.embed },
            { &got.w.llm[2].q, &ref.w.llm[2].q }, { &got.w.expert[1].down, &ref.w.expert[1].down },
            { &got.w.time_in_w, &ref.w.time_in_w }, { &got.w.action_out_b, &ref.w.action_out_b },
            { &got.w.vit[1].fc2_w, &ref.w.vit[1].fc2_w },
        };
        for (size_t i = 0; ok && i < sizeof pairs / sizeof pairs[0]; i++) {
            const pi0_tensor *a = pairs[i][0], *b = pairs[i][1];
            if (a->dtype != want_dtype || a->n_elems != b->n_elems) {
                printf("    %s: dtype %s, %zu elements\n", a->name, pi0_dtype_name(a->dtype), a->n_elems);
                ok = 0;
                break;
            }
            float *x = malloc(a->n_elems * 4), *y = malloc(b->n_elems * 4);
            pi0_tensor_to_f32(a, x);
            pi0_tensor_to_f32(b, y);
            for (size_t k = 0; k < a->n_elems; k++) {
                float want = want_dtype == PI0_DT_BF16 ? pi0_round_bf16(y[k]) : y[k];
                if (x[k] != want) {
                    printf("    %s[%zu] is %g, expected %g\n", a->name, k, x[k], want);
                    ok = 0;
                    break;
                }
            }
            /* Row access (the embedding gather) agrees with the full conversion. */
            if (ok && a->ndim == 2 && a->shape[0] > 3) {
                size_t row = a->n_elems / (size_t)a->shape[0];
                pi0_tensor_rows_to_f32(a, 2, 2, y);
                if (memcmp(y, x + 2 * row, 2 * row * 4)) {
                    printf("    %s: rows 2..3 differ from the full conversion\n", a->name);
                    ok = 0;
                }
            }
            free(x);
            free(y);
        }
    }
    unload(&got);
    unload(&ref);
    return ok;
}

/* ---- header edits -------------------------------------------------------------------------- */

static cJSON *entry(cJSON *h, const char *name) {
    cJSON *e = cJSON_GetObjectItemCaseSensitive(h, name);
    if (!e) die(name);
    return e;
}

static void set_offsets(cJSON *e, double begin, double end) {
    cJSON *off = cJSON_CreateArray();
    cJSON_AddItemToArray(off, cJSON_CreateNumber(begin));
    cJSON_AddItemToArray(off, cJSON_CreateNumber(end));
    cJSON_ReplaceItemInObjectCaseSensitive(e, "data_offsets", off);
}

static double offset_of(cJSON *e, int which) {
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "data_offsets"), which)->valuedouble;
}

static void set_shape(cJSON *e, int ndim, const double *dims) {
    cJSON *s = cJSON_CreateArray();
    for (int i = 0; i < ndim; i++) cJSON_AddItemToArray(s, cJSON_CreateNumber(dims[i]));
    cJSON_ReplaceItemInObjectCaseSensitive(e, "shape", s);
}

/* Renames every tensor through fn (which returns a malloc'd new name, or NULL to keep it). */
static cJSON *rename_all(cJSON *h, char *(*fn)(const char *name)) {
    cJSON *out = cJSON_CreateObject();
    for (cJSON *e = h->child; e; e = e->next) {
        char *nn = strcmp(e->string, "__metadata__") ? fn(e->string) : NULL;
        cJSON_AddItemToObject(out, nn ? nn : e->string, cJSON_Duplicate(e, 1));
        free(nn);
    }
    cJSON_Delete(h);
    return out;
}

static char *add_model_prefix(const char *name) {
    char *s = malloc(strlen(name) + 8);
    sprintf(s, "model.%s", name);
    return s;
}

static char *replace_prefix(const char *name, const char *from, const char *to) {
    size_t n = strlen(from);
    if (strncmp(name, from, n)) return NULL;
    char *s = malloc(strlen(to) + strlen(name + n) + 1);
    sprintf(s, "%s%s", to, name + n);
    return s;
}

/* Older LeRobot module tree (PI0_SPEC 4.6). */
static char *older_lerobot(const char *name) {
    char *s = NULL;
    if (!strcmp(name, EMBED))
        s = strdup("paligemma_with_expert.paligemma.language_model.model.embed_tokens.weight");
    if (!s) s = replace_prefix(name, L_, "paligemma_with_expert.paligemma.language_model.model.");
    if (!s) s = replace_prefix(name, "paligemma_with_expert.paligemma.model.", "paligemma_with_expert.paligemma.");
    char *full = add_model_prefix(s ? s : name);
    free(s);
    return full;
}

static char *time_mlp_alias(const char *name) {
    return replace_prefix(name, "action_time_mlp_", "time_mlp_");
}

/* ---- rows ---------------------------------------------------------------------------------- */

static bool row_truncated_length(void) {
    return check_fails(dir_with_bytes(golden, 5), PI0_ERR_IO, "shorter than the 8-byte header length");
}

static bool row_truncated_header(void) {
    return check_fails(dir_with_bytes(golden, 8 + golden_header_len / 2), PI0_ERR_IO,
                       "past the end of the file");
}

static bool row_truncated_data(void) {
    return check_fails(dir_with_bytes(golden, golden_len - 100), PI0_ERR_FORMAT,
                       "past the end of the data");
}

static bool row_empty_file(void) {
    return check_fails(dir_with_bytes(golden, 0), PI0_ERR_IO, "truncated: 0 bytes");
}

static bool row_absurd_header_length(void) {
    uint8_t *b = malloc(golden_len);
    memcpy(b, golden, golden_len);
    b[5] = 0x01; /* 2^40 bytes */
    int ok = check_fails(dir_with_bytes(b, golden_len), PI0_ERR_FORMAT, "is absurd");
    free(b);
    return ok;
}

static bool row_garbage_json(void) {
    return check_fails(dir_with_header_text("{\"a\": [1, 2,, }   "), PI0_ERR_FORMAT,
                       "header is not valid JSON");
}

static bool row_header_not_object(void) {
    return check_fails(dir_with_header_text("[1, 2, 3]"), PI0_ERR_FORMAT, "header is not a JSON object");
}

static bool row_trailing_junk(void) {
    return check_fails(dir_with_header_text("{}  x"), PI0_ERR_FORMAT, "bytes after its JSON object");
}

static bool row_offsets_past_end(void) {
    cJSON *h = golden_header();
    size_t data_len = golden_len - 8 - golden_header_len;
    cJSON *e = entry(h, "state_proj.bias");
    double begin = (double)data_len - 64 * 4 + 8;
    set_offsets(e, begin, begin + 64 * 4);
    char want[160];
    snprintf(want, sizeof want, "tensor 'state_proj.bias': data_offsets [%.0f, %.0f] past the end "
             "of the data (%zu bytes)", begin, begin + 64 * 4, data_len);
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT, want);
}

static bool row_offsets_reversed(void) {
    cJSON *h = golden_header();
    set_offsets(entry(h, "state_proj.bias"), 256, 0);
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT, "[256, 0] has begin > end");
}

static bool row_offsets_not_pair(void) {
    cJSON *h = golden_header();
    cJSON *off = cJSON_CreateArray();
    cJSON_AddItemToArray(off, cJSON_CreateNumber(0));
    cJSON_ReplaceItemInObjectCaseSensitive(entry(h, "state_proj.bias"), "data_offsets", off);
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT,
                       "tensor 'state_proj.bias': data_offsets is not a list [begin, end]");
}

static bool row_overlapping(void) {
    /* action_in_proj.bias takes the bytes of state_proj.bias (both [64] F32). */
    cJSON *h = golden_header();
    cJSON *a = entry(h, "state_proj.bias"), *b = entry(h, "action_in_proj.bias");
    set_offsets(b, offset_of(a, 0) + 8, offset_of(a, 1) + 8);
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT, "overlap those of tensor");
}

static bool row_byte_length(void) {
    cJSON *h = golden_header();
    const double dims[1] = { 63 };
    set_shape(entry(h, "state_proj.bias"), 1, dims);
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT, "hold 256 bytes, but F32 [63] needs 252");
}

static bool row_negative_dim(void) {
    cJSON *h = golden_header();
    const double dims[2] = { -64, -1 };
    set_shape(entry(h, "state_proj.bias"), 2, dims);
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT, "shape entry 0 is not a non-negative integer");
}

static bool row_count_overflow(void) {
    cJSON *h = golden_header();
    const double dims[3] = { 4294967296.0, 4294967296.0, 65536 };
    set_shape(entry(h, "state_proj.bias"), 3, dims);
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT, "element count of its shape overflows");
}

static bool row_too_many_dims(void) {
    cJSON *h = golden_header();
    const double dims[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 64 };
    set_shape(entry(h, "state_proj.bias"), 9, dims);
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT, "9 dimensions, at most 8");
}

static bool row_entry_not_object(void) {
    cJSON *h = golden_header();
    cJSON_ReplaceItemInObjectCaseSensitive(h, "state_proj.bias", cJSON_CreateNumber(3));
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT, "tensor 'state_proj.bias': header entry is not an object");
}

static bool row_unknown_dtype(void) {
    cJSON *h = golden_header();
    cJSON_ReplaceItemInObjectCaseSensitive(entry(h, "state_proj.bias"), "dtype", cJSON_CreateString("Q4_K"));
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT, "tensor 'state_proj.bias': unknown dtype 'Q4_K'");
}

static bool row_duplicate_name(void) {
    /* Two entries with the same key: JSON parsers keep both; the table must refuse. */
    cJSON *h = golden_header();
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    const char *key = "\"state_proj.bias\":";
    char *at = strstr(json, key);
    char *end = strchr(at, '}');
    size_t entry_len = (size_t)(end + 1 - at);
    char *dup = malloc(strlen(json) + entry_len + 2);
    size_t head = (size_t)(at - json);
    memcpy(dup, json, head);
    memcpy(dup + head, at, entry_len);
    dup[head + entry_len] = ',';
    strcpy(dup + head + entry_len + 1, at);
    const char *dir = dir_with_header_text(dup);
    free(dup);
    free(json);
    return check_fails(dir, PI0_ERR_FORMAT, "tensor 'state_proj.bias' appears twice");
}

static bool row_wrong_dtype_f16(void) {
    /* Same bytes read as F16: twice the elements, so the header stays consistent. */
    cJSON *h = golden_header();
    cJSON *e = entry(h, "action_out_proj.weight"); /* [32, 64] */
    cJSON_ReplaceItemInObjectCaseSensitive(e, "dtype", cJSON_CreateString("F16"));
    const double dims[2] = { 32, 128 };
    set_shape(e, 2, dims);
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT,
                       "tensor action_out_proj.weight has dtype F16, expected F32 or BF16");
}

static bool row_wrong_shape(void) {
    cJSON *h = golden_header();
    const double dims[2] = { 64, 32 };
    set_shape(entry(h, "action_out_proj.weight"), 2, dims);
    return check_fails(dir_with_header(h), PI0_ERR_SHAPE,
                       "tensor action_out_proj.weight has shape [64, 32], expected [32, 64]");
}

static bool row_missing_tensor(void) {
    cJSON *h = golden_header();
    cJSON_DeleteItemFromObjectCaseSensitive(h, L_ "layers.1.mlp.up_proj.weight");
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT,
                       "missing tensor " L_ "layers.1.mlp.up_proj.weight");
}

static bool row_missing_embedding(void) {
    cJSON *h = golden_header();
    cJSON_DeleteItemFromObjectCaseSensitive(h, EMBED);
    return check_fails(dir_with_header(h), PI0_ERR_FORMAT, "missing tensor " EMBED);
}

static bool row_missing_config(void) {
    const char *dir = new_dir();
    write_bytes(dir, "model.safetensors", golden, golden_len);
    return check_fails(dir, PI0_ERR_IO, "config.json: pi0 needs the model's config.json next to "
                                        "model.safetensors (openpi's converter "
                                        "examples/convert_jax_model_to_pytorch.py writes it)");
}

static bool row_missing_weights(void) {
    const char *dir = new_dir();
    write_bytes(dir, "config.json", golden_config, strlen(golden_config));
    return check_fails(dir, PI0_ERR_IO, "model.safetensors: No such file");
}

static bool row_pi05_config(void) {
    const char *dir = new_dir();
    const char *cfg = "{\"action_dim\": 32, \"action_horizon\": 10, \"paligemma_variant\": \"gemma_2b\","
                      " \"action_expert_variant\": \"gemma_300m\", \"pi05\": true}";
    write_bytes(dir, "config.json", cfg, strlen(cfg));
    write_bytes(dir, "model.safetensors", golden, golden_len);
    return check_fails(dir, PI0_ERR_UNSUPPORTED, "Pi0.5 is not supported");
}

static bool row_pi05_tensors(void) {
    /* Pi0.5's adaRMS layers: one such tensor is enough to tell. */
    cJSON *h = golden_header();
    cJSON *e = cJSON_Duplicate(entry(h, "state_proj.bias"), 1);
    cJSON_AddItemToObject(h, "paligemma_with_expert.gemma_expert.model.layers.0.input_layernorm.dense.bias", e);
    /* Shares bytes with state_proj.bias: make it empty so only the name matters. */
    set_offsets(e, 0, 0);
    const double dims[1] = { 0 };
    set_shape(e, 1, dims);
    return check_fails(dir_with_header(h), PI0_ERR_UNSUPPORTED, "is Pi0.5 (it has tensor");
}

static bool row_accept_f32(void) { return check_loads(GOLDEN_DIR, PI0_DT_F32); }

/* The golden model rewritten through our writer in bf16 (every tensor). */
static bool row_accept_bf16(void) {
    pi0_safetensors *f;
    pi0_error err;
    if (pi0_safetensors_parse(&f, golden, golden_len, &err) != PI0_OK) die(err.msg);
    int n = pi0_safetensors_count(f);
    pi0_st_write_entry *entries = calloc((size_t)n, sizeof *entries);
    uint16_t **bufs = calloc((size_t)n, sizeof *bufs);
    for (int i = 0; i < n; i++) {
        const pi0_st_tensor *t = pi0_safetensors_at(f, i);
        bufs[i] = malloc(t->n_elems * 2 + 2);
        for (size_t k = 0; k < t->n_elems; k++) {
            float v;
            memcpy(&v, (const uint8_t *)t->data + 4 * k, 4);
            bufs[i][k] = pi0_f32_to_bf16(v);
        }
        entries[i] = (pi0_st_write_entry){ .name = t->name, .dtype = PI0_DT_BF16, .ndim = t->ndim,
                                           .data = bufs[i] };
        memcpy(entries[i].shape, t->shape, sizeof t->shape);
    }
    const char *dir = new_dir();
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (pi0_safetensors_write(path, entries, n, &err) != PI0_OK) die(err.msg);
    write_bytes(dir, "config.json", golden_config, strlen(golden_config));
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(entries);
    pi0_safetensors_close(f);
    return check_loads(dir, PI0_DT_BF16);
}

static bool row_accept_model_prefix(void) {
    return check_loads(dir_with_header(rename_all(golden_header(), add_model_prefix)), PI0_DT_F32);
}

static char *embed_alias(const char *name) {
    return strcmp(name, EMBED) ? NULL : strdup(L_ "embed_tokens.weight");
}

static bool row_accept_embed_tokens(void) {
    return check_loads(dir_with_header(rename_all(golden_header(), embed_alias)), PI0_DT_F32);
}

static bool row_accept_time_mlp_alias(void) {
    return check_loads(dir_with_header(rename_all(golden_header(), time_mlp_alias)), PI0_DT_F32);
}

static bool row_accept_older_lerobot(void) {
    return check_loads(dir_with_header(rename_all(golden_header(), older_lerobot)), PI0_DT_F32);
}

static bool row_ignore_unknown(void) {
    cJSON *h = golden_header();
    cJSON *e = cJSON_Duplicate(entry(h, "state_proj.bias"), 1);
    set_offsets(e, 0, 0);
    const double dims[2] = { 0, 7 };
    set_shape(e, 2, dims);
    cJSON_AddItemToObject(h, "some.other.tool.tensor", e);
    return check_loads(dir_with_header(h), PI0_DT_F32);
}

/* The writer's files read back: names, shapes, dtypes, bytes, 8-byte aligned data section. */
static bool row_writer_round_trip(void) {
    static const float a[6] = { 1, -2, 3.5f, 0, 1e-20f, 7 };
    static const int32_t b[2] = { -1, 123456 };
    pi0_st_write_entry e[3] = {
        { .name = "a \"quoted\"\\name", .dtype = PI0_DT_F32, .ndim = 2, .shape = { 2, 3 }, .data = a },
        { .name = "b", .dtype = PI0_DT_I32, .ndim = 1, .shape = { 2 }, .data = b },
        { .name = "empty", .dtype = PI0_DT_U8, .ndim = 2, .shape = { 0, 5 }, .data = a },
    };
    char path[600];
    snprintf(path, sizeof path, "%s/w.safetensors", new_dir());
    pi0_error err;
    pi0_safetensors *f;
    if (pi0_safetensors_write(path, e, 3, &err) != PI0_OK || pi0_safetensors_open(&f, path, &err) != PI0_OK) {
        printf("    %s\n", err.msg);
        return 0;
    }
    const pi0_st_tensor *ta = pi0_safetensors_find(f, e[0].name), *tb = pi0_safetensors_find(f, "b"),
                        *te = pi0_safetensors_find(f, "empty");
    int ok = ta && tb && te && pi0_safetensors_count(f) == 3 && ta->dtype == PI0_DT_F32 &&
             ta->ndim == 2 && ta->shape[1] == 3 && !memcmp(ta->data, a, sizeof a) &&
             tb->dtype == PI0_DT_I32 && !memcmp(tb->data, b, sizeof b) && te->n_elems == 0 &&
             (const uint8_t *)tb->data - (const uint8_t *)ta->data == sizeof a &&
             pi0_safetensors_metadata(f, "format") &&
             !strcmp(pi0_safetensors_metadata(f, "format"), "pt") &&
             (pi0_safetensors_file_bytes(f) - sizeof a - sizeof b) % 8 == 0;
    if (!ok) printf("    the file read back differs from what was written\n");
    pi0_safetensors_close(f);
    return ok;
}

/* Random weights: the scales of weights.h and determinism per seed. Bounds: the std of each
 * tensor of >= 1000 values within 10 % of the intended one (its standard error is <= 2.2 %), the
 * mean within 5 standard errors of the intended centre (a false alarm about once in 10^4 runs
 * over the ~130 tensors checked). */
typedef struct {
    int n_checked, n_bad;
} scale_ctx;

static pi0_status check_scale(void *ctx, pi0_tensor *slot, pi0_part part, pi0_error *err) {
    scale_ctx *c = ctx;
    if (slot->n_elems < 1000) return PI0_OK; /* too few samples for a 10 % bound */
    const char *n = slot->name;
    size_t len = strlen(n);
    bool bias = len > 5 && !strcmp(n + len - 5, ".bias");
    bool norm = len > 11 && !strcmp(n + len - 11, "norm.weight");
    bool vision_ln = strstr(n, "vision_model.") && (strstr(n, "layer_norm") || strstr(n, "post_layernorm"));
    double want_std, want_mean = 0;
    if (vision_ln) {
        want_std = 0.1;
        want_mean = bias ? 0.0 : 1.0;
    } else if (bias || norm) {
        want_std = 0.1;
    } else if (!strcmp(n, EMBED) || strstr(n, "position_embedding")) {
        want_std = 1.0 / sqrt((double)slot->shape[1]);
    } else {
        double fan_in = 1;
        for (int i = 1; i < slot->ndim; i++) fan_in *= (double)slot->shape[i];
        want_std = 1.0 / sqrt(fan_in);
    }
    float *x = malloc(slot->n_elems * sizeof *x);
    pi0_tensor_to_f32(slot, x);
    double sum = 0, sum_sq = 0;
    for (size_t i = 0; i < slot->n_elems; i++) sum += x[i];
    double mean = sum / (double)slot->n_elems;
    for (size_t i = 0; i < slot->n_elems; i++) sum_sq += (x[i] - mean) * (x[i] - mean);
    double std = sqrt(sum_sq / (double)slot->n_elems);
    free(x);
    c->n_checked++;
    if (fabs(std / want_std - 1) > 0.1 || fabs(mean - want_mean) > 5 * want_std / sqrt((double)slot->n_elems)) {
        printf("    %s: mean %.4g std %.4g, expected %.4g and %.4g\n", n, mean, std, want_mean, want_std);
        c->n_bad++;
    }
    return PI0_OK;
}

static bool row_random_weights(void) {
    const pi0_dims d = pi0_dims_tiny();
    uint64_t seed = (uint64_t)time(NULL);
    printf("    seed %llu\n", (unsigned long long)seed);
    pi0_weights a = { 0 }, b = { 0 }, c = { 0 };
    void *sa, *sb, *sc;
    pi0_error err;
    if (pi0_weights_random(&a, &d, PI0_DT_F32, seed, &sa, &err) ||
        pi0_weights_random(&b, &d, PI0_DT_F32, seed, &sb, &err) ||
        pi0_weights_random(&c, &d, PI0_DT_BF16, seed + 1, &sc, &err)) {
        printf("    %s\n", err.msg);
        return 0;
    }
    scale_ctx sc_f32 = { 0 }, sc_bf16 = { 0 };
    pi0_weights_each(&d, &a, check_scale, &sc_f32, &err);
    pi0_weights_each(&d, &c, check_scale, &sc_bf16, &err);
    size_t n = a.llm[1].gate.n_elems;
    int same = !memcmp(a.llm[1].gate.data, b.llm[1].gate.data, n * 4) &&
               !memcmp(a.embed.data, b.embed.data, a.embed.n_elems * 4);
    /* The next seed (in bf16) must differ from this one rounded to bf16. */
    int differ = 0;
    for (size_t i = 0; i < n && !differ; i++) {
        float x;
        memcpy(&x, (const float *)a.llm[1].gate.data + i, 4);
        differ = pi0_f32_to_bf16(x) != ((const uint16_t *)c.llm[1].gate.data)[i];
    }
    int ok = same && differ && sc_f32.n_bad == 0 && sc_bf16.n_bad == 0 && sc_f32.n_checked > 20 &&
             c.embed.dtype == PI0_DT_BF16;
    printf("    %d tensors checked for scale; same seed %s, next seed %s\n", sc_f32.n_checked,
           same ? "identical" : "DIFFERS", differ ? "differs" : "IDENTICAL");
    pi0_weights_free(&a);
    pi0_weights_free(&b);
    pi0_weights_free(&c);
    free(sa);
    free(sb);
    free(sc);
    return ok;
}

static const test_row rows[] = {
    { "truncated_length", row_truncated_length },
    { "truncated_header", row_truncated_header },
    { "truncated_data", row_truncated_data },
    { "empty_file", row_empty_file },
    { "absurd_header_length", row_absurd_header_length },
    { "garbage_json", row_garbage_json },
    { "header_not_object", row_header_not_object },
    { "trailing_junk", row_trailing_junk },
    { "offsets_past_end", row_offsets_past_end },
    { "offsets_reversed", row_offsets_reversed },
    { "offsets_not_pair", row_offsets_not_pair },
    { "overlapping_ranges", row_overlapping },
    { "byte_length_mismatch", row_byte_length },
    { "negative_dim", row_negative_dim },
    { "count_overflow", row_count_overflow },
    { "too_many_dims", row_too_many_dims },
    { "entry_not_object", row_entry_not_object },
    { "unknown_dtype", row_unknown_dtype },
    { "duplicate_name", row_duplicate_name },
    { "wrong_dtype_f16", row_wrong_dtype_f16 },
    { "wrong_shape", row_wrong_shape },
    { "missing_tensor", row_missing_tensor },
    { "missing_embedding", row_missing_embedding },
    { "missing_config", row_missing_config },
    { "missing_weights", row_missing_weights },
    { "pi05_config", row_pi05_config },
    { "pi05_tensors", row_pi05_tensors },
    { "accept_f32", row_accept_f32 },
    { "accept_bf16", row_accept_bf16 },
    { "accept_model_prefix", row_accept_model_prefix },
    { "accept_embed_tokens", row_accept_embed_tokens },
    { "accept_time_mlp_alias", row_accept_time_mlp_alias },
    { "accept_older_lerobot", row_accept_older_lerobot },
    { "ignore_unknown_tensors", row_ignore_unknown },
    { "writer_round_trip", row_writer_round_trip },
    { "random_weights", row_random_weights },
};
enum { N_ROWS = (int)(sizeof rows / sizeof rows[0]) };

int main(int argc, char **argv) {
    const char *only;
    if (!test_rows_args(argc, argv, rows, N_ROWS, &only, NULL)) return 0;
    if (!test_temp_dir(tmp_root, sizeof tmp_root, "pi0_test_loader_")) return 2;
    load_golden();
    int rc = test_rows_run("test_loader", rows, N_ROWS, only, true);
    test_remove_tree(tmp_root);
    free(golden);
    free(golden_config);
    return rc;
}
