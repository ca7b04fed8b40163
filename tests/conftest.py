"""Shared fixtures for the widessl test suite.

Makes ``import widessl`` work from a plain checkout (src layout, no install) and provides
small float64 inputs on the unit sphere, the setting the NTK formulas of SPEC section 5 assume.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

try:
    import widessl  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# The tests use tiny tensors, where intra-op threads only add synchronization; on a small,
# busy machine they stall in spin-waits (measured 10-50x slower than one thread).
torch.set_num_threads(1)


def _unit_rows(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


@pytest.fixture
def unit_inputs():
    """Factory: ``unit_inputs(n, d, seed=0)`` -> float64 tensor [n, d] with unit-norm rows."""
    return _unit_rows


@pytest.fixture
def pairs():
    """Factory: ``pairs(N, d, seed=0, noise=0.3)`` -> (A, A_plus), unit-norm positive pairs
    (A_plus a noisy, re-normalized copy of A), float64."""

    def make(N: int, d: int, seed: int = 0, noise: float = 0.3):
        g = torch.Generator().manual_seed(seed + 12345)
        A = _unit_rows(N, d, seed)
        B = A + noise * torch.randn(N, d, generator=g, dtype=torch.float64) / d ** 0.5
        return A, B / B.norm(dim=1, keepdim=True)

    return make
