"""``report.md``: every fitted slope set beside what the theory predicts, with each disagreement
spelled out in words, plus the grid, the convergence record and the cost of the sweep."""

from __future__ import annotations

from typing import Any

from widessl.experiments.analysis import METRIC_LABELS, epoch_spread
from widessl.experiments.sweep import Experiment


def _ci(lo, hi) -> str:
    return f"[{lo:+.2f}, {hi:+.2f}]" if lo is not None else "n/a"


def _num(v: Any, fmt: str = "+.2f") -> str:
    return "n/a" if v is None else format(v, fmt)


def _duration(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {sec:02d} s" if m else f"{sec} s")


def slope_table(fits: list[dict], *, metrics: tuple[str, ...] | None = None) -> list[str]:
    lines = ["| panel | quantity | N | slope in M [95% CI] | slope, largest 3 widths | theory | verdict |",
             "| --- | --- | ---: | --- | --- | --- | --- |"]
    for f in fits:
        if metrics and f["metric"] not in metrics:
            continue
        theory = []
        if f["predicted"] is not None:
            theory.append(f"~ {f['predicted']:+g}")
        if f["bound"] is not None:
            theory.append(f"<= {f['bound']:+g}")
        tail = (f"{_num(f['tail_slope'])} {_ci(f['tail_ci_low'], f['tail_ci_high'])}"
                if f.get("tail_slope") is not None else "n/a")
        lines.append(f"| {f['panel']} | {METRIC_LABELS.get(f['metric'], f['metric'])} | {f['N']} | "
                     f"{_num(f['slope'])} {_ci(f['ci_low'], f['ci_high'])} | {tail} | {', '.join(theory) or '-'} | "
                     f"{f['verdict']} |")
    return lines


def figure_section(exp: Experiment, fits: list[dict], rows: list[dict], failed: list[dict],
                   image_prefix: str = "") -> list[str]:
    cfg = exp.base_config()
    planned = len(exp.n_pairs) * len(exp.widths) * len(exp.seeds)
    arch = f"deep, {cfg.depth} hidden layers" if cfg.arch == "deep" else "two-layer"
    lines = [f"## {exp.name}: {exp.title}", "",
             f"{arch}, activation {cfg.activation}, K = {cfg.outputs}, lr = {cfg.lr:g}, loss {cfg.loss}, "
             f"{cfg.dtype}; N in {exp.n_pairs}, M in {exp.widths}, seeds {exp.seeds}"
             + (f" (profile {exp.profile})" if exp.profile else "") + ".",
             f"Runs: {len(rows)} of {planned} finished" + (f", {len(failed)} failed (diverged)" if failed else "") + ".",
             ""] + ([f"![{exp.name}]({image_prefix}{exp.name}.png)", ""] if rows else [])
    lines += slope_table(fits)
    lines.append("")
    spread = epoch_spread(exp, rows)
    if spread:
        lines.append("Epochs to convergence (panel b), over all widths and seeds: " + "; ".join(
            f"N = {s['N']}: {s['min']}-{s['max']} (mean {s['mean']:.0f}, relative std "
            f"{_num(s['rel_std'], '.0%') if s['rel_std'] is not None else 'n/a'})" for s in spread) + ".")
        nc = sum(s["not_converged"] for s in spread)
        if nc:
            lines.append(f"**{nc} run(s) did not converge within max_epochs = {cfg.max_epochs}**; their epochs are "
                         "the cap, which flattens panel (b) artificially.")
        lines.append("")
    lines += ["### In words", ""] + agreement_words(exp, fits) + [""]
    for rec in failed:
        lines.append(f"- failed: N = {rec['N']}, M = {rec['M']}, seed = {rec['seed']}: {rec.get('error')}")
    if failed:
        lines.append("")
    return lines


def agreement_words(exp: Experiment, fits: list[dict]) -> list[str]:
    """Plain sentences: which slopes agree with the theory, and each disagreement."""
    out = []
    for metric, what in (("ntk_change", "The NTK change (panel a, training inputs)"),
                         ("ntk_change_heldout", "The NTK change on held-out inputs"),
                         ("epochs", "Epochs to convergence (panel b)"),
                         ("rep_distance_train", "The distance to the Theta_0 kernel model (panel c)"),
                         ("rep_distance_train_inf", "The distance to the Theta_inf kernel model"),
                         ("param_distance", "The weight change ||theta_T - theta_0||")):
        fs = [f for f in fits if f["metric"] == metric and f["slope"] is not None]
        if not fs:
            continue
        slopes = ", ".join(f"{f['slope']:+.2f} (N = {f['N']})" for f in fs)
        verdicts = {f["verdict"] for f in fs}
        pred = fs[0]["prediction"]
        if verdicts == {"agrees"}:
            head = f"- {what} agrees with the theory ({pred}): slopes {slopes}."
        elif "disagrees" not in verdicts:
            head = f"- {what} is close to the theory ({pred}) but not inside every confidence interval: slopes {slopes}."
        else:
            head = f"- **{what} disagrees with the theory** ({pred}): slopes {slopes}."
        out.append(head)
        if metric.startswith("ntk_change"):
            bound = {f["bound_holds"] for f in fs}
            if bound == {True}:
                out.append("  The paper's bound (slope <= -0.5) holds with the whole 95% CI below -0.5 for every N.")
            elif False in bound:
                bad = [str(f["N"]) for f in fs if f["bound_holds"] is False]
                out.append(f"  **The paper's bound (slope <= -0.5) is violated** for N = {', '.join(bad)}: "
                           "the whole confidence interval is shallower than -0.5.")
            else:
                out.append("  The paper's bound (slope <= -0.5) holds at the estimates, but some intervals reach above -0.5.")
            tails = [f for f in fs if f.get("tail_slope") is not None]
            if tails:
                out.append("  Over the three largest widths the slopes are "
                           + ", ".join(f"{f['tail_slope']:+.2f} (N = {f['N']})" for f in tails)
                           + ", against about -0.8 to -1 expected there.")
        for f in fs:
            if f["verdict"] in ("disagrees", "close"):
                out.append(f"  - N = {f['N']}: slope {f['slope']:+.2f} {_ci(f['ci_low'], f['ci_high'])}: {f['verdict_text']}.")
    return out


def build_report(experiments: list[Experiment], all_fits: dict[str, list[dict]], all_rows: dict[str, list[dict]],
                 all_failed: dict[str, list[dict]], *, command: str | None = None,
                 session_seconds: float | None = None) -> str:
    """The text of report.md."""
    total_runs = sum(len(r) for r in all_rows.values())
    compute = sum(float(r.get("wall_seconds") or 0.0) for rows in all_rows.values() for r in rows)
    lines = ["# widessl reproduce: report", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        "Each slope is an OLS fit of log(quantity) on log(M) over every finished seed and width, with a 95% "
        "t-interval. Theory (SPEC section 7): (a) NTK change: the paper's bound M^-1/2 (slope <= -0.5) and the "
        "perturbative rate M^-1; (b) epochs flat in M; (c) squared distance to the Theta_0 (linearized) model "
        "M^-2, at least M^-1. Verdicts: *agrees* (the prediction lies in the 95% CI), *close* (the CI misses it by "
        "less than a stated tolerance), *disagrees*.", "",
        f"Finished runs: {total_runs}; compute time of those runs (sum of per-run wall times): {_duration(compute)}"
        + (f"; this invocation took {_duration(session_seconds)}" if session_seconds is not None else "") + ".", "",
    ]
    # Overall summary first.
    lines += ["## Summary", ""]
    for exp in experiments:
        fits = all_fits[exp.name]
        bad = [f for f in fits if f["verdict"] == "disagrees" and f["metric"] in
               ("ntk_change", "epochs", "rep_distance_train")]
        close = [f for f in fits if f["verdict"] == "close" and f["metric"] in
                 ("ntk_change", "epochs", "rep_distance_train")]
        if not fits:
            lines.append(f"- {exp.name} ({exp.title}): no finished runs yet.")
        elif bad:
            lines.append(f"- {exp.name} ({exp.title}): **disagrees** with the theory in "
                         + ", ".join(sorted({f"panel {f['panel']} ({METRIC_LABELS[f['metric']]})" for f in bad})) + ".")
        elif close:
            panels = sorted({f["panel"] for f in close})
            lines.append(f"- {exp.name} ({exp.title}): close to the theory; in panel{'s' if len(panels) > 1 else ''} "
                         + ", ".join(panels) + " the predicted slope lies just outside the 95% CI for some N, "
                         "within the stated tolerance (see below).")
        else:
            lines.append(f"- {exp.name} ({exp.title}): all three panels agree with the theory.")
    lines.append("")
    for exp in experiments:
        lines += figure_section(exp, all_fits[exp.name], all_rows[exp.name], all_failed[exp.name])
    lines += ["## Cost", "", "| figure | N | runs | mean wall time per run (s) | total (s) |", "| --- | ---: | ---: | ---: | ---: |"]
    for exp in experiments:
        for n in exp.n_pairs:
            ws = [float(r.get("wall_seconds") or 0.0) for r in all_rows[exp.name] if r["N"] == n]
            if ws:
                lines.append(f"| {exp.name} | {n} | {len(ws)} | {sum(ws) / len(ws):.2f} | {sum(ws):.1f} |")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# All aggregate outputs of a results folder
# --------------------------------------------------------------------------------------------
EXPERIMENTS_FILE = "experiments.json"


def read_definitions(out_dir) -> dict[str, dict]:
    """The experiment definitions recorded in ``out_dir/experiments.json`` ({name: definition})."""
    import json
    from pathlib import Path

    path = Path(out_dir) / EXPERIMENTS_FILE
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("experiments", {}))
    except (json.JSONDecodeError, AttributeError):
        from widessl.errors import ConfigError

        raise ConfigError(f"{path} is corrupt; delete it and rerun the reproduce command") from None


def record_definitions(out_dir, experiments: list[Experiment]) -> list[Experiment]:
    """Merge ``experiments`` into ``out_dir/experiments.json`` (a figure's new definition replaces
    its old one) and return every recorded experiment, sorted by name."""
    from widessl._io import atomic_write_json

    defs = read_definitions(out_dir)
    for exp in experiments:
        defs[exp.name] = exp.to_dict()
    defs = dict(sorted(defs.items()))
    from pathlib import Path

    atomic_write_json(Path(out_dir) / EXPERIMENTS_FILE, {"experiments": defs})
    return [Experiment.from_dict(d) for d in defs.values()]


def write_outputs(out_dir, experiments: list[Experiment] | None = None, *, command: str | None = None,
                  session_seconds: float | None = None, figures: bool = True) -> dict[str, Any]:
    """Build summary.csv, slopes.json, <figure>.png/.svg and report.md in ``out_dir`` from its
    runs.jsonl, for ``experiments`` (default: every experiment recorded in experiments.json).
    Every file is written atomically and in a fixed order (figure, N, M, seed), so a resumed
    sweep yields the same summary.csv and slopes.json as an uninterrupted one."""
    from pathlib import Path

    from widessl._io import atomic_write_json, atomic_write_text
    from widessl.experiments.analysis import TAIL_WIDTHS, collect, failures, slopes, summarize, summary_csv
    from widessl.experiments.store import load_records

    out_dir = Path(out_dir)
    if experiments is None:
        experiments = [Experiment.from_dict(d) for d in read_definitions(out_dir).values()]
    experiments = sorted(experiments, key=lambda e: e.name)
    records = load_records(out_dir)
    all_rows = {e.name: collect(e, records) for e in experiments}
    all_failed = {e.name: failures(e, records) for e in experiments}
    all_summary = {e.name: summarize(e, all_rows[e.name]) for e in experiments}
    all_fits = {e.name: slopes(e, all_rows[e.name]) for e in experiments}
    atomic_write_text(out_dir / "summary.csv", summary_csv(r for e in experiments for r in all_summary[e.name]))
    atomic_write_json(out_dir / "slopes.json", {
        "method": "OLS of log(value) on log(M) over all finished seeds and widths, per figure, metric and N; "
                  f"95% t-interval; tail_*: the same fit over the {TAIL_WIDTHS} largest widths",
        "level": 0.95,
        "slopes": {e.name: all_fits[e.name] for e in experiments},
    })
    written = []
    if figures:
        from widessl.experiments.plots import plot_figure

        for e in experiments:
            if all_rows[e.name]:
                written += plot_figure(e, all_summary[e.name], all_fits[e.name], out_dir)
    atomic_write_text(out_dir / "report.md", build_report(experiments, all_fits, all_rows, all_failed,
                                                          command=command, session_seconds=session_seconds))
    return {"summary": all_summary, "slopes": all_fits, "rows": all_rows, "figures": written}
