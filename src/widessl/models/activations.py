"""Activation functions s and their derivatives s', by name.

The closed-form NTK of :class:`~widessl.models.TwoLayerNet` needs s' explicitly (no autograd),
and the infinite-width kernels integrate s and s' against Gaussians, so every activation is a
pair (s, s') of elementwise torch functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from widessl.errors import ConfigError

Tensor = torch.Tensor

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity with its derivative.

    ``fn(h)`` is s(h), ``deriv(h)`` is s'(h) (for relu: the indicator h > 0, the subgradient
    convention torch autograd also uses at 0).
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    deriv: Callable[[Tensor], Tensor]
    smooth: bool

    def __call__(self, h: Tensor) -> Tensor:
        return self.fn(h)


def _gelu_deriv(h: Tensor) -> Tensor:
    # d/dh [h Phi(h)] = Phi(h) + h phi(h)
    return 0.5 * (1.0 + torch.erf(h / _SQRT2)) + h * _INV_SQRT_2PI * torch.exp(-0.5 * h * h)


def _sigmoid_deriv(h: Tensor) -> Tensor:
    sg = torch.sigmoid(h)
    return sg * (1.0 - sg)


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", torch.tanh, lambda h: 1.0 - torch.tanh(h) ** 2, True),
    "relu": Activation("relu", torch.relu, lambda h: (h > 0).to(h.dtype), False),
    "erf": Activation(
        "erf", torch.erf, lambda h: _TWO_OVER_SQRT_PI * torch.exp(-h * h), True
    ),
    "gelu": Activation(
        "gelu", lambda h: torch.nn.functional.gelu(h), _gelu_deriv, True
    ),
    "sigmoid": Activation("sigmoid", torch.sigmoid, _sigmoid_deriv, True),
    "softplus": Activation(
        "softplus", torch.nn.functional.softplus, torch.sigmoid, True
    ),
    "linear": Activation("linear", lambda h: h, torch.ones_like, True),
}


def get_activation(activation: str | Activation) -> Activation:
    """Return the :class:`Activation` named ``activation`` (case-insensitive).

    Raises :class:`~widessl.errors.ConfigError` naming the known activations otherwise.
    """
    if isinstance(activation, Activation):
        return activation
    if not isinstance(activation, str):
        raise ConfigError(
            f"activation must be a name (one of {sorted(ACTIVATIONS)}), got {type(activation).__name__}"
        )
    key = activation.strip().lower()
    if key not in ACTIVATIONS:
        raise ConfigError(
            f"unknown activation {activation!r}; choose one of: {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[key]
