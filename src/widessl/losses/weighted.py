"""Barlow Twins with down-weighted off-diagonal terms (SPEC section 3, option)."""

from __future__ import annotations

from widessl.losses.barlow_twins import BarlowTwinsLoss


class WeightedBarlowTwinsLoss(BarlowTwinsLoss):
    r"""L = sum_k (1 - C_kk)^2 + lambda * sum_{k != l} C_kl^2, C = F_a^T F_b / N.

    The default lambda = 5e-3 is the original Barlow Twins paper's redundancy-reduction
    weight; lambda = 1 is the paper form :class:`BarlowTwinsLoss`.

    Example
    -------
    >>> import torch
    >>> from widessl.losses import WeightedBarlowTwinsLoss
    >>> loss = WeightedBarlowTwinsLoss(lambda_=5e-3)(torch.randn(64, 8), torch.randn(64, 8))
    """

    def __init__(self, lambda_: float = 5e-3):
        super().__init__(offdiag_weight=lambda_)
