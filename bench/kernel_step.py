#!/usr/bin/env python3
"""Target 4: one step of kernelized Barlow Twins with the infinite-width NTK Theta_inf.

Theta_inf = Theta_s (x) I_K (tanh, analytic_ntk on Z, the 2N unit-norm MNIST inputs),
F_0 from a TwoLayerNet at initialization, K = 10, lr = 0.5. The Kronecker path (one
[2N, 2N] x [2N, K] product per step) against the dense path (the (2NK) x (2NK) matrix
times a vector), same F_0, same steps: per-step time (median) and the results after the
same number of epochs (losses and F must agree to rounding).

Goal: Kronecker >= K times faster than dense, identical results. Sizes: N = 1000 pairs in
float32 (dense matrix 1.6 GB) and N = 500 pairs in float64 (dense 0.8 GB), for the
identity check at float64 precision.
"""

from __future__ import annotations

import _common as C
import torch

from widessl.kernel import KernelModel
from widessl.models import TwoLayerNet
from widessl.ntk import analytic_ntk

NAME = "kernel_step"
K = 10


def case(N: int, dtype, dev, steps: int, epochs: int) -> dict:
    A, B = C.mnist_pairs(N, dev, dtype=dtype)
    Z = torch.cat([A, B])
    theta = analytic_ntk(Z, activation="tanh")
    net = TwoLayerNet(784, 1024, K, "tanh", seed=0, dtype=dtype, device=dev)
    with torch.no_grad():
        F0 = net(Z)
    kr = KernelModel(theta, F0, lr=0.5, path="kronecker")
    C.sync(dev)
    build = C.timeit(lambda: KernelModel(theta, F0, lr=0.5, path="dense"), dev, repeats=1, warmup=0)["median_s"]
    de = KernelModel(theta, F0, lr=0.5, path="dense")
    # timing: fresh models stepped alternately from the same F_0
    t = C.interleaved({"kronecker": kr.step, "dense": de.step}, dev, repeats=steps, warmup=1)
    kr2 = KernelModel(theta, F0, lr=0.5, path="kronecker").fit(epochs=epochs)
    de2 = KernelModel(theta, F0, lr=0.5, path="dense").fit(epochs=epochs)
    loss_diff = max(abs(a - b) / abs(b) for a, b in zip(kr2.losses, de2.losses))
    row = {
        "N": N, "two_N_K": 2 * N * K, "K": K, "dtype": str(dtype).replace("torch.", ""),
        "kronecker_step_s": t["kronecker"]["median_s"], "dense_step_s": t["dense"]["median_s"],
        "speedup": t["dense"]["median_s"] / t["kronecker"]["median_s"],
        "dense_build_s": build, "dense_matrix_gb": (2 * N * K) ** 2 * theta.element_size() / 1e9,
        "epochs_compared": epochs, "max_rel_loss_diff": loss_diff, "rel_F_diff": C.rel_err(de2.F, kr2.F),
        "loss_first_last": [kr2.losses[0], kr2.losses[-1]],
    }
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    row["identical"] = loss_diff <= tol and row["rel_F_diff"] <= tol
    row["met"] = row["speedup"] >= K and row["identical"]
    print(f"N={N} {row['dtype']}: kronecker {row['kronecker_step_s'] * 1e3:.2f} ms/step, dense "
          f"{row['dense_step_s'] * 1e3:.1f} ms/step ({row['speedup']:.0f}x); after {epochs} epochs rel diff "
          f"F {row['rel_F_diff']:.1e}, losses {loss_diff:.1e}")
    return row


def run(args) -> dict:
    dev = args.device
    steps, epochs = (5, 20) if args.quick else (15, 50)
    rows = [case(500 if args.quick else 1000, torch.float32, dev, steps, epochs),
            case(250 if args.quick else 500, torch.float64, dev, steps, epochs)]
    ok = all(r["met"] for r in rows)
    sp = [r["speedup"] for r in rows]
    return {
        "target": 4, "title": "Kernel model step with Theta_inf: Kronecker vs dense (2NK x 2NK)",
        "goal": f">= K = {K} times faster, identical results",
        "baseline": "KernelModel(path='dense'): the same kernel expanded to (2NK) x (2NK)",
        "threads": torch.get_num_threads(), "cases": rows, "met": ok,
        "summary": f"{min(sp):.0f}-{max(sp):.0f}x, results equal to "
                   f"{max(r['rel_F_diff'] for r in rows):.0e}",
        "machine": C.machine(dev), "quick": args.quick,
    }


def main(argv=None) -> dict:
    return C.bench_main(NAME, __doc__, run, argv)


if __name__ == "__main__":
    main()
