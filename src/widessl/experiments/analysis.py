"""From a sweep's records to numbers: per-(N, M) summaries over seeds, log-log slopes in M with
95% confidence intervals, and the verdict of each slope against what the theory predicts
(SPEC section 7).

Slope fit: ordinary least squares of log y on log M over every finished seed at every width
(not over the means, so the interval reflects the spread across seeds); the 95% interval is
slope +- t_{0.975, n-2} * stderr. Runs whose value is missing or not positive are left out of
the fit (and counted). Besides the fit over all widths, a "tail" fit over the three largest
widths shows whether the slope is still changing (SPEC: about -0.8 at M = 256-512 steepening
to -1 at M = 1024-2048 for the NTK change).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from widessl.experiments.sweep import Experiment

# Quantities summarized per (N, M) (wall times are left out: they differ between machines and
# between an interrupted and an uninterrupted sweep; they stay in runs.jsonl and report.md).
SUMMARY_METRICS = (
    "ntk_change", "ntk_change_heldout", "epochs", "epochs_run", "converged",
    "rep_distance_train", "rep_distance_heldout", "rep_distance_train_inf", "rep_distance_heldout_inf",
    "rep_distance_train_aligned", "rep_distance_heldout_aligned",
    "param_distance", "initial_loss", "final_loss", "kernel_final_loss", "kernel_inf_final_loss",
)

# (panel, metric): the quantities whose slope in M is fitted and judged.
PANELS = {
    "a": ("ntk_change", "ntk_change_heldout"),
    "b": ("epochs",),
    "c": ("rep_distance_train", "rep_distance_heldout", "rep_distance_train_inf", "rep_distance_heldout_inf"),
    "R": ("param_distance",),
}
PANEL_TITLES = {
    "a": "(a) NTK change until convergence",
    "b": "(b) epochs to convergence",
    "c": "(c) squared representation distance to the kernel model",
    "R": "||theta_T - theta_0||",
}
METRIC_LABELS = {
    "ntk_change": "NTK change, training inputs",
    "ntk_change_heldout": "NTK change, held-out inputs",
    "epochs": "epochs to convergence",
    "rep_distance_train": "rep. distance to Theta_0 model, training inputs",
    "rep_distance_heldout": "rep. distance to Theta_0 model, held-out inputs",
    "rep_distance_train_inf": "rep. distance to Theta_inf model, training inputs",
    "rep_distance_heldout_inf": "rep. distance to Theta_inf model, held-out inputs",
    "param_distance": "||theta_T - theta_0||",
}
TAIL_WIDTHS = 3


@dataclass(frozen=True)
class Prediction:
    """What the theory says about a slope. ``target``: the predicted value (None: only a bound);
    ``bound``: the slope must be <= bound (None: no bound); ``tol``: how far a slope may sit from
    the target, beyond its confidence interval, and still be called close; ``source``: in words."""

    target: float | None
    bound: float | None
    tol: float
    source: str


def predictions(exp: Experiment) -> dict[str, Prediction]:
    """The theory's predictions for each fitted metric of ``exp`` (SPEC section 7)."""
    relu = exp.run.get("activation", "tanh") == "relu"
    deep = exp.run.get("arch", "two_layer") == "deep"
    if relu:
        ntk = Prediction(-0.85, -0.5, 0.15,
                         "bound M^-1/2 (paper); relu is not smooth, so the M^-1 perturbative rate does not strictly "
                         "apply; a CPU-sized relu run measured about -0.85")
    else:
        ntk = Prediction(-1.0, -0.5, 0.25,
                         "bound M^-1/2 (paper); perturbative M^-1 (Dyer and Gur-Ari 2019, Huang and Yau 2020), "
                         "about -0.8 at M = 256-512 steepening to -1" + ("; deep: same rate at fixed depth" if deep else ""))
    rep0 = Prediction(-2.0, -1.0, 0.4, "network minus its linearization is second order in the weight change: "
                                       "M^-2 (bound: at least as steep as M^-1)")
    if relu:
        rep0 = Prediction(-2.0, -1.0, 0.4, "M^-2 for a smooth activation (second order in the weight change), at "
                                           "least M^-1 (bound); relu is not smooth: neurons whose activation pattern "
                                           "flips (a fraction ~ M^-1/2) add an error of first order in their own "
                                           "weight change, which by a heuristic count gives a squared distance "
                                           "between M^-1 and M^-1.5")
    repinf = Prediction(-1.0, None, 0.3, "Theta_0 fluctuates around Theta_inf by O(M^-1/2), so the squared distance "
                                          "to the Theta_inf model falls like M^-1 (widessl's derivation, not the paper's)")
    flat = Prediction(0.0, None, 0.1, "flat in M once M is large")
    flat_r = Prediction(0.0, None, 0.1, "flat in M: the weights stay in a ball of radius independent of M (Theorem 4.1)")
    return {
        "ntk_change": ntk, "ntk_change_heldout": ntk,
        "epochs": flat,
        "rep_distance_train": rep0, "rep_distance_heldout": rep0,
        "rep_distance_train_inf": repinf, "rep_distance_heldout_inf": repinf,
        "param_distance": flat_r,
    }


# --------------------------------------------------------------------------------------------
# Collecting the rows of one experiment
# --------------------------------------------------------------------------------------------
def collect(exp: Experiment, records: dict[str, dict]) -> list[dict]:
    """The finished, successful records of ``exp``'s grid, in (N, M, seed) order. Records are
    looked up by configuration hash, so records of other grids in the same store are ignored."""
    rows = []
    for cfg in exp.configs():
        rec = records.get(cfg.hash())
        if rec is not None and rec.get("status", "ok") == "ok":
            rows.append(rec)
    return rows


def failures(exp: Experiment, records: dict[str, dict]) -> list[dict]:
    out = []
    for cfg in exp.configs():
        rec = records.get(cfg.hash())
        if rec is not None and rec.get("status", "ok") != "ok":
            out.append(rec)
    return out


def _value(rec: dict, metric: str) -> float | None:
    v = rec.get(metric)
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


# --------------------------------------------------------------------------------------------
# Summary over seeds
# --------------------------------------------------------------------------------------------
def summarize(exp: Experiment, rows: list[dict]) -> list[dict]:
    """Per (N, M, metric): mean, std (ddof=1; empty for one seed), count, min, max over seeds."""
    out = []
    for n in exp.n_pairs:
        for m in exp.widths:
            group = [r for r in rows if r["N"] == n and r["M"] == m]
            if not group:
                continue
            for metric in SUMMARY_METRICS:
                vals = [v for v in (_value(r, metric) for r in group) if v is not None]
                if not vals:
                    continue
                a = np.asarray(vals)
                out.append({"figure": exp.name, "N": n, "M": m, "metric": metric, "mean": float(a.mean()),
                            "std": float(a.std(ddof=1)) if len(a) > 1 else None, "count": len(a),
                            "min": float(a.min()), "max": float(a.max())})
    return out


def _fmt_csv(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


SUMMARY_COLUMNS = ("figure", "N", "M", "metric", "mean", "std", "count", "min", "max")


def summary_csv(summaries: Iterable[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS)
    for row in summaries:
        w.writerow([_fmt_csv(row[c]) for c in SUMMARY_COLUMNS])
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Slopes
# --------------------------------------------------------------------------------------------
def fit_slope(M: Iterable[float], y: Iterable[float], level: float = 0.95) -> dict[str, Any]:
    """OLS fit of log y = a + b log M. Returns slope b, its standard error, the ``level``
    confidence interval (t distribution, n - 2 degrees of freedom), the intercept, n and the
    number of distinct widths. With fewer than 2 distinct widths the slope is None; with n <= 2
    the interval is None."""
    from scipy import stats

    x = np.log(np.asarray(list(M), dtype=float))
    yv = np.asarray(list(y), dtype=float)
    keep = np.isfinite(x) & np.isfinite(yv) & (yv > 0)
    x, ly = x[keep], np.log(yv[keep])
    n, n_widths = int(len(x)), int(len(np.unique(x)))
    out: dict[str, Any] = {"slope": None, "stderr": None, "ci_low": None, "ci_high": None, "intercept": None,
                           "n": n, "n_widths": n_widths}
    if n_widths < 2:
        return out
    xm, ym = x.mean(), ly.mean()
    sxx = float(((x - xm) ** 2).sum())
    b = float(((x - xm) * (ly - ym)).sum() / sxx)
    a = float(ym - b * xm)
    out.update(slope=b, intercept=a)
    if n > 2:
        resid = ly - (a + b * x)
        s2 = float((resid ** 2).sum()) / (n - 2)
        se = math.sqrt(s2 / sxx)
        t = float(stats.t.ppf(0.5 + level / 2, n - 2))
        out.update(stderr=se, ci_low=b - t * se, ci_high=b + t * se)
    return out


def verdict(fit: dict, pred: Prediction) -> tuple[str, str]:
    """(short verdict, sentence) of a fitted slope against a prediction.

    Short verdicts: 'agrees' (the target is inside the 95% CI, and the bound holds),
    'close' (the CI misses the target by at most ``tol``), 'disagrees', 'no fit'.
    """
    b, lo, hi = fit.get("slope"), fit.get("ci_low"), fit.get("ci_high")
    if b is None:
        return "no fit", "too few widths with positive values to fit a slope"
    if lo is None:
        lo = hi = b
    parts = []
    bad = False
    if pred.bound is not None:
        if lo > pred.bound:
            bad = True
            parts.append(f"shallower than the bound {pred.bound:g} (whole CI above it)")
        elif hi > pred.bound:
            parts.append(f"within the bound {pred.bound:g} at the estimate, but the CI reaches above it")
        else:
            parts.append(f"steeper than the bound {pred.bound:g}")
    short = "agrees"
    if pred.target is not None:
        if lo <= pred.target <= hi:
            parts.append(f"the CI contains the predicted {pred.target:g}")
        else:
            gap = lo - pred.target if lo > pred.target else pred.target - hi
            side = "shallower" if lo > pred.target else "steeper"
            if gap <= pred.tol:
                short = "close"
                parts.append(f"{side} than the predicted {pred.target:g}: the CI misses it by {gap:.2f} (within {pred.tol:g})")
            else:
                short = "disagrees"
                parts.append(f"{side} than the predicted {pred.target:g}: the CI misses it by {gap:.2f}")
    if bad:
        short = "disagrees"
    return short, "; ".join(parts)


def _bound_holds(fit: dict, pred: Prediction) -> bool | None:
    """True: the whole CI is at or below the bound; False: the whole CI is above it; None: the
    CI straddles it (or there is no bound or no fit)."""
    if pred.bound is None or fit.get("slope") is None:
        return None
    lo = fit["ci_low"] if fit["ci_low"] is not None else fit["slope"]
    hi = fit["ci_high"] if fit["ci_high"] is not None else fit["slope"]
    if hi <= pred.bound:
        return True
    if lo > pred.bound:
        return False
    return None


def slopes(exp: Experiment, rows: list[dict]) -> list[dict]:
    """One entry per (panel, metric, N): the fit over all widths, the fit over the largest
    ``TAIL_WIDTHS`` widths, the prediction and the verdict."""
    preds = predictions(exp)
    out = []
    tail = set(exp.widths[-TAIL_WIDTHS:])
    for panel, metrics in PANELS.items():
        for metric in metrics:
            for n in exp.n_pairs:
                pts = [(r["M"], _value(r, metric)) for r in rows if r["N"] == n]
                pts = [(m, v) for m, v in pts if v is not None]
                if not pts:
                    continue
                fit = fit_slope([m for m, _ in pts], [v for _, v in pts])
                tfit = (fit_slope([m for m, v in pts if m in tail], [v for m, v in pts if m in tail])
                        if len(exp.widths) > TAIL_WIDTHS else None)
                pred = preds[metric]
                short, words = verdict(fit, pred)
                out.append({
                    "figure": exp.name, "panel": panel, "metric": metric, "N": n,
                    "widths": sorted({m for m, _ in pts}),
                    **{k: fit[k] for k in ("slope", "ci_low", "ci_high", "stderr", "intercept", "n", "n_widths")},
                    "tail_slope": tfit["slope"] if tfit else None,
                    "tail_ci_low": tfit["ci_low"] if tfit else None,
                    "tail_ci_high": tfit["ci_high"] if tfit else None,
                    "tail_widths": sorted(tail) if tfit else None,
                    "predicted": pred.target, "bound": pred.bound, "prediction": pred.source,
                    "bound_holds": _bound_holds(fit, pred),
                    "verdict": short, "verdict_text": words,
                })
    return out


def epoch_spread(exp: Experiment, rows: list[dict]) -> list[dict]:
    """Per N: epochs to convergence over all widths and seeds (min, max, mean, relative std)
    and how many runs did not converge."""
    out = []
    for n in exp.n_pairs:
        group = [r for r in rows if r["N"] == n]
        eps = [r["epochs"] for r in group if isinstance(r.get("epochs"), int)]
        if not eps:
            continue
        a = np.asarray(eps, dtype=float)
        out.append({"N": n, "min": int(a.min()), "max": int(a.max()), "mean": float(a.mean()),
                    "rel_std": float(a.std(ddof=1) / a.mean()) if len(a) > 1 else None,
                    "not_converged": sum(1 for r in group if not r.get("converged", True))})
    return out
