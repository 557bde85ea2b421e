/* fuzz_msgpack.c - libFuzzer target over a request's whole way in: the msgpack-numpy decoder and
 * pi0_policy_prepare (keys, arrays, images, resize, state, prompt). Any byte string must give
 * either an error with a message or a filled row; ASan/UBSan catch the rest. The first byte picks
 * the preset (droid, aloha, libero); the rest is the message.
 *   cmake -B build-fuzz -DPI0_FUZZ=ON -DCMAKE_C_COMPILER=clang && cmake --build build-fuzz
 *   python3 fuzz/msgpack_seeds.py /tmp/mp_corpus      # a few valid requests to start from
 *   build-fuzz/fuzz_msgpack -max_total_time=60 -rss_limit_mb=2048 /tmp/mp_corpus
 * Run from the repository root (it reads tests/data/tokenizer and tests/data/norm_stats).
 * PI0_FUZZ_TOKENIZER names another tokenizer model. */
#include <stdio.h>
#include <stdlib.h>

#include "policy/msgpack_numpy.h"
#include "policy/policy.h"

static const char *const presets[3] = { "droid", "aloha", "libero" };
static const char *const stats[3] = { "tests/data/norm_stats/droid.json", "tests/data/norm_stats/aloha.json",
                                      "tests/data/norm_stats/libero.json" };
static pi0_tokenizer *tok;
static pi0_policy *policies[3];
static pi0_policy_row rows[3];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *path = getenv("PI0_FUZZ_TOKENIZER");
    if (!path) path = "tests/data/tokenizer/tiny_paligemma_like.model";
    pi0_error err;
    if (pi0_tokenizer_open(&tok, path, &err)) {
        fprintf(stderr, "fuzz_msgpack: %s (run from the repository root)\n", err.msg);
        exit(1);
    }
    for (int i = 0; i < 3; i++) {
        pi0_policy_options opt = { .preset = presets[i], .norm_stats_path = stats[i], .tokenizer = tok,
                                   .action_horizon = 10, .action_dim = 32, .max_token_len = 48, .image_size = 224 };
        if (pi0_policy_open(&policies[i], &opt, &err) || pi0_policy_row_alloc(policies[i], &rows[i], &err)) {
            fprintf(stderr, "fuzz_msgpack: %s\n", err.msg);
            exit(1);
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] % 3;
    pi0_error err = { "" };
    pi0_status st = pi0_policy_prepare(policies[which], data + 1, size - 1, &rows[which], &err);
    if (st != PI0_OK && err.msg[0] == '\0') __builtin_trap();   /* every refusal says why */
    if (st == PI0_OK) {
        /* A prepared row is all the model sees: it must be finite and in range. */
        const pi0_policy_row *row = &rows[which];
        for (int i = 0; i < row->action_dim; i++)
            if (!(row->state[i] == row->state[i]) || row->state[i] > 3.4e38f || row->state[i] < -3.4e38f)
                __builtin_trap();
        size_t n = (size_t)row->n_cameras * row->image_size * row->image_size * 3;
        for (size_t i = 0; i < n; i += 97)
            if (row->images[i] < -1.0f || row->images[i] > 1.0f) __builtin_trap();
        /* And the reply must encode from it. */
        float actions[10 * 32] = { 0 };
        pi0_reply_timing timing = { 1, 2, -1 };
        uint8_t *reply;
        size_t len;
        if (pi0_policy_reply(policies[which], row, actions, &timing, &reply, &len, &err) != PI0_OK) __builtin_trap();
        free(reply);
    }
    return 0;
}
