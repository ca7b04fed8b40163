r"""Generalization of kernelized Barlow Twins (SPEC section 9; derivation in docs/theory.md).

Setting. kappa a kernel with feature map phi (here the infinite-width NTK Theta_inf), with
kappa(x, x) <= kappa_bar on the data's support; K outputs; the function class

    F_B = { f = f_0 + W^T phi :  ||W||_F <= B }      (W = (w_1..w_K), w_k in the RKHS)

with f_0 fixed before the data are seen and ||f_0(x)||_2 <= F0 on the support (f_0 = 0, F0 = 0:
the centred model). N i.i.d. positive pairs (a_i, a_i^+). C(f) = E f(a) f(a^+)^T,
C_hat(f) = (1/N) sum_i f(a_i) f(a_i^+)^T, L = ||C - I||_F^2, L_hat = ||C_hat - I||_F^2.

Result. With A = F0 + B sqrt(kappa_bar) (so ||f(x)||_2 <= A), with probability >= 1 - delta,
simultaneously for every f in F_B,

    ||C(f) - C_hat(f)||_F <= eps = A^2 (2 + sqrt(2 ln(1/delta))) / sqrt(N)

(Rademacher complexity of the products f(a) f(a^+)^T <= A^2 / sqrt(N), symmetrization and
McDiarmid), and therefore

    L(f) - L_hat(f) <= 2 (A^2 + sqrt(K)) eps                      (Lipschitz step: ||C - I||_F <= A^2 + sqrt K)
    L(f) - L_hat(f) <= 2 eps sqrt(L_hat(f)) + eps^2               (triangle inequality on ||C - I||_F)

``generalization_bound`` returns the smaller (the second needs the training loss). B read off a
trained model is data-dependent: with ``union=True`` (default) the bound is paid for by a
union bound over the grid B_j = grid_start * grid_ratio^j, delta_j = delta / ((j + 1)(j + 2))
(sum_j delta_j = delta), evaluated at the smallest B_j >= B.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from widessl._validation import check_nonneg_float, check_positive_float, check_positive_int
from widessl.errors import ConfigError, DataError

Tensor = torch.Tensor


# --- losses and norms measured on representations --------------------------------------------

def bt_loss(Fa: Tensor, Fb: Tensor) -> float:
    """||C - I||_F^2 with C = F_a^T F_b / N (the paper form, on given pairs)."""
    if Fa.shape != Fb.shape or Fa.ndim != 2:
        raise DataError(f"F_a and F_b must be [N, K] of equal shape, got {tuple(Fa.shape)} and {tuple(Fb.shape)}")
    C = Fa.double().T @ Fb.double() / Fa.shape[0]
    return float(((C - torch.eye(C.shape[0], dtype=C.dtype, device=C.device)) ** 2).sum())


@dataclass
class PopulationLoss:
    """Unbiased estimate of the population BT loss ||E f(a) f(a^+)^T - I||_F^2 and its standard
    error (delta method), from ``n_pairs`` fresh pairs of ``n_groups`` independent images."""

    value: float
    se: float
    n_groups: int
    n_pairs: int


def population_bt_loss(Fa: Tensor, Fb: Tensor, groups: Tensor | None = None) -> PopulationLoss:
    """Population BT loss from fresh pairs (rows of F_a, F_b), without the upward bias of
    plugging the sample mean into ||. - I||^2.

    Pairs with the same ``groups`` label (several augmentation draws of one image) are averaged
    first, xi_g = mean f(a) f(a^+)^T over the group; the groups are independent, so with
    S = sum_g xi_g over G groups, (||S||^2 - sum_g ||xi_g||^2) / (G (G - 1)) is unbiased for
    ||C||^2, tr(S) / G for tr C, and L = ||C||^2 - 2 tr C + K.
    """
    if Fa.shape != Fb.shape or Fa.ndim != 2:
        raise DataError(f"F_a and F_b must be [n, K] of equal shape, got {tuple(Fa.shape)} and {tuple(Fb.shape)}")
    Fa, Fb = Fa.double(), Fb.double()
    n, K = Fa.shape
    if groups is None:
        groups = torch.arange(n)
    groups = torch.as_tensor(groups, device=Fa.device)
    _, inverse = torch.unique(groups, return_inverse=True)
    G = int(inverse.max()) + 1
    if G < 2:
        raise DataError("the population loss needs pairs from at least two independent images")
    xi = (Fa[:, :, None] * Fb[:, None, :]).reshape(n, K * K)
    sums = torch.zeros(G, K * K, dtype=xi.dtype, device=xi.device).index_add_(0, inverse, xi)
    counts = torch.bincount(inverse, minlength=G).to(xi.dtype)
    means = sums / counts[:, None]
    S = means.sum(0)
    c2 = (float(S @ S) - float((means * means).sum())) / (G * (G - 1))
    eye = torch.eye(K, dtype=xi.dtype, device=xi.device).reshape(-1)
    trace = float(S @ eye) / G
    value = c2 - 2.0 * trace + K
    C = S / G
    influence = means @ (2.0 * (C - eye))
    se = float(influence.std()) / math.sqrt(G)
    return PopulationLoss(value=value, se=se, n_groups=G, n_pairs=n)


def rkhs_norm(theta_zz: Tensor, c: Tensor) -> float:
    """||W||_F for f = Theta(., Z) c, i.e. W = sum_j phi(z_j) c_j^T: sqrt(tr(c^T Theta(Z, Z) c)).

    theta_zz [n, n] is the scalar kernel (the full kernel is Theta_s (x) I_K), c [n, K]."""
    if theta_zz.ndim != 2 or theta_zz.shape[0] != theta_zz.shape[1] or c.ndim != 2 or c.shape[0] != theta_zz.shape[0]:
        raise ConfigError(f"need theta [n, n] and c [n, K], got {tuple(theta_zz.shape)} and {tuple(c.shape)}")
    val = float((c.double() * (theta_zz.double() @ c.double())).sum())
    return math.sqrt(max(val, 0.0))


def correlation_distance(Ga: Tensor, Gb: Tensor, Fa: Tensor, Fb: Tensor) -> float:
    r"""Upper bound on ||C(g) - C(f)||_F from representations of two models on the same pairs:

        C(g) - C(f) = E (g - f)(a) g(a^+)^T + E f(a) (g - f)(a^+)^T, so by Cauchy-Schwarz
        ||C(g) - C(f)||_F <= D_a m_g(a^+) + m_f(a) D_{a^+},

    D_a^2 = E ||g(a) - f(a)||^2 (the representation distance of SPEC section 6 on first views),
    m_g(a^+)^2 = E ||g(a^+)||^2; expectations are means over the given rows."""
    def rms(X):
        return math.sqrt(float((X.double() ** 2).sum(1).mean()))

    return rms(Ga - Fa) * rms(Gb) + rms(Fa) * rms(Gb - Fb)


# --- the bound ---------------------------------------------------------------------------------

def deviation_bound(N: int, B: float, kappa_bar: float, delta: float, f0_sup: float = 0.0) -> float:
    """eps with sup_{f in F_B} ||C(f) - C_hat(f)||_F <= eps with probability >= 1 - delta:
    A^2 (2 + sqrt(2 ln(1/delta))) / sqrt(N), A = f0_sup + B sqrt(kappa_bar)."""
    N = check_positive_int("N", N)
    B = check_nonneg_float("B", B)
    kappa_bar = check_nonneg_float("kappa_bar", kappa_bar)
    f0_sup = check_nonneg_float("f0_sup", f0_sup)
    delta = _check_delta(delta)
    A = f0_sup + B * math.sqrt(kappa_bar)
    return A * A * (2.0 + math.sqrt(2.0 * math.log(1.0 / delta))) / math.sqrt(N)


def _check_delta(delta: float) -> float:
    delta = check_positive_float("delta", delta)
    if delta >= 1.0:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    return delta


def union_grid_point(B: float, delta: float, grid_start: float = 1.0, grid_ratio: float = 1.1) -> tuple[float, float, int]:
    """(B_j, delta_j, j) for the smallest grid value B_j = grid_start * grid_ratio^j >= B, with
    delta_j = delta / ((j + 1)(j + 2)), so that the bound holds for all grid values at once
    with probability >= 1 - delta."""
    B = check_nonneg_float("B", B)
    grid_start = check_positive_float("grid_start", grid_start)
    grid_ratio = check_positive_float("grid_ratio", grid_ratio)
    if grid_ratio <= 1.0:
        raise ConfigError(f"grid_ratio must be > 1, got {grid_ratio}")
    j = 0 if B <= grid_start else max(0, math.ceil(math.log(B / grid_start) / math.log(grid_ratio) - 1e-12))
    while grid_start * grid_ratio ** j < B:   # guard against rounding in the log
        j += 1
    return grid_start * grid_ratio ** j, _check_delta(delta) / ((j + 1) * (j + 2)), j


@dataclass
class GeneralizationBound:
    """The pieces of :func:`generalization_bound`: B_used / delta_used (after the union bound),
    eps (uniform deviation of C), lipschitz and triangle (the two gap bounds; triangle is None
    without a training loss), bound = the smaller."""

    N: int
    K: int
    B: float
    kappa_bar: float
    delta: float
    f0_sup: float
    B_used: float
    delta_used: float
    eps: float
    lipschitz: float
    triangle: float | None
    bound: float

    def to_dict(self) -> dict:
        return asdict(self)


def generalization_terms(N: int, K: int, B: float, kappa_bar: float, delta: float = 0.05, *,
                         train_loss: float | None = None, f0_sup: float = 0.0, union: bool = True,
                         grid_start: float = 1.0, grid_ratio: float = 1.1) -> GeneralizationBound:
    """All terms of the bound on L(f) - L_hat(f) (see the module docstring)."""
    K = check_positive_int("K", K)
    if union:
        B_used, delta_used, _ = union_grid_point(B, delta, grid_start, grid_ratio)
    else:
        B_used, delta_used = check_nonneg_float("B", B), _check_delta(delta)
    eps = deviation_bound(N, B_used, kappa_bar, delta_used, f0_sup)
    A2 = (f0_sup + B_used * math.sqrt(kappa_bar)) ** 2
    lipschitz = 2.0 * (A2 + math.sqrt(K)) * eps
    triangle = None
    if train_loss is not None:
        lhat = check_nonneg_float("train_loss", max(float(train_loss), 0.0))
        triangle = 2.0 * eps * math.sqrt(lhat) + eps * eps
    bound = lipschitz if triangle is None else min(lipschitz, triangle)
    return GeneralizationBound(N=N, K=K, B=float(B), kappa_bar=float(kappa_bar), delta=float(delta),
                               f0_sup=float(f0_sup), B_used=B_used, delta_used=delta_used, eps=eps,
                               lipschitz=lipschitz, triangle=triangle, bound=bound)


def generalization_bound(N: int, K: int, B: float, kappa_bar: float, delta: float = 0.05, **kwargs) -> float:
    """Upper bound, holding with probability >= 1 - delta, on the population minus the training
    Barlow Twins loss of any kernel model f = f_0 + W^T phi with ||W||_F <= B, from N pairs,
    K outputs and sup kappa(x, x) <= kappa_bar. Options as :func:`generalization_terms`."""
    return generalization_terms(N, K, B, kappa_bar, delta, **kwargs).bound


def finite_width_bound(eps: float, train_loss: float, dist_population: float, dist_train: float) -> float:
    r"""Bound on L(g) - L_hat(g) for a network g near a kernel model f in F_B:

        sqrt(L(g)) <= sqrt(L_hat(g)) + eps + ||C(g) - C(f)||_F + ||C_hat(g) - C_hat(f)||_F,

    with eps from :func:`deviation_bound` for f's class and the two distances from
    :func:`correlation_distance` (population: fresh pairs; train: the N training pairs)."""
    lhat = max(float(train_loss), 0.0)
    r = math.sqrt(lhat) + eps + dist_population + dist_train
    return r * r - lhat
