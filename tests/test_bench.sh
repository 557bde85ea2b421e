#!/usr/bin/env bash
# test_bench.sh - `pi0 bench` on the CPU with the tiny model: the markdown tables are printed,
# the --json file parses and holds every sample, --breakdown and --sweep work, the roofline floor
# of full-size dims reproduces PI0_SPEC §6.4/6.5, and bad flags exit with 2.
# Run from the repository root with PI0_BIN set (ctest does both); $1 is the build dir.
set -uo pipefail
PI0=${PI0_BIN:-${1:-build}/pi0}
SEED=${PI0_TEST_SEED:-$(( (RANDOM << 15) | RANDOM ))}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "test_bench: seed $SEED (PI0_TEST_SEED=$SEED replays it)"

FAILS=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

# check NAME PYTHON_EXPR FILE: evaluates the expression with j = the parsed JSON file.
check_json() {
    local name=$1 expr=$2 file=$3 msg
    if msg=$(python3 - "$file" "$expr" 2>&1 <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
ok = eval(sys.argv[2], {"j": j, "abs": abs, "len": len, "all": all, "sum": sum})
if not ok:
    print("false: " + sys.argv[2])
    sys.exit(1)
EOF
    ); then pass "$name"; else fail "$name: $msg"; fi
}

expect_grep() { # NAME EXTENDED_REGEX FILE
    if grep -Eq -- "$2" "$3"; then pass "$1"; else fail "$1: no line matches '$2'"; fi
}

run_bench() { # LOG ARGS...: runs pi0 bench on the CPU, output into LOG; returns its exit code
    local log=$1; shift
    "$PI0" bench --backend cpu --dims tiny --seed "$SEED" "$@" >"$log" 2>&1
}

# ---- headline -----------------------------------------------------------------------------
ITERS=4
if run_bench "$TMP/head.log" --iters $ITERS --warmup 1 --json "$TMP/head.json"; then
    pass "headline runs"
else
    fail "headline exits $?"; cat "$TMP/head.log"
fi
expect_grep "headline table header" \
    '^\| device \| B \| masked cameras \| iters \| mean ms \| p50 ms \| p90 ms \| p99 ms' "$TMP/head.log"
expect_grep "headline table row" '^\| [^|]+ \| 1 \| skipped \| 4 \| [0-9.]+ \| [0-9.]+ \|' "$TMP/head.log"
expect_grep "timing window stated" 'one replay of sample_actions; inputs already in device buffers' \
    "$TMP/head.log"
expect_grep "skip setting stated" 'masked cameras: skipped' "$TMP/head.log"
expect_grep "published table" '^## Published' "$TMP/head.log"
expect_grep "published openpi H200 row" '\| 25\.30 \| 39\.5 \|' "$TMP/head.log"
expect_grep "power n/a on the CPU" 'power: n/a' "$TMP/head.log"
check_json "json: every sample, positive" \
    "len(j['headline']['samples_ms']) == $ITERS and all(x > 0 for x in j['headline']['samples_ms'])" \
    "$TMP/head.json"
# mean and percentiles must be those of the samples (linear interpolation between ranks)
check_json "json: statistics match the samples" "
(lambda s, h: abs(h['mean_ms'] - sum(s) / len(s)) <= 1e-9 * h['mean_ms']
 and abs(h['min_ms'] - s[0]) == 0 and abs(h['max_ms'] - s[-1]) == 0
 and abs(h['p50_ms'] - (s[1] + s[2]) / 2) <= 1e-9 * h['p50_ms']
 and abs(h['hz'] - 1000 / h['mean_ms']) <= 1e-9 * h['hz'])(sorted(j['headline']['samples_ms']), j['headline'])" \
    "$TMP/head.json"
check_json "json: workload recorded" \
    "j['workload']['prompt_len'] == 20 and j['workload']['horizon'] == 10 and j['workload']['steps'] == 10 and j['workload']['masked'] == [2] and j['seed'] == $SEED and j['backend'] == 'cpu' and 'command' in j and 'device' in j and 'driver' in j and 'commit' in j" \
    "$TMP/head.json"

# ---- no skip, breakdown and sweep ----------------------------------------------------------
if run_bench "$TMP/bd.log" --no-skip-masked --iters 3 --warmup 1 --breakdown --sweep 1,2 \
        --json "$TMP/bd.json"; then
    pass "breakdown + sweep run"
else
    fail "breakdown + sweep exit $?"; cat "$TMP/bd.log"
fi
expect_grep "no-skip stated" 'masked cameras: run through SigLIP' "$TMP/bd.log"
expect_grep "breakdown table" '^## Breakdown' "$TMP/bd.log"
expect_grep "breakdown prefill row" '^\| LLM prefill \|' "$TMP/bd.log"
expect_grep "sweep table" '^## Batch sweep' "$TMP/bd.log"
expect_grep "sweep row B=2" '^\| 2 \| [0-9.]+ \|' "$TMP/bd.log"
# The three stages run one after the other inside a staged run: their sum cannot exceed the
# total beyond timer rounding (1 us per stage).
check_json "breakdown: stages inside the total" "
(lambda st: len(st) == 5 and all(len(s['samples_ms']) == 3 for s in st)
 and all(v + p + d <= t + 3e-3 for v, p, d, t in zip(st[0]['samples_ms'], st[1]['samples_ms'], st[3]['samples_ms'], st[4]['samples_ms']))
 and all(x > 0 for s in st for x in s['samples_ms']))(j['breakdown']['stages'])" "$TMP/bd.json"
check_json "breakdown: per step = diffusion / steps" "
(lambda st: all(abs(a * 10 - b) <= 1e-9 * b for a, b in zip(st[2]['samples_ms'], st[3]['samples_ms'])))(j['breakdown']['stages'])" \
    "$TMP/bd.json"
check_json "sweep: rows for B = 1, 2 with samples/s = B * 1000 / mean" "
[r['batch'] for r in j['sweep']] == [1, 2] and all(len(r['samples_ms']) == 3 and abs(r['samples_per_s'] - r['batch'] * 1000 / r['mean_ms']) <= 1e-9 * r['samples_per_s'] for r in j['sweep'])" \
    "$TMP/bd.json"
check_json "no-skip recorded" "j['workload']['skip_masked'] == False and j['headline']['skip_masked'] == False" \
    "$TMP/bd.json"

# ---- ladder (CPU ignores the PI0_OPT flags; this checks the plumbing) ----------------------
if run_bench "$TMP/lad.log" --iters 2 --warmup 0 --ladder --no-gemm-epilogue --json "$TMP/lad.json"; then
    check_json "ladder: all on, the switches left on, skip" "
[r['config'].split(' (')[0] for r in j['ladder']] == ['all on', 'without CUDA graph', 'without fused q/k/v and gate/up projections', 'without persistent expert-step kernel', 'without fused denoising-step glue', 'without fused prefix attention', 'without masked-camera skip'] and j['ladder'][0]['delta_ms'] == 0 and j['ladder'][-1]['skip_masked'] == False" \
        "$TMP/lad.json"
else
    fail "ladder exits $?"; cat "$TMP/lad.log"
fi

# ---- a checkpoint instead of random weights --------------------------------------------------
if "$PI0" bench --backend cpu --model tests/data/model_tiny_h10 --iters 1 --warmup 0 \
        --json "$TMP/ckpt.json" >"$TMP/ckpt.log" 2>&1; then
    check_json "checkpoint recorded" "j['model'] == 'tests/data/model_tiny_h10' and len(j['headline']['samples_ms']) == 1" \
        "$TMP/ckpt.json"
else
    fail "bench --model exits $?"; cat "$TMP/ckpt.log"
fi

# ---- the floor: full-size dims must reproduce PI0_SPEC 6.4 / 6.5 (the spec rounds to the
# digits it prints, so the limits are half a unit of its last digit) -------------------------
floor_check() { # NAME EXPECTED_MS HALF_UNIT ARGS...
    local name=$1 want=$2 tol=$3; shift 3
    if "$PI0" bench --floor --dims full "$@" --json "$TMP/floor.json" >"$TMP/floor.log" 2>&1; then
        check_json "floor $name = $want ms" \
            "abs(j['floor'][-1]['floor_ms'] - $want) <= $tol" "$TMP/floor.json"
    else
        fail "floor $name exits $?"; cat "$TMP/floor.log"
    fi
}
floor_check "B=1, masked camera run" 6.40 0.005 --no-skip-masked
floor_check "B=1, masked camera skipped" 4.77 0.005 --skip-masked
floor_check "B=64, masked camera run" 320.6 0.05 --no-skip-masked --batch 64
"$PI0" bench --floor --dims full --no-skip-masked --json "$TMP/floor.json" >/dev/null 2>&1
check_json "floor stages = PI0_SPEC 6.4 table" "
(lambda f: abs(f[0]['floor_ms'] - 0.836) <= 5e-4 and abs(f[1]['floor_ms'] - 4.069) <= 5e-4
 and abs(f[2]['floor_ms'] - 0.150) <= 5e-4 and abs(f[3]['floor_ms'] - 1.498) <= 5e-4
 and abs(f[1]['flops'] - 3214892335104) <= 1 and abs(f[2]['flops'] - 8211677184) <= 1)(j['floor'])" \
    "$TMP/floor.json"

# ---- --backend auto without a usable GPU falls back to the tiny model on the CPU -----------
if ! (command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1); then
    if "$PI0" bench --iters 1 --warmup 0 >"$TMP/auto.log" 2>&1 &&
        grep -q 'benchmarking on the CPU with the tiny model' "$TMP/auto.log"; then
        pass "auto falls back to the CPU"
    else
        fail "auto fallback"; cat "$TMP/auto.log"
    fi
fi

# ---- bad usage exits with 2 and names the problem ------------------------------------------
bad_usage() { # NAME EXPECTED_TEXT ARGS...
    local name=$1 text=$2 rc; shift 2
    "$PI0" bench "$@" >"$TMP/bad.log" 2>&1
    rc=$?
    if [ $rc -eq 2 ] && grep -q -- "$text" "$TMP/bad.log"; then pass "$name -> exit 2"
    else fail "$name: exit $rc, expected 2 with '$text'"; cat "$TMP/bad.log"; fi
}
bad_usage "unknown flag" "--bogus" --bogus
bad_usage "bad backend" "gpu" --backend gpu
bad_usage "masked camera out of range" "--masked" --masked 5
bad_usage "bad sweep list" "--sweep" --sweep 1,x
bad_usage "contradicting skip flags" "contradict" --skip-masked --no-skip-masked
bad_usage "zero iterations" "--iters" --iters 0
bad_usage "missing model dir" "no such directory" --model "$TMP/nope"

if [ $FAILS -ne 0 ]; then
    echo "test_bench: $FAILS failed (seed $SEED)"
    exit 1
fi
echo "test_bench: all passed"
