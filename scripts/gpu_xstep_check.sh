#!/usr/bin/env bash
# gpu_xstep_check.sh - the persistent expert step's tuning experiments in one GPU call
# (src/cuda/expert_step.cu lists the switches). Builds for sm_90a only (PI0_CUDA_ARCHS to
# change), checks the numerics of every variant (test_cuda_model golden; full size for the
# default), then for each variant prints CTA 0's per-phase trace of one step and times batch 1
# with the masked camera skipped (the default variant also without the skip, its stage breakdown
# and the layer-by-layer path).
# Writes $OUT/xstep.log and build.log (the runs' JSON goes to $JSON_DIR, a temporary folder by
# default). Needs the .deps folder gpu_build.sh needs.
# Run gpu_check.sh for the full tables; this is for choosing the defaults.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-./out}
BUILD_DIR=${BUILD_DIR:-build-gpu}
mkdir -p "$OUT"
LOG=$OUT/xstep.log
: >"$LOG"
# the per-run JSON stays here: only a few files may come back from $OUT, the log summarizes them
JSON_DIR=${JSON_DIR:-$(mktemp -d)}
export PI0_CUDA_ARCHS=${PI0_CUDA_ARCHS:-90a}
# shellcheck source=scripts/gpu_build.sh
if ! source scripts/gpu_build.sh >"$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"
    exit 1
fi
set +e
PI0=$BUILD_DIR/pi0

# Most promising first: a run cut off at its time limit still returns what it logged.
# name|environment (space-separated assignments; "-" for none)|numerics check (test_cuda_model
# mode: the whole-loop variant needs `full`, whose batch-1 case is the only one with B*A <= 16)
VARIANTS=(
    "default|-|-"
    "async|PI0_XSTEP_ASYNC=1|golden"
    "loop|PI0_XSTEP_LOOP=1|full"
    "relaxed|PI0_XSTEP_RELAXED=1|golden"
    "async_relaxed|PI0_XSTEP_ASYNC=1 PI0_XSTEP_RELAXED=1|golden"
    "grid100|PI0_XSTEP_GRID=100|golden"
    "splitk|PI0_XSTEP_SPLITK=1|golden"
    "grid66|PI0_XSTEP_GRID=66|golden"
    "relaxed_grid100|PI0_XSTEP_RELAXED=1 PI0_XSTEP_GRID=100|golden"
)

# seconds since the start, so a run cut short still says what each part cost
T0=$(date +%s)
log() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

log "== numerics, default variant (golden and full size)"
timeout 240 "$BUILD_DIR/test_cuda_model" 2>&1 | grep -E "^FAIL|failure" | tee -a "$LOG"

for v in "${VARIANTS[@]}"; do
    IFS='|' read -r name vars check <<<"$v"
    [ "$vars" = "-" ] && vars=""
    read -r -a E <<<"$vars"   # the assignments as separate words for env
    log "== $name ${vars:-(defaults)}"
    if [ "$check" != "-" ]; then
        env "${E[@]}" timeout 240 "$BUILD_DIR/test_cuda_model" "$check" 2>&1 |
            grep -E "^FAIL|failure" | tee -a "$LOG"
    fi
    env "${E[@]}" PI0_XSTEP_TRACE=1 timeout 60 "$PI0" bench --backend cuda --skip-masked --no-graph \
        --warmup 2 --iters 1 2>&1 | grep "xstep trace" | tail -1 | tee -a "$LOG"
    env "${E[@]}" timeout 90 "$PI0" bench --backend cuda --skip-masked \
        --json "$JSON_DIR/headline_$name.json" >>"$LOG" 2>&1
    if [ "$name" = default ]; then
        env "${E[@]}" timeout 90 "$PI0" bench --backend cuda --no-skip-masked \
            --json "$JSON_DIR/headline_default_noskip.json" >>"$LOG" 2>&1
        timeout 90 "$PI0" bench --backend cuda --skip-masked --no-fused-expert \
            --json "$JSON_DIR/headline_layer_by_layer.json" >>"$LOG" 2>&1
        # diffusion (staged) minus 10 traced steps = the per-step glue outside the kernel
        timeout 90 "$PI0" bench --backend cuda --skip-masked --breakdown 2>&1 |
            grep -E "^\| (vision|LLM prefill|diffusion)" | tee -a "$LOG"
    fi
done

log "== summary (batch 1 p50 ms)"
python3 - "$JSON_DIR" <<'EOF' | tee -a "$LOG"
import glob, json, os, sys
for f in sorted(glob.glob(os.path.join(sys.argv[1], "headline_*.json"))):
    try:
        h = json.load(open(f))["headline"]
        print("%-40s p50 %.2f  mean %.2f  p99 %.2f" % (os.path.basename(f), h["p50_ms"],
                                                       h["mean_ms"], h["p99_ms"]))
    except (OSError, ValueError, KeyError) as e:
        print("%-40s unreadable: %s" % (os.path.basename(f), e))
EOF
