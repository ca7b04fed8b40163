"""Figures and ``report.md`` of ``widessl theory``: log-log plots with error bars over seeds,
fitted slopes with 95% confidence intervals, and the bound-versus-measurement checks.

Slope fit: ordinary least squares of log y on log x over every seed at every point (not over
the means, so the interval reflects the spread across seeds); the 95% interval is
slope +- t_{0.975, n-2} * stderr. Error bars: mean +- one standard deviation over seeds (a lower
bar that would cross zero is cut at the axis).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from widessl._io import atomic_write_text
from widessl._format import format_value
from widessl.experiments.analysis import fit_slope

FIGURE_WIDTH = "theory_width"
FIGURE_SAMPLES = "theory_samples"


@dataclass
class Slope:
    """Log-log slope of y against x: ``slope`` with 95% interval [lo, hi] from ``n`` points."""

    slope: float
    lo: float
    hi: float
    n: int

    def text(self) -> str:
        if not math.isfinite(self.slope):
            return "n/a"
        if not math.isfinite(self.lo):
            return f"{self.slope:+.2f}"
        return f"{self.slope:+.2f} [{self.lo:+.2f}, {self.hi:+.2f}]"

    def overlaps(self, a: float, b: float) -> bool:
        return math.isfinite(self.slope) and self.lo <= b and self.hi >= a


def fit_loglog(x: Iterable[float], y: Iterable[float]) -> Slope:
    """OLS slope of log y on log x with a 95% t-interval (the same fit as the reproduce sweep's,
    :func:`widessl.experiments.analysis.fit_slope`); points with y <= 0 or missing are dropped."""
    pts = [(float(a), float(b)) for a, b in zip(x, y)
           if a is not None and b is not None and a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)]
    fit = fit_slope([p[0] for p in pts], [p[1] for p in pts])
    nan = float("nan")

    def value(key: str) -> float:
        return nan if fit[key] is None else float(fit[key])

    return Slope(value("slope"), value("ci_low"), value("ci_high"), fit["n"])


def _group(records: list[dict], xkey: str, ykey: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    by: dict[float, list[float]] = {}
    for r in records:
        v = r.get(ykey)
        if v is None or r.get(xkey) is None:
            continue
        by.setdefault(float(r[xkey]), []).append(float(v))
    xs = np.array(sorted(by))
    mean = np.array([np.mean(by[x]) for x in xs])
    std = np.array([np.std(by[x], ddof=1) if len(by[x]) > 1 else 0.0 for x in xs])
    return xs, mean, std


def _errorbar(ax, records, xkey, ykey, **kw):
    xs, mean, std = _group(records, xkey, ykey)
    ok = mean > 0
    if not ok.any():
        return None
    xs, mean, std = xs[ok], mean[ok], std[ok]
    lower = np.minimum(std, mean * (1 - 1e-3))
    return ax.errorbar(xs, mean, yerr=[lower, std], capsize=3, marker="o", markersize=4, **kw)


def _reference(ax, records, xkey, ykey, slope, label):
    xs, mean, _ = _group(records, xkey, ykey)
    if not len(xs) or mean[0] <= 0:
        return
    line = np.array([xs.min(), xs.max()])
    ax.plot(line, mean[0] * (line / xs.min()) ** slope, color="0.5", linestyle=":", linewidth=1.5, label=label)


def _setup_matplotlib():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "widessl"
    return plt


def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = []
    for ext in ("png", "svg"):
        path = out / f"{stem}.{ext}"
        tmp = out / f".{stem}.tmp.{ext}"
        fig.savefig(tmp, dpi=130 if ext == "png" else None, bbox_inches="tight",
                    **({"metadata": {"Date": None}} if ext == "svg" else {}))
        os.replace(tmp, path)
        paths.append(path)
    return paths


def _label(s: str, fit: Slope) -> str:
    return f"{s} (slope {fit.slope:+.2f})" if math.isfinite(fit.slope) else s


def plot_width(records: list[dict], out: Path) -> list[Path]:
    """theory_width.png/.svg: Hessian norm, R_T and c_0, NTK change against the bound, vs M."""
    plt = _setup_matplotlib()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    fit = lambda key: fit_loglog([r["M"] for r in records], [r.get(key) for r in records])  # noqa: E731
    ax = axes[0]
    _errorbar(ax, records, "M", "hessian_norm_init", label=_label(r"at $\theta_0$", fit("hessian_norm_init")))
    _errorbar(ax, records, "M", "hessian_norm_final", label=_label(r"at $\theta_T$", fit("hessian_norm_final")))
    _errorbar(ax, records, "M", "rho_certified", linestyle="--",
              label=_label(r"certified sup on $[\theta_0,\theta_T]$", fit("rho_certified")))
    _reference(ax, records, "M", "hessian_norm_init", -0.5, r"$M^{-1/2}$")
    ax.set_title(r"(a) $\max_{a,k}\|\nabla^2_\theta f_k(a)\|_2$")
    ax = axes[1]
    _errorbar(ax, records, "M", "param_distance", label=_label(r"$R_T=\|\theta_T-\theta_0\|$", fit("param_distance")))
    _errorbar(ax, records, "M", "c0", label=_label(r"$c_0=\max_{a,k}\|\nabla_\theta f_k(a)\|$ at $\theta_0$", fit("c0")))
    ax.set_title(r"(b) radius $R_T$ and gradient bound $c_0$ (theory: flat)")
    ax = axes[2]
    _errorbar(ax, records, "M", "ntk_change", label=_label("measured", fit("ntk_change")))
    _errorbar(ax, records, "M", "ntk_change_bound", label=_label("Theorem 3.1 bound (entrywise)", fit("ntk_change_bound")))
    _errorbar(ax, records, "M", "ntk_change_bound_operator", linestyle="--",
              label=_label("bound, Jacobian form", fit("ntk_change_bound_operator")))
    _reference(ax, records, "M", "ntk_change", -0.5, r"$M^{-1/2}$")
    _reference(ax, records, "M", "ntk_change", -1.0, r"$M^{-1}$")
    ax.set_title(r"(c) NTK change $\|\Theta_T-\Theta_0\|_F/\|\Theta_0\|_F$")
    N = records[0].get("N") if records else None
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width M")
        ax.grid(True, which="both", alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"Theorem 3.1 quantities, two-layer network, N = {N} pairs (mean ± sd over seeds)", fontsize=11)
    fig.tight_layout()
    paths = _save(fig, out, FIGURE_WIDTH)
    plt.close(fig)
    return paths


def plot_samples(kernel: list[dict], network: list[dict], out: Path) -> list[Path]:
    """theory_samples.png/.svg: generalization gap against the bound, vs N."""
    plt = _setup_matplotlib()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    fitk = lambda recs, key: fit_loglog([r["N"] for r in recs], [r.get(key) for r in recs])  # noqa: E731
    ax = axes[0]
    _errorbar(ax, kernel, "N", "bound", label=_label("bound", fitk(kernel, "bound")))
    _errorbar(ax, kernel, "N", "bound_lipschitz", linestyle="--",
              label=_label("bound, Lipschitz form", fitk(kernel, "bound_lipschitz")))
    _errorbar(ax, kernel, "N", "gap", label=_label("measured gap", fitk(kernel, "gap")))
    _reference(ax, kernel, "N", "gap", -0.5, r"$N^{-1/2}$")
    ax.set_title(r"(a) kernel model ($\Theta_\infty$, centred): gap vs bound")
    ax = axes[1]
    widths = sorted({r["M"] for r in network})
    for M in widths:
        recs = [r for r in network if r["M"] == M]
        _errorbar(ax, recs, "N", "bound", label=_label(f"finite-width bound, M={M}", fitk(recs, "bound")))
        _errorbar(ax, recs, "N", "gap", label=_label(f"network gap, M={M}", fitk(recs, "gap")))
    _reference(ax, network, "N", "gap", -0.5, r"$N^{-1/2}$")
    ax.set_title("(b) finite networks: gap vs finite-width bound")
    ax = axes[2]
    _errorbar(ax, kernel, "N", "B", label=_label("centred kernel model", fitk(kernel, "B")))
    for M in widths:
        recs = [r for r in network if r["M"] == M]
        _errorbar(ax, recs, "N", "B", linestyle="--", label=_label(f"kernel model of the M={M} network", fitk(recs, "B")))
    ax.set_title(r"(c) $B=\|W\|_F$ of the trained kernel model")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("pairs N")
        ax.grid(True, which="both", alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("Section 5: Barlow Twins generalization gap (fresh pairs from held-out images) and bound "
                 "(mean ± sd over seeds)", fontsize=11)
    fig.tight_layout()
    paths = _save(fig, out, FIGURE_SAMPLES)
    plt.close(fig)
    return paths




def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(c if isinstance(c, str) else format_value(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _means(records: list[dict], xkey: str, keys: list[str]) -> list[list[Any]]:
    rows = []
    for x in sorted({r[xkey] for r in records}):
        rs = [r for r in records if r[xkey] == x]
        row: list[Any] = [int(x), len(rs)]
        for k in keys:
            vals = [r[k] for r in rs if r.get(k) is not None]
            row.append(float(np.mean(vals)) if vals else None)
        rows.append(row)
    return rows


def slopes(records: list[dict]) -> dict[str, Slope]:
    """Every fitted slope of the report, by name."""
    records = [r for r in records if not r.get("diverged")]
    width = [r for r in records if r.get("kind") == "width"]
    kernel = [r for r in records if r.get("kind") == "kernel"]
    network = [r for r in records if r.get("kind") == "network"]
    out = {}
    for key in ("hessian_norm_init", "hessian_norm_final", "rho", "rho_certified", "param_distance", "c0",
                "ntk_change", "ntk_change_bound", "ntk_change_bound_operator"):
        out[f"width:{key}"] = fit_loglog([r["M"] for r in width], [r.get(key) for r in width])
    for key in ("gap", "bound", "bound_lipschitz", "B"):
        out[f"kernel:{key}"] = fit_loglog([r["N"] for r in kernel], [r.get(key) for r in kernel])
    for M in sorted({r["M"] for r in network}):
        recs = [r for r in network if r["M"] == M]
        for key in ("gap", "bound", "B"):
            out[f"network{M}:{key}"] = fit_loglog([r["N"] for r in recs], [r.get(key) for r in recs])
    return out


def bound_violations(records: list[dict]) -> list[dict]:
    """Sample-size records whose measured gap exceeds the bound (there should be none)."""
    out = []
    for r in records:
        if r.get("kind") not in ("kernel", "network") or r.get("diverged"):
            continue
        # networks: the finite-width bound, and the offset-class bound of their own kernel model
        if r["gap"] > r["bound"] or (r.get("kernel_gap") is not None and r["kernel_gap"] > r["kernel_bound"]):
            out.append(r)
    return out


def ntk_violations(records: list[dict]) -> list[dict]:
    """Width records whose measured NTK change exceeds the bound computed with the certified rho."""
    return [r for r in records if r.get("kind") == "width" and not r.get("diverged")
            and r.get("ntk_change_bound_certified") is not None
            and r["ntk_change"] > r["ntk_change_bound_certified"]]


def report_markdown(records: list[dict], profile: dict | None = None, wall_seconds: float | None = None,
                    figures: dict[str, str] | None = None) -> str:
    diverged = [r for r in records if r.get("diverged")]
    records = [r for r in records if not r.get("diverged")]
    width = [r for r in records if r.get("kind") == "width"]
    kernel = [r for r in records if r.get("kind") == "kernel"]
    network = [r for r in records if r.get("kind") == "network"]
    fits = slopes(records)
    figures = figures or {}
    lines = ["# widessl theory report", ""]
    if profile:
        lines += [f"Profile `{profile.get('name')}`: {profile.get('description', '')}".rstrip(), ""]
    if wall_seconds is not None:
        lines += [f"Wall time of this invocation: {wall_seconds:.0f} s "
                  f"({sum(r.get('wall_seconds', 0.0) for r in records):.0f} s summed over the records).", ""]

    if width:
        Ms = sorted({r["M"] for r in width})
        log_ref = -0.5 + 1.0 / (2.0 * math.log(Ms[0]))
        h = fits["width:hessian_norm_init"]
        R = fits["width:param_distance"]
        c0 = fits["width:c0"]
        ch = fits["width:ntk_change"]
        chb = fits["width:ntk_change_bound"]
        lines += ["## Theorem 3.1 quantities against the width M", ""]
        if FIGURE_WIDTH in figures:
            lines += [f"![width sweep]({figures[FIGURE_WIDTH]})", ""]
        verdict_h = ("consistent with M^-1/2 up to the sqrt(log M) of the max over neurons"
                     if h.overlaps(-0.5, log_ref) else "differs from -1/2")
        verdict_R = "flat" if R.overlaps(-0.1, 0.1) else "not flat"
        verdict_c = "flat" if c0.overlaps(-0.1, 0.1) else "not flat"
        verdict_ch = ("at least as steep as the bound's -1/2" if ch.hi <= -0.5 or ch.slope <= -0.5
                      else "shallower than -1/2")
        rows = [
            ["Hessian norm at theta_0", h.text(), f"-1/2 (with log factor: {log_ref:+.2f} at M={Ms[0]})", verdict_h],
            ["Hessian norm at theta_T", fits["width:hessian_norm_final"].text(), "-1/2", ""],
            ["certified sup on the segment", fits["width:rho_certified"].text(), "-1/2", ""],
            ["R_T = ||theta_T - theta_0||", R.text(), "0 (flat, Theorem 4.1)", verdict_R],
            ["c_0 at theta_0", c0.text(), "0 (flat)", verdict_c],
            ["NTK change (measured)", ch.text(), "<= -1/2 (bound); -1 (perturbative)", verdict_ch],
            ["NTK change bound (Theorem 3.1)", chb.text(), "-1/2 once rho R << c_0 (steeper before)", ""],
            ["NTK change bound (Jacobian form)", fits["width:ntk_change_bound_operator"].text(), "-1/2 asymptotically", ""],
        ]
        lines += [_table(["quantity", "slope in M [95% CI]", "theory", "verdict"], rows), ""]
        keys = ["hessian_norm_init", "hessian_norm_final", "rho_certified", "c0", "param_distance", "ntk_change",
                "ntk_change_bound", "ntk_change_bound_certified", "ntk_change_bound_operator", "epochs"]
        lines += ["Means over seeds:", "", _table(["M", "seeds"] + keys, _means(width, "M", keys)), ""]
        viol = ntk_violations(records)
        lines += [f"Measured NTK change below the certified Theorem 3.1 bound in "
                  f"{len(width) - len(viol)} of {len(width)} runs."]
        diffs = [r["hessian_lanczos_rel_diff"] for r in width if r.get("hessian_lanczos_rel_diff") is not None]
        if diffs:
            lines += [f"Structured Hessian norm against Lanczos on Hessian-vector products (at the maximizing "
                      f"input and output, theta_0): largest relative difference {max(diffs):.1e} over {len(diffs)} runs."]
        lines += [""]

    if kernel or network:
        lines += ["## Generalization gap and bound against the sample size N", ""]
        if FIGURE_SAMPLES in figures:
            lines += [f"![sample-size sweep]({figures[FIGURE_SAMPLES]})", ""]
        rows = []
        for name, label in (("kernel", "centred kernel model"),):
            if kernel:
                rows.append([f"{label}: gap", fits[f"{name}:gap"].text(), "no prediction (the bound is an upper bound)"])
                rows.append([f"{label}: bound", fits[f"{name}:bound"].text(),
                             f"-1 + 4 x slope(B) = {-1 + 4 * fits['kernel:B'].slope:+.2f} (eps^2 term), "
                             f"-1/2 at fixed B (Lipschitz form)"])
                rows.append([f"{label}: bound, Lipschitz form", fits[f"{name}:bound_lipschitz"].text(),
                             f"-1/2 + 4 x slope(B) = {-0.5 + 4 * fits['kernel:B'].slope:+.2f}"])
                rows.append([f"{label}: B", fits[f"{name}:B"].text(), "grows with N (more pairs to fit)"])
        for M in sorted({r["M"] for r in network}):
            rows.append([f"network M={M}: gap", fits[f"network{M}:gap"].text(), ""])
            rows.append([f"network M={M}: finite-width bound", fits[f"network{M}:bound"].text(), ""])
        lines += [_table(["quantity", "slope in N [95% CI]", "theory"], rows), ""]
        if kernel:
            keys = ["B", "kappa_bar", "train_loss", "population_loss", "gap", "bound", "bound_lipschitz", "epochs"]
            lines += ["Centred kernel model, means over seeds:", "", _table(["N", "seeds"] + keys, _means(kernel, "N", keys)), ""]
        for M in sorted({r["M"] for r in network}):
            recs = [r for r in network if r["M"] == M]
            keys = ["B", "f0_sup", "train_loss", "population_loss", "gap", "kernel_gap", "eps", "dist_population",
                    "dist_train", "bound"]
            lines += [f"Networks of width M={M}, means over seeds:", "", _table(["N", "seeds"] + keys, _means(recs, "N", keys)), ""]
        viol = bound_violations(records)
        total = len(kernel) + len(network)
        lines += [f"Bound at or above the measured gap in {total - len(viol)} of {total} cases "
                  f"({len(kernel)} kernel-model runs, {len(network)} networks; for each network both the "
                  f"finite-width bound and the bound for its own kernel model)."
                  + ("" if not viol else " VIOLATIONS: " + ", ".join(r["key"] for r in viol)), ""]
    if diverged:
        lines += ["## Runs that diverged (left out of every fit)", ""]
        lines += [f"- `{r['key']}`: {r.get('error', '')}" for r in diverged] + [""]
    return "\n".join(lines)


def write_report(out: str | os.PathLike, records: list[dict], *, profile: dict | None = None,
                 wall_seconds: float | None = None) -> dict[str, Any]:
    """Write the figures (PNG and SVG) and ``report.md`` into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    finished = [r for r in records if not r.get("diverged")]
    width = [r for r in finished if r.get("kind") == "width"]
    kernel = [r for r in finished if r.get("kind") == "kernel"]
    network = [r for r in finished if r.get("kind") == "network"]
    files: dict[str, Any] = {"figures": []}
    figures = {}
    if width:
        files["figures"] += plot_width(width, out)
        figures[FIGURE_WIDTH] = f"{FIGURE_WIDTH}.png"
    if kernel or network:
        files["figures"] += plot_samples(kernel, network, out)
        figures[FIGURE_SAMPLES] = f"{FIGURE_SAMPLES}.png"
    text = report_markdown(records, profile, wall_seconds, figures)
    files["report"] = atomic_write_text(out / "report.md", text + "\n")
    return files
