"""``widessl reproduce``: the paper's Figures 1-3 with one command (sweeps, resumable results
store, summary, fitted slopes, figures and a report)."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time

HELP = "reproduce the paper's Figures 1-3: width sweeps, fitted slopes, figures and a report"
DESCRIPTION = (
    "Sweep the width M (and N and seeds) for the paper's three architectures (fig1: two-layer tanh, "
    "fig2: two-layer relu, fig3: a deep tanh network), appending each finished run to DIR/runs.jsonl, then "
    "write DIR/summary.csv, DIR/slopes.json, DIR/figN.png/.svg and DIR/report.md. Rerunning the same "
    "command resumes: finished runs are skipped. Experiment definitions are TOML files shipped with "
    "widessl (see docs/reproduce.md); override any value with --set or pass your own TOML file."
)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so the sweep stops between two records."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="FIGURE",
                   help="fig1, fig2, fig3, all, or the path of your own experiment TOML file")
    p.add_argument("--profile", default="quick",
                   help="grid size: 'quick' (all three figures in about 4 min on 2 CPU cores, measured) or 'paper' "
                        "(the full grid, for a GPU or a cluster; see docs/reproduce.md for its cost)")
    p.add_argument("--out", default="widessl_reproduce", metavar="DIR", help="results folder (created; resumed if it exists)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value: a run key (lr=0.3, activation=relu, device=cuda) or a sweep key "
                        "(sweep.widths=[64,128], sweep.seeds=[0,1]); values are TOML literals; repeatable")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per run; 1 suits the quick profile's small matrices (measured: 4 min "
                        "instead of 9 on 2 busy cores); 0 = torch's default, better for large widths on an idle many-core CPU")
    p.add_argument("--dry-run", action="store_true", help="print the grid, the runs left and an estimated time; run nothing")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing; rebuild summary, slopes, figures and report from DIR/runs.jsonl")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no messages (errors still go to stderr)")
    p.set_defaults(func=run_command)


def _command_line(args: argparse.Namespace) -> str:
    parts = ["widessl", "reproduce", args.target, "--profile", args.profile, "--out", args.out]
    for item in args.overrides:
        parts += ["--set", item]
    return " ".join(shlex.quote(p) for p in parts)


def _fmt_eta(seconds: float) -> str:
    from widessl.experiments.sweep import _fmt_seconds

    return _fmt_seconds(seconds)


def run_command(args: argparse.Namespace) -> int:
    from widessl.experiments.report import record_definitions, write_outputs
    from widessl.experiments.store import load_records
    from widessl.experiments.sweep import estimate_seconds, load_experiments, run_sweep

    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.threads < 0:
        from widessl.errors import ConfigError

        raise ConfigError(f"--threads must be >= 0, got {args.threads}")
    experiments = load_experiments(args.target, args.profile, args.overrides)
    records = load_records(args.out)
    for exp in experiments:
        n = len(exp.n_pairs) * len(exp.widths) * len(exp.seeds)
        done = sum(1 for c in exp.configs() if c.hash() in records)
        say(f"{exp.name} ({exp.title}): N in {exp.n_pairs}, M in {exp.widths}, seeds {exp.seeds}: "
            f"{n} runs, {done} already in {args.out}/runs.jsonl")
    est, left = estimate_seconds(experiments, records)
    if args.dry_run:
        print(f"{left} runs left; estimated ~{_fmt_eta(est)} at one thread on this project's 2-core reference machine (the progress bar refines it from measured runs)")
        return 0
    if not args.report_only:
        say(f"{left} runs to go, estimated ~{_fmt_eta(est)}; results in {args.out}/ (Ctrl-C stops; rerunning resumes)")
    start = time.perf_counter()
    record_definitions(args.out, experiments)
    state: dict = {}
    if not args.report_only:
        def on_term(signum, frame):
            raise _Terminated()

        old = signal.signal(signal.SIGTERM, on_term)
        try:
            run_sweep(experiments, args.out, progress=not args.quiet, threads=args.threads or None, log=say,
                      state=state)
        except KeyboardInterrupt as exc:
            from widessl.experiments.sweep import plan

            # Count from the store itself: the interrupt may land between a write and any bookkeeping.
            on_disk = load_records(args.out)
            runs = plan(experiments)
            done, planned = sum(1 for r in runs if r.config_hash in on_disk), len(runs)
            print(f"widessl reproduce: interrupted; {done} of {planned} runs finished and saved in "
                  f"{args.out}/runs.jsonl; rerun the same command to resume", file=sys.stderr)
            return 143 if isinstance(exc, _Terminated) else 130
        finally:
            signal.signal(signal.SIGTERM, old)
    out = write_outputs(args.out, None, command=_command_line(args), session_seconds=time.perf_counter() - start)
    if not args.quiet:
        for name, fits in out["slopes"].items():
            main = [f for f in fits if f["metric"] in ("ntk_change", "epochs", "rep_distance_train")]
            if main:
                print(f"{name}: " + "; ".join(
                    f"{f['panel']} N={f['N']} slope {f['slope']:+.2f} ({f['verdict']})" for f in main
                    if f["slope"] is not None))
        print(f"wrote {args.out}/summary.csv, slopes.json, report.md"
              + (", " + ", ".join(p.name for p in out["figures"]) if out["figures"] else ""))
    return 0
