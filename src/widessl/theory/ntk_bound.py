r"""The Theorem 3.1 bound on the NTK change, next to the measured change (SPEC section 8).

Setting. theta_0 (initialization), theta_T (after training), R = ||theta_T - theta_0||. On the
segment S = [theta_0, theta_T] let rho = sup_{theta in S, a, k} ||grad^2_theta f_k(a; theta)||_2
and c_0 = max_{a, k} ||grad_theta f_k(a; theta_0)||_2, over the inputs a the kernel is taken on.

Per entry. Write g = grad f_k(a), g' = grad f_l(a'). By the mean-value inequality along S,
||g(theta_T) - g(theta_0)|| <= rho R, and ||g'(theta_T)|| <= c_0 + rho R, so

    |Theta_T(a, a')_kl - Theta_0(a, a')_kl| = |<g_T - g_0, g'_T> + <g_0, g'_T - g'_0>|
                                            <= rho R (c_0 + rho R) + c_0 rho R
                                             = 2 c_0 rho R + (rho R)^2.

Theorem 3.1 of the paper is this with c_0 bounding the gradient on the whole ball (which gives
2 c_0 rho R); bounding it only at theta_0 costs the (rho R)^2 term.

Aggregated like :func:`widessl.ntk.model_ntk_change` (relative Frobenius norm of the
(nK) x (nK) matrix on the n inputs): ||Theta_T - Theta_0||_F <= nK (2 c_0 rho R + (rho R)^2), so

    ntk_change <= nK (2 c_0 rho R + (rho R)^2) / ||Theta_0||_F            ("entrywise", Theorem 3.1).

A tighter form of the same argument works with the Jacobian J (rows grad f_k(a)), Theta = J J^T:
Theta_T - Theta_0 = dJ J_T^T + J_0 dJ^T with ||dJ||_F <= sqrt(nK) rho R, hence

    ||Theta_T - Theta_0||_F <= sqrt(nK) rho R (2 ||J_0||_op + sqrt(nK) rho R),  ||J_0||_op^2 = lambda_max(Theta_0)

("operator" form; never larger than the entrywise one since ||J_0||_op <= sqrt(nK) c_0).

Which sup. rho is a sup over the segment. :func:`measure_ntk_bound` reports (i) the Hessian
norm at theta_0 and theta_T, (ii) ``rho``: the max over ``segment_points`` (at least 2) equally spaced
points of S (an estimate from below of the sup), used for ``ntk_change_bound``, and (iii) for a
smooth-activation TwoLayerNet a certified rho (:func:`~widessl.theory.hessian.certified_segment_hessian_bound`),
used for ``ntk_change_bound_certified``, a bound with no estimated sup in it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from widessl._validation import as_inputs
from widessl.models.two_layer import TwoLayerNet
from widessl.ntk import empirical_ntk
from widessl.theory.gradient_bound import gradient_bound, param_distance
from widessl.theory.hessian import certified_segment_hessian_bound, hessian_norm, interpolate
from widessl.theory.spectral import lanczos

Tensor = torch.Tensor


def entrywise_ntk_bound(c0: float, rho: float, R: float) -> float:
    """Bound on |Theta_T - Theta_0| per kernel entry: 2 c_0 rho R + (rho R)^2."""
    return 2.0 * c0 * rho * R + (rho * R) ** 2


def ntk_change_bound(c0: float, rho: float, R: float, n: int, K: int, theta0_fro: float) -> float:
    """Theorem 3.1 bound on the relative Frobenius NTK change on n inputs with K outputs:
    nK (2 c_0 rho R + (rho R)^2) / ||Theta_0||_F."""
    return n * K * entrywise_ntk_bound(c0, rho, R) / theta0_fro


def ntk_change_bound_operator(rho: float, R: float, n: int, K: int, theta0_fro: float, theta0_op: float) -> float:
    """Jacobian form: sqrt(nK) rho R (2 sqrt(lambda_max(Theta_0)) + sqrt(nK) rho R) / ||Theta_0||_F."""
    d = math.sqrt(n * K) * rho * R
    return d * (2.0 * math.sqrt(max(theta0_op, 0.0)) + d) / theta0_fro


@torch.no_grad()
def _two_layer_ntk_matvec(model: TwoLayerNet, x: Tensor):
    """X [n, K] -> Theta(x, x) . X without forming Theta (closed form of SPEC section 5)."""
    x = x.detach()
    H = model.preactivations(x).detach()
    S, D = model.activation.fn(H), model.activation.deriv(H)
    G = model.sigma_w ** 2 * (x @ x.T)
    if model.has_bias:
        G = G + model.sigma_b ** 2
    M, V = model.M, model.V.detach()
    n, K = x.shape[0], model.K

    @torch.no_grad()
    def matvec(v: Tensor) -> Tensor:
        X = v.reshape(n, K)
        out = S @ (S.T @ X) / M
        Q = G @ (D * (X @ V))
        out = out + (D * Q) @ V.T / M
        return out.reshape(-1)

    return matvec, n * K


@torch.no_grad()
def ntk_norms(model_0: nn.Module, model_t: nn.Module, x, *, block_size: int = 256) -> tuple[float, float]:
    """(||Theta_t - Theta_0||_F, ||Theta_0||_F) on inputs x, kernels formed ``block_size`` rows
    at a time (their ratio is :func:`widessl.ntk.model_ntk_change`)."""
    diff2 = base2 = 0.0
    for s in range(0, x.shape[0], block_size):
        t0 = empirical_ntk(model_0, x[s:s + block_size], x)
        tt = empirical_ntk(model_t, x[s:s + block_size], x)
        base2 += float((t0.double() ** 2).sum())
        diff2 += float(((tt.double() - t0.double()) ** 2).sum())
    return math.sqrt(diff2), math.sqrt(base2)


def ntk_top_eigenvalue(model: nn.Module, x) -> float:
    """lambda_max of Theta(x, x) as an (nK) x (nK) matrix: Lanczos on the closed-form matvec
    for TwoLayerNet, dense eigenvalues of the empirical NTK otherwise."""
    if isinstance(model, TwoLayerNet):
        matvec, dim = _two_layer_ntk_matvec(model, x)
        return lanczos(matvec, dim, dtype=x.dtype, device=x.device, steps=100, tol=1e-13).norm
    from widessl.ntk import ntk_matrix

    mat = ntk_matrix(empirical_ntk(model, x)).double()
    return float(torch.linalg.eigvalsh(0.5 * (mat + mat.T))[-1])


@dataclass
class NTKChangeBound:
    """Every quantity of the Theorem 3.1 bound for one trained network, and the measured change.

    hessian_norm_init / _final: max_{a, k} ||grad^2 f_k(a)|| at theta_0 / theta_T.
    rho: max over ``segment_points`` points of [theta_0, theta_T] (estimated sup);
    rho_certified: certified sup over the segment (TwoLayerNet with a smooth activation; else None).
    c0 / c0_final: max_{a, k} ||grad f_k(a)|| at theta_0 / theta_T. param_distance: R_T.
    ntk_change: measured relative Frobenius change; ntk_change_bound: the entrywise (Theorem 3.1)
    bound with rho; ntk_change_bound_certified: the same with rho_certified;
    ntk_change_bound_operator: the Jacobian form with rho.
    """

    n: int
    K: int
    hessian_norm_init: float
    hessian_norm_final: float
    rho: float
    rho_certified: float | None
    c0: float
    c0_final: float
    param_distance: float
    theta0_fro: float
    theta0_op: float
    ntk_change: float
    ntk_change_bound: float
    ntk_change_bound_certified: float | None
    ntk_change_bound_operator: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure_ntk_bound(model_0: nn.Module, model_t: nn.Module, x, *, segment_points: int = 5) -> NTKChangeBound:
    """Measure c_0, the Hessian norms, R_T and the NTK change of a trained network on inputs x
    (typically Z, the 2N training inputs), and compute the Theorem 3.1 bounds."""
    p = next(model_0.parameters())
    x = as_inputs("x", x, getattr(model_0, "d", None), dtype=p.dtype, device=p.device)
    n = x.shape[0]
    with torch.no_grad():
        K = model_0(x[:1]).shape[1]
    points = max(int(segment_points), 2)   # both ends at least
    ts = [i / (points - 1) for i in range(points)]
    norms = {t: hessian_norm(model_0 if t == 0.0 else model_t if t == 1.0 else interpolate(model_0, model_t, t), x)
             for t in ts}
    h_init, h_final = norms[0.0], norms[1.0]
    rho = max(norms.values())
    certified = None
    if isinstance(model_0, TwoLayerNet) and model_0.activation.smooth and model_0.activation.name != "relu":
        certified = certified_segment_hessian_bound(model_0, model_t, x)
    c0, c0_final = gradient_bound(model_0, x), gradient_bound(model_t, x)
    R = param_distance(model_0, model_t)
    diff, base = ntk_norms(model_0, model_t, x)
    op = ntk_top_eigenvalue(model_0, x)
    return NTKChangeBound(
        n=n, K=K, hessian_norm_init=h_init, hessian_norm_final=h_final, rho=rho, rho_certified=certified,
        c0=c0, c0_final=c0_final, param_distance=R, theta0_fro=base, theta0_op=op,
        ntk_change=diff / base,
        ntk_change_bound=ntk_change_bound(c0, rho, R, n, K, base),
        ntk_change_bound_certified=None if certified is None else ntk_change_bound(c0, certified, R, n, K, base),
        ntk_change_bound_operator=ntk_change_bound_operator(rho, R, n, K, base, op),
    )
