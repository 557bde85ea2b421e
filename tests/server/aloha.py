"""aloha.py - an ALOHA server (run with --max-clients 2): the metadata carries reset_pose, a
request gets <f8 actions [10, 14] (the tiny model's horizon), and a third concurrent client is
refused with HTTP 503 until one of the two leaves.
"""

import time

import numpy as np
from openpi_client import websocket_client_policy

import common as t


def aloha_obs(gen):
    return {
        "state": gen.uniform(-0.5, 0.5, 14),
        "images": {"cam_high": gen.integers(0, 256, (3, 224, 224), dtype=np.uint8),
                   "cam_left_wrist": gen.integers(0, 256, (3, 224, 224), dtype=np.uint8)},
        "prompt": "fold the towel",
    }


def main():
    import websockets.exceptions as wse

    gen = t.rng()
    first = websocket_client_policy.WebsocketClientPolicy(t.HOST, t.port())
    meta = first.get_server_metadata()
    t.check(meta == {"reset_pose": [0, -1.5, 1.5, 0, 0, 0]}, f"aloha metadata has reset_pose (got {meta})")
    reply = first.infer(aloha_obs(gen))
    a = reply["actions"]
    t.check(a.dtype == np.dtype("<f8") and a.shape == (10, 14) and np.all(np.isfinite(a)),
            f"aloha reply actions <f8 [10, 14] (got {a.dtype} {a.shape})")

    second, _ = t.ws_connect()
    try:
        third, _ = t.ws_connect()
        third.close()
        t.check(False, "a third client is refused (--max-clients 2)")
    except wse.InvalidStatus as e:
        t.check(e.response.status_code == 503, f"a third client is refused with HTTP 503 "
                f"(got {e.response.status_code})")
    second.close()
    third = None
    for _ in range(50):  # the server notices the close asynchronously
        try:
            third, _ = t.ws_connect()
            break
        except wse.InvalidStatus:
            time.sleep(0.1)
    t.check(third is not None, "a new client is accepted once one has left")
    if third is not None:
        third.send(t.pack(aloha_obs(gen)))
        t.check(t.unpack(third.recv(timeout=120))["actions"].shape == (10, 14), "the new client is served")
        third.close()
    t.finish()


if __name__ == "__main__":
    main()
