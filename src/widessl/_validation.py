"""Up-front parameter checks (scikit-learn style): each names the parameter, what was
expected and what was given, so a mistake surfaces as one clear message."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from widessl.errors import ConfigError, DataError

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_nonneg_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_positive_float(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
    return v


def check_nonneg_float(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a non-negative number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"{name} must be a non-negative finite number, got {value!r}")
    return v


def resolve_dtype(dtype: Any) -> torch.dtype:
    """Accept torch.float32/float64 or their names."""
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.float64):
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def resolve_device(device: Any) -> torch.device:
    """CPU by default; CUDA only when asked for, with a clear error if it is absent."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} was requested but CUDA is not available on this machine; use --device cpu"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return dev


def as_inputs(
    name: str,
    x: Any,
    d: int | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Convert to a 2-D floating tensor [n, d]; check the width and finiteness.

    Raises DataError for NaN/inf (naming the first bad row) and for wrong shapes.
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if dtype is not None or device is not None:
        x = x.to(dtype=dtype or x.dtype, device=device or x.device)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.ndim != 2:
        raise DataError(f"{name} must be a 2-D array [n, d] of flattened inputs, got shape {tuple(x.shape)}")
    if d is not None and x.shape[1] != d:
        raise DataError(f"{name} has {x.shape[1]} features per row but the model expects d={d}")
    if x.shape[0] == 0:
        raise DataError(f"{name} is empty (0 rows)")
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).any(dim=1).nonzero()[0, 0])
        raise DataError(
            f"{name} contains NaN or inf values (first at row {bad}); clean or drop those inputs first"
        )
    return x
