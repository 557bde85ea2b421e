/* norm_stats.c - the checkpoint's norm_stats.json (SERVING_SPEC 3.8): state and action means
 * and standard deviations for z-score normalization, kept in double like openpi's numpy arrays
 * and padded to the model's action dim (mean 0, std 1) as openpi's unnormalize pads them.
 * Not here: quantile statistics (Pi0.5, Pi0-FAST), which Pi0 presets never use. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "policy/policy_internal.h"

/* One vector of numbers into dst[0, dim), padded with pad; returns its length in *n. */
static pi0_status read_vector(const cJSON *group, const char *group_name, const char *name, double *dst,
                              int dim, double pad, int *n, const char *where, pi0_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(group, name);
    if (!cJSON_IsArray(v))
        return pi0_fail(err, PI0_ERR_FORMAT, "%s: norm_stats.%s.%s %s, expected a list of numbers", where,
                        group_name, name, v ? "is not a list" : "is missing");
    int len = cJSON_GetArraySize(v);
    if (len < 1 || len > dim)
        return pi0_fail(err, PI0_ERR_SHAPE, "%s: norm_stats.%s.%s has %d entries, expected 1 to %d", where,
                        group_name, name, len, dim);
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        if (!cJSON_IsNumber(item))
            return pi0_fail(err, PI0_ERR_FORMAT, "%s: norm_stats.%s.%s[%d] is not a number", where, group_name,
                            name, i);
        dst[i++] = item->valuedouble;
    }
    for (; i < dim; i++) dst[i] = pad;
    *n = len;
    return PI0_OK;
}

static pi0_status read_group(const cJSON *stats, const char *group_name, double *mean, double *std, int dim,
                             int *n, const char *where, pi0_error *err) {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(stats, group_name);
    if (!cJSON_IsObject(g))
        return pi0_fail(err, PI0_ERR_FORMAT, "%s: norm_stats.%s %s, expected {\"mean\": [...], \"std\": [...]}",
                        where, group_name, g ? "is not an object" : "is missing");
    int n_mean, n_std;
    pi0_status st = read_vector(g, group_name, "mean", mean, dim, 0.0, &n_mean, where, err);
    if (!st) st = read_vector(g, group_name, "std", std, dim, 1.0, &n_std, where, err);
    if (st) return st;
    for (int i = 0; i < n_std; i++)
        if (std[i] < 0)
            return pi0_fail(err, PI0_ERR_INPUT, "%s: norm_stats.%s.std[%d] is negative (%g)", where, group_name,
                            i, std[i]);
    *n = n_mean < n_std ? n_mean : n_std;
    return PI0_OK;
}

pi0_status pi0_norm_stats_parse(pi0_norm_stats *ns, const char *json, size_t len, int dim, const char *where,
                                pi0_error *err) {
    memset(ns, 0, sizeof *ns);
    if (dim < 1) return pi0_fail(err, PI0_ERR_INPUT, "%s: action dim %d, expected >= 1", where, dim);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return pi0_fail(err, PI0_ERR_FORMAT, "%s: not valid JSON", where);
    pi0_status st = PI0_OK;
    double *buf = malloc(4 * (size_t)dim * sizeof *buf);
    if (!buf) {
        st = pi0_fail(err, PI0_ERR_NOMEM, "%s: out of memory", where);
        goto done;
    }
    ns->dim = dim;
    ns->state_mean = buf, ns->state_std = buf + dim;
    ns->actions_mean = buf + 2 * dim, ns->actions_std = buf + 3 * dim;
    const cJSON *stats = cJSON_GetObjectItemCaseSensitive(root, "norm_stats");
    if (!cJSON_IsObject(stats)) {
        st = pi0_fail(err, PI0_ERR_FORMAT, "%s: no \"norm_stats\" object at the top level", where);
        goto done;
    }
    st = read_group(stats, "state", ns->state_mean, ns->state_std, dim, &ns->n_state, where, err);
    if (!st) st = read_group(stats, "actions", ns->actions_mean, ns->actions_std, dim, &ns->n_actions, where, err);
done:
    cJSON_Delete(root);
    if (st) pi0_norm_stats_free(ns);
    return st;
}

pi0_status pi0_norm_stats_load(pi0_norm_stats *ns, const char *path, int dim, pi0_error *err) {
    memset(ns, 0, sizeof *ns);
    char *text;
    size_t len;
    pi0_status st = pi0_read_file(path, &text, &len, err);
    if (st) return st;
    st = pi0_norm_stats_parse(ns, text, len, dim, path, err);
    free(text);
    return st;
}

void pi0_norm_stats_free(pi0_norm_stats *ns) {
    if (!ns) return;
    free(ns->state_mean);   /* the one allocation holding all four vectors */
    memset(ns, 0, sizeof *ns);
}
