/* inspect.c - `pi0 inspect`: what a checkpoint holds: dimensions, tensors, parameters per
 * component, dtypes, file size, and tensors present but unused. It binds the weights (so every
 * name, dtype and shape is checked) but starts no backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "cli.h"
#include "common.h"
#include "safetensors.h"
#include "weights.h"

typedef struct {
    int64_t by_part[5];          /* parameters per pi0_part, counted from the bound tensors */
    int n_tensors;
    int n_dtype[2];              /* F32, BF16 */
    const void **used;           /* data pointers of the bound tensors, for "unused" */
    int n_used, cap;
} count_ctx;

static pi0_status count_one(void *ctx, pi0_tensor *slot, pi0_part part, pi0_error *err) {
    count_ctx *c = ctx;
    c->by_part[part] += (int64_t)slot->n_elems;
    c->n_tensors++;
    c->n_dtype[slot->dtype == PI0_DT_BF16]++;
    if (c->n_used == c->cap) {
        int cap = c->cap ? 2 * c->cap : 1024;
        const void **g = realloc(c->used, (size_t)cap * sizeof *g);
        if (!g) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory");
        c->used = g;
        c->cap = cap;
    }
    c->used[c->n_used++] = slot->data;
    return PI0_OK;
}

static int ptr_cmp(const void *a, const void *b) {
    const char *x = *(const void *const *)a, *y = *(const void *const *)b;
    return x < y ? -1 : x > y;
}

/* "3238048528" -> "3,238,048,528" */
static const char *commas(char *buf, size_t size, int64_t v) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%lld", (long long)(v < 0 ? -v : v));
    size_t pos = 0;
    if (v < 0 && pos + 1 < size) buf[pos++] = '-';
    for (int i = 0; i < n && pos + 1 < size; i++) {
        buf[pos++] = digits[i];
        if ((n - i - 1) % 3 == 0 && i != n - 1 && pos + 1 < size) buf[pos++] = ',';
    }
    buf[pos] = '\0';
    return buf;
}

int pi0_cmd_inspect(int argc, char **argv) {
    const char *model = NULL;
    const pi0_arg args[] = {
        { "--model", PI0_ARG_STRING, &model, "DIR", "checkpoint: model.safetensors + config.json (required)" },
    };
    int prc = pi0_args_parse("inspect", "pi0 inspect --model DIR", args, PI0_N_ARGS(args), argc, argv);
    if (prc != PI0_ARGS_OK) return prc == PI0_ARGS_HELP ? 0 : 2;
    if (!model) {
        fprintf(stderr, "pi0 inspect: --model is required (see pi0 inspect --help)\n");
        return 2;
    }
    struct stat sb;
    if (stat(model, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "pi0 inspect: --model %s: no such directory\n", model);
        return 2;
    }
    size_t plen = strlen(model) + 32;
    char *config = malloc(plen), *weights = malloc(plen);
    if (!config || !weights) {
        free(config);
        free(weights);
        return 1;
    }
    snprintf(config, plen, "%s/config.json", model);
    snprintf(weights, plen, "%s/model.safetensors", model);

    int rc = 1;
    pi0_error err;
    pi0_dims d;
    pi0_safetensors *f = NULL;
    pi0_weights w = { 0 };
    count_ctx cc = { 0 };
    if (pi0_dims_load(&d, config, &err) != PI0_OK || pi0_safetensors_open(&f, weights, &err) != PI0_OK) {
        fprintf(stderr, "pi0 inspect: %s\n", err.msg);
        goto done;
    }
    if (pi0_weights_bind(&w, &d, f, &err) != PI0_OK ||
        pi0_weights_each(&d, &w, count_one, &cc, &err) != PI0_OK) {
        fprintf(stderr, "pi0 inspect: %s: %s\n", weights, err.msg);
        goto done;
    }
    qsort(cc.used, (size_t)cc.n_used, sizeof *cc.used, ptr_cmp);

    const pi0_vision_dims *v = &d.vision;
    const pi0_gemma_dims *l = &d.llm, *e = &d.expert;
    printf("model       %s\n", model);
    printf("config      action_dim %d, action_horizon %d, max_token_len %d, image %d, patch %d\n",
           d.action_dim, d.action_horizon, d.max_token_len, d.image_size, d.patch_size);
    printf("vision      width %d, depth %d, mlp %d, heads %d x %d\n", v->width, v->depth, v->mlp_dim,
           v->num_heads, v->head_dim);
    printf("llm         width %d, depth %d, mlp %d, heads %d, kv heads %d, head dim %d, vocab %d\n",
           l->width, l->depth, l->mlp_dim, l->num_heads, l->num_kv_heads, l->head_dim, l->vocab_size);
    printf("expert      width %d, depth %d, mlp %d, heads %d, kv heads %d, head dim %d\n", e->width,
           e->depth, e->mlp_dim, e->num_heads, e->num_kv_heads, e->head_dim);
    int n_file = pi0_safetensors_count(f);
    printf("tensors     %d used, %d in the file\n", cc.n_tensors, n_file);
    char b1[32], b2[32];
    int64_t vision = cc.by_part[PI0_PART_VISION], embed = cc.by_part[PI0_PART_LLM_EMBED],
            llm = embed + cc.by_part[PI0_PART_LLM], expert = cc.by_part[PI0_PART_EXPERT],
            proj = cc.by_part[PI0_PART_PROJECTIONS];
    printf("parameters\n");
    printf("  vision+projector  %15s\n", commas(b1, sizeof b1, vision));
    printf("  gemma (llm)       %15s  (token embedding %s)\n", commas(b1, sizeof b1, llm),
           commas(b2, sizeof b2, embed));
    printf("  action expert     %15s\n", commas(b1, sizeof b1, expert));
    printf("  projections       %15s\n", commas(b1, sizeof b1, proj));
    printf("  total             %15s\n", commas(b1, sizeof b1, vision + llm + expert + proj));
    printf("dtypes      ");
    if (cc.n_dtype[0]) printf("F32 (%d tensors)%s", cc.n_dtype[0], cc.n_dtype[1] ? ", " : "");
    if (cc.n_dtype[1]) printf("BF16 (%d tensors)", cc.n_dtype[1]);
    printf("\nfile        %s, %s bytes\n", weights,
           commas(b1, sizeof b1, (int64_t)pi0_safetensors_file_bytes(f)));
    int n_unused = 0;
    for (int i = 0; i < n_file; i++) {
        const pi0_st_tensor *t = pi0_safetensors_at(f, i);
        if (t->n_bytes && bsearch(&t->data, cc.used, (size_t)cc.n_used, sizeof *cc.used, ptr_cmp))
            continue;
        char shape[96];
        printf("%s %s %s %s (%s parameters)\n", n_unused++ ? "           " : "unused     ", t->name,
               pi0_dtype_name(t->dtype), pi0_shape_str(shape, sizeof shape, t->ndim, t->shape),
               commas(b1, sizeof b1, (int64_t)t->n_elems));
    }
    rc = 0;
done:
    free(cc.used);
    pi0_weights_free(&w);
    pi0_safetensors_close(f);
    free(config);
    free(weights);
    return rc;
}
