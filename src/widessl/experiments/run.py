"""One run of the paper's protocol: train the network, measure its NTK drift, train its kernel
models for the same number of epochs from the same f_0, and compare representations."""

from __future__ import annotations

import time
from typing import Any

import torch

from widessl._validation import resolve_device, resolve_dtype
from widessl.data import Augmentation, load_mnist, make_pairs
from widessl.experiments.config import RunConfig
from widessl.kernel import KernelModel, LinearizedTwoLayer, representation_distance
from widessl.losses import get_loss
from widessl.models import DeepNet, TwoLayerNet
from widessl.ntk import analytic_ntk, empirical_ntk, model_ntk_change
from widessl.train import ConvergenceRule, train

RESULT_KEYS = (
    "initial_loss", "final_loss", "epochs", "ntk_change", "param_distance",
    "rep_distance_train", "rep_distance_heldout",
)


def build_model(cfg: RunConfig, d: int) -> torch.nn.Module:
    common = dict(activation=cfg.activation, bias=cfg.bias, sigma_w=cfg.sigma_w, sigma_b=cfg.sigma_b,
                  seed=cfg.seed, dtype=resolve_dtype(cfg.dtype), device=resolve_device(cfg.device))
    if cfg.arch == "two_layer":
        return TwoLayerNet(d, cfg.width, cfg.outputs, **common)
    return DeepNet(d, cfg.width, cfg.outputs, depth=cfg.depth, **common)


def build_loss(cfg: RunConfig):
    if cfg.offdiag_weight is None:
        return get_loss(cfg.loss)
    if cfg.loss in ("weighted", "standardized"):
        return get_loss(cfg.loss, lambda_=cfg.offdiag_weight)
    return get_loss(cfg.loss, offdiag_weight=cfg.offdiag_weight)


def load_pairs(cfg: RunConfig, dataset=None):
    dataset = dataset if dataset is not None else load_mnist(cfg.source, cfg.split)
    aug = Augmentation(rotation_deg=cfg.rotation_deg, shift_px=cfg.shift_px, noise_std=cfg.noise_std)
    return make_pairs(dataset, cfg.n_pairs, n_heldout=cfg.n_heldout, augmentation=aug,
                      both_views=cfg.both_views, seed=cfg.seed)


def run(cfg: RunConfig, *, dataset=None, progress: bool = False) -> dict[str, Any]:
    """Run ``cfg`` end to end and return the measured quantities (plain floats/ints).

    Keys: initial_loss, final_loss, epochs (to convergence), converged, epochs_run,
    ntk_change (on Z), ntk_change_heldout, param_distance, rep_distance_train /
    rep_distance_heldout (network vs. kernel model with Theta_0, i.e. the linearized network),
    their ``_aligned`` (Procrustes) versions, rep_distance_train_inf / _heldout_inf
    (vs. the Theta_inf kernel model), kernel_final_loss, kernel_inf_final_loss, wall_seconds.
    """
    start = time.perf_counter()
    cfg.validate()
    dtype, device = resolve_dtype(cfg.dtype), resolve_device(cfg.device)
    pairs = load_pairs(cfg, dataset)
    t = pairs.tensors(dtype=dtype, device=device)
    A, A_plus, Z = t["A"], t["A_plus"], t["Z"]
    Zh = t["Z_heldout"] if pairs.n_heldout > 0 else None
    model = build_model(cfg, pairs.d)
    loss = build_loss(cfg)
    rule = ConvergenceRule(rtol=cfg.rtol, patience=cfg.patience, atol=cfg.atol)

    result = train(model, A, A_plus, loss=loss, lr=cfg.lr, max_epochs=cfg.max_epochs,
                   convergence=rule, progress=progress)
    model_0, T = result.model_0, result.epochs_run
    out: dict[str, Any] = {
        "initial_loss": result.initial_loss,
        "final_loss": result.final_loss,
        "epochs": result.epochs,
        "converged": result.converged,
        "epochs_run": T,
        "param_distance": result.param_distance,
        "train_seconds": result.wall_seconds,
    }
    out["ntk_change"] = model_ntk_change(model_0, model, Z, ord=cfg.ntk_ord)
    out["ntk_change_heldout"] = model_ntk_change(model_0, model, Zh, ord=cfg.ntk_ord) if Zh is not None else None

    with torch.no_grad():
        F_net, F_net_h = model(Z), (model(Zh) if Zh is not None else None)
        F0, F0_h = model_0(Z), (model_0(Zh) if Zh is not None else None)

    # Kernel model with Theta_0 (= the linearized network), same epochs, lr and f_0.
    if isinstance(model_0, TwoLayerNet):
        lin = LinearizedTwoLayer(model_0, A, A_plus, loss=loss, lr=cfg.lr).fit(T, progress=progress)
        F_k, F_k_h = lin.F, (lin.predict(Zh) if Zh is not None else None)
        k_loss = lin.losses[-1]
    else:
        km = KernelModel(empirical_ntk(model_0, Z), F0, loss=loss, lr=cfg.lr).fit(T, progress=progress)
        F_k = km.F
        F_k_h = km.predict(empirical_ntk(model_0, Zh, Z), F0_h) if Zh is not None else None
        k_loss = km.losses[-1]
    out["kernel_final_loss"] = k_loss
    out["rep_distance_train"] = representation_distance(F_net, F_k)
    out["rep_distance_train_aligned"] = representation_distance(F_net, F_k, align=True)
    out["rep_distance_heldout"] = representation_distance(F_net_h, F_k_h) if Zh is not None else None
    out["rep_distance_heldout_aligned"] = (
        representation_distance(F_net_h, F_k_h, align=True) if Zh is not None else None
    )

    # Kernel model with the infinite-width NTK, started from the same finite-width f_0.
    if cfg.kernel_inf:
        kw = dict(activation=cfg.activation, depth=cfg.depth, bias=cfg.bias, sigma_w=cfg.sigma_w, sigma_b=cfg.sigma_b)
        theta_inf = analytic_ntk(Z, **kw)
        kinf = KernelModel(theta_inf, F0, loss=loss, lr=cfg.lr).fit(T)
        out["kernel_inf_final_loss"] = kinf.losses[-1]
        out["rep_distance_train_inf"] = representation_distance(F_net, kinf.F)
        out["rep_distance_heldout_inf"] = (
            representation_distance(F_net_h, kinf.predict(analytic_ntk(Zh, Z, **kw), F0_h)) if Zh is not None else None
        )
    else:
        out["kernel_inf_final_loss"] = out["rep_distance_train_inf"] = out["rep_distance_heldout_inf"] = None
    out["wall_seconds"] = time.perf_counter() - start
    return {k: (float(v) if isinstance(v, float) else v) for k, v in out.items()}
