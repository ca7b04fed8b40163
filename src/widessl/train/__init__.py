"""Training under the Barlow Twins loss (SPEC section 4)."""

from widessl.train.convergence import ConvergenceMonitor, ConvergenceRule
from widessl.train.gd import TrainResult, train

__all__ = ["ConvergenceMonitor", "ConvergenceRule", "TrainResult", "train"]
