#!/usr/bin/env bash
# gpu_kernel_profile.sh - every kernel of one batch-1 inference, timed by Nsight Compute:
# where the time goes inside each stage, kernel by kernel. Builds like gpu_xstep_check.sh
# (sm_90a only unless PI0_CUDA_ARCHS says otherwise), then runs `pi0 bench --no-graph` under
# `ncu --profile-from-start off` with PI0_CUDA_PROFILE_RUN=2, so the range is the second eager
# run (the first tunes the GEMMs). Kernels run one at a time under ncu with warm caches; their
# sum is close to a graph replay's time but not equal to it.
# Writes $OUT/profile_<setting>.csv (ncu's raw rows) and $OUT/profile.log (per-kernel-name
# totals in order of first launch). Extra bench flags: PROFILE_FLAGS. PROFILE_DETAIL="k1 k2":
# also Nsight Compute's full report of the third launch of each kernel named (a regex),
# in $OUT/profile_detail.txt (throughputs, stall reasons, occupancy).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-./out}
BUILD_DIR=${BUILD_DIR:-build-gpu}
mkdir -p "$OUT"
export PI0_CUDA_ARCHS=${PI0_CUDA_ARCHS:-90a}
if [ -z "${SKIP_BUILD:-}" ]; then
    # shellcheck source=scripts/gpu_build.sh
    if ! source scripts/gpu_build.sh >"$OUT/build.log" 2>&1; then
        tail -40 "$OUT/build.log"
        exit 1
    fi
fi
set +e
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -z "$NCU" ]; then
    echo "gpu_kernel_profile.sh: ncu (Nsight Compute) not found" | tee "$OUT/profile.log"
    exit 1
fi
: >"$OUT/profile.log"
for setting in skip-masked no-skip-masked; do
    read -r -a EXTRA <<<"${PROFILE_FLAGS:-}"
    PI0_CUDA_PROFILE_RUN=2 timeout 400 "$NCU" --profile-from-start off --clock-control none \
        --cache-control none --metrics gpu__time_duration.sum --csv \
        "$BUILD_DIR/pi0" bench --backend cuda "--$setting" --no-graph --warmup 1 --iters 1 \
        "${EXTRA[@]}" >"$OUT/profile_$setting.csv" 2>"$OUT/profile_$setting.err"
    echo "== $setting (ncu exit $?)" >>"$OUT/profile.log"
    python3 - "$OUT/profile_$setting.csv" <<'EOF' >>"$OUT/profile.log" 2>&1
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]
name_i, unit_i, val_i = head.index("Kernel Name"), head.index("Metric Unit"), head.index("Metric Value")
order, tot, cnt = [], {}, {}
seq = 0.0
for r in rows[1:]:
    name = r[name_i].split("(")[0].split("<")[0][-60:]
    v = float(r[val_i].replace(",", ""))
    v = v / 1000.0 if r[unit_i] == "nsecond" else (v * 1000.0 if r[unit_i] == "msecond" else v)
    if name not in tot:
        order.append(name)
        tot[name] = 0.0
        cnt[name] = 0
    tot[name] += v
    cnt[name] += 1
    seq += v
for n in order:
    print("%-60s %5d launches %9.1f us (%4.1f%%)" % (n, cnt[n], tot[n], 100 * tot[n] / seq))
print("total %.1f us over %d kernels" % (seq, sum(cnt.values())))
EOF
done
: >"$OUT/profile_detail.txt"
for kernel in ${PROFILE_DETAIL:-}; do
    PI0_CUDA_PROFILE_RUN=2 timeout 120 "$NCU" --profile-from-start off --clock-control none \
        --cache-control none --set full -k "regex:$kernel" --launch-skip 2 --launch-count 1 \
        "$BUILD_DIR/pi0" bench --backend cuda --skip-masked --no-graph --warmup 1 --iters 1 \
        2>&1 | grep -v "^pi0\|^|\|^#\|^-\|^$" >>"$OUT/profile_detail.txt"
done
cat "$OUT/profile.log"
