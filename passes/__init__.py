"""Optimization passes and the pass manager (cnngraph.optimize is the entry point)."""
from .base import Pass, PassResult
from .lint import Finding, lint
from .manager import PIPELINE, OptimizeError, Report, optimize, register, unregister

__all__ = ["optimize", "register", "unregister", "lint", "Finding", "OptimizeError", "Report", "Pass", "PassResult", "PIPELINE"]
