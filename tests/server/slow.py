"""slow.py - against a server whose inference is slow on purpose (--num-steps 1000, about 2 s on
the tiny model) and whose queue time-out is short (--request-timeout-s 1):

- pings are answered while a request of the same connection is being computed: the pong comes
  back quickly and before the reply;
- a request that waits in the queue for longer than the time-out gets the error path (text
  message, close 1011), while the request that was running is answered normally.
"""

import time

import common as t


def main():
    from websockets.exceptions import ConnectionClosed

    gen = t.rng()
    a, _ = t.ws_connect()
    a.send(t.pack(t.droid_obs(gen)))
    time.sleep(0.3)  # the request is with the worker now
    latencies = []
    for _ in range(3):
        t0 = time.monotonic()
        pong = a.ping(b"are you there")
        got = pong.wait(5)
        latencies.append(time.monotonic() - t0 if got else float("inf"))
    try:
        a.recv(timeout=0)
        reply_pending = False
    except TimeoutError:
        reply_pending = True
    t.check(reply_pending, "the reply was still being computed while the pings were answered")
    t.check(max(latencies) < 1.0, "3 pings answered during inference, slowest in "
            f"{max(latencies) * 1e3:.1f} ms (limit 1000 ms)")

    # b's request queues behind a's (the server runs one request at a time here); a's needs
    # about 2 s more, longer than the 1 s time-out.
    b, _ = t.ws_connect()
    b.send(t.pack(t.droid_obs(gen)))
    reply = a.recv(timeout=120)
    t.check(isinstance(reply, bytes) and t.unpack(reply)["actions"].shape == (10, 8),
            "the running request is answered")
    err = b.recv(timeout=120)
    t.check(isinstance(err, str) and "request-timeout" in err,
            f"the queued request got a time-out error (got {err if isinstance(err, str) else type(err)!r})")
    try:
        b.recv(timeout=30)
        t.check(False, "connection closed after the time-out error")
    except ConnectionClosed as e:
        t.check(e.rcvd is not None and e.rcvd.code == 1011, "closed with 1011 after the time-out error")
    a.close()
    b.close()
    t.finish()


if __name__ == "__main__":
    main()
