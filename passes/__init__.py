"""Optimization passes and the pass manager (cnngraph.optimize is the entry point)."""
from .base import Pass, PassResult
from .manager import PIPELINE, OptimizeError, Report, optimize

__all__ = ["optimize", "OptimizeError", "Report", "Pass", "PassResult", "PIPELINE"]
