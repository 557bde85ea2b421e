#!/usr/bin/env bash
# gpu_serve_check.sh - `pi0 serve --backend cuda` end to end on a GPU machine: a random
# full-size checkpoint, openpi's own client (one robot, then several at once), reply checks and
# latency. A bare GPU image has no Debian packages and no network, so what it needs comes along:
#   .deps/        libcjson .debs (scripts/gpu_build.sh)
#   .deps-serve/  apt-get download libwebsockets17 libwebsockets-dev libmsgpackc2 libmsgpack-dev
#                 libcap2 libcap-dev libssl3 libuv1 libev4
#   .whl-serve/   pip download --no-deps --only-binary=:all: --python-version 3.12 ... openpi-client
#                 msgpack websockets   (numpy comes from the machine's python3)
# Writes $OUT/serve.log. Environment: OUT, PI0_SERVE_CLIENTS (8), PI0_SERVE_REQUESTS (20).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./out}
mkdir -p "$OUT"
exec > >(tee "$OUT/serve.log") 2>&1

DEPS=/tmp/deps
mkdir -p "$DEPS"
for f in .deps/*.deb .deps-serve/*.deb; do dpkg -x "$f" "$DEPS"; done
export PKG_CONFIG_PATH=$DEPS/usr/lib/x86_64-linux-gnu/pkgconfig PKG_CONFIG_SYSROOT_DIR=$DEPS
export LD_LIBRARY_PATH=$DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Debian's msgpack.pc names libdir /usr/lib although the library is in the multiarch folder.
export LIBRARY_PATH=$DEPS/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl-serve/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1

cmake -B build-serve -DCMAKE_BUILD_TYPE=Release -DPI0_CUDA=ON -DPI0_SERVER=ON \
      -DPI0_CUDA_ARCHS=90a >build-serve.configure.log 2>&1 || { cat build-serve.configure.log; exit 1; }
cmake --build build-serve -j"$(nproc)" --target pi0_cli >/dev/null
PI0=build-serve/pi0

MODEL=/tmp/pi0_full
[ -f $MODEL/model.safetensors ] || $PI0 init-random --out $MODEL --dims full --horizon 10 --seed 1
PORT=8765
$PI0 serve --model $MODEL --policy droid --norm-stats tests/data/norm_stats/droid.json \
    --tokenizer tests/data/tokenizer/tiny_paligemma_like.model --backend cuda \
    --host 127.0.0.1 --port $PORT &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 300); do   # load, upload and warm-up of every batch shape: bounded wait
    python3 -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:$PORT/healthz').read() != b'OK\n')" \
        2>/dev/null && break
    kill -0 $SERVER 2>/dev/null || { echo "pi0 serve exited"; exit 1; }
    sleep 1
done
PI0_SERVER_PORT=$PORT python3 tests/server/gpu_serve.py "${PI0_SERVE_CLIENTS:-8}" "${PI0_SERVE_REQUESTS:-20}"
kill -TERM $SERVER
wait $SERVER
echo "pi0 serve exited cleanly"
