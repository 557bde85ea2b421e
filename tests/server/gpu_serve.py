"""`pi0 serve --backend cuda` seen from robots: openpi's own client, one robot and then several
at once. Run by scripts/gpu_serve_check.sh on a GPU machine (not by ctest: it needs a GPU and a
full-size checkpoint). Checks every reply (dtype, shape, finite values, timing fields) and prints
round-trip latency percentiles and replies per second. That each reply answers its own request
is tested on the CPU backend by concurrency.py."""
import sys
import threading
import time

import numpy as np
from openpi_client import websocket_client_policy

import common as t


def main():
    n_clients = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    n_requests = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    gen = t.rng()
    obs = [t.droid_obs(np.random.default_rng(int(gen.integers(1 << 31)))) for _ in range(n_clients)]

    # One client alone first: the latency a single robot sees (server timing included).
    solo = websocket_client_policy.WebsocketClientPolicy(t.HOST, t.port())
    t.check(solo.get_server_metadata() == {}, "droid metadata is {}")
    solo_ms, server_ms, policy_ms = [], [], []
    for i in range(n_requests):
        t0 = time.perf_counter()
        reply = solo.infer(obs[0])
        solo_ms.append((time.perf_counter() - t0) * 1e3)
        server_ms.append(reply["server_timing"]["infer_ms"])
        policy_ms.append(reply["policy_timing"]["infer_ms"])
        a = reply["actions"]
        if i == 0:
            t.check(a.dtype == np.float64 and a.shape == (10, 8), f"actions <f8 [10, 8] (got {a.dtype} {a.shape})")
        if not np.all(np.isfinite(a)):
            t.check(False, f"request {i}: actions are finite")
    print("one robot: round trip p50 %.2f ms (server %.2f ms, model %.2f ms), p99 %.2f ms"
          % (np.percentile(solo_ms, 50), np.percentile(server_ms, 50), np.percentile(policy_ms, 50),
             np.percentile(solo_ms, 99)), flush=True)

    # Many robots at once: requests from different connections are batched by the worker.
    errors, lat = [], []
    lock = threading.Lock()

    def robot(k):
        try:
            client = websocket_client_policy.WebsocketClientPolicy(t.HOST, t.port())
            for _ in range(n_requests):
                t0 = time.perf_counter()
                reply = client.infer(obs[k])
                dt = (time.perf_counter() - t0) * 1e3
                a = reply["actions"]
                ok = a.shape == (10, 8) and np.all(np.isfinite(a)) and "server_timing" in reply
                with lock:
                    lat.append(dt)
                    if not ok:
                        errors.append(f"client {k}: bad reply {a.dtype} {a.shape}")
        except Exception as e:  # noqa: BLE001 - report any failure of a robot thread
            with lock:
                errors.append(f"client {k}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=robot, args=(k,)) for k in range(n_clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    wall = time.perf_counter() - t0
    t.check(not errors and len(lat) == n_clients * n_requests,
            f"{n_clients} robots x {n_requests} requests all answered ({len(lat)} replies; {errors[:3]})")
    print("%d robots at once: %.1f replies/s, round trip p50 %.2f ms, p99 %.2f ms"
          % (n_clients, len(lat) / wall, np.percentile(lat, 50), np.percentile(lat, 99)), flush=True)
    t.finish()


if __name__ == "__main__":
    main()
