#!/usr/bin/env python3
"""Target 1: the two-layer empirical NTK, full [n, n, K, K].

widessl's closed form (``empirical_ntk`` on a TwoLayerNet) against the NTK recipe of
PyTorch's tutorial (torch.func ``vmap(jacrev)`` + einsum) on the same network (identical
weights), where the recipe's Jacobians fit in memory. n in {64, 512}, d = 784, M in
{1024, 4096}, K = 10, float32, tanh, unit-norm MNIST digits as inputs, x2 = x1.

Goals: >= 300x faster than the recipe where it fits; the closed form at >= 40% of the
float32 GEMM rate measured in the same run for the GEMM shape the closed form does,
[nK, M] x [M, nK] (the large square rate is reported beside it).

Flops counted for the closed form: 2 n^2 K^2 M (the GEMM) + 2 n^2 M (the s s' Gram)
+ 2 n d M (pre-activations, once since x2 = x1) + 2 n^2 d (the input Gram).
"""

from __future__ import annotations

import _common as C
import torch

from widessl.models import TwoLayerNet
from widessl.ntk import empirical_ntk

NAME = "ntk_two_layer"
SPEEDUP_GOAL, RATE_GOAL = 300.0, 0.40


def run(args) -> dict:
    dev, K, d = args.device, 10, 784
    cases = [(64, 1024), (64, 4096), (512, 1024), (512, 4096)]
    if args.quick:
        cases = [(64, 1024), (512, 1024)]
    peak = C.peak_gemm_rate(dev, quick=args.quick)
    rows = []
    for n, M in cases:
        net = TwoLayerNet(d, M, K, "tanh", seed=0, dtype=torch.float32, device=dev)
        x = C.unit_inputs(n, d, dev)
        gemm, gflop = C.gemm_fn(n * K, M, n * K, dev)
        flops = 2.0 * n * n * K * K * M + 2.0 * n * n * M + 2.0 * n * d * M + 2.0 * n * n * d
        reps = 3 if (n * M >= 512 * 4096 or args.quick) else 7
        t = C.interleaved({"closed_form": lambda: empirical_ntk(net, x), "gemm": gemm}, dev, repeats=reps)
        ours, g = t["closed_form"]["median_s"], t["gemm"]["median_s"]
        gemm_gflops = gflop / g / 1e9
        row = {
            "n": n, "M": M, "d": d, "K": K, "dtype": "float32",
            "closed_form_s": ours, "closed_form_gflops": flops / ours / 1e9, "flops": flops,
            "gemm_shape": [n * K, M, n * K], "gemm_gflops": gemm_gflops,
            "fraction_of_gemm_rate": flops / ours / 1e9 / gemm_gflops,
            "fraction_of_peak_gemm_rate": flops / ours / 1e9 / peak["gflops"],
        }
        need = C.jacobian_bytes(net, n, K)
        budget = 0.6 * C.memory_available_bytes(dev)
        row["recipe_jacobian_gb"] = need / 1e9
        if args.quick and n * M > 64 * 1024:
            row["recipe"] = "skipped (--quick)"
        elif 1.5 * need > budget:
            row["recipe"] = f"does not fit: Jacobians need {need / 1e9:.1f} GB, budget {budget / 1e9:.1f} GB"
        else:
            C.tutorial_ntk(net, x[:2], x[:2])  # warm-up (vmap/jacrev set-up) on two rows
            theta_ref = None

            def recipe():
                nonlocal theta_ref
                theta_ref = C.tutorial_ntk(net, x, x)

            tr = C.timeit(recipe, dev, repeats=1, warmup=0)["median_s"]
            theta = empirical_ntk(net, x)
            row.update({"recipe": "ran", "recipe_s": tr, "speedup": tr / ours,
                        "rel_diff_vs_recipe": C.rel_err(theta, theta_ref)})
            del theta_ref, theta
        row["speedup_met"] = None if "speedup" not in row else row["speedup"] >= SPEEDUP_GOAL
        row["rate_met"] = row["fraction_of_gemm_rate"] >= RATE_GOAL
        print(f"n={n:4d} M={M:5d}: closed form {ours * 1e3:8.1f} ms, {row['closed_form_gflops']:6.1f} GFLOP/s "
              f"= {100 * row['fraction_of_gemm_rate']:5.1f}% of GEMM {gemm_gflops:.1f} GFLOP/s"
              + (f"; recipe {row['recipe_s']:.2f} s -> {row['speedup']:.0f}x (rel diff {row['rel_diff_vs_recipe']:.1e})"
                 if "speedup" in row else f"; recipe {row['recipe']}"))
        rows.append(row)
    speed = [r["speedup"] for r in rows if "speedup" in r]
    frac = [r["fraction_of_gemm_rate"] for r in rows]
    ok = bool(speed) and min(speed) >= SPEEDUP_GOAL and min(frac) >= RATE_GOAL
    summary = (f"{min(speed):.0f}-{max(speed):.0f}x vs tutorial recipe where it fits; "
               f"{100 * min(frac):.0f}-{100 * max(frac):.0f}% of GEMM rate") if speed else "recipe did not run"
    return {
        "target": 1, "title": "Two-layer empirical NTK, full [n, n, K, K]",
        "goal": f">= {SPEEDUP_GOAL:.0f}x the torch.func tutorial recipe where it fits; >= {100 * RATE_GOAL:.0f}% of the float32 GEMM rate",
        "baseline": "PyTorch tutorial NTK recipe: vmap(jacrev) per-example Jacobians + einsum('Naf,Mbf->NMab'), "
                    "Jacobian computed once since x2 = x1, same TwoLayerNet (identical weights)",
        "threads": torch.get_num_threads(), "peak_gemm": peak, "cases": rows,
        "met": ok, "summary": summary, "machine": C.machine(dev), "quick": args.quick,
    }


def main(argv=None) -> dict:
    return C.bench_main(NAME, __doc__, run, argv)


if __name__ == "__main__":
    main()
