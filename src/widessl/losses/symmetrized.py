"""Barlow Twins on the symmetrized cross-correlation (SPEC section 3, option)."""

from __future__ import annotations

import torch

from widessl.losses._base import CrossCorrelationLoss

Tensor = torch.Tensor


class SymmetrizedBarlowTwinsLoss(CrossCorrelationLoss):
    r"""L = ||C_s - I||_F^2 (or weighted), C_s = (F_a^T F_b + F_b^T F_a) / (2N).

    Swapping the two views leaves the loss unchanged. Since G = dL/dC_s is symmetric,
    dL/dF_a = F_b G / N and dL/dF_b = F_a G / N.

    Example
    -------
    >>> import torch
    >>> from widessl.losses import SymmetrizedBarlowTwinsLoss
    >>> loss = SymmetrizedBarlowTwinsLoss()(torch.randn(64, 8), torch.randn(64, 8))
    """

    def cross_correlation(self, Fa: Tensor, Fb: Tensor) -> Tensor:
        C = Fa.T @ Fb / Fa.shape[0]
        return 0.5 * (C + C.T)

    def _pullback(self, Fa: Tensor, Fb: Tensor, G: Tensor) -> tuple[Tensor, Tensor]:
        N = Fa.shape[0]
        Gs = 0.5 * (G + G.T)  # G is symmetric already; this keeps rounding symmetric too
        return Fb @ Gs / N, Fa @ Gs / N
