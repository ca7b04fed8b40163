"""Barlow Twins in the paper's form (SPEC section 3), optionally with weighted off-diagonals."""

from __future__ import annotations

import torch

from widessl.losses._base import CrossCorrelationLoss

Tensor = torch.Tensor


class BarlowTwinsLoss(CrossCorrelationLoss):
    r"""L = ||C - I_K||_F^2 with C = F_a^T F_b / N (no batch standardization).

    With ``offdiag_weight`` = lambda != 1 it is the weighted form
    L = sum_k (1 - C_kk)^2 + lambda * sum_{k != l} C_kl^2.

    Function-space gradient, with G = dL/dC (G = 2 (C - I) in the paper form):
    dL/dF_a = F_b G^T / N, dL/dF_b = F_a G / N.

    Example
    -------
    >>> import torch
    >>> from widessl.losses import BarlowTwinsLoss
    >>> loss_fn = BarlowTwinsLoss()
    >>> Fa, Fb = torch.randn(128, 10), torch.randn(128, 10)
    >>> loss = loss_fn(Fa, Fb)              # scalar, autograd-differentiable
    >>> dFa, dFb = loss_fn.grad(Fa, Fb)     # closed form, [128, 10] each
    """

    def cross_correlation(self, Fa: Tensor, Fb: Tensor) -> Tensor:
        return Fa.T @ Fb / Fa.shape[0]

    def _pullback(self, Fa: Tensor, Fb: Tensor, G: Tensor) -> tuple[Tensor, Tensor]:
        N = Fa.shape[0]
        return Fb @ G.T / N, Fa @ G / N
