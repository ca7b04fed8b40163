"""Closed-form empirical NTK of :class:`~widessl.models.DeepNet` (no Jacobians).

With x^0 = a, h^l = sigma_w alpha_l W^l x^{l-1} + sigma_b b^l (alpha_1 = 1, alpha_l = 1/sqrt(M)
for l >= 2), x^l = s(h^l), f = V x^L / sqrt(M), and the backpropagated vectors
delta^l_k = d f_k / d h^l,

    delta^L_k = s'(h^L) * V_k / sqrt(M),    delta^l_k = s'(h^l) * (sigma_w alpha_{l+1} W^{l+1 T} delta^{l+1}_k),

the kernel is a sum over layers of (backward Gram) x (forward Gram):

    Theta_kl(a, a') = delta_kl <x^L, x'^L> / M
                      + sum_l <delta^l_k, delta'^l_l> (sigma_w^2 alpha_l^2 <x^{l-1}, x'^{l-1}> + sigma_b^2 [bias]).

Cost: n K M^2 per layer for the backward vectors and n1 n2 K^2 M per layer for the Grams.
"""

from __future__ import annotations

import math

import torch

from widessl.models.deep import DeepNet

Tensor = torch.Tensor


def _features(model: DeepNet, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Layer inputs [x^0, ..., x^L] and backward vectors [delta^1, ..., delta^L] ([n, K, M] each)."""
    act, M = model.activation, model.M
    xs, hs = [x], []
    for layer, W in enumerate(model.Ws):
        alpha = 1.0 if layer == 0 else 1.0 / math.sqrt(M)
        h = model.sigma_w * alpha * (xs[-1] @ W.T)
        if model.bs is not None:
            h = h + model.sigma_b * model.bs[layer]
        hs.append(h)
        xs.append(act.fn(h))
    deltas = [None] * model.depth
    delta = act.deriv(hs[-1])[:, None, :] * model.V[None] / math.sqrt(M)
    deltas[-1] = delta
    for layer in range(model.depth - 2, -1, -1):
        back = (model.sigma_w / math.sqrt(M)) * (delta @ model.Ws[layer + 1])  # [n, K, M]
        delta = act.deriv(hs[layer])[:, None, :] * back
        deltas[layer] = delta
    return xs, deltas


@torch.no_grad()
def deep_ntk(model: DeepNet, x1: Tensor, x2: Tensor, block_size: int = 256) -> Tensor:
    """Closed-form NTK [n1, n2, K, K] of a DeepNet (see the module docstring)."""
    K, M = model.K, model.M
    xs2, ds2 = _features(model, x2)
    n2 = x2.shape[0]
    eye = torch.eye(K, dtype=x1.dtype, device=x1.device)
    out = torch.empty(x1.shape[0], n2, K, K, dtype=x1.dtype, device=x1.device)
    for start in range(0, x1.shape[0], block_size):
        xb = x1[start:start + block_size]
        nb = xb.shape[0]
        xs1, ds1 = _features(model, xb)
        theta = ((xs1[-1] @ xs2[-1].T) / M)[:, :, None, None] * eye
        for layer in range(model.depth):
            alpha2 = 1.0 if layer == 0 else 1.0 / M
            fwd = model.sigma_w ** 2 * alpha2 * (xs1[layer] @ xs2[layer].T)
            if model.bs is not None:
                fwd = fwd + model.sigma_b ** 2
            bwd = (ds1[layer].reshape(nb * K, M) @ ds2[layer].reshape(n2 * K, M).T).reshape(nb, K, n2, K)
            theta += fwd[:, :, None, None] * bwd.permute(0, 2, 1, 3)
        out[start:start + nb] = theta
    return out
