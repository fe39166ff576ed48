"""The rule driver: a pass is a list of rules; one driver does the traversal, the stale-node guard, the
records and the fixed point, so that a rule is match -> check -> rewrite in a few lines.

A rule is a function of a Match (the graph, the node the driver hands it, the level) decorated with
``@rule(anchor=...)``; ``anchor`` is a cheap test of that node (usually an op trait). The function returns
None when the pattern is not there, ``m.refuse(reason, ...)`` when its check says no, and after editing the
graph through Graph methods ``m.rewrote(before, after)``. Its docstring holds its math.

One sweep hands every node of the graph, in topological order, to every rule in turn. A node that a rewrite
erased or redefined earlier in the same sweep is stale: it is skipped (its new definition is seen by the next
sweep). Sweeps repeat until one rewrites nothing; only the refusals of that last sweep are kept, since they
describe the graph as it is. Rules are plain data: they combine by listing them (tinygrad's PatternMatcher,
onnxscript's rewrite rules with their match/check/rewrite split).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cnngraph.errors import CnnGraphError
from cnngraph.graph import Graph, Node

from .base import OptimizeError, Pass, PassResult, sole_reader
from .records import NodeRef, Refusal, Rewrite

MAX_SWEEPS = 32


@dataclass(frozen=True)
class Rule:
    name: str
    function: Callable
    anchor: Callable[[Node], bool]
    level: int = 0                      # the lowest optimization level it runs at (0: its pass's level)

    @property
    def doc(self) -> str:
        return self.function.__doc__ or ""


def rule(anchor: Callable[[Node], bool], level: int = 0):
    """Make a function of a Match into a Rule named after it."""
    return lambda function: Rule(function.__name__, function, anchor, level)


class Match:
    """What a rule sees, and its vocabulary for checks and records."""
    __slots__ = ("graph", "node", "level", "rule")

    def __init__(self, graph: Graph, node: Node, level: int, rule_name: str):
        self.graph, self.node, self.level, self.rule = graph, node, level, rule_name

    def input(self, index: int = 0) -> Node:
        """The node producing the matched node's input ``index``."""
        return self.graph.node(self.node.inputs[index])

    def read_elsewhere(self, value: str) -> str | None:
        """Why ``value`` is read by more than one reader (another node, or the graph outputs), else None: a
        rewrite that removes the value must be its only reader (onnxruntime #4110)."""
        return sole_reader(self.graph, value)[1]

    def refuse(self, reason: str, *nodes: Node) -> Refusal:
        return Refusal(self.rule, tuple(NodeRef.of(n) for n in nodes or (self.node,)), reason)

    def rewrote(self, before, after, detail: str = "") -> Rewrite:
        """The record of a rewrite: ``before`` the matched nodes (as the rule saw them), ``after`` the names of
        the nodes computing their values now."""
        return Rewrite(self.rule, tuple(NodeRef.of(n) for n in before),
                       tuple(NodeRef.of(self.graph.node(name), summary=True) for name in after), detail)


def run_rules(graph: Graph, rules, level: int) -> PassResult:
    """Sweep until nothing changes; every rewrite is recorded, and the refusals of the last sweep."""
    result = PassResult(graph)
    rules = [r for r in rules if r.level <= level]
    for _ in range(MAX_SWEEPS):
        rewrites, refusals = _sweep(graph, rules, level)
        result.rewrites += rewrites
        result.refusals = refusals
        if not rewrites:
            return result
    names = sorted({r.rule for r in rewrites})
    raise OptimizeError(f"rules {', '.join(names)} still rewrote after {MAX_SWEEPS} sweeps: {rewrites[-1]}")


def _sweep(graph: Graph, rules, level: int) -> tuple[list[Rewrite], list[Refusal]]:
    rewrites, refusals = [], []
    for node in graph.layers():
        checked = None                                # the graph's version when the node was last found current
        for current in rules:
            if graph.version != checked:
                if node.name not in graph or graph.node(node.name) is not node:
                    break                             # stale: erased or redefined earlier in this sweep
                checked = graph.version
            if not current.anchor(node):
                continue
            try:
                record = current.function(Match(graph, node, level, current.name))
            except CnnGraphError as error:
                raise OptimizeError(f"rule {current.name} at {node.label()}: {error}") from error
            if isinstance(record, Rewrite):
                rewrites.append(record)
            elif isinstance(record, Refusal):
                refusals.append(record)
            elif record is not None:
                raise TypeError(f"rule {current.name} returned {record!r}; a rule returns None, m.refuse(...) "
                                f"or m.rewrote(...)")
    return rewrites, refusals


def rule_pass(name: str, level: int, rules, doc: str = "") -> Pass:
    """A pass made of rules, run by the driver."""
    rules = tuple(rules)
    return Pass(name, level, lambda graph, level=level: run_rules(graph, rules, level), doc, rules)
