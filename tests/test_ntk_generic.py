"""widessl.ntk.generic: the structured-derivative NTK of any nn.Module.

Every case is checked against the torch.func Jacobian contraction (``jacobian_ntk``) in
float64 to 1e-10 relative: plain MLPs (tanh/relu, with and without biases), modules with
parameters that are not nn.Linear weights (convolution, LayerNorm, a free scale, DeepNet),
weights that are shared or used outside their layer, frozen parameters, x2 != x1, K > 1.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from widessl.errors import ConfigError
from widessl.models import DeepNet, TwoLayerNet
from widessl.ntk import empirical_ntk, jacobian_ntk
from widessl.ntk import empirical as empirical_mod
from widessl.ntk.generic import structured_coverage, structured_ntk

D = 9


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def mlp(act, bias, K=3, width=11, depth=3, seed=0):
    torch.manual_seed(seed)
    layers, d_in = [], D
    for _ in range(depth):
        layers += [nn.Linear(d_in, width, bias=bias), act()]
        d_in = width
    layers.append(nn.Linear(d_in, K, bias=bias))
    return nn.Sequential(*layers).double()


class ConvMix(nn.Module):
    """A 1-D convolution, a linear layer, LayerNorm and a free output scale."""

    def __init__(self, K=4):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3)
        self.fc = nn.Linear(2 * (D - 2), 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, K)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, K))

    def forward(self, x):
        h = torch.tanh(self.conv(x[:, None, :])).flatten(1)
        return self.head(torch.relu(self.norm(self.fc(h)))) * self.scale


class Shared(nn.Module):
    """``a`` is called twice; ``b.weight`` is also used outside ``b``; ``c`` is tied to ``a``;
    ``dead`` never reaches the output; ``frozen`` is not trained."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(D, D)
        self.b = nn.Linear(D, 3)
        self.c = nn.Linear(D, D)
        self.c.weight = self.a.weight
        self.dead = nn.Linear(D, 5)
        self.frozen = nn.Linear(D, D)
        self.frozen.requires_grad_(False)
        self.good = nn.Linear(D, D)

    def forward(self, x):
        _ = self.dead(x)
        h = torch.tanh(self.a(x))
        h = torch.tanh(self.a(h)) + self.c(x) + torch.relu(self.frozen(x))
        h = torch.tanh(self.good(h))
        return self.b(h) + x[:, :3] @ self.b.weight[:, :3].T


@pytest.fixture
def inputs(unit_inputs):
    return unit_inputs(7, D, seed=1), unit_inputs(5, D, seed=2)


def check(model, x1, x2, **kw):
    for a, b in ((x1, x2), (x1, x1), (x2, x1)):
        ref = jacobian_ntk(model, a, b)
        got = structured_ntk(model, a, b, **kw)
        assert got.shape == ref.shape
        # Same sums in another order, float64: ~1e-16 relative.
        assert rel_err(got, ref) < 1e-10
    return ref


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU], ids=["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("K", [1, 4])
def test_mlp_equals_jacobian(inputs, act, bias, K):
    net = mlp(act, bias, K=K)
    x1, x2 = inputs
    check(net, x1, x2)
    check(net, x1, x2, block_size=3)  # blocking changes nothing
    cov = structured_coverage(net, x2)
    assert [c.name for c in cov] == ["0", "2", "4", "6"]  # every Linear is covered
    assert all((c.bias is not None) == bias for c in cov)
    # 'auto' picks the structured path for a plain module and agrees with the Jacobian
    assert rel_err(empirical_ntk(net, x1, x2), jacobian_ntk(net, x1, x2)) < 1e-10
    torch.testing.assert_close(empirical_ntk(net, x1, x2), empirical_ntk(net, x1, x2, method="structured"),
                               rtol=0, atol=0)


def test_non_linear_parameters_fall_back(inputs):
    torch.manual_seed(3)
    net = ConvMix().double()
    x1, x2 = inputs
    check(net, x1, x2)
    assert [c.name for c in structured_coverage(net, x2)] == ["fc", "head"]


def test_shared_and_outside_uses_fall_back(inputs):
    torch.manual_seed(4)
    net = Shared().double()
    x1, x2 = inputs
    ref = check(net, x1, x2)
    cov = {c.name: c for c in structured_coverage(net, x2)}
    # a: called twice; c: weight tied to a (its bias alone is covered); b: weight used
    # outside the layer (caught by the gradient check); frozen: nothing trained
    assert "a" not in cov and "b" not in cov and "frozen" not in cov
    assert cov["c"].weight is None and cov["c"].bias == "c.bias"
    assert cov["good"].weight == "good.weight" and "dead" in cov
    assert ref.abs().max() > 0


def test_deepnet_and_two_layer(inputs):
    x1, x2 = inputs
    deep = DeepNet(D, 10, 3, depth=2, activation="tanh", bias=True, seed=0)
    check(deep, x1, x2)  # no nn.Linear: all parameters by the Jacobian
    two = TwoLayerNet(D, 12, 2, bias=True, seed=1)
    got = empirical_ntk(two, x1, x2, method="structured")
    assert rel_err(got, empirical_ntk(two, x1, x2, method="closed_form")) < 1e-10


def test_batched_backward_fallback(inputs, monkeypatch):
    # if the K-batched backward is not supported by some op, K plain backward passes are used
    real = torch.autograd.grad

    def no_batching(*args, **kw):
        if kw.get("is_grads_batched"):
            raise RuntimeError("no batching rule")
        return real(*args, **kw)

    monkeypatch.setattr(torch.autograd, "grad", no_batching)
    x1, x2 = inputs
    check(mlp(nn.Tanh, True, K=3), x1, x2)


def test_batch_statistics_and_dropout_use_jacobian(inputs):
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(D, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 2)).double()
    assert empirical_mod._batch_dependent(net)
    net.eval()  # eval mode: a per-example function, and the structured path covers it
    assert not empirical_mod._batch_dependent(net)
    x1, x2 = inputs
    check(net, x1, x2)


def test_float32_and_errors(inputs):
    x1, x2 = inputs
    net = mlp(nn.Tanh, True, K=2).float()
    got = empirical_ntk(net, x1, x2)  # inputs are cast to the model's dtype
    assert got.dtype == torch.float32
    ref = jacobian_ntk(mlp(nn.Tanh, True, K=2), x1, x2)
    assert rel_err(got.double(), ref) < 1e-5
    frozen = mlp(nn.Tanh, True).requires_grad_(False)
    with pytest.raises(ConfigError):
        structured_ntk(frozen, x1, x2)
    with pytest.raises(ConfigError):
        structured_ntk(nn.Sequential(nn.Linear(D, 3), nn.Flatten(0)).double(), x1, x2)
