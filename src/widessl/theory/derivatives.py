"""Second derivatives s'' of the activations, and certified suprema of |s'| and |s''| over
intervals (what the Hessian bounds of :mod:`widessl.theory.hessian` need).

:mod:`widessl.models.activations` gives each activation as the pair (s, s'); the Hessian of a
network in parameter space also needs s''. Each smooth activation here comes with the
critical points of s' and of s'' (the zeros of s'' and s'''), so the supremum of |s'| or |s''|
over any interval [lo, hi] is exact: the largest of |g| at lo, at hi and at the critical
points inside (a continuous function attains its maximum on a closed interval at an end or
at a critical point).

relu is not twice differentiable: its s'' is 0 away from 0 (what autograd returns as well)
and a Dirac mass at 0, so Hessian-based bounds do not apply to it (Theorem 3.1 assumes a
smooth activation); :func:`interval_sup` refuses it.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from widessl.errors import ConfigError
from widessl.models.activations import Activation, get_activation

Tensor = torch.Tensor

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_FOUR_OVER_SQRT_PI = 4.0 / math.sqrt(math.pi)


def _tanh2(h: Tensor) -> Tensor:
    t = torch.tanh(h)
    return -2.0 * t * (1.0 - t * t)


def _erf2(h: Tensor) -> Tensor:
    return -_FOUR_OVER_SQRT_PI * h * torch.exp(-h * h)


def _gelu2(h: Tensor) -> Tensor:
    # s = h Phi(h): s' = Phi + h phi, s'' = 2 phi - h^2 phi = (2 - h^2) phi
    return (2.0 - h * h) * _INV_SQRT_2PI * torch.exp(-0.5 * h * h)


def _sigmoid2(h: Tensor) -> Tensor:
    sg = torch.sigmoid(h)
    return sg * (1.0 - sg) * (1.0 - 2.0 * sg)


def _softplus2(h: Tensor) -> Tensor:
    sg = torch.sigmoid(h)
    return sg * (1.0 - sg)


def _zero(h: Tensor) -> Tensor:
    return torch.zeros_like(h)


SECOND_DERIVATIVES: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": _tanh2,
    "erf": _erf2,
    "gelu": _gelu2,
    "sigmoid": _sigmoid2,
    "softplus": _softplus2,
    "linear": _zero,
    "relu": _zero,  # almost everywhere; see the module docstring
}

_LOGIT_SIGMOID3 = math.log((3.0 + math.sqrt(3.0)) / (3.0 - math.sqrt(3.0)))  # zeros of sigmoid'''

# Critical points (zeros of the next derivative) of s' and of s'', per activation.
CRITICAL_POINTS: dict[str, dict[int, tuple[float, ...]]] = {
    "tanh": {1: (0.0,), 2: (-math.atanh(1.0 / math.sqrt(3.0)), math.atanh(1.0 / math.sqrt(3.0)))},
    "erf": {1: (0.0,), 2: (-1.0 / math.sqrt(2.0), 1.0 / math.sqrt(2.0))},
    "gelu": {1: (-math.sqrt(2.0), math.sqrt(2.0)), 2: (-2.0, 0.0, 2.0)},
    "sigmoid": {1: (0.0,), 2: (-_LOGIT_SIGMOID3, _LOGIT_SIGMOID3)},
    "softplus": {1: (), 2: (0.0,)},
    "linear": {1: (), 2: ()},
}


def second_derivative(activation: str | Activation) -> Callable[[Tensor], Tensor]:
    """s'' of the named activation as an elementwise torch function."""
    act = get_activation(activation)
    return SECOND_DERIVATIVES[act.name]


def derivative(activation: str | Activation, order: int) -> Callable[[Tensor], Tensor]:
    """s' (order 1) or s'' (order 2)."""
    act = get_activation(activation)
    if order == 1:
        return act.deriv
    if order == 2:
        return SECOND_DERIVATIVES[act.name]
    raise ConfigError(f"order must be 1 or 2, got {order!r}")


def global_sup(activation: str | Activation, order: int) -> float:
    """sup over the real line of |s'| (order 1) or |s''| (order 2); inf if unbounded."""
    act = get_activation(activation)
    if act.name not in CRITICAL_POINTS:
        raise ConfigError(f"{act.name} is not twice differentiable: Hessian bounds need a smooth activation")
    g = derivative(act, order)
    pts = torch.tensor(CRITICAL_POINTS[act.name][order] + (1e6, -1e6), dtype=torch.float64)
    # Every listed activation has |g| bounded and attaining its sup at a critical point or at
    # infinity (limits: s' -> 0 or 1, s'' -> 0); the far points stand in for the limits.
    return float(g(pts).abs().max())


def interval_sup(activation: str | Activation, order: int, lo: Tensor, hi: Tensor) -> Tensor:
    """Elementwise sup of |s^(order)(h)| over h in [min(lo, hi), max(lo, hi)] (exact).

    ``lo`` and ``hi`` are tensors of the same shape (e.g. preactivations at the two ends of
    a segment in parameter space, along which the preactivation moves linearly).
    """
    act = get_activation(activation)
    if act.name not in CRITICAL_POINTS:
        raise ConfigError(f"{act.name} is not twice differentiable: Hessian bounds need a smooth activation")
    g = derivative(act, order)
    a, b = torch.minimum(lo, hi), torch.maximum(lo, hi)
    out = torch.maximum(g(a).abs(), g(b).abs())
    for c in CRITICAL_POINTS[act.name][order]:
        inside = (a <= c) & (c <= b)
        if bool(inside.any()):
            gc = float(g(torch.tensor(c, dtype=torch.float64)).abs())
            out = torch.where(inside, torch.clamp(out, min=gc), out)
    return out
