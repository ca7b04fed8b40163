"""The figures: three panels, (a) NTK change, (b) epochs, (c) representation distance, on
log-log axes, one line per N with error bars over seeds (mean +- one standard deviation; a
lower bar that would cross zero is cut at the axis), the fitted slope of each line in the
legend, and a reference slope for the theory's prediction."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from widessl.experiments.sweep import Experiment

# (panel key, solid metric, dashed metric or None, y label, reference slope or None)
PANEL_SPECS = (
    ("a", "ntk_change", "ntk_change_heldout", r"$\|\Theta_T-\Theta_0\|_F\,/\,\|\Theta_0\|_F$", -1.0),
    ("b", "epochs", None, "epochs to convergence", 0.0),
    ("c", "rep_distance_train", "rep_distance_train_inf", r"$\frac{1}{n}\|F_{net}-F_{kernel}\|_F^2$", -2.0),
)
TITLES = {"a": "(a) NTK change", "b": "(b) epochs to convergence", "c": "(c) representation distance"}
DASHED = {"a": "dashed: held-out inputs", "c": r"dashed: $\Theta_\infty$ model (solid: $\Theta_0$)"}
SOLID = {"a": "solid: training inputs", "c": None}


def _stats(summary: list[dict], metric: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = sorted((r for r in summary if r["metric"] == metric and r["N"] == n), key=lambda r: r["M"])
    M = np.array([r["M"] for r in rows], dtype=float)
    mean = np.array([r["mean"] for r in rows], dtype=float)
    std = np.array([r["std"] if r["std"] is not None else 0.0 for r in rows], dtype=float)
    return M, mean, std


def _errorbar(ax, M, mean, std, **kw):
    ok = mean > 0
    M, mean, std = M[ok], mean[ok], std[ok]
    if not len(M):
        return None
    lower = np.minimum(std, mean * (1 - 1e-3))  # keep the lower bar above zero on a log axis
    return ax.errorbar(M, mean, yerr=[lower, std], capsize=3, marker="o", markersize=4, **kw)


def _reference(ax, M_all: np.ndarray, y_anchor: float, slope: float, label: str):
    if not len(M_all) or not np.isfinite(y_anchor) or y_anchor <= 0:
        return
    m0, m1 = M_all.min(), M_all.max()
    xs = np.array([m0, m1])
    ax.plot(xs, y_anchor * (xs / m0) ** slope, color="0.55", linestyle=":", linewidth=1.5, label=label, zorder=1)


def plot_figure(exp: Experiment, summary: list[dict], fits: list[dict], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``<name>.png`` and ``<name>.svg`` into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    plt.rcParams["svg.hashsalt"] = "widessl"  # deterministic SVG ids
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.9))
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(len(exp.n_pairs), 1)))
    slope_of = {(f["metric"], f["N"]): f for f in fits}
    for ax, (panel, metric, dashed, ylabel, ref) in zip(axes, PANEL_SPECS):
        first_mean = None
        for color, n in zip(colors, exp.n_pairs):
            M, mean, std = _stats(summary, metric, n)
            f = slope_of.get((metric, n))
            lab = f"N={n}"
            if f and f["slope"] is not None:
                ci = (f" [{f['ci_low']:+.2f}, {f['ci_high']:+.2f}]" if f["ci_low"] is not None else "")
                lab += f": slope {f['slope']:+.2f}{ci}"
            if _errorbar(ax, M, mean, std, color=color, label=lab, linewidth=1.6) is not None and first_mean is None:
                pos = mean[mean > 0]
                first_mean = (M[mean > 0], pos)
            if dashed:
                M2, mean2, std2 = _stats(summary, dashed, n)
                _errorbar(ax, M2, mean2, std2, color=color, linestyle="--", alpha=0.6, linewidth=1.2)
        if ref is not None and first_mean is not None:
            Ms, ys = first_mean
            anchor = float(np.exp(np.mean(np.log(ys)) - ref * np.mean(np.log(Ms)) + ref * np.log(Ms.min())))
            if panel == "b":
                _reference(ax, Ms, anchor, 0.0, "theory: flat")
            else:
                _reference(ax, Ms, anchor * 1.6, ref, f"theory: slope {ref:g}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(exp.widths)
        ax.set_xticklabels([str(w) for w in exp.widths], fontsize=8)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("width M")
        ax.set_ylabel(ylabel)
        ax.set_title(TITLES[panel])
        ax.grid(True, which="major", alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        extra = []
        if SOLID.get(panel):
            extra.append(Line2D([], [], color="0.3", linestyle="-", label=SOLID[panel]))
        if DASHED.get(panel):
            extra.append(Line2D([], [], color="0.3", linestyle="--", alpha=0.6, label=DASHED[panel]))
        ax.legend(handles=handles + extra, fontsize=7.5, loc="best", framealpha=0.85)
    cfg = exp.base_config()
    arch = f"depth {cfg.depth}" if cfg.arch == "deep" else "two-layer"
    prof = f", profile {exp.profile}" if exp.profile else ""
    fig.suptitle(f"{exp.name}: {exp.title}  ({arch} {cfg.activation}, K={cfg.outputs}, lr={cfg.lr:g}, "
                 f"{len(exp.seeds)} seeds{prof}; error bars: ±1 std over seeds)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    paths = []
    for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        path = out_dir / f"{exp.name}.{ext}"
        tmp = out_dir / f".{exp.name}.tmp.{ext}"
        fig.savefig(tmp, dpi=110, metadata=meta, format=ext)
        os.replace(tmp, path)
        paths.append(path)
    plt.close(fig)
    return paths
