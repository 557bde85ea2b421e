#!/usr/bin/env bash
# make_models.sh - trains the small SentencePiece models under tests/data/tokenizer/.
# They use PaliGemma's tokenizer settings (BPE, byte fallback, identity normalizer, no dummy
# prefix, whitespace runs kept, digits split, "\n" as a piece, pad/eos/bos/unk = 0/1/2/3), so
# the C tokenizer can be compared with the SentencePiece tools without the 4 MB real model.
# Two more are made to be refused by the loader (a unigram model, a BPE model with a dummy
# prefix), and one is a copy of bpe_2000 with some pieces marked UNUSED (re-segmentation).
# Needs spm_train (Debian package `sentencepiece`) and python3. The output is committed; the
# tests do not retrain. Run from anywhere:  bash tests/data/tokenizer/make_models.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"   # relative paths only: the trainer records them in the model (byte-identical reruns)

# A deterministic multilingual corpus: robot instructions, accented Latin, Cyrillic, Greek,
# a small set of CJK characters, digits, punctuation, runs of spaces and tabs.
python3 - corpus.txt <<'PY'
import random, sys
rng = random.Random(20240611)
en = ("pick up the red block and put it in the bowl open the top drawer close the "
      "microwave door move the arm left right forward back slowly grasp the cup place "
      "it on the plate fold the towel push the button turn on the stove stack the cubes "
      "describe the image what is on the table robot policy action chunk wipe the counter "
      "pour water into the glass take the spoon out of the sink").split()
fr = "déplace le cube à gauche ouvre la porte du réfrigérateur mets la tasse sur l'étagère".split()
de = "öffne die Schublade und lege den Würfel hinein schließe die Tür Straße grün".split()
es = "coge la taza pequeña y ponla en el estante niño año señal".split()
ru = "возьми красный кубик и положи его в миску открой ящик".split()
el = "πάρε το κόκκινο κύβο και βάλε τον στο μπολ".split()
cjk = list("把红色的方块放进碗里打开抽屉关上门拿起杯子机器人桌子上有什么")
jp = list("ロボットが赤いブロックを持ち上げるカップを置く")
punct = list(".,;:!?()[]{}'\"-/+*=%$#@&")
out = []
for n in range(30000):
    kind = rng.random()
    words = []
    for _ in range(rng.randint(1, 14)):
        r = rng.random()
        if r < 0.5: w = rng.choice(en)
        elif r < 0.58: w = rng.choice(fr)
        elif r < 0.64: w = rng.choice(de)
        elif r < 0.69: w = rng.choice(es)
        elif r < 0.74: w = rng.choice(ru)
        elif r < 0.77: w = rng.choice(el)
        elif r < 0.85: w = "".join(rng.choice(cjk) for _ in range(rng.randint(1, 6)))
        elif r < 0.88: w = "".join(rng.choice(jp) for _ in range(rng.randint(1, 5)))
        elif r < 0.95: w = str(rng.randint(0, 100000))
        else: w = rng.choice(punct)
        if rng.random() < 0.1: w = w.capitalize()
        if rng.random() < 0.1: w += rng.choice(punct)
        words.append(w)
    seps = [" "] * 20 + ["  ", "   ", "    ", "\t", "\t\t", " \t"]
    line = words[0]
    for w in words[1:]:
        line += rng.choice(seps) + w
    if kind < 0.05: line = "    " + line
    if kind > 0.97: line = line + "  "
    if kind > 0.5 and kind < 0.52: line = "<loc%04d><loc%04d> " % (rng.randint(0, 15), rng.randint(0, 15)) + line
    out.append(line)
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(out) + "\n")
PY

nl=$'\n'
locs=$(printf '<loc%04d>,' $(seq 0 15))
segs=$(printf '<seg%03d>,' $(seq 0 3))
common=(--input=corpus.txt --model_type=bpe --byte_fallback=true
        --normalization_rule_name=identity --add_dummy_prefix=false
        --remove_extra_whitespaces=false --split_digits=true --allow_whitespace_only_pieces=true
        --pad_id=0 --eos_id=1 --bos_id=2 --unk_id=3
        --pad_piece='<pad>' --eos_piece='<eos>' --bos_piece='<bos>' --unk_piece='<unk>'
        --num_threads=2 --minloglevel=2 --random_seed=1)

train() {   # train NAME [extra flags...]
    local name=$1; shift
    spm_train "${common[@]}" --model_prefix="$name" "$@" >"$name.log" 2>&1 \
        || { cat "$name.log"; exit 1; }
    cp "$name.model" "$here/$name.model"
    echo "made $name.model ($(stat -c %s "$here/$name.model") bytes)"
}

# The end-to-end model: ids < 1000 fit the tiny golden model's 1024-entry vocabulary.
train tiny_paligemma_like --vocab_size=1000 \
      --user_defined_symbols="${nl},${locs}${segs%,}"
# More merges and overlapping user-defined pieces ("<loc" is a prefix of "<loc0001>";
# "\t\t" and "▁▁▁▁" are whitespace runs, like Gemma's).
train bpe_2000 --vocab_size=2000 \
      --user_defined_symbols="${nl},${locs}${segs}<loc,\t\t,▁▁▁▁,ab"
# Few merges, partial character coverage: much byte fallback.
train bpe_500 --vocab_size=500 --character_coverage=0.98 --user_defined_symbols="${nl},<loc0001>"

# Refused by the loader: a unigram model and a BPE model with a dummy prefix.
spm_train --input=corpus.txt --model_prefix=unigram_tiny --model_type=unigram \
          --vocab_size=500 --character_coverage=0.98 --byte_fallback=true --normalization_rule_name=identity \
          --add_dummy_prefix=false --remove_extra_whitespaces=false --pad_id=0 --eos_id=1 \
          --bos_id=2 --unk_id=3 --num_threads=2 --minloglevel=2 >uni.log 2>&1 \
    || { cat uni.log; exit 1; }
cp unigram_tiny.model "$here/unigram_tiny.model"
echo "made unigram_tiny.model"
train dummy_prefix --vocab_size=500 --add_dummy_prefix=true --character_coverage=0.98

# bpe_2000 with every 5th merged (NORMAL, multi-character) piece retyped UNUSED: encode
# must split those back into the pieces they were merged from. Edits the protobuf directly
# (field 1 = pieces; inside, field 3 = type).
python3 - "$here/bpe_2000.model" "$here/bpe_2000_unused.model" <<'PY'
import sys
def varint(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1; v |= (c & 0x7f) << s; s += 7
        if c < 0x80: return v, i
def enc(v):
    out = bytearray()
    while True:
        c = v & 0x7f; v >>= 7
        if v: out.append(c | 0x80)
        else: out.append(c); return bytes(out)
data = open(sys.argv[1], "rb").read()
out = bytearray(); i = 0; n_normal = n_marked = 0
while i < len(data):
    key, j = varint(data, i)
    if key != (1 << 3 | 2):             # not a piece: copy the field unchanged
        wt = key & 7
        if wt == 0: _, j = varint(data, j)
        elif wt == 1: j += 8
        elif wt == 5: j += 4
        else: ln, j = varint(data, j); j += ln
        out += data[i:j]; i = j; continue
    ln, j = varint(data, j); body = data[j:j + ln]; i = j + ln
    k = 0; text = b""; typ = 1; fields = []
    while k < len(body):
        fk, m = varint(body, k)
        if fk == (1 << 3 | 2): l2, m = varint(body, m); text = body[m:m + l2]; m += l2
        elif fk == (2 << 3 | 5): m += 4
        elif fk == (3 << 3 | 0): typ, m = varint(body, m)
        else: raise SystemExit("unexpected field %d in a piece" % fk)
        fields.append((fk, body[k:m])); k = m
    if typ == 1 and len(text.decode("utf-8")) > 1:
        n_normal += 1
        if n_normal % 5 == 0:
            fields = [f for f in fields if f[0] != (3 << 3 | 0)] + [(3 << 3, enc(3 << 3) + b"\x05")]
            n_marked += 1
    body = b"".join(f[1] for f in fields)
    out += enc(1 << 3 | 2) + enc(len(body)) + body
open(sys.argv[2], "wb").write(bytes(out))
print("made bpe_2000_unused.model (%d of %d merged pieces UNUSED)" % (n_marked, n_normal))
PY
