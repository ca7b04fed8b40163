"""``widessl theory``: the quantities of Theorems 3.1 / 4.1 against the width, and the
generalization gap against the bound of Section 5 against the sample size (SPEC sections 8, 9)."""

from __future__ import annotations

import argparse
import sys
import time

HELP = "measure the theory's quantities (Hessian norm, c0, R_T, NTK-change bound; generalization gap and bound)"
DESCRIPTION = (
    "Sweep the width M (Hessian norm of f_k in parameter space, gradient bound c0, radius R_T = ||theta_T - "
    "theta_0||, the Theorem 3.1 bound beside the measured NTK change) and the sample size N (the Barlow Twins "
    "generalization gap of kernel models and networks on fresh pairs from held-out images, beside the bound "
    "derived in docs/theory.md). Writes DIR/theory.jsonl (one record per run, resumable), DIR/theory_width.png/.svg, "
    "DIR/theory_samples.png/.svg and DIR/report.md with the fitted slopes."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="quick",
                   help="'quick' (about 10 min on 2 CPU cores), 'paper' (hours), or the path of a profile TOML file")
    p.add_argument("--out", default="widessl_theory", metavar="DIR", help="results folder (created; resumed if it exists)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a profile value, e.g. width.widths=[64,128], samples.seeds=[0], common.lr=0.3; "
                        "values are TOML literals; repeatable")
    p.add_argument("--only", choices=("width", "samples"), default=None, help="run only one of the two sweeps")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0: torch's default); 1 is fastest for these sizes on a small or busy "
                        "machine, where more threads stall each other in spin-waits")
    p.add_argument("--report-only", action="store_true", help="run nothing; rebuild figures and report from DIR/theory.jsonl")
    p.add_argument("--quiet", action="store_true", help="no progress messages (errors still go to stderr)")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    import torch

    from widessl._io import atomic_write_json, read_jsonl
    from widessl.errors import ConfigError
    from widessl.theory.profile import TheoryProfile
    from widessl.theory.report import bound_violations, write_report
    from widessl.theory.sweep import RECORDS_FILE, planned_keys, run_theory

    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    prof = TheoryProfile.load(args.profile, args.overrides)
    start = time.perf_counter()
    parts = (args.only,) if args.only else ("width", "samples")
    if args.report_only:
        keys = set(planned_keys(prof))
        records = [r for r in read_jsonl(f"{args.out}/{RECORDS_FILE}") if r.get("key") in keys]
        if not records:
            raise ConfigError(f"no records of profile {prof.name!r} in {args.out}/{RECORDS_FILE}; run without --report-only first")
        wall = None
    else:
        atomic_write_json(f"{args.out}/profile.json", prof.to_dict())
        say(f"widessl theory: profile {prof.name!r}, results in {args.out}/ (rerunning resumes)")
        records = run_theory(prof, args.out, log=say, parts=parts)
        wall = time.perf_counter() - start
    files = write_report(args.out, records, profile=prof.to_dict(), wall_seconds=wall)
    say(f"wrote {files['report']} and {len(files['figures'])} figure files"
        + (f" in {wall:.0f} s" if wall is not None else ""))
    viol = bound_violations(records)
    if viol:
        print(f"widessl theory: the bound is below the measured gap in {len(viol)} case(s): "
              + ", ".join(r["key"] for r in viol), file=sys.stderr)
        return 1
    return 0
