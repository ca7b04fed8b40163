"""The convergence and divergence rules of SPEC section 4, shared by the network trainer
and the kernel models so both stop by the same definition."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from widessl._validation import check_nonneg_float, check_nonneg_int, check_positive_float, check_positive_int
from widessl.errors import DivergenceError


@dataclass
class ConvergenceRule:
    """Converged at the first epoch t such that the relative loss change
    |L_s - L_{s-1}| / |L_{s-1}| stays below ``rtol`` for every s in [t, t + patience), or at the
    first epoch whose loss is below ``atol``. "Epochs to convergence" is that t.

    Diverged when the loss is NaN/inf or exceeds ``divergence_factor * max(L_0, 1)``.
    """

    rtol: float = 1e-4
    patience: int = 20
    atol: float = 1e-8
    divergence_factor: float = 1e3

    def __post_init__(self):
        self.rtol = check_nonneg_float("rtol", self.rtol)
        self.patience = check_positive_int("patience", self.patience)
        self.atol = check_nonneg_float("atol", self.atol)
        self.divergence_factor = check_positive_float("divergence_factor", self.divergence_factor)

    def monitor(self, initial_loss: float, lr: float) -> "ConvergenceMonitor":
        return ConvergenceMonitor(self, initial_loss, lr)


@dataclass
class ConvergenceMonitor:
    rule: ConvergenceRule
    initial_loss: float
    lr: float
    losses: list[float] = field(default_factory=list)
    streak: int = 0
    converged_epoch: int | None = None

    def __post_init__(self):
        self._check(0, self.initial_loss)
        self.losses.append(float(self.initial_loss))
        if self.initial_loss < self.rule.atol:
            self.converged_epoch = 0

    def _check(self, epoch: int, loss: float) -> None:
        bound = self.rule.divergence_factor * max(abs(self.losses[0]) if self.losses else abs(loss), 1.0)
        if not math.isfinite(loss) or loss > bound:
            what = "not finite" if not math.isfinite(loss) else f"{loss:.4g}, past the bound {bound:.4g}"
            raise DivergenceError(
                f"training diverged at epoch {epoch}: loss is {what} (initial loss "
                f"{self.losses[0] if self.losses else loss:.4g}) with learning rate eta={self.lr:g}. "
                f"Use a smaller learning rate, e.g. eta={self.lr / 4:g}.",
                epoch=epoch, loss=loss, lr=self.lr,
            )

    def update(self, loss: float) -> bool:
        """Record the loss after one more epoch; return True once converged (the first
        firing is kept if the caller runs on)."""
        epoch = len(self.losses)
        self._check(epoch, loss)
        prev = self.losses[-1]
        self.losses.append(float(loss))
        if self.converged_epoch is not None:
            return True
        rel = abs(loss - prev) / max(abs(prev), 1e-300)
        self.streak = self.streak + 1 if rel < self.rule.rtol else 0
        if loss < self.rule.atol:
            self.converged_epoch = epoch
        elif self.streak >= self.rule.patience:
            self.converged_epoch = epoch - self.rule.patience + 1
        return self.converged_epoch is not None

    @property
    def epoch(self) -> int:
        return len(self.losses) - 1


def descend(
    value_and_grad: Callable[[], tuple[float, Any]],
    step: Callable[[Any], None],
    *,
    lr: float,
    rule: ConvergenceRule | None = None,
    epochs: int | None = None,
    max_epochs: int = 10_000,
    progress: bool = False,
    desc: str = "training",
    on_epoch: Callable[[int, float], None] | None = None,
) -> ConvergenceMonitor:
    """The gradient-descent loop every engine shares.

    ``value_and_grad()`` returns (L, grads) at the current point; ``step(grads)`` applies
    one update. Runs exactly ``epochs`` updates, or, when ``epochs`` is None, until ``rule``
    fires or ``max_epochs`` is reached. ``on_epoch(t, L_t)`` is called for t = 0 .. T.
    Returns the monitor (its ``losses`` are L_0 .. L_T).
    """
    rule = rule or ConvergenceRule()
    value, grads = value_and_grad()
    monitor = rule.monitor(value, lr)
    if on_epoch:
        on_epoch(0, value)
    budget = check_nonneg_int("epochs", epochs) if epochs is not None else check_positive_int("max_epochs", max_epochs)
    done = epochs is None and monitor.converged_epoch is not None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=budget, desc=desc, unit="epoch", leave=False, dynamic_ncols=True)
    try:
        while not done and monitor.epoch < budget:
            step(grads)
            value, grads = value_and_grad()
            converged = monitor.update(value)
            done = converged and epochs is None
            if on_epoch:
                on_epoch(monitor.epoch, value)
            if bar is not None:
                bar.update(1)
                if monitor.epoch % 10 == 0 or done:
                    bar.set_postfix(loss=f"{value:.4g}")
    finally:
        if bar is not None:
            bar.close()
    return monitor
