"""Sweeps behind the paper's Figures 1-3 (SPEC section 7): experiment definitions in TOML,
the grid of runs they describe, and a resumable runner that appends each finished run to a
:class:`~widessl.experiments.store.ResultStore`.

An experiment definition (one per figure, shipped in ``widessl/experiments/configs``)::

    [figure]                      # optional: name (default: the file's stem) and title
    name = "fig1"
    title = "Two-layer tanh network"

    [sweep]                       # the grid: every N x every M x every seed
    n_pairs = [64, 128, 256]      # N
    widths = [256, 512, 1024]     # M
    seeds = [0, 1, 2]

    [run]                         # any RunConfig key except the swept n_pairs, width, seed
    activation = "tanh"

    [profile.quick.sweep]         # a profile overrides [sweep] and [run] values
    n_pairs = [16, 32, 64]
    [profile.quick.run]
    outputs = 5

A user file may start with ``extends = "fig1"`` to start from a shipped definition. Overrides
from the command line (``--set key=value``) address run keys (``lr=0.3`` or ``run.lr=0.3``) and
sweep keys (``sweep.widths=[64,128]``); values are TOML literals (a bare word is a string).
Every unknown key, in a file or in ``--set``, is a :class:`~widessl.errors.ConfigError` that
names it.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 (pyproject pulls in tomli there)
    import tomli as tomllib

from widessl.errors import ConfigError, DivergenceError
from widessl.experiments.config import RunConfig
from widessl.experiments.store import ResultStore

FIGURES = ("fig1", "fig2", "fig3")
PROFILES = ("quick", "paper")
SWEEP_KEYS = ("n_pairs", "widths", "seeds")
SWEPT_RUN_KEYS = {"n_pairs": "sweep.n_pairs", "width": "sweep.widths", "seed": "sweep.seeds"}
TOP_KEYS = ("extends", "figure", "sweep", "run", "profile")
FIGURE_KEYS = ("name", "title")
PROFILE_KEYS = ("description", "sweep", "run")


# --------------------------------------------------------------------------------------------
# Experiment definitions
# --------------------------------------------------------------------------------------------
@dataclass
class Experiment:
    """One figure's resolved sweep: a base run configuration and the grid N x M x seeds."""

    name: str
    title: str
    run: dict[str, Any]
    n_pairs: list[int]
    widths: list[int]
    seeds: list[int]
    profile: str | None = None
    source: str = ""
    overrides: list[str] = field(default_factory=list)

    def configs(self) -> list[RunConfig]:
        """Every run of the grid, in a fixed order (N, then M, then seed)."""
        return [RunConfig.from_dict({**self.run, "n_pairs": n, "width": m, "seed": s})
                for n in self.n_pairs for m in self.widths for s in self.seeds]

    def base_config(self) -> RunConfig:
        return RunConfig.from_dict({**self.run, "n_pairs": self.n_pairs[0], "width": self.widths[0],
                                    "seed": self.seeds[0]})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "profile": self.profile, "source": self.source,
                "overrides": list(self.overrides),
                "sweep": {"n_pairs": list(self.n_pairs), "widths": list(self.widths), "seeds": list(self.seeds)},
                "run": dict(sorted(self.run.items()))}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Experiment":
        return cls(name=d["name"], title=d.get("title", d["name"]), run=dict(d["run"]),
                   n_pairs=list(d["sweep"]["n_pairs"]), widths=list(d["sweep"]["widths"]),
                   seeds=list(d["sweep"]["seeds"]), profile=d.get("profile"), source=d.get("source", ""),
                   overrides=list(d.get("overrides", [])))


def shipped_path(figure: str) -> Path:
    """Path of a shipped definition (``fig1`` .. ``fig3``)."""
    if figure not in FIGURES:
        raise ConfigError(f"unknown figure {figure!r}; choose one of {', '.join(FIGURES)}, 'all', or a .toml file")
    return Path(str(resources.files("widessl.experiments").joinpath("configs", f"{figure}.toml")))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"experiment file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _check_keys(table: Any, allowed: Iterable[str], where: str, path: Path) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} in {path} must be a table, got {table!r}")
    allowed = list(allowed)
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key {where + '.' if where else ''}{unknown[0]} in {path}; "
                          f"valid keys{' of ' + where if where else ''}: {', '.join(allowed)}")
    return table


def _run_keys() -> list[str]:
    return [k for k in RunConfig.keys() if k not in SWEPT_RUN_KEYS]


def _check_run_keys(table: dict, where: str, path: Path | str) -> dict:
    for key in table:
        if key in SWEPT_RUN_KEYS:
            raise ConfigError(f"{where}.{key} in {path} is swept; set {SWEPT_RUN_KEYS[key]} instead")
        if key not in RunConfig.keys():
            raise ConfigError(f"unknown key {where}.{key} in {path}; valid run keys: {', '.join(_run_keys())}")
    return table


def _int_list(key: str, value: Any) -> list[int]:
    if isinstance(value, str):  # "--set sweep.widths=64,128" arrives as a string
        try:
            value = [int(v) for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"sweep.{key} must be a list of integers like [64, 128], got {value!r}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"sweep.{key} must be a non-empty list of integers like [64, 128], got {value!r}")
    minimum = 0 if key == "seeds" else 1
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            kind = "non-negative" if key == "seeds" else "positive"
            raise ConfigError(f"sweep.{key} must hold {kind} integers, got {v!r}")
        if v not in out:
            out.append(v)
    return sorted(out)


def parse_value(text: str) -> Any:
    """A ``--set`` value as a TOML literal (``0.3``, ``true``, ``[64, 128]``, ``"relu"``); a bare
    word that is not a TOML literal (``relu``) is taken as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def parse_override(item: str) -> tuple[str, str, Any]:
    """``'lr=0.3'`` -> ('run', 'lr', 0.3); ``'sweep.widths=[64,128]'`` -> ('sweep', 'widths', [64, 128])."""
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
    key, _, value = item.partition("=")
    key = key.strip()
    section, _, name = key.rpartition(".")
    section = section or "run"
    if section == "sweep":
        if name not in SWEEP_KEYS:
            raise ConfigError(f"unknown key {key!r} in --set; valid sweep keys: {', '.join('sweep.' + k for k in SWEEP_KEYS)}")
    elif section == "run":
        if name in SWEPT_RUN_KEYS:
            raise ConfigError(f"{key!r} is swept; use --set {SWEPT_RUN_KEYS[name]}=[...] instead")
        if name not in RunConfig.keys():
            hint = f" (did you mean sweep.{name}?)" if name in SWEEP_KEYS else ""
            raise ConfigError(f"unknown key {key!r} in --set{hint}; valid run keys: {', '.join(_run_keys())} "
                              f"(and {', '.join('sweep.' + k for k in SWEEP_KEYS)})")
    elif section == "figure":
        if name != "title":
            raise ConfigError(f"unknown key {key!r} in --set; of [figure] only figure.title can be set")
    else:
        raise ConfigError(f"unknown key {key!r} in --set; keys are run keys (lr=0.3), sweep.<{'|'.join(SWEEP_KEYS)}> "
                          "or figure.title")
    return section, name, parse_value(value)


def _layers(path: Path, depth: int = 0) -> list[tuple[Path, dict[str, Any]]]:
    """The chain of definitions, oldest ``extends`` ancestor first, each checked for unknown keys."""
    if depth > 5:
        raise ConfigError(f"'extends' chain in {path} is too deep (a cycle?)")
    raw = _check_keys(_read_toml(path), TOP_KEYS, "", path)
    chain: list[tuple[Path, dict[str, Any]]] = []
    if "extends" in raw:
        parent = raw["extends"]
        if not isinstance(parent, str):
            raise ConfigError(f"extends in {path} must be a figure name or a path, got {parent!r}")
        chain = _layers(shipped_path(parent) if parent in FIGURES else (path.parent / parent), depth + 1)
    _check_keys(raw.get("figure", {}), FIGURE_KEYS, "figure", path)
    _check_keys(raw.get("sweep", {}), SWEEP_KEYS, "sweep", path)
    _check_run_keys(dict(raw.get("run", {})), "run", path)
    profiles = raw.get("profile", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"profile in {path} must hold tables like [profile.quick]")
    for pname, ptable in profiles.items():
        _check_keys(ptable, PROFILE_KEYS, f"profile.{pname}", path)
        _check_keys(ptable.get("sweep", {}), SWEEP_KEYS, f"profile.{pname}.sweep", path)
        _check_run_keys(dict(ptable.get("run", {})), f"profile.{pname}.run", path)
    return chain + [(path, raw)]


def load_experiment(target: str | os.PathLike, profile: str | None = "quick",
                    overrides: Iterable[str] = ()) -> Experiment:
    """Resolve one experiment: a shipped figure name or a TOML path, a profile and ``--set`` overrides.

    Layers are applied in order: for each file of the ``extends`` chain (the shipped ancestor
    first), its base tables and then its ``[profile.NAME]`` tables; then the ``--set`` overrides.
    A chain without any profile tables ignores ``profile``; a chain with profiles but not this
    one is an error.
    """
    target = str(target)
    path = shipped_path(target) if target in FIGURES else Path(target)
    if target not in FIGURES and path.suffix != ".toml" and not path.exists():
        raise ConfigError(f"unknown figure {target!r}; choose one of {', '.join(FIGURES)}, 'all', or a .toml file")
    layers = _layers(path)
    defined = sorted({p for _, raw in layers for p in raw.get("profile", {})})
    if profile and defined and profile not in defined:
        raise ConfigError(f"{path.name} has no profile {profile!r}; it defines: {', '.join(defined)}")
    d: dict[str, dict[str, Any]] = {"figure": {}, "sweep": {}, "run": {}}
    for i, (lpath, raw) in enumerate(layers):
        if i > 0:
            d["figure"].pop("name", None)  # a file that extends another is its own figure
        for part in ("figure", "sweep", "run"):
            d[part].update(raw.get(part, {}))
        ptable = raw.get("profile", {}).get(profile, {}) if profile else {}
        for part in ("sweep", "run"):
            d[part].update(ptable.get(part, {}))
    used_profile = profile if (profile and defined) else None
    overrides = list(overrides)
    for item in overrides:
        section, name, value = parse_override(item)
        if section == "figure":
            d["figure"][name] = str(value)
        else:
            d[section][name] = value
    for key in SWEEP_KEYS:
        if key not in d["sweep"]:
            raise ConfigError(f"{path} does not define sweep.{key}")
    name = d["figure"].get("name") or (target if target in FIGURES else path.stem)
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"figure name {name!r} must be letters, digits, '-' or '_' (it names output files)")
    exp = Experiment(
        name=name, title=str(d["figure"].get("title", name)), run=dict(d["run"]),
        n_pairs=_int_list("n_pairs", d["sweep"]["n_pairs"]), widths=_int_list("widths", d["sweep"]["widths"]),
        seeds=_int_list("seeds", d["sweep"]["seeds"]), profile=used_profile,
        source=target if target in FIGURES else str(path), overrides=overrides,
    )
    exp.base_config()  # validate the run values now, before any work starts
    return exp


def load_experiments(target: str, profile: str | None = "quick", overrides: Iterable[str] = ()) -> list[Experiment]:
    """``'all'`` -> the three shipped figures; otherwise one experiment."""
    targets = FIGURES if target == "all" else (target,)
    exps = [load_experiment(t, profile, overrides) for t in targets]
    names = [e.name for e in exps]
    if len(set(names)) != len(names):
        raise ConfigError(f"figure names must be distinct, got {names}")
    return exps


# --------------------------------------------------------------------------------------------
# The plan and the runner
# --------------------------------------------------------------------------------------------
@dataclass
class PlannedRun:
    figure: str
    config: RunConfig
    config_hash: str


def plan(experiments: Iterable[Experiment]) -> list[PlannedRun]:
    """Every run of every experiment, in order (figure, N, M, seed), each hash once."""
    out, seen = [], set()
    for exp in experiments:
        for cfg in exp.configs():
            h = cfg.hash()
            if h not in seen:
                seen.add(h)
                out.append(PlannedRun(exp.name, cfg, h))
    return out


def make_record(figure: str, cfg: RunConfig, result: dict[str, Any], *, status: str = "ok",
                error: str | None = None) -> dict[str, Any]:
    """One line of runs.jsonl: the run's full configuration (RunConfig keys), N, M, the figure, the
    configuration hash, and every quantity :func:`widessl.experiments.run.run` returned."""
    from widessl import __version__

    return {**cfg.to_dict(), "N": cfg.n_pairs, "M": cfg.width, "figure": figure, "config_hash": cfg.hash(),
            "status": status, "error": error, "widessl_version": __version__, **result}


# Cost model for the ETA and --dry-run: seconds ~ c[arch] * cost_weight(cfg), fitted to runs timed
# with one thread on this project's 2-core machine (quick and paper profiles, within about 1.5x),
# and recalibrated during a sweep from the wall times of the runs already finished.
_COST0 = {"two_layer": 1.256e-6, "deep": 9.6e-9}


def cost_weight(cfg: RunConfig) -> float:
    if cfg.arch == "deep":
        return (cfg.n_pairs ** 1.7 * cfg.width * (cfg.width + 370) * cfg.depth / 3
                * math.sqrt(cfg.outputs / 5 * (1 + cfg.n_heldout / cfg.n_pairs)))
    return cfg.n_pairs ** 1.73 * (cfg.width + 530) * (cfg.outputs / 5) ** 1.5


class _Eta:
    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.weight: dict[str, float] = {}

    def observe(self, cfg: RunConfig, seconds: float | None) -> None:
        if seconds is None or not math.isfinite(seconds):
            return
        self.seconds[cfg.arch] = self.seconds.get(cfg.arch, 0.0) + seconds
        self.weight[cfg.arch] = self.weight.get(cfg.arch, 0.0) + cost_weight(cfg)

    def estimate(self, cfgs: Iterable[RunConfig]) -> float:
        total = 0.0
        for cfg in cfgs:
            w = self.weight.get(cfg.arch)
            rate = self.seconds[cfg.arch] / w if w else _COST0.get(cfg.arch, _COST0["deep"])
            total += rate * cost_weight(cfg)
        return total


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def _terminal_columns() -> int:
    """Width of the terminal on stderr; 0 when there is none or it reports no width (some
    pseudo-terminals do, and tqdm then draws nothing)."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


@dataclass
class SweepOutcome:
    planned: int
    done_before: int
    finished_now: int
    failed: int
    seconds: float

    @property
    def done(self) -> int:
        return self.done_before + self.finished_now


def run_sweep(experiments: list[Experiment], out: str | os.PathLike, *, progress: bool = True,
              threads: int | None = None, log: Callable[[str], None] | None = None,
              state: dict | None = None) -> SweepOutcome:
    """Run every planned run of ``experiments`` whose hash is not yet in ``out/runs.jsonl``.

    Each finished run is appended at once (a later interruption keeps it). A run whose training
    diverges is recorded with ``status='failed'`` and its message, so a resume does not retry it;
    any other error stops the sweep. ``state`` (a dict), if given, is kept up to date with
    ``planned``/``done`` counts, so a caller can report them after an interruption.
    """
    import torch
    from tqdm import tqdm

    from widessl.data import load_mnist
    from widessl.experiments.run import run

    if threads:
        torch.set_num_threads(int(threads))
    runs = plan(experiments)
    state = state if state is not None else {}
    start = time.perf_counter()
    with ResultStore(out) as store:
        if store.repaired_bytes and log:
            log(f"removed a torn last line ({store.repaired_bytes} bytes) from {store.path}")
        todo = [r for r in runs if r.config_hash not in store]
        done_before = len(runs) - len(todo)
        state.update(planned=len(runs), done=done_before)
        eta = _Eta()
        for r in runs:
            rec = store.get(r.config_hash)
            if rec is not None:
                eta.observe(r.config, rec.get("wall_seconds"))
        datasets: dict[tuple[str, str], Any] = {}
        failed = 0
        cols = _terminal_columns()
        bar = tqdm(total=len(runs), initial=done_before, unit="run", disable=not progress, file=sys.stderr,
                   dynamic_ncols=bool(cols), ncols=None if cols else 110, nrows=None if cols else 24, smoothing=0,
                   bar_format="{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} runs done{postfix} [{elapsed}]")
        try:
            for i, r in enumerate(todo):
                cfg = r.config
                left = len(todo) - i
                bar.set_description_str(f"{r.figure} N={cfg.n_pairs} M={cfg.width} seed={cfg.seed} ", refresh=False)
                bar.set_postfix_str(f"{left} left, ETA ~{_fmt_seconds(eta.estimate(x.config for x in todo[i:]))}")
                key = (cfg.source, cfg.split)
                if key not in datasets:
                    datasets[key] = load_mnist(cfg.source, cfg.split)
                t0 = time.perf_counter()
                try:
                    result = run(cfg, dataset=datasets[key], progress=False)
                    record = make_record(r.figure, cfg, result)
                except DivergenceError as exc:
                    failed += 1
                    record = make_record(r.figure, cfg, {"wall_seconds": time.perf_counter() - t0}, status="failed",
                                         error=str(exc))
                    if log:
                        log(f"{r.figure} N={cfg.n_pairs} M={cfg.width} seed={cfg.seed}: diverged ({exc}); recorded as failed")
                store.append(record)
                state["done"] = done_before + i + 1
                eta.observe(cfg, record.get("wall_seconds"))
                bar.set_postfix_str(f"{left - 1} left", refresh=False)
                bar.update(1)
            bar.set_description_str("done ", refresh=False)
            bar.set_postfix_str("0 left")
        finally:
            bar.close()
    return SweepOutcome(planned=len(runs), done_before=done_before, finished_now=len(todo), failed=failed,
                        seconds=time.perf_counter() - start)


def estimate_seconds(experiments: list[Experiment], records: dict[str, dict] | None = None) -> tuple[float, int]:
    """(estimated seconds for the runs not yet in ``records``, their number), from the cost model."""
    eta = _Eta()
    records = records or {}
    runs = plan(experiments)
    for r in runs:
        rec = records.get(r.config_hash)
        if rec is not None:
            eta.observe(r.config, rec.get("wall_seconds"))
    todo = [r.config for r in runs if r.config_hash not in records]
    return eta.estimate(todo), len(todo)
