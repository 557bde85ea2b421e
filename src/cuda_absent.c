/* cuda_absent.c - the CUDA backend's stand-in when pi0 is built without nvcc: opening it
 * fails with a message that says how to get it. CMake leaves this file out when src/cuda/
 * is compiled, which defines the same two symbols. */
#include "model.h"

static pi0_status absent_open(pi0_model *m, pi0_error *err) {
    return pi0_fail(err, PI0_ERR_UNSUPPORTED,
                    "this pi0 was built without CUDA (rebuild on a machine with nvcc: "
                    "cmake -DPI0_CUDA=ON)");
}

static void absent_close(pi0_model *m) {}

const pi0_backend_ops pi0_backend_cuda = {
    .name = "cuda",
    .open = absent_open,
    .close = absent_close,
};

const int pi0_cuda_built = 0;
