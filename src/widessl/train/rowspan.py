"""First-layer weights of a two-layer net under full-batch gradient descent on fixed inputs.

Under gradient descent dL/dW = sigma_w (dL/dH)^T Z, so every update lies in the row span of
the 2N training inputs Z and W_t = W_0 + U_t Z exactly (SPEC section 7, implementation note).
Keeping H_0 = Z W_0^T and the Gram matrix Z Z^T makes a step cost O((2N)^2 M) instead of
O(2N d M). When 2N >= d the plain dense update is cheaper and is used instead.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


class FirstLayer:
    """W = W_0 + Delta, with Delta = U Z (row-span form) or stored densely.

    In row-span form U [M, 2N] is held transposed, ``Ut`` = U^T [2N, M], the layout of the
    gradient dH: the update is then one contiguous pass (a transposed in-place subtraction
    was measured 18x slower) and Z W^T = Z W_0^T + (Z Z^T) U^T a plain GEMM."""

    def __init__(self, W0: Tensor, Z: Tensor, rowspan: bool | None = None):
        # A copy, not a view: callers write the trained weights back into the module's W
        # (write_back), which must not move the reference point W_0.
        self.W0 = W0.detach().clone()
        self.Z = Z
        self.rowspan = (Z.shape[0] < W0.shape[1]) if rowspan is None else bool(rowspan)
        if self.rowspan:
            self.ZW0 = Z @ self.W0.T           # [2N, M]
            self.gram = Z @ Z.T                # [2N, 2N]
            self.Ut = torch.zeros(Z.shape[0], W0.shape[0], dtype=W0.dtype, device=W0.device)  # U^T
        else:
            self.W = self.W0.clone()

    def train_product(self) -> Tensor:
        """Z W^T, [2N, M]."""
        if self.rowspan:
            return torch.addmm(self.ZW0, self.gram, self.Ut)
        return self.Z @ self.W.T

    def delta_train_product(self) -> Tensor:
        """Z Delta^T, [2N, M] (the first-layer part of the linearized model)."""
        if self.rowspan:
            return self.gram @ self.Ut
        return self.Z @ (self.W - self.W0).T

    def delta_product(self, x: Tensor) -> Tensor:
        """x Delta^T for new inputs x [n, d]."""
        if self.rowspan:
            return (x @ self.Z.T) @ self.Ut
        return x @ (self.W - self.W0).T

    def step(self, dH: Tensor, scale: float) -> None:
        """W <- W - scale * dH^T Z, for dH [2N, M] the gradient w.r.t. Z W^T."""
        if self.rowspan:
            self.Ut.sub_(dH, alpha=scale)
        else:
            self.W.addmm_(dH.T, self.Z, alpha=-scale)  # fused: no [M, d] temporary

    def weight(self) -> Tensor:
        if self.rowspan:
            return torch.addmm(self.W0, self.Ut.T, self.Z)
        return self.W.clone()

    def delta_sqnorm(self) -> float:
        """||W - W_0||_F^2 = tr(U Z Z^T U^T) = sum((Z Z^T U^T) * U^T) in row-span form."""
        if self.rowspan:
            return float(((self.gram @ self.Ut) * self.Ut).sum())
        return float(((self.W - self.W0) ** 2).sum())
