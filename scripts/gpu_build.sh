#!/usr/bin/env bash
# gpu_build.sh - configure and build pi0c with the CUDA backend on a bare GPU machine.
# That machine has nvcc, cmake and a compiler but no Debian packages beyond its base image, so
# libcjson (and pkgconf, in case pkg-config is missing too) come along as .deb files in .deps/
# (fetched once on a machine with apt:
#   mkdir -p .deps && cd .deps && apt-get download libcjson1 libcjson-dev pkgconf-bin libpkgconf3)
# and is unpacked into /tmp/deps (never into /). Prints the exports a caller needs to run the
# binaries when sourced: `source scripts/gpu_build.sh` leaves LD_LIBRARY_PATH set.
# Environment: BUILD_DIR (default build-gpu), PI0_CUDA_ARCHS (default 90a;80), JOBS.
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-build-gpu}
DEPS=/tmp/deps
ARCHS=${PI0_CUDA_ARCHS:-90a;80}
JOBS=${JOBS:-$(nproc)}

PKGCONF_ARGS=()
if ! pkg-config --exists libcjson 2>/dev/null || [ -n "${PI0_FORCE_DEPS:-}" ]; then
    if ! ls "$ROOT"/.deps/libcjson*.deb >/dev/null 2>&1; then
        echo "gpu_build: libcjson is missing and $ROOT/.deps holds no .deb files" >&2
        exit 1
    fi
    mkdir -p "$DEPS"
    for f in "$ROOT"/.deps/*.deb; do dpkg -x "$f" "$DEPS"; done
    # The .pc file says prefix=/usr; the sysroot makes pkg-config prepend /tmp/deps.
    export PKG_CONFIG_PATH="$DEPS/usr/lib/x86_64-linux-gnu/pkgconfig"
    export PKG_CONFIG_SYSROOT_DIR="$DEPS"
    export CMAKE_PREFIX_PATH="$DEPS/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    export LD_LIBRARY_PATH="$DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # A bare image may lack pkg-config itself: pkgconf comes along in .deps too.
    if ! command -v pkg-config >/dev/null 2>&1 && [ -x "$DEPS/usr/bin/pkgconf" ]; then
        PKGCONF_ARGS=(-DPKG_CONFIG_EXECUTABLE="$DEPS/usr/bin/pkgconf")
    fi
fi
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH=/usr/local/cuda/bin:$PATH
fi

cd "$ROOT"
cmake -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DPI0_CUDA=ON -DPI0_SERVER=OFF \
      "-DPI0_CUDA_ARCHS=$ARCHS" "${PKGCONF_ARGS[@]}" >"$BUILD_DIR.configure.log" 2>&1 || {
    cat "$BUILD_DIR.configure.log" >&2; exit 1; }
grep "pi0c:" "$BUILD_DIR.configure.log" || true
cmake --build "$BUILD_DIR" -j "$JOBS"
