"""``widessl reproduce``: experiment definitions and overrides, the results store that survives
interruption (SIGKILL, SIGINT, a torn last line), resume to the same outputs, well-formed
summary/slopes/figures/report, and the slope fit with its confidence interval."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from widessl.errors import ConfigError
from widessl.experiments.analysis import Prediction, fit_slope, verdict
from widessl.experiments.store import ResultStore, load_records, repair_tail
from widessl.experiments.sweep import FIGURES, load_experiment, load_experiments, parse_override, plan

# A tiny sweep: 3 N x 4 widths x 2 seeds = 24 runs of about 0.1-0.3 s each.
TINY = """
extends = "fig1"
[figure]
name = "tiny"
title = "tiny test sweep"
[sweep]
n_pairs = [8, 12, 16]
widths = [32, 64, 128, 256]
seeds = [0, 1]
[run]
outputs = 3
n_heldout = 8
max_epochs = 400
"""
N_TINY = 24


def widessl(*args, **kw):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "widessl.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def run_cli(*args, timeout=120):
    p = widessl(*args)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def expected_hashes(toml_path) -> list[str]:
    return [r.config_hash for r in plan([load_experiment(toml_path, "quick")])]


def wait_for_records(path: Path, n: int, proc, timeout=90.0) -> int:
    start = time.time()
    while time.time() - start < timeout:
        if path.exists():
            k = path.read_bytes().count(b"\n")
            if k >= n:
                return k
        if proc.poll() is not None:
            raise AssertionError(f"sweep ended before {n} records: {proc.stderr.read()}")
        time.sleep(0.01)
    raise AssertionError("timed out waiting for records")


def check_outputs(out: Path, hashes: list[str]) -> None:
    """Every expected record exactly once, and summary/slopes/report/figures well-formed."""
    lines = (out / "runs.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a newline
    recs = [json.loads(line) for line in lines[:-1]]  # every line is a whole JSON record
    got = [r["config_hash"] for r in recs]
    assert sorted(got) == sorted(hashes) and len(set(got)) == len(got)
    for r in recs:
        assert r["status"] == "ok" and r["N"] == r["n_pairs"] and r["M"] == r["width"]
        for key in ("initial_loss", "final_loss", "epochs", "ntk_change", "ntk_change_heldout", "param_distance",
                    "rep_distance_train", "rep_distance_heldout", "rep_distance_train_inf",
                    "rep_distance_heldout_inf", "wall_seconds", "lr", "seed", "figure"):
            assert key in r, key
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and set(rows[0]) == {"figure", "N", "M", "metric", "mean", "std", "count", "min", "max"}
    ntk = [r for r in rows if r["metric"] == "ntk_change"]
    assert len(ntk) == 12 and all(r["count"] == "2" and float(r["mean"]) > 0 for r in ntk)
    slopes = json.loads((out / "slopes.json").read_text())["slopes"]["tiny"]
    keys = {(s["panel"], s["metric"], s["N"]) for s in slopes}
    for panel, metric in (("a", "ntk_change"), ("b", "epochs"), ("c", "rep_distance_train")):
        for n in (8, 12, 16):
            assert (panel, metric, n) in keys
    for s in slopes:
        assert s["ci_low"] <= s["slope"] <= s["ci_high"] and s["verdict"] in ("agrees", "close", "disagrees")
    a = [s["slope"] for s in slopes if s["metric"] == "ntk_change"]
    assert all(-1.5 < b < -0.5 for b in a), a  # the NTK change falls with the width
    report = (out / "report.md").read_text()
    assert "## tiny" in report and "| a | NTK change" in report and "theory" in report
    assert (out / "tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ET.parse(out / "tiny.svg").getroot().tag.endswith("svg")


# --------------------------------------------------------------------------------------------
# End to end: kill part-way, resume, same outputs as an uninterrupted sweep
# --------------------------------------------------------------------------------------------
def test_killed_sweep_resumes_to_the_same_outputs(tiny, tmp_path):
    out = tmp_path / "resumed"
    hashes = expected_hashes(tiny)
    assert len(hashes) == N_TINY
    args = ("reproduce", str(tiny), "--out", str(out), "--threads", "1", "--quiet")
    proc = widessl(*args)
    wait_for_records(out / "runs.jsonl", 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = load_records(out)
    assert 4 <= len(before) < N_TINY, "the kill should land part-way through the sweep"
    assert not (out / "summary.csv").exists()
    # Simulate a kill in the middle of a write as well: a torn last line without its newline.
    with open(out / "runs.jsonl", "ab") as fh:
        fh.write(b'{"config_hash": "torn", "N": 8, "M"')
    code, _, err = run_cli(*args)
    assert code == 0, err
    check_outputs(out, hashes)
    after = load_records(out)
    for h, rec in before.items():  # finished runs were skipped, not redone
        assert after[h]["wall_seconds"] == rec["wall_seconds"]

    fresh = tmp_path / "fresh"
    code, _, err = run_cli("reproduce", str(tiny), "--out", str(fresh), "--threads", "1", "--quiet")
    assert code == 0, err
    check_outputs(fresh, hashes)
    for name in ("summary.csv", "slopes.json"):
        assert (out / name).read_bytes() == (fresh / name).read_bytes(), name

    # A rerun of a finished sweep runs nothing and rewrites the same files.
    code, _, err = run_cli(*args[:-1])
    assert code == 0 and "0 runs to go" in err, err
    assert (out / "slopes.json").read_bytes() == (fresh / "slopes.json").read_bytes()


def test_sigint_exits_130_and_leaves_only_whole_records(tiny, tmp_path):
    out = tmp_path / "out"
    proc = widessl("reproduce", str(tiny), "--out", str(out), "--threads", "1")
    wait_for_records(out / "runs.jsonl", 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    data = (out / "runs.jsonl").read_bytes()
    assert data.endswith(b"\n")
    recs = [json.loads(line) for line in data.splitlines()]
    assert 2 <= len(recs) < N_TINY
    assert f"{len(recs)} of {N_TINY} runs finished" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err
    assert not (out / "summary.csv").exists()


# --------------------------------------------------------------------------------------------
# Definitions and overrides
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("item, fragment", [
    ("foo=1", "'foo'"),
    ("sweep.width=[64]", "'sweep.width'"),
    ("widths=[64]", "did you mean sweep.widths"),
    ("width=64", "sweep.widths"),
    ("lr=-1", "lr"),
])
def test_set_bad_key_is_a_one_line_error(item, fragment, tmp_path, capsys):
    from widessl.cli.main import main

    code = main(["reproduce", "fig1", "--set", item, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and fragment in lines[0], err
    assert not (tmp_path / "o").exists()


def test_unknown_key_from_the_command_line(tmp_path):
    code, out, err = run_cli("reproduce", "all", "--set", "sweep.width=[64]", "--out", str(tmp_path / "o"), timeout=60)
    assert code == 2 and "Traceback" not in err
    assert err.strip() == ("widessl reproduce: error: unknown key 'sweep.width' in --set; "
                           "valid sweep keys: sweep.n_pairs, sweep.widths, sweep.seeds")


def test_unknown_key_in_a_toml_file_is_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("outputs = 3", "outputz = 3"))
    with pytest.raises(ConfigError, match=r"run\.outputz"):
        load_experiment(bad)
    bad.write_text(TINY + "\n[extra]\nx = 1\n")
    with pytest.raises(ConfigError, match="extra"):
        load_experiment(bad)
    bad.write_text(TINY + "\n[profile.quick.sweep]\nwidth = [1]\n")
    with pytest.raises(ConfigError, match=r"profile\.quick\.sweep\.width"):
        load_experiment(bad)
    with pytest.raises(ConfigError, match="no profile 'huge'"):
        load_experiment("fig1", "huge")
    with pytest.raises(ConfigError, match="unknown figure"):
        load_experiments("fig4")


def test_overrides_profiles_and_extends(tiny):
    assert parse_override("lr=0.3") == ("run", "lr", 0.3)
    assert parse_override("run.activation=relu") == ("run", "activation", "relu")
    assert parse_override("sweep.widths=[64, 128]") == ("sweep", "widths", [64, 128])
    assert parse_override("kernel_inf=false") == ("run", "kernel_inf", False)
    e = load_experiment("fig1", "quick", ["lr=0.3", "sweep.widths=[128,64]", "sweep.seeds=7"])
    assert e.run["lr"] == 0.3 and e.widths == [64, 128] and e.seeds == [7] and e.run["outputs"] == 5
    paper = load_experiment("fig1", "paper")
    assert paper.run["outputs"] == 10 and len(paper.widths) > len(e.widths)
    t = load_experiment(tiny, "quick")  # fig1 base, then fig1's quick profile, then the file itself
    assert t.name == "tiny" and t.run["outputs"] == 3 and t.run["activation"] == "tanh" and t.run["max_epochs"] == 400
    assert [c.hash() for c in t.configs()] == [c.hash() for c in load_experiment(tiny, "quick").configs()]
    assert len({c.hash() for c in t.configs()}) == N_TINY


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_shipped_figures_cover_the_paper_grid(profile):
    exps = load_experiments("all", profile)
    assert [e.name for e in exps] == list(FIGURES)
    for e in exps:
        assert len(e.n_pairs) >= 3 and len(e.seeds) >= 3 and len(e.widths) >= 5
        assert all(m & (m - 1) == 0 for m in e.widths)  # powers of two
    f1, f2, f3 = (e.base_config() for e in exps)
    assert (f1.arch, f1.activation) == ("two_layer", "tanh")
    assert (f2.arch, f2.activation) == ("two_layer", "relu")
    assert f3.arch == "deep" and f3.depth >= 3


# --------------------------------------------------------------------------------------------
# Store, fit, verdicts
# --------------------------------------------------------------------------------------------
def test_store_repairs_a_torn_tail_and_keeps_one_record_per_hash(tmp_path):
    with ResultStore(tmp_path) as store:
        store.append({"config_hash": "a", "x": 1})
        store.append({"config_hash": "a", "x": 2})  # already there: skipped
    with open(tmp_path / "runs.jsonl", "ab") as fh:
        fh.write(b'{"config_hash": "b", "x"')
    with ResultStore(tmp_path) as store:
        assert store.repaired_bytes > 0 and "a" in store and "b" not in store
        store.append({"config_hash": "b", "x": 3})
        with pytest.raises(ConfigError, match="another widessl process"):
            ResultStore(tmp_path).open()
    assert [r["x"] for r in load_records(tmp_path).values()] == [1, 3]
    assert repair_tail(tmp_path / "runs.jsonl") == 0


def test_fit_slope_matches_ols_with_t_interval():
    from scipy import stats

    rng = np.random.default_rng(0)
    M = np.repeat([64, 128, 256, 512, 1024], 3)
    y = 3.0 * M ** -0.9 * np.exp(0.1 * rng.standard_normal(M.size))
    f = fit_slope(M, y)
    ref = stats.linregress(np.log(M), np.log(y))
    assert math.isclose(f["slope"], ref.slope, rel_tol=1e-12)
    assert math.isclose(f["stderr"], ref.stderr, rel_tol=1e-9)
    t = stats.t.ppf(0.975, M.size - 2)
    assert math.isclose(f["ci_high"] - f["ci_low"], 2 * t * ref.stderr, rel_tol=1e-9)
    assert abs(f["slope"] + 0.9) < 0.1 and f["ci_low"] < f["slope"] < f["ci_high"]
    exact = fit_slope([1, 2, 4], [1.0, 0.25, 0.0625])
    assert math.isclose(exact["slope"], -2.0) and exact["ci_high"] - exact["ci_low"] < 1e-9
    assert fit_slope([64, 64], [1.0, 2.0])["slope"] is None
    assert fit_slope([64, 128, 256], [1.0, -1.0, 0.5])["n"] == 2  # non-positive values left out


def test_verdicts():
    p = Prediction(-1.0, -0.5, 0.25, "")
    assert verdict({"slope": -0.95, "ci_low": -1.05, "ci_high": -0.85}, p)[0] == "agrees"
    assert verdict({"slope": -0.8, "ci_low": -0.85, "ci_high": -0.75}, p)[0] == "close"
    short, words = verdict({"slope": -0.3, "ci_low": -0.4, "ci_high": -0.2}, p)
    assert short == "disagrees" and "bound" in words
    assert verdict({"slope": None}, p)[0] == "no fit"


def test_a_diverging_run_is_recorded_as_failed_and_reported(tmp_path, tiny):
    from widessl.experiments.report import write_outputs
    from widessl.experiments.sweep import run_sweep

    e = load_experiment(tiny, "quick", ["lr=1e4", "sweep.n_pairs=[8]", "sweep.widths=[32]", "sweep.seeds=[0]"])
    outcome = run_sweep([e], tmp_path, progress=False)
    assert outcome.failed == 1
    (rec,) = load_records(tmp_path).values()
    assert rec["status"] == "failed" and "learning rate" in rec["error"]
    assert run_sweep([e], tmp_path, progress=False).finished_now == 0  # not retried
    write_outputs(tmp_path, [e], figures=False)
    assert "1 failed" in (tmp_path / "report.md").read_text()
