"""widessl.train: gradient descent on the Barlow Twins loss (SPEC section 4).

Checks: the structured engine (closed-form gradients, row-span first layer) equals plain
autograd GD iterate by iterate in both regimes; param_distance; NTK snapshots at chosen
epochs; the convergence rule (atol, rtol + patience window) and divergence handling; input
validation; mini-batch SGD; determinism.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch

from widessl.errors import ConfigError, DataError, DivergenceError
from widessl.losses import BarlowTwinsLoss, StandardizedBarlowTwinsLoss
from widessl.models import DeepNet, TwoLayerNet
from widessl.ntk import empirical_ntk
from widessl.train import ConvergenceMonitor, ConvergenceRule, TrainResult, train

NEVER = ConvergenceRule(rtol=0.0, atol=0.0)  # never fires: runs exactly max_epochs


def params_of(net):
    return [p.detach().clone() for p in net.parameters()]


def direct_distance(net, net0):
    return math.sqrt(sum(float(((p - q) ** 2).sum()) for p, q in zip(params_of(net), params_of(net0))))


REGIMES = [pytest.param(12, 4, id="rowspan"), pytest.param(5, 6, id="dense")]  # (d, N): 2N < d / 2N >= d


# --------------------------------------------------------------------------- engines


@pytest.mark.parametrize("d,N", REGIMES)
@pytest.mark.parametrize("loss", [BarlowTwinsLoss(), StandardizedBarlowTwinsLoss()], ids=["paper", "standardized"])
def test_structured_equals_autograd(pairs, d, N, loss):
    A, B = pairs(N, d, seed=1)
    kw = dict(activation="tanh", bias=True, sigma_w=1.2, sigma_b=0.5, seed=0)
    n_s, n_a = TwoLayerNet(d, 32, 3, **kw), TwoLayerNet(d, 32, 3, **kw)
    r_s = train(n_s, A, B, loss=loss, lr=0.1, max_epochs=30, convergence=NEVER, method="structured")
    r_a = train(n_a, A, B, loss=loss, lr=0.1, max_epochs=30, convergence=NEVER, method="autograd")
    assert len(r_s.losses) == len(r_a.losses) == 31
    assert (r_s.epochs, r_s.epochs_run, r_s.converged) == (30, 30, False)
    # the loss really moves, so the comparison covers real dynamics (the standardized loss
    # starts near its floor at N=6, so also check the weights moved: param_distance below)
    assert r_s.losses[-1] < r_s.losses[0]
    # Same float64 iteration, different summation order: rounding ~1e-14 after 30 steps.
    assert max(abs(a - b) / abs(b) for a, b in zip(r_s.losses, r_a.losses)) < 1e-10
    for ps, pa in zip(params_of(n_s), params_of(n_a)):
        assert float((ps - pa).abs().max() / pa.abs().max()) < 1e-10  # float64 rounding only
    # the model is trained in place and its final loss is the last recorded one
    with torch.no_grad():
        Fa, Fb = n_s(A), n_s(B)
    assert float(loss(Fa, Fb)) == pytest.approx(r_s.losses[-1], rel=1e-12)
    # param_distance = ||theta_T - theta_0|| for both engines
    for net, res in ((n_s, r_s), (n_a, r_a)):
        assert res.param_distance == pytest.approx(direct_distance(net, res.model_0), rel=1e-10)
        assert res.param_distance > 1e-3
    assert r_s.param_distance == pytest.approx(r_a.param_distance, rel=1e-10)


def test_auto_method_and_structured_errors(pairs):
    A, B = pairs(4, 6)
    # auto == structured for a TwoLayerNet with full batch (bit-identical iterates)
    r1 = train(TwoLayerNet(6, 16, 2, seed=0), A, B, lr=0.1, max_epochs=5, convergence=NEVER)
    r2 = train(TwoLayerNet(6, 16, 2, seed=0), A, B, lr=0.1, max_epochs=5, convergence=NEVER, method="structured")
    assert r1.losses == r2.losses
    with pytest.raises(ConfigError):
        train(DeepNet(6, 8, 2, depth=2, seed=0), A, B, method="structured")
    with pytest.raises(ConfigError):
        train(TwoLayerNet(6, 8, 2, seed=0), A, B, method="structured", batch_size=2)
    with pytest.raises(ConfigError):
        train(TwoLayerNet(6, 8, 2, seed=0), A, B, method="adam")
    with pytest.raises(ConfigError):
        train(TwoLayerNet(6, 8, 2, seed=0), A, B, lr=-1.0)
    with pytest.raises(ConfigError):
        train(TwoLayerNet(6, 8, 2, seed=0), A, B, max_epochs=0)


def test_generic_module_trains(pairs):
    A, B = pairs(6, 5)
    net = DeepNet(5, 16, 2, depth=2, activation="tanh", seed=0)
    before = params_of(net)
    res = train(net, A, B, lr=0.1, max_epochs=40, convergence=NEVER)
    assert isinstance(res, TrainResult)
    assert res.final_loss < res.initial_loss
    assert res.param_distance == pytest.approx(
        math.sqrt(sum(float(((p - q) ** 2).sum()) for p, q in zip(params_of(net), before))), rel=1e-12)


def test_callback_sees_every_epoch(pairs):
    A, B = pairs(4, 6)
    seen = []
    res = train(TwoLayerNet(6, 16, 2, seed=0), A, B, lr=0.1, max_epochs=7, convergence=NEVER,
                callback=lambda e, v: seen.append((e, v)))
    assert [e for e, _ in seen] == list(range(8))
    assert [v for _, v in seen] == res.losses


# --------------------------------------------------------------------------- NTK snapshots


@pytest.mark.parametrize("method", ["structured", "autograd"])
@pytest.mark.parametrize("d,N", REGIMES)
def test_ntk_snapshots(pairs, unit_inputs, method, d, N):
    A, B = pairs(N, d, seed=2)
    X = unit_inputs(5, d, seed=7)
    make = lambda: TwoLayerNet(d, 24, 2, "tanh", bias=True, seed=4)  # noqa: E731
    net = make()
    res = train(net, A, B, lr=0.1, max_epochs=10, convergence=NEVER, method=method,
                ntk_epochs=[0, 4, 7, 100], ntk_inputs=X)
    assert sorted(res.ntk) == [0, 4, 7, 10]  # 100 is past the end: recorded at the last epoch
    # epoch 0 equals the NTK of a freshly built initial net (exactly the same numbers)
    torch.testing.assert_close(res.ntk[0], empirical_ntk(make(), X), rtol=0, atol=0)
    # mid-run snapshots equal the NTK of a separately trained copy stopped at that epoch
    # (float64, same iterates: rounding only)
    for e in (4, 7):
        ref = make()
        train(ref, A, B, lr=0.1, max_epochs=e, convergence=NEVER, method=method)
        torch.testing.assert_close(res.ntk[e], empirical_ntk(ref, X), rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(res.ntk[10], empirical_ntk(net, X), rtol=1e-12, atol=1e-14)
    assert float((res.ntk[10] - res.ntk[0]).abs().max()) > 1e-6  # the kernel did move
    # snapshots do not perturb training: final weights as without them
    plain = make()
    train(plain, A, B, lr=0.1, max_epochs=10, convergence=NEVER, method=method)
    for p, q in zip(net.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    # model_0 is the initialization
    torch.testing.assert_close(res.model_0.W, make().W, rtol=0, atol=0)


def test_ntk_epochs_without_inputs_is_an_error(pairs):
    A, B = pairs(4, 6)
    with pytest.raises(ConfigError, match="ntk_inputs"):
        train(TwoLayerNet(6, 8, 2, seed=0), A, B, ntk_epochs=[0])


# --------------------------------------------------------------------------- convergence rule


def feed(rule, losses, lr=0.1):
    mon = rule.monitor(losses[0], lr)
    fired = [mon.update(v) for v in losses[1:]]
    return mon, fired


def test_rule_atol_fires_at_first_epoch_below():
    rule = ConvergenceRule(rtol=0.0, patience=3, atol=1e-3)
    mon, fired = feed(rule, [1.0, 0.5, 0.1, 5e-4, 2e-4, 1e-4])
    assert mon.converged_epoch == 3
    assert fired == [False, False, True, True, True]
    assert mon.epoch == 5 and mon.losses == [1.0, 0.5, 0.1, 5e-4, 2e-4, 1e-4]
    # initial loss below atol: converged at epoch 0
    assert rule.monitor(1e-4, 0.1).converged_epoch == 0


def test_rule_patience_window_gives_first_epoch():
    rule = ConvergenceRule(rtol=1e-3, patience=3, atol=0.0)
    # relative changes: e1 .5, e2 .2, e3 1e-4, e4 1e-4, e5 .05 (breaks), e6..e8 1e-5
    L = [1.0, 0.5, 0.4]
    L.append(L[-1] * (1 - 1e-4))
    L.append(L[-1] * (1 - 1e-4))
    L.append(L[-1] * 0.95)
    for _ in range(3):
        L.append(L[-1] * (1 - 1e-5))
    mon, fired = feed(rule, L)
    # the window of 3 small changes is epochs 6, 7, 8: converged at its first epoch, 6,
    # and the rule fires only once the whole window has been seen (epoch 8)
    assert mon.converged_epoch == 6
    assert fired == [False] * 7 + [True]
    # the first firing is kept as the run goes on
    mon.update(L[-1] * 0.5)
    assert mon.converged_epoch == 6
    # patience=1: the first epoch with a small change
    mon1, _ = feed(ConvergenceRule(rtol=1e-3, patience=1, atol=0.0), L)
    assert mon1.converged_epoch == 3


def test_rule_uses_relative_change():
    # the same absolute steps are small relative to a big loss and large relative to a small one
    rule = ConvergenceRule(rtol=1e-3, patience=2, atol=0.0)
    big, _ = feed(rule, [1000.0, 999.9, 999.8])
    small, _ = feed(rule, [1.0, 0.9, 0.8])
    assert big.converged_epoch == 1 and small.converged_epoch is None


def test_rule_divergence():
    rule = ConvergenceRule(divergence_factor=10.0)
    mon = rule.monitor(2.0, lr=0.5)
    mon.update(15.0)  # below 10 * max(2, 1)
    with pytest.raises(DivergenceError) as info:
        mon.update(25.0)
    err = info.value
    assert err.epoch == 2 and err.loss == 25.0 and err.lr == 0.5
    assert "epoch 2" in str(err)
    with pytest.raises(DivergenceError, match="not finite"):
        rule.monitor(1.0, 0.1).update(float("nan"))
    with pytest.raises(DivergenceError):
        rule.monitor(float("inf"), 0.1)
    with pytest.raises(ConfigError):
        ConvergenceRule(patience=0)
    with pytest.raises(ConfigError):
        ConvergenceRule(rtol=-1.0)
    assert isinstance(mon, ConvergenceMonitor)


def test_train_stops_by_the_rule(pairs):
    # K = 6 outputs from N = 3 pairs: rank(C) <= 3, so L >= 3 and the loss plateaus (the
    # relative-change rule fires) instead of decaying geometrically to 0.
    A, B = pairs(3, 12, seed=3)
    rule = ConvergenceRule(rtol=1e-3, patience=5, atol=0.0)
    res = train(TwoLayerNet(12, 32, 6, seed=1), A, B, lr=0.1, max_epochs=3000, convergence=rule)
    assert res.converged
    t = res.epochs
    assert res.epochs_run == t + rule.patience - 1 == len(res.losses) - 1
    rel = [abs(res.losses[s] - res.losses[s - 1]) / res.losses[s - 1] for s in range(1, len(res.losses))]
    # every change in the window [t, t + patience) is below rtol, the one just before is not
    assert all(r < rule.rtol for r in rel[t - 1:t - 1 + rule.patience])
    assert rel[t - 2] >= rule.rtol
    # not converged within the budget: epochs is the budget
    assert res.final_loss >= 3.0 - 1e-9
    res2 = train(TwoLayerNet(12, 32, 6, seed=1), A, B, lr=0.1, max_epochs=3, convergence=rule)
    assert not res2.converged and res2.epochs == 3 and res2.epochs_run == 3


# --------------------------------------------------------------------------- divergence, inputs


@pytest.mark.parametrize("method", ["structured", "autograd"])
def test_huge_lr_diverges_with_clear_message(pairs, method):
    A, B = pairs(5, 8)
    lr = 1e3
    with pytest.raises(DivergenceError) as info:
        train(TwoLayerNet(8, 32, 3, seed=0), A, B, lr=lr, max_epochs=100, method=method)
    err = info.value
    msg = str(err)
    assert "epoch" in msg and err.epoch >= 1
    assert "smaller learning rate" in msg
    suggested = float(re.search(r"e\.g\. eta=([0-9.eE+-]+)", msg).group(1).rstrip("."))
    assert 0 < suggested < lr
    assert err.lr == lr


def test_bad_inputs_raise_data_error(pairs):
    A, B = pairs(4, 6)
    net = TwoLayerNet(6, 8, 2, seed=0)
    bad = A.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        train(net, bad, B)
    bad_b = B.clone()
    bad_b[0, 0] = float("inf")
    with pytest.raises(DataError):
        train(net, A, bad_b)
    with pytest.raises(DataError):
        train(net, A, B[:3])
    with pytest.raises(DataError):
        train(net, A[:, :5], B[:, :5])


# --------------------------------------------------------------------------- SGD, determinism


def test_minibatch_sgd_reduces_loss(pairs):
    A, B = pairs(16, 10, seed=5)
    net = TwoLayerNet(10, 64, 3, seed=2)
    res = train(net, A, B, lr=0.05, max_epochs=30, convergence=NEVER, batch_size=4)
    assert len(res.losses) == 31
    assert res.final_loss < 0.5 * res.initial_loss
    # the recorded losses are full-batch losses of the current weights
    with torch.no_grad():
        assert float(BarlowTwinsLoss()(net(A), net(B))) == pytest.approx(res.final_loss, rel=1e-12)
    # and SGD differs from full-batch GD (it really takes mini-batch steps)
    full = train(TwoLayerNet(10, 64, 3, seed=2), A, B, lr=0.05, max_epochs=30, convergence=NEVER)
    assert abs(full.final_loss - res.final_loss) > 1e-6


def test_determinism(pairs):
    A, B = pairs(8, 10, seed=6)

    def run(seed=0, **kw):
        net = TwoLayerNet(10, 32, 3, bias=True, seed=3)
        res = train(net, A, B, lr=0.05, max_epochs=15, convergence=NEVER, seed=seed, **kw)
        return res.losses, params_of(net)

    for kw in ({}, {"method": "autograd"}, {"batch_size": 3}):
        (l1, p1), (l2, p2) = run(**kw), run(**kw)
        assert l1 == l2
        assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    # the SGD seed controls the batch order
    (l3, _), (l4, _) = run(seed=0, batch_size=3), run(seed=1, batch_size=3)
    assert l3 != l4


def test_model_0_is_independent_copy(pairs):
    A, B = pairs(4, 6)
    net = TwoLayerNet(6, 16, 2, seed=0)
    W0 = net.W.detach().clone()
    res = train(net, A, B, lr=0.1, max_epochs=5, convergence=NEVER)
    assert torch.equal(res.model_0.W, W0) and not torch.equal(net.W, W0)
    res.model_0.W.data.zero_()
    assert not torch.equal(net.W, res.model_0.W)
    assert copy.deepcopy(res.model_0) is not res.model_0
