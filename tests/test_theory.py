"""widessl.theory: the Hessian norm (structured = dense = power iteration = Lanczos), c_0 and R_T
against direct autograd, the Theorem 3.1 bound against the measured NTK change, the
generalization bound's algebra and its concentration step, the population-loss estimator, and
``widessl theory`` end to end on a tiny profile (bound >= measured gap in every case).

Tolerances (float64, unit roundoff u = 1.1e-16):
* structured vs dense eigenvalues: both are backward stable, so they agree to a few hundred u
  relative (1e-12 allowed).
* Lanczos with full re-orthogonalization on P <= a few hundred: the top Ritz value converges
  quadratically once isolated; 1e-11 allowed.
* power iteration converges from below at rate (|lambda_2| / |lambda_1|)^2 per product; stopped
  when the estimate changes by < 1e-14 relative, the remaining error is < 1e-14 / (1 - r^2), i.e.
  below 1e-10 unless the two top |eigenvalues| are within 1e-4 of each other; 1e-9 allowed.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from widessl.data import load_mnist
from widessl.models import DeepNet, TwoLayerNet
from widessl.ntk import analytic_ntk, empirical_ntk, model_ntk_change, ntk_matrix
from widessl.theory import (
    SphereKernel,
    TheoryProfile,
    certified_segment_hessian_bound,
    deviation_bound,
    generalization_bound,
    generalization_terms,
    gradient_bound,
    gradient_norms,
    hessian_norm,
    hessian_spectral_norm,
    hessian_vector_product,
    interpolate,
    interval_sup,
    measure_ntk_bound,
    param_distance,
    population_bt_loss,
    rkhs_norm,
    second_derivative,
    two_layer_hessian_norms,
    union_grid_point,
)
from widessl.theory.derivatives import CRITICAL_POINTS, global_sup
from widessl.theory.hessian import dense_hessian
from widessl.theory.ntk_bound import _two_layer_ntk_matvec, ntk_top_eigenvalue
from widessl.train import ConvergenceRule, train

SMOOTH = ("tanh", "erf", "gelu", "sigmoid", "softplus", "linear")


def _unit(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


# --- second derivatives and interval suprema ---------------------------------------------------

@pytest.mark.parametrize("act", SMOOTH)
def test_second_derivative_matches_autograd(act):
    from widessl.models.activations import get_activation

    h = torch.linspace(-4, 4, 201, dtype=torch.float64, requires_grad=True)
    s1 = torch.autograd.grad(get_activation(act).fn(h).sum(), h, create_graph=True)[0]
    s2 = (torch.autograd.grad(s1.sum(), h)[0] if s1.requires_grad else torch.zeros_like(h))
    assert torch.allclose(second_derivative(act)(h.detach()), s2, atol=1e-13, rtol=1e-12)


@pytest.mark.parametrize("act", SMOOTH)
@pytest.mark.parametrize("order", (1, 2))
def test_interval_sup_is_exact(act, order):
    """sup over [lo, hi] from critical points equals the max over a fine grid (up to the grid's
    resolution) and is never below it; also the global sup."""
    from widessl.theory.derivatives import derivative

    g = torch.Generator().manual_seed(1)
    lo = torch.randn(200, generator=g, dtype=torch.float64) * 2
    hi = lo + torch.randn(200, generator=g, dtype=torch.float64) * 2
    got = interval_sup(act, order, lo, hi)
    t = torch.linspace(0, 1, 4001, dtype=torch.float64)
    grid = lo[:, None] + t[None, :] * (hi - lo)[:, None]
    ref = derivative(act, order)(grid).abs().amax(1)
    assert (got >= ref - 1e-13).all()
    assert (got <= ref + 1e-5).all()           # grid spacing <= 2e-3, |g'| = O(1)
    dense = derivative(act, order)(torch.linspace(-30, 30, 600001, dtype=torch.float64)).abs().max()
    assert global_sup(act, order) >= float(dense) - 1e-12
    assert global_sup(act, order) <= float(dense) + 1e-9
    assert set(CRITICAL_POINTS) >= {act}


def test_relu_has_no_hessian_bound():
    from widessl.errors import ConfigError

    with pytest.raises(ConfigError, match="not twice differentiable"):
        interval_sup("relu", 2, torch.zeros(1), torch.ones(1))


# --- Hessian spectral norm ----------------------------------------------------------------------

@pytest.mark.parametrize("act", ("tanh", "erf", "gelu", "softplus"))
@pytest.mark.parametrize("bias", (False, True))
def test_structured_hessian_norm_equals_dense_and_lanczos(act, bias):
    net = TwoLayerNet(5, 7, 3, act, bias=bias, sigma_w=1.3, sigma_b=0.7, seed=3)
    x = _unit(4, 5, seed=2) * 1.5
    structured = two_layer_hessian_norms(net, x)
    for i in range(x.shape[0]):
        for k in range(3):
            dense = float(torch.linalg.eigvalsh(dense_hessian(net, x[i], k)).abs().max())
            assert structured[i, k] == pytest.approx(dense, rel=1e-12)
            lz = hessian_spectral_norm(net, x[i], k, method="lanczos", tol=1e-15)
            assert lz.norm == pytest.approx(dense, rel=1e-11)
    assert hessian_norm(net, x) == pytest.approx(float(structured.max()), rel=0)
    assert hessian_norm(net, x, method="dense") == pytest.approx(float(structured.max()), rel=1e-12)


def test_hessian_vector_product_matches_dense():
    net = TwoLayerNet(5, 7, 3, "tanh", bias=True, seed=0)
    a = _unit(1, 5, seed=1)[0]
    H = dense_hessian(net, a, 1)
    matvec, dim = hessian_vector_product(net, a, 1)
    assert dim == H.shape[0] == 5 * 7 + 3 * 7 + 7
    v = torch.randn(dim, dtype=torch.float64)
    assert torch.allclose(matvec(v), H @ v, rtol=1e-12, atol=1e-14)
    assert torch.allclose(H, H.T, atol=1e-14)


@pytest.mark.parametrize("act", ("tanh", "gelu"))
def test_power_iteration_matches_the_dense_top_eigenvalue(act):
    """Power iteration on Hessian-vector products, wherever the next |eigenvalue| (other than
    -lambda_1) is at most 0.9 |lambda_1| (so 2000 products converge to 1e-14 and beyond)."""
    net = TwoLayerNet(5, 6, 3, act, bias=True, seed=4)
    x = _unit(4, 5, seed=7) * 1.2
    checked = 0
    for i in range(4):
        for k in range(3):
            ev = torch.linalg.eigvalsh(dense_hessian(net, x[i], k)).abs().sort(descending=True).values
            top = float(ev[0])
            rest = ev[(ev - top).abs() > 1e-10 * top]
            if len(rest) and float(rest[0]) > 0.9 * top:
                continue
            est = hessian_spectral_norm(net, x[i], k, method="power", tol=1e-14, max_iter=2000)
            assert est.converged and est.norm == pytest.approx(top, rel=1e-9)
            checked += 1
    assert checked >= 4


def test_structured_hessian_agrees_with_lanczos_on_mnist_sized_net():
    """d = 784, M = 256 (P = 203,264): too big for the dense Hessian; Lanczos on jvp-of-grad."""
    net = TwoLayerNet(784, 256, 10, "tanh", seed=0)
    x = torch.nn.functional.normalize(torch.rand(6, 784, dtype=torch.float64), dim=1)
    value, (i, k) = hessian_norm(net, x, return_argmax=True)
    est = hessian_spectral_norm(net, x[i], k, method="lanczos", steps=60, tol=1e-13)
    assert est.norm == pytest.approx(value, rel=1e-10)


def test_power_iteration_on_a_generic_module_matches_dense():
    net = DeepNet(4, 6, 2, depth=2, activation="tanh", seed=1)
    a = _unit(1, 4, seed=5)[0]
    for k in range(2):
        dense = float(torch.linalg.eigvalsh(dense_hessian(net, a, k)).abs().max())
        assert hessian_spectral_norm(net, a, k, tol=1e-14, max_iter=50000).norm == pytest.approx(dense, rel=1e-9)


def test_hessian_norm_scales_like_inverse_sqrt_width():
    """At initialization sqrt(M) ||H|| / sqrt(log M) stays O(1) (the max over neurons)."""
    x = _unit(8, 30, seed=0)
    vals = [math.sqrt(M) * hessian_norm(TwoLayerNet(30, M, 4, seed=0), x) for M in (64, 1024, 16384)]
    assert max(vals) / min(vals) < 2.0


def test_certified_segment_bound_dominates_the_segment():
    A, B = _unit(12, 8, seed=0), _unit(12, 8, seed=1)
    net = TwoLayerNet(8, 16, 3, "tanh", bias=True, seed=0)
    res = train(net, A, B, lr=0.5, max_epochs=200)
    x = torch.cat([A, B])
    cert = certified_segment_hessian_bound(res.model_0, net, x)
    sampled = max(hessian_norm(interpolate(res.model_0, net, t), x) for t in np.linspace(0, 1, 41))
    assert sampled <= cert
    assert cert <= 2.0 * sampled  # a certificate, but not a wild one


# --- c_0 and R_T ----------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ("two_layer", "deep"))
def test_gradient_norms_match_autograd(model):
    net = (TwoLayerNet(6, 9, 3, "tanh", bias=True, sigma_w=1.2, seed=0) if model == "two_layer"
           else DeepNet(6, 9, 3, depth=2, activation="erf", seed=0))
    x = _unit(5, 6, seed=4)
    got = gradient_norms(net, x)
    ref = torch.empty(5, 3, dtype=torch.float64)
    params = [p for p in net.parameters()]
    for i in range(5):
        for k in range(3):
            grads = torch.autograd.grad(net(x[i:i + 1])[0, k], params)
            ref[i, k] = torch.sqrt(sum((g ** 2).sum() for g in grads))
    assert torch.allclose(got, ref, rtol=1e-12, atol=0)
    assert gradient_bound(net, x) == pytest.approx(float(ref.max()), rel=1e-12)


def test_param_distance_matches_the_trainer():
    A, B = _unit(10, 20, seed=0), _unit(10, 20, seed=1)
    net = TwoLayerNet(20, 32, 4, seed=0)
    res = train(net, A, B, lr=0.5, max_epochs=50)
    assert param_distance(res.model_0, net) == pytest.approx(res.param_distance, rel=1e-10)


# --- Theorem 3.1 bound ---------------------------------------------------------------------------

def test_ntk_matvec_and_top_eigenvalue():
    net = TwoLayerNet(10, 24, 3, "tanh", bias=True, seed=0)
    x = _unit(7, 10, seed=3)
    mat = ntk_matrix(empirical_ntk(net, x))
    matvec, dim = _two_layer_ntk_matvec(net, x)
    v = torch.randn(dim, dtype=torch.float64)
    assert torch.allclose(matvec(v), mat @ v, rtol=1e-12, atol=1e-12)
    assert ntk_top_eigenvalue(net, x) == pytest.approx(float(torch.linalg.eigvalsh(mat)[-1]), rel=1e-10)


def test_ntk_change_bound_holds_and_matches_model_ntk_change():
    A, B = _unit(16, 12, seed=0), _unit(16, 12, seed=1)
    net = TwoLayerNet(12, 64, 4, "tanh", seed=0)
    res = train(net, A, B, lr=0.5, max_epochs=400, convergence=ConvergenceRule(atol=1e-3))
    Z = torch.cat([A, B])
    b = measure_ntk_bound(res.model_0, net, Z, segment_points=5)
    assert b.ntk_change == pytest.approx(model_ntk_change(res.model_0, net, Z), rel=1e-10)
    assert b.param_distance == pytest.approx(res.param_distance, rel=1e-10)
    assert b.ntk_change <= b.ntk_change_bound_operator <= b.ntk_change_bound <= b.ntk_change_bound_certified
    assert b.rho >= max(b.hessian_norm_init, b.hessian_norm_final)
    assert b.rho_certified >= b.rho
    # The per-entry inequality itself, on the measured kernels.
    dtheta = (empirical_ntk(net, Z) - empirical_ntk(res.model_0, Z)).abs().max()
    assert float(dtheta) <= 2 * b.c0 * b.rho_certified * b.param_distance + (b.rho_certified * b.param_distance) ** 2


# --- generalization bound ------------------------------------------------------------------------

def test_bound_scaling_and_monotonicity():
    base = dict(N=256, K=10, B=20.0, kappa_bar=0.86, delta=0.05, union=False)
    b = generalization_bound(**base)
    assert generalization_bound(**{**base, "N": 1024}) == pytest.approx(b / 2, rel=1e-12)   # 1/sqrt(N)
    for key, bigger in (("B", 25.0), ("kappa_bar", 1.0), ("K", 20)):
        assert generalization_bound(**{**base, key: bigger}) > b
    assert generalization_bound(**{**base, "delta": 0.01}) > b > generalization_bound(**{**base, "delta": 0.2})
    assert generalization_bound(**{**base, "f0_sup": 1.0}) > b
    # with the training loss: the triangle form, tighter here
    t = generalization_terms(**base, train_loss=1e-3)
    assert t.triangle < t.lipschitz and t.bound == t.triangle
    assert t.eps == pytest.approx(deviation_bound(256, 20.0, 0.86, 0.05))
    # the union bound pays: never below the fixed-B bound
    assert generalization_bound(**{**base, "union": True}) >= b


def test_union_grid():
    for B in (0.3, 1.0, 1.05, 7.3, 123.4):
        Bj, dj, j = union_grid_point(B, 0.05, grid_start=1.0, grid_ratio=1.1)
        assert Bj >= B and (B <= 1.0 or Bj < 1.1 * B * (1 + 1e-12))
        assert dj == pytest.approx(0.05 / ((j + 1) * (j + 2)))
    assert sum(1.0 / ((j + 1) * (j + 2)) for j in range(100000)) == pytest.approx(1.0, abs=1e-4)


def test_deviation_bound_holds_in_a_monte_carlo_experiment():
    """Linear kernel on the unit sphere of R^3 (phi(x) = x, kappa_bar = 1): the deviation of the
    empirical mean of a a+^T from its mean, times B^2, is below eps in far more than 1 - delta of
    the samples (the quantity the uniform bound controls: sup_f ||C - C_hat|| <= B^2 ||mu - mu_hat||)."""
    rng = np.random.default_rng(0)

    def draw(n):
        a = rng.normal(size=(n, 3)) + np.array([1.0, 0.0, 0.0])
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        b = a + 0.3 * rng.normal(size=(n, 3))
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        return a, b

    a, b = draw(400000)
    mu = a.T @ b / len(a)
    N, delta, B = 50, 0.05, 1.0
    eps = deviation_bound(N, B, 1.0, delta)
    fails = 0
    for _ in range(500):
        a, b = draw(N)
        fails += B * B * np.linalg.norm(a.T @ b / N - mu) > eps
    assert fails <= 0.05 * 500


def test_population_loss_is_unbiased():
    """f(a) = z, f(a+) = z + noise with z ~ N(0, S): C = S exactly; the estimator's mean over many
    small samples matches ||S - I||^2 while the plug-in is biased upward."""
    g = torch.Generator().manual_seed(0)
    K = 3
    L = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.8, 0.0], [0.1, -0.2, 0.5]], dtype=torch.float64)
    S = L @ L.T
    truth = float(((S - torch.eye(K, dtype=torch.float64)) ** 2).sum())
    ests, plug = [], []
    for _ in range(2000):
        z = torch.randn(20, K, generator=g, dtype=torch.float64) @ L.T
        zb = z + 0.5 * torch.randn(20, K, generator=g, dtype=torch.float64)
        ests.append(population_bt_loss(z, zb).value)
        C = z.T @ zb / 20
        plug.append(float(((C - torch.eye(K, dtype=torch.float64)) ** 2).sum()))
    se = np.std(ests) / math.sqrt(len(ests))
    assert abs(np.mean(ests) - truth) < 4 * se
    assert np.mean(plug) - truth > 4 * se


def test_population_loss_groups_average_draws_of_one_image():
    F = torch.randn(6, 2, dtype=torch.float64)
    G = torch.randn(6, 2, dtype=torch.float64)
    groups = torch.tensor([0, 1, 2, 0, 1, 2])
    xi = F[:, :, None] * G[:, None, :]
    means = torch.stack([xi[groups == g].mean(0) for g in range(3)]).reshape(3, 4)
    S = means.sum(0)
    c2 = (float(S @ S) - float((means ** 2).sum())) / 6
    ref = c2 - 2 * float(S.reshape(2, 2).trace()) / 3 + 2
    assert population_bt_loss(F, G, groups).value == pytest.approx(ref, rel=1e-12)


def test_rkhs_norm_with_an_explicit_feature_map():
    Z = torch.randn(9, 4, dtype=torch.float64)
    c = torch.randn(9, 3, dtype=torch.float64)
    W = Z.T @ c                                  # linear kernel: phi(x) = x, f = W^T x
    assert rkhs_norm(Z @ Z.T, c) == pytest.approx(float(W.norm()), rel=1e-12)


# --- sphere kernel ---------------------------------------------------------------------------------

@pytest.mark.parametrize("act,kw", [("tanh", {}), ("tanh", {"bias": True, "sigma_b": 0.5}), ("gelu", {}),
                                    ("erf", {}), ("relu", {})])
def test_sphere_kernel_matches_analytic_ntk(act, kw):
    x, y = _unit(60, 20, seed=0), _unit(40, 20, seed=1)
    y[:5] = x[:5]
    k = SphereKernel(act, **kw)
    assert torch.allclose(k(x, y), analytic_ntk(x, y, act, **kw), atol=1e-13, rtol=0)
    assert k.kappa_bar == pytest.approx(float(analytic_ntk(x[:1], x[:1], act, **kw)[0, 0]), abs=1e-7)


def test_sphere_kernel_refuses_non_unit_inputs():
    from widessl.errors import DataError

    with pytest.raises(DataError, match="unit-norm"):
        SphereKernel("tanh")(2 * _unit(3, 4))


# --- profiles and the command line ----------------------------------------------------------------

def test_shipped_profiles_load():
    for name in ("quick", "paper"):
        p = TheoryProfile.load(name)
        assert p.width["widths"] and set(p.samples["network_sizes"]) <= set(p.samples["sizes"])


def test_profile_errors_name_the_key(tmp_path):
    from widessl.errors import ConfigError

    with pytest.raises(ConfigError, match="width.nope"):
        TheoryProfile.load("quick", ["width.nope=1"])
    with pytest.raises(ConfigError, match="relu"):
        TheoryProfile.load("quick", ["common.activation=relu"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[samples]\nsizes = [16]\nnetwork_sizes = [32]\n")
    with pytest.raises(ConfigError, match="network_sizes"):
        TheoryProfile.load(str(bad))


TINY = """
description = "test-sized"
[common]
max_epochs = 3000
[width]
n_pairs = 16
widths = [16, 32]
seeds = [0, 1]
segment_points = 3
[samples]
sizes = [16, 24]
seeds = [0, 1]
heldout_images = 150
draws = 2
network_widths = [32]
network_sizes = [16, 24]
"""


def test_cli_theory_end_to_end(tmp_path, capsys):
    """The whole command on a test-sized profile: records with the required keys, figures,
    report, bound >= measured gap in every case, and a rerun that resumes (adds nothing)."""
    from widessl._io import read_jsonl
    from widessl.cli.main import main

    load_mnist("embedded")  # warm the data cache outside the timed part
    prof = tmp_path / "tiny.toml"
    prof.write_text(TINY)
    out = tmp_path / "out"
    assert main(["theory", "--profile", str(prof), "--out", str(out), "--quiet"]) == 0
    records = read_jsonl(out / "theory.jsonl")
    width = [r for r in records if r["kind"] == "width"]
    samples = [r for r in records if r["kind"] in ("kernel", "network")]
    assert len(width) == 4 and len(samples) == 8
    for r in width:
        for key in ("M", "seed", "hessian_norm_init", "hessian_norm_final", "c0", "param_distance",
                    "ntk_change", "ntk_change_bound"):
            assert isinstance(r[key], (int, float)), key
        assert r["ntk_change"] <= r["ntk_change_bound"] and r["ntk_change"] <= r["ntk_change_bound_certified"]
        assert r["hessian_lanczos_rel_diff"] < 1e-10
    for r in samples:
        for key in ("N", "seed", "B", "kappa_bar", "bound", "gap"):
            assert isinstance(r[key], (int, float)), key
        assert r["gap"] <= r["bound"], r["key"]
        assert r["kappa_bar"] == pytest.approx(float(analytic_ntk(_unit(1, 3), activation="tanh")[0, 0]))
    for name in ("theory_width.png", "theory_width.svg", "theory_samples.png", "theory_samples.svg", "report.md"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "slope in M" in report and "slope in N" in report and "8 of 8 cases" in report
    assert json.loads((out / "profile.json").read_text())["width"]["widths"] == [16, 32]
    # resume: nothing new, same report
    assert main(["theory", "--profile", str(prof), "--out", str(out), "--quiet"]) == 0
    assert len(read_jsonl(out / "theory.jsonl")) == len(records)
    assert main(["theory", "--profile", str(prof), "--out", str(out), "--quiet", "--report-only"]) == 0


def test_cli_theory_bad_override_is_one_clean_error(tmp_path, capsys):
    from widessl.cli.main import main

    assert main(["theory", "--out", str(tmp_path), "--set", "samples.delta=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "samples.delta" in err[0]
