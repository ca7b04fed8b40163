"""The linearized two-layer network, trained in parameter space without forming any kernel.

f_lin(a; theta) = f(a; theta_0) + J_0(a) (theta - theta_0). For TwoLayerNet,

    J_0(a) dtheta = (1/sqrt(M)) [ s(h_0) dV^T + (s'(h_0) * (sigma_w a dW^T + sigma_b db)) V_0^T ],

and gradient descent on it is exactly the kernel model with Theta_0 (SPEC section 6), at
the cost of one network step per epoch (O((2N)^2 M) with the row-span first layer) instead
of O((2N K)^2) per step and O((2N K)^2) memory for the dense Theta_0.
"""

from __future__ import annotations

import math

import torch

from widessl._validation import as_inputs, check_positive_float
from widessl.losses import BarlowTwinsLoss, CrossCorrelationLoss
from widessl.models.two_layer import TwoLayerNet
from widessl.train.convergence import ConvergenceRule, descend
from widessl.train.rowspan import FirstLayer

Tensor = torch.Tensor


class LinearizedTwoLayer:
    """Kernel model with Theta_0 for a :class:`TwoLayerNet`, in parameter space.

    ``model_0`` is the network at initialization (it is not modified); (A, A_plus) the pairs.
    ``F`` holds f_lin on Z = [A; A_plus] after ``fit``; :meth:`predict` evaluates f_lin anywhere.
    """

    def __init__(self, model_0: TwoLayerNet, A, A_plus, *, loss: CrossCorrelationLoss | None = None,
                 lr: float = 1.0):
        p = model_0.W
        A = as_inputs("A", A, model_0.d, dtype=p.dtype, device=p.device)
        A_plus = as_inputs("A_plus", A_plus, model_0.d, dtype=p.dtype, device=p.device)
        self.model_0 = model_0
        self.N = A.shape[0]
        self.Z = torch.cat([A, A_plus])
        self.loss = loss or BarlowTwinsLoss()
        self.lr = check_positive_float("lr", lr)
        self.sqrtM = math.sqrt(model_0.M)
        with torch.no_grad():
            self.H0 = model_0.preactivations(self.Z)
            self.S0 = model_0.activation.fn(self.H0)
            self.D0 = model_0.activation.deriv(self.H0)
            self.F0 = self.S0 @ model_0.V.T / self.sqrtM
        self.V0 = model_0.V.detach()
        self.first = FirstLayer(model_0.W, self.Z)
        self.dV = torch.zeros_like(self.V0)
        self.db = torch.zeros(model_0.M, dtype=p.dtype, device=p.device) if model_0.has_bias else None
        self.F = self.F0.clone()
        self.losses: list[float] = []
        self.epoch = 0

    def _outputs(self, S0: Tensor, D0: Tensor, dH: Tensor, F0: Tensor) -> Tensor:
        return F0 + (S0 @ self.dV.T + (D0 * dH) @ self.V0.T) / self.sqrtM

    def _dpre_train(self) -> Tensor:
        m = self.model_0
        dH = m.sigma_w * self.first.delta_train_product()
        if self.db is not None:
            dH = dH + m.sigma_b * self.db
        return dH

    @torch.no_grad()
    def _value_and_grad(self):
        self.F = self._outputs(self.S0, self.D0, self._dpre_train(), self.F0)
        value, dFa, dFb = self.loss.value_and_grad(self.F[: self.N], self.F[self.N:])
        G = torch.cat([dFa, dFb])
        gV = G.T @ self.S0 / self.sqrtM
        gH = (G @ self.V0 / self.sqrtM) * self.D0
        return float(value), (gV, gH)

    @torch.no_grad()
    def _step(self, grads) -> None:
        gV, gH = grads
        m = self.model_0
        self.dV.sub_(gV, alpha=self.lr)
        if self.db is not None:
            self.db.sub_(gH.sum(0), alpha=self.lr * m.sigma_b)
        self.first.step(gH, self.lr * m.sigma_w)
        self.epoch += 1

    def fit(self, epochs: int | None = None, *, convergence: ConvergenceRule | None = None,
            max_epochs: int = 10_000, progress: bool = False) -> "LinearizedTwoLayer":
        """Run ``epochs`` steps, or until ``convergence`` fires when epochs is None."""
        monitor = descend(self._value_and_grad, self._step, lr=self.lr, rule=convergence, epochs=epochs,
                          max_epochs=max_epochs, progress=progress, desc="linearized model")
        self.losses = monitor.losses
        self.converged_epoch = monitor.converged_epoch
        return self

    @torch.no_grad()
    def predict(self, x) -> Tensor:
        """f_lin(x) for inputs x [n, d] -> [n, K]."""
        m = self.model_0
        x = as_inputs("x", x, m.d, dtype=self.Z.dtype, device=self.Z.device)
        H0 = m.preactivations(x)
        dH = m.sigma_w * self.first.delta_product(x)
        if self.db is not None:
            dH = dH + m.sigma_b * self.db
        F0 = m.activation.fn(H0) @ self.V0.T / self.sqrtM
        return self._outputs(m.activation.fn(H0), m.activation.deriv(H0), dH, F0)

    def param_distance(self) -> float:
        d2 = self.first.delta_sqnorm() + float((self.dV ** 2).sum())
        if self.db is not None:
            d2 += float((self.db ** 2).sum())
        return math.sqrt(d2)
