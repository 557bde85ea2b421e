"""aloha.py - an ALOHA server (run with --max-clients 2 --keepalive-s 1): the metadata carries
reset_pose, a request gets <f8 actions [10, 14] (the tiny model's horizon), a third concurrent
client is refused with HTTP 503 until one of the two leaves; the server pings every second and
drops a client that does not answer, while clients that answer (as websockets does) stay.
"""

import socket
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

    # Keep-alive: a raw client that never answers pings gets one and is then dropped.
    raw = socket.create_connection((t.HOST, t.port()), timeout=10)
    raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    data, t0, closed_after = b"", time.monotonic(), None
    while time.monotonic() - t0 < 15:
        chunk = raw.recv(4096)
        if not chunk:
            closed_after = time.monotonic() - t0
            break
        data += chunk
    raw.close()
    body = data.split(b"\r\n\r\n", 1)[-1]
    t.check(b"\x89" in body[3:], "the server pings a silent client")  # after the 3-byte metadata frame
    t.check(closed_after is not None and closed_after < 6,
            f"a client that never answers pings is dropped (after {closed_after} s; limit 6 s)")
    ws, _ = t.ws_connect()
    time.sleep(3)
    ws.send(t.pack(aloha_obs(gen)))
    t.check(t.unpack(ws.recv(timeout=120))["actions"].shape == (10, 14),
            "a client that answers pings is still connected and served after 3 s of pings")
    ws.close()
    t.finish()


if __name__ == "__main__":
    main()
