"""Writes a few valid requests as a starting corpus for fuzz_msgpack (first byte: 0 droid,
1 aloha, 2 libero; then the msgpack message). Small odd-sized images keep the resize busy.
Usage: python3 fuzz/msgpack_seeds.py DIR   (needs numpy and msgpack)"""
import os
import sys

import msgpack
import numpy as np


def arr(a):
    a = np.ascontiguousarray(a)
    return {b"__ndarray__": True, b"data": a.tobytes(), b"dtype": a.dtype.str, b"shape": list(a.shape)}


def img(h, w, chw=False, dtype=np.uint8):
    x = (np.arange(h * w * 3).reshape(h, w, 3) * 37 % 256).astype(np.uint8)
    if dtype != np.uint8:
        x = (x / 255.0).astype(dtype)
    return arr(x.transpose(2, 0, 1) if chw else x)


seeds = {
    "droid": (0, {"observation/exterior_image_1_left": img(6, 8), "observation/wrist_image_left": img(5, 3, chw=True),
                  "observation/joint_position": [0.1, 0.2, 0.3, -2.0, 0.0, 2.0, 0.5],
                  "observation/gripper_position": arr(np.array([0.5], np.float32)), "prompt": "pick up the cup"}),
    "droid_float": (0, {"observation/exterior_image_1_left": img(4, 4, dtype=np.float32),
                        "observation/wrist_image_left": img(3, 7, dtype=np.float16),
                        "observation/joint_position": arr(np.zeros(7, np.float64)),
                        "observation/gripper_position": 0.25, "prompt": b"open the drawer"}),
    "aloha": (1, {"images": {"cam_high": img(6, 8, chw=True), "cam_left_wrist": img(4, 4, chw=True),
                             "cam_low": img(2, 2, chw=True)},
                  "state": arr(np.linspace(-1, 1, 14)), "prompt": arr(np.array("fold the towel"))}),
    "libero": (2, {"observation/image": img(8, 8), "observation/wrist_image": img(8, 8),
                   "observation/state": arr(np.linspace(0, 1, 8).astype(np.float32)), "prompt": "put the bowl away"}),
}

os.makedirs(sys.argv[1], exist_ok=True)
for name, (preset, obs) in seeds.items():
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        f.write(bytes([preset]) + msgpack.packb(obs, use_bin_type=True))
