"""concurrency.py - 32 clients x 20 requests at once (openpi's client, one thread each).

Every request carries a state no other request has (client and request number are encoded in
the first two joints), and the server records every model row it ran (--record). Each reply must
equal the un-normalized actions of the record whose state is its own request's: a reply sent to
the wrong connection, or answering another request of the same connection, cannot match. The
server runs with --max-batch 8, so requests of different clients share model calls.
"""

import os
import threading
import time

import numpy as np
from openpi_client import websocket_client_policy

import common as t

N_CLIENTS = int(os.environ.get("PI0_TEST_CLIENTS", "32"))
N_REQUESTS = int(os.environ.get("PI0_TEST_REQUESTS", "20"))
TIME_LIMIT_S = 1200


def main():
    seed_gen = t.rng()
    seeds = seed_gen.integers(0, 1 << 32, N_CLIENTS)
    stats = t.norm_stats()
    results = [[] for _ in range(N_CLIENTS)]
    errors = []

    def client(c):
        try:
            gen = np.random.default_rng(int(seeds[c]))
            policy = websocket_client_policy.WebsocketClientPolicy(t.HOST, t.port())
            for j in range(N_REQUESTS):
                joints = gen.uniform(-1, 1, 7)
                joints[0] = -0.9 + 1.8 * c / N_CLIENTS
                joints[1] = -0.9 + 1.8 * j / N_REQUESTS
                obs = t.droid_obs(gen, joints=joints, prompt=f"task {c % 5}")
                results[c].append((obs, policy.infer(obs)))
        except Exception as e:  # reported below, with the client's number
            errors.append(f"client {c}: {type(e).__name__}: {e}")

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(N_CLIENTS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(max(1.0, TIME_LIMIT_S - (time.monotonic() - t0)))
    elapsed = time.monotonic() - t0
    t.check(not any(th.is_alive() for th in threads), f"all clients finished within {TIME_LIMIT_S} s")
    t.check(not errors, "no client saw an error" + ("".join("\n  " + e for e in errors[:5])))
    n_replies = sum(len(r) for r in results)
    t.check(n_replies == N_CLIENTS * N_REQUESTS,
            f"{n_replies} of {N_CLIENTS * N_REQUESTS} requests answered in {elapsed:.1f} s")

    records = t.Records()
    bad_timing = bad_match = missing = 0
    used = set()
    for c in range(N_CLIENTS):
        for j, (obs, reply) in enumerate(results[c]):
            if ("prev_total_ms" in reply["server_timing"]) != (j > 0):
                bad_timing += 1
            n = records.find(t.normalize_state(t.droid_state(obs), stats), tries=20)
            if n is None:
                missing += 1
                continue
            used.add(n)
            rec = t.st_read(records.path(n, "outputs"))["actions"][0]
            expected = t.unnormalize_actions(rec, stats, 8)
            if reply["actions"].shape != expected.shape or \
                    np.abs(reply["actions"] - expected).max() > 1e-12 * max(1.0, np.abs(expected).max()):
                bad_match += 1
    t.check(missing == 0, f"every request has its record ({missing} missing)")
    t.check(len(used) == n_replies - missing, "no two replies matched the same record")
    t.check(bad_match == 0, f"every reply equals its own request's recorded actions ({bad_match} do not)")
    t.check(bad_timing == 0, f"prev_total_ms exactly from each connection's second reply on "
            f"({bad_timing} wrong)")
    t.finish()


if __name__ == "__main__":
    main()
