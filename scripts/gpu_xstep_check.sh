#!/usr/bin/env bash
# gpu_xstep_check.sh - a quick GPU call for work on the persistent expert step
# (src/cuda/expert_step.cu): builds for sm_90a only (PI0_CUDA_ARCHS to change), runs
# test_cuda_model (golden cases and full size against the CPU fp32 path), prints CTA 0's
# per-phase trace of one step (PI0_XSTEP_TRACE=1), and times batch 1 with the persistent kernel
# (in clusters of two and, PI0_XSTEP_CLUSTER=1, without) and layer by layer, with the masked
# camera skipped, plus the persistent kernel without the skip and its stage breakdown. About
# four minutes.
# Writes $OUT/xstep.log and build.log (the runs' JSON goes to $JSON_DIR, a temporary folder by
# default). Needs the .deps folder gpu_build.sh needs.
# Run gpu_check.sh for the full tables.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-./out}
BUILD_DIR=${BUILD_DIR:-build-gpu}
mkdir -p "$OUT"
LOG=$OUT/xstep.log
: >"$LOG"
# the per-run JSON stays here: only a few files may come back from $OUT, the log summarizes them
if [ -z "${JSON_DIR:-}" ]; then
    JSON_DIR=$(mktemp -d)
    trap 'rm -rf "$JSON_DIR"' EXIT
fi
export PI0_CUDA_ARCHS=${PI0_CUDA_ARCHS:-90a}
# shellcheck source=scripts/gpu_build.sh
if ! source scripts/gpu_build.sh >"$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"
    exit 1
fi
set +e
PI0=$BUILD_DIR/pi0

# seconds since the start, so a run cut short still says what each part cost
T0=$(date +%s)
log() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

log "== numerics (golden and full size)"
timeout 240 "$BUILD_DIR/test_cuda_model" 2>&1 | grep -E "^FAIL|failure" | tee -a "$LOG"

log "== trace of one step"
PI0_XSTEP_TRACE=1 timeout 60 "$PI0" bench --backend cuda --skip-masked --no-graph --warmup 2 \
    --iters 1 2>&1 | grep "xstep trace" | tail -1 | tee -a "$LOG"

# name|bench flags|environment
VARIANTS=(
    "default|--skip-masked|"
    "default_noskip|--no-skip-masked|"
    "no_clusters|--skip-masked|PI0_XSTEP_CLUSTER=1"
    "layer_by_layer|--skip-masked --no-fused-expert|"
)
for v in "${VARIANTS[@]}"; do
    IFS='|' read -r name flags envs <<<"$v"
    read -r -a F <<<"$flags"
    read -r -a E <<<"$envs"
    log "== $name: $flags ${envs}"
    env "${E[@]}" timeout 90 "$PI0" bench --backend cuda "${F[@]}" \
        --json "$JSON_DIR/headline_$name.json" >>"$LOG" 2>&1
done
# diffusion (staged) over 10 steps against the traced step: the glue outside the kernel
timeout 90 "$PI0" bench --backend cuda --skip-masked --breakdown 2>&1 |
    grep -E "^\| (vision|LLM prefill|diffusion)" | tee -a "$LOG"

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
