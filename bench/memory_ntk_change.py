#!/usr/bin/env python3
"""Target 5: peak memory of the NTK change on N = 2000 pairs (4000 inputs), K = 10.

One float32 NTK tensor [4000, 4000, 10, 10] is 6.4 GB. ``model_ntk_change`` between a
TwoLayerNet at initialization and the same net after 10 epochs of gradient descent
(M = 512, tanh, float32, lr = 0.5), on the 4000 training inputs, in a fresh subprocess; the
peak resident set size (``ru_maxrss``) of that process is the measurement, the whole
process included (Python, torch, data, training), and the goal is peak <= 1.3 x one NTK
tensor. For comparison, at N = 300 pairs, the same change computed naively
(``ntk_change(empirical_ntk(m0, Z), empirical_ntk(mt, Z))``: both kernels whole) in its
own subprocess, and the two values compared. On CUDA the device's peak allocation
(``torch.cuda.max_memory_allocated``) is reported as well.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import _common as C

NAME = "memory_ntk_change"
K, D = 10, 784
GOAL = 1.3


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def worker(mode: str, n_pairs: int, M: int, device: str, epochs: int) -> dict:
    import torch

    from widessl.models import TwoLayerNet
    from widessl.ntk import empirical_ntk, model_ntk_change, ntk_change
    from widessl.train import ConvergenceRule, train

    dev = torch.device(device)
    A, B = C.mnist_pairs(n_pairs, dev)
    Z = torch.cat([A, B])
    net = TwoLayerNet(D, M, K, "tanh", seed=0, dtype=torch.float32, device=dev)
    res = train(net, A, B, lr=0.5, max_epochs=epochs, convergence=ConvergenceRule(rtol=0.0, atol=0.0))
    model_0 = res.model_0
    before = _rss_bytes()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    t = time.perf_counter()
    if mode == "blocked":
        change = model_ntk_change(model_0, net, Z)
    else:
        change = ntk_change(empirical_ntk(model_0, Z), empirical_ntk(net, Z))
    C.sync(dev)
    out = {"mode": mode, "n_pairs": n_pairs, "n_inputs": 2 * n_pairs, "M": M, "K": K, "epochs": epochs,
           "ntk_change": change, "seconds": time.perf_counter() - t,
           "rss_peak_before_ntk_bytes": before, "rss_peak_bytes": _rss_bytes(),
           "one_ntk_float32_bytes": (2 * n_pairs) ** 2 * K * K * 4, "loss_first_last": [res.losses[0], res.losses[-1]]}
    if dev.type == "cuda":
        out["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
        out["cuda_before_bytes"] = cuda_before
    return out


def spawn(mode: str, n_pairs: int, M: int, device: str, epochs: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--n-pairs", str(n_pairs), "--M", str(M),
           "--epochs", str(epochs), "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    dev = str(args.device)
    n_pairs, M = (500, 256) if args.quick else (2000, 512)
    main_row = spawn("blocked", n_pairs, M, dev, 10)
    one = main_row["one_ntk_float32_bytes"]
    main_row["ratio_peak_to_one_ntk"] = main_row["rss_peak_bytes"] / one
    main_row["ratio_increase_to_one_ntk"] = (main_row["rss_peak_bytes"] - main_row["rss_peak_before_ntk_bytes"]) / one
    print(f"blocked, N={n_pairs} pairs, M={M}: change {main_row['ntk_change']:.6f} in {main_row['seconds']:.1f} s, "
          f"peak RSS {main_row['rss_peak_bytes'] / 1e9:.2f} GB = {main_row['ratio_peak_to_one_ntk']:.3f} x one "
          f"float32 NTK ({one / 1e9:.2f} GB); before the NTK {main_row['rss_peak_before_ntk_bytes'] / 1e9:.2f} GB")
    small = 300
    blocked_s = spawn("blocked", small, M, dev, 10)
    naive_s = spawn("naive", small, M, dev, 10)
    for r in (blocked_s, naive_s):
        r["ratio_peak_to_one_ntk"] = r["rss_peak_bytes"] / r["one_ntk_float32_bytes"]
        r["ratio_increase_to_one_ntk"] = (r["rss_peak_bytes"] - r["rss_peak_before_ntk_bytes"]) / r["one_ntk_float32_bytes"]
    agree = abs(blocked_s["ntk_change"] - naive_s["ntk_change"]) / naive_s["ntk_change"]
    print(f"N={small} pairs: blocked increase {blocked_s['ratio_increase_to_one_ntk']:.2f} x one NTK, naive "
          f"{naive_s['ratio_increase_to_one_ntk']:.2f} x; values agree to {agree:.1e}")
    ok = main_row["ratio_peak_to_one_ntk"] <= GOAL
    return {
        "target": 5, "title": "Memory of the NTK change, N = 2000 pairs, K = 10",
        "goal": f"peak resident memory <= {GOAL} x one float32 NTK tensor ({one / 1e9:.1f} GB)",
        "baseline": "one float32 NTK tensor [2N, 2N, K, K]; and the naive two-whole-kernels computation at N = 300",
        "main": main_row, "small_blocked": blocked_s, "small_naive": naive_s, "small_rel_agreement": agree,
        "met": ok,
        "summary": (f"peak {main_row['rss_peak_bytes'] / 1e9:.2f} GB = {main_row['ratio_peak_to_one_ntk']:.2f} x "
                    f"one NTK ({one / 1e9:.1f} GB), {main_row['seconds']:.0f} s"),
        "machine": C.machine(dev), "quick": args.quick,
    }


def main(argv=None) -> dict:
    if argv is None:
        argv = sys.argv[1:]
    if "--worker" in argv:
        import argparse

        ap = argparse.ArgumentParser()
        ap.add_argument("--worker")
        ap.add_argument("--n-pairs", type=int)
        ap.add_argument("--M", type=int)
        ap.add_argument("--epochs", type=int)
        ap.add_argument("--device", default="cpu")
        a = ap.parse_args(argv)
        print(json.dumps(worker(a.worker, a.n_pairs, a.M, a.device, a.epochs)))
        return {}
    return C.bench_main(NAME, __doc__, run, argv)


if __name__ == "__main__":
    main()
