#!/usr/bin/env python3
"""Target 3: one full-batch training epoch of a two-layer tanh network on Barlow Twins.

N = 1000 positive pairs of embedded MNIST digits (2N = 2000 inputs, d = 784), M = 4096,
K = 10, float32, paper-form loss, lr = 0.5. widessl's ``train`` (structured engine; since
2N > d the first layer is updated densely) against a plain PyTorch loop: nn.Linear layers
(no bias, weights copied from the same TwoLayerNet, output scaled by 1/sqrt(M) as the NTK
parameterization needs), autograd, the Barlow Twins loss written the usual way (on-diagonal
plus off-diagonal terms of C = F_a^T F_b / N), torch.optim.SGD. Both run the same iterates
(their losses are compared); epochs are timed one by one and alternate (a plain-loop epoch
runs from ``train``'s per-epoch callback, outside widessl's timed interval).

Flops per epoch (both do the same GEMMs): forward Z W^T and the weight gradient dH^T Z,
2 * 2N d M each, plus three [2N, M] x K products: 4 * 2N * M * (d + 1.5 K).
Goals: widessl no slower than the plain loop; >= 50% of the float32 GEMM rate measured in
the same run on the two big GEMM shapes ([2N, d] x [d, M] and [M, 2N] x [2N, d]).
An extra row shows the row-span regime (N = 256, 2N < d), where widessl's cost is (2N)^2 M.
"""

from __future__ import annotations

import math
import statistics
import time

import _common as C
import torch
from torch import nn

from widessl.losses import BarlowTwinsLoss
from widessl.models import TwoLayerNet
from widessl.train import ConvergenceRule, train

NAME = "train_epoch"
NEVER = ConvergenceRule(rtol=0.0, atol=0.0)
LR = 0.5


def off_diagonal(c: torch.Tensor) -> torch.Tensor:
    n = c.shape[0]
    return c.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


class PlainLoop:
    """The usual PyTorch way, on the same initial weights."""

    def __init__(self, net: TwoLayerNet, A, B):
        d, M, K = net.d, net.M, net.K
        self.l1 = nn.Linear(d, M, bias=False).to(A.device, A.dtype)
        self.l2 = nn.Linear(M, K, bias=False).to(A.device, A.dtype)
        with torch.no_grad():
            self.l1.weight.copy_(net.W)
            self.l2.weight.copy_(net.V)
        self.A, self.B, self.scale = A, B, 1.0 / math.sqrt(M)
        self.opt = torch.optim.SGD(list(self.l1.parameters()) + list(self.l2.parameters()), lr=LR)
        self.losses = []

    def f(self, x):
        return self.l2(torch.tanh(self.l1(x))) * self.scale

    def epoch(self):
        z = self.f(torch.cat([self.A, self.B]))
        za, zb = z[: self.A.shape[0]], z[self.A.shape[0]:]
        c = za.T @ zb / self.A.shape[0]
        on_diag = torch.diagonal(c).add(-1).pow(2).sum()
        off_diag = off_diagonal(c).pow(2).sum()
        loss = on_diag + off_diag
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.losses.append(loss.item())


def interleaved_epochs(net, A, B, loop, epochs, dev):
    """Run widessl's ``train`` for ``epochs`` epochs and, from its per-epoch callback, one
    plain-loop epoch after each widessl epoch: the two alternate epoch by epoch, so load
    from other processes falls on both alike. Returns (widessl times, plain times, result)."""
    ours, plain = [], []
    last = [None]

    def cb(epoch, value):
        C.sync(dev)
        now = time.perf_counter()
        if last[0] is not None:
            ours.append(now - last[0])
            t = time.perf_counter()
            loop.epoch()
            C.sync(dev)
            plain.append(time.perf_counter() - t)
        last[0] = time.perf_counter()

    res = train(net, A, B, loss=BarlowTwinsLoss(), lr=LR, max_epochs=epochs, convergence=NEVER, callback=cb)
    return ours, plain, res


def case(N, M, dev, rounds, chunk, d=784, K=10):
    A, B = C.mnist_pairs(N, dev)
    net0 = TwoLayerNet(d, M, K, "tanh", seed=0, dtype=torch.float32, device=dev)
    loop = PlainLoop(net0, A, B)
    g1, f1 = C.gemm_fn(2 * N, d, M, dev)
    g2, f2 = C.gemm_fn(M, 2 * N, d, dev)
    loop.epoch()  # warm-up of the plain loop (its losses restart below)
    loop = PlainLoop(net0, A, B)
    ours, plain, gemm_t = [], [], []
    ref_losses = None
    for r in range(rounds):
        net = TwoLayerNet(d, M, K, "tanh", seed=0, dtype=torch.float32, device=dev)
        t_o, t_p, res = interleaved_epochs(net, A, B, loop, chunk, dev)
        ours += t_o
        plain += t_p
        if ref_losses is None:
            ref_losses = res.losses
        gemm_t.append(C.timeit(g1, dev, repeats=2, warmup=1)["median_s"] + C.timeit(g2, dev, repeats=2, warmup=0)["median_s"])
    # widessl's losses L_0..L_chunk-1 vs the plain loop's first chunk (the loss before each step)
    n_cmp = min(chunk, len(loop.losses))
    loss_diff = max(abs(a - b) / abs(b) for a, b in zip(ref_losses[:n_cmp], loop.losses[:n_cmp]))
    flops = 4.0 * 2 * N * M * (d + 1.5 * K)  # the plain loop's GEMMs (and widessl's when 2N >= d)
    regime = "rowspan" if 2 * N < d else "dense"
    # widessl's own count: in the row-span regime Z W^T = Z W_0^T + (Z Z^T) U^T, (2N)^2 M
    flops_ours = flops if regime == "dense" else 2.0 * (2 * N) ** 2 * M + 3 * 2.0 * 2 * N * M * K
    t_ours, t_plain = statistics.median(ours), statistics.median(plain)
    gemm_rate = (f1 + f2) / statistics.median(gemm_t) / 1e9
    row = {
        "N": N, "M": M, "d": d, "K": K, "dtype": "float32", "first_layer": regime,
        "widessl_epoch_s": t_ours, "plain_epoch_s": t_plain, "speedup_vs_plain": t_plain / t_ours,
        "speedup_vs_plain_min_times": min(plain) / min(ours),
        "speedup_vs_plain_paired_median": statistics.median(p / o for p, o in zip(plain, ours)),
        "widessl_epoch_times_s": ours, "plain_epoch_times_s": plain,
        "epochs_timed_each": len(ours), "flops_per_epoch_plain": flops, "flops_per_epoch_widessl": flops_ours,
        "gemm_shapes": [[2 * N, d, M], [M, 2 * N, d]], "gemm_gflops": gemm_rate,
        "widessl_gflops": flops_ours / t_ours / 1e9, "plain_gflops": flops / t_plain / 1e9,
        "widessl_fraction_of_gemm_rate": flops_ours / t_ours / 1e9 / gemm_rate,
        "plain_fraction_of_gemm_rate": flops / t_plain / 1e9 / gemm_rate,
        "max_rel_loss_diff_vs_plain": loss_diff,
    }
    print(f"N={N} M={M} ({regime}): widessl {t_ours * 1e3:.0f} ms/epoch, plain {t_plain * 1e3:.0f} ms "
          f"({row['speedup_vs_plain']:.2f}x); {row['widessl_gflops']:.1f} GFLOP/s = "
          f"{100 * row['widessl_fraction_of_gemm_rate']:.0f}% of GEMM {gemm_rate:.1f} (plain "
          f"{100 * row['plain_fraction_of_gemm_rate']:.0f}%); loss diff {loss_diff:.1e}")
    return row


def run(args) -> dict:
    dev = args.device
    rounds, chunk = (2, 3) if args.quick else (3, 6)
    main_row = case(1000, 4096 if not args.quick else 2048, dev, rounds, chunk)
    extra = case(256, 4096 if not args.quick else 2048, dev, 2, 3)
    ok = main_row["speedup_vs_plain"] >= 1.0 and main_row["widessl_fraction_of_gemm_rate"] >= 0.5
    return {
        "target": 3, "title": "Training epoch, two-layer tanh, N = 1000 pairs, M = 4096, K = 10, float32",
        "goal": "no slower than a plain nn.Linear + autograd loop; >= 50% of the float32 GEMM rate for its flop count",
        "baseline": "nn.Linear (no bias) + tanh + nn.Linear, autograd, Barlow Twins loss as on-/off-diagonal sums, "
                    "torch.optim.SGD, same initial weights",
        "threads": torch.get_num_threads(), "main": main_row, "rowspan_regime": extra, "met": ok,
        "summary": (f"{main_row['speedup_vs_plain']:.2f}x the plain loop; "
                    f"{100 * main_row['widessl_fraction_of_gemm_rate']:.0f}% of GEMM rate"),
        "machine": C.machine(dev), "quick": args.quick,
    }


def main(argv=None) -> dict:
    return C.bench_main(NAME, __doc__, run, argv)


if __name__ == "__main__":
    main()
