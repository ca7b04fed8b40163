r"""The gradient bound c_0 and the radius R of Theorem 3.1 / 4.1 (SPEC section 8).

c_0 = max over inputs a and outputs k of ||grad_theta f_k(a)||_2. The squared gradient norm is
the NTK's diagonal, ||grad_theta f_k(a)||^2 = Theta(a, a)_kk; for
:class:`~widessl.models.TwoLayerNet` in closed form,

    ||grad_theta f_k(a)||^2 = (1/M) sum_m s(h_m)^2 + q (1/M) sum_m V_km^2 s'(h_m)^2,
    q = sigma_w^2 ||a||^2 (+ sigma_b^2 with bias),

(the first term is the V_k-gradient, the second the (W, b)-gradient), so c_0 -> sqrt(sup_a
Theta_inf(a, a)) as M -> infinity: flat in M. Any other module: per-example Jacobians
(torch.func). R_T = ||theta_T - theta_0||_2 over all trained parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from widessl._validation import as_inputs, check_positive_int
from widessl.errors import ConfigError
from widessl.models.two_layer import TwoLayerNet
from widessl.ntk.empirical import flat_jacobian_fn

Tensor = torch.Tensor


@torch.no_grad()
def _two_layer_gradient_sqnorms(model: TwoLayerNet, x: Tensor, block_size: int) -> Tensor:
    out = []
    for s in range(0, x.shape[0], block_size):
        xb = x[s:s + block_size]
        H = model.preactivations(xb)
        q = model.sigma_w ** 2 * (xb * xb).sum(1)
        if model.has_bias:
            q = q + model.sigma_b ** 2
        first = (model.activation.fn(H) ** 2).mean(1)                                 # [b]
        second = (model.activation.deriv(H) ** 2) @ (model.V ** 2).T / model.M       # [b, K]
        out.append(first[:, None] + q[:, None] * second)
    return torch.cat(out)


def _generic_gradient_sqnorms(model: nn.Module, x: Tensor, block_size: int) -> Tensor:
    jac, _ = flat_jacobian_fn(model)
    return torch.cat([(jac(x[s:s + block_size]) ** 2).sum(-1).detach()
                      for s in range(0, x.shape[0], block_size)])


def gradient_norms(model: nn.Module, x, *, method: str = "auto", block_size: int | None = None) -> Tensor:
    """||grad_theta f_k(x_i)||_2 for every input row and output: a tensor [n, K].

    method: 'auto' (closed form for TwoLayerNet, else 'jacobian'), 'closed_form' or 'jacobian'.
    """
    if method not in ("auto", "closed_form", "jacobian"):
        raise ConfigError(f"method must be 'auto', 'closed_form' or 'jacobian', got {method!r}")
    p = next(model.parameters())
    x = as_inputs("x", x, getattr(model, "d", None), dtype=p.dtype, device=p.device)
    if method == "auto":
        method = "closed_form" if isinstance(model, TwoLayerNet) else "jacobian"
    if method == "closed_form":
        if not isinstance(model, TwoLayerNet):
            raise ConfigError(f"method='closed_form' needs a TwoLayerNet, got {type(model).__name__}")
        sq = _two_layer_gradient_sqnorms(model, x, check_positive_int("block_size", block_size or 1024))
    else:
        sq = _generic_gradient_sqnorms(model, x, check_positive_int("block_size", block_size or 32))
    return torch.sqrt(torch.clamp(sq, min=0.0))


def gradient_bound(model: nn.Module, x, **kwargs) -> float:
    """c_0 = max over the rows of x and outputs k of ||grad_theta f_k(x_i)||_2."""
    return float(gradient_norms(model, x, **kwargs).max())


@torch.no_grad()
def param_distance(model_0: nn.Module, model_t: nn.Module) -> float:
    """R = ||theta_t - theta_0||_2 over all trainable parameters (Frobenius over the layers)."""
    total = 0.0
    p0s = [p for p in model_0.parameters() if p.requires_grad]
    pts = [p for p in model_t.parameters() if p.requires_grad]
    if len(p0s) != len(pts):
        raise ConfigError("the two models have different parameter lists")
    for p0, pt in zip(p0s, pts):
        if p0.shape != pt.shape:
            raise ConfigError(f"the two models differ in shape: {tuple(p0.shape)} vs {tuple(pt.shape)}")
        total += float(((pt.double() - p0.double()) ** 2).sum())
    return math.sqrt(total)
