r"""Infinite-width NTK of the networks in :mod:`widessl.models` (SPEC section 5).

For two-layer nets, Theta_inf(a, a') = [E s(u)s(v) + (sigma_w^2 a.a' + sigma_b^2) E s'(u)s'(v)] I_K
with (u, v) centred Gaussian, E u^2 = q = sigma_w^2 ||a||^2 (+ sigma_b^2), E v^2 = q',
E uv = c = sigma_w^2 a.a' (+ sigma_b^2). Deep nets use the standard recursion. The kernel
is returned as the scalar factor Theta_s [n1, n2]; the full kernel is Theta_s (x) I_K.

Gaussian expectations: closed forms for relu, erf and linear; for the smooth rest (tanh,
gelu, sigmoid, softplus) Mehler's Hermite series with a certified truncation (fast: a
polynomial in the correlation per pair), and two-dimensional Gauss-Hermite quadrature as the
independent reference and fallback.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
import torch
from scipy.special import roots_hermitenorm

from widessl._validation import as_inputs, check_positive_float, check_positive_int
from widessl.errors import ConfigError
from widessl.models.activations import Activation, get_activation

Tensor = torch.Tensor

EXPECTATION_METHODS = ("auto", "series", "quadrature")

# Chunk so that one quadrature block holds about this many integrand values.
_QUAD_BLOCK = 2 ** 22


@lru_cache(maxsize=16)
def _hermite_nodes(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for E g(z), z ~ N(0, 1): probabilists' Gauss-Hermite, normalized."""
    # scipy's roots stay finite for high orders, where numpy's hermegauss overflows.
    x, w = roots_hermitenorm(order)
    return x, w / math.sqrt(2.0 * math.pi)


def _closed_form(name: str, q1: Tensor, q2: Tensor, c: Tensor):
    """(E s s, E s' s') for relu/erf/linear on broadcast (q1 [n1,1], q2 [1,n2], c [n1,n2])."""
    if name == "relu":
        norm = torch.sqrt(q1 * q2)
        cos = torch.clamp(c / norm, -1.0, 1.0)
        p = torch.arccos(cos)
        k = norm / (2 * math.pi) * (torch.sin(p) + (math.pi - p) * cos)
        kd = (math.pi - p) / (2 * math.pi)
        return k, kd
    if name == "erf":
        k = (2 / math.pi) * torch.arcsin(torch.clamp(2 * c / torch.sqrt((1 + 2 * q1) * (1 + 2 * q2)), -1.0, 1.0))
        kd = (4 / math.pi) / torch.sqrt((1 + 2 * q1) * (1 + 2 * q2) - 4 * c * c)
        return k, kd
    if name == "linear":
        return c.clone(), torch.ones_like(c)
    return None


def _diag_closed_form(name: str, q: Tensor):
    """E s(u)^2 for u ~ N(0, q), where a closed form exists."""
    if name == "relu":
        return q / 2
    if name == "erf":
        return (2 / math.pi) * torch.arcsin(2 * q / (1 + 2 * q))
    if name == "linear":
        return q.clone()
    return None


_SERIES_NODES = 400          # 1-D Gauss-Hermite nodes for the Hermite coefficients
_SERIES_MAX_TERMS = 384
_SERIES_TAIL_RTOL = 1e-13    # Parseval tail allowed, relative to E s(u)^2 (rounding floor ~1e-14)


@lru_cache(maxsize=4)
def _hermite_basis(n_terms: int, order: int) -> np.ndarray:
    """Orthonormal probabilists' Hermite functions h_n(x_p) = He_n(x_p)/sqrt(n!) at the GH nodes,
    by the stable three-term recurrence; shape [n_terms, order]."""
    x, _ = _hermite_nodes(order)
    H = np.zeros((n_terms, order))
    H[0] = 1.0
    if n_terms > 1:
        H[1] = x
    for n in range(1, n_terms - 1):
        H[n + 1] = (x * H[n] - math.sqrt(n) * H[n - 1]) / math.sqrt(n + 1)
    return H


def _series_coefficients(fn, q: Tensor) -> tuple[Tensor, Tensor] | None:
    """Hermite coefficients c_n(q) = E[s(sqrt(q) z) h_n(z)] for each q, [len(q), n_terms], with
    enough terms that the Parseval tail sum_{n >= n_terms} c_n^2 = E s^2 - sum c_n^2 is below
    _SERIES_TAIL_RTOL * E s^2 for every q. None if no such truncation exists (then the caller
    falls back to 2-D quadrature)."""
    x, w = _hermite_nodes(_SERIES_NODES)
    xt = torch.as_tensor(x, dtype=q.dtype, device=q.device)
    wt = torch.as_tensor(w, dtype=q.dtype, device=q.device)
    vals = fn(torch.sqrt(q)[:, None] * xt[None, :])
    second = (vals * vals) @ wt
    H = torch.as_tensor(_hermite_basis(_SERIES_MAX_TERMS, _SERIES_NODES), dtype=q.dtype, device=q.device)
    coeffs = (vals * wt) @ H.T  # [nq, max_terms]
    partial = torch.cumsum(coeffs * coeffs, dim=1)
    tail = second[:, None] - partial
    ok = (tail <= _SERIES_TAIL_RTOL * torch.clamp(second, min=1e-300)[:, None]).all(dim=0)
    if not bool(ok.any()):
        return None
    n_terms = int(torch.nonzero(ok)[0, 0]) + 1
    return coeffs[:, :n_terms], second


def _series_kernel(c1: Tensor, c2: Tensor, rho: Tensor) -> Tensor:
    """sum_n c1[i, n] c2[j, n] rho_ij^n (Mehler's formula), by Horner's rule in rho."""
    n_terms = c1.shape[1]
    if bool((c1 == c1[:1]).all()) and bool((c2 == c2[:1]).all()):
        coef = c1[0] * c2[0]  # all inputs share one variance: scalar coefficients
        out = torch.full_like(rho, float(coef[-1]))
        for n in range(n_terms - 2, -1, -1):
            out.mul_(rho).add_(float(coef[n]))
        return out
    out = c1[:, -1:] * c2[:, -1][None, :]
    for n in range(n_terms - 2, -1, -1):
        out = out * rho + c1[:, n:n + 1] * c2[:, n][None, :]
    return out


def _series_expectations(act: Activation, q1: Tensor, q2: Tensor, c: Tensor):
    """(E s s, E s' s') by the Hermite (Mehler) series; None if it would not converge."""
    out = []
    for fn in (act.fn, act.deriv):
        q_all, inverse = torch.unique(torch.cat([q1, q2]), return_inverse=True)
        res = _series_coefficients(fn, q_all)
        if res is None:
            return None
        coeffs = res[0][inverse]
        c1, c2 = coeffs[: len(q1)], coeffs[len(q1):]
        rho = torch.clamp(c / torch.sqrt(q1[:, None] * q2[None, :]), -1.0, 1.0)
        out.append(_series_kernel(c1, c2, rho))
    return tuple(out)


def gaussian_expectations(act: Activation, q1: Tensor, q2: Tensor, c: Tensor, order: int = 96,
                          method: str = "auto"):
    r"""E s(u)s(v) and E s'(u)s'(v) for (u, v) ~ N(0, [[q1, c], [c, q2]]).

    q1 [n1], q2 [n2], c [n1, n2]; returns two [n1, n2] tensors.

    method 'auto': the closed form where one exists (relu, erf, linear), else the Hermite
    series, else quadrature. 'series': Mehler's formula E s(u)s(v) = sum_n c_n(q1) c_n(q2) rho^n,
    c_n(q) = E[s(sqrt(q) z) h_n(z)], truncated where the Parseval tail is below 1e-13 relative
    (so the truncation error is at most that, by Cauchy-Schwarz). 'quadrature': two-dimensional
    Gauss-Hermite of ``order`` nodes per axis, with u = sqrt(q1) z1,
    v = sqrt(q2) (rho z1 + sqrt(1 - rho^2) z2), rho = c / sqrt(q1 q2).
    """
    q1c, q2r = q1[:, None], q2[None, :]
    if method in ("auto", "closed_form"):
        closed = _closed_form(act.name, q1c, q2r, c)
        if closed is not None:
            return closed
    if method in ("auto", "series"):
        series = _series_expectations(act, q1, q2, c)
        if series is not None:
            return series
        warnings.warn(
            f"the Hermite series for {act.name} did not converge for these input variances "
            f"(max q = {float(torch.max(torch.cat([q1, q2]))):.3g}); using 2-D quadrature with "
            f"{order} nodes per axis, whose accuracy falls for large q: raise quadrature_order "
            "or scale the inputs to unit norm",
            RuntimeWarning,
            stacklevel=3,
        )
    x, w = _hermite_nodes(order)
    x = torch.as_tensor(x, dtype=c.dtype, device=c.device)
    w = torch.as_tensor(w, dtype=c.dtype, device=c.device)
    sq1 = torch.sqrt(q1)
    sq2 = torch.sqrt(q2)
    u = sq1[:, None] * x[None, :]  # [n1, order]
    su = act.fn(u) * w
    dsu = act.deriv(u) * w
    k = torch.empty_like(c)
    kd = torch.empty_like(c)
    n1, n2 = c.shape
    rows = max(1, _QUAD_BLOCK // (n2 * order * order))
    for s in range(0, n1, rows):
        e = min(n1, s + rows)
        rho = torch.clamp(c[s:e] / (sq1[s:e, None] * sq2[None, :]), -1.0, 1.0)  # [b, n2]
        perp = torch.sqrt(torch.clamp(1.0 - rho * rho, min=0.0))
        # v[b, j, a, b'] = sqrt(q2_j) (rho x_a + perp x_b')
        v = sq2[None, :, None, None] * (
            rho[..., None, None] * x[None, None, :, None] + perp[..., None, None] * x[None, None, None, :]
        )
        sv = act.fn(v) @ w  # [b, n2, order]: sums over z2
        dsv = act.deriv(v) @ w
        k[s:e] = torch.einsum("ba,bja->bj", su[s:e], sv)
        kd[s:e] = torch.einsum("ba,bja->bj", dsu[s:e], dsv)
    return k, kd


def gaussian_second_moment(act: Activation, q: Tensor) -> Tensor:
    """E s(u)^2 for u ~ N(0, q), elementwise in q (1-D Gauss-Hermite with many nodes: cheap,
    and accurate enough that diagonal correlations of the next layer stay at 1)."""
    closed = _diag_closed_form(act.name, q)
    if closed is not None:
        return closed
    x, w = _hermite_nodes(_SERIES_NODES)
    x = torch.as_tensor(x, dtype=q.dtype, device=q.device)
    w = torch.as_tensor(w, dtype=q.dtype, device=q.device)
    return (act.fn(torch.sqrt(q)[:, None] * x[None, :]) ** 2) @ w


def analytic_ntk(
    x1,
    x2=None,
    activation: str | Activation = "tanh",
    depth: int = 1,
    *,
    bias: bool = False,
    sigma_w: float = 1.0,
    sigma_b: float = 1.0,
    quadrature_order: int = 96,
    method: str = "auto",
    return_nngp: bool = False,
):
    r"""Infinite-width NTK Theta_s(x1, x2) [n1, n2] of the network with ``depth`` hidden layers.

    The full kernel is Theta_s (x) I_K. Recursion (``depth`` = L hidden layers, with the
    conventions of :class:`~widessl.models.DeepNet`; ``depth=1`` is :class:`TwoLayerNet`):

        Sigma^1 = sigma_w^2 x.x' + sigma_b^2 [bias],        Theta^1 = Sigma^1
        for l < L:  Sigma^{l+1} = sigma_w^2 E s(u)s(v) + sigma_b^2 [bias],
                    Theta^{l+1} = Theta^l * sigma_w^2 E s'(u)s'(v) + Sigma^{l+1}
        readout:    Theta = Theta^L * E s'(u)s'(v) + E s(u)s(v)

    with (u, v) ~ N(0, Sigma^l restricted to the pair). Computed in float64, returned in
    x1's floating dtype. ``method`` chooses how Gaussian expectations are computed (see
    :func:`gaussian_expectations`: 'auto', 'series' or 'quadrature'). With ``return_nngp=True`` also returns the readout NNGP
    kernel E s(u)s(v) (the output covariance at initialization).

    Example
    -------
    >>> import torch
    >>> from widessl.ntk import analytic_ntk
    >>> x = torch.nn.functional.normalize(torch.randn(4, 10, dtype=torch.float64), dim=1)
    >>> analytic_ntk(x, activation="relu").shape
    torch.Size([4, 4])
    """
    act = get_activation(activation)
    depth = check_positive_int("depth", depth)
    sigma_w = check_positive_float("sigma_w", sigma_w)
    sigma_b = check_positive_float("sigma_b", sigma_b)
    order = check_positive_int("quadrature_order", quadrature_order)
    if method not in EXPECTATION_METHODS:
        raise ConfigError(f"method must be one of {EXPECTATION_METHODS}, got {method!r}")
    x1 = as_inputs("x1", x1)
    out_dtype = x1.dtype
    same = x2 is None
    x2 = x1 if same else as_inputs("x2", x2, x1.shape[1])
    a1 = x1.to(torch.float64)
    a2 = a1 if same else x2.to(device=x1.device, dtype=torch.float64)
    bias2 = sigma_b ** 2 if bias else 0.0

    sigma = sigma_w ** 2 * (a1 @ a2.T) + bias2
    q1 = sigma_w ** 2 * (a1 * a1).sum(1) + bias2
    q2 = q1 if same else sigma_w ** 2 * (a2 * a2).sum(1) + bias2
    theta = sigma.clone()
    k = None
    for layer in range(1, depth + 1):
        k, kd = gaussian_expectations(act, q1, q2, sigma, order, method)
        if layer < depth:
            sigma = sigma_w ** 2 * k + bias2
            theta = theta * (sigma_w ** 2 * kd) + sigma
            q1 = sigma_w ** 2 * gaussian_second_moment(act, q1) + bias2
            q2 = q1 if same else sigma_w ** 2 * gaussian_second_moment(act, q2) + bias2
        else:
            theta = theta * kd + k
    if same:
        theta = 0.5 * (theta + theta.T)  # exact symmetry despite rounding in the quadrature
    theta = theta.to(out_dtype)
    if return_nngp:
        return theta, k.to(out_dtype)
    return theta


def analytic_ntk_fn(activation: str | Activation = "tanh", depth: int = 1, **kwargs):
    """neural-tangents-style ``kernel_fn(x1, x2=None)`` for fixed architecture options."""

    def kernel_fn(x1, x2=None):
        return analytic_ntk(x1, x2, activation, depth, **kwargs)

    return kernel_fn
