"""widessl.losses: the Barlow Twins family of SPEC section 3.

Each loss value is checked against the formula written out in numpy, the closed-form
function-space gradient (.grad / .value_and_grad) against autograd of the same forward, the
paper-form gradient against the SPEC's (2/N) F_b (C - I)^T, (2/N) F_a (C - I), and the
variants' defining properties (symmetry, invariance to per-column affine maps).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from widessl.errors import ConfigError, DataError
from widessl.losses import (
    LOSSES,
    BarlowTwinsLoss,
    StandardizedBarlowTwinsLoss,
    SymmetrizedBarlowTwinsLoss,
    WeightedBarlowTwinsLoss,
    get_loss,
)

N, K = 13, 5


@pytest.fixture
def views():
    g = torch.Generator().manual_seed(0)
    Fa = torch.randn(N, K, generator=g, dtype=torch.float64)
    Fb = 0.6 * Fa + 0.8 * torch.randn(N, K, generator=g, dtype=torch.float64)
    return Fa, Fb


def _np_standardize(F, eps):
    c = F - F.mean(0, keepdims=True)
    return c / np.sqrt((c * c).mean(0, keepdims=True) + eps)


def _np_weighted(C, lam):
    d = np.diag(C)
    off = C - np.diag(d)
    return float(((1 - d) ** 2).sum() + lam * (off ** 2).sum())


def reference_value(name, Fa, Fb):
    a, b = Fa.numpy(), Fb.numpy()
    n, k = a.shape
    if name == "paper":
        return float(np.linalg.norm(a.T @ b / n - np.eye(k), "fro") ** 2)
    if name == "weighted":
        return _np_weighted(a.T @ b / n, 0.05)
    if name == "symmetrized":
        C = (a.T @ b + b.T @ a) / (2 * n)
        return float(np.linalg.norm(C - np.eye(k), "fro") ** 2)
    if name == "standardized":
        C = _np_standardize(a, 1e-5).T @ _np_standardize(b, 1e-5) / n
        return _np_weighted(C, 5e-3)
    raise AssertionError(name)


def make(name):
    return {
        "paper": BarlowTwinsLoss(),
        "weighted": WeightedBarlowTwinsLoss(lambda_=0.05),
        "symmetrized": SymmetrizedBarlowTwinsLoss(),
        "standardized": StandardizedBarlowTwinsLoss(),
    }[name]


@pytest.mark.parametrize("name", ["paper", "weighted", "symmetrized", "standardized"])
def test_value_matches_formula(views, name):
    Fa, Fb = views
    loss = make(name)
    ref = reference_value(name, Fa, Fb)
    # float64, O(K^2) terms of O(1): rounding-level agreement.
    assert float(loss(Fa, Fb)) == pytest.approx(ref, rel=1e-13)
    value, _, _ = loss.value_and_grad(Fa, Fb)
    assert float(value) == pytest.approx(ref, rel=1e-13)


@pytest.mark.parametrize("name", ["paper", "weighted", "symmetrized", "standardized"])
def test_closed_form_grad_matches_autograd(views, name):
    Fa, Fb = views
    loss = make(name)
    a, b = Fa.clone().requires_grad_(True), Fb.clone().requires_grad_(True)
    ga, gb = torch.autograd.grad(loss(a, b), (a, b))
    da, db = loss.grad(Fa, Fb)
    # Same algebra in a different order, float64: relative error ~1e-15; 1e-12 leaves margin.
    for closed, auto in ((da, ga), (db, gb)):
        assert closed.shape == auto.shape
        assert float((closed - auto).abs().max() / auto.abs().max()) < 1e-12


def test_paper_grad_is_spec_formula(views):
    Fa, Fb = views
    C = Fa.T @ Fb / N
    R = C - torch.eye(K, dtype=torch.float64)
    da, db = BarlowTwinsLoss().grad(Fa, Fb)
    torch.testing.assert_close(da, (2.0 / N) * Fb @ R.T, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(db, (2.0 / N) * Fa @ R, rtol=1e-13, atol=1e-15)


def test_weighted_lambda_one_is_paper(views):
    Fa, Fb = views
    assert float(WeightedBarlowTwinsLoss(lambda_=1.0)(Fa, Fb)) == pytest.approx(float(BarlowTwinsLoss()(Fa, Fb)),
                                                                               rel=1e-14)
    assert WeightedBarlowTwinsLoss().offdiag_weight == 5e-3


def test_perfect_solution_has_zero_loss():
    # Columns orthonormal with norm sqrt(N): C = I, so L = 0 and the gradient vanishes.
    Q, _ = torch.linalg.qr(torch.randn(N, K, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    F = Q * N ** 0.5
    assert float(BarlowTwinsLoss()(F, F)) < 1e-26
    da, db = BarlowTwinsLoss().grad(F, F)
    assert float(da.abs().max()) < 1e-13 and float(db.abs().max()) < 1e-13


def test_symmetrized_is_symmetric_in_views(views):
    Fa, Fb = views
    loss = SymmetrizedBarlowTwinsLoss()
    assert float(loss(Fa, Fb)) == pytest.approx(float(loss(Fb, Fa)), rel=1e-14)
    da, db = loss.grad(Fa, Fb)
    db2, da2 = loss.grad(Fb, Fa)
    torch.testing.assert_close(da, da2, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(db, db2, rtol=1e-14, atol=1e-15)
    # the cross-correlation itself is not symmetric here, so the checks above are not vacuous
    C = Fa.T @ Fb
    assert float((C - C.T).abs().max()) > 1e-3
    # and the symmetrized C_s is what the loss sees
    Cs = loss.cross_correlation(Fa, Fb)
    torch.testing.assert_close(Cs, 0.5 * (C + C.T) / N, rtol=1e-14, atol=1e-15)


def test_standardized_affine_invariance(views):
    Fa, Fb = views
    loss = StandardizedBarlowTwinsLoss(eps=1e-12)
    g = torch.Generator().manual_seed(2)
    scale_a = torch.rand(K, generator=g, dtype=torch.float64) * 3 + 0.5
    scale_b = torch.rand(K, generator=g, dtype=torch.float64) * 3 + 0.5
    shift_a = torch.randn(K, generator=g, dtype=torch.float64) * 5
    shift_b = torch.randn(K, generator=g, dtype=torch.float64) * 5
    base = float(loss(Fa, Fb))
    moved = float(loss(Fa * scale_a + shift_a, Fb * scale_b + shift_b))
    # Exact invariance up to eps / var ~ 1e-12 (and rounding of the 5-unit shifts, ~1e-15).
    assert moved == pytest.approx(base, rel=1e-10)
    # With the default eps=1e-5 the invariance is approximate, to O(eps / var).
    default = StandardizedBarlowTwinsLoss()
    assert float(default(Fa * scale_a + shift_a, Fb * scale_b + shift_b)) == pytest.approx(
        float(default(Fa, Fb)), rel=1e-4)
    # Gradient of a scale-invariant loss is orthogonal to the per-column scaling direction F
    # and to constant shifts: sum_i dL/dF_ik F_ik = 0 and sum_i dL/dF_ik = 0 (up to eps).
    da, db = loss.grad(Fa, Fb)
    assert float((da * (Fa - Fa.mean(0))).sum(0).abs().max()) < 1e-9
    assert float(da.sum(0).abs().max()) < 1e-12


def test_standardized_needs_two_rows():
    with pytest.raises(DataError, match="at least 2"):
        StandardizedBarlowTwinsLoss()(torch.randn(1, 3, dtype=torch.float64), torch.randn(1, 3, dtype=torch.float64))


@pytest.mark.parametrize("name", list(LOSSES))
def test_shape_mismatch_raises_data_error(name):
    loss = get_loss(name)
    a = torch.randn(6, 3, dtype=torch.float64)
    with pytest.raises(DataError):
        loss(a, torch.randn(6, 4, dtype=torch.float64))
    with pytest.raises(DataError):
        loss.grad(a, torch.randn(5, 3, dtype=torch.float64))
    with pytest.raises(DataError):
        loss(a[0], a[0])


def test_get_loss():
    assert isinstance(get_loss("paper"), BarlowTwinsLoss)
    assert isinstance(get_loss(" Symmetrized "), SymmetrizedBarlowTwinsLoss)
    w = get_loss("weighted", lambda_=0.1)
    assert isinstance(w, WeightedBarlowTwinsLoss) and w.offdiag_weight == 0.1
    inst = StandardizedBarlowTwinsLoss()
    assert get_loss(inst) is inst
    with pytest.raises(ConfigError) as info:
        get_loss("simclr")
    for name in LOSSES:
        assert name in str(info.value)


def test_bad_loss_params():
    with pytest.raises(ConfigError):
        WeightedBarlowTwinsLoss(lambda_=-1.0)
    with pytest.raises(ConfigError):
        StandardizedBarlowTwinsLoss(eps=0.0)
