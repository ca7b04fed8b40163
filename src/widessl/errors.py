"""Exceptions raised by widessl.

Every error a user can cause (bad shapes, NaN inputs, unknown names, a diverging run,
a corrupt data file) is a :class:`WidesslError`, so the CLI can print its message and
exit non-zero without a traceback, and library users can catch one type.
"""

from __future__ import annotations


class WidesslError(ValueError):
    """Base class: a problem with the user's input or configuration; the message says the fix."""


class DataError(WidesslError):
    """A data file or array is missing, corrupt or unusable."""


class ConfigError(WidesslError):
    """An invalid parameter or configuration key."""


class DivergenceError(WidesslError, RuntimeError):
    """Training produced a NaN/inf loss or a loss past the divergence bound."""

    def __init__(self, message: str, *, epoch: int, loss: float, lr: float):
        super().__init__(message)
        self.epoch = epoch
        self.loss = loss
        self.lr = lr
