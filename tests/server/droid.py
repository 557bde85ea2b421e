"""droid.py - a DROID conversation with openpi's own client, checked against the --record files.

Checks: metadata {} (the byte 0x80); reply keys, dtype <f8 and shape [10, 8]; timing fields, with
prev_total_ms from the second reply on; the recorded model inputs through `pi0 infer` give the
recorded model actions (rel L2 <= 1e-6: the same CPU code on the same inputs); the reply is the
un-normalized slice of those actions, recomputed here from the norm stats; requests sent before
reading the replies (pipelined) and fragmented messages are answered in order.
"""

import numpy as np
from openpi_client import websocket_client_policy

import common as t

# Both sides compute y * (std + 1e-6) + mean in float64 from the same float32 actions: only the
# last bits of a double may differ (fused multiply-add or not).
REPLY_TOL = 1e-12


def check_reply_against_record(reply, obs, records, stats, what, run_infer=True):
    state_norm = t.normalize_state(t.droid_state(obs), stats)
    n = records.find(state_norm)
    if not t.check(n is not None, f"{what}: a record holds this request's state"):
        return
    rec_in = t.st_read(records.path(n, "inputs"))
    rec_out = t.st_read(records.path(n, "outputs"))
    t.check(rec_in["images"].shape == (1, 3, 224, 224, 3) and rec_in["image_masks"].tolist() == [[1, 1, 0]],
            f"{what}: recorded images [1, 3, 224, 224, 3], masks [1, 1, 0]")
    t.check(rec_in["tokens"].shape == (1, 48) and rec_in["tokens"][0, 0] == 2
            and rec_in["token_mask"][0, 0] == 1, f"{what}: recorded tokens start with <bos>")
    t.check(rec_in["noise"].shape == (1, 10, 32) and int(rec_in["num_steps"][0]) == 10,
            f"{what}: recorded noise [1, 10, 32], 10 steps")
    t.check(np.all(rec_in["state"][0, 8:] == 0), f"{what}: recorded state zero-padded to 32")
    if run_infer:
        t.check(t.infer_matches(n, records), f"{what}: pi0 infer on the recorded inputs gives the "
                "recorded actions (rel L2 <= 1e-6)")
    expected = t.unnormalize_actions(rec_out["actions"][0], stats, 8)
    err = np.abs(reply["actions"] - expected).max()
    t.check(err <= REPLY_TOL * max(1.0, np.abs(expected).max()),
            f"{what}: reply = un-normalized recorded actions[:, :8] (max abs diff {err:.2e})")


def main():
    gen = t.rng()
    stats = t.norm_stats()
    records = t.Records()

    client = websocket_client_policy.WebsocketClientPolicy(t.HOST, t.port())
    t.check(client.get_server_metadata() == {}, "droid metadata is {}")

    # Three requests: client-side resized, a 480x640 camera (server-side resize), channel-first.
    cases = [("224x224 HWC", dict()), ("480x640 HWC", dict(size=(480, 640))),
             ("224x224 CHW", dict(chw=True))]
    prev_infer = None
    for i, (name, kw) in enumerate(cases):
        obs = t.droid_obs(gen, **kw)
        reply = client.infer(obs)
        what = f"request {i} ({name})"
        t.check(list(reply) == ["actions", "policy_timing", "server_timing"],
                f"{what}: reply keys actions, policy_timing, server_timing (got {list(reply)})")
        a = reply["actions"]
        t.check(isinstance(a, np.ndarray) and a.dtype == np.dtype("<f8") and a.shape == (10, 8)
                and a.flags["C_CONTIGUOUS"], f"{what}: actions <f8 [10, 8]")
        pt, st = reply["policy_timing"], reply["server_timing"]
        t.check(set(pt) == {"infer_ms"} and isinstance(pt["infer_ms"], float) and pt["infer_ms"] > 0,
                f"{what}: policy_timing = {{infer_ms}} > 0")
        t.check(isinstance(st.get("infer_ms"), float) and st["infer_ms"] >= pt["infer_ms"],
                f"{what}: server_timing.infer_ms >= policy_timing.infer_ms")
        if i == 0:
            t.check(set(st) == {"infer_ms"}, f"{what}: no prev_total_ms in the first reply")
        else:
            # The previous exchange's total includes its server-side inference time.
            t.check(set(st) == {"infer_ms", "prev_total_ms"} and st["prev_total_ms"] >= prev_infer,
                    f"{what}: prev_total_ms present and >= the previous infer_ms")
        prev_infer = st["infer_ms"]
        check_reply_against_record(reply, obs, records, stats, what)

    # Pipelined: three requests sent before reading; fragmented: one message in 7 frames.
    ws, meta = t.ws_connect("/some/path")
    t.check(meta == b"\x80", "metadata on any path is the single byte 0x80")
    sent = [t.droid_obs(gen) for _ in range(3)]
    for obs in sent:
        ws.send(t.pack(obs))
    for i, obs in enumerate(sent):
        data = ws.recv(timeout=120)
        t.check(isinstance(data, bytes), f"pipelined reply {i} is binary")
        check_reply_against_record(t.unpack(data), obs, records, stats, f"pipelined request {i}",
                                   run_infer=False)
    obs = t.droid_obs(gen)
    data = t.pack(obs)
    step = len(data) // 7 + 1
    ws.send([data[k:k + step] for k in range(0, len(data), step)])
    reply = ws.recv(timeout=120)
    t.check(isinstance(reply, bytes), "fragmented request answered with a binary reply")
    check_reply_against_record(t.unpack(reply), obs, records, stats, "fragmented request",
                               run_infer=False)
    ws.close()
    t.finish()


if __name__ == "__main__":
    main()
