r"""Spectral norm of the Hessian of f_k in parameter space (SPEC section 8, Theorem 3.1).

Exact structure for :class:`~widessl.models.TwoLayerNet`. With h_m = sigma_w w_m.a + sigma_b b_m
and u = (sigma_w a, sigma_b) (drop sigma_b without bias), q = ||u||^2, the only non-zero second
derivatives of f_k(a) = (1/sqrt M) sum_m V_km s(h_m) are

    d2 f_k / d(w_m, b_m)^2      = V_km s''(h_m) u u^T / sqrt(M)
    d2 f_k / dV_km d(w_m, b_m)  = s'(h_m) u / sqrt(M)

(d2/dV dV = 0, nothing couples two neurons, and V_lm for l != k does not enter). So the Hessian
is block diagonal over neurons, and block m acts only on span{u/||u||} x {V_km}, where it is the
2 x 2 matrix (1/sqrt M) [[alpha_m, beta_m], [beta_m, 0]] with alpha_m = V_km s''(h_m) q and
beta_m = s'(h_m) sqrt(q). Its eigenvalues are (alpha_m +- sqrt(alpha_m^2 + 4 beta_m^2)) / (2 sqrt M), so

    ||grad^2_theta f_k(a)||_2 = max_m (|alpha_m| + sqrt(alpha_m^2 + 4 beta_m^2)) / (2 sqrt(M)).

At initialization |V_km| and s', s'' are O(1), so the norm is O(sqrt(log(MK)) / sqrt(M)) (the
max over M Gaussian |V_km| grows like sqrt(2 log M)): the O(M^(-1/2)) of the theory up to a
logarithm.

Generic path (any module): Hessian-vector products by forward-over-reverse differentiation
(``torch.func.jvp`` of ``torch.func.grad``), fed to power iteration or Lanczos
(:mod:`widessl.theory.spectral`); the dense Hessian (``torch.func.hessian``) for tiny nets.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, hessian, jvp

from widessl._validation import as_inputs, check_nonneg_int, check_positive_int
from widessl.errors import ConfigError
from widessl.models.two_layer import TwoLayerNet
from widessl.theory.derivatives import interval_sup, second_derivative
from widessl.theory.spectral import SpectralEstimate, lanczos, power_iteration

Tensor = torch.Tensor

METHODS = ("auto", "structured", "power", "lanczos", "dense")


def _inputs(model: nn.Module, x) -> Tensor:
    p = next(model.parameters())
    return as_inputs("x", x, getattr(model, "d", None), dtype=p.dtype, device=p.device)


def _one_input(model: nn.Module, a) -> Tensor:
    """One input as a [d] tensor (accepts [d] or [1, d])."""
    t = a if isinstance(a, Tensor) else torch.as_tensor(a)
    x = _inputs(model, t[None] if t.ndim == 1 else t)
    if x.shape[0] != 1:
        raise ConfigError(f"expected one input, got {x.shape[0]} rows; use hessian_norm for many inputs")
    return x[0]


def _input_sqnorm(model: TwoLayerNet, x: Tensor) -> Tensor:
    """q = ||u||^2 = sigma_w^2 ||a||^2 (+ sigma_b^2 with bias), per input."""
    q = model.sigma_w ** 2 * (x * x).sum(1)
    if model.has_bias:
        q = q + model.sigma_b ** 2
    return q


def _block_norm(alpha: Tensor, beta: Tensor, M: int) -> Tensor:
    """Spectral norm of (1/sqrt M) [[alpha, beta], [beta, 0]], elementwise."""
    return (alpha.abs() + torch.sqrt(alpha * alpha + 4.0 * beta * beta)) / (2.0 * math.sqrt(M))


@torch.no_grad()
def two_layer_hessian_norms(model: TwoLayerNet, x, block_size: int = 256) -> Tensor:
    """Exact ||grad^2_theta f_k(x_i)||_2 for every input row and output: a tensor [n, K]."""
    if not isinstance(model, TwoLayerNet):
        raise ConfigError(f"the structured Hessian needs a TwoLayerNet, got {type(model).__name__}; use method='power'")
    x = _inputs(model, x)
    s1, s2 = model.activation.deriv, second_derivative(model.activation)
    V = model.V
    out = []
    for s in range(0, x.shape[0], block_size):
        xb = x[s:s + block_size]
        H = model.preactivations(xb)                      # [b, M]
        q = _input_sqnorm(model, xb)                      # [b]
        alpha = V[None] * (s2(H) * q[:, None])[:, None, :]  # [b, K, M]
        beta = (s1(H) * torch.sqrt(q)[:, None])[:, None, :]  # [b, 1, M]
        out.append(_block_norm(alpha, beta, model.M).amax(dim=2))
    return torch.cat(out)


def _flat_params(model: nn.Module):
    names, shapes, tensors = [], [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            names.append(name)
            shapes.append(p.shape)
            tensors.append(p.detach().reshape(-1))
    if not names:
        raise ConfigError("the model has no trainable parameters")
    flat = torch.cat(tensors)
    sizes = [int(math.prod(s)) for s in shapes]

    def unflatten(v: Tensor) -> dict[str, Tensor]:
        return {n: c.reshape(s) for n, c, s in zip(names, torch.split(v, sizes), shapes)}

    return flat, unflatten


def output_fn(model: nn.Module, a: Tensor, k: int) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """theta (flat) -> f_k(a; theta) and the current flat theta."""
    flat, unflatten = _flat_params(model)

    def f(theta: Tensor) -> Tensor:
        return functional_call(model, unflatten(theta), (a[None],))[0, k]

    return f, flat


def hessian_vector_product(model: nn.Module, a, k: int) -> tuple[Callable[[Tensor], Tensor], int]:
    """(v -> grad^2_theta f_k(a) v, number of parameters), by jvp of grad (torch.func)."""
    a = _one_input(model, a)
    f, theta = output_fn(model, a, _check_k(model, a, k))
    g = grad(f)

    def matvec(v: Tensor) -> Tensor:
        return jvp(g, (theta,), (v,))[1]

    return matvec, theta.numel()


def dense_hessian(model: nn.Module, a, k: int) -> Tensor:
    """The full Hessian [P, P] of f_k(a) in the flat parameters (torch.func.hessian): tiny nets only."""
    a = _one_input(model, a)
    f, theta = output_fn(model, a, _check_k(model, a, k))
    return hessian(f)(theta).detach()


def _check_k(model: nn.Module, a: Tensor, k: int) -> int:
    K = getattr(model, "K", None)
    if K is None:
        with torch.no_grad():
            K = model(a[None]).shape[1]
    k = check_nonneg_int("k (output index)", k)
    if k >= K:
        raise ConfigError(f"k must be an output index in [0, {K}), got {k}")
    return k


def hessian_spectral_norm(model: nn.Module, a, k: int, *, method: str = "auto", max_iter: int = 2000,
                          tol: float = 1e-10, steps: int = 80, seed: int = 0) -> SpectralEstimate:
    """||grad^2_theta f_k(a)||_2 for one input ``a`` [d] and output ``k``.

    method: 'structured' (exact, TwoLayerNet), 'power' (power iteration on Hessian-vector
    products), 'lanczos', 'dense' (eigenvalues of torch.func.hessian), 'auto' (structured for
    TwoLayerNet, else power).
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        method = "structured" if isinstance(model, TwoLayerNet) else "power"
    a = _one_input(model, a)[None]
    k = _check_k(model, a[0], k)
    if method == "structured":
        value = float(two_layer_hessian_norms(model, a)[0, k])
        return SpectralEstimate(value, float("nan"), 0, True)
    if method == "dense":
        ev = torch.linalg.eigvalsh(dense_hessian(model, a[0], k))
        i = int(torch.argmax(ev.abs()))
        return SpectralEstimate(float(ev[i].abs()), float(ev[i]), 0, True)
    matvec, dim = hessian_vector_product(model, a[0], k)
    p = next(model.parameters())
    if method == "power":
        return power_iteration(matvec, dim, dtype=p.dtype, device=p.device, max_iter=max_iter, tol=tol, seed=seed)
    return lanczos(matvec, dim, dtype=p.dtype, device=p.device, steps=steps, tol=tol, seed=seed)


def hessian_norm(model: nn.Module, x, *, method: str = "auto", return_argmax: bool = False, **kwargs):
    """max over the rows of x and the outputs k of ||grad^2_theta f_k(x_i)||_2 (the rho of
    Theorem 3.1 on these inputs, at the model's current parameters).

    'structured' (the default for TwoLayerNet) is exact and costs O(n K M); the iterative
    methods loop over every (input, output) pair, so keep x small for them.
    With ``return_argmax`` also returns (i, k) of the maximum.
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        method = "structured" if isinstance(model, TwoLayerNet) else "power"
    x = _inputs(model, x)
    if method == "structured":
        norms = two_layer_hessian_norms(model, x)
    else:
        with torch.no_grad():
            K = model(x[:1]).shape[1]
        norms = torch.tensor([[hessian_spectral_norm(model, x[i], k, method=method, **kwargs).norm
                               for k in range(K)] for i in range(x.shape[0])], dtype=torch.float64)
    flat = int(torch.argmax(norms))
    value = float(norms.reshape(-1)[flat])
    if return_argmax:
        return value, divmod(flat, norms.shape[1])
    return value


def interpolate(model_0: nn.Module, model_t: nn.Module, t: float) -> nn.Module:
    """A copy of model_0 with parameters theta_0 + t (theta_t - theta_0)."""
    out = copy.deepcopy(model_0)
    with torch.no_grad():
        for p, p0, p1 in zip(out.parameters(), model_0.parameters(), model_t.parameters()):
            if p0.shape != p1.shape:
                raise ConfigError(f"the two models differ in shape: {tuple(p0.shape)} vs {tuple(p1.shape)}")
            p.copy_(p0 + t * (p1 - p0))
    return out


def segment_hessian_norm(model_0: nn.Module, model_t: nn.Module, x, *, points: int = 5, method: str = "auto") -> float:
    """max of :func:`hessian_norm` over ``points`` equally spaced parameters on the segment
    [theta_0, theta_t] (t = 0, 1/(points-1), ..., 1): an estimate (from below) of the sup of
    the Hessian norm over the segment, which is what the mean-value step of Theorem 3.1 uses."""
    points = check_positive_int("points", points)
    ts = [0.0] if points == 1 else [i / (points - 1) for i in range(points)]
    return max(hessian_norm(interpolate(model_0, model_t, t), x, method=method) for t in ts)


@torch.no_grad()
def certified_segment_hessian_bound(model_0: TwoLayerNet, model_t: TwoLayerNet, x, block_size: int = 256) -> float:
    r"""A certified upper bound on sup over theta in [theta_0, theta_t], rows a of x and outputs k
    of ||grad^2_theta f_k(a; theta)||_2, for a smooth-activation TwoLayerNet.

    Along the segment V_km(t) and the preactivation h_m(t) are affine in t, so
    |V_km(t)| <= max(|V_km(0)|, |V_km(1)|) and |s^(j)(h_m(t))| <= sup of |s^(j)| over the interval
    between h_m(0) and h_m(1) (exact, :func:`~widessl.theory.derivatives.interval_sup`); the block
    norm (|alpha| + sqrt(alpha^2 + 4 beta^2)) / (2 sqrt M) increases in |alpha| and |beta|.
    """
    for m in (model_0, model_t):
        if not isinstance(m, TwoLayerNet):
            raise ConfigError(f"the certified bound needs TwoLayerNet models, got {type(m).__name__}")
    if (model_0.M, model_0.d, model_0.K, model_0.has_bias) != (model_t.M, model_t.d, model_t.K, model_t.has_bias):
        raise ConfigError("the two models must have the same architecture")
    x = _inputs(model_0, x)
    act = model_0.activation
    vmax = torch.maximum(model_0.V.abs(), model_t.V.abs())    # [K, M]
    best = 0.0
    for s in range(0, x.shape[0], block_size):
        xb = x[s:s + block_size]
        H0, H1 = model_0.preactivations(xb), model_t.preactivations(xb)
        q = _input_sqnorm(model_0, xb)
        s1 = interval_sup(act, 1, H0, H1)
        s2 = interval_sup(act, 2, H0, H1)
        alpha = vmax[None] * (s2 * q[:, None])[:, None, :]
        beta = (s1 * torch.sqrt(q)[:, None])[:, None, :]
        best = max(best, float(_block_norm(alpha, beta, model_0.M).max()))
    return best
