"""Gradient descent on a Barlow Twins loss (SPEC section 4).

Two engines give the same iterates: a structured one for :class:`TwoLayerNet` (closed-form
gradients, first layer kept in the row span of the inputs; no autograd) and a generic one
(autograd) for any ``nn.Module`` mapping [n, d] -> [n, K], which also does mini-batch SGD.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn

from widessl._validation import as_inputs, check_positive_float, check_positive_int
from widessl.errors import ConfigError, DataError
from widessl.losses import BarlowTwinsLoss, CrossCorrelationLoss
from widessl.models.activations import get_activation
from widessl.models.two_layer import TwoLayerNet
from widessl.train.convergence import ConvergenceRule, descend
from widessl.train.rowspan import FirstLayer

Tensor = torch.Tensor

METHODS = ("auto", "structured", "autograd")


@dataclass
class TrainResult:
    """What one training run measured.

    losses : L_0 .. L_T, the loss before the first update and after each epoch.
    epochs : epochs to convergence (SPEC section 4); ``max_epochs`` if not converged.
    converged : whether the convergence rule fired.
    epochs_run : updates actually made (>= epochs: the patience window is run out).
    param_distance : ||theta_T - theta_0|| (Frobenius over all trained parameters).
    ntk : {epoch: Theta [n, n, K, K]} at the requested epochs on ``ntk_inputs``.
    model_0 : a copy of the network at initialization.
    """

    losses: list[float]
    epochs: int
    converged: bool
    epochs_run: int
    param_distance: float
    model_0: nn.Module
    ntk: dict[int, Tensor] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def initial_loss(self) -> float:
        return self.losses[0]

    @property
    def final_loss(self) -> float:
        return self.losses[-1]


# In-place forward and the fused backward of autograd itself (grad * s'(h) from s = s(h), one
# pass, the same numbers as autograd) for the built-in activations where s' is a function of s.
_FUSED_FORWARD = {
    "tanh": torch.Tensor.tanh_,
    "sigmoid": torch.Tensor.sigmoid_,
    "relu": torch.Tensor.relu_,
    "linear": lambda H: H,
}
_FUSED_BACKWARD = {
    "tanh": lambda g, s: torch.ops.aten.tanh_backward.grad_input(g, s, grad_input=g),
    "sigmoid": lambda g, s: torch.ops.aten.sigmoid_backward.grad_input(g, s, grad_input=g),
    "relu": lambda g, s: g.masked_fill_(s <= 0, 0.0),
    "linear": lambda g, s: g,
}


class _StructuredTwoLayer:
    """Full-batch GD for TwoLayerNet with hand-derived gradients:
    F = s(H) V^T / sqrt(M), H = sigma_w Z W^T + sigma_b b,
    dL/dV = G^T s(H) / sqrt(M), dL/dH = (G V / sqrt(M)) * s'(H), dL/dW = sigma_w dH^T Z."""

    def __init__(self, model: TwoLayerNet, Z: Tensor, N: int, loss: CrossCorrelationLoss):
        self.model, self.N, self.loss = model, N, loss
        self.first = FirstLayer(model.W, Z)
        self.V0 = model.V.detach().clone()
        self.V = self.V0.clone()
        self.b0 = model.b.detach().clone() if model.has_bias else None
        self.b = self.b0.clone() if model.has_bias else None
        self.sqrtM = math.sqrt(model.M)

    def value_and_grad(self):
        # The same products as autograd takes, with the temporaries cut: the activation is
        # applied in place and, where s' is a function of s (tanh, sigmoid, relu, linear),
        # dL/dH is formed from s by autograd's own fused backward op (one pass, no second
        # activation); 1/sqrt(M) is folded into the [2N, K] gradient G.
        m = self.model
        H = self.first.train_product()  # a fresh [2N, M] tensor, ours to overwrite
        if m.sigma_w != 1.0:
            H.mul_(m.sigma_w)
        if self.b is not None:
            H.add_(self.b, alpha=m.sigma_b)
        name = m.activation.name
        fused = name in _FUSED_BACKWARD and m.activation is get_activation(name)
        if fused:
            S, D = _FUSED_FORWARD[name](H), None  # in place: H becomes s(H)
        else:
            S, D = m.activation.fn(H), m.activation.deriv(H)
        F = S @ self.V.T / self.sqrtM
        value, dFa, dFb = self.loss.value_and_grad(F[: self.N], F[self.N:])
        G = torch.cat([dFa, dFb]).div_(self.sqrtM)
        dV = G.T @ S
        dH = torch.mm(G, self.V)  # dL/ds, [2N, M]
        if fused:
            _FUSED_BACKWARD[name](dH, S)  # dH <- dH * s'(h) from s, one pass, as autograd does
        else:
            dH.mul_(D)
        return float(value), (dV, dH)

    def step(self, grads, lr: float) -> None:
        dV, dH = grads
        m = self.model
        self.V.sub_(dV, alpha=lr)
        if self.b is not None:
            self.b.sub_(dH.sum(0), alpha=lr * m.sigma_b)
        self.first.step(dH, lr * m.sigma_w)

    @torch.no_grad()
    def write_back(self) -> None:
        self.model.W.copy_(self.first.weight())
        self.model.V.copy_(self.V)
        if self.b is not None:
            self.model.b.copy_(self.b)

    def param_distance(self) -> float:
        d2 = self.first.delta_sqnorm() + float(((self.V - self.V0) ** 2).sum())
        if self.b is not None:
            d2 += float(((self.b - self.b0) ** 2).sum())
        return math.sqrt(d2)


class _Autograd:
    """Plain autograd GD/SGD on any module (the reference the structured engine is tested against)."""

    def __init__(self, model: nn.Module, Z: Tensor, N: int, loss: CrossCorrelationLoss,
                 batch_size: int | None, seed: int):
        self.model, self.Z, self.N, self.loss = model, Z, N, loss
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.theta0 = [p.detach().clone() for p in self.params]
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(seed)

    def _loss_on(self, idx: Tensor | None):
        if idx is None:
            F = self.model(self.Z)
            return self.loss(F[: self.N], F[self.N:])
        F = self.model(torch.cat([self.Z[idx], self.Z[self.N + idx]]))
        return self.loss(F[: len(idx)], F[len(idx):])

    def value_and_grad(self):
        for p in self.params:
            p.grad = None
        value = self._loss_on(None)
        if self.batch_size is None:
            value.backward()
            return float(value.detach()), [p.grad for p in self.params]
        return float(value.detach()), None

    def step(self, grads, lr: float) -> None:
        if self.batch_size is None:
            with torch.no_grad():
                for p, g in zip(self.params, grads):
                    p.sub_(g, alpha=lr)
            return
        perm = torch.randperm(self.N, generator=self.gen).to(self.Z.device)
        for s in range(0, self.N, self.batch_size):
            idx = perm[s:s + self.batch_size]
            if len(idx) < 2 and self.loss.min_rows > 1:
                continue
            for p in self.params:
                p.grad = None
            self._loss_on(idx).backward()
            with torch.no_grad():
                for p in self.params:
                    p.sub_(p.grad, alpha=lr)

    def write_back(self) -> None:
        pass

    def param_distance(self) -> float:
        with torch.no_grad():
            return math.sqrt(sum(float(((p - p0) ** 2).sum()) for p, p0 in zip(self.params, self.theta0)))


def train(
    model: nn.Module,
    A,
    A_plus,
    *,
    loss: CrossCorrelationLoss | None = None,
    lr: float = 1.0,
    max_epochs: int = 2000,
    convergence: ConvergenceRule | None = None,
    ntk_epochs: Iterable[int] = (),
    ntk_inputs=None,
    ntk_fn: Callable[[nn.Module, Tensor], Tensor] | None = None,
    batch_size: int | None = None,
    method: str = "auto",
    seed: int = 0,
    progress: bool = False,
    callback: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place by gradient descent on the Barlow Twins loss of the pairs
    (A [N, d], A_plus [N, d]); theta <- theta - lr * grad L.

    Parameters
    ----------
    loss : the loss (default: the paper form :class:`BarlowTwinsLoss`).
    lr : learning rate eta (width-independent in the NTK parameterization).
    max_epochs : epoch budget. convergence : :class:`ConvergenceRule` (SPEC section 4).
    ntk_epochs, ntk_inputs : record the empirical NTK on ``ntk_inputs`` at these epochs
        (epoch 0 is the initialization; an epoch past the end is recorded at the last epoch).
    batch_size : mini-batch SGD with this many pairs per step (autograd engine); None = full batch.
    method : 'auto' (structured for TwoLayerNet with full batch, else autograd),
        'structured' or 'autograd'.
    progress : show a tqdm progress bar. callback : called as callback(epoch, loss).

    Raises
    ------
    DivergenceError when the loss becomes NaN/inf or grows past the divergence bound; the
    message names the epoch and suggests a smaller learning rate.
    """
    from widessl.ntk import empirical_ntk

    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    lr = check_positive_float("lr (learning rate)", lr)
    max_epochs = check_positive_int("max_epochs", max_epochs)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    loss = loss or BarlowTwinsLoss()
    convergence = convergence or ConvergenceRule()
    p = next(model.parameters())
    d = getattr(model, "d", None)
    A = as_inputs("A", A, d, dtype=p.dtype, device=p.device)
    A_plus = as_inputs("A_plus", A_plus, d, dtype=p.dtype, device=p.device)
    if A.shape != A_plus.shape:
        raise DataError(f"A and A_plus must have the same shape, got {tuple(A.shape)} and {tuple(A_plus.shape)}")
    N = A.shape[0]
    Z = torch.cat([A, A_plus])

    structured_ok = isinstance(model, TwoLayerNet) and batch_size is None
    if method == "structured" and not structured_ok:
        raise ConfigError("method='structured' needs a TwoLayerNet and full-batch training; use method='autograd'")
    if method == "auto":
        method = "structured" if structured_ok else "autograd"

    ntk_epochs = sorted({int(e) for e in ntk_epochs})
    if ntk_epochs and ntk_inputs is None:
        raise ConfigError("ntk_epochs was given without ntk_inputs: pass the inputs to compute the NTK on")
    if ntk_inputs is not None:
        ntk_inputs = as_inputs("ntk_inputs", ntk_inputs, d, dtype=p.dtype, device=p.device)
    ntk_fn = ntk_fn or (lambda net, x: empirical_ntk(net, x))

    start = time.perf_counter()
    model_0 = copy.deepcopy(model)
    engine = (_StructuredTwoLayer(model, Z, N, loss) if method == "structured"
              else _Autograd(model, Z, N, loss, batch_size, seed))
    ntk: dict[int, Tensor] = {}
    if 0 in ntk_epochs:
        ntk[0] = ntk_fn(model_0, ntk_inputs)

    def on_epoch(epoch: int, value: float) -> None:
        if callback:
            callback(epoch, value)
        if epoch in ntk_epochs and epoch > 0:
            engine.write_back()
            ntk[epoch] = ntk_fn(model, ntk_inputs)

    monitor = descend(engine.value_and_grad, lambda g: engine.step(g, lr), lr=lr, rule=convergence,
                      max_epochs=max_epochs, progress=progress, on_epoch=on_epoch)
    engine.write_back()
    last = monitor.epoch
    for e in ntk_epochs:
        if e > last and last not in ntk:
            ntk[last] = ntk_fn(model, ntk_inputs)
    converged = monitor.converged_epoch is not None
    return TrainResult(
        losses=monitor.losses,
        epochs=monitor.converged_epoch if converged else max_epochs,
        converged=converged,
        epochs_run=last,
        param_distance=engine.param_distance(),
        model_0=model_0,
        ntk=ntk,
        wall_seconds=time.perf_counter() - start,
    )
