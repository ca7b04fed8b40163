"""NTK drift: ||Theta_T - Theta_0|| / ||Theta_0|| (SPEC section 5)."""

from __future__ import annotations

import math

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
        # float64 accumulation: a float32 matrix_norm over ~1e7 entries was measured 1.5e-3
        # off in the relative change (blocked float32 agrees with float64 to 3e-8 this way)
        return torch.tensor(math.sqrt(_sumsq(mat)), dtype=torch.float64)
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


def _sumsq(t: Tensor) -> float:
    """||t||_F^2 accumulated in float64 without a float64 copy of t: row norms in t's dtype
    (a cascaded sum, about 1e-7 relative in float32), squared and summed in float64."""
    rows = t.reshape(t.shape[0], -1)
    return float(torch.linalg.vector_norm(rows, dim=1).double().square().sum())


@torch.no_grad()
def model_ntk_change(model_0: nn.Module, model_t: nn.Module, x, *, ord: str = "fro",
                     block_size: int | None = None) -> float:
    """NTK change between two networks on inputs x [n, d], without holding either kernel.

    For ``ord='fro'`` the kernels are formed block by block and only the two squared norms
    are accumulated (float64 sums). Two :class:`~widessl.models.TwoLayerNet` get a fast path:
    their closed-form features are made once, the kernels are formed as [b K, b K] tiles of
    the (nK) x (nK) matrix (no layout copy) and, Theta being symmetric, only the tiles on and
    above the diagonal (about half the work). Peak memory: the features, n K M numbers per
    network, plus two tiles; ``block_size`` (default 512 rows for the two-layer path, 256
    otherwise) bounds the tiles. Any other module: ``block_size`` rows of both kernels at a
    time. ``'op'`` needs the whole matrices.
    """
    from widessl.models.two_layer import TwoLayerNet
    from widessl.ntk.empirical import empirical_ntk

    if ord not in ORDS:
        raise ConfigError(f"ord must be one of {ORDS}, got {ord!r}")
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size <= 0):
        raise ConfigError(f"block_size must be a positive integer, got {block_size!r}")
    if ord == "op":
        return ntk_change(empirical_ntk(model_0, x), empirical_ntk(model_t, x), "op")
    p = next(model_0.parameters())
    x = torch.as_tensor(x).to(dtype=p.dtype, device=p.device)
    if isinstance(model_0, TwoLayerNet) and isinstance(model_t, TwoLayerNet) and model_0.K == model_t.K:
        from widessl.ntk.empirical import _prepare

        x, _ = _prepare(model_0, x, None)
        return _two_layer_change(model_0, model_t, x, block_size or 512)
    block_size = block_size or 256
    diff2 = base2 = 0.0
    for s in range(0, x.shape[0], block_size):
        xb = x[s:s + block_size]
        t0 = empirical_ntk(model_0, xb, x)
        tt = empirical_ntk(model_t, xb, x)
        base2 += _sumsq(t0)
        tt -= t0
        diff2 += _sumsq(tt)
        del t0, tt
    return float(math.sqrt(diff2 / base2))


def _two_layer_tile(model, S, A, x, rows: slice, cols: slice, K: int) -> Tensor:
    """Tile [rows K, cols K] of the (nK) x (nK) NTK matrix of a TwoLayerNet from its features."""
    nb, nc = rows.stop - rows.start, cols.stop - cols.start
    T = A[rows.start * K:rows.stop * K] @ A[cols.start * K:cols.stop * K].T
    G = x[rows] @ x[cols].T
    if model.sigma_w != 1.0:
        G.mul_(model.sigma_w ** 2)
    if model.has_bias:
        G.add_(model.sigma_b ** 2)
    T4 = T.view(nb, K, nc, K)
    T4.mul_(G[:, None, :, None])
    T4.diagonal(dim1=1, dim2=3).add_((S[rows] @ S[cols].T)[:, :, None], alpha=1.0 / model.M)
    return T


def _two_layer_change(model_0, model_t, x: Tensor, block: int) -> float:
    from widessl.ntk.empirical import _two_layer_features

    K, n = model_0.K, x.shape[0]
    S0, A0 = _two_layer_features(model_0, x)
    St, At = _two_layer_features(model_t, x)
    diff2 = base2 = 0.0
    starts = list(range(0, n, block))
    for i, r0 in enumerate(starts):
        rows = slice(r0, min(r0 + block, n))
        for c0 in starts[i:]:
            cols = slice(c0, min(c0 + block, n))
            w = 1.0 if c0 == r0 else 2.0  # an off-diagonal tile stands for itself and its transpose
            T0 = _two_layer_tile(model_0, S0, A0, x, rows, cols, K)
            Tt = _two_layer_tile(model_t, St, At, x, rows, cols, K)
            base2 += w * _sumsq(T0)
            Tt -= T0
            diff2 += w * _sumsq(Tt)
            del T0, Tt
    return float(math.sqrt(diff2 / base2))
