"""NTK drift: ||Theta_T - Theta_0|| / ||Theta_0|| (SPEC section 5)."""

from __future__ import annotations

import torch
from torch import nn

from widessl.errors import ConfigError

Tensor = torch.Tensor

ORDS = ("fro", "op")


def ntk_matrix(theta: Tensor) -> Tensor:
    """[n1, n2, K, K] -> the (n1 K) x (n2 K) matrix with row (i, k), column (j, l); [n1, n2] stays."""
    if theta.ndim == 2:
        return theta
    if theta.ndim != 4:
        raise ConfigError(f"an NTK must be [n1, n2] or [n1, n2, K, K], got shape {tuple(theta.shape)}")
    n1, n2, K, L = theta.shape
    return theta.permute(0, 2, 1, 3).reshape(n1 * K, n2 * L)


def _norm(mat: Tensor, ord: str) -> Tensor:
    if ord == "fro":
        return torch.linalg.matrix_norm(mat, "fro")
    if mat.shape[0] == mat.shape[1] and torch.allclose(mat, mat.T):
        return torch.linalg.eigvalsh(mat).abs().max()
    return torch.linalg.matrix_norm(mat, 2)


def ntk_change(theta_0: Tensor, theta_t: Tensor, ord: str = "fro") -> float:
    """Relative change ||Theta_t - Theta_0|| / ||Theta_0||.

    ``ord='fro'`` (default, the paper's metric) or ``'op'`` (operator norm of the
    (nK) x (nK) matrix). Both kernels must have the same shape.
    """
    if ord not in ORDS:
        raise ConfigError(f"ord must be one of {ORDS}, got {ord!r}")
    if theta_0.shape != theta_t.shape:
        raise ConfigError(f"NTK shapes differ: {tuple(theta_0.shape)} vs {tuple(theta_t.shape)}")
    m0, mt = ntk_matrix(theta_0), ntk_matrix(theta_t)
    return float(_norm(mt - m0, ord) / _norm(m0, ord))


@torch.no_grad()
def model_ntk_change(model_0: nn.Module, model_t: nn.Module, x, *, ord: str = "fro", block_size: int = 256) -> float:
    """NTK change between two networks on inputs x [n, d], without holding both kernels.

    For ``ord='fro'`` the kernels are formed ``block_size`` rows at a time and only the two
    squared norms are accumulated (peak memory: two [block, n, K, K] blocks). ``'op'`` needs
    the whole matrices.
    """
    from widessl.ntk.empirical import empirical_ntk

    if ord not in ORDS:
        raise ConfigError(f"ord must be one of {ORDS}, got {ord!r}")
    if ord == "op":
        return ntk_change(empirical_ntk(model_0, x), empirical_ntk(model_t, x), "op")
    p = next(model_0.parameters())
    x = torch.as_tensor(x).to(dtype=p.dtype, device=p.device)
    diff2 = torch.zeros((), dtype=torch.float64, device=p.device)
    base2 = torch.zeros((), dtype=torch.float64, device=p.device)
    for s in range(0, x.shape[0], block_size):
        xb = x[s:s + block_size]
        t0 = empirical_ntk(model_0, xb, x)
        tt = empirical_ntk(model_t, xb, x)
        base2 += (t0.double() ** 2).sum()
        tt -= t0
        diff2 += (tt.double() ** 2).sum()
        del t0, tt
    return float(torch.sqrt(diff2 / base2))
