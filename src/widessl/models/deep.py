"""Deep fully connected network in the NTK parameterization (SPEC section 2, deep variant)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from widessl._validation import check_positive_int
from widessl.errors import ConfigError
from widessl.models.activations import Activation
from widessl.models.two_layer import _randn, as_weight, init_hyperparameters

Tensor = torch.Tensor


class DeepNet(nn.Module):
    r"""L hidden layers of width M, K outputs, NTK parameterization.

    .. math::
        h^1 = \sigma_w W^1 a + \sigma_b b^1,\qquad
        h^{l+1} = \sigma_w W^{l+1} s(h^l) / \sqrt{M} + \sigma_b b^{l+1},\qquad
        f = V s(h^L) / \sqrt{M}

    with ``W^1`` [M, d], ``W^l`` [M, M] for l >= 2, ``V`` [K, M], all N(0, 1) at init.
    ``depth=1`` is exactly :class:`~widessl.models.TwoLayerNet` (same weights, same outputs),
    and :func:`widessl.ntk.analytic_ntk` with the same ``depth`` is this network's
    infinite-width NTK.

    Example
    -------
    >>> net = DeepNet(d=784, M=512, K=10, depth=3, activation="relu", seed=0)
    >>> [tuple(W.shape) for W in net.Ws]
    [(512, 784), (512, 512), (512, 512)]
    """

    def __init__(
        self,
        d: int,
        M: int,
        K: int,
        depth: int = 3,
        activation: str | Activation = "tanh",
        *,
        bias: bool = False,
        sigma_w: float = 1.0,
        sigma_b: float = 1.0,
        seed: int | None = None,
        dtype: Any = torch.float64,
        device: Any = None,
    ):
        super().__init__()
        dtype, device, gen = init_hyperparameters(self, d, M, K, activation, bias, sigma_w, sigma_b, seed, dtype, device)
        self.depth = check_positive_int("depth (hidden layers)", depth)
        # Same draw order as TwoLayerNet for depth=1 (W, then V, then b) so the two agree.
        shapes = [(self.M, self.d)] + [(self.M, self.M)] * (self.depth - 1)
        self.Ws = nn.ParameterList([nn.Parameter(_randn(s, gen, dtype, device)) for s in shapes])
        self.V = nn.Parameter(_randn((self.K, self.M), gen, dtype, device))
        if self.has_bias:
            self.bs = nn.ParameterList(
                [nn.Parameter(_randn((self.M,), gen, dtype, device)) for _ in range(self.depth)]
            )
        else:
            self.bs = None

    @torch.no_grad()
    def set_weights(self, Ws=None, V=None, bs=None) -> "DeepNet":
        """Copy arrays into the hidden weights ``Ws`` (a list of L arrays), ``V`` and ``bs``."""
        if Ws is not None:
            if len(Ws) != self.depth:
                raise ConfigError(f"Ws must hold {self.depth} arrays (one per hidden layer), got {len(Ws)}")
            for i, (p, w) in enumerate(zip(self.Ws, Ws)):
                p.copy_(as_weight(f"Ws[{i}]", w, tuple(p.shape), p))
        if V is not None:
            self.V.copy_(as_weight("V", V, (self.K, self.M), self.V))
        if bs is not None:
            if self.bs is None:
                raise ConfigError("this network has no biases; build it with bias=True to set bs")
            for i, (p, b) in enumerate(zip(self.bs, bs)):
                p.copy_(as_weight(f"bs[{i}]", b, (self.M,), p))
        return self

    def forward(self, a: Tensor) -> Tensor:
        """f(a) for a [n, d]: returns [n, K]."""
        x = a
        scale = 1.0
        for layer, W in enumerate(self.Ws):
            h = self.sigma_w * scale * (x @ W.T)
            if self.bs is not None:
                h = h + self.sigma_b * self.bs[layer]
            x = self.activation(h)
            scale = 1.0 / math.sqrt(self.M)
        return x @ self.V.T / math.sqrt(self.M)

    def extra_repr(self) -> str:
        return (f"d={self.d}, M={self.M}, K={self.K}, depth={self.depth}, "
                f"activation={self.activation.name!r}, bias={self.has_bias}")
