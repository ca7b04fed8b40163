"""The sweeps of ``widessl theory``: width M (Theorem 3.1 quantities) and sample size N
(generalization gap and bound), appended record by record to ``theory.jsonl``.

Width record (``kind = "width"``), one per (M, seed): a two-layer network trained on N pairs
to convergence; :func:`~widessl.theory.ntk_bound.measure_ntk_bound` on the 2N training inputs.

Sample-size records, per (N, seed): ``kind = "kernel"``: the centred kernel model (f_0 = 0,
Theta_inf, started from a small random RKHS function), its B, kappa_bar, the bound of
:mod:`widessl.theory.generalization` and the measured gap; ``kind = "network"`` per network
width: the trained network's gap and the finite-width bound (the bound for its own Theta_inf
kernel model, started from the network's f_0, plus the measured network-kernel distance).

Resuming: each record carries a ``key`` (kind, point, seed and a hash of the settings it depends
on); a rerun into the same folder skips every key present.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from widessl._io import append_jsonl, read_jsonl
from widessl.data import Augmentation, load_mnist, make_pairs, unit_normalize
from widessl.errors import ConfigError, DivergenceError
from widessl.kernel import KernelModel, representation_distance
from widessl.models import TwoLayerNet
from widessl.theory.generalization import (
    correlation_distance,
    finite_width_bound,
    generalization_terms,
    population_bt_loss,
    rkhs_norm,
)
from widessl.theory.hessian import hessian_norm, hessian_spectral_norm
from widessl.theory.ntk_bound import measure_ntk_bound
from widessl.theory.profile import TheoryProfile
from widessl.ntk.sphere import SphereKernel
from widessl.train import ConvergenceRule, train

RECORDS_FILE = "theory.jsonl"
WIDTH_KEYS = ("M", "seed", "hessian_norm_init", "hessian_norm_final", "c0", "param_distance", "ntk_change",
              "ntk_change_bound")
SAMPLE_KEYS = ("N", "seed", "B", "kappa_bar", "bound", "gap")

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _rule(c: dict) -> ConvergenceRule:
    return ConvergenceRule(rtol=c["rtol"], patience=c["patience"], atol=c["atol"])


def _augmentation(c: dict) -> Augmentation:
    return Augmentation(rotation_deg=c["rotation_deg"], shift_px=c["shift_px"], noise_std=c["noise_std"])


def width_key(prof: TheoryProfile, M: int, seed: int) -> str:
    return f"width/M={M}/seed={seed}/{prof.section_hash('width')}"


def kernel_key(prof: TheoryProfile, N: int, seed: int) -> str:
    return f"kernel/N={N}/seed={seed}/{prof.section_hash('samples')}"


def network_key(prof: TheoryProfile, N: int, M: int, seed: int) -> str:
    return f"network/N={N}/M={M}/seed={seed}/{prof.section_hash('samples')}"


# --------------------------------------------------------------------------------------------
# Width sweep
# --------------------------------------------------------------------------------------------
def width_point(prof: TheoryProfile, M: int, seed: int, dataset) -> dict[str, Any]:
    """Train one network of width M and measure every quantity of the Theorem 3.1 bound."""
    c, w = prof.common, prof.width
    start = time.perf_counter()
    pairs = make_pairs(dataset, w["n_pairs"], n_heldout=0, augmentation=_augmentation(c), seed=seed)
    t = pairs.tensors(dtype=torch.float64)
    net = TwoLayerNet(pairs.d, M, c["outputs"], c["activation"], seed=seed)
    result = train(net, t["A"], t["A_plus"], lr=c["lr"], max_epochs=c["max_epochs"], convergence=_rule(c))
    meas = measure_ntk_bound(result.model_0, net, t["Z"], segment_points=w["segment_points"])
    rec: dict[str, Any] = {"kind": "width", "key": width_key(prof, M, seed), "M": M, "N": w["n_pairs"],
                           "seed": seed, **meas.to_dict(), "epochs": result.epochs, "converged": result.converged,
                           "epochs_run": result.epochs_run, "final_loss": result.final_loss,
                           "param_distance_train": result.param_distance}
    if w["lanczos_check"]:
        value, (i, k) = hessian_norm(result.model_0, t["Z"], return_argmax=True)
        est = hessian_spectral_norm(result.model_0, t["Z"][i], k, method="lanczos", steps=30, tol=1e-12)
        rec["hessian_norm_init_lanczos"] = est.norm
        rec["hessian_lanczos_rel_diff"] = abs(est.norm - value) / value
    rec["wall_seconds"] = time.perf_counter() - start
    return rec


# --------------------------------------------------------------------------------------------
# Sample-size sweep
# --------------------------------------------------------------------------------------------
class _SampleData:
    """Training pairs, fresh held-out pairs and the Theta_inf kernels for one (N, seed)."""

    def __init__(self, prof: TheoryProfile, N: int, seed: int, dataset, kernel: SphereKernel):
        c, s = prof.common, prof.samples
        if N + 2 > len(dataset):
            raise ConfigError(f"samples.sizes holds N={N} but the data have only {len(dataset)} images")
        aug = _augmentation(c)
        n_images = min(s["heldout_images"], len(dataset) - N)
        pairs = make_pairs(dataset, N, n_heldout=n_images, augmentation=aug, seed=seed)
        t = pairs.tensors(dtype=torch.float64)
        self.N, self.pairs = N, pairs
        self.A, self.A_plus, self.Z = t["A"], t["A_plus"], t["Z"]
        fa, fb = [t["heldout_A"]], [t["heldout_A_plus"]]
        images = dataset.images[pairs.heldout_index]
        for draw in range(1, s["draws"]):
            ra, rb = (np.random.default_rng(q) for q in np.random.SeedSequence([seed, 7919, draw]).spawn(2))
            fa.append(torch.tensor(unit_normalize(aug(images, ra)), dtype=torch.float64))
            fb.append(torch.tensor(unit_normalize(aug(images, rb)), dtype=torch.float64))
        self.Fa, self.Fb = torch.cat(fa), torch.cat(fb)
        self.groups = torch.arange(n_images).repeat(s["draws"])
        self.n_images = n_images
        self.K_zz = kernel(self.Z)
        self.K_az = kernel(self.Fa, self.Z)
        self.K_bz = kernel(self.Fb, self.Z)


def kernel_point(prof: TheoryProfile, data: _SampleData, seed: int, kappa_bar: float) -> dict[str, Any]:
    """The centred kernel model (f = W^T phi): trained B, training loss, population loss, bound."""
    c, s = prof.common, prof.samples
    start = time.perf_counter()
    N, K = data.N, c["outputs"]
    g = torch.Generator().manual_seed(10_000 + seed)
    c_init = torch.randn(2 * N, K, generator=g, dtype=torch.float64)
    F_init = data.K_zz @ c_init
    scale = s["init_scale"] / float(F_init.pow(2).mean().sqrt())
    c_init, F_init = c_init * scale, F_init * scale
    km = KernelModel(data.K_zz, F_init, lr=c["lr"]).fit(convergence=_rule(c), max_epochs=c["max_epochs"])
    coef = c_init + km.c
    B = rkhs_norm(data.K_zz, coef)
    train_loss = km.losses[-1]
    pop = population_bt_loss(data.K_az @ coef, data.K_bz @ coef, data.groups)
    terms = generalization_terms(N, K, B, kappa_bar, s["delta"], train_loss=train_loss,
                                 grid_start=s["grid_start"], grid_ratio=s["grid_ratio"])
    fixed = generalization_terms(N, K, B, kappa_bar, s["delta"], train_loss=train_loss, union=False)
    return {"kind": "kernel", "model": "kernel", "key": kernel_key(prof, N, seed), "N": N, "seed": seed,
            "B": B, "kappa_bar": kappa_bar, "bound": terms.bound, "gap": pop.value - train_loss,
            "train_loss": train_loss, "population_loss": pop.value, "population_loss_se": pop.se,
            "fresh_images": pop.n_groups, "fresh_pairs": pop.n_pairs, "bound_lipschitz": terms.lipschitz,
            "bound_triangle": terms.triangle, "eps": terms.eps, "B_used": terms.B_used,
            "delta_used": terms.delta_used, "bound_fixed_B": fixed.bound,
            "B_init": rkhs_norm(data.K_zz, c_init),
            "epochs": km.converged_epoch if km.converged_epoch is not None else c["max_epochs"],
            "converged": km.converged_epoch is not None, "wall_seconds": time.perf_counter() - start}


def network_point(prof: TheoryProfile, data: _SampleData, M: int, seed: int, kappa_bar: float) -> dict[str, Any]:
    """A network of width M on the same pairs; its gap and the finite-width bound."""
    c, s = prof.common, prof.samples
    start = time.perf_counter()
    N, K = data.N, c["outputs"]
    net = TwoLayerNet(data.Z.shape[1], M, K, c["activation"], seed=seed)
    result = train(net, data.A, data.A_plus, lr=c["lr"], max_epochs=c["max_epochs"], convergence=_rule(c))
    model_0 = result.model_0
    with torch.no_grad():
        f0_z, f0_a, f0_b = model_0(data.Z), model_0(data.Fa), model_0(data.Fb)
        g_z, g_a, g_b = net(data.Z), net(data.Fa), net(data.Fb)
    # The network's kernel model: Theta_inf, the network's own f_0, same lr and epochs (SPEC section 6).
    km = KernelModel(data.K_zz, f0_z, lr=c["lr"]).fit(result.epochs_run)
    k_a, k_b = f0_a + data.K_az @ km.c, f0_b + data.K_bz @ km.c
    B = rkhs_norm(data.K_zz, km.c)
    f0_sup = float(torch.cat([f0_z, f0_a, f0_b]).norm(dim=1).max())
    train_loss = result.final_loss
    pop = population_bt_loss(g_a, g_b, data.groups)
    k_train = km.losses[-1]
    k_pop = population_bt_loss(k_a, k_b, data.groups)
    terms = generalization_terms(N, K, B, kappa_bar, s["delta"], train_loss=k_train, f0_sup=f0_sup,
                                 grid_start=s["grid_start"], grid_ratio=s["grid_ratio"])
    d_pop = correlation_distance(g_a, g_b, k_a, k_b)
    d_train = correlation_distance(g_z[:N], g_z[N:], km.F[:N], km.F[N:])
    bound = finite_width_bound(terms.eps, train_loss, d_pop, d_train)
    return {"kind": "network", "model": "network", "key": network_key(prof, N, M, seed), "N": N, "M": M,
            "seed": seed, "B": B, "kappa_bar": kappa_bar, "bound": bound, "gap": pop.value - train_loss,
            "train_loss": train_loss, "population_loss": pop.value, "population_loss_se": pop.se,
            "f0_sup": f0_sup, "eps": terms.eps, "B_used": terms.B_used, "delta_used": terms.delta_used,
            "dist_population": d_pop, "dist_train": d_train,
            "rep_distance_fresh": representation_distance(torch.cat([g_a, g_b]), torch.cat([k_a, k_b])),
            "rep_distance_train": representation_distance(g_z, km.F),
            "kernel_bound": terms.bound, "kernel_gap": k_pop.value - k_train, "kernel_train_loss": k_train,
            "epochs": result.epochs, "converged": result.converged, "epochs_run": result.epochs_run,
            "param_distance": result.param_distance, "wall_seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------
def planned_keys(prof: TheoryProfile) -> list[str]:
    w, s = prof.width, prof.samples
    keys = [width_key(prof, M, seed) for M in w["widths"] for seed in w["seeds"]]
    for N in s["sizes"]:
        for seed in s["seeds"]:
            keys.append(kernel_key(prof, N, seed))
            if N in s["network_sizes"]:
                keys += [network_key(prof, N, M, seed) for M in s["network_widths"]]
    return keys


def run_theory(prof: TheoryProfile, out: str | Path, *, log: Log | None = _stderr,
               parts: tuple[str, ...] = ("width", "samples")) -> list[dict]:
    """Run (or resume) the sweeps of ``prof`` into ``out/theory.jsonl``; returns the records
    of this profile (finished earlier or now)."""
    log = log or (lambda msg: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RECORDS_FILE
    done = {r.get("key") for r in read_jsonl(path)}
    c, w, s = prof.common, prof.width, prof.samples
    dataset = load_mnist(c["source"])
    start = time.perf_counter()

    def emit(rec: dict) -> None:
        append_jsonl(path, rec)
        done.add(rec["key"])
        what = {"width": f"M={rec.get('M')}", "kernel": f"N={rec.get('N')} kernel",
                "network": f"N={rec.get('N')} M={rec.get('M')} network"}[rec["kind"]]
        if rec.get("diverged"):
            log(f"  {what} seed={rec['seed']}: DIVERGED ({rec['error']})")
            return
        log(f"  {what} seed={rec['seed']}: {rec['wall_seconds']:.1f}s (total {time.perf_counter() - start:.0f}s)")

    def attempt(kind: str, key: str, point: dict, fn: Callable[[], dict]) -> None:
        # A diverging run is recorded (and skipped on resume: it is deterministic) instead of
        # ending the whole sweep; the report lists it and leaves it out of every fit.
        try:
            rec = fn()
        except DivergenceError as exc:
            rec = {"kind": kind, "key": key, **point, "diverged": True, "error": str(exc)}
        emit(rec)

    if "width" in parts:
        todo = [(M, seed) for M in w["widths"] for seed in w["seeds"] if width_key(prof, M, seed) not in done]
        log(f"width sweep: N={w['n_pairs']}, M in {w['widths']}, seeds {w['seeds']} ({len(todo)} to run)")
        for M, seed in todo:
            attempt("width", width_key(prof, M, seed), {"M": M, "N": w["n_pairs"], "seed": seed},
                    lambda: width_point(prof, M, seed, dataset))
    if "samples" in parts:
        kernel = SphereKernel(c["activation"])
        kappa_bar = kernel.kappa_bar
        log(f"sample-size sweep: N in {s['sizes']}, seeds {s['seeds']}, networks M in {s['network_widths']} "
            f"at N in {s['network_sizes']} (kappa_bar = {kappa_bar:.6g})")
        for N in s["sizes"]:
            for seed in s["seeds"]:
                want_k = kernel_key(prof, N, seed) not in done
                want_n = [M for M in s["network_widths"]
                          if N in s["network_sizes"] and network_key(prof, N, M, seed) not in done]
                if not want_k and not want_n:
                    continue
                data = _SampleData(prof, N, seed, dataset, kernel)
                if want_k:
                    attempt("kernel", kernel_key(prof, N, seed), {"N": N, "seed": seed},
                            lambda: kernel_point(prof, data, seed, kappa_bar))
                for M in want_n:
                    attempt("network", network_key(prof, N, M, seed), {"N": N, "M": M, "seed": seed},
                            lambda: network_point(prof, data, M, seed, kappa_bar))
    keys = set(planned_keys(prof))
    return [r for r in read_jsonl(path) if r.get("key") in keys]
