"""Shared machinery of the Barlow Twins family: every variant is a function of a K x K
cross-correlation C, so each only says how C is formed from (F_a, F_b) and how dL/dC is
pulled back; the objective on C lives here once."""

from __future__ import annotations

import torch
from torch import nn

from widessl._validation import check_nonneg_float
from widessl.errors import DataError

Tensor = torch.Tensor


def check_views(Fa: Tensor, Fb: Tensor, min_rows: int = 1) -> None:
    if Fa.ndim != 2 or Fb.ndim != 2 or Fa.shape != Fb.shape:
        raise DataError(
            "Barlow Twins needs the two views' representations as [N, K] tensors of equal shape; "
            f"got {tuple(Fa.shape)} and {tuple(Fb.shape)}"
        )
    if Fa.shape[0] < min_rows:
        raise DataError(f"this loss needs at least {min_rows} pairs, got N={Fa.shape[0]}")


def weighted_objective(C: Tensor, offdiag_weight: float) -> tuple[Tensor, Tensor]:
    r"""L(C) = \sum_k (1 - C_kk)^2 + \lambda \sum_{k != l} C_kl^2 and dL/dC."""
    eye = torch.eye(C.shape[0], dtype=C.dtype, device=C.device)
    weight = offdiag_weight + (1.0 - offdiag_weight) * eye
    R = C - eye
    G = 2.0 * weight * R
    return (weight * R * R).sum(), G


class CrossCorrelationLoss(nn.Module):
    """Base class: subclasses define ``cross_correlation`` and ``_pullback``.

    Calling the module returns the scalar loss (differentiable by autograd, so it drops into
    any training loop); :meth:`grad` returns the closed-form function-space gradient
    (dL/dF_a, dL/dF_b), which widessl's trainers and kernel models use instead of autograd.
    """

    min_rows = 1

    def __init__(self, offdiag_weight: float = 1.0):
        super().__init__()
        self.offdiag_weight = check_nonneg_float("offdiag_weight (lambda)", offdiag_weight)

    def cross_correlation(self, Fa: Tensor, Fb: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _pullback(self, Fa: Tensor, Fb: Tensor, G: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, Fa: Tensor, Fb: Tensor) -> Tensor:
        check_views(Fa, Fb, self.min_rows)
        return weighted_objective(self.cross_correlation(Fa, Fb), self.offdiag_weight)[0]

    def value_and_grad(self, Fa: Tensor, Fb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return (L, dL/dF_a, dL/dF_b) in closed form, each of F's shape."""
        check_views(Fa, Fb, self.min_rows)
        with torch.no_grad():
            C = self.cross_correlation(Fa, Fb)
            value, G = weighted_objective(C, self.offdiag_weight)
            dFa, dFb = self._pullback(Fa, Fb, G)
        return value, dFa, dFb

    def grad(self, Fa: Tensor, Fb: Tensor) -> tuple[Tensor, Tensor]:
        """Closed-form (dL/dF_a, dL/dF_b)."""
        _, dFa, dFb = self.value_and_grad(Fa, Fb)
        return dFa, dFb

    def extra_repr(self) -> str:
        return f"offdiag_weight={self.offdiag_weight}"
