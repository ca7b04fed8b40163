"""The configuration of one run: every knob of data, network, loss, training and evaluation,
validated up front so a typo or an impossible value fails before any work starts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from widessl._validation import (
    check_nonneg_float,
    check_nonneg_int,
    check_positive_float,
    check_positive_int,
    resolve_dtype,
)
from widessl.errors import ConfigError
from widessl.losses import LOSSES
from widessl.models.activations import get_activation

ARCHS = ("two_layer", "deep")


@dataclass
class RunConfig:
    """One run of the paper's protocol (SPEC sections 1-7). Field names are the config keys.

    Data: ``source`` ('embedded' or a path), ``split``, ``n_pairs`` (N), ``n_heldout``,
    ``rotation_deg``, ``shift_px``, ``noise_std``, ``both_views``.
    Network: ``arch`` ('two_layer' or 'deep'), ``width`` (M), ``outputs`` (K), ``depth``
    (hidden layers, for 'deep'), ``activation``, ``bias``, ``sigma_w``, ``sigma_b``.
    Loss: ``loss`` ('paper', 'weighted', 'symmetrized', 'standardized'), ``offdiag_weight``
    (lambda; None = the loss's default).
    Training: ``lr`` (eta), ``max_epochs``, ``rtol``, ``patience``, ``atol``, ``seed``
    (network initialization and augmentations).
    Evaluation: ``ntk_ord`` ('fro' or 'op'), ``kernel_inf`` (also run the Theta_inf model).
    Runtime: ``device``, ``dtype``.
    """

    source: str = "embedded"
    split: str = "train"
    n_pairs: int = 256
    n_heldout: int = 256
    rotation_deg: float = 10.0
    shift_px: float = 2.0
    noise_std: float = 0.05
    both_views: bool = True
    arch: str = "two_layer"
    width: int = 1024
    outputs: int = 10
    depth: int = 1
    activation: str = "tanh"
    bias: bool = False
    sigma_w: float = 1.0
    sigma_b: float = 1.0
    loss: str = "paper"
    offdiag_weight: float | None = None
    lr: float = 0.5
    max_epochs: int = 5000
    rtol: float = 1e-4
    patience: int = 20
    atol: float = 1e-3
    seed: int = 0
    ntk_ord: str = "fro"
    kernel_inf: bool = True
    device: str = "cpu"
    dtype: str = "float64"
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.validate()

    def validate(self) -> "RunConfig":
        if not isinstance(self.source, str):
            self.source = str(self.source)
        if self.source.strip().lower() not in ("embedded", "mnist-embedded"):
            # One spelling per data location, so the config hash does not depend on the cwd.
            self.source = str(Path(self.source).expanduser().resolve())
        self.n_pairs = check_positive_int("n_pairs (N)", self.n_pairs)
        self.n_heldout = check_nonneg_int("n_heldout", self.n_heldout)
        for name in ("rotation_deg", "shift_px", "noise_std"):
            setattr(self, name, check_nonneg_float(name, getattr(self, name)))
        if self.arch not in ARCHS:
            raise ConfigError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        self.width = check_positive_int("width (M)", self.width)
        self.outputs = check_positive_int("outputs (K)", self.outputs)
        self.depth = check_positive_int("depth", self.depth)
        if self.arch == "two_layer" and self.depth != 1:
            raise ConfigError(f"arch='two_layer' has depth 1, got depth={self.depth}; use arch='deep' for more hidden layers")
        self.activation = get_activation(self.activation).name
        self.sigma_w = check_positive_float("sigma_w", self.sigma_w)
        self.sigma_b = check_positive_float("sigma_b", self.sigma_b)
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}")
        if self.offdiag_weight is not None:
            self.offdiag_weight = check_nonneg_float("offdiag_weight", self.offdiag_weight)
        self.lr = check_positive_float("lr", self.lr)
        self.max_epochs = check_positive_int("max_epochs", self.max_epochs)
        self.rtol = check_nonneg_float("rtol", self.rtol)
        self.patience = check_positive_int("patience", self.patience)
        self.atol = check_nonneg_float("atol", self.atol)
        self.seed = check_nonneg_int("seed", self.seed)
        if self.ntk_ord not in ("fro", "op"):
            raise ConfigError(f"ntk_ord must be 'fro' or 'op', got {self.ntk_ord!r}")
        resolve_dtype(self.dtype)
        for name in ("both_views", "bias", "kernel_inf"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        return self

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        """Build from a mapping; an unknown key is an error that names it and the valid keys."""
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; valid keys: {', '.join(cls.keys())}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.keys()}

    def hash(self) -> str:
        """Stable hash of everything that determines the numbers (device excluded)."""
        d = self.to_dict()
        d.pop("device")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **changes) -> "RunConfig":
        return RunConfig.from_dict({**self.to_dict(), **changes})
