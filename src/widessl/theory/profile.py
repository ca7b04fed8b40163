"""Profiles of ``widessl theory``: what the width and sample-size sweeps measure, in TOML.

A profile has three tables (see ``widessl/theory/profiles/quick.toml``): ``[common]`` (data,
network and training settings shared by everything), ``[width]`` (the Theorem 3.1 sweep over M)
and ``[samples]`` (the generalization sweep over N). ``--set section.key=value`` overrides one
value; an unknown key anywhere is a :class:`~widessl.errors.ConfigError` that names it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from widessl._validation import check_nonneg_float, check_positive_float, check_positive_int
from widessl.errors import ConfigError
from widessl.models.activations import get_activation

PROFILES = ("quick", "paper")

DEFAULTS: dict[str, dict[str, Any]] = {
    "common": {
        "outputs": 10, "activation": "tanh", "lr": 0.5, "max_epochs": 20000, "rtol": 1e-4,
        "patience": 20, "atol": 1e-3, "rotation_deg": 10.0, "shift_px": 2.0, "noise_std": 0.05,
        "source": "embedded",
    },
    "width": {"n_pairs": 64, "widths": [128, 256, 512, 1024, 2048, 4096], "seeds": [0, 1, 2],
              "segment_points": 5, "lanczos_check": True},
    "samples": {"sizes": [32, 64, 128, 256, 512, 1024], "seeds": [0, 1, 2], "heldout_images": 2000, "draws": 2,
                "init_scale": 0.5, "delta": 0.05, "grid_start": 1.0, "grid_ratio": 1.1,
                "network_widths": [512], "network_sizes": [32, 64, 128, 256]},
}
_LISTS = {("width", "widths"), ("width", "seeds"), ("samples", "sizes"), ("samples", "seeds"),
          ("samples", "network_widths"), ("samples", "network_sizes")}


def profile_path(name: str) -> Path:
    """A shipped profile's file (``quick`` or ``paper``), or ``name`` itself if it is a .toml path."""
    if name in PROFILES:
        return Path(str(resources.files("widessl.theory").joinpath("profiles", f"{name}.toml")))
    path = Path(name)
    if path.suffix == ".toml":
        if not path.exists():
            raise ConfigError(f"profile file {path} does not exist")
        return path
    raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)} or give a .toml file")


def _int_list(where: str, value: Any, minimum: int) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of integers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"{where} must hold integers >= {minimum}, got {v!r}")
        if v not in out:
            out.append(v)
    return sorted(out)


def parse_value(text: str) -> Any:
    """A ``--set`` value as a TOML literal; a bare word is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


@dataclass
class TheoryProfile:
    """A resolved profile: ``common``, ``width`` and ``samples`` as plain dicts (keys of DEFAULTS)."""

    name: str
    description: str = ""
    common: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS["common"]))
    width: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS["width"]))
    samples: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS["samples"]))

    @classmethod
    def load(cls, name: str = "quick", overrides: list[str] | None = None) -> "TheoryProfile":
        path = profile_path(name)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        prof = cls(name=name if name in PROFILES else path.stem)
        for key, value in data.items():
            if key == "description":
                prof.description = str(value)
            elif key in DEFAULTS:
                if not isinstance(value, dict):
                    raise ConfigError(f"[{key}] in {path} must be a table")
                for k, v in value.items():
                    prof.set(key, k, v, where=str(path))
            else:
                raise ConfigError(f"unknown key {key!r} in {path}; valid: description, {', '.join(DEFAULTS)}")
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
            key, _, value = item.partition("=")
            section, _, k = key.strip().partition(".")
            if section not in DEFAULTS or not k:
                raise ConfigError(f"--set key {key.strip()!r} must be <{'|'.join(DEFAULTS)}>.<key>, e.g. width.widths=[64,128]")
            prof.set(section, k, parse_value(value), where="--set")
        return prof.validate()

    def set(self, section: str, key: str, value: Any, where: str = "") -> None:
        table = getattr(self, section)
        if key not in DEFAULTS[section]:
            raise ConfigError(f"unknown key {section}.{key}{' in ' + where if where else ''}; "
                              f"valid keys of [{section}]: {', '.join(DEFAULTS[section])}")
        table[key] = value

    def validate(self) -> "TheoryProfile":
        c, w, s = self.common, self.width, self.samples
        c["outputs"] = check_positive_int("common.outputs", c["outputs"])
        act = get_activation(c["activation"])
        if act.name == "relu":
            raise ConfigError("common.activation='relu' is not twice differentiable: the Hessian quantities of "
                              "Theorem 3.1 need a smooth activation (tanh, erf, gelu, sigmoid, softplus)")
        c["activation"] = act.name
        c["lr"] = check_positive_float("common.lr", c["lr"])
        c["max_epochs"] = check_positive_int("common.max_epochs", c["max_epochs"])
        c["patience"] = check_positive_int("common.patience", c["patience"])
        for k in ("rtol", "atol", "rotation_deg", "shift_px", "noise_std"):
            c[k] = check_nonneg_float(f"common.{k}", c[k])
        c["source"] = str(c["source"])
        w["n_pairs"] = check_positive_int("width.n_pairs", w["n_pairs"])
        w["segment_points"] = check_positive_int("width.segment_points", w["segment_points"])
        if not isinstance(w["lanczos_check"], bool):
            raise ConfigError(f"width.lanczos_check must be true or false, got {w['lanczos_check']!r}")
        for sec, key in _LISTS:
            table = getattr(self, sec)
            table[key] = _int_list(f"{sec}.{key}", table[key], 0 if key == "seeds" else 1)
        if not w["widths"] or not w["seeds"] or not s["sizes"] or not s["seeds"]:
            raise ConfigError("width.widths, width.seeds, samples.sizes and samples.seeds must not be empty")
        if min(s["sizes"]) < 2:
            raise ConfigError("samples.sizes must be >= 2 (Barlow Twins needs pairs to correlate)")
        s["heldout_images"] = check_positive_int("samples.heldout_images", s["heldout_images"])
        s["draws"] = check_positive_int("samples.draws", s["draws"])
        s["init_scale"] = check_positive_float("samples.init_scale", s["init_scale"])
        s["delta"] = check_positive_float("samples.delta", s["delta"])
        if s["delta"] >= 1:
            raise ConfigError(f"samples.delta must be in (0, 1), got {s['delta']}")
        s["grid_start"] = check_positive_float("samples.grid_start", s["grid_start"])
        s["grid_ratio"] = check_positive_float("samples.grid_ratio", s["grid_ratio"])
        if s["grid_ratio"] <= 1:
            raise ConfigError(f"samples.grid_ratio must be > 1, got {s['grid_ratio']}")
        extra = sorted(set(s["network_sizes"]) - set(s["sizes"]))
        if extra:
            raise ConfigError(f"samples.network_sizes {extra} are not in samples.sizes {s['sizes']}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "common": dict(self.common),
                "width": dict(self.width), "samples": dict(self.samples)}

    def section_hash(self, section: str) -> str:
        """Hash of [common] and the given section without its swept lists: records made under
        the same hash are comparable, so a resumed sweep may reuse them."""
        table = {k: v for k, v in getattr(self, section).items()
                 if (section, k) not in _LISTS}
        blob = json.dumps({"common": self.common, section: table}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]
