#!/usr/bin/env bash
# gpu_check.sh - everything a GPU machine is needed for, in one call:
#   build for sm_90a + portable sm_80 (scripts/gpu_build.sh), nvidia-smi, the CUDA tests, the CPU
#   tests, then the benchmarks of docs/BENCHMARKS.md (headline with and without the masked-camera
#   skip, --breakdown, the batch sweep, the optimization ladder), and a summary table last.
# Writes into $OUT (default ./out): check.log (everything printed), one JSON per benchmark and
# summary.md. Few files on purpose: a remote GPU runner may return only a handful.
# It keeps to a time budget (PI0_CHECK_BUDGET_S, default 540 s) so the whole call fits in ten
# minutes: each step gets at most what is left, and a step that runs out is reported, not hidden.
# Environment: OUT, BUILD_DIR (default build-gpu), PI0_CHECK_BUDGET_S, PI0_CHECK_SKIP_TESTS=1
# (benchmarks only), PI0_CHECK_BENCH_RESERVE_S (default 240: what the tests must leave to the
# benchmarks), PI0_BENCH_ARGS (extra flags for every `pi0 bench`, e.g. --model DIR),
# PI0_COMMIT (recorded in the JSON; taken from git when unset).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-./out}
BUILD_DIR=${BUILD_DIR:-build-gpu}
BUDGET_S=${PI0_CHECK_BUDGET_S:-540}
read -r -a BENCH_ARGS <<<"${PI0_BENCH_ARGS:-}"
mkdir -p "$OUT"
LOG=$OUT/check.log
: >"$LOG"
if [ -z "${PI0_COMMIT:-}" ]; then
    PI0_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
fi
export PI0_COMMIT

STEPS=()   # "name|status|seconds" for the summary
RESERVE_S=0  # seconds of the budget a step must leave for the steps after it

say() { printf '\n== %s\n' "$*" | tee -a "$LOG"; }

# step NAME CAP_SECONDS COMMAND...: runs COMMAND with its output teed into the log, killed
# after min(CAP, what is left of the budget minus RESERVE_S). Records ok / FAIL rc / TIMEOUT /
# skipped.
step() {
    local name=$1 cap=$2; shift 2
    local left=$((BUDGET_S - SECONDS - 10 - RESERVE_S))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -le 5 ]; then
        say "$name: skipped, the time budget (${BUDGET_S} s) is spent"
        STEPS+=("$name|skipped (time)|0")
        return 1
    fi
    say "$name (limit ${limit} s): $*"
    local t0=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=$?
    local status=ok
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="TIMEOUT (${limit} s)"
    elif [ $rc -ne 0 ]; then status="FAIL (exit $rc)"; fi
    STEPS+=("$name|$status|$((SECONDS - t0))")
    echo "-- $name: $status in $((SECONDS - t0)) s" | tee -a "$LOG"
    [ $rc -eq 0 ]
}

say "pi0c gpu_check: commit $PI0_COMMIT, $(date -u '+%Y-%m-%d %H:%M UTC'), out $OUT"
step nvidia-smi 30 nvidia-smi

if ! step build 300 env BUILD_DIR="$BUILD_DIR" scripts/gpu_build.sh; then
    say "build failed: nothing else to run"
    exit 1
fi
# gpu_build.sh unpacks the carried libcjson .debs into /tmp/deps: the binaries need its
# shared library at run time.
for d in /tmp/deps/usr/lib/*/ /tmp/deps/usr/lib/; do
    if ls "$d"libcjson.so* >/dev/null 2>&1; then
        export LD_LIBRARY_PATH="${d%/}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
done
PI0=$BUILD_DIR/pi0

# The tests may not eat the time the benchmarks need (about 3 minutes at full size: every
# `pi0 bench` draws 3.2 B random weights, and the ladder opens five models).
if [ "${PI0_CHECK_SKIP_TESTS:-0}" != 1 ]; then
    RESERVE_S=${PI0_CHECK_BENCH_RESERVE_S:-240}
    step "CUDA tests" 200 ctest --test-dir "$BUILD_DIR" -L cuda --output-on-failure
    # tokenizer_exact needs SentencePiece's spm_encode (a Debian package), which bare GPU
    # images lack; CI runs it.
    step "CPU tests" 90 ctest --test-dir "$BUILD_DIR" -L cpu -E '^tokenizer_exact$' \
        --output-on-failure -j"$(nproc 2>/dev/null || echo 4)"
    RESERVE_S=0
fi

# The benchmarks, headline first: the figures that matter most run while time is left.
step "bench headline, no skip" 60 "$PI0" bench --backend cuda --no-skip-masked "${BENCH_ARGS[@]}" \
    --json "$OUT/headline_noskip.json"
step "bench headline, skip" 60 "$PI0" bench --backend cuda --skip-masked "${BENCH_ARGS[@]}" \
    --json "$OUT/headline_skip.json"
step "bench breakdown" 60 "$PI0" bench --backend cuda --no-skip-masked --breakdown "${BENCH_ARGS[@]}" \
    --json "$OUT/breakdown.json"
step "bench sweep" 120 "$PI0" bench --backend cuda --sweep 1,2,4,8,16,32,64 --warmup 3 \
    --iters 20 "${BENCH_ARGS[@]}" --json "$OUT/sweep.json"
step "bench ladder" 180 "$PI0" bench --backend cuda --ladder --iters 50 "${BENCH_ARGS[@]}" \
    --json "$OUT/ladder.json"

# Summary: step statuses, then the headline numbers read back from the JSON files.
{
    echo
    echo "## gpu_check summary (commit $PI0_COMMIT, ${SECONDS} s)"
    echo
    echo "| step | status | s |"
    echo "|---|---|---:|"
    for s in "${STEPS[@]}"; do
        IFS='|' read -r n st t <<<"$s"
        echo "| $n | $st | $t |"
    done
    echo
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
rows = []
for name, label in (("headline_noskip.json", "batch 1, no skip"),
                    ("headline_skip.json", "batch 1, skip")):
    j = load(name)
    if j and "headline" in j:
        h = j["headline"]
        rows.append((label, h["mean_ms"], h["p50_ms"], h["p99_ms"], h["hz"], h.get("power_w")))
j = load("sweep.json")
for r in (j or {}).get("sweep", []):
    if r["batch"] == 64:
        rows.append(("batch 64 (%.1f samples/s)" % r["samples_per_s"], r["mean_ms"], r["p50_ms"],
                     r["p99_ms"], r["hz"], r.get("power_w")))
first = load("headline_noskip.json") or load("headline_skip.json") or {}
print("device: %s" % first.get("device", "?"))
print()
print("| run | mean ms | p50 ms | p99 ms | Hz | power W |")
print("|---|---:|---:|---:|---:|---:|")
for label, mean, p50, p99, hz, w in rows:
    print("| %s | %.2f | %.2f | %.2f | %.1f | %s |" % (label, mean, p50, p99, hz,
          "n/a" if w is None else "%.0f" % w))
j = load("breakdown.json")
if j and "breakdown" in j:
    print()
    print("| stage | ms | floor ms | measured / floor |")
    print("|---|---:|---:|---:|")
    for s in j["breakdown"]["stages"]:
        print("| %s | %.3f | %.3f | %.1f |" % (s["name"], s["mean_ms"], s["floor_ms"],
              s["mean_ms"] / s["floor_ms"] if s["floor_ms"] > 0 else 0))
j = load("ladder.json")
if j and "ladder" in j:
    print()
    print("| configuration | p50 ms | delta ms |")
    print("|---|---:|---:|")
    for r in j["ladder"]:
        print("| %s | %.2f | %+.2f |" % (r["config"], r["p50_ms"], r["delta_ms"]))
EOF
    fi
} | tee "$OUT/summary.md" | tee -a "$LOG"

for s in "${STEPS[@]}"; do
    case $s in *"|ok|"*) ;; *) exit 1 ;; esac
done
exit 0
