/* fuzz_safetensors.c - libFuzzer target over the safetensors reader: any byte string must give
 * either an error or a table whose every tensor lies inside the buffer. When it parses, the
 * tiny model's weights are bound against it and converted, to exercise the name lookups too.
 *   cmake -B build-fuzz -DPI0_FUZZ=ON -DCMAKE_C_COMPILER=clang && cmake --build build-fuzz
 *   mkdir -p /tmp/st_corpus && cp tests/data/model_tiny_h10/model.safetensors /tmp/st_corpus/
 *   build-fuzz/fuzz_safetensors -max_total_time=60 /tmp/st_corpus
 * (libFuzzer adds what it finds to the first corpus directory: never point it at tests/data.) */
#include <stdlib.h>

#include "common.h"
#include "safetensors.h"
#include "weights.h"

static pi0_status touch(void *ctx, pi0_tensor *slot, pi0_part part, pi0_error *err) {
    float *buf = malloc(slot->n_elems * sizeof *buf + 4);
    if (!buf) return PI0_ERR_NOMEM;
    pi0_tensor_to_f32(slot, buf);
    if (slot->ndim == 2 && slot->shape[0] > 0) pi0_tensor_rows_to_f32(slot, slot->shape[0] - 1, 1, buf);
    free(buf);
    return PI0_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pi0_safetensors *f;
    pi0_error err;
    if (pi0_safetensors_parse(&f, data, size, &err) != PI0_OK) return 0;
    volatile uint8_t sink = 0;
    for (int i = 0; i < pi0_safetensors_count(f); i++) {
        const pi0_st_tensor *t = pi0_safetensors_at(f, i);
        if (t->n_bytes) sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->n_bytes - 1];
        if (pi0_safetensors_find(f, t->name) != t) __builtin_trap();
    }
    (void)pi0_safetensors_metadata(f, "format");
    pi0_dims d = pi0_dims_tiny();
    pi0_weights w = { 0 };
    if (pi0_weights_bind(&w, &d, f, &err) == PI0_OK) pi0_weights_each(&d, &w, touch, NULL, &err);
    pi0_weights_free(&w);
    pi0_safetensors_close(f);
    return 0;
}
