#!/usr/bin/env bash
# run.sh - set up, build and run pi0c on a fresh Debian/Ubuntu machine.
#   ./scripts/run.sh bench [pi0 bench flags]   packages, build, `pi0 bench` (CUDA if a GPU is
#                                             usable, otherwise the tiny model on the CPU)
#   ./scripts/run.sh test                     packages, build, every test (CPU tests, then the
#                                             whole suite again under ASan+UBSan, short fuzz
#                                             runs; CUDA tests too when a GPU is present)
#   ./scripts/run.sh build                    packages and build only
# Environment: PI0_SKIP_DEPS=1 skips the package step; BUILD_DIR (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build}
JOBS=$(nproc 2>/dev/null || echo 2)

log() { printf '\n== %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages the build and the tests need. nvcc is optional (CUDA backend).
DEB_PACKAGES="build-essential cmake pkg-config git libcjson-dev libwebsockets-dev libmsgpack-dev
              sentencepiece clang python3 python3-venv python3-pip"

install_deps() {
    [ "${PI0_SKIP_DEPS:-0}" = 1 ] && return 0
    local missing=()
    for p in $DEB_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    # python3/pip may come from elsewhere (pyenv): then the Debian ones are not needed.
    if command -v python3 >/dev/null && python3 -m venv --help >/dev/null 2>&1; then
        missing=("${missing[@]/python3-venv}"); missing=("${missing[@]/python3-pip}")
        missing=("${missing[@]/python3}")
    fi
    local want=()
    for p in "${missing[@]}"; do [ -n "$p" ] && want+=("$p"); done
    if [ ${#want[@]} -gt 0 ]; then
        log "installing Debian packages: ${want[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${want[@]}" >/dev/null
    fi
    # libFuzzer's runtime is only a recommendation of clang, and named after its version.
    local rt; rt="libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
    if ! dpkg-query -W -f='${Status}' "$rt" 2>/dev/null | grep -q "install ok installed"; then
        log "installing Debian package: $rt"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$rt" >/dev/null
    fi
}

# Python is used only by the tests (openpi's own client talks to `pi0 serve`); pi0 itself
# never needs it. A venv keeps the client's pinned numpy<2 away from the system.
setup_test_python() {
    local venv=$ROOT/$BUILD_DIR/venv
    if [ ! -x "$venv/bin/python3" ]; then
        log "creating $venv with openpi-client"
        python3 -m venv "$venv"
    fi
    if ! "$venv/bin/python3" -c 'import openpi_client, numpy, websockets' 2>/dev/null; then
        "$venv/bin/python3" -m pip install -q --disable-pip-version-check openpi-client 'numpy<2'
    fi
    export PATH="$venv/bin:$PATH"
}

have_gpu() {
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

configure_and_build() { # dir, extra cmake args...
    local dir=$1; shift
    cmake -S . -B "$dir" -DPI0_WERROR=ON "$@" >"$dir.configure.log" 2>&1 ||
        { cat "$dir.configure.log"; return 1; }
    grep 'pi0c:' "$dir.configure.log" || true
    cmake --build "$dir" -j"$JOBS"
}

cmd_build() {
    install_deps
    log "building $BUILD_DIR"
    mkdir -p "$BUILD_DIR"
    configure_and_build "$BUILD_DIR" -DPI0_CUDA=AUTO
}

cmd_bench() {
    cmd_build
    log "pi0 bench $*"
    if have_gpu; then
        PI0_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown) \
            "$BUILD_DIR/pi0" bench --breakdown "$@"
    else
        echo "no usable GPU: benchmarking the tiny model on the CPU (the numbers say nothing about GPU speed)"
        PI0_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown) \
            "$BUILD_DIR/pi0" bench --backend cpu --breakdown "$@"
    fi
}

run_fuzzers() { # short bounded runs of every libFuzzer target
    local dir=$BUILD_DIR-fuzz
    log "fuzz targets (clang, libFuzzer + ASan + UBSan)"
    mkdir -p "$dir"
    CC=clang configure_and_build "$dir" -DPI0_CUDA=OFF -DPI0_FUZZ=ON -DPI0_WERROR=OFF
    local n=0
    for f in "$dir"/fuzz_*; do
        [ -x "$f" ] || continue
        local name; name=$(basename "$f")
        local corpus=$dir/corpus/$name; mkdir -p "$corpus"
        local seeds=$ROOT/fuzz/seeds/${name#fuzz_}
        [ -d "$seeds" ] || seeds=
        echo "-- $name (60 s)"
        "$f" -max_total_time=60 -max_len=65536 -rss_limit_mb=2048 -print_final_stats=0 \
            "$corpus" $seeds 2>"$dir/$name.log" ||
            { tail -40 "$dir/$name.log"; echo "FUZZ FAIL $name"; return 1; }
        n=$((n + 1))
    done
    echo "fuzz: $n targets ran clean"
}

cmd_test() {
    cmd_build
    setup_test_python
    log "CPU tests"
    ctest --test-dir "$BUILD_DIR" -L cpu --output-on-failure -j"$JOBS"
    if have_gpu; then
        log "CUDA tests"
        ctest --test-dir "$BUILD_DIR" -L cuda --output-on-failure
    fi
    log "the whole CPU suite again under AddressSanitizer + UndefinedBehaviorSanitizer"
    mkdir -p "$BUILD_DIR-san"
    configure_and_build "$BUILD_DIR-san" -DPI0_CUDA=OFF -DPI0_SANITIZE=ON
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir "$BUILD_DIR-san" -L cpu --output-on-failure -j"$JOBS"
    run_fuzzers
    log "all tests passed"
}

case "${1:-}" in
    bench) shift; cmd_bench "$@" ;;
    test) shift; cmd_test "$@" ;;
    build) shift; cmd_build "$@" ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
esac
