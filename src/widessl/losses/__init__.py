"""Barlow Twins losses, each with its closed-form function-space gradient (SPEC section 3)."""

from __future__ import annotations

from widessl.errors import ConfigError
from widessl.losses._base import CrossCorrelationLoss
from widessl.losses.barlow_twins import BarlowTwinsLoss
from widessl.losses.standardized import StandardizedBarlowTwinsLoss
from widessl.losses.symmetrized import SymmetrizedBarlowTwinsLoss
from widessl.losses.weighted import WeightedBarlowTwinsLoss

LOSSES = {
    "paper": BarlowTwinsLoss,
    "weighted": WeightedBarlowTwinsLoss,
    "symmetrized": SymmetrizedBarlowTwinsLoss,
    "standardized": StandardizedBarlowTwinsLoss,
}


def get_loss(name: str | CrossCorrelationLoss, **kwargs) -> CrossCorrelationLoss:
    """Loss by name: 'paper' (default form), 'weighted', 'symmetrized' or 'standardized'."""
    if isinstance(name, CrossCorrelationLoss):
        return name
    key = str(name).strip().lower()
    if key not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return LOSSES[key](**kwargs)


__all__ = [
    "BarlowTwinsLoss",
    "CrossCorrelationLoss",
    "LOSSES",
    "StandardizedBarlowTwinsLoss",
    "SymmetrizedBarlowTwinsLoss",
    "WeightedBarlowTwinsLoss",
    "get_loss",
]
