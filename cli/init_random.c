/* init_random.c - `pi0 init-random`: write a checkpoint of random weights (model.safetensors +
 * config.json in the explicit form) for benchmarks and tests. The weights are drawn once, in
 * memory, and streamed to the file from there: no second copy of a 6.5 GB model. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "common.h"
#include "safetensors.h"
#include "weights.h"

typedef struct {
    pi0_st_write_entry *entries;
    int n, cap;
} entry_list;

static pi0_status add_entry(void *ctx, pi0_tensor *slot, pi0_part part, pi0_error *err) {
    entry_list *l = ctx;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 1024;
        pi0_st_write_entry *g = realloc(l->entries, (size_t)cap * sizeof *g);
        if (!g) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory");
        l->entries = g;
        l->cap = cap;
    }
    pi0_st_write_entry *e = &l->entries[l->n++];
    *e = (pi0_st_write_entry){ .name = slot->name, .dtype = slot->dtype, .ndim = slot->ndim,
                               .data = slot->data };
    for (int i = 0; i < slot->ndim; i++) e->shape[i] = slot->shape[i];
    return PI0_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int write_text(const char *path, const char *text) {
    size_t tmp_len = strlen(path) + 8;
    char *tmp = malloc(tmp_len);
    if (!tmp) return 1;
    snprintf(tmp, tmp_len, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = !f || fputs(text, f) == EOF;
    if (f && fclose(f) != 0) rc = 1;
    if (!rc && rename(tmp, path) != 0) rc = 1;
    if (rc) {
        fprintf(stderr, "pi0 init-random: cannot write %s: %s\n", path, strerror(errno));
        remove(tmp);
    }
    free(tmp);
    return rc;
}

int pi0_cmd_init_random(int argc, char **argv) {
    const char *out = NULL, *dims_arg = "full", *dtype_arg = NULL;
    uint64_t seed = 0;
    int horizon = 0;
    const pi0_arg args[] = {
        { "--out", PI0_ARG_STRING, &out, "DIR", "directory to write (created if missing; required)" },
        { "--dims", PI0_ARG_STRING, &dims_arg, "full|tiny|CONFIG.json",
          "model dimensions (default full: 3.24 B parameters)" },
        { "--seed", PI0_ARG_U64, &seed, "N", "random seed (default 0)" },
        { "--dtype", PI0_ARG_STRING, &dtype_arg, "bf16|f32", "weight dtype (default bf16 for full, f32 for tiny)" },
        { "--horizon", PI0_ARG_INT, &horizon, "A", "action horizon written to config.json" },
    };
    int prc = pi0_args_parse("init-random", "pi0 init-random --out DIR [flags]", args,
                             PI0_N_ARGS(args), argc, argv);
    if (prc != PI0_ARGS_OK) return prc == PI0_ARGS_HELP ? 0 : 2;
    if (!out) {
        fprintf(stderr, "pi0 init-random: --out is required (see pi0 init-random --help)\n");
        return 2;
    }

    pi0_error err;
    pi0_dims d;
    if (!strcmp(dims_arg, "full")) {
        d = pi0_dims_full();
    } else if (!strcmp(dims_arg, "tiny")) {
        d = pi0_dims_tiny();
    } else {
        struct stat sb;
        if (stat(dims_arg, &sb) != 0) {
            fprintf(stderr, "pi0 init-random: --dims %s: not full, tiny or an existing config file\n",
                    dims_arg);
            return 2;
        }
        if (pi0_dims_load(&d, dims_arg, &err) != PI0_OK) {
            fprintf(stderr, "pi0 init-random: %s\n", err.msg);
            return 1;
        }
    }
    if (horizon) d.action_horizon = horizon;
    if (pi0_dims_check(&d, &err) != PI0_OK) {
        fprintf(stderr, "pi0 init-random: %s\n", err.msg);
        return 2;
    }
    pi0_param_counts pc = pi0_dims_param_counts(&d);
    /* Same rule as pi0_model_open's random weights, so a seed gives the same model both ways:
     * real checkpoints are bf16; the small test models stay f32. */
    pi0_dtype dtype = pc.total > 100 * 1000 * 1000 ? PI0_DT_BF16 : PI0_DT_F32;
    if (dtype_arg) {
        if (!strcmp(dtype_arg, "bf16")) dtype = PI0_DT_BF16;
        else if (!strcmp(dtype_arg, "f32")) dtype = PI0_DT_F32;
        else {
            fprintf(stderr, "pi0 init-random: --dtype is '%s', expected bf16 or f32\n", dtype_arg);
            return 2;
        }
    }
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "pi0 init-random: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }

    double t0 = now_s();
    pi0_weights w = { 0 };
    void *storage = NULL;
    entry_list list = { 0 };
    int rc = 1;
    char *json = NULL, *path = NULL;
    if (pi0_weights_random(&w, &d, dtype, seed, &storage, &err) != PI0_OK) {
        fprintf(stderr, "pi0 init-random: %s\n", err.msg);
        goto done;
    }
    double t_draw = now_s() - t0;
    if (pi0_weights_each(&d, &w, add_entry, &list, &err) != PI0_OK) {
        fprintf(stderr, "pi0 init-random: %s\n", err.msg);
        goto done;
    }
    path = malloc(strlen(out) + 32);
    json = pi0_dims_to_json(&d);
    if (!path || !json) {
        fprintf(stderr, "pi0 init-random: out of memory\n");
        goto done;
    }
    sprintf(path, "%s/model.safetensors", out);
    if (pi0_safetensors_write(path, list.entries, list.n, &err) != PI0_OK) {
        fprintf(stderr, "pi0 init-random: %s\n", err.msg);
        goto done;
    }
    sprintf(path, "%s/config.json", out);
    if (write_text(path, json)) goto done;
    printf("wrote %s: %d tensors, %lld parameters, %s, seed %llu (drawn in %.1f s, total %.1f s)\n",
           out, list.n, (long long)pc.total, pi0_dtype_name(dtype), (unsigned long long)seed, t_draw,
           now_s() - t0);
    rc = 0;
done:
    free(json);
    free(path);
    free(list.entries);
    pi0_weights_free(&w);
    free(storage);
    return rc;
}
