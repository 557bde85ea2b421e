/* fuzz_tokenizer.c - libFuzzer target over the tokenizer. The first byte picks what the rest is:
 *   even: a .model file: load it; if it loads, encode a fixed sample and a Pi0 prompt with it
 *   odd:  a text: encode it and tokenize it as a Pi0 prompt (max_len from the second byte) with
 *         a fixed trained model (tests/data/tokenizer/bpe_2000_unused.model: user-defined,
 *         UNUSED and byte pieces), whose ids must stay inside its vocabulary.
 *   cmake -B build-fuzz -DPI0_FUZZ=ON -DCMAKE_C_COMPILER=clang && cmake --build build-fuzz
 *   mkdir -p /tmp/tok_corpus && cd tests/data/tokenizer && for f in *.model; do
 *       (printf '\0'; cat "$f") > /tmp/tok_corpus/"$f"; done; cd -
 *   build-fuzz/fuzz_tokenizer -max_total_time=60 /tmp/tok_corpus     (from the repository root)
 * (libFuzzer adds what it finds to the first corpus directory: never point it at tests/data.) */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "tokenizer/tokenizer.h"

#define FIXED_MODEL "tests/data/tokenizer/bpe_2000_unused.model"

static const char sample[] = "Pick up the <loc0001> red\tblock  \xe2\x96\x81 12 \xff\xf0\x9f\x98\x80 ";

/* Encodes and tokenizes s with t; every id a success returns must be a piece of t. */
static void exercise(const pi0_tokenizer *t, const char *s, size_t len, int max_len) {
    int32_t ids[256];
    uint8_t mask[256];
    pi0_error err;
    int vocab = pi0_tokenizer_vocab_size(t);
    int n = pi0_tokenizer_encode(t, s, len, ids, 256, &err);
    for (int i = 0; i < n && i < 256; i++)
        if (ids[i] < 0 || ids[i] >= vocab) __builtin_trap();
    n = pi0_tokenize_prompt(t, s, len, max_len, ids, mask, &err);
    if (n > max_len) __builtin_trap();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab || !mask[i]) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static pi0_tokenizer *fixed;
    if (size < 1) return 0;
    if (!(data[0] & 1)) {
        pi0_tokenizer *t;
        pi0_error err;
        if (pi0_tokenizer_load(&t, data + 1, size - 1, &err) != PI0_OK) return 0;
        exercise(t, sample, sizeof sample - 1, 48);
        pi0_tokenizer_close(t);
        return 0;
    }
    if (!fixed) {
        pi0_error err;
        if (pi0_tokenizer_open(&fixed, FIXED_MODEL, &err) != PI0_OK) {
            fprintf(stderr, "fuzz_tokenizer: %s (run from the repository root)\n", err.msg);
            abort();
        }
    }
    if (size < 2) return 0;
    exercise(fixed, (const char *)data + 2, size - 2, 1 + data[1] % 200);
    return 0;
}
