"""Barlow Twins as in the original paper (Zbontar et al. 2021): batch-standardized views."""

from __future__ import annotations

import torch

from widessl._validation import check_positive_float
from widessl.losses._base import CrossCorrelationLoss

Tensor = torch.Tensor


def _standardize(F: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    # Biased variance plus eps, as BatchNorm1d(affine=False) does in training mode.
    centred = F - F.mean(dim=0, keepdim=True)
    scale = torch.sqrt((centred * centred).mean(dim=0, keepdim=True) + eps)
    return centred / scale, scale


def _standardize_pullback(Zs: Tensor, scale: Tensor, gZ: Tensor) -> Tensor:
    # d/dF of z = (f - mean f) / sqrt(var f + eps): (g - mean g - z mean(g z)) / scale.
    return (gZ - gZ.mean(dim=0, keepdim=True) - Zs * (gZ * Zs).mean(dim=0, keepdim=True)) / scale


class StandardizedBarlowTwinsLoss(CrossCorrelationLoss):
    r"""Original Barlow Twins: each column of F_a and F_b centred and scaled to unit variance
    over the batch (Z = (F - mean) / sqrt(var + eps)), C = Z_a^T Z_b / N, and
    L = sum_k (1 - C_kk)^2 + lambda * sum_{k != l} C_kl^2 with lambda = 5e-3.

    The closed-form gradient pulls G = dL/dC back through the standardization exactly.

    Example
    -------
    >>> import torch
    >>> from widessl.losses import StandardizedBarlowTwinsLoss
    >>> loss = StandardizedBarlowTwinsLoss()(torch.randn(256, 32), torch.randn(256, 32))
    """

    min_rows = 2

    def __init__(self, lambda_: float = 5e-3, eps: float = 1e-5):
        super().__init__(offdiag_weight=lambda_)
        self.eps = check_positive_float("eps", eps)

    def cross_correlation(self, Fa: Tensor, Fb: Tensor) -> Tensor:
        Za, _ = _standardize(Fa, self.eps)
        Zb, _ = _standardize(Fb, self.eps)
        return Za.T @ Zb / Fa.shape[0]

    def _pullback(self, Fa: Tensor, Fb: Tensor, G: Tensor) -> tuple[Tensor, Tensor]:
        N = Fa.shape[0]
        Za, sa = _standardize(Fa, self.eps)
        Zb, sb = _standardize(Fb, self.eps)
        return (
            _standardize_pullback(Za, sa, Zb @ G.T / N),
            _standardize_pullback(Zb, sb, Za @ G / N),
        )

    def extra_repr(self) -> str:
        return f"lambda_={self.offdiag_weight}, eps={self.eps}"
