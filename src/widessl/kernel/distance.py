"""Distances between representations (SPEC section 6, the paper's panel (c))."""

from __future__ import annotations

import torch

from widessl.errors import ConfigError

Tensor = torch.Tensor


def procrustes_rotation(F: Tensor, G: Tensor) -> Tensor:
    """The orthogonal Q [K, K] minimizing ||F - G Q||_F (orthogonal Procrustes: Q = U V^T
    from the SVD of G^T F)."""
    U, _, Vh = torch.linalg.svd(G.T @ F)
    return U @ Vh


def representation_distance(F: Tensor, G: Tensor, *, align: bool = False) -> float:
    """(1/n) ||F - G||_F^2 for representations F, G [n, K].

    With ``align=True``, G is first rotated by the best orthogonal K x K matrix (Barlow Twins
    solutions are defined only up to such a rotation): (1/n) min_Q ||F - G Q||_F^2.
    """
    if F.shape != G.shape or F.ndim != 2:
        raise ConfigError(f"representations must be [n, K] of equal shape, got {tuple(F.shape)} and {tuple(G.shape)}")
    if align:
        G = G @ procrustes_rotation(F, G)
    return float(((F - G) ** 2).sum() / F.shape[0])
