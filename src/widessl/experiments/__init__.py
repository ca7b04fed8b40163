"""Experiments: one run of the paper's protocol, and the sweeps behind its figures."""

from widessl.experiments.config import RunConfig
from widessl.experiments.run import RESULT_KEYS, run
from widessl.experiments.store import ResultStore, load_records
from widessl.experiments.sweep import Experiment, load_experiment, load_experiments, plan, run_sweep
from widessl.experiments.report import write_outputs

__all__ = [
    "RESULT_KEYS", "RunConfig", "run",
    "Experiment", "ResultStore", "load_experiment", "load_experiments", "load_records", "plan", "run_sweep",
    "write_outputs",
]
