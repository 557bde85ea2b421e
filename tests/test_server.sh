#!/bin/bash
# test_server.sh - `pi0 serve` end to end on the CPU with the tiny golden model, driven by openpi's
# own Python client (openpi-client from PyPI) and the websockets library under it.
#   start-up: one clear message per missing file (model dir, config.json, model.safetensors, norm
#             stats, tokenizer); bad flags
#   server A (droid, --record, --max-batch 8, --max-message-mb 2): tests/server/droid.py,
#             errors.py, concurrency.py (32 clients x 20 requests)
#   server B (aloha, --max-clients 2, --keepalive-s 1): tests/server/aloha.py
#   server C (droid, --num-steps 1000, --request-timeout-s 1): tests/server/slow.py
#   every server stops cleanly on SIGTERM (exit 0).
# Every server listens on 127.0.0.1 with a port the kernel picks (--port 0; read from its log),
# every wait is bounded, and every server started here is stopped on exit.
# Usage: PI0_BIN=build/pi0 bash tests/test_server.sh [BUILD_DIR]   (ctest sets both)
set -u
cd "$(dirname "$0")/.."
BUILD=${PI0_BUILD_DIR:-${1:-build}}
BIN=${PI0_BIN:-$BUILD/pi0}
MODEL=tests/data/model_tiny_h10
TOKENIZER=tests/data/tokenizer/tiny_paligemma_like.model
STATS=tests/data/norm_stats
export PI0_TEST_SEED=${PI0_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "PI0_TEST_SEED=$PI0_TEST_SEED (set it to replay the random requests)"

fails=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---- Python with openpi-client -----------------------------------------------------------
PY=python3
if ! $PY -c "import openpi_client.websocket_client_policy, websockets, msgpack, numpy" 2>/dev/null; then
    venv=$BUILD/server-test-venv
    if ! "$venv/bin/python" -c "import openpi_client.websocket_client_policy" 2>/dev/null; then
        echo "openpi-client is not installed: installing it into $venv"
        # openpi-client needs numpy < 2; typing_extensions is imported but not declared by 0.1.x.
        python3 -m venv "$venv" && "$venv/bin/pip" install -q openpi-client typing_extensions "numpy<2" ||
            { echo "FAIL cannot install openpi-client (pip install openpi-client 'numpy<2')"; exit 1; }
    fi
    PY=$venv/bin/python
fi

# ---- start-up errors: each names the missing file ---------------------------------------------
expect_startup_error() { # what, words to find in the message, args...
    local what=$1 words=$2
    shift 2
    timeout 60 "$BIN" serve --host 127.0.0.1 --port 0 --backend cpu "$@" >"$tmp/err.log" 2>&1
    local rc=$?
    local msg
    msg=$(cat "$tmp/err.log")
    local ok=1
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || ok=0
    for w in $words; do grep -qF -- "$w" "$tmp/err.log" || ok=0; done
    if [ $ok = 1 ]; then pass "start-up: $what (exit $rc)"; else fail "start-up: $what (exit $rc): $msg"; fi
}
mkdir -p "$tmp/no_weights" "$tmp/home"
cp $MODEL/config.json "$tmp/no_weights/"
expect_startup_error "missing model dir" "$tmp/nowhere directory" \
    --model "$tmp/nowhere" --policy droid
expect_startup_error "missing config.json" "$tmp/home/config.json convert_jax_model_to_pytorch.py" \
    --model "$tmp/home" --policy droid
expect_startup_error "missing model.safetensors" "model.safetensors convert_jax_model_to_pytorch.py" \
    --model "$tmp/no_weights" --policy droid
expect_startup_error "missing norm stats" "assets/droid/norm_stats.json" \
    --model $MODEL --policy droid --tokenizer $TOKENIZER
HOME=$tmp/home OPENPI_DATA_HOME= expect_startup_error "missing tokenizer" "paligemma_tokenizer.model" \
    --model $MODEL --policy droid --norm-stats $STATS/droid.json
expect_startup_error "unknown policy" "droid aloha" --model $MODEL --policy franka
expect_startup_error "unknown flag" "--max-batchh" --model $MODEL --policy droid --max-batchh 2

# ---- servers ----------------------------------------------------------------------------------
server_pid=
server_port=
start_server() { # name, args...: starts it, waits (bounded) until it listens
    local name=$1
    shift
    "$BIN" serve --model $MODEL --tokenizer $TOKENIZER --host 127.0.0.1 --port 0 --backend cpu \
        "$@" >"$tmp/$name.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    server_port=
    for _ in $(seq 1 600); do
        server_port=$(sed -n 's/.*listening on ws:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$name.log")
        [ -n "$server_port" ] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$server_port" ]; then
        fail "server $name did not start:"
        cat "$tmp/$name.log"
        return 1
    fi
    pass "server $name listening on port $server_port"
}

stop_server() { # name: SIGTERM, then a bounded wait for a clean exit
    local name=$1 rc=
    kill -TERM "$server_pid" 2>/dev/null
    for _ in $(seq 1 300); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            wait "$server_pid"
            rc=$?
            break
        fi
        sleep 0.1
    done
    if [ "$rc" = 0 ] && grep -q "shutting down" "$tmp/$name.log"; then
        pass "server $name stopped cleanly on SIGTERM"
    else
        fail "server $name did not stop cleanly on SIGTERM (exit ${rc:-still running})"
        kill -KILL "$server_pid" 2>/dev/null
        tail -20 "$tmp/$name.log"
    fi
}

run_client() { # script, extra env assignments...
    local script=$1
    shift
    echo "--- tests/server/$script"
    if env "$@" PI0_SERVER_PORT=$server_port PI0_BIN="$BIN" PI0_MODEL=$MODEL \
        timeout 1500 "$PY" -W ignore::DeprecationWarning "tests/server/$script"; then
        pass "tests/server/$script"
    else
        fail "tests/server/$script"
    fi
}

if start_server droid --policy droid --norm-stats $STATS/droid.json --record "$tmp/rec" \
    --max-batch 8 --max-message-mb 2 --noise-seed "$PI0_TEST_SEED"; then
    for script in droid.py errors.py concurrency.py; do
        run_client $script PI0_NORM_STATS=$STATS/droid.json PI0_RECORD_DIR="$tmp/rec"
    done
    stop_server droid
    if grep -q "largest batch [2-8]" "$tmp/droid.log"; then
        pass "concurrent requests shared model calls ($(grep -o 'worker 0: .*' "$tmp/droid.log" | tail -1))"
    else
        fail "no model call ran more than one request: $(grep 'worker 0:' "$tmp/droid.log" | tail -1)"
    fi
fi

if start_server aloha --policy aloha --norm-stats $STATS/aloha.json --max-clients 2 --keepalive-s 1; then
    run_client aloha.py PI0_NORM_STATS=$STATS/aloha.json
    stop_server aloha
fi

if start_server slow --policy droid --norm-stats $STATS/droid.json --num-steps 1000 \
    --request-timeout-s 1; then
    run_client slow.py PI0_NORM_STATS=$STATS/droid.json
    stop_server slow
fi

if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all server checks passed"
