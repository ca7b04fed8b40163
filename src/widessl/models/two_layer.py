"""Two-layer network in the NTK parameterization (SPEC section 2)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from widessl._validation import (
    check_positive_float,
    check_positive_int,
    resolve_device,
    resolve_dtype,
)
from widessl.errors import ConfigError
from widessl.models.activations import Activation, get_activation

Tensor = torch.Tensor


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    # Draw on the CPU so the same seed gives the same weights on every device.
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def _randn(shape, gen, dtype, device) -> Tensor:
    return torch.randn(*shape, generator=gen, dtype=dtype, device="cpu").to(device)


def init_hyperparameters(net: nn.Module, d, M, K, activation, bias, sigma_w, sigma_b, seed, dtype, device):
    """Validate and store the hyperparameters both network classes share; return
    (dtype, device, generator) for drawing the weights."""
    net.d = check_positive_int("d", d)
    net.M = check_positive_int("M (width)", M)
    net.K = check_positive_int("K (outputs)", K)
    net.activation = get_activation(activation)
    net.sigma_w = check_positive_float("sigma_w", sigma_w)
    net.sigma_b = check_positive_float("sigma_b", sigma_b)
    net.has_bias = bool(bias)
    device = resolve_device(device)
    return resolve_dtype(dtype), device, _generator(seed, device)


def as_weight(name: str, value: Any, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """Convert an array to a tensor of ``like``'s dtype/device, checking shape and finiteness."""
    t = torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value)
    if tuple(t.shape) != tuple(shape):
        raise ConfigError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    t = t.to(dtype=like.dtype, device=like.device)
    if not bool(torch.isfinite(t).all()):
        raise ConfigError(f"{name} contains NaN or inf")
    return t


class TwoLayerNet(nn.Module):
    r"""Two-layer network with K outputs in the NTK parameterization.

    .. math::
        f_k(a) = \frac{1}{\sqrt{M}} \sum_{m=1}^M V_{km}\, s(\sigma_w\, w_m \cdot a + \sigma_b b_m)

    with ``W`` [M, d], ``V`` [K, M] (and ``b`` [M] when ``bias=True``), all entries i.i.d.
    N(0, 1) at initialization; both layers are trained. There is no 1/sqrt(d) on the first
    layer: inputs are unit-norm (SPEC section 1), so w_m . a ~ N(0, 1) already.

    Parameters
    ----------
    d, M, K : input dimension, width, number of outputs.
    activation : 'tanh' (default), 'relu', 'erf', 'gelu', 'sigmoid', 'softplus' or 'linear'.
    bias : add a trained hidden bias b with scale ``sigma_b``.
    sigma_w, sigma_b : weight and bias scales of the hidden layer.
    seed : seed for the initialization (same seed, same weights, on any device).

    Example
    -------
    >>> net = TwoLayerNet(d=784, M=1024, K=10, activation="tanh", seed=0)
    >>> net.W.shape, net.V.shape
    (torch.Size([1024, 784]), torch.Size([10, 1024]))
    """

    def __init__(
        self,
        d: int,
        M: int,
        K: int,
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
        self.W = nn.Parameter(_randn((self.M, self.d), gen, dtype, device))
        self.V = nn.Parameter(_randn((self.K, self.M), gen, dtype, device))
        if self.has_bias:
            self.b = nn.Parameter(_randn((self.M,), gen, dtype, device))
        else:
            self.register_parameter("b", None)

    @classmethod
    def from_weights(cls, W, V, activation="tanh", *, b=None, sigma_w=1.0, sigma_b=1.0, dtype=None, device=None):
        """Build a network from given arrays W [M, d], V [K, M] (and optional b [M])."""
        W_t = torch.as_tensor(np.asarray(W) if not isinstance(W, Tensor) else W)
        V_t = torch.as_tensor(np.asarray(V) if not isinstance(V, Tensor) else V)
        if W_t.ndim != 2 or V_t.ndim != 2:
            raise ConfigError(f"W must be [M, d] and V [K, M]; got {tuple(W_t.shape)} and {tuple(V_t.shape)}")
        M, d = W_t.shape
        K = V_t.shape[0]
        net = cls(d, M, K, activation, bias=b is not None, sigma_w=sigma_w, sigma_b=sigma_b,
                  dtype=dtype or (W_t.dtype if W_t.is_floating_point() else torch.float64), device=device)
        net.set_weights(W=W_t, V=V_t, b=b)
        return net

    @torch.no_grad()
    def set_weights(self, W=None, V=None, b=None) -> "TwoLayerNet":
        """Copy arrays (numpy or torch) into the weights, checking their shapes."""
        if W is not None:
            self.W.copy_(as_weight("W", W, (self.M, self.d), self.W))
        if V is not None:
            self.V.copy_(as_weight("V", V, (self.K, self.M), self.V))
        if b is not None:
            if not self.has_bias:
                raise ConfigError("this network has no bias; build it with bias=True to set b")
            self.b.copy_(as_weight("b", b, (self.M,), self.b))
        return self

    def preactivations(self, a: Tensor) -> Tensor:
        """h = sigma_w a W^T (+ sigma_b b), shape [n, M]."""
        h = self.sigma_w * (a @ self.W.T)
        if self.b is not None:
            h = h + self.sigma_b * self.b
        return h

    def forward(self, a: Tensor) -> Tensor:
        """f(a) for a [n, d]: returns [n, K]."""
        return self.activation(self.preactivations(a)) @ self.V.T / math.sqrt(self.M)

    def extra_repr(self) -> str:
        return (f"d={self.d}, M={self.M}, K={self.K}, activation={self.activation.name!r}, "
                f"bias={self.has_bias}, sigma_w={self.sigma_w}, sigma_b={self.sigma_b}")
