#!/usr/bin/env python3
"""Target 6: how the cost of the NTK and of one training epoch grows with N and M.

Measured (float32, tanh, K = 10, d = 784, embedded MNIST):
- the closed-form two-layer NTK Theta(x, x), full [n, n, K, K], against n at M = 1024 and
  against M at n = 256: theory n^2 M K^2, so exponents 2 (n) and 1 (M);
- one widessl training epoch against N (pairs) at M = 1024 and against M at N = 1000:
  theory N d M in the dense first-layer regime (2N >= d), exponents 1 and 1; and, for
  2N < d, the row-span regime whose cost is (2N)^2 M (exponent 2 in N).
Times are the minimum over repeats (the run least disturbed by other processes; medians
are in the JSON and fitted too). Exponents are least-squares slopes of log(time) on
log(size) over each grid (with a standard error); a plot with the fitted and the theoretical lines goes to
bench/results/scaling.png. Small sizes carry fixed overheads, so measured exponents fall
below the theoretical ones at the bottom of a grid: the fit over the upper half is shown too.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import _common as C
import numpy as np
import torch

from widessl.models import TwoLayerNet
from widessl.ntk import empirical_ntk
from widessl.train import ConvergenceRule, train

NAME = "scaling"
NEVER = ConvergenceRule(rtol=0.0, atol=0.0)
K, D = 10, 784


def fit(xs, ys) -> dict:
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    A = np.vstack([lx, np.ones_like(lx)]).T
    coef, res, *_ = np.linalg.lstsq(A, ly, rcond=None)
    slope, icpt = float(coef[0]), float(coef[1])
    if len(xs) > 2:
        resid = ly - A @ coef
        s2 = float(resid @ resid) / (len(xs) - 2)
        se = math.sqrt(s2 / float(((lx - lx.mean()) ** 2).sum()))
    else:
        se = float("nan")
    return {"exponent": slope, "stderr": se, "intercept": icpt}


def ntk_time(n, M, dev, reps):
    net = TwoLayerNet(D, M, K, "tanh", seed=0, dtype=torch.float32, device=dev)
    x = C.unit_inputs(n, D, dev)
    t = C.timeit(lambda: empirical_ntk(net, x), dev, repeats=reps, warmup=1)
    return t["min_s"], t["median_s"]


def epoch_time(N, M, dev, epochs, pairs_cache):
    if N not in pairs_cache:
        pairs_cache[N] = C.mnist_pairs(N, dev)
    A, B = pairs_cache[N]
    net = TwoLayerNet(D, M, K, "tanh", seed=0, dtype=torch.float32, device=dev)
    stamps = []

    def cb(e, v):
        C.sync(dev)
        stamps.append(time.perf_counter())

    train(net, A, B, lr=0.5, max_epochs=epochs, convergence=NEVER, callback=cb)
    dt = [b - a for a, b in zip(stamps, stamps[1:])]
    return min(dt), statistics.median(dt)


def series(name, xs, fn, theory, note="") -> dict:
    ts, med = [], []
    for x in xs:
        lo, mid = fn(x)
        ts.append(lo)
        med.append(mid)
        print(f"  {name}: {x:5d} -> {ts[-1] * 1e3:9.2f} ms (median {mid * 1e3:.2f})")
    half = len(xs) // 2
    out = {"name": name, "sizes": list(xs), "seconds": ts, "seconds_median": med, "timing": "min over repeats",
           "theory_exponent": theory, "fit_all": fit(xs, ts), "fit_all_medians": fit(xs, med),
           "fit_upper_half": fit(xs[half - 1 if len(xs) > 3 else 0:], ts[half - 1 if len(xs) > 3 else 0:]), "note": note}
    f = out["fit_all"]
    print(f"  {name}: exponent {f['exponent']:.2f} +- {f['stderr']:.2f} (upper half "
          f"{out['fit_upper_half']['exponent']:.2f}), theory {theory}")
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    ncols = 3
    nrows = math.ceil(len(results) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(results):]:
        ax.set_visible(False)
    for ax, r in zip(axes.flat, results):
        xs, ys = np.asarray(r["sizes"], float), np.asarray(r["seconds"], float)
        ax.loglog(xs, ys, "o", color="C0", label="measured")
        f = r["fit_all"]
        ax.loglog(xs, np.exp(f["intercept"]) * xs ** f["exponent"], "-", color="C0",
                  label=f"fit: {f['exponent']:.2f} ± {f['stderr']:.2f}")
        th = r["theory_exponent"]
        ax.loglog(xs, ys[-1] * (xs / xs[-1]) ** th, "--", color="C3", label=f"theory: {th:g}")
        ax.set_title(r["name"], fontsize=9)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{int(v)}" for v in xs], fontsize=8)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(r["xlabel"])
        ax.set_ylabel("seconds")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def run(args) -> dict:
    dev = args.device
    q = args.quick
    reps = 2 if q else 4
    ep = 3 if q else 5
    cache: dict = {}
    res = []
    print("NTK (closed form, full [n, n, K, K]):")
    r = series("NTK vs n (M = 1024)", [32, 64, 128, 256] if q else [64, 128, 256, 512],
               lambda n: ntk_time(n, 1024, dev, reps), 2)
    r["xlabel"] = "n inputs"
    res.append(r)
    r = series("NTK vs M (n = 256)", [256, 512, 1024] if q else [256, 512, 1024, 2048, 4096],
               lambda M: ntk_time(256 if not q else 128, M, dev, reps), 1)
    r["xlabel"] = "width M"
    res.append(r)
    print("training epoch (widessl, structured engine):")
    r = series("epoch vs N, dense (M = 1024)", [400, 800, 1600] if q else [400, 800, 1600, 3200],
               lambda N: epoch_time(N, 1024, dev, ep, cache), 1, "2N >= d: dense first layer, N d M")
    r["xlabel"] = "N pairs"
    res.append(r)
    r = series("epoch vs M (N = 1000)", [256, 512, 1024] if q else [256, 512, 1024, 2048, 4096],
               lambda M: epoch_time(1000, M, dev, ep, cache), 1)
    r["xlabel"] = "width M"
    res.append(r)
    r = series("epoch vs N, row span (M = 4096)", [48, 96, 192] if q else [48, 96, 192, 384],
               lambda N: epoch_time(N, 4096, dev, ep, cache), 2, "2N < d: row-span first layer, (2N)^2 M")
    r["xlabel"] = "N pairs"
    res.append(r)
    png = Path(args.out) / "scaling.png"
    plot(res, png)
    summary = "exponents (upper half of each grid): " + "; ".join(
        f"{r['name'].split(' (')[0]} {r['fit_upper_half']['exponent']:.2f} (theory {r['theory_exponent']:g})" for r in res)
    return {
        "target": 6, "title": "Scaling of the NTK and of a training epoch with N and M",
        "goal": "fitted log-log exponents beside the theoretical ones (n^2 M K^2 for the NTK, N d M for an epoch)",
        "threads": torch.get_num_threads(), "series": res, "plot": str(png.relative_to(C.REPO)) if png.is_relative_to(C.REPO) else str(png),
        "met": None, "summary": summary, "machine": C.machine(dev), "quick": q,
    }


def main(argv=None) -> dict:
    return C.bench_main(NAME, __doc__, run, argv)


if __name__ == "__main__":
    main()
