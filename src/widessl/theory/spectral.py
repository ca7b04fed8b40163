"""Spectral norm of a symmetric operator given only as a matrix-vector product.

The Hessian of f_k in parameter space is symmetric and indefinite (for a two-layer net each
neuron contributes one positive and one negative eigenvalue), so its spectral norm is the
largest |eigenvalue|. Power iteration v <- Hv / ||Hv|| converges to the eigenspace of
largest |lambda| whatever its sign; ||Hv_t|| = ||H^{t+1} v_0|| / ||H^t v_0|| never decreases
(log-convexity of t -> ||H^t v_0||) and tends to max |lambda| from below, at the rate
(|lambda_2| / |lambda_1|)^(2t) in the squared norm (with lambda_2 the next |eigenvalue| that
is not -lambda_1: a +-lambda pair is fine, ||Hv|| = |lambda| ||v|| on its span). Lanczos with full
re-orthogonalization reaches the same number in far fewer products when the top eigenvalues
are close; it keeps ``steps`` vectors, so it is for moderate dimensions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from widessl._validation import check_positive_float, check_positive_int

Tensor = torch.Tensor


@dataclass
class SpectralEstimate:
    """norm: the estimate of max |eigenvalue|; eigenvalue: that eigenvalue with its sign;
    iterations: matrix-vector products used; converged: the stopping rule fired."""

    norm: float
    eigenvalue: float
    iterations: int
    converged: bool


def _start(dim: int, dtype, device, seed: int) -> Tensor:
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    v = torch.randn(dim, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    return v / v.norm()


def power_iteration(matvec: Callable[[Tensor], Tensor], dim: int, *, dtype=torch.float64, device=None,
                    max_iter: int = 2000, tol: float = 1e-10, patience: int = 3, seed: int = 0) -> SpectralEstimate:
    """max |eigenvalue| of the symmetric operator ``matvec`` on R^dim by power iteration.

    Stops when the relative change of ||Hv|| stays below ``tol`` for ``patience`` iterations
    in a row, or after ``max_iter`` products. ``eigenvalue`` is the Rayleigh quotient v.Hv of
    the last iterate (+-norm for a single dominant eigenvalue; near 0 if +-lambda tie).
    """
    max_iter = check_positive_int("max_iter", max_iter)
    tol = check_positive_float("tol", tol)
    v = _start(dim, dtype, device, seed)
    est, streak, converged, it = 0.0, 0, False, 0
    w = matvec(v)
    for it in range(1, max_iter + 1):
        new = float(w.norm())
        if new == 0.0:
            return SpectralEstimate(0.0, 0.0, it, True)
        streak = streak + 1 if abs(new - est) <= tol * new else 0
        est = new
        v = w / new
        w = matvec(v)
        if streak >= patience:
            converged = True
            break
    return SpectralEstimate(max(est, float(w.norm())), float(v @ w), it + 1, converged)


def lanczos(matvec: Callable[[Tensor], Tensor], dim: int, *, dtype=torch.float64, device=None,
            steps: int = 80, tol: float = 1e-12, seed: int = 0) -> SpectralEstimate:
    """max |eigenvalue| of the symmetric operator ``matvec`` by Lanczos with full
    re-orthogonalization: the extreme Ritz values of the tridiagonal T_j converge to the
    extreme eigenvalues (from inside the spectrum). Runs at most ``min(steps, dim)`` products,
    stopping early once the top |Ritz value| changes by less than ``tol`` relative, or when
    the Krylov space is exhausted (then the Ritz values are exact)."""
    steps = min(check_positive_int("steps", steps), dim)
    q = _start(dim, dtype, device, seed)
    # Lanczos vectors as rows of one buffer (grown by doubling), so re-orthogonalization is two
    # matrix-vector products instead of a Python loop over the vectors.
    Q = torch.empty(min(steps, 16), dim, dtype=q.dtype, device=q.device)
    Q[0] = q
    alphas: list[float] = []
    betas: list[float] = []
    prev = None
    converged = False
    streak = 0
    top = 0.0
    for j in range(steps):
        with torch.no_grad():
            w = matvec(Q[j]).detach()
        a = float(Q[j] @ w)
        alphas.append(a)
        basis = Q[: j + 1]
        for _ in range(2):  # full re-orthogonalization, twice ("twice is enough")
            w = w - basis.T @ (basis @ w)
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        ritz = torch.linalg.eigvalsh(T)
        top = float(ritz[torch.argmax(ritz.abs())])
        b = float(w.norm())
        scale = max(abs(top), 1e-300)
        if b <= 1e-14 * max(scale, math.sqrt(sum(x * x for x in alphas))):
            converged = True   # invariant subspace: the Ritz values are exact
            break
        streak = streak + 1 if prev is not None and abs(abs(top) - abs(prev)) <= tol * scale else 0
        if streak >= 2:
            converged = True
            break
        prev = top
        if j + 1 >= steps:
            break
        betas.append(b)
        if j + 1 >= Q.shape[0]:
            grown = torch.empty(min(2 * Q.shape[0], steps), dim, dtype=Q.dtype, device=Q.device)
            grown[: Q.shape[0]] = Q
            Q = grown
        Q[j + 1] = w / b
    return SpectralEstimate(abs(top), top, len(alphas), converged)
