"""Optimization passes and the pass manager (cnngraph.optimize is the entry point)."""
from .base import OptimizeError, Pass, PassResult
from .lint import Finding, lint
from .manager import PIPELINE, PassRun, Report, optimize, register, unregister
from .records import NodeRef, Refusal, Rewrite
from .rules import Match, Rule, rule, rule_pass

__all__ = ["optimize", "register", "unregister", "lint", "Finding", "OptimizeError", "Report", "PassRun", "Pass",
           "PassResult", "PIPELINE", "Rewrite", "Refusal", "NodeRef", "Rule", "Match", "rule", "rule_pass"]
