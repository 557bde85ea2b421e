"""Prints the FNV-1a 64 checksums test_policy.c expects from openpi's resize_with_pad.

Run with the Pillow that openpi pins (11.2.1): the C resize must reproduce it byte for byte.
Inputs are made from a formula test_policy.c repeats, so no image files are needed.
"""
import numpy as np
from PIL import Image

SIZES = [(480, 640), (256, 320), (230, 224), (10, 10), (720, 1280), (97, 13), (1080, 1920), (224, 300),
         (100, 224), (3, 500)]


def pattern(h, w, kind):
    i = np.arange(h * w * 3, dtype=np.uint64).reshape(h, w, 3)
    if kind == 0:  # Knuth's multiplicative hash: noise, every rounding matters
        return (((i * 2654435761) % 2**32) >> 24).astype(np.uint8)
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return ((x * 3 + y * 5 + c * 50) & 255).astype(np.uint8)  # ramps with wraps


def resize_with_pad(img, height, width):
    im = Image.fromarray(img)
    cur_w, cur_h = im.size
    if (cur_w, cur_h) == (width, height):
        return img
    ratio = max(cur_w / width, cur_h / height)
    rh, rw = int(cur_h / ratio), int(cur_w / ratio)
    r = im.resize((rw, rh), resample=Image.BILINEAR)
    out = Image.new(r.mode, (width, height), 0)
    out.paste(r, (max(0, int((width - rw) / 2)), max(0, int((height - rh) / 2))))
    return np.asarray(out)


def fnv1a(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % 2**64
    return h


for h, w in SIZES:
    for kind in (0, 1):
        print(f"    {{ {h}, {w}, {kind}, 0x{fnv1a(resize_with_pad(pattern(h, w, kind), 224, 224).tobytes()):016x}ull }},")
