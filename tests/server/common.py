"""common.py - helpers shared by the `pi0 serve` test clients (tests/test_server.sh runs them).

The clients talk to a running server with openpi's own client package (openpi-client) or with the
websockets library underneath it; they read the files the server writes with --record and check
the replies against them. Configuration comes from the environment that test_server.sh sets:
PI0_SERVER_PORT, PI0_BIN, PI0_MODEL, PI0_NORM_STATS, PI0_RECORD_DIR, PI0_TEST_SEED.
"""

import json
import os
import struct
import subprocess
import sys
import time

import numpy as np

HOST = "127.0.0.1"
# openpi's close reason after an error (SERVING_SPEC 1.7).
ERROR_REASON = "Internal server error. Traceback included in previous frame."

_failures = []


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"{name} is not set (tests/test_server.sh sets it)")
    return value


def port():
    return int(env("PI0_SERVER_PORT"))


def url(path=""):
    return f"ws://{HOST}:{port()}{path}"


def rng():
    """A fresh generator per run; the seed is printed so that a failure can be replayed."""
    seed = int(os.environ.get("PI0_TEST_SEED") or np.random.SeedSequence().entropy % (1 << 32))
    print(f"seed {seed} (PI0_TEST_SEED={seed} replays it)")
    return np.random.default_rng(seed)


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        _failures.append(what)
    return ok


def finish():
    if _failures:
        print(f"{len(_failures)} check(s) failed", flush=True)
        sys.exit(1)
    print("all checks passed", flush=True)


def ws_connect(path=""):
    """A raw websocket connection the way openpi's client opens it (no compression, no size
    limit); returns it after reading the metadata message."""
    import websockets.sync.client as wsc

    ws = wsc.connect(url(path), compression=None, max_size=None, open_timeout=10)
    meta = ws.recv(timeout=10)
    return ws, meta


def pack(obj):
    from openpi_client import msgpack_numpy

    return msgpack_numpy.packb(obj)


def unpack(data):
    from openpi_client import msgpack_numpy

    return msgpack_numpy.unpackb(data)


# ---- requests ------------------------------------------------------------------------------

def droid_obs(gen, joints=None, size=(224, 224), chw=False, prompt="pick up the red cup"):
    h, w = size
    shape = (3, h, w) if chw else (h, w, 3)
    obs = {
        "observation/exterior_image_1_left": gen.integers(0, 256, shape, dtype=np.uint8),
        "observation/wrist_image_left": gen.integers(0, 256, shape, dtype=np.uint8),
        "observation/joint_position": gen.uniform(-1, 1, 7) if joints is None else np.asarray(joints, np.float64),
        "observation/gripper_position": gen.uniform(0, 1, 1),
    }
    if prompt is not None:
        obs["prompt"] = prompt
    return obs


def droid_state(obs):
    return np.concatenate([np.asarray(obs["observation/joint_position"], np.float64).reshape(-1),
                           np.asarray(obs["observation/gripper_position"], np.float64).reshape(-1)])


# ---- norm stats (SERVING_SPEC 3.8, 3.10: z-score for pi0) ----------------------------------

def norm_stats():
    with open(env("PI0_NORM_STATS")) as f:
        stats = json.load(f)["norm_stats"]
    return {k: (np.asarray(v["mean"], np.float64), np.asarray(v["std"], np.float64)) for k, v in stats.items()}


def normalize_state(state, stats):
    mean, std = stats["state"]
    d = len(state)
    return ((state - mean[:d]) / (std[:d] + 1e-6)).astype(np.float32)


def unnormalize_actions(actions, stats, d_robot):
    """actions: model-space [A, 32] float32 -> the reply's [A, d_robot] float64 (no deltas)."""
    mean, std = stats["actions"]
    dim = actions.shape[-1]
    mean = np.concatenate([mean, np.zeros(dim - len(mean))])
    std = np.concatenate([std, np.ones(dim - len(std))])
    return (actions.astype(np.float64) * (std + 1e-6) + mean)[:, :d_robot]


# ---- safetensors (the --record files) ------------------------------------------------------

_DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8,
           "BOOL": np.bool_}


def st_read(path, names=None):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        out = {}
        for name, t in header.items():
            if name == "__metadata__" or (names is not None and name not in names):
                continue
            begin, end = t["data_offsets"]
            f.seek(8 + n + begin)
            out[name] = np.frombuffer(f.read(end - begin), _DTYPES[t["dtype"]]).reshape(t["shape"])
        return out


class Records:
    """The --record directory: finds the record of a request by its normalized state (each test
    request has a distinct state, so a reply sent to the wrong request cannot match)."""

    def __init__(self):
        self.dir = env("PI0_RECORD_DIR")
        self.states = {}

    def refresh(self):
        for name in os.listdir(self.dir):
            if name.endswith("_inputs.safetensors"):
                n = int(name.split("_")[0])
                if n not in self.states and os.path.exists(self.path(n, "outputs")):
                    self.states[n] = st_read(self.path(n, "inputs"), {"state"})["state"][0]

    def path(self, n, kind):
        return os.path.join(self.dir, f"{n}_{kind}.safetensors")

    def find(self, state_norm, tries=50):
        """Record number whose state equals state_norm (float32, unpadded), or None."""
        for _ in range(tries):
            self.refresh()
            if self.states:
                ns = list(self.states)
                s = np.stack([self.states[n] for n in ns])
                d = np.abs(s[:, :len(state_norm)] - state_norm).max(axis=1)
                i = int(np.argmin(d))
                # The record is written after the reply has been built: allow it a moment.
                if d[i] <= 1e-6:
                    return ns[i]
            time.sleep(0.1)
        return None


def infer_matches(n, records, tol=1e-6):
    """Runs the recorded model inputs through `pi0 infer` and compares with the recorded actions."""
    cmd = [env("PI0_BIN"), "infer", "--model", env("PI0_MODEL"), "--backend", "cpu",
           "--inputs", records.path(n, "inputs"), "--compare", records.path(n, "outputs"),
           "--tol", str(tol)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        print(p.stdout + p.stderr)
    return p.returncode == 0
