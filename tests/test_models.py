"""widessl.models: the NTK-parameterized networks of SPEC section 2 and their activations.

Checks: forward passes against the formula written out in numpy, DeepNet(depth=1) ==
TwoLayerNet, weight round-trips, seeding, parameter validation, activation derivatives
against autograd, and finite-difference checks of the networks' Barlow Twins gradients.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import erf as np_erf
from torch.func import functional_call

from widessl.errors import ConfigError
from widessl.losses import BarlowTwinsLoss
from widessl.models import ACTIVATIONS, DeepNet, TwoLayerNet, get_activation

NP_ACT = {"tanh": np.tanh, "relu": lambda h: np.maximum(h, 0.0), "erf": np_erf}


# --------------------------------------------------------------------------- forward formulas


@pytest.mark.parametrize("activation", ["tanh", "relu", "erf"])
@pytest.mark.parametrize("bias", [False, True])
def test_two_layer_forward_matches_formula(unit_inputs, activation, bias):
    sw, sb = 1.3, 0.7
    net = TwoLayerNet(d=7, M=33, K=4, activation=activation, bias=bias, sigma_w=sw, sigma_b=sb, seed=3)
    a = unit_inputs(6, 7)
    W, V = net.W.detach().numpy(), net.V.detach().numpy()
    h = sw * a.numpy() @ W.T
    if bias:
        h = h + sb * net.b.detach().numpy()
    expected = NP_ACT[activation](h) @ V.T / math.sqrt(33)
    out = net(a).detach().numpy()
    assert out.shape == (6, 4)
    # float64, a handful of O(1) terms summed: agreement to rounding (~1e-15).
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-13)


def test_deep_forward_matches_formula(unit_inputs):
    sw, sb, M = 1.2, 0.5, 17
    net = DeepNet(d=5, M=M, K=3, depth=3, activation="tanh", bias=True, sigma_w=sw, sigma_b=sb, seed=1)
    a = unit_inputs(4, 5).numpy()
    x, scale = a, 1.0
    for W, b in zip(net.Ws, net.bs):
        x = np.tanh(sw * scale * x @ W.detach().numpy().T + sb * b.detach().numpy())
        scale = 1.0 / math.sqrt(M)
    expected = x @ net.V.detach().numpy().T / math.sqrt(M)
    np.testing.assert_allclose(net(torch.as_tensor(a)).detach().numpy(), expected, rtol=0, atol=1e-13)
    assert [tuple(W.shape) for W in net.Ws] == [(M, 5), (M, M), (M, M)]


@pytest.mark.parametrize("bias", [False, True])
def test_deep_depth1_equals_two_layer(unit_inputs, bias):
    kw = dict(activation="erf", bias=bias, sigma_w=0.9, sigma_b=1.4, seed=11)
    two = TwoLayerNet(6, 21, 3, **kw)
    deep = DeepNet(6, 21, 3, depth=1, **kw)
    # Same draw order (W, V, b), so identical weights bit for bit ...
    assert torch.equal(two.W, deep.Ws[0]) and torch.equal(two.V, deep.V)
    if bias:
        assert torch.equal(two.b, deep.bs[0])
    # ... and the same forward computation.
    a = unit_inputs(5, 6)
    torch.testing.assert_close(deep(a), two(a), rtol=0, atol=1e-15)


# --------------------------------------------------------------------------- weights, seeds


def test_set_weights_and_from_weights_roundtrip(unit_inputs):
    rng = np.random.default_rng(0)
    W, V, b = rng.normal(size=(9, 4)), rng.normal(size=(2, 9)), rng.normal(size=9)
    net = TwoLayerNet.from_weights(W, V, "tanh", b=b, sigma_w=1.1, sigma_b=0.3)
    assert (net.M, net.d, net.K, net.has_bias) == (9, 4, 2, True)
    assert net.W.dtype == torch.float64
    np.testing.assert_array_equal(net.W.detach().numpy(), W)
    np.testing.assert_array_equal(net.V.detach().numpy(), V)
    np.testing.assert_array_equal(net.b.detach().numpy(), b)
    # set_weights on a fresh net reproduces the same function
    other = TwoLayerNet(4, 9, 2, bias=True, sigma_w=1.1, sigma_b=0.3, seed=5).set_weights(W=W, V=V, b=b)
    a = unit_inputs(3, 4)
    torch.testing.assert_close(other(a), net(a), rtol=0, atol=0)
    # round trip through numpy
    again = TwoLayerNet.from_weights(net.W.detach().numpy(), net.V.detach().numpy(), b=net.b.detach().numpy(),
                                     sigma_w=1.1, sigma_b=0.3)
    assert torch.equal(again.W, net.W) and torch.equal(again.V, net.V) and torch.equal(again.b, net.b)
    # DeepNet.set_weights
    deep = DeepNet(4, 9, 2, depth=2, seed=0)
    W2 = rng.normal(size=(9, 9))
    deep.set_weights(Ws=[W, W2], V=V)
    np.testing.assert_array_equal(deep.Ws[1].detach().numpy(), W2)
    np.testing.assert_array_equal(deep.V.detach().numpy(), V)


def test_shape_errors_raise_config_error():
    net = TwoLayerNet(4, 8, 2, seed=0)
    with pytest.raises(ConfigError, match="W must have shape"):
        net.set_weights(W=np.zeros((8, 5)))
    with pytest.raises(ConfigError, match="V must have shape"):
        net.set_weights(V=np.zeros((3, 8)))
    with pytest.raises(ConfigError, match="no bias"):
        net.set_weights(b=np.zeros(8))
    with pytest.raises(ConfigError):
        net.set_weights(W=np.full((8, 4), np.nan))
    with pytest.raises(ConfigError):
        TwoLayerNet.from_weights(np.zeros(8), np.zeros((2, 8)))
    with pytest.raises(ConfigError):
        TwoLayerNet.from_weights(np.zeros((8, 4)), np.zeros((2, 7)))
    with pytest.raises(ConfigError):
        TwoLayerNet.from_weights(np.zeros((8, 4)), np.zeros((2, 8)), b=np.zeros(7))
    deep = DeepNet(4, 8, 2, depth=2, seed=0)
    with pytest.raises(ConfigError, match="2 arrays"):
        deep.set_weights(Ws=[np.zeros((8, 4))])
    with pytest.raises(ConfigError, match=r"Ws\[1\]"):
        deep.set_weights(Ws=[np.zeros((8, 4)), np.zeros((8, 4))])


def test_unknown_activation_names_the_choices():
    with pytest.raises(ConfigError) as info:
        TwoLayerNet(4, 8, 2, activation="swishy")
    msg = str(info.value)
    assert "swishy" in msg
    for name in ACTIVATIONS:
        assert name in msg
    with pytest.raises(ConfigError):
        DeepNet(4, 8, 2, activation="swishy")
    with pytest.raises(ConfigError):
        get_activation(3)
    assert get_activation(" TanH ") is ACTIVATIONS["tanh"]


@pytest.mark.parametrize("M", [0, -3, 2.5, True])
def test_bad_width_raises(M):
    with pytest.raises(ConfigError, match="M"):
        TwoLayerNet(4, M, 2)
    with pytest.raises(ConfigError, match="M"):
        DeepNet(4, M, 2)


def test_other_bad_params_raise():
    with pytest.raises(ConfigError):
        TwoLayerNet(0, 8, 2)
    with pytest.raises(ConfigError):
        TwoLayerNet(4, 8, 0)
    with pytest.raises(ConfigError):
        TwoLayerNet(4, 8, 2, sigma_w=0.0)
    with pytest.raises(ConfigError):
        TwoLayerNet(4, 8, 2, dtype="float16")
    with pytest.raises(ConfigError):
        DeepNet(4, 8, 2, depth=0)


def test_seeding():
    a, b = TwoLayerNet(5, 16, 3, bias=True, seed=7), TwoLayerNet(5, 16, 3, bias=True, seed=7)
    c = TwoLayerNet(5, 16, 3, bias=True, seed=8)
    assert torch.equal(a.W, b.W) and torch.equal(a.V, b.V) and torch.equal(a.b, b.b)
    assert not torch.equal(a.W, c.W) and not torch.equal(a.V, c.V)
    d1, d2, d3 = (DeepNet(5, 16, 3, depth=2, seed=s) for s in (7, 7, 8))
    assert all(torch.equal(x, y) for x, y in zip(d1.parameters(), d2.parameters()))
    assert not torch.equal(d1.Ws[1], d3.Ws[1])
    # the dtype option is honoured
    assert TwoLayerNet(5, 16, 3, seed=7, dtype="float32").W.dtype == torch.float32


def test_init_statistics():
    # Entries i.i.d. N(0, 1): with 200k draws the sample mean/var are within ~5 SE of 0/1.
    net = TwoLayerNet(400, 500, 2, seed=0)
    w = net.W.detach()
    n = w.numel()
    assert abs(float(w.mean())) < 5 / math.sqrt(n)
    assert abs(float(w.var()) - 1.0) < 5 * math.sqrt(2 / n)


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivative_matches_autograd(name):
    act = ACTIVATIONS[name]
    h = torch.linspace(-6.0, 6.0, 2001, dtype=torch.float64)
    if name == "relu":
        h = h[h.abs() > 1e-3]  # away from the kink
    h.requires_grad_(True)
    (g,) = torch.autograd.grad(act.fn(h).sum(), h)
    # float64 closed forms of the same expressions: equal to a few ulps.
    torch.testing.assert_close(act.deriv(h.detach()), g, rtol=1e-12, atol=1e-14)
    assert act(h.detach()).shape == h.shape
    assert act.name == name


def test_relu_subgradient_at_zero_matches_autograd():
    act = ACTIVATIONS["relu"]
    h = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(act.fn(h).sum(), h)
    torch.testing.assert_close(act.deriv(h.detach()), g, rtol=0, atol=0)


# --------------------------------------------------------------------------- finite differences


def _bt_of_params(net, A, B):
    names = [k for k, _ in net.named_parameters()]
    loss = BarlowTwinsLoss()

    def f(*tensors):
        p = dict(zip(names, tensors))
        Fa = functional_call(net, p, (A,))
        Fb = functional_call(net, p, (B,))
        return loss(Fa, Fb)

    return f, tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())


@pytest.mark.parametrize(
    "net",
    [
        TwoLayerNet(5, 6, 3, "tanh", bias=True, sigma_w=1.2, sigma_b=0.6, seed=0),
        DeepNet(5, 6, 3, depth=3, activation="tanh", bias=True, sigma_w=1.1, sigma_b=0.4, seed=0),
    ],
    ids=["two_layer", "deep"],
)
def test_bt_gradient_gradcheck(pairs, net):
    A, B = pairs(4, 5)
    f, params = _bt_of_params(net, A, B)
    # float64 central differences with eps=1e-6: truncation ~eps^2 and rounding ~1e-16/eps
    # both far below atol=1e-8 / rtol=1e-6, so these tight tolerances are met by a correct gradient.
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_bt_gradient_random_directions(pairs):
    # Central differences of L(theta + t u) along random directions u vs <grad L, u>.
    net = DeepNet(5, 8, 2, depth=2, activation="tanh", seed=4)
    A, B = pairs(6, 5)
    f, params = _bt_of_params(net, A, B)
    grads = torch.autograd.grad(f(*params), params)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        u = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
        t = 1e-5
        with torch.no_grad():
            fp = f(*[p + t * v for p, v in zip(params, u)])
            fm = f(*[p - t * v for p, v in zip(params, u)])
        fd = float((fp - fm) / (2 * t))
        exact = float(sum((gr * v).sum() for gr, v in zip(grads, u)))
        # truncation O(t^2) ~ 1e-10 relative, rounding ~1e-16 / t ~ 1e-11: rel err < 1e-6 is safe.
        assert abs(fd - exact) / abs(exact) < 1e-6
