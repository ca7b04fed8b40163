#!/usr/bin/env python3
"""Target 2: the generic empirical NTK of an arbitrary nn.Module.

A 3-hidden-layer MLP (nn.Sequential of nn.Linear + activation, d = 784, K = 10, float32):
widessl's generic path (``empirical_ntk`` 'auto' = structured derivatives, per-layer backward
x forward Grams) against the jacrev-and-contract recipe of PyTorch's NTK tutorial and
against widessl's own ``method='jacobian'`` (the same recipe, blocked), in the same run.

Goal: >= 3x faster than the recipe at equal accuracy. Accuracy: each float32 result
against a float64 reference (the structured path in float64, itself checked against the
float64 Jacobian contraction on a sub-block here and to 1e-10 in tests/test_ntk_generic.py).
"""

from __future__ import annotations

import _common as C
import torch
from torch import nn

from widessl.ntk import empirical_ntk, jacobian_ntk

NAME = "ntk_generic"
GOAL = 3.0


def make_mlp(width: int, act, bias: bool, K: int = 10, d: int = 784, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers, d_in = [], d
    for _ in range(3):
        layers += [nn.Linear(d_in, width, bias=bias), act()]
        d_in = width
    layers.append(nn.Linear(d_in, K, bias=bias))
    return nn.Sequential(*layers)


def run(args) -> dict:
    dev, K, d = args.device, 10, 784
    cases = [dict(width=512, n=64, act="tanh", bias=True), dict(width=256, n=64, act="relu", bias=False)]
    if not args.quick:
        cases.append(dict(width=1024, n=32, act="tanh", bias=True))
    acts = {"tanh": nn.Tanh, "relu": nn.ReLU}
    rows = []
    for c in cases:
        net = make_mlp(c["width"], acts[c["act"]], c["bias"]).to(dev)
        net64 = make_mlp(c["width"], acts[c["act"]], c["bias"]).to(dev).double()
        x = C.unit_inputs(c["n"], d, dev)
        x64 = x.double()
        P = sum(p.numel() for p in net.parameters())
        row = dict(c, d=d, K=K, P=P, dtype="float32")
        need = C.jacobian_bytes(net, c["n"], K)
        if 1.5 * need > 0.6 * C.memory_available_bytes(dev):
            row["recipe"] = f"does not fit ({need / 1e9:.1f} GB of Jacobians)"
            rows.append(row)
            continue
        ref = empirical_ntk(net64, x64, method="structured")
        sub = slice(0, 8)
        row["structured_vs_jacobian_float64_rel_diff"] = C.rel_err(
            empirical_ntk(net64, x64[sub], method="structured"), jacobian_ntk(net64, x64[sub], x64[sub]))
        out = {}
        fns = {
            "structured": lambda: out.__setitem__("structured", empirical_ntk(net, x)),
            "recipe": lambda: out.__setitem__("recipe", C.tutorial_ntk(net, x, x)),
        }
        if not rows:  # widessl's own Jacobian path, on the first case only (it is not the target's baseline)
            fns["widessl_jacobian"] = lambda: out.__setitem__(
                "widessl_jacobian", empirical_ntk(net, x, method="jacobian"))
        C.tutorial_ntk(net, x[:2], x[:2])
        t = C.interleaved(fns, dev, repeats=1, warmup=0)
        ts = C.timeit(fns["structured"], dev, repeats=5)  # the fast one gets its own repeats
        row["structured_s"] = ts["median_s"]
        row["recipe_s"] = t["recipe"]["median_s"]
        row["speedup_vs_recipe"] = row["recipe_s"] / row["structured_s"]
        if "widessl_jacobian" in t:
            row["widessl_jacobian_s"] = t["widessl_jacobian"]["median_s"]
            row["speedup_vs_widessl_jacobian"] = row["widessl_jacobian_s"] / row["structured_s"]
        for k in fns:
            row[f"{k}_rel_err_vs_float64"] = C.rel_err(out[k], ref)
        row["met"] = row["speedup_vs_recipe"] >= GOAL and \
            row["structured_rel_err_vs_float64"] <= 2 * row["recipe_rel_err_vs_float64"] + 1e-6
        print(f"MLP 784-{c['width']}x3-10 {c['act']} bias={c['bias']} n={c['n']}: structured {row['structured_s'] * 1e3:.0f} ms, "
              f"recipe {row['recipe_s']:.2f} s ({row['speedup_vs_recipe']:.0f}x)"
              + (f", widessl jacobian {row['widessl_jacobian_s']:.2f} s" if "widessl_jacobian_s" in row else "")
              + f"; float32 errors {row['structured_rel_err_vs_float64']:.1e} "
              f"vs {row['recipe_rel_err_vs_float64']:.1e}")
        rows.append(row)
        del out, ref
    ran = [r for r in rows if "speedup_vs_recipe" in r]
    ok = bool(ran) and all(r["met"] for r in ran)
    sp = [r["speedup_vs_recipe"] for r in ran]
    return {
        "target": 2, "title": "Generic NTK of an nn.Module (3-hidden-layer MLP, K = 10)",
        "goal": f">= {GOAL:.0f}x the jacrev-and-contract recipe at equal accuracy",
        "baseline": "PyTorch tutorial recipe: vmap(jacrev) + einsum, Jacobian computed once since x2 = x1; "
                    "also widessl method='jacobian'",
        "method": "widessl.ntk.empirical_ntk(model, x) -> 'structured' (widessl.ntk.generic)",
        "threads": torch.get_num_threads(), "cases": rows, "met": ok,
        "summary": f"{min(sp):.0f}-{max(sp):.0f}x vs recipe, same float32 error" if sp else "recipe did not run",
        "machine": C.machine(dev), "quick": args.quick,
    }


def main(argv=None) -> dict:
    return C.bench_main(NAME, __doc__, run, argv)


if __name__ == "__main__":
    main()
