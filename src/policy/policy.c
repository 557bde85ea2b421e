/* policy.c - openpi's Policy.infer around the model (SERVING_SPEC 3.1, 3.10, 4.1): a msgpack
 * request through the robot preset's input chain into one model row, and the model's actions
 * through the output chain into the reply map. The steps follow the spec's order; the per-key
 * work lives in transforms.c, the robots in presets.c. Not here: the model, the socket. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "policy/policy_internal.h"

/* numpy's epsilon in both directions of the z-score (openpi transforms.Normalize). */
#define NORM_EPS 1e-6

struct pi0_policy {
    const pi0_preset *preset;
    const pi0_tokenizer *tokenizer;   /* borrowed */
    char *default_prompt;             /* owned; NULL: the preset's (if any) */
    int action_horizon, action_dim, max_token_len, image_size;
    pi0_norm_stats stats;
    uint8_t *metadata;                /* msgpack bytes sent after the handshake */
    size_t metadata_len;
};

static pi0_status build_metadata(pi0_policy *p, pi0_error *err) {
    pi0_msg_writer wr;
    pi0_msg_writer_init(&wr);
    msgpack_packer *pk = &wr.pk;
    if (p->preset->reset_pose) {
        /* openpi's policy_metadata for the real ALOHA configs: ints stay ints (SERVING_SPEC 1.4). */
        msgpack_pack_map(pk, 1);
        pi0_msg_pack_str(pk, "reset_pose");
        msgpack_pack_array(pk, 6);
        msgpack_pack_int(pk, 0);
        msgpack_pack_double(pk, -1.5);
        msgpack_pack_double(pk, 1.5);
        for (int i = 0; i < 3; i++) msgpack_pack_int(pk, 0);
    } else {
        msgpack_pack_map(pk, 0);
    }
    return pi0_msg_writer_finish(&wr, &p->metadata, &p->metadata_len, err);
}

static pi0_status load_stats(pi0_policy *p, const pi0_policy_options *opt, pi0_error *err) {
    const pi0_preset *pr = p->preset;
    char path[4096];
    if (opt->norm_stats_path) {
        snprintf(path, sizeof path, "%s", opt->norm_stats_path);
    } else {
        if (!opt->model_dir)
            return pi0_fail(err, PI0_ERR_INPUT, "norm stats: no norm_stats.json path and no model directory given");
        snprintf(path, sizeof path, "%s/assets/%s/norm_stats.json", opt->model_dir, pr->asset_id);
        FILE *f = fopen(path, "rb");
        if (!f)
            return pi0_fail(err, PI0_ERR_IO,
                            "norm stats not found: expected %s (openpi checkpoints carry it under "
                            "assets/%s/; the PyTorch converter often leaves it out: copy it from the JAX "
                            "checkpoint's assets folder, or give its path with --norm-stats)",
                            path, pr->asset_id);
        fclose(f);
    }
    pi0_status st = pi0_norm_stats_load(&p->stats, path, p->action_dim, err);
    if (st) return st;
    if (p->stats.n_state < pr->state_dim)
        return pi0_fail(err, PI0_ERR_SHAPE, "%s: state statistics have %d entries, the %s state has %d", path,
                        p->stats.n_state, pr->robot_name, pr->state_dim);
    return PI0_OK;
}

pi0_status pi0_policy_open(pi0_policy **out, const pi0_policy_options *opt, pi0_error *err) {
    *out = NULL;
    const pi0_preset *pr = pi0_preset_find(opt->preset);
    if (!pr) {
        char names[256] = "";
        for (const char *const *n = pi0_policy_preset_names(); *n; n++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", n == pi0_policy_preset_names() ? "" : ", ", *n);
        return pi0_fail(err, PI0_ERR_INPUT, "unknown policy preset '%s' (expected one of %s)",
                        opt->preset ? opt->preset : "(none)", names);
    }
    if (!opt->tokenizer) return pi0_fail(err, PI0_ERR_INPUT, "policy %s: no tokenizer given", pr->name);
    if (opt->action_dim < pr->reply_dim || opt->action_dim < pr->state_dim)
        return pi0_fail(err, PI0_ERR_SHAPE, "policy %s: model action dim %d, the %s robot needs at least %d",
                        pr->name, opt->action_dim, pr->robot_name,
                        pr->reply_dim > pr->state_dim ? pr->reply_dim : pr->state_dim);
    if (opt->action_horizon < 1 || opt->max_token_len < 2 || opt->image_size < 1 || opt->image_size > 4096)
        return pi0_fail(err, PI0_ERR_INPUT,
                        "policy %s: bad model sizes (horizon %d, tokens %d, image %d)", pr->name,
                        opt->action_horizon, opt->max_token_len, opt->image_size);
    pi0_policy *p = calloc(1, sizeof *p);
    if (!p) return pi0_fail(err, PI0_ERR_NOMEM, "policy: out of memory");
    p->preset = pr;
    p->tokenizer = opt->tokenizer;
    p->action_horizon = opt->action_horizon;
    p->action_dim = opt->action_dim;
    p->max_token_len = opt->max_token_len;
    p->image_size = opt->image_size;
    pi0_status st = PI0_OK;
    if (opt->default_prompt) {
        p->default_prompt = malloc(strlen(opt->default_prompt) + 1);
        if (!p->default_prompt) st = pi0_fail(err, PI0_ERR_NOMEM, "policy: out of memory");
        else strcpy(p->default_prompt, opt->default_prompt);
    }
    if (!st) st = load_stats(p, opt, err);
    if (!st) st = build_metadata(p, err);
    if (st) {
        pi0_policy_close(p);
        return st;
    }
    *out = p;
    return PI0_OK;
}

void pi0_policy_close(pi0_policy *p) {
    if (!p) return;
    free(p->default_prompt);
    pi0_norm_stats_free(&p->stats);
    free(p->metadata);
    free(p);
}

const uint8_t *pi0_policy_metadata(const pi0_policy *p, size_t *len) {
    *len = p->metadata_len;
    return p->metadata;
}

pi0_status pi0_policy_row_alloc(const pi0_policy *p, pi0_policy_row *row, pi0_error *err) {
    memset(row, 0, sizeof *row);
    size_t s = (size_t)p->image_size;
    row->n_cameras = 3;
    row->image_size = p->image_size;
    row->n_tokens = p->max_token_len;
    row->action_dim = p->action_dim;
    row->images = malloc(3 * s * s * 3 * sizeof *row->images);
    row->tokens = malloc((size_t)p->max_token_len * sizeof *row->tokens);
    row->token_mask = malloc((size_t)p->max_token_len);
    row->state = malloc((size_t)p->action_dim * sizeof *row->state);
    row->state_unnorm = malloc((size_t)p->action_dim * sizeof *row->state_unnorm);
    if (!row->images || !row->tokens || !row->token_mask || !row->state || !row->state_unnorm) {
        pi0_policy_row_free(row);
        return pi0_fail(err, PI0_ERR_NOMEM, "policy row: out of memory");
    }
    return PI0_OK;
}

void pi0_policy_row_free(pi0_policy_row *row) {
    if (!row) return;
    free(row->images);
    free(row->tokens);
    free(row->token_mask);
    free(row->state);
    free(row->state_unnorm);
    memset(row, 0, sizeof *row);
}

/* ---- input chain ------------------------------------------------------------------------- */

/* The robot's state, normalized (double, like openpi's numpy), then float32 and zero-padded for
 * the model; state_unnorm is that float32 state brought back, the value openpi adds to deltas. */
static pi0_status prepare_state(const pi0_policy *p, const pi0_msg_value *req, pi0_policy_row *row,
                                pi0_error *err) {
    const pi0_preset *pr = p->preset;
    double s[PI0_PRESET_MAX_STATE];
    int at = 0;
    for (int k = 0; k < pr->n_state_parts; k++) {
        const pi0_state_part *part = &pr->state_parts[k];
        const pi0_msg_value *v = pi0_msg_map_get(req, part->key);
        if (!v)
            return pi0_fail(err, PI0_ERR_INPUT, "%s: missing (%s requests need %d number%s there)", part->key,
                            pr->robot_name, part->n, part->n == 1 ? "" : "s");
        pi0_status st = pi0_read_numbers(v, part->key, part->n, s + at, err);
        if (st) return st;
        at += part->n;
    }
    if (pr->aloha_convert) pi0_aloha_state_to_pi(s);
    const pi0_norm_stats *ns = &p->stats;
    for (int i = 0; i < p->action_dim; i++) {
        double x = i < pr->state_dim ? (s[i] - ns->state_mean[i]) / (ns->state_std[i] + NORM_EPS) : 0.0;
        float f = (float)x;
        if (!isfinite(f))
            return pi0_fail(err, PI0_ERR_INPUT, "state value %d (%g) normalizes to %g, outside float range",
                            i, s[i], x);
        row->state[i] = f;
        row->state_unnorm[i] = (double)f * (ns->state_std[i] + NORM_EPS) + ns->state_mean[i];
    }
    return PI0_OK;
}

static pi0_status prepare_camera(const pi0_policy *p, const pi0_msg_value *v, const char *key, int slot,
                                 pi0_policy_row *row, pi0_error *err) {
    int s = p->image_size, h, w;
    uint8_t *hwc;
    pi0_status st = pi0_image_to_hwc(v, key, p->preset->channel_first_only, &hwc, &h, &w, err);
    if (st) return st;
    uint8_t *canvas = malloc((size_t)s * s * 3);
    if (!canvas) st = pi0_fail(err, PI0_ERR_NOMEM, "%s: out of memory", key);
    if (!st) {
        st = pi0_resize_with_pad(canvas, s, s, hwc, h, w, err);
        if (st) pi0_fail_context(err, st, "%s", key);
    }
    if (!st) {
        pi0_image_to_float(row->images + (size_t)slot * s * s * 3, canvas, (size_t)s * s * 3);
        row->image_masks[slot] = 1;
    }
    free(canvas);
    free(hwc);
    return st;
}

static pi0_status prepare_images(const pi0_policy *p, const pi0_msg_value *req, pi0_policy_row *row,
                                 pi0_error *err) {
    const pi0_preset *pr = p->preset;
    char desc[160], key[160];
    const pi0_msg_value *src = req;
    if (pr->images_map) {
        src = pi0_msg_map_get(req, pr->images_map);
        if (!src)
            return pi0_fail(err, PI0_ERR_INPUT, "%s: missing (%s requests need a map of camera name to image)",
                            pr->images_map, pr->robot_name);
        if (src->kind != PI0_MSG_MAP)
            return pi0_fail(err, PI0_ERR_INPUT, "%s: expected a map of camera name to image, got %s",
                            pr->images_map, pi0_msg_describe(src, desc, sizeof desc));
        /* openpi refuses camera names it does not know rather than ignoring them. */
        for (size_t i = 0; i < src->as.map.n; i++) {
            const pi0_msg_entry *e = &src->as.map.entries[i];
            bool known = false;
            for (int k = 0; k < pr->n_sources && !known; k++)
                known = !e->key_is_bin && strlen(pr->sources[k].key) == e->key_len &&
                        !memcmp(pr->sources[k].key, e->key, e->key_len);
            if (!known) {
                char list[128] = "";
                for (int k = 0; k < pr->n_sources; k++)
                    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "",
                             pr->sources[k].key);
                int n = (int)(e->key_len < 64 ? e->key_len : 64);
                return pi0_fail(err, PI0_ERR_INPUT, "unknown %s camera '%.*s'%s (expected %s)", pr->robot_name, n,
                                e->key, e->key_is_bin ? " (a bin key; camera names are str)" : "", list);
            }
        }
    }
    size_t plane = (size_t)p->image_size * p->image_size * 3;
    memset(row->image_masks, 0, sizeof row->image_masks);
    for (int k = 0; k < pr->n_sources; k++) {
        const pi0_camera_source *cam = &pr->sources[k];
        if (pr->images_map) snprintf(key, sizeof key, "%s/%s", pr->images_map, cam->key);
        else snprintf(key, sizeof key, "%s", cam->key);
        const pi0_msg_value *v = pi0_msg_map_get(src, cam->key);
        if (!v) {
            if (cam->required)
                return pi0_fail(err, PI0_ERR_INPUT, "%s: missing (%s requests need this camera)", key,
                                pr->robot_name);
            continue;
        }
        pi0_status st;
        if (cam->slot >= 0) {
            st = prepare_camera(p, v, key, cam->slot, row, err);
        } else {
            /* Accepted but unused; openpi still converts it, so a malformed one is an error. */
            uint8_t *unused;
            int h, w;
            st = pi0_image_to_hwc(v, key, pr->channel_first_only, &unused, &h, &w, err);
            free(unused);
        }
        if (st) return st;
    }
    /* Absent cameras: uint8 zeros in openpi, so -1.0 after the pixel conversion; mask false. */
    for (int slot = 0; slot < 3; slot++)
        if (!row->image_masks[slot])
            for (size_t i = 0; i < plane; i++) row->images[(size_t)slot * plane + i] = -1.0f;
    return PI0_OK;
}

static pi0_status prepare_prompt(const pi0_policy *p, const pi0_msg_value *req, pi0_policy_row *row,
                                 pi0_error *err) {
    /* Precedence (SERVING_SPEC 3.9): the request's, the server's default, the preset's. */
    const pi0_msg_value *v = pi0_msg_map_get(req, "prompt");
    const char *text = NULL;
    size_t len = 0;
    char *owned = NULL;
    if (v && v->kind != PI0_MSG_NIL) {
        pi0_status st = pi0_prompt_from_value(v, &text, &len, &owned, err);
        if (st) return st;
    } else if (p->default_prompt) {
        text = p->default_prompt, len = strlen(text);
    } else if (p->preset->default_prompt) {
        text = p->preset->default_prompt, len = strlen(text);
    } else {
        return pi0_fail(err, PI0_ERR_INPUT,
                        "Prompt is required: the request has no 'prompt' and there is no default prompt "
                        "(%s has none; the server can set one)", p->preset->config);
    }
    int n = pi0_tokenize_prompt(p->tokenizer, text, len, p->max_token_len, row->tokens, row->token_mask, err);
    free(owned);
    if (n < 0) return pi0_fail_context(err, PI0_ERR_INPUT, "prompt");
    return PI0_OK;
}

pi0_status pi0_policy_prepare(const pi0_policy *p, const uint8_t *msg, size_t len, pi0_policy_row *row,
                              pi0_error *err) {
    pi0_msg_doc doc;
    pi0_status st = pi0_msg_doc_decode(&doc, msg, len, err);
    if (st) return st;
    char desc[160];
    if (doc.root->kind != PI0_MSG_MAP) {
        st = pi0_fail(err, PI0_ERR_INPUT, "request: expected a map of observation keys, got %s",
                      pi0_msg_describe(doc.root, desc, sizeof desc));
    }
    if (!st) st = prepare_state(p, doc.root, row, err);
    if (!st) st = prepare_images(p, doc.root, row, err);
    if (!st) st = prepare_prompt(p, doc.root, row, err);
    pi0_msg_doc_free(&doc);
    return st;
}

/* ---- output chain ------------------------------------------------------------------------ */

static void put_le_f64(uint8_t *dst, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    for (int i = 0; i < 8; i++) dst[i] = (uint8_t)(u >> (8 * i));
}

pi0_status pi0_reply_encode(const double *actions, int A, int D, const pi0_reply_timing *timing, uint8_t **out,
                            size_t *out_len, pi0_error *err) {
    size_t data_bytes = (size_t)A * D * 8;
    uint8_t *data = malloc(data_bytes ? data_bytes : 1);             /* <f8 [A, D], C order */
    if (!data) return pi0_fail(err, PI0_ERR_NOMEM, "reply: out of memory");
    for (size_t i = 0; i < (size_t)A * D; i++) put_le_f64(data + i * 8, actions[i]);
    pi0_msg_writer wr;
    pi0_msg_writer_init(&wr);
    msgpack_packer *pk = &wr.pk;
    int64_t shape[2] = { A, D };
    bool has_prev = timing->prev_total_ms >= 0;
    /* Key order of openpi's reply (SERVING_SPEC 1.6). */
    msgpack_pack_map(pk, 3);
    pi0_msg_pack_str(pk, "actions");
    pi0_msg_pack_ndarray(pk, "<f8", data, data_bytes, 2, shape);
    pi0_msg_pack_str(pk, "policy_timing");
    msgpack_pack_map(pk, 1);
    pi0_msg_pack_str(pk, "infer_ms");
    msgpack_pack_double(pk, timing->policy_infer_ms);
    pi0_msg_pack_str(pk, "server_timing");
    msgpack_pack_map(pk, has_prev ? 2 : 1);
    pi0_msg_pack_str(pk, "infer_ms");
    msgpack_pack_double(pk, timing->server_infer_ms);
    if (has_prev) {
        pi0_msg_pack_str(pk, "prev_total_ms");
        msgpack_pack_double(pk, timing->prev_total_ms);
    }
    free(data);
    return pi0_msg_writer_finish(&wr, out, out_len, err);
}

/* Un-normalize (stats padded to the model's dim: mean 0, std 1), add the round-tripped state to
 * delta dims, keep D_robot, convert ALOHA back (SERVING_SPEC 3.10). */
pi0_status pi0_policy_reply(const pi0_policy *p, const pi0_policy_row *row, const float *actions,
                            const pi0_reply_timing *timing, uint8_t **out, size_t *out_len, pi0_error *err) {
    *out = NULL;
    *out_len = 0;
    const pi0_preset *pr = p->preset;
    const pi0_norm_stats *ns = &p->stats;
    int A = p->action_horizon, AD = p->action_dim, D = pr->reply_dim;
    double *robot = malloc((size_t)A * D * sizeof *robot);            /* [A, D_robot] */
    if (!robot) return pi0_fail(err, PI0_ERR_NOMEM, "reply: out of memory");
    for (int t = 0; t < A; t++) {
        double *a = robot + (size_t)t * D;
        for (int j = 0; j < D; j++) {
            /* float32 times the float64 statistics: float64, as in openpi's numpy. */
            a[j] = (double)actions[(size_t)t * AD + j] * (ns->actions_std[j] + NORM_EPS) + ns->actions_mean[j];
            if (j < pr->n_delta && pr->delta_mask[j]) a[j] += row->state_unnorm[j];
        }
        if (pr->aloha_convert) pi0_aloha_actions_from_pi(a);
    }
    pi0_status st = pi0_reply_encode(robot, A, D, timing, out, out_len, err);
    free(robot);
    return st;
}
