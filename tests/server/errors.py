"""errors.py - bad requests get one text message naming the problem, then close 1011 with openpi's
reason (1009 for an oversized message), while another client connected all along keeps working;
clients that leave in the middle of a request disturb nothing; /healthz and plain HTTP.

The server under test runs with --max-message-mb 2, so a DROID request with two 720x1280 cameras
(5.5 MB) is over the limit while one with 480x640 cameras (1.8 MB) is not.
"""

import http.client
import socket
import time

import numpy as np
from openpi_client import websocket_client_policy

import common as t


def ndarray(data, dtype, shape):
    """An openpi-style array map written by hand (for dtypes openpi's packer refuses)."""
    return {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": list(shape)}


def expect_error(message, close_code, words, what, text=False):
    """Sends message on a fresh connection; expects a text message containing every word in
    words (case-insensitive), then a close with close_code and openpi's reason."""
    from websockets.exceptions import ConnectionClosed

    ws, _ = t.ws_connect()
    try:
        ws.send(message)
        reply = ws.recv(timeout=60)
        ok = isinstance(reply, str) and all(w.lower() in reply.lower() for w in words)
        t.check(ok, f"{what}: text error naming {words} (got {reply if isinstance(reply, str) else type(reply)!r})")
        t.check(isinstance(reply, str) and "\n" not in reply.strip(), f"{what}: the error is one line")
        try:
            ws.recv(timeout=30)
            t.check(False, f"{what}: connection closed after the error")
        except ConnectionClosed as e:
            rcvd = e.rcvd
            t.check(rcvd is not None and rcvd.code == close_code and rcvd.reason == t.ERROR_REASON,
                    f"{what}: close {close_code} with openpi's reason (got "
                    f"{rcvd.code if rcvd else None} {rcvd.reason if rcvd else ''!r})")
    finally:
        ws.close()


def main():
    gen = t.rng()
    good = websocket_client_policy.WebsocketClientPolicy(t.HOST, t.port())

    def good_still_works(after):
        reply = good.infer(t.droid_obs(gen))
        t.check(reply["actions"].shape == (10, 8), f"another client still served after {after}")

    good_still_works("connecting")

    obs = t.droid_obs(gen)
    del obs["observation/joint_position"]
    expect_error(t.pack(obs), 1011, ["observation/joint_position"], "missing key")
    good_still_works("a missing key")

    obs = t.droid_obs(gen)
    obs["observation/joint_position"] = ndarray(np.zeros(14, np.float32).tobytes(), "<c8", [7])
    expect_error(t.pack(obs), 1011, ["c8"], "wrong dtype (complex64 joint_position)")
    good_still_works("a wrong dtype")

    obs = t.droid_obs(gen)
    obs["observation/joint_position"] = gen.uniform(-1, 1, 6)
    expect_error(t.pack(obs), 1011, ["observation/joint_position", "6"], "wrong shape ([6] joints)")
    good_still_works("a wrong shape")

    obs = t.droid_obs(gen)
    obs["observation/joint_position"][3] = np.nan
    expect_error(t.pack(obs), 1011, ["nan"], "NaN in the state")
    good_still_works("a NaN state")

    expect_error(b"\xc1 this is not msgpack", 1011, ["msgpack"], "undecodable msgpack")
    good_still_works("undecodable msgpack")

    expect_error(t.pack(t.droid_obs(gen, size=(720, 1280))), 1009, ["bytes", "limit"],
                 "oversized message (5.5 MB over a 2 MiB limit)")
    good_still_works("an oversized message")

    expect_error("hello, server", 1011, ["text message"], "a text message")
    good_still_works("a text message")

    # Clients leaving mid-request: a clean close right after sending, and a dropped TCP connection.
    ws, _ = t.ws_connect()
    ws.send(t.pack(t.droid_obs(gen)))
    ws.close()
    ws, _ = t.ws_connect()
    ws.send(t.pack(t.droid_obs(gen)))
    ws.socket.shutdown(socket.SHUT_RDWR)
    ws.socket.close()
    time.sleep(0.5)
    good_still_works("two clients left mid-request")

    # Plain HTTP: /healthz is 200 "OK\n" and closes; anything else asks for a websocket upgrade.
    c = http.client.HTTPConnection(t.HOST, t.port(), timeout=10)
    c.request("GET", "/healthz")
    r = c.getresponse()
    body = r.read()
    t.check(r.status == 200 and body == b"OK\n" and
            r.getheader("Content-Type") == "text/plain; charset=utf-8",
            f"GET /healthz -> 200 'OK\\n' text/plain (got {r.status} {body!r})")
    t.check(r.getheader("Connection", "").lower() == "close", "GET /healthz closes the connection")
    c.close()
    c = http.client.HTTPConnection(t.HOST, t.port(), timeout=10)
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    t.check(r.status in (400, 426), f"plain GET / -> 426 or 400 (got {r.status})")
    c.close()

    good_still_works("everything above")
    t.finish()


if __name__ == "__main__":
    main()
