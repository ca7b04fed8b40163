"""widessl.ntk: empirical NTK (closed form and generic), infinite-width NTK, NTK drift.

Checks (SPEC section 5):
- the two-layer closed form equals the generic torch.func path, which equals an explicit
  Jacobian contracted by hand (also for DeepNet and a user nn.Sequential);
- the infinite-width NTK equals the Monte Carlo average of empirical NTKs over independently
  seeded wide nets (two-layer and depth 3), and off-diagonal output blocks average to 0;
- closed-form Gaussian expectations (relu, erf) agree with Gauss-Hermite quadrature, the
  quadrature converges for tanh and the other smooth activations, and a 2-D Monte Carlo
  agrees with it;
- ntk_change / model_ntk_change: zero, scale invariance, operator norm, blocked == full.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from widessl.errors import ConfigError, DataError
from widessl.models import DeepNet, TwoLayerNet, get_activation
from widessl.ntk import (
    analytic_ntk,
    analytic_ntk_fn,
    empirical_ntk,
    empirical_ntk_fn,
    gaussian_expectations,
    model_ntk_change,
    ntk_change,
    ntk_matrix,
    ntk_trace,
)

# Z-score threshold for Monte Carlo comparisons: each entry's (mean - analytic) / SE is roughly
# standard normal (t with n_nets - 1 >= 47 dof); the max over ~10-15 entries exceeds 4.5 with
# probability ~1e-3, so 4.5 only fails for a real discrepancy (seeds are fixed: deterministic).
Z_MAX = 4.5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a - b).abs().max() / b.abs().max())


def explicit_ntk(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Independent reference: the full Jacobian d f(x) / d theta by torch.autograd.functional.jacobian
    on the flattened parameter vector, contracted by hand: Theta[i, j, k, l] = sum_p J1[i,k,p] J2[j,l,p]."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def jac(x):
        def f(flat):
            parts = torch.split(flat, sizes)
            params = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes)}
            return functional_call(model, params, (x,))

        return torch.autograd.functional.jacobian(f, theta)  # [n, K, P]

    J1, J2 = jac(x1), jac(x2)
    n1, K, P = J1.shape
    n2 = J2.shape[0]
    T = J1.reshape(n1 * K, P) @ J2.reshape(n2 * K, P).T
    return T.reshape(n1, K, n2, K).permute(0, 2, 1, 3)


def quadrature(act, q1, q2, c, order):
    """Generic 2-D Gauss-Hermite path of gaussian_expectations, forced for any activation by
    renaming it (closed forms are chosen by name) and, where the API has a method switch, by
    asking for quadrature explicitly."""
    renamed = dataclasses.replace(act, name=act.name + "_quad")
    if "method" in inspect.signature(gaussian_expectations).parameters:
        return gaussian_expectations(renamed, q1, q2, c, order, method="quadrature")
    return gaussian_expectations(renamed, q1, q2, c, order)


def moments(x1, x2, sigma_w=1.0):
    return (sigma_w ** 2 * (x1 * x1).sum(1), sigma_w ** 2 * (x2 * x2).sum(1), sigma_w ** 2 * x1 @ x2.T)


# --------------------------------------------------------------------------- empirical NTK


@pytest.mark.parametrize("activation", ["tanh", "relu", "erf", "gelu"])
@pytest.mark.parametrize("bias", [False, True])
def test_closed_form_equals_jacobian(unit_inputs, activation, bias):
    net = TwoLayerNet(6, 40, 3, activation, bias=bias, sigma_w=1.2, sigma_b=0.8, seed=2)
    x1, x2 = unit_inputs(5, 6, seed=1), unit_inputs(4, 6, seed=2)
    for a, b in ((x1, None), (x1, x2)):
        cf = empirical_ntk(net, a, b, method="closed_form")
        jac = empirical_ntk(net, a, b, method="jacobian")
        assert cf.shape == jac.shape == (a.shape[0], (b if b is not None else a).shape[0], 3, 3)
        # Same sums in a different order, float64: ~1e-15 relative; 1e-10 is the brief's bound.
        assert rel_err(cf, jac) < 1e-10
    # 'auto' picks the closed form; blocking does not change the numbers
    torch.testing.assert_close(empirical_ntk(net, x1, x2), empirical_ntk(net, x1, x2, method="closed_form"),
                               rtol=0, atol=0)
    torch.testing.assert_close(empirical_ntk(net, x1, x2, block_size=2), cf, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(empirical_ntk(net, x1, x2, method="jacobian", block_size=2), jac,
                               rtol=1e-14, atol=1e-14)


def test_closed_form_equals_spec_formula(unit_inputs):
    # SPEC section 5 formula written out in numpy (no bias, sigma_w = 1).
    net = TwoLayerNet(5, 30, 2, "tanh", seed=0)
    x1, x2 = unit_inputs(3, 5, seed=3).numpy(), unit_inputs(4, 5, seed=4).numpy()
    W, V = net.W.detach().numpy(), net.V.detach().numpy()
    h1, h2 = x1 @ W.T, x2 @ W.T
    s1, s2 = np.tanh(h1), np.tanh(h2)
    d1, d2 = 1 - s1 ** 2, 1 - s2 ** 2
    M = 30
    ref = np.einsum("im,jm->ij", s1, s2)[:, :, None, None] / M * np.eye(2) + (x1 @ x2.T)[:, :, None, None] * np.einsum(
        "km,lm,im,jm->ijkl", V, V, d1, d2) / M
    np.testing.assert_allclose(empirical_ntk(net, x1, x2).numpy(), ref, rtol=1e-12, atol=1e-14)


def test_generic_path_deep_equals_explicit_jacobian(unit_inputs):
    net = DeepNet(5, 12, 3, depth=3, activation="tanh", bias=True, sigma_w=1.1, sigma_b=0.6, seed=0)
    x1, x2 = unit_inputs(4, 5, seed=5), unit_inputs(3, 5, seed=6)
    ref = explicit_ntk(net, x1, x2)
    # float64 contraction of the same Jacobians: ~1e-15 relative.
    assert rel_err(empirical_ntk(net, x1, x2), ref) < 1e-10
    assert rel_err(empirical_ntk(net, x1, x2, block_size=3), ref) < 1e-10
    ref11 = explicit_ntk(net, x1, x1)
    assert rel_err(empirical_ntk(net, x1), ref11) < 1e-10
    fn = empirical_ntk_fn(net)
    assert rel_err(fn(x1, x2), ref) < 1e-10


def test_generic_path_any_module(unit_inputs):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 9), torch.nn.Tanh(), torch.nn.Linear(9, 2)).double()
    x1, x2 = unit_inputs(3, 5, seed=7), unit_inputs(2, 5, seed=8)
    assert rel_err(empirical_ntk(net, x1, x2), explicit_ntk(net, x1, x2)) < 1e-10
    with pytest.raises(ConfigError, match="closed_form"):
        empirical_ntk(net, x1, method="closed_form")


def test_ntk_structure(unit_inputs):
    net = TwoLayerNet(6, 50, 3, "erf", seed=1)
    x = unit_inputs(5, 6)
    theta = empirical_ntk(net, x)
    mat = ntk_matrix(theta)
    assert mat.shape == (15, 15)
    i, j, k, l = 3, 1, 2, 0
    assert mat[i * 3 + k, j * 3 + l] == theta[i, j, k, l]
    torch.testing.assert_close(mat, mat.T, rtol=0, atol=1e-14)
    assert float(torch.linalg.eigvalsh(mat).min()) > -1e-12  # a Gram matrix: PSD
    tr = ntk_trace(theta)
    torch.testing.assert_close(tr, torch.diagonal(theta, dim1=2, dim2=3).mean(-1), rtol=0, atol=0)
    assert ntk_matrix(tr) is tr
    with pytest.raises(ConfigError):
        ntk_matrix(torch.zeros(2, 2, 2))


def test_empirical_ntk_input_errors(unit_inputs):
    net = TwoLayerNet(6, 8, 2, seed=0)
    x = unit_inputs(3, 6)
    bad = x.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(DataError, match="row 1"):
        empirical_ntk(net, bad)
    with pytest.raises(DataError):
        empirical_ntk(net, unit_inputs(3, 5))
    with pytest.raises(ConfigError):
        empirical_ntk(net, x, method="magic")


# --------------------------------------------------------------------------- Monte Carlo


def _mc_check(make_net, x, n_nets, analytic, K):
    traces, offs = [], []
    for s in range(n_nets):
        theta = empirical_ntk(make_net(1000 + s), x)
        traces.append(ntk_trace(theta))
        if K > 1:
            offs.append(torch.stack([theta[:, :, k, l] for k in range(K) for l in range(k + 1, K)]))
    traces = torch.stack(traces)
    iu = torch.triu_indices(x.shape[0], x.shape[0])  # the kernel is symmetric: distinct entries only
    mean, se = traces.mean(0), traces.std(0) / math.sqrt(n_nets)
    z = ((mean - analytic) / se)[iu[0], iu[1]]
    print(f"max z: diagonal {float(z.abs().max()):.2f}", end="")
    assert float(z.abs().max()) < Z_MAX, f"diagonal blocks: max z = {float(z.abs().max()):.2f}"
    # and the test has teeth: the standard errors are small relative to the kernel
    assert float(se.max() / analytic.abs().max()) < 0.05
    if K > 1:
        offs = torch.stack(offs)  # [nets, pairs, n, n]
        zo = offs.mean(0) / (offs.std(0) / math.sqrt(n_nets))
        print(f", off-diagonal {float(zo.abs().max()):.2f}", end="")
        assert float(zo.abs().max()) < Z_MAX, f"off-diagonal blocks: max z = {float(zo.abs().max()):.2f}"


@pytest.mark.parametrize(
    "activation,kw",
    [("relu", {}), ("erf", {}), ("tanh", {}), ("tanh", dict(bias=True, sigma_w=1.2, sigma_b=0.5))],
    ids=["relu", "erf", "tanh", "tanh-bias"],
)
def test_analytic_vs_monte_carlo_two_layer(unit_inputs, activation, kw):
    # For a two-layer net E_init[Theta_M] = Theta_inf at every M (each term is an average of
    # M i.i.d. terms), so the MC mean is unbiased and only its standard error matters.
    d, M, K, n_nets = 16, 512, 3, 60
    x = unit_inputs(5, d, seed=10)
    analytic = analytic_ntk(x, activation=activation, **kw)
    _mc_check(lambda s: TwoLayerNet(d, M, K, activation, seed=s, **kw), x, n_nets, analytic, K)


@pytest.mark.parametrize(
    "activation,K,kw",
    [("relu", 2, dict(bias=True, sigma_w=1.2, sigma_b=0.5)), ("erf", 2, {}), ("tanh", 2, {})],
    ids=["relu-bias", "erf", "tanh"],
)
def test_analytic_vs_monte_carlo_deep(unit_inputs, activation, K, kw):
    # depth 3 at M=256: the finite-width bias of E[Theta_M] is O(1/M), well below the
    # standard error O(1/sqrt(M n_nets)) of the mean, so the z-test applies.
    d, M, n_nets = 16, 256, 48
    x = unit_inputs(4, d, seed=11)
    analytic = analytic_ntk(x, activation=activation, depth=3, **kw)
    _mc_check(lambda s: DeepNet(d, M, K, depth=3, activation=activation, seed=s, **kw), x, n_nets, analytic, K)


# --------------------------------------------------------------------------- analytic NTK


def test_analytic_ntk_shapes_and_api(unit_inputs):
    x1, x2 = unit_inputs(4, 6, seed=1), unit_inputs(3, 6, seed=2)
    t = analytic_ntk(x1, x2, activation="relu", depth=2)
    assert t.shape == (4, 3) and t.dtype == torch.float64
    full = analytic_ntk(torch.cat([x1, x2]), activation="relu", depth=2)
    torch.testing.assert_close(t, full[:4, 4:], rtol=1e-12, atol=1e-14)
    sym = analytic_ntk(x1, activation="tanh")
    torch.testing.assert_close(sym, sym.T, rtol=0, atol=0)
    theta, nngp = analytic_ntk(x1, activation="erf", return_nngp=True)
    q, _, c = moments(x1, x1)
    k, kd = gaussian_expectations(get_activation("erf"), q, q, c)
    torch.testing.assert_close(nngp, k, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(theta, k + c * kd, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(analytic_ntk_fn("relu", depth=2)(x1, x2), t, rtol=0, atol=0)
    with pytest.raises(ConfigError):
        analytic_ntk(x1, activation="nope")
    with pytest.raises(DataError):
        analytic_ntk(x1, unit_inputs(2, 5))


def test_analytic_relu_deep_recursion_by_hand(unit_inputs):
    # Arc-cosine kernel recursion of SPEC section 5 written out in numpy, with bias and sigma_w.
    sw, sb, L = 1.3, 0.4, 3
    x = unit_inputs(5, 7, seed=3).numpy()
    sigma = sw ** 2 * x @ x.T + sb ** 2
    theta = sigma.copy()
    for layer in range(1, L + 1):
        q = np.diag(sigma)
        norm = np.sqrt(np.outer(q, q))
        p = np.arccos(np.clip(sigma / norm, -1, 1))
        k = norm / (2 * np.pi) * (np.sin(p) + (np.pi - p) * np.cos(p))
        kd = (np.pi - p) / (2 * np.pi)
        if layer < L:
            sigma = sw ** 2 * k + sb ** 2
            theta = theta * sw ** 2 * kd + sigma
        else:
            theta = theta * kd + k
    got = analytic_ntk(torch.as_tensor(x), activation="relu", depth=L, bias=True, sigma_w=sw, sigma_b=sb).numpy()
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(got[off], theta[off], rtol=1e-12)
    # On the diagonal c / sqrt(q q) = 1 up to an ulp and arccos turns an ulp into ~sqrt(eps)
    # ~ 1e-8 in the angle (E s's' = (pi - p) / 2pi is not differentiable at p = 0): the kernel
    # there is only determined to ~1e-8 relative, by either implementation.
    np.testing.assert_allclose(np.diag(got), np.diag(theta), rtol=1e-7)


def test_erf_closed_form_vs_quadrature(unit_inputs):
    x1, x2 = unit_inputs(5, 8, seed=1), unit_inputs(4, 8, seed=2)
    q1, q2, c = moments(x1, x2, sigma_w=1.3)
    act = get_activation("erf")
    k, kd = gaussian_expectations(act, q1, q2, c)
    k48, kd48 = quadrature(act, q1, q2, c, 48)
    k96, kd96 = quadrature(act, q1, q2, c, 96)
    # erf is entire, so Gauss-Hermite converges geometrically: measured 3e-11 / 5e-10 at
    # order 48 and rounding level (~1e-16) at order 96.
    assert rel_err(k48, k) < 1e-9 and rel_err(kd48, kd) < 1e-8
    assert rel_err(k96, k) < 1e-13 and rel_err(kd96, kd) < 1e-13


def test_relu_closed_form_vs_quadrature(unit_inputs):
    # relu has a kink (and s' a jump), so Gauss-Hermite converges only algebraically
    # (measured ~1/n for E s s, ~1/sqrt(n) for E s' s'): check agreement to that accuracy
    # and that the error keeps falling with the order.
    x1, x2 = unit_inputs(5, 8, seed=1), unit_inputs(4, 8, seed=2)
    q1, q2, c = moments(x1, x2, sigma_w=1.3)
    act = get_activation("relu")
    k, kd = gaussian_expectations(act, q1, q2, c)
    errs = [tuple(rel_err(a, b) for a, b in zip(quadrature(act, q1, q2, c, o), (k, kd))) for o in (48, 96, 192)]
    assert errs[2][0] < 3e-3 and errs[2][1] < 3e-2
    assert errs[0][0] > errs[1][0] > errs[2][0]
    assert errs[0][1] > errs[1][1] > errs[2][1]


def test_tanh_quadrature_converges(unit_inputs):
    # tanh has poles at +-i pi/2, so Gauss-Hermite error falls like exp(-c sqrt(n)), not
    # geometrically. Measured relative errors of (E s s, E s' s') vs order 256 at unit-norm
    # inputs: 48 -> (1.6e-7, 3.7e-6), 96 -> (3e-11, 1.4e-9), 128 -> (3e-13, 2e-11).
    # So orders 48 and 96 differ by ~4e-6, not 1e-10: convergence is checked against order 256.
    x = unit_inputs(5, 8, seed=0)
    q, _, c = moments(x, x)
    act = get_activation("tanh")
    ref = quadrature(act, q, q, c, 256)
    for order, bound in ((48, 1e-5), (96, 1e-8), (128, 1e-10)):
        got = quadrature(act, q, q, c, order)
        assert max(rel_err(a, b) for a, b in zip(got, ref)) < bound, order


@pytest.mark.parametrize("name", ["gelu", "sigmoid", "softplus"])
def test_other_smooth_quadrature_converges(unit_inputs, name):
    # No poles near the real axis on the scale of the Gaussian: converged (<1e-12) by order 48-96.
    x = unit_inputs(5, 8, seed=0)
    q, _, c = moments(x, x, sigma_w=1.5)
    act = get_activation(name)
    ref = quadrature(act, q, q, c, 192)
    got = quadrature(act, q, q, c, 96)
    assert max(rel_err(a, b) for a, b in zip(got, ref)) < 1e-11


def test_default_analytic_tanh_is_accurate(unit_inputs):
    # Whatever the default path for tanh is (quadrature or series), the infinite-width NTK
    # should be accurate well beyond the Monte Carlo resolution: compare with a converged
    # order-256 quadrature (error ~1e-14 at unit-norm inputs, see above).
    x = unit_inputs(6, 8, seed=4)
    q, _, c = moments(x, x)
    k, kd = quadrature(get_activation("tanh"), q, q, c, 256)
    ref = k + c * kd
    assert rel_err(analytic_ntk(x, activation="tanh"), ref) < 1e-10


def test_tanh_expectations_vs_2d_monte_carlo():
    # 1e6 samples of (u, v) ~ N(0, [[q1, c], [c, q2]]); the mean of tanh(u)tanh(v) (and of
    # tanh'(u)tanh'(v)) must lie within 5 standard errors of the quadrature value.
    q1, q2, c = 1.0, 1.69, 0.6
    g = torch.Generator().manual_seed(0)
    n = 1_000_000
    z1 = torch.randn(n, generator=g, dtype=torch.float64)
    z2 = torch.randn(n, generator=g, dtype=torch.float64)
    u = math.sqrt(q1) * z1
    rho = c / math.sqrt(q1 * q2)
    v = math.sqrt(q2) * (rho * z1 + math.sqrt(1 - rho ** 2) * z2)
    act = get_activation("tanh")
    k, kd = quadrature(act, torch.tensor([q1], dtype=torch.float64), torch.tensor([q2], dtype=torch.float64),
                       torch.tensor([[c]], dtype=torch.float64), 128)
    for samples, exact in ((act.fn(u) * act.fn(v), k), (act.deriv(u) * act.deriv(v), kd)):
        se = float(samples.std()) / math.sqrt(n)
        assert abs(float(samples.mean()) - float(exact)) < 5 * se
        assert se < 1e-3  # resolution of the check


# --------------------------------------------------------------------------- NTK change


def test_ntk_change_basics(unit_inputs):
    x = unit_inputs(6, 5)
    t0 = empirical_ntk(TwoLayerNet(5, 20, 2, seed=0), x)
    t1 = empirical_ntk(TwoLayerNet(5, 20, 2, seed=1), x)
    assert ntk_change(t0, t0) == 0.0
    assert ntk_change(t0, t0.clone(), ord="op") == 0.0
    base = ntk_change(t0, t1)
    m0, m1 = ntk_matrix(t0).numpy(), ntk_matrix(t1).numpy()
    assert base == pytest.approx(np.linalg.norm(m1 - m0) / np.linalg.norm(m0), rel=1e-12)
    # scale invariance of the relative change
    assert ntk_change(3.7 * t0, 3.7 * t1) == pytest.approx(base, rel=1e-12)
    assert ntk_change(3.7 * t0, 3.7 * t1, ord="op") == pytest.approx(ntk_change(t0, t1, ord="op"), rel=1e-12)
    # operator norm of the (nK x nK) matrix, against numpy's spectral norm
    op = np.linalg.norm(m1 - m0, 2) / np.linalg.norm(m0, 2)
    assert ntk_change(t0, t1, ord="op") == pytest.approx(op, rel=1e-12)
    # also for a non-symmetric (rectangular) kernel, where the eigenvalue shortcut does not apply
    x2 = unit_inputs(4, 5, seed=9)
    r0 = empirical_ntk(TwoLayerNet(5, 20, 2, seed=0), x, x2)
    r1 = empirical_ntk(TwoLayerNet(5, 20, 2, seed=1), x, x2)
    a0, a1 = ntk_matrix(r0).numpy(), ntk_matrix(r1).numpy()
    assert ntk_change(r0, r1, ord="op") == pytest.approx(np.linalg.norm(a1 - a0, 2) / np.linalg.norm(a0, 2), rel=1e-12)
    with pytest.raises(ConfigError):
        ntk_change(t0, t1, ord="nuc")
    with pytest.raises(ConfigError):
        ntk_change(t0, t1[:3])


@pytest.mark.parametrize("deep", [False, True], ids=["two_layer", "deep"])
def test_model_ntk_change_blocked_equals_full(unit_inputs, deep):
    d, M, K = 5, 16, 2
    x = unit_inputs(7, d, seed=3)
    if deep:
        net0 = DeepNet(d, M, K, depth=2, seed=0)
    else:
        net0 = TwoLayerNet(d, M, K, bias=True, seed=0)
    net1 = copy.deepcopy(net0)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in net1.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    full = ntk_change(empirical_ntk(net0, x), empirical_ntk(net1, x))
    assert full > 1e-3
    # Only the summation order differs: float64 rounding, 1e-12 relative.
    assert model_ntk_change(net0, net1, x, block_size=3) == pytest.approx(full, rel=1e-12)
    assert model_ntk_change(net0, net1, x) == pytest.approx(full, rel=1e-12)
    op = ntk_change(empirical_ntk(net0, x), empirical_ntk(net1, x), ord="op")
    assert model_ntk_change(net0, net1, x, ord="op") == pytest.approx(op, rel=1e-12)
    assert model_ntk_change(net0, net0, x, block_size=3) == 0.0


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_deep_closed_form_equals_explicit_jacobian(unit_inputs, activation, depth, bias):
    # The layer-wise closed form (widessl.ntk.deep) against Jacobians from autograd:
    # the same sums in a different order, so agreement to rounding (~1e-15 relative).
    net = DeepNet(6, 10, 3, depth=depth, activation=activation, bias=bias, sigma_w=1.2, sigma_b=0.5, seed=3)
    x1, x2 = unit_inputs(4, 6, seed=11), unit_inputs(3, 6, seed=12)
    ref = explicit_ntk(net, x1, x2)
    assert rel_err(empirical_ntk(net, x1, x2, method="closed_form", block_size=3), ref) < 1e-10
    assert rel_err(empirical_ntk(net, x1, x2, method="jacobian"), ref) < 1e-10


@pytest.mark.parametrize("name", ["tanh", "gelu", "softplus"])
@pytest.mark.parametrize("depth", [1, 3])
def test_series_equals_quadrature(unit_inputs, name, depth):
    # Two independent evaluations of the same Gaussian integrals: the Hermite series
    # (certified truncation, tail < 1e-13) and high-order 2-D quadrature (order 160:
    # converged to ~1e-13 for tanh, see test_tanh_quadrature_converges).
    x = unit_inputs(6, 8, seed=9)
    a = analytic_ntk(x, activation=name, depth=depth, method="series")
    b = analytic_ntk(x, activation=name, depth=depth, method="quadrature", quadrature_order=160)
    assert rel_err(a, b) < 1e-11
