#!/usr/bin/env bash
# test_cli.sh - the `pi0` command's plumbing: help texts, usage errors (exit code 2 with the flag
# or file named), `pi0 init-random` + `pi0 inspect` round trips (tiny, f32 and bf16, seeds), and
# `pi0 infer`: its inputs checks (dtype, shape, NaN) and a golden case with --compare.
# Run from the repository root with PI0_BIN set (ctest does both); $1 is the build dir.
set -uo pipefail
PI0=${PI0_BIN:-${1:-build}/pi0}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
SEED=${PI0_TEST_SEED:-$(( (RANDOM << 15) | RANDOM ))}
echo "test_cli: seed $SEED (PI0_TEST_SEED=$SEED replays it), binary $PI0"

FAILS=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

# expect NAME CODE TEXT -- CMD...: CMD exits with CODE and its stdout+stderr contain TEXT.
expect() {
    local name=$1 code=$2 text=$3
    shift 4
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" != "$code" ]; then
        fail "$name: exit code $rc, expected $code; output: $(echo "$out" | tail -3)"
    elif ! grep -qF -- "$text" <<<"$out"; then
        fail "$name: output lacks '$text': $(echo "$out" | tail -3)"
    else
        pass "$name"
    fi
}

# ---- help and usage errors ------------------------------------------------------------------
expect "pi0 --help" 0 "init-random" -- "$PI0" --help
expect "pi0 without a command" 2 "usage: pi0 <command>" -- "$PI0"
expect "unknown command" 2 "unknown command 'frobnicate'" -- "$PI0" frobnicate
for cmd in infer init-random inspect bench serve; do
    expect "pi0 $cmd --help" 0 "usage: pi0 $cmd" -- "$PI0" "$cmd" --help
done
for cmd in infer init-random inspect bench; do
    expect "pi0 $cmd: unknown flag" 2 "unknown flag --no-such-flag" -- "$PI0" "$cmd" --no-such-flag 1
done
expect "flag=value form, unknown" 2 "unknown flag --modle" -- "$PI0" infer --modle=x
expect "missing value" 2 "--model needs a value" -- "$PI0" infer --model
expect "bad integer" 2 "--threads expects an integer, got 'many'" -- "$PI0" infer --threads many
expect "stray argument" 2 "unexpected argument 'extra'" -- "$PI0" inspect extra
expect "required flag" 2 "--model is required" -- "$PI0" inspect
expect "missing model dir" 2 "--model $TMP/nope: no such directory" -- "$PI0" inspect --model "$TMP/nope"
expect "infer: missing model dir" 2 "$TMP/nope: no such directory" -- \
    "$PI0" infer --model "$TMP/nope" --inputs x --out y
expect "infer: missing inputs" 2 "--inputs $TMP/none.safetensors: no such file" -- \
    "$PI0" infer --model tests/data/model_tiny_h10 --inputs "$TMP/none.safetensors" --out "$TMP/o"
expect "infer: bad backend" 2 "--backend is 'tpu'" -- \
    "$PI0" infer --model tests/data/model_tiny_h10 --inputs tests/data/b2_masks_h10/inputs.safetensors \
    --out "$TMP/o" --backend tpu
expect "init-random: bad dims" 2 "--dims huge: not full, tiny or an existing config file" -- \
    "$PI0" init-random --out "$TMP/x" --dims huge
expect "init-random: bad dtype" 2 "--dtype is 'f16'" -- "$PI0" init-random --out "$TMP/x" --dims tiny --dtype f16
expect "inspect: missing config.json" 1 "config.json next to model.safetensors" -- \
    bash -c "mkdir -p '$TMP/noconfig' && '$PI0' inspect --model '$TMP/noconfig'"

# ---- init-random + inspect round trips --------------------------------------------------------
expect "init-random tiny" 0 "106 tensors, 815136 parameters, F32, seed $SEED" -- \
    "$PI0" init-random --out "$TMP/tiny" --dims tiny --seed "$SEED"
expect "inspect tiny: total" 0 "total                     815,136" -- "$PI0" inspect --model "$TMP/tiny"
expect "inspect tiny: tensors" 0 "106 used, 106 in the file" -- "$PI0" inspect --model "$TMP/tiny"
expect "inspect tiny: dtype" 0 "F32 (106 tensors)" -- "$PI0" inspect --model "$TMP/tiny"
expect "init-random again, same seed" 0 "wrote" -- "$PI0" init-random --out "$TMP/tiny2" --dims tiny --seed "$SEED"
if cmp -s "$TMP/tiny/model.safetensors" "$TMP/tiny2/model.safetensors"; then
    pass "same seed gives the same file"
else
    fail "same seed gives different files"
fi
expect "init-random, next seed" 0 "wrote" -- "$PI0" init-random --out "$TMP/tiny3" --dims tiny --seed $((SEED + 1))
if cmp -s "$TMP/tiny/model.safetensors" "$TMP/tiny3/model.safetensors"; then
    fail "different seeds give the same file"
else
    pass "different seeds give different files"
fi
expect "init-random tiny bf16, horizon 7" 0 "BF16" -- \
    "$PI0" init-random --out "$TMP/tinyb" --dims tiny --seed "$SEED" --dtype bf16 --horizon 7
expect "inspect bf16" 0 "BF16 (106 tensors)" -- "$PI0" inspect --model "$TMP/tinyb"
expect "inspect bf16: horizon from config.json" 0 "action_horizon 7" -- "$PI0" inspect --model "$TMP/tinyb"
expect "init-random from a config file" 0 "815136 parameters" -- \
    "$PI0" init-random --out "$TMP/tinyc" --dims tests/data/model_tiny_h10/config.json --seed 3
expect "inspect golden: unused expert head" 0 "paligemma_with_expert.gemma_expert.lm_head.weight" -- \
    "$PI0" inspect --model tests/data/model_tiny_h10

# The written file against the reference format, read by an independent parser.
if python3 - "$TMP/tiny/model.safetensors" "$TMP/tiny/config.json" <<'EOF'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
assert (8 + n) % 8 == 0, "data section not 8-byte aligned"
h = json.loads(data[8:8 + n])
h.pop("__metadata__", None)
size = {"F32": 4, "BF16": 2}
end = 0
for name, e in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"]):
    b, en = e["data_offsets"]
    count = 1
    for s in e["shape"]:
        count *= s
    assert b == end and en - b == count * size[e["dtype"]], name
    end = en
assert end == len(data) - 8 - n, "data section size"
cfg = json.load(open(sys.argv[2]))
assert cfg["llm"]["vocab_size"] == 1024 and cfg["pi05"] is False
print(len(h), "tensors, contiguous")
EOF
then pass "init-random file parses with an independent reader"; else fail "init-random file format"; fi

# ---- infer: input checks and a golden case ----------------------------------------------------
# make_inputs FILE CASE: writes a small inputs file (B=1, C=1, L=4, A=3) broken as CASE says.
make_inputs() {
    python3 - "$1" "$2" "$SEED" <<'EOF'
import json, random, struct, sys
path, case, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(seed)
S, L, A, Da = 224, 4, 3, 32
t = {
    "images": ("F32", [1, 1, S, S, 3], [rnd.uniform(-1, 1) for _ in range(S * S * 3)]),
    "image_masks": ("U8", [1, 1], [1]),
    "tokens": ("I32", [1, L], [2, rnd.randrange(3, 1024), 108, 0]),
    "token_mask": ("U8", [1, L], [1, 1, 1, 0]),
    "state": ("F32", [1, Da], [rnd.gauss(0, 1) for _ in range(Da)]),
    "noise": ("F32", [1, A, Da], [rnd.gauss(0, 1) for _ in range(A * Da)]),
    "num_steps": ("I32", [1], [4]),
}
if case == "tokens_f32":
    t["tokens"] = ("F32", [1, L], [2.0, 5.0, 108.0, 0.0])
elif case == "state_shape":
    t["state"] = ("F32", [1, 31], t["state"][2][:31])
elif case == "state_nan":
    t["state"][2][5] = float("nan")
elif case == "token_range":
    t["tokens"][2][1] = 5000
elif case == "mask_value":
    t["token_mask"][2][2] = 7
elif case == "no_noise":
    del t["noise"]
fmt = {"F32": "f", "I32": "i", "U8": "B"}
header, blobs, off = {}, [], 0
for name, (dt, shape, vals) in t.items():
    blob = struct.pack("<%d%s" % (len(vals), fmt[dt]), *vals)
    header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(blob)]}
    blobs.append(blob)
    off += len(blob)
h = json.dumps(header).encode()
h += b" " * ((8 - (8 + len(h)) % 8) % 8)
open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
EOF
}
M=tests/data/model_tiny_h10
for c in tokens_f32 state_shape state_nan token_range mask_value no_noise; do
    make_inputs "$TMP/$c.safetensors" "$c"
done
expect "infer: tokens dtype" 1 "tensor 'tokens' has dtype F32, expected I32 or I64" -- \
    "$PI0" infer --model $M --inputs "$TMP/tokens_f32.safetensors" --out "$TMP/o.safetensors"
expect "infer: state shape" 1 "tensor 'state' has shape [1, 31], expected [1, 32]" -- \
    "$PI0" infer --model $M --inputs "$TMP/state_shape.safetensors" --out "$TMP/o.safetensors"
expect "infer: missing noise" 1 "missing tensor 'noise'" -- \
    "$PI0" infer --model $M --inputs "$TMP/no_noise.safetensors" --out "$TMP/o.safetensors"
expect "infer: NaN state" 1 "state[0][5] is NaN" -- \
    "$PI0" infer --model $M --inputs "$TMP/state_nan.safetensors" --out "$TMP/o.safetensors"
expect "infer: token out of range" 1 "tokens[0][1] is 5000, expected 0..1023" -- \
    "$PI0" infer --model $M --inputs "$TMP/token_range.safetensors" --out "$TMP/o.safetensors"
expect "infer: mask value" 1 "token_mask[0][2] is 7, expected 0 or 1" -- \
    "$PI0" infer --model $M --inputs "$TMP/mask_value.safetensors" --out "$TMP/o.safetensors"

make_inputs "$TMP/good.safetensors" good
expect "infer: small valid input" 0 "B=1 C=1 L=4 A=3 steps=4" -- \
    "$PI0" infer --model $M --inputs "$TMP/good.safetensors" --out "$TMP/good_out.safetensors"
if python3 - "$TMP/good_out.safetensors" <<'EOF'
import json, math, struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
h = json.loads(data[8:8 + n])
for name in ("actions", "v_first"):
    e = h[name]
    assert e["dtype"] == "F32" and e["shape"] == [1, 3, 32], (name, e)
    b, en = e["data_offsets"]
    vals = struct.unpack("<%df" % ((en - b) // 4), data[8 + n + b:8 + n + en])
    assert all(math.isfinite(v) for v in vals) and any(v != 0 for v in vals), name
EOF
then pass "infer output file: actions and v_first F32 [1, 3, 32], finite, not all zero"
else fail "infer output file"; fi

# A golden case end to end through the CLI (the per-tensor numbers are test_golden's job):
# the reference README's float32 tolerance, 1e-4 relative L2.
expect "infer --compare golden b2_masks_h10" 0 "compare prefix_embs" -- \
    "$PI0" infer --model $M --inputs tests/data/b2_masks_h10/inputs.safetensors \
    --out "$TMP/b2.safetensors" --intermediates --compare tests/data/b2_masks_h10/outputs.safetensors
# --compare against our own output passes; scaled by 1.001 (rel L2 0.001/1.001 > 1e-4) it must
# fail.
expect "infer --compare with itself" 0 "compare actions      rel_l2 0.000e+00" -- \
    "$PI0" infer --model $M --inputs "$TMP/good.safetensors" --compare "$TMP/good_out.safetensors"
python3 - "$TMP/good_out.safetensors" "$TMP/scaled.safetensors" <<'EOF'
import json, struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", data[:8])[0]
b, e = json.loads(data[8:8 + n])["actions"]["data_offsets"]
vals = struct.unpack("<%df" % ((e - b) // 4), data[8 + n + b:8 + n + e])
data[8 + n + b:8 + n + e] = struct.pack("<%df" % len(vals), *[v * 1.001 for v in vals])
open(sys.argv[2], "wb").write(data)
EOF
expect "infer --compare detects a 1e-3 error" 1 "compare actions      rel_l2 9.9" -- \
    "$PI0" infer --model $M --inputs "$TMP/good.safetensors" --compare "$TMP/scaled.safetensors"

echo "test_cli: $FAILS failure(s)"
[ "$FAILS" = 0 ]
