"""Empirical (finite-width) neural tangent kernel.

Theta(a, a')_{kl} = <grad_theta f_k(a), grad_theta f_l(a')>, returned as a tensor
[n1, n2, K, K]. :class:`~widessl.models.TwoLayerNet` gets the closed form of SPEC section 5 and
:class:`~widessl.models.DeepNet` its layer-wise closed form (no Jacobian is ever formed); any
other ``torch.nn.Module`` gets the generic torch.func path.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from widessl._validation import as_inputs, check_positive_int
from widessl.errors import ConfigError
from widessl.models.activations import get_activation
from widessl.models.deep import DeepNet
from widessl.models.two_layer import TwoLayerNet
from widessl.ntk.deep import deep_ntk
from widessl.ntk.generic import structured_ntk

Tensor = torch.Tensor

METHODS = ("auto", "closed_form", "structured", "jacobian")


def _prepare(model: nn.Module, x1, x2):
    p = next(model.parameters())
    d = getattr(model, "d", None)
    x1 = as_inputs("x1", x1, d, dtype=p.dtype, device=p.device)
    x2 = x1 if x2 is None else as_inputs("x2", x2, d, dtype=p.dtype, device=p.device)
    return x1, x2


@torch.no_grad()
def two_layer_ntk(model: TwoLayerNet, x1: Tensor, x2: Tensor, block_size: int = 1024) -> Tensor:
    r"""Closed-form NTK of a two-layer net, [n1, n2, K, K]:

    Theta_{kl}(a, a') = delta_kl (1/M) sum_m s(h_m) s(h'_m)
                        + (sigma_w^2 a.a' + sigma_b^2 [bias]) (1/M) sum_m V_km V_lm s'(h_m) s'(h'_m).

    The second term is one GEMM of [n1 K, M] by [M, n2 K]; rows of x1 are processed in
    blocks of ``block_size`` to bound memory. Each block is written straight into the
    output (one strided pass after the GEMM); with ``x1 is x2`` the features are made once.
    """
    M, K = model.M, model.K
    n1, n2 = x1.shape[0], x2.shape[0]
    S2, A2 = _two_layer_features(model, x2)
    same = x1 is x2
    out = torch.empty(n1, n2, K, K, dtype=x1.dtype, device=x1.device)
    for start in range(0, n1, block_size):
        xb = x1[start:start + block_size]
        nb = xb.shape[0]
        if same:
            S1, A1 = S2[start:start + nb], A2[start * K:(start + nb) * K]
        else:
            S1, A1 = _two_layer_features(model, xb)
        Sig = S1 @ S2.T  # [nb, n2]; its 1/M is applied in the diagonal add below
        G = torch.mm(xb, x2.T)
        if model.sigma_w != 1.0:
            G.mul_(model.sigma_w ** 2)
        if model.has_bias:
            G.add_(model.sigma_b ** 2)
        T = (A1 @ A2.T).view(nb, K, n2, K).permute(0, 2, 1, 3)
        blk = out[start:start + nb]
        torch.mul(T, G[:, :, None, None], out=blk)
        blk.diagonal(dim1=2, dim2=3).add_(Sig[:, :, None], alpha=1.0 / M)
    return out


def act_and_deriv(activation, H: Tensor, *, inplace: bool = False) -> tuple[Tensor, Tensor]:
    """(s(H), s'(H)) with as few passes as possible: for the built-in tanh, sigmoid, relu and
    linear, s' is formed from s (the same numbers as ``activation.deriv``: 1 - tanh^2 from the
    same tanh, and so on) instead of evaluating the activation twice. ``inplace=True`` lets
    s(H) overwrite H."""
    name = activation.name
    builtin = name in _FROM_OUTPUT and activation is get_activation(name)
    if not builtin:
        return activation.fn(H), activation.deriv(H)
    if name == "tanh":
        S = H.tanh_() if inplace else torch.tanh(H)
        return S, 1.0 - S * S
    if name == "sigmoid":
        S = H.sigmoid_() if inplace else torch.sigmoid(H)
        return S, S * (1.0 - S)
    if name == "relu":
        S = H.relu_() if inplace else torch.relu(H)
        return S, (S > 0).to(S.dtype)
    return H, torch.ones_like(H)  # linear


_FROM_OUTPUT = ("tanh", "sigmoid", "relu", "linear")


def _two_layer_features(model: TwoLayerNet, x: Tensor) -> tuple[Tensor, Tensor]:
    """s(h) [n, M] and the rows V_k s'(h) / sqrt(M), [n K, M] (row (i, k)).
    The 1/M of the s s' Gram is left to the caller."""
    H = torch.mm(x, model.W.T)  # = model.preactivations(x), with fewer passes
    if model.sigma_w != 1.0:
        H.mul_(model.sigma_w)
    if model.has_bias:
        H.add_(model.b, alpha=model.sigma_b)
    S, D = act_and_deriv(model.activation, H, inplace=True)
    Vs = model.V * (1.0 / math.sqrt(model.M))
    A = (D[:, None, :] * Vs[None]).reshape(-1, model.M)
    return S, A


def flat_jacobian_fn(model: nn.Module) -> tuple[Callable[[Tensor], Tensor], int]:
    """``(jac, P)``: ``jac(x)`` is the per-example Jacobian [n, K, P] of ``model`` at its current
    trainable parameters (torch.func vmap of jacrev), flattened over the P parameters."""
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ConfigError("the model has no trainable parameters (its gradients and NTK are zero)")

    def f_single(p, x):
        return functional_call(model, p, (x[None],))[0]

    jac = vmap(jacrev(f_single), in_dims=(None, 0))

    def flat(x: Tensor) -> Tensor:
        J = jac(params, x)  # name -> [n, K, *shape]
        return torch.cat([j.reshape(x.shape[0], j.shape[1], -1) for j in J.values()], dim=2)

    return flat, sum(p.numel() for p in params.values())


def jacobian_ntk(model: nn.Module, x1: Tensor, x2: Tensor, block_size: int = 64) -> Tensor:
    """Generic NTK of any module mapping [n, d] -> [n, K]: per-example Jacobians by
    ``torch.func.vmap(jacrev)``, contracted over parameters. The Jacobians of x2 are kept
    (n2 * K * P numbers); those of x1 are made ``block_size`` rows at a time."""
    flat, _ = flat_jacobian_fn(model)
    J2 = [flat(x2[t:t + block_size]) for t in range(0, x2.shape[0], block_size)]
    rows = []
    for i, s in enumerate(range(0, x1.shape[0], block_size)):
        J1 = J2[i] if x1 is x2 else flat(x1[s:s + block_size])
        rows.append(torch.cat([torch.einsum("ikp,jlp->ijkl", J1, Jb) for Jb in J2], dim=1))
    return torch.cat(rows, dim=0).detach()


def empirical_ntk(
    model: nn.Module,
    x1,
    x2=None,
    *,
    method: str = "auto",
    block_size: int | None = None,
) -> Tensor:
    r"""Empirical NTK Theta(x1, x2) of ``model`` at its current parameters.

    Parameters
    ----------
    model : a :class:`~widessl.models.TwoLayerNet` or any ``nn.Module`` mapping [n, d] -> [n, K].
    x1 : inputs [n1, d]; x2 : inputs [n2, d] (default: x1).
    method : 'auto' (closed form for TwoLayerNet and DeepNet, else 'structured', or 'jacobian'
        for a module with batch statistics or dropout active in training mode), 'closed_form',
        'structured' (any module: per-layer Grams for its nn.Linear layers, Jacobians for the
        rest; exact, see :mod:`widessl.ntk.generic`) or 'jacobian' (torch.func vmap(jacrev)
        and a contraction over parameters).
    block_size : rows per block (bounds memory).

    Returns
    -------
    Tensor [n1, n2, K, K] with Theta[i, j, k, l] = <grad f_k(x1_i), grad f_l(x2_j)>.

    Example
    -------
    >>> import torch
    >>> from widessl.models import TwoLayerNet
    >>> from widessl.ntk import empirical_ntk
    >>> net = TwoLayerNet(d=20, M=256, K=3, seed=0)
    >>> x = torch.nn.functional.normalize(torch.randn(5, 20, dtype=torch.float64), dim=1)
    >>> empirical_ntk(net, x).shape
    torch.Size([5, 5, 3, 3])
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    x1, x2 = _prepare(model, x1, x2)
    if method == "auto":
        if isinstance(model, (TwoLayerNet, DeepNet)):
            method = "closed_form"
        else:
            method = "jacobian" if _batch_dependent(model) else "structured"
    if method == "closed_form":
        if isinstance(model, TwoLayerNet):
            return two_layer_ntk(model, x1, x2, check_positive_int("block_size", block_size or 1024))
        if isinstance(model, DeepNet):
            return deep_ntk(model, x1, x2, check_positive_int("block_size", block_size or 256))
        raise ConfigError(
            f"method='closed_form' needs a TwoLayerNet or DeepNet, got {type(model).__name__}; use method='jacobian'"
        )
    if method == "structured":
        return structured_ntk(model, x1, x2, check_positive_int("block_size", block_size or 256))
    return jacobian_ntk(model, x1, x2, check_positive_int("block_size", block_size or 64))


def _batch_dependent(model: nn.Module) -> bool:
    """Modules whose training-mode forward mixes examples or is random (BatchNorm-style
    statistics, dropout): no per-example kernel; left to the Jacobian path, which says so."""
    kinds = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
    return any(m.training and isinstance(m, kinds) for m in model.modules())


def empirical_ntk_fn(model: nn.Module, **kwargs) -> Callable[..., Tensor]:
    """neural-tangents-style: return ``ntk(x1, x2=None)`` bound to ``model`` and options."""

    def ntk(x1, x2=None):
        return empirical_ntk(model, x1, x2, **kwargs)

    return ntk


def ntk_trace(theta: Tensor) -> Tensor:
    """Trace over the output axes, [n1, n2, K, K] -> [n1, n2], divided by K (the scalar
    kernel when Theta = Theta_s (x) I_K)."""
    return torch.diagonal(theta, dim1=2, dim2=3).sum(-1) / theta.shape[-1]


