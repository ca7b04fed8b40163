"""Experiments: one run of the paper's protocol, and (later) the sweeps behind its figures."""

from widessl.experiments.config import RunConfig
from widessl.experiments.run import RESULT_KEYS, run

__all__ = ["RESULT_KEYS", "RunConfig", "run"]
